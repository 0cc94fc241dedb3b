"""Real meshes as a shape source: units, repair, the held-out split by object, rest poses, scenes."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from amodalgen3d_ros.tools import shapes, synth


def collection(root, names=("mug_a", "can_b", "box_c", "jar_d", "tin_e", "cup_f", "pot_g", "bag_h")):
    root.mkdir(parents=True, exist_ok=True)
    for k, n in enumerate(names):
        m = trimesh.creation.box(extents=[6.0 + k, 8.0, 10.0])  # centimetres
        if k == 0:  # a scan with a hole
            m.update_faces(np.arange(len(m.faces)) != 0)
        m.export(root / f"{n}.obj")
    return root


def test_a_collection_in_centimetres_comes_out_in_metres_closed_and_split_by_object(tmp_path):
    src = shapes.ShapeSource.parse(str(collection(tmp_path / "cm")))
    files = shapes.mesh_files(src)
    assert len(files) == 8
    for f in files:
        m = shapes.load_real_mesh(src, f)
        assert m.is_watertight and m.volume > 0, f.name
        assert 0.099 < m.extents.max() < 0.131 and abs(m.bounds[0, 2]) < 1e-9
    train, held = shapes.real_shapes((str(src.root),), "train"), shapes.real_shapes((str(src.root),), "heldout")
    assert len(train) + len(held) == 8 and {p for _, p in train}.isdisjoint({p for _, p in held})
    # the split is a function of the name alone: the same object is held out in any folder
    again = shapes.real_shapes((str(collection(tmp_path / "copy")),), "heldout")
    assert [p.name for _, p in again] == [p.name for _, p in held]


def test_a_collection_that_lost_its_sizes_gets_plausible_ones(tmp_path):
    root = collection(tmp_path / "kit")
    src = shapes.ShapeSource.parse(f"{root}:middle=0.05-0.08")
    sides = [np.sort(shapes.load_real_mesh(src, f).extents)[1] for f in shapes.mesh_files(src)]
    assert all(0.0499 < s < 0.0801 for s in sides) and np.ptp(sides) > 0.005  # drawn per object
    for bad in (f"{root}:middle=small", f"{root}:colour=red", str(tmp_path / "missing")):
        with pytest.raises(ValueError):
            shapes.ShapeSource.parse(bad)


def test_rest_poses_stand_on_the_table():
    m = trimesh.creation.box(extents=[0.02, 0.05, 0.2])
    rng = np.random.default_rng(0)
    heights = {round(float(shapes.rest_pose(m, rng).extents[2]), 3) for _ in range(30)}
    assert heights <= {0.02, 0.05, 0.2} and len(heights) >= 2  # upright and lying
    assert abs(shapes.rest_pose(m, rng).bounds[0, 2]) < 1e-9


def test_scenes_of_real_targets_and_plain_tables(tmp_path):
    root = collection(tmp_path / "cm")
    cfg = synth.SynthConfig(width=80, height=60, n_views=2, shapes=(str(root),), plain_table_prob=1.0)
    rs = synth.render_scene(3, "heldout", 0, cfg)
    held = {shapes.object_name(s, p) for s, p in shapes.real_shapes((str(root),), "heldout")}
    assert rs.family == f"real:{root.name}" and rs.shape in held
    assert 0.05 < rs.target_mesh.extents.max() < 0.15
    # without real shapes or plain tables, a scene draws nothing more: procedural scenes stay as they were
    a = synth.render_scene(3, "heldout", 0, synth.SynthConfig(width=80, height=60, n_views=2))
    b = synth.render_scene(3, "heldout", 0, synth.SynthConfig(width=80, height=60, n_views=2, real_share=0.5))
    assert a.family == b.family and np.array_equal(a.views[1].color, b.views[1].color)
