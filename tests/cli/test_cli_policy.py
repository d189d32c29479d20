"""Policy-facing commands through the real entry point, with the tiny model on real games."""

from __future__ import annotations

import json
import shutil

from test_cli import agentprm


def test_eval_writes_table_files_and_per_episode_jsonl(alfworld_root, tiny_model, tmp_path):
    out = tmp_path / "eval"
    r = agentprm("eval", "--policy", tiny_model, "--split", "valid_seen", "--games", "2", "--max-steps", "3",
                 "--max-new-tokens", "6", "--out", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval/episodes"] == 2 and summary["best_of"] == 1 and summary["temperature"] == 0.0
    assert 0.0 <= summary["eval/non_admissible_rate"] <= 1.0 and summary["eval/mean_actions"] <= 3
    assert "| All |" in (out / "results.md").read_text()
    assert (out / "success.png").stat().st_size > 0
    assert len((out / "trajectories.jsonl").read_text().splitlines()) == 2


def test_cpu_bf16_reaches_the_policy_and_is_recorded(alfworld_root, tiny_model, tmp_path, monkeypatch):
    """--cpu-bf16 is the loop's acting.cpu_bf16 on the command line: the policy acts under bf16 autocast
    (so a loop's figures can be reproduced by `agentprm eval`) where the CPU has native bf16; without it,
    fp32. The summary records what took effect on the machine that ran it."""
    import torch

    from agentprm.agents.factory import make_agent
    from agentprm.models import cpu_has_native_bf16

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    on = make_agent(tiny_model, "constrained", 0.0, 1.0, 6, None, 0, 4, cpu_bf16=True)
    off = make_agent(tiny_model, "constrained", 0.0, 1.0, 6, None, 0, 4)
    assert on._autocast()._enabled and on._autocast().fast_dtype == torch.bfloat16
    assert not off._autocast()._enabled
    monkeypatch.undo()
    out = tmp_path / "eval"
    r = agentprm("eval", "--policy", tiny_model, "--games", "1", "--max-steps", "2", "--max-new-tokens", "6",
                 "--mode", "constrained", "--cpu-bf16", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "summary.json").read_text())["cpu_bf16"] is cpu_has_native_bf16()


def test_score_mode_is_recorded_and_only_takes_admissible_actions(alfworld_root, tiny_model, tmp_path):
    out = tmp_path / "eval"
    r = agentprm("eval", "--policy", tiny_model, "--mode", "score", "--games", "1", "--max-steps", "2",
                 "--out", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "score" and summary["policy_id"].endswith(":score")
    assert summary["eval/non_admissible_rate"] == 0.0


def test_rollout_rerun_continues_without_duplicates(alfworld_root, tiny_model, tmp_path):
    out = tmp_path / "roll"
    base = ("rollout", "--policy", tiny_model, "--split", "train", "--max-steps", "2", "--max-new-tokens", "6",
            "--out", str(out))
    r = agentprm(*base, "--games", "1", "--repeats", "1")
    assert r.returncode == 0, r.stderr
    first = (out / "trajectories.jsonl").read_text().splitlines()
    r = agentprm(*base, "--games", "2", "--repeats", "2")  # a bigger request over the same folder
    assert r.returncode == 0, r.stderr
    lines = (out / "trajectories.jsonl").read_text().splitlines()
    ids = [json.loads(x)["episode_id"] for x in lines]
    assert lines[0] == first[0] and len(ids) == 4 and len(set(ids)) == 4
    assert json.loads((out / "summary.json").read_text())["eval/episodes"] == 4


def test_rollout_branches_go_beside_the_rollouts_and_targets_read_both(alfworld_root, tiny_model, tmp_path):
    out = tmp_path / "roll"
    r = agentprm("rollout", "--policy", tiny_model, "--split", "train", "--games", "2", "--max-steps", "3",
                 "--max-new-tokens", "6", "--branches", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    origins = [json.loads(x) for x in (out / "trajectories.jsonl").read_text().splitlines()]
    branches = [json.loads(x) for x in (out / "branches" / "trajectories.jsonl").read_text().splitlines()]
    assert len(origins) == 2 and len(branches) == 4  # every 3-step episode branched twice
    for b in branches:
        assert b["episode_id"].split("@")[0] in {o["episode_id"] for o in origins}
        assert len(b["prefix"]) + b["num_steps"] == 3 and b["truncated"]
    r = agentprm("targets", "--rollouts", str(out), "--out", str(tmp_path / "t"))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "t" / "summary.json").read_text())["targets/episodes_read"] == 6


