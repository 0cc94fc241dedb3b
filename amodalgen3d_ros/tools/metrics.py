"""Reconstruction metrics against a ground-truth mesh, in metres unless the name says mm.

Right where seen, plausible where not: the ground-truth surface is split into the part some used
camera saw and the part none did, and accuracy/completeness are reported for each.
"""

from __future__ import annotations

import numpy as np
import open3d as o3d
import trimesh
from scipy.spatial import cKDTree
from scipy.stats import rankdata

from ..geometry import invert, project, transform
from ..views import View


def sample_surface(mesh: trimesh.Trimesh, n: int, seed: int = 0) -> np.ndarray:
    pts, _ = trimesh.sample.sample_surface(mesh, n, seed=seed)
    return np.asarray(pts)


def seen_mask(points_world: np.ndarray, views: list[View], target_id: int,
              clean_depths: list[np.ndarray], tol_m: float = 0.004) -> np.ndarray:
    """(N,) bool: a ground-truth surface point is seen if some view's exact depth lands on it
    at a target pixel. ``views`` need T_world_cam (ground truth)."""
    seen = np.zeros(len(points_world), bool)
    for v, d in zip(views, clean_depths):
        assert v.T_world_cam is not None
        pc = transform(invert(v.T_world_cam), points_world)
        uv, z = project(pc, v.K)
        u = np.round(uv[:, 0]).astype(int)
        vv = np.round(uv[:, 1]).astype(int)
        ok = (z > 0) & (u >= 0) & (u < v.width) & (vv >= 0) & (vv < v.height)
        idx = np.nonzero(ok)[0]
        hit = (v.labels[vv[idx], u[idx]] == target_id) & (np.abs(d[vv[idx], u[idx]] - z[idx]) < tol_m)
        seen[idx[hit]] = True
    return seen


def volume_iou(pred: trimesh.Trimesh, gt: trimesh.Trimesh, n: int = 200000, seed: int = 0) -> float:
    """Monte-Carlo IoU over the union of both bounding boxes."""
    lo = np.minimum(pred.bounds[0], gt.bounds[0])
    hi = np.maximum(pred.bounds[1], gt.bounds[1])
    pts = np.random.default_rng(seed).uniform(lo, hi, (n, 3)).astype(np.float32)
    a, b = inside(pred, pts), inside(gt, pts)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 0.0


def _scene(mesh: trimesh.Trimesh) -> o3d.t.geometry.RaycastingScene:
    sc = o3d.t.geometry.RaycastingScene()
    tm = o3d.t.geometry.TriangleMesh()
    tm.vertex.positions = o3d.core.Tensor(np.asarray(mesh.vertices, np.float32))
    tm.triangle.indices = o3d.core.Tensor(np.asarray(mesh.faces, np.int32))
    sc.add_triangles(tm)
    return sc


def inside(mesh: trimesh.Trimesh, pts: np.ndarray) -> np.ndarray:
    """(N,) bool: points inside a closed mesh."""
    return _scene(mesh).compute_occupancy(o3d.core.Tensor(pts.astype(np.float32)), nsamples=3).numpy() > 0.5


def distance_to_mesh(mesh: trimesh.Trimesh, pts: np.ndarray) -> np.ndarray:
    """(N,) unsigned distance in metres from points to the mesh surface."""
    return _scene(mesh).compute_distance(o3d.core.Tensor(pts.astype(np.float32))).numpy().astype(np.float64)


def mesh_sanity(mesh: trimesh.Trimesh) -> dict:
    return {"watertight": bool(mesh.is_watertight),
            "outward": bool(mesh.is_winding_consistent and mesh.volume > 0)}


def confidence_auroc(vertices: np.ndarray, confidence: np.ndarray, gt_points: np.ndarray,
                     tol_m: float = 0.005, min_each: int = 10) -> float:
    """How well per-vertex confidence ranks the vertices' errors, on the vertices it was inferred
    for (confidence < 1; measured surface is published at 1): the probability that a vertex within
    ``tol_m`` of the truth has a higher confidence than one farther away (ties count half). 0.5 is
    no information (a constant confidence); NaN when either group has fewer than ``min_each``."""
    inferred = confidence < 1.0
    if not inferred.any():
        return float("nan")
    err, _ = cKDTree(gt_points).query(vertices[inferred])
    c = confidence[inferred].astype(np.float64)
    hit = err <= tol_m
    if hit.sum() < min_each or (~hit).sum() < min_each:
        return float("nan")
    return auroc(c, hit)


