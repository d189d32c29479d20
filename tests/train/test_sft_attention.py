"""Which attention kernel the trainers train with (`models.training_attention`): eager on CUDA, where
SDPA turned left-padded SFT NaN on an H100, and the model's own kernel on the CPU unless asked."""

from types import SimpleNamespace

from agentprm.models import training_attention


class _Model:
    def __init__(self, device: str):
        self.device = SimpleNamespace(type=device)
        self.calls: list[str] = []

    def set_attn_implementation(self, name: str) -> None:
        self.calls.append(name)


def test_cuda_trains_with_eager_attention_by_default():
    assert training_attention(_Model("cuda")).calls == ["eager"]


def test_cpu_keeps_the_models_own_kernel_by_default():
    assert training_attention(_Model("cpu")).calls == []


def test_an_explicit_choice_wins_on_any_device():
    assert training_attention(_Model("cuda"), "sdpa").calls == ["sdpa"]
    assert training_attention(_Model("cpu"), "eager").calls == ["eager"]


def test_sft_config_passes_its_choice(tmp_path, monkeypatch):
    """SFT's model loader applies `SFTConfig.attn_implementation` to the model it trains."""
    from agentprm.train import sft

    seen = []
    monkeypatch.setattr(sft, "load_causal_lm", lambda *a, **k: _Model("cpu"))
    monkeypatch.setattr(sft, "training_attention", lambda m, c: seen.append(c) or m)
    monkeypatch.setattr(_Model, "config", SimpleNamespace(use_cache=True), raising=False)
    sft._load_model(sft.SFTConfig(out=str(tmp_path), attn_implementation="eager", device="cpu"))
    assert seen == ["eager"]
