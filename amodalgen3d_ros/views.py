"""Views: one RGB-D frame of a scene with instance labels, and the views directory format.

The views directory is the offline contract of ``../shared/spec/views-format.md``; this module
reads and writes it exactly. Every array is documented with shape, dtype, unit and frame.
Camera frames are optical frames (x right, y down, z forward, REP 103).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

DEFAULT_DEPTH_SCALE = 0.001  # metres per depth.png unit (millimetres), per the contract


class ViewsFormatError(ValueError):
    """Input that cannot be used; the message is one line a user can act on."""


@dataclass
class View:
    """One RGB-D frame with instance labels.

    color:       (H, W, 3) uint8 RGB.
    depth_m:     (H, W) float32 metres along the optical axis, 0 where not measured; or None.
    K:           (3, 3) float64 pinhole intrinsics in pixels.
    labels:      (H, W) integer instance ids (int32 as read here and from ROS: every label
                 encoding fits, at half int64's memory), 0 background; the same id is the same
                 object in every view.
    T_world_cam: (4, 4) float64, maps optical-frame points to the world frame; None if unposed.
    pose_source: where T_world_cam came from: "given" (a views directory), "tf", "odometry".
    pose_frame:  what "world" is: "" a fixed world frame (given, tf); "odometry/<segment>" the
                 first keyframe of a stream's tracked segment (poses of one segment are related,
                 of different segments not).
    """

    color: np.ndarray
    depth_m: np.ndarray | None
    K: np.ndarray
    labels: np.ndarray
    T_world_cam: np.ndarray | None = None
    stamp_s: float = 0.0
    name: str = ""
    frame_id: str = ""
    pose_source: str = "given"
    pose_frame: str = ""

    def __post_init__(self) -> None:
        h, w = self.labels.shape[:2]
        if self.color.shape[:2] != (h, w):
            raise ViewsFormatError(
                f"view {self.name or '?'}: colour is {self.color.shape[1]}x{self.color.shape[0]} "
                f"but labels are {w}x{h}")
        if self.depth_m is not None and self.depth_m.shape[:2] != (h, w):
            raise ViewsFormatError(
                f"view {self.name or '?'}: depth is {self.depth_m.shape[1]}x"
                f"{self.depth_m.shape[0]} but labels are {w}x{h}")
        K = np.asarray(self.K, np.float64)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise ViewsFormatError(f"view {self.name or '?'}: intrinsics need fx, fy > 0")
        self.K = K
        if self.depth_m is not None:
            d = np.asarray(self.depth_m, np.float32)
            # NaN, inf and negative depth all mean "not measured".
            self.depth_m = np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)

    @property
    def height(self) -> int:
        return int(self.labels.shape[0])

    @property
    def width(self) -> int:
        return int(self.labels.shape[1])

    def target_masks(self, target_id: int) -> TargetMasks:
        return target_masks(self, target_id)

    def crop(self, y0: int, y1: int, x0: int, x1: int) -> View:
        """The same camera seeing only rows y0:y1 and columns x0:x1 (the principal point moves
        with the window; pose, stamp and names are kept). Arrays are copies: a crop does not
        keep the whole frame alive."""
        K = self.K.copy()
        K[0, 2] -= x0
        K[1, 2] -= y0
        win = (slice(y0, y1), slice(x0, x1))
        return View(self.color[win].copy(), None if self.depth_m is None else self.depth_m[win].copy(), K,
                    self.labels[win].copy(), self.T_world_cam, self.stamp_s, self.name, self.frame_id,
                    self.pose_source, self.pose_frame)


@dataclass
class TargetMasks:
    """The target as one view sees it.

    visible:   (H, W) bool, target pixels.
    occluder:  (H, W) bool, pixels of other instances in front of the target (or touching it
               where depth is missing): where the hidden part of the target may be.
    truncated: (H, W) bool, a band along the image border if the target touches it.
    visibility_ratio: visible / (visible + occluded) estimated in the image, in [0, 1].
    """

    visible: np.ndarray
    occluder: np.ndarray
    truncated: np.ndarray
    visibility_ratio: float
    occluder_ids: list[int] = field(default_factory=list)


def target_masks(view: View, target_id: int, ring_px: int = 4) -> TargetMasks:
    """Cut one target out of a view and find what occludes it.

    An instance occludes the target if it touches the target's visible region within
    ``ring_px`` pixels and, where both have depth along that boundary, is nearer than the target.
    Without depth, touching is enough (the conservative choice: it can hide the target).
    """
    visible = view.labels == target_id
    h, w = visible.shape
    occluder = np.zeros_like(visible)
    truncated = np.zeros_like(visible)
    ids: list[int] = []
    if not visible.any():
        return TargetMasks(visible, occluder, truncated, 0.0, ids)
    # Only a window around the target matters (a dilation by ring_px reaches no further): the
    # same masks as over the whole image, at a fraction of the cost on 640x480 frames.
    ys, xs = np.nonzero(visible)
    m = 2 * ring_px + 2
    win = (slice(max(0, ys.min() - m), min(h, ys.max() + m + 1)), slice(max(0, xs.min() - m), min(w, xs.max() + m + 1)))
    vis_w, lab_w = visible[win], view.labels[win]
    ring = _dilate(vis_w, ring_px) & ~vis_w
    for oid in np.unique(lab_w[ring]):
        if oid == 0 or oid == target_id:
            continue
        in_front = True
        if view.depth_m is not None:
            dep_w = view.depth_m[win]
            near_other = ring & (lab_w == oid) & (dep_w > 0)
            near_target = vis_w & _dilate(lab_w == oid, ring_px) & (dep_w > 0)
            if near_other.any() and near_target.any():
                in_front = bool(np.median(dep_w[near_other]) < np.median(dep_w[near_target]) - 0.003)
        if in_front:
            occluder |= view.labels == oid
            ids.append(int(oid))
    border = np.zeros_like(visible)
    border[:ring_px, :] = border[-ring_px:, :] = True
    border[:, :ring_px] = border[:, -ring_px:] = True
    if (visible & border).any():
        truncated = border
    # Hidden area estimate: occluder pixels within the target's (dilated) bounding box.
    pad = max(2, int(0.5 * max(ys.max() - ys.min(), xs.max() - xs.min())))
    box = np.zeros_like(visible)
    box[max(0, ys.min() - pad):min(h, ys.max() + pad + 1),
        max(0, xs.min() - pad):min(w, xs.max() + pad + 1)] = True
    n_vis = float(visible.sum())
    n_occ = float((occluder & box).sum())
    return TargetMasks(visible, occluder, truncated, n_vis / (n_vis + n_occ), ids)


def _dilate(mask: np.ndarray, radius_px: int) -> np.ndarray:
    """Pixels within ``radius_px`` steps (4-connected) of the mask: scipy's binary_dilation with
    ``iterations=radius_px``, by OpenCV in one pass over a diamond (a tenth of the time; half of
    each view's masks went to it)."""
    r = radius_px
    diamond = (np.abs(np.arange(-r, r + 1))[:, None] + np.abs(np.arange(-r, r + 1))[None, :] <= r).astype(np.uint8)
    return cv2.dilate(mask.view(np.uint8), diamond).view(bool)


def target_region(view: View, target_id: int, grow: float = 1.0, min_side_px: int = 160) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1): the part of the image a reconstruction of the target reads, or None
    when the target is not in the view. The box of the target and the instances touching it (what
    can hide it), grown by ``grow`` times its larger side on every side (the object cube reaches
    about that far past the visible part, and the support plane is fitted to the table around
    it), at least min_side_px square, clipped to the image. Cropping to it again gives it again."""
    visible = view.labels == target_id
    if not visible.any():
        return None
    m = target_masks(view, target_id)
    ys, xs = np.nonzero(visible | m.occluder)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    grow_px = int(grow * max(y1 - y0, x1 - x0))
    pad_y, pad_x = (max(grow_px, (min_side_px - n + 1) // 2) for n in (y1 - y0, x1 - x0))
    return max(0, y0 - pad_y), min(view.height, y1 + pad_y), max(0, x0 - pad_x), min(view.width, x1 + pad_x)


def crop_to_target(views: list[View], target_id: int) -> list[View]:
    """Each view cut to target_region when every view is posed (what a reconstruction reads of a
    640x480 or 1280x720 frame, without shipping the rest to the reconstruction process); the views
    as given otherwise, because registering unposed views matches whole frames."""
    if any(v.T_world_cam is None for v in views):
        return list(views)
    return [v if (r := target_region(v, target_id)) is None else v.crop(*r) for v in views]


# --------------------------------------------------------------------------------------------
# The views directory
# --------------------------------------------------------------------------------------------

@dataclass
class ViewSet:
    """One object's views as read from a views directory."""

    views: list[View]
    target_id: int
    depth_scale: float = DEFAULT_DEPTH_SCALE
    root: Path | None = None

    @property
    def all_posed(self) -> bool:
        return all(v.T_world_cam is not None for v in self.views)


