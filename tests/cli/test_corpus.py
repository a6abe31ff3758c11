"""The demo corpus: its shape, its questions, and ingest_corpus into Milvus Lite."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from milvus_rerank import MilvusRetriever
from milvus_rerank.chunking import Chunk
from milvus_rerank.cli.corpus import DEMO_COLLECTION, DEMO_QUESTIONS, ingest_corpus, load_corpus


def test_corpus_is_well_formed() -> None:
    corpus = load_corpus()
    assert 40 <= len(corpus) <= 60
    assert len({doc.id for doc in corpus}) == len(corpus)
    for doc in corpus:
        assert isinstance(doc, Chunk)
        assert re.fullmatch(r"lro-\d{3}", doc.id)
        assert 60 <= len(doc.text.split()) <= 200, doc.id
        assert set(doc.metadata) == {"title", "source", "section"}, doc.id
        assert all(isinstance(value, str) and value for value in doc.metadata.values())
        assert doc.metadata["source"].startswith("handbook/")
    assert len({doc.metadata["title"] for doc in corpus}) == len(corpus)


def test_demo_questions_are_about_the_corpus() -> None:
    # Each built-in question must share content words with some passage, or the demo would be pointless.
    vocabulary = {word for doc in load_corpus() for word in re.findall(r"[a-z]+", doc.text.lower())}
    for question in DEMO_QUESTIONS:
        content = [w for w in re.findall(r"[a-z]+", question.lower()) if len(w) > 4]
        assert sum(w in vocabulary for w in content) >= 2, question


def test_ingest_corpus_creates_fills_and_reuses_the_collection(tmp_path: Path, minilm: Any) -> None:
    from pymilvus import MilvusClient

    uri = str(tmp_path / "demo.db")
    corpus = load_corpus()
    assert ingest_corpus(uri, DEMO_COLLECTION, minilm, show_progress=False) == len(corpus)
    client = MilvusClient(uri)
    try:
        # A second ingest into the existing collection upserts by id: no duplicates.
        again = [corpus[0], Chunk("extra", "An extra passage about the lodge.", {"source": "x.md"})]
        assert ingest_corpus(client, DEMO_COLLECTION, minilm, documents=again, show_progress=False) == 2
        rows = client.query(DEMO_COLLECTION, filter="", output_fields=["count(*)"])
        assert rows[0]["count(*)"] == len(corpus) + 1
        retriever = MilvusRetriever(client, DEMO_COLLECTION, embedding=minilm, limit=5)
        hits = retriever.retrieve("sodium laser guide star air traffic control notice")
    finally:
        client.close()
    assert hits[0].metadata["title"] == "Laser guide star operations"
    assert hits[0].metadata["source"] == "handbook/operations.md"
