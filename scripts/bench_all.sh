#!/usr/bin/env bash
# The benchmark runs quoted in the README and the closing notes (about 20 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
amo=.venv/bin/amodalgen3d
$amo bench --split heldout --scenes 60 --views 1,2,4 --methods visible,convex_hull,support_hull,symmetry,tsdf \
  --out bench_out/baselines_posed
$amo bench --split heldout --scenes 60 --views 1,2,4 --methods amodalgen3d,amodal_regressor --out bench_out/learned_posed
$amo bench --combine bench_out/baselines_posed,bench_out/learned_posed --out bench_out/posed
$amo bench --split heldout --scenes 30 --views 2,4 --methods support_hull,amodalgen3d --unposed --out bench_out/unposed
$amo bench --poses --scenes 60 --out bench_out/poses
$amo bench --speed --views 1,4,8 --out bench_out/speed
$amo bench --node --rate 30 --seconds 60 --objects 5 --out bench_out/node
