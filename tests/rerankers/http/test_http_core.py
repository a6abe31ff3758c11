"""The pure parts of the HTTP core: endpoints, retry decisions, error bodies, response validation, constructors."""

from __future__ import annotations

import email.utils
import json
import math
from pathlib import Path

import pytest

from milvus_rerank.rerankers.http import (
    CohereReranker,
    Endpoint,
    HTTPReranker,
    RetryPolicy,
    TEIReranker,
    VLLMReranker,
    parse_error_message,
    parse_retry_after,
    split_batches,
    validate_results,
)
from milvus_rerank.rerankers.http.wire import merge_batches, plan_batches
from milvus_rerank.types import RerankResult

ROUTES = ("/rerank", "/v1/rerank", "/v2/rerank")


@pytest.mark.parametrize(
    ("given", "base", "rerank_url"),
    [
        ("http://h:8000", "http://h:8000", "http://h:8000/v1/rerank"),
        ("http://h:8000/", "http://h:8000", "http://h:8000/v1/rerank"),
        ("http://h:8000/v1", "http://h:8000", "http://h:8000/v1/rerank"),
        ("http://h:8000/v2/", "http://h:8000", "http://h:8000/v2/rerank"),
        ("http://h:8000/v1/rerank", "http://h:8000", "http://h:8000/v1/rerank"),
        ("http://h:8000/rerank", "http://h:8000", "http://h:8000/rerank"),
        ("https://gw.example/vllm/v1", "https://gw.example/vllm", "https://gw.example/vllm/v1/rerank"),
        ("https://gw.example/vllm/v2/rerank", "https://gw.example/vllm", "https://gw.example/vllm/v2/rerank"),
    ],
)
def test_endpoint_forms_normalise_to_base_and_rerank_url(given: str, base: str, rerank_url: str) -> None:
    endpoint = Endpoint.parse(given, default_route="/v1/rerank", routes=ROUTES)
    assert (endpoint.base_url, endpoint.rerank_url) == (base, rerank_url)
    assert endpoint.url("/v1/models") == base + "/v1/models"


@pytest.mark.parametrize("bad", ["localhost:8000", "ftp://h/x", "http://", ""])
def test_endpoint_refuses_what_is_not_an_http_url(bad: str) -> None:
    with pytest.raises(ValueError, match="http"):
        Endpoint.parse(bad, default_route="/v1/rerank", routes=ROUTES)


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("http://user:s3cret@h:1/v1", "credentials"),
        ("http://s3cret@h:1", "credentials"),
        ("http://h:1/v1?key=s3cret", "a query string"),
        ("http://h:1/v1/rerank?token=s3cret&x=1", "a query string"),
    ],
)
def test_credentials_in_the_endpoint_url_are_refused_without_being_shown(url: str, what: str) -> None:
    # httpx logs every request's full URL at INFO: a credential in it would reach the logs.
    with pytest.raises(ValueError, match="api_key=") as caught:
        Endpoint.parse(url, default_route="/v1/rerank", routes=ROUTES)
    assert what in str(caught.value)
    assert "s3cret" not in str(caught.value)
    for reranker_type in PROTOCOLS:
        with pytest.raises(ValueError, match="headers=") as refused:
            reranker_type(url)
        assert "s3cret" not in str(refused.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 415, 422, 501])
def test_client_mistakes_are_never_retried(status: int) -> None:
    assert RetryPolicy().delay(retries_done=0, status=status, jitter=0.5) is None


@pytest.mark.parametrize("status", [None, 429, 502, 503, 504])
def test_transient_failures_back_off_exponentially_within_jitter_bounds(status: int | None) -> None:
    policy = RetryPolicy(max_retries=5, backoff=0.5, max_backoff=3.0)
    for done, step in enumerate([0.5, 1.0, 2.0, 3.0, 3.0]):
        low = policy.delay(retries_done=done, status=status, jitter=0.0)
        high = policy.delay(retries_done=done, status=status, jitter=0.999999)
        assert low == pytest.approx(step / 2)
        assert high == pytest.approx(step, rel=1e-5)
    assert policy.delay(retries_done=5, status=status, jitter=0.0) is None


def test_500_is_retried_once_at_most() -> None:
    policy = RetryPolicy(max_retries=5)
    assert policy.delay(retries_done=0, status=500, jitter=0.0) is not None
    assert policy.delay(retries_done=1, status=500, retried_500=True, jitter=0.0) is None


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    policy = RetryPolicy(backoff=0.1, max_retry_after=5.0)
    assert policy.delay(retries_done=0, status=429, retry_after=2.0, jitter=0.0) == 2.0
    assert policy.delay(retries_done=0, status=429, retry_after=100.0, jitter=0.0) == 5.0


