"""Milvus first-stage retrieval (dense, sparse BM25, hybrid), collection helpers and server-side Functions.

One module per concept: ``retriever`` searches (:class:`MilvusRetriever`, its :class:`SearchOptions`),
``schema`` infers which fields to search from a collection's description (pure, no Milvus call),
``collection`` creates and fills the common RAG collection, ``embeddings`` adapts the embedding
objects of several ecosystems, ``functions`` checks and copies server-side rerank Functions, and
``connection`` opens a client. Nothing here imports pymilvus at import time; it is imported where
a Milvus call is made.
"""

from milvus_rerank.milvus.collection import create_rag_collection, ingest
from milvus_rerank.milvus.retriever import MilvusRetriever, SearchOptions

__all__ = ["MilvusRetriever", "SearchOptions", "create_rag_collection", "ingest"]
