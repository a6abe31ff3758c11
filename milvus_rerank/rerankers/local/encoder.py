"""The scoring engine of sequence-classification cross-encoders: the pair through the encoder and its head.

Each (query, document) pair is tokenized once, as the model's tokenizer joins a text pair (with
its special tokens and token types), truncated longest-first. BERT-family models (BERT, RoBERTa,
XLM-RoBERTa as in bge-reranker, ELECTRA) run on the packed path (:mod:`.packed`), with no padding in
any dense layer; other architectures run their own forward pass on padded batches.

Imported only once torch is known to be installed (at model load).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch

from milvus_rerank.errors import ModelLoadError
from milvus_rerank.rerankers.local.engine import BatchPlan, EncodedPairs, PromptOptions
from milvus_rerank.rerankers.local.packed import PackedEncoder
from milvus_rerank.rerankers.windows import token_offsets

__all__ = ["EncoderEngine"]


class EncoderEngine:
    """Scores (query, document) pairs with a ``*ForSequenceClassification`` encoder (a :class:`ScoringEngine`).

    Args:
        model: The loaded model, in eval mode, on ``device``.
        tokenizer: Its tokenizer.
        device: The model's device, where each batch's inputs go.
        packed: Run BERT-family architectures on the packed path; False always runs the model's own forward.
    """

    def __init__(self, model: Any, tokenizer: Any, *, device: str, packed: bool = True) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self._num_labels = int(model.config.num_labels)
        pad_token_id = tokenizer.pad_token_id
        if pad_token_id is None:
            pad_token_id = getattr(model.config, "pad_token_id", None) or 0
        self.pad_token_id = int(pad_token_id)
        self.uses_token_type_ids = "token_type_ids" in tokenizer("a", "b")
        self.packed_encoder = PackedEncoder.build(model) if packed else None
        # Fast tokenizers refuse concurrent use of one instance ("Already borrowed").
        self._tokenizer_lock = threading.Lock()

    @property
    def num_labels(self) -> int:
        """Columns of :meth:`logits`: the model's labels (1 or 2)."""
        return self._num_labels

    @property
    def padding_free(self) -> bool:
        """True on the packed path, where a batch costs only its real tokens."""
        return self.packed_encoder is not None

    def prompted(self, options: PromptOptions) -> EncoderEngine:
        """This engine: an encoder cross-encoder reads the plain pair and takes no prompt options.

        Raises:
            ModelLoadError: A prompt option is set.
        """
        if options.given:
            raise ModelLoadError(
                f"{self.model.config._name_or_path!r} is an encoder cross-encoder ({type(self.model).__name__}), "
                "which reads the plain (query, document) pair; prompt_format, instruction, true_token and "
                "false_token apply to LLM rerankers (causal LMs such as Qwen3-Reranker, and their "
                "sequence-classification conversions)"
            )
        return self

    def encode(self, query: str, documents: Sequence[str], *, max_length: int) -> EncodedPairs:
        """Tokenize each (query, document) pair once, truncated longest-first to ``max_length`` tokens."""
        tokenizer = self.tokenizer
        with self._tokenizer_lock:
            encoded = tokenizer(
                [query] * len(documents),
                list(documents),
                truncation="longest_first",
                max_length=max_length,
                padding=False,
                return_attention_mask=False,
                return_token_type_ids=self.uses_token_type_ids,
            )
            input_ids: list[list[int]] = encoded["input_ids"]
            # A pair that fills max_length exactly may or may not have been cut: check those few.
            full = [i for i, ids in enumerate(input_ids) if len(ids) >= max_length]
            truncated = 0
            if full:
                untruncated = tokenizer(
                    [query] * len(full),
                    [documents[i] for i in full],
                    truncation=False,
                    padding=False,
                    return_attention_mask=False,
                    return_token_type_ids=False,
                    verbose=False,
                )["input_ids"]
                truncated = sum(1 for ids in untruncated if len(ids) > max_length)
        token_type_ids = encoded["token_type_ids"] if self.uses_token_type_ids else None
        return EncodedPairs(input_ids, token_type_ids, truncated)

    def document_offsets(self, documents: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Each document's tokens alone as ``(start, end)`` characters, where long-document windows are cut."""
        with self._tokenizer_lock:
            return token_offsets(self.tokenizer, documents)

    def logits(self, pairs: EncodedPairs, plan: BatchPlan) -> torch.Tensor:
        """Logits ``[pairs, num_labels]``, float32 on the CPU, in input order: one forward pass per planned batch."""
        input_ids, token_type_ids = pairs.input_ids, pairs.token_type_ids
        lengths = [len(ids) for ids in input_ids]
        packed = self.packed_encoder
        with torch.inference_mode():
            out = torch.empty((len(lengths), self._num_labels), dtype=torch.float32)
            for batch in plan(lengths):
                batch_lengths = [lengths[i] for i in batch]
                if packed is not None:
                    ids = torch.tensor([t for i in batch for t in input_ids[i]], dtype=torch.long)
                    types = None
                    if token_type_ids is not None:
                        types = torch.tensor([t for i in batch for t in token_type_ids[i]], dtype=torch.long)
                        types = types.to(self.device)
                    logits = packed.logits(ids.to(self.device), types, batch_lengths)
                else:
                    logits = self._padded_logits(input_ids, token_type_ids, batch, batch_lengths)
                out[batch] = logits.float().cpu()
        return out

    def _padded_logits(
        self,
        input_ids: list[list[int]],
        token_type_ids: list[list[int]] | None,
        batch: list[int],
        lengths: list[int],
    ) -> torch.Tensor:
        """The model's own forward pass on a padded batch: for architectures the packed path does not know."""
        count, longest = len(batch), max(lengths)
        ids = torch.full((count, longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((count, longest), dtype=torch.long)
        types = torch.zeros((count, longest), dtype=torch.long) if token_type_ids is not None else None
        for row, (index, n) in enumerate(zip(batch, lengths, strict=True)):
            ids[row, :n] = torch.tensor(input_ids[index], dtype=torch.long)
            mask[row, :n] = 1
            if types is not None and token_type_ids is not None:
                types[row, :n] = torch.tensor(token_type_ids[index], dtype=torch.long)
        inputs = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        if types is not None:
            inputs["token_type_ids"] = types.to(self.device)
        return self.model(**inputs).logits
