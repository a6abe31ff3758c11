"""What importing the packages costs and reaches: no heavy dependency, no app, every public name resolvable.

Each check runs in a fresh interpreter, so modules another test imported cannot hide an import.
"""

from __future__ import annotations

import subprocess
import sys

import pytest


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_import_pulls_no_heavy_dependency() -> None:
    code = (
        "import sys, milvus_rerank\n"
        "heavy = [m for m in ('torch', 'transformers', 'langchain_core', 'llama_index') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    assert run(code) == ""


def test_the_library_never_imports_the_app() -> None:
    # The check of the restructuring issue, plus the lazy public names, which must resolve without the CLI too.
    code = (
        "import sys, milvus_rerank, milvus_rerank.pipeline, milvus_rerank.milvus, milvus_rerank.rerankers\n"
        "for name in milvus_rerank.__all__: getattr(milvus_rerank, name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('milvus_rerank.cli')))"
    )
    assert run(code) == "[]"


def test_public_retriever_resolves_lazily_without_starting_pymilvus() -> None:
    # pymilvus loads grpc and protobuf (about a second): only building a retriever or a collection may pay for it.
    code = (
        "import sys, milvus_rerank\n"
        "from milvus_rerank import MilvusRetriever, RerankPipeline\n"
        "from milvus_rerank.milvus import SearchOptions, create_rag_collection, ingest\n"
        "from milvus_rerank.milvus.schema import infer_layout\n"
        "print(MilvusRetriever.__module__, RerankPipeline.__module__, 'pymilvus' in sys.modules)"
    )
    assert run(code) == "milvus_rerank.milvus.retriever milvus_rerank.pipeline False"


@pytest.mark.parametrize("package", ["milvus_rerank", "langchain_milvus_rerank", "llamaindex_milvus_rerank"])
def test_every_public_name_resolves_and_is_listed(package: str) -> None:
    code = (
        f"import {package} as p\n"
        "missing = [n for n in p.__all__ if getattr(p, n, None) is None]\n"
        "unlisted = sorted(set(n for n in dir(p) if not n.startswith('_') and n[0].isupper()) - set(p.__all__))\n"
        "print(missing, unlisted)"
    )
    assert run(code) == "[] []"
