"""Multi-view geometry: back-projection, pose estimation between unposed RGB-D views, fusion.

Conventions: ``T_a_b`` maps points from frame b to frame a; points are (N, 3) float64 metres.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np
import open3d as o3d
from scipy.spatial import cKDTree

from .views import TargetMasks, View, ViewsFormatError


def transform(T_a_b: np.ndarray, points_b: np.ndarray) -> np.ndarray:
    """(4, 4) x (N, 3) -> (N, 3)."""
    return points_b @ T_a_b[:3, :3].T + T_a_b[:3, 3]


def invert(T: np.ndarray) -> np.ndarray:
    Ti = np.eye(4)
    Ti[:3, :3] = T[:3, :3].T
    Ti[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return Ti


def backproject(depth_m: np.ndarray, K: np.ndarray, mask: np.ndarray | None = None,
                stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Pixels with depth -> optical-frame points.

    depth_m: (H, W) metres, 0 = no measurement. mask: (H, W) bool or None.
    Returns points_cam (N, 3) metres and the (N, 2) int pixel coordinates (v, u) they came from.
    """
    valid = depth_m > 0
    if mask is not None:
        valid &= mask
    if stride > 1:
        sub = np.zeros_like(valid)
        sub[::stride, ::stride] = True
        valid &= sub
    v, u = np.nonzero(valid)
    z = depth_m[v, u].astype(np.float64)
    x = (u - K[0, 2]) * z / K[0, 0]
    y = (v - K[1, 2]) * z / K[1, 1]
    return np.stack([x, y, z], axis=1), np.stack([v, u], axis=1)


REFERENCE_FX_PX = 277.0  # the 320x240, 60-degree camera the networks were trained and tuned at


def pixel_stride(K: np.ndarray) -> int:
    """Every how many pixels to take so that a sharper camera (640x480, 1280x720) gives about as
    many points per object as the reference camera. From the focal length, not the image size:
    a crop of a sharp image is still sharp."""
    return max(1, int(K[0, 0] / REFERENCE_FX_PX))


