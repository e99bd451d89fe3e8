#!/usr/bin/python3
# test_workers.py: named calls and thread workers from Python, through
# GObject Introspection
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Run by meson test (tests/python/run-python-test.sh) with GI_TYPELIB_PATH and
# LD_LIBRARY_PATH pointing into the build tree. TAP output. Skips (a
# "1..0 # SKIP reason" plan) only when python3-gi is missing.

import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sluice_tap  # noqa: E402

sluice_tap.require_gi()
from gi.repository import GLib, GObject, Gio, Sluice  # noqa: E402

wait_until = sluice_tap.wait_until


class QueueCase(unittest.TestCase):
    """A task queue, shut down at the end; thread workers and calls."""

    def setUp(self):
        self.queue = Sluice.TaskQueue.new(1)
        self.threads = []

    def tearDown(self):
        done = []
        self.queue.shutdown_async(False, None, lambda q, res: done.append(q.shutdown_finish(res)))
        wait_until(lambda: done)
        self.assertEqual(done, [True])

    def worker(self, series=None):
        worker = Sluice.ThreadWorker.new(series, 1)

        def add(args, cancellable, data):
            a, b = args.unpack()
            self.threads.append(threading.get_ident())
            return GLib.Variant("(i)", (a + b,))

        def words(args, cancellable, data):
            (text,) = args.unpack()
            return GLib.Variant("(as)", (text.split(),))

        def fail(args, cancellable, data):
            raise GLib.Error.new_literal(Gio.io_error_quark(), "no entry", Gio.IOErrorEnum.NOT_FOUND)

        worker.register("add", "(ii)", add, None)
        worker.register("words", "(s)", words, None)
        worker.register("fail", None, fail, None)
        return worker

    def finish_until_done(self, worker, outs):
        while not all(outs):
            worker.finish_all()
            GLib.MainContext.default().iteration(False)
        self.assertEqual([o[0].unpack() for o in outs], [(i * 10,) for i in range(len(outs))])

    def call(self, series, name, args, priority=GLib.PRIORITY_DEFAULT, timeout=0,
             cancellable=None):
        out = []

        def done(queue, res):
            try:
                out.append(queue.call_finish(res))
            except GLib.Error as e:
                out.append(e)

        self.queue.call_async(series, name, args, priority, timeout, cancellable, done)
        return out


class NamedCalls(QueueCase):

    def test_named_calls_with_variant_args(self):
        self.queue.hire(self.worker())
        outs = [self.call(None, "add", GLib.Variant("(ii)", (i, 100))) for i in range(20)]
        words = self.call(None, "words", GLib.Variant("(s)", ("an ordered result",)))
        wait_until(lambda: all(outs) and words)
        self.assertEqual([o[0].unpack() for o in outs], [(i + 100,) for i in range(20)])
        self.assertEqual(words[0].unpack(), (["an", "ordered", "result"],))
        # One thread ran them all, not this one.
        self.assertEqual(len(set(self.threads)), 1)
        self.assertNotEqual(self.threads[0], threading.get_ident())

    def test_produce_call_results_in_order(self):
        # An ordered producer fills its slots with named calls' results:
        # GLib.Variants, in call order, through the window.
        self.queue.hire(self.worker())
        producer = Sluice.OrderedItemProducer(window=8, task_queue=self.queue)
        got = []

        def consume(consumerator, *unused):
            for item in consumerator:
                got.append(item.unpack())
            return len(got)

        producer.start(consume)
        for i in range(50):
            wait_until(producer.is_ready)
            producer.produce_call(None, "add", GLib.Variant("(ii)", (i, 1)), GLib.PRIORITY_DEFAULT,
                                  0, None, None)
        self.assertEqual(producer.stop(), 50)
        self.assertEqual(got, [(i + 1,) for i in range(50)])

    def test_errors(self):
        self.queue.hire(self.worker())
        failed = self.call(None, "fail", None)
        bad = self.call(None, "add", GLib.Variant("(s)", ("x",)))
        unknown = self.call(None, "nope", None)
        wait_until(lambda: failed and bad and unknown)
        self.assertTrue(failed[0].matches(Gio.io_error_quark(), Gio.IOErrorEnum.NOT_FOUND))
        self.assertEqual(failed[0].message, "no entry")
        self.assertTrue(bad[0].matches(Sluice.error_quark(), Sluice.Error.INVALID_ARGUMENTS))
        self.assertTrue(unknown[0].matches(Sluice.error_quark(), Sluice.Error.UNKNOWN_FUNCTION))

    def test_series(self):
        self.queue.hire(self.worker(["gpu"]))
        other = self.call("cpu", "add", GLib.Variant("(ii)", (1, 2)))
        gpu = self.call("gpu", "add", GLib.Variant("(ii)", (3, 4)))
        wait_until(lambda: gpu)
        self.assertEqual(gpu[0].unpack(), (7,))
        self.assertEqual(other, [])
        self.assertEqual(self.queue.get_n_calls(), 1)
        # The shutdown in tearDown fails the unserved one.
        done = []
        self.queue.shutdown_async(False, None, lambda q, res: done.append(q.shutdown_finish(res)))
        wait_until(lambda: done and other)
        self.assertTrue(other[0].matches(Sluice.error_quark(), Sluice.Error.NO_WORKER))


