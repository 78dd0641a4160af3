"""OpenMP's wait policy, set before torch or numba start their OpenMP threads.

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
