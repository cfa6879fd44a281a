"""inference_autocast: bf16 only where asked or where the hardware has it, fp32 otherwise."""

from __future__ import annotations

import torch

from course_lib.precision import fast_bf16, inference_autocast


def test_forced_on_and_off():
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with inference_autocast("cpu", enabled=True) as on:
        assert on and layer(x).dtype == torch.bfloat16
    with inference_autocast("cpu", enabled=False) as on:
        assert not on and layer(x).dtype == torch.float32


def test_automatic_choice_follows_fast_bf16():
    assert isinstance(fast_bf16("cpu"), bool)
    assert fast_bf16("meta") is False
    with inference_autocast("cpu") as on:
        assert on == fast_bf16("cpu")
        assert torch.nn.Linear(2, 2)(torch.randn(1, 2)).dtype == (torch.bfloat16 if on else torch.float32)


def test_cpus_stay_fp32_unless_asked():
    """The course's rule: CPU numbers must reproduce on any laptop, so bf16 is never automatic there."""
    from course_lib.precision import cpu_has_native_bf16

    assert fast_bf16("cpu") is False
    assert isinstance(cpu_has_native_bf16(), bool)
    with inference_autocast("cpu") as on:
        assert on is False
