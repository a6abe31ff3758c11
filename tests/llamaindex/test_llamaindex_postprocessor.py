"""RerankPostprocessor: the adapter contract, instrumentation events, sync/async agreement."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from helpers import BAD_SELECTION_OPTIONS, BROKEN_ANSWERS, AnswerReranker, OverlapReranker
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.schema import (
    MetadataMode,
    NodeRelationship,
    NodeWithScore,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)

from llamaindex_milvus_rerank import RerankPostprocessor
from milvus_rerank.errors import RerankError, RerankResponseError


class DownReranker(OverlapReranker):
    """Records the call, then fails like a rerank service that is down."""

    def record(self, query: str, documents: Sequence[str], top_n: int | None) -> None:
        super().record(query, documents, top_n)
        raise RerankError("the rerank service is down")


TEXTS = [
    "milvus stores vectors for similarity search",
    "a cross encoder reranks retrieved passages",
    "bananas are yellow",
    "the reranker scores each passage against the query",
    "a passage about vectors",
]
QUERY = "how does the reranker score a passage"


def make_nodes(texts: Sequence[str] = TEXTS) -> list[NodeWithScore]:
    return [
        NodeWithScore(
            node=TextNode(
                id_=f"node-{i}",
                text=text,
                metadata={"source": f"doc{i}.txt", "secret_note": "internal"},
                excluded_llm_metadata_keys=["secret_note"],
                excluded_embed_metadata_keys=["secret_note"],
                relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc-{i}")},
            ),
            score=1.0 - i / 10,
        )
        for i, text in enumerate(texts)
    ]


def expected_order(nodes: list[NodeWithScore], mode: MetadataMode = MetadataMode.EMBED) -> list[tuple[str, float]]:
    """(node id, score) from a fresh reranker called directly on the node texts, best first."""
    docs = [n.node.get_content(metadata_mode=mode) for n in nodes]
    return [(nodes[r.index].node.node_id, r.score) for r in OverlapReranker().rerank(QUERY, docs)]


class Recorder(BaseEventHandler):
    events: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Recorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, (ReRankStartEvent, ReRankEndEvent)):
            self.events.append(event)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    root = get_dispatcher()
    handler = Recorder(events=[])
    root.add_event_handler(handler)
    yield handler
    root.event_handlers = [h for h in root.event_handlers if h is not handler]


# --- the contract ---------------------------------------------------------------------------------------------------


def test_returns_new_nodes_with_rerank_scores_and_leaves_the_callers_untouched() -> None:
    nodes = make_nodes()
    before = [n.model_dump() for n in nodes]
    reranker = OverlapReranker()
    out = RerankPostprocessor(reranker).postprocess_nodes(nodes, query_str=QUERY)

    assert [(n.node.node_id, n.score) for n in out] == expected_order(nodes)
    assert [n.model_dump() for n in nodes] == before
    originals = {n.node.node_id: n for n in nodes}
    for item in out:
        original = originals[item.node.node_id]
        assert item is not original
        assert item.node is not original.node
        assert item.node.get_content(MetadataMode.NONE) == original.node.get_content(MetadataMode.NONE)
        assert item.node.relationships == original.node.relationships
        # a downstream change to the copy must not reach the caller's node
        item.node.metadata["touched"] = True
        item.node.excluded_llm_metadata_keys.append("touched")
    assert [n.model_dump() for n in nodes] == before


def test_top_n_applies_after_the_threshold() -> None:
    nodes = make_nodes()
    full = RerankPostprocessor(OverlapReranker()).postprocess_nodes(nodes, query_str=QUERY)
    scores = [n.score for n in full]
    assert scores == sorted(scores, reverse=True)
    threshold = scores[2]  # keeps exactly the first three (scores are distinct there)
    assert scores[3] < threshold

    kept = RerankPostprocessor(OverlapReranker(), score_threshold=threshold).postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in kept] == [n.node.node_id for n in full[:3]]
    cut = RerankPostprocessor(OverlapReranker(), score_threshold=threshold, top_n=2).postprocess_nodes(
        nodes, query_str=QUERY
    )
    assert [n.node.node_id for n in cut] == [n.node.node_id for n in full[:2]]
    few = RerankPostprocessor(OverlapReranker(), score_threshold=threshold, top_n=10).postprocess_nodes(
        nodes, query_str=QUERY
    )
    assert len(few) == 3


def test_retrieval_score_is_kept_and_hidden_from_llm_and_embedding_text() -> None:
    nodes = make_nodes()
    out = RerankPostprocessor(OverlapReranker()).postprocess_nodes(nodes, query_str=QUERY)
    originals = {n.node.node_id: n for n in nodes}
    for item in out:
        assert item.node.metadata["retrieval_score"] == originals[item.node.node_id].score
        assert item.node.metadata["source"] == originals[item.node.node_id].node.metadata["source"]
        for mode in (MetadataMode.LLM, MetadataMode.EMBED):
            text = item.node.get_content(metadata_mode=mode)
            assert "retrieval_score" not in text
            assert "secret_note" not in text
            assert "source: doc" in text
        assert "retrieval_score" in item.node.get_content(metadata_mode=MetadataMode.ALL)

    plain = RerankPostprocessor(OverlapReranker(), keep_retrieval_score=False).postprocess_nodes(
        make_nodes(), query_str=QUERY
    )
    assert all("retrieval_score" not in n.node.metadata for n in plain)
    assert all(n.node.excluded_llm_metadata_keys == ["secret_note"] for n in plain)

    unscored = [NodeWithScore(node=n.node, score=None) for n in make_nodes()]
    out = RerankPostprocessor(OverlapReranker()).postprocess_nodes(unscored, query_str=QUERY)
    assert all("retrieval_score" not in n.node.metadata for n in out)
    assert all(isinstance(n.score, float) for n in out)


@pytest.mark.parametrize("mode", [MetadataMode.EMBED, MetadataMode.NONE, MetadataMode.LLM])
def test_text_sent_to_the_reranker_follows_metadata_mode(mode: MetadataMode) -> None:
    nodes = make_nodes()
    reranker = OverlapReranker()
    RerankPostprocessor(reranker, metadata_mode=mode).postprocess_nodes(nodes, query_str=QUERY)
    (query, documents, _), *rest = reranker.calls
    assert not rest
    assert query == QUERY
    assert documents == [n.node.get_content(metadata_mode=mode) for n in nodes]
    assert all("secret_note" not in d for d in documents)
    assert all(("source: doc" in d) == (mode is not MetadataMode.NONE) for d in documents)


def test_nodes_with_the_same_id_are_scored_once() -> None:
    nodes = make_nodes()
    # the same chunk returned by both legs of a hybrid search: same id, another score
    doubled = [*nodes, NodeWithScore(node=nodes[3].node.model_copy(), score=0.01), nodes[0]]
    reranker = OverlapReranker()
    out = RerankPostprocessor(reranker).postprocess_nodes(doubled, query_str=QUERY)
    (_, documents, _), *_ = reranker.calls
    assert len(documents) == len(nodes)
    assert sorted(n.node.node_id for n in out) == sorted(n.node.node_id for n in nodes)
    first = {n.node.node_id: n.score for n in nodes}
    assert {n.node.node_id: n.node.metadata["retrieval_score"] for n in out} == first


def test_pk_key_recognises_the_same_row_under_different_node_ids() -> None:
    # MilvusVectorStore on a collection it did not write: a fresh random node id per hit, the key in metadata
    nodes = make_nodes()
    hits = [
        NodeWithScore(node=TextNode(text=n.node.get_content(), metadata={"pk": i}), score=n.score)
        for i, n in enumerate(nodes)
    ]
    again = [
        NodeWithScore(node=TextNode(text=h.node.get_content(), metadata={"pk": h.node.metadata["pk"]}), score=0.0)
        for h in hits[:2]
    ]
    no_key = NodeWithScore(node=TextNode(id_="loose", text="no primary key here"), score=0.5)
    both = [*hits, *again, no_key]

    reranker = OverlapReranker()
    out = RerankPostprocessor(reranker, pk_key="pk").postprocess_nodes(both, query_str=QUERY)
    assert len(reranker.calls[0][1]) == len(hits) + 1
    first_ids = {h.node.node_id for h in hits} | {"loose"}
    assert {n.node.node_id for n in out} == first_ids  # the first occurrence of each row is kept

    unkeyed = OverlapReranker()
    RerankPostprocessor(unkeyed).postprocess_nodes(both, query_str=QUERY)
    assert len(unkeyed.calls[0][1]) == len(both)  # without pk_key the random ids look distinct


def test_a_primary_key_never_collides_with_a_node_id() -> None:
    keyed = NodeWithScore(node=TextNode(id_="random-1", text="milvus vectors", metadata={"pk": "node-7"}), score=0.9)
    # This node has no primary key; its id happens to equal the other node's key: it is another chunk.
    unkeyed = NodeWithScore(node=TextNode(id_="node-7", text="passage scores"), score=0.8)
    # Keys are type-strict: pk 1 and pk "1" are two rows.
    one = NodeWithScore(node=TextNode(id_="random-2", text="reranker query", metadata={"pk": 1}), score=0.7)
    one_str = NodeWithScore(node=TextNode(id_="random-3", text="a passage", metadata={"pk": "1"}), score=0.6)
    nodes = [keyed, unkeyed, one, one_str]
    reranker = OverlapReranker()
    out = RerankPostprocessor(reranker, pk_key="pk").postprocess_nodes(nodes, query_str=QUERY)
    assert len(reranker.calls[0][1]) == 4
    assert sorted(n.node.node_id for n in out) == ["node-7", "random-1", "random-2", "random-3"]


@pytest.mark.parametrize(("answer", "reason"), [b[1:] for b in BROKEN_ANSWERS], ids=[b[0] for b in BROKEN_ANSWERS])
async def test_an_answer_that_breaks_the_contract_is_refused_naming_the_reranker(
    answer: Callable[[Sequence[str]], Any], reason: str, recorder: Recorder
) -> None:
    postprocessor = RerankPostprocessor(AnswerReranker(answer))
    with pytest.raises(RerankResponseError, match="reranker AnswerReranker broke the Reranker contract") as sync:
        postprocessor.postprocess_nodes(make_nodes()[:3], query_str=QUERY)
    assert reason in str(sync.value)
    with pytest.raises(RerankResponseError, match="AnswerReranker") as asynchronous:
        await postprocessor.apostprocess_nodes(make_nodes()[:3], query_str=QUERY)
    assert str(asynchronous.value) == str(sync.value)
    assert [type(e) for e in recorder.events] == [ReRankStartEvent, ReRankStartEvent]  # no end event claims a result


def test_a_missing_query_is_a_clear_error_and_fires_no_event(recorder: Recorder) -> None:
    reranker = OverlapReranker()
    pp = RerankPostprocessor(reranker)
    with pytest.raises(ValueError, match="needs the query"):
        pp.postprocess_nodes(make_nodes())
    with pytest.raises(ValueError, match="needs the query"):
        asyncio.run(pp.apostprocess_nodes(make_nodes()))
    assert recorder.events == []
    assert reranker.calls == []


def test_bad_nodes_are_a_type_error_before_any_event(recorder: Recorder) -> None:
    pp = RerankPostprocessor(OverlapReranker())
    with pytest.raises(TypeError, match=r"nodes\[1\] must be a NodeWithScore"):
        pp.postprocess_nodes([make_nodes()[0], TextNode(text="bare")], query_str=QUERY)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="list of NodeWithScore"):
        pp.postprocess_nodes("text", query_str=QUERY)  # type: ignore[arg-type]
    assert recorder.events == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        *BAD_SELECTION_OPTIONS,
        ({"metadata_mode": "embed"}, TypeError, "MetadataMode"),
        ({"keep_retrieval_score": 1}, TypeError, "keep_retrieval_score"),
        ({"pk_key": ""}, ValueError, "pk_key"),
        ({"pk_key": 1}, TypeError, "pk_key"),
    ],
)
def test_bad_options_fail_at_construction(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        RerankPostprocessor(OverlapReranker(), **kwargs)


def test_the_reranker_must_follow_the_protocol() -> None:
    with pytest.raises(TypeError, match=r"rerank\(\) and arerank\(\)"):
        RerankPostprocessor(object())  # type: ignore[arg-type]


def test_fields_changed_after_construction_take_effect_and_are_checked() -> None:
    pp = RerankPostprocessor(OverlapReranker())
    pp.top_n = 1
    assert len(pp.postprocess_nodes(make_nodes(), query_str=QUERY)) == 1
    pp.top_n = -1
    with pytest.raises(ValueError, match="top_n"):
        pp.postprocess_nodes(make_nodes(), query_str=QUERY)


def test_serializes_its_settings_but_not_the_reranker() -> None:
    pp = RerankPostprocessor(OverlapReranker(), top_n=3, score_threshold=0.1)
    data = pp.to_dict()
    assert data["class_name"] == "RerankPostprocessor"
    assert data["top_n"] == 3
    assert data["score_threshold"] == 0.1
    assert data["model_name"] == "OverlapReranker"
    assert "reranker" not in data
    assert isinstance(pp.reranker, OverlapReranker)


# --- events -----------------------------------------------------------------------------------------------------------


def test_events_fire_in_order_with_the_settings_and_result(recorder: Recorder) -> None:
    nodes = make_nodes()
    out = RerankPostprocessor(OverlapReranker(), top_n=2).postprocess_nodes(nodes, query_str=QUERY)
    start, end = recorder.events
    assert isinstance(start, ReRankStartEvent)
    assert isinstance(end, ReRankEndEvent)
    assert start.query == QueryBundle(QUERY)
    assert [n.node.node_id for n in start.nodes] == [n.node.node_id for n in nodes]
    assert start.top_n == 2
    assert start.model_name == "OverlapReranker"
    assert [(n.node.node_id, n.score) for n in end.nodes] == [(n.node.node_id, n.score) for n in out]
    assert start.span_id is not None
    assert start.span_id == end.span_id


def test_top_n_none_reports_all_nodes_in_the_start_event(recorder: Recorder) -> None:
    RerankPostprocessor(OverlapReranker()).postprocess_nodes(make_nodes(), query_str=QUERY)
    start, _ = recorder.events
    assert isinstance(start, ReRankStartEvent)
    assert start.top_n == len(TEXTS)


async def test_empty_input_fires_balanced_events_and_no_call(recorder: Recorder) -> None:
    reranker = OverlapReranker()
    pp = RerankPostprocessor(reranker, top_n=3)
    assert pp.postprocess_nodes([], query_str=QUERY) == []
    assert await pp.apostprocess_nodes([], query_str=QUERY) == []
    assert [type(e) for e in recorder.events] == [ReRankStartEvent, ReRankEndEvent] * 2
    assert all(e.nodes == [] for e in recorder.events)
    assert reranker.calls == []


async def test_async_path_fires_the_same_events(recorder: Recorder) -> None:
    out = await RerankPostprocessor(OverlapReranker(), top_n=3).apostprocess_nodes(make_nodes(), query_str=QUERY)
    start, end = recorder.events
    assert isinstance(start, ReRankStartEvent)
    assert isinstance(end, ReRankEndEvent)
    assert [n.node.node_id for n in end.nodes] == [n.node.node_id for n in out]


def test_legacy_callbacks_get_a_reranking_event() -> None:
    debug = LlamaDebugHandler()
    pp = RerankPostprocessor(OverlapReranker(), top_n=2, callback_manager=CallbackManager([debug]))
    out = pp.postprocess_nodes(make_nodes(), query_str=QUERY)
    (pair,) = debug.get_event_pairs(CBEventType.RERANKING)
    start, end = pair
    assert start.payload is not None
    assert start.payload["query_str"] == QUERY
    assert end.payload is not None
    assert [n.node.node_id for n in end.payload["nodes"]] == [n.node.node_id for n in out]


# --- failures ---------------------------------------------------------------------------------------------------------


async def test_reranker_failure_raises_by_default(recorder: Recorder) -> None:
    pp = RerankPostprocessor(DownReranker())
    with pytest.raises(RerankError, match="down"):
        pp.postprocess_nodes(make_nodes(), query_str=QUERY)
    with pytest.raises(RerankError, match="down"):
        await pp.apostprocess_nodes(make_nodes(), query_str=QUERY)
    # the span ends with the error; no end event claims a result
    assert [type(e) for e in recorder.events] == [ReRankStartEvent, ReRankStartEvent]


async def test_passthrough_keeps_first_stage_order_and_scores(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    nodes = make_nodes()
    pp = RerankPostprocessor(DownReranker(), top_n=3, on_error="passthrough")
    with caplog.at_level(logging.WARNING, logger="milvus_rerank.pipeline"):
        out = pp.postprocess_nodes(nodes, query_str=QUERY)
        aout = await pp.apostprocess_nodes(nodes, query_str=QUERY)
    expected = [(n.node.node_id, n.score) for n in nodes[:3]]
    assert [(n.node.node_id, n.score) for n in out] == expected
    assert [(n.node.node_id, n.score) for n in aout] == expected
    assert "not reranked" in caplog.text
    assert [type(e) for e in recorder.events] == [ReRankStartEvent, ReRankEndEvent] * 2


# --- async --------------------------------------------------------------------------------------------------------


async def test_async_equals_sync() -> None:
    pp = RerankPostprocessor(OverlapReranker(), top_n=4, score_threshold=0.0)
    sync = pp.postprocess_nodes(make_nodes(), query_str=QUERY)
    async_ = await pp.apostprocess_nodes(make_nodes(), query_str=QUERY)
    assert [n.model_dump() for n in async_] == [n.model_dump() for n in sync]


async def test_fifty_concurrent_queries_do_not_cross_talk(recorder: Recorder) -> None:
    nodes = make_nodes()
    words = sorted({w for t in TEXTS for w in t.split()})
    queries = [" ".join(words[i % len(words) : i % len(words) + 1 + i % 4]) + f" q{i}" for i in range(50)]
    pp = RerankPostprocessor(OverlapReranker(), top_n=3)
    expected = [[(n.node.node_id, n.score) for n in pp.postprocess_nodes(nodes, query_str=q)] for q in queries]
    recorder.events.clear()

    results = await asyncio.gather(*(pp.apostprocess_nodes(nodes, query_str=q) for q in queries))
    assert [[(n.node.node_id, n.score) for n in r] for r in results] == expected
    assert len({tuple(e) for e in expected}) > 5  # the queries really rank differently
    starts = {e.span_id: e for e in recorder.events if isinstance(e, ReRankStartEvent)}
    ends = {e.span_id: e for e in recorder.events if isinstance(e, ReRankEndEvent)}
    assert len(starts) == len(ends) == 50
    by_query = dict(zip(queries, expected, strict=True))
    for span_id, start in starts.items():
        assert isinstance(start.query, QueryBundle)
        assert [(n.node.node_id, n.score) for n in ends[span_id].nodes] == by_query[start.query.query_str]


# --- a real cross-encoder ---------------------------------------------------------------------------------------------


async def test_real_cross_encoder_scores_match_the_reranker_called_directly(tiny_model: Path) -> None:
    from milvus_rerank import CrossEncoderReranker

    reranker = CrossEncoderReranker(tiny_model, device="cpu")
    nodes = make_nodes()
    pp = RerankPostprocessor(reranker, top_n=3)
    out = pp.postprocess_nodes(nodes, query_str=QUERY)
    direct = reranker.rerank(QUERY, [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes], top_n=3)
    assert [(n.node.node_id, n.score) for n in out] == [(nodes[r.index].node.node_id, r.score) for r in direct]
    assert pp.model_name == str(tiny_model)
    aout = await pp.apostprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in aout] == [n.node.node_id for n in out]
    assert [n.score for n in aout] == pytest.approx([n.score for n in out], abs=1e-6)
