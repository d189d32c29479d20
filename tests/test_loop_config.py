"""Run config: YAML + overrides, validation errors in one line, documented defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agentprm.errors import ConfigError
from agentprm.evaluation import summarize
from agentprm.loop import RunState, describe_config, load_config

CONFIGS = Path(__file__).parent.parent / "configs"


def test_shipped_configs_validate():
    for path in CONFIGS.glob("*.yaml"):
        cfg = load_config(path)
        assert cfg.iterations >= 1


def test_overrides_and_errors(tmp_path):
    cfg = load_config(CONFIGS / "smoke-tiny.yaml", ["sft.lr=0.5", "iterations=3", "data.eval_games=7"])
    assert (cfg.sft.lr, cfg.iterations, cfg.data.eval_games) == (0.5, 3, 7)
    bad = tmp_path / "bad.yaml"
    bad.write_text("sft:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match=r"sft\.lrr"):
        load_config(bad)
    bad.write_text("iterations: many\n")
    with pytest.raises(ConfigError, match="iterations"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no config file"):
        load_config(tmp_path / "missing.yaml")


def test_describe_config_documents_every_section():
    text = describe_config()
    for key in ("run_dir:", "policy_step:", "beta: 0.1", "gamma: 0.95", "best_of:"):
        assert key in text


def test_run_state_round_trip(tmp_path):
    st = RunState(tmp_path)
    st.mark_done("demos", 1.234)
    again = RunState(tmp_path)
    assert again.is_done("demos") and not again.is_done("sft") and again.data["seconds"]["demos"] == 1.2


def test_changed_config_is_refused_unless_forced(tmp_path):
    from agentprm.loop import prepare_run_dir

    cfg = load_config(CONFIGS / "smoke-tiny.yaml", [f"run_dir={tmp_path / 'run'}"])
    prepare_run_dir(cfg)
    changed = load_config(CONFIGS / "smoke-tiny.yaml", [f"run_dir={tmp_path / 'run'}", "eval.best_of=[3]"])
    with pytest.raises(ConfigError, match="--force"):
        prepare_run_dir(changed)
    prepare_run_dir(changed, force=True)
    assert (tmp_path / "run" / "config.prev.yaml").is_file()
    assert "- 3" in (tmp_path / "run" / "config.yaml").read_text()


def test_a_run_saved_before_a_field_existed_resumes(tmp_path):
    from agentprm.loop import prepare_run_dir

    cfg = load_config(CONFIGS / "smoke-tiny.yaml", [f"run_dir={tmp_path / 'run'}"])
    prepare_run_dir(cfg)
    saved = tmp_path / "run" / "config.yaml"
    old = yaml.safe_load(saved.read_text())
    del old["data"]["backend"], old["data"]["ray_address"]  # as written before the Ray backend
    saved.write_text(yaml.safe_dump(old, sort_keys=False))
    prepare_run_dir(cfg)
    assert not (tmp_path / "run" / "config.prev.yaml").exists()


def test_stage_list_follows_the_config():
    from agentprm.loop import Run

    def names(*overrides: str) -> list[str]:
        return [n for n, _ in Run(load_config(CONFIGS / "smoke-tiny.yaml", list(overrides)), show=False).stages()]

    plain = names()
    assert plain[:2] == ["demos", "sft"] and "base" not in plain and "eval/pi1_bon2" in plain
    scratch = names("model=scratch:tiny", "dagger.rounds=2", "data.heldout_games=6", "iterations=2")
    assert scratch[:7] == ["demos", "base", "sft", "dagger1/rollouts", "dagger1/sft", "dagger2/rollouts",
                           "dagger2/sft"]
    # with held-out games: every π_i is also played there, one is kept, Best-of-N runs on it only
    assert [n for n in scratch if n.startswith("heldout/")] == ["heldout/pi0", "heldout/pi1", "heldout/pi2"]
    assert scratch[-3:] == ["select", "eval/selected_bon2", "report"]
    assert not any(n.startswith("eval/pi") and "_bon" in n for n in scratch)


def test_a_run_resumed_with_more_iterations_selects_again(tmp_path):
    """A finished run of 1 iteration resumed with iterations=2 (`--force`): its selection was among π0 and π1
    only, so select, Best-of-N of the kept π and the report run again; a finished run resumed as it was
    redoes nothing, and one with stages left rewrites its report."""
    import json

    from agentprm.loop import Run

    def run(iterations: int) -> Run:
        return Run(load_config(CONFIGS / "smoke-tiny.yaml", [f"run_dir={tmp_path}", "data.heldout_games=6",
                                                             f"iterations={iterations}"]), show=False)

    state = RunState(tmp_path)
    for name, _ in run(1).stages():
        state.mark_done(name, 1.0)
    (tmp_path / "selected.json").write_text(json.dumps({"iteration": 1, "heldout_success": {"0": 0.2, "1": 0.3}}))
    _write_play_summaries(run(1), state)
    assert run(1).stale_stages(state) == []
    stale = run(2).stale_stages(state)
    assert stale == ["select", "eval/selected_bon2", "report"]
    state.undo(stale)
    again = RunState(tmp_path)
    assert not again.is_done("select") and not again.is_done("report") and again.is_done("heldout/pi1")
    state.undo(["heldout/pi1"])
    state.mark_done("select", 1.0)
    state.mark_done("report", 1.0)
    assert run(1).stale_stages(state) == ["report"]  # heldout/pi1 is left to run; select's inputs were π0, π1


def _write_play_summaries(run, state: RunState) -> None:
    """A summary.json as `summarize` writes it in every finished playing stage's folder."""
    import json

    for name, _ in run.stages():
        folder = run.summary_dir(name) if state.is_done(name) else None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "summary.json").write_text(json.dumps(summarize([])))


