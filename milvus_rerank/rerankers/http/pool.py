"""Several endpoints of one deployment without a router: the least busy one gets each request.

``endpoint=[url, url, ...]`` on an HTTP reranker makes an :class:`EndpointPool`. Each request
(a batch, or a discovery GET) goes to the endpoint with the fewest requests of this reranker in
flight, skipping those that failed a connection in the last :data:`COOL_DOWN_S` seconds; a
request whose connection fails is resent at once to another endpoint, inside the same deadline.
When every endpoint is cooling down, the one whose cool-down ends first is tried, under the
retry policy's backoff, as with a single endpoint. The endpoints must serve the same model:
the answer of one call may come from several of them.

This is deliberately small (no health checks, no weights, no shared state between processes):
for more than two or three servers, put ``vllm-router`` or a Kubernetes Service in front and
give its one URL (see docs/at-scale.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import httpx

from milvus_rerank.rerankers.http.endpoint import Endpoint

__all__ = ["CONNECTION_FAILURES", "COOL_DOWN_S", "EndpointPool"]

COOL_DOWN_S = 10.0
"""Seconds an endpoint that failed a connection is left out of the choice."""

CONNECTION_FAILURES = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ConnectTimeout)
"""What says the server is gone (refused, reset, closed mid-answer), not that it is slow or said no."""


class EndpointPool:
    """The endpoints of one reranker, their requests in flight and their cool-downs.

    Thread-safe; shared by the sync and async paths (the lock is never held across I/O).

    Args:
        endpoints: One or more parsed endpoints; the first one names the reranker in messages.
        cool_down: Seconds an endpoint stays out of the choice after a connection failure.
        clock: Seconds on a monotonic clock (tests pass a fake one).
    """

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        cool_down: float = COOL_DOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not endpoints:
            raise ValueError("endpoint must be a URL or a non-empty list of URLs")
        self.endpoints = tuple(endpoints)
        self._in_flight = [0] * len(self.endpoints)
        self._cool_until = [float("-inf")] * len(self.endpoints)
        self.cool_down = cool_down
        self._clock = clock
        self._lock = threading.Lock()

    @classmethod
    def parse(cls, endpoint: str | Sequence[str], *, default_route: str, routes: Sequence[str]) -> EndpointPool:
        """The pool of one URL or of a list of them (each parsed as :meth:`Endpoint.parse` does).

        Raises:
            TypeError: ``endpoint`` is neither a str nor a list of str.
            ValueError: A URL is invalid, the list is empty, or a URL is given twice.
        """
        urls = [endpoint] if isinstance(endpoint, str) else endpoint
        if not isinstance(urls, Sequence):
            raise TypeError(f"endpoint must be a str URL or a list of them, got {type(endpoint).__name__}")
        parsed = [Endpoint.parse(url, default_route=default_route, routes=routes) for url in urls]
        seen = [e.rerank_url for e in parsed]
        twice = sorted({e.display for e in parsed if seen.count(e.rerank_url) > 1})
        if twice:
            raise ValueError(f"endpoint lists {twice[0]!r} more than once: give each server once")
        return cls(parsed)

    @property
    def display(self) -> str:
        """The endpoints, safe for messages: one URL, or ``[url, url]``."""
        if len(self.endpoints) == 1:
            return self.endpoints[0].display
        return "[" + ", ".join(e.display for e in self.endpoints) + "]"

    def acquire(self) -> int:
        """Choose an endpoint for one attempt and count it in flight; :meth:`release` it after.

        The one with the fewest requests in flight among those not cooling down (the first
        listed on a tie); when all are cooling down, the one that recovers first.
        """
        with self._lock:
            now = self._clock()
            ready = [i for i, until in enumerate(self._cool_until) if until <= now]
            if ready:
                chosen = min(ready, key=lambda i: self._in_flight[i])
            else:
                chosen = min(range(len(self.endpoints)), key=lambda i: self._cool_until[i])
            self._in_flight[chosen] += 1
            return chosen

    def release(self, index: int) -> None:
        """The attempt on endpoint ``index`` is over."""
        with self._lock:
            self._in_flight[index] -= 1

    def connection_failed(self, index: int) -> bool:
        """Cool endpoint ``index`` down; whether another endpoint is ready to take the request now."""
        with self._lock:
            now = self._clock()
            self._cool_until[index] = now + self.cool_down
            return any(until <= now for until in self._cool_until)

    def url_on(self, index: int, url: str) -> str:
        """``url``, written for the first endpoint, as the same route on endpoint ``index``."""
        first, target = self.endpoints[0], self.endpoints[index]
        if index == 0:
            return url
        if url == first.rerank_url:
            return target.rerank_url
        if url.startswith(first.base_url):
            return target.base_url + url[len(first.base_url) :]
        return url
