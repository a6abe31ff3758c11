"""What the commands print: Markdown tables and one-line cells."""

from __future__ import annotations

from milvus_rerank.cli.output import counted, duration, format_table, one_line


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


def test_counted_agrees_in_number() -> None:
    assert [counted(n, "chunk") for n in (0, 1, 2)] == ["0 chunks", "1 chunk", "2 chunks"]
    assert counted(1, "query", "queries") == "1 query"
    assert counted(3, "query", "queries") == "3 queries"


def test_duration_is_rough_and_readable() -> None:
    assert [duration(s) for s in (0.2, 40, 89, 1000, 17 * 60, 4000, 9000)] == [
        "1 s", "40 s", "89 s", "17 min", "17 min", "67 min", "2.5 h",
    ]  # fmt: skip
