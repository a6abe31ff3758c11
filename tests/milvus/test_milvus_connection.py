"""connect(): why Milvus Lite could not open a database, in one line, from the library and the command."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import run_command

from milvus_rerank import RetrievalError
from milvus_rerank.milvus.connection import connect, is_lite_uri

_HOLD = """
import sys
from pymilvus import MilvusClient
MilvusClient(sys.argv[1])
print("open", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


@pytest.fixture
def held_database(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A Milvus Lite database that another process has open, and that process's id."""
    db = tmp_path / "held.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "open\n"
        yield db, holder.pid
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=60)


def test_a_database_held_by_another_process(held_database: tuple[Path, int]) -> None:
    db, pid = held_database
    with pytest.raises(RetrievalError) as info:
        connect(str(db))
    message = str(info.value)
    assert message.startswith(f"cannot open Milvus Lite database {str(db)!r}: it is in use by another process ")
    assert f"(process {pid}, " in message
    assert "Open local milvus failed" not in message
    assert "\n" not in message

    done = run_command("query", "anything", "--uri", str(db))
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"milvus-rerank query: error: {message}"]


def test_a_database_in_a_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this user (root) may write to a read-only folder")
        with pytest.raises(RetrievalError) as info:
            connect(str(folder / "new.db"))
        assert str(info.value) == (
            f"cannot open Milvus Lite database {str(folder / 'new.db')!r}: {folder} is not writable (permission "
            "denied), and Milvus Lite writes to its database even to read it; choose a path in a writable folder"
        )
        done = run_command("ingest", str(tmp_path), "--uri", str(folder / "new.db"))
        assert done.returncode == 1
        assert done.stderr.splitlines() == [f"milvus-rerank ingest: error: {info.value}"]
    finally:
        folder.chmod(0o755)


def test_a_missing_folder_and_a_file_in_the_way(tmp_path: Path) -> None:
    with pytest.raises(RetrievalError, match=r"the folder .*missing does not exist; create it"):
        connect(str(tmp_path / "missing" / "x.db"))
    (tmp_path / "old.db").write_text("not a database", encoding="utf-8")
    with pytest.raises(RetrievalError, match="it is a file, but Milvus Lite 3 keeps each database in a folder"):
        connect(str(tmp_path / "old.db"))


def test_lite_uris() -> None:
    assert is_lite_uri("./rag.db")
    assert is_lite_uri("/data/rag.db")
    assert not is_lite_uri("http://localhost:19530")
    assert not is_lite_uri("https://in01.cloud.zilliz.com/x.db")
