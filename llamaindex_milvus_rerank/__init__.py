"""LlamaIndex adapter of milvus-rerank: a rerank node postprocessor and a Milvus retriever with reranking.

Requires the ``llamaindex`` extra: ``pip install 'milvus-rerank[llamaindex]'``.
"""

from __future__ import annotations

try:
    import llama_index.core  # noqa: F401  (imported first only to say which extra is missing)
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        f"llamaindex_milvus_rerank needs LlamaIndex, and {exc.name} is not installed: "
        "pip install 'milvus-rerank[llamaindex]'",
        name=exc.name,
    ) from exc

from llamaindex_milvus_rerank.nodes import RETRIEVAL_RANK_KEY, RETRIEVAL_SCORE_KEY, candidate_to_node
from llamaindex_milvus_rerank.postprocessor import RerankPostprocessor
from llamaindex_milvus_rerank.retriever import MilvusRerankRetriever

__all__ = [
    "RETRIEVAL_RANK_KEY",
    "RETRIEVAL_SCORE_KEY",
    "MilvusRerankRetriever",
    "RerankPostprocessor",
    "candidate_to_node",
]
