"""LLM rerankers over HTTP: VLLMReranker's prompt_format= and instruction= against the loopback server.

What a vLLM server does with the texts is taken from vLLM 0.32's scoring code: without
``--chat-template`` an LLM reranker's (query, document) pair is tokenized as ``query + document``
(no separator), and with one, the raw texts go through the template with the request's
``instruction``. The parity test serves a tiny generated Qwen3 reranker the first way and checks
the client-wrapped scores against sentence-transformers on the same weights.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import pytest
from helpers import Caller

from milvus_rerank import VLLMReranker, model_ranker
from milvus_rerank.rerankers.contract import check_rerank_args, rank
from milvus_rerank.rerankers.prompts import QWEN3, PromptFormat
from milvus_rerank.testing.server import RerankTestServer, WordOverlapReranker
from milvus_rerank.types import RerankResult

QUERY = "what is milvus used for?"
DOCUMENTS = [
    "Milvus is a vector database for similarity search over embeddings.",
    "Bananas are yellow.",
    "A {document} placeholder and {braces} stay as they are.",
    "The study found no effect of the treatment on cancer risk in patients.",
    "yes",
]
INSTRUCTION = "Given a claim, find the abstracts that support or refute it"

# The Qwen3-Reranker model card's prompt, written out here rather than taken from prompts.py.
CARD_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
CARD_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
CARD_DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def card_query(query: str, instruction: str = CARD_DEFAULT_INSTRUCTION) -> str:
    return f"{CARD_PREFIX}<Instruct>: {instruction}\n<Query>: {query}\n"


def card_document(document: str) -> str:
    return f"<Document>: {document}{CARD_SUFFIX}"


# -- what goes over the wire ----------------------------------------------------------------------


@pytest.mark.parametrize("instruction", [None, INSTRUCTION])
def test_qwen3_sends_the_model_card_prompt_split_at_the_document(
    server: RerankTestServer, call: Caller, instruction: str | None
) -> None:
    reranker = VLLMReranker(server.url, model=server.model_name, prompt_format="qwen3", instruction=instruction)
    results = call(reranker, QUERY, DOCUMENTS)

    (record,) = server.rerank_requests
    wrapped_query = card_query(QUERY, instruction or CARD_DEFAULT_INSTRUCTION)
    assert record.body["query"] == wrapped_query
    assert record.body["documents"] == [card_document(document) for document in DOCUMENTS]
    # The instruction is inside the prompt: no field for a server template to apply a second time.
    assert "instruction" not in record.body
    assert "chat_template_kwargs" not in record.body
    # The server scored the wrapped texts, and the results point into the caller's list.
    assert results == WordOverlapReranker().rerank(wrapped_query, [card_document(d) for d in DOCUMENTS])


def test_every_batch_carries_the_wrapped_query_and_results_point_into_the_callers_list(
    server: RerankTestServer, call: Caller
) -> None:
    documents = [f"doc {i}: milvus {'vector ' * (i % 4)}search" for i in range(9)]
    reranker = VLLMReranker(server.url, model=server.model_name, prompt_format="qwen3", max_batch_size=4)
    results = call(reranker, QUERY, documents, top_n=5)

    records = server.rerank_requests  # in the order they arrived, which concurrency leaves open
    assert sorted(len(record.body["documents"]) for record in records) == [1, 4, 4]
    assert {record.body["query"] for record in records} == {card_query(QUERY)}
    wrapped = [card_document(document) for document in documents]
    assert sorted(document for record in records for document in record.body["documents"]) == sorted(wrapped)
    assert results == WordOverlapReranker().rerank(card_query(QUERY), wrapped, top_n=5)


def test_a_users_templates_wrap_the_texts_once_each(server: RerankTestServer, call: Caller) -> None:
    own = PromptFormat("Task: {instruction}\nQ: {query}\n", "D: {document}\nRelevant:", default_instruction="rank")
    reranker = VLLMReranker(server.url, model=server.model_name, prompt_format=own, instruction="find {query}")
    call(reranker, "{document}?", DOCUMENTS[:3])

    (record,) = server.rerank_requests
    assert record.body["query"] == "Task: find {query}\nQ: {document}?\n"
    assert record.body["documents"] == [f"D: {document}\nRelevant:" for document in DOCUMENTS[:3]]


def test_without_a_prompt_format_the_texts_go_as_they_are_and_the_instruction_in_its_field(
    server: RerankTestServer, call: Caller
) -> None:
    call(VLLMReranker(server.url, model=server.model_name, instruction=INSTRUCTION), QUERY, DOCUMENTS)
    call(VLLMReranker(server.url, model=server.model_name), QUERY, DOCUMENTS)

    with_instruction, plain = server.rerank_requests
    assert (with_instruction.body["query"], with_instruction.body["documents"]) == (QUERY, DOCUMENTS)
    assert with_instruction.body["instruction"] == INSTRUCTION
    assert (plain.body["query"], plain.body["documents"]) == (QUERY, DOCUMENTS)
    assert "instruction" not in plain.body


# -- construction -----------------------------------------------------------------------------------


def test_the_options_are_checked_at_construction() -> None:
    url = "http://127.0.0.1:1"
    with pytest.raises(ValueError, match=r"unknown prompt_format 'qwen4'.*'qwen3'"):
        VLLMReranker(url, prompt_format="qwen4")
    with pytest.raises(TypeError, match="prompt_format must be"):
        VLLMReranker(url, prompt_format=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="instruction must be a str or None, got int"):
        VLLMReranker(url, instruction=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="instruction is blank"):
        VLLMReranker(url, instruction="  ")
    no_slot = PromptFormat("Q: {query}\n", "D: {document}")
    with pytest.raises(ValueError, match=r"no \{instruction\} placeholder"):
        VLLMReranker(url, prompt_format=no_slot, instruction=INSTRUCTION)
    with pytest.raises(ValueError, match="needs an instruction and has no default"):
        VLLMReranker(url, prompt_format=PromptFormat("{instruction} {query}", "{document}"))
    for extra in ({"instruction": "x"}, {"chat_template_kwargs": {"instruction": "x"}}):
        with pytest.raises(ValueError, match="pass it once"):
            VLLMReranker(url, instruction=INSTRUCTION, extra_body=extra)
    assert VLLMReranker(url, prompt_format=" Qwen3 ").prompt_format is QWEN3
    # Alone, the extra_body spelling stays the user's to choose.
    VLLMReranker(url, extra_body={"instruction": "x"})


def test_truncation_with_a_prompt_format_warns_at_the_callers_line() -> None:
    with pytest.warns(UserWarning, match="truncate_prompt_tokens cuts an over-long prompt at its end") as caught:
        VLLMReranker("http://127.0.0.1:1", prompt_format="qwen3", truncate_prompt_tokens=-1)
    assert [Path(w.filename).name for w in caught] == [Path(__file__).name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        VLLMReranker("http://127.0.0.1:1", truncate_prompt_tokens=-1)
        VLLMReranker("http://127.0.0.1:1", prompt_format="qwen3")


# -- the Milvus server Function sends raw strings ---------------------------------------------------


def test_the_milvus_function_warns_that_milvus_sends_neither_prompt_nor_instruction() -> None:
    wrapped = VLLMReranker("http://vllm:8000", prompt_format="qwen3", instruction=INSTRUCTION)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        function = model_ranker(wrapped, "what is milvus?")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2
    assert "without the 'qwen3' prompt format" in messages[0]
    assert "--chat-template" in messages[0]
    assert "Milvus sends no instruction" in messages[1]
    assert {Path(w.filename).name for w in caught} == {Path(__file__).name}
    # What Milvus gets is the plain query: the prompt is not smuggled into the Function either.
    assert function.params["queries"] == ["what is milvus?"]

    own = PromptFormat("Q: {query}\n", "D: {document}")
    with pytest.warns(UserWarning, match="without the 'custom' prompt format"):
        model_ranker(VLLMReranker("http://vllm:8000", prompt_format=own), "q")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model_ranker(VLLMReranker("http://vllm:8000"), "q")


# -- parity: a server without --chat-template, wrapped on the client, scores as sentence-transformers -


class JoinedPromptScorer:
    """Scores as vLLM 0.32 does for an LLM reranker served without ``--chat-template``.

    vLLM's cross-encoder path (``use_sep_token`` is false for LLM rerankers converted to sequence
    classification) tokenizes ``query + document`` as one text with the tokenizer's special tokens
    and applies the one-label head's sigmoid.
    """

    def __init__(self, path: Path) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        documents = check_rerank_args(query, documents, top_n)
        scores = []
        with self.torch.inference_mode():
            for document in documents:
                encoded = self.tokenizer(query + document, add_special_tokens=True, return_tensors="pt")
                scores.append(float(self.torch.sigmoid(self.model(**encoded).logits[0, 0])))
        return rank([RerankResult(index, score) for index, score in enumerate(scores)], top_n)

    async def arerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        return self.rerank(query, documents, top_n=top_n)


@pytest.fixture(scope="module")
def qwen3_saves(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same tiny Qwen3 reranker (one seed) as a sentence-transformers save and as its seq-cls conversion."""
    from milvus_rerank.testing.causal_models import make_llm_reranker

    root = tmp_path_factory.mktemp("llm-http")
    texts = [QUERY, *DOCUMENTS]
    st = make_llm_reranker(root / "st", save_format="sentence-transformers", texts=texts, seed=5)
    seq_cls = make_llm_reranker(root / "seq-cls", save_format="sequence-classification", texts=texts, seed=5)
    return st, seq_cls


