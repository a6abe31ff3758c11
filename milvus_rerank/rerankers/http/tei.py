"""A reranker served by Hugging Face text-embeddings-inference (TEI) over its ``/rerank`` route."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, Literal

from milvus_rerank.errors import RerankHTTPError
from milvus_rerank.rerankers.http.client import HTTPReranker
from milvus_rerank.rerankers.http.options import HTTPOptions, Unpack

__all__ = ["TEIReranker", "build_tei_payload"]

logger = logging.getLogger("milvus_rerank.http")

_BATCH_LIMIT = re.compile(r"maximum allowed batch size (\d+)", re.IGNORECASE)


def build_tei_payload(
    query: str,
    documents: Sequence[str],
    *,
    raw_scores: bool,
    truncate: bool,
    truncation_direction: str | None,
) -> dict[str, Any]:
    """The body of TEI's ``POST /rerank`` for one batch (pure). TEI has no ``top_n``."""
    payload: dict[str, Any] = {"query": query, "texts": list(documents), "raw_scores": raw_scores}
    if truncate:
        payload["truncate"] = True
    if truncation_direction is not None:
        payload["truncation_direction"] = truncation_direction
    return payload


class TEIReranker(HTTPReranker):
    """Rerank with a cross-encoder served by text-embeddings-inference.

    Documents go in batches of ``max_batch_size`` when given, otherwise of what ``GET /info``
    reports (``max_client_batch_size``), otherwise 32. The options not listed here are those of
    every HTTP reranker: :class:`~milvus_rerank.HTTPOptions`. TEI does not serve LLM rerankers:
    use :class:`~milvus_rerank.VLLMReranker` or :class:`~milvus_rerank.CrossEncoderReranker`.

    Args:
        endpoint: ``http://host:8080`` or ``http://host:8080/rerank``; or a list of servers of the same model.
        raw_scores: Ask for raw logits instead of the sigmoid.
        truncate: Let TEI truncate inputs longer than its ``max_input_length`` instead of failing.
        truncation_direction: ``"Left"`` or ``"Right"`` (TEI's default) when truncating.
        model: Informational only: TEI serves one model and takes no model name.
    """

    protocol = "tei"
    default_route = "/rerank"
    routes = ("/rerank",)
    score_key = "score"
    reserved_fields = frozenset({"query", "texts"})
    default_batch_size = 32
    discovery_route = "/info"
    discovers = "its batch limit"
    sends_top_n = False  # TEI returns every text whatever is asked: the cut happens on the client

    def __init__(
        self,
        endpoint: str | Sequence[str],
        *,
        raw_scores: bool = False,
        truncate: bool = False,
        truncation_direction: Literal["Left", "Right"] | None = None,
        model: str | None = None,
        **options: Unpack[HTTPOptions],
    ) -> None:
        """Check and keep the options (described on the class); no request is made yet."""
        super().__init__(endpoint, model=model, **options)
        for name, flag in (("raw_scores", raw_scores), ("truncate", truncate)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        if truncation_direction not in (None, "Left", "Right"):
            raise ValueError(f"truncation_direction must be 'Left', 'Right' or None, got {truncation_direction!r}")
        self.raw_scores = raw_scores
        self.truncate = truncate
        self.truncation_direction = truncation_direction

    def _build_payload(self, query: str, documents: Sequence[str], top_n: int | None) -> dict[str, Any]:
        return build_tei_payload(
            query,
            documents,
            raw_scores=self.raw_scores,
            truncate=self.truncate,
            truncation_direction=self.truncation_direction,
        )

    def _extract_items(self, body: Any) -> Any:
        if isinstance(body, list):
            return body
        raise ValueError(f"expected a JSON array of results, got {type(body).__name__}")

    def _http_error(self, endpoint: str, status: int, message: str, tries: str) -> RerankHTTPError:
        error = super()._http_error(endpoint, status, message, tries)
        limit = _BATCH_LIMIT.search(message)
        if status in (413, 422) and limit:
            size = limit.group(1)
            hint = f"; the server takes at most {size} texts per request: pass max_batch_size={size}"
            return RerankHTTPError(str(error) + hint, endpoint=endpoint, status_code=status, server_message=message)
        return error

    # -- batch size from /info ------------------------------------------------------------------

    def _needs_discovery(self) -> bool:
        return self._batch_size is None

    def _adopt(self, body: Any) -> None:
        size = body.get("max_client_batch_size") if isinstance(body, dict) else None
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            self._batch_size = size
            logger.info("%s accepts %d texts per request", self.endpoint.display, size)
        else:
            self._batch_size = self.default_batch_size

    def _discovery_failed(self, exc: RerankHTTPError) -> None:
        if exc.status_code not in (401, 403, 404, 405):
            raise exc
        logger.info(
            "%s has no usable /info (HTTP %d); using batches of %d",
            self.endpoint.display,
            exc.status_code,
            self.default_batch_size,
        )
        self._batch_size = self.default_batch_size

    # -- what Milvus's model ranker needs (see HTTPReranker.describe) ----------------------------

    def _service_options(self) -> dict[str, Any]:
        return {
            "raw_scores": self.raw_scores,
            "truncate": self.truncate,
            "truncation_direction": self.truncation_direction,
        }
