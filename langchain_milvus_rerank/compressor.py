"""``RerankCompressor``: a LangChain document compressor backed by any milvus-rerank reranker.

The compressor only converts between LangChain ``Document`` objects and
:class:`milvus_rerank.types.Candidate` objects (:mod:`langchain_milvus_rerank.documents`) around
:meth:`milvus_rerank.pipeline.RerankPipeline.rerank`, which dedupes, reranks, applies the threshold
and ``top_n`` and the error policy. :meth:`RerankCompressor.rerank_candidates` is the same on a
first stage's candidates: the rerank step of ``MilvusRerankRetriever``.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManager, CallbackManager, Callbacks
from langchain_core.documents import BaseDocumentCompressor, Document
from pydantic import ConfigDict, Field, PrivateAttr

from langchain_milvus_rerank.documents import (
    candidate_to_document,
    document_identity,
    document_metadata,
    first_stage_score,
    scored_copies,
)
from milvus_rerank.pipeline import RerankPipeline, Selection
from milvus_rerank.types import Candidate, Reranker

__all__ = ["DEFAULT_DOCUMENT_TEMPLATE", "RerankCompressor"]

DEFAULT_DOCUMENT_TEMPLATE = "{page_content}"
"""The text reranked for each document by default: its ``page_content`` alone."""


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
      ``metadata["score"]``;
    - ``metadata["rerank_span"]``: ``(start, end)``, the characters of ``page_content`` in the best
      window, when the reranker split the document into windows (``long_documents="windows"``).

    Duplicates (the same ``metadata["pk"]``, else the same ``Document.id``) are scored and
    returned once. Callbacks see one chain run named ``RerankCompressor`` per call. Both rules in
    full: docs/langchain.md.

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
        best_window: With a reranker that splits long documents into windows
            (``long_documents="windows"``), return the best window of such a document as its
            ``page_content`` instead of the whole chunk (its span is in ``metadata["rerank_span"]`` either
            way), so the LLM reads the part that matched. Off by default.

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
        default=DEFAULT_DOCUMENT_TEMPLATE,
        description="str.format template of the reranked text: page_content, metadata keys.",
    )
    on_error: Literal["raise", "passthrough"] = Field(
        default="raise", description="'raise' propagates reranker failures; 'passthrough' keeps the input order."
    )

    best_window: bool = Field(
        default=False,
        description="Return a long document's best window as page_content (reranker with long_documents='windows').",
    )

    _pipeline: RerankPipeline = PrivateAttr()

    def __init__(
        self,
        reranker: Reranker,
        *,
        top_n: int | None = None,
        score_threshold: float | None = None,
        document_template: str = DEFAULT_DOCUMENT_TEMPLATE,
        on_error: Literal["raise", "passthrough"] = "raise",
        best_window: bool = False,
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
            "best_window": _check_bool(best_window, "best_window"),
        }
        super().__init__(**fields)
        self._pipeline = pipeline

    @property
    def selection(self) -> Selection:
        """``top_n`` and ``score_threshold`` as they are now, checked (a field set after construction is checked here).

        Per-call options replace them with ``compressor.selection.with_options(...)``.
        """
        return Selection(self.top_n, self.score_threshold)

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
        candidates, texts, run = self._documents_run(documents, query)
        return run.sync(query, candidates, texts, callbacks)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async twin of :meth:`compress_documents`: awaits the reranker's own ``arerank``."""
        candidates, texts, run = self._documents_run(documents, query)
        return await run.asynchronous(query, candidates, texts, callbacks)

    def rerank_candidates(
        self,
        query: str,
        candidates: Sequence[Candidate],
        *,
        selection: Selection | None = None,
        callbacks: Callbacks | None = None,
    ) -> list[Document]:
        """Rerank a first stage's candidates and return the best as documents (:func:`candidate_to_document`).

        The rerank step of :class:`~langchain_milvus_rerank.MilvusRerankRetriever`: the same as
        :meth:`compress_documents` (one chain run named ``RerankCompressor``), on
        :class:`~milvus_rerank.Candidate` objects, which become documents once, at the end.
        ``document_template`` sees each candidate's metadata as its document will carry it
        (``pk``, ``retrieval_score``...).

        Args:
            query: The query to score the candidates against.
            candidates: The first stage's candidates (e.g. ``MilvusRetriever.retrieve``); not modified.
            selection: ``top_n`` and ``score_threshold`` of this call; ``None``: :attr:`selection`.
            callbacks: LangChain callbacks that see the rerank as a chain run.

        Raises:
            TypeError: ``query`` is not a ``str``.
            ValueError: A candidate lacks a metadata field used by ``document_template``.
            RerankError: The reranker failed and ``on_error="raise"``.
        """
        texts, run = self._candidates_run(query, candidates, selection)
        return run.sync(query, candidates, texts, callbacks)

    async def arerank_candidates(
        self,
        query: str,
        candidates: Sequence[Candidate],
        *,
        selection: Selection | None = None,
        callbacks: Callbacks | None = None,
    ) -> list[Document]:
        """Async twin of :meth:`rerank_candidates`: awaits the reranker's own ``arerank``."""
        texts, run = self._candidates_run(query, candidates, selection)
        return await run.asynchronous(query, candidates, texts, callbacks)

    def _documents_run(
        self, documents: Sequence[Document], query: str
    ) -> tuple[list[Candidate], list[str] | None, _Run]:
        candidates, texts = self._to_candidates(documents, query)
        inputs = {"query": query, "documents": list(documents)}
        copies = partial(scored_copies, documents, best_window=self.best_window)
        return candidates, texts, self._run(inputs, self.selection, copies)

    def _candidates_run(
        self, query: str, candidates: Sequence[Candidate], selection: Selection | None
    ) -> tuple[list[str] | None, _Run]:
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        texts = self._rerank_texts(
            (c.text, document_metadata(c), f"the candidate with primary key {c.id!r}") for c in candidates
        )
        chosen = self.selection if selection is None else selection
        to_documents = partial(_to_documents, best_window=self.best_window)
        return texts, self._run({"query": query, "candidates": list(candidates)}, chosen, to_documents)

    def _run(
        self,
        inputs: dict[str, Any],
        selection: Selection,
        to_documents: Callable[[Sequence[Candidate]], list[Document]],
    ) -> _Run:
        # The reranker and on_error are fields, and a field may be set after construction (or by
        # model_copy(update=...)): the pipeline follows them. top_n / score_threshold go per call.
        if self._pipeline.reranker is not self.reranker or self._pipeline.on_error != self.on_error:
            self._pipeline = RerankPipeline(self.reranker, on_error=self.on_error)
        return _Run(self._pipeline, type(self).__name__, inputs, selection, to_documents)

    def _rerank_texts(self, contents: Iterable[tuple[str, Mapping[str, Any], str]]) -> list[str] | None:
        """The text reranked for each ``(page_content, metadata, where)``; ``None`` when it is the content itself.

        ``where`` names the item in an error (``"documents[3]"``).
        """
        fields = _template_fields(self.document_template)
        if self.document_template == DEFAULT_DOCUMENT_TEMPLATE:
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


