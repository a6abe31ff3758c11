"""A tiny Qwen3 reranker on a real vLLM server, loaded with --hf-overrides, with and without --chat-template.

Qwen3-Reranker is a causal LM scored on the "yes" / "no" logits at the end of its prompt. vLLM
reads it as a one-label classifier through ``--hf-overrides``; the prompt comes either from the
client (``prompt_format="qwen3"``, on a server without a chat template) or from the server's
``--chat-template`` (plain texts from the client). Both must score as the same weights do locally.
"""

from __future__ import annotations

import asyncio

import pytest

from milvus_rerank import CrossEncoderReranker, RerankResult, VLLMReranker

pytestmark = pytest.mark.integration

TOLERANCE = 1e-4
"""Measured: about 1e-6 between the server and the local float32 run of this 2-layer model."""

QUERY = "what is milvus"
DOCUMENTS = [
    "milvus is a vector database for similarity search",
    "cancer cells protein gene",
    "the answer is yes",
    "a b c",
    "reranking retrieval over embeddings",
    "the study of the disease in patients",
]
INSTRUCTION = "Judge whether the passage is about vector databases"


def scores(results: list[RerankResult]) -> list[float]:
    return [score for _, score in sorted((r.index, r.score) for r in results)]


@pytest.fixture(scope="module")
def plain(vllm_server):
    return vllm_server("qwen3")


@pytest.fixture(scope="module")
def templated(vllm_server):
    return vllm_server("qwen3-chat-template")


@pytest.fixture(scope="module")
def local(plain) -> CrossEncoderReranker:
    return CrossEncoderReranker(str(plain.model_dir), device="cpu", dtype="float32", prompt_format="qwen3")


def test_without_chat_template_the_client_prompt_scores_as_locally(plain, local: CrossEncoderReranker) -> None:
    want = local.rerank(QUERY, DOCUMENTS)
    assert want[0].score - want[-1].score > 0.05, "the test model must tell these documents apart"
    with VLLMReranker(plain.url, prompt_format="qwen3", max_batch_size=4) as reranker:
        sync = reranker.rerank(QUERY, DOCUMENTS)
        asynchronous = asyncio.run(reranker.arerank(QUERY, DOCUMENTS, top_n=3))
        assert reranker.model == plain.model  # discovered
    assert [r.index for r in sync] == [r.index for r in want]
    assert scores(sync) == pytest.approx(scores(want), abs=TOLERANCE)
    assert [r.index for r in asynchronous] == [r.index for r in want[:3]]


def test_with_chat_template_plain_texts_score_as_locally(templated, local: CrossEncoderReranker) -> None:
    want = local.rerank(QUERY, DOCUMENTS)
    with VLLMReranker(templated.url) as reranker:
        got = reranker.rerank(QUERY, DOCUMENTS)
    assert [r.index for r in got] == [r.index for r in want]
    assert scores(got) == pytest.approx(scores(want), abs=TOLERANCE)


def test_the_instruction_reaches_a_client_prompt(plain) -> None:
    local = CrossEncoderReranker(
        str(plain.model_dir), device="cpu", dtype="float32", prompt_format="qwen3", instruction=INSTRUCTION
    )
    want = local.rerank(QUERY, DOCUMENTS)
    with VLLMReranker(plain.url, prompt_format="qwen3", instruction=INSTRUCTION) as reranker:
        got = reranker.rerank(QUERY, DOCUMENTS)
    assert scores(got) == pytest.approx(scores(want), abs=TOLERANCE)


@pytest.mark.xfail(
    strict=True,
    reason="vLLM hands the request's `instruction` to the template as the variable `instruction`; "
    "testing.causal_models.reranker_chat_template reads it from a system message only",
)
def test_the_instruction_reaches_the_server_chat_template(plain, templated) -> None:
    local = CrossEncoderReranker(
        str(plain.model_dir), device="cpu", dtype="float32", prompt_format="qwen3", instruction=INSTRUCTION
    )
    with VLLMReranker(templated.url, instruction=INSTRUCTION) as reranker:
        got = reranker.rerank(QUERY, DOCUMENTS)
    assert scores(got) == pytest.approx(scores(local.rerank(QUERY, DOCUMENTS)), abs=TOLERANCE)


def test_a_prompt_missing_or_applied_twice_scores_otherwise(plain, templated, local: CrossEncoderReranker) -> None:
    # What the two tests above guard against: the same weights score other texts, and rank at random.
    want = scores(local.rerank(QUERY, DOCUMENTS))
    with VLLMReranker(plain.url) as no_prompt, VLLMReranker(templated.url, prompt_format="qwen3") as twice:
        for reranker in (no_prompt, twice):
            got = scores(reranker.rerank(QUERY, DOCUMENTS))
            assert max(abs(a - b) for a, b in zip(got, want, strict=True)) > 0.01
