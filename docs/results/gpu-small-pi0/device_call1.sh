# As run on the lent H100 machine (repository root, with .gpu/ carried: ../shared/wheelhouse/*.whl in .gpu/wheels,
# valid_seen.tar.xz and train.tar.xz, demos.jsonl.xz = the first run's demos, diag.py = sft_attention_diag.py beside this).
# Calls: 1) bash .gpu/call1.sh  2) bash .gpu/run.sh gpu-small 575 --config configs/gpu-small.yaml --set device=cuda  3) bash .gpu/call3.sh
set -u
t0=$(date +%s)
# smoke on CUDA first: stops the call early if the GPU path breaks
rm -rf /root/runs/smoke; bash .gpu/run.sh smoke 150 --config configs/smoke-tiny.yaml --set device=cuda --set data.workers=4 --set model=scratch:tiny || exit 1
left=$(( 575 - ($(date +%s) - t0) ))
bash .gpu/run.sh gpu-small $left --config configs/gpu-small.yaml --set device=cuda
ls -la $OUT
