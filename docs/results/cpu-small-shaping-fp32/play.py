"""A policy, greedy, as the cpu-small loop plays its evaluations (`Run._lm` with eval.mode), on the loop's 60
held-out train games and on its 75 valid_seen games; writes OUT/{heldout,valid_seen}/ and OUT/summary.json.
usage (repository root): python docs/results/cpu-small-shaping-fp32/play.py RUN_DIR POLICY OUT"""
import json
import sys
import time
from pathlib import Path

from agentprm.evaluation import summarize
from agentprm.loop import Run, load_config
from agentprm.rollout import make_jobs, run_rollouts


def main() -> None:
    run_dir, policy, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    cfg = load_config(f"{run_dir}/config.yaml", [f"run_dir={run_dir}"])
    run = Run(cfg, show=False)
    agent = run._lm(policy, 0.0, mode=cfg.eval.mode)
    result = {"policy": policy, "mode": cfg.eval.mode}
    for name, games in (("heldout", run.heldout_games()), ("valid_seen", run._eval_games())):
        if (out / name / "summary.json").is_file():  # resumable: a finished set is not played again
            result[name] = json.loads((out / name / "summary.json").read_text())
            continue
        t = time.time()
        eps = run_rollouts(agent, make_jobs(games, 1, cfg.seed), out / name / "trajectories.jsonl",
                           workers=cfg.data.workers, max_steps=cfg.data.max_steps, max_in_flight=64,
                           show_progress=False)
        s = summarize(eps)
        result[name] = {"won": s["eval/won"], "episodes": s["eval/episodes"], "wall_s": round(time.time() - t, 1),
                        "per_task_type": {k: v["won"] for k, v in s["per_task_type"].items()}}
        (out / name / "summary.json").write_text(json.dumps(result[name], indent=1))
        print(name, json.dumps(result[name]), flush=True)
    (out / "summary.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
