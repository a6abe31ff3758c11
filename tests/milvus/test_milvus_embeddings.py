"""Embedding adaptation: plain callables, LangChain, LlamaIndex and sentence-transformers, by duck typing."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from milvus_rerank.milvus.embeddings import (
    as_document_embedder,
    as_query_embedder,
    as_sparse_document_encoder,
    as_sparse_query_encoder,
    to_sparse_vector,
    to_vector,
)


def test_module_imports_no_framework() -> None:
    code = (
        "import sys, milvus_rerank.milvus.embeddings, milvus_rerank.milvus.retriever, milvus_rerank.milvus.collection\n"
        "print(','.join(m for m in ('langchain_core', 'llama_index', 'sentence_transformers', 'torch') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_plain_callable_numpy_output_becomes_list_of_floats() -> None:
    embed = as_query_embedder(lambda text: np.array([len(text), 0.5], dtype=np.float32))
    vector = embed("abc")
    assert vector == [3.0, 0.5]
    assert all(type(x) is float for x in vector)
    documents = as_document_embedder(lambda text: [float(len(text))])
    assert documents(["a", "bcd"]) == [[1.0], [3.0]]
    assert documents([]) == []


def test_sentence_transformers_model(minilm: Any) -> None:
    query = as_query_embedder(minilm)("solar power")
    assert len(query) == 384
    expected = minilm.encode_query("solar power")
    assert np.allclose(query, expected, atol=1e-6)
    documents = as_document_embedder(minilm)(["solar power", "wind power"])
    assert len(documents) == 2
    assert np.allclose(documents[0], minilm.encode_document("solar power"), atol=1e-5)


def test_sentence_transformers_without_encode_query_uses_encode(minilm: Any) -> None:
    class OldModel:  # sentence-transformers < 5 had only encode
        def encode(self, texts: Any, convert_to_numpy: bool = True) -> Any:
            return minilm.encode(texts, convert_to_numpy=convert_to_numpy)

    assert np.allclose(as_query_embedder(OldModel())("wind"), minilm.encode("wind"), atol=1e-6)
    assert len(as_document_embedder(OldModel())(["a", "b", "c"])) == 3


def test_langchain_embeddings(minilm: Any) -> None:
    from langchain_core.embeddings import Embeddings

    class MiniLMEmbeddings(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return minilm.encode(texts).tolist()

        def embed_query(self, text: str) -> list[float]:
            return [float(x) + 1.0 for x in minilm.encode(text)]  # distinguishable from the document path

    embedding = MiniLMEmbeddings()
    assert np.allclose(as_query_embedder(embedding)("tea"), minilm.encode("tea") + 1.0, atol=1e-6)
    assert np.allclose(as_document_embedder(embedding)(["tea"])[0], minilm.encode("tea"), atol=1e-6)


def test_llamaindex_embedding(minilm: Any) -> None:
    from llama_index.core.embeddings import BaseEmbedding

    class MiniLMEmbedding(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return [float(x) * 2.0 for x in minilm.encode(query)]

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return minilm.encode(text).tolist()

    embedding = MiniLMEmbedding(model_name="minilm")
    assert np.allclose(as_query_embedder(embedding)("tea"), minilm.encode("tea") * 2.0, atol=1e-6)
    batch = as_document_embedder(embedding)(["tea", "coffee"])
    assert np.allclose(batch[1], minilm.encode("coffee"), atol=1e-6)


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        ("not a vector", TypeError, "sequence of floats"),
        ([[0.1, 0.2]], TypeError, "flat sequence"),
        ([], ValueError, "empty"),
        ([0.1, float("nan")], ValueError, "NaN"),
        (np.array([np.inf]), ValueError, "NaN or infinity"),
        (None, TypeError, "NoneType"),
    ],
)
def test_bad_vectors_are_refused(bad: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        as_query_embedder(lambda text: bad)("query")


def test_unsupported_embedding_object() -> None:
    with pytest.raises(TypeError, match="LangChain Embeddings"):
        as_query_embedder(object())
    with pytest.raises(TypeError, match="sentence-transformers"):
        as_document_embedder(42)


def test_document_embedder_checks_vector_count() -> None:
    class Short:
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [[1.0]]

    with pytest.raises(ValueError, match="1 vectors for 2 texts"):
        as_document_embedder(Short())(["a", "b"])


def test_to_vector_reports_its_source() -> None:
    with pytest.raises(TypeError, match="my model"):
        to_vector("x", source="my model")


def test_sparse_vectors_from_dicts_and_scipy() -> None:
    from scipy.sparse import csr_array, csr_matrix

    assert to_sparse_vector({3: 1, 7: 0.5}) == {3: 1.0, 7: 0.5}
    row = csr_matrix(np.array([[0.0, 2.0, 0.0, 0.5]]))
    assert to_sparse_vector(row) == {1: 2.0, 3: 0.5}
    assert to_sparse_vector(csr_array(np.array([[0.0, 1.5]]))) == {1: 1.5}
    with pytest.raises(TypeError, match="one row"):
        to_sparse_vector(csr_matrix(np.eye(2)))
    with pytest.raises(TypeError, match="int indices"):
        to_sparse_vector({"a": 1.0})
    with pytest.raises(ValueError, match="negative"):
        to_sparse_vector({-1: 1.0})
    with pytest.raises(ValueError, match="NaN"):
        to_sparse_vector({1: float("nan")})
    with pytest.raises(TypeError, match="dict"):
        to_sparse_vector([1.0, 2.0])


def test_sparse_encoders_pymilvus_model_style() -> None:
    from scipy.sparse import csr_matrix

    class Encoder:  # the pymilvus.model interface: batches in, one CSR matrix out
        def encode_queries(self, texts: list[str]) -> Any:
            return csr_matrix(np.array([[len(t), 0.0, 1.0] for t in texts]))

        def encode_documents(self, texts: list[str]) -> Any:
            return csr_matrix(np.array([[0.0, len(t), 0.0] for t in texts]))

    assert as_sparse_query_encoder(Encoder())("abcd") == {0: 4.0, 2: 1.0}
    assert as_sparse_document_encoder(Encoder())(["a", "bb"]) == [{1: 1.0}, {1: 2.0}]


def test_sparse_encoders_callable_and_embed_query() -> None:
    assert as_sparse_query_encoder(lambda text: {len(text): 1.0})("abc") == {3: 1.0}
    assert as_sparse_document_encoder(lambda text: {len(text): 1.0})(["a", "bb"]) == [{1: 1.0}, {2: 1.0}]

    class LangChainSparse:
        def embed_query(self, text: str) -> dict[int, float]:
            return {1: 0.5}

        def embed_documents(self, texts: list[str]) -> list[dict[int, float]]:
            return [{2: 0.25} for _ in texts]

    assert as_sparse_query_encoder(LangChainSparse())("q") == {1: 0.5}
    assert as_sparse_document_encoder(LangChainSparse())(["a"]) == [{2: 0.25}]
    with pytest.raises(TypeError, match="sparse_embedding must be"):
        as_sparse_query_encoder(3.5)
