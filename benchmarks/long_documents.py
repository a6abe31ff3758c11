"""Long documents: truncation against token windows, on SciFact with a trained cross-encoder.

    python benchmarks/long_documents.py                       # 300 test queries, BM25 top-100
    python benchmarks/long_documents.py --queries 60 --depth 30 --budget-s 2400

What it does, in one run:

1. ingests the SciFact corpus (``../shared/data/scifact``) into a temporary Milvus Lite file and
   retrieves each test query's top ``--depth`` candidates with ``MilvusRetriever`` (BM25 by default,
   ``--mode hybrid`` for dense + BM25 RRF with all-MiniLM-L6-v2);
2. reranks them with ``CrossEncoderReranker`` on the shared trained model
   (``../shared/models/scifact-minilm-l6-ce``, trained at 256 tokens) at ``max_length`` 128, 256 and 512,
   with ``long_documents="truncate"`` and ``"windows"``, the six configurations interleaved query by query
   (their order rotated) so that the machine's load falls on all of them alike, in the same dtype;
3. prints nDCG@10, pairs scored (windows included), seconds, and the windows/truncate ratios;
4. checks the windowed scores against sentence-transformers ``CrossEncoder.predict`` (float32, same
   ``max_length``) over the same windows' texts, for ``--agreement-queries`` queries: the largest
   relative difference of each document's best-window score.

``--budget-s`` stops the reranking after that many seconds (at the end of a query), and Ctrl-C stops it
at once; either way the table reports on the queries all six configurations finished, saying so. The
machine's CPU capability, dtype and ``uptime`` are printed with the table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from milvus_rerank import CrossEncoderReranker, MilvusRetriever
from milvus_rerank.evaluation import BeirDataset, load_beir, ndcg_at_k
from milvus_rerank.milvus.collection import create_rag_collection, ingest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "scifact"
DEFAULT_MODEL = ROOT.parent / "shared" / "models" / "scifact-minilm-l6-ce"
LENGTHS = (128, 256, 512)
POLICIES = ("truncate", "windows")


def candidates(data: Path, mode: str, depth: int, n_queries: int) -> tuple[BeirDataset, dict[str, list[str]]]:
    """SciFact test and, for its first ``n_queries`` queries, their top-``depth`` document ids from Milvus Lite."""
    from pymilvus import MilvusClient

    dataset = load_beir(data, "test")
    query_ids = sorted(dataset.queries, key=lambda q: int(q) if q.isdigit() else q)[:n_queries]
    if mode == "hybrid":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2", device="cpu")

        def embed(text: str) -> list[float]:
            return model.encode(text, normalize_embeddings=True).tolist()

        dim = 384
    else:  # BM25 alone: the dense field the collection needs holds a constant

        def embed(text: str) -> list[float]:
            return [1.0, 0.0]

        dim = 2
    with tempfile.TemporaryDirectory() as tmp:
        client = MilvusClient(str(Path(tmp) / "scifact.db"))
        create_rag_collection(client, "scifact", dim=dim)
        ingest(client, "scifact", list(dataset.corpus.items()), embedding=embed, show_progress=False)
        retriever = MilvusRetriever(
            client, "scifact", mode="sparse" if mode == "bm25" else "hybrid", embedding=embed, limit=depth
        )
        hits = {q: [str(c.id) for c in retriever.retrieve(dataset.queries[q])] for q in query_ids}
        client.close()
    return dataset, hits


def agreement(
    model: str, queries: dict[str, str], corpus: dict[str, str], hits: dict[str, list[str]], n: int
) -> list[tuple[int, float, int]]:
    """For each length: (length, largest relative difference to sentence-transformers, windows compared)."""
    from sentence_transformers import CrossEncoder

    out = []
    for length in LENGTHS:
        ours = CrossEncoderReranker(model, device="cpu", dtype="float32", max_length=length, long_documents="windows")
        ours.load()
        st = CrossEncoder(model, device="cpu", max_length=length)
        engine = ours._scoring_engine()  # the reranker's own tokenization, to list the windows it scores
        worst, compared = 0.0, 0
        for q in list(queries)[:n]:
            texts = [corpus[d] for d in hits[q]]
            call = ours._windows(engine, queries[q], texts, length)  # the windows it scores
            reference, _ = call.best(
                [float(s) for s in st.predict([(queries[q], t) for t in call.texts], batch_size=32)], len(texts)
            )
            got = ours.score(queries[q], texts)
            compared += call.windows
            worst = max(worst, *(abs(a - b) / max(abs(b), 1.0) for a, b in zip(got, reference, strict=True)))
        out.append((length, worst, compared))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SciFact directory")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="the trained cross-encoder")
    parser.add_argument("--mode", choices=("bm25", "hybrid"), default="bm25", help="first stage (default bm25)")
    parser.add_argument("--depth", type=int, default=100, help="candidates reranked per query (default 100)")
    parser.add_argument("--queries", type=int, default=300, help="test queries (default all 300)")
    parser.add_argument("--dtype", default="auto", help="float32, bfloat16, or auto: bfloat16 where the CPU has it")
    parser.add_argument("--budget-s", type=float, default=None, help="stop reranking after this many seconds")
    parser.add_argument("--agreement-queries", type=int, default=3, help="queries checked against ST (default 3)")
    args = parser.parse_args()

    import torch

    from milvus_rerank.rerankers.local.cpu import bfloat16_speed

    speed = bfloat16_speed()
    dtype = args.dtype if args.dtype != "auto" else ("bfloat16" if speed.native else "float32")
    print(
        f"# {platform.processor() or platform.machine()}, CPU capability {speed.capability}, "
        f"native bf16: {speed.native}, torch threads {torch.get_num_threads()}, dtype {dtype}",
        flush=True,
    )

    dataset, hits = candidates(args.data, args.mode, args.depth, args.queries)
    corpus, qrels = dataset.corpus, dataset.qrels
    queries = {q: dataset.queries[q] for q in hits}
    print(f"# {len(queries)} queries, {args.mode} top-{args.depth} from Milvus Lite", flush=True)

    rerankers = {
        (length, policy): CrossEncoderReranker(
            str(args.model), device="cpu", dtype=dtype, max_length=length, long_documents=policy
        ).load()
        for length in LENGTHS
        for policy in POLICIES
    }
    configs = list(rerankers)
    ndcg: dict[tuple[int, str], list[float]] = {c: [] for c in configs}
    seconds: dict[tuple[int, str], float] = dict.fromkeys(configs, 0.0)
    first_stage: list[float] = []
    start = time.perf_counter()
    done = 0
    stopped_by = "--budget-s"
    pairs = dict.fromkeys(configs, 0)
    try:
        for position, q in enumerate(queries):
            texts = [corpus[d] for d in hits[q]]
            relevant = qrels.get(q, {})
            spent: dict[tuple[int, str], float] = {}
            scores: dict[tuple[int, str], float] = {}
            for config in configs[position % len(configs) :] + configs[: position % len(configs)]:
                t0 = time.perf_counter()
                results = rerankers[config].rerank(queries[q], texts)
                spent[config] = time.perf_counter() - t0
                scores[config] = ndcg_at_k([hits[q][r.index] for r in results], relevant, 10)
            # A query counts once all six configurations have scored it (Ctrl-C may stop one midway).
            first_stage.append(ndcg_at_k(hits[q], relevant, 10))
            for config in configs:
                seconds[config] += spent[config]
                ndcg[config].append(scores[config])
                pairs[config] = rerankers[config].pairs_scored
            done += 1
            if done % 10 == 0:
                print(f"# {done} queries, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
            if args.budget_s is not None and time.perf_counter() - start > args.budget_s:
                break
    except KeyboardInterrupt:  # the table for the queries done so far
        stopped_by = "Ctrl-C"
    if not done:
        print("no query was reranked", file=sys.stderr)
        return

    cut = f" (stopped by {stopped_by} after {done} of {len(queries)} queries)" if done < len(queries) else ""
    print(f"\nSciFact test, {done} queries{cut}, {args.mode} top-{args.depth}; {args.model.name}, dtype {dtype}")
    print(f"first stage alone: nDCG@10 {statistics.fmean(first_stage):.4f}\n")
    header = f"{'max_length':>10} {'policy':>9} {'nDCG@10':>8} {'pairs':>8} {'pairs/doc':>9} {'time s':>8}"
    print(header)
    print("-" * len(header))
    n_docs = sum(len(hits[q]) for q in list(queries)[:done])
    for config in configs:
        length, policy = config
        print(
            f"{length:>10} {policy:>9} {statistics.fmean(ndcg[config]):>8.4f} {pairs[config]:>8} "
            f"{pairs[config] / n_docs:>9.2f} {seconds[config]:>8.1f}"
        )
    print("\nwindows / truncate at the same max_length:")
    for length in LENGTHS:
        w, t = (length, "windows"), (length, "truncate")
        print(
            f"  {length}: nDCG@10 {statistics.fmean(ndcg[w]) - statistics.fmean(ndcg[t]):+.4f}, "
            f"pairs x{pairs[w] / pairs[t]:.2f}, time x{seconds[w] / seconds[t]:.2f}"
        )
    print(f"\nuptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(f"os.cpu_count() {os.cpu_count()}", flush=True)

    if args.agreement_queries:
        print(
            f"\nagreement with sentence-transformers CrossEncoder.predict (float32) over the same windows, "
            f"{args.agreement_queries} queries:"
        )
        for length, worst, compared in agreement(str(args.model), queries, corpus, hits, args.agreement_queries):
            print(f"  max_length {length}: {compared} windows, largest relative difference {worst:.2e}")


if __name__ == "__main__":
    main()
