"""The scoring engine of LLM rerankers: a causal LM's answer-token logits after each (query, document) prompt.

LLM rerankers (Qwen3-Reranker, mxbai-rerank-v2, bge-reranker-v2-gemma, ...) score a document by the
logits of "yes" and "no" at the last position of its prompt: ``logit(yes) - logit(no)``, which the
reranker's activation (a sigmoid by default) turns into ``P(yes)``, exactly as sentence-transformers'
``LogitScore`` module and the model cards compute it. Their ``*ForSequenceClassification``
conversions hold that difference as a one-row head and score the same prompt the same way.

Every prompt of a call starts with the same system text, instruction and query, so the engine runs
that shared prefix once and scores every document from its cached keys and values. The shared prefix
is the longest common prefix of the prompts' token ids (each prompt tokenized whole, as
sentence-transformers does): where a tokenizer merges text across the query/document seam, the
common prefix simply ends earlier, so a cached run is always the model's own forward pass on the
same tokens. The documents' remaining tokens run in length-sorted batches (the caller's plan, by
token budget), and only each document's last position goes through the head, and only through the
head's scored rows (two rows of the LM head, never the full vocabulary).

Prompts longer than ``max_length`` lose the end of their document, never the text after it (the
assistant turn the answer follows): the kept tokens are the prompt's first ``max_length - k`` and its
last ``k``, the ``k`` tokens of the template's document suffix, which is how sentence-transformers
restores a truncated chat template's suffix and how the model cards cut documents.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from milvus_rerank.rerankers.prompts import PromptFormat, RenderedPrompts, prompt_format_from_chat_template

if TYPE_CHECKING:
    import torch

__all__ = [
    "CausalScorer",
    "EncodedPrompts",
    "chat_template_prompt_format",
    "encode_prompts",
    "token_id",
]

BatchPlan = Callable[[list[int]], list[list[int]]]
"""Cuts sequences of the given lengths into batches: lists of indices, each run in one forward pass."""


@dataclass(frozen=True)
class EncodedPrompts:
    """Token ids of one call's prompts, in input order, and how many had to be truncated.

    Attributes:
        input_ids: One token-id list per prompt, at most ``max_length`` long.
        truncated: How many prompts were longer than ``max_length`` and lost the end of their document.
    """

    input_ids: list[list[int]]
    truncated: int


def encode_prompts(tokenizer: Any, rendered: RenderedPrompts, *, suffix: str, max_length: int) -> EncodedPrompts:
    """Tokenize full prompts and cut over-long ones inside the document, keeping the template's ``suffix``.

    Each prompt is tokenized whole and without added special tokens, as ``apply_chat_template``
    does: a format that needs a BOS token writes it in its query template.

    Args:
        tokenizer: A Hugging Face tokenizer (callable, returning ``input_ids``).
        rendered: The call's prompts.
        suffix: The fixed text after the document (:attr:`PromptFormat.document_suffix`).
        max_length: Most tokens per prompt.

    Raises:
        ValueError: ``max_length`` leaves no room for any token before the suffix.
    """
    prompts = rendered.prompts
    input_ids: list[list[int]] = tokenizer(prompts, add_special_tokens=False, verbose=False)["input_ids"]
    long = [i for i, ids in enumerate(input_ids) if len(ids) > max_length]
    if not long:
        return EncodedPrompts(input_ids, 0)
    suffix_ids: list[int] = tokenizer(suffix, add_special_tokens=False)["input_ids"] if suffix else []
    for i in long:
        ids = input_ids[i]
        # Normally the whole suffix; less where the tokenizer merged its first token with the document's end.
        kept = 0
        while kept < len(suffix_ids) and ids[len(ids) - 1 - kept] == suffix_ids[len(suffix_ids) - 1 - kept]:
            kept += 1
        head = max_length - kept
        if head < 1:
            raise ValueError(
                f"max_length={max_length} leaves no room for the prompt: its fixed ending alone is {kept} tokens; "
                "raise max_length"
            )
        input_ids[i] = ids[:head] + ids[len(ids) - kept :]
    return EncodedPrompts(input_ids, len(long))


def token_id(tokenizer: Any, token: str, *, option: str) -> int:
    """The id of ``token``: a vocabulary entry (``"yes"``), else text that encodes as exactly one token (``" yes"``).

    Raises:
        ValueError: ``token`` is neither one vocabulary entry nor text of one token.
    """
    vocabulary = tokenizer.get_vocab()
    if token in vocabulary:
        return int(vocabulary[token])
    encoded = tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(encoded) == 1:
        return int(encoded[0])
    raise ValueError(
        f"{option}={token!r} is not one token of this model's tokenizer (it encodes as {len(encoded)} tokens: "
        f"{tokenizer.convert_ids_to_tokens(encoded)}); pass a single token, e.g. 'yes'"
    )


def chat_template_prompt_format(
    tokenizer: Any, *, instruction: str | None, true_token: str = "yes", false_token: str | None = "no"
) -> PromptFormat:
    """The prompt format the tokenizer's chat template renders for sentence-transformers' pair messages.

    Messages are offered with plain string content first, then as ``[{"type": "text", ...}]`` lists
    (templates written for multimodal processors read ``content[0].text``).

    Raises:
        ValueError: The tokenizer has no chat template, or its template cannot be split into a query
            part and document parts (see :func:`prompt_format_from_chat_template`).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template")

    def flat(messages: list[dict[str, str]]) -> str:
        return str(tokenizer.apply_chat_template(messages, tokenize=False))

    def structured(messages: list[dict[str, str]]) -> str:
        typed = [{**m, "content": [{"type": "text", "text": m["content"]}]} for m in messages]
        return str(tokenizer.apply_chat_template(typed, tokenize=False))

    errors = []
    for render in (flat, structured):
        try:
            return prompt_format_from_chat_template(
                render, instruction=instruction, true_token=true_token, false_token=false_token
            )
        except ValueError as exc:
            errors.append(exc)
        except Exception as exc:  # a Jinja error: the template does not take this content shape
            errors.append(ValueError(f"the chat template failed to render: {exc}"))
    raise errors[0]


def _common_prefix_length(sequences: Sequence[list[int]]) -> int:
    """Length of the longest prefix all ``sequences`` share."""
    # Lists compare lexicographically, so the prefix shared by the smallest and the largest is everyone's.
    first, last = min(sequences), max(sequences)
    length = 0
    for a, b in zip(first, last, strict=False):
        if a != b:
            break
        length += 1
    return length


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
        import copy
        import sys

        import torch

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
        import torch

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


def _new_cache(config: Any, data: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> Any:
    """A transformers ``DynamicCache``, optionally holding per-layer keys and values."""
    from transformers import DynamicCache

    if data is None:
        return DynamicCache(config=config)
    return DynamicCache(ddp_cache_data=data, config=config)


def _layer_states(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


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
        # Only these rows are ever multiplied: two rows of a vocabulary-wide LM head, or the classifier.
        self.weight = weight.detach().clone()
        self.bias = None if bias is None else bias.detach().clone()
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
        import torch

        count = len(input_ids)
        # At least one token of each sequence runs after the cache, to be scored.
        shared = min(_common_prefix_length(input_ids), min(len(ids) for ids in input_ids) - 1)
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
        import torch

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
        import torch

        logits = hidden @ self.weight.t()
        if self.bias is not None:
            logits = logits + self.bias
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        if self.margin:
            return (logits[:, 0] - logits[:, 1])[:, None]
        return logits
