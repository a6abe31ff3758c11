"""RerankCompressor running ChatListwiseReranker against the loopback chat server (issue 22)."""

from __future__ import annotations

import asyncio

from langchain_core.documents import Document

from langchain_milvus_rerank import RerankCompressor
from milvus_rerank import ChatListwiseReranker
from milvus_rerank.testing.chat_server import ChatTestServer

QUERY = "vector database for similarity search"
TEXTS = [
    "a bird sings",
    "milvus is a vector database",
    "cats sleep",
    "similarity search over vectors in a database",
    "the weather is fine",
    "reranking with a vector database for similarity search",
]


def test_the_compressor_runs_the_listwise_reranker_sync_and_async() -> None:
    documents = [Document(page_content=text, id=f"d{i}", metadata={"score": i / 10}) for i, text in enumerate(TEXTS)]
    with ChatTestServer() as server:
        reranker = ChatListwiseReranker(server.url, window=4, step=2)
        # Scores are ranks: 6 for the best of 6, so a threshold of 3.5 keeps the top three.
        compressor = RerankCompressor(reranker=reranker, score_threshold=3.5)
        out = compressor.compress_documents(documents, QUERY)
        again = asyncio.run(compressor.acompress_documents(documents, QUERY))
        assert len(server.rerank_requests) == 2 * reranker.calls_for(len(TEXTS))
    assert [d.id for d in out] == [d.id for d in again] == ["d5", "d3", "d1"]
    assert [d.metadata["relevance_score"] for d in out] == [6.0, 5.0, 4.0]
    assert [d.metadata["retrieval_score"] for d in out] == [0.5, 0.3, 0.1]
    assert documents[5].metadata == {"score": 0.5}  # the caller's documents are untouched
