"""Secrets never leak (issue 11, items 1-4 and 16): keys checked at construction, blanked out of
everything a server says, never in the endpoint URL, never sent to another origin; 401s explain."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from helpers import Caller

from milvus_rerank import (
    CohereReranker,
    RerankError,
    RerankHTTPError,
    RerankResponseError,
    TEIReranker,
    VLLMReranker,
)
from milvus_rerank.rerankers.http import HTTPReranker
from milvus_rerank.testing.server import Fault, RerankTestServer

QUERY = "milvus vector search"
DOCS = ["milvus is a vector database", "birds fly", "search engines rank pages"]
KEY = "sk-live-0123456789abcdef"
HEADER_KEY = "hk-9f8e7d6c5b4a"  # in X-Api-Key: secret by its name
MARKED = "mk-marked-5544"  # in X-Tenant: secret because the caller says so
PROTOCOLS = [VLLMReranker, TEIReranker, CohereReranker]
FAST = {"backoff": 0.001, "timeout": 5.0}


def secrets_in(text: str) -> list[str]:
    return [secret for secret in (KEY, HEADER_KEY, MARKED) if secret in text]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log at DEBUG, httpx's and httpcore's too (the command line quiets httpx in-process)."""
    for name in (None, "httpx", "httpcore", "milvus_rerank"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


# -- 1: keys and header values that cannot be sent are refused at construction, unseen ---------


@pytest.mark.parametrize(
    ("key", "what"),
    [
        (KEY + "\n", "line break"),
        (KEY + "\r\n", "line break"),
        (" " + KEY, "whitespace"),
        (KEY[:5] + "\u2013" + KEY[5:], "non-ASCII"),  # an en dash pasted from a document
        (KEY[:5] + "\u00e9" + KEY[5:], "non-ASCII"),
        (KEY[:5] + " " + KEY[5:], "space"),
        (KEY[:5] + "\x00" + KEY[5:], "control character"),
        ("", "empty"),
    ],
)
@pytest.mark.parametrize("reranker_type", PROTOCOLS)
def test_a_key_that_cannot_be_sent_is_refused_at_construction_without_showing_it(
    reranker_type: type[HTTPReranker], key: str, what: str
) -> None:
    with RerankTestServer() as server:
        with pytest.raises(ValueError, match="api_key") as caught:
            reranker_type(server.url, api_key=key)
        assert server.requests == []
    assert what in str(caught.value)
    assert KEY[5:] not in str(caught.value)
    assert KEY[:5] + "\u2013" not in str(caught.value)


@pytest.mark.parametrize(
    ("headers", "error", "match"),
    [
        ({"X-Api-Key": HEADER_KEY + "\n"}, ValueError, "'X-Api-Key' ends with a line break"),
        ({"X-Api-Key": HEADER_KEY + "\u00e9"}, ValueError, "'X-Api-Key' holds a non-ASCII"),
        ({"X-Api-Key": f"{HEADER_KEY}\r\nX-Evil: 1"}, ValueError, "'X-Api-Key' holds a line break"),
        ({"X Api Key": "v"}, ValueError, "not a valid HTTP header name"),
        ({"X-Api-Key": 5}, TypeError, "str to str"),
        ({"authorization": "Bearer other"}, ValueError, "pass it once"),
        ([("X-Api-Key", "v")], TypeError, "mapping"),
    ],
)
def test_headers_that_cannot_be_sent_are_refused_naming_the_header_only(
    headers: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as caught:
        VLLMReranker("http://127.0.0.1:1", api_key=KEY, headers=headers)
    assert secrets_in(str(caught.value)) == []


def test_secret_headers_must_be_a_collection_of_names() -> None:
    with pytest.raises(TypeError, match="secret_headers"):
        VLLMReranker("http://127.0.0.1:1", secret_headers="X-Tenant")  # type: ignore[arg-type]


# -- 2: whatever a server echoes, no secret reaches a message, an attribute or a log ------------


def leaky(reranker_type: type[HTTPReranker], url: str, **options: Any) -> HTTPReranker:
    """A reranker holding the three kinds of secret, and a harmless header that may be quoted."""
    return reranker_type(
        url,
        api_key=KEY,
        headers={"X-Api-Key": HEADER_KEY, "X-Tenant": MARKED, "X-Trace": "trace-77"},
        secret_headers=["x-tenant"],
        **FAST,
        **options,
    )


def assert_nothing_leaks(error: BaseException, logs: pytest.LogCaptureFixture, reranker: HTTPReranker) -> None:
    texts = [str(error), repr(error), repr(reranker), logs.text]
    texts += [str(getattr(error, attribute, "")) for attribute in ("server_message", "endpoint")]
    cause: BaseException | None = error
    while cause is not None:  # the chain a traceback prints
        texts.append(str(cause))
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    for text in texts:
        assert secrets_in(text) == [], text


QUOTED = ("authorization", "x-api-key", "x-tenant", "x-trace")
ECHOES: list[tuple[Fault, type[RerankError], int]] = [
    (Fault.echo(401, names=QUOTED), RerankHTTPError, 1),
    (Fault.echo(500, names=QUOTED), RerankHTTPError, 2),  # retried once, then quoted
    (Fault.echo(503, names=QUOTED, in_reason=True), RerankHTTPError, 2),  # in the status line, no body
    (Fault.echo(200, names=QUOTED), RerankResponseError, 1),  # a malformed 200 is quoted too
    (Fault.echo(422), RerankHTTPError, 1),  # every header, the secrets past the excerpt's cut
]


@pytest.mark.parametrize(("fault", "error", "requests"), ECHOES, ids=["401", "500", "reason", "200", "422"])
@pytest.mark.parametrize("reranker_type", PROTOCOLS)
def test_a_server_that_echoes_the_headers_never_shows_a_secret(
    call: Caller,
    logs: pytest.LogCaptureFixture,
    reranker_type: type[HTTPReranker],
    fault: Fault,
    error: type[RerankError],
    requests: int,
) -> None:
    flavor = "tei" if reranker_type is TEIReranker else "vllm"
    with RerankTestServer(flavor=flavor) as server:  # type: ignore[arg-type]
        server.inject(fault, times=5)
        reranker = leaky(reranker_type, server.url, model=server.model_name, max_batch_size=8, max_retries=1)
        with pytest.raises(error) as caught:
            call(reranker, QUERY, DOCS)
        assert len(server.rerank_requests) == requests
        sent = server.rerank_requests[0].headers
    assert (sent["authorization"], sent["x-api-key"], sent["x-tenant"]) == (f"Bearer {KEY}", HEADER_KEY, MARKED)
    if fault.headers:
        assert "Bearer ***" in str(caught.value)
        assert "x-trace=trace-77" in str(caught.value)  # the echo is quoted: only the secrets are blanked
    assert_nothing_leaks(caught.value, logs, reranker)


def test_a_result_whose_fields_echo_the_key_is_quoted_blanked(call: Caller, logs: pytest.LogCaptureFixture) -> None:
    answer = {"results": [{"index": KEY, "relevance_score": 1.0}, {"index": 1, "relevance_score": HEADER_KEY}]}
    with RerankTestServer() as server:
        server.inject(Fault.respond(200, answer))
        reranker = leaky(VLLMReranker, server.url, model=server.model_name)
        with pytest.raises(RerankResponseError, match="not an int") as caught:
            call(reranker, QUERY, DOCS[:2])
    assert_nothing_leaks(caught.value, logs, reranker)


@pytest.mark.parametrize(
    "fault",
    [Fault.echo(500, names=QUOTED), Fault.echo(403), Fault.respond(200, f"<html>proxy saw Bearer {KEY}</html>")],
    ids=["500", "403", "not-json"],
)
@pytest.mark.parametrize(("reranker_type", "route"), [(VLLMReranker, "/v1/models"), (TEIReranker, "/info")])
def test_discovery_answers_are_blanked_too(
    call: Caller,
    logs: pytest.LogCaptureFixture,
    reranker_type: type[HTTPReranker],
    route: str,
    fault: Fault,
) -> None:
    flavor = "tei" if reranker_type is TEIReranker else "vllm"
    with RerankTestServer(flavor=flavor) as server:  # type: ignore[arg-type]
        server.inject(fault, times=5, path=route)
        reranker = leaky(reranker_type, server.url, max_retries=1)  # no model, no batch size: it asks first
        if reranker_type is TEIReranker and fault.status == 403:
            call(reranker, QUERY, DOCS)  # TEI falls back to its default batch size; the rerank works
            assert server.requests[0].path == route
            return
        with pytest.raises(RerankError) as caught:
            call(reranker, QUERY, DOCS)
        assert server.requests[0].path == route
    assert route in str(caught.value)
    assert_nothing_leaks(caught.value, logs, reranker)


def test_served_model_names_are_blanked_in_messages_logs_and_repr(call: Caller, logs: pytest.LogCaptureFixture) -> None:
    listing = {"object": "list", "data": [{"id": f"model-for-{KEY}"}, {"id": "tiny-reranker"}]}
    with RerankTestServer() as server:
        server.inject(Fault.respond(200, listing), times=3, path="/v1/models")
        discovered = leaky(VLLMReranker, server.url)
        with pytest.raises(RerankHTTPError) as refused:  # it adopts the first served name, which the server refuses
            call(discovered, QUERY, DOCS)
    assert discovered.model == f"model-for-{KEY}"
    assert_nothing_leaks(refused.value, logs, discovered)
    with RerankTestServer() as server:
        server.inject(Fault.respond(200, listing), times=3, path="/v1/models")
        reranker = leaky(VLLMReranker, server.url, model="no-such-model")
        with pytest.raises(RerankHTTPError, match="the server serves") as caught:
            call(reranker, QUERY, DOCS)
    assert_nothing_leaks(caught.value, logs, reranker)


# -- 3: no credential in the endpoint URL, so none in httpx's request log ------------------------


@pytest.mark.parametrize("reranker_type", PROTOCOLS)
def test_credentials_in_the_url_are_refused_before_httpx_could_log_them(
    reranker_type: type[HTTPReranker], logs: pytest.LogCaptureFixture
) -> None:
    flavor = "tei" if reranker_type is TEIReranker else "vllm"
    with RerankTestServer(flavor=flavor) as server:  # type: ignore[arg-type]
        host = server.url.removeprefix("http://")
        for url in (f"http://user:{KEY}@{host}", f"{server.url}/v1/rerank?token={KEY}"):
            with pytest.raises(ValueError, match=r"api_key=.*headers=") as caught:
                reranker_type(url)
            assert secrets_in(str(caught.value)) == []
        assert server.requests == []
        with reranker_type(server.url, api_key=KEY, model=server.model_name, max_batch_size=8) as reranker:
            reranker.rerank(QUERY, DOCS)
    assert "HTTP Request: POST" in logs.text  # httpx's own line, which prints the URL
    assert secrets_in(logs.text) == []


# -- 4: caller credentials never go to another origin ---------------------------------------------


@pytest.fixture
def two_origins() -> Iterator[tuple[RerankTestServer, RerankTestServer]]:
    with RerankTestServer() as endpoint, RerankTestServer() as elsewhere:
        yield endpoint, elsewhere


def rerank_following_redirects(server: RerankTestServer, mode: str) -> list[Any]:
    """Rerank through the caller's own client, which follows redirects."""
    if mode == "sync":
        with httpx.Client(follow_redirects=True) as client:
            return leaky(VLLMReranker, server.url, model=server.model_name, client=client).rerank(QUERY, DOCS)

    async def arun() -> list[Any]:
        async with httpx.AsyncClient(follow_redirects=True) as client:
            reranker = leaky(VLLMReranker, server.url, model=server.model_name, async_client=client)
            return await reranker.arerank(QUERY, DOCS)

    return asyncio.run(arun())


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_redirect_to_another_origin_is_not_followed_even_by_a_client_that_follows_redirects(
    two_origins: tuple[RerankTestServer, RerankTestServer], status: int, mode: str
) -> None:
    endpoint, elsewhere = two_origins
    endpoint.inject(Fault.respond(status, b"", {"Location": elsewhere.url + "/v1/rerank?sig=abc"}), times=5)
    with pytest.raises(RerankHTTPError) as caught:
        rerank_following_redirects(endpoint, mode)
    assert elsewhere.requests == []  # neither the key nor the custom headers went there
    assert caught.value.status_code == status
    assert elsewhere.url + "/v1/rerank" in str(caught.value)
    assert "sig=abc" not in str(caught.value)
    assert "endpoint=" in str(caught.value)
    assert len(endpoint.rerank_requests) == 1  # a redirect is not retried


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_redirect_within_the_origin_is_followed_by_a_client_that_follows_redirects(
    server: RerankTestServer, mode: str
) -> None:
    server.inject(Fault.respond(307, b"", {"Location": "/v2/rerank"}), path="/v1/rerank")
    results = rerank_following_redirects(server, mode)
    assert len(results) == 3
    assert [(record.path, record.status) for record in server.rerank_requests] == [
        ("/v1/rerank", 307),
        ("/v2/rerank", 200),
    ]
    assert server.rerank_requests[1].headers["x-api-key"] == HEADER_KEY


def test_our_own_client_follows_no_redirect(server: RerankTestServer, call: Caller) -> None:
    server.inject(Fault.respond(307, b"", {"Location": "/v2/rerank"}), path="/v1/rerank")
    with pytest.raises(RerankHTTPError, match=r"HTTP 307: a redirect to http://127\.0\.0\.1"):
        call(VLLMReranker(server.url, model=server.model_name), QUERY, DOCS)
    assert len(server.rerank_requests) == 1


# -- 16: a refused key is explained, naming the rerank endpoint ------------------------------------


Make = Callable[..., HTTPReranker]


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda url: VLLMReranker(url), "wants an API key: pass api_key="),
        (lambda url: VLLMReranker(url, api_key="sk-wrong-1"), "refused this API key: check api_key="),
    ],
    ids=["no-key", "wrong-key"],
)
def test_a_401_during_discovery_names_the_rerank_endpoint_and_the_fix(call: Caller, make: Make, says: str) -> None:
    with RerankTestServer(api_key=KEY) as server:
        url = server.url
        reranker = make(url)
        with pytest.raises(RerankHTTPError) as caught:
            call(reranker, QUERY, DOCS)
        assert [(record.path, record.status) for record in server.requests] == [("/v1/models", 401)]
    message = str(caught.value)
    assert message.startswith(f"cannot use {url}/v1/rerank: asking /v1/models for the served model failed")
    assert f"{url}/v1/models answered HTTP 401" in message
    assert says in message
    assert caught.value.status_code == 401
    assert caught.value.endpoint == url + "/v1/rerank"
    assert "sk-wrong-1" not in message


@pytest.mark.parametrize("reranker_type", PROTOCOLS)
def test_a_401_on_the_rerank_route_says_what_to_pass(call: Caller, reranker_type: type[HTTPReranker]) -> None:
    flavor = "tei" if reranker_type is TEIReranker else "vllm"
    with RerankTestServer(api_key=KEY, flavor=flavor) as server:  # type: ignore[arg-type]
        reranker = reranker_type(server.url, model=server.model_name, max_batch_size=8)
        with pytest.raises(RerankHTTPError, match="HTTP 401: Unauthorized; the server wants an API key: pass api_key="):
            call(reranker, QUERY, DOCS)


def test_the_unknown_model_message_reads_as_one_sentence(server: RerankTestServer, call: Caller) -> None:
    with pytest.raises(RerankHTTPError) as caught:
        call(VLLMReranker(server.url, model="no-such-model", **FAST), QUERY, DOCS)
    message = str(caught.value)
    assert "The model `no-such-model` does not exist; the server serves ['tiny-reranker']: pass model=" in message
    assert ".." not in message
