"""The local cross-encoder reranker: a Hugging Face cross-encoder or LLM reranker run in-process.

A call reads as the reranker's contract: check the arguments, tokenize each pair once, cut the
pairs, longest first, into batches under a token budget, run them, apply the activation, and put
the results back in input order before ranking. The model machinery sits behind a small seam
(:mod:`.engine`): :mod:`.loading` loads a model once per process and returns it with the engine
that scores pairs (:mod:`.encoder`, which runs BERT-family models padding-free through :mod:`.packed`;
:mod:`.causal` for LLM rerankers, with each reranker's own prompt options).

Requires the ``local`` extra: ``pip install 'milvus-rerank[local]'``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from milvus_rerank.rerankers.contract import check_rerank_args, documents_to_score
from milvus_rerank.rerankers.local.engine import LoadedModel, PromptOptions, ScoringEngine
from milvus_rerank.rerankers.local.loading import (
    import_torch,
    load_model,
    model_key,
    resolve_device,
    resolve_dtype,
    shared_model,
)
from milvus_rerank.rerankers.local.truncation import bounded_texts
from milvus_rerank.rerankers.prompts import PromptFormat, check_prompt_options
from milvus_rerank.rerankers.windows import (
    DEFAULT_MAX_WINDOWS,
    LongDocumentPolicy,
    WindowedCall,
    plan_windows,
    window_options,
)
from milvus_rerank.types import RerankResult
from milvus_rerank.validation import check_choice, check_int

if TYPE_CHECKING:
    import torch

__all__ = ["CrossEncoderReranker"]

logger = logging.getLogger(__name__)

Activation = Literal["auto", "sigmoid", "none"]
_ACTIVATIONS = ("auto", "sigmoid", "none")

# Most tokens in one forward pass (real tokens on the packed path, pairs x longest pair otherwise).
# On a CPU, batches of about 1k tokens keep a layer's activations in cache and ran fastest in
# benchmarks/local_reranker.py (1k-2k alike, 8k 30% slower); a GPU wants large ones.
_DEFAULT_TOKEN_BUDGET = {"cpu": 1024, "cuda": 16384, "mps": 8192}


def plan_batches(lengths: list[int], *, max_pairs: int, max_tokens: int, padding_free: bool) -> list[list[int]]:
    """Indices of the pairs, longest first, cut into batches of at most ``max_pairs`` under ``max_tokens``.

    A padding-free batch costs its real tokens; a padded one costs its pairs x its longest (the first,
    as sorted). A single pair over the budget still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
    batches: list[list[int]] = []
    batch: list[int] = []
    tokens = 0
    for index in order:
        n = lengths[index]
        cost = n if padding_free else (lengths[batch[0]] if batch else n)
        if batch and (len(batch) >= max_pairs or tokens + cost > max_tokens):
            batches.append(batch)
            batch, tokens = [], 0
            cost = n
        batch.append(index)
        tokens += cost
    if batch:
        batches.append(batch)
    return batches


