"""Tabletop objects, all watertight, in metres: procedural families, pybullet's random_urdfs, and
folders of real meshes (scans and models; ``synth --shapes DIR``).

Every shape is returned in its own frame: base on z = 0, centred on the z axis.
Splits: ``superquadric``, every fifth random_urdfs object and one real object in four (by name)
are held out from training.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import trimesh

TRAIN_FAMILIES = ["box", "can", "bottle", "bowl", "mug", "cone", "ellipsoid", "composite", "urdf"]
HELDOUT_FAMILIES = TRAIN_FAMILIES + ["superquadric"]
BAD_URDFS = {168}  # NaN vertices


def urdf_ids(split: str) -> list[int]:
    ids = [i for i in range(1000) if i not in BAD_URDFS]
    return [i for i in ids if (i % 5 == 0) == (split == "heldout")]


def _revolve(profile_rz: list[tuple[float, float]], sections: int = 48) -> trimesh.Trimesh:
    """Solid of revolution of a closed (r, z) profile that starts and ends on the axis."""
    m = trimesh.creation.revolve(np.asarray(profile_rz, np.float64), sections=sections)
    m.merge_vertices()
    if m.volume < 0:
        m.invert()
    return m


def _union(meshes: list[trimesh.Trimesh]) -> trimesh.Trimesh:
    return trimesh.boolean.union(meshes, engine="manifold")


def _shell_profile(radii: np.ndarray, heights: np.ndarray, wall: float, base: float):
    """(r, z) profile of an open-topped shell (bowl, cup) whose outer surface is (radii, heights)."""
    outer = list(zip(radii, heights))
    inner_r = np.maximum(radii - wall, 0.0)
    inner = [(r, max(z, base)) for r, z in zip(inner_r, heights)]
    inner[0] = (0.0, base)
    return [(0.0, 0.0)] + outer[1:] + inner[::-1][:-1] + [(0.0, base)]


def make_family(family: str, rng: np.random.Generator, split: str = "train") -> trimesh.Trimesh:
    size = rng.uniform(0.03, 0.30)  # largest extent, metres
    if family == "box":
        e = rng.uniform(0.25, 1.0, 3)
        m = trimesh.creation.box(extents=e / e.max() * size)
    elif family == "can":
        h = size * rng.uniform(0.4, 1.0)
        r = min(size, h / rng.uniform(0.6, 3.0)) / 2
        m = trimesh.creation.cylinder(radius=r, height=h, sections=48)
    elif family == "bottle":
        h = max(size, 0.08)
        r = h * rng.uniform(0.12, 0.25)
        rn = r * rng.uniform(0.25, 0.45)
        zs = h * rng.uniform(0.5, 0.7)
        zn = zs + h * rng.uniform(0.1, 0.2)
        m = _revolve([(0, 0), (r, 0), (r, zs), (rn, zn), (rn, h), (0, h)])
    elif family == "bowl":
        rad = size / 2
        depth = rad * rng.uniform(0.35, 0.9)
        wall = rng.uniform(0.003, 0.007)
        a = np.linspace(0, 1, 12)
        radii = rad * (0.35 + 0.65 * np.sin(a * np.pi / 2))
        radii[0] = 0.0
        m = _revolve(_shell_profile(radii, depth * a ** 1.5, wall, wall))
    elif family == "mug":
        h = max(size * rng.uniform(0.6, 1.0), 0.06)
        r = h * rng.uniform(0.3, 0.5)
        wall = rng.uniform(0.003, 0.006)
        cup = _revolve(_shell_profile(np.array([0.0, r, r]), np.array([0.0, 0.0, h]), wall, wall))
        handle = trimesh.creation.torus(major_radius=h * 0.28, minor_radius=max(wall, 0.005),
                                        major_sections=32, minor_sections=12)
        handle.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
        handle.apply_translation([r, 0, h * 0.5])
        m = _union([cup, handle])
    elif family == "cone":
        r = size / 2 * rng.uniform(0.4, 1.0)
        m = trimesh.creation.cone(radius=r, height=size * rng.uniform(0.5, 1.0), sections=48)
    elif family == "ellipsoid":
        m = trimesh.creation.icosphere(subdivisions=3)
        e = rng.uniform(0.3, 1.0, 3)
        m.apply_scale(e / e.max() * size / 2)
    elif family == "superquadric":
        m = trimesh.creation.icosphere(subdivisions=4)
        v = m.vertices
        eta = np.arcsin(np.clip(v[:, 2], -1, 1))
        om = np.arctan2(v[:, 1], v[:, 0])
        e1, e2 = rng.uniform(0.2, 1.5, 2)

        def f(w, e):
            return np.sign(w) * np.abs(w) ** e
        ax = rng.uniform(0.3, 1.0, 3)
        ax = ax / ax.max() * size / 2
        m.vertices = np.stack([ax[0] * f(np.cos(eta), e1) * f(np.cos(om), e2),
                               ax[1] * f(np.cos(eta), e1) * f(np.sin(om), e2),
                               ax[2] * f(np.sin(eta), e1)], axis=1)
    elif family == "composite":
        # a tool: a handle and a head (hammer, spatula, mallet)
        L = max(size, 0.1)
        hr = rng.uniform(0.008, 0.02)
        handle = trimesh.creation.cylinder(radius=hr, height=L, sections=24)
        handle.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0]))
        hd = np.array([rng.uniform(0.02, 0.06), rng.uniform(0.03, 0.1), rng.uniform(0.02, 0.05)])
        head = trimesh.creation.box(extents=hd)
        head.apply_translation([L / 2, 0, 0])
        m = _union([handle, head])
    elif family == "urdf":
        ids = urdf_ids(split)
        m = load_urdf_object(ids[int(rng.integers(len(ids)))]).copy()
        m.apply_scale(size / max(m.extents.max(), 1e-6))
    else:
        raise ValueError(f"unknown family {family}")
    return to_base_frame(m)


def to_base_frame(m: trimesh.Trimesh) -> trimesh.Trimesh:
    lo, hi = m.bounds
    m.apply_translation([-(lo[0] + hi[0]) / 2, -(lo[1] + hi[1]) / 2, -lo[2]])
    return m


@lru_cache(maxsize=64)
def load_urdf_object(idx: int) -> trimesh.Trimesh:
    """pybullet_data/random_urdfs/NNN/NNN.obj: a union of closed convex pieces, made one solid."""
    import pybullet_data

    path = os.path.join(pybullet_data.getDataPath(), "random_urdfs", f"{idx:03d}", f"{idx:03d}.obj")
    scene = trimesh.load(path, force="scene", process=False)
    pieces = []
    for g in scene.dump() if hasattr(scene, "dump") else [scene]:
        g = trimesh.Trimesh(g.vertices, g.faces, process=True)
        for part in g.split(only_watertight=False):
            part = part.convex_hull  # pieces are convex; the hull repairs tiny seams
            if part.volume > 1e-12:
                pieces.append(part)
    m = _union(pieces) if len(pieces) > 1 else pieces[0]
    return to_base_frame(m)


def random_pose_on_table(m: trimesh.Trimesh, rng: np.random.Generator, lying_prob: float = 0.25) -> trimesh.Trimesh:
    """Standing (as made) or lying (on its side), random yaw; base on z = 0."""
    m = m.copy()
    if rng.random() < lying_prob:
        m.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    m.apply_transform(trimesh.transformations.rotation_matrix(rng.uniform(0, 2 * np.pi), [0, 0, 1]))
    return to_base_frame(m)


# --------------------------------------------------------------------------------------------
# Real meshes: folders of scanned or modelled objects (obj, ply, stl)
# --------------------------------------------------------------------------------------------

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".glb")
HELDOUT_SHARE = 4  # one object in four of each collection is held out from training


@dataclass(frozen=True)
class ShapeSource:
    """A folder of real meshes and how to bring them to metres. ``spec`` is ``DIR`` or
    ``DIR:key=value,...`` with keys ``units`` (m, cm, mm; default: guessed per mesh from its size)
    and ``middle`` or ``longest`` (``MIN-MAX`` metres: the collection lost its sizes, so that side is
    drawn per object, deterministically from its name, in this range)."""

    root: str
    units: str = ""
    middle: tuple[float, float] | None = None
    longest: tuple[float, float] | None = None

    @staticmethod
    def parse(spec: str) -> ShapeSource:
        root, _, opts = spec.partition(":")
        kw: dict = {}
        for item in filter(None, opts.split(",")):
            k, _, v = item.partition("=")
            if k == "units" and v in ("m", "cm", "mm"):
                kw[k] = v
            elif k in ("middle", "longest"):
                lo, _, hi = v.partition("-")
                try:
                    kw[k] = (float(lo), float(hi or lo))
                except ValueError:
                    raise ValueError(f"{spec}: {k} takes MIN-MAX metres, got '{v}'") from None
            else:
                raise ValueError(f"{spec}: unknown option '{item}' (units=m|cm|mm, middle=MIN-MAX, longest=MIN-MAX)")
        if not Path(root).is_dir():
            raise ValueError(f"{root}: not a folder of meshes")
        return ShapeSource(root, **kw)


def mesh_files(source: ShapeSource) -> list[Path]:
    """The source's mesh files, sorted; collision and visual duplicates of one object (HOPE's
    ``*_coll.obj``, ``*_col.obj``) are left out, as are YCB folders (an outside held-out set)."""
    out = []
    for p in sorted(Path(source.root).rglob("*")):
        low = str(p.relative_to(source.root)).lower()
        if p.suffix.lower() not in MESH_SUFFIXES or "ycb" in low or low.endswith(("_coll.obj", "_col.obj")):
            continue
        out.append(p)
    return out


def object_name(source: ShapeSource, path: Path) -> str:
    """An object's name: its folder's, where each object has one (``alphabet_soup/textured.obj``),
    else the file's."""
    rel = path.relative_to(source.root)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def object_split(name: str) -> str:
    """'heldout' for one object in HELDOUT_SHARE (by a stable hash of its name), else 'train'."""
    return "heldout" if zlib.crc32(name.encode()) % HELDOUT_SHARE == 0 else "train"


