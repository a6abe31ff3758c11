"""``milvus-rerank demo``: the RAG demo on the built-in corpus.

A demo run is: the corpus (:mod:`milvus_rerank.cli.corpus`) into Milvus Lite -> for each question
hybrid retrieval -> the reranker -> an answer from the best passages
(:mod:`milvus_rerank.cli.answers`), by an LLM endpoint when one is configured, else extractive.
"""

from __future__ import annotations

import argparse

from milvus_rerank.cli.answers import generate_answer
from milvus_rerank.cli.corpus import DEMO_COLLECTION, DEMO_QUESTIONS, ingest_corpus
from milvus_rerank.cli.database import database_path, open_database
from milvus_rerank.cli.errors import CLIError
from milvus_rerank.cli.models import check_models, load_embedding_model, make_reranker, reranker_label, standin_warning
from milvus_rerank.cli.options import add_demo_arguments
from milvus_rerank.cli.output import format_table, one_line

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "run"]

HELP = "the RAG demo on a built-in corpus (Milvus Lite, hybrid search, rerank, answer)"
DESCRIPTION = (
    "Ingest the built-in corpus (a fictional observatory handbook) into Milvus Lite, then for each question: "
    "hybrid search, rerank, and answer from the best passages, with an LLM endpoint or, without one, an "
    "extractive answer that quotes them. Offline, pass local model directories with --reranker-model and "
    "--embedding-model."
)

_HEADERS = ("rank", "rerank score", "first-stage rank", "first-stage score", "id", "passage")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments to its parser."""
    add_demo_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run the command; return its exit status."""
    from milvus_rerank import MilvusRetriever, RerankPipeline

    questions = args.question or list(DEMO_QUESTIONS)
    if any(not question.strip() for question in questions):
        raise CLIError("--question must not be empty")
    with database_path(args.uri, name="demo.db") as uri:
        client = open_database(uri, must_exist=False)
        try:
            check_models(args)
            model = load_embedding_model(args.embedding_model)
            reranker = make_reranker(args)
            count = ingest_corpus(client, DEMO_COLLECTION, model, show_progress=not args.quiet)
            retriever = MilvusRetriever(client, DEMO_COLLECTION, embedding=model, limit=args.candidates)
            pipeline = RerankPipeline(reranker, top_n=args.top_n)
            print(
                f"Lumen Ridge Observatory handbook (fictional): {count} passages in Milvus Lite collection "
                f"{DEMO_COLLECTION!r}\nfirst stage: hybrid dense + BM25 (RRF), {args.candidates} candidates; "
                f"reranker: {reranker_label(args)}; top {args.top_n}; answers: "
                + (f"LLM at {args.llm_endpoint}" if args.llm_endpoint else "extractive (no --llm-endpoint)")
            )
            warning = standin_warning(args)
            if warning:
                print(warning)
            for number, question in enumerate(questions, start=1):
                results = pipeline.rerank(question, retriever.retrieve(question))
                print(f"\nQ{number}. {question}")
                rows = [
                    [
                        c.rank,
                        c.rerank_score,
                        c.retrieval_rank,
                        c.score,
                        str(c.id),
                        one_line(f"{c.metadata.get('title', '')} ({c.metadata.get('source', '?')})", 60),
                    ]
                    for c in results
                ]
                print(format_table(_HEADERS, rows, align="rrrrll"))
                passages = [(c.text, str(c.metadata.get("source", c.id))) for c in results]
                print(generate_answer(args, question, passages))
        finally:
            client.close()
    return 0
