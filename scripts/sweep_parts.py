"""What the validation sweeps (sampler_sweep.py, hidden_offset_sweep.py) share: each runs in parts
(one process per core, each writing its rows to a JSON file) and sums them up in one table.

    .venv/bin/python scripts/SWEEP.py PART NPARTS OUT.json [ARG]
    .venv/bin/python scripts/SWEEP.py --summary OUT0.json OUT1.json ...
"""
import collections
import json
import sys
from collections.abc import Callable


def grouped(files: list[str], by: tuple[str, ...]) -> tuple[list[dict], dict[tuple, list[dict]]]:
    """The parts' rows, and the same rows grouped by the values of `by` (e.g. variant, level, views)."""
    rows = sum((json.load(open(f)) for f in files), [])
    groups = collections.defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in by)].append(r)
    return rows, groups


def main(run: Callable[..., None], summary: Callable[[list[str]], str]) -> None:
    if sys.argv[1] == "--summary":
        print(summary(sys.argv[2:]))
    else:
        run(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], *sys.argv[4:5])
