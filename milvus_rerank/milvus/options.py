"""The search options of :class:`~milvus_rerank.MilvusRetriever`: one checked, frozen value.

:class:`SearchOptions` holds how every search of a retriever runs (depth, fusion, filter,
partitions, index parameters, consistency, timeout); each option is checked once, when the value
is made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from milvus_rerank.validation import check_choice, check_int, check_number

__all__ = [
    "DEFAULT_CANDIDATE_LIMIT",
    "DEFAULT_LIMIT",
    "DEFAULT_RRF_K",
    "MODES",
    "Fusion",
    "RetrievalMode",
    "SearchOptions",
    "check_filter",
    "check_limit",
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
    """How every search of a :class:`MilvusRetriever` runs; each option is checked once, here.

    The attributes are the retriever's options of the same names (see :class:`MilvusRetriever`).
    Sequences and mappings are copied, so a caller's later change cannot reach the searches.
    ``weights=None`` weighs both legs equally.

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
