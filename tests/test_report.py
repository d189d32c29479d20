"""report.md: per-iteration diagnostics read what each stage wrote (the DPO log is metrics.jsonl), and
the agents table reports failed episodes as failed."""

from __future__ import annotations

import json
from pathlib import Path

from agentprm.report import _diagnostics, _table


def test_iteration_row_reads_targets_prm_and_the_dpo_log(tmp_path: Path) -> None:
    it = tmp_path / "iter1"
    for d in ("targets", "prm", "policy"):
        (it / d).mkdir(parents=True)
    (it / "targets" / "summary.json").write_text(json.dumps(
        {"targets/episodes_won": 3, "targets/episodes_used": 10, "targets/mean_q": 0.25, "targets/train/rows": 40}))
    (it / "prm" / "summary.json").write_text(json.dumps({"prm/auc": 0.8, "prm/val_bce": 0.3, "prm/ece": 0.05}))
    log = [{"step": 1, "dpo/pairs": 4.0, "dpo/rewards/margin": 0.1, "prm/pair_gap": 0.02, "policy/kl": 0.5},
           {"step": 2, "dpo/pairs": 6.0, "dpo/rewards/margin": 0.3, "prm/pair_gap": 0.04, "policy/kl": 0.75}]
    (it / "policy" / "metrics.jsonl").write_text("\n".join(map(json.dumps, log)) + "\n{\"step\": 3, \"dpo")  # torn
    row = _diagnostics(tmp_path)[-1]
    # pairs (4+6)/2 = 5.0, gap (0.02+0.04)/2 = 0.03, margin (0.1+0.3)/2 = 0.2, KL at the last step 0.75
    assert row == "| iter1 | 3/10 | 0.250 | 40 rows | 0.800 | – | 0.300 | 0.050 | 5.0 | 0.03 | 0.200 | 0.75 |"
    # a Bradley–Terry PRM trained on the same-state pairs, not the rows: its row says so, and the held-out pairs
    (it / "prm" / "summary.json").write_text(json.dumps(
        {"prm/auc": 0.46, "prm/data/train_pairs": 84, "prm/data/val_pairs": 25, "prm/val_pair_acc": 0.56,
         "config": {"loss": "bradley-terry"}}))
    assert _diagnostics(tmp_path)[-1].startswith("| iter1 | 3/10 | 0.250 | 84 pairs | 0.460 | 0.56 (25) |")
    # same-state branches: the targets counted rollouts and branches together; the row shows each
    for d, won, n in (("rollouts", 2, 6), ("branches", 1, 4)):
        (it / d).mkdir(exist_ok=True)
        (it / d / "summary.json").write_text(json.dumps({"eval/won": won, "eval/finished": n}))
    assert _diagnostics(tmp_path)[-1].startswith("| iter1 | 2/6 + 1/4 branches | 0.250 |")



def test_an_inverse_prm_iteration_gets_its_reward_models_figures_not_dashes(tmp_path: Path) -> None:
    """InversePRM iterations write no targets: the rollouts give won/used, the InversePRM summary its own row."""
    it = tmp_path / "iter1"
    for d in ("rollouts", "prm", "policy"):
        (it / d).mkdir(parents=True)
    (it / "rollouts" / "summary.json").write_text(json.dumps({"eval/won": 7, "eval/finished": 20}))
    (it / "prm" / "summary.json").write_text(json.dumps(
        {"inverse/val_loss": 0.61, "inverse/val_accuracy": 0.7, "inverse/val_expert_reward": 0.12,
         "inverse/val_learner_reward": -0.05, "inverse/data/train_expert_transitions": 300,
         "inverse/data/train_learner_transitions": 250}))
    (it / "policy" / "metrics.jsonl").write_text(json.dumps({"step": 1, "dpo/pairs": 3.0, "policy/kl": 0.2}) + "\n")
    lines = _diagnostics(tmp_path)
    assert lines[lines.index("## Per iteration") + 6] == "| iter1 | 7/20 | – | – | – | – | – | – | 3.0 | – | – | 0.20 |"
    assert lines[-1] == "| iter1 | 7/20 | 300 | 250 | 0.610 | 0.700 | 0.120 | -0.050 |"


def _summary(won: int, episodes: int, failed: int, success: float) -> dict:
    return {"split": "valid_seen", "eval/episodes": episodes, "eval/won": won, "eval/failed": failed,
            "eval/success": success, "eval/mean_actions": 5.0, "eval/non_admissible_rate": 0.0,
            "per_task_type": {"Pick": {"episodes": episodes, "failed": failed, "won": won, "success": success,
                                       "mean_actions": 5.0}}}


