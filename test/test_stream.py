"""The real node on a moving camera's stream, in its own process over real DDS (bench --node
--stream, small): every track's kept views are posed by the node's own camera tracking, close to
the truth, and every track publishes a result."""

from __future__ import annotations

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("amodalgen3d_ros.msg")

from amodalgen3d_ros.ros.harness.stream_bench import StreamConfig, run_stream_bench  # noqa: E402

pytestmark = pytest.mark.ros


@pytest.mark.parametrize("storm", [0, 1])
def test_a_moving_camera_stream_gives_posed_views_and_a_result_per_track(tmp_path, storm):
    """With storm=1 a malformed frame with the same stamp comes before every valid one."""
    cfg = StreamConfig(objects=3, width=320, height=240, seconds=2.0, arc_deg=40.0, plain_table=False, radius_m=0.6)
    rep = run_stream_bench(tmp_path, cfg, params={"min_novelty": 0.05, "track_timeout_s": 1.0},
                           method="support_hull", storm=storm)
    assert sum(rep["rejected"].values()) >= (40 if storm else 0) and (storm or not rep["rejected"]), rep["rejected"]
    assert rep["tracks_created"] == rep["tracks_with_result"] == 3, rep
    assert rep["views_posed_share"] == 1.0 and set(rep["posed_by"]) == {"odometry"}, rep["posed_by"]
    assert all(t["views_kept"] >= 2 for t in rep["tracks"]), [t["views_kept"] for t in rep["tracks"]]
    assert rep["pose_err_mm_median"] < 5 and rep["pose_err_deg_median"] < 1, rep
    assert rep["diagnostics_last"]["odometry_lost"] == "0"
