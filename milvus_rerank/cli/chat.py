"""A minimal client for OpenAI-compatible chat endpoints (vLLM, llama.cpp, Ollama, OpenAI...).

The demo and the examples need one call, "answer this prompt", and a clear error when it fails;
a full client library would be a heavy dependency for that. The API key is sent as a bearer
token and never appears in an error message.
"""

from __future__ import annotations

from typing import Any

from milvus_rerank.errors import MilvusRerankError

__all__ = ["chat_answer"]


def _chat_url(endpoint: str) -> str:
    base = endpoint.strip().rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if base.endswith("/v1"):
        return f"{base}/chat/completions"
    return f"{base}/v1/chat/completions"


def chat_answer(
    endpoint: str, model: str | None, prompt: str, *, api_key: str | None = None, timeout: float = 60
) -> str:
    """Ask an OpenAI-compatible chat endpoint (vLLM, llama.cpp, Ollama, OpenAI...) to answer ``prompt``.

    Args:
        endpoint: Base URL (``http://host:8000`` or ``.../v1``) or the full ``.../v1/chat/completions`` URL.
        model: Model name to send; ``None`` omits the field (servers with one model use it).
        prompt: The user message, e.g. from :func:`build_prompt`.
        api_key: Sent as ``Authorization: Bearer``; never logged or put in an error message.
        timeout: Seconds to wait for the answer.

    Returns:
        The assistant's message text, stripped.

    Raises:
        MilvusRerankError: The endpoint cannot be reached, does not answer within ``timeout``,
            answers with an error status (the message has the status and the server's own
            message), or answers without a message.
    """
    import httpx

    from milvus_rerank.rerankers.http import parse_error_message

    url = _chat_url(endpoint)
    payload: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": "You answer questions from the passages you are given, citing them."},
            {"role": "user", "content": prompt},
        ],
        "temperature": 0,
    }
    if model:
        payload["model"] = model
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.post(url, json=payload, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        raise MilvusRerankError(
            f"LLM endpoint {url} did not answer within {timeout:g} s; check that the server is up and not overloaded"
        ) from None
    except httpx.TransportError as exc:
        raise MilvusRerankError(
            f"cannot reach LLM endpoint {url} ({type(exc).__name__}); check --llm-endpoint"
        ) from None
    if response.status_code >= 400:
        message = parse_error_message(response.text, reason=response.reason_phrase)
        raise MilvusRerankError(f"LLM endpoint {url} answered HTTP {response.status_code}: {message}")
    try:
        body = response.json()
        content = body["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise MilvusRerankError(
            f"LLM endpoint {url} answered without choices[0].message.content; is it an OpenAI-compatible chat API?"
        ) from None
    if not isinstance(content, str):
        raise MilvusRerankError(f"LLM endpoint {url} answered with a non-text message")
    return content.strip()
