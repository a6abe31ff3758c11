"""What the commands print: Markdown tables and one-line cells."""

from __future__ import annotations

from milvus_rerank.cli.output import format_table, one_line


def test_format_table_aligns_and_escapes() -> None:
    table = format_table(("name", "score"), [["a|b", 0.5], ["c", None]])
    assert table.splitlines() == [
        "| name |  score |",
        "|------|-------:|",
        "| a\\|b | 0.5000 |",
        "| c    |      - |",
    ]


def test_one_line_collapses_whitespace_and_cuts_with_an_ellipsis() -> None:
    assert one_line("a\n\tb   c", 10) == "a b c"
    assert one_line("The dome closes in wind.", 10) == "The dome…"
    assert len(one_line("x" * 50, 10)) == 10
