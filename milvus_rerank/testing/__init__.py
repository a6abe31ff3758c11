"""Helpers for testing code that uses milvus-rerank without a model hub or a GPU server.

``milvus_rerank.testing.models`` makes tiny cross-encoders; ``milvus_rerank.testing.server``
runs a vLLM/TEI/Cohere-compatible rerank server on loopback, with fault injection;
``milvus_rerank.testing.providers`` emulates Voyage AI's and Jina AI's APIs on the same machinery.
"""
