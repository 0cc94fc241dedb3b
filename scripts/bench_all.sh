#!/usr/bin/env bash
# The benchmark runs quoted in the README's Results (about 3 hours on 2 cores; the ablations
# another 1.5-2 hours). Scenes are made per index, so the first 30 of data/heldout120 are the
# 30-scene runs' scenes.
set -euo pipefail
cd "$(dirname "$0")/.."
amo=.venv/bin/amodalgen3d
$amo bench --split heldout --data data/heldout120 --scenes 120 --views 1,2,4 \
  --methods visible,convex_hull,support_hull,symmetry,tsdf --out bench_out/baselines_120
$amo bench --split heldout --data data/heldout120 --scenes 120 --views 1,2,4 \
  --methods "amodalgen3d?hypotheses=4&decoder=0,amodal_regressor?decoder=0" --out bench_out/learned_120
# with the local decoder (the shipped networks' default since session 21): the bar's table
$amo bench --split heldout --data data/heldout120 --scenes 120 --views 1,2,4 \
  --methods "amodalgen3d?decoder=1,amodal_regressor?decoder=1" --out bench_out/decoder_120
$amo bench --combine bench_out/baselines_120,bench_out/learned_120 --out bench_out/posed_120
$amo bench --split heldout --data data/heldout120 --scenes 30 --views 1,2,3,4,6,8 \
  --methods "amodalgen3d?decoder=0,amodal_regressor?decoder=0,support_hull" --out bench_out/views_sweep
$amo bench --split heldout --data data/heldout120 --scenes 30 --views 2,4 --unposed \
  --methods "amodalgen3d?decoder=0,amodal_regressor?decoder=0,support_hull" --out bench_out/unposed
$amo bench --split heldout --no-depth-noise --scenes 30 --views 1,4 \
  --methods "amodalgen3d?decoder=0,amodal_regressor?decoder=0,support_hull" --out bench_out/clean_depth
$amo bench --poses --split heldout --data data/heldout120 --scenes 60 --out bench_out/poses
# quiet machine for these: nothing else running
$amo bench --speed --views 1,4 --repeats 7 --out bench_out/speed
$amo bench --node --rate 30 --seconds 40 --objects 5 --out bench_out/node
$amo bench --node --rate 30 --seconds 300 --objects 10 --out bench_out/soak
$amo bench --fuzz 3000 --out bench_out/fuzz
STEPS=1000 SCENES=30 bash scripts/ablations.sh  # seven runs, 1000 training steps each, then:
$amo bench --combine runs/abl4_full_1000/bench,runs/abl4_full_seed1_1000/bench,runs/abl4_no_prior_1000/bench,runs/abl4_no_vwca_1000/bench,runs/abl4_mean_fusion_1000/bench,\
runs/abl4_no_scca_1000/bench,runs/abl4_no_gate_1000/bench --out bench_out/ablations
