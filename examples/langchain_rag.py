"""RAG with LangChain over Milvus Lite: hybrid retrieval -> cross-encoder rerank -> answer.

    pip install -e ".[cli,langchain]"      # from a clone; and langchain-openai for --llm-endpoint
    python examples/langchain_rag.py                                  # extractive answer, no LLM
    python examples/langchain_rag.py --llm-endpoint http://localhost:8001/v1 --llm-model Qwen/Qwen2.5-1.5B-Instruct
    python examples/langchain_rag.py --reranker-model DIR --embedding-model DIR   # offline, local copies

The LLM is LangChain's ChatOpenAI on any OpenAI-compatible server (vLLM, llama.cpp, Ollama); its
key is read from $OPENAI_API_KEY. Without --llm-endpoint the answer quotes the best passage.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile

import transformers
from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough
from pymilvus import MilvusClient
from sentence_transformers import SentenceTransformer

from langchain_milvus_rerank import MilvusRerankRetriever
from milvus_rerank import CrossEncoderReranker, MilvusRerankError, VLLMReranker
from milvus_rerank.hub import is_standin
from milvus_rerank.milvus import create_rag_collection, ingest

PASSAGES = {
    "dome": "The main dome must be closed when the wind exceeds 15 m/s, averaged over one minute.",
    "roof": "The roll-off roof of the small telescopes may stay open in wind up to 20 m/s.",
    "shuttle": "The summit shuttle does not run when the wind on the road exceeds 25 m/s.",
    "humidity": "Close the dome when the relative humidity rises above 90 percent.",
    "frames": "Raw frames are kept for ten years, reduced frames for five.",
    "altitude": "Headache and dizziness on the summit are signs of altitude sickness: go down at once.",
}
PROMPT = ChatPromptTemplate.from_template(
    "Answer from these passages only, citing them as [1], [2]...\n\n{passages}\n\nQuestion: {question}"
)


def extractive_answer(inputs: dict) -> str:
    """The sentence of the top passage sharing most words with the question, quoted."""
    words = set(re.findall(r"\w+", inputs["question"].lower()))
    sentences = re.split(r"(?<=[.!?])\s+", inputs["documents"][0].page_content) if inputs["documents"] else []
    best = max(sentences, key=lambda s: len(words & set(re.findall(r"\w+", s.lower()))), default="")
    return f'Extractive answer (no LLM configured): "{best}" [1]'


def numbered(inputs: dict) -> dict:
    documents: list[Document] = inputs["documents"]
    passages = "\n".join(f"[{n}] {d.page_content}" for n, d in enumerate(documents, start=1))
    return {"passages": passages, "question": inputs["question"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--question", default="At what wind speed must the main dome close?")
    parser.add_argument("--reranker-model", default="cross-encoder/ms-marco-MiniLM-L-6-v2")
    parser.add_argument("--embedding-model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--vllm-endpoint", help="rerank on this vLLM server instead of in-process")
    parser.add_argument("--llm-endpoint", help="OpenAI-compatible chat endpoint (needs langchain-openai)")
    parser.add_argument("--llm-model", default="default")
    parser.add_argument("--top-n", type=int, default=3)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args()
    if args.quiet:
        transformers.logging.disable_progress_bar()
    try:
        embedder = SentenceTransformer(args.embedding_model)
        if args.vllm_endpoint:
            reranker = VLLMReranker(args.vllm_endpoint)
        else:
            reranker = CrossEncoderReranker(args.reranker_model).load()
            if is_standin(args.reranker_model):
                print(f"NOTE: the reranker {args.reranker_model} is a stand-in with RANDOM weights: random order")
        with tempfile.TemporaryDirectory() as folder:
            client = MilvusClient(f"{folder}/rag.db")
            create_rag_collection(client, "handbook", dim=len(embedder.encode("dimension probe")))
            ingest(client, "handbook", list(PASSAGES.items()), embedding=embedder, show_progress=not args.quiet)
            retriever = MilvusRerankRetriever(
                client=client, collection_name="handbook", embedding=embedder, reranker=reranker, top_n=args.top_n
            )
            if args.llm_endpoint:
                from langchain_openai import ChatOpenAI

                llm = ChatOpenAI(base_url=args.llm_endpoint, model=args.llm_model, temperature=0)
                answer = RunnableLambda(numbered) | PROMPT | llm | StrOutputParser()
            else:
                answer = RunnableLambda(extractive_answer)
            chain = RunnableParallel(documents=retriever, question=RunnablePassthrough()).assign(answer=answer)
            result = chain.invoke(args.question)
            print(f"Q: {args.question}")
            for n, d in enumerate(result["documents"], start=1):
                print(f"[{n}] {d.id}  rerank {d.metadata['relevance_score']:.4f}  {d.page_content}")
            print(result["answer"])
            client.close()
    except (MilvusRerankError, OSError, ValueError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
