"""examples/*.py as a user runs them: scripts in a subprocess, offline, on the tiny models and loopback servers."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import EMBEDDING, EXAMPLES, ChatServer

from milvus_rerank.testing.server import RerankTestServer, WordOverlapReranker

SCRIPTS = ["quickstart", "langchain_rag", "llamaindex_rag"]
ROW = re.compile(r"^(?:\[(\d)\]|(\d)\.) (\S+)  rerank (\S+)  (.*)$", re.MULTILINE)
QUESTION = "At what wind speed must the main dome close?"


def run(name: str, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MILVUS_RERANK_", "OPENAI_"))}
    environment |= {"HF_HUB_OFFLINE": "1", **(env or {})}
    command = [sys.executable, str(EXAMPLES / f"{name}.py"), *argv]
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300, check=False)


def passages(name: str) -> dict[str, str]:
    """The example's own corpus (its PASSAGES literal)."""
    tree = ast.parse((EXAMPLES / f"{name}.py").read_text(encoding="utf-8"))
    found = next(n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "PASSAGES")  # type: ignore[attr-defined]
    return ast.literal_eval(found.value)


@pytest.mark.parametrize("name", SCRIPTS)
def test_examples_import_only_public_names(name: str) -> None:
    """Issue 17 item 6: no app (milvus_rerank.cli), test helper (milvus_rerank.testing) or sibling module."""
    tree = ast.parse((EXAMPLES / f"{name}.py").read_text(encoding="utf-8"))
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    assert not {m for m in modules if m and m.startswith(("milvus_rerank.cli", "milvus_rerank.testing"))}
    assert "example_frame" not in modules
    assert len((EXAMPLES / f"{name}.py").read_text(encoding="utf-8").splitlines()) <= 115  # about one screen


@pytest.mark.parametrize("name", SCRIPTS)
def test_offline_with_the_tiny_model(name: str, tiny_model: Path) -> None:
    done = run(name, "--reranker-model", str(tiny_model), "--embedding-model", EMBEDDING, "-q")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Loading weights" not in done.stderr  # -q
    lines = done.stdout.splitlines()
    assert lines[0] == f"NOTE: the reranker {tiny_model} is a stand-in with RANDOM weights: random order"
    assert lines[1] == f"Q: {QUESTION}"
    rows = ROW.findall(done.stdout)
    assert [int(a or b) for a, b, *_ in rows] == [1, 2, 3]
    corpus = passages(name)
    assert all(pk in corpus for *_, pk, _, _ in rows)
    scores = [float(score) for *_, score, _ in rows]
    assert scores == sorted(scores, reverse=True)
    if name != "quickstart":
        top_text = corpus[rows[0][2]]
        quote = re.search(r'^Extractive answer \(no LLM configured\): "(.*)" \[1\]$', done.stdout, re.MULTILINE)
        assert quote is not None
        assert quote.group(1) in top_text


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_missing_model_is_one_error_line(name: str, tmp_path: Path) -> None:
    done = run(name, "--embedding-model", EMBEDDING, "--reranker-model", str(tmp_path / "nowhere"), "-q")
    assert done.returncode == 1
    assert done.stderr.startswith("error: "), done.stderr
    assert str(tmp_path / "nowhere") in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("name", "package"), [("langchain_rag", "langchain_openai"), ("llamaindex_rag", "llama_index.llms.openai_like")]
)
def test_a_vllm_reranker_and_the_framework_chat_model(name: str, package: str) -> None:
    pytest.importorskip(package)
    with RerankTestServer(WordOverlapReranker()) as reranker, ChatServer() as chat:
        done = run(
            name, "--vllm-endpoint", reranker.url, "--embedding-model", EMBEDDING, "--llm-endpoint", f"{chat.url}/v1",
            "--llm-model", "tiny-chat", "--top-n", "2", "-q", env={"OPENAI_API_KEY": "sk-example-secret"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        (rerank_request,) = reranker.rerank_requests
    corpus = passages(name)
    expected = WordOverlapReranker().rerank(QUESTION, rerank_request.body["documents"], top_n=2)
    printed = [pk for *_, pk, _, _ in ROW.findall(done.stdout)]
    assert [corpus[pk] for pk in printed] == [rerank_request.body["documents"][r.index] for r in expected]
    assert done.stdout.rstrip().endswith(ChatServer.answer)
    assert "sk-example-secret" not in done.stdout + done.stderr
    (request,) = chat.requests
    assert request.headers["Authorization"] == "Bearer sk-example-secret"
    assert request.body["model"] == "tiny-chat"
    assert request.prompt.index(f"[1] {corpus[printed[0]]}") < request.prompt.index(f"[2] {corpus[printed[1]]}")
    assert QUESTION in request.prompt
