"""Connecting to Milvus: one place that opens a ``MilvusClient`` and words its failures.

The retriever, the collection helpers and the CLI all connect through :func:`connect`, so a
token never appears in an error message, whichever of them failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from milvus_rerank.errors import RetrievalError

if TYPE_CHECKING:
    from pymilvus import MilvusClient

__all__ = ["connect"]


def connect(uri: str, *, token: str | None = None, db_name: str | None = None) -> MilvusClient:
    """Open a ``MilvusClient`` on ``uri`` (a Milvus Lite ``.db`` file or a server URL).

    Raises:
        RetrievalError: The connection failed; the message says where, with the token blanked out.
    """
    from pymilvus import MilvusClient  # pymilvus is imported only when a connection is made

    kwargs: dict[str, Any] = {"uri": uri}
    if token:
        kwargs["token"] = token
    if db_name:
        kwargs["db_name"] = db_name
    try:
        return MilvusClient(**kwargs)
    except Exception as exc:
        message = str(getattr(exc, "message", "") or exc)
        if token:
            message = message.replace(token, "***")
        raise RetrievalError(f"cannot connect to Milvus at {uri!r}: {message}") from None
