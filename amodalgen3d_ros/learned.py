"""The learned reconstruction methods: the generator (``amodalgen3d``) and the deterministic
reference (``amodal_regressor``) as Observation -> (closed mesh, per-vertex confidence).

The network predicts occupancy on its coarse grid in the object cube (model.py); here that field
is made to agree with what was seen on a finer grid (space seen empty cleared, the measured surface
band from the views' TSDF, the support-plane hull's exact faces where the network keeps them),
refined by the local decoder (local_decoder.py), meshed, and given a confidence per vertex from the
field's slope, with the surface level and confidence calibrated per view count
(`amodalgen3d calibrate`, stored in the weights' metadata).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from scipy.special import erf

from .amodal_prior import PRIOR_WEIGHTS, load_prior
from .backends import make_backend, make_prior_runner
from .features import GEO_CHANNELS, FeatureConfig, ModelInputs, hull_columns, in_frame, model_inputs
from .geometry import transform
from .local_decoder import DECODER_WEIGHTS, decode, decoder_fine_res, load_decoder
from .model import NUM_SAMPLES, SAMPLING_STEPS, load_weights, sample, to_batch
from .observation import ray_evidence, support_points
from .surface import drop_specks_and_voids, mesh_from_field
from .weights_io import WEIGHTS_DIR, WeightsError, file_sha256, weights_meta

DEFAULT_WEIGHTS = {"amodalgen3d": WEIGHTS_DIR / "amodalgen3d_flow.safetensors",
                   "amodal_regressor": WEIGHTS_DIR / "amodal_regressor.safetensors"}


# Samples per network call (numpy backends): on the CPU, small batches need a fraction of the
# activation memory of all samples at once, and are as fast or faster with one thread (docs/ros.md).
SAMPLES_PER_CALL = 2


class LearnedMethod:
    """Observation -> (closed mesh in the output frame, per-vertex confidence).

    The network predicts occupancy over the 32^3 cube; the result then agrees with what was seen,
    on a finer grid: space the depth rays saw as empty is cleared, the observed surface band comes
    from the views' TSDF, and nothing lies under the support plane.
    """

    def __init__(self, weights: str | Path, steps: int = SAMPLING_STEPS, samples: int = NUM_SAMPLES, seed: int = 0,
                 guidance: float = 1.0, fine_res: int = 64, threads: int | None = None, backend: str = "torch",
                 onnx_dir: str | Path | None = None, engine_cache_dir: str | Path | None = None,
                 precision: str = "fp16", force_rebuild: bool = False, hull_residual: bool = True,
                 level: float | None = None, prior_weights: str | Path | None = None, hypotheses: int = 0,
                 decoder: int = 0, decoder_weights: str | Path | None = None):
        self.hull_residual = hull_residual
        self.model = load_weights(weights)
        meta = weights_meta(weights)
        weights_sha = file_sha256(weights)  # the backend's cache key and the decoder's calibration key
        self.prior = None
        if self.model.cfg.amodal_prior:
            prior_path = Path(prior_weights or PRIOR_WEIGHTS)
            prior_net = load_prior(prior_path)
            sha, want = file_sha256(prior_path), meta.get("prior_sha256")
            if want and sha != want:
                raise WeightsError(f"{weights} was trained with another 2D amodal prior than {prior_path}")
            self.prior = make_prior_runner(backend, prior_net, onnx_dir, threads or 0, sha)
        # the occupancy level of the surface: calibrated on validation scenes (not the benchmark's)
        # and stored in the weights' metadata by `amodalgen3d calibrate`; 0.5 if absent
        self.level = level if level is not None else meta.get("level", 0.5)
        # and per view count where calibrated so (a level given here holds for every count)
        self.level_by_views = {} if level is not None else {
            int(n): float(lv) for n, lv in meta.get("level_by_views", {}).items()}
        # and how much lower it lies in hidden space, per view count (hidden_offset_for)
        self.hidden_offset_by_views = {} if level is not None else {
            int(n): float(d) for n, d in meta.get("hidden_offset_by_views", {}).items()}
        # how the field's slope becomes P(surface within 5 mm): fitted by the same command (the
        # slope alone over-states the surface's sharpness after short training); identity if absent
        conf = meta.get("confidence", {})
        self.sigma_scale, self.sigma_floor_m = conf.get("sigma_scale", 1.0), conf.get("sigma_floor_m", 0.0)
        self.occlusion_gain_m = conf.get("occlusion_gain_m", 0.0)  # files fitted before it: no such term
        self.confidence_by_views = confidence_params_by_views(meta.get("confidence_by_views", {}))
        self.backend = make_backend(backend, self.model, onnx_dir, threads or 0, weights_sha, engine_cache_dir,
                                    precision, force_rebuild)
        self.steps, self.samples, self.seed, self.guidance = steps, samples, seed, guidance
        cal = meta.get("calibration", {}).get("sampler")
        if cal and self.model.cfg.mode == "flow" and (cal["steps"], cal["samples"]) != (steps, samples):
            # fewer samples or other steps change how sharp the mean occupancy is: the level and the
            # confidence fitted for one sampler are off for another
            logging.getLogger("amodalgen3d.model").warning(
                f"{Path(weights).name} was calibrated for {cal['steps']} steps x {cal['samples']} samples, runs at "
                f"{steps} x {samples}: surface level and confidence may be off (amodalgen3d calibrate --steps "
                f"{steps} --samples {samples} on a copy)")
        # the generator's own samples as meshes too (each its own plausible completion), at most K
        self.hypotheses = min(hypotheses, samples) if self.model.cfg.mode == "flow" else 0
        if fine_res <= 0 or fine_res % self.model.cfg.res:
            # the network's grid is refined by an integer factor (voxel centres aligned)
            raise ValueError(f"fine_res {fine_res} is not a positive multiple of the network's grid, {self.model.cfg.res}")
        self.fine_res = fine_res
        self.threads = threads
        # the local decoder (local_decoder.py): the fine field near the surface, read off the coarse
        # one and the fine observation; its level and confidence are fitted with it, per network
        self.decoder = None
        if decoder:
            dpath = Path(decoder_weights or DECODER_WEIGHTS)
            self.decoder = load_decoder(dpath)
            if self.decoder.cfg.fine_res != fine_res:
                raise ValueError(f"the local decoder was trained on a {self.decoder.cfg.fine_res}^3 grid, "
                                 f"not fine_res {fine_res}")
            # the level and confidence of this network followed by the decoder, calibrated together
            # (`calibrate WEIGHTS --decoder`) and kept in the decoder's file per network
            cal = weights_meta(dpath).get("calibration_by_network", {}).get(weights_sha)
            if cal is None and level is None:  # (a caller that sets the level is calibrating)
                logging.getLogger("amodalgen3d.model").warning(
                    f"{dpath.name} holds no calibration with {Path(weights).name}: surface at its ramp's 0.5, "
                    f"confidence as fitted without the decoder (amodalgen3d calibrate {weights} --decoder {dpath})")
            cal = cal or {}
            if level is None:
                self.level = cal.get("level", 0.5)
                self.level_by_views = {int(n): float(lv) for n, lv in cal.get("level_by_views", {}).items()}
                self.hidden_offset_by_views = {int(n): float(d) for n, d in cal.get("hidden_offset_by_views", {}).items()}
            if "confidence" in cal:
                c = cal["confidence"]
                self.sigma_scale, self.sigma_floor_m, self.occlusion_gain_m = (
                    c["sigma_scale"], c["sigma_floor_m"], c["occlusion_gain_m"])
                self.confidence_by_views = confidence_params_by_views(cal.get("confidence_by_views", {}))
        self._calls = threading.local()  # per calling thread: the reconstruction process runs several at once
        self.fcfg = FeatureConfig(res=self.model.cfg.res, crop=self.model.cfg.crop, max_views=self.model.cfg.max_views,
                                  amodal_prior=self.model.cfg.amodal_prior)

    @property
    def stage_seconds(self) -> dict[str, float]:
        """The split of this thread's last call (__call__): network and surface seconds."""
        return getattr(self._calls, "stage_seconds", {})

    @stage_seconds.setter
    def stage_seconds(self, value: dict[str, float]) -> None:
        self._calls.stage_seconds = value

    def level_for(self, n_views: int) -> float:
        """The surface level for a field from n views: that of the largest calibrated view count
        not above n (with fits at 4 and 6, 5 views take 4's), else the pooled one. With the local decoder, its own
        calibration's (0.5, the ramp's crossing, if it has none)."""
        return for_view_count(self.level_by_views, n_views, self.level)

    def hidden_offset_for(self, n_views: int) -> float:
        """How much lower than level_for the surface is drawn in hidden space (hidden_space), for a
        field from n views, as calibrated (0 for files calibrated before it)."""
        return for_view_count(self.hidden_offset_by_views, n_views, 0.0)

    def confidence_params(self, n_views: int) -> tuple[float, float, float]:
        """(scale, floor, occlusion gain) of the confidence for a field from n views, chosen as
        level_for chooses the level."""
        return for_view_count(self.confidence_by_views, n_views,
                              (self.sigma_scale, self.sigma_floor_m, self.occlusion_gain_m))

    def occupancy_samples(self, mi: ModelInputs) -> tuple[np.ndarray, np.ndarray]:
        """Mean occupancy probability (R, R, R) and each sample's own (K, R, R, R) (the
        reference: its one prediction, K = 1)."""
        if self.threads:
            torch.set_num_threads(self.threads)
        geo, views, tau, valid = to_batch(mi)
        with torch.inference_mode():
            if self.model.cfg.mode == "flow":
                z = sample(self.backend, geo, views, tau, valid, self.steps, self.samples, self.seed, self.guidance,
                           per_call=SAMPLES_PER_CALL)
                # numpy, not torch: a torch op here wakes its idle thread pool (tens of ms on 2 cores)
                if self.model.cfg.predict == "x0":
                    # each sample ends on its predicted clean shape, a soft occupancy: kept soft
                    # (better than thresholded), and the last step's alone (better than averaging
                    # in the first step's estimates; the model card has both comparisons)
                    occ = np.clip((z.numpy() + 1) * 0.5, 0, 1)
                    return occ.mean(0), occ
                occ = (z.numpy() > 0).astype(np.float32)
                return occ.mean(0), occ
            p = torch.sigmoid(self.model(torch.zeros(1, 1, *geo.shape[2:]), torch.zeros(1), geo, views, tau, valid))[0]
            return p[0].numpy(), p.numpy()

    def field(self, obs) -> dict:
        """The fine occupancy field in the cube (before the surface level is applied)."""
        t0 = time.perf_counter()
        mi = model_inputs(obs, self.fcfg, prior=self.prior)
        prob, each = self.occupancy_samples(mi)  # confidence is read from prob's slope (surface_sigma)
        self.stage_seconds = {"network": time.perf_counter() - t0}  # the prior, the inputs and the networks
        R, Rf = prob.shape[0], self.fine_res
        f = Rf / R
        grid = mi.grid(Rf)
        cobs = in_frame(obs, mi.T_out_cube)
        ev = ray_evidence(cobs, grid, trunc_m=2 * grid.voxel_m)
        band = ~np.isnan(ev.tsdf)
        use_hull = self.hull_residual and "support_hull" in GEO_CHANNELS
        hull_fine = None
        if use_hull:
            hull_fine = hull_field(cobs, grid)
            hull_coarse = upsample_linear(mi.geo[GEO_CHANNELS.index("support_hull")], f)

        def complete(p: np.ndarray) -> np.ndarray:
            # coarse -> fine by trilinear interpolation of the probability (voxel centres aligned)
            fine = upsample_linear(p, f)
            if use_hull:
                # The network sees the hull on its coarse grid and predicts where to depart from it;
                # apply that departure to the exact hull on the fine grid, so where the network keeps
                # the hull its faces stay exact (a 32^3 voxel is ~1 cm), and concavities, handles and
                # hidden extents still come from the network.
                fine = np.clip(hull_fine + (fine - hull_coarse), 0.0, 1.0)
            fine[(ev.free > 0) & ~band] = 0.0  # seen empty
            fine[ev.below_plane] = 0.0
            return fine

        out = {"field": complete(prob), "tsdf": ev.tsdf, "band": band, "grid": grid, "mi": mi, "evidence": ev,
               "hull": hull_fine, "hypotheses": [complete(p) for p in each[: self.hypotheses]],
               "n_views": len(obs.used_views()), "visible_fraction": obs.fused.visible_fraction}
        if self.decoder is not None:
            # the confidence reads both: the samples' mean (did they agree?) and the decoder's ramp
            # (is it sure where, between them, the surface lies?; mesh_and_sigma)
            out["coarse_field"] = out["field"]
            out["field"] = decode(self.decoder, out["field"], hull_fine, ev)
            out["hypotheses"] = [decode(self.decoder, h, hull_fine, ev) for h in out["hypotheses"]]
        return out

    def mesh(self, fd: dict, level: float, hidden_offset: float | None = None):
        """Closed mesh (output frame) and per-vertex confidence at a surface level (lower by
        hidden_offset in hidden space; None: as calibrated for the field's view count)."""
        mesh, sigma, measured = self.mesh_and_sigma(fd, level, hidden_offset)
        scale, floor_m, gain_m = self.confidence_params(fd["n_views"])
        conf = confidence_from_sigma(sigma, scale, floor_m, occlusion_gain_m=gain_m,
                                     visible_fraction=fd["visible_fraction"])
        conf = np.where(measured, 1.0, conf)  # measured surface
        return mesh, np.clip(conf, 0, 1).astype(np.float32)

    def mesh_and_sigma(self, fd: dict, level: float, hidden_offset: float | None = None):
        """Closed mesh (output frame), each vertex's surface std (metres) and whether it lies on
        measured surface: the slopes' spreads of mesh_and_sigmas added in quadrature.

        After the local decoder there are two: the samples' mean field's (how much the samples
        agreed) and the decoded field's (the decoder, trained with BCE on a two-voxel ramp,
        flattens its ramp where it is unsure where the surface lies). The first alone ranked the
        inferred vertices' errors less well than both, since the decoder moves the surface away from
        where the samples agreed.
        """
        mesh, sigmas, measured = self.mesh_and_sigmas(fd, level, hidden_offset)
        return mesh, np.sqrt(sum(s ** 2 for s in sigmas)), measured

    def mesh_and_sigmas(self, fd: dict, level: float, hidden_offset: float | None = None):
        """Closed mesh (output frame), per vertex the surface std read from each field's slope
        (surface_sigma, metres): the meshed field's, then, after the local decoder, the samples'
        mean's; and whether the vertex lies on measured surface."""
        field, band, grid = fd["field"].copy(), fd["band"], fd["grid"]
        if hidden_offset is None:
            hidden_offset = self.hidden_offset_for(fd["n_views"])
        if hidden_offset:
            field = lower_level_in_hidden_space(field, fd["evidence"], band, hidden_offset)
        measured_field = np.clip(level - 0.5 * fd["tsdf"][band], 0, 1)
        field[band] = measured_field  # seen surface: the measurement wins
        field = drop_specks_and_voids(field, level)
        slope_fields = [field]
        if "coarse_field" in fd:  # after the local decoder: the samples' mean's slope too
            coarse = fd["coarse_field"].copy()
            coarse[band] = measured_field
            slope_fields.append(coarse)
        try:
            mesh = mesh_from_field(field, grid, level, smooth_iters=5)
        except ValueError:  # the network saw nothing: fall back to the observation alone
            mesh = mesh_from_field(np.where(band, field, 0.0), grid, level)
        ijk, _ = grid.index_of(mesh.vertices)
        ijk = np.clip(ijk, 0, grid.shape[0] - 1)
        sigmas = [surface_sigma(f, grid, mesh.vertices) for f in slope_fields]
        measured = band[ijk[:, 0], ijk[:, 1], ijk[:, 2]]
        mesh.vertices = transform(fd["mi"].T_out_cube, mesh.vertices)
        return mesh, sigmas, measured

    def __call__(self, obs):
        """(mesh, per-vertex confidence), and with hypotheses > 0 also the first K samples' meshes
        (each through the same agreement with what was seen, confidence not read for them).
        ``stage_seconds`` then holds the call's split: network (with the prior and the inputs) and
        surface (agreement with the views, local decoder, meshing, confidence)."""
        t0 = time.perf_counter()
        fd = self.field(obs)
        level = self.level_for(fd["n_views"])
        mesh, conf = self.mesh(fd, level)
        out = (mesh, conf) if not self.hypotheses else (
            mesh, conf, [self.mesh({**fd, "field": h}, level)[0] for h in fd["hypotheses"]])
        self.stage_seconds["surface"] = time.perf_counter() - t0 - self.stage_seconds["network"]
        return out


