"""Listwise reranking by a chat LLM, RankGPT-style: the windows, the prompt, the answer's repair. Pure, no I/O.

RankGPT (Sun et al., 2023) has an instruction-following model read a window of numbered passages
and answer with a permutation (``[3] > [1] > [2]``). A window of ``window`` passages slides from
the bottom of the first-stage order to the top, ``step`` passages at a time, and each answer
re-orders its window in place, so a relevant passage can climb ``window - step`` places per window
all the way to the top. :func:`sliding_windows` lays the windows out (the last one clipped at the
top), :func:`window_calls` counts them, :func:`chat_messages` writes the prompt,
:func:`parse_permutation` reads an answer so that no passage is ever lost or duplicated, and
:class:`ListwiseRanking` carries one call's order from window to window. The HTTP reranker
(:class:`~milvus_rerank.rerankers.http.chat.ChatListwiseReranker`) only sends and receives.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from milvus_rerank.types import RerankResult

__all__ = [
    "CHARS_PER_TOKEN",
    "DEFAULT_PASSAGE_CHARS",
    "ListwiseRanking",
    "ListwiseStats",
    "Permutation",
    "answer_tokens",
    "chat_messages",
    "parse_permutation",
    "passage_budget",
    "sliding_windows",
    "window_calls",
]

DEFAULT_PASSAGE_CHARS = 1200
"""Most characters of one passage in a prompt: RankGPT cuts passages to 300 tokens, about 1200 characters."""

CHARS_PER_TOKEN = 3
"""A cautious characters-per-token estimate (English text averages about 4) for fitting a window into a context."""

_TEMPLATE_TOKENS = 16  # what a chat template adds around each message (role markers, turn ends)
_TOKENS_PER_IDENTIFIER = 6  # "[12] > " in the answer, with margin for a tokenizer that splits digits
_MIN_PASSAGE_CHARS = 16

SYSTEM_PROMPT = (
    "You are RankGPT, an intelligent assistant that can rank passages based on their relevancy to the query."
)
"""The system message of every window (RankGPT's)."""


def window_calls(n: int, window: int, step: int) -> int:
    """LLM calls to rerank ``n`` passages: ``ceil((n - window) / step) + 1`` (1 when ``n <= window``, 0 for none)."""
    if n <= 0:
        return 0
    if n <= window:
        return 1
    return math.ceil((n - window) / step) + 1


def sliding_windows(n: int, window: int, step: int) -> list[range]:
    """The windows over positions ``0..n-1`` in the order they are ranked: from the bottom to the top.

    The first window holds the last ``window`` positions; each next one sits ``step`` positions
    higher; the last one is clipped at position 0 (so it may be shorter). There are
    :func:`window_calls` of them.
    """
    if n <= 0:
        return []
    windows = []
    end = n
    while True:
        start = max(0, end - window)
        windows.append(range(start, end))
        if start == 0:
            return windows
        end -= step


def answer_tokens(size: int) -> int:
    """``max_tokens`` for the answer to a window of ``size`` passages: enough for every identifier once."""
    return _TOKENS_PER_IDENTIFIER * size + 8


def passage_budget(*, max_model_len: int, window: int, query: str) -> int:
    """Most characters per passage so that a full window, its prompt and its answer fit ``max_model_len`` tokens.

    The prompt's own text (instructions, the query twice, the identifiers) is measured, every
    text counted at :data:`CHARS_PER_TOKEN`; the result is at most :data:`DEFAULT_PASSAGE_CHARS`.

    Raises:
        ValueError: The context cannot hold a window of ``window`` passages of a useful length.
    """
    messages = chat_messages(query, [""] * window, passage_chars=0)
    prompt_tokens = sum(math.ceil(len(m["content"]) / CHARS_PER_TOKEN) + _TEMPLATE_TOKENS for m in messages)
    left = max_model_len - answer_tokens(window) - prompt_tokens
    chars = left // window * CHARS_PER_TOKEN if left > 0 else 0
    if chars < _MIN_PASSAGE_CHARS:
        raise ValueError(
            f"the model's context ({max_model_len} tokens) cannot hold a window of {window} passages with this "
            f"query ({len(query)} characters): lower window=, shorten the query, or serve the model with a "
            "larger --max-model-len"
        )
    return min(DEFAULT_PASSAGE_CHARS, chars)


def _one_line(text: str, limit: int) -> str:
    # One line per passage: the identifiers stay at line starts, and the cut is counted on visible text.
    return " ".join(text.split())[:limit]


def chat_messages(query: str, passages: Sequence[str], *, passage_chars: int) -> list[dict[str, str]]:
    """The chat messages that ask for the ranking of one window (RankGPT's prompt, in one user turn).

    Passages are numbered ``[1]`` to ``[len(passages)]``, each on one line (whitespace collapsed),
    cut to ``passage_chars`` characters.
    """
    count = len(passages)
    lines = "\n".join(f"[{number}] {_one_line(text, passage_chars)}" for number, text in enumerate(passages, 1))
    query_line = _one_line(query, len(query))
    user = (
        f"I will provide you with {count} passages, each indicated by a numerical identifier []. "
        f"Rank the passages based on their relevance to the search query: {query_line}\n\n"
        f"{lines}\n\n"
        f"Search Query: {query_line}\n"
        f"Rank the {count} passages above based on their relevance to the search query. List them in "
        "descending order using identifiers, the most relevant first. The output format should be [] > [], "
        "e.g., [2] > [1]. Only respond with the ranking results, do not say any word or explain."
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


@dataclass(frozen=True)
class Permutation:
    """One window's answer read as a complete permutation, and what had to be repaired.

    Attributes:
        order: Positions in the window (0-based), each exactly once, best first.
        identifiers: Identifiers found in the answer (numbers in brackets, else bare numbers).
        out_of_range: Identifiers found that name no passage of the window.
        repeated: Identifiers found again after their first mention (later mentions are ignored).
        missing: Passages the answer did not name; they follow the named ones in their previous order.
    """

    order: tuple[int, ...]
    identifiers: int
    out_of_range: int
    repeated: int
    missing: int

    @property
    def unparsed(self) -> bool:
        """The answer held no identifier at all: the window keeps its order."""
        return self.identifiers == 0

    @property
    def repaired(self) -> bool:
        """Something in the answer was out of range, repeated or missing (an unparsed answer included)."""
        return bool(self.out_of_range or self.repeated or self.missing)


_BRACKETED = re.compile(r"\[\s*(\d+)\s*\]")
_BARE = re.compile(r"\d+")


def parse_permutation(answer: str, size: int) -> Permutation:
    """Read an answer such as ``"[3] > [1] > [2]"`` as a permutation of ``size`` passages; never loses one.

    Identifiers are the numbers in brackets, or, when there are none, the bare numbers (``3 > 1 > 2``).
    The first mention of each identifier from 1 to ``size`` ranks its passage; identifiers out of
    range and repeated mentions are dropped; passages never named follow in their previous relative
    order. An answer with no identifier keeps the window's order.
    """
    found = _BRACKETED.findall(answer) or _BARE.findall(answer)
    seen: dict[int, None] = {}
    out_of_range = repeated = 0
    for digits in found:
        number = int(digits) if len(digits) <= 9 else 0  # int() refuses very long digit strings
        if not 1 <= number <= size:
            out_of_range += 1
        elif number - 1 in seen:
            repeated += 1
        else:
            seen[number - 1] = None
    missing = [position for position in range(size) if position not in seen]
    return Permutation(
        order=(*seen, *missing),
        identifiers=len(found),
        out_of_range=out_of_range,
        repeated=repeated,
        missing=len(missing),
    )


@dataclass(frozen=True)
class ListwiseStats:
    """Counts of what a listwise reranker asked and what it had to repair in the answers.

    Attributes:
        reranks: Calls of ``rerank`` / ``arerank`` that asked the LLM.
        windows: Windows ranked (one LLM call each).
        repaired_windows: Windows whose answer named a passage out of range, twice, or not at all.
        unparsed_windows: Windows whose answer held no identifier (they kept their order; each logs a warning).
        truncated_windows: Windows whose answer stopped at ``max_tokens`` (``finish_reason == "length"``).
        out_of_range: Identifiers that named no passage of their window.
        repeated: Identifiers mentioned again.
        missing: Passages an answer did not name (placed after the named ones, in their previous order).
    """

    reranks: int = 0
    windows: int = 0
    repaired_windows: int = 0
    unparsed_windows: int = 0
    truncated_windows: int = 0
    out_of_range: int = 0
    repeated: int = 0
    missing: int = 0

    def __add__(self, other: ListwiseStats) -> ListwiseStats:
        """The field-by-field sum."""
        return ListwiseStats(*(a + b for a, b in zip(_values(self), _values(other), strict=True)))


def _values(stats: ListwiseStats) -> tuple[int, ...]:
    return (
        stats.reranks,
        stats.windows,
        stats.repaired_windows,
        stats.unparsed_windows,
        stats.truncated_windows,
        stats.out_of_range,
        stats.repeated,
        stats.missing,
    )


class ListwiseRanking:
    """One rerank call's order of passages, re-ordered window by window.

    Args:
        n: Passages to rank, in their first-stage order.
        window: Passages per window.
        step: Positions between consecutive windows.
    """

    def __init__(self, n: int, window: int, step: int) -> None:
        self.order = list(range(n))
        self.windows = sliding_windows(n, window, step)
        self.stats = ListwiseStats(reranks=1)

    def passages(self, window: range, texts: Sequence[str]) -> list[str]:
        """The texts of the passages now at the positions of ``window``, in their current order."""
        return [texts[index] for index in self.order[window.start : window.stop]]

    def apply(self, window: range, answer: str, *, truncated: bool = False) -> Permutation:
        """Re-order ``window`` as ``answer`` says (repaired: see :func:`parse_permutation`); count what was repaired."""
        current = self.order[window.start : window.stop]
        permutation = parse_permutation(answer, len(current))
        self.order[window.start : window.stop] = [current[position] for position in permutation.order]
        self.stats += ListwiseStats(
            windows=1,
            repaired_windows=int(permutation.repaired),
            unparsed_windows=int(permutation.unparsed),
            truncated_windows=int(truncated),
            out_of_range=permutation.out_of_range,
            repeated=permutation.repeated,
            missing=permutation.missing,
        )
        return permutation

    def results(self) -> list[RerankResult]:
        """The final order as results: the passage at rank ``r`` (0-based) of ``n`` scores ``n - r``."""
        n = len(self.order)
        return [RerankResult(index, float(n - rank)) for rank, index in enumerate(self.order)]
