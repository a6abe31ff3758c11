"""RerankCompressor contract: copies, ids, scores, order, threshold then top_n, dedupe, errors, async, callbacks.

Most tests use a user's own reranker implementing the protocol (which the compressor must accept);
the last ones run the real local CrossEncoderReranker on the tiny generated model.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from helpers import BAD_SELECTION_OPTIONS, BROKEN_ANSWERS, AnswerReranker, FailingReranker, OverlapReranker
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document

from langchain_milvus_rerank import RerankCompressor, candidate_to_document
from milvus_rerank import Candidate, CrossEncoderReranker, RerankConnectionError, RerankResponseError, RerankResult
from milvus_rerank.pipeline import RerankPipeline, Selection


class AsyncOnlyReranker(OverlapReranker):
    """Its sync path fails: proves the async compressor awaits arerank instead of wrapping rerank."""

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        raise AssertionError("the async path must not call the sync rerank()")


class Recorder(BaseCallbackHandler):
    """Records chain events as (event, name, run_id, payload)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str | None, UUID, Any]] = []
        self.names: dict[UUID, str | None] = {}

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.names[run_id] = kwargs.get("name")
        self.events.append(("start", kwargs.get("name"), run_id, inputs))

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append(("end", self.names.get(run_id), run_id, outputs))

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append(("error", self.names.get(run_id), run_id, error))

    def kinds(self) -> list[tuple[str, str | None]]:
        return [(kind, name) for kind, name, _, _ in self.events]


QUERY = "milvus hybrid search with rerank"


def make_documents() -> list[Document]:
    return [
        Document(id="a", page_content="bananas are yellow", metadata={"pk": 1, "src": "fruit", "tags": ["x"]}),
        Document(id="b", page_content="milvus supports hybrid search", metadata={"pk": 2, "retrieval_score": 0.8}),
        Document(id="c", page_content="rerank after milvus hybrid search", metadata={"pk": 3, "score": 0.7}),
        Document(id="d", page_content="search engines rank pages", metadata={"pk": 4}),
        Document(id="e", page_content="milvus is a vector database", metadata={"pk": 5}),
    ]


def expected_order(reranker: OverlapReranker, documents: list[Document], query: str = QUERY) -> list[tuple[str, float]]:
    """(id, score) best first, ties by input order, computed from the reranker directly."""
    results = reranker.rerank(query, [d.page_content for d in documents])
    return [(str(documents[r.index].id), r.score) for r in results]


# ---------------------------------------------------------------------------- construction


