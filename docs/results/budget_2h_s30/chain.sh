#!/usr/bin/env bash
# The 2-hour recipe as run in session 30, in order (run from the repository's root; the reference
# was started by hand and the rest chained after it): the reference 4000 steps, the generator 1000
# steps from it, its calibration at 1/2/4 views with a copy of the shipped decoder (the `calibrate`
# command fits every count of CALIBRATION_VIEWS, hence the function), the 120-scene held-out bench.
set -euo pipefail
cd "$(dirname "$0")/../../.."
.venv/bin/amodalgen3d train --mode regress --steps 4000 --threads 2 --out runs/budget/regress > runs/budget/regress.log 2>&1
.venv/bin/amodalgen3d train --mode flow --predict x0 --init runs/budget/regress/regress.safetensors --lr 1e-4 \
  --steps 1000 --threads 2 --out runs/budget/flow > runs/budget/flow.log 2>&1
cp amodalgen3d_ros/weights/amodal_local_decoder.safetensors runs/budget/decoder.safetensors
.venv/bin/python -c "
import json, torch
torch.set_num_threads(2)
from amodalgen3d_ros.calibrate import calibrate
r = calibrate('runs/budget/flow/flow.safetensors', views=(1, 2, 4), decoder='runs/budget/decoder.safetensors')
print(json.dumps({k: r[k] for k in ('level', 'level_by_views', 'hidden_offset_by_views', 'confidence')}, indent=1))
" > runs/budget/calib.json
.venv/bin/amodalgen3d bench --split heldout --data data/heldout120 --scenes 120 --views 1,2,4 \
  --methods "amodalgen3d@runs/budget/flow/flow.safetensors?decoder=runs/budget/decoder.safetensors" \
  --workers 2 --out runs/budget/bench120 > runs/budget/bench120.log 2>&1