def surface_sigma(field: np.ndarray, grid, vertices: np.ndarray) -> np.ndarray:
    """Per vertex, the std (metres) of the surface's offset along its normal, read from how sharply
    the mean occupancy over the samples crosses the level there.

    Samples that agree on where the surface is average to a step; where they disagree (or each is
    unsure), to a ramp. If the surface's offset along the normal is normal with std sigma, the
    mean occupancy is its CDF, whose slope at the surface is 1 / (sigma sqrt(2 pi)); so sigma =
    1 / (sqrt(2 pi) |grad p|). It ranks the inferred vertices' errors where the samples'
    per-voxel spread does not; the reference's probability, read the same way, ranks its own as
    well, so it serves both.
    """
    idx = ((vertices - grid.origin) / grid.voxel_m - 0.5).T  # voxel centres at (i + 0.5) * voxel
    grad = np.gradient(field.astype(np.float32), grid.voxel_m)  # per metre
    slope = np.sqrt(sum(ndimage.map_coordinates(g, idx, order=1, mode="nearest") ** 2 for g in grad))
    return 1.0 / (np.sqrt(2 * np.pi) * np.maximum(slope, 1e-6))


def lower_level_in_hidden_space(field: np.ndarray, ev, band: np.ndarray, offset: float) -> np.ndarray:
    """The field whose surface at a level lies at level - offset in hidden space: the occupancy
    raised there by offset (cleared space, probability 0, stays empty)."""
    return np.clip(field + offset * hidden_space(ev, band) * (field > 0), 0.0, 1.0)


