#!/usr/bin/env bash
# Session 31, third part: the budget reference (5000 steps, equal training with the budget generator)
# with a copy of the 2700-scene decoder of chain2700.sh, calibrated at 1/2/4 views and benchmarked
# on the 120 held-out scenes, so that the recipe's pair is compared under the same decoder.
set -euo pipefail
cd "$(dirname "$0")/../../.."
. docs/results/budget_2h_s31/common.sh
stamp calib2700_ref_start
calibrate_copy $R/regress_more/regress.safetensors $R/decoder_own2700/local_decoder.safetensors own2700_ref 2
stamp bench2700_ref_start
bench120 s31_bench120_2700_ref "amodal_regressor@$R/regress_more/regress.safetensors?decoder=$R/own2700_ref/decoder.safetensors"
stamp done2700_ref
