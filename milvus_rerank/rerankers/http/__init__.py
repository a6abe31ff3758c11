"""Rerankers that call a rerank server over HTTP: vLLM, TEI and Cohere-compatible services.

The shared mechanism lives in :mod:`~milvus_rerank.rerankers.http.client`; each protocol module
(:mod:`.vllm`, :mod:`.tei`, :mod:`.cohere`) holds only what its server does differently.
"""

from milvus_rerank.rerankers.http.client import (
    Endpoint,
    HTTPReranker,
    RetryPolicy,
    parse_error_message,
    parse_retry_after,
    split_batches,
    validate_results,
)
from milvus_rerank.rerankers.http.cohere import CohereReranker
from milvus_rerank.rerankers.http.tei import TEIReranker
from milvus_rerank.rerankers.http.vllm import VLLMReranker

__all__ = [
    "CohereReranker",
    "Endpoint",
    "HTTPReranker",
    "RetryPolicy",
    "TEIReranker",
    "VLLMReranker",
    "parse_error_message",
    "parse_retry_after",
    "split_batches",
    "validate_results",
]