def project(points_cam: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Optical-frame points (N, 3) -> pixel coords (N, 2) float (u, v) and depth z (N,)."""
    z = points_cam[:, 2]
    zs = np.where(z > 1e-9, z, 1e-9)
    u = K[0, 0] * points_cam[:, 0] / zs + K[0, 2]
    v = K[1, 1] * points_cam[:, 1] / zs + K[1, 2]
    return np.stack([u, v], axis=1), z


# --------------------------------------------------------------------------------------------
# Pose estimation between unposed views
# --------------------------------------------------------------------------------------------

@dataclass
class Registration:
    """Result of registering one view to the reference view."""

    T_ref_cam: np.ndarray | None  # (4, 4) maps this view's optical frame to the reference's
    fitness: float  # depth consistency with the reference view (see depth_consistency), 0..1
    rmse_m: float  # of the feature inliers after refinement; nan when registered by objects
    n_matches: int  # RANSAC inliers, or objects seen in both views when registered by objects
    reason: str = ""  # why it was left out, empty if registered
    method: str = "features"  # "features" (image features) or "objects" (shared instance labels)

    @property
    def ok(self) -> bool:
        return self.T_ref_cam is not None


def kabsch_rt(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R (d, d) and shift t minimising |R src + t - dst|^2; src, dst (N, d), any d."""
    cs, cd = src.mean(0), dst.mean(0)
    U, _, Vt = np.linalg.svd((src - cs).T @ (dst - cd))
    D = np.ones(src.shape[1])
    D[-1] = np.sign(np.linalg.det(Vt.T @ U.T))  # a rotation, never a reflection
    R = Vt.T @ np.diag(D) @ U.T
    return R, cd - R @ cs


def kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rigid T (4, 4) minimising |T src - dst|^2; src, dst (N, 3)."""
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = kabsch_rt(src, dst)
    return T


def _features(view: View, n_features: int) -> tuple[list, np.ndarray | None]:
    gray = cv2.cvtColor(view.color, cv2.COLOR_RGB2GRAY)
    # features on at most ~320 px wide images: as many matches as needed, a fraction of the time
    scale = max(1, view.width // 320)
    if scale > 1:
        gray = cv2.resize(gray, (view.width // scale, view.height // scale), interpolation=cv2.INTER_AREA)
    # SIFT: more matches than ORB under the wide baselines of a camera moving around an object
    sift = cv2.SIFT_create(nfeatures=n_features, contrastThreshold=0.01)  # type: ignore[attr-defined]
    kps, desc = sift.detectAndCompute(gray, None)
    if scale > 1:
        kps = [cv2.KeyPoint((k.pt[0] + 0.5) * scale - 0.5, (k.pt[1] + 0.5) * scale - 0.5, k.size * scale) for k in kps]
    return list(kps), desc


def _lift(view: View, kps: list) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints -> (N, 3) optical-frame points and a validity mask (depth present)."""
    assert view.depth_m is not None
    uv = np.array([k.pt for k in kps], np.float64).reshape(-1, 2)
    ui = np.clip(np.round(uv[:, 0]).astype(int), 0, view.width - 1)
    vi = np.clip(np.round(uv[:, 1]).astype(int), 0, view.height - 1)
    z = view.depth_m[vi, ui].astype(np.float64)
    pts = np.stack([(uv[:, 0] - view.K[0, 2]) * z / view.K[0, 0],
                    (uv[:, 1] - view.K[1, 2]) * z / view.K[1, 1], z], axis=1)
    return pts, z > 0


def _ransac_rigid(src: np.ndarray, dst: np.ndarray, rng: np.random.Generator,
                  iters: int = 500, inlier_m: float = 0.01) -> tuple[np.ndarray | None, np.ndarray]:
    n = len(src)
    if n < 3:
        return None, np.zeros(n, bool)
    best = np.zeros(n, bool)
    for _ in range(iters):
        idx = rng.choice(n, 3, replace=False)
        a, b = src[idx], dst[idx]
        # reject degenerate (near-collinear) samples
        if np.linalg.norm(np.cross(a[1] - a[0], a[2] - a[0])) < 1e-6:
            continue
        T = kabsch(a, b)
        inl = np.linalg.norm(transform(T, src) - dst, axis=1) < inlier_m
        if inl.sum() > best.sum():
            best = inl
    if best.sum() < 3:
        return None, best
    return kabsch(src[best], dst[best]), best


_O3D_LOCK = threading.Lock()


@contextmanager
def open3d_single_thread():
    """Open3D's ICP sums its normal equations across OpenMP threads in no fixed order: the same
    frames gave poses differing in the last bits, and after marching cubes a replayed bag gave
    other meshes. One thread makes a pose a function of its frames alone (the clouds are small)."""
    with _O3D_LOCK:
        n = o3d.utility.get_max_threads()
        o3d.utility.set_max_threads(1)
        try:
            yield
        finally:
            o3d.utility.set_max_threads(n)


def _frame_cloud(view: View, voxel_m: float, colour: bool = False) -> o3d.geometry.PointCloud:
    assert view.depth_m is not None
    pts, vu = backproject(view.depth_m, view.K, stride=2 * max(1, view.width // 320))
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    if colour:
        pc.colors = o3d.utility.Vector3dVector(view.color[vu[:, 0], vu[:, 1]].astype(np.float64) / 255)
    pc = pc.voxel_down_sample(voxel_m)
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=4 * voxel_m, max_nn=30))
    return pc


_CACHE_LOCK = threading.Lock()  # the caches below: several reconstructions run at once in the worker
_FRAMES: OrderedDict[tuple, Any] = OrderedDict()
_FRAME_CACHE_SIZE = 32


def _per_frame(view: View, kind: tuple, make: Callable[[], Any]) -> Any:
    """A frame's image features or point cloud, made once: each frame meets several others in
    registration (the reference every view, chains their neighbours), and the node registers a
    track's frames again as its views change. Neither is changed by its users."""
    key = (kind, view.stamp_s, _fingerprint(view))
    with _CACHE_LOCK:
        hit = _FRAMES.get(key)
        if hit is not None:
            _FRAMES.move_to_end(key)
            return hit
    hit = make()  # outside the lock: two threads may make one twice, neither waits for the other
    with _CACHE_LOCK:
        _FRAMES[key] = hit
        while len(_FRAMES) > _FRAME_CACHE_SIZE:
            _FRAMES.popitem(last=False)
    return hit


def register_by_features(ref: View, view: View, seed: int = 0, n_features: int = 3000,
                         min_inliers: int = 8, min_fitness: float = 0.7,
                         icp_radius_m: float = 0.01) -> Registration:
    """Estimate T_ref_cam for ``view`` from the whole RGB-D frame (table and other objects too).

    SIFT matches lifted to 3D with depth, RANSAC over rigid transforms, then point-to-plane ICP
    over both frames' clouds (RANSAC's pose kept where ICP leaves the matches behind). A view is
    left out with fewer than ``min_inliers`` RANSAC inliers or a depth consistency (the fitness)
    under ``min_fitness``.
    """
    if ref.depth_m is None or view.depth_m is None:
        return Registration(None, 0.0, np.inf, 0, "no depth: unposed views need depth")
    rng = np.random.default_rng(seed)
    k0, d0 = _per_frame(ref, ("sift", n_features), lambda: _features(ref, n_features))
    k1, d1 = _per_frame(view, ("sift", n_features), lambda: _features(view, n_features))
    if d0 is None or d1 is None or len(k0) < min_inliers or len(k1) < min_inliers:
        return Registration(None, 0.0, np.inf, 0, "too few image features")
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    pairs = matcher.knnMatch(d1, d0, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.85 * p[1].distance]
    if len(good) < min_inliers:
        return Registration(None, 0.0, np.inf, len(good), f"{len(good)} feature matches")
    p1, ok1 = _lift(view, [k1[m.queryIdx] for m in good])
    p0, ok0 = _lift(ref, [k0[m.trainIdx] for m in good])
    ok = ok0 & ok1
    ransac_inlier_m = 0.01
    T, inl = _ransac_rigid(p1[ok], p0[ok], rng, inlier_m=ransac_inlier_m)
    n_inl = int(inl.sum())
    if T is None or n_inl < min_inliers:
        return Registration(None, 0.0, np.inf, n_inl, f"{n_inl} RANSAC inliers")
    voxel = icp_radius_m / 2
    with open3d_single_thread():
        src = _per_frame(view, ("cloud", voxel), lambda: _frame_cloud(view, voxel))
        dst = _per_frame(ref, ("cloud", voxel), lambda: _frame_cloud(ref, voxel))
        est = o3d.pipelines.registration.TransformationEstimationPointToPlane()
        T_cur = T
        # Coarse-to-fine ICP: a wide radius absorbs RANSAC's error, a tight one settles it.
        for radius in (3 * icp_radius_m, icp_radius_m):
            res = o3d.pipelines.registration.registration_icp(
                src, dst, radius, T_cur, est,
                o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=30))
            T_cur = np.asarray(res.transformation)
    rmse = float(res.inlier_rmse)
    # ICP over frames that are mostly table can slide and turn along the plane (10 degrees on
    # an evenly textured table) and still look consistent in depth; the feature matches RANSAC
    # kept do not move with it. If most of them no longer agree, ICP left the right pose: keep
    # RANSAC's.
    a, b = p1[ok][inl], p0[ok][inl]
    resid = np.linalg.norm(transform(T_cur, a) - b, axis=1)
    if np.mean(resid < ransac_inlier_m) < 0.5:
        T_cur = T
        rmse = float(np.sqrt(np.mean(np.linalg.norm(transform(T, a) - b, axis=1) ** 2)))
    fitness = depth_consistency(ref, view, T_cur)
    if fitness < min_fitness:
        return Registration(None, fitness, rmse, n_inl, f"depth consistency {fitness:.2f} < {min_fitness}")
    return Registration(T_cur, fitness, rmse, n_inl)


