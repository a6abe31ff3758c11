"""What the commands print: Markdown tables on stdout, notes on stderr.

Results go to stdout and everything that explains them (progress, setup lines) to stderr, so
``milvus-rerank query ... > out.txt`` keeps only the table.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from milvus_rerank.types import Candidate

__all__ = ["CANDIDATE_HEADERS", "candidate_rows", "counted", "duration", "format_table", "note", "one_line"]

CANDIDATE_HEADERS = ("rank", "rerank score", "first-stage rank", "first-stage score", "id", "text")
"""The columns of a table of reranked candidates (see :func:`candidate_rows`)."""


def one_line(text: str, width: int) -> str:
    """``text`` on one line, its whitespace collapsed, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """``count`` and ``noun`` in agreement: ``1 chunk``, ``2 chunks`` (``plural`` for irregular nouns)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def duration(seconds: float) -> str:
    """A rough duration for a person: ``40 s``, ``3 min``, ``1.5 h``."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def note(message: str) -> None:
    """Print ``message`` on stderr at once (it explains the output; it is not part of it)."""
    print(message, file=sys.stderr, flush=True)


def candidate_rows(results: Sequence[Candidate], width: int) -> list[list[object]]:
    """Rows under :data:`CANDIDATE_HEADERS`: ranks and scores of both stages, the id and the text cut to ``width``."""
    return [[c.rank, c.rerank_score, c.retrieval_rank, c.score, str(c.id), one_line(c.text, width)] for c in results]


def format_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, align: str | None = None) -> str:
    """A Markdown table with padded columns (readable in a terminal, pasteable into docs).

    Args:
        headers: Column titles.
        rows: Cell values; ``float`` cells are shown with four decimals, ``None`` as ``-``.
        align: One character per column, ``l`` or ``r``; default: right for numbers, left otherwise.
    """

    def cell(value: object) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.4f}"
        return str(value).replace("|", "\\|")

    values = [list(row) for row in rows]
    table = [[cell(value) for value in row] for row in values]
    if align is None:
        align = "".join(
            "r" if values and all(isinstance(row[i], (int, float)) or row[i] is None for row in values) else "l"
            for i in range(len(headers))
        )
    widths = [max([len(h), *(len(row[i]) for row in table)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if a == "r" else v.ljust(w) for v, w, a in zip(values, widths, align, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if a == "r" else ("-" * (w + 2)) for w, a in zip(widths, align, strict=True))
        + "|"
    )
    return "\n".join([line(headers), rule, *(line(row) for row in table)])