def real_shapes(sources: tuple[str, ...], split: str) -> list[tuple[ShapeSource, Path]]:
    """Every (source, mesh file) of the split, in a fixed order."""
    parsed = [ShapeSource.parse(s) for s in sources]
    return [(s, p) for s in parsed for p in mesh_files(s) if object_split(object_name(s, p)) == split]


def _to_metres(m: trimesh.Trimesh, source: ShapeSource, name: str) -> trimesh.Trimesh:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if source.middle or source.longest:
        lo, hi = source.middle or source.longest  # type: ignore[misc]
        side = float(np.sort(m.extents)[1] if source.middle else m.extents.max())
        m.apply_scale(rng.uniform(lo, hi) / max(side, 1e-9))
        return m
    scale = {"m": 1.0, "cm": 0.01, "mm": 0.001}.get(source.units)
    if scale is None:  # the unit that puts the object at household size (2-60 cm)
        e = float(m.extents.max())
        scale = next((s for s in (1.0, 0.01, 0.001) if 0.02 <= e * s <= 0.6), 1.0)
    m.apply_scale(scale)
    return m


@lru_cache(maxsize=256)
def load_real_mesh(source: ShapeSource, path: Path) -> trimesh.Trimesh:
    """A real mesh in metres, closed and outward, base on z = 0. A mesh that is not watertight
    (scans with holes, models split into parts) is replaced by the surface of its filled
    voxelization at 1/96 of its size: rendering and the ground truth's inside test need a closed
    surface; the voxel surface differs from the mesh by under a voxel."""
    m = trimesh.load(path, force="mesh", process=True)
    if not isinstance(m, trimesh.Trimesh) or len(m.faces) == 0:
        raise ValueError(f"{path}: no triangles")
    m = _to_metres(m, source, f"{Path(source.root).name}/{object_name(source, path)}")
    m.merge_vertices()
    if not m.is_watertight:
        trimesh.repair.fill_holes(m)
    if not m.is_watertight:
        pitch = float(m.extents.max()) / 96
        m = m.voxelized(pitch).fill().marching_cubes
        m.apply_scale(pitch)  # (marching_cubes is in voxel units, from the voxel grid's origin)
    trimesh.repair.fix_normals(m)
    if m.volume < 0:
        m.invert()
    return to_base_frame(m)


def rest_pose(m: trimesh.Trimesh, rng: np.random.Generator) -> trimesh.Trimesh:
    """One of the mesh's stable resting poses on a plane (quasi-static physics on its convex hull,
    drawn by their probability: upright and lying), random yaw; base on z = 0."""
    m = m.copy()
    try:
        transforms, probs = m.convex_hull.compute_stable_poses(n_samples=1)
    except Exception:  # a degenerate hull: as made
        transforms, probs = [np.eye(4)], np.ones(1)
    if len(transforms):
        p = np.asarray(probs, float)
        k = int(rng.choice(len(transforms), p=p / p.sum())) if p.sum() > 0 else 0
        m.apply_transform(transforms[k])
    m.apply_transform(trimesh.transformations.rotation_matrix(rng.uniform(0, 2 * np.pi), [0, 0, 1]))
    return to_base_frame(m)
