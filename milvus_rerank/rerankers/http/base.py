"""The half of an HTTP reranker that does no I/O: :class:`BaseHTTPReranker`.

Options, headers and secrets are checked here at construction; each request is planned and each
answer parsed here, by pure functions of :mod:`.wire`, for both the sync and the async path of
:class:`~milvus_rerank.rerankers.http.client.HTTPReranker`, which does the I/O.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar, cast

import httpx

from milvus_rerank.errors import RerankHTTPError
from milvus_rerank.rerankers.http.attempts import Attempts, http_error
from milvus_rerank.rerankers.http.body import ACCEPT_ENCODING, BodyReader
from milvus_rerank.rerankers.http.clients import HTTPClients
from milvus_rerank.rerankers.http.credentials import (
    Redactor,
    Secret,
    check_api_key,
    check_headers,
    guard_http_logs,
)
from milvus_rerank.rerankers.http.endpoint import redact_url
from milvus_rerank.rerankers.http.long_documents import ClientWindows
from milvus_rerank.rerankers.http.options import HTTPOptions, Unpack, check_option_names
from milvus_rerank.rerankers.http.pool import CONNECTION_FAILURES, EndpointPool
from milvus_rerank.rerankers.http.retry import RetryPolicy
from milvus_rerank.rerankers.http.service import Protocol, RerankService
from milvus_rerank.rerankers.http.wire import (
    BatchRequest,
    parse_results,
    plan_batches,
    results_list,
)
from milvus_rerank.rerankers.windows import DEFAULT_MAX_WINDOWS, WindowedCall
from milvus_rerank.types import RerankResult
from milvus_rerank.validation import check_int, check_number

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""Default cap on one decoded answer: vLLM echoes every document, so an answer is about as large as its batch."""

_ERROR_BODY_BYTES = 64 * 1024  # an error body is read for its message only

logger = logging.getLogger("milvus_rerank.http")

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "BaseHTTPReranker"]

_RETRY_SHORTCUTS = ("max_retries", "backoff", "deadline")


def _retry_policy(options: HTTPOptions) -> RetryPolicy:
    """``retry=`` (or the default policy) with the ``max_retries=``, ``backoff=``, ``deadline=`` given put over it."""
    policy = options.get("retry", RetryPolicy())
    if not isinstance(policy, RetryPolicy):
        raise TypeError(f"retry must be a RetryPolicy, got {type(policy).__name__}")
    given = cast(Mapping[str, Any], options)
    overrides = {name: given[name] for name in _RETRY_SHORTCUTS if name in given}
    return dataclasses.replace(policy, **overrides) if overrides else policy


