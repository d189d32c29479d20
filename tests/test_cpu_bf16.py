"""CPU bf16 is used only where the CPU has it natively: on an AVX2 CPU bf16 autocast made a training step
30× slower (models.cpu_has_native_bf16), so a config's `cpu_bf16`/`bf16_cpu` must fall back to fp32 there."""

from __future__ import annotations

import warnings

import pytest
import torch

from agentprm import models
from agentprm.agents.policy import LMPolicy, PolicyConfig


def _cpu(monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(models, "_warned_bf16", False)


@pytest.mark.parametrize(("avx512_bf16", "amx"), [(True, False), (False, True), (True, True)])
def test_kept_where_the_cpu_has_native_bf16(monkeypatch: pytest.MonkeyPatch, avx512_bf16: bool, amx: bool) -> None:
    _cpu(monkeypatch, avx512_bf16, amx)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert models.cpu_bf16_if_native(True) is True
        assert models.cpu_bf16_if_native(False) is False


def test_dropped_with_one_warning_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    _cpu(monkeypatch, False, False)
    with pytest.warns(UserWarning, match="no native bf16"):
        assert models.cpu_bf16_if_native(True) is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per process, and never when bf16 was not asked for
        assert models.cpu_bf16_if_native(True) is False
        assert models.cpu_bf16_if_native(False) is False


@pytest.mark.parametrize("native", [True, False])
def test_policy_acts_under_autocast_only_on_native_cpus(monkeypatch: pytest.MonkeyPatch, tiny_model: str,
                                                        native: bool) -> None:
    _cpu(monkeypatch, native, False)
    policy = LMPolicy.from_spec(tiny_model, PolicyConfig(cpu_bf16=True, device="cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with policy._autocast():
            assert torch.is_autocast_enabled("cpu") is native
