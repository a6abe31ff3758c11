"""A reranker served by vLLM (``vllm serve MODEL --task score``) over its rerank API."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from milvus_rerank.errors import RerankError, RerankHTTPError, RerankResponseError
from milvus_rerank.rerankers.http.client import HTTPReranker
from milvus_rerank.rerankers.http.options import HTTPOptions, Unpack
from milvus_rerank.rerankers.prompts import PromptFormat, check_prompt_options
from milvus_rerank.types import RerankResult
from milvus_rerank.validation import check_int

__all__ = ["VLLMReranker", "build_vllm_payload", "served_models"]

logger = logging.getLogger("milvus_rerank.http")


def build_vllm_payload(
    query: str,
    documents: Sequence[str],
    *,
    model: str | None,
    top_n: int | None,
    truncate_prompt_tokens: int | None,
    raw_scores: bool,
    instruction: str | None = None,
    max_tokens_per_doc: int | None = None,
    max_tokens_per_query: int | None = None,
) -> dict[str, Any]:
    """The body of ``POST /v1/rerank`` for one batch (pure).

    An option is sent only when set (vLLM reads ``top_n=0`` as "all", Infinity refuses it);
    ``raw_scores`` in both of vLLM's spellings. What each field needs of the server: docs/versions.md.
    """
    payload: dict[str, Any] = {"query": query, "documents": list(documents)}
    if model is not None:
        payload["model"] = model
    if top_n is not None:
        payload["top_n"] = top_n
    if truncate_prompt_tokens is not None:
        payload["truncate_prompt_tokens"] = truncate_prompt_tokens
    if raw_scores:
        payload["use_activation"] = False
        payload["activation"] = False
    if instruction is not None:
        payload["instruction"] = instruction
    if max_tokens_per_doc is not None:
        payload["max_tokens_per_doc"] = max_tokens_per_doc
    if max_tokens_per_query is not None:
        payload["max_tokens_per_query"] = max_tokens_per_query
    return payload


def served_models(body: Any) -> list[str]:
    """The served model names in a ``GET /v1/models`` body (``data[i].id``)."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise RerankResponseError("the /v1/models answer has no 'data' list")
    return [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]


