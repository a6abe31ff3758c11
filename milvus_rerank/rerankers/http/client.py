"""The HTTP core shared by the vLLM, TEI and Cohere-compatible rerankers.

One mechanism, small per-protocol pieces. Everything that does no I/O is a pure function here
(endpoint normalisation, batching, the retry decision, error-body parsing, response validation);
:class:`HTTPReranker` holds the clients and runs batches, and its sync and async methods mirror
each other line for line. A protocol module only says how to build a request body, how to find
the results in a response, and which routes it posts to.

Batches run concurrently on both paths: ``arerank`` uses one lazily created ``httpx.AsyncClient``
per event loop, ``rerank`` a small thread pool over one ``httpx.Client``. Indices are re-offset,
results merged, sorted globally and cut to ``top_n`` on the client; ``top_n`` goes to the server
only when a single batch covers every document.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import json
import logging
import math
import random
import re
import threading
import time
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from milvus_rerank.errors import (
    RerankConnectionError,
    RerankError,
    RerankHTTPError,
    RerankResponseError,
    RerankTimeoutError,
)
from milvus_rerank.rerankers.contract import check_rerank_args, rank
from milvus_rerank.types import RerankResult
from milvus_rerank.validation import check_int

if TYPE_CHECKING:
    from pymilvus import Function

__all__ = [
    "Endpoint",
    "HTTPReranker",
    "RetryPolicy",
    "check_function_args",
    "milvus_endpoint",
    "model_ranker_function",
    "parse_error_message",
    "parse_retry_after",
    "split_batches",
    "validate_results",
]

logger = logging.getLogger("milvus_rerank.http")

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
"""Statuses retried with backoff (500 is retried once at most, see :class:`RetryPolicy`)."""

_EXCERPT_CHARS = 200


# ---------------------------------------------------------------------------------------------
# Endpoint


@dataclass(frozen=True)
class Endpoint:
    """A normalised rerank endpoint.

    Attributes:
        base_url: ``scheme://host[:port][/prefix]`` without a version segment or route.
        rerank_url: The URL the rerank requests are posted to.
    """

    base_url: str
    rerank_url: str

    @classmethod
    def parse(cls, endpoint: str, *, default_route: str, routes: Sequence[str]) -> Endpoint:
        """Accept a base URL, a versioned base (``.../v1``) or a full rerank URL.

        Args:
            endpoint: What the user configured, e.g. ``http://host:8000``, ``http://host:8000/v1``
                or ``http://host:8000/v1/rerank``.
            default_route: Route appended to a base URL, e.g. ``/v1/rerank``.
            routes: Routes recognised at the end of a full URL (longest first is not required).

        Raises:
            TypeError: ``endpoint`` is not a string.
            ValueError: The URL has no ``http``/``https`` scheme or no host.
        """
        if not isinstance(endpoint, str):
            raise TypeError(f"endpoint must be a str URL, got {type(endpoint).__name__}")
        parts = urlsplit(endpoint.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"endpoint must be an http(s) URL such as 'http://localhost:8000', got {redact_url(endpoint)!r}"
            )
        path = parts.path.rstrip("/")
        for route in sorted(routes, key=len, reverse=True):
            if path.endswith(route):
                base_path = path[: -len(route)]
                return cls(_with_path(parts, base_path), _with_path(parts, path))
        version = re.search(r"/v\d+$", path)
        if version:
            base_path = path[: version.start()]
            route = version.group(0) + "/rerank"
        else:
            base_path, route = path, default_route
        return cls(_with_path(parts, base_path), _with_path(parts, base_path + route))

    @property
    def display(self) -> str:
        """The rerank URL without credentials or query string, safe for messages."""
        return redact_url(self.rerank_url)

    @property
    def origin(self) -> str:
        """``scheme://host:port`` (the port made explicit), as Milvus wants its ``endpoint``."""
        parts = urlsplit(self.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        return f"{parts.scheme}://{host}:{port}"

    def url(self, route: str) -> str:
        """The URL of another route under the same base, e.g. ``/v1/models``."""
        return self.base_url + route


def _with_path(parts: Any, path: str) -> str:
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def redact_url(url: str) -> str:
    """Drop user-info and query string from a URL so that no credential reaches a message."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<invalid URL>"


# ---------------------------------------------------------------------------------------------
# Retry policy: a pure decision shared by the sync and async paths


@dataclass(frozen=True)
class RetryPolicy:
    """When to retry a failed request, and after how long.

    Connection errors, timeouts, 429, 502, 503 and 504 are retried with exponential backoff
    and jitter, honouring ``Retry-After``; 500 is retried once at most; every other status
    (400, 401, 403, 404, 413, 415, 422, ...) fails at once. Retries stop after ``max_retries``
    or when the next attempt would start after ``deadline`` seconds from the first one.

    Attributes:
        max_retries: Retries after the first attempt (0 disables retrying).
        backoff: Base delay in seconds; attempt ``k`` waits about ``backoff * 2**k``.
        max_backoff: Cap on one computed delay.
        max_retry_after: Cap on a server's ``Retry-After``.
        deadline: Total seconds for one batch, retries and waits included.
    """

    max_retries: int = 3
    backoff: float = 0.25
    max_backoff: float = 8.0
    max_retry_after: float = 30.0
    deadline: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {self.max_retries!r}")
        for name in ("backoff", "max_backoff", "max_retry_after", "deadline"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        if self.deadline <= 0:
            raise ValueError(f"deadline must be > 0 seconds, got {self.deadline!r}")

    @staticmethod
    def is_retryable(*, status: int | None, retried_500: bool = False) -> bool:
        """Whether a failure may be retried at all (``status=None`` means a transport failure)."""
        if status is None or status in RETRYABLE_STATUSES:
            return True
        return status == 500 and not retried_500

    def delay(
        self,
        *,
        retries_done: int,
        status: int | None,
        retry_after: float | None = None,
        elapsed: float = 0.0,
        retried_500: bool = False,
        jitter: float | None = None,
    ) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to give up.

        Args:
            retries_done: Retries already made for this request.
            status: HTTP status of the failure, ``None`` for a connection error or timeout.
            retry_after: The server's ``Retry-After`` in seconds, if any.
            elapsed: Seconds since the first attempt.
            retried_500: Whether a 500 was already retried for this request.
            jitter: A number in [0, 1) for the jitter; random when ``None``.
        """
        if not self.is_retryable(status=status, retried_500=retried_500) or retries_done >= self.max_retries:
            return None
        if retry_after is not None:
            wait = min(max(retry_after, 0.0), self.max_retry_after)
        else:
            draw = random.random() if jitter is None else jitter
            # "Equal jitter": at least half the exponential step, so retries never bunch at zero.
            wait = min(self.max_backoff, self.backoff * 2**retries_done) * (0.5 + draw / 2)
        if elapsed + wait >= self.deadline:
            return None
        return wait


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


# ---------------------------------------------------------------------------------------------
# Error bodies and response validation


def parse_error_message(text: str, *, reason: str = "") -> str:
    """The server's own message from any known error-body shape.

    Tries, in order: ``body["error"]`` as a dict (its ``message``), ``body["error"]`` as a string,
    ``body["message"]``, ``body["detail"]`` (FastAPI, string or list), then the raw text; an empty
    body gives the HTTP reason phrase.
    """
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        if body.get("message"):
            return str(body["message"])
        detail = body.get("detail")
        if isinstance(detail, str) and detail:
            return detail
        if isinstance(detail, list) and detail:
            return "; ".join(_detail_text(item) for item in detail)
    stripped = text.strip()
    return _excerpt(stripped) if stripped else (reason or "no error message")


def _detail_text(item: object) -> str:
    if isinstance(item, dict):
        location = ".".join(str(part) for part in item.get("loc", ()))
        message = str(item.get("msg", item))
        return f"{location}: {message}" if location else message
    return str(item)


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."


def validate_results(items: object, *, n_documents: int, expected: int, score_key: str) -> list[RerankResult]:
    """Check a list of ``{"index": int, score_key: number}`` and turn it into results.

    Every index must be an int in ``range(n_documents)`` and unique, there must be exactly
    ``expected`` items, and every score must be a finite number.

    Raises:
        ValueError: The first problem found, described for a person.
    """
    if not isinstance(items, list):
        raise ValueError(f"expected a list of results, got {type(items).__name__}")
    if len(items) != expected:
        raise ValueError(f"expected {expected} results for {n_documents} documents, got {len(items)}")
    seen: set[int] = set()
    results = []
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"result {position} is a {type(item).__name__}, not an object")
        index = item.get("index")
        if isinstance(index, bool) or not isinstance(index, int):
            raise ValueError(f"result {position} has index {index!r}, not an int")
        if not 0 <= index < n_documents:
            raise ValueError(f"result {position} has index {index}, outside 0..{n_documents - 1}")
        if index in seen:
            raise ValueError(f"index {index} appears more than once")
        seen.add(index)
        score = item.get(score_key)
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise ValueError(f"result {position} (index {index}) has {score_key} {score!r}, not a finite number")
        results.append(RerankResult(index=index, score=float(score)))
    return results


