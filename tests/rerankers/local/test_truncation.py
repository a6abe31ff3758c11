"""A huge text costs what max_length keeps of it: it is cut before tokenization, to the same tokens and score."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from milvus_rerank import CrossEncoderReranker
from milvus_rerank.rerankers.local.truncation import CHARS_PER_TOKEN, MARGIN_TOKENS
from milvus_rerank.testing.models import make_cross_encoder

QUERY = "what role does the protein play in cancer cells"
WORDS = "the protein is expressed in cancer cells and increased expression is linked to risk "
MAX_LENGTH = 48
BUDGET = (MAX_LENGTH + MARGIN_TOKENS) * CHARS_PER_TOKEN


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cross_encoder(tmp_path_factory.mktemp("truncation") / "tiny-bert", seed=5)


@pytest.fixture
def longest_text(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records, for each call of a (real) tokenizer, the length of the longest text it was given."""
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    original = PreTrainedTokenizerBase.__call__
    seen: list[int] = []

    def recording(self: Any, text: Any = None, text_pair: Any = None, *args: Any, **kwargs: Any) -> Any:
        texts = [t for part in (text, text_pair) for t in ([part] if isinstance(part, str) else part or [])]
        seen.append(max((len(t) for t in texts), default=0))
        return original(self, text, text_pair, *args, **kwargs)

    monkeypatch.setattr(PreTrainedTokenizerBase, "__call__", recording)
    return seen


def test_a_huge_document_reaches_the_tokenizer_cut_and_scores_as_the_same_document_cut_by_hand(
    model: Path, longest_text: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    huge = WORDS * 20_000  # 1.7 MB
    by_hand = huge[:4_000]  # still far more than MAX_LENGTH tokens
    reranker = CrossEncoderReranker(model, device="cpu", dtype="float32", max_length=MAX_LENGTH)
    with caplog.at_level(logging.WARNING):
        (score,) = reranker.score(QUERY, [huge])
    assert caplog.text.count("were truncated") == 1  # the warning stays
    assert 0 < max(longest_text) <= BUDGET
    assert reranker.score(QUERY, [by_hand]) == [score]
    # Among other documents, in a batch, and through the ranking path alike.
    documents = ["cancer cells", huge, "the protein"]
    cut = ["cancer cells", by_hand, "the protein"]
    assert reranker.rerank(QUERY, documents) == reranker.rerank(QUERY, cut)
    assert max(longest_text) <= BUDGET


def test_a_huge_query_is_cut_too(model: Path, longest_text: list[int]) -> None:
    reranker = CrossEncoderReranker(model, device="cpu", dtype="float32", max_length=MAX_LENGTH)
    huge_query = WORDS * 20_000
    assert reranker.score(huge_query, ["cancer cells", WORDS]) == reranker.score(
        huge_query[:4_000], ["cancer cells", WORDS]
    )
    assert max(longest_text) <= BUDGET


def test_a_text_sparser_than_the_budget_assumes_is_cut_longer(model: Path, longest_text: list[int]) -> None:
    # Whitespace runs hold no tokens: the first cut holds too few, so it grows until truncation
    # still drops its end, and the score is the one of the whole text.
    sparse = ("protein" + " " * 3_000) * 200
    dense = " ".join(["protein"] * 200)
    reranker = CrossEncoderReranker(model, device="cpu", dtype="float32", max_length=MAX_LENGTH)
    assert reranker.score(QUERY, [sparse]) == reranker.score(QUERY, [dense])
    assert BUDGET < max(longest_text) < len(sparse)


def test_texts_within_the_budget_are_tokenized_as_they_are(model: Path, longest_text: list[int]) -> None:
    document = WORDS * (BUDGET // len(WORDS))
    reranker = CrossEncoderReranker(model, device="cpu", dtype="float32", max_length=MAX_LENGTH)
    reranker.score(QUERY, [document])
    assert max(longest_text) == len(document)


def test_an_llm_reranker_cuts_a_huge_document_inside_its_prompt_alike(tmp_path: Path, longest_text: list[int]) -> None:
    from milvus_rerank.testing.causal_models import make_llm_reranker

    path = make_llm_reranker(tmp_path / "qwen3", architecture="qwen3", texts=[WORDS, QUERY])
    max_length = MAX_LENGTH + 64  # room for the prompt around the document
    reranker = CrossEncoderReranker(path, device="cpu", dtype="float32", max_length=max_length)
    huge = WORDS * 20_000
    assert reranker.score(QUERY, [huge, "cancer cells"]) == reranker.score(QUERY, [huge[:4_000], "cancer cells"])
    prompt = 2_000  # the prompt's own text: system message, instruction, query
    assert max(longest_text) <= (max_length + MARGIN_TOKENS) * CHARS_PER_TOKEN + prompt