def auroc(confidence: np.ndarray, hit: np.ndarray) -> float:
    """P(a hit's confidence > a miss's), ties counting half: Mann-Whitney U from the ranks of the
    pooled confidences (average ranks for ties). Needs at least one hit and one miss."""
    hit = np.asarray(hit, bool)
    r = rankdata(np.asarray(confidence, np.float64))
    n_hit, n_miss = int(hit.sum()), int((~hit).sum())
    return float((r[hit].sum() - n_hit * (n_hit + 1) / 2) / (n_hit * n_miss))


def expected_calibration_error(confidence: np.ndarray, hit: np.ndarray, bins: int = 10) -> float:
    """The count-weighted mean over equal-width confidence bins of |mean confidence - fraction of
    hits| (confidence in [0, 1], hit bool, same length)."""
    return ece_from_bins(calibration_bins(confidence, hit, bins))


def calibration_bins(confidence: np.ndarray, hit: np.ndarray, bins: int = 10) -> np.ndarray:
    """(3, bins): per equal-width confidence bin, the count, the sum of confidences and the number
    of hits; sums of these over objects give the calibration over all their vertices."""
    c, hit = np.asarray(confidence, np.float64), np.asarray(hit, np.float64)
    b = np.minimum((c * bins).astype(int), bins - 1)
    return np.stack([np.bincount(b, minlength=bins), np.bincount(b, c, bins), np.bincount(b, hit, bins)]).astype(float)


def ece_from_bins(sums: np.ndarray, min_count: int = 1) -> float:
    """ECE of calibration_bins' sums; NaN when they hold fewer than ``min_count`` vertices."""
    n, c, hit = np.asarray(sums, float)
    if n.sum() < max(min_count, 1):
        return float("nan")
    return float(np.abs(c - hit).sum() / n.sum())  # per bin: n * |mean c - mean hit|


def confidence_bins(vertices: np.ndarray, confidence: np.ndarray, gt_points: np.ndarray, tol_m: float = 0.005,
                    bins: int = 10) -> np.ndarray:
    """calibration_bins of the inferred vertices (confidence < 1) against being within tol_m of the truth."""
    inferred = confidence < 1.0
    if not inferred.any():
        return np.zeros((3, bins))
    err, _ = cKDTree(gt_points).query(vertices[inferred])
    return calibration_bins(confidence[inferred], err <= tol_m, bins)


def evaluate(pred: trimesh.Trimesh, gt: trimesh.Trimesh, gt_seen: np.ndarray | None = None,
             gt_points: np.ndarray | None = None, n: int = 20000, seed: int = 0) -> dict:
    """Metrics of ``pred`` against ``gt`` (same frame).

    gt_points (M, 3) and gt_seen (M,) bool: ground-truth surface samples and which were seen; if
    given, accuracy/completeness are also split into seen/unseen. Distances in mm.
    """
    if gt_points is None:
        gt_points = sample_surface(gt, n, seed)
    pred_points = sample_surface(pred, n, seed + 1)
    d_pred_gt, nn = cKDTree(gt_points).query(pred_points)  # accuracy
    d_gt_pred, _ = cKDTree(pred_points).query(gt_points)  # completeness
    acc, comp = d_pred_gt.mean() * 1000, d_gt_pred.mean() * 1000
    out = {"chamfer_l1_mm": 0.5 * (acc + comp), "accuracy_mm": acc, "completeness_mm": comp}
    for tau_mm in (5, 10):
        p = (d_pred_gt < tau_mm / 1000).mean()
        r = (d_gt_pred < tau_mm / 1000).mean()
        out[f"fscore_{tau_mm}mm"] = float(2 * p * r / (p + r)) if p + r > 0 else 0.0
    out["iou"] = volume_iou(pred, gt, seed=seed)
    if gt_seen is not None:
        pred_seen = gt_seen[nn]  # a predicted point belongs to the region of its nearest truth
        for name, g, p_ in (("seen", gt_seen, pred_seen), ("unseen", ~gt_seen, ~pred_seen)):
            a = d_pred_gt[p_].mean() * 1000 if p_.any() else np.nan
            c = d_gt_pred[g].mean() * 1000 if g.any() else np.nan
            out[f"accuracy_{name}_mm"] = a
            out[f"completeness_{name}_mm"] = c
            out[f"chamfer_{name}_mm"] = 0.5 * (a + c)
            pr = (d_pred_gt[p_] < 0.005).mean() if p_.any() else np.nan
            rc = (d_gt_pred[g] < 0.005).mean() if g.any() else np.nan
            out[f"fscore_5mm_{name}"] = float(2 * pr * rc / (pr + rc)) if (pr + rc) > 0 else 0.0
        out["seen_share"] = float(gt_seen.mean())
    out.update(mesh_sanity(pred))
    return {k: float(v) if not isinstance(v, bool) else v for k, v in out.items()}
