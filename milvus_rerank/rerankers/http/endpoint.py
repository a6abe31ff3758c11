"""Rerank endpoints: the URL a user configured, normalised to the URLs the client calls, and made safe to show.

Users write ``http://host:8000``, ``http://host:8000/v1`` or a full ``.../v1/rerank`` URL for the
same server; :class:`Endpoint` turns each into a base URL (for other routes such as
``/v1/models``) and the rerank URL. An endpoint never carries a credential (user-info or a query
string are refused); :func:`redact_url` is still the one place where any URL, such as a redirect's
target, is stripped of them before it reaches a message, a log line or an exception.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

__all__ = ["Endpoint", "redact_url"]


@dataclass(frozen=True)
class Endpoint:
    """A normalised rerank endpoint.

    Attributes:
        base_url: ``scheme://host[:port][/prefix]`` without a version segment or route.
        rerank_url: The URL the rerank requests are posted to.
    """

    base_url: str
    rerank_url: str

    @classmethod
    def parse(cls, endpoint: str, *, default_route: str, routes: Sequence[str]) -> Endpoint:
        """Accept a base URL, a versioned base (``.../v1``) or a full rerank URL.

        Args:
            endpoint: What the user configured, e.g. ``http://host:8000``, ``http://host:8000/v1``
                or ``http://host:8000/v1/rerank``.
            default_route: Route appended to a base URL, e.g. ``/v1/rerank``.
            routes: Routes recognised at the end of a full URL (longest first is not required).

        Raises:
            TypeError: ``endpoint`` is not a string.
            ValueError: The URL has no ``http``/``https`` scheme or no host, or it carries
                user-info (``user:key@``) or a query string (``?token=...``): a credential there
                would reach httpx's request log.
        """
        if not isinstance(endpoint, str):
            raise TypeError(f"endpoint must be a str URL, got {type(endpoint).__name__}")
        parts = urlsplit(endpoint.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"endpoint must be an http(s) URL such as 'http://localhost:8000', got {redact_url(endpoint)!r}"
            )
        if "@" in parts.netloc or parts.query:
            # httpx logs the full URL of every request at INFO: a credential in it would reach the logs.
            raise ValueError(
                f"endpoint {redact_url(endpoint)!r} carries "
                f"{'credentials' if '@' in parts.netloc else 'a query string'}, which httpx would log with "
                "every request: pass the key as api_key= (sent as Authorization: Bearer) or in headers=, "
                "and the endpoint without it"
            )
        path = parts.path.rstrip("/")
        for route in sorted(routes, key=len, reverse=True):
            if path.endswith(route):
                base_path = path[: -len(route)]
                return cls(_with_path(parts, base_path), _with_path(parts, path))
        version = re.search(r"/v\d+$", path)
        if version:
            base_path = path[: version.start()]
            # The protocol's own route under the version the user wrote (``/v1`` + ``/chat/completions``).
            route = version.group(0) + re.sub(r"^/v\d+", "", default_route)
        else:
            base_path, route = path, default_route
        return cls(_with_path(parts, base_path), _with_path(parts, base_path + route))

    @property
    def display(self) -> str:
        """The rerank URL without credentials or query string, safe for messages."""
        return redact_url(self.rerank_url)

    def url(self, route: str) -> str:
        """The URL of another route under the same base, e.g. ``/v1/models``."""
        return self.base_url + route


def _with_path(parts: SplitResult, path: str) -> str:
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def redact_url(url: str) -> str:
    """Drop user-info and query string from a URL so that no credential reaches a message."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rsplit("@", 1)[-1]
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<invalid URL>"
