"""Classical baselines on a rendered scene: closed, outward, in the right place."""

from __future__ import annotations

import numpy as np
import pytest

from amodalgen3d_ros.baselines import BASELINES
from amodalgen3d_ros.reconstruct import reconstruct, save
from amodalgen3d_ros.tools.metrics import evaluate
from amodalgen3d_ros.views import read_views_dir


@pytest.mark.parametrize("method", sorted(BASELINES))
def test_baseline_is_closed_and_near_the_truth(scene0, method):
    rec = reconstruct(scene0.views[:4], scene0.target_id, method)
    assert rec.frame == "world"
    assert rec.mesh.is_watertight and rec.mesh.volume > 0
    e = evaluate(rec.mesh, scene0.target_mesh)
    # every baseline at least overlaps the object: centroid within a few cm, some F-score
    assert np.linalg.norm(rec.mesh.centroid - scene0.target_mesh.centroid) < 0.05
    assert e["fscore_10mm"] > 0.3
    assert len(rec.vertex_confidence) == len(rec.mesh.vertices)


def test_hull_methods_rank_as_expected_on_volume(scene0):
    """Visible points only have almost no volume; hulls have much more."""
    vis = evaluate(reconstruct(scene0.views[:4], scene0.target_id, "visible").mesh, scene0.target_mesh)
    hull = evaluate(reconstruct(scene0.views[:4], scene0.target_id, "support_hull").mesh, scene0.target_mesh)
    assert hull["iou"] > vis["iou"] + 0.2


def test_reconstruct_save_writes_contract_outputs(scene_dir, tmp_path):
    vs = read_views_dir(scene_dir / "views")
    rec = reconstruct(vs.views[:2], vs.target_id, "support_hull")
    mesh_path, json_path = save(rec, tmp_path / "out.ply")
    import json

    info = json.loads(json_path.read_text())
    for k in ("track_id", "n_views_used", "frame", "seconds"):
        assert k in info
    assert info["frame"] == "world" and info["n_views_used"] == 2
    import trimesh

    assert trimesh.load(mesh_path).is_watertight
