"""Reading source episodes (recorder HDF5 files, ROS 2 bags) without trusting them, and never writing them.

One interface for every format (``vla_data.sources.formats``): ``find_sources`` in folders, ``format_of`` a path,
``read_episode(s)`` giving ``SourceEpisode``s (actions, a lazy frame reader per camera, content hash, stamps).
Each format is one module (``hdf5``, ``bag_episodes`` over ``bags``); ``instructions`` and ``content_hash`` are
shared by all.
"""
