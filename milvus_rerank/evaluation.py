"""Retrieval quality on BEIR-format datasets: loading, the metrics (nDCG@k, recall@k) and a driver.

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
``text``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score`` with a header line).
Used by ``milvus-rerank eval`` and ``benchmarks/retrieval_quality.py``, so both compute the same
numbers. The metrics follow BEIR's (``pytrec_eval``): nDCG with linear gains and recall as the
share of a query's relevant documents found in the first k, each averaged over the queries.
:func:`evaluate_retrieval` runs a dataset's queries against a Milvus collection that holds its
corpus, in each first-stage mode, with and without a reranker, and scores every run.
"""

from __future__ import annotations

import csv
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from milvus_rerank.chunking import json_lines
from milvus_rerank.validation import check_choice, check_int

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from milvus_rerank.milvus.retriever import RetrievalMode
    from milvus_rerank.types import Reranker

__all__ = [
    "BeirDataset",
    "RetrievalEvaluation",
    "Scores",
    "evaluate",
    "evaluate_retrieval",
    "load_beir",
    "ndcg_at_k",
    "recall_at_k",
]

Qrels = dict[str, dict[str, int]]
"""query id -> {document id: graded relevance > 0}."""


class BeirDataset(NamedTuple):
    """A BEIR dataset, reduced to what retrieval evaluation needs.

    It unpacks as ``corpus, queries, qrels = load_beir(folder)``.

    Attributes:
        corpus: document id -> text (``title`` and ``text`` joined by a space, as BEIR does, when there is a
            title).
        queries: query id -> text, only the queries that have relevant documents in the split.
        qrels: query id -> {document id: relevance}, positive relevances only.
    """

    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: Qrels


class Scores(NamedTuple):
    """Mean metrics over a set of queries.

    Attributes:
        ndcg: Mean nDCG at the cut-off given to :func:`evaluate`.
        recall: Mean recall at its cut-off.
        queries: How many queries were averaged.
    """

    ndcg: float
    recall: float
    queries: int


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, row in json_lines(handle, str(path)):
            if not isinstance(row, dict) or "_id" not in row or not isinstance(row.get("text"), str):
                raise ValueError(f"{path}, line {number}: expected an object with '_id' and a string 'text'")
            rows.append(row)
    return rows


