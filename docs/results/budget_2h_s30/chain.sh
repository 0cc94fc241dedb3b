#!/usr/bin/env bash
# after the 4000-step reference: the generator 1000 steps from it, calibration at 1/2/4 views with
# a copy of the shipped decoder, then the 120-scene held-out bench of the generator.
set -euo pipefail
cd /work/main
while [ ! -f runs/budget/regress/regress.safetensors ] || pgrep -f "out runs/budget/regress$" >/dev/null; do sleep 20; done
.venv/bin/amodalgen3d train --mode flow --predict x0 --init runs/budget/regress/regress.safetensors --lr 1e-4 \
  --steps 1000 --threads 2 --out runs/budget/flow > runs/budget/flow.log 2>&1
cp amodalgen3d_ros/weights/amodal_local_decoder.safetensors runs/budget/decoder.safetensors
date > runs/budget/calib.start
.venv/bin/python -c "
import json, torch
torch.set_num_threads(2)
from amodalgen3d_ros.calibrate import calibrate
r = calibrate('runs/budget/flow/flow.safetensors', views=(1, 2, 4), decoder='runs/budget/decoder.safetensors')
print(json.dumps({k: r[k] for k in ('level', 'level_by_views', 'hidden_offset_by_views', 'confidence')}, indent=1))
" > runs/budget/calib.json 2> runs/budget/calib.err
date > runs/budget/calib.end
.venv/bin/amodalgen3d bench --split heldout --data data/heldout120 --scenes 120 --views 1,2,4 \
  --methods "amodalgen3d@runs/budget/flow/flow.safetensors?decoder=runs/budget/decoder.safetensors" \
  --workers 2 --out runs/budget/bench120 > runs/budget/bench120.log 2>&1
date > runs/budget/done
