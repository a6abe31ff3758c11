"""FallbackReranker: which failures fall through, one reranker per call, the warning line, the pipeline's last step.

The first reranker is a real VLLMReranker against a loopback server that misbehaves on purpose
(statuses, refused connections, malformed answers, slowness); the second scores differently
(a user's own word-overlap reranker), so a mix of the two would show.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import AnswerReranker, FailingReranker, OverlapReranker, closed_port

from milvus_rerank import (
    Candidate,
    FallbackReranker,
    RerankConnectionError,
    RerankError,
    RerankHTTPError,
    RerankResult,
    RerankTimeoutError,
    VLLMReranker,
)
from milvus_rerank.pipeline import RerankPipeline
from milvus_rerank.rerankers.fallback import falls_through
from milvus_rerank.testing.server import Fault, RerankTestServer, WordOverlapReranker

QUERY = "milvus vector search"
DOCUMENTS = [f"document {i} on {'milvus vector search' if i % 2 else 'birds'} {'x ' * i}" for i in range(6)]
FIRST_OPTIONS: dict[str, Any] = {"model": "tiny-reranker", "max_retries": 0, "timeout": 1, "max_batch_size": 2}


class ScaledOverlap(WordOverlapReranker):
    """Word overlap at a tenth of the scale: scores unlike the server's, so a mix would show."""

    def rerank(self, query: str, documents: Any, *, top_n: int | None = None) -> list[RerankResult]:
        return [RerankResult(r.index, r.score / 10) for r in super().rerank(query, documents, top_n=top_n)]


@pytest.fixture
def server() -> Iterator[RerankTestServer]:
    with RerankTestServer() as running:
        yield running


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def call(mode: str, reranker: Any, query: Any = QUERY, documents: Any = DOCUMENTS, **kwargs: Any) -> list[RerankResult]:
    if mode == "sync":
        return reranker.rerank(query, documents, **kwargs)
    return asyncio.run(reranker.arerank(query, documents, **kwargs))


def expected_second(top_n: int | None = None) -> list[tuple[int, float]]:
    return [(r.index, r.score) for r in ScaledOverlap().rerank(QUERY, DOCUMENTS, top_n=top_n)]


