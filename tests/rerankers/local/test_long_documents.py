"""long_documents="windows" on local rerankers: a long document scores as its best window, token-exact.

The reference is sentence-transformers' ``CrossEncoder.predict`` over the same windows' texts (for an
LLM reranker, over the windows rendered in the model's prompt), on tiny generated models of the encoder
and causal families.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import logging
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
from sentence_transformers import CrossEncoder
from transformers import AutoTokenizer

from milvus_rerank import CrossEncoderReranker, RerankResult
from milvus_rerank.rerankers.prompts import QWEN3
from milvus_rerank.rerankers.windows import WindowedCall
from milvus_rerank.testing.causal_models import make_llm_reranker
from milvus_rerank.testing.models import make_cross_encoder

_ST_VERSION = tuple(int(part) for part in importlib.metadata.version("sentence-transformers").split(".")[:2])
needs_st6 = pytest.mark.skipif(_ST_VERSION < (6, 2), reason="needs sentence-transformers >= 6.2 (LogitScore)")

QUERY = "what role does the protein play in cancer cells"
WORDS = (
    "the protein is expressed in cancer cells and increased expression is linked to risk , while mice with "
    "reduced levels of the gene showed effects on brain health ; a study of patients found no effect ."
).split()


def long_text(n_words: int, seed: int) -> str:
    """Words in no repeating pattern, so that no two windows are the same text (a tie between windows)."""
    return " ".join(random.Random(seed).choices(WORDS, k=n_words))


DOCUMENTS = [
    long_text(150, 0),
    "the protein in cancer cells",  # fits: scored whole
    long_text(60, 3),
    long_text(400, 5),
    "   ",  # blank: never scored
    "cells " * 20,
]


def close(ours: Sequence[float], reference: Sequence[float], tolerance: float = 1e-5) -> bool:
    assert len(ours) == len(reference)
    return all(abs(a - b) <= tolerance * max(1.0, abs(b)) for a, b in zip(ours, reference, strict=True))


def windows_of(reranker: CrossEncoderReranker, documents: Sequence[str], max_length: int) -> WindowedCall:
    """The texts the reranker scores for ``documents`` (none blank): its own plan, for the reference."""
    return reranker._windows(reranker._scoring_engine(), QUERY, documents, max_length)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cross_encoder(tmp_path_factory.mktemp("ce") / "model", texts=[QUERY, *WORDS], seed=5)


@pytest.mark.parametrize("max_length", [24, 40, 64])
def test_an_encoder_scores_a_long_document_as_the_best_of_predict_over_its_windows(
    encoder: Path, max_length: int
) -> None:
    reranker = CrossEncoderReranker(
        encoder, device="cpu", dtype="float32", max_length=max_length, long_documents="windows"
    )
    results = reranker.rerank(QUERY, DOCUMENTS)
    texts = [d for d in DOCUMENTS if d.strip()]
    call = windows_of(reranker, texts, max_length)
    assert call.split >= 3
    assert call.windows > call.split
    st = CrossEncoder(str(encoder), device="cpu", max_length=max_length)
    tokenizer = st.tokenizer
    # Token-exact: no window's pair is cut, and each is within the length.
    assert all(len(tokenizer(QUERY, text)["input_ids"]) <= max_length for text in call.texts)
    reference = [float(s) for s in st.predict([(QUERY, text) for text in call.texts], batch_size=4)]
    best, spans = call.best(reference, len(texts))
    by_index = {r.index: r for r in results}
    scored = [i for i, d in enumerate(DOCUMENTS) if d.strip()]
    assert close([by_index[i].score for i in scored], best)
    assert [by_index[i].span for i in scored] == spans
    # The span names the window that gave the score: predict on that text alone gives the score.
    for i in scored:
        result = by_index[i]
        if result.span is None:
            assert len(tokenizer(QUERY, DOCUMENTS[i])["input_ids"]) <= max_length
            continue
        start, end = result.span
        (alone,) = st.predict([(QUERY, DOCUMENTS[i][start:end])])
        assert close([result.score], [float(alone)])
    assert by_index[4].span is None  # the blank one


def test_windows_cover_the_document_with_overlap_and_cut_at_words(encoder: Path) -> None:
    reranker = CrossEncoderReranker(
        encoder,
        device="cpu",
        dtype="float32",
        max_length=32,
        long_documents="windows",
        window_overlap=6,
        max_windows=1000,
    )
    document = DOCUMENTS[3]
    call = windows_of(reranker, [document], 32)
    spans = [span for span in call.spans if span is not None]
    assert len(spans) == call.windows > 10
    assert spans[0][0] == 0
    assert spans[-1][1] == len(document.rstrip())
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    shared = []
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start < end  # consecutive windows overlap: no text is skipped
        shared.append(len(tokenizer(document[start:end], add_special_tokens=False)["input_ids"]))
    # About window_overlap tokens (cuts move to word starts); the last window is a full one ending at the end.
    assert all(3 <= n <= 8 for n in shared[:-1])
    assert shared[-1] >= 3
    for start, end in spans:  # every cut falls between words
        assert start == 0 or document[start - 1] == " "
        assert end == len(document) or document[end] == " "


def test_documents_that_fit_score_as_with_truncation(encoder: Path) -> None:
    short = [DOCUMENTS[1], DOCUMENTS[5], "cancer cells and the protein"]
    truncating = CrossEncoderReranker(encoder, device="cpu", dtype="float32", max_length=64)
    windowed = CrossEncoderReranker(encoder, device="cpu", dtype="float32", max_length=64, long_documents="windows")
    assert windowed.rerank(QUERY, short) == truncating.rerank(QUERY, short)
    assert windowed.pairs_scored == len(short)
    assert all(r.span is None for r in windowed.rerank(QUERY, short))


def test_cost_is_counted_and_capped(encoder: Path, caplog: pytest.LogCaptureFixture) -> None:
    capped = CrossEncoderReranker(
        encoder, device="cpu", dtype="float32", max_length=32, long_documents="windows", max_windows=2
    )
    with caplog.at_level(logging.DEBUG, logger="milvus_rerank"):
        results = capped.rerank(QUERY, DOCUMENTS[:4])
        capped.rerank(QUERY, DOCUMENTS[:4])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "max_windows=2" in warnings[0].getMessage()
    assert "were split into" in caplog.text
    # Documents 0, 2 and 3 get two windows each, document 1 fits: 7 pairs per call.
    assert capped.pairs_scored == 14
    limit = capped._windows(capped._scoring_engine(), QUERY, [DOCUMENTS[3]], 32).spans[-1]
    assert limit is not None
    assert all(r.span is None or r.span[1] <= len(DOCUMENTS[3]) for r in results)


def test_a_query_longer_than_the_pair_is_cut_and_still_scores(encoder: Path) -> None:
    reranker = CrossEncoderReranker(
        encoder, device="cpu", dtype="float32", max_length=24, long_documents="windows", max_windows=4
    )
    results = reranker.rerank(long_text(60, 1), DOCUMENTS[:2])
    assert len(results) == 2
    assert {r.index for r in results} == {0, 1}


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"long_documents": "chunks"}, ValueError, "long_documents"),
        ({"window_overlap": -1}, ValueError, "window_overlap"),
        ({"window_overlap": 1.5}, TypeError, "window_overlap"),
        ({"max_windows": 0}, ValueError, "max_windows"),
    ],
)
def test_bad_options_are_refused_at_construction(
    encoder: Path, options: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        CrossEncoderReranker(encoder, device="cpu", dtype="float32", **options)  # type: ignore[arg-type]


def test_a_result_without_span_is_the_result_it_always_was() -> None:
    assert RerankResult(1, 0.5) == RerankResult(1, 0.5, None)
    assert RerankResult(1, 0.5).span is None
    assert RerankResult(1, 0.5, (0, 10)) != RerankResult(1, 0.5)


@needs_st6
@pytest.mark.parametrize("architecture", ["qwen3", "llama"])
def test_an_llm_reranker_scores_each_window_inside_its_whole_prompt(tmp_path: Path, architecture: str) -> None:
    path = make_llm_reranker(tmp_path / architecture, architecture=architecture, texts=[QUERY, *WORDS])
    max_length = 150  # the chat template alone is about 90 tokens of this tokenizer
    reranker = CrossEncoderReranker(
        path, device="cpu", dtype="float32", max_length=max_length, long_documents="windows"
    )
    texts = [d for d in DOCUMENTS if d.strip()]
    results = {r.index: r for r in reranker.rerank(QUERY, texts)}
    call = windows_of(reranker, texts, max_length)
    assert call.split >= 2
    st = CrossEncoder(str(path), device="cpu")
    # No prompt is cut (so the answer cue is there): sentence-transformers, which cuts nothing here, agrees.
    assert all(
        len(ids) <= max_length
        for ids in reranker._scoring_engine().encode(QUERY, call.texts, max_length=10**6).input_ids
    )
    reference = [float(s) for s in st.predict([(QUERY, text) for text in call.texts], batch_size=4)]
    best, spans = call.best(reference, len(texts))
    assert close([results[i].score for i in range(len(texts))], best)
    assert [results[i].span for i in range(len(texts))] == spans


@needs_st6
def test_a_plain_checkpoint_with_a_prompt_format_scores_windows_as_the_rendered_pairs(tmp_path: Path) -> None:
    path = make_llm_reranker(tmp_path / "plain", architecture="qwen3", save_format="causal-lm", texts=WORDS)
    max_length = 120
    reranker = CrossEncoderReranker(
        path, device="cpu", dtype="float32", max_length=max_length, prompt_format="qwen3", long_documents="windows"
    )
    texts = DOCUMENTS[:4]
    results = {r.index: r for r in reranker.rerank(QUERY, texts)}
    call = windows_of(reranker, texts, max_length)
    assert call.split >= 2
    rendered = QWEN3.render(QUERY, call.texts)
    reference = CrossEncoder(str(path), device="cpu").predict([(rendered.query, d) for d in rendered.documents])
    best, spans = call.best([float(s) for s in reference], len(texts))
    assert close([results[i].score for i in range(len(texts))], best)
    assert [results[i].span for i in range(len(texts))] == spans
