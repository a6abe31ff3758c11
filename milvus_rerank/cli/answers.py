"""The demo's answers: the prompt for the LLM, and an offline extractive answer when there is no LLM.

:func:`generate_answer` calls an OpenAI-compatible chat endpoint (:func:`~milvus_rerank.cli.chat.chat_answer`
on :func:`build_prompt`) when one is configured and otherwise answers, saying so, with
:func:`extractive_answer`. An endpoint that fails is an error, never a silent fallback.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence

from milvus_rerank.cli.chat import chat_answer
from milvus_rerank.cli.options import LLM_API_KEY_ENV, api_key

__all__ = ["build_prompt", "extractive_answer", "generate_answer"]


def build_prompt(question: str, passages: Sequence[str]) -> str:
    """The user prompt for the LLM: numbered passages, then the question.

    Args:
        question: The user's question.
        passages: Reranked passage texts, best first; they are numbered ``[1]``, ``[2]``...

    Returns:
        A prompt asking for an answer grounded in the passages, citing them by number.
    """
    numbered = "\n\n".join(f"[{number}] {text.strip()}" for number, text in enumerate(passages, start=1))
    return (
        "Answer the question using only the numbered passages below. Cite the passages you use as [1], [2], "
        "and so on. If the passages do not contain the answer, say that you do not know.\n\n"
        f"Passages:\n{numbered}\n\nQuestion: {question.strip()}\nAnswer:"
    )


_STOP_WORDS = frozenset(
    """a about after all an and any are as at be before by can could do does for from has have how i if in into is
    it its may me must my no not of on or our should so than that the their them then there these they this to
    up was we what when where which who why will with would you your""".split()
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def _terms(text: str) -> set[str]:
    # A crude stem (the first five letters) lets "closes" meet "closed" and "observations" meet "observe".
    return {word[:5] for word in re.findall(r"[a-z0-9]+", text.lower()) if word not in _STOP_WORDS}


def extractive_answer(question: str, passages: Sequence[tuple[str, str]]) -> str:
    """An offline stand-in for the LLM: quote the sentences that best match the question, with citations.

    Sentences are scored by the question words they share, discounted by the passage's rank, so
    the reranker's order decides between equally good sentences. The answer says plainly that
    it is extractive, quotes one or two sentences verbatim with ``[n]`` citations, and lists the
    sources of all passages.

    Args:
        question: The user's question.
        passages: ``(text, source)`` pairs, best first; ``[n]`` cites the n-th pair.

    Returns:
        The answer text (several lines).
    """
    header = "Extractive answer (no LLM configured: the best-matching sentences of the passages, quoted verbatim):"
    wanted = _terms(question)
    scored: list[tuple[float, int, int, str]] = []
    for number, (text, _source) in enumerate(passages, start=1):
        for position, sentence in enumerate(_SENTENCE_END.split(text.strip())):
            overlap = len(wanted & _terms(sentence))
            if overlap:
                scored.append((overlap / (1.0 + 0.25 * (number - 1)), number, position, sentence.strip()))
    if not scored:
        return f"{header}\nNo passage shares a word with the question, so there is nothing to quote."
    scored.sort(key=lambda item: (-item[0], item[1], item[2]))
    best = scored[0][0]
    chosen = [item for item in scored[:2] if item[0] >= 0.6 * best]
    chosen.sort(key=lambda item: (item[1], item[2]))
    quotes = [f'"{sentence}" [{number}]' for _, number, _, sentence in chosen]
    sources = "; ".join(f"[{number}] {source}" for number, (_, source) in enumerate(passages, start=1))
    return "\n".join([header, *quotes, f"Sources: {sources}"])


def generate_answer(args: argparse.Namespace, question: str, passages: Sequence[tuple[str, str]]) -> str:
    """Answer ``question`` from reranked passages: with the LLM endpoint when configured, else extractively.

    Args:
        args: Parsed :func:`~milvus_rerank.cli.options.add_demo_arguments` options (``llm_endpoint``,
            ``llm_model``).
        question: The user's question.
        passages: ``(text, source)`` pairs, best first.

    Returns:
        The LLM's answer, or :func:`extractive_answer` when no endpoint is set.

    Raises:
        MilvusRerankError: The LLM endpoint failed (see :func:`chat_answer`). There is no silent
            fallback to the extractive answer.
    """
    if not getattr(args, "llm_endpoint", None):
        return extractive_answer(question, passages)
    prompt = build_prompt(question, [text for text, _ in passages])
    key = api_key(LLM_API_KEY_ENV)
    return chat_answer(args.llm_endpoint, getattr(args, "llm_model", None), prompt, api_key=key)
