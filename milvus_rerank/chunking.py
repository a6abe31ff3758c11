"""Text into chunks ready to ingest: plain text, Markdown and JSON Lines files.

A :class:`Chunk` is what :func:`milvus_rerank.milvus.collection.ingest` takes: an id (the Milvus
primary key), the text that is embedded, indexed for BM25 and reranked, and metadata that becomes
filterable fields. :func:`chunk_text` cuts a text along its own structure (paragraphs, then
sentences, then spaces) with an overlap of whole sentences; :func:`markdown_sections` splits
Markdown at its headings first; :func:`read_jsonl_documents` reads one record per line;
:func:`read_file` applies the right one to a file and :func:`read_documents` to several, with
sources (and so chunk ids) relative to a root folder you choose.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from milvus_rerank.validation import check_int

__all__ = [
    "SUPPORTED_SUFFIXES",
    "Chunk",
    "chunk_text",
    "json_lines",
    "markdown_sections",
    "read_documents",
    "read_file",
    "read_jsonl_documents",
    "source_name",
]

SUPPORTED_SUFFIXES = (".txt", ".md", ".jsonl")
"""File kinds :func:`read_documents` knows: ``.txt`` and ``.md`` are chunked text, ``.jsonl`` one record a line."""

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")


@dataclass(frozen=True)
class Chunk:
    """One piece of text to ingest.

    Attributes:
        id: Unique id, used as the Milvus primary key.
        text: The text (what is embedded, indexed for BM25 and reranked).
        metadata: Other fields, stored beside the text (e.g. ``source``, ``section``, ``chunk``).
    """

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- plain text


Unit = tuple[int, str]
"""A piece of text to pack into chunks, with the number of the paragraph it comes from."""


def _split_long(unit: str, max_chars: int) -> list[str]:
    """Split a paragraph longer than ``max_chars`` at sentence ends, then at spaces."""
    if len(unit) <= max_chars:
        return [unit]
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(unit):
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", 0, max_chars + 1)
            cut = cut if cut > 0 else max_chars
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            pieces.append(sentence)
    return pieces


def _join(units: Sequence[Unit]) -> str:
    """Pieces of one paragraph are joined by a space, paragraphs by a blank line."""
    parts: list[str] = []
    for position, (paragraph, text) in enumerate(units):
        if position:
            parts.append(" " if units[position - 1][0] == paragraph else "\n\n")
        parts.append(text)
    return "".join(parts)


def _overlap_tail(current: list[Unit], unit: Unit, *, overlap: int, max_chars: int) -> list[Unit]:
    """The end of a finished chunk to repeat before ``unit``: whole pieces, else the last piece's last sentences."""

    def fits(tail: list[Unit]) -> bool:
        return len(_join(tail)) <= overlap and len(_join([*tail, unit])) <= max_chars

    tail: list[Unit] = []
    for previous in reversed(current):
        if not fits([previous, *tail]):
            break
        tail = [previous, *tail]
    if tail:
        return tail
    paragraph, last = current[-1]
    sentences = _SENTENCE_END.split(last)
    kept: list[str] = []
    for sentence in reversed(sentences[1:]):  # never the whole piece: it did not fit
        if not fits([(paragraph, " ".join([sentence, *kept]))]):
            break
        kept = [sentence, *kept]
    return [(paragraph, " ".join(kept))] if kept else []


def _check_sizes(max_chars: int, overlap: int) -> None:
    check_int(max_chars, "max_chars")
    check_int(overlap, "overlap", minimum=0, maximum=max_chars - 1)


def chunk_text(text: str, *, max_chars: int = 1000, overlap: int = 150) -> list[str]:
    """Cut a text into chunks of at most ``max_chars`` characters along its own structure.

    Paragraphs (separated by blank lines) are packed together while they fit; a longer paragraph
    is cut at sentence ends, and a longer sentence at spaces. Each chunk after the first starts
    with the last whole sentences or paragraphs of the previous one, up to ``overlap``
    characters, so that a fact cut at a boundary is still whole in one chunk.

    Args:
        text: The text.
        max_chars: Longest chunk, in characters (about 200 tokens for 1000 characters of
            English: within all-MiniLM-L6-v2's 256-token window and a cross-encoder's 512).
        overlap: Most characters repeated from the end of the previous chunk.

    Returns:
        The chunks, in order; none for a blank text.

    Raises:
        TypeError: ``max_chars`` or ``overlap`` is not an int.
        ValueError: ``max_chars`` is not positive, or ``overlap`` is negative or not below ``max_chars``.
    """
    _check_sizes(max_chars, overlap)
    paragraphs = [paragraph.strip() for paragraph in re.split(r"\n[ \t]*\n", text) if paragraph.strip()]
    units = [
        (number, piece) for number, paragraph in enumerate(paragraphs) for piece in _split_long(paragraph, max_chars)
    ]
    chunks: list[str] = []
    current: list[Unit] = []
    fresh = 0  # units of `current` that no chunk holds yet
    for unit in units:
        if current and len(_join([*current, unit])) > max_chars:
            chunks.append(_join(current))
            current, fresh = _overlap_tail(current, unit, overlap=overlap, max_chars=max_chars), 0
        current.append(unit)
        fresh += 1
    if fresh:
        chunks.append(_join(current))
    return chunks


