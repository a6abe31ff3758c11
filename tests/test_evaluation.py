"""BEIR loading, the metrics by hand, and evaluate_retrieval on Milvus Lite with a cheap embedding and reranker."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import OverlapReranker, letter_counts, write_beir
from pymilvus import MilvusClient

from milvus_rerank import MilvusRetriever
from milvus_rerank.evaluation import (
    BeirDataset,
    RetrievalEvaluation,
    evaluate,
    evaluate_retrieval,
    load_beir,
    ndcg_at_k,
    recall_at_k,
)
from milvus_rerank.milvus.collection import create_rag_collection, ingest


def test_metrics_by_hand() -> None:
    relevant = {"b": 1, "c": 2}
    expected = (1 / math.log2(3) + 2 / math.log2(4)) / (2 + 1 / math.log2(3))
    assert math.isclose(ndcg_at_k(["a", "b", "c"], relevant, 3), expected)
    assert ndcg_at_k(["c", "b", "a"], relevant, 3) == 1.0
    assert ndcg_at_k(["a", "b", "c"], relevant, 1) == 0.0
    assert ndcg_at_k(["a"], {}, 10) == 0.0
    assert recall_at_k(["a", "b", "c"], relevant, 2) == 0.5
    assert recall_at_k(["c", "b"], relevant, 100) == 1.0
    assert recall_at_k(["c"], {}, 100) == 0.0
    scores = evaluate({"q1": ["c", "b"], "q2": ["x"]}, {"q1": relevant, "q2": {"y": 1}, "q3": {"z": 1}})
    assert scores.queries == 3
    assert math.isclose(scores.ndcg, 1 / 3)
    assert math.isclose(scores.recall, 1 / 3)
    with pytest.raises(ValueError, match="qrels is empty"):
        evaluate({}, {})


def test_load_beir(tmp_path: Path) -> None:
    answers = write_beir(tmp_path / "mini")
    corpus, queries, qrels = load_beir(tmp_path / "mini")
    assert len(corpus) == 36
    assert corpus["lro-001"].startswith("Where the observatory is Lumen Ridge Observatory sits")
    assert set(queries) == set(answers)  # the unjudged query is dropped
    assert qrels == {query_id: {doc: 1} for query_id, doc in answers.items()}  # the 0 grade is dropped
    with pytest.raises(FileNotFoundError, match="splits available: test"):
        load_beir(tmp_path / "mini", "dev")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_beir(tmp_path / "missing")
    (tmp_path / "mini" / "queries.jsonl").write_text('{"_id": "q1"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"queries\.jsonl, line 1: expected an object with '_id' and a string"):
        load_beir(tmp_path / "mini")


# ----------------------------------------------------------------------------- evaluate_retrieval


@pytest.fixture
def mini(tmp_path: Path) -> Iterator[tuple[MilvusClient, BeirDataset]]:
    """The mini dataset's corpus in a Milvus Lite collection ``mini``, embedded with ``letter_counts``."""
    write_beir(tmp_path / "mini")
    dataset = load_beir(tmp_path / "mini")
    client = MilvusClient(str(tmp_path / "eval.db"))
    try:
        create_rag_collection(client, "mini", dim=8)
        ingest(client, "mini", list(dataset.corpus.items()), embedding=letter_counts, show_progress=False)
        yield client, dataset
    finally:
        client.close()


def test_evaluate_retrieval_scores_each_mode_with_and_without_the_reranker(
    mini: tuple[MilvusClient, BeirDataset],
) -> None:
    client, dataset = mini
    reranker = OverlapReranker()
    evaluations = evaluate_retrieval(
        client, "mini", dataset, modes=("sparse", "hybrid"), embedding=letter_counts, reranker=reranker, rerank_depth=5
    )
    assert [(run.mode, run.reranked) for run in evaluations] == [
        ("sparse", False),
        ("sparse", True),
        ("hybrid", False),
        ("hybrid", True),
    ]
    # The reranker saw the first five candidates of each query, once per mode.
    assert len(reranker.calls) == 2 * len(dataset.qrels)
    assert all(len(documents) == 5 for _, documents, _ in reranker.calls)

    for first_run, reranked_run in (evaluations[:2], evaluations[2:]):
        retriever = MilvusRetriever(
            client, "mini", mode=first_run.mode, embedding=letter_counts if first_run.mode == "hybrid" else None
        )
        first: dict[str, list[str]] = {}
        reranked: dict[str, list[str]] = {}
        for query_id, query in dataset.queries.items():
            candidates = retriever.retrieve(query, limit=100)
            first[query_id] = [str(c.id) for c in candidates]
            order = OverlapReranker().rerank(query, [c.text for c in candidates[:5]])
            reranked[query_id] = [first[query_id][r.index] for r in order] + first[query_id][5:]
        assert first_run.scores == evaluate(first, dataset.qrels)
        assert reranked_run.scores == evaluate(reranked, dataset.qrels)
        assert first_run.rerank_ms_per_query is None
        assert reranked_run.rerank_ms_per_query is not None
        assert reranked_run.rerank_ms_per_query >= 0
        # Reranking reorders the head only: the same documents within the first 100.
        assert reranked_run.scores.recall == first_run.scores.recall


def test_evaluate_retrieval_first_stage_only_on_the_first_queries(mini: tuple[MilvusClient, BeirDataset]) -> None:
    client, dataset = mini
    (run,) = evaluate_retrieval(client, "mini", dataset, modes=("sparse",), max_queries=2)
    assert run == RetrievalEvaluation("sparse", False, run.scores)
    assert run.scores.queries == 2


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"modes": ()}, ValueError, "modes is empty"),
        ({"modes": ("bm25",)}, ValueError, "mode must be one of"),
        ({"rerank_depth": 0}, ValueError, "rerank_depth"),
        ({"max_queries": 1.5}, TypeError, "max_queries"),
    ],
)
def test_evaluate_retrieval_refuses_bad_options(
    mini: tuple[MilvusClient, BeirDataset], options: dict[str, object], error: type[Exception], message: str
) -> None:
    client, dataset = mini
    with pytest.raises(error, match=message):
        evaluate_retrieval(client, "mini", dataset, **options)  # type: ignore[arg-type]
