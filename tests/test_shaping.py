"""Process reward shaping (§4): the formula by hand, value targets, shaped targets of a stub value model,
the value model (a PRM that reads the state) and the commands end to end on a tiny model.

Hand values use γ = 0.5 and a stub V_ref by observation: V(O0) = 0.2, V(O1) = 0.4, V(O2) = 0.6.

  ep_a won,  T=3: O0 -A-> O1 -B-> O2 -C->   returns γ^(T−1−t): 0.25, 0.5, 1
      terms γV(s′) − V(s): 0.5·0.4 − 0.2 = 0,  0.5·0.6 − 0.4 = −0.1,  0 − 0.6 = −0.6 (V(s_T) = 0)
      y = 0.25, 0.4, 0.4
  ep_b lost, T=2: O0 -A-> O1 -D->            returns 0, 0; terms 0, −0.4;  y = 0, −0.4
  ep_c won,  T=1: O0 -F->                    return 1; term −0.2;        y = 0.8

Rows, mean y over visits (q_mc: Eq. 1's Q̂): (s0, A) (0.25 + 0)/2 = 0.125 (q_mc 0.125); (s1, B) 0.4 (0.5);
(s2, C) 0.4 (1); (s1, D) −0.4 (0); (s0, F) 0.8 (1). Squashing with c = 2.2: sorted y = −0.4, 0.125, 0.4,
0.4, 0.8, so (numpy's linear percentiles) q25 = 0.125, q75 = 0.4, IQR 0.275, k = 2.2/0.275 = 8; mean y
= 1.325/5 = 0.265; q = σ(8·(y − 0.265)) = σ(−1.12), σ(1.08), σ(1.08), σ(−5.32), σ(4.28). Centred on the
median y = 0.4 instead: q = σ(8·(y − 0.4)) = σ(−2.2), σ(0), σ(0), σ(−6.4), σ(3.2).

Value targets of the same episodes, one row per state: V̂(s0) = (0.25 + 0 + 1)/3, V̂(s1) = (0.5 + 0)/2,
V̂(s2) = 1.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch

from agentprm.contexts import contexts_from_episode
from agentprm.errors import ConfigError
from agentprm.shaping import shaped_returns, shaping_terms, squash
from agentprm.targets import TargetsConfig, build_targets, pair_key, read_rows, state_key
from agentprm.train.prm import PRM, PRMConfig, train_prm
from agentprm.trajectory import Episode, Step, TrajectoryWriter

GAMMA, C = 0.5, 2.2
V = {"O0": 0.2, "O1": 0.4, "O2": 0.6}


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class StubValue:
    """V_ref(s) by observation; records the actions it was given (a value model gets none)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def score(self, contexts, actions, batch_size=16, reasons=None):
        self.calls += [(c.observation, a) for c, a in zip(contexts, actions, strict=True)]
        return [V[c.observation] for c in contexts]


def episode(eid: str, turns: list[tuple[str, str]], won: bool) -> Episode:
    steps = [Step(observation=obs, admissible_actions=["A", "B", "C", "D", "F"], action=act) for obs, act in turns]
    steps[-1].done, steps[-1].reward = True, float(won)
    return Episode(episode_id=eid, game_id="g", split="train", task_type="pick_and_place", task="do it",
                   steps=steps, won=won)


EP_A = episode("a", [("O0", "A"), ("O1", "B"), ("O2", "C")], won=True)
EP_B = episode("b", [("O0", "A"), ("O1", "D")], won=False)
EP_C = episode("c", [("O0", "F")], won=True)


def write(path: Path, episodes: list[Episode]) -> Path:
    with TrajectoryWriter(path, fsync=False) as w:
        for ep in episodes:
            w.write(ep)
    return path


def config(tmp_path: Path, out: str, **kw) -> TargetsConfig:
    rollouts = write(tmp_path / "roll.jsonl", [EP_A, EP_B, EP_C])
    return TargetsConfig(rollouts=[str(rollouts)], out=str(tmp_path / out), gamma=GAMMA, val_fraction=0.0, **kw)


def row_of(rows: list[dict], ep: Episode, t: int) -> dict:
    (row,) = [r for r in rows if r["key"] == pair_key(contexts_from_episode(ep)[t], ep.steps[t].action)]
    return row


