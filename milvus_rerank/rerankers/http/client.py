"""The HTTP client of the rerankers: batches, concurrency, retries and the clients' lifecycle.

:class:`HTTPReranker` is the one place that does I/O; what it decides without I/O is shared by
both paths, in :class:`~.base.BaseHTTPReranker`, :mod:`.endpoint`, :mod:`.credentials`, :mod:`.retry`, :mod:`.attempts`,
:mod:`.wire`, :mod:`.body` and :mod:`.loops`. The sync and async halves mirror each other line for
line (``_send`` / ``_asend``, ``_get_json`` / ``_aget_json``, ``_discover`` / ``_adiscover``,
``rerank`` / ``arerank``), as httpx's ``Client`` and ``AsyncClient`` do: a change to one half
belongs in the other too.

``arerank`` uses one ``httpx.AsyncClient`` per event loop, closed with that loop; ``rerank`` a
small thread pool over one ``httpx.Client``. What a call does (batches, retries, the deadline, the
answer checks, redirects) is described for users in docs/http-options.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import httpx

from milvus_rerank.errors import RerankHTTPError
from milvus_rerank.rerankers.contract import check_rerank_args, documents_to_score
from milvus_rerank.rerankers.http.attempts import Attempts
from milvus_rerank.rerankers.http.base import DEFAULT_MAX_RESPONSE_BYTES, BaseHTTPReranker
from milvus_rerank.rerankers.http.credentials import REDACTED
from milvus_rerank.rerankers.http.endpoint import redact_url
from milvus_rerank.rerankers.http.long_documents import ClientWindows
from milvus_rerank.rerankers.http.loops import holding, within_deadline
from milvus_rerank.rerankers.http.wire import BatchRequest, decode_json, merge_batches
from milvus_rerank.types import RerankResult

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "HTTPReranker"]


class HTTPReranker(BaseHTTPReranker):
    """Base of the HTTP rerankers: clients, batching, concurrency, retries and validation.

    Use a subclass: :class:`~milvus_rerank.VLLMReranker`, :class:`~milvus_rerank.TEIReranker`,
    :class:`~milvus_rerank.CohereReranker` and the others. Each declares its own options and
    takes the shared ones of :class:`~milvus_rerank.HTTPOptions` as keywords. No connection is
    made until the first request.

    Args:
        endpoint: Base URL (``http://host:8000``), versioned base (``.../v1``) or full rerank URL;
            or a list of them, servers of the same model: each request goes to the one with the
            fewest requests in flight, and one whose connection fails is left out for a while
            (see :mod:`milvus_rerank.rerankers.http.pool`; behind a router, give its one URL).
        model: Model name sent with every request; see the subclass for what ``None`` does.
        **options: The shared options, described on :class:`~milvus_rerank.HTTPOptions`.

    Raises:
        TypeError: An argument of the wrong type, or an option this reranker does not have.
        ValueError: An invalid URL (or one carrying credentials), key, header, number or body field.

    A subclass sets the routes and implements :meth:`_build_payload` and :meth:`_extract_items`
    (pure: no I/O); one whose server tells a setting (the served model, the batch limit) sets
    :attr:`discovery_route` and the three discovery hooks.
    """

    # -- I/O: sync ------------------------------------------------------------------------------

    def _request(self, method: str, url: str, *, content: bytes | None = None, n_documents: int | None = None) -> bytes:
        """One request with the retry policy; the decoded body of its successful answer."""
        client = self._clients.sync()
        attempts = self._attempts(url, n_documents)
        while True:
            chosen = self._endpoints.acquire()
            target = self._aim(attempts, chosen, url)
            try:
                response, body = self._exchange(client, method, target, content, attempts)
            except httpx.HTTPError as exc:
                if self._resend_elsewhere(chosen, target, exc):
                    continue
                wait = attempts.failed(exc=exc)
            else:
                if response.is_success:
                    return body
                wait = attempts.failed(response=response, body=body)
            finally:
                self._endpoints.release(chosen)
            time.sleep(wait)

    def _exchange(
        self, client: httpx.Client, method: str, url: str, content: bytes | None, attempts: Attempts
    ) -> tuple[httpx.Response, bytes]:
        """One attempt: send, follow the redirects allowed, read the body within its limits."""
        request = client.build_request(method, url, content=content, headers=self._headers, timeout=attempts.timeout())
        response = client.send(request, stream=True, follow_redirects=False)
        hops = 0
        while (hop := self._next_hop(client, response, hops)) is not None:
            response.close()
            response = client.send(hop, stream=True, follow_redirects=False)
            hops += 1
        try:
            reader = self._body_reader(response, url)
            for chunk in response.iter_raw():
                reader.feed(chunk)
                if reader.full:
                    break
                attempts.check_deadline()
            return response, reader.content()
        finally:
            response.close()

    def _send(self, request: BatchRequest) -> list[RerankResult]:
        body = self._request("POST", request.url, content=request.content, n_documents=request.n_documents)
        return self._parse(request, body)

    def _get_json(self, route: str) -> Any:
        """GET a small JSON document (``/v1/models``, ``/info``) with the retry policy."""
        url = self.endpoint.url(route)
        return decode_json(self._request("GET", url), endpoint=redact_url(url), redact=self._redact)

    def _discover(self) -> int:
        """Ask :attr:`discovery_route` once if a setting is missing; the batch size to use."""
        if self._needs_discovery():
            with self._discovery_lock:
                if self._needs_discovery():
                    try:
                        body = self._get_json(self._require_discovery_route())
                    except RerankHTTPError as exc:
                        self._discovery_failed(self._discovery_error(exc))
                    else:
                        self._adopt(body)
        return self._batch_size or self.default_batch_size

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        """Score ``documents`` against ``query`` on the server and return them best first.

        Args:
            query: The search query.
            documents: Texts to score; zero documents return ``[]`` without any request. Empty and
                whitespace-only ones are never sent: they score ``BLANK_SCORE`` and rank last.
            top_n: Keep only the best ``top_n``; ``None`` keeps all.

        Returns:
            Results sorted by score descending, ties by index, ``index`` pointing into ``documents``.

        Raises:
            RerankHTTPError: The server answered with an error status (after retries, if retryable).
            RerankTimeoutError: No answer within ``timeout`` or ``deadline``.
            RerankConnectionError: The server could not be reached.
            RerankResponseError: The answer was malformed (bad JSON, wrong indices, NaN scores).
        """
        # Blank documents are never sent (the contract's policy): they score BLANK_SCORE, last.
        to_score = documents_to_score(check_rerank_args(query, documents, top_n))
        if not to_score.texts:
            return to_score.results([], top_n)
        batch_size = self._discover()
        call = self._window_plan(query, to_score.texts)
        # With windows every window's score is needed (a document is its best): the cut comes after.
        requests = self._plan(
            query, to_score.texts if call is None else call.texts, top_n if call is None else None, batch_size
        )
        if len(requests) == 1:
            per_batch = [self._send(requests[0])]
        else:
            futures = [self._clients.executor().submit(self._send, request) for request in requests]
            try:
                per_batch = [future.result() for future in futures]
            finally:
                for future in futures:
                    future.cancel()
        return to_score.results(ClientWindows.best(merge_batches(requests, per_batch), call), top_n)

    # -- I/O: async (mirrors the sync path) -----------------------------------------------------

    async def _arequest(
        self, method: str, url: str, *, content: bytes | None = None, n_documents: int | None = None
    ) -> bytes:
        """Async twin of :meth:`_request`; each attempt, body included, ends with the deadline."""
        client = await self._clients.for_running_loop()
        attempts = self._attempts(url, n_documents)
        while True:
            chosen = self._endpoints.acquire()
            target = self._aim(attempts, chosen, url)
            try:
                response, body = await within_deadline(
                    self._aexchange(client, method, target, content, attempts), attempts
                )
            except httpx.HTTPError as exc:
                if self._resend_elsewhere(chosen, target, exc):
                    continue
                wait = attempts.failed(exc=exc)
            else:
                if response.is_success:
                    return body
                wait = attempts.failed(response=response, body=body)
            finally:
                self._endpoints.release(chosen)
            await asyncio.sleep(wait)

    async def _aexchange(
        self, client: httpx.AsyncClient, method: str, url: str, content: bytes | None, attempts: Attempts
    ) -> tuple[httpx.Response, bytes]:
        """Async twin of :meth:`_exchange`."""
        request = client.build_request(method, url, content=content, headers=self._headers, timeout=attempts.timeout())
        response = await client.send(request, stream=True, follow_redirects=False)
        hops = 0
        while (hop := self._next_hop(client, response, hops)) is not None:
            await response.aclose()
            response = await client.send(hop, stream=True, follow_redirects=False)
            hops += 1
        try:
            reader = self._body_reader(response, url)
            async for chunk in response.aiter_raw():
                reader.feed(chunk)
                if reader.full:
                    break
                attempts.check_deadline()
            return response, reader.content()
        finally:
            await response.aclose()

    async def _asend(self, request: BatchRequest) -> list[RerankResult]:
        body = await self._arequest("POST", request.url, content=request.content, n_documents=request.n_documents)
        return self._parse(request, body)

    async def _aget_json(self, route: str) -> Any:
        """Async twin of :meth:`_get_json`."""
        url = self.endpoint.url(route)
        return decode_json(await self._arequest("GET", url), endpoint=redact_url(url), redact=self._redact)

    async def _adiscover(self) -> int:
        """Async twin of :meth:`_discover`, under the same lock, waited for off the event loop."""
        if self._needs_discovery():
            async with holding(self._discovery_lock):
                if self._needs_discovery():
                    try:
                        body = await self._aget_json(self._require_discovery_route())
                    except RerankHTTPError as exc:
                        self._discovery_failed(self._discovery_error(exc))
                    else:
                        self._adopt(body)
        return self._batch_size or self.default_batch_size

    async def arerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        """Async twin of :meth:`rerank`, on ``httpx.AsyncClient``; batches run concurrently.

        Raises:
            RerankError: As :meth:`rerank`.
        """
        to_score = documents_to_score(check_rerank_args(query, documents, top_n))
        if not to_score.texts:
            return to_score.results([], top_n)
        batch_size = await self._adiscover()
        call = await asyncio.to_thread(self._window_plan, query, to_score.texts) if self._windows.enabled else None
        requests = self._plan(
            query, to_score.texts if call is None else call.texts, top_n if call is None else None, batch_size
        )
        if len(requests) == 1:
            per_batch = [await self._asend(requests[0])]
        else:
            limit = asyncio.Semaphore(self.max_concurrency)

            async def send(request: BatchRequest) -> list[RerankResult]:
                async with limit:
                    return await self._asend(request)

            tasks = [asyncio.ensure_future(send(request)) for request in requests]
            try:
                per_batch = list(await asyncio.gather(*tasks))
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        return to_score.results(ClientWindows.best(merge_batches(requests, per_batch), call), top_n)

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the clients this reranker created and its thread pool; callers' clients stay open.

        An event loop's async client is closed on that loop: now if the loop is idle, as soon as
        it can if the loop is running. Prefer :meth:`aclose` from async code.
        """
        self._clients.close()

    async def aclose(self) -> None:
        """Close the async client of the running loop, then everything :meth:`close` closes."""
        await self._clients.aclose()

    def __enter__(self) -> HTTPReranker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> HTTPReranker:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        key = f"'{REDACTED}'" if self._api_key is not None else "None"
        model = self._redact(repr(self.model))  # a discovered name is server text
        endpoint = self._endpoints.display if len(self._endpoints.endpoints) > 1 else repr(self.endpoint.display)
        return f"{type(self).__name__}(endpoint={endpoint}, model={model}, api_key={key}, {self._repr_options()})"

    def _repr_options(self) -> str:
        """The options :meth:`__repr__` shows after the endpoint, model and key."""
        return f"max_batch_size={self._batch_size!r}, max_concurrency={self.max_concurrency}"
