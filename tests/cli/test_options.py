"""The shared options: the demo's defaults, the environment variables, the argparse int types."""

from __future__ import annotations

import pytest
from helpers import demo_parser

from milvus_rerank.cli.options import (
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_RERANKER_MODEL,
    LLM_API_KEY_ENV,
    LLM_MODEL_ENV,
    LLM_URL_ENV,
)


def test_demo_arguments_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LLM_URL_ENV, raising=False)
    monkeypatch.delenv(LLM_MODEL_ENV, raising=False)
    args = demo_parser().parse_args([])
    assert args.reranker_model == DEFAULT_RERANKER_MODEL == "cross-encoder/ms-marco-MiniLM-L-6-v2"
    assert args.embedding_model == DEFAULT_EMBEDDING_MODEL == "sentence-transformers/all-MiniLM-L6-v2"
    assert args.vllm_endpoint is None
    assert args.llm_endpoint is None
    assert args.llm_model is None
    assert args.uri is None
    assert args.question is None
    assert (args.top_n, args.candidates) == (5, 20)


def test_demo_arguments_read_llm_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LLM_URL_ENV, "http://127.0.0.1:9/v1")
    monkeypatch.setenv(LLM_MODEL_ENV, "qwen")
    monkeypatch.setenv(LLM_API_KEY_ENV, "sk-secret-value")
    args = demo_parser().parse_args(["--question", "one?", "--question", "two?", "--top-n", "5"])
    assert (args.llm_endpoint, args.llm_model) == ("http://127.0.0.1:9/v1", "qwen")
    assert args.question == ["one?", "two?"]
    assert args.top_n == 5
    assert "sk-secret-value" not in repr(args)


@pytest.mark.parametrize("value", ["0", "-2", "three"])
def test_demo_arguments_refuse_non_positive_counts(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        demo_parser().parse_args(["--top-n", value])
    assert info.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err
