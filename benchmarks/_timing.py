"""Shared timing helper for the benchmark scripts: best-of-N wall time."""

import time


def best_time(func, *, repeat=5, min_time=0.05, warmup=1):
    """Best wall time (s) of one call of ``func()``.

    Each of ``repeat`` samples runs ``func`` enough times to last at least ``min_time`` s and
    reports the mean per call; the minimum over samples is returned (least disturbed by noise).
    """
    for _ in range(warmup):
        func()
    t0 = time.perf_counter()
    func()
    once = time.perf_counter() - t0
    number = max(1, int(min_time / max(once, 1e-9)))
    if once > 1.0:            # slow peers (ASE on 32k atoms): fewer samples
        repeat = min(repeat, 2)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            func()
        best = min(best, (time.perf_counter() - t0) / number)
    return best
