#!/usr/bin/python3
# worker_helper.py: a helper process written in Python: serves named
# functions with Sluice.WorkerService to the SluiceProcessWorker that
# started it (tests/python/test_workers.py).
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import sys

import gi

gi.require_version("GLib", "2.0")
gi.require_version("Sluice", "1")
from gi.repository import GLib, Sluice  # noqa: E402


def upper(args, cancellable, data):
    (text,) = args.unpack()
    return GLib.Variant("(s)", (text.upper(),))


def main():
    service = Sluice.WorkerService.new(1)
    service.register("upper", "(s)", upper, None)
    service.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
