"""Harnesses around the node: replay of rosbag2 files, the demo, the fuzz and load benches, and the
peer helpers they share (start a node, wait for its readers, stop it)."""
