#!/usr/bin/env bash
# How the shipped weights were made (fixed seeds): data, the 2D amodal prior, then the generator
# and the deterministic reference side by side, one core each (both read the prior's outputs).
# About 2.8 hours on 2 cores (6000 steps each, side by side: 1.5-1.75 s a step); resumable (run it again).
set -euo pipefail
cd "$(dirname "$0")/.."
amo=.venv/bin/amodalgen3d
w=amodalgen3d_ros/weights
$amo synth --out data/train --scenes 3000 --seed 0 --split train
$amo train --mode prior --scenes 3000 --steps "${PRIOR_STEPS:-4000}" --batch 32 --threads 2 --out runs/prior \
  > runs/train_prior.log 2>&1
cp runs/prior/amodal_prior.safetensors $w/amodal_prior.safetensors
# prepare once (both runs read the same shards, keyed by the prior's hash), then train both at once
.venv/bin/python -c "from amodalgen3d_ros.train import prepare, TrainConfig; from amodalgen3d_ros.features import FeatureConfig; prepare(TrainConfig(), FeatureConfig(amodal_prior=True))"
# the generator predicts the clean shape (x0, BCE); the reference gets the same number of steps.
# Two stages: 4000 steps on one cosine schedule, then the same run resumed to 6000 (the schedule
# is recomputed for 6000 steps: the learning rate goes back up to ~1e-4 and decays again).
for steps in 4000 6000; do
  $amo train --mode flow --predict x0 --steps $steps --threads 1 --out runs/flow5x0 >> runs/train_flow5x0.log 2>&1 &
  $amo train --mode regress --steps $steps --threads 1 --out runs/regress6 >> runs/train_regress6.log 2>&1 &
  wait
done
cp runs/flow5x0/flow.safetensors $w/amodalgen3d_flow.safetensors
cp runs/regress6/regress.safetensors $w/amodal_regressor.safetensors
# the surface level and the confidence's scale and floor, on fresh validation scenes (train split, seed 99), never the benchmark's
$amo calibrate $w/amodalgen3d_flow.safetensors
$amo calibrate $w/amodal_regressor.safetensors
