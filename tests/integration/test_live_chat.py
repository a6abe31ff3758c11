"""Listwise reranking (ChatListwiseReranker) by a real vLLM server generating with a tiny random chat model.

The model's answers are noise (random weights), which is the point: whatever it writes, every
passage comes back exactly once, the windows are the documented number of calls, and the call
ends within its deadline. The server is the ``chat`` role of ``scripts/vllm-server.sh``.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from milvus_rerank import ChatListwiseReranker, RerankHTTPError

pytestmark = pytest.mark.integration

QUERY = "what is milvus used for?"
PASSAGES = [
    "Milvus is an open-source vector database built for similarity search.",
    "The heart pumps blood through the body.",
    "Reranking re-orders first-stage candidates with a stronger model.",
    "A bird sings in the garden at dawn.",
    "Cancer cells grow without control in tissue.",
    "Embeddings map text to vectors.",
    "",
    "HNSW is a graph index for approximate nearest neighbours.",
    "The study followed patients for ten years.",
    "BM25 scores documents by term frequency.",
    "Gene expression levels changed after treatment.",
    "Hybrid search fuses dense and sparse results.",
    "The cat sleeps on the warm window sill.",
]
DEADLINE = 60.0


@pytest.fixture(scope="module")
def chat(vllm_server):
    return vllm_server("chat")


@pytest.mark.parametrize("path", ["sync", "async"])
def test_noise_answers_keep_every_passage_once_within_the_deadline(chat, path: str) -> None:
    reranker = ChatListwiseReranker(chat.url, api_key=chat.api_key, window=4, step=2, max_calls=5, deadline=DEADLINE)
    started = time.monotonic()
    run = reranker.rerank if path == "sync" else lambda *args: asyncio.run(reranker.arerank(*args))
    results = run(QUERY, PASSAGES)
    elapsed = time.monotonic() - started
    n = len(PASSAGES) - 1  # the blank passage is never sent
    assert sorted(r.index for r in results) == list(range(len(PASSAGES)))
    assert [r.score for r in results[:n]] == [float(n - rank) for rank in range(n)]
    assert results[-1].index == PASSAGES.index("")
    stats = reranker.stats
    assert stats.windows == reranker.calls_for(n) == 5
    assert (reranker.model, reranker.max_model_len) == ("tiny-chat", 512)  # discovered from /v1/models
    assert elapsed < DEADLINE
    print(f"\n{path}: {stats.windows} windows in {elapsed:.2f} s; {stats}")  # shown with -s


def test_a_window_over_the_context_is_a_400_with_the_fix(chat) -> None:
    reranker = ChatListwiseReranker(chat.url, api_key=chat.api_key, window=4, step=2, max_passage_chars=1000)
    with pytest.raises(RerankHTTPError, match="pass a smaller max_passage_chars= or window=") as caught:
        reranker.rerank(QUERY, ["milvus vector database " * 60] * 4)
    assert caught.value.status_code == 400
