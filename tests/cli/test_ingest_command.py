"""milvus-rerank ingest, run for real: file discovery, Milvus Lite in temp dirs, the real all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import EMBEDDING, run_cli, run_command

from milvus_rerank.cli.errors import CLIError
from milvus_rerank.cli.ingest import IngestFile, SkippedFile, collect_files

_READ_ROWS = """
import json, sys
from pymilvus import MilvusClient
client = MilvusClient(sys.argv[1])
client.load_collection(sys.argv[2])  # a database reopened by another process starts with it released
rows = client.query(sys.argv[2], filter="", output_fields=["text", "source"])
print(json.dumps(sorted([row["id"], row["text"], row["source"]] for row in rows)))
"""


def _rows(db: Path, collection: str = "documents") -> list[tuple[str, str, str]]:
    """The collection's rows, read in another process: pymilvus keeps a Milvus Lite file locked until exit."""
    done = subprocess.run(
        [sys.executable, "-c", _READ_ROWS, str(db), collection], capture_output=True, text=True, check=True
    )
    return [tuple(row) for row in json.loads(done.stdout)]


def _rows_in_process(db: Path) -> tuple[list[tuple[str, str, str]], list[str]]:
    """The rows of 'documents' and the collections, read in this process (after in-process ingests)."""
    from pymilvus import MilvusClient

    client = MilvusClient(str(db))
    try:
        rows = client.query("documents", filter="", output_fields=["text", "source"])
        return sorted((row["id"], row["text"], row["source"]) for row in rows), sorted(client.list_collections())
    finally:
        client.close()


