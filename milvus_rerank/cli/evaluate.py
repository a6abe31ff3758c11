"""``milvus-rerank eval``: nDCG@10 and recall@100 of each first stage, with and without a reranker, on BEIR data.

The command prepares the collection (ingested once per dataset and embedding model, and reused
from a kept ``--uri``), says up front how long the run will take, and prints the table;
:func:`milvus_rerank.evaluation.evaluate_retrieval` does the evaluation.

A quick run (``--max-queries N``) embeds only what it needs: the documents judged for its N
queries plus ``--corpus-sample`` documents in all, the others drawn at random (seed 0) as
distractors. Its scores are those of a smaller haystack, and so higher than on the whole corpus;
``--corpus-sample 0`` uses the whole corpus.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from milvus_rerank.cli.database import database_path, open_database
from milvus_rerank.cli.models import check_models, load_embedding_model, make_reranker, reranker_label, standin_warning
from milvus_rerank.cli.options import (
    MODES,
    add_model_arguments,
    add_selection_arguments,
    add_uri_argument,
    non_negative_int,
    positive_int,
)
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
    "--vllm-endpoint, after reranking the top --candidates candidates."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments to its parser."""
    parser.add_argument("data_dir", metavar="DATA_DIR", help="BEIR dataset folder")
    parser.add_argument("--split", default="test", help="qrels split (default: %(default)s)")
    add_model_arguments(parser, reranker_default=None)
    parser.add_argument(
        "--mode", choices=(*MODES, "all"), default="hybrid", help="first-stage search (default: %(default)s)"
    )
    add_selection_arguments(parser, candidates=100, top_n=False)
    parser.add_argument(
        "--max-queries",
        metavar="N",
        type=positive_int,
        default=None,
        help="a quick run: the first N queries, on a sample of the corpus (see --corpus-sample)",
    )
    parser.add_argument(
        "--corpus-sample",
        metavar="N",
        type=non_negative_int,
        default=DEFAULT_CORPUS_SAMPLE,
        help="with --max-queries, the documents embedded: those judged for the queries, then others drawn at "
        "random (seed 0) up to N in all; the scores are higher than on the whole corpus (default: %(default)s; "
        "0: the whole corpus)",
    )
    add_uri_argument(parser, default=None)


DEFAULT_CORPUS_SAMPLE = 250
"""Documents a quick run (``--max-queries``) embeds: well under a minute's work on two CPU cores."""


def _collection_name(folder: Path, embedding_model: str, documents: Iterable[str] | None = None) -> str:
    """One collection per dataset, embedding model and sample, so a kept ``--uri`` never mixes them."""
    name = re.sub(r"[^0-9a-zA-Z_]", "_", folder.resolve().name) or "beir"
    digest = hashlib.sha256(embedding_model.encode()).hexdigest()[:8]
    sample = "" if documents is None else "_s" + hashlib.sha256("\n".join(documents).encode()).hexdigest()[:8]
    return f"{name if name[0].isalpha() else 'beir_' + name}_{digest}{sample}"


def _sample(dataset: BeirDataset, queries: int, size: int) -> BeirDataset:
    """The first ``queries`` queries, and the corpus cut to their judged documents plus random ones, ``size`` in all."""
    from milvus_rerank.evaluation import BeirDataset

    qrels = dict(list(dataset.qrels.items())[:queries])
    judged = {doc for relevant in qrels.values() for doc in relevant if doc in dataset.corpus}
    others = sorted(doc for doc in dataset.corpus if doc not in judged)
    drawn = random.Random(0).sample(others, min(len(others), max(0, size - len(judged))))
    kept = judged.union(drawn)
    corpus = {doc: text for doc, text in dataset.corpus.items() if doc in kept}
    return BeirDataset(corpus, {query: dataset.queries[query] for query in qrels}, qrels)


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
        dataset = whole = load_beir(args.data_dir, args.split)
        sampled = bool(args.max_queries and args.corpus_sample and args.corpus_sample < len(whole.corpus))
        if sampled:
            dataset = _sample(whole, args.max_queries, args.corpus_sample)
            note(
                f"a quick run: {counted(len(dataset.corpus), 'document')} of {len(whole.corpus)} (those judged for "
                f"the {counted(len(dataset.queries), 'query', 'queries')}, and others drawn at random), so the "
                "scores are higher than on the whole corpus; --corpus-sample 0 uses it all"
            )
        modes = [mode for mode in MODES if args.mode in (mode, "all")]
        client = open_database(uri, must_exist=False)
        try:
            reranking = bool(args.reranker_model or args.vllm_endpoint or args.reranker or args.llm_rerank_endpoint)
            check_models(args, reranker=reranking)
            reranker = make_reranker(args) if reranking else None
            model = load_embedding_model(args.embedding_model)
            collection = _collection_name(
                Path(args.data_dir), os.fspath(args.embedding_model), sorted(dataset.corpus) if sampled else None
            )
            stored = 0
            if client.has_collection(collection):
                stored = int(client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"])
            ingesting = stored != len(dataset.corpus)
            queries = min(len(dataset.queries), args.max_queries or len(dataset.queries))
            _estimate(
                model, reranker, dataset, ingesting=ingesting, depth=args.candidates, queries=queries * len(modes)
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
                rerank_depth=args.candidates,
                max_queries=args.max_queries,
                show_progress=not args.quiet,
            )
        finally:
            client.close()
    note(
        f"{Path(args.data_dir).name} ({args.split}): {len(dataset.corpus)} documents"
        + (f" (a sample of {len(whole.corpus)})" if sampled else "")
        + ", "
        f"{evaluations[0].scores.queries} queries; embedding {args.embedding_model}"
        + (f"; reranker {reranker_label(args)}" if reranker is not None else "; no reranker")
    )
    warning = standin_warning(args) if reranker is not None else None
    if warning:
        note(warning)
    rows = [
        [
            f"{run.mode} top-{args.candidates} + rerank" if run.reranked else run.mode,
            run.scores.ndcg,
            run.scores.recall,
            run.scores.queries,
            None if run.rerank_ms_per_query is None else round(run.rerank_ms_per_query),
        ]
        for run in evaluations
    ]
    print(format_table(("retrieval", "nDCG@10", "recall@100", "queries", "rerank ms/query"), rows))
    return 0
