"""Model-predictive look-ahead at test time: Best-of-N whose candidates are judged by where they lead
in the simulator, K steps ahead, instead of by the PRM at the current state alone.

Each turn the policy samples N answers and the distinct actions are the candidates
(`BestOfNAgent.candidates`). With one distinct action there is nothing to choose and nothing is
simulated. Otherwise every candidate gets a *branch*: a spare env of the agent's own pool (never the
rollout's) is reset to the same game and the episode's actions so far are replayed (ALFWorld is
deterministic given the game file and the action sequence; the replayed observation is checked
against the one the agent sees), the candidate is taken, and the policy then acts greedily for up to
K−1 more steps. A branch stops early on a win, or where the real episode would be cut off (its step
budget, `max_steps`).

A branch of d steps, the last action a_{d−1} taken at s_{d−1}, is worth (`lookahead_value`):
- 1.0 if it won, and a winning branch beats every branch that did not (a PRM value may reach 1.0 too);
- 0.0 if it reached the episode's step budget without a win: that episode would be lost;
- else γ^(d−1) · Q(s_{d−1}, a_{d−1}), the PRM's value of its last (state, action) pair, d−1 steps
  from now: the PRM is trained on targets γ^(T−1−t)·R (targets.py, Eq. 1), so a pair d−1 turns later
  is worth γ^(d−1) of it seen from here. With K = 1 this is Best-of-N that also takes an immediate win.
The agent acts on the best candidate, ties going to the first sampled (`lookahead_choice`).

A branch whose spare env fails, or whose replay does not reproduce the observation, is valued as
Best-of-N values it (the PRM at the current state) and counted (`lookahead/fallbacks`).

Cost: each branch replays the episode so far (t env steps, ~5 ms each with the engine cache) and
takes up to K more; both are counted in each turn's `AgentOutput.stats`, which rollouts keep per
episode and eval sums into summary.json (`lookahead/extra_env_steps`, total and per turn). The N
samples are seeded by episode and turn (like Best-of-N) and branches are greedy, so a resumed eval
makes the same choices.

Spare envs: branch j of an episode keeps one slot of the pool for the whole episode, so after its
first (cold) reset every later one is warm; slots of episodes that left the batch (finished) are
released. Memory is then about one loaded game (~6.5 MB, worker.py) per episode in flight and
candidate: lower `--in-flight` for a large N.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from agentprm.agents.base import Agent, AgentOutput
from agentprm.agents.best_of_n import BestOfNAgent
from agentprm.envs.games import GameSpec, resolve_game
from agentprm.envs.protocol import Observation
from agentprm.envs.slots import SlotPool
from agentprm.envs.worker import EpisodeFailure, EpisodeSpec
from agentprm.prompts import Turn, TurnContext
from agentprm.train.losses import best_of_n_choice

DEFAULT_GAMMA = 0.95
"""The discount of the PRM targets (targets.py)."""


@dataclass(frozen=True)
class Outcome:
    """How one candidate's branch ended."""

    steps: int
    """Env steps the branch took, the candidate's included (≥ 1)."""
    won: bool = False
    ended: bool = False
    """The branch reached the episode's step budget (a win also ends it)."""
    prm_value: float = 0.0
    """Q(s, a) of the branch's last (state, action) pair; unused when it ended."""


def lookahead_value(outcome: Outcome, gamma: float = DEFAULT_GAMMA) -> float:
    """1.0 for a win, 0.0 for a branch that ended without one, else γ^(steps−1) · Q(last pair)
    (the module docstring says why this exponent)."""
    if outcome.won:
        return 1.0
    if outcome.ended:
        return 0.0
    return gamma ** (outcome.steps - 1) * outcome.prm_value


def lookahead_choice(outcomes: Sequence[Outcome], gamma: float = DEFAULT_GAMMA) -> int:
    """Index of the candidate to act on: the first that won in its look-ahead, else the highest
    `lookahead_value`, ties to the first (Best-of-N's rule, `best_of_n_choice`)."""
    won = [i for i, o in enumerate(outcomes) if o.won]
    if won:
        return won[0]
    return best_of_n_choice([lookahead_value(o, gamma) for o in outcomes])


