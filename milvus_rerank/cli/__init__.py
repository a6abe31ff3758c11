"""The ``milvus-rerank`` app: ``ingest``, ``query``, ``eval`` and ``demo``.

This package is the application built on the library, not part of it: the library never imports
it, and it uses the library through its public names only. One module per command
(:mod:`.ingest`, :mod:`.query`, :mod:`.evaluate`, :mod:`.demo`), each with ``HELP``,
``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args)``; the options they share are defined
once in :mod:`.options`, model loading in :mod:`.models`, the Milvus database in
:mod:`.database`, printing in :mod:`.output`. The demo's corpus (:mod:`.corpus`), answers
(:mod:`.answers`) and chat client (:mod:`.chat`) are its own modules, shared with the examples.

Every subcommand has ``--help``. Errors end the command with one line on stderr and exit status
1 (2 for a wrong command line); ``--debug`` shows the traceback instead. Progress bars and the
tables' explanations go to stderr, results to stdout, so ``milvus-rerank query ... > out.txt``
keeps only the table.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence

from milvus_rerank import __version__
from milvus_rerank.cli import demo, evaluate, ingest, query
from milvus_rerank.cli.errors import error_line
from milvus_rerank.cli.options import common_parser
from milvus_rerank.cli.output import note

__all__ = ["PROG", "build_parser", "main"]

PROG = "milvus-rerank"

_COMMANDS = {"ingest": ingest, "query": query, "eval": evaluate, "demo": demo}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``milvus-rerank`` with its four subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Rerank Milvus retrieval results with cross-encoders (local or served by vLLM): ingest "
        "files, query with hybrid search + rerank, evaluate on BEIR data, or run the RAG demo.",
        parents=[common_parser()],
    )
    # A parent's actions are shared, not copied: the commands get their own, so that this default
    # does not reach them and overwrite a flag given before the command name.
    parser.set_defaults(debug=False, quiet=False)
    common = common_parser()
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in _COMMANDS.items():
        sub = commands.add_parser(name, parents=[common], help=command.HELP, description=command.DESCRIPTION)
        command.add_arguments(sub)
        # The command's own parser, to report an unknown flag under the command's usage (see main).
        sub.set_defaults(handler=command.run, command_parser=sub)
    return parser


_COMMAND_LOGGERS = (
    "milvus_rerank",
    "milvus_rerank.http",
    "transformers",
    "sentence_transformers",
    "huggingface_hub",
    "httpx",
    "pymilvus",
    "milvus_lite",
)
"""The loggers a command sets up for its own output (:func:`_quiet_libraries`, :func:`_debug_logs`)."""


@contextlib.contextmanager
def _command_logging() -> Iterator[None]:
    """Give the loggers a command changes their levels and handlers back when it ends.

    ``main`` also runs in-process (tests, or an application calling it): the quiet or debug
    setting of one command must not stay behind in the caller's logging.
    """
    loggers = [logging.getLogger(name) for name in _COMMAND_LOGGERS]
    saved = [(logger.level, list(logger.handlers)) for logger in loggers]
    try:
        yield
    finally:
        for logger, (level, handlers) in zip(loggers, saved, strict=True):
            logger.setLevel(level)
            logger.handlers[:] = handlers


def _debug_logs() -> None:
    """At ``--debug``, the library's own debug lines (e.g. how many windows long passages became) go to stderr."""
    logger = logging.getLogger("milvus_rerank")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def _quiet_libraries() -> None:
    """Keep library chatter (weight-loading bars, info logs) off a command's output."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # gRPC's own log lines (Milvus Lite's connection, e.g. "too_many_pings" during a long embedding).
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    for name in ("transformers", "sentence_transformers", "huggingface_hub", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # pymilvus logs every failed call, and Milvus Lite a failed start, with a traceback before the
    # exception that the library turns into one line saying what went wrong.
    for name in ("pymilvus", "milvus_lite"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # The HTTP rerankers log each retry; the command prints the one line of the final error.
    logging.getLogger("milvus_rerank.http").setLevel(logging.ERROR)
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``milvus-rerank`` with ``argv`` (default: the process arguments) and return the exit status."""
    parser = build_parser()
    # argparse reports a flag that no parser knows under the top-level usage; the command's own
    # usage is the one that lists the flags the user can choose from.
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    with _command_logging():
        if not args.debug:
            _quiet_libraries()
        else:
            _debug_logs()
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        note(f"{PROG}: interrupted")
        return 130
    except Exception as exc:
        if args.debug:
            raise
        note(f"{PROG} {args.command}: error: {error_line(exc)}")
        return 1
