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
from helpers import BAD_SELECTION_OPTIONS, FailingReranker, ListRetriever, OverlapReranker
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough
from pymilvus import MilvusClient

from langchain_milvus_rerank import MilvusRerankRetriever, RerankCompressor
from milvus_rerank import Candidate, CrossEncoderReranker, MilvusRetriever, RerankConnectionError, VLLMReranker
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


# ---------------------------------------------------------------- per-call options (langchain-tests' retriever checks)


def test_standard_top_n_in_the_constructor(milvus_uri: str, embeddings: Embeddings) -> None:
    # What langchain-tests' RetrieversIntegrationTests.test_k_constructor_param checks, with top_n as the k.
    for top_n in (3, 1):
        retriever = MilvusRerankRetriever(
            client=milvus_uri, collection_name=COLLECTION, embedding=embeddings, reranker=OverlapReranker(), top_n=top_n
        )
        documents = retriever.invoke(QUESTIONS[0])
        assert len(documents) == top_n
        assert all(isinstance(d, Document) for d in documents)


async def test_standard_top_n_per_call(milvus_uri: str, embeddings: Embeddings) -> None:
    # What test_invoke_with_k_kwarg checks: invoke(query, top_n=...) returns that many documents, on both paths.
    retriever = MilvusRerankRetriever(
        client=milvus_uri, collection_name=COLLECTION, embedding=embeddings, reranker=OverlapReranker(), top_n=5
    )
    assert len(retriever.invoke(QUESTIONS[1], top_n=1)) == 1
    assert len(retriever.invoke(QUESTIONS[1], top_n=3)) == 3
    assert len(await retriever.ainvoke(QUESTIONS[1], top_n=2)) == 2
    assert [len(docs) for docs in retriever.batch(QUESTIONS[:2], top_n=1)] == [1, 1]
    assert [len(docs) for docs in await retriever.abatch(QUESTIONS[:2], top_n=4)] == [4, 4]
    full = retriever.invoke(QUESTIONS[1])
    assert len(full) == 5  # a per-call option does not stick
    assert retriever.invoke(QUESTIONS[1], top_n=3) == full[:3]


CANDIDATES = [
    Candidate(id=7, text="bread rises as yeast ferments the dough", score=0.9, metadata={"topic": "other"}),
    Candidate(id="7", text="a text about dough", score=0.8, metadata={"topic": "other"}),
    Candidate(id=3, text="milvus stores dough vectors", score=0.7, metadata={"topic": "tech"}),
    Candidate(id=7, text="bread rises as yeast ferments the dough", score=0.6, metadata={"topic": "other"}),
    Candidate(id=5, text="tea leaves", score=0.5, metadata={"topic": "other", "relevance_score": 9.0}),
]
BREAD = "how does bread dough rise"


def test_candidates_are_reranked_once_and_become_documents_at_the_end() -> None:
    reranker = OverlapReranker()
    retriever = MilvusRerankRetriever(retriever=ListRetriever(CANDIDATES), reranker=reranker)
    documents = retriever.invoke(BREAD)
    ((_, sent, _),) = reranker.calls
    assert sent == [c.text for c in CANDIDATES[:3]] + ["tea leaves"]  # the second 7 is a duplicate; "7" is not
    direct = OverlapReranker().rerank(BREAD, sent)
    assert [r.index for r in direct] == [0, 1, 2, 3]
    assert [(d.id, d.metadata["pk"]) for d in documents] == [("7", 7), ("7", "7"), ("3", 3), ("5", 5)]
    assert [d.metadata["relevance_score"] for d in documents] == [r.score for r in direct]
    assert [d.metadata["retrieval_score"] for d in documents] == [0.9, 0.8, 0.7, 0.5]
    assert [d.metadata["retrieval_rank"] for d in documents] == [1, 2, 3, 5]
    assert documents[0].metadata["topic"] == "other"
    assert all(c.rerank_score is None for c in CANDIDATES)  # the first stage's candidates are untouched


def test_per_call_options_reach_their_stage_and_unknown_ones_are_named() -> None:
    first_stage = ListRetriever(CANDIDATES)
    reranker = OverlapReranker()
    retriever = MilvusRerankRetriever(retriever=first_stage, reranker=reranker, top_n=3)
    recorder = ChainRecorder()
    documents = retriever.invoke(
        BREAD, top_n=1, limit=3, filter='topic == "other"', score_threshold=0.0, config={"callbacks": [recorder]}
    )
    assert [d.metadata["pk"] for d in documents] == [7]
    assert first_stage.calls == [(BREAD, {"limit": 3, "filter": 'topic == "other"'})]
    assert recorder.metadata[0]["top_n"] == 1  # the trace shows the settings of this call
    with pytest.raises(TypeError, match=r"unknown per-call options 'k', 'search_kwargs'"):
        retriever.invoke(BREAD, k=2, search_kwargs={})
    assert len(first_stage.calls) == 1  # refused before the first stage ran
    with pytest.raises(TypeError, match="unexpected keyword argument 'limit'"):
        # a first stage that takes no options says so itself
        MilvusRerankRetriever(retriever=PlainStage(), reranker=reranker).invoke(BREAD, limit=2)
    assert len(MilvusRerankRetriever(retriever=PlainStage(), reranker=reranker).invoke(BREAD)) == 1


