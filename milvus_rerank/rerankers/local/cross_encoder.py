"""A local cross-encoder reranker that runs a Hugging Face sequence-classification model in-process.

Speed comes from doing less work than a plain batched loop: each pair is tokenized once, pairs are
sorted by token length and cut into batches under a token budget, and results are put back in input
order. BERT-family models (BERT, RoBERTa, XLM-RoBERTa as in bge-reranker, ELECTRA) run on a packed
path with no padding in any dense layer, and their last layer computes only the first token that the
classifier reads; other architectures run their own forward pass on length-sorted padded batches.
Loaded models are shared by every instance in the process that asks for the same (model, device, dtype).

Requires the ``local`` extra: ``pip install 'milvus-rerank[local]'``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from milvus_rerank.errors import ModelLoadError
from milvus_rerank.rerankers.contract import check_rerank_args, rank
from milvus_rerank.types import RerankResult

if TYPE_CHECKING:
    import torch

__all__ = ["CrossEncoderReranker"]

logger = logging.getLogger(__name__)

Activation = Literal["auto", "sigmoid", "none"]
_ACTIVATIONS = ("auto", "sigmoid", "none")

_DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}

# Most tokens in one forward pass (real tokens on the packed path, pairs x longest pair otherwise).
# On a CPU, batches of about 1k tokens keep a layer's activations in cache and ran fastest in
# benchmarks/local_reranker.py (1k-2k alike, 8k 30% slower); a GPU wants large ones.
_DEFAULT_TOKEN_BUDGET = {"cpu": 1024, "cuda": 16384, "mps": 8192}

_INSTALL_HINT = "CrossEncoderReranker needs torch and transformers: pip install 'milvus-rerank[local]'"


def _import_torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(_INSTALL_HINT) from exc


def _import_transformers() -> Any:
    try:
        return importlib.import_module("transformers")
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(_INSTALL_HINT) from exc


# Architectures whose encoder layers share BERT's module layout, so the packed path can run them.
_PACKED_ARCHITECTURES = {
    "BertForSequenceClassification": "pooler",
    "RobertaForSequenceClassification": "head",
    "XLMRobertaForSequenceClassification": "head",
    "CamembertForSequenceClassification": "head",
    "ElectraForSequenceClassification": "head",
}


class _PackedEncoder:
    """Runs a BERT-family cross-encoder on packed tokens: no padding in any dense layer.

    The batch's pairs are concatenated into one ``[tokens, hidden]`` matrix, so the dense layers
    (over 90% of the FLOPs) see only real tokens, with Q, K and V in one matmul. Attention alone
    pads the batch's pairs to its longest (they are sorted by length, so that is little). Numerically
    this is the model's own forward pass: the same weights, operations and order per token.
    """

    def __init__(self, model: Any) -> None:
        torch = _import_torch()
        base = model.base_model
        config = model.config
        self.model = model
        self.embeddings = base.embeddings
        # RoBERTa-style models number positions from padding_idx + 1.
        padding_idx = getattr(self.embeddings, "padding_idx", None)
        self.position_offset = padding_idx + 1 if isinstance(padding_idx, int) else 0
        self.project = getattr(base, "embeddings_project", None)
        self.pooler = getattr(base, "pooler", None) if _PACKED_ARCHITECTURES[type(model).__name__] == "pooler" else None
        self.layers = []
        for layer in base.encoder.layer:
            attention = layer.attention.self
            qkv_weight = torch.cat([attention.query.weight, attention.key.weight, attention.value.weight]).detach()
            qkv_bias = torch.cat([attention.query.bias, attention.key.bias, attention.value.bias]).detach()
            self.layers.append(
                (
                    qkv_weight,
                    qkv_bias,
                    layer.attention.output.dense,
                    layer.attention.output.LayerNorm,
                    layer.intermediate.dense,
                    layer.intermediate.intermediate_act_fn,
                    layer.output.dense,
                    layer.output.LayerNorm,
                )
            )
        first = base.encoder.layer[0].attention.self
        self.heads = int(first.num_attention_heads)
        self.head_size = int(first.attention_head_size)
        self.scaling = float(getattr(first, "scaling", self.head_size**-0.5))
        self.hidden = int(config.hidden_size)

    @staticmethod
    def build(model: Any) -> _PackedEncoder | None:
        """The packed runner for ``model``, or None when its architecture needs the generic forward."""
        config = model.config
        if type(model).__name__ not in _PACKED_ARCHITECTURES:
            return None
        if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
            return None
        if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
            return None
        try:
            layer = model.base_model.encoder.layer[0]
            for path in (
                "attention.self.query",
                "attention.self.key",
                "attention.self.value",
                "attention.output.dense",
                "attention.output.LayerNorm",
                "intermediate.dense",
                "intermediate.intermediate_act_fn",
                "output.dense",
                "output.LayerNorm",
            ):
                obj = layer
                for part in path.split("."):
                    obj = getattr(obj, part)
            return _PackedEncoder(model)
        except (AttributeError, IndexError, TypeError):
            return None

    def logits(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None, lengths: list[int]) -> torch.Tensor:
        """Logits ``[pairs, labels]`` for pairs whose tokens are concatenated in ``input_ids`` ``[tokens]``."""
        torch = _import_torch()
        functional = torch.nn.functional
        device = input_ids.device
        count, longest = len(lengths), max(lengths)
        # Index tensors are built on the CPU in a few vectorised ops, then moved once.
        sizes = torch.tensor(lengths)
        starts = torch.cumsum(sizes, 0) - sizes
        offsets = torch.repeat_interleave(starts, sizes)
        positions = torch.arange(int(sizes.sum())) - offsets
        hidden = self.embeddings(
            input_ids=input_ids[None],
            token_type_ids=None if token_type_ids is None else token_type_ids[None],
            position_ids=(positions + self.position_offset).to(device)[None],
        )[0]
        if self.project is not None:
            hidden = self.project(hidden)

        uniform = all(n == longest for n in lengths)
        rows = key_mask = None
        if not uniform:
            # Row of each real token in the [count * longest] padded layout that attention uses.
            rows = (positions + torch.repeat_interleave(torch.arange(count) * longest, sizes)).to(device)
            key_mask = (torch.arange(longest)[None, :] < sizes[:, None]).to(device)[:, None, None, :]
        heads, head_size, width = self.heads, self.head_size, self.hidden
        first_rows = starts.to(device)
        last = len(self.layers) - 1
        for depth, (qkv_weight, qkv_bias, out, norm1, up, act, down, norm2) in enumerate(self.layers):
            if depth < last:
                qkv = torch.addmm(qkv_bias, hidden, qkv_weight.t())
                residual = hidden
            else:
                # The classifier reads only each pair's first token, so the last layer computes keys and
                # values for every token but queries, attention output and feed-forward for first tokens only.
                qkv = torch.addmm(qkv_bias[width:], hidden, qkv_weight[width:].t())
                residual = hidden.index_select(0, first_rows)
                query = torch.addmm(qkv_bias[:width], residual, qkv_weight[:width].t())
            parts = qkv.shape[1] // width
            if rows is None:
                qkv = qkv.view(count, longest, parts, heads, head_size)
            else:
                padded = qkv.new_zeros((count * longest, parts * width))
                padded.index_copy_(0, rows, qkv)
                qkv = padded.view(count, longest, parts, heads, head_size)
            qkv = qkv.permute(2, 0, 3, 1, 4)
            if depth < last:
                context = functional.scaled_dot_product_attention(
                    qkv[0], qkv[1], qkv[2], attn_mask=key_mask, scale=self.scaling
                )
                context = context.transpose(1, 2).reshape(count * longest, width)
                if rows is not None:
                    context = context.index_select(0, rows)
            else:
                queries = query.view(count, 1, heads, head_size).transpose(1, 2)
                context = functional.scaled_dot_product_attention(
                    queries, qkv[0], qkv[1], attn_mask=key_mask, scale=self.scaling
                )
                context = context.reshape(count, width)
            attended = torch.addmm(out.bias, context, out.weight.t()).add_(residual)
            hidden = functional.layer_norm(attended, (width,), norm1.weight, norm1.bias, norm1.eps)
            inner = act(torch.addmm(up.bias, hidden, up.weight.t()))
            output = torch.addmm(down.bias, inner, down.weight.t()).add_(hidden)
            hidden = functional.layer_norm(output, (width,), norm2.weight, norm2.bias, norm2.eps)
        # After the last layer, ``hidden`` holds one row per pair: its first token.
        first_tokens = hidden[:, None, :]
        if self.pooler is not None:
            return self.model.classifier(self.pooler(first_tokens))
        return self.model.classifier(first_tokens)


@dataclass(eq=False)
class _LoadedModel:
    """A model and tokenizer loaded once per process and shared by every reranker that uses them."""

    model: Any
    tokenizer: Any
    name: str
    num_labels: int
    declared_activation: Any  # a torch module instance, or None when the model declares nothing usable
    max_length: int
    pad_token_id: int
    uses_token_type_ids: bool
    packed: _PackedEncoder | None
    # Fast tokenizers refuse concurrent use of one instance ("Already borrowed").
    tokenizer_lock: threading.Lock


_CACHE: dict[tuple[str, ...], _LoadedModel] = {}
_CACHE_LOCK = threading.Lock()
_KEY_LOCKS: dict[tuple[str, ...], threading.Lock] = {}


def _resolve_device(device: object) -> str:
    torch = _import_torch()
    if device is None:
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if isinstance(device, torch.device):
        return str(device)
    if isinstance(device, str):
        try:
            return str(torch.device(device))
        except RuntimeError as exc:
            raise ValueError(
                f"device {device!r} is not a valid torch device; use e.g. 'cpu', 'cuda', 'cuda:1'"
            ) from exc
    raise TypeError(f"device must be a str, a torch.device or None, got {type(device).__name__}")


def _resolve_dtype(dtype: object, device: str) -> str:
    torch = _import_torch()
    if dtype is None:
        if device.startswith("cuda"):
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        if device.startswith("mps"):
            return "float16"
        return "float32"
    if isinstance(dtype, torch.dtype):
        name = str(dtype).removeprefix("torch.")
    elif isinstance(dtype, str):
        name = dtype.lower().removeprefix("torch.")
    else:
        raise TypeError(f"dtype must be a str, a torch.dtype or None, got {type(dtype).__name__}")
    if name not in _DTYPE_NAMES:
        raise ValueError(f"dtype {dtype!r} is not supported; use 'float32', 'bfloat16' or 'float16'")
    return _DTYPE_NAMES[name]


def _model_key(model_name_or_path: str) -> str:
    """Local directories are keyed by absolute path, so './m' and '/abs/m' share one model."""
    if os.path.isdir(model_name_or_path):
        return os.path.realpath(model_name_or_path)
    return model_name_or_path


def _looks_like_path(name: str) -> bool:
    return os.path.isabs(name) or name.startswith(("./", "../", "~", ".\\")) or os.path.exists(name)


def _offline_message(name: str, exc: BaseException) -> str:
    if _looks_like_path(name):
        return (
            f"Could not load cross-encoder {name!r}: there is no model directory at that path. Pass the directory "
            "that holds the model's config.json, weights and tokenizer files, or a Hugging Face hub id."
        )
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"Could not load cross-encoder {name!r}: it is not a local directory, and it could not be fetched from "
        f"the Hugging Face Hub (no network, or not in the local cache). Download it where there is network "
        f"(e.g. `hf download {name} --local-dir ./models/{name.split('/')[-1]}`), copy the directory here and pass "
        f"its path: CrossEncoderReranker('./models/{name.split('/')[-1]}'). Or point HF_HOME at a cache that "
        f"holds it, and set HF_HUB_OFFLINE=1 to skip the network. (Hub client said: {first_line})"
    )


def _activation_from_path(path: object, trust_remote_code: bool) -> Any:
    """Instantiate the activation a config names (e.g. 'torch.nn.modules.activation.Sigmoid'), as ST does."""
    if not isinstance(path, str) or not path:
        return None
    if not (path.startswith("torch.") or trust_remote_code):
        logger.warning(
            "Ignoring the untrusted activation %r in the model config (pass trust_remote_code=True to use it)", path
        )
        return None
    module_name, _, class_name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), class_name)()
    except (ImportError, AttributeError, TypeError) as exc:
        logger.warning("Ignoring the activation %r named in the model config: %s", path, exc)
        return None


def _sentence_transformers_settings(name: str, is_dir: bool, common: dict[str, Any]) -> dict[str, Any]:
    """Settings a sentence-transformers save adds (activation, length limit), as ``CrossEncoder`` reads them.

    sentence-transformers reads its own config files only for a full save (one with ``modules.json``);
    for a hub model they are taken from the local cache, never downloaded just for this.
    """

    def locate(filename: str) -> str | None:
        if is_dir:
            path = os.path.join(name, filename)
            return path if os.path.isfile(path) else None
        try:
            from transformers.utils import cached_file

            found = cached_file(
                name,
                filename,
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
                **{key: value for key, value in common.items() if key != "trust_remote_code"},
            )
        except (OSError, ValueError, TypeError, ImportError):
            return None
        return found if isinstance(found, str) else None

    settings: dict[str, Any] = {}
    if locate("modules.json") is None:
        return settings
    for filename in ("sentence_bert_config.json", "config_sentence_transformers.json"):
        path = locate(filename)
        if path is None:
            continue
        try:
            with open(path, encoding="utf-8") as file:
                content = json.load(file)
        except (OSError, ValueError):
            continue
        if isinstance(content, dict):
            settings.update(content)
    return settings


def _declared_activation(st_settings: dict[str, Any], config: Any, trust_remote_code: bool) -> Any:
    """The activation sentence-transformers' ``CrossEncoder`` would apply, or None for its default.

    Sentence-transformers reads, in order: ``activation_fn`` in ``config_sentence_transformers.json``,
    ``config.sentence_transformers["activation_fn"]``, then the pre-v4 ``sbert_ce_default_activation_function``.
    """
    paths: list[object] = [st_settings.get("activation_fn")]
    st_section = getattr(config, "sentence_transformers", None)
    if isinstance(st_section, dict) and "activation_fn" in st_section:
        paths.append(st_section["activation_fn"])
    else:
        paths.append(getattr(config, "sbert_ce_default_activation_function", None))
    for path in paths:
        activation = _activation_from_path(path, trust_remote_code)
        if activation is not None:
            return activation
    return None


def _model_max_length(tokenizer: Any, model: Any, st_settings: dict[str, Any]) -> int:
    """The model's own limit: the tokenizer's (or a sentence-transformers save's), capped by the positions."""
    limits = []
    st_limit = st_settings.get("max_seq_length")
    if isinstance(st_limit, int) and st_limit > 0:
        limits.append(st_limit)
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 1_000_000:
        limits.append(tokenizer_limit)
    positions = getattr(model.config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        # RoBERTa-style embeddings start positions after the padding index (XLM-R: 514 -> 512).
        offset = 0
        if getattr(model.config, "model_type", "") in {"roberta", "xlm-roberta", "camembert", "xlm-roberta-xl"}:
            offset = int(getattr(model.config, "pad_token_id", 1) or 1) + 1
        limits.append(positions - offset)
    return min(limits) if limits else 512


def _load(
    name: str, device: str, dtype: str, *, local_files_only: bool, trust_remote_code: bool, revision: str | None
) -> _LoadedModel:
    torch = _import_torch()
    transformers = _import_transformers()
    is_dir = os.path.isdir(name)
    common: dict[str, Any] = {"trust_remote_code": trust_remote_code, "local_files_only": local_files_only}
    if revision is not None:
        common["revision"] = revision

    try:
        config = transformers.AutoConfig.from_pretrained(name, **common)
    except (OSError, ValueError) as exc:
        if is_dir:
            raise ModelLoadError(
                f"{name!r} is a directory but not a Hugging Face model: {exc}. Expected a saved "
                "sequence-classification cross-encoder (config.json, weights and tokenizer files)."
            ) from None
        raise ModelLoadError(_offline_message(name, exc)) from None

    architectures = list(getattr(config, "architectures", None) or [])
    if architectures and not any(arch.endswith("ForSequenceClassification") for arch in architectures):
        raise ModelLoadError(
            f"{name!r} is not a sequence-classification cross-encoder: its config lists {architectures}. "
            "Expected a model saved as *ForSequenceClassification (e.g. cross-encoder/ms-marco-MiniLM-L-6-v2, "
            "BAAI/bge-reranker-base); an embedding model or a bare encoder cannot score pairs."
        )
    num_labels = int(getattr(config, "num_labels", 1))
    if num_labels not in (1, 2):
        raise ModelLoadError(
            f"{name!r} has {num_labels} labels; a cross-encoder reranker needs 1 (a relevance score) or "
            "2 (scored by the probability of label 1)."
        )

    torch_dtype = getattr(torch, dtype)
    try:
        model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
            name, config=config, dtype=torch_dtype, output_loading_info=True, **common
        )
    except ValueError as exc:
        raise ModelLoadError(
            f"{name!r} ({type(config).__name__}) cannot be loaded as a sequence-classification model: {exc}"
        ) from None
    except OSError as exc:
        if is_dir:
            raise ModelLoadError(f"Could not load the weights of {name!r}: {exc}") from None
        raise ModelLoadError(_offline_message(name, exc)) from None
    missing = [key for key in info.get("missing_keys", []) if "position_ids" not in key]
    if missing:
        raise ModelLoadError(
            f"{name!r} is not a trained sequence-classification cross-encoder: its checkpoint lacks {missing[:4]} "
            "(the classification head would be random). Expected a model saved as *ForSequenceClassification."
        )

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name, **common)
    except (OSError, ValueError) as exc:
        if is_dir:
            raise ModelLoadError(f"Could not load the tokenizer of {name!r}: {exc}") from None
        raise ModelLoadError(_offline_message(name, exc)) from None

    if model.dtype != torch_dtype:  # transformers < 4.56 reads `torch_dtype`, not `dtype`
        model.to(torch_dtype)
    model.to(device)
    model.eval()
    pad_token_id = tokenizer.pad_token_id
    if pad_token_id is None:
        pad_token_id = getattr(config, "pad_token_id", None) or 0
    probe = tokenizer("a", "b")
    st_settings = _sentence_transformers_settings(name, is_dir, common)
    return _LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        num_labels=num_labels,
        declared_activation=_declared_activation(st_settings, config, trust_remote_code),
        max_length=_model_max_length(tokenizer, model, st_settings),
        pad_token_id=int(pad_token_id),
        uses_token_type_ids="token_type_ids" in probe,
        packed=_PackedEncoder.build(model),
        tokenizer_lock=threading.Lock(),
    )


