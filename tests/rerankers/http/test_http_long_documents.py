"""long_documents="windows" on HTTP rerankers: windows cut on the client, scored as the local reranker scores them.

The loopback server scores with a local :class:`CrossEncoderReranker` on a tiny generated model (its
default policy, truncation, which never cuts a window), so the HTTP reranker's windowed scores must equal
the local windowed scores on the same weights; the real vLLM server does the same in
tests/integration/test_live_long_documents.py.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from milvus_rerank import CohereReranker, CrossEncoderReranker, TEIReranker, VLLMReranker
from milvus_rerank.testing.models import make_cross_encoder
from milvus_rerank.testing.server import RerankTestServer

QUERY = "what role does the protein play in cancer cells"
WORDS = "the protein is expressed in cancer cells , while mice with reduced levels of the gene showed effects".split()
DOCUMENTS = [  # words in no repeating pattern: no two windows are the same text (a tie)
    " ".join(random.Random(1).choices(WORDS, k=90)),
    "the protein in cancer cells",
    "",
    " ".join(random.Random(2).choices(WORDS, k=40)),
]
MAX_LENGTH = 32


def documents_of(body: dict) -> list[str]:
    return list(body.get("documents") or body.get("texts") or [])


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cross_encoder(tmp_path_factory.mktemp("ce") / "model", texts=[QUERY, *WORDS], seed=2)


@pytest.fixture(scope="module")
def local(model: Path) -> CrossEncoderReranker:
    return CrossEncoderReranker(model, device="cpu", dtype="float32", max_length=MAX_LENGTH, long_documents="windows")


@pytest.mark.parametrize(("cls", "flavor"), [(VLLMReranker, "vllm"), (TEIReranker, "tei"), (CohereReranker, "vllm")])
def test_windowed_scores_over_http_equal_the_local_ones(
    model: Path, local: CrossEncoderReranker, cls: type, flavor: str
) -> None:
    want = local.rerank(QUERY, DOCUMENTS, top_n=3)
    assert any(result.span is not None for result in want)
    scorer = CrossEncoderReranker(model, device="cpu", dtype="float32", max_length=512)
    response_shape = "cohere" if cls is CohereReranker else "vllm"
    with RerankTestServer(scorer, flavor=flavor, response_shape=response_shape) as server:  # type: ignore[arg-type]
        options = {"model": "tiny-reranker"} if cls is not TEIReranker else {}
        with cls(
            server.url,
            long_documents="windows",
            tokenizer=str(model),
            max_length=MAX_LENGTH,
            max_batch_size=4,
            **options,
        ) as reranker:
            got = reranker.rerank(QUERY, DOCUMENTS, top_n=3)
            agot = asyncio.run(reranker.arerank(QUERY, DOCUMENTS, top_n=3))
        sent = [text for record in server.rerank_requests for text in documents_of(record.body)]
    assert [(r.index, r.span) for r in got] == [(r.index, r.span) for r in want]
    assert all(abs(a.score - b.score) <= 1e-5 * max(1.0, abs(b.score)) for a, b in zip(got, want, strict=True))
    assert agot == got
    # The local reranker's windows went to the server as documents (once per path).
    call = local._windows(local._scoring_engine(), QUERY, [d for d in DOCUMENTS if d], MAX_LENGTH)
    assert call.windows > 3
    assert sorted(sent) == sorted(call.texts * 2)


def test_windows_without_a_tokenizer_are_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="tokenizer="):
        VLLMReranker("http://127.0.0.1:1", long_documents="windows")
    with pytest.raises(ValueError, match="long_documents"):
        VLLMReranker("http://127.0.0.1:1", long_documents="split")
    with pytest.raises(TypeError, match="tokenizer"):
        VLLMReranker("http://127.0.0.1:1", long_documents="windows", tokenizer=3)


def test_truncate_sends_documents_as_they_are(server: RerankTestServer) -> None:
    with VLLMReranker(server.url, model="tiny-reranker") as reranker:
        results = reranker.rerank(QUERY, DOCUMENTS)
    assert all(result.span is None for result in results)
    assert [text for record in server.rerank_requests for text in documents_of(record.body)] == [
        d for d in DOCUMENTS if d.strip()
    ]


def test_vllm_server_side_cuts_are_sent(server: RerankTestServer) -> None:
    with VLLMReranker(server.url, model="tiny-reranker", max_tokens_per_doc=100, max_tokens_per_query=20) as reranker:
        reranker.rerank(QUERY, DOCUMENTS[:2])
    body = server.rerank_requests[-1].body
    assert body["max_tokens_per_doc"] == 100
    assert body["max_tokens_per_query"] == 20
