"""The local decoder: its features, target, decoding, weights and training (smoke)."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from amodalgen3d_ros.local_decoder import (
    CHANNELS,
    DecoderConfig,
    LocalDecoder,
    decode,
    load_decoder,
    local_features,
    query_voxels,
    ramp_target,
    save_decoder,
)
from amodalgen3d_ros.observation import RayEvidence


def test_local_features_read_each_channel_at_its_offsets_and_scales():
    cfg = DecoderConfig()
    R = 24
    chans = np.zeros((len(CHANNELS), R, R, R), np.float32)
    chans[2, 12, 12, 12] = 1.0  # one voxel of the third channel
    ijk = np.array([[12, 12, 12], [10, 12, 12], [12, 12, 16], [0, 0, 0]])
    x = local_features(chans, ijk, cfg).reshape(len(ijk), len(cfg.scales), len(CHANNELS), 27)
    assert x.shape[0] == 4 and x.size == 4 * cfg.inputs
    center, minus_x, plus_z = 13, 4, 14  # offsets (0,0,0), (-1,0,0), (0,0,+1) in C order over {-1,0,1}^3
    assert x[0, 0, 2, center] == 1.0 and x[0, 0, 2].sum() == 1.0 and x[0, 0, [0, 1, 3]].sum() == 0
    assert x[1, 1, 2, 27 - 1 - minus_x] == pytest.approx(1 / 27)  # 2 voxels below: scale 2's +x tap, 3^3 smoothed
    assert x[2, 2, 2, 27 - 1 - plus_z] == pytest.approx(1 / 343)  # 4 voxels further in z: scale 4's -z tap
    assert not x[3].any()  # at the grid's corner: edge values, nothing from the far voxel
    # the box it reads is cropped around the queries: the same features as from the whole grid
    rng = np.random.default_rng(0)
    full = rng.random(chans.shape).astype(np.float32)
    q = rng.integers(8, 16, (50, 3))
    whole = local_features(full, np.r_[q, [[0, 0, 0], [R - 1, R - 1, R - 1]]], cfg)[:50]
    assert np.array_equal(local_features(full, q, cfg), whole)


def test_ramp_target_crosses_half_on_the_surface():
    v = 0.004
    y = ramp_target(np.array([-1, -v, -v / 2, 0, v / 2, v, 1.0]), v)
    assert y.tolist() == [1.0, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0]


def _evidence(R: int) -> RayEvidence:
    z = np.zeros((R, R, R), np.int32)
    return RayEvidence(z, z, z, np.full((R, R, R), np.nan), np.zeros((R, R, R), bool))


def test_decode_settles_far_voxels_and_decides_the_rest():
    R = 32
    i = np.arange(R)[:, None, None]
    field = np.broadcast_to(np.clip((16 - i) / 4 + 0.5, 0, 1), (R, R, R)).astype(np.float32)  # a plane's ramp
    torch.manual_seed(0)
    net = LocalDecoder(DecoderConfig(fine_res=R))
    out = decode(net, field, None, _evidence(R))
    q = query_voxels(field, np.zeros_like(field, bool), net.cfg)
    assert len(q) and set(np.unique(q[:, 0])) == set(range(13, 20))  # open 15-17, widened by 2
    settled = np.ones_like(field, bool)
    settled[q[:, 0], q[:, 1], q[:, 2]] = False
    assert np.array_equal(out[settled], (field[settled] > 0.5).astype(np.float32))
    assert ((out[~settled] > 0) & (out[~settled] < 1)).all()  # sigmoid outputs


def test_decode_runs_its_mlp_on_one_thread_and_leaves_the_count_as_it_was():
    """torch's pool, woken by the MLP, spins after each op and doubled the decode on busy cores
    (the node beside its camera stream): the MLP runs at one thread, the caller's count stays."""
    R = 32
    i = np.arange(R)[:, None, None]
    field = np.broadcast_to(np.clip((16 - i) / 4 + 0.5, 0, 1), (R, R, R)).astype(np.float32)
    net = LocalDecoder(DecoderConfig(fine_res=R))
    seen = []
    forward = net.forward
    net.forward = lambda x: (seen.append(torch.get_num_threads()), forward(x))[1]  # type: ignore[method-assign]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        decode(net, field, None, _evidence(R))
        assert seen and set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_decode_in_chunks_is_decode_at_once(monkeypatch):
    """The features are read and decoded a chunk of voxels at a time (bounded memory): the same
    field as all at once, whatever the chunk (a last, short chunk included)."""
    from amodalgen3d_ros import local_decoder

    R = 32
    rng = np.random.default_rng(1)
    field = np.clip(rng.random((R, R, R)) * 1.2 - 0.1, 0, 1).astype(np.float32)
    torch.manual_seed(0)
    net = LocalDecoder(DecoderConfig(fine_res=R))
    n = len(query_voxels(field, np.zeros_like(field, bool), net.cfg))
    monkeypatch.setattr(local_decoder, "DECODE_CHUNK", n)
    whole = decode(net, field, None, _evidence(R))
    monkeypatch.setattr(local_decoder, "DECODE_CHUNK", 1000)
    assert n % 1000 and n > 3000
    np.testing.assert_allclose(decode(net, field, None, _evidence(R)), whole, rtol=0, atol=1e-6)


