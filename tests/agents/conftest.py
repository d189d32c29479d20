"""Fixtures shared by the policy tests."""

from __future__ import annotations

import pytest
import torch

from agentprm.models import resolve_model


@pytest.fixture(scope="module")
def model_tok(tiny_model: str) -> tuple[object, object]:
    """The tiny model with larger seeded weights: the stock random init greedily repeats one token
    for every prompt, which would make "batched == unbatched" pass trivially."""
    model, tok = resolve_model(tiny_model, device="cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 if "embed" in name else 0.2))
    return model, tok
