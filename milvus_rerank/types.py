"""The values that flow through the package and the reranker contract.

Data flows one way: Milvus hits become :class:`Candidate` objects, a :class:`Reranker`
turns a query and candidate texts into :class:`RerankResult` objects, and the pipeline
attaches those scores back to the candidates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["Candidate", "CandidateRetriever", "RerankResult", "Reranker", "check_retriever"]


@dataclass(frozen=True, slots=True)
class RerankResult:
    """One scored document.

    Attributes:
        index: Position of the document in the sequence passed to ``rerank``.
        score: Relevance score (a Python ``float``); higher means more relevant. Scores of
            different models or backends are not comparable.
        span: ``(start, end)``: the characters ``documents[index][start:end]`` of the window that gave the
            score, when the reranker split the document into windows (``long_documents="windows"``);
            ``None`` when it scored the document whole (or truncated it).
        scored_by: The name of the reranker that gave the score, when a
            :class:`~milvus_rerank.FallbackReranker` chose it among several; ``None`` otherwise.
    """

    index: int
    score: float
    span: tuple[int, int] | None = None
    scored_by: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A retrieved chunk on its way through the rerank pipeline.

    Attributes:
        id: Milvus primary key (``int`` or ``str``); candidates with the same id are the same chunk.
        text: The text that the reranker scores.
        score: First-stage score as Milvus reported it (similarity or distance), or ``None``.
        metadata: Other output fields of the hit.
        retrieval_rank: 1-based position in the first-stage results, or ``None``.
        rerank_score: Score given by the reranker, or ``None`` when the candidate was not reranked.
        rank: 1-based position in the final results, or ``None`` before selection.
        scored_by: Which reranker of a :class:`~milvus_rerank.FallbackReranker` gave
            ``rerank_score`` (:attr:`RerankResult.scored_by`); ``None`` otherwise.
        rerank_span: ``(start, end)``: the characters of :attr:`text` in the window that gave ``rerank_score``
            when the reranker split the text into windows (:attr:`RerankResult.span`); ``None`` otherwise.
    """

    id: int | str
    text: str
    score: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    retrieval_rank: int | None = None
    rerank_score: float | None = None
    rank: int | None = None
    scored_by: str | None = None
    rerank_span: tuple[int, int] | None = None

    @property
    def reranked(self) -> bool:
        """Whether a reranker scored this candidate."""
        return self.rerank_score is not None

    def with_rerank(
        self,
        rerank_score: float | None,
        rank: int,
        scored_by: str | None = None,
        rerank_span: tuple[int, int] | None = None,
    ) -> Candidate:
        """A copy carrying the second stage's outcome: its score (``None``: not reranked), rank, scorer and window."""
        # Direct construction: dataclasses.replace costs twice as much, on the pipeline's hot path.
        return Candidate(
            self.id,
            self.text,
            self.score,
            self.metadata,
            self.retrieval_rank,
            rerank_score,
            rank,
            scored_by,
            rerank_span,
        )


@runtime_checkable
class Reranker(Protocol):
    """Anything that scores documents against a query: ours or a user's own.

    Implementations return results sorted by score descending, ties broken by the original
    index, with ``index`` pointing into ``documents``. Zero documents return ``[]`` without
    any I/O or model load. ``top_n=None`` returns every document; a larger ``top_n`` than
    there are documents returns all of them.

    The pipeline and both adapters hold every reranker's answer to this contract
    (:func:`milvus_rerank.rerankers.contract.check_answer`): one result per document (``top_n``
    of them when fewer), each ``index`` an int, unique and in range, each ``score`` a finite
    number; an answer that breaks it raises ``RerankResponseError`` naming the reranker's class.

    Our rerankers also keep two rules of input, the same on every backend: an empty or
    whitespace-only document is never given to a model or server, and scores
    :data:`~milvus_rerank.rerankers.contract.BLANK_SCORE` (the lowest finite float), so it ranks
    last and falls below any ``score_threshold``; a query or document holding a lone surrogate
    (which UTF-8 cannot encode) is refused with a ``ValueError`` that names it.
    """

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        """Score ``documents`` against ``query`` and return them best first."""
        ...

    async def arerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        """Async twin of :meth:`rerank`; never blocks the event loop."""
        ...


@runtime_checkable
class CandidateRetriever(Protocol):
    """A first stage: anything that turns a query into candidates (e.g. ``MilvusRetriever``).

    Per-call first-stage options (``limit``, ``filter``) reach ``retrieve`` as keyword
    arguments; a first stage that takes none works as long as none is given.
    """

    def retrieve(self, query: str) -> list[Candidate]:
        """Return the first-stage candidates for ``query``."""
        ...

    async def aretrieve(self, query: str) -> list[Candidate]:
        """Async twin of :meth:`retrieve`."""
        ...


def check_retriever(retriever: object) -> CandidateRetriever:
    """Return ``retriever`` if it can be a first stage (it has ``retrieve`` and ``aretrieve``).

    Raises:
        TypeError: It lacks one of the two methods.
    """
    if not isinstance(retriever, CandidateRetriever):
        raise TypeError(
            "retriever must have retrieve() and aretrieve() methods returning candidates "
            f"(e.g. milvus_rerank.MilvusRetriever), got {type(retriever).__name__}"
        )
    return retriever
