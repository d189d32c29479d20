"""`agentprm train`: the whole AgentPRM loop (paper §2) as one resumable run.

    demos (expert) → [base: tokenizer + model from scratch] → SFT π0 → [DAgger rounds] → eval π0 →
    for i = 1..K: rollouts of π_{i-1} → MC targets → PRM_i → π_i (online DPO vs PRM_i) → eval π_i
    → Best-of-N evals → report.md

With `method: inverse_prm` (paper §3) the reward step learns from the demos instead of outcomes:
    for i = 1..K: rollouts of π_{i-1} → InversePRM_i (demos vs the rollouts of π_0 … π_{i-1}, Eq. 9)
    → π_i (online DPO vs InversePRM_i) → eval π_i
No targets are built; the InversePRM and policy stages read no `won` and no reward (SFT of π0, shared
with AgentPRM, still keeps only the demonstrator's won episodes). The evaluations and, with held-out
games, the choice of the iteration to keep still measure real success.

With `data.heldout_games`, that many train games are kept out of demos and rollouts, every π_i is
also played on them, and the iteration to keep (for Best-of-N and the headline) is chosen there, never
on the evaluation split, which stays the reported test.

Run directory layout (every stage writes only inside its own folder):
    config.yaml        the resolved config (plus versions and git revision in run.json)
    state.json         finished stages in order, with wall-clock seconds each
    demos/             expert trajectories on train games (SFT data)
    base/              the model built from scratch (`model: scratch:SIZE`): tokenizer + random weights
    pi0/               SFT output; pi0/model is π0 (dagger{r}/ hold DAgger rounds; the last is π0)
    heldout/pi{i}/     π_i on the held-out train games;  selected.json  the iteration kept
    iter{i}/rollouts/  trajectories of π_{i-1};   iter{i}/branches/  their same-state branches (rollout.branches)
    iter{i}/targets/   parquet Q̂ and pairs (from rollouts and branches)
    iter{i}/prm/       PRM_i (InversePRM_i with method inverse_prm); iter{i}/policy/  DPO output; .../model is π_i
    eval/<name>/       summary.json, results.md, trajectories.jsonl, success.png per evaluated agent
    report.md, success.png   the Table-1-like comparison

Resume: a stage is marked done in state.json only after its outputs are in place (atomic write of the
state file). Killed at any moment and started again, the run skips finished stages; the stage it was
in resumes (rollouts and evals skip finished episodes, SFT/PRM/DPO restart from their checkpoints).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentprm.atomic import write_json, write_text
from agentprm.bounds import (
    PAIR_DELTA,
    SHAPING_CONSTANT,
    Count,
    Discount,
    Fraction,
    NonNegative,
    NonNegInt,
    Positive,
    Probability,
    ShapingCentre,
)
from agentprm.envs.games import SPLITS, TASK_TYPES
from agentprm.errors import ConfigError, CorruptRecordError, WorkerError

TaskType = Literal[TASK_TYPES]  # type: ignore[valid-type]
Split = Literal[SPLITS]  # type: ignore[valid-type]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSection(_Section):
    train_split: Split = Field("train", description="split for demonstrations and rollouts")
    eval_split: Split = Field("valid_seen", description="split for evaluation (valid_unseen for the paper's table)")
    demo_expert: Literal["walkthrough", "handcoded", "planner"] = Field(
        "walkthrough", description="demonstrator: walkthrough (game files' planner plans), "
                             "handcoded (alfworld's searching player) or planner")
    demo_games: Count | None = Field(None, description="train games played by the demonstrator (None: all)")
    demo_noise: Fraction = Field(0.0, description="DART: share of random actions the demonstrator takes, its own "
                              "action kept as the label (train SFT with labels: auto)")
    heldout_games: NonNegInt = Field(0, description="train games kept out of demos and rollouts, for choosing "
                               "the iteration to keep (0: none; the last iteration is kept)")
    rollout_games: Count | None = Field(None, description="train games rolled out per iteration (None: all)")
    eval_games: Count | None = Field(None, description="evaluation games, a seeded sample (None: the whole split)")
    task_types: list[TaskType] | None = Field(None, description="restrict every stage to these task types")
    max_steps: Count = Field(30, description="turns per episode (the paper uses 30)")
    workers: Count | None = Field(None, description="environment workers (None: CPU cores, the Ray cluster's "
                                 "with backend: ray)")
    backend: Literal["process", "ray"] = Field(
        "process", description="what runs environment workers: process (this machine) or ray (Ray actors anywhere "
                               "in a Ray cluster; see README: Scaling out)")
    ray_address: str | None = Field(None, description="the Ray cluster for backend: ray (None: $RAY_ADDRESS, "
                                    "else a local Ray instance)")
    max_failed_episodes: NonNegInt = Field(0, description="episodes a stage may leave failed after its retries "
                                           "(env faults) and still count as done; more stop the run, and a rerun "
                                           "retries them")


class PolicySection(_Section):
    mode: Literal["generate", "constrained", "score"] = Field(
        "generate", description="how policies answer: generate, constrained (only admissible "
                      "commands) or score (likelihood ranking); in eval, rollouts, DAgger and the policy step")
    history_window: NonNegInt | None = Field(8, description="turns of history in every prompt (policy, PRM, SFT)")
    cpu_bf16: bool = Field(False, description="act under bf16 autocast on the CPU (faster where the CPU has "
                           "AVX512-BF16/AMX)")
    max_new_tokens: Count = Field(48, description="answer budget when generating")
    batch_size: Count = Field(32, description="sequences per forward pass when acting")
    in_flight: Count = Field(64, description="episodes played at once (keeps generate batches large)")


class SFTSection(_Section):
    epochs: Positive = Field(1.0, description="passes over the demo turns")
    lr: Positive = Field(5e-5, description="learning rate")
    batch_size: Count = Field(8, description="examples per step")
    max_examples: Count | None = Field(None, description="cap on demo turns (None: all)")
    extra: dict[str, Any] = Field(default_factory=dict, description="any other SFTConfig field")


class DaggerSection(_Section):
    rounds: NonNegInt = Field(0, description="DAgger rounds after SFT (0: off): roll π out with the expert "
                        "beside it, relabel every state with the expert's action, retrain on the aggregate")
    expert: Literal["handcoded", "planner"] = Field(
        "handcoded", description="teacher: handcoded or planner (privileged, ~1 s a step)")
    games: Count | None = Field(None, description="train games rolled out per round (None: all)")
    temperature: NonNegative = Field(0.0, description="sampling temperature of the learner's rollouts")
    epochs: Positive = Field(1.0, description="SFT passes over the aggregate per round (from the current π)")
    lr: Positive | None = Field(None, description="learning rate of the round's SFT (None: sft.lr)")
    max_relabels: Count | None = Field(4, description="per learner episode, train on the first k states where the "
                                     "expert disagrees (each costs a whole prompt; None: all)")
    relabel_from: Literal["start", "first_repeat"] = Field(
        "start", description="relabel disagreements from the episode's start, or only from its first repeated "
        "(observation, action) on, where the learner loops (SFTConfig.relabel_from)")


class RolloutSection(_Section):
    repeats: Count = Field(4, description="episodes per game per iteration (MC visits)")
    temperature: NonNegative = Field(1.0, description="sampling temperature for exploration")
    reset_fraction: Probability = Field(
        0.0, description="share of episodes started from a random state along the expert walkthrough")
    explore: bool = Field(False, description="sample with the exploration prompt (targets use the plain one)")
    branches: NonNegInt = Field(0, description="same-state branching (0: off): from a turn of each rollout, this "
                                "many more episodes that replay its actions so far and sample on, so the targets "
                                "compare several actions at one state (rollout.branch_jobs)")
    branch_fraction: Probability = Field(1.0, description="share of the rollouts that are branched")


class TargetsSection(_Section):
    gamma: Discount = Field(0.95, description="discount in Eq. 1")
    val_fraction: Fraction = Field(0.1, description="share of games held out for PRM validation")
    delta: Probability = Field(PAIR_DELTA, description="min Q̂ gap between two actions at one state for a "
                               "Bradley–Terry pair (0.03: the paper's released config)")
    all_iterations: bool = Field(False, description="merge rollouts of all iterations so far")
    shaping_value: str | None = Field(None, description="process reward shaping (§4): a value model folder "
                                      "(`targets --values` + `train-prm --reads state` on a reference policy's "
                                      "rollouts) whose V_ref shapes every iteration's targets; None: off")
    shaping_constant: Positive = Field(SHAPING_CONSTANT, description="steepness c/IQR of the shaped targets' squashing "
                                    "into [0, 1] (3.0: the paper's released config)")
    shaping_centre: ShapingCentre = Field("mean", description="centre of that squashing: mean (the "
                                                      "released code) or median (agentprm.shaping)")


class PRMSection(_Section):
    model: str | None = Field(None, description="PRM backbone: a model spec, 'policy' (π_{i-1}, the policy "
                              "it judges) or None (the run's base model)")
    loss: Literal["soft-bce", "bradley-terry"] = Field(
        "soft-bce", description="soft-bce (Eq. 4) or bradley-terry (relative)")
    reads: Literal["answer", "action"] = Field(
        "answer", description="what the PRM scores after the prompt: answer (the paper's: the policy's reason + "
        "action; `ACTION: a` alone where the policy gave no reason, e.g. acting.mode score/constrained) or action")
    epochs: Positive = Field(1.0, description="passes over the targets")
    lr: Positive = Field(2e-5, description="learning rate")
    batch_size: Count = Field(8, description="examples per step")
    extra: dict[str, Any] = Field(default_factory=dict, description="any other PRMConfig field")


class InversePRMSection(_Section):
    model: str | None = Field(None, description="InversePRM backbone: a model spec, 'policy' (π_{i-1}) or None "
                              "(the run's base model)")
    gamma: Discount = Field(0.95, description="discount of the shaped reward r = Q(s,a) − γ·Q(s′,a′) (Eq. 9)")
    epochs: Count = Field(1, description="passes over the larger side (expert or learner transitions)")
    lr: Positive = Field(2e-5, description="learning rate")
    batch_size: Count = Field(8, description="expert and learner transitions per step (each)")
    warm_start: bool = Field(False, description="start PRM_i from PRM_{i-1} (else a fresh head on the backbone "
                             "every iteration)")
    extra: dict[str, Any] = Field(default_factory=dict, description="any other InversePRMConfig field")


class PolicyStepSection(_Section):
    method: Literal["dpo", "rejection"] = Field("dpo", description="dpo (online DPO) or rejection")
    beta: Positive = Field(0.1, description="DPO KL leash")
    lr: Positive = Field(1e-5, description="learning rate")
    steps: Count = Field(50, description="optimizer steps")
    batch_states: Count = Field(8, description="states per step")
    monitor_every: NonNegInt = Field(0, description="real-success check every k steps (0: off)")
    monitor_games: Count = Field(8, description="held-back train games for the check")
    extra: dict[str, Any] = Field(default_factory=dict, description="any other PolicyTrainConfig field")


class EvalSection(_Section):
    best_of: list[Count] = Field(default_factory=lambda: [4], description="Best-of-N sizes evaluated each iteration "
                               "(with heldout games: on the kept iteration only)")
    bon_temperature: NonNegative = Field(1.0, description="sampling temperature for Best-of-N")
    bon_greedy: bool = Field(False, description="Best-of-N's first candidate is π's greedy answer (N-1 sampled)")
    bon_beta: NonNegative = Field(0.0, description="Best-of-N takes the candidate with the highest PRM value + "
                                  "bon_beta·log π (KL-regularised, as the DPO step's target policy; 0: the PRM alone)")
    bon_mode: Literal["generate", "constrained", "score"] | None = Field(
        None, description="how π_i draws Best-of-N's candidates (and its greedy one); None: acting.mode")
    mode: Literal["generate", "constrained", "score"] | None = Field(
        None, description="how π_i acts in its greedy evaluations (held-out selection, the eval split); None: "
        "acting.mode. score takes the admissible command whose answer π rates most likely; constrained greedy "
        "decodes token by token, so a first token shared by many commands ('go to …') wins over one command "
        "that is likelier as a whole")


class RunConfig(_Section):
    run_dir: str = Field("runs/train", description="where everything of this run goes")
    model: str = Field("smollm2", description="base model spec (smollm2, tiny, a folder, a hub id), or "
                       "scratch:SIZE to build one from this run's demos (tiny, small, medium)")
    policy: str | None = Field(None, description="start from this π0 instead of running SFT")
    iterations: NonNegInt = Field(1, description="AgentPRM iterations K")
    method: Literal["agentprm", "inverse_prm"] = Field(
        "agentprm", description="agentprm (PRM on Monte-Carlo targets from outcome rewards) or inverse_prm (PRM "
        "from demos vs π_{i-1}'s transitions, Eq. 9; no outcome reward is read for training)")
    seed: NonNegInt = Field(0, description="seed for sampling games and generation")
    device: str | None = Field(None, description="cuda, cpu or None (auto)")
    data: DataSection = Field(default_factory=DataSection)
    policy_args: PolicySection = Field(default_factory=PolicySection, alias="acting")
    sft: SFTSection = Field(default_factory=SFTSection)
    dagger: DaggerSection = Field(default_factory=DaggerSection)
    rollout: RolloutSection = Field(default_factory=RolloutSection)
    targets: TargetsSection = Field(default_factory=TargetsSection)
    prm: PRMSection = Field(default_factory=PRMSection)
    inverse_prm: InversePRMSection = Field(default_factory=InversePRMSection)
    policy_step: PolicyStepSection = Field(default_factory=PolicyStepSection)
    eval: EvalSection = Field(default_factory=EvalSection)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """YAML file plus dotted `key=value` overrides (e.g. `sft.lr=1e-4`), validated with bounds, so a
    bad value stops the run before its first stage with one line naming the field, value and range."""
    from agentprm.cli.common import parse_set_value, validation_line

    p = Path(path) if path is not None else Path("(defaults)")
    if path is not None and not p.is_file():
        raise ConfigError(f"no config file at {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {} if path is not None else {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of config keys, got {type(data).__name__}")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. sft.lr=1e-4")
        node = data
        *parents, leaf = key.split(".")
        for depth, k in enumerate(parents):
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(parents[: depth + 1])} is a value, not a section")
        node[leaf] = parse_set_value(raw)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        line = validation_line(e.errors()[0], config_keys())
        raise ConfigError(f"{p}{' + --set' if overrides else ''}: {line}") from e


def config_keys(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every dotted key of the run config (sections and fields), for 'did you mean' hints."""
    keys: list[str] = []
    for name, f in (model or RunConfig).model_fields.items():
        key = prefix + (f.alias or name)
        keys.append(key)
        if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel):
            keys += config_keys(f.annotation, key + ".")
    return keys


