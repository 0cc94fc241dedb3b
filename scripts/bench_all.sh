#!/usr/bin/env bash
# The benchmark runs quoted in the README and the closing notes (about an hour on 2 cores; the ablations' training another 1.5 hours).
set -euo pipefail
cd "$(dirname "$0")/.."
amo=.venv/bin/amodalgen3d
$amo bench --split heldout --scenes 60 --views 1,2,4 --methods visible,convex_hull,support_hull,symmetry,tsdf \
  --out bench_out/baselines_posed
$amo bench --split heldout --scenes 60 --views 1,2,4 --methods amodalgen3d,amodal_regressor --out bench_out/learned_posed
$amo bench --combine bench_out/baselines_posed,bench_out/learned_posed --out bench_out/posed
$amo bench --split heldout --scenes 30 --views 2,4 --methods support_hull,amodalgen3d --unposed --out bench_out/unposed
$amo bench --poses --scenes 60 --out bench_out/poses
$amo bench --speed --views 1,4,8 --out bench_out/speed5
$amo bench --node --rate 30 --seconds 40 --objects 5 --out bench_out/node3
$amo bench --node --rate 30 --seconds 300 --objects 10 --out bench_out/soak
$amo bench --fuzz 3000 --out bench_out/fuzz
$amo bench --split heldout --scenes 30 --views 1,2,3,4,6,8 --workers 1 --methods amodalgen3d,support_hull,visible \
  --out bench_out/views_sweep
$amo bench --split heldout --no-depth-noise --scenes 30 --views 1,4 --workers 1 --methods amodalgen3d,support_hull,visible \
  --out bench_out/clean_depth
$amo bench --split heldout --scenes 40 --views 1,4 --workers 1 \
  --methods "amodalgen3d,amodalgen3d?steps=4,amodalgen3d?steps=4&samples=2" --out bench_out/steps
bash scripts/ablations.sh   # ablations at 500 training steps each, then:
$amo bench --combine runs/abl_full_500/bench,runs/abl_no_vwca_500/bench,runs/abl_mean_fusion_500/bench,\
runs/abl_no_scca_500/bench,runs/abl_no_gate_500/bench --out bench_out/ablations
