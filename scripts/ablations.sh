#!/usr/bin/env bash
# Ablations in the paper's manner, at equal (short) training: each run removes one module from the
# shipped generator (x0-predicting flow), trains from the same seed on the same data, is calibrated
# the same way as the shipped model (96 calibration scenes, a level per view count, the default
# 2 x 8 sampler) and benchmarked on the held-out split. Runs one variant at a time on two threads:
# two side by side on one thread each took 2.1-2.7 s a step each, one on two threads 1.1-1.8 s (18-30 min
# for 1000; then calibration 17-25 min and bench 1-3 min, measured in sessions 17-19; no_prior and
# full_seed1 first prepare their own shards, 6 min).
#   bash scripts/ablations.sh                         # all, one after another (resumable)
#   STEPS=1000 SCENES=30 bash scripts/ablations.sh full no_vwca   # full_seed1: the full model from seed 1
#   then: .venv/bin/amodalgen3d bench --combine runs/abl4_full_1000/bench,... --out docs/results/ablations_calibrated
#         .venv/bin/python scripts/ablation_table.py --bench docs/results/ablations_calibrated/bench.json full no_scca ...
#   DECODER=1 bash scripts/ablations.sh full no_prior   # with the shipped local decoder: each run's own copy of
#         it, calibrated with that run's network (calibrate --decoder), benchmarked into RUN/bench_decoder
#         then: .venv/bin/amodalgen3d bench --combine docs/results/ablations_decoder,runs/abl4_X_1000/bench_decoder
#               --out docs/results/ablations_decoder   (a combined run keeps the runs it came from)
#               .venv/bin/python scripts/ablation_table.py --record --val-loss docs/results/ablations_decoder/val_loss.json X
set -uo pipefail
cd "$(dirname "$0")/.."
amo=.venv/bin/amodalgen3d
steps=${STEPS:-1000}
scenes=${SCENES:-30}
threads=${THREADS:-2}
data=${DATA:-data/heldout120}  # scene i is the same in any heldout set of seed 1234 (one seed per scene)
declare -A flags=([full]="" [full_seed1]="--seed 1" [no_vwca]="--no-vwca" [mean_fusion]="--view-fusion mean" [no_scca]="--no-scca"
                  [no_gate]="--no-gate" [no_prior]="--no-prior")
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(full full_seed1 no_prior no_vwca mean_fusion no_scca no_gate)
for n in "${names[@]}"; do
  out=runs/abl4_${n}_${steps}  # abl4: x0 generator (abl3_: velocity generator with the prior; abl_: before the prior)
  w=$out/flow.safetensors
  bench_dir=$out/bench
  [ "${DECODER:-0}" = 1 ] && bench_dir=$out/bench_decoder
  [ -f "$bench_dir/bench.json" ] && continue
  # shellcheck disable=SC2086
  [ -f "$w" ] || $amo train --mode flow --predict x0 --steps "$steps" --threads "$threads" --out "$out" ${flags[$n]} > "$out.log" 2>&1
  if [ "${DECODER:-0}" = 1 ]; then
    dec=$out/decoder.safetensors  # a copy: the shipped file is never written by an ablation
    [ -f "$dec" ] || cp amodalgen3d_ros/weights/amodal_local_decoder.safetensors "$dec"
    $amo calibrate "$w" --decoder "$dec" >> "$out.log" 2>&1
    $amo bench --split heldout --data "$data" --scenes "$scenes" --views 1,2,4 --workers "$threads" \
      --methods "amodalgen3d@$w?decoder=$dec" --out "$bench_dir" >> "$out.log" 2>&1
  else
    .venv/bin/python -m amodalgen3d_ros.calibrate "$w" >> "$out.log" 2>&1
    $amo bench --split heldout --data "$data" --scenes "$scenes" --views 1,2,4 --workers 1 \
      --methods "amodalgen3d@$w" --out "$bench_dir" >> "$out.log" 2>&1
    .venv/bin/python scripts/ablation_table.py --steps "$steps" --record "$n"  # its val. losses, kept in docs/
  fi
done
