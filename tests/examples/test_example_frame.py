"""examples/example_frame.py: the printed passage line and the examples' main (options, database file, exit status)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from types import ModuleType

import pytest
from helpers import load_example

from milvus_rerank import MilvusRerankError


@pytest.fixture(scope="module")
def frame() -> Iterator[ModuleType]:
    with load_example("example_frame") as module:
        yield module


def test_ranked_passage_line_and_source(frame: ModuleType) -> None:
    ranked = frame.RankedPassage("p7", "text", 0.5, {"source": "dome.md", "title": "Dome", "retrieval_rank": 4})
    assert ranked.source == "dome.md"
    assert ranked.describe(1) == "  [1] p7       rerank   0.5000  first stage #4   dome.md  Dome"
    unranked = frame.RankedPassage("p8", "text", None)
    assert unranked.source == "p8"
    assert unranked.describe(2) == "  [2] p8       rerank      n/a  first stage: unranked p8  "


def test_example_main_runs_with_a_temporary_db_and_turns_errors_into_status_2(
    frame: ModuleType, capsys: pytest.CaptureFixture[str], no_llm_env: None
) -> None:
    seen: list[tuple[str, list[str] | None]] = []

    def run(args: argparse.Namespace, db_path: str) -> None:
        seen.append((db_path, args.question))
        if args.question == ["fail"]:
            raise MilvusRerankError("the model is missing")

    assert frame.example_main(run, ["--question", "why?"]) == 0
    ((db_path, questions),) = seen
    assert db_path.endswith("demo.db")
    assert questions == ["why?"]
    assert not os.path.exists(os.path.dirname(db_path))  # the temporary directory is gone
    assert frame.example_main(run, ["--question", "fail", "--db", "kept.db"]) == 2
    assert seen[-1][0] == "kept.db"
    assert capsys.readouterr().err == "error: the model is missing\n"


def test_example_main_refuses_a_db_that_is_not_a_milvus_lite_file(
    frame: ModuleType, capsys: pytest.CaptureFixture[str], no_llm_env: None
) -> None:
    ran: list[str] = []
    assert frame.example_main(lambda args, db_path: ran.append(db_path), ["--db", "notes.txt"]) == 2
    assert ran == []
    assert capsys.readouterr().err == (
        "error: --db notes.txt: a Milvus Lite database is a file ending in .db, or give a server URL\n"
    )
