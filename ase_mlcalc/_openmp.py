"""Thread pools: OpenMP's wait policy, set before torch or numba start their OpenMP threads, and
:func:`set_threads`.

libgomp's default (used by torch and by numba's ``omp`` threading layer) keeps idle threads
spin-waiting after each parallel region, where they take the cores that the other runtime and other
processes need. Measured on 2 cores with one other CPU-bound process: a GAP energy+forces call
(54-atom Mo, SOAP n_max=l_max=8, 2000 sparse points) took 3100 µs/atom with torch and numba at 2
threads and spinning waits, 220 µs/atom with sleeping ones (``PASSIVE``), 240 µs/atom on one thread.

Effective only when ase_mlcalc is imported before torch or numba start OpenMP; an explicit
``OMP_WAIT_POLICY`` in the environment wins.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def set_threads(n):
    """Size torch's, numba's (and, with threadpoolctl, BLAS's) thread pools to ``n`` threads (int >= 1).

    Used by ``ase-mlcalc train/compare --threads`` and by the LAMMPS plugin, which calls it with 1 unless
    ``pair_style mlcalc FILE threads N`` or $ASE_MLCALC_NUM_THREADS says otherwise: one thread per MPI
    rank, so that ``mpiexec -n <cores>`` never oversubscribes. numba's pool cannot grow beyond the
    $NUMBA_NUM_THREADS it was started with. ValueError for ``n`` < 1.
    """
    import numba
    import torch

    from .training.settings import check_positive_int

    n = check_positive_int("threads", n)
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:  # settable once only, before any inter-op work: keep what is there
        pass
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(n)
