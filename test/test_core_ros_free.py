"""The core never imports rclpy (rule 1 of our style notes)."""

import subprocess
import sys

CORE = ["views", "geometry", "shapes", "synth", "surface", "metrics", "observation", "baselines",
        "reconstruct", "bench", "cli"]


def test_core_imports_no_rclpy():
    code = ("import sys\n" + "".join(f"import amodalgen3d_ros.{m}\n" for m in CORE)
            + "print('rclpy' in sys.modules, any(k.startswith('rclpy') for k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"
