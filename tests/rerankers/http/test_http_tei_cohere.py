"""TEI and Cohere-compatible rerankers on the shared core, and HTTP == local for the same tiny model."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from milvus_rerank import CohereReranker, CrossEncoderReranker, RerankHTTPError, TEIReranker, VLLMReranker
from milvus_rerank.testing.server import Fault, RerankTestServer, WordOverlapReranker

QUERY = "milvus vector search"
DOCS = [f"text {i} about milvus search" if i % 4 == 0 else f"text {i} about {i % 5} birds" for i in range(50)]
FAST = {"backoff": 0.001}


def expected(documents: list[str], top_n: int | None = None) -> list:
    return WordOverlapReranker().rerank(QUERY, documents, top_n=top_n)


@pytest.fixture
def tei() -> Iterator[RerankTestServer]:
    with RerankTestServer(flavor="tei", max_client_batch_size=12) as server:
        yield server


# -- TEI ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint_suffix", ["", "/rerank"])
def test_tei_batch_size_comes_from_info(tei: RerankTestServer, endpoint_suffix: str) -> None:
    with TEIReranker(tei.url + endpoint_suffix) as reranker:
        assert reranker.rerank(QUERY, DOCS, top_n=5) == expected(DOCS, 5)
        assert reranker.rerank(QUERY, DOCS[:3]) == expected(DOCS[:3])
    gets = [record.path for record in tei.requests if record.method == "GET"]
    assert gets == ["/info"]
    sizes = [record.n_documents for record in tei.rerank_requests]
    assert sorted(sizes) == [2, 3, 12, 12, 12, 12]
    assert all(set(record.body) == {"query", "texts", "raw_scores"} for record in tei.rerank_requests)


async def test_tei_async_path_discovers_and_batches_alike(tei: RerankTestServer) -> None:
    async with TEIReranker(tei.url) as reranker:
        assert await reranker.arerank(QUERY, DOCS, top_n=5) == expected(DOCS, 5)
    assert sorted(record.n_documents for record in tei.rerank_requests) == [2, 12, 12, 12, 12]


def test_tei_concurrent_first_calls_ask_info_once() -> None:
    with RerankTestServer(flavor="tei", max_client_batch_size=12, discovery_time=0.4) as server:

        async def run() -> list[list]:
            async with TEIReranker(server.url) as reranker:
                return await asyncio.gather(*(reranker.arerank(QUERY, DOCS[:20]) for _ in range(6)))

        results = asyncio.run(run())
        gets = [record.path for record in server.requests if record.method == "GET"]
        sizes = sorted(record.n_documents for record in server.rerank_requests)
    assert gets == ["/info"]
    assert sizes == [8] * 6 + [12] * 6
    assert all(result == expected(DOCS[:20]) for result in results)


def test_tei_sends_its_own_options(tei: RerankTestServer) -> None:
    with TEIReranker(tei.url, raw_scores=True, truncate=True, truncation_direction="Left", max_batch_size=50) as r:
        r.rerank(QUERY, DOCS[:4])
    (record,) = tei.rerank_requests
    assert record.body == {
        "query": QUERY,
        "texts": DOCS[:4],
        "raw_scores": True,
        "truncate": True,
        "truncation_direction": "Left",
    }
    assert not any(record.path == "/info" for record in tei.requests)


@pytest.mark.parametrize("status", [413, 422])
def test_tei_batch_limit_error_says_what_to_set(status: int) -> None:
    with RerankTestServer(flavor="tei", max_client_batch_size=12, tei_batch_limit_status=status) as server:
        reranker = TEIReranker(server.url, max_batch_size=20, **FAST)
        with pytest.raises(RerankHTTPError, match="max_batch_size=12") as caught:
            reranker.rerank(QUERY, DOCS[:20])
        reranker.close()
    assert caught.value.status_code == status
    assert "maximum allowed batch size 12" in caught.value.server_message
    assert server.rerank_arrivals == 1  # refused once, not retried


def test_tei_injected_batch_limit_fault_is_not_retried(tei: RerankTestServer) -> None:
    tei.inject(Fault.tei_batch_limit(8, batch=10), times=3)
    with TEIReranker(tei.url, max_batch_size=10, **FAST) as reranker, pytest.raises(RerankHTTPError, match="=8"):
        reranker.rerank(QUERY, DOCS[:10])
    assert tei.rerank_arrivals == 1


def test_tei_401_with_an_empty_body_still_explains() -> None:
    with RerankTestServer(flavor="tei", api_key="k-1") as server:
        reranker = TEIReranker(server.url, max_batch_size=8)
        with pytest.raises(RerankHTTPError, match="HTTP 401: Unauthorized"):
            reranker.rerank(QUERY, DOCS[:3])
        reranker.close()


@pytest.mark.parametrize("fault", [Fault.nan_score(), Fault.duplicate_index(), Fault.respond(200, {"results": []})])
def test_tei_answers_are_validated(tei: RerankTestServer, fault: Fault) -> None:
    from milvus_rerank import RerankResponseError

    tei.inject(fault)
    with TEIReranker(tei.url, max_batch_size=10) as reranker, pytest.raises(RerankResponseError):
        reranker.rerank(QUERY, DOCS[:5])


def test_tei_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="truncation_direction"):
        TEIReranker("http://127.0.0.1:1", truncation_direction="up")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="truncate"):
        TEIReranker("http://127.0.0.1:1", truncate=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="texts"):
        TEIReranker("http://127.0.0.1:1", extra_body={"texts": []})


# -- Cohere-compatible ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["cohere", "infinity", "vllm"])
def test_cohere_reranker_reads_every_response_shape(shape: str) -> None:
    with RerankTestServer(response_shape=shape) as server:  # type: ignore[arg-type]
        with CohereReranker(server.url, model=server.model_name, max_batch_size=20, max_tokens_per_doc=256) as r:
            assert r.rerank(QUERY, DOCS, top_n=3) == expected(DOCS, 3)
            assert asyncio.run(r.arerank(QUERY, DOCS[:4], top_n=2)) == expected(DOCS[:4], 2)
        paths = {record.path for record in server.rerank_requests}
        bodies = [record.body for record in server.rerank_requests]
    assert paths == {"/v2/rerank"}
    assert all(body["max_tokens_per_doc"] == 256 and body["model"] == "tiny-reranker" for body in bodies)
    assert [body.get("top_n") for body in bodies] == [None, None, None, 2]


def test_cohere_reranker_reaches_an_infinity_style_route() -> None:
    with RerankTestServer(response_shape="infinity") as server:
        with CohereReranker(server.url + "/rerank") as reranker:
            assert reranker.rerank(QUERY, DOCS[:6], top_n=6) == expected(DOCS[:6])
        (record,) = server.rerank_requests
    assert record.path == "/rerank"
    assert "model" not in record.body
    assert record.body["top_n"] == 6  # clamped, never 0: Infinity refuses 0


def test_fastapi_validation_errors_are_readable() -> None:
    detail = {"detail": [{"loc": ["body", "top_n"], "msg": "Input should be greater than 0", "type": "greater_than"}]}
    with RerankTestServer() as server:
        server.inject(Fault.respond(422, detail))
        with CohereReranker(server.url) as reranker, pytest.raises(RerankHTTPError, match=r"body\.top_n: Input should"):
            reranker.rerank(QUERY, DOCS[:3])


# -- the HTTP path gives the local reranker's ranking ---------------------------------------------


@pytest.fixture(scope="module")
def local(tiny_model: Path) -> CrossEncoderReranker:
    return CrossEncoderReranker(tiny_model, device="cpu", dtype="float32")  # parity: exact scores, no ties


@pytest.mark.parametrize(("flavor", "make"), [("vllm", VLLMReranker), ("tei", TEIReranker), ("vllm", CohereReranker)])
def test_http_ranking_equals_the_local_cross_encoder(local: CrossEncoderReranker, flavor: str, make: type) -> None:
    query = "cancer cells protein expression"
    topics = ["protein expression", "the brain of mice", "gene studies", "patients", "vector databases", "cells"]
    documents = [f"{topics[i % 6]} and {topics[(i * 5 + 1) % 6]} in text {i}" for i in range(30)]
    want = local.rerank(query, documents)
    assert len({r.score for r in want}) == len(documents)  # no ties: the order is the scores' alone
    with (
        RerankTestServer(local, flavor=flavor, max_client_batch_size=8) as server,  # type: ignore[arg-type]
        make(server.url, model=server.model_name, max_batch_size=7, max_concurrency=3) as reranker,
    ):
        sync = reranker.rerank(query, documents)
        top = reranker.rerank(query, documents, top_n=4)
        asynchronous = asyncio.run(reranker.arerank(query, documents))
    for got in (sync, asynchronous):
        assert [r.index for r in got] == [r.index for r in want]
        assert [r.score for r in got] == pytest.approx([r.score for r in want], abs=1e-5)
    assert [r.index for r in top] == [r.index for r in want[:4]]
