"""Model inputs from an Observation: the object cube, the partial geometry grid, the view crops.

The cube frame is gravity-aligned and view-relative, the same whether poses were given (world
frame) or estimated (reference camera frame): z is the support plane's normal (or the reference
camera's up when no plane is found), x is the reference camera's viewing direction projected on
the plane. So a network trained on posed data sees the same thing on unposed data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .geometry import FusedTarget, ViewPoses, invert, transform
from .observation import Observation, ray_evidence, support_points
from .surface import Grid

GEO_CHANNELS = ["visible", "free", "behind_target", "behind_occluder", "below_plane", "tsdf", "tsdf_valid",
                "support_hull"]
FEATURES_VERSION = 2  # bump when the inputs change: prepared training data is keyed by it
IMG_CHANNELS = ["r", "g", "b", "depth", "depth_valid", "visible", "occluder",
                "ray_dx", "ray_dy", "ray_dz", "ray_mx", "ray_my", "ray_mz"]


@dataclass(frozen=True)
class FeatureConfig:
    res: int = 32  # generator grid: 32^3 voxels in the cube
    crop: int = 32  # view crop side in pixels (image tokens come from it)
    max_views: int = 4  # views the model attends to (the most visible ones)
    cube_scale: float = 1.8  # cube side over the visible extent: room for the hidden part
    min_side_m: float = 0.05


@dataclass
class ModelInputs:
    """geo: (7, R, R, R) float32 partial geometry; views: (V, 13, C, C) float32 crops;
    view_valid: (V,) bool; tau: (V,) float32 visibility ratios; T_out_cube: (4, 4) cube frame in
    the output frame (cube centred at its origin); side_m: cube side."""

    geo: np.ndarray
    views: np.ndarray
    view_valid: np.ndarray
    tau: np.ndarray
    T_out_cube: np.ndarray
    side_m: float

    def grid(self, res: int) -> Grid:
        """A grid over the cube, in cube coordinates."""
        return Grid(np.full(3, -self.side_m / 2), self.side_m / res, (res, res, res))


def cube_frame(obs: Observation, cfg: FeatureConfig) -> tuple[np.ndarray, float]:
    """T_out_cube (4, 4) and side (m) of the object cube, sized so the hidden part fits."""
    T_ref = obs.poses.T_out_cam[obs.used_views()[0]]
    assert T_ref is not None
    if obs.plane is not None:
        z = obs.plane[:3]
    else:
        z = -T_ref[:3, 1]  # the camera's up
    look = T_ref[:3, 2]
    x = look - z * (look @ z)
    if np.linalg.norm(x) < 1e-6:  # looking straight down
        x = T_ref[:3, 0] - z * (T_ref[:3, 0] @ z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z], axis=1)
    pts_c = (obs.fused.points - obs.fused.points.mean(0)) @ R
    lo, hi = np.percentile(pts_c, 1, axis=0), np.percentile(pts_c, 99, axis=0)
    ext = float(np.max(hi - lo))
    side = max(ext * cfg.cube_scale, cfg.min_side_m)
    c = (lo + hi) / 2
    c[0] += 0.25 * ext  # the hidden part lies beyond the visible, away from the camera
    if obs.plane is not None:
        # rest the cube's floor just under the support plane
        height_of_mean = obs.fused.points.mean(0) @ obs.plane[:3] + obs.plane[3]
        floor = -height_of_mean  # plane height in the centred cube coordinates
        c[2] = floor + side / 2 - 0.03 * side
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = obs.fused.points.mean(0) + R @ c
    return T, side


def in_frame(obs: Observation, T_out_new: np.ndarray) -> Observation:
    """The same observation expressed in another frame (T_out_new maps new -> out)."""
    T_new_out = invert(T_out_new)
    poses = ViewPoses([None if T is None else T_new_out @ T for T in obs.poses.T_out_cam], obs.poses.frame,
                      obs.poses.registrations)
    f = obs.fused
    fused = FusedTarget(transform(T_new_out, f.points), f.colors, f.view_index, poses, f.n_views_used, f.visible_fraction)
    plane = None
    if obs.plane is not None:
        n = T_new_out[:3, :3] @ obs.plane[:3]
        p0 = transform(T_new_out, (-obs.plane[3] * obs.plane[:3])[None])[0]
        plane = np.r_[n, -n @ p0]
    return replace(obs, poses=poses, fused=fused, plane=plane)


def _view_crop(obs: Observation, i: int, side_m: float, crop: int) -> np.ndarray:
    """(13, crop, crop) float32 crop around the target (and its occluders) in view i, cube frame."""
    v = obs.views[i]
    m = obs.masks[i]
    assert v.depth_m is not None
    ys, xs = np.nonzero(m.visible)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    s = int(max(y1 - y0, x1 - x0) * 1.6) + 4
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    top, left = cy - s // 2, cx - s // 2
    # sample pixel centres of the square crop (outside the image: zeros)
    g = (np.arange(crop) + 0.5) * s / crop
    vv, uu = np.meshgrid(top + g, left + g, indexing="ij")
    vi, ui = np.floor(vv).astype(int), np.floor(uu).astype(int)
    inside = (vi >= 0) & (vi < v.height) & (ui >= 0) & (ui < v.width)
    vc, uc = np.clip(vi, 0, v.height - 1), np.clip(ui, 0, v.width - 1)
    T = obs.poses.T_out_cam[i]
    assert T is not None
    D = np.where(inside, v.depth_m[vc, uc], 0.0)
    d_cam = np.stack([(uu - v.K[0, 2]) / v.K[0, 0], (vv - v.K[1, 2]) / v.K[1, 1], np.ones_like(uu)], -1)
    d = d_cam @ T[:3, :3].T
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = T[:3, 3] / side_m
    mom = np.cross(np.broadcast_to(o, d.shape), d)
    # depth as the distance along z relative to the cube centre (at the origin of this frame)
    z_center = (invert(T) @ np.r_[0, 0, 0, 1.0])[2]
    out = np.concatenate([
        np.where(inside[..., None], v.color[vc, uc] / 255.0, 0.0),
        np.where(D > 0, (D - z_center) / side_m, 0.0)[..., None],
        (D > 0)[..., None],
        (inside & m.visible[vc, uc])[..., None],
        (inside & m.occluder[vc, uc])[..., None],
        d, mom], axis=-1)
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


def support_hull_occupancy(obs: Observation, grid: Grid) -> np.ndarray:
    """(R, R, R) bool: voxels inside the convex hull of the visible points and their drop onto
    the support plane: the classical gravity prior, given to the network as a starting guess."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(support_points(obs))
    except QhullError:
        return np.zeros(grid.shape, bool)
    # only voxels in the hull's bounding box can be inside: the same result, a fraction of the work
    hp = hull.points[hull.vertices]
    sl = grid.box_slices(hp.min(0), hp.max(0))
    occ = np.zeros(grid.shape, bool)
    c = grid.centers_in(sl)
    inside = np.all(c @ hull.equations[:, :3].T + hull.equations[:, 3] <= 1e-9, axis=1)
    occ[sl] = inside.reshape(occ[sl].shape)
    return occ


