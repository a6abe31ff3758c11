"""``MilvusRerankRetriever``: Milvus retrieval (dense, sparse BM25 or hybrid) followed by a reranker.

The first stage is :class:`milvus_rerank.MilvusRetriever` (or any object with ``retrieve`` and
``aretrieve`` returning candidates); the second is :meth:`RerankPostprocessor.rerank_candidates`,
run on the candidates themselves. Each candidate becomes a node once (the reranker reads the node's
content, as LlamaIndex renders it), and the survivors are returned as copies scored by the reranker.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, QueryType

from llamaindex_milvus_rerank.postprocessor import RerankPostprocessor
from milvus_rerank.milvus.options import MilvusRetrieverOptions
from milvus_rerank.milvus.retriever import resolve_first_stage
from milvus_rerank.pipeline import CandidateRetriever, Selection, split_call_options
from milvus_rerank.types import Reranker

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["MilvusRerankRetriever"]

# LlamaIndex's retrieve() passes only the query on to _retrieve(), so the options of one call travel
# beside it: a context variable is private to its thread and its asyncio task, so concurrent calls
# never see each other's options. It holds (retriever, selection of the call, first-stage options).
_CALL: ContextVar[tuple[object, Selection, dict[str, Any]] | None] = ContextVar(
    "llamaindex_milvus_rerank_call", default=None
)


class MilvusRerankRetriever(BaseRetriever):
    """A LlamaIndex retriever: Milvus dense / sparse / hybrid search, then reranking.

    Works wherever a retriever does: ``retrieve``, ``aretrieve``, ``RetrieverQueryEngine``,
    ``QueryFusionRetriever``... The async path awaits the first stage's ``aretrieve`` and the
    reranker's own ``arerank``. Returned nodes have the Milvus primary key as node id, the rerank
    score as ``score``, and ``metadata["retrieval_score"]`` / ``metadata["retrieval_rank"]`` from
    the first stage (both excluded from the LLM and embedding text). The rerank emits
    ``ReRankStartEvent`` / ``ReRankEndEvent`` inside the retrieval's own events.

    Per-call options are keyword arguments of :meth:`retrieve` / :meth:`aretrieve`, checked as the
    constructor's, replacing them for that call: ``top_n`` and ``score_threshold``, and the first
    stage's ``limit`` and ``filter`` (with :class:`milvus_rerank.MilvusRetriever`, an extra filter
    combined with its own by ``and``), e.g. ``retriever.retrieve("what is BM25?", top_n=3)``.
    Any other keyword is a ``TypeError`` that names it. Query engines call ``retrieve(query)``
    and get the constructor's settings.

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
        **milvus_options: The :class:`milvus_rerank.MilvusRetriever` options
            (:class:`~milvus_rerank.milvus.MilvusRetrieverOptions`: ``mode``, ``embedding`` (a
            LlamaIndex embedding works: it embeds the query for the dense leg), ``limit``,
            ``filter``, field names...), with ``client``.

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
        **milvus_options: Unpack[MilvusRetrieverOptions],
    ) -> None:
        chosen = (top_n, score_threshold, metadata_mode, keep_retrieval_score, on_error)
        if postprocessor is None:
            if reranker is None:
                raise ValueError("pass reranker=... (e.g. VLLMReranker or CrossEncoderReranker) or postprocessor=...")
            postprocessor = RerankPostprocessor(
                reranker,
                top_n=top_n,
                score_threshold=score_threshold,
                metadata_mode=metadata_mode,
                keep_retrieval_score=keep_retrieval_score,
                on_error=on_error,
                callback_manager=callback_manager,
            )
        elif reranker is not None or chosen != (None, None, MetadataMode.EMBED, True, "raise"):
            raise ValueError(
                "pass either postprocessor=... or reranker=... with "
                "top_n/score_threshold/metadata_mode/keep_retrieval_score/on_error, not both"
            )
        elif not isinstance(postprocessor, RerankPostprocessor):
            raise TypeError(f"postprocessor must be a RerankPostprocessor, got {type(postprocessor).__name__}")

        retriever = resolve_first_stage(retriever, client, collection_name, **milvus_options)
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

    def retrieve(self, str_or_query_bundle: QueryType, **options: Any) -> list[NodeWithScore]:
        """Retrieve candidates for the query from the first stage, rerank them, and return the best nodes.

        Args:
            str_or_query_bundle: The query, as a string or a ``QueryBundle``.
            **options: Per-call ``top_n``, ``score_threshold``, ``limit`` and ``filter``.

        Raises:
            TypeError: An unknown option, or an option of the wrong type.
            ValueError: An option out of range.
        """
        with self._call_options(options):
            return super().retrieve(str_or_query_bundle)

    async def aretrieve(self, str_or_query_bundle: QueryType, **options: Any) -> list[NodeWithScore]:
        """Async twin of :meth:`retrieve`."""
        with self._call_options(options):
            return await super().aretrieve(str_or_query_bundle)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        selection, first_stage = self._call()
        candidates = self._first_stage.retrieve(query_bundle.query_str, **first_stage)
        return self._postprocessor.rerank_candidates(query_bundle, candidates, selection=selection)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        selection, first_stage = self._call()
        candidates = await self._first_stage.aretrieve(query_bundle.query_str, **first_stage)
        return await self._postprocessor.arerank_candidates(query_bundle, candidates, selection=selection)

    @contextmanager
    def _call_options(self, options: Mapping[str, Any]) -> Iterator[None]:
        # Checked here, before LlamaIndex's retrieval events start, as the constructor checks them.
        per_call, first_stage = split_call_options(options)
        token = _CALL.set((self, self._postprocessor.selection.with_options(per_call), first_stage))
        try:
            yield
        finally:
            _CALL.reset(token)

    def _call(self) -> tuple[Selection, dict[str, Any]]:
        call = _CALL.get()
        if call is not None and call[0] is self:
            return call[1], call[2]
        return self._postprocessor.selection, {}  # _retrieve called directly, e.g. by a subclass

    def close(self) -> None:
        """Close the first stage's Milvus client if it created one from a URI."""
        close = getattr(self._first_stage, "close", None)
        if callable(close):
            close()
