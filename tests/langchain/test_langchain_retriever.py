"""MilvusRerankRetriever end to end on Milvus Lite: dense / sparse / hybrid, local and HTTP rerankers, LCEL, batch.

Real parts only: a Milvus Lite database in a temp dir, the real all-MiniLM-L6-v2 embedding behind
a LangChain ``Embeddings``, the tiny generated cross-encoder, and the loopback rerank test server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough
from pymilvus import MilvusClient

from langchain_milvus_rerank import MilvusRerankRetriever, RerankCompressor
from milvus_rerank import CrossEncoderReranker, MilvusRetriever, VLLMReranker
from milvus_rerank.milvus.collection import create_rag_collection, ingest
from milvus_rerank.testing.server import RerankTestServer

COLLECTION = "lc_docs"

CORPUS = [
    ("milvus", "Milvus is an open-source vector database built for similarity search at scale."),
    ("bm25", "BM25 scores documents by term frequency and inverse document frequency of the query words."),
    ("hybrid", "Hybrid search runs a dense and a sparse search and fuses the two result lists with RRF."),
    ("rerank", "A cross-encoder reranker reads the query and a passage together and scores their relevance."),
    ("hnsw", "HNSW builds a layered proximity graph so approximate nearest neighbour search is fast."),
    ("rrf", "Reciprocal rank fusion adds one over k plus rank for every list a document appears in."),
    ("embed", "Sentence embeddings map a text to a dense vector so similar meanings lie close together."),
    ("vllm", "vLLM serves language models and cross-encoders behind an OpenAI-compatible HTTP API."),
    ("chunk", "Splitting long documents into overlapping chunks keeps each passage within the model limit."),
    ("lite", "Milvus Lite stores a whole collection in a single local file for demos and tests."),
    ("bread", "Sourdough bread rises slowly because wild yeast ferments the dough for many hours."),
    ("tea", "Green tea is steamed or pan-fired soon after picking, which keeps its leaves from oxidising."),
    ("bike", "A bicycle chain wears out faster when it is not cleaned and oiled after riding in rain."),
    ("moon", "The Moon always shows the same face to Earth because its rotation is tidally locked."),
    ("piano", "A piano has eighty-eight keys and each hammer strikes one to three strings."),
    ("rain", "Rain forms when water droplets in clouds merge until they are heavy enough to fall."),
]
TOPICS = {doc_id: ("tech" if i < 10 else "other") for i, (doc_id, _) in enumerate(CORPUS)}

QUESTIONS = [
    "what is a vector database?",
    "how does BM25 score documents?",
    "how are dense and sparse results fused?",
    "what does a cross-encoder do?",
    "why does sourdough rise slowly?",
]


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, str | None, UUID, UUID | None]] = []
        self.names: dict[UUID, str | None] = {}

    def on_retriever_start(self, serialized: Any, query: str, *, run_id: UUID, **kwargs: Any) -> None:
        self.names[run_id] = kwargs.get("name")
        self.events.append(("retriever_start", kwargs.get("name"), run_id, kwargs.get("parent_run_id")))

    def on_retriever_end(self, documents: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append(("retriever_end", self.names.get(run_id), run_id, kwargs.get("parent_run_id")))

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.names[run_id] = kwargs.get("name")
        self.events.append(("chain_start", kwargs.get("name"), run_id, kwargs.get("parent_run_id")))

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append(("chain_end", self.names.get(run_id), run_id, kwargs.get("parent_run_id")))


@pytest.fixture(scope="module")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory, embeddings: Embeddings) -> Iterator[str]:
    uri = str(tmp_path_factory.mktemp("lc-milvus") / "rag.db")
    client = MilvusClient(uri)
    create_rag_collection(client, COLLECTION, dim=384)
    ingest(
        client,
        COLLECTION,
        [(doc_id, text, {"topic": TOPICS[doc_id]}) for doc_id, text in CORPUS],
        embedding=embeddings,
        show_progress=False,
    )
    yield uri
    client.close()


@pytest.fixture(scope="module")
def local_reranker(tiny_model: Path) -> CrossEncoderReranker:
    return CrossEncoderReranker(tiny_model, device="cpu")


def expected(
    uri: str, embeddings: Embeddings, reranker: Any, query: str, *, mode: str, top_n: int | None, limit: int = 8
) -> list[tuple[str, float, float]]:
    """(pk, retrieval score, rerank score) best first, from the core retriever and the reranker called directly."""
    with MilvusRetriever(uri, COLLECTION, mode=mode, embedding=embeddings, limit=limit) as first_stage:  # type: ignore[arg-type]
        candidates = first_stage.retrieve(query)
    results = reranker.rerank(query, [c.text for c in candidates], top_n=top_n)
    return [(str(candidates[r.index].id), candidates[r.index].score, r.score) for r in results]


def summary(documents: list[Document]) -> list[tuple[str, float, float]]:
    return [(d.metadata["pk"], d.metadata["retrieval_score"], d.metadata["relevance_score"]) for d in documents]


@pytest.mark.parametrize("mode", ["dense", "sparse", "hybrid"])
def test_each_mode_retrieves_then_reranks(
    mode: str, milvus_uri: str, embeddings: Embeddings, local_reranker: CrossEncoderReranker
) -> None:
    retriever = MilvusRerankRetriever(
        client=milvus_uri,
        collection_name=COLLECTION,
        mode=mode,
        embedding=embeddings if mode != "sparse" else None,
        limit=8,
        reranker=local_reranker,
        top_n=3,
    )
    for question in QUESTIONS[:3]:
        documents = retriever.invoke(question)
        assert summary(documents) == expected(milvus_uri, embeddings, local_reranker, question, mode=mode, top_n=3)
        for document in documents:
            assert document.id == document.metadata["pk"]
            assert document.page_content == dict(CORPUS)[document.metadata["pk"]]
            assert document.metadata["topic"] == TOPICS[document.metadata["pk"]]
            assert isinstance(document.metadata["retrieval_rank"], int)
            assert type(document.metadata["relevance_score"]) is float


async def test_ainvoke_batch_and_abatch_equal_invoke(
    milvus_uri: str, embeddings: Embeddings, local_reranker: CrossEncoderReranker
) -> None:
    retriever = MilvusRerankRetriever(
        client=milvus_uri, collection_name=COLLECTION, embedding=embeddings, limit=8, reranker=local_reranker, top_n=4
    )
    sequential = [retriever.invoke(q) for q in QUESTIONS]
    assert [await retriever.ainvoke(q) for q in QUESTIONS] == sequential
    assert retriever.batch(QUESTIONS) == sequential
    assert await retriever.abatch(QUESTIONS) == sequential
    assert len({tuple(d.id for d in docs) for docs in sequential}) > 1, "queries must differ in their results"


def test_built_from_its_two_stages(
    milvus_uri: str, embeddings: Embeddings, local_reranker: CrossEncoderReranker
) -> None:
    with MilvusRetriever(milvus_uri, COLLECTION, mode="hybrid", embedding=embeddings, limit=8) as first_stage:
        retriever = MilvusRerankRetriever(retriever=first_stage, compressor=RerankCompressor(local_reranker, top_n=2))
        documents = retriever.invoke(QUESTIONS[1])
    assert summary(documents) == expected(milvus_uri, embeddings, local_reranker, QUESTIONS[1], mode="hybrid", top_n=2)


def test_invoke_keyword_arguments_reach_the_first_stage(
    milvus_uri: str, embeddings: Embeddings, local_reranker: CrossEncoderReranker
) -> None:
    retriever = MilvusRerankRetriever(
        client=milvus_uri, collection_name=COLLECTION, embedding=embeddings, limit=8, reranker=local_reranker
    )
    everything = retriever.invoke("how does bread rise?")
    assert {d.metadata["topic"] for d in everything} == {"tech", "other"}
    only_other = retriever.invoke("how does bread rise?", filter='topic == "other"')
    assert only_other
    assert {d.metadata["topic"] for d in only_other} == {"other"}
    assert len(retriever.invoke("how does bread rise?", limit=2)) == 2


def test_lcel_composition(milvus_uri: str, embeddings: Embeddings, local_reranker: CrossEncoderReranker) -> None:
    retriever = MilvusRerankRetriever(
        client=milvus_uri, collection_name=COLLECTION, embedding=embeddings, limit=8, reranker=local_reranker, top_n=2
    )

    def format_docs(documents: list[Document]) -> str:
        return "\n".join(f"[{d.metadata['pk']}] {d.page_content}" for d in documents)

    chain = RunnableParallel(context=retriever | RunnableLambda(format_docs), question=RunnablePassthrough())
    question = QUESTIONS[0]
    out = chain.invoke(question)
    assert out["question"] == question
    assert out["context"] == format_docs(retriever.invoke(question))
    assert out["context"].count("\n") == 1


async def test_callbacks_see_the_retriever_and_the_nested_rerank(
    milvus_uri: str, embeddings: Embeddings, local_reranker: CrossEncoderReranker
) -> None:
    retriever = MilvusRerankRetriever(
        client=milvus_uri, collection_name=COLLECTION, embedding=embeddings, reranker=local_reranker, top_n=2
    )
    for use_async in (False, True):
        recorder = Recorder()
        config: Any = {"callbacks": [recorder]}
        if use_async:
            await retriever.ainvoke(QUESTIONS[0], config=config)
        else:
            retriever.invoke(QUESTIONS[0], config=config)
        kinds = [(kind, name) for kind, name, _, _ in recorder.events]
        assert kinds == [
            ("retriever_start", "MilvusRerankRetriever"),
            ("chain_start", "RerankCompressor"),
            ("chain_end", "RerankCompressor"),
            ("retriever_end", "MilvusRerankRetriever"),
        ]
        retriever_run = recorder.events[0][2]
        assert recorder.events[1][3] == retriever_run  # the rerank is a child of the retriever run


def test_http_reranker_end_to_end_matches_local(
    milvus_uri: str, embeddings: Embeddings, local_reranker: CrossEncoderReranker
) -> None:
    with RerankTestServer(local_reranker) as server:
        retriever = MilvusRerankRetriever(
            client=milvus_uri,
            collection_name=COLLECTION,
            embedding=embeddings,
            limit=8,
            reranker=VLLMReranker(server.url),
            top_n=3,
        )
        for question in QUESTIONS[:3]:
            documents = retriever.invoke(question)
            assert summary(documents) == expected(
                milvus_uri, embeddings, local_reranker, question, mode="hybrid", top_n=3
            )
        assert len(server.rerank_requests) == 3


async def test_fifty_concurrent_queries_over_http_do_not_cross_talk(
    milvus_uri: str, embeddings: Embeddings, local_reranker: CrossEncoderReranker
) -> None:
    words = [text.split()[i % 4] for i, (_, text) in enumerate(CORPUS)]
    queries = [f"{CORPUS[i % len(CORPUS)][1][:40]} {words[(3 * i) % len(words)]} #{i}" for i in range(50)]
    with RerankTestServer(local_reranker, service_time=0.02) as server:
        retriever = MilvusRerankRetriever(
            client=milvus_uri,
            collection_name=COLLECTION,
            embedding=embeddings,
            limit=6,
            reranker=VLLMReranker(server.url),
            top_n=3,
        )
        concurrent = await retriever.abatch(queries)
        assert server.max_in_flight() > 1, "the queries must really overlap on the server"
    assert len(concurrent) == 50
    for query, documents in zip(queries, concurrent, strict=True):
        want = expected(milvus_uri, embeddings, local_reranker, query, mode="hybrid", top_n=3, limit=6)
        assert summary(documents) == want
    assert len({tuple(d.id for d in docs) for docs in concurrent}) > 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "reranker"),
        ({"reranker": "R"}, "client"),
        ({"reranker": "R", "client": "U"}, "collection_name"),
        ({"reranker": "R", "retriever": "F", "client": "U", "collection_name": "c"}, "not both"),
        ({"compressor": "C", "reranker": "R", "retriever": "F"}, "not both"),
        ({"compressor": "C", "top_n": 3, "retriever": "F"}, "not both"),
    ],
)
def test_construction_needs_one_of_each_stage(
    kwargs: dict[str, Any], match: str, milvus_uri: str, local_reranker: CrossEncoderReranker
) -> None:
    values = {"R": local_reranker, "U": milvus_uri, "C": RerankCompressor(local_reranker), "F": object()}
    options = {key: values.get(value, value) if isinstance(value, str) else value for key, value in kwargs.items()}
    with pytest.raises(ValueError, match=match):
        MilvusRerankRetriever(**options)


def test_construction_type_and_collection_errors(milvus_uri: str, local_reranker: CrossEncoderReranker) -> None:
    from milvus_rerank import CollectionNotFoundError

    with pytest.raises(TypeError, match="retrieve"):
        MilvusRerankRetriever(retriever=object(), reranker=local_reranker)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RerankCompressor"):
        MilvusRerankRetriever(retriever=object(), compressor=local_reranker)  # type: ignore[arg-type]
    with pytest.raises(CollectionNotFoundError):
        MilvusRerankRetriever(client=milvus_uri, collection_name="missing", mode="sparse", reranker=local_reranker)
    with pytest.raises(ValueError, match="top_n"):
        MilvusRerankRetriever(
            client=milvus_uri, collection_name=COLLECTION, mode="sparse", reranker=local_reranker, top_n=0
        )
