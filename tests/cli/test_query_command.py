"""milvus-rerank query after ingest, run for real: the table's scores are the cross-encoder's own."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import EMBEDDING, run_cli, run_command, table_rows

from milvus_rerank import CrossEncoderReranker, MilvusRetriever
from milvus_rerank.cli.corpus import load_corpus
from milvus_rerank.cli.models import load_embedding_model


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


def test_ingest_then_query(tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_model: Path) -> None:
    docs = tmp_path / "docs"
    _write_docs(docs)
    uri = str(tmp_path / "kb.db")
    code, out, err = run_cli(capsys, "ingest", str(docs), "--uri", uri, "--embedding-model", EMBEDDING)
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
        EMBEDDING,
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

    # BM25 first-stage scores are positive, as the caption says (Milvus Lite reports them negated), and one
    # candidate is "1 candidate".
    code, out, err = run_cli(
        capsys, "query", question, "--uri", uri, "--reranker-model", str(tiny_model), "--mode", "sparse",
        "--candidates", "1",
    )  # fmt: skip
    assert code == 0, err
    assert "sparse search of 'documents'" in err
    assert "1 candidate (first-stage scores are BM25 scores)" in err
    (row,) = table_rows(out)
    assert float(row[3]) > 0

    # The rerank scores are the tiny cross-encoder's own scores of the texts shown.

    retriever = MilvusRetriever(uri, "documents", embedding=load_embedding_model(EMBEDDING), limit=8)
    try:
        candidates = {str(c.id): c.text for c in retriever.retrieve(question)}
    finally:
        retriever.close()
    reranker = CrossEncoderReranker(str(tiny_model))
    for row in rows:
        expected = reranker.rerank(question, [candidates[row[4]]])[0].score
        assert math.isclose(float(row[1]), expected, abs_tol=6e-5)


def test_query_on_a_missing_collection_says_how_to_fill_it(tmp_path: Path) -> None:
    """Issue 14 item 6: the hint names the command and flag to use, not a Python module; before any model loads."""
    uri = str(tmp_path / "kb.db")
    # Made in another process: pymilvus keeps a Milvus Lite file locked until the process that opened it exits.
    make = "import sys; from pymilvus import MilvusClient; MilvusClient(sys.argv[1]).create_collection('notes', 4)"
    subprocess.run([sys.executable, "-c", make, uri], check=True, capture_output=True)
    done = run_command("query", "q", "--uri", uri, "--collection", "nope", "--reranker-model", "/no/such/model")
    assert done.returncode == 1
    assert done.stderr == (
        f"milvus-rerank query: error: no collection 'nope' at {uri} (its collections are 'notes'): pass "
        f"--collection NAME, or fill it first with `milvus-rerank ingest PATH --uri {uri} --collection nope`\n"
    )
