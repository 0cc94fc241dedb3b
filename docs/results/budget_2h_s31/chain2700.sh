#!/usr/bin/env bash
# Session 31, second part: the 1200-scene decoder of chain.sh cost the budget generator 0.24 mm
# at one view against the shipped decoder's copy (its validation BCE flat from step 5000 on, 0.22
# training against 0.33: too little data, not too few steps). So the decoder as the shipped one
# was made (2700 scenes, seed 5, 15 000 steps), on the budget generator's fields; the first 1200
# scenes' shards are chain.sh's (the shard folder is keyed by the generator). Calibrated at 1/2/4
# views, the generator only benchmarked on the 120 held-out scenes.
set -euo pipefail
cd "$(dirname "$0")/../../.."
R=runs/budget
stamp() { echo "$1 $(date -u +%s) $(date -u)" >> $R/s31_times.log; }
stamp synth2700_start
.venv/bin/amodalgen3d synth --out data/decoder_train --scenes 2700 --seed 5 --split train --workers 2 > $R/s31_synth2700.log 2>&1
stamp decoder2700_start
.venv/bin/amodalgen3d train --mode decoder --init $R/flow/flow.safetensors --scenes 2700 --steps 15000 \
  --threads 2 --out $R/decoder_own2700 > $R/s31_decoder2700.log 2>&1
stamp calib2700_start
mkdir -p $R/own2700_gen
cp $R/decoder_own2700/local_decoder.safetensors $R/own2700_gen/decoder.safetensors
.venv/bin/python docs/results/budget_2h_s31/calibrate_124.py $R/flow/flow.safetensors $R/own2700_gen/decoder.safetensors 2 > $R/s31_calib2700_gen.json
stamp bench2700_start
.venv/bin/amodalgen3d bench --split heldout --data data/heldout120 --scenes 120 --views 1,2,4 \
  --methods "amodalgen3d@$R/flow/flow.safetensors?decoder=$R/own2700_gen/decoder.safetensors" \
  --workers 2 --out $R/s31_bench120_2700 > $R/s31_bench120_2700.log 2>&1
stamp done2700