def describe_config(cfg: RunConfig | None = None) -> str:
    """The config as commented YAML (`agentprm train --show-config`): every field with its value and
    description; with a resolved `cfg`, a value that differs from the default is marked `# changed`
    (default shown), so a user sees what their file and `--set` actually changed."""
    lines: list[str] = []

    def walk(model: type[BaseModel], values: BaseModel | None, indent: str) -> None:
        for name, f in model.model_fields.items():
            key = f.alias or name
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                lines.append(f"{indent}{key}:")
                walk(ann, getattr(values, name) if values is not None else None, indent + "  ")
                continue
            default = f.get_default(call_default_factory=True)
            value = getattr(values, name) if values is not None else default
            mark = f"[changed; default {json.dumps(default)}] " if value != default else ""
            lines.append(f"{indent}{key}: {json.dumps(value)}  # {mark}{f.description or ''}")

    walk(RunConfig, cfg, "")
    return "\n".join(lines) + "\n"


# -- run state ------------------------------------------------------------------------------------


class RunState:
    """state.json: the finished stages (in order) and their wall-clock seconds; written atomically.

    Seconds are summed over every attempt at a stage: while a stage runs, a heartbeat records its
    elapsed time every few seconds under "running", so an attempt that is killed still counts when
    the rerun finishes the stage (to within one heartbeat)."""

    HEARTBEAT_S = 10.0

    def __init__(self, run_dir: Path):
        self.path = run_dir / "state.json"
        self.data: dict[str, Any] = {"done": [], "seconds": {}}
        if self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ConfigError(f"{self.path} is corrupt ({e}); move it away to restart the run") from e
        self.data.setdefault("attempts", {})
        killed = self.data.pop("running", None)
        if killed:  # the last attempt at that stage never finished: keep its time for the rerun
            partial = self.data.setdefault("partial", {})
            partial[killed["stage"]] = partial.get(killed["stage"], 0.0) + killed["seconds"]
        self._lock = threading.Lock()

    def is_done(self, stage: str) -> bool:
        return stage in self.data["done"]

    def earlier_seconds(self, stage: str) -> float:
        """Seconds spent on `stage` by attempts that did not finish (0 when it never ran before)."""
        return float(self.data.get("partial", {}).get(stage, 0.0))

    @contextlib.contextmanager
    def running(self, stage: str) -> Iterator[None]:
        """Count this attempt at `stage`: its elapsed seconds are saved every HEARTBEAT_S until it ends."""
        with self._lock:
            self.data["attempts"][stage] = self.data["attempts"].get(stage, 0) + 1
            self.data["running"] = {"stage": stage, "seconds": 0.0}
            self._write()
        t0, stop = time.perf_counter(), threading.Event()

        def beat() -> None:
            while not stop.wait(self.HEARTBEAT_S):
                with self._lock:
                    if self.data.get("running", {}).get("stage") == stage:
                        self.data["running"]["seconds"] = round(time.perf_counter() - t0, 1)
                        self._write()

        thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat:{stage}")
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def mark_done(self, stage: str, seconds: float) -> None:
        """`seconds` of the attempt that finished; earlier attempts' seconds are added to it."""
        with self._lock:
            self.data["done"].append(stage)
            self.data["seconds"][stage] = round(seconds + self.earlier_seconds(stage), 1)
            self.data.get("partial", {}).pop(stage, None)
            if self.data.get("running", {}).get("stage") == stage:
                del self.data["running"]
            self._write()

    def undo(self, stages: list[str]) -> None:
        """Mark finished stages as not done, so that they run again (their folders are left as they are)."""
        with self._lock:
            self.data["done"] = [d for d in self.data["done"] if d not in stages]
            self._write()

    def _write(self) -> None:
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
    if saved.is_file() and _with_defaults(yaml.safe_load(saved.read_text())) != yaml.safe_load(text):
        if not force:
            raise ConfigError(f"{run} holds a run with another config; use a new run_dir, the same config, "
                              "or --force to go on with the new one (finished stages are not redone)")
        os.replace(saved, run / "config.prev.yaml")
    write_text(saved, text)
    write_json(run / "run.json", _provenance())
    return run


