"""MilvusRetriever on real Milvus Lite: modes, metrics, filters, foreign schemas, errors, async, server-side rankers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pymilvus import AnnSearchRequest, DataType, Function, FunctionType, MilvusClient, RRFRanker, WeightedRanker

from milvus_rerank.errors import CollectionNotFoundError, RetrievalError, SchemaError
from milvus_rerank.milvus.collection import create_rag_collection, ingest
from milvus_rerank.milvus.export import model_ranker
from milvus_rerank.milvus.retriever import MilvusRetriever, SearchOptions
from milvus_rerank.milvus.schema import CollectionLayout
from milvus_rerank.types import Candidate

DOCS = [
    (
        "solar",
        "Solar panels convert sunlight into electricity with photovoltaic cells.",
        {"topic": "energy", "year": 2020},
    ),
    (
        "wind",
        "Wind turbines turn the kinetic energy of moving air into electric power.",
        {"topic": "energy", "year": 2018},
    ),
    ("paris", "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.", {"topic": "travel", "year": 2015}),
    ("croissant", "A croissant is a buttery, flaky French pastry.", {"topic": "food", "year": 2019}),
    ("python", "Python is a programming language known for its readable syntax.", {"topic": "tech", "year": 2021}),
    (
        "milvus",
        "Milvus is an open-source vector database built for similarity search.",
        {"topic": "tech", "year": 2022},
    ),
    ("bm25", "BM25 ranks documents by term frequency and inverse document frequency.", {"topic": "tech", "year": 2009}),
    (
        "espresso",
        "Espresso is coffee brewed by forcing hot water through ground beans.",
        {"topic": "food", "year": 2017},
    ),
]
SOLAR_QUERY = "How do photovoltaic panels produce electricity?"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, minilm: Any) -> Iterator[MilvusClient]:
    milvus = MilvusClient(str(tmp_path_factory.mktemp("milvus") / "retriever.db"))
    create_rag_collection(milvus, "docs", dim=384)
    ingest(milvus, "docs", DOCS, embedding=minilm, show_progress=False)
    yield milvus
    milvus.close()


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_modes_return_candidates_best_first(client: MilvusClient, minilm: Any, mode: str) -> None:
    retriever = MilvusRetriever(client, "docs", mode=mode, embedding=minilm if mode != "sparse" else None)
    candidates = retriever.retrieve(SOLAR_QUERY)
    assert candidates
    assert all(isinstance(c, Candidate) for c in candidates)
    top = candidates[0]
    assert top.id == "solar"
    assert top.text == DOCS[0][1]
    assert top.metadata == {"topic": "energy", "year": 2020}  # no vectors, no key, no text
    assert [c.retrieval_rank for c in candidates] == list(range(1, len(candidates) + 1))
    assert len({c.id for c in candidates}) == len(candidates)  # a hit of both hybrid legs comes back once
    scores = [c.score for c in candidates]
    assert all(isinstance(s, float) for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert retriever.higher_is_better
    assert not any(c.reranked for c in candidates)
    if mode == "sparse":  # BM25 only returns documents sharing a term with the query
        assert len(candidates) < len(DOCS)
    else:
        assert len(candidates) == len(DOCS)


def test_bm25_scores_are_positive_on_milvus_lite_too(client: MilvusClient, minilm: Any) -> None:
    """Milvus Lite reports BM25 scores negated (a server does not); the candidates carry the positive score."""
    query = "documents about energy: power from the sun and the wind, and a vector database"
    raw = client.search(
        "docs",
        data=[query],
        anns_field="sparse",
        limit=50,
        search_params={"metric_type": "BM25"},
        output_fields=["text"],
    )[0]
    assert len(raw) >= 3
    assert all(hit["distance"] < 0 for hit in raw)  # what Lite itself says; if this changes, so may the rule
    sparse = MilvusRetriever(client, "docs", mode="sparse", limit=50)
    candidates = sparse.retrieve(query)
    assert [c.id for c in candidates] == [hit["id"] for hit in raw]
    assert [c.score for c in candidates] == pytest.approx([-hit["distance"] for hit in raw])
    assert all(c.score > 0 for c in candidates)
    assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)
    assert sparse.higher_is_better
    # The weighted hybrid with the BM25 leg alone ranks the same way: Lite's fusion already sees positive scores.
    bm25_only = MilvusRetriever(client, "docs", embedding=minilm, fusion="weighted", weights=(0.0, 1.0), limit=50)
    fused = [c for c in bm25_only.retrieve(query) if c.score > 0]
    assert [c.id for c in fused] == [c.id for c in candidates]


def test_mode_properties(client: MilvusClient, minilm: Any) -> None:
    dense = MilvusRetriever(client, "docs", mode="dense", embedding=minilm)
    sparse = MilvusRetriever(client, "docs", mode="sparse")
    hybrid = MilvusRetriever(client, "docs", embedding=minilm)
    assert (dense.metric_type, sparse.metric_type, hybrid.metric_type) == ("COSINE", "BM25", None)
    assert (dense.dense_field, dense.sparse_field) == ("dense", None)
    assert (sparse.dense_field, sparse.sparse_field) == (None, "sparse")
    assert (hybrid.text_field, hybrid.primary_field) == ("text", "id")
    assert hybrid.mode == "hybrid"


def test_hybrid_is_the_same_search_as_raw_pymilvus(client: MilvusClient, minilm: Any) -> None:
    retriever = MilvusRetriever(client, "docs", embedding=minilm, limit=5, candidate_limit=3)
    vector = minilm.encode_query(SOLAR_QUERY).tolist()
    requests = [
        AnnSearchRequest([vector], "dense", {"metric_type": "COSINE"}, 3),
        AnnSearchRequest([SOLAR_QUERY], "sparse", {"metric_type": "BM25"}, 3),
    ]
    raw = client.hybrid_search("docs", requests, RRFRanker(60), limit=5, output_fields=["text"])[0]
    ours = retriever.retrieve(SOLAR_QUERY)
    assert [(c.id, pytest.approx(c.score)) for c in ours] == [(h["id"], h["distance"]) for h in raw]

    weighted = MilvusRetriever(client, "docs", embedding=minilm, fusion="weighted", weights=(0.7, 0.3), limit=4)
    raw = client.hybrid_search(
        "docs",
        [
            AnnSearchRequest([vector], "dense", {"metric_type": "COSINE"}, 100),
            AnnSearchRequest([SOLAR_QUERY], "sparse", {"metric_type": "BM25"}, 100),
        ],
        WeightedRanker(0.7, 0.3, norm_score=True),
        limit=4,
    )[0]
    assert [(c.id, pytest.approx(c.score)) for c in weighted.retrieve(SOLAR_QUERY)] == [
        (h["id"], h["distance"]) for h in raw
    ]


def test_rrf_k_changes_fusion_scores(client: MilvusClient, minilm: Any) -> None:
    k60 = MilvusRetriever(client, "docs", embedding=minilm).retrieve(SOLAR_QUERY)
    k1 = MilvusRetriever(client, "docs", embedding=minilm, rrf_k=1).retrieve(SOLAR_QUERY)
    assert k60[0].score == pytest.approx(2 / 61)  # first in both legs
    assert k1[0].score == pytest.approx(2 / 2)


def test_limits(client: MilvusClient, minilm: Any) -> None:
    retriever = MilvusRetriever(client, "docs", embedding=minilm, limit=2)
    assert len(retriever.retrieve(SOLAR_QUERY)) == 2
    assert len(retriever.retrieve(SOLAR_QUERY, limit=5)) == 5
    assert retriever.options.limit == 2  # a per-call limit does not stick
    assert retriever.effective_candidate_limit == 100
    assert MilvusRetriever(client, "docs", embedding=minilm, limit=80).effective_candidate_limit == 160
    assert MilvusRetriever(client, "docs", embedding=minilm, candidate_limit=7).effective_candidate_limit == 7
    assert MilvusRetriever(client, "docs", embedding=minilm, limit=5, candidate_limit=7).effective_candidate_limit == 7


@pytest.mark.parametrize("metric", ["COSINE", "IP", "L2"])
def test_dense_metrics(tmp_path: Path, minilm: Any, metric: str) -> None:
    milvus = MilvusClient(str(tmp_path / "metric.db"))
    try:
        create_rag_collection(milvus, "m", dim=384, metric_type=metric)
        ingest(milvus, "m", DOCS, embedding=minilm, show_progress=False)
        retriever = MilvusRetriever(milvus, "m", mode="dense", embedding=minilm, limit=4)
        candidates = retriever.retrieve(SOLAR_QUERY)
        assert candidates[0].id == "solar"
        assert retriever.metric_type == metric
        scores = [c.score for c in candidates]
        if metric == "L2":
            assert not retriever.higher_is_better
            assert scores == sorted(scores)  # distances: closest first
        else:
            assert retriever.higher_is_better
            assert scores == sorted(scores, reverse=True)
        # hybrid scores are fusion scores whatever the dense metric
        hybrid = MilvusRetriever(milvus, "m", embedding=minilm)
        assert hybrid.higher_is_better
        assert hybrid.retrieve(SOLAR_QUERY)[0].id == "solar"
    finally:
        milvus.close()


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_filters_apply_to_every_mode(client: MilvusClient, minilm: Any, mode: str) -> None:
    embedding = minilm if mode != "sparse" else None
    retriever = MilvusRetriever(client, "docs", mode=mode, embedding=embedding, filter='topic == "tech"')
    candidates = retriever.retrieve("search documents by term frequency")
    assert candidates
    assert {c.metadata["topic"] for c in candidates} == {"tech"}
    narrowed = retriever.retrieve("search documents by term frequency", filter="year > 2020")
    assert narrowed
    assert {c.id for c in narrowed} <= {"python", "milvus"}  # tech AND recent: the per-call filter narrows


def test_partitions(tmp_path: Path, minilm: Any) -> None:
    milvus = MilvusClient(str(tmp_path / "parts.db"))
    try:
        create_rag_collection(milvus, "p", dim=384)
        ingest(milvus, "p", DOCS[:4], embedding=minilm, show_progress=False)
        milvus.create_partition("p", "extra")
        text = "Tidal power stations generate electricity from ocean tides."
        row = {"id": "tidal", "text": text, "dense": minilm.encode_document(text).tolist(), "topic": "energy"}
        milvus.insert("p", [row], partition_name="extra")
        milvus.flush("p")
        everywhere = MilvusRetriever(milvus, "p", embedding=minilm).retrieve("electricity")
        assert "tidal" in {c.id for c in everywhere}
        assert len(everywhere) == 5
        only_extra = MilvusRetriever(milvus, "p", embedding=minilm, partition_names=["extra"])
        assert [c.id for c in only_extra.retrieve("electricity")] == ["tidal"]
    finally:
        milvus.close()


def test_output_fields_and_consistency_level(client: MilvusClient, minilm: Any) -> None:
    retriever = MilvusRetriever(
        client, "docs", mode="dense", embedding=minilm, output_fields=["year"], consistency_level="Strong"
    )
    assert retriever.output_fields == ["text", "year"]
    top = retriever.retrieve(SOLAR_QUERY)[0]
    assert top.metadata == {"year": 2020}
    assert top.text.startswith("Solar")
    with pytest.raises(ValueError, match="consistency_level"):
        MilvusRetriever(client, "docs", mode="sparse", consistency_level="Sometimes")
    with pytest.raises(TypeError, match="single str"):
        MilvusRetriever(client, "docs", mode="sparse", output_fields="year")


def test_search_params_reach_milvus(client: MilvusClient, minilm: Any) -> None:
    # A range search (radius / range_filter) only keeps hits whose similarity lies in the range.
    retriever = MilvusRetriever(
        client, "docs", mode="dense", embedding=minilm, dense_search_params={"radius": 0.3, "range_filter": 1.0}
    )
    close = retriever.retrieve(SOLAR_QUERY)
    assert close
    assert all(c.score > 0.3 for c in close)
    assert len(close) < len(DOCS)
    full = MilvusRetriever(
        client,
        "docs",
        mode="dense",
        embedding=minilm,
        dense_search_params={"params": {"ef": 64}, "metric_type": "COSINE"},
    )
    assert len(full.retrieve(SOLAR_QUERY)) == len(DOCS)


# ---------------------------------------------------------------- foreign schemas


def test_foreign_int64_schema_any_field_names(tmp_path: Path, minilm: Any) -> None:
    milvus = MilvusClient(str(tmp_path / "foreign.db"))
    try:
        schema = milvus.create_schema(enable_dynamic_field=False)
        schema.add_field("doc_no", DataType.INT64, is_primary=True)
        schema.add_field("body", DataType.VARCHAR, max_length=512)
        schema.add_field("year", DataType.INT64)
        schema.add_field("emb", DataType.FLOAT_VECTOR, dim=384)
        index = milvus.prepare_index_params()
        index.add_index("emb", index_type="IVF_FLAT", metric_type="L2", params={"nlist": 4})
        milvus.create_collection("legacy", schema=schema, index_params=index)
        rows = [
            {"doc_no": 100 + i, "body": text, "year": meta["year"], "emb": minilm.encode_document(text).tolist()}
            for i, (_, text, meta) in enumerate(DOCS)
        ]
        milvus.insert("legacy", rows)
        milvus.flush("legacy")
        milvus.release_collection("legacy")  # the retriever loads what it needs

        retriever = MilvusRetriever(milvus, "legacy", mode="dense", embedding=minilm, limit=3)
        assert (retriever.text_field, retriever.dense_field, retriever.primary_field) == ("body", "emb", "doc_no")
        assert retriever.metric_type == "L2"
        assert not retriever.higher_is_better
        top = retriever.retrieve(SOLAR_QUERY)[0]
        assert top.id == 100
        assert isinstance(top.id, int)
        assert top.metadata == {"year": 2020}
        with pytest.raises(SchemaError, match=r"sparse vector field of collection 'legacy'.*mode='dense'"):
            MilvusRetriever(milvus, "legacy", embedding=minilm)  # hybrid is the default mode
    finally:
        milvus.close()


def test_foreign_bm25_schema_detected_from_its_function(tmp_path: Path, minilm: Any) -> None:
    milvus = MilvusClient(str(tmp_path / "bm25.db"))
    try:
        schema = milvus.create_schema()
        schema.add_field("uid", DataType.VARCHAR, is_primary=True, max_length=32)
        schema.add_field("title", DataType.VARCHAR, max_length=64)
        schema.add_field("content", DataType.VARCHAR, max_length=512, enable_analyzer=True)
        schema.add_field("lexical", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("semantic", DataType.FLOAT_VECTOR, dim=384)
        schema.add_function(
            Function(
                name="lex",
                function_type=FunctionType.BM25,
                input_field_names=["content"],
                output_field_names=["lexical"],
            )
        )
        index = milvus.prepare_index_params()
        index.add_index("lexical", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        index.add_index("semantic", index_type="FLAT", metric_type="IP")
        milvus.create_collection("kb", schema=schema, index_params=index)
        rows = [
            {"uid": key, "title": key.upper(), "content": text, "semantic": minilm.encode_document(text).tolist()}
            for key, text, _ in DOCS
        ]
        milvus.insert("kb", rows)
        milvus.flush("kb")
        retriever = MilvusRetriever(milvus, "kb", embedding=minilm)
        assert (retriever.text_field, retriever.sparse_field, retriever.dense_field) == (
            "content",
            "lexical",
            "semantic",
        )
        top = retriever.retrieve(SOLAR_QUERY)[0]
        assert (top.id, top.metadata) == ("solar", {"title": "SOLAR"})
    finally:
        milvus.close()


def test_llamaindex_created_collection(tmp_path: Path, minilm: Any) -> None:
    from llama_index.core.schema import TextNode
    from llama_index.vector_stores.milvus import MilvusVectorStore

    store = MilvusVectorStore(uri=str(tmp_path / "llama.db"), dim=384, collection_name="llama", overwrite=True)
    nodes = [
        TextNode(id_=key, text=text, embedding=minilm.encode_document(text).tolist(), metadata={"topic": meta["topic"]})
        for key, text, meta in DOCS
    ]
    store.add(nodes)
    retriever = MilvusRetriever(store.client, "llama", mode="dense", embedding=minilm, limit=2)
    assert (retriever.text_field, retriever.dense_field, retriever.metric_type) == ("text", "embedding", "IP")
    top = retriever.retrieve(SOLAR_QUERY)[0]
    assert top.id == "solar"
    assert top.text == DOCS[0][1]
    assert top.metadata["topic"] == "energy"  # LlamaIndex's dynamic metadata keys come back


def test_user_sparse_encoder_and_ambiguous_vectors(tmp_path: Path, minilm: Any) -> None:
    vocabulary: dict[str, int] = {}

    def encode(text: str) -> dict[int, float]:  # a toy bag-of-words encoder
        words = {w.strip(".,?").lower() for w in text.split()}
        return {vocabulary.setdefault(w, len(vocabulary)): 1.0 for w in words if w}

    milvus = MilvusClient(str(tmp_path / "splade.db"))
    try:
        schema = milvus.create_schema()
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=32)
        schema.add_field("text", DataType.VARCHAR, max_length=512)
        schema.add_field("splade", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_field("dense_a", DataType.FLOAT_VECTOR, dim=384)
        schema.add_field("dense_b", DataType.FLOAT_VECTOR, dim=2)
        index = milvus.prepare_index_params()
        index.add_index("splade", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        index.add_index("dense_a", index_type="FLAT", metric_type="COSINE")
        index.add_index("dense_b", index_type="FLAT", metric_type="L2")
        milvus.create_collection("own", schema=schema, index_params=index)
        milvus.insert(
            "own",
            [
                {
                    "id": key,
                    "text": text,
                    "splade": encode(text),
                    "dense_a": minilm.encode_document(text).tolist(),
                    "dense_b": [1.0, 0.0],
                }
                for key, text, _ in DOCS
            ],
        )
        milvus.flush("own")
        with pytest.raises(ValueError, match=r"'splade'.*not the output of a BM25 function.*sparse_embedding="):
            MilvusRetriever(milvus, "own", mode="sparse")
        sparse = MilvusRetriever(milvus, "own", mode="sparse", sparse_embedding=encode)
        assert sparse.metric_type == "IP"
        assert sparse.retrieve("photovoltaic electricity")[0].id == "solar"

        with pytest.raises(SchemaError, match=r"dense vector field.*\['dense_a', 'dense_b'\].*dense_field="):
            MilvusRetriever(milvus, "own", mode="dense", embedding=minilm)
        hybrid = MilvusRetriever(milvus, "own", embedding=minilm, sparse_embedding=encode, dense_field="dense_a")
        assert hybrid.retrieve(SOLAR_QUERY)[0].id == "solar"
    finally:
        milvus.close()


# ---------------------------------------------------------------- errors


def test_missing_collection(client: MilvusClient) -> None:
    with pytest.raises(CollectionNotFoundError, match=r"'nope' does not exist.*\['docs'\]") as info:
        MilvusRetriever(client, "nope", mode="sparse")
    assert isinstance(info.value, LookupError)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"text_field": "body"}, r"collection 'docs' has no field 'body' \(wanted as text_field\)"),
        ({"text_field": "dense"}, r"text_field 'dense' of collection 'docs' is FLOAT_VECTOR, not VARCHAR"),
        ({"dense_field": "vector"}, r"collection 'docs' has no field 'vector' \(wanted as dense_field\)"),
        ({"dense_field": "sparse"}, r"dense_field 'sparse' of collection 'docs' is SPARSE_FLOAT_VECTOR"),
        ({"sparse_field": "dense"}, r"sparse_field 'dense' of collection 'docs' is FLOAT_VECTOR"),
        ({"sparse_field": "splade"}, r"no field 'splade'"),
    ],
)
def test_schema_errors_name_collection_and_field(
    client: MilvusClient, minilm: Any, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(SchemaError, match=match):
        MilvusRetriever(client, "docs", embedding=minilm, **kwargs)


def test_dimension_mismatch(client: MilvusClient) -> None:
    retriever = MilvusRetriever(client, "docs", mode="dense", embedding=lambda text: [0.1] * 768)
    with pytest.raises(SchemaError, match=r"768-dimensional.*'dense' of collection 'docs' holds 384-dimensional"):
        retriever.retrieve("query")


def test_text_missing_from_a_hit(tmp_path: Path) -> None:
    milvus = MilvusClient(str(tmp_path / "nullable.db"))
    try:
        schema = milvus.create_schema()
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("text", DataType.VARCHAR, max_length=64, nullable=True)
        schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
        index = milvus.prepare_index_params()
        index.add_index("v", index_type="FLAT", metric_type="L2")
        milvus.create_collection("holes", schema=schema, index_params=index)
        milvus.insert("holes", [{"id": 1, "text": "fine", "v": [0.0, 1.0]}, {"id": 2, "text": None, "v": [1.0, 0.0]}])
        retriever = MilvusRetriever(milvus, "holes", mode="dense", embedding=lambda text: [0.0, 1.0])
        assert retriever.retrieve("q", limit=1)[0].text == "fine"
        with pytest.raises(SchemaError, match=r"text field 'text' of collection 'holes' is NoneType for primary key 2"):
            retriever.retrieve("q")
    finally:
        milvus.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "keyword"}, ValueError, "mode must be"),
        ({"mode": "dense"}, ValueError, "pass embedding="),
        ({"mode": "hybrid"}, ValueError, "pass embedding="),
        ({"mode": "sparse", "limit": 0}, ValueError, "limit must be an int between 1 and 16384, got 0"),
        ({"mode": "sparse", "limit": 2.5}, TypeError, "limit must be an int between 1 and 16384, got float"),
        ({"mode": "sparse", "candidate_limit": 20000}, ValueError, "candidate_limit"),
        ({"mode": "sparse", "fusion": "max"}, ValueError, "fusion must be"),
        ({"mode": "sparse", "rrf_k": 0}, ValueError, "rrf_k"),
        ({"mode": "sparse", "weights": (1.0, 2.0)}, ValueError, "fusion='weighted'"),
        ({"mode": "sparse", "fusion": "weighted", "weights": (1.0,)}, ValueError, "two non-negative"),
        ({"mode": "sparse", "filter": 3}, TypeError, "filter must be a str"),
        ({"mode": "sparse", "ranker": "rrf"}, TypeError, "Function of type RERANK"),
        ({"mode": "sparse", "ranker": RRFRanker()}, ValueError, "only fuses hybrid legs"),
        ({"mode": "sparse", "embedding": None, "sparse_field": None, "text_field": None}, None, None),
    ],
)
def test_argument_errors(
    client: MilvusClient, kwargs: dict[str, Any], error: type[Exception] | None, match: str | None
) -> None:
    if error is None:
        MilvusRetriever(client, "docs", **kwargs)  # the control case: these arguments are fine
        return
    with pytest.raises(error, match=match):
        MilvusRetriever(client, "docs", **kwargs)


def test_options_are_checked_before_connecting() -> None:
    # Nothing listens on port 9: reaching Milvus would be a RetrievalError, not the option's own error.
    unreachable = "http://127.0.0.1:9"
    with pytest.raises(ValueError, match="limit must be an int between 1 and 16384, got 0"):
        MilvusRetriever(unreachable, "docs", mode="sparse", limit=0)
    with pytest.raises(ValueError, match="pass embedding="):
        MilvusRetriever(unreachable, "docs", mode="hybrid")
    with pytest.raises(ValueError, match="timeout must be > 0"):
        MilvusRetriever(unreachable, "docs", mode="sparse", timeout=0)
    with pytest.raises(TypeError, match="collection_name must be a non-empty str"):
        MilvusRetriever(unreachable, "", mode="sparse")
    with pytest.raises(TypeError, match="partition_names must be a sequence of names"):
        MilvusRetriever(unreachable, "docs", mode="sparse", partition_names="extra")


def test_search_options_are_one_checked_value(client: MilvusClient, minilm: Any) -> None:
    params = {"ef": 64}
    retriever = MilvusRetriever(
        client, "docs", embedding=minilm, fusion="weighted", weights=[0.7, 0.3], dense_search_params=params, limit=3
    )
    params["ef"] = 0  # the caller's dict is copied: a later change does not reach the searches
    assert retriever.options == SearchOptions(
        limit=3, fusion="weighted", weights=(0.7, 0.3), dense_search_params={"ef": 64}
    )
    assert len(retriever.retrieve(SOLAR_QUERY)) == 3
    retriever.options = replace(retriever.options, limit=5)  # a new value is checked and takes effect
    assert len(retriever.retrieve(SOLAR_QUERY)) == 5
    with pytest.raises(ValueError, match="limit must be an int between 1 and 16384"):
        replace(retriever.options, limit=0)
    with pytest.raises(ValueError, match="fusion='weighted'"):
        replace(retriever.options, fusion="rrf")  # the weights only make sense with weighted fusion
    with pytest.raises(TypeError, match="options must be a SearchOptions, got dict"):
        retriever.options = {"limit": 5}  # type: ignore[assignment]
    assert (retriever.options.limit, retriever.options.fusion) == (5, "weighted")
    # The same value given whole: the fields then cannot come beside it.
    whole = MilvusRetriever(client, "docs", embedding=minilm, options=SearchOptions(limit=2, rrf_k=1))
    assert whole.options == SearchOptions(limit=2, rrf_k=1)
    assert [c.id for c in whole.retrieve(SOLAR_QUERY)] == [
        c.id for c in MilvusRetriever(client, "docs", embedding=minilm, limit=2, rrf_k=1).retrieve(SOLAR_QUERY)
    ]
    with pytest.raises(ValueError, match=r"either options=SearchOptions\(...\) or its fields \(limit, rrf_k\)"):
        MilvusRetriever(client, "docs", embedding=minilm, options=SearchOptions(), limit=2, rrf_k=1)
    with pytest.raises(TypeError, match="options must be a SearchOptions, got dict"):
        MilvusRetriever(client, "docs", embedding=minilm, options={"limit": 2})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must not both be zero"):
        SearchOptions(fusion="weighted", weights=(0, 0))
    with pytest.raises(TypeError, match="each of weights must be a number"):
        SearchOptions(fusion="weighted", weights=("a", 1))


def test_a_misspelt_keyword_is_a_type_error_naming_it() -> None:
    # Refused before connecting: nothing listens on port 9.
    with pytest.raises(
        TypeError, match=r"MilvusRetriever\(\) got an unexpected keyword argument 'limt'; did you mean 'limit'"
    ):
        MilvusRetriever("http://127.0.0.1:9", "docs", mode="sparse", limt=3)  # type: ignore[call-arg]
    with pytest.raises(
        TypeError, match=r"unexpected keyword argument 'k' \(see milvus_rerank.milvus.MilvusRetrieverOptions\)"
    ):
        MilvusRetriever("http://127.0.0.1:9", "docs", mode="sparse", k=3)  # type: ignore[call-arg]


# ---------------------------------------------------------------- an injected layout


class CountingClient:
    """A real Milvus Lite client that counts the calls which read a collection's schema."""

    def __init__(self, client: MilvusClient) -> None:
        self.client = client
        self.reads: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name in {"has_collection", "describe_collection", "list_indexes", "describe_index", "get_load_state"}:
            self.reads.append(name)
        return getattr(self.client, name)


