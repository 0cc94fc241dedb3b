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

import cv2
import numpy as np
import open3d as o3d

from ..geometry import invert, rotation_error_deg
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
    odometry_width: int = 160  # frames are registered at this width (the image is scaled down)
    keyframe_deg: float = 10.0
    keyframe_m: float = 0.05


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


def rgbd(color: np.ndarray, depth_m: np.ndarray, width: int) -> o3d.geometry.RGBDImage:
    s = width / color.shape[1]
    size = (width, int(round(color.shape[0] * s)))
    c = cv2.resize(color, size, interpolation=cv2.INTER_AREA)
    d = cv2.resize(depth_m, size, interpolation=cv2.INTER_NEAREST)
    return o3d.geometry.RGBDImage.create_from_color_and_depth(
        o3d.geometry.Image(np.ascontiguousarray(c)), o3d.geometry.Image(np.ascontiguousarray(d, np.float32)),
        depth_scale=1.0, depth_trunc=3.0, convert_rgb_to_intensity=True)


def track_stream(frames: list[tuple[np.ndarray, np.ndarray]], K: np.ndarray, cfg: OdometryBenchConfig):
    """Poses of every frame relative to the first (T_first_cam), frame-to-keyframe; failed frames
    keep the last pose. Returns (poses, failed flags, seconds per frame)."""
    s = cfg.odometry_width / frames[0][0].shape[1]
    h = int(round(frames[0][0].shape[0] * s))
    intr = o3d.camera.PinholeCameraIntrinsic(cfg.odometry_width, h, K[0, 0] * s, K[1, 1] * s, K[0, 2] * s, K[1, 2] * s)
    option = o3d.pipelines.odometry.OdometryOption()
    jac = o3d.pipelines.odometry.RGBDOdometryJacobianFromHybridTerm()
    key = rgbd(*frames[0], cfg.odometry_width)
    T_first_key = np.eye(4)
    T_key_prev = np.eye(4)
    poses, failed, secs = [np.eye(4)], [False], []
    for color, depth in frames[1:]:
        t0 = time.perf_counter()
        cur = rgbd(color, depth, cfg.odometry_width)
        # T_key_cur maps the current frame's points into the keyframe's
        ok, T_key_cur, _ = o3d.pipelines.odometry.compute_rgbd_odometry(cur, key, intr, T_key_prev, jac, option)
        secs.append(time.perf_counter() - t0)
        if not ok:
            failed.append(True)
            poses.append(poses[-1])
            continue
        failed.append(False)
        T_key_prev = T_key_cur
        poses.append(T_first_key @ T_key_cur)
        turned_deg = rotation_error_deg(np.eye(3), T_key_cur[:3, :3])
        if turned_deg > cfg.keyframe_deg or np.linalg.norm(T_key_cur[:3, 3]) > cfg.keyframe_m:
            key, T_first_key, T_key_prev = cur, poses[-1], np.eye(4)
    return poses, failed, secs


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
        frames = []
        for T in poses_true:
            depth, idx, pts, nrm = renderer.cast(K, T, cfg.width, cfg.height)
            frames.append((synth.shade(scene, idx, pts, nrm, T), synth.add_depth_noise(depth, rng)))
        poses, failed, secs = track_stream(frames, K, cfg)
        T0 = poses_true[0]
        trans_mm, rot_deg = [], []
        for T_est, T_true in zip(poses, poses_true):
            T_rel_true = invert(T0) @ T_true
            trans_mm.append(1000 * float(np.linalg.norm(T_est[:3, 3] - T_rel_true[:3, 3])))
            rot_deg.append(float(rotation_error_deg(T_est[:3, :3], T_rel_true[:3, :3])))
        plain = scene.materials[0].contrast < 1.5
        rows.append({"scene": i, "plain_table": bool(plain), "frames": len(frames), "failed": int(sum(failed)),
                     "trans_err_mm_median": float(np.median(trans_mm)), "trans_err_mm_last": trans_mm[-1],
                     "rot_err_deg_median": float(np.median(rot_deg)), "rot_err_deg_last": rot_deg[-1],
                     "seconds_per_frame_median": float(np.median(secs))})
    report = {"config": asdict(cfg), "machine": machine_info(), "rows": rows}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "odometry.json").write_text(json.dumps(report, indent=1))
    md = [f"## RGB-D odometry along a {cfg.arc_deg:.0f} degree arc in {cfg.seconds:.0f} s at {cfg.rate_hz:.0f} Hz, "
          f"{cfg.width}x{cfg.height}, registered at width {cfg.odometry_width}", "",
          "error of every frame's pose relative to the first, against the truth", "",
          "| scene | table | frames | failed | translation mm, median / last | rotation deg, median / last | s per frame |",
          "|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['scene']} | {'plain' if r['plain_table'] else 'textured'} | {r['frames']} | {r['failed']} | "
                  f"{r['trans_err_mm_median']:.1f} / {r['trans_err_mm_last']:.1f} | "
                  f"{r['rot_err_deg_median']:.2f} / {r['rot_err_deg_last']:.2f} | {r['seconds_per_frame_median']:.4f} |")
    (out / "odometry.md").write_text("\n".join(md) + "\n")
    return report
