"""The generator's published shape: the mean occupancy of its samples (what ships) against the one
sample that agrees most with the others (minimum Bayes risk under soft IoU) and against the first
sample, on validation scenes (train split, seed 77; never the benchmark's).

    .venv/bin/python scripts/mbr_readout.py 0 2 & .venv/bin/python scripts/mbr_readout.py 1 2
    .venv/bin/python scripts/mbr_readout.py --summary runs/mbr_rows0.json runs/mbr_rows1.json
"""
import json
import sys

import numpy as np
from compare_weights import objects  # this folder

from amodalgen3d_ros.metrics import evaluate
from amodalgen3d_ros.model import LearnedMethod

KEYS = ("chamfer_l1_mm", "fscore_5mm", "fscore_10mm", "iou")


def run(part: int, nparts: int, data: str = "data/val77") -> None:
    m = LearnedMethod("amodalgen3d_ros/weights/amodalgen3d_flow.safetensors", backend="onnxruntime", threads=1,
                      hypotheses=8)
    rows = []
    for scene, n, obs, gt in objects(data, part, nparts):
        fd = m.field(obs)
        h = np.stack(fd["hypotheses"]).reshape(len(fd["hypotheses"]), -1)
        inter = h @ h.T
        tot = h.sum(1)
        iou = inter / np.maximum(tot[:, None] + tot[None, :] - inter, 1e-6)
        pick = int(np.argmax(iou.sum(1)))  # the sample closest to all the others
        r = {"scene": scene, "views": n}
        for name, field in (("mean", fd["field"]), ("mbr", fd["hypotheses"][pick]), ("first", fd["hypotheses"][0])):
            e = evaluate(m.mesh({**fd, "field": field}, m.level)[0], gt, n=5000)
            r[name] = {k: e[k] for k in KEYS}
        rows.append(r)
        json.dump(rows, open(f"runs/mbr_rows{part}.json", "w"))


def summary(files: list[str]) -> None:
    rows = sum((json.load(open(f)) for f in files), [])
    for n in (1, 2, 4):
        rs = [x for x in rows if x["views"] == n]
        cells = [f"{name} " + " / ".join(f"{np.mean([x[name][k] for x in rs]):.3f}" for k in KEYS if k != "fscore_10mm")
                 for name in ("mean", "mbr", "first")]
        print(f"{n} view(s), {len(rs)} objects (Chamfer mm / F@5 / IoU): " + " | ".join(cells))


if __name__ == "__main__":
    if sys.argv[1] == "--summary":
        summary(sys.argv[2:])
    else:
        run(int(sys.argv[1]), int(sys.argv[2]))
