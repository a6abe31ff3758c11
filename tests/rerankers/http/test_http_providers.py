"""Voyage AI and Jina AI rerankers against their loopback emulators, and the environment-key rule of hosted APIs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import Caller

from milvus_rerank import (
    CohereReranker,
    JinaReranker,
    RerankHTTPError,
    RerankResponseError,
    VoyageReranker,
)
from milvus_rerank.rerankers.http.hosted import HostedReranker
from milvus_rerank.rerankers.http.voyage import token_bound, token_budget_batches
from milvus_rerank.testing.providers import JinaTestServer, VoyageTestServer, count_tokens, jina_error, voyage_error
from milvus_rerank.testing.server import Fault, RerankTestServer, WordOverlapReranker

QUERY = "milvus vector search"
DOCS = [f"text {i} about milvus search" if i % 4 == 0 else f"text {i} about {i % 5} birds" for i in range(30)]
KEY = "pa-test-key-7f3"
FAST = {"backoff": 0.001}
ENV_KEYS = ("VOYAGE_API_KEY", "JINA_API_KEY", "COHERE_API_KEY", "CO_API_KEY")


def expected(documents: list[str], top_n: int | None = None) -> list:
    return WordOverlapReranker().rerank(QUERY, documents, top_n=top_n)


@pytest.fixture(autouse=True)
def no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_KEYS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def voyage() -> Iterator[VoyageTestServer]:
    with VoyageTestServer(api_key=KEY) as server:
        yield server


@pytest.fixture
def jina() -> Iterator[JinaTestServer]:
    with JinaTestServer(api_key=KEY) as server:
        yield server


def make(kind: str, server: RerankTestServer, **options: Any) -> VoyageReranker | JinaReranker:
    options.setdefault("api_key", KEY)
    return VoyageReranker(server.url, **options) if kind == "voyage" else JinaReranker(server.url, **options)


@pytest.fixture(params=["voyage", "jina"])
def provider(request: pytest.FixtureRequest) -> Iterator[tuple[str, RerankTestServer]]:
    kind = str(request.param)
    with (VoyageTestServer if kind == "voyage" else JinaTestServer)(api_key=KEY) as server:
        yield kind, server


# -- the wire -------------------------------------------------------------------------------------


def test_voyage_ranks_and_sends_its_own_request(voyage: VoyageTestServer, call: Caller) -> None:
    reranker = VoyageReranker(voyage.url, model="rerank-2.5-lite", truncation=False, api_key=KEY)
    assert call(reranker, QUERY, DOCS) == expected(DOCS)
    assert call(reranker, QUERY, DOCS, top_n=4) == expected(DOCS, 4)
    first, second = voyage.rerank_requests
    assert first.path == "/v1/rerank"
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert first.body == {"query": QUERY, "documents": DOCS, "model": "rerank-2.5-lite", "truncation": False}
    assert second.body["top_k"] == 4
    assert "top_n" not in second.body


def test_jina_ranks_and_sends_its_own_request(jina: JinaTestServer, call: Caller) -> None:
    reranker = JinaReranker(jina.url + "/v1", model="jina-reranker-v3", api_key=KEY)
    assert call(reranker, QUERY, DOCS) == expected(DOCS)
    assert call(reranker, QUERY, DOCS, top_n=4) == expected(DOCS, 4)
    first, second = jina.rerank_requests
    assert first.path == "/v1/rerank"
    assert first.body == {"model": "jina-reranker-v3", "query": QUERY, "documents": DOCS, "return_documents": False}
    assert second.body["top_n"] == 4


def test_jina_answers_with_echoed_documents_are_read_too(call: Caller) -> None:
    with JinaTestServer() as server:
        reranker = JinaReranker(server.url, extra_body={"return_documents": True})
        assert call(reranker, QUERY, DOCS[:5], top_n=2) == expected(DOCS[:5], 2)
        (record,) = server.rerank_requests
    assert record.body["return_documents"] is True


def test_voyage_batches_under_its_document_cap(voyage: VoyageTestServer, call: Caller) -> None:
    documents = [f"doc {i} about {'milvus' if i % 7 == 0 else 'birds'}" for i in range(2500)]
    reranker = VoyageReranker(voyage.url, api_key=KEY, **FAST)
    assert call(reranker, QUERY, documents, top_n=10) == expected(documents, 10)
    sizes = sorted(record.n_documents for record in voyage.rerank_requests)
    assert sizes == [500, 1000, 1000]
    assert all(record.status == 200 and "top_k" not in record.body for record in voyage.rerank_requests)


def test_voyage_batches_under_its_token_cap(voyage: VoyageTestServer, call: Caller) -> None:
    # 300 documents of ~3,000 bytes: one request would hold ~900,000 bytes, over the 600,000-token cap.
    documents = [f"milvus {i} " + "lorem ipsum dolor " * 160 for i in range(300)]
    reranker = VoyageReranker(voyage.url, api_key=KEY, **FAST)
    assert call(reranker, QUERY, documents) == expected(documents)
    requests = voyage.rerank_requests
    assert len(requests) > 1
    for record in requests:
        body = record.body
        bound = token_bound(QUERY) * len(body["documents"]) + sum(token_bound(d) for d in body["documents"])
        assert bound <= 600_000
        assert record.status == 200
    assert sum(record.n_documents for record in requests) == 300


def test_the_voyage_emulator_refuses_what_voyage_refuses(voyage: VoyageTestServer) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    url = voyage.url + "/v1/rerank"
    over = httpx.post(url, json={"query": "q", "documents": ["d"] * 1001, "model": "rerank-2.5"}, headers=headers)
    assert (over.status_code, over.json()) == (
        400,
        {"detail": "The number of documents (1001) exceeds the limit of 1000."},
    )
    long_query = "word " * 8_001
    refused = httpx.post(
        url, json={"query": long_query, "documents": ["d"], "model": "rerank-2.5", "truncation": False}, headers=headers
    )
    assert refused.status_code == 400
    assert "8000 tokens" in refused.json()["detail"]
    tokens = httpx.post(url, json={"query": "q " * 700, "documents": ["d"] * 900, "model": "rerank-1"}, headers=headers)
    assert tokens.status_code == 400
    assert "limit of 300000" in tokens.json()["detail"]
    no_model = httpx.post(url, json={"query": "q", "documents": ["d"]}, headers=headers)
    assert no_model.status_code == 400
    assert count_tokens("a, b") == 3 <= len(b"a, b")


def test_voyage_refuses_a_batch_size_over_its_cap() -> None:
    with pytest.raises(ValueError, match=r"max_batch_size=1001 is over Voyage's 1000 documents per request"):
        VoyageReranker(max_batch_size=1001)
    with pytest.raises(TypeError, match="truncation"):
        VoyageReranker(truncation="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model"):
        VoyageReranker(model="")


def test_token_budget_batches_are_consecutive_and_capped() -> None:
    documents = ["x" * 99, "y" * 99, "z" * 499, "w" * 9]
    assert token_budget_batches("q", documents, batch_size=10, total_tokens=10_000) == [range(4)]
    # each costs 2 (query) + its bytes + 1: 102, 102, 502, 12
    assert token_budget_batches("q", documents, batch_size=10, total_tokens=300) == [range(2), range(2, 3), range(3, 4)]
    assert token_budget_batches("q", documents, batch_size=3, total_tokens=10_000) == [range(3), range(3, 4)]
    assert token_budget_batches("q", ["a" * 1000], batch_size=5, total_tokens=10) == [range(1)]  # alone, never dropped
    assert token_budget_batches("q", [], batch_size=5, total_tokens=10) == []


def test_jina_batches_above_a_per_request_limit(call: Caller) -> None:
    with JinaTestServer(max_documents=10) as server:
        reranker = JinaReranker(server.url, max_batch_size=10)
        assert call(reranker, QUERY, DOCS[:25], top_n=3) == expected(DOCS[:25], 3)
        assert sorted(record.n_documents for record in server.rerank_requests) == [5, 10, 10]
        server.clear()
        with pytest.raises(RerankHTTPError, match=r"HTTP 400: Too many documents: 25 > 10") as caught:
            call(JinaReranker(server.url, **FAST), QUERY, DOCS[:25])
        assert caught.value.status_code == 400
        assert len(server.rerank_requests) == 1  # a 400 is not retried


# -- errors ---------------------------------------------------------------------------------------


def test_a_wrong_key_is_a_401_that_never_shows_the_key(provider: tuple[str, RerankTestServer], call: Caller) -> None:
    kind, server = provider
    wrong = "sk-wrong-key-42"
    reranker = make(kind, server, api_key=wrong)
    with pytest.raises(RerankHTTPError, match="HTTP 401") as caught:
        call(reranker, QUERY, DOCS)
    message = str(caught.value)
    assert server.unauthorized_message in message  # type: ignore[attr-defined]
    assert "check api_key=" in message
    assert wrong not in message
    assert wrong not in repr(reranker)
    assert wrong not in repr(reranker.describe())
    assert len(server.rerank_requests) == 1  # never retried


def test_no_key_says_to_pass_one(provider: tuple[str, RerankTestServer], call: Caller) -> None:
    kind, server = provider
    reranker = make(kind, server, api_key=None)
    with pytest.raises(RerankHTTPError, match="the server wants an API key: pass api_key="):
        call(reranker, QUERY, DOCS)
    assert "authorization" not in server.rerank_requests[0].headers


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_rate_limits_and_server_errors_are_retried(
    provider: tuple[str, RerankTestServer], call: Caller, status: int
) -> None:
    kind, server = provider
    error = voyage_error if kind == "voyage" else jina_error
    server.inject(error(status, "Rate limit exceeded" if status == 429 else "Server error", {"Retry-After": "0"}))
    assert call(make(kind, server, **FAST), QUERY, DOCS, top_n=3) == expected(DOCS, 3)
    assert [record.status for record in server.rerank_requests] == [status, 200]


def test_a_lasting_server_error_names_the_provider_message(
    provider: tuple[str, RerankTestServer], call: Caller
) -> None:
    kind, server = provider
    error = voyage_error if kind == "voyage" else jina_error
    server.inject(error(503, "Service Unavailable: high traffic"), times=10)
    with pytest.raises(RerankHTTPError, match=r"HTTP 503 .*Service Unavailable: high traffic") as caught:
        call(make(kind, server, max_retries=2, **FAST), QUERY, DOCS)
    assert caught.value.status_code == 503
    assert len(server.rerank_requests) == 3


def test_jina_validation_errors_are_read(jina: JinaTestServer, call: Caller) -> None:
    reranker = JinaReranker(jina.url, api_key=KEY, extra_body={"top_n": 0})
    with pytest.raises(RerankHTTPError, match=r"HTTP 422: body.top_n: ensure this value is greater than 0"):
        call(reranker, QUERY, DOCS)
    answer = httpx.post(jina.url + "/v1/rerank", json={"query": "q"}, headers={"Authorization": f"Bearer {KEY}"})
    assert answer.status_code == 422
    assert answer.json() == {
        "detail": [{"loc": ["body", "documents"], "msg": "field required", "type": "value_error.missing"}]
    }


@pytest.mark.parametrize(
    ("fault", "match"),
    [
        (Fault.malformed_json(), "malformed rerank response"),
        (Fault.wrong_index(), "outside"),
        (Fault.duplicate_index(), "more than once"),
        (Fault.nan_score(), "not a finite number"),
        (Fault.missing_result(), "expected 30 results"),
    ],
    ids=["json", "index", "duplicate", "nan", "missing"],
)
def test_malformed_answers_are_refused(
    provider: tuple[str, RerankTestServer], call: Caller, fault: Fault, match: str
) -> None:
    kind, server = provider
    server.inject(fault)
    with pytest.raises(RerankResponseError, match=match):
        call(make(kind, server), QUERY, DOCS)


def test_an_echoed_key_is_blanked(provider: tuple[str, RerankTestServer], call: Caller) -> None:
    kind, server = provider
    server.inject(Fault.echo(400, names=("authorization",)))
    with pytest.raises(RerankHTTPError) as caught:
        call(make(kind, server), QUERY, DOCS)
    assert KEY not in str(caught.value)
    assert "***" in str(caught.value)


# -- keys from the environment ----------------------------------------------------------------------


def recording_clients(answer: dict[str, Any]) -> tuple[list[httpx.Request], dict[str, Any]]:
    """An ``httpx.Client`` and ``AsyncClient`` that answer ``answer`` and record each request (no network)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body = (200, answer) if "authorization" in request.headers else (401, {"detail": "Unauthorized"})
        # A stream the client reads as it reads a socket's (a Response made with json= is already read).
        return httpx.Response(status, stream=httpx.ByteStream(json.dumps(body).encode()))

    transport = httpx.MockTransport(handler)
    return seen, {"client": httpx.Client(transport=transport), "async_client": httpx.AsyncClient(transport=transport)}


