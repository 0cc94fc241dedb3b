"""When the node takes a frame and which track it reconstructs next: the ROS-free half of the node.

The node (ros/node.py) only translates messages and calls these; everything here runs on plain
numbers, so it is tested without ROS. Times are the node's monotonic clock (``*_wall``) or
sensor time (stamps, ``*_s`` / ``*_ns``), as named.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque

import numpy as np

from .tracks import Track, ViewBuffer


class FrameQueue:
    """Matched input sets waiting for conversion, oldest first. The input callbacks only
    synchronize, so DDS's reader queues are emptied at the input rate; a backlog beyond max_len is
    dropped here, whole frames, counted (a single lost message would leave its partners unmatched)."""

    def __init__(self, max_len: int):
        self.max_len = max_len
        self.dropped = 0
        self._items: deque[tuple[int, dict]] = deque()  # (stamp ns, inputs by name)
        self._lock = threading.Lock()

    def push(self, items: list[tuple[int, dict]]) -> None:
        with self._lock:
            self._items.extend(items)
            while len(self._items) > self.max_len:
                self._items.popleft()
                self.dropped += 1

    def pop(self) -> tuple[int, dict] | None:
        with self._lock:
            return self._items.popleft() if self._items else None

    def hold(self, item: tuple[int, dict], now_wall: float, wait_s: float = 2.0) -> bool:
        """Put a frame that cannot be taken yet (no camera_info received at all: DDS may resend it
        seconds late) back at the front, for at most wait_s since it was first held; False when it
        has waited that long (the caller drops it, counted)."""
        since = item[1].setdefault("held_since_wall", now_wall)
        if now_wall - since >= wait_s:
            return False
        with self._lock:
            self._items.appendleft(item)
        return True

    def __len__(self) -> int:
        return len(self._items)


class FrameRateLimiter:
    """At most max_hz frames per second of sensor time; a stamp that goes back (a looping bag)
    starts over. Only a usable frame takes the slot (take): bad or empty frames take none."""

    def __init__(self, max_hz: float):
        self.max_hz = max_hz
        self.last_taken_ns: int | None = None

    def limited(self, stamp_ns: int) -> bool:
        last = self.last_taken_ns
        return self.max_hz > 0 and last is not None and 0 <= stamp_ns - last < 1e9 / self.max_hz

    def take(self, stamp_ns: int) -> None:
        self.last_taken_ns = stamp_ns


class RejectCounter:
    """Rejected inputs counted by cause; a cause is to be logged at most once per period (a
    per-call-site throttle would let one cause hide the others)."""

    def __init__(self, log_period_s: float = 5.0):
        self.counts: dict[str, int] = defaultdict(int)
        self.log_period_s = log_period_s
        self._logged: dict[str, float] = {}
        self._lock = threading.Lock()  # the input callbacks and the frame thread both reject

    def count(self, cause: str, now_wall: float) -> bool:
        """Count one; True when this one should be logged."""
        with self._lock:
            self.counts[cause] += 1
            if now_wall - self._logged.get(cause, -1e9) >= self.log_period_s:
                self._logged[cause] = now_wall
                return True
            return False


def sensor_now(newest_stamp_s: float, input_idle_s: float, track_timeout_s: float) -> float:
    """Sensor time now: while input flows, the newest frame's stamp, so expiry follows the frames
    alone (a replay expires the same tracks however fast the node keeps up); once no input came
    for track_timeout_s (the camera stopped, the bag ended), that stamp plus the idle time, so the
    last tracks expire too."""
    return newest_stamp_s + (input_idle_s if input_idle_s >= track_timeout_s else 0.0)


class ReconstructionSchedule:
    """Which track to reconstruct next, the expired tracks' final runs, and what became of every
    track (a result, or a counted reason why none). Counters go to ``stats`` under the names the
    node's diagnostics publish.

    Thread use: the node's frame thread calls views_arrived and force; its timer calls expired;
    its worker threads everything else (several reconstructions run at once: take hands each
    track to one of them, and the counters are locked). The rest is a single dict/set operation.
    """

    def __init__(self, min_interval_s: float, max_pending_final: int, stats: dict[str, float] | None = None):
        self.min_interval_s = min_interval_s
        self.max_pending_final = max_pending_final
        self.stats: dict[str, float] = stats if stats is not None else defaultdict(float)
        self.forced: set[int] = set()  # tracks ~/reconstruct asked for
        self.last_run_wall: dict[int, float] = {}
        self.newest_view_wall: dict[int, float] = {}  # when each track's newest kept view arrived
        self.with_result: set[int] = set()  # live tracks that have published a result
        self.failed: dict[int, str] = {}  # track -> why its last run failed
        self.latencies: deque[float] = deque(maxlen=2000)  # newest view in -> its result out, s
        self.running: set[int] = set()  # tracks being reconstructed now
        self._expired: list[Track] = []
        self._why_none: dict[int, str] = {}  # ended tracks that got no final run, and why
        self._lock = threading.Lock()
        self.expiring = 0  # expired tracks whose final run is not done yet (a replay waits for 0)

    # ------------------------------------------------------------------ live tracks
    def views_arrived(self, track_ids: list[int], now_wall: float) -> None:
        for tid in track_ids:
            self.newest_view_wall[tid] = now_wall

    def force(self, track_ids) -> None:
        self.forced.update(track_ids)

    def due(self, buffer: ViewBuffer, now_wall: float) -> list[int]:
        """Tracks to reconstruct, most urgent first: tracks without any result yet (a new object
        matters most), then the longest-waiting change; a forced track is due at once."""
        out = []
        for t in list(buffer.tracks.values()):
            forced = t.track_id in self.forced
            if t.version == t.reconstructed_version and not forced:
                continue
            if not forced and now_wall - self.last_run_wall.get(t.track_id, -1e9) < self.min_interval_s:
                continue
            out.append(t.track_id)
        return sorted(out, key=lambda tid: (tid in self.with_result, self.newest_view_wall.get(tid, 0.0)))

    def take(self, buffer: ViewBuffer, now_wall: float) -> int | None:
        """The most urgent due track that no other worker thread is reconstructing, now marked as
        running (until run_ended); None when there is none."""
        with self._lock:
            tid = next((t for t in self.due(buffer, now_wall) if t not in self.running), None)
            if tid is not None:
                self.running.add(tid)
            return tid

    def run_ended(self, tid: int) -> None:
        with self._lock:
            self.running.discard(tid)

    @staticmethod
    def changed(buffer: ViewBuffer) -> list[int]:
        """Tracks whose kept views changed since their last run, whether due yet or not."""
        return [t.track_id for t in list(buffer.tracks.values()) if t.version != t.reconstructed_version]

    # ------------------------------------------------------------------ runs
    def run_started(self, tid: int, now_wall: float) -> float:
        """Mark a run of tid; returns when its newest view arrived (the latency's start)."""
        self.forced.discard(tid)
        self.last_run_wall[tid] = now_wall
        return self.newest_view_wall.get(tid, now_wall)

    def run_failed(self, tid: int, reason: str) -> None:
        with self._lock:
            self.failed[tid] = reason
            self.stats["reconstructions_failed"] += 1

    def run_succeeded(self, tid: int) -> None:
        with self._lock:
            self.failed.pop(tid, None)
            self.stats["reconstructions"] += 1
            if tid not in self.with_result:
                self.with_result.add(tid)
                self.stats["tracks_with_result"] += 1

    def latency(self, newest_view_wall: float, started_wall: float, done_wall: float) -> None:
        """A live run's latency: waiting for the worker, then the run (a final run waits for the
        track to expire by design and is not a frame's latency)."""
        with self._lock:
            self.stats["last_wait_s"], self.stats["last_run_s"] = started_wall - newest_view_wall, done_wall - started_wall
            self.stats["last_latency_s"] = done_wall - newest_view_wall
            self.latencies.append(done_wall - newest_view_wall)

    def diagnostics(self, buffer: ViewBuffer) -> dict[str, str | int]:
        """Queue lengths, failed tracks and the latency's median and p95, as the node publishes them."""
        out: dict[str, str | int] = {"queue_tracks_due": len(self.changed(buffer)), "queue_tracks_expiring": self.expiring,
                                     "failed_tracks": len(self.failed)}
        if self.latencies:
            lat = np.array(self.latencies)
            out.update({"latency_s_median": f"{np.median(lat):.3f}", "latency_s_p95": f"{np.percentile(lat, 95):.3f}",
                        "latency_samples": len(lat)})
        return out

    # ------------------------------------------------------------------ ended tracks
    def expired(self, tracks: list[Track], dropped: list[Track] | None = None) -> list[Track]:
        """Tracks the buffer expired get one final run (if their views changed since the last)
        before they are forgotten; tracks it dropped for capacity get none. Bounded: under a storm
        of short-lived tracks the final runs could pile up without end (and hold their frames);
        beyond max_pending_final, the oldest end without one. Returns all of them, dropped first."""
        for t in dropped or []:
            t.reconstructed_version = t.version
            t.views = []
            self._why_none[t.track_id] = "dropped for capacity (more than max_tracks tracks at once)"
        tracks = (dropped or []) + tracks
        if not tracks:
            return tracks
        with self._lock:
            self._expired.extend(tracks)
            self.expiring += len(tracks)
            for t in self._expired[:-self.max_pending_final]:
                if t.views:
                    t.views = []
                    self.stats["final_runs_skipped_backlog"] += 1
                    self._why_none[t.track_id] = "its final run was skipped (more than max_tracks ended tracks waiting)"
        return tracks

    def next_expired(self) -> Track | None:
        """The oldest ended track waiting for its final run whose live run (if any) is over,
        marked as running (until run_ended)."""
        with self._lock:
            i = next((i for i, t in enumerate(self._expired) if t.track_id not in self.running), None)
            if i is None:
                return None
            self.running.add(self._expired[i].track_id)
            return self._expired.pop(i)

    def final_run_done(self, tid: int) -> str | None:
        """An expired track's final run is over (or was not needed): account for it and forget it.
        Returns why it ended without any result (counted by kind), or None when it had one."""
        with self._lock:
            self.expiring -= 1
            self.running.discard(tid)
            why = self._why_none.pop(tid, None)
        self.forced.discard(tid)
        self.newest_view_wall.pop(tid, None)  # per-track state goes with the track: ids churn without end
        self.last_run_wall.pop(tid, None)
        failed = self.failed.pop(tid, None)
        if tid in self.with_result:
            self.with_result.discard(tid)
            return None
        self.stats["tracks_ended_without_result_" + ("failed" if failed else "not_reconstructed")] += 1
        if failed:
            return f"its reconstruction failed ({failed})"
        return why or "no reconstruction ran (no view of it was kept: too few visible pixels with depth)"
