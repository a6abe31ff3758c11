"""``milvus-rerank query``: search a collection, rerank the candidates and print both stages' scores."""

from __future__ import annotations

import argparse

from milvus_rerank.cli.database import check_collection, open_database
from milvus_rerank.cli.errors import CLIError
from milvus_rerank.cli.models import check_models, load_embedding_model, make_reranker, reranker_label, standin_warning
from milvus_rerank.cli.options import (
    MODES,
    add_milvus_arguments,
    add_model_arguments,
    add_selection_arguments,
    positive_int,
)
from milvus_rerank.cli.output import CANDIDATE_HEADERS, candidate_rows, counted, format_table, note

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "run"]

HELP = "search a collection and rerank the results"
DESCRIPTION = (
    "Retrieve candidates (hybrid dense + BM25 by default), rerank them and print a table with both the "
    "first-stage and the rerank scores."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments to its parser."""
    parser.add_argument("query", help="the query text")
    add_milvus_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument("--mode", choices=MODES, default="hybrid", help="first-stage search (default: %(default)s)")
    add_selection_arguments(parser)
    parser.add_argument(
        "--width",
        metavar="N",
        type=positive_int,
        default=70,
        help="characters of text shown per result (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the command; return its exit status."""
    from milvus_rerank import MilvusRetriever, RerankPipeline

    if not args.query.strip():
        raise CLIError("the query is empty")
    client = open_database(args.uri, must_exist=True)
    try:
        check_collection(client, args.uri, args.collection)
        check_models(args, embedding=args.mode != "sparse")
        reranker = make_reranker(args)
        embedding = load_embedding_model(args.embedding_model) if args.mode != "sparse" else None
        mode = next(mode for mode in MODES if mode == args.mode)
        retriever = MilvusRetriever(client, args.collection, mode=mode, embedding=embedding, limit=args.candidates)
        candidates = retriever.retrieve(args.query)
        results = RerankPipeline(reranker, top_n=args.top_n).rerank(args.query, candidates)
        scores = "RRF fusion scores" if mode == "hybrid" else f"{retriever.metric_type} scores"
    finally:
        client.close()
    note(
        f"{args.mode} search of {args.collection!r} at {args.uri}: {counted(len(candidates), 'candidate')} "
        f"(first-stage scores are {scores}), reranked by {reranker_label(args)}; top {args.top_n}"
    )
    warning = standin_warning(args)
    if warning:
        note(warning)
    if not results:
        print("no results: the collection is empty or nothing matched")
        return 0
    print(format_table(CANDIDATE_HEADERS, candidate_rows(results, args.width), align="rrrrll"))
    return 0
