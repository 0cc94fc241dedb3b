#!/usr/bin/env bash
# Session 32, as run (from the repository's root): the 2-hour recipe's files calibrated and put in
# place as the shipped ones, then the README's runs re-measured with them. The calibrations ran
# before this, four at once (one thread each, each on its own copies under runs/ship2h/):
#   each network with a copy of the decoder, every count of CALIBRATION_VIEWS:
#     calibrate(runs/ship2h/flow.safetensors, decoder=runs/ship2h/dec_gen.safetensors)
#     calibrate(runs/ship2h/regress.safetensors, decoder=runs/ship2h/dec_ref.safetensors)
#   each network alone at 1, 2 and 4 views (`calibrate COPY --views 1,2,4`):
#     runs/ship2h/flow_net.safetensors, runs/ship2h/regress_net.safetensors
# (copies of runs/budget/flow/flow.safetensors, runs/budget/regress_more/regress.safetensors and
# runs/budget/decoder_own2700/local_decoder.safetensors).
set -euo pipefail
cd "$(dirname "$0")/../../.."
amo=.venv/bin/amodalgen3d
w=amodalgen3d_ros/weights
S=runs/ship2h
stamp() { echo "$1 $(date -u +%s) $(date -u)" >> $S/times.log; }
cp $S/flow_net.safetensors $w/amodalgen3d_flow.safetensors
cp $S/regress_net.safetensors $w/amodal_regressor.safetensors
.venv/bin/python docs/results/shipped_2h_s32/assemble.py $w/amodal_local_decoder.safetensors \
  $w/amodalgen3d_flow.safetensors $S/flow.safetensors $S/dec_gen.safetensors \
  $w/amodal_regressor.safetensors $S/regress.safetensors $S/dec_ref.safetensors > $S/assemble.log
bench() {  # out, then bench's arguments
  local out=$1; shift
  stamp "$out"
  $amo bench --split heldout --workers 2 --out $S/$out "$@" > $S/$out.log 2>&1
}
M="amodalgen3d?decoder=1,amodal_regressor?decoder=1"
bench posed_120 --data data/heldout120 --scenes 120 --views 1,2,4 --methods "$M"
bench views --data data/heldout120 --scenes 30 --views 1,2,3,4,5,6,7,8 --methods "$M"
bench unposed --data data/heldout120 --scenes 30 --views 2,4 --unposed --methods "$M"
bench clean --data data/heldout_clean --scenes 30 --views 1,4 --no-depth-noise --methods "$M"
bench hypotheses --data data/heldout120 --scenes 30 --views 1,2,4 --methods "amodalgen3d?hypotheses=4&decoder=1"
stamp done
