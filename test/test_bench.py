"""The benchmark measures every method on a scene and summarizes."""

from __future__ import annotations

from amodalgen3d_ros.tools.bench import BenchConfig, bench_scene, markdown, summarize


def test_bench_scene_rows_and_summary(scene_dir):
    cfg = BenchConfig(views=(1, 2), methods=("visible", "support_hull"))
    rows = bench_scene((str(scene_dir), cfg))
    assert len(rows) == 4 and all("error" not in r for r in rows)
    for r in rows:
        assert 0 <= r["fscore_5mm"] <= 1 and r["chamfer_l1_mm"] > 0 and 0 < r["seen_share"] < 1
    s = summarize(rows)
    assert set(s["by_views"]) == {"1/visible", "1/support_hull", "2/visible", "2/support_hull"}
    assert "| 2 | support_hull |" in markdown(s, "t")


def test_confidence_gap_per_occlusion_band_pools_the_bands_vertices():
    """Per occlusion band, the inferred vertices of its objects pooled: mean confidence minus the
    fraction within 5 mm; a method without confidence has no such figure."""
    import numpy as np

    def row(occlusion, n, conf, hits, method="m"):
        bins = np.zeros((3, 10))
        bins[:, 5] = n, conf * n, hits
        return {"views": 1, "method": method, "occlusion": occlusion, "confidence_bins": bins.tolist(),
                **{k: 1.0 for k in ("chamfer_l1_mm", "fscore_5mm", "fscore_10mm", "iou", "chamfer_unseen_mm")}}
    rows = [row(0.1, 100, 0.8, 80), row(0.7, 100, 0.6, 30), row(0.75, 300, 0.6, 180)]
    rows.append({k: v for k, v in row(0.1, 1, 0, 0, "hull").items() if k != "confidence_bins"})
    s = summarize(rows)
    assert abs(s["by_occlusion"]["1/m/0-20%"]["confidence_minus_within_5mm"]) < 1e-9
    assert np.isclose(s["by_occlusion"]["1/m/60-80%"]["confidence_minus_within_5mm"], 0.6 - 210 / 400)
    assert "confidence_minus_within_5mm" not in s["by_occlusion"]["1/hull/0-20%"]
    assert "| 1 | m | 60-80% | 2 |" in markdown(s, "t") and "| +0.075 |" in markdown(s, "t")


def test_means_per_shape_family():
    """Which shapes a method finds hard: per view count, method and family, the rows' means."""
    from amodalgen3d_ros.tools.bench import FAMILY_METRICS

    def row(family, chamfer, method="m"):
        return {"views": 2, "method": method, "occlusion": 0.1, "family": family, "fscore_10mm": 1.0,
                "chamfer_unseen_mm": 1.0, **{k: 1.0 for k in FAMILY_METRICS}, "chamfer_l1_mm": chamfer}
    s = summarize([row("bowl", 6.0), row("bowl", 8.0), row("box", 2.0), row("box", 3.0, "hull")])
    assert set(s["by_family"]) == {"2/m/bowl", "2/m/box", "2/hull/box"}
    assert s["by_family"]["2/m/bowl"]["n"] == 2 and s["by_family"]["2/m/bowl"]["chamfer_l1_mm"] == 7.0
    assert "| 2 | m | bowl | 2 | 7 | 1 | 1 | 1 | 1 |" in markdown(s, "t")
    assert "By shape family" not in markdown({**s, "by_family": {}}, "t")


def test_a_combined_run_can_be_combined_again(tmp_path):
    """Bug: `bench --combine` of a combined run (to re-render it, or add runs) stopped with an
    internal error, KeyError 'config': a combined run holds its runs' configs instead."""
    import json

    from amodalgen3d_ros.tools.bench import combine

    row = {"scene": "scene_00000", "views": 1, "method": "support_hull", "occlusion": 0.1,
           **{k: 1.0 for k in ("chamfer_l1_mm", "fscore_5mm", "fscore_10mm", "iou", "chamfer_unseen_mm")}}
    run = tmp_path / "run"
    run.mkdir()
    (run / "bench.json").write_text(json.dumps({"config": {"split": "heldout", "unposed": False}, "rows": [row],
                                                "machine": {"cpus": 64}}))
    other = tmp_path / "other"
    other.mkdir()
    (other / "bench.json").write_text(json.dumps({"config": {"split": "heldout", "unposed": False},
                                                  "rows": [{**row, "method": "visible_hull"}]}))
    combine([run], tmp_path / "once")
    again = combine([tmp_path / "once", other], tmp_path / "twice")
    assert again["configs"] == [{"split": "heldout", "unposed": False}] * 2 and len(again["rows"]) == 2
    # bug: a combined run's only machine was the one that combined it; each run's is kept, beside its config
    assert again["machines"] == [{"cpus": 64}, None] and "cpus" in again["combined_on"]
    # bug: a combined run's sources were replaced by its own folder's name; each run's is kept
    assert again["combined_from"] == [str(run), str(other)]
    assert "heldout, 1 scenes, posed views" in (tmp_path / "twice" / "bench.md").read_text()