def test_construction_by_keyword_as_in_design() -> None:
    compressor = RerankCompressor(reranker=OverlapReranker(), top_n=2, score_threshold=1.0)
    assert (compressor.top_n, compressor.score_threshold, compressor.on_error) == (2, 1.0, "raise")
    assert compressor.document_template == "{page_content}"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"reranker": object()}, TypeError, "rerank"),
        *BAD_SELECTION_OPTIONS,
        ({"document_template": 3}, TypeError, "document_template"),
        ({"document_template": "{title"}, ValueError, "not a valid"),
        ({"document_template": "{} {page_content}"}, ValueError, "plain names"),
        ({"document_template": "{meta.title}"}, ValueError, "plain names"),
    ],
)
def test_construction_rejects_bad_options(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    options: dict[str, Any] = {"reranker": OverlapReranker(), **kwargs}
    with pytest.raises(error, match=match):
        RerankCompressor(**options)


def test_unknown_option_is_refused() -> None:
    with pytest.raises(TypeError, match="topn"):
        RerankCompressor(OverlapReranker(), topn=3)  # type: ignore[call-arg]


# ---------------------------------------------------------------------------- the contract


def test_reranks_best_first_with_float_scores_and_keeps_ids_and_metadata() -> None:
    reranker = OverlapReranker()
    documents = make_documents()
    out = RerankCompressor(reranker).compress_documents(documents, QUERY)

    expected = expected_order(OverlapReranker(), documents)
    assert [(d.id, d.metadata["relevance_score"]) for d in out] == expected
    assert all(type(d.metadata["relevance_score"]) is float for d in out)
    by_id = {d.id: d for d in documents}
    for document in out:
        original = by_id[document.id]
        assert document.page_content == original.page_content
        assert {k: v for k, v in document.metadata.items() if k not in ("relevance_score", "retrieval_score")} == {
            k: v for k, v in original.metadata.items() if k not in ("retrieval_score", "relevance_score")
        }
    assert len(reranker.calls) == 1


def test_ties_keep_input_order() -> None:
    documents = [Document(id=str(i), page_content="milvus search") for i in range(4)]
    out = RerankCompressor(OverlapReranker()).compress_documents(documents, QUERY)
    assert [d.id for d in out] == ["0", "1", "2", "3"]


def test_never_mutates_the_callers_documents() -> None:
    documents = make_documents()
    snapshot = copy.deepcopy(documents)
    out = RerankCompressor(OverlapReranker(), top_n=3).compress_documents(documents, QUERY)
    assert documents == snapshot
    assert all("relevance_score" not in d.metadata for d in documents)
    assert not {id(d) for d in out} & {id(d) for d in documents}
    assert not {id(d.metadata) for d in out} & {id(d.metadata) for d in documents}


def test_keeps_the_first_stage_score() -> None:
    documents = make_documents()
    out = {d.id: d for d in RerankCompressor(OverlapReranker()).compress_documents(documents, QUERY)}
    assert out["b"].metadata["retrieval_score"] == 0.8  # kept as is
    assert out["c"].metadata["retrieval_score"] == 0.7  # copied from metadata["score"]
    assert out["c"].metadata["score"] == 0.7
    assert "retrieval_score" not in out["a"].metadata  # no first-stage score known


def test_threshold_applies_before_top_n() -> None:
    documents = make_documents()
    scored = expected_order(OverlapReranker(), documents)
    threshold = 0.4  # two of the five query words
    passing = [pair for pair in scored if pair[1] >= threshold]
    assert len(passing) >= 2, "the fixture must have at least two documents above the threshold"
    assert len(passing) < len(scored), "the fixture must have documents below the threshold"

    out = RerankCompressor(OverlapReranker(), score_threshold=threshold, top_n=2).compress_documents(documents, QUERY)
    assert [(d.id, d.metadata["relevance_score"]) for d in out] == passing[:2]
    out = RerankCompressor(OverlapReranker(), score_threshold=threshold).compress_documents(documents, QUERY)
    assert [(d.id, d.metadata["relevance_score"]) for d in out] == passing
    out = RerankCompressor(OverlapReranker(), score_threshold=100.0, top_n=2).compress_documents(documents, QUERY)
    assert out == []


def test_top_n_larger_than_input_returns_all() -> None:
    documents = make_documents()
    out = RerankCompressor(OverlapReranker(), top_n=50).compress_documents(documents, QUERY)
    assert sorted(d.id for d in out) == sorted(d.id for d in documents)


def test_same_milvus_primary_key_is_scored_once() -> None:
    reranker = OverlapReranker()
    documents = make_documents()
    # The dense and the sparse leg of a hybrid search both found pk 3 (no Document.id from langchain-milvus).
    duplicate = Document(page_content="rerank after milvus hybrid search", metadata={"pk": 3, "score": 0.1})
    first = Document(page_content="rerank after milvus hybrid search", metadata={"pk": 3, "score": 0.9})
    out = RerankCompressor(reranker).compress_documents([first, *documents[:2], duplicate], QUERY)
    assert reranker.calls[0][1].count("rerank after milvus hybrid search") == 1
    assert len(out) == 3
    kept = [d for d in out if d.metadata["pk"] == 3]
    assert len(kept) == 1
    assert kept[0].metadata["retrieval_score"] == 0.9  # the first occurrence is the one kept


def test_same_document_id_is_scored_once_and_pk_takes_precedence() -> None:
    reranker = OverlapReranker()
    documents = [
        Document(id="x", page_content="milvus hybrid"),
        Document(id="x", page_content="milvus hybrid"),
        # same Document.id but different primary keys: two chunks
        Document(id="y", page_content="hybrid search", metadata={"pk": 10}),
        Document(id="y", page_content="hybrid search", metadata={"pk": 11}),
        # no identity at all: each is its own document, even with equal text
        Document(page_content="rerank"),
        Document(page_content="rerank"),
        # the primary key 1 and the Document.id "1" are different namespaces
        Document(page_content="search", metadata={"pk": 1}),
        Document(id="1", page_content="search"),
    ]
    out = RerankCompressor(reranker).compress_documents(documents, QUERY)
    assert len(reranker.calls[0][1]) == 7
    assert len(out) == 7
    assert sum(d.id == "x" for d in out) == 1
    assert sorted(d.metadata["pk"] for d in out if d.id == "y") == [10, 11]


def test_primary_keys_are_the_same_only_when_of_the_same_type() -> None:
    # 1 == True == 1.0 in Python; as primary keys they are three chunks (and "1" a fourth).
    keys = [1, True, 1.0, "1", 1]
    documents = [Document(page_content=f"milvus hybrid {i}", metadata={"pk": key}) for i, key in enumerate(keys)]
    reranker = OverlapReranker()
    out = RerankCompressor(reranker).compress_documents(documents, QUERY)
    assert reranker.calls[0][1] == [d.page_content for d in documents[:4]]
    assert sorted(repr(d.metadata["pk"]) for d in out) == ["'1'", "1", "1.0", "True"]
    ids = [Document(id=key, page_content="hybrid", metadata={}) for key in ("7", "7")]
    assert len(RerankCompressor(OverlapReranker()).compress_documents(ids, QUERY)) == 1


@pytest.mark.parametrize(("answer", "reason"), [b[1:] for b in BROKEN_ANSWERS], ids=[b[0] for b in BROKEN_ANSWERS])
async def test_an_answer_that_breaks_the_contract_is_refused_naming_the_reranker(
    answer: Callable[[Sequence[str]], Any], reason: str
) -> None:
    documents = make_documents()[:3]
    compressor = RerankCompressor(AnswerReranker(answer))
    recorder = Recorder()
    with pytest.raises(RerankResponseError, match="reranker AnswerReranker broke the Reranker contract") as sync:
        compressor.compress_documents(documents, QUERY, callbacks=[recorder])
    assert reason in str(sync.value)
    assert recorder.kinds() == [("start", "RerankCompressor"), ("error", "RerankCompressor")]
    with pytest.raises(RerankResponseError, match="AnswerReranker") as asynchronous:
        await compressor.acompress_documents(documents, QUERY)
    assert str(asynchronous.value) == str(sync.value)


def test_empty_input_returns_empty_list_without_a_call_and_with_callbacks() -> None:
    reranker = OverlapReranker()
    recorder = Recorder()
    assert RerankCompressor(reranker).compress_documents([], QUERY, callbacks=[recorder]) == []
    assert reranker.calls == []
    assert recorder.kinds() == [("start", "RerankCompressor"), ("end", "RerankCompressor")]
    assert recorder.events[1][3] == {"documents": []}


async def test_empty_input_async() -> None:
    reranker = OverlapReranker()
    recorder = Recorder()
    assert await RerankCompressor(reranker).acompress_documents([], QUERY, callbacks=[recorder]) == []
    assert reranker.calls == []
    assert recorder.kinds() == [("start", "RerankCompressor"), ("end", "RerankCompressor")]


@pytest.mark.parametrize(
    ("documents", "query", "error", "match"),
    [
        ([Document(page_content="x")], None, TypeError, "query must be a str"),
        ([Document(page_content="x")], b"milvus", TypeError, "query must be a str"),
        ("milvus is a database", QUERY, TypeError, "sequence of langchain Document"),
        (Document(page_content="x"), QUERY, TypeError, "sequence of langchain Document"),
        ({"a": 1}, QUERY, TypeError, "sequence of langchain Document"),
        ([Document(page_content="x"), "plain text"], QUERY, TypeError, r"documents\[1\].*str"),
    ],
)
async def test_bad_input_raises_clearly_before_any_call_or_callback(
    documents: Any, query: Any, error: type[Exception], match: str
) -> None:
    reranker = OverlapReranker()
    recorder = Recorder()
    compressor = RerankCompressor(reranker)
    with pytest.raises(error, match=match):
        compressor.compress_documents(documents, query, callbacks=[recorder])
    with pytest.raises(error, match=match):
        await compressor.acompress_documents(documents, query, callbacks=[recorder])
    assert reranker.calls == []
    assert recorder.events == []


def test_document_template_sends_chosen_metadata_with_the_content() -> None:
    reranker = OverlapReranker()
    documents = [
        Document(page_content="supports hybrid search", metadata={"title": "Milvus", "n": 2}),
        Document(page_content="are yellow", metadata={"title": "Bananas", "n": 1}),
    ]
    out = RerankCompressor(reranker, document_template="{title} ({n}): {page_content}").compress_documents(
        documents, "milvus hybrid"
    )
    assert reranker.calls[0][1] == ["Milvus (2): supports hybrid search", "Bananas (1): are yellow"]
    assert [d.metadata["title"] for d in out] == ["Milvus", "Bananas"]
    assert out[0].page_content == "supports hybrid search"  # the template never leaks into the result


def test_document_template_missing_field_is_a_clear_error() -> None:
    reranker = OverlapReranker()
    documents = [Document(page_content="a", metadata={"title": "A"}), Document(page_content="b")]
    with pytest.raises(ValueError, match=r"documents\[1\] has no metadata field 'title'"):
        RerankCompressor(reranker, document_template="{title}: {page_content}").compress_documents(documents, QUERY)
    assert reranker.calls == []


def test_changed_fields_take_effect_and_are_checked() -> None:
    documents = make_documents()
    compressor = RerankCompressor(OverlapReranker())
    compressor.top_n = 2
    assert len(compressor.compress_documents(documents, QUERY)) == 2
    assert len(compressor.model_copy(update={"top_n": 1}).compress_documents(documents, QUERY)) == 1
    compressor.top_n = 0
    with pytest.raises(ValueError, match="top_n"):
        compressor.compress_documents(documents, QUERY)


def test_changed_reranker_and_on_error_take_effect() -> None:
    documents = make_documents()
    compressor = RerankCompressor(FailingReranker())
    compressor.on_error = "passthrough"
    assert [d.id for d in compressor.compress_documents(documents, QUERY)] == ["a", "b", "c", "d", "e"]
    other = OverlapReranker()
    swapped = compressor.model_copy(update={"reranker": other, "on_error": "raise"})
    assert [(d.id, d.metadata["relevance_score"]) for d in swapped.compress_documents(documents, QUERY)] == (
        expected_order(OverlapReranker(), documents)
    )
    assert len(other.calls) == 1


# ---------------------------------------------------------------------------- candidates: the retriever's step


CANDIDATES = [
    Candidate(id=7, text="bananas are yellow", score=0.9, metadata={"src": "fruit"}),
    Candidate(id=3, text="rerank after milvus hybrid search", score=0.8),
    Candidate(id=7, text="bananas are yellow", score=0.7, metadata={"src": "fruit"}),
    Candidate(id="3", text="milvus supports hybrid search", score=0.6, metadata={"pk": "row field"}),
]


@pytest.mark.parametrize("use_async", [False, True])
async def test_rerank_candidates_returns_documents_in_one_chain_run(use_async: bool) -> None:
    reranker = OverlapReranker()
    compressor = RerankCompressor(reranker, top_n=3, document_template="{pk}: {page_content}")
    recorder = Recorder()
    if use_async:
        out = await compressor.arerank_candidates(QUERY, CANDIDATES, callbacks=[recorder])
    else:
        out = compressor.rerank_candidates(QUERY, CANDIDATES, callbacks=[recorder])
    expected = RerankPipeline(OverlapReranker()).rerank(
        QUERY, CANDIDATES, texts=[f"{c.id}: {c.text}" for c in CANDIDATES]
    )
    assert out == [candidate_to_document(c) for c in expected]
    assert [d.metadata["pk"] for d in out] == [3, "3", 7]  # the primary key, typed as Milvus typed it
    assert [d.metadata["retrieval_rank"] for d in out] == [2, 4, 1]
    ((_, sent, top_n),) = reranker.calls
    assert sent == ["7: bananas are yellow", "3: rerank after milvus hybrid search", "3: milvus supports hybrid search"]
    assert top_n == 3
    assert recorder.kinds() == [("start", "RerankCompressor"), ("end", "RerankCompressor")]
    assert recorder.events[0][3] == {"query": QUERY, "candidates": CANDIDATES}
    assert recorder.events[1][3] == {"documents": out}
    assert all(c.rerank_score is None for c in CANDIDATES)  # the caller's candidates are untouched


async def test_rerank_candidates_takes_the_selection_of_one_call() -> None:
    compressor = RerankCompressor(OverlapReranker(), top_n=3)
    one = compressor.rerank_candidates(QUERY, CANDIDATES, selection=compressor.selection.with_options({"top_n": 1}))
    assert [d.metadata["pk"] for d in one] == [3]
    above = await compressor.arerank_candidates(QUERY, CANDIDATES, selection=Selection(score_threshold=0.5))
    assert [d.metadata["pk"] for d in above] == [3, "3"]
    assert compressor.selection == Selection(top_n=3)  # nothing sticks
    assert len(compressor.rerank_candidates(QUERY, CANDIDATES)) == 3
    recorder = Recorder()
    with pytest.raises(TypeError, match="query must be a str, got int"):
        compressor.rerank_candidates(3, CANDIDATES, callbacks=[recorder])  # type: ignore[arg-type]
    assert recorder.events == []
    assert compressor.rerank_candidates(QUERY, [], callbacks=[recorder]) == []
    assert recorder.kinds() == [("start", "RerankCompressor"), ("end", "RerankCompressor")]


# ---------------------------------------------------------------------------- errors and passthrough


def test_reranker_failure_propagates_and_ends_the_callback_run_with_the_error() -> None:
    recorder = Recorder()
    with pytest.raises(RerankConnectionError, match=r"127\.0\.0\.1:9"):
        RerankCompressor(FailingReranker()).compress_documents(make_documents(), QUERY, callbacks=[recorder])
    assert recorder.kinds() == [("start", "RerankCompressor"), ("error", "RerankCompressor")]
    assert isinstance(recorder.events[1][3], RerankConnectionError)


async def test_reranker_failure_async() -> None:
    recorder = Recorder()
    with pytest.raises(RerankConnectionError):
        await RerankCompressor(FailingReranker()).acompress_documents(make_documents(), QUERY, callbacks=[recorder])
    assert recorder.kinds() == [("start", "RerankCompressor"), ("error", "RerankCompressor")]


@pytest.mark.parametrize("use_async", [False, True])
async def test_passthrough_keeps_input_order_without_relevance_score(
    use_async: bool, caplog: pytest.LogCaptureFixture
) -> None:
    documents = make_documents()
    documents[0] = Document(id="a", page_content="stale", metadata={"pk": 1, "relevance_score": 0.99})
    compressor = RerankCompressor(FailingReranker(), top_n=3, on_error="passthrough")
    recorder = Recorder()
    with caplog.at_level(logging.WARNING):
        if use_async:
            out = await compressor.acompress_documents(documents, QUERY, callbacks=[recorder])
        else:
            out = compressor.compress_documents(documents, QUERY, callbacks=[recorder])
    assert [d.id for d in out] == ["a", "b", "c"]
    assert all("relevance_score" not in d.metadata for d in out)
    assert out[1].metadata["retrieval_score"] == 0.8
    assert documents[0].metadata["relevance_score"] == 0.99  # the caller's copy is untouched
    assert "not reranked" in caplog.text
    assert recorder.kinds() == [("start", "RerankCompressor"), ("end", "RerankCompressor")]


# ---------------------------------------------------------------------------- async and callbacks


@pytest.mark.parametrize(
    "options",
    [{}, {"top_n": 2}, {"score_threshold": 0.4}, {"score_threshold": 0.2, "top_n": 3}],  # 2 and 1 of 5 query words
)
async def test_async_equals_sync(options: dict[str, Any]) -> None:
    documents = [*make_documents(), Document(page_content="rerank search", metadata={"pk": 2})]
    compressor = RerankCompressor(OverlapReranker(), **options)
    sync = compressor.compress_documents(documents, QUERY)
    assert await compressor.acompress_documents(documents, QUERY) == sync
    assert sync, "the options must leave something to compare"


async def test_async_path_awaits_arerank_on_the_event_loop() -> None:
    reranker = AsyncOnlyReranker()
    out = await RerankCompressor(reranker, top_n=2).acompress_documents(make_documents(), QUERY)
    assert len(out) == 2
    assert reranker.threads == [threading.get_ident()]  # no worker thread around a sync call


@pytest.mark.parametrize("use_async", [False, True])
async def test_callbacks_see_the_rerank_with_inputs_and_outputs(use_async: bool) -> None:
    recorder = Recorder()
    documents = make_documents()
    compressor = RerankCompressor(OverlapReranker(), top_n=2)
    if use_async:
        out = await compressor.acompress_documents(documents, QUERY, callbacks=[recorder])
    else:
        out = compressor.compress_documents(documents, QUERY, callbacks=[recorder])
    assert recorder.kinds() == [("start", "RerankCompressor"), ("end", "RerankCompressor")]
    (_, _, start_id, inputs), (_, _, end_id, outputs) = recorder.events
    assert start_id == end_id
    assert inputs == {"query": QUERY, "documents": documents}
    assert outputs == {"documents": out}


# ---------------------------------------------------------------------------- the real local cross-encoder


def test_local_cross_encoder_scores_match_the_reranker(tiny_model: Path) -> None:
    reranker = CrossEncoderReranker(tiny_model, device="cpu")
    documents = make_documents()
    out = RerankCompressor(reranker, top_n=3).compress_documents(documents, QUERY)
    direct = reranker.rerank(QUERY, [d.page_content for d in documents])
    assert [(d.id, d.metadata["relevance_score"]) for d in out] == [
        (documents[r.index].id, r.score) for r in direct[:3]
    ]
    assert all(type(d.metadata["relevance_score"]) is float for d in out)


async def test_local_cross_encoder_async_equals_sync(tiny_model: Path) -> None:
    compressor = RerankCompressor(CrossEncoderReranker(tiny_model, device="cpu"), top_n=4)
    documents = make_documents()
    sync = compressor.compress_documents(documents, QUERY)
    assert await compressor.acompress_documents(documents, QUERY) == sync
    assert len(sync) == 4
