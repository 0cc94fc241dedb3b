"""The 2D amodal completion prior (paper, Sec. 3.1, adapted to RGB-D): per view, from the target's
crop (colour, depth, visible mask, occluder mask) predict the target's whole (amodal) mask and the
depth of its front surface where it is hidden. A small U-Net on 64x64 crops. Its outputs complete
the view crops the generator reads (features.py) and size the object cube so the hidden part fits.

Depth in a crop is relative: (D - z_ref) / crop_m, with z_ref the median visible depth and crop_m
the crop's side in metres at z_ref, so one network serves objects at 0.3 m and at 1.2 m.

Sections: crop geometry, the network, losses, running it on an observation, weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import ndimage

from .views import TargetMasks, View
from .weights_io import WEIGHTS_DIR, load_net, write_safetensors

# depth_filled: every pixel takes the depth of the nearest visible pixel with a measurement (the
# trivial prior's depth); the network predicts a correction to it, so it starts from the trivial answer
PRIOR_CHANNELS = ["r", "g", "b", "depth", "depth_valid", "visible", "occluder", "depth_filled"]
PRIOR_INPUT_VERSION = 3  # bump when the inputs change: prepared prior data is keyed by it
PRIOR_WEIGHTS = WEIGHTS_DIR / "amodal_prior.safetensors"
DEPTH_CLIP = 3.0  # relative depth beyond 3 crop sides is not the target

# numpy (B, 8, C, C) float32 -> (B, 2, C, C) float32: amodal logit, relative depth (any backend)
PriorRunner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PriorConfig:
    crop: int = 64  # crop side in pixels
    width: int = 16  # first U-Net stage; 16 keeps a crop near 100 M multiply-adds on a CPU
    margin: float = 1.15  # crop side over the box of the target and its adjacent occluders


# --------------------------------------------------------------------------------------------
# Crop geometry
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CropBox:
    """A square window of an image: top-left corner and side, in pixels (floats)."""

    top: float
    left: float
    side_px: float

    def centres(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, n) image rows and columns (float) of the centres of an n x n sampling of the box."""
        g = (np.arange(n) + 0.5) * self.side_px / n
        vv, uu = np.meshgrid(self.top + g, self.left + g, indexing="ij")
        return vv, uu

    def sample(self, img: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest-pixel samples (n, n, ...) of img at the box's centres (zeros outside the
        image) and the (n, n) bool mask of centres inside the image."""
        vv, uu = self.centres(n)
        vi, ui = np.floor(vv).astype(int), np.floor(uu).astype(int)
        h, w = img.shape[:2]
        inside = (vi >= 0) & (vi < h) & (ui >= 0) & (ui < w)
        out = img[np.clip(vi, 0, h - 1), np.clip(ui, 0, w - 1)]
        # zeros of img's own dtype: a bool mask stays bool (an int 0 would make it int, and ~ bitwise)
        out = np.where(inside.reshape(inside.shape + (1,) * (out.ndim - 2)), out, np.zeros((), img.dtype))
        return out, inside


def crop_box(m: TargetMasks, margin: float = PriorConfig.margin) -> CropBox:
    """The target's visible box grown over the occluders next to it (where its hidden part can
    be), at most to three times the visible extent, made square."""
    ys, xs = np.nonzero(m.visible)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    ext = max(y1 - y0, x1 - x0)
    h, w = m.visible.shape
    Y0, Y1, X0, X1 = max(0, y0 - ext), min(h, y1 + ext), max(0, x0 - ext), min(w, x1 + ext)
    oy, ox = np.nonzero(m.occluder[Y0:Y1, X0:X1])
    if len(oy):
        y0, y1 = min(y0, Y0 + int(oy.min())), max(y1, Y0 + int(oy.max()) + 1)
        x0, x1 = min(x0, X0 + int(ox.min())), max(x1, X0 + int(ox.max()) + 1)
    s = min(max(y1 - y0, x1 - x0) * margin, 3 * ext) + 4
    return CropBox((y0 + y1) / 2 - s / 2, (x0 + x1) / 2 - s / 2, float(s))


@dataclass
class PriorInput:
    """x: (8, C, C) float32 network input; box: where it is in the image; z_ref (m), crop_m (m):
    the relative depth's origin and unit."""

    x: np.ndarray
    box: CropBox
    z_ref: float
    crop_m: float
    visible: np.ndarray  # (C, C) bool
    depth_m: np.ndarray  # (C, C) float32 measured depth, 0 where none