# ----------------------------------------------------------------------------- Markdown


def markdown_sections(text: str) -> list[tuple[str | None, str]]:
    """Split Markdown at its ATX headings (``#`` to ``######``, outside code fences).

    A heading with no text of its own (``# Guide`` right above ``## Install``) joins the next
    section instead of becoming a section alone.

    Args:
        text: The Markdown source.

    Returns:
        ``(heading, body)`` pairs in order; ``body`` starts with the heading lines. Text before
        the first heading, and headings left at the end with no text, have the heading ``None``.
    """
    sections: list[tuple[str | None, list[str]]] = [(None, [])]
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        heading = None if fenced else _HEADING.match(line)
        if heading:
            sections.append((heading.group(1), [line]))
        else:
            sections[-1][1].append(line)
    merged: list[tuple[str | None, str]] = []
    pending: list[str] = []  # headings with no text of their own
    for title, lines in sections:
        body = "\n".join(lines[1:] if title is not None else lines)
        if not body.strip():
            pending += lines if title is not None else []
            continue
        merged.append((title, "\n".join(pending + lines)))
        pending = []
    if pending:
        merged.append((None, "\n".join(pending)))
    return merged


# ----------------------------------------------------------------------------- JSON Lines


def json_lines(lines: Iterable[str], name: str) -> Iterator[tuple[int, Any]]:
    """Parse JSON Lines: yield ``(line number, value)`` for each line that is not blank.

    Args:
        lines: The lines (an open text file works).
        name: What to call the source in an error message (a file name).

    Raises:
        ValueError: A line is not valid JSON; the message names ``name`` and the line.
    """
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name}, line {number}: not valid JSON ({exc.msg})") from None


def read_jsonl_documents(path: str | os.PathLike[str], *, encoding: str = "utf-8") -> list[Chunk]:
    """Read documents from a JSON Lines file, one object per line, as they are (not chunked).

    Each object needs a non-empty string ``text`` and an id under ``id`` or ``_id`` (BEIR's
    spelling; a number is turned into a string). Every other key goes into ``metadata``. Blank
    lines are skipped.

    Args:
        path: The ``.jsonl`` file.
        encoding: Its text encoding.

    Returns:
        The documents in file order.

    Raises:
        OSError: The file cannot be read.
        ValueError: A line is not a JSON object, lacks ``text`` or an id, or repeats an id; the
            message names the file and the line.
    """
    name = os.fspath(path)
    documents: list[Chunk] = []
    seen: set[str] = set()
    with Path(path).open(encoding=encoding) as handle:
        for number, record in json_lines(handle, name):
            if not isinstance(record, dict):
                raise ValueError(f"{name}, line {number}: expected a JSON object, got {type(record).__name__}")
            raw_id = record.pop("id", record.pop("_id", None))
            if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or str(raw_id) == "":
                raise ValueError(
                    f"{name}, line {number}: needs an 'id' (or '_id') that is a non-empty string or an int"
                )
            text = record.pop("text", None)
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{name}, line {number}: needs a non-empty string 'text'")
            doc_id = str(raw_id)
            if doc_id in seen:
                raise ValueError(f"{name}, line {number}: id {doc_id!r} appears twice; ids must be unique")
            seen.add(doc_id)
            documents.append(Chunk(id=doc_id, text=text, metadata=record))
    return documents


# ----------------------------------------------------------------------------- files


