#!/usr/bin/env bash
# As run on the lent H100 machine (repository root, with .gpu/ carried: ../shared/wheelhouse/*.whl in .gpu/wheels,
# valid_seen.tar.xz and train.tar.xz, demos.jsonl.xz = the first run's demos, diag.py = sft_attention_diag.py beside this).
# Calls: 1) bash .gpu/call1.sh  2) bash .gpu/run.sh gpu-small 575 --config configs/gpu-small.yaml --set device=cuda  3) bash .gpu/call3.sh
# usage: bash .gpu/run.sh NAME BUDGET_S [agentprm train args...]  (device machine, repo root; run in /root/runs/NAME)
set -u
name=$1; budget=$2; shift 2
t0=$(date +%s)
if [ ! -f /root/site/.ok ]; then
  python3 -m pip install -q --no-index --no-deps --target /root/site .gpu/wheels/*.whl && touch /root/site/.ok
fi
export PYTHONPATH=$PWD/src:/root/site PYTHONUNBUFFERED=1 COLUMNS=160
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false
if [ ! -f /root/alfworld/.ok ]; then
  mkdir -p /root/alfworld && tar -xJf .gpu/train.tar.xz -C /root/alfworld && tar -xJf .gpu/valid_seen.tar.xz -C /root/alfworld && touch /root/alfworld/.ok
fi
export ALFWORLD_DATA=/root/alfworld
echo "setup $(( $(date +%s) - t0 )) s; $(nproc) cores; $(nvidia-smi --query-gpu=name --format=csv,noheader)"
left=$(( budget - ($(date +%s) - t0) - 20 ))
timeout --signal=INT $left python3 -m agentprm train --set run_dir=/root/runs/$name "$@" > $OUT/$name.log 2>&1
rc=$?
grep -v "━" $OUT/$name.log | tail -120
echo "train rc $rc after $(( $(date +%s) - t0 )) s"
(cd /root/runs && tar --exclude='*.safetensors' --exclude='*.bin' --exclude='checkpoint-*' --exclude='*.pt' --exclude='*.pth' -cJf $OUT/$name.tar.xz $name)
exit $rc
