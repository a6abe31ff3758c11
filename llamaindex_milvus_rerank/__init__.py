"""LlamaIndex adapter of milvus-rerank: a rerank node postprocessor and a Milvus retriever with reranking.

Requires the ``llamaindex`` extra: ``pip install 'milvus-rerank[llamaindex]'``.
"""

from __future__ import annotations

from llamaindex_milvus_rerank.postprocessor import RETRIEVAL_SCORE_KEY, RerankPostprocessor

__all__ = ["RETRIEVAL_SCORE_KEY", "RerankPostprocessor"]