def test_combining_one_methods_rows_for_one_scene_from_two_runs_is_refused(tmp_path, capsys):
    """Two trainings in one runs/ folder name get one label: combined, their rows were pooled into
    one method's means without a word. Now a clear error (and one line from the CLI)."""
    import json

    import pytest

    from amodalgen3d_ros.cli import main
    from amodalgen3d_ros.tools.bench import combine

    row = {"scene": "scene_00000", "views": 1, "posed": True, "occlusion": 0.1,
           **{k: 1.0 for k in ("chamfer_l1_mm", "fscore_5mm", "fscore_10mm", "iou", "chamfer_unseen_mm")}}
    for name, weights in (("a", "runs/abl4_full_1000/flow.safetensors"), ("b", "old/abl4_full_1000/flow.safetensors")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "bench.json").write_text(json.dumps(
            {"config": {"split": "heldout", "unposed": False}, "rows": [{**row, "method": f"amodalgen3d@{weights}"}]}))
    with pytest.raises(ValueError, match="amodalgen3d@abl4_full_1000 has rows for scene_00000 at 1 view"):
        combine([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert main(["bench", "--combine", f"{tmp_path / 'a'},{tmp_path / 'b'}", "--out", str(tmp_path / "out")]) == 2
    assert "internal error" not in capsys.readouterr().err
    combine([tmp_path / "a"], tmp_path / "out")  # one of them: fine


def test_scenes_made_otherwise_are_refused(tmp_path):
    """Bug: `bench --no-depth-noise --data data/heldout` measured the noisy scenes in that folder
    and labelled the run exact-depth. The folder's manifest must match the run's config."""
    import json

    import pytest

    from amodalgen3d_ros.tools.bench import ensure_scenes

    (tmp_path / "manifest.json").write_text(json.dumps(
        {"seed": 1234, "split": "heldout", "scenes": 2, "config": {"depth_noise": True}}))
    with pytest.raises(ValueError, match="depth_noise"):
        ensure_scenes(BenchConfig(data=str(tmp_path), split="heldout", seed=1234, depth_noise=False), progress=False)
    with pytest.raises(ValueError, match="seed"):
        ensure_scenes(BenchConfig(data=str(tmp_path), split="heldout", seed=7), progress=False)


def test_bench_on_a_folder_made_otherwise_is_a_usage_error(tmp_path, capsys):
    """Bug: `bench --split train --data data/calib` (seed 99 scenes) ended in "internal error" with
    exit code 1; it is the user's to fix (another folder, or --seed): one line, exit code 2."""
    import json

    from amodalgen3d_ros.cli import main

    (tmp_path / "manifest.json").write_text(json.dumps(
        {"seed": 99, "split": "train", "scenes": 2, "config": {"depth_noise": True}}))
    assert main(["bench", "--split", "train", "--data", str(tmp_path), "--scenes", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "internal error" not in err and "or pass --seed 99" in err


def test_generator_hypotheses_are_measured_and_saved(scene_dir, tmp_path):
    """The shipped generator asked for 3 hypotheses: three closed meshes in the output frame, each a
    different sample (spread > 0), the best no worse than their mean; the reference gives none;
    save() writes them beside the mesh; the bench's pooled confidence and hypothesis tables appear."""
    import json

    from amodalgen3d_ros.reconstruct import reconstruct, save
    from amodalgen3d_ros.views import read_views_dir

    vs = read_views_dir(scene_dir / "views")
    rec = reconstruct(vs.views[:1], vs.target_id, "amodalgen3d?hypotheses=3")
    assert len(rec.hypotheses) == 3 and all(h.is_watertight for h in rec.hypotheses)
    assert max(abs(h.volume - rec.mesh.volume) for h in rec.hypotheses) < 0.5 * rec.mesh.volume
    paths = save(rec, tmp_path / "obj.ply")
    assert [p.name for p in sorted(tmp_path.glob("obj.hypothesis_*.ply"))] == [f"obj.hypothesis_{k}.ply" for k in range(3)]
    assert json.loads(paths[1].read_text())["hypotheses"] == 3
    assert reconstruct(vs.views[:1], vs.target_id, "amodal_regressor?hypotheses=3").hypotheses == []

    rows = bench_scene((str(scene_dir), BenchConfig(views=(1,), methods=("amodalgen3d?hypotheses=3",))))
    r = rows[0]
    assert "error" not in r, r
    assert r["hypotheses"] == 3 and r["hypotheses_spread_mm"] > 0
    assert r["chamfer_best_hypothesis_mm"] <= r["chamfer_hypothesis_mean_mm"]
    md = markdown(summarize(rows), "t")
    assert "### Hypotheses" in md and "### Confidence over all inferred vertices" in md


def test_cpu_info_names_the_host_speed_figures_come_from(tmp_path):
    from amodalgen3d_ros.tools.bench import cpu_info

    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6430\nflags\t\t: fpu sse4_2 avx2 fma avx512f amx_tile\n"
                 "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Gold 6430\nflags\t\t: fpu sse4_2 avx2 fma avx512f amx_tile\n")
    assert cpu_info(str(f)) == {"cpu_model": "Intel(R) Xeon(R) Gold 6430", "cpu_vector_flags": "amx_tile avx2 avx512f fma sse4_2"}
    assert cpu_info(str(tmp_path / "absent")) == {}


def test_pose_bench_rows_say_how_each_view_was_registered(scene_dir):
    from amodalgen3d_ros.tools.bench import bench_poses_scene

    rows = bench_poses_scene((str(scene_dir), BenchConfig()))
    assert [r["view"] for r in rows] == list(range(1, 8))
    for r in rows:
        assert 0 <= r["baseline_deg"] <= 180
        if r["registered"]:
            assert r["by"] in ("features", "objects") and r["rot_err_deg"] >= 0 and r["trans_err_mm"] >= 0
        else:
            assert r["by"] == "" and r["reason"]
    assert any(r["registered"] for r in rows)
