"""How well RGB-D odometry (Open3D's) follows a camera moving along a tabletop stream: the
measurement behind tracking poses along the stream in the node (#41), before it is built.

    amodalgen3d bench --odometry [--width 640 --height 480] [--plain-table 0.5] --out bench_out/odometry

A camera arc of ``arc_deg`` degrees in ``seconds`` at ``rate_hz`` around a synthetic tabletop scene
(the data engine's objects, textured or plain tables, consumer depth noise). Each frame is
registered to the last keyframe at a reduced resolution (``odometry_width``); a new keyframe is
taken after ``keyframe_deg`` degrees or ``keyframe_m`` metres. Reported per scene and pooled: the
pose error of every frame against the truth, relative to the first frame (mm, degrees), how many
frames the odometry failed on, and the seconds per frame.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..camera_tracking import OdometryConfig, StreamOdometry
from ..geometry import invert, rotation_error_deg
from ..views import View
from . import synth
from .bench import machine_info


@dataclass(frozen=True)
class OdometryBenchConfig:
    scenes: int = 4
    seed: int = 4321
    width: int = 640
    height: int = 480
    rate_hz: float = 30.0
    seconds: float = 5.0
    arc_deg: float = 120.0
    plain_table_prob: float = 0.5
    odometry_width: int = OdometryConfig.width  # frames are registered at this width (scaled down)
    keyframe_deg: float = 10.0
    keyframe_m: float = 0.05
    take_hz: float = 0.0  # frames taken per second (the node's max_frame_rate_hz); 0: every frame


def arc_poses(center: np.ndarray, radius_m: float, elevation_deg: float, start_rad: float, cfg: OdometryBenchConfig):
    """T_world_cam of every frame of the arc, looking at ``center``."""
    n = int(round(cfg.seconds * cfg.rate_hz))
    out = []
    for k in range(n):
        az = start_rad + np.radians(cfg.arc_deg) * k / max(n - 1, 1)
        el = np.radians(elevation_deg)
        eye = center + radius_m * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        out.append(synth.look_at(eye, center))
    return out


def track_stream(frames: list[View], cfg: OdometryBenchConfig):
    """The node's camera tracking (camera_tracking.StreamOdometry) over the frames the node would
    take (``take_hz`` of ``rate_hz``): poses relative to the first frame (T_first_cam; None where
    a segment was lost), statuses, seconds per frame."""
    odo = StreamOdometry(OdometryConfig(width=cfg.odometry_width, keyframe_deg=cfg.keyframe_deg,
                                        keyframe_m=cfg.keyframe_m))
    poses, status, secs = [], [], []
    for v in frames:
        t0 = time.perf_counter()
        r = odo.track(v)
        secs.append(time.perf_counter() - t0)
        poses.append(r.T_seg_cam if r.segment == 1 else None)
        status.append(r.status)
    return poses, status, secs


def run_odometry_bench(out: str | Path, cfg: OdometryBenchConfig = OdometryBenchConfig(), progress: bool = True) -> dict:
    from tqdm import tqdm

    scfg = synth.SynthConfig(width=cfg.width, height=cfg.height, plain_table_prob=cfg.plain_table_prob)
    K = synth.intrinsics(scfg)
    rows = []
    for i in tqdm(range(cfg.scenes), desc="odometry", unit="scene", disable=not progress):
        rng = np.random.default_rng([cfg.seed, i])
        scene = synth.make_scene(rng, "heldout", scfg, synth.camera_azimuths(rng, scfg))
        target = scene.meshes[scene.target_index]
        poses_true = arc_poses(target.bounds.mean(0), float(rng.uniform(0.5, 0.8)), float(rng.uniform(25, 45)),
                               float(rng.uniform(0, 2 * np.pi)), cfg)
        renderer = synth.Renderer(scene.meshes)
        every = max(1, int(round(cfg.rate_hz / cfg.take_hz))) if cfg.take_hz > 0 else 1
        poses_true = poses_true[::every]
        frames = []
        for k, T in enumerate(poses_true):
            depth, idx, pts, nrm = renderer.cast(K, T, cfg.width, cfg.height)
            labels = np.where(idx >= 0, np.asarray(scene.ids)[np.maximum(idx, 0)], 0).astype(np.int64)
            frames.append(View(synth.shade(scene, idx, pts, nrm, T), synth.add_depth_noise(depth, rng), K, labels,
                               None, k * every / cfg.rate_hz))
        poses, status, secs = track_stream(frames, cfg)
        failed = [s.startswith("lost") for s in status]
        T0 = poses_true[0]
        trans_mm, rot_deg = [], []
        for T_est, T_true in zip(poses, poses_true):
            if T_est is None:
                continue
            T_rel_true = invert(T0) @ T_true
            trans_mm.append(1000 * float(np.linalg.norm(T_est[:3, 3] - T_rel_true[:3, 3])))
            rot_deg.append(float(rotation_error_deg(T_est[:3, :3], T_rel_true[:3, :3])))
        plain = scene.materials[0].contrast < 1.5
        rows.append({"scene": i, "plain_table": bool(plain), "frames": len(frames), "failed": int(sum(failed)),
                     "frames_in_first_segment": len(trans_mm),
                     "trans_err_mm_median": float(np.median(trans_mm)), "trans_err_mm_last": trans_mm[-1],
                     "rot_err_deg_median": float(np.median(rot_deg)), "rot_err_deg_last": rot_deg[-1],
                     "seconds_per_frame_median": float(np.median(secs))})
    report = {"config": asdict(cfg), "machine": machine_info(), "rows": rows}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "odometry.json").write_text(json.dumps(report, indent=1))
    md = [f"## RGB-D odometry along a {cfg.arc_deg:.0f} degree arc in {cfg.seconds:.0f} s at {cfg.rate_hz:.0f} Hz, "
          f"{cfg.width}x{cfg.height}, registered at width {cfg.odometry_width}"
          + (f", {cfg.take_hz:g} frames taken a second (the node's max_frame_rate_hz)" if cfg.take_hz else ""), "",
          "error of every frame's pose relative to the first, against the truth", "",
          "| scene | table | frames | lost | translation mm, median / last | rotation deg, median / last | s per frame |",
          "|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['scene']} | {'plain' if r['plain_table'] else 'textured'} | {r['frames']} | {r['failed']} | "
                  f"{r['trans_err_mm_median']:.1f} / {r['trans_err_mm_last']:.1f} | "
                  f"{r['rot_err_deg_median']:.2f} / {r['rot_err_deg_last']:.2f} | {r['seconds_per_frame_median']:.4f} |")
    (out / "odometry.md").write_text("\n".join(md) + "\n")
    return report
