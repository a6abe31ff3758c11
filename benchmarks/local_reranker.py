"""Local cross-encoder: ours (float32 and dtype="auto") vs sentence-transformers (torch float32, bfloat16, OpenVINO).

Two workloads of one query against 100 passages, scored by the shared trained cross-encoder
(../shared/models/scifact-minilm-l6-ce, MiniLM-L6-H384; the stand-in of that shape with random weights
when it is absent): "long", 100 SciFact abstracts (about 340 tokens a pair), and "short", the same cut
to 60 words (about 105 tokens). Every contender scores the same weights and pairs; rounds are
interleaved (each contender once per round, both workloads) and medians reported.

Each time is set against a FLOP floor: the FLOPs of the pairs' real tokens (every token through
every layer) over the matmul rate measured in the same run, on the model's own layer shapes
(``[1024 tokens, hidden] x [hidden, out]``) in float32 and in bfloat16. A float32 row is set against
the float32 floor, a bfloat16 one against the bfloat16 floor (only where the CPU has bfloat16
instructions: elsewhere bfloat16 is emulated at ~1% of the float32 rate, so its rows are skipped).
The header prints the CPU's capabilities (AMX-BF16, AVX512-BF16) and which floor ``dtype="auto"`` meets.

Then a fidelity table on the trained model: SciFact test queries, each with 30 candidates (its
relevant abstracts and the abstracts sharing most words with it), scored by each contender; max abs
score difference, top-10 overlap and Kendall tau against our float32 (itself within 1e-5 of
sentence-transformers' float32).

sentence-transformers' OpenVINO backend (``pip install 'sentence-transformers[openvino]'``) pins its own
transformers, so it cannot share the project's venv: ``bash benchmarks/openvino-venv.sh`` makes
``.venv-openvino`` beside ``.venv``, and this benchmark runs the OpenVINO rows in a worker process of that
interpreter (this same file, ``--openvino-worker``), interleaved with the others. Without that venv the
rows are left out with a note. OpenVINO computes in bfloat16 by default on a CPU that has it (its
``INFERENCE_PRECISION_HINT``, printed).

Threads: torch's default (one per core). Nothing here sets OpenMP's wait policy; under other load,
``OMP_WAIT_POLICY=PASSIVE`` (or ``--threads``) can matter a lot, so rounds are interleaved and the
load average printed.

    python benchmarks/local_reranker.py [--rounds 3] [--fidelity-queries 10] [--data ../shared/data/scifact]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "scifact"
TRAINED_MODEL = REPO.parent / "shared" / "models" / "scifact-minilm-l6-ce"
OPENVINO_PYTHON = REPO / ".venv-openvino" / "bin" / "python"

# Built-in prose (written for this benchmark), used when SciFact is not beside the repository.
PROSE = """
A reranker reads the query and one candidate passage together and decides how well the passage answers the
question. Because it sees both texts at once, it can notice that a passage mentions the right drug but the wrong
disease, or that a sentence negates the claim the user is asking about. A vector search cannot see such details:
it compares two summaries that were computed separately, long before the question was asked.
The price of this attention to detail is time. Every candidate has to pass through the whole network together
with the query, so a search that returns a hundred passages costs a hundred forward passes. On a laptop without a
graphics card, that can take longer than the language model needs to write its answer, which is why the way the
passages are grouped into batches matters so much.
Most passages are short, a few are long. When a short passage shares a batch with a long one, it is padded to the
same length, and the padding is computed like real text and then thrown away. Sorting the passages by length
before batching keeps neighbours of similar size together, so almost nothing is wasted, and putting the scores
back in the original order afterwards keeps the caller unaware of the trick.
The memory of a processor is a pyramid. A few kilobytes sit next to the arithmetic units, a few megabytes a little
further away, and the gigabytes of main memory are slow by comparison. A batch whose activations fit in the middle
layer of that pyramid runs at nearly the speed of the arithmetic itself, while a batch that spills into main memory
spends much of its time waiting for data.
Scientists who study the brain have long known that sleep helps memory. During the night, the patterns of activity
seen during the day are replayed, and connections between cells that fired together are strengthened. Patients
who sleep poorly after learning a task remember less of it, and the effect is stronger in older adults.
The river rises every spring when the snow melts in the mountains. Farmers along its banks have learned to plant
after the flood, when the soil is wet and rich, and the town keeps a record of the highest water on a stone by the
bridge. In some years the mark barely moves; in others the water reaches the doors of the houses by the market.
A good library answers questions it was never asked. Its catalogue lets a reader find a book by author or title,
but its shelves, arranged by subject, let the same reader discover the book next to the one they came for. Search
engines try to recreate that second kind of discovery, with mixed success, by suggesting related results.
Cells divide by copying their genetic material and then splitting in two. Errors in the copy are usually repaired,
but when the repair machinery itself is damaged, mistakes accumulate, and some of them allow a cell to ignore the
signals that normally tell it to stop dividing. That is one of the first steps on the way to a tumour.
"""
PROSE_QUERY = "why does sorting passages by length make reranking faster on a laptop"


def load_passages(data: Path, count: int = 100) -> tuple[str, list[str], str]:
    """100 passages whose word counts are spread evenly over 30..250, and one query."""
    targets = [30 + round(i * 220 / (count - 1)) for i in range(count)]
    corpus = data / "corpus.jsonl"
    if corpus.is_file():
        texts: list[str] = []
        with corpus.open(encoding="utf-8") as file:
            for line in file:
                record = json.loads(line)
                texts.append(f"{record.get('title', '')}. {record.get('text', '')}".strip())
                if len(texts) >= 2000:
                    break
        passages: list[str] = []
        pool = iter(texts)
        for target in targets:
            for text in pool:
                words = text.split()
                if len(words) >= target:
                    passages.append(" ".join(words[:target]))
                    break
        query = "Sleep deprivation impairs memory consolidation in older adults."
        with (data / "queries.jsonl").open(encoding="utf-8") as file:
            first = json.loads(next(file)).get("text")
        query = first or query
        return query, passages, f"SciFact abstracts from {data}, cut to 30..250 words"
    words = PROSE.split()
    passages = []
    for i, target in enumerate(targets):
        start = (i * 53) % len(words)
        window = (words[start:] + words)[:target]
        passages.append(" ".join(window))
    return PROSE_QUERY, passages, "built-in prose"


def model_flops(config: object, lengths: list[int]) -> float:
    """FLOPs of a BERT-style encoder on unpadded pairs: dense layers plus attention scores and mixing."""
    hidden = config.hidden_size  # type: ignore[attr-defined]
    inter = config.intermediate_size  # type: ignore[attr-defined]
    layers = config.num_hidden_layers  # type: ignore[attr-defined]
    dense_per_token = 2 * (4 * hidden * hidden + 2 * hidden * inter)
    total = 0.0
    for n in lengths:
        total += layers * (n * dense_per_token + 4 * n * n * hidden)
        total += 2 * hidden * hidden  # pooler
    return total


def last_layer_skip(config: object, lengths: list[int]) -> float:
    """FLOPs our packed path skips: the last layer's query, output and feed-forward work for all but first tokens."""
    hidden = config.hidden_size  # type: ignore[attr-defined]
    inter = config.intermediate_size  # type: ignore[attr-defined]
    per_token = 2 * (2 * hidden * hidden + 2 * hidden * inter)  # Q and attention-output projections, feed-forward
    return sum((n - 1) * (per_token + 2 * n * hidden) for n in lengths)


