#!/usr/bin/python3
# test_task_queue.py: Sluice.TaskQueue from Python, through GObject Introspection
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Run by meson test (tests/python/run-python-test.sh) with GI_TYPELIB_PATH and
# LD_LIBRARY_PATH pointing into the build tree. TAP output. Skips (a
# "1..0 # SKIP reason" plan) only when python3-gi is missing.
#
# In Python, Sluice.TaskQueue.run_async and run_finish are the value forms
# (sluice_task_queue_run_value_async, sluice_task_queue_run_finish_value),
# wrapped by gi.overrides.Sluice: run_async(func, *args, priority=,
# cancellable=, callback=, user_data=()) runs func(*args), which returns any
# Python object or raises (the exception becomes run_finish's GLib.Error);
# the task's cancellable is Gio.Cancellable.get_current() in func. (Raw
# PyGObject 3.42 wanted func_data as a tuple, and failed with "expected
# tuple for callback user_data" on a bare value.)

import gc
import os
import sys
import threading
import unittest
import weakref

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sluice_tap  # noqa: E402

sluice_tap.require_gi()
from gi.repository import GLib, Gio, Sluice  # noqa: E402

DEADLINE_S = sluice_tap.DEADLINE_S
wait_until = sluice_tap.wait_until


class Thing:
    """A Python object that only Python knows: it must arrive as itself."""

    def __init__(self, n):
        self.n = n


def io_error(message, code=Gio.IOErrorEnum.FAILED):
    return GLib.Error.new_literal(Gio.io_error_quark(), message, code)



class Outcome:
    """The outcome of one run_async, collected by its callback."""

    def __init__(self):
        self.done = False
        self.value = None
        self.error = None
        self.user_data = None
        self.callback_thread = None

    def callback(self, source, result, *user_data):
        self.callback_thread = threading.current_thread()
        self.user_data = user_data
        try:
            self.value = source.run_finish(result)
        except GLib.Error as error:
            self.error = error
        self.done = True


def run(queue, func, func_data=(), priority=GLib.PRIORITY_DEFAULT, cancellable=None):
    """Runs func(*func_data) in queue and iterates the main context until it
    completes (gi.overrides.Sluice's run_async)."""
    outcome = Outcome()
    queue.run_async(
        func, *func_data, priority=priority, cancellable=cancellable, callback=outcome.callback
    )
    wait_until(lambda: outcome.done, "the task to complete")
    return outcome


