"""Calibrate a network with a decoder copy at 1, 2 and 4 views only (the `calibrate` command fits
every count of CALIBRATION_VIEWS); prints the fitted levels and confidence as JSON.

    .venv/bin/python docs/results/budget_2h_s31/calibrate_124.py NETWORK DECODER_COPY THREADS
"""
import json
import sys

import torch

from amodalgen3d_ros.calibrate import calibrate

torch.set_num_threads(int(sys.argv[3]))
r = calibrate(sys.argv[1], views=(1, 2, 4), decoder=sys.argv[2])
print(json.dumps({k: r[k] for k in ("level", "level_by_views", "hidden_offset_by_views", "confidence")}, indent=1))
