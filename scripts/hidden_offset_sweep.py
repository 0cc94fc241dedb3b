"""The surface level lowered in hidden space (model.hidden_space), swept for the shipped generator
and the reference on validation scenes (never the benchmark's), each field computed once and
meshed at its calibrated level (for the views it used) with each offset; the seen / unseen split as
the benchmark reads it.

    .venv/bin/amodalgen3d synth --out data/val77 --scenes 24 --seed 77 --split train
    .venv/bin/python scripts/hidden_offset_sweep.py 0 2 rows0.json &
    .venv/bin/python scripts/hidden_offset_sweep.py 1 2 rows1.json
    .venv/bin/python scripts/hidden_offset_sweep.py --summary rows0.json rows1.json

The methods run with whatever offsets their files hold: the sweep sets the offset explicitly.
"""
import json

import numpy as np
from sweep_parts import grouped, main  # this folder

from amodalgen3d_ros import synth
from amodalgen3d_ros.bench import seen_by_views
from amodalgen3d_ros.metrics import evaluate, sample_surface
from amodalgen3d_ros.model import learned_method
from amodalgen3d_ros.observation import observe
from amodalgen3d_ros.views import read_views_dir

OFFSETS = (0.0, 0.05, 0.1, 0.15, 0.2)
KEYS = ("chamfer_l1_mm", "fscore_10mm", "iou", "accuracy_seen_mm", "completeness_unseen_mm")


def run(part: int, nparts: int, out: str, data: str = "data/val77") -> None:
    methods = {"amodalgen3d": learned_method("amodalgen3d"), "amodal_regressor": learned_method("amodal_regressor")}
    rows = []
    for sc in synth.scene_dirs(data)[part::nparts]:
        vs, gt = read_views_dir(sc / "views"), synth.load_gt(sc)
        pts = sample_surface(gt["mesh"], 20000, seed=0)  # posed views: the output frame is the world's
        for n in (1, 2, 4):
            seen = seen_by_views(sc, vs, gt, pts, n)
            obs = observe(vs.views[:n], vs.target_id, seed=0)
            for name, m in methods.items():
                fd = m.field(obs)
                for d in OFFSETS:
                    e = evaluate(m.mesh(fd, m.level_for(fd["n_views"]), d)[0], gt["mesh"], gt_seen=seen, gt_points=pts)
                    rows.append({"scene": sc.name, "views": n, "method": name, "offset": d, **{k: e[k] for k in KEYS}})
        json.dump(rows, open(out, "w"))


def summary(files: list[str]) -> str:
    rows, T = grouped(files, ("method", "offset", "views"))
    lines = ["Means per object: " + " / ".join(KEYS), "", "| method | offset | 1 view | 2 views | 4 views |",
             "|---|---|---|---|---|"]
    for m in dict.fromkeys(r["method"] for r in rows):
        for d in OFFSETS:
            cells = [" / ".join(f"{np.nanmean([r[k] for r in T[(m, d, n)]]):.3f}" for k in KEYS) + f" (n={len(T[(m, d, n)])})"
                     for n in (1, 2, 4)]
            lines.append(f"| {m} | {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main(run, summary)
