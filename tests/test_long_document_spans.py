"""The best window of a long document, from the reranker through the pipeline to both adapters (issue 18).

A real (tiny, generated) cross-encoder with ``long_documents="windows"`` scores the documents; the
pipeline carries each result's ``span`` as the candidate's ``rerank_span`` (in the candidate's own text,
also when the reranker read a rendering with more); the LangChain compressor and the LlamaIndex
postprocessor write it to ``metadata["rerank_span"]`` and, with ``best_window=True``, return the window
instead of the chunk.
"""

from __future__ import annotations

import random

import pytest
from langchain_core.documents import Document
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from langchain_milvus_rerank import RerankCompressor
from llamaindex_milvus_rerank import RerankPostprocessor
from milvus_rerank import Candidate, CrossEncoderReranker, RerankPipeline
from milvus_rerank.rerankers.windows import span_in
from milvus_rerank.testing.models import make_cross_encoder

QUERY = "what role does the protein play in cancer cells"
WORDS = "the protein is expressed in cancer cells while mice with reduced levels of the gene showed effects".split()
LONG = " ".join(random.Random(7).choices(WORDS, k=120))
SHORT = "the protein in cancer cells"


@pytest.fixture(scope="module")
def reranker(tmp_path_factory: pytest.TempPathFactory) -> CrossEncoderReranker:
    path = make_cross_encoder(tmp_path_factory.mktemp("ce") / "model", texts=[QUERY, *WORDS], seed=6)
    return CrossEncoderReranker(path, device="cpu", dtype="float32", max_length=32, long_documents="windows")


def test_span_in_maps_a_window_into_the_content() -> None:
    assert span_in("abc def", "abc def", (4, 7)) == (4, 7)
    assert span_in("abc def", "title: x\n\nabc def", (12, 17)) == (2, 7)
    assert span_in("abc def", "title: x\n\nabc def", (0, 5)) is None  # inside the title only
    assert span_in("abc", "something else", (0, 3)) is None
    assert span_in("abc", "abc", None) is None


def test_the_pipeline_carries_the_span_in_the_candidates_own_text(reranker: CrossEncoderReranker) -> None:
    candidates = [Candidate(1, LONG), Candidate(2, SHORT)]
    expected = {r.index: r for r in reranker.rerank(QUERY, [LONG, SHORT])}
    plain = {c.id: c for c in RerankPipeline(reranker).rerank(QUERY, candidates)}
    assert plain[1].rerank_span == expected[0].span is not None
    assert plain[2].rerank_span is None
    # The reranker reads a rendering with a prefix: the span is shifted back into the candidate's text.
    prefix = "Title: proteins\n\n"
    rendered = {c.id: c for c in RerankPipeline(reranker).rerank(QUERY, candidates, texts=[prefix + LONG, SHORT])}
    span = rendered[1].rerank_span
    assert span is not None
    assert LONG[span[0] : span[1]] in prefix + LONG


@pytest.mark.parametrize("best_window", [False, True])
def test_langchain_writes_the_span_and_passes_the_best_window_on_request(
    reranker: CrossEncoderReranker, best_window: bool
) -> None:
    documents = [Document(page_content=LONG, metadata={"pk": 1}), Document(page_content=SHORT, metadata={"pk": 2})]
    out = {
        d.metadata["pk"]: d
        for d in RerankCompressor(reranker, best_window=best_window).compress_documents(documents, QUERY)
    }
    start, end = out[1].metadata["rerank_span"]
    assert "rerank_span" not in out[2].metadata
    assert out[1].page_content == (LONG[start:end] if best_window else LONG)
    assert out[2].page_content == SHORT
    assert documents[0].page_content == LONG  # the caller's documents are untouched


@pytest.mark.parametrize("best_window", [False, True])
def test_llamaindex_writes_the_span_and_passes_the_best_window_on_request(
    reranker: CrossEncoderReranker, best_window: bool
) -> None:
    nodes = [
        NodeWithScore(node=TextNode(id_="a", text=LONG, metadata={"title": "proteins"}), score=1.0),
        NodeWithScore(node=TextNode(id_="b", text=SHORT), score=0.5),
    ]
    postprocessor = RerankPostprocessor(reranker, best_window=best_window)
    out = {n.node.node_id: n for n in postprocessor.postprocess_nodes(nodes, QueryBundle(QUERY))}
    start, end = out["a"].node.metadata["rerank_span"]
    assert "rerank_span" in out["a"].node.excluded_llm_metadata_keys
    assert "rerank_span" not in out["b"].node.metadata
    text = out["a"].node.get_content(metadata_mode=MetadataMode.NONE)
    assert text == (LONG[start:end] if best_window else LONG)
    assert nodes[0].node.get_content(metadata_mode=MetadataMode.NONE) == LONG


def test_best_window_must_be_a_bool(reranker: CrossEncoderReranker) -> None:
    with pytest.raises(TypeError, match="best_window"):
        RerankCompressor(reranker, best_window="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="best_window"):
        RerankPostprocessor(reranker, best_window=1)  # type: ignore[arg-type]
