"""bfloat16 inference on GPUs that support it, fp32 on every CPU.

Extracting features with a frozen network is one big batched forward pass, almost
all matrix products.  CPUs with native bfloat16 instructions (x86 ``avx512_bf16`` or
AMX, e.g. AMD Zen 4, Intel Sapphire Rapids) run those products 2-3x faster in bf16;
elsewhere bf16 is emulated and *slower* than fp32.  The course still keeps every CPU
in fp32: a number a notebook prints on the course machine must be the number a
student's laptop reproduces, whatever its instruction set.  So
``inference_autocast(device)`` turns on ``torch.autocast(..., dtype=torch.bfloat16)``
automatically only on CUDA; on a CPU with native bf16 pass ``enabled=True`` yourself.
The outputs differ from fp32 by about 1 % (bf16 keeps 8 bits of mantissa) - noise for
a linear probe, but do not use it for training without checking (on the course's
2-core CPU, bf16 *training* of a small CNN was several times slower than fp32).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator

import torch

__all__ = ["cpu_has_native_bf16", "fast_bf16", "inference_autocast"]

_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return any(flag in flags for flag in _NATIVE_BF16_FLAGS)
    except OSError:
        pass
    return False


def fast_bf16(device: torch.device | str) -> bool:
    """True where bf16 is the automatic choice: CUDA with bf16 support.  CPUs stay fp32 (see the module doc);
    ``cpu_has_native_bf16()`` says whether ``enabled=True`` would pay off on this CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return False


@contextlib.contextmanager
def inference_autocast(device: torch.device | str, enabled: bool | None = None) -> Iterator[bool]:
    """``with inference_autocast(device) as bf16:`` - bf16 autocast if ``fast_bf16(device)`` (or ``enabled``).

    ``enabled=None`` decides automatically; ``True`` / ``False`` force it.  Yields whether
    bf16 is on, so the caller can say which precision produced its numbers.
    """
    device = torch.device(device)
    on = fast_bf16(device) if enabled is None else bool(enabled)
    if device.type not in ("cpu", "cuda"):
        yield False
        return
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on):
        yield on