def test_shaping_formula_by_hand() -> None:
    assert shaping_terms([0.2, 0.4, 0.6], GAMMA) == pytest.approx([0.0, -0.1, -0.6])
    assert shaped_returns([0.2, 0.4, 0.6], 1.0, GAMMA) == pytest.approx([0.25, 0.4, 0.4])
    assert shaped_returns([0.2, 0.4], 0.0, GAMMA) == pytest.approx([0.0, -0.4])
    assert shaped_returns([0.2], 1.0, GAMMA) == pytest.approx([0.8])
    assert shaped_returns([0.0, 0.0, 0.0], 1.0, GAMMA) == pytest.approx([0.25, 0.5, 1.0])  # V = 0: Eq. 1
    q, centre, k = squash([0.125, 0.4, 0.4, -0.4, 0.8], C)
    assert (centre, k) == (pytest.approx(0.265), pytest.approx(8.0))
    assert q == pytest.approx([sigmoid(x) for x in (-1.12, 1.08, 1.08, -5.32, 4.28)])
    assert squash([0.3, 0.3], C) == ([0.5, 0.5], pytest.approx(0.3), 1.0)  # IQR 0: k = 1, as released
    q, centre, k = squash([0.125, 0.4, 0.4, -0.4, 0.8], C, "median")
    assert (centre, k) == (pytest.approx(0.4), pytest.approx(8.0))
    assert q == pytest.approx([sigmoid(x) for x in (-2.2, 0.0, 0.0, -6.4, 3.2)])


def test_shaped_targets_by_hand(tmp_path: Path) -> None:
    stub = StubValue()
    summary = build_targets(config(tmp_path, "out", shaping_value="stub", shaping_constant=C), value_model=stub)
    assert sorted(stub.calls) == [("O0", ""), ("O1", ""), ("O2", "")]  # each state once, no action
    rows = read_rows(tmp_path / "out" / "train.parquet")
    assert len(rows) == 5
    expect = [(EP_A, 0, -1.12, 0.125, 2), (EP_A, 1, 1.08, 0.5, 1), (EP_A, 2, 1.08, 1.0, 1),
              (EP_B, 1, -5.32, 0.0, 1), (EP_C, 0, 4.28, 1.0, 1)]
    for ep, t, z, q_mc, visits in expect:
        r = row_of(rows, ep, t)
        assert (r["q"], r["q_mc"], r["visits"]) == (pytest.approx(sigmoid(z)), pytest.approx(q_mc), visits)
    assert summary["targets/kind"] == "shaped" and summary["targets/shaping/value_model"] == "stub"
    got = [summary[f"targets/shaping/{k}"] for k in ("k", "y_mean", "y_min", "y_max")]
    assert got == pytest.approx([8.0, 0.265, -0.4, 0.8])
    pairs = read_rows(tmp_path / "out" / "pairs_train.parquet")  # pairs come from the shaped q
    assert sorted((p["chosen"], p["rejected"]) for p in pairs) == [("B", "D"), ("F", "A")]
    median = build_targets(config(tmp_path, "median", shaping_value="stub", shaping_constant=C,
                                  shaping_centre="median"), value_model=stub)
    rows = read_rows(tmp_path / "median" / "train.parquet")
    for ep, t, z in [(EP_A, 0, -2.2), (EP_A, 1, 0.0), (EP_B, 1, -6.4), (EP_C, 0, 3.2)]:
        assert row_of(rows, ep, t)["q"] == pytest.approx(sigmoid(z))
    got = [median[f"targets/shaping/{k}"] for k in ("centre", "y_centre", "y_mean", "k")]
    assert got == ["median", pytest.approx(0.4), pytest.approx(0.265), pytest.approx(8.0)]
    assert "sigmoid(k*(y - median y))" in median["note"] and "sigmoid(k*(y - mean y))" in summary["note"]


def test_value_targets_by_hand_and_plain_targets_unchanged(tmp_path: Path) -> None:
    summary = build_targets(config(tmp_path, "v", values=True))
    rows = {r["key"]: r for r in read_rows(tmp_path / "v" / "train.parquet")}
    s = [state_key(c) for c in contexts_from_episode(EP_A)]
    assert set(rows) == set(s) and {r["action"] for r in rows.values()} == {""}
    assert [rows[k]["q"] for k in s] == pytest.approx([1.25 / 3, 0.25, 1.0])
    assert [rows[k]["visits"] for k in s] == [3, 2, 1] and rows[s[0]]["q_mc"] == rows[s[0]]["q"]
    assert summary["targets/kind"] == "values" and read_rows(tmp_path / "v" / "pairs_train.parquet") == []
    chains = read_rows(tmp_path / "v" / "episodes_train.parquet")
    assert sorted(len(c["keys"]) for c in chains) == [1, 2, 3] and set(chains[0]["keys"]) <= set(s)
    plain = build_targets(config(tmp_path, "q"))
    q_rows = read_rows(tmp_path / "q" / "train.parquet")
    assert plain["targets/kind"] == "q" and all(r["q"] == r["q_mc"] for r in q_rows)
    assert row_of(q_rows, EP_A, 0)["q"] == 0.125 and "targets/shaping/k" not in plain
    with pytest.raises(ConfigError, match="exclude each other"):
        build_targets(config(tmp_path, "x", values=True, shaping_value="stub"), value_model=StubValue())


