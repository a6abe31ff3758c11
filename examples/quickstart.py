"""Quickstart without a framework: fill a Milvus Lite collection, then retrieve and rerank.

pip install -e ".[cli]"      # from a clone
python examples/quickstart.py                                             # default models (downloaded once)
python examples/quickstart.py --reranker-model DIR --embedding-model DIR  # offline, local copies
python examples/quickstart.py --vllm-endpoint http://localhost:8000       # rerank on a vLLM server
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import transformers
from pymilvus import MilvusClient
from sentence_transformers import SentenceTransformer

from milvus_rerank import CrossEncoderReranker, MilvusRerankError, MilvusRetriever, RerankPipeline, VLLMReranker
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question", nargs="?", default="At what wind speed must the main dome close?")
    parser.add_argument("--reranker-model", default="cross-encoder/ms-marco-MiniLM-L-6-v2")
    parser.add_argument("--embedding-model", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--vllm-endpoint", help="rerank on this vLLM server instead of in-process")
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
            client = MilvusClient(f"{folder}/quickstart.db")
            create_rag_collection(client, "handbook", dim=len(embedder.encode("dimension probe")))
            ingest(client, "handbook", list(PASSAGES.items()), embedding=embedder, show_progress=not args.quiet)
            retriever = MilvusRetriever(client, "handbook", mode="hybrid", embedding=embedder, limit=20)
            print(f"Q: {args.question}")
            for c in RerankPipeline(reranker, retriever=retriever, top_n=3).run(args.question):
                print(f"{c.rank}. {c.id}  rerank {c.rerank_score:.4f}  (first stage #{c.retrieval_rank})  {c.text}")
            client.close()
    except (MilvusRerankError, OSError, ValueError) as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
