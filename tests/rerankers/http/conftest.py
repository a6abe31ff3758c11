"""Fixtures of the HTTP reranker tests: a :class:`helpers.Caller` for either path, and a loopback rerank server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import Caller

from milvus_rerank.testing.server import RerankTestServer


@pytest.fixture(params=["sync", "async"])
def call(request: pytest.FixtureRequest) -> Iterator[Caller]:
    caller = Caller(str(request.param))
    yield caller
    caller.close()


@pytest.fixture
def server() -> Iterator[RerankTestServer]:
    with RerankTestServer() as running:
        yield running