def test_collect_files_walks_folders_skips_hidden_and_reports_other_types(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n\ntext", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("text", encoding="utf-8")
    (tmp_path / "sub" / "c.jsonl").write_text('{"id": 1, "text": "x"}\n', encoding="utf-8")
    (tmp_path / "sub" / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD.txt").write_text("ref", encoding="utf-8")
    selection = collect_files([tmp_path, tmp_path / "a.md"])
    assert selection.files == (
        IngestFile(tmp_path / "a.md", "a.md"),
        IngestFile(tmp_path / "sub" / "b.txt", "sub/b.txt"),
        IngestFile(tmp_path / "sub" / "c.jsonl", "sub/c.jsonl"),
    )
    assert selection.skipped == (
        SkippedFile(tmp_path / "sub" / "image.png", "unsupported file type (ingest reads .txt, .md, .jsonl)"),
    )
    # A file named by itself is sourced by its name; --root makes every source relative to one folder.
    assert collect_files([tmp_path / "sub" / "b.txt"]).files == (IngestFile(tmp_path / "sub" / "b.txt", "b.txt"),)
    rooted = collect_files([tmp_path / "sub" / "b.txt"], root=tmp_path)
    assert rooted.files == (IngestFile(tmp_path / "sub" / "b.txt", "sub/b.txt"),)


def test_collect_files_errors(tmp_path: Path) -> None:
    with pytest.raises(CLIError, match="no such file or folder"):
        collect_files([tmp_path / "missing"])
    for folder in ("docs", "notes"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "README.md").write_text("# Read me\n\ntext", encoding="utf-8")
    with pytest.raises(CLIError, match=r"would both get the source 'README.md' .* pass --root"):
        collect_files([tmp_path / "docs", tmp_path / "notes"])
    assert [f.source for f in collect_files([tmp_path / "docs", tmp_path / "notes"], root=tmp_path).files] == [
        "docs/README.md",
        "notes/README.md",
    ]
    with pytest.raises(CLIError, match="is not inside the root folder"):
        collect_files([tmp_path / "docs"], root=tmp_path / "notes")


def test_a_folder_with_bad_files_is_ingested_and_they_are_listed(tmp_path: Path) -> None:
    """Issue 14 items 1 and 4, through the installed command: skip and report, fail only with --strict."""
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "dome.md").write_text("# Dome\n\nThe dome closes above 15 m/s of wind.\n", encoding="utf-8")
    (notes / "sub" / "shuttle.txt").write_text("The shuttle leaves every hour.\n", encoding="utf-8")
    (notes / "latin1.txt").write_bytes("Caf\xe9 au lait.\n".encode("latin-1"))
    (notes / "photo.png").write_bytes(b"\x89PNG\r\n")
    (notes / "broken.jsonl").write_text('{"id": "ok", "text": "fine"}\n{not json\n', encoding="utf-8")
    common = ["--uri", "kb.db", "--embedding-model", EMBEDDING]

    done = run_command("-q", "ingest", "notes", *common, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [done.stdout.splitlines()[0]]
    assert done.stdout.startswith("ingested 2 chunks from 2 files into collection 'documents' at kb.db in ")
    assert done.stdout.rstrip().endswith("s; skipped 3 files (listed on stderr)")
    assert done.stderr.splitlines() == [
        "skipped notes/broken.jsonl: line 2: not valid JSON (Expecting property name enclosed in double quotes)",
        "skipped notes/latin1.txt: not UTF-8 text (pass its encoding with --encoding, e.g. --encoding latin-1)",
        "skipped notes/photo.png: unsupported file type (ingest reads .txt, .md, .jsonl)",
        "skipped 3 of 5 files; --strict makes that an error",
    ]  # -q before the command: no progress bar
    assert [row[0] for row in _rows(tmp_path / "kb.db")] == ["dome.md#0", "sub/shuttle.txt#0"]

    strict = run_command("ingest", "notes", *common, "--strict", cwd=tmp_path)
    assert strict.returncode == 1
    assert strict.stdout == ""
    assert strict.stderr.splitlines()[-1] == (
        "milvus-rerank ingest: error: 3 files cannot be ingested (--strict): nothing was ingested"
    )
    assert "cannot ingest notes/latin1.txt: not UTF-8 text" in strict.stderr
    assert "ingest documents" not in strict.stderr  # it failed before embedding anything


def test_chunk_ids_do_not_depend_on_the_current_directory(tmp_path: Path) -> None:
    """Issue 14 item 3: the same file ingested from two places replaces its chunks instead of adding copies."""
    notes = tmp_path / "kb" / "notes"
    notes.mkdir(parents=True)
    (notes / "a.md").write_text("# One\n\nFirst.\n\n# Two\n\nSecond.\n\n# Three\n\nThird.\n", encoding="utf-8")
    db = tmp_path / "kb.db"
    common = ["--uri", str(db), "--embedding-model", EMBEDDING]

    first = run_command("-q", "ingest", "kb/notes", *common, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert [row[0] for row in _rows(db)] == ["a.md#0", "a.md#1", "a.md#2"]
    # From inside the folder, and with fewer sections: the old chunks are replaced, those past the end deleted.
    (notes / "a.md").write_text("# One\n\nFirst, revised.\n", encoding="utf-8")
    second = run_command("-q", "ingest", ".", *common, cwd=notes)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("ingested 1 chunk from 1 file into collection 'documents'")
    assert _rows(db) == [("a.md#0", "# One\n\nFirst, revised.", "a.md")]
    # The file named by itself, from elsewhere: still the same id.
    third = run_command("-q", "ingest", str(notes / "a.md"), *common)
    assert third.returncode == 0, third.stderr
    assert _rows(db) == [("a.md#0", "# One\n\nFirst, revised.", "a.md")]


def test_a_failed_ingest_keeps_the_old_chunks_and_adds_no_collection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14 item 2: a chunk longer than the text field fails before any embedding, in one line, cleanly."""
    from pymilvus import MilvusClient

    from milvus_rerank.milvus import create_rag_collection

    db = str(tmp_path / "kb.db")
    client = MilvusClient(db)
    create_rag_collection(client, "documents", dim=384, max_text_length=100)
    client.close()
    (tmp_path / "a.txt").write_text("Old text.\n", encoding="utf-8")
    common = ["--uri", db, "--embedding-model", EMBEDDING, "-q", "--chunk-size", "500", "--chunk-overlap", "0"]
    assert run_cli(capsys, "ingest", str(tmp_path / "a.txt"), *common)[0] == 0
    (tmp_path / "a.txt").write_text("New text. " * 20, encoding="utf-8")  # one chunk of 199 characters
    code, out, err = run_cli(capsys, "ingest", str(tmp_path / "a.txt"), *common)
    assert code == 1
    assert out == ""
    assert err == (
        "milvus-rerank ingest: error: text of document 'a.txt#0' has 199 characters, but field 'text' of "
        "collection 'documents' holds at most 100: cut it into chunks of at most 100 characters\n"
    )
    # A chunk size no collection can hold is refused before anything is read.
    code, _, err = run_cli(capsys, "ingest", str(tmp_path / "a.txt"), *common, "--chunk-size", "70000")
    assert (
        err == "milvus-rerank ingest: error: --chunk-size 70000: a Milvus text field holds at most 65535 characters\n"
    )
    # A collection made for a run that fails is not left behind.
    (tmp_path / "b.jsonl").write_text('{"id": "b", "text": "Bee.", "dense": [1, 2]}\n', encoding="utf-8")
    code, _, err = run_cli(capsys, "ingest", str(tmp_path / "b.jsonl"), *common, "--collection", "fresh")
    assert code == 1
    assert "uses keys ['dense'] that are fields of collection 'fresh'" in err
    assert _rows_in_process(tmp_path / "kb.db") == ([("a.txt#0", "Old text.", "a.txt")], ["documents"])


def test_ingest_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "ingest", str(tmp_path / "nothing-here"), "--uri", str(tmp_path / "x.db"))
    assert code == 1
    assert err == f"milvus-rerank ingest: error: {tmp_path / 'nothing-here'}: no such file or folder\n"
    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    code, _, err = run_cli(capsys, "ingest", str(tmp_path / "a.txt"), "--uri", str(tmp_path / "not-a-db"))
    assert code == 1
    assert "a Milvus Lite database is a file ending in .db" in err
    assert len(err.splitlines()) == 1
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "image.png").write_bytes(b"\x89PNG")
    code, _, err = run_cli(capsys, "ingest", str(tmp_path / "only"), "--uri", str(tmp_path / "x.db"))
    assert code == 1
    assert err.splitlines() == [
        f"skipped {tmp_path / 'only' / 'image.png'}: unsupported file type (ingest reads .txt, .md, .jsonl)",
        "skipped 1 of 1 file; --strict makes that an error",
        "milvus-rerank ingest: error: nothing to ingest: 1 file skipped (listed above), none left",
    ]
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "ingest", str(tmp_path / "empty"), "--uri", str(tmp_path / "x.db"))
    assert code == 1
    assert err == f"milvus-rerank ingest: error: no .txt, .md, .jsonl file to ingest in {tmp_path / 'empty'}\n"
