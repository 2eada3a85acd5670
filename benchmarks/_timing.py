"""Timing helpers shared by the benchmark scripts (run as scripts: this folder is on sys.path)."""

import statistics
import time


def timings(fn, reps, warmup=1):
    """Wall times of ``reps`` calls of ``fn()`` in seconds, after ``warmup`` untimed calls
    (first-call tracing, operator construction)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_ms(fn, reps):
    """Median wall time of ``fn()`` over ``reps`` calls after one warm-up, in milliseconds."""
    return 1e3 * statistics.median(timings(fn, reps))
