#!/usr/bin/env bash
# Set up a fresh machine: system library, the venv at .venv (ROS 2 Kilted wheels, torch CPU,
# open3d-cpu, ...), this package (editable) and its messages. Re-running it is quick and changes
# nothing when everything is in place.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="$repo/.venv"
cd "$repo"

# Open3D needs libusb to import (Debian 12).
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing libusb-1.0-0 (Open3D needs it)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0) >/dev/null
  else
    echo "setup: please install libusb-1.0-0 (sudo apt-get install libusb-1.0-0)" >&2
    exit 1
  fi
fi

python_bin="${PYTHON:-python3.11}"
command -v "$python_bin" >/dev/null || python_bin=python3
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating $venv"
  "$python_bin" -m venv "$venv"
fi

stamp="$venv/.amodalgen3d_deps.stamp"
want="$(cat requirements.txt constraints.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing pinned dependencies (about a minute)"
  "$venv/bin/python" -m pip install -q --upgrade "pip==26.3" 2>&1 | grep -v "^WARNING: Location" || true
  "$venv/bin/python" -m pip install -q -r requirements.txt -c constraints.txt 2>&1 | grep -v "^WARNING: Location" || true
  "$venv/bin/python" -m pip check >/dev/null || { "$venv/bin/python" -m pip check; exit 1; }
  echo "$want" > "$stamp"
fi

if [ ! -x "$venv/bin/amodalgen3d" ] || ! "$venv/bin/python" -c "import amodalgen3d_ros.cli" 2>/dev/null; then
  echo "setup: installing amodalgen3d_ros (editable)"
  "$venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v "^WARNING: Location" || true
fi

mkdir -p build
bash scripts/build_msgs.sh
"$venv/bin/python" -c "import rclpy, open3d, torch, amodalgen3d_ros.msg" \
  || { echo "setup: the environment does not import; see messages above" >&2; exit 1; }
echo "setup: ready ($venv)"
