"""A seconds-long training smoke run: prepare, steps, checkpoint, resume, export."""

from __future__ import annotations

import json
from dataclasses import replace

from amodalgen3d_ros import synth
from amodalgen3d_ros.model import load_weights
from amodalgen3d_ros.train import smoke_config, train


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
