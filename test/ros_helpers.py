"""Helpers for the tests that run the real node in its own process over real DDS."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from amodalgen3d_ros.ros.harness.peer import stop_process

REPO = Path(__file__).resolve().parents[1]


def start_node(params: dict, tmp: Path, name: str = "node") -> subprocess.Popen:
    """The node in its own process, parameters from the shipped YAML plus overrides."""
    args = [sys.executable, "-m", "amodalgen3d_ros.ros.node", "--ros-args", "--params-file",
            str(REPO / "config" / "amodalgen3d.yaml")]
    for k, v in params.items():
        args += ["-p", f"{k}:={v}"]
    log = open(tmp / f"{name}.log", "w")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))


stop_node = stop_process  # Ctrl-C, then kill: the same as the benches and replay


def wait_for(cond, timeout_s: float, spin, period: float = 0.05) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        spin(period)
        if cond():
            return True
    return False
