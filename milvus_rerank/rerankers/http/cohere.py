"""A reranker for Cohere-compatible ``/v2/rerank`` services: Cohere, vLLM, Jina-style servers, Infinity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from milvus_rerank.rerankers.http.hosted import HostedReranker
from milvus_rerank.rerankers.http.options import HTTPOptions, Unpack
from milvus_rerank.validation import check_int

__all__ = ["CohereReranker", "build_cohere_payload"]


def build_cohere_payload(
    query: str,
    documents: Sequence[str],
    *,
    model: str | None,
    top_n: int | None,
    max_tokens_per_doc: int | None,
) -> dict[str, Any]:
    """The body of ``POST /v2/rerank`` for one batch (pure); ``top_n`` only when set (Infinity refuses 0)."""
    payload: dict[str, Any] = {"query": query, "documents": list(documents)}
    if model is not None:
        payload["model"] = model
    if top_n is not None:
        payload["top_n"] = top_n
    if max_tokens_per_doc is not None:
        payload["max_tokens_per_doc"] = max_tokens_per_doc
    return payload


class CohereReranker(HostedReranker):
    """Rerank with a Cohere v2-compatible service.

    Speaks Cohere's ``/v2/rerank`` request and accepts the answers of Cohere, Jina, vLLM and
    Infinity. The options not listed here (batching, default 64 documents; concurrency; retries)
    are those of every HTTP reranker: :class:`~milvus_rerank.HTTPOptions`. The texts go as they
    are: behind vLLM, an LLM reranker needs the server's ``--chat-template`` (see
    docs/llm-rerankers.md).

    With no ``api_key=``, the key comes from ``COHERE_API_KEY`` (or ``CO_API_KEY``), for Cohere's
    own API only (``https://api.cohere.com``). For Jina AI's API prefer
    :class:`~milvus_rerank.JinaReranker`.

    Args:
        endpoint: A base URL (``/v2/rerank`` is appended) or a full URL such as Infinity's
            ``http://host:7997/rerank``; defaults to Cohere's API.
        model: Model name; Cohere requires it, vLLM and Infinity accept requests without it.
        max_tokens_per_doc: Cohere's per-document token cap (ignored by servers that lack it).
    """

    protocol = "cohere"
    provider = "Cohere"
    api_hosts = ("api.cohere.com", "api.cohere.ai")
    api_key_variables = ("COHERE_API_KEY", "CO_API_KEY")
    default_route = "/v2/rerank"
    default_batch_size = 64

    def __init__(
        self,
        endpoint: str = "https://api.cohere.com",
        *,
        model: str | None = None,
        max_tokens_per_doc: int | None = None,
        **options: Unpack[HTTPOptions],
    ) -> None:
        """Check and keep the options (described on the class); no request is made yet."""
        super().__init__(endpoint, model=model, **options)
        self.max_tokens_per_doc = check_int(max_tokens_per_doc, "max_tokens_per_doc", optional=True)

    def _build_payload(self, query: str, documents: Sequence[str], top_n: int | None) -> dict[str, Any]:
        return build_cohere_payload(
            query, documents, model=self.model, top_n=top_n, max_tokens_per_doc=self.max_tokens_per_doc
        )

    def _service_options(self) -> dict[str, Any]:
        return {"max_tokens_per_doc": self.max_tokens_per_doc}
