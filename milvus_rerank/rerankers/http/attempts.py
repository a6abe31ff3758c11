"""One request's attempts: the timeout of each, the wait before a retry, the error when giving up.

The client's four request loops (POST and GET, sync and async) each drive an :class:`Attempts`:
it applies the :class:`~milvus_rerank.rerankers.http.retry.RetryPolicy` to what httpx reported,
logs each retry, and turns the final failure into the matching error of
:mod:`milvus_rerank.errors`, naming the redacted URL and never a header. It does no I/O and never
sleeps (the loop waits what :meth:`Attempts.failed` returns, with ``time.sleep`` or
``asyncio.sleep``), so both paths retry alike and it is tested with plain ``httpx.Response``
objects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx

from milvus_rerank.errors import RerankConnectionError, RerankError, RerankHTTPError, RerankTimeoutError
from milvus_rerank.rerankers.http.endpoint import redact_url
from milvus_rerank.rerankers.http.retry import RetryPolicy, parse_retry_after
from milvus_rerank.rerankers.http.wire import excerpt, parse_error_message

__all__ = ["Attempts", "HTTPErrorFactory", "http_error"]

logger = logging.getLogger("milvus_rerank.http")

HTTPErrorFactory = Callable[[str, int, str, str], RerankHTTPError]
"""Makes the error for an error status from ``(endpoint, status, server message, tries)``."""


def http_error(endpoint: str, status: int, message: str, tries: str) -> RerankHTTPError:
    """The error for an error status: the URL, the status, the attempts made and the server's message."""
    return RerankHTTPError(
        f"{endpoint} answered HTTP {status}{tries}: {message}",
        endpoint=endpoint,
        status_code=status,
        server_message=message,
    )


class Attempts:
    """Retry bookkeeping for one request; decides, logs, and raises when giving up.

    Args:
        url: The URL requested (shown only redacted).
        policy: When to retry and after how long.
        timeout: Seconds for one attempt, clipped to what is left of the policy's deadline.
        http_error: Makes the error for an error status (a protocol may add hints).
    """

    def __init__(
        self, url: str, *, policy: RetryPolicy, timeout: float, http_error: HTTPErrorFactory = http_error
    ) -> None:
        self._endpoint = redact_url(url)
        self._policy = policy
        self._timeout = timeout
        self._http_error = http_error
        self._started = time.monotonic()
        self._retries = 0
        self._retried_500 = False

    def timeout(self) -> httpx.Timeout:
        """The timeout of the next attempt.

        Raises:
            RerankTimeoutError: Nothing is left of the deadline.
        """
        remaining = self._policy.deadline - (time.monotonic() - self._started)
        if remaining <= 0:
            raise RerankTimeoutError(
                f"{self._endpoint} did not answer within the {self._policy.deadline:g} s deadline "
                f"({self._retries} retries); raise deadline= or check the server",
                endpoint=self._endpoint,
            )
        return httpx.Timeout(min(self._timeout, remaining))

    def failed(self, *, exc: httpx.HTTPError | None = None, response: httpx.Response | None = None) -> float:
        """Seconds to wait before retrying after ``exc`` or an error ``response``.

        Raises:
            RerankError: The matching subclass, when the failure is not retried (any more).
        """
        status = response.status_code if response is not None else None
        if exc is not None and not isinstance(exc, httpx.TransportError):
            raise RerankConnectionError(
                f"request to {self._endpoint} failed: {type(exc).__name__}", endpoint=self._endpoint
            ) from exc
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
        wait = self._policy.delay(
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
            self._endpoint,
            what,
            self._retries + 1,
            self._policy.max_retries,
            wait,
        )
        self._retries += 1
        self._retried_500 = self._retried_500 or status == 500
        return wait

    def _error(self, exc: httpx.HTTPError | None, response: httpx.Response | None) -> RerankError:
        endpoint = self._endpoint
        tries = f" after {self._retries + 1} attempts" if self._retries else ""
        if response is not None:
            message = parse_error_message(response.text, reason=response.reason_phrase)
            return self._http_error(endpoint, response.status_code, message, tries)
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
    return excerpt(str(exc)) if exc is not None and str(exc) else "no details"
