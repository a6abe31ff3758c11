"""Opening a collection for search: the Milvus calls a retriever makes before its first query.

:func:`open_collection` reads a collection's description and the indexes of its vector fields,
infers its :class:`~milvus_rerank.milvus.schema.CollectionLayout` (the rules are pure, in
:mod:`milvus_rerank.milvus.schema`) and loads the collection when it is not loaded;
:func:`check_layout` checks a layout read before and given to a retriever instead.
:func:`milvus_error` words a failed Milvus call on a collection, for this step and for searches.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from milvus_rerank.errors import CollectionNotFoundError, RetrievalError
from milvus_rerank.milvus.schema import CollectionLayout, infer_layout, vector_fields

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from milvus_rerank.milvus.options import RetrievalMode

__all__ = ["check_layout", "milvus_error", "open_collection"]

logger = logging.getLogger(__name__)


def open_collection(
    client: MilvusClient,
    collection_name: str,
    *,
    mode: RetrievalMode,
    text_field: str | None = None,
    dense_field: str | None = None,
    sparse_field: str | None = None,
    timeout: float | None = None,
) -> CollectionLayout:
    """Read the layout of ``collection_name`` for a search in ``mode``, and load the collection.

    Args:
        client: The Milvus client.
        collection_name: The collection.
        mode: ``"dense"``, ``"sparse"`` or ``"hybrid"``: which vector fields the search needs.
        text_field: The text field, or ``None`` to find it (see :func:`~milvus_rerank.milvus.schema.infer_layout`).
        dense_field: The dense vector field, or ``None`` to find it.
        sparse_field: The sparse vector field, or ``None`` to find it.
        timeout: Seconds allowed for each Milvus call; ``None`` waits as long as pymilvus does.

    Raises:
        CollectionNotFoundError: The collection does not exist; the message lists those that do.
        SchemaError: A field is missing, of the wrong type, or has no index.
        RetrievalError: Milvus failed a call.
    """
    try:
        exists = client.has_collection(collection_name, timeout=timeout)
    except Exception as exc:
        raise milvus_error(exc, collection_name, "has_collection") from exc
    if not exists:
        try:
            known = sorted(client.list_collections())
        except Exception:  # the listing only improves the message
            known = []
        raise CollectionNotFoundError(
            f"collection {collection_name!r} does not exist; existing collections: {known or 'none'}. "
            "Create and fill it first (see milvus_rerank.milvus.collection)"
        )
    try:
        description = client.describe_collection(collection_name, timeout=timeout)
    except Exception as exc:
        raise milvus_error(exc, collection_name, "describe_collection") from exc
    indexes = []
    try:
        for field in vector_fields(description):
            for index_name in client.list_indexes(collection_name, field_name=field):
                index = client.describe_index(collection_name, index_name)
                if index:
                    indexes.append({"field_name": field, **index})
    except Exception as exc:
        raise milvus_error(exc, collection_name, "describe_index") from exc
    layout = infer_layout(
        {**description, "collection_name": collection_name},
        indexes,
        needs_dense=mode != "sparse",
        needs_sparse=mode != "dense",
        text_field=text_field,
        dense_field=dense_field,
        sparse_field=sparse_field,
    )
    _ensure_loaded(client, collection_name, timeout)
    return layout


def _ensure_loaded(client: MilvusClient, collection_name: str, timeout: float | None) -> None:
    from pymilvus.client.types import LoadState

    try:
        state = client.get_load_state(collection_name)
        if state.get("state") == LoadState.NotLoad:
            logger.info("loading collection %r before searching it", collection_name)
            client.load_collection(collection_name, timeout=timeout)
    except Exception as exc:
        raise milvus_error(exc, collection_name, "load_collection") from exc


def check_layout(layout: object, collection_name: str, mode: RetrievalMode, names: Mapping[str, object]) -> None:
    """Check that an injected layout is one of ``collection_name``, with the fields ``mode`` searches.

    ``names`` are the field names given beside it (``text_field``...: ``None`` when not given).

    Raises:
        TypeError: ``layout`` is not a :class:`CollectionLayout`.
        ValueError: Field names came with it, or it is another collection's, or lacks a leg of ``mode``.
    """
    if not isinstance(layout, CollectionLayout):
        raise TypeError(f"layout must be a CollectionLayout, got {type(layout).__name__}")
    given = sorted(role for role, name in names.items() if name is not None)
    if given:
        raise ValueError(f"pass either layout= or field names ({', '.join(given)}), not both: the layout names them")
    if layout.collection_name != collection_name:
        raise ValueError(
            f"layout describes collection {layout.collection_name!r}, not {collection_name!r}: "
            "pass the layout of the collection searched"
        )
    for leg, field in (("dense", layout.dense_field), ("sparse", layout.sparse_field)):
        if field is None and mode in (leg, "hybrid"):
            raise ValueError(
                f"mode={mode!r} searches a {leg} vector field, and the layout has none: "
                f"read the layout for mode={mode!r} (open_collection(..., mode={mode!r}))"
            )


def milvus_error(exc: Exception, collection_name: str, action: str) -> RetrievalError:
    """The library's error for a failed Milvus call ``action`` on ``collection_name``.

    A collection that does not exist (any more) is a :class:`CollectionNotFoundError`; anything
    else a :class:`RetrievalError` quoting Milvus's message.
    """
    message = str(getattr(exc, "message", "") or exc)
    lowered = message.lower()
    if getattr(exc, "code", None) == 100 or "collection not found" in lowered or "can't find collection" in lowered:
        return CollectionNotFoundError(
            f"collection {collection_name!r} does not exist (any more): create it or check the name"
        )
    return RetrievalError(f"Milvus {action} on collection {collection_name!r} failed: {message}")
