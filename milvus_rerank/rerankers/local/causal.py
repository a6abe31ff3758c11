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

Each prompt is tokenized whole, as sentence-transformers tokenizes a rendered chat template, and
scored by :class:`~milvus_rerank.rerankers.local.decoder.CausalScorer`, which runs the prompts'
shared prefix (system text, instruction, query) once and only the scored position through the last
layer and the head's scored rows.

Prompts longer than ``max_length`` lose the end of their document, never the text after it (the
assistant turn the answer follows): the kept tokens are the prompt's first ``max_length - k`` and its
last ``k``, the ``k`` tokens of the template's document suffix, which is how sentence-transformers
restores a truncated chat template's suffix and how the model cards cut documents.

Imported only once torch is known to be installed (at model load).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from milvus_rerank.errors import ModelLoadError
from milvus_rerank.rerankers.local.decoder import CausalScorer
from milvus_rerank.rerankers.local.engine import BatchPlan, EncodedPairs, PromptOptions, ScoringEngine
from milvus_rerank.rerankers.prompts import PromptFormat, RenderedPrompts, prompt_format_from_chat_template
from milvus_rerank.rerankers.windows import token_offsets

__all__ = [
    "CausalEngine",
    "causal_engine",
    "chat_template_prompt_format",
    "encode_prompts",
    "is_llm_conversion",
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

    def document_offsets(self, documents: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Each document's tokens alone as ``(start, end)`` characters, where long-document windows are cut."""
        with self._llm.lock:
            return token_offsets(self._llm.tokenizer, documents)

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
