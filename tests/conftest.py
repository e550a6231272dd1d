from __future__ import annotations

from pathlib import Path

import pytest

from schemas.synthetic import SyntheticConfig
from vla_data.synthetic import make_synthetic

SMALL = {"height": 24, "width": 40}


@pytest.fixture(scope="session")
def clean_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight clean small episodes (some without in-file instruction), as the collector writes them."""
    out = tmp_path_factory.mktemp("clean")
    make_synthetic(out, SyntheticConfig(episodes=8, seed=3, **SMALL))
    return out


@pytest.fixture(scope="session")
def defect_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four clean episodes plus one defective file per finding class."""
    out = tmp_path_factory.mktemp("defects")
    make_synthetic(out, SyntheticConfig(episodes=4, seed=5, defects=True, **SMALL))
    return out