class BaseHTTPReranker:
    """What an HTTP reranker decides without I/O: its options, requests, answers and discovery hooks.

    :class:`~milvus_rerank.rerankers.http.client.HTTPReranker` adds the I/O, sync and async; the
    protocols subclass that. Like httpx's ``BaseClient``, this half is shared by both paths.
    """

    default_route: ClassVar[str] = "/v1/rerank"
    routes: ClassVar[tuple[str, ...]] = ("/rerank", "/v1/rerank", "/v2/rerank")
    score_key: ClassVar[str] = "relevance_score"
    sends_top_n: ClassVar[bool] = True
    default_batch_size: ClassVar[int] = 64

    def __init__(
        self, endpoint: str | Sequence[str], *, model: str | None = None, **options: Unpack[HTTPOptions]
    ) -> None:
        """Check and keep the options (described on the class)."""
        check_option_names(type(self).__name__, options)
        self._endpoints = EndpointPool.parse(endpoint, default_route=self.default_route, routes=self.routes)
        self.endpoint = self._endpoints.endpoints[0]
        if model is not None and (not isinstance(model, str) or not model):
            raise ValueError(f"model must be a non-empty str or None, got {model!r}")
        self.model = model
        self._api_key = check_api_key(options.get("api_key"))
        self.timeout = check_number(options.get("timeout", 30.0), "timeout", inclusive=False, allow_infinity=True)
        self._batch_size = check_int(options.get("max_batch_size"), "max_batch_size", optional=True)
        self.max_concurrency = check_int(options.get("max_concurrency", 8), "max_concurrency")
        self.max_response_bytes = check_int(
            options.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES), "max_response_bytes"
        )
        self.retry_policy = _retry_policy(options)
        self._extra_body = self._check_extra_body(options.get("extra_body"))
        self._windows = ClientWindows(
            options.get("long_documents", "truncate"),
            options.get("window_overlap"),
            options.get("max_windows", DEFAULT_MAX_WINDOWS),
            options.get("tokenizer"),
            options.get("max_length"),
        )
        secret_headers = options.get("secret_headers", ())
        if isinstance(secret_headers, str) or not isinstance(secret_headers, Collection):
            raise TypeError(f"secret_headers must be a collection of header names, got {type(secret_headers).__name__}")
        own_headers = check_headers(options.get("headers"))
        if self._api_key is not None and any(name.lower() == "authorization" for name in own_headers):
            raise ValueError("api_key and headers={'Authorization': ...} both set the key: pass it once")
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": ACCEPT_ENCODING,
            **own_headers,
        }
        if self._api_key is not None:
            self._headers["Authorization"] = f"Bearer {self._api_key}"
        self._redact = Redactor.of(api_key=self._api_key, headers=own_headers, secret_headers=list(secret_headers))
        guard_http_logs(self._redact)
        self._clients = HTTPClients(
            options.get("client"),
            options.get("async_client"),
            max_concurrency=self.max_concurrency,
            owner=type(self).__name__,
        )
        # One lock for discovery on both paths: one GET, however many threads and coroutines ask.
        self._discovery_lock = threading.Lock()

    # -- protocol pieces (pure) ---------------------------------------------------------------

    reserved_fields: ClassVar[frozenset[str]] = frozenset({"query", "documents"})

    def _build_payload(self, query: str, documents: Sequence[str], top_n: int | None) -> dict[str, Any]:
        """The JSON body for one batch; ``top_n`` is set only when one batch covers everything."""
        raise NotImplementedError

    def _extract_items(self, body: Any) -> Any:
        """The list of result objects inside a decoded response body."""
        return results_list(body)

    def _http_error(self, endpoint: str, status: int, message: str, tries: str) -> RerankHTTPError:
        """The error for an error status; subclasses add hints for statuses they know."""
        hint = ""
        if status in (401, 403):
            hint = (
                "; the server refused this API key: check api_key="
                if self._api_key is not None
                else "; the server wants an API key: pass api_key= (sent as Authorization: Bearer)"
            )
        return http_error(endpoint, status, message, tries, hint=hint)

    # -- what this reranker calls, as plain data (for Milvus's model rankers) -------------------

    protocol: ClassVar[Protocol]
    """The wire protocol :meth:`describe` reports (``"vllm"``, ``"tei"``, ``"cohere"``, ...)."""

    _api_key_source: str = "api_key"

    def describe(self) -> RerankService:
        """The service this reranker calls, as plain data; its key is a ``Secret`` that never shows.

        :func:`milvus_rerank.milvus.export.model_ranker` turns it into a Milvus model ranker.

        Raises:
            ValueError: The reranker has several endpoints: Milvus calls one URL.
        """
        if len(self._endpoints.endpoints) > 1:
            raise ValueError(
                f"{type(self).__name__} has {len(self._endpoints.endpoints)} endpoints, and a Milvus model ranker "
                "calls one URL: put a router (vllm-router, a Kubernetes Service) in front of the servers and give "
                "its URL as endpoint="
            )
        key = None if self._api_key is None else Secret(self._api_key, source=self._api_key_source)
        return RerankService(
            protocol=self.protocol,
            base_url=self.endpoint.base_url,
            rerank_url=self.endpoint.rerank_url,
            model=self.model,
            batch_size=self._batch_size or self.default_batch_size,
            api_key=key,
            options=self._service_options(),
        )

    def _service_options(self) -> dict[str, Any]:
        """The protocol's own settings for :meth:`describe`, by their constructor names."""
        return {}

    # -- long documents: windows cut on the client (ClientWindows) -----------------------------

    def _window_prompt(self) -> tuple[Any, str | None]:
        """The prompt format and instruction the client renders around each pair (none here)."""
        return None, None

    def _window_plan(self, query: str, texts: list[str]) -> WindowedCall | None:
        prompt_format, instruction = self._window_prompt()
        return self._windows.plan(
            query, texts, prompt_format=prompt_format, instruction=instruction, where=self.endpoint.display
        )

    # -- shared pure logic --------------------------------------------------------------------

    def _check_extra_body(self, extra_body: Mapping[str, Any] | None) -> dict[str, Any]:
        if extra_body is None:
            return {}
        if not isinstance(extra_body, Mapping):
            raise TypeError(f"extra_body must be a mapping, got {type(extra_body).__name__}")
        clash = sorted(set(extra_body) & self.reserved_fields)
        if clash:
            raise ValueError(f"extra_body cannot set {clash}: pass them to rerank() instead")
        try:
            json.dumps(dict(extra_body), ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
            raise ValueError(f"extra_body must be JSON-serialisable UTF-8 text: {type(exc).__name__}") from None
        return dict(extra_body)

    def _plan(self, query: str, documents: Sequence[str], top_n: int | None, batch_size: int) -> list[BatchRequest]:
        """Split the documents into batches and encode one request per batch."""
        return plan_batches(
            self.endpoint.rerank_url,
            query,
            documents,
            top_n=top_n,
            batch_size=batch_size,
            build_payload=self._build_payload,
            extra_body=self._extra_body,
            sends_top_n=self.sends_top_n,
        )

    def _parse(self, request: BatchRequest, content: bytes) -> list[RerankResult]:
        """Decode and validate one successful response body."""
        return parse_results(
            request,
            content,
            extract=self._extract_items,
            score_key=self.score_key,
            endpoint=self.endpoint.display,
            redact=self._redact,
        )

    def _request_policy(self) -> RetryPolicy:
        """The retry policy of the next request: :attr:`retry_policy` (a subclass may shorten its deadline)."""
        return self.retry_policy

    def _attempts(self, url: str, n_documents: int | None) -> Attempts:
        return Attempts(
            url,
            policy=self._request_policy(),
            timeout=self.timeout,
            http_error=self._http_error,
            redact=self._redact,
            n_documents=n_documents,
        )

    def _body_reader(self, response: httpx.Response, url: str) -> BodyReader:
        """The reader of ``response``'s body: capped for an answer, cut for an error's message."""
        success = response.is_success
        return BodyReader(
            response.headers.get("Content-Encoding"),
            limit=self.max_response_bytes if success else min(self.max_response_bytes, _ERROR_BODY_BYTES),
            endpoint=redact_url(url),
            cut=not success,
        )

    def _aim(self, attempts: Attempts, chosen: int, url: str) -> str:
        """``url`` on the endpoint chosen for this attempt, which its errors will name."""
        target = self._endpoints.url_on(chosen, url)
        attempts.aim(target)
        return target

    def _resend_elsewhere(self, chosen: int, url: str, exc: httpx.HTTPError) -> bool:
        """Whether a request whose connection failed goes at once to another of several endpoints."""
        if len(self._endpoints.endpoints) == 1 or not isinstance(exc, CONNECTION_FAILURES):
            return False
        if not self._endpoints.connection_failed(chosen):
            return False  # every endpoint is cooling down: the retry policy decides
        logger.warning(
            "request to %s failed (%s); resent to another endpoint, this one left out for %g s",
            redact_url(url),
            type(exc).__name__,
            self._endpoints.cool_down,
        )
        return True

    @staticmethod
    def _next_hop(
        client: httpx.Client | httpx.AsyncClient, response: httpx.Response, hops: int
    ) -> httpx.Request | None:
        """The redirect to follow from ``response``, if the client follows redirects and it stays in the origin."""
        target = response.next_request
        if target is None or not client.follow_redirects or hops >= client.max_redirects:
            return None
        origin = response.request.url
        if (target.url.scheme, target.url.host, target.url.port) != (origin.scheme, origin.host, origin.port):
            return None  # httpx would forward every header but Authorization: never leave the origin
        return target

    # -- discovery: settings the server tells, asked once (hooks; the I/O is below) --------------

    discovery_route: ClassVar[str | None] = None
    """The GET route that tells what :meth:`_needs_discovery` misses (``/v1/models``, ``/info``)."""

    discovers: ClassVar[str] = "its settings"
    """What :attr:`discovery_route` is asked for, for error messages (``"the served model"``)."""

    def _needs_discovery(self) -> bool:
        """Whether a setting is still to be asked of the server."""
        return False

    def _adopt(self, body: Any) -> None:
        """Take the settings from the decoded answer of :attr:`discovery_route`."""

    def _discovery_failed(self, exc: RerankHTTPError) -> None:
        """Fall back when the server has no usable :attr:`discovery_route`, or re-raise ``exc``."""
        raise exc

    def _require_discovery_route(self) -> str:
        if self.discovery_route is None:
            raise NotImplementedError(f"{type(self).__name__} needs discovery but sets no discovery_route")
        return self.discovery_route

    def _discovery_error(self, exc: RerankHTTPError) -> RerankHTTPError:
        """``exc`` from the discovery route, said of the rerank endpoint the user configured."""
        return RerankHTTPError(
            f"cannot use {self.endpoint.display}: asking {self.discovery_route} for {self.discovers} failed: {exc}",
            endpoint=self.endpoint.display,
            status_code=exc.status_code,
            server_message=exc.server_message,
        )
