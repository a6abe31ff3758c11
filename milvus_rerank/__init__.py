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
    from milvus_rerank.milvus.retriever import MilvusRetriever
    from milvus_rerank.pipeline import RerankPipeline
    from milvus_rerank.rerankers.http.cohere import CohereReranker
    from milvus_rerank.rerankers.http.options import HTTPOptions
    from milvus_rerank.rerankers.http.retry import RetryPolicy
    from milvus_rerank.rerankers.http.tei import TEIReranker
    from milvus_rerank.rerankers.http.vllm import VLLMReranker
    from milvus_rerank.rerankers.local.cross_encoder import CrossEncoderReranker
    from milvus_rerank.rerankers.prompts import PromptFormat

__version__ = "0.1.0"

_LAZY = {
    "CrossEncoderReranker": "milvus_rerank.rerankers.local.cross_encoder",
    "VLLMReranker": "milvus_rerank.rerankers.http.vllm",
    "TEIReranker": "milvus_rerank.rerankers.http.tei",
    "CohereReranker": "milvus_rerank.rerankers.http.cohere",
    "HTTPOptions": "milvus_rerank.rerankers.http.options",
    "RetryPolicy": "milvus_rerank.rerankers.http.retry",
    "MilvusRetriever": "milvus_rerank.milvus.retriever",
    "RerankPipeline": "milvus_rerank.pipeline",
    "PromptFormat": "milvus_rerank.rerankers.prompts",
}

__all__ = [
    "Candidate",
    "CohereReranker",
    "CollectionNotFoundError",
    "CrossEncoderReranker",
    "HTTPOptions",
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
    "RetryPolicy",
    "RetrievalError",
    "SchemaError",
    "TEIReranker",
    "VLLMReranker",
    "__version__",
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
