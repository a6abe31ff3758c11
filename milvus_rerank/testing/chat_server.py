"""An OpenAI-compatible chat server on loopback that answers listwise-ranking prompts with scripted permutations.

For tests of :class:`~milvus_rerank.ChatListwiseReranker` without an LLM::

    with ChatTestServer() as server:
        reranker = ChatListwiseReranker(server.url, window=4, step=2)
        reranker.rerank("query", texts)
        server.rerank_requests  # every chat request, with its messages

It reads the passages (``[k] text`` lines) and the ``Search Query:`` line of the last user
message, ranks the passages with any :class:`~milvus_rerank.types.Reranker` (by default word
overlap) and answers ``[3] > [1] > [2]``; or ``answer(query, passages)`` writes the answer text
itself (a malformed one, for instance). It is :class:`~milvus_rerank.testing.server.RerankTestServer`
with other routes, so the lifecycle, the request log, the API key check and every
:class:`~milvus_rerank.testing.server.Fault` work alike (``Fault.respond(200, chat_completion("..."))``
sends any answer once). Like vLLM it lists its model with ``max_model_len`` at ``GET /v1/models``,
answers 404 to another model name, and refuses (400) a prompt plus ``max_tokens`` over
``max_model_len`` (counting a token per 4 characters).
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from milvus_rerank.testing.faults import _ANSWERS_WITHOUT_SCORING, Fault, _fault_reply, _json_reply, _Reply, _trickled
from milvus_rerank.testing.server import RerankTestServer
from milvus_rerank.types import Reranker

__all__ = ["ChatTestServer", "Fault", "chat_completion"]

CHAT_ROUTES = ("/v1/chat/completions", "/chat/completions")

_PASSAGE_LINE = re.compile(r"^\[(\d+)\] (.*)$", re.MULTILINE)
_QUERY_LINE = re.compile(r"^Search Query: (.*)$", re.MULTILINE)
_CHARS_PER_TOKEN = 4


def chat_completion(content: str | None, *, model: str = "tiny-chat", finish_reason: str = "stop") -> dict[str, Any]:
    """A chat-completions answer body holding ``content``, as vLLM writes it."""
    tokens = math.ceil(len(content or "") / _CHARS_PER_TOKEN)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens},
    }


class ChatTestServer(RerankTestServer):
    """A chat-completions server on ``127.0.0.1`` and an ephemeral port that ranks numbered passages.

    Args:
        ranker: Orders the passages of each prompt; default word overlap with the query.
        answer: ``answer(query, passages) -> str`` writes each answer instead of ``ranker``.
        model_name: The served model (``/v1/models``; requests naming another get a 404).
        api_key: When set, every route but ``/health`` wants ``Authorization: Bearer <key>``.
        service_time: Seconds each chat request takes, slept outside any lock.
        max_model_len: The context length reported and enforced, in tokens of 4 characters.
    """

    answer_routes: ClassVar[tuple[str, ...]] = CHAT_ROUTES

    def __init__(
        self,
        ranker: Reranker | None = None,
        *,
        answer: Callable[[str, list[str]], str | None] | None = None,
        model_name: str = "tiny-chat",
        api_key: str | None = None,
        service_time: float = 0.0,
        max_model_len: int = 32768,
    ) -> None:
        """Configure the server; it listens once started."""
        super().__init__(
            ranker, model_name=model_name, api_key=api_key, service_time=service_time, max_model_len=max_model_len
        )
        self.answer = answer

    def _post(self, path: str, headers: dict[str, str], body: Any, fault: Fault | None) -> _Reply | None:
        if path not in self.answer_routes:
            return self._error(404, f"Not Found: {path}")
        if fault is not None and fault.kind in _ANSWERS_WITHOUT_SCORING:
            return _fault_reply(fault, headers)
        if not self._authorized(headers):
            return self._unauthorized()
        if fault is not None and fault.kind == "malformed_json":
            return _Reply(200, b'{"choices": [{"message": {"content": "[1] >', {"Content-Type": "application/json"})
        if not isinstance(body, dict):
            return self._error(400, "Invalid JSON body")
        return _trickled(self._complete(body), fault)

    def _complete(self, body: dict[str, Any]) -> _Reply:
        model, messages, max_tokens = body.get("model"), body.get("messages"), body.get("max_tokens")
        if model is not None and model != self.model_name:
            return self._error(404, f"The model `{model}` does not exist.")
        if (
            not isinstance(messages, list)
            or not messages
            or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages
            )
        ):
            return self._error(400, "messages must be a non-empty list of {role, content} objects")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            return self._error(400, "max_tokens must be a positive integer")
        prompt_tokens = sum(math.ceil(len(m["content"]) / _CHARS_PER_TOKEN) for m in messages)
        if prompt_tokens + (max_tokens or 0) > self.max_model_len:
            return self._error(
                400,
                f"This model's maximum context length is {self.max_model_len} tokens. However, you requested "
                f"{prompt_tokens + (max_tokens or 0)} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
                "completion). Please reduce the length of the messages or completion.",
            )
        user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        query_line = _QUERY_LINE.search(user)
        query = query_line.group(1) if query_line else ""
        passages = [match.group(2) for match in _PASSAGE_LINE.finditer(user)]
        time.sleep(self.service_time)
        if self.answer is not None:
            content = self.answer(query, passages)
        else:
            with self._score_lock:
                ranked = self.reranker.rerank(query, passages) if passages else []
            content = " > ".join(f"[{result.index + 1}]" for result in ranked)
        return _json_reply(200, chat_completion(content, model=self.model_name))
