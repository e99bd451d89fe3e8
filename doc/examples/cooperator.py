#!/usr/bin/python3
# cooperator.py: a cooperative task in Python
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The Python code of doc/cooperator.md; the test suite runs it.

import sys

import gi

gi.require_version("Sluice", "1")
from gi.repository import GLib, Sluice  # noqa: E402

loop = GLib.MainLoop()
outcome = []

# [python]
def step(task, squares):
    if len(squares) == 10:
        return Sluice.StepResult.DONE
    squares.append(len(squares) ** 2)
    return Sluice.StepResult.CONTINUE


def failing_step(task, unused):
    raise ValueError("bad input")  # fails the task with this text


def on_done(task, result, name):
    try:
        task.when_done_finish(result)
        outcome.append((name, "done"))
    except GLib.Error as error:
        outcome.append((name, error.message))  # "ValueError: bad input"
    if len(outcome) == 2:
        loop.quit()


cooperator = Sluice.Cooperator.get_default()
squares = []
cooperator.cooperate(step, squares).when_done_async(None, on_done, "squares")
cooperator.cooperate(failing_step, None).when_done_async(None, on_done, "failing")
loop.run()
# [/python]

print(squares, outcome)
ok = squares == [n * n for n in range(10)] and sorted(outcome) == [
    ("failing", "ValueError: bad input"),
    ("squares", "done"),
]
sys.exit(0 if ok else 1)
