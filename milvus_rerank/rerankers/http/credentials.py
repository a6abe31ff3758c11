"""The secrets an HTTP reranker holds: checked when it is made, blanked out of everything a server says.

A reranker holds two kinds of secret: its ``api_key`` and the values of secret headers (those
named in ``secret_headers=``, and any header whose name says it carries a credential, such as
``Authorization``, ``X-Api-Key`` or ``Cookie``). An endpoint URL never carries one:
:meth:`~milvus_rerank.rerankers.http.endpoint.Endpoint.parse` refuses user-info and query strings.

:func:`check_api_key` and :func:`check_headers` run at construction, so that a key pasted with
its trailing newline, or a header value httpx cannot encode, is a ``ValueError`` that says what is
wrong without showing the value, instead of an httpx error that quotes the header. A
:class:`Redactor` is applied to every message, excerpt and log line built from server text
(error bodies, malformed answers, discovery answers, transport errors), because a proxy or a
server may echo the request's headers back. httpx and httpcore log server text of their own (the
status line at INFO, response headers at DEBUG): :func:`guard_http_logs` puts a filter on their
loggers that blanks the secrets of every live reranker there too.

A key handed on (in a reranker's ``describe()``) is a :class:`Secret`, which never shows itself.
:func:`environment_key` reads a hosted API's key from its provider's variable, for the provider's
own host only (:func:`on_hosts`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import weakref
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

__all__ = [
    "NO_SECRETS",
    "REDACTED",
    "Redactor",
    "Secret",
    "check_api_key",
    "check_headers",
    "environment_key",
    "guard_http_logs",
    "is_secret_header",
    "on_hosts",
]

REDACTED = "***"
"""What a secret is replaced with, in messages as in ``repr``."""

_SECRET_NAME_PARTS = ("auth", "key", "token", "secret", "password", "passwd", "cookie", "session", "credential")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP header name (RFC 9110 token)


def is_secret_header(name: str, marked: Collection[str] = ()) -> bool:
    """Whether header ``name`` carries a credential: marked by the caller, or named like one."""
    lowered = name.lower()
    return lowered in {mark.lower() for mark in marked} or any(part in lowered for part in _SECRET_NAME_PARTS)


def check_api_key(api_key: object) -> str | None:
    """Return ``api_key`` if it can be sent as ``Authorization: Bearer <key>``.

    Raises:
        TypeError: ``api_key`` is not a string.
        ValueError: It is empty or holds a character that cannot travel in an HTTP header; the
            message says which kind and where, never the key.
    """
    if api_key is None:
        return None
    if not isinstance(api_key, str):
        raise TypeError(f"api_key must be a str or None, got {type(api_key).__name__}")
    if not api_key:
        raise ValueError("api_key is empty: pass the key, or api_key=None for a server without one")
    problem = _header_text_problem(api_key, spaces_inside=False)
    if problem:
        raise ValueError(f"api_key {problem}; the key itself is not shown")
    return api_key


def check_headers(headers: object, *, marked: Collection[str] = ()) -> dict[str, str]:
    """Return ``headers`` as a dict if httpx can send every name and value as they are.

    Args:
        headers: A mapping of header names to string values, or ``None``.
        marked: Names of headers whose values are secrets (checked only for their type here).

    Raises:
        TypeError: Not a mapping, or a name or value that is not a string.
        ValueError: A name that is not an HTTP token, or a value with a line break, a control
            character, surrounding whitespace or a non-ASCII character; the message names the
            header, and shows no value.
    """
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a mapping of str to str, got {type(headers).__name__}")
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"headers must map str to str; got {type(name).__name__} -> {type(value).__name__}")
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"headers: {name!r} is not a valid HTTP header name")
        problem = _header_text_problem(value, spaces_inside=True)
        if problem:
            raise ValueError(f"the value of header {name!r} {problem}; the value itself is not shown")
        if any(name.lower() == seen.lower() for seen in checked):
            raise ValueError(f"headers name {name!r} twice (header names are case-insensitive)")
        checked[name] = value
    return checked


def _header_text_problem(text: str, *, spaces_inside: bool) -> str | None:
    """What keeps ``text`` from being a header value (httpx encodes them as ASCII), or ``None``."""
    if text[-1:] in ("\n", "\r"):
        return "ends with a line break (as text read from a file does): strip it, e.g. value.strip()"
    if text != text.strip():
        return "starts or ends with whitespace: strip it, e.g. value.strip()"
    for position, char in enumerate(text):
        if char in "\r\n":
            return f"holds a line break at character {position}: a header value is one line"
        if ord(char) > 0x7E:
            return (
                f"holds a non-ASCII character at character {position}: header values are ASCII; "
                "check that it was copied without a stray character"
            )
        if ord(char) < 0x20 or ord(char) == 0x7F:
            if char == "\t" and spaces_inside:
                continue
            return f"holds a control character at character {position}"
        if char == " " and not spaces_inside:
            return f"holds a space at character {position}: a key is one word"
    return None


@dataclass(frozen=True, eq=False)  # compared by identity: the log filter keeps each live one, however alike
class Redactor:
    """Blanks the secrets a reranker holds out of text that came from a server.

    Each secret is blanked as it is and in the forms an echo may show it in: percent-encoded and
    JSON-escaped; for a header value such as ``Bearer <token>``, the token on its own too.

    Attributes:
        secrets: The texts to blank, longest first (so a secret that contains another goes whole).
    """

    secrets: tuple[str, ...] = ()

    @classmethod
    def of(cls, *, api_key: str | None, headers: Mapping[str, str], secret_headers: Collection[str] = ()) -> Redactor:
        """The redactor for a reranker's key and the secret ones among its headers."""
        values = [api_key] if api_key else []
        for name, value in headers.items():
            if is_secret_header(name, secret_headers):
                values.append(value)
                words = value.split()
                if len(words) == 2:  # "<scheme> <credential>": the credential may be echoed alone
                    values.append(words[1])
        forms = {form for value in values for form in (value, quote(value, safe=""), json.dumps(value)[1:-1])}
        return cls(tuple(sorted((form for form in forms if form), key=len, reverse=True)))

    def __call__(self, text: str) -> str:
        """``text`` with every secret replaced by :data:`REDACTED`."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def __repr__(self) -> str:
        return f"Redactor({len(self.secrets)} secrets)"


NO_SECRETS = Redactor()
"""A redactor with nothing to blank (for code that holds no secret)."""


# The loggers httpx and httpcore write server text to (a filter on a parent logger does not see
# its children's records, so each is named).
_HTTP_LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy")
_live: weakref.WeakSet[Redactor] = weakref.WeakSet()
_live_lock = threading.Lock()


class _BlankSecrets(logging.Filter):
    """Blanks the secrets of every live reranker out of an httpx or httpcore log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        with _live_lock:
            redactors = list(_live)
        if redactors:
            message = record.getMessage()
            blanked = message
            for redact in redactors:
                blanked = redact(blanked)
            if blanked != message:
                record.msg, record.args = blanked, None
        return True


