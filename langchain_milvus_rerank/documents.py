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

_FALLBACK_SCORE_KEY = "score"  # a first-stage score some retrievers leave in metadata


def candidate_to_document(candidate: Candidate) -> Document:
    """Turn a candidate into a LangChain ``Document``.

    The document's ``id`` is ``str(candidate.id)``; its metadata holds the candidate's metadata
    (the collection's other output fields), then ``pk`` (the primary key, as Milvus typed it),
    ``retrieval_score``, ``retrieval_rank`` and, for a reranked candidate, ``relevance_score``
    (and ``scored_by`` when a ``FallbackReranker`` scored it), which override fields of the same
    names. An unscored candidate carries no ``relevance_score``: a field of that name would pass for
    a rerank score.
    """
    return Document(id=str(candidate.id), page_content=candidate.text, metadata=document_metadata(candidate))


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
    return metadata


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


def scored_copies(documents: Sequence[Document], selected: Sequence[Candidate]) -> list[Document]:
    """Copy the selected documents, best first, writing the scores into their metadata.

    Each candidate's ``id`` is the position of its document in ``documents``.
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
        result.append(original.model_copy(update={"metadata": metadata}))
    return result
