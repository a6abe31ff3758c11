"""``endpoint=[url, url]``: the least busy server gets each batch; a dead one is left out and its batch resent."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from helpers import Caller

from milvus_rerank import RerankConnectionError, RerankHTTPError, VLLMReranker
from milvus_rerank.rerankers.http.endpoint import Endpoint
from milvus_rerank.rerankers.http.pool import EndpointPool
from milvus_rerank.testing.server import Fault, RerankTestServer, WordOverlapReranker

QUERY = "milvus vector search"
DOCUMENTS = [f"milvus document {i} about {'vector search' if i % 3 else 'birds'}" for i in range(40)]


@pytest.fixture
def two() -> Iterator[tuple[RerankTestServer, RerankTestServer]]:
    with RerankTestServer(service_time=0.05) as first, RerankTestServer(service_time=0.05) as second:
        yield first, second


@pytest.fixture
def dead_url() -> str:
    """The URL of a server that was stopped: its port refuses connections."""
    with RerankTestServer() as server:
        url = server.url
    return url


def test_batches_spread_over_the_endpoints_and_scores_are_those_of_one_server(call: Caller, two) -> None:
    first, second = two
    reranker = VLLMReranker([first.url, second.url], model="tiny-reranker", max_batch_size=4, max_concurrency=4)
    out = call(reranker, QUERY, DOCUMENTS)
    expected = WordOverlapReranker().rerank(QUERY, DOCUMENTS)
    assert [(r.index, r.score) for r in out] == [(r.index, r.score) for r in expected]
    batches = (len(first.rerank_requests), len(second.rerank_requests))
    assert sum(batches) == 10
    assert min(batches) >= 3, f"one endpoint got almost nothing: {batches}"  # 4 in flight over 2: about even


def test_the_endpoint_with_fewest_requests_in_flight_is_chosen_and_a_failed_one_cools_down() -> None:
    now = [0.0]
    pool = EndpointPool(
        [Endpoint.parse(u, default_route="/v1/rerank", routes=("/v1/rerank",)) for u in ("http://a:1", "http://b:2")],
        cool_down=10,
        clock=lambda: now[0],
    )
    assert [pool.acquire(), pool.acquire(), pool.acquire()] == [0, 1, 0]
    pool.release(0)
    pool.release(0)
    assert pool.acquire() == 0  # 0 in flight on a, 1 on b
    assert pool.connection_failed(0) is True  # b is ready
    assert [pool.acquire(), pool.acquire()] == [1, 1]  # a is cooling down, however idle
    assert pool.connection_failed(1) is False  # nobody is ready now
    assert pool.acquire() == 0  # the one that recovers first
    now[0] = 10.0
    assert pool.acquire() == 0  # a is back, with fewer in flight
    assert pool.url_on(1, "http://a:1/v1/models") == "http://b:2/v1/models"
    assert pool.url_on(1, "http://a:1/v1/rerank") == "http://b:2/v1/rerank"


def test_a_dead_endpoint_is_skipped_and_its_batch_resent_within_the_deadline(
    call: Caller, two, dead_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    alive = two[0]
    reranker = VLLMReranker(
        [dead_url, alive.url], model="tiny-reranker", max_batch_size=4, max_concurrency=2, max_retries=0, deadline=10
    )
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="milvus_rerank.http"):
        out = call(reranker, QUERY, DOCUMENTS)
    assert time.monotonic() - started < 10
    assert sorted(r.index for r in out) == list(range(len(DOCUMENTS)))
    assert len(alive.rerank_requests) == 10  # every batch, the resent ones included
    resent = [r.getMessage() for r in caplog.records if "resent to another endpoint" in r.getMessage()]
    assert 1 <= len(resent) <= 2  # the batches in flight when it failed; then it is left out
    assert dead_url in resent[0]
    assert "ConnectError" in resent[0]


def test_every_endpoint_dead_is_a_connection_error_naming_one(call: Caller, dead_url: str) -> None:
    with RerankTestServer() as other:
        second = other.url
    reranker = VLLMReranker([dead_url, second], model="m", max_retries=1, backoff=0.01, deadline=5)
    started = time.monotonic()
    with pytest.raises(RerankConnectionError, match="check that the server is running") as caught:
        call(reranker, QUERY, DOCUMENTS[:3])
    assert time.monotonic() - started < 5
    assert caught.value.endpoint in (f"{dead_url}/v1/rerank", f"{second}/v1/rerank")


def test_the_served_model_is_discovered_on_an_endpoint_that_answers(call: Caller, dead_url: str) -> None:
    with RerankTestServer(model_name="served-here") as alive:
        reranker = VLLMReranker([dead_url, alive.url], max_retries=0)
        assert len(call(reranker, QUERY, DOCUMENTS[:3])) == 3
        assert reranker.model == "served-here"
        assert [r.body["model"] for r in alive.rerank_requests] == ["served-here"]


@pytest.mark.parametrize(
    ("endpoint", "error", "message"),
    [
        ([], ValueError, "non-empty list"),
        (["http://a:1", "http://a:1/v1/rerank"], ValueError, "more than once"),
        (["http://a:1", 3], TypeError, "endpoint must be a str URL, got int"),
        ({"http://a:1"}, TypeError, "a list of them, got set"),
        (["http://user:key@a:1"], ValueError, "carries credentials"),
    ],
)
def test_a_bad_list_of_endpoints_is_refused(endpoint: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        VLLMReranker(endpoint, model="m")  # type: ignore[arg-type]


def test_repr_lists_the_endpoints() -> None:
    reranker = VLLMReranker(["http://a:1", "http://b:2/v1"], model="m", api_key="secret")
    assert "endpoint=[http://a:1/v1/rerank, http://b:2/v1/rerank]" in repr(reranker)
    assert "secret" not in repr(reranker)


def test_a_milvus_model_ranker_cannot_take_several_endpoints() -> None:
    reranker = VLLMReranker(["http://a:1", "http://b:2"], model="m")
    with pytest.raises(ValueError, match="a Milvus model ranker calls one URL: put a router"):
        reranker.describe()
    assert VLLMReranker("http://a:1", model="m").describe().rerank_url == "http://a:1/v1/rerank"


def test_a_routers_503_is_retried_after_its_retry_after_and_one_past_the_deadline_fails_at_once(
    call: Caller, server: RerankTestServer
) -> None:
    # What a router answers while no server is healthy: 503, here with a Retry-After it may send.
    busy = Fault.respond(503, "No available workers", headers={"Retry-After": "0.4"})
    server.inject(busy, times=1)
    reranker = VLLMReranker(server.url, model="tiny-reranker", backoff=0.01, deadline=5)
    started = time.monotonic()
    assert len(call(reranker, QUERY, DOCUMENTS[:3])) == 3
    assert time.monotonic() - started >= 0.4  # the server's wait, not the 10 ms backoff

    server.inject(Fault.respond(503, "No available workers", headers={"Retry-After": "60"}), times=1)
    started = time.monotonic()
    with pytest.raises(RerankHTTPError, match="answered HTTP 503: No available workers") as caught:
        call(reranker, QUERY, DOCUMENTS[:3])
    assert time.monotonic() - started < 2  # a wait past the deadline is not waited: it fails now
    assert caught.value.endpoint == f"{server.url}/v1/rerank"
