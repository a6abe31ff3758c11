"""Opening the Milvus database a command names with ``--uri`` or ``--db``.

A Milvus Lite path is checked before any model is loaded (loading takes seconds; a typo should
not). No folder is created: a path in a folder that does not exist is refused by
:func:`~milvus_rerank.milvus.connection.connect`, as the library refuses it. The connection goes through
:func:`milvus_rerank.milvus.connection.connect`, whose :class:`~milvus_rerank.RetrievalError`
the command prints as its one-line error.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from milvus_rerank.cli.errors import CLIError
from milvus_rerank.cli.options import TOKEN_ENV
from milvus_rerank.milvus.connection import connect

if TYPE_CHECKING:
    from pymilvus import MilvusClient

__all__ = ["check_collection", "check_uri", "database_path", "open_database"]

_SERVER_URI = re.compile(r"^[a-z][a-z0-9+.-]*://")


def check_uri(uri: str, *, must_exist: bool, flag: str = "--uri") -> None:
    """Refuse a Milvus Lite path that cannot be right.

    Args:
        uri: A server URL (checked on connection) or a Milvus Lite path.
        must_exist: The command reads the database, so it must be there already.
        flag: The option that named ``uri``, for the message.

    Raises:
        CLIError: The path does not end in ``.db``, or it must exist and does not.
    """
    if _SERVER_URI.match(uri):
        return
    if not uri.endswith(".db"):
        raise CLIError(f"{flag} {uri}: a Milvus Lite database is a file ending in .db, or give a server URL")
    if must_exist and not Path(uri).exists():  # Milvus Lite 3 keeps a database in a folder named *.db
        raise CLIError(f"no Milvus Lite database at {uri}: run `milvus-rerank ingest` first, or pass --uri")


def open_database(uri: str, *, must_exist: bool) -> MilvusClient:
    """Check ``uri`` (:func:`check_uri`) and connect.

    The server token is read from ``$MILVUS_TOKEN``.

    Raises:
        CLIError: See :func:`check_uri`.
        RetrievalError: The connection failed.
    """
    check_uri(uri, must_exist=must_exist)
    return connect(uri, token=os.environ.get(TOKEN_ENV) or None)


def check_collection(client: MilvusClient, uri: str, collection: str) -> None:
    """Refuse a collection that is not in the database, saying which ones are and how to make it.

    Raises:
        CLIError: ``collection`` does not exist at ``uri``.
    """
    if client.has_collection(collection):
        return
    existing = sorted(client.list_collections())
    listed = f"its collections are {', '.join(map(repr, existing))}" if existing else "it has no collections"
    raise CLIError(
        f"no collection {collection!r} at {uri} ({listed}): pass --collection NAME, or fill it first with "
        f"`milvus-rerank ingest PATH --uri {uri} --collection {collection}`"
    )


@contextmanager
def database_path(db: str | None, *, name: str) -> Iterator[str]:
    """The database a ``--uri`` option names, or a Milvus Lite file ``name`` in a temporary folder.

    A ``--uri`` path is checked (:func:`check_uri`) and kept; the temporary folder is removed when
    the block ends.

    Raises:
        CLIError: ``db`` is not a Milvus Lite path.
    """
    if db is not None:
        check_uri(db, must_exist=False)
        yield db
        return
    with tempfile.TemporaryDirectory(prefix="milvus-rerank-") as folder:
        yield os.path.join(folder, name)
