"""RerankCompressor inside LangChain's own machinery and on documents from the langchain-milvus vector store.

- ``langchain_classic.retrievers.ContextualCompressionRetriever`` (sync, async, nested callbacks);
- ``langchain_classic.retrievers.document_compressors.DocumentCompressorPipeline`` after a transformer;
- documents produced by ``langchain_milvus.Milvus`` on Milvus Lite (primary key in ``metadata["pk"]``).

About langchain-milvus and Milvus Lite: langchain-milvus <= 0.3.3 opens an ORM ``Collection`` under
the alias ``client._using`` of its ``MilvusClient``. pymilvus 2.6.7 registers that alias (checked:
these tests pass on it with Milvus Lite 3.2.2 and nothing registered here); pymilvus 2.6.10+ (a
shared ConnectionManager; 2.6.17 here) no longer does, so ``Milvus(...)`` fails with "should
create connection first" (2.6.8 and 2.6.9 fail earlier on Lite file paths: "database 'tmp' does
not exist"). langchain-milvus 0.4.0 fixes it but needs pymilvus >= 3 (checked: 0.4.0 + pymilvus
3.0.2 + Milvus Lite 3.2.2 works), which llama-index-vector-stores-milvus 1.2 (pymilvus < 3) excludes
from this environment. The fixture below registers the alias itself, through pymilvus's public
``connections.connect``, only when the installed pair needs it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from helpers import OverlapReranker
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import BaseDocumentTransformer, Document
from langchain_core.embeddings import Embeddings

from langchain_milvus_rerank import RerankCompressor
from milvus_rerank import CrossEncoderReranker

langchain_classic = pytest.importorskip("langchain_classic")
langchain_milvus = pytest.importorskip("langchain_milvus")

from langchain_classic.retrievers import ContextualCompressionRetriever  # noqa: E402
from langchain_classic.retrievers.document_compressors import DocumentCompressorPipeline  # noqa: E402

CORPUS = {
    "milvus": "Milvus is an open-source vector database built for similarity search at scale.",
    "lite": "Milvus Lite stores a whole vector database collection in one local file.",
    "bm25": "BM25 scores documents by term frequency and inverse document frequency of the query words.",
    "hybrid": "Hybrid search runs a dense and a sparse search and fuses the two result lists.",
    "rerank": "A cross-encoder reranker reads the query and a passage together and scores their relevance.",
    "hnsw": "HNSW builds a layered proximity graph so approximate nearest neighbour search is fast.",
    "embed": "Sentence embeddings map a text to a dense vector so similar meanings lie close together.",
    "bread": "Sourdough bread rises slowly because wild yeast ferments the dough for many hours.",
    "tea": "Green tea is steamed or pan-fired soon after picking, which keeps its leaves from oxidising.",
    "moon": "The Moon always shows the same face to Earth because its rotation is tidally locked.",
}
COLLECTION = "interop"
QUESTION = "which vector database runs from a local file?"


class Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, str | None, UUID, UUID | None]] = []

    def on_retriever_start(self, serialized: Any, query: str, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append(("retriever_start", kwargs.get("name"), run_id, kwargs.get("parent_run_id")))

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append(("chain_start", kwargs.get("name"), run_id, kwargs.get("parent_run_id")))

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self.events.append(("chain_end", None, run_id, kwargs.get("parent_run_id")))


class DropShort(BaseDocumentTransformer):
    """A plain document transformer: drops documents shorter than ``min_chars``."""

    def __init__(self, min_chars: int) -> None:
        self.min_chars = min_chars

    def transform_documents(self, documents: Sequence[Document], **kwargs: Any) -> Sequence[Document]:
        return [d for d in documents if len(d.page_content) >= self.min_chars]


def register_orm_alias_if_needed(uri: str) -> Any:
    """Open a MilvusClient on ``uri`` and make sure langchain-milvus <= 0.3 can reach it (module docstring)."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri)
    try:
        from pymilvus import connections
    except ImportError:  # pymilvus without the ORM: langchain-milvus >= 0.4 needs no alias
        return client
    if not connections.has_connection(client._using):
        connections.connect(alias=client._using, uri=uri)
    return client


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory: pytest.TempPathFactory, embeddings: Embeddings) -> Iterator[str]:
    uri = str(tmp_path_factory.mktemp("lc-milvus-store") / "store.db")
    client = register_orm_alias_if_needed(uri)
    langchain_milvus.Milvus.from_texts(
        list(CORPUS.values()),
        embeddings,
        metadatas=[{"key": key} for key in CORPUS],
        ids=list(CORPUS),
        collection_name=COLLECTION,
        connection_args={"uri": uri},
    )
    yield uri
    client.close()


