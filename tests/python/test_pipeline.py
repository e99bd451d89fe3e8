#!/usr/bin/python3
# test_pipeline.py: a SluicePipeline of Python stage functions
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Run by meson test (tests/python/run-python-test.sh) with GI_TYPELIB_PATH and
# LD_LIBRARY_PATH pointing into the build tree. TAP output. Items are
# GValues: the value forms are the binding names (new_for_values, put_value,
# add_value_stage, emit_value renamed to new, put, add_stage, emit).

import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sluice_tap  # noqa: E402

sluice_tap.require_gi()
from gi.repository import Gio, GLib, Sluice  # noqa: E402

SCALE_DOWN = os.environ.get("SLUICE_TEST_SCALE_DOWN", "0") not in ("", "0")
N = 200 if SCALE_DOWN else 2000


def add1(emitter, item):
    emitter.emit(item + 1)
    return True


def drop_odd_repeat_thirds(emitter, item):
    """jobq's EmptyRst for odd numbers; multiples of 3 twice (a generator worker)."""
    if item % 2:
        return True
    for _ in range(2 if item % 3 == 0 else 1):
        emitter.emit(item * 10)
    return True


def serial(n):
    out = []
    for i in range(n):
        v = i + 1
        if v % 2:
            continue
        out.extend([v * 10] * (2 if v % 3 == 0 else 1))
    return out


def feed(pipeline, n):
    for i in range(n):
        assert pipeline.put(i, None)
    pipeline.close_input()


