"""The two-stage pipeline: retrieve -> dedupe -> rerank -> ``score_threshold`` -> ``top_n``.

:meth:`RerankPipeline.rerank` (and ``arerank``) is the one entry point of the second stage:
candidates in, reranked and selected candidates out, with the :class:`Selection` of the call
(``top_n``, ``score_threshold``). Both framework adapters are thin conversions on it: their
compressor / postprocessor turn the framework's objects into candidates and back, and their
retrievers hand it the first stage's candidates.

Per-call options (``top_n``, ``score_threshold`` for the selection, ``limit``, ``filter`` for the
first stage) are split by :func:`split_call_options`, so both adapters accept the same names
and refuse the same unknown ones; :meth:`Selection.with_options` checks the selection's.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from milvus_rerank.rerankers.contract import check_answer, check_rerank_args
from milvus_rerank.rerankers.fallback import falls_through
from milvus_rerank.rerankers.windows import span_in
from milvus_rerank.types import Candidate, CandidateRetriever, Reranker, RerankResult, check_retriever
from milvus_rerank.validation import check_choice, check_number, check_top_n

__all__ = [
    "FIRST_STAGE_OPTIONS",
    "SELECTION_OPTIONS",
    "CandidateRetriever",
    "OnError",
    "RerankPipeline",
    "Selection",
    "check_retriever",
    "dedupe",
    "dedupe_key",
    "split_call_options",
    "strict_key",
    "with_retrieval_ranks",
]

logger = logging.getLogger(__name__)

OnError = Literal["raise", "passthrough"]
_ON_ERROR_CHOICES = ("raise", "passthrough")

SELECTION_OPTIONS = ("top_n", "score_threshold")
"""Per-call options of the second stage; they replace the pipeline's own for one call."""

FIRST_STAGE_OPTIONS = ("limit", "filter")
"""Per-call options passed to the first stage's ``retrieve`` (those of :class:`~milvus_rerank.MilvusRetriever`)."""


@dataclass(frozen=True)
class Selection:
    """Which reranked candidates a call keeps: those scoring at least ``score_threshold``, then the best ``top_n``.

    Each value is checked once, when the selection is made (at construction, or per call by
    :meth:`with_options`), before any reranking.

    Attributes:
        top_n: How many candidates to return; ``None`` returns all that pass the threshold.
        score_threshold: Drop candidates whose rerank score is below this value. Scores are
            model-specific: a threshold tuned for one model means nothing for another.

    Raises:
        TypeError: ``top_n`` is not an int, or ``score_threshold`` not a number.
        ValueError: ``top_n`` is not positive, or ``score_threshold`` is not finite.
    """

    top_n: int | None = None
    score_threshold: float | None = None

    def __post_init__(self) -> None:
        check_top_n(self.top_n)
        # A frozen dataclass normalises through object.__setattr__: an int threshold is kept as a float.
        threshold = check_number(self.score_threshold, "score_threshold", minimum=-math.inf, optional=True)
        object.__setattr__(self, "score_threshold", threshold)

    def with_options(self, options: Mapping[str, Any]) -> Selection:
        """This selection with the per-call ``top_n`` / ``score_threshold`` in ``options`` replacing its own.

        An empty ``options`` returns this selection itself.

        Raises:
            TypeError: ``options`` holds another name, or a value has the wrong type.
            ValueError: A value is out of range.
        """
        if not options:
            return self
        other = sorted(name for name in options if name not in SELECTION_OPTIONS)
        if other:
            raise TypeError(f"{', '.join(map(repr, other))} are not selection options; those are {SELECTION_OPTIONS}")
        return replace(self, **options)


