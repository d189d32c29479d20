#!/usr/bin/env bash
# A second AgentPRM iteration of the cpu-small loop (configs/cpu-small.yaml, fp32 on a 2-core AVX2 box), resumed on
# a copy of the score-mode run of one iteration (runs/it1s: the fp32 π0, iteration 1, held-out selection and valid_seen
# evaluations in score mode; README "On the 2-core CPU"). Run from the repository root.
set -euo pipefail
I=${I:-runs/it1s}; R=${R:-runs/it2s}
cp -a $I $R && rm -rf $R/eval/*_bon*
# iteration 2: rollouts of π1 -> targets -> PRM_2 -> DPO π2 -> eval/pi2 (valid_seen) -> heldout/pi2; the run's
# selection, done among π0 and π1, is stale with 2 iterations, so it runs again (loop.Run.stale_stages).
# As run: a watcher stopped it after eval/pi2 (from the code before the prefix cache of score mode), and a second
# invocation of the same command without --force (from commit 1cd9e48 on) ran heldout/pi2 and select; stopped after
# `select`, before Best-of-N of the kept π.
agentprm train --config $R/config.yaml --set run_dir=$R --set iterations=2 --force
cp $R/selected.json docs/results/cpu-small-it2/summaries/

# The same iteration with π acting in score mode in its rollouts and in the DPO step's sampler too
# (`acting.mode=score`: samples drawn from softmax(log π) over the admissible commands), on another copy of the
# one-iteration run. As run: the loop was cut off by a machine restart at DPO step 35 of 40 and resumed from its
# checkpoint by the same command; stopped after `select`. Figures: summaries-score-rollouts/ and
# prm2-score-rollouts-calibration.png (README: "A second iteration").
R2=${R2:-runs/it2r}
cp -a $I $R2 && rm -rf $R2/eval/*_bon*
agentprm train --config $R2/config.yaml --set run_dir=$R2 --set iterations=2 --set acting.mode=score --force
# how often the DPO step's 4 samples differ, constrained and in score mode (π1, the first 64 of the step's states)
python docs/results/cpu-small-it2/distinct_samples.py $R2/iter1/policy/model $R2/iter2/rollouts/trajectories.jsonl
