"""LlamaIndex adapter of milvus-rerank: a rerank node postprocessor and a Milvus retriever with reranking."""
