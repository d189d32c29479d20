"""report.md of a training run: a table like the paper's Table 1 (one row per evaluated agent, success
per task type, #actions, non-admissible rate), the held-out selection, per-iteration diagnostics (Q̂,
PRM, policy step), stage timings and the plots, embedded with relative links so the report renders
where it lies (and in a copy beside its PNGs)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from agentprm.atomic import save_figure, write_json, write_text
from agentprm.evaluation import read_summary

COLUMNS = ("All", "Pick", "Clean", "Heat", "Cool", "Look", "Pick2")
DEMO_KEYS = ("eval/episodes", "eval/won", "eval/success", "eval/mean_actions")  # the demos line reads these


def _order(name: str) -> tuple[int, int]:
    m = re.match(r"pi(\d+)(?:_bon(\d+))?$", name)
    return (int(m.group(1)), int(m.group(2) or 1)) if m else (10**6, 0)


def collect(run_dir: Path, folder: str = "eval") -> list[tuple[str, dict[str, Any]]]:
    evals = sorted((run_dir / folder).glob("*/summary.json"), key=lambda p: _order(p.parent.name))
    return [(p.parent.name, read_summary(p)) for p in evals]


def _finished(s: dict[str, Any]) -> int:
    """Episodes of an evaluation that finished (failed ones have no outcome; see evaluation.py)."""
    return s["eval/episodes"] - s.get("eval/failed", 0)


def _cell(s: dict[str, Any], col: str) -> str:
    """Success % over the finished episodes, from the counts, so a summary.json written before failed
    episodes were left out of the rate reads the same way."""
    if col == "All":
        won, finished = s["eval/won"], _finished(s)
    else:
        r = s["per_task_type"].get(col)
        if not r:
            return "–"
        won, finished = r["won"], r["episodes"] - r.get("failed", 0)
    return f"{100 * won / finished:.1f}" if finished else "–"


def _label(name: str) -> str:
    i, n = _order(name)
    return f"π{i}" + (f" + Best-of-{n}" if n > 1 else "")


def _table(rows: list[tuple[str, dict[str, Any]]], what: str) -> list[str]:
    """The agents' table; a "failed" column and a warning per agent whenever an episode failed."""
    split, n = rows[0][1].get("split", "?"), rows[0][1]["eval/episodes"]
    failed = [(name, s) for name, s in rows if s.get("eval/failed", 0)]
    extra = " failed |" if failed else ""
    lines = [f"Success rate (%) on {what or split} ({n} games), mean actions per episode, share of actions the "
             "game did not accept (empty answers included), and how many answers were empty.", "",
             "| agent | " + " | ".join(COLUMNS) + f" | won |{extra} #actions | non-admissible | empty |",
             "|---|" + "---:|" * (len(COLUMNS) + 4 + bool(failed))]
    for name, s in rows:
        cells = " | ".join(_cell(s, c) for c in COLUMNS)
        fail = f" {s.get('eval/failed', 0)} |" if failed else ""
        lines.append(f"| {_label(name)} | {cells} | {s['eval/won']}/{_finished(s)} |{fail} "
                     f"{s['eval/mean_actions']:.1f} | {100 * s['eval/non_admissible_rate']:.1f} % | "
                     f"{s.get('eval/empty_answers', '–')} |")
    for name, s in failed:
        lines += ["", f"> **warning: {_label(name)}: {s['eval/failed']} of {s['eval/episodes']} episodes failed (the "
                  "environment could not serve them, even after retries); its success is over the "
                  f"{_finished(s)} that finished, not counting them as losses. Rerun to retry them.**"]
    return lines


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics log (one JSON object per line); a torn last line is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _dagger_rounds(run_dir: Path) -> list[Path]:
    """The run's finished DAgger rounds (`dagger{r}/` with the round's SFT summary), in round order; the
    loop's π0 is the last one's policy when there are any."""
    rounds = [p for p in run_dir.glob("dagger*") if p.name[6:].isdigit() and (p / "summary.json").is_file()]
    return sorted(rounds, key=lambda p: int(p.name[6:]))


