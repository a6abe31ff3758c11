"""Connecting to Milvus: one place that opens a ``MilvusClient`` and words its failures.

The retriever, the collection helpers and the CLI all connect through :func:`connect`, so a
token never appears in an error message, whichever of them failed.

Milvus Lite reports every failure to open a database as "Open local milvus failed" (its own
traceback goes to a log). When that happens :func:`connect` looks at the path itself and says
which of the usual causes it is: a folder that does not exist, a file where Lite 3 keeps a
folder, a database that another process holds (Lite takes an exclusive lock, and pymilvus keeps
it until the process exits), or a place it cannot write to (Lite writes even to read).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from milvus_rerank.errors import RetrievalError

if TYPE_CHECKING:
    from pymilvus import MilvusClient

__all__ = ["connect", "is_lite_uri"]

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def is_lite_uri(uri: str) -> bool:
    """Whether ``uri`` names a Milvus Lite database (a local path ending in ``.db``) rather than a server."""
    return not _SCHEME.match(uri) and uri.endswith(".db")


def connect(uri: str, *, token: str | None = None, db_name: str | None = None) -> MilvusClient:
    """Open a ``MilvusClient`` on ``uri`` (a Milvus Lite ``.db`` file or a server URL).

    Raises:
        RetrievalError: The connection failed; the message says where, with the token blanked out,
            and for Milvus Lite which cause it is (see the module docstring).
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
        problem = _lite_problem(uri) if is_lite_uri(uri) else None
        if problem is not None:
            raise RetrievalError(f"cannot open Milvus Lite database {uri!r}: {problem}") from None
        message = str(getattr(exc, "message", "") or exc)
        if token:
            message = message.replace(token, "***")
        raise RetrievalError(f"cannot connect to Milvus at {uri!r}: {message}") from None


def _lite_problem(uri: str) -> str | None:
    """Why Milvus Lite could not open the database at ``uri``, in words; ``None`` when none of the usual causes."""
    database = Path(uri).expanduser().absolute()
    folder = database.parent
    if not folder.is_dir():
        return f"the folder {folder} does not exist; create it, or choose a path in an existing folder"
    if database.exists() and not database.is_dir():
        return "it is a file, but Milvus Lite 3 keeps each database in a folder of that name; choose another path"
    holder = _lock_holder(database / "LOCK")
    if holder is not None:
        return (
            f"it is in use by another process{holder}. A Milvus Lite database can be open in one process at a "
            "time, and pymilvus keeps it open until that process exits: stop it, or use a Milvus server to "
            "share a database"
        )
    target = database if database.exists() else folder
    unwritable = _not_writable(target)
    if unwritable is not None:
        return (
            f"{target} is not writable ({unwritable}), and Milvus Lite writes to its database even to read it; "
            "choose a path in a writable folder"
        )
    return None


def _lock_holder(lock: Path) -> str | None:
    """``None`` when nobody holds Milvus Lite's lock file, else a note on the holder (``" (process 12: ...)"``)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Milvus Lite runs on Linux and macOS only
        return None
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _describe_holder(os.fstat(fd))
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _describe_holder(stat: os.stat_result) -> str:
    """`` (process PID, NAME)`` from Linux's lock table, or nothing where there is none.

    The process's name only, never its command line, which may hold a secret.
    """
    device = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    try:
        table = Path("/proc/locks").read_text(encoding="utf-8")
    except OSError:
        return ""
    for line in table.splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == device:
            pid = fields[4]
            try:
                name = Path(f"/proc/{pid}/comm").read_text(encoding="utf-8", errors="replace").strip()
            except OSError:
                return f" (process {pid})"
            return f" (process {pid}, {name})"
    return ""


def _not_writable(path: Path) -> str | None:
    """Why ``path`` (a folder) cannot be written, or ``None``."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except (OSError, AttributeError):  # no statvfs on Windows
        pass
    if not os.access(path, os.W_OK | os.X_OK):
        return "permission denied"
    return None
