"""The networks: shapes, initialisation, loss falling on a toy set, seeded sampling, weights I/O."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amodalgen3d_ros import learned as L
from amodalgen3d_ros import model as M
from amodalgen3d_ros import weights_io as W
from amodalgen3d_ros.backends import TorchBackend
from amodalgen3d_ros.geometry import invert, transform

SMALL = M.ModelConfig(width=32, depth=1, heads=2, res=16, patch=4, crop=16, max_views=2)


def toy_batch(B=4, cfg=SMALL, seed=0):
    g = torch.Generator().manual_seed(seed)
    R = cfg.res
    occ = torch.zeros(B, 1, R, R, R)
    occ[:, :, 4:12, 4:12, 2:10] = 1  # a box
    geo = torch.zeros(B, cfg.geo_channels, R, R, R)
    geo[:, 0] = occ[:, 0] * (torch.rand(B, R, R, R, generator=g) < 0.3)  # some visible surface
    views = torch.rand(B, cfg.max_views, cfg.img_channels, cfg.crop, cfg.crop, generator=g)
    return occ, geo, views, torch.tensor([[0.9, 0.3]] * B), torch.ones(B, cfg.max_views, dtype=torch.bool)


def test_forward_shapes_and_identity_start():
    m = M.AmodalGen3D(SMALL)
    occ, geo, views, tau, valid = toy_batch()
    out = m(occ * 2 - 1, torch.rand(4), geo, views, tau, valid)
    assert out.shape == occ.shape
    assert torch.count_nonzero(out) == 0  # zero-initialised final layer (DiT)


def test_view_wise_fusion_weights_follow_visibility():
    vwca = M.ViewWiseCrossAttention(8, 2)
    torch.nn.init.normal_(vwca.attn.proj.weight)
    x = torch.randn(1, 5, 8)
    img = torch.randn(1, 2, 3, 8)
    only0 = vwca(x, img, torch.tensor([[1.0, 0.0]]), torch.tensor([[True, True]]))
    single = vwca(x, img[:, :1], torch.tensor([[1.0]]), torch.tensor([[True]]))
    # tau = 0 gets the floor weight only; an invalid view gets none
    masked = vwca(x, img, torch.tensor([[1.0, 1.0]]), torch.tensor([[True, False]]))
    torch.testing.assert_close(masked, single)
    assert torch.allclose(only0, single, atol=0.2)


def test_gate_closed_key_is_ignored():
    """log g on the logits: keys whose gate is closed drop out of the attention."""
    torch.manual_seed(0)
    sc = M.StereoConditionedCrossAttention(8, 2)
    torch.nn.init.normal_(sc.attn.proj.weight)
    x, geo = torch.randn(1, 4, 8), torch.randn(1, 3, 8)

    class Gate(torch.nn.Module):  # open for key 0, closed for keys 1 and 2, every head
        def forward(self, g):
            return torch.tensor([50.0, -50.0, -50.0])[None, :, None].expand(g.shape[0], 3, 2)
    sc.gate = Gate()
    torch.testing.assert_close(sc(x, geo), sc.attn(x, geo[:, :1]), atol=1e-5, rtol=1e-5)
    sc.use_gate = False  # without the gate all keys count
    assert not torch.allclose(sc(x, geo), sc.attn(x, geo[:, :1]), atol=1e-3)


def _trained_looking(cfg, seed=0):
    """A small model with every weight random, zero-initialised gates and final layer included, so
    each path the ablation switches cut really reaches the output."""
    torch.manual_seed(seed)
    m = M.AmodalGen3D(cfg)
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return m.eval()


def test_ablation_switches_remove_what_they_name():
    """The ablations (scripts/ablations.sh) are only findings if each switch cuts its module out."""
    from dataclasses import replace

    occ, geo, views, tau, valid = toy_batch(B=1)
    z, t = occ * 2 - 1, torch.tensor([0.5])
    other_views, other_tau = torch.rand_like(views), torch.tensor([[0.2, 0.8]])

    def out(m, v=views, ta=tau):
        with torch.no_grad():
            return m(z, t, geo, v, ta, valid)

    full = _trained_looking(SMALL)
    assert not torch.allclose(out(full), out(full, v=other_views), atol=1e-4)  # the views count
    assert not torch.allclose(out(full), out(full, ta=other_tau), atol=1e-4)  # their visibility too
    # without View-Wise Cross Attention the image tokens never reach the output
    no_vwca = _trained_looking(replace(SMALL, use_vwca=False))
    torch.testing.assert_close(out(no_vwca), out(no_vwca, v=other_views, ta=other_tau))
    # views averaged: the visibility ratios no longer weigh them, the views still count
    mean = _trained_looking(replace(SMALL, view_fusion="mean"))
    torch.testing.assert_close(out(mean), out(mean, ta=other_tau))
    assert not torch.allclose(out(mean), out(mean, v=other_views), atol=1e-4)
    # without SCCA the geometry enters only with the noisy shape's patches: no SCCA weight is used
    no_scca = _trained_looking(replace(SMALL, use_scca=False))
    no_scca(z, t, geo, views, tau, valid).sum().backward()
    assert all(p.grad is None for b in no_scca.blocks for p in b.scca.parameters())
    # SCCA without its gate: the gate's weights are unused, SCCA's attention still used
    no_gate = _trained_looking(replace(SMALL, use_gate=False))
    no_gate(z, t, geo, views, tau, valid).sum().backward()
    b = no_gate.blocks[0]
    assert all(p.grad is None for p in b.scca.gate.parameters())
    assert b.scca.attn.kv.weight.grad is not None and b.scca.attn.kv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode, predict", [("flow", "velocity"), ("flow", "x0"), ("regress", "velocity")])
def test_loss_falls_on_a_toy_set(mode, predict):
    torch.manual_seed(0)
    cfg = M.ModelConfig(**{**SMALL.__dict__, "mode": mode, "predict": predict})
    m = M.AmodalGen3D(cfg)
    opt = torch.optim.AdamW(m.parameters(), 3e-3)
    loss_fn = M.flow_matching_loss if mode == "flow" else M.regression_loss
    batch = toy_batch()
    losses = []
    for _ in range(60):
        loss = loss_fn(m, *batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])


def test_x0_prediction_is_a_velocity_whose_last_step_lands_on_x0():
    """predict="x0": forward() returns (z_t - x0) / t, so the sampler and the exported graphs are
    unchanged, and the final Euler step (t -> 0) gives the predicted clean shape itself."""
    torch.manual_seed(0)
    m = M.AmodalGen3D(M.ModelConfig(**{**SMALL.__dict__, "predict": "x0"})).eval()
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)
    _, geo, views, tau, valid = toy_batch(2)
    z, t = torch.randn(2, 1, 16, 16, 16), torch.tensor([0.25, 0.7])
    with torch.no_grad():
        logits = m.predict_raw(z, t, geo, views, tau, valid)
        v = m(z, t, geo, views, tau, valid)
    x0 = 2 * torch.sigmoid(logits) - 1
    torch.testing.assert_close(z - t[:, None, None, None, None] * v, x0, atol=1e-5, rtol=1e-5)
    # the sampler's output is a soft occupancy in [-1, 1], not noise-scaled values
    zs = M.sample(TorchBackend(m), geo[:1], views[:1], tau[:1], valid[:1], steps=4, samples=3)
    assert zs.abs().max() <= 1 and zs.abs().max() > 0.01


def test_surface_confidence_reads_the_ramp_width():
    """A mean occupancy that is a normal CDF across a plane, with std sigma, gives every vertex on
    the plane P(|offset| <= 5 mm) = erf(5 mm / (sigma sqrt 2)): sharp steps near 1, wide ramps low."""
    from scipy.special import erf
    from scipy.stats import norm

    from amodalgen3d_ros.surface import Grid

    grid = Grid(origin=np.zeros(3), voxel_m=0.002, shape=(64, 64, 64))
    x = (np.arange(64) + 0.5) * 0.002
    verts = np.array([[0.064, 0.03, 0.03], [0.064, 0.05, 0.02]])
    got = []
    for sigma in (0.006, 0.015):  # ramps a few voxels wide (a narrower one is blurred by the grid)
        field = np.broadcast_to(norm.cdf((0.064 - x) / sigma)[:, None, None], (64, 64, 64)).copy()
        conf = L.confidence_from_sigma(L.surface_sigma(field, grid, verts))
        np.testing.assert_allclose(conf, erf(0.005 / (sigma * np.sqrt(2))), rtol=0.03)
        got.append(conf[0])
    assert got[0] > got[1] + 0.2


def test_confidence_fit_recovers_a_known_miscalibration():
    """Vertices whose true offsets are normal with twice the std the slope says, plus a 2 mm
    floor: the fit finds scale and floor near those, and its confidence is calibrated where the
    slope's was not."""
    from amodalgen3d_ros.tools.calibrate import fit_confidence

    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.001, 0.012, 20000)
    offset = rng.normal(size=sigma.shape) * np.sqrt((2 * sigma) ** 2 + 0.002 ** 2)
    fit = fit_confidence(sigma, np.abs(offset) <= 0.005)
    assert 1.7 < fit["sigma_scale"] < 2.3 and fit["sigma_floor_m"] <= 0.004
    assert fit["ece_after"] < 0.02 < 0.1 < fit["ece_before"]


