"""Monte Carlo PRM targets: rollouts (trajectory JSONL) → parquet rows of (state, action, Q̂).

For every (state, action) seen in the rollouts, Q̂ is the mean over its visits of the discounted
outcome γ^(T−1−t)·R (Eq. 1 of Choudhury 2025), where T is the number of turns of the visiting
episode, t the turn of the visit and R = 1 if that episode was won, else 0. An episode cut off by
the step budget (`truncated`) has won=false and counts as a loss, R = 0. Episodes whose worker
failed (`failed` set) are skipped: their outcome is unknown, not a loss.

Note on discounting: the paper's released code discounts by γ^t from the episode *start*, which
contradicts Eq. 1 (γ^(T−1−t), from the outcome backwards) and would make late actions, the ones
closest to the success, worth the least. We implement Eq. 1.

A state is identified by the sha256 of (task, full history of (observation, action) before t,
observation, admissible actions); a state–action pair adds the action. The free-text reason is not
part of the key: two answers with the same command are the same action. Visits merge across files
and runs, and `visits` counts them, so Q̂ of a pair seen once is a single 0/γ^k sample.

Reasons: a policy that generates answers (`REASON: ... ACTION: ...`) writes a new reason on almost
every visit, so keying on the answer would leave one visit per row and Q̂ a single 0/γ^k sample; the
outcome depends on the command the environment got, not on the words before it. Rows stay keyed on
the action, whatever the PRM reads, and carry one `reason` for a PRM that reads the whole answer
(`PRMConfig.reads = "answer"`, the paper's): the most frequent reason among the visits (ties: the
smallest text, no reason first), None when no visit had one (constrained/score policies, experts,
trajectories that recorded none). With `reason` None, the PRM's answer text is exactly `ACTION: a`,
as for a PRM that reads only the action. Pairs carry `reason_chosen`/`reason_rejected` alike.

Train/val are split BY GAME (a salted hash of game_id, stable when games are added), so no game is
in both. Rows are aggregated per (split, key): a text-identical state reached in a train game and in
a val game (rare) yields one row in each split. `history_window` only shortens the history stored in
the rows; keys always hash the full history.

Outputs under `out/`: train.parquet, val.parquet (one row per state–action), pairs_train.parquet,
pairs_val.parquet (Bradley–Terry pairs: two actions at the same state whose Q̂ differ by ≥ δ),
episodes_train.parquet, episodes_val.parquet (each episode's row keys, turn by turn: what lets a PRM
read a whole episode in one pass, `train.prm`) and summary.json. Every file is written aside and
renamed into place, so a crash leaves no half file.

Two variants (`agentprm.shaping`, paper §4): `values` writes one row per *state* instead (key = state
key, action "", q = V̂(s) = mean over the visits of s of γ^(T−1−t)·R, whatever the action): the targets
of a value model, a PRM that reads the state alone. `shaping_value` shapes every row's q with such a
model's V_ref (q = σ(k·(y − mean y)), y = mean over visits of γ^(T−1−t)·R + γ·V_ref(s′) − V_ref(s)).
Every row carries `q_mc`, the unshaped Q̂ (equal to q unless shaped): the label of validation AUC.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from agentprm.atomic import write_json
from agentprm.bounds import (
    PAIR_DELTA,
    SHAPING_CENTRES,
    SHAPING_CONSTANT,
    Discount,
    Fraction,
    NonNegInt,
    Positive,
    Probability,
    ShapingCentre,
)
from agentprm.contexts import contexts_from_episode, history_from_json, history_to_json
from agentprm.errors import ConfigError
from agentprm.prompts import TurnContext
from agentprm.shaping import Shaping, StateScorer, load_value_model, state_values
from agentprm.train.losses import discounted_return
from agentprm.trajectory import Episode, Step, load_episodes, trajectory_files

SPLITS = ("train", "val")

_STATE_COLUMNS = [
    ("game_id", pa.string()),
    ("split", pa.string()),
    ("task_type", pa.string()),
    ("task", pa.string()),
    ("history", pa.string()),
    ("observation", pa.string()),
    ("admissible_actions", pa.list_(pa.string())),
]
"""What a state is, in both files: enough to rebuild the prompt (`row_to_context`)."""

ROW_SCHEMA = pa.schema(
    [("key", pa.string()), ("state_key", pa.string()), *_STATE_COLUMNS,
     ("action", pa.string()), ("reason", pa.string()), ("q", pa.float64()), ("visits", pa.int64()),
     ("t", pa.int64()), ("q_mc", pa.float64())]
)

EPISODE_SCHEMA = pa.schema(
    [("episode_id", pa.string()), ("game_id", pa.string()), ("split", pa.string()), ("keys", pa.list_(pa.string()))]
)
"""One line per usable episode: the `key` of its row at every turn, in order."""

PAIR_SCHEMA = pa.schema(
    [("state_key", pa.string()), *_STATE_COLUMNS,
     ("chosen", pa.string()), ("rejected", pa.string()), ("reason_chosen", pa.string()),
     ("reason_rejected", pa.string()), ("q_chosen", pa.float64()), ("q_rejected", pa.float64()),
     ("visits_chosen", pa.int64()), ("visits_rejected", pa.int64())]
)


@dataclass
class TargetsConfig:
    """Where the rollouts are, where the targets go and how Q̂ is computed."""

    rollouts: list[str]
    """Trajectory JSONL files or folders (searched recursively for *.jsonl); all are merged."""
    out: str
    """Output folder (created); existing files of the same names are replaced."""
    gamma: Discount = 0.95
    """Discount of Eq. 1: the action t turns before the end gets γ^(T−1−t) of the outcome."""
    val_fraction: Fraction = 0.1
    """Expected share of *games* held out for validation (split by a hash of game_id)."""
    delta: Probability = PAIR_DELTA
    """Minimum Q̂ gap between two actions at the same state for a Bradley–Terry pair (default 0.03,
    the paper's released config; see `bounds.PAIR_DELTA`)."""
    history_window: NonNegInt | None = None
    """Turns of history stored per row (None: all). Keys always use the full history."""
    seed: int = 0
    """Salt of the game hash: another seed gives another (still deterministic) split."""
    skip_corrupt: bool = False
    """Skip unreadable trajectory lines with a warning instead of stopping."""
    values: bool = False
    """One row per state (action "", q = V̂(s)): targets of a value model (`PRM.reads = "state"`)."""
    shaping_value: str | None = None
    """Value model (a PRM folder that reads the state) whose V_ref shapes q (§4, `agentprm.shaping`)."""
    shaping_constant: Positive = SHAPING_CONSTANT
    """c of the squashing of shaped targets into [0, 1]: steepness c / IQR (3.0, the released config)."""
    shaping_centre: ShapingCentre = "mean"
    """Where the squashing is centred: "mean" (the released code) or "median" (`shaping.squash`)."""
    shaping_device: str | None = None
    """Where the value model runs (cuda, cpu; None: auto)."""

    def validate(self) -> None:
        if not self.rollouts:
            raise ConfigError("targets: no rollouts given; pass trajectory files or folders")
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"targets: gamma={self.gamma} must be in (0, 1]")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"targets: val_fraction={self.val_fraction} must be in [0, 1)")
        if self.delta < 0:
            raise ConfigError(f"targets: delta={self.delta} must be >= 0")
        if self.history_window is not None and self.history_window < 0:
            raise ConfigError(f"targets: history_window={self.history_window} must be >= 0 or None")
        if self.values and self.shaping_value is not None:
            raise ConfigError("targets: values and shaping_value exclude each other (a value model's targets "
                              "are plain V̂(s))")
        if self.shaping_constant <= 0:
            raise ConfigError(f"targets: shaping_constant={self.shaping_constant} must be > 0")
        if self.shaping_centre not in SHAPING_CENTRES:
            raise ConfigError(f"targets: shaping_centre={self.shaping_centre!r}: choose one of "
                              f"{', '.join(SHAPING_CENTRES)}")


