"""Training commands; each builds the stage's Config dataclass and calls its Python entry point.

Named options cover the usual knobs; `--set FIELD=VALUE` (repeatable) reaches every other field of
the config, so the command line mirrors the Python API.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from agentprm.bounds import PAIR_DELTA
from agentprm.cli.common import build_config, console, main_process

SetOpt = Annotated[list[str] | None, typer.Option("--set", help="FIELD=VALUE for any other config field")]
OutOpt = Annotated[Path, typer.Option("--out", help="output folder")]


def sft(
    demos: Annotated[list[Path], typer.Option("--demos", help="demonstration trajectory files/folders")],
    model: Annotated[str, typer.Option("--model", help="smollm2, tiny, a folder or a hub id")] = "smollm2",
    out: OutOpt = Path("runs/pi0"),
    epochs: Annotated[float | None, typer.Option("--epochs")] = None,
    lr: Annotated[float | None, typer.Option("--lr")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    max_examples: Annotated[int | None, typer.Option("--max-examples", help="cap on demo turns")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="optimizer steps (overrides epochs)")] = None,
    overrides: SetOpt = None,
) -> None:
    """SFT π0 on demonstrations: one example per turn, loss on the answer tokens; resumes from checkpoints."""
    from agentprm.train.sft import SFTConfig, train_sft

    cfg = build_config(SFTConfig, {"demos": [str(d) for d in demos], "model": model, "out": str(out),
                                   "epochs": epochs, "lr": lr, "batch_size": batch_size,
                                   "max_examples": max_examples, "max_steps": max_steps}, overrides)
    summary = train_sft(cfg)
    if main_process():
        console.print({k: v for k, v in summary.items() if not isinstance(v, dict | list)})
        console.print(f"π0 saved to {out / 'model'}")


def build_model(
    corpus: Annotated[list[Path], typer.Option("--corpus", help="trajectories whose text trains the tokenizer")],
    size: Annotated[str, typer.Option("--size", help="tiny, small (~4.7 M parameters) or medium (~15 M)")] = "small",
    out: OutOpt = Path("runs/base"),
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Build an ALFWorld-native model from scratch: a BPE tokenizer on the corpus + a random Llama."""
    import json

    from agentprm.scratch import build_scratch_model

    path = build_scratch_model([str(c) for c in corpus], size, out, seed)
    info = json.loads((path / "scratch.json").read_text())
    console.print(f"built {size} model ({info['parameters']:,} parameters, vocabulary "
                  f"{info['vocab_size']} max) in {path}; train it with `agentprm sft --model {path}`")


def targets(
    rollouts: Annotated[list[Path], typer.Option("--rollouts", help="trajectory files/folders (repeatable)")],
    out: OutOpt = Path("runs/targets"),
    gamma: Annotated[float, typer.Option("--gamma", help="discount of Eq. 1")] = 0.95,
    delta: Annotated[float, typer.Option("--delta", help="min Q̂ gap between two actions at one state for a "
                                         "Bradley–Terry pair (the paper's 0.03)")] = PAIR_DELTA,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="share of games for validation")] = 0.1,
    values: Annotated[bool, typer.Option(
        "--values", help="one row per state, V̂(s): targets of a value model (train-prm --reads state)")] = False,
    shaping_value: Annotated[Path | None, typer.Option(
        "--shaping-value", help="value model folder: shape the targets with its V_ref (§4)")] = None,
    shaping_constant: Annotated[float | None, typer.Option(
        "--shaping-constant", help="steepness c/IQR of the shaped targets' squashing into [0, 1] (3.0)")] = None,
    shaping_centre: Annotated[str | None, typer.Option(
        "--shaping-centre", help="centre of that squashing: mean (the released code) or median")] = None,
    overrides: SetOpt = None,
) -> None:
    """Monte-Carlo Q̂ targets (Eq. 1) for every state–action seen, plus Bradley–Terry pairs, as parquet;
    --values: V̂ per state instead; --shaping-value: shaped by a value model's V_ref (§4)."""
    from agentprm.targets import TargetsConfig, build_targets

    cfg = build_config(TargetsConfig, {"rollouts": [str(r) for r in rollouts], "out": str(out), "gamma": gamma,
                                       "delta": delta, "val_fraction": val_fraction, "values": values,
                                       "shaping_value": None if shaping_value is None else str(shaping_value),
                                       "shaping_constant": shaping_constant, "shaping_centre": shaping_centre},
                       overrides)
    summary = build_targets(cfg)
    console.print({k: v for k, v in summary.items() if not isinstance(v, dict | list)})


