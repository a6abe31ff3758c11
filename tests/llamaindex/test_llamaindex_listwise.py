"""RerankPostprocessor running ChatListwiseReranker against the loopback chat server (issue 22)."""

from __future__ import annotations

import asyncio

from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from llamaindex_milvus_rerank import RerankPostprocessor
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


def test_the_postprocessor_runs_the_listwise_reranker_sync_and_async() -> None:
    nodes = [NodeWithScore(node=TextNode(text=text, id_=f"n{i}"), score=i / 10) for i, text in enumerate(TEXTS)]
    with ChatTestServer() as server:
        reranker = ChatListwiseReranker(server.url, window=4, step=2)
        postprocessor = RerankPostprocessor(reranker=reranker, top_n=3)
        bundle = QueryBundle(QUERY)
        out = postprocessor.postprocess_nodes(nodes, query_bundle=bundle)
        again = asyncio.run(postprocessor.apostprocess_nodes(nodes, query_bundle=bundle))
        assert len(server.rerank_requests) == 2 * reranker.calls_for(len(TEXTS))
    assert [n.node.node_id for n in out] == [n.node.node_id for n in again] == ["n5", "n3", "n1"]
    assert [n.score for n in out] == [6.0, 5.0, 4.0]
    assert nodes[5].score == 0.5  # the caller's nodes are untouched
