"""The one reconstruction path: views -> Observation -> method -> Reconstruction -> files.

Used by the CLI, the benchmark and the ROS node alike.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from .baselines import BASELINES
from .geometry import ViewPoses
from .observation import Observation, observe
from .views import View, ViewsFormatError
from .weights_io import write_atomic


@dataclass
class Reconstruction:
    """A completed object.

    mesh: closed, outward-facing, metres, in ``frame`` ("world" or "reference_camera").
    vertex_confidence: (V,) float32 in [0, 1].
    vertex_colors: (V, 3) uint8 RGB.
    """

    mesh: trimesh.Trimesh
    frame: str
    track_id: int
    method: str
    n_views_used: int
    visible_fraction: float
    seconds: float
    vertex_confidence: np.ndarray
    vertex_colors: np.ndarray
    registration: list[dict] = field(default_factory=list)
    # the generator's samples as meshes (same frame), when asked for ("amodalgen3d?hypotheses=K")
    hypotheses: list[trimesh.Trimesh] = field(default_factory=list)
    # where the seconds went: observation (poses, fusion), then the method's own split where it
    # keeps one (learned: network, surface), else the method's whole time
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        return {"track_id": self.track_id, "n_views_used": self.n_views_used, "frame": self.frame,
                "seconds": round(self.seconds, 4), "method": self.method,
                "visible_fraction": round(self.visible_fraction, 4),
                "n_vertices": int(len(self.mesh.vertices)), "n_faces": int(len(self.mesh.faces)),
                "watertight": bool(self.mesh.is_watertight),
                "vertex_confidence": [round(float(c), 3) for c in self.vertex_confidence],
                "registration": self.registration, "hypotheses": len(self.hypotheses),
                "seconds_by_stage": {k: round(v, 4) for k, v in self.stage_seconds.items()}}


MethodFn = Callable[[Observation], "trimesh.Trimesh | tuple[trimesh.Trimesh, np.ndarray]"]


def method_names() -> list[str]:
    """The classical baselines and the learned methods whose weights ship.

    learned.py (torch) is imported on the first call, not with this module: the node's process
    imports this module to write results and must not load torch; its worker child runs the
    methods (worker.py)."""
    from .learned import shipped_methods

    return [*BASELINES, *shipped_methods()]


DEFAULT_METHOD = "auto"


def colorize(mesh: trimesh.Trimesh, obs: Observation, conf: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Colours from the nearest seen point; confidence 1 on seen surface when the method has none."""
    d, nn = cKDTree(obs.fused.points).query(mesh.vertices)
    near = d < 0.006
    colors = np.where(near[:, None], obs.fused.colors[nn], np.array([150, 150, 150], np.uint8)).astype(np.uint8)
    if conf is None:
        conf = np.exp(-d / 0.01)  # distance to the nearest observation, 1 cm scale
    return np.clip(conf, 0, 1).astype(np.float32), colors


