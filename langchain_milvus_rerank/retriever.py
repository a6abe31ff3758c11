"""``MilvusRerankRetriever``: Milvus retrieval (dense, sparse BM25 or hybrid) followed by a reranker.

The first stage is :class:`milvus_rerank.MilvusRetriever` (or any object with ``retrieve`` and
``aretrieve`` returning candidates); the second is :meth:`RerankCompressor.rerank_candidates`,
run on the candidates themselves. Candidates become LangChain documents once, at the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from langchain_milvus_rerank.compressor import DEFAULT_DOCUMENT_TEMPLATE, RerankCompressor
from milvus_rerank.milvus.options import MilvusRetrieverOptions
from milvus_rerank.milvus.retriever import resolve_first_stage
from milvus_rerank.pipeline import CandidateRetriever, Selection, split_call_options
from milvus_rerank.types import Reranker

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["MilvusRerankRetriever"]


class MilvusRerankRetriever(BaseRetriever):
    """A LangChain retriever: Milvus dense / sparse / hybrid search, then reranking.

    Works wherever a retriever does: ``invoke``, ``ainvoke``, ``batch``, ``abatch`` and LCEL
    (``retriever | format_docs``). The async path awaits the first stage's ``aretrieve`` and the
    reranker's own ``arerank``. The first stage's candidates are deduped, reranked and selected as
    candidates, and become documents once, at the end; the rerank shows in callbacks as a chain
    run named ``RerankCompressor``, a child of the retriever run.

    Per-call options, given to ``invoke`` / ``ainvoke`` / ``batch`` as keyword arguments, are
    checked as the constructor's and replace them for that call: ``top_n`` and
    ``score_threshold``, and the first stage's ``limit`` and ``filter`` (with
    :class:`milvus_rerank.MilvusRetriever`, an extra filter combined with its own by ``and``),
    e.g. ``retriever.invoke("what is BM25?", top_n=3, filter='year > 2020')``. Any other keyword
    is a ``TypeError`` that names it.

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
        **milvus_options: The :class:`milvus_rerank.MilvusRetriever` options
            (:class:`~milvus_rerank.milvus.MilvusRetrieverOptions`: ``mode``, ``embedding`` (a
            LangChain ``Embeddings`` works), ``limit``, ``filter``, field names...), with ``client``.

    Raises:
        ValueError: Both or neither of ``retriever`` and ``client``/``collection_name`` were
            given, or both or neither of ``compressor`` and ``reranker``; or an option is invalid.
        TypeError: An argument has the wrong type.
        CollectionNotFoundError: The collection does not exist.
        SchemaError: The collection lacks a field the mode needs.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: CandidateRetriever = Field(description="The first stage, returning candidates for a query.")
    compressor: RerankCompressor = Field(description="The second stage, reranking the first stage's candidates.")

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
        document_template: str = DEFAULT_DOCUMENT_TEMPLATE,
        on_error: Literal["raise", "passthrough"] = "raise",
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **milvus_options: Unpack[MilvusRetrieverOptions],
    ) -> None:
        chosen = (top_n, score_threshold, document_template, on_error)
        if compressor is None:
            if reranker is None:
                raise ValueError("pass reranker=... (e.g. VLLMReranker or CrossEncoderReranker) or compressor=...")
            compressor = RerankCompressor(
                reranker,
                top_n=top_n,
                score_threshold=score_threshold,
                document_template=document_template,
                on_error=on_error,
            )
        elif reranker is not None or chosen != (None, None, DEFAULT_DOCUMENT_TEMPLATE, "raise"):
            raise ValueError(
                "pass either compressor=... or reranker=... with top_n/score_threshold/document_template/on_error, "
                "not both"
            )
        elif not isinstance(compressor, RerankCompressor):
            raise TypeError(f"compressor must be a RerankCompressor, got {type(compressor).__name__}")

        retriever = resolve_first_stage(retriever, client, collection_name, **milvus_options)
        fields: dict[str, Any] = {
            "retriever": retriever,
            "compressor": compressor,
            "tags": tags,
            "metadata": metadata,
        }
        super().__init__(**fields)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **options: Any
    ) -> list[Document]:
        selection, first_stage = self._call_options(options)
        candidates = self.retriever.retrieve(query, **first_stage)
        return self.compressor.rerank_candidates(
            query, candidates, selection=selection, callbacks=run_manager.get_child()
        )

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **options: Any
    ) -> list[Document]:
        selection, first_stage = self._call_options(options)
        candidates = await self.retriever.aretrieve(query, **first_stage)
        return await self.compressor.arerank_candidates(
            query, candidates, selection=selection, callbacks=run_manager.get_child()
        )

    def _call_options(self, options: dict[str, Any]) -> tuple[Selection, dict[str, Any]]:
        # Checked before the first stage runs, as the constructor checks them.
        per_call, first_stage = split_call_options(options)
        return self.compressor.selection.with_options(per_call), first_stage
