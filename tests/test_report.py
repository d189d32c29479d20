"""The report's per-iteration diagnostics read what each stage wrote (the DPO log is metrics.jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

from agentprm.report import _diagnostics


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
    assert row == "| iter1 | 3/10 | 0.250 | 40 | 0.800 | 0.300 | 0.050 | 5.0 | 0.03 | 0.200 | 0.75 |"
