"""The options of :class:`~milvus_rerank.MilvusRetriever`, each declared once.

:class:`SearchOptions` is how every search of a retriever runs (depth, fusion, filter, partitions,
index parameters, consistency, timeout): one frozen value, each option checked when it is made.
:class:`MilvusRetrieverOptions` is what the retriever's constructor takes by keyword: the search
options' fields (:class:`SearchKeywords`), or a whole ``options=SearchOptions(...)``, and what
identifies the fields and the query encoders. The adapters' retrievers take the same keywords
and forward them as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from milvus_rerank.validation import check_choice, check_int, check_number

if TYPE_CHECKING:
    from milvus_rerank.milvus.schema import CollectionLayout

__all__ = [
    "DEFAULT_CANDIDATE_LIMIT",
    "DEFAULT_LIMIT",
    "DEFAULT_RRF_K",
    "MODES",
    "Fusion",
    "MilvusRetrieverOptions",
    "RetrievalMode",
    "SearchKeywords",
    "SearchOptions",
    "check_filter",
    "check_limit",
    "search_options",
]

RetrievalMode = Literal["dense", "sparse", "hybrid"]
Fusion = Literal["rrf", "weighted"]

DEFAULT_LIMIT = 50
"""Candidates returned per query: enough for a reranker to find what the first stage ranked low."""

DEFAULT_CANDIDATE_LIMIT = 100
"""Floor of the per-leg depth in hybrid search: by default each leg fetches ``max(2 * limit, 100)``.

Legs deeper than the fused list let RRF promote documents that both legs rank fairly well. On
SciFact (limit 100): legs of 100 give nDCG@10 0.6865 / recall@100 0.954, legs of 200 give
0.6888 / 0.962."""

DEFAULT_RRF_K = 60
"""The RRF constant of the original paper and Milvus's own default.

