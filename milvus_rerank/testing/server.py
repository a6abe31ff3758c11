"""A rerank server on loopback that speaks vLLM, TEI and Cohere v2, with fault injection.

For tests and benchmarks of HTTP rerankers without a GPU server::

    with RerankTestServer(CrossEncoderReranker(path), service_time=0.05) as server:
        reranker = VLLMReranker(server.url)
        server.inject(Fault.rate_limited(retry_after=0))
        reranker.rerank("query", texts)
        server.rerank_requests  # what arrived, with server-side start/end timestamps

Routes: ``POST /rerank`` (vLLM or TEI, by ``flavor``), ``POST /v1/rerank`` and ``POST /v2/rerank``
(vLLM / Cohere), ``GET /v1/models``, ``GET /health``, ``GET /info`` (TEI). Scores come from any
:class:`~milvus_rerank.types.Reranker` (by default a cheap word-overlap scorer), so an HTTP
client can be checked against the same reranker run locally.

Besides wrong answers, the faults include what a hostile or broken server does to a client: a
body (or even the status line and headers) trickled a byte at a time, an error that echoes the
request's headers back (as some proxies do), any status with any headers (a redirect to another
origin, a compressed bomb with ``Content-Encoding``), and a dropped connection.

The server is the standard library's ``ThreadingHTTPServer`` (a thread per connection, HTTP/1.1
keep-alive): no dependency, and concurrent requests really overlap.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Literal

from milvus_rerank.rerankers.contract import check_rerank_args, rank
from milvus_rerank.testing.faults import (
    _ANSWERS_WITHOUT_SCORING,
    Fault,
    _corrupt,
    _fault_reply,
    _json_reply,
    _Reply,
    _tei_batch_body,
    _trickled,
    _vllm_error_body,
)
from milvus_rerank.types import Reranker, RerankResult

__all__ = ["Fault", "RequestRecord", "RerankTestServer", "WordOverlapReranker"]

Flavor = Literal["vllm", "tei"]
ResponseShape = Literal["vllm", "cohere", "infinity"]

_RERANK_ROUTES = ("/rerank", "/v1/rerank", "/v2/rerank")


class WordOverlapReranker:
    """A cheap, deterministic scorer: the share of query words found in the document.

    Scores are in [0, 1]; a tiny length term breaks most ties. Good for benchmarks of the HTTP
    path, where scoring must cost next to nothing.
    """

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        """Score by word overlap and return results best first."""
        documents = check_rerank_args(query, documents, top_n)
        words = set(re.findall(r"\w+", query.lower()))
        results = []
        for index, document in enumerate(documents):
            found = set(re.findall(r"\w+", document.lower()))
            overlap = len(words & found) / len(words) if words else 0.0
            results.append(RerankResult(index, overlap + 1e-6 / (1 + len(document))))
        return rank(results, top_n)

    async def arerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        """Same as :meth:`rerank` (it does no I/O)."""
        return self.rerank(query, documents, top_n=top_n)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it.

    Attributes:
        method: ``GET`` or ``POST``.
        path: The request path.
        headers: Request headers (as sent; tests check the ``Authorization`` header with them).
        body: The decoded JSON body, or ``None``.
        status: The status answered (0 when the connection was dropped).
        start: ``time.monotonic()`` when the request had been read.
        end: ``time.monotonic()`` just before the answer was written.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int
    start: float
    end: float

    @property
    def n_documents(self) -> int:
        """Documents (vLLM/Cohere) or texts (TEI) in the request body."""
        if not isinstance(self.body, dict):
            return 0
        documents = self.body.get("documents", self.body.get("texts"))
        return len(documents) if isinstance(documents, list) else 0


@dataclass
class _Pending:
    fault: Fault
    times: int
    path: str | None


class RerankTestServer:
    """A rerank server on ``127.0.0.1`` and an ephemeral port, for tests and benchmarks.

    Use it as a context manager (or call :meth:`start` / :meth:`stop`).
    """

    answer_routes: ClassVar[tuple[str, ...]] = _RERANK_ROUTES
    """The POST routes that answer (faults without a path apply to them); another protocol's server sets its own."""

    def __init__(
        self,
        reranker: Reranker | None = None,
        *,
        flavor: Flavor = "vllm",
        model_name: str = "tiny-reranker",
        api_key: str | None = None,
        service_time: float = 0.0,
        max_client_batch_size: int = 32,
        max_model_len: int = 512,
        response_shape: ResponseShape = "vllm",
        error_generation: Literal["old", "new"] = "new",
        tei_batch_limit_status: int = 422,
        raw_reranker: Reranker | None = None,
        require_model: bool = False,
        discovery_time: float = 0.0,
    ) -> None:
        """Configure the server; it listens once started.

        Args:
            reranker: Scores the documents; default :class:`WordOverlapReranker`.
            flavor: What ``POST /rerank`` speaks: ``"vllm"`` (``documents``) or ``"tei"`` (``texts``,
                a bare array answer, the batch limit enforced). ``/v1/rerank`` and ``/v2/rerank``
                always speak vLLM / Cohere.
            model_name: The served model name (``/v1/models``; other names in requests get a 404).
            api_key: When set, every route but ``/health`` wants ``Authorization: Bearer <key>``.
            service_time: Seconds every rerank request takes on top of scoring, slept outside any
                lock, so concurrent requests overlap.
            max_client_batch_size: TEI's limit (``/info`` reports it; more texts are refused).
            max_model_len: Reported by ``/v1/models``.
            response_shape: Shape of vLLM-flavour answers: ``"vllm"`` (also Jina's), ``"cohere"``
                or ``"infinity"``.
            error_generation: vLLM error bodies: ``"old"`` (flat) or ``"new"`` (nested).
            tei_batch_limit_status: 413 (TEI up to 1.8) or 422 (1.9+).
            raw_reranker: Scores requests that ask for raw scores; default ``reranker``.
            require_model: Refuse requests without ``model`` (as vLLM 0.7.x does).
            discovery_time: Seconds every ``GET /v1/models`` and ``GET /info`` takes, so that
                clients asking at the same moment overlap.
        """
        self.reranker: Reranker = reranker if reranker is not None else WordOverlapReranker()
        self.raw_reranker = raw_reranker
        self.flavor = flavor
        self.model_name = model_name
        self.api_key = api_key
        self.service_time = service_time
        self.max_client_batch_size = max_client_batch_size
        self.max_model_len = max_model_len
        self.response_shape = response_shape
        self.error_generation = error_generation
        self.tei_batch_limit_status = tei_batch_limit_status
        self.require_model = require_model
        self.discovery_time = discovery_time
        self._log: list[RequestRecord] = []
        self._arrived = 0
        self._faults: list[_Pending] = []
        self._lock = threading.Lock()
        self._score_lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> RerankTestServer:
        """Bind to ``127.0.0.1`` on a free port and serve in a background thread."""
        if self._httpd is not None:
            return self
        handler = type("Handler", (_Handler,), {"owner": self})
        httpd = _Server(("127.0.0.1", 0), handler)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="rerank-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> RerankTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._httpd is None:
            raise RuntimeError("the server is not started; use it as a context manager or call start()")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    # -- faults and log -------------------------------------------------------------------------

    def inject(self, fault: Fault, *, times: int = 1, path: str | None = None) -> None:
        """Show ``fault`` on the next ``times`` rerank requests, or on requests to ``path`` when given.

        With a ``path``, the fault applies to any request to it, ``GET /v1/models`` and
        ``GET /info`` included. Faults apply in the order injected; each request takes at most one.
        """
        with self._lock:
            self._faults.append(_Pending(fault, times, path))

    def clear(self) -> None:
        """Forget pending faults and the request log."""
        with self._lock:
            self._faults.clear()
            self._log.clear()
            self._arrived = 0

    @property
    def pending_faults(self) -> int:
        """Fault uses not consumed yet."""
        with self._lock:
            return sum(pending.times for pending in self._faults)

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request so far, in arrival order (a copy)."""
        with self._lock:
            return sorted(self._log, key=lambda record: record.start)

    @property
    def rerank_requests(self) -> list[RequestRecord]:
        """The rerank requests so far, in arrival order."""
        return [record for record in self.requests if record.method == "POST" and record.path in self.answer_routes]

    def max_in_flight(self) -> int:
        """The most rerank requests the server was handling at one moment (from its timestamps)."""
        events = []
        for record in self.rerank_requests:
            events += [(record.start, 1), (record.end, -1)]
        in_flight = peak = 0
        for _, step in sorted(events, key=lambda event: (event[0], event[1])):
            in_flight += step
            peak = max(peak, in_flight)
        return peak

    @property
    def rerank_arrivals(self) -> int:
        """Rerank requests received so far, counting those still being served (and not logged yet)."""
        with self._lock:
            return self._arrived

    def _take_fault(self, method: str, path: str) -> Fault | None:
        rerank = method == "POST" and path in self.answer_routes
        with self._lock:
            if rerank:
                self._arrived += 1
            for pending in self._faults:
                if (pending.path is None and rerank) or pending.path == path:
                    pending.times -= 1
                    if pending.times <= 0:
                        self._faults.remove(pending)
                    return pending.fault
        return None

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)

    # -- request handling (pure but for the scoring and the sleep) ------------------------------

    def _authorized(self, headers: dict[str, str]) -> bool:
        return self.api_key is None or headers.get("authorization") == f"Bearer {self.api_key}"

    def _get(self, path: str, headers: dict[str, str], fault: Fault | None) -> _Reply | None:
        if fault is not None and fault.kind in _ANSWERS_WITHOUT_SCORING:
            return _fault_reply(fault, headers)
        if path == "/health":
            return _Reply(200, b"")
        if not self._authorized(headers):
            return self._unauthorized()
        if path in ("/v1/models", "/info"):
            time.sleep(self.discovery_time)
        return _trickled(self._get_listing(path), fault)

    def _get_listing(self, path: str) -> _Reply:
        if path == "/v1/models":
            model = {"id": self.model_name, "object": "model", "owned_by": "vllm", "max_model_len": self.max_model_len}
            return _json_reply(200, {"object": "list", "data": [model]})
        if path == "/info":
            return _json_reply(
                200,
                {
                    "model_id": self.model_name,
                    "model_type": {"reranker": {"id2label": {"0": "LABEL_0"}}},
                    "max_client_batch_size": self.max_client_batch_size,
                    "max_input_length": self.max_model_len,
                    "version": "1.9.0",
                },
            )
        return self._error(404, f"Not Found: {path}")

    def _unauthorized(self) -> _Reply:
        if self.flavor == "tei":
            return _Reply(401, b"")
        return _json_reply(401, {"error": "Unauthorized"})

    def _error(self, status: int, message: str) -> _Reply:
        return _json_reply(status, _vllm_error_body(status, message, self.error_generation))

    def _post(self, path: str, headers: dict[str, str], body: Any, fault: Fault | None) -> _Reply | None:
        if path not in _RERANK_ROUTES:
            return self._error(404, f"Not Found: {path}")
        if fault is not None and fault.kind in _ANSWERS_WITHOUT_SCORING:
            return _fault_reply(fault, headers)
        if not self._authorized(headers):
            return self._unauthorized()
        reply = self._rerank(path, body)
        if fault is not None and fault.kind in ("trickle", "trickle_headers"):
            return _trickled(reply, fault)
        if fault is not None and reply.status == 200:
            reply = _corrupt(reply, fault)
        return reply

    def _rerank(self, path: str, body: Any) -> _Reply:
        """The answer to an authorized rerank request (a subclass speaking another protocol replaces it)."""
        tei = self.flavor == "tei" and path == "/rerank"
        if not isinstance(body, dict):
            return self._tei_error(422, "invalid JSON body") if tei else self._error(400, "Invalid JSON body")
        return self._rerank_tei(body) if tei else self._rerank_vllm(body)

    def _tei_error(self, status: int, message: str, error_type: str = "Validation") -> _Reply:
        return _json_reply(status, {"error": message, "error_type": error_type})

    def _score(self, query: str, documents: list[str], raw: bool) -> list[RerankResult]:
        time.sleep(self.service_time)
        reranker = self.raw_reranker if raw and self.raw_reranker is not None else self.reranker
        with self._score_lock:  # local models are not made for concurrent callers
            return reranker.rerank(query, documents)

    def _rerank_vllm(self, body: dict[str, Any]) -> _Reply:
        query, documents, top_n = body.get("query"), body.get("documents"), body.get("top_n")
        model = body.get("model")
        if model is None and self.require_model:
            return self._error(400, "Field required: model")
        if model is not None and model != self.model_name:
            return self._error(404, f"The model `{model}` does not exist.")
        if not isinstance(query, str):
            return self._error(400, "query must be a string")
        if not isinstance(documents, list) or not all(isinstance(document, str) for document in documents):
            return self._error(400, "documents must be a list of strings")
        if not documents:
            return self._error(400, "documents must not be empty")
        if top_n is not None and (not isinstance(top_n, int) or top_n < 0):
            return self._error(400, "top_n must be a non-negative integer")
        raw = body.get("use_activation") is False or body.get("activation") is False
        results = self._score(query, documents, raw)
        if top_n:
            results = results[:top_n]
        return _json_reply(200, self._shape(results, documents))

    def _shape(self, results: list[RerankResult], documents: list[str]) -> dict[str, Any]:
        tokens = sum(len(document.split()) for document in documents)
        if self.response_shape == "cohere":
            items: list[dict[str, Any]] = [{"index": r.index, "relevance_score": r.score} for r in results]
            return {"id": str(uuid.uuid4()), "results": items, "meta": {"billed_units": {"search_units": 1}}}
        if self.response_shape == "infinity":
            items = [{"relevance_score": r.score, "index": r.index, "document": None} for r in results]
            return {"object": "rerank", "model": self.model_name, "results": items, "usage": {"total_tokens": tokens}}
        items = [
            {"index": r.index, "document": {"text": documents[r.index]}, "relevance_score": r.score} for r in results
        ]
        return {
            "id": f"rerank-{uuid.uuid4().hex}",
            "model": self.model_name,
            "usage": {"total_tokens": tokens},
            "results": items,
        }

    def _rerank_tei(self, body: dict[str, Any]) -> _Reply:
        query, texts = body.get("query"), body.get("texts")
        if not isinstance(query, str):
            return self._tei_error(422, "query must be a string")
        if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
            return self._tei_error(422, "texts must be a list of strings")
        if not texts:
            return self._tei_error(400, "`texts` cannot be empty", "Empty")
        if len(texts) > self.max_client_batch_size:
            return _json_reply(self.tei_batch_limit_status, _tei_batch_body(len(texts), self.max_client_batch_size))
        results = self._score(query, texts, bool(body.get("raw_scores")))
        items: list[dict[str, Any]] = [{"index": r.index, "score": r.score} for r in results]
        if body.get("return_text"):
            for item in items:
                item["text"] = texts[item["index"]]
        return _json_reply(200, items)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that went away (timeouts in tests); report anything else."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: RerankTestServer
    protocol_version = "HTTP/1.1"
    server_version = "RerankTestServer/1.0"
    # Headers and body go out in two writes; with Nagle on, the body would wait for the client's
    # delayed ACK (~40 ms on Linux) and every request would look 40 ms slower than it is.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests read the request log instead."""

    def do_GET(self) -> None:
        """Answer ``/health``, ``/v1/models`` and ``/info``."""
        start = time.monotonic()
        headers = {key.lower(): value for key, value in self.headers.items()}
        fault = self.owner._take_fault("GET", self.path)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.seconds)
            fault = None
        reply = self.owner._get(self.path, headers, fault)
        self._finish("GET", headers, None, reply, start)

    def do_POST(self) -> None:
        """Answer the rerank routes."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        start = time.monotonic()
        headers = {key.lower(): value for key, value in self.headers.items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        fault = self.owner._take_fault("POST", self.path)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.seconds)
            fault = None
        reply = self.owner._post(self.path, headers, body, fault)
        self._finish("POST", headers, body, reply, start)

    def _finish(self, method: str, headers: dict[str, str], body: Any, reply: _Reply | None, start: float) -> None:
        end = time.monotonic()
        status = 0 if reply is None else reply.status
        self.owner._record(RequestRecord(method, self.path, headers, body, status, start, end))
        if reply is None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if reply.trickle:
            self._trickle(reply)
            return
        self.send_response(reply.status, reply.reason)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def _trickle(self, reply: _Reply) -> None:
        """Write the answer a byte at a time (the head at once, unless ``trickle_headers``)."""
        lines = [f"HTTP/1.1 {reply.status} {reply.reason or self.responses.get(reply.status, ('',))[0]}"]
        lines += [f"{key}: {value}" for key, value in reply.headers.items()]
        lines.append(f"Content-Length: {len(reply.body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.close_connection = True
        if not reply.trickle_headers:
            self.wfile.write(head)
            head = b""
        for byte in head + reply.body:
            self.wfile.write(bytes([byte]))
            time.sleep(reply.trickle)
