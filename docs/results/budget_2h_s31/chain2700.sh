#!/usr/bin/env bash
# Session 31, second part: the 1200-scene decoder of chain.sh cost the budget generator 0.24 mm
# at one view against the shipped decoder's copy (its validation BCE flat from step 5000 on, 0.22
# training against 0.33: too little data, not too few steps). So the decoder as the shipped one
# was made (2700 scenes, seed 5, 15 000 steps), on the budget generator's fields; the first 1200
# scenes' shards are chain.sh's (the shard folder is keyed by the generator). Calibrated at 1/2/4
# views, the generator only benchmarked on the 120 held-out scenes.
set -euo pipefail
cd "$(dirname "$0")/../../.."
. docs/results/budget_2h_s31/common.sh
stamp synth2700_start
train_decoder 2700 15000 $R/decoder_own2700
stamp calib2700_start
calibrate_copy $R/flow/flow.safetensors $R/decoder_own2700/local_decoder.safetensors own2700_gen 2
stamp bench2700_start
bench120 s31_bench120_2700 "amodalgen3d@$R/flow/flow.safetensors?decoder=$R/own2700_gen/decoder.safetensors"
stamp done2700