class _Run:
    """One rerank as a LangChain chain run named after the compressor, started once the arguments are checked."""

    def __init__(
        self,
        pipeline: RerankPipeline,
        name: str,
        inputs: dict[str, Any],
        selection: Selection,
        to_documents: Callable[[Sequence[Candidate]], list[Document]],
    ) -> None:
        self.pipeline = pipeline
        self.name = name
        self.inputs = inputs
        self.selection = selection
        self.to_documents = to_documents
        self.metadata = {
            "reranker": type(self.pipeline.reranker).__name__,
            "top_n": selection.top_n,
            "score_threshold": selection.score_threshold,
        }

    def sync(
        self, query: str, candidates: Sequence[Candidate], texts: Sequence[str] | None, callbacks: Callbacks | None
    ) -> list[Document]:
        manager = CallbackManager.configure(inheritable_callbacks=callbacks, local_metadata=self.metadata)
        run = manager.on_chain_start(None, self.inputs, name=self.name)
        try:
            result = self.to_documents(self.pipeline.rerank(query, candidates, texts=texts, selection=self.selection))
        except BaseException as exc:
            run.on_chain_error(exc)
            raise
        run.on_chain_end({"documents": result})
        return result

    async def asynchronous(
        self, query: str, candidates: Sequence[Candidate], texts: Sequence[str] | None, callbacks: Callbacks | None
    ) -> list[Document]:
        manager = AsyncCallbackManager.configure(inheritable_callbacks=callbacks, local_metadata=self.metadata)
        run = await manager.on_chain_start(None, self.inputs, name=self.name)
        try:
            reranked = await self.pipeline.arerank(query, candidates, texts=texts, selection=self.selection)
            result = self.to_documents(reranked)
        except BaseException as exc:
            await run.on_chain_error(exc)
            raise
        await run.on_chain_end({"documents": result})
        return result


def _to_documents(selected: Sequence[Candidate], *, best_window: bool) -> list[Document]:
    return [candidate_to_document(candidate, best_window=best_window) for candidate in selected]


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


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
