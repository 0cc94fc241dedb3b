"""The node on a moving camera's stream, with ground truth: what a robot's camera gives it.

    amodalgen3d bench --node --stream [--objects 4] [--plain-table 1] [--stream-size 640 480] --out DIR
    amodalgen3d bench --node --stream --repeats 20 --load 1 --out DIR    (results or counted reasons)

A camera arc of ``arc_deg`` in ``seconds`` at ``rate_hz`` around a synthetic tabletop (the data
engine's objects, placed to occlude each other, consumer depth noise; plain or textured table),
published live over DDS to the node started from config/amodalgen3d.yaml (no TF: poses come from
the node's own camera tracking). Every object is a track. When the stream has ended and every
track has had its final run, per track: views kept and how each was posed (result JSON), each
view's pose error against the truth relative to the track's reference view (mm, degrees), the
result's F@10mm, IoU and Chamfer against the true shape, and the same metrics for the same views
reconstructed with the true poses (in this process, the same method). Plus the node's latency,
seconds per object by stage, CPU and RSS (node_bench.py's measurements).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import trimesh

from ...geometry import invert, rotation_error_deg
from ...tools import synth
from ...tools.odometry_bench import OdometryBenchConfig, arc_poses
from ...views import View


@dataclass(frozen=True)
class StreamConfig:
    objects: int = 4
    width: int = 640
    height: int = 480
    rate_hz: float = 30.0
    seconds: float = 5.0
    arc_deg: float = 120.0
    plain_table: bool = True
    seed: int = 0
    radius_m: float = 0.75
    elevation_deg: float = 40.0


def render_stream(cfg: StreamConfig) -> tuple[synth.Scene, list[View], list[np.ndarray]]:
    """The scene, its frames (stamps from 0) and the true camera poses."""
    scfg = synth.SynthConfig(width=cfg.width, height=cfg.height, min_others=cfg.objects - 1, max_others=cfg.objects - 1,
                             occluder_in_front_prob=1.0, plain_table_prob=1.0 if cfg.plain_table else 0.0)
    rng = np.random.default_rng([cfg.seed, cfg.objects, int(cfg.plain_table)])
    scene = synth.make_scene(rng, "heldout", scfg, synth.camera_azimuths(rng, scfg))
    center = np.mean([m.bounds.mean(0) for m in scene.meshes[1:]], axis=0)
    arc = OdometryBenchConfig(rate_hz=cfg.rate_hz, seconds=cfg.seconds, arc_deg=cfg.arc_deg)
    poses = arc_poses(center, cfg.radius_m, cfg.elevation_deg, float(rng.uniform(0, 2 * np.pi)), arc)
    K = synth.intrinsics(scfg)
    renderer = synth.Renderer(scene.meshes)
    frames = []
    for k, T in enumerate(poses):
        depth, idx, pts, nrm = renderer.cast(K, T, cfg.width, cfg.height)
        labels = np.where(idx >= 0, np.asarray(scene.ids)[np.maximum(idx, 0)], 0).astype(np.int64)
        frames.append(View(synth.shade(scene, idx, pts, nrm, T), synth.add_depth_noise(depth, rng), K, labels, None,
                           k / cfg.rate_hz))
    return scene, frames, poses


def judge_track(result_json: Path, scene: synth.Scene, frames: list[View], poses: list[np.ndarray], rate_hz: float,
                stamp0_s: float, method: str) -> dict:
    """One track's result against the truth, and the same views reconstructed with true poses.
    Frame k of the stream was stamped stamp0_s + k / rate_hz."""
    from ...reconstruct import reconstruct
    from ...tools.metrics import evaluate

    res = json.loads(result_json.read_text())
    tid = int(res["track_id"])
    regs = res["registration"]
    index = [int(round((r["stamp"] - stamp0_s) * rate_hz)) for r in regs]
    truth_world = scene.meshes[scene.ids.index(tid)]
    T_world_ref = poses[index[0]] if res["frame"] != "world" else np.eye(4)
    trans_mm, rot_deg = [], []
    for r, k in zip(regs[1:], index[1:]):
        if r["T_out_cam"] is None:
            continue
        truth = invert(T_world_ref) @ poses[k]
        T = np.asarray(r["T_out_cam"])
        trans_mm.append(1000 * float(np.linalg.norm(T[:3, 3] - truth[:3, 3])))
        rot_deg.append(rotation_error_deg(T[:3, :3], truth[:3, :3]))
    mesh = trimesh.load(result_json.with_suffix(".ply"), force="mesh")
    got = evaluate(mesh, truth_world.copy().apply_transform(invert(T_world_ref)))
    true_views = [View(frames[k].color, frames[k].depth_m, frames[k].K, frames[k].labels, poses[k], frames[k].stamp_s)
                  for k in index]
    rec = reconstruct(true_views, tid, method)
    with_truth = evaluate(rec.mesh, truth_world)
    sources = [r["pose"] for r in regs]
    return {"track": tid, "views_kept": len(regs), "views_used": res["n_views_used"],
            "posed_by": {s: sources.count(s) for s in sorted(set(sources))},
            "posed_share": float(np.mean([r["T_out_cam"] is not None for r in regs])),
            "pose_err_mm": trans_mm, "pose_err_deg": rot_deg, "seconds": res["seconds"],
            "seconds_by_stage": res.get("seconds_by_stage", {}),
            **{f"{k}": got[k] for k in ("fscore_10mm", "iou", "chamfer_l1_mm")},
            **{f"true_poses_{k}": with_truth[k] for k in ("fscore_10mm", "iou", "chamfer_l1_mm")}}


def run_stream_bench(out: str | Path, cfg: StreamConfig = StreamConfig(), params: dict | None = None,
                     connect_timeout_s: float = 60.0, method: str = "auto", storm: int = 0, judge: bool = True) -> dict:
    """``storm``: malformed frames (fuzz.MALFORMED) published before each valid frame, with its stamp.
    ``judge``: False leaves out the ground truth comparisons (repeated runs count results only)."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray

    from ..conversions import view_to_msgs
    from .fuzz import MALFORMED, _frame
    from .node_bench import ProcessTree, publish_counting
    from .peer import init_rclpy, input_publishers, last_diagnostics, stop_process, wait_until_connected
    from .replay import start_node

    out = Path(out)
    results = out / "results"
    results.mkdir(parents=True, exist_ok=True)
    for f in results.glob("track_*"):
        f.unlink()
    scene, frames, poses = render_stream(cfg)
    rng = np.random.default_rng(cfg.seed)
    topics = {"color_topic": "/sb/color", "depth_topic": "/sb/depth", "camera_info_topic": "/sb/info",
              "labels_topic": "/sb/labels"}
    proc = start_node(out, {**topics, "output_dir": str(results), "method": method, **(params or {}),
                            "use_sim_time": "false"})
    node = None
    diags: list = []
    try:
        tree_sample = ProcessTree(proc.pid).sample
        init_rclpy()
        node = rclpy.create_node("amodalgen3d_stream_bench")
        pubs = input_publishers(node, topics, 30)
        node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        wait_until_connected(node, pubs, connect_timeout_s, proc)
        tree_sample()
        cpu, rss, failures = [], [], [0, 0, 0, 0]

        def sample_every_second() -> None:
            nonlocal next_sample
            if time.monotonic() >= next_sample:
                c_, r_ = tree_sample()
                cpu.append(c_)
                rss.append(r_)
                next_sample += 1.0
        t0 = time.monotonic()
        stamp0 = int(time.time()) * 10**9  # whole seconds: frame k's stamp is stamp0 + k / rate exactly
        next_sample = t0 + 1.0
        for k, v in enumerate(frames):
            while time.monotonic() < t0 + k / cfg.rate_hz:
                rclpy.spin_once(node, timeout_sec=max(0.0, min(0.005, t0 + k / cfg.rate_hz - time.monotonic())))
            stamp = stamp0 + int(round(k * 1e9 / cfg.rate_hz))
            for _ in range(storm):
                publish_counting(pubs, _frame(MALFORMED[int(rng.integers(len(MALFORMED)))], v, stamp, rng), failures)
            publish_counting(pubs, view_to_msgs(v, stamp), failures)
            sample_every_second()
        achieved = len(frames) / (time.monotonic() - t0)

        def settled() -> bool:
            kv = last_diagnostics(diags)
            return kv.get("buffer_tracks") == "0" and kv.get("queue_tracks_expiring") == "0"
        t_stop = time.monotonic()
        while time.monotonic() - t_stop < 180 and not settled():
            rclpy.spin_once(node, timeout_sec=0.1)
            sample_every_second()
        for _ in range(10):
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        stop_process(proc, 15.0)
    kv = last_diagnostics(diags)
    tracks = [judge_track(f, scene, frames, poses, cfg.rate_hz, stamp0 * 1e-9, method)
              for f in sorted(results.glob("track_*.json"))] if judge else []
    errs_mm = [e for t in tracks for e in t["pose_err_mm"]]
    errs_deg = [e for t in tracks for e in t["pose_err_deg"]]
    views = sum(t["views_kept"] for t in tracks)
    report = {"config": asdict(cfg), "params": params or {}, "storm": storm, "rate_hz_achieved": round(achieved, 1),
              "rejected": {k[len("rejected_"):]: int(v) for k, v in kv.items() if k.startswith("rejected_")},
              "publish_failures": failures, "objects_in_scene": len(scene.meshes) - 1,
              "tracks_created": int(kv.get("buffer_tracks_created", 0)),
              "tracks_with_result": len(list(results.glob("track_*.json"))),
              "views_kept": views, "views_posed_share": (sum(t["posed_share"] * t["views_kept"] for t in tracks) / views
                                                         if views else None),
              "posed_by": {s: sum(t["posed_by"].get(s, 0) for t in tracks) for s in
                           sorted({s for t in tracks for s in t["posed_by"]})},
              "pose_err_mm_median": float(np.median(errs_mm)) if errs_mm else None,
              "pose_err_deg_median": float(np.median(errs_deg)) if errs_deg else None,
              "pose_err_mm_p95": float(np.percentile(errs_mm, 95)) if errs_mm else None,
              "fscore_10mm_mean": float(np.mean([t["fscore_10mm"] for t in tracks])) if tracks else None,
              "true_poses_fscore_10mm_mean": float(np.mean([t["true_poses_fscore_10mm"] for t in tracks])) if tracks else None,
              "iou_mean": float(np.mean([t["iou"] for t in tracks])) if tracks else None,
              "true_poses_iou_mean": float(np.mean([t["true_poses_iou"] for t in tracks])) if tracks else None,
              "seconds_per_object_median": float(np.median([t["seconds"] for t in tracks])) if tracks else None,
              "latency_s_median": float(kv["latency_s_median"]) if "latency_s_median" in kv else None,
              "latency_s_p95": float(kv["latency_s_p95"]) if "latency_s_p95" in kv else None,
              "node_cpu_percent_mean": float(np.mean(cpu)) if cpu else None,
              "node_rss_mb_max": float(max(rss)) if rss else None,
              "tracks": tracks, "diagnostics_last": kv}
    (out / "stream_bench.json").write_text(json.dumps(report, indent=1))
    return report


