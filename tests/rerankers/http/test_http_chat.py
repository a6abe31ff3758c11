"""ChatListwiseReranker against a loopback chat server that answers scripted permutations (issue 22)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator, Sequence

import pytest
from helpers import Caller

from milvus_rerank import ChatListwiseReranker, ListwiseStats
from milvus_rerank.errors import RerankHTTPError, RerankResponseError, RerankTimeoutError
from milvus_rerank.rerankers.contract import BLANK_SCORE, rank
from milvus_rerank.rerankers.listwise import parse_permutation, passage_budget, sliding_windows, window_calls
from milvus_rerank.testing.chat_server import ChatTestServer, Fault, chat_completion
from milvus_rerank.types import RerankResult

KEY = "sk-listwise-fqzxbw"  # no digits: an answer quoting it holds no identifier


class HiddenRelevance:
    """Ranks passages named ``doc-<i>`` by a hidden relevance per document: a perfect listwise judge."""

    def __init__(self, relevance: Sequence[float]) -> None:
        self.relevance = list(relevance)

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        return rank([RerankResult(i, self.relevance[doc_id(text)]) for i, text in enumerate(documents)], top_n)

    async def arerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        return self.rerank(query, documents, top_n=top_n)


def doc_id(text: str) -> int:
    found = re.search(r"doc-(\d+)", text)
    assert found, text
    return int(found.group(1))


def docs(n: int) -> list[str]:
    return [f"doc-{i} about topic {i % 3}" for i in range(n)]


def reference_rankgpt(relevance: Sequence[float], window: int, step: int) -> list[int]:
    """RankGPT's loop as rank_llm writes it (start/end moved together, the start clipped at 0), with a perfect judge."""
    n = len(relevance)
    order = list(range(n))
    end, start = n, n - window
    while True:
        clipped = max(start, 0)
        order[clipped:end] = sorted(order[clipped:end], key=lambda i: (-relevance[i], order.index(i)))
        if clipped == 0:
            return order
        end, start = end - step, start - step


@pytest.fixture
def chat() -> Iterator[ChatTestServer]:
    with ChatTestServer() as running:
        yield running


# -- the algorithm: windows, calls, exact final orders -----------------------------------------


def test_windows_slide_from_the_bottom_to_the_top_and_the_last_is_clipped() -> None:
    assert sliding_windows(100, 20, 10) == [range(s, s + 20) for s in range(80, -1, -10)]
    assert sliding_windows(25, 20, 10) == [range(5, 25), range(0, 15)]
    assert sliding_windows(7, 3, 2) == [range(4, 7), range(2, 5), range(0, 3)]
    assert sliding_windows(3, 20, 10) == [range(0, 3)]
    assert sliding_windows(0, 20, 10) == []


