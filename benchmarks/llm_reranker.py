"""LLM reranker: CrossEncoderReranker vs sentence-transformers 6 CrossEncoder.predict on a Qwen3-shaped model.

A Qwen3-Reranker-shaped causal LM (hidden 512, 8 layers, GQA 8/4 heads; random weights: speed does not
depend on them), saved as sentence-transformers 6 saves it (Transformer + LogitScore, a chat template
with the Qwen3-Reranker prompt), scores one query against two sets of 100 documents: passages (SciFact
abstracts cut to 30..250 words, as in benchmarks/local_reranker.py) and short chunks (~60 words). Both
libraries load the same directory and score every pair as sigmoid(logit("yes") - logit("no")) after the
same prompt; runs are interleaved and medians reported, with the largest score difference. Where the
CPU has bfloat16 instructions (AMX-BF16, AVX512-BF16; or on a GPU), both also run in bfloat16 (ours
through ``dtype="auto"``, sentence-transformers with ``model_kwargs={"dtype": torch.bfloat16}``), their
scores set against our float32.

Where the time goes is printed too: the token-layers each side computes (ours runs the shared prompt
prefix once and the last layer for the scored token only), which bounds the ratio we can reach.

    python benchmarks/llm_reranker.py [--device cpu|cuda] [--rounds 3] [--data ../shared/data/scifact]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from local_reranker import DEFAULT_DATA, load_passages, timed

from milvus_rerank import CrossEncoderReranker
from milvus_rerank.rerankers.local.decoder import shared_prefix_length
from milvus_rerank.rerankers.local.loading import auto_dtype
from milvus_rerank.testing.causal_models import QWEN3_H512_L8, make_llm_reranker


@dataclass
class Measured:
    lengths: list[int]
    shared: int
    diff: float
    ours: list[float] = field(default_factory=list)
    st: list[float] = field(default_factory=list)
    diff16: float = float("nan")
    st_diff16: float = float("nan")
    ours16: list[float] = field(default_factory=list)
    st16: list[float] = field(default_factory=list)


def short_chunks(passages: list[str], count: int = 100, words: int = 60) -> list[str]:
    """``count`` chunks of ``words`` words, cut one after another from the passages' text."""
    text = " ".join(passages).split()
    while len(text) < count * words:
        text += text
    return [" ".join(text[i * words : (i + 1) * words]) for i in range(count)]


