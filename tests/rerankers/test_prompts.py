"""Prompt formats: rendering, the query/document split, validation, and formats derived from chat templates."""

from __future__ import annotations

import pytest

from milvus_rerank.rerankers.prompts import (
    PROMPT_FORMATS,
    QWEN3,
    PromptFormat,
    RenderedPrompts,
    get_prompt_format,
    prompt_format_from_chat_template,
)

# The Qwen3-Reranker model card's reference prompt, written out by hand as its code builds it.
QWEN3_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
QWEN3_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
QWEN3_DEFAULT = "Given a web search query, retrieve relevant passages that answer the query"


def model_card_prompt(query: str, document: str, instruction: str = QWEN3_DEFAULT) -> str:
    return f"{QWEN3_PREFIX}<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}{QWEN3_SUFFIX}"


def test_qwen3_renders_the_model_card_prompt_with_the_default_instruction() -> None:
    rendered = QWEN3.render("what is milvus?", ["A vector database.", "Bananas."])
    assert rendered.prompts == [
        model_card_prompt("what is milvus?", "A vector database."),
        model_card_prompt("what is milvus?", "Bananas."),
    ]
    assert QWEN3.default_instruction == QWEN3_DEFAULT
    assert (QWEN3.true_token, QWEN3.false_token) == ("yes", "no")


def test_qwen3_split_is_the_query_part_then_the_document_parts() -> None:
    rendered = QWEN3.render("q", ["d1", "d2"], instruction="Find claims")
    assert rendered == RenderedPrompts(
        query=f"{QWEN3_PREFIX}<Instruct>: Find claims\n<Query>: q\n",
        documents=(f"<Document>: d1{QWEN3_SUFFIX}", f"<Document>: d2{QWEN3_SUFFIX}"),
    )
    assert rendered.prompts[1] == model_card_prompt("q", "d2", "Find claims")
    assert QWEN3.document_prefix == "<Document>: "
    assert QWEN3.document_suffix == QWEN3_SUFFIX


def test_placeholders_are_replaced_once_and_other_braces_stay() -> None:
    fmt = PromptFormat('{"q": "{query}"} {x}\n', "D: {document} {query-like}")
    rendered = fmt.render("find {document}", ["{query} and {instruction}"])
    assert rendered.query == '{"q": "find {document}"} {x}\n'
    assert rendered.documents == ("D: {query} and {instruction} {query-like}",)


def test_user_template_with_its_own_default_instruction() -> None:
    fmt = PromptFormat("Task: {instruction}\nQ: {query}\n", "Doc: {document}\nAnswer:", default_instruction="Rank")
    assert fmt.takes_instruction
    assert fmt.render_query("x") == "Task: Rank\nQ: x\n"
    assert fmt.render_query("x", instruction="") == "Task: \nQ: x\n"
    assert fmt.render_query("x", instruction="Judge") == "Task: Judge\nQ: x\n"


def test_an_instruction_a_format_cannot_place_is_refused() -> None:
    fmt = PromptFormat("Q: {query}\n", "D: {document}")
    assert not fmt.takes_instruction
    with pytest.raises(ValueError, match="no \\{instruction\\} placeholder"):
        fmt.render_query("x", instruction="Judge")
    needs = PromptFormat("{instruction} {query}", "{document}", name="mine")
    with pytest.raises(ValueError, match="'mine' needs an instruction"):
        needs.render_query("x")


