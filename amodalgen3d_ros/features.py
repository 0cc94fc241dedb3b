"""Model inputs from an Observation: the object cube, the partial geometry grid, the view crops.

The cube frame is gravity-aligned and view-relative, the same whether poses were given (world
frame) or estimated (reference camera frame): z is the support plane's normal (or the reference
camera's up when no plane is found), x is the reference camera's viewing direction projected on
the plane. So a network trained on posed data sees the same thing on unposed data.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from .amodal_prior import AmodalView, CropBox, PriorRunner, complete_views, crop_box, hidden_points
from .geometry import FusedTarget, ViewPoses, invert, transform
from .observation import Observation, ray_evidence, support_points
from .surface import Grid

GEO_CHANNELS = ["visible", "free", "behind_target", "behind_occluder", "below_plane", "tsdf", "tsdf_valid",
                "support_hull"]
FEATURES_VERSION = 2  # bump when the inputs change: prepared training data is keyed by it
IMG_CHANNELS = ["r", "g", "b", "depth", "depth_valid", "visible", "occluder",
                "ray_dx", "ray_dy", "ray_dz", "ray_mx", "ray_my", "ray_mz"]
# the completed view from the 2D amodal prior, appended when the model was trained with it
PRIOR_IMG_CHANNELS = ["amodal", "amodal_depth"]


@dataclass(frozen=True)
class FeatureConfig:
    res: int = 32  # generator grid: 32^3 voxels in the cube
    crop: int = 32  # view crop side in pixels (image tokens come from it)
    max_views: int = 4  # views the model attends to (the most visible ones)
    cube_scale: float = 1.8  # cube side over the visible extent: room for the hidden part
    min_side_m: float = 0.05
    amodal_prior: bool = False  # the 2D amodal prior completes the views and sizes the cube
    max_prior_growth: float = 2.5  # the prior may grow the cube to at most this times the visible extent's

    @property
    def img_channels(self) -> list[str]:
        return IMG_CHANNELS + (PRIOR_IMG_CHANNELS if self.amodal_prior else [])


@dataclass
class ModelInputs:
    """geo: (8, R, R, R) float32 partial geometry; views: (V, 13 or 15, C, C) float32 crops;
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


def cube_frame(obs: Observation, cfg: FeatureConfig, hidden_out: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """T_out_cube (4, 4) and side (m) of the object cube, sized so the hidden part fits.
    hidden_out: (N, 3) points of the hidden front surface from the 2D amodal prior (output frame):
    the cube covers them as well as the visible points."""
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
    if hidden_out is not None and len(hidden_out):
        pts_c = np.concatenate([pts_c, (hidden_out - obs.fused.points.mean(0)) @ R])
        lo, hi = np.percentile(pts_c, 1, axis=0), np.percentile(pts_c, 99, axis=0)
        # a prior that sees the object grow more than this is more likely wrong than right
        ext = min(float(np.max(hi - lo)), cfg.max_prior_growth * ext)
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
                      obs.poses.registrations, obs.poses.sources)
    f = obs.fused
    fused = FusedTarget(transform(T_new_out, f.points), f.colors, f.view_index, poses, f.n_views_used, f.visible_fraction)
    plane = None
    if obs.plane is not None:
        n = T_new_out[:3, :3] @ obs.plane[:3]
        p0 = transform(T_new_out, (-obs.plane[3] * obs.plane[:3])[None])[0]
        plane = np.r_[n, -n @ p0]
    return replace(obs, poses=poses, fused=fused, plane=plane)


