/* sluice-worker.c: the worker interface and the tasks given to workers
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "sluice-private.h"

#include "sluice-worker-private.h"

/**
 * SluiceWorker:
 *
 * A worker that a [class@Sluice.TaskQueue] hires for named calls
 * ([method@Sluice.TaskQueue.call_async]), after AsynQueue's `IWorker`.
 *
 * A worker serves the default series (calls made with a %NULL series) and
 * the series its [vfunc@Sluice.Worker.get_series] names: its
 * *qualifications*. The queue gives it up to
 * [vfunc@Sluice.Worker.get_capacity] tasks at once, the most urgent
 * queued tasks of those series first, with
 * [vfunc@Sluice.Worker.run_task]; the worker runs them when and where it
 * sees fit and completes each with [method@Sluice.WorkerTask.return_value],
 * [method@Sluice.WorkerTask.return_error] or, when it could not run it,
 * [method@Sluice.WorkerTask.give_back] (the task goes back to the queue at
 * its old place).
 *
 * [method@Sluice.Worker.stop_async] stops a worker once the tasks it holds
 * are done; [method@Sluice.Worker.crash] stops it at once and returns the
 * tasks it had not finished. A worker that can no longer work (its
 * process or connection was lost) emits [signal@Sluice.Worker::resigned]:
 * the queue then takes back its unfinished tasks, which run on another
 * qualified worker.
 *
 * Sluice has two: [class@Sluice.ThreadWorker] runs named functions in
 * threads of its own, [class@Sluice.ProcessWorker] in helper processes.
 * Implement it for other kinds (a remote worker, a mock in a test).
 */

G_DEFINE_INTERFACE (SluiceWorker, sluice_worker, G_TYPE_OBJECT)

enum
{
  SIGNAL_RESIGNED,
  SIGNAL_CAPACITY_CHANGED,
  N_SIGNALS
};

static guint worker_signals[N_SIGNALS];

static guint
sluice_worker_real_get_capacity (SluiceWorker *self)
{
  return 1;
}

/* The default stop: nothing to wait for. A binding that cannot implement
 * a virtual function taking a callback (GJS) gets this one. */
static void
sluice_worker_real_stop_async (SluiceWorker *self,
                               GCancellable *cancellable,
                               GAsyncReadyCallback callback,
                               gpointer user_data)
{
  GTask *task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, sluice_worker_real_stop_async);
  g_task_return_boolean (task, TRUE);
  g_object_unref (task);
}

