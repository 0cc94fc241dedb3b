"""Two methods' benchmark rows paired per object (scene, view count): mean difference A - B with a
95 % bootstrap interval, per view count. The rows may come from different runs (bench.json files).

    .venv/bin/python scripts/paired_bench.py RUN_A/bench.json 'METHOD_A' RUN_B/bench.json 'METHOD_B' [KEY,KEY,...] [--worst K]

(default keys: the accuracy ones; e.g. confidence_auroc,confidence_ece for the confidence; objects
where either is missing or NaN are left out). Beside the mean: the median, on how many objects A is
below / above B, and with --worst K the K objects at each end (is a mean carried by a few objects?).
"""
import functools
import json
import sys

import numpy as np

KEYS = ("chamfer_l1_mm", "fscore_5mm", "fscore_10mm", "iou", "completeness_unseen_mm")


def mean_interval(d: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """Mean of paired differences and its 95 % bootstrap interval (2000 resamples)."""
    lo, hi = np.percentile([rng.choice(d, len(d)).mean() for _ in range(2000)], [2.5, 97.5])
    return float(d.mean()), float(lo), float(hi)


def measured(row: dict, key: str) -> bool:
    return row.get(key) is not None and row[key] == row[key]  # not missing, not NaN


@functools.cache
def _report_rows(path: str) -> list:
    """A bench.json's rows, read once per path (one combined file can hold every method asked for)."""
    return json.load(open(path))["rows"]


def rows(path: str, method: str) -> dict:
    out = {(r["scene"], r["views"]): r for r in _report_rows(path) if r["method"] == method}
    if not out:
        sys.exit(f"no rows of {method!r} in {path}")
    return out


def main(a_path: str, a_method: str, b_path: str, b_method: str, keys: tuple[str, ...] = KEYS, worst: int = 0) -> None:
    a, b = rows(a_path, a_method), rows(b_path, b_method)
    rng = np.random.default_rng(0)
    print(f"{a_method} ({a_path}) minus {b_method} ({b_path}): mean [95 % bootstrap], objects")
    for n in sorted({k[1] for k in a}):
        objects = [k for k in a if k[1] == n and k in b]
        if not objects:  # A ran this view count, B did not: nothing to pair
            continue
        print(f"{n} view(s), {len(objects)} objects:")
        for m in keys:
            both = [k for k in objects if measured(a[k], m) and measured(b[k], m)]
            d = np.array([a[k][m] - b[k][m] for k in both])
            mean, lo, hi = mean_interval(d, rng)
            print(f"  {m}: {mean:+.4f} [{lo:+.4f}, {hi:+.4f}]  (A {np.mean([a[k][m] for k in both]):.4f}, "
                  f"B {np.mean([b[k][m] for k in both]):.4f}); median {np.median(d):+.4f}, "
                  f"A below B on {int((d < 0).sum())}, above on {int((d > 0).sum())}")
            if worst:
                order = np.argsort(d)
                for name, idx in (("lowest", order[:worst]), ("highest", order[::-1][:worst])):
                    print(f"    {name} A - B: " + ", ".join(
                        f"{both[i][0]} ({a[both[i]].get('family', '?')}) {d[i]:+.3f}" for i in idx))
                if len(d) > 2 * worst:
                    print(f"    mean without the {worst} at each end: {d[order[worst:-worst]].mean():+.4f}")


if __name__ == "__main__":
    args = sys.argv[1:]
    k = 0
    if "--worst" in args:
        i = args.index("--worst")
        k = int(args[i + 1])
        del args[i:i + 2]
    main(*args[:4], tuple(args[4].split(",")) if len(args) > 4 else KEYS, worst=k)