def test_an_injected_layout_makes_no_milvus_call_and_searches_the_same(client: MilvusClient, minilm: Any) -> None:
    read = MilvusRetriever(client, "docs", embedding=minilm, limit=5)
    counting = CountingClient(client)
    injected = MilvusRetriever(counting, "docs", embedding=minilm, limit=5, layout=read.layout)
    assert counting.reads == []
    assert injected.layout is read.layout
    assert injected.retrieve(SOLAR_QUERY) == read.retrieve(SOLAR_QUERY)
    assert (injected.text_field, injected.primary_field) == ("text", "id")
    # A layout written by hand, as a test of a foreign schema would: the fields it names are the ones read.
    by_hand = CollectionLayout(
        collection_name="docs",
        primary_field="id",
        text_field="text",
        dense_field=None,
        dense_dim=None,
        dense_metric=None,
        sparse_field="sparse",
        sparse_is_bm25=True,
        sparse_metric="BM25",
        scalar_fields=("topic",),
        dynamic=False,
    )
    sparse = MilvusRetriever(counting, "docs", mode="sparse", layout=by_hand)
    assert counting.reads == []
    assert sparse.output_fields == ["text", "topic"]
    top = sparse.retrieve("photovoltaic cells")[0]
    assert (top.id, top.metadata) == ("solar", {"topic": "energy"})
    assert top.score is not None
    assert top.score > 0  # a BM25 layout: Lite's negated scores turned back


