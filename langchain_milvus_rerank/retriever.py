"""``MilvusRerankRetriever``: Milvus retrieval (dense, sparse BM25 or hybrid) followed by a reranker.

The first stage is :class:`milvus_rerank.MilvusRetriever` (or any object with ``retrieve`` and
``aretrieve`` returning candidates); the second is a :class:`RerankCompressor`. This module only
turns candidates into LangChain documents between the two.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from langchain_milvus_rerank.compressor import PRIMARY_KEY, RETRIEVAL_SCORE_KEY, RerankCompressor
from milvus_rerank.pipeline import CandidateRetriever, resolve_first_stage, resolve_second_stage
from milvus_rerank.types import Candidate, Reranker

__all__ = ["RETRIEVAL_RANK_KEY", "MilvusRerankRetriever", "candidate_to_document"]

RETRIEVAL_RANK_KEY = "retrieval_rank"
"""Metadata key of the 1-based position in the first-stage results."""

_DEFAULT_TEMPLATE = "{page_content}"


def candidate_to_document(candidate: Candidate) -> Document:
    """Turn a first-stage candidate into a LangChain ``Document``.

    The document's ``id`` is ``str(candidate.id)``; its metadata holds the candidate's metadata
    (the collection's other output fields), then ``pk`` (the primary key, as Milvus typed it),
    ``retrieval_score`` and ``retrieval_rank``, which override fields of the same names.
    """
    metadata = dict(candidate.metadata)
    metadata[PRIMARY_KEY] = candidate.id
    if candidate.score is not None:
        metadata[RETRIEVAL_SCORE_KEY] = candidate.score
    if candidate.retrieval_rank is not None:
        metadata[RETRIEVAL_RANK_KEY] = candidate.retrieval_rank
    return Document(id=str(candidate.id), page_content=candidate.text, metadata=metadata)


class MilvusRerankRetriever(BaseRetriever):
    """A LangChain retriever: Milvus dense / sparse / hybrid search, then reranking.

    Works wherever a retriever does: ``invoke``, ``ainvoke``, ``batch``, ``abatch`` and LCEL
    (``retriever | format_docs``). The async path awaits the first stage's ``aretrieve`` and the
    reranker's own ``arerank``. Extra keyword arguments of ``invoke`` (e.g. ``filter="year > 2020"``
    or ``limit=50`` with :class:`milvus_rerank.MilvusRetriever`) go to the first stage.

    Each document carries the Milvus primary key in ``metadata["pk"]`` (and as ``Document.id``),
    the first-stage score in ``metadata["retrieval_score"]``, its first-stage position in
    ``metadata["retrieval_rank"]`` and the rerank score in ``metadata["relevance_score"]``.

    Build it from a collection (the first stage is a :class:`milvus_rerank.MilvusRetriever`)::

        retriever = MilvusRerankRetriever(
            client="./rag.db", collection_name="docs", embedding=HuggingFaceEmbeddings(...),
            mode="hybrid", limit=50, reranker=VLLMReranker("http://localhost:8000"), top_n=5,
        )

    or from its two stages: ``MilvusRerankRetriever(retriever=milvus_retriever,
    compressor=RerankCompressor(reranker, top_n=5))``.

    Args:
        retriever: The first stage: a :class:`milvus_rerank.MilvusRetriever` or any object with
            ``retrieve(query)`` and ``aretrieve(query)`` returning candidates. Excludes ``client``.
        compressor: The second stage. Excludes ``reranker`` and the options below it.
        client: A ``pymilvus.MilvusClient`` or a URI (``./file.db``, ``http://host:19530``).
        collection_name: The collection to search (with ``client``).
        reranker: Any object with ``rerank`` and ``arerank`` (see :class:`milvus_rerank.Reranker`).
        top_n: How many documents to return; ``None`` returns every candidate that passes.
        score_threshold: Drop documents whose rerank score is below this (model-specific scale).
        document_template: The text reranked for each document (see :class:`RerankCompressor`).
        on_error: ``"raise"`` or ``"passthrough"`` (see :class:`RerankCompressor`).
        tags: LangChain tags for tracing.
        metadata: LangChain run metadata for tracing.
        **milvus_kwargs: Further :class:`milvus_rerank.MilvusRetriever` options (``mode``,
            ``embedding`` (a LangChain ``Embeddings`` works), ``limit``, ``filter``, field names...).

    Raises:
        ValueError: Both or neither of ``retriever`` and ``client``/``collection_name`` were
            given, or both or neither of ``compressor`` and ``reranker``; or an option is invalid.
        TypeError: An argument has the wrong type.
        CollectionNotFoundError: The collection does not exist.
        SchemaError: The collection lacks a field the mode needs.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: CandidateRetriever = Field(description="The first stage, returning candidates for a query.")
    compressor: RerankCompressor = Field(description="The second stage, reranking the first stage's documents.")

    def __init__(
        self,
        *,
        retriever: CandidateRetriever | None = None,
        compressor: RerankCompressor | None = None,
        client: Any = None,
        collection_name: str | None = None,
        reranker: Reranker | None = None,
        top_n: int | None = None,
        score_threshold: float | None = None,
        document_template: str = _DEFAULT_TEMPLATE,
        on_error: Literal["raise", "passthrough"] = "raise",
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **milvus_kwargs: Any,
    ) -> None:
        compressor = resolve_second_stage(
            "compressor",
            compressor,
            RerankCompressor,
            reranker,
            {
                "top_n": (top_n, None),
                "score_threshold": (score_threshold, None),
                "document_template": (document_template, _DEFAULT_TEMPLATE),
                "on_error": (on_error, "raise"),
            },
            lambda reranker: RerankCompressor(
                reranker,
                top_n=top_n,
                score_threshold=score_threshold,
                document_template=document_template,
                on_error=on_error,
            ),
        )
        retriever = resolve_first_stage(retriever, client, collection_name, milvus_kwargs)
        fields: dict[str, Any] = {"retriever": retriever, "compressor": compressor, "tags": tags, "metadata": metadata}
        super().__init__(**fields)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        candidates = self.retriever.retrieve(query, **kwargs)
        documents = [candidate_to_document(c) for c in candidates]
        return list(self.compressor.compress_documents(documents, query, callbacks=run_manager.get_child()))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        candidates = await self.retriever.aretrieve(query, **kwargs)
        documents = [candidate_to_document(c) for c in candidates]
        return list(await self.compressor.acompress_documents(documents, query, callbacks=run_manager.get_child()))
