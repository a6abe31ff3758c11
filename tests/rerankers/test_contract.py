"""The reranker contract on every backend: answers checked, blank documents never scored, unencodable text named.

Backends: the local CrossEncoderReranker (a tiny generated model), vLLM, TEI and Cohere-compatible
rerankers against the loopback server, and the loopback server itself serving our local reranker.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import BROKEN_ANSWERS, AnswerReranker

from milvus_rerank import (
    CohereReranker,
    CrossEncoderReranker,
    RerankPipeline,
    RerankResponseError,
    RerankResult,
    TEIReranker,
    VLLMReranker,
)
from milvus_rerank.rerankers.contract import (
    BLANK_SCORE,
    check_answer,
    check_rerank_args,
    documents_to_score,
)
from milvus_rerank.rerankers.http import HTTPReranker, validate_results
from milvus_rerank.testing.server import RerankTestServer, WordOverlapReranker
from milvus_rerank.types import Candidate

QUERY = "milvus vector search"
# Blank: empty, spaces, a newline and a tab, an ideographic space (U+3000), a no-break space.
BLANKS = ["", "   ", "\n\t", "\u3000", "\xa0"]
DOCUMENTS = ["", "milvus search", "   ", "vector birds", "\n\t", "milvus vector search", "\u3000", "birds", "\xa0"]
TEXT_POSITIONS = [1, 3, 5, 7]
BLANK_POSITIONS = [0, 2, 4, 6, 8]


Call = Callable[..., list[RerankResult]]


@pytest.fixture(params=["sync", "async"])
def call(request: pytest.FixtureRequest) -> Call:
    """Calls ``reranker.rerank`` or, in a fresh event loop, ``reranker.arerank``."""
    if request.param == "sync":
        return lambda reranker, query, documents, **options: reranker.rerank(query, documents, **options)
    return lambda reranker, query, documents, **options: asyncio.run(reranker.arerank(query, documents, **options))


@pytest.fixture(params=["vllm", "tei", "cohere"])
def http_backend(request: pytest.FixtureRequest) -> Iterator[tuple[RerankTestServer, HTTPReranker]]:
    flavor = "tei" if request.param == "tei" else "vllm"
    with RerankTestServer(flavor=flavor) as server:
        if request.param == "vllm":
            reranker: HTTPReranker = VLLMReranker(server.url)
        elif request.param == "tei":
            reranker = TEIReranker(server.url)
        else:
            reranker = CohereReranker(server.url, model=server.model_name)
        with reranker:
            yield server, reranker


# --- the answer check --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "reason"), [b[1:] for b in BROKEN_ANSWERS], ids=[b[0] for b in BROKEN_ANSWERS])
def test_check_answer_refuses_a_broken_answer_naming_the_reranker(
    answer: Callable[[Sequence[str]], Any], reason: str
) -> None:
    reranker = AnswerReranker(answer)
    with pytest.raises(RerankResponseError, match=r"^reranker AnswerReranker broke the Reranker contract") as error:
        check_answer(reranker, answer(["a", "b", "c"]), n_documents=3, top_n=None)
    assert reason in str(error.value)
    assert "fix AnswerReranker.rerank/arerank" in str(error.value)


def test_check_answer_takes_any_order_and_the_top_n_cut_and_returns_them_ranked() -> None:
    answer = [RerankResult(2, 0.1), RerankResult(0, 0.9), RerankResult(1, 0.5)]
    ranked = [RerankResult(0, 0.9), RerankResult(1, 0.5), RerankResult(2, 0.1)]
    assert check_answer(object(), answer, n_documents=3, top_n=None) == ranked
    assert check_answer(object(), tuple(answer[:2]), n_documents=3, top_n=2) == ranked[::2]
    assert check_answer(object(), answer, n_documents=3, top_n=10) == ranked
    with pytest.raises(RerankResponseError, match="expected 2 results for 3 documents, got 3"):
        check_answer(object(), answer, n_documents=3, top_n=2)
    ties = [RerankResult(1, 0.5), RerankResult(0, 0.5)]
    assert check_answer(object(), ties, n_documents=2, top_n=None) == ties[::-1]  # ties by index
    # An answer already in rank order (every one of ours) comes back as it is: the very same results.
    kept = check_answer(object(), ranked, n_documents=3, top_n=None)
    assert all(mine is theirs for mine, theirs in zip(kept, ranked, strict=True))


@pytest.mark.parametrize(
    "pairs",
    [
        [(0, 0.5)],
        [(0, 0.5), (0, 0.4)],
        [(0, 0.5), (2, 0.4)],
        [(True, 0.5), (1, 0.4)],
        [(0, math.nan), (1, 0.4)],
        [(0, 0.5), (1, None)],
    ],
)
def test_a_server_and_a_reranker_object_answer_under_the_same_rules(pairs: list[tuple[Any, Any]]) -> None:
    with pytest.raises(ValueError, match=r".") as wire:
        validate_results([{"index": i, "score": s} for i, s in pairs], n_documents=2, expected=2, score_key="score")
    with pytest.raises(RerankResponseError) as contract:
        check_answer(object(), [RerankResult(i, s) for i, s in pairs], n_documents=2, top_n=None)
    assert str(wire.value) in str(contract.value)


# --- lone surrogates: named, on every backend, before any model or request ----------------------------------------


def test_check_rerank_args_names_the_text_holding_a_lone_surrogate() -> None:
    with pytest.raises(ValueError, match=r"^query holds a lone surrogate \('\\udc80'\) at character 4, which UTF-8"):
        check_rerank_args("café\udc80", ["fine"], None)
    with pytest.raises(ValueError, match=r"^documents\[2\] holds a lone surrogate \('\\ud800'\) at character 0"):
        check_rerank_args("q", ["a", "é", "\ud800x"], None)
    assert check_rerank_args("q", ["é", "😀", "中文"], None) == ["é", "😀", "中文"]  # real non-ASCII is fine


def test_a_lone_surrogate_is_named_by_the_local_reranker_before_the_model_loads(tmp_path: Path, call: Call) -> None:
    # No model exists at this path: the argument check must come first.
    reranker = CrossEncoderReranker(tmp_path / "no-model-here", device="cpu")
    with pytest.raises(ValueError, match=r"^documents\[1\] holds a lone surrogate"):
        call(reranker, QUERY, ["fine", "bad \ud800 text"])  # type: ignore[arg-type]


def test_a_lone_surrogate_is_named_by_every_http_reranker_before_any_request(
    http_backend: tuple[RerankTestServer, HTTPReranker], call: Call
) -> None:
    server, reranker = http_backend
    with pytest.raises(ValueError, match=r"^documents\[1\] holds a lone surrogate"):
        call(reranker, QUERY, ["fine", "bad \ud800 text"])
    with pytest.raises(ValueError, match=r"^query holds a lone surrogate"):
        call(reranker, "\udfff", ["fine"])
    assert server.requests == []


# --- blank documents: never sent, scored lowest, the same on every backend ------------------------------------------


def expected_with_blanks(scored: list[RerankResult], top_n: int | None = None) -> list[RerankResult]:
    """``scored`` (results for the non-blank DOCUMENTS, indices into them) mapped back, the blanks last."""
    results = [RerankResult(TEXT_POSITIONS[r.index], r.score) for r in scored]
    results += [RerankResult(position, BLANK_SCORE) for position in BLANK_POSITIONS]
    return results if top_n is None else results[:top_n]


def test_documents_to_score_sets_blank_documents_apart() -> None:
    to_score = documents_to_score(DOCUMENTS)
    assert to_score.texts == [DOCUMENTS[i] for i in TEXT_POSITIONS]
    assert to_score.positions == TEXT_POSITIONS
    scored = [RerankResult(1, 0.2), RerankResult(0, 0.7), RerankResult(3, -5.0), RerankResult(2, 0.7)]
    assert to_score.results(scored, None) == [
        RerankResult(1, 0.7),
        RerankResult(5, 0.7),
        RerankResult(3, 0.2),
        RerankResult(7, -5.0),
        *(RerankResult(position, BLANK_SCORE) for position in BLANK_POSITIONS),
    ]
    assert to_score.results(scored[:2], 2) == [RerankResult(1, 0.7), RerankResult(3, 0.2)]
    assert to_score.scores([0.7, 0.2, 0.7, -5.0]) == [
        BLANK_SCORE,
        0.7,
        BLANK_SCORE,
        0.2,
        BLANK_SCORE,
        0.7,
        BLANK_SCORE,
        -5.0,
        BLANK_SCORE,
    ]
    no_blanks = documents_to_score(["a", "b"])
    assert no_blanks.results([RerankResult(1, 0.5), RerankResult(0, 0.5)], None) == [
        RerankResult(0, 0.5),
        RerankResult(1, 0.5),
    ]


def test_the_blank_score_is_finite_json_and_below_any_threshold() -> None:
    assert math.isfinite(BLANK_SCORE)
    assert json.loads(json.dumps({"relevance_score": BLANK_SCORE}, allow_nan=False))["relevance_score"] == BLANK_SCORE
    assert all(score > BLANK_SCORE for score in (-1e300, -1e9, -1.0, 0.0))


def test_the_local_reranker_never_gives_a_blank_document_to_the_model(tiny_model: Path, call: Call) -> None:
    reranker = CrossEncoderReranker(tiny_model, device="cpu")
    texts = [DOCUMENTS[i] for i in TEXT_POSITIONS]
    alone = reranker.rerank(QUERY, texts)
    assert call(reranker, QUERY, DOCUMENTS) == expected_with_blanks(alone)
    assert call(reranker, QUERY, DOCUMENTS, top_n=6) == expected_with_blanks(alone, 6)
    assert reranker.score(QUERY, DOCUMENTS) == documents_to_score(DOCUMENTS).scores(reranker.score(QUERY, texts))


def test_only_blank_documents_load_no_model(tmp_path: Path, call: Call) -> None:
    reranker = CrossEncoderReranker(tmp_path / "no-model-here", device="cpu")
    assert call(reranker, QUERY, BLANKS, top_n=2) == [RerankResult(0, BLANK_SCORE), RerankResult(1, BLANK_SCORE)]
    assert reranker.score(QUERY, BLANKS) == [BLANK_SCORE] * len(BLANKS)


def test_http_rerankers_never_send_a_blank_document(
    http_backend: tuple[RerankTestServer, HTTPReranker], call: Call
) -> None:
    server, reranker = http_backend
    texts = [DOCUMENTS[i] for i in TEXT_POSITIONS]
    alone = WordOverlapReranker().rerank(QUERY, texts)
    assert call(reranker, QUERY, DOCUMENTS) == expected_with_blanks(alone)
    assert call(reranker, QUERY, DOCUMENTS, top_n=6) == expected_with_blanks(alone, 6)
    assert call(reranker, QUERY, DOCUMENTS, top_n=2) == expected_with_blanks(alone, 2)
    sent = [record.body.get("documents", record.body.get("texts")) for record in server.rerank_requests]
    assert sent == [texts, texts, texts]


def test_http_rerankers_send_nothing_for_blank_documents_only(
    http_backend: tuple[RerankTestServer, HTTPReranker], call: Call
) -> None:
    server, reranker = http_backend
    assert call(reranker, QUERY, BLANKS) == [RerankResult(i, BLANK_SCORE) for i in range(len(BLANKS))]
    assert call(reranker, QUERY, BLANKS, top_n=1) == [RerankResult(0, BLANK_SCORE)]
    assert server.requests == []  # no request at all, not even model or batch-size discovery


def test_the_loopback_server_serving_our_reranker_scores_blank_documents_lowest(tiny_model: Path) -> None:
    local = CrossEncoderReranker(tiny_model, device="cpu")
    with RerankTestServer(local) as server:
        # A client that sends blank documents (Milvus' own model ranker, curl) gets the policy from the server.
        answer = httpx.post(server.url + "/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS}).json()
        scores = {result["index"]: result["relevance_score"] for result in answer["results"]}
        assert [scores[i] for i in BLANK_POSITIONS] == [BLANK_SCORE] * len(BLANK_POSITIONS)
        with VLLMReranker(server.url) as remote:
            assert remote.rerank(QUERY, DOCUMENTS) == local.rerank(QUERY, DOCUMENTS)


def test_a_threshold_drops_blank_documents_and_metadata_stays_json(tiny_model: Path) -> None:
    candidates = [Candidate(id=i, text=text) for i, text in enumerate(DOCUMENTS)]
    pipeline = RerankPipeline(CrossEncoderReranker(tiny_model, device="cpu"))
    everything = pipeline.rerank(QUERY, candidates)
    assert [c.id for c in everything[-len(BLANK_POSITIONS) :]] == BLANK_POSITIONS
    json.dumps([c.rerank_score for c in everything], allow_nan=False)
    lowest_text_score = min(c.rerank_score for c in everything if c.id in TEXT_POSITIONS)  # type: ignore[type-var]
    kept = pipeline.with_selection({"score_threshold": min(lowest_text_score, -1e300)}).rerank(QUERY, candidates)
    assert sorted(c.id for c in kept) == TEXT_POSITIONS
