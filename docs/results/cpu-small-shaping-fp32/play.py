"""A policy, greedy, as the cpu-small loop plays its evaluations (`Run._lm` with eval.mode, `Run._play`), on the
loop's 60 held-out train games and on its 75 valid_seen games; writes OUT/{heldout,valid_seen}/ (the loop's
summary.json, results.md, success.png) and OUT/summary.json (won per set and task type).
usage (repository root): python docs/results/cpu-small-shaping-fp32/play.py RUN_DIR POLICY OUT"""
import json
import sys
from pathlib import Path

from agentprm.loop import Run, load_config
from agentprm.rollout import make_jobs


def compact(summary: dict) -> dict:
    """The figures the results tables quote, from a `play_and_report` summary."""
    return {"won": summary["eval/won"], "episodes": summary["eval/episodes"], "wall_s": summary["wall_s"],
            "per_task_type": {k: v["won"] for k, v in summary["per_task_type"].items()}}


def main() -> None:
    run_dir, policy, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    cfg = load_config(f"{run_dir}/config.yaml", [f"run_dir={run_dir}"])
    run = Run(cfg, show=False)
    agent = run._lm(policy, 0.0, mode=cfg.eval.mode)
    result = {"policy": policy, "mode": cfg.eval.mode}
    for name, games in (("heldout", run.heldout_games()), ("valid_seen", run._eval_games())):
        done = out / name / "summary.json"
        if done.is_file():  # resumable: a finished set is not played again
            result[name] = compact(json.loads(done.read_text()))
            continue
        result[name] = compact(run._play(agent, make_jobs(games, 1, cfg.seed), out / name, f"{name}: {policy}", {}))
        print(name, json.dumps(result[name]), flush=True)
    (out / "summary.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
