"""chat_answer against a real OpenAI-compatible chat server on 127.0.0.1: the request, errors, timeout."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import ChatRequest, ChatServer, closed_port

from milvus_rerank import MilvusRerankError
from milvus_rerank.cli.chat import chat_answer


def echo_model(request: ChatRequest) -> str:
    return f"The answer [1]. (model={request.body.get('model')})"


@pytest.fixture
def server() -> Iterator[ChatServer]:
    with ChatServer(echo_model) as chat:
        yield chat


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/chat/completions"])
def test_chat_answer_posts_an_openai_chat_request(server: ChatServer, suffix: str) -> None:
    answer = chat_answer(server.url + suffix, "tiny-llm", "PROMPT TEXT", api_key="sk-123", timeout=10)
    assert answer == "The answer [1]. (model=tiny-llm)"
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.body["model"] == "tiny-llm"
    assert request.body["messages"][-1] == {"role": "user", "content": "PROMPT TEXT"}
    assert request.body["messages"][0]["role"] == "system"
    assert request.body["temperature"] == 0
    assert request.headers["Authorization"] == "Bearer sk-123"


def test_chat_answer_without_model_or_key_omits_them(server: ChatServer) -> None:
    assert chat_answer(server.url, None, "p").endswith("(model=None)")
    (request,) = server.requests
    assert "model" not in request.body
    assert "Authorization" not in request.headers


def test_chat_answer_server_error_is_one_clear_error_without_the_key(server: ChatServer) -> None:
    server.reply = lambda request: (500, {"error": {"message": "engine crashed", "type": "InternalServerError"}})
    with pytest.raises(MilvusRerankError) as info:
        chat_answer(server.url, "m", "p", api_key="sk-very-secret")
    message = str(info.value)
    assert message == f"LLM endpoint {server.url}/v1/chat/completions answered HTTP 500: engine crashed"
    assert "sk-very-secret" not in message


def test_chat_answer_not_a_chat_api_names_the_status(server: ChatServer) -> None:
    with pytest.raises(MilvusRerankError, match=r"/v2/chat/completions answered HTTP 404: Not Found"):
        chat_answer(f"{server.url}/v2/chat/completions", "m", "p")


def test_chat_answer_timeout(server: ChatServer) -> None:
    server.delay = 1.5
    with pytest.raises(MilvusRerankError, match=r"did not answer within 0\.3 s"):
        chat_answer(server.url, "m", "p", timeout=0.3)


def test_chat_answer_malformed_answer(server: ChatServer) -> None:
    server.reply = lambda request: (200, {"id": "x", "choices": []})
    with pytest.raises(MilvusRerankError, match=r"without choices\[0\]\.message\.content"):
        chat_answer(server.url, "m", "p")


def test_chat_answer_refused_connection() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(MilvusRerankError, match=r"cannot reach LLM endpoint .*check --llm-endpoint"):
        chat_answer(url, "m", "p", api_key="sk-hidden")
