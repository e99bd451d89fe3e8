#!/usr/bin/python3
# test_cooperator.py: the cooperator and the job queue from Python
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Run by meson test (tests/python/run-python-test.sh) with GI_TYPELIB_PATH
# and LD_LIBRARY_PATH pointing into the build tree and PYTHONPATH at the
# source tree's python/ (the gi.overrides.Sluice module). TAP output; skips
# only when python3-gi is missing.

import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sluice_tap  # noqa: E402

sluice_tap.require_gi()
import gi  # noqa: E402
from gi.repository import GLib, Gio, Sluice  # noqa: E402

wait_until = sluice_tap.wait_until
State = Sluice.CooperativeTaskState



def drain():
    context = GLib.MainContext.default()
    while context.iteration(False):
        pass


def when_done(task):
    """Waits for the end of @task: ("ok", True) or ("error", GLib.Error)."""
    outcome = []

    def on_done(task, result, *unused):
        try:
            outcome.append(("ok", task.when_done_finish(result)))
        except GLib.Error as error:
            outcome.append(("error", error))

    task.when_done_async(None, on_done)
    wait_until(lambda: outcome)
    return outcome[0]


class HandScheduler:
    """Twisted's FakeScheduler: ticks run when the test pumps."""

    def __init__(self, cooperator):
        self.cooperator = cooperator
        self.pending = False
        cooperator.set_scheduler(self.schedule)
        cooperator.set_termination_func(lambda *unused: True)

    def schedule(self, cooperator, schedule, *unused):
        self.pending = schedule

    def pump(self):
        if self.pending:
            self.pending = False
            self.cooperator.tick()


class CooperatorTests(unittest.TestCase):
    def test_python_steps_take_turns(self):
        cooperator = Sluice.Cooperator()
        out = []

        def letters(task, things):
            if not things:
                return Sluice.StepResult.DONE
            out.append(things.pop(0))
            return Sluice.StepResult.CONTINUE

        tasks = [cooperator.cooperate(letters, list(s)) for s in ("abc", "123", "def")]
        for task in tasks:
            self.assertEqual(when_done(task), ("ok", True))
        self.assertEqual("".join(out), "a1db2ec3f")

    def test_step_waits_for_a_timeout(self):
        cooperator = Sluice.Cooperator()
        steps = []

        def step(task, unused):
            steps.append(task.props.state)
            if len(steps) == 3:
                return Sluice.StepResult.DONE

            def wake():
                task.wake()
                return GLib.SOURCE_REMOVE

            GLib.timeout_add(10, wake)
            return Sluice.StepResult.WAIT

        task = cooperator.cooperate(step, None)
        wait_until(lambda: task.props.state == State.WAITING)
        self.assertEqual(when_done(task), ("ok", True))
        self.assertEqual(len(steps), 3)

    def test_step_woken_with_an_error(self):
        cooperator = Sluice.Cooperator()

        def step(task, unused):
            error = GLib.Error.new_literal(Gio.io_error_quark(), "no such file", Gio.IOErrorEnum.NOT_FOUND)
            GLib.idle_add(lambda: task.wake_with_error(error))
            return Sluice.StepResult.WAIT

        kind, error = when_done(cooperator.cooperate(step, None))
        self.assertEqual(kind, "error")
        self.assertTrue(error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.NOT_FOUND))
        self.assertEqual(error.message, "no such file")

    def test_exception_in_step_fails_the_task_with_its_message(self):
        cooperator = Sluice.Cooperator()

        def step(task, unused):
            raise ValueError("bad input 42")

        task = cooperator.cooperate(step, None)
        kind, error = when_done(task)
        self.assertEqual(kind, "error")
        self.assertTrue(error.matches(Sluice.error_quark(), Sluice.Error.FAILED))
        self.assertIn("bad input 42", error.message)
        self.assertEqual(task.props.state, State.FAILED)

    def test_exception_without_the_override_still_ends_the_task(self):
        # The introspected method itself, without gi.overrides.Sluice: the
        # step returns 0 (SLUICE_STEP_FAILED) and the task fails.
        raw = gi.module.get_introspection_module("Sluice")
        cooperator = Sluice.Cooperator()

        def step(task, unused):
            raise ValueError("not wrapped")

        task = raw.Cooperator.cooperate(cooperator, step, None)
        kind, error = when_done(task)
        self.assertEqual(kind, "error")
        self.assertTrue(error.matches(Sluice.error_quark(), Sluice.Error.FAILED))

    def test_glib_error_raised_in_step(self):
        cooperator = Sluice.Cooperator()

        def step(task, unused):
            raise GLib.Error.new_literal(Gio.io_error_quark(), "denied", Gio.IOErrorEnum.PERMISSION_DENIED)

        kind, error = when_done(cooperator.cooperate(step, None))
        self.assertTrue(error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.PERMISSION_DENIED))

    def test_coiterate(self):
        cooperator = Sluice.Cooperator()
        outcome = []
        left = [3]

        def step(task, left):
            left[0] -= 1
            return Sluice.StepResult.DONE if left[0] == 0 else Sluice.StepResult.CONTINUE

        def on_done(cooperator, result, tag):
            outcome.append((tag, cooperator.coiterate_finish(result)))

        cooperator.coiterate_async(step, left, None, on_done, "tag")
        wait_until(lambda: outcome)
        self.assertEqual(outcome, [("tag", True)])

    def test_pause_resume_stop_by_hand(self):
        cooperator = Sluice.Cooperator(started=False)
        scheduler = HandScheduler(cooperator)
        work = []

        def step(task, unused):
            work.append(len(work) + 1)
            return Sluice.StepResult.CONTINUE

        task = cooperator.cooperate(step, None)
        self.assertFalse(cooperator.is_running())
        cooperator.start()
        scheduler.pump()
        self.assertEqual(work, [1])
        task.pause()
        scheduler.pump()
        self.assertEqual(work, [1])
        self.assertEqual(task.props.state, State.PAUSED)
        task.resume()
        with self.assertRaises(GLib.Error) as raised:
            task.resume()
        self.assertTrue(raised.exception.matches(Sluice.error_quark(), Sluice.Error.NOT_PAUSED))
        scheduler.pump()
        self.assertEqual(work, [1, 2])
        task.stop()
        with self.assertRaises(GLib.Error) as raised:
            task.stop()
        self.assertTrue(raised.exception.matches(Sluice.error_quark(), Sluice.Error.TASK_STOPPED))
        scheduler.pump()
        self.assertEqual(work, [1, 2])
        drain()

    def test_state_notified(self):
        cooperator = Sluice.Cooperator()
        HandScheduler(cooperator)
        task = cooperator.cooperate(lambda task, unused: Sluice.StepResult.CONTINUE, None)
        states = []
        task.connect("notify::state", lambda task, pspec: states.append(task.props.state))
        task.pause()
        self.assertEqual(states, [])
        drain()
        self.assertEqual(states, [State.PAUSED])
        cooperator.stop()
        drain()
        self.assertEqual(states, [State.PAUSED, State.STOPPED])

    def test_default_cooperator(self):
        self.assertIs(Sluice.Cooperator.get_default(), Sluice.Cooperator.get_default())
        task = Sluice.Cooperator.get_default().cooperate(lambda task, unused: Sluice.StepResult.DONE, None)
        self.assertEqual(when_done(task), ("ok", True))


