"""Rerankers that call a rerank server over HTTP: vLLM, TEI, Cohere-compatible services, Voyage AI and Jina AI.

One module per concept: :mod:`.options` (the keyword options every HTTP reranker takes),
:mod:`.endpoint` (URLs and their redaction), :mod:`.credentials` (the key and secret headers:
checked at construction, blanked out of everything a server says), :mod:`.retry` (the retry
decision, pure), :mod:`.attempts` (one request's retries, its deadline and its final error),
:mod:`.body` (reading an answer under a cap on its decoded size), :mod:`.wire` (request bodies and
response validation, pure), :mod:`.loops` (event-loop plumbing: a lock shared with threads, the
deadline of an attempt, a client per loop that closes with it), :mod:`.client`
(:class:`HTTPReranker`: the I/O, sync and async alike), :mod:`.hosted` (a provider's API: its key
from the environment), and one module per protocol (:mod:`.vllm`, :mod:`.tei`, :mod:`.cohere`,
:mod:`.voyage`, :mod:`.jina`, :mod:`.chat` for listwise ranking by a chat model) holding only what
its server does differently. Each describes the service it calls as plain data (:mod:`.service`,
``describe()``), which :func:`milvus_rerank.milvus.export.model_ranker` turns into a Milvus
server-side Function.
"""

from milvus_rerank.rerankers.http.chat import ChatListwiseReranker
from milvus_rerank.rerankers.http.client import HTTPReranker
from milvus_rerank.rerankers.http.cohere import CohereReranker
from milvus_rerank.rerankers.http.endpoint import Endpoint
from milvus_rerank.rerankers.http.jina import JinaReranker
from milvus_rerank.rerankers.http.options import HTTPOptions
from milvus_rerank.rerankers.http.retry import RetryPolicy, parse_retry_after
from milvus_rerank.rerankers.http.service import RerankService
from milvus_rerank.rerankers.http.tei import TEIReranker
from milvus_rerank.rerankers.http.vllm import VLLMReranker
from milvus_rerank.rerankers.http.voyage import VoyageReranker
from milvus_rerank.rerankers.http.wire import parse_error_message, split_batches, validate_results

__all__ = [
    "ChatListwiseReranker",
    "CohereReranker",
    "Endpoint",
    "HTTPOptions",
    "HTTPReranker",
    "JinaReranker",
    "RerankService",
    "RetryPolicy",
    "TEIReranker",
    "VLLMReranker",
    "VoyageReranker",
    "parse_error_message",
    "parse_retry_after",
    "split_batches",
    "validate_results",
]
