"""What goes over the wire: request bodies out, responses and error bodies in. Pure functions only.

Both the sync and the async path call these, so a batch is planned, a response validated and an
error body read the same way whichever path sent it, and each is tested without a socket. A
protocol module supplies the two pieces that differ (how to build one batch's body, where the
results sit in a response); everything else a server can get wrong is checked here: every index an
int in range and unique, the expected number of results, every score finite.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from milvus_rerank.errors import RerankResponseError
from milvus_rerank.rerankers.contract import checked_results
from milvus_rerank.types import RerankResult

__all__ = [
    "BatchRequest",
    "decode_json",
    "excerpt",
    "merge_batches",
    "parse_error_message",
    "parse_results",
    "plan_batches",
    "results_list",
    "split_batches",
    "validate_results",
]

_EXCERPT_CHARS = 200

PayloadBuilder = Callable[[str, Sequence[str], int | None], dict[str, Any]]
"""Builds one batch's JSON body from ``(query, documents, top_n)``; ``top_n`` is ``None`` unless sent."""


@dataclass(frozen=True)
class BatchRequest:
    """One prepared POST: the URL, the encoded body and what a valid answer must hold.

    Attributes:
        url: Where the body is posted.
        content: The UTF-8 JSON body.
        offset: Index of the batch's first document in the caller's list.
        n_documents: Documents in this batch.
        expected: Results a valid answer holds (``top_n`` when it was sent, else every document).
    """

    url: str
    content: bytes
    offset: int
    n_documents: int
    expected: int


def split_batches(n_documents: int, batch_size: int) -> list[range]:
    """Consecutive index ranges of at most ``batch_size`` covering ``range(n_documents)``."""
    return [range(start, min(start + batch_size, n_documents)) for start in range(0, n_documents, batch_size)]


def plan_batches(
    url: str,
    query: str,
    documents: Sequence[str],
    *,
    top_n: int | None,
    batch_size: int,
    build_payload: PayloadBuilder,
    extra_body: Mapping[str, Any],
    sends_top_n: bool = True,
) -> list[BatchRequest]:
    """Split ``documents`` into batches and encode one request per batch.

    ``top_n`` goes to the server (clamped to the number of documents) only when one batch covers
    every document and the protocol has the field; otherwise the reranker cuts when it ranks.
    """
    batches = split_batches(len(documents), batch_size)
    send_top_n = min(top_n, len(documents)) if sends_top_n and top_n is not None and len(batches) == 1 else None
    requests = []
    for batch in batches:
        payload = build_payload(query, documents[batch.start : batch.stop], send_top_n)
        payload.update(extra_body)
        requests.append(
            BatchRequest(
                url=url,
                content=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                offset=batch.start,
                n_documents=len(batch),
                expected=send_top_n if send_top_n is not None else len(batch),
            )
        )
    return requests


def merge_batches(requests: Sequence[BatchRequest], per_batch: Sequence[list[RerankResult]]) -> list[RerankResult]:
    """Each batch's results with their indices re-offset into the caller's list, batch after batch.

    Not ranked: the reranker ranks once, at its boundary
    (:meth:`~milvus_rerank.rerankers.contract.DocumentsToScore.results`).
    """
    return [
        RerankResult(index=request.offset + result.index, score=result.score)
        for request, results in zip(requests, per_batch, strict=True)
        for result in results
    ]


def results_list(body: Any) -> Any:
    """The ``results`` of a vLLM / Cohere / Jina / Infinity answer (``{"results": [...]}``)."""
    if isinstance(body, dict) and "results" in body:
        return body["results"]
    raise ValueError("the body has no 'results' list")


def parse_results(
    request: BatchRequest,
    content: bytes,
    *,
    extract: Callable[[Any], Any],
    score_key: str,
    endpoint: str,
    redact: Callable[[str], str],
) -> list[RerankResult]:
    """Decode and validate one successful answer to ``request``.

    Args:
        request: The request this answers.
        content: The decoded response body.
        extract: Finds the list of result objects in the decoded body (raises ``ValueError``).
        score_key: The score's field in a result object (``relevance_score``, TEI's ``score``).
        endpoint: The redacted URL, for the error message.
        redact: Blanks the reranker's secrets out of the message (it quotes the server).

    Raises:
        RerankResponseError: Invalid JSON, or results that do not match the request.
    """
    try:
        items = extract(json.loads(content))
        return validate_results(items, n_documents=request.n_documents, expected=request.expected, score_key=score_key)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError too
        start = excerpt(redact(_text(content)))  # blanked before the cut, which could halve a secret
        raise RerankResponseError(
            redact(f"{endpoint} sent a malformed rerank response ({redact(str(exc))}); body starts: {start!r}"),
            endpoint=endpoint,
        ) from None


def decode_json(content: bytes, *, endpoint: str, redact: Callable[[str], str]) -> Any:
    """The decoded body of a small JSON answer (``/v1/models``, ``/info``).

    Raises:
        RerankResponseError: The body is not JSON (the excerpt quoted passes through ``redact``).
    """
    try:
        return json.loads(content)
    except ValueError:
        start = excerpt(redact(_text(content)))
        raise RerankResponseError(
            redact(f"{endpoint} sent invalid JSON; body starts: {start!r}"), endpoint=endpoint
        ) from None


def validate_results(items: object, *, n_documents: int, expected: int, score_key: str) -> list[RerankResult]:
    """Check a list of ``{"index": int, score_key: number}`` and turn it into results.

    The rules are those of every reranker's answer (:func:`~milvus_rerank.rerankers.contract.checked_results`):
    every index an int in ``range(n_documents)`` and unique, exactly ``expected`` items, every
    score a finite number.

    Raises:
        ValueError: The first problem found, described for a person.
    """
    if not isinstance(items, list):
        raise ValueError(f"expected a list of results, got {type(items).__name__}")
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"result {position} is a {type(item).__name__}, not an object")
    pairs = [(item.get("index"), item.get(score_key)) for item in items]
    return checked_results(pairs, n_documents=n_documents, expected=expected, score_name=score_key)


def parse_error_message(text: str, *, reason: str = "") -> str:
    """The server's own message from any known error-body shape.

    Tries, in order: ``body["error"]`` as a dict (its ``message``), ``body["error"]`` as a string,
    ``body["message"]``, ``body["detail"]`` (FastAPI, string or list), then the raw text; an empty
    body gives the HTTP reason phrase.
    """
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        if body.get("message"):
            return str(body["message"])
        detail = body.get("detail")
        if isinstance(detail, str) and detail:
            return detail
        if isinstance(detail, list) and detail:
            return "; ".join(_detail_text(item) for item in detail)
    stripped = text.strip()
    return excerpt(stripped) if stripped else (reason or "no error message")


def _detail_text(item: object) -> str:
    if isinstance(item, dict):
        location = ".".join(str(part) for part in item.get("loc", ()))
        message = str(item.get("msg", item))
        return f"{location}: {message}" if location else message
    return str(item)


def excerpt(text: str) -> str:
    """``text`` on one line, cut to a length that fits in an error message."""
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."


def _text(content: bytes) -> str:
    return content.decode("utf-8", errors="replace")