class PyWorker(GObject.Object, Sluice.Worker):
    """A SluiceWorker written in Python: it keeps the tasks it gets and
    completes them when told to (from the main context), serves the
    series "py" besides the default one."""

    def __init__(self, capacity=2):
        super().__init__()
        self.capacity = capacity
        self.held = []
        self.timed_out = []
        self.stopped = False
        self.run_threads = []
        # Each virtual function called by the queue, with its thread.
        self.vfuncs = []

    def do_get_series(self):
        return ["py"]

    def do_get_capacity(self):
        return self.capacity

    def do_run_task(self, task):
        # TaskQueue.hire (the override) has the queue call this on the
        # hiring thread's main context; hire_full(..., NONE), from any thread.
        self.run_threads.append(threading.get_ident())
        self.vfuncs.append(("run_task", threading.get_ident()))
        # Its "cancelled" signal (Cancellable.connect is g_cancellable_connect).
        GObject.Object.connect(task.get_cancellable(), "cancelled",
                               lambda c: self.vfuncs.append(("cancelled", threading.get_ident())))
        self.held.append(task)

    def do_stop_async(self, cancellable, callback, *user_data):
        self.stopped = True
        self.vfuncs.append(("stop", threading.get_ident()))
        # The callback carries its C user data itself.
        Gio.Task.new(self, cancellable, lambda source, res, *d: callback(source, res),
                     None).return_boolean(True)

    def do_stop_finish(self, result):
        return result.propagate_boolean()

    def do_crash(self):
        self.vfuncs.append(("crash", threading.get_ident()))
        held, self.held = self.held, []
        return held

    def do_task_timed_out(self, task):
        self.vfuncs.append(("timed_out", threading.get_ident()))
        self.timed_out.append(task.get_name())

    def finish_all(self):
        held, self.held = self.held, []
        for task in held:
            a, b = task.get_args().unpack()
            task.return_value(GLib.Variant("(i)", (a * b,)))