class VLLMReranker(HTTPReranker):
    """Rerank with a model served by vLLM (``/v1/rerank``; also Jina-compatible servers).

    The options not listed here (batching, concurrency, retries, keys...) are those of every HTTP
    reranker, :class:`~milvus_rerank.HTTPOptions`. How to serve an LLM reranker, and where its
    prompt is applied: docs/llm-rerankers.md; what each option needs of the server: docs/versions.md.

    Args:
        endpoint: ``http://host:8000``, ``http://host:8000/v1`` or a full ``.../rerank`` URL; or a
            list of servers of the same model, each batch to the least busy.
        model: Served model name; ``None`` reads it once from ``GET /v1/models``.
        truncate_prompt_tokens: Cut each (query, document) pair to this many tokens (``-1``: the
            model's limit); ``None`` sends nothing, and an over-long pair is a 400 error. vLLM cuts
            the end of the prompt, so not with ``prompt_format`` (a warning says why).
        raw_scores: Return raw logits instead of the model's activation (sigmoid).
        instruction: The task an LLM reranker reads: written into the prompt with ``prompt_format``,
            else sent in the request's ``instruction`` field for the server's ``--chat-template``.
            ``None`` keeps the format's or the template's default.
        prompt_format: Wrap query and documents in an LLM reranker's prompt on the client
            (``"qwen3"`` or a :class:`~milvus_rerank.PromptFormat`), for a server started
            **without** ``--chat-template``: with one, the prompt would apply twice and the model
            rank at random. ``None`` sends the texts as they are.
        max_tokens_per_doc: The server cuts each document to this many tokens;
            ``long_documents="windows"`` scores a long document whole instead.
        max_tokens_per_query: The server cuts the query to this many tokens.

    Example:
        >>> reranker = VLLMReranker("http://localhost:8000", model="BAAI/bge-reranker-v2-m3")
        >>> reranker.rerank("what is milvus?", ["a vector database", "a bird"], top_n=1)  # doctest: +SKIP
    """

    protocol = "vllm"
    default_route = "/v1/rerank"
    default_batch_size = 64
    discovery_route = "/v1/models"
    discovers = "the served model"

    def __init__(
        self,
        endpoint: str | Sequence[str],
        *,
        model: str | None = None,
        truncate_prompt_tokens: int | None = None,
        raw_scores: bool = False,
        instruction: str | None = None,
        prompt_format: str | PromptFormat | None = None,
        max_tokens_per_doc: int | None = None,
        max_tokens_per_query: int | None = None,
        **options: Unpack[HTTPOptions],
    ) -> None:
        """Check and keep the options (described on the class); no request is made yet."""
        super().__init__(endpoint, model=model, **options)
        if truncate_prompt_tokens is not None and (
            isinstance(truncate_prompt_tokens, bool)
            or not isinstance(truncate_prompt_tokens, int)
            or (truncate_prompt_tokens < 1 and truncate_prompt_tokens != -1)
        ):
            raise ValueError(
                f"truncate_prompt_tokens must be None, -1 or a positive int, got {truncate_prompt_tokens!r}"
            )
        if not isinstance(raw_scores, bool):
            raise TypeError(f"raw_scores must be a bool, got {type(raw_scores).__name__}")
        self.truncate_prompt_tokens = truncate_prompt_tokens
        self.max_tokens_per_doc = check_int(max_tokens_per_doc, "max_tokens_per_doc", optional=True)
        self.max_tokens_per_query = check_int(max_tokens_per_query, "max_tokens_per_query", optional=True)
        self.raw_scores = raw_scores
        self.prompt_format = check_prompt_options(prompt_format, instruction=instruction)
        self.instruction = instruction
        self._check_llm_options(self._extra_body)
        self._discovered = model is not None

    def _check_llm_options(self, extra_body: Mapping[str, Any] | None) -> None:
        """Refuse an instruction given twice; warn where truncation would cut a wrapped prompt's answer cue."""
        if self.instruction is not None and extra_body and {"instruction", "chat_template_kwargs"} & set(extra_body):
            raise ValueError(
                "instruction= and extra_body's 'instruction' / 'chat_template_kwargs' both set the instruction: "
                "pass it once, as instruction="
            )
        if self.prompt_format is not None and self.truncate_prompt_tokens is not None:
            warnings.warn(
                "truncate_prompt_tokens cuts an over-long prompt at its end, which with prompt_format= is the "
                "format's text after the document, the cue the model answers: a truncated document's score "
                "means nothing. Keep documents "
                "within the model's limit (smaller chunks), or serve the model with --chat-template and cut "
                "documents with extra_body={'max_tokens_per_doc': N} instead of prompt_format=",
                UserWarning,
                stacklevel=3,
            )

    def _window_prompt(self) -> tuple[PromptFormat | None, str | None]:
        return self.prompt_format, self.instruction

    def _build_payload(self, query: str, documents: Sequence[str], top_n: int | None) -> dict[str, Any]:
        instruction = self.instruction
        if self.prompt_format is not None:
            rendered = self.prompt_format.render(query, documents, instruction=instruction)
            # The instruction is inside the query part now; a template on the server has nothing to add.
            query, documents, instruction = rendered.query, rendered.documents, None
        return build_vllm_payload(
            query,
            documents,
            model=self.model,
            top_n=top_n,
            truncate_prompt_tokens=self.truncate_prompt_tokens,
            raw_scores=self.raw_scores,
            instruction=instruction,
            max_tokens_per_doc=self.max_tokens_per_doc,
            max_tokens_per_query=self.max_tokens_per_query,
        )

    # -- model discovery and the unknown-model error --------------------------------------------

    def _needs_discovery(self) -> bool:
        return not self._discovered

    def _adopt(self, body: Any) -> None:
        names = served_models(body)
        if names:
            self.model = names[0]
            logger.info(
                "%s serves %s; using model %s",
                self.endpoint.display,
                self._redact(str(names)),
                self._redact(repr(self.model)),
            )
        self._discovered = True

    def _discovery_failed(self, exc: RerankHTTPError) -> None:
        if exc.status_code not in (404, 405):
            raise exc
        # Not vLLM (a proxy or another server): newer servers do not need the field.
        logger.info("%s has no /v1/models route; sending requests without 'model'", self.endpoint.display)
        self._discovered = True

    def _unknown_model(self, exc: RerankHTTPError, listing: Any) -> RerankHTTPError:
        try:
            names = served_models(listing)
        except RerankError:
            names = []
        message = (
            f"{str(exc).rstrip('.')}; the server serves {self._redact(str(names))}: pass model= one of them, "
            "or model=None to pick the served one"
            if names
            else str(exc)
        )
        return RerankHTTPError(
            message, endpoint=exc.endpoint, status_code=exc.status_code, server_message=exc.server_message
        )

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        """Score ``documents`` against ``query`` on the vLLM server and return them best first.

        See :meth:`HTTPReranker.rerank`. A 404 for an unknown model lists the served models.

        Raises:
            RerankError: A subclass saying what failed (HTTP status, timeout, connection, bad answer).
        """
        try:
            return super().rerank(query, documents, top_n=top_n)
        except RerankHTTPError as exc:
            if exc.status_code != 404 or self.model is None:
                raise
            listing = self._listing()
            raise self._unknown_model(exc, listing) from exc

    async def arerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        """Async twin of :meth:`rerank`.

        Raises:
            RerankError: As :meth:`rerank`.
        """
        try:
            return await super().arerank(query, documents, top_n=top_n)
        except RerankHTTPError as exc:
            if exc.status_code != 404 or self.model is None:
                raise
            listing = await self._alisting()
            raise self._unknown_model(exc, listing) from exc

    def _listing(self) -> Any:
        try:
            return self._get_json("/v1/models")
        except RerankError:
            return None

    async def _alisting(self) -> Any:
        try:
            return await self._aget_json("/v1/models")
        except RerankError:
            return None

    # -- what Milvus's model ranker needs (see HTTPReranker.describe) ----------------------------

    def _service_options(self) -> dict[str, Any]:
        return {
            "truncate_prompt_tokens": self.truncate_prompt_tokens,
            "raw_scores": self.raw_scores,
            "prompt_format": self._prompt_format_label(),
            "instruction": self.instruction,
            "max_tokens_per_doc": self.max_tokens_per_doc,
            "max_tokens_per_query": self.max_tokens_per_query,
        }

    def _prompt_format_label(self) -> str | None:
        """How a warning names this reranker's prompt format: its name, or ``"custom"``."""
        if self.prompt_format is None:
            return None
        return self.prompt_format.name or "custom"
