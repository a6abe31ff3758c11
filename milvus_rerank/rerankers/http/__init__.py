"""Rerankers that call a rerank server over HTTP: vLLM, TEI and Cohere-compatible services.

One module per concept: :mod:`.options` (the keyword options every HTTP reranker takes), :mod:`.endpoint` (URLs and their redaction), :mod:`.credentials` (the
key and secret headers: checked at construction, blanked out of everything a server says),
:mod:`.retry` (the retry decision, pure), :mod:`.attempts` (one request's retries, its deadline
and its final error), :mod:`.body` (reading an answer under a cap on its decoded size),
:mod:`.wire` (request bodies and response validation, pure), :mod:`.loops` (event-loop
plumbing: a lock shared with threads, the deadline of an attempt, a client per loop that closes
with it), :mod:`.client` (:class:`HTTPReranker`: the I/O, sync and async alike), and one module
per protocol (:mod:`.vllm`, :mod:`.tei`, :mod:`.cohere`) holding only what its server does
differently. The Milvus server-side Functions these rerankers export are built in
:mod:`milvus_rerank.milvus.functions`.
"""

from milvus_rerank.rerankers.http.client import HTTPReranker
from milvus_rerank.rerankers.http.cohere import CohereReranker
from milvus_rerank.rerankers.http.endpoint import Endpoint
from milvus_rerank.rerankers.http.options import HTTPOptions
from milvus_rerank.rerankers.http.retry import RetryPolicy, parse_retry_after
from milvus_rerank.rerankers.http.tei import TEIReranker
from milvus_rerank.rerankers.http.vllm import VLLMReranker
from milvus_rerank.rerankers.http.wire import parse_error_message, split_batches, validate_results

__all__ = [
    "CohereReranker",
    "Endpoint",
    "HTTPOptions",
    "HTTPReranker",
    "RetryPolicy",
    "TEIReranker",
    "VLLMReranker",
    "parse_error_message",
    "parse_retry_after",
    "split_batches",
    "validate_results",
]
