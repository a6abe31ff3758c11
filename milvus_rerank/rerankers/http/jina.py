"""A reranker for Jina AI's rerank API (``POST https://api.jina.ai/v1/rerank``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from milvus_rerank.rerankers.http.hosted import HostedReranker
from milvus_rerank.rerankers.http.options import HTTPOptions, Unpack

__all__ = ["JinaReranker", "build_jina_payload"]


def build_jina_payload(query: str, documents: Sequence[str], *, model: str, top_n: int | None) -> dict[str, Any]:
    """The body of Jina's ``POST /v1/rerank`` for one batch (pure): no echoed documents, ``top_n`` only when set."""
    payload: dict[str, Any] = {
        "model": model,
        "query": query,
        "documents": list(documents),
        "return_documents": False,
    }
    if top_n is not None:
        payload["top_n"] = top_n
    return payload


class JinaReranker(HostedReranker):
    """Rerank with Jina AI's API (``jina-reranker-v2-base-multilingual``, ``jina-reranker-v3``, ...).

    Jina's request is Cohere's, sent to ``/v1/rerank`` with ``return_documents: false`` (the
    answer then carries indices and scores only); its answer is vLLM's shape. Jina documents
    rate limits per key (requests and tokens per minute, requests in flight) rather than a
    documents-per-request cap: documents go in batches of 100 by default, ``max_concurrency`` at
    once, and a 429 is retried as ``Retry-After`` says. With no ``api_key=``, the key comes from
    ``JINA_API_KEY``, for Jina's own API only. The options not listed here are those of every
    HTTP reranker: see :class:`~milvus_rerank.rerankers.http.HTTPReranker`.

    Args:
        endpoint: Jina's API (the default) or a compatible server; ``/v1/rerank`` is appended to
            a base URL.
        model: The Jina reranker.

    Example:
        >>> reranker = JinaReranker(model="jina-reranker-v2-base-multilingual")  # doctest: +SKIP
        >>> reranker.rerank("what is milvus?", ["a vector database", "a bird"], top_n=1)  # doctest: +SKIP
    """

    protocol = "jina"
    provider = "Jina AI"
    api_hosts = ("api.jina.ai",)
    api_key_variables = ("JINA_API_KEY",)
    default_route = "/v1/rerank"
    default_batch_size = 100

    def __init__(
        self,
        endpoint: str | Sequence[str] = "https://api.jina.ai",
        *,
        model: str = "jina-reranker-v2-base-multilingual",
        **options: Unpack[HTTPOptions],
    ) -> None:
        """Check and keep the options (described on the class); no request is made yet."""
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must name a Jina reranker such as 'jina-reranker-v3', got {model!r}")
        super().__init__(endpoint, model=model, **options)

    def _build_payload(self, query: str, documents: Sequence[str], top_n: int | None) -> dict[str, Any]:
        assert self.model is not None  # set in __init__
        return build_jina_payload(query, documents, model=self.model, top_n=top_n)
