"""A bad run config stops `agentprm train` before its first stage with one line naming the field, the
value and the allowed range; `--show-config` shows what a file and `--set` resolve to; stage timings
add up over a killed attempt and its rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from agentprm.errors import ConfigError
from agentprm.loop import RunState, describe_config, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def agentprm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["agentprm", *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def one_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.mark.parametrize(("override", "expected"), [
    ("targets.gamma=2", "targets.gamma = 2: Input should be less than or equal to 1"),
    ("prm.batch_size=0", "prm.batch_size = 0: Input should be greater than or equal to 1"),
    ("sft.batch_size=-1", "sft.batch_size = -1: Input should be greater than or equal to 1"),
    ("data.workers=-1", "data.workers = -1: Input should be greater than or equal to 1"),
    ("targets.val_fraction=1", "targets.val_fraction = 1: Input should be less than 1"),
    ("policy_step.lr=0", "policy_step.lr = 0: Input should be greater than 0"),
    ("acting.mode=greedy", "acting.mode = 'greedy': Input should be 'generate', 'constrained' or 'score'"),
    ("prm.extra={batch_size: 0}", "section prm (its extra values included): PRMConfig: batch_size = 0"),
    ("policy_step.extra={min_margin: -1}", "PolicyTrainConfig: min_margin = -1: Input should be greater than"),
    ("sft.extra={labels: teacher}", "SFTConfig: labels = 'teacher'"),
    ("prm.extra={lossx: 1}", "PRMConfig: unknown field 'lossx'; did you mean loss?"),
])
def test_bad_value_is_one_line_naming_field_value_and_range(tmp_path, override, expected):
    from agentprm.loop import train

    with pytest.raises(ConfigError) as err:
        train(load_config(CONFIGS / "smoke-tiny.yaml", [f"run_dir={tmp_path / 'run'}", override]), show=False)
    assert expected in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_bad_value_stops_the_cli_run_before_any_stage(tmp_path):
    run_dir = tmp_path / "run"
    r = agentprm("train", "--config", str(CONFIGS / "smoke-tiny.yaml"), "--set", f"run_dir={run_dir}",
                 "--set", "targets.gamma=2")
    assert "targets.gamma = 2: Input should be less than or equal to 1" in one_line(r)
    assert not run_dir.exists()  # nothing written: fixing the value needs no --force


def test_unknown_key_names_the_nearest_valid_keys(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("targets:\n  gama: 0.9\n")
    with pytest.raises(ConfigError, match=r"unknown key 'targets\.gama'; did you mean targets\.gamma"):
        load_config(bad)
    line = one_line(agentprm("train-prm", "--data", str(tmp_path), "--set", "batchsize=4"))
    assert "did you mean batch_size" in line


def test_set_errors_are_one_line(tmp_path):
    cfg = str(CONFIGS / "smoke-tiny.yaml")
    assert "sft.lr is a value, not a section" in one_line(agentprm("train", "--config", cfg, "--set", "sft.lr.x=1"))
    assert "expected key=value" in one_line(agentprm("train", "--config", cfg, "--set", "sft.lr"))
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("run_dir: caf\xe9\n".encode("latin-1"))
    assert "not UTF-8 text (byte 0xe9" in one_line(agentprm("train", "--config", str(latin1)))
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    assert "expected a mapping" in one_line(agentprm("train", "--config", str(listed)))


def test_set_value_keeps_a_hash():
    cfg = load_config(CONFIGS / "smoke-tiny.yaml", ["run_dir=runs/a #1", "sft.lr=3e-4", "eval.best_of=[2, 4]"])
    assert cfg.run_dir == "runs/a #1" and cfg.sft.lr == 3e-4 and cfg.eval.best_of == [2, 4]


def test_show_config_prints_the_resolved_config_and_marks_changes():
    r = agentprm("train", "--show-config", "--config", str(CONFIGS / "cpu-small.yaml"), "--set", "sft.lr=0.002")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    lr = next(ln for ln in lines if ln.strip().startswith("lr: 0.002"))
    assert "[changed; default 5e-05]" in lr  # the --set value, marked
    assert any(ln.strip().startswith("model: \"scratch:small\"") and "changed" in ln for ln in lines)  # the file
    assert any(ln.strip().startswith("beta: 0.1") and "changed" not in ln for ln in lines)  # a default
    assert "changed" not in describe_config()


def test_stage_seconds_add_up_over_a_killed_attempt(tmp_path):
    """kill -9 in the middle of a stage, rerun: the stage's seconds include the killed attempt."""
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from agentprm.loop import RunState, run_stages
        RunState.HEARTBEAT_S = 0.1
        slow = sys.argv[1] == "slow"
        state = RunState(Path({str(tmp_path)!r}))
        run_stages([("a", lambda: None), ("b", lambda: time.sleep(60 if slow else 0.5))], state, print)
    """)
    first = subprocess.Popen([sys.executable, "-c", script, "slow"], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until stage b has run ~1.5 s
        running = json.loads((tmp_path / "state.json").read_text()).get("running", {}) \
            if (tmp_path / "state.json").is_file() else {}
        if running.get("stage") == "b" and running.get("seconds", 0) >= 1.5:
            break
        time.sleep(0.1)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    second = subprocess.run([sys.executable, "-c", script, "fast"], capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stdout and "1 of 2 stages done" in second.stdout
    assert "stage 2/2: b" in second.stdout and "spent before" in second.stdout
    state = RunState(tmp_path).data
    assert state["done"] == ["a", "b"] and state["attempts"] == {"a": 1, "b": 2}
    assert 2.0 <= state["seconds"]["b"] < 10  # ≥1.5 s killed + 0.5 s finishing
    assert "running" not in state and not state.get("partial")


def test_train_prm_reads_is_an_option_and_a_set_field(tmp_path):
    # both spellings reach PRMConfig.reads and are validated there (before any model is loaded)
    for args in (["--reads", "reason"], ["--set", "reads=reason"]):
        line = one_line(agentprm("train-prm", "--data", str(tmp_path), *args))
        assert "reads" in line and "reason" in line, line