def _read_image(path: Path, flags: int) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise ViewsFormatError(f"{path}: not a readable image")
    return img


def _parse_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ViewsFormatError(f"{path}: not valid JSON ({e.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ViewsFormatError(f"{path}: expected a JSON object")
    return data


def read_view(folder: Path, depth_scale: float = DEFAULT_DEPTH_SCALE) -> View:
    """Read one view folder (color.png, optional depth.png, labels.png, camera.json)."""
    for name in ("color.png", "labels.png", "camera.json"):
        if not (folder / name).is_file():
            raise ViewsFormatError(f"{folder}: missing {name}")
    bgr = _read_image(folder / "color.png", cv2.IMREAD_COLOR)
    color = np.ascontiguousarray(bgr[:, :, ::-1])
    labels_raw = _read_image(folder / "labels.png", cv2.IMREAD_UNCHANGED)
    if labels_raw.ndim != 2 or labels_raw.dtype not in (np.uint8, np.uint16):
        raise ViewsFormatError(f"{folder / 'labels.png'}: must be a single-channel 8- or 16-bit image")
    labels = labels_raw.astype(np.int32)
    depth_m = None
    if (folder / "depth.png").is_file():
        raw = _read_image(folder / "depth.png", cv2.IMREAD_UNCHANGED)
        if raw.ndim != 2 or raw.dtype != np.uint16:
            raise ViewsFormatError(f"{folder / 'depth.png'}: must be a single-channel 16-bit image")
        depth_m = raw.astype(np.float32) * np.float32(depth_scale)
    cam = _parse_json(folder / "camera.json")
    try:
        w, h = int(cam["width"]), int(cam["height"])
        K = np.asarray(cam["K"], np.float64).reshape(3, 3)
    except (KeyError, TypeError, ValueError):
        raise ViewsFormatError(f"{folder / 'camera.json'}: needs width, height and K (9 numbers)") from None
    if labels.shape != (h, w):
        raise ViewsFormatError(
            f"{folder}: labels.png is {labels.shape[1]}x{labels.shape[0]}, camera.json says {w}x{h}")
    T = None
    if cam.get("T_world_camera") is not None:
        try:
            T = np.asarray(cam["T_world_camera"], np.float64).reshape(4, 4)
        except (TypeError, ValueError):
            raise ViewsFormatError(f"{folder / 'camera.json'}: T_world_camera must be 16 numbers") from None
        if not np.all(np.isfinite(T)) or not np.allclose(T[3], [0, 0, 0, 1]):
            raise ViewsFormatError(f"{folder / 'camera.json'}: T_world_camera is not a rigid transform")
    return View(color=color, depth_m=depth_m, K=K, labels=labels, T_world_cam=T,
                stamp_s=float(cam.get("stamp", 0.0) or 0.0), name=folder.name)


def read_views_dir(root: str | Path, target_id: int | None = None) -> ViewSet:
    """Read a views directory. ``target_id`` overrides scene.json's (``--target``)."""
    root = Path(root)
    if not root.is_dir():
        raise ViewsFormatError(f"{root}: not a directory")
    scene = _parse_json(root / "scene.json") if (root / "scene.json").is_file() else None
    if scene is None:
        raise ViewsFormatError(f"{root}: missing scene.json")
    depth_scale = float(scene.get("depth_scale", DEFAULT_DEPTH_SCALE) or DEFAULT_DEPTH_SCALE)
    if not np.isfinite(depth_scale) or depth_scale <= 0:
        raise ViewsFormatError(f"{root / 'scene.json'}: depth_scale must be > 0")
    if target_id is None:
        if "target_id" not in scene:
            raise ViewsFormatError(f"{root / 'scene.json'}: no target_id (or pass --target)")
        try:
            target_id = int(scene["target_id"])
        except (TypeError, ValueError):
            raise ViewsFormatError(f"{root / 'scene.json'}: target_id must be an integer") from None
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit())
    if not folders:
        raise ViewsFormatError(f"{root}: no view folders (000/, 001/, ...)")
    if folders[0].name != "000":
        raise ViewsFormatError(f"{root}: the reference view 000/ is missing")
    views = [read_view(f, depth_scale) for f in folders]
    if not any((v.labels == target_id).any() for v in views):
        raise ViewsFormatError(f"{root}: target {target_id} appears in no view's labels.png")
    return ViewSet(views=views, target_id=int(target_id), depth_scale=depth_scale, root=root)