A smaller k weights each leg's top ranks more: on SciFact's train split k=20 scored nDCG@10
0.696 against 0.688 for k=60; we keep the well-tried 60 rather than a value fitted to one dataset."""

_MAX_TOPK = 16384  # Milvus's ceiling on limit (topk) for one search
MODES = ("dense", "sparse", "hybrid")
_FUSIONS = ("rrf", "weighted")
_CONSISTENCY_LEVELS = ("Strong", "Bounded", "Session", "Eventually")


@dataclass(frozen=True)
class SearchOptions:
    """How every search of a :class:`~milvus_rerank.MilvusRetriever` runs; each option is checked once, here.

    Sequences and mappings are copied, so a caller's later change cannot reach the searches.
    Change a retriever's options with ``retriever.options = dataclasses.replace(retriever.options, limit=20)``.

    Attributes:
        limit: How many candidates to return per query.
        candidate_limit: How many hits each hybrid leg fetches before fusion; ``None``:
            ``max(2 * limit, 100)``, as deeper legs than the final list make fusion better at
            finding documents that both legs rank fairly high. Ignored by single-leg modes.
        fusion: ``"rrf"`` (reciprocal rank fusion, default) or ``"weighted"``.
        rrf_k: The RRF constant.
        weights: ``(dense_weight, sparse_weight)`` for ``fusion="weighted"``; ``None`` weighs both legs equally.
        filter: A boolean filter expression applied to every search (to every leg in hybrid).
        filter_params: Values for ``{placeholders}`` in ``filter`` (filter templating: Milvus
            2.5+ servers; Milvus Lite does not parse templates).
        partition_names: Restrict the search to these partitions.
        dense_search_params: Index search parameters of the dense leg, e.g. ``{"ef": 128}``.
        sparse_search_params: Index search parameters of the sparse leg, e.g. ``{"drop_ratio_search": 0.2}``.
        consistency_level: ``"Strong"``, ``"Bounded"``, ``"Session"`` or ``"Eventually"``;
            ``None`` keeps the collection's own.
        timeout: Seconds allowed for each Milvus call; ``None`` waits as long as pymilvus does.

    Raises:
        TypeError: An option has the wrong type.
        ValueError: An option is out of range, or ``weights`` comes without ``fusion="weighted"``.
    """

    limit: int = DEFAULT_LIMIT
    candidate_limit: int | None = None
    fusion: Fusion = "rrf"
    rrf_k: int = DEFAULT_RRF_K
    weights: tuple[float, float] | None = None
    filter: str | None = None
    filter_params: Mapping[str, Any] | None = None
    partition_names: Sequence[str] | None = None
    dense_search_params: Mapping[str, Any] | None = None
    sparse_search_params: Mapping[str, Any] | None = None
    consistency_level: str | None = None
    timeout: float | None = None

    def __post_init__(self) -> None:
        check_limit(self.limit)
        if self.candidate_limit is not None:
            check_limit(self.candidate_limit, "candidate_limit")
        check_choice(self.fusion, "fusion", _FUSIONS)
        check_int(self.rrf_k, "rrf_k")
        check_filter(self.filter)
        if self.consistency_level is not None:
            check_choice(self.consistency_level, "consistency_level", _CONSISTENCY_LEVELS)
        check_number(self.timeout, "timeout", inclusive=False, optional=True)
        if self.weights is not None and self.fusion != "weighted":
            raise ValueError("weights are only used with fusion='weighted'; pass fusion='weighted' too")
        if isinstance(self.partition_names, str):
            raise TypeError("partition_names must be a sequence of names, not a single str: wrap it in a list")
        # A frozen dataclass normalises through object.__setattr__: the stored values are the checked copies.
        normalised = {
            "weights": _weights(self.weights),
            "filter_params": dict(self.filter_params) if self.filter_params else None,
            "partition_names": tuple(self.partition_names) if self.partition_names else None,
            "dense_search_params": dict(self.dense_search_params or {}),
            "sparse_search_params": dict(self.sparse_search_params or {}),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    def leg_depth(self, limit: int) -> int:
        """Hits each hybrid leg fetches when ``limit`` candidates are returned."""
        if self.candidate_limit is not None:
            return self.candidate_limit
        return min(max(DEFAULT_CANDIDATE_LIMIT, 2 * limit), _MAX_TOPK)


def check_limit(value: object, name: str = "limit") -> int:
    """Return ``value`` if it is a number of hits one search may return (1 to 16384).

    Raises:
        TypeError: ``value`` is not an int.
        ValueError: ``value`` is out of range.
    """
    return check_int(value, name, maximum=_MAX_TOPK)


def check_filter(value: object) -> str | None:
    """Return ``value`` if it is a filter expression (a ``str``) or ``None``.

    Raises:
        TypeError: ``value`` is another type.
    """
    if value is not None and not isinstance(value, str):
        raise TypeError(f"filter must be a str expression, got {type(value).__name__}")
    return value


def _weights(weights: Sequence[float] | None) -> tuple[float, float] | None:
    if weights is None:
        return None
    values = tuple(weights) if isinstance(weights, Iterable) and not isinstance(weights, str) else ()
    if len(values) != 2:
        raise ValueError(f"weights must be two non-negative numbers (dense, sparse), got {weights!r}")
    dense, sparse = (check_number(w, "each of weights") for w in values)
    if not dense and not sparse:
        raise ValueError(f"weights must not both be zero, got {weights!r}")
    return (dense, sparse)


class SearchKeywords(TypedDict, total=False):
    """The fields of :class:`SearchOptions`, as keywords of the retrievers (``limit=20``); see it for each."""

    limit: int
    candidate_limit: int | None
    fusion: Fusion
    rrf_k: int
    weights: Sequence[float] | None
    filter: str | None
    filter_params: Mapping[str, Any] | None
    partition_names: Sequence[str] | None
    dense_search_params: Mapping[str, Any] | None
    sparse_search_params: Mapping[str, Any] | None
    consistency_level: str | None
    timeout: float | None


class MilvusRetrieverOptions(SearchKeywords, total=False):
    """What :class:`~milvus_rerank.MilvusRetriever` takes by keyword (PEP 692), with :class:`SearchKeywords`.

    Field names default to ``None``, meaning "find it in the schema": a field named ``text`` /
    ``dense`` / ``sparse`` of the right kind, else the input or output of the collection's BM25
    function, else the only field of that kind. Ambiguity is an error that lists the choices.

    Attributes:
        mode: ``"dense"``, ``"sparse"`` or ``"hybrid"`` (default).
        embedding: Dense query embedding (needed by ``dense`` and ``hybrid``): a callable
            ``str -> list[float]``, a LangChain ``Embeddings``, a LlamaIndex embedding or a
            sentence-transformers model.
        sparse_embedding: Sparse query encoder for a sparse field that is not a BM25 function
            output: a callable ``str -> dict[int, float]``, or an object with ``encode_queries``
            (pymilvus.model) or ``embed_query``.
        text_field: The VARCHAR field holding the text the reranker reads.
        dense_field: The dense vector field.
        sparse_field: The sparse vector field.
        ranker: A ``pymilvus.Function`` of type ``RERANK`` (or, in hybrid mode, a legacy
            ``RRFRanker``/``WeightedRanker``) that Milvus applies instead of ``fusion``. A
            model ranker (``params["reranker"] == "model"``) reranks on the server: its
            ``queries`` parameter is set to each query, and its scores are recorded as both
            ``score`` and ``rerank_score`` of the candidates.
        output_fields: Fields returned as metadata (the text field is always fetched); default:
            every scalar field, plus dynamic fields when the collection has them.
        token: Token (``"user:password"`` or an API key) when ``client`` is a URI. Never logged.
        db_name: Database when ``client`` is a URI.
        options: The search options as one value; excludes their fields as keywords.
        layout: The collection's layout, read before (:func:`~milvus_rerank.milvus.inspection.open_collection`,
            or another retriever's ``layout``): the retriever then makes no Milvus call at
            construction, and excludes ``text_field``, ``dense_field`` and ``sparse_field``.
    """

    mode: RetrievalMode
    embedding: object
    sparse_embedding: object
    text_field: str | None
    dense_field: str | None
    sparse_field: str | None
    ranker: object
    output_fields: Sequence[str] | None
    token: str | None
    db_name: str | None
    options: SearchOptions | None
    layout: CollectionLayout | None


def search_options(keywords: Mapping[str, Any]) -> SearchOptions:
    """The :class:`SearchOptions` in ``keywords`` (:class:`MilvusRetrieverOptions`): ``options=``, or its fields.

    Raises:
        TypeError: ``options`` is not a :class:`SearchOptions`, or a field has the wrong type.
        ValueError: ``options`` comes with fields of its own, or a field is out of range.
    """
    given = {name: keywords[name] for name in _SEARCH_FIELDS if name in keywords}
    options = keywords.get("options")
    if options is None:
        return SearchOptions(**given)
    if not isinstance(options, SearchOptions):
        raise TypeError(f"options must be a SearchOptions, got {type(options).__name__}")
    if given:
        raise ValueError(f"pass either options=SearchOptions(...) or its fields ({', '.join(sorted(given))}), not both")
    return options


_SEARCH_FIELDS = tuple(field.name for field in fields(SearchOptions))
