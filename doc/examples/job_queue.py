#!/usr/bin/python3
# job_queue.py: spreadflow's JobQueue docstring example, in Python
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The Python code of doc/job-queue.md; the test suite runs it. Prints
# hello, what? and world! in that order; then a job that raises.

import sys

import gi

gi.require_version("Sluice", "1")
from gi.repository import GLib, Sluice  # noqa: E402

loop = GLib.MainLoop()
said = []

# [python]
def say(job, message):
    said.append(message)
    print(message)
    job.complete(message)


def wait_seconds(job, seconds):
    GLib.timeout_add_seconds(seconds, lambda: job.complete(None) or GLib.SOURCE_REMOVE)


def broken(job, unused):
    raise KeyError("no such key")


def done(queue, result, *unused):
    try:
        print("finished:", queue.put_finish(result))
    except GLib.Error as error:
        print("failed:", error.message)  # failed: KeyError: 'no such key'
    loop.quit()


queue = Sluice.JobQueue()
queue_task = queue.cooperate(None)  # on the default cooperator

queue.put_async("channel one", say, "hello", None, None)
queue.put_async("channel one", wait_seconds, 2, None, None)
queue.put_async("channel one", say, "world!", None, None)
queue.put_async("channel one", broken, None, None, done)

queue.put_async("channel two", wait_seconds, 1, None, None)
queue.put_async("channel two", say, "what?", None, None)

loop.run()
# [/python]

queue_task.stop()
sys.exit(0 if said == ["hello", "what?", "world!"] else 1)