class PipelineTests(unittest.TestCase):
    def test_value_forms_are_the_bindings_names(self):
        self.assertEqual(Sluice.Pipeline.new.get_symbol(), "sluice_pipeline_new_for_values")
        self.assertEqual(Sluice.Pipeline.put.get_symbol(), "sluice_pipeline_put_value")
        self.assertEqual(
            Sluice.Pipeline.add_stage.get_symbol(), "sluice_pipeline_add_value_stage"
        )
        self.assertEqual(
            Sluice.PipelineEmitter.emit.get_symbol(), "sluice_pipeline_emitter_emit_value"
        )

    def run_two_stages(self, keep_order):
        pipeline = Sluice.Pipeline.new(keep_order, 64)
        self.assertEqual(pipeline.add_stage("add1", 2, 16, add1), 0)
        self.assertEqual(pipeline.add_stage("drop-or-repeat", 3, 16, drop_odd_repeat_thirds), 1)
        return self.feed_and_take(pipeline)

    def feed_and_take(self, pipeline):
        """Starts pipeline, puts 0…N-1 from a thread, returns the outputs."""
        pipeline.start(None)
        feeder = threading.Thread(target=feed, args=(pipeline, N))
        feeder.start()
        got = list(pipeline.get_consumerator())
        feeder.join()
        self.assertTrue(pipeline.join(-1))
        return got

    def test_two_stages_in_order(self):
        self.assertEqual(self.run_two_stages(True), serial(N))

    def test_two_stages_unordered(self):
        self.assertEqual(sorted(self.run_two_stages(False)), sorted(serial(N)))

    def test_failure_at_its_position(self):
        def fail_at_7(emitter, item):
            if item == 7:
                raise GLib.Error("seven")
            emitter.emit(item)
            return True

        pipeline = Sluice.Pipeline.new(True, 8)
        pipeline.add_stage("fail", 2, 4, fail_at_7)
        pipeline.start(None)
        feeder = threading.Thread(target=feed_until_stopped, args=(pipeline, 100))
        feeder.start()
        got = []
        with self.assertRaises(GLib.Error):
            for item in pipeline.get_consumerator():
                got.append(item)
        feeder.join()
        self.assertEqual(got, list(range(7)))
        with self.assertRaises(GLib.Error):
            pipeline.join(-1)

    def test_dispatcher_keeps_per_key_order(self):
        seen = {}
        lock = threading.Lock()

        def record(emitter, item):
            with lock:
                seen.setdefault(item % 5, []).append(item)
            emitter.emit(item * 2)
            return True

        pipeline = Sluice.Pipeline.new(True, 32)
        pipeline.add_stage("add1", 3, 8, add1)
        pipeline.add_stage("keyed", 3, 8, record)
        pipeline.set_stage_key_func(1, lambda item: item % 5)
        got = self.feed_and_take(pipeline)
        self.assertEqual(got, [(i + 1) * 2 for i in range(N)])
        for key, items in seen.items():
            self.assertEqual(items, sorted(items))

    def test_run_and_stats(self):
        got = []

        def consume(outputs):
            got.extend(outputs)
            return True

        pipeline = Sluice.Pipeline.new(True, 16)
        pipeline.add_stage("add1", 2, 4, add1)
        self.assertTrue(pipeline.run(list(range(100)), consume, -1, None))
        self.assertEqual(got, list(range(1, 101)))
        stats = pipeline.get_stats().unpack()
        # Any iterable, as jobq.run takes.
        got2 = []
        pipeline2 = Sluice.Pipeline.new(True, 16)
        pipeline2.add_stage("add1", 2, 4, add1)
        self.assertTrue(pipeline2.run(iter(range(50)), lambda outputs: got2.extend(outputs) or True))
        self.assertEqual(got2, list(range(1, 51)))
        self.assertEqual(stats["in"], 100)
        self.assertEqual(stats["out"], 100)
        self.assertEqual(stats["doing"], 0)
        self.assertEqual(stats["stages"][0]["name"], "add1")
        self.assertEqual(stats["stages"][0]["done"], 100)
        self.assertEqual(stats["stages"][0]["queue-capacity"], 4)

    def test_call_stage_runs_on_workers(self):
        # A stage whose work is a named call to the task queue's workers
        # (here a thread worker with a Python function): GLib.Variants in
        # and out, results in input order, a failed call at its position.
        queue = Sluice.TaskQueue.new(1)
        worker = Sluice.ThreadWorker.new(None, 2)
        ran_in = set()

        def square(args, cancellable, data):
            (n,) = args.unpack()
            ran_in.add(threading.get_ident())
            if n == 40:
                raise GLib.Error.new_literal(Gio.io_error_quark(), "no 40", Gio.IOErrorEnum.INVALID_DATA)
            return GLib.Variant("(x)", (n * n,))

        worker.register("square", "(x)", square, None)
        queue.hire(worker)

        def to_args(emitter, item):
            emitter.emit(GLib.Variant("(x)", (item,)))
            return True

        pipeline = Sluice.Pipeline.new(True, 16)
        self.assertEqual(pipeline.add_stage("to-args", 1, 4, to_args), 0)
        self.assertEqual(
            pipeline.add_call_stage("square", 3, 4, queue, None, "square", GLib.PRIORITY_DEFAULT, 0), 1
        )
        pipeline.start(None)
        feeder = threading.Thread(target=feed_until_stopped, args=(pipeline, 100))
        feeder.start()
        got = []
        with self.assertRaises(GLib.Error) as raised:
            for item in pipeline.get_consumerator():
                got.append(item.unpack())
        feeder.join()
        self.assertTrue(raised.exception.matches(Gio.io_error_quark(), Gio.IOErrorEnum.INVALID_DATA))
        self.assertEqual(got, [(i * i,) for i in range(40)])
        self.assertNotIn(threading.get_ident(), ran_in)
        done = []
        queue.shutdown_async(False, None, lambda q, res: done.append(q.shutdown_finish(res)))
        sluice_tap.wait_until(lambda: done)


def feed_until_stopped(pipeline, n):
    try:
        for i in range(n):
            pipeline.put(i, None)
    except GLib.Error:
        pass
    pipeline.close_input()


if __name__ == "__main__":
    sys.exit(sluice_tap.run(PipelineTests))
