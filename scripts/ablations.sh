#!/usr/bin/env bash
# Ablations in the paper's manner, at equal short training: each variant removes one module from
# the generator (x0-predicting flow), trains from the same seed on the same data for STEPS steps,
# is calibrated with its own copy of the shipped local decoder (calibrate --decoder) and
# benchmarked on the held-out split; then one table of all variants. One variant at a time on two
# threads (about 30-50 min each); resumable.
#   bash scripts/ablations.sh                              # all
#   STEPS=1000 SCENES=30 bash scripts/ablations.sh full no_vwca
#   then: .venv/bin/amodalgen3d bench --paired runs/abl_no_vwca_1000/bench/bench.json:amodalgen3d@...,...
set -euo pipefail
cd "$(dirname "$0")/.."
amo=.venv/bin/amodalgen3d
steps=${STEPS:-1000}
scenes=${SCENES:-30}
threads=${THREADS:-2}
data=${DATA:-data/heldout120}  # scene i is the same in any heldout set of seed 1234 (one seed per scene)
declare -A flags=([full]="" [full_seed1]="--seed 1" [no_vwca]="--no-vwca" [mean_fusion]="--view-fusion mean"
                  [no_scca]="--no-scca" [no_gate]="--no-gate" [no_prior]="--no-prior")
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(full full_seed1 no_prior no_vwca mean_fusion no_scca no_gate)
benches=()
for n in "${names[@]}"; do
  out=runs/abl_${n}_${steps}
  w=$out/flow.safetensors
  dec=$out/decoder.safetensors  # a copy: an ablation never writes the shipped file
  benches+=("$out/bench")
  [ -f "$out/bench/bench.json" ] && continue
  # shellcheck disable=SC2086
  [ -f "$w" ] || $amo train --mode flow --predict x0 --steps "$steps" --threads "$threads" --out "$out" ${flags[$n]} \
    > "$out.log" 2>&1
  [ -f "$dec" ] || cp amodalgen3d_ros/weights/amodal_local_decoder.safetensors "$dec"
  $amo calibrate "$w" --decoder "$dec" >> "$out.log" 2>&1
  $amo bench --split heldout --data "$data" --scenes "$scenes" --views 1,2,4 --workers "$threads" \
    --methods "amodalgen3d@$w?decoder=$dec" --out "$out/bench" >> "$out.log" 2>&1
done
$amo bench --combine "$(IFS=,; echo "${benches[*]}")" --out "${OUT:-bench_out/ablations}"