def prior_input(view: View, m: TargetMasks, cfg: PriorConfig = PriorConfig()) -> PriorInput | None:
    """The prior's input for one view, or None when the target has no measured depth there."""
    if view.depth_m is None or not m.visible.any():
        return None
    d_vis = view.depth_m[m.visible]
    d_vis = d_vis[d_vis > 0]
    if len(d_vis) < 5:
        return None
    box = crop_box(m, cfg.margin)
    z_ref = float(np.median(d_vis))
    crop_m = box.side_px * z_ref / view.K[0, 0]
    n = cfg.crop
    color, _ = box.sample(view.color, n)
    depth, _ = box.sample(view.depth_m, n)
    vis, _ = box.sample(m.visible, n)
    occ, _ = box.sample(m.occluder, n)
    rel = np.where(depth > 0, np.clip((depth - z_ref) / crop_m, -DEPTH_CLIP, DEPTH_CLIP), 0.0)
    seen = vis & (depth > 0)
    filled = np.zeros_like(rel)
    if seen.any():
        _, (iy, ix) = ndimage.distance_transform_edt(~seen, return_indices=True)
        filled = rel[iy, ix]
    x = np.concatenate([color.transpose(2, 0, 1) / 255.0, rel[None], (depth > 0)[None], vis[None], occ[None],
                        filled[None]])
    return PriorInput(x.astype(np.float32), box, z_ref, crop_m, vis.astype(bool), depth.astype(np.float32))


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------

def _stage(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.GroupNorm(4, o), nn.GELU(),
                         nn.Conv2d(o, o, 3, padding=1), nn.GroupNorm(4, o), nn.GELU())


class AmodalPrior(nn.Module):
    """U-Net: (B, 8, 64, 64) -> (B, 2, 64, 64): the amodal mask's logit and the relative depth of
    the target's front surface (meaningful where the mask is on), predicted as a correction to the
    nearest visible depth. Three down-samplings see the whole crop (an 8x8 bottleneck), skips
    keep the visible edges sharp."""

    def __init__(self, cfg: PriorConfig = PriorConfig()):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.enc1, self.enc2, self.enc3 = _stage(len(PRIOR_CHANNELS), w), _stage(w, 2 * w), _stage(2 * w, 4 * w)
        self.mid = _stage(4 * w, 4 * w)
        self.dec3, self.dec2, self.dec1 = _stage(8 * w, 2 * w), _stage(4 * w, w), _stage(2 * w, w)
        self.head = nn.Conv2d(w, 2, 1)
        # the depth correction starts at zero: an untrained prior gives the trivial prior's depth
        with torch.no_grad():
            self.head.weight[1:].zero_()
            self.head.bias[1:].zero_()  # type: ignore[index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)  # (B, w, 64, 64)
        e2 = self.enc2(F.max_pool2d(e1, 2))  # (B, 2w, 32, 32)
        e3 = self.enc3(F.max_pool2d(e2, 2))  # (B, 4w, 16, 16)
        m = self.mid(F.max_pool2d(e3, 2))  # (B, 4w, 8, 8)
        d3 = self.dec3(torch.cat([F.interpolate(m, scale_factor=2.0), e3], 1))
        d2 = self.dec2(torch.cat([F.interpolate(d3, scale_factor=2.0), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0), e1], 1))
        out = self.head(d1)
        return torch.cat([out[:, :1], out[:, 1:] + x[:, -1:]], 1)  # depth = nearest visible + correction


