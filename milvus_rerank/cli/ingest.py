"""``milvus-rerank ingest``: chunk files and upsert them into a hybrid (dense + BM25) collection."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

from milvus_rerank.chunking import SUPPORTED_SUFFIXES, read_documents, source_name
from milvus_rerank.cli.database import check_uri, open_database
from milvus_rerank.cli.errors import CLIError
from milvus_rerank.cli.models import load_embedding_model
from milvus_rerank.cli.options import add_milvus_arguments, add_model_arguments, non_negative_int, positive_int

__all__ = ["DESCRIPTION", "HELP", "add_arguments", "collect_files", "run"]

HELP = "ingest .txt, .md and .jsonl files or folders into a collection"
DESCRIPTION = (
    "Chunk files (.txt, .md split at headings, .jsonl one document per line with 'text' and 'id') and upsert them "
    "into a hybrid (dense + BM25) collection, created if needed. Chunks of .txt and .md files get ids "
    "'<file>#<n>', and re-ingesting such a file replaces its old chunks."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments to its parser."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (searched recursively)")
    add_milvus_arguments(parser)
    add_model_arguments(parser, reranker=False)
    parser.add_argument(
        "--chunk-size",
        metavar="N",
        type=positive_int,
        default=1000,
        help="longest chunk in characters (default: %(default)s)",
    )
    parser.add_argument(
        "--chunk-overlap",
        metavar="N",
        type=non_negative_int,
        default=150,
        help="characters repeated from the previous chunk (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        metavar="N",
        type=positive_int,
        default=64,
        help="chunks embedded per batch (default: %(default)s)",
    )
    parser.add_argument("--recreate", action="store_true", help="drop the collection first")


def collect_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and folders into the list of files to ingest.

    Folders are searched recursively for :data:`~milvus_rerank.chunking.SUPPORTED_SUFFIXES`,
    skipping hidden files and folders; a file named explicitly must have a supported suffix.

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


def run(args: argparse.Namespace) -> int:
    """Run the command; return its exit status."""
    from milvus_rerank.milvus import create_rag_collection, ingest

    if not 0 <= args.chunk_overlap < args.chunk_size:
        raise CLIError(f"--chunk-overlap must be at least 0 and below --chunk-size ({args.chunk_size})")
    check_uri(args.uri, must_exist=False)
    files = collect_files(args.paths)
    chunks = read_documents(files, max_chars=args.chunk_size, overlap=args.chunk_overlap)
    if not chunks:
        raise CLIError("the files hold no text to ingest")
    model = load_embedding_model(args.embedding_model)
    client = open_database(args.uri, must_exist=False)
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
            create_rag_collection(client, args.collection, dim=len(model.encode("dimension probe")))
        started = time.perf_counter()
        count = ingest(
            client, args.collection, chunks, embedding=model, batch_size=args.batch_size, show_progress=not args.quiet
        )
    finally:
        client.close()
    print(
        f"ingested {count} chunks from {len(files)} file{'s' if len(files) != 1 else ''} into collection "
        f"{args.collection!r} at {args.uri} in {time.perf_counter() - started:.1f} s"
    )
    return 0
