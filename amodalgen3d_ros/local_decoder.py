"""The local decoder: the generator's coarse occupancy made fine where the surface is.

The 3D generator predicts occupancy on a 32^3 grid in the object cube, a voxel of 7-14 mm on a
10-30 cm object: it rounds a box's edges and loses 3-7 mm walls and floors (bowls, mug sides).
The local decoder is the issue's "coarse grid plus a local implicit decoder": at each voxel of the
fine grid (64^3) near the surface, a small MLP reads the upsampled coarse field and the fine
observation around it (the views' TSDF band, seen-empty space, the support-plane hull, what lies
behind the target or an occluder) at three scales, and predicts the fine field as a ramp whose 0.5
crossing is the surface: the signed distance to the true surface, in units of two fine voxels,
clipped to [0, 1]. Marching cubes then places the surface between voxel centres by the ramp.

Its training (tools/train_decoder.py) reads the shipped generator's own fields on fresh
train-split scenes, so it learns to correct what the generator really gets wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from scipy import ndimage

from .weights_io import WEIGHTS_DIR, header_json, load_net, write_safetensors

DECODER_WEIGHTS = WEIGHTS_DIR / "amodal_local_decoder.safetensors"
# the fine field's channels, in the order the decoder reads them
CHANNELS = ("field", "hull", "tsdf", "band", "free", "below_plane", "behind_target", "behind_occluder")
DECODE_CHUNK = 8192  # query voxels decoded at once (their features are 21 MB)
RAMP_VOXELS = 2.0  # the target ramp's width: 0 at one voxel outside the surface, 1 at one inside


@dataclass(frozen=True)
class DecoderConfig:
    fine_res: int = 64  # the grid it was trained on: voxel units are its units
    scales: tuple[int, ...] = (1, 2, 4)  # taps at offsets {-s, 0, s}^3 of the field smoothed over 2s - 1
    width: int = 128
    band: float = 0.02  # decoded where the coarse field is in (band, 1 - band), widened by `margin`
    margin: int = 2

    @property
    def inputs(self) -> int:
        return len(CHANNELS) * 27 * len(self.scales)


class LocalDecoder(nn.Module):
    def __init__(self, cfg: DecoderConfig = DecoderConfig()):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.mlp = nn.Sequential(nn.Linear(cfg.inputs, w), nn.GELU(), nn.Linear(w, w), nn.GELU(),
                                 nn.Linear(w, w // 2), nn.GELU(), nn.Linear(w // 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, inputs) local features -> (N,) logits of the ramp value."""
        return self.mlp(x)[:, 0]


# --------------------------------------------------------------------------------------------
# Features: the fine field and observation around each decoded voxel
# --------------------------------------------------------------------------------------------

def fine_channels(field: np.ndarray, hull: np.ndarray | None, ev) -> np.ndarray:
    """(len(CHANNELS), R, R, R) float32 from the coarse field brought to the fine grid (after the
    agreement with what was seen), the fine support hull and the fine ray evidence."""
    tsdf = np.nan_to_num(ev.tsdf, nan=0.0)
    band = ~np.isnan(ev.tsdf)
    chans = [field, hull if hull is not None else np.zeros_like(field), tsdf, band, ev.free > 0, ev.below_plane,
             ev.behind_target > 0, ev.behind_occluder > 0]
    return np.stack([np.asarray(c, np.float32) for c in chans])


def query_voxels(field: np.ndarray, band: np.ndarray, cfg: DecoderConfig) -> np.ndarray:
    """(N, 3) indices of the fine voxels the decoder decides: where the coarse field is not
    settled, widened by a margin; the measured band is left to the measurement."""
    open_ = (field > cfg.band) & (field < 1 - cfg.band)
    open_ = ndimage.binary_dilation(open_, iterations=cfg.margin)
    return np.argwhere(open_ & ~band)


