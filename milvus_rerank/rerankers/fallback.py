"""A chain of rerankers: the first one that can answer scores the whole call.

``FallbackReranker([VLLMReranker(...), CrossEncoderReranker(...)])`` asks the first reranker; when
it fails in a way that says "not now" (:func:`falls_through`), it logs one warning line and asks
the next one, with every document again. Scores of different rerankers are not comparable, so a
call is always scored by one reranker only, never a mix, and each result says which one
(``RerankResult.scored_by``; the adapters write it to the metadata as ``scored_by``). When the last
one fails too, its error is raised: with ``on_error="passthrough"`` on the pipeline or an adapter,
the first-stage order is then the chain's last step.

Which errors fall through (:func:`falls_through`): the server could not be reached or dropped the
connection, no answer in time, an HTTP 5xx (and 408, 429), a malformed answer or one that breaks the
Reranker contract, any other ``RerankError``, and a user's reranker's own ``ConnectionError`` or
``TimeoutError``. Everything else raises at once, because the next reranker would fail alike or
the failure hides a bug: a 4xx that says the request is wrong (400, 401, 403, 404, 413, 422, ...),
a bad argument (``TypeError``, ``ValueError``), a model that cannot be loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

from milvus_rerank.errors import RerankError, RerankHTTPError
from milvus_rerank.rerankers.contract import check_answer, check_rerank_args
from milvus_rerank.types import Reranker, RerankResult

__all__ = ["FALLS_THROUGH_STATUSES", "FallbackReranker", "falls_through"]

logger = logging.getLogger(__name__)

FALLS_THROUGH_STATUSES = frozenset({408, 429})
"""The 4xx statuses that mean "not now" rather than "wrong request"; every 5xx falls through too."""


def falls_through(exc: BaseException) -> bool:
    """Whether ``exc`` lets the next reranker of a chain try (see the module's rule).

    Args:
        exc: What a reranker raised.

    Returns:
        ``True`` for a failure of the service (connection, timeout, 5xx, 408, 429, malformed
        answer, any other ``RerankError``, a builtin ``ConnectionError`` / ``TimeoutError``);
        ``False`` for a mistake in the request or its arguments, which must surface.
    """
    if isinstance(exc, RerankHTTPError):
        return exc.status_code >= 500 or exc.status_code in FALLS_THROUGH_STATUSES
    return isinstance(exc, (RerankError, ConnectionError, TimeoutError))


class FallbackReranker:
    """Rerankers tried in order; the first that answers scores every document of the call.

    A :class:`~milvus_rerank.Reranker` itself: give it to ``RerankPipeline``, ``RerankCompressor``
    or ``RerankPostprocessor`` as any other. Each result's ``scored_by`` names the reranker that
    scored the call. Each fall-through logs one warning on the ``milvus_rerank.rerankers.fallback``
    logger, naming the reranker that failed, its error's class and the one tried next.

    Args:
        rerankers: Two or more rerankers (objects with ``rerank`` and ``arerank``), best first.
        names: A name for each, for ``scored_by`` and the log; default the class name, with the
            position in brackets when two are of one class (``VLLMReranker[0]``).

    Raises:
        TypeError: ``rerankers`` is not a sequence of rerankers, or a name is not a str.
        ValueError: Fewer than two rerankers, or names empty, repeated or not one per reranker.

    Example:
        >>> chain = FallbackReranker([VLLMReranker("http://gpu:8000"), CrossEncoderReranker(path)])  # doctest: +SKIP
        >>> RerankPipeline(chain, on_error="passthrough")  # then the first-stage order  # doctest: +SKIP
    """

    def __init__(self, rerankers: Sequence[Reranker], *, names: Sequence[str] | None = None) -> None:
        """Check and keep the chain (described on the class)."""
        if isinstance(rerankers, (str, bytes)) or not isinstance(rerankers, Sequence):
            raise TypeError(f"rerankers must be a list of rerankers, got {type(rerankers).__name__}")
        for position, reranker in enumerate(rerankers):
            if not (callable(getattr(reranker, "rerank", None)) and callable(getattr(reranker, "arerank", None))):
                raise TypeError(
                    f"rerankers[{position}] must have rerank() and arerank() methods, got {type(reranker).__name__}"
                )
        if len(rerankers) < 2:
            raise ValueError(f"a FallbackReranker needs two rerankers or more, got {len(rerankers)}: use the one alone")
        self.rerankers: tuple[Reranker, ...] = tuple(rerankers)
        self.names: tuple[str, ...] = self._names(names)

    def _names(self, names: Sequence[str] | None) -> tuple[str, ...]:
        if names is None:
            classes = [type(reranker).__name__ for reranker in self.rerankers]
            return tuple(
                f"{name}[{position}]" if classes.count(name) > 1 else name for position, name in enumerate(classes)
            )
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise TypeError(f"names must be a list of str, got {type(names).__name__}")
        if any(not isinstance(name, str) for name in names):
            raise TypeError("names must be a list of str")
        if len(names) != len(self.rerankers) or len(set(names)) != len(names) or not all(names):
            raise ValueError(
                f"names must give each of the {len(self.rerankers)} rerankers its own non-empty name, got {list(names)}"
            )
        return tuple(names)

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        """Score ``documents`` with the first reranker that answers; results best first.

        Raises:
            TypeError, ValueError: A bad argument, before any reranker is asked.
            Exception: The error of a reranker that does not fall through, or the last one's.
        """
        check_rerank_args(query, documents, top_n)
        if not documents:
            return []
        for position, reranker in enumerate(self.rerankers[:-1]):
            try:
                answer = reranker.rerank(query, documents, top_n=top_n)
                return self._scored(position, answer, len(documents), top_n)
            except Exception as exc:
                if not falls_through(exc):
                    raise
                self._fell_through(position, exc)
        answer = self.rerankers[-1].rerank(query, documents, top_n=top_n)
        return self._scored(len(self.rerankers) - 1, answer, len(documents), top_n)

    async def arerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        """Async twin of :meth:`rerank`, awaiting each reranker's own ``arerank``."""
        check_rerank_args(query, documents, top_n)
        if not documents:
            return []
        for position, reranker in enumerate(self.rerankers[:-1]):
            try:
                answer = await reranker.arerank(query, documents, top_n=top_n)
                return self._scored(position, answer, len(documents), top_n)
            except Exception as exc:
                if not falls_through(exc):
                    raise
                self._fell_through(position, exc)
        answer = await self.rerankers[-1].arerank(query, documents, top_n=top_n)
        return self._scored(len(self.rerankers) - 1, answer, len(documents), top_n)

    def _scored(self, position: int, answer: object, n_documents: int, top_n: int | None) -> list[RerankResult]:
        """The answer of reranker ``position``, checked (a broken one falls through) and signed with its name."""
        results = check_answer(self.rerankers[position], answer, n_documents=n_documents, top_n=top_n)
        name = self.names[position]
        return [replace(result, scored_by=name) for result in results]

    def _fell_through(self, position: int, exc: Exception) -> None:
        logger.warning(
            "reranker %s failed (%s); falling through to %s",
            self.names[position],
            type(exc).__name__,
            self.names[position + 1],
        )

    def close(self) -> None:
        """Close each reranker that has a ``close`` method."""
        for reranker in self.rerankers:
            close = getattr(reranker, "close", None)
            if callable(close):
                close()

    async def aclose(self) -> None:
        """Await each reranker's ``aclose``, or call its ``close`` when it has only that."""
        for reranker in self.rerankers:
            aclose, close = getattr(reranker, "aclose", None), getattr(reranker, "close", None)
            if callable(aclose):
                await aclose()
            elif callable(close):
                close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self.names)})"