def test_deadline_stops_retries_whose_wait_would_cross_it() -> None:
    policy = RetryPolicy(max_retries=10, deadline=3.0)
    assert policy.delay(retries_done=0, status=503, retry_after=1.0, elapsed=1.0) == 1.0
    assert policy.delay(retries_done=0, status=503, retry_after=1.0, elapsed=2.5) is None


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_retries": -1}, ValueError),
        ({"max_retries": 1.5}, TypeError),
        ({"max_retries": True}, TypeError),
        ({"backoff": -1}, ValueError),
        ({"backoff": math.nan}, ValueError),
        ({"deadline": 0}, ValueError),
        ({"deadline": -math.inf}, ValueError),
        ({"max_backoff": "1"}, TypeError),
    ],
)
def test_retry_policy_refuses_nonsense(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error, match=next(iter(kwargs))):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_retry_policy_takes_infinity_as_no_limit() -> None:
    policy = RetryPolicy(max_retries=2, deadline=math.inf, max_retry_after=math.inf)
    assert policy.delay(retries_done=0, status=503, retry_after=3600.0, elapsed=1e9) == 3600.0


def test_parse_retry_after_reads_seconds_and_http_dates() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(7.0)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # vLLM >= 0.10.1
        (
            {"error": {"message": "maximum context length is 512 tokens", "type": "BadRequestError", "code": 400}},
            "maximum context length is 512 tokens",
        ),
        # vLLM < 0.10.1
        (
            {"object": "error", "message": "The model `x` does not exist.", "type": "NotFoundError", "code": 404},
            "The model `x` does not exist.",
        ),
        ({"error": "Unauthorized"}, "Unauthorized"),  # vLLM --api-key
        ({"error": "batch size 40 > maximum allowed batch size 32", "error_type": "Validation"}, "batch size 40"),
        ({"detail": "Unauthorized"}, "Unauthorized"),  # Infinity
        (
            {"detail": [{"loc": ["body", "top_n"], "msg": "Input should be greater than 0"}]},
            "body.top_n: Input should be greater than 0",
        ),
    ],
)
def test_error_bodies_of_every_generation_give_the_server_message(body: object, expected: str) -> None:
    assert expected in parse_error_message(json.dumps(body))


def test_error_parser_falls_back_to_text_then_reason() -> None:
    assert parse_error_message("upstream connect error", reason="Bad Gateway") == "upstream connect error"
    assert parse_error_message("", reason="Unauthorized") == "Unauthorized"
    assert parse_error_message("[1, 2]") == "[1, 2]"
    long = parse_error_message("x" * 1000)
    assert len(long) < 300
    assert long.endswith("...")


def test_validate_results_accepts_a_permutation() -> None:
    items = [
        {"index": 2, "relevance_score": 0.9},
        {"index": 0, "relevance_score": 0.1},
        {"index": 1, "relevance_score": 1},
    ]
    assert validate_results(items, n_documents=3, expected=3, score_key="relevance_score") == [
        RerankResult(2, 0.9),
        RerankResult(0, 0.1),
        RerankResult(1, 1.0),
    ]


