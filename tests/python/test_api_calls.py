#!/usr/bin/python3
# test_api_calls.py: the rest of the API, called from Python
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Every introspectable function of Sluice-1.gir is called by some Python
# test (test_introspection.py checks that each one's Python name appears in
# tests/python/). The ones the scenario tests do not need are called here,
# each with its effect asserted: accessors against their properties and
# their effect, flow control with push producers written in Python, a
# SluiceWorker in Python that wraps a thread worker and uses the methods of
# its tasks, and a worker service serving one end of a socket pair to a
# GDBusConnection made here. Run by meson test
# (tests/python/run-python-test.sh); TAP output; skips only without
# python3-gi.

import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sluice_tap  # noqa: E402

sluice_tap.require_gi()
from gi.repository import Gio, GLib, GObject, Sluice  # noqa: E402

wait_until = sluice_tap.wait_until


def io_error(message, code=Gio.IOErrorEnum.FAILED):
    return GLib.Error.new_literal(Gio.io_error_quark(), message, code)


class Recorder(GObject.Object, Sluice.PushProducer):
    """A push producer that records how it is paused, resumed and stopped
    (from whichever thread calls it)."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()
        self.events = []

    def record(self, event):
        with self.lock:
            self.events.append(event)

    def seen(self):
        with self.lock:
            return list(self.events)

    def do_pause_producing(self):
        self.record("pause")

    def do_resume_producing(self):
        self.record("resume")

    def do_stop_producing(self):
        self.record("stop")


class ConsumeratorCalls(unittest.TestCase):
    def test_capacity_items_and_a_registered_producer(self):
        consumerator = Sluice.Consumerator.new(8)
        self.assertEqual(consumerator.get_capacity(), 8)
        self.assertEqual(consumerator.props.capacity, 8)
        upstream = Recorder()
        consumerator.register_producer(upstream)
        for i in range(7):
            self.assertTrue(consumerator.push(i))
        self.assertEqual(upstream.seen(), [])
        # Full: the producer is paused...
        self.assertTrue(consumerator.push(7))
        self.assertEqual(consumerator.get_n_items(), 8)
        self.assertEqual(upstream.seen(), ["pause"])
        # ... and resumed once the consumer has freed a quarter (2 items).
        self.assertEqual(consumerator.next(), (True, 0))
        self.assertEqual(upstream.seen(), ["pause"])
        self.assertEqual(consumerator.next(), (True, 1))
        self.assertEqual(upstream.seen(), ["pause", "resume"])
        self.assertEqual(consumerator.get_n_items(), 6)
        # Unregistered: full again, nobody is told.
        consumerator.unregister_producer()
        self.assertTrue(consumerator.push(8))
        self.assertTrue(consumerator.push(9))
        self.assertEqual(consumerator.get_n_items(), 8)
        self.assertEqual(upstream.seen(), ["pause", "resume"])
        consumerator.end()
        self.assertEqual(list(consumerator), list(range(2, 10)))
        self.assertEqual(consumerator.get_n_items(), 0)

    def test_a_registered_producer_is_stopped_with_its_consumerator(self):
        upstream = Recorder()
        consumerator = Sluice.Consumerator.new(4)
        consumerator.register_producer(upstream)
        del consumerator
        self.assertEqual(upstream.seen(), ["stop"])


class ProducerCalls(unittest.TestCase):
    def test_accessors(self):
        queue = Sluice.TaskQueue.new(1)
        producer = Sluice.OrderedItemProducer(window=4, task_queue=queue)
        self.assertEqual(producer.get_window(), 4)
        self.assertIs(producer.get_task_queue(), queue)
        self.assertFalse(producer.get_skip_failed())
        producer.set_skip_failed(True)
        self.assertTrue(producer.get_skip_failed())
        self.assertTrue(producer.props.skip_failed)
        producer.set_wake_latency(0)
        self.assertEqual(producer.get_wake_latency(), 0)
        producer.set_wake_latency(250)
        self.assertEqual(producer.get_wake_latency(), 250)
        self.assertEqual(producer.props.wake_latency, 250)
        # skip-failed: a failed item is left out of the stream.
        producer.start(lambda consumerator: list(consumerator))
        for i in range(3):
            if i == 1:
                producer.produce_item(lambda slot: slot.fail(io_error("bad")))
            else:
                producer.produce_item(lambda slot, i=i: slot.complete(i))
        self.assertEqual(producer.stop(), [0, 2])

    def test_upstream_paused_while_the_window_is_full(self):
        producer = Sluice.OrderedItemProducer(window=4)
        upstream = Recorder()
        producer.register_producer(upstream)
        slots = []
        producer.start(lambda consumerator: list(consumerator))
        for _ in range(4):
            producer.produce_item(slots.append)
        # Told on the owner context, this thread's.
        wait_until(lambda: upstream.seen() == ["pause"], "the pause")
        for i, slot in enumerate(slots):
            slot.complete(i)
        wait_until(lambda: upstream.seen() == ["pause", "resume"], "the resume")
        producer.unregister_producer()
        self.assertEqual(producer.stop(), [0, 1, 2, 3])
        # Unregistered before the stop: not stopped with it.
        self.assertEqual(upstream.seen(), ["pause", "resume"])

    def test_upstream_stopped_with_the_producer(self):
        producer = Sluice.OrderedItemProducer(window=4)
        upstream = Recorder()
        producer.register_producer(upstream)
        producer.start(lambda consumerator: list(consumerator))
        self.assertEqual(producer.stop(), [])
        self.assertEqual(upstream.seen(), ["stop"])

    def test_pause_holds_delivery(self):
        producer = Sluice.OrderedItemProducer(window=16)
        got = []
        producer.start(lambda consumerator: got.extend(consumerator) or len(got))
        producer.pause_producing()
        for i in range(5):
            producer.produce_item(lambda slot, i=i: slot.complete(i))
        wait_until(lambda: producer.get_stats()["n-produced"] == 5, "the items")
        self.assertTrue(producer.get_stats()["paused"])
        self.assertEqual(got, [])
        producer.resume_producing()
        self.assertFalse(producer.get_stats()["paused"])
        self.assertEqual(producer.stop(), 5)
        self.assertEqual(got, list(range(5)))


class CooperatorCalls(unittest.TestCase):
    def test_context_time_slice_task_cooperator_and_state(self):
        context = GLib.MainContext.new()
        context.push_thread_default()
        try:
            cooperator = Sluice.Cooperator()
        finally:
            context.pop_thread_default()
        # Its context: the thread-default one where it was made.
        self.assertTrue(cooperator.get_context() == context)
        self.assertEqual(cooperator.get_time_slice(), cooperator.props.time_slice)
        cooperator.set_time_slice(2000)
        self.assertEqual(cooperator.get_time_slice(), 2000)
        self.assertEqual(cooperator.props.time_slice, 2000)
        steps = []

        def step(task, *unused):
            steps.append(task.get_state())
            return Sluice.StepResult.DONE if len(steps) == 3 else Sluice.StepResult.CONTINUE

        task = cooperator.cooperate(step, None)
        self.assertIs(task.get_cooperator(), cooperator)
        task.pause()
        self.assertEqual(task.get_state(), Sluice.CooperativeTaskState.PAUSED)
        task.resume()
        self.assertEqual(task.get_state(), Sluice.CooperativeTaskState.RUNNABLE)
        while task.get_state() == Sluice.CooperativeTaskState.RUNNABLE:
            context.iteration(True)
        self.assertEqual(steps, [Sluice.CooperativeTaskState.RUNNABLE] * 3)
        self.assertEqual(task.get_state(), Sluice.CooperativeTaskState.DONE)
        self.assertEqual(task.props.state, Sluice.CooperativeTaskState.DONE)


class JobQueueCalls(unittest.TestCase):
    def test_counts_channel_and_stop_when_empty(self):
        queue = Sluice.JobQueue()
        self.assertFalse(queue.get_stop_when_empty())
        held = []

        def hold(job, *unused):
            held.append((job, job.get_channel()))

        for _ in range(3):
            queue.put_async("disk", hold, None, None, None)
        queue.put_async("net", hold, None, None, None)
        self.assertEqual(queue.get_n_queued(), 4)
        self.assertEqual(queue.get_n_running(), 0)
        # Without a cooperator: run the ready ones by hand, one per channel.
        queue.run_next()
        queue.run_next()
        self.assertEqual(sorted(c for _, c in held), ["disk", "net"])
        self.assertEqual(queue.get_n_queued(), 2)
        self.assertEqual(queue.get_n_running(), 2)
        with self.assertRaises(GLib.Error):
            queue.run_next()  # the channels are busy: none ready
        queue.set_stop_when_empty(True)
        self.assertTrue(queue.get_stop_when_empty())
        self.assertTrue(queue.props.stop_when_empty)
        task = queue.cooperate(Sluice.Cooperator())
        completed = []

        def complete_held():
            # The two disk jobs left run one after the other as each completes.
            for job, _ in held[len(completed):]:
                completed.append(job)
                job.complete(None)
            return task.get_state() == Sluice.CooperativeTaskState.DONE

        wait_until(complete_held, "the job queue")
        self.assertEqual(sorted(c for _, c in held), ["disk", "disk", "disk", "net"])
        self.assertEqual(queue.get_n_queued(), 0)


class StreamCalls(unittest.TestCase):
    def test_adapter_accessors(self):
        data = bytes(range(256)) * 40
        source = Gio.MemoryInputStream.new_from_bytes(GLib.Bytes.new(data))
        out = Gio.MemoryOutputStream.new_resizable()
        producer = Sluice.OrderedItemProducer.new(None, 8)
        writer = Sluice.OutputStreamConsumer.new(producer, out)
        self.assertIs(writer.get_producer(), producer)
        self.assertIs(writer.get_stream(), out)
        self.assertTrue(writer.get_close_stream())
        writer.set_close_stream(False)
        self.assertFalse(writer.get_close_stream())
        writer.start()
        reader = Sluice.InputStreamProducer.new(producer, source, 1000)
        self.assertIs(reader.get_producer(), producer)
        self.assertIs(reader.get_stream(), source)
        self.assertEqual(reader.get_chunk_size(), 1000)
        self.assertTrue(reader.get_close_stream())
        reader.set_close_stream(False)
        self.assertFalse(reader.props.close_stream)
        self.assertEqual(reader.get_chunks_read(), 0)
        done = []

        def on_read_all(source_object, result, *unused):
            done.append(source_object.read_all_finish(result))
            producer.stop_async(None, lambda p, res, *u: done.append(p.stop_finish(res)))

        reader.read_all_async(GLib.PRIORITY_DEFAULT, None, on_read_all)
        wait_until(lambda: len(done) == 2, "the copy")
        self.assertTrue(done[0])
        self.assertEqual(reader.get_chunks_read(), 11)
        # Neither stream closed: close_stream was turned off on both.
        self.assertFalse(source.is_closed())
        self.assertFalse(out.is_closed())
        out.close()
        self.assertEqual(out.steal_as_bytes().get_data(), data)


class PipelineCalls(unittest.TestCase):
    def test_stages_threads_rate_and_join_async(self):
        pipeline = Sluice.Pipeline.new(True, 16)
        self.assertTrue(pipeline.get_keep_order())
        pipeline.add_stage("double", 1, 8, lambda emitter, item: emitter.emit(item * 2) or True)
        pipeline.add_stage("inc", 2, 8, lambda emitter, item: emitter.emit(item + 1) or True)
        self.assertEqual(pipeline.get_n_stages(), 2)
        self.assertEqual(pipeline.get_stage_threads(1), 2)
        pipeline.set_stage_threads(1, 3)
        self.assertEqual(pipeline.get_stage_threads(1), 3)
        self.assertFalse(pipeline.get_skip_failed())
        pipeline.set_skip_failed(True)
        self.assertTrue(pipeline.get_skip_failed())
        # 100 items a second through the first stage: 31 items cannot
        # take less than 0.3 s less the 0.1 s it may catch up.
        pipeline.set_stage_rate_limit(0, 100.0, 1)
        pipeline.start(None)
        got = []
        taker = threading.Thread(target=lambda: got.extend(pipeline.get_consumerator()))
        taker.start()
        start = time.monotonic()
        for i in range(31):
            self.assertTrue(pipeline.put(i, None))
        pipeline.close_input()
        joined = []
        pipeline.join_async(
            GLib.PRIORITY_DEFAULT, None, lambda p, res: joined.append(p.join_finish(res))
        )
        wait_until(lambda: joined, "the join")
        elapsed = time.monotonic() - start
        taker.join()
        self.assertEqual(joined, [True])
        self.assertEqual(got, [i * 2 + 1 for i in range(31)])
        self.assertGreaterEqual(elapsed, 0.2)


class TaskQueueCalls(unittest.TestCase):
    def test_threads_counts_and_shutdown(self):
        queue = Sluice.TaskQueue.new(2)
        self.assertEqual(queue.get_max_threads(), 2)
        queue.set_max_threads(3)
        self.assertEqual(queue.get_max_threads(), 3)
        self.assertEqual(queue.props.max_threads, 3)
        gate = threading.Event()
        outs = []
        for i in range(4):
            queue.run_async(
                lambda i=i: gate.wait() and i,
                callback=lambda q, res: outs.append(q.run_finish(res)),
            )
        wait_until(lambda: queue.get_n_running() == 3, "three running")
        self.assertEqual(queue.get_n_pending(), 1)
        gate.set()
        wait_until(lambda: len(outs) == 4, "the tasks")
        self.assertEqual(sorted(outs), [0, 1, 2, 3])
        # A thread counts itself out after it has handed over the result.
        wait_until(lambda: (queue.get_n_running(), queue.get_n_pending()) == (0, 0), "idle counts")
        self.assertFalse(queue.is_shut_down())
        done = []
        queue.shutdown_async(False, None, lambda q, res: done.append(q.shutdown_finish(res)))
        wait_until(lambda: done)
        self.assertTrue(queue.is_shut_down())


class Gatekeeper(GObject.Object, Sluice.Worker):
    """A SluiceWorker in Python that wraps a thread worker: it notes each
    task, fails the calls of "forbidden", gives "twice" back once, and
    hands the rest to the thread worker."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.lock = threading.Lock()
        self.seen = []
        self.given_back = False

    def do_get_series(self):
        return self.inner.get_series()

    def do_get_capacity(self):
        return self.inner.get_capacity()

    def do_run_task(self, task):
        with self.lock:
            self.seen.append(
                (task.get_name(), task.get_series(), task.get_priority(), task.get_timeout(),
                 task.is_wanted())
            )
            give_back = task.get_name() == "twice" and not self.given_back
            self.given_back = self.given_back or give_back
        if task.get_name() == "forbidden":
            task.return_error(io_error("not here", Gio.IOErrorEnum.PERMISSION_DENIED))
        elif give_back:
            task.give_back(False)
        else:
            self.inner.run_task(task)

    def do_stop_async(self, cancellable, callback, *user_data):
        gtask = Gio.Task.new(self, cancellable, lambda source, res, *d: callback(source, res), None)

        def inner_stopped(inner, result, *unused):
            gtask.return_boolean(inner.stop_finish(result))

        self.inner.stop_async(cancellable, inner_stopped)

    def do_stop_finish(self, result):
        return result.propagate_boolean()

    def do_crash(self):
        return self.inner.crash()


