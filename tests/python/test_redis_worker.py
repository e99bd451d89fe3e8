#!/usr/bin/python3
# test_redis_worker.py: remote workers through Redis from Python, through
# GObject Introspection
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Run by meson test (tests/python/run-python-test.sh) with GI_TYPELIB_PATH and
# LD_LIBRARY_PATH pointing into the build tree. TAP output. Each test case
# starts its own redis-server on a private unix socket; skips (with a
# message) without python3-gi or redis-server.

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sluice_tap  # noqa: E402

sluice_tap.require_gi()
if shutil.which("redis-server") is None:
    sluice_tap.skip_all("redis-server is not installed (Debian: apt-get install redis-server)")

from gi.repository import GLib, Gio, Sluice  # noqa: E402

wait_until = sluice_tap.wait_until
DEADLINE_S = sluice_tap.DEADLINE_S


def stats(worker):
    return worker.get_stats().unpack()


class RedisWorkers(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sluice-redis-py-")
        self.socket = os.path.join(self.dir, "redis.sock")
        self.endpoint = "unix:" + self.socket
        self.server = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", self.socket, "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(self.socket)
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            self.assertLess(time.monotonic(), deadline, "redis-server did not start")
            time.sleep(0.01)
        self.helpers = []
        self.queue = Sluice.TaskQueue.new(1)

    def members(self, stream):
        # The consumers of the group of @stream (XINFO CONSUMERS, inline).
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(self.socket)
            s.sendall(b"XINFO CONSUMERS %s sluice-workers\r\n" % stream.encode())
            s.settimeout(DEADLINE_S)
            reply = s.recv(65536)
        return reply.decode(errors="replace").split("\r\n")

    def tearDown(self):
        done = []
        self.queue.shutdown_async(False, None, lambda q, res: done.append(q.shutdown_finish(res)))
        wait_until(lambda: done)
        # Every helper serves (it joins the group once its SIGTERM handler
        # is in place) before it gets SIGTERM: one still starting would die
        # of it, as any program does before it handles the signal.
        if self.helpers:
            wait_until(lambda: all("py-%d" % i in self.members("sluice:calls:py")
                                   for i in range(len(self.helpers))))
        for helper in self.helpers:
            helper.send_signal(signal.SIGTERM)
            self.assertEqual(helper.wait(DEADLINE_S), 0)
        self.server.kill()
        self.server.wait()
        shutil.rmtree(self.dir)

    def call(self, series, name, args, cancellable=None, timeout=0):
        out = []

        def done(queue, res):
            try:
                out.append(queue.call_finish(res))
            except GLib.Error as e:
                out.append(e)

        self.queue.call_async(series, name, args, GLib.PRIORITY_DEFAULT, timeout, cancellable, done)
        return out

    @unittest.skipUnless(os.environ.get("SLUICE_WORKER_TOOL"), "no sluice-worker tool given")
    def test_ordered_producer_through_sluice_worker(self):
        # Two `sluice-worker --redis` processes serve the example module;
        # an ordered producer fills its slots with the results, in order.
        for i in range(2):
            self.helpers.append(subprocess.Popen(
                [os.environ["SLUICE_WORKER_TOOL"], "--redis=" + self.endpoint, "--series=py",
                 "--consumer=py-%d" % i, "--threads=2",
                 os.environ["SLUICE_WORKER_EXAMPLE_MODULE"]]))
        worker = Sluice.RedisWorker.new(self.endpoint, None, ["py"], 8)
        # Its reply stream lives 10 s past the last renewal.
        worker.set_reply_ttl(10000)
        stream = "sluice:replies:" + worker.get_client_id()

        def reply_ttl():
            out = subprocess.run(["redis-cli", "-s", self.socket, "PTTL", stream],
                                 capture_output=True, text=True, check=True).stdout
            return int(out.strip())

        wait_until(lambda: 0 < reply_ttl() <= 10000)
        self.queue.hire(worker)
        producer = Sluice.OrderedItemProducer(window=16, task_queue=self.queue)
        got = []

        def consume(consumerator, *unused):
            for item in consumerator:
                got.append(item.unpack())
            return len(got)

        producer.start(consume)
        n = 300
        for i in range(n):
            wait_until(producer.is_ready)
            producer.produce_call("py", "sum", GLib.Variant("(ai)", (list(range(i)),)),
                                  GLib.PRIORITY_DEFAULT, 0, None, None)
        self.assertEqual(producer.stop(), n)
        self.assertEqual(got, [(i * (i - 1) // 2,) for i in range(n)])
        counters = stats(worker)
        self.assertEqual(counters["results"], n)
        self.assertEqual(counters["in-flight"], 0)
        self.assertEqual(counters["duplicates"], 0)

    def test_python_remote_worker(self):
        # The remote side in Python too: a WorkerService serving a Python
        # function through Redis, in a thread; errors cross with their
        # domain and code; a cancelled call reaches the function's
        # cancellable.
        service = Sluice.WorkerService.new(2)
        started, seen_cancel = threading.Event(), threading.Event()

        def upper(args, cancellable, data):
            (text,) = args.unpack()
            return GLib.Variant("(s)", (text.upper(),))

        def fail(args, cancellable, data):
            raise GLib.Error.new_literal(Gio.io_error_quark(), "no entry", Gio.IOErrorEnum.NOT_FOUND)

        def wait_cancel(args, cancellable, data):
            started.set()
            while not cancellable.is_cancelled():
                time.sleep(0.002)
            seen_cancel.set()
            cancellable.set_error_if_cancelled()

        service.register("upper", "(s)", upper, None)
        service.register("fail", None, fail, None)
        service.register("wait-cancel", None, wait_cancel, None)
        stop = Gio.Cancellable()
        served = []

        def serve():
            served.append(service.serve_redis(self.endpoint, None, ["", "py"], "py-thread", 0, 0,
                                              stop))

        thread = threading.Thread(target=serve)
        thread.start()
        try:
            worker = Sluice.RedisWorker.new(self.endpoint, None, ["py"], 4)
            self.queue.hire(worker)
            words = [self.call("py", "upper", GLib.Variant("(s)", (w,)))
                     for w in ("ordered", "remote", "results")]
            failed = self.call(None, "fail", None)
            unknown = self.call(None, "nope", None)
            wait_until(lambda: all(words) and failed and unknown)
            self.assertEqual([w[0].unpack() for w in words],
                             [("ORDERED",), ("REMOTE",), ("RESULTS",)])
            self.assertTrue(failed[0].matches(Gio.io_error_quark(), Gio.IOErrorEnum.NOT_FOUND))
            self.assertEqual(failed[0].message, "no entry")
            self.assertTrue(unknown[0].matches(Sluice.error_quark(),
                                               Sluice.Error.UNKNOWN_FUNCTION))

            cancellable = Gio.Cancellable()
            waiting = self.call(None, "wait-cancel", None, cancellable)
            # Running in the remote worker when it is cancelled.
            wait_until(started.is_set)
            cancellable.cancel()
            wait_until(lambda: waiting)
            self.assertTrue(waiting[0].matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED))
            self.assertTrue(seen_cancel.wait(DEADLINE_S))
        finally:
            stop.cancel()
            thread.join(DEADLINE_S)
        self.assertEqual(served, [True])

    def test_reconnect_timeout(self):
        # With a reconnect timeout of 0 the worker resigns as soon as its
        # connection is lost (Redis gone), and its queue, with no other
        # worker, fails the call it held on shutdown.
        worker = Sluice.RedisWorker.new(self.endpoint, None, ["py"], 4)
        worker.set_reconnect_timeout(0)
        resigned = []
        worker.connect("resigned", lambda w, error: resigned.append(error))
        self.queue.hire(worker)
        held = self.call("py", "sum", GLib.Variant("(ai)", ([1, 2],)))
        wait_until(lambda: stats(worker)["sent"] == 1)
        self.server.kill()
        self.server.wait()
        wait_until(lambda: resigned)
        self.assertEqual(resigned[0].domain, GLib.quark_to_string(Gio.io_error_quark()))
        self.assertEqual(held, [])
        done = []
        self.queue.shutdown_async(False, None, lambda q, res: done.append(q.shutdown_finish(res)))
        wait_until(lambda: done and held)
        self.assertTrue(held[0].matches(Sluice.error_quark(), Sluice.Error.NO_WORKER))


if __name__ == "__main__":
    sys.exit(sluice_tap.run(RedisWorkers))
