"""Real vLLM servers for the integration tests, found through the environment ``.ci/run`` sets.

The shared server: ``bash scripts/vllm-server.sh serve reranker STATE`` writes ``STATE/env``;
source it (or set ``MILVUS_RERANK_TEST_VLLM_URL`` and friends by hand, for a server of your own) and
every test here runs against it. Without it they skip, saying so; with ``MILVUS_RERANK_TEST_VLLM_STATE``
set (its state directory) the first test waits for it to come up, so CI starts it in the background
and these tests run after every other test of the session.

Servers with another model or other flags, and one to kill, come by name from
:func:`vllm_server`: the one CI started under ``MILVUS_RERANK_TEST_VLLM_SERVERS/NAME``, else one started
here through the same script (70-140 s each), so there is one command line for vLLM.

:func:`vllm_fleet` puts ``vllm-router`` in front of the shared server and the spare (same weights)
through the script's ``router`` command. The tests that kill servers run last, in the order of
:data:`KILLS_IN_ORDER`, so that each finds alive what it needs: the fleet loses the shared server,
then the spare is killed on its own, then the fleet has none left.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from milvus_rerank import CrossEncoderReranker

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "vllm-server.sh"
URL_ENV = "MILVUS_RERANK_TEST_VLLM_URL"
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
        api_key=env.get("MILVUS_RERANK_TEST_VLLM_API_KEY") or None,
        model_dir=Path(env["MILVUS_RERANK_TEST_VLLM_MODEL_DIR"]),
        model=env["MILVUS_RERANK_TEST_VLLM_MODEL"],
        state=state,
    )


def read_env_file(path: Path) -> dict[str, str]:
    """The ``export NAME=value`` lines the script writes (values shell-quoted), as a dict."""
    words = (shlex.split(line)[-1] for line in path.read_text().splitlines() if line.startswith("export "))
    return dict(word.split("=", 1) for word in words)


HERE = Path(__file__).resolve().parent


KILLS_IN_ORDER = (
    "test_live_fleet.py::test_a_server_killed_mid_loop_fails_no_call_and_the_survivor_takes_all",
    "test_live_server_loss.py::test_a_server_killed_mid_run_fails_both_paths_soon",
    "test_live_fleet.py::test_both_servers_killed_is_a_clear_error_naming_the_router_within_the_deadline",
)
"""The tests that kill servers (the shared one, then the spare), run after every other, in this order."""


def _kill_rank(item: pytest.Item) -> int:
    name = f"{item.path.name}::{item.name.split('[')[0]}"
    return KILLS_IN_ORDER.index(name) + 1 if name in KILLS_IN_ORDER else 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move this folder's tests to the end of the run, those that kill servers last (a stable sort)."""
    items.sort(key=lambda item: (item.path.resolve().is_relative_to(HERE), _kill_rank(item)))


_OUTCOMES: dict[str, str] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember each of this folder's tests' outcome (a failed setup or teardown counts as failed)."""
    if not Path(report.fspath).resolve().is_relative_to(HERE):
        return
    if report.when == "call" or report.outcome != "passed":
        outcome = "xfailed" if hasattr(report, "wasxfail") and report.skipped else report.outcome
        if _OUTCOMES.get(report.nodeid) in (None, "passed"):
            _OUTCOMES[report.nodeid] = outcome


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """List every integration test with its outcome, so that a CI log shows what ran against vLLM."""
    if all(outcome == "skipped" for outcome in _OUTCOMES.values()):
        return  # no server: the skip reasons say so
    terminalreporter.section("integration tests against real vLLM servers")
    for nodeid, outcome in _OUTCOMES.items():
        terminalreporter.line(f"{outcome.upper():8} {nodeid}")


@pytest.fixture(scope="session")
def vllm() -> Served:
    """The shared server: skips without ``MILVUS_RERANK_TEST_VLLM_URL``, fails when it is set but not up."""
    if not os.environ.get(URL_ENV):
        pytest.skip(f"no vLLM server: run 'bash .ci/run', or start one with {SCRIPT.name} and set {URL_ENV}")
    missing = [
        name
        for name in ("MILVUS_RERANK_TEST_VLLM_MODEL_DIR", "MILVUS_RERANK_TEST_VLLM_MODEL")
        if name not in os.environ
    ]
    if missing:
        pytest.fail(f"{URL_ENV} is set but {', '.join(missing)} is not: source the env file {SCRIPT.name} wrote")
    state = os.environ.get("MILVUS_RERANK_TEST_VLLM_STATE")
    if state:  # started in the background: wait while it is alive, fail with its log if it died
        subprocess.run(["bash", str(SCRIPT), "wait", state, str(STARTUP_LIMIT_S)], check=True)
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
    return CrossEncoderReranker(str(vllm.model_dir), device="cpu", dtype="float32")


SERVER_ROLES = {"spare": "reranker", "qwen3": "qwen3", "qwen3-chat-template": "qwen3-chat-template", "chat": "chat"}
"""The servers a test may ask for by name, and the script's role each one plays."""


