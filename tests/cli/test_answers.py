"""The demo's answers: the LLM prompt, the extractive answer, and generate_answer with a chat endpoint on 127.0.0.1."""

from __future__ import annotations

import pytest
from helpers import ChatServer, demo_parser

from milvus_rerank import MilvusRerankError
from milvus_rerank.cli.answers import build_prompt, extractive_answer, generate_answer
from milvus_rerank.cli.options import (
    LLM_API_KEY_ENV,
    LLM_URL_ENV,
)

PASSAGES = [
    (
        "The dome must be closed when gusts exceed 20 metres per second. Observers may not overrule it.",
        "handbook/operations.md",
    ),
    ("The roll-off roof is closed when gusts exceed 14 metres per second.", "handbook/teaching.md"),
    ("Breakfast is served until 11:00.", "handbook/admin.md"),
]


def test_build_prompt_numbers_passages_and_asks_for_citations() -> None:
    prompt = build_prompt("  When does the dome close? ", [text for text, _ in PASSAGES])
    assert f"[1] {PASSAGES[0][0]}" in prompt
    assert f"[3] {PASSAGES[2][0]}" in prompt
    assert prompt.index("[1]") < prompt.index("[2] The roll-off") < prompt.index("[3] Breakfast")
    assert "Cite" in prompt
    assert prompt.endswith("Question: When does the dome close?\nAnswer:")


def test_extractive_answer_quotes_and_cites_and_says_it_is_extractive() -> None:
    answer = extractive_answer("When must the dome be closed because of gusts?", PASSAGES)
    lines = answer.splitlines()
    assert lines[0].startswith("Extractive answer")
    assert "no LLM" in lines[0]
    assert lines[1] == '"The dome must be closed when gusts exceed 20 metres per second." [1]'
    assert lines[-1] == ("Sources: [1] handbook/operations.md; [2] handbook/teaching.md; [3] handbook/admin.md")
    assert "Breakfast" not in answer


def test_extractive_answer_prefers_the_better_ranked_passage_on_equal_overlap() -> None:
    passages = [("Lunch is at noon.", "b.md"), ("Lunch is at noon.", "a.md")]
    answer = extractive_answer("When is lunch?", passages)
    assert '"Lunch is at noon." [1]' in answer
    assert "[2]" not in answer.splitlines()[1]


def test_extractive_answer_cites_the_right_passage_number() -> None:
    answer = extractive_answer("When is breakfast served?", PASSAGES)
    assert '"Breakfast is served until 11:00." [3]' in answer


def test_extractive_answer_without_matching_text_says_so() -> None:
    answer = extractive_answer("Quantum chromodynamics?", PASSAGES)
    assert answer.startswith("Extractive answer")
    assert "nothing to quote" in answer
    assert "nothing to quote" in extractive_answer("anything", [])


def test_generate_answer_uses_the_endpoint_and_the_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LLM_API_KEY_ENV, "sk-env")
    with ChatServer(lambda request: f"The answer [1]. (model={request.body.get('model')})") as server:
        args = demo_parser().parse_args(["--llm-endpoint", server.url, "--llm-model", "tiny-llm"])
        answer = generate_answer(args, "When does the dome close?", PASSAGES)
    assert answer == "The answer [1]. (model=tiny-llm)"
    (request,) = server.requests
    assert request.headers["Authorization"] == "Bearer sk-env"
    assert request.prompt == build_prompt("When does the dome close?", [text for text, _ in PASSAGES])


def test_generate_answer_without_endpoint_is_extractive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LLM_URL_ENV, raising=False)
    args = demo_parser().parse_args([])
    answer = generate_answer(args, "When is breakfast served?", PASSAGES)
    assert answer == extractive_answer("When is breakfast served?", PASSAGES)


def test_generate_answer_does_not_fall_back_silently() -> None:
    with ChatServer(lambda request: (500, {"error": {"message": "engine crashed"}})) as server:
        args = demo_parser().parse_args(["--llm-endpoint", server.url])
        with pytest.raises(MilvusRerankError, match="HTTP 500: engine crashed"):
            generate_answer(args, "q?", PASSAGES)
