"""The command line's shared options, defaults and environment variables, defined once.

Every command and the framework examples build their parsers from these helpers, so a flag has
one spelling, one default and one help text wherever it appears. Secrets (API keys, the Milvus
token) are read from environment variables only, never from flags, so they stay out of shell
history and process lists.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from milvus_rerank.rerankers.prompts import PROMPT_FORMATS

if TYPE_CHECKING:
    from milvus_rerank.milvus.retriever import RetrievalMode

__all__ = [
    "DEFAULT_CANDIDATES",
    "DEFAULT_COLLECTION",
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_RERANKER_MODEL",
    "DEFAULT_TOP_N",
    "DEFAULT_URI",
    "LLM_API_KEY_ENV",
    "LLM_MODEL_ENV",
    "LLM_URL_ENV",
    "MODES",
    "TOKEN_ENV",
    "VLLM_API_KEY_ENV",
    "add_demo_arguments",
    "add_milvus_arguments",
    "add_model_arguments",
    "add_selection_arguments",
    "add_uri_argument",
    "api_key",
    "common_parser",
    "non_negative_int",
    "positive_int",
]

DEFAULT_RERANKER_MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"
"""The cross-encoder used when no ``--reranker-model`` is given (downloaded on first use)."""

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
"""The embedding model used when no ``--embedding-model`` is given (downloaded on first use)."""

DEFAULT_URI = "milvus_rerank.db"
"""The Milvus Lite file ``ingest`` and ``query`` use when no ``--uri`` is given."""

DEFAULT_COLLECTION = "documents"
"""The collection ``ingest`` and ``query`` use when no ``--collection`` is given."""

MODES: tuple[RetrievalMode, ...] = ("dense", "sparse", "hybrid")
"""The first-stage searches, as ``--mode`` spells them."""

TOKEN_ENV = "MILVUS_TOKEN"
LLM_URL_ENV = "MILVUS_RERANK_LLM_URL"
LLM_MODEL_ENV = "MILVUS_RERANK_LLM_MODEL"
LLM_API_KEY_ENV = "MILVUS_RERANK_LLM_API_KEY"
VLLM_API_KEY_ENV = "MILVUS_RERANK_VLLM_API_KEY"

DEFAULT_CANDIDATES = 20
"""First-stage candidates reranked by ``query`` and ``demo`` (``--candidates``)."""

DEFAULT_TOP_N = 5
"""Passages kept after reranking by ``query`` and ``demo`` (``--top-n``)."""


def positive_int(value: str) -> int:
    """An ``argparse`` type: ``value`` as an integer of at least 1."""
    return _int_at_least(value, 1, "a positive integer")


def non_negative_int(value: str) -> int:
    """An ``argparse`` type: ``value`` as an integer of at least 0."""
    return _int_at_least(value, 0, "a non-negative integer")


def _int_at_least(value: str, minimum: int, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None
    if number < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
    return number


def common_parser() -> argparse.ArgumentParser:
    """The options every command takes (``--debug``, ``-q/--quiet``), as a parent parser.

    They default to ``SUPPRESS`` so that a subcommand's parser does not overwrite a value given
    before the command name; the top-level parser sets the real defaults on a parent of its own
    (a parent's actions are shared by its children, so one parent for both would carry those
    defaults into the commands).
    """
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and library logs on errors"
    )
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars on stderr"
    )
    return common


def add_uri_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, default: str | None) -> None:
    """Add ``--uri`` (alias ``--db``): a Milvus Lite file or a server URL; ``default=None``: a temporary file."""
    where = f"(default: {default})" if default else "(default: a file in a temporary folder, removed afterwards)"
    parser.add_argument(
        "--uri",
        "--db",
        dest="uri",
        metavar="URI",
        default=default,
        help=f"Milvus Lite file (*.db, in an existing folder) or server URL such as http://localhost:19530 {where}; "
        f"a server token is read from ${TOKEN_ENV}",
    )


def add_milvus_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--uri`` (alias ``--db``) and ``--collection``; the server token comes from ``$MILVUS_TOKEN``."""
    group = parser.add_argument_group("Milvus")
    add_uri_argument(group, default=DEFAULT_URI)
    group.add_argument("--collection", default=DEFAULT_COLLECTION, help="collection name (default: %(default)s)")