def _with_defaults(saved: Any) -> Any:
    """A saved config with the fields added since it was written at their defaults, so that a run
    started before a new field existed (e.g. data.backend) resumes as the same config."""
    try:
        return yaml.safe_load(yaml.safe_dump(RunConfig.model_validate(saved).model_dump(by_alias=True)))
    except ValidationError:
        return saved


def run_stages(stages: list[tuple[str, Callable[[], Any]]], state: RunState, log: Callable[[str], None]) -> None:
    """Run the stages not yet done, in order, each announced as "stage k/N" with a one-line summary."""
    total = len(stages)
    done = [name for name, _ in stages if state.is_done(name)]
    if done:
        log(f"[bold]resuming[/bold] {state.path.parent}: {len(done)} of {total} stages done "
            f"(last: {done[-1]}); finished work is reused")
    for k, (name, fn) in enumerate(stages, 1):
        if state.is_done(name):
            continue
        earlier = state.earlier_seconds(name)
        again = f" (again; {earlier:.0f}s spent before)" if earlier else ""
        log(f"[bold]▶ stage {k}/{total}: {name}[/bold]{again}")
        t0 = time.perf_counter()
        with state.running(name):
            fn()
        state.mark_done(name, time.perf_counter() - t0)
        log(f"[green]✓ stage {k}/{total}: {name}[/green] in {state.data['seconds'][name]:.0f}s")