def matmul_rate(device: str, dtype: torch.dtype, size: int = 2048, seconds: float = 1.0) -> float:
    """Sustained FLOP/s of large square matmuls on this device: the best a dense layer can hope for.

    It runs for about ``seconds``, so that, like the timed runs, it sees the machine's current load.
    """
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    with torch.inference_mode():
        torch.mm(a, b)
        sync(device)
        count, start = 0, time.perf_counter()
        while True:
            torch.mm(a, b)
            count += 1
            if count % 4 == 0:
                sync(device)
                elapsed = time.perf_counter() - start
                if elapsed >= seconds:
                    return 2 * size**3 * count / elapsed


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def layer_rate(device: str, dtype: torch.dtype, config: Any, tokens: int = 1024, seconds: float = 1.0) -> float:
    """Sustained FLOP/s of the model's own dense-layer matmuls on ``tokens`` rows: the floor's rate.

    One round runs a layer's four matmuls (Q/K/V, attention output, feed-forward up and down) for
    about ``seconds``, so that, like the timed runs, it sees the machine's current load.
    """
    hidden, inter = config.hidden_size, config.intermediate_size
    shapes = [(hidden, 3 * hidden), (hidden, hidden), (hidden, inter), (inter, hidden)]
    inputs = {n: torch.randn(tokens, n, device=device, dtype=dtype) for n in (hidden, inter)}
    weights = [torch.randn(out, n, device=device, dtype=dtype) for n, out in shapes]
    flops = sum(2 * tokens * n * out for n, out in shapes)
    with torch.inference_mode():
        count, start = 0, time.perf_counter()
        while True:
            for (n, _), weight in zip(shapes, weights, strict=True):
                torch.mm(inputs[n], weight.t())
            count += 1
            sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds and count >= 3:
                return flops * count / elapsed


