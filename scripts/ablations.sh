#!/usr/bin/env bash
# Ablations in the paper's manner, at equal (short) training: each run removes one module from the
# generator, is calibrated the same way as the shipped model, and benchmarked on the held-out split.
#   bash scripts/ablations.sh            # all, one after another on one core (resumable)
#   STEPS=500 bash scripts/ablations.sh full no_vwca
set -uo pipefail
cd "$(dirname "$0")/.."
amo=.venv/bin/amodalgen3d
steps=${STEPS:-500}
declare -A flags=([full]="" [no_vwca]="--no-vwca" [mean_fusion]="--view-fusion mean" [no_scca]="--no-scca"
                  [no_gate]="--no-gate" [no_prior]="--no-prior")
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(full no_prior no_vwca no_scca no_gate mean_fusion)
for n in "${names[@]}"; do
  out=runs/abl3_${n}_${steps}  # abl3: the generator reads the 2D prior's outputs (abl_: before the prior)
  w=$out/flow.safetensors
  if [ ! -f "$out/bench/bench.json" ]; then
    # the published ablation table was made with the velocity-predicting generator
    # shellcheck disable=SC2086
    $amo train --mode flow --predict velocity --steps "$steps" --threads 1 --out "$out" ${flags[$n]} > "$out.log" 2>&1
    .venv/bin/python -m amodalgen3d_ros.calibrate "$w" >> "$out.log" 2>&1
    $amo bench --split heldout --data data/heldout --scenes 60 --views 1,2,4 --workers 1 \
      --methods "amodalgen3d@$w" --out "$out/bench" >> "$out.log" 2>&1
  fi
done
