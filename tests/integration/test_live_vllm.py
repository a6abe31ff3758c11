"""VLLMReranker against a real vLLM server (the CPU build), compared with the same weights run locally."""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest

from milvus_rerank import CrossEncoderReranker, RerankHTTPError, RerankResult, VLLMReranker

pytestmark = pytest.mark.integration

TOLERANCE = 1e-4
"""Measured: the served scores differ from the local float32 run by about 1e-6 on this 2-layer model;
on a MiniLM-shaped one (6 layers, 384 wide) vLLM's CPU kernels differ from float64 by about 3e-4."""

QUERY = "milvus vector search"
DOCUMENTS = [
    "milvus is a vector database",
    "birds fly south in winter",
    "cats sleep a lot",
    "the protein expression levels increased in mice",
    "search engines rank pages by links",
    "a vector database for search with milvus",
    "the study of cancer cells and genes in patients with disease risk",
    "vector search finds the nearest embeddings",
    "rerank the documents the retrieval stage found",
    "one model for every query",
]
LONG_DOCUMENT = " ".join(["milvus vector search engine database"] * 150)
"""About 750 tokens with the query: over the served model's 512."""


def scores(results: list[RerankResult]) -> dict[int, float]:
    return {r.index: r.score for r in results}


def assert_same_ranking(got: list[RerankResult], want: list[RerankResult]) -> None:
    """Same scores within TOLERANCE, and the same order wherever two scores are further apart than that."""
    assert sorted(scores(got)) == sorted(scores(want))
    want_scores = scores(want)
    assert [r.score for r in got] == pytest.approx([want_scores[r.index] for r in got], abs=TOLERANCE)
    for better, worse in itertools.pairwise(got):
        assert want_scores[better.index] > want_scores[worse.index] - 2 * TOLERANCE


def test_sync_and_async_scores_equal_the_local_cross_encoder(vllm, local: CrossEncoderReranker) -> None:
    want = local.rerank(QUERY, DOCUMENTS)
    assert want[0].score - want[-1].score > 0.05, "the test model must tell these documents apart"
    with VLLMReranker(vllm.url, model=vllm.model, api_key=vllm.api_key) as reranker:
        sync = reranker.rerank(QUERY, DOCUMENTS)
        asynchronous = asyncio.run(reranker.arerank(QUERY, DOCUMENTS))
        top = reranker.rerank(QUERY, DOCUMENTS, top_n=3)
    assert_same_ranking(sync, want)
    assert_same_ranking(asynchronous, want)
    assert [r.index for r in top] == [r.index for r in sync[:3]]


def test_the_served_model_is_discovered(vllm) -> None:
    with VLLMReranker(vllm.url, api_key=vllm.api_key) as reranker:
        assert reranker.model is None
        reranker.rerank(QUERY, DOCUMENTS[:2])
        assert reranker.model == vllm.model


async def test_the_served_model_is_discovered_on_the_async_path(vllm) -> None:
    async with VLLMReranker(vllm.url + "/v1", api_key=vllm.api_key) as reranker:
        await reranker.arerank(QUERY, DOCUMENTS[:2])
        assert reranker.model == vllm.model


def test_an_unknown_model_names_the_served_one(vllm) -> None:
    with (
        VLLMReranker(vllm.url, model="no-such-model", api_key=vllm.api_key) as reranker,
        pytest.raises(RerankHTTPError) as caught,
    ):
        reranker.rerank(QUERY, DOCUMENTS[:2])
    assert caught.value.status_code == 404
    assert "no-such-model" in str(caught.value)
    assert repr(vllm.model) in str(caught.value)  # the served model, to pass as model=


def test_an_over_long_pair_is_a_clear_error_without_truncation(vllm) -> None:
    with VLLMReranker(vllm.url, api_key=vllm.api_key, max_retries=3) as reranker:
        with pytest.raises(RerankHTTPError) as caught:
            reranker.rerank(QUERY, [DOCUMENTS[0], LONG_DOCUMENT])
        error = caught.value
        assert error.status_code == 400
        assert "maximum context length is 512 tokens" in str(error)
        assert "attempts" not in str(error)  # a 400 is never retried
        assert reranker.rerank(QUERY, DOCUMENTS[:2])  # and the server is still fine


