#!/usr/bin/env bash
# Session 31: the 2-hour recipe's last part, a local decoder of its own. Session 30's generator
# (runs/budget/flow, 1000 steps from the 4000-step reference) used a copy of the shipped decoder,
# trained on the shipped generator's fields for 42 min. Here: a smaller decoder set (1200 scenes,
# the same seed 5 as the shipped one's, so its first 1200 scenes), the decoder trained on the budget
# generator's fields for 6000 steps, then both budget networks (the generator, and the reference
# given the same 5000 steps: runs/budget/regress_more) calibrated with it at 1/2/4 views and
# benchmarked on the 120 held-out scenes. Run from the repository's root, after session 30's chain.
set -euo pipefail
cd "$(dirname "$0")/../../.."
. docs/results/budget_2h_s31/common.sh
stamp synth_start
train_decoder 1200 6000 $R/decoder_own
stamp calib_start
calibrate_copy $R/flow/flow.safetensors $R/decoder_own/local_decoder.safetensors own_gen 1 &
calibrate_copy $R/regress_more/regress.safetensors $R/decoder_own/local_decoder.safetensors own_ref 1 &
wait
stamp bench_start
bench120 s31_bench120 "amodalgen3d@$R/flow/flow.safetensors?decoder=$R/own_gen/decoder.safetensors,amodal_regressor@$R/regress_more/regress.safetensors?decoder=$R/own_ref/decoder.safetensors"
stamp done
