"""Input checks and result ordering shared by every reranker.

Each reranker calls :func:`check_rerank_args` first and :func:`rank` last, so the contract of
:class:`milvus_rerank.types.Reranker` (types, ordering, ties, ``top_n``) holds in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, overload

from milvus_rerank.types import RerankResult

__all__ = ["check_positive_int", "check_rerank_args", "check_top_n", "rank"]


@overload
def check_positive_int(value: object, name: str, *, optional: Literal[False] = False) -> int: ...


@overload
def check_positive_int(value: object, name: str, *, optional: bool) -> int | None: ...


def check_positive_int(value: object, name: str, *, optional: bool = False) -> int | None:
    """Return ``value`` if it is a positive ``int`` (or ``None`` when ``optional``), else raise.

    For options whose every bad value is a ``ValueError`` (batch sizes, concurrency, dimensions);
    ``top_n`` has its own :func:`check_top_n`.

    Raises:
        ValueError: ``value`` is not a positive int (``bool`` included).
    """
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if optional else ''}, got {value!r}")
    return value


def check_top_n(top_n: object, *, name: str = "top_n") -> None:
    """Raise unless ``top_n`` is ``None`` or a positive ``int``.

    Raises:
        TypeError: ``top_n`` is not an int (``bool`` included).
        ValueError: ``top_n`` is zero or negative.
    """
    if top_n is None:
        return
    if isinstance(top_n, bool) or not isinstance(top_n, int):
        raise TypeError(f"{name} must be a positive int or None, got {type(top_n).__name__}")
    if top_n < 1:
        raise ValueError(f"{name} must be a positive int or None, got {top_n}")


def check_rerank_args(query: object, documents: object, top_n: object) -> Sequence[str]:
    """Validate the arguments of ``rerank`` and return ``documents`` as a sequence.

    Args:
        query: Must be a ``str``.
        documents: Must be a sequence of ``str`` (a bare ``str`` is refused: it is almost
            always a mistake for ``[text]``).
        top_n: ``None`` or a positive ``int``.

    Raises:
        TypeError: A wrong type; for documents the message names the first bad position.
        ValueError: ``top_n`` is not positive.
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
    return documents


def rank(results: Iterable[RerankResult], top_n: int | None = None) -> list[RerankResult]:
    """Sort results by score descending, ties by original index, and keep the first ``top_n``."""
    ordered = sorted(results, key=lambda result: (-result.score, result.index))
    return ordered if top_n is None else ordered[:top_n]