def hidden_space(ev, band: np.ndarray) -> np.ndarray:
    """Where no ray saw: not seen empty, not in the measured surface's band, not below the support
    plane; blurred over a voxel's neighbours so the level does not step at the boundary.

    With several views the generator's mean occupancy there is lower than the reference's, its
    samples agreeing, so one level for all space cut its hidden side short; `calibrate` fits how
    much lower the level lies here, per view count."""
    hidden = (ev.free == 0) & ~band & ~ev.below_plane
    return ndimage.uniform_filter(hidden.astype(np.float32), 3)


def for_view_count(by_views: dict, n_views: int, pooled):
    """What was calibrated for the largest view count not above n_views, else the pooled value."""
    counts = [n for n in by_views if n <= n_views]
    return by_views[max(counts)] if counts else pooled


def confidence_params_by_views(fits: dict) -> dict[int, tuple[float, float, float]]:
    """{view count: (scale, floor, occlusion gain)} from a calibration's confidence_by_views
    (files calibrated before it have none: the pooled fit serves every count)."""
    return {int(n): (c["sigma_scale"], c["sigma_floor_m"], c["occlusion_gain_m"]) for n, c in fits.items()}


def confidence_from_sigma(sigma: np.ndarray, scale: float = 1.0, floor_m: float = 0.0,
                          tol_m: float = 0.005, occlusion_gain_m: float = 0.0,
                          visible_fraction: float | np.ndarray = 1.0) -> np.ndarray:
    """P(|offset| <= tol) = erf(tol / (s sqrt 2)) for an offset with std
    s = sqrt((scale sigma)^2 + floor^2 + (occlusion_gain (1 - visible_fraction))^2): scale, floor
    and gain are fitted on validation scenes (tools/calibrate.py). The floor stands for the error no
    slope shows (the grid, the smoothing, a confidently wrong network); the occlusion term for the
    part of it that grows as less of the object was seen (the samples agree on a guess as readily
    as on a measurement: fitted on the slope alone, mostly hidden objects were over-stated)."""
    hidden = occlusion_gain_m * (1.0 - np.clip(visible_fraction, 0.0, 1.0))
    s = np.sqrt((scale * sigma) ** 2 + floor_m ** 2 + hidden ** 2)
    return erf(tol_m / (np.maximum(s, 1e-9) * np.sqrt(2)))


