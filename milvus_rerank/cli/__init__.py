"""The ``milvus-rerank`` command: ``ingest``, ``query``, ``eval`` and ``demo``.

Every subcommand has ``--help``. Errors end the command with one line on stderr and exit status
1 (2 for a wrong command line); ``--debug`` shows the traceback instead. Progress bars and the
tables' explanations go to stderr, results to stdout, so ``milvus-rerank query ... > out.txt``
keeps only the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from milvus_rerank import __version__
from milvus_rerank.chunking import SUPPORTED_SUFFIXES, read_documents, source_name
from milvus_rerank.cli import demo

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from milvus_rerank.milvus.retriever import RetrievalMode
    from milvus_rerank.types import Candidate, Reranker

__all__ = ["build_parser", "collect_files", "main"]

PROG = "milvus-rerank"

DEFAULT_URI = "milvus_rerank.db"
DEFAULT_COLLECTION = "documents"
TOKEN_ENV = "MILVUS_TOKEN"
_MODES: tuple[RetrievalMode, ...] = ("dense", "sparse", "hybrid")


class CLIError(Exception):
    """A mistake in the command's input, reported as one line without a traceback."""


# ----------------------------------------------------------------------------- files


def collect_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and folders into the list of files to ingest.

    Folders are searched recursively for :data:`SUPPORTED_SUFFIXES`, skipping hidden files and
    folders; a file named explicitly must have a supported suffix.

    Raises:
        CLIError: A path does not exist, a file has an unsupported suffix, or nothing is found.
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                candidate
                for candidate in path.rglob("*")
                if candidate.is_file()
                and candidate.suffix.lower() in SUPPORTED_SUFFIXES
                and not any(part.startswith(".") for part in candidate.relative_to(path).parts)
            )
            if not found:
                raise CLIError(f"no {', '.join(SUPPORTED_SUFFIXES)} files under {path}")
            files.extend(found)
        elif path.is_file():
            if path.suffix.lower() not in SUPPORTED_SUFFIXES:
                raise CLIError(f"{path}: unsupported file type; ingest reads {', '.join(SUPPORTED_SUFFIXES)} files")
            files.append(path)
        else:
            raise CLIError(f"{path}: no such file or folder")
    return list(dict.fromkeys(files))