def workloads(data: Path) -> tuple[str, dict[str, list[str]], str]:
    """The query and the two workloads: 100 abstracts ("long") and the same cut to 60 words ("short")."""
    corpus = data / "corpus.jsonl"
    if corpus.is_file():
        passages = []
        with corpus.open(encoding="utf-8") as file:
            for line in file:
                record = json.loads(line)
                passages.append(f"{record.get('title', '')}. {record.get('text', '')}".strip())
                if len(passages) == 100:
                    break
        with (data / "queries.jsonl").open(encoding="utf-8") as file:
            query = json.loads(next(file))["text"]
        source = f"the first 100 SciFact abstracts of {data}"
    else:
        query, passages, source = load_passages(data)
    short = [" ".join(p.split()[:60]) for p in passages]
    return query, {"long": passages, "short": short}, source


def fidelity_sets(data: Path, queries: int, candidates: int = 30) -> list[tuple[str, list[str]]]:
    """SciFact test queries, each with its relevant abstracts and those sharing most words with it."""
    docs: dict[str, str] = {}
    with (data / "corpus.jsonl").open(encoding="utf-8") as file:
        for line in file:
            record = json.loads(line)
            docs[str(record["_id"])] = f"{record.get('title', '')}. {record.get('text', '')}".strip()
    relevant: dict[str, list[str]] = {}
    with (data / "qrels" / "test.tsv").open(encoding="utf-8") as file:
        next(file)
        for line in file:
            qid, did, *_ = line.split("\t")
            relevant.setdefault(qid, []).append(did)
    texts: dict[str, str] = {}
    with (data / "queries.jsonl").open(encoding="utf-8") as file:
        for line in file:
            record = json.loads(line)
            texts[str(record["_id"])] = record["text"]
    words = {did: set(text.lower().split()) for did, text in docs.items()}
    sets = []
    for qid in list(relevant)[:queries]:
        query = texts[qid]
        terms = {w for w in query.lower().split() if len(w) > 3}
        ranked = sorted(words, key=lambda did: -len(terms & words[did]))
        chosen = list(dict.fromkeys([*relevant[qid], *ranked]))[:candidates]
        sets.append((query, [docs[did] for did in chosen]))
    return sets


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-a between two score lists over the same items."""
    n, concordant = len(a), 0
    for i in range(n):
        for j in range(i + 1, n):
            concordant += 1 if (a[i] - a[j]) * (b[i] - b[j]) > 0 else -1
    return concordant / (n * (n - 1) / 2)


def top(scores: list[float], k: int) -> set[int]:
    return {i for i, _ in sorted(enumerate(scores), key=lambda x: -x[1])[:k]}


def openvino_worker(model: str) -> int:
    """``--openvino-worker``: sentence-transformers' OpenVINO backend, answering JSON lines on stdin (its own venv)."""
    import openvino
    import sentence_transformers
    import transformers
    from sentence_transformers import CrossEncoder

    encoder = CrossEncoder(model, backend="openvino", device="cpu")
    hint = openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    precision = {"bf16": "bfloat16", "f32": "float32", "f16": "float16"}.get(hint.to_string(), hint.to_string())
    versions = (
        f"openvino {openvino.__version__.split('-')[0]}, sentence-transformers {sentence_transformers.__version__}, "
        f"transformers {transformers.__version__}"
    )
    print(json.dumps({"precision": str(precision), "versions": versions}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        start = time.perf_counter()
        scores = encoder.predict(request["pairs"], batch_size=request["batch_size"], show_progress_bar=False)
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "scores": [float(x) for x in scores]}), flush=True)
    return 0


