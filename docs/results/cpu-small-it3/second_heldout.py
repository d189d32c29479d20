"""After the fact, a diagnostic of the selection's noise: π0..π3 of a run, greedy as the loop evaluates them, on a
second sample of 60 train games (balanced over task types) that no stage played: not the run's held-out games, not
its demonstration games, not any iteration's rollout games. It does not change what the run keeps.
Plays through the loop's own `Run._play` (OUT_DIR/piI/: its summary.json, results.md, success.png) and writes the
figures quoted in the README to OUT_DIR/piI.json.
usage (repository root): python second_heldout.py RUN_DIR OUT_DIR"""
import json
import sys
from pathlib import Path

from agentprm.envs.games import find_games, stratified_games
from agentprm.loop import Run, load_config
from agentprm.rollout import make_jobs
from agentprm.trajectory import load_episodes


def played(path: Path) -> set[str]:
    return {e.game_id for e in load_episodes([path])}


def main() -> None:
    run_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    cfg = load_config(f"{run_dir}/config.yaml", [f"run_dir={run_dir}"])
    run = Run(cfg, show=False)
    used = {g.game_id for g in run.heldout_games()} | played(run_dir / "demos" / "trajectories.jsonl")
    for i in range(1, cfg.iterations + 1):
        used |= played(run_dir / f"iter{i}" / "rollouts" / "trajectories.jsonl")
    fresh = [g for g in find_games(cfg.data.train_split, cfg.data.task_types) if g.game_id not in used]
    games = stratified_games(fresh, cfg.data.heldout_games, cfg.seed + 1007)
    print(f"{len(fresh)} unplayed train games; playing {len(games)}", flush=True)
    for i in range(cfg.iterations + 1):
        line_file = out / f"pi{i}.json"
        if line_file.is_file():
            continue
        s = run._play(run._greedy(i), make_jobs(games, 1, cfg.seed), out / f"pi{i}", f"π{i}, second held-out", {})
        line = {"iteration": i, "won": s["eval/won"], "episodes": s["eval/episodes"], "wall_s": s["wall_s"],
                "per_task_type": {k: v["won"] for k, v in s["per_task_type"].items()}}
        line_file.write_text(json.dumps(line, indent=1))
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
