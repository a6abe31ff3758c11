"""The two-stage pipeline: retrieve -> dedupe -> rerank -> ``score_threshold`` -> ``top_n``.

Both framework adapters are built on :class:`RerankPipeline`: the LangChain compressor and the
LlamaIndex postprocessor use its second stage alone (:meth:`RerankPipeline.rerank`), the
retrievers run both stages (:meth:`RerankPipeline.run`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from milvus_rerank.errors import RerankResponseError
from milvus_rerank.rerankers.contract import check_rerank_args, rank
from milvus_rerank.types import Candidate, Reranker, RerankResult
from milvus_rerank.validation import check_top_n

__all__ = ["CandidateRetriever", "OnError", "RerankPipeline", "dedupe", "resolve_first_stage", "resolve_second_stage"]

logger = logging.getLogger(__name__)

OnError = Literal["raise", "passthrough"]
_ON_ERROR_CHOICES = ("raise", "passthrough")

_Stage = TypeVar("_Stage")


@runtime_checkable
class CandidateRetriever(Protocol):
    """A first stage: anything that turns a query into candidates (e.g. ``MilvusRetriever``)."""

    def retrieve(self, query: str) -> list[Candidate]:
        """Return the first-stage candidates for ``query``."""
        ...

    async def aretrieve(self, query: str) -> list[Candidate]:
        """Async twin of :meth:`retrieve`."""
        ...


def resolve_first_stage(
    retriever: CandidateRetriever | None,
    client: Any,
    collection_name: str | None,
    milvus_kwargs: Mapping[str, Any],
) -> CandidateRetriever:
    """Return the first stage an adapter's retriever was given, or build a ``MilvusRetriever``.

    Exactly one way must be used: ``retriever`` alone, or ``client`` and ``collection_name``
    (with further :class:`~milvus_rerank.milvus.retriever.MilvusRetriever` options in
    ``milvus_kwargs``).

    Raises:
        ValueError: Both ways or neither were used, or ``client`` came without ``collection_name``.
        TypeError: ``retriever`` lacks ``retrieve`` / ``aretrieve``.
        CollectionNotFoundError: The collection does not exist.
        SchemaError: The collection lacks a field the mode needs.
    """
    if retriever is not None:
        if client is not None or collection_name is not None or milvus_kwargs:
            given = [name for name, value in (("client", client), ("collection_name", collection_name)) if value]
            raise ValueError(
                "pass either retriever=... or client=/collection_name= with MilvusRetriever options, not both "
                f"(got retriever and {', '.join(given + sorted(milvus_kwargs))})"
            )
        if not isinstance(retriever, CandidateRetriever):
            raise TypeError(
                "retriever must have retrieve() and aretrieve() methods returning candidates "
                f"(e.g. milvus_rerank.MilvusRetriever), got {type(retriever).__name__}"
            )
        return retriever
    if client is None or collection_name is None:
        raise ValueError("pass client= (a MilvusClient or URI) and collection_name=, or a first stage as retriever=...")
    from milvus_rerank.milvus.retriever import MilvusRetriever  # pymilvus is imported only when used

    return MilvusRetriever(client, collection_name, **milvus_kwargs)


def resolve_second_stage(
    name: str,
    stage: _Stage | None,
    stage_type: type[_Stage],
    reranker: Reranker | None,
    options: Mapping[str, tuple[Any, Any]],
    build: Callable[[Reranker], _Stage],
) -> _Stage:
    """Return the second stage an adapter's retriever was given, or build it from ``reranker``.

    Exactly one way must be used: a built ``stage`` (passed as ``name=``), or ``reranker`` with
    ``options``, which map each option's name to ``(value, default)``.

    Raises:
        ValueError: Both ways or neither were used.
        TypeError: ``stage`` is not a ``stage_type``.
    """
    if stage is not None:
        if reranker is not None or any(value != default for value, default in options.values()):
            raise ValueError(f"pass either {name}=... or reranker=... with {'/'.join(options)}, not both")
        if not isinstance(stage, stage_type):
            raise TypeError(f"{name} must be a {stage_type.__name__}, got {type(stage).__name__}")
        return stage
    if reranker is None:
        raise ValueError(f"pass reranker=... (e.g. VLLMReranker or CrossEncoderReranker) or {name}=...")
    return build(reranker)


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
        if indices and (len(set(indices)) != len(indices) or min(indices) < 0 or max(indices) >= len(unique)):
            raise RerankResponseError(
                f"reranker {type(self.reranker).__name__} returned indices {indices[:10]} for {len(unique)} documents; "
                "each index must be unique and point into the documents"
            )
        kept = rank(results)
        if self.score_threshold is not None:
            kept = [r for r in kept if r.score >= self.score_threshold]
        if self.top_n is not None:
            kept = kept[: self.top_n]
        return [unique[r.index].with_rerank(float(r.score), position) for position, r in enumerate(kept, start=1)]

    def _passthrough(self, exc: Exception, unique: list[Candidate]) -> list[Candidate]:
        logger.warning(
            "reranking failed (%s: %s); returning %d candidates in first-stage order, not reranked",
            type(exc).__name__,
            exc,
            len(unique),
        )
        kept = unique if self.top_n is None else unique[: self.top_n]
        return [c.with_rerank(None, position) for position, c in enumerate(kept, start=1)]
