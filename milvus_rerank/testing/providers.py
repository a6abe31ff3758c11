"""Loopback emulators of hosted rerank APIs: Voyage AI and Jina AI, with their limits and error bodies.

Each is a :class:`~milvus_rerank.testing.server.RerankTestServer` (same faults, request log,
scoring and lifecycle) that speaks its provider's wire on ``POST /v1/rerank``::

    with VoyageTestServer(api_key="pa-test") as server:
        reranker = VoyageReranker(server.url, api_key="pa-test")
        server.inject(voyage_error(429, "Rate limit exceeded"))
        reranker.rerank("query", texts)

Tokens are counted as words and punctuation marks, never more than a text's UTF-8 bytes, so a
client that budgets with bytes stays under the emulated limits as it does under the real ones.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from milvus_rerank.testing.faults import Fault, _json_reply, _Reply
from milvus_rerank.testing.server import RerankTestServer
from milvus_rerank.types import Reranker

__all__ = ["JinaTestServer", "VoyageTestServer", "count_tokens", "jina_error", "voyage_error"]

_TOKEN = re.compile(r"\w+|[^\w\s]")

# Voyage's documented limits per model: query tokens, query + one document, the whole request.
VOYAGE_LIMITS = {
    "rerank-2.5": (8_000, 32_000, 600_000),
    "rerank-2.5-lite": (8_000, 32_000, 600_000),
    "rerank-2": (4_000, 16_000, 600_000),
    "rerank-2-lite": (2_000, 8_000, 600_000),
    "rerank-1": (2_000, 8_000, 300_000),
    "rerank-lite-1": (1_000, 4_000, 300_000),
}


def count_tokens(text: str) -> int:
    """The emulators' token count: words and punctuation marks."""
    return len(_TOKEN.findall(text))


def voyage_error(status: int, message: str, headers: dict[str, str] | None = None) -> Fault:
    """A Voyage error answer: ``{"detail": message}`` with this status."""
    return Fault.respond(status, {"detail": message}, headers)


def jina_error(status: int, message: str, headers: dict[str, str] | None = None) -> Fault:
    """A Jina error answer (a FastAPI service): ``{"detail": message}`` with this status."""
    return Fault.respond(status, {"detail": message}, headers)


class _ProviderServer(RerankTestServer):
    """What both emulators share: one route, a key checked like the provider, ``{"detail"}`` errors."""

    answer_routes: ClassVar[tuple[str, ...]] = ("/v1/rerank",)
    unauthorized_message: ClassVar[str] = "Unauthorized"

    def _unauthorized(self) -> _Reply:
        return _json_reply(401, {"detail": self.unauthorized_message})

    def _error(self, status: int, message: str) -> _Reply:
        return _json_reply(status, {"detail": message})

    def _rerank(self, path: str, body: Any) -> _Reply:
        if path not in self.answer_routes:
            return self._error(404, "Not Found")
        if not isinstance(body, dict):
            return self._error(400, "Request body is not valid JSON")
        problem = self._check(body)
        if problem is not None:
            return problem
        query, documents = body["query"], body["documents"]
        results = self._score(query, documents, False)
        top = body.get(self.top_field)
        if top is not None:
            results = results[:top]
        tokens = count_tokens(query) * len(documents) + sum(count_tokens(document) for document in documents)
        return _json_reply(200, self._answer(results, documents, body, tokens))

    top_field: ClassVar[str] = "top_n"

    def _check(self, body: dict[str, Any]) -> _Reply | None:
        """The provider's refusal of ``body``, or ``None``."""
        raise NotImplementedError

    def _answer(self, results: list[Any], documents: list[str], body: dict[str, Any], tokens: int) -> dict[str, Any]:
        raise NotImplementedError


