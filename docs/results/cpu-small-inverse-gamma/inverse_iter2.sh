#!/usr/bin/env bash
# Stop 27: InversePRM iteration 2 through the loop itself (method: inverse_prm). A copy of the score-mode run of the
# fp32 π0 (runs/it1s) whose iteration 1 is replaced by an InversePRM π1 trained by hand with the same recipe
# (its PRM, its DPO output, its held-out and valid_seen plays); the loop then runs iter2/rollouts (π1's, on the
# loop's iteration-2 games) -> iter2/inverse_prm (demos vs π0's and π1's rollouts, pooled) -> iter2/policy -> eval/pi2
# -> heldout/pi2 -> select. Run from the repository root. usage: inverse_iter2.sh PRM1 PI1_DIR PLAY1 GAMMA EPOCHS OUT
set -eux
PRM1=$1; PI1=$2; PLAY1=$3; GAMMA=$4; EPOCHS=$5; R=$6
I=${I:-runs/it1s}
rm -rf $R && cp -a $I $R
rm -rf $R/eval/*_bon* $R/iter1/targets $R/iter1/prm $R/iter1/policy $R/eval/pi1 $R/heldout/pi1 $R/selected.json
cp -a $PRM1 $R/iter1/prm && cp -a $PI1 $R/iter1/policy
cp -a $PLAY1/valid_seen $R/eval/pi1 && cp -a $PLAY1/heldout $R/heldout/pi1
python - "$R" "$GAMMA" "$EPOCHS" <<'PY'
import json, sys, yaml
r, gamma, epochs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
cfg = yaml.safe_load(open(f"{r}/config.yaml"))
cfg |= {"run_dir": r, "method": "inverse_prm", "iterations": 2}
cfg["inverse_prm"] = {"model": "policy", "gamma": gamma, "epochs": epochs, "lr": 3e-4, "batch_size": 16,
                      "warm_start": False,
                      "extra": {"max_transitions": 1024, "max_val_transitions": 256, "history_window": 4,
                                "max_length": 2048, "eval_batch_size": 64, "val_fraction": 0.2}}
cfg["eval"]["best_of"] = [1]  # Best-of-N of the kept π is not part of this measurement
yaml.safe_dump(cfg, open(f"{r}/config.yaml", "w"), sort_keys=False, allow_unicode=True)
# the plays' summaries as the loop writes them (stop 26's play.py wrote a shorter one; as run, select and report
# stopped on it, and these lines were then run by hand)
from agentprm.evaluation import summarize
from agentprm.trajectory import load_episodes
for stage, split in (("heldout/pi1", "train"), ("eval/pi1", "valid_seen")):
    old = json.load(open(f"{r}/{stage}/summary.json"))
    new = summarize(load_episodes([f"{r}/{stage}/trajectories.jsonl"]))
    new |= {"stage": stage, "iteration": 1, "split": split, "mode": "score", "wall_s": old["wall_s"]}
    json.dump(new, open(f"{r}/{stage}/summary.json", "w"), indent=1)
st = json.load(open(f"{r}/state.json"))
st["done"] = [d for d in st["done"] if d not in ("iter1/targets", "iter1/prm", "select")] + ["iter1/inverse_prm"]
for k in ("iter1/targets", "iter1/prm", "select"):
    st["seconds"].pop(k, None)
json.dump(st, open(f"{r}/state.json", "w"), indent=2)
PY
date
agentprm train --config $R/config.yaml --set run_dir=$R --force
date
