#!/usr/bin/env bash
# A third AgentPRM iteration of the cpu-small loop (configs/cpu-small.yaml as it is, with iterations=3; fp32 on a
# 2-core AVX2 box), resumed on a copy of the two-iteration run (runs/it2s: docs/results/cpu-small-it2/run.sh).
# Run from the repository root. As run: stopped after `select`, before Best-of-N of the kept π.
set -euo pipefail
I=${I:-runs/it2s}; R=${R:-runs/it3s}
cp -a $I $R && rm -rf $R/eval/*_bon*
# iteration 3: rollouts of π2 -> targets -> PRM_3 -> DPO π3 -> eval/pi3 (valid_seen) -> heldout/pi3 -> select
agentprm train --config $R/config.yaml --set run_dir=$R --set iterations=3 --force
cp $R/selected.json docs/results/cpu-small-it3/summaries/
python docs/results/cpu-small-it3/plot_iterations.py $R docs/results/cpu-small-it3/success-per-iteration.png
# after the fact, a diagnostic of the selection's noise: π0..π3 on 60 other train games no stage played
python docs/results/cpu-small-it3/second_heldout.py $R runs/it3s-ho2
cp runs/it3s-ho2/pi*.json docs/results/cpu-small-it3/summaries/second-heldout/
# (as run, the script wrote these lines as piI/summary.json and played through run_rollouts directly; it now plays
# through the loop's Run._play, the same agent, games and seed)
