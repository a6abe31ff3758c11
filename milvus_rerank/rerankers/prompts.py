"""Prompt formats of LLM rerankers: how a query and a document become the prompt a causal LM scores.

Without its prompt an LLM reranker ranks at random. The local and the HTTP rerankers share these
formats, so the same weights give the same scores on both paths. A prompt is split at the document
into a query part (the same for every document of a call) and a document part; the split and the
template placeholders are described in docs/llm-rerankers.md ("Your own prompt format").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "PROMPT_FORMATS",
    "QWEN3",
    "PromptFormat",
    "RenderedPrompts",
    "check_prompt_options",
    "get_prompt_format",
    "prompt_format_from_chat_template",
]

_PLACEHOLDER = re.compile(r"\{(query|instruction|document)\}")


def _placeholders(template: str) -> list[str]:
    return _PLACEHOLDER.findall(template)


def _fill(template: str, values: Mapping[str, str]) -> str:
    # One pass over the template only: substituted text is never scanned for placeholders again.
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


@dataclass(frozen=True)
class RenderedPrompts:
    """One call's prompts, split into the shared query part and one document part per document.

    Attributes:
        query: The query part: the text before the document, the same for every document.
        documents: The document parts, in input order.
    """

    query: str
    documents: tuple[str, ...]

    @property
    def prompts(self) -> list[str]:
        """The full prompts, ``query + document`` for each document part, in input order."""
        return [self.query + document for document in self.documents]


@dataclass(frozen=True)
class PromptFormat:
    r"""A prompt format for LLM rerankers: a query template, a document template and the scored tokens.

    Example:
        >>> fmt = PromptFormat("Query: {query}\n", "Document: {document}\nRelevant:", true_token=" yes")
        >>> fmt.render("what is milvus?", ["A vector database."]).prompts
        ['Query: what is milvus?\nDocument: A vector database.\nRelevant:']

    Attributes:
        query_template: The query part; holds ``{query}`` and, optionally, ``{instruction}``.
        document_template: The document part; holds ``{document}`` exactly once and nothing else.
        default_instruction: The instruction used when a call gives none (only with ``{instruction}``).
        true_token: The answer token whose logit scores relevance (e.g. ``"yes"``).
        false_token: The opposing token (e.g. ``"no"``): the score is ``logit(true) - logit(false)``;
            ``None`` scores ``logit(true)`` alone.
        name: The format's registered name (``"qwen3"``), or ``None`` for a user's own templates.

    Raises:
        TypeError: A field has the wrong type.
        ValueError: A template lacks its placeholder, holds one of the other template's, or holds
            ``{document}`` more than once; or ``default_instruction`` is set without ``{instruction}``.
    """

    query_template: str
    document_template: str
    default_instruction: str | None = None
    true_token: str = "yes"
    false_token: str | None = "no"
    name: str | None = None

    def __post_init__(self) -> None:
        for field, value, optional in (
            ("query_template", self.query_template, False),
            ("document_template", self.document_template, False),
            ("default_instruction", self.default_instruction, True),
            ("true_token", self.true_token, False),
            ("false_token", self.false_token, True),
            ("name", self.name, True),
        ):
            if not isinstance(value, str) and not (optional and value is None):
                expected = "a str or None" if optional else "a str"
                raise TypeError(f"PromptFormat.{field} must be {expected}, got {type(value).__name__}")
        query_fields = _placeholders(self.query_template)
        if "query" not in query_fields:
            raise ValueError(
                f"query_template must hold the placeholder {{query}}; got {self.query_template!r}. "
                "Write e.g. 'Query: {query}\\n'."
            )
        if "document" in query_fields:
            raise ValueError(
                "query_template must not hold {document}: the document goes in document_template, after the "
                "query part, so that the query part can be shared by every document"
            )
        document_fields = _placeholders(self.document_template)
        if document_fields != ["document"]:
            raise ValueError(
                "document_template must hold the placeholder {document} exactly once and neither {query} nor "
                f"{{instruction}} (they belong in query_template); got {self.document_template!r}"
            )
        if self.default_instruction is not None and "instruction" not in query_fields:
            raise ValueError("default_instruction is set, but query_template has no {instruction} placeholder")
        if not self.true_token:
            raise ValueError("true_token must be a non-empty str, e.g. 'yes'")
        if self.false_token == "":
            raise ValueError("false_token must be a non-empty str (e.g. 'no') or None")

    @property
    def takes_instruction(self) -> bool:
        """Whether the query template has an ``{instruction}`` placeholder."""
        return "instruction" in _placeholders(self.query_template)

    @property
    def document_prefix(self) -> str:
        """The fixed text of the document part before the document (e.g. ``"<Document>: "``)."""
        return self.document_template.split("{document}", 1)[0]

    @property
    def document_suffix(self) -> str:
        """The fixed text after the document, which a truncated prompt must keep (the answer cue)."""
        return self.document_template.split("{document}", 1)[1]

    def render_query(self, query: str, *, instruction: str | None = None) -> str:
        """The query part for ``query``: the shared text before every document.

        Args:
            query: The search query.
            instruction: The task description; ``None`` uses :attr:`default_instruction`.

        Raises:
            TypeError: ``query`` or ``instruction`` is not a str.
            ValueError: An instruction is given to a format without ``{instruction}``, or the format
                needs one and has no default.
        """
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        if instruction is not None and not isinstance(instruction, str):
            raise TypeError(f"instruction must be a str or None, got {type(instruction).__name__}")
        if not self.takes_instruction:
            if instruction is not None:
                raise ValueError(
                    f"the prompt format {self._label()} has no {{instruction}} placeholder, so it cannot use "
                    "instruction=...; put the task description in its query template instead"
                )
            return _fill(self.query_template, {"query": query})
        if instruction is None:
            instruction = self.default_instruction
        if instruction is None:
            raise ValueError(
                f"the prompt format {self._label()} needs an instruction and has no default; pass instruction=..."
            )
        return _fill(self.query_template, {"query": query, "instruction": instruction})

    def render_document(self, document: str) -> str:
        """The document part for ``document``: the document and the fixed text around it.

        Raises:
            TypeError: ``document`` is not a str.
        """
        if not isinstance(document, str):
            raise TypeError(f"document must be a str, got {type(document).__name__}")
        return _fill(self.document_template, {"document": document})

    def render(self, query: str, documents: Sequence[str], *, instruction: str | None = None) -> RenderedPrompts:
        """Render one call: the query part once and a document part per document.

        Args:
            query: The search query.
            documents: The candidate texts.
            instruction: The task description; ``None`` uses :attr:`default_instruction`.

        Returns:
            The split prompts; :attr:`RenderedPrompts.prompts` joins them.

        Raises:
            TypeError: ``query``, ``instruction`` or a document has the wrong type.
            ValueError: See :meth:`render_query`.
        """
        return RenderedPrompts(
            self.render_query(query, instruction=instruction),
            tuple(self.render_document(document) for document in documents),
        )

    def _label(self) -> str:
        return repr(self.name) if self.name else "given"


QWEN3 = PromptFormat(
    query_template=(
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
        'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
        "<Instruct>: {instruction}\n<Query>: {query}\n"
    ),
    document_template="<Document>: {document}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    default_instruction="Given a web search query, retrieve relevant passages that answer the query",
    true_token="yes",
    false_token="no",
    name="qwen3",
)
"""The official Qwen3-Reranker prompt (0.6B, 4B, 8B): score ``sigmoid(logit("yes") - logit("no"))``."""

PROMPT_FORMATS: Mapping[str, PromptFormat] = MappingProxyType({QWEN3.name or "qwen3": QWEN3})
"""The named prompt formats, by the name ``prompt_format=`` accepts."""


def get_prompt_format(prompt_format: str | PromptFormat) -> PromptFormat:
    """The :class:`PromptFormat` that ``prompt_format=`` names: a registered name or a format itself.

    Raises:
        TypeError: ``prompt_format`` is neither a str nor a :class:`PromptFormat`.
        ValueError: The name is not registered; the message lists the names.
    """
    if isinstance(prompt_format, PromptFormat):
        return prompt_format
    if not isinstance(prompt_format, str):
        raise TypeError(
            f"prompt_format must be a format name ({', '.join(map(repr, PROMPT_FORMATS))}) or a PromptFormat, "
            f"got {type(prompt_format).__name__}"
        )
    found = PROMPT_FORMATS.get(prompt_format.strip().lower())
    if found is None:
        raise ValueError(
            f"unknown prompt_format {prompt_format!r}; use one of {', '.join(map(repr, PROMPT_FORMATS))}, or "
            "PromptFormat(query_template=..., document_template=...) for your own templates"
        )
    return found


def check_prompt_options(prompt_format: str | PromptFormat | None, *, instruction: str | None) -> PromptFormat | None:
    """Check a reranker's ``prompt_format=`` and ``instruction=`` options together, at construction.

    Args:
        prompt_format: A registered name, a :class:`PromptFormat`, or ``None`` for none.
        instruction: The task description, or ``None`` for the format's (or the model's) default.

    Returns:
        The format ``prompt_format`` stands for, or ``None``.

    Raises:
        TypeError: ``instruction`` is not a str or None, or ``prompt_format`` has the wrong type.
        ValueError: ``instruction`` is blank, the name is not registered, or the format cannot
            place the instruction (or needs one and has no default).
    """
    if instruction is not None:
        if not isinstance(instruction, str):
            raise TypeError(f"instruction must be a str or None, got {type(instruction).__name__}")
        if not instruction.strip():
            raise ValueError("instruction is blank; pass the task description, or None for the model's default")
    if prompt_format is None:
        return None
    found = get_prompt_format(prompt_format)
    # Rendered once now, so that an instruction the format cannot use fails here, not on the first call.
    found.render_query("", instruction=instruction)
    return found


# Markers that no real text contains and that survive a template unchanged (no spaces to trim, nothing
# to escape): where they land in the rendered prompt shows where the template puts query and document.
_QUERY_MARK = "\u2063MRQUERY\u2063"
_DOCUMENT_MARK = "\u2063MRDOCUMENT\u2063"
# A probe with the spaces, newlines and braces a template could alter (trim, escape, substitute).
_PROBE_QUERY = " what is {x}?\n"
_PROBE_DOCUMENT = "\n a {document} b \n"

ChatRenderer = Callable[[list[dict[str, str]]], str]
"""Renders chat messages (``role`` / ``content`` dicts) to the prompt text, e.g. a tokenizer's chat template."""