def visible_box(obs: Observation, i: int) -> CropBox:
    """The crop of models without the 2D prior: the visible box, 1.6 times, square."""
    ys, xs = np.nonzero(obs.masks[i].visible)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    s = int(max(y1 - y0, x1 - x0) * 1.6) + 4
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    return CropBox(float(cy - s // 2), float(cx - s // 2), float(s))


def _completed_channels(av: AmodalView, crop: int, z_center: float, side_m: float) -> np.ndarray:
    """(crop, crop, 2): the prior's amodal probability and its front depth (as the depth channel,
    relative to the cube centre) pooled from the prior's crop to the generator's (same box)."""
    f = av.prob.shape[0] // crop
    p = av.prob.reshape(crop, f, crop, f)
    on = (av.depth_m > 0).reshape(crop, f, crop, f)
    d = av.depth_m.reshape(crop, f, crop, f)
    n_on = on.sum((1, 3))
    d_mean = (d * on).sum((1, 3)) / np.maximum(n_on, 1)
    d_rel = np.where(n_on > 0, (d_mean - z_center) / side_m, 0.0)
    return np.stack([p.mean((1, 3)), d_rel], -1)


def _view_crop(obs: Observation, i: int, side_m: float, crop: int, box: CropBox,
               av: AmodalView | None = None) -> np.ndarray:
    """(13, crop, crop) float32 crop of view i over box, rays in the cube frame; (15, ...) with the
    2D prior's completed view appended."""
    v = obs.views[i]
    m = obs.masks[i]
    assert v.depth_m is not None
    # sample pixel centres of the square crop (outside the image: zeros)
    vv, uu = box.centres(crop)
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
    parts = [
        np.where(inside[..., None], v.color[vc, uc] / 255.0, 0.0),
        np.where(D > 0, (D - z_center) / side_m, 0.0)[..., None],
        (D > 0)[..., None],
        (inside & m.visible[vc, uc])[..., None],
        (inside & m.occluder[vc, uc])[..., None],
        d, mom]
    if av is not None:
        parts.append(_completed_channels(av, crop, z_center, side_m))
    out = np.concatenate(parts, axis=-1)
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


def hull_columns(eq: np.ndarray, x: np.ndarray, y: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """The z-interval [lo, hi] (X, Y) where each column (x_i, y_j, z) satisfies every hull facet
    n.p + d <= tol (eq: (F, 4) rows n, d); empty columns get lo > hi. A convex body meets a line
    in one interval, so a column costs F operations instead of F per voxel."""
    n = eq[:, :3]
    a = x[:, None, None] * n[:, 0] + y[None, :, None] * n[:, 1] + eq[:, 3]  # (X, Y, F)
    nz = n[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = (tol - a) / nz
    hi = np.min(np.where(nz > 0, bound, np.inf), axis=-1)
    lo = np.max(np.where(nz < 0, bound, -np.inf), axis=-1)
    vertical_ok = np.all((nz != 0) | (a <= tol), axis=-1)  # facets parallel to z: the column is in or out
    return np.where(vertical_ok, lo, np.inf), np.where(vertical_ok, hi, -np.inf)


def support_hull_occupancy(obs: Observation, grid: Grid) -> np.ndarray:
    """(R, R, R) bool: voxels inside the convex hull of the visible points and their drop onto
    the support plane: the classical gravity prior, given to the network as a starting guess."""
    try:
        hull = ConvexHull(support_points(obs))
    except QhullError:
        return np.zeros(grid.shape, bool)
    # only voxels in the hull's bounding box can be inside: the same result, a fraction of the work
    hp = hull.points[hull.vertices]
    sl = grid.box_slices(hp.min(0), hp.max(0))
    x, y, z = ((np.arange(n)[s_] + 0.5) * grid.voxel_m + o for n, o, s_ in zip(grid.shape, grid.origin, sl))
    lo, hi = hull_columns(hull.equations, x, y, 1e-9)
    occ = np.zeros(grid.shape, bool)
    occ[sl] = (z >= lo[..., None]) & (z <= hi[..., None])
    return occ


def prior_views(obs: Observation, prior: PriorRunner) -> tuple[dict[int, AmodalView], np.ndarray]:
    """The used views completed by the 2D prior (by view index) and the predicted hidden front
    surface of all of them, (N, 3) points in the output frame (what sizes the cube)."""
    used = obs.used_views()
    avs = complete_views([obs.views[i] for i in used], [obs.masks[i] for i in used], prior)
    completed = {i: av for i, av in zip(used, avs) if av is not None}
    hidden_parts = [np.zeros((0, 3))]
    for i, av in completed.items():
        T = obs.poses.T_out_cam[i]
        assert T is not None  # used views are posed
        hidden_parts.append(transform(T, hidden_points(obs.views[i], av)))
    return completed, np.concatenate(hidden_parts)


def model_inputs(obs: Observation, cfg: FeatureConfig = FeatureConfig(), jitter_yaw_rad: float = 0.0,
                 prior: PriorRunner | None = None) -> ModelInputs:
    """Everything the networks see, computed the same way for training and inference. With
    cfg.amodal_prior, ``prior`` runs the 2D amodal prior network (amodal_prior.py)."""
    used = obs.used_views()
    completed: dict[int, AmodalView] = {}
    hidden = None
    if cfg.amodal_prior:
        if prior is None:
            raise ValueError("this model reads the 2D amodal prior's output: pass its runner")
        completed, hidden = prior_views(obs, prior)
    T_out_cube, side = cube_frame(obs, cfg, hidden)
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
    # the most visible views first: they carry the most
    used = sorted(used, key=lambda i: -cobs.masks[i].visible.sum())[: cfg.max_views]
    V = cfg.max_views
    views = np.zeros((V, len(cfg.img_channels), cfg.crop, cfg.crop), np.float32)
    valid = np.zeros(V, bool)
    tau = np.zeros(V, np.float32)
    for k, i in enumerate(used):
        if cfg.amodal_prior and i in completed:
            views[k] = _view_crop(cobs, i, side, cfg.crop, completed[i].box, completed[i])
        elif cfg.amodal_prior:  # no measured depth on the target in this view: nothing completed
            views[k, :-2] = _view_crop(cobs, i, side, cfg.crop, crop_box(cobs.masks[i]))
        else:
            views[k] = _view_crop(cobs, i, side, cfg.crop, visible_box(cobs, i))
        valid[k] = True
        tau[k] = cobs.masks[i].visibility_ratio
    return ModelInputs(geo, views, valid, tau, T_out_cube, side)
