"""Per-track sparse view buffers: which few views of each tracked object are worth keeping.

ROS-free. A frame (one View with every instance's labels) is shared by all tracks it shows; each
track keeps at most ``max_views`` of them, chosen for what they add: a new viewpoint and more
visible area, not simply the latest frames.

Memory bound: at most max_tracks * max_views frames are referenced, each about
H*W*(3 + 4 + 4) bytes (colour, float32 depth, int32 labels): 3.4 MB at 640x480, so
10 tracks x 6 views stay under 204 MB (frames shared between tracks count once).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from .views import View


@dataclass(frozen=True)
class BufferConfig:
    max_views: int = 6  # views kept per track
    max_tracks: int = 10  # tracks kept at once; the least recently seen is dropped first
    min_visible_px: int = 200  # views where the target is barely visible are dropped
    min_novelty: float = 0.15  # a view must differ this much from every kept one to be added
    track_timeout_s: float = 5.0  # tracks unseen this long (sensor time) are expired


@dataclass
class KeptView:
    view: View
    visible_px: int
    mask_box: tuple[int, int, int, int]  # y0, y1, x0, x1 of the target in the image
    direction: np.ndarray | None  # unit viewing direction to the target in the world, if posed


@dataclass
class Track:
    track_id: int
    views: list[KeptView] = field(default_factory=list)
    last_seen_s: float = 0.0
    version: int = 0  # increases when the kept view set changes
    reconstructed_version: int = -1
    last_change_wall_s: float = 0.0


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def _box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    y0, y1 = max(a[0], b[0]), min(a[1], b[1])
    x0, x1 = max(a[2], b[2]), min(a[3], b[3])
    inter = max(0, y1 - y0) * max(0, x1 - x0)
    area = (a[1] - a[0]) * (a[3] - a[2]) + (b[1] - b[0]) * (b[3] - b[2]) - inter
    return inter / area if area else 0.0


def novelty(candidate: KeptView, kept: list[KeptView]) -> float:
    """0 (the same as a kept view) .. 1 (entirely new).

    Posed in the same frame: the angle between viewing directions, 1 at 30 degrees or more. Else
    (unposed, or tracked in another segment of the stream): how much the target's image box moved
    or changed size (a moving camera changes both).
    """
    if not kept:
        return 1.0
    scores = []
    for k in kept:
        if candidate.direction is not None and k.direction is not None and candidate.view.pose_frame == k.view.pose_frame:
            ang = np.degrees(np.arccos(np.clip(candidate.direction @ k.direction, -1, 1)))
            scores.append(min(1.0, ang / 30.0))
        else:
            area = np.log(max(candidate.visible_px, 1) / max(k.visible_px, 1))
            scores.append(min(1.0, (1 - _box_iou(candidate.mask_box, k.mask_box)) + 0.5 * abs(area)))
    return float(min(scores))


class ViewBuffer:
    """Thread-safe: the ROS callback adds frames, the worker takes snapshots."""

    def __init__(self, cfg: BufferConfig = BufferConfig()):
        self.cfg = cfg
        self.tracks: dict[int, Track] = {}
        self.lock = threading.Lock()
        self.counters = {"frames": 0, "views_added": 0, "views_replaced": 0, "views_redundant": 0,
                         "views_barely_visible": 0, "tracks_created": 0, "tracks_dropped_capacity": 0, "tracks_expired": 0,
                         "tracks_restarted_moved": 0}
        self.dropped: list[Track] = []  # dropped for capacity, not yet taken by the owner (take_dropped)

    def add_frame(self, view: View, now_wall_s: float, target_ids: list[int] | None = None) -> list[int]:
        """Offer one frame to every track it shows. Returns the tracks whose view set changed.

        With depth, only target pixels with a valid depth count as visible: a view whose depth
        is all holes on the target adds nothing and must not take the place of one that would."""
        self.counters["frames"] += 1
        ids, counts = np.unique(view.labels, return_counts=True)
        if view.depth_m is not None:
            vid, vcount = np.unique(view.labels[view.depth_m > 0], return_counts=True)
            valid = dict(zip(vid.tolist(), vcount.tolist()))
            counts = np.array([valid.get(i, 0) for i in ids.tolist()])
        changed = []
        with self.lock:
            for tid, n in zip(ids.tolist(), counts.tolist()):
                if tid == 0 or (target_ids is not None and tid not in target_ids):
                    continue
                track = self.tracks.get(tid)
                if track is None:
                    if n < self.cfg.min_visible_px:
                        self.counters["views_barely_visible"] += 1
                        continue
                    self._make_room()
                    track = self.tracks[tid] = Track(tid)
                    self.counters["tracks_created"] += 1
                track.last_seen_s = view.stamp_s
                if n < self.cfg.min_visible_px:
                    self.counters["views_barely_visible"] += 1
                    continue
                if self._offer(track, view, tid, n):
                    track.version += 1
                    track.last_change_wall_s = now_wall_s
                    changed.append(tid)
        return changed

    def _make_room(self) -> None:
        while len(self.tracks) >= self.cfg.max_tracks:
            oldest = min(self.tracks.values(), key=lambda t: t.last_seen_s)
            del self.tracks[oldest.track_id]
            self.dropped.append(oldest)
            del self.dropped[:-self.cfg.max_tracks]  # bounded even if nobody takes them
            self.counters["tracks_dropped_capacity"] += 1

    def _offer(self, track: Track, view: View, tid: int, n: int) -> bool:
        mask = view.labels == tid
        direction = None
        if view.T_world_cam is not None and view.depth_m is not None:
            d = view.depth_m[mask]
            z = float(np.median(d[d > 0])) if (d > 0).any() else 0.0
            if z > 0:
                ys, xs = np.nonzero(mask)
                ray = np.array([(xs.mean() - view.K[0, 2]) / view.K[0, 0], (ys.mean() - view.K[1, 2]) / view.K[1, 1], 1.0])
                direction = view.T_world_cam[:3, :3] @ (ray / np.linalg.norm(ray))
        cand = KeptView(view, n, _box(mask), direction)
        nov = novelty(cand, track.views)
        if len(track.views) < self.cfg.max_views:
            if nov < self.cfg.min_novelty:
                self.counters["views_redundant"] += 1
                return False
            track.views.append(cand)
            self.counters["views_added"] += 1
            return True
        # full: replace the least useful kept view (never the reference, index 0) if the candidate is better
        def utility(k: KeptView, others: list[KeptView]) -> float:
            return np.sqrt(k.visible_px) * (0.5 + novelty(k, others))

        kept_util = [utility(k, [o for o in track.views if o is not k]) for k in track.views]
        worst = 1 + int(np.argmin(kept_util[1:]))
        others = [o for i, o in enumerate(track.views) if i != worst]
        if nov >= self.cfg.min_novelty and utility(cand, others) > kept_util[worst]:
            track.views[worst] = cand
            self.counters["views_replaced"] += 1
            return True
        self.counters["views_redundant"] += 1
        return False

    def restart(self, track_id: int) -> None:
        """The target moved relative to the scene (camera_tracking): its kept views no longer agree
        with each other, so it starts a fresh view set from the next frame offered."""
        with self.lock:
            t = self.tracks.get(track_id)
            if t is not None and t.views:
                t.views = []
                t.version += 1
                self.counters["tracks_restarted_moved"] += 1

    def expire(self, now_sensor_s: float) -> list[Track]:
        """Remove and return tracks unseen for track_timeout_s; a stamp jumping back (a looping bag)
        re-times every track instead of expiring them all."""
        with self.lock:
            out = []
            for t in list(self.tracks.values()):
                if now_sensor_s < t.last_seen_s - 1.0:
                    t.last_seen_s = now_sensor_s
                elif now_sensor_s - t.last_seen_s > self.cfg.track_timeout_s:
                    out.append(self.tracks.pop(t.track_id))
                    self.counters["tracks_expired"] += 1
            return out

    def take_dropped(self) -> list[Track]:
        """Tracks dropped for capacity since the last call (their results must be withdrawn)."""
        with self.lock:
            out, self.dropped = self.dropped, []
            return out

    def snapshot(self, track_id: int) -> tuple[list[View], int] | None:
        """The track's views (reference first) and the version they belong to."""
        with self.lock:
            t = self.tracks.get(track_id)
            if t is None or not t.views:
                return None
            return [k.view for k in t.views], t.version

    def stats(self) -> dict:
        with self.lock:
            frames = {id(k.view) for t in self.tracks.values() for k in t.views}
            return {"tracks": len(self.tracks), "views": sum(len(t.views) for t in self.tracks.values()),
                    "distinct_frames": len(frames), **self.counters}
