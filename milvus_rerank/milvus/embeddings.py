"""Adapt the embedding objects of several ecosystems to two plain functions.

Milvus retrieval needs a query vector, ingestion needs document vectors. Users bring whatever
embedding they already have; this module recognises them by duck typing, so neither LangChain,
LlamaIndex nor sentence-transformers is imported here:

- a plain callable ``str -> Sequence[float]``;
- a LangChain ``Embeddings`` (``embed_query`` / ``embed_documents``);
- a LlamaIndex embedding (``get_query_embedding`` / ``get_text_embedding_batch``);
- a sentence-transformers model (``encode_query`` / ``encode_document`` when present, else ``encode``).

Every vector comes back as a ``list[float]`` of finite numbers, whatever the source returned
(NumPy arrays, tensors' ``tolist``, tuples).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "DocumentEmbedder",
    "QueryEmbedder",
    "SparseVector",
    "as_document_embedder",
    "as_query_embedder",
    "as_sparse_document_encoder",
    "as_sparse_query_encoder",
    "to_sparse_vector",
    "to_vector",
]

QueryEmbedder = Callable[[str], list[float]]
"""A function from one query text to its vector."""

DocumentEmbedder = Callable[[Sequence[str]], list[list[float]]]
"""A function from a batch of document texts to one vector each, in order."""

SparseVector = dict[int, float]
"""A sparse vector as Milvus takes it: dimension index -> weight."""

_KINDS = (
    "a callable str -> list[float], a LangChain Embeddings, a LlamaIndex embedding or a sentence-transformers model"
)


def to_vector(value: Any, *, source: str = "embedding") -> list[float]:
    """Convert one embedding output to a ``list[float]`` and check it.

    Args:
        value: A 1-D sequence of numbers, or an object with ``tolist()`` (NumPy, torch).
        source: What produced the value, for the error message.

    Raises:
        TypeError: The value is not a 1-D sequence of numbers.
        ValueError: The vector is empty or holds NaN or infinity.
    """
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{source} must return a sequence of floats, got {type(value).__name__}")
    try:
        vector = [float(x) for x in value]
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{source} must return a flat sequence of floats (one vector per text), got an element that is not a number"
        ) from exc
    if not vector:
        raise ValueError(f"{source} returned an empty vector")
    # The sum is finite exactly when every element is (barring overflow, which the slow check settles).
    if not math.isfinite(sum(vector)) and not all(math.isfinite(x) for x in vector):
        raise ValueError(f"{source} returned a vector holding NaN or infinity")
    return vector


def as_query_embedder(embedding: object) -> QueryEmbedder:
    """Return a function embedding one query with ``embedding``.

    Args:
        embedding: A plain callable, a LangChain ``Embeddings``, a LlamaIndex embedding or a
            sentence-transformers model (see the module docstring for the order of checks).

    Raises:
        TypeError: ``embedding`` is none of the supported kinds.
    """
    method: Callable[[str], Any]
    name: str
    if hasattr(embedding, "embed_query"):  # LangChain Embeddings
        method, name = embedding.embed_query, "embed_query"
    elif hasattr(embedding, "get_query_embedding"):  # LlamaIndex BaseEmbedding
        method, name = embedding.get_query_embedding, "get_query_embedding"
    elif hasattr(embedding, "encode_query"):  # sentence-transformers >= 5: applies the model's query prompt
        encode_query = embedding.encode_query
        method, name = (lambda text: encode_query(text, convert_to_numpy=True)), "encode_query"
    elif hasattr(embedding, "encode"):  # older sentence-transformers and look-alikes
        encode = embedding.encode
        method, name = (lambda text: encode(text, convert_to_numpy=True)), "encode"
    elif callable(embedding):
        method, name = embedding, "the embedding callable"
    else:
        raise TypeError(f"embedding must be {_KINDS}; got {type(embedding).__name__}")
    source = f"{type(embedding).__name__}.{name}" if name != "the embedding callable" else name

    def embed_query(text: str) -> list[float]:
        return to_vector(method(text), source=source)

    return embed_query


def as_document_embedder(embedding: object) -> DocumentEmbedder:
    """Return a function embedding a batch of documents with ``embedding``.

    Batch methods are used where the object has them (``embed_documents``,
    ``get_text_embedding_batch``, ``encode_document``/``encode``); a plain callable is called
    once per text.

    Raises:
        TypeError: ``embedding`` is none of the supported kinds.
    """
    method: Callable[[list[str]], Any]
    if hasattr(embedding, "embed_documents"):
        method = embedding.embed_documents
    elif hasattr(embedding, "get_text_embedding_batch"):
        method = embedding.get_text_embedding_batch
    elif hasattr(embedding, "encode_document"):
        encode_document = embedding.encode_document
        method = lambda texts: encode_document(texts, convert_to_numpy=True)  # noqa: E731
    elif hasattr(embedding, "encode"):
        encode = embedding.encode
        method = lambda texts: encode(texts, convert_to_numpy=True)  # noqa: E731
    elif callable(embedding):
        single = embedding
        method = lambda texts: [single(text) for text in texts]  # noqa: E731
    else:
        raise TypeError(f"embedding must be {_KINDS}; got {type(embedding).__name__}")
    source = f"{type(embedding).__name__} (document embedding)"

    def embed_documents(texts: Sequence[str]) -> list[list[float]]:
        batch = list(texts)
        if not batch:
            return []
        raw = method(batch)
        if hasattr(raw, "tolist"):
            raw = raw.tolist()
        vectors = [to_vector(item, source=source) for item in raw]
        if len(vectors) != len(batch):
            raise ValueError(f"{source} returned {len(vectors)} vectors for {len(batch)} texts")
        return vectors

    return embed_documents


_SPARSE_KINDS = (
    "a callable str -> dict[int, float] (or a one-row SciPy sparse matrix), an object with encode_queries / "
    "encode_documents (pymilvus.model) or with embed_query / embed_documents (langchain-milvus sparse embeddings)"
)


def to_sparse_vector(value: Any, *, source: str = "sparse encoder") -> SparseVector:
    """Convert one sparse encoder output to ``{index: weight}`` and check it.

    Args:
        value: A mapping of index to weight, or a one-row SciPy sparse matrix/array (anything
            with ``tocoo()``).
        source: What produced the value, for the error message.

    Raises:
        TypeError: The value is neither a mapping nor a sparse matrix, or holds non-numbers.
        ValueError: A weight is NaN or infinite, or an index is negative.
    """
    if hasattr(value, "tocoo"):
        coo = value.tocoo()
        if len(coo.shape) == 2 and coo.shape[0] != 1:
            raise TypeError(f"{source} must return one row per text, got a matrix with {coo.shape[0]} rows")
        columns = coo.col if hasattr(coo, "col") else coo.coords[-1]
        pairs = zip(columns.tolist(), coo.data.tolist(), strict=True)
    elif isinstance(value, dict) or hasattr(value, "items"):
        pairs = value.items()
    else:
        raise TypeError(f"{source} must return a dict[int, float] or a sparse matrix row, got {type(value).__name__}")
    vector: SparseVector = {}
    for index, weight in pairs:
        if isinstance(index, bool) or not isinstance(index, int) or isinstance(weight, bool):
            raise TypeError(f"{source} must map int indices to float weights, got {index!r}: {weight!r}")
        if index < 0:
            raise ValueError(f"{source} returned a negative sparse index {index}")
        number = float(weight)
        if not math.isfinite(number):
            raise ValueError(f"{source} returned a sparse weight that is NaN or infinite")
        vector[index] = number
    return vector


def as_sparse_query_encoder(encoder: object) -> Callable[[str], SparseVector]:
    """Return a function encoding one query with a user sparse encoder (not Milvus's BM25 function).

    Raises:
        TypeError: ``encoder`` is none of the supported kinds.
    """
    method: Callable[[str], Any]
    if hasattr(encoder, "encode_queries"):  # pymilvus.model sparse functions: batch in, CSR matrix out
        encode_queries = encoder.encode_queries
        method = lambda text: _first_row(encode_queries([text]))  # noqa: E731
    elif hasattr(encoder, "embed_query"):
        method = encoder.embed_query
    elif callable(encoder):
        method = encoder
    else:
        raise TypeError(f"sparse_embedding must be {_SPARSE_KINDS}; got {type(encoder).__name__}")
    source = f"{type(encoder).__name__} (sparse query encoder)"

    def encode_query(text: str) -> SparseVector:
        return to_sparse_vector(method(text), source=source)

    return encode_query


def as_sparse_document_encoder(encoder: object) -> Callable[[Sequence[str]], list[SparseVector]]:
    """Return a function encoding a batch of documents with a user sparse encoder.

    Raises:
        TypeError: ``encoder`` is none of the supported kinds.
    """
    method: Callable[[list[str]], Any]
    if hasattr(encoder, "encode_documents"):
        method = encoder.encode_documents
    elif hasattr(encoder, "embed_documents"):
        method = encoder.embed_documents
    elif callable(encoder):
        single = encoder
        method = lambda texts: [single(text) for text in texts]  # noqa: E731
    else:
        raise TypeError(f"sparse_embedding must be {_SPARSE_KINDS}; got {type(encoder).__name__}")
    source = f"{type(encoder).__name__} (sparse document encoder)"

    def encode_documents(texts: Sequence[str]) -> list[SparseVector]:
        batch = list(texts)
        if not batch:
            return []
        raw = method(batch)
        if hasattr(raw, "tocsr"):  # one sparse matrix for the whole batch
            csr = raw.tocsr()
            rows = [csr[i : i + 1] for i in range(csr.shape[0])]
        else:
            rows = list(raw)
        vectors = [to_sparse_vector(row, source=source) for row in rows]
        if len(vectors) != len(batch):
            raise ValueError(f"{source} returned {len(vectors)} vectors for {len(batch)} texts")
        return vectors

    return encode_documents


def _first_row(matrix: Any) -> Any:
    if hasattr(matrix, "tocsr"):
        return matrix.tocsr()[0:1]
    return matrix[0]
