"""RerankPipeline: dedupe, selection order, error policy, sync/async equality.

The rerankers here are users' own objects implementing the protocol (which the pipeline must
accept); real rerankers and real Milvus are exercised in their own test modules and end to end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from helpers import (
    BAD_SELECTION_OPTIONS,
    BROKEN_ANSWERS,
    AnswerReranker,
    FailingReranker,
    ListRetriever,
    OverlapReranker,
)

from milvus_rerank import Candidate, RerankConnectionError, RerankResponseError, RerankResult
from milvus_rerank.pipeline import RerankPipeline, Selection, dedupe, split_call_options

QUERY = "milvus hybrid search with rerank"
CANDIDATES = [
    Candidate(id=1, text="bananas are yellow", score=0.9, metadata={"src": "a"}),
    Candidate(id=2, text="milvus supports hybrid search", score=0.8, metadata={"src": "b"}),
    Candidate(id=3, text="rerank after milvus hybrid search", score=0.7),
    Candidate(id=2, text="milvus supports hybrid search", score=0.6, metadata={"src": "b"}),
    Candidate(id="x", text="search engines", score=0.5),
]


def test_rerank_orders_by_score_and_keeps_first_stage_data() -> None:
    out = RerankPipeline(OverlapReranker()).rerank(QUERY, CANDIDATES)
    assert [c.id for c in out] == [3, 2, "x", 1]
    direct = {r.index: r.score for r in OverlapReranker().rerank(QUERY, [c.text for c in dedupe(CANDIDATES)])}
    assert [c.rerank_score for c in out] == [direct[2], direct[1], direct[3], direct[0]]
    assert [round(5 * c.rerank_score) for c in out] == [4, 3, 1, 0]  # of the five query words
    assert [c.rank for c in out] == [1, 2, 3, 4]
    assert [c.retrieval_rank for c in out] == [3, 2, 5, 1]
    assert out[1].score == 0.8
    assert out[1].metadata == {"src": "b"}
    assert all(c.reranked for c in out)
    # The caller's candidates are untouched.
    assert all(c.rerank_score is None and c.rank is None for c in CANDIDATES)


def test_duplicates_are_scored_once() -> None:
    reranker = OverlapReranker()
    RerankPipeline(reranker).rerank(QUERY, CANDIDATES)
    ((_, documents, _),) = reranker.calls
    assert len(documents) == 4
    assert documents.count("milvus supports hybrid search") == 1
    assert [c.id for c in dedupe(CANDIDATES)] == [1, 2, 3, "x"]


def test_threshold_then_top_n() -> None:
    one_word = 0.2  # one of the five query words
    out = RerankPipeline(OverlapReranker(), score_threshold=one_word, top_n=10).rerank(QUERY, CANDIDATES)
    assert [c.id for c in out] == [3, 2, "x"]
    out = RerankPipeline(OverlapReranker(), score_threshold=one_word, top_n=2).rerank(QUERY, CANDIDATES)
    assert [c.id for c in out] == [3, 2]
    out = RerankPipeline(OverlapReranker(), score_threshold=100).rerank(QUERY, CANDIDATES)
    assert out == []


def test_empty_input_calls_nothing() -> None:
    reranker = OverlapReranker()
    assert RerankPipeline(reranker).rerank(QUERY, []) == []
    assert reranker.calls == []


async def test_async_equals_sync() -> None:
    pipeline = RerankPipeline(OverlapReranker(), top_n=3, retriever=ListRetriever(CANDIDATES))
    assert await pipeline.arerank(QUERY, CANDIDATES) == pipeline.rerank(QUERY, CANDIDATES)
    assert await pipeline.arun(QUERY) == pipeline.run(QUERY)


async def test_concurrent_async_queries_do_not_mix() -> None:
    pipeline = RerankPipeline(OverlapReranker(), top_n=1)
    docs = [Candidate(id=i, text=f"topic{i} text") for i in range(20)]
    results = await asyncio.gather(*(pipeline.arerank(f"topic{i}", docs) for i in range(20)))
    assert [r[0].id for r in results] == list(range(20))


def test_run_uses_the_retriever() -> None:
    retriever = ListRetriever(CANDIDATES)
    out = RerankPipeline(OverlapReranker(), retriever=retriever, top_n=1).run(QUERY)
    assert retriever.calls == [(QUERY, {})]
    assert [c.id for c in out] == [3]


def test_run_without_retriever_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no retriever"):
        RerankPipeline(OverlapReranker()).run(QUERY)


def test_on_error_raise_propagates() -> None:
    with pytest.raises(RerankConnectionError, match="cannot reach"):
        RerankPipeline(FailingReranker()).rerank(QUERY, CANDIDATES)


async def test_on_error_passthrough_keeps_first_stage_order(caplog: pytest.LogCaptureFixture) -> None:
    pipeline = RerankPipeline(FailingReranker(), on_error="passthrough", top_n=3, score_threshold=0.5)
    with caplog.at_level(logging.WARNING, logger="milvus_rerank.pipeline"):
        out = pipeline.rerank(QUERY, CANDIDATES)
    assert [c.id for c in out] == [1, 2, 3]
    assert [c.rank for c in out] == [1, 2, 3]
    assert not any(c.reranked for c in out)
    assert "RerankConnectionError" in caplog.text
    assert "not reranked" in caplog.text
    assert await pipeline.arerank(QUERY, CANDIDATES) == out


def test_passthrough_does_not_hide_caller_bugs() -> None:
    pipeline = RerankPipeline(FailingReranker(), on_error="passthrough")
    with pytest.raises(TypeError, match="query must be a str"):
        pipeline.rerank(None, CANDIDATES)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"documents\[1\] must be a str, got NoneType"):
        pipeline.rerank(QUERY, [Candidate(id=1, text="a"), Candidate(id=2, text=None)])  # type: ignore[arg-type]


THREE = [Candidate(id=i, text=f"text {i}") for i in range(3)]


@pytest.mark.parametrize(("answer", "reason"), [b[1:] for b in BROKEN_ANSWERS], ids=[b[0] for b in BROKEN_ANSWERS])
async def test_an_answer_that_breaks_the_contract_is_refused_naming_the_reranker(
    answer: Callable[[Sequence[str]], Any], reason: str
) -> None:
    pipeline = RerankPipeline(AnswerReranker(answer))
    with pytest.raises(RerankResponseError, match="reranker AnswerReranker broke the Reranker contract") as sync:
        pipeline.rerank(QUERY, THREE)
    assert reason in str(sync.value)
    with pytest.raises(RerankResponseError) as asynchronous:
        await pipeline.arerank(QUERY, THREE)
    assert str(asynchronous.value) == str(sync.value)


def test_an_answer_holds_top_n_results_when_top_n_is_fewer() -> None:
    everything = AnswerReranker(lambda docs: [RerankResult(i, float(i)) for i in range(len(docs))])
    with pytest.raises(RerankResponseError, match=r"\(top_n=2\): expected 2 results for 3 documents, got 3"):
        RerankPipeline(everything, top_n=2).rerank(QUERY, THREE)
    assert [c.id for c in RerankPipeline(everything, top_n=5).rerank(QUERY, THREE)] == [2, 1, 0]
    best_two = AnswerReranker(lambda docs: [RerankResult(0, 0.9), RerankResult(2, 0.1)])
    assert [c.id for c in RerankPipeline(best_two, top_n=2).rerank(QUERY, THREE)] == [0, 2]


def test_answers_of_other_int_and_float_types_are_read_as_python_ones() -> None:
    numpy = pytest.importorskip("numpy")
    answer = AnswerReranker(lambda docs: [RerankResult(numpy.int64(i), numpy.float32(i / 4)) for i in range(3)])
    out = RerankPipeline(answer).rerank(QUERY, THREE)
    assert [(c.id, c.rerank_score) for c in out] == [(2, 0.5), (1, 0.25), (0, 0.0)]
    assert all(type(c.rerank_score) is float for c in out)


def test_a_broken_answer_is_a_reranker_failure_that_passthrough_covers(caplog: pytest.LogCaptureFixture) -> None:
    pipeline = RerankPipeline(AnswerReranker(lambda docs: [RerankResult(0, 1.0)]), on_error="passthrough")
    with caplog.at_level(logging.WARNING):
        out = pipeline.rerank(QUERY, THREE)
    assert [c.id for c in out] == [0, 1, 2]
    assert not any(c.reranked for c in out)
    assert "RerankResponseError" in caplog.text


def test_ids_are_the_same_chunk_only_when_of_the_same_type() -> None:
    # 1 == True == 1.0 in Python, with equal hashes; as primary keys they are four chunks.
    candidates = [
        Candidate(id=1, text="one"),
        Candidate(id=True, text="true"),  # type: ignore[arg-type]
        Candidate(id=1.0, text="one point zero"),  # type: ignore[arg-type]
        Candidate(id="1", text="the string"),
        Candidate(id=1, text="one again"),
        Candidate(id=(1, "a"), text="a tuple"),  # type: ignore[arg-type]
        Candidate(id=(True, "a"), text="another tuple"),  # type: ignore[arg-type]
    ]
    reranker = OverlapReranker()
    out = RerankPipeline(reranker).rerank("one", candidates)
    ((_, sent, _),) = reranker.calls
    assert sent == ["one", "true", "one point zero", "the string", "a tuple", "another tuple"]
    assert sorted(repr(c.id) for c in out) == sorted(["1", "True", "1.0", "'1'", "(1, 'a')", "(True, 'a')"])
    assert [repr(c.id) for c in dedupe(candidates)] == ["1", "True", "1.0", "'1'", "(1, 'a')", "(True, 'a')"]


def test_a_lone_surrogate_names_the_callers_candidate() -> None:
    candidates = [Candidate(id=1, text="a"), Candidate(id=1, text="a"), Candidate(id=2, text="b\ud800c")]
    with pytest.raises(ValueError, match=r"documents\[2\] holds a lone surrogate \('\\ud800'\) at character 1"):
        RerankPipeline(OverlapReranker(), on_error="passthrough").rerank(QUERY, candidates)
    with pytest.raises(ValueError, match=r"^query holds a lone surrogate"):
        RerankPipeline(OverlapReranker()).rerank("\udfff", candidates)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"top_n": 0}, ValueError, "top_n must be a positive int"),
        ({"top_n": 2.5}, TypeError, "top_n must be a positive int"),
        ({"score_threshold": float("nan")}, ValueError, "score_threshold must be finite"),
        ({"score_threshold": "high"}, TypeError, "score_threshold must be a number"),
        ({"on_error": "ignore"}, ValueError, "on_error must be"),
        ({"retriever": object()}, TypeError, "retriever must have retrieve"),
    ],
)
def test_bad_configuration(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        RerankPipeline(OverlapReranker(), **kwargs)  # type: ignore[arg-type]


def test_reranker_without_protocol_is_refused() -> None:
    with pytest.raises(TypeError, match="must have rerank"):
        RerankPipeline(object())  # type: ignore[arg-type]


def test_texts_are_what_the_reranker_reads_and_candidates_keep_their_own() -> None:
    reranker = OverlapReranker()
    texts = [f"{c.text} [{c.id}]" for c in CANDIDATES]
    out = RerankPipeline(reranker).rerank(QUERY, CANDIDATES, texts=texts)
    ((_, sent, _),) = reranker.calls
    assert sent == ["bananas are yellow [1]", "milvus supports hybrid search [2]", texts[2], "search engines [x]"]
    assert {c.id: c.text for c in out} == {c.id: c.text for c in dedupe(CANDIDATES)}
    assert [c.id for c in out] == [3, 2, "x", 1]
    with pytest.raises(ValueError, match="one text per candidate: got 4 for 5"):
        RerankPipeline(reranker).rerank(QUERY, CANDIDATES, texts=texts[:4])
    with pytest.raises(TypeError, match=r"documents\[1\] must be a str"):
        RerankPipeline(reranker).rerank(QUERY, CANDIDATES, texts=["a", None, "c", "d", "e"])  # type: ignore[list-item]


def test_split_call_options_names_every_unknown_option() -> None:
    assert split_call_options({"top_n": 2, "filter": "a", "limit": 9, "score_threshold": None}) == (
        {"top_n": 2, "score_threshold": None},
        {"filter": "a", "limit": 9},
    )
    assert split_call_options({}) == ({}, {})
    with pytest.raises(TypeError, match=r"unknown per-call options 'k', 'topn'; the options of one call are top_n, "):
        split_call_options({"topn": 3, "k": 1, "limit": 2})
    with pytest.raises(TypeError, match=r"unknown per-call option 'k';"):
        split_call_options({"k": 1})


@pytest.mark.parametrize(("option", "error", "match"), [o for o in BAD_SELECTION_OPTIONS if "on_error" not in o[0]])
def test_per_call_selection_is_checked_as_at_construction(
    option: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as at_construction:
        RerankPipeline(OverlapReranker(), **option)  # type: ignore[arg-type]
    retriever = ListRetriever(CANDIDATES)
    with pytest.raises(error) as per_call:
        RerankPipeline(OverlapReranker(), retriever=retriever).run(QUERY, **option)
    assert str(per_call.value) == str(at_construction.value)
    assert retriever.calls == []  # refused before the first stage runs


async def test_run_takes_per_call_options_that_do_not_stick() -> None:
    retriever = ListRetriever(CANDIDATES)
    pipeline = RerankPipeline(OverlapReranker(), retriever=retriever, top_n=3)
    assert [c.id for c in pipeline.run(QUERY, top_n=1, limit=4, filter="src == 'b'")] == [3]
    assert retriever.calls[-1] == (QUERY, {"limit": 4, "filter": "src == 'b'"})
    assert [c.id for c in await pipeline.arun(QUERY, top_n=None)] == [3, 2, "x", 1]  # None: every candidate
    assert [c.id for c in await pipeline.arun(QUERY, score_threshold=0.5)] == [3, 2]
    assert [c.id for c in pipeline.run(QUERY)] == [3, 2, "x"]  # the pipeline's own top_n again
    assert pipeline.top_n == 3
    with pytest.raises(TypeError, match="unknown per-call option 'k'"):
        pipeline.run(QUERY, k=3)
    assert pipeline.with_selection({}) is pipeline
    with pytest.raises(TypeError, match="'limit' are not selection options"):
        pipeline.with_selection({"limit": 3})


# ---------------------------------------------------------------------------- the per-call entry point


def test_rerank_takes_the_selection_of_one_call_which_does_not_stick() -> None:
    reranker = OverlapReranker()
    pipeline = RerankPipeline(reranker, top_n=3)
    assert pipeline.selection == Selection(top_n=3)
    one = pipeline.rerank(QUERY, CANDIDATES, selection=Selection(top_n=1))
    assert [c.id for c in one] == [3]
    assert reranker.calls[-1][2] == 1  # the reranker is asked for the call's top_n
    every = pipeline.rerank(QUERY, CANDIDATES, selection=Selection())
    assert [c.id for c in every] == [3, 2, "x", 1]
    assert reranker.calls[-1][2] is None
    above = pipeline.rerank(QUERY, CANDIDATES, selection=pipeline.selection.with_options({"score_threshold": 0.5}))
    assert [c.id for c in above] == [3, 2]  # threshold, then the pipeline's own top_n of 3
    assert [c.id for c in pipeline.rerank(QUERY, CANDIDATES)] == [3, 2, "x"]  # the pipeline's own again
    assert (pipeline.top_n, pipeline.score_threshold) == (3, None)
    with pytest.raises(AttributeError):
        pipeline.top_n = 5  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"selection must be a Selection .*got dict"):
        pipeline.rerank(QUERY, CANDIDATES, selection={"top_n": 1})  # type: ignore[arg-type]


async def test_arerank_takes_the_selection_of_one_call_as_rerank_does() -> None:
    pipeline = RerankPipeline(OverlapReranker(), top_n=3)
    for selection in (Selection(top_n=1), Selection(score_threshold=0.5), Selection(top_n=2, score_threshold=0.1)):
        assert await pipeline.arerank(QUERY, CANDIDATES, selection=selection) == pipeline.rerank(
            QUERY, CANDIDATES, selection=selection
        )
    passthrough = RerankPipeline(FailingReranker(), on_error="passthrough", top_n=3)
    assert [c.id for c in await passthrough.arerank(QUERY, CANDIDATES, selection=Selection(top_n=2))] == [1, 2]


@pytest.mark.parametrize(("option", "error", "match"), [o for o in BAD_SELECTION_OPTIONS if "on_error" not in o[0]])
def test_a_selection_is_checked_when_made_as_the_pipeline_checks_its_own(
    option: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as made:
        Selection(**option)  # type: ignore[arg-type]
    with pytest.raises(error) as replaced:
        Selection(top_n=2).with_options(option)
    with pytest.raises(error) as at_construction:
        RerankPipeline(OverlapReranker(), **option)  # type: ignore[arg-type]
    assert str(made.value) == str(replaced.value) == str(at_construction.value)


def test_selection_with_options() -> None:
    base = Selection(top_n=3, score_threshold=0.25)
    assert base.with_options({}) is base
    assert base.with_options({"top_n": None}) == Selection(score_threshold=0.25)
    assert base.with_options({"score_threshold": 1}) == Selection(top_n=3, score_threshold=1.0)
    assert type(base.with_options({"score_threshold": 1}).score_threshold) is float
    with pytest.raises(TypeError, match=r"'limit' are not selection options"):
        base.with_options({"limit": 3})


def test_a_ranked_answer_keeps_its_order_and_an_unranked_one_is_ranked() -> None:
    ranked = AnswerReranker(lambda docs: [RerankResult(2, 0.9), RerankResult(0, 0.5), RerankResult(1, 0.5)])
    out = RerankPipeline(ranked).rerank(QUERY, THREE)
    assert [(c.id, c.rerank_score, c.rank) for c in out] == [(2, 0.9, 1), (0, 0.5, 2), (1, 0.5, 3)]
    unranked = AnswerReranker(lambda docs: [RerankResult(1, 0.5), RerankResult(2, 0.9), RerankResult(0, 0.5)])
    assert [c.id for c in RerankPipeline(unranked).rerank(QUERY, THREE)] == [2, 0, 1]  # ties by index