def source_name(path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None) -> str:
    """The ``source`` recorded for a file: its path relative to ``root``, with ``/`` separators.

    A file's chunk ids are built from its source (``<source>#<n>``), so the same file keeps the
    same ids only when it is named relative to the same root: pass the folder you ingest from.

    Args:
        path: The file.
        root: The folder sources are relative to; ``None`` means the current directory (a
            file outside it then gets its absolute path).

    Raises:
        ValueError: ``root`` is given and ``path`` is not inside it.
    """
    resolved = Path(path).resolve()
    base = Path(root if root is not None else Path.cwd()).resolve()
    try:
        return resolved.relative_to(base).as_posix()
    except ValueError:
        if root is not None:
            raise ValueError(f"{path} is not inside the root folder {root}") from None
        return resolved.as_posix()


def read_file(
    path: str | os.PathLike[str], *, source: str, max_chars: int = 1000, overlap: int = 150, encoding: str = "utf-8"
) -> list[Chunk]:
    """Read one file into chunks ready to ingest (the rules of :func:`read_documents`).

    Args:
        path: The file (``.jsonl``, ``.md``, anything else is read as plain text).
        source: Its ``source`` metadata and the stem of its chunk ids (see :func:`source_name`).
        max_chars: Longest chunk, in characters (see :func:`chunk_text`).
        overlap: Most characters repeated from the previous chunk.
        encoding: The file's text encoding (``latin-1`` for a Latin-1 corpus).

    Returns:
        The file's chunks, in order; none for a file without text.

    Raises:
        OSError: The file cannot be read.
        TypeError: ``max_chars`` or ``overlap`` is not an int.
        ValueError: The file is not text in ``encoding`` or a JSONL line is malformed (the message
            names the file), or ``max_chars`` / ``overlap`` is out of range.
        LookupError: ``encoding`` is not an encoding Python knows.
    """
    _check_sizes(max_chars, overlap)
    path = Path(path)
    suffix = path.suffix.lower()
    chunks: list[Chunk] = []
    try:
        if suffix == ".jsonl":
            for record in read_jsonl_documents(path, encoding=encoding):
                pieces = chunk_text(record.text, max_chars=max_chars, overlap=overlap)
                for number, piece in enumerate(pieces):
                    metadata = {"source": source, **record.metadata, "chunk": number}
                    chunk_id = record.id if len(pieces) == 1 else f"{record.id}#{number}"
                    chunks.append(Chunk(chunk_id, piece, metadata))
            return chunks
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError:
        what = "UTF-8" if codecs.lookup(encoding).name == "utf-8" else encoding
        raise ValueError(f"{path}: not {what} text") from None
    sections = markdown_sections(text) if suffix == ".md" else [(None, text)]
    number = 0
    for heading, body in sections:
        for piece in chunk_text(body, max_chars=max_chars, overlap=overlap):
            fields: dict[str, Any] = {"source": source, "chunk": number}
            if heading is not None:
                fields["section"] = heading
            chunks.append(Chunk(f"{source}#{number}", piece, fields))
            number += 1
    return chunks


def read_documents(
    files: Iterable[str | os.PathLike[str]],
    *,
    root: str | os.PathLike[str] | None = None,
    max_chars: int = 1000,
    overlap: int = 150,
) -> list[Chunk]:
    """Read files into chunks ready to ingest.

    - ``.jsonl``: one document per line (see :func:`read_jsonl_documents`); a long text is
      chunked and its chunks get ids ``<id>#<n>``.
    - ``.md``: split at headings first (:func:`markdown_sections`), then chunked; each chunk
      records its ``section``. Ids ``<source>#<n>``.
    - anything else (``.txt``): chunked with :func:`chunk_text`; ids ``<source>#<n>``.

    Every chunk has ``source`` metadata (the file's path relative to ``root``, see
    :func:`source_name`; a JSONL record's own ``source`` wins) and its ``chunk`` number within
    the file or record. To read files one at a time (e.g. to skip a bad one), use :func:`read_file`.

    Args:
        files: The files, read in this order.
        root: The folder sources (and so chunk ids) are relative to; ``None`` means the current
            directory. Pass the folder you ingest from, so that re-reading a file from elsewhere
            gives the same ids.
        max_chars: Longest chunk, in characters (see :func:`chunk_text`).
        overlap: Most characters repeated from the previous chunk.

    Returns:
        The chunks, file by file.

    Raises:
        OSError: A file cannot be read.
        TypeError: ``max_chars`` or ``overlap`` is not an int.
        ValueError: A file is not UTF-8 text or a JSONL line is malformed (the message names the
            file), a file is outside ``root``, or ``max_chars`` / ``overlap`` is out of range.
    """
    _check_sizes(max_chars, overlap)
    chunks: list[Chunk] = []
    for path in files:
        chunks += read_file(path, source=source_name(path, root=root), max_chars=max_chars, overlap=overlap)
    return chunks
