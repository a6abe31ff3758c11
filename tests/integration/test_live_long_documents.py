"""long_documents="windows" against real vLLM servers: windowed scores over HTTP equal the local windowed ones.

The client cuts windows with the served model's tokenizer and sends them as documents; the server
scores them; each document keeps its best window. The same weights run in-process with the same
policy must give the same scores and the same spans (1e-5 relative), for the BERT cross-encoder of the
shared server and for the Qwen3 reranker (prompt rendered by the client) of the ``qwen3`` server.
Both servers are the ones CI already starts: this file adds no server.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from milvus_rerank import CrossEncoderReranker, RerankResult, VLLMReranker

pytestmark = pytest.mark.integration

TOLERANCE = 1e-5
QUERY = "what is milvus used for"
WORDS = (
    "milvus is a vector database for similarity search over embeddings , and the study of the disease in "
    "patients found cells with protein ; reranking retrieval answers the question ."
).split()


def words(n: int, seed: int) -> str:
    """A text of ``n`` words in no repeating pattern, so that no two windows are the same text (a tie)."""
    return " ".join(random.Random(seed).choices(WORDS, k=n))


DOCUMENTS = [words(150, 1), "milvus is a vector database", words(70, 2), "", words(300, 3)]


def same(got: list[RerankResult], want: list[RerankResult]) -> None:
    assert [(r.index, r.span) for r in got] == [(r.index, r.span) for r in want]
    for a, b in zip(got, want, strict=True):
        assert abs(a.score - b.score) <= TOLERANCE * max(1.0, abs(b.score)), (a, b)


def test_windowed_cross_encoder_scores_over_vllm_equal_the_local_ones(vllm) -> None:
    max_length = 48
    local = CrossEncoderReranker(
        str(vllm.model_dir), device="cpu", dtype="float32", max_length=max_length, long_documents="windows"
    )
    want = local.rerank(QUERY, DOCUMENTS)
    assert sum(r.span is not None for r in want) == 3
    with VLLMReranker(
        vllm.url,
        api_key=vllm.api_key,
        long_documents="windows",
        tokenizer=str(vllm.model_dir),
        max_length=max_length,
        max_batch_size=16,
    ) as reranker:
        same(reranker.rerank(QUERY, DOCUMENTS), want)
        same(asyncio.run(reranker.arerank(QUERY, DOCUMENTS, top_n=2)), want[:2])


def test_windowed_qwen3_scores_over_vllm_equal_the_local_ones(vllm_server) -> None:
    plain = vllm_server("qwen3")
    max_length = 160  # the Qwen3 prompt around a document is about 100 tokens of the test tokenizer
    local = CrossEncoderReranker(
        str(plain.model_dir),
        device="cpu",
        dtype="float32",
        prompt_format="qwen3",
        max_length=max_length,
        long_documents="windows",
    )
    want = local.rerank(QUERY, DOCUMENTS)
    assert sum(r.span is not None for r in want) >= 2
    with VLLMReranker(
        plain.url,
        prompt_format="qwen3",
        long_documents="windows",
        tokenizer=str(plain.model_dir),
        max_length=max_length,
        max_batch_size=8,
    ) as reranker:
        same(reranker.rerank(QUERY, DOCUMENTS), want)
        same(asyncio.run(reranker.arerank(QUERY, DOCUMENTS)), want)


def test_max_tokens_per_doc_is_vllms_own_cut(vllm) -> None:
    local = CrossEncoderReranker(str(vllm.model_dir), device="cpu", dtype="float32")
    with VLLMReranker(vllm.url, api_key=vllm.api_key, max_tokens_per_doc=20) as reranker:
        results = reranker.rerank(QUERY, DOCUMENTS)
    # The server read each document's first 20 tokens: a long one scores as its own first 20 tokens do.
    tokenizer = local.load()._model().tokenizer
    first = tokenizer.decode(tokenizer(DOCUMENTS[4], add_special_tokens=False)["input_ids"][:20])
    (cut,) = local.rerank(QUERY, [first])
    by_index = {r.index: r.score for r in results}
    assert abs(by_index[4] - cut.score) <= 1e-4 * max(1.0, abs(cut.score))
