"""The httpx clients of one HTTP reranker: :class:`HTTPClients`, made lazily and closed together."""

from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
import threading
import weakref

import httpx

from milvus_rerank.rerankers.http.loops import LoopClient

__all__ = ["HTTPClients"]


class HTTPClients:
    """A sync ``httpx.Client``, one ``httpx.AsyncClient`` per event loop, and a thread pool for sync batches.

    Each is made on first use. A client the caller passed is used as it is and left open; the
    others close with :meth:`close` / :meth:`aclose`, and an event loop's async client also closes
    when that loop shuts down its async generators (``asyncio.run`` does).

    Args:
        client: The caller's ``httpx.Client`` for the sync path, or ``None`` to make one.
        async_client: The caller's ``httpx.AsyncClient``, used on whatever loop calls, or ``None``.
        max_concurrency: Connections kept per client, and the thread pool's size.
        owner: The reranker's class name, for the error after :meth:`close`.

    Raises:
        TypeError: ``client`` or ``async_client`` is not the httpx type.
    """

    def __init__(
        self,
        client: httpx.Client | None,
        async_client: httpx.AsyncClient | None,
        *,
        max_concurrency: int,
        owner: str,
    ) -> None:
        if client is not None and not isinstance(client, httpx.Client):
            raise TypeError(f"client must be an httpx.Client, got {type(client).__name__}")
        if async_client is not None and not isinstance(async_client, httpx.AsyncClient):
            raise TypeError(f"async_client must be an httpx.AsyncClient, got {type(async_client).__name__}")
        self._client = client
        self._owns_client = client is None
        self._user_async_client = async_client
        self._max_concurrency = max_concurrency
        self._owner = owner
        self.loop_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopClient] = (
            weakref.WeakKeyDictionary()
        )
        self._closing: set[concurrent.futures.Future[None]] = set()
        self._tls_context: ssl.SSLContext | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def sync(self) -> httpx.Client:
        """The sync client.

        Raises:
            RuntimeError: After :meth:`close`.
        """
        self._check_open()
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(limits=self._limits())
            return self._client

    async def for_running_loop(self) -> httpx.AsyncClient:
        """The async client of the running event loop (the caller's, when one was passed).

        Raises:
            RuntimeError: After :meth:`close`.
        """
        self._check_open()
        if self._user_async_client is not None:
            return self._user_async_client
        # An AsyncClient's connections belong to the loop that opened them: one client per loop,
        # closed with that loop.
        loop = asyncio.get_running_loop()
        entry = self.loop_clients.get(loop)
        if entry is None or entry.client.is_closed:
            self._forget_closed_loops()
            entry = LoopClient(httpx.AsyncClient(limits=self._limits(), verify=self._tls()), self.loop_clients)
            self.loop_clients[loop] = entry
            await entry.closer.asend(None)  # started on this loop, so its shutdown_asyncgens() finalises it
        return entry.client

    def executor(self) -> concurrent.futures.ThreadPoolExecutor:
        """The thread pool that sends a sync call's batches side by side."""
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max_workers=self._max_concurrency, thread_name_prefix="milvus-rerank-http"
                )
            return self._pool

    def close(self) -> None:
        """Close the clients made here and the thread pool; the caller's clients stay open.

        An event loop's async client is closed on that loop: now if the loop is idle, as soon as
        it can if the loop is running. The client of a loop closed without
        ``shutdown_asyncgens()`` cannot be closed any more: its connections go with the garbage
        collector.
        """
        self._closed = True
        with self._lock:
            pool, self._pool = self._pool, None
            client = self._client if self._owns_client else None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if client is not None:
            client.close()
        for loop, entry in list(self.loop_clients.items()):
            if loop.is_closed():
                entry.abandon()
            elif loop.is_running():
                closing = asyncio.run_coroutine_threadsafe(entry.aclose(), loop)
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
            else:
                loop.run_until_complete(entry.aclose())
        self.loop_clients.clear()

    async def aclose(self) -> None:
        """Close the async client of the running loop, then everything :meth:`close` closes."""
        entry = self.loop_clients.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry.aclose()
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self._owner} is closed; create a new one")

    def _forget_closed_loops(self) -> None:
        for loop, entry in list(self.loop_clients.items()):
            if loop.is_closed():
                del self.loop_clients[loop]
                entry.abandon()

    def _tls(self) -> ssl.SSLContext:
        """The default TLS context of httpx, made once: loading the CA bundle costs more than a loopback request."""
        with self._lock:
            if self._tls_context is None:
                self._tls_context = httpx.create_ssl_context(verify=True, trust_env=True)
            return self._tls_context

    def _limits(self) -> httpx.Limits:
        size = max(self._max_concurrency, 10)
        return httpx.Limits(max_connections=size, max_keepalive_connections=size)
