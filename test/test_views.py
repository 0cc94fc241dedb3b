"""The views directory contract (../shared/spec/views-format.md), including malformed input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from amodalgen3d_ros.geometry import backproject, transform
from amodalgen3d_ros.views import (
    View,
    ViewsFormatError,
    crop_to_target,
    read_views_dir,
    target_masks,
    target_region,
    write_views_dir,
)


def _view(h=20, w=30, target=3, depth=0.5):
    labels = np.zeros((h, w), np.int64)
    labels[5:15, 10:20] = target
    d = np.full((h, w), 1.0, np.float32)
    d[labels == target] = depth
    K = np.array([[50.0, 0, w / 2], [0, 50.0, h / 2], [0, 0, 1]])
    return View(np.full((h, w, 3), 100, np.uint8), d, K, labels, np.eye(4), name="000")


def test_round_trip(tmp_path):
    v = _view()
    write_views_dir(tmp_path / "v", [v, v], target_id=3)
    vs = read_views_dir(tmp_path / "v")
    assert vs.target_id == 3 and len(vs.views) == 2 and vs.all_posed
    np.testing.assert_allclose(vs.views[1].depth_m, v.depth_m, atol=1e-3)
    np.testing.assert_array_equal(vs.views[0].labels, v.labels)
    np.testing.assert_array_equal(vs.views[0].color, v.color)


def test_depth_scale_and_target_override(tmp_path):
    v = _view()
    write_views_dir(tmp_path / "v", [v], target_id=9, depth_scale=0.0001)
    vs = read_views_dir(tmp_path / "v", target_id=3)
    assert vs.target_id == 3
    np.testing.assert_allclose(vs.views[0].depth_m[10, 15], 0.5, atol=1e-4)


def test_nan_and_negative_depth_mean_no_measurement():
    v = _view()
    d = v.depth_m.copy()
    d[0, 0], d[0, 1], d[0, 2] = np.nan, -1, np.inf
    v2 = View(v.color, d, v.K, v.labels)
    assert v2.depth_m[0, :3].tolist() == [0, 0, 0]


def _wider(v: View, pad: int = 200) -> View:
    """The same camera with a sensor grown by pad pixels on every side (seeing nothing there)."""
    K = v.K.copy()
    K[:2, 2] += pad
    p2, p3 = ((pad, pad), (pad, pad)), ((pad, pad), (pad, pad), (0, 0))
    return View(np.pad(v.color, p3), np.pad(v.depth_m, p2), K, np.pad(v.labels, p2), v.T_world_cam)


def test_crop_sees_the_same_points_and_cropping_again_changes_nothing(scene0):
    v = _wider(scene0.views[0])
    t = scene0.target_id
    r = target_region(v, t)
    assert r is not None and r != (0, v.height, 0, v.width)  # the target is small in the frame
    c = v.crop(*r)
    assert c.labels.shape == (r[1] - r[0], r[3] - r[2]) and c.T_world_cam is v.T_world_cam
    p_full, _ = backproject(v.depth_m, v.K, v.labels == t)
    p_crop, _ = backproject(c.depth_m, c.K, c.labels == t)
    np.testing.assert_allclose(transform(c.T_world_cam, p_crop), transform(v.T_world_cam, p_full), atol=1e-6)
    assert (c.labels == t).sum() == (v.labels == t).sum()
    assert set(target_masks(c, t).occluder_ids) == set(target_masks(v, t).occluder_ids)
    assert target_region(c, t) == (0, c.height, 0, c.width)  # idempotent: the crop is its own region
    assert target_region(v, 12345) is None


def test_only_posed_view_sets_are_cropped(scene0):
    views, t = [_wider(v) for v in scene0.views[:3]], scene0.target_id
    assert all(c.width < v.width or c.height < v.height for c, v in zip(crop_to_target(views, t), views))
    unposed = [View(v.color, v.depth_m, v.K, v.labels, None) for v in views]
    assert all(c is v for c, v in zip(crop_to_target([views[0]] + unposed[1:], t), [views[0]] + unposed[1:]))


def test_occluder_in_front_is_found_and_behind_is_not():
    v = _view()
    v.labels[5:15, 20:25] = 4  # touching, nearer
    v.depth_m[5:15, 20:25] = 0.3
    v.labels[5:15, 5:10] = 5  # touching, farther
    v.depth_m[5:15, 5:10] = 0.9
    m = target_masks(v, 3)
    assert m.occluder_ids == [4]
    assert m.occluder[10, 22] and not m.occluder[10, 7]
    assert 0 < m.visibility_ratio < 1


def test_dilation_is_scipys_four_connected_one():
    """target_masks dilates with OpenCV over a diamond: the same pixels as scipy's iterations."""
    from scipy import ndimage

    from amodalgen3d_ros.views import _dilate

    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = rng.integers(1, 40, 2)
        mask = rng.random((h, w)) < rng.random() * 0.1
        for r in (1, 4):
            np.testing.assert_array_equal(_dilate(mask, r), ndimage.binary_dilation(mask, iterations=r))
    window = (rng.random((60, 60)) < 0.02)[5:40, 10:50]  # not contiguous, as target_masks' windows are
    np.testing.assert_array_equal(_dilate(window, 4), ndimage.binary_dilation(window, iterations=4))


@pytest.mark.parametrize("breakage, message", [
    ("no_scene", "scene.json"),
    ("no_ref", "reference view 000"),
    ("no_color", "color.png"),
    ("bad_json", "not valid JSON"),
    ("size", "camera.json says"),
    ("target", "appears in no view"),
    ("depth_8bit", "16-bit"),
    ("pose", "T_world_camera"),
])
def test_malformed_directories(tmp_path, breakage, message):
    root = write_views_dir(tmp_path / "v", [_view(), _view()], target_id=3)
    if breakage == "no_scene":
        (root / "scene.json").unlink()
    elif breakage == "no_ref":
        shutil.move(root / "000", root / "005")
    elif breakage == "no_color":
        (root / "001" / "color.png").unlink()
    elif breakage == "bad_json":
        (root / "001" / "camera.json").write_text("{not json")
    elif breakage == "size":
        cam = json.loads((root / "001" / "camera.json").read_text())
        cam["width"] = 31
        (root / "001" / "camera.json").write_text(json.dumps(cam))
    elif breakage == "target":
        (root / "scene.json").write_text(json.dumps({"target_id": 77}))
    elif breakage == "depth_8bit":
        cv2.imwrite(str(root / "000" / "depth.png"), np.zeros((20, 30), np.uint8))
    elif breakage == "pose":
        cam = json.loads((root / "000" / "camera.json").read_text())
        cam["T_world_camera"] = [1, 2, 3]
        (root / "000" / "camera.json").write_text(json.dumps(cam))
    with pytest.raises(ViewsFormatError, match=message):
        read_views_dir(root)


def test_view_without_target_does_not_break(tmp_path):
    a, b = _view(), _view()
    b.labels[:] = 0
    root = write_views_dir(tmp_path / "v", [a, b], target_id=3)
    assert len(read_views_dir(root).views) == 2


def test_cli_bad_input_is_one_line_and_nonzero(tmp_path):
    root = write_views_dir(tmp_path / "v", [_view()], target_id=3)
    (root / "000" / "labels.png").unlink()
    r = subprocess.run([sys.executable, "-m", "amodalgen3d_ros.cli", "reconstruct", str(root), "-o",
                        str(tmp_path / "o.ply")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "labels.png" in r.stderr