def test_a_summary_edited_by_hand_makes_its_stage_select_and_the_report_run_again(tmp_path):
    """stop 27 resumed a run whose held-out summaries were made by hand without the loop's keys, and
    select stopped on a KeyError. Such a summary (or a missing one) now marks its stage to run again,
    which rewrites it from its episodes; a held-out one also redoes select and what follows from it."""
    import json

    from agentprm.loop import Run

    run = Run(load_config(CONFIGS / "smoke-tiny.yaml", [f"run_dir={tmp_path}", "data.heldout_games=6"]), show=False)
    state = RunState(tmp_path)
    for name, _ in run.stages():
        state.mark_done(name, 1.0)
    (tmp_path / "selected.json").write_text(json.dumps({"iteration": 1, "heldout_success": {"0": 0.2, "1": 0.3}}))
    _write_play_summaries(run, state)
    assert run.summary_dir("eval/selected_bon2") == tmp_path / "eval" / "pi1_bon2"
    assert run.summary_dir("iter1/prm") is None and run.summary_dir("demos") == tmp_path / "demos"
    (tmp_path / "heldout" / "pi1" / "summary.json").write_text(json.dumps({"eval/won": 3, "eval/episodes": 6}))
    with pytest.warns(UserWarning, match=r"heldout/pi1/summary\.json: lacks eval/success, eval/mean_actions, "
                                         r"eval/non_admissible_rate, per_task_type: .*stage heldout/pi1 runs again"):
        assert run.stale_stages(state) == ["heldout/pi1", "select", "eval/selected_bon2", "report"]
    _write_play_summaries(run, state)
    (tmp_path / "eval" / "pi0" / "summary.json").unlink()
    with pytest.warns(UserWarning, match=r"eval/pi0/summary\.json: no such file; stage eval/pi0 runs again"):
        assert run.stale_stages(state) == ["eval/pi0", "report"]  # held-out games choose; select stands


def test_heldout_games_stay_out_of_demos_and_rollouts(alfworld_root):
    from agentprm.loop import Run

    run = Run(load_config(CONFIGS / "smoke-tiny.yaml", ["data.heldout_games=4", "data.demo_games=null",
                                                        "data.rollout_games=null"]), show=False)
    held = {g.game_id for g in run.heldout_games()}
    assert len(held) == 4
    demos = {g.game_id for g in run._games("train", None)}
    assert not held & demos and len(demos) > 10


def test_none_in_the_run_config_reaches_the_stage_configs():
    # "the whole history" (null) must not turn into a stage's default window of 8 on the way
    from agentprm.loop import Run

    run = Run(load_config(CONFIGS / "smoke-tiny.yaml", ["acting.history_window=null"]), show=False)
    assert run.sft_config("tiny", [Path("demos")], Path("out")).history_window is None
    assert run.sft_config("tiny", [Path("demos")], Path("out"), epochs=3.0).epochs == 3.0


