"""Launch amodalgen3d_node.

    ros2 launch amodalgen3d_ros amodalgen3d.launch.py
    ros2 launch amodalgen3d_ros amodalgen3d.launch.py namespace:=robot use_sim_time:=true \
        color_topic:=/cam/color/image_raw labels_topic:=/tracker/labels params_file:=/path/p.yaml
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description():
    share = get_package_share_directory("amodalgen3d_ros")
    args = [
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "amodalgen3d.yaml"),
                              description="node parameters (YAML, /**: ros__parameters:)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock (bag replay)"),
        DeclareLaunchArgument("color_topic", default_value="/camera/camera/color/image_raw"),
        DeclareLaunchArgument("depth_topic", default_value="/camera/camera/aligned_depth_to_color/image_raw"),
        DeclareLaunchArgument("camera_info_topic", default_value="/camera/camera/color/camera_info"),
        DeclareLaunchArgument("labels_topic", default_value="/tracker/instance_labels"),
        DeclareLaunchArgument("log_level", default_value="info"),
    ]
    node = Node(
        package="amodalgen3d_ros",
        executable="amodalgen3d_node",
        name="amodalgen3d_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "use_sim_time": LaunchConfiguration("use_sim_time"),
                # topic names are parameters (not remaps), so one launch argument changes one input
                "color_topic": LaunchConfiguration("color_topic"),
                "depth_topic": LaunchConfiguration("depth_topic"),
                "camera_info_topic": LaunchConfiguration("camera_info_topic"),
                "labels_topic": LaunchConfiguration("labels_topic"),
            },
        ],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
    )
    return LaunchDescription(args + [node])
