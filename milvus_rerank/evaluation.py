"""Retrieval quality on BEIR-format datasets: loading and the metrics (nDCG@k, recall@k).

A BEIR folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
``text``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score`` with a header line).
Used by ``milvus-rerank eval`` and ``benchmarks/retrieval_quality.py``, so both compute the same
numbers. The metrics follow BEIR's (``pytrec_eval``): nDCG with linear gains and recall as the
share of a query's relevant documents found in the first k, each averaged over the queries.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from milvus_rerank.chunking import json_lines

__all__ = ["BeirDataset", "Scores", "evaluate", "load_beir", "ndcg_at_k", "recall_at_k"]

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
