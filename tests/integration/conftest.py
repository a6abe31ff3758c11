"""A real vLLM server for the integration tests, found through the environment ``.ci/run`` sets.

``bash scripts/vllm-server.sh start STATE MODEL ...`` writes ``STATE/env``; source it (or set
``MILVUS_RERANK_VLLM_URL`` and friends by hand) and every test here runs against that server.
Without it they skip, saying so. Tests that must own a server (one they kill, or one started
with other flags) start it through the same script, so there is one command line for vLLM.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from milvus_rerank import CrossEncoderReranker

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "vllm-server.sh"
URL_ENV = "MILVUS_RERANK_VLLM_URL"
STARTUP_LIMIT_S = 400
"""vLLM's CPU build took 70-140 s to start on a shared 2-core machine; twice that fails the test."""


@dataclass(frozen=True)
class Served:
    """One running vLLM server and the model it serves.

    Attributes:
        url: ``http://127.0.0.1:PORT``.
        api_key: The ``--api-key`` it was started with, or ``None``.
        model_dir: The model's directory (load it locally to compare scores).
        model: The served model name (``--served-model-name``, else the directory).
        state: The script's state directory (PID, log), when the test session started the server.
    """

    url: str
    api_key: str | None
    model_dir: Path
    model: str
    state: Path | None = None

    def log_text(self) -> str:
        """What the server has logged so far ('' when its log is not ours to read)."""
        return (self.state / "server.log").read_text(errors="replace") if self.state else ""

    def kill(self) -> None:
        """End the server and its engine process at once (SIGKILL to its process group): a crash."""
        assert self.state is not None, "only a server this session started may be killed"
        pid = int((self.state / "pid").read_text())
        os.killpg(pid, signal.SIGKILL)


def served_from(env: dict[str, str], state: Path | None = None) -> Served:
    """The server that a ``scripts/vllm-server.sh`` env file (or the process environment) describes."""
    return Served(
        url=env[URL_ENV],
        api_key=env.get("MILVUS_RERANK_VLLM_API_KEY") or None,
        model_dir=Path(env["MILVUS_RERANK_VLLM_MODEL_DIR"]),
        model=env["MILVUS_RERANK_VLLM_MODEL"],
        state=state,
    )


def read_env_file(path: Path) -> dict[str, str]:
    """The ``export NAME=value`` lines the script writes (values shell-quoted), as a dict."""
    words = (shlex.split(line)[-1] for line in path.read_text().splitlines() if line.startswith("export "))
    return dict(word.split("=", 1) for word in words)


@pytest.fixture(scope="session")
def vllm() -> Served:
    """The shared server: skips without ``MILVUS_RERANK_VLLM_URL``, fails when it is set but not up."""
    if not os.environ.get(URL_ENV):
        pytest.skip(f"no vLLM server: run 'bash .ci/run', or start one with {SCRIPT.name} and set {URL_ENV}")
    missing = [name for name in ("MILVUS_RERANK_VLLM_MODEL_DIR", "MILVUS_RERANK_VLLM_MODEL") if name not in os.environ]
    if missing:
        pytest.fail(f"{URL_ENV} is set but {', '.join(missing)} is not: source the env file {SCRIPT.name} wrote")
    served = served_from(dict(os.environ))
    try:
        health = httpx.get(served.url + "/health", timeout=10)
    except httpx.HTTPError as exc:
        pytest.fail(f"{URL_ENV}={served.url} does not answer ({type(exc).__name__}): is the server still up?")
    if health.status_code != 200:
        pytest.fail(f"{URL_ENV}={served.url} answers /health with {health.status_code}: its engine is not ready")
    return served


@pytest.fixture(scope="session")
def local(vllm: Served) -> CrossEncoderReranker:
    """The served weights, run in-process: the reference the server's scores are compared with."""
    return CrossEncoderReranker(str(vllm.model_dir), device="cpu")


@pytest.fixture
def start_vllm(vllm: Served, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start a server of this test's own (the shared one's model unless told otherwise); stopped afterwards."""
    states: list[Path] = []

    def start(*args: str, model_dir: Path | None = None) -> Served:
        state = tmp_path / f"vllm-{len(states)}"
        states.append(state)
        model = str(model_dir or vllm.model_dir)
        subprocess.run(["bash", str(SCRIPT), "start", str(state), model, *args], check=True)
        subprocess.run(["bash", str(SCRIPT), "wait", str(state), str(STARTUP_LIMIT_S)], check=True)
        return served_from(read_env_file(state / "env"), state)

    yield start
    for state in states:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], check=False)
