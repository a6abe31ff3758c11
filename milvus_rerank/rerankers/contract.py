"""The reranker contract in code: the input checks, the blank-document policy, the answer check, the ordering.

Each of our rerankers calls :func:`check_rerank_args` first, scores only the documents that
:func:`documents_to_score` keeps, and puts the results together with :meth:`DocumentsToScore.results`
(which ranks them with :func:`rank`), so the contract of :class:`milvus_rerank.types.Reranker`
(types, text that can be encoded, blank documents, ordering, ties, ``top_n``) holds in one place.
:func:`check_answer` holds any reranker's answer, ours or a user's, to the same contract, with the
rules (:func:`checked_results`) that the HTTP rerankers apply to a server's answer.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real

from milvus_rerank.errors import RerankResponseError
from milvus_rerank.types import RerankResult
from milvus_rerank.validation import check_encodable, check_top_n

__all__ = [
    "BLANK_SCORE",
    "DocumentsToScore",
    "check_answer",
    "check_rerank_args",
    "checked_results",
    "documents_to_score",
    "expected_count",
    "rank",
]

BLANK_SCORE = -sys.float_info.max
"""The score of an empty or whitespace-only document: the lowest finite float.

Finite, so that it passes the answer check, compares below every ``score_threshold`` a caller
can set, and stays valid JSON in metadata (``-1.7976931348623157e+308``); no model is asked,
so every backend gives the same score.
"""


def check_rerank_args(query: object, documents: object, top_n: object) -> Sequence[str]:
    """Validate the arguments of ``rerank`` and return ``documents`` as a sequence.

    Args:
        query: Must be a ``str`` that UTF-8 can encode.
        documents: Must be a sequence of ``str`` that UTF-8 can encode (a bare ``str`` is
            refused: it is almost always a mistake for ``[text]``).
        top_n: ``None`` or a positive ``int``.

    Raises:
        TypeError: A wrong type; for documents the message names the first bad position.
        ValueError: ``top_n`` is not positive, or the query or a document holds a lone surrogate
            (e.g. from bytes decoded with ``errors="surrogateescape"``); the message names which.
    """
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__}")
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise TypeError(
            f"documents must be a sequence of str, got {type(documents).__name__}; wrap a single text in a list"
        )
    for position, document in enumerate(documents):
        if not isinstance(document, str):
            raise TypeError(
                f"documents[{position}] must be a str, got {type(document).__name__}; "
                "convert or drop it before reranking"
            )
    check_top_n(top_n)
    check_encodable(query, "query")
    for position, document in enumerate(documents):
        check_encodable(document, f"documents[{position}]")
    return documents


@dataclass(frozen=True)
class DocumentsToScore:
    """The documents a reranker sends to its model or server: all but the blank ones.

    Empty and whitespace-only documents are never sent: a model scores them by accident (each
    backend differently), and a server may refuse them. They get :data:`BLANK_SCORE` and rank
    last, among themselves by index.

    Attributes:
        texts: The documents to score, in input order.
        positions: The position of each of ``texts`` in the caller's documents.
        n_documents: How many documents the caller passed.
    """

    texts: list[str]
    positions: list[int]
    n_documents: int

    def results(self, scored: Iterable[RerankResult], top_n: int | None) -> list[RerankResult]:
        """The caller's results: ``scored`` (indices into :attr:`texts`) and the blank ones, ranked, cut to top_n."""
        positions = self.positions
        if len(positions) == self.n_documents:
            return rank(scored, top_n)
        results = [RerankResult(positions[result.index], result.score, result.span) for result in scored]
        sent = set(positions)
        results.extend(RerankResult(index, BLANK_SCORE) for index in range(self.n_documents) if index not in sent)
        return rank(results, top_n)

    def scores(self, scored: Sequence[float]) -> list[float]:
        """The caller's scores in input order from ``scored`` (one per text); blank ones get :data:`BLANK_SCORE`."""
        if len(self.positions) == self.n_documents:
            return list(scored)
        out = [BLANK_SCORE] * self.n_documents
        for position, score in zip(self.positions, scored, strict=True):
            out[position] = score
        return out


def documents_to_score(documents: Sequence[str]) -> DocumentsToScore:
    """Set the blank (empty or whitespace-only) documents apart from those a model should score."""
    positions = [position for position, document in enumerate(documents) if document and not document.isspace()]
    texts = list(documents) if len(positions) == len(documents) else [documents[i] for i in positions]
    return DocumentsToScore(texts, positions, len(documents))


def rank(results: Iterable[RerankResult], top_n: int | None = None) -> list[RerankResult]:
    """Sort results by score descending, ties by original index, and keep the first ``top_n``."""
    ordered = sorted(results, key=lambda result: (-result.score, result.index))
    return ordered if top_n is None else ordered[:top_n]


