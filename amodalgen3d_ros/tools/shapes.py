"""Procedural tabletop objects and pybullet's random_urdfs, all watertight, in metres.

Every shape is returned in its own frame: base on z = 0, centred on the z axis.
Splits: ``superquadric`` and every fifth random_urdfs object are held out from training.
"""

from __future__ import annotations

import os
from functools import lru_cache

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