HOSTED = [
    (
        VoyageReranker,
        "VOYAGE_API_KEY",
        "https://api.voyageai.com/v1/rerank",
        {"data": [{"index": 0, "relevance_score": 0.5}]},
    ),
    (
        JinaReranker,
        "JINA_API_KEY",
        "https://api.jina.ai/v1/rerank",
        {"results": [{"index": 0, "relevance_score": 0.5}]},
    ),
    (
        CohereReranker,
        "COHERE_API_KEY",
        "https://api.cohere.com/v2/rerank",
        {"results": [{"index": 0, "relevance_score": 0.5}]},
    ),
    (
        CohereReranker,
        "CO_API_KEY",
        "https://api.cohere.com/v2/rerank",
        {"results": [{"index": 0, "relevance_score": 0.5}]},
    ),
]


@pytest.mark.parametrize(("reranker_type", "variable", "url", "answer"), HOSTED, ids=[h[1] for h in HOSTED])
def test_the_providers_key_comes_from_the_environment_for_its_own_host(
    monkeypatch: pytest.MonkeyPatch,
    call: Caller,
    reranker_type: type[HostedReranker],
    variable: str,
    url: str,
    answer: dict[str, Any],
) -> None:
    monkeypatch.setenv(variable, f" env-key-{variable}\n")  # stripped, as a key read from a file
    seen, clients = recording_clients(answer)
    reranker = reranker_type(model="m1", **clients)  # type: ignore[call-arg]
    assert call(reranker, QUERY, ["one document"])[0].index == 0
    (request,) = seen
    assert str(request.url) == url
    assert request.headers["authorization"] == f"Bearer env-key-{variable}"
    assert reranker.describe().api_key.source == variable  # type: ignore[union-attr]
    assert f"env-key-{variable}" not in repr(reranker) + repr(reranker.describe())


