"""What an HTTP reranker calls, as plain data: :class:`RerankService`, from ``reranker.describe()``.

The description is what another component needs to call the same service itself, such as a
Milvus server running a model ranker (:func:`milvus_rerank.milvus.export.model_ranker` turns
it into a ``pymilvus.Function``): the protocol, the URLs, the model, the batch size, the
protocol's own options and the key, held as a :class:`~.credentials.Secret`. Nothing here imports
Milvus, and the rerankers never import what reads their description.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from milvus_rerank.rerankers.http.credentials import Secret

__all__ = ["Protocol", "RerankService"]

Protocol = Literal["vllm", "tei", "cohere", "voyage", "jina"]
"""The wire protocols of the HTTP rerankers (one per reranker class)."""


@dataclass(frozen=True)
class RerankService:
    """A rerank service as an HTTP reranker calls it (plain, frozen data; the key never shows).

    Attributes:
        protocol: The wire protocol: ``"vllm"``, ``"tei"``, ``"cohere"``, ``"voyage"`` or ``"jina"``.
        base_url: ``scheme://host[:port][/prefix]`` without the rerank route.
        rerank_url: The full URL rerank requests are posted to.
        model: The model name sent with requests, or ``None`` when none is sent.
        batch_size: Documents per request.
        api_key: The key, if any, as a :class:`~milvus_rerank.rerankers.http.credentials.Secret`
            (its ``source`` says whether it came from ``api_key=`` or an environment variable).
        options: The protocol's own settings, by their constructor names (``truncate_prompt_tokens``,
            ``raw_scores``, ``truncation``, ...); ``prompt_format`` as its name (``"custom"`` for
            one without), ``instruction`` as ``True`` when one is set.
    """

    protocol: Protocol
    base_url: str
    rerank_url: str
    model: str | None
    batch_size: int
    api_key: Secret | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