@pytest.mark.parametrize(
    ("query_template", "document_template", "message"),
    [
        ("Q:", "D: {document}", "must hold the placeholder \\{query\\}"),
        ("Q: {query} {document}", "D: {document}", "must not hold \\{document\\}"),
        ("Q: {query}", "D:", "exactly once"),
        ("Q: {query}", "D: {document} {document}", "exactly once"),
        ("Q: {query}", "D: {document} {query}", "exactly once"),
        ("Q: {query}", "{instruction} {document}", "exactly once"),
    ],
)
def test_templates_are_checked_at_construction(query_template: str, document_template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PromptFormat(query_template, document_template)


def test_other_fields_are_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="no \\{instruction\\} placeholder"):
        PromptFormat("{query}", "{document}", default_instruction="x")
    with pytest.raises(ValueError, match="true_token"):
        PromptFormat("{query}", "{document}", true_token="")
    with pytest.raises(ValueError, match="false_token"):
        PromptFormat("{query}", "{document}", false_token="")
    with pytest.raises(TypeError, match="query_template must be a str"):
        PromptFormat(None, "{document}")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="false_token must be a str or None"):
        PromptFormat("{query}", "{document}", false_token=0)  # type: ignore[arg-type]


def test_rendering_checks_types() -> None:
    with pytest.raises(TypeError, match="query must be a str"):
        QWEN3.render_query(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="instruction must be a str"):
        QWEN3.render_query("q", instruction=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="document must be a str"):
        QWEN3.render("q", ["ok", b"bytes"])  # type: ignore[list-item]


def test_formats_are_found_by_name_or_passed_through() -> None:
    assert get_prompt_format("qwen3") is QWEN3
    assert get_prompt_format(" Qwen3 ") is QWEN3
    mine = PromptFormat("{query}", "{document}")
    assert get_prompt_format(mine) is mine
    assert dict(PROMPT_FORMATS) == {"qwen3": QWEN3}
    with pytest.raises(ValueError, match="unknown prompt_format 'qwen9'; use one of 'qwen3'"):
        get_prompt_format("qwen9")
    with pytest.raises(TypeError, match="prompt_format must be"):
        get_prompt_format(3)  # type: ignore[arg-type]


# Chat templates as sentence-transformers renders them: a system message (the instruction) when given, then
# one "query" and one "document" message. These renderers stand in for a tokenizer's Jinja template.
def reranker_template(messages: list[dict[str, str]]) -> str:
    roles = {message["role"]: message["content"] for message in messages}
    instruction = roles.get("system", QWEN3_DEFAULT)
    return model_card_prompt(roles["query"], roles["document"], instruction)


def test_a_reranker_chat_template_becomes_the_same_prompts() -> None:
    for instruction in (None, "Find the claim"):
        fmt = prompt_format_from_chat_template(reranker_template, instruction=instruction)
        rendered = fmt.render("what is milvus?", ["A vector database.", " spaced \n"])
        assert rendered.prompts == [
            reranker_template(
                ([{"role": "system", "content": instruction}] if instruction is not None else [])
                + [{"role": "query", "content": "what is milvus?"}, {"role": "document", "content": document}]
            )
            for document in ("A vector database.", " spaced \n")
        ]
        assert rendered.query.endswith("<Query>: what is milvus?\n<Document>: ")
        assert not fmt.takes_instruction
    fmt = prompt_format_from_chat_template(reranker_template, true_token="1", false_token=None)
    assert (fmt.true_token, fmt.false_token) == ("1", None)


def test_chat_templates_that_cannot_be_split_are_refused_with_advice() -> None:
    def user_assistant(messages: list[dict[str, str]]) -> str:
        return "".join(f"<{m['role']}>{m['content']}" for m in messages if m["role"] in ("user", "assistant"))

    def document_first(messages: list[dict[str, str]]) -> str:
        roles = {m["role"]: m["content"] for m in messages}
        return f"D: {roles['document']} Q: {roles['query']}"

    def trimming(messages: list[dict[str, str]]) -> str:
        roles = {m["role"]: m["content"].strip() for m in messages}
        return f"Q: {roles['query']}\nD: {roles['document']}\nA:"

    with pytest.raises(ValueError, match="prompt_format='qwen3'"):
        prompt_format_from_chat_template(user_assistant)
    with pytest.raises(ValueError, match="document before the query"):
        prompt_format_from_chat_template(document_first)
    with pytest.raises(ValueError, match="changes the query or document text"):
        prompt_format_from_chat_template(trimming)
