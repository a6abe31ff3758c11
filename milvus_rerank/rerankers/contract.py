"""Input checks and result ordering shared by every reranker.

Each reranker calls :func:`check_rerank_args` first and :func:`rank` last, so the contract of
:class:`milvus_rerank.types.Reranker` (types, ordering, ties, ``top_n``) holds in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from milvus_rerank.types import RerankResult
from milvus_rerank.validation import check_top_n

__all__ = ["check_rerank_args", "rank"]


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
