"""Long documents scored whole: overlapping token windows, each scored with the query, the best one kept.

A reranker reads at most ``max_length`` tokens of a (query, document) pair. With the
``"truncate"`` policy a longer pair loses its end, as every reranker has always done. With
``"windows"`` a document whose pair does not fit is split into overlapping windows of its own
tokens, each window is scored with the whole query, and the document scores as its best window;
the result's ``span`` says which characters that window covers. A document that fits is scored
exactly as under ``"truncate"``.

Windows are cut on the model's own tokenization (the fast tokenizer's character offsets), at token
boundaries that start a word where there is one nearby, so that a window's text tokenizes to the
same tokens on its own: a window's score is the model's score of ``document[start:end]``, which is
what :class:`WindowedCall` sends to the model (or server) as just more documents. Every window is
checked against ``max_length`` with the model's own pair tokenization (prompt and special tokens
included) and shrunk where it does not fit, so no window is ever truncated.

The cost is bounded: at most ``max_windows`` windows per document (its end past them is not read,
and the reranker warns), and each window costs what its tokens cost.

This module is pure Python: the reranker passes its tokenization in (:func:`plan_windows`).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from milvus_rerank.errors import ModelLoadError
from milvus_rerank.validation import check_choice, check_int

if TYPE_CHECKING:
    from milvus_rerank.rerankers.prompts import PromptFormat

__all__ = [
    "DEFAULT_MAX_WINDOWS",
    "LONG_DOCUMENT_POLICIES",
    "ClientTokenizer",
    "LongDocumentPolicy",
    "WindowOptions",
    "WindowedCall",
    "plan_windows",
    "span_in",
    "token_offsets",
    "token_windows",
    "window_options",
]

LongDocumentPolicy = Literal["truncate", "windows"]
LONG_DOCUMENT_POLICIES: tuple[LongDocumentPolicy, ...] = ("truncate", "windows")

DEFAULT_MAX_WINDOWS = 32
"""Windows per document by default: 32 windows of 512 tokens read about 12k tokens of a document."""

PairLengths = Callable[[str, Sequence[str], int], list[int]]
"""``(query, documents, limit) -> tokens of each pair``, as the model tokenizes it, capped at ``limit``."""

TokenOffsets = Callable[[Sequence[str]], list[list[tuple[int, int]]]]
"""``documents -> each document's tokens`` as ``(start, end)`` character offsets (no special tokens)."""

_SLACK = 16  # tokens past max_length that the fit check measures, so one pass usually finds each excess
_FIT_ROUNDS = 8


@dataclass(frozen=True)
class WindowOptions:
    """How a reranker treats a document whose (query, document) pair is longer than its ``max_length``.

    Attributes:
        policy: ``"truncate"`` (score the pair's first ``max_length`` tokens) or ``"windows"``.
        overlap: Tokens shared by consecutive windows; ``None`` means a quarter of the window.
        max_windows: Most windows scored per document.
    """

    policy: LongDocumentPolicy = "truncate"
    overlap: int | None = None
    max_windows: int = DEFAULT_MAX_WINDOWS

    @property
    def windows(self) -> bool:
        """Whether long documents are split into windows."""
        return self.policy == "windows"


def window_options(long_documents: object, window_overlap: object, max_windows: object) -> WindowOptions:
    """The long-document options a reranker was given, checked.

    Raises:
        TypeError: An option has the wrong type.
        ValueError: An option has an invalid value.
    """
    check_choice(long_documents, "long_documents", LONG_DOCUMENT_POLICIES)
    overlap = check_int(window_overlap, "window_overlap", minimum=0, optional=True)
    cap = check_int(max_windows, "max_windows")
    return WindowOptions(long_documents, overlap, cap)  # type: ignore[arg-type]


