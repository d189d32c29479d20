"""Where does a policy lose? Each lost episode is put in one of three classes: it never saw the task's object in
any observation; it saw it and never took it; it took it and failed later. Also: how many lost episodes repeat an
(observation, action) pair (a loop). Reads trajectories only.
usage (repository root): python docs/results/cpu-small-walkaways/where_lost.py TRAJECTORIES.jsonl ..."""
import json
import re
import sys
from collections import Counter
from pathlib import Path

PATTERNS = [r"look at (\w+) under the (\w+)", r"examine the (\w+) with the (\w+)",
            r"put (?:a |an |some )?clean (\w+) (?:in|on) (?:\w+ )?(\w+)",
            r"clean (?:a |an |some )?(\w+) and put it (?:in|on) (?:\w+ )?(\w+)",
            r"put (?:a |an |some )?(\w+) (?:in|on) (?:\w+ )?(\w+)"]
"""Task sentences of the three task types the CPU runs use (look, pick, clean); group 1 is the object to take."""


def target(task: str) -> str | None:
    """The object the task needs taken ("apple" in "put a clean apple in fridge.")."""
    return next((m.group(1) for p in PATTERNS if (m := re.search(p, task))), None)


def first_seen(ep: dict, obj: str) -> int | None:
    """The first turn whose observation shows an `obj N`."""
    rx = re.compile(rf"\b{obj} \d+")
    return next((t for t, s in enumerate(ep["steps"]) if rx.search(s["observation"])), None)


def took(ep: dict, obj: str) -> bool:
    return any(s["action"].startswith(f"take {obj} ") for s in ep["steps"])


def walkaway(ep: dict) -> int | None:
    """The turn of a lost episode where the object was first in view, taking it was admissible, and the policy
    did something else and never took it afterwards (None: not such an episode)."""
    obj = target(ep["task"])
    if ep["won"] or obj is None or took(ep, obj):
        return None
    t = first_seen(ep, obj)
    if t is None:
        return None
    step = ep["steps"][t]
    return t if any(a.startswith(f"take {obj} ") for a in step["admissible_actions"]) else None


def classify(ep: dict) -> str:
    obj = target(ep["task"])
    if ep["won"]:
        return "won"
    if obj is None:
        return "lost: task not parsed"
    if first_seen(ep, obj) is None:
        return "lost: never saw the object"
    return "lost: took it, failed later" if took(ep, obj) else "lost: saw it, never took it"


def main() -> None:
    for path in sys.argv[1:]:
        eps = [json.loads(line) for line in Path(path).read_text().splitlines()]
        classes, loops, walk = Counter(), Counter(), []
        for ep in eps:
            c = classify(ep)
            classes[c] += 1
            pairs = [(s["observation"], s["action"]) for s in ep["steps"]]
            loops[c] += len(set(pairs)) < len(pairs)
            if (t := walkaway(ep)) is not None:
                walk.append(len(ep["steps"]) - t)
        print(f"{path}: {len(eps)} episodes")
        for c, n in sorted(classes.items()):
            print(f"  {c}: {n} (repeating an (observation, action): {loops[c]})")
        walk.sort()
        if walk:
            print(f"  walk-aways (saw it, could take it, never did): {len(walk)}; turns left after that turn: "
                  f"median {walk[len(walk) // 2]}, min {walk[0]}, max {walk[-1]}")


if __name__ == "__main__":
    main()
