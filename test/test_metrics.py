"""Metrics of known shapes give known numbers."""

from __future__ import annotations

import numpy as np
import trimesh

from amodalgen3d_ros.tools.metrics import evaluate, volume_iou


def test_identical_meshes_are_perfect():
    m = trimesh.creation.icosphere(subdivisions=4, radius=0.05)
    e = evaluate(m, m)
    assert e["chamfer_l1_mm"] < 1.0  # sampling only
    assert e["fscore_5mm"] == 1.0 and e["fscore_10mm"] == 1.0
    assert e["iou"] > 0.99 and e["watertight"] and e["outward"]


def test_concentric_spheres_chamfer_is_the_radius_gap():
    a = trimesh.creation.icosphere(subdivisions=5, radius=0.050)
    b = trimesh.creation.icosphere(subdivisions=5, radius=0.058)
    e = evaluate(b, a)
    assert abs(e["chamfer_l1_mm"] - 8.0) < 0.3
    assert e["fscore_5mm"] < 0.01 and e["fscore_10mm"] > 0.99
    assert abs(e["iou"] - (50 / 58) ** 3) < 0.02


def test_half_shifted_cubes_iou_is_one_third():
    a = trimesh.creation.box(extents=[0.1, 0.1, 0.1])
    b = a.copy().apply_translation([0.05, 0, 0])
    assert abs(volume_iou(a, b) - 1 / 3) < 0.01


def test_seen_unseen_split():
    gt = trimesh.creation.box(extents=[0.1, 0.1, 0.1])
    pts, _ = trimesh.sample.sample_surface(gt, 5000, seed=0)
    seen = pts[:, 2] > 0.049  # the top face was seen
    pred = gt.copy().apply_translation([0, 0, 0])
    e = evaluate(pred, gt, seen, pts)
    assert e["completeness_seen_mm"] < 1.0 and e["completeness_unseen_mm"] < 1.5
    assert 0.1 < e["seen_share"] < 0.25


def plane_and_vertices(n_near: int, n_far: int) -> tuple[np.ndarray, np.ndarray]:
    """Truth: the plane z = 0, densely sampled; vertices: n_near 1 mm above it, then n_far 20 mm."""
    rng = np.random.default_rng(0)
    g = np.arange(-0.6, 0.6, 0.002)
    gt = np.c_[np.stack(np.meshgrid(g, g), -1).reshape(-1, 2), np.zeros(len(g) ** 2)]
    near = np.c_[rng.uniform(-0.5, 0.5, (n_near, 2)), np.full(n_near, 0.001)]
    far = np.c_[rng.uniform(-0.5, 0.5, (n_far, 2)), np.full(n_far, 0.02)]
    return np.r_[near, far], gt


def test_confidence_auroc_ranks_errors():
    from amodalgen3d_ros.tools.metrics import confidence_auroc

    v, gt = plane_and_vertices(50, 50)
    assert confidence_auroc(v, np.r_[np.full(50, 0.9), np.full(50, 0.3)], gt) == 1.0
    assert confidence_auroc(v, np.r_[np.full(50, 0.3), np.full(50, 0.9)], gt) == 0.0
    assert confidence_auroc(v, np.full(100, 0.7), gt) == 0.5  # constant: no information
    # measured vertices (confidence 1) are left out; too few of a kind is NaN, not a number
    assert np.isnan(confidence_auroc(v, np.ones(100), gt))
    assert np.isnan(confidence_auroc(v, np.r_[np.full(50, 0.9), np.ones(50)], gt))


def test_confidence_ece_of_an_object():
    """The bench's per-object ECE: the inferred vertices' (confidence < 1) calibration bins."""
    from amodalgen3d_ros.tools.metrics import confidence_bins, ece_from_bins

    def ece(conf):
        return ece_from_bins(confidence_bins(v, conf, gt), min_count=10)

    v, gt = plane_and_vertices(60, 40)
    # 60 % are within 5 mm: a confidence of 0.6 everywhere is calibrated, 0.95 is not
    assert ece(np.full(100, 0.6)) < 1e-9
    assert abs(ece(np.full(100, 0.95)) - 0.35) < 1e-9
    # confident where right and doubtful where wrong, each exactly: calibrated too
    assert ece(np.r_[np.full(60, 0.999), np.full(40, 0.0)]) < 0.01
    assert np.isnan(ece(np.ones(100)))  # nothing inferred
    assert np.isnan(ece(np.r_[np.full(9, 0.5), np.ones(91)]))  # too few inferred to say


def test_pooled_calibration_bins_add_up_over_objects():
    """Two objects, each miscalibrated the opposite way, pool to their common vertices' ECE, not to
    the mean of their own (the bench quotes both)."""
    from amodalgen3d_ros.tools.metrics import calibration_bins, confidence_bins, ece_from_bins, expected_calibration_error

    v, gt = plane_and_vertices(60, 40)
    a = confidence_bins(v, np.full(100, 0.6), gt)
    assert a.shape == (3, 10) and a[0].sum() == 100 and a[2].sum() == 60
    assert ece_from_bins(a) < 1e-9
    c1, h1 = np.full(50, 0.75), np.r_[np.ones(25), np.zeros(25)]
    c2, h2 = np.full(50, 0.75), np.ones(50)
    pooled = ece_from_bins(calibration_bins(c1, h1) + calibration_bins(c2, h2))
    assert abs(pooled - 0.0) < 1e-9  # 75 % of the 100 vertices are hits
    assert abs(0.5 * (expected_calibration_error(c1, h1) + expected_calibration_error(c2, h2)) - 0.25) < 1e-9
    assert confidence_bins(v, np.ones(100), gt).sum() == 0  # measured surface is left out