def _get_shared(key: tuple[str, ...], loader: Any) -> _LoadedModel:
    with _CACHE_LOCK:
        loaded = _CACHE.get(key)
        if loaded is not None:
            return loaded
        key_lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    # One load per key; other models may load at the same time.
    with key_lock:
        with _CACHE_LOCK:
            loaded = _CACHE.get(key)
        if loaded is None:
            loaded = loader()
            with _CACHE_LOCK:
                _CACHE[key] = loaded
        return loaded


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
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
        for option, value in (
            ("batch_size", batch_size),
            ("max_length", max_length),
            ("max_batch_tokens", max_batch_tokens),
        ):
            if value is None and option != "batch_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{option} must be a positive int, got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"{option} must be a positive int, got {value}")
        if max_length is not None and max_length < 4:
            raise ValueError(
                f"max_length must leave room for the query, the document and special tokens, got {max_length}"
            )
        self.model_name_or_path = model_name_or_path
        self.device = _resolve_device(device)
        self.dtype = _resolve_dtype(dtype, self.device)
        self.batch_size = batch_size
        self.max_length = max_length
        self.activation: Activation = activation
        device_type = self.device.split(":")[0]
        self.max_batch_tokens = max_batch_tokens or _DEFAULT_TOKEN_BUDGET.get(device_type, 8192)
        self._local_files_only = local_files_only
        self._trust_remote_code = trust_remote_code
        self._revision = revision
        self._key = (
            _model_key(model_name_or_path),
            self.device,
            self.dtype,
            revision or "",
            "trust" if trust_remote_code else "",
        )
        self._loaded: _LoadedModel | None = None
        self._warned_truncation = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.model_name_or_path!r}, device={self.device!r}, dtype={self.dtype!r}, "
            f"activation={self.activation!r})"
        )

    def _model(self) -> _LoadedModel:
        loaded = self._loaded
        if loaded is None:
            loaded = _get_shared(
                self._key,
                lambda: _load(
                    self.model_name_or_path,
                    self.device,
                    self.dtype,
                    local_files_only=self._local_files_only,
                    trust_remote_code=self._trust_remote_code,
                    revision=self._revision,
                ),
            )
            self._loaded = loaded
        return loaded

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
        max_length = min(self.max_length or loaded.max_length, loaded.max_length)
        input_ids, token_type_ids, truncated = self._tokenize(loaded, query, documents, max_length)
        if truncated:
            with self._lock:
                first_time = not self._warned_truncation
                self._warned_truncation = True
        if truncated and first_time:
            logger.warning(
                "%d of %d (query, document) pairs were longer than %d tokens and were truncated (longest first) "
                "for %s; pass max_length=... or shorter chunks to control this. This warning is shown once "
                "per reranker.",
                truncated,
                len(documents),
                max_length,
                self.model_name_or_path,
            )
        return self._forward(loaded, input_ids, token_type_ids)

    @staticmethod
    def _tokenize(
        loaded: _LoadedModel, query: str, documents: Sequence[str], max_length: int
    ) -> tuple[list[list[int]], list[list[int]] | None, int]:
        tokenizer = loaded.tokenizer
        with loaded.tokenizer_lock:
            encoded = tokenizer(
                [query] * len(documents),
                list(documents),
                truncation="longest_first",
                max_length=max_length,
                padding=False,
                return_attention_mask=False,
                return_token_type_ids=loaded.uses_token_type_ids,
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
        token_type_ids = encoded["token_type_ids"] if loaded.uses_token_type_ids else None
        return input_ids, token_type_ids, truncated

    def _batches(self, lengths: list[int], packed: bool) -> list[list[int]]:
        """Indices of the pairs, longest first, cut into batches under the token budget."""
        order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
        batches: list[list[int]] = []
        batch: list[int] = []
        tokens = 0
        for index in order:
            n = lengths[index]
            # Packed batches cost their real tokens; padded ones count x longest (the first, as sorted).
            cost = n if packed else (lengths[batch[0]] if batch else n)
            if batch and (len(batch) >= self.batch_size or tokens + cost > self.max_batch_tokens):
                batches.append(batch)
                batch, tokens = [], 0
                cost = n
            batch.append(index)
            tokens += cost
        if batch:
            batches.append(batch)
        return batches

    def _forward(
        self, loaded: _LoadedModel, input_ids: list[list[int]], token_type_ids: list[list[int]] | None
    ) -> list[float]:
        torch = _import_torch()
        lengths = [len(ids) for ids in input_ids]
        scores: list[float] = [0.0] * len(lengths)
        packed = loaded.packed
        with torch.inference_mode():
            for batch in self._batches(lengths, packed is not None):
                batch_lengths = [lengths[i] for i in batch]
                if packed is not None:
                    ids = torch.tensor([t for i in batch for t in input_ids[i]], dtype=torch.long)
                    types = None
                    if token_type_ids is not None:
                        types = torch.tensor([t for i in batch for t in token_type_ids[i]], dtype=torch.long)
                        types = types.to(self.device)
                    logits = packed.logits(ids.to(self.device), types, batch_lengths)
                else:
                    logits = self._padded_logits(loaded, input_ids, token_type_ids, batch, batch_lengths)
                batch_scores = self._activate(loaded, logits.float()).tolist()
                for index, score in zip(batch, batch_scores, strict=True):
                    scores[index] = float(score)
        return scores

    def _padded_logits(
        self,
        loaded: _LoadedModel,
        input_ids: list[list[int]],
        token_type_ids: list[list[int]] | None,
        batch: list[int],
        lengths: list[int],
    ) -> torch.Tensor:
        """The model's own forward pass on a padded batch: for architectures the packed path does not know."""
        torch = _import_torch()
        count, longest = len(batch), max(lengths)
        ids = torch.full((count, longest), loaded.pad_token_id, dtype=torch.long)
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
        return loaded.model(**inputs).logits

    def _activate(self, loaded: _LoadedModel, logits: torch.Tensor) -> torch.Tensor:
        torch = _import_torch()
        if loaded.num_labels == 2:
            margin = logits[:, 1] - logits[:, 0]
            if self.activation == "none":
                return margin
            return torch.softmax(logits, dim=-1)[:, 1]
        logits = logits[:, 0]
        if self.activation == "none":
            return logits
        if self.activation == "sigmoid" or loaded.declared_activation is None:
            return torch.sigmoid(logits)
        return loaded.declared_activation(logits)
