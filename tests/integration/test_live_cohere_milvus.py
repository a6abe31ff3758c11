"""vLLM's Cohere-compatible /v2/rerank: CohereReranker, and Milvus Lite's cohere rerank provider calling it."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymilvus import AnnSearchRequest, DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from milvus_rerank import CohereReranker, RerankHTTPError, VLLMReranker, model_ranker

pytestmark = pytest.mark.integration

TOLERANCE = 1e-4
"""The same server computes both sides here; the slack covers batch-dependent float sums."""

QUERY = "milvus vector search"
TEXTS = [
    "milvus vector search engine",
    "birds fly south in winter",
    "milvus",
    "cats sleep a lot",
    "a vector database for search with milvus",
    "search engines rank pages",
    "the protein expression levels increased in mice",
    "vector search finds the nearest embeddings",
]


def test_cohere_reranker_on_v2_rerank_equals_vllm_reranker(vllm) -> None:
    with VLLMReranker(vllm.url, model=vllm.model, api_key=vllm.api_key) as native:
        want = native.rerank(QUERY, TEXTS)
    with CohereReranker(vllm.url, model=vllm.model, api_key=vllm.api_key, max_batch_size=3) as cohere:
        assert cohere.endpoint.rerank_url == vllm.url + "/v2/rerank"
        sync = cohere.rerank(QUERY, TEXTS)
        asynchronous = asyncio.run(cohere.arerank(QUERY, TEXTS, top_n=2))
    assert [r.index for r in sync] == [r.index for r in want]
    assert [r.score for r in sync] == pytest.approx([r.score for r in want], abs=TOLERANCE)
    assert [r.index for r in asynchronous] == [r.index for r in want[:2]]


def test_cohere_reranker_without_the_key_is_refused(vllm) -> None:
    if vllm.api_key is None:
        pytest.skip("the shared server was started without --api-key")
    with CohereReranker(vllm.url, model=vllm.model) as cohere, pytest.raises(RerankHTTPError) as caught:
        cohere.rerank(QUERY, TEXTS)
    assert caught.value.status_code == 401


# -- Milvus Lite calls the real server --------------------------------------------------------------


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[MilvusClient]:
    client = MilvusClient(str(tmp_path / "lite.db"))
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("text", DataType.VARCHAR, max_length=256)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
    index = client.prepare_index_params()
    index.add_index("v", metric_type="IP", index_type="AUTOINDEX")
    client.create_collection("docs", schema=schema, index_params=index)
    # Unit vectors fanning out from [1, 0] to [0, 1]: each query vector below has a clear nearest few.
    angles = [math.pi / 2 * i / (len(TEXTS) - 1) for i in range(len(TEXTS))]
    client.insert("docs", [{"id": i, "text": TEXTS[i], "v": [math.cos(a), math.sin(a)]} for i, a in enumerate(angles)])
    client.flush("docs")
    yield client
    client.close()


def expected_hits(vllm, texts: list[str], limit: int) -> list[tuple[str, float]]:
    with VLLMReranker(vllm.url, model=vllm.model, api_key=vllm.api_key) as native:
        best = native.rerank(QUERY, texts, top_n=limit)
    return [(texts[r.index], r.score) for r in best]


def test_milvus_lite_reranks_a_search_through_the_real_server(vllm, lite: MilvusClient) -> None:
    reranker = CohereReranker(vllm.url + "/v2/rerank", model=vllm.model, api_key=vllm.api_key)
    ranker = model_ranker(reranker, QUERY, input_field="text", include_api_key=vllm.api_key is not None)
    (hits,) = lite.search("docs", data=[[1.0, 0.0]], anns_field="v", limit=4, output_fields=["text"], ranker=ranker)
    # Measured: Milvus Lite reranks about 10 x limit nearest candidates (here every row), not just `limit`.
    want = expected_hits(vllm, TEXTS, limit=4)
    assert [hit["entity"]["text"] for hit in hits] == [text for text, _ in want]
    assert [hit["distance"] for hit in hits] == pytest.approx([score for _, score in want], abs=TOLERANCE)


def test_milvus_lite_reranks_a_hybrid_search_through_the_real_server(vllm, lite: MilvusClient) -> None:
    legs = [AnnSearchRequest([[1.0, 0.0]], "v", {}, limit=3), AnnSearchRequest([[0.0, 1.0]], "v", {}, limit=3)]
    reranker = CohereReranker(vllm.url, model=vllm.model, api_key=vllm.api_key)
    ranker = model_ranker(reranker, [QUERY], include_api_key=vllm.api_key is not None)
    (hits,) = lite.hybrid_search("docs", legs, ranker=ranker, limit=3, output_fields=["text"])
    # The candidates are the union of the legs: the three rows nearest [1, 0] and the three nearest [0, 1].
    candidates = TEXTS[:3] + TEXTS[-3:]
    want = expected_hits(vllm, candidates, limit=3)
    assert [hit["entity"]["text"] for hit in hits] == [text for text, _ in want]
    assert [hit["distance"] for hit in hits] == pytest.approx([score for _, score in want], abs=TOLERANCE)


def test_milvus_lite_fails_the_search_when_the_server_refuses(vllm, lite: MilvusClient) -> None:
    reranker = CohereReranker(vllm.url, model="no-such-model", api_key=vllm.api_key)
    ranker = model_ranker(reranker, [QUERY], include_api_key=vllm.api_key is not None)
    with pytest.raises(MilvusException) as caught:
        lite.search("docs", data=[[1.0, 0.0]], anns_field="v", limit=2, ranker=ranker)
    # Milvus Lite passes the server's own answer through: "Cohere API error 404: ... does not exist."
    assert "404" in str(caught.value)
    assert "no-such-model" in str(caught.value)