def split_batches(n_documents: int, batch_size: int) -> list[range]:
    """Consecutive index ranges of at most ``batch_size`` covering ``range(n_documents)``."""
    return [range(start, min(start + batch_size, n_documents)) for start in range(0, n_documents, batch_size)]


# ---------------------------------------------------------------------------------------------
# One request with retries: the state machine both paths drive


@dataclass(frozen=True)
class _Request:
    """One prepared POST: the URL, the encoded body and what a valid answer must hold."""

    url: str
    content: bytes
    n_documents: int
    expected: int


class _Attempts:
    """Retry bookkeeping for one request; decides, logs, and raises when giving up."""

    def __init__(self, reranker: HTTPReranker, url: str) -> None:
        self._reranker = reranker
        self._url = url
        self._started = time.monotonic()
        self._retries = 0
        self._retried_500 = False

    def timeout(self) -> httpx.Timeout:
        """The per-attempt timeout, clipped to what is left of the deadline."""
        remaining = self._reranker.retry_policy.deadline - (time.monotonic() - self._started)
        if remaining <= 0:
            raise RerankTimeoutError(
                f"{redact_url(self._url)} did not answer within the {self._reranker.retry_policy.deadline:g} s "
                f"deadline ({self._retries} retries); raise deadline= or check the server",
                endpoint=redact_url(self._url),
            )
        return httpx.Timeout(min(self._reranker.timeout, remaining))

    def failed(self, *, exc: httpx.HTTPError | None = None, response: httpx.Response | None = None) -> float:
        """Seconds to wait before retrying; raises the matching :class:`RerankError` when giving up."""
        status = response.status_code if response is not None else None
        if exc is not None and not isinstance(exc, httpx.TransportError):
            raise RerankConnectionError(
                f"request to {redact_url(self._url)} failed: {type(exc).__name__}", endpoint=redact_url(self._url)
            ) from exc
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
        wait = self._reranker.retry_policy.delay(
            retries_done=self._retries,
            status=status,
            retry_after=retry_after,
            elapsed=time.monotonic() - self._started,
            retried_500=self._retried_500,
        )
        if wait is None:
            raise self._error(exc, response)
        what = f"HTTP {status}" if status is not None else type(exc).__name__
        logger.warning(
            "rerank request to %s failed (%s); retry %d/%d in %.2f s",
            redact_url(self._url),
            what,
            self._retries + 1,
            self._reranker.retry_policy.max_retries,
            wait,
        )
        self._retries += 1
        self._retried_500 = self._retried_500 or status == 500
        return wait

    def _error(self, exc: httpx.HTTPError | None, response: httpx.Response | None) -> RerankError:
        endpoint = redact_url(self._url)
        tries = f" after {self._retries + 1} attempts" if self._retries else ""
        if response is not None:
            message = parse_error_message(response.text, reason=response.reason_phrase)
            return self._reranker._http_error(endpoint, response.status_code, message, tries)
        if isinstance(exc, httpx.TimeoutException):
            error: RerankError = RerankTimeoutError(
                f"{endpoint} timed out{tries} ({type(exc).__name__}); raise timeout= or check the server",
                endpoint=endpoint,
            )
        else:
            error = RerankConnectionError(
                f"could not reach {endpoint}{tries} ({type(exc).__name__}: {_transport_reason(exc)}); "
                "check that the server is running and the endpoint is right",
                endpoint=endpoint,
            )
        error.__cause__ = exc
        return error


