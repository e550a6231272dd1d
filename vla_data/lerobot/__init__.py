"""LeRobotDataset v3.0 (``schemas.lerobot``): a store version written as one (``writer``), with its frames as PNG
or as video (``video``) and its statistics (``stats``)."""
