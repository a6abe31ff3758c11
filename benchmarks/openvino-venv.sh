#!/usr/bin/env bash
# Makes .venv-openvino (beside .venv): sentence-transformers with its [openvino] extra, which pins transformers
# to what optimum-intel supports, so it cannot share the project's venv. benchmarks/local_reranker.py runs its
# OpenVINO rows in that interpreter (a subprocess, interleaved with the others) when the directory exists.
#
#     bash benchmarks/openvino-venv.sh [python]     # default: python3
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${OPENVINO_VENV:-$here/../.venv-openvino}"
python="${1:-python3}"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
# The project venv's torch (a CPU build there): an unpinned one may pull several GB of CUDA packages.
project_torch="$("$here/../.venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)"
"$venv/bin/pip" install --quiet "torch${project_torch:+==$project_torch}"
"$venv/bin/pip" install --quiet "sentence-transformers[openvino]"
"$venv/bin/python" -c "import openvino, sentence_transformers, transformers; print('openvino', openvino.__version__, \
'sentence-transformers', sentence_transformers.__version__, 'transformers', transformers.__version__)"
