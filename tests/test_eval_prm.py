"""`agentprm eval-prm`: any saved PRM scored on any targets folder, checked against an AUC and a pair accuracy
counted by hand from the PRM's own scores, through the Python API and the real entry point.

The turns are test_shaping's three episodes at γ = 0.5 (val_fraction 0, so every row is in train.parquet):
rows (s0,A) Q̂ 0.125, (s1,B) 0.5, (s2,C) 1, (s1,D) 0, (s0,F) 1; "won" is Q̂ > 0, so D is the one negative and
the AUC is the share of the four positives scored above it (ties count ½). Same-state pairs with |ΔQ̂| ≥ δ:
s0: F over A, s1: B over D.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from agentprm.errors import ConfigError, DataNotFoundError
from agentprm.targets import TargetsConfig, build_targets, read_rows, row_to_context
from agentprm.train.prm import PRM, evaluate_prm
from test_shaping import EP_A, EP_B, EP_C, write


@pytest.fixture()
def setup(tmp_path: Path, tiny_model: str) -> tuple[Path, Path]:
    rollouts = write(tmp_path / "roll.jsonl", [EP_A, EP_B, EP_C])
    build_targets(TargetsConfig(rollouts=[str(rollouts)], out=str(tmp_path / "t"), gamma=0.5, val_fraction=0.0))
    prm = PRM.from_spec(tiny_model, "cpu")  # a fresh head: scores that differ between turns, enough to rank
    prm.save(tmp_path / "prm")
    return tmp_path / "prm", tmp_path / "t"


def by_hand(prm_dir: Path, targets: Path) -> tuple[float, float]:
    prm = PRM.load(prm_dir, "cpu")
    rows = read_rows(targets / "train.parquet")
    z = {(r["observation"], r["action"]): prm.score([row_to_context(r)], [r["action"]])[0] for r in rows}
    assert sorted(z) == [("O0", "A"), ("O0", "F"), ("O1", "B"), ("O1", "D"), ("O2", "C")]
    neg = z["O1", "D"]
    pos = [z["O0", "A"], z["O1", "B"], z["O2", "C"], z["O0", "F"]]
    auc = sum(1.0 if p > neg else 0.5 if p == neg else 0.0 for p in pos) / 4
    pair_acc = ((z["O0", "F"] > z["O0", "A"]) + (z["O1", "B"] > z["O1", "D"])) / 2
    return auc, pair_acc


def test_metrics_match_hand_counts(setup: tuple[Path, Path]) -> None:
    prm_dir, targets = setup
    auc, pair_acc = by_hand(prm_dir, targets)
    m = evaluate_prm(prm_dir, targets, "train", batch_size=2, device="cpu")
    assert m["prm/val_rows"] == 5 and m["pairs"] == 2
    assert m["prm/auc"] == pytest.approx(auc) and m["prm/val_pair_acc"] == pytest.approx(pair_acc)
    assert evaluate_prm(prm_dir, targets, "all", device="cpu")["prm/auc"] == pytest.approx(auc)  # val is empty
    with pytest.raises(DataNotFoundError, match="no rows in the val split"):
        evaluate_prm(prm_dir, targets, "val", device="cpu")
    with pytest.raises(ConfigError, match="split"):
        evaluate_prm(prm_dir, targets, "test", device="cpu")


def agentprm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["agentprm", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_cli_writes_summary_and_plot_and_refuses_bad_input(setup: tuple[Path, Path], tmp_path: Path) -> None:
    prm_dir, targets = setup
    out = tmp_path / "eval"
    r = agentprm("eval-prm", "--prm", str(prm_dir), "--data", str(targets), "--split", "all", "--out", str(out),
                 "--device", "cpu")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    auc, pair_acc = by_hand(prm_dir, targets)
    assert summary["prm/auc"] == pytest.approx(auc) and summary["prm/val_pair_acc"] == pytest.approx(pair_acc)
    assert summary["split"] == "all" and (out / "calibration.png").stat().st_size > 0
    (tmp_path / "empty").mkdir()
    empty = str(tmp_path / "empty")
    for prm, data, split in ((str(prm_dir), empty, "val"), (str(prm_dir), str(targets), "test"),
                             (empty, str(targets), "all")):  # no targets, a bad split, no PRM
        r = agentprm("eval-prm", "--prm", prm, "--data", data, "--split", split)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
