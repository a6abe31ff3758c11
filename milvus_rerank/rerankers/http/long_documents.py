"""``long_documents="windows"`` over HTTP: :class:`ClientWindows` cuts the windows on the client."""

from __future__ import annotations

import logging
from typing import Any

from milvus_rerank.rerankers.windows import (
    DEFAULT_MAX_WINDOWS,
    ClientTokenizer,
    WindowedCall,
    plan_windows,
    window_options,
)
from milvus_rerank.types import RerankResult
from milvus_rerank.validation import check_int

__all__ = ["ClientWindows"]

logger = logging.getLogger("milvus_rerank.http")


class ClientWindows:
    """The long-document policy of an HTTP reranker, with the served model's tokenizer to cut windows.

    A server scores what it is sent: under ``"windows"`` the client cuts each over-long document
    into windows of the served model's own tokens (see :mod:`milvus_rerank.rerankers.windows`),
    sends every window, and keeps each document's best window and its span.

    Args:
        long_documents: ``"truncate"`` (send documents as they are) or ``"windows"``.
        window_overlap: Tokens shared by neighbouring windows; ``None``: a quarter of a window.
        max_windows: The most windows one document becomes.
        tokenizer: The served model's tokenizer (a directory, hub id or loaded fast tokenizer).
        max_length: The server's limit on a pair's tokens; ``None`` takes the tokenizer's.

    Raises:
        ValueError: ``"windows"`` without a tokenizer, or an invalid option.
    """

    def __init__(
        self,
        long_documents: str = "truncate",
        window_overlap: int | None = None,
        max_windows: int = DEFAULT_MAX_WINDOWS,
        tokenizer: Any = None,
        max_length: int | None = None,
    ) -> None:
        self.options = window_options(long_documents, window_overlap, max_windows)
        self.max_length = check_int(max_length, "max_length", minimum=4, optional=True)
        if self.options.windows and tokenizer is None:
            raise ValueError(
                "long_documents='windows' cuts windows on the client with the served model's tokenizer: pass "
                "tokenizer= (its directory or hub id, or a loaded fast tokenizer) and max_length= (the server's limit)"
            )
        self._tokenizer = None if tokenizer is None else ClientTokenizer(tokenizer)

    @property
    def enabled(self) -> bool:
        """Whether documents are cut into windows."""
        return self.options.windows and self._tokenizer is not None

    def plan(
        self, query: str, texts: list[str], *, prompt_format: Any = None, instruction: str | None = None, where: str
    ) -> WindowedCall | None:
        """The texts to send for ``texts`` (each document, or its windows); ``None`` when not cutting.

        ``prompt_format`` and ``instruction`` are those the client renders around each pair, so a
        window is measured as the server will read it; ``where`` names the endpoint in the debug log.
        """
        tokenizer = self._tokenizer
        if not self.options.windows or tokenizer is None:
            return None
        max_length = self.max_length or tokenizer.model_max_length()
        if max_length is None:
            raise ValueError(
                "long_documents='windows' needs the pair's token limit and the tokenizer declares none: pass "
                "max_length= (the server's limit, e.g. vLLM's max_model_len)"
            )
        call = plan_windows(
            query,
            texts,
            max_length=max_length,
            options=self.options,
            pair_lengths=lambda query, documents, limit: tokenizer.pair_lengths(
                query, documents, limit, prompt_format=prompt_format, instruction=instruction
            ),
            token_offsets=tokenizer.token_offsets,
        )
        if call.split:
            logger.debug("%s: %s", where, call.summary(max_length))
        return call

    @staticmethod
    def best(results: list[RerankResult], call: WindowedCall | None) -> list[RerankResult]:
        """Results per document from results per window: each document's best window, with its span."""
        if call is None:
            return results
        scores = [0.0] * len(call.texts)
        for result in results:
            scores[result.index] = result.score
        best, spans = call.best(scores, len(set(call.owners)))
        return [RerankResult(index, score, span) for index, (score, span) in enumerate(zip(best, spans, strict=True))]
