"""Precision choice and autocast contexts."""

from __future__ import annotations

import contextlib

import pytest
import torch

from mvdecor.errors import ConfigError
from mvdecor.train import precision as precision_module
from mvdecor.train.precision import autocast, cpu_has_native_bf16, resolve_precision


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    avx512 = tmp_path / "avx512"
    avx512.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n")
    amx = tmp_path / "amx"
    amx.write_text("flags\t\t: avx2 amx_tile amx_bf16 amx_int8\n")
    assert not cpu_has_native_bf16(avx2)
    assert cpu_has_native_bf16(avx512)
    assert cpu_has_native_bf16(amx)
    assert not cpu_has_native_bf16(tmp_path / "missing")


@pytest.mark.parametrize("native", [True, False])
def test_auto_resolves_by_the_cpu(monkeypatch, native):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    for fixed in ("fp32", "bf16", "fp16"):
        assert resolve_precision(fixed, "cpu") == fixed


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="fp64"):
        resolve_precision("fp64")


def test_autocast_contexts_on_the_cpu():
    cpu = torch.device("cpu")
    assert isinstance(autocast(cpu, "fp32"), contextlib.nullcontext)
    with autocast(cpu, "bf16"):
        out = torch.nn.functional.linear(torch.randn(2, 3), torch.randn(4, 3))
    assert out.dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="CUDA"):
        autocast(cpu, "fp16")
