"""`agentprm train`: the whole AgentPRM loop (paper §2) as one resumable run.

    demos (expert) → SFT π0 → eval π0 → for i = 1..K:
        rollouts of π_{i-1} → MC targets → PRM_i → π_i (online DPO vs PRM_i) → eval π_i → eval Best-of-N
    → report.md

Run directory layout (every stage writes only inside its own folder):
    config.yaml        the resolved config (plus versions and git revision in run.json)
    state.json         finished stages in order, with wall-clock seconds each
    demos/             expert trajectories on train games (SFT data)
    pi0/               SFT output; pi0/model is π0
    iter{i}/rollouts/  trajectories of π_{i-1};   iter{i}/targets/  parquet Q̂ and pairs
    iter{i}/prm/       PRM_i;                     iter{i}/policy/   DPO output; iter{i}/policy/model is π_i
    eval/<name>/       summary.json, results.md, trajectories.jsonl, success.png per evaluated agent
    report.md, success.png   the Table-1-like comparison

Resume: a stage is marked done in state.json only after its outputs are in place (atomic write of the
state file). Killed at any moment and started again, the run skips finished stages; the stage it was
in resumes (rollouts and evals skip finished episodes, SFT/PRM/DPO restart from their checkpoints).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentprm.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSection(_Section):
    train_split: str = Field("train", description="split for demonstrations and rollouts")
    eval_split: str = Field("valid_seen", description="split for evaluation (valid_unseen for the paper's table)")
    demo_games: int | None = Field(None, description="train games whose walkthroughs become SFT demos (None: all)")
    rollout_games: int | None = Field(None, description="train games rolled out per iteration (None: all)")
    eval_games: int | None = Field(None, description="evaluation games, a seeded sample (None: the whole split)")
    task_types: list[str] | None = Field(None, description="restrict every stage to these task types")
    max_steps: int = Field(30, description="turns per episode (the paper uses 30)")
    workers: int | None = Field(None, description="environment worker processes (None: CPU cores)")


class PolicySection(_Section):
    history_window: int | None = Field(8, description="turns of history in every prompt (policy, PRM, SFT)")
    max_new_tokens: int = Field(48, description="answer budget when generating")
    batch_size: int = Field(32, description="sequences per forward pass when acting")
    in_flight: int = Field(64, description="episodes played at once (keeps generate batches large)")


class SFTSection(_Section):
    epochs: float = Field(1.0, description="passes over the demo turns")
    lr: float = Field(5e-5, description="learning rate")
    batch_size: int = Field(8, description="examples per step")
    max_examples: int | None = Field(None, description="cap on demo turns (None: all)")
    extra: dict[str, Any] = Field(default_factory=dict, description="any other SFTConfig field")


class RolloutSection(_Section):
    repeats: int = Field(4, description="episodes per game per iteration (MC visits)")
    temperature: float = Field(1.0, description="sampling temperature for exploration")
    reset_fraction: float = Field(
        0.0, description="share of episodes started from a random state along the expert walkthrough")
    explore: bool = Field(False, description="sample with the exploration prompt (targets use the plain one)")


class TargetsSection(_Section):
    gamma: float = Field(0.95, description="discount in Eq. 1")
    val_fraction: float = Field(0.1, description="share of games held out for PRM validation")
    delta: float = Field(0.2, description="min Q̂ gap for Bradley–Terry pairs")
    all_iterations: bool = Field(False, description="merge rollouts of all iterations so far")


class PRMSection(_Section):
    model: str | None = Field(None, description="PRM backbone (None: the run's base model)")
    loss: str = Field("soft-bce", description="soft-bce (Eq. 4) or bradley-terry (relative)")
    epochs: float = Field(1.0, description="passes over the targets")
    lr: float = Field(2e-5, description="learning rate")
    batch_size: int = Field(8, description="examples per step")
    extra: dict[str, Any] = Field(default_factory=dict, description="any other PRMConfig field")


class PolicyStepSection(_Section):
    method: str = Field("dpo", description="dpo (online DPO) or rejection")
    beta: float = Field(0.1, description="DPO KL leash")
    lr: float = Field(1e-5, description="learning rate")
    steps: int = Field(50, description="optimizer steps")
    batch_states: int = Field(8, description="states per step")
    monitor_every: int = Field(0, description="real-success check every k steps (0: off)")
    monitor_games: int = Field(8, description="held-back train games for the check")
    extra: dict[str, Any] = Field(default_factory=dict, description="any other PolicyTrainConfig field")


class EvalSection(_Section):
    best_of: list[int] = Field(default_factory=lambda: [4], description="Best-of-N sizes evaluated each iteration")
    bon_temperature: float = Field(1.0, description="sampling temperature for Best-of-N")


class RunConfig(_Section):
    run_dir: str = Field("runs/train", description="where everything of this run goes")
    model: str = Field("smollm2", description="base model spec (smollm2, tiny, a folder, a hub id)")
    policy: str | None = Field(None, description="start from this π0 instead of running SFT")
    iterations: int = Field(1, description="AgentPRM iterations K")
    seed: int = Field(0, description="seed for sampling games and generation")
    device: str | None = Field(None, description="cuda, cpu or None (auto)")
    data: DataSection = Field(default_factory=DataSection)
    policy_args: PolicySection = Field(default_factory=PolicySection, alias="acting")
    sft: SFTSection = Field(default_factory=SFTSection)
    rollout: RolloutSection = Field(default_factory=RolloutSection)
    targets: TargetsSection = Field(default_factory=TargetsSection)
    prm: PRMSection = Field(default_factory=PRMSection)
    policy_step: PolicyStepSection = Field(default_factory=PolicyStepSection)
    eval: EvalSection = Field(default_factory=EvalSection)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """YAML file plus dotted `key=value` overrides (e.g. `sft.lr=1e-4`), validated."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"no config file at {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from e
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r}: expected key=value")
        node = data
        *parents, leaf = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = yaml.safe_load(raw)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"{p}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from e