def test_wrong_model_path_and_corrupt_checkpoint_are_one_line(alfworld_root, tiny_model, tmp_path):
    r = agentprm("eval", "--policy", str(tmp_path / "no-such-model"), "--games", "1", "--out", str(tmp_path / "e"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no-such-model" in r.stderr
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    r = agentprm("eval", "--policy", str(broken), "--games", "1", "--out", str(tmp_path / "e2"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1 and "broken" in r.stderr


def test_bench_bon_draws_the_scaling_curve(alfworld_root, tiny_model, tmp_path):
    from agentprm.train.prm import PRM

    PRM.from_spec(tiny_model).save(tmp_path / "prm")
    out = tmp_path / "bon"
    r = agentprm("bench", "bon", "--policy", tiny_model, "--prm", str(tmp_path / "prm"), "--n", "1,2",
                 "--games", "1", "--max-steps", "2", "--max-new-tokens", "6", "--history", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    result = json.loads((out / "summary.json").read_text())
    assert [p["n"] for p in result["points"]] == [1, 2]
    assert (out / "bon_scaling.png").stat().st_size > 0 and (out / "bon2" / "summary.json").is_file()


def test_eval_with_lookahead_reports_its_env_steps_and_resumes_to_the_same_choices(alfworld_root, tiny_model,
                                                                                    tmp_path):
    from agentprm.train.prm import PRM

    PRM.from_spec(tiny_model).save(tmp_path / "prm")
    out = tmp_path / "look"
    args = ("eval", "--policy", tiny_model, "--mode", "score", "--prm", str(tmp_path / "prm"), "--best-of", "3",
            "--lookahead", "2", "--split", "valid_seen", "--games", "2", "--max-steps", "3", "--history", "1",
            "--out", str(out))
    r = agentprm(*args)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["lookahead"] == 2 and summary["lookahead_gamma"] == 0.95 and summary["best_of"] == 3
    assert summary["policy_id"].endswith("+bon3+look2")
    episodes = [json.loads(x) for x in (out / "trajectories.jsonl").read_text().splitlines()]
    total = sum(ep["meta"]["agent_stats"]["lookahead/extra_env_steps"] for ep in episodes)
    turns = sum(ep["num_steps"] for ep in episodes)
    assert summary["lookahead/extra_env_steps"] == total > 0  # score mode samples distinct admissible actions
    assert summary["lookahead/extra_env_steps_per_turn"] == total / turns
    assert summary["lookahead/fallbacks"] == 0  # every replay reproduced the state the agent was in

    # as if killed after the first episode: the rerun plays the second again, making the same choices
    lines = (out / "trajectories.jsonl").read_text().splitlines()
    (out / "trajectories.jsonl").write_text(lines[0] + "\n")
    r = agentprm(*args)
    assert r.returncode == 0, r.stderr
    again = [json.loads(x) for x in (out / "trajectories.jsonl").read_text().splitlines()]
    assert [ep["episode_id"] for ep in again] == [ep["episode_id"] for ep in episodes]
    for a, b in zip(again, episodes, strict=True):
        assert [s["action"] for s in a["steps"]] == [s["action"] for s in b["steps"]]
        assert a["meta"] == b["meta"]
    assert json.loads((out / "summary.json").read_text())["lookahead/extra_env_steps"] == total


def test_eval_best_of_n_with_the_greedy_answer_among_the_candidates(alfworld_root, tiny_model, tmp_path):
    from agentprm.train.prm import PRM

    PRM.from_spec(tiny_model).save(tmp_path / "prm")
    out = tmp_path / "bong"
    r = agentprm("eval", "--policy", tiny_model, "--mode", "score", "--prm", str(tmp_path / "prm"), "--best-of", "2",
                 "--bon-greedy", "--bon-beta", "0.1", "--split", "valid_seen", "--games", "1", "--max-steps", "2",
                 "--history", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bon_greedy"] is True and summary["bon_beta"] == 0.1
    assert summary["policy_id"].endswith("+bon2gb0.1")
    r = agentprm("eval", "--policy", "tiny", "--bon-greedy", "--out", str(tmp_path / "e"))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "--bon-greedy needs --prm" in lines[0], r.stderr
    r = agentprm("eval", "--policy", "tiny", "--bon-beta", "0.1", "--out", str(tmp_path / "e"))
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "--bon-beta needs --prm" in lines[0], r.stderr


def test_lookahead_without_a_prm_or_candidates_is_one_line(tmp_path):
    for extra in ((), ("--prm", str(tmp_path / "prm")), ("--prm", str(tmp_path / "prm"), "--best-of", "1")):
        r = agentprm("eval", "--policy", "tiny", "--lookahead", "2", *extra, "--out", str(tmp_path / "e"))
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and "--lookahead 2 needs --prm" in lines[0], r.stderr
    r = agentprm("eval", "--policy", "tiny", "--lookahead", "0", "--prm", str(tmp_path / "prm"), "--best-of", "2",
                 "--out", str(tmp_path / "e"))
    assert r.returncode == 2 and "K must be >= 1" in r.stderr and "Traceback" not in r.stderr


def test_eval_help_explains_lookahead():
    r = agentprm("eval", "--help", env={"COLUMNS": "200"})
    assert r.returncode == 0 and "--lookahead" in r.stdout and "spare copy of the game" in " ".join(r.stdout.split())
