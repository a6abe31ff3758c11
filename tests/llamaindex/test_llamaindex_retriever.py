"""MilvusRerankRetriever over a user's own first stage: candidates to nodes once, per-call options, events.

The end-to-end runs on Milvus Lite are in test_llamaindex_milvus.py; here the first stage is a list
of candidates, so each rule is checked alone and fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import BAD_SELECTION_OPTIONS, FailingReranker, ListRetriever, OverlapReranker
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.instrumentation.events.retrieval import RetrievalEndEvent, RetrievalStartEvent
from llama_index.core.schema import MetadataMode, QueryBundle

from llamaindex_milvus_rerank import MilvusRerankRetriever, RerankPostprocessor, candidate_to_node
from milvus_rerank import Candidate, RerankConnectionError
from milvus_rerank.pipeline import Selection

QUERY = "how does bread dough rise"
CANDIDATES = [
    Candidate(id=7, text="bread rises as yeast ferments the dough", score=0.9, metadata={"topic": "baking"}),
    Candidate(id="x", text="a text about dough", score=0.8, metadata={"topic": "baking"}),
    Candidate(id=3, text="milvus stores vectors", score=0.7, metadata={"topic": "tech"}),
    Candidate(id=7, text="bread rises as yeast ferments the dough", score=0.6, metadata={"topic": "baking"}),
    Candidate(id=5, text="tea leaves are steamed", score=0.5, metadata={"topic": "tea"}),
]


class Recorder(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "RetrieverRecorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, (ReRankStartEvent, ReRankEndEvent, RetrievalStartEvent, RetrievalEndEvent)):
            self.events.append(event)

    def kinds(self) -> list[str]:
        return [type(event).__name__ for event in self.events]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    root = get_dispatcher()
    handler = Recorder(events=[])
    root.add_event_handler(handler)
    yield handler
    root.event_handlers = [h for h in root.event_handlers if h is not handler]


def make(reranker: Any = None, candidates: list[Candidate] = CANDIDATES, **options: Any) -> MilvusRerankRetriever:
    return MilvusRerankRetriever(retriever=ListRetriever(candidates), reranker=reranker or OverlapReranker(), **options)


def test_candidates_become_nodes_once_and_duplicates_are_scored_once() -> None:
    reranker = OverlapReranker()
    nodes = make(reranker).retrieve(QUERY)
    ((_, sent, _),) = reranker.calls
    unique = [CANDIDATES[i] for i in (0, 1, 2, 4)]
    # The reranker reads each node's content as LlamaIndex renders it for embedding (metadata first).
    assert sent == [candidate_to_node(c).node.get_content(metadata_mode=MetadataMode.EMBED) for c in unique]
    assert sent[0] == "topic: baking\n\nbread rises as yeast ferments the dough"
    direct = OverlapReranker().rerank(QUERY, sent)
    assert [(n.node.node_id, n.score) for n in nodes] == [(str(unique[r.index].id), r.score) for r in direct]
    by_id = {n.node.node_id: n for n in nodes}
    assert by_id["7"].node.metadata == {"topic": "baking", "retrieval_rank": 1, "retrieval_score": 0.9}
    assert by_id["5"].node.metadata["retrieval_rank"] == 5
    assert "retrieval_" not in by_id["7"].node.get_content(metadata_mode=MetadataMode.LLM)
    assert all(c.rerank_score is None for c in CANDIDATES)


def test_metadata_mode_none_reranks_the_plain_text() -> None:
    reranker = OverlapReranker()
    make(reranker, metadata_mode=MetadataMode.NONE).retrieve(QUERY)
    assert reranker.calls[0][1][0] == "bread rises as yeast ferments the dough"


async def test_per_call_options_on_both_paths_do_not_stick(recorder: Recorder) -> None:
    first_stage = ListRetriever(CANDIDATES)
    retriever = MilvusRerankRetriever(retriever=first_stage, reranker=OverlapReranker(), top_n=3)
    assert len(retriever.retrieve(QUERY, top_n=1)) == 1
    assert len(await retriever.aretrieve(QueryBundle(QUERY), top_n=2, limit=2)) == 2
    assert first_stage.calls[-1] == (QUERY, {"limit": 2})
    retriever.retrieve(QUERY, filter="topic == 'tea'", score_threshold=0.1)
    assert first_stage.calls[-1] == (QUERY, {"filter": "topic == 'tea'"})
    assert len(retriever.retrieve(QUERY)) == 3  # the constructor's top_n again
    starts = [e for e in recorder.events if isinstance(e, ReRankStartEvent)]
    assert [e.top_n for e in starts] == [1, 2, 3, 3]  # the events report each call's own setting
    assert retriever.postprocessor.top_n == 3


async def test_concurrent_calls_keep_their_own_options() -> None:
    retriever = make(top_n=4)
    results = await asyncio.gather(*(retriever.aretrieve(QUERY, top_n=n) for n in (1, 2, 3, 4, 1, 2)))
    assert [len(nodes) for nodes in results] == [1, 2, 3, 4, 1, 2]


def test_unknown_options_are_named_before_any_event(recorder: Recorder) -> None:
    retriever = make()
    with pytest.raises(TypeError, match=r"unknown per-call options 'k', 'similarity_top_k'"):
        retriever.retrieve(QUERY, similarity_top_k=3, k=1)
    assert recorder.events == []


@pytest.mark.parametrize(("option", "error", "match"), [o for o in BAD_SELECTION_OPTIONS if "on_error" not in o[0]])
async def test_per_call_selection_is_checked_as_at_construction(
    option: dict[str, Any], error: type[Exception], match: str, recorder: Recorder
) -> None:
    with pytest.raises(error, match=match) as at_construction:
        make(**option)
    first_stage = ListRetriever(CANDIDATES)
    retriever = MilvusRerankRetriever(retriever=first_stage, reranker=OverlapReranker())
    with pytest.raises(error) as sync:
        retriever.retrieve(QUERY, **option)
    with pytest.raises(error) as async_:
        await retriever.aretrieve(QUERY, **option)
    assert str(sync.value) == str(async_.value) == str(at_construction.value)
    assert first_stage.calls == []
    assert recorder.events == []


@pytest.mark.parametrize("use_async", [False, True])
async def test_events_fire_on_every_path(use_async: bool, recorder: Recorder) -> None:
    async def run(retriever: MilvusRerankRetriever) -> Any:
        return await retriever.aretrieve(QUERY) if use_async else retriever.retrieve(QUERY)

    nodes = await run(make(top_n=2))
    assert recorder.kinds() == ["RetrievalStartEvent", "ReRankStartEvent", "ReRankEndEvent", "RetrievalEndEvent"]
    start, end = recorder.events[1], recorder.events[2]
    assert isinstance(start, ReRankStartEvent)
    assert isinstance(end, ReRankEndEvent)
    assert [n.node.node_id for n in start.nodes] == ["7", "x", "3", "7", "5"]  # what the first stage returned
    assert start.query == QueryBundle(QUERY)
    assert [n.node.node_id for n in end.nodes] == [n.node.node_id for n in nodes]

    recorder.events.clear()
    assert await run(make(candidates=[])) == []
    assert recorder.kinds() == ["RetrievalStartEvent", "ReRankStartEvent", "ReRankEndEvent", "RetrievalEndEvent"]

    recorder.events.clear()
    with pytest.raises(RerankConnectionError):
        await run(make(FailingReranker()))
    assert recorder.kinds() == ["RetrievalStartEvent", "ReRankStartEvent"]  # the span ends with the error


def test_legacy_callbacks_see_the_rerank_inside_the_retrieval() -> None:
    debug = LlamaDebugHandler()
    retriever = make(top_n=2, callback_manager=CallbackManager([debug]))
    retriever.retrieve(QUERY)
    (rerank_event,) = debug.get_event_pairs(CBEventType.RERANKING)
    assert len(rerank_event[1].payload["nodes"]) == 2
    assert debug.get_event_pairs(CBEventType.RETRIEVE)


def test_passthrough_keeps_first_stage_order_and_scores() -> None:
    nodes = make(FailingReranker(), on_error="passthrough").retrieve(QUERY, top_n=3)
    assert [(n.node.node_id, n.score) for n in nodes] == [("7", 0.9), ("x", 0.8), ("3", 0.7)]


def test_a_given_postprocessor_is_used_as_it_is() -> None:
    postprocessor = RerankPostprocessor(OverlapReranker(), top_n=1, keep_retrieval_score=False)
    retriever = MilvusRerankRetriever(retriever=ListRetriever(CANDIDATES), postprocessor=postprocessor)
    (node,) = retriever.retrieve(QUERY)
    assert "retrieval_score" not in node.node.metadata
    assert retriever.postprocessor is postprocessor


# ---------------------------------------------------------------------------- the postprocessor's step on candidates


@pytest.mark.parametrize("use_async", [False, True])
async def test_rerank_candidates_is_the_retrievers_step(use_async: bool, recorder: Recorder) -> None:
    postprocessor = RerankPostprocessor(OverlapReranker(), top_n=2)
    if use_async:
        nodes = await postprocessor.arerank_candidates(QUERY, CANDIDATES)
    else:
        nodes = postprocessor.rerank_candidates(QUERY, CANDIDATES)
    # The same nodes as the retriever returns over the same first stage, with the same rerank events.
    through_retriever = make(top_n=2).retrieve(QUERY)
    assert [(n.node.node_id, n.score, n.node.metadata) for n in nodes] == [
        (n.node.node_id, n.score, n.node.metadata) for n in through_retriever
    ]
    assert recorder.kinds()[:2] == ["ReRankStartEvent", "ReRankEndEvent"]
    start = recorder.events[0]
    assert isinstance(start, ReRankStartEvent)
    assert start.query == QueryBundle(QUERY)
    assert [n.node.node_id for n in start.nodes] == ["7", "x", "3", "7", "5"]
    assert start.top_n == 2
    assert all(c.rerank_score is None and c.retrieval_rank is None for c in CANDIDATES)  # untouched


async def test_rerank_candidates_takes_the_selection_of_one_call(recorder: Recorder) -> None:
    postprocessor = RerankPostprocessor(OverlapReranker(), top_n=3)
    one = postprocessor.rerank_candidates(
        QueryBundle(QUERY), CANDIDATES, selection=postprocessor.selection.with_options({"top_n": 1})
    )
    assert [n.node.node_id for n in one] == ["7"]
    every = await postprocessor.arerank_candidates(QUERY, CANDIDATES, selection=Selection())
    assert len(every) == 4  # the four distinct rows
    assert [e.top_n for e in recorder.events if isinstance(e, ReRankStartEvent)] == [1, 5]
    assert postprocessor.selection == Selection(top_n=3)
    recorder.events.clear()
    with pytest.raises(TypeError, match="query must be a str or a QueryBundle"):
        postprocessor.rerank_candidates(3, CANDIDATES)  # type: ignore[arg-type]
    assert recorder.events == []


def test_a_changed_on_error_takes_effect() -> None:
    postprocessor = RerankPostprocessor(FailingReranker())
    with pytest.raises(RerankConnectionError):
        postprocessor.rerank_candidates(QUERY, CANDIDATES)
    postprocessor.on_error = "passthrough"
    nodes = postprocessor.rerank_candidates(QUERY, CANDIDATES, selection=Selection(top_n=2))
    assert [(n.node.node_id, n.score) for n in nodes] == [("7", 0.9), ("x", 0.8)]
