"""The `agentprm` command through its real entry point (a subprocess, as a user runs it)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from agentprm.envs.alfworld import ALFWorldEnv
from agentprm.envs.games import find_games


def agentprm(*args: str, env: dict[str, str] | None = None, stdin: str | None = None):
    return subprocess.run(
        ["agentprm", *args], capture_output=True, text=True, input=stdin, timeout=600,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_commands():
    r = agentprm("--help")
    assert r.returncode == 0
    for cmd in ("data", "expert", "play", "bench"):
        assert cmd in r.stdout


def test_help_text_with_brackets_renders_as_written():
    """Rich markup must not eat "[…]" in docstrings (it did: "K ×  → report.md")."""
    r = agentprm("train", "--help", env={"COLUMNS": "200"})
    assert r.returncode == 0
    assert "K × [rollouts → targets → PRM → DPO → eval] → report.md" in " ".join(r.stdout.split())


def test_data_check_missing_data_is_one_clear_line():
    r = agentprm("data", "check", env={"ALFWORLD_DATA": "/nonexistent"})
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "/nonexistent" in lines[0] and "ALFWORLD_DATA" in lines[0]


def test_data_check_counts_games(alfworld_root):
    r = agentprm("data", "check")
    assert r.returncode == 0, r.stderr
    assert "3553" in r.stdout and "140" in r.stdout


def test_expert_writes_demos_summary_and_resumes(alfworld_root, tmp_path):
    out = tmp_path / "expert"
    args = ("expert", "--split", "valid_seen", "--games", "3", "--out", str(out), "--workers", "2")
    r = agentprm(*args)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval/episodes"] == 3 and summary["eval/won"] == 3 and summary["eval/success"] == 1.0
    assert (out / "success.png").stat().st_size > 0
    lines = (out / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == 3
    r = agentprm(*args)  # rerun: nothing replayed, nothing duplicated
    assert r.returncode == 0
    assert (out / "trajectories.jsonl").read_text().splitlines() == lines


def test_expert_bad_split_is_one_line(alfworld_root, tmp_path):
    r = agentprm("expert", "--split", "nope", "--out", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "unknown split" in r.stderr


def test_play_a_game_to_the_win(alfworld_root):
    game = find_games("valid_seen", ["look_at_obj_in_light"])[0]
    plan = ALFWorldEnv(game).walkthrough
    r = agentprm("play", "--game", game.game_id, stdin="\n".join(plan) + "\n")
    assert r.returncode == 0, r.stderr
    assert "You won!" in r.stdout and f"{len(plan)} steps" in r.stdout


def test_bench_env_writes_figures(alfworld_root, tmp_path):
    r = agentprm("bench", "env", "--workers", "1,2", "--episodes", "2", "--rounds", "2", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    result = json.loads(Path(tmp_path / "summary.json").read_text())
    assert [x["workers"] for x in result["results"]] == [1, 2]
    assert all(x["steps_per_s"] > 0 and x["warm_resets_per_s"] > x["cold_resets_per_s"] > 0 for x in result["results"])
    assert set(result["speedup"]) == {"steps", "cold_resets", "warm_resets"} and "warm/cold" in r.stdout


def test_bench_generate_reports_speedup(tiny_model, tmp_path):
    r = agentprm("bench", "generate", "--model", "tiny", "--batch", "1,4", "--new-tokens", "4", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "summary.json").read_text())
    assert [x["batch_size"] for x in result["generate"]["results"]] == [1, 4]
    assert result["sft"]["tokens_per_s"] > 0 and "speed-up" in r.stdout


def test_expert_rerun_retries_a_failed_episode_and_its_tables_count_it(alfworld_root, tmp_path):
    out = tmp_path / "expert"
    args = ("expert", "--split", "valid_seen", "--games", "3", "--out", str(out), "--workers", "1")
    assert agentprm(*args).returncode == 0
    path = out / "trajectories.jsonl"
    lines = path.read_text().splitlines()
    lost = {**json.loads(lines[1]), "won": False, "steps": [], "attempts": 3,
            "failed": "episode lost with worker 0: worker 0 crashed (exit code -9)"}
    path.write_text("\n".join([lines[0], json.dumps(lost), lines[2]]) + "\n")  # what a crashed run leaves
    r = agentprm(*args, "--retries", "0")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["eval/won"], summary["eval/failed"], summary["eval/episodes"], summary["retries"]) == (3, 0, 3, 0)
    assert "| All | 100.0 | 3/3 | " in (out / "results.md").read_text() and "3/3" in r.stdout
    records = path.read_text().splitlines()
    assert records[:3] == [lines[0], json.dumps(lost), lines[2]] and len(records) == 4  # appended
    retried = json.loads(records[3])
    assert (retried["episode_id"], retried["won"], retried["attempts"]) == (lost["episode_id"], True, 4)
