"""Parameters: one list, validated with one clear message each; the YAML mirrors the defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from amodalgen3d_ros.ros.params import PARAMS, ParamError, markdown_table, validate

REPO = Path(__file__).resolve().parents[1]


def test_defaults_validate():
    cfg = validate({})
    assert cfg.max_views == 6 and cfg.method == "auto"


def test_sampler_defaults_are_the_models():
    """The node's defaults are the core's (literals here: the node process need not import torch)."""
    from amodalgen3d_ros.model import NUM_SAMPLES, SAMPLING_STEPS

    cfg = validate({})
    assert (cfg.sampling_steps, cfg.num_samples) == (SAMPLING_STEPS, NUM_SAMPLES)


def test_yaml_mirrors_the_declared_defaults():
    y = yaml.safe_load((REPO / "config" / "amodalgen3d.yaml").read_text())["/**"]["ros__parameters"]
    assert {p.name: p.default for p in PARAMS} == y


@pytest.mark.parametrize("values, message", [
    ({"max_views": 0}, "max_views: 0 is outside"),
    ({"sync_mode": "sometimes"}, "sync_mode: 'sometimes' is not one of"),
    ({"sync_slop_s": "fast"}, "sync_slop_s: expected float"),
    ({"input_depth": 2.5}, "input_depth: expected int"),
])
def test_bad_values_are_named(values, message):
    with pytest.raises(ParamError, match=message):
        validate(values)


def test_the_ros_docs_hold_the_current_parameter_table():
    docs = (REPO / "docs" / "ros.md").read_text()
    assert markdown_table() in docs, "docs/ros.md: paste `python -m amodalgen3d_ros.ros.params` into Parameters"
    assert all(f"`{p.name}`" in docs for p in PARAMS)


def test_camera_tracking_follows_the_frame_rate_and_needs_depth():
    from amodalgen3d_ros.ros.params import odometry_config

    assert odometry_config(validate({})).max_gap_s == 2.0  # 5 Hz: 0.2 s between frames
    assert odometry_config(validate({"max_frame_rate_hz": 1.0})).max_gap_s == 5.0
    assert odometry_config(validate({"depth_topic": ""})) is None
    assert odometry_config(validate({"camera_tracking": False})) is None
