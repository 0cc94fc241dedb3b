"""The README's ablation table from the runs of scripts/ablations.sh: per variant its last validation
loss, mean Chamfer mm / F@5 / IoU / seen-surface accuracy mm / unseen completeness mm at each view
count, and Chamfer minus the full model's per object with its 95 % bootstrap interval.

Rows come from each run's runs/abl4_<name>_<steps>/bench/bench.json, or, with --bench, from one
file that holds them all (the committed `bench --combine` of those runs); validation losses from
each run's log.jsonl, else from --val-loss, where --record keeps them: runs/ does not outlive the
machine, the committed files do.

    .venv/bin/python scripts/ablation_table.py [--steps 1000] [--prefix runs/abl4_] full no_scca ...
    .venv/bin/python scripts/ablation_table.py --bench docs/results/ablations_calibrated/bench.json full ...
    .venv/bin/python scripts/ablation_table.py --record no_vwca     # its validation losses into --val-loss
    .venv/bin/python scripts/ablation_table.py --decoder full no_prior  # DECODER=1 runs: RUN/bench_decoder
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


def val_losses(run: Path, kept: dict) -> list:
    """[[step, validation loss], ...] of a run: its own log if it is here, else what was kept."""
    log = run / "log.jsonl"
    if log.exists():
        return [[r["step"], r["val_loss"]] for r in map(json.loads, log.read_text().splitlines()) if "val_loss" in r]
    return kept.get(run.name, [])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="+", help="variants as named in ablations.sh; the first is the baseline")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--prefix", default="runs/abl4_")
    ap.add_argument("--bench", default=None, help="one bench.json holding every variant's rows")
    ap.add_argument("--val-loss", default="docs/results/ablations_calibrated/val_loss.json")
    ap.add_argument("--record", action="store_true", help="keep the runs' validation losses in --val-loss and stop")
    ap.add_argument("--decoder", action="store_true", help="the runs with their decoder (DECODER=1 ablations.sh)")
    a = ap.parse_args()
    runs = {n: Path(f"{a.prefix}{n}_{a.steps}") for n in a.names}
    kept_path = Path(a.val_loss)
    kept = json.loads(kept_path.read_text()) if kept_path.exists() else {}
    if a.record:
        for r in runs.values():
            if not (r / "log.jsonl").exists():
                sys.exit(f"no training log in {r}")
            kept[r.name] = val_losses(r, {})
        kept_path.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
        return
    sub, query = ("bench_decoder", "?decoder={}") if a.decoder else ("bench", "")
    table = {n: rows(a.bench or str(r / sub / "bench.json"), f"amodalgen3d@{r.name}{query.format(r.name)}")
             for n, r in runs.items()}
    base = table[a.names[0]]
    counts = sorted({k[1] for k in base})
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
            rng = np.random.default_rng(0)  # per variant: its interval does not depend on the rows above it
            diffs = []
            for c in counts:
                keys = [k for k in rs if k[1] == c and k in base]
                d = np.array([rs[k]["chamfer_l1_mm"] - base[k]["chamfer_l1_mm"] for k in keys])
                mean, lo, hi = mean_interval(d, rng)
                diffs.append(f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}]")
            vs_base = " / ".join(diffs)
        vals = val_losses(runs[n], kept)
        print(f"| {n} | {f'{vals[-1][1]:.4f}' if vals else '-'} | {' | '.join(cells)} | {vs_base} |")


if __name__ == "__main__":
    main()
