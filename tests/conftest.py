import os

import numpy as np
import pytest

DATA = os.path.join(os.path.dirname(__file__), "..", "examples", "data")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def mo_frames():
    """A few real DFT frames (mlearn Mo) shipped with the examples."""
    import ase.io

    return ase.io.read(os.path.join(DATA, "Mo_test.extxyz.xz"), ":")
