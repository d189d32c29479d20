"""Data parallelism for the loops we write ourselves (the PRM and the policy step), through `accelerate`.

Run a stage under `accelerate launch --num_processes N -m agentprm ...` or `torchrun --nproc_per_node N
-m agentprm ...` and every process holds the whole model (DDP: gradients are averaged in `backward`)
and trains on its share of each *global* batch. Batch sizes keep their one-process meaning (examples
per optimizer step), so N processes follow the loss curve of one process, only faster; step counts,
schedules and checkpoints do not depend on N. (SFT runs in a `transformers.Trainer`, whose
`batch_size` is per process instead.)

Why the global batch is split here rather than by a prepared DataLoader: our batches are slices of a
seeded permutation of a Python list (so a resumed epoch sees the same order), and the items of a batch
carry different numbers of labels (a packed PRM episode labels every turn), so weighting the loss
needs the whole global batch in view, which every process has.

Weighting: a loss averaged over the n items (labels, pairs) of a global batch is Σ_i ℓ_i / n. Process
r holds n_r of them, takes the mean ℓ̄_r of its own and backpropagates ℓ̄_r · n_r/n · W, since DDP
averages gradients over the W processes: (1/W) Σ_r W · (n_r/n) · ∇ℓ̄_r = ∇ Σ_i ℓ_i / n. With one
process the factor is exactly 1.0, so the single-process path computes bit for bit what it did before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import torch
from accelerate import Accelerator, PartialState
from accelerate.state import AcceleratorState
from accelerate.utils import gather_object

from agentprm.models import pick_device

T = TypeVar("T")


def make_accelerator(device: str | None) -> Accelerator:
    """An Accelerator for one of our loops. Mixed precision stays the loop's own (bf16 autocast on
    CUDA over fp32 master weights), and models are placed by us (`device_for`). The accelerate state
    is one per process, and a Trainer that ran earlier in it (SFT inside `agentprm train`) leaves its
    own mixed precision there: start from a clean state, as Trainer itself does."""
    AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=pick_device(device).type == "cpu", mixed_precision="no", device_placement=False)


def device_for(acc: Accelerator | PartialState, device: str | None) -> str | None:
    """Where this process loads its models: its own device when there are several processes (each
    has one GPU), else the configured one (None/"auto": CUDA when there is one)."""
    return str(acc.device) if acc.num_processes > 1 else device


def my_share(acc: Accelerator, items: Sequence[T]) -> list[T]:
    """This process's contiguous share of a global batch (earlier processes take one more item when
    it does not divide; a process may get none)."""
    with acc.split_between_processes(list(items)) as mine:
        return mine


def loss_weight(n_mine: int, n_all: int, processes: int) -> float:
    """The factor on this process's mean loss that makes DDP's gradient average equal the gradient
    of the global batch's mean (module docstring); 0 for a process with nothing to add."""
    return n_mine / n_all * processes if n_mine else 0.0


def gather_list(acc: Accelerator, values: list[T]) -> list[T]:
    """Every process's list, concatenated in process order (with `my_share`: the global order)."""
    return gather_object(values) if acc.num_processes > 1 else values


def global_sums(acc: Accelerator, *values: float) -> list[float]:
    """Each value summed over the processes (one all-reduce); the values themselves for one process."""
    t = torch.tensor(values, dtype=torch.float64, device=acc.device)
    return acc.reduce(t, reduction="sum").tolist()


def broadcast(acc: Accelerator, value: Any) -> Any:
    """The main process's value on every process (e.g. a result only the main process computed)."""
    if acc.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]
