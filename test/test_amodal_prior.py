"""The 2D amodal prior: crop geometry with known answers, the network's shapes, its loss falling
on a toy set, weights I/O, the trivial prior, the metrics against it, the prior in the model's
inputs and in a learned method, training smoke and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from amodalgen3d_ros import amodal_prior as P
from amodalgen3d_ros.views import View, target_masks


def _view(depth_target=0.5, depth_occ=0.4, depth_bg=1.0):
    """A 100x100 view: target square rows 20-60, cols 30-70; an occluder in front covers rows 45-80."""
    labels = np.zeros((100, 100), np.int64)
    depth = np.full((100, 100), depth_bg, np.float32)
    labels[20:60, 30:70] = 1
    depth[20:60, 30:70] = depth_target
    labels[45:80, 25:75] = 2
    depth[45:80, 25:75] = depth_occ
    K = np.array([[100.0, 0, 50], [0, 100, 50], [0, 0, 1]])
    return View(np.full((100, 100, 3), 128, np.uint8), depth, K, labels)


def test_crop_box_covers_the_target_and_its_occluders():
    v = _view()
    m = target_masks(v, 1)
    assert m.occluder[50, 50]  # nearer, touching: an occluder
    box = P.crop_box(m)
    vv, uu = box.centres(64)
    # the box spans the visible part (rows 20-45) and the occluder (to row 80), square, with margin
    assert vv.min() < 20 and vv.max() > 79 and uu.min() < 25 and uu.max() > 74
    assert abs(box.side_px - (min(60 * 1.15, 3 * 40) + 4)) < 1e-9
    img = np.arange(100 * 100).reshape(100, 100)
    s, inside = P.CropBox(10.0, 20.0, 4.0).sample(img, 4)  # one pixel a sample: the image itself
    assert inside.all() and (s == img[10:14, 20:24]).all()


def test_prior_input_is_relative_and_scale_free():
    near, far = _view(0.5, 0.4, 1.0), _view(1.0, 0.8, 2.0)
    pn, pf = (P.prior_input(v, target_masks(v, 1)) for v in (near, far))
    assert pn.x.shape == (8, 64, 64) and pn.x.dtype == np.float32
    assert pn.z_ref == 0.5 and pf.z_ref == 1.0
    assert abs(pf.crop_m - 2 * pn.crop_m) < 1e-9
    # the same scene twice as far: the same relative depth in the crop
    np.testing.assert_allclose(pn.x[3], pf.x[3], atol=1e-6)
    # the trivial depth channel: the measurement where seen, the nearest seen one elsewhere
    assert pn.visible.dtype == bool
    seen = pn.visible & (pn.depth_m > 0)
    np.testing.assert_array_equal(pn.x[-1][seen], pn.x[3][seen])
    below = np.nonzero(seen.any(1))[0].max() + 3  # a row under the visible part, in the occluder
    cols = np.nonzero(seen[below - 3])[0]
    np.testing.assert_array_equal(pn.x[-1][below, cols], pn.x[3][below - 3, cols])
    no_depth = View(near.color, None, near.K, near.labels)
    assert P.prior_input(no_depth, target_masks(no_depth, 1)) is None


def test_network_shapes_loss_falls_and_round_trip(tmp_path):
    torch.manual_seed(0)
    net = P.AmodalPrior(P.PriorConfig(width=8))
    pi = P.prior_input(_view(), target_masks(_view(), 1))
    x = torch.from_numpy(np.stack([pi.x] * 4))
    out = net(x)
    assert out.shape == (4, 2, 64, 64)
    torch.testing.assert_close(out[:, 1], x[:, -1])  # untrained: the nearest visible depth (trivial prior)
    amodal = torch.zeros(4, 64, 64)
    amodal[:, 10:50, 10:50] = 1
    rel = amodal * 0.1
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    losses = []
    for _ in range(30):
        loss = P.prior_loss(net, x, amodal, rel, amodal)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    P.save_prior(net, tmp_path / "p.safetensors", {"steps": 30})
    back = P.load_prior(tmp_path / "p.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(back(x), net.eval()(x))
    (tmp_path / "bad.safetensors").write_bytes(b"nonsense")
    from amodalgen3d_ros.weights_io import WeightsError

    with pytest.raises(WeightsError, match="corrupt"):
        P.load_prior(tmp_path / "bad.safetensors")


def test_completed_views():
    v = _view()
    pi = P.prior_input(v, target_masks(v, 1))
    # a network output "amodal everywhere at relative depth 0.1": visible pixels keep their measurement
    out = np.stack([np.full((64, 64), 10.0), np.full((64, 64), 0.1)]).astype(np.float32)
    av = P.completed(pi, out)
    assert (av.prob > 0.5).all()
    np.testing.assert_allclose(av.depth_m[pi.visible & (pi.depth_m > 0)], 0.5)
    np.testing.assert_allclose(av.depth_m[~pi.visible], 0.5 + 0.1 * pi.crop_m, rtol=1e-5)
    pts = P.hidden_points(v, av)
    assert len(pts) == (~pi.visible).sum() and np.allclose(pts[:, 2], 0.5 + 0.1 * pi.crop_m, rtol=1e-5)


def test_prior_metrics_know_the_answers():
    from amodalgen3d_ros.tools.bench import prior_rows

    v = _view()
    pi = P.prior_input(v, target_masks(v, 1))
    vis = pi.visible
    amodal = vis.copy()
    amodal[vis.any(1).nonzero()[0].max():][:, vis.any(0)] = True  # the hidden part: below the visible
    hidden = amodal & ~vis
    rel = np.where(amodal, 0.0, 0.0).astype(np.float32)
    samples = {"x": pi.x[None], "amodal": amodal[None].astype(np.uint8), "depth_rel": rel[None],
               "ok": amodal[None].astype(np.uint8), "occlusion": np.array([0.5]), "crop_m": np.array([pi.crop_m])}
    perfect = np.stack([np.where(amodal, 10.0, -10.0), np.zeros((64, 64))]).astype(np.float32)[None]
    row = prior_rows(samples, perfect)[0]
    assert row["iou_amodal"] == 1.0 and row["iou_hidden"] == 1.0 and row["hidden_depth_err_mm"] == 0.0
    assert row["iou_hidden_trivial"] == 0.0 and row["hidden_px"] == hidden.sum()
    assert abs(row["iou_amodal_trivial"] - vis.sum() / amodal.sum()) < 1e-9
    assert row["hidden_depth_err_trivial_mm"] == 0.0  # a flat target: the nearest visible depth is right


def test_model_inputs_with_the_prior(scene0):
    from amodalgen3d_ros.features import FeatureConfig, model_inputs
    from amodalgen3d_ros.observation import observe

    obs = observe(scene0.views[:2], scene0.target_id)
    torch.manual_seed(0)
    run = P.torch_runner(P.AmodalPrior().eval())
    with pytest.raises(ValueError, match="prior"):
        model_inputs(obs, FeatureConfig(amodal_prior=True))
    mi = model_inputs(obs, FeatureConfig(amodal_prior=True), prior=run)
    assert mi.views.shape == (4, 15, 32, 32) and mi.view_valid.sum() == 2
    p = mi.views[:2, -2]
    assert p.min() >= 0 and p.max() <= 1
    # a prior that adds nothing (amodal = visible) sizes the cube as the visible points alone do
    none = lambda x: np.stack([np.full(x.shape[2:], -20.0, np.float32)] * 2)[None].repeat(len(x), 0)  # noqa: E731
    assert model_inputs(obs, FeatureConfig(amodal_prior=True), prior=none).side_m == model_inputs(obs).side_m


def test_learned_method_with_a_prior(tmp_path, scene0):
    from amodalgen3d_ros import learned as L
    from amodalgen3d_ros import model as M
    from amodalgen3d_ros import weights_io as W
    from amodalgen3d_ros.observation import observe
    from amodalgen3d_ros.weights_io import file_sha256

    torch.manual_seed(0)
    P.save_prior(P.AmodalPrior(), tmp_path / "p.safetensors")
    cfg = M.ModelConfig(width=32, depth=1, heads=2, amodal_prior=True, img_channels=15)
    M.save_weights(M.AmodalGen3D(cfg), tmp_path / "w.safetensors", {"prior_sha256": file_sha256(tmp_path / "p.safetensors")})
    method = L.LearnedMethod(tmp_path / "w.safetensors", steps=2, samples=2, prior_weights=tmp_path / "p.safetensors")
    mesh, _ = method(observe(scene0.views[:2], scene0.target_id))
    assert mesh.is_watertight
    P.save_prior(P.AmodalPrior(P.PriorConfig(width=8)), tmp_path / "other.safetensors")
    with pytest.raises(W.WeightsError, match="another 2D amodal prior"):
        L.LearnedMethod(tmp_path / "w.safetensors", prior_weights=tmp_path / "other.safetensors")


def test_prior_onnx_matches_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    from amodalgen3d_ros.backends import make_prior_runner

    torch.manual_seed(0)
    net = P.AmodalPrior().eval()
    x = np.random.default_rng(0).random((3, 8, 64, 64), dtype=np.float32)
    ort_out = make_prior_runner("onnxruntime", net, tmp_path, weights_sha="abc")(x)
    np.testing.assert_allclose(ort_out, P.torch_runner(net)(x), atol=1e-4)
    assert (tmp_path / "abc_p3" / "prior.onnx").is_file()


def test_prior_training_smoke_and_resume(tmp_path):
    from dataclasses import replace

    from amodalgen3d_ros.tools import synth
    from amodalgen3d_ros.tools.train import PriorTrainConfig, train_prior

    data = tmp_path / "data"
    synth.synth(data, 2, seed=1, split="train", cfg=synth.SynthConfig(n_views=3), workers=1, progress=False)
    cfg = replace(PriorTrainConfig(), data=str(data), out=str(tmp_path / "run"), scenes=2, views_per_scene=2,
                  steps=3, batch=2, val_every=3, ckpt_every=3, threads=1)
    w = train_prior(cfg, progress=False)
    assert P.load_prior(w).cfg.crop == 64
    train_prior(replace(cfg, steps=4, val_every=4, ckpt_every=4), progress=False)
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
