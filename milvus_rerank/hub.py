"""Model names and the Hugging Face Hub: a local directory or a hub id, and whether the hub can answer.

Both the local reranker and the CLI's embedding loader take "a hub id or a path"; they decide
which one they were given here, so a name means the same thing everywhere. Before a hub id is
loaded they ask :func:`hub_unreachable_reason` whether the hub can be reached at all: the hub
client retries an unreachable hub for half a minute, printing a line per retry, before it reads
its cache or gives up, while one short request tells at once. A cached model then loads from the
cache (:func:`in_hub_cache`), and an uncached one fails in a second with a message that says why.
A model directory whose config marks its weights as random (:func:`is_standin`, set by the
offline stand-ins of :mod:`milvus_rerank.testing.models`) is one whose scores mean nothing.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

__all__ = ["STANDIN_CONFIG_KEY", "hub_unreachable_reason", "in_hub_cache", "is_standin", "looks_like_path"]

STANDIN_CONFIG_KEY = "milvus_rerank_random_weights"
"""Set to ``true`` in the ``config.json`` of a model with random weights: its scores are random."""

_PROBE_TIMEOUT = 3.0  # seconds: a reachable hub answers a HEAD well within it
_PROBE_MEMORY = 60.0  # seconds a probe's answer is reused: loading several models probes once
_probe_lock = threading.Lock()
_last_probe: tuple[float, str, str | None] | None = None  # (time, endpoint, reason)


def looks_like_path(name: str) -> bool:
    """Whether ``name`` is meant as a filesystem path rather than a hub id (``org/model``).

    A name is a path when it exists, is absolute, starts with ``./``, ``../`` or ``~``, holds a
    backslash, or has more than one ``/`` (a hub id has exactly one).
    """
    return (
        os.path.isabs(name)
        or name.startswith(("./", "../", "~", ".\\", "..\\"))
        or name.count("/") > 1
        or "\\" in name
        or os.path.exists(name)
    )


def _offline_by_setting() -> bool:
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return bool(constants.HF_HUB_OFFLINE) or flag


def hub_unreachable_reason() -> str | None:
    """Why the Hugging Face Hub cannot be used now, or ``None`` when it answers.

    ``HF_HUB_OFFLINE`` set is a reason by itself. Otherwise one ``HEAD`` request goes to the hub
    endpoint (``HF_ENDPOINT``, through the environment's proxies) with a 3-second timeout; any
    HTTP answer, even an error status, counts as reachable. The answer is remembered for a minute.

    Returns:
        ``None``, or a phrase such as ``"HF_HUB_OFFLINE is set"`` or
        ``"https://huggingface.co cannot be reached (ConnectError)"``.
    """
    global _last_probe
    if _offline_by_setting():
        return "HF_HUB_OFFLINE is set"
    import httpx
    from huggingface_hub import constants

    endpoint = constants.ENDPOINT
    with _probe_lock:
        now = time.monotonic()
        if _last_probe is not None and _last_probe[1] == endpoint and now - _last_probe[0] < _PROBE_MEMORY:
            return _last_probe[2]
        reason: str | None = None
        try:
            httpx.head(endpoint, timeout=_PROBE_TIMEOUT)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            reason = f"{endpoint} cannot be reached ({type(exc).__name__})"
        _last_probe = (time.monotonic(), endpoint, reason)
        return reason


def in_hub_cache(repo_id: str, *, revision: str | None = None) -> bool:
    """Whether the local Hugging Face cache holds ``repo_id`` (its ``config.json``) at ``revision``."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    except ValueError:  # not a valid repo id
        return False
    return isinstance(found, str)


def is_standin(model_name_or_path: str | os.PathLike[str]) -> bool:
    """Whether ``model_name_or_path`` is a local model marked as having random weights (random scores)."""
    config = Path(os.path.expanduser(os.fspath(model_name_or_path))) / "config.json"
    try:
        content = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and content.get(STANDIN_CONFIG_KEY) is True