def token_layers(lengths: list[int], shared: int, layers: int) -> tuple[int, int]:
    """Token-layer work (tokens x layers) of the full prompts, and of ours (prefix once, last layer per prompt)."""
    full = sum(lengths) * layers
    ours = shared * layers + sum(n - shared for n in lengths) * (layers - 1) + len(lengths)
    return full, ours


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds (default 3)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="SciFact directory (optional)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--st-batch-size", type=int, default=32, help="sentence-transformers batch size (its default)")
    args = parser.parse_args()

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("--device cuda: no CUDA device is available here", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    from sentence_transformers import CrossEncoder

    query, passages, source = load_passages(args.data)
    sets = {"passages": passages, "short chunks": short_chunks(passages)}
    with tempfile.TemporaryDirectory() as tmp:
        path = make_llm_reranker(
            Path(tmp) / "qwen3-h512-l8",
            shape=QWEN3_H512_L8,
            texts=[query, *passages],
            vocab_size=8000,
        )
        ours = CrossEncoderReranker(path, device=args.device, dtype="float32").load()
        st = CrossEncoder(str(path), device=args.device)
        auto, reason = auto_dtype(args.device)
        ours16 = st16 = None
        if auto == "bfloat16":
            ours16 = CrossEncoderReranker(path, device=args.device, dtype="auto").load()
            st16 = CrossEncoder(str(path), device=args.device, model_kwargs={"dtype": torch.bfloat16})
        engine = ours._scoring_engine()
        layers = int(ours._model().model.config.num_hidden_layers)

        stats: dict[str, Measured] = {}
        for name, documents in sets.items():
            ids = engine.encode(query, documents, max_length=4096).input_ids
            ours_scores = ours.score(query, documents)
            st_scores = st.predict([(query, d) for d in documents], batch_size=args.st_batch_size).tolist()
            diff = max(abs(a - b) for a, b in zip(ours_scores, st_scores, strict=True))
            stats[name] = Measured([len(x) for x in ids], shared_prefix_length(ids), diff)
            if ours16 is not None and st16 is not None:
                scores16 = ours16.score(query, documents)
                st_scores16 = st16.predict([(query, d) for d in documents], batch_size=args.st_batch_size).tolist()
                stats[name].diff16 = max(abs(a - b) for a, b in zip(scores16, ours_scores, strict=True))
                stats[name].st_diff16 = max(abs(float(a) - b) for a, b in zip(st_scores16, ours_scores, strict=True))

        def run_st(pairs: list[tuple[str, str]]) -> object:
            return st.predict(pairs, batch_size=args.st_batch_size, show_progress_bar=False)

        for _ in range(args.rounds):
            for name, documents in sets.items():
                pairs = [(query, d) for d in documents]
                stats[name].ours.append(timed(lambda d=documents: ours.score(query, d), args.device))
                stats[name].st.append(timed(lambda p=pairs: run_st(p), args.device))
                if ours16 is not None and st16 is not None:
                    stats[name].ours16.append(timed(lambda d=documents: ours16.score(query, d), args.device))
                    stats[name].st16.append(
                        timed(lambda p=pairs: st16.predict(p, batch_size=args.st_batch_size), args.device)
                    )

    cpu = platform.processor() or platform.machine()
    capability = torch.backends.cpu.get_cpu_capability()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {platform.system()} {cpu}, CPU capability {capability}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}"
    )
    print("model: Qwen3 shape, hidden 512, 8 layers, 8/4 heads (random weights); sentence-transformers 6 save")
    print(f"dtype='auto' here: {auto} ({reason})")
    print(f"query and passages: {source}; short chunks: 60-word windows of the same text")
    print(
        f"rounds: {args.rounds}, interleaved; medians; load average at the end {load:.1f} "
        "(other processes share the CPU)"
    )
    print()
    widths = {"documents": 12, "tokens/prompt": 15, "shared": 6, "ST s": 7, "ours s": 7, "vs ST": 6}
    widths |= {"work ratio": 10, "max abs diff": 12}
    print("| " + " | ".join(f"{title:>{width}}" for title, width in widths.items()) + " |")
    print("|" + "|".join("-" * (width + 2) for width in widths.values()) + "|")
    verdicts = []
    for name, stat in stats.items():
        st_time, our_time = statistics.median(stat.st), statistics.median(stat.ours)
        full, mine = token_layers(stat.lengths, stat.shared, layers)
        span = f"{min(stat.lengths)}..{max(stat.lengths)} ({statistics.mean(stat.lengths):.0f})"
        print(
            f"| {name:<12} | {span:>15} | {stat.shared:>6} | {st_time:>7.2f} | {our_time:>7.2f} | "
            f"{st_time / our_time:>5.2f}x | {full / mine:>9.2f}x | {stat.diff:>12.1e} |"
        )
        verdicts.append((name, st_time / our_time, full / mine, stat.diff))
    if any(stat.ours16 for stat in stats.values()):
        print()
        print("bfloat16 (ours: dtype='auto'); max abs diff of each against our float32 scores:")
        print("| documents    |  ST bf16 s | ours bf16 s |  vs ST bf16 | vs our fp32 | ours diff | ST bf16 diff |")
        print("|--------------|------------|-------------|-------------|-------------|-----------|--------------|")
        for name, stat in stats.items():
            st16_time, our16_time = statistics.median(stat.st16), statistics.median(stat.ours16)
            print(
                f"| {name:<12} | {st16_time:>10.2f} | {our16_time:>11.2f} | {st16_time / our16_time:>10.2f}x | "
                f"{statistics.median(stat.ours) / our16_time:>10.2f}x | {stat.diff16:>9.1e} | {stat.st_diff16:>12.1e} |"
            )
    print()
    for name, ratio, work, diff in verdicts:
        target = 1.5 if name == "passages" else None
        goal = f"target >= {target}x" if target else "target: more than on passages"
        print(
            f"{name}: {ratio:.2f}x sentence-transformers ({goal}); scores within {diff:.1e} (target <= 1e-4); "
            f"we compute 1/{work:.2f} of its token-layers (shared prefix once, last layer for the scored token)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
