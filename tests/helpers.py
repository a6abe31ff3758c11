"""Helpers shared by several test modules (import them as ``from helpers import ...``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from milvus_rerank.errors import RerankConnectionError
from milvus_rerank.rerankers.base import check_rerank_args
from milvus_rerank.testing.server import WordOverlapReranker
from milvus_rerank.types import RerankResult


class OverlapReranker(WordOverlapReranker):
    """A user's own reranker: word-overlap scores; records every valid call and the thread it ran on.

    Its ``arerank`` yields to the event loop first, so concurrent calls interleave, and never goes
    through ``self.rerank`` (a subclass may make the sync path fail).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], int | None]] = []
        self.threads: list[int] = []

    def record(self, query: str, documents: Sequence[str], top_n: int | None) -> None:
        check_rerank_args(query, documents, top_n)
        self.calls.append((query, list(documents), top_n))
        self.threads.append(threading.get_ident())

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        self.record(query, documents, top_n)
        return super().rerank(query, documents, top_n=top_n)

    async def arerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        await asyncio.sleep(0)
        self.record(query, documents, top_n)
        return super().rerank(query, documents, top_n=top_n)


class FailingReranker:
    """A reranker whose service is unreachable: every call raises ``RerankConnectionError``."""

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        raise RerankConnectionError("cannot reach http://127.0.0.1:9/rerank", endpoint="http://127.0.0.1:9/rerank")

    async def arerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> list[RerankResult]:
        return self.rerank(query, documents, top_n=top_n)