def put(queue, channel, job, data=None):
    """Puts @job; returns a list that gets ("ok", value) or ("error", e)."""
    outcome = []

    def on_put(queue, result, *unused):
        try:
            outcome.append(("ok", queue.put_finish(result)))
        except GLib.Error as error:
            outcome.append(("error", error))

    queue.put_async(channel, job, data, None, on_put)
    return outcome


class JobQueueTests(unittest.TestCase):
    def test_python_jobs_in_channel_order(self):
        # The seed's docstring example, in Python: hello, what?, world!
        queue = Sluice.JobQueue()
        said = []

        def say(job, message):
            said.append(message)
            job.complete(message)

        def pause(job, ms):
            GLib.timeout_add(ms, lambda: job.complete(None) or GLib.SOURCE_REMOVE)

        queue.put_async("channel one", say, "hello", None, None)
        queue.put_async("channel one", pause, 200, None, None)
        world = put(queue, "channel one", say, "world!")
        queue.put_async("channel two", pause, 100, None, None)
        queue.put_async("channel two", say, "what?", None, None)
        queue.props.stop_when_empty = True
        task = queue.cooperate(Sluice.Cooperator())
        self.assertEqual(when_done(task), ("ok", True))
        drain()
        self.assertEqual(said, ["hello", "what?", "world!"])
        self.assertEqual(world, [("ok", "world!")])

    def test_python_objects_as_results(self):
        queue = Sluice.JobQueue()
        queue.cooperate(Sluice.Cooperator())
        thing = {"a": [1, 2]}
        outcome = put(queue, "c", lambda job, data: job.complete(data), thing)
        wait_until(lambda: outcome)
        self.assertEqual(outcome[0][0], "ok")
        self.assertIs(outcome[0][1], thing)

    def test_exception_in_job_fails_its_put(self):
        queue = Sluice.JobQueue()
        queue.cooperate(Sluice.Cooperator())

        def job(handle, unused):
            raise KeyError("missing key")

        failed = put(queue, "c", job)
        after = put(queue, "c", lambda handle, data: handle.complete("next"))
        wait_until(lambda: failed and after)
        kind, error = failed[0]
        self.assertEqual(kind, "error")
        self.assertIn("missing key", error.message)
        # The channel is free again.
        self.assertEqual(after, [("ok", "next")])

    def test_job_completed_from_a_thread(self):
        queue = Sluice.JobQueue()
        queue.cooperate(Sluice.Cooperator())

        def job(handle, value):
            threading.Thread(target=handle.complete, args=(value * 2,)).start()

        outcomes = [put(queue, "c", job, i) for i in range(5)]
        wait_until(lambda: all(outcomes))
        self.assertEqual([o[0] for o in outcomes], [("ok", i * 2) for i in range(5)])

    def test_run_next_without_cooperator(self):
        queue = Sluice.JobQueue()
        with self.assertRaises(GLib.Error) as raised:
            queue.run_next()
        self.assertTrue(raised.exception.matches(Sluice.error_quark(), Sluice.Error.NONE_READY))
        outcome = put(queue, "c", lambda job, data: job.complete(7))
        self.assertTrue(queue.run_next())
        wait_until(lambda: outcome)
        self.assertEqual(outcome, [("ok", 7)])

    def test_clear_answers_every_put(self):
        queue = Sluice.JobQueue()
        outcomes = [put(queue, "c%d" % (i % 3), lambda job, data: self.fail("ran")) for i in range(9)]
        queue.clear()
        drain()
        for outcome in outcomes:
            self.assertEqual(len(outcome), 1)
            self.assertTrue(outcome[0][1].matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED))


if __name__ == "__main__":
    sys.exit(sluice_tap.run(CooperatorTests, JobQueueTests))