def _sha256(obj: Any) -> str:
    """Hash of a JSON encoding: unambiguous (no separator can collide with the text itself)."""
    blob = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _state_fields(ctx: TurnContext) -> list[Any]:
    history = [[h.observation, h.action] for h in ctx.history]
    return [ctx.task, history, ctx.observation, list(ctx.admissible_actions)]


def state_key(ctx: TurnContext) -> str:
    """Identity of a state: task, full history, observation and admissible actions."""
    return _sha256(_state_fields(ctx))


def pair_key(ctx: TurnContext, action: str) -> str:
    """Identity of a state–action pair (the reason text is deliberately not part of it)."""
    return _sha256([*_state_fields(ctx), action])


def split_of(game_id: str, val_fraction: float, seed: int = 0) -> str:
    """"train" or "val" for a game: a salted hash mapped to [0, 1), so the same game always lands in
    the same split whatever other games are present."""
    digest = hashlib.sha256(f"{seed}:{game_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    return "val" if u < val_fraction else "train"


@dataclass
class _Visits:
    """Running aggregate of one (split, state–action) pair."""

    ctx: TurnContext
    action: str
    task_type: str
    t: int
    returns: list[float] = field(default_factory=list)
    """Eq. 1's return of every visit (q_mc)."""
    targets: list[float] = field(default_factory=list)
    """What q averages: the same returns, or the shaped y of every visit."""
    games: set[str] = field(default_factory=set)
    reasons: Counter[str | None] = field(default_factory=Counter)


def representative_reason(reasons: Counter[str | None]) -> str | None:
    """The reason a row carries: the most frequent one among its visits; ties go to the smallest
    text, no reason (None) before any, so the choice does not depend on the order files are read."""
    if not reasons:
        return None
    return min(reasons, key=lambda r: (-reasons[r], r is not None, r or ""))


def _episode_visits(ep: Episode, gamma: float) -> Iterable[tuple[TurnContext, Step, int, float]]:
    """(context, step, turn, discounted return) of every step of one finished episode."""
    T, R = len(ep.steps), 1.0 if ep.won else 0.0
    for t, (ctx, step) in enumerate(zip(contexts_from_episode(ep), ep.steps, strict=True)):
        yield ctx, step, t, discounted_return(T, t, R, gamma)


def usable(episodes: Iterable[Episode]) -> list[Episode]:
    """Episodes played to their end with at least one turn: a failed worker's episode (outcome and
    last turns unknown) and an empty one are skipped, here and by InversePRM's transitions."""
    return [ep for ep in episodes if ep.failed is None and ep.steps]


def aggregate(
    episodes: Iterable[Episode], cfg: TargetsConfig, chains: list[dict[str, Any]] | None = None,
    shaping: Shaping | None = None,
) -> dict[tuple[str, str], _Visits]:
    """Visits per (split, key) over all usable episodes; the key is the pair key, or the state key
    with `cfg.values` (the action is then ""). Each episode's keys in turn order are appended to
    `chains` when given; with `shaping` each visit also records its shaped return y_t."""
    table: dict[tuple[str, str], _Visits] = {}
    for ep in usable(episodes):
        split = split_of(ep.game_id, cfg.val_fraction, cfg.seed)
        visits = list(_episode_visits(ep, cfg.gamma))
        states = [state_key(ctx) for ctx, *_ in visits]
        returns = [ret for *_, ret in visits]
        targets = shaping.returns(states, 1.0 if ep.won else 0.0, cfg.gamma) if shaping else returns
        keys = []
        for (ctx, step, t, ret), s_key, y in zip(visits, states, targets, strict=True):
            action = "" if cfg.values else step.action
            k = (split, s_key if cfg.values else pair_key(ctx, action))
            if k not in table:
                table[k] = _Visits(ctx=ctx, action=action, task_type=ep.task_type, t=t)
            table[k].returns.append(ret)
            table[k].targets.append(y)
            table[k].games.add(ep.game_id)
            table[k].reasons[None if cfg.values else step.reason or None] += 1
            keys.append(k[1])
        if chains is not None:
            chains.append({"episode_id": ep.episode_id, "game_id": ep.game_id, "split": split, "keys": keys})
    return table


def _row(split: str, key: str, v: _Visits, history_window: int | None) -> dict[str, Any]:
    """One targets row; shaped rows hold the mean y as q until `Shaping.squash_rows`."""
    history = v.ctx.history
    if history_window is not None:
        history = history[-history_window:] if history_window else []
    return {
        "key": key,
        "state_key": state_key(v.ctx),
        "game_id": min(v.games),  # deterministic whatever the file order
        "split": split,
        "task_type": v.task_type,
        "task": v.ctx.task,
        "history": history_to_json(history),
        "observation": v.ctx.observation,
        "admissible_actions": list(v.ctx.admissible_actions),
        "action": v.action,
        "reason": representative_reason(v.reasons),
        "q": float(np.mean(v.targets)),
        "visits": len(v.returns),
        "t": v.t,
        "q_mc": float(np.mean(v.returns)),
    }


def extract_pairs(rows: Sequence[Mapping[str, Any]], delta: float) -> list[dict[str, Any]]:
    """Bradley–Terry pairs: every two actions at the same state (and split) with |ΔQ̂| ≥ δ,
    the higher-Q̂ one chosen. A tiny tolerance keeps a gap of exactly δ (e.g. 0.3 − 0.1) in."""
    by_state: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        by_state.setdefault((r["split"], r["state_key"]), []).append(r)
    pairs = []
    for group in by_state.values():
        group = sorted(group, key=lambda r: (-r["q"], r["action"]))
        for i, hi in enumerate(group):
            for lo in group[i + 1 :]:
                if hi["q"] - lo["q"] >= delta - 1e-12:
                    pairs.append(_pair(hi, lo))
    return pairs


def _pair(hi: Mapping[str, Any], lo: Mapping[str, Any]) -> dict[str, Any]:
    shared = ("state_key", "game_id", "split", "task_type", "task", "history", "observation")
    return {
        **{k: hi[k] for k in shared},
        "admissible_actions": list(hi["admissible_actions"]),
        "chosen": hi["action"],
        "rejected": lo["action"],
        "reason_chosen": hi.get("reason"),
        "reason_rejected": lo.get("reason"),
        "q_chosen": hi["q"],
        "q_rejected": lo["q"],
        "visits_chosen": hi["visits"],
        "visits_rejected": lo["visits"],
    }


def write_parquet(rows: Sequence[Mapping[str, Any]], schema: pa.Schema, path: Path) -> None:
    """Write rows atomically (aside, then os.replace); an empty list still gives a typed file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    pq.write_table(pa.Table.from_pylist(list(rows), schema=schema), tmp)
    os.replace(tmp, path)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a targets parquet file as dicts (small enough to hold in memory)."""
    return pq.read_table(path).to_pylist()


def row_to_context(row: Mapping[str, Any]) -> TurnContext:
    """The prompt context of a stored row (history as stored, i.e. possibly windowed)."""
    return TurnContext(
        task=row["task"],
        observation=row["observation"],
        admissible_actions=list(row["admissible_actions"]),
        history=history_from_json(row["history"]),
        game_id=row.get("game_id", ""),
    )


def rows_to_contexts(rows: Iterable[Mapping[str, Any]]) -> list[TurnContext]:
    return [row_to_context(r) for r in rows]


def _histogram(qs: Sequence[float]) -> dict[str, list[float]]:
    counts, edges = np.histogram(np.asarray(qs, dtype=float), bins=10, range=(0.0, 1.0))
    return {"counts": counts.tolist(), "edges": edges.tolist()}


def _summary(
    cfg: TargetsConfig, episodes: Sequence[Episode], rows: dict[str, list], pairs: dict[str, list]
) -> dict[str, Any]:
    used = usable(episodes)
    all_q = [r["q"] for split in SPLITS for r in rows[split]]
    out: dict[str, Any] = {
        "targets/episodes_read": len(episodes),
        "targets/episodes_used": len(used),
        "targets/episodes_failed_skipped": sum(ep.failed is not None for ep in episodes),
        "targets/episodes_won": sum(ep.won for ep in used),
        "targets/episodes_truncated": sum(ep.truncated for ep in used),
        "targets/visits": sum(len(ep.steps) for ep in used),
        "targets/mean_q": float(np.mean(all_q)) if all_q else None,
        "targets/q_histogram": _histogram(all_q),
    }
    for split in SPLITS:
        qs = [r["q"] for r in rows[split]]
        out[f"targets/{split}/rows"] = len(rows[split])
        out[f"targets/{split}/pairs"] = len(pairs[split])
        out[f"targets/{split}/games"] = len({r["game_id"] for r in rows[split]})
        out[f"targets/{split}/mean_q"] = float(np.mean(qs)) if qs else None
    out["targets/kind"] = "values" if cfg.values else "shaped" if cfg.shaping_value else "q"
    out["config"] = asdict(cfg)
    out["note"] = (
        "q = mean over visits of gamma^(T-1-t) * R (Eq. 1; R=1 if won, truncated = loss; failed "
        "episodes skipped). The paper's released code discounts by gamma^t from the episode start "
        "instead; we follow Eq. 1. Split by game (hash of game_id); pairs need |dq| >= delta."
    )
    if cfg.values:
        out["note"] += " Values: one row per state, q = V(s), the mean over all visits of the state, any action."
    elif cfg.shaping_value:
        out["note"] += (f" Shaped (section 4): q = sigmoid(k*(y - {cfg.shaping_centre} y)), k = c/IQR(y), y = mean "
                        "over visits of gamma^(T-1-t)*R + gamma*V_ref(s') - V_ref(s), V_ref = 0 after the last turn; "
                        "q_mc = Eq. 1.")
    return out


def build_targets(cfg: TargetsConfig, value_model: StateScorer | None = None) -> dict[str, Any]:
    """Read every rollout, compute Q̂ per state–action (V̂ per state with `cfg.values`), write the
    parquet files and summary.json, and return the summary. With `cfg.shaping_value` the targets are
    shaped by that value model (or by `value_model` when given: tests pass a stub)."""
    cfg.validate()
    if cfg.shaping_value is not None and value_model is None:  # before reading rollouts: a bad path fails fast
        value_model = load_value_model(cfg.shaping_value, cfg.shaping_device)
    files = list(dict.fromkeys(p.resolve() for p in trajectory_files(cfg.rollouts)))  # each file once
    episodes = load_episodes(files, skip_corrupt=cfg.skip_corrupt)
    shaping = None
    if cfg.shaping_value is not None and value_model is not None:
        shaping = Shaping(state_values(usable(episodes), value_model, state_key), cfg.shaping_constant,
                          cfg.shaping_value, cfg.shaping_centre)
    chains: list[dict[str, Any]] = []
    table = aggregate(episodes, cfg, chains, shaping)
    rows: dict[str, list] = {s: [] for s in SPLITS}
    for (split, key), v in table.items():
        rows[split].append(_row(split, key, v, cfg.history_window))
    shaped = shaping.squash_rows([r for split in SPLITS for r in rows[split]]) if shaping else {}
    pairs: dict[str, list] = {}
    for split in SPLITS:
        rows[split].sort(key=lambda r: (r["game_id"], r["t"], r["key"]))
        pairs[split] = extract_pairs(rows[split], cfg.delta)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        write_parquet(rows[split], ROW_SCHEMA, out / f"{split}.parquet")
        write_parquet(pairs[split], PAIR_SCHEMA, out / f"pairs_{split}.parquet")
        write_parquet([c for c in chains if c["split"] == split], EPISODE_SCHEMA, out / f"episodes_{split}.parquet")
    summary = _summary(cfg, episodes, rows, pairs)
    summary["targets/files"] = [str(f) for f in files]
    summary.update(shaped)
    write_json(out / "summary.json", summary)
    plot_histogram(summary["targets/q_histogram"], out / "q_histogram.png", len(rows["train"]) + len(rows["val"]))
    return summary


def plot_histogram(hist: dict[str, list[float]], path: Path, n: int) -> None:
    """The Q̂ histogram as a PNG: how much signal the PRM gets (all zeros: none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agentprm.atomic import save_figure

    fig, ax = plt.subplots(figsize=(5, 3))
    edges = hist["edges"]
    ax.bar(edges[:-1], hist["counts"], width=[b - a for a, b in itertools.pairwise(edges)],
           align="edge", edgecolor="white")
    ax.set_xlabel("Q (Eq. 1 Monte-Carlo target)")
    ax.set_ylabel("state–action rows")
    ax.set_title(f"Monte-Carlo targets ({n} rows)")
    fig.tight_layout()
    save_figure(fig, path)
