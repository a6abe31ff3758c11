"""Rerankers, one module per runtime: HTTP services (vLLM, TEI, Cohere-compatible) and local models."""