def test_an_injected_layout_is_checked(client: MilvusClient, minilm: Any) -> None:
    sparse_only = MilvusRetriever(client, "docs", mode="sparse").layout
    unreachable = "http://127.0.0.1:9"  # every check comes before connecting
    with pytest.raises(ValueError, match=r"mode='hybrid' searches a dense vector field, and the layout has none"):
        MilvusRetriever(unreachable, "docs", embedding=minilm, layout=sparse_only)
    with pytest.raises(ValueError, match=r"layout describes collection 'docs', not 'other'"):
        MilvusRetriever(unreachable, "other", mode="sparse", layout=sparse_only)
    with pytest.raises(ValueError, match=r"either layout= or field names \(text_field\)"):
        MilvusRetriever(unreachable, "docs", mode="sparse", layout=sparse_only, text_field="text")
    with pytest.raises(TypeError, match="layout must be a CollectionLayout, got dict"):
        MilvusRetriever(unreachable, "docs", mode="sparse", layout={"text_field": "text"})  # type: ignore[arg-type]


def test_bm25_function_is_not_a_ranker(client: MilvusClient) -> None:
    bm25 = Function(name="f", function_type=FunctionType.BM25, input_field_names=["text"], output_field_names=["x"])
    with pytest.raises(ValueError, match="type RERANK"):
        MilvusRetriever(client, "docs", mode="sparse", ranker=bm25)


