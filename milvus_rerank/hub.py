"""Model names: telling a local directory from a Hugging Face Hub id.

Both the local reranker and the CLI's embedding loader take "a hub id or a path"; they decide
which one they were given here, so a name means the same thing everywhere.
"""

from __future__ import annotations

import os

__all__ = ["looks_like_path"]


def looks_like_path(name: str) -> bool:
    """Whether ``name`` is meant as a filesystem path rather than a hub id (``org/model``).

    A name is a path when it exists, is absolute, starts with ``./``, ``../`` or ``~``, holds a
    backslash, or has more than one ``/`` (a hub id has exactly one).
    """
    return (
        os.path.isabs(name)
        or name.startswith(("./", "../", "~", ".\\", "..\\"))
        or name.count("/") > 1
        or "\\" in name
        or os.path.exists(name)
    )
