"""The other end of the node's inputs, for replay, benchmarks and tests: publishers of the four
inputs, and the wait until the node can really hear them."""

from __future__ import annotations

import time


def init_rclpy() -> None:
    """rclpy for the node's peers (replay, benchmarks): from no arguments. rclpy.init() reads
    sys.argv by default, where our CLI's `-p name:=value` (meant for the node under test) is an
    old-style remap rule to rcl: it warned, and `-p __ns:=/x` moved the peer's own node."""
    import rclpy

    rclpy.init(args=[])


def last_diagnostics(diags: list) -> dict:
    """The newest /diagnostics message's key-values (received DiagnosticArrays); {} before one."""
    return {x.key: x.value for x in diags[-1].status[0].values} if diags and diags[-1].status else {}


def input_publishers(node, topics: dict, depth: int) -> list:
    """Reliable publishers of the node's four inputs, in view_to_msgs order (colour, depth, info, labels)."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    q = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
    return [node.create_publisher(Image, topics["color_topic"], q), node.create_publisher(Image, topics["depth_topic"], q),
            node.create_publisher(CameraInfo, topics["camera_info_topic"], q),
            node.create_publisher(Image, topics["labels_topic"], q)]


def wait_until_connected(node, pubs, timeout_s: float = 60.0, proc=None, node_prefix: str = "amodalgen3d") -> None:
    """Return once both ends have matched: every publisher sees a subscription, and the node's
    diagnostics say each of its inputs has a publisher.

    The first alone is not enough: discovery is not symmetric, and until the node's reader has
    discovered our writer it drops that writer's samples, which a volatile writer never sends
    again (seen in CI: the first frames of a replay lost). Raises TimeoutError, or RuntimeError
    if ``proc`` (the node's process) exits meanwhile.
    """
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray

    state: dict[str, str] = {}

    def on_diag(msg) -> None:
        for st in msg.status:
            if st.name.startswith(node_prefix):
                state.update({kv.key: kv.value for kv in st.values})

    sub = node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    try:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the node exited (code {proc.returncode}) before its inputs connected")
            if all(p.get_subscription_count() > 0 for p in pubs) and "inputs" in state \
                    and state.get("inputs_connected") == state["inputs"]:
                return
            rclpy.spin_once(node, timeout_sec=0.1)
        raise TimeoutError(f"the node's inputs did not connect within {timeout_s:.0f} s "
                           f"(diagnostics: inputs {state.get('inputs')}, connected {state.get('inputs_connected')})")
    finally:
        node.destroy_subscription(sub)


def stop_process(proc, timeout_s: float = 10.0) -> int | None:
    """Stop a node's process like Ctrl-C, killed if it has not exited within ``timeout_s``."""
    import subprocess

    if proc.poll() is None:
        proc.send_signal(2)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode
