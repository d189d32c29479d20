"""The engine speed-ups change nothing a player can see (envs/engine_cache.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def _replay(cache: bool, split: str, n: int) -> list:
    env = {**os.environ, "AGENTPRM_ENGINE_CACHE": "1" if cache else "0"}
    out = subprocess.run([sys.executable, str(HERE / "replay_games.py"), split, str(n)], env=env,
                         capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout)


def test_same_observations_actions_rewards_and_expert_with_and_without_cache(alfworld_root):
    with_cache, without = _replay(True, "valid_seen", 4), _replay(False, "valid_seen", 4)
    assert len(with_cache) == 8 and sum(len(t) for t in with_cache) > 40
    assert with_cache == without


def test_cache_is_on_by_default_and_can_be_turned_off(monkeypatch):
    from agentprm.envs import engine_cache

    assert engine_cache.enabled()
    monkeypatch.setenv("AGENTPRM_ENGINE_CACHE", "0")
    assert not engine_cache.enabled()
