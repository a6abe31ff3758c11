"""One request's attempts: the timeout of each, the wait before a retry, the error when giving up.

The client's two request loops (sync and async) each drive an :class:`Attempts`: it applies the
:class:`~milvus_rerank.rerankers.http.retry.RetryPolicy` to what httpx reported, keeps the
deadline (each attempt's timeout is clipped to what is left of it, and the body is read only
while some is left), logs each retry, and turns the final failure into the matching error of
:mod:`milvus_rerank.errors`, naming the redacted URL and never a header. Everything it builds
from server text (error bodies, redirect targets, transport errors) goes through the
reranker's :class:`~milvus_rerank.rerankers.http.credentials.Redactor`. It does no I/O and never
sleeps (the loop waits what :meth:`Attempts.failed` returns, with ``time.sleep`` or
``asyncio.sleep``), so both paths retry alike and it is tested with plain ``httpx.Response``
objects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import urljoin

import httpx

from milvus_rerank.errors import RerankConnectionError, RerankError, RerankHTTPError, RerankTimeoutError
from milvus_rerank.rerankers.http.credentials import NO_SECRETS
from milvus_rerank.rerankers.http.endpoint import redact_url
from milvus_rerank.rerankers.http.retry import RetryPolicy, parse_retry_after
from milvus_rerank.rerankers.http.wire import excerpt, parse_error_message

__all__ = ["Attempts", "HTTPErrorFactory", "http_error"]

logger = logging.getLogger("milvus_rerank.http")

HTTPErrorFactory = Callable[[str, int, str, str], RerankHTTPError]
"""Makes the error for an error status from ``(endpoint, status, server message, tries)``."""


def http_error(endpoint: str, status: int, message: str, tries: str, *, hint: str = "") -> RerankHTTPError:
    """The error for an error status: the URL, the status, the attempts made, the server's message, a hint."""
    return RerankHTTPError(
        f"{endpoint} answered HTTP {status}{tries}: {message}{hint}",
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
        redact: Blanks the reranker's secrets out of text that came from the server.
        n_documents: Documents in the request, for the hint when a batch is too slow.
        clock: Seconds on a monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        url: str,
        *,
        policy: RetryPolicy,
        timeout: float,
        http_error: HTTPErrorFactory = http_error,
        redact: Callable[[str], str] = NO_SECRETS,
        n_documents: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._clock = clock
        self._endpoint = redact_url(url)
        self._policy = policy
        self._timeout = timeout
        self._http_error = http_error
        self._redact = redact
        self._n_documents = n_documents
        self._started = clock()
        self._attempt_timeout = timeout
        self._retries = 0
        self._retried_500 = False

    def aim(self, url: str) -> None:
        """The next attempt goes to ``url`` (another endpoint of the same deployment): errors name it."""
        self._url = url
        self._endpoint = redact_url(url)

    def remaining(self) -> float:
        """Seconds left of the deadline (``inf`` without one)."""
        return self._policy.deadline - (self._clock() - self._started)

    def check_deadline(self) -> None:
        """Raise when nothing is left of the deadline; the client calls it between reads of a body.

        Raises:
            RerankTimeoutError: The deadline has passed.
        """
        if self.remaining() <= 0:
            raise self.out_of_time()

    def out_of_time(self) -> RerankTimeoutError:
        """The error for a request that used up its deadline."""
        return RerankTimeoutError(
            f"{self._endpoint} did not answer within the {self._policy.deadline:g} s deadline "
            f"({self._retries} retries); raise deadline= or check the server",
            endpoint=self._endpoint,
        )

    def timeout(self) -> httpx.Timeout:
        """The timeout of the next attempt.

        Raises:
            RerankTimeoutError: Nothing is left of the deadline.
        """
        self.check_deadline()
        self._attempt_timeout = min(self._timeout, self.remaining())
        return httpx.Timeout(self._attempt_timeout)

    def failed(
        self, *, exc: httpx.HTTPError | None = None, response: httpx.Response | None = None, body: bytes | None = None
    ) -> float:
        """Seconds to wait before retrying after ``exc`` or an error ``response``.

        Args:
            exc: What httpx raised.
            response: The error response.
            body: The (decoded, possibly cut) body of ``response``; its ``content`` when ``None``.

        Raises:
            RerankError: The matching subclass, when the failure is not retried (any more).
        """
        status = response.status_code if response is not None else None
        if exc is not None and (not isinstance(exc, httpx.TransportError) or isinstance(exc, httpx.LocalProtocolError)):
            raise self._not_sent(exc)
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
        elapsed = self._clock() - self._started
        wait = self._policy.delay(
            retries_done=self._retries,
            status=status,
            retry_after=retry_after,
            elapsed=elapsed,
            retried_500=self._retried_500,
        )
        # A batch too heavy for one timeout fails again on a shorter one: resend it only if the
        # deadline still covers a full timeout.
        cut_short = (
            wait is not None
            and isinstance(exc, httpx.ReadTimeout)
            and self._policy.deadline - (elapsed + wait) < self._timeout
        )
        if wait is None or cut_short:
            raise self._error(exc, response, body, cut_short=cut_short)
        what = f"HTTP {status}" if status is not None else type(exc).__name__
        logger.warning(
            "request to %s failed (%s); retry %d/%d in %.2f s",
            self._endpoint,
            what,
            self._retries + 1,
            self._policy.max_retries,
            wait,
        )
        self._retries += 1
        self._retried_500 = self._retried_500 or status == 500
        return wait

    def _not_sent(self, exc: httpx.HTTPError) -> RerankConnectionError:
        if isinstance(exc, httpx.LocalProtocolError):
            # httpx's message quotes the offending header value, which may be a credential.
            error = RerankConnectionError(
                f"request to {self._endpoint} could not be sent ({type(exc).__name__}): a header or the "
                "body is not valid HTTP; check headers= and the headers of the httpx client passed as client=",
                endpoint=self._endpoint,
            )
            error.__suppress_context__ = True
            return error
        error = RerankConnectionError(
            f"request to {self._endpoint} failed: {type(exc).__name__}", endpoint=self._endpoint
        )
        error.__cause__ = exc
        return error

    def _error(
        self, exc: httpx.HTTPError | None, response: httpx.Response | None, body: bytes | None, *, cut_short: bool
    ) -> RerankError:
        endpoint = self._endpoint
        tries = f" after {self._retries + 1} attempts" if self._retries else ""
        if response is not None:
            status = response.status_code
            if response.is_redirect:
                message = self._redirect_message(response)
            else:
                text = (response.content if body is None else body).decode("utf-8", errors="replace")
                # Blanked before parsing (the message is cut to an excerpt) and after (JSON escapes).
                message = self._redact(parse_error_message(self._redact(text), reason=response.reason_phrase))
            return self._http_error(endpoint, status, message, tries)
        if isinstance(exc, httpx.ReadTimeout):
            batch = f" to a batch of {self._n_documents} documents" if self._n_documents else ""
            resent = "; not resent, as the deadline left less than one more timeout" if cut_short else ""
            error: RerankError = RerankTimeoutError(
                f"{endpoint} timed out{tries}: no answer{batch} within {self._attempt_timeout:g} s{resent}; "
                "send fewer documents per request (max_batch_size=) or allow more time (timeout=, deadline=)",
                endpoint=endpoint,
            )
        elif isinstance(exc, httpx.TimeoutException):
            error = RerankTimeoutError(
                f"{endpoint} timed out{tries} ({type(exc).__name__}); raise timeout= or check the server",
                endpoint=endpoint,
            )
        else:
            error = RerankConnectionError(
                f"could not reach {endpoint}{tries} ({type(exc).__name__}: {self._reason(exc)}); "
                "check that the server is running and the endpoint is right",
                endpoint=endpoint,
            )
        if exc is not None and self._redact(str(exc)) != str(exc):
            error.__suppress_context__ = True  # the httpx error quotes a secret the server sent back
        else:
            error.__cause__ = exc
        return error

    def _redirect_message(self, response: httpx.Response) -> str:
        location = response.headers.get("Location", "")
        target = self._redact(redact_url(urljoin(self._url, location))) if location else "nowhere"
        return (
            f"a redirect to {target}, which is not followed outside the endpoint's origin (credentials never "
            "go to another origin) nor without a client that follows redirects: set endpoint= to its target"
        )

    def _reason(self, exc: BaseException | None) -> str:
        # A protocol error may quote what the server sent, which may echo a credential.
        return self._redact(excerpt(self._redact(str(exc)))) if exc is not None and str(exc) else "no details"
