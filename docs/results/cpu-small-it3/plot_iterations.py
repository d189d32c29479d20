"""Success per iteration of a cpu-small run, greedy as the loop evaluates: the held-out train games (which choose
the iteration to keep) and the eval split (valid_seen), by task type.
usage (repository root): python plot_iterations.py RUN_DIR OUT_PNG"""
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    run, out = Path(sys.argv[1]), sys.argv[2]
    kept = json.loads((run / "selected.json").read_text())["iteration"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, split, title in ((axes[0], "heldout", "held-out train games (selection)"),
                             (axes[1], "eval", "valid_seen (the reported test)")):
        its = sorted(int(p.name[2:]) for p in (run / split).glob("pi[0-9]*") if p.name[2:].isdigit())
        rows = [json.loads((run / split / f"pi{i}" / "summary.json").read_text()) for i in its]
        ax.plot(its, [100 * r["eval/success"] for r in rows], "k-o", lw=2,
                label=f"all ({rows[0]['eval/episodes']} games)")
        for t in rows[0]["per_task_type"]:
            ax.plot(its, [100 * r["per_task_type"][t]["success"] for r in rows], "--o", alpha=0.6,
                    label=f"{t} ({rows[0]['per_task_type'][t]['episodes']})")
        ax.axvline(kept, color="tab:green", ls=":", label=f"kept: π{kept}")
        ax.set(title=title, xlabel="iteration i (π_i; 0 = SFT)", xticks=its)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("success %, greedy")
    axes[1].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
