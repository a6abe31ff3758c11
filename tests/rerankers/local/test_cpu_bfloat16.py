"""bfloat16 on a CPU that emulates it warns with the rates measured here, and is never the default (issue 14)."""

from __future__ import annotations

import platform
import re
import warnings
from pathlib import Path

import pytest

from milvus_rerank import CrossEncoderReranker
from milvus_rerank.rerankers.local.cpu import bfloat16_speed, emulated_bfloat16_warning


def _cpu_has_native_bfloat16() -> bool | None:
    """From the kernel's CPU flags, independently of torch: AVX-512 (BW) or AMX on x86, BF16 on Arm."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text(encoding="utf-8").split())
    except OSError:
        return None
    if platform.machine().lower() in ("x86_64", "amd64"):
        return "avx512bw" in flags or "amx_bf16" in flags
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "bf16" in flags
    return None


def test_bfloat16_is_native_exactly_where_the_cpu_says_so() -> None:
    expected = _cpu_has_native_bfloat16()
    if expected is None:
        pytest.skip("no /proc/cpuinfo flags to compare with")
    speed = bfloat16_speed()
    assert speed.native == expected
    if not speed.native:
        assert speed.bfloat16_gflops is not None
        assert speed.float32_gflops is not None
        assert speed.bfloat16_gflops < speed.float32_gflops / 3  # emulated: far slower, as measured


def test_asking_for_bfloat16_on_a_cpu_that_emulates_it_warns_with_the_numbers(tiny_model: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reranker = CrossEncoderReranker(tiny_model, device="cpu", dtype="bfloat16")
    assert reranker.dtype == "bfloat16"  # a warning, not a refusal: the caller may know better
    mine = [w for w in caught if issubclass(w.category, RuntimeWarning) and "bfloat16" in str(w.message)]
    if bfloat16_speed().native:
        assert mine == []
        assert emulated_bfloat16_warning() is None
        return
    (warning,) = mine
    message = str(warning.message)
    assert re.search(r"ran at [\d.]+ GFLOP/s in bfloat16 against [\d.]+ in float32 here \(\d+x slower", message)
    assert "Use dtype='float32'" in message
    assert warning.filename == __file__  # it points at the line that asked for bfloat16


def test_the_cpu_default_is_float32_without_a_warning(tiny_model: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        assert CrossEncoderReranker(tiny_model, device="cpu").dtype == "float32"
