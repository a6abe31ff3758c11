"""LangChain ``Document`` objects and rerank candidates: the metadata keys, and the conversions both ways.

A first stage's :class:`~milvus_rerank.types.Candidate` becomes a document with
:func:`candidate_to_document`; a caller's documents are reranked as candidates whose ids point
back to them, and come back as copies (:func:`scored_copies`), so the caller's are never modified.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from langchain_core.documents import Document

from milvus_rerank.pipeline import strict_key
from milvus_rerank.types import Candidate

__all__ = [
    "PRIMARY_KEY",
    "RELEVANCE_SCORE_KEY",
    "RERANK_SPAN_KEY",
    "RETRIEVAL_RANK_KEY",
    "RETRIEVAL_SCORE_KEY",
    "SCORED_BY_KEY",
    "candidate_to_document",
    "document_identity",
    "document_metadata",
    "first_stage_score",
    "scored_copies",
]

RELEVANCE_SCORE_KEY = "relevance_score"
"""Metadata key of the rerank score (the key LangChain's own rerankers use)."""

RETRIEVAL_SCORE_KEY = "retrieval_score"
"""Metadata key of the first-stage (Milvus) score."""

PRIMARY_KEY = "pk"
"""Metadata key of the Milvus primary key (where langchain-milvus and ``MilvusRerankRetriever`` put it)."""

RETRIEVAL_RANK_KEY = "retrieval_rank"
"""Metadata key of the 1-based position in the first-stage results."""

SCORED_BY_KEY = "scored_by"
"""Metadata key naming the reranker of a ``FallbackReranker`` that gave ``relevance_score``."""

RERANK_SPAN_KEY = "rerank_span"
"""Metadata key of ``(start, end)``: the characters of ``page_content`` in the window that gave
``relevance_score``, when the reranker split a long document into windows (``long_documents="windows"``)."""

_FALLBACK_SCORE_KEY = "score"  # a first-stage score some retrievers leave in metadata


def candidate_to_document(candidate: Candidate, *, best_window: bool = False) -> Document:
    """Turn a candidate into a LangChain ``Document``.

    The document's ``id`` is ``str(candidate.id)``; its metadata holds the candidate's metadata
    (the collection's other output fields), then ``pk`` (the primary key, as Milvus typed it),
    ``retrieval_score``, ``retrieval_rank`` and, for a reranked candidate, ``relevance_score``
    (and ``scored_by`` when a ``FallbackReranker`` scored it), which override fields of the same
    names. An unscored candidate carries no ``relevance_score``: a field of that name would pass for
    a rerank score. ``rerank_span`` names the best window of a document the reranker split into
    windows; with ``best_window`` the document's ``page_content`` is that window alone.
    """
    text = candidate.text
    if best_window and candidate.rerank_span is not None:
        text = text[candidate.rerank_span[0] : candidate.rerank_span[1]]
    return Document(id=str(candidate.id), page_content=text, metadata=document_metadata(candidate))


def document_metadata(candidate: Candidate) -> dict[str, Any]:
    """The metadata of :func:`candidate_to_document`'s document for ``candidate``."""
    metadata = dict(candidate.metadata)
    metadata[PRIMARY_KEY] = candidate.id
    if candidate.score is not None:
        metadata[RETRIEVAL_SCORE_KEY] = candidate.score
    if candidate.retrieval_rank is not None:
        metadata[RETRIEVAL_RANK_KEY] = candidate.retrieval_rank
    if candidate.rerank_score is None:
        metadata.pop(RELEVANCE_SCORE_KEY, None)
    else:
        metadata[RELEVANCE_SCORE_KEY] = candidate.rerank_score
    if candidate.scored_by is not None:
        metadata[SCORED_BY_KEY] = candidate.scored_by
    _write_span(metadata, candidate)
    return metadata


def _write_span(metadata: dict[str, Any], candidate: Candidate) -> None:
    if candidate.rerank_span is None:
        metadata.pop(RERANK_SPAN_KEY, None)  # a stale window would lie
    else:
        metadata[RERANK_SPAN_KEY] = candidate.rerank_span


def document_identity(document: Document, position: int) -> Hashable:
    """What makes two documents the same chunk: ``metadata["pk"]``, else ``Document.id``, else nothing."""
    # Type-strict: pk 1, True and 1.0 are three documents, although Python finds them equal.
    primary_key = document.metadata.get(PRIMARY_KEY)
    if primary_key is not None and isinstance(primary_key, Hashable):
        return (PRIMARY_KEY, strict_key(primary_key))
    if document.id is not None:
        return ("id", strict_key(document.id))
    return ("position", position)


def first_stage_score(metadata: Mapping[str, Any]) -> float | None:
    """The first-stage score a document carries: ``retrieval_score``, else a numeric ``score``; else ``None``."""
    for key in (RETRIEVAL_SCORE_KEY, _FALLBACK_SCORE_KEY):
        value = metadata.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def scored_copies(
    documents: Sequence[Document], selected: Sequence[Candidate], *, best_window: bool = False
) -> list[Document]:
    """Copy the selected documents, best first, writing the scores (and a best window's span) into their metadata.

    Each candidate's ``id`` is the position of its document in ``documents``. With ``best_window``, a
    document the reranker split into windows keeps only its best window as ``page_content``.
    """
    result = []
    for candidate in selected:
        original = documents[int(candidate.id)]
        metadata = dict(original.metadata)
        if candidate.score is not None:
            metadata.setdefault(RETRIEVAL_SCORE_KEY, candidate.score)
        if candidate.rerank_score is None:
            metadata.pop(RELEVANCE_SCORE_KEY, None)  # passthrough: a stale score would lie
        else:
            metadata[RELEVANCE_SCORE_KEY] = candidate.rerank_score
        if candidate.scored_by is not None:
            metadata[SCORED_BY_KEY] = candidate.scored_by
        _write_span(metadata, candidate)
        update: dict[str, Any] = {"metadata": metadata}
        if best_window and candidate.rerank_span is not None:
            update["page_content"] = original.page_content[candidate.rerank_span[0] : candidate.rerank_span[1]]
        result.append(original.model_copy(update=update))
    return result
