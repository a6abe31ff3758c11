"""Chunking: plain text, Markdown sections, JSON Lines and whole files into Chunk values, and Chunks into Milvus."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import letter_counts

from milvus_rerank.chunking import (
    Chunk,
    chunk_text,
    markdown_sections,
    read_documents,
    read_file,
    read_jsonl_documents,
    source_name,
)
from milvus_rerank.cli.corpus import load_corpus
from milvus_rerank.milvus.collection import create_rag_collection, ingest

# ----------------------------------------------------------------------------- plain text


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if s]


def test_chunk_text_respects_the_size_and_keeps_every_sentence() -> None:
    text = "\n\n".join(doc.text for doc in load_corpus()[:12])
    chunks = chunk_text(text, max_chars=400, overlap=150)
    assert len(chunks) > 5
    assert all(0 < len(chunk) <= 400 for chunk in chunks)
    joined = " ".join(" ".join(chunk.split()) for chunk in chunks)
    for sentence in _sentences(text):
        assert sentence in joined
    # Sentences appear in their original order across the chunks.
    positions = [joined.find(sentence) for sentence in _sentences(text)]
    assert positions == sorted(positions)


def test_chunk_text_overlaps_whole_sentences_within_the_budget() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(40))
    chunks = chunk_text(text, max_chars=200, overlap=60)
    for previous, chunk in itertools.pairwise(chunks):
        first = _sentences(chunk)[0]
        assert first in previous  # the chunk starts with the end of the previous one
        assert len(" ".join(s for s in _sentences(chunk) if s in previous)) <= 60
    assert chunk_text(text, max_chars=200, overlap=0)[1].startswith("Sentence number")
    no_overlap = chunk_text(text, max_chars=200, overlap=0)
    assert sum(len(_sentences(c)) for c in no_overlap) == 40


def test_chunk_text_short_and_blank_and_huge_words() -> None:
    assert chunk_text("One short paragraph.") == ["One short paragraph."]
    assert chunk_text("  \n\n  ") == []
    long_word = "x" * 250
    assert chunk_text(long_word, max_chars=100, overlap=10) == ["x" * 100, "x" * 100, "x" * 50]


@pytest.mark.parametrize(("max_chars", "overlap"), [(0, 0), (100, 100), (100, -1)])
def test_chunk_text_refuses_bad_sizes(max_chars: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        chunk_text("text", max_chars=max_chars, overlap=overlap)


@pytest.mark.parametrize("options", [{"max_chars": 100.0}, {"overlap": True}, {"max_chars": "100"}])
def test_chunk_text_refuses_sizes_that_are_not_ints(options: dict[str, object]) -> None:
    with pytest.raises(TypeError, match="must be"):
        chunk_text("text", **options)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- Markdown


def test_markdown_headings_without_text_join_the_next_section() -> None:
    text = "# Guide\n\n## Wind\nThe dome closes above 15 m/s.\n## Empty\n### Humidity\nStop above 85 per cent.\n# Tail"
    assert markdown_sections(text) == [
        ("Wind", "# Guide\n\n## Wind\nThe dome closes above 15 m/s."),
        ("Humidity", "## Empty\n### Humidity\nStop above 85 per cent."),
        (None, "# Tail"),
    ]


# ----------------------------------------------------------------------------- JSON Lines


def test_read_jsonl_documents_accepts_beir_ids_and_keeps_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text(
        '{"_id": 7, "title": "T", "text": "first text"}\n\n{"id": "b", "text": "second", "lang": "en"}\n',
        encoding="utf-8",
    )
    docs = read_jsonl_documents(path)
    assert docs == [
        Chunk("7", "first text", {"title": "T"}),
        Chunk("b", "second", {"lang": "en"}),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "a", "text": "x"}\nnot json\n', "line 2: not valid JSON"),
        ('["a", "b"]\n', "line 1: expected a JSON object"),
        ('{"text": "no id"}\n', "line 1: needs an 'id'"),
        ('{"id": "a", "text": "  "}\n', "line 1: needs a non-empty string 'text'"),
        ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "line 2: id 'a' appears twice"),
    ],
)
def test_read_jsonl_documents_names_the_bad_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        read_jsonl_documents(path)
    assert str(path) in str(info.value)


# ----------------------------------------------------------------------------- files


def test_read_documents_markdown_sections_text_and_jsonl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("guide.md").write_text(
        "Intro line.\n\n# Setup\n\nInstall it.\n\n```\n# not a heading\n```\n\n## Use\n\nRun it.\n", encoding="utf-8"
    )
    Path("notes.txt").write_text("Plain notes.", encoding="utf-8")
    long_text = " ".join(f"Fact {i} is stated here." for i in range(30))
    Path("docs.jsonl").write_text(
        json.dumps({"id": "short", "text": "Brief.", "lang": "en"})
        + "\n"
        + json.dumps({"_id": 9, "text": long_text, "source": "wiki"})
        + "\n",
        encoding="utf-8",
    )
    docs = read_documents([Path("guide.md"), Path("notes.txt"), Path("docs.jsonl")], max_chars=300, overlap=0)
    by_id = {doc.id: doc for doc in docs}
    assert by_id["guide.md#0"].text == "Intro line."
    assert "section" not in by_id["guide.md#0"].metadata
    assert by_id["guide.md#1"].metadata == {"source": "guide.md", "chunk": 1, "section": "Setup"}
    assert "# not a heading" in by_id["guide.md#1"].text
    assert by_id["guide.md#2"].metadata["section"] == "Use"
    assert by_id["notes.txt#0"].text == "Plain notes."
    assert by_id["short"].metadata == {"source": "docs.jsonl", "lang": "en", "chunk": 0}
    pieces = [doc for doc in docs if doc.id.startswith("9#")]
    assert len(pieces) > 1
    assert all(doc.metadata["source"] == "wiki" for doc in pieces)
    assert " ".join(doc.text for doc in pieces) == long_text


def test_read_documents_reports_bad_files(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"id": "a"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 1: needs a non-empty string 'text'"):
        read_documents([tmp_path / "bad.jsonl"])
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8 text"):
        read_documents([tmp_path / "latin1.txt"])


def test_sources_are_relative_to_the_root_not_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = tmp_path / "kb" / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "sub" / "a.txt").write_text("Alpha.", encoding="utf-8")
    ids = []
    for cwd in (tmp_path, notes, tmp_path / "kb"):
        monkeypatch.chdir(cwd)
        ids.append([chunk.id for chunk in read_documents([notes / "sub" / "a.txt"], root=notes)])
    assert ids == [["sub/a.txt#0"]] * 3
    assert source_name(notes / "sub" / "a.txt", root=notes / "sub") == "a.txt"
    monkeypatch.chdir(tmp_path)
    assert source_name(Path("kb/notes/sub/a.txt")) == "kb/notes/sub/a.txt"  # no root: the current directory
    with pytest.raises(ValueError, match="is not inside the root folder"):
        read_documents([notes / "sub" / "a.txt"], root=tmp_path / "elsewhere")


def test_read_file_takes_the_source_it_is_given(tmp_path: Path) -> None:
    (tmp_path / "guide.md").write_text("# Wind\n\nThe dome closes above 15 m/s.\n", encoding="utf-8")
    chunks = read_file(tmp_path / "guide.md", source="manuals/guide.md")
    assert chunks == [
        Chunk(
            "manuals/guide.md#0",
            "# Wind\n\nThe dome closes above 15 m/s.",
            {"source": "manuals/guide.md", "chunk": 0, "section": "Wind"},
        )
    ]
    (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
    assert read_file(tmp_path / "empty.txt", source="empty.txt") == []
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'latin1.txt'}: not UTF-8 text")):
        read_file(tmp_path / "latin1.txt", source="latin1.txt")


# ----------------------------------------------------------------------------- into Milvus


def test_chunks_are_what_ingest_takes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pymilvus import MilvusClient

    monkeypatch.chdir(tmp_path)
    Path("guide.md").write_text(
        "# Wind\n\nThe dome closes above 15 m/s.\n\n# Dew\n\nStop at 85 per cent.\n", encoding="utf-8"
    )
    Path("extra.jsonl").write_text(
        json.dumps({"id": "faq-1", "text": "Breakfast is at seven.", "lang": "en"}) + "\n", encoding="utf-8"
    )
    chunks = read_documents([Path("guide.md"), Path("extra.jsonl")])
    client = MilvusClient(str(tmp_path / "chunks.db"))
    try:
        create_rag_collection(client, "docs", dim=8)
        assert ingest(client, "docs", chunks, embedding=letter_counts, show_progress=False) == 3
        rows: list[dict[str, Any]] = client.query(
            "docs", filter='source == "guide.md"', output_fields=["text", "section", "chunk"]
        )
        faq = client.get("docs", ids=["faq-1"], output_fields=["text", "lang", "source", "chunk"])
    finally:
        client.close()
    # The metadata of each chunk became filterable fields, under the chunk's own id.
    assert sorted((row["id"], row["section"], row["chunk"], row["text"]) for row in rows) == [
        ("guide.md#0", "Wind", 0, "# Wind\n\nThe dome closes above 15 m/s."),
        ("guide.md#1", "Dew", 1, "# Dew\n\nStop at 85 per cent."),
    ]
    assert [(row["text"], row["lang"], row["source"], row["chunk"]) for row in faq] == [
        ("Breakfast is at seven.", "en", "extra.jsonl", 0)
    ]