# -- the stages -----------------------------------------------------------------------------------


class Run:
    """Builds the stage list of a run from its config; each stage reads the folders of earlier ones."""

    def __init__(self, cfg: RunConfig, show: bool = True):
        self.cfg, self.show = cfg, show
        self.dir = Path(cfg.run_dir)

    # paths
    @property
    def scratch_size(self) -> str | None:
        return self.cfg.model.split(":", 1)[1] if self.cfg.model.startswith("scratch:") else None

    @property
    def base_model(self) -> str:
        """What SFT starts from (and the default PRM backbone): the model built from scratch, or cfg.model."""
        return str(self.dir / "base") if self.scratch_size else self.cfg.model

    def sft_dir(self, r: int) -> Path:
        """SFT output of DAgger round r (round 0: the SFT on demos)."""
        return self.dir / ("pi0" if r == 0 else f"dagger{r}")

    def policy_dir(self, i: int) -> str:
        if i == 0:
            return self.cfg.policy or str(self.sft_dir(self.cfg.dagger.rounds) / "model")
        return str(self.dir / f"iter{i}" / "policy" / "model")

    def branches_dir(self, i: int) -> Path:
        return self.dir / f"iter{i}" / "branches"

    def prm_dir(self, i: int) -> Path:
        return self.dir / f"iter{i}" / "prm"

    # games
    def _split_games(self, split: str) -> list[Any]:
        """A split's games (task-type filter applied); the train split without the held-out games."""
        from agentprm.envs.games import find_games

        games = find_games(split, self.cfg.data.task_types)
        if split == self.cfg.data.train_split and self.cfg.data.heldout_games:
            held = {g.game_id for g in self.heldout_games()}
            games = [g for g in games if g.game_id not in held]
        return games

    def heldout_games(self) -> list[Any]:
        """Train games no stage trains on, balanced over task types, for choosing the iteration to keep."""
        from agentprm.envs.games import find_games, stratified_games

        games = find_games(self.cfg.data.train_split, self.cfg.data.task_types)
        return stratified_games(games, self.cfg.data.heldout_games, self.cfg.seed + 7)

    def _games(self, split: str, n: int | None, salt: int = 0) -> list[Any]:
        """A seeded sample of a split in its own task-type proportions (training games: demos,
        rollouts, DAgger); the evaluation set is balanced instead (`_eval_games`)."""
        from agentprm.envs.games import sample_games

        return sample_games(self._split_games(split), n, self.cfg.seed + salt)

    def _play(self, agent: Any, jobs: list[Any], out: Path, title: str, extra: dict[str, Any],
              expert: str | None = None) -> dict[str, Any]:
        from agentprm.evaluation import play_and_report

        d = self.cfg.data
        summary = play_and_report(agent, jobs, out, title, d.workers, d.max_steps, extra,
                                  self.cfg.policy_args.in_flight, self.show, expert, backend=d.backend,
                                  ray_address=d.ray_address)
        failed = summary.get("eval/failed", 0)
        if failed > d.max_failed_episodes:
            # not marked done: the rerun retries exactly the failed episodes (rollout.run_rollouts)
            raise WorkerError(f"{title}: {failed} of {summary['eval/episodes']} episodes failed even after retries "
                              f"(env faults, see {out / 'trajectories.jsonl'}); rerun the same command to retry "
                              f"them, or accept up to N with --set data.max_failed_episodes=N")
        return summary

    def _lm(self, spec: str, temperature: float, explore: bool = False, mode: str | None = None) -> Any:
        from agentprm.agents.policy import LMPolicy, PolicyConfig

        a = self.cfg.policy_args
        return LMPolicy.from_spec(spec, PolicyConfig(
            mode=mode or a.mode, cpu_bf16=a.cpu_bf16, temperature=temperature, max_new_tokens=a.max_new_tokens,
            history_window=a.history_window,
            explore=explore, seed=self.cfg.seed, batch_size=a.batch_size, device=self.cfg.device))

    # stages
    def demos(self) -> None:
        from agentprm.agents.factory import make_expert
        from agentprm.rollout import make_jobs

        d = self.cfg.data
        games = self._games(d.train_split, d.demo_games)
        agent, in_env, games = make_expert(d.demo_expert, games, d.demo_noise, self.cfg.seed)
        self._play(agent, make_jobs(games), self.dir / "demos", f"{agent.policy_id} demos",
                   {"stage": "demos", "expert": d.demo_expert}, expert=in_env)

    def base(self) -> None:
        from agentprm.scratch import build_scratch_model

        build_scratch_model([str(self.dir / "demos")], self.scratch_size or "", self.dir / "base", self.cfg.seed)

    def sft_config(self, model: str, demos: list[Path], out: Path, **values: Any) -> Any:
        """The SFTConfig of an SFT stage (None values are settings here, e.g. the whole history)."""
        from agentprm.cli.common import build_config
        from agentprm.train.sft import SFTConfig

        s = self.cfg.sft
        base = {"demos": [str(d) for d in demos], "model": model, "out": str(out), "epochs": s.epochs, "lr": s.lr,
                "batch_size": s.batch_size, "max_examples": s.max_examples,
                "history_window": self.cfg.policy_args.history_window, "seed": self.cfg.seed,
                "device": self.cfg.device, "progress": self.show, **s.extra}
        return build_config(SFTConfig, {**base, **values}, drop_none=False)

    def _sft(self, model: str, demos: list[Path], out: Path, **values: Any) -> None:
        from agentprm.train.sft import train_sft

        train_sft(self.sft_config(model, demos, out, **values))

    def sft(self) -> None:
        self._sft(self.base_model, [self.dir / "demos"], self.sft_dir(0))

    def dagger_rollouts(self, r: int) -> None:
        """The learner plays; the expert beside it labels every state it reaches."""
        from agentprm.rollout import make_jobs

        g = self.cfg.dagger
        games = self._games(self.cfg.data.train_split, g.games, salt=200 + r)
        agent = self._lm(str(self.sft_dir(r - 1) / "model"), g.temperature)
        self._play(agent, make_jobs(games, 1, self.cfg.seed + r), self.dir / f"dagger{r}" / "rollouts",
                   f"DAgger round {r}", {"stage": f"dagger{r}/rollouts"}, expert=g.expert)

    def dagger_sft_config(self, r: int) -> Any:
        """Retrain from the current policy on the aggregate: demos + every round's relabelled states."""
        g = self.cfg.dagger
        data = [self.dir / "demos", *(self.dir / f"dagger{k}" / "rollouts" for k in range(1, r + 1))]
        return self.sft_config(str(self.sft_dir(r - 1) / "model"), data, self.sft_dir(r), labels="auto",
                               epochs=g.epochs, lr=g.lr or self.cfg.sft.lr, max_relabels=g.max_relabels,
                               relabel_from=g.relabel_from)

    def dagger_sft(self, r: int) -> None:
        from agentprm.train.sft import train_sft

        train_sft(self.dagger_sft_config(r))

    def _eval_games(self) -> list[Any]:
        """The evaluation set: the rule of `agentprm eval --games N --seed S` (envs.games.select_eval_games)."""
        from agentprm.envs.games import select_eval_games

        return select_eval_games(self._split_games(self.cfg.data.eval_split), self.cfg.data.eval_games, self.cfg.seed)

    def _bon_agent(self, i: int, n: int) -> Any:
        """Best-of-N of π_i judged by the PRM of its iteration (π0: PRM_1, trained on π0's rollouts)."""
        from agentprm.agents.best_of_n import BestOfNAgent
        from agentprm.train.prm import PRM

        e = self.cfg.eval
        lm = self._lm(self.policy_dir(i), e.bon_temperature, mode=e.bon_mode)
        return BestOfNAgent(lm, PRM.load(str(self.prm_dir(max(i, 1))), device=self.cfg.device), n,
                            greedy=lm.greedy() if e.bon_greedy else None, beta=e.bon_beta)

    def _greedy(self, i: int) -> Any:
        """π_i acting greedily as its evaluations play it (eval.mode, else acting.mode)."""
        return self._lm(self.policy_dir(i), 0.0, mode=self.cfg.eval.mode)

    def evaluate(self, i: int, best_of: int = 1) -> None:
        from agentprm.rollout import make_jobs

        name = f"pi{i}" if best_of == 1 else f"pi{i}_bon{best_of}"
        agent = self._greedy(i) if best_of == 1 else self._bon_agent(i, best_of)
        extra = {"stage": f"eval/{name}", "iteration": i, "best_of": best_of, "split": self.cfg.data.eval_split,
                 "mode": agent.config.mode if best_of == 1 else agent.policy.config.mode}
        self._play(agent, make_jobs(self._eval_games(), 1, self.cfg.seed), self.dir / "eval" / name, name, extra)

    def heldout(self, i: int) -> None:
        from agentprm.rollout import make_jobs

        agent = self._greedy(i)
        extra = {"stage": f"heldout/pi{i}", "iteration": i, "split": self.cfg.data.train_split,
                 "mode": agent.config.mode}
        self._play(agent, make_jobs(self.heldout_games(), 1, self.cfg.seed),
                   self.dir / "heldout" / f"pi{i}", f"pi{i} on held-out train games", extra)

    def stale_stages(self, state: RunState) -> list[str]:
        """Finished stages whose result no longer holds: a run resumed with more iterations (`--force`) must
        select again among all of them (then Best-of-N of the kept one), and the report must cover every
        stage, so it is rewritten whenever a stage is left to run."""
        names = [name for name, _ in self.stages()]
        stale = self.unreadable_summaries(state, names)
        sel = self.dir / "selected.json"
        if state.is_done("select") and sel.is_file():
            seen = {int(k) for k in json.loads(sel.read_text())["heldout_success"]}
            if seen != set(range(self.cfg.iterations + 1)) or any(n.startswith("heldout/") for n in stale):
                stale += ["select", *(n for n in names if n.startswith("eval/selected_bon"))]
        if stale or any(not state.is_done(n) for n in names if n != "report"):
            stale.append("report")
        return [n for n in stale if state.is_done(n)]

    def summary_dir(self, stage: str) -> Path | None:
        """The folder of a finished playing stage (demos, eval/…, heldout/…), whose summary.json select and
        the report read; None for other stages, and for a Best-of-N of the kept π before select ran."""
        if stage.startswith("eval/selected_bon"):
            if not (self.dir / "selected.json").is_file():
                return None
            return self.dir / "eval" / f"pi{self.selected()}_bon{stage.removeprefix('eval/selected_bon')}"
        return self.dir / stage if stage == "demos" or stage.startswith(("eval/", "heldout/")) else None

    def unreadable_summaries(self, state: RunState, names: list[str]) -> list[str]:
        """Finished playing stages whose summary.json is missing or not as agentprm writes it (edited by
        hand, copied from elsewhere): they run again, which replays no episode (its trajectories.jsonl is
        resumed from, every episode already there) and writes the summary afresh from them."""
        from agentprm.evaluation import read_summary

        stale = []
        for name in names:
            folder = self.summary_dir(name) if state.is_done(name) else None
            if folder is None:
                continue
            try:
                read_summary(folder / "summary.json")
            except CorruptRecordError as e:
                warnings.warn(f"{e}; stage {name} runs again to rewrite it from {folder / 'trajectories.jsonl'}",
                              stacklevel=2)
                stale.append(name)
        return stale

    def selected(self) -> int:
        return int(json.loads((self.dir / "selected.json").read_text())["iteration"])

    def select(self) -> None:
        """Keep the iteration with the best held-out success (ties: the later one)."""
        from agentprm.evaluation import read_summary

        success = {i: read_summary(self.dir / "heldout" / f"pi{i}" / "summary.json")["eval/success"]
                   for i in range(self.cfg.iterations + 1)}
        best = max(success, key=lambda i: (success[i], i))
        write_json(self.dir / "selected.json", {"iteration": best, "heldout_success": success,
                                                "heldout_games": self.cfg.data.heldout_games})

    def rollouts(self, i: int) -> None:
        from agentprm.envs.alfworld import read_walkthroughs
        from agentprm.rollout import branches_of, reset_distribution_jobs

        r = self.cfg.rollout
        games = self._games(self.cfg.data.train_split, self.cfg.data.rollout_games, salt=100 + i)
        agent = self._lm(self.policy_dir(i - 1), r.temperature, r.explore)
        plans = read_walkthroughs(games) if r.reset_fraction > 0 else {}
        jobs = reset_distribution_jobs(games, r.repeats, self.cfg.seed + 1000 * i, r.reset_fraction, plans)
        out = self.dir / f"iter{i}" / "rollouts"
        self._play(agent, jobs, out, f"rollouts of pi{i - 1}", {"stage": "rollouts"})
        if r.branches:
            branch = branches_of(out / "trajectories.jsonl", jobs, r.branches, self.cfg.seed + 1000 * i + 1,
                                 r.branch_fraction, self.cfg.data.max_steps)
            self._play(agent, branch, self.branches_dir(i), f"branches of pi{i - 1}", {"stage": "branches"})

    def targets_config(self, i: int) -> Any:
        from agentprm.cli.common import build_config
        from agentprm.targets import TargetsConfig

        t = self.cfg.targets
        first = 1 if t.all_iterations else i
        dirs = [self.dir / f"iter{k}" / "rollouts" for k in range(first, i + 1)]
        if self.cfg.rollout.branches:
            dirs += [self.branches_dir(k) for k in range(first, i + 1)]
        rollouts = [str(d / "trajectories.jsonl") for d in dirs]
        values = {"rollouts": rollouts, "out": str(self.dir / f"iter{i}" / "targets"), "gamma": t.gamma,
                  "val_fraction": t.val_fraction, "delta": t.delta, "seed": self.cfg.seed}
        if t.shaping_value is not None:
            values |= {"shaping_value": t.shaping_value, "shaping_constant": t.shaping_constant,
                       "shaping_centre": t.shaping_centre, "shaping_device": self.cfg.device}
        return build_config(TargetsConfig, values, drop_none=False)

    def targets(self, i: int) -> None:
        from agentprm.targets import build_targets

        build_targets(self.targets_config(i))

    def prm_config(self, i: int) -> Any:
        from agentprm.cli.common import build_config
        from agentprm.train.prm import PRMConfig

        p = self.cfg.prm
        model = self.policy_dir(i - 1) if p.model == "policy" else p.model or self.base_model
        values = {"data": str(self.dir / f"iter{i}" / "targets"), "model": model,
                  "out": str(self.prm_dir(i)), "loss": p.loss, "reads": p.reads, "epochs": p.epochs, "lr": p.lr,
                  "batch_size": p.batch_size, "history_window": self.cfg.policy_args.history_window,
                  "seed": self.cfg.seed, "device": self.cfg.device or "auto", "progress": self.show, **p.extra}
        return build_config(PRMConfig, values, drop_none=False)

    def prm(self, i: int) -> None:
        from agentprm.train.prm import train_prm

        train_prm(self.prm_config(i))

    def inverse_prm_config(self, i: int) -> Any:
        """InversePRM_i: the demos against the rollouts of π_0 … π_{i-1}, pooled (each episode keeps the
        a′ of the policy that played it)."""
        from agentprm.cli.common import build_config
        from agentprm.train.inverse import InversePRMConfig

        s = self.cfg.inverse_prm
        model = self.policy_dir(i - 1) if s.model == "policy" else s.model or self.base_model
        rollouts = [str(self.dir / f"iter{k}" / "rollouts" / "trajectories.jsonl") for k in range(1, i + 1)]
        values = {"demos": [str(self.dir / "demos")], "rollouts": rollouts, "out": str(self.prm_dir(i)),
                  "model": model, "init": str(self.prm_dir(i - 1)) if s.warm_start and i > 1 else None,
                  "gamma": s.gamma, "epochs": s.epochs, "lr": s.lr, "batch_size": s.batch_size,
                  "history_window": self.cfg.policy_args.history_window, "seed": self.cfg.seed,
                  "device": self.cfg.device or "auto", "progress": self.show, **s.extra}
        return build_config(InversePRMConfig, values, drop_none=False)

    def inverse_prm(self, i: int) -> None:
        from agentprm.train.inverse import train_inverse_prm

        train_inverse_prm(self.inverse_prm_config(i))

    def policy_config(self, i: int) -> Any:
        from agentprm.cli.common import build_config
        from agentprm.train.dpo import PolicyTrainConfig

        p = self.cfg.policy_step
        values = {"policy": self.policy_dir(i - 1), "prm": str(self.prm_dir(i)),
                  "states": [str(self.dir / f"iter{i}" / "rollouts" / "trajectories.jsonl")],
                  "out": str(self.dir / f"iter{i}" / "policy"), "method": p.method, "beta": p.beta, "lr": p.lr,
                  "steps": p.steps, "batch_states": p.batch_states, "monitor_every": p.monitor_every,
                  "monitor_games": p.monitor_games, "history_window": self.cfg.policy_args.history_window,
                  "max_new_tokens": self.cfg.policy_args.max_new_tokens, "workers": self.cfg.data.workers,
                  "backend": self.cfg.data.backend, "ray_address": self.cfg.data.ray_address,
                  "mode": self.cfg.policy_args.mode,
                  "max_steps_per_episode": self.cfg.data.max_steps, "seed": self.cfg.seed,
                  "device": self.cfg.device, **p.extra}
        return build_config(PolicyTrainConfig, values, drop_none=False)

    def policy_step(self, i: int) -> None:
        from agentprm.train.dpo import train_policy

        train_policy(self.policy_config(i), show_progress=self.show)

    def check(self) -> None:
        """Build every stage's config now (the `extra` sections included), so a bad value fails before
        the first stage runs instead of when its stage is reached; nothing is read or written."""
        inverse = self.cfg.method == "inverse_prm"
        if inverse and self.cfg.policy_step.monitor_every:
            raise ConfigError("run config: method inverse_prm learns without outcome rewards, but "
                              "policy_step.monitor_every keeps the checkpoint with the best real success; set it to 0")
        if inverse and self.cfg.rollout.explore:
            raise ConfigError("run config: method inverse_prm needs learner transitions drawn from π_{i-1} itself; "
                              "rollout.explore samples them with another prompt: set it to false")
        builds: list[tuple[str, Callable[[], Any]]] = []
        if self.cfg.policy is None:
            builds.append(("sft", lambda: self.sft_config(self.base_model, [self.dir / "demos"], self.sft_dir(0))))
            if self.cfg.dagger.rounds:
                builds.append(("dagger", lambda: self.dagger_sft_config(1)))
        if self.cfg.iterations and inverse:
            builds += [("inverse_prm", lambda: self.inverse_prm_config(1)),
                       ("policy_step", lambda: self.policy_config(1))]
        elif self.cfg.iterations:
            builds += [("targets", lambda: self.targets_config(1)), ("prm", lambda: self.prm_config(1)),
                       ("policy_step", lambda: self.policy_config(1))]
        for section, build in builds:
            try:
                build()
            except ConfigError as e:
                raise ConfigError(f"run config, section {section} (its extra values included): {e}") from e

    def stages(self) -> list[tuple[str, Callable[[], Any]]]:
        held = self.cfg.data.heldout_games > 0
        inverse = self.cfg.method == "inverse_prm"
        st: list[tuple[str, Callable[[], Any]]] = []
        if self.cfg.policy is None or inverse:  # InversePRM learns from the demos even when π0 is given
            st.append(("demos", self.demos))
        if self.cfg.policy is None:
            if self.scratch_size:
                st.append(("base", self.base))
            st.append(("sft", self.sft))
            for r in range(1, self.cfg.dagger.rounds + 1):
                st += [(f"dagger{r}/rollouts", lambda r=r: self.dagger_rollouts(r)),
                       (f"dagger{r}/sft", lambda r=r: self.dagger_sft(r))]
        st.append(("eval/pi0", lambda: self.evaluate(0)))
        if held:
            st.append(("heldout/pi0", lambda: self.heldout(0)))
        for i in range(1, self.cfg.iterations + 1):
            st.append((f"iter{i}/rollouts", lambda i=i: self.rollouts(i)))
            if inverse:
                st.append((f"iter{i}/inverse_prm", lambda i=i: self.inverse_prm(i)))
            else:
                st += [(f"iter{i}/targets", lambda i=i: self.targets(i)), (f"iter{i}/prm", lambda i=i: self.prm(i))]
            st += [(f"iter{i}/policy", lambda i=i: self.policy_step(i)), (f"eval/pi{i}", lambda i=i: self.evaluate(i))]
            if held:
                st.append((f"heldout/pi{i}", lambda i=i: self.heldout(i)))
            elif self.cfg.iterations:
                st += [(f"eval/pi{i}_bon{n}", lambda i=i, n=n: self.evaluate(i, n))
                       for n in self.cfg.eval.best_of if n > 1]
        if held:
            st.append(("select", self.select))
            if self.cfg.iterations:
                st += [(f"eval/selected_bon{n}", lambda n=n: self.evaluate(self.selected(), n))
                       for n in self.cfg.eval.best_of if n > 1]
        st.append(("report", self.report))
        return st

    def report(self) -> None:
        from agentprm.report import write_report

        write_report(self.dir)


def train(cfg: RunConfig, show: bool = True, force: bool = False) -> Path:
    """Run (or resume) the whole loop; returns the path of report.md."""
    from rich.console import Console

    console = Console()
    runner = Run(cfg, show)
    runner.check()
    run = prepare_run_dir(cfg, force)
    state = RunState(run)
    state.undo(runner.stale_stages(state))
    run_stages(runner.stages(), state, console.print if show else (lambda _: None))
    return run / "report.md"
