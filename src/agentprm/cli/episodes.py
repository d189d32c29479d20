"""Commands that play episodes and write trajectories: `expert` (and, with a policy, rollout/eval)."""

from __future__ import annotations

from contextlib import closing, nullcontext
from pathlib import Path
from typing import Annotated

import typer

from agentprm.agents.factory import make_agent, make_expert, with_lookahead
from agentprm.cli.common import BackendOpt, RayAddressOpt, history_arg
from agentprm.envs.alfworld import DEFAULT_MAX_STEPS, read_walkthroughs
from agentprm.envs.experts import EXPERTS
from agentprm.envs.games import GameSpec, find_games, select_eval_games
from agentprm.errors import ConfigError
from agentprm.evaluation import play_and_report
from agentprm.rollout import DEFAULT_RETRIES, branches_of, make_jobs, reset_distribution_jobs

SplitOpt = Annotated[str, typer.Option("--split", help="train, valid_seen or valid_unseen")]
GamesOpt = Annotated[int | None, typer.Option("--games", help="play only N games (seeded sample)")]
TaskTypeOpt = Annotated[list[str] | None, typer.Option("--task-type", help="only this task type (repeatable)")]
OutOpt = Annotated[Path, typer.Option("--out", help="output folder")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="env workers (default: CPU cores)")]
SeedOpt = Annotated[int, typer.Option("--seed", help="seed for game sampling and the policy")]
MaxStepsOpt = Annotated[int, typer.Option("--max-steps", help="turns per episode")]
ModeOpt = Annotated[str, typer.Option("--mode", help="generate, constrained (decode only admissible commands) "
                                                   "or score (rank admissible actions by likelihood)")]
