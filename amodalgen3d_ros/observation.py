"""What the views say about one target, in the output frame: the input of every method.

Poses (given or estimated), the fused visible points, the support plane, and a volumetric
reading of the depth rays over a grid: where they saw the target's surface, where they saw
empty space, and what lies behind the target or behind its occluders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import FusedTarget, ViewPoses, fit_support_plane, fuse_target, invert, resolve_poses
from .surface import Grid
from .views import TargetMasks, View, ViewsFormatError


@dataclass
class Observation:
    views: list[View]
    target_id: int
    poses: ViewPoses
    fused: FusedTarget
    masks: list[TargetMasks]
    plane: np.ndarray | None  # (4,) support plane n.x + d = 0, n up; None if not found

    @property
    def frame(self) -> str:
        return self.poses.frame

    def used_views(self) -> list[int]:
        return [i for i in self.poses.used if self.views[i].depth_m is not None and self.masks[i].visible.any()]


def observe(views: list[View], target_id: int, seed: int = 0, poses: ViewPoses | None = None,
            registration_budget_s: float | None = None) -> Observation:
    """Poses, masks, fused points and support plane for one target. Raises ViewsFormatError if
    the target has no usable pixels."""
    if not views:
        raise ViewsFormatError("no views")
    poses = poses or resolve_poses(views, seed=seed, budget_s=registration_budget_s)
    masks = [v.target_masks(target_id) for v in views]
    fused = fuse_target(views, target_id, poses, seed=seed, masks=masks)
    plane = fit_support_plane(views, poses, fused.points, seed=seed)
    return Observation(views, target_id, poses, fused, masks, plane)


def support_points(obs: Observation) -> np.ndarray:
    """(2N, 3) the visible points and their drop onto the support plane (the gravity prior), or
    the visible points alone when no plane was found."""
    pts = obs.fused.points
    if obs.plane is None:
        return pts
    n, d = obs.plane[:3], obs.plane[3]
    return np.concatenate([pts, pts - np.outer(pts @ n + d, n)])


def object_cube(obs: Observation, scale: float = 2.0, min_side_m: float = 0.04) -> tuple[np.ndarray, float]:
    """A cube (centre (3,), side m) that the whole target fits in, hidden part included.

    Centred on the visible points pushed half an extent away from the cameras (the hidden part is
    behind what was seen) and ``scale`` times the visible extent; it never reaches far below the
    support plane.
    """
    pts = obs.fused.points
    lo, hi = np.percentile(pts, 1, axis=0), np.percentile(pts, 99, axis=0)
    ext = float(np.max(hi - lo))
    center = (lo + hi) / 2
    cams = np.array([obs.poses.T_out_cam[i][:3, 3] for i in obs.used_views()])  # type: ignore[index]
    away = center - cams.mean(0)
    away /= max(np.linalg.norm(away), 1e-9)
    side = max(ext * scale, min_side_m)
    center = center + away * ext * 0.25
    if obs.plane is not None:
        n, d = obs.plane[:3], obs.plane[3]
        # keep the cube's lowest point at most a few voxels under the plane
        height = center @ n + d
        lowest = height - side / 2 * np.abs(n).sum()
        if lowest < -0.02 * side:
            center = center + n * (-0.02 * side - lowest) * 0.5
    return center, side


@dataclass
class RayEvidence:
    """Per voxel, counts over views: seen empty, seen as target surface band, behind the target
    surface, behind an occluder; and the truncated signed distance average (positive outside)."""

    free: np.ndarray  # (X, Y, Z) int
    behind_target: np.ndarray
    behind_occluder: np.ndarray
    tsdf: np.ndarray  # (X, Y, Z) float in [-1, 1], NaN where no view measured near the voxel
    below_plane: np.ndarray  # (X, Y, Z) bool


def ray_evidence(obs: Observation, grid: Grid, trunc_m: float) -> RayEvidence:
    s = grid.shape
    free = np.zeros(s, np.int32)
    behind_t = np.zeros(s, np.int32)
    behind_o = np.zeros(s, np.int32)
    sdf_sum = np.zeros(s, np.float64)
    sdf_w = np.zeros(s, np.int32)
    for i in obs.used_views():
        v = obs.views[i]
        assert v.depth_m is not None
        x, y, z = grid.centers_in_frame(invert(obs.poses.T_out_cam[i]))  # type: ignore[arg-type]
        zs = np.where(z > 1e-9, z, 1e-9)
        u = np.round(v.K[0, 0] * x / zs + v.K[0, 2]).astype(np.int64)
        vv = np.round(v.K[1, 1] * y / zs + v.K[1, 2]).astype(np.int64)
        ok = (z > 0.05) & (u >= 0) & (u < v.width) & (vv >= 0) & (vv < v.height)
        flat = np.where(ok, vv * v.width + u, 0)  # one gather per image instead of fancy 2D indexing
        D = np.where(ok, v.depth_m.ravel()[flat], np.float32(0))
        has = D > 0  # implies ok
        sdf = D - z
        is_free = has & (sdf > trunc_m)
        free += is_free
        tgt = has & (v.labels.ravel()[flat] == obs.target_id)
        near = tgt & (np.abs(sdf) <= trunc_m)
        sdf_sum[near] += sdf[near] / trunc_m
        sdf_w += near
        behind_t += tgt & (sdf < -trunc_m)
        behind_o += ok & obs.masks[i].occluder.ravel()[flat] & ~is_free
    tsdf = np.where(sdf_w > 0, sdf_sum / np.maximum(sdf_w, 1), np.nan)
    below = np.zeros(s, bool)
    if obs.plane is not None:
        x, y, z = grid.centers_in_frame(np.eye(4))
        n = obs.plane[:3]
        below = n[0] * x + n[1] * y + n[2] * z + obs.plane[3] < 0
    return RayEvidence(free, behind_t, behind_o, tsdf, below)