@pytest.mark.parametrize("tokens", [-1, 16, 40])
def test_truncate_prompt_tokens_equals_local_truncation(vllm, tokens: int) -> None:
    documents = [DOCUMENTS[0], LONG_DOCUMENT, "cats sleep a lot " * 40]
    # vLLM truncates the pair longest-first, as transformers' pair encoding does with max_length.
    local = CrossEncoderReranker(
        str(vllm.model_dir), device="cpu", dtype="float32", max_length=512 if tokens == -1 else tokens
    )
    want = local.rerank(QUERY, documents)
    with VLLMReranker(vllm.url, api_key=vllm.api_key, truncate_prompt_tokens=tokens) as reranker:
        got = reranker.rerank(QUERY, documents)
    assert_same_ranking(got, want)


def test_truncate_prompt_tokens_over_the_model_limit_is_refused(vllm) -> None:
    with (
        VLLMReranker(vllm.url, api_key=vllm.api_key, truncate_prompt_tokens=600) as reranker,
        pytest.raises(RerankHTTPError, match="greater than max_model_len") as caught,
    ):
        reranker.rerank(QUERY, DOCUMENTS[:2])
    assert caught.value.status_code == 400


def test_raw_scores_are_the_logits(vllm) -> None:
    local = CrossEncoderReranker(str(vllm.model_dir), device="cpu", dtype="float32", activation="none")
    want = local.rerank(QUERY, DOCUMENTS)
    assert any(r.score < 0 for r in want) or any(r.score > 1 for r in want), "logits, not probabilities"
    with VLLMReranker(vllm.url, api_key=vllm.api_key, raw_scores=True) as reranker:
        got = reranker.rerank(QUERY, DOCUMENTS)
    assert_same_ranking(got, want)


@pytest.mark.parametrize("top_n", [None, 7])
def test_batches_in_flight_together_equal_one_request(vllm, top_n: int | None) -> None:
    documents = [f"{text} {i}" for i in range(12) for text in DOCUMENTS]  # 120 documents
    with VLLMReranker(vllm.url, api_key=vllm.api_key, max_batch_size=len(documents)) as one:
        want = one.rerank(QUERY, documents, top_n=top_n)
    with VLLMReranker(vllm.url, api_key=vllm.api_key, max_batch_size=8, max_concurrency=4) as batched:
        sync = batched.rerank(QUERY, documents, top_n=top_n)
        asynchronous = asyncio.run(batched.arerank(QUERY, documents, top_n=top_n))
    assert len(want) == (top_n or len(documents))
    for got in (sync, asynchronous):
        assert [r.index for r in got] == [r.index for r in want]
        assert [r.score for r in got] == pytest.approx([r.score for r in want], abs=TOLERANCE)


async def test_concurrent_callers_share_one_reranker(vllm) -> None:
    queries = [QUERY, "birds in winter", "cancer genes", "search engines"]
    async with VLLMReranker(vllm.url, api_key=vllm.api_key, max_batch_size=3, max_concurrency=2) as reranker:
        together = await asyncio.gather(*(reranker.arerank(q, DOCUMENTS) for q in queries))
        alone = [await reranker.arerank(q, DOCUMENTS) for q in queries]
    for got, want in zip(together, alone, strict=True):
        assert [r.index for r in got] == [r.index for r in want]


# -- --api-key ---------------------------------------------------------------------------------


def test_the_api_key_is_required_and_never_shown(vllm) -> None:
    if vllm.api_key is None:
        pytest.skip("the shared server was started without --api-key")
    for key in (None, "wrong-key-4711"):
        with (
            VLLMReranker(vllm.url, model=vllm.model, api_key=key) as reranker,
            pytest.raises(RerankHTTPError) as caught,
        ):
            reranker.rerank(QUERY, DOCUMENTS[:2])
        assert caught.value.status_code == 401
        assert "Unauthorized" in str(caught.value)
        assert "wrong-key-4711" not in str(caught.value)
        assert "wrong-key-4711" not in repr(reranker)


def test_the_unversioned_rerank_route_is_not_guarded_by_the_key(vllm) -> None:
    # vLLM's --api-key covers /v1/* and /v2/* only: a deployment must not rely on it for /rerank.
    if vllm.api_key is None:
        pytest.skip("the shared server was started without --api-key")
    assert httpx.get(vllm.url + "/v1/models", timeout=10).status_code == 401
    with VLLMReranker(vllm.url + "/rerank", model=vllm.model) as reranker:
        assert len(reranker.rerank(QUERY, DOCUMENTS[:3])) == 3
