"""The engine of LLM rerankers: each (query, document) pair as the model's prompt, scored by answer-token logits.

LLM rerankers (Qwen3-Reranker, mxbai-rerank-v2, bge-reranker-v2-gemma, ...) score a document by the
logits of "yes" and "no" at the last position of its prompt: ``logit(yes) - logit(no)``, which the
reranker's activation (a sigmoid by default) turns into ``P(yes)``, exactly as sentence-transformers'
``LogitScore`` module and the model cards compute it. Their ``*ForSequenceClassification``
conversions hold that difference as a one-row head and score the same prompt the same way.

The prompt comes from, in order: the reranker's ``prompt_format``; else the model's chat template,
rendered as sentence-transformers renders a pair (a ``system`` message with the instruction, then a
``query`` and a ``document`` message); a causal LM with neither is refused at load, since without
its prompt it would rank at random. The answer tokens come from the reranker's ``true_token`` /
``false_token``, else the format's (a given format) or the save's ``LogitScore`` (a chat template).

Every prompt of a call starts with the same system text, instruction and query, so the engine runs
that shared prefix once and scores every document from its cached keys and values. The shared prefix
is the longest common prefix of the prompts' token ids (each prompt tokenized whole, as
sentence-transformers does): where a tokenizer merges text across the query/document seam, the
common prefix simply ends earlier, so a cached run is always the model's own forward pass on the
same tokens. The documents' remaining tokens run in the reranker's length-sorted batches, the last
layer runs for each document's last token only, and only that position goes through the head, and
only through the head's scored rows (two rows of the LM head, never the full vocabulary).

Prompts longer than ``max_length`` lose the end of their document, never the text after it (the
assistant turn the answer follows): the kept tokens are the prompt's first ``max_length - k`` and its
last ``k``, the ``k`` tokens of the template's document suffix, which is how sentence-transformers
restores a truncated chat template's suffix and how the model cards cut documents.

The module stays whole because its parts serve one computation whose correctness argument spans
them: the prompt fixes the tokens, the tokens fix the shared prefix, and the prefix and the
last-token layer are only the model's own forward pass because of how the tokens were made.
Imported only once torch is known to be installed (at model load).
"""

from __future__ import annotations

import copy
import inspect
import logging
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from milvus_rerank.errors import ModelLoadError
from milvus_rerank.rerankers.local.engine import BatchPlan, EncodedPairs, PromptOptions, ScoringEngine
from milvus_rerank.rerankers.prompts import PromptFormat, RenderedPrompts, prompt_format_from_chat_template

__all__ = [
    "CausalEngine",
    "CausalScorer",
    "causal_engine",
    "chat_template_prompt_format",
    "encode_prompts",
    "is_llm_conversion",
    "shared_prefix_length",
    "token_id",
]

logger = logging.getLogger(__name__)


def encode_prompts(tokenizer: Any, rendered: RenderedPrompts, *, suffix: str, max_length: int) -> EncodedPairs:
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
        return EncodedPairs(input_ids)
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
    return EncodedPairs(input_ids, truncated=len(long))


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


