"""The keyword options every HTTP reranker takes, declared once: :class:`HTTPOptions`."""

from __future__ import annotations

import sys
from collections.abc import Collection, Mapping
from typing import Any, TypedDict

import httpx

from milvus_rerank.rerankers.http.retry import RetryPolicy
from milvus_rerank.rerankers.windows import LongDocumentPolicy
from milvus_rerank.validation import check_keywords

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack

__all__ = ["HTTPOptions", "Unpack", "check_option_names"]


class HTTPOptions(TypedDict, total=False):
    """Options shared by every HTTP reranker, each passed as a keyword (``VLLMReranker(url, timeout=5)``).

    A reranker's constructor declares its own options and takes these as ``**options:
    Unpack[HTTPOptions]`` (PEP 692), so type checkers and IDEs know every name and type, and a
    misspelt one is a ``TypeError`` naming it.

    Attributes:
        api_key: Sent as ``Authorization: Bearer ...``; never shown in ``repr``, logs or errors,
            and blanked out of anything quoted from a server. One line of visible ASCII.
        timeout: Seconds for one HTTP attempt (default 30).
        max_batch_size: Documents per request; ``None`` (default) takes the protocol's default.
        max_concurrency: Requests in flight at once for one call, sync and async (default 8).
        retry: The whole :class:`RetryPolicy` (backoff caps, ``Retry-After`` cap included).
        max_retries: Retries per request after the first attempt (default 3); overrides ``retry``'s.
        backoff: Base of the exponential backoff in seconds (default 0.25); overrides ``retry``'s.
        deadline: Total seconds for one request with its retries, waits and the reading of its
            answer (default 60); overrides ``retry``'s. Exact on the async path; on the sync path
            checked between reads of the body.
        headers: Extra headers for every request, one line of ASCII each. Those whose name says
            they carry a credential (``Authorization``, ``Cookie``, names with ``key``, ``token``,
            ``secret``, ``auth``, ``password``, ``session``, ``credential``) are secrets, like
            ``api_key``.
        secret_headers: Names of more ``headers`` whose values are secrets.
        extra_body: Extra JSON fields merged into every request body (not the query or documents).
        max_response_bytes: Most bytes one answer may hold once decoded (default 64 MiB).
        client: An ``httpx.Client`` for the sync path, left open by ``close()``. Its redirects
            are followed only if it follows redirects, and only within the endpoint's origin.
        async_client: An ``httpx.AsyncClient`` for the async path, left open by ``aclose()``.
        long_documents: ``"truncate"`` (default: documents go as they are, and the server truncates or
            refuses an over-long pair) or ``"windows"``: a document whose pair is longer than ``max_length``
            is split on the client into overlapping windows of the served model's tokens (``tokenizer``),
            each sent as a document, and scores as its best window, whose characters the result's ``span``
            gives; the same windows and scores as :class:`~milvus_rerank.CrossEncoderReranker` on the same
            weights. See docs/long-documents.md.
        window_overlap: Tokens shared by consecutive windows; ``None`` means a quarter of the window.
        max_windows: Most windows per document (default 32).
        tokenizer: The served model's tokenizer, for ``"windows"``: a local directory or hub id (loaded
            with transformers on first use) or a loaded fast tokenizer.
        max_length: Most tokens of a pair for ``"windows"`` (at most the server's limit, e.g. vLLM's
            ``max_model_len``); ``None`` means the tokenizer's ``model_max_length``.
    """

    api_key: str | None
    timeout: float
    max_batch_size: int | None
    max_concurrency: int
    retry: RetryPolicy
    max_retries: int
    backoff: float
    deadline: float
    headers: Mapping[str, str] | None
    secret_headers: Collection[str]
    extra_body: Mapping[str, Any] | None
    max_response_bytes: int
    client: httpx.Client | None
    async_client: httpx.AsyncClient | None
    long_documents: LongDocumentPolicy
    window_overlap: int | None
    max_windows: int
    tokenizer: Any
    max_length: int | None


def check_option_names(owner: str, options: Mapping[str, object]) -> None:
    """Refuse an option :class:`HTTPOptions` does not declare, as Python refuses a keyword.

    Raises:
        TypeError: Naming the unknown option, the closest known one, and where the list is.
    """
    accepted = "its own options and those of milvus_rerank.HTTPOptions are accepted"
    check_keywords(owner, options, HTTPOptions.__optional_keys__, accepted=accepted)