def test_a_stage_with_failed_episodes_is_not_done_unless_allowed(tmp_path, monkeypatch):
    """Episodes still failed after the rollout's retries stop the run before the stage is marked done
    (so the rerun retries them), unless data.max_failed_episodes allows that many."""
    import agentprm.evaluation
    from agentprm.errors import WorkerError
    from agentprm.loop import Run, run_stages

    monkeypatch.setattr(agentprm.evaluation, "play_and_report",
                        lambda *a, **k: {"eval/failed": 1, "eval/episodes": 4})
    run = Run(load_config(CONFIGS / "smoke-tiny.yaml", [f"run_dir={tmp_path}"]), show=False)
    state = RunState(tmp_path)
    with pytest.raises(WorkerError, match=r"1 of 4 episodes failed even after retries.*max_failed_episodes"):
        run_stages([("eval/pi0", lambda: run._play(None, [], tmp_path / "e", "pi0", {}))], state, lambda _: None)
    assert not RunState(tmp_path).is_done("eval/pi0")
    run = Run(load_config(CONFIGS / "smoke-tiny.yaml", [f"run_dir={tmp_path}", "data.max_failed_episodes=1"]),
              show=False)
    run_stages([("eval/pi0", lambda: run._play(None, [], tmp_path / "e", "pi0", {}))], state, lambda _: None)
    assert RunState(tmp_path).is_done("eval/pi0")


def test_inverse_prm_method_builds_its_stages_and_configs():
    from agentprm.loop import Run

    def run(*overrides: str) -> Run:
        return Run(load_config(CONFIGS / "smoke-tiny.yaml", ["method=inverse_prm", *overrides]), show=False)

    two = run("iterations=2", "inverse_prm.warm_start=true", "inverse_prm.extra={val_fraction: 0.2}")
    names = [n for n, _ in two.stages()]
    assert names[:4] == ["demos", "sft", "eval/pi0", "iter1/rollouts"]
    assert [n for n in names if n.startswith("iter2/")] == ["iter2/rollouts", "iter2/inverse_prm", "iter2/policy"]
    assert not any("targets" in n or n.endswith("/prm") for n in names)
    # the learner side pools every iteration's rollouts; PRM_i lands where Best-of-N and DPO look for it
    cfg = two.inverse_prm_config(2)
    assert cfg.demos == [str(two.dir / "demos")] and cfg.out == str(two.prm_dir(2))
    assert cfg.rollouts == [str(two.dir / f"iter{k}" / "rollouts" / "trajectories.jsonl") for k in (1, 2)]
    assert cfg.init == str(two.prm_dir(1)) and two.inverse_prm_config(1).init is None
    assert (cfg.gamma, cfg.val_fraction, cfg.history_window, cfg.model) == (0.95, 0.2, 2, "tiny")
    assert two.policy_config(2).prm == str(two.prm_dir(2))
    # π0 given: no SFT, but the demos are still played (they are the expert side)
    assert [n for n, _ in run("policy=tiny").stages()][:2] == ["demos", "eval/pi0"]
    agentprm = Run(load_config(CONFIGS / "smoke-tiny.yaml", ["policy=tiny"]), show=False)
    assert next(n for n, _ in agentprm.stages()) == "eval/pi0"
    # what would read real success during training, and bad values, stop the run before it starts
    with pytest.raises(ConfigError, match="monitor_every"):
        run("policy_step.monitor_every=1").check()
    with pytest.raises(ConfigError, match="explore"):
        run("rollout.explore=true").check()
    with pytest.raises(ConfigError, match=r"section inverse_prm.*val_fraction"):
        run("inverse_prm.extra={val_fraction: 2}").check()
    with pytest.raises(ConfigError, match="method"):
        load_config(CONFIGS / "smoke-tiny.yaml", ["method=inverse"])
    run().check()
    assert "method: \"agentprm\"" in describe_config() and "warm_start: false" in describe_config()


