#!/usr/bin/python3
# test_producer.py: Sluice from Python, through GObject Introspection
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Run by meson test (tests/python/run-python-test.sh) with GI_TYPELIB_PATH and
# LD_LIBRARY_PATH pointing into the build tree. TAP output. Skips (a
# "1..0 # SKIP reason" plan, which meson reports as a skip) only when
# python3-gi is missing. Items are GValues: the binding names of the value
# forms (new_for_values, complete_value, ... renamed to new, complete, ...).

import gc
import os
import random
import sys
import threading
import time
import unittest
import weakref

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sluice_tap  # noqa: E402

sluice_tap.require_gi()
from gi.repository import GLib, Gio, Sluice  # noqa: E402

wait_until = sluice_tap.wait_until

SCALE_DOWN = os.environ.get("SLUICE_TEST_SCALE_DOWN", "0") not in ("", "0")


class Item:
    """A Python object that only Python knows: it must arrive as itself."""

    def __init__(self, n):
        self.n = n

    def __repr__(self):
        return "Item(%d)" % self.n


def io_error(message, code=Gio.IOErrorEnum.FAILED):
    return GLib.Error.new_literal(Gio.io_error_quark(), message, code)



def stop_and_wait(producer):
    """Stops @producer; returns ("ok", result) or ("error", GLib.Error)."""
    outcome = []

    def on_stopped(source, result, *unused):
        try:
            outcome.append(("ok", source.stop_finish(result)))
        except GLib.Error as error:
            outcome.append(("error", error))

    producer.stop_async(None, on_stopped)
    wait_until(lambda: outcome, "stop")
    return outcome[0]


def make_collecting_consumer(record):
    """A consumer function that takes every item, in its own thread."""

    def consume(consumerator, *unused):
        record["thread"] = threading.get_ident()
        got = record.setdefault("items", [])
        while True:
            try:
                ok, item = consumerator.next()
            except GLib.Error as error:
                record["error"] = error
                raise  # the stop reports the first error anyway
            if not ok:
                return len(got)
            got.append(item)

    return consume