def _support_frame(view: View, rng: np.random.Generator) -> np.ndarray | None:
    """T_cam_plane of the support plane under the background pixels: z along its normal towards
    the camera, x along the optical axis laid on the plane, origin below the camera."""
    assert view.depth_m is not None
    pts, _ = backproject(view.depth_m, view.K, view.labels == 0, stride=2)
    if len(pts) < 500:
        return None
    plane = _ransac_plane(pts, rng, thresh_m=0.008)
    if plane is None:
        return None
    n, d = (plane[:3], plane[3]) if plane[3] > 0 else (-plane[:3], -plane[3])
    x = np.array([0.0, 0.0, 1.0]) - n * n[2]
    if np.linalg.norm(x) < 1e-3:  # looking straight down
        x = np.array([1.0, 0.0, 0.0]) - n * n[0]
    x /= np.linalg.norm(x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, np.cross(n, x), n, -d * n
    return T


def _objects_on_plane(view: View, T_cam_plane: np.ndarray, min_px: int = 150,
                      max_points: int = 800) -> dict[int, np.ndarray]:
    """Each labelled object's measured points above the plane, in the plane frame."""
    assert view.depth_m is not None
    T_plane_cam = invert(T_cam_plane)
    out = {}
    for label in np.unique(view.labels):
        if label == 0:
            continue
        pts, _ = backproject(view.depth_m, view.K, view.labels == label)
        q = transform(T_plane_cam, pts)
        q = q[q[:, 2] > 0.005]
        if len(pts) >= min_px and len(q) >= min_px // 2:
            out[int(label)] = q[:: max(1, len(q) // max_points)]
    return out


def _yaw_icp(src: dict[int, np.ndarray], dst: dict[int, np.ndarray], labels: list[int], yaw: float,
             trees: dict, iters: int = 20) -> tuple[float, np.ndarray, np.ndarray]:
    """ICP in the plane (yaw and 2D shift; the planes fix the rest) from ``yaw``, each object's
    points matched only to the same object's. Returns the share of points within 1 cm, R, t."""
    R = np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])
    t = np.mean([dst[k][:, :2].mean(0) - R @ src[k][:, :2].mean(0) for k in labels], axis=0)
    for it in range(iters + 1):
        radius = 0.05 if it < 7 else 0.025 if it < 14 else 0.012
        a_all, b_all, within = [], [], 0
        for k in labels:
            a = src[k].copy()
            a[:, :2] = a[:, :2] @ R.T + t
            dist, idx = trees[k].query(a, distance_upper_bound=radius)
            m = np.isfinite(dist)
            within += int((dist < 0.01).sum())
            a_all.append(src[k][m, :2])
            b_all.append(dst[k][idx[m], :2])
        if it == iters:
            break
        a2, b2 = np.concatenate(a_all), np.concatenate(b_all)
        if len(a2) < 20:
            return 0.0, R, t
        R, t = kabsch_rt(a2, b2)
    return within / sum(len(src[k]) for k in labels), R, t


def register_by_objects(ref: View, view: View, seed: int = 0, min_share: float = 0.6,
                        min_fitness: float = 0.7, min_distinct: float = 0.05,
                        icp_radius_m: float = 0.01) -> Registration:
    """Register by what the views contract promises: the same label is the same object in
    every view. Both support planes fix height and tilt; the shared objects' points, matched
    label to label, fix the turn and shift on the plane (ICP from 12 headings); coloured ICP over
    both frames then settles it on the table's texture. Accepted when at least ``min_share`` of
    the objects' points land within 1 cm, the depth consistency reaches ``min_fitness``, and the
    colours agree by at least ``min_distinct`` more than at the pose moved a little on the plane.
    """

    if ref.depth_m is None or view.depth_m is None:
        return Registration(None, 0.0, np.inf, 0, "no depth: unposed views need depth", "objects")
    rng = np.random.default_rng(seed)
    F_ref, F_view = _support_frame(ref, rng), _support_frame(view, rng)
    if F_ref is None or F_view is None:
        return Registration(None, 0.0, np.inf, 0, "no support plane", "objects")
    dst, src = _objects_on_plane(ref, F_ref), _objects_on_plane(view, F_view)
    labels = sorted(set(src) & set(dst))
    if not labels:
        return Registration(None, 0.0, np.inf, 0, "no object seen in both", "objects")
    trees = {k: cKDTree(dst[k]) for k in labels}
    share, R, t = max((_yaw_icp(src, dst, labels, yaw, trees) for yaw in np.radians(np.arange(0, 360, 30))),
                      key=lambda r: r[0])
    if share < min_share:
        return Registration(None, 0.0, np.inf, len(labels), f"objects' points agree {share:.2f} < {min_share}", "objects")
    M = np.eye(4)
    M[:2, :2], M[:2, 3] = R, t
    T = F_ref @ M @ invert(F_view)
    voxel = icp_radius_m / 2
    with open3d_single_thread():
        a = _per_frame(view, ("coloured cloud", voxel), lambda: _frame_cloud(view, voxel, colour=True))
        b = _per_frame(ref, ("coloured cloud", voxel), lambda: _frame_cloud(ref, voxel, colour=True))
        for radius in (4 * icp_radius_m, 2 * icp_radius_m, icp_radius_m):
            try:
                res = o3d.pipelines.registration.registration_colored_icp(
                    a, b, radius, T, o3d.pipelines.registration.TransformationEstimationForColoredICP(lambda_geometric=0.9),
                    o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=30))
            except RuntimeError:  # no correspondences within the radius: keep what we have
                break
            T = np.asarray(res.transformation)
    fitness = depth_consistency(ref, view, T)
    if fitness < min_fitness:
        return Registration(None, fitness, np.inf, len(labels), f"depth consistency {fitness:.2f} < {min_fitness}", "objects")
    # Depth agrees under any slide along the table, and a low-contrast texture agrees by chance: the
    # pose must agree clearly better than the same pose moved 2 cm or turned 3 degrees on the plane
    # (on validation scenes wrong poses gained almost nothing by this test, right ones much more).
    chroma = depth_consistency(ref, view, T, tol_chroma=0.15)
    moved = []
    for dx, dy, turn in ((0.02, 0, 0), (-0.02, 0, 0), (0, 0.02, 0), (0, -0.02, 0), (0, 0, 3), (0, 0, -3)):
        c, s = np.cos(np.radians(turn)), np.sin(np.radians(turn))
        M = np.array([[c, -s, 0, dx], [s, c, 0, dy], [0, 0, 1, 0], [0, 0, 0, 1.0]])
        moved.append(depth_consistency(ref, view, F_ref @ M @ invert(F_ref) @ T, tol_chroma=0.15))
    if chroma - max(moved) < min_distinct:
        return Registration(None, fitness, np.inf, len(labels),
                            f"not distinct: agreement {chroma:.2f}, moved on the plane {max(moved):.2f}", "objects")
    return Registration(T, fitness, float("nan"), len(labels), "", "objects")