def split_call_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split per-call options into the selection's (:data:`SELECTION_OPTIONS`) and the first stage's.

    The values are not checked here: the selection's are checked by :class:`RerankPipeline` as
    at construction, the first stage's by its ``retrieve``.

    Raises:
        TypeError: An option is neither; the message names every such option and the accepted ones.
    """
    unknown = sorted(name for name in options if name not in SELECTION_OPTIONS and name not in FIRST_STAGE_OPTIONS)
    if unknown:
        raise TypeError(
            f"unknown per-call option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"the options of one call are {', '.join(SELECTION_OPTIONS + FIRST_STAGE_OPTIONS)}"
        )
    selection = {name: value for name, value in options.items() if name in SELECTION_OPTIONS}
    first_stage = {name: value for name, value in options.items() if name in FIRST_STAGE_OPTIONS}
    return selection, first_stage


def strict_key(value: Hashable) -> Hashable:
    """``value`` as a key equal only to keys of the same value *and type*: ``1``, ``True``, ``1.0`` stay apart.

    Python merges them (``1 == True == 1.0``, with equal hashes), which would make distinct primary
    keys one duplicate. Tuples are keyed item by item, so ``(1, "a")`` and ``(True, "a")`` differ too.
    """
    if isinstance(value, tuple):
        return (tuple, tuple(strict_key(item) for item in value))
    return (type(value), value)


def dedupe_key(candidate: Candidate) -> Hashable:
    """The key under which candidates are the same chunk: their primary key, compared type-strictly.

    Adapters that map reranked candidates back to their own objects use this key, so they and
    :func:`dedupe` always agree on what a duplicate is.
    """
    return strict_key(candidate.id)


def dedupe(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Keep the first occurrence of each primary key, and number the first-stage ranks.

    A candidate without a ``retrieval_rank`` gets its 1-based position in ``candidates``.
    """
    return [_numbered(candidates, position) for position in _first_positions(candidates)]


def _first_positions(candidates: Sequence[Candidate]) -> list[int]:
    seen: set[Hashable] = set()
    positions = []
    for position, candidate in enumerate(candidates):
        key = dedupe_key(candidate)
        if key not in seen:
            seen.add(key)
            positions.append(position)
    return positions


