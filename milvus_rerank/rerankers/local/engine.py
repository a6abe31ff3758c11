"""The seam between the local reranker and a model family: a loaded model and its scoring engine.

:class:`~milvus_rerank.rerankers.local.cross_encoder.CrossEncoderReranker` does what every local
model shares: it checks the arguments, warns about truncation, plans length-sorted batches under a
token budget, applies the activation and orders the results. What depends on the model family sits
behind a :class:`ScoringEngine` with two steps:

- ``encode``: one call's (query, document) pairs -> token ids, once per call;
- ``logits``: those token ids -> logits ``[pairs, num_labels]`` in input order, run in the batches
  the reranker's plan cuts.

Sequence-classification cross-encoders run on the encoder engine
(:mod:`~milvus_rerank.rerankers.local.encoder`); LLM rerankers (causal LMs scored by their answer
tokens, and their sequence-classification conversions) on the causal engine
(:mod:`~milvus_rerank.rerankers.local.causal`). Both leave the reranker's batching and ordering as
they are.

A loaded model is shared by every reranker that asks for it, but an LLM reranker's prompt (format,
instruction, answer tokens) is each reranker's own choice: ``engine.prompted(options)`` is the
engine of the same model with a reranker's :class:`PromptOptions`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

    from milvus_rerank.rerankers.prompts import PromptFormat

__all__ = ["BatchPlan", "EncodedPairs", "LoadedModel", "PromptOptions", "ScoringEngine"]

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


@dataclass(frozen=True)
class PromptOptions:
    """A reranker's prompt choices for LLM rerankers; every field ``None`` means the model's own.

    Attributes:
        prompt_format: The prompt format; ``None`` uses the model's chat template.
        instruction: The task description; ``None`` uses the format's (or the save's) default.
        true_token: The answer token whose logit scores relevance; ``None`` uses the format's or the save's.
        false_token: The opposing answer token; ``None`` uses the format's or the save's.
    """

    prompt_format: PromptFormat | None = None
    instruction: str | None = None
    true_token: str | None = None
    false_token: str | None = None

    @property
    def given(self) -> bool:
        """Whether any option is set (they apply to LLM rerankers only)."""
        return any(
            value is not None for value in (self.prompt_format, self.instruction, self.true_token, self.false_token)
        )


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

    def document_offsets(self, documents: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Each document's tokens alone (no special tokens) as ``(start, end)`` characters: where windows are cut.

        Raises:
            ModelLoadError: The tokenizer gives no character offsets (not a fast tokenizer).
        """
        ...

    def prompted(self, options: PromptOptions) -> ScoringEngine:
        """The engine of the same model with a reranker's prompt ``options``.

        Raises:
            ModelLoadError: The options do not fit the model (e.g. a prompt format for an encoder, or an
                LLM whose prompt cannot be found).
        """
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