# ----------------------------------------------------------------------------- output


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, align: str | None = None) -> str:
    """A Markdown table with padded columns (readable in a terminal, pasteable into docs).

    Args:
        headers: Column titles.
        rows: Cell values; ``float`` cells are shown with four decimals, ``None`` as ``-``.
        align: One character per column, ``l`` or ``r``; default: right for numbers, left otherwise.
    """

    def cell(value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value).replace("|", "\\|")

    values = [list(row) for row in rows]
    table = [[cell(value) for value in row] for row in values]
    if align is None:
        align = "".join(
            "r" if values and all(isinstance(row[i], (int, float)) or row[i] is None for row in values) else "l"
            for i in range(len(headers))
        )
    widths = [max([len(h), *(len(row[i]) for row in table)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if a == "r" else v.ljust(w) for v, w, a in zip(values, widths, align, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align, strict=True))
        + "|"
    )
    return "\n".join([line(headers), rule, *(line(row) for row in table)])


def _note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- shared plumbing


def _check_uri(uri: str, *, must_exist: bool) -> None:
    """Catch a wrong ``--uri`` before any model is loaded."""
    if re.match(r"^[a-z][a-z0-9+.-]*://", uri):
        return  # a server: checked on connection
    if not uri.endswith(".db"):
        raise CLIError(f"--uri {uri}: a Milvus Lite database is a file ending in .db, or give a server URL")
    if must_exist and not Path(uri).exists():  # Milvus Lite 3 keeps a database in a folder named *.db
        raise CLIError(f"no Milvus Lite database at {uri}: run `{PROG} ingest` first, or pass --uri")


def _connect(uri: str, *, must_exist: bool) -> MilvusClient:
    from pymilvus import MilvusClient

    _check_uri(uri, must_exist=must_exist)
    if not re.match(r"^[a-z][a-z0-9+.-]*://", uri):
        Path(uri).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    token = os.environ.get(TOKEN_ENV) or None
    try:
        return MilvusClient(uri, token=token) if token else MilvusClient(uri)
    except Exception as exc:
        message = str(getattr(exc, "message", "") or exc)
        raise CLIError(f"cannot connect to Milvus at {uri}: {message}") from exc


def _reranker_label(args: argparse.Namespace) -> str:
    return f"vLLM at {args.vllm_endpoint}" if args.vllm_endpoint else f"cross-encoder {args.reranker_model}"


def _candidate_rows(results: Sequence[Candidate], width: int) -> list[list[object]]:
    return [[c.rank, c.rerank_score, c.retrieval_rank, c.score, str(c.id), _one_line(c.text, width)] for c in results]


_CANDIDATE_HEADERS = ("rank", "rerank score", "first-stage rank", "first-stage score", "id", "text")


# ----------------------------------------------------------------------------- ingest


def _cmd_ingest(args: argparse.Namespace) -> int:
    from milvus_rerank.milvus.collection import create_rag_collection, ingest

    if args.chunk_size < 1:
        raise CLIError(f"--chunk-size must be positive, got {args.chunk_size}")
    if not 0 <= args.chunk_overlap < args.chunk_size:
        raise CLIError(f"--chunk-overlap must be at least 0 and below --chunk-size ({args.chunk_size})")
    _check_uri(args.uri, must_exist=False)
    files = collect_files(args.paths)
    documents = read_documents(files, max_chars=args.chunk_size, overlap=args.chunk_overlap)
    if not documents:
        raise CLIError("the files hold no text to ingest")
    model = demo.load_embedding_model(args.embedding_model)
    client = _connect(args.uri, must_exist=False)
    try:
        existed = client.has_collection(args.collection)
        if existed and args.recreate:
            client.drop_collection(args.collection)
            existed = False
        if existed:
            # Re-ingesting a text file replaces all its old chunks, also those past its new end.
            text_sources = sorted({source_name(f) for f in files if f.suffix.lower() in (".txt", ".md")})
            description = client.describe_collection(args.collection)
            has_source = description.get("enable_dynamic_field") or any(
                field["name"] == "source" for field in description["fields"]
            )
            if text_sources and has_source:
                client.delete(args.collection, filter=f"source in {json.dumps(text_sources)}")
        else:
            dim = len(model.encode("dimension probe"))
            create_rag_collection(client, args.collection, dim=dim)
        started = time.perf_counter()
        count = ingest(
            client,
            args.collection,
            documents,
            embedding=model,
            batch_size=args.batch_size,
            show_progress=not args.quiet,
        )
    finally:
        client.close()
    print(
        f"ingested {count} chunks from {len(files)} file{'s' if len(files) != 1 else ''} into collection "
        f"{args.collection!r} at {args.uri} in {time.perf_counter() - started:.1f} s"
    )
    return 0


# ----------------------------------------------------------------------------- query


def _cmd_query(args: argparse.Namespace) -> int:
    from milvus_rerank.milvus.retriever import MilvusRetriever
    from milvus_rerank.pipeline import RerankPipeline

    if not args.query.strip():
        raise CLIError("the query is empty")
    client = _connect(args.uri, must_exist=True)
    try:
        reranker = demo.make_reranker(args)
        embedding = demo.load_embedding_model(args.embedding_model) if args.mode != "sparse" else None
        mode = next(mode for mode in _MODES if mode == args.mode)
        retriever = MilvusRetriever(client, args.collection, mode=mode, embedding=embedding, limit=args.candidates)
        candidates = retriever.retrieve(args.query)
        results = RerankPipeline(reranker, top_n=args.top_n).rerank(args.query, candidates)
        scores = "RRF fusion scores" if mode == "hybrid" else f"{retriever.metric_type} scores"
    finally:
        client.close()
    _note(
        f"{args.mode} search of {args.collection!r} at {args.uri}: {len(candidates)} candidates (first-stage "
        f"scores are {scores}), reranked by {_reranker_label(args)}; top {args.top_n}"
    )
    if not results:
        print("no results: the collection is empty or nothing matched")
        return 0
    print(format_table(_CANDIDATE_HEADERS, _candidate_rows(results, args.width), align="rrrrll"))
    return 0


# ----------------------------------------------------------------------------- eval


def _collection_name(folder: Path, embedding_model: str) -> str:
    """One collection per dataset and embedding model, so a kept ``--db`` never mixes vectors of two models."""
    import hashlib

    name = re.sub(r"[^0-9a-zA-Z_]", "_", folder.resolve().name) or "beir"
    digest = hashlib.sha256(embedding_model.encode()).hexdigest()[:8]
    return f"{name if name[0].isalpha() else 'beir_' + name}_{digest}"


def _cmd_eval(args: argparse.Namespace) -> int:
    from milvus_rerank.evaluation import evaluate_retrieval, load_beir
    from milvus_rerank.milvus.collection import create_rag_collection, ingest

    if args.db is not None:
        _check_uri(args.db, must_exist=False)
    dataset = load_beir(args.data_dir, args.split)
    modes = [mode for mode in _MODES if args.mode in (mode, "all")]
    reranker: Reranker | None = demo.make_reranker(args) if (args.reranker_model or args.vllm_endpoint) else None
    model = demo.load_embedding_model(args.embedding_model)

    workdir = None
    uri = args.db
    if uri is None:
        workdir = tempfile.TemporaryDirectory(prefix="milvus-rerank-eval-")
        uri = os.path.join(workdir.name, "eval.db")
    collection = _collection_name(Path(args.data_dir), os.fspath(args.embedding_model))
    client = _connect(uri, must_exist=False)
    try:
        stored = 0
        if client.has_collection(collection):
            stored = int(client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"])
        if stored == len(dataset.corpus):
            _note(f"reusing collection {collection!r} at {uri} ({stored} documents)")
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
        if workdir is not None:
            workdir.cleanup()
    _note(
        f"{Path(args.data_dir).name} ({args.split}): {len(dataset.corpus)} documents, "
        f"{evaluations[0].scores.queries} queries; embedding {args.embedding_model}"
        + (f"; reranker {_reranker_label(args)}" if reranker is not None else "; no reranker")
    )
    headers = ("retrieval", "nDCG@10", "recall@100", "queries", "rerank ms/query")
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
    print(format_table(headers, rows))
    return 0


# ----------------------------------------------------------------------------- demo


def _cmd_demo(args: argparse.Namespace) -> int:
    from milvus_rerank.milvus.retriever import MilvusRetriever
    from milvus_rerank.pipeline import RerankPipeline

    questions = args.question or list(demo.DEMO_QUESTIONS)
    if any(not question.strip() for question in questions):
        raise CLIError("--question must not be empty")
    if args.db is not None:
        _check_uri(args.db, must_exist=False)
    model = demo.load_embedding_model(args.embedding_model)
    reranker = demo.make_reranker(args)
    workdir = None
    uri = args.db
    if uri is None:
        workdir = tempfile.TemporaryDirectory(prefix="milvus-rerank-demo-")
        uri = os.path.join(workdir.name, "demo.db")
    client = _connect(uri, must_exist=False)
    try:
        count = demo.ingest_corpus(client, demo.DEMO_COLLECTION, model, show_progress=not args.quiet)
        retriever = MilvusRetriever(client, demo.DEMO_COLLECTION, embedding=model, limit=args.candidates)
        pipeline = RerankPipeline(reranker, top_n=args.top_n)
        print(
            f"Lumen Ridge Observatory handbook (fictional): {count} passages in Milvus Lite collection "
            f"{demo.DEMO_COLLECTION!r}\nfirst stage: hybrid dense + BM25 (RRF), {args.candidates} candidates; "
            f"reranker: {_reranker_label(args)}; top {args.top_n}; answers: "
            + (f"LLM at {args.llm_endpoint}" if args.llm_endpoint else "extractive (no --llm-endpoint)")
        )
        for number, question in enumerate(questions, start=1):
            candidates = retriever.retrieve(question)
            results = pipeline.rerank(question, candidates)
            print(f"\nQ{number}. {question}")
            rows = [
                [
                    c.rank,
                    c.rerank_score,
                    c.retrieval_rank,
                    c.score,
                    str(c.id),
                    _one_line(f"{c.metadata.get('title', '')} ({c.metadata.get('source', '?')})", 60),
                ]
                for c in results
            ]
            headers = ("rank", "rerank score", "first-stage rank", "first-stage score", "id", "passage")
            print(format_table(headers, rows, align="rrrrll"))
            passages = [(c.text, str(c.metadata.get("source", c.id))) for c in results]
            print(demo.generate_answer(args, question, passages))
    finally:
        client.close()
        if workdir is not None:
            workdir.cleanup()
    return 0


# ----------------------------------------------------------------------------- parser


def _add_milvus_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Milvus")
    group.add_argument(
        "--uri",
        default=DEFAULT_URI,
        help=f"Milvus Lite file (*.db) or server URL such as http://localhost:19530 (default: %(default)s); "
        f"a server token is read from ${TOKEN_ENV}",
    )
    group.add_argument("--collection", default=DEFAULT_COLLECTION, help="collection name (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``milvus-rerank`` with its four subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and library logs on errors"
    )
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars on stderr"
    )

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Rerank Milvus retrieval results with cross-encoders (local or served by vLLM): ingest "
        "files, query with hybrid search + rerank, evaluate on BEIR data, or run the RAG demo.",
        parents=[common],
    )
    parser.set_defaults(debug=False, quiet=False)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    ingest = commands.add_parser(
        "ingest",
        parents=[common],
        help="ingest .txt, .md and .jsonl files or folders into a collection",
        description="Chunk files (.txt, .md split at headings, .jsonl one document per line with 'text' and "
        "'id') and upsert them into a hybrid (dense + BM25) collection, created if needed. Chunks of .txt and .md "
        "files get ids '<file>#<n>', and re-ingesting such a file replaces its old chunks.",
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (searched recursively)")
    _add_milvus_arguments(ingest)
    demo.add_model_arguments(ingest, reranker=False)
    ingest.add_argument(
        "--chunk-size",
        metavar="N",
        type=demo.positive_int,
        default=1000,
        help="longest chunk in characters (default: %(default)s)",
    )
    ingest.add_argument(
        "--chunk-overlap",
        metavar="N",
        type=demo.non_negative_int,
        default=150,
        help="characters repeated from the previous chunk (default: %(default)s)",
    )
    ingest.add_argument(
        "--batch-size",
        metavar="N",
        type=demo.positive_int,
        default=64,
        help="chunks embedded per batch (default: %(default)s)",
    )
    ingest.add_argument("--recreate", action="store_true", help="drop the collection first")
    ingest.set_defaults(handler=_cmd_ingest)

    query = commands.add_parser(
        "query",
        parents=[common],
        help="search a collection and rerank the results",
        description="Retrieve candidates (hybrid dense + BM25 by default), rerank them and print a table with "
        "both the first-stage and the rerank scores.",
    )
    query.add_argument("query", help="the query text")
    _add_milvus_arguments(query)
    demo.add_model_arguments(query)
    query.add_argument("--mode", choices=_MODES, default="hybrid", help="first-stage search (default: %(default)s)")
    query.add_argument(
        "--candidates",
        metavar="N",
        type=demo.positive_int,
        default=20,
        help="first-stage candidates reranked (default: %(default)s)",
    )
    query.add_argument(
        "--top-n", metavar="N", type=demo.positive_int, default=5, help="results shown (default: %(default)s)"
    )
    query.add_argument(
        "--width",
        metavar="N",
        type=demo.positive_int,
        default=70,
        help="characters of text shown per result (default: %(default)s)",
    )
    query.set_defaults(handler=_cmd_query)

    evaluation = commands.add_parser(
        "eval",
        parents=[common],
        help="nDCG@10 and recall@100 on a BEIR-format dataset, with an optional reranker",
        description="Ingest a BEIR-format folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) into Milvus "
        "Lite, run its queries and print nDCG@10 and recall@100, for the first stage and, with "
        "--reranker-model or --vllm-endpoint, after reranking the top --rerank-depth candidates.",
    )
    evaluation.add_argument("data_dir", metavar="DATA_DIR", help="BEIR dataset folder")
    evaluation.add_argument("--split", default="test", help="qrels split (default: %(default)s)")
    demo.add_model_arguments(evaluation, reranker_default=None)
    evaluation.add_argument(
        "--mode", choices=(*_MODES, "all"), default="hybrid", help="first-stage search (default: %(default)s)"
    )
    evaluation.add_argument(
        "--rerank-depth",
        metavar="N",
        type=demo.positive_int,
        default=100,
        help="first-stage candidates reranked per query (default: %(default)s)",
    )
    evaluation.add_argument(
        "--max-queries", metavar="N", type=demo.positive_int, default=None, help="evaluate only the first N queries"
    )
    evaluation.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help="Milvus Lite file to keep the ingested corpus in and reuse on the next run (default: a temporary file)",
    )
    evaluation.set_defaults(handler=_cmd_eval)

    run_demo = commands.add_parser(
        "demo",
        parents=[common],
        help="the RAG demo on a built-in corpus (Milvus Lite, hybrid search, rerank, answer)",
        description="Ingest the built-in corpus (a fictional observatory handbook) into Milvus Lite, then for "
        "each question: hybrid search, rerank, and answer from the best passages, with an LLM endpoint or, "
        "without one, an extractive answer that quotes them. Offline, pass local model directories with "
        "--reranker-model and --embedding-model.",
    )
    demo.add_demo_arguments(run_demo)
    run_demo.set_defaults(handler=_cmd_demo)
    return parser


def _quiet_libraries() -> None:
    """Keep library chatter (weight-loading bars, info logs) off a command's output."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("transformers", "sentence_transformers", "huggingface_hub", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``milvus-rerank`` with ``argv`` (default: the process arguments) and return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        _quiet_libraries()
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        _note(f"{PROG}: interrupted")
        return 130
    except Exception as exc:
        if args.debug:
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        known = isinstance(exc, (CLIError, OSError, ValueError, LookupError)) or type(exc).__module__.startswith(
            "milvus_rerank"
        )
        prefix = "" if known else f"{type(exc).__name__}: "
        _note(f"{PROG} {args.command}: error: {prefix}{message}")
        return 1
