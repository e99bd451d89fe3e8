/* sluice-worker.h: workers that a task queue hires for named calls
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(SLUICE_INSIDE) && !defined(SLUICE_COMPILATION)
#error "Only <sluice/sluice.h> can be included directly."
#endif

#include <gio/gio.h>
#include <sluice/sluice-version-macros.h>

G_BEGIN_DECLS

/**
 * SluiceNamedFunc:
 * @args: the arguments of the call, of the type the function was registered
 *   with
 * @cancellable: (nullable): cancelled when the call is cancelled, times out
 *   or is no longer wanted: check it now and then. It is the call's only
 *   while the function runs (a [class@Sluice.WorkerService] gives the
 *   next call on the thread the same one if it was not cancelled): do not
 *   keep it, or a handler on it, after returning
 * @user_data: (closure): the data given with the function
 * @error: return location for an error
 *
 * A blocking function that serves named calls
 * ([method@Sluice.TaskQueue.call_async]): registered under a name with a
 * [class@Sluice.ThreadWorker] (or, in a helper process, a
 * [class@Sluice.WorkerService]), and run in a thread of it.
 *
 * Returns: (nullable) (transfer full): the result (a floating reference
 *   is sunk), or %NULL with @error set; %NULL without an error is an empty
 *   tuple, `()`
 */
typedef GVariant *(*SluiceNamedFunc) (GVariant *args,
                                      GCancellable *cancellable,
                                      gpointer user_data,
                                      GError **error);

#define SLUICE_TYPE_WORKER_TASK (sluice_worker_task_get_type ())

SLUICE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SluiceWorkerTask, sluice_worker_task, SLUICE, WORKER_TASK, GObject)

#define SLUICE_TYPE_WORKER (sluice_worker_get_type ())

SLUICE_AVAILABLE_IN_ALL
G_DECLARE_INTERFACE (SluiceWorker, sluice_worker, SLUICE, WORKER, GObject)

/**
 * SluiceWorkerInterface:
 * @get_series: returns the series the worker serves besides the default
 *   one, as a %NULL-terminated array (transfer full); %NULL for none
 * @get_capacity: returns how many tasks the worker takes at once (at least
 *   1); a worker whose capacity changes calls
 *   [method@Sluice.Worker.capacity_changed]
 * @run_task: takes a task, to run it when and where the worker sees fit,
 *   the most urgent of those it holds first; the worker completes it later
 *   (or now) with [method@Sluice.WorkerTask.return_value],
 *   [method@Sluice.WorkerTask.return_error] or
 *   [method@Sluice.WorkerTask.give_back]. Called from any thread, never
 *   with more tasks held than the capacity says.
 * @stop_async: stops the worker once the tasks it holds are done; the
 *   default completes at once (see [method@Sluice.Worker.stop_async])
 * @stop_finish: finishes @stop_async
 * @crash: stops the worker at once; returns the tasks it had not finished
 *   (transfer full), whose later completions are ignored; the default
 *   returns none (the queue takes back what the worker holds anyway)
 * @task_timed_out: optional: a task the worker holds has passed its
 *   timeout (its call has failed with %G_IO_ERROR_TIMED_OUT and its
 *   cancellable is cancelled); a worker that can, replaces what runs it
 *   (a process worker kills the process). The worker still completes the
 *   task (its result is dropped) to free its place.
 *
 * The virtual functions of a [iface@Sluice.Worker].
 */
struct _SluiceWorkerInterface
{
  GTypeInterface g_iface;

  char **(*get_series) (SluiceWorker *self);
  guint (*get_capacity) (SluiceWorker *self);
  void (*run_task) (SluiceWorker *self, SluiceWorkerTask *task);
  void (*stop_async) (SluiceWorker *self,
                      GCancellable *cancellable,
                      GAsyncReadyCallback callback,
                      gpointer user_data);
  gboolean (*stop_finish) (SluiceWorker *self, GAsyncResult *result, GError **error);
  GPtrArray *(*crash) (SluiceWorker *self);
  void (*task_timed_out) (SluiceWorker *self, SluiceWorkerTask *task);

  /*< private >*/
  gpointer padding[8];
};

SLUICE_AVAILABLE_IN_ALL
char **sluice_worker_get_series (SluiceWorker *self) G_GNUC_WARN_UNUSED_RESULT;
SLUICE_AVAILABLE_IN_ALL
guint sluice_worker_get_capacity (SluiceWorker *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_worker_capacity_changed (SluiceWorker *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_worker_run_task (SluiceWorker *self, SluiceWorkerTask *task);
SLUICE_AVAILABLE_IN_ALL
void sluice_worker_stop_async (SluiceWorker *self,
                               GCancellable *cancellable,
                               GAsyncReadyCallback callback,
                               gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_worker_stop_finish (SluiceWorker *self, GAsyncResult *result, GError **error);
SLUICE_AVAILABLE_IN_ALL
GPtrArray *sluice_worker_crash (SluiceWorker *self) G_GNUC_WARN_UNUSED_RESULT;
SLUICE_AVAILABLE_IN_ALL
void sluice_worker_resign (SluiceWorker *self, const GError *error);

SLUICE_AVAILABLE_IN_ALL
const char *sluice_worker_task_get_series (SluiceWorkerTask *self);
SLUICE_AVAILABLE_IN_ALL
const char *sluice_worker_task_get_name (SluiceWorkerTask *self);
SLUICE_AVAILABLE_IN_ALL
GVariant *sluice_worker_task_get_args (SluiceWorkerTask *self);
SLUICE_AVAILABLE_IN_ALL
int sluice_worker_task_get_priority (SluiceWorkerTask *self);
SLUICE_AVAILABLE_IN_ALL
int sluice_worker_task_get_timeout (SluiceWorkerTask *self);
SLUICE_AVAILABLE_IN_ALL
GCancellable *sluice_worker_task_get_cancellable (SluiceWorkerTask *self);
SLUICE_AVAILABLE_IN_ALL
guint64 sluice_worker_task_get_sequence (SluiceWorkerTask *self);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_worker_task_is_wanted (SluiceWorkerTask *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_worker_task_return_value (SluiceWorkerTask *self, GVariant *result);
SLUICE_AVAILABLE_IN_ALL
void sluice_worker_task_return_error (SluiceWorkerTask *self, const GError *error);
SLUICE_AVAILABLE_IN_ALL
void sluice_worker_task_give_back (SluiceWorkerTask *self, gboolean worker_lost);

G_END_DECLS
