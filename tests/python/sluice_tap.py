# sluice_tap.py: unittest results as TAP, for meson test
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Shared by the Python tests of tests/python/ (they find it next to them).

import sys
import unittest

DEADLINE_S = 60


def skip_all(reason):
    """Skips the whole test: the TAP plan "1..0 # SKIP reason", which meson
    reports as a skip."""
    print("1..0 # SKIP " + reason)
    sys.exit(0)


def require_gi():
    """Asks gi for the versions the tests use (GLib, GObject, Gio 2.0 and
    Sluice 1); skips the whole test when python3-gi is missing. A missing
    Sluice typelib is a failure, not a skip: the build made one."""
    try:
        import gi
    except ImportError:
        skip_all("python3-gi is not installed (Debian: apt-get install python3-gi)")
    for namespace in ("GLib", "GObject", "Gio"):
        gi.require_version(namespace, "2.0")
    gi.require_version("Sluice", "1")


def wait_until(cond, what="the condition"):
    """Runs the default main context until cond() holds (asserted, within
    DEADLINE_S; the message names what); a 2 ms tick keeps it checking
    conditions set by threads."""
    from gi.repository import GLib

    context = GLib.MainContext.default()
    deadline = GLib.get_monotonic_time() + DEADLINE_S * 1000000
    tick = GLib.timeout_add(2, lambda: True)
    try:
        while not cond() and GLib.get_monotonic_time() < deadline:
            context.iteration(True)
    finally:
        GLib.source_remove(tick)
    assert cond(), "timed out waiting for " + what


class TapResult(unittest.TestResult):
    """Prints TAP, which meson test reads."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def report(self, test, ok, note=""):
        self.n += 1
        print("%s %d - %s%s" % ("ok" if ok else "not ok", self.n, test.id(), note), flush=True)

    def report_error(self, test, err):
        self.report(test, False)
        print("# " + self._exc_info_to_string(err, test).replace("\n", "\n# "), flush=True)

    def addSuccess(self, test):
        super().addSuccess(test)
        self.report(test, True)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self.report_error(test, err)

    def addError(self, test, err):
        super().addError(test, err)
        self.report_error(test, err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.report(test, True, " # SKIP " + reason)


def run(*test_case_classes):
    """Runs the test cases (those named in argv, if any); the exit status."""
    suite = unittest.TestSuite()
    for case in test_case_classes:
        suite.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(case))
    if len(sys.argv) > 1:
        suite = unittest.TestSuite(t for t in suite if any(a in t.id() for a in sys.argv[1:]))
    result = TapResult()
    suite.run(result)
    print("1..%d" % result.n)
    return 0 if result.wasSuccessful() else 1
