"""How good is a PRM as a predictor of success: rank quality (AUC) and calibration (reliability bins,
expected calibration error, a reliability-diagram PNG). Pure functions over plain lists."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agentprm.atomic import save_figure


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """Area under the ROC curve by the rank (Mann–Whitney) formula, ties counting one half:
    (Σ ranks of positives − P(P+1)/2) / (P·N). None when only one class is present."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    i = 0
    while i < len(s):  # average rank over each run of equal scores
        j = i
        while j + 1 < len(s) and s[order[j + 1]] == s[order[i]]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def reliability_bins(probs: Sequence[float], labels: Sequence[float], n_bins: int = 10) -> list[dict[str, Any]]:
    """Equal-width bins of predicted probability: count, mean prediction, mean label. Empty bins are
    kept with None means (not NaN, which is not valid JSON)."""
    p, y = np.asarray(probs, dtype=float), np.asarray(labels, dtype=float)
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    bins = []
    for b in range(n_bins):
        sel = idx == b
        n = int(sel.sum())
        bins.append({"lo": b / n_bins, "hi": (b + 1) / n_bins, "count": n,
                     "mean_p": float(p[sel].mean()) if n else None,
                     "frac_pos": float(y[sel].mean()) if n else None})
    return bins


def expected_calibration_error(bins: Sequence[dict[str, Any]]) -> float:
    """Σ_bins (count/N)·|mean prediction − fraction won|."""
    total = sum(b["count"] for b in bins)
    return float(sum(b["count"] / total * abs(b["mean_p"] - b["frac_pos"]) for b in bins if b["count"]))


def plot_calibration(bins: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Reliability diagram (PNG). Uses the Agg canvas directly, so no global backend is switched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    full = [b for b in bins if b["count"]]
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.bar([b["lo"] for b in bins], [b["frac_pos"] or 0.0 for b in bins], width=bins[0]["hi"] - bins[0]["lo"],
           align="edge", alpha=0.4, edgecolor="k", label="fraction won")
    ax.plot([b["mean_p"] for b in full], [b["frac_pos"] for b in full], "o-", label="bin mean")
    for b in full:
        ax.annotate(str(b["count"]), (b["lo"] + 0.05, min(b["frac_pos"] + 0.02, 0.97)), ha="center", fontsize=7)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="PRM score σ(z)", ylabel="fraction of episodes won", title=title)
    ax.legend(loc="upper left", fontsize=8)
    save_figure(fig, path)
