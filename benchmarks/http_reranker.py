"""HTTP reranking: concurrent batches vs one batch after another vs a plain httpx.post loop.

Against the loopback test server with a fixed service time per request (default 50 ms) and a
scorer that costs next to nothing, so the numbers show the client's scheduling, not a model:

- ours: VLLMReranker, batches of 32, 8 in flight (sync path and async path);
- sequential: the same client with max_concurrency=1, i.e. batches one after another, which is
  what a Milvus server's model ranker does;
- httpx.post loop: the obvious hand-written client, one ``httpx.post`` per batch.

Then the client-side overhead of one 100-document request of 1 KB documents: building and
encoding the body plus decoding and validating the answer (pure CPU), and the whole round trip
minus the server's own handling time.

Run: ``python benchmarks/http_reranker.py [--service-ms 50] [--docs 256] [--repeats 15]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection

import httpx

from milvus_rerank import VLLMReranker
from milvus_rerank.rerankers.http import HTTPReranker
from milvus_rerank.testing.server import RerankTestServer, WordOverlapReranker


def make_documents(n: int, size: int) -> list[str]:
    words = "milvus vector search rerank cross encoder database query document retrieval score batch".split()
    documents = []
    for i in range(n):
        text = " ".join(words[(i * 7 + k) % len(words)] for k in range(size // 6))
        documents.append((f"doc {i} " + text)[:size])
    return documents


def _serve(conn: Connection, service: float) -> None:
    with RerankTestServer(service_time=service) as server:
        conn.send((server.url, server.model_name))
        conn.recv()  # until the parent says stop


@contextlib.contextmanager
def server_process(service: float) -> Iterator[tuple[str, str]]:
    """The test server in its own process, as a real rerank service would be (no shared GIL)."""
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(child, service), daemon=True)
    process.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(timeout=10)


def timed(function: Callable[[], object]) -> float:
    gc.collect()  # no contender pays for the garbage of the one before
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def plain_loop(url: str, query: str, documents: list[str], batch: int) -> list[tuple[int, float]]:
    scores: list[tuple[int, float]] = []
    for start in range(0, len(documents), batch):
        response = httpx.post(
            url, json={"model": "tiny-reranker", "query": query, "documents": documents[start : start + batch]}
        )
        response.raise_for_status()
        scores += [(start + item["index"], item["relevance_score"]) for item in response.json()["results"]]
    return sorted(scores, key=lambda pair: -pair[1])


def overhead(reranker: HTTPReranker, query: str, documents: list[str], repeats: int) -> float:
    """Median seconds to build+encode one request and decode+validate its answer (no I/O)."""
    results = WordOverlapReranker().rerank(query, documents)
    body = json.dumps(
        {
            "id": "rerank-1",
            "model": "tiny-reranker",
            "usage": {"total_tokens": 1},
            "results": [
                {"index": r.index, "document": {"text": documents[r.index]}, "relevance_score": r.score}
                for r in results
            ],
        }
    ).encode()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        (request,) = reranker._plan(query, documents, None, len(documents))
        reranker._parse(request, body)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service-ms", type=float, default=50.0)
    parser.add_argument("--docs", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()

    query = "milvus rerank search"
    documents = make_documents(args.docs, 200)
    service = args.service_ms / 1000
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load {load}")
    print(
        f"workload: {args.docs} documents, batch {args.batch}, concurrency {args.concurrency}, "
        f"{args.service_ms:g} ms service time per request, {args.repeats} interleaved repeats; "
        "the server runs in its own process\n"
    )

    with server_process(service) as (server_url, model):
        ours = VLLMReranker(server_url, model=model, max_batch_size=args.batch, max_concurrency=args.concurrency)
        sequential = VLLMReranker(server_url, model=model, max_batch_size=args.batch, max_concurrency=1)
        loop = asyncio.new_event_loop()
        url = ours.endpoint.rerank_url
        expected = [r.index for r in ours.rerank(query, documents)]  # also warms connections and threads
        assert [r.index for r in loop.run_until_complete(ours.arerank(query, documents))] == expected
        assert [r.index for r in sequential.rerank(query, documents)] == expected
        assert [index for index, _ in plain_loop(url, query, documents, args.batch)] == expected

        contenders: dict[str, Callable[[], object]] = {
            f"ours, sync (batch {args.batch}, concurrency {args.concurrency})": lambda: ours.rerank(query, documents),
            f"ours, async (batch {args.batch}, concurrency {args.concurrency})": lambda: loop.run_until_complete(
                ours.arerank(query, documents)
            ),
            "sequential batches (concurrency 1, as Milvus does)": lambda: sequential.rerank(query, documents),
            "plain httpx.post loop": lambda: plain_loop(url, query, documents, args.batch),
        }
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.repeats):
            for name, run in contenders.items():  # interleaved: noise hits every contender alike
                samples[name].append(timed(run))
        loop.run_until_complete(ours.aclose())
        loop.close()
        sequential.close()

    reference = statistics.median(samples[next(iter(contenders))])
    print(f"| client | median (ms) | x service time ({args.service_ms:g} ms) | x ours, sync |")
    print("|---|---:|---:|---:|")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1000:.1f} | {median / service:.2f} | {median / reference:.2f} |")

    # Client overhead for a 100-document request of 1 KB documents.
    big = make_documents(100, 1024)
    with RerankTestServer() as server:
        reranker = VLLMReranker(server.url, model=server.model_name, max_batch_size=100)
        cpu = overhead(reranker, query, big, 200)
        for _ in range(5):
            reranker.rerank(query, big)
        server.clear()
        round_trips, cpu_times = [], []
        for _ in range(50):
            gc.collect()
            cpu_start, start = time.thread_time(), time.perf_counter()
            reranker.rerank(query, big)  # one batch runs in this thread: all of the client's CPU is counted
            round_trips.append(time.perf_counter() - start)
            cpu_times.append(time.thread_time() - cpu_start)
        handling = [record.end - record.start for record in server.rerank_requests]
        reranker.close()
    print("\nclient overhead, one request of 100 documents x 1 KB:")
    print("| measure | median (ms) |")
    print("|---|---:|")
    print(f"| build + encode body, decode + validate answer (no I/O) | {cpu * 1000:.2f} |")
    print(f"| client CPU time of a whole rerank() call (httpx included) | {statistics.median(cpu_times) * 1000:.2f} |")
    print(f"| round trip on loopback (server in this process) | {statistics.median(round_trips) * 1000:.2f} |")
    print(f"| server's own handling (scoring included) | {statistics.median(handling) * 1000:.2f} |")
    print(
        f"| round trip minus server handling (client + HTTP + loopback) | "
        f"{(statistics.median(round_trips) - statistics.median(handling)) * 1000:.2f} |"
    )
    print(
        f"\ntargets: ours within 1.5x of one request's service time -> {reference / service:.2f}x; "
        f"client overhead <= 2 ms -> {cpu * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