def depth_consistency(ref: View, view: View, T_ref_cam: np.ndarray, tol_m: float = 0.015,
                      tol_gray: float = 30.0, tol_chroma: float | None = None) -> float:
    """Share of ``view``'s points that, moved into the reference camera and landing on a measured
    reference pixel, agree with the reference in depth and in brightness (or, with
    ``tol_chroma``, in chromaticity: L1 distance of r, g, b over their sum).

    Unlike ICP's fitness this does not fall with the baseline (only overlapping points count);
    brightness catches poses that slide along the table plane, which depth alone cannot see.
    Points behind the reference surface may be occluded there and are not judged.
    """
    assert ref.depth_m is not None and view.depth_m is not None
    pts, vu = backproject(view.depth_m, view.K, stride=3 * max(1, view.width // 320))
    uv, z = project(transform(T_ref_cam, pts), ref.K)
    u, v = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
    ok = (z > 0) & (u >= 0) & (u < ref.width) & (v >= 0) & (v < ref.height)
    D = np.zeros(len(z), np.float32)
    D[ok] = ref.depth_m[v[ok], u[ok]]
    judged = ok & (D > 0) & (z < D + tol_m)
    # too little overlap, or most points hidden behind the reference surface: no evidence
    if judged.sum() < max(100, 0.5 * (ok & (D > 0)).sum()):
        return 0.0
    c_ref = ref.color[v[judged], u[judged]].astype(np.float32)
    c_view = view.color[vu[judged, 0], vu[judged, 1]].astype(np.float32)
    if tol_chroma is None:
        looks_alike = np.abs(c_ref.mean(1) - c_view.mean(1)) < tol_gray
    else:  # shading changes brightness between views, not the hue of the table's texture
        c_ref, c_view = c_ref + 1, c_view + 1
        looks_alike = np.abs(c_ref / c_ref.sum(1, keepdims=True) - c_view / c_view.sum(1, keepdims=True)).sum(1) < tol_chroma
    agree = (np.abs(z[judged] - D[judged]) < tol_m) & looks_alike
    return float(agree.mean())


@dataclass
class ViewPoses:
    """Every view's pose in the output frame, and how it was obtained."""

    T_out_cam: list[np.ndarray | None]  # None: view left out
    frame: str  # "world" or "reference_camera"
    registrations: list[Registration | None]  # None where poses were given
    # per view, where its pose came from: "given", "tf", "odometry" (a stream's tracking),
    # "registration", "reference" (the unposed reference itself), "none" (left out)
    sources: list[str] = field(default_factory=list)

    @property
    def used(self) -> list[int]:
        return [i for i, T in enumerate(self.T_out_cam) if T is not None]


_REGISTRATIONS: OrderedDict[tuple, Registration] = OrderedDict()
_REGISTRATION_CACHE_SIZE = 256


def _fingerprint(v: View) -> int:
    """A cheap checksum of a frame's pixels (every 8th row and column of colour and depth)."""
    c = zlib.crc32(np.ascontiguousarray(v.color[::8, ::8]).tobytes())
    if v.depth_m is not None:
        c = zlib.crc32(np.ascontiguousarray(v.depth_m[::8, ::8]).tobytes(), c)
    return c


def register_cached(ref: View, view: View, seed: int, by: str, cache_only: bool = False) -> Registration | None:
    """register_by_features or register_by_objects (``by``), remembered per
    (reference frame, frame) pair: the node reconstructs a track again as its views change, and
    most pairs are the same as last time. Keyed by the frames' stamps and a fingerprint of their
    pixels, not object identity: the node's frames reach the reconstruction process as new
    objects each time, and a reused stamp with new data must miss. ``cache_only``: None on a miss."""
    key = (by, ref.stamp_s, _fingerprint(ref), view.stamp_s, _fingerprint(view))
    with _CACHE_LOCK:
        hit = _REGISTRATIONS.get(key)
        if hit is not None:
            _REGISTRATIONS.move_to_end(key)
            return replace(hit)
    if cache_only:
        return None
    # RANSAC's seed follows from the pair alone, so a cached result equals a fresh one whatever
    # order the pairs were first met in (replays give the same meshes)
    pair_seed = seed + zlib.crc32(f"{ref.stamp_s:.6f}/{view.stamp_s:.6f}".encode())
    if by == "features":
        r = register_by_features(ref, view, seed=pair_seed)
    elif by == "objects":
        r = register_by_objects(ref, view, seed=pair_seed)
    else:
        raise ValueError(f"by: 'features' or 'objects', not {by!r}")
    with _CACHE_LOCK:
        _REGISTRATIONS[key] = replace(r)
        while len(_REGISTRATIONS) > _REGISTRATION_CACHE_SIZE:
            _REGISTRATIONS.popitem(last=False)
    return r


def resolve_poses(views: list[View], seed: int = 0, budget_s: float | None = None) -> ViewPoses:
    """Given poses when every view has one in a fixed world frame (output frame "world"). Else in
    the reference (first) view's camera frame: views tracked in the reference's odometry segment
    take their poses from it; every other view is registered to the reference.

    Image features first, for every view: straight to the reference, then chained through the
    views registered so far until none is added. Only then the shared objects, the same way:
    their poses are a few millimetres less precise (median 3-5 mm against 1-2), so a chain of
    feature registrations is preferred to a direct one by objects. A view of another odometry
    segment, once registered, brings the rest of its segment along by its odometry.

    ``budget_s``: registrations not remembered from earlier calls are tried only for this long (a
    live node must not spend many seconds on one result; what was registered is remembered, so
    the next run of the same views goes on from there); views left out say so.
    """
    if all(v.T_world_cam is not None and not v.pose_frame for v in views):
        return ViewPoses([np.asarray(v.T_world_cam) for v in views], "world", [None] * len(views),
                         [v.pose_source for v in views])
    n = len(views)
    T: list[np.ndarray | None] = [np.eye(4)] + [None] * (n - 1)
    regs: list[Registration | None] = [Registration(np.eye(4), 1.0, 0.0, 0)] + [None] * (n - 1)
    sources = ["reference"] + ["none"] * (n - 1)

    def bring_segment(i: int) -> None:  # views tracked together with view i, by the tracking's poses
        vi = views[i]
        if vi.T_world_cam is None or not vi.pose_frame:
            return
        if i == 0:
            sources[0] = vi.pose_source
        T_out_seg = T[i] @ invert(vi.T_world_cam)  # type: ignore[operator]
        for k, vk in enumerate(views):
            if T[k] is None and vk.T_world_cam is not None and vk.pose_frame == vi.pose_frame:
                T[k], regs[k], sources[k] = T_out_seg @ vk.T_world_cam, None, vk.pose_source

    t_end = None if budget_s is None else time.perf_counter() + budget_s

    def register(ref: View, view: View, by: str) -> Registration:
        spent = t_end is not None and time.perf_counter() > t_end
        r = register_cached(ref, view, seed=seed, by=by, cache_only=spent)
        return r or Registration(None, 0.0, np.inf, 0, f"not tried: registration budget of {budget_s:g} s spent")

    def accept(i: int, r: Registration, through: int) -> None:
        Tj = T[through]
        assert r.T_ref_cam is not None and Tj is not None
        T[i] = Tj @ r.T_ref_cam
        regs[i] = replace(r, T_ref_cam=T[i], reason=f"chained through view {through}" if through else "")
        sources[i] = "registration"
        bring_segment(i)

    bring_segment(0)
    for by in ("features", "objects"):
        for i in range(1, n):
            if T[i] is None:
                r = register(views[0], views[i], by)
                if r.ok:
                    accept(i, r, 0)
                else:  # why it failed, by every means tried
                    prev = regs[i]
                    regs[i] = r if prev is None else replace(r, reason=f"{prev.reason}; {by}: {r.reason}")
        added = True
        while added:
            added = False
            for i in range(1, n):
                if T[i] is not None:
                    continue
                for j in sorted(range(1, n), key=lambda j: abs(j - i)):
                    if j != i and T[j] is not None:
                        r = register(views[j], views[i], by)
                        if r.ok:
                            accept(i, r, j)
                            added = True
                            break
    return ViewPoses(T, "reference_camera", regs, sources)


def rotation_error_deg(Ra: np.ndarray, Rb: np.ndarray) -> float:
    c = (np.trace(Ra.T @ Rb) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(c, -1, 1))))


