"""Learned methods' weight files against each other on validation scenes (never the benchmark's),
each at the surface level stored in it, with paired bootstrap intervals.

    .venv/bin/python scripts/compare_weights.py run 0 2 rows0.json gen=W1 ref=W2 ... &
    .venv/bin/python scripts/compare_weights.py run 1 2 rows1.json gen=W1 ref=W2 ...
    .venv/bin/python scripts/compare_weights.py summary gen-ref,... rows0.json rows1.json
"""
import collections
import json
import sys

import numpy as np
from paired_bench import mean_interval  # scripts/ is on the path when a script here is run

from amodalgen3d_ros import synth
from amodalgen3d_ros.metrics import evaluate
from amodalgen3d_ros.model import LearnedMethod
from amodalgen3d_ros.observation import observe
from amodalgen3d_ros.views import read_views_dir

KEYS = ("chamfer_l1_mm", "fscore_5mm", "fscore_10mm", "iou")


def objects(data: str, part: int, nparts: int):
    """(scene name, view count, observation, truth mesh) of this part's scenes at 1, 2, 4 views."""
    for sc in synth.scene_dirs(data)[part::nparts]:
        vs = read_views_dir(sc / "views")
        gt = synth.load_gt(sc)["mesh"]
        for n in (1, 2, 4):
            yield sc.name, n, observe(vs.views[:n], vs.target_id), gt


def run(part: int, nparts: int, out: str, weights: dict[str, str], data: str = "data/val77") -> None:
    methods = {k: LearnedMethod(v, backend="onnxruntime", threads=1) for k, v in weights.items()}
    rows = []
    for scene, n, obs, gt in objects(data, part, nparts):
        for name, m in methods.items():
            e = evaluate(m(obs)[0], gt, n=5000)
            rows.append({"scene": scene, "views": n, "variant": name, "level": m.level, **{k: e[k] for k in KEYS}})
        json.dump(rows, open(out, "w"))


def summary(pairs: list[tuple[str, str]], files: list[str]) -> str:
    rows = sum((json.load(open(f)) for f in files), [])
    T = collections.defaultdict(list)
    by = collections.defaultdict(dict)
    for r in rows:
        T[(r["variant"], r["views"])].append(r)
        by[(r["scene"], r["views"])][r["variant"]] = r
    out = ["Means, Chamfer-L1 mm / F@5 / F@10 / IoU at 1 | 2 | 4 views:", ""]
    for v in dict.fromkeys(r["variant"] for r in rows):
        cells = [" / ".join(f"{np.mean([r[k] for r in T[(v, n)]]):.3f}" for k in KEYS) for n in (1, 2, 4)]
        out.append(f"- {v} (level {T[(v, 1)][0]['level']}, {len(T[(v, 1)])} scenes): " + " | ".join(cells))
    out += ["", "Paired differences per object, mean [95 % bootstrap] at 1 | 2 | 4 views:", ""]
    rng = np.random.default_rng(0)
    for a, b in pairs:
        for k in ("chamfer_l1_mm", "iou"):
            cells = []
            for n in (1, 2, 4):
                d = np.array([m[a][k] - m[b][k] for (_, vv), m in by.items() if vv == n and a in m and b in m])
                mean, lo, hi = mean_interval(d, rng)
                cells.append(f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]")
            out.append(f"- {a} - {b}, {k}: " + " | ".join(cells))
    return "\n".join(out)


if __name__ == "__main__":
    if sys.argv[1] == "run":
        run(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], dict(a.split("=", 1) for a in sys.argv[5:]))
    else:
        print(summary([tuple(p.split("-")) for p in sys.argv[2].split(",")], sys.argv[3:]))
