"""``--llm-rerank-endpoint``: listwise reranking by a chat LLM through the CLI's one reranker path (issue 22)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from helpers import EMBEDDING, run_cli, table_rows

from milvus_rerank import ChatListwiseReranker
from milvus_rerank.cli.corpus import DEMO_QUESTIONS
from milvus_rerank.cli.models import make_reranker, reranker_label, standin_warning
from milvus_rerank.cli.options import LLM_API_KEY_ENV, LLM_URL_ENV, add_model_arguments
from milvus_rerank.testing.chat_server import ChatTestServer


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    return parser.parse_args(list(argv))


def test_the_flags_make_the_listwise_reranker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LLM_API_KEY_ENV, " sk-cli-listwise\n")
    args = parse("--llm-rerank-endpoint", "http://127.0.0.1:9", "--llm-rerank-model", "m", "--llm-rerank-window", "6")
    reranker = make_reranker(args)  # the default --reranker-model is not loaded
    assert isinstance(reranker, ChatListwiseReranker)
    assert (reranker.model, reranker.window, reranker.step) == ("m", 6, 3)
    assert reranker._headers["Authorization"] == "Bearer sk-cli-listwise"
    assert reranker_label(args) == "chat LLM at http://127.0.0.1:9 (listwise, windows of 6)"
    assert standin_warning(args) is None
    assert make_reranker(parse("--llm-rerank-endpoint", "http://127.0.0.1:9")).window == 20  # type: ignore[attr-defined]


def test_another_reranker_flag_conflicts() -> None:
    with pytest.raises(ValueError, match="--llm-rerank-endpoint and --vllm-endpoint both name the reranker"):
        make_reranker(parse("--llm-rerank-endpoint", "http://127.0.0.1:9", "--vllm-endpoint", "http://127.0.0.1:8"))
    with pytest.raises(ValueError, match="window"):
        make_reranker(parse("--llm-rerank-endpoint", "http://127.0.0.1:9", "--llm-rerank-window", "1"))


def test_the_demo_reranks_with_a_chat_llm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(LLM_URL_ENV, raising=False)
    with ChatTestServer() as chat:
        url = chat.url
        code, out, err = run_cli(
            capsys, "demo", "--embedding-model", EMBEDDING, "--db", str(tmp_path / "demo.db"), "-q",
            "--llm-rerank-endpoint", url, "--llm-rerank-window", "4", "--candidates", "8", "--top-n", "3",
            "--question", DEMO_QUESTIONS[0],
        )  # fmt: skip
    assert code == 0, err
    assert f"reranker: chat LLM at {url} (listwise, windows of 4)" in out
    assert len(chat.rerank_requests) == 3  # ceil((8 - 4) / 2) + 1 windows
    assert [row[0] for row in table_rows(out)] == ["1", "2", "3"]