@pytest.fixture
def vector_store(store_uri: str, embeddings: Embeddings) -> Any:
    # One store object per test: its AsyncMilvusClient binds to the event loop of the test that first uses it.
    return langchain_milvus.Milvus(embeddings, collection_name=COLLECTION, connection_args={"uri": store_uri})


@pytest.fixture(scope="module")
def reranker(tiny_model: Path) -> CrossEncoderReranker:
    return CrossEncoderReranker(tiny_model, device="cpu")


def test_langchain_milvus_documents_carry_the_primary_key(vector_store: Any) -> None:
    documents = vector_store.similarity_search(QUESTION, k=4)
    assert len(documents) == 4
    assert all(d.metadata["pk"] == d.metadata["key"] for d in documents)


async def test_inside_contextual_compression_retriever(vector_store: Any, reranker: CrossEncoderReranker) -> None:
    base = vector_store.as_retriever(search_kwargs={"k": 8})
    compressor = RerankCompressor(reranker, top_n=3)
    retriever = ContextualCompressionRetriever(base_compressor=compressor, base_retriever=base)

    first_stage = base.invoke(QUESTION)
    direct = compressor.compress_documents(first_stage, QUESTION)
    assert len(direct) == 3
    scores = {r.index: r.score for r in reranker.rerank(QUESTION, [d.page_content for d in first_stage])}
    assert [d.metadata["relevance_score"] for d in direct] == sorted(scores.values(), reverse=True)[:3]

    assert retriever.invoke(QUESTION) == direct
    assert await retriever.ainvoke(QUESTION) == direct
    assert [d.metadata["pk"] for d in direct] == [d.metadata["key"] for d in direct]


@pytest.mark.parametrize("use_async", [False, True])
async def test_contextual_compression_retriever_callbacks_nest_the_rerank(
    use_async: bool, vector_store: Any, reranker: CrossEncoderReranker
) -> None:
    retriever = ContextualCompressionRetriever(
        base_compressor=RerankCompressor(reranker, top_n=2), base_retriever=vector_store.as_retriever()
    )
    recorder = Recorder()
    config: Any = {"callbacks": [recorder]}
    if use_async:
        await retriever.ainvoke(QUESTION, config=config)
    else:
        retriever.invoke(QUESTION, config=config)
    starts = {name: (run_id, parent) for kind, name, run_id, parent in recorder.events if kind.endswith("start")}
    assert "RerankCompressor" in starts
    outer_run = starts["ContextualCompressionRetriever"][0]
    assert starts["RerankCompressor"][1] == outer_run
    rerank_run = starts["RerankCompressor"][0]
    assert ("chain_end", None, rerank_run, outer_run) in recorder.events


def test_duplicates_from_two_searches_are_scored_once(vector_store: Any) -> None:
    first = vector_store.similarity_search(QUESTION, k=5)
    second = vector_store.similarity_search("where is a vector collection stored?", k=5)
    overlap = {d.metadata["pk"] for d in first} & {d.metadata["pk"] for d in second}
    assert overlap, "the two searches must share documents for this test to mean anything"

    counting = OverlapReranker()
    out = RerankCompressor(counting).compress_documents(first + second, QUESTION)
    unique = {d.metadata["pk"] for d in first + second}
    assert len(counting.calls[0][1]) == len(unique)
    assert sorted(d.metadata["pk"] for d in out) == sorted(unique)


async def test_inside_document_compressor_pipeline(vector_store: Any, reranker: CrossEncoderReranker) -> None:
    documents = vector_store.similarity_search(QUESTION, k=8)
    transformer = DropShort(min_chars=75)
    kept = transformer.transform_documents(documents)
    assert 0 < len(kept) < len(documents), "the transformer must drop some documents"

    compressor = RerankCompressor(reranker, top_n=2)
    pipeline = DocumentCompressorPipeline(transformers=[transformer, compressor])
    expected = compressor.compress_documents(kept, QUESTION)

    recorder = Recorder()
    assert pipeline.compress_documents(documents, QUESTION, callbacks=[recorder]) == expected
    assert [name for kind, name, _, _ in recorder.events if kind == "chain_start"] == ["RerankCompressor"]
    assert await pipeline.acompress_documents(documents, QUESTION) == expected
    assert all(len(d.page_content) >= 75 for d in expected)