class ProducerTests(unittest.TestCase):
    def setUp(self):
        self.rng = random.Random(20260101)
        self.completion_order = []
        self.lock = threading.Lock()

    def completed(self, n):
        with self.lock:
            self.completion_order.append(n)

    # --- the ways an item can be made ---

    def item_by_timeout(self, producer, n, value, delay_ms):
        def item_func(slot, *unused):
            def fire():
                self.completed(n)
                slot.complete(value)
                return GLib.SOURCE_REMOVE

            GLib.timeout_add(delay_ms, fire)

        producer.produce_item(item_func)

    def item_by_python_thread(self, producer, n, value, delay_s):
        def item_func(slot, *unused):
            def work():
                time.sleep(delay_s)
                self.completed(n)
                slot.complete(value)

            threading.Thread(target=work, daemon=True).start()

        producer.produce_item(item_func)

    def item_in_task_queue(self, producer, n, value, delay_s):
        def thread_func(delay_s):
            self.assertIsNotNone(Gio.Cancellable.get_current())  # the item's
            time.sleep(delay_s)
            self.completed(n)
            return value  # any object, a tuple too (gi.overrides.Sluice)

        producer.produce_item_in_thread(thread_func, delay_s)

    def item_now(self, producer, n, value):
        def item_func(slot, *unused):
            self.completed(n)
            slot.complete(value)

        producer.produce_item(item_func)

    def produce_scrambled(self, producer, values, fail_at=None, fail_how=None):
        """Produces @values from the main loop, waiting on the ready source
        when the window is full, with completions in scrambled order."""
        state = {"next": 0}
        n_items = len(values)

        def feed(*unused):
            while state["next"] < n_items and producer.is_ready():
                n = state["next"]
                state["next"] += 1
                value = values[n]
                if n == fail_at:
                    self.produce_failing(producer, n, fail_how)
                    continue
                # The first item of each window is the slowest, so later
                # ones always complete before it.
                slow = n % 16 == 0
                kind = self.rng.choice(("timeout", "thread", "task", "now"))
                if kind == "timeout":
                    self.item_by_timeout(producer, n, value, 25 if slow else self.rng.randint(0, 8))
                elif kind == "thread":
                    self.item_by_python_thread(
                        producer, n, value, 0.025 if slow else self.rng.random() * 0.008
                    )
                elif kind == "task":
                    self.item_in_task_queue(
                        producer, n, value, 0.025 if slow else self.rng.random() * 0.008
                    )
                else:
                    self.item_now(producer, n, value)
            return state["next"] < n_items

        source = producer.create_ready_source(None)
        source.set_callback(feed)
        source.attach(None)
        wait_until(lambda: state["next"] >= n_items, "producing")
        source.destroy()

    def produce_failing(self, producer, n, how):
        if how == "raise-in-thread":

            def thread_func():
                time.sleep(0.02)  # later items complete first
                self.completed(n)
                raise io_error("item %d failed" % n)

            producer.produce_item_in_thread(thread_func)
        else:

            def item_func(slot, *unused):
                def fire():
                    self.completed(n)
                    slot.fail(io_error("item %d failed" % n))
                    return GLib.SOURCE_REMOVE

                GLib.timeout_add(20, fire)

            producer.produce_item(item_func)

    # --- tests ---

    def test_python_objects_arrive_in_call_order(self):
        n_items = 100 if SCALE_DOWN else 600
        values = []
        for n in range(n_items):
            kind = n % 6
            if kind == 0:
                values.append(("tuple", n))
            elif kind == 1:
                values.append({"n": n})
            elif kind == 2:
                values.append(None)
            elif kind == 3:
                values.append("str %d" % n)
            else:
                values.append(Item(n))
        record = {}
        producer = Sluice.OrderedItemProducer.new(None, 32)
        producer.start(make_collecting_consumer(record))

        self.produce_scrambled(producer, values)
        status, result = stop_and_wait(producer)

        self.assertEqual(status, "ok", result)
        self.assertEqual(result, n_items)  # the consumer's return value
        self.assertNotEqual(record["thread"], threading.get_ident())
        self.assertNotIn("error", record)
        got = record["items"]
        self.assertEqual(len(got), n_items)
        for n, (sent, received) in enumerate(zip(values, got)):
            self.assertEqual(received, sent, "item %d" % n)
            if isinstance(sent, (Item, tuple, dict)):
                self.assertIs(received, sent, "item %d is the very object" % n)
        # They really completed out of order.
        self.assertEqual(sorted(self.completion_order), list(range(n_items)))
        self.assertNotEqual(self.completion_order, list(range(n_items)))

    def check_error_in_order(self, fail_how):
        n_items, fail_at = 60, 23
        values = [Item(n) for n in range(n_items)]
        record = {}
        producer = Sluice.OrderedItemProducer.new(None, 16)
        producer.start(make_collecting_consumer(record))

        self.produce_scrambled(producer, values, fail_at=fail_at, fail_how=fail_how)
        status, error = stop_and_wait(producer)

        # The consumer got every item before the failure, in order, then the
        # error itself as a GLib.Error; the stop reports the same error.
        self.assertEqual([item.n for item in record["items"]], list(range(fail_at)))
        for name, received in (("consumer", record["error"]), ("stop", error)):
            self.assertIsInstance(received, GLib.Error, name)
            self.assertTrue(received.matches(Gio.io_error_quark(), Gio.IOErrorEnum.FAILED), name)
            self.assertEqual(received.message, "item %d failed" % fail_at, name)
        self.assertEqual(status, "error")

    def test_error_raised_in_thread_function_arrives_in_order(self):
        self.check_error_in_order("raise-in-thread")

    def test_slot_failed_from_main_loop_arrives_in_order(self):
        self.check_error_in_order("slot-fail")

    def test_skip_failed_reports_by_signal(self):
        record = {}
        failed = []
        producer = Sluice.OrderedItemProducer.new(None, 8)
        producer.props.skip_failed = True
        producer.connect(
            "item-failed",
            lambda source, seq, error: failed.append((seq, error.message, threading.get_ident())),
        )
        producer.start(make_collecting_consumer(record))
        for n in range(10):
            if n in (3, 7):
                producer.produce_item(
                    lambda slot, *unused, n=n: slot.fail(io_error("bad %d" % n))
                )
            else:
                self.item_now(producer, n, Item(n))
        status, result = stop_and_wait(producer)

        self.assertEqual(status, "ok", result)
        self.assertEqual([item.n for item in record["items"]], [0, 1, 2, 4, 5, 6, 8, 9])
        self.assertEqual([(seq, message) for seq, message, _ in failed], [(3, "bad 3"), (7, "bad 7")])
        self.assertTrue(all(thread == threading.get_ident() for _, _, thread in failed))

    def test_consumer_error_stops_production(self):
        produced = []
        producer = Sluice.OrderedItemProducer.new(None, 64)

        def consume(consumerator, *unused):
            for _ in range(5):
                consumerator.next()
            raise GLib.Error.new_literal(GLib.quark_from_string("test-consumer"), "disk full", 7)

        def on_produced(source, result, *unused):
            try:
                produced.append(source.produce_item_finish(result))
            except GLib.Error as error:
                produced.append(error)

        producer.start(consume)
        for n in range(5):
            self.item_now(producer, n, Item(n))
        wait_until(lambda: producer.props.closed, "consumer gone")
        producer.produce_item(lambda slot, *unused: self.fail("must not run"), callback=on_produced)
        wait_until(lambda: produced, "refused")
        status, error = stop_and_wait(producer)

        self.assertTrue(produced[0].matches(Sluice.error_quark(), Sluice.Error.STOPPED))
        self.assertEqual(status, "error")
        self.assertEqual((error.message, error.code), ("disk full", 7))

    def test_unconsumed_items_are_released(self):
        alive = []
        producer = Sluice.OrderedItemProducer.new(None, 16)
        for n in range(10):
            item = Item(n)
            alive.append(weakref.ref(item))
            self.item_now(producer, n, item)
            del item
        gc.collect()
        self.assertTrue(all(ref() is not None for ref in alive))  # the buffer holds them

        status, error = stop_and_wait(producer)  # never started
        gc.collect()
        self.assertEqual(status, "error")
        self.assertTrue(error.matches(Sluice.error_quark(), Sluice.Error.NOT_STARTED))
        self.assertTrue(all(ref() is None for ref in alive), "items freed with their references")

        status, error = stop_and_wait(producer)
        self.assertTrue(error.matches(Sluice.error_quark(), Sluice.Error.STOPPED))

    def test_slot_continued_in_thread(self):
        # Async first (a timeout on the main loop), blocking work second (in
        # the task queue): the value the thread function returns completes
        # the slot, a raised GLib.Error fails it, and the order holds.
        record = {}
        failed = []
        main_thread = threading.get_ident()
        producer = Sluice.OrderedItemProducer.new(None, 8)
        producer.props.skip_failed = True
        producer.connect("item-failed", lambda source, seq, error: failed.append((seq, error.message)))
        producer.start(make_collecting_consumer(record))

        def square(n):
            self.assertNotEqual(threading.get_ident(), main_thread)
            time.sleep(self.rng.random() * 0.002)
            if n == 5:
                raise io_error("item 5 failed")
            return Item(n * n)

        def item_func(slot, n):
            def io_done():
                slot.continue_in_thread(square, n)
                return GLib.SOURCE_REMOVE

            GLib.timeout_add(self.rng.randint(0, 5), io_done)

        for n in range(20):
            wait_until(producer.is_ready, "ready")
            producer.produce_item(lambda slot, *unused, n=n: item_func(slot, n))
        status, result = stop_and_wait(producer)

        self.assertEqual(status, "ok", result)
        self.assertEqual([item.n for item in record["items"]], [n * n for n in range(20) if n != 5])
        wait_until(lambda: failed, "item-failed")
        self.assertEqual(failed, [(5, "item 5 failed")])

    def test_wait_ready_from_a_thread_without_main_loop(self):
        # A Python thread feeds the producer, waiting for room before each
        # item; nothing iterates the main context meanwhile.
        record = {}
        n_items, window = 300, 8
        producer = Sluice.OrderedItemProducer(window=window)
        producer.start(make_collecting_consumer(record))
        live = []

        def feed():
            consumerator = producer.get_consumerator()
            for n in range(n_items):
                self.assertTrue(producer.wait_ready(None))
                producer.produce_item(lambda slot, *unused, n=n: slot.complete(Item(n)))
                live.append(consumerator.props.n_items)

        feeder = threading.Thread(target=feed)
        feeder.start()
        feeder.join(sluice_tap.DEADLINE_S)
        self.assertFalse(feeder.is_alive())
        status, result = stop_and_wait(producer)
        self.assertEqual(status, "ok", result)
        self.assertEqual([item.n for item in record["items"]], list(range(n_items)))
        self.assertLessEqual(max(live), window)
        with self.assertRaises(GLib.Error) as caught:
            producer.wait_ready(None)
        self.assertTrue(caught.exception.matches(Sluice.error_quark(), Sluice.Error.STOPPED))

    def test_wait_ready_async_feeds_from_the_main_loop(self):
        # The main-loop wait for room: a feeder that waits for
        # wait_ready_async() before each item stays within the window, and
        # a closed producer ends the wait with STOPPED.
        record = {}
        n_items, window = 200, 8
        producer = Sluice.OrderedItemProducer(window=window)
        producer.start(make_collecting_consumer(record))
        consumerator = producer.get_consumerator()
        state = {"n": 0, "done": False, "live": []}

        def feed(source, result, *unused):
            self.assertTrue(source.wait_ready_finish(result))
            n = state["n"]
            producer.produce_item(lambda slot, *unused, n=n: slot.complete(Item(n)))
            state["live"].append(consumerator.props.n_items)
            state["n"] += 1
            if state["n"] < n_items:
                producer.wait_ready_async(None, feed)
            else:
                state["done"] = True

        producer.wait_ready_async(None, feed)
        wait_until(lambda: state["done"], "fed")
        status, result = stop_and_wait(producer)
        self.assertEqual(status, "ok", result)
        self.assertEqual([item.n for item in record["items"]], list(range(n_items)))
        self.assertLessEqual(max(state["live"]), window)

        outcome = []

        def on_closed(source, result, *unused):
            try:
                source.wait_ready_finish(result)
                outcome.append(None)
            except GLib.Error as error:
                outcome.append(error)

        producer.wait_ready_async(None, on_closed)
        wait_until(lambda: outcome, "closed")
        self.assertTrue(outcome[0].matches(Sluice.error_quark(), Sluice.Error.STOPPED))

    def test_consume_on_the_main_loop(self):
        # start(None): no consumer thread of ours; next_async() on the main
        # loop takes the items in order, and the end.
        producer = Sluice.OrderedItemProducer(window=4)
        producer.start(None)
        consumerator = producer.get_consumerator()
        got, ended = [], []

        def on_next(source, result, *unused):
            ok, item = source.next_finish(result)
            if not ok:
                ended.append(True)
                return
            got.append(item)
            source.next_async(None, on_next)

        consumerator.next_async(None, on_next)
        for n in range(40):
            wait_until(producer.is_ready, "ready")
            self.item_by_timeout(producer, n, Item(n), self.rng.randint(0, 4))
        status, result = stop_and_wait(producer)
        self.assertEqual(status, "ok", result)
        self.assertIsNone(result)
        self.assertEqual(ended, [True])
        self.assertEqual([item.n for item in got], list(range(40)))

    def test_stop_cancelled(self):
        slots = []
        producer = Sluice.OrderedItemProducer(window=4)
        producer.start(make_collecting_consumer({}))
        producer.produce_item(lambda slot, *unused: slots.append(slot))
        cancellable = Gio.Cancellable()
        outcome = []

        def on_stopped(source, result, *unused):
            try:
                outcome.append(source.stop_finish(result))
            except GLib.Error as error:
                outcome.append(error)

        producer.stop_async(cancellable, on_stopped)
        cancellable.cancel()
        slots[0].complete(Item(0))  # dropped: production was stopped
        wait_until(lambda: outcome, "stop")
        self.assertTrue(outcome[0].matches(Gio.io_error_quark(), Gio.IOErrorEnum.CANCELLED))

    def test_progress_properties_and_stats(self):
        record = {}
        seen = []
        producer = Sluice.OrderedItemProducer(window=8)
        producer.connect("notify::n-consumed", lambda p, pspec: seen.append(p.props.n_consumed))
        producer.start(make_collecting_consumer(record))
        for n in range(50):
            wait_until(producer.is_ready, "ready")
            self.item_now(producer, n, n)
        status, result = stop_and_wait(producer)
        self.assertEqual(status, "ok", result)
        self.assertEqual(
            (producer.props.n_produced, producer.props.n_consumed, producer.props.n_failed),
            (50, 50, 0),
        )
        self.assertEqual(producer.props.n_live, 0)
        self.assertEqual(seen[-1], 50)
        stats = producer.get_stats().unpack()
        self.assertEqual(stats["n-consumed"], 50)
        self.assertEqual(stats["head"], 50)
        self.assertEqual(stats["head-wait-us"], 0)
        self.assertTrue(stats["closed"])

    def test_slot_completed_twice_is_reported_and_ignored(self):
        # A second completion must not abort the interpreter: the library
        # logs a critical naming the item and ignores it; the first result
        # stands, and items that reuse the slot's ring place are untouched.
        record = {}
        slots = []
        producer = Sluice.OrderedItemProducer.new(None, 2)
        producer.start(make_collecting_consumer(record))
        producer.produce_item(lambda slot, *unused: slots.append(slot))
        slots[0].complete("first")
        slots[0].complete("second")  # logged and ignored
        slots[0].fail(io_error("late"))  # logged and ignored
        for n in range(1, 5):
            wait_until(producer.is_ready, "ready")
            self.item_now(producer, n, n)
        slots[0].complete("stale")  # its place now holds a later item
        status, result = stop_and_wait(producer)

        self.assertEqual(status, "ok", result)
        self.assertEqual(record["items"], ["first", 1, 2, 3, 4])

    def test_standalone_consumerator(self):
        consumerator = Sluice.Consumerator.new(4)
        sent = [Item(n) for n in range(50)]

        def push_all():
            for item in sent:
                consumerator.push(item)
            consumerator.close(io_error("end of input", Gio.IOErrorEnum.CLOSED))

        pusher = threading.Thread(target=push_all)
        pusher.start()
        got = []
        with self.assertRaises(GLib.Error) as caught:
            while True:
                ok, item = consumerator.next()
                if not ok:
                    break
                got.append(item)
        pusher.join()
        self.assertEqual(got, sent)
        self.assertTrue(all(a is b for a, b in zip(got, sent)))
        self.assertTrue(caught.exception.matches(Gio.io_error_quark(), Gio.IOErrorEnum.CLOSED))
        with self.assertRaises(GLib.Error):
            consumerator.push(Item(99))


    @unittest.skipUnless(
        hasattr(Sluice.Consumerator, "end"),
        "no Sluice.Consumerator.end: PyGObject cannot pass None to close()",
    )
    def test_standalone_consumerator_normal_end(self):
        consumerator = Sluice.Consumerator.new(8)
        for n in range(3):
            consumerator.push(Item(n))
        consumerator.end()
        got = []
        while True:
            ok, item = consumerator.next()
            if not ok:
                break
            got.append(item.n)
        self.assertEqual(got, [0, 1, 2])
        self.assertIsNone(item)  # the end holds a NULL pointer: None