# --------------------------------------------------------------------------------------------
# Fusion of the target's visible points
# --------------------------------------------------------------------------------------------

@dataclass
class FusedTarget:
    """The target's visible surface from all used views, in the output frame."""

    points: np.ndarray  # (N, 3) metres
    colors: np.ndarray  # (N, 3) uint8
    view_index: np.ndarray  # (N,) which view each point came from
    poses: ViewPoses
    n_views_used: int
    visible_fraction: float  # mean visibility ratio over used views


def fuse_target(views: list[View], target_id: int, poses: ViewPoses | None = None,
                max_points_per_view: int = 20000, seed: int = 0, masks: list[TargetMasks] | None = None) -> FusedTarget:
    """Back-project the target's visible pixels of every registered view into the output frame
    (``masks``: each view's target_masks, when the caller has them already)."""
    if poses is None:
        poses = resolve_poses(views, seed=seed)
    pts, cols, idx, taus = [], [], [], []
    rng = np.random.default_rng(seed)
    for i, v in enumerate(views):
        T = poses.T_out_cam[i]
        if T is None or v.depth_m is None:
            continue
        m = masks[i] if masks is not None else v.target_masks(target_id)
        if not m.visible.any():
            continue
        p, vu = backproject(v.depth_m, v.K, m.visible, stride=pixel_stride(v.K))
        if len(p) == 0:
            continue
        if len(p) > max_points_per_view:
            keep = rng.choice(len(p), max_points_per_view, replace=False)
            p, vu = p[keep], vu[keep]
        pts.append(transform(T, p))
        cols.append(v.color[vu[:, 0], vu[:, 1]])
        idx.append(np.full(len(p), i))
        taus.append(m.visibility_ratio)
    if not pts:
        raise ViewsFormatError(f"target {target_id}: no view has valid depth on the target")
    return FusedTarget(np.concatenate(pts), np.concatenate(cols), np.concatenate(idx), poses,
                       len(pts), float(np.mean(taus)))