def by_index(results: list[RerankResult]) -> list[float]:
    return [result.score for result in sorted(results, key=lambda result: result.index)]


@pytest.mark.parametrize("instruction", [None, INSTRUCTION])
def test_client_wrapping_on_a_server_without_template_scores_as_sentence_transformers(
    qwen3_saves: tuple[Path, Path], instruction: str | None
) -> None:
    # The reference reads a sentence-transformers 6 save (LogitScore); older releases cannot load it.
    pytest.importorskip("sentence_transformers", minversion="6.2")
    from sentence_transformers import CrossEncoder

    st_path, seq_cls_path = qwen3_saves
    reference = CrossEncoder(str(st_path), device="cpu").predict(
        [(QUERY, document) for document in DOCUMENTS], prompt=instruction
    )
    with (
        RerankTestServer(JoinedPromptScorer(seq_cls_path)) as server,
        VLLMReranker(server.url, prompt_format="qwen3", instruction=instruction, max_batch_size=2) as wrapped,
        VLLMReranker(server.url, instruction=instruction) as unwrapped,
    ):
        ours = by_index(wrapped.rerank(QUERY, DOCUMENTS))
        raw = by_index(unwrapped.rerank(QUERY, DOCUMENTS))
    assert all(abs(a - b) <= 1e-5 * max(1.0, abs(b)) for a, b in zip(ours, reference.tolist(), strict=True))
    # Sent as they are, the same texts score differently: the check above is not vacuous.
    assert max(abs(a - b) for a, b in zip(raw, reference.tolist(), strict=True)) > 1e-3
