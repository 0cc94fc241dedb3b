"""The data engine: tabletop occlusion scenes rendered with exact depth and instance labels.

World frame: z up, table top at z = 0. Each scene is written as

    DIR/scene_00042/views/   a views directory (../shared/spec/views-format.md), posed
    DIR/scene_00042/gt/      target.ply (world frame), gt.json, amodal_NNN.png, amodal_depth_NNN.png,
                             occupancy.npz

and is a pure function of (seed, split, index), so ``synth`` is deterministic and resumable.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import asdict, dataclass
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
import trimesh
from tqdm import tqdm

from ..views import View, write_views_dir
from . import shapes
from .metrics import inside


@dataclass(frozen=True)
class SynthConfig:
    width: int = 320  # a quarter-area 640x480 sensor keeps scenes fast to render
    height: int = 240
    fov_x_deg: float = 60.0  # close to a RealSense D435 colour camera
    n_views: int = 8  # views rendered; benchmarks take the first n
    min_others: int = 1
    max_others: int = 5
    min_dist_m: float = 0.3
    max_dist_m: float = 1.2
    depth_noise: bool = True  # consumer RGB-D noise model and holes
    occluder_in_front_prob: float = 0.6  # place one object between the target and view 000
    occupancy_res: int = 64
    # folders of real meshes (shapes.ShapeSource specs): targets are drawn from their objects of
    # the split, real_share of the scenes (the rest procedural); none: procedural only
    shapes: tuple[str, ...] = ()
    real_share: float = 1.0
    plain_table_prob: float = 0.0  # a plain, low-texture table (image features scarce) instead of a textured one


def intrinsics(cfg: SynthConfig) -> np.ndarray:
    f = cfg.width / 2 / np.tan(np.radians(cfg.fov_x_deg) / 2)
    return np.array([[f, 0, (cfg.width - 1) / 2], [0, f, (cfg.height - 1) / 2], [0, 0, 1]])


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """T_world_cam of an optical frame at ``eye`` looking at ``target`` (z forward, y down)."""
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up))
    if np.linalg.norm(x) < 1e-6:
        x = np.cross(z, [1.0, 0, 0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    T = np.eye(4)
    T[:3, :3] = np.stack([x, y, z], axis=1)
    T[:3, 3] = eye
    return T


# --------------------------------------------------------------------------------------------
# Appearance: view-consistent procedural textures (needed for feature matching too)
# --------------------------------------------------------------------------------------------

def value_noise(p: np.ndarray, freq: float, seed: int) -> np.ndarray:
    """3D value noise in [0, 1] at points (N, 3): random values on a lattice of ``freq`` cells per
    metre, hashed from the cell and the seed, trilinearly interpolated. Not periodic, so
    features match uniquely across views."""
    q = p * freq
    i0 = np.floor(q).astype(np.int64)
    f = q - i0
    f = f * f * (3 - 2 * f)  # smoothstep

    def h(i):
        x = (i[:, 0] * 73856093) ^ (i[:, 1] * 19349663) ^ (i[:, 2] * 83492791) ^ (seed * 2654435761)
        x = (x ^ (x >> 13)) * 1274126177
        return ((x ^ (x >> 16)) & 0xFFFF) / 65535.0

    out = np.zeros(len(p))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                w = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1]) * (f[:, 2] if dz else 1 - f[:, 2])
                out += w * h(i0 + np.array([dx, dy, dz]))
    return out


@dataclass
class Material:
    """A view-consistent procedural texture: two colours mixed by multi-octave value noise."""

    base: np.ndarray  # (3,) float 0..1
    second: np.ndarray
    freq: float  # cells per metre of the coarsest octave
    seed: int
    contrast: float

    def color_at(self, p: np.ndarray) -> np.ndarray:
        a = 0.5 * value_noise(p, self.freq, self.seed) + 0.3 * value_noise(p, 3 * self.freq, self.seed + 1) \
            + 0.2 * value_noise(p, 9 * self.freq, self.seed + 2)
        a = np.clip((a - 0.5) * self.contrast + 0.5, 0, 1)
        return self.base * (1 - a[:, None]) + self.second * a[:, None]


def plain_material(rng: np.random.Generator) -> Material:
    """A plain table: one colour with faint, coarse variation (what a painted or laminated top shows)."""
    base = rng.uniform(0.3, 0.9) * np.array([1.0, rng.uniform(0.9, 1.0), rng.uniform(0.8, 1.0)])
    return Material(base, np.clip(base * rng.uniform(0.9, 1.1), 0, 1), float(rng.uniform(5, 15)),
                    int(rng.integers(1 << 30)), float(rng.uniform(0.5, 1.0)))


@lru_cache(maxsize=8)
def real_objects(sources: tuple[str, ...], split: str) -> list:
    """The real meshes of the split (shapes.real_shapes), listed once per process."""
    objects = shapes.real_shapes(sources, split)
    if not objects:
        raise ValueError(f"no {split} meshes in {', '.join(sources)}")
    return objects


def random_material(rng: np.random.Generator, fmin: float = 60, fmax: float = 200) -> Material:
    base = rng.uniform(0.05, 1.0, 3)
    second = np.clip(1.05 - base + rng.normal(0, 0.15, 3), 0.02, 1.0)  # contrasting, so texture shows
    return Material(base, second, float(rng.uniform(fmin, fmax)), int(rng.integers(1 << 30)),
                    float(rng.uniform(2.5, 5.0)))


# --------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------

@dataclass
class Scene:
    meshes: list[trimesh.Trimesh]  # world frame; index 0 is the table
    ids: list[int]  # instance label of each mesh (table 0)
    materials: list[Material]
    target_index: int
    family: str
    light_dir: np.ndarray
    shape: str = ""  # a real target's object name (family: its collection)


def footprint_radius(m: trimesh.Trimesh) -> float:
    return float(np.linalg.norm(m.vertices[:, :2], axis=1).max())


def make_scene(rng: np.random.Generator, split: str, cfg: SynthConfig, azimuths: list[float]) -> Scene:
    """A target and 1-5 others; the first two others may stand in front of views 000 and 003."""
    families = shapes.HELDOUT_FAMILIES if split == "heldout" else shapes.TRAIN_FAMILIES
    # (random draws only where a feature is on: the procedural scenes stay what they were)
    real = real_objects(cfg.shapes, split) if cfg.shapes and rng.random() < cfg.real_share else []
    if real:
        source, path = real[int(rng.integers(len(real)))]
        family, shape = f"real:{Path(source.root).name}", shapes.object_name(source, path)
        target = shapes.rest_pose(shapes.load_real_mesh(source, path), rng)
    else:
        family, shape = families[int(rng.integers(len(families)))], ""
        target = shapes.random_pose_on_table(shapes.make_family(family, rng, split), rng)
    placed = [(np.zeros(2), footprint_radius(target))]
    meshes = [target]
    n_others = int(rng.integers(cfg.min_others, cfg.max_others + 1))
    for k in range(n_others):
        fam = shapes.TRAIN_FAMILIES[int(rng.integers(len(shapes.TRAIN_FAMILIES)))]
        if fam == "urdf":
            fam = "box"  # keep occluder generation cheap and independent of the urdf split
        m = shapes.random_pose_on_table(shapes.make_family(fam, rng, split), rng)
        in_front = k < 2 and rng.random() < cfg.occluder_in_front_prob
        if in_front:  # tall enough to hide part of the target from above too
            m.apply_scale(target.extents[2] * rng.uniform(0.8, 1.8) / max(m.extents[2], 1e-3))
        r = footprint_radius(m)
        for _attempt in range(30):
            if in_front:
                # between the target and the reference camera, with a gap
                az = azimuths[min(3 * k, len(azimuths) - 1)] + rng.normal(0, 0.3)
                dist = placed[0][1] + r + rng.uniform(0.005, 0.05)
            else:
                az = rng.uniform(0, 2 * np.pi)
                dist = placed[0][1] + r + rng.uniform(0.01, 0.25)
            c = dist * np.array([np.cos(az), np.sin(az)])
            if all(np.linalg.norm(c - pc) > pr + r + 0.005 for pc, pr in placed):
                m.apply_translation([c[0], c[1], 0])
                placed.append((c, r))
                meshes.append(m)
                break
    table = trimesh.creation.box(extents=[1.6, 1.6, 0.04])
    table.apply_translation([0, 0, -0.02])
    ids = [0] + [int(i) for i in rng.choice(np.arange(1, 250), len(meshes), replace=False)]
    plain = cfg.plain_table_prob > 0 and rng.random() < cfg.plain_table_prob
    mats = [plain_material(rng) if plain else random_material(rng, 40, 120)] + [random_material(rng) for _ in meshes]
    light = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), 1.0])
    return Scene([table] + meshes, ids, mats, 1, family, light / np.linalg.norm(light), shape)


def camera_azimuths(rng: np.random.Generator, cfg: SynthConfig) -> list[float]:
    """A camera moving around the target: azimuth steps of 10-60 degrees, mostly one way."""
    az = [rng.uniform(0, 2 * np.pi)]
    for _ in range(cfg.n_views - 1):
        az.append(az[-1] + np.radians(rng.uniform(10, 60)) * (1 if rng.random() < 0.8 else -1))
    return az


def camera_poses(rng: np.random.Generator, cfg: SynthConfig, target: trimesh.Trimesh,
                 azimuths: list[float]) -> list[np.ndarray]:
    center = target.bounds.mean(0)
    size = float(target.extents.max())
    poses = []
    for az in azimuths:
        el = np.radians(rng.uniform(10, 55))
        d = float(np.clip(size * rng.uniform(2.0, 4.5) + 0.15, cfg.min_dist_m, cfg.max_dist_m))
        eye = center + d * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        poses.append(look_at(eye, center + rng.normal(0, 0.015, 3)))
    return poses


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

class Renderer:
    """Exact depth and instance labels by ray casting (Open3D RaycastingScene)."""

    def __init__(self, meshes: list[trimesh.Trimesh], nthreads: int = 0):
        self.scene = o3d.t.geometry.RaycastingScene(nthreads=nthreads)
        self.geom_ids = []
        for m in meshes:
            tm = o3d.t.geometry.TriangleMesh()
            tm.vertex.positions = o3d.core.Tensor(np.asarray(m.vertices, np.float32))
            tm.triangle.indices = o3d.core.Tensor(np.asarray(m.faces, np.int32))
            self.geom_ids.append(self.scene.add_triangles(tm))

    def cast(self, K: np.ndarray, T_world_cam: np.ndarray, width: int, height: int):
        """Returns depth_m (H, W) along the optical axis (0 = miss), hit index into meshes
        (-1 = miss), hit points (H, W, 3) world, normals (H, W, 3) world."""
        u, v = np.meshgrid(np.arange(width), np.arange(height))
        d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, float)], -1)
        d_world = d_cam @ T_world_cam[:3, :3].T
        o = np.broadcast_to(T_world_cam[:3, 3], d_world.shape)
        rays = o3d.core.Tensor(np.concatenate([o, d_world], -1).astype(np.float32))
        ans = self.scene.cast_rays(rays)
        t = ans["t_hit"].numpy()
        gid = ans["geometry_ids"].numpy().astype(np.int64)
        hit = np.isfinite(t)
        depth = np.where(hit, t, 0.0).astype(np.float32)  # d_cam has z = 1, so t is z-depth
        lut = np.full(max(self.geom_ids) + 1, -1, np.int64)
        lut[self.geom_ids] = np.arange(len(self.geom_ids))
        index = np.where(hit, lut[np.clip(gid, 0, len(lut) - 1)], -1)
        points = o + d_world * np.where(hit, t, 0.0)[..., None]
        return depth, index, points, ans["primitive_normals"].numpy()


def shade(scene: Scene, index: np.ndarray, points: np.ndarray, normals: np.ndarray,
          T_world_cam: np.ndarray) -> np.ndarray:
    h, w = index.shape
    rgb = np.full((h, w, 3), 0.02)
    view_dir = T_world_cam[:3, 3] - points
    for i, mat in enumerate(scene.materials):
        sel = index == i
        if not sel.any():
            continue
        n = normals[sel]
        # face normals may point either way; face them towards the camera
        n = n * np.sign((n * view_dir[sel]).sum(1, keepdims=True) + 1e-12)
        lam = np.clip(n @ scene.light_dir, 0, 1)
        rgb[sel] = mat.color_at(points[sel]) * (0.35 + 0.65 * lam[:, None])
    return np.clip(rgb * 255, 0, 255).astype(np.uint8)


def add_depth_noise(depth_m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Consumer RGB-D noise: axial sigma growing with z^2, holes at depth edges, dropouts."""
    d = depth_m.copy()
    valid = d > 0
    sigma = 0.0012 + 0.0019 * np.square(np.maximum(d - 0.4, 0))
    d = np.where(valid, d + rng.normal(0, 1, d.shape) * sigma, 0)
    gy, gx = np.gradient(depth_m)
    edge = (np.hypot(gx, gy) > 0.02) & valid
    edge = cv2.dilate(edge.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    d[edge & (rng.random(d.shape) < 0.7)] = 0
    d[rng.random(d.shape) < 0.01] = 0
    return d.astype(np.float32)


@dataclass
class RenderedScene:
    views: list[View]
    target_id: int
    target_mesh: trimesh.Trimesh  # world frame
    amodal_masks: list[np.ndarray]
    amodal_depths: list[np.ndarray]
    occlusion: list[float]  # hidden share of the target's in-image amodal area, per view
    family: str
    noiseless_depths: list[np.ndarray]
    shape: str = ""  # a real target's object name


def render_scene(seed: int, split: str, index: int, cfg: SynthConfig = SynthConfig(),
                 nthreads: int = 0) -> RenderedScene:
    """Scene ``index`` of ``split`` for ``seed``: a pure function of its arguments."""
    rng = np.random.default_rng([seed, zlib.crc32(split.encode()), index])
    K = intrinsics(cfg)
    for _attempt in range(10):
        azimuths = camera_azimuths(rng, cfg)
        scene = make_scene(rng, split, cfg, azimuths)
        target = scene.meshes[scene.target_index]
        poses = camera_poses(rng, cfg, target, azimuths)
        full = Renderer(scene.meshes, nthreads)
        alone = Renderer([target], nthreads)
        views, am, ad, occ, clean = [], [], [], [], []
        for i, T in enumerate(poses):
            depth, idx, pts, nrm = full.cast(K, T, cfg.width, cfg.height)
            labels = np.where(idx >= 0, np.asarray(scene.ids)[np.maximum(idx, 0)], 0)
            color = shade(scene, idx, pts, nrm, T)
            a_depth, a_idx, _, _ = alone.cast(K, T, cfg.width, cfg.height)
            amodal = a_idx == 0
            visible = labels == scene.ids[scene.target_index]
            occ.append(float(1 - visible.sum() / max(amodal.sum(), 1)))
            noisy = add_depth_noise(depth, rng) if cfg.depth_noise else depth
            views.append(View(color=color, depth_m=noisy, K=K, labels=labels.astype(np.int64),
                              T_world_cam=T, stamp_s=0.1 * i, name=f"{i:03d}"))
            am.append(amodal)
            ad.append(a_depth)
            clean.append(depth)
        # the reference view must see the target
        if (views[0].labels == scene.ids[scene.target_index]).sum() >= 30:
            break
    return RenderedScene(views, scene.ids[scene.target_index], target, am, ad, occ, scene.family, clean, scene.shape)


def occupancy_grid(mesh: trimesh.Trimesh, res: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Occupancy (res^3 bool) of a cube around the mesh; returns grid, cube origin (3,), voxel size."""
    size = float(mesh.extents.max()) * 1.1
    origin = mesh.bounds.mean(0) - size / 2
    vox = size / res
    c = (np.arange(res) + 0.5) * vox
    pts = np.stack(np.meshgrid(c, c, c, indexing="ij"), -1).reshape(-1, 3) + origin
    return inside(mesh, pts).reshape(res, res, res), origin, vox


def write_scene(out: Path, rs: RenderedScene, cfg: SynthConfig, meta: dict) -> None:
    write_views_dir(out / "views", rs.views, rs.target_id)
    gt = out / "gt"
    gt.mkdir(parents=True, exist_ok=True)
    rs.target_mesh.export(gt / "target.ply")
    for i, (m, d) in enumerate(zip(rs.amodal_masks, rs.amodal_depths)):
        cv2.imwrite(str(gt / f"amodal_{i:03d}.png"), m.astype(np.uint8) * 255)
        cv2.imwrite(str(gt / f"amodal_depth_{i:03d}.png"), np.clip(np.round(d * 1000), 0, 65535).astype(np.uint16))
        cv2.imwrite(str(gt / f"depth_clean_{i:03d}.png"),
                    np.clip(np.round(rs.noiseless_depths[i] * 1000), 0, 65535).astype(np.uint16))
    occ, origin, vox = occupancy_grid(rs.target_mesh, cfg.occupancy_res)
    np.savez_compressed(gt / "occupancy.npz", occupancy=np.packbits(occ), shape=occ.shape,
                        origin=origin, voxel_m=vox)
    info = dict(meta, target_id=rs.target_id, family=rs.family, shape=rs.shape, occlusion=rs.occlusion,
                T_world_camera=[v.T_world_cam.reshape(-1).tolist() for v in rs.views],  # type: ignore[union-attr]
                target_extent_m=rs.target_mesh.extents.tolist(), config=asdict(cfg))
    (gt / "gt.json").write_text(json.dumps(info))
    (out / "done").write_text("")


def _synth_one(args: tuple) -> int:
    out_dir, seed, split, i, cfg = args
    out = Path(out_dir) / f"scene_{i:05d}"
    if (out / "done").exists():
        return i
    rs = render_scene(seed, split, i, cfg, nthreads=1)
    write_scene(out, rs, cfg, {"seed": seed, "split": split, "index": i})
    return i


def synth(out_dir: str | Path, n_scenes: int, seed: int, split: str = "train",
          cfg: SynthConfig = SynthConfig(), workers: int | None = None, progress: bool = True) -> Path:
    """Write scenes 0..n_scenes-1; scenes already done are skipped (resumable)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text(json.dumps({"seed": seed, "split": split, "scenes": n_scenes,
                                                   "config": asdict(cfg)}))
    jobs = [(str(out), seed, split, i, cfg) for i in range(n_scenes)]
    workers = workers or min(2, os.cpu_count() or 1)
    bar = tqdm(total=n_scenes, desc=f"synth {split}", unit="scene", disable=not progress)
    if workers == 1:
        for j in jobs:
            _synth_one(j)
            bar.update()
    else:
        with get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_synth_one, jobs):
                bar.update()
    bar.close()
    return out


def scene_dirs(root: str | Path) -> list[Path]:
    return sorted(p for p in Path(root).glob("scene_*") if (p / "done").exists())


def load_gt(scene_dir: Path) -> dict:
    info = json.loads((scene_dir / "gt" / "gt.json").read_text())
    info["mesh"] = trimesh.load(scene_dir / "gt" / "target.ply", process=False)
    return info
