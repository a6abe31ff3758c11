"""milvus-rerank demo: extractive answers offline, and a vLLM reranker with an LLM endpoint on 127.0.0.1."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from helpers import EMBEDDING, ChatRequest, ChatServer, run_cli, run_command, table_rows

from milvus_rerank.cli.corpus import DEMO_QUESTIONS, load_corpus
from milvus_rerank.cli.options import (
    LLM_API_KEY_ENV,
    LLM_URL_ENV,
)
from milvus_rerank.testing.server import RerankTestServer


def test_demo_extractive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv(LLM_URL_ENV, raising=False)
    code, out, err = run_cli(
        capsys, "demo", "--reranker-model", str(tiny_model), "--embedding-model", EMBEDDING, "--db",
        str(tmp_path / "demo.db"), "--top-n", "2", "--candidates", "10", "-q",
        "--question", DEMO_QUESTIONS[0], "--question", DEMO_QUESTIONS[4],
    )  # fmt: skip
    assert code == 0, err
    corpus = {doc.id: doc for doc in load_corpus()}
    assert f"{len(corpus)} passages in Milvus Lite collection 'lumen_ridge_handbook'" in out
    assert "answers: extractive (no --llm-endpoint)" in out
    assert f"Q1. {DEMO_QUESTIONS[0]}" in out
    assert f"Q2. {DEMO_QUESTIONS[4]}" in out
    rows = table_rows(out)
    assert len(rows) == 4
    assert [row[0] for row in rows] == ["1", "2", "1", "2"]
    for row in rows:
        doc = corpus[row[4]]
        assert row[5] == f"{doc.metadata['title']} ({doc.metadata['source']})"
        assert 1 <= int(row[2]) <= 10
    answers = [block for block in out.split("Extractive answer")[1:]]
    assert len(answers) == 2
    for block in answers:
        quote = re.search(r'^"(.+)" \[(\d)\]$', block, re.MULTILINE)
        assert quote is not None
        assert "Sources: [1] handbook/" in block
    # Each quoted sentence comes verbatim from the passage it cites.
    first_rows = rows[:2]
    quote = re.search(r'^"(.+)" \[(\d)\]$', answers[0], re.MULTILINE)
    assert quote is not None
    assert quote.group(1) in corpus[first_rows[int(quote.group(2)) - 1][4]].text


def loading_on_fail(request: ChatRequest) -> str | tuple[int, dict[str, Any]]:
    """A chat endpoint that answers, except to a prompt containing FAIL (HTTP 503)."""
    if "FAIL" in request.prompt:
        return 503, {"error": {"message": "model is loading"}}
    return f"LLM says: see [1] ({len(request.prompt)})"


def test_demo_with_vllm_reranker_and_llm_endpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LLM_API_KEY_ENV, "sk-must-not-leak")
    db = str(tmp_path / "demo.db")
    with RerankTestServer() as rerank_server, ChatServer(loading_on_fail) as chat:
        url = chat.url
        rerank_url = rerank_server.url
        common = ["--embedding-model", EMBEDDING, "--vllm-endpoint", rerank_url, "--db", db, "-q"]
        common += ["--prompt-format", "qwen3", "--instruction", "Answer observers' questions"]
        code, out, err = run_cli(
            capsys, "demo", *common, "--llm-endpoint", url, "--llm-model", "tiny-llm", "--question",
            DEMO_QUESTIONS[1], "--question", "FAIL please",
        )  # fmt: skip
    # The first question is answered, the second fails at the LLM: one line on stderr, status 1.
    assert code == 1
    assert err.splitlines() == [
        f"milvus-rerank demo: error: LLM endpoint {url}/v1/chat/completions answered HTTP 503: model is loading"
    ]
    assert f"reranker: vLLM at {rerank_url}" in out
    assert f"answers: LLM at {url}" in out
    assert re.search(r"^LLM says: see \[1\] \(\d+\)$", out, re.MULTILINE)
    assert len(chat.requests) == 2
    assert chat.requests[0].body["model"] == "tiny-llm"
    assert chat.requests[0].headers["Authorization"] == "Bearer sk-must-not-leak"
    prompt = chat.requests[0].prompt
    assert prompt.endswith(f"Question: {DEMO_QUESTIONS[1]}\nAnswer:")
    top_id = table_rows(out)[0][4]
    top_text = next(doc.text for doc in load_corpus() if doc.id == top_id)
    assert f"[1] {top_text}" in prompt
    assert len(rerank_server.rerank_requests) == 2
    wrapped = rerank_server.rerank_requests[0].body["query"]
    assert f"<Instruct>: Answer observers' questions\n<Query>: {DEMO_QUESTIONS[1]}\n" in wrapped
    assert "sk-must-not-leak" not in out + err
    assert "RANDOM weights" not in out  # a real service is not called a stand-in


def test_the_first_screen_says_that_a_stand_in_ranks_at_random(tmp_path: Path, tiny_model: Path) -> None:
    """Issue 14 item 8: on stdout, in the header, before the first table."""
    done = run_command(
        "demo", "--reranker-model", str(tiny_model), "--embedding-model", EMBEDDING, "--db", str(tmp_path / "d.db"),
        "--question", DEMO_QUESTIONS[0], "--top-n", "2", "--candidates", "5", "-q",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Lumen Ridge Observatory handbook (fictional): ")
    assert lines[1].startswith("first stage: hybrid dense + BM25 (RRF), 5 candidates; reranker: cross-encoder ")
    assert lines[2] == (
        f"NOTE: the reranker {tiny_model} is a stand-in with RANDOM weights (made offline, without the model hub): "
        "its rerank order and scores are random. Pass --reranker-model with a real cross-encoder, or "
        "--vllm-endpoint, for meaningful ones."
    )
    assert lines[4] == f"Q1. {DEMO_QUESTIONS[0]}"