@pytest.mark.parametrize("n", range(0, 41))
@pytest.mark.parametrize(("window", "step"), [(2, 1), (3, 2), (4, 2), (5, 5), (20, 10), (7, 3)])
def test_the_number_of_windows_is_the_documented_bound(n: int, window: int, step: int) -> None:
    expected = 0 if n == 0 else 1 if n <= window else -(-(n - window) // step) + 1
    assert len(sliding_windows(n, window, step)) == window_calls(n, window, step) == expected


def test_a_hand_worked_order() -> None:
    # n=5, window=3, step=2, relevance rising down the first-stage list (doc-4 best). Window [2, 5)
    # holds doc-2, doc-3, doc-4 -> doc-4, doc-3, doc-2; window [0, 3) holds doc-0, doc-1, doc-4 ->
    # doc-4, doc-1, doc-0. Final: doc-4, doc-1, doc-0, doc-3, doc-2.
    with ChatTestServer(HiddenRelevance([0, 1, 2, 3, 4])) as server:
        reranker = ChatListwiseReranker(server.url, window=3, step=2)
        results = reranker.rerank("q", docs(5))
    assert [r.index for r in results] == [4, 1, 0, 3, 2]
    assert [r.score for r in results] == [5.0, 4.0, 3.0, 2.0, 1.0]
    assert len(server.rerank_requests) == 2


GRID = [
    (n, window, step) for n in (1, 2, 5, 9, 20, 21, 37) for window, step in ((2, 1), (3, 2), (4, 2), (5, 5), (8, 3))
]


@pytest.mark.parametrize(("n", "window", "step"), GRID)
def test_exact_final_orders_over_a_grid(n: int, window: int, step: int) -> None:
    relevance = [(i * 7919) % 101 for i in range(n)]  # a fixed shuffle, no ties
    expected = reference_rankgpt(relevance, window, step)
    with ChatTestServer(HiddenRelevance(relevance)) as server:
        reranker = ChatListwiseReranker(server.url, window=window, step=step)
        results = reranker.rerank("q", docs(n))
    assert [r.index for r in results] == expected
    assert sorted(r.index for r in results) == list(range(n))
    assert len(server.rerank_requests) == window_calls(n, window, step)
    # A perfect judge brings the best window - step passages to the top, in order.
    top = min(n, window - step) if n > window else n
    assert expected[:top] == sorted(range(n), key=lambda i: -relevance[i])[:top]
    # Each window's request numbered exactly the passages at its positions at that moment.
    sizes = [len(re.findall(r"^\[\d+\] ", r.body["messages"][-1]["content"], re.M)) for r in server.rerank_requests]
    assert sizes == [len(w) for w in sliding_windows(n, window, step)]


def test_both_paths_agree_and_async_is_truly_async(call: Caller) -> None:
    relevance = [(i * 31) % 17 for i in range(17)]
    with ChatTestServer(HiddenRelevance(relevance), service_time=0.2) as server:
        reranker = ChatListwiseReranker(server.url, window=5, step=3)
        results = call(reranker, "q", docs(17), top_n=4)
        assert [r.index for r in results] == reference_rankgpt(relevance, 5, 3)[:4]

        async def overlapped() -> list[list[RerankResult]]:
            return list(await asyncio.gather(*(reranker.arerank("q", docs(5)) for _ in range(2))))

        if call.mode == "async":
            server.clear()
            both = asyncio.run(overlapped())
            assert both[0] == both[1]
            assert server.max_in_flight() == 2  # two one-window calls overlapped on one loop


def test_request_body_model_discovery_and_context_budget(call: Caller) -> None:
    with ChatTestServer(max_model_len=1000) as server:
        reranker = ChatListwiseReranker(server.url + "/v1", window=4, step=2, seed=7)
        long_doc = "word " * 2000
        results = call(reranker, "what is milvus", [long_doc, "milvus is a vector database", "a bird", "x"])
    assert sorted(r.index for r in results) == [0, 1, 2, 3]
    assert results[0].index == 1  # word overlap with the query
    get, post = server.requests
    assert (get.method, get.path, post.path) == ("GET", "/v1/models", "/v1/chat/completions")
    body = post.body
    assert body["model"] == "tiny-chat"
    assert body["temperature"] == 0
    assert body["seed"] == 7
    assert body["max_tokens"] == 6 * 4 + 8
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    budget = passage_budget(max_model_len=1000, window=4, query="what is milvus")
    lines = re.findall(r"^\[\d+\] (.*)$", body["messages"][1]["content"], re.M)
    assert max(len(line) for line in lines) == budget < 1200
    assert reranker.max_model_len == 1000


def test_no_models_route_means_no_model_field_and_the_default_cut(chat: ChatTestServer) -> None:
    chat.inject(Fault.respond(404, {"error": {"message": "Not Found", "code": 404}}), path="/v1/models")
    reranker = ChatListwiseReranker(chat.url + "/v1/chat/completions", window=3, step=1)
    reranker.rerank("q", ["a " * 1000, "b", "c"])
    body = chat.rerank_requests[0].body
    assert "model" not in body
    assert len(re.findall(r"^\[1\] (.*)$", body["messages"][1]["content"], re.M)[0]) == 1200


def test_blank_documents_are_not_sent_and_rank_last(chat: ChatTestServer) -> None:
    reranker = ChatListwiseReranker(chat.url, model="tiny-chat", max_passage_chars=100, window=3, step=1)
    results = reranker.rerank("milvus", ["", "milvus", "  ", "other"])
    assert [r.index for r in results] == [1, 3, 0, 2]
    assert [r.score for r in results] == [2.0, 1.0, BLANK_SCORE, BLANK_SCORE]
    assert chat.requests[0].path == "/v1/chat/completions"  # model and budget given: no discovery
    assert reranker.rerank("milvus", []) == []
    assert len(chat.requests) == 1


# -- repairs: no passage lost or duplicated ---------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "order", "counts"),
    [
        ("[3] > [1] > [2] > [4]", [2, 0, 1, 3], (0, 0, 0)),
        ("[3] > [9] > [1] > [0]", [2, 0, 1, 3], (2, 0, 2)),  # out of range dropped, 2 and 4 appended in order
        ("[2] > [2] > [4] > [2]", [1, 3, 0, 2], (0, 2, 2)),  # repeats dropped
        ("[4]", [3, 0, 1, 2], (0, 0, 3)),  # truncated answer
        ("4 > 2 > 1 > 3", [3, 1, 0, 2], (0, 0, 0)),  # bare numbers when there are no brackets
        ("I rank [2] first; passage 3 is irrelevant", [1, 0, 2, 3], (0, 0, 3)),  # brackets win over bare numbers
        ("[" + "9" * 5000 + "] > [1]", [0, 1, 2, 3], (1, 0, 3)),  # a digit string int() refuses
        ("", [0, 1, 2, 3], (0, 0, 4)),
    ],
)
def test_parse_repairs(answer: str, order: list[int], counts: tuple[int, int, int]) -> None:
    permutation = parse_permutation(answer, 4)
    assert list(permutation.order) == order
    assert (permutation.out_of_range, permutation.repeated, permutation.missing) == counts


