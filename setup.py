"""pip install -e . (the venv here) and ament_python-style metadata; colcon uses CMakeLists.txt."""
from setuptools import find_packages, setup

package_name = "amodalgen3d_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=[package_name, f"{package_name}.*"]),
    package_data={package_name: ["weights/*.safetensors", "weights/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", ["launch/amodalgen3d.launch.py"]),
        (f"share/{package_name}/config", ["config/amodalgen3d.yaml"]),
    ],
    python_requires=">=3.10",
    zip_safe=False,
    maintainer="amodalgen3d_ros developers",
    maintainer_email="amodalgen3d@example.com",
    description="Amodal 3D completion of tracked objects from sparse RGB-D views, as a ROS 2 node.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "amodalgen3d = amodalgen3d_ros.cli:main",
            "amodalgen3d_node = amodalgen3d_ros.ros.node:main",
        ],
    },
)
