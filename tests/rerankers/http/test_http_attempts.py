"""One request's attempts, without sockets: waits, giving up, and the errors they end in."""

from __future__ import annotations

import logging

import httpx
import pytest

from milvus_rerank import RerankConnectionError, RerankHTTPError, RerankTimeoutError
from milvus_rerank.rerankers.http.attempts import Attempts
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
