"""LLM rerankers' scoring engine against sentence-transformers 6 and the model cards' reference computation.

Every model here is generated (random weights, fixed seeds) in the three forms users have on disk: a
sentence-transformers 6 save, a plain causal-LM checkpoint and a sequence-classification conversion.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from sentence_transformers import CrossEncoder
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from milvus_rerank import CrossEncoderReranker, ModelLoadError, PromptFormat
from milvus_rerank.rerankers.local.causal import chat_template_prompt_format, encode_prompts, token_id
from milvus_rerank.rerankers.local.decoder import CausalScorer
from milvus_rerank.rerankers.prompts import QWEN3
from milvus_rerank.testing.causal_models import LLM_ARCHITECTURES, make_llm_reranker

# sentence-transformers runs causal LMs as cross-encoders (Transformer + LogitScore) from 6.x on; the
# comparisons with it skip on older releases (the lowest-versions run), the model-card ones do not.
_ST_VERSION = tuple(int(part) for part in importlib.metadata.version("sentence-transformers").split(".")[:2])
needs_st6 = pytest.mark.skipif(_ST_VERSION < (6, 2), reason="needs sentence-transformers >= 6.2 (LogitScore)")

QUERY = "what is milvus used for?"
DOCUMENTS = [
    "Milvus is a vector database for similarity search over embeddings.",
    "Bananas are yellow. " * 6,
    "yes",
    "The study found no effect of the treatment on cancer risk in patients.",
    ".",
    "what is milvus used for? It stores vectors.",
]
INSTRUCTION = "Given a claim, find the abstracts that support or refute it"


def plan(lengths: list[int], budget: int = 48) -> list[list[int]]:
    """Length-sorted batches under a small token budget, so that every test runs several batches."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
    batches: list[list[int]] = [[]]
    for index in order:
        batch = batches[-1]
        if batch and lengths[batch[0]] * (len(batch) + 1) > budget:
            batches.append(batch := [])
        batch.append(index)
    return batches


