"""The loopback rerank test server itself: routes, auth, validation, fault targeting, concurrency."""

from __future__ import annotations

import time

import httpx
import pytest

from milvus_rerank import VLLMReranker
from milvus_rerank.testing.server import Fault, RerankTestServer


def test_routes_answer_like_the_real_servers() -> None:
    with RerankTestServer(model_name="m-1", max_model_len=256, max_client_batch_size=7) as server:
        assert httpx.get(server.url + "/health").status_code == 200
        models = httpx.get(server.url + "/v1/models").json()
        assert models["data"][0]["id"] == "m-1"
        assert models["data"][0]["max_model_len"] == 256
        assert httpx.get(server.url + "/info").json()["max_client_batch_size"] == 7
        body = {"query": "q", "documents": ["a b", "q a"], "top_n": 1}
        answer = httpx.post(server.url + "/v2/rerank", json=body).json()
        assert [item["index"] for item in answer["results"]] == [1]
        assert answer["results"][0]["document"] == {"text": "q a"}
        assert httpx.post(server.url + "/v1/score", json=body).status_code == 404
        assert httpx.post(server.url + "/rerank", json={**body, "documents": []}).status_code == 400
        assert httpx.post(server.url + "/rerank", content=b"{oops").status_code == 400
        assert [r.path for r in server.requests][-1] == "/rerank"


def test_tei_flavour_speaks_tei_on_rerank_only() -> None:
    with RerankTestServer(flavor="tei", max_client_batch_size=2) as server:
        tei = httpx.post(server.url + "/rerank", json={"query": "q", "texts": ["q", "x"], "return_text": True}).json()
        assert tei[0] == {"index": 0, "score": tei[0]["score"], "text": "q"}
        too_many = httpx.post(server.url + "/rerank", json={"query": "q", "texts": ["a", "b", "c"]})
        assert too_many.status_code == 422
        assert too_many.json()["error_type"] == "Validation"
        vllm = httpx.post(server.url + "/v1/rerank", json={"query": "q", "documents": ["a", "b", "c"]})
        assert len(vllm.json()["results"]) == 3


def test_api_key_guards_everything_but_health() -> None:
    with RerankTestServer(api_key="k") as server:
        assert httpx.get(server.url + "/health").status_code == 200
        denied = httpx.get(server.url + "/v1/models")
        assert (denied.status_code, denied.json()) == (401, {"error": "Unauthorized"})
        allowed = httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer k"})
        assert allowed.status_code == 200


def test_faults_apply_in_order_to_matching_paths_only() -> None:
    with RerankTestServer() as server:
        server.inject(Fault.server_error(503), path="/v2/rerank")
        server.inject(Fault.unauthorized(), times=2)
        body = {"query": "q", "documents": ["a"]}
        statuses = [httpx.post(server.url + path, json=body).status_code for path in ("/v1/rerank",) * 3]
        assert statuses == [401, 401, 200]
        assert server.pending_faults == 1
        assert httpx.post(server.url + "/v2/rerank", json=body).status_code == 503
        assert server.pending_faults == 0
        server.clear()
        assert server.requests == []
        assert server.rerank_arrivals == 0


def test_many_concurrent_requests_are_served_at_once() -> None:
    documents = [f"document {i}" for i in range(32)]
    # Each request takes 2 s: long enough for all 32 to arrive while the first is served, under load too.
    with RerankTestServer(service_time=2.0) as server:
        with VLLMReranker(server.url, model=server.model_name, max_batch_size=1, max_concurrency=32) as reranker:
            assert sorted(r.index for r in reranker.rerank("document", documents)) == list(range(32))
        assert len(server.rerank_requests) == 32
        assert server.max_in_flight() == 32


def test_discovery_routes_take_the_discovery_time() -> None:
    # The other routes answer at once: far under the discovery time, even on a loaded machine.
    with RerankTestServer(discovery_time=1.5) as server:
        for path in ("/v1/models", "/info"):
            started = time.monotonic()
            assert httpx.get(server.url + path).status_code == 200
            assert time.monotonic() - started >= 1.5
        started = time.monotonic()
        httpx.get(server.url + "/health")
        httpx.post(server.url + "/rerank", json={"query": "q", "documents": ["a"]})
        assert time.monotonic() - started < 1.5


def test_port_needs_a_started_server() -> None:
    server = RerankTestServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url
    with server:
        assert server.url.startswith("http://127.0.0.1:")
    server.stop()  # stopping twice is harmless
