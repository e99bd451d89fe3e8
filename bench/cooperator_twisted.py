#!/usr/bin/python3
# cooperator_twisted.py: the seeds on Twisted, for bench/cooperator-run
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Usage: cooperator_twisted.py steps N_STEPS N_TASKS
#        cooperator_twisted.py jobs N_JOBS N_CHANNELS IN_FLIGHT
# Prints one line "RATE <per second>". Needs Debian's python3-twisted.
#
# "steps": Twisted's own Cooperator (the seed of SluiceCooperator) runs
# N_TASKS generators of N_STEPS / N_TASKS trivial steps, default settings.
# "jobs": spreadflow's JobQueue semantics, written here from the seed's
# documentation (spreadflow-core is not packaged), run by Twisted's
# cooperate: N_JOBS trivial jobs over N_CHANNELS channels, IN_FLIGHT puts
# outstanding per channel, every second job completing later (from
# reactor.callLater(0)), as the C bench does with an idle source.

import sys
import time

from twisted.internet import defer, reactor, task


def bench_steps(n_steps, n_tasks):
    per_task = n_steps // n_tasks
    done = [0]

    def worker():
        for _ in range(per_task):
            done[0] += 1
            yield None

    cooperator = task.Cooperator()
    start = time.perf_counter()
    finished = defer.DeferredList([cooperator.coiterate(worker()) for _ in range(n_tasks)])
    finished.addCallback(lambda _: reactor.stop())
    reactor.run()
    elapsed = time.perf_counter() - start
    assert done[0] == per_task * n_tasks
    return done[0] / elapsed


class QueueNoneReady(Exception):
    pass


class JobQueue:
    """The seed's semantics: a backlog scanned for the first free channel."""

    def __init__(self):
        self._backlog = []
        self._jobs = {}
        self._wakeup = None
        self.stopempty = False

    def put(self, channel, func, *args):
        completed = defer.Deferred()
        self._backlog.append((completed, channel, func, args))
        self._wake()
        return completed

    def get(self):
        active = set(channel for _, channel in self._jobs.values())
        for idx, entry in enumerate(self._backlog):
            if entry[1] not in active:
                return self._backlog.pop(idx)
        raise QueueNoneReady()

    def __iter__(self):
        return self

    def __next__(self):
        if self.stopempty and not self._backlog and not self._jobs:
            raise StopIteration()
        try:
            completed, channel, func, args = self.get()
        except QueueNoneReady:
            if not self._wakeup:
                self._wakeup = defer.Deferred()
        else:
            result = defer.maybeDeferred(func, *args)
            self._jobs[completed] = (result, channel)
            result.addBoth(self._job_done, completed)
            result.chainDeferred(completed)
        return self._wakeup

    def _wake(self):
        if self._wakeup:
            wakeup, self._wakeup = self._wakeup, None
            wakeup.callback(self)

    def _job_done(self, result, completed):
        self._jobs.pop(completed)
        self._wake()
        return result


def bench_jobs(n_jobs, n_channels, in_flight):
    per_channel = n_jobs // n_channels
    queue = JobQueue()
    state = {"done": 0}
    remaining = [per_channel] * n_channels

    def job(n):
        if n % 2 == 0:
            return n
        later = defer.Deferred()
        reactor.callLater(0, later.callback, n)
        return later

    def on_done(result, channel):
        state["done"] += 1
        if remaining[channel] > 0:
            put(channel)
        elif state["done"] == per_channel * n_channels:
            queue.stopempty = True
            queue._wake()

    def put(channel):
        remaining[channel] -= 1
        queue.put(channel, job, remaining[channel]).addCallback(on_done, channel)

    for channel in range(n_channels):
        for _ in range(min(in_flight, per_channel)):
            put(channel)
    start = time.perf_counter()
    task.cooperate(queue).whenDone().addCallback(lambda _: reactor.stop())
    reactor.run()
    elapsed = time.perf_counter() - start
    assert state["done"] == per_channel * n_channels
    return state["done"] / elapsed


def main():
    if sys.argv[1] == "steps":
        rate = bench_steps(int(sys.argv[2]), int(sys.argv[3]))
    else:
        rate = bench_jobs(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    print("RATE %.1f" % rate)


if __name__ == "__main__":
    main()
