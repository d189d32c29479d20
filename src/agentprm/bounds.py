"""Value ranges for config fields, shared by the run config (pydantic) and the stage configs (dataclasses).

Why annotations and not checks in each stage: a bad value must be caught before the first stage of a
run starts, not when its stage is reached an hour later. Both `loop.RunConfig` and the stage
dataclasses are validated by pydantic (`cli.common.build_config`), which reads these bounds, so one
`Annotated` type says the range once and every entry point (CLI, `--set`, run YAML) enforces it with a
message that names the field, the value and the range.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from annotated_types import Ge, Gt, Le, Lt

Count = Annotated[int, Ge(1)]
"""At least one (batch sizes, steps, games, workers)."""
NonNegInt = Annotated[int, Ge(0)]
"""Zero or more (iterations, rounds, held-out games, 'every k steps' with 0 meaning off)."""
Positive = Annotated[float, Gt(0)]
"""Strictly positive (learning rates, epochs, DPO beta)."""
NonNegative = Annotated[float, Ge(0)]
"""Zero or more (temperatures: 0 is greedy; weights that 0 turns off)."""
Fraction = Annotated[float, Ge(0), Lt(1)]
"""A share that must leave something over (validation fractions, noise)."""
Probability = Annotated[float, Ge(0), Le(1)]
"""A share in [0, 1] (reset fraction, Q-gaps)."""
Discount = Annotated[float, Gt(0), Le(1)]
"""A discount factor γ in (0, 1]."""
ShapingCentre = Literal["mean", "median"]
"""Where process reward shaping's squashing is centred (`agentprm.shaping.squash`)."""
SHAPING_CENTRES: tuple[str, ...] = get_args(ShapingCentre)

# Defaults shared by a stage config and the run config (and the CLI): one value, here because this
# module is what all of them import without pulling in torch.

PAIR_DELTA = 0.03
"""Default δ, the minimum Q̂ gap between two actions at one state for a Bradley–Terry pair: the paper's
released config. Small on purpose: Q̂ of a pair visited a few times moves in steps of γ^k/visits, and a
large δ throws most same-state preferences away."""

SHAPING_CONSTANT = 3.0
"""Default c of process reward shaping's squashing, steepness c / IQR (`agentprm.shaping`): the paper's
released config (`compute_shaped_prm_target.yaml`)."""