class WorkerCalls(unittest.TestCase):
    def setUp(self):
        self.queue = Sluice.TaskQueue.new(1)
        self.gate = threading.Event()

    def tearDown(self):
        self.gate.set()
        done = []
        self.queue.shutdown_async(False, None, lambda q, res: done.append(q.shutdown_finish(res)))
        wait_until(lambda: done)

    def thread_worker(self, series, n_threads):
        worker = Sluice.ThreadWorker.new(series, n_threads)

        def echo(args, cancellable, data):
            return args

        def wait(args, cancellable, data):
            self.gate.wait()
            return args

        for name in ("echo", "twice", "forbidden"):
            worker.register(name, None, echo, None)
        worker.register("wait", None, wait, None)
        return worker

    def call(self, series, name, value, priority=GLib.PRIORITY_DEFAULT, timeout=0):
        out = []

        def done(queue, res):
            try:
                out.append(queue.call_finish(res).unpack())
            except GLib.Error as e:
                out.append(e)

        args = GLib.Variant("(i)", (value,))
        self.queue.call_async(series, name, args, priority, timeout, None, done)
        return out

    def test_thread_worker_accessors(self):
        worker = self.thread_worker(["gpu", "disk"], 3)
        self.assertEqual(worker.get_n_threads(), 3)
        self.assertEqual(worker.get_series(), ["gpu", "disk"])
        self.assertEqual(worker.get_capacity(), 3)
        self.assertIn(Sluice.ThreadWorker.new(None, 1).get_series(), (None, []))

    def test_a_python_worker_uses_its_tasks(self):
        gatekeeper = Gatekeeper(self.thread_worker(["gpu"], 2))
        self.queue.hire(gatekeeper)
        echo = self.call("gpu", "echo", 7, priority=GLib.PRIORITY_HIGH, timeout=60000)
        forbidden = self.call(None, "forbidden", 1)
        twice = self.call(None, "twice", 2)
        wait_until(lambda: echo and forbidden and twice, "the calls")
        self.assertEqual(echo, [(7,)])
        denied = Gio.IOErrorEnum.PERMISSION_DENIED
        self.assertTrue(forbidden[0].matches(Gio.io_error_quark(), denied))
        self.assertEqual(forbidden[0].message, "not here")
        # Given back once, "twice" came again and ran.
        self.assertEqual(twice, [(2,)])
        self.assertIn(("echo", "gpu", GLib.PRIORITY_HIGH, 60000, True), gatekeeper.seen)
        self.assertEqual([s[0] for s in gatekeeper.seen].count("twice"), 2)

    def test_crash_returns_what_the_worker_held(self):
        gatekeeper = Gatekeeper(self.thread_worker(None, 3))
        self.queue.hire(gatekeeper)
        outs = [self.call(None, "wait", i) for i in range(3)]
        wait_until(lambda: len(gatekeeper.seen) == 3, "the tasks on the gatekeeper")
        # Fired: crash() returns the three tasks its threads are still in,
        # which run again on the worker hired next (the first results are
        # dropped).
        self.queue.hire(self.thread_worker(None, 1))
        self.assertTrue(self.queue.fire(gatekeeper))
        self.gate.set()
        wait_until(lambda: all(outs), "the calls")
        self.assertEqual(outs, [[(i,)] for i in range(3)])


