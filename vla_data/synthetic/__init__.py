"""Synthetic, learnable episodes in the recorder's formats (HDF5 and ROS 2 bags), and defective ones."""
