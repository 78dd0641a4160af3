"""Shared timing helper for the benchmark scripts."""

import statistics
import time


def median_time(fn, repeat=5, warmup=1):
    """Median wall time (s) of ``fn()`` over ``repeat`` runs after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)
