"""milvus-rerank: a reranking stage between Milvus retrieval and the LLM.

Public names are imported lazily, so ``import milvus_rerank`` stays light: it pulls in neither
torch, transformers, LangChain nor LlamaIndex until a class that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from milvus_rerank.errors import (
    CollectionNotFoundError,
    MilvusRerankError,
    ModelLoadError,
    RerankConnectionError,
    RerankError,
    RerankHTTPError,
    RerankResponseError,
    RerankTimeoutError,
    RetrievalError,
    SchemaError,
)
from milvus_rerank.types import Candidate, Reranker, RerankResult

if TYPE_CHECKING:
    from milvus_rerank.milvus.export import model_ranker
    from milvus_rerank.milvus.retriever import MilvusRetriever
    from milvus_rerank.pipeline import RerankPipeline
    from milvus_rerank.rerankers.fallback import FallbackReranker
    from milvus_rerank.rerankers.http.chat import ChatListwiseReranker
    from milvus_rerank.rerankers.http.cohere import CohereReranker
    from milvus_rerank.rerankers.http.jina import JinaReranker
    from milvus_rerank.rerankers.http.options import HTTPOptions
    from milvus_rerank.rerankers.http.retry import RetryPolicy
    from milvus_rerank.rerankers.http.tei import TEIReranker
    from milvus_rerank.rerankers.http.vllm import VLLMReranker
    from milvus_rerank.rerankers.http.voyage import VoyageReranker
    from milvus_rerank.rerankers.listwise import ListwiseStats
    from milvus_rerank.rerankers.local.cross_encoder import CrossEncoderReranker
    from milvus_rerank.rerankers.prompts import PromptFormat

__version__ = "0.1.0"

_LAZY = {
    "CrossEncoderReranker": "milvus_rerank.rerankers.local.cross_encoder",
    "VLLMReranker": "milvus_rerank.rerankers.http.vllm",
    "FallbackReranker": "milvus_rerank.rerankers.fallback",
    "TEIReranker": "milvus_rerank.rerankers.http.tei",
    "CohereReranker": "milvus_rerank.rerankers.http.cohere",
    "VoyageReranker": "milvus_rerank.rerankers.http.voyage",
    "JinaReranker": "milvus_rerank.rerankers.http.jina",
    "model_ranker": "milvus_rerank.milvus.export",
    "ChatListwiseReranker": "milvus_rerank.rerankers.http.chat",
    "ListwiseStats": "milvus_rerank.rerankers.listwise",
    "HTTPOptions": "milvus_rerank.rerankers.http.options",
    "RetryPolicy": "milvus_rerank.rerankers.http.retry",
    "MilvusRetriever": "milvus_rerank.milvus.retriever",
    "RerankPipeline": "milvus_rerank.pipeline",
    "PromptFormat": "milvus_rerank.rerankers.prompts",
}

__all__ = [
    "Candidate",
    "ChatListwiseReranker",
    "CohereReranker",
    "CollectionNotFoundError",
    "CrossEncoderReranker",
    "FallbackReranker",
    "HTTPOptions",
    "JinaReranker",
    "ListwiseStats",
    "MilvusRerankError",
    "MilvusRetriever",
    "ModelLoadError",
    "PromptFormat",
    "RerankConnectionError",
    "RerankError",
    "RerankHTTPError",
    "RerankPipeline",
    "RerankResponseError",
    "RerankResult",
    "RerankTimeoutError",
    "Reranker",
    "RetrievalError",
    "RetryPolicy",
    "SchemaError",
    "TEIReranker",
    "VLLMReranker",
    "VoyageReranker",
    "__version__",
    "model_ranker",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'milvus_rerank' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
