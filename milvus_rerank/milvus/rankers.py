"""The rankers a :class:`~milvus_rerank.MilvusRetriever` is given: checked once, copied per query.

A retriever's ``ranker`` is a ``pymilvus.Function`` of type ``RERANK`` (a model ranker built by
:mod:`milvus_rerank.milvus.functions`, or RRF / weighted / decay) or, in hybrid mode, a legacy
``RRFRanker`` / ``WeightedRanker``. pymilvus is imported where a ranker is inspected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["check_ranker", "is_model_ranker", "ranker_for_query"]


def check_ranker(ranker: object, mode: str) -> Any:
    """Validate a retriever's ``ranker`` for a search ``mode``.

    Args:
        ranker: ``None``, a ``pymilvus.Function`` of type ``RERANK``, or (hybrid mode only) a legacy
            ``RRFRanker`` / ``WeightedRanker``.
        mode: The retriever's mode: ``"dense"``, ``"sparse"`` or ``"hybrid"``.

    Returns:
        The ranker itself, or ``None``.

    Raises:
        TypeError: ``ranker`` is none of the accepted kinds.
        ValueError: A ``Function`` of another type, or a legacy ranker outside hybrid mode.
    """
    if ranker is None:
        return None
    from pymilvus import Function, FunctionType
    from pymilvus.client.abstract import BaseRanker

    if isinstance(ranker, Function):
        if ranker.type != FunctionType.RERANK:
            raise ValueError(f"ranker must be a Function of type RERANK, got {ranker.type!r}")
        return ranker
    if isinstance(ranker, BaseRanker):
        if mode != "hybrid":
            raise ValueError(f"{type(ranker).__name__} only fuses hybrid legs; use mode='hybrid' or a Function ranker")
        return ranker
    raise TypeError(
        f"ranker must be a pymilvus Function of type RERANK (or RRFRanker/WeightedRanker in hybrid mode), "
        f"got {type(ranker).__name__}"
    )


def is_model_ranker(ranker: object) -> bool:
    """Whether ``ranker`` is a model-ranker ``Function`` (``params["reranker"] == "model"``)."""
    params = getattr(ranker, "params", None)
    return isinstance(params, Mapping) and str(params.get("reranker", "")).lower() == "model"


def ranker_for_query(ranker: Any, query: str) -> Any:
    """``ranker`` for one search of ``query``.

    A model ranker scores against the query text, so each search gets a copy whose ``queries``
    param holds that query; any other ranker is returned as it is.
    """
    if not is_model_ranker(ranker):
        return ranker
    from pymilvus import Function

    return Function(
        name=ranker.name,
        function_type=ranker.type,
        input_field_names=list(ranker.input_field_names),
        output_field_names=list(ranker.output_field_names or []) or None,
        description=ranker.description,
        params={**ranker.params, "queries": [query]},
    )
