"""LangChain adapter of milvus-rerank: a rerank document compressor and a Milvus retriever with reranking.

``RerankCompressor`` drops into ``ContextualCompressionRetriever`` or ``DocumentCompressorPipeline``
with any milvus-rerank reranker; ``MilvusRerankRetriever`` runs Milvus dense, sparse or hybrid
retrieval and then reranks, as one LangChain retriever.

Requires the ``langchain`` extra: ``pip install 'milvus-rerank[langchain]'``.
"""

from __future__ import annotations

from langchain_milvus_rerank.compressor import PRIMARY_KEY, RELEVANCE_SCORE_KEY, RETRIEVAL_SCORE_KEY, RerankCompressor
from langchain_milvus_rerank.retriever import RETRIEVAL_RANK_KEY, MilvusRerankRetriever, candidate_to_document

__all__ = [
    "PRIMARY_KEY",
    "RELEVANCE_SCORE_KEY",
    "RETRIEVAL_RANK_KEY",
    "RETRIEVAL_SCORE_KEY",
    "MilvusRerankRetriever",
    "RerankCompressor",
    "candidate_to_document",
]