def test_confidence_fit_finds_the_error_that_grows_with_occlusion():
    """Offsets whose std has, beside twice the slope's, a part proportional to the hidden share of
    the object (1 cm when nothing is visible): the fit finds that gain, and the confidence is
    calibrated on mostly hidden objects, where a fit without the term over-states it."""
    from amodalgen3d_ros.tools.calibrate import fit_confidence
    from amodalgen3d_ros.tools.metrics import expected_calibration_error

    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.001, 0.012, 40000)
    visible = rng.choice([0.1, 0.5, 1.0], sigma.shape)
    hit = np.abs(rng.normal(size=sigma.shape) * np.sqrt((2 * sigma) ** 2 + (0.01 * (1 - visible)) ** 2)) <= 0.005
    fit = fit_confidence(sigma, hit, visible)
    assert 0.008 <= fit["occlusion_gain_m"] <= 0.012 and 1.7 < fit["sigma_scale"] < 2.3
    without = fit_confidence(sigma, hit, visible, gains=(0.0,))
    hidden = visible == 0.1

    def ece(f: dict) -> float:
        c = L.confidence_from_sigma(sigma[hidden], f["sigma_scale"], f["sigma_floor_m"], 0.005,
                                    f["occlusion_gain_m"], visible[hidden])
        return expected_calibration_error(c, hit[hidden])
    assert ece(fit) < 0.02 < 0.05 < ece(without)


