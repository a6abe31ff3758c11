"""When to retry a failed rerank request, and after how long: a pure decision shared by both paths.

Nothing here does I/O or sleeps. The client asks :meth:`RetryPolicy.delay` after each failure and
waits the answer with ``time.sleep`` or ``asyncio.sleep``, so the sync and async paths retry alike
and the policy is tested without a server. The rules follow what vLLM, TEI, Cohere and Infinity
mean by their statuses: 429 and the gateway statuses are transient, the 4xx are the caller's or the
deployment's mistake, and a 500 gets one more chance at most.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass

from milvus_rerank.validation import check_int, check_number

__all__ = ["RETRYABLE_STATUSES", "RetryPolicy", "parse_retry_after"]

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
"""Statuses retried with backoff (500 is retried once at most, see :class:`RetryPolicy`)."""


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
        # Infinity is a valid "no limit" for each of the times; NaN and negative numbers are not.
        check_int(self.max_retries, "max_retries", minimum=0)
        for name in ("backoff", "max_backoff", "max_retry_after"):
            check_number(getattr(self, name), name, allow_infinity=True)
        check_number(self.deadline, "deadline", inclusive=False, allow_infinity=True)

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
