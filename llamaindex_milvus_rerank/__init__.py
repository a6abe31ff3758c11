"""LlamaIndex adapter of milvus-rerank: a rerank node postprocessor and a Milvus retriever with reranking.

Requires the ``llamaindex`` extra: ``pip install 'milvus-rerank[llamaindex]'``.
"""

from __future__ import annotations

from llamaindex_milvus_rerank.postprocessor import RETRIEVAL_SCORE_KEY, RerankPostprocessor
from llamaindex_milvus_rerank.retriever import RETRIEVAL_RANK_KEY, MilvusRerankRetriever, candidate_to_node

__all__ = [
    "RETRIEVAL_RANK_KEY",
    "RETRIEVAL_SCORE_KEY",
    "MilvusRerankRetriever",
    "RerankPostprocessor",
    "candidate_to_node",
]