static gboolean
sluice_worker_real_stop_finish (SluiceWorker *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

static GPtrArray *
sluice_worker_real_crash (SluiceWorker *self)
{
  return NULL;
}

static void
sluice_worker_default_init (SluiceWorkerInterface *iface)
{
  iface->get_capacity = sluice_worker_real_get_capacity;
  iface->stop_async = sluice_worker_real_stop_async;
  iface->stop_finish = sluice_worker_real_stop_finish;
  iface->crash = sluice_worker_real_crash;

  /**
   * SluiceWorker::resigned:
   * @worker: the worker
   * @error: what made it resign
   *
   * Emitted by a worker that can no longer work (it lost its process or
   * its connection), in whatever thread it noticed that, with none of its
   * locks held. A [class@Sluice.TaskQueue] that hired it then crashes it
   * ([method@Sluice.Worker.crash]) and gives the tasks it had not finished
   * to other qualified workers.
   */
  worker_signals[SIGNAL_RESIGNED] =
      g_signal_new ("resigned", G_TYPE_FROM_INTERFACE (iface), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                    NULL, G_TYPE_NONE, 1, G_TYPE_ERROR);

  /**
   * SluiceWorker::capacity-changed:
   * @worker: the worker
   *
   * Emitted by a worker whose capacity ([method@Sluice.Worker.get_capacity])
   * changed ([method@Sluice.Worker.capacity_changed]), in whatever thread
   * it changed, with none of its locks held. A [class@Sluice.TaskQueue]
   * that hired it reads its capacity again: it gives it more tasks at once
   * if it grew, and no more until it holds fewer if it shrank.
   */
  worker_signals[SIGNAL_CAPACITY_CHANGED] =
      g_signal_new ("capacity-changed", G_TYPE_FROM_INTERFACE (iface), G_SIGNAL_RUN_LAST, 0, NULL,
                    NULL, NULL, G_TYPE_NONE, 0);
}

/**
 * sluice_worker_get_series:
 * @self: a worker
 *
 * Gets the series @self serves besides the default one (its
 * qualifications). A [class@Sluice.TaskQueue] reads them when it hires
 * @self.
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer full) (array zero-terminated=1) (nullable): the series,
 *   or %NULL for none
 */
char **
sluice_worker_get_series (SluiceWorker *self)
{
  SluiceWorkerInterface *iface;

  g_return_val_if_fail (SLUICE_IS_WORKER (self), NULL);

  iface = SLUICE_WORKER_GET_IFACE (self);
  return iface->get_series != NULL ? iface->get_series (self) : NULL;
}

/**
 * sluice_worker_get_capacity:
 * @self: a worker
 *
 * Gets how many tasks @self takes at once. A [class@Sluice.TaskQueue]
 * reads it when it hires @self, and again when @self emits
 * [signal@Sluice.Worker::capacity-changed].
 *
 * This function is safe to call from any thread.
 *
 * Returns: the number of tasks, at least 1
 */
guint
sluice_worker_get_capacity (SluiceWorker *self)
{
  g_return_val_if_fail (SLUICE_IS_WORKER (self), 1);

  return MAX (SLUICE_WORKER_GET_IFACE (self)->get_capacity (self), 1);
}

/**
 * sluice_worker_capacity_changed:
 * @self: a worker
 *
 * Says that the capacity of @self ([vfunc@Sluice.Worker.get_capacity])
 * changed: emits [signal@Sluice.Worker::capacity-changed], so that the
 * [class@Sluice.TaskQueue] that hired @self reads it again. A
 * [class@Sluice.ProcessWorker] does so as the windows of its processes
 * adapt to the time its calls take.
 *
 * Call it from any thread, with none of the worker's locks held.
 */
void
sluice_worker_capacity_changed (SluiceWorker *self)
{
  g_return_if_fail (SLUICE_IS_WORKER (self));

  g_signal_emit (self, worker_signals[SIGNAL_CAPACITY_CHANGED], 0);
}

/**
 * sluice_worker_run_task:
 * @self: a worker
 * @task: a task to run
 *
 * Gives @task to @self. Only a [class@Sluice.TaskQueue] that hired @self
 * calls it, from any thread.
 */
void
sluice_worker_run_task (SluiceWorker *self, SluiceWorkerTask *task)
{
  g_return_if_fail (SLUICE_IS_WORKER (self));
  g_return_if_fail (SLUICE_IS_WORKER_TASK (task));

  SLUICE_WORKER_GET_IFACE (self)->run_task (self, task);
}

/**
 * sluice_worker_stop_async:
 * @self: a worker
 * @cancellable: (nullable): a cancellable, to stop waiting
 * @callback: (scope async) (closure user_data): called once @self has
 *   stopped
 * @user_data: data for @callback
 *
 * Stops @self once the tasks it holds are done: it takes no more. A
 * [class@Sluice.TaskQueue] stops the workers it hired when it is shut
 * down; do not stop a worker that is still hired (fire it with
 * [method@Sluice.TaskQueue.fire]).
 *
 * An implementation that does not override it stops at once: enough for
 * a worker whose tasks are all completed by the time its queue's shutdown
 * stops it, and the only choice in a language that cannot implement a
 * virtual function taking a callback (GJS).
 *
 * This function is safe to call from any thread.
 */
void
sluice_worker_stop_async (SluiceWorker *self,
                          GCancellable *cancellable,
                          GAsyncReadyCallback callback,
                          gpointer user_data)
{
  g_return_if_fail (SLUICE_IS_WORKER (self));

  SLUICE_WORKER_GET_IFACE (self)->stop_async (self, cancellable, callback, user_data);
}

/**
 * sluice_worker_stop_finish:
 * @self: a worker
 * @result: the result given to the callback of
 *   [method@Sluice.Worker.stop_async]
 * @error: return location for an error
 *
 * Finishes [method@Sluice.Worker.stop_async].
 *
 * Returns: %TRUE once @self has stopped, or %FALSE with @error set
 */
gboolean
sluice_worker_stop_finish (SluiceWorker *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (SLUICE_IS_WORKER (self), FALSE);

  return SLUICE_WORKER_GET_IFACE (self)->stop_finish (self, result, error);
}

/**
 * sluice_worker_crash:
 * @self: a worker
 *
 * Stops @self at once, rudely: a process worker kills its processes, a
 * thread worker lets its threads leave after the function they are in
 * (whose results are then dropped). [method@Sluice.TaskQueue.fire] does
 * this and gives the returned tasks to other workers.
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer full) (element-type SluiceWorkerTask): the tasks @self
 *   held and had not finished; completing them later has no effect
 */
GPtrArray *
sluice_worker_crash (SluiceWorker *self)
{
  GPtrArray *tasks;

  g_return_val_if_fail (SLUICE_IS_WORKER (self), NULL);

  tasks = SLUICE_WORKER_GET_IFACE (self)->crash (self);
  if (tasks == NULL)
    tasks = g_ptr_array_new_with_free_func (g_object_unref);
  return tasks;
}

/**
 * sluice_worker_resign:
 * @self: a worker
 * @error: why it resigns
 *
 * Emits [signal@Sluice.Worker::resigned]: for implementations, in any
 * thread, with none of their locks held.
 *
 * This function is safe to call from any thread.
 */
void
sluice_worker_resign (SluiceWorker *self, const GError *error)
{
  g_return_if_fail (SLUICE_IS_WORKER (self));
  g_return_if_fail (error != NULL);

  g_signal_emit (self, worker_signals[SIGNAL_RESIGNED], 0, error);
}

/**
 * SluiceWorkerTask:
 *
 * A named call given to a [iface@Sluice.Worker]: its function name, its
 * arguments, its priority and a cancellable to pass to the function.
 *
 * The worker completes it exactly once, from any thread:
 * [method@Sluice.WorkerTask.return_value] or
 * [method@Sluice.WorkerTask.return_error] with the outcome of the call, or
 * [method@Sluice.WorkerTask.give_back] when it could not run it. A task is
 * no longer *wanted* ([method@Sluice.WorkerTask.is_wanted]) once its call
 * was cancelled, timed out or taken back from the worker: its cancellable
 * is then cancelled and its completion is ignored, but the worker still
 * completes it, to free its place.
 */

G_DEFINE_FINAL_TYPE (SluiceWorkerTask, sluice_worker_task, G_TYPE_OBJECT)

static void
sluice_worker_task_finalize (GObject *object)
{
  SluiceWorkerTask *self = SLUICE_WORKER_TASK (object);

  g_clear_object (&self->cancellable);
  g_clear_object (&self->call_task);

  G_OBJECT_CLASS (sluice_worker_task_parent_class)->finalize (object);
}

static void
sluice_worker_task_class_init (SluiceWorkerTaskClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = sluice_worker_task_finalize;
}

static void
sluice_worker_task_init (SluiceWorkerTask *self)
{
}

SluiceWorkerTask *
sluice_worker_task_new (GTask *call_task, SluiceHired *hired)
{
  SluiceWorkerTask *self = g_object_new (SLUICE_TYPE_WORKER_TASK, NULL);

  self->call_task = g_object_ref (call_task);
  self->hired = hired;
  self->wanted = TRUE;
  return self;
}

static SluiceCall *
task_call (SluiceWorkerTask *self)
{
  return g_task_get_task_data (self->call_task);
}

/**
 * sluice_worker_task_get_series:
 * @self: a task
 *
 * Gets the series of the call.
 *
 * This function is safe to call from any thread.
 *
 * Returns: (nullable): the series, %NULL for the default one
 */
const char *
sluice_worker_task_get_series (SluiceWorkerTask *self)
{
  g_return_val_if_fail (SLUICE_IS_WORKER_TASK (self), NULL);

  return task_call (self)->series;
}

/**
 * sluice_worker_task_get_name:
 * @self: a task
 *
 * Gets the name of the function to call.
 *
 * This function is safe to call from any thread.
 *
 * Returns: the name
 */
const char *
sluice_worker_task_get_name (SluiceWorkerTask *self)
{
  g_return_val_if_fail (SLUICE_IS_WORKER_TASK (self), NULL);

  return task_call (self)->name;
}

/**
 * sluice_worker_task_get_args:
 * @self: a task
 *
 * Gets the arguments of the call.
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer none): the arguments
 */
GVariant *
sluice_worker_task_get_args (SluiceWorkerTask *self)
{
  g_return_val_if_fail (SLUICE_IS_WORKER_TASK (self), NULL);

  return task_call (self)->args;
}

/**
 * sluice_worker_task_get_priority:
 * @self: a task
 *
 * Gets the priority of the call: a worker runs the most urgent (lowest
 * value) of the tasks it holds first.
 *
 * This function is safe to call from any thread.
 *
 * Returns: the priority
 */
int
sluice_worker_task_get_priority (SluiceWorkerTask *self)
{
  g_return_val_if_fail (SLUICE_IS_WORKER_TASK (self), 0);

  return task_call (self)->priority;
}

/**
 * sluice_worker_task_get_timeout:
 * @self: a task
 *
 * Gets the timeout of the call, counted from when the worker got it.
 *
 * This function is safe to call from any thread.
 *
 * Returns: the timeout in milliseconds, or 0 for none
 */
int
sluice_worker_task_get_timeout (SluiceWorkerTask *self)
{
  g_return_val_if_fail (SLUICE_IS_WORKER_TASK (self), 0);

  return MAX (task_call (self)->timeout_ms, 0);
}

/**
 * sluice_worker_task_get_sequence:
 * @self: a task
 *
 * Gets the place of the call in its queue: calls of equal priority were
 * made in the order of their sequence numbers, and a worker runs those it
 * holds in that order.
 *
 * This function is safe to call from any thread.
 *
 * Returns: the sequence number
 */
guint64
sluice_worker_task_get_sequence (SluiceWorkerTask *self)
{
  g_return_val_if_fail (SLUICE_IS_WORKER_TASK (self), 0);

  return task_call (self)->seq;
}

/**
 * sluice_worker_task_get_cancellable:
 * @self: a task
 *
 * Gets the cancellable to pass to the function: it is cancelled when the
 * call is cancelled, times out, or the task is taken back from the worker.
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer none): the cancellable of this task
 */
GCancellable *
sluice_worker_task_get_cancellable (SluiceWorkerTask *self)
{
  GCancellable *cancellable;

  g_return_val_if_fail (SLUICE_IS_WORKER_TASK (self), NULL);

  cancellable = g_atomic_pointer_get (&self->cancellable);
  if (cancellable != NULL)
    return cancellable;
  cancellable = g_cancellable_new ();
  if (!g_atomic_pointer_compare_and_exchange (&self->cancellable, NULL, cancellable))
    g_object_unref (cancellable);
  else if (g_atomic_int_get (&self->cancelled))
    g_cancellable_cancel (cancellable);
  return g_atomic_pointer_get (&self->cancellable);
}

/* Internal entry point: see sluice-worker-private.h. The flag is set
 * before the pointer is read, and a getter reads the flag after it sets
 * the pointer: one of them cancels. */
void
sluice_worker_task_cancel (SluiceWorkerTask *task)
{
  GCancellable *cancellable;

  g_atomic_int_set (&task->cancelled, TRUE);
  cancellable = g_atomic_pointer_get (&task->cancellable);
  if (cancellable != NULL)
    g_cancellable_cancel (cancellable);
}

/**
 * sluice_worker_task_is_wanted:
 * @self: a task
 *
 * Whether the result of @self is still wanted: %FALSE once its call was
 * cancelled, timed out or completed, or the task was taken back from its
 * worker. A worker may skip a task that is not wanted (and still complete
 * it).
 *
 * This function is safe to call from any thread.
 *
 * Returns: whether the result is wanted
 */
gboolean
sluice_worker_task_is_wanted (SluiceWorkerTask *self)
{
  g_return_val_if_fail (SLUICE_IS_WORKER_TASK (self), FALSE);

  return g_atomic_int_get (&self->wanted);
}

/**
 * sluice_worker_task_return_value:
 * @self: a task
 * @result: the result of the call (a floating reference is sunk)
 *
 * Completes @self with @result: the call returns it, unless it is no
 * longer wanted.
 *
 * This function is safe to call from any thread.
 */
void
sluice_worker_task_return_value (SluiceWorkerTask *self, GVariant *result)
{
  g_return_if_fail (SLUICE_IS_WORKER_TASK (self));
  g_return_if_fail (result != NULL);

  sluice_calls_task_completed (self, g_variant_ref_sink (result), NULL, FALSE);
}

/**
 * sluice_worker_task_return_error:
 * @self: a task
 * @error: the error of the call (copied)
 *
 * Completes @self with @error: the call fails with it, unless it is no
 * longer wanted.
 *
 * This function is safe to call from any thread.
 */
void
sluice_worker_task_return_error (SluiceWorkerTask *self, const GError *error)
{
  g_return_if_fail (SLUICE_IS_WORKER_TASK (self));
  g_return_if_fail (error != NULL);

  sluice_calls_task_completed (self, NULL, g_error_copy (error), FALSE);
}

/**
 * sluice_worker_task_give_back:
 * @self: a task
 * @worker_lost: whether the worker was lost while it ran the call (its
 *   process died)
 *
 * Completes @self without a result: its call goes back to the queue at
 * its old place, to run on a qualified worker. A call that workers were
 * lost in three times fails with %SLUICE_ERROR_WORKER_LOST instead.
 *
 * This function is safe to call from any thread.
 */
void
sluice_worker_task_give_back (SluiceWorkerTask *self, gboolean worker_lost)
{
  g_return_if_fail (SLUICE_IS_WORKER_TASK (self));

  sluice_calls_task_completed (self, NULL, NULL, worker_lost);
}

/* Internal entry point: see sluice-worker-private.h. */
void
sluice_worker_complete_stop_waiters (GPtrArray *waiters)
{
  if (waiters == NULL)
    return;
  for (guint i = 0; i < waiters->len; i++)
    {
      g_task_return_boolean (waiters->pdata[i], TRUE);
      g_object_unref (waiters->pdata[i]);
    }
  g_ptr_array_unref (waiters);
}
