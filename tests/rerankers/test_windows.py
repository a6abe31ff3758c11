"""The window planner on its own (rerankers/windows.py): token ranges, cut points, the fit to max_length."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest

from milvus_rerank.rerankers.windows import WindowOptions, plan_windows, token_windows


def word_offsets(text: str) -> list[tuple[int, int]]:
    """One token per word, as a whitespace tokenizer's offsets."""
    offsets, start = [], 0
    for word in text.split(" "):
        offsets.append((start, start + len(word)))
        start += len(word) + 1
    return offsets


TEXT = " ".join(f"w{i}" for i in range(100))


def test_a_document_that_fits_is_one_window() -> None:
    assert token_windows(word_offsets("a b c"), "a b c", size=5, overlap=1, max_windows=4) == [(0, 3)]


def test_windows_overlap_cover_the_document_and_respect_the_cap() -> None:
    offsets = word_offsets(TEXT)
    windows = token_windows(offsets, TEXT, size=20, overlap=5, max_windows=100)
    assert windows[0][0] == 0
    assert windows[-1] == (80, 100)  # the last window is a full one ending at the end
    assert all(end - start <= 20 for start, end in windows)
    for (_, end), (start, _) in itertools.pairwise(windows):
        assert start < end  # overlapping: nothing skipped
    assert token_windows(offsets, TEXT, size=20, overlap=5, max_windows=3)[-1][1] < 100


def test_a_character_split_into_several_tokens_is_never_cut() -> None:
    # Byte-level tokenizers give every byte token of one character the character's offsets.
    text = "ab" + "\U0001f600" * 30
    offsets = [(0, 1), (1, 2)] + [(2 + i, 3 + i) for i in range(30) for _ in range(4)]
    for start, end in token_windows(offsets, text, size=10, overlap=2, max_windows=100):
        assert start == 0 or offsets[start][0] >= offsets[start - 1][1]
        assert end == len(offsets) or offsets[end][0] >= offsets[end - 1][1]


def test_windows_move_to_word_starts() -> None:
    # Two tokens per word ("w", "##12"): a cut inside a word moves to the next word's start.
    words = [f"w{i}" for i in range(60)]
    text = " ".join(words)
    offsets: list[tuple[int, int]] = []
    position = 0
    for word in words:
        offsets += [(position, position + 1), (position + 1, position + len(word))]
        position += len(word) + 1
    for start, end in token_windows(offsets, text, size=15, overlap=4, max_windows=100):
        assert start % 2 == 0
        assert end % 2 == 0


def test_plan_windows_shrinks_a_window_whose_pair_is_longer_in_context() -> None:
    # A "model" whose pairs cost 3 tokens of query and specials, plus one token more per 10 words (merges).
    def pair_lengths(query: str, texts: Sequence[str], limit: int) -> list[int]:
        lengths = []
        for text in texts:
            n = len(text.split(" ")) if text else 0
            lengths.append(min(3 + n + n // 10, limit))
        return lengths

    def offsets(texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        return [word_offsets(text) for text in texts]

    call = plan_windows(
        "q",
        [TEXT, "short one"],
        max_length=33,
        options=WindowOptions("windows", None, 32),
        pair_lengths=pair_lengths,
        token_offsets=offsets,
    )
    assert call.split == 1
    assert call.texts[0] == "short one"
    assert call.spans[0] is None
    assert all(length <= 33 for length in pair_lengths("q", call.texts, 10**6))
    best, spans = call.best([0.0, *range(call.windows)], 2)
    assert best[0] == call.windows - 1
    assert spans[0] == call.spans[-1]
    assert best[1] == 0.0


@pytest.mark.parametrize("overlap", [0, 7])
def test_overlap_zero_or_large_still_progresses(overlap: int) -> None:
    windows = token_windows(word_offsets(TEXT), TEXT, size=8, overlap=overlap, max_windows=1000)
    assert windows[-1][1] == 100
    assert all(b[0] > a[0] for a, b in itertools.pairwise(windows))
