"""The app's own error, and how any error becomes the one line a command prints."""

from __future__ import annotations

__all__ = ["CLIError", "error_line"]


class CLIError(Exception):
    """A mistake in the command's input, reported as one line without a traceback."""


def error_line(exc: BaseException) -> str:
    """``exc`` as one line: its message, prefixed with its type unless the error is ours or a usual input error.

    Our errors and ``OSError``, ``ValueError`` and ``LookupError`` say what happened in their own
    words; anything else is unexpected, and its type helps whoever reads the report.
    """
    message = " ".join(str(exc).split()) or type(exc).__name__
    known = isinstance(exc, (CLIError, OSError, ValueError, LookupError)) or type(exc).__module__.startswith(
        "milvus_rerank"
    )
    return message if known else f"{type(exc).__name__}: {message}"