_FILTER = _BlankSecrets()


def guard_http_logs(redactor: Redactor) -> None:
    """Blank ``redactor``'s secrets out of httpx's and httpcore's log records while it lives."""
    if not redactor.secrets:
        return
    with _live_lock:
        _live.add(redactor)
    for name in _HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


@dataclass(frozen=True, repr=False)
class Secret:
    """A secret value (an API key) that does not show itself: ``repr`` and ``str`` print ``***``.

    Attributes:
        source: Where it came from: ``"api_key"`` or the environment variable it was read from.
    """

    _value: str
    source: str = "api_key"

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r}, source={self.source!r})"

    __str__ = __repr__


def on_hosts(endpoint: object, hosts: Collection[str]) -> bool:
    """Whether ``endpoint`` is one ``https`` URL on one of ``hosts`` (on the default port)."""
    if not isinstance(endpoint, str):
        return False
    try:
        parts = urlsplit(endpoint.strip())
        return parts.scheme == "https" and parts.hostname in hosts and parts.port in (None, 443)
    except ValueError:
        return False


def environment_key(endpoint: object, *, hosts: Collection[str], variables: Sequence[str]) -> Secret | None:
    """A provider's API key from the environment, only for an ``https`` endpoint on one of its own ``hosts``.

    The providers' SDKs read these variables (``COHERE_API_KEY``, ``VOYAGE_API_KEY``, ...); a key
    meant for a provider must never reach a user's own server, so any other endpoint gets ``None``.

    Args:
        endpoint: The URL the reranker was given.
        hosts: The provider's API hosts (``api.voyageai.com``).
        variables: The variables to read, first set first; surrounding whitespace is stripped.

    Returns:
        The key with the variable it came from, or ``None``.
    """
    if not on_hosts(endpoint, hosts):
        return None
    for name in variables:
        value = os.environ.get(name, "").strip()
        if value:
            return Secret(value, source=name)
    return None