def prior_loss(net: AmodalPrior, x: torch.Tensor, amodal: torch.Tensor, depth_rel: torch.Tensor,
               depth_ok: torch.Tensor) -> torch.Tensor:
    """x (B, 8, C, C); amodal, depth_ok (B, C, C) {0, 1}; depth_rel (B, C, C). BCE on the mask,
    weighted up on occluder pixels (where the hidden part is decided), plus L1 on the depth of
    the amodal surface."""
    out = net(x)
    w = 1.0 + 2.0 * x[:, PRIOR_CHANNELS.index("occluder")]
    bce = F.binary_cross_entropy_with_logits(out[:, 0], amodal, weight=w)
    l1 = (torch.abs(out[:, 1] - depth_rel) * depth_ok).sum() / depth_ok.sum().clamp_min(1)
    return bce + l1


# --------------------------------------------------------------------------------------------
# Running it: completed views
# --------------------------------------------------------------------------------------------

@dataclass
class AmodalView:
    """One view completed by the prior, on its crop: prob (C, C) float32 amodal probability
    (1 on visible pixels); depth_m (C, C) float32 front-surface depth along the optical axis, the
    measurement where there is one, the prediction elsewhere, 0 outside the amodal mask."""

    prob: np.ndarray
    depth_m: np.ndarray
    box: CropBox
    visible: np.ndarray


def completed(pi: PriorInput, out: np.ndarray) -> AmodalView:
    """The network's (2, C, C) output on pi, as an AmodalView."""
    prob = np.maximum(1.0 / (1.0 + np.exp(-out[0])), pi.visible).astype(np.float32)
    pred_m = pi.z_ref + np.clip(out[1], -DEPTH_CLIP, DEPTH_CLIP) * pi.crop_m
    depth = np.where(pi.visible & (pi.depth_m > 0), pi.depth_m, pred_m)
    return AmodalView(prob, np.where(prob > 0.5, depth, 0.0).astype(np.float32), pi.box, pi.visible)


def complete_views(views: list[View], masks: list[TargetMasks], run: PriorRunner,
                   cfg: PriorConfig = PriorConfig()) -> list[AmodalView | None]:
    """All views through the prior in one batch; None where a view has no usable target."""
    inputs = [prior_input(v, m, cfg) for v, m in zip(views, masks)]
    ok = [pi for pi in inputs if pi is not None]
    if not ok:
        return [None] * len(views)
    out = run(np.stack([pi.x for pi in ok]))
    res = iter(completed(pi, o) for pi, o in zip(ok, out))
    return [None if pi is None else next(res) for pi in inputs]


def hidden_points(view: View, av: AmodalView) -> np.ndarray:
    """(N, 3) camera-frame points of the predicted hidden front surface (amodal, not visible)."""
    sel = (av.prob > 0.5) & ~av.visible & (av.depth_m > 0)
    vv, uu = av.box.centres(av.prob.shape[0])
    z = av.depth_m[sel]
    K = view.K
    return np.stack([(uu[sel] - K[0, 2]) / K[0, 0] * z, (vv[sel] - K[1, 2]) / K[1, 1] * z, z], 1)


def torch_runner(net: AmodalPrior) -> PriorRunner:
    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy()
    return run


# --------------------------------------------------------------------------------------------
# Weights: safetensors with the config in the metadata; never pickle
# --------------------------------------------------------------------------------------------

def save_prior(net: AmodalPrior, path: str | Path, meta: dict | None = None) -> None:
    write_safetensors(net, path, meta)


def load_prior(path: str | Path = PRIOR_WEIGHTS) -> AmodalPrior:
    return load_net(path, lambda d: PriorConfig(**d), AmodalPrior, "amodal prior weights")  # type: ignore[return-value]