def with_retrieval_ranks(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates, each one without a ``retrieval_rank`` numbered by its 1-based position.

    :func:`dedupe` numbers candidates by this rule; an adapter that converts the first stage's
    candidates before the pipeline runs numbers them first, so both see the same ranks.
    """
    return [_numbered(candidates, position) for position in range(len(candidates))]


def _numbered(candidates: Sequence[Candidate], position: int) -> Candidate:
    candidate = candidates[position]
    return candidate if candidate.retrieval_rank is not None else replace(candidate, retrieval_rank=position + 1)


class RerankPipeline:
    """Retrieve candidates, score each distinct one once with a reranker, and keep the best.

    Selection order: everything is reranked, then candidates below ``score_threshold`` are
    dropped, then the first ``top_n`` are kept. Candidates are the same chunk when their ids are
    equal and of the same type (``1``, ``True``, ``1.0`` and ``"1"`` are four chunks). The
    reranker's answer is checked whoever wrote the reranker: one result per candidate sent
    (``top_n`` of them when fewer), indices unique and in range, finite scores. Returned
    candidates are new objects carrying both the first-stage ``score`` and the ``rerank_score``,
    with ``retrieval_rank`` and final ``rank``.

    Args:
        reranker: Any object with ``rerank`` and ``arerank`` (see :class:`~milvus_rerank.types.Reranker`).
        retriever: The first stage for :meth:`run` / :meth:`arun`; not needed for :meth:`rerank`.
        top_n: How many candidates to return; ``None`` returns all that pass the threshold.
        score_threshold: Drop candidates whose rerank score is below this value. Scores are
            model-specific: a threshold tuned for one model means nothing for another. Both make
            the pipeline's :attr:`selection`, which a call may replace.
        on_error: ``"raise"`` (default) lets a reranker failure propagate; ``"passthrough"``
            logs a warning and returns the candidates in first-stage order, unscored
            (``rerank_score=None``), cut to ``top_n``, when the failure is one that
            :func:`~milvus_rerank.rerankers.fallback.falls_through` (the service is down, slow,
            failing or answered nonsense); a request the server refuses as wrong (a 4xx such as
            400, 401, 404, 422) or a bug raises all the same. After a
            :class:`~milvus_rerank.FallbackReranker`, it is the chain's last step.

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
        self.reranker = reranker
        self.retriever = None if retriever is None else check_retriever(retriever)
        self.selection = Selection(top_n, score_threshold)
        self.on_error: OnError = check_choice(on_error, "on_error", _ON_ERROR_CHOICES)

    @property
    def top_n(self) -> int | None:
        """The ``top_n`` of :attr:`selection`."""
        return self.selection.top_n

    @property
    def score_threshold(self) -> float | None:
        """The ``score_threshold`` of :attr:`selection`."""
        return self.selection.score_threshold

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(reranker={self.reranker!r}, retriever={self.retriever!r}, "
            f"top_n={self.top_n}, score_threshold={self.score_threshold}, on_error={self.on_error!r})"
        )

    def with_selection(self, selection: Mapping[str, Any]) -> RerankPipeline:
        """This pipeline with ``top_n`` / ``score_threshold`` replaced by those in ``selection``.

        The new values are checked as the constructor checks them; an empty ``selection``
        returns this pipeline itself. To rerank once with other values, pass
        ``selection=pipeline.selection.with_options(...)`` to :meth:`rerank` instead.

        Raises:
            TypeError: ``selection`` holds another option, or a value has the wrong type.
            ValueError: A value is out of range.
        """
        chosen = self.selection.with_options(selection)
        if chosen is self.selection:
            return self
        other = copy.copy(self)
        other.selection = chosen
        return other

    def run(self, query: str, **options: Any) -> list[Candidate]:
        """Retrieve candidates for ``query`` with the retriever, then :meth:`rerank` them.

        Args:
            query: The query.
            **options: Per-call options: ``top_n`` and ``score_threshold`` replace the
                pipeline's for this call; ``limit`` and ``filter`` go to the retriever.

        Raises:
            TypeError: An unknown option (see :func:`split_call_options`), or a wrong type.
            ValueError: No retriever, or an option is out of range.
        """
        per_call, first_stage = split_call_options(options)
        selection = self.selection.with_options(per_call)
        return self.rerank(query, self.retrieve(query, **first_stage), selection=selection)

    async def arun(self, query: str, **options: Any) -> list[Candidate]:
        """Async twin of :meth:`run`."""
        per_call, first_stage = split_call_options(options)
        selection = self.selection.with_options(per_call)
        return await self.arerank(query, await self.aretrieve(query, **first_stage), selection=selection)

    def retrieve(self, query: str, **first_stage_options: Any) -> list[Candidate]:
        """The first stage alone: the retriever's candidates for ``query``, as it returns them.

        Raises:
            ValueError: The pipeline has no retriever.
        """
        return self._require_retriever().retrieve(query, **first_stage_options)

    async def aretrieve(self, query: str, **first_stage_options: Any) -> list[Candidate]:
        """Async twin of :meth:`retrieve`."""
        return await self._require_retriever().aretrieve(query, **first_stage_options)

    def rerank(
        self,
        query: str,
        candidates: Sequence[Candidate],
        *,
        texts: Sequence[str] | None = None,
        selection: Selection | None = None,
    ) -> list[Candidate]:
        """Dedupe ``candidates``, rerank them against ``query`` and keep those ``selection`` selects, best first.

        Args:
            query: The query.
            candidates: The first stage's candidates; not modified.
            texts: What the reranker reads for each candidate, in the same order, when that is
                not ``candidate.text`` (e.g. the text with some metadata). The returned
                candidates keep their own ``text``.
            selection: ``top_n`` and ``score_threshold`` of this call; ``None``: the pipeline's
                own (:attr:`selection`). Make one with ``pipeline.selection.with_options(...)``.

        Returns:
            New candidates carrying the first-stage ``score`` and the ``rerank_score``, with
            ``retrieval_rank`` and final ``rank``.

        Raises:
            TypeError: ``query`` or a text is not a ``str``, or ``selection`` is not a :class:`Selection`.
            ValueError: ``texts`` does not have one text per candidate, or a text holds a lone
                surrogate (the message names the candidate's position).
            RerankError: The reranker failed and ``on_error="raise"``; a
                :class:`~milvus_rerank.errors.RerankResponseError` naming the reranker's class when
                its answer breaks the contract (any reranker's answer is checked: see
                :func:`~milvus_rerank.rerankers.contract.check_answer`).
        """
        selection = self._selection(selection)
        unique, documents = self._prepare(query, candidates, texts)
        if not unique:
            return []
        try:
            answer = self.reranker.rerank(query, documents, top_n=selection.top_n)
            results = check_answer(self.reranker, answer, n_documents=len(unique), top_n=selection.top_n)
        except Exception as exc:
            if self.on_error == "raise" or not falls_through(exc):
                raise
            return self._passthrough(exc, unique, selection)
        return _select(unique, documents, results, selection)

    async def arerank(
        self,
        query: str,
        candidates: Sequence[Candidate],
        *,
        texts: Sequence[str] | None = None,
        selection: Selection | None = None,
    ) -> list[Candidate]:
        """Async twin of :meth:`rerank`: awaits the reranker's own ``arerank``."""
        selection = self._selection(selection)
        unique, documents = self._prepare(query, candidates, texts)
        if not unique:
            return []
        try:
            answer = await self.reranker.arerank(query, documents, top_n=selection.top_n)
            results = check_answer(self.reranker, answer, n_documents=len(unique), top_n=selection.top_n)
        except Exception as exc:
            if self.on_error == "raise" or not falls_through(exc):
                raise
            return self._passthrough(exc, unique, selection)
        return _select(unique, documents, results, selection)

    def _selection(self, selection: Selection | None) -> Selection:
        if selection is None:
            return self.selection
        if not isinstance(selection, Selection):
            raise TypeError(
                f"selection must be a Selection (e.g. pipeline.selection.with_options({{'top_n': 3}})), "
                f"got {type(selection).__name__}"
            )
        return selection

    def _require_retriever(self) -> CandidateRetriever:
        if self.retriever is None:
            raise ValueError(
                "this RerankPipeline has no retriever: pass retriever=... or call rerank(query, candidates)"
            )
        return self.retriever

    @staticmethod
    def _prepare(
        query: str, candidates: Sequence[Candidate], texts: Sequence[str] | None
    ) -> tuple[list[Candidate], list[str]]:
        if texts is not None and len(texts) != len(candidates):
            raise ValueError(f"texts must hold one text per candidate: got {len(texts)} for {len(candidates)}")
        every = [c.text for c in candidates] if texts is None else texts
        # Checked here, not in the reranker: a caller's bug must not turn into a passthrough. All of
        # them, before dedupe, so that a message's documents[i] is the caller's i-th candidate.
        check_rerank_args(query, every, None)
        positions = _first_positions(candidates)
        unique = [_numbered(candidates, position) for position in positions]
        return unique, [every[position] for position in positions]

    @staticmethod
    def _passthrough(exc: Exception, unique: list[Candidate], selection: Selection) -> list[Candidate]:
        logger.warning(
            "reranking failed (%s: %s); returning %d candidates in first-stage order, not reranked",
            type(exc).__name__,
            exc,
            len(unique),
        )
        kept = unique if selection.top_n is None else unique[: selection.top_n]
        return [c.with_rerank(None, position) for position, c in enumerate(kept, start=1)]


def _select(
    unique: list[Candidate], documents: list[str], results: list[RerankResult], selection: Selection
) -> list[Candidate]:
    """The candidates of ``results`` that pass the threshold, as new candidates with their scores and ranks.

    A result's window (``span``, characters of the text the reranker read, ``documents[i]``) becomes the
    candidate's ``rerank_span`` in its own text (the two differ when ``texts`` rendered it with more).

    ``results`` are ranked and hold at most ``top_n`` (:func:`check_answer` holds the answer to
    both). The scores that pass a threshold are a prefix of a ranked list, so the threshold after
    the cut keeps what the threshold before it would: threshold, then ``top_n``.
    """
    threshold = selection.score_threshold
    kept = results if threshold is None else [r for r in results if r.score >= threshold]
    return [
        unique[r.index].with_rerank(
            r.score, position, r.scored_by, span_in(unique[r.index].text, documents[r.index], r.span)
        )
        for position, r in enumerate(kept, start=1)
    ]
