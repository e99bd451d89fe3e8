#!/usr/bin/python3
# test_streams.py: the stream adapters from Python, through GObject Introspection
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Copies a file through Sluice.InputStreamProducer (GFiles read in chunks,
# a chunk function in the task queue) and Sluice.OutputStreamConsumer (the
# items written in order to a Gio.OutputStream), and checks that a write
# error reaches the stop. Run by meson test (tests/python/run-python-test.sh)
# with GI_TYPELIB_PATH and LD_LIBRARY_PATH pointing into the build tree.
# TAP output; skips only when python3-gi is missing.

import os
import random
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sluice_tap  # noqa: E402

sluice_tap.require_gi()
from gi.repository import GLib, Gio, Sluice  # noqa: E402

wait_until = sluice_tap.wait_until




def copy(reader, producer):
    """Reads everything, then stops; returns (read outcome, stop outcome)."""
    outcome = {}

    def on_stopped(source, result, *unused):
        try:
            outcome["stop"] = ("ok", source.stop_finish(result))
        except GLib.Error as error:
            outcome["stop"] = ("error", error)

    def on_read_all(source, result, *unused):
        try:
            outcome["read"] = ("ok", source.read_all_finish(result))
        except GLib.Error as error:
            outcome["read"] = ("error", error)
        producer.stop_async(None, on_stopped)

    reader.read_all_async(GLib.PRIORITY_DEFAULT, None, on_read_all)
    wait_until(lambda: "stop" in outcome, "the stop")
    return outcome["read"], outcome["stop"]


class StreamTests(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory(prefix="test-streams-py-")
        rng = random.Random(42)
        self.parts = [bytes(rng.getrandbits(8) for _ in range(n)) for n in (70000, 0, 12345)]
        self.files = []
        for i, part in enumerate(self.parts):
            path = os.path.join(self.dir.name, "part%d" % i)
            with open(path, "wb") as f:
                f.write(part)
            self.files.append(Gio.File.new_for_path(path))

    def tearDown(self):
        self.dir.cleanup()

    def test_copy_files_through_the_adapters(self):
        out_path = os.path.join(self.dir.name, "copy")
        out = Gio.File.new_for_path(out_path).create(Gio.FileCreateFlags.NONE, None)
        producer = Sluice.OrderedItemProducer.new(None, 4)
        writer = Sluice.OutputStreamConsumer.new(producer, out)
        writer.start()
        reader = Sluice.InputStreamProducer.new_for_files(producer, self.files, 4096)
        threads = set()

        def upper(chunk, previous, offset, cancellable, *unused):
            # A blocking function in the task queue: not the main thread.
            threads.add(threading.get_ident())
            data = chunk.get_data()
            if offset > 0:
                assert previous is not None
            return GLib.Bytes.new(bytes(reversed(data)))

        reader.set_chunk_func(upper)
        read, stop = copy(reader, producer)
        self.assertEqual(read, ("ok", True))
        self.assertEqual(stop, ("ok", None))

        # Each chunk reversed, in order: chunks of 4096 never span files.
        expected = b""
        for part in self.parts:
            for i in range(0, len(part), 4096):
                expected += bytes(reversed(part[i : i + 4096]))
        with open(out_path, "rb") as f:
            got = f.read()
        self.assertEqual(len(got), len(expected))
        self.assertTrue(got == expected)
        self.assertEqual(writer.get_bytes_written(), len(expected))
        self.assertEqual(writer.props.bytes_written, len(expected))
        self.assertEqual(reader.get_bytes_read(), sum(len(p) for p in self.parts))
        self.assertEqual(reader.props.chunks_read, 18 + 0 + 4)
        self.assertNotIn(threading.get_ident(), threads)
        self.assertTrue(out.is_closed())

    def test_plain_copy_of_a_stream(self):
        data = self.parts[0]
        source = Gio.MemoryInputStream.new_from_bytes(GLib.Bytes.new(data))
        out = Gio.MemoryOutputStream.new_resizable()
        producer = Sluice.OrderedItemProducer.new(None, 8)
        writer = Sluice.OutputStreamConsumer(producer=producer, stream=out, close_stream=False)
        writer.start()
        reader = Sluice.InputStreamProducer(producer=producer, stream=source, chunk_size=1000)
        read, stop = copy(reader, producer)
        self.assertEqual(read, ("ok", True))
        self.assertEqual(stop[0], "ok")
        self.assertFalse(out.is_closed())
        out.close()
        self.assertEqual(out.steal_as_bytes().get_data(), data)

    def test_chunk_function_exception_fails_the_stop(self):
        source = Gio.MemoryInputStream.new_from_bytes(GLib.Bytes.new(self.parts[0]))
        out = Gio.MemoryOutputStream.new_resizable()
        producer = Sluice.OrderedItemProducer.new(None, 8)
        Sluice.OutputStreamConsumer.new(producer, out).start()
        reader = Sluice.InputStreamProducer.new(producer, source, 1000)

        def fail(chunk, previous, offset, cancellable, *unused):
            if offset >= 5000:
                raise GLib.Error.new_literal(
                    Gio.io_error_quark(), "chunk %d refused" % offset, Gio.IOErrorEnum.INVALID_DATA
                )
            return chunk

        reader.set_chunk_func(fail)
        read, stop = copy(reader, producer)
        self.assertEqual(stop[0], "error")
        self.assertTrue(stop[1].matches(Gio.io_error_quark(), Gio.IOErrorEnum.INVALID_DATA))
        self.assertEqual(stop[1].message, "chunk 5000 refused")
        self.assertEqual(out.steal_as_bytes().get_data(), self.parts[0][:5000])

    def test_chunk_function_on_the_main_thread(self):
        # chunk_func_in_thread False: the function runs on the owner's
        # (here the main) thread, one chunk at a time, in input order.
        data = self.parts[0]
        source = Gio.MemoryInputStream.new_from_bytes(GLib.Bytes.new(data))
        out = Gio.MemoryOutputStream.new_resizable()
        producer = Sluice.OrderedItemProducer.new(None, 4)
        Sluice.OutputStreamConsumer.new(producer, out).start()
        reader = Sluice.InputStreamProducer(producer=producer, stream=source, chunk_size=4096)
        self.assertTrue(reader.get_chunk_func_in_thread())
        reader.set_chunk_func_in_thread(False)
        self.assertFalse(reader.props.chunk_func_in_thread)
        seen = []

        def upper(chunk, previous, offset, cancellable, *unused):
            seen.append((threading.get_ident(), offset))
            return GLib.Bytes.new(bytes(reversed(chunk.get_data())))

        reader.set_chunk_func(upper)
        read, stop = copy(reader, producer)
        self.assertEqual(read, ("ok", True))
        self.assertEqual(stop, ("ok", None))
        self.assertEqual(seen, [(threading.get_ident(), o) for o in range(0, len(data), 4096)])
        expected = b"".join(bytes(reversed(data[i : i + 4096])) for i in range(0, len(data), 4096))
        self.assertTrue(out.steal_as_bytes().get_data() == expected)

    def test_write_error_reaches_stop(self):
        # A file opened for reading only: every write fails.
        out = Gio.UnixOutputStream.new(os.open(os.devnull, os.O_RDONLY), True)
        source = Gio.MemoryInputStream.new_from_bytes(GLib.Bytes.new(self.parts[0]))
        producer = Sluice.OrderedItemProducer.new(None, 4)
        Sluice.OutputStreamConsumer.new(producer, out).start()
        reader = Sluice.InputStreamProducer.new(producer, source, 1000)
        read, stop = copy(reader, producer)
        self.assertEqual(stop[0], "error")
        # The stream's own error: EBADF, as GIO words it.
        self.assertEqual(stop[1].domain, "g-io-error-quark")
        self.assertIn(os.strerror(9), stop[1].message)
        self.assertEqual(read[0], "error")
        self.assertTrue(read[1].matches(Sluice.error_quark(), Sluice.Error.STOPPED))
        self.assertLess(reader.get_bytes_read(), len(self.parts[0]))



if __name__ == "__main__":
    sys.exit(sluice_tap.run(StreamTests))