def load_beir(data_dir: str | Path, split: str = "test") -> BeirDataset:
    """Load a BEIR-format dataset folder.

    Args:
        data_dir: The folder with ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/``.
        split: Which qrels file to read: ``qrels/<split>.tsv``.

    Returns:
        The corpus, the queries that have at least one relevant document in the split, and the qrels.

    Raises:
        FileNotFoundError: A file is missing (the message lists what the folder must hold).
        ValueError: A malformed line (the message names the file and the line), or no query of the
            split has a relevant document.
    """
    folder = Path(data_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: pass a BEIR dataset folder (corpus.jsonl, queries.jsonl)")
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        raise FileNotFoundError(f"{qrels_path} not found; splits available: {', '.join(available) or 'none'}")

    corpus: dict[str, str] = {}
    for row in _jsonl(folder / "corpus.jsonl"):
        title = str(row.get("title") or "")
        corpus[str(row["_id"])] = f"{title} {row['text']}".strip() if title.strip() else row["text"]

    qrels: Qrels = {}
    with qrels_path.open(encoding="utf-8", newline="") as handle:
        for number, fields in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not fields or (number == 1 and not fields[-1].strip().lstrip("-").isdigit()):
                continue  # blank line or the header
            if len(fields) < 3 or not fields[-1].strip().lstrip("-").isdigit():
                raise ValueError(f"{qrels_path}, line {number}: expected 'query-id<TAB>corpus-id<TAB>score'")
            query_id, doc_id, score = fields[0], fields[-2], int(fields[-1])
            if score > 0:
                qrels.setdefault(query_id, {})[doc_id] = score

    queries = {str(row["_id"]): row["text"] for row in _jsonl(folder / "queries.jsonl") if str(row["_id"]) in qrels}
    qrels = {query_id: relevant for query_id, relevant in qrels.items() if query_id in queries}
    if not qrels:
        raise ValueError(f"no query in {folder / 'queries.jsonl'} has a relevant document in {qrels_path}")
    return BeirDataset(corpus, queries, qrels)


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """Normalised discounted cumulative gain of the first ``k`` results (linear gains, log2 discount).

    Args:
        ranked: Document ids, best first.
        relevant: Relevance grade of each relevant document id.
        k: The cut-off.

    Returns:
        A value in [0, 1]; 0 when there is no relevant document.
    """
    dcg = sum(relevant.get(doc_id, 0) / math.log2(position + 2) for position, doc_id in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(gain / math.log2(position + 2) for position, gain in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found among the first ``k`` results (0 when none is relevant)."""
    if not relevant:
        return 0.0
    return len(set(ranked[:k]).intersection(relevant)) / len(relevant)


def evaluate(
    runs: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]], *, ndcg_k: int = 10, recall_k: int = 100
) -> Scores:
    """Mean nDCG@``ndcg_k`` and recall@``recall_k`` of ranked results over the queries in ``qrels``.

    Args:
        runs: query id -> ranked document ids. A query of ``qrels`` missing here counts as an
            empty result (score 0), as in BEIR.
        qrels: query id -> {document id: relevance}.
        ndcg_k: Cut-off of nDCG.
        recall_k: Cut-off of recall.

    Returns:
        The means and the number of queries.

    Raises:
        ValueError: ``qrels`` is empty.
    """
    if not qrels:
        raise ValueError("qrels is empty: there is nothing to evaluate")
    ndcg = [ndcg_at_k(runs.get(query_id, ()), relevant, ndcg_k) for query_id, relevant in qrels.items()]
    recall = [recall_at_k(runs.get(query_id, ()), relevant, recall_k) for query_id, relevant in qrels.items()]
    return Scores(statistics.fmean(ndcg), statistics.fmean(recall), len(qrels))


@dataclass(frozen=True)
class RetrievalEvaluation:
    """The scores of one way of retrieving, from :func:`evaluate_retrieval`.

    Attributes:
        mode: The first-stage search: ``"dense"``, ``"sparse"`` or ``"hybrid"``.
        reranked: Whether the first stage's head was reranked (see :func:`evaluate_retrieval`).
        scores: Mean nDCG and recall over the queries.
        rerank_ms_per_query: Mean time the reranker took per query, in milliseconds; ``None``
            for a first stage alone.
    """

    mode: RetrievalMode
    reranked: bool
    scores: Scores
    rerank_ms_per_query: float | None = None


_MODES = ("dense", "sparse", "hybrid")


def evaluate_retrieval(
    client: MilvusClient | str,
    collection_name: str,
    dataset: BeirDataset,
    *,
    modes: Sequence[RetrievalMode] = ("hybrid",),
    embedding: object = None,
    reranker: Reranker | None = None,
    rerank_depth: int = 100,
    max_queries: int | None = None,
    ndcg_k: int = 10,
    recall_k: int = 100,
    show_progress: bool = False,
) -> list[RetrievalEvaluation]:
    """Run a dataset's queries against the collection holding its corpus and score each way of retrieving.

    Each query is retrieved once per mode, ``max(rerank_depth, recall_k)`` candidates deep, and
    the first stage is scored as it is. With a ``reranker``, its first ``rerank_depth``
    candidates are also reranked (through :class:`~milvus_rerank.RerankPipeline`, so duplicates
    are scored once) and followed by the rest of the first stage in its own order, and that
    ranking is scored too: recall beyond the head is the first stage's, so the two are
    comparable at any cut-off.

    Args:
        client: A ``pymilvus.MilvusClient`` or a URI; a connection opened here is closed at the end.
        collection_name: The collection holding the dataset's corpus, with the corpus ids as
            primary keys (e.g. filled by :func:`milvus_rerank.milvus.collection.ingest`).
        dataset: The dataset, from :func:`load_beir`.
        modes: The first-stage searches to evaluate, in this order.
        embedding: The dense embedding the corpus was embedded with; needed unless ``modes`` is
            ``("sparse",)``.
        reranker: The reranker to evaluate on top of each first stage; ``None`` for first stages only.
        rerank_depth: First-stage candidates reranked per query.
        max_queries: Evaluate only the first ``max_queries`` queries of the qrels.
        ndcg_k: Cut-off of nDCG.
        recall_k: Cut-off of recall.
        show_progress: Show a progress bar per mode on stderr.

    Returns:
        For each mode, its first-stage evaluation, then (with a reranker) the reranked one.

    Raises:
        TypeError: An option has the wrong type.
        ValueError: An unknown mode, no mode, or a count below 1.
        RetrievalError: Milvus failed (connection, search).
        RerankError: The reranker failed.
    """
    from tqdm.auto import tqdm

    from milvus_rerank.milvus.connection import connect
    from milvus_rerank.milvus.retriever import MilvusRetriever
    from milvus_rerank.pipeline import RerankPipeline

    if not modes:
        raise ValueError("modes is empty: pass at least one of 'dense', 'sparse', 'hybrid'")
    for mode in modes:
        check_choice(mode, "mode", _MODES)
    check_int(rerank_depth, "rerank_depth")
    check_int(max_queries, "max_queries", optional=True)
    check_int(ndcg_k, "ndcg_k")
    check_int(recall_k, "recall_k")
    qrels = dict(list(dataset.qrels.items())[:max_queries])
    pipeline = RerankPipeline(reranker) if reranker is not None else None
    depth = max(rerank_depth, recall_k)

    connection = connect(client) if isinstance(client, str) else client
    evaluations: list[RetrievalEvaluation] = []
    try:
        for mode in modes:
            retriever = MilvusRetriever(
                connection, collection_name, mode=mode, embedding=embedding if mode != "sparse" else None, limit=depth
            )
            first: dict[str, list[str]] = {}
            reranked: dict[str, list[str]] = {}
            rerank_seconds = 0.0
            for query_id in tqdm(list(qrels), desc=f"eval {mode}", unit="query", disable=not show_progress):
                query = dataset.queries[query_id]
                candidates = retriever.retrieve(query)
                first[query_id] = [str(candidate.id) for candidate in candidates]
                if pipeline is not None:
                    head = candidates[:rerank_depth]
                    started = time.perf_counter()
                    ordered = pipeline.rerank(query, head)
                    rerank_seconds += time.perf_counter() - started
                    reranked[query_id] = [str(c.id) for c in ordered] + first[query_id][len(head) :]
            scores = evaluate(first, qrels, ndcg_k=ndcg_k, recall_k=recall_k)
            evaluations.append(RetrievalEvaluation(mode, False, scores))
            if pipeline is not None:
                scores = evaluate(reranked, qrels, ndcg_k=ndcg_k, recall_k=recall_k)
                evaluations.append(RetrievalEvaluation(mode, True, scores, rerank_seconds / len(qrels) * 1000.0))
    finally:
        if connection is not client:
            connection.close()
    return evaluations
