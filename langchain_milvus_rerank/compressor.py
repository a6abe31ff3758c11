"""``RerankCompressor``: a LangChain document compressor backed by any milvus-rerank reranker.

The compressor only converts between LangChain ``Document`` objects and
:class:`milvus_rerank.types.Candidate` objects; deduplication, reranking, the threshold, ``top_n``
and the error policy all live in :class:`milvus_rerank.pipeline.RerankPipeline`.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManager, CallbackManager, Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field

from langchain_milvus_rerank.documents import document_identity, first_stage_score, scored_copies
from milvus_rerank.pipeline import RerankPipeline
from milvus_rerank.types import Candidate, Reranker

__all__ = ["RerankCompressor"]

_PLAIN_TEMPLATE = "{page_content}"


class RerankCompressor(BaseDocumentCompressor):
    """Rerank retrieved documents with a cross-encoder (vLLM, TEI, local, or your own reranker).

    Every distinct document is scored against the query, documents scoring below
    ``score_threshold`` are dropped, then the best ``top_n`` are kept, best first.

    What comes back: new ``Document`` objects (the caller's are never modified) that keep
    ``Document.id``, ``page_content`` and all metadata, plus:

    - ``metadata["relevance_score"]``: the rerank score, a ``float`` (model-specific scale);
    - ``metadata["retrieval_score"]``: the first-stage score, when the document carries one:
      kept as is if the document already has ``retrieval_score`` (as documents from
      :class:`~langchain_milvus_rerank.MilvusRerankRetriever` do), else copied from a numeric
      ``metadata["score"]``.

    Duplicates are scored once and returned once (the first occurrence is kept). Two documents
    are the same when they have the same Milvus primary key ``metadata["pk"]`` (langchain-milvus
    and :class:`~langchain_milvus_rerank.MilvusRerankRetriever` set it), of the same type (``1``,
    ``True``, ``1.0`` and ``"1"`` are four keys); documents without one are the same when they have
    the same ``Document.id``; documents with neither are all distinct.

    Callbacks passed to :meth:`compress_documents` (or inherited from a parent run, as inside
    ``ContextualCompressionRetriever``) see one chain run named ``RerankCompressor`` per call,
    started after the arguments are checked, ended with the returned documents (also for an
    empty list, which returns ``[]`` without calling the reranker), or ended with the error.

    Example:
        >>> from milvus_rerank import VLLMReranker  # doctest: +SKIP
        >>> compressor = RerankCompressor(VLLMReranker("http://localhost:8000"), top_n=3)  # doctest: +SKIP
        >>> compressor.compress_documents(docs, "what is BM25?")  # doctest: +SKIP

    Args:
        reranker: Any object with ``rerank`` and ``arerank`` (see :class:`milvus_rerank.Reranker`),
            e.g. ``VLLMReranker``, ``TEIReranker`` or ``CrossEncoderReranker``.
        top_n: How many documents to return; ``None`` (default) returns every document that
            passes the threshold, reranked.
        score_threshold: Drop documents whose rerank score is below this value. Scores are
            model-specific: a threshold tuned for one model means nothing for another.
        document_template: The text sent to the reranker for each document, a ``str.format``
            template whose fields are ``page_content`` and metadata keys, e.g.
            ``"{title}: {page_content}"``. A document lacking a field is an error.
        on_error: ``"raise"`` (default) propagates reranker failures; ``"passthrough"`` logs a
            warning and returns the documents in their input order without a
            ``relevance_score``, cut to ``top_n``.

    Raises:
        TypeError: ``reranker`` lacks ``rerank``/``arerank``, or an option has the wrong type.
        ValueError: ``top_n`` is not positive, ``score_threshold`` is not finite, ``on_error``
            is unknown, or ``document_template`` is malformed.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    reranker: Reranker = Field(description="Scores documents against the query (the Reranker protocol).")
    top_n: int | None = Field(default=None, description="Documents to return; None returns all that pass.")
    score_threshold: float | None = Field(
        default=None, description="Drop documents whose rerank score is below this (model-specific scale)."
    )
    document_template: str = Field(
        default="{page_content}", description="str.format template of the reranked text: page_content, metadata keys."
    )
    on_error: Literal["raise", "passthrough"] = Field(
        default="raise", description="'raise' propagates reranker failures; 'passthrough' keeps the input order."
    )

    def __init__(
        self,
        reranker: Reranker,
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        document_template: str = _PLAIN_TEMPLATE,
        on_error: Literal["raise", "passthrough"] = "raise",
    ) -> None:
        # The pipeline checks with clear messages before pydantic could coerce ("3" -> 3).
        pipeline = RerankPipeline(reranker, top_n=top_n, score_threshold=score_threshold, on_error=on_error)
        _template_fields(document_template)
        fields: dict[str, Any] = {
            "reranker": reranker,
            "top_n": pipeline.top_n,
            "score_threshold": pipeline.score_threshold,
            "document_template": document_template,
            "on_error": pipeline.on_error,
        }
        super().__init__(**fields)

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Rerank ``documents`` against ``query`` and keep the best.

        Args:
            documents: The retrieved documents; not modified.
            query: The query to score the documents against.
            callbacks: LangChain callbacks that see the rerank as a chain run.

        Returns:
            New documents, best first, with ``metadata["relevance_score"]``.

        Raises:
            TypeError: ``query`` is not a ``str``, ``documents`` is not a sequence of ``Document``.
            ValueError: A document lacks a metadata field used by ``document_template``.
            RerankError: The reranker failed and ``on_error="raise"``.
        """
        pipeline = self._pipeline()
        candidates, texts = self._to_candidates(documents, query)
        return self._traced_rerank(
            pipeline,
            query,
            candidates,
            texts=texts,
            inputs={"query": query, "documents": list(documents)},
            to_documents=partial(scored_copies, documents),
            callbacks=callbacks,
        )

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async twin of :meth:`compress_documents`: awaits the reranker's own ``arerank``."""
        pipeline = self._pipeline()
        candidates, texts = self._to_candidates(documents, query)
        return await self._atraced_rerank(
            pipeline,
            query,
            candidates,
            texts=texts,
            inputs={"query": query, "documents": list(documents)},
            to_documents=partial(scored_copies, documents),
            callbacks=callbacks,
        )

    # The two methods below are the rerank step of MilvusRerankRetriever too, which hands them the
    # first stage's candidates: both paths trace one chain run named after this class.

    def _traced_rerank(
        self,
        pipeline: RerankPipeline,
        query: str,
        candidates: Sequence[Candidate],
        *,
        texts: Sequence[str] | None,
        inputs: dict[str, Any],
        to_documents: Callable[[Sequence[Candidate]], list[Document]],
        callbacks: Callbacks | None,
    ) -> list[Document]:
        manager = CallbackManager.configure(inheritable_callbacks=callbacks, local_metadata=_run_metadata(pipeline))
        run = manager.on_chain_start(None, inputs, name=type(self).__name__)
        try:
            result = to_documents(pipeline.rerank(query, candidates, texts=texts))
        except BaseException as exc:
            run.on_chain_error(exc)
            raise
        run.on_chain_end({"documents": result})
        return result

    async def _atraced_rerank(
        self,
        pipeline: RerankPipeline,
        query: str,
        candidates: Sequence[Candidate],
        *,
        texts: Sequence[str] | None,
        inputs: dict[str, Any],
        to_documents: Callable[[Sequence[Candidate]], list[Document]],
        callbacks: Callbacks | None,
    ) -> list[Document]:
        manager = AsyncCallbackManager.configure(
            inheritable_callbacks=callbacks, local_metadata=_run_metadata(pipeline)
        )
        run = await manager.on_chain_start(None, inputs, name=type(self).__name__)
        try:
            result = to_documents(await pipeline.arerank(query, candidates, texts=texts))
        except BaseException as exc:
            await run.on_chain_error(exc)
            raise
        await run.on_chain_end({"documents": result})
        return result

    def _pipeline(self, selection: Mapping[str, Any] | None = None) -> RerankPipeline:
        # Built per call from the current fields, so a changed field (c.top_n = 5, model_copy) takes effect
        # and is checked; per-call options of the retriever replace top_n / score_threshold.
        pipeline = RerankPipeline(
            self.reranker, top_n=self.top_n, score_threshold=self.score_threshold, on_error=self.on_error
        )
        return pipeline.with_selection(selection or {})

    def _rerank_texts(self, contents: Iterable[tuple[str, Mapping[str, Any], str]]) -> list[str] | None:
        """The text reranked for each ``(page_content, metadata, where)``; ``None`` when it is the content itself.

        ``where`` names the item in an error (``"documents[3]"``).
        """
        fields = _template_fields(self.document_template)
        if self.document_template == _PLAIN_TEMPLATE:
            return None
        return [self._render(page_content, metadata, fields, where) for page_content, metadata, where in contents]

    def _render(self, page_content: str, metadata: Mapping[str, Any], fields: frozenset[str], where: str) -> str:
        values: dict[str, Any] = {}
        for name in fields:
            if name == "page_content":
                values[name] = page_content
            elif name in metadata:
                values[name] = metadata[name]
            else:
                raise ValueError(
                    f"{where} has no metadata field {name!r}, which document_template "
                    f"{self.document_template!r} uses; add the field to every document or change the template"
                )
        return self.document_template.format_map(values)

    def _to_candidates(self, documents: Sequence[Document], query: str) -> tuple[list[Candidate], list[str] | None]:
        """Check the arguments; turn each document into a candidate, and render the reranked texts.

        A candidate's id is the position of the first document with the same identity, so the
        pipeline's dedupe by id keeps the first occurrence and the id maps straight back.
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        if isinstance(documents, (str, bytes, Document)) or not isinstance(documents, Sequence):
            raise TypeError(
                f"documents must be a sequence of langchain Document objects, got {type(documents).__name__}"
            )
        first_position: dict[Hashable, int] = {}
        candidates = []
        for position, document in enumerate(documents):
            if not isinstance(document, Document):
                raise TypeError(
                    f"documents[{position}] must be a langchain_core.documents.Document, got {type(document).__name__}"
                )
            identity = first_position.setdefault(document_identity(document, position), position)
            candidates.append(
                Candidate(id=identity, text=document.page_content, score=first_stage_score(document.metadata))
            )
        texts = self._rerank_texts((d.page_content, d.metadata, f"documents[{i}]") for i, d in enumerate(documents))
        return candidates, texts


def _run_metadata(pipeline: RerankPipeline) -> dict[str, Any]:
    return {
        "reranker": type(pipeline.reranker).__name__,
        "top_n": pipeline.top_n,
        "score_threshold": pipeline.score_threshold,
    }


def _template_fields(template: object) -> frozenset[str]:
    """Return the field names of ``template``, checking it is a template of named fields."""
    if not isinstance(template, str):
        raise TypeError(f"document_template must be a str, got {type(template).__name__}")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"document_template {template!r} is not a valid str.format template: {exc}") from exc
    fields = set()
    for _, name, _, _ in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise ValueError(
                f"document_template {template!r} has the field {{{name}}}; use plain names: "
                "{page_content} or a metadata key such as {title}"
            )
        fields.add(name)
    return frozenset(fields)