def test_an_explicit_key_wins_and_cohere_prefers_cohere_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOYAGE_API_KEY", "from-env")
    described = VoyageReranker(api_key="given").describe().api_key
    assert described is not None
    assert (described.reveal(), described.source) == ("given", "api_key")
    monkeypatch.setenv("COHERE_API_KEY", "cohere-key")
    monkeypatch.setenv("CO_API_KEY", "co-key")
    described = CohereReranker("https://api.cohere.ai").describe().api_key
    assert described is not None
    assert (described.reveal(), described.source) == ("cohere-key", "COHERE_API_KEY")


def test_an_unset_variable_means_no_key_and_the_401_says_which_to_set(call: Caller) -> None:
    seen, clients = recording_clients({"data": []})
    reranker = VoyageReranker(**clients)  # type: ignore[arg-type]
    assert reranker.describe().api_key is None
    with pytest.raises(RerankHTTPError, match=r"Voyage AI wants an API key: pass api_key=, or set \$VOYAGE_API_KEY"):
        call(reranker, QUERY, ["d"])
    assert "authorization" not in seen[0].headers


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://api.voyageai.com",
        "https://api.voyageai.com:8443",
        "https://voyage.internal",
        "https://api.voyageai.com.evil",
    ],
)
def test_an_environment_key_never_goes_to_another_host(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    monkeypatch.setenv("VOYAGE_API_KEY", "env-voyage")
    assert VoyageReranker(endpoint).describe().api_key is None


def test_a_custom_endpoint_gets_no_environment_key(
    monkeypatch: pytest.MonkeyPatch, provider: tuple[str, RerankTestServer], call: Caller
) -> None:
    kind, server = provider
    for name in ENV_KEYS:
        monkeypatch.setenv(name, KEY)  # the emulator's own key, set in every variable
    with pytest.raises(RerankHTTPError, match="HTTP 401"):
        call(make(kind, server, api_key=None), QUERY, DOCS)
    (record,) = server.rerank_requests
    assert "authorization" not in record.headers
    assert json.dumps(record.body).find(KEY) == -1
