"""Scoring token sequences with a decoder at their last position, running their common prefix once.

An LLM reranker's prompts all begin with the same system text, instruction and query, and each is
scored by the head at its last position only. :class:`CausalScorer` runs the longest prefix all the
sequences share once, keeps its keys and values, and runs each sequence's remaining tokens from
them in length-sorted batches. Because the shared part is the common prefix of the token ids
themselves, whatever produced them, a cached run is the model's own forward pass on the same tokens.

Two more cuts follow from reading one position: the last layer computes queries, attention and MLP
for that position only (:class:`_LastTokenLayer`, for decoder layouts it knows), and the head
multiplies only its scored rows (two rows of an LM head, or a classifier), never the vocabulary.

Imported only once torch is known to be installed (at model load).
"""

from __future__ import annotations

import copy
import inspect
import sys
from collections.abc import Sequence
from typing import Any

import torch

from milvus_rerank.rerankers.local.engine import BatchPlan

__all__ = ["CausalScorer", "shared_prefix_length"]


def shared_prefix_length(input_ids: Sequence[list[int]]) -> int:
    """How many leading tokens every sequence shares and runs once: at most all but the shortest's last.

    The shortest sequence keeps at least its last token out of the shared prefix, to be scored.
    """
    # Lists compare lexicographically, so the prefix shared by the smallest and the largest is everyone's.
    first, last = min(input_ids), max(input_ids)
    length = 0
    for a, b in zip(first, last, strict=False):
        if a != b:
            break
        length += 1
    return min(length, min(len(ids) for ids in input_ids) - 1)


# Decoders whose layers are exactly pre-norm attention (q/k/v/o projections, optional per-head q/k norms,
# rotary positions) plus pre-norm MLP, so that the last layer can be computed for one token per sequence.
_LAST_TOKEN_LAYER_TYPES = frozenset({"qwen2", "qwen3", "llama", "mistral", "gemma"})
_LAYER_PARTS = {"self_attn", "mlp", "input_layernorm", "post_attention_layernorm"}
_ATTENTION_PARTS = {"q_proj", "k_proj", "v_proj", "o_proj"}


