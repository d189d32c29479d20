"""report.md of a training run: a table like the paper's Table 1 (one row per evaluated agent, success
per task type and #actions), stage timings, and the plots."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from agentprm.atomic import write_json

COLUMNS = ("All", "Pick", "Clean", "Heat", "Cool", "Look", "Pick2")


def _order(name: str) -> tuple[int, int]:
    m = re.match(r"pi(\d+)(?:_bon(\d+))?$", name)
    return (int(m.group(1)), int(m.group(2) or 1)) if m else (10**6, 0)


def collect(run_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    evals = sorted((run_dir / "eval").glob("*/summary.json"), key=lambda p: _order(p.parent.name))
    return [(p.parent.name, json.loads(p.read_text())) for p in evals]


def _cell(s: dict[str, Any], col: str) -> str:
    if col == "All":
        return f"{100 * s['eval/success']:.1f}"
    r = s["per_task_type"].get(col)
    return f"{100 * r['success']:.1f}" if r else "–"


def _label(name: str) -> str:
    i, n = _order(name)
    return f"π{i}" + (f" + Best-of-{n}" if n > 1 else "")


def write_report(run_dir: Path) -> Path:
    rows = collect(run_dir)
    lines = ["# AgentPRM run report", "", f"Run: `{run_dir}`", ""]
    if rows:
        split, n = rows[0][1].get("split", "?"), rows[0][1]["eval/episodes"]
        lines += [f"Success rate (%) on {split} ({n} games) and mean actions per episode.", "",
                  "| agent | " + " | ".join(COLUMNS) + " | #actions |",
                  "|---|" + "---:|" * (len(COLUMNS) + 1)]
        for name, s in rows:
            cells = " | ".join(_cell(s, c) for c in COLUMNS)
            lines.append(f"| {_label(name)} | {cells} | {s['eval/mean_actions']:.1f} |")
    state = run_dir / "state.json"
    if state.is_file():
        secs = json.loads(state.read_text())["seconds"]
        lines += ["", "## Wall-clock per stage", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v:.0f} |" for k, v in secs.items()]
    plots = sorted(p.relative_to(run_dir) for p in run_dir.glob("**/*.png"))
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    write_json(run_dir / "report.json", {name: s for name, s in rows})
    return path
