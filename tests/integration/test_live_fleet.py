"""Two real vLLM servers behind ``vllm-router`` 0.1.15: same scores, discovery, a server lost, both lost.

The router proxies ``/v2/rerank`` as it is; its own ``/v1/rerank`` and ``/rerank`` rewrite the body in
another server's shape (the model becomes ``"default"``), which one test shows. The two kill tests run
last, in the order ``conftest.KILLS_IN_ORDER`` sets: the fleet first loses the shared server, and at
the very end, after the spare was killed on its own, has no server left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from conftest import Fleet, Served

from milvus_rerank import RerankConnectionError, RerankHTTPError, RerankResult, VLLMReranker

pytestmark = pytest.mark.integration

QUERY = "milvus vector search"
WORDS = "milvus vector search engine birds fly south cats sleep protein mice database rank pages".split()
DOCUMENTS = [" ".join(WORDS[(i * 5 + k) % len(WORDS)] for k in range(10)) + f" {i}" for i in range(48)]


def pairs_scored(server: Served) -> float:
    """The pairs ``server`` has scored so far (vLLM counts each document of a rerank as one request)."""
    text = httpx.get(server.url + "/metrics", timeout=10).text
    found = re.search(r'^vllm:request_success_total\{[^}]*finished_reason="stop"[^}]*\} (\S+)$', text, re.MULTILINE)
    assert found, "vLLM's /metrics has no vllm:request_success_total"
    return float(found.group(1))


def routed(fleet: Fleet, **options: Any) -> VLLMReranker:
    return VLLMReranker(fleet.url, model=fleet.router.model, api_key=fleet.router.api_key, **options)


def same(answer: list[RerankResult], expected: list[RerankResult]) -> None:
    assert [r.index for r in answer] == [r.index for r in expected]
    assert [r.score for r in answer] == pytest.approx([r.score for r in expected], abs=1e-5)


def test_the_router_gives_the_scores_of_one_server_sync_async_and_to_concurrent_callers(vllm_fleet: Fleet) -> None:
    worker = vllm_fleet.workers[0]
    with VLLMReranker(worker.url, model=worker.model, api_key=worker.api_key, max_batch_size=8) as direct:
        expected = direct.rerank(QUERY, DOCUMENTS)
    before = [pairs_scored(w) for w in vllm_fleet.workers]
    with routed(vllm_fleet, max_batch_size=8, max_concurrency=4) as reranker:
        same(reranker.rerank(QUERY, DOCUMENTS), expected)
        same(asyncio.run(reranker.arerank(QUERY, DOCUMENTS)), expected)
        with ThreadPoolExecutor(4) as pool:
            for answer in pool.map(lambda _: reranker.rerank(QUERY, DOCUMENTS), range(4)):
                same(answer, expected)

        async def four_at_once() -> list[list[RerankResult]]:
            return list(await asyncio.gather(*(reranker.arerank(QUERY, DOCUMENTS) for _ in range(4))))

        for answer in asyncio.run(four_at_once()):
            same(answer, expected)
    served = [pairs_scored(w) - b for w, b in zip(vllm_fleet.workers, before, strict=True)]
    assert sum(served) == 10 * len(DOCUMENTS)
    assert min(served) >= 3 * len(DOCUMENTS), f"round robin left a server idle: {served}"


def test_the_model_is_discovered_through_the_router_and_its_own_rerank_routes_are_not_vllms(
    vllm_fleet: Fleet,
) -> None:
    with VLLMReranker(vllm_fleet.url, api_key=vllm_fleet.router.api_key) as reranker:
        assert len(reranker.rerank(QUERY, DOCUMENTS[:4])) == 4
        assert reranker.model == vllm_fleet.router.model  # GET /v1/models, passed on with our key
    # What the router lacks: /v1/rerank is rewritten (the model becomes "default"), so the client's
    # default route fails with a clear 404; endpoint=ROUTER/v2 is the one to give (docs/at-scale.md).
    with (
        VLLMReranker(vllm_fleet.router.url, model=vllm_fleet.router.model, api_key=vllm_fleet.router.api_key) as v1,
        pytest.raises(RerankHTTPError, match="The model `default` does not exist") as caught,
    ):
        v1.rerank(QUERY, DOCUMENTS[:2])
    assert caught.value.status_code == 404


def test_a_server_killed_mid_loop_fails_no_call_and_the_survivor_takes_all(
    vllm_fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    victim, survivor = vllm_fleet.workers
    if victim.state is None:
        pytest.skip("the shared server was not started through the script (no MILVUS_RERANK_TEST_VLLM_STATE)")
    options = {"max_batch_size": 8, "max_concurrency": 2, "max_retries": 4, "backoff": 0.2, "deadline": 30}
    calls = {"sync": 0, "async": 0}
    errors: list[BaseException] = []
    stop = threading.Event()

    def sync_loop() -> None:
        with routed(vllm_fleet, **options) as reranker:
            while not stop.is_set():
                try:
                    assert len(reranker.rerank(QUERY, DOCUMENTS)) == len(DOCUMENTS)
                except BaseException as exc:
                    errors.append(exc)
                    return
                calls["sync"] += 1

    async def async_loop() -> None:
        async with routed(vllm_fleet, **options) as reranker:
            while not stop.is_set():
                try:
                    assert len(await reranker.arerank(QUERY, DOCUMENTS)) == len(DOCUMENTS)
                except BaseException as exc:
                    errors.append(exc)
                    return
                calls["async"] += 1

    threads = [threading.Thread(target=sync_loop), threading.Thread(target=lambda: asyncio.run(async_loop()))]
    with caplog.at_level(logging.WARNING, logger="milvus_rerank.http"):
        for thread in threads:
            thread.start()
        give_up = time.monotonic() + 60
        while min(calls.values()) < 3:
            assert not errors, f"a call failed before the kill: {errors[0]!r}"
            assert time.monotonic() < give_up, "the fleet answered too few calls in a minute"
            time.sleep(0.05)
        victim.kill()
        at_kill = dict(calls)
        time.sleep(5)  # the loops go on through the kill and the router's health checks (every second)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a call hangs after the kill"
    assert not errors, f"a call failed after the kill: {errors[0]!r}"
    assert all(calls[path] > at_kill[path] for path in calls), f"no call completed after the kill: {calls}"
    retried = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert all(re.search(r"\((HTTP 50[23]|ConnectError|RemoteProtocolError|ReadError)\)", m) for m in retried), retried

    # The router has left the dead server out: with no retry at all, every call now succeeds, on the survivor.
    before = pairs_scored(survivor)
    with routed(vllm_fleet, max_batch_size=8, max_retries=0) as reranker:
        for _ in range(6):
            assert len(reranker.rerank(QUERY, DOCUMENTS)) == len(DOCUMENTS)
    assert pairs_scored(survivor) - before == 6 * len(DOCUMENTS)


def test_both_servers_killed_is_a_clear_error_naming_the_router_within_the_deadline(vllm_fleet: Fleet) -> None:
    for worker in vllm_fleet.workers:
        if worker.state is None:
            pytest.skip("the shared server was not started through the script: not ours to kill")
        with contextlib.suppress(ProcessLookupError):  # killed by an earlier test, as CI orders them
            worker.kill()
    raw = httpx.post(vllm_fleet.url + "/rerank", json={"query": QUERY, "documents": DOCUMENTS[:2]}, timeout=30)
    assert raw.status_code in (502, 503), raw.text  # the router answers; no worker does
    options = {"max_retries": 3, "backoff": 0.2, "deadline": 10}
    with routed(vllm_fleet, **options) as reranker:
        started = time.monotonic()
        with pytest.raises((RerankHTTPError, RerankConnectionError)) as sync:
            reranker.rerank(QUERY, DOCUMENTS)
        with pytest.raises((RerankHTTPError, RerankConnectionError)) as asynchronous:
            asyncio.run(reranker.arerank(QUERY, DOCUMENTS))
        elapsed = time.monotonic() - started
    assert elapsed < 2 * (options["deadline"] + 5), "a call outlived its deadline"
    for error in (sync.value, asynchronous.value):
        assert vllm_fleet.router.url in str(error), str(error)
        if isinstance(error, RerankHTTPError):
            assert error.status_code in (502, 503)