def expected_count(n_documents: int, top_n: int | None) -> int:
    """How many results an answer for ``n_documents`` documents holds: all of them, or ``top_n`` when fewer."""
    return n_documents if top_n is None else min(top_n, n_documents)


def checked_results(
    items: Sequence[tuple[object, object]], *, n_documents: int, expected: int, score_name: str = "score"
) -> list[RerankResult]:
    """Turn ``(index, score)`` pairs into results if they make a valid answer.

    The rules of every answer, from a server or from a reranker object: exactly ``expected``
    results; every index an int (not a ``bool``) in ``range(n_documents)`` and unique; every
    score a finite real number (not a ``bool``). Integer and real types other than ``int`` and
    ``float`` (numpy's) are accepted and converted.

    Args:
        items: One ``(index, score)`` pair per result, in the answer's order.
        n_documents: How many documents were sent.
        expected: How many results a valid answer holds (see :func:`expected_count`).
        score_name: What the answer calls the score, for the message (``relevance_score``).

    Raises:
        ValueError: The first rule broken, described for a person.
    """
    _check_pairs(items, n_documents=n_documents, expected=expected, score_name=score_name)
    return [RerankResult(int(index), float(score)) for index, score in items]  # type: ignore[call-overload, arg-type]


def _check_pairs(items: Sequence[tuple[object, object]], *, n_documents: int, expected: int, score_name: str) -> None:
    if len(items) != expected:
        raise ValueError(f"expected {expected} results for {n_documents} documents, got {len(items)}")
    seen: set[int] = set()
    for position, (index, score) in enumerate(items):
        # The exact types first: checks against the numbers ABCs cost ten times more, per result.
        if type(index) is not int and (isinstance(index, bool) or not isinstance(index, Integral)):
            raise ValueError(f"result {position} has index {index!r}, not an int")
        if not 0 <= index < n_documents:  # type: ignore[operator]
            raise ValueError(f"result {position} has index {index}, outside 0..{n_documents - 1}")
        if index in seen:
            raise ValueError(f"index {index} appears more than once")
        seen.add(index)  # type: ignore[arg-type]
        real = type(score) is float or (isinstance(score, Real) and not isinstance(score, bool))
        if not (real and math.isfinite(score)):  # type: ignore[arg-type]
            raise ValueError(f"result {position} (index {index}) has {score_name} {score!r}, not a finite number")


def check_answer(reranker: object, answer: object, *, n_documents: int, top_n: int | None) -> list[RerankResult]:
    """Return ``reranker``'s answer for ``n_documents`` documents as results if it keeps the contract.

    The answer must be a list (or tuple) of objects with ``index`` and ``score`` (``RerankResult``),
    following the rules of :func:`checked_results`: one result per document, or ``top_n`` when
    that is fewer. The results come back in rank order: as they are when the reranker ranked them
    (ours do, once, at their boundary), ranked here when a reranker did not.

    Raises:
        RerankResponseError: The answer breaks the contract; the message names the reranker's class.
    """
    try:
        if not isinstance(answer, (list, tuple)):
            raise ValueError(f"it returned a {type(answer).__name__}, not a list of RerankResult")
        pairs = []
        for position, result in enumerate(answer):
            if not (hasattr(result, "index") and hasattr(result, "score")):
                raise ValueError(f"result {position} is a {type(result).__name__}, not a RerankResult")
            pairs.append((result.index, result.score))
        _check_pairs(pairs, n_documents=n_documents, expected=expected_count(n_documents, top_n), score_name="score")
    except ValueError as exc:
        name = type(reranker).__name__
        raise RerankResponseError(
            f"reranker {name} broke the Reranker contract for {n_documents} documents (top_n={top_n}): {exc}; "
            f"fix {name}.rerank/arerank to return one RerankResult(index, score) per document (top_n of them "
            "when top_n is set), each index unique and pointing into the documents, each score a finite float"
        ) from None
    # Results of the exact types are kept as they are (frozen); others become Python ints and floats.
    results = [
        result
        if type(result) is RerankResult and type(result.index) is int and type(result.score) is float
        else RerankResult(int(result.index), float(result.score), _span(getattr(result, "span", None)))
        for result in answer
    ]
    return results if _in_rank_order(results) else rank(results)


def _in_rank_order(results: Sequence[RerankResult]) -> bool:
    """Whether ``results`` are already as :func:`rank` orders them (score descending, ties by index)."""
    return all(
        earlier.score > later.score or (earlier.score == later.score and earlier.index < later.index)
        for earlier, later in itertools.pairwise(results)
    )


def _span(span: object) -> tuple[int, int] | None:
    """A result's ``span`` as a tuple of two ints, or ``None`` where it is not one (a user's own result type)."""
    if isinstance(span, (tuple, list)) and len(span) == 2 and all(isinstance(x, int) for x in span):
        return (int(span[0]), int(span[1]))
    return None