class PythonWorkers(QueueCase):
    """SluiceWorker implemented in Python (its vfuncs), hired by a queue."""

    def test_python_worker_runs_calls(self):
        worker = PyWorker()
        self.queue.hire(worker)
        outs = [self.call("py", "mul", GLib.Variant("(ii)", (i, 10))) for i in range(5)]
        wait_until(lambda: len(worker.held) == 2)
        # Its capacity: two at once; the others wait in the queue.
        self.assertEqual(self.queue.get_n_calls(), 5)
        self.finish_until_done(worker, outs)
        # tearDown's shutdown stops it through do_stop_async.
        done = []
        self.queue.shutdown_async(False, None, lambda q, res: done.append(q.shutdown_finish(res)))
        wait_until(lambda: done)
        self.assertTrue(worker.stopped)

    def test_capacity_changed(self):
        worker = PyWorker()
        self.queue.hire(worker)
        outs = [self.call("py", "mul", GLib.Variant("(ii)", (i, 10))) for i in range(5)]
        wait_until(lambda: len(worker.held) == 2)
        # The queue reads the capacity again when told, and gives more.
        worker.capacity = 4
        worker.capacity_changed()
        wait_until(lambda: len(worker.held) == 4)
        self.assertEqual(self.queue.get_n_calls(), 5)
        self.finish_until_done(worker, outs)

    def test_fire_gives_back_what_crash_returns(self):
        worker = PyWorker(capacity=3)
        self.queue.hire(worker)
        outs = [self.call(None, "add", GLib.Variant("(ii)", (i, 1))) for i in range(3)]
        wait_until(lambda: len(worker.held) == 3)
        # Fired: the tasks that do_crash returns run on a thread worker.
        self.queue.hire(self.worker())
        self.assertTrue(self.queue.fire(worker))
        wait_until(lambda: all(outs))
        self.assertEqual([o[0].unpack() for o in outs], [(i + 1,) for i in range(3)])

    def test_timeout_reaches_python_worker(self):
        worker = PyWorker()
        self.queue.hire(worker)
        out = self.call(None, "mul", GLib.Variant("(ii)", (2, 3)), timeout=50)
        wait_until(lambda: out)
        self.assertTrue(out[0].matches(Gio.io_error_quark(), Gio.IOErrorEnum.TIMED_OUT))
        self.assertEqual(worker.timed_out, ["mul"])
        # Completing it late has no effect.
        worker.finish_all()

    def test_resigned_worker_is_fired(self):
        worker = PyWorker()
        self.queue.hire(worker)
        out = self.call(None, "add", GLib.Variant("(ii)", (4, 5)))
        wait_until(lambda: len(worker.held) == 1)
        self.queue.hire(self.worker())
        worker.resign(GLib.Error.new_literal(Gio.io_error_quark(), "gone", Gio.IOErrorEnum.CLOSED))
        wait_until(lambda: out)
        self.assertEqual(out[0].unpack(), (9,))
        self.assertEqual(worker.held, [])


