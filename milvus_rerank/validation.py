"""The one copy of the argument checks: ints, numbers, choices and ``top_n``.

Every constructor and call in the library checks its options here, so an option is refused with
the same exception type and the same wording wherever it appears: a value of the wrong type
raises ``TypeError`` (``bool`` is never accepted as a number), a value out of range raises
``ValueError``, and each message names the option and the value it got.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Iterable
from typing import Literal, TypeVar, overload

__all__ = ["check_choice", "check_encodable", "check_int", "check_keywords", "check_number", "check_top_n"]

_T = TypeVar("_T")


@overload
def check_int(
    value: object, name: str, *, minimum: int = 1, maximum: int | None = None, optional: Literal[False] = False
) -> int: ...


@overload
def check_int(
    value: object, name: str, *, minimum: int = 1, maximum: int | None = None, optional: bool
) -> int | None: ...


def check_int(
    value: object, name: str, *, minimum: int = 1, maximum: int | None = None, optional: bool = False
) -> int | None:
    """Return ``value`` if it is an ``int`` in ``[minimum, maximum]`` (or ``None`` when ``optional``).

    Raises:
        TypeError: ``value`` is not an int (``bool`` included).
        ValueError: ``value`` is outside the range.
    """
    if optional and value is None:
        return None
    expected = _int_wording(minimum, maximum) + (" or None" if optional else "")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {expected}, got {value}")
    return value


def _int_wording(minimum: int, maximum: int | None) -> str:
    if maximum is not None:
        return f"an int between {minimum} and {maximum}"
    if minimum == 1:
        return "a positive int"
    return f"an int >= {minimum}"


@overload
def check_number(
    value: object,
    name: str,
    *,
    minimum: float = 0.0,
    inclusive: bool = True,
    allow_infinity: bool = False,
    optional: Literal[False] = False,
) -> float: ...


@overload
def check_number(
    value: object,
    name: str,
    *,
    minimum: float = 0.0,
    inclusive: bool = True,
    allow_infinity: bool = False,
    optional: bool,
) -> float | None: ...


def check_number(
    value: object,
    name: str,
    *,
    minimum: float = 0.0,
    inclusive: bool = True,
    allow_infinity: bool = False,
    optional: bool = False,
) -> float | None:
    """Return ``value`` as a ``float`` if it is a finite number ``>= minimum`` (``> minimum`` unless ``inclusive``).

    Pass ``minimum=-math.inf`` for a number with no lower bound (a score threshold), and
    ``allow_infinity=True`` where ``inf`` means "no limit" (a deadline, a cap on a wait).

    Raises:
        TypeError: ``value`` is not an int or float (``bool`` included).
        ValueError: ``value`` is NaN, infinite (unless allowed) or below the minimum.
    """
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number{' or None' if optional else ''}, got {type(value).__name__}")
    number = float(value)
    if math.isnan(number) or (math.isinf(number) and not (allow_infinity and number > 0)):
        raise ValueError(f"{name} must be finite, got {value}")
    if number < minimum or (not inclusive and number == minimum):
        raise ValueError(f"{name} must be {'>=' if inclusive else '>'} {minimum:g}, got {value}")
    return number


def check_choice(value: _T, name: str, choices: Collection[object]) -> _T:
    """Return ``value`` if it is one of ``choices``.

    Raises:
        ValueError: ``value`` is not one of ``choices``; the message lists them.
    """
    if isinstance(value, bool) or value not in choices:
        listed = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value


def check_top_n(top_n: object, *, name: str = "top_n") -> int | None:
    """Return ``top_n`` if it is ``None`` or a positive ``int``.

    Raises:
        TypeError: ``top_n`` is not an int (``bool`` included).
        ValueError: ``top_n`` is zero or negative.
    """
    return check_int(top_n, name, optional=True)


def check_keywords(owner: str, given: Iterable[str], known: Collection[str], *, accepted: str) -> None:
    """Refuse a keyword ``owner`` does not take, as Python refuses one, for ``**options`` of a ``TypedDict``.

    Args:
        owner: The callable, as the message names it (``"MilvusRetriever"``).
        given: The keywords passed.
        known: The keywords accepted.
        accepted: Which keywords are accepted, in words, for the message (``"see milvus_rerank.HTTPOptions"``).

    Raises:
        TypeError: Naming the first unknown keyword and the closest known one.
    """
    for name in given:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"{owner}() got an unexpected keyword argument {name!r}{hint} ({accepted})")


def check_encodable(text: str, name: str) -> None:
    """Refuse a text holding a lone surrogate, naming it, before a tokenizer, a JSON body or Milvus fails on it.

    Raises:
        ValueError: ``text`` holds a lone surrogate (e.g. from bytes decoded with
            ``errors="surrogateescape"``); the message says which text (``name``), where, and the fix.
    """
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{name} holds a lone surrogate ({text[exc.start]!r}) at character {exc.start}, which UTF-8 cannot "
            "encode; clean the text first, e.g. text.encode('utf-8', 'replace').decode('utf-8')"
        ) from None
