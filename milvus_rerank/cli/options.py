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
    "DEFAULT_COLLECTION",
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_RERANKER_MODEL",
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


def add_milvus_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--uri`` and ``--collection`` to ``parser``; the server token comes from ``$MILVUS_TOKEN``."""
    group = parser.add_argument_group("Milvus")
    group.add_argument(
        "--uri",
        default=DEFAULT_URI,
        help=f"Milvus Lite file (*.db) or server URL such as http://localhost:19530 (default: %(default)s); "
        f"a server token is read from ${TOKEN_ENV}",
    )
    group.add_argument("--collection", default=DEFAULT_COLLECTION, help="collection name (default: %(default)s)")


def add_model_arguments(
    parser: argparse.ArgumentParser,
    *,
    reranker_default: str | None = DEFAULT_RERANKER_MODEL,
    reranker: bool = True,
) -> None:
    """Add ``--reranker-model``, ``--embedding-model``, ``--vllm-endpoint`` and the reranker's options to ``parser``.

    The reranker's options are ``--max-length``, ``--instruction`` and ``--prompt-format``
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
            help="local cross-encoder: a model directory or a Hugging Face id (default: %(default)s)",
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
            f"API key from ${VLLM_API_KEY_ENV}",
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
    """Add the RAG demo's options to ``parser`` (``milvus-rerank demo`` and the framework examples).

    Options: ``--reranker-model``, ``--embedding-model``, ``--vllm-endpoint`` and the reranker's
    options (see :func:`add_model_arguments`), ``--llm-endpoint``, ``--llm-model``, ``--db``, ``--question``
    (repeatable), ``--top-n``, ``--candidates``. The LLM options default to the environment
    variables ``MILVUS_RERANK_LLM_URL`` and ``MILVUS_RERANK_LLM_MODEL``; the LLM's API key is read
    from ``MILVUS_RERANK_LLM_API_KEY`` only, and a vLLM reranker's key from
    ``MILVUS_RERANK_VLLM_API_KEY``.

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
    run.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help="Milvus Lite database file to create or reuse (default: a file in a temporary directory)",
    )
    run.add_argument(
        "--question",
        metavar="TEXT",
        action="append",
        default=None,
        help="question to ask; repeat for several (default: the demo's built-in questions)",
    )
    run.add_argument(
        "--top-n",
        metavar="N",
        type=positive_int,
        default=3,
        help="passages kept after reranking (default: %(default)s)",
    )
    run.add_argument(
        "--candidates",
        metavar="N",
        type=positive_int,
        default=20,
        help="first-stage candidates passed to the reranker (default: %(default)s)",
    )