def _transport_reason(exc: BaseException | None) -> str:
    # httpx messages name the host at most; they never carry request headers.
    return _excerpt(str(exc)) if exc is not None and str(exc) else "no details"


# ---------------------------------------------------------------------------------------------
# The reranker core


class HTTPReranker:
    """Base of the HTTP rerankers: clients, batching, concurrency, retries and validation.

    Subclasses set the routes and implement :meth:`_build_payload` and :meth:`_extract_items`
    (pure: no I/O). Use a subclass: :class:`~milvus_rerank.VLLMReranker`,
    :class:`~milvus_rerank.TEIReranker` or :class:`~milvus_rerank.CohereReranker`.
    """

    default_route: ClassVar[str] = "/v1/rerank"
    routes: ClassVar[tuple[str, ...]] = ("/rerank", "/v1/rerank", "/v2/rerank")
    score_key: ClassVar[str] = "relevance_score"
    default_batch_size: ClassVar[int] = 64

    def __init__(
        self,
        endpoint: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_batch_size: int | None = None,
        max_concurrency: int = 8,
        max_retries: int = 3,
        backoff: float = 0.25,
        deadline: float = 60.0,
        headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        client: httpx.Client | None = None,
        async_client: httpx.AsyncClient | None = None,
    ) -> None:
        """Configure the reranker; no connection is made until the first request.

        Args:
            endpoint: Base URL (``http://host:8000``), versioned base (``.../v1``) or full rerank URL.
            model: Model name sent with every request; see the subclass for what ``None`` does.
            api_key: Sent as ``Authorization: Bearer ...``; never shown in ``repr``, logs or errors.
            timeout: Seconds for one HTTP attempt.
            max_batch_size: Documents per request; ``None`` takes the protocol's default.
            max_concurrency: Requests in flight at once for one call (sync and async).
            max_retries: Retries per request after the first attempt.
            backoff: Base of the exponential backoff, in seconds.
            deadline: Total seconds for one request including its retries and waits.
            headers: Extra headers sent with every request.
            extra_body: Extra JSON fields merged into every request body (they cannot replace
                the query or the documents).
            client: An ``httpx.Client`` to use for the sync path; left open by :meth:`close`.
            async_client: An ``httpx.AsyncClient`` for the async path, used on whatever event loop
                calls :meth:`arerank`; left open by :meth:`aclose`.

        Raises:
            TypeError: An argument of the wrong type.
            ValueError: An invalid URL, number or body field.
        """
        self.endpoint = Endpoint.parse(endpoint, default_route=self.default_route, routes=self.routes)
        if model is not None and (not isinstance(model, str) or not model):
            raise ValueError(f"model must be a non-empty str or None, got {model!r}")
        if api_key is not None and (not isinstance(api_key, str) or not api_key):
            raise ValueError("api_key must be a non-empty str or None")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.model = model
        self._api_key = api_key
        self.timeout = float(timeout)
        self._batch_size = None if max_batch_size is None else check_int(max_batch_size, "max_batch_size")
        self.max_concurrency = check_int(max_concurrency, "max_concurrency")
        self.retry_policy = RetryPolicy(max_retries=max_retries, backoff=backoff, deadline=deadline)
        self._extra_body = self._check_extra_body(extra_body)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json", **dict(headers or {})}
        if api_key is not None:
            self._headers["Authorization"] = f"Bearer {api_key}"
        if client is not None and not isinstance(client, httpx.Client):
            raise TypeError(f"client must be an httpx.Client, got {type(client).__name__}")
        if async_client is not None and not isinstance(async_client, httpx.AsyncClient):
            raise TypeError(f"async_client must be an httpx.AsyncClient, got {type(async_client).__name__}")
        self._client = client
        self._owns_client = client is None
        self._user_async_client = async_client
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._discovery_lock = threading.Lock()  # one GET /v1/models or /info, however many threads ask
        self._closed = False

    # -- protocol pieces (pure) ---------------------------------------------------------------

    reserved_fields: ClassVar[frozenset[str]] = frozenset({"query", "documents"})

    def _build_payload(self, query: str, documents: Sequence[str], top_n: int | None) -> dict[str, Any]:
        """The JSON body for one batch; ``top_n`` is set only when one batch covers everything."""
        raise NotImplementedError

    def _extract_items(self, body: Any) -> Any:
        """The list of result objects inside a decoded response body."""
        if isinstance(body, dict) and "results" in body:
            return body["results"]
        raise ValueError("the body has no 'results' list")

    def _http_error(self, endpoint: str, status: int, message: str, tries: str) -> RerankHTTPError:
        """The error for an error status; subclasses add hints for statuses they know."""
        return RerankHTTPError(
            f"{endpoint} answered HTTP {status}{tries}: {message}",
            endpoint=endpoint,
            status_code=status,
            server_message=message,
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
        return dict(extra_body)

    def _plan(self, query: str, documents: Sequence[str], top_n: int | None, batch_size: int) -> list[_Request]:
        """Split the documents into batches and encode one request per batch."""
        batches = split_batches(len(documents), batch_size)
        send_top_n = min(top_n, len(documents)) if top_n is not None and len(batches) == 1 else None
        requests = []
        for batch in batches:
            payload = self._build_payload(query, documents[batch.start : batch.stop], send_top_n)
            payload.update(self._extra_body)
            requests.append(
                _Request(
                    url=self.endpoint.rerank_url,
                    content=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                    n_documents=len(batch),
                    expected=send_top_n if send_top_n is not None else len(batch),
                )
            )
        return requests

    def _parse(self, request: _Request, response: httpx.Response) -> list[RerankResult]:
        """Decode and validate one successful response."""
        try:
            body = json.loads(response.content)
            items = self._extract_items(body)
            return validate_results(
                items, n_documents=request.n_documents, expected=request.expected, score_key=self.score_key
            )
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            raise RerankResponseError(
                f"{self.endpoint.display} sent a malformed rerank response ({exc}); body starts: "
                f"{_excerpt(response.text)!r}",
                endpoint=self.endpoint.display,
            ) from None

    @staticmethod
    def _merge(
        batches: Sequence[range], per_batch: Sequence[list[RerankResult]], top_n: int | None
    ) -> list[RerankResult]:
        merged = [
            RerankResult(index=batch.start + result.index, score=result.score)
            for batch, results in zip(batches, per_batch, strict=True)
            for result in results
        ]
        return rank(merged, top_n)

    # -- configuration hooks that may need I/O, in both flavours ------------------------------

    def _resolve(self) -> int:
        """Batch size once nothing is left to discover (sync hook, overridden to discover)."""
        return self._batch_size or self.default_batch_size

    async def _aresolve(self) -> int:
        """Async twin of :meth:`_resolve`."""
        return self._batch_size or self.default_batch_size

    # -- clients --------------------------------------------------------------------------------

    def _sync_client(self) -> httpx.Client:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed; create a new one")
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(limits=self._limits())
            return self._client

    def _async_client(self) -> httpx.AsyncClient:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed; create a new one")
        if self._user_async_client is not None:
            return self._user_async_client
        # An AsyncClient's connections belong to the loop that opened them: one client per loop.
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(limits=self._limits())
            self._async_clients[loop] = client
        return client

    def _limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=max(self.max_concurrency, 10), max_keepalive_connections=max(self.max_concurrency, 10)
        )

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self.max_concurrency, thread_name_prefix="milvus-rerank-http"
                )
            return self._pool

    # -- I/O: sync ------------------------------------------------------------------------------

    def _send(self, request: _Request) -> list[RerankResult]:
        client = self._sync_client()
        attempts = _Attempts(self, request.url)
        while True:
            try:
                response = client.post(
                    request.url, content=request.content, headers=self._headers, timeout=attempts.timeout()
                )
            except httpx.HTTPError as exc:
                wait = attempts.failed(exc=exc)
            else:
                if response.is_success:
                    return self._parse(request, response)
                wait = attempts.failed(response=response)
            time.sleep(wait)

    def _get_json(self, route: str) -> Any:
        """GET a small JSON document (``/v1/models``, ``/info``) with the retry policy."""
        url = self.endpoint.url(route)
        client = self._sync_client()
        attempts = _Attempts(self, url)
        while True:
            try:
                response = client.get(url, headers=self._headers, timeout=attempts.timeout())
            except httpx.HTTPError as exc:
                wait = attempts.failed(exc=exc)
            else:
                if response.is_success:
                    return _decode_json(response, url)
                wait = attempts.failed(response=response)
            time.sleep(wait)

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        """Score ``documents`` against ``query`` on the server and return them best first.

        Args:
            query: The search query.
            documents: Texts to score; zero documents return ``[]`` without any request.
            top_n: Keep only the best ``top_n``; ``None`` keeps all.

        Returns:
            Results sorted by score descending, ties by index, ``index`` pointing into ``documents``.

        Raises:
            RerankHTTPError: The server answered with an error status (after retries, if retryable).
            RerankTimeoutError: No answer within ``timeout`` or ``deadline``.
            RerankConnectionError: The server could not be reached.
            RerankResponseError: The answer was malformed (bad JSON, wrong indices, NaN scores).
        """
        documents = check_rerank_args(query, documents, top_n)
        if not documents:
            return []
        batch_size = self._resolve()
        requests = self._plan(query, documents, top_n, batch_size)
        if len(requests) == 1:
            per_batch = [self._send(requests[0])]
        else:
            futures = [self._executor().submit(self._send, request) for request in requests]
            try:
                per_batch = [future.result() for future in futures]
            finally:
                for future in futures:
                    future.cancel()
        return self._merge(split_batches(len(documents), batch_size), per_batch, top_n)

    # -- I/O: async (mirrors the sync path) -----------------------------------------------------

    async def _asend(self, request: _Request) -> list[RerankResult]:
        client = self._async_client()
        attempts = _Attempts(self, request.url)
        while True:
            try:
                response = await client.post(
                    request.url, content=request.content, headers=self._headers, timeout=attempts.timeout()
                )
            except httpx.HTTPError as exc:
                wait = attempts.failed(exc=exc)
            else:
                if response.is_success:
                    return self._parse(request, response)
                wait = attempts.failed(response=response)
            await asyncio.sleep(wait)

    async def _aget_json(self, route: str) -> Any:
        """Async twin of :meth:`_get_json`."""
        url = self.endpoint.url(route)
        client = self._async_client()
        attempts = _Attempts(self, url)
        while True:
            try:
                response = await client.get(url, headers=self._headers, timeout=attempts.timeout())
            except httpx.HTTPError as exc:
                wait = attempts.failed(exc=exc)
            else:
                if response.is_success:
                    return _decode_json(response, url)
                wait = attempts.failed(response=response)
            await asyncio.sleep(wait)

    async def arerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        """Async twin of :meth:`rerank`, on ``httpx.AsyncClient``; batches run concurrently.

        Raises:
            RerankError: As :meth:`rerank`.
        """
        documents = check_rerank_args(query, documents, top_n)
        if not documents:
            return []
        batch_size = await self._aresolve()
        requests = self._plan(query, documents, top_n, batch_size)
        if len(requests) == 1:
            per_batch = [await self._asend(requests[0])]
        else:
            limit = asyncio.Semaphore(self.max_concurrency)

            async def send(request: _Request) -> list[RerankResult]:
                async with limit:
                    return await self._asend(request)

            tasks = [asyncio.ensure_future(send(request)) for request in requests]
            try:
                per_batch = list(await asyncio.gather(*tasks))
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        return self._merge(split_batches(len(documents), batch_size), per_batch, top_n)

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the clients this reranker created and its thread pool; callers' clients stay open.

        Async clients whose event loop is still usable are closed on it; others are dropped.
        Prefer :meth:`aclose` from async code.
        """
        self._closed = True
        with self._lock:
            pool, self._pool = self._pool, None
            client = self._client if self._owns_client else None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if client is not None:
            client.close()
        for loop, async_client in list(self._async_clients.items()):
            if not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(async_client.aclose())
        self._async_clients.clear()

    async def aclose(self) -> None:
        """Close the async client of the running loop, then everything :meth:`close` closes."""
        loop = asyncio.get_running_loop()
        async_client = self._async_clients.pop(loop, None)
        if async_client is not None:
            await async_client.aclose()
        self.close()

    def __enter__(self) -> HTTPReranker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> HTTPReranker:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _server_function(
        self,
        provider: str,
        queries: str | Sequence[str],
        *,
        input_field: str,
        name: str,
        credential: str | None,
        fields: Mapping[str, Any],
        send_endpoint: bool = True,
        raw_scores: bool = False,
    ) -> Function:
        """The model-ranker ``Function`` a Milvus 2.6 server runs against this service.

        The core of each ``to_milvus_function``: the params every provider shares (``reranker``,
        ``provider``, ``queries``, ``endpoint`` as ``scheme://host:port`` unless ``send_endpoint``
        is false because the provider's URL comes from ``milvus.yaml``, ``max_client_batch_size``,
        ``credential``), with ``fields`` adding the protocol's own. Warns when this reranker has an
        ``api_key`` but no ``credential`` is named: a raw key never goes into the Function; and when
        ``raw_scores`` was asked of this reranker, since Milvus always asks for activated scores.
        """
        query_list, field = check_function_args(queries, input_field)
        params: dict[str, Any] = {"reranker": "model", "provider": provider, "queries": query_list}
        if send_endpoint:
            params["endpoint"] = milvus_endpoint(self.endpoint, stacklevel=4)
        params["max_client_batch_size"] = self._batch_size or self.default_batch_size
        params.update(fields)
        if credential is not None:
            params["credential"] = credential
        elif self._api_key is not None:
            warnings.warn(
                "this reranker has an api_key, but a Milvus server takes keys only as a credential defined in "
                "milvus.yaml: pass credential='<name>'",
                UserWarning,
                stacklevel=3,
            )
        if raw_scores:
            warnings.warn(
                f"Milvus asks {provider} for activated scores; raw_scores=True is not carried over",
                UserWarning,
                stacklevel=3,
            )
        return model_ranker_function(name, field, params)

    def __repr__(self) -> str:
        key = "'***'" if self._api_key is not None else "None"
        return (
            f"{type(self).__name__}(endpoint={self.endpoint.display!r}, model={self.model!r}, api_key={key}, "
            f"max_batch_size={self._batch_size!r}, max_concurrency={self.max_concurrency})"
        )


def _decode_json(response: httpx.Response, url: str) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        raise RerankResponseError(
            f"{redact_url(url)} sent invalid JSON; body starts: {_excerpt(response.text)!r}", endpoint=redact_url(url)
        ) from None


# ---------------------------------------------------------------------------------------------
# Milvus model-ranker Functions (server-side rerank): checks shared by every provider


def check_function_args(queries: str | Sequence[str], input_field: str | Sequence[str]) -> tuple[list[str], str]:
    """Validate the queries and the text field of a model-ranker ``Function``.

    Args:
        queries: One non-empty query string per search query (a bare string is one query).
        input_field: The one VARCHAR field to rerank on (a one-element list is accepted).

    Returns:
        The queries as a list and the field name.

    Raises:
        TypeError: A query or the field is not a string.
        ValueError: No query, an empty query, or not exactly one non-empty field name.
    """
    query_list = [queries] if isinstance(queries, str) else list(queries)
    if not query_list:
        raise ValueError("queries must hold one query string per search query; got none")
    for position, query in enumerate(query_list):
        if not isinstance(query, str):
            raise TypeError(f"queries[{position}] must be a str, got {type(query).__name__}")
        if not query.strip():
            raise ValueError(f"queries[{position}] is empty; Milvus needs the text of every search query")
    fields = [input_field] if isinstance(input_field, str) else list(input_field)
    if len(fields) != 1:
        raise ValueError(f"a model ranker reranks on exactly one VARCHAR field, got {fields!r}")
    field = fields[0]
    if not isinstance(field, str) or not field:
        raise ValueError(f"input_field must be a non-empty field name, got {field!r}")
    return query_list, field


def milvus_endpoint(endpoint: Endpoint, *, stacklevel: int = 2) -> str:
    """``scheme://host:port`` for a Milvus ``endpoint`` param, warning when a path prefix is dropped.

    Milvus replaces the path with ``/rerank``, so a reranker behind a path prefix cannot be
    reached that way; version segments and rerank routes are not a loss. ``stacklevel`` is the
    warning's, as in :func:`warnings.warn` (2: the caller of this function).
    """
    prefix = urlsplit(endpoint.base_url).path.strip("/")
    if prefix:
        warnings.warn(
            f"Milvus posts to {endpoint.origin}/rerank: the path prefix '/{prefix}' of the endpoint is dropped; "
            "serve the reranker at the root of a host:port that the Milvus server can reach",
            UserWarning,
            stacklevel=stacklevel,
        )
    return endpoint.origin


def model_ranker_function(name: str, input_field: str, params: dict[str, Any]) -> Function:
    """A ``pymilvus.Function`` of type ``RERANK`` with the given params."""
    from pymilvus import Function, FunctionType

    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")
    return Function(name=name, function_type=FunctionType.RERANK, input_field_names=[input_field], params=params)
