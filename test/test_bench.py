"""The benchmark measures every method on a scene and summarizes."""

from __future__ import annotations

from amodalgen3d_ros.bench import BenchConfig, bench_scene, markdown, summarize


def test_bench_scene_rows_and_summary(scene_dir):
    cfg = BenchConfig(views=(1, 2), methods=("visible", "support_hull"))
    rows = bench_scene((str(scene_dir), cfg))
    assert len(rows) == 4 and all("error" not in r for r in rows)
    for r in rows:
        assert 0 <= r["fscore_5mm"] <= 1 and r["chamfer_l1_mm"] > 0 and 0 < r["seen_share"] < 1
    s = summarize(rows)
    assert set(s["by_views"]) == {"1/visible", "1/support_hull", "2/visible", "2/support_hull"}
    assert "| 2 | support_hull |" in markdown(s, "t")
