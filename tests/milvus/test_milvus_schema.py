"""Schema inference on plain description dicts: no Milvus call, every rule and every error message.

The dicts have the shape ``MilvusClient.describe_collection`` / ``describe_index`` return; the
first test checks that against a real Milvus Lite collection, so the rest cannot drift from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pymilvus import DataType, Function, FunctionType, MilvusClient

from milvus_rerank.errors import SchemaError
from milvus_rerank.milvus.collection import create_rag_collection
from milvus_rerank.milvus.schema import CollectionLayout, bm25_sources, infer_layout, vector_fields


def field(name: str, kind: DataType, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "params": extra.pop("params", {}), **extra}


def description(*fields: dict[str, Any], functions: list[dict[str, Any]] | None = None, dynamic: bool = False) -> dict:
    return {
        "collection_name": "c",
        "fields": list(fields),
        "functions": functions or [],
        "enable_dynamic_field": dynamic,
    }


def bm25(source: str, output: str) -> dict[str, Any]:
    return {
        "name": f"{output}_fn",
        "type": FunctionType.BM25,
        "input_field_names": [source],
        "output_field_names": [output],
    }


def index(field_name: str, metric: str) -> dict[str, Any]:
    return {"field_name": field_name, "index_name": field_name, "metric_type": metric}


PK = field("pk", DataType.INT64, is_primary=True)
RAG = description(
    field("id", DataType.VARCHAR, is_primary=True, params={"max_length": 64}),
    field("text", DataType.VARCHAR, params={"max_length": 512}),
    field("dense", DataType.FLOAT_VECTOR, params={"dim": 384}),
    field("sparse", DataType.SPARSE_FLOAT_VECTOR),
    functions=[bm25("text", "sparse")],
    dynamic=True,
)
RAG_INDEXES = [index("dense", "COSINE"), index("sparse", "BM25")]


def layout(desc: dict, indexes: list[dict[str, Any]], mode: str = "hybrid", **names: str) -> CollectionLayout:
    return infer_layout(desc, indexes, needs_dense=mode != "sparse", needs_sparse=mode != "dense", **names)


def test_real_description_of_our_collection(tmp_path: Path) -> None:
    client = MilvusClient(str(tmp_path / "schema.db"))
    try:
        create_rag_collection(client, "docs", dim=8, metric_type="L2", id_type="int64")
        real = client.describe_collection("docs")
        indexes = [client.describe_index("docs", name) for name in client.list_indexes("docs")]
    finally:
        client.close()
    assert vector_fields(real) == ["dense", "sparse"]
    assert bm25_sources(real) == {"sparse": "text"}
    assert infer_layout(real, indexes, needs_dense=True, needs_sparse=True) == CollectionLayout(
        collection_name="docs",
        primary_field="id",
        text_field="text",
        dense_field="dense",
        dense_dim=8,
        dense_metric="L2",
        sparse_field="sparse",
        sparse_is_bm25=True,
        sparse_metric="BM25",
        scalar_fields=("text",),
        dynamic=True,
    )


def test_modes_fill_only_the_legs_they_search() -> None:
    dense = layout(RAG, RAG_INDEXES, "dense")
    assert (dense.dense_field, dense.dense_dim, dense.dense_metric, dense.sparse_field) == (
        "dense",
        384,
        "COSINE",
        None,
    )
    assert not dense.sparse_is_bm25
    sparse = layout(RAG, [index("sparse", "BM25")], "sparse")  # the dense index is not needed
    assert (sparse.dense_field, sparse.sparse_field, sparse.sparse_metric) == (None, "sparse", "BM25")
    assert sparse.sparse_is_bm25


def test_roles_found_in_a_foreign_schema() -> None:
    foreign = description(
        field("uid", DataType.VARCHAR, is_primary=True),
        field("title", DataType.VARCHAR),
        field("content", DataType.VARCHAR),
        field("year", DataType.INT64),
        field("lexical", DataType.SPARSE_FLOAT_VECTOR),
        field("semantic", DataType.FLOAT_VECTOR, params={"dim": "4"}),
        functions=[bm25("content", "lexical")],
    )
    found = layout(foreign, [index("semantic", "ip"), index("lexical", "BM25")])
    assert (found.primary_field, found.text_field, found.dense_field, found.sparse_field) == (
        "uid",
        "content",  # two VARCHAR fields: the BM25 input is the text
        "semantic",
        "lexical",
    )
    assert (found.dense_dim, found.dense_metric) == (4, "IP")  # the metric's case is normalised
    assert found.scalar_fields == ("title", "content", "year")
    assert not found.dynamic


def test_the_only_varchar_is_the_text_and_a_user_sparse_field_is_not_bm25() -> None:
    own = description(
        PK,
        field("body", DataType.VARCHAR),
        field("splade", DataType.SPARSE_FLOAT_VECTOR),
        field("v", DataType.FLOAT_VECTOR),
    )
    found = layout(own, [index("v", "L2"), index("splade", "IP")])
    assert (found.text_field, found.dense_field, found.sparse_field) == ("body", "v", "splade")
    assert found.dense_dim is None
    assert not found.sparse_is_bm25


def test_indexes_of_other_fields_and_scalar_indexes_are_ignored() -> None:
    with pytest.raises(SchemaError, match=r"field 'dense' of collection 'c' has no index.*create_index"):
        layout(RAG, [index("sparse", "BM25"), {"field_name": "dense", "metric_type": "NONE"}], "dense")


@pytest.mark.parametrize(
    ("names", "match"),
    [
        ({"text_field": "body"}, r"collection 'c' has no field 'body' \(wanted as text_field\); its fields are"),
        ({"text_field": "dense"}, r"text_field 'dense' of collection 'c' is FLOAT_VECTOR, not VARCHAR"),
        ({"dense_field": "vector"}, r"no field 'vector' \(wanted as dense_field\).*pass dense_field="),
        ({"dense_field": "sparse"}, r"dense_field 'sparse' of collection 'c' is SPARSE_FLOAT_VECTOR, not FLOAT_VECTOR"),
        ({"sparse_field": "dense"}, r"sparse_field 'dense' of collection 'c' is FLOAT_VECTOR, not SPARSE_FLOAT_VECTOR"),
        ({"sparse_field": "splade"}, r"no field 'splade' \(wanted as sparse_field\)"),
    ],
)
def test_named_fields_are_checked(names: dict[str, str], match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        layout(RAG, RAG_INDEXES, **names)


def test_ambiguity_lists_the_choices() -> None:
    two_texts = description(
        PK, field("a", DataType.VARCHAR), field("b", DataType.VARCHAR), field("v", DataType.FLOAT_VECTOR)
    )
    with pytest.raises(
        SchemaError, match=r"which field of collection 'c' holds the text \(VARCHAR fields: \['a', 'b'\]\)"
    ):
        layout(two_texts, [index("v", "L2")], "dense")
    assert layout(two_texts, [index("v", "L2")], "dense", text_field="b").text_field == "b"

    two_vectors = description(
        PK, field("text", DataType.VARCHAR), field("a", DataType.FLOAT_VECTOR), field("b", DataType.FLOAT_VECTOR)
    )
    with pytest.raises(
        SchemaError, match=r"dense vector field .*\['a', 'b'\]\): pass dense_field=, or use mode='sparse'"
    ):
        layout(two_vectors, [index("a", "L2"), index("b", "L2")], "dense")
    with pytest.raises(
        SchemaError, match=r"sparse vector field .*\(candidates: none\): pass sparse_field=, or use mode='dense'"
    ):
        layout(two_vectors, [], "sparse")


def test_vectors_a_float_embedding_cannot_search() -> None:
    binary = description(PK, field("text", DataType.VARCHAR), field("bits", DataType.BINARY_VECTOR))
    with pytest.raises(SchemaError, match=r"dense_field 'bits' of collection 'c' is BINARY_VECTOR; only FLOAT_VECTOR"):
        layout(binary, [index("bits", "HAMMING")], "dense")


def test_no_primary_key() -> None:
    with pytest.raises(SchemaError, match="collection 'c' has no primary key field"):
        layout(description(field("text", DataType.VARCHAR)), [], "sparse")


def test_bm25_function_types_as_pymilvus_describes_them() -> None:
    as_text = {**bm25("text", "sparse"), "type": "FunctionType.BM25"}
    other = {**bm25("text", "emb"), "type": FunctionType.TEXTEMBEDDING}
    assert bm25_sources(description(functions=[as_text, other])) == {"sparse": "text"}
    real = Function(name="f", function_type=FunctionType.BM25, input_field_names=["t"], output_field_names=["s"])
    assert bm25_sources(description(functions=[real.to_dict()])) == {"s": "t"}
