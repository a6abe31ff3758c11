"""LangChain adapter of milvus-rerank: a rerank document compressor and a Milvus retriever with reranking.

``RerankCompressor`` drops into ``ContextualCompressionRetriever`` or ``DocumentCompressorPipeline``
with any milvus-rerank reranker; ``MilvusRerankRetriever`` runs Milvus dense, sparse or hybrid
retrieval and then reranks, as one LangChain retriever.
"""

from __future__ import annotations

from langchain_milvus_rerank.compressor import RerankCompressor
from langchain_milvus_rerank.retriever import MilvusRerankRetriever

__all__ = ["MilvusRerankRetriever", "RerankCompressor"]
