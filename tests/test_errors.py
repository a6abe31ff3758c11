"""The exception tree: the one drawn in ``milvus_rerank.errors`` is the one the classes form.

Users catch these by the builtin they subclass (``except ValueError``), so a base dropped or
added in code, or a class left out of the drawing, is a change they would feel; and the errors
the library raises on purpose come from this tree, caught by its root and by their builtin.
"""

from __future__ import annotations

import builtins
import re

import pytest
from pymilvus import DataType

import milvus_rerank
from milvus_rerank import errors
from milvus_rerank.milvus.schema import infer_layout

_BRANCH = re.compile(r"[├└]── (?P<name>\w+)(?: \((?P<builtin>\w+)\))?")


def drawn_tree() -> dict[str, tuple[str, ...]]:
    """Each class in the module docstring's drawing, with the bases the drawing gives it (parent, builtin)."""
    lines = (errors.__doc__ or "").splitlines()
    root_line = next(line for line in lines if line.strip() == "MilvusRerankError")
    root_column = root_line.index("M")
    bases: dict[str, tuple[str, ...]] = {"MilvusRerankError": ()}
    path = ["MilvusRerankError"]  # path[d] is the open class at depth d
    for line in lines:
        match = _BRANCH.search(line)
        if match is None:
            continue
        depth = (match.start() - root_column) // 4 + 1
        del path[depth:]
        bases[match["name"]] = (path[-1], *([match["builtin"]] if match["builtin"] else []))
        path.append(match["name"])
    return bases


def test_the_drawing_is_the_class_tree() -> None:
    drawn = drawn_tree()
    assert sorted(drawn) == sorted(errors.__all__)
    for name, bases in drawn.items():
        actual = tuple(base.__name__ for base in getattr(errors, name).__bases__)
        expected = bases or ("Exception",)
        assert actual == expected, f"{name}: classes say {actual}, the drawing says {expected}"
        for builtin in bases[1:]:
            assert issubclass(getattr(builtins, builtin), BaseException)


def test_every_error_is_public_at_the_top_level() -> None:
    assert {name for name in errors.__all__} <= set(milvus_rerank.__all__)
    for name in errors.__all__:
        assert getattr(milvus_rerank, name) is getattr(errors, name)


def test_a_real_schema_error_is_caught_by_the_root_and_by_value_error() -> None:
    description = {"collection_name": "c", "fields": [{"name": "id", "type": DataType.INT64, "is_primary": True}]}
    with pytest.raises(errors.MilvusRerankError) as caught:
        infer_layout(description, [], needs_dense=False, needs_sparse=False)
    assert isinstance(caught.value, errors.RetrievalError)
    assert isinstance(caught.value, ValueError)
    assert "collection 'c'" in str(caught.value)


def test_rerank_errors_carry_the_endpoint() -> None:
    error = errors.RerankHTTPError(
        "boom", endpoint="http://127.0.0.1:9/rerank", status_code=503, server_message="overloaded"
    )
    assert (error.endpoint, error.status_code, error.server_message, str(error)) == (
        "http://127.0.0.1:9/rerank",
        503,
        "overloaded",
        "boom",
    )
    assert errors.RerankTimeoutError("late").endpoint is None
