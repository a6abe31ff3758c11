"""bfloat16 on a CPU: emulated, it warns with the rates measured (issue 14); native, dtype="auto" picks it (19)."""

from __future__ import annotations

import logging
import platform
import re
import warnings
from pathlib import Path

import pytest
import torch

from milvus_rerank import CrossEncoderReranker
from milvus_rerank.rerankers.local import cpu
from milvus_rerank.rerankers.local.cpu import BFloat16Speed, bfloat16_speed, emulated_bfloat16_warning
from milvus_rerank.rerankers.local.loading import auto_dtype
from milvus_rerank.rerankers.local.packed import _Dense, _onednn_usable


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


def _cpu_flags() -> set[str] | None:
    try:
        return set(Path("/proc/cpuinfo").read_text(encoding="utf-8").split())
    except OSError:
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


def test_the_cpu_default_is_auto_without_a_warning(tiny_model: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        reranker = CrossEncoderReranker(tiny_model, device="cpu")
    assert reranker.dtype == auto_dtype("cpu")[0]
    assert CrossEncoderReranker(tiny_model, device="cpu", dtype=None).dtype == reranker.dtype


def test_auto_picks_bfloat16_exactly_where_the_cpu_has_bfloat16_instructions() -> None:
    flags = _cpu_flags()
    if flags is None or platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("no x86 /proc/cpuinfo flags to compare with")
    instructions = [name for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16")) if flag in flags]
    assert list(bfloat16_speed().instructions) == instructions
    assert auto_dtype("cpu")[0] == ("bfloat16" if instructions else "float32")


@pytest.mark.parametrize(
    "speed",
    [
        BFloat16Speed(True, "AVX512"),  # AVX-512 without BF16 (Skylake to Ice Lake): oneDNN converts, no gain
        BFloat16Speed(False, "AVX2", 0.9, 148.0),  # AVX2 only: emulated
    ],
    ids=["avx512-without-bf16", "avx2"],
)
def test_auto_stays_float32_on_a_cpu_without_bfloat16_instructions(
    tiny_model: Path, speed: BFloat16Speed, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cpu, "bfloat16_speed", lambda: speed)
    caplog.set_level(logging.DEBUG, logger="milvus_rerank.rerankers.local.loading")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        reranker = CrossEncoderReranker(tiny_model, device="cpu", dtype="auto")
    assert reranker.dtype == "float32"
    assert "dtype='float32'" in repr(reranker)
    assert f"float32 (this CPU ({speed.capability}) has no bfloat16 instructions)" in caplog.text


def test_auto_picks_bfloat16_on_a_cpu_with_bfloat16_instructions(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(cpu, "bfloat16_speed", lambda: BFloat16Speed(True, "AVX512", instructions=("AMX-BF16",)))
    caplog.set_level(logging.DEBUG, logger="milvus_rerank.rerankers.local.loading")
    reranker = CrossEncoderReranker(tiny_model, device="cpu")
    assert reranker.dtype == "bfloat16"
    assert "dtype='bfloat16'" in repr(reranker)
    assert "bfloat16 (this CPU has native bfloat16 (AMX-BF16))" in caplog.text


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("act", [None, "gelu", "residual"])
def test_fused_dense_layers_compute_what_addmm_does(dtype: torch.dtype, act: str | None) -> None:
    weight = torch.randn(48, 32, generator=torch.Generator().manual_seed(0)).to(dtype) / 6
    bias, x, residual = torch.randn(48).to(dtype), torch.randn(5, 32).to(dtype), torch.randn(5, 48).to(dtype)
    if not _onednn_usable(weight):
        pytest.skip(f"oneDNN's fused linear does not run {dtype} here")
    gelu = torch.nn.GELU()
    options = {"act_fn": gelu, "activation": "gelu"} if act == "gelu" else {}
    extra = residual if act == "residual" else None
    fused = _Dense(weight, bias, fused=True, **options)(x, extra)
    plain = _Dense(weight, bias, fused=False, **options)(x, extra)
    reference = x.double() @ weight.double().t() + bias.double()
    reference = gelu(reference) if act == "gelu" else reference + residual.double() if extra is not None else reference
    tolerance = 1e-5 if dtype == torch.float32 else 5e-2
    assert torch.allclose(fused.double(), reference, atol=tolerance)
    assert torch.allclose(plain.double(), reference, atol=tolerance)