@dataclass
class _Branch:
    """One candidate's look-ahead: the state its last action was taken in, and that action."""

    ctx: TurnContext
    action: str
    slot: int
    budget: int
    """Steps it may take: K, or fewer where the episode's step budget comes first."""
    key: str
    """Sampling key of the branch's contexts (its episode's key and candidate index)."""
    steps: int = 0
    won: bool = False
    ended: bool = False
    fallback: bool = False
    """No simulation to trust (env failure, replay mismatch): valued by the PRM at the start."""
    next_ctx: TurnContext | None = None
    start: tuple[TurnContext, str] = field(init=False)
    """The context and candidate the branch began with."""

    def __post_init__(self) -> None:
        self.start = (self.ctx, self.action)

    @property
    def pair(self) -> tuple[TurnContext, str]:
        """The (state, action) the PRM values: the last one reached, or the start for a fallback."""
        return self.start if self.fallback else (self.ctx, self.action)

    @property
    def live(self) -> bool:
        return not (self.won or self.ended or self.fallback) and self.steps < self.budget

    def outcome(self, prm_value: float) -> Outcome:
        if self.fallback:
            return Outcome(1, prm_value=prm_value)
        return Outcome(self.steps, self.won, self.ended, prm_value)


class LookaheadAgent:
    """Best-of-N candidates, each judged by a K-step look-ahead in a spare copy of the environment
    (see the module docstring). `rollout_policy` plays the branches (the policy, greedy); `pool` holds
    the spare envs (an in-process `EnvPool(0)` is the simplest); `games` maps game ids to games
    (others are looked up with `resolve_game`); `max_steps` is the episodes' step budget (None: none)."""

    def __init__(
        self, bon: BestOfNAgent, rollout_policy: Agent, pool: SlotPool, depth: int, gamma: float = DEFAULT_GAMMA,
        max_steps: int | None = None, games: Mapping[str, GameSpec] | None = None,
    ):
        if depth < 1 or not 0.0 < gamma <= 1.0:
            raise ValueError(f"need depth >= 1 and 0 < gamma <= 1, got {depth}, {gamma}")
        self.bon, self.rollout_policy, self.pool = bon, rollout_policy, pool
        self.depth, self.gamma, self.max_steps = depth, gamma, max_steps
        self.games = dict(games or {})
        self._slots: dict[tuple[str, int], int] = {}
        self.last_outcomes: list[list[Outcome]] = []

    @property
    def policy_id(self) -> str:
        return f"{self.bon.policy_id}+look{self.depth}"

    def act(self, contexts: list[TurnContext]) -> list[AgentOutput]:
        # one branch per distinct action (a PRM that reads reasons would keep two answers with one action)
        candidates = self.bon.candidates(contexts, by_action=True)
        keys = [c.episode_key or f"call|{i}" for i, c in enumerate(contexts)]
        branches = [self._branches(ctx, key, cands) if len(cands) > 1 else []
                    for ctx, key, cands in zip(contexts, keys, candidates, strict=True)]
        flat = [b for group in branches for b in group]
        replayed = self._start(flat, contexts, branches)
        while live := [b for b in flat if b.live and b.next_ctx is not None]:
            for b, out in zip(live, self.rollout_policy.act([b.next_ctx for b in live]), strict=True):
                b.ctx, b.action, b.next_ctx = b.next_ctx, out.action, None  # type: ignore[assignment]
            self._advance(live)
        values = self.bon.score_pairs([b.pair[0] for b in flat], [b.pair[1] for b in flat])
        picked, self.last_outcomes, i = [], [], 0
        for cands, group, n_replayed in zip(candidates, branches, replayed, strict=True):
            outcomes = [b.outcome(v) for b, v in zip(group, values[i : i + len(group)], strict=True)]
            i += len(group)
            self.last_outcomes.append(outcomes)
            out = cands[lookahead_choice(outcomes, self.gamma)] if outcomes else cands[0]
            simulated = sum(b.steps for b in group)
            out.stats = {"lookahead/extra_env_steps": n_replayed + simulated, "lookahead/replayed_steps": n_replayed,
                         "lookahead/simulated_steps": simulated, "lookahead/branches": len(group),
                         "lookahead/branch_wins": sum(o.won for o in outcomes),
                         "lookahead/fallbacks": sum(b.fallback for b in group)}
            picked.append(out)
        self._release_except(set(keys))
        return picked

    def _branches(self, ctx: TurnContext, key: str, cands: list[AgentOutput]) -> list[_Branch]:
        taken = len(ctx.history) - ctx.prefix_len
        left = self.depth if self.max_steps is None else min(self.depth, self.max_steps - taken)
        return [_Branch(ctx, c.action, self._slot(key, j), max(left, 1), f"{ctx.episode_key}|look{j}"
                        if ctx.episode_key else "") for j, c in enumerate(cands)]

    def _start(self, flat: list[_Branch], contexts: list[TurnContext], branches: list[list[_Branch]]) -> list[int]:
        """Reset every branch's spare env to its context's state (replaying the history), check the
        replay, take the candidates; returns the env steps replayed per context."""
        specs = {}
        for ctx, group in zip(contexts, branches, strict=True):
            prefix = tuple(t.action for t in ctx.history)
            for b in group:
                specs[b.slot] = EpisodeSpec(self._game(ctx.game_id), prefix, self.depth + 1)
        resets = self.pool.reset(list(specs.items())) if specs else {}
        replayed = []
        for ctx, group in zip(contexts, branches, strict=True):
            n = 0
            for b in group:
                obs = resets[b.slot]
                n += len(ctx.history) if isinstance(obs, EpisodeFailure) else int(obs.info.get("prefix_len", 0))
                b.fallback = not _same_state(obs, ctx)
            replayed.append(n)
        self._advance([b for b in flat if not b.fallback])
        return replayed

    def _advance(self, branches: list[_Branch]) -> None:
        """Step each branch's env with its action and record where it got to."""
        if not branches:
            return
        results = self.pool.step([(b.slot, b.action) for b in branches])
        for b in branches:
            result = results[b.slot]
            if isinstance(result, EpisodeFailure):
                b.fallback = True
                continue
            b.steps += 1
            b.won = bool(result.info.get("won"))
            b.ended = b.won or self._at_episode_budget(b)
            obs = result.observation
            b.next_ctx = TurnContext(
                task=b.ctx.task, observation=obs.text, admissible_actions=list(obs.admissible_actions),
                history=[*b.ctx.history, Turn(b.ctx.observation, b.action)], game_id=b.ctx.game_id,
                prefix_len=b.ctx.prefix_len, episode_key=b.key,
            )

    def _at_episode_budget(self, b: _Branch) -> bool:
        """Whether the branch's last step used the episode's last step (not just the look-ahead's)."""
        if self.max_steps is None:
            return False
        return len(b.ctx.history) - b.ctx.prefix_len + 1 >= self.max_steps

    def _game(self, game_id: str) -> GameSpec:
        if game_id not in self.games:
            self.games[game_id] = resolve_game(game_id)
        return self.games[game_id]

    def _slot(self, key: str, j: int) -> int:
        """Branch j of an episode keeps its slot, so its spare env stays loaded (warm resets)."""
        if (key, j) not in self._slots:
            self._slots[(key, j)] = max(self._slots.values(), default=-1) + 1
        return self._slots[(key, j)]

    def _release_except(self, keys: set[str]) -> None:
        """Free the spare envs of episodes that were not in this call: they have finished."""
        gone = [k for k in self._slots if k[0] not in keys]
        if gone:
            self.pool.release([self._slots.pop(k) for k in gone])

    def close(self) -> None:
        self.pool.close()


def _same_state(obs: Observation | EpisodeFailure, ctx: TurnContext) -> bool:
    """Whether a replay reached the state the agent is in (what it sees, and what it may do)."""
    if isinstance(obs, EpisodeFailure) or obs.info.get("won"):
        return False
    return obs.text == ctx.observation and list(obs.admissible_actions) == list(ctx.admissible_actions)