def describe_config() -> str:
    """Every field with its default and description, as commented YAML (`agentprm train --show-config`)."""
    lines: list[str] = []

    def walk(model: type[BaseModel], indent: str) -> None:
        for name, f in model.model_fields.items():
            key = f.alias or name
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                lines.append(f"{indent}{key}:")
                walk(ann, indent + "  ")
                continue
            default = f.get_default(call_default_factory=True)
            lines.append(f"{indent}{key}: {json.dumps(default)}  # {f.description or ''}")

    walk(RunConfig, "")
    return "\n".join(lines) + "\n"


# -- run state ------------------------------------------------------------------------------------


class RunState:
    """state.json: the finished stages (in order) and their wall-clock seconds; written atomically."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "state.json"
        self.data: dict[str, Any] = {"done": [], "seconds": {}}
        if self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text())
            except json.JSONDecodeError as e:
                raise ConfigError(f"{self.path} is corrupt ({e}); move it away to restart the run") from e

    def is_done(self, stage: str) -> bool:
        return stage in self.data["done"]

    def mark_done(self, stage: str, seconds: float) -> None:
        self.data["done"].append(stage)
        self.data["seconds"][stage] = round(seconds, 1)
        tmp = self.path.with_name(f".state.json.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.data, indent=2))
        os.replace(tmp, self.path)


def _provenance() -> dict[str, Any]:
    import torch
    import transformers

    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    from agentprm import __version__

    return {"agentprm": __version__, "git": rev, "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__}


def prepare_run_dir(cfg: RunConfig, force: bool = False) -> Path:
    """Create the run folder and save the config. Resuming with a changed config is refused unless
    `force` (finished stages are kept as they are; the old config is kept as config.prev.yaml)."""
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    saved = run / "config.yaml"
    text = yaml.safe_dump(cfg.model_dump(by_alias=True), sort_keys=False)
    if saved.is_file() and yaml.safe_load(saved.read_text()) != yaml.safe_load(text):
        if not force:
            raise ConfigError(f"{run} holds a run with another config; use a new run_dir, the same config, "
                              "or --force to go on with the new one (finished stages are not redone)")
        os.replace(saved, run / "config.prev.yaml")
    saved.write_text(text)
    (run / "run.json").write_text(json.dumps(_provenance(), indent=2))
    return run


def run_stages(stages: list[tuple[str, Callable[[], Any]]], state: RunState, log: Callable[[str], None]) -> None:
    for name, fn in stages:
        if state.is_done(name):
            log(f"[dim]✓ {name} (done)[/dim]")
            continue
        log(f"[bold]▶ {name}[/bold]")
        t0 = time.perf_counter()
        fn()
        state.mark_done(name, time.perf_counter() - t0)
        log(f"[green]✓ {name}[/green] in {state.data['seconds'][name]:.0f}s")


# -- the stages -----------------------------------------------------------------------------------


class Run:
    """Builds the stage list of a run from its config; each stage reads the folders of earlier ones."""

    def __init__(self, cfg: RunConfig, show: bool = True):
        self.cfg, self.show = cfg, show
        self.dir = Path(cfg.run_dir)

    # paths
    def policy_dir(self, i: int) -> str:
        if i == 0:
            return self.cfg.policy or str(self.dir / "pi0" / "model")
        return str(self.dir / f"iter{i}" / "policy" / "model")

    def prm_dir(self, i: int) -> Path:
        return self.dir / f"iter{i}" / "prm"

    def _games(self, split: str, n: int | None, salt: int = 0, balanced: bool = False) -> list[Any]:
        """A seeded sample of a split; `balanced` spreads it evenly over task types (eval sets)."""
        from agentprm.envs.games import find_games, sample_games, stratified_games

        games = find_games(split, self.cfg.data.task_types)
        if balanced and n is not None:
            return stratified_games(games, n, self.cfg.seed + salt)
        return sample_games(games, n, self.cfg.seed + salt)

    def _play(self, agent: Any, jobs: list[Any], out: Path, title: str, extra: dict[str, Any]) -> dict[str, Any]:
        from agentprm.evaluation import play_and_report

        d = self.cfg.data
        return play_and_report(agent, jobs, out, title, d.workers, d.max_steps, extra,
                               self.cfg.policy_args.in_flight, self.show)

    def _lm(self, spec: str, temperature: float, explore: bool = False) -> Any:
        from agentprm.agents.policy import LMPolicy, PolicyConfig

        a = self.cfg.policy_args
        return LMPolicy.from_spec(spec, PolicyConfig(
            temperature=temperature, max_new_tokens=a.max_new_tokens, history_window=a.history_window,
            explore=explore, seed=self.cfg.seed, batch_size=a.batch_size, device=self.cfg.device))

    # stages
    def demos(self) -> None:
        from agentprm.agents.base import ExpertAgent
        from agentprm.envs.alfworld import ALFWorldEnv
        from agentprm.rollout import make_jobs

        games = self._games(self.cfg.data.train_split, self.cfg.data.demo_games)
        agent = ExpertAgent({g.game_id: ALFWorldEnv(g).walkthrough for g in games})
        self._play(agent, make_jobs(games), self.dir / "demos", "expert demos", {"stage": "demos"})

    def sft(self) -> None:
        from agentprm.cli.common import build_config
        from agentprm.train.sft import SFTConfig, train_sft

        s = self.cfg.sft
        values = {"demos": [str(self.dir / "demos")], "model": self.cfg.model, "out": str(self.dir / "pi0"),
                  "epochs": s.epochs, "lr": s.lr, "batch_size": s.batch_size, "max_examples": s.max_examples,
                  "history_window": self.cfg.policy_args.history_window, "seed": self.cfg.seed,
                  "device": self.cfg.device, "progress": self.show, **s.extra}
        train_sft(build_config(SFTConfig, values))

    def evaluate(self, i: int, best_of: int = 1) -> None:
        from agentprm.rollout import make_jobs

        name = f"pi{i}" if best_of == 1 else f"pi{i}_bon{best_of}"
        games = self._games(self.cfg.data.eval_split, self.cfg.data.eval_games, salt=1, balanced=True)
        if best_of == 1:
            agent = self._lm(self.policy_dir(i), 0.0)
        else:
            from agentprm.agents.best_of_n import BestOfNAgent
            from agentprm.train.prm import PRM

            lm = self._lm(self.policy_dir(i), self.cfg.eval.bon_temperature)
            agent = BestOfNAgent(lm, PRM.load(str(self.prm_dir(i)), device=self.cfg.device), best_of)
        extra = {"stage": f"eval/{name}", "iteration": i, "best_of": best_of, "split": self.cfg.data.eval_split}
        self._play(agent, make_jobs(games, 1, self.cfg.seed), self.dir / "eval" / name, name, extra)

    def rollouts(self, i: int) -> None:
        from agentprm.envs.alfworld import ALFWorldEnv
        from agentprm.rollout import reset_distribution_jobs

        r = self.cfg.rollout
        games = self._games(self.cfg.data.train_split, self.cfg.data.rollout_games, salt=100 + i)
        agent = self._lm(self.policy_dir(i - 1), r.temperature, r.explore)
        plans = {g.game_id: ALFWorldEnv(g).walkthrough for g in games} if r.reset_fraction > 0 else {}
        jobs = reset_distribution_jobs(games, r.repeats, self.cfg.seed + 1000 * i, r.reset_fraction, plans)
        self._play(agent, jobs, self.dir / f"iter{i}" / "rollouts", f"rollouts of pi{i - 1}", {"stage": "rollouts"})

    def targets(self, i: int) -> None:
        from agentprm.targets import TargetsConfig, build_targets

        t = self.cfg.targets
        first = 1 if t.all_iterations else i
        rollouts = [str(self.dir / f"iter{k}" / "rollouts" / "trajectories.jsonl") for k in range(first, i + 1)]
        build_targets(TargetsConfig(rollouts=rollouts, out=str(self.dir / f"iter{i}" / "targets"), gamma=t.gamma,
                                    val_fraction=t.val_fraction, delta=t.delta, seed=self.cfg.seed))

    def prm(self, i: int) -> None:
        from agentprm.cli.common import build_config
        from agentprm.train.prm import PRMConfig, train_prm

        p = self.cfg.prm
        values = {"data": str(self.dir / f"iter{i}" / "targets"), "model": p.model or self.cfg.model,
                  "out": str(self.prm_dir(i)), "loss": p.loss, "epochs": p.epochs, "lr": p.lr,
                  "batch_size": p.batch_size, "history_window": self.cfg.policy_args.history_window,
                  "seed": self.cfg.seed, "device": self.cfg.device, **p.extra}
        train_prm(build_config(PRMConfig, values))

    def policy_step(self, i: int) -> None:
        from agentprm.cli.common import build_config
        from agentprm.train.dpo import PolicyTrainConfig, train_policy

        p = self.cfg.policy_step
        values = {"policy": self.policy_dir(i - 1), "prm": str(self.prm_dir(i)),
                  "states": [str(self.dir / f"iter{i}" / "rollouts" / "trajectories.jsonl")],
                  "out": str(self.dir / f"iter{i}" / "policy"), "method": p.method, "beta": p.beta, "lr": p.lr,
                  "steps": p.steps, "batch_states": p.batch_states, "monitor_every": p.monitor_every,
                  "monitor_games": p.monitor_games, "history_window": self.cfg.policy_args.history_window,
                  "max_new_tokens": self.cfg.policy_args.max_new_tokens, "workers": self.cfg.data.workers,
                  "max_steps_per_episode": self.cfg.data.max_steps, "seed": self.cfg.seed,
                  "device": self.cfg.device, **p.extra}
        train_policy(build_config(PolicyTrainConfig, values), show_progress=self.show)

    def stages(self) -> list[tuple[str, Callable[[], Any]]]:
        st: list[tuple[str, Callable[[], Any]]] = []
        if self.cfg.policy is None:
            st += [("demos", self.demos), ("sft", self.sft)]
        st.append(("eval/pi0", lambda: self.evaluate(0)))
        for i in range(1, self.cfg.iterations + 1):
            st += [
                (f"iter{i}/rollouts", lambda i=i: self.rollouts(i)),
                (f"iter{i}/targets", lambda i=i: self.targets(i)),
                (f"iter{i}/prm", lambda i=i: self.prm(i)),
                (f"iter{i}/policy", lambda i=i: self.policy_step(i)),
                (f"eval/pi{i}", lambda i=i: self.evaluate(i)),
            ]
            st += [(f"eval/pi{i}_bon{n}", lambda i=i, n=n: self.evaluate(i, n)) for n in self.cfg.eval.best_of if n > 1]
        st.append(("report", self.report))
        return st

    def report(self) -> None:
        from agentprm.report import write_report

        write_report(self.dir)


def train(cfg: RunConfig, show: bool = True, force: bool = False) -> Path:
    """Run (or resume) the whole loop; returns the path of report.md."""
    from rich.console import Console

    console = Console()
    run = prepare_run_dir(cfg, force)
    state = RunState(run)
    run_stages(Run(cfg, show).stages(), state, console.print if show else (lambda _: None))
    return run / "report.md"
