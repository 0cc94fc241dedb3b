#!/usr/bin/env bash
# Build msg/ against the ROS 2 PyPI wheels in the venv and install into it (prefix = the venv),
# with the node executable, launch and config files, as colcon would on a robot.
# Two fixes the wheels need (../shared/notes/environment.md): their exported CMake files carry the
# build machine's Python include and NumPy include paths; point them at this venv's.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${VENV:-$repo/.venv}"
py="$venv/bin/python"
build="$repo/build/msgs"

stamp="$venv/.amodalgen3d_msgs.stamp"
want="$(cat "$repo/msg/"*.msg "$repo/CMakeLists.txt" "$repo/package.xml" "$repo/launch/"* "$repo/config/"* \
  "$repo/scripts/amodalgen3d_node.in" | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$py" -c "import amodalgen3d_ros.msg" 2>/dev/null; then
  echo "messages: up to date"
  exit 0
fi

pyinc="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
npinc="$("$py" -c 'import numpy; print(numpy.get_include())')"
{ grep -rl --include="*.cmake" -e "/opt/python/cp311-cp311" "$venv/share" 2>/dev/null || true; } | while read -r f; do
  sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$npinc#g" \
         -e "s#/opt/python/cp311-cp311/include/python3.11#$pyinc#g" "$f"
done

export AMENT_PREFIX_PATH="$venv"
export PATH="$venv/bin:$PATH"
cmake -S "$repo" -B "$build" -DAMODALGEN3D_INTERFACES_ONLY=ON -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$venv" -DCMAKE_INSTALL_PREFIX="$venv" -DPython3_EXECUTABLE="$py" \
  -DBUILD_TESTING=OFF > "$repo/build/msgs.configure.log" 2>&1 || { tail -30 "$repo/build/msgs.configure.log"; exit 1; }
cmake --build "$build" -j 2 > "$repo/build/msgs.build.log" 2>&1 || { tail -30 "$repo/build/msgs.build.log"; exit 1; }
cmake --install "$build" > "$repo/build/msgs.install.log" 2>&1 || { tail -30 "$repo/build/msgs.install.log"; exit 1; }
"$py" -c "from amodalgen3d_ros.msg import ReconstructedObject, ReconstructedObjectArray" \
  || { echo "messages built but do not import" >&2; exit 1; }
echo "$want" > "$stamp"
echo "messages: built and installed into $venv"