class PythonicTests(unittest.TestCase):
    """What gi.overrides.Sluice promises a Python programmer."""

    def test_overrides_are_loaded(self):
        self.assertEqual(Sluice.OrderedItemProducer.__module__, "gi.overrides.Sluice")

    def test_any_callable_any_arguments_any_object(self):
        big = 2**40
        with Sluice.OrderedItemProducer(window=4) as producer:
            producer.start(lambda items, tag: [tag] + list(items), "tag")
            producer.produce_item(lambda slot, a, b: slot.complete((a, b)), 1, 2)
            producer.produce_item(lambda slot, n: slot.complete(n), big)
            producer.produce_item_in_thread(lambda a, b: {"sum": a + b}, 40, 2)
            producer.produce_item_in_thread(lambda: None)
            producer.produce_item(lambda slot: slot.continue_in_thread(pow, 2, 70))
            producer.produce_item(lambda slot: slot.complete())
        self.assertEqual(producer.result, ["tag", (1, 2), big, {"sum": 42}, None, 2**70, None])

    def check_stop_error(self, producer, text):
        with self.assertRaises(GLib.Error) as caught:
            producer.stop()
        self.assertTrue(caught.exception.matches(Sluice.error_quark(), Sluice.Error.FAILED))
        self.assertEqual(caught.exception.message, text)

    def test_exception_in_item_function_fails_that_item(self):
        got = []
        producer = Sluice.OrderedItemProducer(window=8)
        producer.start(lambda items: got.extend(items))
        producer.produce_item(lambda slot: slot.complete(0))

        def bad(slot):
            raise ValueError("no such record")

        producer.produce_item(bad)
        producer.produce_item(lambda slot: slot.complete(2))
        self.check_stop_error(producer, "ValueError: no such record")
        self.assertEqual(got, [0])

    def test_exception_after_completion_keeps_the_item(self):
        # The slot was handed over before the exception: it is not failed
        # (nor completed twice); PyGObject prints the exception.
        producer = Sluice.OrderedItemProducer(window=8)
        producer.start(lambda items: list(items))

        def completes_then_raises(slot):
            slot.complete("kept")
            raise RuntimeError("after the fact")

        producer.produce_item(completes_then_raises)
        self.assertEqual(producer.stop(), ["kept"])

    def test_exception_in_thread_function_fails_that_item(self):
        got = []
        producer = Sluice.OrderedItemProducer(window=8)
        producer.start(lambda items: got.extend(items))
        producer.produce_item_in_thread(lambda: "first")
        producer.produce_item_in_thread(lambda: 1 // 0)
        self.check_stop_error(producer, "ZeroDivisionError: integer division or modulo by zero")
        self.assertEqual(got, ["first"])

    def test_exception_in_consumer_is_the_stop_error(self):
        producer = Sluice.OrderedItemProducer(window=8)

        def consume(items):
            for item in items:
                raise KeyError(item)

        producer.start(consume)
        producer.produce_item(lambda slot: slot.complete("x"))
        self.check_stop_error(producer, "KeyError: 'x'")

    def test_context_manager_stops_on_exception(self):
        with self.assertRaises(RuntimeError):
            with Sluice.OrderedItemProducer(window=4) as producer:
                producer.start(lambda items: list(items))
                # Completes later: the stop waits for it, as for any item
                # in flight (an item that never completes would hold it).
                producer.produce_item(lambda slot: GLib.timeout_add(30, slot.complete, 1))
                raise RuntimeError("body failed")
        self.assertTrue(producer.props.closed)

    def test_iterate_a_standalone_consumerator(self):
        consumerator = Sluice.Consumerator.new(8)
        sent = [2**40, ("a", 1), None, Item(3)]
        for item in sent:
            consumerator.push(item)
        consumerator.end()
        self.assertEqual(list(consumerator), sent)



if __name__ == "__main__":
    sys.exit(sluice_tap.run(ProducerTests, PythonicTests))
