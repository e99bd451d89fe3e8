#!/usr/bin/python3
# import-sluice.py: Sluice from Python through an installed typelib
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Usage: import-sluice.py TYPELIB_DIR (run by tests/test-install.sh, with
# GI_TYPELIB_PATH and LD_LIBRARY_PATH pointing into a destdir install).
# Fails unless the Sluice typelib comes from TYPELIB_DIR.

import sys

import gi

gi.require_version("GIRepository", "2.0")
gi.require_version("Sluice", "1")
from gi.repository import GIRepository, GLib, Sluice  # noqa: E402

path = GIRepository.Repository.get_default().get_typelib_path("Sluice")
assert path.startswith(sys.argv[1]), path
producer = Sluice.OrderedItemProducer.new(None, 8)
assert producer.props.window == 8 and producer.props.ready
consumerator = Sluice.Consumerator.new(4)
consumerator.close(GLib.Error.new_literal(Sluice.error_quark(), "closed", Sluice.Error.FAILED))
assert consumerator.props.closed
try:
    consumerator.next()
    raise AssertionError("next() after close")
except GLib.Error as error:
    assert error.matches(Sluice.error_quark(), Sluice.Error.FAILED), error
version = (Sluice.MAJOR_VERSION, Sluice.MINOR_VERSION, Sluice.MICRO_VERSION)
print("Sluice %d.%d.%d from %s" % (version + (path,)))
