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


def test_scenes_made_otherwise_are_refused(tmp_path):
    """Bug: `bench --no-depth-noise --data data/heldout` measured the noisy scenes in that folder
    and labelled the run exact-depth. The folder's manifest must match the run's config."""
    import json

    import pytest

    from amodalgen3d_ros.bench import ensure_scenes

    (tmp_path / "manifest.json").write_text(json.dumps(
        {"seed": 1234, "split": "heldout", "scenes": 2, "config": {"depth_noise": True}}))
    with pytest.raises(ValueError, match="depth_noise"):
        ensure_scenes(BenchConfig(data=str(tmp_path), split="heldout", seed=1234, depth_noise=False), progress=False)
    with pytest.raises(ValueError, match="seed"):
        ensure_scenes(BenchConfig(data=str(tmp_path), split="heldout", seed=7), progress=False)
