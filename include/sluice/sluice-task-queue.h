/* sluice-task-queue.h: the shared task queue over one GThreadPool
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(SLUICE_INSIDE) && !defined(SLUICE_COMPILATION)
#error "Only <sluice/sluice.h> can be included directly."
#endif

#include <gio/gio.h>
#include <sluice/sluice-version-macros.h>
#include <sluice/sluice-worker.h>

G_BEGIN_DECLS

/* clang-format off */
/**
 * SluiceHireFlags:
 * @SLUICE_HIRE_NONE: the worker's [vfunc@Sluice.Worker.run_task] is called
 *   in whatever thread hands the task over: the thread of a call, of a
 *   completion (maybe another worker's), of a fire or a shutdown, as
 *   [method@Sluice.TaskQueue.hire] does
 * @SLUICE_HIRE_RUN_ON_CONTEXT: the worker's [vfunc@Sluice.Worker.run_task],
 *   [vfunc@Sluice.Worker.task_timed_out] and [vfunc@Sluice.Worker.stop_async]
 *   are called only on the thread-default main context of the thread that
 *   hires it, from a source its main loop dispatches, never from inside a
 *   call of the queue (the cancellables of its tasks are cancelled there
 *   too), and [vfunc@Sluice.Worker.crash] too when it is fired from
 *   another thread: for a worker written in a language that
 *   runs on one thread only (JavaScript) or that should not be called in
 *   foreign threads (Python)
 *
 * How [method@Sluice.TaskQueue.hire_full] hires a worker.
 */
/* clang-format on */
typedef enum /*< flags >*/
{
  SLUICE_HIRE_NONE = 0,
  SLUICE_HIRE_RUN_ON_CONTEXT = 1 << 0,
} SluiceHireFlags;

/**
 * SluiceThreadFunc:
 * @cancellable: (nullable): the cancellable of the work, to check now and then
 * @user_data: (closure): the data given with the function
 * @error: return location for an error
 *
 * A blocking function run in a thread of a [class@Sluice.TaskQueue].
 *
 * Returns: (nullable) (transfer full): the result, or %NULL with @error set
 *   on failure (%NULL without an error is a valid result)
 */
typedef gpointer (*SluiceThreadFunc) (GCancellable *cancellable,
                                      gpointer user_data,
                                      GError **error);

/**
 * SluiceValueThreadFunc:
 * @cancellable: (nullable): the cancellable of the item or task, to check
 *   now and then
 * @value: (out caller-allocates): an unset value, to set to the result
 * @user_data: (closure): the data given with the function
 * @error: return location for an error
 *
 * A blocking function that makes one result as a [struct@GObject.Value],
 * run in a thread of a [class@Sluice.TaskQueue]: the counterpart of
 * [callback@Sluice.ThreadFunc] for producers made with
 * [ctor@Sluice.OrderedItemProducer.new_for_values] and for
 * [method@Sluice.TaskQueue.run_value_async], usable from language
 * bindings (a Python function returns the object, or raises a
 * `GLib.Error`).
 *
 * Sets @value to the result, or @error on failure. A @value left unset is
 * a %NULL pointer.
 */
typedef void (*SluiceValueThreadFunc) (GCancellable *cancellable,
                                       GValue *value,
                                       gpointer user_data,
                                       GError **error);

#define SLUICE_TYPE_TASK_QUEUE (sluice_task_queue_get_type ())

SLUICE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SluiceTaskQueue, sluice_task_queue, SLUICE, TASK_QUEUE, GObject)

SLUICE_AVAILABLE_IN_ALL
SluiceTaskQueue *sluice_task_queue_new (guint max_threads);
SLUICE_AVAILABLE_IN_ALL
SluiceTaskQueue *sluice_task_queue_get_default (void);
SLUICE_AVAILABLE_IN_ALL
guint sluice_task_queue_get_max_threads (SluiceTaskQueue *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_task_queue_set_max_threads (SluiceTaskQueue *self, guint max_threads);
SLUICE_AVAILABLE_IN_ALL
guint sluice_task_queue_get_n_pending (SluiceTaskQueue *self);
SLUICE_AVAILABLE_IN_ALL
guint sluice_task_queue_get_n_running (SluiceTaskQueue *self);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_task_queue_is_shut_down (SluiceTaskQueue *self);

SLUICE_AVAILABLE_IN_ALL
void sluice_task_queue_run_async (SluiceTaskQueue *self,
                                  SluiceThreadFunc func,
                                  gpointer func_data,
                                  GDestroyNotify func_data_destroy,
                                  GFreeFunc result_destroy,
                                  int priority,
                                  GCancellable *cancellable,
                                  GAsyncReadyCallback callback,
                                  gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
gpointer sluice_task_queue_run_finish (SluiceTaskQueue *self,
                                       GAsyncResult *result,
                                       GError **error) G_GNUC_WARN_UNUSED_RESULT;

SLUICE_AVAILABLE_IN_ALL
void sluice_task_queue_run_value_async (SluiceTaskQueue *self,
                                        SluiceValueThreadFunc func,
                                        gpointer func_data,
                                        GDestroyNotify func_data_destroy,
                                        int priority,
                                        GCancellable *cancellable,
                                        GAsyncReadyCallback callback,
                                        gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
GValue *sluice_task_queue_run_finish_value (SluiceTaskQueue *self,
                                            GAsyncResult *result,
                                            GError **error) G_GNUC_WARN_UNUSED_RESULT;

SLUICE_AVAILABLE_IN_ALL
void sluice_task_queue_shutdown_async (SluiceTaskQueue *self,
                                       gboolean cancel_pending,
                                       GCancellable *cancellable,
                                       GAsyncReadyCallback callback,
                                       gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
gboolean
sluice_task_queue_shutdown_finish (SluiceTaskQueue *self, GAsyncResult *result, GError **error);

SLUICE_AVAILABLE_IN_ALL
void sluice_task_queue_call_async (SluiceTaskQueue *self,
                                   const char *series,
                                   const char *name,
                                   GVariant *args,
                                   int priority,
                                   int timeout_ms,
                                   GCancellable *cancellable,
                                   GAsyncReadyCallback callback,
                                   gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
GVariant *sluice_task_queue_call_finish (SluiceTaskQueue *self,
                                         GAsyncResult *result,
                                         GError **error) G_GNUC_WARN_UNUSED_RESULT;
SLUICE_AVAILABLE_IN_ALL
void sluice_task_queue_hire (SluiceTaskQueue *self, SluiceWorker *worker);
SLUICE_AVAILABLE_IN_ALL
void
sluice_task_queue_hire_full (SluiceTaskQueue *self, SluiceWorker *worker, SluiceHireFlags flags);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_task_queue_fire (SluiceTaskQueue *self, SluiceWorker *worker);
SLUICE_AVAILABLE_IN_ALL
guint sluice_task_queue_get_n_calls (SluiceTaskQueue *self);

G_END_DECLS
