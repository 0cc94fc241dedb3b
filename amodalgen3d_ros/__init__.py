"""amodalgen3d_ros: amodal 3D object completion from sparse RGB-D views, and its ROS 2 node.

The core (views, geometry, synth, metrics, baselines, model, bench) imports no ROS; the ROS layer
lives in ``amodalgen3d_ros.ros``.
"""

# The generated message modules (amodalgen3d_ros.msg) are installed by the message build into the
# environment's site-packages, while this source package may be imported from the work tree
# (editable install): let the package span both folders.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