def write_view(folder: Path, view: View, depth_scale: float = DEFAULT_DEPTH_SCALE,
               include_pose: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "color.png"), np.ascontiguousarray(view.color[:, :, ::-1]))
    if view.labels.max(initial=0) > 65535 or view.labels.min(initial=0) < 0:
        raise ViewsFormatError("labels must be in 0..65535 for labels.png")
    dtype = np.uint8 if view.labels.max(initial=0) < 256 else np.uint16
    cv2.imwrite(str(folder / "labels.png"), view.labels.astype(dtype))
    if view.depth_m is not None:
        units = np.round(view.depth_m / depth_scale)
        cv2.imwrite(str(folder / "depth.png"), np.clip(units, 0, 65535).astype(np.uint16))
    cam: dict = {"width": view.width, "height": view.height,
                 "K": [float(x) for x in view.K.reshape(-1)]}
    if include_pose and view.T_world_cam is not None:
        cam["T_world_camera"] = [float(x) for x in view.T_world_cam.reshape(-1)]
    (folder / "camera.json").write_text(json.dumps(cam))


def write_views_dir(root: str | Path, views: list[View], target_id: int,
                    depth_scale: float = DEFAULT_DEPTH_SCALE, include_poses: bool = True) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "scene.json").write_text(json.dumps({"target_id": int(target_id), "depth_scale": depth_scale}))
    for i, v in enumerate(views):
        write_view(root / f"{i:03d}", v, depth_scale, include_poses)
    return root
