"""Tiny LLM rerankers made on the spot: random causal LMs with the tokenizer an LLM reranker needs.

The models (Qwen3, Qwen2, Llama or Gemma architecture) have random weights drawn with a fixed seed,
so their scores are meaningless but reproducible. Their tokenizer is a byte-level BPE trained here
(the ``tokenizers`` library) on the Qwen3-Reranker prompt and the given texts, so it holds the prompt's
special tokens (``<|im_start|>``, ``<|im_end|>``, ``<think>``, ``</think>``) and "yes" / "no" as single
tokens, and splits text like Qwen's tokenizer (the same pre-tokenization pattern). Each model is saved
in one of the three forms users have on disk:

- ``"sentence-transformers"``: a sentence-transformers 6 save (``modules.json`` with the text-generation
  ``Transformer`` and a ``LogitScore`` on "yes" / "no"), with a chat template that renders the
  ``query`` / ``document`` messages in the Qwen3-Reranker prompt;
- ``"causal-lm"``: a plain Hugging Face ``*ForCausalLM`` checkpoint (no chat template unless given);
- ``"sequence-classification"``: the ``*ForSequenceClassification`` conversion that vLLM and
  sentence-transformers users make, whose one-label head is the "yes" row minus the "no" row of the
  LM head, so it scores exactly as the causal LM does on the same prompt.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from milvus_rerank.rerankers.prompts import _PLACEHOLDER, QWEN3, PromptFormat

__all__ = [
    "LLM_ARCHITECTURES",
    "QWEN3_H512_L8",
    "TINY_LLM",
    "chatml_template",
    "make_llm_reranker",
    "make_llm_tokenizer",
    "reranker_chat_template",
]

LLM_ARCHITECTURES = ("qwen3", "qwen2", "llama", "gemma")
"""The architectures :func:`make_llm_reranker` builds."""

SaveFormat = Literal["sentence-transformers", "causal-lm", "sequence-classification"]

TINY_LLM: dict[str, Any] = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "intermediate_size": 128,
    # Wide initial weights, so that scores depend visibly on the input text.
    "initializer_range": 0.2,
}
"""A decoder small enough to load and run in milliseconds."""

QWEN3_H512_L8: dict[str, Any] = {
    "hidden_size": 512,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 64,
    "intermediate_size": 1536,
    "initializer_range": 0.02,
}
"""Qwen3-Reranker-0.6B's layout at a quarter of its depth and half its width: a benchmark model."""

# Qwen2/Qwen3's pre-tokenization: newlines, punctuation runs and words split apart, so that the token
# boundaries of a prompt do not depend on which side of a template's seam a text was written on.
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_ADDED_TOKENS = ["<think>", "</think>"]
_CORPUS = """
yes no Yes No yes no relevant irrelevant the answer is yes or no the document answers the query
what is milvus a vector database for similarity search over embeddings reranking retrieval
cancer cells protein gene genes disease patients study risk treatment effect expression levels clinical
the of and to in a is that for it as was with be by on not this are or from at which but have an they
"""


