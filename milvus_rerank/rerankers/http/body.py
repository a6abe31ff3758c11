"""Reading a response body with a cap on its decoded size: no answer can fill the memory.

httpx inflates a compressed body whole, chunk by chunk, before the caller sees a byte of it, so a
few hundred KiB of gzip can become gigabytes. The client therefore reads the raw bytes
(``Response.iter_raw``) and inflates them here with ``zlib``'s ``max_length``, never producing
more than the cap allows. Only the encodings it can bound are asked for (:data:`ACCEPT_ENCODING`);
a server that sends another one gets a :class:`~milvus_rerank.errors.RerankResponseError`, as
does an answer over the cap. Error bodies, read only for their message, are cut at the cap
instead.
"""

from __future__ import annotations

import zlib

from milvus_rerank.errors import RerankResponseError

__all__ = ["ACCEPT_ENCODING", "BodyReader"]

ACCEPT_ENCODING = "gzip, deflate"
"""The ``Accept-Encoding`` every request sends: the encodings :class:`BodyReader` decodes."""

_STEP = 1024 * 1024  # the most output one call to zlib may make

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class BodyReader:
    """Collects one response body, decoded, up to ``limit`` bytes.

    Args:
        content_encoding: The response's ``Content-Encoding`` header, if any.
        limit: The most decoded bytes to keep.
        endpoint: The redacted URL, for error messages.
        cut: Keep the first ``limit`` bytes and stop (an error body) instead of failing.

    Raises:
        RerankResponseError: An encoding it cannot bound (on construction), a body that does
            not decode, or more than ``limit`` decoded bytes when not ``cut``.
    """

    def __init__(self, content_encoding: str | None, *, limit: int, endpoint: str, cut: bool = False) -> None:
        """Prepare the decoder for ``content_encoding``."""
        encoding = (content_encoding or "identity").strip().lower()
        self._limit = limit
        self._endpoint = endpoint
        self._cut = cut
        self._parts: list[bytes] = []
        self._size = 0
        self._first = True
        self.full = False
        """Whether the cut body has reached ``limit`` (nothing more will be kept)."""
        if encoding in ("identity", ""):
            self._wbits: int | None = None
        elif encoding in _WBITS:
            self._wbits = _WBITS[encoding]
        else:
            raise RerankResponseError(
                f"{endpoint} sent a body in Content-Encoding {encoding!r}, which is not decoded here "
                f"(only {ACCEPT_ENCODING} are asked for); configure the server or proxy to send one of those",
                endpoint=endpoint,
            )
        self._inflater = zlib.decompressobj(self._wbits) if self._wbits is not None else None

    def feed(self, data: bytes) -> None:
        """Decode and keep one raw chunk."""
        if self.full:
            return
        if self._inflater is None:
            self._keep(data)
            return
        pending = data
        while not self.full:
            step = min(self._limit - self._size + 1, _STEP)  # small steps: memory stays near the cap
            try:
                piece = self._inflater.decompress(pending, step)
            except zlib.error:
                if self._first and self._wbits == zlib.MAX_WBITS:
                    # Some servers send raw deflate without the zlib header "deflate" means.
                    self._wbits = -zlib.MAX_WBITS
                    self._inflater = zlib.decompressobj(self._wbits)
                    continue
                raise RerankResponseError(
                    f"{self._endpoint} sent a compressed body that does not decode", endpoint=self._endpoint
                ) from None
            self._first = False
            self._keep(piece)
            pending = self._inflater.unconsumed_tail
            # A full step may have left output inside zlib even with no input left: ask again.
            if not pending and len(piece) < step:
                break

    def content(self) -> bytes:
        """The decoded body."""
        return b"".join(self._parts)

    def _keep(self, piece: bytes) -> None:
        room = self._limit - self._size
        if len(piece) > room:
            if not self._cut:
                raise RerankResponseError(
                    f"{self._endpoint} sent an answer of more than max_response_bytes={self._limit} bytes "
                    "(decoded); lower max_batch_size= or raise max_response_bytes=",
                    endpoint=self._endpoint,
                )
            piece = piece[:room]
            self.full = True
        self._parts.append(piece)
        self._size += len(piece)
