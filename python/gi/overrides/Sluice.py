# Sluice.py: PyGObject overrides for Sluice
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Loaded by PyGObject after the Sluice typelib (gi.overrides); adds Python
# conveniences without hiding the C API. Kept minimal: a step or job
# function that raises a Python exception fails its task or job with a
# GLib.Error carrying the exception's text. (Without this module such a
# function returns 0 to C: SLUICE_STEP_FAILED or FALSE, so the task or job
# still ends, with a generic message.)
#
# coiterate_async and put_async take two callbacks. PyGObject 3.42 (Debian
# 12) hands the first callback's user data over only when it is a tuple
# ("TypeError: expected tuple for callback user_data", and the function is
# not called); the overrides bind the data in a Python closure instead, so
# both calls work as their C signatures say, on this PyGObject and later.

from gi.repository import GLib

from ..module import get_introspection_module
from ..overrides import override

Sluice = get_introspection_module("Sluice")

__all__ = []


def _as_glib_error(exc):
    """The GLib.Error a Python exception becomes (SLUICE_ERROR_FAILED)."""
    if isinstance(exc, GLib.Error):
        return exc
    return GLib.Error.new_literal(
        Sluice.error_quark(),
        "%s: %s" % (type(exc).__name__, exc),
        Sluice.Error.FAILED,
    )


def _guard_step(step):
    def guarded_step(task, *user_data):
        try:
            return step(task, *user_data)
        except Exception as exc:
            raise _as_glib_error(exc) from exc

    return guarded_step


def _bind(func, data):
    """func(first, data), whatever user data PyGObject passes after first."""

    def bound(first, *unused):
        return func(first, data)

    return bound


def _guard_job(job):
    def guarded_job(handle, *user_data):
        try:
            started = job(handle, *user_data)
        except Exception as exc:
            raise _as_glib_error(exc) from exc
        # A job that returns nothing has completed its handle or will.
        return True if started is None else started

    return guarded_job


class Cooperator(Sluice.Cooperator):
    def cooperate(self, step, *args, **kwargs):
        return super().cooperate(_guard_step(step), *args, **kwargs)

    def coiterate_async(self, step, step_data, cancellable, callback, *user_data):
        return super().coiterate_async(
            _bind(_guard_step(step), step_data), (), cancellable, callback, *user_data
        )


Cooperator = override(Cooperator)
__all__.append("Cooperator")


class JobQueue(Sluice.JobQueue):
    def put_async(self, channel, job, job_data, cancellable, callback, *user_data):
        return super().put_async(
            channel, _bind(_guard_job(job), job_data), (), cancellable, callback, *user_data
        )

    def put_finish(self, result):
        """The job's result (GLib.Error raised when it failed)."""
        ok, value = super().put_finish(result)
        return value


JobQueue = override(JobQueue)
__all__.append("JobQueue")
