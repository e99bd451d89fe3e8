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
        return super().put_finish(result)


JobQueue = override(JobQueue)
__all__.append("JobQueue")


class Pipeline(Sluice.Pipeline):
    def run(self, inputs, consumer=None, timeout_us=-1, cancellable=None):
        """jobq.run: every item of inputs (any iterable) through the stages.

        consumer(outputs) takes the outputs in a thread of its own (None
        drops them). Returns True; raises GLib.Error as join does, or the
        iterable's exception after stopping the pipeline.
        """
        consume = _drop_outputs if consumer is None else _guard_consumer(consumer)
        if isinstance(inputs, (list, tuple)):
            return super().run(list(inputs), consume, None, timeout_us, cancellable)
        self.start(consume)
        try:
            for item in inputs:
                self.put(item, cancellable)
        except BaseException:
            self.stop()
            self.join(-1)
            raise
        self.close_input()
        return self.join(timeout_us)


def _guard_consumer(consumer):
    def guarded_consumer(outputs, *unused):
        try:
            done = consumer(outputs)
        except Exception as exc:
            raise _as_glib_error(exc) from exc
        return True if done is None else done

    return guarded_consumer


def _drop_outputs(outputs, *unused):
    for _ in outputs:
        pass
    return True


Pipeline = override(Pipeline)
__all__.append("Pipeline")


# --- the ordered item producer, its slots and consumerator, the task queue ---
#
# What a Python programmer expects, on top of the value forms of the C API:
# - any callable with any arguments: produce_item(func, *args),
#   (a thread function finds its item's cancellable with
#   Gio.Cancellable.get_current()),
#   produce_item_in_thread(func, *args, priority=..., ...), start(func, *args),
#   slot.continue_in_thread(func, *args), TaskQueue.run_async(func, *args, ...);
# - an exception where it belongs: raised in an item function, it fails that
#   slot (unless the function completed it); in a thread function, that
#   item; in the consumer, the stop (GLib.Error carrying the text);
# - any Python object carried unchanged (ints past 32 bits, tuples, None):
#   items travel in a small carrier object, which PyGObject stores in a
#   GValue of type GObject.TYPE_PYOBJECT with its reference, and the
#   consumer side unwraps (a GObject.Value returned from a callback would be
#   copied without its reference by PyGObject 3.42, and a plain int is
#   stored as a 32-bit one);
# - for item in consumerator, and a producer usable as a context manager,
#   with a blocking stop() for scripts.


class _Carried(object):
    """An item on its way through the library, whatever it is."""

    __slots__ = ("item",)

    def __init__(self, item):
        self.item = item


def _unwrap(value):
    return value.item if isinstance(value, _Carried) else value


def _run_to_value(func, args):
    """A ValueThreadFunc that calls func(*args) and carries its result."""

    def thread_func(cancellable, *unused):
        # The item's cancellable is the thread's current one meanwhile:
        # Gio.Cancellable.get_current() in func, as GIO's own jobs do.
        if cancellable is not None:
            cancellable.push_current()
        try:
            result = func(*args)
        except GLib.Error:
            raise
        except Exception as exc:
            raise _as_glib_error(exc) from exc
        finally:
            if cancellable is not None:
                cancellable.pop_current()
        # In a 1-tuple: PyGObject reads a returned tuple as the out values.
        return (_Carried(result),)

    return thread_func


def _async_callback(callback, user_data):
    if callback is None:
        return None

    def on_done(source, result, *unused):
        callback(source, result, *user_data)

    return on_done


def _iterate_until(context, done):
    while not done():
        context.iteration(True)


class Slot(object):
    """What a Python item function receives: the slot of one item.

    complete(item), fail(error) and continue_in_thread(func, *args) forward
    to the C slot and remember that the slot was handed over, so that an
    exception raised afterwards does not complete it twice."""

    __slots__ = ("_slot", "done")

    def __init__(self, slot):
        self._slot = slot
        self.done = False

    @property
    def sequence(self):
        return self._slot.get_sequence()

    def get_sequence(self):
        return self._slot.get_sequence()

    def get_cancellable(self):
        return self._slot.get_cancellable()

    def complete(self, item=None):
        self.done = True
        self._slot.complete(_Carried(item))

    def fail(self, error):
        self.done = True
        self._slot.fail(_as_glib_error(error))

    def continue_in_thread(self, func, *args):
        """Runs func(*args) in the producer's task queue; its return value
        (or exception) completes the item."""
        self.done = True
        self._slot.continue_in_thread(_run_to_value(func, args))