def test_report_table_shows_failed_episodes_apart_from_losses() -> None:
    rows = [("pi0", _summary(4, 4, 0, 1.0)), ("pi1", _summary(3, 4, 1, 1.0))]
    lines = _table(rows, "")
    assert "| won | failed | #actions |" in lines[2]
    assert lines[4].startswith("| π0 | 100.0 | 100.0 | – |") and "| 4/4 | 0 |" in lines[4]
    assert lines[5].startswith("| π1 | 100.0 | 100.0 | – |") and "| 3/3 | 1 |" in lines[5]  # not 75 %, not 3/4
    (warning,) = [line for line in lines if "warning" in line]
    assert "π1: 1 of 4 episodes failed" in warning and "over the 3 that finished" in warning
    clean = _table(rows[:1], "")
    assert "failed" not in "\n".join(clean) and clean[-1].endswith("| 4/4 | 5.0 | 0.0 % | – |")  # old: no count
    assert _table([("pi0", {**rows[0][1], "eval/empty_answers": 2})], "")[-1].endswith("| 0.0 % | 2 |")


def test_report_reads_a_summary_written_when_failed_episodes_counted_as_losses() -> None:
    old = _summary(5, 8, 3, 5 / 8)  # eval/success of the old summarize: failed counted as lost
    del old["per_task_type"]["Pick"]["failed"]  # per type, the old summary cannot tell them apart
    line = _table([("pi0", old)], "")[4]
    assert line.startswith("| π0 | 100.0 | 62.5 |") and "| 5/5 | 3 |" in line


def test_report_has_the_demos_and_sft_rows_and_embeds_its_plots(tmp_path: Path) -> None:
    from agentprm.report import write_report

    (tmp_path / "demos").mkdir()
    (tmp_path / "demos" / "summary.json").write_text(json.dumps(
        {"policy_id": "expert:handcoded", "eval/episodes": 10, "eval/won": 9, "eval/failed": 0,
         "eval/success": 0.9, "eval/mean_actions": 12.5}))
    (tmp_path / "pi0").mkdir()
    (tmp_path / "pi0" / "summary.json").write_text(json.dumps({"metrics": {
        "sft/train_examples": 1045, "sft/tokens": 4335210, "sft/train_loss_first": 6.5959, "sft/train_loss": 0.1489,
        "sft/val_loss": None, "sft/tokens_per_s": 4224.9, "sft/wall_s": 1026.1}}))
    (tmp_path / "dagger1" / "rollouts").mkdir(parents=True)  # a DAgger round: the learner's rollouts, then SFT
    (tmp_path / "dagger1" / "rollouts" / "summary.json").write_text(json.dumps(
        {"eval/episodes": 300, "eval/failed": 2, "eval/won": 41, "eval/expert_agreement": 0.3625}))
    (tmp_path / "dagger1" / "summary.json").write_text(json.dumps({"metrics": {
        "sft/train_examples": 2045, "sft/tokens": 1000000, "sft/train_loss_first": 0.3, "sft/train_loss": 0.2,
        "sft/val_loss": 0.25, "sft/tokens_per_s": 4000.0, "sft/wall_s": 250.0}}))
    (tmp_path / "eval" / "pi0").mkdir(parents=True)
    (tmp_path / "eval" / "pi0" / "summary.json").write_text(json.dumps(_summary(1, 2, 0, 0.5)))
    (tmp_path / "state.json").write_text(json.dumps(
        {"done": ["demos", "sft"], "seconds": {"demos": 10.0, "sft": 30.5}, "attempts": {"sft": 2}}))
    text = write_report(tmp_path).read_text()
    assert "won 9/10 train games (90.0 %, 12.5 actions per game)" in text
    assert "| pi0 | – | – | 1,045 | 4,335,210 | 6.596 → 0.149 | – | 4,225 | 1026 |" in text
    assert "π0 below is the policy after DAgger round 1 (`dagger1/model`)" in text and "A DAgger round first" in text
    assert "| dagger1 | 41/298 | 36.2 % | 2,045 | 1,000,000 | 0.300 → 0.200 | 0.250 | 4,000 | 250 |" in text
    assert "| demos | 10 | 1 |" in text and "| sft | 30 | 2 |" in text  # seconds summed over attempts
    assert "![success_by_agent.png](success_by_agent.png)" in text and (tmp_path / "success_by_agent.png").is_file()