def model_inputs(obs: Observation, cfg: FeatureConfig = FeatureConfig(), jitter_yaw_rad: float = 0.0) -> ModelInputs:
    """Everything the networks see, computed the same way for training and inference."""
    T_out_cube, side = cube_frame(obs, cfg)
    if jitter_yaw_rad:
        c, s = np.cos(jitter_yaw_rad), np.sin(jitter_yaw_rad)
        Rz = np.eye(4)
        Rz[:2, :2] = [[c, -s], [s, c]]
        T_out_cube = T_out_cube @ Rz
    cobs = in_frame(obs, T_out_cube)
    grid = Grid(np.full(3, -side / 2), side / cfg.res, (cfg.res,) * 3)
    ev = ray_evidence(cobs, grid, trunc_m=2 * grid.voxel_m)
    geo = np.stack([
        grid.voxelize(cobs.fused.points),
        ev.free > 0, ev.behind_target > 0, ev.behind_occluder > 0, ev.below_plane,
        np.nan_to_num(ev.tsdf, nan=0.0), ~np.isnan(ev.tsdf),
        support_hull_occupancy(cobs, grid)]).astype(np.float32)
    used = cobs.used_views()
    # the most visible views first: they carry the most
    used = sorted(used, key=lambda i: -cobs.masks[i].visible.sum())[: cfg.max_views]
    V = cfg.max_views
    views = np.zeros((V, len(IMG_CHANNELS), cfg.crop, cfg.crop), np.float32)
    valid = np.zeros(V, bool)
    tau = np.zeros(V, np.float32)
    for k, i in enumerate(used):
        views[k] = _view_crop(cobs, i, side, cfg.crop)
        valid[k] = True
        tau[k] = cobs.masks[i].visibility_ratio
    return ModelInputs(geo, views, valid, tau, T_out_cube, side)
