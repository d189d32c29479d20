"""Collect the DAgger comparison's figures into results.json: valid_seen summaries, held-out lines, SFT summaries,
the DAgger rounds' learner rollouts. usage: python collect.py RUN_DIR EVAL_DIR HELDOUT_TXT OUT_JSON [SFT_DIR ...]
(SFT_DIR: SFT outputs made outside the loop, e.g. round 1 at lr 2e-4 and the 20-epoch π0)."""
import json
import re
import sys
from pathlib import Path


def main():
    run, ev, heldout, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
    res = {"valid_seen": {}, "heldout": {}, "sft": {}, "dagger_learner": {}}
    for name, path in [("pi0", ev / "vs-pi0"), ("dagger1", ev / "vs-dagger1"), ("dagger2", run / "eval" / "pi0"),
                       ("sft20", ev / "vs-sft20")]:
        if (path / "summary.json").is_file():
            s = json.loads((path / "summary.json").read_text())
            res["valid_seen"][name] = {"won": s["eval/won"], "games": s["eval/finished"],
                                       "by_type": {k: v["won"] for k, v in s["per_task_type"].items()},
                                       "wall_s": s.get("wall_s")}
    s = json.loads((run / "heldout" / "pi0" / "summary.json").read_text())
    res["heldout"]["dagger2"] = {"won": s["eval/won"], "games": s["eval/finished"]}
    for line in heldout.read_text().splitlines():
        m = re.match(r"(\S+): (\d+)/(\d+) won (\{.*\}) (\d+)s", line)
        if m:
            name = Path(m.group(1)).parent.name
            res["heldout"][name] = {"won": int(m.group(2)), "games": int(m.group(3)), "wall_s": int(m.group(5))}
    for p in [run / "pi0", run / "dagger1", run / "dagger2", *map(Path, sys.argv[5:])]:
        if (p / "summary.json").is_file():
            m = json.loads((p / "summary.json").read_text())["metrics"]
            res["sft"][p.name] = {k.split("/")[1]: m.get(k) for k in ("sft/train_examples", "sft/global_step",
                                  "sft/tokens", "sft/train_loss", "sft/val_loss", "sft/tokens_per_s", "sft/wall_s")}
    for r in (1, 2):
        s = json.loads((run / f"dagger{r}" / "rollouts" / "summary.json").read_text())
        res["dagger_learner"][f"round{r}"] = {k.split("/")[1]: s.get(k) for k in (
            "eval/won", "eval/finished", "eval/expert_labelled", "eval/expert_agreement")}
    res["stage_seconds"] = json.loads((run / "state.json").read_text())["seconds"]
    out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
