"""A vLLM fleet: documents per second through one server vs two behind vllm-router (and endpoint=[a, b]).

Two real vLLM servers of the same weights (started here through ``scripts/vllm-server.sh``, or
given with ``--servers STATE STATE`` when already running) and ``vllm-router`` in front of them, as
CI runs them. One query and ``--docs`` SciFact abstracts (synthetic text without ../shared/data) are
reranked ``--repeats`` times by ``VLLMReranker`` through:

- one server, directly;
- the router, with the two servers behind it (``endpoint=ROUTER/v2``);
- both servers given as ``endpoint=[a, b]`` (the client's own least-in-flight choice, no router).

The same client settings everywhere (``--batch`` documents a request, ``--concurrency`` in
flight). The table gives median docs/s and the ratio to one server. **The gain is bounded by the
cores**: vLLM's CPU build computes on one core per server, and this machine's cores also run the
router and the client, so two servers on two cores cannot reach 2x; on a machine with a GPU per
server (or more cores) the same run measures the fleet.

Run: ``python benchmarks/fleet.py [--model PATH|tiny] [--docs 128] [--repeats 5] [--servers A B]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from milvus_rerank import VLLMReranker

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "vllm-server.sh"
SHARED_MODEL = ROOT.parent / "shared" / "models" / "scifact-minilm-l6-ce"
SCIFACT = ROOT.parent / "shared" / "data" / "scifact" / "corpus.jsonl"


def script(*args: str) -> None:
    subprocess.run(["bash", str(SCRIPT), *args], check=True, stdout=subprocess.DEVNULL)


def env_of(state: Path) -> dict[str, str]:
    words = (line.split(" ", 1)[1] for line in (state / "env").read_text().splitlines() if line.startswith("export "))
    return dict(word.split("=", 1) for word in words)


@contextmanager
def servers(given: list[str] | None, model: str, folder: Path) -> Iterator[list[Path]]:
    """The two servers' state directories: the given ones, or two started here and stopped after."""
    if given:
        yield [Path(state) for state in given]
        return
    states = [folder / "a", folder / "b"]
    try:
        for state in states:
            if model == "tiny":
                script("serve", "reranker", str(state))
            else:
                script("start", str(state), model, "--served-model-name", "reranker")
        for state in states:
            script("wait", str(state), "600")
        yield states
    finally:
        for state in states:
            script("stop", str(state))


@contextmanager
def router(states: list[Path], folder: Path) -> Iterator[Path]:
    state = folder / "router"
    script("router", str(state), *map(str, states))
    try:
        script("wait", str(state), "60")
        yield state
    finally:
        script("stop", str(state))


def documents(n: int) -> list[str]:
    if SCIFACT.is_file():
        texts = []
        with SCIFACT.open(encoding="utf-8") as corpus:
            for line in corpus:
                row = json.loads(line)
                texts.append(f"{row.get('title', '')} {row['text']}".strip()[:600])
                if len(texts) == n:
                    return texts
    words = "milvus vector search rerank cross encoder protein cell mice database query retrieval".split()
    return [" ".join(words[(i * 7 + k) % len(words)] for k in range(80)) for i in range(n)]


def docs_per_second(reranker: VLLMReranker, query: str, texts: list[str], repeats: int) -> float:
    reranker.rerank(query, texts[:8])  # connections and discovery before the clock
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        reranker.rerank(query, texts)
        times.append(time.perf_counter() - start)
    return len(texts) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHARED_MODEL) if SHARED_MODEL.is_dir() else "tiny")
    parser.add_argument("--docs", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--servers", nargs=2, metavar="STATE", help="two running servers' state directories")
    args = parser.parse_args()

    query = "cellular immune response in mice"
    texts = documents(args.docs)
    with (
        tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp,
        servers(args.servers, args.model, Path(tmp)) as states,
    ):
        envs = [env_of(state) for state in states]
        model, key = envs[0]["MILVUS_RERANK_TEST_VLLM_MODEL"], envs[0]["MILVUS_RERANK_TEST_VLLM_API_KEY"] or None
        urls = [env["MILVUS_RERANK_TEST_VLLM_URL"] for env in envs]
        options = {"model": model, "api_key": key, "max_batch_size": args.batch, "max_concurrency": args.concurrency}
        with router(states, Path(tmp)) as routed:
            router_url = env_of(routed)["MILVUS_RERANK_TEST_VLLM_URL"] + "/v2"
            print(f"$ uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
            cores = os.cpu_count()
            print(
                f"machine: {platform.platform()}, {cores} cores, Python {platform.python_version()}; "
                f"the gain of two servers is bounded by these {cores} cores (one per vLLM CPU server, "
                "shared with the router and this client)"
            )
            print(
                f"model: {Path(args.model).name if args.model != 'tiny' else 'the CI tiny cross-encoder'}; "
                f"{len(texts)} documents{' (SciFact)' if SCIFACT.is_file() else ''}, batch {args.batch}, "
                f"{args.concurrency} in flight, median of {args.repeats}"
            )
            rows = []
            with VLLMReranker(urls[0], **options) as one:
                rows.append(("one vLLM server", docs_per_second(one, query, texts, args.repeats)))
            with VLLMReranker(router_url, **options) as fleet:
                rows.append(("vllm-router, 2 servers", docs_per_second(fleet, query, texts, args.repeats)))
            with VLLMReranker(urls, **options) as pool:
                rows.append(("endpoint=[a, b], no router", docs_per_second(pool, query, texts, args.repeats)))
            print("\n| through | docs/s | vs one server |\n|---|---:|---:|")
            for name, rate in rows:
                print(f"| {name} | {rate:.1f} | {rate / rows[0][1]:.2f}x |")
            print(f"\n$ uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
