"""Milvus first-stage retrieval (dense, sparse BM25, hybrid), collection helpers and server-side Functions."""