def _imitation(run_dir: Path) -> list[str]:
    """Where π0 came from: the demonstrator's games (won ones are the SFT data) and each SFT run
    (π0, then any DAgger rounds), so a weak π0 can be traced to its data or its training."""
    demos_summary = run_dir / "demos" / "summary.json"
    demos = read_summary(demos_summary, DEMO_KEYS) if demos_summary.is_file() else {}
    sfts = [p for p in [run_dir / "pi0", *_dagger_rounds(run_dir)] if (p / "summary.json").is_file()]
    if not demos and not sfts:
        return []
    lines = ["", "## Demonstrations and imitation (π0)", ""]
    if demos:
        lines.append(f"Demonstrator `{demos.get('policy_id', '?')}`: won {demos['eval/won']}/{_finished(demos)} train "
                     f"games ({100 * demos['eval/success']:.1f} %, {demos['eval/mean_actions']:.1f} actions per game); "
                     "the won episodes are the SFT data.")
    if sfts:
        if len(sfts) > 1:
            lines += ["", "A DAgger round first lets the policy before it play train games with the expert beside "
                      "it (learner: games it won, and the share of its turns where it did what the expert would "
                      "have done), then retrains on the demos plus the relabelled states."]
        lines += ["", "| SFT | learner won | agrees with expert | examples | tokens seen | train loss (first → last) "
                  "| val loss | tokens/s | seconds |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for p in sfts:
            m = _read(p / "summary.json").get("metrics", {})
            r = _read(p / "rollouts" / "summary.json")  # a DAgger round's learner rollouts (none for pi0)

            def f(key: str, fmt: str = "{:.3f}", m: dict = m) -> str:
                return fmt.format(m[key]) if m.get(key) is not None else "–"

            won = f"{r['eval/won']}/{_finished(r)}" if "eval/won" in r else "–"
            agree = f"{100 * r['eval/expert_agreement']:.1f} %" if "eval/expert_agreement" in r else "–"
            lines.append(f"| {p.name} | {won} | {agree} | {f('sft/train_examples', '{:,}')} | "
                         f"{f('sft/tokens', '{:,}')} | {f('sft/train_loss_first')} → {f('sft/train_loss')} | "
                         f"{f('sft/val_loss')} | {f('sft/tokens_per_s', '{:,.0f}')} | {f('sft/wall_s', '{:.0f}')} |")
    return lines


INVERSE_KEYS = ("inverse/val_loss", "inverse/val_accuracy", "inverse/val_expert_reward", "inverse/val_learner_reward")


def _won(summary: dict[str, Any]) -> str:
    """Won / finished episodes of a played folder's summary."""
    return f"{summary.get('eval/won')}/{summary.get('eval/finished')}"


def _diagnostics(run_dir: Path) -> list[str]:
    """Per iteration: what the rollouts, Q̂ targets, PRM and policy step saw (the figures to read when
    success does not move)."""
    rows: list[str] = []
    inverse: list[str] = []
    for it in sorted(run_dir.glob("iter*"), key=lambda p: int(p.name[4:]) if p.name[4:].isdigit() else 0):
        t, p = _read(it / "targets" / "summary.json"), _read(it / "prm" / "summary.json")
        # a step re-run after a resume is logged again: keep its last record
        log = {h["step"]: h for h in _read_jsonl(it / "policy" / "metrics.jsonl") if "dpo/pairs" in h}
        steps = list(log.values())
        r, b = _read(it / "rollouts" / "summary.json"), _read(it / "branches" / "summary.json")
        played = f"{t.get('targets/episodes_won')}/{t.get('targets/episodes_used')}"
        if not t:  # InversePRM iterations build no targets: the rollouts' own counts
            played = _won(r)
        if b:  # same-state branches: the targets read both, shown apart
            played = f"{_won(r)} + {_won(b)} branches"
        if "inverse/val_loss" in p:
            inverse.append(f"| {it.name} | {played} | {p.get('inverse/data/train_expert_transitions', '–')} | "
                           f"{p.get('inverse/data/train_learner_transitions', '–')} | "
                           + " | ".join("–" if p.get(k) is None else f"{p[k]:.3f}" for k in INVERSE_KEYS) + " |")

        def f(x: Any, fmt: str = ".3f") -> str:
            return "–" if x is None else format(x, fmt)

        pairs = sum(h["dpo/pairs"] for h in steps) / len(steps) if steps else None
        margin = [h["dpo/rewards/margin"] for h in steps if "dpo/rewards/margin" in h]
        gap = [h["prm/pair_gap"] for h in steps if "prm/pair_gap" in h]
        kl = steps[-1].get("policy/kl") if steps else None
        trained_on = "–" if t.get("targets/train/rows") is None else f"{t['targets/train/rows']} rows"
        if p.get("config", {}).get("loss") == "bradley-terry":  # it read the pairs, not the rows
            trained_on = f"{p.get('prm/data/train_pairs', '–')} pairs"
        pair_acc = f(p.get("prm/val_pair_acc"), ".2f")
        if p.get("prm/data/val_pairs") is not None:
            pair_acc += f" ({p['prm/data/val_pairs']})"
        rows.append(f"| {it.name} | {played} | {f(t.get('targets/mean_q'))} | {trained_on} | "
                    f"{f(p.get('prm/auc'))} | {pair_acc} | {f(p.get('prm/val_bce'))} | {f(p.get('prm/ece'))} | "
                    f"{f(pairs, '.1f')} | {f(sum(gap) / len(gap) if gap else None, '.2g')} | "
                    f"{f(sum(margin) / len(margin) if margin else None)} | {f(kl, '.2f')} |")
    if not rows:
        return []
    out = ["", "## Per iteration", "",
            "Rollouts won / used (and their same-state branches, which the targets also read), mean Q̂, what the PRM "
            "trained on (Q̂ rows; same-state pairs for a Bradley–Terry PRM); PRM validation AUC (won vs lost, held-out "
            "games), its accuracy on the held-out same-state pairs (two actions at one state whose Q̂ differ by ≥ δ; "
            "how many in brackets: what Best-of-N and the policy step need), soft BCE and calibration error; policy "
            "step: preference pairs per step, the PRM's mean score gap "
            "between the chosen and rejected answers (near 0: the pairs carry no signal), mean DPO margin, and the "
            "KL to the previous policy at the last step.", "",
            "| iteration | rollouts won | mean Q̂ | PRM trained on | PRM AUC | PRM pair acc | PRM val BCE | PRM ECE "
            "| pairs/step | PRM pair gap | DPO margin | final KL |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|", *rows]
    if inverse:
        out += ["", "InversePRM iterations build no Q̂ targets and train their reward model on demos vs rollouts: "
                "rollouts won / used (read for this table only; InversePRM never trains on outcomes), its training "
                "transitions, and on held-out games its loss (Eq. 9), the share of expert transitions rewarded above "
                "learner ones, and the mean reward r = Q(s,a) − γ·Q(s′,a′) of each side.", "",
                "| iteration | rollouts won | expert transitions | learner transitions | val loss | val accuracy "
                "| expert reward | learner reward |", "|---|---:|---:|---:|---:|---:|---:|---:|", *inverse]
    return out


def plot_success_by_agent(rows: list[tuple[str, dict[str, Any]]], path: Path) -> None:
    """Grouped bars: success per task type for every evaluated agent (π0, π1, ..., Best-of-N)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(9, 3.8))
    width = 0.8 / len(rows)
    x = np.arange(len(COLUMNS))
    for k, (name, s) in enumerate(rows):
        vals = [float(v) if v != "–" else 0.0 for v in (_cell(s, c) for c in COLUMNS)]
        ax.bar(x + (k - (len(rows) - 1) / 2) * width, vals, width, label=_label(name))
    ax.set_xticks(x, COLUMNS)
    ax.set_ylabel("success %")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8, ncols=min(4, len(rows)))
    ax.set_title(f"success per task type ({rows[0][1]['eval/episodes']} {rows[0][1].get('split', '')} games)")
    fig.tight_layout()
    save_figure(fig, path)


def plot_best_of_n(rows: list[tuple[str, dict[str, Any]]], path: Path) -> bool:
    """Success against N for the policy Best-of-N was run on (N=1: that policy, greedy)."""
    bon = [(_order(n), s) for n, s in rows if _order(n)[1] > 1]
    if not bon:
        return False
    i = bon[0][0][0]
    points = [(1, s["eval/success"]) for n, s in rows if _order(n) == (i, 1)] + [
        (k[1], s["eval/success"]) for k, s in bon if k[0] == i]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ns, vals = zip(*sorted(points), strict=True)
    ax.plot(ns, [100 * v for v in vals], "o-")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("N (samples per turn, the PRM picks)")
    ax.set_ylabel("success %")
    ax.set_title(f"Best-of-N with π{i} (N=1: greedy π{i})")
    fig.tight_layout()
    save_figure(fig, path)
    return True


def write_report(run_dir: Path) -> Path:
    rows = collect(run_dir)
    held = collect(run_dir, "heldout")
    lines = ["# AgentPRM run report", "", f"Run: `{run_dir}`", ""]
    rounds = _dagger_rounds(run_dir)
    if rounds:  # the loop's π0 is then the last round's policy, not the SFT on demos alone
        last = rounds[-1].name
        lines += [f"π0 below is the policy after DAgger round {last[6:]} (`{last}/model`); the SFT on the demos "
                  "alone is `pi0/model`.", ""]
    plots: list[str] = []
    if rows:
        lines += _table(rows, "")
        plot_success_by_agent(rows, run_dir / "success_by_agent.png")
        plots.append("success_by_agent.png")
        if plot_best_of_n(rows, run_dir / "best_of_n.png"):
            plots.append("best_of_n.png")
    selected = _read(run_dir / "selected.json")
    if held:
        lines += ["", "## Held-out train games (choosing the iteration to keep)", "",
                  *_table(held, "held-out train games")]
        if selected:
            lines += ["", f"Kept: π{selected['iteration']} (best held-out success; Best-of-N runs on it)."]
    lines += _imitation(run_dir)
    lines += _diagnostics(run_dir)
    state = run_dir / "state.json"
    if state.is_file():
        data = json.loads(state.read_text())
        secs, attempts = data["seconds"], data.get("attempts", {})
        lines += ["", "## Wall-clock per stage (all attempts summed)", "", "| stage | seconds | attempts |",
                  "|---|---:|---:|"]
        lines += [f"| {k} | {v:.0f} | {attempts.get(k, 1)} |" for k, v in secs.items()]
        lines += [f"| **total** | **{sum(secs.values()):.0f}** | |"]
    plots += sorted(str(p.relative_to(run_dir)) for p in run_dir.glob("iter*/prm/calibration.png"))
    plots += sorted(str(p.relative_to(run_dir)) for p in run_dir.glob("iter*/targets/q_histogram.png"))
    plots += sorted(str(p.relative_to(run_dir)) for p in run_dir.glob("iter*/policy/reward_hacking.png"))
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    path = run_dir / "report.md"
    write_text(path, "\n".join(lines) + "\n")
    write_json(run_dir / "report.json", {"eval": dict(rows), "heldout": dict(held), "selected": selected})
    return path
