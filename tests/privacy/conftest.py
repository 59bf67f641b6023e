"""Privacy tests run single-threaded (the machine is shared)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(1)


# the in-process Flower Grid of the fl tests (tests/fl/local_grid.py), shared rather than copied
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fl"))