def test_calibrated_confidence_travels_in_the_weights(tmp_path):
    conf = {"sigma_scale": 2.0, "sigma_floor_m": 0.003, "occlusion_gain_m": 0.01}
    M.save_weights(M.AmodalGen3D(SMALL), tmp_path / "w.safetensors", {"confidence": conf})
    m = L.LearnedMethod(tmp_path / "w.safetensors")
    assert (m.sigma_scale, m.sigma_floor_m, m.occlusion_gain_m) == (2.0, 0.003, 0.01)
    sigma = np.array([0.001, 0.004])
    want = L.confidence_from_sigma(np.sqrt((2 * sigma) ** 2 + 0.003 ** 2 + (0.01 * 0.75) ** 2))
    np.testing.assert_allclose(L.confidence_from_sigma(sigma, 2.0, 0.003, 0.005, 0.01, 0.25), want)
    M.save_weights(M.AmodalGen3D(SMALL), tmp_path / "v.safetensors")
    plain = L.LearnedMethod(tmp_path / "v.safetensors")  # fitted before the term, or never: none
    assert (plain.sigma_scale, plain.sigma_floor_m, plain.occlusion_gain_m) == (1.0, 0.0, 0.0)


def test_confidence_per_view_count_is_picked_like_the_level(tmp_path):
    """A fit per calibrated view count serves counts from it up to the next; below the smallest,
    and in files calibrated before per-count fits, the pooled fit."""
    pooled = {"sigma_scale": 2.0, "sigma_floor_m": 0.003, "occlusion_gain_m": 0.01}
    by_views = {"2": {"sigma_scale": 1.0, "sigma_floor_m": 0.001, "occlusion_gain_m": 0.0},
                "4": {"sigma_scale": 0.5, "sigma_floor_m": 0.002, "occlusion_gain_m": 0.02}}
    M.save_weights(M.AmodalGen3D(SMALL), tmp_path / "w.safetensors", {"confidence": pooled, "confidence_by_views": by_views})
    m = L.LearnedMethod(tmp_path / "w.safetensors")
    assert m.confidence_params(1) == (2.0, 0.003, 0.01)
    assert m.confidence_params(2) == m.confidence_params(3) == (1.0, 0.001, 0.0)
    assert m.confidence_params(8) == (0.5, 0.002, 0.02)
    M.save_weights(M.AmodalGen3D(SMALL), tmp_path / "v.safetensors", {"confidence": pooled})
    assert L.LearnedMethod(tmp_path / "v.safetensors").confidence_params(4) == (2.0, 0.003, 0.01)


