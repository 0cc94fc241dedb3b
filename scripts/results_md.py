"""Print the tables of the README's Results section from the outputs of scripts/bench_all.sh (bench_out/)."""

import json
from pathlib import Path

B = Path(__file__).resolve().parents[1] / "bench_out"
COLS = ["chamfer_l1_mm", "fscore_5mm", "fscore_10mm", "iou", "accuracy_seen_mm", "completeness_unseen_mm", "seconds"]


def table(path: Path, methods=None) -> str:
    s = json.loads((path / "bench.json").read_text())["summary"]["by_views"]
    out = ["| views | method | " + " | ".join(COLS) + " |", "|---|---|" + "---|" * len(COLS)]
    for key, st in s.items():
        n, m = key.split("/")
        if methods and m not in methods:
            continue
        out.append(f"| {n} | {m} | " + " | ".join(f"{st[c]['mean']:.3g}" for c in COLS) + " |")
    return "\n".join(out)


print("Held-out split (superquadrics and unseen random_urdfs objects included), seed 1234, noisy depth;")
print("means per object (medians and occlusion bands in `bench_out/*/bench.md`). The paired differences")
print("the README quotes come from `scripts/paired_bench.py`.\n")
print("### Posed views, 120 scenes\n")
print(table(B / "posed_120"))
print("\n### Against the number of views (30 scenes, posed)\n")
print(table(B / "views_sweep"))
print("\n### Unposed views (poses estimated; 30 scenes)\n")
print(table(B / "unposed"))
print("\n### Depth noise off (30 scenes, posed)\n")
print(table(B / "clean_depth"))
print("\n### Pose estimation\n")
print((B / "poses" / "poses.md").read_text().split("\n", 2)[2])
print("### Speed (seconds per object, this 2-core CPU)\n")
print((B / "speed" / "speed.md").read_text().split("\n", 2)[2])
n = json.loads((B / "node" / "node_bench.json").read_text())
print("### The node under load\n")
print(f"{n['rate_hz_target']:.0f} Hz 640x480 colour + depth + labels, {n['objects']} objects, {n['seconds']:.0f} s, publisher on "
      f"the same 2 cores: node CPU mean {n['node_cpu_percent_mean']:.0f} % (median {n['node_cpu_percent_median']:.0f} %, "
      f"p95 {n['node_cpu_percent_p95']:.0f} %), "
      f"RSS max {n['node_rss_mb_max']:.0f} MB, first result after {n['first_result_s']:.1f} s, frame-to-result latency "
      f"median {n['latency_s_median']:.2f} s, p95 {n['latency_s_p95']:.1f} s; the node took in about "
      f"{n['diagnostics_last'].get('rate_color_hz')} Hz per input (the rest counted as unmatched or rate-skipped).")
