#!/usr/bin/env bash
# How the shipped weights were made (fixed seeds): data, then the generator and the deterministic
# reference side by side, one core each. About 1.2 hours on 2 cores; resumable (run it again).
set -euo pipefail
cd "$(dirname "$0")/.."
amo=.venv/bin/amodalgen3d
$amo synth --out data/train --scenes 3000 --seed 0 --split train
# prepare once (both runs read the same shards), then train both at once
.venv/bin/python -c "from amodalgen3d_ros.train import prepare, TrainConfig; from amodalgen3d_ros.features import FeatureConfig; prepare(TrainConfig(), FeatureConfig())"
$amo train --mode flow --steps "${FLOW_STEPS:-1500}" --threads 1 --out runs/flow2 > runs/train_flow2.log 2>&1 &
$amo train --mode regress --steps "${REGRESS_STEPS:-700}" --threads 1 --out runs/regress2 > runs/train_regress2.log 2>&1 &
wait
cp runs/flow2/flow.safetensors amodalgen3d_ros/weights/amodalgen3d_flow.safetensors
cp runs/regress2/regress.safetensors amodalgen3d_ros/weights/amodal_regressor.safetensors
# the surface level, on fresh validation scenes (train split, seed 99), never the benchmark's
$amo calibrate amodalgen3d_ros/weights/amodalgen3d_flow.safetensors
$amo calibrate amodalgen3d_ros/weights/amodal_regressor.safetensors
