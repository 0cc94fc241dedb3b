"""Camera tracking along an RGB-D stream: each frame's pose by Open3D's RGB-D odometry.

ROS-free. The node gives every frame it takes to ``StreamOdometry.track`` before choosing views,
so the views a track keeps carry poses from the stream instead of wide-baseline registration.
Each frame is registered to the last keyframe at a reduced width (hybrid photometric and depth
term, started from the last frame's pose); a new keyframe is taken after ``keyframe_deg`` or
``keyframe_m``. Poses are relative to the first keyframe of a *segment*; tracking starts a new
segment (poses of different segments are not related) when it is lost: odometry failed, a jump
between consecutive frames too large for the stream, too little of the frame agreeing with the
keyframe after the motion, a gap in the stream, or stamps going back (a bag looping).

Objects move: an instance whose points disagree with the keyframe after the camera's motion (its
surface is now where the keyframe saw free space, or the other way round) is reported as moved,
left out of the odometry (so it does not drag the camera's pose) and the frame becomes a keyframe.
The caller starts a fresh view set for a moved target.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import open3d as o3d

from .geometry import backproject, invert, open3d_single_thread, project, rotation_error_deg, transform
from .views import View


@dataclass(frozen=True)
class OdometryConfig:
    width: int = 160  # frames are registered at this width (the window around the objects, scaled down)
    window_margin: float = 0.5  # the window reaches this share of the objects' extent beyond them
    keyframe_deg: float = 10.0
    keyframe_m: float = 0.05
    # a longer gap between frames: tracking is lost (a shorter one is tracked across and judged by
    # the checks below: a busy node drops a frame now and then)
    max_gap_s: float = 2.0
    max_step_deg: float = 20.0  # a larger motion between two frames: lost
    max_step_m: float = 0.15
    min_agreement: float = 0.5  # share of the frame's points that must agree with the keyframe after the motion
    agree_m: float = 0.02  # depth agreement tolerance (and 2 % of the depth: consumer sensors' noise grows)
    min_instance_px: int = 30  # an instance with fewer points at this width is not judged for motion
    moved_share: float = 0.3  # an instance with this share of its points in conflict with the keyframe moved
    # a new keyframe registered straight to the segment's first: taken where this much agrees and
    # the correction of the chained pose is smaller than this
    anchor_agreement: float = 0.7
    anchor_fix_m: float = 0.03
    anchor_fix_deg: float = 3.0
    # ... and only where the registration run the other way undoes it to within this: on a plain
    # table a registration across a wide baseline can agree in depth and still be wrong, and
    # such a one rarely agrees with its reverse
    anchor_cycle_m: float = 0.005
    anchor_cycle_deg: float = 0.5


def _small(T: np.ndarray, m: float, deg: float) -> bool:
    """Whether the motion T moves less than m metres and turns less than deg degrees."""
    return bool(np.linalg.norm(T[:3, 3]) < m and rotation_error_deg(np.eye(3), T[:3, :3]) < deg)


@dataclass
class TrackedPose:
    """One frame's result. ``T_seg_cam`` maps the frame's optical frame to its segment's first
    keyframe; None where the frame has no depth (not tracked)."""

    T_seg_cam: np.ndarray | None
    segment: int
    status: str  # "start", "tracked", "keyframe", or "lost: <why>" (then this frame starts a new segment)
    moved_ids: list[int] = field(default_factory=list)


@dataclass
class _Frame:
    rgbd: o3d.geometry.RGBDImage
    depth: np.ndarray  # (h, w) float32 metres at the odometry's width
    labels: np.ndarray  # (h, w) int32
    K: np.ndarray  # intrinsics at this width


class StreamOdometry:
    """Frame-to-keyframe RGB-D odometry over one camera's stream; not thread-safe (one frame thread)."""

    def __init__(self, cfg: OdometryConfig = OdometryConfig()):
        self.cfg = cfg
        self.segment = 0
        self.key: _Frame | None = None
        self.key_view: View | None = None  # the keyframe's view (prepared again without moved objects)
        self.window: tuple[int, int, int, int, float] | None = None  # the keyframe's (_window)
        self.anchor: View | None = None  # the segment's first keyframe
        self.T_seg_key = np.eye(4)
        # the last frame, relative to the keyframe: the next frame's start (a constant-velocity
        # start drifted more: bench --odometry)
        self.T_key_last = np.eye(4)
        self.last_stamp_s: float | None = None
        self.counts = {"frames": 0, "keyframes": 0, "anchored": 0, "lost": 0, "moved": 0, "last_seconds": 0.0}

    def _window(self, view: View) -> tuple[int, int, int, int, float]:
        """The part of the image a keyframe and the frames registered to it are tracked in: around
        the labelled objects with a wide margin (on a plain table they carry the texture and the
        shape that pin the pose; the table alone leaves turns about its normal free), scaled to
        ``width``; the whole image where nothing is labelled."""
        h, w = view.height, view.width
        assert view.depth_m is not None
        objects = (view.labels > 0) & (view.depth_m > 0)
        if objects.sum() < 200:
            return 0, h, 0, w, self.cfg.width / w
        ys, xs = np.nonzero(objects)
        margin = int(self.cfg.window_margin * max(int(np.ptp(ys)), int(np.ptp(xs)), 40))
        y0, y1 = max(0, ys.min() - margin), min(h, ys.max() + 1 + margin)
        x0, x1 = max(0, xs.min() - margin), min(w, xs.max() + 1 + margin)
        return y0, y1, x0, x1, min(1.0, self.cfg.width / (x1 - x0))

    def _prepare(self, view: View, window: tuple[int, int, int, int, float], hidden: tuple[int, ...] = ()) -> _Frame:
        y0, y1, x0, x1, s = window
        assert view.depth_m is not None
        size = (max(1, int(round((x1 - x0) * s))), max(1, int(round((y1 - y0) * s))))
        # Pixel centres: a small pixel i covers the window's [i r, (i + 1) r), centred at (i + 0.5) r - 0.5;
        # colour is averaged over it (INTER_AREA), depth and labels taken at the pixel nearest that
        # centre (INTER_NEAREST_EXACT; plain INTER_NEAREST takes i r, a shift against the colour),
        # and the intrinsics say the same.
        color = cv2.resize(view.color[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
        depth = cv2.resize(view.depth_m[y0:y1, x0:x1], size, interpolation=cv2.INTER_NEAREST_EXACT)
        labels = cv2.resize(view.labels[y0:y1, x0:x1].astype(np.int32), size,
                            interpolation=cv2.INTER_NEAREST_EXACT)
        for i in hidden:  # moved objects must not drag the camera's pose
            depth[labels == i] = 0
        K = view.K.copy()
        for axis, (lo, n, m) in enumerate(((x0, x1 - x0, size[0]), (y0, y1 - y0, size[1]))):
            K[axis, 2] = (K[axis, 2] - lo + 0.5) * m / n - 0.5
            K[axis, axis] *= m / n
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.ascontiguousarray(color)), o3d.geometry.Image(np.ascontiguousarray(depth, np.float32)),
            depth_scale=1.0, depth_trunc=4.0, convert_rgb_to_intensity=True)
        return _Frame(rgbd, depth, labels, K)

    def _odometry(self, cur: _Frame, key: _Frame, init: np.ndarray) -> np.ndarray | None:
        h, w = cur.depth.shape
        intr = o3d.camera.PinholeCameraIntrinsic(w, h, cur.K[0, 0], cur.K[1, 1], cur.K[0, 2], cur.K[1, 2])
        with open3d_single_thread():  # a pose that is a function of its frames alone: replays reproduce
            ok, T, _ = o3d.pipelines.odometry.compute_rgbd_odometry(
                cur.rgbd, key.rgbd, intr, init, o3d.pipelines.odometry.RGBDOdometryJacobianFromHybridTerm(),
                o3d.pipelines.odometry.OdometryOption())
        return T if ok and np.all(np.isfinite(T)) else None

    def _conflicts(self, a: _Frame, b: _Frame, T_b_a: np.ndarray) -> tuple[float, dict[int, tuple[int, int]]]:
        """Frame a's points moved into b: the share of judged points agreeing with b's depth, and
        per instance of a (judged points, points in conflict). A point conflicts where it lies in
        front of b's surface (b saw through it: free space) or on b's same instance at another depth;
        points behind b's surface may be hidden there and are not judged."""
        pts, vu = backproject(a.depth, a.K)
        uv, zb = project(transform(T_b_a, pts), b.K)
        front = zb > 1e-3
        ub = np.where(front, np.round(uv[:, 0]), -1).astype(int)
        vb = np.where(front, np.round(uv[:, 1]), -1).astype(int)
        h, w = b.depth.shape
        inside = front & (ub >= 0) & (ub < w) & (vb >= 0) & (vb < h)
        D = np.zeros(len(zb), np.float32)
        D[inside] = b.depth[vb[inside], ub[inside]]
        judged = inside & (D > 0)
        if judged.sum() < 50:
            return 0.0, {}
        tol = self.cfg.agree_m + 0.02 * D
        same = np.zeros(len(zb), bool)
        la = a.labels[vu[:, 0], vu[:, 1]]
        same[judged] = b.labels[vb[judged], ub[judged]] == la[judged]
        conflict = judged & ((zb < D - tol) | (same & (np.abs(zb - D) > tol)))
        agree = judged & (np.abs(zb - D) <= tol)
        seen = judged & (zb <= D + tol)  # not hidden behind b's surface
        share = float(agree.sum() / max(seen.sum(), 1))
        per = {}
        for i in np.unique(la[judged]).tolist():
            if i == 0:
                continue
            m = judged & (la == i)
            per[i] = (int(m.sum()), int((conflict & m).sum()))
        return share, per

    def _moved(self, cur: _Frame, key: _Frame, T_key_cur: np.ndarray) -> tuple[float, list[int], bool]:
        """(share of the frame agreeing, instances that moved, whether most judged instances
        disagree: then it is the camera's pose that is wrong, not the objects)."""
        share, fwd = self._conflicts(cur, key, T_key_cur)
        _, back = self._conflicts(key, cur, invert(T_key_cur))
        judged, moved = set(), set()
        for per in (fwd, back):
            for i, (n, bad) in per.items():
                if n >= self.cfg.min_instance_px:
                    judged.add(i)
                    if bad > self.cfg.moved_share * n:
                        moved.add(i)
        return share, sorted(moved), len(judged) >= 2 and 2 * len(moved) > len(judged)

    def _new_keyframe(self, view: View, T_seg_cam: np.ndarray) -> np.ndarray:
        """The view becomes the keyframe; its pose is first checked against the segment's first
        keyframe directly (no drift accumulated through the chain) and taken from there where that
        registration agrees well, corrects only a little and is undone by its reverse."""
        window = self._window(view)
        key = self._prepare(view, window)
        if self.anchor is not None:  # both in the new keyframe's window (where its objects are now)
            frame, cur = self._prepare(self.anchor, window), key
            T = self._odometry(cur, frame, T_seg_cam)
            if T is not None:
                share, moved, _ = self._moved(cur, frame, T)
                c = self.cfg
                # the reverse registration only for a pose that passed the cheaper checks
                if (share >= c.anchor_agreement and not moved
                        and _small(invert(T_seg_cam) @ T, c.anchor_fix_m, c.anchor_fix_deg)
                        and (back := self._odometry(frame, cur, invert(T))) is not None
                        and _small(T @ back, c.anchor_cycle_m, c.anchor_cycle_deg)):
                    T_seg_cam = T
                    self.counts["anchored"] += 1
        self.window, self.key, self.key_view = window, key, view
        self.T_seg_key, self.T_key_last = T_seg_cam, np.eye(4)
        if self.anchor is None:
            self.anchor = view
        self.counts["keyframes"] += 1
        return T_seg_cam

    def _restart(self, view: View, why: str) -> TrackedPose:
        if self.key is not None:
            self.counts["lost"] += 1
        self.segment += 1
        self.anchor = None
        self._new_keyframe(view, np.eye(4))
        return TrackedPose(np.eye(4), self.segment, why)

    def pose_view(self, view: View) -> TrackedPose:
        """track(view), and the view takes the pose (source "odometry", frame "odometry/<segment>")."""
        t0 = time.perf_counter()
        r = self.track(view)
        self.counts["last_seconds"] = round(time.perf_counter() - t0, 4)
        if r.T_seg_cam is not None:
            view.T_world_cam, view.pose_source, view.pose_frame = r.T_seg_cam, "odometry", f"odometry/{r.segment}"
        return r

    def track(self, view: View) -> TrackedPose:
        """The frame's pose in its segment (and which instances moved)."""
        self.counts["frames"] += 1
        if view.depth_m is None or not (view.depth_m > 0).any():
            return TrackedPose(None, self.segment, "no depth")
        gap = None if self.last_stamp_s is None else view.stamp_s - self.last_stamp_s
        self.last_stamp_s = view.stamp_s
        if self.key is None or self.key_view is None or self.window is None:
            return self._restart(view, "start")
        if gap is not None and gap < 0:
            return self._restart(view, f"lost: stamps went back {-gap:.3f} s")
        if gap is not None and gap > self.cfg.max_gap_s:
            return self._restart(view, f"lost: {gap:.2f} s without a frame")
        cur = self._prepare(view, self.window)
        T = self._odometry(cur, self.key, self.T_key_last)
        if T is None:
            return self._restart(view, "lost: odometry did not converge")
        share, moved, pose_wrong = self._moved(cur, self.key, T)
        if pose_wrong:
            return self._restart(view, f"lost: {len(moved)} objects disagree with the camera's motion")
        if moved:  # again without them: a moving object must not drag the camera
            hidden = tuple(moved)
            T2 = self._odometry(self._prepare(view, self.window, hidden), self._prepare(self.key_view, self.window, hidden), T)
            if T2 is None:
                return self._restart(view, "lost: odometry did not converge without the moved objects")
            T = T2
            share, moved_again, _ = self._moved(cur, self.key, T)
            moved = sorted(set(moved) | set(moved_again))
            self.counts["moved"] += len(moved)
        step = invert(self.T_key_last) @ T
        step_deg = rotation_error_deg(np.eye(3), step[:3, :3])
        if step_deg > self.cfg.max_step_deg or np.linalg.norm(step[:3, 3]) > self.cfg.max_step_m:
            return self._restart(view, f"lost: a jump of {step_deg:.1f} deg, {np.linalg.norm(step[:3, 3]):.3f} m")
        if share < self.cfg.min_agreement:
            return self._restart(view, f"lost: {share:.2f} of the frame agrees with the keyframe")
        self.T_key_last = T
        T_seg_cam = self.T_seg_key @ T
        turned = rotation_error_deg(np.eye(3), T[:3, :3])
        if moved or turned > self.cfg.keyframe_deg or np.linalg.norm(T[:3, 3]) > self.cfg.keyframe_m:
            T_seg_cam = self._new_keyframe(view, T_seg_cam)
            return TrackedPose(T_seg_cam, self.segment, "keyframe", moved)
        return TrackedPose(T_seg_cam, self.segment, "tracked", moved)
