"""A LlamaIndex node postprocessor that reranks nodes with any milvus-rerank reranker.

The postprocessor only converts: ``NodeWithScore`` objects become
:class:`~milvus_rerank.types.Candidate` objects, :class:`~milvus_rerank.pipeline.RerankPipeline`
dedupes, reranks and selects them, and the survivors come back as new ``NodeWithScore`` objects.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from llamaindex_milvus_rerank.nodes import (
    RERANK_SPAN_KEY,
    RETRIEVAL_SCORE_KEY,
    SCORED_BY_KEY,
    candidate_to_node,
    scored_copy,
)
from milvus_rerank.pipeline import RerankPipeline, Selection, dedupe_key, strict_key, with_retrieval_ranks
from milvus_rerank.rerankers.windows import span_in
from milvus_rerank.types import Candidate, Reranker

__all__ = ["RerankPostprocessor"]

dispatcher = get_dispatcher(__name__)


def _model_name(reranker: object) -> str:
    """Name the reranker's model for events: its model attribute when it has one, else its class."""
    for attribute in ("model_name", "model_name_or_path", "model"):
        value = getattr(reranker, attribute, None)
        if isinstance(value, str) and value:
            return value
    return type(reranker).__name__


class RerankPostprocessor(BaseNodePostprocessor):
    """Rerank retrieved nodes with a cross-encoder (vLLM, TEI, local, or your own reranker).

    Every node is scored against the query, duplicates once (the same node id, or with ``pk_key``
    the same primary key: docs/llamaindex.md). Then nodes scoring below ``score_threshold`` are
    dropped, then the best ``top_n`` are kept. The result is
    made of new ``NodeWithScore`` objects over copies of the nodes: node ids are kept, ``score``
    is the rerank score, and the first-stage score is kept in ``metadata["retrieval_score"]``
    (excluded from the LLM and embedding text). The caller's nodes are never modified.

    Emits ``ReRankStartEvent`` and ``ReRankEndEvent`` (after the arguments are checked, also for
    an empty list); a failure that propagates ends the span with the error instead.

    Args:
        reranker: Any object with ``rerank`` and ``arerank`` (see :class:`milvus_rerank.Reranker`),
            e.g. ``VLLMReranker``, ``TEIReranker`` or ``CrossEncoderReranker``.
        top_n: How many nodes to return; ``None`` returns every node that passes the threshold.
        score_threshold: Drop nodes whose rerank score is below this; scores are model-specific.
        metadata_mode: Which metadata goes into the text sent to the reranker with each node's
            content (``MetadataMode.EMBED`` by default, as the node was embedded).
        keep_retrieval_score: Keep the first-stage score in ``metadata["retrieval_score"]``.
        on_error: ``"raise"`` (default) propagates reranker failures; ``"passthrough"`` logs a
            warning and returns the nodes in first-stage order with their first-stage scores,
            cut to ``top_n``.
        pk_key: Metadata key holding the Milvus primary key, for nodes whose ids are not the key:
            ``MilvusVectorStore`` on a collection that another tool wrote gives every hit a new
            random node id, so list the primary key field in its ``output_fields`` and name it
            here (e.g. ``"pk"`` for langchain-milvus collections). Nodes without the key fall
            back to their node id.
        best_window: With a reranker that splits long texts into windows (``long_documents="windows"``),
            return the best window of such a node as its text instead of the whole chunk (its span in the
            node's text is in ``metadata["rerank_span"]`` either way, excluded from the LLM and embedding
            text), so the LLM reads the part that matched. Off by default.
        callback_manager: LlamaIndex callback manager (legacy callbacks get a ``RERANKING`` event).

    Raises:
        TypeError: ``reranker`` lacks ``rerank``/``arerank``, or an option has the wrong type.
        ValueError: ``top_n`` is not positive, ``score_threshold`` is not finite or ``on_error``
            is unknown.
    """

    top_n: int | None = Field(
        default=None, description="Number of nodes to return after reranking; None returns all that pass."
    )
    score_threshold: float | None = Field(
        default=None, description="Drop nodes whose rerank score is below this value (model-specific scale)."
    )
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED, description="Metadata included with each node's content in the reranked text."
    )
    keep_retrieval_score: bool = Field(
        default=True, description="Keep the first-stage score in node metadata under 'retrieval_score'."
    )
    on_error: Literal["raise", "passthrough"] = Field(
        default="raise", description="'raise' propagates reranker failures; 'passthrough' keeps first-stage order."
    )
    pk_key: str | None = Field(
        default=None,
        description="Node metadata key holding the Milvus primary key, used to recognise duplicates; "
        "None (or a node without the key): the node id.",
    )
    model_name: str = Field(default="", description="Name of the reranker's model, reported in rerank events.")
    best_window: bool = Field(
        default=False,
        description="Return a long node's best window as its text (reranker with long_documents='windows').",
    )

    _pipeline: RerankPipeline = PrivateAttr()

    def __init__(
        self,
        reranker: Reranker,
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        metadata_mode: MetadataMode = MetadataMode.EMBED,
        keep_retrieval_score: bool = True,
        on_error: Literal["raise", "passthrough"] = "raise",
        pk_key: str | None = None,
        callback_manager: CallbackManager | None = None,
        best_window: bool = False,
    ) -> None:
        # The pipeline validates with clear messages before pydantic could coerce ("3" -> 3).
        pipeline = RerankPipeline(reranker, top_n=top_n, score_threshold=score_threshold, on_error=on_error)
        if not isinstance(metadata_mode, MetadataMode):
            raise TypeError(f"metadata_mode must be a llama_index MetadataMode, got {type(metadata_mode).__name__}")
        if not isinstance(keep_retrieval_score, bool):
            raise TypeError(f"keep_retrieval_score must be a bool, got {type(keep_retrieval_score).__name__}")
        if pk_key is not None and not isinstance(pk_key, str):
            raise TypeError(f"pk_key must be a metadata key (str) or None, got {type(pk_key).__name__}")
        if not isinstance(best_window, bool):
            raise TypeError(f"best_window must be a bool, got {type(best_window).__name__}")
        if pk_key == "":
            raise ValueError("pk_key must be a non-empty metadata key, e.g. 'pk', or None to use node ids")
        fields: dict[str, Any] = {
            "top_n": pipeline.top_n,
            "score_threshold": pipeline.score_threshold,
            "metadata_mode": metadata_mode,
            "keep_retrieval_score": keep_retrieval_score,
            "on_error": pipeline.on_error,
            "pk_key": pk_key,
            "model_name": _model_name(reranker),
            "best_window": best_window,
            "callback_manager": callback_manager or CallbackManager(),
        }
        super().__init__(**fields)
        self._pipeline = pipeline

    @classmethod
    def class_name(cls) -> str:
        """Name used by LlamaIndex serialization."""
        return "RerankPostprocessor"

    @property
    def reranker(self) -> Reranker:
        """The reranker that scores the nodes."""
        return self._pipeline.reranker

    @property
    def selection(self) -> Selection:
        """``top_n`` and ``score_threshold`` as they are now, checked (a field set after construction is checked here).

        Per-call options replace them with ``postprocessor.selection.with_options(...)``.
        """
        return Selection(self.top_n, self.score_threshold)

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        """Rerank ``nodes`` against the query of ``query_bundle``."""
        return self._nodes_step(nodes, query_bundle).run()

    @dispatcher.span  # the mixin spans only _postprocess_nodes (abstract in the base); the async path needs its own
    async def _apostprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        """Async twin of :meth:`_postprocess_nodes`: awaits the reranker's own ``arerank``."""
        return await self._nodes_step(nodes, query_bundle).arun()

    def rerank_candidates(
        self, query: str | QueryBundle, candidates: Sequence[Candidate], *, selection: Selection | None = None
    ) -> list[NodeWithScore]:
        """Rerank a first stage's candidates and return the best as nodes (:func:`candidate_to_node`).

        The rerank step of :class:`~llamaindex_milvus_rerank.MilvusRerankRetriever`: the same as
        :meth:`postprocess_nodes`, with the same events, on :class:`~milvus_rerank.Candidate`
        objects. Each becomes a node once (numbered by its first-stage position when it has no
        ``retrieval_rank``), the reranker reads the node's content as ``metadata_mode`` renders
        it, and the survivors come back as copies scored by the reranker.

        Args:
            query: The query, as a string or a ``QueryBundle``.
            candidates: The first stage's candidates (e.g. ``MilvusRetriever.retrieve``); not modified.
            selection: ``top_n`` and ``score_threshold`` of this call; ``None``: :attr:`selection`.

        Raises:
            TypeError: ``query`` is neither a ``str`` nor a ``QueryBundle``.
            SchemaError: A candidate holds a ``_node_content`` that is not a serialized node.
            RerankError: The reranker failed and ``on_error="raise"``.
        """
        return self._candidates_step(query, candidates, selection).run()

    async def arerank_candidates(
        self, query: str | QueryBundle, candidates: Sequence[Candidate], *, selection: Selection | None = None
    ) -> list[NodeWithScore]:
        """Async twin of :meth:`rerank_candidates`: awaits the reranker's own ``arerank``."""
        return await self._candidates_step(query, candidates, selection).arun()

    def _nodes_step(self, nodes: Sequence[NodeWithScore], query_bundle: QueryBundle | None) -> _Step:
        if query_bundle is None:
            raise ValueError(
                "RerankPostprocessor needs the query to rerank against: call postprocess_nodes(nodes, query_str=...) "
                "or pass a QueryBundle (query engines do this for you)"
            )
        if not isinstance(query_bundle, QueryBundle) or not isinstance(query_bundle.query_str, str):
            raise TypeError(f"query_bundle must be a QueryBundle with a str query, got {type(query_bundle).__name__}")
        if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Sequence):
            raise TypeError(f"nodes must be a list of NodeWithScore, got {type(nodes).__name__}")
        for position, item in enumerate(nodes):
            if not isinstance(item, NodeWithScore):
                raise TypeError(
                    f"nodes[{position}] must be a NodeWithScore, got {type(item).__name__}; "
                    "wrap a node as NodeWithScore(node=node, score=None)"
                )
        selection = self.selection
        # A candidate's id is the position of the first node with the same identity, so the pipeline's
        # dedupe keeps the first occurrence and the id maps straight back to a node.
        first_position: dict[Hashable, int] = {}
        candidates = [
            Candidate(
                id=first_position.setdefault(self._identity(item), position),
                text=item.node.get_content(metadata_mode=self.metadata_mode),
                score=item.score,
            )
            for position, item in enumerate(nodes)
        ]
        return _Step(self, query_bundle, candidates, nodes, None, selection)

    def _candidates_step(
        self, query: str | QueryBundle, candidates: Sequence[Candidate], selection: Selection | None
    ) -> _Step:
        if isinstance(query, str):
            query = QueryBundle(query)
        elif not isinstance(query, QueryBundle) or not isinstance(query.query_str, str):
            raise TypeError(f"query must be a str or a QueryBundle with a str query, got {type(query).__name__}")
        numbered = with_retrieval_ranks(candidates)
        nodes = [candidate_to_node(candidate) for candidate in numbered]
        texts = [item.node.get_content(metadata_mode=self.metadata_mode) for item in nodes]
        return _Step(self, query, numbered, nodes, texts, self.selection if selection is None else selection)

    def _identity(self, item: NodeWithScore) -> Hashable:
        # The primary key when the node carries one: MilvusVectorStore on a collection it did not write
        # gives each hit a fresh random node id, and only an output field holds the key. Tagged, so that
        # a primary key never equals a node id, and type-strict, so that pk 1 is not pk True.
        if self.pk_key is not None:
            value = item.node.metadata.get(self.pk_key)
            if isinstance(value, (int, str)) and not isinstance(value, bool):
                return ("pk", strict_key(value))
        return ("node_id", item.node.node_id)

    def _engine(self) -> RerankPipeline:
        # on_error is a field, and a field may be set after construction: the pipeline follows it.
        # top_n / score_threshold go per call.
        if self._pipeline.on_error != self.on_error:
            self._pipeline = RerankPipeline(self._pipeline.reranker, on_error=self.on_error)
        return self._pipeline


