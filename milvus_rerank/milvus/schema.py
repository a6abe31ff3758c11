"""Schema inference: which fields of a collection a retriever reads and searches, and with which metric.

Pure functions over what ``MilvusClient.describe_collection`` and ``describe_index`` return: no
Milvus call happens here, so every rule can be tested with plain dicts, and the retriever keeps
its I/O in one place. Collections made by other tools work because a field is found by role:

- text: the ``text_field`` given, else a VARCHAR field named ``text``, else the input of the
  collection's BM25 function, else the only VARCHAR field;
- dense vector: ``dense_field``, else a vector field named ``dense``, else the only one;
- sparse vector: ``sparse_field``, else a field named ``sparse``, else the BM25 output of the
  text field, else the only sparse field.

Ambiguity is an error that lists the choices. pymilvus is imported when inference runs, never at
import time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from milvus_rerank.errors import SchemaError

__all__ = ["CollectionLayout", "bm25_sources", "infer_layout", "vector_fields"]


@dataclass(frozen=True)
class CollectionLayout:
    """The fields a retriever uses, as found in a collection's schema and indexes.

    Attributes:
        collection_name: The collection described.
        primary_field: The primary key field; its value is each candidate's ``id``.
        text_field: The VARCHAR field whose text the reranker reads.
        dense_field: The dense vector field searched, or ``None`` when the mode has no dense leg.
        dense_dim: Dimension of ``dense_field``, when the schema states it.
        dense_metric: Metric of the dense field's index (``"COSINE"``, ``"IP"``, ``"L2"``...).
        sparse_field: The sparse vector field searched, or ``None`` when the mode has no sparse leg.
        sparse_is_bm25: Whether ``sparse_field`` is the output of a BM25 function (Milvus then
            encodes the query text itself).
        sparse_metric: Metric of the sparse field's index (``"BM25"``, ``"IP"``).
        scalar_fields: Every non-vector field except the primary key, in schema order.
        dynamic: Whether the collection has dynamic fields (stored under ``$meta``).
    """

    collection_name: str
    primary_field: str
    text_field: str
    dense_field: str | None
    dense_dim: int | None
    dense_metric: str | None
    sparse_field: str | None
    sparse_is_bm25: bool
    sparse_metric: str | None
    scalar_fields: tuple[str, ...]
    dynamic: bool


def vector_fields(description: Mapping[str, Any]) -> list[str]:
    """Names of the vector fields in a collection description: the fields whose indexes inference needs."""
    kinds = _Kinds()
    return [field["name"] for field in description.get("fields", []) if field["type"] in kinds.vectors]


def bm25_sources(description: Mapping[str, Any]) -> dict[str, str]:
    """Map each sparse field that a BM25 function fills to the text field it is computed from."""
    from pymilvus import FunctionType

    sources = {}
    for function in description.get("functions", []) or []:
        kind = function.get("type")
        # Some pymilvus releases describe the type as a string (e.g. "FunctionType.BM25").
        if kind == FunctionType.BM25 or str(kind).upper().endswith("BM25"):
            for output in function.get("output_field_names", []):
                sources[output] = function["input_field_names"][0]
    return sources


def infer_layout(
    description: Mapping[str, Any],
    indexes: Sequence[Mapping[str, Any]],
    *,
    needs_dense: bool,
    needs_sparse: bool,
    text_field: str | None = None,
    dense_field: str | None = None,
    sparse_field: str | None = None,
) -> CollectionLayout:
    """Find the fields to search, and their metrics, in a collection description.

    Args:
        description: What ``MilvusClient.describe_collection`` returns.
        indexes: What ``MilvusClient.describe_index`` returns for the indexes of the vector
            fields (others are ignored).
        needs_dense: The search has a dense leg (modes ``"dense"`` and ``"hybrid"``).
        needs_sparse: The search has a sparse leg (modes ``"sparse"`` and ``"hybrid"``).
        text_field: The text field, or ``None`` to find it.
        dense_field: The dense vector field, or ``None`` to find it.
        sparse_field: The sparse vector field, or ``None`` to find it.

    Raises:
        SchemaError: A named field is missing or of the wrong type, a role cannot be told
            apart, or a searched field has no index. The message names the collection, the
            field and what to pass instead.
    """
    schema = _Schema(description)
    text = schema.text_field(text_field)
    dense = dense_dim = dense_metric = None
    if needs_dense:
        dense = schema.dense_field(dense_field)
        dim = schema.fields[dense].get("params", {}).get("dim")
        dense_dim = int(dim) if dim is not None else None
        dense_metric = schema.metric(dense, indexes)
    sparse = sparse_metric = None
    if needs_sparse:
        sparse = schema.sparse_field(sparse_field, text)
        sparse_metric = schema.metric(sparse, indexes)
    return CollectionLayout(
        collection_name=schema.name,
        primary_field=schema.primary,
        text_field=text,
        dense_field=dense,
        dense_dim=dense_dim,
        dense_metric=dense_metric,
        sparse_field=sparse,
        sparse_is_bm25=sparse is not None and sparse in schema.bm25,
        sparse_metric=sparse_metric,
        scalar_fields=tuple(
            name
            for name, field in schema.fields.items()
            if field["type"] not in schema.kinds.vectors and name != schema.primary
        ),
        dynamic=bool(description.get("enable_dynamic_field")),
    )


class _Kinds:
    """The pymilvus data types inference tells apart."""

    def __init__(self) -> None:
        from pymilvus import DataType

        self.varchar = DataType.VARCHAR
        self.dense = DataType.FLOAT_VECTOR
        self.sparse = DataType.SPARSE_FLOAT_VECTOR
        # Vector fields that a float query embedding cannot search.
        other = {DataType.FLOAT16_VECTOR, DataType.BFLOAT16_VECTOR, DataType.BINARY_VECTOR}
        if hasattr(DataType, "INT8_VECTOR"):  # pymilvus 2.5.x and later
            other.add(DataType.INT8_VECTOR)
        self.other_dense = frozenset(other)
        self.vectors = frozenset({self.dense, self.sparse, *other})


class _Schema:
    """One collection description, with the role rules and the wording of their errors."""

    def __init__(self, description: Mapping[str, Any]) -> None:
        self.name = str(description.get("collection_name", "?"))
        self.fields: dict[str, Mapping[str, Any]] = {field["name"]: field for field in description.get("fields", [])}
        self.kinds = _Kinds()
        self.bm25 = bm25_sources(description)
        primary = next((name for name, field in self.fields.items() if field.get("is_primary")), None)
        if primary is None:
            raise SchemaError(f"collection {self.name!r} has no primary key field")
        self.primary = primary

    def of_type(self, *types: Any) -> list[str]:
        return [name for name, field in self.fields.items() if field["type"] in types and name != self.primary]

    def type_name(self, name: str) -> str:
        data_type = self.fields[name]["type"]
        return getattr(data_type, "name", str(data_type))

    def named(self, name: str, role: str) -> str:
        if name not in self.fields:
            raise SchemaError(
                f"collection {self.name!r} has no field {name!r} (wanted as {role}); its fields are "
                f"{sorted(self.fields)}: pass {role}= with one of them"
            )
        return name

    def text_field(self, given: str | None) -> str:
        if given is not None:
            self.named(given, "text_field")
            if self.fields[given]["type"] != self.kinds.varchar:
                raise SchemaError(
                    f"text_field {given!r} of collection {self.name!r} is {self.type_name(given)}, not VARCHAR: "
                    "name the field that holds the chunk text"
                )
            return given
        varchar = self.of_type(self.kinds.varchar)
        bm25_inputs = set(self.bm25.values())
        if "text" in varchar:
            return "text"
        if len(bm25_inputs) == 1:
            return next(iter(bm25_inputs))
        if len(varchar) == 1:
            return varchar[0]
        raise SchemaError(
            f"cannot tell which field of collection {self.name!r} holds the text "
            f"(VARCHAR fields: {varchar or 'none'}): pass text_field="
        )

    def dense_field(self, given: str | None) -> str:
        if given is not None:
            field = self.named(given, "dense_field")
        else:
            choices = self.of_type(self.kinds.dense, *self.kinds.other_dense)
            if "dense" in choices:
                field = "dense"
            elif len(choices) == 1:
                field = choices[0]
            else:
                raise SchemaError(
                    f"cannot tell which dense vector field of collection {self.name!r} to search "
                    f"(candidates: {choices or 'none'}): pass dense_field=, or use mode='sparse'"
                )
        kind = self.fields[field]["type"]
        if kind in self.kinds.other_dense:
            raise SchemaError(
                f"dense_field {field!r} of collection {self.name!r} is {self.type_name(field)}; "
                "only FLOAT_VECTOR fields can be searched with a float embedding"
            )
        if kind != self.kinds.dense:
            raise SchemaError(
                f"dense_field {field!r} of collection {self.name!r} is {self.type_name(field)}, not FLOAT_VECTOR"
            )
        return field

    def sparse_field(self, given: str | None, text: str) -> str:
        if given is not None:
            field = self.named(given, "sparse_field")
        else:
            choices = self.of_type(self.kinds.sparse)
            from_text = [output for output, source in self.bm25.items() if source == text]
            if "sparse" in choices:
                field = "sparse"
            elif len(from_text) == 1:
                field = from_text[0]
            elif len(choices) == 1:
                field = choices[0]
            else:
                raise SchemaError(
                    f"cannot tell which sparse vector field of collection {self.name!r} to search "
                    f"(candidates: {choices or 'none'}): pass sparse_field=, or use mode='dense'"
                )
        if self.fields[field]["type"] != self.kinds.sparse:
            raise SchemaError(
                f"sparse_field {field!r} of collection {self.name!r} is {self.type_name(field)}, "
                "not SPARSE_FLOAT_VECTOR"
            )
        return field

    def metric(self, field: str, indexes: Sequence[Mapping[str, Any]]) -> str:
        for index in indexes:
            metric = index.get("metric_type") if index else None
            if index and index.get("field_name") == field and metric and str(metric).upper() != "NONE":
                return str(metric).upper()
        raise SchemaError(
            f"field {field!r} of collection {self.name!r} has no index, so it cannot be searched: "
            "create one (client.create_index) and load the collection"
        )
