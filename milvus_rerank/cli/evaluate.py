"""``milvus-rerank eval``: nDCG@10 and recall@100 of each first stage, with and without a reranker, on BEIR data.

The command prepares the collection (ingested once per dataset and embedding model, and reused
from a kept ``--uri``), says up front how long the run will take, and prints the table;
:func:`milvus_rerank.evaluation.evaluate_retrieval` does the evaluation.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from milvus_rerank.cli.database import database_path, open_database
from milvus_rerank.cli.models import load_embedding_model, make_reranker, reranker_label, standin_warning
from milvus_rerank.cli.options import MODES, TOKEN_ENV, add_model_arguments, positive_int
from milvus_rerank.cli.output import counted, duration, format_table, note

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from milvus_rerank.evaluation import BeirDataset
    from milvus_rerank.types import Reranker

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "run"]

HELP = "nDCG@10 and recall@100 on a BEIR-format dataset, with an optional reranker"
DESCRIPTION = (
    "Ingest a BEIR-format folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) into Milvus Lite, run its "
    "queries and print nDCG@10 and recall@100, for the first stage and, with --reranker-model or "
    "--vllm-endpoint, after reranking the top --rerank-depth candidates."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments to its parser."""
    parser.add_argument("data_dir", metavar="DATA_DIR", help="BEIR dataset folder")
    parser.add_argument("--split", default="test", help="qrels split (default: %(default)s)")
    add_model_arguments(parser, reranker_default=None)
    parser.add_argument(
        "--mode", choices=(*MODES, "all"), default="hybrid", help="first-stage search (default: %(default)s)"
    )
    parser.add_argument(
        "--rerank-depth",
        metavar="N",
        type=positive_int,
        default=100,
        help="first-stage candidates reranked per query (default: %(default)s)",
    )
    parser.add_argument(
        "--max-queries", metavar="N", type=positive_int, default=None, help="evaluate only the first N queries"
    )
    parser.add_argument(
        "--uri",
        "--db",
        dest="uri",
        metavar="URI",
        default=None,
        help="Milvus Lite file (*.db) or server URL to keep the ingested corpus in and reuse on the next run "
        f"(default: a temporary file); a server token is read from ${TOKEN_ENV}",
    )


def _collection_name(folder: Path, embedding_model: str) -> str:
    """One collection per dataset and embedding model, so a kept ``--db`` never mixes vectors of two models."""
    name = re.sub(r"[^0-9a-zA-Z_]", "_", folder.resolve().name) or "beir"
    digest = hashlib.sha256(embedding_model.encode()).hexdigest()[:8]
    return f"{name if name[0].isalpha() else 'beir_' + name}_{digest}"


def _estimate(
    model: SentenceTransformer,
    reranker: Reranker | None,
    dataset: BeirDataset,
    *,
    ingesting: bool,
    depth: int,
    queries: int,
) -> None:
    """Say up front how long the run will take here, timed on a small share of its own work.

    A first SciFact run embeds 5,183 documents and reranks 300 x 100 pairs: a quarter of an hour
    on two CPU cores, which should not come as a surprise.
    """
    texts = list(dataset.corpus.values())
    parts = []
    if ingesting:
        sample = texts[:32]
        started = time.perf_counter()
        model.encode(sample)
        seconds = (time.perf_counter() - started) / len(sample) * len(texts)
        parts.append(f"embedding {counted(len(texts), 'document')} once: about {duration(seconds)}")
    if reranker is not None and queries:
        query = next(iter(dataset.queries.values()))
        started = time.perf_counter()
        reranker.rerank(query, texts[:depth])
        seconds = (time.perf_counter() - started) * queries
        parts.append(f"reranking {queries} x {min(depth, len(texts))} candidates: about {duration(seconds)}")
    if parts:
        note(f"this run, timed on a sample here: {'; '.join(parts)}")


def run(args: argparse.Namespace) -> int:
    """Run the command; return its exit status."""
    from milvus_rerank.evaluation import evaluate_retrieval, load_beir
    from milvus_rerank.milvus import create_rag_collection, ingest

    with database_path(args.uri, name="eval.db") as uri:
        dataset = load_beir(args.data_dir, args.split)
        modes = [mode for mode in MODES if args.mode in (mode, "all")]
        client = open_database(uri, must_exist=False)
        try:
            reranker = make_reranker(args) if (args.reranker_model or args.vllm_endpoint or args.reranker) else None
            model = load_embedding_model(args.embedding_model)
            collection = _collection_name(Path(args.data_dir), os.fspath(args.embedding_model))
            stored = 0
            if client.has_collection(collection):
                stored = int(client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"])
            ingesting = stored != len(dataset.corpus)
            queries = min(len(dataset.queries), args.max_queries or len(dataset.queries))
            _estimate(
                model, reranker, dataset, ingesting=ingesting, depth=args.rerank_depth, queries=queries * len(modes)
            )
            if not ingesting:
                note(f"reusing collection {collection!r} at {uri} ({counted(stored, 'document')})")
            else:
                if stored:
                    client.drop_collection(collection)
                create_rag_collection(client, collection, dim=len(model.encode("dimension probe")))
                ingest(client, collection, list(dataset.corpus.items()), embedding=model, show_progress=not args.quiet)
            evaluations = evaluate_retrieval(
                client,
                collection,
                dataset,
                modes=modes,
                embedding=model,
                reranker=reranker,
                rerank_depth=args.rerank_depth,
                max_queries=args.max_queries,
                show_progress=not args.quiet,
            )
        finally:
            client.close()
    note(
        f"{Path(args.data_dir).name} ({args.split}): {len(dataset.corpus)} documents, "
        f"{evaluations[0].scores.queries} queries; embedding {args.embedding_model}"
        + (f"; reranker {reranker_label(args)}" if reranker is not None else "; no reranker")
    )
    warning = standin_warning(args) if reranker is not None else None
    if warning:
        note(warning)
    rows = [
        [
            f"{run.mode} top-{args.rerank_depth} + rerank" if run.reranked else run.mode,
            run.scores.ndcg,
            run.scores.recall,
            run.scores.queries,
            None if run.rerank_ms_per_query is None else round(run.rerank_ms_per_query),
        ]
        for run in evaluations
    ]
    print(format_table(("retrieval", "nDCG@10", "recall@100", "queries", "rerank ms/query"), rows))
    return 0
