#!/usr/bin/python3
# pipeline_threads.py: the Python baseline of the pipeline benchmark
# (bench/pipeline-bench.c runs it): a thread pipeline of the shape of jobq's
# keep_order job manager, written for the bench with the standard library
# only.
#
#   pipeline_threads.py N [WORK_THREADS]
#
# A feeder thread puts the numbers 0 .. N-1 into a queue.Queue(1024); one
# parse thread (add1) -> queue.Queue(1024) -> WORK_THREADS (2) work threads
# (multi2) -> queue.Queue(1024) -> one sink thread, which puts the results
# back in input order by their sequence number (a dict of early arrivals)
# and checks the order and the sum. Prints "SECONDS N" (start-up
# excluded); exits 1 on a wrong result.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import queue
import sys
import threading
import time

CAPACITY = 1024
END = None


def feeder(n, out):
    for i in range(n):
        out.put((i, i))
    out.put(END)


def parse(inp, out, n_work):
    while True:
        job = inp.get()
        if job is END:
            break
        seq, value = job
        out.put((seq, value + 1))
    for _ in range(n_work):
        out.put(END)


def work(inp, out):
    while True:
        job = inp.get()
        if job is END:
            break
        seq, value = job
        out.put((seq, value * 2))
    out.put(END)


def sink(inp, n_work, result):
    early = {}
    next_seq = 0
    total = 0
    ends = 0
    ok = True
    while ends < n_work:
        job = inp.get()
        if job is END:
            ends += 1
            continue
        early[job[0]] = job[1]
        while next_seq in early:
            value = early.pop(next_seq)
            if value != (next_seq + 1) * 2:
                ok = False
            total += value
            next_seq += 1
    result.append((next_seq, total, ok and not early))


def main():
    n = int(sys.argv[1])
    n_work = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    q_in = queue.Queue(CAPACITY)
    q_parsed = queue.Queue(CAPACITY)
    q_out = queue.Queue(CAPACITY)
    result = []
    threads = [threading.Thread(target=parse, args=(q_in, q_parsed, n_work))]
    threads += [threading.Thread(target=work, args=(q_parsed, q_out)) for _ in range(n_work)]
    threads.append(threading.Thread(target=sink, args=(q_out, n_work, result)))
    threads.append(threading.Thread(target=feeder, args=(n, q_in)))
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    count, total, ok = result[0]
    if not ok or count != n or total != n * (n + 1):
        print("pipeline_threads.py: wrong result", count, total, file=sys.stderr)
        sys.exit(1)
    print("%.6f %d" % (seconds, n))


if __name__ == "__main__":
    main()
