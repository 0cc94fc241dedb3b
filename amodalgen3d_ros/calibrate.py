"""Calibrate a learned method's surface level on validation scenes, never the benchmark's.

The networks' occupancy is not calibrated after minutes of training (they under-fill hidden
volume); one scalar, the level at which the surface is drawn, is chosen on fresh scenes of the
training split drawn with another seed, to maximise the mean of F-score@10 mm and IoU, and stored
in the weights file's metadata.

    amodalgen3d calibrate WEIGHTS [--scenes 12 --seed 99]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import synth
from .metrics import evaluate
from .model import LearnedMethod, load_weights, save_weights, weights_meta
from .observation import observe
from .views import read_views_dir

LEVELS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


def calibrate(weights: str | Path, data: str = "data/calib", scenes: int = 12, seed: int = 99,
              views: tuple[int, ...] = (1, 2, 4)) -> dict:
    synth.synth(data, scenes, seed, "train", workers=1, progress=False)
    m = LearnedMethod(weights, level=0.5)
    scores: dict[float, list[float]] = {lv: [] for lv in LEVELS}
    for sc in synth.scene_dirs(data)[:scenes]:
        vs = read_views_dir(sc / "views")
        gt = synth.load_gt(sc)["mesh"]
        for n in views:
            fd = m.field(observe(vs.views[:n], vs.target_id))
            for lv in LEVELS:
                e = evaluate(m.mesh(fd, lv)[0], gt, n=5000)
                scores[lv].append(0.5 * (e["fscore_10mm"] + e["iou"]))
    means = {lv: float(np.mean(v)) for lv, v in scores.items()}
    best = max(means, key=lambda lv: means[lv])
    model = load_weights(weights)
    meta = weights_meta(weights)
    meta.update({"level": best, "calibration": {"scenes": scenes, "seed": seed, "split": "train",
                                                "score_by_level": means}})
    save_weights(model, weights, meta)
    return {"level": best, "score_by_level": means}


if __name__ == "__main__":
    import sys

    print(json.dumps(calibrate(sys.argv[1]), indent=1))
