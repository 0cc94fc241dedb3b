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
R=runs/budget
stamp() { echo "$1 $(date -u +%s) $(date -u)" >> $R/s31_times.log; }
stamp synth_start
.venv/bin/amodalgen3d synth --out data/decoder_train --scenes 1200 --seed 5 --split train --workers 2 > $R/s31_synth.log 2>&1
stamp decoder_start
.venv/bin/amodalgen3d train --mode decoder --init $R/flow/flow.safetensors --scenes 1200 --steps 6000 \
  --threads 2 --out $R/decoder_own > $R/s31_decoder.log 2>&1
stamp calib_start
# a copy per network (calibration is stored in the decoder's file); the folder names the bench's label
mkdir -p $R/own_gen $R/own_ref
cp $R/decoder_own/local_decoder.safetensors $R/own_gen/decoder.safetensors
cp $R/decoder_own/local_decoder.safetensors $R/own_ref/decoder.safetensors
cal() {  # network, decoder copy, output
  .venv/bin/python docs/results/budget_2h_s31/calibrate_124.py "$1" "$2" 1 > "$3"
}
cal $R/flow/flow.safetensors $R/own_gen/decoder.safetensors $R/s31_calib_gen.json &
cal $R/regress_more/regress.safetensors $R/own_ref/decoder.safetensors $R/s31_calib_ref.json &
wait
stamp bench_start
.venv/bin/amodalgen3d bench --split heldout --data data/heldout120 --scenes 120 --views 1,2,4 \
  --methods "amodalgen3d@$R/flow/flow.safetensors?decoder=$R/own_gen/decoder.safetensors,amodal_regressor@$R/regress_more/regress.safetensors?decoder=$R/own_ref/decoder.safetensors" \
  --workers 2 --out $R/s31_bench120 > $R/s31_bench120.log 2>&1
stamp done
