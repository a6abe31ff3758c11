"""Living with event loops: what the HTTP client needs so that async code never blocks or leaks.

Three pieces, each about the event loop rather than about reranking: :func:`holding` takes a
``threading.Lock`` shared with the sync path without blocking the loop; :func:`within_deadline`
runs one attempt (body included) under what is left of its deadline, however slowly a server
trickles; :class:`LoopClient` is the ``httpx.AsyncClient`` of one loop, closed by that loop's
``shutdown_asyncgens()`` (which ``asyncio.run`` calls), so a reranker used through many
``asyncio.run(...)`` calls keeps no socket and no dead loop alive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine
from typing import Any

import httpx

from milvus_rerank.errors import RerankError
from milvus_rerank.rerankers.http.attempts import Attempts

__all__ = ["LoopClient", "holding", "within_deadline"]


@contextlib.asynccontextmanager
async def holding(lock: threading.Lock) -> AsyncIterator[None]:
    """Hold a ``threading.Lock`` in async code without blocking the event loop.

    The lock is shared with the sync path, so a coroutine cannot simply wait on it: when it is
    taken, a short-lived thread waits instead and the coroutine awaits that thread.
    """
    if not lock.acquire(blocking=False):
        await _acquire_in_thread(lock)
    try:
        yield
    finally:
        lock.release()


async def _acquire_in_thread(lock: threading.Lock) -> None:
    acquired: concurrent.futures.Future[None] = concurrent.futures.Future()

    def wait() -> None:
        lock.acquire()
        if not acquired.set_running_or_notify_cancel():
            lock.release()  # the coroutine stopped waiting before we got it: nobody else will release it
            return
        acquired.set_result(None)

    threading.Thread(target=wait, name="milvus-rerank-lock-wait", daemon=True).start()
    try:
        await asyncio.wrap_future(acquired)
    except asyncio.CancelledError:
        # Cancelled once the thread held the lock (too late to cancel the future): hand it back.
        acquired.add_done_callback(lambda future: None if future.cancelled() else lock.release())
        raise


async def within_deadline(
    exchange: Coroutine[Any, Any, tuple[httpx.Response, bytes]], attempts: Attempts
) -> tuple[httpx.Response, bytes]:
    """Run one attempt, stopping it when the deadline passes, whatever the server trickles."""
    remaining = attempts.remaining()
    if math.isinf(remaining):
        return await exchange
    try:
        return await asyncio.wait_for(exchange, max(remaining, 0.0))
    except asyncio.TimeoutError as exc:
        if isinstance(exc, RerankError):  # since 3.11, RerankTimeoutError is an asyncio.TimeoutError too
            raise
        raise attempts.out_of_time() from None


class LoopClient:
    """The ``httpx.AsyncClient`` of one event loop, and the async generator that closes it with the loop.

    The generator is started on its loop, so the loop's ``shutdown_asyncgens()`` (which
    ``asyncio.run`` calls before closing it) finalises it, and it closes the client while the loop
    still runs. A loop closed without that is past helping: the client is then abandoned.
    """

    def __init__(self, client: httpx.AsyncClient, clients: weakref.WeakKeyDictionary[Any, LoopClient]) -> None:
        self.client = client
        self.abandoned = False
        self.closer = self._close_with_loop(clients)

    async def _close_with_loop(self, clients: weakref.WeakKeyDictionary[Any, LoopClient]) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            if not self.abandoned:
                loop = asyncio.get_running_loop()
                if clients.get(loop) is self:
                    del clients[loop]  # a closed client still refers to its loop: let both go
                await self.client.aclose()

    async def aclose(self) -> None:
        """Close the client now (on its loop), finishing the generator."""
        await self.closer.aclose()

    def abandon(self) -> None:
        """Finish the generator without touching the closed loop (no finaliser will run on it later)."""
        self.abandoned = True
        with contextlib.suppress(StopIteration, RuntimeError):
            self.closer.aclose().send(None)
