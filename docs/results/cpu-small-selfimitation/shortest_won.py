"""Keep, per game, the won rollout episode with the fewest steps: the one with the highest Monte-Carlo Q̂ at its
first state (Q̂ = γ^(T-1-t)·R). usage: python shortest_won.py ROLLOUT_DIR OUT_DIR"""
import sys
from pathlib import Path

from agentprm.atomic import write_text
from agentprm.trajectory import load_episodes


def main() -> None:
    eps = [e for e in load_episodes([sys.argv[1]]) if e.won and not e.failed and not e.prefix]
    best = {}
    for e in eps:  # the shortest won episode of each game, the first of equals
        if e.game_id not in best or len(e.steps) < len(best[e.game_id].steps):
            best[e.game_id] = e
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "trajectories.jsonl", "".join(e.model_dump_json() + "\n" for e in best.values()))
    mean = sum(len(e.steps) for e in best.values()) / max(1, len(best))
    print(f"{len(eps)} won episodes -> {len(best)} games, mean steps {mean:.1f}")


if __name__ == "__main__":
    main()
