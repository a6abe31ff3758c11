"""Quickstart without a framework: fill a Milvus Lite collection, then retrieve and rerank.

    python examples/quickstart.py                       # default models (downloaded on first use)
    python examples/quickstart.py --reranker-model DIR --embedding-model DIR   # offline, local copies
    python examples/quickstart.py --vllm-endpoint http://localhost:8000       # rerank on a vLLM server

It ingests the shipped demo corpus (a fictional observatory handbook), runs a hybrid (dense + BM25)
search for 20 candidates and prints the 3 that the cross-encoder ranks best, with both scores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from pymilvus import MilvusClient

from milvus_rerank import MilvusRerankError, MilvusRetriever, RerankPipeline
from milvus_rerank.cli.corpus import load_corpus
from milvus_rerank.cli.models import load_embedding_model, make_reranker, standin_warning
from milvus_rerank.cli.options import add_model_arguments
from milvus_rerank.milvus import create_rag_collection, ingest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("question", nargs="?", default="At what wind speed must the main dome close?")
    add_model_arguments(parser)
    args = parser.parse_args()
    try:
        embedder = load_embedding_model(args.embedding_model)
        reranker = make_reranker(args)
        with tempfile.TemporaryDirectory() as tmp:
            client = MilvusClient(str(Path(tmp) / "quickstart.db"))
            create_rag_collection(client, "handbook", dim=embedder.get_sentence_embedding_dimension())
            ingest(client, "handbook", load_corpus(), embedding=embedder)

            retriever = MilvusRetriever(client, "handbook", mode="hybrid", embedding=embedder, limit=20)
            pipeline = RerankPipeline(reranker, retriever=retriever, top_n=3)
            warning = standin_warning(args)
            if warning:
                print(warning)
            print(f"Q: {args.question}")
            for c in pipeline.run(args.question):
                print(
                    f"{c.rank}. {c.id}  rerank {c.rerank_score:.4f}  (first stage #{c.retrieval_rank}, "
                    f"RRF {c.score:.4f})  {c.text[:90]}..."
                )
            client.close()
    except MilvusRerankError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
