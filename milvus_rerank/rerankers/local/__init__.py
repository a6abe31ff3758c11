"""Local rerankers: Hugging Face models run in-process (``pip install 'milvus-rerank[local]'``)."""

from milvus_rerank.rerankers.local.cross_encoder import CrossEncoderReranker

__all__ = ["CrossEncoderReranker"]