@dataclass(frozen=True)
class WindowedCall:
    """What one call scores under the ``"windows"`` policy: whole documents that fit, and windows of the others.

    Attributes:
        texts: The texts to score (``documents[i]`` or a window ``documents[i][start:end]``).
        owners: For each of ``texts``, the index of its document.
        spans: For each of ``texts``, its ``(start, end)`` characters in the document, ``None`` when whole.
        split: How many documents were split into windows.
        capped: How many of those had more text than ``max_windows`` windows read (their end is not scored).
        query_cut: Whether the query alone does not fit, so every window's pair cuts the query.
    """

    texts: list[str]
    owners: list[int]
    spans: list[tuple[int, int] | None]
    split: int = 0
    capped: int = 0
    query_cut: bool = False

    @property
    def windows(self) -> int:
        """How many windows the split documents became."""
        return sum(span is not None for span in self.spans)

    def summary(self, max_length: int) -> str:
        """What the split cost, for a log line."""
        n_documents = len(set(self.owners))
        return (
            f"{self.split} of {n_documents} documents were longer than {max_length} tokens with the query and "
            f"were split into {self.windows} windows ({len(self.texts)} pairs scored in all)"
        )

    def best(self, scores: Sequence[float], n_documents: int) -> tuple[list[float], list[tuple[int, int] | None]]:
        """Each document's score (its best window's; the first of equal ones) and that window's span."""
        best: list[float | None] = [None] * n_documents
        spans: list[tuple[int, int] | None] = [None] * n_documents
        for owner, score, span in zip(self.owners, scores, self.spans, strict=True):
            current = best[owner]
            if current is None or score > current:
                best[owner], spans[owner] = score, span
        return [float(score) for score in best if score is not None], spans