def resolve_method(name: str) -> tuple[str, MethodFn]:
    """A method by name; "auto" is the learned generator when its weights ship, else support_hull."""
    methods = method_names()
    if name == "auto":
        name = "amodalgen3d" if "amodalgen3d" in methods else "support_hull"
    if "@" in name or "?" in name:
        # a learned method with other weights or sampler options (benchmarks, ablations):
        # "amodalgen3d@runs/x/flow.safetensors", "amodalgen3d?steps=4&samples=2", "amodalgen3d?hypotheses=4",
        # "amodalgen3d?fine_res=96" (the grid the result is made to agree with the views on),
        # "amodalgen3d@runs/x/flow.safetensors?decoder=runs/x/decoder.safetensors" (a decoder file
        # other than the shipped one, calibrated with those weights: ablations with the decoder)
        head, _, query = name.partition("?")
        base, _, weights = head.partition("@")
        opts: dict = {}
        decoder_file = ""
        try:
            for k, _, v in (kv.partition("=") for kv in query.split("&") if kv):
                if k == "decoder" and not v.lstrip("-").isdigit():
                    decoder_file = v
                else:
                    opts[k] = int(v)
        except ValueError:
            opts = {"": 0}
        if (base not in methods or (weights and not Path(weights).is_file())
                or (decoder_file and not Path(decoder_file).is_file())
                or not set(opts) <= {"steps", "samples", "hypotheses", "fine_res", "decoder"}):
            raise ViewsFormatError(
                f"'{name}': expected LEARNED_METHOD[@WEIGHTS_FILE]"
                "[?steps=N&samples=K&hypotheses=H&fine_res=F&decoder=0|1|DECODER_FILE]")
        if decoder_file:
            opts.update(decoder=1, decoder_weights=decoder_file)
        from .learned import learned_method  # (torch: see method_names)

        try:  # loaded here (cached), so a bad option is the caller's error, said before any views arrive
            learned = learned_method(base, weights or None, **opts)
        except ValueError as e:
            raise ViewsFormatError(f"'{name}': {e}") from None
        return name, learned
    if name not in methods:
        raise ViewsFormatError(f"unknown method '{name}' (choose from auto, {', '.join(sorted(methods))})")
    if name not in BASELINES:  # the learned method itself (not a wrapper): it keeps its stage_seconds
        from .learned import learned_method

        return name, learned_method(name)
    return name, BASELINES[name]


def reconstruct(views: list[View], target_id: int, method: str | tuple[str, MethodFn] = DEFAULT_METHOD,
                seed: int = 0, poses: ViewPoses | None = None, registration_budget_s: float | None = None) -> Reconstruction:
    """``method``: a name, or (name, callable) for a method configured by the caller (the node).
    ``registration_budget_s``: as geometry.resolve_poses's budget_s."""
    name, fn = resolve_method(method) if isinstance(method, str) else method
    t0 = time.perf_counter()
    obs = observe(views, target_id, seed=seed, poses=poses, registration_budget_s=registration_budget_s)
    t1 = time.perf_counter()
    out = fn(obs)
    stages = {"observation": t1 - t0, **getattr(fn, "stage_seconds", {"method": time.perf_counter() - t1})}
    out = out if isinstance(out, tuple) else (out, None)
    mesh, conf, hypotheses = out[0], out[1], (out[2] if len(out) > 2 else [])
    conf, colors = colorize(mesh, obs, conf)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.c_[colors, np.full(len(colors), 255, np.uint8)])
    regs = []
    sources = obs.poses.sources or ["given"] * len(obs.poses.registrations)
    for i, (r, source) in enumerate(zip(obs.poses.registrations, sources)):
        T = obs.poses.T_out_cam[i]
        entry = {"view": i, "stamp": round(views[i].stamp_s, 6), "pose": source,
                 "T_out_cam": None if T is None else np.round(T, 6).tolist()}
        if r is not None:
            entry.update(registered=r.ok, by=r.method, fitness=round(r.fitness, 3), reason=r.reason)
        regs.append(entry)
    return Reconstruction(mesh, obs.frame, target_id, name, len(obs.used_views()),
                          obs.fused.visible_fraction, time.perf_counter() - t0, conf, colors, regs, hypotheses,
                          stages)


def save(rec: Reconstruction, path: str | Path) -> tuple[Path, Path]:
    """Mesh (.ply/.obj/.glb by suffix) and the JSON summary beside it, both written atomically."""
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".") or "ply"
    if suffix not in ("ply", "obj", "glb"):
        raise ViewsFormatError(f"{path}: output must end in .ply, .obj or .glb")
    data = rec.mesh.export(file_type=suffix)
    write_atomic(path, data if isinstance(data, bytes) else data.encode())
    for k, h in enumerate(rec.hypotheses):  # mesh.ply -> mesh.hypothesis_0.ply, ...
        data = h.export(file_type=suffix)
        write_atomic(path.with_suffix(f".hypothesis_{k}.{suffix}"), data if isinstance(data, bytes) else data.encode())
    jpath = path.with_suffix(".json")
    write_atomic(jpath, json.dumps(rec.summary(), indent=1).encode())
    return path, jpath
