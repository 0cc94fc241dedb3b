#!/usr/bin/env bash
# The test command: set up (quick when already done), lint (Python, and the shell scripts' syntax),
# type-check the core, run the tests.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
bash scripts/setup.sh
py=.venv/bin/python
echo "== ruff"
"$py" -m ruff check amodalgen3d_ros test launch scripts
for f in scripts/*.sh; do bash -n "$f"; done
echo "== mypy (core)"
"$py" -m mypy amodalgen3d_ros --exclude 'amodalgen3d_ros/ros/' --no-error-summary
echo "== pytest"
# the DDS domain is private to this run so parallel runs on one machine do not cross-talk
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 100 ))}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
exec "$py" -m pytest -p no:dash -p no:cacheprovider "$@"
