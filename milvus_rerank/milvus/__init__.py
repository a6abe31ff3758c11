"""Milvus first-stage retrieval (dense, sparse BM25, hybrid), collection helpers and server-side Functions.

One module per concept: ``retriever`` searches (:class:`MilvusRetriever`), ``options`` declares
what it takes (:class:`SearchOptions`, :class:`MilvusRetrieverOptions`), ``inspection`` opens a
collection for search (the Milvus calls), ``schema`` infers which fields to search from a
collection's description (pure, no Milvus call), ``collection`` creates and fills the common RAG
collection, ``embeddings`` adapts the embedding objects of several ecosystems, ``functions``
builds the server-side rerank Functions of each provider, ``export`` builds one from an HTTP
reranker's description (:func:`~milvus_rerank.milvus.export.model_ranker`), ``rankers`` checks
and copies the ranker a retriever is given, and ``connection`` opens a client. Nothing here
imports pymilvus at import time; it is imported where a Milvus call is made.
"""

from milvus_rerank.milvus.collection import create_rag_collection, ingest
from milvus_rerank.milvus.inspection import open_collection
from milvus_rerank.milvus.options import MilvusRetrieverOptions, SearchKeywords, SearchOptions
from milvus_rerank.milvus.retriever import MilvusRetriever
from milvus_rerank.milvus.schema import CollectionLayout

__all__ = [
    "CollectionLayout",
    "MilvusRetriever",
    "MilvusRetrieverOptions",
    "SearchKeywords",
    "SearchOptions",
    "create_rag_collection",
    "ingest",
    "open_collection",
]
