"""`import milvus_rerank` stays light: no torch, transformers or framework import."""

from __future__ import annotations

import subprocess
import sys


def test_import_pulls_no_heavy_dependency() -> None:
    code = (
        "import sys, milvus_rerank\n"
        "heavy = [m for m in ('torch', 'transformers', 'langchain_core', 'llama_index') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
