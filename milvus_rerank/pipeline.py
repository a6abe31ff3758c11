"""The two-stage pipeline: retrieve -> dedupe -> rerank -> ``score_threshold`` -> ``top_n``.

Both framework adapters are built on :class:`RerankPipeline`: the LangChain compressor and the
LlamaIndex postprocessor use its second stage alone (:meth:`RerankPipeline.rerank`), the
retrievers run both stages (:meth:`RerankPipeline.run`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal, Protocol, runtime_checkable

from milvus_rerank.errors import RerankResponseError
from milvus_rerank.rerankers.base import check_rerank_args, check_top_n, rank
from milvus_rerank.types import Candidate, Reranker, RerankResult

__all__ = ["CandidateRetriever", "OnError", "RerankPipeline", "dedupe"]

logger = logging.getLogger(__name__)

OnError = Literal["raise", "passthrough"]
_ON_ERROR_CHOICES = ("raise", "passthrough")


@runtime_checkable
class CandidateRetriever(Protocol):
    """A first stage: anything that turns a query into candidates (e.g. ``MilvusRetriever``)."""

    def retrieve(self, query: str) -> list[Candidate]:
        """Return the first-stage candidates for ``query``."""
        ...

    async def aretrieve(self, query: str) -> list[Candidate]:
        """Async twin of :meth:`retrieve`."""
        ...


def dedupe(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Keep the first occurrence of each primary key, and number the first-stage ranks.

    A candidate without a ``retrieval_rank`` gets its 1-based position in ``candidates``.
    """
    seen: set[int | str] = set()
    unique = []
    for position, candidate in enumerate(candidates, start=1):
        if candidate.id in seen:
            continue
        seen.add(candidate.id)
        unique.append(
            candidate if candidate.retrieval_rank is not None else replace(candidate, retrieval_rank=position)
        )
    return unique


