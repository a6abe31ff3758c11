"""``--reranker voyage|jina|cohere`` with ``--model``: the hosted-API rerankers through the CLI's one reranker path."""

from __future__ import annotations

import argparse

import pytest

from milvus_rerank import CohereReranker, JinaReranker, VoyageReranker
from milvus_rerank.cli import build_parser
from milvus_rerank.cli.models import make_reranker, reranker_label, standin_warning
from milvus_rerank.cli.options import add_model_arguments

KEYS = ("VOYAGE_API_KEY", "JINA_API_KEY", "COHERE_API_KEY", "CO_API_KEY")


@pytest.fixture(autouse=True)
def no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEYS:
        monkeypatch.delenv(name, raising=False)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(
    ("kind", "variable", "reranker_type", "default_model"),
    [
        ("voyage", "VOYAGE_API_KEY", VoyageReranker, "rerank-2.5"),
        ("jina", "JINA_API_KEY", JinaReranker, "jina-reranker-v2-base-multilingual"),
        ("cohere", "CO_API_KEY", CohereReranker, "rerank-v3.5"),
    ],
)
def test_the_reranker_flag_makes_the_hosted_reranker(
    monkeypatch: pytest.MonkeyPatch, kind: str, variable: str, reranker_type: type, default_model: str
) -> None:
    monkeypatch.setenv(variable, f"{kind}-key-1")
    reranker = make_reranker(parse("--reranker", kind))  # the default --reranker-model is not loaded
    assert type(reranker) is reranker_type
    service = reranker.describe()  # type: ignore[attr-defined]
    assert (service.model, service.api_key.source) == (default_model, variable)
    chosen = make_reranker(parse("--reranker", kind, "--model", "m-2"))
    assert chosen.describe().model == "m-2"  # type: ignore[attr-defined]
    args = parse("--reranker", kind, "--model", "m-2")
    assert reranker_label(args) == f"{kind} API (m-2)"
    assert standin_warning(args) is None


def test_a_hosted_reranker_without_a_key_fails_before_any_work() -> None:
    with pytest.raises(ValueError, match="--reranker voyage needs an API key: set VOYAGE_API_KEY"):
        make_reranker(parse("--reranker", "voyage"))
    with pytest.raises(ValueError, match="COHERE_API_KEY or CO_API_KEY"):
        make_reranker(parse("--reranker", "cohere"))


def test_the_reranker_flag_and_a_vllm_endpoint_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JINA_API_KEY", "k")
    with pytest.raises(ValueError, match="--reranker jina and --vllm-endpoint both name the reranker"):
        make_reranker(parse("--reranker", "jina", "--vllm-endpoint", "http://127.0.0.1:9"))


def test_every_reranking_command_takes_the_flags() -> None:
    parser = build_parser()
    for command, positional in (("query", ["q"]), ("eval", ["data/scifact"]), ("demo", [])):
        args = parser.parse_args([command, *positional, "--reranker", "voyage"])
        assert (args.reranker, args.model) == ("voyage", None)
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--reranker", "openai"])
