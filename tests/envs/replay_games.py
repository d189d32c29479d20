"""Helper for test_engine_cache: replays games with a fixed, seeded mix of walkthrough, random and
expert actions and prints every observation as JSON (run as a script in a fresh process)."""

from __future__ import annotations

import json
import random
import sys
import zlib

from agentprm.envs.alfworld import ALFWorldEnv
from agentprm.envs.games import find_games, sample_games


def replay(split: str, n: int) -> list:
    out = []
    for i, game in enumerate(sample_games(find_games(split), n, seed=3)):
        env = ALFWorldEnv(game, max_steps=20, expert="handcoded" if i % 2 else None)
        for rep in range(2):  # a cold and a warm reset of the same game
            rng = random.Random(zlib.crc32(game.game_id.encode()) + rep)
            plan = env.walkthrough
            obs = env.reset(plan[: rng.randint(0, 2)])
            trace = [[obs.task, obs.text, obs.admissible_actions, obs.info.get("expert_action")]]
            for t in range(12):
                if i % 2 and rep == 0:
                    action = obs.info["expert_action"] or rng.choice(obs.admissible_actions)
                elif t < len(plan) - 1:
                    action = plan[t]
                else:
                    action = rng.choice([*obs.admissible_actions, "jump around"])
                obs, reward, done, _ = env.step(action)
                trace.append([action, obs.text, obs.admissible_actions, reward, done, obs.info.get("expert_action")])
                if done:
                    break
            out.append(trace)
        env.close()
    return out


if __name__ == "__main__":
    print(json.dumps(replay(sys.argv[1], int(sys.argv[2]))))
