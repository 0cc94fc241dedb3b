"""Is the margin over the baselines largest on the surface no camera saw? Per object: the method's
margin on the unseen surface's completeness over the baseline best on it (by its mean), minus its
margin on the seen surface's accuracy over the baseline best on that (the fused visible points),
and minus its margin on whole-object Chamfer; mean and 95 % bootstrap interval per view count.

    .venv/bin/python scripts/margin_bench.py METHOD_RUN/bench.json 'METHOD' BASELINES_RUN/bench.json [--by-family]

(the two runs on the same scenes; objects where a needed value is missing are left out; with
--by-family, also the unseen and seen margins' means per shape family: where is the unseen margin
small?)
"""
import sys

import numpy as np
from paired_bench import _report_rows, mean_interval, measured, rows

BASELINES = ("visible", "convex_hull", "support_hull", "symmetry", "tsdf")
UNSEEN, SEEN, WHOLE = "completeness_unseen_mm", "accuracy_seen_mm", "chamfer_l1_mm"


def main(m_path: str, method: str, b_path: str, by_family: bool = False) -> None:
    m = rows(m_path, method)
    have = {r["method"] for r in _report_rows(b_path)}
    base = {b: rows(b_path, b) for b in BASELINES if b in have}
    rng = np.random.default_rng(0)
    print(f"{method}: margin over the best baseline per measure, per object, mean [95 % bootstrap]")
    for n in sorted({k[1] for k in m}):
        objs = [k for k in m if k[1] == n and all(k in b for b in base.values())
                and all(measured(r[k], key) for r in (m, *base.values()) for key in (UNSEEN, SEEN, WHOLE))]
        best = {key: min(base, key=lambda b: np.mean([base[b][k][key] for k in objs])) for key in (UNSEEN, SEEN, WHOLE)}
        margin = {key: np.array([base[best[key]][k][key] - m[k][key] for k in objs]) for key in best}
        print(f"{n} view(s), {len(objs)} objects; best baseline: unseen {best[UNSEEN]}, seen {best[SEEN]}, "
              f"Chamfer {best[WHOLE]}")
        for key in best:
            print(f"  margin on {key}: {margin[key].mean():+.2f} mm")
        for other in (SEEN, WHOLE):
            mean, lo, hi = mean_interval(margin[UNSEEN] - margin[other], rng)
            print(f"  unseen margin minus {other} margin: {mean:+.2f} [{lo:+.2f}, {hi:+.2f}] mm")
        if by_family:
            family = np.array([m[k].get("family", "?") for k in objs])
            for f in sorted(set(family)):
                k = family == f
                print(f"    {f}: {int(k.sum())} objects, unseen margin {margin[UNSEEN][k].mean():+.2f}, "
                      f"seen margin {margin[SEEN][k].mean():+.2f}, difference "
                      f"{(margin[UNSEEN][k] - margin[SEEN][k]).mean():+.2f} mm")


if __name__ == "__main__":
    main(*sys.argv[1:4], by_family="--by-family" in sys.argv[4:])