def test_malformed_answers_keep_every_passage_once_and_are_counted(
    caplog: pytest.LogCaptureFixture, call: Caller
) -> None:
    answers = iter(["[2] > [2] > [7]", "no idea, sorry", "[1] > [3] > [2]"])
    with ChatTestServer(answer=lambda query, passages: next(answers)) as server:
        reranker = ChatListwiseReranker(server.url, model="tiny-chat", window=3, step=2)
        caplog.set_level(logging.DEBUG, logger="milvus_rerank")
        results = call(reranker, "q", docs(7))
    # Windows [4, 7), [2, 5), [0, 3): "[2] > [2] > [7]" -> doc-5, doc-4, doc-6; "no idea" keeps
    # doc-2, doc-3, doc-5; "[1] > [3] > [2]" puts doc-0, doc-2, doc-1.
    assert [r.index for r in results] == [0, 2, 1, 3, 5, 4, 6]
    assert reranker.stats == ListwiseStats(
        reranks=1, windows=3, repaired_windows=2, unparsed_windows=1, out_of_range=1, repeated=1, missing=5
    )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "window 2 of 3 without any passage identifier" in warnings[0].getMessage()
    assert "2 repaired" in caplog.text
    assert "1 without any identifier" in caplog.text


def test_a_null_content_and_a_cut_answer_are_repaired(chat: ChatTestServer) -> None:
    reranker = ChatListwiseReranker(chat.url, model="tiny-chat", max_passage_chars=50, window=3, step=1)
    chat.inject(Fault.respond(200, chat_completion(None)))
    chat.inject(Fault.respond(200, chat_completion("[2] > [", finish_reason="length")))
    results = reranker.rerank("q", ["a", "b", "c", "d"])
    assert sorted(r.index for r in results) == [0, 1, 2, 3]
    assert reranker.stats.unparsed_windows == 1
    assert reranker.stats.truncated_windows == 1


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        (Fault.respond(200, {"choices": []}), "without choices[0].message"),
        (Fault.respond(200, {"results": [{"index": 0}]}), "OpenAI-compatible chat endpoint"),
        (Fault.respond(200, chat_completion("x") | {"choices": [{"message": {"content": 3}}]}), "not text"),
        (Fault.malformed_json(), "invalid JSON"),
    ],
)
def test_an_answer_that_is_not_a_chat_completion_is_an_error(
    chat: ChatTestServer, call: Caller, fault: Fault, says: str
) -> None:
    chat.inject(fault)
    reranker = ChatListwiseReranker(chat.url, model="tiny-chat", max_passage_chars=50)
    with pytest.raises(RerankResponseError, match=re.escape(says)):
        call(reranker, "q", ["a", "b"])


# -- cost cap, configuration ------------------------------------------------------------------


def test_a_rerank_over_the_cap_is_refused_before_any_request(chat: ChatTestServer, call: Caller) -> None:
    reranker = ChatListwiseReranker(chat.url, window=20, step=10, max_calls=3)
    assert reranker.calls_for(40) == 3
    assert reranker.calls_for(41) == 4
    with pytest.raises(ValueError, match=r"takes 4 chat calls, more than max_calls=3: rerank at most 40 documents"):
        call(reranker, "q", docs(41))
    assert chat.requests == []
    assert len(call(reranker, "q", docs(40))) == 40


