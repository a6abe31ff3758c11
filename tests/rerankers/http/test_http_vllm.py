"""VLLMReranker against the loopback rerank server: batching, concurrency, retries, errors, sync and async."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from helpers import Caller

from milvus_rerank import (
    RerankConnectionError,
    RerankError,
    RerankHTTPError,
    RerankResponseError,
    RerankTimeoutError,
    RetryPolicy,
    VLLMReranker,
)
from milvus_rerank.testing.server import Fault, RerankTestServer, WordOverlapReranker
from milvus_rerank.types import RerankResult

QUERY = "milvus vector search"
DOCS = [
    f"doc {i} on milvus vector search" if i % 3 == 0 else f"doc {i} about birds and {i % 7} cats" for i in range(40)
]
FAST = {"backoff": 0.001, "timeout": 10.0}


def expected(documents: Sequence[str], top_n: int | None = None) -> list[RerankResult]:
    return WordOverlapReranker().rerank(QUERY, documents, top_n=top_n)


# -- endpoint, model, payload -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "path"),
    [
        ("", "/v1/rerank"),
        ("/v1", "/v1/rerank"),
        ("/v1/rerank", "/v1/rerank"),
        ("/rerank", "/rerank"),
        ("/v2", "/v2/rerank"),
    ],
)
def test_every_endpoint_form_reaches_a_rerank_route(
    server: RerankTestServer, call: Caller, suffix: str, path: str
) -> None:
    reranker = VLLMReranker(server.url + suffix, model=server.model_name)
    assert call(reranker, QUERY, DOCS[:5]) == expected(DOCS[:5])
    assert [record.path for record in server.rerank_requests] == [path]


def test_model_is_discovered_once_and_sent(call: Caller) -> None:
    with RerankTestServer(require_model=True, model_name="served/reranker") as server:
        reranker = VLLMReranker(server.url + "/v1")
        call(reranker, QUERY, DOCS[:3])
        call(reranker, QUERY, DOCS[:3])
        assert reranker.model == "served/reranker"
        assert [(r.method, r.path) for r in server.requests].count(("GET", "/v1/models")) == 1
        assert all(record.body["model"] == "served/reranker" for record in server.rerank_requests)


# -- discovery: one lock on both paths ------------------------------------------------------------

DISCOVERY_TIME = 0.4  # long enough that callers arriving together overlap with the first GET


def model_gets(server: RerankTestServer) -> int:
    return [(r.method, r.path) for r in server.requests].count(("GET", "/v1/models"))


def discovering_in_a_thread(reranker: VLLMReranker) -> threading.Thread:
    """A thread whose first rerank holds the discovery lock (for about DISCOVERY_TIME) once this returns."""
    holder = threading.Thread(target=reranker.rerank, args=(QUERY, DOCS[:3]))
    holder.start()
    while not reranker._discovery_lock.locked():
        time.sleep(0.001)
    return holder


def test_concurrent_first_async_calls_discover_once() -> None:
    with RerankTestServer(require_model=True, discovery_time=DISCOVERY_TIME) as server:

        async def run() -> list[list[RerankResult]]:
            async with VLLMReranker(server.url) as reranker:
                return await asyncio.gather(*(reranker.arerank(QUERY, DOCS[:4]) for _ in range(8)))

        results = asyncio.run(run())
        assert model_gets(server) == 1
        assert len(server.rerank_requests) == 8
        assert all(record.body["model"] == server.model_name for record in server.rerank_requests)
    assert all(result == expected(DOCS[:4]) for result in results)


def test_concurrent_first_calls_from_threads_and_coroutines_discover_once() -> None:
    with RerankTestServer(require_model=True, discovery_time=DISCOVERY_TIME) as server:
        reranker = VLLMReranker(server.url)
        start = threading.Barrier(5)
        results: list[list[RerankResult]] = []

        def in_thread() -> None:
            start.wait()
            results.append(reranker.rerank(QUERY, DOCS[:4]))

        async def in_loop() -> None:
            async def call() -> None:
                results.append(await reranker.arerank(QUERY, DOCS[:4]))

            await asyncio.to_thread(start.wait)
            await asyncio.gather(*(call() for _ in range(4)))
            for thread in threads:
                await asyncio.to_thread(thread.join)
            await reranker.aclose()

        threads = [threading.Thread(target=in_thread) for _ in range(4)]
        for thread in threads:
            thread.start()
        asyncio.run(in_loop())
        assert model_gets(server) == 1
        assert len(results) == 8
        assert all(result == expected(DOCS[:4]) for result in results)


def test_waiting_for_discovery_leaves_the_event_loop_running() -> None:
    with RerankTestServer(require_model=True, discovery_time=DISCOVERY_TIME) as server:
        reranker = VLLMReranker(server.url)

        async def run() -> tuple[int, list[RerankResult]]:
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.ensure_future(tick())
            result = await reranker.arerank(QUERY, DOCS[:3])
            ticker.cancel()
            await asyncio.to_thread(holder.join)
            await reranker.aclose()
            return ticks, result

        holder = discovering_in_a_thread(reranker)
        ticks, result = asyncio.run(run())
        assert model_gets(server) == 1
    assert result == expected(DOCS[:3])
    assert ticks >= 10  # a blocked loop would not have ticked while the thread discovered


def test_a_cancelled_wait_for_discovery_gives_the_lock_back() -> None:
    with RerankTestServer(require_model=True, discovery_time=DISCOVERY_TIME) as server:
        reranker = VLLMReranker(server.url)

        async def run() -> None:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(reranker.arerank(QUERY, DOCS[:3]), timeout=0.05)

        holder = discovering_in_a_thread(reranker)
        asyncio.run(run())
        holder.join()
        deadline = time.monotonic() + 2.0
        while reranker._discovery_lock.locked() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not reranker._discovery_lock.locked()
        reranker.close()
        assert model_gets(server) == 1


def test_unknown_model_error_lists_the_served_models(server: RerankTestServer, call: Caller) -> None:
    reranker = VLLMReranker(server.url, model="no-such-model", **FAST)
    with pytest.raises(RerankHTTPError) as caught:
        call(reranker, QUERY, DOCS[:3])
    assert caught.value.status_code == 404
    assert "no-such-model" in str(caught.value)
    assert server.model_name in str(caught.value)
    assert len(server.rerank_requests) == 1


def test_payload_carries_documents_as_strings_and_the_options(server: RerankTestServer, call: Caller) -> None:
    reranker = VLLMReranker(
        server.url,
        model=server.model_name,
        truncate_prompt_tokens=-1,
        raw_scores=True,
        extra_body={"instruction": "be brief"},
        headers={"X-Trace": "t-1"},
    )
    call(reranker, QUERY, DOCS[:4], top_n=2)
    (record,) = server.rerank_requests
    assert record.body["documents"] == DOCS[:4]
    assert record.body["query"] == QUERY
    assert record.body["truncate_prompt_tokens"] == -1
    assert record.body["use_activation"] is False
    assert record.body["instruction"] == "be brief"
    assert record.body["top_n"] == 2
    assert record.headers["x-trace"] == "t-1"
    assert "authorization" not in record.headers


def test_raw_scores_reach_the_raw_scorer(call: Caller) -> None:
    class Negated:
        def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
            results = WordOverlapReranker().rerank(query, documents)
            return sorted((RerankResult(r.index, -r.score) for r in results), key=lambda r: (-r.score, r.index))

        async def arerank(
            self, query: str, documents: Sequence[str], *, top_n: int | None = None
        ) -> list[RerankResult]:
            return self.rerank(query, documents)

    with RerankTestServer(raw_reranker=Negated()) as server:
        activated = call(VLLMReranker(server.url, model=server.model_name), QUERY, DOCS[:6])
        raw = call(VLLMReranker(server.url, model=server.model_name, raw_scores=True), QUERY, DOCS[:6])
    assert {r.index: -r.score for r in raw} == {r.index: r.score for r in activated}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"truncate_prompt_tokens": 0}, ValueError),
        ({"truncate_prompt_tokens": -2}, ValueError),
        ({"max_batch_size": 0}, ValueError),
        ({"max_concurrency": 0}, ValueError),
        ({"timeout": 0}, ValueError),
        ({"model": ""}, ValueError),
        ({"extra_body": {"documents": []}}, ValueError),
        ({"extra_body": [("a", 1)]}, TypeError),
        ({"client": object()}, TypeError),
        ({"raw_scores": "yes"}, TypeError),
    ],
)
def test_bad_configuration_fails_at_construction(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        VLLMReranker("http://127.0.0.1:1", **kwargs)


# -- batching and concurrency -------------------------------------------------------------------


@pytest.mark.parametrize("top_n", [None, 1, 7, 500])
def test_batches_merge_into_one_global_ranking(server: RerankTestServer, call: Caller, top_n: int | None) -> None:
    reranker = VLLMReranker(server.url, model=server.model_name, max_batch_size=6)
    results = call(reranker, QUERY, DOCS, top_n=top_n)
    assert results == expected(DOCS, top_n)
    requests = server.rerank_requests
    assert len(requests) == 7
    assert sorted(len(r.body["documents"]) for r in requests) == [4, 6, 6, 6, 6, 6, 6]
    assert all("top_n" not in record.body for record in requests)


def test_top_n_is_sent_clamped_when_one_batch_covers_everything(server: RerankTestServer, call: Caller) -> None:
    reranker = VLLMReranker(server.url, model=server.model_name)
    assert call(reranker, QUERY, DOCS[:5], top_n=50) == expected(DOCS[:5])
    assert call(reranker, QUERY, DOCS[:5], top_n=2) == expected(DOCS[:5], 2)
    assert [record.body["top_n"] for record in server.rerank_requests] == [5, 2]


def test_batches_are_in_flight_together(call: Caller) -> None:
    with RerankTestServer(service_time=0.5) as server:
        reranker = VLLMReranker(server.url, model=server.model_name, max_batch_size=10, max_concurrency=4)
        assert call(reranker, QUERY, DOCS) == expected(DOCS)
        assert len(server.rerank_requests) == 4
        assert server.max_in_flight() == 4


def test_max_concurrency_bounds_requests_in_flight(call: Caller) -> None:
    with RerankTestServer(service_time=0.15) as server:
        reranker = VLLMReranker(server.url, model=server.model_name, max_batch_size=5, max_concurrency=2)
        assert call(reranker, QUERY, DOCS) == expected(DOCS)
        assert len(server.rerank_requests) == 8
        assert server.max_in_flight() == 2


def test_zero_documents_send_no_request(server: RerankTestServer, call: Caller) -> None:
    reranker = VLLMReranker(server.url)  # would even discover the model first
    assert call(reranker, QUERY, []) == []
    assert server.requests == []


@pytest.mark.parametrize(
    ("args", "error"), [((1, ["a"]), TypeError), ((QUERY, "a"), TypeError), ((QUERY, ["a", 2]), TypeError)]
)
def test_bad_arguments_are_refused_before_any_request(
    server: RerankTestServer, call: Caller, args: tuple[Any, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        call(VLLMReranker(server.url), *args)
    with pytest.raises(ValueError, match="top_n"):
        call(VLLMReranker(server.url), QUERY, ["a"], top_n=0)
    assert server.requests == []


@pytest.mark.parametrize(
    ("query", "documents", "named"),
    [(QUERY, ["fine", "cut \ud800 pair"], "documents[1]"), ("bytes \udcff", ["fine"], "query")],
)
def test_a_lone_surrogate_names_the_bad_text_before_any_request(
    server: RerankTestServer, call: Caller, query: str, documents: list[str], named: str
) -> None:
    # Issue 11, item 13: not a UnicodeEncodeError pointing into our JSON body.
    with pytest.raises(ValueError, match=re.escape(named)) as caught:
        call(VLLMReranker(server.url, model=server.model_name), query, documents)
    assert not isinstance(caught.value, UnicodeError)
    assert server.requests == []


# -- retries --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault.rate_limited(retry_after=0),
        Fault.server_error(502),
        Fault.server_error(503),
        Fault.server_error(504),
        Fault.server_error(500),
        Fault.drop(),
    ],
    ids=["429", "502", "503", "504", "500", "drop"],
)
def test_transient_failures_are_retried(server: RerankTestServer, call: Caller, fault: Fault) -> None:
    server.inject(fault)
    reranker = VLLMReranker(server.url, model=server.model_name, **FAST)
    assert call(reranker, QUERY, DOCS[:5]) == expected(DOCS[:5])
    assert [record.status for record in server.rerank_requests] == [fault.status if fault.kind != "drop" else 0, 200]


def test_the_retry_policys_caps_bound_the_waits(server: RerankTestServer, call: Caller) -> None:
    # A server asking for 60 s and a backoff of 60 s: the policy's caps make both waits short.
    server.inject(Fault.rate_limited(retry_after=60))
    server.inject(Fault.server_error(503))
    policy = RetryPolicy(backoff=60.0, max_backoff=0.01, max_retry_after=0.01)
    reranker = VLLMReranker(server.url, model=server.model_name, retry=policy, timeout=10.0)
    began = time.monotonic()
    assert call(reranker, QUERY, DOCS[:5]) == expected(DOCS[:5])
    assert time.monotonic() - began < 30
    assert [record.status for record in server.rerank_requests] == [429, 503, 200]


def test_retries_stop_at_the_limit(server: RerankTestServer, call: Caller) -> None:
    server.inject(Fault.server_error(503), times=10)
    reranker = VLLMReranker(server.url, model=server.model_name, max_retries=2, **FAST)
    with pytest.raises(RerankHTTPError) as caught:
        call(reranker, QUERY, DOCS[:5])
    assert caught.value.status_code == 503
    assert "3 attempts" in str(caught.value)
    assert len(server.rerank_requests) == 3


def test_500_is_retried_once_only(server: RerankTestServer, call: Caller) -> None:
    server.inject(Fault.server_error(500), times=10)
    with pytest.raises(RerankHTTPError, match="HTTP 500"):
        call(VLLMReranker(server.url, model=server.model_name, max_retries=5, **FAST), QUERY, DOCS[:5])
    assert len(server.rerank_requests) == 2


def test_dropped_connections_end_in_a_connection_error(server: RerankTestServer, call: Caller) -> None:
    server.inject(Fault.drop(), times=10)
    with pytest.raises(RerankConnectionError, match="could not reach"):
        call(VLLMReranker(server.url, model=server.model_name, max_retries=1, **FAST), QUERY, DOCS[:5])
    assert len(server.rerank_requests) == 2


def test_retry_after_is_honoured(server: RerankTestServer, call: Caller) -> None:
    server.inject(Fault.rate_limited(retry_after=1))
    call(VLLMReranker(server.url, model=server.model_name, **FAST), QUERY, DOCS[:5])
    first, second = server.rerank_requests
    assert second.start - first.end >= 1.0


def test_only_the_failing_batch_is_retried(server: RerankTestServer, call: Caller) -> None:
    server.inject(Fault.server_error(503))
    reranker = VLLMReranker(server.url, model=server.model_name, max_batch_size=10, **FAST)
    assert call(reranker, QUERY, DOCS) == expected(DOCS)
    assert len(server.rerank_requests) == 5


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 415, 422])
def test_caller_mistakes_fail_at_once(server: RerankTestServer, call: Caller, status: int) -> None:
    server.inject(Fault.vllm_error(status, f"simulated {status}"), times=5)
    reranker = VLLMReranker(server.url, model=server.model_name, **FAST)
    with pytest.raises(RerankHTTPError) as caught:
        call(reranker, QUERY, DOCS[:5])
    assert caught.value.status_code == status
    assert caught.value.server_message == f"simulated {status}"
    assert server.url in str(caught.value)
    assert f"HTTP {status}" in str(caught.value)
    assert len(server.rerank_requests) == 1


@pytest.mark.parametrize("generation", ["old", "new"])
def test_both_vllm_error_generations_surface_the_message(call: Caller, generation: str) -> None:
    with RerankTestServer(error_generation=generation) as server:  # type: ignore[arg-type]
        raw = httpx.post(server.url + "/v1/rerank", json={"model": "nope", "query": "q", "documents": ["a"]}).json()
        assert ("error" in raw) == (generation == "new")
        assert raw.get("object") == ("error" if generation == "old" else None)
        with pytest.raises(RerankHTTPError, match="The model `nope` does not exist") as caught:
            call(VLLMReranker(server.url, model="nope"), QUERY, DOCS[:3])
    assert caught.value.server_message == "The model `nope` does not exist."


def test_timeouts_raise_a_timeout_error(server: RerankTestServer, call: Caller) -> None:
    server.inject(Fault.slow(2.0), times=3)
    reranker = VLLMReranker(server.url, model=server.model_name, timeout=0.2, max_retries=1, backoff=0.001)
    with pytest.raises(RerankTimeoutError, match="timed out after 2 attempts"):
        call(reranker, QUERY, DOCS[:5])


def test_the_deadline_bounds_the_whole_request(server: RerankTestServer, call: Caller) -> None:
    server.inject(Fault.slow(2.0), times=10)
    reranker = VLLMReranker(
        server.url, model=server.model_name, timeout=0.3, max_retries=10, deadline=0.7, backoff=0.001
    )
    with pytest.raises(RerankTimeoutError):
        call(reranker, QUERY, DOCS[:5])
    assert 2 <= server.rerank_arrivals <= 3


def test_an_unreachable_server_is_a_connection_error(call: Caller) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reranker = VLLMReranker(f"http://127.0.0.1:{port}", model="m", max_retries=2, **FAST)
    with pytest.raises(RerankConnectionError, match=f"127.0.0.1:{port}.*after 3 attempts"):
        call(reranker, QUERY, DOCS[:5])


# -- response validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "match"),
    [
        (Fault.malformed_json(), "malformed"),
        (Fault.wrong_index(), "outside"),
        (Fault.duplicate_index(), "more than once"),
        (Fault.nan_score(), "finite"),
        (Fault.missing_result(), "expected 5 results"),
        (Fault.respond(200, {"data": []}), "no 'results'"),
    ],
    ids=["malformed", "wrong-index", "duplicate-index", "nan", "missing", "no-results"],
)
def test_inconsistent_answers_raise_and_are_not_retried(
    server: RerankTestServer, call: Caller, fault: Fault, match: str
) -> None:
    server.inject(fault)
    reranker = VLLMReranker(server.url, model=server.model_name, **FAST)
    with pytest.raises(RerankResponseError, match=match) as caught:
        call(reranker, QUERY, DOCS[:5])
    assert server.url in str(caught.value)
    assert "body starts" in str(caught.value)
    assert len(server.rerank_requests) == 1


# -- API key ----------------------------------------------------------------------------------------

SECRET = "sk-very-secret-123"


def test_api_key_is_sent_and_never_shown(call: Caller, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with RerankTestServer(api_key=SECRET) as server:
        url = server.url
        good = VLLMReranker(server.url, api_key=SECRET, **FAST)
        assert call(good, QUERY, DOCS[:5]) == expected(DOCS[:5])
        assert all(r.headers["authorization"] == f"Bearer {SECRET}" for r in server.requests)
        assert SECRET not in repr(good)
        assert "***" in repr(good)

        wrong = VLLMReranker(server.url, api_key="sk-wrong-456", model=server.model_name, **FAST)
        with pytest.raises(RerankHTTPError) as caught:
            call(wrong, QUERY, DOCS[:5])
        assert caught.value.status_code == 401
        assert caught.value.server_message == "Unauthorized"
        assert "sk-wrong-456" not in str(caught.value)
        assert len([r for r in server.rerank_requests if r.status == 401]) == 1

        server.inject(Fault.server_error(503), times=10)
        with pytest.raises(RerankHTTPError) as failed:
            call(good, QUERY, DOCS[:5])
    with pytest.raises(RerankConnectionError) as unreachable:
        call(VLLMReranker(url, api_key=SECRET, model="m", max_retries=0), QUERY, DOCS[:5])
    for text in (str(failed.value), str(unreachable.value), repr(failed.value), caplog.text):
        assert SECRET not in text
    assert "retry" in caplog.text  # the retries were logged, without the key


# -- clients and lifecycle ------------------------------------------------------------------------


def test_callers_clients_are_used_and_left_open(server: RerankTestServer) -> None:
    seen: list[str] = []
    client = httpx.Client(event_hooks={"request": [lambda request: seen.append("sync")]})

    async def run() -> None:
        async def hook(request: httpx.Request) -> None:
            seen.append("async")

        async with httpx.AsyncClient(event_hooks={"request": [hook]}) as async_client:
            reranker = VLLMReranker(server.url, model=server.model_name, client=client, async_client=async_client)
            with reranker:
                reranker.rerank(QUERY, DOCS[:3])
            async with VLLMReranker(
                server.url, model=server.model_name, client=client, async_client=async_client
            ) as areranker:
                await areranker.arerank(QUERY, DOCS[:3])
            assert not async_client.is_closed

    asyncio.run(run())
    assert not client.is_closed
    assert seen == ["sync", "async"]
    client.close()


def test_closed_reranker_refuses_work_with_a_clear_error(server: RerankTestServer) -> None:
    reranker = VLLMReranker(server.url, model=server.model_name)
    reranker.rerank(QUERY, DOCS[:3])
    reranker.close()
    with pytest.raises(RuntimeError, match="closed"):
        reranker.rerank(QUERY, DOCS[:3])


def test_one_reranker_serves_several_event_loops(server: RerankTestServer) -> None:
    reranker = VLLMReranker(server.url, model=server.model_name, max_batch_size=10)

    async def run() -> list[RerankResult]:
        return await reranker.arerank(QUERY, DOCS)

    first = asyncio.run(run())
    second = asyncio.run(run())  # the first loop is closed: a fresh client is made for this one
    assert first == second == expected(DOCS)
    reranker.close()


async def test_concurrent_callers_share_the_reranker(server: RerankTestServer) -> None:
    async with VLLMReranker(server.url, model=server.model_name, max_batch_size=8) as reranker:
        results = await asyncio.gather(*(reranker.arerank(QUERY, DOCS[i:]) for i in range(5)))
    for i, result in enumerate(results):
        assert result == expected(DOCS[i:])


@pytest.mark.parametrize(
    ("fault", "error", "builtin"),
    [
        (Fault.slow(1.0), RerankTimeoutError, TimeoutError),
        (Fault.drop(), RerankConnectionError, ConnectionError),
        (Fault.nan_score(), RerankResponseError, ValueError),
        (Fault.vllm_error(400, "bad request"), RerankHTTPError, RerankError),
    ],
    ids=["timeout", "drop", "nan", "400"],
)
def test_each_failure_is_caught_as_a_rerank_error_and_as_its_builtin(
    server: RerankTestServer, call: Caller, fault: Fault, error: type[RerankError], builtin: type[Exception]
) -> None:
    server.inject(fault)
    reranker = VLLMReranker(server.url, model=server.model_name, timeout=0.2, max_retries=0)
    with pytest.raises(builtin) as caught:
        call(reranker, QUERY, DOCS[:3])
    assert type(caught.value) is error
    assert isinstance(caught.value, RerankError)
    assert caught.value.endpoint == server.url + "/v1/rerank"
