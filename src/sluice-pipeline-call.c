/* sluice-pipeline-call.c: a pipeline stage that sends its work to workers
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Built on the pipeline's public API: a stage function that makes a named
 * call (sluice_task_queue_call_async()) for its input, waits for it on a
 * main context of its thread and emits the result.
 */

#include "sluice-pipeline-private.h"

typedef struct
{
  SluiceTaskQueue *queue; /* (owned) */
  char *stage_name;
  char *series; /* (nullable) */
  char *function;
  int priority;
  int timeout_ms;
  GCancellable *stopped; /* (owned): the pipeline's stop */
} CallStage;

/* One call waited for in a stage thread. */
typedef struct
{
  gboolean done;
  GVariant *result;
  GError *error;
} CallWait;

/* A main context per stage thread, for the callbacks of its calls: made on
 * the thread's first call, released when the thread ends. */
static GPrivate call_context = G_PRIVATE_INIT ((GDestroyNotify) g_main_context_unref);

static void
call_stage_free (gpointer data)
{
  CallStage *cs = data;

  g_object_unref (cs->queue);
  g_object_unref (cs->stopped);
  g_free (cs->stage_name);
  g_free (cs->series);
  g_free (cs->function);
  g_free (cs);
}

static void
call_done_cb (GObject *source, GAsyncResult *result, gpointer data)
{
  CallWait *wait = data;

  wait->result = sluice_task_queue_call_finish (SLUICE_TASK_QUEUE (source), result, &wait->error);
  wait->done = TRUE;
}

/* Makes the call for @args (a full reference, or %NULL for none) and waits
 * for it: the result, or %NULL with @error set. */
static GVariant *
call_stage_call (CallStage *cs, GVariant *args, GError **error)
{
  GMainContext *context = g_private_get (&call_context);
  CallWait wait = { FALSE, NULL, NULL };

  if (context == NULL)
    {
      context = g_main_context_new ();
      g_private_set (&call_context, context);
    }
  /* The call's callback comes to the thread-default context of the caller. */
  g_main_context_push_thread_default (context);
  sluice_task_queue_call_async (cs->queue, cs->series, cs->function, args, cs->priority,
                                cs->timeout_ms, cs->stopped, call_done_cb, &wait);
  while (!wait.done)
    g_main_context_iteration (context, TRUE);
  g_main_context_pop_thread_default (context);
  if (args != NULL)
    g_variant_unref (args);

  if (wait.result == NULL)
    g_propagate_error (error, wait.error);
  return wait.result;
}

/* A call that failed because the pipeline stopped: its input is dropped,
 * so that join reports the stop (or what caused it), not the calls it
 * cancelled. */
static gboolean
call_stage_stopped (CallStage *cs, GError **error)
{
  if (!g_cancellable_is_cancelled (cs->stopped))
    return FALSE;
  g_clear_error (error);
  return TRUE;
}

static gboolean
call_stage_func (SluicePipelineEmitter *emitter, gpointer item, gpointer user_data, GError **error)
{
  CallStage *cs = user_data;
  GVariant *args = item != NULL ? g_variant_take_ref (item) : NULL;
  GVariant *result = call_stage_call (cs, args, error);

  if (result == NULL)
    return call_stage_stopped (cs, error);
  sluice_pipeline_emitter_emit (emitter, result);
  return TRUE;
}

static gboolean
call_stage_value_func (SluicePipelineEmitter *emitter,
                       const GValue *item,
                       gpointer user_data,
                       GError **error)
{
  CallStage *cs = user_data;
  GValue output = G_VALUE_INIT;
  GVariant *args, *result;

  if (!G_VALUE_HOLDS_VARIANT (item))
    {
      g_set_error (error, SLUICE_ERROR, SLUICE_ERROR_FAILED,
                   _ ("The input of the call stage “%s” is a %s, not a GVariant"), cs->stage_name,
                   G_VALUE_TYPE_NAME (item));
      return FALSE;
    }
  args = g_value_dup_variant (item);
  result = call_stage_call (cs, args, error);
  if (result == NULL)
    return call_stage_stopped (cs, error);
  g_value_init (&output, G_TYPE_VARIANT);
  g_value_take_variant (&output, result);
  sluice_pipeline_emitter_emit_value (emitter, &output);
  g_value_unset (&output);
  return TRUE;
}

