"""First-stage retrieval from Milvus: dense, sparse (BM25 or a user encoder) and hybrid search.

:class:`MilvusRetriever` reads the collection's schema and indexes once, at construction, so it
works on collections that other tools created: any field names, ``INT64`` or ``VARCHAR``
primary keys, any dense metric. Each hit becomes a :class:`~milvus_rerank.types.Candidate`
carrying the primary key, the text, the first-stage score as Milvus reported it and the other
output fields as metadata. The one exception: Milvus Lite reports BM25 scores negated, and the
retriever gives them back their sign, so that a BM25 ``score`` means the same on Lite and on a
server (larger is better, as :attr:`MilvusRetriever.higher_is_better` says for every mode).

The search options are :class:`~milvus_rerank.milvus.options.SearchOptions`; the Milvus calls
that open the collection are in :mod:`milvus_rerank.milvus.inspection`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from milvus_rerank.errors import SchemaError
from milvus_rerank.milvus.connection import connect
from milvus_rerank.milvus.embeddings import (
    QueryEmbedder,
    SparseVector,
    as_query_embedder,
    as_sparse_query_encoder,
)
from milvus_rerank.milvus.inspection import check_layout, milvus_error, open_collection
from milvus_rerank.milvus.options import (
    DEFAULT_CANDIDATE_LIMIT,
    DEFAULT_LIMIT,
    DEFAULT_RRF_K,
    MODES,
    MilvusRetrieverOptions,
    RetrievalMode,
    SearchOptions,
    check_filter,
    check_limit,
    search_options,
)
from milvus_rerank.milvus.rankers import check_ranker, is_model_ranker, ranker_for_query
from milvus_rerank.milvus.schema import CollectionLayout
from milvus_rerank.types import Candidate, CandidateRetriever, check_retriever
from milvus_rerank.validation import check_choice, check_keywords

if TYPE_CHECKING:
    from collections.abc import Callable

    from pymilvus import MilvusClient
    from typing_extensions import Unpack

__all__ = [
    "DEFAULT_CANDIDATE_LIMIT",
    "DEFAULT_LIMIT",
    "DEFAULT_RRF_K",
    "MilvusRetriever",
    "MilvusRetrieverOptions",
    "RetrievalMode",
    "SearchOptions",
    "resolve_first_stage",
]

_ACCEPTED = "see milvus_rerank.milvus.MilvusRetrieverOptions"

# Metrics whose raw value is a distance (smaller is closer). COSINE, IP and BM25 are similarities.
_LOWER_IS_BETTER = frozenset({"L2", "HAMMING", "JACCARD", "SUBSTRUCTURE", "SUPERSTRUCTURE"})
_MISSING: Any = object()


class MilvusRetriever:
    """Fetch rerank candidates for a query from a Milvus collection.

    Modes:

    - ``"dense"``: the query is embedded with ``embedding`` and searched on the dense vector field
      with the metric of its index (COSINE, IP or L2; see :attr:`higher_is_better`).
    - ``"sparse"``: when the sparse field is the output of a Milvus BM25 function, the query text
      is sent as is and Milvus scores it with BM25; otherwise ``sparse_embedding`` encodes it.
    - ``"hybrid"`` (default): one ``AnnSearchRequest`` per leg, each fetching ``candidate_limit``
      hits, fused in Milvus by RRF (``rrf_k``) or by weights (``weights``), ``limit`` returned.

    Construction checks every option first; then, in one step
    (:func:`~milvus_rerank.milvus.inspection.open_collection`), it reads the collection's schema
    and indexes and loads it: a wrong option costs no Milvus call, and a wrong collection or field
    fails here, not at the first query. With ``layout=`` (read before, e.g. another retriever's
    :attr:`layout`) it makes no Milvus call at all. The search options are one checked value,
    :attr:`options`.

    Example:
        >>> retriever = MilvusRetriever("./rag.db", "docs", embedding=model, limit=20)  # doctest: +SKIP
        >>> [c.id for c in retriever.retrieve("what is BM25?")]  # doctest: +SKIP

    Args:
        client: A ``pymilvus.MilvusClient``, or a URI (``./file.db`` for Milvus Lite,
            ``http://host:19530`` for a server) from which one is made.
        collection_name: The collection to search.
        **options: The keywords of :class:`~milvus_rerank.milvus.options.MilvusRetrieverOptions`
            (``mode``, ``embedding``, field names, ``layout``...), with the search options: the
            fields of :class:`SearchOptions` (``limit``, ``filter``...) or ``options=SearchOptions(...)``.

    Raises:
        CollectionNotFoundError: The collection does not exist.
        SchemaError: A field is missing, of the wrong type, or has no index; or the mode needs a
            field the collection lacks.
        TypeError: An argument has the wrong type (e.g. an unsupported embedding object), or an
            unknown keyword.
        ValueError: An argument has a wrong value (e.g. an unknown mode, a missing embedding).
        RetrievalError: Milvus could not be reached or refused to describe the collection.
    """

    def __init__(
        self, client: MilvusClient | str, collection_name: str, **options: Unpack[MilvusRetrieverOptions]
    ) -> None:
        # Everything that can be checked without Milvus is checked first, so a mistake costs no connection.
        check_keywords(type(self).__name__, options, MilvusRetrieverOptions.__optional_keys__, accepted=_ACCEPTED)
        mode: RetrievalMode = check_choice(options.get("mode", "hybrid"), "mode", MODES)
        self.mode = mode
        self._options = search_options(options)
        self._ranker = check_ranker(options.get("ranker"), mode)
        if not isinstance(collection_name, str) or not collection_name:
            raise TypeError(f"collection_name must be a non-empty str, got {collection_name!r}")
        self.collection_name = collection_name
        self._embed: QueryEmbedder | None = None
        if mode != "sparse":
            embedding = options.get("embedding")
            if embedding is None:
                raise ValueError(
                    f"mode={mode!r} searches a dense vector field: pass embedding= "
                    "(a callable, LangChain Embeddings, LlamaIndex embedding or sentence-transformers model)"
                )
            self._embed = as_query_embedder(embedding)
        output_fields = options.get("output_fields")
        if isinstance(output_fields, str):
            raise TypeError("output_fields must be a sequence of field names, not a single str: wrap it in a list")
        names = {
            "text_field": options.get("text_field"),
            "dense_field": options.get("dense_field"),
            "sparse_field": options.get("sparse_field"),
        }
        layout = options.get("layout")
        if layout is not None:
            check_layout(layout, collection_name, mode, names)

        self._owns_client = isinstance(client, str)
        self.client: MilvusClient = (
            connect(client, token=options.get("token"), db_name=options.get("db_name"))
            if isinstance(client, str)
            else client
        )
        try:
            # The one step with Milvus calls: a wrong name or schema fails at construction rather than at
            # the first query, and every property (text_field, metric_type...) is known from the start.
            if layout is None:
                layout = open_collection(
                    self.client,
                    collection_name,
                    mode=mode,
                    text_field=options.get("text_field"),
                    dense_field=options.get("dense_field"),
                    sparse_field=options.get("sparse_field"),
                    timeout=self._options.timeout,
                )
            self._layout = layout
            self._encode_sparse = self._sparse_encoder(options.get("sparse_embedding"))
            self._check_ranker_fields()
        except BaseException:
            self.close()
            raise
        self.output_fields = _output_fields(self._layout, output_fields)

    @property
    def options(self) -> SearchOptions:
        """How every search runs; set a new :class:`SearchOptions` to change it (``dataclasses.replace``)."""
        return self._options

    @options.setter
    def options(self, options: SearchOptions) -> None:
        if not isinstance(options, SearchOptions):
            raise TypeError(f"options must be a SearchOptions, got {type(options).__name__}")
        self._options = options

    @property
    def layout(self) -> CollectionLayout:
        """The fields searched and read, as found in the collection (``layout=`` of a new retriever)."""
        return self._layout

    # ------------------------------------------------------------------ introspection

    @property
    def text_field(self) -> str:
        """The field whose text the reranker reads."""
        return self._layout.text_field

    @property
    def dense_field(self) -> str | None:
        """The dense vector field, when the mode uses one."""
        return self._layout.dense_field

    @property
    def sparse_field(self) -> str | None:
        """The sparse vector field, when the mode uses one."""
        return self._layout.sparse_field

    @property
    def primary_field(self) -> str:
        """The primary key field; its value is each candidate's ``id``."""
        return self._layout.primary_field

    @property
    def metric_type(self) -> str | None:
        """Metric of the field searched in single-leg modes (``"COSINE"``, ``"L2"``, ``"BM25"``...).

        ``None`` in hybrid mode, where scores are fusion (or server ranker) scores.
        """
        if self.mode == "hybrid":
            return None
        return self._layout.dense_metric if self.mode == "dense" else self._layout.sparse_metric

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger ``Candidate.score`` means a better hit.

        ``False`` only for distance metrics (``L2``) in dense or sparse mode without a ranker:
        Milvus then reports the distance itself, and results still come closest first. BM25 scores
        are positive similarities on Milvus Lite too (Lite reports them negated; the retriever
        turns them back).
        """
        if self._ranker is not None or self.mode == "hybrid":
            return True
        return (self.metric_type or "").upper() not in _LOWER_IS_BETTER

    @property
    def effective_candidate_limit(self) -> int:
        """Hits fetched per leg in hybrid search."""
        return self._options.leg_depth(self._options.limit)

    def __repr__(self) -> str:
        layout = self._layout
        return (
            f"{type(self).__name__}(collection_name={self.collection_name!r}, mode={self.mode!r}, "
            f"text_field={layout.text_field!r}, dense_field={layout.dense_field!r}, "
            f"sparse_field={layout.sparse_field!r}, limit={self._options.limit})"
        )

    # ------------------------------------------------------------------ retrieval

    def retrieve(self, query: str, *, limit: int | None = None, filter: str | None = None) -> list[Candidate]:
        """Search the collection and return candidates, best first.

        Args:
            query: The user's query text.
            limit: Overrides the ``limit`` of :attr:`options` for this call.
            filter: An extra filter expression for this call, combined with the retriever's
                own ``filter`` by ``and`` (it can narrow the scope, never widen it).

        Returns:
            Up to ``limit`` candidates with ``retrieval_rank`` 1, 2, ...

        Raises:
            TypeError: ``query`` is not a string.
            SchemaError: The embedding's dimension does not match the dense field, or a hit lacks
                the text field.
            CollectionNotFoundError: The collection was dropped.
            RetrievalError: Milvus failed the search.
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        limit = self._options.limit if limit is None else check_limit(limit)
        expression = _combine_filters(self._options.filter, check_filter(filter))
        hits = self._search(query, limit, expression)
        return self._to_candidates(hits)

    async def aretrieve(
        self,
        query: str,
        *,
        limit: int | None = None,
        filter: str | None = None,
    ) -> list[Candidate]:
        """Async twin of :meth:`retrieve`: the embedding and the Milvus call run in a worker thread."""
        return await asyncio.to_thread(self.retrieve, query, limit=limit, filter=filter)

    def close(self) -> None:
        """Close the Milvus client if this retriever created it from a URI."""
        if self._owns_client:
            self.client.close()
            self._owns_client = False

    def __enter__(self) -> MilvusRetriever:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _search(self, query: str, limit: int, expression: str) -> list[Any]:
        from pymilvus import AnnSearchRequest

        layout, options = self._layout, self._options
        ranker = ranker_for_query(self._ranker, query)
        common: dict[str, Any] = {"output_fields": self.output_fields, "timeout": options.timeout}
        if options.partition_names:
            common["partition_names"] = list(options.partition_names)
        if options.consistency_level is not None:
            common["consistency_level"] = options.consistency_level
        dense_data = self._dense_query(query) if self.mode in ("dense", "hybrid") else None
        sparse_data = self._sparse_query(query) if self.mode in ("sparse", "hybrid") else None
        try:
            if self.mode == "hybrid":
                depth = options.leg_depth(limit)
                requests = [
                    AnnSearchRequest(
                        data=[dense_data],
                        anns_field=layout.dense_field,
                        param=_search_params(layout.dense_metric, options.dense_search_params or {}),
                        limit=depth,
                        expr=expression or None,
                        expr_params=options.filter_params,
                    ),
                    AnnSearchRequest(
                        data=[sparse_data],
                        anns_field=layout.sparse_field,
                        param=_search_params(layout.sparse_metric, options.sparse_search_params or {}),
                        limit=depth,
                        expr=expression or None,
                        expr_params=options.filter_params,
                    ),
                ]
                result = self.client.hybrid_search(
                    self.collection_name,
                    requests,
                    ranker if ranker is not None else _fusion_ranker(options),
                    limit=limit,
                    **common,
                )
            else:
                dense = self.mode == "dense"
                kwargs = dict(common)
                if options.filter_params:
                    kwargs["filter_params"] = options.filter_params
                if ranker is not None:
                    kwargs["ranker"] = ranker
                result = self.client.search(
                    self.collection_name,
                    data=[dense_data if dense else sparse_data],
                    anns_field=layout.dense_field if dense else layout.sparse_field,
                    filter=expression,
                    limit=limit,
                    search_params=_search_params(
                        layout.dense_metric if dense else layout.sparse_metric,
                        (options.dense_search_params if dense else options.sparse_search_params) or {},
                    ),
                    **kwargs,
                )
        except Exception as exc:
            raise milvus_error(exc, self.collection_name, "search") from exc
        return list(result[0]) if result else []

    def _dense_query(self, query: str) -> list[float]:
        assert self._embed is not None
        vector = self._embed(query)
        if self._layout.dense_dim is not None and len(vector) != self._layout.dense_dim:
            raise SchemaError(
                f"the embedding returned a {len(vector)}-dimensional vector but field {self._layout.dense_field!r} "
                f"of collection {self.collection_name!r} holds {self._layout.dense_dim}-dimensional vectors: "
                "use the embedding model the collection was built with"
            )
        return vector

    def _sparse_query(self, query: str) -> str | SparseVector:
        if self._encode_sparse is None:
            return query  # Milvus's BM25 function tokenizes the raw text itself
        return self._encode_sparse(query)

    def _to_candidates(self, hits: list[Any]) -> list[Candidate]:
        # Hot path (runs for every hit of every query): plain dict access, no per-hit copies.
        # pymilvus hits are dict subclasses whose __getitem__ is Python code, hence dict.get.
        text_field = self._layout.text_field
        primary = self._layout.primary_field
        model_ranker = is_model_ranker(self._ranker)
        # BM25 scores are never negative: Milvus Lite reports them negated (more negative is better),
        # a Milvus server as they are. One rule serves both, without asking which backend answered.
        bm25 = self.mode == "sparse" and self._ranker is None and (self._layout.sparse_metric or "").upper() == "BM25"
        get = dict.get
        candidates = []
        for position, hit in enumerate(hits, start=1):
            key = get(hit, primary, _MISSING)
            if key is _MISSING:  # pymilvus names the key after the primary field; older releases: "id"
                key = get(hit, "id")
            entity = get(hit, "entity")
            metadata = dict(entity) if entity else {}
            text = metadata.pop(text_field, _MISSING)
            if not isinstance(text, str):
                raise self._text_error(text, key)
            metadata.pop(primary, None)
            distance: Any = get(hit, "distance")
            score = float(distance)
            if bm25 and score < 0:
                score = -score
            candidates.append(
                Candidate(
                    id=key,
                    text=text,
                    score=score,
                    metadata=metadata,
                    retrieval_rank=position,
                    rerank_score=score if model_ranker else None,
                )
            )
        return candidates

    def _text_error(self, text: object, key: object) -> SchemaError:
        field, collection = self._layout.text_field, self.collection_name
        if text is _MISSING:
            return SchemaError(
                f"Milvus did not return the text field {field!r} of collection {collection!r} for hit {key!r}: "
                "keep it in output_fields"
            )
        return SchemaError(
            f"text field {field!r} of collection {collection!r} is {type(text).__name__} for primary key {key!r}; "
            "every candidate needs a text"
        )

    def _sparse_encoder(self, sparse_embedding: object) -> Callable[[str], SparseVector] | None:
        """The query encoder of the sparse leg; ``None`` when there is none, or Milvus runs BM25 itself."""
        if self.mode == "dense" or self._layout.sparse_is_bm25:
            return None
        if sparse_embedding is None:
            raise ValueError(
                f"sparse field {self._layout.sparse_field!r} of collection {self.collection_name!r} is not the output "
                "of a BM25 function: pass sparse_embedding= (the encoder that filled it)"
            )
        return as_sparse_query_encoder(sparse_embedding)

    def _check_ranker_fields(self) -> None:
        if not is_model_ranker(self._ranker):
            return
        unknown = [f for f in self._ranker.input_field_names if f not in self._layout.scalar_fields]
        if unknown:
            raise SchemaError(
                f"the ranker Function reads field {unknown[0]!r}, which collection {self.collection_name!r} lacks; "
                f"build it with input_field={self._layout.text_field!r}"
            )


def resolve_first_stage(
    retriever: object = None,
    client: MilvusClient | str | None = None,
    collection_name: str | None = None,
    **options: Unpack[MilvusRetrieverOptions],
) -> CandidateRetriever:
    """The first stage of an adapter's retriever: ``retriever`` as given, or a :class:`MilvusRetriever`.

    Raises:
        ValueError: Both or neither of ``retriever`` and ``client``/``collection_name`` were
            given, or :class:`MilvusRetriever` options came with ``retriever``.
        TypeError: ``retriever`` lacks ``retrieve``/``aretrieve``.
    """
    if retriever is None:
        if client is None or collection_name is None:
            raise ValueError(
                "pass client= (a MilvusClient or URI) and collection_name=, or a first stage as retriever=..."
            )
        return MilvusRetriever(client, collection_name, **options)
    if client is not None or collection_name is not None or options:
        given = [name for name, value in (("client", client), ("collection_name", collection_name)) if value]
        raise ValueError(
            "pass either retriever=... or client=/collection_name= with MilvusRetriever options, not both "
            f"(got retriever and {', '.join(given + sorted(options))})"
        )
    return check_retriever(retriever)


def _fusion_ranker(options: SearchOptions) -> Any:
    from pymilvus import RRFRanker, WeightedRanker

    if options.fusion == "weighted":
        return WeightedRanker(*(options.weights or (1.0, 1.0)), norm_score=True)
    return RRFRanker(options.rrf_k)


def _output_fields(layout: CollectionLayout, output_fields: Sequence[str] | None) -> list[str]:
    """The fields each search returns: the text first, then ``output_fields`` (default: every scalar field)."""
    if output_fields is None:
        fields = [layout.text_field, *(f for f in layout.scalar_fields if f != layout.text_field)]
        if layout.dynamic:
            fields.append("$meta")
        return fields
    return [layout.text_field, *(f for f in output_fields if f != layout.text_field)]


def _search_params(metric: str | None, params: Mapping[str, Any]) -> dict[str, Any]:
    # A full search-params dict (with "params") is taken as is; otherwise params are the index's knobs.
    built: dict[str, Any] = dict(params) if "params" in params or "metric_type" in params else {"params": dict(params)}
    if metric and "metric_type" not in built:
        built["metric_type"] = metric
    return built


def _combine_filters(base: str | None, extra: str | None) -> str:
    parts = [part for part in (base, extra) if part]
    if len(parts) == 2:
        return f"({parts[0]}) and ({parts[1]})"
    return parts[0] if parts else ""
