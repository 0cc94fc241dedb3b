#!/usr/bin/env bash
# Session 31, third part: the budget reference (5000 steps, equal training with the budget generator)
# with a copy of the 2700-scene decoder of chain2700.sh, calibrated at 1/2/4 views and benchmarked
# on the 120 held-out scenes, so that the recipe's pair is compared under the same decoder.
set -euo pipefail
cd "$(dirname "$0")/../../.."
R=runs/budget
stamp() { echo "$1 $(date -u +%s) $(date -u)" >> $R/s31_times.log; }
stamp calib2700_ref_start
mkdir -p $R/own2700_ref
cp $R/decoder_own2700/local_decoder.safetensors $R/own2700_ref/decoder.safetensors
.venv/bin/python docs/results/budget_2h_s31/calibrate_124.py $R/regress_more/regress.safetensors $R/own2700_ref/decoder.safetensors 2 > $R/s31_calib2700_ref.json
stamp bench2700_ref_start
.venv/bin/amodalgen3d bench --split heldout --data data/heldout120 --scenes 120 --views 1,2,4 \
  --methods "amodal_regressor@$R/regress_more/regress.safetensors?decoder=$R/own2700_ref/decoder.safetensors" \
  --workers 2 --out $R/s31_bench120_2700_ref > $R/s31_bench120_2700_ref.log 2>&1
stamp done2700_ref