/* clang-format off */
/**
 * sluice_pipeline_add_call_stage:
 * @self: a pipeline not started yet
 * @name: the stage's name, for messages and statistics
 * @n_calls: the most calls the stage has in flight (its threads); at
 *   least 1
 * @capacity: the most items waiting in the stage's input queue; at least 1
 * @queue: the task queue whose hired workers run the calls
 *   ([method@Sluice.TaskQueue.hire])
 * @series: (nullable): the series of the calls, %NULL for the default one
 * @function: the name of the function to call
 * @priority: the priority of the calls (see
 *   [method@Sluice.TaskQueue.call_async])
 * @timeout_ms: how long a call may run on a worker, in milliseconds, or 0
 *   for no limit
 *
 * Adds a stage, after the ones added before, that sends its work to
 * workers: for each input it makes a named call
 * ([method@Sluice.TaskQueue.call_async]) of @function with the input as
 * the arguments, and the call's result is the stage's one output. The
 * workers may be threads ([class@Sluice.ThreadWorker]), helper processes
 * ([class@Sluice.ProcessWorker]) or other machines
 * ([class@Sluice.RedisWorker]); the pipeline keeps its order, window and
 * flow control as with any stage.
 *
 * The inputs and outputs are [struct@GLib.Variant]s: in a pipeline made
 * with [ctor@Sluice.Pipeline.new_for_values], values holding a
 * [struct@GLib.Variant] (a `GLib.Variant` in Python; any other input
 * fails with %SLUICE_ERROR_FAILED); in one made with
 * [ctor@Sluice.Pipeline.new], `GVariant *` items (a %NULL input calls with
 * no arguments), and the pipeline's item free function must release them
 * (g_variant_unref()).
 *
 * A call that fails fails its input with the call's error (the function's
 * own, or %G_IO_ERROR_TIMED_OUT, %SLUICE_ERROR_WORKER_LOST,
 * %SLUICE_ERROR_NO_WORKER...), which ends the pipeline or, with
 * [property@Sluice.Pipeline:skip-failed], leaves the input out. A stop of
 * the pipeline cancels the calls in flight (their inputs are dropped).
 *
 * The workers run as they always do: a [class@Sluice.ProcessWorker] or
 * [class@Sluice.RedisWorker] talks to its helpers from the main context it
 * was made in, which must be running (not blocked in the consumer, say)
 * for the stage's calls to complete.
 *
 * Each of the stage's @n_calls threads waits for one call at a time, so
 * @n_calls is the stage's share of the workers: give it as many as the
 * workers can run at once (a process worker's processes times the calls
 * each takes), and a window that covers them.
 *
 * Call it on any thread, before [method@Sluice.Pipeline.start].
 *
 * Returns: the stage's index, from 0
 */
/* clang-format on */
guint
sluice_pipeline_add_call_stage (SluicePipeline *self,
                                const char *name,
                                guint n_calls,
                                guint capacity,
                                SluiceTaskQueue *queue,
                                const char *series,
                                const char *function,
                                int priority,
                                int timeout_ms)
{
  CallStage *cs;

  g_return_val_if_fail (SLUICE_IS_PIPELINE (self), 0);
  g_return_val_if_fail (name != NULL, 0);
  g_return_val_if_fail (SLUICE_IS_TASK_QUEUE (queue), 0);
  g_return_val_if_fail (function != NULL, 0);
  g_return_val_if_fail (n_calls > 0, 0);
  g_return_val_if_fail (capacity > 0, 0);
  g_return_val_if_fail (!sluice_pipeline_is_started (self), 0);

  cs = g_new0 (CallStage, 1);
  cs->queue = g_object_ref (queue);
  cs->stage_name = g_strdup (name);
  cs->series = g_strdup (series);
  cs->function = g_strdup (function);
  cs->priority = priority;
  cs->timeout_ms = timeout_ms;
  cs->stopped = g_object_ref (sluice_pipeline_get_stop_cancellable (self));

  if (sluice_pipeline_carries_values (self))
    return sluice_pipeline_add_value_stage (self, name, n_calls, capacity, call_stage_value_func,
                                            cs, call_stage_free);
  return sluice_pipeline_add_stage (self, name, n_calls, capacity, call_stage_func, cs,
                                    call_stage_free);
}
