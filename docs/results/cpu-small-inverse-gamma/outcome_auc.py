"""How well PRMs rank turns by outcome on train games that none of them trained on: AUC of σ(Q(s,a)) against
"this episode was won" over every turn, and accuracy on same-state pairs whose Monte-Carlo Q̂ differ. For an
InversePRM this reads outcomes only to measure it; it never trained on them. One `agentprm eval-prm --split train`
per PRM (`train.prm.evaluate_prm`), gathered into one resumable JSON.
The turns: TARGETS, written by `agentprm targets --rollouts ... --val-fraction 0` from the loop's greedy plays
of its held-out games (train games kept out of the demos, the rollouts and every PRM's data).
usage (repository root): python docs/results/cpu-small-inverse-gamma/outcome_auc.py TARGETS OUT.json PRM..."""
import json
import sys
import time
from pathlib import Path

from agentprm.train.prm import evaluate_prm


def main() -> None:
    targets, out, prms = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    result = json.loads(out.read_text()) if out.is_file() else {}  # resumable: a PRM already measured is kept
    for path in prms:
        if path in result:
            continue
        t0 = time.time()
        m = evaluate_prm(path, targets, "train", batch_size=64, device="cpu", progress=True)
        keep = ("prm/auc", "prm/val_pair_acc", "prm/val_rows", "prm/brier", "pairs")
        result[path] = {k: m[k] for k in keep if k in m} | {"wall_s": round(time.time() - t0, 1)}
        print(path, json.dumps(result[path]), flush=True)
        out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
