"""LlamaIndex nodes and rerank candidates: the metadata keys, and the conversions both ways.

A first stage's :class:`~milvus_rerank.types.Candidate` becomes a node with :func:`candidate_to_node`;
a reranked node comes back as :func:`scored_copy`, so the caller's nodes are never modified. The
keys written to a node's metadata are excluded from the LLM and embedding text.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.schema import BaseNode, NodeWithScore, TextNode
from llama_index.core.vector_stores.utils import metadata_dict_to_node

from milvus_rerank.errors import SchemaError
from milvus_rerank.types import Candidate

__all__ = [
    "RERANK_SPAN_KEY",
    "RETRIEVAL_RANK_KEY",
    "RETRIEVAL_SCORE_KEY",
    "SCORED_BY_KEY",
    "candidate_to_node",
    "scored_copy",
]

RETRIEVAL_SCORE_KEY = "retrieval_score"
"""Metadata key holding the first-stage score on returned nodes (when ``keep_retrieval_score``)."""

RETRIEVAL_RANK_KEY = "retrieval_rank"
"""Metadata key of the 1-based position in the first-stage results."""

SCORED_BY_KEY = "scored_by"
RERANK_SPAN_KEY = "rerank_span"
"""Metadata key of ``(start, end)``: the characters of the node's text in the window that gave its score,
when the reranker split a long node into windows (``long_documents="windows"``)."""
"""Metadata key naming the reranker of a ``FallbackReranker`` that gave the node's score."""

# Fields in which llama-index-vector-stores-milvus keeps the whole serialized node.
_NODE_CONTENT_FIELDS = ("_node_content", "_node_type")


def candidate_to_node(candidate: Candidate) -> NodeWithScore:
    """Turn a first-stage candidate into a LlamaIndex ``NodeWithScore``.

    The node id is ``str(candidate.id)``, the Milvus primary key, so nodes from the same row are
    recognised as one (``MilvusVectorStore`` uses the node id as primary key, so its nodes keep
    their ids). When the row was written by ``MilvusVectorStore`` (it holds ``_node_content``),
    the original node is restored: its class, metadata, exclusions and relationships. Otherwise a
    ``TextNode`` holds the text and the row's other fields as metadata. The score is the
    first-stage score; ``metadata["retrieval_rank"]`` (excluded from the LLM and embedding text)
    holds the first-stage position.

    Raises:
        SchemaError: The row holds a ``_node_content`` that is not a serialized LlamaIndex node.
    """
    metadata = dict(candidate.metadata)
    node: BaseNode
    if metadata.get("_node_content") is not None:
        try:
            node = metadata_dict_to_node(metadata, text=candidate.text)
        except Exception as exc:
            raise SchemaError(
                f"row {candidate.id!r} has a _node_content field that is not a serialized LlamaIndex node ({exc}); "
                "pass output_fields=... without it to read the row as plain text and metadata"
            ) from exc
        node.id_ = str(candidate.id)
    else:
        for key in _NODE_CONTENT_FIELDS:
            metadata.pop(key, None)
        node = TextNode(id_=str(candidate.id), text=candidate.text, metadata=metadata)
    if candidate.retrieval_rank is not None:
        node.metadata[RETRIEVAL_RANK_KEY] = candidate.retrieval_rank
        for excluded in (node.excluded_llm_metadata_keys, node.excluded_embed_metadata_keys):
            if RETRIEVAL_RANK_KEY not in excluded:
                excluded.append(RETRIEVAL_RANK_KEY)
    return NodeWithScore(node=node, score=candidate.score)


def scored_copy(
    original: NodeWithScore, score: float | None, extra_metadata: dict[str, Any], *, text: str | None = None
) -> NodeWithScore:
    """Return a new ``NodeWithScore`` over a copy of the node, so the caller's objects stay untouched.

    ``text``, when given, replaces the copy's content (e.g. a long node's best window).
    """
    node = original.node
    # Fresh containers: a later change to the returned node (metadata, exclusions, relationships)
    # must not reach the caller's node. The keys we add are bookkeeping, kept out of the LLM prompt
    # and of re-embedding.
    update: dict[str, Any] = {
        "metadata": {**node.metadata, **extra_metadata},
        "excluded_llm_metadata_keys": [
            *node.excluded_llm_metadata_keys,
            *(k for k in extra_metadata if k not in node.excluded_llm_metadata_keys),
        ],
        "excluded_embed_metadata_keys": [
            *node.excluded_embed_metadata_keys,
            *(k for k in extra_metadata if k not in node.excluded_embed_metadata_keys),
        ],
        "relationships": dict(node.relationships),
    }
    copy = node.model_copy(update=update)
    if text is not None:
        copy.set_content(text)
    return NodeWithScore(node=copy, score=score)
