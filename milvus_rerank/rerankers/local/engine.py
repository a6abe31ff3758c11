"""The seam between the local reranker and a model family: a loaded model and its scoring engine.

:class:`~milvus_rerank.rerankers.local.cross_encoder.CrossEncoderReranker` does what every local
model shares: it checks the arguments, warns about truncation, plans length-sorted batches under a
token budget, applies the activation and orders the results. What depends on the model family sits
behind a :class:`ScoringEngine` with two steps:

- ``encode``: one call's (query, document) pairs -> token ids, once per call;
- ``logits``: those token ids -> logits ``[pairs, num_labels]`` in input order, run in the batches
  the reranker's plan cuts.

Sequence-classification cross-encoders run on the encoder engine
(:mod:`~milvus_rerank.rerankers.local.encoder`); another family (a causal LM scored by its answer
tokens) adds an engine of its own and leaves the reranker's batching and ordering as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

__all__ = ["BatchPlan", "EncodedPairs", "LoadedModel", "ScoringEngine"]

BatchPlan = Callable[[list[int]], list[list[int]]]
"""Cuts sequences of the given lengths into batches: lists of indices, each run in one forward pass."""


@dataclass(frozen=True, eq=False)
class EncodedPairs:
    """Token ids of one call's pairs, in input order, and how many were truncated.

    The reranker reads only the lengths of ``input_ids`` (to plan batches) and ``truncated`` (to
    warn); it hands the value back to the engine that made it, so an engine may return a subclass
    that carries more.

    Attributes:
        input_ids: One token-id list per pair, at most the call's ``max_length`` long, none empty.
        token_type_ids: Token types aligned with ``input_ids``, or None for models without them.
        truncated: How many pairs were longer than ``max_length`` and were cut.
    """

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None = None
    truncated: int = 0


class ScoringEngine(Protocol):
    """Turns (query, document) pairs into logits for one loaded model; shared by every reranker using it.

    Engines are called from several threads at once and must guard what cannot be shared (a fast
    tokenizer refuses concurrent use of one instance).
    """

    @property
    def num_labels(self) -> int:
        """Columns of :meth:`logits`: 1 (a relevance logit) or 2 (scored by the probability of label 1)."""
        ...

    @property
    def padding_free(self) -> bool:
        """Whether a batch costs its real tokens (True) or pairs x its longest pair (False)."""
        ...

    def encode(self, query: str, documents: Sequence[str], *, max_length: int) -> EncodedPairs:
        """Tokenize each (query, document) pair once, cut to at most ``max_length`` tokens."""
        ...

    def logits(self, pairs: EncodedPairs, plan: BatchPlan) -> torch.Tensor:
        """Logits ``[pairs, num_labels]``, float32 on the CPU, in input order, computed batch by batch of ``plan``."""
        ...


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model loaded once per process, with its engine: what every reranker asking for it shares.

    Attributes:
        model: The Hugging Face model, in eval mode, on its device.
        tokenizer: Its tokenizer.
        engine: Scores pairs with them.
        max_length: The most tokens of a pair the model takes.
        declared_activation: The activation the model's config declares (a torch module instance, applied to
            a one-label logit), or None when it declares nothing usable.
    """

    model: Any
    tokenizer: Any
    engine: ScoringEngine
    max_length: int
    declared_activation: Any = None
