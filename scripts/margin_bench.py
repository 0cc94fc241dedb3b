"""Is the margin over the baselines largest on the surface no camera saw? Per object and per
measure: the method's margin on the unseen truth surface over the baseline best there (by its
mean), minus its margin on the seen surface over the baseline best there, and minus its margin on
the whole object; mean and 95 % bootstrap interval per view count. Three measures: the bar's
F-score@5 mm and Chamfer-L1, each restricted to the unseen / seen truth surface (a predicted point
counts where its nearest truth point lies, metrics.evaluate), and the pairing this script began
with, the unseen surface's completeness against the seen surface's accuracy (did the hidden
surface get covered; are the points on the seen surface right).

    .venv/bin/python scripts/margin_bench.py METHOD_RUN/bench.json 'METHOD' BASELINES_RUN/bench.json [--by-family]

(the two runs on the same scenes; objects where a needed value is missing are left out; with
--by-family, also the unseen and seen margins' means per shape family: where is the unseen margin
small?)
"""
import sys

import numpy as np
from paired_bench import _report_rows, mean_interval, measured, rows

BASELINES = ("visible", "convex_hull", "support_hull", "symmetry", "tsdf")
# name: (unseen key, seen key, whole-object key, higher is better)
MEASURES = {"F@5": ("fscore_5mm_unseen", "fscore_5mm_seen", "fscore_5mm", True),
            "Chamfer": ("chamfer_unseen_mm", "chamfer_seen_mm", "chamfer_l1_mm", False),
            "completeness / accuracy": ("completeness_unseen_mm", "accuracy_seen_mm", "chamfer_l1_mm", False)}


def main(m_path: str, method: str, b_path: str, by_family: bool = False) -> None:
    m = rows(m_path, method)
    have = {r["method"] for r in _report_rows(b_path)}
    base = {b: rows(b_path, b) for b in BASELINES if b in have}
    rng = np.random.default_rng(0)
    print(f"{method}: margin over the best baseline per measure and surface, per object, mean [95 % bootstrap]")
    for n in sorted({k[1] for k in m}):
        print(f"{n} view(s)")
        for name, keys in MEASURES.items():
            *regions, higher = keys
            sign = 1.0 if higher else -1.0  # a margin is positive where the method is better
            objs = [k for k in m if k[1] == n and all(k in b for b in base.values())
                    and all(measured(r[k], key) for r in (m, *base.values()) for key in regions)]
            best = {key: max(base, key=lambda b: sign * np.mean([base[b][k][key] for k in objs])) for key in regions}
            margin = {key: sign * np.array([m[k][key] - base[best[key]][k][key] for k in objs]) for key in regions}
            unseen, seen, whole = regions
            print(f"  {name}, {len(objs)} objects: margin unseen {margin[unseen].mean():+.3f} ({best[unseen]}), "
                  f"seen {margin[seen].mean():+.3f} ({best[seen]}), whole object {margin[whole].mean():+.3f} "
                  f"({best[whole]})")
            for other, label in ((seen, "seen"), (whole, "whole object")):
                mean, lo, hi = mean_interval(margin[unseen] - margin[other], rng)
                print(f"    unseen margin minus {label} margin: {mean:+.3f} [{lo:+.3f}, {hi:+.3f}]")
            if by_family:
                family = np.array([m[k].get("family", "?") for k in objs])
                for f in sorted(set(family)):
                    of_f = family == f
                    print(f"      {f}: {int(of_f.sum())} objects, unseen margin {margin[unseen][of_f].mean():+.3f}, "
                          f"seen margin {margin[seen][of_f].mean():+.3f}, difference "
                          f"{(margin[unseen][of_f] - margin[seen][of_f]).mean():+.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:4], by_family="--by-family" in sys.argv[4:])
