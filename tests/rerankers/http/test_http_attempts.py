"""One request's attempts, without sockets: waits, giving up, and the errors they end in."""

from __future__ import annotations

import logging

import httpx
import pytest

from milvus_rerank import RerankConnectionError, RerankHTTPError, RerankTimeoutError
from milvus_rerank.rerankers.http.attempts import Attempts
from milvus_rerank.rerankers.http.credentials import Redactor
from milvus_rerank.rerankers.http.retry import RetryPolicy

URL = "http://user:s3cret@h:1/v1/rerank?key=s3cret"


def attempts(**policy: float) -> Attempts:
    return Attempts(URL, policy=RetryPolicy(**policy), timeout=5.0)  # type: ignore[arg-type]


def test_retry_after_is_the_wait_and_each_retry_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="milvus_rerank.http")
    tries = attempts(max_retries=2)
    assert tries.failed(response=httpx.Response(429, headers={"Retry-After": "2"})) == 2.0
    assert "retry 1/2 in 2.00 s" in caplog.text
    assert "s3cret" not in caplog.text


def test_giving_up_raises_the_status_error_with_the_attempts_made() -> None:
    tries = attempts(max_retries=1, backoff=0.0)
    tries.failed(response=httpx.Response(503, json={"error": {"message": "busy"}}))
    with pytest.raises(RerankHTTPError) as caught:
        tries.failed(response=httpx.Response(503, json={"error": {"message": "busy"}}))
    assert caught.value.status_code == 503
    assert caught.value.server_message == "busy"
    assert str(caught.value) == "http://h:1/v1/rerank answered HTTP 503 after 2 attempts: busy"


def test_transport_failures_end_in_timeout_or_connection_errors() -> None:
    request = httpx.Request("POST", URL)
    with pytest.raises(RerankTimeoutError, match="timed out"):
        attempts(max_retries=0).failed(exc=httpx.ReadTimeout("slow", request=request))
    with pytest.raises(RerankConnectionError, match="could not reach http://h:1/v1/rerank") as caught:
        attempts(max_retries=0).failed(exc=httpx.ConnectError("refused", request=request))
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    with pytest.raises(RerankConnectionError, match="TooManyRedirects"):  # not a transport error: never retried
        attempts(max_retries=5).failed(exc=httpx.TooManyRedirects("loop", request=request))


def test_the_attempt_timeout_is_clipped_to_the_deadline_and_ends_with_it() -> None:
    assert attempts(deadline=60.0).timeout().read == 5.0
    assert attempts(deadline=0.5).timeout().read == pytest.approx(0.5, abs=0.05)
    tries = attempts(deadline=1e-9)
    with pytest.raises(RerankTimeoutError, match="deadline"):
        tries.timeout()


def test_a_header_httpx_cannot_send_is_neither_retried_nor_quoted() -> None:
    # httpx quotes the offending header value, which may be a key (issue 11, item 1).
    request = httpx.Request("POST", URL)
    refusal = httpx.LocalProtocolError("Illegal header value b'Bearer sk-9\\n'", request=request)
    with pytest.raises(RerankConnectionError, match="could not be sent") as caught:
        attempts(max_retries=5).failed(exc=refusal)
    assert "sk-9" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_a_read_timeout_is_resent_only_if_the_deadline_covers_a_full_timeout() -> None:
    request = httpx.Request("POST", URL)
    slow = httpx.ReadTimeout("slow", request=request)
    now = [100.0]
    tries = Attempts(
        URL,
        policy=RetryPolicy(max_retries=3, backoff=0.0, deadline=12.0),
        timeout=5.0,
        n_documents=9,
        clock=lambda: now[0],
    )
    tries.timeout()
    now[0] += 5.0  # the first attempt timed out: 7 s are left, enough for one more full timeout
    assert tries.failed(exc=slow) == 0.0
    tries.timeout()
    now[0] += 5.0  # 2 s are left: a resend would get 2 s for what took more than 5
    with pytest.raises(RerankTimeoutError, match="a batch of 9 documents within 5 s; not resent") as caught:
        tries.failed(exc=slow)
    assert "max_batch_size=" in str(caught.value)


def test_a_redirect_says_where_to_without_its_query_or_any_secret() -> None:
    redact = Redactor.of(api_key="sk-7", headers={})
    tries = Attempts(URL, policy=RetryPolicy(), timeout=5.0, redact=redact)
    moved = httpx.Response(307, headers={"Location": "https://other.example/v1/rerank?sig=sk-7"})
    with pytest.raises(RerankHTTPError, match=r"HTTP 307: a redirect to https://other\.example/v1/rerank,") as caught:
        tries.failed(response=moved)
    assert "sk-7" not in str(caught.value)
    assert "endpoint=" in str(caught.value)


def test_an_error_body_is_blanked_before_it_is_cut() -> None:
    key = "sk-" + "z" * 40
    redact = Redactor.of(api_key=key, headers={})
    body = ("x" * 190 + key).encode()  # the excerpt's cut (200 characters) falls inside the key
    with pytest.raises(RerankHTTPError) as caught:
        Attempts(URL, policy=RetryPolicy(), timeout=5.0, redact=redact).failed(response=httpx.Response(400), body=body)
    assert "zzzzzz" not in caught.value.server_message
    assert caught.value.server_message.endswith("***")