# --------------------------------------------------------------------------------------------
# Support plane
# --------------------------------------------------------------------------------------------

def _ransac_plane(pts: np.ndarray, rng: np.random.Generator, thresh_m: float = 0.005, iters: int = 300,
                  min_inlier_share: float = 0.3) -> np.ndarray | None:
    """[n, d] by RANSAC on a subsample, refined by least squares on all inliers. Our own numpy
    loop, not Open3D's segment_plane: that one draws its samples across OpenMP threads, so the same
    points could give another plane, and a replayed bag other meshes."""
    sub = pts[rng.choice(len(pts), 20000, replace=False)] if len(pts) > 20000 else pts
    tri = sub[rng.integers(0, len(sub), (iters, 3))]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(n, axis=1)
    good = norm > 1e-9
    if not good.any():
        return None
    n = n[good] / norm[good, None]
    d = -np.einsum("ij,ij->i", n, tri[good, 0])
    counts = np.array([(np.abs(sub @ n[k] + d[k]) < thresh_m).sum() for k in range(len(n))])
    best = int(np.argmax(counts))  # the first of equals: deterministic
    inl = np.abs(pts @ n[best] + d[best]) < thresh_m
    if inl.sum() < min_inlier_share * len(pts):
        return None
    q = pts[inl]
    c = q.mean(0)
    normal = np.linalg.svd(q - c, full_matrices=False)[2][2]
    return np.r_[normal, -normal @ c]


