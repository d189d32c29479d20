"""`agentprm train` end to end on real ALFWorld games with the tiny model, killed (-9) and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import yaml

from agentprm.trajectory import read_episodes

CONFIG = Path(__file__).parent.parent / "configs" / "smoke-tiny.yaml"


def _start(cfg: Path) -> subprocess.Popen:
    return subprocess.Popen(["agentprm", "train", "--config", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _done(run: Path) -> list[str]:
    try:
        return json.loads((run / "state.json").read_text())["done"]
    except (OSError, json.JSONDecodeError):
        return []


def test_train_loop_runs_and_resumes_after_kill(alfworld_root, tiny_model, tmp_path):
    run = tmp_path / "run"
    cfg = tmp_path / "smoke.yaml"
    data = yaml.safe_load(CONFIG.read_text())
    data["run_dir"] = str(run)
    cfg.write_text(yaml.safe_dump(data))

    proc = _start(cfg)
    deadline = time.time() + 400
    while "sft" not in _done(run):  # kill -9 the whole process group once π0 exists
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "SFT stage did not finish in time"
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = json.loads((run / "state.json").read_text())
    demo_lines = (run / "demos" / "trajectories.jsonl").read_text()
    model_mtime = (run / "pi0" / "model").stat().st_mtime

    proc = _start(cfg)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out
    state = json.loads((run / "state.json").read_text())
    assert state["done"][: len(before["done"])] == before["done"]
    assert len(state["done"]) == len(set(state["done"]))  # nothing redone
    for stage in before["done"]:
        assert state["seconds"][stage] == before["seconds"][stage]
    assert (run / "demos" / "trajectories.jsonl").read_text() == demo_lines
    assert (run / "pi0" / "model").stat().st_mtime == model_mtime
    for name in ("iter1/rollouts", "iter1/targets", "iter1/prm", "iter1/policy", "eval/pi0", "eval/pi1",
                 "eval/pi1_bon2", "report"):
        assert name in state["done"]
    report = (run / "report.md").read_text()
    assert "| π0 |" in report and "| π1 |" in report and "Best-of-2" in report
    evals = json.loads((run / "report.json").read_text())["eval"]
    assert evals["pi0"]["eval/episodes"] == 2
    assert (run / "success_by_agent.png").is_file() and "![success_by_agent.png](success_by_agent.png)" in report
    rollouts = (run / "iter1" / "rollouts" / "trajectories.jsonl").read_text().splitlines()
    assert len(rollouts) == 6 and len({json.loads(x)["episode_id"] for x in rollouts}) == 6

    # a summary edited by hand (as stop 27's were, without the keys the loop writes): the rerun warns in one
    # line, rewrites it from the episodes beside it without replaying one, and rewrites the report
    summary = run / "eval" / "pi0" / "summary.json"
    kept = json.loads(summary.read_text())
    trajectories = (run / "eval" / "pi0" / "trajectories.jsonl").read_text()
    summary.write_text(json.dumps({"won": kept["eval/won"]}))
    proc = _start(cfg)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert f"warning: {summary}: lacks eval/episodes" in out and "stage eval/pi0 runs again" in out
    assert (run / "eval" / "pi0" / "trajectories.jsonl").read_text() == trajectories
    assert {k: v for k, v in json.loads(summary.read_text()).items() if k != "wall_s"} == \
        {k: v for k, v in kept.items() if k != "wall_s"}
    assert "▶ stage" in out and out.count("▶ stage") == 2  # eval/pi0 and report, nothing else


def test_train_loop_with_bradley_terry_and_branches_reports_its_pairs(alfworld_root, tiny_model, tmp_path):
    # the real entry point, the smoke config, the loss changed and same-state branches on: every stage must
    # run. The tiny random policy never wins a smoke rollout, so every Q̂ is 0 and there is no pair: the PRM
    # stage must say so (and leave the PRM untrained) rather than stop the run
    run = tmp_path / "run"
    out = subprocess.run(["agentprm", "train", "--config", str(CONFIG), "--set", f"run_dir={run}",
                          "--set", "prm.loss=bradley-terry", "--set", "rollout.branches=1"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    rollouts = list(read_episodes(run / "iter1" / "rollouts" / "trajectories.jsonl"))
    branches = list(read_episodes(run / "iter1" / "branches" / "trajectories.jsonl"))
    assert {ep.episode_id.split("@")[0] for ep in branches} == {ep.episode_id for ep in rollouts if ep.num_steps > 1}
    for ep in branches:  # each stopped where its origin's 4-step budget did
        assert ep.truncated and len(ep.prefix) + ep.num_steps == 4
    done = json.loads((run / "state.json").read_text())["done"]
    assert {"iter1/targets", "iter1/prm", "iter1/policy", "eval/pi1", "eval/pi1_bon2", "report"} <= set(done)
    targets = json.loads((run / "iter1" / "targets" / "summary.json").read_text())
    prm = json.loads((run / "iter1" / "prm" / "summary.json").read_text())
    assert prm["config"]["loss"] == "bradley-terry" and targets["config"]["delta"] == 0.03
    assert targets["targets/episodes_read"] == len(rollouts) + len(branches)
    assert prm["prm/data/train_pairs"] == targets["targets/train/pairs"]
    assert prm["prm/data/val_pairs"] == targets["targets/val/pairs"]
    assert prm["prm/data/train_examples"] == prm["prm/data/train_pairs"]  # one example per pair