def test_a_value_model_reads_the_prompt_alone(tiny_model: str) -> None:
    value = PRM.from_spec(tiny_model, device="cpu", max_length=512, reads="state")
    with torch.no_grad():
        torch.nn.init.normal_(value.head.weight, generator=torch.Generator().manual_seed(0), std=0.5)
    ctx = contexts_from_episode(EP_A)
    assert value.texts(ctx[:1], ["A"]) == value.prompts(ctx[:1])  # no answer after the prompt
    z = value.logits(ctx, ["A", "B", "C"])
    assert value.logits(ctx, ["", "", ""]) == z  # the action is not read
    assert len(set(z)) == 3
    with torch.no_grad():  # the score is read at the prompt's last token
        assert value(*value.collate(value.token_ids(value.prompts(ctx[:1])))).item() == pytest.approx(z[0], abs=1e-5)


def test_reads_must_match_the_kind_of_targets(tmp_path: Path) -> None:
    build_targets(config(tmp_path, "v", values=True))
    build_targets(config(tmp_path, "q"))
    with pytest.raises(ConfigError, match="reads='answer' on value targets"):
        PRMConfig(data=str(tmp_path / "v"), out=str(tmp_path / "o")).validate()
    with pytest.raises(ConfigError, match="reads='state' on state–action targets"):
        PRMConfig(data=str(tmp_path / "q"), out=str(tmp_path / "o"), reads="state").validate()


def agentprm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["agentprm", *args], capture_output=True, text=True, timeout=600, env=os.environ)


def test_value_model_then_shaped_targets_through_the_cli(tiny_model: str, tmp_path: Path) -> None:
    roll = write(tmp_path / "roll.jsonl", [EP_A, EP_B, EP_C])
    r = agentprm("targets", "--rollouts", str(roll), "--out", str(tmp_path / "v"), "--values", "--gamma", "0.5",
                 "--val-fraction", "0")
    assert r.returncode == 0, r.stderr
    r = agentprm("train-prm", "--data", str(tmp_path / "v"), "--model", tiny_model, "--out", str(tmp_path / "vm"),
                 "--reads", "state", "--epochs", "2", "--lr", "1e-3", "--batch-size", "2")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "vm" / "model" / "prm.json").read_text())["reads"] == "state"
    r = agentprm("targets", "--rollouts", str(roll), "--out", str(tmp_path / "s"), "--shaping-value",
                 str(tmp_path / "vm"), "--shaping-constant", "3", "--gamma", "0.5", "--val-fraction", "0")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["targets/kind"] == "shaped" and summary["targets/shaping/constant"] == 3.0
    rows = read_rows(tmp_path / "s" / "train.parquet")
    assert len(rows) == 5 and all(0.0 < r["q"] < 1.0 for r in rows)
    # a shaped PRM trains on the squashed q and is validated against the unshaped outcome label
    summary = train_prm(PRMConfig(data=str(tmp_path / "s"), out=str(tmp_path / "sp"), model=tiny_model, epochs=1,
                                  lr=1e-3, batch_size=2, progress=False))
    assert summary["prm/train_loss"] is not None
    # bad input: one line, non-zero exit, nothing written
    r = agentprm("targets", "--rollouts", str(roll), "--out", str(tmp_path / "bad"), "--shaping-value",
                 str(tmp_path / "s"))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "no PRM" in r.stderr
    r = agentprm("targets", "--rollouts", str(roll), "--out", str(tmp_path / "bad"), "--shaping-value",
                 str(tmp_path / "sp"))
    assert r.returncode != 0 and "not a value model" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    r = agentprm("train-policy", "--policy", tiny_model, "--prm", str(tmp_path / "vm"), "--states", str(roll),
                 "--out", str(tmp_path / "pi1"), "--steps", "1")
    assert r.returncode != 0 and "reads the state alone" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_value_model_is_refused_where_actions_are_judged(tiny_model: str) -> None:
    from agentprm.agents.best_of_n import BestOfNAgent

    value = PRM.from_spec(tiny_model, device="cpu", max_length=512, reads="state")
    with pytest.raises(ConfigError, match="reads the state alone"):
        BestOfNAgent(policy=None, prm=value, n=2)