def socket_stream(sock):
    return Gio.Socket.new_from_fd(sock.detach()).connection_factory_create_connection()


class ServiceCalls(unittest.TestCase):
    def test_serve_a_stream_to_any_dbus_peer(self):
        ours, theirs = socket.socketpair()
        service = Sluice.WorkerService.new(1)

        def upper(args, cancellable, data):
            (text,) = args.unpack()
            return GLib.Variant("(s)", (text.upper(),))

        service.register("upper", "(s)", upper, None)
        served = []
        service.serve_stream_async(
            socket_stream(ours), None, lambda s, res: served.append(s.serve_stream_finish(res))
        )
        client = []
        Gio.DBusConnection.new(
            socket_stream(theirs), None, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT, None, None,
            lambda source, res: client.append(Gio.DBusConnection.new_finish(res)),
        )
        wait_until(lambda: client, "the connection")
        replies = []

        def call(call_id, name, args):
            def done(connection, res):
                try:
                    replies.append(connection.call_finish(res).unpack())
                except GLib.Error as e:
                    replies.append(e)

            data = args.get_data_as_bytes().get_data()
            client[0].call(
                None, "/org/sluice/Worker", "org.sluice.Worker1", "Call",
                GLib.Variant("(tssay)", (call_id, name, args.get_type_string(), data)),
                GLib.VariantType("(say)"), Gio.DBusCallFlags.NONE, -1, None, done,
            )

        call(1, "upper", GLib.Variant("(s)", ("ordered",)))
        wait_until(lambda: replies, "the reply")
        result_type, result = replies[0]
        value = GLib.Variant.new_from_bytes(
            GLib.VariantType(result_type), GLib.Bytes.new(bytes(result)), False
        )
        self.assertEqual(value.unpack(), ("ORDERED",))
        call(2, "nope", GLib.Variant("(s)", ("x",)))
        wait_until(lambda: len(replies) == 2, "the error")
        self.assertIsInstance(replies[1], GLib.Error)
        self.assertIn("nope", replies[1].message)
        # The peer closes: the service's operation completes.
        client[0].close_sync(None)
        wait_until(lambda: served, "the end of the service")
        self.assertEqual(served, [True])


