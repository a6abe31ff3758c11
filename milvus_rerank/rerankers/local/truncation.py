"""Cutting texts before they are tokenized, so that a text costs time bounded by ``max_length``, not by its size.

A tokenizer reads the whole text before truncation drops what does not fit: a 10 MB document
took over a minute for the 512 tokens that were kept. A text longer than a character budget is
therefore cut first, and the model sees the same tokens as if it had been tokenized whole:

- the budget allows :data:`CHARS_PER_TOKEN` characters per token for ``max_length`` plus
  :data:`MARGIN_TOKENS` tokens, several times what natural text needs (about 4 characters per
  token in English, 1 to 2 in Chinese or Japanese);
- truncation must still drop the cut's last :data:`MARGIN_TOKENS` tokens or more, because the
  last word, cut mid-way, may tokenize differently from the whole word. This is checked with the
  engine's own tokenization (so it holds for every tokenizer and prompt); where a text was sparser
  than the budget assumed (long runs of whitespace, which tokenizers drop), its cut grows, up to
  the whole text.

The truncation warning therefore still fires: every cut text is still truncated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from milvus_rerank.rerankers.local.engine import ScoringEngine

__all__ = ["CHARS_PER_TOKEN", "MARGIN_TOKENS", "bounded_texts"]

CHARS_PER_TOKEN = 16
"""Characters allowed per token when a text is cut before tokenization (a generous bound)."""

MARGIN_TOKENS = 32
"""Tokens past ``max_length`` that a cut text must still hold, so its ragged end is truncated away."""

_GROWTH = 4  # how much a cut grows when its text held too few tokens


def bounded_texts(
    engine: ScoringEngine, query: str, documents: Sequence[str], *, max_length: int
) -> tuple[str, Sequence[str]]:
    """``query`` and ``documents``, each cut to what truncation to ``max_length`` tokens can keep of it.

    Texts within the character budget come back as they are (and, when all are, the same objects).
    The engine must keep the start of a text when it truncates (it does unless its tokenizer's
    ``truncation_side`` is ``"left"``; do not call this then).
    """
    budget = (max_length + MARGIN_TOKENS) * CHARS_PER_TOKEN
    if len(query) <= budget and all(len(document) <= budget for document in documents):
        return query, documents
    cap = max_length + MARGIN_TOKENS

    # A text reaches the cap alone (beside an empty query or document) only if it holds at least
    # that many tokens, and then no pair or prompt of max_length tokens keeps its last MARGIN_TOKENS.
    def queries_reaching_cap(cut: list[str]) -> list[bool]:
        return [len(engine.encode(text, [""], max_length=cap).input_ids[0]) >= cap for text in cut]

    def documents_reaching_cap(cut: list[str]) -> list[bool]:
        return [len(ids) >= cap for ids in engine.encode("", cut, max_length=cap).input_ids]

    (cut_query,) = _cut([query], budget, queries_reaching_cap)
    return cut_query, _cut(documents, budget, documents_reaching_cap)


def _cut(texts: Sequence[str], budget: int, reaching_cap: Callable[[list[str]], list[bool]]) -> list[str]:
    """Each text over ``budget`` characters cut to its shortest prefix (budget x 4^k) that ``reaching_cap`` accepts."""
    out = list(texts)
    pending = [i for i, text in enumerate(texts) if len(text) > budget]
    size = budget
    while pending:
        for i in pending:
            out[i] = texts[i][:size]
        accepted = reaching_cap([out[i] for i in pending])
        # A text cut to its whole length is the text itself: nothing more to check.
        pending = [i for i, ok in zip(pending, accepted, strict=True) if not ok and len(out[i]) < len(texts[i])]
        size *= _GROWTH
    return out