def test_old_weights_without_predict_load_as_velocity(tmp_path):
    """Weights saved before the predict field existed still load, as velocity predictors."""
    import json

    from safetensors.torch import save_file

    m = M.AmodalGen3D(SMALL)
    cfg = {k: v for k, v in SMALL.__dict__.items() if k != "predict"}
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(tmp_path / "old.safetensors"),
              metadata={"config": json.dumps(cfg), "meta": "{}"})
    assert M.load_weights(tmp_path / "old.safetensors").cfg.predict == "velocity"


def test_seeded_sampling_reproduces():
    m = M.AmodalGen3D(SMALL).eval()
    _, geo, views, tau, valid = toy_batch(1)
    a = M.sample(TorchBackend(m), geo, views, tau, valid, steps=3, samples=2, seed=5)
    b = M.sample(TorchBackend(m), geo, views, tau, valid, steps=3, samples=2, seed=5)
    c = M.sample(TorchBackend(m), geo, views, tau, valid, steps=3, samples=2, seed=6)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)


def test_weights_round_trip_and_bad_files(tmp_path):
    m = M.AmodalGen3D(SMALL)
    M.save_weights(m, tmp_path / "w.safetensors", {"steps": 1})
    m2 = M.load_weights(tmp_path / "w.safetensors")
    assert m2.cfg == SMALL
    for k, v in m.state_dict().items():
        torch.testing.assert_close(v, m2.state_dict()[k])
    with pytest.raises(W.WeightsError, match="not found"):
        M.load_weights(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(W.WeightsError, match="corrupt"):
        M.load_weights(tmp_path / "bad.safetensors")


@pytest.mark.parametrize("predict", ["velocity", "x0"])
def test_learned_method_gives_a_closed_mesh(tmp_path, scene0, predict):
    from amodalgen3d_ros.features import model_inputs
    from amodalgen3d_ros.observation import observe

    cfg = M.ModelConfig(width=32, depth=1, heads=2, predict=predict)
    torch.manual_seed(0)
    net = M.AmodalGen3D(cfg)
    torch.nn.init.normal_(net.final.weight, std=0.05)  # an untrained but not all-zero output
    M.save_weights(net, tmp_path / "w.safetensors")
    method = L.LearnedMethod(tmp_path / "w.safetensors", steps=2, samples=2)
    obs = observe(scene0.views[:2], scene0.target_id)
    mesh, conf = method(obs)
    assert mesh.is_watertight and mesh.volume > 0 and len(conf) == len(mesh.vertices)
    assert np.linalg.norm(mesh.centroid - scene0.target_mesh.centroid) < 0.1
    prob, _ = method.occupancy_samples(model_inputs(obs, method.fcfg, prior=method.prior))
    levels = np.unique(prob)
    if predict == "x0":  # soft: the samples' predicted clean shapes are averaged, not thresholded
        assert len(levels) > 3
    else:  # the fraction of 2 thresholded samples
        assert set(levels.tolist()) <= {0.0, 0.5, 1.0}
    # the surface is drawn at the level of the view count used (2 here)
    method.level_by_views = {1: 0.2, 2: 0.6}
    mesh, _ = method(obs)
    fd = method.field(obs)
    np.testing.assert_allclose(mesh.vertices, method.mesh(fd, 0.6)[0].vertices)
    # and lower by the calibrated offset where no ray saw: the occupancy raised there, only there
    from scipy import ndimage

    ev = fd["evidence"]
    hidden = L.hidden_space(ev, fd["band"])
    observed = (ev.free > 0) | fd["band"] | ev.below_plane
    assert hidden.max() == 1.0 and np.all(hidden[~ndimage.binary_dilation(~observed, np.ones((3, 3, 3)))] == 0)
    raised = L.lower_level_in_hidden_space(fd["field"], ev, fd["band"], 0.3)
    assert np.all(raised >= fd["field"]) and np.all(raised[fd["field"] == 0] == 0) and (raised > fd["field"]).any()
    np.testing.assert_array_equal(raised[hidden == 0], fd["field"][hidden == 0])
    method.hidden_offset_by_views = {2: 0.3}
    grown, _ = method(obs)
    np.testing.assert_allclose(grown.vertices, method.mesh(fd, 0.6, 0.3)[0].vertices)
    assert grown.volume > method.mesh(fd, 0.6, 0.0)[0].volume
    method.hidden_offset_by_views = {}
    # the confidence reads how much of the object the views saw: less seen, less confident
    method.occlusion_gain_m = 0.02
    assert fd["visible_fraction"] == obs.fused.visible_fraction
    inferred = method.mesh(fd, 0.6)[1] < 1.0
    seen = method.mesh({**fd, "visible_fraction": 1.0}, 0.6)[1]
    hidden = method.mesh({**fd, "visible_fraction": 0.1}, 0.6)[1]
    assert inferred.any() and np.all(hidden[inferred] < seen[inferred])


def test_fine_grid_is_an_integer_refinement_of_the_networks(tmp_path, scene0):
    from amodalgen3d_ros.observation import observe

    M.save_weights(M.AmodalGen3D(SMALL), tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="multiple"):
        L.LearnedMethod(tmp_path / "w.safetensors", fine_res=40)
    from amodalgen3d_ros.reconstruct import resolve_method
    from amodalgen3d_ros.views import ViewsFormatError

    with pytest.raises(ViewsFormatError, match="multiple"):  # a bad method option is the caller's error
        resolve_method("amodalgen3d?fine_res=40")
    method = L.LearnedMethod(tmp_path / "w.safetensors", steps=1, samples=1, fine_res=3 * SMALL.res)
    assert method.field(observe(scene0.views[:1], scene0.target_id))["field"].shape == (3 * SMALL.res,) * 3


def test_local_decoder_decides_the_open_voxels_at_level_half(tmp_path, scene0):
    """With the local decoder the surface is at 0.5 whatever was calibrated, what it decides moves
    the surface (a decoder that says "inside" everywhere it is asked gives the larger shape), the
    mesh stays closed, and a decoder trained on another grid is refused."""
    from amodalgen3d_ros.local_decoder import DecoderConfig, LocalDecoder, save_decoder
    from amodalgen3d_ros.observation import observe

    torch.manual_seed(0)
    net = M.AmodalGen3D(SMALL)
    torch.nn.init.normal_(net.final.weight, std=0.05)
    w = tmp_path / "w.safetensors"
    M.save_weights(net, w, {"level_by_views": {"1": 0.3}})
    obs = observe(scene0.views[:1], scene0.target_id)
    volumes = []
    for logit in (4.0, -4.0):
        dec = LocalDecoder(DecoderConfig(fine_res=2 * SMALL.res))
        for p in dec.parameters():
            torch.nn.init.zeros_(p)
        torch.nn.init.constant_(dec.mlp[-1].bias, logit)
        save_decoder(dec, tmp_path / f"d{logit}.safetensors")
        method = L.LearnedMethod(w, steps=1, samples=2, fine_res=2 * SMALL.res, decoder=1,
                                 decoder_weights=tmp_path / f"d{logit}.safetensors")
        assert method.level_for(1) == 0.5
        fd = method.field(obs)
        assert "coarse_field" in fd and not np.array_equal(fd["field"], fd["coarse_field"])
        mesh, conf = method(obs)
        assert mesh.is_watertight and mesh.volume > 0 and len(conf) == len(mesh.vertices)
        volumes.append(mesh.volume)
    assert volumes[0] > volumes[1]
    with pytest.raises(ValueError, match="trained on a 64"):
        save_decoder(LocalDecoder(DecoderConfig()), tmp_path / "d64.safetensors")
        L.LearnedMethod(w, fine_res=2 * SMALL.res, decoder=1, decoder_weights=tmp_path / "d64.safetensors")


def _ramp_decoder(gain: float, fine_res: int):
    """A local decoder whose logit is gain x (the field at the voxel - 0.5): its ramp crosses 0.5
    where the field does, steep for a large gain, flat (unsure) for a small one (GELU(a) - GELU(-a)
    = a carries the value through its three hidden layers)."""
    from amodalgen3d_ros.local_decoder import DecoderConfig, LocalDecoder

    dec = LocalDecoder(DecoderConfig(fine_res=fine_res))
    lin = [m for m in dec.mlp if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for m in lin:
            m.weight.zero_()
            m.bias.zero_()
        centre = 13  # scale 1, channel "field", the middle of the 27 taps
        lin[0].weight[0, centre], lin[0].bias[0] = 1.0, -0.5
        lin[0].weight[1, centre], lin[0].bias[1] = -1.0, 0.5
        for m in lin[1:3]:
            m.weight[0, :2] = torch.tensor([1.0, -1.0])
            m.weight[1, :2] = torch.tensor([-1.0, 1.0])
        lin[3].weight[0, :2] = torch.tensor([gain, -gain])
    return dec


def test_confidence_after_the_decoder_reads_its_ramp_too(tmp_path, scene0):
    """With the local decoder, a vertex's spread adds the decoded field's slope to the samples'
    mean's in quadrature: the same surface from an unsure decoder (a flat ramp) is stated less
    surely than from a sure one (before, only the samples' mean was read: both the same)."""
    from amodalgen3d_ros.local_decoder import save_decoder
    from amodalgen3d_ros.observation import observe

    torch.manual_seed(0)
    net = M.AmodalGen3D(SMALL)
    torch.nn.init.normal_(net.final.weight, std=0.05)
    w = tmp_path / "w.safetensors"
    M.save_weights(net, w)
    obs = observe(scene0.views[:1], scene0.target_id)
    inferred_sigma = {}
    for gain in (40.0, 2.0):
        save_decoder(_ramp_decoder(gain, 2 * SMALL.res), tmp_path / f"d{gain}.safetensors")
        method = L.LearnedMethod(w, steps=1, samples=2, fine_res=2 * SMALL.res, decoder=1,
                                 decoder_weights=tmp_path / f"d{gain}.safetensors")
        fd = method.field(obs)
        mesh, sigma, measured = method.mesh_and_sigma(fd, 0.5)
        assert (~measured).sum() > 50
        # never below the samples' own spread at the same vertices
        v = transform(invert(fd["mi"].T_out_cube), mesh.vertices)
        coarse = fd["coarse_field"].copy()
        coarse[fd["band"]] = np.clip(0.5 - 0.5 * fd["tsdf"][fd["band"]], 0, 1)
        assert np.all(sigma >= L.surface_sigma(coarse, fd["grid"], v) - 1e-9)
        inferred_sigma[gain] = float(np.median(sigma[~measured]))
    assert inferred_sigma[2.0] > 1.5 * inferred_sigma[40.0]


def test_calibrated_level_travels_in_the_weights(tmp_path):
    M.save_weights(M.AmodalGen3D(SMALL), tmp_path / "w.safetensors", {"level": 0.3})
    assert W.weights_meta(tmp_path / "w.safetensors")["level"] == 0.3
    assert L.LearnedMethod(tmp_path / "w.safetensors").level == 0.3
    M.save_weights(M.AmodalGen3D(SMALL), tmp_path / "v.safetensors")
    assert L.LearnedMethod(tmp_path / "v.safetensors").level == 0.5


def test_level_per_view_count(tmp_path):
    """A level calibrated per view count holds for that count and those up to the next calibrated
    one; below the first, the pooled level; a level given by the caller holds for every count."""
    w = tmp_path / "w.safetensors"
    M.save_weights(M.AmodalGen3D(SMALL), w, {"level": 0.3, "level_by_views": {"1": 0.35, "2": 0.4, "4": 0.45},
                                              "hidden_offset_by_views": {"1": 0.0, "4": 0.1}})
    m = L.LearnedMethod(w)
    assert [m.level_for(n) for n in range(9)] == [0.3, 0.35, 0.4, 0.4, 0.45, 0.45, 0.45, 0.45, 0.45]
    assert [m.hidden_offset_for(n) for n in range(9)] == [0.0, 0.0, 0.0, 0.0, 0.1, 0.1, 0.1, 0.1, 0.1]
    assert {L.LearnedMethod(w, level=0.2).level_for(n) for n in range(9)} == {0.2}
    assert {L.LearnedMethod(w, level=0.2).hidden_offset_for(n) for n in range(9)} == {0.0}


def test_upsample_linear_is_zooms_trilinear():
    from scipy import ndimage

    x = np.random.default_rng(0).random((8, 6, 4)).astype(np.float32)
    want = ndimage.zoom(x, 2, order=1, mode="nearest", grid_mode=True)
    np.testing.assert_allclose(L.upsample_linear(x, 2), want, atol=1e-6)
    np.testing.assert_allclose(L.upsample_linear(x, 1.5), ndimage.zoom(x, 1.5, order=1, mode="nearest", grid_mode=True))


def test_hull_columns_match_the_per_voxel_test():
    from scipy.spatial import ConvexHull

    from amodalgen3d_ros.features import hull_columns

    pts = np.random.default_rng(1).normal(size=(200, 3)) * [0.03, 0.02, 0.05]
    eq = ConvexHull(pts).equations
    x, y, z = (np.linspace(-0.1, 0.1, 23),) * 3
    for tol in (-0.004, 1e-9, 0.004):
        lo, hi = hull_columns(eq, x, y, tol)
        c = np.stack(np.meshgrid(x, y, z, indexing="ij"), -1)
        want = np.all(c @ eq[:, :3].T + eq[:, 3] <= tol, axis=-1)
        assert ((z >= lo[..., None]) & (z <= hi[..., None]) == want).all()


def test_calibration_records_its_sampler_and_another_sampler_is_warned_of(tmp_path, caplog):
    """The level and the confidence are fitted at one sampler (fewer samples or other steps change
    how sharp the mean occupancy is): calibrate records it, and a generator run at another says so."""
    import logging

    from amodalgen3d_ros.tools.calibrate import calibrate

    w = tmp_path / "w.safetensors"
    M.save_weights(M.AmodalGen3D(SMALL), w)
    calibrate(w, data=str(tmp_path / "calib"), scenes=1, views=(1,), steps=1, samples=2)
    meta = W.weights_meta(w)
    assert meta["calibration"]["sampler"] == {"steps": 1, "samples": 2}
    assert meta["level_by_views"] == {"1": meta["level"]}  # one view count: its level is the pooled one
    with caplog.at_level(logging.WARNING, logger="amodalgen3d.model"):
        L.LearnedMethod(w, steps=1, samples=2)
        assert not caplog.records
        L.LearnedMethod(w, steps=2, samples=8)
    assert "calibrated for 1 steps x 2 samples, runs at 2 x 8" in caplog.text


def test_calibrate_command_fits_the_view_counts_asked(tmp_path, capsys):
    """`amodalgen3d calibrate W --views 1,2`: levels for those counts only (the shipped networks'
    own, decoder-less calibration is fitted at 1, 2 and 4 views); a bad list is refused, before any
    scene is made."""
    import json

    from amodalgen3d_ros.cli import main

    w = tmp_path / "w.safetensors"
    M.save_weights(M.AmodalGen3D(SMALL), w)
    assert main(["calibrate", str(w), "--data", str(tmp_path / "calib"), "--scenes", "1", "--views", "1,2",
                 "--steps", "1", "--samples", "2"]) == 0
    assert set(json.loads(capsys.readouterr().out)["level_by_views"]) == {"1", "2"}
    assert set(W.weights_meta(w)["level_by_views"]) == {"1", "2"}
    with pytest.raises(SystemExit):
        main(["calibrate", str(w), "--views", "one"])
    assert main(["calibrate", str(w), "--data", str(tmp_path / "none"), "--views", "0,1"]) == 2
    assert not (tmp_path / "none").exists()


def test_calibration_scores_an_object_under_the_count_of_views_it_kept(tmp_path, monkeypatch):
    """Asked for 2 views, an observation that keeps 1 is meshed at 1 view's level and offset, so
    calibrate scores it there, not in the 2-view fit."""
    from amodalgen3d_ros.observation import observe
    from amodalgen3d_ros.tools import calibrate as C

    asked: list[int] = []

    def first_two_view_observation_keeps_one(views, target_id, **kw):
        asked.append(len(views))
        return observe(views[:1] if len(views) == 2 and asked.count(2) == 1 else views, target_id, **kw)

    w = tmp_path / "w.safetensors"
    M.save_weights(M.AmodalGen3D(SMALL), w)
    monkeypatch.setattr(C, "observe", first_two_view_observation_keeps_one)
    C.calibrate(w, data=str(tmp_path / "calib"), scenes=2, views=(1, 2), steps=1, samples=2)
    assert asked == [1, 2, 1, 2]
    assert W.weights_meta(w)["calibration"]["objects_by_views"] == {"1": 3, "2": 1}


def test_calibration_with_a_local_decoder_goes_into_the_decoders_file(tmp_path, caplog):
    """calibrate --decoder: the level and confidence of a network followed by the decoder are
    stored in the decoder's file, one per network (the network's own are untouched), and used when
    the two run together; a network the decoder holds no calibration for is warned of."""
    import logging

    from amodalgen3d_ros.local_decoder import DecoderConfig, LocalDecoder, save_decoder
    from amodalgen3d_ros.tools.calibrate import calibrate
    from amodalgen3d_ros.weights_io import file_sha256

    torch.manual_seed(0)
    w, other = tmp_path / "w.safetensors", tmp_path / "other.safetensors"
    M.save_weights(M.AmodalGen3D(SMALL), w, {"level": 0.3})
    M.save_weights(M.AmodalGen3D(SMALL), other, {"level": 0.2, "confidence": {"sigma_scale": 2.0, "sigma_floor_m": 0.0}})
    d = tmp_path / "d.safetensors"
    save_decoder(LocalDecoder(DecoderConfig()), d, {"steps": 7})
    calibrate(w, data=str(tmp_path / "calib"), scenes=1, views=(1,), steps=1, samples=2, decoder=d)
    assert W.weights_meta(w) == {"level": 0.3}
    meta = W.weights_meta(d)
    cal = meta["calibration_by_network"][file_sha256(w)]
    assert meta["steps"] == 7 and cal["network"] == "w.safetensors" and cal["level_by_views"] == {"1": cal["level"]}
    # per-count confidence fits are recorded, not put to use (the pooled fit serves every count)
    fits = cal["calibration"]["confidence_fit_by_views"]
    assert "confidence_by_views" not in cal and set(fits) == {"1"} and "ece_pooled_fit" in fits["1"]
    from amodalgen3d_ros.tools.calibrate import HIDDEN_OFFSETS

    (offset,) = cal["hidden_offset_by_views"].values()
    assert set(cal["hidden_offset_by_views"]) == {"1"} and offset in HIDDEN_OFFSETS
    assert set(cal["calibration"]["score_by_views_and_hidden_offset"]["1"]) == {str(d) for d in HIDDEN_OFFSETS}
    with caplog.at_level(logging.WARNING, logger="amodalgen3d.model"):
        m = L.LearnedMethod(w, steps=1, samples=2, decoder=1, decoder_weights=d)
        assert not caplog.records
        assert m.level_for(1) == cal["level"] and m.sigma_scale == cal["confidence"]["sigma_scale"]
        assert m.hidden_offset_by_views == {1: offset}
        c = cal["confidence"]
        assert m.confidence_params(1) == (c["sigma_scale"], c["sigma_floor_m"], c["occlusion_gain_m"])
        assert m.confidence_by_views == {}
        # a per-count fit a decoder's calibration holds is read from there
        meta["calibration_by_network"][file_sha256(w)]["confidence_by_views"] = {"1": fits["1"]}
        save_decoder(LocalDecoder(DecoderConfig()), d, meta)
        m = L.LearnedMethod(w, steps=1, samples=2, decoder=1, decoder_weights=d)
        assert m.confidence_by_views == {1: (fits["1"]["sigma_scale"], fits["1"]["sigma_floor_m"],
                                             fits["1"]["occlusion_gain_m"])}
        m = L.LearnedMethod(other, steps=1, samples=2, decoder=1, decoder_weights=d)
    assert "holds no calibration with other.safetensors" in caplog.text
    assert m.level_for(1) == 0.5 and m.sigma_scale == 2.0
    assert L.LearnedMethod(w, steps=1, samples=2).level == 0.3
    # a method spec can name the decoder file (ablations with the decoder: a copy calibrated with
    # their weights, never the shipped one); a missing file is the caller's error
    from amodalgen3d_ros.reconstruct import resolve_method
    from amodalgen3d_ros.tools.bench import method_label
    from amodalgen3d_ros.views import ViewsFormatError

    before = set(L._CACHE)
    resolve_method(f"amodalgen3d@{w}?steps=1&samples=2&decoder={d}")
    (key,) = set(L._CACHE) - before  # the method the spec loaded, with that decoder file
    assert str(d) in key and L._CACHE[key].decoder is not None and L._CACHE[key].level_for(1) == cal["level"]
    with pytest.raises(ViewsFormatError, match="DECODER_FILE"):
        resolve_method(f"amodalgen3d@{w}?decoder={tmp_path / 'missing.safetensors'}")
    assert method_label(f"amodalgen3d@{w}?steps=1&decoder={d}") == f"amodalgen3d@{tmp_path.name}?steps=1&decoder={tmp_path.name}"