def add_selection_arguments(
    parser: argparse.ArgumentParser, *, candidates: int = DEFAULT_CANDIDATES, top_n: bool = True
) -> None:
    """Add ``--candidates`` (the first stage's depth: what the reranker sees) and ``--top-n`` (what is kept).

    Args:
        parser: The parser (or subparser) to extend.
        candidates: Default of ``--candidates``.
        top_n: ``False`` leaves ``--top-n`` out (``eval`` scores the whole reranked list).
    """
    group = parser.add_argument_group("retrieval and reranking")
    group.add_argument(
        "--candidates",
        metavar="N",
        type=positive_int,
        default=candidates,
        help="first-stage candidates passed to the reranker (default: %(default)s)",
    )
    if top_n:
        group.add_argument(
            "--top-n",
            metavar="N",
            type=positive_int,
            default=DEFAULT_TOP_N,
            help="passages kept after reranking (default: %(default)s)",
        )


def add_model_arguments(
    parser: argparse.ArgumentParser,
    *,
    reranker_default: str | None = DEFAULT_RERANKER_MODEL,
    reranker: bool = True,
) -> None:
    """Add ``--reranker-model``, ``--embedding-model``, ``--vllm-endpoint`` and the reranker's options to ``parser``.

    The reranker's options are ``--max-length``, ``--long-documents``, ``--window-overlap``, ``--instruction`` and
    ``--prompt-format``
    (see :func:`milvus_rerank.cli.models.make_reranker`).

    Args:
        parser: The parser (or subparser) to extend.
        reranker_default: Default of ``--reranker-model``; ``None`` makes reranking opt-in.
        reranker: ``False`` adds ``--embedding-model`` alone (for commands that do not rerank).
    """
    models = parser.add_argument_group("models")
    if reranker:
        models.add_argument(
            "--reranker-model",
            metavar="PATH_OR_ID",
            default=reranker_default,
            help="local cross-encoder: a model directory or a Hugging Face id "
            + ("(default: %(default)s)" if reranker_default else "(default: none, no reranking)"),
        )
    models.add_argument(
        "--embedding-model",
        metavar="PATH_OR_ID",
        default=DEFAULT_EMBEDDING_MODEL,
        help="sentence-transformers embedding model: a directory or a Hugging Face id (default: %(default)s)",
    )
    if reranker:
        models.add_argument(
            "--vllm-endpoint",
            metavar="URL",
            default=None,
            help=f"rerank with a vLLM server (e.g. http://localhost:8000) instead of the local cross-encoder; "
            f"API key from ${VLLM_API_KEY_ENV} (surrounding whitespace, such as a trailing newline, is stripped)",
        )
        models.add_argument(
            "--llm-rerank-endpoint",
            metavar="URL",
            default=None,
            help="rerank listwise with a chat LLM, RankGPT-style, on an OpenAI-compatible endpoint (e.g. vLLM at "
            f"http://localhost:8000) instead of a cross-encoder; API key from ${LLM_API_KEY_ENV}",
        )
        models.add_argument(
            "--llm-rerank-model",
            metavar="NAME",
            default=None,
            help="model name sent to --llm-rerank-endpoint (default: the one the server serves)",
        )
        models.add_argument(
            "--llm-rerank-window",
            metavar="N",
            type=positive_int,
            default=20,
            help="passages per chat call with --llm-rerank-endpoint; windows slide by half of it (default: "
            "%(default)s)",
        )
        models.add_argument(
            "--max-length",
            metavar="N",
            type=positive_int,
            default=None,
            help="most tokens of a (query, passage) pair: the local cross-encoder cuts longer pairs (default: "
            "the model's limit); with --vllm-endpoint it is sent as truncate_prompt_tokens",
        )
        models.add_argument(
            "--long-documents",
            choices=("truncate", "windows"),
            default="truncate",
            help="passages whose pair is longer than --max-length (or the model's limit): 'truncate' scores their "
            "first tokens; 'windows' scores overlapping windows of each and keeps the best (with --vllm-endpoint "
            "the windows are cut with --reranker-model's tokenizer, the served model's, and --max-length is "
            "needed) (default: %(default)s)",
        )
        models.add_argument(
            "--window-overlap",
            metavar="N",
            type=non_negative_int,
            default=None,
            help="tokens shared by consecutive windows of --long-documents windows (default: a quarter of one)",
        )
        models.add_argument(
            "--instruction",
            metavar="TEXT",
            default=None,
            help="task description for LLM rerankers such as Qwen3-Reranker (default: the model's own)",
        )
        models.add_argument(
            "--reranker",
            choices=("voyage", "jina", "cohere"),
            default=None,
            help="rerank with a hosted API instead of the local cross-encoder: voyage, jina or cohere (key from "
            "VOYAGE_API_KEY, JINA_API_KEY, COHERE_API_KEY or CO_API_KEY)",
        )
        models.add_argument(
            "--model",
            metavar="NAME",
            default=None,
            help="the --reranker API's model (default: rerank-2.5, jina-reranker-v2-base-multilingual, rerank-v3.5)",
        )
        models.add_argument(
            "--prompt-format",
            metavar="NAME",
            choices=tuple(PROMPT_FORMATS),
            default=None,
            help=f"wrap query and passages in an LLM reranker's prompt ({', '.join(PROMPT_FORMATS)}): for a "
            "checkpoint without a chat template, or a vLLM server started without --chat-template "
            "(default: none; a local model with a chat template uses its own)",
        )


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the RAG demo's options to ``parser`` (``milvus-rerank demo``).

    Options: the models (:func:`add_model_arguments`), ``--llm-endpoint``, ``--llm-model``,
    ``--uri`` (alias ``--db``), ``--question`` (repeatable), ``--candidates`` and ``--top-n``
    (:func:`add_selection_arguments`). The LLM options default to the environment variables
    ``MILVUS_RERANK_LLM_URL`` and ``MILVUS_RERANK_LLM_MODEL``; the LLM's API key is read from
    ``MILVUS_RERANK_LLM_API_KEY`` only, and a vLLM reranker's key from ``MILVUS_RERANK_VLLM_API_KEY``.

    Args:
        parser: The parser (or subparser) to extend.
    """
    add_model_arguments(parser)
    llm = parser.add_argument_group("answer generation")
    llm.add_argument(
        "--llm-endpoint",
        metavar="URL",
        default=os.environ.get(LLM_URL_ENV) or None,
        help=f"OpenAI-compatible chat endpoint that writes the answers (default: ${LLM_URL_ENV}); without one "
        f"the demo prints an extractive answer quoting the passages; API key from ${LLM_API_KEY_ENV}",
    )
    llm.add_argument(
        "--llm-model",
        metavar="NAME",
        default=os.environ.get(LLM_MODEL_ENV) or None,
        help=f"model name sent to the chat endpoint (default: ${LLM_MODEL_ENV}, or none: the server's default)",
    )
    run = parser.add_argument_group("demo run")
    add_uri_argument(run, default=None)
    run.add_argument(
        "--question",
        metavar="TEXT",
        action="append",
        default=None,
        help="question to ask; repeat for several (default: the demo's built-in questions)",
    )
    add_selection_arguments(parser)


def api_key(variable: str) -> str | None:
    """The API key in the environment variable ``variable``, stripped of surrounding whitespace; ``None`` if unset.

    A key pasted from a file usually ends with a newline, which no server's key contains.
    """
    return os.environ.get(variable, "").strip() or None
