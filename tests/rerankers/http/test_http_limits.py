"""Limits always hold (issue 11, items 5-8): the deadline bounds the body, the decoded size is
capped, async clients die with their loops, and a too-heavy batch is not resent in vain."""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import os
import time
import tracemalloc
import warnings
import weakref
import zlib
from pathlib import Path

import pytest
from helpers import Caller

from milvus_rerank import RerankHTTPError, RerankResponseError, RerankTimeoutError, TEIReranker, VLLMReranker
from milvus_rerank.rerankers.http.body import BodyReader
from milvus_rerank.testing.server import Fault, RerankTestServer, WordOverlapReranker

QUERY = "milvus vector search"
DOCS = [f"document {i} about milvus vector search" for i in range(6)]


def expected(documents: list[str]) -> list:
    return WordOverlapReranker().rerank(QUERY, documents)


# -- 5: the deadline bounds the whole call, body included ------------------------------------------


@pytest.mark.parametrize("reranker_type", [VLLMReranker, TEIReranker])
def test_the_deadline_stops_a_trickling_body(call: Caller, reranker_type: type[VLLMReranker]) -> None:
    flavor = "tei" if reranker_type is TEIReranker else "vllm"
    with RerankTestServer(flavor=flavor) as server:  # type: ignore[arg-type]
        # A byte every 20 ms: each read returns well within timeout=0.5, the whole answer would take ~10 s.
        server.inject(Fault.trickle(0.02), times=5)
        reranker = reranker_type(server.url, model=server.model_name, max_batch_size=8, timeout=0.5, deadline=0.8)
        started = time.monotonic()
        with pytest.raises(RerankTimeoutError, match=r"0\.8 s deadline"):
            call(reranker, QUERY, DOCS)
        took = time.monotonic() - started
        assert len(server.rerank_requests) == 1  # nothing left of the deadline: not resent
    assert 0.75 <= took < 1.5


def test_the_deadline_stops_trickling_headers_on_the_async_path() -> None:
    with RerankTestServer() as server:
        server.inject(Fault.trickle(0.02, headers=True), times=5)

        async def run() -> None:
            async with VLLMReranker(server.url, model=server.model_name, timeout=0.5, deadline=0.6) as reranker:
                await reranker.arerank(QUERY, DOCS)

        started = time.monotonic()
        with pytest.raises(RerankTimeoutError, match="deadline"):
            asyncio.run(run())
    assert time.monotonic() - started < 1.2


def test_a_trickle_that_ends_in_time_is_read_whole(call: Caller) -> None:
    with RerankTestServer() as server:
        server.inject(Fault.trickle(0.0005))
        reranker = VLLMReranker(server.url, model=server.model_name, timeout=5, deadline=10)
        assert call(reranker, QUERY, DOCS) == expected(DOCS)


# -- 6: the decoded size of an answer is capped -----------------------------------------------------

BOMB_BYTES = 64 * 1024 * 1024  # inflates from about 64 KiB
CAP = 1024 * 1024


def bomb(encoding: str) -> bytes:
    data = b" " * BOMB_BYTES
    return gzip.compress(data, compresslevel=9) if encoding == "gzip" else zlib.compress(data, 9)


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return {encoding: bomb(encoding) for encoding in ("gzip", "deflate")}


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_bomb_fails_at_the_cap_without_inflating(
    call: Caller, bombs: dict[str, bytes], encoding: str
) -> None:
    compressed = bombs[encoding]
    assert len(compressed) < BOMB_BYTES / 500
    with RerankTestServer() as server:
        server.inject(Fault.respond(200, compressed, {"Content-Encoding": encoding}))
        reranker = VLLMReranker(server.url, model=server.model_name, max_response_bytes=CAP)
        tracemalloc.start()
        try:
            with pytest.raises(RerankResponseError, match=f"max_response_bytes={CAP}") as caught:
                call(reranker, QUERY, DOCS)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert server.rerank_requests[0].headers["accept-encoding"] == "gzip, deflate"
    assert peak < 4 * CAP  # httpx alone would have held the 64 MiB
    assert "max_batch_size" in str(caught.value)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_a_compressed_answer_under_the_cap_is_read(server: RerankTestServer, call: Caller, encoding: str) -> None:
    answer = json.dumps({"results": [{"index": r.index, "relevance_score": r.score} for r in expected(DOCS)]})
    if encoding == "gzip":
        packed = gzip.compress(answer.encode())
    elif encoding == "deflate":
        packed = zlib.compress(answer.encode())
    else:  # raw deflate, which some servers send for "deflate"
        squeezer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        packed = squeezer.compress(answer.encode()) + squeezer.flush()
    server.inject(Fault.respond(200, packed, {"Content-Encoding": "gzip" if encoding == "gzip" else "deflate"}))
    assert call(VLLMReranker(server.url, model=server.model_name), QUERY, DOCS) == expected(DOCS)


def test_a_plain_answer_over_the_cap_fails_and_an_encoding_not_asked_for_is_refused(call: Caller) -> None:
    with RerankTestServer() as server:
        reranker = VLLMReranker(server.url, model=server.model_name, max_response_bytes=100)
        with pytest.raises(RerankResponseError, match="max_response_bytes=100"):
            call(reranker, QUERY, DOCS)
        server.inject(Fault.respond(200, b"\x1b\x00", {"Content-Encoding": "br"}))
        with pytest.raises(RerankResponseError, match="Content-Encoding 'br'"):
            call(VLLMReranker(server.url, model=server.model_name), QUERY, DOCS)


