"""results.json of run.sh: for each loop (Bradley–Terry, soft BCE) the targets, PRM, DPO step and every
evaluation, with stage seconds. usage (repository root): python docs/results/cpu-small-bt/collect.py"""
import json
from pathlib import Path


def read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def evaluation(path: Path) -> dict:
    s = read(path / "summary.json")
    if not s:
        return {}
    return {"won": s["eval/won"], "episodes": s["eval/episodes"],
            "per_task_type": {k: f"{v['won']}/{v['episodes']}" for k, v in s["per_task_type"].items()}}


def scalars(d: dict) -> dict:
    return {k: v for k, v in d.items() if not isinstance(v, dict | list)}


out = {}
for name in ("cpu-small-bt", "cpu-small-bce"):
    run = Path("runs") / name
    state = read(run / "state.json")
    out[name] = {
        "rollouts": evaluation(run / "iter1" / "rollouts"),
        "targets": scalars(read(run / "iter1" / "targets" / "summary.json")),
        "prm": {k: v for k, v in scalars(read(run / "iter1" / "prm" / "summary.json")).items()
                if k.startswith("prm/")},
        "dpo_last_step": read(run / "iter1" / "policy" / "summary.json").get("last"),
        "valid_seen": {p.name: evaluation(p) for p in sorted((run / "eval").glob("*"))},
        "heldout": {p.name: evaluation(p) for p in sorted((run / "heldout").glob("*"))},
        "selected": read(run / "selected.json"),
        "stage_seconds": state.get("seconds", {}),
    }
Path("docs/results/cpu-small-bt/results.json").write_text(json.dumps(out, indent=1) + "\n")
print(json.dumps({k: {"valid_seen": v["valid_seen"], "heldout": v["heldout"]} for k, v in out.items()}, indent=1))