def upsample_linear(x: np.ndarray, factor: float) -> np.ndarray:
    """ndimage.zoom(x, factor, order=1, mode="nearest", grid_mode=True), written out for the
    factor 2 (each fine centre is 3:1 between its two nearest coarse ones): half the time."""
    if factor != 2:
        return ndimage.zoom(x, factor, order=1, mode="nearest", grid_mode=True)
    for a in range(x.ndim):
        x = np.moveaxis(x, a, 0)
        out = np.empty((2 * x.shape[0], *x.shape[1:]), x.dtype)
        out[0::2] = 0.75 * x + 0.25 * np.concatenate([x[:1], x[:-1]])
        out[1::2] = 0.75 * x + 0.25 * np.concatenate([x[1:], x[-1:]])
        x = np.moveaxis(out, 0, a)
    return x


def hull_field(obs, grid) -> np.ndarray:
    """(R, R, R) float in [0, 1]: 0.5 exactly on the support-plane hull's faces, a one-voxel ramp
    across them (signed distance to the hull's planes), so marching cubes puts faces where they are."""
    try:
        # merge facets within half a millimetre: a noisy cloud's hull has thousands of tiny facets
        # (a voxels x facets product of gigabytes); merged ones repeat a plane, kept once
        hull = ConvexHull(support_points(obs), qhull_options="Qt C-0.0005")
    except QhullError:
        return np.zeros(grid.shape, np.float32)
    eq = np.unique(np.round(hull.equations, 6), axis=0)
    # voxels over half a voxel outside the hull's bounding box are 0: skip them (same result)
    hp = hull.points[hull.vertices]
    sl = grid.box_slices(hp.min(0) - grid.voxel_m, hp.max(0) + grid.voxel_m)
    out = np.zeros(grid.shape, np.float32)
    # float32 about the box centre: sub-micrometre error on a 0.5 voxel ramp, half the time of float64
    o = (hp.min(0) + hp.max(0)) / 2
    x, y, z = ((np.arange(n)[s_] + 0.5) * grid.voxel_m + g0 - oc for n, g0, s_, oc in zip(grid.shape, grid.origin, sl, o))
    eq_o = np.c_[eq[:, :3], eq[:, 3] + eq[:, :3] @ o]
    # per column, the z-intervals of "half a voxel inside" (value 1) and "within half a voxel" (not
    # 0): only the voxels between them, a shell around the surface, need the distance to the facets
    lo_in, hi_in = hull_columns(eq_o, x, y, -0.5 * grid.voxel_m)
    lo_out, hi_out = hull_columns(eq_o, x, y, 0.5 * grid.voxel_m)
    zz = z[None, None, :]
    box = out[sl]
    box[(zz >= lo_in[..., None]) & (zz <= hi_in[..., None])] = 1.0
    shell = (zz >= lo_out[..., None]) & (zz <= hi_out[..., None]) & (box == 0)
    ii, jj, kk = np.nonzero(shell)
    c = np.stack([x[ii], y[jj], z[kk]], 1).astype(np.float32)
    n, d = eq_o[:, :3].astype(np.float32), eq_o[:, 3].astype(np.float32)
    sd = np.empty(len(c), np.float32)
    for k in range(0, len(c), 65536):  # bounded memory
        sd[k:k + 65536] = (c[k:k + 65536] @ n.T + d).max(1)  # > 0 outside
    box[ii, jj, kk] = np.clip(0.5 - sd / grid.voxel_m, 0.0, 1.0)
    return out


