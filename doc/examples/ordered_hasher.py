#!/usr/bin/python3
# ordered_hasher.py: the ordered file hasher, in Python (doc/examples.md)
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# doc/examples/ordered-hasher.c with PyGObject: each file is read with GIO
# (load_contents_async, no thread) from an item function, then hashed with
# SHA-256 in the task queue (slot.continue_in_thread); ONE consumer thread
# prints "<sha256>  <path>" lines in the order of the arguments, as
# sha256sum does. Files are asked for from the producer's ready source, so
# at most WINDOW are in memory at once; the program checks that bound. A
# missing or unreadable file ends the run with an error naming it. It uses
# the Pythonic forms of gi.overrides.Sluice (installed with the library;
# the tests take it from python/ in the source tree).
#
# The test suite runs it with --self-test (tests/meson.build): 200 files of
# random sizes, every line compared with a serial GLib.Checksum of each
# file, the live items compared with the window, a list with a missing file
# must fail naming it; exit status 0 only if all holds. doc/examples.md
# shows the code between the markers.
#
# Usage: ordered_hasher.py [--window N] FILE...
#        ordered_hasher.py --self-test

import argparse
import hashlib
import os
import random
import shutil
import sys
import tempfile

import gi

gi.require_version("Gio", "2.0")
gi.require_version("Sluice", "1")
from gi.repository import Gio, GLib, Sluice  # noqa: E402

DEFAULT_WINDOW = 16
N_TEST_FILES = 200
MAX_TEST_FILE_SIZE = 300 * 1024


# [hash]
def hash_contents(contents):
    """The blocking half of an item: runs in a thread of the task queue."""
    # The item's cancellable: fired when the producer stops (a file failed).
    if Gio.Cancellable.get_current().is_cancelled():
        raise GLib.Error.new_literal(
            Gio.io_error_quark(), "cancelled", Gio.IOErrorEnum.CANCELLED
        )
    return hashlib.sha256(contents).hexdigest()


def read_file(slot, gfile):
    """The non-blocking half: an item function, starts the read at once."""

    def loaded(source, result, *unused):
        try:
            ok, contents, etag = source.load_contents_finish(result)
        except GLib.Error as error:
            slot.fail(error)  # GIO's message names the file
            return
        # hash_contents(contents) runs in the task queue: what it returns
        # completes the slot, what it raises fails it.
        slot.continue_in_thread(hash_contents, contents)

    gfile.load_contents_async(slot.get_cancellable(), loaded)
# [/hash]


# [print]
def print_sums(digests, paths, lines):
    """The consumer: runs in a thread of its own. The n-th item is the
    digest of the n-th path, since items arrive in call order."""
    n = 0
    for digest in digests:  # raises the GLib.Error of a failed file
        line = "%s  %s" % (digest, paths[n])
        n += 1
        if lines is not None:
            lines.append(line)
        else:
            print(line)
    return n  # what stop_finish() returns
# [/print]


def hash_files(paths, window, lines=None):
    """Hashes @paths in order with at most @window files live; returns the
    most live items seen. With @lines, collects the lines there instead of
    printing them. Raises the GLib.Error of a failed file."""
    # [start]
    producer = Sluice.OrderedItemProducer(window=window)
    producer.start(print_sums, paths, lines)
    consumerator = producer.get_consumerator()
    # [/start]

    # [feed]
    state = {"next": 0, "max_live": 0, "outcome": None}

    def on_stopped(source, result, *unused):
        try:
            state["outcome"] = ("done", source.stop_finish(result))
        except GLib.Error as error:
            state["outcome"] = ("failed", error)

    def feed(*unused):
        # A closed producer (a file failed) is ready for good: stop asking.
        while state["next"] < len(paths) and producer.is_ready() and not producer.props.closed:
            gfile = Gio.File.new_for_path(paths[state["next"]])
            state["next"] += 1
            producer.produce_item(read_file, gfile)
            # Live: asked for and not yet taken by the printer.
            state["max_live"] = max(state["max_live"], consumerator.get_n_items())
        if state["next"] < len(paths) and not producer.props.closed:
            return GLib.SOURCE_CONTINUE  # the window is full: called again when ready
        producer.stop_async(None, on_stopped)
        return GLib.SOURCE_REMOVE

    ready = producer.create_ready_source(None)
    ready.set_callback(feed)
    ready.attach(None)
    context = GLib.MainContext.default()
    while state["outcome"] is None:
        context.iteration(True)
    ready.destroy()
    # [/feed]

    status, value = state["outcome"]
    if status == "failed":
        raise value
    return state["max_live"]


def serial_sha256(path):
    """The reference: the file read and hashed with GLib.Checksum."""
    checksum = GLib.Checksum.new(GLib.ChecksumType.SHA256)
    with open(path, "rb") as f:
        checksum.update(f.read())
    return checksum.get_string()


def self_test():
    directory = tempfile.mkdtemp(prefix="ordered-hasher-")
    wrong = []
    try:
        paths = []
        for i in range(N_TEST_FILES):
            path = os.path.join(directory, "file-%03d" % i)
            with open(path, "wb") as f:
                f.write(os.urandom(random.randint(0, MAX_TEST_FILE_SIZE)))
            paths.append(path)

        # Every file, in order, within the window.
        lines = []
        max_live = 0
        try:
            max_live = hash_files(paths, DEFAULT_WINDOW, lines)
        except GLib.Error as error:
            wrong.append("hashing failed: %s" % error.message)
        if len(lines) != len(paths):
            wrong.append("%d lines for %d files" % (len(lines), len(paths)))
        for n, (line, path) in enumerate(zip(lines, paths)):
            expected = "%s  %s" % (serial_sha256(path), path)
            if line != expected:
                wrong.append(
                    "line %d differs:\n  got      %s\n  expected %s" % (n + 1, line, expected)
                )
        if not 0 < max_live <= DEFAULT_WINDOW:
            wrong.append("%d items were live at once, window %d" % (max_live, DEFAULT_WINDOW))

        # A missing file in the middle ends the run with an error naming
        # it, after the lines of the files before it.
        missing = os.path.join(directory, "missing")
        lines = []
        try:
            hash_files(paths[:2] + [missing] + paths[2:3], 2, lines)
            wrong.append("a missing file was not reported")
        except GLib.Error as error:
            if (
                not error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.NOT_FOUND)
                or missing not in error.message
                or len(lines) > 2
            ):
                wrong.append("a missing file gave %r after %d lines" % (error.message, len(lines)))
    finally:
        shutil.rmtree(directory)

    for what in wrong:
        print("ordered_hasher.py: %s" % what, file=sys.stderr)
    if wrong:
        return 1
    print(
        "hashed %d files in order, at most %d of %d live"
        % (N_TEST_FILES, max_live, DEFAULT_WINDOW)
    )
    return 0


def main():
    parser = argparse.ArgumentParser(description="Prints the SHA-256 of each FILE, in order.")
    parser.add_argument(
        "--self-test", action="store_true", help="hash generated files and check"
    )
    parser.add_argument(
        "-w",
        "--window",
        type=int,
        default=DEFAULT_WINDOW,
        metavar="N",
        help="files in flight at most (%d)" % DEFAULT_WINDOW,
    )
    parser.add_argument("files", nargs="*", metavar="FILE")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    if not args.files or args.window < 1:
        parser.print_usage(sys.stderr)
        return 2
    try:
        hash_files(args.files, args.window)
    except GLib.Error as error:
        sys.stdout.flush()
        print("ordered_hasher.py: %s" % error.message, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