def prompt_format_from_chat_template(
    render: ChatRenderer,
    *,
    instruction: str | None = None,
    true_token: str = "yes",
    false_token: str | None = "no",
) -> PromptFormat:
    """The prompt format a reranker's chat template renders, with ``instruction`` filled in.

    sentence-transformers renders a (query, document) pair through the model's chat template as the
    messages ``[{"role": "query", ...}, {"role": "document", ...}]``, preceded by a ``system``
    message holding the instruction when one is given. This finds where the template puts the query
    and the document and turns the rendering into a :class:`PromptFormat` (so its query part can be
    shared), then checks that the format renders a probe pair exactly as the template does.

    Args:
        render: Renders messages to text; e.g. ``lambda m: tokenizer.apply_chat_template(m, tokenize=False)``.
        instruction: Sent as the system message; ``None`` sends none (the template's own default applies).
        true_token: The answer token whose logit scores relevance.
        false_token: The opposing token, or ``None``.

    Raises:
        ValueError: The template does not render the query before the document, each exactly once, as
            given (e.g. it ignores the ``query``/``document`` roles, or trims or escapes the texts).
    """

    def messages(query: str, document: str) -> list[dict[str, str]]:
        turns = [{"role": "query", "content": query}, {"role": "document", "content": document}]
        return ([{"role": "system", "content": instruction}] if instruction is not None else []) + turns

    rendered = render(messages(_QUERY_MARK, _DOCUMENT_MARK))
    if rendered.count(_QUERY_MARK) != 1 or rendered.count(_DOCUMENT_MARK) != 1:
        raise ValueError(
            "the chat template does not render one 'query' and one 'document' message (it is probably a plain "
            "chat template for user/assistant turns); pass prompt_format='qwen3' or your own "
            "PromptFormat(query_template=..., document_template=...)"
        )
    split = rendered.index(_DOCUMENT_MARK)
    if rendered.index(_QUERY_MARK) > split:
        raise ValueError(
            "the chat template renders the document before the query, so no query part can be shared; pass "
            "a PromptFormat(query_template=..., document_template=...) with the query first"
        )
    head, tail = rendered[:split], rendered[split + len(_DOCUMENT_MARK) :]
    if _PLACEHOLDER.search(head.replace(_QUERY_MARK, "")) or _PLACEHOLDER.search(tail):
        raise ValueError(
            "the chat template's text holds a literal {query}, {instruction} or {document}; pass a PromptFormat"
        )
    found = PromptFormat(
        query_template=head.replace(_QUERY_MARK, "{query}"),
        document_template="{document}" + tail,
        true_token=true_token,
        false_token=false_token,
    )
    probe = found.render(_PROBE_QUERY, [_PROBE_DOCUMENT]).prompts[0]
    if probe != render(messages(_PROBE_QUERY, _PROBE_DOCUMENT)):
        raise ValueError(
            "the chat template changes the query or document text as it renders them (e.g. trims or escapes "
            "them), so its prompts cannot be split; pass prompt_format='qwen3' or your own PromptFormat"
        )
    return found