def train_prm(
    data: Annotated[Path, typer.Option("--data", help="targets folder")],
    model: Annotated[str, typer.Option("--model", help="backbone spec")] = "smollm2",
    out: OutOpt = Path("runs/prm"),
    loss: Annotated[str, typer.Option("--loss", help="soft-bce or bradley-terry")] = "soft-bce",
    reads: Annotated[str | None, typer.Option(
        "--reads", help="what the PRM scores: answer (reason + action, the paper's; the default), action, or "
        "state (a value model, on targets --values)")] = None,
    epochs: Annotated[float | None, typer.Option("--epochs")] = None,
    lr: Annotated[float | None, typer.Option("--lr")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    overrides: SetOpt = None,
) -> None:
    """Train a PRM Q(s,a): soft BCE on Q̂ (Eq. 4) or Bradley–Terry on pairs; reports BCE, Brier, AUC."""
    from agentprm.train.prm import PRMConfig, train_prm

    cfg = build_config(PRMConfig, {"data": str(data), "model": model, "out": str(out), "loss": loss,
                                   "reads": reads, "epochs": epochs, "lr": lr, "batch_size": batch_size}, overrides)
    summary = train_prm(cfg)
    if main_process():
        console.print({k: v for k, v in summary.items() if not isinstance(v, dict | list)})


def eval_prm(
    prm: Annotated[Path, typer.Option("--prm", help="a saved PRM (train-prm or train-inverse-prm output)")],
    data: Annotated[Path, typer.Option("--data", help="targets folder (agentprm targets) of the turns to score")],
    split: Annotated[str, typer.Option("--split", help="val, train or all")] = "val",
    out: Annotated[Path | None, typer.Option("--out", help="folder for summary.json and calibration.png")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
    device: Annotated[str | None, typer.Option("--device")] = None,
) -> None:
    """Score a saved PRM on any targets: outcome AUC, Brier, calibration, same-state pair accuracy."""
    from agentprm.atomic import write_json
    from agentprm.train.metrics import plot_calibration
    from agentprm.train.prm import evaluate_prm

    m = evaluate_prm(prm, data, split, batch_size, device, progress=True)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        plot_calibration(m["prm/reliability"], out / "calibration.png", f"{prm} on {data} ({split})")
        write_json(out / "summary.json", m)
    console.print({k: v for k, v in m.items() if not isinstance(v, dict | list)})


def train_inverse_prm(
    demos: Annotated[list[Path], typer.Option("--demos", help="expert trajectory files/folders (repeatable)")],
    rollouts: Annotated[list[Path], typer.Option("--rollouts", help="learner trajectories, pooled (repeatable)")],
    model: Annotated[str, typer.Option("--model", help="backbone spec")] = "smollm2",
    out: OutOpt = Path("runs/inverse-prm"),
    gamma: Annotated[float | None, typer.Option("--gamma", help="discount of r = Q(s,a) − γ·Q(s′,a′)")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs")] = None,
    lr: Annotated[float | None, typer.Option("--lr")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="transitions per side per step")] = None,
    overrides: SetOpt = None,
) -> None:
    """InversePRM (Eq. 9): a PRM from demonstrations alone, expert vs learner transitions; no outcome reward."""
    from agentprm.train.inverse import InversePRMConfig, train_inverse_prm

    cfg = build_config(InversePRMConfig, {"demos": [str(d) for d in demos], "rollouts": [str(r) for r in rollouts],
                                          "model": model, "out": str(out), "gamma": gamma, "epochs": epochs,
                                          "lr": lr, "batch_size": batch_size}, overrides)
    summary = train_inverse_prm(cfg)
    console.print({k: v for k, v in summary.items() if not isinstance(v, dict | list)})
    console.print(f"InversePRM saved to {out / 'model'}")


def train_policy(
    policy: Annotated[str, typer.Option("--policy", help="π_{i-1}: model folder or spec")],
    prm: Annotated[Path, typer.Option("--prm", help="PRM folder")],
    states: Annotated[list[Path], typer.Option("--states", help="rollout trajectories (repeatable)")],
    out: OutOpt = Path("runs/policy"),
    method: Annotated[str, typer.Option("--method", help="dpo or rejection")] = "dpo",
    beta: Annotated[float, typer.Option("--beta", help="DPO KL leash")] = 0.1,
    steps: Annotated[int, typer.Option("--steps")] = 50,
    lr: Annotated[float, typer.Option("--lr")] = 1e-5,
    monitor_every: Annotated[int, typer.Option("--monitor-every", help="real-success check every k steps")] = 0,
    overrides: SetOpt = None,
) -> None:
    """Online DPO (or rejection fine-tuning) of the policy against the PRM, with a reward-hacking monitor."""
    from agentprm.train.dpo import PolicyTrainConfig, train_policy

    cfg = build_config(PolicyTrainConfig, {"policy": policy, "prm": str(prm), "states": [str(s) for s in states],
                                           "out": str(out), "method": method, "beta": beta, "steps": steps,
                                           "lr": lr, "monitor_every": monitor_every}, overrides)
    summary = train_policy(cfg)
    if main_process():
        console.print({k: v for k, v in summary.items() if not isinstance(v, dict)})
        console.print(f"policy saved to {out / 'model'}")


def train(
    config: Annotated[Path | None, typer.Option("--config", help="run config (YAML)")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="dotted key=value, e.g. sft.lr=1e-4")] = None,
    show_config: Annotated[bool, typer.Option(
        "--show-config", help="print the resolved config (file + --set), every field described, and exit")] = False,
    force: Annotated[bool, typer.Option("--force", help="resume with a changed config")] = False,
) -> None:
    """The whole AgentPRM loop (SFT π0 → K × [rollouts → targets → PRM → DPO → eval] → report.md); resumable."""
    from agentprm.errors import ConfigError
    from agentprm.loop import describe_config, load_config
    from agentprm.loop import train as run_train

    if show_config:
        resolved = load_config(config, overrides) if config is not None or overrides else None
        console.print(describe_config(resolved), highlight=False, markup=False, soft_wrap=True)
        return
    if config is None:
        raise ConfigError("give --config FILE (see configs/ and `agentprm train --show-config`)")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("`agentprm train` runs the whole loop in one process (rollouts and evals are not data "
                          "parallel); launch its training stages (sft, train-prm, train-policy) with torchrun or "
                          "accelerate launch instead")
    report = run_train(load_config(config, overrides), force=force)
    console.print(f"report: {report}")
