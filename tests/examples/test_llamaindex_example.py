"""examples/llamaindex_rag.py runs offline: as a script with the tiny models, and in-process with vLLM and an LLM."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers import EMBEDDING, LISTED, ChatServer, blocks, load_example, run_example_script
from llama_index.core.schema import MetadataMode

from llamaindex_milvus_rerank import candidate_to_node
from milvus_rerank import MilvusRetriever
from milvus_rerank.cli.corpus import DEMO_COLLECTION, DEMO_QUESTIONS, load_corpus
from milvus_rerank.cli.options import LLM_API_KEY_ENV
from milvus_rerank.testing.server import RerankTestServer, WordOverlapReranker


@pytest.fixture(scope="module")
def example() -> Iterator[ModuleType]:
    with load_example("llamaindex_rag") as module:
        yield module


def test_script_runs_offline_with_the_tiny_models(tiny_model: Path, tmp_path: Path) -> None:
    out = run_example_script("llamaindex_rag", tiny_model, tmp_path / "demo.db")
    assert "LLM step: none configured, offline extractive answer" in out
    questions = blocks(out)
    assert [q.splitlines()[0].split(": ", 1)[1] for q in questions] == list(DEMO_QUESTIONS)
    for block in questions:
        listed = LISTED.findall(block)
        assert [int(position) for position, *_ in listed] == [1, 2, 3]
        scores = [float(score) for _, _, score, _ in listed]
        assert scores == sorted(scores, reverse=True)
        assert all(1 <= int(rank) <= 20 for *_, rank in listed)
        assert "Extractive answer (no LLM configured" in block
        assert re.search(r'^".+" \[\d\]$', block, re.MULTILINE)


def expected_top(db: Path, question: str, embedding: Any, top_n: int) -> list[str]:
    """Ids that hybrid retrieval (20 candidates) then word-overlap reranking should print."""
    with MilvusRetriever(str(db), DEMO_COLLECTION, mode="hybrid", embedding=embedding, limit=20) as first:
        nodes = [candidate_to_node(c) for c in first.retrieve(question)]
    texts = [n.node.get_content(MetadataMode.EMBED) for n in nodes]
    return [nodes[r.index].node.node_id for r in WordOverlapReranker().rerank(question, texts, top_n=top_n)]


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    with ChatServer() as server:
        yield server


@pytest.mark.usefixtures("no_llm_env")
def test_vllm_reranker_and_llm_endpoint(
    example: ModuleType,
    tmp_path: Path,
    minilm: Any,
    chat_server: ChatServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(LLM_API_KEY_ENV, "sk-test-secret")
    question = "What should I do if I get a headache on the summit?"
    db = tmp_path / "demo.db"
    with RerankTestServer(WordOverlapReranker()) as reranker_server:
        argv = ["--vllm-endpoint", reranker_server.url, "--embedding-model", EMBEDDING, "--db", str(db), "--top-n", "2"]
        code = example.main(
            [*argv, "--llm-endpoint", chat_server.url, "--llm-model", "tiny-chat", "--question", question]
        )
        assert code == 0
        assert len(reranker_server.rerank_requests) == 1
        assert reranker_server.rerank_requests[0].n_documents == 20
    out = capsys.readouterr().out
    assert "VLLMReranker" in out
    (block,) = blocks(out)
    printed = [node_id for _, node_id, _, _ in LISTED.findall(block)]
    assert printed == expected_top(db, question, minilm, 2)

    # the LLM step: the reranked passages, numbered, in the prompt; its answer printed; the key sent, never shown
    assert block.rstrip().endswith(ChatServer.answer)
    assert "Extractive answer" not in out
    assert "sk-test-secret" not in out
    (request,) = chat_server.requests
    headers, body = request.headers, request.body
    assert headers["Authorization"] == "Bearer sk-test-secret"
    assert body["model"] == "tiny-chat"
    prompt = body["messages"][-1]["content"]
    assert question in prompt
    corpus = {d.id: d.text for d in load_corpus()}
    for number, node_id in enumerate(printed, start=1):
        assert f"[{number}] {corpus[node_id].strip()}" in prompt
    assert "[3]" not in prompt


@pytest.mark.usefixtures("no_llm_env")
def test_a_missing_embedding_model_is_a_clear_error(
    example: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = example.main(["--embedding-model", str(tmp_path / "nowhere"), "--vllm-endpoint", "http://127.0.0.1:9"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert "--embedding-model" in err