def is_llm_conversion(model: Any) -> bool:
    """Whether a ``*ForSequenceClassification`` model is a decoder LLM's (a converted LLM reranker)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return (
        type(model).__name__.endswith("ForSequenceClassification")
        and hasattr(model, "score")
        and getattr(model.config, "model_type", None) in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    )


@dataclass(frozen=True, eq=False)
class _LLM:
    """What every engine of one loaded LLM reranker shares, whatever its prompt."""

    model: Any
    tokenizer: Any
    device: str
    causal: bool  # a *ForCausalLM (scored by answer tokens), else a sequence-classification conversion
    settings: dict[str, Any]  # what a sentence-transformers save declares (prompts, LogitScore)
    # Fast tokenizers refuse concurrent use of one instance ("Already borrowed").
    lock: threading.Lock
    fallback: list[ScoringEngine]  # the plain-pair engine of a conversion without a prompt, once made

    @property
    def name(self) -> str:
        return str(getattr(self.model.config, "_name_or_path", "") or type(self.model).__name__)


@dataclass(frozen=True, eq=False)
class _Prompting:
    prompt_format: PromptFormat
    instruction: str | None  # passed to render_query; None for a chat template's (it is already in)
    scorer: CausalScorer


def causal_engine(model: Any, tokenizer: Any, *, device: str, settings: dict[str, Any] | None = None) -> CausalEngine:
    """The engine of a loaded LLM reranker, with the model's own prompt (its chat template).

    Args:
        model: A ``*ForCausalLM``, or a ``*ForSequenceClassification`` conversion of one, in eval mode.
        tokenizer: Its tokenizer.
        device: The model's device.
        settings: What the model's sentence-transformers save declares (``prompts``,
            ``default_prompt_name``, ``logit_score``); empty for other checkpoints.
    """
    causal = not type(model).__name__.endswith("ForSequenceClassification")
    return CausalEngine(_LLM(model, tokenizer, device, causal, dict(settings or {}), threading.Lock(), []))


class CausalEngine:
    """Scores (query, document) pairs with an LLM reranker, prompt by prompt (a ``ScoringEngine``).

    Made by :func:`causal_engine` with the model's own prompt; :meth:`prompted` gives the same model
    with a reranker's options. Either finds its prompt on first use.
    """

    def __init__(self, llm: _LLM, options: PromptOptions | None = None) -> None:
        self._llm = llm
        self._options = options or PromptOptions()
        self._prompting: _Prompting | None = None

    @property
    def num_labels(self) -> int:
        """Columns of :meth:`logits`: 1 for a causal LM (the answer-token margin), else the conversion's labels."""
        return 1 if self._llm.causal else int(self._llm.model.config.num_labels)

    @property
    def padding_free(self) -> bool:
        """False: a batch costs its prompts x its longest (after the shared prefix)."""
        return False

    @property
    def prompt_format(self) -> PromptFormat:
        """The prompt format in use (found on first use).

        Raises:
            ModelLoadError: The model's prompt cannot be found (see :meth:`prompted`).
        """
        return self._prompt().prompt_format

    def prompted(self, options: PromptOptions) -> ScoringEngine:
        """The engine of the same model with a reranker's prompt ``options``, its prompt found now.

        A sequence-classification conversion with neither a prompt format nor a chat template that
        renders pairs gets the plain-pair engine instead, with a warning: it will score, but an LLM
        reranker ranks poorly without its prompt.

        Raises:
            ModelLoadError: The options do not fit the model, or a causal LM has no prompt (neither
                ``prompt_format`` nor a chat template that renders a query and a document).
        """
        engine = CausalEngine(self._llm, options)
        with self._llm.lock:
            prompting = engine._resolve()
            if prompting is not None:
                engine._prompting = prompting
                return engine
            return self._plain_pairs()

    def encode(self, query: str, documents: Sequence[str], *, max_length: int) -> EncodedPairs:
        """Render each pair's prompt and tokenize it once, cutting over-long documents to ``max_length`` tokens."""
        prompting = self._prompt()
        fmt = prompting.prompt_format
        rendered = fmt.render(query, documents, instruction=prompting.instruction)
        with self._llm.lock:
            return encode_prompts(self._llm.tokenizer, rendered, suffix=fmt.document_suffix, max_length=max_length)

    def logits(self, pairs: EncodedPairs, plan: BatchPlan) -> torch.Tensor:
        """Logits ``[pairs, num_labels]``, float32 on the CPU, in input order (see :class:`CausalScorer`)."""
        return self._prompt().scorer.logits(pairs.input_ids, plan)

    def _prompt(self) -> _Prompting:
        prompting = self._prompting
        if prompting is None:
            with self._llm.lock:
                prompting = self._resolve()
            if prompting is None:
                raise ModelLoadError(self._no_prompt_message())
            self._prompting = prompting
        return prompting

    def _resolve(self) -> _Prompting | None:
        """The prompt, answer tokens and scorer of these options; None for a conversion with no prompt."""
        llm, options = self._llm, self._options
        if not llm.causal and (options.true_token is not None or options.false_token is not None):
            raise ModelLoadError(
                f"{llm.name!r} is a sequence-classification conversion ({type(llm.model).__name__}): it scores with "
                "its classification head, so true_token and false_token do not apply; leave them unset"
            )
        saved: dict[str, Any] = {}
        if options.prompt_format is not None:
            fmt, instruction = options.prompt_format, options.instruction
        else:
            instruction = options.instruction
            prompts = llm.settings.get("prompts")
            default_name = llm.settings.get("default_prompt_name")
            if instruction is None and isinstance(prompts, dict) and isinstance(prompts.get(default_name), str):
                instruction = prompts[default_name]
            if not getattr(llm.tokenizer, "chat_template", None):
                if not llm.causal:
                    return None
                raise ModelLoadError(self._no_prompt_message())
            try:
                fmt = chat_template_prompt_format(llm.tokenizer, instruction=instruction)
            except ValueError as exc:
                if not llm.causal:
                    return None
                raise ModelLoadError(f"{llm.name!r} cannot score with its chat template: {exc}") from None
            instruction = None
            saved = llm.settings.get("logit_score") or {}
        if not llm.causal:
            return _Prompting(fmt, instruction, CausalScorer(llm.model))
        try:
            if options.true_token is not None:
                true_id = token_id(llm.tokenizer, options.true_token, option="true_token")
            elif isinstance(saved.get("true_token_id"), int):
                true_id = saved["true_token_id"]
            else:
                true_id = token_id(llm.tokenizer, fmt.true_token, option="the prompt format's true_token")
            false_id: int | None
            if options.false_token is not None:
                false_id = token_id(llm.tokenizer, options.false_token, option="false_token")
            elif "true_token_id" in saved:
                false_id = saved.get("false_token_id")
            elif fmt.false_token is not None:
                false_id = token_id(llm.tokenizer, fmt.false_token, option="the prompt format's false_token")
            else:
                false_id = None
        except ValueError as exc:
            raise ModelLoadError(f"{llm.name!r}: {exc}") from None
        return _Prompting(fmt, instruction, CausalScorer(llm.model, true_token_id=true_id, false_token_id=false_id))

    def _plain_pairs(self) -> ScoringEngine:
        from milvus_rerank.rerankers.local.encoder import EncoderEngine

        llm = self._llm
        if not llm.fallback:
            logger.warning(
                "%s is an LLM reranker's sequence-classification conversion (%s) with no prompt format and no chat "
                "template that renders (query, document) pairs: it scores the plain pair, and LLM rerankers rank "
                "poorly without their prompt. Pass prompt_format='qwen3' (Qwen3-Reranker conversions) or your own "
                "PromptFormat(query_template=..., document_template=...).",
                llm.name,
                type(llm.model).__name__,
            )
            llm.fallback.append(EncoderEngine(llm.model, llm.tokenizer, device=llm.device, packed=False))
        return llm.fallback[0]

    def _no_prompt_message(self) -> str:
        llm = self._llm
        return (
            f"{llm.name!r} is an LLM reranker ({type(llm.model).__name__}) whose tokenizer has no chat template, so "
            "its prompt is unknown, and without it the model ranks at random. Pass prompt_format='qwen3' for "
            "Qwen3-Reranker, or PromptFormat(query_template=..., document_template=...) with the prompt from the "
            "model card."
        )


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
        logits = hidden @ self.weight.t()
        if self.bias is not None:
            logits = logits + self.bias
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        if self.margin:
            return (logits[:, 0] - logits[:, 1])[:, None]
        return logits