def test_prm_reads_and_pair_delta_reach_the_stage_configs():
    import inspect

    from agentprm.bounds import PAIR_DELTA
    from agentprm.cli.train import targets as targets_cli
    from agentprm.loop import Run
    from agentprm.targets import TargetsConfig

    run = Run(load_config(CONFIGS / "smoke-tiny.yaml"), show=False)
    assert run.prm_config(1).reads == "answer"  # the paper's: the PRM reads reason + action
    for override in ("prm.reads=action", "prm.extra={reads: action}"):
        assert Run(load_config(CONFIGS / "smoke-tiny.yaml", [override]), show=False).prm_config(1).reads == "action"
    with pytest.raises(ConfigError, match="reads"):
        load_config(CONFIGS / "smoke-tiny.yaml", ["prm.reads=reason"])
    # one δ for Bradley–Terry pairs everywhere: the paper's 0.03
    assert PAIR_DELTA == 0.03
    assert run.targets_config(1).delta == TargetsConfig(rollouts=["r"], out="o").delta == PAIR_DELTA
    assert inspect.signature(targets_cli).parameters["delta"].default == PAIR_DELTA


def test_shaping_reaches_the_targets_config_only_when_set():
    from agentprm.loop import Run

    plain = Run(load_config(CONFIGS / "smoke-tiny.yaml"), show=False).targets_config(1)
    assert plain.shaping_value is None and not plain.values
    run = Run(load_config(CONFIGS / "smoke-tiny.yaml", ["targets.shaping_value=runs/v/model",
                                                        "targets.shaping_constant=2.5",
                                                        "targets.shaping_centre=median"]), show=False)
    cfg = run.targets_config(2)
    assert (cfg.shaping_value, cfg.shaping_constant, cfg.shaping_device) == ("runs/v/model", 2.5, run.cfg.device)
    assert cfg.shaping_centre == "median"
    with pytest.raises(ConfigError, match="shaping_constant"):
        load_config(CONFIGS / "smoke-tiny.yaml", ["targets.shaping_constant=0"])


def test_eval_mode_sets_how_pi_i_is_evaluated_and_nothing_else():
    """eval.mode changes how π_i acts in its greedy evaluations (held-out selection, the eval split); rollouts and
    Best-of-N keep acting.mode; unset, evaluations act as acting.mode says."""
    from agentprm.loop import Run

    def run(*overrides: str) -> Run:
        return Run(load_config(CONFIGS / "smoke-tiny.yaml", ["policy=tiny", *overrides]), show=False)

    acting = run().cfg.policy_args.mode
    assert acting != "score" and run()._greedy(0).config.mode == acting
    scored = run("eval.mode=score")
    assert scored._greedy(0).config.mode == "score" and scored._greedy(0).config.temperature == 0.0
    assert scored._lm(scored.policy_dir(0), 1.0).config.mode == acting  # what rollouts and Best-of-N sample with
    with pytest.raises(ConfigError, match="mode"):
        load_config(CONFIGS / "smoke-tiny.yaml", ["eval.mode=beam"])


def test_bon_mode_and_beta_reach_the_best_of_n_agent(monkeypatch):
    """eval.bon_mode sets how Best-of-N's candidates (and its greedy one) are drawn, eval.bon_beta its weight on
    log π; unset, Best-of-N samples as acting.mode says and the PRM alone chooses."""
    from agentprm.loop import Run
    from agentprm.train.prm import PRM

    class StubPRM:
        reads = "action"

    monkeypatch.setattr(PRM, "load", staticmethod(lambda *a, **k: StubPRM()))

    def bon(*overrides: str):
        return Run(load_config(CONFIGS / "smoke-tiny.yaml", ["policy=tiny", *overrides]), show=False)._bon_agent(0, 4)

    plain = bon()
    assert plain.beta == 0.0 and plain.greedy is None and plain.policy.config.mode != "score"
    agent = bon("eval.bon_mode=score", "eval.bon_beta=0.3", "eval.bon_greedy=true", "eval.bon_temperature=0.7")
    assert agent.beta == 0.3 and agent.policy.config.mode == "score" and agent.policy.config.temperature == 0.7
    assert agent.greedy.config.mode == "score" and agent.greedy.config.temperature == 0.0
    with pytest.raises(ConfigError, match="bon_beta"):
        load_config(CONFIGS / "smoke-tiny.yaml", ["eval.bon_beta=-1"])
