"""The trajectory file format: JSONL, one episode a line, versioned.

Format `agentprm.trajectory` version 3. Older files still read: version 2 as version 3 with one attempt
per episode, version 1 also with no expert labels. Each line is an `Episode` as JSON:

    {"format": "agentprm.trajectory", "version": 3, "episode_id": ..., "game_id": ..., "split": ...,
     "task_type": ..., "task": ..., "prefix": [...], "prefix_observations": [...], "steps": [Step, ...], "won": bool,
     "truncated": bool, "num_steps": int, "final_observation": str, "policy_id": str, "seed": int,
     "failed": str | null, "attempts": int, "meta": {...}}

Turn semantics (what the targets stage relies on):
- `steps[t]` holds the observation the agent saw *before* acting at turn t, the admissible actions at
  that moment, the model's raw output, the parsed reason and action, then the reward and `done` the
  environment returned for that action.
- The outcome reward is on the last step only: 1.0 if the episode was won, else 0.0. An episode cut
  off by the step budget has `truncated=true`, `won=false` and counts as a loss.
- `prefix` lists actions replayed before turn 0 (reset-distribution starts); they are not steps, but
  they are history: `prefix_observations[i]` (version 2) is what was seen before `prefix[i]`, and
  every turn's context starts with those turns, as if the policy had played them itself.
- `steps[t].expert_action` (version 2) is the environment's expert's action for the state of turn t
  when the episode ran with an expert ("handcoded" or "planner"): a DAgger label, whatever action
  was actually taken. None when the episode had no expert or the expert had nothing to say.
- `failed` is set when the environment could not serve the episode (its worker crashed or hung, or
  the engine raised) on every attempt; its outcome is unknown, so `targets` skips it and success
  rates leave it out of the denominator (and say how many there were).
- `meta["agent_stats"]` (when the agent reports any, e.g. the look-ahead agent's extra env steps) sums
  the agent's per-turn counters over the episode's steps (`AgentOutput.stats`).
- `attempts` (version 3) is how many times the episode was played from its start: rollouts replay
  an episode lost to an env fault with the same job and seed, in the same run and again in a rerun,
  and the count covers them all. 1 in older files.

One record per episode id is what readers see: a rerun retries the failed episodes of a file by
appending new records under the same ids (the file stays append-only), so `read_episodes` keeps the
*last* record of each id, at the place of its first one. Ids repeat only within a file: two files
(say, two iterations' rollouts) may hold the same id and both are kept.

Text is stored as UTF-8; a lone UTF-16 surrogate (which a model reply can carry and UTF-8 cannot
encode) is written as U+FFFD, so one odd reply can never stop a run from being recorded.

Writes are atomic per line: one `write()` of a whole line on an O_APPEND descriptor, then fsync, and
opening a file for append first cuts off a half-written tail left by a crash. Readers name the file
and line of a corrupt record and can skip it with a warning. A later version must keep reading v1.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from agentprm.errors import CorruptRecordError
from agentprm.text import replace_surrogates

FORMAT = "agentprm.trajectory"
VERSION = 3


class Step(BaseModel):
    observation: str
    admissible_actions: list[str]
    action: str
    reason: str | None = None
    raw_output: str | None = None
    reward: float = 0.0
    done: bool = False
    admissible: bool = True
    logprob: float | None = None
    expert_action: str | None = None


class Episode(BaseModel):
    format: Literal["agentprm.trajectory"] = FORMAT
    version: int = VERSION
    episode_id: str
    game_id: str
    split: str
    task_type: str
    task: str
    prefix: list[str] = Field(default_factory=list)
    prefix_observations: list[str] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    won: bool = False
    truncated: bool = False
    final_observation: str = ""
    policy_id: str = ""
    seed: int = 0
    failed: str | None = None
    attempts: int = 1
    """Times the episode was played from its start (retries after env faults, reruns included)."""
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    def to_json(self) -> str:
        """One JSON line, always encodable as UTF-8 (lone surrogates become U+FFFD)."""
        data = self.model_dump(mode="json")
        data["num_steps"] = self.num_steps
        return replace_surrogates(json.dumps(data, ensure_ascii=False))


def _repair_tail(path: Path) -> None:
    """Cut a half-written last line (no trailing newline) left by a crash mid-append."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        content = f.read()
        keep = content.rfind(b"\n") + 1
        f.truncate(keep)
    warnings.warn(f"{path}: removed a half-written last line ({len(content) - keep} bytes)", stacklevel=3)


class TrajectoryWriter:
    """Appends episodes to a JSONL file, one atomic line each; safe to reopen after a crash."""

    def __init__(self, path: str | Path, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _repair_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._fsync = fsync

    def write(self, episode: Episode) -> None:
        os.write(self._fd, (episode.to_json() + "\n").encode("utf-8"))
        if self._fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_episode(line: str) -> Episode:
    data = json.loads(line)
    if data.get("format") != FORMAT:
        raise ValueError(f"not an {FORMAT} record (format={data.get('format')!r})")
    if int(data.get("version", 0)) > VERSION:
        raise ValueError(f"written by a newer agentprm (version {data['version']} > {VERSION})")
    data.pop("num_steps", None)  # derived; stored for people reading the file
    return Episode.model_validate(data)


def read_episodes(path: str | Path, skip_corrupt: bool = False) -> Iterator[Episode]:
    """Episodes of one file in order, one per episode id: a later record of an id (a rerun's retry
    of a failed episode) replaces the earlier one in its place. A bad line raises CorruptRecordError
    naming file and line, or with `skip_corrupt` is skipped with a warning."""
    path = Path(path)
    if not path.is_file():
        raise CorruptRecordError(f"no trajectory file at {path}")
    by_id: dict[str, Episode] = {}  # insertion order is first appearance; assignment keeps the last record
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                episode = parse_episode(line)
            except (json.JSONDecodeError, ValidationError, ValueError) as e:
                msg = f"{path}:{lineno}: corrupt trajectory record: {str(e).splitlines()[0]}"
                if not skip_corrupt:
                    raise CorruptRecordError(msg) from e
                warnings.warn(msg + " (skipped)", stacklevel=2)
                continue
            by_id[episode.episode_id] = episode
    yield from by_id.values()


def trajectory_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand directories to the *.jsonl files inside them (sorted); keep files as given."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(p.rglob("*.jsonl")))
        elif p.is_file():
            out.append(p)
        else:
            raise CorruptRecordError(f"no trajectory file or folder at {p}")
    return out


def load_episodes(paths: Iterable[str | Path], skip_corrupt: bool = False) -> list[Episode]:
    return [ep for f in trajectory_files(paths) for ep in read_episodes(f, skip_corrupt)]