class _Step:
    """One rerank of nodes with its events: ``ReRankStartEvent`` / ``ReRankEndEvent`` and the legacy ``RERANKING``.

    ``nodes[i]`` belongs to ``candidates[i]``; ``texts`` are what the reranker reads when not the candidates' text.
    """

    def __init__(
        self,
        postprocessor: RerankPostprocessor,
        query_bundle: QueryBundle,
        candidates: Sequence[Candidate],
        nodes: Sequence[NodeWithScore],
        texts: Sequence[str] | None,
        selection: Selection,
    ) -> None:
        self.postprocessor = postprocessor
        self.pipeline = postprocessor._engine()
        self.query_bundle = query_bundle
        self.candidates = candidates
        self.nodes = nodes
        self.texts = texts
        self.selection = selection
        self.top_k = selection.top_n if selection.top_n is not None else len(nodes)

    def run(self) -> list[NodeWithScore]:
        if not self._start():
            return self._end([])
        with self._event() as event:
            query = self.query_bundle.query_str
            reranked = self.pipeline.rerank(query, self.candidates, texts=self.texts, selection=self.selection)
            return self._finish(event, reranked)

    async def arun(self) -> list[NodeWithScore]:
        if not self._start():
            return self._end([])
        with self._event() as event:
            query = self.query_bundle.query_str
            reranked = await self.pipeline.arerank(query, self.candidates, texts=self.texts, selection=self.selection)
            return self._finish(event, reranked)

    def _start(self) -> bool:
        """Emit the start event; whether there is anything to rerank."""
        model_name = self.postprocessor.model_name
        dispatcher.event(
            ReRankStartEvent(query=self.query_bundle, nodes=list(self.nodes), top_n=self.top_k, model_name=model_name)
        )
        return bool(self.candidates)

    def _event(self) -> Any:
        payload: dict[str, Any] = {
            EventPayload.NODES: list(self.nodes),
            EventPayload.MODEL_NAME: self.postprocessor.model_name,
            EventPayload.QUERY_STR: self.query_bundle.query_str,
            EventPayload.TOP_K: self.top_k,
        }
        return self.postprocessor.callback_manager.event(CBEventType.RERANKING, payload=payload)

    def _finish(self, event: Any, reranked: Sequence[Candidate]) -> list[NodeWithScore]:
        result = self._to_nodes(reranked)
        event.on_end(payload={EventPayload.NODES: result})
        return self._end(result)

    @staticmethod
    def _end(result: list[NodeWithScore]) -> list[NodeWithScore]:
        dispatcher.event(ReRankEndEvent(nodes=list(result)))
        return result

    def _to_nodes(self, reranked: Sequence[Candidate]) -> list[NodeWithScore]:
        """Copy the node of each reranked candidate, best first."""
        first: dict[Hashable, NodeWithScore] = {}
        for candidate, item in zip(self.candidates, self.nodes, strict=True):
            first.setdefault(dedupe_key(candidate), item)
        keep_retrieval_score = self.postprocessor.keep_retrieval_score
        result = []
        for candidate in reranked:
            original = first[dedupe_key(candidate)]
            extra: dict[str, Any] = {}
            if keep_retrieval_score and original.score is not None:
                extra[RETRIEVAL_SCORE_KEY] = original.score
            if candidate.scored_by is not None:
                extra[SCORED_BY_KEY] = candidate.scored_by
            # The window in the text the reranker read (content and metadata), as characters of the node's text.
            content = original.node.get_content(metadata_mode=MetadataMode.NONE)
            span = span_in(content, candidate.text, candidate.rerank_span)
            if span is not None:
                extra[RERANK_SPAN_KEY] = span
            window = content[span[0] : span[1]] if span is not None and self.postprocessor.best_window else None
            # Unscored (on_error="passthrough"): keep the first-stage score, which matches the order returned.
            score = candidate.rerank_score if candidate.reranked else original.score
            result.append(scored_copy(original, score, extra, text=window))
        return result