class TaskQueueTests(unittest.TestCase):
    def setUp(self):
        self.queue = Sluice.TaskQueue.new(2)

    def tearDown(self):
        done = []
        self.queue.shutdown_async(False, None, lambda *unused: done.append(True))
        wait_until(lambda: done, "the shutdown")
        self.queue = None
        gc.collect()

    def test_value_forms_are_the_bindings_run_async(self):
        # The override wraps the introspected methods, whose symbols say
        # which C functions they are.
        raw = Sluice.TaskQueue.__mro__[1]
        self.assertEqual(Sluice.TaskQueue.__module__, "gi.overrides.Sluice")
        self.assertEqual(raw.run_async.get_symbol(), "sluice_task_queue_run_value_async")
        self.assertEqual(raw.run_finish.get_symbol(), "sluice_task_queue_run_finish_value")
        self.assertFalse(hasattr(Sluice.TaskQueue, "run_value_async"))
        self.assertFalse(hasattr(Sluice.TaskQueue, "run_finish_value"))

    def test_objects_arrive_unchanged(self):
        # Mutable objects arrive as themselves, the others equal.
        for obj in (Thing(1), {"a": [1, 2]}, [Thing(2)], "text", 7, 2.5, True, None):
            outcome = run(self.queue, lambda o=obj: o)
            self.assertIsNone(outcome.error, repr(obj))
            if isinstance(obj, (Thing, dict, list)):
                self.assertIs(outcome.value, obj)
            else:
                self.assertEqual(outcome.value, obj)

    def test_function_runs_in_a_queue_thread_callback_on_the_main_thread(self):
        threads = []

        def func():
            threads.append(threading.current_thread())
            # The task's cancellable is the thread's current one.
            self.assertIs(Gio.Cancellable.get_current(), cancellable)
            return "done"

        cancellable = Gio.Cancellable()
        outcome = run(self.queue, func, cancellable=cancellable)
        self.assertEqual(outcome.value, "done")
        self.assertEqual(len(threads), 1)
        self.assertIsNot(threads[0], threading.main_thread())
        self.assertIs(outcome.callback_thread, threading.main_thread())

    def test_glib_error_arrives_as_the_error_of_run_finish(self):
        def func():
            raise io_error("no such thing", Gio.IOErrorEnum.NOT_FOUND)

        outcome = run(self.queue, func)
        self.assertIsNone(outcome.value)
        self.assertIsNotNone(outcome.error)
        self.assertEqual(outcome.error.domain, "g-io-error-quark")
        self.assertEqual(outcome.error.code, Gio.IOErrorEnum.NOT_FOUND)
        self.assertEqual(outcome.error.message, "no such thing")

    def test_any_arguments_and_exceptions(self):
        outcome = run(self.queue, pow, (2, 70))
        self.assertEqual(outcome.value, 2**70)
        outcome = run(self.queue, lambda: [][1])
        self.assertIsNone(outcome.value)
        self.assertTrue(outcome.error.matches(Sluice.error_quark(), Sluice.Error.FAILED))
        self.assertEqual(outcome.error.message, "IndexError: list index out of range")

    def test_func_data_is_a_tuple_of_arguments(self):
        received = []
        thing = Thing(3)

        def func(*args):
            received.append(args)
            return args[-1] if args else None

        outcome = run(self.queue, func, (1, "two", thing))
        self.assertEqual(received[-1], (1, "two", thing))
        self.assertIs(received[-1][2], thing)
        self.assertIs(outcome.value, thing)

        outcome = run(self.queue, func, ())
        self.assertEqual(received[-1], ())
        self.assertIsNone(outcome.value)

    def test_callback_user_data(self):
        outcome = Outcome()
        self.queue.run_async(lambda: 1, callback=outcome.callback, user_data=("a", 2))
        wait_until(lambda: outcome.done, "the task to complete")
        self.assertEqual(outcome.value, 1)
        self.assertEqual(outcome.user_data, ("a", 2))

    def test_func_data_released_on_the_main_thread_before_the_callback(self):
        released_in = []

        class Tracked:
            def __del__(self):
                released_in.append(threading.current_thread())

        outcome = Outcome()
        seen_at_callback = []

        def callback(source, result):
            seen_at_callback.append(len(released_in))
            outcome.callback(source, result)

        self.queue.run_async(lambda tracked: "ran", Tracked(), callback=callback)
        wait_until(lambda: outcome.done, "the task to complete")
        self.assertEqual(outcome.value, "ran")
        self.assertEqual(seen_at_callback, [1])
        self.assertEqual(released_in, [threading.main_thread()])

    def test_cancelled_before_it_starts(self):
        ran = []
        cancellable = Gio.Cancellable()
        cancellable.cancel()
        outcome = run(self.queue, lambda: ran.append(1), cancellable=cancellable)
        self.assertEqual(ran, [])
        self.assertTrue(outcome.error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED))

    def test_refused_after_shutdown(self):
        queue = Sluice.TaskQueue.new(1)
        shut = []
        queue.shutdown_async(False, None, lambda *unused: shut.append(True))
        wait_until(lambda: shut, "the shutdown")
        ran = []
        outcome = run(queue, lambda: ran.append(1))
        self.assertEqual(ran, [])
        self.assertTrue(outcome.error.matches(Sluice.error_quark(), Sluice.Error.STOPPED))

    def test_many_tasks_each_result_to_its_caller(self):
        outcomes = []
        for n in range(200):
            outcome = Outcome()
            outcomes.append(outcome)
            self.queue.run_async(Thing, n, callback=outcome.callback)
        wait_until(lambda: all(o.done for o in outcomes), "every task to complete")
        self.assertEqual([o.value.n for o in outcomes], list(range(200)))

    def test_equal_priorities_start_in_queuing_order(self):
        queue = Sluice.TaskQueue.new(1)
        order = []
        gate = threading.Event()
        outcomes = [Outcome() for _ in range(21)]
        queue.run_async(gate.wait, DEADLINE_S, callback=outcomes[0].callback)
        for n in range(1, 21):
            queue.run_async(
                order.append,
                n,
                priority=GLib.PRIORITY_LOW if n % 2 else GLib.PRIORITY_DEFAULT,
                callback=outcomes[n].callback,
            )
        gate.set()
        wait_until(lambda: all(o.done for o in outcomes), "every task to complete")
        self.assertEqual(order, list(range(2, 21, 2)) + list(range(1, 21, 2)))
        shut = []
        queue.shutdown_async(False, None, lambda *unused: shut.append(True))
        wait_until(lambda: shut, "the shutdown")

    def test_queue_is_freed(self):
        queue = Sluice.TaskQueue.new(1)
        ref = weakref.ref(queue)
        run(queue, lambda: None)
        del queue
        gc.collect()
        wait_until(lambda: ref() is None, "the queue to be freed")


if __name__ == "__main__":
    sys.exit(sluice_tap.run(TaskQueueTests))