class VoyageTestServer(_ProviderServer):
    """Voyage AI's ``POST /v1/rerank`` on loopback, with its documented per-request limits.

    It refuses, with 400 and ``{"detail": ...}`` as Voyage does, a request without ``model``, an
    unknown model, more than ``max_documents`` documents (1,000), more tokens than the model's cap
    (query tokens x documents + document tokens: 600,000 for ``rerank-2.5``; ``max_total_tokens``
    overrides it), and, with ``truncation: false``,
    a query or a query-document pair over the model's limits. A missing or wrong key is a 401.
    Answers are ``{"object": "list", "data": [{"index", "relevance_score"[, "document"]}], "model",
    "usage": {"total_tokens"}}``, best first, cut to ``top_k``.
    """

    unauthorized_message = "Provided API key is invalid."
    top_field = "top_k"

    def __init__(
        self,
        reranker: Reranker | None = None,
        *,
        api_key: str | None = None,
        service_time: float = 0.0,
        max_documents: int = 1000,
        max_total_tokens: int | None = None,
    ) -> None:
        """Configure the emulator (``reranker`` scores, as for :class:`RerankTestServer`)."""
        super().__init__(reranker, model_name="rerank-2.5", api_key=api_key, service_time=service_time)
        self.max_documents = max_documents
        self.max_total_tokens = max_total_tokens

    def _check(self, body: dict[str, Any]) -> _Reply | None:
        query, documents, model = body.get("query"), body.get("documents"), body.get("model")
        if not isinstance(model, str):
            return self._error(400, "Field 'model' is required.")
        if model not in VOYAGE_LIMITS:
            return self._error(400, f"Model {model} is not supported. Supported models: {', '.join(VOYAGE_LIMITS)}.")
        if not isinstance(query, str) or not query:
            return self._error(400, "Field 'query' must be a non-empty string.")
        if not isinstance(documents, list) or not documents or not all(isinstance(d, str) for d in documents):
            return self._error(400, "Field 'documents' must be a non-empty list of strings.")
        top_k = body.get("top_k")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            return self._error(400, "Field 'top_k' must be a positive integer.")
        if len(documents) > self.max_documents:
            return self._error(
                400, f"The number of documents ({len(documents)}) exceeds the limit of {self.max_documents}."
            )
        query_limit, pair_limit, total_limit = VOYAGE_LIMITS[model]
        total_limit = self.max_total_tokens or total_limit
        query_tokens = count_tokens(query)
        total = query_tokens * len(documents) + sum(count_tokens(document) for document in documents)
        if total > total_limit:
            return self._error(400, f"The total number of tokens ({total}) exceeds the limit of {total_limit}.")
        if body.get("truncation", True) is False:
            if query_tokens > query_limit:
                return self._error(400, f"The query exceeds the limit of {query_limit} tokens for {model}.")
            for index, document in enumerate(documents):
                if query_tokens + count_tokens(document) > pair_limit:
                    return self._error(400, f"Query and document {index} exceed the limit of {pair_limit} tokens.")
        return None

    def _answer(self, results: list[Any], documents: list[str], body: dict[str, Any], tokens: int) -> dict[str, Any]:
        items: list[dict[str, Any]] = [{"index": r.index, "relevance_score": r.score} for r in results]
        if body.get("return_documents"):
            for item in items:
                item["document"] = documents[item["index"]]
        return {"object": "list", "data": items, "model": body["model"], "usage": {"total_tokens": tokens}}


class JinaTestServer(_ProviderServer):
    """Jina AI's ``POST /v1/rerank`` on loopback.

    It refuses, as a FastAPI service does, a body missing ``query`` or ``documents`` with 422 and
    ``{"detail": [{"loc", "msg", "type"}]}``, an unknown model with 400, and a missing or wrong
    key with 401. Jina documents rate limits rather than a per-request document cap:
    ``max_documents`` (default none) emulates one for tests. Answers are ``{"model", "results":
    [{"index", "relevance_score"[, "document": {"text"}]}], "usage": {"total_tokens"}}``, best
    first, cut to ``top_n``; documents are echoed unless ``return_documents`` is false.
    """

    unauthorized_message = "Invalid API key"
    models: ClassVar[tuple[str, ...]] = (
        "jina-reranker-v2-base-multilingual",
        "jina-reranker-v3",
        "jina-reranker-m0",
        "jina-colbert-v2",
    )

    def __init__(
        self,
        reranker: Reranker | None = None,
        *,
        api_key: str | None = None,
        service_time: float = 0.0,
        max_documents: int | None = None,
    ) -> None:
        """Configure the emulator (``reranker`` scores, as for :class:`RerankTestServer`)."""
        super().__init__(
            reranker, model_name="jina-reranker-v2-base-multilingual", api_key=api_key, service_time=service_time
        )
        self.max_documents = max_documents

    def _check(self, body: dict[str, Any]) -> _Reply | None:
        missing = [
            {"loc": ["body", name], "msg": "field required", "type": "value_error.missing"}
            for name in ("query", "documents")
            if name not in body
        ]
        if missing:
            return _json_reply(422, {"detail": missing})
        query, documents, model = body["query"], body["documents"], body.get("model", self.model_name)
        if not isinstance(query, str) or not isinstance(documents, list) or not documents:
            detail = [{"loc": ["body", "documents"], "msg": "must be a non-empty list", "type": "value_error"}]
            return _json_reply(422, {"detail": detail})
        if model not in self.models:
            return self._error(400, f"Model '{model}' not found")
        top_n = body.get("top_n")
        if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
            detail = [{"loc": ["body", "top_n"], "msg": "ensure this value is greater than 0", "type": "value_error"}]
            return _json_reply(422, {"detail": detail})
        if self.max_documents is not None and len(documents) > self.max_documents:
            return self._error(400, f"Too many documents: {len(documents)} > {self.max_documents}")
        return None

    def _answer(self, results: list[Any], documents: list[str], body: dict[str, Any], tokens: int) -> dict[str, Any]:
        items: list[dict[str, Any]] = [{"index": r.index, "relevance_score": r.score} for r in results]
        if body.get("return_documents", True):
            for item in items:
                item["document"] = {"text": documents[item["index"]]}
        model = body.get("model", self.model_name)
        return {"model": model, "results": items, "usage": {"total_tokens": tokens}}
