"""``MilvusRerankRetriever``: Milvus retrieval (dense, sparse BM25 or hybrid) followed by a reranker.

The first stage is :class:`milvus_rerank.MilvusRetriever` (or any object with ``retrieve`` and
``aretrieve`` returning candidates); the second is a :class:`RerankPostprocessor`. This module
only turns candidates into LlamaIndex nodes between the two.
"""

from __future__ import annotations

from typing import Any, Literal

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.utils import metadata_dict_to_node

from llamaindex_milvus_rerank.postprocessor import RerankPostprocessor
from milvus_rerank.errors import SchemaError
from milvus_rerank.pipeline import CandidateRetriever, resolve_first_stage, resolve_second_stage
from milvus_rerank.types import Candidate, Reranker

__all__ = ["RETRIEVAL_RANK_KEY", "MilvusRerankRetriever", "candidate_to_node"]

RETRIEVAL_RANK_KEY = "retrieval_rank"
"""Metadata key of the 1-based position in the first-stage results."""

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


class MilvusRerankRetriever(BaseRetriever):
    """A LlamaIndex retriever: Milvus dense / sparse / hybrid search, then reranking.

    Works wherever a retriever does: ``retrieve``, ``aretrieve``, ``RetrieverQueryEngine``,
    ``QueryFusionRetriever``... The async path awaits the first stage's ``aretrieve`` and the
    reranker's own ``arerank``. Returned nodes have the Milvus primary key as node id, the rerank
    score as ``score``, and ``metadata["retrieval_score"]`` / ``metadata["retrieval_rank"]`` from
    the first stage (both excluded from the LLM and embedding text).

    Build it from a collection (the first stage is a :class:`milvus_rerank.MilvusRetriever`)::

        retriever = MilvusRerankRetriever(
            client="./rag.db", collection_name="docs", embedding=HuggingFaceEmbedding(...),
            mode="hybrid", limit=50, reranker=VLLMReranker("http://localhost:8000"), top_n=5,
        )

    or from its two stages: ``MilvusRerankRetriever(retriever=milvus_retriever,
    postprocessor=RerankPostprocessor(reranker, top_n=5))``. Collections written by
    ``llama-index-vector-stores-milvus`` work as they are: their nodes are restored whole.

    Args:
        retriever: The first stage: a :class:`milvus_rerank.MilvusRetriever` or any object with
            ``retrieve(query)`` and ``aretrieve(query)`` returning candidates. Excludes ``client``.
        postprocessor: The second stage. Excludes ``reranker`` and the options below it.
        client: A ``pymilvus.MilvusClient`` or a URI (``./file.db``, ``http://host:19530``).
        collection_name: The collection to search (with ``client``).
        reranker: Any object with ``rerank`` and ``arerank`` (see :class:`milvus_rerank.Reranker`).
        top_n: How many nodes to return; ``None`` returns every candidate that passes.
        score_threshold: Drop nodes whose rerank score is below this (model-specific scale).
        metadata_mode: Metadata reranked with each node's content (see :class:`RerankPostprocessor`).
        keep_retrieval_score: Keep the first-stage score in ``metadata["retrieval_score"]``.
        on_error: ``"raise"`` or ``"passthrough"`` (see :class:`RerankPostprocessor`).
        callback_manager: LlamaIndex callback manager, shared with the postprocessor it builds.
        verbose: LlamaIndex's retriever verbosity flag.
        **milvus_kwargs: Further :class:`milvus_rerank.MilvusRetriever` options: ``mode``,
            ``embedding`` (a LlamaIndex embedding works: it embeds the query for the dense leg),
            ``limit``, ``filter``, field names...

    Raises:
        ValueError: Both or neither of ``retriever`` and ``client``/``collection_name`` were
            given, or both or neither of ``postprocessor`` and ``reranker``; or an option is invalid.
        TypeError: An argument has the wrong type.
        CollectionNotFoundError: The collection does not exist.
        SchemaError: The collection lacks a field the mode needs.
    """

    def __init__(
        self,
        *,
        retriever: CandidateRetriever | None = None,
        postprocessor: RerankPostprocessor | None = None,
        client: Any = None,
        collection_name: str | None = None,
        reranker: Reranker | None = None,
        top_n: int | None = None,
        score_threshold: float | None = None,
        metadata_mode: MetadataMode = MetadataMode.EMBED,
        keep_retrieval_score: bool = True,
        on_error: Literal["raise", "passthrough"] = "raise",
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
        **milvus_kwargs: Any,
    ) -> None:
        postprocessor = resolve_second_stage(
            "postprocessor",
            postprocessor,
            RerankPostprocessor,
            reranker,
            {
                "top_n": (top_n, None),
                "score_threshold": (score_threshold, None),
                "metadata_mode": (metadata_mode, MetadataMode.EMBED),
                "keep_retrieval_score": (keep_retrieval_score, True),
                "on_error": (on_error, "raise"),
            },
            lambda reranker: RerankPostprocessor(
                reranker,
                top_n=top_n,
                score_threshold=score_threshold,
                metadata_mode=metadata_mode,
                keep_retrieval_score=keep_retrieval_score,
                on_error=on_error,
                callback_manager=callback_manager,
            ),
        )
        retriever = resolve_first_stage(retriever, client, collection_name, milvus_kwargs)
        super().__init__(callback_manager=callback_manager, verbose=verbose)
        self._first_stage = retriever
        self._postprocessor = postprocessor

    def __repr__(self) -> str:
        return f"{type(self).__name__}(retriever={self._first_stage!r}, postprocessor={self._postprocessor!r})"

    @property
    def first_stage(self) -> CandidateRetriever:
        """The first stage (a :class:`milvus_rerank.MilvusRetriever` unless you passed your own)."""
        return self._first_stage

    @property
    def postprocessor(self) -> RerankPostprocessor:
        """The reranking postprocessor."""
        return self._postprocessor

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """Retrieve candidates for the query from Milvus, then rerank them."""
        candidates = self._first_stage.retrieve(query_bundle.query_str)
        nodes = [candidate_to_node(c) for c in candidates]
        return self._postprocessor.postprocess_nodes(nodes, query_bundle=query_bundle)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """Async twin of :meth:`_retrieve`."""
        candidates = await self._first_stage.aretrieve(query_bundle.query_str)
        nodes = [candidate_to_node(c) for c in candidates]
        return await self._postprocessor.apostprocess_nodes(nodes, query_bundle=query_bundle)

    def close(self) -> None:
        """Close the first stage's Milvus client if it created one from a URI."""
        close = getattr(self._first_stage, "close", None)
        if callable(close):
            close()