class OrderedItemProducer(Sluice.OrderedItemProducer):
    # Also for producers made by OrderedItemProducer.new(), which does not
    # run __init__.
    _py_result = None
    _py_consumer = False

    def __init__(self, window=256, task_queue=None, **kwargs):
        if task_queue is not None:
            kwargs["task_queue"] = task_queue
        super().__init__(window=window, **kwargs)
        self._py_result = None
        self._py_error = None

    def produce_item(self, func, *args, cancellable=None, callback=None, user_data=()):
        """Asks for the next item: calls func(slot, *args) now (or once there
        is room), which completes the slot now or later, from any thread."""

        def item_func(c_slot, *unused):
            slot = Slot(c_slot)
            try:
                func(slot, *args)
            except Exception as exc:
                if slot.done:
                    raise
                slot.fail(exc)

        super().produce_item(item_func, (), cancellable, _async_callback(callback, user_data), None)

    def produce_item_in_thread(
        self,
        func,
        *args,
        priority=GLib.PRIORITY_DEFAULT,
        cancellable=None,
        callback=None,
        user_data=(),
    ):
        """Asks for the next item: func(*args) runs in the task queue and its
        return value is the item (an exception fails it)."""
        super().produce_item_in_thread(
            _run_to_value(func, args),
            (),
            priority,
            cancellable,
            _async_callback(callback, user_data),
            None,
        )

    def start(self, func=None, *args):
        """Runs func(consumerator, *args) in a thread of its own; its return
        value is the stop's result, an exception the stop's error. Without
        func, consume on the main loop with consumerator.next_async()."""
        if func is None:
            return super().start(None)

        def consumer(consumerator, *unused):
            try:
                self._py_result = func(consumerator, *args)
            except GLib.Error:
                raise
            except Exception as exc:
                raise _as_glib_error(exc) from exc
            # The result stays on the Python side (a GValue out value cannot
            # carry every object through PyGObject 3.42); stop_finish gives it.
            return None

        self._py_consumer = True
        return super().start(consumer)

    def stop_async(self, cancellable=None, callback=None, *user_data):
        return super().stop_async(cancellable, _async_callback(callback, user_data), None)

    def stop_finish(self, result):
        """The consumer's return value (GLib.Error raised on failure)."""
        value = super().stop_finish(result)
        # A Python consumer's result stayed on the Python side; another
        # consumer's (a C one, such as an OutputStreamConsumer) is the value.
        return self._py_result if self._py_consumer else _unwrap(value)

    def stop(self, cancellable=None):
        """Stops and waits, running the owner's main context meanwhile (call
        it on that context's thread, outside a callback); returns the
        consumer's result or raises the first error."""
        outcome = []

        def on_stopped(source, result, *unused):
            try:
                outcome.append((True, self.stop_finish(result)))
            except GLib.Error as error:
                outcome.append((False, error))

        self.stop_async(cancellable, on_stopped)
        _iterate_until(GLib.MainContext.ref_thread_default(), lambda: outcome)
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        # The body failed: stop production at once (items in flight see
        # their cancellable fire), then wait for the stop as always: it
        # completes once every item asked for has completed.
        if exc is not None:
            self.stop_producing()
            try:
                self.stop()
            except GLib.Error:
                pass
            return False
        self.result = self.stop()
        return False


OrderedItemProducer = override(OrderedItemProducer)
__all__.append("OrderedItemProducer")


class Consumerator(Sluice.Consumerator):
    def __iter__(self):
        return self

    def __next__(self):
        """The next item; StopIteration at the end, GLib.Error on failure."""
        ok, item = self.next()
        if not ok:
            raise StopIteration
        return item

    def next(self):
        """(True, item), or (False, None) at the end; GLib.Error on failure."""
        ok, item = super().next()
        return ok, _unwrap(item)

    def next_finish(self, result):
        ok, item = super().next_finish(result)
        return ok, _unwrap(item)

    def push(self, item=None):
        return super().push(_Carried(item))


Consumerator = override(Consumerator)
__all__.append("Consumerator")


class TaskQueue(Sluice.TaskQueue):
    def run_async(
        self,
        func,
        *args,
        priority=GLib.PRIORITY_DEFAULT,
        cancellable=None,
        callback=None,
        user_data=(),
    ):
        """Runs func(*args) in a thread of the queue; run_finish() gives its
        return value (any object) or raises its exception as a GLib.Error.
        func finds the task's cancellable with Gio.Cancellable.get_current()."""
        return super().run_async(
            _run_to_value(func, args),
            (),
            priority,
            cancellable,
            _async_callback(callback, user_data),
            None,
        )

    def run_finish(self, result):
        return _unwrap(super().run_finish(result))

    def hire(self, worker):
        """Hires worker. One whose do_run_task is written in Python gets
        its tasks on this thread's main context, as hire_full(worker,
        Sluice.HireFlags.RUN_ON_CONTEXT) does: never in the thread of a
        call, of another worker or of the queue, so its Python code runs
        where the caller's does and no other thread waits for the GIL to
        hand it a task. Its do_task_timed_out and do_stop_async run there
        too, and its do_crash when it is fired from another thread.
        hire_full(worker, Sluice.HireFlags.NONE) hires it as C does."""
        flags = Sluice.HireFlags.NONE
        if _runs_task_in_python(worker):
            flags = Sluice.HireFlags.RUN_ON_CONTEXT
        return self.hire_full(worker, flags)


def _runs_task_in_python(worker):
    """Whether worker's run_task is a do_run_task of a Python class (not of
    a class the typelib wraps)."""
    return any(
        "do_run_task" in vars(klass)
        for klass in type(worker).__mro__
        if not klass.__module__.startswith("gi.")
    )


TaskQueue = override(TaskQueue)
__all__.append("TaskQueue")
