"""The faults :class:`~milvus_rerank.testing.server.RerankTestServer` can show, and the replies they make.

:class:`Fault` values are built with its class methods and handed to ``RerankTestServer.inject``;
the functions below turn a fault into the bytes the server sends.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = ["Fault"]

_STATUS_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    404: "NotFoundError",
    413: "RequestEntityTooLarge",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    500: "InternalServerError",
    501: "NotImplementedError",
    502: "BadGateway",
    503: "ServiceUnavailableError",
    504: "GatewayTimeout",
}


@dataclass(frozen=True)
class Fault:
    """One misbehaviour for the server to show on a matching request.

    Build them with the class methods and hand them to :meth:`RerankTestServer.inject`.

    Attributes:
        kind: What happens: ``"slow"``, ``"respond"``, ``"drop"``, ``"malformed_json"``,
            ``"wrong_index"``, ``"duplicate_index"``, ``"nan_score"``, ``"missing_result"``,
            ``"trickle"``, ``"trickle_headers"``, ``"echo"``, ``"echo_reason"``.
        status: HTTP status for ``"respond"`` and the echoes.
        body: Response body for ``"respond"`` (bytes sent as they are).
        headers: Extra response headers (for the echoes: the request headers to quote).
        seconds: Extra delay for ``"slow"``; the pause after each byte for the trickles.
    """

    kind: str
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Answer normally, ``seconds`` later."""
        return cls("slow", seconds=seconds)

    @classmethod
    def respond(cls, status: int, body: Any = b"", headers: dict[str, str] | None = None) -> Fault:
        """Answer with this status and body (bytes or str as given; anything else as JSON)."""
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes):
            body = json.dumps(body).encode()
        return cls("respond", status=status, body=body, headers=tuple((headers or {}).items()))

    @classmethod
    def vllm_error(cls, status: int, message: str, *, generation: Literal["old", "new"] = "new") -> Fault:
        """A vLLM error body: flat (``generation="old"``, before 0.10.1) or nested (``"new"``)."""
        return cls.respond(status, _vllm_error_body(status, message, generation))

    @classmethod
    def rate_limited(cls, *, retry_after: float | str | None = 0) -> Fault:
        """429 with an optional ``Retry-After`` header."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return cls.respond(
            429, {"error": {"message": "Too many requests", "type": "RateLimitError", "code": 429}}, headers
        )

    @classmethod
    def server_error(cls, status: int = 503) -> Fault:
        """500, 502, 503 or 504 with a vLLM-style body."""
        return cls.vllm_error(status, f"Simulated failure ({status})")

    @classmethod
    def unauthorized(cls) -> Fault:
        """401 ``{"error": "Unauthorized"}``, as vLLM's ``--api-key`` check answers."""
        return cls.respond(401, {"error": "Unauthorized"})

    @classmethod
    def tei_batch_limit(cls, limit: int = 32, *, batch: int = 64, status: int = 422) -> Fault:
        """TEI's refusal of a batch over ``--max-client-batch-size`` (413 up to v1.8, 422 since)."""
        return cls.respond(status, _tei_batch_body(batch, limit))

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without answering."""
        return cls("drop")

    @classmethod
    def trickle(cls, interval: float, *, headers: bool = False) -> Fault:
        """Send the normal answer one byte every ``interval`` seconds: its body, or (``headers=True``) all of it."""
        return cls("trickle_headers" if headers else "trickle", seconds=interval)

    @classmethod
    def echo(cls, status: int, *, names: tuple[str, ...] = (), in_reason: bool = False) -> Fault:
        """Answer ``status`` with an error that quotes request headers, as a leaky proxy does.

        It quotes the headers ``names`` (lower case) in that order, or every header when none
        are named, in an ``{"error": ...}`` body, or (``in_reason=True``) in the reason phrase of
        the status line, with an empty body.
        """
        return cls("echo_reason" if in_reason else "echo", status=status, headers=tuple((name, "") for name in names))

    @classmethod
    def malformed_json(cls) -> Fault:
        """200 with a body that is not JSON."""
        return cls("malformed_json")

    @classmethod
    def wrong_index(cls) -> Fault:
        """200 with one index outside the batch."""
        return cls("wrong_index")

    @classmethod
    def duplicate_index(cls) -> Fault:
        """200 with one index repeated (and another missing)."""
        return cls("duplicate_index")

    @classmethod
    def nan_score(cls) -> Fault:
        """200 with a NaN score (``NaN`` in the JSON, as Python's encoder writes it)."""
        return cls("nan_score")

    @classmethod
    def missing_result(cls) -> Fault:
        """200 with one result fewer than asked for."""
        return cls("missing_result")


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    reason: str | None = None
    trickle: float = 0.0
    trickle_headers: bool = False


_ANSWERS_WITHOUT_SCORING = ("respond", "drop", "echo", "echo_reason")


def _fault_reply(fault: Fault, request_headers: dict[str, str]) -> _Reply | None:
    """The answer of a fault that replaces the server's own (``None``: drop the connection)."""
    if fault.kind == "drop":
        return None
    if fault.kind == "respond":
        return _Reply(fault.status, fault.body, {"Content-Type": "application/json", **dict(fault.headers)})
    names = [name for name, _ in fault.headers] or list(request_headers)
    quoted = "; ".join(f"{name}={request_headers.get(name, '')}" for name in names)
    if fault.kind == "echo_reason":
        return _Reply(fault.status, b"", reason=f"Rejected {quoted}")
    return _json_reply(fault.status, {"error": f"request rejected, it had {quoted}"})


def _trickled(reply: _Reply, fault: Fault | None) -> _Reply:
    if fault is None or fault.kind not in ("trickle", "trickle_headers"):
        return reply
    return replace(reply, trickle=fault.seconds, trickle_headers=fault.kind == "trickle_headers")


def _vllm_error_body(status: int, message: str, generation: str) -> dict[str, Any]:
    error = {"message": message, "type": _STATUS_TYPES.get(status, "Error"), "param": None, "code": status}
    return {"object": "error", **error} if generation == "old" else {"error": error}


def _tei_batch_body(batch: int, limit: int) -> dict[str, Any]:
    return {
        "error": f"batch size {batch} > maximum allowed batch size {limit}",
        "error_type": "Validation",
    }


def _json_reply(status: int, payload: Any) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), {"Content-Type": "application/json"})


def _corrupt(reply: _Reply, fault: Fault) -> _Reply:
    if fault.kind == "malformed_json":
        return replace(reply, body=b'{"results": [{"index": 0, "relevance_score": 0.5},')
    payload = json.loads(reply.body)
    items = payload if isinstance(payload, list) else payload.get("results", payload.get("data"))
    score_key = "score" if "score" in items[0] else "relevance_score"
    if fault.kind == "wrong_index":
        items[0]["index"] = len(items) + 7
    elif fault.kind == "duplicate_index" and len(items) > 1:
        items[1]["index"] = items[0]["index"]
    elif fault.kind == "nan_score":
        items[0][score_key] = math.nan
    elif fault.kind == "missing_result":
        items.pop()
    return replace(reply, body=json.dumps(payload).encode())
