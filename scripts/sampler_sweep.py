"""Sampler and surface-level sweep of the shipped generator against the reference, on validation
scenes (never the benchmark's): Euler steps, samples, classifier-free guidance, level.

    .venv/bin/amodalgen3d synth --out data/val77 --scenes 24 --seed 77 --split train
    .venv/bin/python scripts/sampler_sweep.py 0 2 rows0.json & .venv/bin/python scripts/sampler_sweep.py 1 2 rows1.json
    .venv/bin/python scripts/sampler_sweep.py --summary rows0.json rows1.json
    (a fourth argument, "K8 S4,K16 S4,...", runs only those variants)
"""
import json
import time

import numpy as np
from compare_weights import objects  # this folder
from sweep_parts import grouped, main

from amodalgen3d_ros.metrics import evaluate
from amodalgen3d_ros.model import LearnedMethod

W = "amodalgen3d_ros/weights/"
LEVELS = (0.25, 0.3, 0.35, 0.4)
# name: (weights, samples, steps, guidance); guidance != 1 needs the torch backend
VARIANTS = {"reference": ("amodal_regressor", 1, 1, 1.0), "K8 S4": ("amodalgen3d_flow", 8, 4, 1.0),
            "K16 S4": ("amodalgen3d_flow", 16, 4, 1.0), "K32 S4": ("amodalgen3d_flow", 32, 4, 1.0),
            "K8 S8": ("amodalgen3d_flow", 8, 8, 1.0), "K8 S2": ("amodalgen3d_flow", 8, 2, 1.0),
            "K1 S1": ("amodalgen3d_flow", 1, 1, 1.0), "K16 S8": ("amodalgen3d_flow", 16, 8, 1.0),
            "K8 S4 g1.5": ("amodalgen3d_flow", 8, 4, 1.5), "K8 S4 g2": ("amodalgen3d_flow", 8, 4, 2.0),
            "K8 S4 g3": ("amodalgen3d_flow", 8, 4, 3.0), "K4 S4": ("amodalgen3d_flow", 4, 4, 1.0)}


def run(part: int, nparts: int, out: str, only: str = "", data: str = "data/val77") -> None:
    methods = {}
    for name, (w, k, s, g) in VARIANTS.items():
        if only and name not in only.split(","):
            continue
        m = LearnedMethod(W + w + ".safetensors", backend="onnxruntime" if g == 1.0 else "torch", threads=1,
                          samples=k, steps=s, guidance=g)
        methods[name] = m
    rows = []
    for scene, n, obs, gt in objects(data, part, nparts):
        for name, m in methods.items():
            t0 = time.perf_counter()
            fd = m.field(obs)
            dt = time.perf_counter() - t0
            for lv in LEVELS:
                e = evaluate(m.mesh(fd, lv)[0], gt, n=5000)
                rows.append({"scene": scene, "views": n, "variant": name, "level": lv, "seconds": dt,
                             **{k: e[k] for k in ("chamfer_l1_mm", "fscore_5mm", "fscore_10mm", "iou")}})
        json.dump(rows, open(out, "w"))


def summary(files: list[str]) -> str:
    rows, T = grouped(files, ("variant", "level", "views"))
    n_obj = len({(r["scene"], r["views"]) for r in rows})
    lines = [f"{n_obj} objects; Chamfer-L1 mm / F@5 / IoU at 1, 2, 4 views; field seconds: median at 4 views "
             "(one thread; torch for guidance)", "",
             "| variant | level | 1 view | 2 views | 4 views | s |", "|---|---|---|---|---|---|"]
    for v in dict.fromkeys(r["variant"] for r in rows):
        for lv in LEVELS:
            cells = [" / ".join(f"{np.mean([r[k] for r in T[(v, lv, n)]]):{'.2f' if k[0] == 'c' else '.3f'}}"
                                for k in ("chamfer_l1_mm", "fscore_5mm", "iou")) for n in (1, 2, 4)]
            sec = np.median([r.get("seconds", r.get("s")) for r in T[(v, lv, 4)]])
            lines.append(f"| {v} | {lv} | " + " | ".join(cells) + f" | {sec:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main(run, summary)
