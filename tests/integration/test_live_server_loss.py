"""A real vLLM server killed while batches are in flight: the calls fail soon, with a clear error.

The server killed here is a spare of its own (the shared one keeps serving the other tests).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest

from milvus_rerank import RerankConnectionError, RerankError, VLLMReranker

pytestmark = pytest.mark.integration

QUERY = "milvus vector search"
WORDS = "milvus vector search engine birds fly south cats sleep protein mice database rank pages".split()
DOCUMENTS = [" ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(12)) + f" {i}" for i in range(4000)]
OPTIONS: dict[str, Any] = {"max_batch_size": 4, "max_concurrency": 2, "max_retries": 2, "backoff": 0.1, "deadline": 20}
"""Small batches, so a call is still sending when the server dies; few, quick retries, so it gives up soon."""


class Answers:
    """Counts the server's answers through an httpx event hook (thread-safe)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def seen(self, response: httpx.Response) -> None:
        with self._lock:
            self.count += 1

    async def aseen(self, response: httpx.Response) -> None:
        self.seen(response)


def test_a_server_killed_mid_run_fails_both_paths_soon(vllm_server) -> None:
    served = vllm_server("spare")
    options = {"model": served.model, "api_key": served.api_key, **OPTIONS}
    sync_answers, async_answers = Answers(), Answers()
    errors: dict[str, BaseException | None] = {}

    def run_sync() -> None:
        client = httpx.Client(event_hooks={"response": [sync_answers.seen]})
        with VLLMReranker(served.url, client=client, **options) as reranker:
            try:
                reranker.rerank(QUERY, DOCUMENTS)
                errors["sync"] = None
            except BaseException as exc:
                errors["sync"] = exc
        client.close()

    async def run_async() -> None:
        async with (
            httpx.AsyncClient(event_hooks={"response": [async_answers.aseen]}) as client,
            VLLMReranker(served.url, async_client=client, **options) as reranker,
        ):
            try:
                await reranker.arerank(QUERY, DOCUMENTS)
                errors["async"] = None
            except BaseException as exc:
                errors["async"] = exc

    threads = [threading.Thread(target=run_sync), threading.Thread(target=lambda: asyncio.run(run_async()))]
    for thread in threads:
        thread.start()
    give_up = time.monotonic() + 60
    while min(sync_answers.count, async_answers.count) < 5:
        assert time.monotonic() < give_up, "the server answered too few batches before the kill"
        assert all(thread.is_alive() for thread in threads), f"a call ended before the kill: {errors}"
        time.sleep(0.05)
    served.kill()
    killed = time.monotonic()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.monotonic() - killed

    assert not any(thread.is_alive() for thread in threads), "a call still hangs a minute after the kill"
    assert elapsed < OPTIONS["deadline"] + 10
    assert sync_answers.count < len(DOCUMENTS) // OPTIONS["max_batch_size"]  # it really was mid-run
    for path in ("sync", "async"):
        error = errors[path]
        assert isinstance(error, RerankConnectionError), f"{path}: {error!r}"
        assert served.url in str(error)
        assert "check that the server is running" in str(error)

    # Afterwards a new call fails at once (connection refused), not after the deadline.
    started = time.monotonic()
    with (
        VLLMReranker(served.url, model=served.model, api_key=served.api_key, max_retries=0) as reranker,
        pytest.raises(RerankError),
    ):
        reranker.rerank(QUERY, DOCUMENTS[:2])
    assert time.monotonic() - started < 5
