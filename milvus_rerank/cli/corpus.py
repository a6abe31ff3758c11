"""The demo corpus: the handbook of Lumen Ridge Observatory, and the questions the demo asks it.

The corpus (``milvus_rerank/cli/data/demo_corpus.jsonl``) describes a fictional mountain
observatory and was written for this project. It is a good RAG test because no language model
knows its facts, and it is full of near misses: the dome, the roll-off roof and the shuttle all
have wind limits; raw frames, reduced frames and test frames are kept for different times. The
first stage finds all of them; the reranker has to pick the right one.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING

from milvus_rerank.chunking import Chunk, read_jsonl_documents

if TYPE_CHECKING:
    from pymilvus import MilvusClient

__all__ = ["DEMO_COLLECTION", "DEMO_QUESTIONS", "ingest_corpus", "load_corpus"]

DEMO_COLLECTION = "lumen_ridge_handbook"
"""Name of the Milvus collection the demo creates."""

DEMO_QUESTIONS: tuple[str, ...] = (
    "At what wind speed does the dome of the main telescope have to close?",
    "How long do I keep exclusive rights to my observations before anyone else can use them?",
    "What should I do if I get a headache and feel dizzy on the summit?",
    "When are proposals for semester B due?",
    "How far in advance must a laser guide star night be announced to air traffic control?",
)
"""Questions the demo corpus answers, each with near-miss passages that a first stage also finds."""

_CORPUS_FILE = "demo_corpus.jsonl"


def load_corpus() -> list[Chunk]:
    """Load the demo corpus shipped with the package.

    Returns:
        About fifty passages, each with ``title``, ``source`` and ``section`` metadata.
    """
    with resources.as_file(resources.files("milvus_rerank.cli") / "data" / _CORPUS_FILE) as path:
        return read_jsonl_documents(path)


def ingest_corpus(
    client_or_uri: MilvusClient | str,
    collection_name: str,
    embedding: object,
    *,
    documents: Sequence[Chunk] | None = None,
    show_progress: bool = True,
) -> int:
    """Create the standard RAG collection (dense + BM25 sparse) if needed and upsert the corpus into it.

    Running it twice leaves the collection as after once (rows are upserted by id).

    Args:
        client_or_uri: A ``pymilvus.MilvusClient`` or a URI (``./demo.db`` for Milvus Lite).
        collection_name: The collection to create or fill.
        embedding: The dense embedding (a sentence-transformers model, a LangChain or LlamaIndex
            embedding, or a callable ``str -> list[float]``).
        documents: What to ingest; default the demo corpus (:func:`load_corpus`).
        show_progress: Show a progress bar on stderr.

    Returns:
        The number of documents upserted.

    Raises:
        SchemaError: The collection exists with a different dense dimension.
        RetrievalError: Milvus failed to connect, or to create, fill or flush the collection.
    """
    from milvus_rerank.milvus import create_rag_collection, ingest
    from milvus_rerank.milvus.connection import connect
    from milvus_rerank.milvus.embeddings import as_query_embedder

    chunks = load_corpus() if documents is None else list(documents)
    client = connect(client_or_uri) if isinstance(client_or_uri, str) else client_or_uri
    try:
        dim = len(as_query_embedder(embedding)("dimension probe"))
        create_rag_collection(client, collection_name, dim=dim, exist_ok=True)
        return ingest(client, collection_name, chunks, embedding=embedding, show_progress=show_progress)
    finally:
        if client is not client_or_uri:
            client.close()