def plan_windows(
    query: str,
    documents: Sequence[str],
    *,
    max_length: int,
    options: WindowOptions,
    pair_lengths: PairLengths,
    token_offsets: TokenOffsets,
) -> WindowedCall:
    """The texts to score for ``documents`` under the ``"windows"`` policy.

    Args:
        query: The query, as the model will read it.
        documents: The documents (none blank).
        max_length: Most tokens of a pair.
        options: The policy's options.
        pair_lengths: The model's pair tokenization, as token counts capped at a limit.
        token_offsets: The model's tokenization of documents alone, as character offsets.
    """
    n = len(documents)
    lengths = pair_lengths(query, documents, max_length + 1)
    long = [i for i, length in enumerate(lengths) if length > max_length]
    whole = WindowedCall(list(documents), list(range(n)), [None] * n)
    if not long:
        return whole
    fixed = pair_lengths(query, [""], max_length + 1)[0]
    query_cut = fixed >= max_length
    # A query that alone fills the pair is cut by the pair's own truncation: the windows take half.
    size = max(1, max_length // 2) if query_cut else max_length - fixed
    overlap = size // 4 if options.overlap is None else min(options.overlap, size - 1)
    texts, owners, spans = list(whole.texts), list(whole.owners), list[tuple[int, int] | None](whole.spans)
    ranges: list[tuple[int, int, list[tuple[int, int]], str, int]] = []  # owner, ..., offsets, text, end token
    capped = 0
    for owner, offsets in zip(long, token_offsets([documents[i] for i in long]), strict=True):
        text = documents[owner]
        windows = token_windows(offsets, text, size=size, overlap=overlap, max_windows=options.max_windows)
        capped += windows[-1][1] < len(offsets)
        ranges.extend((owner, start, offsets, text, end) for start, end in windows)
    if not query_cut:
        ranges = _fit(query, ranges, max_length, pair_lengths)
    split = set(long)
    keep = [i for i in range(n) if i not in split]
    texts = [texts[i] for i in keep]
    owners = [owners[i] for i in keep]
    spans = [spans[i] for i in keep]
    for owner, start, offsets, text, end in ranges:
        span = (offsets[start][0], offsets[end - 1][1])
        texts.append(text[span[0] : span[1]])
        owners.append(owner)
        spans.append(span)
    return WindowedCall(texts, owners, spans, split=len(long), capped=capped, query_cut=query_cut)


def _fit(
    query: str,
    ranges: list[tuple[int, int, list[tuple[int, int]], str, int]],
    max_length: int,
    pair_lengths: PairLengths,
) -> list[tuple[int, int, list[tuple[int, int]], str, int]]:
    """Windows shrunk at their end until each pair fits ``max_length`` (a window's tokens in context may differ)."""
    pending = list(range(len(ranges)))
    for _ in range(_FIT_ROUNDS):
        if not pending:
            break
        texts = []
        for i in pending:
            _, start, offsets, text, end = ranges[i]
            texts.append(text[offsets[start][0] : offsets[end - 1][1]])
        lengths = pair_lengths(query, texts, max_length + _SLACK)
        still = []
        for i, length in zip(pending, lengths, strict=True):
            if length > max_length:
                owner, start, offsets, text, end = ranges[i]
                shorter = max(start + 1, end - (length - max_length))
                shorter = _snap_back(offsets, text, start, shorter)
                if shorter < end:
                    ranges[i] = (owner, start, offsets, text, shorter)
                    still.append(i)
        pending = still
    return ranges


def span_in(content: str, scored: str, span: tuple[int, int] | None) -> tuple[int, int] | None:
    """``span`` (characters of ``scored``, the text a reranker read) as characters of ``content``.

    ``scored`` is ``content`` itself, or a rendering that holds it once (e.g. a template that adds a
    title or metadata lines before it). The part of the window outside ``content`` is dropped;
    ``None`` when there is no span, ``content`` is not in ``scored``, or the window lies outside it.
    """
    if span is None:
        return None
    if scored == content:
        return span
    offset = scored.rfind(content) if content else -1
    if offset < 0:
        return None
    start, end = max(span[0] - offset, 0), min(span[1] - offset, len(content))
    return (start, end) if start < end else None


def token_offsets(tokenizer: Any, documents: Sequence[str]) -> list[list[tuple[int, int]]]:
    """Each document's tokens, as ``tokenizer`` reads the document alone, as ``(start, end)`` characters.

    Args:
        tokenizer: A Hugging Face fast tokenizer (the caller holds its lock where it is shared).
        documents: The documents.

    Raises:
        ModelLoadError: The tokenizer gives no character offsets (a slow, Python tokenizer).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(
            f"long_documents='windows' cuts documents on the tokenizer's character offsets, which only a fast "
            f"tokenizer gives, and this one is {type(tokenizer).__name__}; save the model with its tokenizer.json "
            "(a fast tokenizer) or use long_documents='truncate'"
        )
    encoded = tokenizer(
        list(documents),
        add_special_tokens=False,
        return_offsets_mapping=True,
        return_attention_mask=False,
        verbose=False,
    )
    return [[(int(start), int(end)) for start, end in offsets] for offsets in encoded["offset_mapping"]]


def token_windows(
    offsets: Sequence[tuple[int, int]], text: str, *, size: int, overlap: int, max_windows: int
) -> list[tuple[int, int]]:
    """Windows of at most ``size`` tokens over a document's tokens, as ``[start, end)`` token ranges.

    Consecutive windows share about ``overlap`` tokens; the last one ends at the document's end (or the
    ``max_windows``-th window ends early). Boundaries move by up to a quarter window to a token that starts
    a word (one not glued to an alphanumeric character before it), else to one whose characters do not
    overlap its neighbour's, so that each window's text tokenizes on its own as it did in the document.

    Args:
        offsets: The document's tokens as ``(start, end)`` character offsets.
        text: The document.
        size: Most tokens per window (at least 1).
        overlap: Tokens shared by consecutive windows (less than ``size``).
        max_windows: Most windows.
    """
    n = len(offsets)
    if n <= size:
        return [(0, n)]
    step = max(1, size - overlap)
    windows: list[tuple[int, int]] = []
    start = 0
    while True:
        end = n if start + size >= n else _snap_back(offsets, text, start, start + size)
        windows.append((start, end))
        if end >= n or len(windows) == max_windows:
            return windows
        # The last window is a full one ending at the document's end.
        target = min(start + step, n - size, end)
        start = _snap_forward(offsets, text, target, floor=start, limit=end, reach=max(1, size // 4))


def _boundary(offsets: Sequence[tuple[int, int]], text: str, k: int) -> int:
    """How good a cut before token ``k`` is: 2 starts a word, 1 a clean cut between characters, 0 neither."""
    if k <= 0 or k >= len(offsets):
        return 2
    start, previous_start, previous_end = offsets[k][0], offsets[k - 1][0], offsets[k - 1][1]
    if start < previous_end or start <= previous_start:  # inside one character (bytes of it) or overlapping
        return 0
    if start > previous_end or not (text[start - 1].isalnum() and text[start].isalnum()):
        return 2
    return 1


def _snap_back(offsets: Sequence[tuple[int, int]], text: str, start: int, end: int) -> int:
    """The best cut in ``(start, end]`` nearest ``end``: a word start within a quarter window, else any clean cut."""
    reach = max(start + 1, end - max(1, (end - start) // 4))
    for k in range(end, reach - 1, -1):
        if _boundary(offsets, text, k) == 2:
            return k
    for k in range(end, start, -1):  # never inside a character (its byte tokens share its offsets)
        if _boundary(offsets, text, k) >= 1:
            return k
    return end


def _snap_forward(
    offsets: Sequence[tuple[int, int]], text: str, target: int, *, floor: int, limit: int, reach: int
) -> int:
    """The best cut in ``[target, limit]`` nearest ``target``: a word start within ``reach``, else any clean cut."""
    for k in range(target, min(limit - 1, target + reach) + 1):
        if _boundary(offsets, text, k) == 2:
            return k
    # Never inside a character (its byte tokens share its offsets): up to the previous window's end (no
    # overlap), else back towards its start (more overlap).
    for k in itertools.chain(range(target, limit + 1), range(target - 1, floor, -1)):
        if _boundary(offsets, text, k) >= 1:
            return k
    return target


class ClientTokenizer:
    """The served model's tokenizer on the client: where an HTTP reranker cuts windows before sending them.

    It measures each pair as the server tokenizes it: a plain (query, document) text pair, or, with a
    ``prompt_format``, the whole rendered prompt (as :class:`~milvus_rerank.CrossEncoderReranker`
    measures the same prompts), so the windows are the ones a local reranker on the same weights cuts.

    Args:
        tokenizer: A Hugging Face fast tokenizer, or a local directory or hub id to load one from
            (needs ``transformers``: ``pip install 'milvus-rerank[local]'``), loaded on first use.
    """

    def __init__(self, tokenizer: Any) -> None:
        if isinstance(tokenizer, os.PathLike):
            tokenizer = os.fspath(tokenizer)
        if isinstance(tokenizer, str) and not tokenizer.strip():
            raise ValueError("tokenizer must name the served model's tokenizer (a directory or hub id), got ''")
        if not isinstance(tokenizer, str) and not callable(tokenizer):
            raise TypeError(
                f"tokenizer must be a Hugging Face tokenizer, a directory or a hub id, got {type(tokenizer).__name__}"
            )
        self._source = tokenizer
        self._tokenizer: Any = None if isinstance(tokenizer, str) else tokenizer
        self._lock = threading.Lock()  # fast tokenizers refuse concurrent use ("Already borrowed")

    def _loaded(self) -> Any:
        if self._tokenizer is None:
            try:
                from transformers import AutoTokenizer
            except ImportError as exc:
                raise ImportError(
                    "tokenizer='...' loads the tokenizer with transformers: pip install 'milvus-rerank[local]'"
                ) from exc
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self._source)
            except (OSError, ValueError) as exc:
                raise ModelLoadError(f"cannot load the tokenizer {self._source!r} for long_documents: {exc}") from exc
        return self._tokenizer

    def model_max_length(self) -> int | None:
        """The tokenizer's declared limit, or ``None`` where it declares none (a huge placeholder)."""
        with self._lock:
            limit = getattr(self._loaded(), "model_max_length", None)
        return int(limit) if isinstance(limit, int) and 0 < limit < 1_000_000 else None

    def pair_lengths(
        self,
        query: str,
        documents: Sequence[str],
        limit: int,
        *,
        prompt_format: PromptFormat | None = None,
        instruction: str | None = None,
    ) -> list[int]:
        """Tokens of each pair as the server reads it (with ``prompt_format``, the whole prompt), up to ``limit``."""
        with self._lock:
            tokenizer = self._loaded()
            if prompt_format is not None:
                prompts = prompt_format.render(query, documents, instruction=instruction).prompts
                ids = tokenizer(prompts, add_special_tokens=False, verbose=False)["input_ids"]
            else:
                ids = tokenizer([query] * len(documents), list(documents), truncation=False, verbose=False)["input_ids"]
        return [min(len(one), limit) for one in ids]

    def token_offsets(self, documents: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Each document's tokens alone, as ``(start, end)`` characters."""
        with self._lock:
            return token_offsets(self._loaded(), documents)
