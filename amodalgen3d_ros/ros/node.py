"""amodalgen3d_node: tracked objects' sparse views in, completed closed meshes out (docs/ros.md).

Callbacks only check and synchronize (sync.py); a frame thread converts (conversions.py) and keeps
views per track (tracks.py); a worker thread reconstructs in a child process through the core's
one path (worker.py). What runs when is decided ROS-free (scheduling.py).

    python -m amodalgen3d_ros.ros.node --ros-args --params-file config/amodalgen3d.yaml
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import defaultdict
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from amodalgen3d_ros.msg import ReconstructedObjectArray

from ..camera_tracking import StreamOdometry
from ..reconstruct import save
from ..scheduling import FrameQueue, FrameRateLimiter, ReconstructionSchedule, RejectCounter, sensor_now
from ..tracks import ViewBuffer
from ..views import View, crop_to_target
from ..worker import ReconstructionWorker, WorkerError
from . import conversions as conv
from .params import PARAMS, NodeConfig, ParamError, buffer_config, method_spec, odometry_config, validate
from .sync import LatestBefore, StampSynchronizer
from .tf_poses import TfPoses


class AmodalGen3DNode(LifecycleNode):
    """A managed node: configure validates parameters and loads the model; activate subscribes and
    publishes; deactivate stops input and frees the model; cleanup drops everything else.
    ``autostart`` (default) takes it to active on start, as an ordinary node would be."""

    def __init__(self, **kwargs):
        # set before Node.__init__: a node that fails to construct is still destroyed by rclpy
        self.subs: list = []
        self.workers: list[threading.Thread] = []
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.frame_thread: threading.Thread | None = None
        self.frame_wake = threading.Event()
        self.recon: ReconstructionWorker | None = None
        super().__init__("amodalgen3d_node", **kwargs)
        for p in PARAMS:  # parameters declared in one place (params.py)
            self.declare_parameter(p.name, p.default, conv.parameter_descriptor(p))
        self.declare_parameter("autostart", True, ParameterDescriptor(
            description="configure and activate at start (false: wait for lifecycle transitions)"))

    # ---------------------------------------------------------------------------------------- lifecycle
    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self.cfg: NodeConfig = validate({p.name: self.get_parameter(p.name).value for p in PARAMS})
            self.recon = self._start_reconstruction()
        except ParamError as e:
            self.get_logger().fatal(f"bad parameters: {e}")
            return TransitionCallbackReturn.FAILURE
        except WorkerError as e:  # missing or corrupt weights: one clear line
            self.get_logger().fatal(f"cannot load the method: {e}")
            return TransitionCallbackReturn.FAILURE
        self.buffer = ViewBuffer(buffer_config(self.cfg))
        ocfg = odometry_config(self.cfg)
        self.tf = TfPoses.make(self, self.cfg.world_frame)
        self.odometry = StreamOdometry(ocfg) if ocfg is not None and self.tf is None else None
        self.target_ids = None if self.cfg.track_ids in ([], [0]) else [int(t) for t in self.cfg.track_ids]
        self.has_depth = bool(self.cfg.depth_topic)
        self.input_names = ["color", "camera_info", "labels"] + (["depth"] if self.has_depth else [])
        # images are synchronized; camera_info is looked up per frame (sync.LatestBefore)
        self.synced_names = [n for n in self.input_names if n != "camera_info"]
        self.sync = StampSynchronizer(len(self.synced_names), self.cfg.sync_queue_size,
                                      int(self.cfg.sync_slop_s * 1e9) if self.cfg.sync_mode == "approximate" else 0)
        self.infos = LatestBefore(self.cfg.sync_queue_size)
        self.received: dict[str, int] = defaultdict(int)
        self.camera_size: tuple[int, int] | None = None  # (height, width) of the camera's images
        self.rejects = RejectCounter()
        self.stats: dict[str, float] = defaultdict(float)
        self.schedule = ReconstructionSchedule(self.cfg.min_reconstruct_interval_s, self.cfg.max_tracks, self.stats)
        self.rate_limit = FrameRateLimiter(self.cfg.max_frame_rate_hz)
        self.rate_count: dict[str, int] = defaultdict(int)
        self.frames = FrameQueue(self.cfg.input_depth)  # matched, waiting for the frame thread
        self.results: dict[int, object] = {}  # track id -> ReconstructedObject
        self._last_frame_stamp_s: float | None = None  # the newest frame taken
        self._last_input_clock_s = 0.0  # node clock at the last input message
        qos_out = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_objects = self.create_lifecycle_publisher(ReconstructedObjectArray, "~/objects", qos_out)
        self.pub_markers = self.create_lifecycle_publisher(MarkerArray, "~/markers", qos_out)
        self.pub_points = self.create_lifecycle_publisher(PointCloud2, "~/points", qos_out)
        self.pub_diag = self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics", 10)
        self.srv = self.create_service(Trigger, "~/reconstruct", self._on_trigger)
        # diagnostics on the steady clock: with use_sim_time they must flow before /clock does
        # (a replay waits for them to see the node's inputs connected before it starts the clock)
        self.timers_ = [self.create_timer(self.cfg.diagnostics_period_s, self._diagnostics,
                                          clock=rclpy.clock.Clock(clock_type=rclpy.clock.ClockType.STEADY_TIME)),
                        self.create_timer(0.25, self._expire)]
        self.get_logger().info(f"configured: method {self.recon.method_name}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        if self.recon is None:  # deactivated before: load again
            try:
                self.recon = self._start_reconstruction()
            except WorkerError as e:
                self.get_logger().error(f"cannot load the method: {e}")
                return TransitionCallbackReturn.FAILURE
        reliability = (ReliabilityPolicy.RELIABLE if self.cfg.input_reliability == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        qos_in = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.cfg.input_depth, reliability=reliability)
        # camera_info is tiny and comes in bursts after DDS resent one (seen: 20-39 of 154
        # overwritten at depth 10 while no image was lost): as deep as the sync queue
        qos_info = QoSProfile(history=HistoryPolicy.KEEP_LAST, reliability=reliability,
                              depth=max(self.cfg.input_depth, self.cfg.sync_queue_size))
        topics = {"color": (Image, self.cfg.color_topic, qos_in),
                  "camera_info": (CameraInfo, self.cfg.camera_info_topic, qos_info),
                  "labels": (Image, self.cfg.labels_topic, qos_in), "depth": (Image, self.cfg.depth_topic, qos_in)}
        self.subs = [self.create_subscription(topics[n][0], topics[n][1], self._input_cb(n), topics[n][2])
                     for n in self.input_names]
        self.stop.clear()
        self.publish_lock = threading.Lock()  # results and their publication: several worker threads
        # a worker thread per reconstruction run at once in the reconstruction process, and one for frames
        self.workers = [threading.Thread(target=self._work, name=f"amodalgen3d_worker_{i}", daemon=True)
                        for i in range(self.cfg.concurrent_reconstructions)]
        self.frame_thread = threading.Thread(target=self._take_frames, name="amodalgen3d_frames", daemon=True)
        for t in [*self.workers, self.frame_thread]:
            t.start()
        self.get_logger().info(
            f"active: method {self.recon.method_name}, inputs {', '.join(topics[n][1] for n in self.input_names)}, "
            f"sync {self.cfg.sync_mode}, poses from "
            f"{'TF, world frame ' + self.cfg.world_frame if self.tf else 'the stream' if self.odometry else 'the views'}")
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        for sub in self.subs:
            self.destroy_subscription(sub)
        self.subs = []
        self._stop_worker()  # frees the model; activate loads it again
        self.get_logger().info("inactive: inputs closed, model freed")
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        for t in self.timers_:
            self.destroy_timer(t)
        self.destroy_service(self.srv)
        for p in (self.pub_objects, self.pub_markers, self.pub_points, self.pub_diag):
            self.destroy_lifecycle_publisher(p)
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._stop_worker()
        return TransitionCallbackReturn.SUCCESS

    def _stop_worker(self) -> None:
        """Stop the node's threads and the reconstruction process (frees the model)."""
        for event in (self.stop, self.wake, self.frame_wake):
            event.set()
        for t in [*self.workers, self.frame_thread]:
            if t is not None:
                t.join(timeout=5.0)
        self.workers, self.frame_thread = [], None
        if getattr(self, "recon", None) is not None:
            self.recon.close()
            self.recon = None

    # ---------------------------------------------------------------------------------------- set-up
    def _start_reconstruction(self) -> ReconstructionWorker:
        """The reconstruction process with the method loaded (learned methods read their weights
        there, once); a missing or corrupt file raises WorkerError with one clear line."""
        w = ReconstructionWorker(method_spec(self.cfg))
        self.get_logger().info(f"{w.method_name}: loaded in process {w.pid}"
                               + (f", backend {w.backend_name}" if w.backend_name else ""))
        return w

    # ---------------------------------------------------------------------------------------- inputs
    def _input_cb(self, name: str):
        index = self.synced_names.index(name) if name != "camera_info" else -1

        def cb(msg):
            # synchronize only (the frame thread converts): a callback that converted made the
            # executor fall behind, and DDS's KEEP_LAST reader queues overwrote single messages
            self.rate_count[name] += 1
            self.received[name] += 1
            self._last_input_clock_s = self.get_clock().now().nanoseconds * 1e-9
            try:  # a malformed message must never take a valid one's place in the synchronizer
                size = conv.precheck(name, msg, self.camera_size)
            except conv.ConversionError as e:
                self._reject(e.cause, f"{name}: {e}")
                return
            if index < 0:
                self.infos.add(conv.stamp_to_ns(msg.header.stamp), msg)
                self.camera_size = size or self.camera_size
                return
            # one executor thread: sync.add needs no lock of ours; the queue is shared with _take_frames
            matched = self.sync.add(index, conv.stamp_to_ns(msg.header.stamp), msg)
            if not matched:
                return
            self.frames.push([(stamp_ns, dict(zip(self.synced_names, items))) for stamp_ns, items in matched])
            self.frame_wake.set()
        return cb

    def _take_frames(self) -> None:
        """Matched frames, in order: rate limit, convert, hand to the view buffer."""
        while not self.stop.is_set():
            self.frame_wake.wait(0.2)
            self.frame_wake.clear()
            while not self.stop.is_set() and (item := self.frames.pop()) is not None:
                stamp_ns, m = item
                if self.rate_limit.limited(stamp_ns):
                    self.stats["frames_skipped_rate"] += 1
                    continue
                m["camera_info"] = self.infos.get(stamp_ns)  # now, not at matching: it may come late
                if m["camera_info"] is None:
                    if self.frames.hold(item, time.monotonic()):  # none yet at all: wait a while
                        break
                    self.stats["frames_without_camera_info"] += 1
                    continue
                try:
                    self._on_frame(m)
                except Exception:  # a frame the conversions did not foresee: counted, never fatal
                    self._reject("unexpected", traceback.format_exc().splitlines()[-1])

    def _reject(self, cause: str, detail: str = "") -> None:
        if self.rejects.count(cause, time.monotonic()):
            self.get_logger().warning(f"input rejected ({cause}, {self.rejects.counts[cause]} so far) {detail}".strip())

    def _on_frame(self, m: dict) -> None:
        """One matched frame: convert, hand to the view buffer, wake the worker."""
        try:
            color = conv.color_from_msg(m["color"])
            labels = conv.labels_from_msg(m["labels"])
            K = conv.intrinsics_from_msg(m["camera_info"])
            depth = conv.depth_from_msg(m["depth"]) if self.has_depth else None
            if labels.shape != color.shape[:2] or (depth is not None and depth.shape != labels.shape):
                raise conv.ConversionError("size_mismatch", "colour, depth and labels differ in size")
        except conv.ConversionError as e:
            self._reject(e.cause, str(e))
            return
        hdr = m["color"].header
        T, why = self.tf.lookup(hdr.frame_id, hdr.stamp) if self.tf is not None else (None, "")
        if self.tf is not None and T is None:
            return self._reject("tf_unavailable", why)
        view = View(color, depth, K, labels, T, hdr.stamp.sec + hdr.stamp.nanosec * 1e-9, frame_id=hdr.frame_id, pose_source="tf")
        if self.odometry is not None:  # the camera tracked along the stream, before views are chosen
            r = self.odometry.pose_view(view)
            if r.status.startswith("lost"):
                self.get_logger().info(f"camera tracking {r.status}: segment {r.segment} starts", throttle_duration_sec=2.0)
            for tid in r.moved_ids:  # moved relative to the scene: its old views disagree with the new ones
                self.buffer.restart(tid)
        now = time.monotonic()
        # only a usable frame (some labelled pixel with depth) takes the rate limiter's slot
        if ((labels > 0) & (depth > 0)).any() if depth is not None else (labels > 0).any():
            self.rate_limit.take(conv.stamp_to_ns(hdr.stamp))
        self._last_frame_stamp_s, self.camera_size = view.stamp_s, self.camera_size or labels.shape  # (till a camera_info)
        changed = self.buffer.add_frame(view, now, self.target_ids)
        self.schedule.views_arrived(changed, now)
        if changed:
            self.wake.set()

    def _on_trigger(self, request, response):
        self.schedule.force(list(self.buffer.tracks))
        self.wake.set()
        response.success, response.message = True, f"queued {len(self.buffer.tracks)} tracks"
        return response

    def _expire(self) -> None:
        """Tracks unseen for track_timeout_s of sensor time (scheduling.sensor_now) get their final run."""
        if self._last_frame_stamp_s is None:
            return
        idle = self.get_clock().now().nanoseconds * 1e-9 - self._last_input_clock_s
        now_sensor = sensor_now(self._last_frame_stamp_s, idle, self.cfg.track_timeout_s)
        dropped = self.buffer.take_dropped()  # (capacity) forgotten without a final run: withdrawn
        gone = self.schedule.expired(self.buffer.expire(now_sensor), dropped=dropped)
        for t in gone:
            self.get_logger().info(f"track {t.track_id} expired: unseen since {t.last_seen_s:.3f} s, now {now_sensor:.3f} s "
                                   f"(sensor time{', input idle' if idle >= self.cfg.track_timeout_s else ''})")
        if gone:
            self.wake.set()

    # ---------------------------------------------------------------------------------------- worker
    def _work(self) -> None:
        while not self.stop.is_set():
            self.wake.wait(0.2)
            self.wake.clear()
            try:
                ended = []
                while (t := self.schedule.next_expired()) is not None:  # once more, then forget it
                    try:
                        if t.version != t.reconstructed_version and t.views:
                            self._run(t.track_id, [k.view for k in t.views], t.version, final=True)
                    finally:
                        if why := self.schedule.final_run_done(t.track_id):  # none: said, with why
                            self.get_logger().warning(f"track {t.track_id} ended without a result: {why}")
                    ended.append(t.track_id)
                self._forget(ended)  # one withdrawal for the lot, not one per track
                # one at a time per worker thread, then look again: a new track need not wait for a whole round
                if (tid := self.schedule.take(self.buffer, time.monotonic())) is not None:
                    try:
                        if (snap := self.buffer.snapshot(tid)) is not None:
                            self._run(tid, *snap)
                    finally:
                        self.schedule.run_ended(tid)
                        self.wake.set()
            except Exception:  # the worker never dies
                if not self.context.ok():  # shutting down: the result cannot be published, nothing is wrong
                    return
                self.get_logger().error("worker: " + traceback.format_exc().splitlines()[-1], throttle_duration_sec=5.0)

    def _run(self, tid: int, views: list[View], version: int, final: bool = False) -> None:
        t0 = time.monotonic()
        t_in = self.schedule.run_started(tid, t0)  # when the newest view of this snapshot arrived
        track = self.buffer.tracks.get(tid)
        try:  # in the reconstruction process: past reconstruct_timeout_s it is killed (and started again)
            rec = self.recon.reconstruct(crop_to_target(views, tid), tid, self.cfg.reconstruct_timeout_s)
        except Exception as e:
            kind = {TimeoutError: "reconstructions_timed_out", WorkerError: "reconstruction_process_crashes"}
            self.stats[kind.get(type(e), "reconstructions_failed")] += 1
            self.schedule.run_failed(tid, f"{e.__class__.__name__}: {e}")
            self.get_logger().warning(f"track {tid}: reconstruction failed: {e}", throttle_duration_sec=5.0)
            return
        finally:  # tried: due again only when its views change
            if track is not None:
                track.reconstructed_version = version
        self.schedule.run_succeeded(tid)
        obj = conv.reconstructed_object(rec, conv.result_header(rec.frame, views, self.cfg.world_frame))
        with self.publish_lock:
            self.results[tid] = obj
            self._publish(changed=[tid])
        self.stats.update(last_inference_s=rec.seconds, **{f"last_{k}_s": s for k, s in rec.stage_seconds.items()})
        if not final:
            self.schedule.latency(t_in, t0, time.monotonic())
        if self.cfg.output_dir:
            try:
                save(rec, Path(self.cfg.output_dir) / f"track_{tid}.ply")
            except OSError as e:
                self.stats["save_failures"] += 1
                self.get_logger().warning(f"cannot save results to {self.cfg.output_dir}: {e}", throttle_duration_sec=30.0)

    def _forget(self, tids: list[int]) -> None:
        """Withdraw ended tracks' results: DELETE markers, then the arrays without them."""
        with self.publish_lock:
            gone = [(tid, obj) for tid in tids if (obj := self.results.pop(tid, None)) is not None]
            if gone:
                ma = MarkerArray()
                ma.markers = [conv.delete_marker(obj.header, tid) for tid, obj in gone]
                self.pub_markers.publish(ma)
                self._publish(changed=[])

    def _publish(self, changed: list[int]) -> None:
        arr = ReconstructedObjectArray()
        objs = list(self.results.values())
        arr.header = objs[-1].header if objs else Header()
        arr.objects = objs
        self.pub_objects.publish(arr)
        self.stats["objects_published"] += 1  # replay waits until it has received as many
        if changed and self.pub_markers.get_subscription_count():  # RViz only: none built for nobody
            ma = MarkerArray()
            ma.markers = [conv.marker(self.results[t]) for t in changed if t in self.results]
            self.pub_markers.publish(ma)
        if objs:
            self.pub_points.publish(conv.merged_cloud(arr.header, objs))

    # ---------------------------------------------------------------------------------------- diagnostics
    def _diagnostics(self) -> None:
        period = self.cfg.diagnostics_period_s
        kv: dict = {f"rate_{k}_hz": f"{v / period:.1f}" for k, v in self.rate_count.items()}
        self.rate_count.clear()
        kv.update(self.sync.diagnostics())
        # reader-side matching: peers wait for inputs_connected before they publish (a writer that
        # sees the subscription may still be unknown to the reader, which drops its data)
        kv.update({"frames_pending": len(self.frames), "inputs": len(self.input_names), "results": len(self.results),
                   "inputs_connected": sum(s.get_publisher_count() > 0 for s in self.subs)})
        kv.update(self.schedule.diagnostics(self.buffer))
        kv.update({f"received_{n}": self.received[n] for n in self.input_names})
        kv.update({"camera_info_exact": self.infos.exact, "camera_info_not_exact": self.infos.not_exact,
                   **{f"rejected_{k}": v for k, v in self.rejects.counts.items()}})
        kv.update({"frames_dropped_backlog": self.frames.dropped} if self.frames.dropped else {})
        kv.update({f"buffer_{k}": v for k, v in self.buffer.stats().items()})
        kv.update({f"odometry_{k}": v for k, v in self.odometry.counts.items()} if self.odometry else {})
        kv.update({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in self.stats.items()})
        st = DiagnosticStatus(name="amodalgen3d_node: pipeline", hardware_id="amodalgen3d")
        st.level = DiagnosticStatus.WARN if self.schedule.failed or sum(self.rejects.counts.values()) else DiagnosticStatus.OK
        st.message = f"{len(self.buffer.tracks)} tracks, {len(self.results)} results"
        st.values = [KeyValue(key=k, value=str(v)) for k, v in kv.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [st]
        self.pub_diag.publish(msg)

    def destroy_node(self):
        self._stop_worker()
        return super().destroy_node()


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args if args is not None else sys.argv)
    try:
        node = AmodalGen3DNode()
    except Exception as e:  # a parameter override out of range or of the wrong type: one line
        rclpy.logging.get_logger("amodalgen3d_node").fatal(f"bad parameters: {e}")
        rclpy.try_shutdown()
        return 2
    if node.get_parameter("autostart").value:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            node.destroy_node()
            rclpy.try_shutdown()
            return 2
        node.trigger_activate()
    # one thread loses nothing: the callbacks only synchronize and hand over (frames,
    # reconstruction and publishing run in the node's own threads); a multi-threaded executor lost
    # messages at 30 Hz (docs/ros.md)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
