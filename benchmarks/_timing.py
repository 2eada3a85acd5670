"""Timing helper shared by the benchmark scripts (run as scripts: this folder is on sys.path)."""

import statistics
import time


def median_ms(fn, reps):
    """Median wall time of ``fn()`` over ``reps`` calls, in milliseconds, after one warm-up call
    (first-call tracing, operator construction)."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)
