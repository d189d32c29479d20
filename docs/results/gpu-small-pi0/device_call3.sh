# As run on the lent H100 machine (repository root, with .gpu/ carried: ../shared/wheelhouse/*.whl in .gpu/wheels,
# valid_seen.tar.xz and train.tar.xz, demos.jsonl.xz = the first run's demos, diag.py = sft_attention_diag.py beside this).
# Calls: 1) bash .gpu/call1.sh  2) bash .gpu/run.sh gpu-small 575 --config configs/gpu-small.yaml --set device=cuda  3) bash .gpu/call3.sh
set -u
t0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --target /root/site .gpu/wheels/*.whl
export PYTHONPATH=$PWD/src:/root/site PYTHONUNBUFFERED=1 COLUMNS=160
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=false
mkdir -p /root/alfworld /root/dg && tar -xJf .gpu/valid_seen.tar.xz -C /root/alfworld && export ALFWORLD_DATA=/root/alfworld
xz -dc .gpu/demos.jsonl.xz > /root/dg/demos.jsonl
python3 -c "from agentprm.scratch import build_scratch_model; build_scratch_model(['/root/dg/demos.jsonl'], 'medium', '/root/dg/base', 0)" > /dev/null 2>&1
echo "setup $(( $(date +%s) - t0 )) s"
timeout 300 python3 .gpu/diag.py /root/dg/demos.jsonl /root/dg/base /root/dg 150 20 2>&1 | grep '^{\|^full\|rror' | tee $OUT/diag.log
cp /root/dg/diag.json $OUT/ 2>/dev/null
echo "diag done at $(( $(date +%s) - t0 )) s"
timeout $(( 440 - ($(date +%s) - t0) )) python3 -m agentprm eval --policy /root/dg/pi0/model --split valid_seen --mode constrained --history -1 --max-new-tokens 24 --batch-size 128 --in-flight 128 --workers 15 --max-steps 30 --out $OUT/eval-pi0 2>&1 | grep -v "━" | tail -25
echo "end at $(( $(date +%s) - t0 )) s"
