"""``milvus-rerank ingest``: chunk files and upsert them into a hybrid (dense + BM25) collection.

A text file's chunk ids are ``<source>#<n>``, where the source is the file's path relative to the
folder named on the command line (or to ``--root``), never to the current directory. Each chunk
also records the file's resolved path (its ``file`` field): a file is the same file whatever
name it was ingested under, and re-ingesting it, by itself or within a folder, replaces all its
old chunks. Files that cannot be ingested (an unsupported type, text not in ``--encoding``,
malformed JSON Lines, no text at all) are skipped and listed, and the command fails only with
``--strict``; everything is read and checked before a model is loaded.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from milvus_rerank.chunking import SUPPORTED_SUFFIXES, Chunk, read_file, source_name
from milvus_rerank.cli.database import check_uri, open_database
from milvus_rerank.cli.errors import CLIError, error_line
from milvus_rerank.cli.models import check_models, load_embedding_model
from milvus_rerank.cli.options import add_milvus_arguments, add_model_arguments, non_negative_int, positive_int
from milvus_rerank.cli.output import counted, note

if TYPE_CHECKING:
    from pymilvus import MilvusClient

__all__ = ["DESCRIPTION", "HELP", "FileSelection", "IngestFile", "SkippedFile", "add_arguments", "collect_files", "run"]

HELP = "ingest .txt, .md and .jsonl files or folders into a collection"
DESCRIPTION = (
    "Chunk files (.txt, .md split at headings, .jsonl one document per line with 'text' and 'id') and upsert them "
    "into a hybrid (dense + BM25) collection, created if needed. Chunks of .txt and .md files get ids "
    "'<source>#<n>', where <source> is the file's path relative to the folder given (a file given by name: its "
    "name), or to --root. Each chunk also records the file's resolved path, so re-ingesting a file, by its name "
    "or within its folder, replaces all its old chunks. Files that cannot be read, and empty ones, are skipped "
    "and listed on stderr (--strict: an error, and nothing is ingested)."
)

_KINDS = ", ".join(SUPPORTED_SUFFIXES)
MAX_TEXT_LENGTH = 65_535
"""The longest VARCHAR Milvus stores, and the text field's limit in the collections ingest creates."""


@dataclass(frozen=True)
class IngestFile:
    """A file to ingest.

    Attributes:
        path: The file, as found.
        source: Its ``source`` metadata, the stem of its chunk ids.
    """

    path: Path
    source: str


@dataclass(frozen=True)
class SkippedFile:
    """A file left out, and why.

    Attributes:
        path: The file, as found.
        reason: What is wrong with it, in a few words (``not UTF-8 text``).
    """

    path: Path
    reason: str


