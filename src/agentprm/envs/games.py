"""Finding ALFWorld games on disk: splits, task types, deterministic order, seeded sampling.

Layout (what `alfworld-download` writes under $ALFWORLD_DATA):
    <root>/json_2.1.1/<split>/<task folder>/<trial>/game.tw-pddl
The task type is the first '-' field of the task folder's name. A game's id is
"<split>/<task folder>/<trial>", stable across machines.
"""

from __future__ import annotations

import os
import random
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from agentprm.errors import DataNotFoundError

SPLITS = ("train", "valid_seen", "valid_unseen")
TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
# The paper's Table 1 column names.
TASK_SHORT = {
    "pick_and_place_simple": "Pick",
    "pick_clean_then_place_in_recep": "Clean",
    "pick_heat_then_place_in_recep": "Heat",
    "pick_cool_then_place_in_recep": "Cool",
    "look_at_obj_in_light": "Look",
    "pick_two_obj_and_place": "Pick2",
}
GAME_FILE = "game.tw-pddl"
DATA_SUBDIR = "json_2.1.1"


@dataclass(frozen=True)
class GameSpec:
    game_id: str
    split: str
    task_type: str
    path: str


def data_root() -> Path:
    """$ALFWORLD_DATA, else alfworld's own default (~/.cache/alfworld)."""
    env = os.environ.get("ALFWORLD_DATA")
    return Path(env).expanduser() if env else Path("~/.cache/alfworld").expanduser()


def split_dir(split: str, root: Path | None = None) -> Path:
    if split not in SPLITS:
        raise DataNotFoundError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    return (root or data_root()) / DATA_SUBDIR / split


def task_type_of(task_folder: str) -> str:
    return task_folder.split("-", 1)[0]


def find_games(
    split: str, task_types: list[str] | None = None, root: Path | None = None
) -> list[GameSpec]:
    """All games of a split in sorted (deterministic) order, optionally filtered by task type."""
    for t in task_types or []:
        if t not in TASK_TYPES:
            raise DataNotFoundError(f"unknown task type {t!r}; choose from {', '.join(TASK_TYPES)}")
    base = split_dir(split, root)
    if not base.is_dir():
        raise DataNotFoundError(
            f"no ALFWorld split {split!r} at {base}: run `alfworld-download`, or unpack an existing copy "
            f"there, or point ALFWORLD_DATA at the folder that holds {DATA_SUBDIR}/"
        )
    games = []
    for path in sorted(base.glob(f"*/*/{GAME_FILE}")):
        task_folder, trial = path.parent.parent.name, path.parent.name
        task_type = task_type_of(task_folder)
        if task_types and task_type not in task_types:
            continue
        if path.stat().st_size == 0:  # a truncated copy; the engine would fail on it mid-run
            warnings.warn(f"skipping empty game file {path}", stacklevel=2)
            continue
        games.append(GameSpec(f"{split}/{task_folder}/{trial}", split, task_type, str(path)))
    if not games:
        raise DataNotFoundError(f"no {GAME_FILE} files under {base} (filter: {task_types or 'none'})")
    return games


def sample_games(games: list[GameSpec], n: int | None, seed: int = 0) -> list[GameSpec]:
    """n games drawn without replacement by a seeded RNG, returned in sorted order; all if n is None."""
    if n is None or n >= len(games):
        return list(games)
    picked = random.Random(seed).sample(range(len(games)), n)
    return [games[i] for i in sorted(picked)]


def stratified_games(games: list[GameSpec], n: int, seed: int = 0) -> list[GameSpec]:
    """n games spread as evenly as possible over task types (for small but balanced eval sets)."""
    by_type: dict[str, list[GameSpec]] = {}
    for g in games:
        by_type.setdefault(g.task_type, []).append(g)
    rng = random.Random(seed)
    for lst in by_type.values():
        rng.shuffle(lst)
    picked: list[GameSpec] = []
    while len(picked) < min(n, len(games)):
        for lst in by_type.values():
            if lst and len(picked) < n:
                picked.append(lst.pop())
    return sorted(picked, key=lambda g: g.game_id)


def select_eval_games(games: list[GameSpec], n: int | None, seed: int = 0) -> list[GameSpec]:
    """n games balanced over task types, seeded (all games when n is None): how every command with
    `--games` and the run loop's evaluation pick games, so the same n and seed give the same games."""
    return list(games) if n is None else stratified_games(games, n, seed)


def count_by_task_type(games: list[GameSpec]) -> dict[str, int]:
    counts = Counter(g.task_type for g in games)
    return {t: counts.get(t, 0) for t in TASK_TYPES}


def resolve_game(game: str, split: str | None = None) -> GameSpec:
    """A game from an id ("valid_seen/<task>/<trial>"), a task folder prefix, or a path to game.tw-pddl."""
    p = Path(game)
    if p.is_file() or (p / GAME_FILE).is_file():
        path = p if p.is_file() else p / GAME_FILE
        parts = path.resolve().parts
        sp = parts[-4] if len(parts) >= 4 else (split or "unknown")
        return GameSpec(f"{sp}/{parts[-3]}/{parts[-2]}", sp, task_type_of(parts[-3]), str(path))
    sp = game.split("/", 1)[0] if game.split("/", 1)[0] in SPLITS else split
    if sp is None:
        raise DataNotFoundError(f"game {game!r}: give --split or an id that starts with the split")
    wanted = game if game.startswith(f"{sp}/") else f"{sp}/{game}"
    matches = [g for g in find_games(sp) if g.game_id.startswith(wanted)]
    if not matches:
        raise DataNotFoundError(f"no game {game!r} in split {sp!r}")
    return matches[0]
