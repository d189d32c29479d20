#!/usr/bin/env bash
# Stop 28: the README's main job, once, uninterrupted, on a 2-core AMD EPYC with native bf16 (AVX512-BF16), so that
# acting.cpu_bf16 and sft bf16_cpu take effect (they fall back to fp32 on the AVX2 box of stops 21-27). Run from the
# repository root on a fresh machine. Stopped by hand before the end of the session (see the results log for where).
set -euo pipefail
bash scripts/setup.sh
agentprm train --config configs/cpu-small.yaml            # run_dir: runs/cpu-small

# The same π0 played on the held-out games with fp32 acting (acting.cpu_bf16=false), to tell a bf16-trained π0
# from bf16 play: 25/60 against 26/60 under bf16 autocast.
# As run, by bon_prm.py's N=1 branch, a copy of greedy_heldout.py (Run._greedy, the loop's held-out jobs, the same
# workers, steps and in-flight) whose Best-of-N branch never ran; the copy is removed, and this is the same play:
python docs/results/cpu-small-bon-beta/greedy_heldout.py runs/cpu-small 0 runs/s28/ho-pi0-fp32 acting.cpu_bf16=false
