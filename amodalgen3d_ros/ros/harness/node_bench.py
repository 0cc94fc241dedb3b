"""The node under load: 640x480 colour + depth + labels at a given rate with several tracked
objects, for a given time. Reports the node process's CPU and memory (RSS), the frame-to-result
latency the node measures (newest view in -> result out), the first-result latency seen from
outside, sync drops and queue sizes from /diagnostics.

    amodalgen3d bench --node [--rate 30] [--seconds 60] [--objects 5]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ...tools import synth
from ...views import View


def render_frames(n_objects: int, n_frames: int = 30, seed: int = 11) -> list[View]:
    """n_frames of a camera arcing 60 degrees around n_objects objects, 640x480."""
    cfg = synth.SynthConfig(width=640, height=480, min_others=n_objects - 1, max_others=n_objects - 1,
                            occluder_in_front_prob=1.0)
    rng = np.random.default_rng(seed)
    az0 = rng.uniform(0, 2 * np.pi)
    scene = synth.make_scene(rng, "train", cfg, [az0] * 4)
    center = np.mean([m.bounds.mean(0) for m in scene.meshes[1:]], axis=0)
    K = synth.intrinsics(cfg)
    r = synth.Renderer(scene.meshes)
    views = []
    for i in range(n_frames):
        a = az0 + np.radians(60) * i / n_frames
        eye = center + 0.7 * np.array([np.cos(a) * 0.8, np.sin(a) * 0.8, 0.6])
        T = synth.look_at(eye, center)
        depth, idx, pts, nrm = r.cast(K, T, cfg.width, cfg.height)
        labels = np.where(idx >= 0, np.asarray(scene.ids)[np.maximum(idx, 0)], 0)
        views.append(View(synth.shade(scene, idx, pts, nrm, T), depth, K, labels.astype(np.int64), None))
    return views


class ProcessTree:
    """CPU % and RSS (MB) of a process and its children (the node and its reconstruction
    process, restarted ones too); CPU % counts from the previous sample."""

    def __init__(self, pid: int):
        import psutil

        self.root = psutil.Process(pid)
        self.known: dict = {}

    def sample(self) -> tuple[float, float]:
        import psutil

        cpu = rss = 0.0
        for p in [self.root] + self.root.children(recursive=True):
            p = self.known.setdefault(p.pid, p)
            try:
                cpu += p.cpu_percent(None)
                rss += p.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                pass
        return cpu, rss


def publish_counting(pubs, msgs, failures: list[int]) -> None:
    """Publish one frame's messages; a publish the middleware refuses is counted per input, not
    fatal. A reliable writer whose reader is slow to acknowledge (the node busy on the same 2 cores)
    can time out in Fast DDS ('cannot publish data'): a 300 s soak at 10 objects once died of it
    34 s in. The load generator sends the next frame, as a camera driver would. (Not tested: that
    refusal could not be brought about on purpose here; a publisher of a shut-down context fails
    otherwise, InvalidHandle, which is a bug of the caller and still raises.)"""
    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

    for i, (p, m) in enumerate(zip(pubs, msgs)):
        try:
            p.publish(m)
        except _rclpy.RCLError:
            failures[i] += 1


def run_node_bench(out: str | Path, rate_hz: float = 30.0, seconds: float = 60.0, n_objects: int = 5,
                   params: dict | None = None, connect_timeout_s: float = 60.0) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray

    from amodalgen3d_ros.msg import ReconstructedObjectArray

    from ..conversions import view_to_msgs
    from .peer import init_rclpy, input_publishers, last_diagnostics, stop_process, wait_until_connected
    from .replay import start_node

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames = render_frames(n_objects)
    topics = {"color_topic": "/nb/color", "depth_topic": "/nb/depth", "camera_info_topic": "/nb/info",
              "labels_topic": "/nb/labels"}
    proc = start_node(out, {**topics, **(params or {}), "use_sim_time": "false"})
    # the node is stopped whatever happens here (a failed start once left one running for an hour)
    node = None
    try:
        tree_sample = ProcessTree(proc.pid).sample
        init_rclpy()
        node = rclpy.create_node("amodalgen3d_node_bench")
        pubs = input_publishers(node, topics, 10)
        diags: list = []
        arrivals: list = []
        t_first_pub = [None]
        node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        node.create_subscription(ReconstructedObjectArray, "/amodalgen3d_node/objects",
                                 lambda m: arrivals.append((time.monotonic(), len(m.objects))), 10)
        wait_until_connected(node, pubs, connect_timeout_s, proc)
        tree_sample()
        cpu, rss = [], []
        publish_failures = [0, 0, 0, 0]  # colour, depth, camera_info, labels
        period = 1.0 / rate_hz
        t0 = time.monotonic()
        k = 0
        next_sample = t0 + 1.0
        while time.monotonic() - t0 < seconds:
            due = t0 + k * period
            while time.monotonic() < due:
                rclpy.spin_once(node, timeout_sec=max(0.0, min(0.005, due - time.monotonic())))
            v = frames[k % len(frames)]
            stamp = int(time.time() * 1e9)
            publish_counting(pubs, view_to_msgs(v, stamp), publish_failures)
            if t_first_pub[0] is None:
                t_first_pub[0] = time.monotonic()
            k += 1
            if time.monotonic() >= next_sample:
                c_, r_ = tree_sample()
                cpu.append(c_)
                rss.append(r_)
                next_sample += 1.0
        achieved = k / (time.monotonic() - t0)
        # input stops: every track expires and gets its final run; then the accounting is complete

        def settled() -> bool:
            kv = last_diagnostics(diags)
            # frames still in flight to a lagging node would make new tracks: input must have stopped too
            idle = all(float(v) == 0.0 for k, v in kv.items() if k.startswith("rate_"))
            return idle and kv.get("buffer_tracks") == "0" and kv.get("queue_tracks_expiring") == "0"
        t_stop = time.monotonic()
        while time.monotonic() - t_stop < 120 and not settled():
            rclpy.spin_once(node, timeout_sec=0.1)
        for _ in range(20):
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
        stop_process(proc, 15.0)
    series = [{x.key: x.value for x in dmsg.status[0].values} for dmsg in diags if dmsg.status]
    last_kv = series[-1] if series else {}

    def peak(key: str, part: slice = slice(None)) -> float | None:
        vals = [float(kv[key]) for kv in series[part] if key in kv]
        return max(vals) if vals else None

    third = max(1, len(series) // 3)
    queues = {k: {"max": peak(k), "max_first_third": peak(k, slice(0, third)), "max_last_third": peak(k, slice(-third, None))}
              for k in ("sync_pending", "queue_tracks_due", "buffer_views", "buffer_distinct_frames")}
    first = arrivals[0][0] - t_first_pub[0] if arrivals and t_first_pub[0] else None
    report = {"rate_hz_target": rate_hz, "rate_hz_achieved": round(achieved, 1), "seconds": seconds,
              "objects": n_objects, "frames_sent": k,
              "publish_failures": dict(zip(("color", "depth", "camera_info", "labels"), publish_failures)),
              # the load is bimodal (idle between reconstructions, 100-150 % in one), so the median
              # flips with the busy share; the mean is the CPU the node really takes
              "node_cpu_percent_mean": float(np.mean(cpu)) if cpu else None,
              "node_cpu_percent_median": float(np.median(cpu)) if cpu else None,
              "node_cpu_percent_p95": float(np.percentile(cpu, 95)) if cpu else None,
              "node_rss_mb_max": float(max(rss)) if rss else None, "node_rss_mb_last": rss[-1] if rss else None,
              "rss_mb_first_third_max": float(max(rss[:max(1, len(rss) // 3)])) if rss else None,
              "rss_mb_last_third_max": float(max(rss[-max(1, len(rss) // 3):])) if rss else None,
              # the node's own figures over all its results: newest view in -> result published
              "latency_s_median": float(last_kv["latency_s_median"]) if "latency_s_median" in last_kv else None,
              "latency_s_p95": float(last_kv["latency_s_p95"]) if "latency_s_p95" in last_kv else None,
              "latency_samples": int(last_kv.get("latency_samples", 0)),
              "first_result_s": first, "results_received": len(arrivals), "queues": queues,
              # every track: a result, or a counted reason it had none
              "tracks": {"created": int(last_kv.get("buffer_tracks_created", 0)),
                         "with_result": int(float(last_kv.get("tracks_with_result", 0))),
                         "without_result_failed": int(float(last_kv.get("tracks_ended_without_result_failed", 0))),
                         "without_result_not_reconstructed":
                             int(float(last_kv.get("tracks_ended_without_result_not_reconstructed", 0))),
                         "dropped_capacity": int(last_kv.get("buffer_tracks_dropped_capacity", 0)),
                         "still_held": int(last_kv.get("buffer_tracks", 0))},
              "diagnostics_last": last_kv}
    (out / "node_bench.json").write_text(json.dumps(report, indent=1))
    return report
