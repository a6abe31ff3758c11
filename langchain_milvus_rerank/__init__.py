"""LangChain adapter of milvus-rerank: a rerank document compressor and a Milvus retriever with reranking.

``RerankCompressor`` drops into ``ContextualCompressionRetriever`` or ``DocumentCompressorPipeline``
with any milvus-rerank reranker; ``MilvusRerankRetriever`` runs Milvus dense, sparse or hybrid
retrieval and then reranks, as one LangChain retriever.

Requires the ``langchain`` extra: ``pip install 'milvus-rerank[langchain]'``.
"""

from __future__ import annotations

try:
    import langchain_core  # noqa: F401  (imported first only to say which extra is missing)
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        f"langchain_milvus_rerank needs LangChain, and {exc.name} is not installed: "
        "pip install 'milvus-rerank[langchain]'",
        name=exc.name,
    ) from exc

from langchain_milvus_rerank.compressor import RerankCompressor
from langchain_milvus_rerank.documents import (
    PRIMARY_KEY,
    RELEVANCE_SCORE_KEY,
    RETRIEVAL_RANK_KEY,
    RETRIEVAL_SCORE_KEY,
    candidate_to_document,
)
from langchain_milvus_rerank.retriever import MilvusRerankRetriever

__all__ = [
    "PRIMARY_KEY",
    "RELEVANCE_SCORE_KEY",
    "RETRIEVAL_RANK_KEY",
    "RETRIEVAL_SCORE_KEY",
    "MilvusRerankRetriever",
    "RerankCompressor",
    "candidate_to_document",
]