def test_query_errors_and_milvus_failures(client: MilvusClient, minilm: Any) -> None:
    retriever = MilvusRetriever(client, "docs", mode="sparse")
    with pytest.raises(TypeError, match="query must be a str"):
        retriever.retrieve(["a list"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit"):
        retriever.retrieve("q", limit=-1)
    with pytest.raises(RetrievalError, match=r"Milvus search on collection 'docs' failed: .*expression"):
        retriever.retrieve("q", filter="topic ==")


def test_dropped_collection(tmp_path: Path, minilm: Any) -> None:
    milvus = MilvusClient(str(tmp_path / "drop.db"))
    try:
        create_rag_collection(milvus, "gone", dim=384)
        retriever = MilvusRetriever(milvus, "gone", mode="sparse")
        milvus.drop_collection("gone")
        with pytest.raises(CollectionNotFoundError, match="'gone' does not exist"):
            retriever.retrieve("anything")
    finally:
        milvus.close()


def test_client_from_uri_keeps_token_secret(tmp_path: Path, minilm: Any) -> None:
    path = str(tmp_path / "uri.db")
    setup = MilvusClient(path)
    create_rag_collection(setup, "docs", dim=384)
    ingest(setup, "docs", DOCS, embedding=minilm, show_progress=False)
    setup.close()
    with MilvusRetriever(path, "docs", embedding=minilm, token="root:s3cret-token", db_name="default") as retriever:
        assert "s3cret" not in repr(retriever)
        assert "s3cret" not in repr(vars(retriever))
        assert retriever.retrieve(SOLAR_QUERY)[0].id == "solar"
    with pytest.raises(CollectionNotFoundError):
        MilvusRetriever(path, "other", mode="sparse")


def test_unreachable_server_is_a_retrieval_error() -> None:
    with pytest.raises(RetrievalError, match=r"cannot connect to Milvus at 'http://127.0.0.1:9'") as info:
        MilvusRetriever("http://127.0.0.1:9", "docs", mode="sparse", token="tok-SECRET-123", timeout=2)
    assert "SECRET" not in str(info.value)


# ---------------------------------------------------------------- async


async def test_aretrieve_matches_retrieve(client: MilvusClient, minilm: Any) -> None:
    retriever = MilvusRetriever(client, "docs", embedding=minilm, limit=4)
    expected = retriever.retrieve(SOLAR_QUERY)
    results = await asyncio.gather(*(retriever.aretrieve(SOLAR_QUERY) for _ in range(3)))
    assert all(result == expected for result in results)
    assert await retriever.aretrieve(SOLAR_QUERY, limit=1, filter='topic == "tech"') == retriever.retrieve(
        SOLAR_QUERY, limit=1, filter='topic == "tech"'
    )


async def test_aretrieve_does_not_block_the_event_loop(client: MilvusClient, minilm: Any) -> None:
    released = threading.Event()

    def slow_embedding(text: str) -> list[float]:
        # Returns only once a coroutine on the event loop has run: if aretrieve blocked the loop,
        # the wait would time out.
        if not released.wait(timeout=20):
            raise AssertionError("the event loop was blocked while the embedding ran")
        return minilm.encode_query(text).tolist()

    async def release_soon() -> None:
        await asyncio.sleep(0)
        released.set()

    retriever = MilvusRetriever(client, "docs", mode="dense", embedding=slow_embedding)
    candidates, _ = await asyncio.gather(retriever.aretrieve(SOLAR_QUERY), release_soon())
    assert candidates[0].id == "solar"


# ---------------------------------------------------------------- server-side rankers


def test_function_rankers_run_in_milvus(client: MilvusClient, minilm: Any) -> None:
    rrf = Function(
        name="rrf", function_type=FunctionType.RERANK, input_field_names=[], params={"reranker": "rrf", "k": 60}
    )
    with_function = MilvusRetriever(client, "docs", embedding=minilm, ranker=rrf).retrieve(SOLAR_QUERY)
    default = MilvusRetriever(client, "docs", embedding=minilm).retrieve(SOLAR_QUERY)
    assert [(c.id, pytest.approx(c.score)) for c in with_function] == [(c.id, c.score) for c in default]
    assert not any(c.reranked for c in with_function)  # fusion is not reranking

    weighted = Function(
        name="w",
        function_type=FunctionType.RERANK,
        input_field_names=[],
        params={"reranker": "weighted", "weights": [0.2, 0.8], "norm_score": True},
    )
    ours = MilvusRetriever(client, "docs", embedding=minilm, ranker=weighted).retrieve(SOLAR_QUERY)
    legacy = MilvusRetriever(client, "docs", embedding=minilm, ranker=WeightedRanker(0.2, 0.8, norm_score=True))
    assert [c.id for c in ours] == [c.id for c in legacy.retrieve(SOLAR_QUERY)]
    assert [c.id for c in ours] != [c.id for c in default] or ours[0].score != default[0].score


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_model_ranker_reranks_inside_milvus(client: MilvusClient, minilm: Any, mode: str) -> None:
    from milvus_rerank import CohereReranker
    from milvus_rerank.testing.server import RerankTestServer, WordOverlapReranker

    with RerankTestServer() as server:
        # Milvus Lite's only model-ranker provider is cohere; it posts to the test server's /v2/rerank.
        function = model_ranker(CohereReranker(server.url, model=server.model_name), ["built for"])
        retriever = MilvusRetriever(client, "docs", mode=mode, embedding=minilm, ranker=function, limit=3)
        queries = ["espresso coffee beans", "vector database similarity search"]
        results = [retriever.retrieve(query) for query in queries]
        records = server.rerank_requests
    assert [record.body["query"] for record in records] == queries  # each search carries its own query
    assert function.params["queries"] == ["built for"]  # the caller's Function is left as it was
    for record, candidates in zip(records, results, strict=True):
        sent = record.body["documents"]
        expected = WordOverlapReranker().rerank(record.body["query"], sent, top_n=3)
        assert [c.text for c in candidates] == [sent[r.index] for r in expected]
        assert [c.rerank_score for c in candidates] == pytest.approx([r.score for r in expected], rel=1e-6)
        assert all(c.reranked and c.score == c.rerank_score for c in candidates)
        assert [c.retrieval_rank for c in candidates] == [1, 2, 3]
    assert results[1][0].id == "milvus"
    assert retriever.higher_is_better


def test_model_ranker_failures(client: MilvusClient, minilm: Any) -> None:
    from milvus_rerank import CohereReranker
    from milvus_rerank.testing.server import Fault, RerankTestServer

    with RerankTestServer() as server:
        reranker = CohereReranker(server.url, model=server.model_name)
        with pytest.raises(SchemaError, match=r"reads field 'body'.*input_field='text'"):
            MilvusRetriever(client, "docs", mode="sparse", ranker=model_ranker(reranker, ["q"], input_field="body"))
        retriever = MilvusRetriever(client, "docs", mode="sparse", ranker=model_ranker(reranker, ["q"]))
        server.inject(Fault.server_error(503))
        with pytest.raises(RetrievalError, match=r"search on collection 'docs' failed: .*503"):
            retriever.retrieve("coffee")