@pytest.fixture(scope="session")
def vllm_server(vllm: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Served]]:
    """``vllm_server(name)``: a server of its own for a name in :data:`SERVER_ROLES`, ready to use.

    A server this fixture starts is stopped at the end of the session; one CI started is CI's to stop.
    """
    servers: dict[str, Served] = {}
    started: list[Path] = []
    prestarted = os.environ.get("MILVUS_RERANK_TEST_VLLM_SERVERS")

    def get(name: str) -> Served:
        if name not in servers:
            state = Path(prestarted) / name if prestarted else None
            if state is None or not (state / "env").is_file():
                state = tmp_path_factory.mktemp("vllm") / name
                started.append(state)
                subprocess.run(["bash", str(SCRIPT), "serve", SERVER_ROLES[name], str(state)], check=True)
            subprocess.run(["bash", str(SCRIPT), "wait", str(state), str(STARTUP_LIMIT_S)], check=True)
            servers[name] = served_from(read_env_file(state / "env"), state)
        return servers[name]

    yield get
    for state in started:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], check=False)


@dataclass(frozen=True)
class Fleet:
    """``vllm-router`` in front of two servers of the same weights.

    Attributes:
        router: The router (``url`` is its base; ``model`` and ``api_key`` are the workers').
        workers: The shared server and the spare; ``state`` is ``None`` for a server this session
            may not kill (the shared one, when it was not started through the script).
    """

    router: Served
    workers: tuple[Served, Served]

    @property
    def url(self) -> str:
        """The rerank endpoint through the router: ``/v2/rerank``, the route it proxies as it is."""
        return self.router.url + "/v2"


@pytest.fixture(scope="session")
def vllm_fleet(
    vllm: Served, vllm_server: Callable[[str], Served], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    """The shared server and the spare behind a router started here (under a second), stopped at the end."""
    main_state = os.environ.get("MILVUS_RERANK_TEST_VLLM_STATE")
    main = served_from(dict(os.environ), Path(main_state) if main_state else None)
    spare = vllm_server("spare")
    state = tmp_path_factory.mktemp("vllm-router") / "router"
    workers = [str(main.state) if main.state else None, str(spare.state)]
    if workers[0] is None:  # a server of the user's: the router needs its port file, so write one
        worker = tmp_path_factory.mktemp("vllm-main")
        (worker / "port").write_text(main.url.rsplit(":", 1)[1])
        own = {
            URL_ENV: main.url,
            "MILVUS_RERANK_TEST_VLLM_API_KEY": main.api_key or "",
            "MILVUS_RERANK_TEST_VLLM_MODEL_DIR": str(main.model_dir),
            "MILVUS_RERANK_TEST_VLLM_MODEL": main.model,
        }
        (worker / "env").write_text("".join(f"export {name}={shlex.quote(value)}\n" for name, value in own.items()))
        workers[0] = str(worker)
    subprocess.run(["bash", str(SCRIPT), "router", str(state), *workers], check=True)
    try:
        subprocess.run(["bash", str(SCRIPT), "wait", str(state), "60"], check=True)
        yield Fleet(router=served_from(read_env_file(state / "env"), state), workers=(main, spare))
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(state)], check=False)
