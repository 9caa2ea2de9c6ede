"""Device, dtype and seeding choices, shared by the Classifier, backends and training."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` picks CUDA, then MPS, then the CPU; an unavailable device is a clear error."""
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but this machine has no CUDA GPU (or torch is a CPU build); use device='cpu'")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device='mps' was asked for but MPS is not available here; use device='cpu'")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {device!r}; use 'cpu', 'cuda' or 'mps'")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: str | torch.device | None = None) -> torch.dtype | None:
    """``None`` keeps each backend's default (float32 weights). ``"auto"`` is bfloat16 on a CPU that
    computes it natively (AVX512-BF16 or AMX, :func:`native_bfloat16`), else the default: on such a CPU
    ``python -m benchmarks.precision`` measured bfloat16 about 3x faster at 1 torch thread (docs/benchmarks.md)."""
    if dtype is None:
        return dtype
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype {dtype} is not a floating-point type; use one of {sorted(_DTYPES)} (int8: `udtc "
                             "export --quantize int8`)")
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if resolve_device(device).type == "cpu" and native_bfloat16() else None
    if isinstance(dtype, str) and dtype.removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.removeprefix("torch.")]
    raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES) + ['auto']} or a torch.dtype")


@functools.cache
def native_bfloat16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether the CPU has bfloat16 instructions (``avx512_bf16`` or ``amx_bf16`` in Linux's cpuinfo flags).
    Without them oneDNN emulates bfloat16, slower than float32; elsewhere than Linux: False (unknown)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block on torch's CPU RNG seeded with ``seed``, leaving the global RNG as it was;
    ``None`` draws from the global RNG as it stands (e.g. as seeded by ``finetune``)."""
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        yield