def test_the_first_reranker_scores_every_document_when_it_answers(mode: str, server: RerankTestServer) -> None:
    second = OverlapReranker()
    chain = FallbackReranker([VLLMReranker(server.url, **FIRST_OPTIONS), second])
    out = call(mode, chain, top_n=4)
    assert [(r.index, r.score) for r in out] == [
        (r.index, r.score) for r in WordOverlapReranker().rerank(QUERY, DOCUMENTS, top_n=4)
    ]
    assert {r.scored_by for r in out} == {"VLLMReranker"}
    assert second.calls == []


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.server_error(503), "RerankHTTPError"),
        (Fault.server_error(500), "RerankHTTPError"),
        (Fault.rate_limited(retry_after=0), "RerankHTTPError"),
        (Fault.malformed_json(), "RerankResponseError"),
        (Fault.nan_score(), "RerankResponseError"),
        (Fault.drop(), "RerankConnectionError"),
        (Fault.slow(3), "RerankTimeoutError"),
    ],
    ids=["503", "500", "429", "malformed-json", "nan-score", "dropped", "timeout"],
)
def test_a_service_failure_falls_through_and_the_next_one_scores_the_whole_call(
    mode: str, server: RerankTestServer, fault: Fault, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    # One batch of three fails; the two that succeed are thrown away: the call is the second reranker's alone.
    server.inject(fault, times=1)
    chain = FallbackReranker([VLLMReranker(server.url, **FIRST_OPTIONS), ScaledOverlap()], names=["gpu", "local"])
    with caplog.at_level(logging.WARNING, logger="milvus_rerank.rerankers.fallback"):
        out = call(mode, chain)
    assert [(r.index, r.score) for r in out] == expected_second()
    assert {r.scored_by for r in out} == {"local"}
    lines = [r.getMessage() for r in caplog.records if r.name == "milvus_rerank.rerankers.fallback"]
    assert lines == [f"reranker gpu failed ({error}); falling through to local"]


def test_a_refused_connection_falls_through(mode: str) -> None:
    chain = FallbackReranker([VLLMReranker(f"http://127.0.0.1:{closed_port()}", **FIRST_OPTIONS), ScaledOverlap()])
    out = call(mode, chain, top_n=2)
    assert [(r.index, r.score) for r in out] == expected_second(top_n=2)
    assert {r.scored_by for r in out} == {"ScaledOverlap"}


@pytest.mark.parametrize("status", [400, 401, 404, 413, 422])
def test_a_4xx_that_says_the_request_is_wrong_raises_without_asking_the_next(
    mode: str, server: RerankTestServer, status: int
) -> None:
    server.inject(Fault.vllm_error(status, "this request is wrong"), times=1)
    second = OverlapReranker()
    chain = FallbackReranker([VLLMReranker(server.url, **FIRST_OPTIONS), second])
    with pytest.raises(RerankHTTPError, match="this request is wrong") as caught:
        call(mode, chain)
    assert caught.value.status_code == status
    assert second.calls == []


def test_a_bad_argument_raises_before_any_reranker_is_asked(mode: str, server: RerankTestServer) -> None:
    second = OverlapReranker()
    chain = FallbackReranker([VLLMReranker(server.url, **FIRST_OPTIONS), second])
    with pytest.raises(TypeError, match="query must be a str"):
        call(mode, chain, query=None)
    with pytest.raises(ValueError, match="top_n"):
        call(mode, chain, top_n=0)
    assert server.rerank_requests == []
    assert second.calls == []
    assert call(mode, chain, documents=[]) == []


def test_a_users_reranker_that_breaks_the_contract_falls_through(mode: str) -> None:
    broken = AnswerReranker(lambda docs: [RerankResult(0, 1.0)])  # one result for six documents
    out = call(mode, FallbackReranker([broken, ScaledOverlap()]))
    assert {r.scored_by for r in out} == {"ScaledOverlap"}


def test_an_error_that_is_not_a_service_failure_raises(mode: str) -> None:
    class Buggy(OverlapReranker):
        def rerank(self, query: str, documents: Any, *, top_n: int | None = None) -> list[RerankResult]:
            raise KeyError("a bug")

        async def arerank(self, query: str, documents: Any, *, top_n: int | None = None) -> list[RerankResult]:
            raise KeyError("a bug")

    with pytest.raises(KeyError, match="a bug"):
        call(mode, FallbackReranker([Buggy(), OverlapReranker()]))


def test_when_every_reranker_fails_the_last_error_is_raised_and_passthrough_keeps_first_stage_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    chain = FallbackReranker([VLLMReranker(dead, **FIRST_OPTIONS), FailingReranker()])
    with caplog.at_level(logging.WARNING):
        with pytest.raises(RerankConnectionError, match=r"cannot reach http://127\.0\.0\.1:9/"):
            chain.rerank(QUERY, DOCUMENTS)
        candidates = [Candidate(id=i, text=text) for i, text in enumerate(DOCUMENTS)]
        out = RerankPipeline(chain, on_error="passthrough", top_n=3).rerank(QUERY, candidates)
    assert [c.id for c in out] == [0, 1, 2]
    assert not any(c.reranked for c in out)
    assert "reranker VLLMReranker failed (RerankConnectionError); falling through to FailingReranker" in caplog.text
    assert "not reranked" in caplog.text


def test_the_rule_of_which_errors_fall_through() -> None:
    def http(status: int) -> RerankHTTPError:
        return RerankHTTPError("x", endpoint=None, status_code=status, server_message="x")

    assert all(falls_through(http(status)) for status in (500, 502, 503, 504, 408, 429))
    assert not any(falls_through(http(status)) for status in (400, 401, 403, 404, 409, 413, 415, 422, 307))
    assert falls_through(RerankConnectionError("x"))
    assert falls_through(RerankTimeoutError("x"))
    assert falls_through(RerankError("a user's reranker says it cannot score now"))
    assert falls_through(ConnectionResetError())
    assert falls_through(TimeoutError())
    assert not any(falls_through(exc) for exc in (ValueError("x"), TypeError("x"), KeyError("x"), OSError("x")))


@pytest.mark.parametrize(
    ("rerankers", "names", "error", "message"),
    [
        ("not a list", None, TypeError, "rerankers must be a list of rerankers, got str"),
        ([OverlapReranker()], None, ValueError, "two rerankers or more, got 1"),
        ([OverlapReranker(), object()], None, TypeError, r"rerankers\[1\] must have rerank\(\) and arerank\(\)"),
        ([OverlapReranker(), OverlapReranker()], ["a", "a"], ValueError, "its own non-empty name"),
        ([OverlapReranker(), OverlapReranker()], ["a"], ValueError, "its own non-empty name"),
        ([OverlapReranker(), OverlapReranker()], ["a", 2], TypeError, "names must be a list of str"),
    ],
)
def test_bad_chains_are_refused(rerankers: Any, names: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        FallbackReranker(rerankers, names=names)


def test_default_names_tell_two_of_one_class_apart() -> None:
    chain = FallbackReranker([OverlapReranker(), OverlapReranker(), ScaledOverlap()])
    assert chain.names == ("OverlapReranker[0]", "OverlapReranker[1]", "ScaledOverlap")
    assert repr(chain) == "FallbackReranker(OverlapReranker[0], OverlapReranker[1], ScaledOverlap)"


async def test_closing_the_chain_closes_each_reranker(server: RerankTestServer) -> None:
    first, second = VLLMReranker(server.url, **FIRST_OPTIONS), VLLMReranker(server.url, **FIRST_OPTIONS)
    chain = FallbackReranker([first, second, OverlapReranker()])
    assert len(await chain.arerank(QUERY, DOCUMENTS)) == len(DOCUMENTS)
    await chain.aclose()
    with pytest.raises(RuntimeError, match="is closed"):
        first.rerank(QUERY, DOCUMENTS)
    other = VLLMReranker(server.url, **FIRST_OPTIONS)
    FallbackReranker([other, OverlapReranker()]).close()
    with pytest.raises(RuntimeError, match="is closed"):
        await other.arerank(QUERY, DOCUMENTS)
