"""The odometry benchmark: a short arc over a textured table is followed within millimetres."""

from __future__ import annotations

import json

from amodalgen3d_ros.tools.odometry_bench import OdometryBenchConfig, run_odometry_bench


def test_a_short_arc_is_followed_closely(tmp_path):
    cfg = OdometryBenchConfig(scenes=1, seconds=0.5, arc_deg=12, width=320, height=240, plain_table_prob=0.0)
    rep = run_odometry_bench(tmp_path, cfg, progress=False)
    row = rep["rows"][0]
    assert row["frames"] == 15 and row["failed"] == 0 and not row["plain_table"]
    assert row["trans_err_mm_last"] < 5 and row["rot_err_deg_last"] < 0.5, row
    assert json.loads((tmp_path / "odometry.json").read_text())["rows"] == rep["rows"]