@pytest.mark.parametrize(
    ("items", "match"),
    [
        ({"index": 0}, "list"),
        ([{"index": 0, "s": 1.0}], "expected 2"),
        ([{"index": 0, "s": 1.0}, {"index": 0, "s": 0.5}], "more than once"),
        ([{"index": 0, "s": 1.0}, {"index": 2, "s": 0.5}], "outside"),
        ([{"index": 0, "s": 1.0}, {"index": -1, "s": 0.5}], "outside"),
        ([{"index": 0, "s": 1.0}, {"index": "1", "s": 0.5}], "not an int"),
        ([{"index": 0, "s": 1.0}, {"index": True, "s": 0.5}], "not an int"),
        ([{"index": 0, "s": 1.0}, {"index": 1, "s": math.nan}], "finite"),
        ([{"index": 0, "s": 1.0}, {"index": 1, "s": math.inf}], "finite"),
        ([{"index": 0, "s": 1.0}, {"index": 1}], "finite"),
        ([{"index": 0, "s": 1.0}, {"index": 1, "s": "0.3"}], "finite"),
        ([{"index": 0, "s": 1.0}, [1, 0.5]], "not an object"),
    ],
)
def test_validate_results_refuses_every_inconsistency(items: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        validate_results(items, n_documents=2, expected=2, score_key="s")


def test_split_batches_covers_every_index_once() -> None:
    batches = split_batches(10, 4)
    assert [list(batch) for batch in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert split_batches(4, 4) == [range(0, 4)]


def test_merged_batches_are_reoffset_in_batch_order_not_ranked() -> None:
    def payload(query: str, documents: object, top_n: int | None) -> dict[str, object]:
        return {"query": query, "documents": documents}

    requests = plan_batches(
        "http://h/rerank", "q", list("abcde"), top_n=2, batch_size=2, build_payload=payload, extra_body={}
    )
    assert [(r.offset, r.n_documents, r.expected) for r in requests] == [(0, 2, 2), (2, 2, 2), (4, 1, 1)]
    assert all(b"top_n" not in r.content for r in requests)  # several batches: the reranker cuts when it ranks
    per_batch = [
        [RerankResult(1, 0.2), RerankResult(0, 0.9)],
        [RerankResult(0, 0.5), RerankResult(1, 0.7)],
        [RerankResult(0, 0.1)],
    ]
    assert merge_batches(requests, per_batch) == [
        RerankResult(1, 0.2),
        RerankResult(0, 0.9),
        RerankResult(2, 0.5),
        RerankResult(3, 0.7),
        RerankResult(4, 0.1),
    ]


# -- constructors: the shared options declared once (HTTPOptions), each protocol its own -----------

PROTOCOLS = [VLLMReranker, TEIReranker, CohereReranker]


@pytest.mark.parametrize("reranker_type", PROTOCOLS)
def test_a_misspelt_option_fails_at_construction_naming_it_and_the_fix(reranker_type: type[HTTPReranker]) -> None:
    with pytest.raises(TypeError, match=f"{reranker_type.__name__}.*'timout'; did you mean 'timeout'"):
        reranker_type("http://127.0.0.1:1", timout=5)  # type: ignore[call-arg]


def test_an_option_of_another_protocol_is_refused() -> None:
    with pytest.raises(TypeError, match="'truncate_prompt_tokens'"):
        TEIReranker("http://127.0.0.1:1", truncate_prompt_tokens=8)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'truncate'"):
        CohereReranker("http://127.0.0.1:1", truncate=True)  # type: ignore[call-arg]


def test_a_type_checker_knows_every_shared_option(tmp_path: Path) -> None:
    # PEP 692: what mypy (and an IDE's completion) reads from **options: Unpack[HTTPOptions].
    api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        "from milvus_rerank import CohereReranker, RetryPolicy, TEIReranker, VLLMReranker\n"
        "VLLMReranker('http://h', model='m', deadline=5.0, retry=RetryPolicy(max_backoff=1.0))\n"
        "TEIReranker('http://h', timout=5)\n"
        "CohereReranker('http://h', max_concurrency='8')\n",
        encoding="utf-8",
    )
    out, _, status = api.run([str(snippet), "--no-error-summary", "--follow-imports=silent"])
    assert status == 1, out
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 2, out
    assert 'snippet.py:3: error: Unexpected keyword argument "timout"' in errors[0]
    assert "snippet.py:4: error:" in errors[1]
    assert '"max_concurrency"' in errors[1]


def test_common_options_reach_the_base() -> None:
    options = {
        "api_key": "k",
        "timeout": 2.5,
        "max_batch_size": 7,
        "max_concurrency": 3,
        "max_retries": 1,
        "backoff": 0.5,
        "deadline": 9.0,
        "headers": {"X-A": "1"},
        "extra_body": {"priority": 1},
    }
    for reranker_type in PROTOCOLS:
        reranker = reranker_type("http://127.0.0.1:1", **options)  # type: ignore[arg-type]
        assert (reranker.timeout, reranker._batch_size, reranker.max_concurrency) == (2.5, 7, 3)
        assert reranker.retry_policy == RetryPolicy(max_retries=1, backoff=0.5, deadline=9.0)
        assert reranker._headers["X-A"] == "1"
        assert reranker._headers["Authorization"] == "Bearer k"
        assert reranker._extra_body == {"priority": 1}


def test_a_whole_retry_policy_is_taken_and_the_shortcuts_override_its_fields() -> None:
    policy = RetryPolicy(max_retries=5, backoff=1.0, max_backoff=2.0, max_retry_after=0.5, deadline=20.0)
    assert VLLMReranker("http://127.0.0.1:1", retry=policy).retry_policy == policy
    overridden = TEIReranker("http://127.0.0.1:1", retry=policy, max_retries=0, deadline=3.0).retry_policy
    assert overridden == RetryPolicy(max_retries=0, backoff=1.0, max_backoff=2.0, max_retry_after=0.5, deadline=3.0)
    assert CohereReranker("http://127.0.0.1:1").retry_policy == RetryPolicy()
    with pytest.raises(TypeError, match="retry must be a RetryPolicy, got dict"):
        VLLMReranker("http://127.0.0.1:1", retry={"max_retries": 1})  # type: ignore[typeddict-item]
    with pytest.raises(ValueError, match="max_retries"):
        VLLMReranker("http://127.0.0.1:1", max_retries=-1)
