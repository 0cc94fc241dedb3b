"""A seconds-long training smoke run: prepare, steps, checkpoint, resume, export."""

from __future__ import annotations

import json
from dataclasses import replace

from amodalgen3d_ros.model import load_weights
from amodalgen3d_ros.tools import synth
from amodalgen3d_ros.tools.train import smoke_config, train


def test_training_smoke_and_resume(tmp_path):
    data = tmp_path / "data"
    synth.synth(data, 4, seed=1, split="train", cfg=synth.SynthConfig(n_views=3), workers=1, progress=False)
    cfg = smoke_config(str(data), str(tmp_path / "run"))
    w = train(cfg, progress=False)
    assert load_weights(w).cfg.mode == "flow" and load_weights(w).cfg.predict == "x0"  # what ships
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and "val_loss" in log[-1]
    train(replace(cfg, steps=5, val_every=5, ckpt_every=5), progress=False)  # resumes at step 3
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]


def test_init_starts_from_other_weights_and_refuses_what_does_not_fit(tmp_path):
    import pytest
    import torch

    from amodalgen3d_ros.amodal_prior import AmodalPrior, PriorConfig, save_prior
    from amodalgen3d_ros.learned import DEFAULT_WEIGHTS
    from amodalgen3d_ros.model import AmodalGen3D, ModelConfig, save_weights

    data = tmp_path / "data"
    synth.synth(data, 4, seed=2, split="train", cfg=synth.SynthConfig(n_views=2), workers=1, progress=False)
    src = DEFAULT_WEIGHTS["amodalgen3d"]
    # learning rate 0: the exported generator is exactly the one it started from
    cfg = replace(smoke_config(str(data), str(tmp_path / "warm")), steps=1, val_every=1,
                  ckpt_every=1, init=str(src), lr=0.0)
    warm = load_weights(train(cfg, progress=False))
    assert warm.cfg.mode == "flow" and warm.cfg.predict == "x0"
    src_state = load_weights(src).state_dict()
    assert all(torch.equal(v, src_state[k]) for k, v in warm.state_dict().items())

    other = tmp_path / "narrow.safetensors"
    save_weights(AmodalGen3D(ModelConfig(width=64, amodal_prior=True, img_channels=15)), other)
    with pytest.raises(ValueError, match="width"):
        train(replace(cfg, out=str(tmp_path / "bad1"), init=str(other)), progress=False)
    other_prior = tmp_path / "other_prior.safetensors"
    save_prior(AmodalPrior(PriorConfig()), other_prior, {})
    with pytest.raises(ValueError, match="another 2D amodal prior"):
        train(replace(cfg, out=str(tmp_path / "bad2"), prior=str(other_prior)), progress=False)


def test_generator_started_from_the_reference_is_the_reference_until_trained():
    """--init from the regress weights: the noisy shape's inputs and the time are zero-initialised
    paths, so the untrained generator's clean-shape estimate is the reference's answer at any z, t."""
    import torch

    from amodalgen3d_ros.learned import DEFAULT_WEIGHTS
    from amodalgen3d_ros.model import AmodalGen3D, load_weights
    from amodalgen3d_ros.tools.train import TrainConfig, init_weights

    ref = load_weights(DEFAULT_WEIGHTS["amodal_regressor"])
    gen = AmodalGen3D(replace(ref.cfg, mode="flow", predict="x0"))
    init_weights(gen, str(DEFAULT_WEIGHTS["amodal_regressor"]), TrainConfig().prior)
    gen.eval()
    c, R = ref.cfg, ref.cfg.res
    g = torch.Generator().manual_seed(0)
    geo, views = torch.rand(2, c.geo_channels, R, R, R, generator=g), torch.rand(2, 4, c.img_channels, 32, 32, generator=g)
    tau, valid = torch.rand(2, 4, generator=g), torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        want = ref(torch.zeros(2, 1, R, R, R), torch.zeros(2), geo, views, tau, valid)
        got = gen.predict_raw(torch.randn(2, 1, R, R, R, generator=g), torch.tensor([0.3, 1.0]), geo, views, tau, valid)
    assert torch.allclose(got, want, atol=1e-4)
    assert gen.x_embed.weight[:, 0].abs().sum() == 0 and gen.t_embed.mlp[2].weight.abs().sum() == 0


def test_an_interrupted_run_resumed_ends_with_the_weights_of_an_uninterrupted_one(tmp_path):
    """Sessions end abruptly and runs resume from their checkpoint: the resumed run must draw the
    batches the uninterrupted one would have (data order, dropout), else 'same seed, same weights'
    does not hold for it. Regression: the data order used to be re-seeded at the resume step."""
    import pytest
    import torch

    from amodalgen3d_ros.tools.train import LoopConfig, fit

    cfg = LoopConfig(steps=6, batch=4, warmup=1, val_every=100, ckpt_every=2, seed=3)

    def make():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))

    def run(out, stop_at=None):
        out.mkdir(exist_ok=True)
        net, calls = make(), []

        def draw(rng):
            calls.append(1)
            if stop_at is not None and len(calls) == stop_at:
                raise KeyboardInterrupt  # the session ends mid-run
            return torch.as_tensor(rng.normal(size=(cfg.batch, 3)), dtype=torch.float32)

        fit(net, cfg, out, loss_on=lambda x: net(x).pow(2).mean(), draw=draw, validate=lambda: 0.0,
            desc="t", progress=False)
        return net

    whole = run(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", stop_at=5)  # dies drawing step 5: the checkpoint is step 4's
    resumed = run(tmp_path / "cut")
    log = [json.loads(x)["step"] for x in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3, 4, 5, 6]  # step 5 never happened before the cut: it was not logged
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