class HireOnContext(QueueCase):
    """hire_full and SLUICE_HIRE_RUN_ON_CONTEXT: a Python worker's
    do_run_task on the hiring thread, beside a thread worker whose thread
    hands it its tasks ("grow" makes room for more, in that thread)."""

    def grow_worker(self, py_worker):
        worker = self.worker(["t"])
        grown = []
        # Each grow waits until its call_async has returned: the thread
        # worker's thread, not this one, hands the tasks over.
        self.released = threading.Semaphore(0)

        def grow(args, cancellable, data):
            self.released.acquire()
            (n,) = args.unpack()
            grown.append(threading.get_ident())
            py_worker.capacity += n
            py_worker.capacity_changed()
            return None

        worker.register("grow", "(u)", grow, None)
        return worker, grown

    def run_beside_thread_worker(self, hire):
        py_worker = PyWorker(capacity=1)
        thread_worker, grown = self.grow_worker(py_worker)
        hire(py_worker)
        self.queue.hire(thread_worker)
        outs = [self.call("py", "mul", GLib.Variant("(ii)", (i, 10))) for i in range(6)]
        wait_until(lambda: len(py_worker.held) == 1)
        for n, total in ((1, 2), (4, 6)):
            self.call("t", "grow", GLib.Variant("(u)", (n,)))
            self.released.release()
            wait_until(lambda: len(py_worker.run_threads) == total)
        wait_until(lambda: len(py_worker.held) == 6)
        # In the order of the calls.
        self.assertEqual([t.get_args().unpack()[0] for t in py_worker.held], list(range(6)))
        self.finish_until_done(py_worker, outs)
        return py_worker.run_threads, set(grown)

    def test_hire_full_runs_on_context(self):
        threads, grew_in = self.run_beside_thread_worker(
            lambda w: self.queue.hire_full(w, Sluice.HireFlags.RUN_ON_CONTEXT))
        self.assertNotIn(threading.get_ident(), grew_in)
        self.assertEqual(threads, [threading.get_ident()] * 6)

    def test_override_hire_runs_python_on_context(self):
        threads, grew_in = self.run_beside_thread_worker(self.queue.hire)
        self.assertEqual(threads, [threading.get_ident()] * 6)

    def test_hire_full_none_runs_anywhere(self):
        # The control: hired as C does, the tasks the thread worker's thread
        # hands over reach do_run_task in that thread.
        threads, grew_in = self.run_beside_thread_worker(
            lambda w: self.queue.hire_full(w, Sluice.HireFlags.NONE))
        self.assertEqual(threads[0], threading.get_ident())
        self.assertEqual(set(threads[1:]), grew_in)

    def test_fire_with_deliveries_pending(self):
        worker = PyWorker(capacity=3)
        self.queue.hire_full(worker, Sluice.HireFlags.RUN_ON_CONTEXT)
        outs = [self.call(None, "add", GLib.Variant("(ii)", (i, 1))) for i in range(3)]
        # Handed over, not given yet: never from inside call_async.
        self.assertEqual(worker.held, [])
        self.assertTrue(self.queue.fire(worker))
        self.queue.hire(self.worker())
        wait_until(lambda: all(outs))
        self.assertEqual([o[0].unpack() for o in outs], [(i + 1,) for i in range(3)])
        # Each ran once, on the thread worker; none reached the fired one.
        self.assertEqual(len(self.threads), 3)
        for _ in range(5):
            GLib.MainContext.default().iteration(False)
        self.assertEqual(worker.run_threads, [])


def in_thread_with_context(func):
    """Runs func(context) in a new thread whose thread-default main context
    is a new one; returns the thread, started."""

    def run():
        context = GLib.MainContext.new()
        context.push_thread_default()
        try:
            func(context)
        finally:
            context.pop_thread_default()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


class EveryVfuncOnContext(QueueCase):
    """A Python worker (hired with RUN_ON_CONTEXT by the override) hears
    from the queue on the hiring thread only: a timeout that fires on
    another thread's context, a fire or a shutdown from another thread
    reach it here (and the cancels of its tasks' cancellables), and a call
    cancelled before its turn never does."""

    def test_timed_out_on_the_hiring_thread(self):
        worker = PyWorker(capacity=1)
        self.queue.hire(worker)
        given = threading.Event()
        out = []

        def caller(context):
            self.queue.call_async(None, "mul", GLib.Variant("(ii)", (2, 3)), GLib.PRIORITY_DEFAULT,
                                  1, None, lambda q, res: out.append(res))
            # The timeout fires on this context once the worker has the task.
            given.wait()
            while not out:
                context.iteration(True)

        thread = in_thread_with_context(caller)
        wait_until(lambda: worker.held)
        given.set()
        thread.join()
        wait_until(lambda: worker.timed_out)
        me = threading.get_ident()
        self.assertEqual(worker.vfuncs, [("run_task", me), ("cancelled", me), ("timed_out", me)])
        worker.finish_all()

    def test_fired_from_another_thread(self):
        worker = PyWorker(capacity=2)
        self.queue.hire(worker)
        outs = [self.call(None, "add", GLib.Variant("(ii)", (i, 1))) for i in range(3)]
        wait_until(lambda: len(worker.held) == 2)
        fired = []
        threading.Thread(target=lambda: fired.append(self.queue.fire(worker))).start()
        wait_until(lambda: fired and ("crash", threading.get_ident()) in worker.vfuncs)
        self.assertEqual(fired, [True])
        me = threading.get_ident()
        # The crash, then the cancellables of the tasks it held.
        self.assertEqual(worker.vfuncs, [("run_task", me), ("run_task", me), ("crash", me),
                                         ("cancelled", me), ("cancelled", me)])
        self.queue.hire(self.worker())
        wait_until(lambda: all(outs))
        self.assertEqual([o[0].unpack() for o in outs], [(i + 1,) for i in range(3)])

    def test_stopped_on_the_hiring_thread(self):
        worker = PyWorker()
        self.queue.hire(worker)
        done = []

        def shut_down(context):
            self.queue.shutdown_async(False, None, lambda q, res: done.append(q.shutdown_finish(res)))
            while not done:
                context.iteration(True)

        thread = in_thread_with_context(shut_down)
        wait_until(lambda: done)
        thread.join()
        self.assertEqual(done, [True])
        self.assertEqual(worker.vfuncs, [("stop", threading.get_ident())])

    def test_cancelled_call_is_not_given(self):
        worker = PyWorker(capacity=1)
        self.queue.hire(worker)
        cancellable = Gio.Cancellable()
        out = self.call(None, "mul", GLib.Variant("(ii)", (2, 3)), cancellable=cancellable)
        cancellable.cancel()
        wait_until(lambda: out)
        self.assertTrue(out[0].matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED))
        for _ in range(5):
            GLib.MainContext.default().iteration(False)
        self.assertEqual(worker.vfuncs, [])
        self.assertEqual(self.queue.get_n_calls(), 0)