def make_llm_tokenizer(*, texts: Iterable[str] = (), vocab_size: int = 2000) -> Any:
    """A byte-level BPE tokenizer (a ``PreTrainedTokenizerFast``) for LLM rerankers, trained on the spot.

    Args:
        texts: Texts to train on besides the Qwen3-Reranker prompt, so that their words become
            tokens and token counts look like a real vocabulary's.
        vocab_size: The most tokens to learn (fewer when the texts are short).

    Returns:
        The tokenizer: pad ``<|endoftext|>``, end of turn ``<|im_end|>``, and "yes" / "no" single tokens.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    prompt = QWEN3.render("what is milvus?", ["Milvus is a vector database."]).prompts[0]
    tokenizer.train_from_iterator([_CORPUS, prompt, *texts] + [" yes no"] * 50, trainer)
    tokenizer.add_tokens(_ADDED_TOKENS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=32768
    )
    for word in ("yes", "no"):
        if fast.tokenize(word) != [word]:
            raise RuntimeError(f"the trained tokenizer splits {word!r}: {fast.tokenize(word)}")
    return fast


def reranker_chat_template(prompt_format: PromptFormat = QWEN3) -> str:
    """A Jinja chat template that renders ``prompt_format`` from sentence-transformers' pair messages.

    The messages are an optional ``system`` message (the instruction; the format's default when
    absent), a ``query`` and a ``document`` message, with content as a string or as
    ``[{"type": "text", "text": ...}]``. Every fixed text is written as a Jinja string literal, so the
    template's own whitespace handling cannot change it.
    """
    values = {
        "query": "{{ ns.query }}",
        "instruction": "{{ ns.instruction }}",
        "document": "{{ ns.document }}",
    }

    def jinja(template: str) -> str:
        parts, last = [], 0
        for match in _PLACEHOLDER.finditer(template):
            if match.start() > last:
                parts.append("{{ " + json.dumps(template[last : match.start()]) + " }}")
            parts.append(values[match.group(1)])
            last = match.end()
        if last < len(template):
            parts.append("{{ " + json.dumps(template[last:]) + " }}")
        return "".join(parts)

    default = json.dumps(prompt_format.default_instruction or "")
    return (
        "{%- set ns = namespace(instruction=" + default + ', query="", document="") -%}'
        "{%- for message in messages -%}"
        "{%- set content = message.content if message.content is string else message.content[0].text -%}"
        '{%- if message.role == "system" -%}{%- set ns.instruction = content -%}'
        '{%- elif message.role == "query" -%}{%- set ns.query = content -%}'
        '{%- elif message.role == "document" -%}{%- set ns.document = content -%}'
        "{%- endif -%}"
        "{%- endfor -%}" + jinja(prompt_format.query_template) + jinja(prompt_format.document_template)
    )


def chatml_template() -> str:
    """A ChatML chat template (Qwen's ``<|im_start|>role ... <|im_end|>`` turns), to serve a test model for chat.

    With ``add_generation_prompt`` it opens the assistant's turn; string contents only.
    """
    return (
        "{%- for message in messages -%}"
        "{{ '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
    )


def _causal_lm(architecture: str, vocab_size: int, pad_token_id: int, shape: dict[str, Any], max_positions: int) -> Any:
    import transformers

    config_class, model_class = {
        "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
        "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
        "llama": ("LlamaConfig", "LlamaForCausalLM"),
        "gemma": ("GemmaConfig", "GemmaForCausalLM"),
    }[architecture]
    options: dict[str, Any] = {
        "vocab_size": vocab_size,
        "pad_token_id": pad_token_id,
        "max_position_embeddings": max_positions,
        # Qwen3-Reranker and mxbai-rerank-v2 keep a separate LM head; Gemma ties it to the embeddings.
        "tie_word_embeddings": architecture == "gemma",
        **shape,
    }
    config = getattr(transformers, config_class)(**options)
    return getattr(transformers, model_class)(config).eval()


def _sequence_classification(causal: Any, architecture: str, true_id: int, false_id: int) -> Any:
    import copy

    import torch
    import transformers

    name = type(causal).__name__.replace("ForCausalLM", "ForSequenceClassification")
    config = copy.deepcopy(causal.config)
    config.num_labels = 1
    config.architectures = [name]
    model = getattr(transformers, name)(config).eval()
    model.model.load_state_dict(causal.model.state_dict())
    with torch.no_grad():
        head = causal.lm_head.weight
        model.score.weight.copy_((head[true_id] - head[false_id])[None, :])
    return model


def _write_json(path: Path, content: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


def _write_sentence_transformers_files(
    path: Path, *, true_id: int, false_id: int, prompts: dict[str, str], default_prompt_name: str | None
) -> None:
    """The files sentence-transformers 6 writes beside a causal reranker's weights (as ``CrossEncoder.save``)."""
    _write_json(
        path / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_LogitScore",
                "type": "sentence_transformers.cross_encoder.modules.logit_score.LogitScore",
            },
        ],
    )
    _write_json(
        path / "sentence_bert_config.json",
        {
            "transformer_task": "text-generation",
            "modality_config": {
                "text": {"method": "forward", "method_output_name": "logits"},
                "message": {"method": "forward", "method_output_name": "logits", "format": "structured"},
            },
            "module_output_name": "causal_logits",
        },
    )
    _write_json(
        path / "config_sentence_transformers.json",
        {
            "activation_fn": "torch.nn.modules.activation.Sigmoid",
            "default_prompt_name": default_prompt_name,
            "model_type": "CrossEncoder",
            "prompts": prompts,
        },
    )
    _write_json(
        path / "1_LogitScore" / "config.json",
        {"true_token_id": true_id, "false_token_id": false_id, "module_input_name": "causal_logits"},
    )


