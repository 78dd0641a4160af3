import os

# One thread each for numba and torch: on a 2-core machine pytest plus thread
# pools oversubscribe the cores (and the kernels are tested, not timed, here).
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

DATA = os.path.join(os.path.dirname(__file__), "..", "examples", "data")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def mo_frames():
    """A few real DFT frames (mlearn Mo) shipped with the examples."""
    import ase.io

    return ase.io.read(os.path.join(DATA, "Mo_test.extxyz.xz"), ":")