def run_stream_repeats(out: str | Path, cfg: StreamConfig = StreamConfig(), repeats: int = 20, load: int = 1,
                       params: dict | None = None) -> dict:
    """The stream ``repeats`` times (seeds cfg.seed, cfg.seed + 1, ...: other objects, other arcs)
    with ``load`` processes spinning on a core each beside the node and the publisher: does every
    track the node created end with a result, or with a reason it counted
    (tracks_ended_without_result_*)? Unaccounted tracks are the failure this looks for."""
    import subprocess
    import sys
    from dataclasses import replace

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
    runs = []
    try:
        for i in range(repeats):
            rep = run_stream_bench(out / f"run_{i:02d}", replace(cfg, seed=cfg.seed + i), params, judge=False)
            kv = rep["diagnostics_last"]
            counted = {k[len("tracks_ended_without_result_"):]: int(float(v)) for k, v in kv.items()
                       if k.startswith("tracks_ended_without_result_")}
            created, with_result = rep["tracks_created"], rep["tracks_with_result"]
            runs.append({"seed": cfg.seed + i, "tracks_created": created, "tracks_with_result": with_result,
                         "without_result_counted": counted,
                         "unaccounted": created - with_result - sum(counted.values()),
                         "latency_s_p95": rep["latency_s_p95"], "node_rss_mb_max": rep["node_rss_mb_max"]})
            print(json.dumps(runs[-1]), flush=True)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    lat = [r["latency_s_p95"] for r in runs if r["latency_s_p95"] is not None]
    report = {"config": asdict(cfg), "params": params or {}, "repeats": repeats, "load_processes": load,
              "tracks_created": sum(r["tracks_created"] for r in runs),
              "tracks_with_result": sum(r["tracks_with_result"] for r in runs),
              "tracks_without_result_counted": sum(sum(r["without_result_counted"].values()) for r in runs),
              "tracks_unaccounted": sum(r["unaccounted"] for r in runs),
              "latency_s_p95_median": float(np.median(lat)) if lat else None,
              "latency_s_p95_max": float(max(lat)) if lat else None,
              "node_rss_mb_max": max((r["node_rss_mb_max"] or 0.0) for r in runs) if runs else None, "runs": runs}
    (out / "stream_repeats.json").write_text(json.dumps(report, indent=1))
    return report
