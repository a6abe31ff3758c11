"""bfloat16 on a CPU: whether this one computes it natively, and what it costs here when it does not.

A CPU with AVX-512 (or AMX, or an Arm core with BF16) runs bfloat16 matmuls through oneDNN at
several times the float32 rate; one without (AVX2 only, e.g. AMD Zen 3) emulates them, element by
element: an AVX2 Zen 3 measured 0.9 GFLOP/s in bfloat16 against 148 in float32, 165 times slower.
Between the two, an AVX-512 CPU without the BF16 instructions (Intel Skylake to Ice Lake) runs
oneDNN's bfloat16 kernels by converting to float32, at no gain. So ``dtype="auto"`` picks bfloat16
only where the CPU has bfloat16 instructions (:attr:`BFloat16Speed.instructions`: AMX-BF16 on Intel
Xeons since Sapphire Rapids, AVX512-BF16 on those and on AMD Zen 4/5, BF16 on Arm), and asking for
it where it is emulated warns with the numbers, measured here on a small matmul
(:func:`bfloat16_speed`), so that the cost is plain before the first slow call.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["BFloat16Speed", "bfloat16_speed", "emulated_bfloat16_warning"]

_SIZE = 256  # a matmul big enough to show the emulation (16x at 128, 50x at 512), cheap enough to run at once


@dataclass(frozen=True)
class BFloat16Speed:
    """How this CPU computes bfloat16.

    Attributes:
        native: Whether oneDNN's bfloat16 kernels run on it (x86 AVX-512 or AMX, Arm BF16).
        capability: torch's name for the CPU's vector instructions (``"AVX2"``, ``"AVX512"``...).
        bfloat16_gflops: A single-thread 256x256 bfloat16 matmul's rate, measured when not native.
        float32_gflops: The same in float32, measured when not native.
        instructions: The CPU's bfloat16 instructions (``"AMX-BF16"``, ``"AVX512-BF16"``, ``"Arm BF16"``);
            empty where it has none, and ``dtype="auto"`` then stays float32.
    """

    native: bool
    capability: str
    bfloat16_gflops: float | None = None
    float32_gflops: float | None = None
    instructions: tuple[str, ...] = ()


def _native(torch: Any, capability: str) -> bool:
    # torch's own test for oneDNN's bfloat16 kernels; private, so used only where it exists and works.
    with contextlib.suppress(AttributeError, RuntimeError):
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return capability.upper().startswith("AVX512")


def _instructions(torch: Any, native: bool) -> tuple[str, ...]:
    # torch's own CPU feature tests (private, so used only where they exist); oneDNN's bfloat16 kernels
    # on Arm need the BF16 extension, so native there means the instructions are there.
    found = []
    for name, test in (("AMX-BF16", "_is_amx_tile_supported"), ("AVX512-BF16", "_is_avx512_bf16_supported")):
        with contextlib.suppress(AttributeError, RuntimeError):
            if getattr(torch.cpu, test)():
                found.append(name)
    if native and not found and platform.machine().lower() in ("aarch64", "arm64"):
        found.append("Arm BF16")
    return tuple(found)


def _rate(torch: Any, dtype: Any) -> float:
    a = torch.randn(_SIZE, _SIZE, dtype=dtype)
    b = torch.randn(_SIZE, _SIZE, dtype=dtype)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the ratio, not the machine's load, is what the numbers show
    try:
        with torch.inference_mode():
            torch.mm(a[:32, :32], b[:32, :32])
            best = float("inf")
            for _ in range(2):
                start = time.perf_counter()
                torch.mm(a, b)
                best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return 2 * _SIZE**3 / max(best, 1e-9) / 1e9


@functools.cache
def bfloat16_speed() -> BFloat16Speed:
    """Whether this CPU computes bfloat16 natively, with measured rates when it does not (once per process).

    The measurement, two 256x256 matmuls in each dtype, takes about a tenth of a second where
    bfloat16 is emulated and is skipped where it is native.
    """
    import torch

    capability = str(torch.backends.cpu.get_cpu_capability())
    if _native(torch, capability):
        return BFloat16Speed(True, capability, instructions=_instructions(torch, True))
    return BFloat16Speed(False, capability, _rate(torch, torch.bfloat16), _rate(torch, torch.float32))


def emulated_bfloat16_warning() -> str | None:
    """What to tell a user who asks for bfloat16 on this CPU; ``None`` where bfloat16 is native."""
    speed = bfloat16_speed()
    if speed.native or speed.bfloat16_gflops is None or speed.float32_gflops is None:
        return None
    ratio = speed.float32_gflops / max(speed.bfloat16_gflops, 1e-9)
    return (
        f"dtype='bfloat16' on this CPU ({speed.capability}, no native bfloat16) is emulated: a {_SIZE}x{_SIZE} "
        f"matmul ran at {speed.bfloat16_gflops:.1f} GFLOP/s in bfloat16 against {speed.float32_gflops:.1f} in "
        f"float32 here ({ratio:.0f}x slower; larger ones fare worse: 0.9 against 148 GFLOP/s measured on an "
        "AVX2 AMD Zen 3). Use dtype='float32', or 'auto', which picks it on this CPU"
    )