def helpers(argv, n_processes):
    """A process worker whose helpers may take a minute to start: under
    AddressSanitizer on a loaded machine a Python helper took over the
    default 10 s."""
    return Sluice.ProcessWorker(argv=argv, n_processes=n_processes, start_timeout=60000)


class ProcessWorkers(unittest.TestCase):
    """Helper processes: sluice-worker with a C module, and a helper in Python."""

    def setUp(self):
        self.queue = Sluice.TaskQueue.new(1)

    def tearDown(self):
        done = []
        self.queue.shutdown_async(False, None, lambda q, res: done.append(q.shutdown_finish(res)))
        wait_until(lambda: done)

    def calls(self, name, args_list):
        outs = []
        for args in args_list:
            out = []
            outs.append(out)
            self.queue.call_async(None, name, args, GLib.PRIORITY_DEFAULT, 0, None,
                                  lambda q, res, out=out: out.append(q.call_finish(res)))
        wait_until(lambda: all(outs))
        return [o[0].unpack() for o in outs]

    @unittest.skipUnless(os.environ.get("SLUICE_WORKER_TOOL"), "no sluice-worker tool given")
    def test_sluice_worker_module(self):
        argv = [os.environ["SLUICE_WORKER_TOOL"], os.environ["SLUICE_WORKER_EXAMPLE_MODULE"]]
        worker = helpers(argv, 2)
        self.queue.hire(worker)
        got = self.calls("sum", [GLib.Variant("(ai)", (list(range(i)),)) for i in range(50)])
        self.assertEqual(got, [(i * (i - 1) // 2,) for i in range(50)])
        stats = worker.get_stats().unpack()
        self.assertEqual((stats["calls-sent"], stats["outcomes"], stats["in-flight"]), (50, 50, 0))
        self.assertTrue(1 <= stats["call-messages"] <= 50)
        self.assertTrue(1 <= stats["result-messages"] <= 50)

    def test_python_helper(self):
        helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker_helper.py")
        self.queue.hire(helpers([sys.executable, helper], 1))
        got = self.calls("upper", [GLib.Variant("(s)", (w,)) for w in ("ordered", "results")])
        self.assertEqual(got, [("ORDERED",), ("RESULTS",)])


if __name__ == "__main__":
    sys.exit(sluice_tap.run(NamedCalls, PythonWorkers, HireOnContext, EveryVfuncOnContext, ProcessWorkers))
