"""Listwise reranking by any OpenAI-compatible chat model (``POST /v1/chat/completions``), RankGPT-style.

The windows, the prompt and the repair of answers are pure and live in
:mod:`milvus_rerank.rerankers.listwise`; this module sends one chat request per window through
:class:`~milvus_rerank.rerankers.http.client.HTTPReranker`'s request loops (so secrets, retries,
the response cap and redirects are those of every HTTP reranker) and reads the answers. The
windows run one after another, since each re-orders what the next one reads; ``deadline`` bounds
the whole call, all its windows and retries together.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from milvus_rerank.errors import RerankHTTPError, RerankResponseError, RerankTimeoutError
from milvus_rerank.rerankers.contract import DocumentsToScore, check_rerank_args, documents_to_score
from milvus_rerank.rerankers.http.client import HTTPReranker
from milvus_rerank.rerankers.http.options import HTTPOptions, Unpack
from milvus_rerank.rerankers.http.retry import RetryPolicy
from milvus_rerank.rerankers.http.service import RerankService
from milvus_rerank.rerankers.http.vllm import served_models
from milvus_rerank.rerankers.http.wire import decode_json, excerpt
from milvus_rerank.rerankers.listwise import (
    CHARS_PER_TOKEN,
    DEFAULT_PASSAGE_CHARS,
    ListwiseRanking,
    ListwiseStats,
    answer_tokens,
    chat_messages,
    passage_budget,
    window_calls,
)
from milvus_rerank.types import RerankResult
from milvus_rerank.validation import check_int

__all__ = ["ChatListwiseReranker", "chat_answer"]

logger = logging.getLogger("milvus_rerank.http")

_PASSAGE_CUT_OPTIONS = frozenset({"long_documents", "window_overlap", "max_windows", "tokenizer", "max_length"})
"""The cross-encoder options of :class:`~milvus_rerank.HTTPOptions` that mean nothing to a chat model."""

# When the running rerank call started, for the requests it makes (each thread and task has its own).
_CALL_STARTED: contextvars.ContextVar[float | None] = contextvars.ContextVar("listwise_call_started", default=None)


def chat_answer(body: Any, *, endpoint: str) -> tuple[str, bool]:
    """The text of the first choice in a chat-completions answer, and whether it stopped at ``max_tokens``.

    A ``null`` content (a model that answered nothing, or only in a reasoning field) reads as ``""``.

    Raises:
        RerankResponseError: The body has no ``choices[0].message`` or its content is not text.
    """
    choices = body.get("choices") if isinstance(body, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(choice, dict) or not isinstance(message, dict):
        raise RerankResponseError(
            f"{endpoint} sent a chat-completions answer without choices[0].message: is it an OpenAI-compatible "
            "chat endpoint?",
            endpoint=endpoint,
        )
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise RerankResponseError(
            f"{endpoint} sent a message content of type {type(content).__name__}, not text", endpoint=endpoint
        )
    return content or "", choice.get("finish_reason") == "length"


class ChatListwiseReranker(HTTPReranker):
    """Rerank with any chat LLM behind an OpenAI-compatible endpoint, RankGPT-style (listwise, sliding windows).

    The model reads ``window`` numbered passages and answers with their order (``[3] > [1] > [2]``).
    Windows slide from the bottom of the first-stage order to the top, ``step`` passages apart: a
    rerank of ``n`` passages costs ``ceil((n - window) / step) + 1`` chat calls (one when
    ``n <= window``). Every answer is repaired into a complete permutation, so no passage is ever
    lost or duplicated; :attr:`stats` counts the repairs. Scores are ranks, not probabilities: of
    ``n`` passages the best scores ``n``, the last ``1``. The repair rules, the request and the
    passage budget: docs/listwise.md.

    Args:
        endpoint: ``http://host:8000``, ``http://host:8000/v1`` or a full ``.../v1/chat/completions`` URL.
        model: Served model name. ``None`` asks ``GET /v1/models`` once and uses the first served
            model; that answer's ``max_model_len`` (vLLM gives it) also sizes the passages.
        window: Passages per chat call (at least 2).
        step: Positions between consecutive windows, 1 to ``window``; a passage climbs at most
            ``window - step`` places per window.
        max_calls: Refuse (``ValueError``, before any request) a rerank that would need more chat
            calls than this; ``None`` sets no cap.
        max_passage_chars: Cut each passage to this many characters (whitespace collapsed).
            ``None`` fits a full window into the served ``max_model_len`` (at a cautious 3
            characters per token), at most 1200 characters (RankGPT's 300 tokens); 1200 when the
            server does not say its context length.
        seed: Sent as the request's ``seed`` when set, for servers that sample even at ``temperature=0``.
        **options: The options of every HTTP reranker (:class:`~milvus_rerank.HTTPOptions`) but
            ``max_batch_size`` (``window`` sets how many passages a call reads). ``deadline``
            bounds a whole rerank call here, every window and retry included, not one request.
            ``extra_body`` may set any chat field (``max_tokens``, ``temperature``,
            ``chat_template_kwargs``) but ``model`` and ``messages``.

    Raises:
        TypeError: An argument of the wrong type, ``max_batch_size``, or an unknown option.
        ValueError: An invalid URL, key, header or number, or ``step`` larger than ``window``.

    Example:
        >>> reranker = ChatListwiseReranker("http://localhost:8000", window=20, step=10, max_calls=10)
        >>> reranker.calls_for(100)
        9
    """

    default_route = "/v1/chat/completions"
    routes = ("/chat/completions", "/v1/chat/completions")
    discovery_route = "/v1/models"
    discovers = "the served model and its context length"
    reserved_fields: ClassVar[frozenset[str]] = frozenset({"model", "messages"})

    def __init__(
        self,
        endpoint: str,
        *,
        model: str | None = None,
        window: int = 20,
        step: int = 10,
        max_calls: int | None = None,
        max_passage_chars: int | None = None,
        seed: int | None = None,
        **options: Unpack[HTTPOptions],
    ) -> None:
        """Check and keep the options (described on the class); no request is made yet."""
        if "max_batch_size" in options:
            raise TypeError(
                "ChatListwiseReranker() takes no max_batch_size: window= sets how many passages one chat call reads"
            )
        cutting = sorted(_PASSAGE_CUT_OPTIONS & set(options))
        if cutting:
            raise TypeError(
                f"ChatListwiseReranker() takes no {', '.join(cutting)}: a chat model reads a passage, not a "
                "(query, passage) pair; max_passage_chars= cuts passages to fit its context"
            )
        super().__init__(endpoint, model=model, **options)
        self.window = check_int(window, "window", minimum=2)
        self.step = check_int(step, "step")
        if self.step > self.window:
            raise ValueError(
                f"step ({self.step}) must not exceed window ({self.window}): the passages between two windows "
                "would never be read; use a step of about half the window"
            )
        self.max_calls = check_int(max_calls, "max_calls", optional=True)
        self.max_passage_chars = check_int(max_passage_chars, "max_passage_chars", optional=True)
        self.seed = check_int(seed, "seed", minimum=0, optional=True)
        self.max_model_len: int | None = None
        """The served model's context length in tokens, once ``GET /v1/models`` told it."""
        self._discovered = model is not None and max_passage_chars is not None
        self._stats = ListwiseStats()
        self._stats_lock = threading.Lock()

    # -- cost and counts ------------------------------------------------------------------------

    def calls_for(self, n_documents: int) -> int:
        """Chat calls a rerank of ``n_documents`` non-blank documents makes: ``ceil((n - window) / step) + 1``."""
        return window_calls(n_documents, self.window, self.step)

    @property
    def stats(self) -> ListwiseStats:
        """What this reranker has asked and repaired so far, over every call (a snapshot)."""
        with self._stats_lock:
            return self._stats

    def _check_cost(self, n_documents: int) -> ListwiseRanking:
        calls = self.calls_for(n_documents)
        if self.max_calls is not None and calls > self.max_calls:
            most = self.window + (self.max_calls - 1) * self.step
            raise ValueError(
                f"reranking {n_documents} documents with window={self.window}, step={self.step} takes {calls} chat "
                f"calls, more than max_calls={self.max_calls}: rerank at most {most} documents (a smaller first-stage "
                "limit), or raise window=, step= or max_calls="
            )
        return ListwiseRanking(n_documents, self.window, self.step)

    def _record(self, ranking: ListwiseRanking, n_documents: int) -> None:
        stats = ranking.stats
        with self._stats_lock:
            self._stats += stats
        logger.debug(
            "listwise rerank of %d passages at %s: %d of %d windows ranked, %d repaired (%d out-of-range, "
            "%d repeated, %d missing identifiers), %d without any identifier, %d cut at max_tokens",
            n_documents,
            self.endpoint.display,
            stats.windows,
            len(ranking.windows),
            stats.repaired_windows,
            stats.out_of_range,
            stats.repeated,
            stats.missing,
            stats.unparsed_windows,
            stats.truncated_windows,
        )

    # -- the chat wire (pure) -------------------------------------------------------------------

    def _passage_chars(self, query: str) -> int:
        if self.max_passage_chars is not None:
            return self.max_passage_chars
        if self.max_model_len is None:
            return DEFAULT_PASSAGE_CHARS
        return passage_budget(max_model_len=self.max_model_len, window=self.window, query=query)

    def _build_payload(self, query: str, documents: Sequence[str], top_n: int | None) -> dict[str, Any]:
        """The chat request for one window of ``documents`` (``top_n`` has no meaning here)."""
        payload: dict[str, Any] = {
            "messages": chat_messages(query, documents, passage_chars=self._passage_chars(query)),
            "temperature": 0,
            "max_tokens": answer_tokens(len(documents)),
        }
        if self.model is not None:
            payload["model"] = self.model
        if self.seed is not None:
            payload["seed"] = self.seed
        payload.update(self._extra_body)
        return payload

    def _window_request(self, query: str, texts: Sequence[str], ranking: ListwiseRanking, window: range) -> bytes:
        payload = self._build_payload(query, ranking.passages(window, texts), None)
        return json.dumps(payload, ensure_ascii=False).encode("utf-8")

    def _apply(self, ranking: ListwiseRanking, window: range, number: int, content: bytes) -> None:
        """Re-order ``window`` by the answer in ``content``; warn when it named no passage."""
        endpoint = self.endpoint.display
        answer, truncated = chat_answer(decode_json(content, endpoint=endpoint, redact=self._redact), endpoint=endpoint)
        if ranking.apply(window, answer, truncated=truncated).unparsed:
            logger.warning(
                "%s answered window %d of %d without any passage identifier; its %d passages keep their order "
                "(answer starts: %s)",
                endpoint,
                number,
                len(ranking.windows),
                len(window),
                self._redact(repr(excerpt(self._redact(answer)))),
            )

    def _out_of_time(self, exc: RerankTimeoutError, number: int, ranking: ListwiseRanking) -> RerankTimeoutError:
        return RerankTimeoutError(
            f"{exc} (while ranking window {number} of {len(ranking.windows)}; deadline= "
            f"({self.retry_policy.deadline:g} s) bounds the whole rerank call: raise it, or rerank fewer documents)",
            endpoint=exc.endpoint,
        )

    def _http_error(self, endpoint: str, status: int, message: str, tries: str) -> RerankHTTPError:
        error = super()._http_error(endpoint, status, message, tries)
        if status != 400 or "context" not in message.lower():
            return error
        return RerankHTTPError(
            f"{error}; a window does not fit the model's context: pass a smaller max_passage_chars= or window= "
            f"(passages are cut at {CHARS_PER_TOKEN} characters per token, too many for some tokenizers)",
            endpoint=error.endpoint,
            status_code=status,
            server_message=message,
        )

    def _request_policy(self) -> RetryPolicy:
        """The retry policy with what is left of the running rerank call's deadline."""
        started = _CALL_STARTED.get()
        policy = self.retry_policy
        if started is None or math.isinf(policy.deadline):
            return policy
        left = policy.deadline - (time.monotonic() - started)
        if left <= 0:
            raise RerankTimeoutError(
                f"{self.endpoint.display}: the rerank call used up its {policy.deadline:g} s deadline",
                endpoint=self.endpoint.display,
            )
        return dataclasses.replace(policy, deadline=left)

    # -- discovery: the served model and its context length --------------------------------------

    def _needs_discovery(self) -> bool:
        return not self._discovered

    def _adopt(self, body: Any) -> None:
        names = served_models(body)
        if self.model is None and names:
            self.model = names[0]
        for item in body["data"]:
            length = item.get("max_model_len") if isinstance(item, dict) and item.get("id") == self.model else None
            if isinstance(length, int) and not isinstance(length, bool) and length > 0:
                self.max_model_len = length
        logger.info(
            "%s serves %s; using model %s (context %s tokens)",
            self.endpoint.display,
            self._redact(str(names)),
            self._redact(repr(self.model)),
            self.max_model_len if self.max_model_len is not None else "unknown",
        )
        self._discovered = True

    def _discovery_failed(self, exc: RerankHTTPError) -> None:
        if exc.status_code not in (404, 405):
            raise exc
        logger.info(
            "%s has no /v1/models route; requests go without 'model', passages cut at %d characters",
            self.endpoint.display,
            self.max_passage_chars or DEFAULT_PASSAGE_CHARS,
        )
        self._discovered = True

    # -- I/O: the windows, one after another -----------------------------------------------------

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        """Rank ``documents`` for ``query`` by the chat model, window by window, and return them best first.

        Args:
            query: The search query.
            documents: Texts in their first-stage order (it matters: windows start from the bottom).
                Zero documents return ``[]`` without any request; blank ones are never sent and rank last.
            top_n: Keep only the best ``top_n``; ``None`` keeps all.

        Returns:
            Results sorted by score descending; scores are ranks (``n`` for the best of ``n``), not probabilities.

        Raises:
            ValueError: The rerank would take more than ``max_calls`` chat calls, or a window cannot
                fit the model's context.
            RerankHTTPError: The server answered a window with an error status (after retries, if retryable).
            RerankTimeoutError: The call did not finish within ``timeout`` per attempt or ``deadline`` in all.
            RerankConnectionError: The server could not be reached.
            RerankResponseError: An answer was not a chat completion (a wrong ranking is repaired, not an error).
        """
        to_score = documents_to_score(check_rerank_args(query, documents, top_n))
        if not to_score.texts:
            return to_score.results([], top_n)
        ranking = self._check_cost(len(to_score.texts))
        started = _CALL_STARTED.set(time.monotonic())
        try:
            self._discover()
            for number, window in enumerate(ranking.windows, 1):
                content = self._window_request(query, to_score.texts, ranking, window)
                try:
                    body = self._request("POST", self.endpoint.rerank_url, content=content, n_documents=len(window))
                except RerankTimeoutError as exc:
                    raise self._out_of_time(exc, number, ranking) from exc
                self._apply(ranking, window, number, body)
        finally:
            _CALL_STARTED.reset(started)
            self._record(ranking, len(to_score.texts))
        return self._results(to_score, ranking, top_n)

    async def arerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        """Async twin of :meth:`rerank`, on ``httpx.AsyncClient``.

        Raises:
            RerankError: As :meth:`rerank`; ``ValueError`` as there too.
        """
        to_score = documents_to_score(check_rerank_args(query, documents, top_n))
        if not to_score.texts:
            return to_score.results([], top_n)
        ranking = self._check_cost(len(to_score.texts))
        started = _CALL_STARTED.set(time.monotonic())
        try:
            await self._adiscover()
            for number, window in enumerate(ranking.windows, 1):
                content = self._window_request(query, to_score.texts, ranking, window)
                try:
                    body = await self._arequest(
                        "POST", self.endpoint.rerank_url, content=content, n_documents=len(window)
                    )
                except RerankTimeoutError as exc:
                    raise self._out_of_time(exc, number, ranking) from exc
                self._apply(ranking, window, number, body)
        finally:
            _CALL_STARTED.reset(started)
            self._record(ranking, len(to_score.texts))
        return self._results(to_score, ranking, top_n)

    @staticmethod
    def _results(to_score: DocumentsToScore, ranking: ListwiseRanking, top_n: int | None) -> list[RerankResult]:
        return to_score.results(ranking.results(), top_n)

    def describe(self) -> RerankService:
        """Not available: no Milvus model ranker calls a chat model, so this reranker runs on the client only.

        Raises:
            TypeError: Always, saying where it can run.
        """
        raise TypeError(
            "ChatListwiseReranker has no Milvus model ranker (Milvus calls rerank endpoints, not chat models): "
            "rerank on the client, with RerankPipeline or the LangChain / LlamaIndex adapters"
        )

    def _repr_options(self) -> str:
        return f"window={self.window}, step={self.step}, max_calls={self.max_calls!r}"