def test_an_error_body_is_cut_not_refused(call: Caller) -> None:
    with RerankTestServer() as server:
        server.inject(Fault.respond(400, gzip.compress(b"x" * BOMB_BYTES), {"Content-Encoding": "gzip"}))
        with pytest.raises(RerankHTTPError, match="HTTP 400: xxxx") as caught:
            call(VLLMReranker(server.url, model=server.model_name), QUERY, DOCS)
    assert len(caught.value.server_message) < 300


def test_the_body_reader_never_produces_more_than_its_limit() -> None:
    reader = BodyReader("gzip", limit=1000, endpoint="http://h/rerank", cut=True)
    compressed = gzip.compress(b"a" * 10_000_000)
    for start in range(0, len(compressed), 7):
        reader.feed(compressed[start : start + 7])
    assert reader.content() == b"a" * 1000
    assert reader.full
    with pytest.raises(RerankResponseError, match="does not decode"):
        BodyReader("gzip", limit=1000, endpoint="http://h/rerank").feed(b"not gzip at all")


@pytest.mark.parametrize("option", [0, -1, 1.5, True])
def test_max_response_bytes_is_checked(option: object) -> None:
    with pytest.raises((TypeError, ValueError), match="max_response_bytes"):
        VLLMReranker("http://127.0.0.1:1", max_response_bytes=option)  # type: ignore[arg-type]


# -- 7: an event loop's client does not outlive the loop -----------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def settled_fds(target: int, within: float = 3.0) -> int:
    """The open fds once the server's threads have closed their side (they do so a moment later)."""
    deadline = time.monotonic() + within
    while open_fds() > target and time.monotonic() < deadline:
        time.sleep(0.02)
    gc.collect()
    return open_fds()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open files through /proc")
def test_thirty_asyncio_runs_leave_no_socket_no_loop_and_no_warning() -> None:
    with RerankTestServer() as server:
        reranker = VLLMReranker(server.url, model=server.model_name)
        loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

        async def per_request() -> None:
            loops.append(weakref.ref(asyncio.get_running_loop()))
            assert await reranker.arerank(QUERY, DOCS) == expected(DOCS)

        asyncio.run(per_request())  # the server's threads and the first imports settle
        gc.collect()
        before = settled_fds(0, within=0.5)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            for _ in range(30):
                asyncio.run(per_request())
            gc.collect()
            after = settled_fds(before)
            reranker.close()
            gc.collect()
        assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
        assert after <= before + 1
        assert [ref for ref in loops if ref() is not None] == []
        assert len(server.rerank_requests) == 31


def test_close_after_one_asyncio_run_leaves_nothing_to_the_garbage_collector() -> None:
    with RerankTestServer() as server:
        reranker = VLLMReranker(server.url, model=server.model_name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            asyncio.run(reranker.arerank(QUERY, DOCS))
            reranker.close()
            del reranker
            gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_close_closes_the_client_of_an_idle_loop_and_survives_a_closed_one() -> None:
    with RerankTestServer() as server:
        reranker = VLLMReranker(server.url, model=server.model_name)
        idle, gone = asyncio.new_event_loop(), asyncio.new_event_loop()
        idle.run_until_complete(reranker.arerank(QUERY, DOCS))
        gone.run_until_complete(reranker.arerank(QUERY, DOCS))
        gone.close()  # closed without shutdown_asyncgens(): nothing can run on it any more
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            reranker.close()
        assert [str(w.message) for w in caught if "was never awaited" in str(w.message)] == []
        assert reranker._clients.loop_clients == {}
        idle.run_until_complete(idle.shutdown_asyncgens())  # nothing left for it to finalise
        idle.close()


def test_a_reranker_used_on_a_new_loop_after_another_ended_still_works() -> None:
    with RerankTestServer() as server:
        reranker = VLLMReranker(server.url, model=server.model_name, max_batch_size=2)
        for _ in range(3):
            assert asyncio.run(reranker.arerank(QUERY, DOCS)) == expected(DOCS)
        reranker.close()


# -- 8: a read timeout is not resent when the deadline cannot cover one more ---------------------------


def test_a_batch_too_slow_for_one_timeout_is_not_resent_in_vain(call: Caller) -> None:
    with RerankTestServer() as server:
        server.inject(Fault.slow(1.5), times=5)
        reranker = VLLMReranker(
            server.url, model=server.model_name, timeout=0.4, deadline=0.7, max_retries=3, backoff=0.001
        )
        with pytest.raises(RerankTimeoutError) as caught:
            call(reranker, QUERY, DOCS)
        assert server.rerank_arrivals == 1  # 0.3 s were left: less than one more 0.4 s timeout
    message = str(caught.value)
    assert "no answer to a batch of 6 documents within 0.4 s" in message
    assert "not resent" in message
    assert "max_batch_size=" in message
    assert "timeout=" in message


def test_a_read_timeout_is_resent_while_the_deadline_covers_a_full_timeout(call: Caller) -> None:
    with RerankTestServer() as server:
        server.inject(Fault.slow(1.0))
        reranker = VLLMReranker(
            server.url, model=server.model_name, timeout=0.3, deadline=5.0, max_retries=2, backoff=0.001
        )
        assert call(reranker, QUERY, DOCS) == expected(DOCS)
        assert server.rerank_arrivals == 2
