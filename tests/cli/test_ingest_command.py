"""milvus-rerank ingest, run for real: file discovery, Milvus Lite in temp dirs, the real all-MiniLM-L6-v2."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import EMBEDDING, run_cli

from milvus_rerank.cli.errors import CLIError
from milvus_rerank.cli.ingest import collect_files


def test_collect_files_walks_folders_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n\ntext", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("text", encoding="utf-8")
    (tmp_path / "sub" / "c.jsonl").write_text('{"id": 1, "text": "x"}\n', encoding="utf-8")
    (tmp_path / "sub" / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD.txt").write_text("ref", encoding="utf-8")
    files = collect_files([tmp_path, tmp_path / "a.md"])
    assert files == [tmp_path / "a.md", tmp_path / "sub" / "b.txt", tmp_path / "sub" / "c.jsonl"]


def test_collect_files_errors(tmp_path: Path) -> None:
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    with pytest.raises(CLIError, match="unsupported file type"):
        collect_files([tmp_path / "image.png"])
    with pytest.raises(CLIError, match="no such file or folder"):
        collect_files([tmp_path / "missing"])
    with pytest.raises(CLIError, match=r"no \.txt, \.md, \.jsonl files under"):
        collect_files([tmp_path])


def test_reingest_replaces_the_chunks_of_a_changed_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("notes.md").write_text("# One\n\nFirst.\n\n# Two\n\nSecond.\n\n# Three\n\nThird.\n", encoding="utf-8")
    args = ["ingest", "notes.md", "--uri", "kb.db", "--embedding-model", EMBEDDING, "-q"]
    assert run_cli(capsys, *args)[0] == 0
    Path("notes.md").write_text("# One\n\nFirst, revised.\n", encoding="utf-8")
    code, out, _ = run_cli(capsys, *args)
    assert code == 0
    assert out.startswith("ingested 1 chunks from 1 file into collection 'documents'")

    from pymilvus import MilvusClient

    client = MilvusClient("kb.db")
    try:
        rows = client.query("documents", filter="", output_fields=["text", "source"])
    finally:
        client.close()
    assert [(row["id"], row["text"], row["source"]) for row in rows] == [
        ("notes.md#0", "# One\n\nFirst, revised.", "notes.md")
    ]


def test_ingest_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "ingest", str(tmp_path / "nothing-here"), "--uri", str(tmp_path / "x.db"))
    assert code == 1
    assert err == f"milvus-rerank ingest: error: {tmp_path / 'nothing-here'}: no such file or folder\n"
    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    code, _, err = run_cli(capsys, "ingest", str(tmp_path / "a.txt"), "--uri", str(tmp_path / "not-a-db"))
    assert code == 1
    assert "a Milvus Lite database is a file ending in .db" in err
    assert len(err.splitlines()) == 1
