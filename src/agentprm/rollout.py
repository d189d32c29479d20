"""Rollouts: play many episodes of one agent through an env pool and write trajectories.

Episodes are scheduled as *jobs* (game, prefix, repeat index). Up to `max_in_flight` run at once;
each turn the agent gets every live context in one call (one batched generate for an LM), the pool
steps every live environment in one call, and a finished episode frees its slot for the next job,
so batches stay full. Episode ids are deterministic, which is what makes a rerun resume: jobs whose
episode already finished in the output file (won, lost or cut off) are skipped, and every episode is
appended atomically as it ends.

An episode the environment could not serve (its worker crashed or hung, or the engine raised) has no
outcome, so it is not a loss: it is replayed from its start, same job and seed, up to `retries` more
times in the run; one still failing is recorded with `failed` set, and a rerun plays it again (its new
record replaces the failed one for readers, see trajectory.py). `Episode.attempts` counts every play.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import Progress

from agentprm.agents.base import Agent, AgentOutput
from agentprm.envs.alfworld import DEFAULT_MAX_STEPS
from agentprm.envs.games import GameSpec
from agentprm.envs.pool import Backend, EpisodeFailure, EpisodeSpec, open_pool
from agentprm.envs.protocol import Observation
from agentprm.envs.slots import SlotPool
from agentprm.progress import progress_bar
from agentprm.prompts import Turn, TurnContext
from agentprm.trajectory import Episode, Step, TrajectoryWriter, read_episodes

DEFAULT_RETRIES = 2
"""Replays of an episode lost to an env fault, within one run, before it is recorded as failed."""


@dataclass(frozen=True)
class Job:
    """One episode to play: a game, an optional prefix to start from, and which repeat it is."""

    game: GameSpec
    repeat: int = 0
    prefix: tuple[str, ...] = ()
    seed: int = 0
    origin: str = ""
    """For a branch (`branch_jobs`): the id of the episode whose first turns the prefix replays."""
    max_steps: int | None = None
    """This episode's own step budget, if smaller than the run's: a branch gets what its origin had left."""

    def __post_init__(self) -> None:
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"a job's max_steps must be >= 1, got {self.max_steps}")

    @property
    def episode_id(self) -> str:
        start = f"@{len(self.prefix)}" if self.prefix else ""
        return f"{self.origin or self.game.game_id}{start}#{self.repeat}"


def make_jobs(games: Iterable[GameSpec], repeats: int = 1, seed: int = 0) -> list[Job]:
    """Every game `repeats` times; repeat r of a game gets seed `seed + r`."""
    return [Job(g, r, (), seed + r) for g in games for r in range(repeats)]


def reset_distribution_jobs(
    games: Iterable[GameSpec], repeats: int, seed: int, fraction: float, walkthroughs: dict[str, list[str]]
) -> list[Job]:
    """Like `make_jobs`, but a `fraction` of the episodes start from a random state along the game's
    expert walkthrough (the paper's reset-distribution exploration): a prefix of k expert actions,
    k uniform in 1..len-1, is replayed before the policy acts. A weak policy then still reaches the
    goal from some starts, so Monte-Carlo targets carry signal. Seeded: reruns draw the same starts."""
    rng = random.Random(seed)
    jobs = []
    for job in make_jobs(games, repeats, seed):
        if fraction > 0 and rng.random() < fraction:
            plan = walkthroughs.get(job.game.game_id, [])  # none: its game file was unreadable
            if len(plan) > 1:
                job = Job(job.game, job.repeat, tuple(plan[: rng.randint(1, len(plan) - 1)]), job.seed)
        jobs.append(job)
    return jobs


def branch_jobs(
    episodes: Iterable[Episode], games: Mapping[str, GameSpec], branches: int, seed: int, fraction: float = 1.0,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> list[Job]:
    """Same-state branching from the policy's own episodes: from a `fraction` of them, a turn t drawn
    uniformly from 1..T−1, and `branches` new episodes that replay the first t actions and sample on
    from there, with the budget the origin had left (max_steps − t), so a branch is not luckier than
    the episode it restarts. Why: two rollouts of a game almost never meet at one state (the state key
    is the whole history), so Monte-Carlo targets rarely compare two actions at the same state, and a
    PRM trained on them learns which *states* win, not which *action* to take there. Branches put
    several sampled actions, each with its own outcome, at one state: the contrast Best-of-N and the
    policy step need. The prefix keeps its turns as history (envs replay it), so a branch's states key
    exactly as its origin's. Failed episodes, and those of fewer than 2 turns, are not branched.
    Seeded: a rerun draws the same branch points."""
    if branches < 0:
        raise ValueError(f"branches must be >= 0, got {branches}")
    if branches == 0:
        return []
    rng = random.Random(seed)
    jobs = []
    for ep in episodes:
        if ep.failed is not None or len(ep.steps) < 2 or rng.random() >= fraction:
            continue
        t = rng.randint(1, len(ep.steps) - 1)
        prefix = (*ep.prefix, *(s.action for s in ep.steps[:t]))
        budget = max_steps - t
        if budget < 1:
            continue
        jobs += [Job(games[ep.game_id], b, prefix, seed + b, ep.episode_id, budget) for b in range(branches)]
    return jobs


def branches_of(
    trajectories: Path, jobs: list[Job], branches: int, seed: int, fraction: float = 1.0,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> list[Job]:
    """`branch_jobs` from the episodes of `jobs` as `trajectories` recorded them, taken in job order
    (not finishing order), so a rerun draws the same branches."""
    by_id = {ep.episode_id: ep for ep in read_episodes(trajectories, skip_corrupt=True)}
    origins = [by_id[j.episode_id] for j in jobs if j.episode_id in by_id]
    return branch_jobs(origins, {j.game.game_id: j.game for j in jobs}, branches, seed, fraction, max_steps)


@dataclass
class _Live:
    job: Job
    obs: Observation
    attempt: int = 1
    steps: list[Step] = field(default_factory=list)
    stats: dict[str, float] = field(default_factory=dict)
    """The agent's per-turn `AgentOutput.stats`, summed over this episode's turns."""

    def __post_init__(self) -> None:
        self.prefix = [Turn(o, a) for o, a in self.obs.info.get("prefix_turns", [])]

    def context(self) -> TurnContext:
        history = self.prefix + [Turn(s.observation, s.action) for s in self.steps]
        return TurnContext(
            task=self.obs.task,
            observation=self.obs.text,
            admissible_actions=list(self.obs.admissible_actions),
            history=history,
            game_id=self.job.game.game_id,
            prefix_len=len(self.job.prefix),
            expert_action=self.obs.info.get("expert_action"),
            episode_key=f"{self.job.episode_id}/{self.job.seed}",
        )

    def record(self, out: AgentOutput, reward: float, done: bool, admissible: bool) -> None:
        for key, value in out.stats.items():
            self.stats[key] = self.stats.get(key, 0) + value
        self.steps.append(
            Step(
                observation=self.obs.text,
                admissible_actions=list(self.obs.admissible_actions),
                action=out.action,
                reason=out.reason,
                raw_output=out.raw_output,
                reward=reward,
                done=done,
                admissible=admissible and bool(out.raw_output.strip()),  # empty: "look" was sent for it
                logprob=out.logprob,
                expert_action=self.obs.info.get("expert_action"),
            )
        )

    def episode(self, policy_id: str, won: bool, truncated: bool, failed: str | None = None) -> Episode:
        return _episode(self.job, policy_id, self.obs.task, self.steps, won, truncated, self.obs.text, failed,
                        self.attempt, self.prefix, self.stats)


def _episode(
    job: Job, policy_id: str, task: str, steps: list[Step], won: bool, truncated: bool, final: str,
    failed: str | None, attempt: int, prefix: list[Turn] | None = None, stats: dict[str, float] | None = None,
) -> Episode:
    g = job.game
    turns = prefix if prefix is not None else []
    return Episode(
        episode_id=job.episode_id, game_id=g.game_id, split=g.split, task_type=g.task_type, task=task,
        prefix=[t.action for t in turns] if turns else list(job.prefix),
        prefix_observations=[t.observation for t in turns], steps=steps, won=won, truncated=truncated,
        final_observation=final, policy_id=policy_id, seed=job.seed, failed=failed, attempts=attempt,
        meta={"agent_stats": dict(stats)} if stats else {},
    )


def play(
    agent: Agent,
    jobs: list[Job],
    pool: SlotPool,
    on_episode: Callable[[Episode], None],
    max_steps: int = 30,
    max_in_flight: int = 64,
    progress: Progress | None = None,
    expert: str | None = None,
    retries: int = DEFAULT_RETRIES,
    attempts_before: Mapping[str, int] | None = None,
    title: str = "episodes",
) -> None:
    """Play every job to its end, calling `on_episode` as each one finishes (in finishing order).
    `expert` runs that expert beside every game and records its action for every state.

    An episode lost to an env fault goes back to the front of the queue and is played again from its
    start, up to `retries` times, before `on_episode` gets it as failed. Every `EpisodeFailure` is
    retried, engine exceptions too: from here a deterministic engine bug cannot be told from a crash,
    and a wasted retry costs one episode where a missed one costs a wrong result. `attempts_before`
    (by episode id) counts plays in earlier runs, so a rerun's record counts them all."""
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    before = attempts_before or {}
    pending: deque[tuple[int, Job, int]] = deque(
        (slot, job, before.get(job.episode_id, 0) + 1) for slot, job in enumerate(jobs))
    live: dict[int, _Live] = {}
    task = progress.add_task(title, total=len(jobs)) if progress else None

    def finish(slot: int, episode: Episode) -> None:
        on_episode(episode)
        live.pop(slot, None)
        pool.release([slot])
        if progress is not None and task is not None:
            progress.advance(task)

    def lost(slot: int, job: Job, attempt: int, episode: Episode) -> None:
        """Replay a failed episode while this run has retries left for it, else record it failed."""
        if attempt - before.get(job.episode_id, 0) > retries:
            finish(slot, episode)
            return
        live.pop(slot, None)
        pool.release([slot])
        pending.appendleft((slot, job, attempt + 1))

    while pending or live:
        starting = [pending.popleft() for _ in range(min(max_in_flight - len(live), len(pending)))]
        if starting:
            specs = [(slot, EpisodeSpec(job.game, job.prefix, max_steps, expert)) for slot, job, _ in starting]
            resets = pool.reset(specs)
            for slot, job, attempt in starting:
                obs = resets[slot]
                if isinstance(obs, EpisodeFailure):
                    lost(slot, job, attempt, _episode(job, agent.policy_id, "", [], False, False, "", obs.error,
                                                      attempt))
                else:
                    live[slot] = _Live(job, obs, attempt)
                    if obs.info.get("won"):  # the prefix alone won the game
                        finish(slot, live[slot].episode(agent.policy_id, True, False))
        if not live:
            continue
        slots = list(live)
        outputs = agent.act([live[s].context() for s in slots])
        results = pool.step([(s, out.action) for s, out in zip(slots, outputs, strict=True)])
        for slot, out in zip(slots, outputs, strict=True):
            state, result = live[slot], results[slot]
            if isinstance(result, EpisodeFailure):
                lost(slot, state.job, state.attempt, state.episode(agent.policy_id, False, False, result.error))
                continue
            state.record(out, result.reward, result.done, bool(result.info.get("admissible", True)))
            state.obs = result.observation
            if result.done:
                won = bool(result.info.get("won"))
                finish(slot, state.episode(agent.policy_id, won, bool(result.info.get("truncated"))))
            elif state.job.max_steps is not None and len(state.steps) >= state.job.max_steps:
                state.steps[-1].done = True  # the job's own budget is spent: cut off, as the env does at its own
                finish(slot, state.episode(agent.policy_id, False, True))


def run_rollouts(
    agent: Agent,
    jobs: list[Job],
    out_file: Path,
    workers: int | None = None,
    max_steps: int = 30,
    max_in_flight: int = 64,
    show_progress: bool = True,
    expert: str | None = None,
    retries: int = DEFAULT_RETRIES,
    title: str = "episodes",
    backend: Backend = "process",
    ray_address: str | None = None,
) -> list[Episode]:
    """Play the jobs not yet finished in `out_file` (new ones, and failed ones again), appending each
    episode as it ends; returns all episodes of `jobs` (those from earlier runs included), in job
    order, each as its last record says. `workers` env workers run on `backend` (see envs.pool.open_pool)."""
    # the file is read once: earlier episodes (a rerun skips the finished ones), then new ones are kept as written
    by_id = {ep.episode_id: ep for ep in read_episodes(out_file, skip_corrupt=True)} if out_file.is_file() else {}
    failed_before = {i: ep.attempts for i, ep in by_id.items() if ep.failed is not None}
    todo = [j for j in jobs if j.episode_id not in by_id or j.episode_id in failed_before]
    if todo:
        with TrajectoryWriter(out_file) as writer, open_pool(workers, backend, ray_address) as pool:

            def keep(episode: Episode) -> None:
                writer.write(episode)
                by_id[episode.episode_id] = episode

            bar = progress_bar() if show_progress else None
            if bar:
                bar.start()
                if len(todo) < len(jobs):
                    bar.console.print(f"resuming {out_file}: {len(jobs) - len(todo)} of {len(jobs)} episodes done"
                                      + (f", {len(failed_before)} failed ones to retry" if failed_before else ""))
            try:
                play(agent, todo, pool, keep, max_steps, max_in_flight, bar, expert, retries, failed_before, title)
            finally:
                if bar:
                    bar.stop()
    return [by_id[j.episode_id] for j in jobs if j.episode_id in by_id]