def close(ours: Sequence[float], reference: Sequence[float], tolerance: float = 1e-5) -> bool:
    """Every score within ``tolerance`` relative to max(1, |reference|)."""
    assert len(ours) == len(reference)
    return all(abs(a - b) <= tolerance * max(1.0, abs(b)) for a, b in zip(ours, reference, strict=True))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Every architecture as a sentence-transformers save and as a plain checkpoint, plus conversions."""
    root = tmp_path_factory.mktemp("llm-rerankers")
    made: dict[tuple[str, str], Path] = {}
    for seed, architecture in enumerate(LLM_ARCHITECTURES):
        for save_format in ("sentence-transformers", "causal-lm"):
            made[architecture, save_format] = make_llm_reranker(
                root / f"{architecture}-{save_format}", architecture=architecture, save_format=save_format, seed=seed
            )
    for architecture in ("qwen3", "llama"):
        made[architecture, "sequence-classification"] = make_llm_reranker(
            root / f"{architecture}-seq-cls", architecture=architecture, save_format="sequence-classification"
        )
    return made


def load_causal(path: Path) -> tuple[Any, Any]:
    return AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()


def yes_no(tokenizer: Any) -> dict[str, int]:
    return {
        "true_token_id": token_id(tokenizer, "yes", option="true_token"),
        "false_token_id": token_id(tokenizer, "no", option="false_token"),
    }


def our_scores(
    tokenizer: Any,
    scorer: CausalScorer,
    fmt: PromptFormat,
    documents: Sequence[str] = DOCUMENTS,
    *,
    instruction: str | None = None,
    max_length: int = 4096,
) -> list[float]:
    rendered = fmt.render(QUERY, documents, instruction=instruction)
    encoded = encode_prompts(tokenizer, rendered, suffix=fmt.document_suffix, max_length=max_length)
    return torch.sigmoid(scorer.logits(encoded.input_ids, plan)[:, 0]).tolist()


def model_card_scores(
    tokenizer: Any, model: Any, documents: Sequence[str], instruction: str | None = None
) -> list[float]:
    """The Qwen3-Reranker model card's computation: prefix + formatted pair + suffix, one forward each,
    ``exp(log_softmax([no, yes]))[yes]`` at the last token."""
    prefix = (
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
        'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    )
    suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    default = "Given a web search query, retrieve relevant passages that answer the query"
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    scores = []
    for document in documents:
        pair = f"<Instruct>: {instruction or default}\n<Query>: {QUERY}\n<Document>: {document}"
        ids = (
            tokenizer.encode(prefix, add_special_tokens=False)
            + tokenizer(pair)["input_ids"]
            + tokenizer.encode(suffix, add_special_tokens=False)
        )
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
        pair_logits = torch.stack([logits[no], logits[yes]])
        scores.append(torch.log_softmax(pair_logits, dim=0).exp()[1].item())
    return scores


@needs_st6
@pytest.mark.parametrize("architecture", LLM_ARCHITECTURES)
@pytest.mark.parametrize("instruction", [None, INSTRUCTION])
def test_a_sentence_transformers_save_scores_as_cross_encoder_predict(
    models: dict[tuple[str, str], Path], architecture: str, instruction: str | None
) -> None:
    path = models[architecture, "sentence-transformers"]
    reference = CrossEncoder(str(path), device="cpu").predict(
        [(QUERY, document) for document in DOCUMENTS], prompt=instruction, batch_size=4
    )
    tokenizer, model = load_causal(path)
    fmt = chat_template_prompt_format(tokenizer, instruction=instruction)
    scorer = CausalScorer(model, **yes_no(tokenizer))
    assert scorer.last_token_layer is not None
    assert close(our_scores(tokenizer, scorer, fmt), reference.tolist())
    # The template's default instruction is Qwen3's: the same prompts as the named format.
    assert close(our_scores(tokenizer, scorer, QWEN3, instruction=instruction), reference.tolist())


@needs_st6
@pytest.mark.parametrize("architecture", LLM_ARCHITECTURES)
@pytest.mark.parametrize("instruction", [None, INSTRUCTION])
def test_a_plain_checkpoint_with_the_qwen3_format_scores_as_the_model_card(
    models: dict[tuple[str, str], Path], architecture: str, instruction: str | None
) -> None:
    path = models[architecture, "causal-lm"]
    tokenizer, model = load_causal(path)
    reference = model_card_scores(tokenizer, model, DOCUMENTS, instruction)
    ours = our_scores(tokenizer, CausalScorer(model, **yes_no(tokenizer)), QWEN3, instruction=instruction)
    assert close(ours, reference)
    # sentence-transformers on a checkpoint without a chat template scores the pre-rendered pair as a text pair.
    rendered = QWEN3.render(QUERY, DOCUMENTS, instruction=instruction)
    pairs = [(rendered.query, document) for document in rendered.documents]
    assert close(ours, CrossEncoder(str(path), device="cpu").predict(pairs).tolist())


@needs_st6
@pytest.mark.parametrize("architecture", ["qwen3", "llama"])
def test_a_sequence_classification_conversion_scores_as_its_causal_lm(
    models: dict[tuple[str, str], Path], architecture: str
) -> None:
    path = models[architecture, "sequence-classification"]
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    scorer = CausalScorer(model)
    assert scorer.num_labels == 1
    assert scorer.last_token_layer is not None
    ours = our_scores(tokenizer, scorer, QWEN3, instruction=INSTRUCTION)
    rendered = QWEN3.render(QUERY, DOCUMENTS, instruction=INSTRUCTION)
    reference = CrossEncoder(str(path), device="cpu").predict([(rendered.query, d) for d in rendered.documents])
    assert close(ours, reference.tolist())
    # The conversion was made from the seed-0 causal LM of the same architecture: same scores, same prompts.
    causal_path = make_llm_reranker(path.parent / f"{architecture}-causal-seed0", architecture=architecture)
    causal_tokenizer, causal = load_causal(causal_path)
    causal_scores = our_scores(
        causal_tokenizer, CausalScorer(causal, **yes_no(causal_tokenizer)), QWEN3, instruction=INSTRUCTION
    )
    assert close(ours, causal_scores)


def full_forward_margins(model: Any, input_ids: Sequence[list[int]], yes: int, no: int) -> list[float]:
    margins = []
    for ids in input_ids:
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
        margins.append((logits[yes] - logits[no]).item())
    return margins


@pytest.mark.parametrize(
    "documents",
    [
        DOCUMENTS,
        DOCUMENTS[:1],  # one document: everything but its last token is "shared"
        ["the same start, then A", "the same start, then B", "the same start"],  # shared beyond the query
    ],
    ids=["mixed", "single", "long-common-prefix"],
)
@pytest.mark.parametrize("last_token_layer", [True, False])
def test_cached_prefix_batches_equal_one_full_forward_per_prompt(
    models: dict[tuple[str, str], Path], documents: list[str], last_token_layer: bool
) -> None:
    tokenizer, model = load_causal(models["qwen3", "causal-lm"])
    ids = yes_no(tokenizer)
    encoded = encode_prompts(tokenizer, QWEN3.render(QUERY, documents), suffix=QWEN3.document_suffix, max_length=4096)
    scorer = CausalScorer(model, **ids, last_token_layer=last_token_layer)
    assert (scorer.last_token_layer is not None) is last_token_layer
    ours = scorer.logits(encoded.input_ids, plan)[:, 0].tolist()
    reference = full_forward_margins(model, encoded.input_ids, ids["true_token_id"], ids["false_token_id"])
    assert close(ours, reference)
    # Batches of one and one batch of all agree with the batches of the budget.
    singles = scorer.logits(encoded.input_ids, lambda lengths: [[i] for i in range(len(lengths))])[:, 0].tolist()
    together = scorer.logits(encoded.input_ids, lambda lengths: [list(range(len(lengths)))])[:, 0].tolist()
    assert close(singles, reference)
    assert close(together, reference)


def test_text_merged_across_the_seam_is_scored_as_one_full_forward(models: dict[tuple[str, str], Path]) -> None:
    tokenizer, model = load_causal(models["llama", "causal-lm"])
    ids = yes_no(tokenizer)
    # The query part ends inside a word that each document completes differently, so the tokenizer merges
    # across the seam and the prompts' common token prefix ends before the query part does.
    fmt = PromptFormat("Q: {query}\nD: milv", "{document}\nRelevant:", false_token=None)
    documents = ["us is a database", "ia", "usual"]
    rendered = fmt.render(QUERY, documents)
    encoded = encode_prompts(tokenizer, rendered, suffix=fmt.document_suffix, max_length=4096)
    query_ids = tokenizer(rendered.query, add_special_tokens=False)["input_ids"]
    assert any(full[: len(query_ids)] != query_ids for full in encoded.input_ids)
    scorer = CausalScorer(model, true_token_id=ids["true_token_id"])
    assert scorer.num_labels == 1
    ours = scorer.logits(encoded.input_ids, plan)[:, 0].tolist()
    reference = []
    for full in encoded.input_ids:
        with torch.no_grad():
            reference.append(model(torch.tensor([full])).logits[0, -1, ids["true_token_id"]].item())
    assert close(ours, reference)


def test_only_the_scored_rows_of_the_lm_head_are_computed(models: dict[tuple[str, str], Path]) -> None:
    tokenizer, model = load_causal(models["gemma", "causal-lm"])
    calls: list[tuple[int, ...]] = []
    handle = model.lm_head.register_forward_hook(lambda module, args, output: calls.append(tuple(output.shape)))
    try:
        our_scores(tokenizer, CausalScorer(model, **yes_no(tokenizer)), QWEN3)
    finally:
        handle.remove()
    assert calls == []


@needs_st6
@pytest.mark.parametrize("architecture", ["qwen3", "gemma"])
def test_truncation_cuts_the_document_and_keeps_the_answer_cue_as_sentence_transformers(
    models: dict[tuple[str, str], Path], architecture: str
) -> None:
    path = models[architecture, "sentence-transformers"]
    tokenizer, model = load_causal(path)
    fmt = chat_template_prompt_format(tokenizer, instruction=None)
    rendered = fmt.render(QUERY, DOCUMENTS)
    lengths = [len(ids) for ids in tokenizer(rendered.prompts, add_special_tokens=False)["input_ids"]]
    max_length = sorted(lengths)[2] + 1  # the three shortest prompts fit, the others are cut
    encoded = encode_prompts(tokenizer, rendered, suffix=fmt.document_suffix, max_length=max_length)
    assert encoded.truncated == sum(n > max_length for n in lengths) == 3
    suffix_ids = tokenizer(fmt.document_suffix, add_special_tokens=False)["input_ids"]
    for ids, n in zip(encoded.input_ids, lengths, strict=True):
        assert len(ids) == min(n, max_length)
        assert ids[-len(suffix_ids) :] == suffix_ids
    cross_encoder = CrossEncoder(str(path), device="cpu", max_length=max_length)
    reference = cross_encoder.predict([(QUERY, d) for d in DOCUMENTS]).tolist()
    ours = our_scores(tokenizer, CausalScorer(model, **yes_no(tokenizer)), fmt, max_length=max_length)
    assert close(ours, reference)


def test_a_max_length_shorter_than_the_answer_cue_is_refused(models: dict[tuple[str, str], Path]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(models["qwen3", "causal-lm"])
    with pytest.raises(ValueError, match="max_length=3 leaves no room"):
        encode_prompts(tokenizer, QWEN3.render(QUERY, DOCUMENTS), suffix=QWEN3.document_suffix, max_length=3)


def test_answer_tokens_are_vocabulary_entries_or_one_token_texts(models: dict[tuple[str, str], Path]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(models["qwen3", "causal-lm"])
    assert token_id(tokenizer, "yes", option="true_token") == tokenizer.convert_tokens_to_ids("yes")
    spaced = tokenizer(" the", add_special_tokens=False)["input_ids"]
    assert len(spaced) == 1
    assert token_id(tokenizer, " the", option="true_token") == spaced[0]
    with pytest.raises(ValueError, match="true_token='yes, really' is not one token"):
        token_id(tokenizer, "yes, really", option="true_token")


def test_scorer_options_that_do_not_fit_the_model_are_refused(models: dict[tuple[str, str], Path]) -> None:
    _, model = load_causal(models["qwen3", "causal-lm"])
    with pytest.raises(ValueError, match="needs true_token_id"):
        CausalScorer(model)
    classifier = AutoModelForSequenceClassification.from_pretrained(models["qwen3", "sequence-classification"])
    with pytest.raises(ValueError, match="its own classification head"):
        CausalScorer(classifier, true_token_id=1)


def test_chat_templates_without_pair_roles_are_refused(models: dict[tuple[str, str], Path]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(models["qwen3", "causal-lm"])
    with pytest.raises(ValueError, match="no chat template"):
        chat_template_prompt_format(tokenizer, instruction=None)
    tokenizer.chat_template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>{% endfor %}"
    # Renders the roles it is given, "query" and "document" included, so it splits; one that keeps to
    # user/assistant turns does not.
    assert chat_template_prompt_format(tokenizer, instruction=None).document_template.startswith("{document}")
    tokenizer.chat_template = (
        "{% for m in messages %}{% if m.role in ['user', 'assistant'] %}{{ m.content }}{% endif %}{% endfor %}"
    )
    with pytest.raises(ValueError, match="prompt_format='qwen3'"):
        chat_template_prompt_format(tokenizer, instruction=None)


# --- through CrossEncoderReranker -------------------------------------------------------------------------


def st_predict(path: Path, documents: Sequence[str] = DOCUMENTS, **options: Any) -> list[float]:
    return CrossEncoder(str(path), device="cpu").predict([(QUERY, d) for d in documents], **options).tolist()


@needs_st6
@pytest.mark.parametrize("architecture", LLM_ARCHITECTURES)
def test_the_reranker_scores_a_sentence_transformers_save_as_cross_encoder_predict(
    models: dict[tuple[str, str], Path], architecture: str
) -> None:
    path = models[architecture, "sentence-transformers"]
    assert close(CrossEncoderReranker(path, device="cpu", dtype="float32").score(QUERY, DOCUMENTS), st_predict(path))
    instructed = CrossEncoderReranker(path, device="cpu", dtype="float32", instruction=INSTRUCTION)
    assert close(instructed.score(QUERY, DOCUMENTS), st_predict(path, prompt=INSTRUCTION))
    assert instructed.instruction == INSTRUCTION
    assert instructed.prompt_format is None


@pytest.mark.parametrize("architecture", LLM_ARCHITECTURES)
def test_the_reranker_scores_a_plain_checkpoint_with_prompt_format_qwen3(
    models: dict[tuple[str, str], Path], architecture: str
) -> None:
    path = models[architecture, "causal-lm"]
    tokenizer, model = load_causal(path)
    for instruction in (None, INSTRUCTION):
        reranker = CrossEncoderReranker(
            path, device="cpu", dtype="float32", prompt_format="qwen3", instruction=instruction
        )
        assert close(reranker.score(QUERY, DOCUMENTS), model_card_scores(tokenizer, model, DOCUMENTS, instruction))
    assert "prompt_format='qwen3'" in repr(reranker)


def test_a_causal_checkpoint_without_a_prompt_is_refused_at_load(models: dict[tuple[str, str], Path]) -> None:
    reranker = CrossEncoderReranker(models["qwen3", "causal-lm"], device="cpu", dtype="float32")
    with pytest.raises(ModelLoadError, match="has no chat template") as info:
        reranker.load()
    assert "prompt_format='qwen3'" in str(info.value)
    assert "Qwen3ForCausalLM" in str(info.value)


def test_a_chat_template_without_pair_roles_is_refused_at_load(tmp_path: Path) -> None:
    template = "{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}{% endif %}{% endfor %}"
    path = make_llm_reranker(tmp_path / "chat", save_format="causal-lm", chat_template=template)
    with pytest.raises(ModelLoadError, match=r"cannot score with its chat template.*prompt_format='qwen3'"):
        CrossEncoderReranker(path, device="cpu", dtype="float32").load()
    # An explicit format needs no template.
    assert (
        len(CrossEncoderReranker(path, device="cpu", dtype="float32", prompt_format="qwen3").score(QUERY, ["a"])) == 1
    )


@needs_st6
def test_the_default_prompt_of_a_save_is_its_instruction(tmp_path: Path) -> None:
    path = make_llm_reranker(tmp_path / "prompted", prompts={"claims": INSTRUCTION}, default_prompt_name="claims")
    default = CrossEncoderReranker(path, device="cpu", dtype="float32").score(QUERY, DOCUMENTS)
    assert close(default, st_predict(path))
    assert close(
        default,
        CrossEncoderReranker(path, device="cpu", dtype="float32", instruction=INSTRUCTION).score(QUERY, DOCUMENTS),
    )
    assert not close(
        default,
        CrossEncoderReranker(path, device="cpu", dtype="float32", instruction="Find bananas").score(QUERY, DOCUMENTS),
    )


def test_answer_tokens_can_be_chosen(models: dict[tuple[str, str], Path]) -> None:
    path = models["qwen2", "sentence-transformers"]
    scores = CrossEncoderReranker(path, device="cpu", dtype="float32").score(QUERY, DOCUMENTS)
    # Swapping the answer tokens negates the margin: P(no) = 1 - P(yes).
    swapped = CrossEncoderReranker(path, device="cpu", dtype="float32", true_token="no", false_token="yes").score(
        QUERY, DOCUMENTS
    )
    assert close(swapped, [1 - score for score in scores])
    # One token alone scores sigmoid(logit(yes)), as LogitScore without a false token does.
    tokenizer, model = load_causal(path)
    fmt = PromptFormat(QWEN3.query_template, QWEN3.document_template, QWEN3.default_instruction, false_token=None)
    alone = CrossEncoderReranker(path, device="cpu", dtype="float32", prompt_format=fmt, activation="none").score(
        QUERY, DOCUMENTS
    )
    encoded = encode_prompts(tokenizer, QWEN3.render(QUERY, DOCUMENTS), suffix=QWEN3.document_suffix, max_length=4096)
    yes = tokenizer.convert_tokens_to_ids("yes")
    reference = []
    for ids in encoded.input_ids:
        with torch.no_grad():
            reference.append(model(torch.tensor([ids])).logits[0, -1, yes].item())
    assert close(alone, reference)
    with pytest.raises(ModelLoadError, match="true_token='maybe so' is not one token"):
        CrossEncoderReranker(path, device="cpu", dtype="float32", true_token="maybe so").load()


def test_a_conversion_with_prompt_format_scores_as_its_causal_lm(models: dict[tuple[str, str], Path]) -> None:
    path = models["qwen3", "sequence-classification"]
    ours = CrossEncoderReranker(path, device="cpu", dtype="float32", prompt_format="qwen3").score(QUERY, DOCUMENTS)
    causal = CrossEncoderReranker(models["qwen3", "causal-lm"], device="cpu", dtype="float32", prompt_format="qwen3")
    assert close(ours, causal.score(QUERY, DOCUMENTS))
    with pytest.raises(ModelLoadError, match="true_token and false_token do not apply"):
        CrossEncoderReranker(path, device="cpu", dtype="float32", prompt_format="qwen3", true_token="yes").load()


@needs_st6
def test_a_conversion_without_a_prompt_scores_plain_pairs_with_a_warning(
    models: dict[tuple[str, str], Path], caplog: pytest.LogCaptureFixture
) -> None:
    path = models["llama", "sequence-classification"]
    with caplog.at_level(logging.WARNING):
        plain = CrossEncoderReranker(path, device="cpu", dtype="float32").score(QUERY, DOCUMENTS)
    assert "prompt_format='qwen3'" in caplog.text
    assert close(plain, st_predict(path))
    assert not close(
        plain, CrossEncoderReranker(path, device="cpu", dtype="float32", prompt_format="qwen3").score(QUERY, DOCUMENTS)
    )


def test_prompt_options_on_an_encoder_cross_encoder_are_refused(tiny_model: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"encoder cross-encoder .*apply to LLM rerankers"):
        CrossEncoderReranker(tiny_model, device="cpu", dtype="float32", instruction="Judge").load()


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"prompt_format": "qwen9"}, ValueError, "unknown prompt_format 'qwen9'"),
        ({"prompt_format": 3}, TypeError, "prompt_format must be"),
        ({"instruction": 3}, TypeError, "instruction must be a str or None"),
        ({"true_token": ""}, ValueError, "true_token must be a non-empty str"),
        ({"false_token": b"no"}, TypeError, "false_token must be a str or None"),
        (
            {"prompt_format": PromptFormat("Q: {query}\n", "D: {document}"), "instruction": "x"},
            ValueError,
            "no \\{instruction\\} placeholder",
        ),
        (
            {"prompt_format": PromptFormat("{instruction} {query}", "{document}", name="mine")},
            ValueError,
            "'mine' needs an instruction",
        ),
    ],
)
def test_prompt_options_are_checked_at_construction(
    tiny_model: Path, options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        CrossEncoderReranker(tiny_model, device="cpu", dtype="float32", **options)


@needs_st6
def test_the_reranker_truncates_inside_the_document_with_one_warning(
    models: dict[tuple[str, str], Path], caplog: pytest.LogCaptureFixture
) -> None:
    path = models["qwen3", "sentence-transformers"]
    reranker = CrossEncoderReranker(path, device="cpu", dtype="float32", max_length=110)
    with caplog.at_level(logging.WARNING):
        scores = reranker.score(QUERY, DOCUMENTS)
        reranker.score(QUERY, DOCUMENTS)
    assert caplog.text.count("were truncated") == 1
    reference = CrossEncoder(str(path), device="cpu", max_length=110).predict([(QUERY, d) for d in DOCUMENTS])
    assert close(scores, reference.tolist())


async def test_rerankers_with_different_prompts_share_one_model(models: dict[tuple[str, str], Path]) -> None:
    path = models["gemma", "sentence-transformers"]
    plain = CrossEncoderReranker(path, device="cpu", dtype="float32")
    instructed = CrossEncoderReranker(path, device="cpu", dtype="float32", instruction=INSTRUCTION)
    assert plain._model() is instructed._model()
    results = plain.rerank(QUERY, DOCUMENTS, top_n=3)
    assert [r.index for r in results] == [r.index for r in await plain.arerank(QUERY, DOCUMENTS, top_n=3)]
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert not close(plain.score(QUERY, DOCUMENTS), instructed.score(QUERY, DOCUMENTS))


async def test_concurrent_calls_score_as_one_at_a_time(models: dict[tuple[str, str], Path]) -> None:
    reranker = CrossEncoderReranker(
        models["llama", "sentence-transformers"], device="cpu", dtype="float32", max_batch_tokens=64
    )
    queries = [QUERY, "bananas", "cancer treatment", "vector search"]
    expected = [reranker.score(query, DOCUMENTS) for query in queries]
    results = await asyncio.gather(*(reranker.arerank(query, DOCUMENTS) for query in queries))
    for scores, ranked in zip(expected, results, strict=True):
        assert close([r.score for r in sorted(ranked, key=lambda r: r.index)], scores, tolerance=1e-6)


def test_the_generated_tokenizer_holds_the_prompt_tokens(models: dict[tuple[str, str], Path]) -> None:
    tokenizer = AutoTokenizer.from_pretrained(models["qwen3", "sentence-transformers"])
    for token in ("<|im_start|>", "<|im_end|>", "<think>", "</think>", "yes", "no"):
        assert tokenizer.tokenize(token) == [token]
    assert tokenizer.pad_token == "<|endoftext|>"
    # Byte-level: any text encodes, nothing is unknown, and decoding gives it back.
    text = "Größe 42 — 人工知能 {x}"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"architecture": "gpt2"}, "architecture must be one of"),
        ({"save_format": "onnx"}, "unknown save_format"),
        ({"save_format": "causal-lm", "prompts": {"a": "b"}}, "belong to a sentence-transformers save"),
    ],
)
def test_the_model_maker_refuses_what_it_cannot_make(tmp_path: Path, options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_llm_reranker(tmp_path / "m", **options)


def test_bfloat16_scores_keep_float32_resolution(models: dict[tuple[str, str], Path]) -> None:
    # The answer-token rows run in float32: in bfloat16 a margin of two logits falls on bfloat16's grid
    # (steps of 1/8 near 16), where documents the model tells apart would tie.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bfloat16 emulated on this CPU: slow, still exact
        reranker = CrossEncoderReranker(
            models["qwen3", "causal-lm"], device="cpu", dtype="bfloat16", prompt_format="qwen3", activation="none"
        )
        margins = reranker.score(QUERY, DOCUMENTS)
    assert sum(float(torch.tensor(margin).bfloat16()) == margin for margin in margins) <= 1
