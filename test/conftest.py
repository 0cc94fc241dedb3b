"""Shared fixtures: small rendered scenes (fast, deterministic)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# A DDS domain of our own: nodes of another run on this machine (a benchmark, a second test
# session) must not answer our tests' calls. Child processes inherit it.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))

from amodalgen3d_ros.tools import synth


@pytest.fixture(scope="session")
def scene0() -> synth.RenderedScene:
    """Scene 0 of the heldout split for seed 7: a target among others, 8 views, noisy depth."""
    return synth.render_scene(7, "heldout", 0)


@pytest.fixture(scope="session")
def scene_dir(tmp_path_factory, scene0) -> Path:
    out = tmp_path_factory.mktemp("scene") / "scene_00000"
    synth.write_scene(out, scene0, synth.SynthConfig(), {"seed": 7, "split": "heldout", "index": 0})
    return out
