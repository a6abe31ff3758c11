"""FallbackReranker through the LangChain adapter: ``scored_by`` in the metadata, one reranker per call, the rule.

The compressor and the retriever, sync and async; the first reranker fails as a service that is
down (it falls through) or as a request the server refuses (it raises, passthrough or not).
"""

from __future__ import annotations

import pytest
from helpers import FailingReranker, ListRetriever, OverlapReranker, RefusingReranker
from langchain_core.documents import Document

from langchain_milvus_rerank import MilvusRerankRetriever, RerankCompressor
from milvus_rerank import Candidate, FallbackReranker, RerankHTTPError, RerankResult

QUERY = "milvus hybrid search with rerank"
TEXTS = ["bananas are yellow", "milvus supports hybrid search", "rerank after milvus hybrid search", "search engines"]
CANDIDATES = [Candidate(id=i + 1, text=text, score=1.0 - i / 10) for i, text in enumerate(TEXTS)]


def documents() -> list[Document]:
    return [Document(id=str(c.id), page_content=c.text, metadata={"pk": c.id}) for c in CANDIDATES]


async def compress(compressor: RerankCompressor, use_async: bool) -> list[Document]:
    if use_async:
        return list(await compressor.acompress_documents(documents(), QUERY))
    return list(compressor.compress_documents(documents(), QUERY))


def expected(top_n: int) -> list[tuple[str, float]]:
    best = OverlapReranker().rerank(QUERY, TEXTS, top_n=top_n)
    return [(TEXTS[r.index], r.score) for r in best]


def scored(out: list[Document]) -> list[tuple[str, float]]:
    return [(d.page_content, d.metadata["relevance_score"]) for d in out]


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_the_compressor_names_the_reranker_that_scored_the_whole_call(use_async: bool) -> None:
    second = OverlapReranker()
    compressor = RerankCompressor(FallbackReranker([FailingReranker(), second], names=["fleet", "local"]), top_n=3)
    docs = documents()
    out = await compressor.acompress_documents(docs, QUERY) if use_async else compressor.compress_documents(docs, QUERY)
    assert scored(out) == expected(3)
    assert [d.metadata["scored_by"] for d in out] == ["local"] * 3
    assert len(second.calls) == 1
    assert all("scored_by" not in d.metadata for d in docs)  # the caller's documents are untouched


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_the_retriever_names_the_first_reranker_when_it_answers(use_async: bool) -> None:
    fallback = FallbackReranker([OverlapReranker(), FailingReranker()], names=["fleet", "local"])
    retriever = MilvusRerankRetriever(retriever=ListRetriever(CANDIDATES), reranker=fallback, top_n=2)
    out = await retriever.ainvoke(QUERY) if use_async else retriever.invoke(QUERY)
    assert scored(out) == expected(2)
    assert [d.metadata["scored_by"] for d in out] == ["fleet", "fleet"]


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_refused_request_raises_even_with_passthrough(use_async: bool) -> None:
    second = OverlapReranker()
    compressor = RerankCompressor(FallbackReranker([RefusingReranker(), second]), on_error="passthrough")
    with pytest.raises(RerankHTTPError, match="HTTP 400"):
        await compress(compressor, use_async)
    assert second.calls == []


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_passthrough_is_the_last_step_and_leaves_no_scorer(use_async: bool) -> None:
    retriever = MilvusRerankRetriever(
        retriever=ListRetriever(CANDIDATES),
        reranker=FallbackReranker([FailingReranker(), FailingReranker()]),
        on_error="passthrough",
        top_n=3,
    )
    out = await retriever.ainvoke(QUERY) if use_async else retriever.invoke(QUERY)
    assert [d.metadata["pk"] for d in out] == [1, 2, 3]  # first-stage order
    assert not any("scored_by" in d.metadata or "relevance_score" in d.metadata for d in out)


def test_a_plain_reranker_writes_no_scorer() -> None:
    out = RerankCompressor(OverlapReranker(), top_n=2).compress_documents(documents(), QUERY)
    assert not any("scored_by" in d.metadata for d in out)
    assert all(isinstance(r, RerankResult) for r in OverlapReranker().rerank(QUERY, TEXTS))