def feature_reader(chans: np.ndarray, ijk: np.ndarray, cfg: DecoderConfig):
    """A function of a slice of ijk giving those voxels' local features, (n, inputs) float32: per
    scale s, the channels smoothed over 2s - 1 voxels and read at the 27 offsets {-s, 0, s}^3
    around each voxel (edge values beyond the grid); ordered scale, channel, offset. The smoothed
    grids are made once; the features are read a slice at a time, so a caller never needs all of
    them at once (20 000-35 000 query voxels x 648 inputs are 50-90 MB)."""
    C, R = chans.shape[0], chans.shape[1]
    pad = max(cfg.scales)
    # only the box the taps and the smoothing reach (at the grid's faces the same edge values)
    reach = pad + max(cfg.scales) - 1
    lo, hi = np.maximum(ijk.min(0) - reach, 0), np.minimum(ijk.max(0) + reach + 1, R)
    box = chans[:, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    q = ijk - lo
    S = np.array(box.shape[1:]) + 2 * pad
    off = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)  # (27, 3)
    base = ((q[:, 0] + pad) * S[1] + (q[:, 1] + pad)) * S[2] + (q[:, 2] + pad)  # (N,)
    tables = []
    for s in cfg.scales:
        sm = box if s == 1 else ndimage.uniform_filter(box, size=(1, 2 * s - 1, 2 * s - 1, 2 * s - 1), mode="nearest")
        # channels last: one gather of C contiguous values per tap
        last = np.pad(np.moveaxis(sm, 0, -1), ((pad, pad),) * 3 + ((0, 0),), mode="edge").reshape(-1, C)
        d = ((off[:, 0] * s) * S[1] + off[:, 1] * s) * S[2] + off[:, 2] * s  # (27,)
        tables.append((last, d))

    def read(sel: slice) -> np.ndarray:
        b = base[sel]
        out = np.empty((len(b), len(cfg.scales), C, 27), np.float32)
        for k, (last, d) in enumerate(tables):
            out[:, k] = last[b[:, None] + d[None, :]].transpose(0, 2, 1)
        return out.reshape(len(b), -1)

    return read


def local_features(chans: np.ndarray, ijk: np.ndarray, cfg: DecoderConfig) -> np.ndarray:
    """(N, inputs) float32: feature_reader's features of every voxel in ijk."""
    return feature_reader(chans, ijk, cfg)(slice(None))


def ramp_target(signed_distance_m: np.ndarray, voxel_m: float) -> np.ndarray:
    """The decoder's target: 1 inside, 0 outside, a linear ramp over RAMP_VOXELS voxels across the
    surface (signed distance positive outside), 0.5 on it."""
    return np.clip(0.5 - signed_distance_m / (RAMP_VOXELS * voxel_m), 0.0, 1.0).astype(np.float32)


@torch.inference_mode()
def decode(net: LocalDecoder, field: np.ndarray, hull: np.ndarray | None, ev) -> np.ndarray:
    """The fine field with the decoder's ramp at its query voxels (surface at 0.5)."""
    band = ~np.isnan(ev.tsdf)
    ijk = query_voxels(field, band, net.cfg)
    out = (field > 0.5).astype(np.float32)  # settled voxels: decided
    if len(ijk):
        read = feature_reader(fine_channels(field, hull, ev), ijk, net.cfg)
        # One thread: the MLP is a small share of the decode (42 of 102 ms for 20 000 voxels), and
        # torch's thread pool, woken by it, spins after each op. With every core busy (the node
        # beside its camera stream) that doubled the decode (2 threads 312 ms, 1 thread 180 ms)
        # and the node's latency (soak median 10.2 s, 5.4 s with one); on an idle host one thread
        # costs 18 ms here and 0.12 s on the speed bench's one-view object (README, Speed).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for k in range(0, len(ijk), DECODE_CHUNK):  # a chunk's features at a time: bounded memory
                sel = slice(k, k + DECODE_CHUNK)
                ramp = torch.sigmoid(net(torch.from_numpy(read(sel)))).numpy()
                out[ijk[sel, 0], ijk[sel, 1], ijk[sel, 2]] = ramp
        finally:
            torch.set_num_threads(threads)
    return out


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------

def save_decoder(net: LocalDecoder, path: str | Path, meta: dict | None = None) -> None:
    write_safetensors(net, path, meta)


def load_decoder(path: str | Path) -> LocalDecoder:
    return load_net(path, lambda d: DecoderConfig(**{**d, "scales": tuple(d["scales"])}), LocalDecoder,  # type: ignore[return-value]
                    "local decoder weights")


def decoder_fine_res(path: str | Path) -> int:
    """The grid a decoder file was trained on, from its header alone (no tensors read)."""
    return int(header_json(path, "config")["fine_res"])