@pytest.mark.parametrize(
    ("kwargs", "error", "says"),
    [
        ({"window": 1}, ValueError, "window"),
        ({"window": 4, "step": 5}, ValueError, r"step \(5\) must not exceed window \(4\)"),
        ({"step": 0}, ValueError, "step"),
        ({"max_calls": 0}, ValueError, "max_calls"),
        ({"max_passage_chars": "10"}, TypeError, "max_passage_chars"),
        ({"max_batch_size": 8}, TypeError, "window= sets how many passages"),
        ({"long_documents": "windows", "max_length": 64}, TypeError, "no long_documents, max_length"),
        ({"extra_body": {"messages": []}}, ValueError, "extra_body cannot set"),
        ({"windw": 3}, TypeError, "unexpected keyword argument 'windw'"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, object], error: type[Exception], says: str) -> None:
    with pytest.raises(error, match=says):
        ChatListwiseReranker("http://127.0.0.1:1", **kwargs)  # type: ignore[arg-type]


def test_a_context_too_small_for_a_window_says_what_to_do() -> None:
    with ChatTestServer(max_model_len=200) as server:
        reranker = ChatListwiseReranker(server.url, window=20, step=10)
        with pytest.raises(ValueError, match="cannot hold a window of 20 passages"):
            reranker.rerank("q", docs(5))


def test_extra_body_sets_chat_fields(chat: ChatTestServer) -> None:
    reranker = ChatListwiseReranker(
        chat.url, model="tiny-chat", max_passage_chars=50, extra_body={"max_tokens": 99, "top_p": 1.0}
    )
    reranker.rerank("q", ["a", "b"])
    assert chat.rerank_requests[0].body["max_tokens"] == 99
    assert chat.rerank_requests[0].body["top_p"] == 1.0


# -- HTTP hardening: the deadline of the whole call, errors, secrets ----------------------------


def test_the_deadline_bounds_the_whole_call(call: Caller) -> None:
    # Four windows of 0.5 s each: every request fits the timeout, the call (2 s) does not fit the deadline.
    with ChatTestServer(service_time=0.5) as server:
        reranker = ChatListwiseReranker(
            server.url, model="tiny-chat", max_passage_chars=50, window=2, step=1, timeout=5, deadline=1.2
        )
        started = time.monotonic()
        with pytest.raises(RerankTimeoutError, match=r"window 3 of 4.*bounds the whole rerank call") as caught:
            call(reranker, "q", docs(5))
        assert time.monotonic() - started < 1.8
        assert isinstance(caught.value, TimeoutError)


def test_a_slow_answer_times_out_and_retries(chat: ChatTestServer, call: Caller) -> None:
    chat.inject(Fault.slow(2.0))
    reranker = ChatListwiseReranker(chat.url, model="tiny-chat", max_passage_chars=50, timeout=0.6, backoff=0.01)
    results = call(reranker, "milvus", ["milvus", "other"])  # the retry answers
    assert [r.index for r in results] == [0, 1]
    assert chat.rerank_arrivals == 2  # the slow one is logged only once it answers
    chat.inject(Fault.slow(2.0), times=5)
    with pytest.raises(RerankTimeoutError, match="timed out after 2 attempts"):
        call(
            ChatListwiseReranker(chat.url, model="tiny-chat", max_passage_chars=50, timeout=0.6, max_retries=1),
            "q",
            ["a", "b"],
        )


def test_error_statuses_are_retried_or_raised(chat: ChatTestServer, call: Caller) -> None:
    chat.inject(Fault.rate_limited(retry_after=0))
    reranker = ChatListwiseReranker(chat.url, model="tiny-chat", max_passage_chars=50)
    assert len(call(reranker, "q", ["a", "b"])) == 2
    wrong = ChatListwiseReranker(chat.url, model="gpt-x", max_passage_chars=50)
    with pytest.raises(RerankHTTPError, match=r"404.*gpt-x"):
        call(wrong, "q", ["a", "b"])


def test_the_key_is_sent_and_never_shown(call: Caller, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with ChatTestServer(api_key=KEY) as server:
        reranker = ChatListwiseReranker(server.url, api_key=KEY, window=2, step=1)
        assert KEY not in repr(reranker)
        call(reranker, "q", ["a", "b", "c"])
        assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.requests)
        server.inject(Fault.echo(500), times=2)
        with pytest.raises(RerankHTTPError) as caught:
            call(reranker, "q", ["a", "b"])
        server.inject(Fault.respond(200, chat_completion(f"my key is {KEY}")))
        call(reranker, "q", ["a", "b"])  # an answer with no identifier: logged, blanked
        keyless = ChatListwiseReranker(server.url, window=2, step=1)
        with pytest.raises(RerankHTTPError, match="wants an API key"):
            call(keyless, "q", ["a", "b"])
    assert KEY not in str(caught.value)
    assert "***" in str(caught.value)
    assert "without any passage identifier" in caplog.text
    assert KEY not in caplog.text


def test_a_window_over_the_context_is_a_400_that_names_the_fix(call: Caller) -> None:
    with ChatTestServer(max_model_len=300) as server:
        reranker = ChatListwiseReranker(server.url, window=4, step=2, max_passage_chars=1000)
        with pytest.raises(RerankHTTPError, match=r"maximum context length.*pass a smaller max_passage_chars="):
            call(reranker, "q", ["word " * 300] * 4)


def test_it_has_no_milvus_model_ranker_and_shows_every_endpoint_of_a_list(chat: ChatTestServer) -> None:
    from milvus_rerank import model_ranker

    second = f"http://localhost:{chat.port}"  # the same server under another name
    reranker = ChatListwiseReranker([chat.url, second], model="tiny-chat", max_passage_chars=50)
    with pytest.raises(TypeError, match="no Milvus model ranker"):
        model_ranker(reranker, queries=["q"])
    assert "127.0.0.1" in repr(reranker)
    assert "localhost" in repr(reranker)
    assert len(reranker.rerank("q", ["a", "b", "c"])) == 3