class _LastTokenLayer:
    """A decoder's last layer for each sequence's last token only: the rest of that layer feeds nothing.

    The head reads one position per sequence, so in the last layer only that position needs its query,
    attention, output projection and MLP; every other position needs only its key and value, which the
    scored token attends to. That skips about 90% of the last layer's FLOPs. The earlier layers run as
    the model's own forward pass on a view of the base model without its last layer (the same modules
    and weights) and its final norm; this layer uses the model's own projections, norms, MLP and rotary
    embedding, in the model's order of operations.
    """

    def __init__(self, base: Any) -> None:
        self.layer = base.layers[-1]
        self.attention = self.layer.self_attn
        self.rotary = base.rotary_emb
        self.norm = base.norm
        self.rope = sys.modules[type(self.attention).__module__].apply_rotary_pos_emb
        self.head_dim = int(self.attention.head_dim)
        self.scaling = float(self.attention.scaling)
        config = copy.copy(base.config)
        config.num_hidden_layers -= 1
        if getattr(config, "layer_types", None):
            config.layer_types = list(config.layer_types)[:-1]
        # A view of the base model without its last layer and final norm: same modules, nothing copied.
        trunk = copy.copy(base)
        trunk._modules = dict(base._modules)
        trunk._modules["layers"] = torch.nn.ModuleList(list(base.layers)[:-1])
        trunk._modules["norm"] = torch.nn.Identity()
        trunk.config = config
        self.trunk = trunk
        self.trunk_config = config

    @staticmethod
    def build(base: Any) -> _LastTokenLayer | None:
        """The last-token layer for ``base``, or None when its architecture is not one this knows."""
        config = base.config
        if getattr(config, "model_type", None) not in _LAST_TOKEN_LAYER_TYPES:
            return None
        try:
            layer = base.layers[-1]
            attention = layer.self_attn
            parts = set(dict(layer.named_children()))
            attention_parts = set(dict(attention.named_children()))
            known = (
                parts == _LAYER_PARTS
                and _ATTENTION_PARTS <= attention_parts <= _ATTENTION_PARTS | {"q_norm", "k_norm"}
                and len(base.layers) > 1
                and hasattr(base, "rotary_emb")
                and hasattr(base, "norm")
                and (getattr(config, "layer_types", None) or ["full_attention"])[-1] == "full_attention"
                and not getattr(config, "attn_logit_softcapping", None)
            )
            return _LastTokenLayer(base) if known else None
        except (AttributeError, IndexError, TypeError):
            return None

    def __call__(
        self, hidden: torch.Tensor, last: torch.Tensor, shared: int, prefix: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        """Final-norm hidden states ``[batch, hidden]`` of each row's token ``last`` (rows right-padded)."""
        functional = torch.nn.functional
        attention = self.attention
        size, length = hidden.shape[:2]
        rows = torch.arange(size, device=hidden.device)
        normed = self.layer.input_layernorm(hidden)
        positions = torch.arange(shared, shared + length, device=hidden.device)[None]
        cos, sin = self.rotary(normed, positions)
        keys = attention.k_proj(normed).view(size, length, -1, self.head_dim)
        if hasattr(attention, "k_norm"):
            keys = attention.k_norm(keys)
        keys = keys.transpose(1, 2)
        values = attention.v_proj(normed).view(size, length, -1, self.head_dim).transpose(1, 2)
        keys = self.rope(keys, keys, cos, sin)[1]
        if prefix is not None:
            keys = torch.cat([prefix[0].expand(size, -1, -1, -1), keys], dim=2)
            values = torch.cat([prefix[1].expand(size, -1, -1, -1), values], dim=2)
        # The scored tokens: one query per row.
        kv_heads = keys.shape[1]
        query = attention.q_proj(normed[rows, last][:, None]).view(size, 1, -1, self.head_dim)
        if hasattr(attention, "q_norm"):
            query = attention.q_norm(query)
        query = self.rope(query.transpose(1, 2), query.transpose(1, 2), cos[0, last][:, None], sin[0, last][:, None])[0]
        # Grouped-query attention without repeating keys: query heads of one key head side by side.
        query = query.reshape(size, kv_heads, -1, self.head_dim)
        visible = torch.arange(keys.shape[2], device=hidden.device)[None, :] <= (last + shared)[:, None]
        context = functional.scaled_dot_product_attention(
            query, keys, values, attn_mask=visible[:, None, None, :], scale=self.scaling
        )
        attended = hidden[rows, last] + attention.o_proj(context.reshape(size, -1))
        output = attended + self.layer.mlp(self.layer.post_attention_layernorm(attended))
        return self.norm(output)


def _new_cache(config: Any, data: Sequence[tuple[torch.Tensor, torch.Tensor]] = ()) -> Any:
    """A transformers ``DynamicCache`` for ``config``, holding per-layer keys and values from ``data``."""
    from transformers import DynamicCache

    try:
        cache = DynamicCache(config=config)
    except TypeError:  # transformers before 4.56 builds its layers as they are filled
        cache = DynamicCache()
    for index, (keys, values) in enumerate(data):
        cache.update(keys, values, index)
    return cache


def _layer_states(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's (keys, values) in ``cache``."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [(layer.keys, layer.values) for layer in layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))  # transformers before 4.54


class CausalScorer:
    """Scores token sequences by a decoder's head at each sequence's last position, sharing their common prefix.

    Works on a ``*ForCausalLM`` (scored by the LM head's rows of the true and false tokens) and on a
    ``*ForSequenceClassification`` conversion of one (scored by its classification head), for every
    decoder whose base model takes a key/value cache (Qwen2, Qwen3, Llama, Gemma, Mistral, ...). For
    Qwen2, Qwen3, Llama, Mistral and Gemma the last layer runs for the scored tokens only.

    Args:
        model: The loaded model, in eval mode, on its device.
        true_token_id: The token whose logit scores relevance (causal LMs only).
        false_token_id: The opposing token, or ``None`` to score ``logit(true)`` alone (causal LMs only).
        last_token_layer: Compute the last layer for the scored tokens only, where the architecture
            allows it; ``False`` runs every layer for every token (a reference for tests).

    Raises:
        ValueError: A causal LM without ``true_token_id``, token ids for a sequence-classification
            model, or a model without the expected base model and head.
    """

    def __init__(
        self,
        model: Any,
        *,
        true_token_id: int | None = None,
        false_token_id: int | None = None,
        last_token_layer: bool = True,
    ) -> None:
        base = getattr(model, "base_model", None)
        if base is None or base is model:
            raise ValueError(f"{type(model).__name__} has no base model to run without its head")
        score = getattr(model, "score", None)
        self.model = model
        self.base = base
        self.config = base.config
        self.pad_token_id = int(getattr(model.config, "pad_token_id", None) or 0)
        # Gemma 2/3 cap every logit with tanh before anything reads it.
        self.softcap = getattr(self.config, "final_logit_softcapping", None)
        if score is not None and not hasattr(model, "lm_head"):
            if true_token_id is not None or false_token_id is not None:
                raise ValueError(
                    f"{type(model).__name__} scores with its own classification head; true_token and false_token "
                    "apply to causal LMs only"
                )
            self.margin = False
            weight, bias = score.weight, getattr(score, "bias", None)
        else:
            head = model.get_output_embeddings()
            if head is None:
                raise ValueError(f"{type(model).__name__} has neither an LM head nor a classification head")
            if true_token_id is None:
                raise ValueError("a causal LM reranker needs true_token_id (e.g. the id of 'yes')")
            rows = [true_token_id] if false_token_id is None else [true_token_id, false_token_id]
            self.margin = false_token_id is not None
            weight = head.weight[rows]
            bias = None if getattr(head, "bias", None) is None else head.bias[rows]
        # Only these rows are ever multiplied: two rows of a vocabulary-wide LM head, or the classifier. They
        # run in float32 whatever the model's dtype, so that scores keep float32's resolution (a bfloat16
        # logit near 16 moves in steps of 1/8, and documents the model tells apart would tie).
        self.weight = weight.detach().clone().float()
        self.bias = None if bias is None else bias.detach().clone().float()
        self.last_token_layer = _LastTokenLayer.build(base) if last_token_layer else None
        # transformers 5 renames the base models' `past_key_values` to `cache` (the old name warns, then goes).
        parameters = inspect.signature(type(base).forward).parameters
        self._cache_argument = "cache" if "cache" in parameters else "past_key_values"

    @property
    def num_labels(self) -> int:
        """Columns of :meth:`logits`: 1 for a causal LM (the margin), else the classifier's labels."""
        return 1 if self.margin else int(self.weight.shape[0])

    def logits(self, input_ids: Sequence[list[int]], plan: BatchPlan) -> torch.Tensor:
        """Head logits ``[len(input_ids), num_labels]`` (float32, on the CPU) at each sequence's last token.

        Args:
            input_ids: Token ids, one list per prompt, none empty.
            plan: Cuts the sequences' lengths after the shared prefix into batches.
        """
        count = len(input_ids)
        shared = shared_prefix_length(input_ids)
        device = self.weight.device
        out = torch.empty((count, self.num_labels), dtype=torch.float32)
        with torch.inference_mode():
            prefix: list[tuple[torch.Tensor, torch.Tensor]] = []
            if shared > 0:
                cache = _new_cache(self.config)
                ids = torch.tensor([input_ids[0][:shared]], dtype=torch.long, device=device)
                self.base(input_ids=ids, use_cache=True, **{self._cache_argument: cache})
                prefix = _layer_states(cache)
            lengths = [len(ids) - shared for ids in input_ids]
            for batch in plan(lengths):
                size, longest = len(batch), max(lengths[i] for i in batch)
                # Padding goes on the right: causal attention keeps every real token from seeing it.
                rows = torch.full((size, longest), self.pad_token_id, dtype=torch.long)
                for row, index in enumerate(batch):
                    rows[row, : lengths[index]] = torch.tensor(input_ids[index][shared:], dtype=torch.long)
                last = torch.tensor([lengths[i] - 1 for i in batch], device=device)
                out[batch] = self._head(self._last_hidden(rows.to(device), last, shared, prefix)).float().cpu()
        return out

    def _last_hidden(
        self, rows: torch.Tensor, last: torch.Tensor, shared: int, prefix: list[tuple[torch.Tensor, torch.Tensor]]
    ) -> torch.Tensor:
        """Final hidden states ``[batch, hidden]`` at each row's position ``last``, after the shared prefix."""
        size = rows.shape[0]
        layer = self.last_token_layer
        model = self.base if layer is None else layer.trunk
        config = self.config if layer is None else layer.trunk_config
        past = None
        if prefix:
            kept = prefix if layer is None else prefix[:-1]
            past = _new_cache(config, [(k.expand(size, -1, -1, -1), v.expand(size, -1, -1, -1)) for k, v in kept])
        hidden = model(input_ids=rows, use_cache=past is not None, **{self._cache_argument: past}).last_hidden_state
        if layer is None:
            return hidden[torch.arange(size, device=hidden.device), last]
        return layer(hidden, last, shared, prefix[-1] if prefix else None)

    def _head(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = hidden.float() @ self.weight.t()
        if self.bias is not None:
            logits = logits + self.bias
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        if self.margin:
            return (logits[:, 0] - logits[:, 1])[:, None]
        return logits