@unittest.skipUnless(os.environ.get("SLUICE_WORKER_TOOL"), "no sluice-worker tool given")
class ProcessWorkerCalls(unittest.TestCase):
    def test_processes_and_pids(self):
        argv = [os.environ["SLUICE_WORKER_TOOL"], os.environ["SLUICE_WORKER_EXAMPLE_MODULE"]]
        worker = Sluice.ProcessWorker.new(argv, None, 2)
        worker.props.start_timeout = 60000  # slow starts under sanitizers
        self.assertEqual(worker.get_n_processes(), 2)
        self.assertEqual(worker.get_max_calls(), worker.props.max_calls)
        queue = Sluice.TaskQueue.new(1)
        queue.hire(worker)
        out = []
        queue.call_async(None, "sum", GLib.Variant("(ai)", ([1, 2, 3],)), GLib.PRIORITY_DEFAULT, 0,
                         None, lambda q, res: out.append(q.call_finish(res).unpack()))
        wait_until(lambda: out and len(worker.dup_pids()) == 2, "the call and the processes")
        self.assertEqual(out, [(6,)])
        pids = worker.dup_pids()
        # Identifiers as GSubprocess gives them: the pids, as strings.
        for pid in pids:
            os.kill(int(pid), 0)  # alive, ours to signal
        done = []
        queue.shutdown_async(False, None, lambda q, res: done.append(q.shutdown_finish(res)))
        wait_until(lambda: done)
        self.assertEqual(list(worker.dup_pids()), [])


if __name__ == "__main__":
    sys.exit(
        sluice_tap.run(
            ConsumeratorCalls, ProducerCalls, CooperatorCalls, JobQueueCalls, StreamCalls,
            PipelineCalls, TaskQueueCalls, WorkerCalls, ServiceCalls, ProcessWorkerCalls,
        )
    )
