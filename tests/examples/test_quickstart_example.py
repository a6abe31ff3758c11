"""examples/quickstart.py runs offline with local models and prints a consistent ranking."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import EMBEDDING, EXAMPLES

from milvus_rerank.cli.corpus import load_corpus

LINE = re.compile(r"^(\d)\. (\S+)  rerank (\S+)  \(first stage #(\d+), RRF (\S+)\)", re.MULTILINE)


def test_quickstart_runs_offline(tiny_model: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILVUS_RERANK_")}
    env["HF_HUB_OFFLINE"] = "1"
    command = [sys.executable, str(EXAMPLES / "quickstart.py"), "how is the telescope parked?"]
    command += ["--reranker-model", str(tiny_model), "--embedding-model", EMBEDDING]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    # The tiny model is a random stand-in, and the quickstart says so first.
    note, question = done.stdout.splitlines()[:2]
    assert note.startswith(f"NOTE: the reranker {tiny_model} is a stand-in with RANDOM weights")
    assert question == "Q: how is the telescope parked?"
    rows = LINE.findall(done.stdout)
    assert [int(r[0]) for r in rows] == [1, 2, 3]
    ids = {d.id for d in load_corpus()}
    assert all(r[1] in ids for r in rows)
    scores = [float(r[2]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(1 <= int(r[3]) <= 20 for r in rows)


def test_quickstart_names_the_flag_when_a_model_is_missing(tmp_path: Path) -> None:
    command = [sys.executable, str(EXAMPLES / "quickstart.py"), "--embedding-model", str(tmp_path / "nowhere")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 2
    assert "--embedding-model" in done.stderr
    assert "Traceback" not in done.stderr
