#!/usr/bin/env bash
# The benchmark records the docs quote, one folder per benchmark under docs/results/ (about 3 hours
# on 2 cores; the ablations another 4-5 hours: scripts/ablations.sh). Scenes are made per index,
# so the first 30 of data/heldout120 are the 30-scene runs' scenes.
set -euo pipefail
cd "$(dirname "$0")/.."
amo=.venv/bin/amodalgen3d
out=${OUT:-docs/results}
learned="amodalgen3d,amodal_regressor"
$amo bench --split heldout --data data/heldout120 --scenes 120 --views 1,2,4 \
  --methods visible,convex_hull,support_hull,symmetry,tsdf --out "$out/baselines_120"
$amo bench --split heldout --data data/heldout120 --scenes 120 --views 1,2,4 --methods "$learned" --out "$out/posed_120"
$amo bench --paired "$out/posed_120/bench.json:amodalgen3d,$out/posed_120/bench.json:amodal_regressor" --out "$out/posed_120"
$amo bench --split heldout --data data/heldout120 --scenes 30 --views 1,2,3,4,5,6,7,8 \
  --methods "$learned,support_hull" --out "$out/views"
$amo bench --split heldout --data data/heldout120 --scenes 30 --views 2,4 --unposed \
  --methods "$learned,support_hull" --out "$out/unposed"
$amo bench --split heldout --no-depth-noise --scenes 30 --views 1,4 --methods "$learned,support_hull" \
  --out "$out/clean_depth"
$amo bench --split heldout --data data/heldout120 --scenes 30 --views 1,2,4 --methods "amodalgen3d?hypotheses=4" \
  --out "$out/hypotheses"
if [ -n "${REAL_SHAPES:-}" ]; then  # the collections of the README's "Real scanned shapes", checked out under it
  real=(--shapes "$REAL_SHAPES/kit:middle=0.05-0.09" --shapes "$REAL_SHAPES/stable_hope_objects"
        --shapes "$REAL_SHAPES/stable_scanned_objects" --plain-table 0.5)
  $amo bench --split heldout --data data/real48 --scenes 48 --views 1,2,4 "${real[@]}" \
    --methods "$learned,support_hull" --out "$out/real48"
  $amo bench --split heldout --data data/real48 --scenes 48 --views 2,4 --unposed "${real[@]}" \
    --methods "$learned" --out "$out/real48_unposed"
  $amo bench --split heldout --data data/real48_clean --scenes 48 --views 1,4 --no-depth-noise "${real[@]}" \
    --methods "$learned" --out "$out/real48_clean"
fi
$amo bench --poses --split heldout --data data/heldout120 --scenes 60 --out "$out/poses"
$amo bench --odometry --scenes 6 --take-rate 5 --plain-table 0.5 --out "$out/odometry"
$amo bench --prior amodalgen3d_ros/weights/amodal_prior.safetensors --data data/heldout120 --scenes 60 --out "$out/prior"
# quiet machine for these: nothing else running
for run in 1 2 3; do $amo bench --speed --views 1,4 --repeats 7 --out "$out/speed/run$run"; done
$amo bench --node --rate 30 --seconds 40 --objects 5 --out "$out/node"
$amo bench --node --rate 30 --seconds 300 --objects 10 --out "$out/soak"
$amo bench --fuzz 3000 --out "$out/fuzz"
$amo bench --fuzz 600 --same-stamp --out "$out/fuzz_same_stamp"
# the node on a moving camera's stream (docs/results/stream/<name>.json is each run's stream_bench.json)
$amo bench --node --stream --objects 4 --plain-table 0 --out "$out/stream/s4_textured"
$amo bench --node --stream --objects 4 --plain-table 1 --out "$out/stream/s4_plain"
$amo bench --node --stream --objects 10 --plain-table 0 --out "$out/stream/s10_textured"
$amo bench --node --stream --objects 10 --plain-table 0 -p concurrent_reconstructions:=1 --out "$out/stream/s10_textured_one_at_a_time"
$amo bench --node --stream --objects 4 --plain-table 0 --stream-size 1280 720 --out "$out/stream/s4_textured_720p"
$amo bench --node --stream --objects 4 --plain-table 0 --storm 3 --out "$out/stream/s4_textured_storm3"
# 20 streams beside a process busy on one core: every track ends with a result or a counted reason
$amo bench --node --stream --objects 4 --plain-table 0 --repeats 20 --load 1 --out "$out/stream_repeats"
