"""A reranker for Voyage AI's rerank API (``POST https://api.voyageai.com/v1/rerank``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from milvus_rerank.rerankers.http.hosted import HostedReranker
from milvus_rerank.rerankers.http.options import HTTPOptions, Unpack
from milvus_rerank.rerankers.http.wire import BatchRequest

__all__ = [
    "VOYAGE_MAX_DOCUMENTS",
    "VOYAGE_TOTAL_TOKENS",
    "VoyageReranker",
    "build_voyage_payload",
    "token_budget_batches",
]

VOYAGE_MAX_DOCUMENTS = 1000
"""Documents one Voyage rerank request may hold (Voyage's API reference)."""

VOYAGE_TOTAL_TOKENS = {
    "rerank-2.5": 600_000,
    "rerank-2.5-lite": 600_000,
    "rerank-2": 600_000,
    "rerank-2-lite": 600_000,
    "rerank-1": 300_000,
    "rerank-lite-1": 300_000,
}
"""Voyage's cap on one request's tokens (query tokens x documents + all document tokens), per model.

A model not listed gets the smallest cap, 300,000.
"""


def build_voyage_payload(
    query: str, documents: Sequence[str], *, model: str, top_k: int | None, truncation: bool | None
) -> dict[str, Any]:
    """The body of Voyage's ``POST /v1/rerank`` for one batch (pure); ``top_k`` and ``truncation`` only when set."""
    payload: dict[str, Any] = {"query": query, "documents": list(documents), "model": model}
    if top_k is not None:
        payload["top_k"] = top_k
    if truncation is not None:
        payload["truncation"] = truncation
    return payload


def token_bound(text: str) -> int:
    """An upper bound on the tokens of ``text`` for any byte-level tokenizer: its UTF-8 bytes, plus one."""
    return len(text.encode("utf-8")) + 1


def token_budget_batches(query: str, documents: Sequence[str], *, batch_size: int, total_tokens: int) -> list[range]:
    """Consecutive ranges of at most ``batch_size`` documents whose bounded token total fits ``total_tokens``.

    The total of a batch is counted as Voyage counts it, query tokens times documents plus every
    document's tokens, with :func:`token_bound` standing in for the tokenizer, so a batch planned
    here is never over the cap. A document too long to share a batch goes alone (with
    ``truncation`` on, Voyage cuts it to the model's context).
    """
    query_tokens = token_bound(query)
    batches: list[range] = []
    start, used = 0, 0
    for index, document in enumerate(documents):
        cost = query_tokens + token_bound(document)
        if index > start and (index - start >= batch_size or used + cost > total_tokens):
            batches.append(range(start, index))
            start, used = index, 0
        used += cost
    if len(documents) > start:
        batches.append(range(start, len(documents)))
    return batches


class VoyageReranker(HostedReranker):
    """Rerank with Voyage AI's API (``rerank-2.5``, ``rerank-2.5-lite``, ``rerank-2``, ...).

    Requests stay under Voyage's per-request limits: at most 1,000 documents, and at most the
    model's token cap (600,000 for the ``rerank-2`` and ``rerank-2.5`` families, 300,000 for
    the older ones) counted with the UTF-8 length of each text as an upper bound of its tokens;
    a call that needs more goes in several requests, merged on the client. Voyage's limits on the
    query (8,000 tokens for ``rerank-2.5``) and on one query-document pair (32,000) are the
    server's to apply: with ``truncation`` on (Voyage's default) it cuts over-long texts, with
    ``truncation=False`` it answers 400, which is not retried.

    With no ``api_key=``, the key comes from ``VOYAGE_API_KEY``, for Voyage's own API only. The
    options not listed here are those of every HTTP reranker:
    see :class:`~milvus_rerank.rerankers.http.HTTPReranker`.

    Args:
        endpoint: Voyage's API (the default) or a compatible server; ``/v1/rerank`` is appended
            to a base URL.
        model: The Voyage reranker.
        truncation: Voyage's ``truncation`` flag; ``None`` (default) sends nothing (Voyage truncates).

    Raises:
        ValueError: ``max_batch_size`` over 1,000, or an invalid option.

    Example:
        >>> reranker = VoyageReranker(model="rerank-2.5-lite")  # doctest: +SKIP
        >>> reranker.rerank("what is milvus?", ["a vector database", "a bird"], top_n=1)  # doctest: +SKIP
    """

    protocol = "voyage"
    provider = "Voyage AI"
    api_hosts = ("api.voyageai.com",)
    api_key_variables = ("VOYAGE_API_KEY",)
    default_route = "/v1/rerank"
    default_batch_size = VOYAGE_MAX_DOCUMENTS

    def __init__(
        self,
        endpoint: str | Sequence[str] = "https://api.voyageai.com",
        *,
        model: str = "rerank-2.5",
        truncation: bool | None = None,
        **options: Unpack[HTTPOptions],
    ) -> None:
        """Check and keep the options (described on the class); no request is made yet."""
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must name a Voyage reranker such as 'rerank-2.5', got {model!r}")
        super().__init__(endpoint, model=model, **options)
        if self._batch_size is not None and self._batch_size > VOYAGE_MAX_DOCUMENTS:
            raise ValueError(
                f"max_batch_size={self._batch_size} is over Voyage's {VOYAGE_MAX_DOCUMENTS} documents per request: "
                f"pass at most {VOYAGE_MAX_DOCUMENTS} (larger calls are split into several requests)"
            )
        if truncation is not None and not isinstance(truncation, bool):
            raise TypeError(f"truncation must be a bool or None, got {type(truncation).__name__}")
        self.truncation = truncation
        self.total_tokens = VOYAGE_TOTAL_TOKENS.get(model, min(VOYAGE_TOTAL_TOKENS.values()))

    def _build_payload(self, query: str, documents: Sequence[str], top_n: int | None) -> dict[str, Any]:
        assert self.model is not None  # set in __init__
        return build_voyage_payload(query, documents, model=self.model, top_k=top_n, truncation=self.truncation)

    def _extract_items(self, body: Any) -> Any:
        if isinstance(body, dict) and "data" in body:
            return body["data"]
        raise ValueError("the body has no 'data' list")

    def _plan(self, query: str, documents: Sequence[str], top_n: int | None, batch_size: int) -> list[BatchRequest]:
        """The requests of one call, each under Voyage's document and token caps."""
        groups = token_budget_batches(query, documents, batch_size=batch_size, total_tokens=self.total_tokens)
        plan = super()._plan
        if len(groups) == 1:
            return plan(query, documents, top_n, batch_size)
        return [
            dataclasses.replace(request, offset=group.start + request.offset)
            for group in groups
            for request in plan(query, documents[group.start : group.stop], None, len(group))
        ]

    def _service_options(self) -> dict[str, Any]:
        return {"truncation": self.truncation}
