"""Loading local models: device and dtype, the checks and messages of a load, and the per-process cache.

A model is loaded once per process for a given :class:`ModelKey` (model, device, dtype, revision,
trust) and shared by every reranker that asks for it. :func:`load_model` reads the config first, so
a model that cannot score pairs is refused with a message that says what it is; it follows what
sentence-transformers reads from its own saves (the activation, the length limit, an LLM reranker's
prompts and answer tokens), so a model scores here as ``CrossEncoder.predict`` scores it. Encoder
cross-encoders get the encoder engine; causal LMs and their sequence-classification conversions
(LLM rerankers) the causal engine.

torch and transformers are imported on first use, with an install hint when they are missing, so
that importing the reranker costs nothing.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from milvus_rerank.errors import ModelLoadError
from milvus_rerank.hub import hub_unreachable_reason, in_hub_cache, looks_like_path
from milvus_rerank.rerankers.local import cpu
from milvus_rerank.rerankers.local.engine import LoadedModel, ScoringEngine

__all__ = [
    "ModelKey",
    "auto_dtype",
    "import_torch",
    "import_transformers",
    "load_model",
    "model_key",
    "resolve_device",
    "resolve_dtype",
    "shared_model",
]

logger = logging.getLogger(__name__)

_INSTALL_HINT = "CrossEncoderReranker needs torch and transformers: pip install 'milvus-rerank[local]'"

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


def import_torch() -> Any:
    """The ``torch`` module.

    Raises:
        ImportError: torch is not installed; the message says which extra installs it.
    """
    try:
        return importlib.import_module("torch")
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(_INSTALL_HINT) from exc


def import_transformers() -> Any:
    """The ``transformers`` module.

    Raises:
        ImportError: transformers is not installed; the message says which extra installs it.
    """
    try:
        return importlib.import_module("transformers")
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(_INSTALL_HINT) from exc


def resolve_device(device: object) -> str:
    """The torch device name for ``device``; ``None`` picks cuda, then mps, then cpu.

    Raises:
        TypeError: ``device`` is not a str, a ``torch.device`` or None.
        ValueError: ``device`` is not a valid torch device name.
    """
    torch = import_torch()
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


def auto_dtype(device: str) -> tuple[str, str]:
    """The dtype ``dtype="auto"`` picks on ``device``, and why: the fastest one it computes natively.

    bfloat16 on CUDA (float16 where bfloat16 is unsupported), float16 on MPS; on a CPU, bfloat16 where
    it has bfloat16 instructions (AMX-BF16, AVX512-BF16, Arm BF16: see :mod:`.cpu`), else float32.
    """
    torch = import_torch()
    if device.startswith("cuda"):
        if torch.cuda.is_bf16_supported():
            return "bfloat16", "the GPU supports bfloat16"
        return "float16", "the GPU does not support bfloat16"
    if device.startswith("mps"):
        return "float16", "MPS"
    speed = cpu.bfloat16_speed()
    if speed.instructions:
        return "bfloat16", f"this CPU has native bfloat16 ({', '.join(speed.instructions)})"
    return "float32", f"this CPU ({speed.capability}) has no bfloat16 instructions"


def resolve_dtype(dtype: object, device: str) -> str:
    """The dtype name (``"float32"``, ``"bfloat16"`` or ``"float16"``) for ``dtype`` on ``device``.

    ``"auto"`` (or ``None``) picks the fastest dtype the device computes natively (:func:`auto_dtype`)
    and logs its choice at debug level. bfloat16 asked for on a CPU that emulates it warns (a
    ``RuntimeWarning`` with the rates measured here, see :mod:`.cpu`): it is many times slower than
    float32 there.

    Raises:
        TypeError: ``dtype`` is not a str, a ``torch.dtype`` or None.
        ValueError: ``dtype`` names another dtype.
    """
    torch = import_torch()
    if dtype is None or (isinstance(dtype, str) and dtype.lower() == "auto"):
        name, reason = auto_dtype(device)
        logger.debug("dtype='auto' on %s: %s (%s)", device, name, reason)
        return name
    if isinstance(dtype, torch.dtype):
        name = str(dtype).removeprefix("torch.")
    elif isinstance(dtype, str):
        name = dtype.lower().removeprefix("torch.")
    else:
        raise TypeError(f"dtype must be a str, a torch.dtype or None, got {type(dtype).__name__}")
    if name not in _DTYPE_NAMES:
        raise ValueError(f"dtype {dtype!r} is not supported; use 'auto', 'float32', 'bfloat16' or 'float16'")
    resolved = _DTYPE_NAMES[name]
    if resolved == "bfloat16" and device == "cpu":
        warning = cpu.emulated_bfloat16_warning()
        if warning is not None:
            warnings.warn(warning, RuntimeWarning, stacklevel=3)  # at the caller of CrossEncoderReranker(...)
    return resolved


# --- the per-process cache -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelKey:
    """What makes two loads the same model; build it with :func:`model_key`.

    Attributes:
        name: The hub id, or the real path of a local directory.
        device: A resolved device name (:func:`resolve_device`).
        dtype: A resolved dtype name (:func:`resolve_dtype`).
        revision: The hub revision, or None for the default.
        trust_remote_code: Whether the model's own code may run.
    """

    name: str
    device: str
    dtype: str
    revision: str | None = None
    trust_remote_code: bool = False


def model_key(
    name: str, *, device: str, dtype: str, revision: str | None = None, trust_remote_code: bool = False
) -> ModelKey:
    """The cache key of a load; local directories are keyed by real path, so './m' and '/abs/m' share one model."""
    if os.path.isdir(name):
        name = os.path.realpath(name)
    return ModelKey(name, device, dtype, revision, trust_remote_code)


_CACHE: dict[ModelKey, LoadedModel] = {}
_CACHE_LOCK = threading.Lock()
_KEY_LOCKS: dict[ModelKey, threading.Lock] = {}


def shared_model(key: ModelKey, load: Callable[[], LoadedModel]) -> LoadedModel:
    """The model cached under ``key``, loaded by ``load()`` the first time; one load per key even under threads."""
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
            loaded = load()
            with _CACHE_LOCK:
                _CACHE[key] = loaded
        return loaded


# --- loading ---------------------------------------------------------------------------------------------


def load_model(
    name: str, device: str, dtype: str, *, local_files_only: bool, trust_remote_code: bool, revision: str | None
) -> LoadedModel:
    """Load a cross-encoder or an LLM reranker and its tokenizer, with the engine that scores pairs.

    Sequence-classification models and causal LMs (``*ForCausalLM``, scored by answer tokens) load;
    other architectures are refused.

    Args:
        name: A hub id or a local directory.
        device: A resolved device name (:func:`resolve_device`).
        dtype: A resolved dtype name (:func:`resolve_dtype`).
        local_files_only: Never contact the Hugging Face Hub.
        trust_remote_code: Allow models whose code lives in their repository.
        revision: A hub revision, or None.

    Raises:
        ModelLoadError: The model cannot be found, or it cannot score (query, document) pairs.
    """
    torch = import_torch()
    transformers = import_transformers()
    from milvus_rerank.rerankers.local.causal import causal_engine, is_llm_conversion
    from milvus_rerank.rerankers.local.encoder import EncoderEngine

    is_dir = os.path.isdir(name)
    if not is_dir and not local_files_only and not looks_like_path(name):
        unreachable = hub_unreachable_reason()
        if unreachable is not None:
            if not in_hub_cache(name, revision=revision):
                raise ModelLoadError(_not_found_message(name, unreachable))
            # The hub cannot answer: its client would retry for half a minute before reading the cache.
            local_files_only = True
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
        raise ModelLoadError(_not_found_message(name, exc)) from None

    architectures = list(getattr(config, "architectures", None) or [])
    causal = bool(architectures) and all(arch.endswith("ForCausalLM") for arch in architectures)
    if architectures and not causal and not any(arch.endswith("ForSequenceClassification") for arch in architectures):
        raise ModelLoadError(
            f"{name!r} is not a sequence-classification cross-encoder: its config lists {architectures}. "
            "Expected a model saved as *ForSequenceClassification (e.g. cross-encoder/ms-marco-MiniLM-L-6-v2, "
            "BAAI/bge-reranker-base) or an LLM reranker saved as *ForCausalLM (e.g. Qwen/Qwen3-Reranker-0.6B); "
            "an embedding model or a bare encoder cannot score pairs."
        )
    num_labels = int(getattr(config, "num_labels", 1))
    if not causal and num_labels not in (1, 2):
        raise ModelLoadError(
            f"{name!r} has {num_labels} labels; a cross-encoder reranker needs 1 (a relevance score) or "
            "2 (scored by the probability of label 1)."
        )

    torch_dtype = getattr(torch, dtype)
    auto = transformers.AutoModelForCausalLM if causal else transformers.AutoModelForSequenceClassification
    kind = "a causal LM" if causal else "a sequence-classification model"
    try:
        model, info = auto.from_pretrained(name, config=config, dtype=torch_dtype, output_loading_info=True, **common)
    except ValueError as exc:
        raise ModelLoadError(f"{name!r} ({type(config).__name__}) cannot be loaded as {kind}: {exc}") from None
    except OSError as exc:
        if is_dir:
            raise ModelLoadError(f"Could not load the weights of {name!r}: {exc}") from None
        raise ModelLoadError(_not_found_message(name, exc)) from None
    missing = [key for key in info.get("missing_keys", []) if "position_ids" not in key]
    if missing:
        expected = "*ForCausalLM" if causal else "*ForSequenceClassification"
        raise ModelLoadError(
            f"{name!r} is not a trained {'LLM reranker' if causal else 'sequence-classification cross-encoder'}: "
            f"its checkpoint lacks {missing[:4]} (the head would be random). Expected a model saved as {expected}."
        )

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(name, **common)
    except (OSError, ValueError) as exc:
        if is_dir:
            raise ModelLoadError(f"Could not load the tokenizer of {name!r}: {exc}") from None
        raise ModelLoadError(_not_found_message(name, exc)) from None

    if model.dtype != torch_dtype:  # transformers < 4.56 reads `torch_dtype`, not `dtype`
        model.to(torch_dtype)
    model.to(device)
    model.eval()
    st_settings = _sentence_transformers_settings(name, is_dir, common)
    if causal or is_llm_conversion(model):
        engine: ScoringEngine = causal_engine(model, tokenizer, device=device, settings=st_settings)
    else:
        engine = EncoderEngine(model, tokenizer, device=device)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        engine=engine,
        max_length=_model_max_length(tokenizer, model, st_settings),
        declared_activation=_declared_activation(st_settings, config, trust_remote_code),
    )


def _not_found_message(name: str, exc: BaseException | str) -> str:
    """Why ``name`` did not load when it is no model directory: a wrong path, or a hub id out of reach.

    ``exc`` is the hub client's error, or why the hub was not asked (:func:`hub_unreachable_reason`).
    """
    if looks_like_path(name):
        if os.path.isfile(name):
            problem = "that path is a file, not a model directory"
        else:
            problem = "there is no model directory at that path"
        return (
            f"Could not load cross-encoder {name!r}: {problem}. Pass the directory that holds the model's "
            "config.json, weights and tokenizer files, or a Hugging Face hub id (org/model)."
        )
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    folder = name.split("/")[-1]
    return (
        f"Could not load cross-encoder {name!r}: it is not a local directory, and it could not be fetched from "
        f"the Hugging Face Hub (no network, or not in the local cache). Download it where there is network "
        f"(e.g. `hf download {name} --local-dir ./models/{folder}`), copy the directory here and pass "
        f"its path: CrossEncoderReranker('./models/{folder}'). Or point HF_HOME at a cache that "
        f"holds it, and set HF_HUB_OFFLINE=1 to skip the network. "
        + (f"(Hub client said: {first_line})" if isinstance(exc, BaseException) else f"({first_line}.)")
    )


# --- what sentence-transformers reads from its saves -----------------------------------------------------


def _sentence_transformers_settings(name: str, is_dir: bool, common: dict[str, Any]) -> dict[str, Any]:
    """Settings a sentence-transformers save adds, as ``CrossEncoder`` reads them.

    Those are the activation, the length limit and the prompts, and, for an LLM reranker, its
    ``LogitScore`` module's answer tokens (under ``"logit_score"``). sentence-transformers reads its own
    config files only for a full save (one with ``modules.json``); for a hub model they are taken
    from the local cache, never downloaded just for this.
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

    def read(filename: str) -> Any:
        path = locate(filename)
        if path is None:
            return None
        try:
            with open(path, encoding="utf-8") as file:
                return json.load(file)
        except (OSError, ValueError):
            return None

    settings: dict[str, Any] = {}
    modules = read("modules.json")
    if modules is None:
        return settings
    for filename in ("sentence_bert_config.json", "config_sentence_transformers.json"):
        content = read(filename)
        if isinstance(content, dict):
            settings.update(content)
    for module in modules if isinstance(modules, list) else []:
        if isinstance(module, dict) and str(module.get("type", "")).endswith(".LogitScore"):
            folder = str(module.get("path") or "").strip("/")
            content = read(f"{folder}/config.json" if folder else "config.json")
            if isinstance(content, dict):
                settings["logit_score"] = content
    return settings


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
