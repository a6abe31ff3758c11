"""create_rag_collection and ingest on real Milvus Lite in temp dirs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymilvus import DataType, FunctionType, MilvusClient

from milvus_rerank.errors import CollectionNotFoundError, RetrievalError, SchemaError
from milvus_rerank.milvus.collection import create_rag_collection, ingest
from milvus_rerank.milvus.retriever import MilvusRetriever

DOCS = [
    ("solar", "Solar panels convert sunlight into electricity with photovoltaic cells.", {"topic": "energy"}),
    ("wind", "Wind turbines turn the kinetic energy of moving air into electric power.", {"topic": "energy"}),
    ("paris", "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.", {"topic": "travel"}),
    ("croissant", "A croissant is a buttery, flaky French pastry.", {"topic": "food"}),
]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[MilvusClient]:
    milvus = MilvusClient(str(tmp_path / "ingest.db"))
    yield milvus
    milvus.close()


def count(client: MilvusClient, name: str) -> int:
    return int(client.query(name, output_fields=["count(*)"])[0]["count(*)"])


def test_create_rag_collection_schema_and_indexes(client: MilvusClient) -> None:
    create_rag_collection(client, "docs", dim=8, metric_type="IP")
    description = client.describe_collection("docs")
    fields = {f["name"]: f for f in description["fields"]}
    assert fields["id"]["is_primary"]
    assert fields["id"]["type"] == DataType.VARCHAR
    assert fields["text"]["params"]["enable_analyzer"] in (True, "true")
    assert fields["dense"]["params"]["dim"] == 8
    assert fields["sparse"]["type"] == DataType.SPARSE_FLOAT_VECTOR
    assert description["enable_dynamic_field"]
    (function,) = description["functions"]
    assert function["type"] == FunctionType.BM25
    assert function["input_field_names"] == ["text"]
    assert function["output_field_names"] == ["sparse"]
    dense_index = client.describe_index("docs", client.list_indexes("docs", field_name="dense")[0])
    assert (dense_index["index_type"], dense_index["metric_type"]) == ("HNSW", "IP")
    sparse_index = client.describe_index("docs", client.list_indexes("docs", field_name="sparse")[0])
    assert sparse_index["metric_type"] == "BM25"
    assert client.get_load_state("docs")["state"].name == "Loaded"


def test_create_twice_needs_exist_ok(client: MilvusClient) -> None:
    create_rag_collection(client, "docs", dim=4)
    with pytest.raises(ValueError, match="already exists"):
        create_rag_collection(client, "docs", dim=4)
    create_rag_collection(client, "docs", dim=4, exist_ok=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dim": 0}, "dim"),
        ({"dim": 4, "id_type": "uuid"}, "id_type"),
        ({"dim": 4, "metric_type": "HAMMING"}, "metric_type"),
        ({"dim": 4, "dense_field": "text"}, "differ"),
    ],
)
def test_create_rejects_bad_arguments(client: MilvusClient, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_rag_collection(client, "docs", **kwargs)


def test_create_reports_milvus_refusal(client: MilvusClient) -> None:
    with pytest.raises(RetrievalError, match=r"cannot create collection 'docs'.*tokenizer"):
        create_rag_collection(client, "docs", dim=4, analyzer_params={"tokenizer": "no-such-tokenizer"})


def test_ingest_is_idempotent_and_upserts_by_id(client: MilvusClient, minilm: Any) -> None:
    create_rag_collection(client, "docs", dim=384)
    assert ingest(client, "docs", DOCS, embedding=minilm, batch_size=3, show_progress=False) == 4
    assert ingest(client, "docs", DOCS, embedding=minilm, batch_size=3, show_progress=False) == 4
    assert count(client, "docs") == 4

    changed = [("paris", "Geothermal plants tap heat from deep underground.", {"topic": "energy"})]
    ingest(client, "docs", changed, embedding=minilm, show_progress=False)
    assert count(client, "docs") == 4
    rows = client.get("docs", ids=["paris"], output_fields=["text", "topic"])
    assert rows[0]["text"].startswith("Geothermal")
    assert rows[0]["topic"] == "energy"
    # The BM25 sparse vector was recomputed from the new text by Milvus's function.
    hits = MilvusRetriever(client, "docs", mode="sparse").retrieve("geothermal underground heat")
    assert [c.id for c in hits] == ["paris"]
    assert MilvusRetriever(client, "docs", mode="sparse").retrieve("Eiffel") == []


class RecordingClient(MilvusClient):
    """A real Milvus Lite client that also records the writes it is asked to do (Lite cannot report seals)."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.calls: list[tuple[str, Any]] = []

    def upsert(self, collection_name: str, data: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(("upsert", len(data)))
        return super().upsert(collection_name, data, *args, **kwargs)

    def flush(self, collection_name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append(("flush", collection_name))
        super().flush(collection_name, *args, **kwargs)


def test_ingest_upserts_in_batches_then_flushes_once(tmp_path: Path, minilm: Any) -> None:
    client = RecordingClient(str(tmp_path / "rec.db"))
    try:
        create_rag_collection(client, "docs", dim=384)
        ingest(client, "docs", DOCS, embedding=minilm, batch_size=3, show_progress=False)
        assert client.calls == [("upsert", 3), ("upsert", 1), ("flush", "docs")]
        client.calls.clear()
        ingest(client, "docs", DOCS, embedding=minilm, show_progress=False, flush=False)
        assert client.calls == [("upsert", 4)]
        assert count(client, "docs") == 4
    finally:
        client.close()


def test_ingest_int64_keys_mappings_and_duplicates(client: MilvusClient, minilm: Any) -> None:
    create_rag_collection(client, "ints", dim=384, id_type="int64", id_field="pk")
    documents = [
        {"id": 1, "text": "first version", "metadata": {"rev": 1}},
        {"id": 2, "text": "another row"},
        {"id": 1, "text": "second version", "metadata": {"rev": 2}},
    ]
    assert ingest(client, "ints", documents, embedding=minilm, show_progress=False) == 2
    assert count(client, "ints") == 2
    row = client.get("ints", ids=[1], output_fields=["text", "rev"])[0]
    assert row == {"pk": 1, "text": "second version", "rev": 2}


def test_ingest_generator_with_progress_bar(
    client: MilvusClient, minilm: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    create_rag_collection(client, "docs", dim=384)
    ingest(client, "docs", (doc for doc in DOCS), embedding=minilm, batch_size=2)
    err = capsys.readouterr().err
    assert "ingest docs" in err
    assert "4chunk" in err.replace(" ", "")
    ingest(client, "docs", DOCS, embedding=minilm, show_progress=False)
    assert capsys.readouterr().err == ""


def test_ingest_with_plain_callable_embedding(client: MilvusClient) -> None:
    create_rag_collection(client, "docs", dim=2, metric_type="L2")
    ingest(client, "docs", [("a", "x"), ("b", "yy")], embedding=lambda t: [float(len(t)), 1.0], show_progress=False)
    assert client.get("docs", ids=["b"], output_fields=["dense"])[0]["dense"] == [2.0, 1.0]


def test_ingest_errors(client: MilvusClient, minilm: Any) -> None:
    with pytest.raises(CollectionNotFoundError, match="'missing' does not exist"):
        ingest(client, "missing", DOCS, embedding=minilm)
    create_rag_collection(client, "docs", dim=8)
    with pytest.raises(SchemaError, match=r"384-dimensional.*'dense'.*'docs'.*8-dimensional"):
        ingest(client, "docs", DOCS, embedding=minilm, show_progress=False)
    tiny = lambda text: [0.0] * 8  # noqa: E731
    with pytest.raises(TypeError, match="VARCHAR primary key"):
        ingest(client, "docs", [(1, "text")], embedding=tiny, show_progress=False)
    with pytest.raises(TypeError, match="text of document 'a'"):
        ingest(client, "docs", [("a", None)], embedding=tiny, show_progress=False)
    with pytest.raises(ValueError, match=r"keys \['dense'\].*rename"):
        ingest(client, "docs", [("a", "t", {"dense": 1})], embedding=tiny, show_progress=False)
    with pytest.raises(TypeError, match="'id' and 'text'"):
        ingest(client, "docs", [{"text": "no id"}], embedding=tiny, show_progress=False)
    with pytest.raises(TypeError, match="each document must be"):
        ingest(client, "docs", ["just text"], embedding=tiny, show_progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        ingest(client, "docs", DOCS, embedding=tiny, batch_size=0)
    with pytest.raises(SchemaError, match="no field 'body'"):
        ingest(client, "docs", DOCS, embedding=tiny, text_field="body")
    create_rag_collection(client, "ints", dim=8, id_type="int64")
    with pytest.raises(TypeError, match="INT64 primary key"):
        ingest(client, "ints", [("a", "text")], embedding=tiny, show_progress=False)


def test_a_bad_document_fails_the_ingest_before_any_is_embedded(client: MilvusClient) -> None:
    """Issue 14 item 2: a text longer than the field's max_length fails at once, with nothing written."""
    create_rag_collection(client, "docs", dim=2, max_text_length=100)
    embedded: list[str] = []

    def embed(text: str) -> list[float]:
        embedded.append(text)
        return [1.0, float(len(text))]

    documents = [(f"d{i}", f"document {i}") for i in range(10)] + [("long", "é" * 101)]
    with pytest.raises(ValueError, match=r"^text of document 'long' has 101 characters, but field 'text' of "):
        ingest(client, "docs", documents, embedding=embed, batch_size=2, show_progress=False)
    assert embedded == []
    assert count(client, "docs") == 0
    # Milvus Lite counts characters, not bytes: 100 two-byte characters fit.
    assert ingest(client, "docs", [("fits", "é" * 100)], embedding=embed, show_progress=False) == 1
    # A generator is checked batch by batch (it cannot be read twice).
    with pytest.raises(ValueError, match="'long' has 101 characters"):
        ingest(client, "docs", iter(documents), embedding=embed, batch_size=2, show_progress=False)
    assert count(client, "docs") == 11


def test_ingest_refuses_auto_id_collections(client: MilvusClient) -> None:
    client.create_collection("auto", dimension=4, auto_id=True)
    with pytest.raises(SchemaError, match="auto_id"):
        ingest(client, "auto", [("a", "t")], embedding=lambda t: [0.0] * 4, text_field="id", dense_field="vector")


def test_ingest_user_sparse_encoder(client: MilvusClient) -> None:
    schema = client.create_schema(enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=16)
    schema.add_field("text", DataType.VARCHAR, max_length=256)
    schema.add_field("dense", DataType.FLOAT_VECTOR, dim=2)
    schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
    index = client.prepare_index_params()
    index.add_index("dense", index_type="FLAT", metric_type="L2")
    index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_collection("own", schema=schema, index_params=index)
    embed = lambda t: [1.0, 0.0]  # noqa: E731
    with pytest.raises(ValueError, match="not filled by a BM25 function"):
        ingest(client, "own", [("a", "alpha")], embedding=embed)
    encoder = lambda t: {len(t): 1.0}  # noqa: E731
    ingest(client, "own", [("a", "alpha"), ("b", "be")], embedding=embed, sparse_embedding=encoder, show_progress=False)
    assert client.get("own", ids=["b"], output_fields=["sparse"])[0]["sparse"] == {2: 1.0}