def fit_support_plane(views: list[View], poses: ViewPoses, target_points: np.ndarray,
                      seed: int = 0) -> np.ndarray | None:
    """RANSAC plane (4,) [n, d] with n . x + d = 0, n pointing up (towards the cameras),
    fitted to background pixels (label 0) near the target, in the output frame. None if absent."""
    center = target_points.mean(0)
    bg = []
    for i, v in enumerate(views):
        T = poses.T_out_cam[i]
        if T is None or v.depth_m is None:
            continue
        # as many points at 640x480 or 1280x720 as at 320x240: RANSAC subsamples 20000 anyway
        p, _ = backproject(v.depth_m, v.K, v.labels == 0, stride=2 * pixel_stride(v.K))
        p = transform(T, p)
        bg.append(p[np.linalg.norm(p - center, axis=1) < 0.5])
    if not bg:
        return None
    pts = np.concatenate(bg)
    if len(pts) < 50:
        return None
    plane = _ransac_plane(pts, np.random.default_rng(seed))
    if plane is None:
        return None
    cam_center = poses.T_out_cam[poses.used[0]][:3, 3]  # type: ignore[index]
    if plane[:3] @ cam_center + plane[3] < 0:
        plane = -plane
    # The target must be above the plane; otherwise it is not its support.
    if np.median(target_points @ plane[:3] + plane[3]) < 0:
        return None
    return plane