def test_decoder_weights_round_trip_and_refuse_what_does_not_fit(tmp_path):
    from amodalgen3d_ros.weights_io import WeightsError

    torch.manual_seed(0)
    net = LocalDecoder(DecoderConfig())
    save_decoder(net, tmp_path / "d.safetensors", {"steps": 1})
    back = load_decoder(tmp_path / "d.safetensors")
    assert back.cfg == net.cfg and all(torch.equal(v, back.state_dict()[k]) for k, v in net.state_dict().items())
    save_decoder(LocalDecoder(DecoderConfig(width=64)), tmp_path / "narrow.safetensors")
    from safetensors.torch import load_file, save_file

    # a file whose config says 128 wide but holds a 64-wide network
    save_file(load_file(str(tmp_path / "narrow.safetensors")), str(tmp_path / "lies.safetensors"),
              metadata={"config": json.dumps(asdict(net.cfg))})
    with pytest.raises(WeightsError, match="do not fit"):
        load_decoder(tmp_path / "lies.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(WeightsError, match="corrupt"):
        load_decoder(tmp_path / "junk.safetensors")
    with pytest.raises(WeightsError, match="not found"):
        load_decoder(tmp_path / "missing.safetensors")


def test_decoder_training_smoke_and_resume(tmp_path):
    from dataclasses import replace

    from amodalgen3d_ros.tools import synth
    from amodalgen3d_ros.tools.train_decoder import prepare_decoder, smoke_decoder_config, train_decoder

    data = tmp_path / "data"
    synth.synth(data, 2, seed=3, split="train", cfg=synth.SynthConfig(n_views=2), workers=1, progress=False)
    cfg = smoke_decoder_config(str(data), str(tmp_path / "run"))
    w = train_decoder(cfg, progress=False)
    assert load_decoder(w).cfg == DecoderConfig()
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and "val_loss" in log[-1]
    train_decoder(replace(cfg, steps=4, val_every=4, ckpt_every=4), progress=False)  # resumes at step 3
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    # more samples per scene are new shards, not the ones made for one sample (they were reused)
    one = len(prepare_decoder(cfg, progress=False)["y"])
    assert len(prepare_decoder(replace(cfg, samples_per_scene=2), progress=False)["y"]) > one
    # the width is the training's to choose, and the file says which it is
    narrow = train_decoder(replace(cfg, width=64, out=str(tmp_path / "narrow")), progress=False)
    assert load_decoder(narrow).cfg == DecoderConfig(width=64)


def test_the_shipped_networks_run_with_the_shipped_decoder(tmp_path):
    """Both shipped networks are calibrated with the shipped decoder, so they run with it; other
    weights (ablation runs) and other grids run without it unless asked."""
    from amodalgen3d_ros.learned import DEFAULT_WEIGHTS, decoder_by_default, learned_method
    from amodalgen3d_ros.model import AmodalGen3D, ModelConfig, save_weights

    for path in DEFAULT_WEIGHTS.values():
        assert decoder_by_default(path) == 1
    assert decoder_by_default(DEFAULT_WEIGHTS["amodalgen3d"], fine_res=96) == 0
    other = tmp_path / "other.safetensors"
    save_weights(AmodalGen3D(ModelConfig(width=32, depth=1, heads=2)), other)
    assert decoder_by_default(other) == 0
    assert learned_method("amodalgen3d").decoder is not None
    assert learned_method("amodalgen3d", decoder=0).decoder is None
    # the decoder's training data: the generator's own fields, never already decoded
    from amodalgen3d_ros.tools.train_decoder import DecoderTrainConfig, field_source

    assert field_source(DecoderTrainConfig().generator).decoder is None


def test_the_decoder_default_is_worked_out_once_per_cached_method(monkeypatch):
    """learned_method runs per reconstruction (resolve_method): the default (a hash of the weights
    and a read of the decoder's header) belongs with loading, not with every call."""
    from amodalgen3d_ros import learned as L

    calls = []
    real = L.decoder_by_default
    monkeypatch.setattr(L, "decoder_by_default", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr(L, "_CACHE", {})
    first = L.learned_method("amodal_regressor")
    assert L.learned_method("amodal_regressor") is first and len(calls) == 1
