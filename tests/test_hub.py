"""hub: whether the Hugging Face Hub can answer, and loading a hub id fast when it cannot (issue 14 item 9)."""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
from helpers import closed_port

from milvus_rerank import CrossEncoderReranker, ModelLoadError
from milvus_rerank.hub import hub_unreachable_reason, in_hub_cache, looks_like_path
from milvus_rerank.testing.models import add_to_hub_cache


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The hub client's settings, online, with a cache of our own (so no real cache answers)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return constants


@pytest.fixture
def unreachable(hub: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A hub endpoint where nothing listens."""
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setattr(hub, "ENDPOINT", endpoint)
    return endpoint


def test_reasons(hub: Any, unreachable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    started = time.perf_counter()
    assert hub_unreachable_reason() == f"{unreachable} cannot be reached (ConnectError)"
    assert time.perf_counter() - started < 3
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_unreachable_reason() == "HF_HUB_OFFLINE is set"


def test_any_http_answer_means_reachable(hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    class NotFound(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(hub, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        assert hub_unreachable_reason() is None
    finally:
        server.shutdown()
        server.server_close()


def test_an_uncached_id_fails_at_once_when_the_hub_is_unreachable(
    unreachable: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    reranker = CrossEncoderReranker("milvus-rerank-tests/not-cached")
    started = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        reranker.load()
    # Imports of torch and transformers included; the hub client alone sleeps 23 s between its retries.
    assert time.perf_counter() - started < 15
    message = str(info.value)
    assert message.startswith("Could not load cross-encoder 'milvus-rerank-tests/not-cached': it is not a local")
    assert message.endswith(f"({unreachable} cannot be reached (ConnectError).)")


def test_a_cached_id_loads_from_the_cache_when_the_hub_is_unreachable(
    hub: Any, unreachable: str, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    add_to_hub_cache(tiny_model, "milvus-rerank-tests/cached-tiny", cache)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(cache))
    assert in_hub_cache("milvus-rerank-tests/cached-tiny")
    assert not in_hub_cache("milvus-rerank-tests/other")
    started = time.perf_counter()
    results = CrossEncoderReranker("milvus-rerank-tests/cached-tiny").rerank("dome wind", ["dome", "lodge"])
    assert time.perf_counter() - started < 15  # loading and scoring; the hub client sleeps 23 s retrying first
    expected = CrossEncoderReranker(str(tiny_model)).rerank("dome wind", ["dome", "lodge"])
    assert results == expected


def test_looks_like_path() -> None:
    assert looks_like_path("./model")
    assert looks_like_path("/abs/model")
    assert looks_like_path("models/minilm/v2")
    assert not looks_like_path("cross-encoder/ms-marco-MiniLM-L-6-v2")
