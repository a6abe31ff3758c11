"""LlamaIndex on Milvus Lite: MilvusRerankRetriever, query engines, and MilvusVectorStore interop.

Everything is real: Milvus Lite in a temp dir, the real all-MiniLM-L6-v2 embedding (offline), a tiny
random-weight cross-encoder and the loopback rerank server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore
from llama_index.vector_stores.milvus import MilvusVectorStore
from pymilvus import MilvusClient

from llamaindex_milvus_rerank import MilvusRerankRetriever, RerankPostprocessor, candidate_to_node
from milvus_rerank import CollectionNotFoundError, CrossEncoderReranker, MilvusRetriever, VLLMReranker
from milvus_rerank.milvus.collection import create_rag_collection, ingest
from milvus_rerank.testing.server import RerankTestServer, WordOverlapReranker

PASSAGES = [
    ("p01", "Milvus is an open-source vector database built for similarity search over embeddings.", "databases"),
    ("p02", "BM25 ranks documents by term frequency and inverse document frequency of the query words.", "search"),
    ("p03", "A cross-encoder reads the query and a passage together and outputs one relevance score.", "rerank"),
    (
        "p04",
        "Hybrid search fuses a dense search and a sparse keyword search with reciprocal rank fusion.",
        "search",
    ),
    ("p05", "Sourdough bread rises with a starter of wild yeast and lactic acid bacteria.", "cooking"),
    ("p06", "The Rhine flows from the Swiss Alps to the North Sea through Germany and the Netherlands.", "geography"),
    ("p07", "Reranking the top candidates of a first-stage retriever improves the precision of RAG answers.", "rerank"),
    ("p08", "HNSW builds a layered proximity graph so approximate nearest neighbour search is fast.", "databases"),
    ("p09", "Tomatoes need full sun, regular watering and a stake to climb as they grow.", "gardening"),
    ("p10", "vLLM serves rerank models over HTTP with a Cohere-compatible /v2/rerank endpoint.", "serving"),
    ("p11", "Sentence embeddings map a text to a vector so that similar meanings land close together.", "embeddings"),
    ("p12", "The Danube crosses ten countries before it reaches the Black Sea.", "geography"),
]
QUERIES = [
    "how does a reranker score passages",
    "which river flows into the North Sea",
    "what is a vector database",
    "how to bake bread with wild yeast",
]
COLLECTION = "rag"


class MiniLMEmbedding(BaseEmbedding):
    """A LlamaIndex embedding over the offline sentence-transformers all-MiniLM-L6-v2."""

    _model: Any = PrivateAttr()

    def __init__(self, model: Any) -> None:
        super().__init__(model_name="all-MiniLM-L6-v2", embed_batch_size=32)
        self._model = model

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._model.encode(query, normalize_embeddings=True).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_query_embedding(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._model.encode(texts, normalize_embeddings=True).tolist()


@pytest.fixture(scope="module")
def embed_model(minilm: Any) -> MiniLMEmbedding:
    return MiniLMEmbedding(minilm)


@pytest.fixture(scope="module")
def rag_db(tmp_path_factory: pytest.TempPathFactory, minilm: Any) -> str:
    """A Milvus Lite file with our standard RAG collection (dense + BM25), filled with PASSAGES."""
    uri = str(tmp_path_factory.mktemp("milvus") / "rag.db")
    client = MilvusClient(uri)
    create_rag_collection(client, COLLECTION, dim=384)
    ingest(
        client,
        COLLECTION,
        [(pid, text, {"topic": topic}) for pid, text, topic in PASSAGES],
        embedding=minilm,
        show_progress=False,
    )
    client.close()
    return uri


@pytest.fixture(scope="module")
def cross_encoder(tiny_model: Path) -> CrossEncoderReranker:
    return CrossEncoderReranker(tiny_model, device="cpu")


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vector-store")


def vector_store_index(path: Path, embed_model: MiniLMEmbedding, *, hybrid: bool) -> VectorStoreIndex:
    store = MilvusVectorStore(
        uri=str(path / ("hybrid.db" if hybrid else "dense.db")),
        collection_name="li",
        dim=384,
        overwrite=True,
        enable_sparse=hybrid,
        similarity_metric="COSINE",
    )
    documents = [Document(text=text, id_=pid, metadata={"topic": topic}) for pid, text, topic in PASSAGES]
    return VectorStoreIndex.from_documents(
        documents, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed_model
    )


@pytest.fixture(scope="module")
def dense_index(store_dir: Path, embed_model: MiniLMEmbedding) -> VectorStoreIndex:
    return vector_store_index(store_dir, embed_model, hybrid=False)


@pytest.fixture(scope="module")
def hybrid_index(store_dir: Path, embed_model: MiniLMEmbedding) -> VectorStoreIndex:
    return vector_store_index(store_dir, embed_model, hybrid=True)


def direct(reranker: Any, query: str, nodes: list[NodeWithScore], top_n: int) -> list[tuple[str, float]]:
    """(node id, score) of the reranker called directly on the texts the postprocessor sends."""
    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    return [(nodes[r.index].node.node_id, r.score) for r in reranker.rerank(query, texts, top_n=top_n)]


def pairs(nodes: list[NodeWithScore]) -> list[tuple[str, float | None]]:
    return [(n.node.node_id, n.score) for n in nodes]


# --- MilvusRerankRetriever on our own collection --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_retriever_reranks_the_first_stage(
    mode: str, rag_db: str, embed_model: MiniLMEmbedding, cross_encoder: CrossEncoderReranker
) -> None:
    first = MilvusRetriever(rag_db, COLLECTION, mode=mode, embedding=embed_model, limit=8)  # type: ignore[arg-type]
    retriever = MilvusRerankRetriever(retriever=first, reranker=cross_encoder, top_n=3)
    query = QUERIES[0]
    candidates = first.retrieve(query)
    assert len(candidates) == 8
    nodes = retriever.retrieve(query)

    expected = direct(cross_encoder, query, [candidate_to_node(c) for c in candidates], 3)
    assert pairs(nodes) == expected
    by_id = {str(c.id): c for c in candidates}
    for node in nodes:
        candidate = by_id[node.node.node_id]
        assert node.node.get_content(MetadataMode.NONE) == candidate.text
        assert node.node.metadata["topic"] == candidate.metadata["topic"]
        assert node.node.metadata["retrieval_score"] == candidate.score
        assert node.node.metadata["retrieval_rank"] == candidate.retrieval_rank
        prompt_text = node.node.get_content(MetadataMode.LLM)
        assert "topic: " in prompt_text
        assert "retrieval_" not in prompt_text
        assert "retrieval_" not in node.node.get_content(MetadataMode.EMBED)
    first.close()


async def test_retriever_async_equals_sync(
    rag_db: str, embed_model: MiniLMEmbedding, cross_encoder: CrossEncoderReranker
) -> None:
    retriever = MilvusRerankRetriever(
        client=rag_db, collection_name=COLLECTION, embedding=embed_model, limit=10, reranker=cross_encoder, top_n=4
    )
    for query in QUERIES:
        sync = retriever.retrieve(query)
        async_ = await retriever.aretrieve(query)
        assert [n.node.node_id for n in async_] == [n.node.node_id for n in sync]
        assert [n.score for n in async_] == pytest.approx([n.score for n in sync], abs=1e-6)
        assert len(sync) == 4
    retriever.close()


def test_retriever_builds_its_first_stage_from_milvus_options(
    rag_db: str, embed_model: MiniLMEmbedding, cross_encoder: CrossEncoderReranker
) -> None:
    retriever = MilvusRerankRetriever(
        client=rag_db,
        collection_name=COLLECTION,
        mode="hybrid",
        embedding=embed_model,
        limit=6,
        filter='topic == "geography"',
        reranker=cross_encoder,
        score_threshold=-1e9,
    )
    assert isinstance(retriever.first_stage, MilvusRetriever)
    assert retriever.first_stage.mode == "hybrid"
    nodes = retriever.retrieve(QUERIES[1])
    assert sorted(n.node.node_id for n in nodes) == ["p06", "p12"]
    retriever.close()


def test_retriever_construction_errors(
    rag_db: str, embed_model: MiniLMEmbedding, cross_encoder: CrossEncoderReranker
) -> None:
    first = MilvusRetriever(rag_db, COLLECTION, mode="sparse")
    with pytest.raises(ValueError, match="pass reranker="):
        MilvusRerankRetriever(retriever=first)
    with pytest.raises(ValueError, match="not both"):
        MilvusRerankRetriever(retriever=first, postprocessor=RerankPostprocessor(cross_encoder), top_n=3)
    with pytest.raises(ValueError, match="not both"):
        MilvusRerankRetriever(retriever=first, reranker=cross_encoder, client=rag_db)
    with pytest.raises(ValueError, match="collection_name="):
        MilvusRerankRetriever(reranker=cross_encoder, client=rag_db)
    with pytest.raises(TypeError, match="RerankPostprocessor"):
        MilvusRerankRetriever(retriever=first, postprocessor=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"retrieve\(\) and aretrieve\(\)"):
        MilvusRerankRetriever(retriever=object(), reranker=cross_encoder)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="top_n"):
        MilvusRerankRetriever(retriever=first, reranker=cross_encoder, top_n=0)
    with pytest.raises(CollectionNotFoundError):
        MilvusRerankRetriever(client=rag_db, collection_name="missing", reranker=cross_encoder, mode="sparse")
    with pytest.raises(ValueError, match="embedding="):
        MilvusRerankRetriever(client=rag_db, collection_name=COLLECTION, reranker=cross_encoder, mode="dense")
    first.close()


# --- query engines ----------------------------------------------------------------------------------------------------


def test_retriever_query_engine_answers_from_the_reranked_nodes(
    rag_db: str, embed_model: MiniLMEmbedding, cross_encoder: CrossEncoderReranker
) -> None:
    retriever = MilvusRerankRetriever(
        client=rag_db, collection_name=COLLECTION, embedding=embed_model, limit=8, reranker=cross_encoder, top_n=2
    )
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    query = QUERIES[0]
    response = engine.query(query)
    expected = retriever.retrieve(query)
    assert pairs(response.source_nodes) == pairs(expected)
    # MockLLM echoes its prompt: the reranked texts reach the LLM, the bookkeeping keys do not
    answer = str(response)
    for node in expected:
        assert node.node.get_content(MetadataMode.NONE) in answer
    assert "retrieval_score" not in answer
    assert "retrieval_rank" not in answer
    dropped = {text for _, text, _ in PASSAGES} - {n.node.get_content(MetadataMode.NONE) for n in expected}
    assert not any(text in answer for text in dropped)
    retriever.close()


async def test_retriever_query_engine_async(
    rag_db: str, embed_model: MiniLMEmbedding, cross_encoder: CrossEncoderReranker
) -> None:
    retriever = MilvusRerankRetriever(
        client=rag_db, collection_name=COLLECTION, embedding=embed_model, limit=8, reranker=cross_encoder, top_n=2
    )
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = await engine.aquery(QUERIES[2])
    assert [n.node.node_id for n in response.source_nodes] == [n.node.node_id for n in retriever.retrieve(QUERIES[2])]
    retriever.close()


@pytest.mark.parametrize("hybrid", [False, True], ids=["default", "hybrid"])
def test_vector_store_index_query_engine_with_the_postprocessor(
    hybrid: bool, dense_index: VectorStoreIndex, hybrid_index: VectorStoreIndex, cross_encoder: CrossEncoderReranker
) -> None:
    index = hybrid_index if hybrid else dense_index
    mode: dict[str, Any] = {"vector_store_query_mode": "hybrid"} if hybrid else {}
    postprocessor = RerankPostprocessor(cross_encoder, top_n=2)
    engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=6, node_postprocessors=[postprocessor], **mode)
    query = QUERIES[1]
    response = engine.query(query)

    retrieved = index.as_retriever(similarity_top_k=6, **mode).retrieve(query)
    assert len(retrieved) == 6
    assert pairs(response.source_nodes) == direct(cross_encoder, query, retrieved, 2)
    originals = {n.node.node_id: n for n in retrieved}
    for node in response.source_nodes:
        original = originals[node.node.node_id]
        assert node.node.ref_doc_id == original.node.ref_doc_id
        assert node.node.metadata["retrieval_score"] == original.score
    assert "retrieval_score" not in str(response)


async def test_vector_store_index_async_query_engine_uses_the_native_async_path(
    dense_index: VectorStoreIndex, cross_encoder: CrossEncoderReranker
) -> None:
    class AsyncOnly:
        def rerank(self, query: str, documents: Any, *, top_n: int | None = None) -> Any:
            raise AssertionError("the async query engine must not call the sync rerank")

        async def arerank(self, query: str, documents: Any, *, top_n: int | None = None) -> Any:
            return await cross_encoder.arerank(query, documents, top_n=top_n)

    engine = dense_index.as_query_engine(
        llm=MockLLM(), similarity_top_k=6, node_postprocessors=[RerankPostprocessor(AsyncOnly(), top_n=2)]
    )
    query = QUERIES[3]
    response = await engine.aquery(query)
    retrieved = dense_index.as_retriever(similarity_top_k=6).retrieve(query)
    assert [n.node.node_id for n in response.source_nodes] == [i for i, _ in direct(cross_encoder, query, retrieved, 2)]


# --- MilvusVectorStore interop ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("hybrid", [False, True], ids=["default", "hybrid"])
def test_vector_store_nodes_keep_their_ids_and_the_callers_nodes_are_untouched(
    hybrid: bool, dense_index: VectorStoreIndex, hybrid_index: VectorStoreIndex, cross_encoder: CrossEncoderReranker
) -> None:
    index = hybrid_index if hybrid else dense_index
    mode: dict[str, Any] = {"vector_store_query_mode": "hybrid"} if hybrid else {}
    retrieved = index.as_retriever(similarity_top_k=8, **mode).retrieve(QUERIES[0])
    before = [n.model_dump() for n in retrieved]
    out = RerankPostprocessor(cross_encoder).postprocess_nodes(retrieved, query_str=QUERIES[0])
    assert [n.model_dump() for n in retrieved] == before
    assert sorted(n.node.node_id for n in out) == sorted(n.node.node_id for n in retrieved)
    # MilvusVectorStore uses the node id as the Milvus primary key
    store = index.vector_store
    assert isinstance(store, MilvusVectorStore)
    rows = store.client.get(collection_name="li", ids=[n.node.node_id for n in out], output_fields=["id"])
    assert sorted(r["id"] for r in rows) == sorted(n.node.node_id for n in out)


def test_hits_of_two_searches_are_scored_once(
    hybrid_index: VectorStoreIndex, cross_encoder: CrossEncoderReranker
) -> None:
    class CountingReranker:
        def __init__(self) -> None:
            self.sizes: list[int] = []

        def rerank(self, query: str, documents: Any, *, top_n: int | None = None) -> Any:
            self.sizes.append(len(documents))
            return cross_encoder.rerank(query, documents, top_n=top_n)

        async def arerank(self, query: str, documents: Any, *, top_n: int | None = None) -> Any:
            return self.rerank(query, documents, top_n=top_n)

    query = QUERIES[2]
    # Fusing MilvusVectorStore's dense and hybrid results (its "sparse" mode sends drop_ratio_search=0.2,
    # which Milvus Lite 3.2.2 refuses on a BM25 field).
    dense = hybrid_index.as_retriever(similarity_top_k=5).retrieve(query)
    hybrid = hybrid_index.as_retriever(similarity_top_k=5, vector_store_query_mode="hybrid").retrieve(query)
    both = dense + hybrid
    unique_ids = list(dict.fromkeys(n.node.node_id for n in both))
    assert len(unique_ids) < len(both)  # the two legs overlap
    counting = CountingReranker()
    out = RerankPostprocessor(counting).postprocess_nodes(both, query_str=query)
    assert counting.sizes == [len(unique_ids)]
    assert sorted(n.node.node_id for n in out) == sorted(unique_ids)


def test_vector_store_on_a_foreign_collection_dedupes_by_the_primary_key_field(
    rag_db: str, embed_model: MiniLMEmbedding, cross_encoder: CrossEncoderReranker
) -> None:
    # Our collection, read by MilvusVectorStore: hits get random node ids; the key comes back as an output field.
    store = MilvusVectorStore(
        uri=rag_db,
        collection_name=COLLECTION,
        text_key="text",
        embedding_field="dense",
        dim=384,
        similarity_metric="COSINE",
        enable_sparse=True,
        sparse_embedding_field="sparse",
        output_fields=["id", "topic"],
        use_async_client=False,
    )
    index = VectorStoreIndex.from_vector_store(store, embed_model=embed_model)
    query = QUERIES[2]
    dense = index.as_retriever(similarity_top_k=5).retrieve(query)
    hybrid = index.as_retriever(similarity_top_k=5, vector_store_query_mode="hybrid").retrieve(query)
    both = dense + hybrid
    keys = list(dict.fromkeys(n.node.metadata["id"] for n in both))
    assert len(keys) < len(both)
    assert len({n.node.node_id for n in both}) == len(both)  # node ids do not reveal the duplicates

    out = RerankPostprocessor(cross_encoder, pk_key="id").postprocess_nodes(both, query_str=query)
    assert sorted(n.node.metadata["id"] for n in out) == sorted(keys)
    first = {}
    for n in both:
        first.setdefault(n.node.metadata["id"], n)
    assert pairs(out) == direct(cross_encoder, query, list(first.values()), len(keys))
    store.client.close()


@pytest.mark.parametrize(("hybrid", "mode"), [(False, "dense"), (True, "hybrid"), (True, "sparse")])
def test_rerank_retriever_reads_a_collection_written_by_milvus_vector_store(
    hybrid: bool,
    mode: str,
    dense_index: VectorStoreIndex,
    hybrid_index: VectorStoreIndex,
    embed_model: MiniLMEmbedding,
    cross_encoder: CrossEncoderReranker,
) -> None:
    index = hybrid_index if hybrid else dense_index
    store = index.vector_store
    assert isinstance(store, MilvusVectorStore)
    retriever = MilvusRerankRetriever(
        client=store.client, collection_name="li", mode=mode, embedding=embed_model, limit=6, reranker=cross_encoder
    )
    nodes = retriever.retrieve(QUERIES[3])
    assert len(nodes) == 6
    store_nodes = store.get_nodes(node_ids=[n.node.node_id for n in nodes])
    by_id = {n.node_id: n for n in store_nodes}
    for node in nodes:
        original = by_id[node.node.node_id]  # the node id is the primary key MilvusVectorStore wrote
        assert node.node.get_content(MetadataMode.NONE) == original.get_content(MetadataMode.NONE)
        assert node.node.ref_doc_id == original.ref_doc_id  # relationships restored from _node_content
        assert node.node.metadata["topic"] == original.metadata["topic"]
        assert "_node_content" not in node.node.metadata


# --- end to end with the HTTP reranker --------------------------------------------------------------------------------


@pytest.fixture
def rerank_server() -> Iterator[RerankTestServer]:
    with RerankTestServer(WordOverlapReranker(), service_time=0.01) as server:
        yield server


async def test_end_to_end_with_the_http_reranker(
    rerank_server: RerankTestServer, rag_db: str, embed_model: MiniLMEmbedding
) -> None:
    local = WordOverlapReranker()
    async with VLLMReranker(rerank_server.url) as http:
        retriever = MilvusRerankRetriever(
            client=rag_db, collection_name=COLLECTION, embedding=embed_model, limit=8, reranker=http, top_n=3
        )
        query = QUERIES[1]
        candidates = retriever.first_stage.retrieve(query)
        expected = direct(local, query, [candidate_to_node(c) for c in candidates], 3)
        sync = retriever.retrieve(query)
        async_ = await retriever.aretrieve(query)
        assert [n.node.node_id for n in sync] == [i for i, _ in expected]
        assert [n.score for n in sync] == pytest.approx([s for _, s in expected])
        assert pairs(async_) == pairs(sync)
        assert sync[0].node.node_id in {"p06", "p12"}  # word overlap finds the rivers
        sent = rerank_server.rerank_requests[-1]
        assert sent.n_documents == len(candidates)
        retriever.close()


async def test_fifty_concurrent_queries_through_the_http_reranker(
    rerank_server: RerankTestServer, rag_db: str, embed_model: MiniLMEmbedding
) -> None:
    async with VLLMReranker(rerank_server.url) as http:
        retriever = MilvusRerankRetriever(
            client=rag_db, collection_name=COLLECTION, embedding=embed_model, limit=6, reranker=http, top_n=2
        )
        queries = [f"{QUERIES[i % len(QUERIES)]} {PASSAGES[i % len(PASSAGES)][1].split()[0]}" for i in range(50)]
        expected = {q: pairs(retriever.retrieve(q)) for q in set(queries)}
        results = await asyncio.gather(*(retriever.aretrieve(q) for q in queries))
        for query, nodes in zip(queries, results, strict=True):
            assert pairs(nodes) == expected[query]
        assert len({tuple(v) for v in expected.values()}) > 3
        assert rerank_server.max_in_flight() > 1  # the async path really overlaps requests
        retriever.close()