MaxNewTokensOpt = Annotated[int, typer.Option("--max-new-tokens", help="answer budget when generating")]
HistoryOpt = Annotated[int, typer.Option("--history", help="turns of history in the prompt (-1: all; what "
                                          "models built from scratch are trained with)")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", help="sequences per forward pass")]
CpuBf16Opt = Annotated[bool, typer.Option("--cpu-bf16", help="act under bf16 autocast on the CPU, as the loop "
                                          "does with acting.cpu_bf16 (faster; greedy choices can differ from fp32)")]
InFlightOpt = Annotated[int, typer.Option("--in-flight", help="episodes played at once")]
RetriesOpt = Annotated[int, typer.Option(
    "--retries", min=0, help="replays of an episode lost to an env fault (worker crash or hang) before it is "
    "recorded as failed; a rerun retries failed episodes again")]


def select_games(split: str, games: int | None, task_types: list[str] | None, seed: int) -> list[GameSpec]:
    """The one rule for `--games N`: a seeded sample balanced over task types, the same games the run
    loop evaluates for `data.eval_games: N` and the same seed (all games without --games)."""
    return select_eval_games(find_games(split, task_types or None), games, seed)


ExpertOpt = Annotated[str, typer.Option(
    "--expert", help="walkthrough (the game file's planner plan, never searches), handcoded (alfworld's "
    "searching player) or planner (replans from every state)")]
LabelsOpt = Annotated[str | None, typer.Option(
    "--expert-labels", help="run this expert beside the policy and record its action at every state "
    "(DAgger labels): handcoded or planner")]


def expert(
    split: SplitOpt = "valid_seen",
    games: GamesOpt = None,
    task_type: TaskTypeOpt = None,
    kind: ExpertOpt = "walkthrough",
    noise: Annotated[float, typer.Option("--noise", help="DART: share of random admissible actions taken, "
                                         "the expert's action kept as the label (handcoded/planner)")] = 0.0,
    out: OutOpt = Path("runs/expert"),
    workers: WorkersOpt = None,
    backend: BackendOpt = "process",
    ray_address: RayAddressOpt = None,
    seed: SeedOpt = 0,
    max_steps: MaxStepsOpt = DEFAULT_MAX_STEPS,
    retries: RetriesOpt = DEFAULT_RETRIES,
) -> None:
    """Play an expert; its won episodes are the demonstrations for SFT (and InversePRM)."""
    specs = select_games(split, games, task_type, seed)
    agent, in_env, specs = make_expert(kind, specs, noise, seed)
    extra = {"command": "expert", "expert": kind, "noise": noise, "split": split, "games": len(specs), "seed": seed,
             "max_steps": max_steps}
    play_and_report(agent, make_jobs(specs), out, f"{agent.policy_id} on {split}", workers, max_steps, extra,
                    expert=in_env, retries=retries, backend=backend, ray_address=ray_address)


PolicyOpt = Annotated[
    str, typer.Option("--policy", help="model spec/folder (smollm2, tiny, runs/pi0/model) or openai:MODEL")
]


def rollout(
    policy: PolicyOpt,
    split: SplitOpt = "train",
    games: GamesOpt = None,
    task_type: TaskTypeOpt = None,
    repeats: Annotated[int, typer.Option("--repeats", help="episodes per game")] = 1,
    temperature: Annotated[float, typer.Option("--temperature")] = 1.0,
    top_p: Annotated[float, typer.Option("--top-p")] = 1.0,
    mode: ModeOpt = "generate",
    max_new_tokens: MaxNewTokensOpt = 48,
    history_window: HistoryOpt = 8,
    batch_size: BatchSizeOpt = 32,
    cpu_bf16: CpuBf16Opt = False,
    max_in_flight: InFlightOpt = 64,
    reset_fraction: Annotated[float, typer.Option(
        "--reset-fraction", help="share of episodes started along the expert walkthrough (reset distribution)")] = 0.0,
    explore: Annotated[bool, typer.Option("--explore", help="sample with the exploration prompt")] = False,
    branches: Annotated[int, typer.Option("--branches", min=0, help="same-state branching: then, from a random turn "
                                          "of each episode, K more that replay it so far and sample on, into "
                                          "OUT/branches (`targets --rollouts OUT` reads both)")] = 0,
    branch_fraction: Annotated[float, typer.Option("--branch-fraction", min=0.0, max=1.0,
                                                   help="share of the episodes that are branched")] = 1.0,
    expert_labels: LabelsOpt = None,
    out: OutOpt = Path("runs/rollout"),
    workers: WorkersOpt = None,
    backend: BackendOpt = "process",
    ray_address: RayAddressOpt = None,
    seed: SeedOpt = 0,
    max_steps: MaxStepsOpt = DEFAULT_MAX_STEPS,
    retries: RetriesOpt = DEFAULT_RETRIES,
) -> None:
    """Sample trajectories from a policy (K repeats per game); rerunning continues where it stopped."""
    from agentprm.models import cpu_bf16_if_native  # what --cpu-bf16 does on this CPU, for the summary

    specs = select_games(split, games, task_type, seed)
    agent = make_agent(policy, mode, temperature, top_p, max_new_tokens, history_arg(history_window), seed, batch_size,
                       explore=explore, cpu_bf16=cpu_bf16)
    plans = read_walkthroughs(specs) if reset_fraction > 0 else {}
    jobs = reset_distribution_jobs(specs, repeats, seed, reset_fraction, plans)
    extra = {"command": "rollout", "split": split, "games": len(specs), "repeats": repeats, "mode": mode,
             "temperature": temperature, "reset_fraction": reset_fraction, "explore": explore,
             "cpu_bf16": cpu_bf16_if_native(cpu_bf16), "seed": seed, "max_steps": max_steps,
             "expert_labels": expert_labels, "branches": branches, "branch_fraction": branch_fraction}
    if expert_labels is not None and expert_labels not in EXPERTS:
        raise ConfigError(f"--expert-labels {expert_labels!r}: choose one of {', '.join(EXPERTS)}")
    play_and_report(agent, jobs, out, f"{agent.policy_id} rollouts on {split}", workers, max_steps, extra,
                    max_in_flight, expert=expert_labels, retries=retries, backend=backend, ray_address=ray_address)
    if branches:
        branch = branches_of(out / "trajectories.jsonl", jobs, branches, seed + 1, branch_fraction, max_steps)
        play_and_report(agent, branch, out / "branches", f"{agent.policy_id} branches on {split}", workers,
                        max_steps, {**extra, "stage": "branches"}, max_in_flight, expert=expert_labels,
                        retries=retries, backend=backend, ray_address=ray_address)


def evaluate(
    policy: PolicyOpt,
    split: SplitOpt = "valid_seen",
    games: GamesOpt = None,
    task_type: TaskTypeOpt = None,
    mode: ModeOpt = "generate",
    temperature: Annotated[float, typer.Option("--temperature", help="0: greedy")] = 0.0,
    prm: Annotated[Path | None, typer.Option("--prm", help="PRM folder for Best-of-N")] = None,
    best_of: Annotated[int, typer.Option("--best-of", help="N samples per turn, the PRM picks")] = 1,
    bon_temperature: Annotated[float, typer.Option("--bon-temperature")] = 1.0,
    bon_greedy: Annotated[bool, typer.Option(
        "--bon-greedy", help="Best-of-N's first candidate is the policy's greedy answer, N-1 are sampled")] = False,
    bon_beta: Annotated[float, typer.Option(
        "--bon-beta", min=0.0, help="Best-of-N takes the candidate with the highest PRM value + beta * log π "
        "(KL-regularised; 0: the highest PRM value)")] = 0.0,
    lookahead: Annotated[int | None, typer.Option(
        "--lookahead", help="K: try each Best-of-N candidate in a spare copy of the game and let the policy play "
        "on greedily for K-1 more steps; take a candidate whose look-ahead wins, else the best PRM value of where "
        "it got, discounted by --lookahead-gamma per step (needs --prm and --best-of N >= 2)")] = None,
    lookahead_gamma: Annotated[float, typer.Option(
        "--lookahead-gamma", help="discount per look-ahead step of the PRM value (the PRM targets' gamma)")] = 0.95,
    lookahead_workers: Annotated[int, typer.Option(
        "--lookahead-workers", min=0, help="processes for the look-ahead's spare envs (0: in this process)")] = 0,
    max_new_tokens: MaxNewTokensOpt = 48,
    history_window: HistoryOpt = 8,
    batch_size: BatchSizeOpt = 32,
    cpu_bf16: CpuBf16Opt = False,
    max_in_flight: InFlightOpt = 64,
    out: OutOpt = Path("runs/eval"),
    workers: WorkersOpt = None,
    backend: BackendOpt = "process",
    ray_address: RayAddressOpt = None,
    seed: SeedOpt = 0,
    max_steps: MaxStepsOpt = DEFAULT_MAX_STEPS,
    retries: RetriesOpt = DEFAULT_RETRIES,
) -> None:
    """Success overall and per task type (the paper's Table 1), #actions, non-admissible rate."""
    from agentprm.models import cpu_bf16_if_native  # what --cpu-bf16 does on this CPU, for the summary

    check_lookahead(lookahead, lookahead_gamma, prm, best_of)
    if bon_beta and (prm is None or best_of < 2):
        raise ConfigError(f"--bon-beta needs --prm DIR and --best-of N with N >= 2 (got "
                          f"{'no --prm' if prm is None else '--prm'}, --best-of {best_of})")
    if bon_greedy and (prm is None or best_of < 2):
        raise ConfigError(f"--bon-greedy needs --prm DIR and --best-of N with N >= 2 (got "
                          f"{'no --prm' if prm is None else '--prm'}, --best-of {best_of})")
    specs = select_games(split, games, task_type, seed)
    temp = bon_temperature if prm is not None and best_of > 1 else temperature
    agent = make_agent(policy, mode, temp, 1.0, max_new_tokens, history_arg(history_window), seed, batch_size, prm,
                       best_of, cpu_bf16=cpu_bf16, bon_greedy=bon_greedy, bon_beta=bon_beta)
    if lookahead is not None:
        agent = with_lookahead(agent, lookahead, lookahead_gamma, specs, max_steps, lookahead_workers)
    extra = {"command": "eval", "split": split, "games": len(specs), "mode": mode, "temperature": temp,
             "best_of": best_of, "bon_greedy": bon_greedy, "bon_beta": bon_beta, "prm": str(prm) if prm else None,
             "lookahead": lookahead,
             "lookahead_gamma": lookahead_gamma if lookahead is not None else None,
             "cpu_bf16": cpu_bf16_if_native(cpu_bf16), "seed": seed, "max_steps": max_steps}
    with closing(agent) if hasattr(agent, "close") else nullcontext():  # the look-ahead's spare envs
        play_and_report(agent, make_jobs(specs, 1, seed), out, f"{agent.policy_id} on {split}", workers, max_steps,
                        extra, max_in_flight, retries=retries, backend=backend, ray_address=ray_address)


def check_lookahead(depth: int | None, gamma: float, prm: Path | None, best_of: int) -> None:
    """--lookahead needs candidates to compare (--best-of N >= 2) and a PRM to value where they lead."""
    if depth is None:
        return
    if depth < 1:
        raise ConfigError(f"--lookahead {depth}: K must be >= 1 (1: one step, the candidate itself)")
    if prm is None or best_of < 2:
        raise ConfigError(f"--lookahead {depth} needs --prm DIR and --best-of N with N >= 2 (got "
                          f"{'no --prm' if prm is None else '--prm'}, --best-of {best_of}): the look-ahead "
                          "compares the N candidates by the PRM's value of where each leads")
    if not 0.0 < gamma <= 1.0:
        raise ConfigError(f"--lookahead-gamma {gamma}: must be in (0, 1]")
