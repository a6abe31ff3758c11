"""The framework-free frame the RAG examples share: options, database file, setup lines, printed passages.

``examples/langchain_rag.py`` and ``examples/llamaindex_rag.py`` differ only in how they build and
run their pipeline; everything around it lives here, so the two examples show just the framework
code. They import it as a sibling module (``from example_frame import ...``), which works when an
example is run as a script: Python puts the script's folder first on ``sys.path``.

The demo's parts come from the ``milvus-rerank`` app (``milvus_rerank.cli``): its corpus, model
loading, options and answers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from milvus_rerank import MilvusRerankError, Reranker
from milvus_rerank.cli.corpus import DEMO_COLLECTION, DEMO_QUESTIONS, ingest_corpus
from milvus_rerank.cli.database import database_path
from milvus_rerank.cli.errors import CLIError
from milvus_rerank.cli.models import load_embedding_model, make_reranker, standin_warning
from milvus_rerank.cli.options import add_demo_arguments

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["DEMO_COLLECTION", "RankedPassage", "ask_questions", "example_main", "prepare_example"]


@dataclass(frozen=True)
class RankedPassage:
    """A reranked passage as the examples print it, whatever framework object it came from.

    Attributes:
        id: The passage id (the Milvus primary key).
        text: The passage text.
        score: The rerank score; ``None`` when the passage was not reranked.
        metadata: Its other fields (``title``, ``source``, ``retrieval_rank``...).
    """

    id: str
    text: str
    score: float | None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """Where the passage comes from: its ``source`` field, else its id."""
        return str(self.metadata.get("source") or self.id)

    def describe(self, position: int) -> str:
        """One line: position, id, rerank score, first-stage rank, source and title."""
        score = f"{self.score:.4f}" if isinstance(self.score, float) else "n/a"
        first_stage = self.metadata.get("retrieval_rank")
        moved = f"first stage #{first_stage}" if first_stage is not None else "first stage: unranked"
        title = self.metadata.get("title", "")
        return f"  [{position}] {self.id:<8} rerank {score:>8}  {moved:<16} {self.source}  {title}"


def prepare_example(args: argparse.Namespace, db_path: str) -> tuple[SentenceTransformer, Reranker]:
    """Load the models, ingest the demo corpus into ``db_path`` and print what the run uses.

    Args:
        args: Parsed demo options (``milvus_rerank.cli.options.add_demo_arguments``).
        db_path: The Milvus Lite file.

    Returns:
        The embedding model (pass it as ``embedding=``: it embeds the queries as it embedded the
        corpus) and the reranker the options ask for.

    Raises:
        ModelLoadError: A model cannot be loaded.
        RetrievalError: Milvus failed to create or fill the collection.
    """
    model = load_embedding_model(args.embedding_model)
    reranker = make_reranker(args)
    count = ingest_corpus(db_path, DEMO_COLLECTION, model, show_progress=False)
    print(f"Corpus: {count} passages of the Lumen Ridge Observatory handbook in Milvus Lite ({db_path})")
    print(f"First stage: hybrid search (dense {args.embedding_model} + BM25, RRF), {args.candidates} candidates")
    print(f"Reranker: {reranker!r}, keeping the top {args.top_n}")
    warning = standin_warning(args)
    if warning:
        print(warning)
    print(f"LLM step: {args.llm_endpoint or 'none configured, offline extractive answer'}")
    return model, reranker


def ask_questions(args: argparse.Namespace, ask: Callable[[str], tuple[Sequence[RankedPassage], str]]) -> None:
    """Ask each question (``--question``, else the demo's built-in questions) and print passages and answer.

    Args:
        args: Parsed demo options.
        ask: Runs the example's pipeline on one question and returns the reranked passages, best
            first, and the answer.
    """
    for number, question in enumerate(args.question or DEMO_QUESTIONS, start=1):
        passages, answer = ask(question)
        print(f"\nQ{number}: {question}")
        print("Reranked passages:")
        for position, passage in enumerate(passages, start=1):
            print(passage.describe(position))
        print(answer)


def example_main(
    run: Callable[[argparse.Namespace, str], None],
    argv: Sequence[str] | None = None,
    *,
    description: str | None = None,
) -> int:
    """The ``main`` of an example: parse the demo options and call ``run(args, db_path)``.

    ``db_path`` is ``--db`` or a file in a temporary directory removed afterwards. An error of
    ours (a model that cannot be loaded, an unreachable endpoint, a ``--db`` that is not a
    ``.db`` file...) is printed as one ``error: ...`` line on stderr.

    Args:
        run: The example's body.
        argv: The arguments (default: the process arguments).
        description: The ``--help`` description.

    Returns:
        The exit status: 0, or 2 after an error.
    """
    parser = argparse.ArgumentParser(description=description)
    add_demo_arguments(parser)
    args = parser.parse_args(argv)
    try:
        with database_path(args.db, name="demo.db") as db_path:
            run(args, db_path)
    except (MilvusRerankError, CLIError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
