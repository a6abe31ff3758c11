"""examples/langchain_rag.py runs offline: as a script with the tiny models, and in-process with vLLM and an LLM."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import EMBEDDING, LISTED, ChatServer, blocks, load_example, run_example_script

from milvus_rerank import MilvusRetriever
from milvus_rerank.cli.corpus import DEMO_COLLECTION, DEMO_QUESTIONS, load_corpus
from milvus_rerank.cli.options import LLM_API_KEY_ENV
from milvus_rerank.testing.server import RerankTestServer, WordOverlapReranker


@pytest.fixture(scope="module")
def example() -> Iterator[ModuleType]:
    with load_example("langchain_rag") as module:
        yield module


def test_script_runs_offline_with_the_tiny_models(tiny_model: Path, tmp_path: Path) -> None:
    out = run_example_script("langchain_rag", tiny_model, tmp_path / "demo.db")
    assert "LLM step: none configured, offline extractive answer" in out
    assert "CrossEncoderReranker" in out
    questions = blocks(out)
    assert [q.splitlines()[0].split(": ", 1)[1] for q in questions] == list(DEMO_QUESTIONS)
    corpus = {d.id: d for d in load_corpus()}
    for block in questions:
        listed = LISTED.findall(block)
        assert [int(position) for position, *_ in listed] == [1, 2, 3]
        assert all(pk in corpus for _, pk, _, _ in listed)
        scores = [float(score) for _, _, score, _ in listed]
        assert scores == sorted(scores, reverse=True)
        assert all(1 <= int(rank) <= 20 for *_, rank in listed)
        assert "Extractive answer (no LLM configured" in block
        sources = "; ".join(f"[{n}] {corpus[pk].metadata['source']}" for n, (_, pk, _, _) in enumerate(listed, 1))
        assert f"Sources: {sources}" in block or "nothing to quote" in block
    assert any("Sources: " in block for block in questions)


def test_a_missing_model_directory_is_a_clear_error(example: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    code = example.main(["--reranker-model", "./no/such/model", "--embedding-model", EMBEDDING])
    assert code == 2
    assert "--reranker-model" in capsys.readouterr().err


def expected_top(db: Path, question: str, embedding: Any, top_n: int) -> list[str]:
    """Ids that hybrid retrieval (20 candidates) then word-overlap reranking should print."""
    with MilvusRetriever(str(db), DEMO_COLLECTION, mode="hybrid", embedding=embedding, limit=20) as first:
        candidates = first.retrieve(question)
    results = WordOverlapReranker().rerank(question, [c.text for c in candidates], top_n=top_n)
    return [str(candidates[r.index].id) for r in results]


@pytest.mark.usefixtures("no_llm_env")
def test_vllm_reranker_and_llm_endpoint_in_the_chain(
    example: ModuleType,
    tmp_path: Path,
    minilm: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    question = "At what wind speed does the dome have to close?"
    db = tmp_path / "demo.db"
    monkeypatch.setenv(LLM_API_KEY_ENV, "sk-example-secret")
    with RerankTestServer(WordOverlapReranker()) as rerank_server, ChatServer() as chat:
        argv = ["--vllm-endpoint", rerank_server.url, "--embedding-model", EMBEDDING, "--db", str(db)]
        argv += ["--llm-endpoint", chat.url, "--llm-model", "tiny-chat", "--question", question, "--top-n", "2"]
        assert example.main(argv) == 0
        assert len(rerank_server.rerank_requests) == 1
        assert rerank_server.rerank_requests[0].n_documents == 20
    out = capsys.readouterr().out
    (block,) = blocks(out)
    printed = [pk for _, pk, _, _ in LISTED.findall(block)]
    assert printed == expected_top(db, question, minilm, 2)
    assert ChatServer.answer in block
    assert "Extractive answer" not in out
    assert "sk-example-secret" not in out

    (request,) = chat.requests
    headers, body = request.headers, request.body
    assert headers["Authorization"] == "Bearer sk-example-secret"
    assert body["model"] == "tiny-chat"
    prompt = body["messages"][-1]["content"]
    corpus = {d.id: d.text for d in load_corpus()}
    assert prompt.index(f"[1] {corpus[printed[0]]}") < prompt.index(f"[2] {corpus[printed[1]]}")
    assert question in prompt
