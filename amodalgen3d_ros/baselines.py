"""Classical completion baselines: what a robotics engineer would do without a learned model.

Each takes an Observation and returns a closed mesh in the output frame (metres).
"""

from __future__ import annotations

import numpy as np
import trimesh
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError, cKDTree

from .geometry import invert, project, transform
from .observation import Observation, object_cube, ray_evidence, support_points
from .surface import Grid, grid_around, mesh_from_field, mesh_from_occupancy, solidify


def _hull(points: np.ndarray) -> trimesh.Trimesh:
    try:
        h = ConvexHull(points)
    except QhullError:
        # flat or degenerate: thicken by a millimetre so the hull has volume
        jitter = np.random.default_rng(0).normal(0, 0.001, points.shape)
        h = ConvexHull(points + jitter)
    m = trimesh.Trimesh(points[h.vertices], np.searchsorted(h.vertices, h.simplices), process=True)
    trimesh.repair.fix_normals(m)
    return m


def visible_points(obs: Observation, voxel_m: float = 0.003) -> trimesh.Trimesh:
    """The fused visible surface only, as a closed shell one voxel thick."""
    grid = grid_around(obs.fused.points, voxel_m, pad_m=2 * voxel_m)
    occ = ndimage.binary_dilation(grid.voxelize(obs.fused.points))
    return mesh_from_occupancy(occ, grid)


def convex_hull(obs: Observation) -> trimesh.Trimesh:
    return _hull(obs.fused.points)


def project_to_plane(points: np.ndarray, plane: np.ndarray) -> np.ndarray:
    n, d = plane[:3], plane[3]
    return points - np.outer(points @ n + d, n)


def support_hull(obs: Observation) -> trimesh.Trimesh:
    """Convex hull of the points and their drop onto the support plane (gravity prior)."""
    return _hull(support_points(obs))


def _free_violation(obs: Observation, pts: np.ndarray, margin_m: float = 0.01) -> np.ndarray:
    """(N,) bool: points that some depth ray saw as empty space."""
    bad = np.zeros(len(pts), bool)
    for i in obs.used_views():
        v = obs.views[i]
        assert v.depth_m is not None
        pc = transform(invert(obs.poses.T_out_cam[i]), pts)  # type: ignore[arg-type]
        uv, z = project(pc, v.K)
        u, vv = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
        ok = (z > 0) & (u >= 0) & (u < v.width) & (vv >= 0) & (vv < v.height)
        D = np.zeros(len(pts))
        D[ok] = v.depth_m[vv[ok], u[ok]]
        bad |= ok & (D > 0) & (z < D - margin_m)
    return bad


def mirror_symmetry(obs: Observation, voxel_m: float = 0.003) -> trimesh.Trimesh:
    """Mirror the visible points about the best plane perpendicular to the support plane.

    The plane is chosen over a grid of directions and offsets to minimise the reflected points'
    distance to the observed ones, penalising reflections that land in observed empty space.
    """

    pts = obs.fused.points
    rng = np.random.default_rng(0)
    sub = pts[rng.choice(len(pts), min(len(pts), 2000), replace=False)]
    up = obs.plane[:3] if obs.plane is not None else np.array([0.0, -1.0, 0.0])
    a = np.cross(up, [1.0, 0, 0]) if abs(up[0]) < 0.9 else np.cross(up, [0, 1.0, 0])
    a /= np.linalg.norm(a)
    b = np.cross(up, a)
    tree = cKDTree(pts)
    c0 = sub.mean(0)
    ext = float(np.ptp(sub, axis=0).max())
    best, best_score = None, np.inf
    for th in np.linspace(0, np.pi, 12, endpoint=False):
        n = np.cos(th) * a + np.sin(th) * b
        for off in np.linspace(-0.5 * ext, 0.5 * ext, 11):
            p0 = c0 + n * off
            refl = sub - 2 * np.outer((sub - p0) @ n, n)
            d, _ = tree.query(refl)
            score = np.mean(np.minimum(d, 0.02)) + 0.05 * _free_violation(obs, refl).mean()
            if score < best_score:
                best, best_score = (n, p0), score
    assert best is not None
    n, p0 = best
    mirrored = pts - 2 * np.outer((pts - p0) @ n, n)
    allp = np.concatenate([pts, mirrored])
    if obs.plane is not None:
        allp = np.concatenate([allp, project_to_plane(allp, obs.plane)])
    occ, grid = solidify(allp, voxel_m, close_iters=3)
    shell = grid.voxelize(allp).sum()
    if occ.sum() < 1.5 * shell:  # not enclosed: fall back to the hull of the completed points
        return _hull(allp)
    return mesh_from_occupancy(occ, grid)


def tsdf_fusion(obs: Observation, res: int = 64, cube_scale: float = 1.5) -> trimesh.Trimesh:
    """Projective TSDF of the target's depth over the object cube, unknown space behind the
    surface counted as inside, so the surface is closed. The cube is kept tight (1.5x the visible
    extent) since everything unseen in it becomes solid."""
    center, side = object_cube(obs, scale=cube_scale)
    vox = side / res
    grid = Grid(center - side / 2, vox, (res, res, res))
    ev = ray_evidence(obs, grid, trunc_m=3 * vox)
    inside = (ev.free == 0) & (ev.behind_target > 0) & ~ev.below_plane
    field = np.where(np.isnan(ev.tsdf), np.where(inside, 1.0, -1.0), -ev.tsdf)
    field[ev.below_plane] = -1.0
    return mesh_from_field(field.astype(np.float32), grid, 0.0)


BASELINES = {
    "visible": visible_points,
    "convex_hull": convex_hull,
    "support_hull": support_hull,
    "symmetry": mirror_symmetry,
    "tsdf": tsdf_fusion,
}