@pytest.mark.parametrize(("option", "error", "match"), [o for o in BAD_SELECTION_OPTIONS if "on_error" not in o[0]])
async def test_per_call_selection_is_checked_as_at_construction(
    option: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as at_construction:
        MilvusRerankRetriever(retriever=ListRetriever(CANDIDATES), reranker=OverlapReranker(), **option)
    first_stage = ListRetriever(CANDIDATES)
    retriever = MilvusRerankRetriever(retriever=first_stage, reranker=OverlapReranker())
    with pytest.raises(error) as sync:
        retriever.invoke(BREAD, **option)
    with pytest.raises(error) as async_:
        await retriever.ainvoke(BREAD, **option)
    assert str(sync.value) == str(async_.value) == str(at_construction.value)
    assert first_stage.calls == []


def test_per_call_first_stage_options_are_checked_by_milvus_retriever(milvus_uri: str, embeddings: Embeddings) -> None:
    retriever = MilvusRerankRetriever(
        client=milvus_uri, collection_name=COLLECTION, embedding=embeddings, reranker=OverlapReranker()
    )
    with pytest.raises(ValueError, match="limit must be an int between 1 and 16384, got 0"):
        retriever.invoke(QUESTIONS[0], limit=0)
    with pytest.raises(TypeError, match="filter must be a str expression, got int"):
        retriever.invoke(QUESTIONS[0], filter=3)


async def test_document_template_and_passthrough_through_the_retriever() -> None:
    reranker = OverlapReranker()
    retriever = MilvusRerankRetriever(
        retriever=ListRetriever(CANDIDATES), reranker=reranker, document_template="{topic} #{pk}: {page_content}"
    )
    documents = await retriever.ainvoke(BREAD)
    ((_, sent, _),) = reranker.calls
    assert sent[0] == "other #7: bread rises as yeast ferments the dough"
    assert documents[0].page_content == "bread rises as yeast ferments the dough"  # the returned text is the text
    with pytest.raises(ValueError, match=r"the candidate with primary key 7 has no metadata field 'title'"):
        MilvusRerankRetriever(
            retriever=ListRetriever(CANDIDATES), reranker=reranker, document_template="{title}"
        ).invoke(BREAD)

    down = MilvusRerankRetriever(
        retriever=ListRetriever(CANDIDATES), reranker=FailingReranker(), on_error="passthrough"
    )
    for unscored in (down.invoke(BREAD, top_n=3), await down.ainvoke(BREAD, top_n=3)):
        assert [d.metadata["pk"] for d in unscored] == [7, "7", 3]  # first-stage order
        assert not any("relevance_score" in d.metadata for d in unscored)
    unscored_tea = down.invoke(BREAD)[-1]
    assert unscored_tea.metadata["pk"] == 5
    assert "relevance_score" not in unscored_tea.metadata  # the row's own field of that name would pass for a score


async def test_callbacks_fire_on_every_path_including_errors_and_empty_results() -> None:
    for use_async in (False, True):
        for first_stage, reranker, error in (
            (ListRetriever(CANDIDATES), OverlapReranker(), None),
            (ListRetriever([]), OverlapReranker(), None),
            (ListRetriever(CANDIDATES), FailingReranker(), RerankConnectionError),
        ):
            recorder = ChainRecorder()
            retriever = MilvusRerankRetriever(retriever=first_stage, reranker=reranker)
            config: Any = {"callbacks": [recorder]}
            call = retriever.ainvoke(BREAD, config=config) if use_async else None
            if error is not None:
                with pytest.raises(error):
                    await call if call is not None else retriever.invoke(BREAD, config=config)
                assert recorder.kinds == ["start", "error"]
                continue
            documents = await call if call is not None else retriever.invoke(BREAD, config=config)
            assert recorder.kinds == ["start", "end"]
            assert recorder.outputs == [{"documents": documents}]


class PlainStage:
    """A first stage that takes no per-call options."""

    def retrieve(self, query: str) -> list[Candidate]:
        return [Candidate(id=1, text="bread")]

    async def aretrieve(self, query: str) -> list[Candidate]:
        return self.retrieve(query)


class ChainRecorder(BaseCallbackHandler):
    """The RerankCompressor chain runs: their kinds, metadata and outputs."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.metadata: list[dict[str, Any]] = []
        self.outputs: list[Any] = []

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        assert kwargs.get("name") == "RerankCompressor"
        self.kinds.append("start")
        self.metadata.append(kwargs.get("metadata") or {})

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.kinds.append("end")
        self.outputs.append(outputs)

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self.kinds.append("error")
