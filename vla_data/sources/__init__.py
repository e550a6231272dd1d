"""Reading source episodes (recorder HDF5 files, ROS 2 bags) without trusting them, and never writing them."""
