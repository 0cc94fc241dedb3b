"""amodalgen3d_ros: amodal 3D object completion from sparse RGB-D views, and its ROS 2 node.

The core, in pipeline order (views, geometry, surface, observation, amodal_prior, features, model,
backends, local_decoder, learned, baselines, reconstruct, tracks, scheduling, worker), imports no
ROS; ``tools`` (data, training, calibration, benchmarks) stands apart from it; the ROS layer lives
in ``ros`` (its harnesses in ``ros.harness``). Only ``cli`` imports both.
"""

# The generated message modules (amodalgen3d_ros.msg) are installed by the message build into the
# environment's site-packages, while this source package may be imported from the work tree
# (editable install): let the package span both folders.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