class OpenVINO:
    """A worker process running sentence-transformers' OpenVINO backend in ``.venv-openvino``."""

    def __init__(self, model: str) -> None:
        self.process = subprocess.Popen(
            [str(OPENVINO_PYTHON), __file__, "--openvino-worker", model],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        hello = json.loads(self._line())
        self.precision, self.versions = hello["precision"], hello["versions"]

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the OpenVINO worker exited; run it by hand to see why")
        return line

    def predict(self, pairs: list[tuple[str, str]], batch_size: int) -> tuple[float, list[float]]:
        """Seconds of ``predict`` inside the worker, and its scores."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"pairs": pairs, "batch_size": batch_size}) + "\n")
        self.process.stdin.flush()
        reply = json.loads(self._line())
        return reply["seconds"], reply["scores"]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def cpu_capabilities() -> str:
    """The CPU's vector capability and bfloat16 instructions, as the benchmark and dtype="auto" see them."""
    from milvus_rerank.rerankers.local.cpu import bfloat16_speed

    speed = bfloat16_speed()
    flags: set[str] = set()
    with open("/proc/cpuinfo", encoding="utf-8") if os.path.exists("/proc/cpuinfo") else open(os.devnull) as file:
        flags = set(file.read().split())
    model = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    present = [flag for flag in ("amx_bf16", "avx512_bf16", "avx512_vnni", "avx512f") if flag in flags]
    instructions = ", ".join(speed.instructions) or "none"
    return (
        f"{model}, {os.cpu_count()} CPUs, torch capability {speed.capability}, flags {' '.join(present) or '-'}; "
        f"bfloat16 instructions: {instructions}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds (default 3)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SciFact directory (optional)")
    parser.add_argument("--model", type=Path, default=TRAINED_MODEL, help="cross-encoder (default: the shared one)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--st-batch-size", type=int, default=32, help="sentence-transformers batch size (its default)")
    parser.add_argument("--fidelity-queries", type=int, default=10, help="SciFact test queries (default 10; 0: none)")
    parser.add_argument("--no-openvino", action="store_true", help="leave out OpenVINO even where its venv exists")
    parser.add_argument("--openvino-worker", metavar="MODEL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.openvino_worker:
        return openvino_worker(args.openvino_worker)

    from sentence_transformers import CrossEncoder

    from milvus_rerank import CrossEncoderReranker
    from milvus_rerank.rerankers.local.loading import auto_dtype
    from milvus_rerank.testing.models import make_standin_cross_encoder

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available here", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    auto, reason = auto_dtype(device)
    query, sets, source = workloads(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        trained = args.model.is_dir()
        path = str(args.model) if trained else str(make_standin_cross_encoder(Path(tmp) / "minilm-l6-h384"))
        ours = CrossEncoderReranker(path, device=device, dtype="float32").load()
        ours_auto = CrossEncoderReranker(path, device=device, dtype="auto").load()
        st32 = CrossEncoder(path, device=device)
        st16 = CrossEncoder(path, device=device, model_kwargs={"dtype": torch.bfloat16})
        bf16 = auto == "bfloat16" or device != "cpu"
        openvino_note = None
        openvino = None
        if device != "cpu" or args.no_openvino:
            openvino_note = "OpenVINO: left out (--no-openvino or not a CPU run)"
        elif not OPENVINO_PYTHON.exists():
            openvino_note = "OpenVINO: left out; `bash benchmarks/openvino-venv.sh` makes its venv"
        else:
            openvino = OpenVINO(path)
        config = ours._model().model.config
        tokenizer = ours._model().tokenizer
        lengths = {
            name: [len(ids) for ids in tokenizer([query] * len(p), p, truncation=True, max_length=512)["input_ids"]]
            for name, p in sets.items()
        }
        flops = {name: model_flops(config, n) for name, n in lengths.items()}
        batch = args.st_batch_size

        def st_run(model: Any) -> Callable[[str], list[float]]:
            return lambda name: [float(x) for x in model.predict([(query, p) for p in sets[name]], batch_size=batch)]

        contenders: dict[str, tuple[str, Callable[[str], list[float]]]] = {
            "ours, dtype='float32'": ("float32", lambda name: ours.score(query, sets[name])),
            f"ours, dtype='auto' ({auto})": (auto, lambda name: ours_auto.score(query, sets[name])),
            "sentence-transformers torch float32": ("float32", st_run(st32)),
        }
        if bf16:
            contenders["sentence-transformers torch bfloat16"] = ("bfloat16", st_run(st16))
        times: dict[tuple[str, str], list[float]] = {}
        rates: dict[str, list[float]] = {"float32": [], "bfloat16": []}
        for name in sets:  # warm-up: every contender once per workload, untimed
            for _, run in contenders.values():
                run(name)
            if openvino is not None:
                openvino.predict([(query, p) for p in sets[name]], batch)
        for _ in range(args.rounds):
            rates["float32"].append(layer_rate(device, torch.float32, config))
            if bf16:
                rates["bfloat16"].append(layer_rate(device, torch.bfloat16, config))
            for name in sets:
                for label, (_, run) in contenders.items():
                    times.setdefault((label, name), []).append(timed(lambda r=run, n=name: r(n), device))
                if openvino is not None:
                    seconds, _ = openvino.predict([(query, p) for p in sets[name]], batch)
                    times.setdefault(("openvino", name), []).append(seconds)

        fidelity: list[tuple[str, float, float, float, float]] = []
        queries = fidelity_sets(args.data, args.fidelity_queries) if trained and args.fidelity_queries else []
        if queries:
            scorers: dict[str, Callable[[str, list[str]], list[float]]] = {
                "sentence-transformers torch float32": lambda q, d: [
                    float(x) for x in st32.predict([(q, t) for t in d])
                ]
            }
            if auto != "float32":
                scorers[f"ours, dtype='auto' ({auto})"] = ours_auto.score
            if bf16:
                scorers["sentence-transformers torch bfloat16"] = lambda q, d: [
                    float(x) for x in st16.predict([(q, t) for t in d])
                ]
            if openvino is not None:
                scorers[f"sentence-transformers OpenVINO ({openvino.precision})"] = lambda q, d: openvino.predict(
                    [(q, t) for t in d], batch
                )[1]
            reference = [ours.score(q, d) for q, d in queries]
            for label, scorer in scorers.items():
                got = [scorer(q, d) for q, d in queries]
                diff = max(abs(a - b) for r, g in zip(reference, got, strict=True) for a, b in zip(r, g, strict=True))
                overlap = statistics.mean(len(top(r, 10) & top(g, 10)) for r, g in zip(reference, got, strict=True))
                first = sum(top(r, 1) == top(g, 1) for r, g in zip(reference, got, strict=True)) / len(queries)
                tau = statistics.mean(kendall_tau(r, g) for r, g in zip(reference, got, strict=True))
                fidelity.append((label, diff, overlap, first, tau))
        if openvino is not None:
            contenders[f"sentence-transformers OpenVINO ({openvino.precision})"] = (
                openvino.precision,
                lambda name: [],
            )
            for name in sets:
                times[(f"sentence-transformers OpenVINO ({openvino.precision})", name)] = times.pop(("openvino", name))
            openvino.close()

    rate = {k: statistics.median(v) for k, v in rates.items() if v}
    med = {key: statistics.median(v) for key, v in times.items()}
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"machine: {platform.system()}, {cpu_capabilities()}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}; dtype='auto' here: {auto} "
        f"({reason}); rows in bfloat16 are set against the bfloat16 floor, float32 rows against the float32 one"
    )
    if openvino is not None:
        print(f"OpenVINO worker: {openvino.versions}; INFERENCE_PRECISION_HINT {openvino.precision}")
    elif openvino_note:
        print(openvino_note)
    model_note = "trained" if trained else "stand-in with random weights (no trained model at --model)"
    print(f"model: {path} (MiniLM-L6-H384, {model_note}); query and passages: {source}")
    for name, n in lengths.items():
        print(
            f"  {name}: {len(n)} pairs, {min(n)}..{max(n)} tokens (mean {statistics.mean(n):.0f}), "
            f"{flops[name] / 1e9:.0f} GFLOP"
        )
    rate_text = ", ".join(f"{r / 1e9:.0f} GFLOP/s {k}" for k, r in rate.items())
    print(f"matmul rate on the layer shapes (1024 tokens), medians: {rate_text}")
    print(
        f"rounds: {args.rounds}, interleaved; medians; load average at the end {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f} (other processes share the CPU)"
    )
    print()
    names = list(sets)
    header = ["contender", "dtype"]
    for name in names:
        header += [f"{name} s", f"{name} vs ST32", f"{name} vs floor"]
    widths = [46, 8] + [max(len(h), 8) for h in header[2:]]
    print("| " + " | ".join(f"{h:<{w}}" for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    base = "sentence-transformers torch float32"
    for label, (dtype, _) in contenders.items():
        cells = [label, dtype]
        for name in names:
            seconds = med[(label, name)]
            floor = flops[name] / rate[dtype] if dtype in rate else None
            cells += [
                f"{seconds:.3f}",
                f"{med[(base, name)] / seconds:.2f}x",
                f"{seconds / floor:.2f}x" if floor else "-",
            ]
        print("| " + " | ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)) + " |")
    print()
    for name in names:
        floors = ", ".join(f"{flops[name] / r:.3f} s {k}" for k, r in rate.items())
        print(f"FLOP floor, {name}: {floors} (every token through every layer; ours skips the last layer's")
    print("  feed-forward for all but each pair's first token, so a row can go below 1.0x)")
    if fidelity:
        print()
        print(
            f"fidelity vs ours float32 on the trained model: {len(queries)} SciFact test queries x 30 candidates "
            "(relevant abstracts + most shared words)"
        )
        print(f"| {'contender':<46} | max abs diff | top-10 overlap | top-1 same | Kendall tau |")
        print(f"|{'-' * 48}|--------------|----------------|------------|-------------|")
        for label, diff, overlap, first, tau in fidelity:
            print(f"| {label:<46} | {diff:>12.1e} | {overlap:>11.2f}/10 | {first:>10.0%} | {tau:>11.3f} |")
    auto_label = f"ours, dtype='auto' ({auto})"
    print()
    for name in names:
        line = [f"{name}: ours auto {med[(base, name)] / med[(auto_label, name)]:.2f}x ST float32"]
        ov = [label for label in contenders if label.startswith("sentence-transformers OpenVINO")]
        if ov:
            line.append(f"{med[(ov[0], name)] / med[(auto_label, name)]:.2f}x OpenVINO's default (target >= 1.5x)")
        line.append(
            f"float32 {med[('ours, dtype=' + repr('float32'), name)] / (flops[name] / rate['float32']):.2f}x "
            "its floor (target <= 1.3x)"
        )
        if "bfloat16" in rate and auto == "bfloat16":
            line.append(
                f"bfloat16 {med[(auto_label, name)] / (flops[name] / rate['bfloat16']):.2f}x its floor (target <= 2x)"
            )
        print("; ".join(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
