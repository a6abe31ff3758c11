"""Local cross-encoder: CrossEncoderReranker vs sentence-transformers CrossEncoder.predict.

One query against 100 passages of 30 to 250 words, scored by a cross-encoder with the shape of
cross-encoder/ms-marco-MiniLM-L-6-v2 (random weights: speed does not depend on them). Both
libraries score the same weights and inputs; runs are interleaved and medians reported. Our time is
also compared with a FLOP floor: the FLOPs of the unpadded tokens over the matmul rate measured in
the same run. Then the same in bfloat16, with its deviation from float32, where the device computes
bfloat16 natively: a CPU without it (AVX2 only) emulates bfloat16 at under 1% of the float32 rate,
and the run would take tens of minutes, so it is skipped with a note (``--bfloat16`` runs it anyway).

    python benchmarks/local_reranker.py [--device cpu|cuda] [--rounds 7] [--data ../shared/data/scifact]

Passages come from the SciFact abstracts when that directory exists (read at run time, never copied),
else from built-in prose.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from milvus_rerank import CrossEncoderReranker
from milvus_rerank.rerankers.local.cpu import bfloat16_speed
from milvus_rerank.testing.models import make_standin_cross_encoder

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "scifact"

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timed rounds (default 7)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SciFact directory (optional)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--st-batch-size", type=int, default=32, help="sentence-transformers batch size (its default)")
    parser.add_argument(
        "--bfloat16", action="store_true", help="time bfloat16 even on a CPU that emulates it (very slow there)"
    )
    args = parser.parse_args()

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available here", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    from sentence_transformers import CrossEncoder

    query, passages, source = load_passages(args.data)
    words = [len(p.split()) for p in passages]
    capability = torch.backends.cpu.get_cpu_capability()
    bf16_note = None
    if args.device == "cpu" and not bfloat16_speed().native and not args.bfloat16:
        speed = bfloat16_speed()
        bf16_note = (
            f"bfloat16 skipped: this CPU ({capability}) has no native bfloat16 and emulates it "
            f"({speed.bfloat16_gflops:.1f} GFLOP/s against {speed.float32_gflops:.1f} in float32, a 256x256 matmul "
            "on one thread); --bfloat16 times it anyway"
        )
    with tempfile.TemporaryDirectory() as tmp:
        # The real model's shape and vocabulary (bert-base-uncased), so pairs have its token counts.
        path = make_standin_cross_encoder(Path(tmp) / "minilm-l6-h384")
        ours = CrossEncoderReranker(path, device=args.device, dtype="float32").load()
        ours_bf16 = None if bf16_note else CrossEncoderReranker(path, device=args.device, dtype="bfloat16").load()
        st = CrossEncoder(str(path), device=args.device)
        pairs = [(query, p) for p in passages]
        loaded = ours._model()
        lengths = [
            len(ids) for ids in loaded.tokenizer([query] * len(passages), passages, truncation=True)["input_ids"]
        ]
        flops = model_flops(loaded.model.config, lengths)
        padding_free = getattr(loaded.engine, "padding_free", False)
        skipped = last_layer_skip(loaded.model.config, lengths) if padding_free else 0.0

        def run_ours() -> list[float]:
            return ours.score(query, passages)

        def run_bf16() -> list[float]:
            assert ours_bf16 is not None
            return ours_bf16.score(query, passages)

        def run_st() -> object:
            return st.predict(pairs, batch_size=args.st_batch_size, show_progress_bar=False)

        scores = run_ours()
        scores_bf16 = run_bf16() if ours_bf16 is not None else scores
        st_scores = [float(s) for s in run_st()]
        diff = max(abs(a - b) for a, b in zip(scores, st_scores, strict=True))
        diff_bf16 = max(abs(a - b) for a, b in zip(scores_bf16, scores, strict=True))
        top10 = {i for i, _ in sorted(enumerate(scores), key=lambda x: -x[1])[:10]}
        top10_bf16 = {i for i, _ in sorted(enumerate(scores_bf16), key=lambda x: -x[1])[:10]}

        times: dict[str, list[float]] = {"ours": [], "st": [], "bf16": [], "rate32": [], "rate16": []}
        for _ in range(args.rounds):
            times["rate32"].append(matmul_rate(args.device, torch.float32))
            times["ours"].append(timed(run_ours, args.device))
            times["st"].append(timed(run_st, args.device))
            if ours_bf16 is not None:
                times["bf16"].append(timed(run_bf16, args.device))
                times["rate16"].append(matmul_rate(args.device, torch.bfloat16))

    med = {k: statistics.median(v) for k, v in times.items() if v}
    n = len(passages)
    floor32 = flops / med["rate32"]
    floor16 = flops / med["rate16"] if "rate16" in med else None
    cpu = platform.processor() or platform.machine()
    print(
        f"machine: {platform.system()} {cpu}, {os.cpu_count()} CPUs, CPU capability {capability}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}"
    )
    print(f"model: MiniLM-L6-H384 shape and vocabulary (random weights); passages: {n} from {source}")
    print(
        f"words per passage {min(words)}..{max(words)} (mean {statistics.mean(words):.0f}); "
        f"tokens per pair {min(lengths)}..{max(lengths)} (mean {statistics.mean(lengths):.0f}, "
        f"total {sum(lengths)}); {flops / 1e9:.1f} GFLOP unpadded"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"rounds: {args.rounds}, interleaved; medians; load average at the end {load:.1f} "
        "(other processes share the CPU)"
    )
    print()
    print(f"| {'run':<42} | {'time s':>7} | {'pairs/s':>8} | {'vs ST':>6} | {'vs floor':>8} | {'max |diff|':>10} |")
    print(f"|{'-' * 44}|{'-' * 9}|{'-' * 10}|{'-' * 8}|{'-' * 10}|{'-' * 12}|")

    def row(name: str, seconds: float, floor: float | None, deviation: str) -> None:
        floor_text = f"{seconds / floor:.2f}x" if floor else "-"
        print(
            f"| {name:<42} | {seconds:>7.3f} | {n / seconds:>8.1f} | {med['st'] / seconds:>5.2f}x | "
            f"{floor_text:>8} | {deviation:>10} |"
        )

    row(f"sentence-transformers predict (batch {args.st_batch_size})", med["st"], floor32, "reference")
    row("CrossEncoderReranker float32", med["ours"], floor32, f"{diff:.1e}")
    if floor16 is not None:
        row("CrossEncoderReranker bfloat16", med["bf16"], floor16, f"{diff_bf16:.1e}")
    print()
    if floor16 is not None:
        print(
            f"matmul rate: {med['rate32'] / 1e9:.0f} GFLOP/s float32, {med['rate16'] / 1e9:.0f} GFLOP/s bfloat16 "
            f"(sustained 2048x2048); FLOP floor {floor32:.3f} s float32, {floor16:.3f} s bfloat16"
        )
    else:
        print(
            f"matmul rate: {med['rate32'] / 1e9:.0f} GFLOP/s float32 (sustained 2048x2048); FLOP floor {floor32:.3f} s"
        )
    print(
        f"float32: {med['st'] / med['ours']:.2f}x sentence-transformers (target >= 3x), "
        f"{med['ours'] / floor32:.2f}x the FLOP floor (target <= 1.3x), max |score diff| {diff:.1e} (target <= 1e-5)"
    )
    print(
        f"the floor counts every token through every layer; ours skips {skipped / flops:.0%} of those FLOPs "
        "(the last layer only needs each pair's first token), so it can run below 1.0x"
    )
    if bf16_note:
        print(bf16_note)
    else:
        print(
            f"bfloat16: {med['ours'] / med['bf16']:.2f}x our float32 (target >= 1.5x), max |diff| vs float32 "
            f"{diff_bf16:.1e}, top-10 overlap {len(top10 & top10_bf16)}/10"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
