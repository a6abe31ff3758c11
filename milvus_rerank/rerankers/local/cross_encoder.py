"""The local cross-encoder reranker: a Hugging Face sequence-classification model run in-process.

A call reads as the reranker's contract: check the arguments, tokenize each pair once, cut the
pairs, longest first, into batches under a token budget, run them, apply the activation, and put
the results back in input order before ranking. The model machinery sits behind a small seam
(:mod:`.engine`): :mod:`.loading` loads a model once per process and returns it with the engine
that scores pairs (:mod:`.encoder`, which runs BERT-family models padding-free through :mod:`.packed`).

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

from milvus_rerank.rerankers.contract import check_rerank_args, rank
from milvus_rerank.rerankers.local.engine import LoadedModel
from milvus_rerank.rerankers.local.loading import (
    import_torch,
    load_model,
    model_key,
    resolve_device,
    resolve_dtype,
    shared_model,
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
    """Rerank documents with a local Hugging Face cross-encoder (BERT, XLM-RoBERTa, ELECTRA, ModernBERT, ...).

    The model is loaded lazily, on the first call that has documents to score, and only once per
    process for a given (model, device, dtype): instances with the same settings share it.

    Example:
        >>> reranker = CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L-6-v2")  # doctest: +SKIP
        >>> reranker.rerank("what is milvus?", ["Milvus is a vector database.", "Bananas."])  # doctest: +SKIP
        [RerankResult(index=0, score=0.99...), RerankResult(index=1, score=0.0001...)]

    Args:
        model_name_or_path: A Hugging Face hub id or a local directory holding a sequence-classification model.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a ``torch.device``; ``None`` picks cuda,
            then mps, then cpu.
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"`` (or a ``torch.dtype``); ``None`` means float32 on
            CPU and bfloat16 (float16 where bfloat16 is unsupported) on a GPU. bfloat16 on a CPU with native
            bf16 support is faster, with scores within about 1e-2 of float32.
        batch_size: Most pairs in one forward pass.
        max_length: Most tokens of a (query, document) pair; longer pairs are truncated longest-first, with a
            warning once per instance. ``None`` means the model's own limit.
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

    Raises:
        ValueError: An option has an invalid value.
        TypeError: An option has the wrong type.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        batch_size: int = 64,
        max_length: int | None = None,
        activation: Activation = "auto",
        max_batch_tokens: int | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        revision: str | None = None,
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
        self._warned_truncation = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.model_name_or_path!r}, device={self.device!r}, dtype={self.dtype!r}, "
            f"activation={self.activation!r})"
        )

    def _model(self) -> LoadedModel:
        loaded = self._loaded
        if loaded is None:
            loaded = shared_model(self._key, self._load)
            self._loaded = loaded
        return loaded

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
            ModelLoadError: The model cannot be found or is not a sequence-classification cross-encoder.
        """
        self._model()
        return self

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        """Score ``documents`` against ``query`` and return them best first.

        Args:
            query: The search query.
            documents: The candidate texts.
            top_n: Keep only the best ``top_n`` results; ``None`` keeps all.

        Returns:
            Results sorted by score descending, ties by original index; ``index`` points into ``documents``.

        Raises:
            TypeError: ``query`` is not a str or a document is not a str.
            ValueError: ``top_n`` is not a positive int.
            ModelLoadError: The model cannot be loaded.
        """
        documents = check_rerank_args(query, documents, top_n)
        if not documents:
            return []
        scores = self._score(query, documents)
        return rank((RerankResult(index, score) for index, score in enumerate(scores)), top_n)

    async def arerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        """Async twin of :meth:`rerank`: the model runs in a worker thread, never on the event loop."""
        documents = check_rerank_args(query, documents, top_n)
        if not documents:
            return []
        scores = await asyncio.to_thread(self._score, query, documents)
        return rank((RerankResult(index, score) for index, score in enumerate(scores)), top_n)

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        """Score each document against ``query``, in input order (no sorting, no cut).

        Raises:
            TypeError: ``query`` is not a str or a document is not a str.
            ModelLoadError: The model cannot be loaded.
        """
        documents = check_rerank_args(query, documents, None)
        if not documents:
            return []
        return self._score(query, documents)

    def _score(self, query: str, documents: Sequence[str]) -> list[float]:
        loaded = self._model()
        engine = loaded.engine
        max_length = min(self.max_length or loaded.max_length, loaded.max_length)
        pairs = engine.encode(query, documents, max_length=max_length)
        if pairs.truncated:
            self._warn_truncation(pairs.truncated, len(documents), max_length)
        plan = functools.partial(
            plan_batches,
            max_pairs=self.batch_size,
            max_tokens=self.max_batch_tokens,
            padding_free=engine.padding_free,
        )
        logits = engine.logits(pairs, plan)
        scores: list[float] = self._activate(loaded, logits).tolist()
        return scores

    def _warn_truncation(self, truncated: int, count: int, max_length: int) -> None:
        with self._lock:
            first_time = not self._warned_truncation
            self._warned_truncation = True
        if first_time:
            logger.warning(
                "%d of %d (query, document) pairs were longer than %d tokens and were truncated (longest first) "
                "for %s; pass max_length=... or shorter chunks to control this. This warning is shown once "
                "per reranker.",
                truncated,
                count,
                max_length,
                self.model_name_or_path,
            )

    def _activate(self, loaded: LoadedModel, logits: torch.Tensor) -> torch.Tensor:
        torch = import_torch()
        if loaded.engine.num_labels == 2:
            if self.activation == "none":
                return logits[:, 1] - logits[:, 0]
            return torch.softmax(logits, dim=-1)[:, 1]
        logits = logits[:, 0]
        if self.activation == "none":
            return logits
        if self.activation == "sigmoid" or loaded.declared_activation is None:
            return torch.sigmoid(logits)
        return loaded.declared_activation(logits)