class RerankPipeline:
    """Retrieve candidates, score each distinct one once with a reranker, and keep the best.

    Selection order: everything is reranked, then candidates below ``score_threshold`` are
    dropped, then the first ``top_n`` are kept. Returned candidates are new objects carrying
    both the first-stage ``score`` and the ``rerank_score``, with ``retrieval_rank`` and final
    ``rank``.

    Args:
        reranker: Any object with ``rerank`` and ``arerank`` (see :class:`~milvus_rerank.types.Reranker`).
        retriever: The first stage for :meth:`run` / :meth:`arun`; not needed for :meth:`rerank`.
        top_n: How many candidates to return; ``None`` returns all that pass the threshold.
        score_threshold: Drop candidates whose rerank score is below this value. Scores are
            model-specific: a threshold tuned for one model means nothing for another.
        on_error: ``"raise"`` (default) lets a reranker failure propagate; ``"passthrough"``
            logs a warning and returns the candidates in first-stage order, unscored
            (``rerank_score=None``), cut to ``top_n``.

    Raises:
        TypeError: ``reranker`` lacks ``rerank``/``arerank``, or an argument has the wrong type.
        ValueError: ``top_n`` is not positive, ``score_threshold`` is not finite, or
            ``on_error`` is not one of ``"raise"``, ``"passthrough"``.
    """

    def __init__(
        self,
        reranker: Reranker,
        *,
        retriever: CandidateRetriever | None = None,
        top_n: int | None = None,
        score_threshold: float | None = None,
        on_error: OnError = "raise",
    ) -> None:
        if not (callable(getattr(reranker, "rerank", None)) and callable(getattr(reranker, "arerank", None))):
            raise TypeError(
                f"reranker must have rerank() and arerank() methods, got {type(reranker).__name__}; "
                "use a milvus_rerank reranker or implement the milvus_rerank.Reranker protocol"
            )
        if retriever is not None and not isinstance(retriever, CandidateRetriever):
            raise TypeError(f"retriever must have retrieve() and aretrieve() methods, got {type(retriever).__name__}")
        check_top_n(top_n)
        if score_threshold is not None:
            if isinstance(score_threshold, bool) or not isinstance(score_threshold, (int, float)):
                raise TypeError(f"score_threshold must be a number or None, got {type(score_threshold).__name__}")
            if not math.isfinite(score_threshold):
                raise ValueError(f"score_threshold must be finite, got {score_threshold}")
        if on_error not in _ON_ERROR_CHOICES:
            raise ValueError(f"on_error must be 'raise' or 'passthrough', got {on_error!r}")
        self.reranker = reranker
        self.retriever = retriever
        self.top_n = top_n
        self.score_threshold = None if score_threshold is None else float(score_threshold)
        self.on_error: OnError = on_error

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(reranker={self.reranker!r}, retriever={self.retriever!r}, "
            f"top_n={self.top_n}, score_threshold={self.score_threshold}, on_error={self.on_error!r})"
        )

    def run(self, query: str) -> list[Candidate]:
        """Retrieve candidates for ``query`` with the retriever, then :meth:`rerank` them."""
        return self.rerank(query, self._require_retriever().retrieve(query))

    async def arun(self, query: str) -> list[Candidate]:
        """Async twin of :meth:`run`."""
        return await self.arerank(query, await self._require_retriever().aretrieve(query))

    def rerank(self, query: str, candidates: Sequence[Candidate]) -> list[Candidate]:
        """Dedupe ``candidates``, rerank them against ``query`` and select the best.

        Raises:
            TypeError: ``query`` is not a ``str`` or a candidate's text is not a ``str``.
            RerankError: The reranker failed and ``on_error="raise"``.
        """
        unique = self._prepare(query, candidates)
        if not unique:
            return []
        try:
            results = self.reranker.rerank(query, [c.text for c in unique], top_n=self.top_n)
        except Exception as exc:
            if self.on_error == "raise":
                raise
            return self._passthrough(exc, unique)
        return self._select(unique, results)

    async def arerank(self, query: str, candidates: Sequence[Candidate]) -> list[Candidate]:
        """Async twin of :meth:`rerank`: awaits the reranker's own ``arerank``."""
        unique = self._prepare(query, candidates)
        if not unique:
            return []
        try:
            results = await self.reranker.arerank(query, [c.text for c in unique], top_n=self.top_n)
        except Exception as exc:
            if self.on_error == "raise":
                raise
            return self._passthrough(exc, unique)
        return self._select(unique, results)

    def _require_retriever(self) -> CandidateRetriever:
        if self.retriever is None:
            raise ValueError(
                "this RerankPipeline has no retriever: pass retriever=... or call rerank(query, candidates)"
            )
        return self.retriever

    @staticmethod
    def _prepare(query: str, candidates: Sequence[Candidate]) -> list[Candidate]:
        unique = dedupe(candidates)
        # Check the texts here, not in the reranker: a caller's bug must not turn into a passthrough.
        check_rerank_args(query, [c.text for c in unique], None)
        return unique

    def _select(self, unique: list[Candidate], results: list[RerankResult]) -> list[Candidate]:
        indices = [r.index for r in results]
        if len(set(indices)) != len(indices) or any(not 0 <= i < len(unique) for i in indices):
            raise RerankResponseError(
                f"reranker {type(self.reranker).__name__} returned indices {indices[:10]} for {len(unique)} documents; "
                "each index must be unique and point into the documents"
            )
        threshold = self.score_threshold
        kept = [r for r in rank(results) if threshold is None or r.score >= threshold]
        if self.top_n is not None:
            kept = kept[: self.top_n]
        return [
            replace(unique[r.index], rerank_score=float(r.score), rank=position)
            for position, r in enumerate(kept, start=1)
        ]

    def _passthrough(self, exc: Exception, unique: list[Candidate]) -> list[Candidate]:
        logger.warning(
            "reranking failed (%s: %s); returning %d candidates in first-stage order, not reranked",
            type(exc).__name__,
            exc,
            len(unique),
        )
        kept = unique if self.top_n is None else unique[: self.top_n]
        return [replace(c, rerank_score=None, rank=position) for position, c in enumerate(kept, start=1)]