_CACHE: dict[str, LearnedMethod] = {}


def decoder_by_default(weights: str | Path, fine_res: int = 64) -> int:
    """1 if the shipped local decoder holds a calibration with these weights on this grid (so the
    shipped networks run with it, ablation runs' weights without it unless asked), else 0."""
    if not Path(weights).is_file():  # (loading them says so, clearly)
        return 0
    if not DECODER_WEIGHTS.is_file() or decoder_fine_res(DECODER_WEIGHTS) != fine_res:
        return 0
    return int(file_sha256(weights) in weights_meta(DECODER_WEIGHTS).get("calibration_by_network", {}))


def learned_method(name: str, weights: str | Path | None = None, **kw) -> LearnedMethod:
    """A learned method, loaded once per (name, weights, options); with the local decoder where it
    was calibrated with those weights (decoder_by_default), unless the options say. Called per
    reconstruction (reconstruct.resolve_method): the cache is looked up first, so the default is
    worked out (a hash of the weights) once."""
    path = Path(weights) if weights else DEFAULT_WEIGHTS[name]
    key = json.dumps([name, str(path), sorted(kw.items())])
    if key not in _CACHE:
        if "decoder" not in kw:
            kw["decoder"] = decoder_by_default(path, kw.get("fine_res", 64))
        _CACHE[key] = LearnedMethod(path, **kw)
    return _CACHE[key]


def shipped_methods() -> list[str]:
    """The learned methods whose shipped weights exist (learned_method loads one)."""
    return [name for name, path in DEFAULT_WEIGHTS.items() if path.is_file()]