class CrossEncoderReranker:
    """Rerank documents with a local cross-encoder (BERT, XLM-RoBERTa, ModernBERT, ...) or LLM reranker (Qwen3, ...).

    The model is loaded lazily, on the first call that has documents to score, and only once per
    process for a given (model, device, dtype): instances with the same settings share it.

    LLM rerankers are causal LMs that answer "yes" or "no" (Qwen3-Reranker, mxbai-rerank-v2,
    bge-reranker-v2-gemma), from a sentence-transformers 6 save, a plain ``*ForCausalLM`` checkpoint
    or a ``*ForSequenceClassification`` conversion. Each pair is rendered in the model's prompt (the
    chat template, or ``prompt_format``) and scored ``activation(logit(yes) - logit(no))`` at its last
    token, a sigmoid by default: ``P(yes)``, as sentence-transformers' ``CrossEncoder`` scores them.

    Example:
        >>> reranker = CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L-6-v2")  # doctest: +SKIP
        >>> reranker.rerank("what is milvus?", ["Milvus is a vector database.", "Bananas."])  # doctest: +SKIP
        [RerankResult(index=0, score=0.99...), RerankResult(index=1, score=0.0001...)]
        >>> qwen = CrossEncoderReranker("Qwen/Qwen3-Reranker-0.6B", prompt_format="qwen3")  # doctest: +SKIP

    Args:
        model_name_or_path: A Hugging Face hub id or a local directory holding a sequence-classification
            cross-encoder or an LLM reranker.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a ``torch.device``; ``None`` picks cuda,
            then mps, then cpu.
        dtype: ``"auto"`` (or ``None``), ``"float32"``, ``"bfloat16"`` or ``"float16"`` (or a ``torch.dtype``).
            ``"auto"`` picks bfloat16 where the CPU or GPU computes it natively (float16 on a GPU without
            it), else float32; the choice shows in ``repr``. ``"float32"`` scores as sentence-transformers'
            float32 to 1e-5. Speed and fidelity of each: docs/rerankers.md.
        batch_size: Most pairs in one forward pass.
        max_length: Most tokens of a (query, document) pair; ``None`` means the model's own limit. Longer
            pairs are truncated longest-first (LLM rerankers: the end of the document, keeping the prompt's
            ending), with a warning once per instance, unless ``long_documents="windows"``.
        activation: ``"auto"`` scores exactly as sentence-transformers ``CrossEncoder.predict`` does for the
            model (the activation its config declares, else a sigmoid for one label); ``"sigmoid"`` and
            ``"none"`` (raw logits) force one. Two-label models score with the probability of label 1
            (softmax); with ``"none"`` they return the logit difference (label 1 minus label 0).
        max_batch_tokens: Most tokens in one forward pass: real tokens for BERT-family models (BERT, RoBERTa,
            XLM-RoBERTa, ELECTRA), which run without padding, else pairs x longest pair. ``None`` means 1024 on
            a CPU (cache-sized) and 16384 on a GPU.
        local_files_only: Never contact the Hugging Face Hub; only local directories and the local cache.
        trust_remote_code: Allow models whose code lives in their repository.
        revision: A hub revision (branch, tag or commit) to load.
        prompt_format: LLM rerankers: the prompt, as a name (``"qwen3"``: the official Qwen3-Reranker prompt)
            or a :class:`~milvus_rerank.PromptFormat` of your own templates. ``None`` renders pairs with the
            model's chat template (a sentence-transformers save has one); a causal LM with neither is refused
            at load.
        instruction: LLM rerankers: the task description (e.g. ``"Given a claim, find abstracts that support
            or refute it"``); ``None`` uses the format's default, or the save's default prompt.
        true_token: LLM rerankers: the answer token whose logit scores relevance; ``None`` uses the format's
            (``"yes"``) or, with a chat template, the save's ``LogitScore`` token.
        false_token: LLM rerankers: the opposing token; ``None`` uses the format's (``"no"``) or the save's. To
            score ``logit(true)`` alone, pass a ``PromptFormat`` with ``false_token=None``.
        long_documents: What happens to a document whose pair is longer than ``max_length``: ``"truncate"``
            scores its first tokens (with a warning once); ``"windows"`` splits it into overlapping windows of
            its tokens, scores each with the whole query (LLM rerankers: inside the whole prompt) and keeps
            the best, whose characters the result's ``span`` gives. Documents that fit score the same either way.
        window_overlap: Tokens shared by consecutive windows; ``None`` means a quarter of the window.
        max_windows: Most windows per document (a longer document's end is not read, with a warning).

    Raises:
        ValueError: An option has an invalid value.
        TypeError: An option has the wrong type.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = "auto",
        batch_size: int = 64,
        max_length: int | None = None,
        activation: Activation = "auto",
        max_batch_tokens: int | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        revision: str | None = None,
        prompt_format: str | PromptFormat | None = None,
        instruction: str | None = None,
        true_token: str | None = None,
        false_token: str | None = None,
        long_documents: LongDocumentPolicy = "truncate",
        window_overlap: int | None = None,
        max_windows: int = DEFAULT_MAX_WINDOWS,
    ) -> None:
        if isinstance(model_name_or_path, os.PathLike):
            model_name_or_path = os.fspath(model_name_or_path)
        if not isinstance(model_name_or_path, str) or not model_name_or_path.strip():
            raise TypeError("model_name_or_path must be a non-empty str (a hub id or a local directory)")
        check_choice(activation, "activation", _ACTIVATIONS)
        check_int(batch_size, "batch_size")
        check_int(max_length, "max_length", optional=True)
        check_int(max_batch_tokens, "max_batch_tokens", optional=True)
        if max_length is not None and max_length < 4:
            raise ValueError(
                f"max_length must leave room for the query, the document and special tokens, got {max_length}"
            )
        self._prompt = _prompt_options(prompt_format, instruction, true_token, false_token)
        self.windows = window_options(long_documents, window_overlap, max_windows)
        self.model_name_or_path = model_name_or_path
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = batch_size
        self.max_length = max_length
        self.activation: Activation = activation
        device_type = self.device.split(":")[0]
        self.max_batch_tokens = max_batch_tokens or _DEFAULT_TOKEN_BUDGET.get(device_type, 8192)
        self._local_files_only = local_files_only
        self._trust_remote_code = trust_remote_code
        self._revision = revision
        self._key = model_key(
            model_name_or_path,
            device=self.device,
            dtype=self.dtype,
            revision=revision,
            trust_remote_code=trust_remote_code,
        )
        self._loaded: LoadedModel | None = None
        self._engine: ScoringEngine | None = None
        self._warned_truncation = False
        self._warned_cap = False
        self._pairs_scored = 0
        self._lock = threading.Lock()

    @property
    def prompt_format(self) -> PromptFormat | None:
        """The prompt format given at construction (LLM rerankers), or ``None`` for the model's own."""
        return self._prompt.prompt_format

    @property
    def instruction(self) -> str | None:
        """The instruction given at construction (LLM rerankers), or ``None`` for the default."""
        return self._prompt.instruction

    @property
    def long_documents(self) -> LongDocumentPolicy:
        """The long-document policy: ``"truncate"`` or ``"windows"``."""
        return self.windows.policy

    @property
    def pairs_scored(self) -> int:
        """How many (query, text) pairs this reranker has given its model so far, windows included: its cost."""
        return self._pairs_scored

    def __repr__(self) -> str:
        fmt = self._prompt.prompt_format
        prompt = "" if fmt is None else f", prompt_format={fmt.name or 'custom'!r}"
        windows = "" if not self.windows.windows else ", long_documents='windows'"
        return (
            f"{type(self).__name__}({self.model_name_or_path!r}, device={self.device!r}, dtype={self.dtype!r}, "
            f"activation={self.activation!r}{prompt}{windows})"
        )

    def _model(self) -> LoadedModel:
        loaded = self._loaded
        if loaded is None:
            loaded = shared_model(self._key, self._load)
            self._loaded = loaded
        return loaded

    def _scoring_engine(self) -> ScoringEngine:
        engine = self._engine
        if engine is None:
            # The loaded model is shared; the prompt (LLM rerankers) is this reranker's own.
            engine = self._model().engine.prompted(self._prompt)
            self._engine = engine
        return engine

    def _load(self) -> LoadedModel:
        return load_model(
            self.model_name_or_path,
            self.device,
            self.dtype,
            local_files_only=self._local_files_only,
            trust_remote_code=self._trust_remote_code,
            revision=self._revision,
        )

    def load(self) -> CrossEncoderReranker:
        """Load the model now instead of on first use (e.g. at service start-up); returns ``self``.

        Raises:
            ModelLoadError: The model cannot be found, is neither a cross-encoder nor an LLM reranker, or does
                not fit the prompt options (e.g. a causal LM with neither a chat template nor ``prompt_format``).
        """
        self._scoring_engine()
        return self

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        """Score ``documents`` against ``query`` and return them best first.

        Args:
            query: The search query.
            documents: The candidate texts. Empty and whitespace-only ones are not given to the model:
                they score :data:`~milvus_rerank.rerankers.contract.BLANK_SCORE` and rank last.
            top_n: Keep only the best ``top_n`` results; ``None`` keeps all.

        Returns:
            Results sorted by score descending, ties by original index; ``index`` points into ``documents``.

        Raises:
            TypeError: ``query`` is not a str or a document is not a str.
            ValueError: ``top_n`` is not a positive int, or a text holds a lone surrogate (the message
                names which).
            ModelLoadError: The model cannot be loaded.
        """
        documents = check_rerank_args(query, documents, top_n)
        to_score = documents_to_score(documents)
        scores, spans = self._score(query, to_score.texts) if to_score.texts else ([], [])
        return to_score.results(map(RerankResult, range(len(scores)), scores, spans), top_n)

    async def arerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        """Async twin of :meth:`rerank`: the model runs in a worker thread, never on the event loop."""
        documents = check_rerank_args(query, documents, top_n)
        to_score = documents_to_score(documents)
        scores, spans = await asyncio.to_thread(self._score, query, to_score.texts) if to_score.texts else ([], [])
        return to_score.results(map(RerankResult, range(len(scores)), scores, spans), top_n)

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        """Score each document against ``query``, in input order (no sorting, no cut; blank ones ``BLANK_SCORE``).

        Raises:
            TypeError: ``query`` is not a str or a document is not a str.
            ValueError: A text holds a lone surrogate.
            ModelLoadError: The model cannot be loaded.
        """
        documents = check_rerank_args(query, documents, None)
        to_score = documents_to_score(documents)
        return to_score.scores(self._score(query, to_score.texts)[0] if to_score.texts else [])

    def _score(self, query: str, documents: Sequence[str]) -> tuple[list[float], list[tuple[int, int] | None]]:
        """Each document's score and, where it was split into windows, the best window's span."""
        loaded, engine = self._model(), self._scoring_engine()
        max_length = min(self.max_length or loaded.max_length, loaded.max_length)
        windowed = self.windows.windows
        if getattr(loaded.tokenizer, "truncation_side", "right") != "left":  # a left-truncating one keeps the end
            # With windows, a text is read up to max_windows windows of max_length tokens.
            reach = max_length * (self.windows.max_windows if windowed else 1)
            query, documents = bounded_texts(engine, query, documents, max_length=reach)
        call = self._windows(engine, query, documents, max_length) if windowed else None
        texts = documents if call is None else call.texts
        pairs = engine.encode(query, texts, max_length=max_length)
        with self._lock:
            self._pairs_scored += len(texts)
        if pairs.truncated:
            self._warn_truncation(pairs.truncated, len(texts), max_length)
        plan = functools.partial(
            plan_batches,
            max_pairs=self.batch_size,
            max_tokens=self.max_batch_tokens,
            padding_free=engine.padding_free,
        )
        logits = engine.logits(pairs, plan)
        scores: list[float] = self._activate(loaded, engine, logits).tolist()
        if call is None:
            return scores, [None] * len(scores)
        return call.best(scores, len(documents))

    def _windows(self, engine: ScoringEngine, query: str, documents: Sequence[str], max_length: int) -> WindowedCall:
        """The call's texts under the windows policy (:mod:`~milvus_rerank.rerankers.windows`), its cost logged."""

        def pair_lengths(query: str, texts: Sequence[str], limit: int) -> list[int]:
            return [len(ids) for ids in engine.encode(query, texts, max_length=limit).input_ids]

        call = plan_windows(
            query,
            documents,
            max_length=max_length,
            options=self.windows,
            pair_lengths=pair_lengths,
            token_offsets=engine.document_offsets,
        )
        if call.split:
            logger.debug("%s: %s", self.model_name_or_path, call.summary(max_length))
        if call.capped:
            with self._lock:
                first_time = not self._warned_cap
                self._warned_cap = True
            if first_time:
                logger.warning(
                    "%d of %d documents were longer than max_windows=%d windows of %d tokens and their end was not "
                    "scored for %s; pass max_windows=... or shorter chunks to control this. This warning is shown "
                    "once per reranker.",
                    call.capped,
                    len(documents),
                    self.windows.max_windows,
                    max_length,
                    self.model_name_or_path,
                )
        return call

    def _warn_truncation(self, truncated: int, count: int, max_length: int) -> None:
        with self._lock:
            first_time = not self._warned_truncation
            self._warned_truncation = True
        if first_time:
            logger.warning(
                "%d of %d (query, document) pairs were longer than %d tokens and were truncated (longest first; "
                "LLM rerankers: the end of the document) for %s; pass max_length=..., shorter chunks, or "
                "long_documents='windows' to score every part of a long document. This warning is shown once per "
                "reranker.",
                truncated,
                count,
                max_length,
                self.model_name_or_path,
            )

    def _activate(self, loaded: LoadedModel, engine: ScoringEngine, logits: torch.Tensor) -> torch.Tensor:
        torch = import_torch()
        if engine.num_labels == 2:
            if self.activation == "none":
                return logits[:, 1] - logits[:, 0]
            return torch.softmax(logits, dim=-1)[:, 1]
        logits = logits[:, 0]
        if self.activation == "none":
            return logits
        if self.activation == "sigmoid" or loaded.declared_activation is None:
            return torch.sigmoid(logits)
        return loaded.declared_activation(logits)


def _prompt_options(
    prompt_format: str | PromptFormat | None, instruction: str | None, true_token: str | None, false_token: str | None
) -> PromptOptions:
    """The LLM prompt options, checked at construction.

    Raises:
        TypeError: An option has the wrong type.
        ValueError: An unknown format name, a blank instruction or an empty token, or an instruction the
            format cannot take (or a format that needs one and has no default).
    """
    fmt = check_prompt_options(prompt_format, instruction=instruction)
    for option, value in (("true_token", true_token), ("false_token", false_token)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{option} must be a str or None, got {type(value).__name__}")
        if value == "":
            raise ValueError(f"{option} must be a non-empty str (e.g. 'yes') or None")
    return PromptOptions(fmt, instruction, true_token, false_token)