@dataclass(frozen=True)
class FileSelection:
    """What :func:`collect_files` found: the files to ingest and the ones of an unsupported type."""

    files: tuple[IngestFile, ...]
    skipped: tuple[SkippedFile, ...]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments to its parser."""
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or folders (searched recursively)")
    add_milvus_arguments(parser)
    add_model_arguments(parser, reranker=False)
    parser.add_argument(
        "--root",
        metavar="DIR",
        default=None,
        help="make every file's source (and chunk ids) its path relative to DIR (default: relative to the "
        "folder given, or the file's name for a file given by name)",
    )
    parser.add_argument(
        "--encoding",
        metavar="NAME",
        default="utf-8",
        help="text encoding of the files, e.g. latin-1 (default: %(default)s)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="fail, ingesting nothing, when any file cannot be ingested"
    )
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


def collect_files(
    paths: Iterable[str | os.PathLike[str]], *, root: str | os.PathLike[str] | None = None
) -> FileSelection:
    """Expand files and folders into the files to ingest, each with its source.

    Folders are searched recursively, skipping hidden files and folders. A file's source is its
    path relative to ``root`` when given, else relative to the folder it was found in (a file
    named itself: its name). Files of a type other than
    :data:`~milvus_rerank.chunking.SUPPORTED_SUFFIXES` are returned as skipped.

    Raises:
        CLIError: A path does not exist, a file is outside ``root``, or two files would get the
            same source (and so the same chunk ids).
    """
    found: dict[Path, IngestFile] = {}
    skipped: dict[Path, SkippedFile] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            candidates = sorted(
                candidate
                for candidate in path.rglob("*")
                if candidate.is_file() and not any(part.startswith(".") for part in candidate.relative_to(path).parts)
            )
            base = path
        elif path.is_file():
            candidates, base = [path], path.parent
        else:
            raise CLIError(f"{path}: no such file or folder")
        for candidate in candidates:
            key = candidate.resolve()
            if key in found or key in skipped:
                continue
            if candidate.suffix.lower() not in SUPPORTED_SUFFIXES:
                skipped[key] = SkippedFile(candidate, f"unsupported file type (ingest reads {_KINDS})")
                continue
            try:
                source = source_name(candidate, root=root if root is not None else base)
            except ValueError as exc:
                raise CLIError(f"{exc}: --root must hold every file to ingest") from None
            found[key] = IngestFile(candidate, source)
    _check_unique_sources(found.values())
    return FileSelection(tuple(found.values()), tuple(skipped.values()))


def _check_unique_sources(files: Iterable[IngestFile]) -> None:
    owners: dict[str, Path] = {}
    for file in files:
        other = owners.setdefault(file.source, file.path)
        if other != file.path:
            raise CLIError(
                f"{other} and {file.path} would both get the source {file.source!r} (and the same chunk ids): "
                "pass --root with a folder that holds both, or ingest them into different collections"
            )


def _read_chunks(
    files: Sequence[IngestFile], *, max_chars: int, overlap: int, encoding: str
) -> tuple[list[tuple[IngestFile, list[Chunk]]], list[SkippedFile]]:
    """Read each file into chunks, each recording the file's resolved path (``file``).

    A file that cannot be read, or holds no text, is skipped with the reason, not fatal.
    """
    read: list[tuple[IngestFile, list[Chunk]]] = []
    skipped: list[SkippedFile] = []
    for file in files:
        try:
            chunks = read_file(file.path, source=file.source, max_chars=max_chars, overlap=overlap, encoding=encoding)
        except (ValueError, OSError) as exc:
            # The library's messages start with the file's name ("a.txt: not UTF-8 text", "b.jsonl, line 3: ...").
            reason = error_line(exc).removeprefix(str(file.path)).removeprefix(":").removeprefix(",").strip()
            if reason.startswith("not ") and reason.endswith(" text"):
                reason += " (pass its encoding with --encoding, e.g. --encoding latin-1)"
            skipped.append(SkippedFile(file.path, reason))
            continue
        if not chunks:
            skipped.append(SkippedFile(file.path, "no text (an empty file)"))
            continue
        path = str(file.path.resolve())
        read.append((file, [Chunk(c.id, c.text, {**c.metadata, "file": path}) for c in chunks]))
    return read, skipped


def _report_skipped(skipped: Sequence[SkippedFile], total: int, *, strict: bool) -> None:
    for file in skipped:
        note(f"{'cannot ingest' if strict else 'skipped'} {file.path}: {file.reason}")
    if skipped and not strict:
        note(f"skipped {len(skipped)} of {counted(total, 'file')}; --strict makes that an error")


def _drop_stale_chunks(client: MilvusClient, collection: str, read: Sequence[tuple[IngestFile, list[Chunk]]]) -> None:
    """Delete the old chunks of re-ingested text files that the upsert did not replace.

    Those are the chunks past a file's new end, and those it got under another source (ingested
    before by another name or from another folder); a file is known by its resolved path. Run
    after the upsert, so that a failed ingest leaves the old chunks in place.
    """
    description = client.describe_collection(collection)
    fields = description["fields"]
    if not (description.get("enable_dynamic_field") or any(field["name"] == "file" for field in fields)):
        return
    primary = next(field["name"] for field in fields if field.get("is_primary"))
    text_files = [
        (str(file.path.resolve()), [chunk.id for chunk in chunks])
        for file, chunks in read
        if file.path.suffix.lower() in (".txt", ".md")
    ]
    batch: list[tuple[str, list[str]]] = []
    for position, entry in enumerate(text_files, start=1):
        batch.append(entry)
        # Expressions of a few hundred ids: Milvus parses each filter whole.
        if position == len(text_files) or sum(len(ids) for _, ids in batch) >= 500:
            paths = json.dumps([path for path, _ in batch])
            kept = json.dumps([chunk_id for _, ids in batch for chunk_id in ids])
            client.delete(collection, filter=f"file in {paths} and {primary} not in {kept}")
            batch = []


def run(args: argparse.Namespace) -> int:
    """Run the command; return its exit status."""
    from milvus_rerank.milvus import create_rag_collection, ingest

    if args.chunk_size > MAX_TEXT_LENGTH:
        raise CLIError(
            f"--chunk-size {args.chunk_size}: a Milvus text field holds at most {MAX_TEXT_LENGTH} characters"
        )
    if not 0 <= args.chunk_overlap < args.chunk_size:
        raise CLIError(f"--chunk-overlap must be at least 0 and below --chunk-size ({args.chunk_size})")
    if args.root is not None and not Path(args.root).is_dir():
        raise CLIError(f"--root {args.root}: no such folder")
    check_uri(args.uri, must_exist=False)
    selection = collect_files(args.paths, root=args.root)
    try:
        codecs.lookup(args.encoding)
    except LookupError:
        raise CLIError(f"--encoding {args.encoding}: not an encoding Python knows (e.g. utf-8, latin-1)") from None
    read, unreadable = _read_chunks(
        selection.files, max_chars=args.chunk_size, overlap=args.chunk_overlap, encoding=args.encoding
    )
    skipped = sorted([*selection.skipped, *unreadable], key=lambda file: file.path)
    _report_skipped(skipped, len(selection.files) + len(selection.skipped), strict=args.strict)
    if skipped and args.strict:
        raise CLIError(f"{counted(len(skipped), 'file')} cannot be ingested (--strict): nothing was ingested")
    chunks = [chunk for _, file_chunks in read for chunk in file_chunks]
    if not chunks:
        if skipped:
            raise CLIError(f"nothing to ingest: {counted(len(skipped), 'file')} skipped (listed above), none left")
        raise CLIError(f"no {_KINDS} file to ingest in {' '.join(map(str, args.paths))}")
    client = open_database(args.uri, must_exist=False)
    try:
        check_models(args, reranker=False)
        model = load_embedding_model(args.embedding_model)
        existed = client.has_collection(args.collection)
        if existed and args.recreate:
            client.drop_collection(args.collection)
            existed = False
        if not existed:
            create_rag_collection(client, args.collection, dim=len(model.encode("dimension probe")))
        started = time.perf_counter()
        try:
            count = ingest(
                client,
                args.collection,
                chunks,
                embedding=model,
                batch_size=args.batch_size,
                show_progress=not args.quiet,
            )
        except BaseException:
            if not existed:  # a collection made for this run is not left half filled
                client.drop_collection(args.collection)
            raise
        if existed:
            _drop_stale_chunks(client, args.collection, read)
    finally:
        client.close()
    print(
        f"ingested {counted(count, 'chunk')} from {counted(len(read), 'file')} into collection "
        f"{args.collection!r} at {args.uri} in {time.perf_counter() - started:.1f} s"
        + (f"; skipped {counted(len(skipped), 'file')} (listed on stderr)" if skipped else "")
    )
    return 0
