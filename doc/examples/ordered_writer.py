#!/usr/bin/python3
# ordered_writer.py: the tutorial's ordered writer, in Python (doc/python.md)
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Renders numbered records in the task queue and fetches a few files with
# GIO, all at once; ONE writer thread writes every piece in call order. The
# test suite runs it (it skips with exit status 77, saying why, on a Sluice
# without the value API) and checks that doc/python.md shows the code
# between the markers.

import os
import random
import sys
import tempfile
import time

# [import]
import gi

gi.require_version("Gio", "2.0")
gi.require_version("Sluice", "1")
from gi.repository import Gio, GLib, Sluice  # noqa: E402
# [/import]


# [writer]
def write_all(pieces, out):
    """The consumer: runs in a thread of its own and may block."""
    n_bytes = 0
    for piece in pieces:  # in call order; raises the GLib.Error of a failed piece
        n_bytes += out.write(piece)
    return n_bytes  # what stop_finish() returns
# [/writer]


# [render]
def render_record(n):
    """Blocking: runs in a thread of the task queue."""
    time.sleep(random.random() * 0.003)
    # The item's cancellable: fired when the producer stops.
    if Gio.Cancellable.get_current().is_cancelled():
        raise GLib.Error.new_literal(
            Gio.io_error_quark(), "cancelled", Gio.IOErrorEnum.CANCELLED
        )
    return b"record %d\n" % n
# [/render]


# [fetch]
def fetch_file(slot, gfile):
    """Non-blocking: starts a GIO read, completes the slot from its callback."""

    def loaded(source, result, *unused):
        try:
            ok, contents, etag = source.load_contents_finish(result)
            slot.complete(contents)
        except GLib.Error as error:
            slot.fail(error)

    gfile.load_contents_async(slot.get_cancellable(), loaded)
# [/fetch]


def main():
    n_pieces = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    directory = tempfile.mkdtemp(prefix="ordered-writer-")
    expected = []
    files = {}
    for n in range(n_pieces):
        if n % 11 == 0:
            path = os.path.join(directory, "part-%d.txt" % n)
            with open(path, "wb") as f:
                f.write(b"file %d\n" % n)
            files[n] = Gio.File.new_for_path(path)
            expected.append(b"file %d\n" % n)
        else:
            expected.append(b"record %d\n" % n)

    out_path = os.path.join(directory, "out")
    out = open(out_path, "wb")
    # [start]
    producer = Sluice.OrderedItemProducer.new(None, 32)
    producer.start(write_all, out)
    # [/start]

    # [feed]
    state = {"next": 0, "outcome": None}

    def on_stopped(source, result, *unused):
        try:
            state["outcome"] = ("wrote", source.stop_finish(result))
        except GLib.Error as error:
            state["outcome"] = ("failed", error)

    def feed(*unused):
        # A closed producer (a piece failed, the writer gave up) is ready for
        # good and refuses every call: stop asking, let the stop say why.
        while state["next"] < n_pieces and producer.is_ready() and not producer.props.closed:
            n = state["next"]
            state["next"] += 1
            if n in files:
                producer.produce_item(fetch_file, files[n])
            else:
                producer.produce_item_in_thread(render_record, n)
        if state["next"] < n_pieces and not producer.props.closed:
            return GLib.SOURCE_CONTINUE  # the window is full: wait until ready
        producer.stop_async(None, on_stopped)
        return GLib.SOURCE_REMOVE

    ready = producer.create_ready_source(None)
    ready.set_callback(feed)
    ready.attach(None)
    context = GLib.MainContext.default()
    while state["outcome"] is None:
        context.iteration(True)
    # [/feed]

    out.close()
    with open(out_path, "rb") as f:
        written = f.read()
    for n in files:
        files[n].delete(None)
    os.unlink(out_path)
    os.rmdir(directory)

    status, value = state["outcome"]
    if status != "wrote":
        print("ordered_writer.py: %s" % value.message, file=sys.stderr)
        return 1
    if written != b"".join(expected):
        print("ordered_writer.py: the output is not in call order", file=sys.stderr)
        return 1
    print("wrote %d bytes in order" % value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
