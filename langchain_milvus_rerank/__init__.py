"""LangChain adapter of milvus-rerank: a rerank document compressor and a Milvus retriever with reranking."""
