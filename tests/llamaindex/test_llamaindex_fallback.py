"""FallbackReranker through the LlamaIndex adapter: ``scored_by`` in the node metadata (hidden from the LLM).

The postprocessor and the retriever, sync and async; the first reranker fails as a service that
is down (it falls through) or as a request the server refuses (it raises, passthrough or not).
"""

from __future__ import annotations

import pytest
from helpers import FailingReranker, ListRetriever, OverlapReranker, RefusingReranker
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode

from llamaindex_milvus_rerank import MilvusRerankRetriever, RerankPostprocessor
from milvus_rerank import Candidate, FallbackReranker, RerankHTTPError

QUERY = "how does the reranker score a passage"
TEXTS = [
    "milvus stores vectors for similarity search",
    "a cross encoder reranks retrieved passages",
    "bananas are yellow",
    "the reranker scores each passage against the query",
]
CANDIDATES = [Candidate(id=i + 1, text=text, score=1.0 - i / 10) for i, text in enumerate(TEXTS)]


def nodes() -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(id_=f"node-{i}", text=text), score=1.0 - i / 10) for i, text in enumerate(TEXTS)
    ]


async def postprocess(postprocessor: RerankPostprocessor, use_async: bool) -> list[NodeWithScore]:
    if use_async:
        return await postprocessor.apostprocess_nodes(nodes(), query_str=QUERY)
    return postprocessor.postprocess_nodes(nodes(), query_str=QUERY)


def expected(top_n: int) -> list[tuple[str, float]]:
    return [(TEXTS[r.index], r.score) for r in OverlapReranker().rerank(QUERY, TEXTS, top_n=top_n)]


def scored(out: list[NodeWithScore]) -> list[tuple[str, float | None]]:
    return [(n.node.get_content(), n.score) for n in out]


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_the_postprocessor_names_the_reranker_that_scored_the_whole_call(use_async: bool) -> None:
    second = OverlapReranker()
    postprocessor = RerankPostprocessor(
        reranker=FallbackReranker([FailingReranker(), second], names=["fleet", "local"]), top_n=3
    )
    given = nodes()
    out = (
        await postprocessor.apostprocess_nodes(given, query_str=QUERY)
        if use_async
        else postprocessor.postprocess_nodes(given, query_str=QUERY)
    )
    assert scored(out) == expected(3)
    assert [n.node.metadata["scored_by"] for n in out] == ["local"] * 3
    assert all("scored_by" not in n.node.get_content(MetadataMode.LLM) for n in out)
    assert all("scored_by" not in n.node.get_content(MetadataMode.EMBED) for n in out)
    assert len(second.calls) == 1
    assert all("scored_by" not in n.node.metadata for n in given)  # the caller's nodes are untouched


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_the_retriever_names_the_first_reranker_when_it_answers(use_async: bool) -> None:
    fallback = FallbackReranker([OverlapReranker(), FailingReranker()], names=["fleet", "local"])
    retriever = MilvusRerankRetriever(retriever=ListRetriever(CANDIDATES), reranker=fallback, top_n=2)
    out = await retriever.aretrieve(QUERY) if use_async else retriever.retrieve(QUERY)
    assert scored(out) == expected(2)
    assert [n.node.metadata["scored_by"] for n in out] == ["fleet", "fleet"]


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_a_refused_request_raises_even_with_passthrough(use_async: bool) -> None:
    second = OverlapReranker()
    postprocessor = RerankPostprocessor(
        reranker=FallbackReranker([RefusingReranker(422, "too many texts"), second]), on_error="passthrough"
    )
    with pytest.raises(RerankHTTPError, match="HTTP 422"):
        await postprocess(postprocessor, use_async)
    assert second.calls == []


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_passthrough_is_the_last_step_and_leaves_no_scorer(use_async: bool) -> None:
    retriever = MilvusRerankRetriever(
        retriever=ListRetriever(CANDIDATES),
        reranker=FallbackReranker([FailingReranker(), FailingReranker()]),
        on_error="passthrough",
        top_n=3,
    )
    out = await retriever.aretrieve(QUERY) if use_async else retriever.retrieve(QUERY)
    assert [n.node.node_id for n in out] == ["1", "2", "3"]  # first-stage order
    assert not any("scored_by" in n.node.metadata for n in out)
