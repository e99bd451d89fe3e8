#!/usr/bin/python3
# worker_pool.py: the baseline of bench/worker-run: Python's own
# multiprocessing.Pool.imap, one call per round trip (chunksize=1), of the
# functions the process worker bench calls: trivial (returns its argument)
# and busy (keeps a core busy for 50 microseconds).
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Usage: worker_pool.py WORKLOAD N_CALLS N_PROCESSES
# Prints one line: calls/s (pool start-up excluded).

import multiprocessing
import sys
import time


def trivial(x):
    return x


def busy(x):
    end = time.perf_counter() + 50e-6
    while time.perf_counter() < end:
        pass
    return x


def main():
    workload, n, procs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    func = trivial if workload == "trivial" else busy
    with multiprocessing.Pool(procs) as pool:
        # Warm up: every process started and answering.
        list(pool.imap(func, range(procs * 4), chunksize=1))
        start = time.perf_counter()
        total = 0
        for r in pool.imap(func, range(n), chunksize=1):
            total += r
        elapsed = time.perf_counter() - start
    assert total == n * (n - 1) // 2
    print("%.1f" % (n / elapsed))


if __name__ == "__main__":
    main()
