"""milvus-rerank eval on a small BEIR folder, with a loopback vLLM-compatible reranker."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import EMBEDDING, run_cli, table_rows, write_beir

from milvus_rerank import MilvusRetriever
from milvus_rerank.cli.models import load_embedding_model
from milvus_rerank.evaluation import evaluate, load_beir
from milvus_rerank.testing.server import RerankTestServer


def test_eval_with_and_without_a_reranker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    answers = write_beir(tmp_path / "mini")
    db = str(tmp_path / "eval.db")
    with RerankTestServer() as server:  # scores by word overlap, deterministically
        code, out, err = run_cli(
            capsys, "eval", str(tmp_path / "mini"), "--embedding-model", EMBEDDING, "--vllm-endpoint",
            server.url, "--mode", "all", "--candidates", "10", "--uri", db, "-q",
        )  # fmt: skip
    assert code == 0, err
    # Issue 14 item 6: how long the run takes is said before it starts (5 queries x 3 modes reranked).
    assert re.search(
        r"^this run, timed on a sample here: embedding 36 documents once: about \d+ (s|min); reranking 15 x 10 "
        r"candidates: about \d+ (s|min)$",
        err,
        re.MULTILINE,
    ), err
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

    client = MilvusClient(db)
    (collection,) = client.list_collections()
    retriever = MilvusRetriever(client, collection, embedding=load_embedding_model(EMBEDDING), mode="hybrid", limit=100)
    try:
        runs = {q: [str(c.id) for c in retriever.retrieve(text)] for q, text in load_beir(tmp_path / "mini")[1].items()}
    finally:
        client.close()
    expected = evaluate(runs, {q: {doc: 1} for q, doc in answers.items()})
    assert rows["hybrid"][1] == f"{expected.ndcg:.4f}"
    assert rows["hybrid"][2] == f"{expected.recall:.4f}"

    # A second run reuses the ingested collection (--db is the old spelling of --uri), says nothing about time
    # (there is nothing slow left), and without a reranker shows the first stage only.
    code, out, err = run_cli(
        capsys, "eval", str(tmp_path / "mini"), "--embedding-model", EMBEDDING, "--db", db, "--max-queries", "2",
    )  # fmt: skip
    assert code == 0, err
    assert re.search(r"reusing collection 'mini_[0-9a-f]{8}'", err)
    assert "timed on a sample" not in err
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
