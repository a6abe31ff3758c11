"""Milvus first-stage retrieval (dense, sparse BM25, hybrid), collection helpers and server-side Functions.

Nothing here imports pymilvus at import time; it is imported where a Milvus call is made.
"""

from milvus_rerank.milvus.collection import create_rag_collection, ingest
from milvus_rerank.milvus.retriever import MilvusRetriever

__all__ = ["MilvusRetriever", "create_rag_collection", "ingest"]
