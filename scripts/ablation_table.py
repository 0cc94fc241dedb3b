"""The README's ablation table from the runs of scripts/ablations.sh: per variant its last validation
loss, mean Chamfer mm / F@5 / IoU / seen-surface accuracy mm / unseen completeness mm at each view
count, and Chamfer minus the full model's per object with its 95 % bootstrap interval.

    .venv/bin/python scripts/ablation_table.py [--steps 1000] [--prefix runs/abl4_] full no_scca ...
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from paired_bench import mean_interval, rows  # noqa: E402

COLUMNS = ("chamfer_l1_mm", "fscore_5mm", "iou", "accuracy_seen_mm", "completeness_unseen_mm")
FORMATS = ("{:.2f}", "{:.3f}", "{:.3f}", "{:.2f}", "{:.2f}")


def last_val_loss(run: Path) -> str:
    vals = [r["val_loss"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if "val_loss" in r]
    return f"{vals[-1]:.4f}" if vals else "-"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="+", help="variants as named in ablations.sh; the first is the baseline")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--prefix", default="runs/abl4_")
    a = ap.parse_args()
    runs = {n: Path(f"{a.prefix}{n}_{a.steps}") for n in a.names}
    table = {n: rows(str(r / "bench" / "bench.json"), f"amodalgen3d@{r.name}") for n, r in runs.items()}
    base = table[a.names[0]]
    counts = sorted({k[1] for k in base})
    rng = np.random.default_rng(0)
    print(f"| model | val. loss | {' | '.join(f'{n} view(s)' for n in counts)} | Chamfer vs {a.names[0]} (95 % interval) |")
    print("|---|---|" + "---|" * len(counts) + "---|")
    for n, rs in table.items():
        cells = []
        for c in counts:
            objs = [r for k, r in rs.items() if k[1] == c]
            cells.append(" / ".join(f.format(np.nanmean([r[m] for r in objs if r.get(m) is not None]))
                                    for m, f in zip(COLUMNS, FORMATS)))
        vs_base = "-"
        if n != a.names[0]:
            diffs = []
            for c in counts:
                keys = [k for k in rs if k[1] == c and k in base]
                d = np.array([rs[k]["chamfer_l1_mm"] - base[k]["chamfer_l1_mm"] for k in keys])
                mean, lo, hi = mean_interval(d, rng)
                diffs.append(f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}]")
            vs_base = " / ".join(diffs)
        print(f"| {n} | {last_val_loss(runs[n])} | {' | '.join(cells)} | {vs_base} |")


if __name__ == "__main__":
    main()