def make_llm_reranker(
    path: str | Path,
    *,
    architecture: Literal["qwen3", "qwen2", "llama", "gemma"] = "qwen3",
    save_format: SaveFormat = "sentence-transformers",
    chat_template: str | None = None,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    shape: dict[str, Any] | None = None,
    texts: Iterable[str] = (),
    vocab_size: int = 2000,
    max_position_embeddings: int = 4096,
    seed: int = 0,
) -> Path:
    """Save a randomly initialised LLM reranker (weights + tokenizer) to ``path``.

    Args:
        path: Directory to create.
        architecture: ``"qwen3"`` (Qwen3-Reranker), ``"qwen2"`` (mxbai-rerank-v2), ``"llama"`` or
            ``"gemma"`` (bge-reranker-v2-gemma).
        save_format: ``"sentence-transformers"``, ``"causal-lm"`` or ``"sequence-classification"``
            (see the module docstring).
        chat_template: The tokenizer's chat template. ``None`` means :func:`reranker_chat_template`
            for a sentence-transformers save and no template otherwise.
        prompts: Named prompts (instructions) of a sentence-transformers save.
        default_prompt_name: The prompt a sentence-transformers save uses when a call names none.
        shape: Sizes as in :data:`TINY_LLM` (default) or :data:`QWEN3_H512_L8`.
        texts: Extra texts the tokenizer learns words from.
        vocab_size: The most tokens the tokenizer learns.
        max_position_embeddings: The model's token limit.
        seed: Seed of the random weights.

    Returns:
        The directory, ready for ``CrossEncoderReranker(path)`` or sentence-transformers' ``CrossEncoder(path)``.

    Raises:
        ValueError: An unknown architecture or save format, or prompts for another save format.
    """
    import torch

    if architecture not in LLM_ARCHITECTURES:
        raise ValueError(f"architecture must be one of {LLM_ARCHITECTURES}, got {architecture!r}")
    if save_format not in ("sentence-transformers", "causal-lm", "sequence-classification"):
        raise ValueError(f"unknown save_format {save_format!r}")
    if (prompts or default_prompt_name) and save_format != "sentence-transformers":
        raise ValueError("prompts and default_prompt_name belong to a sentence-transformers save")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = make_llm_tokenizer(texts=texts, vocab_size=vocab_size)
    if chat_template is None and save_format == "sentence-transformers":
        chat_template = reranker_chat_template()
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(path)

    true_id = tokenizer.convert_tokens_to_ids("yes")
    false_id = tokenizer.convert_tokens_to_ids("no")
    torch.manual_seed(seed)
    model = _causal_lm(architecture, len(tokenizer), tokenizer.pad_token_id, shape or TINY_LLM, max_position_embeddings)
    if save_format == "sequence-classification":
        model = _sequence_classification(model, architecture, true_id, false_id)
    model.save_pretrained(path)
    if save_format == "sentence-transformers":
        _write_sentence_transformers_files(
            path,
            true_id=true_id,
            false_id=false_id,
            prompts=dict(prompts or {}),
            default_prompt_name=default_prompt_name,
        )
    return path
