/* test-pipeline-call.c: pipeline stages whose work runs on workers
 * (sluice_pipeline_add_call_stage), on thread and process workers
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <sluice/sluice.h>

#include "sluice-test-util.h"

static GVariant *
square (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  gint64 n;

  g_variant_get (args, "(x)", &n);
  /* Results come back out of order from several threads. */
  if (g_random_int_range (0, 4) == 0)
    g_usleep (g_random_int_range (0, 200));
  return g_variant_new ("(x)", n * n);
}

/* Fails the inputs whose number ends in 3. */
static GVariant *
square_but_3 (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  gint64 n;

  g_variant_get (args, "(x)", &n);
  if (n % 10 == 3)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "no square for %" G_GINT64_FORMAT,
                   n);
      return NULL;
    }
  return g_variant_new ("(x)", n * n);
}

typedef struct
{
  GMutex lock;
  GCond cond;
  guint started;
  guint cancelled;
} Blocker;

static void
on_cancelled (GCancellable *cancellable, gpointer data)
{
  Blocker *blocker = data;

  g_mutex_lock (&blocker->lock);
  g_cond_broadcast (&blocker->cond);
  g_mutex_unlock (&blocker->lock);
}

/* Waits until its cancellable is cancelled. */
static GVariant *
wait_for_cancel (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  Blocker *blocker = data;
  gulong handler = g_cancellable_connect (cancellable, G_CALLBACK (on_cancelled), blocker, NULL);

  g_mutex_lock (&blocker->lock);
  blocker->started++;
  g_cond_broadcast (&blocker->cond);
  while (!g_cancellable_is_cancelled (cancellable))
    g_cond_wait (&blocker->cond, &blocker->lock);
  blocker->cancelled++;
  g_mutex_unlock (&blocker->lock);
  g_cancellable_disconnect (cancellable, handler);

  g_cancellable_set_error_if_cancelled (cancellable, error);
  return NULL;
}

/* (x) n -> (x) n + 1, in a plain stage after the call stage. */
static gboolean
add1 (SluicePipelineEmitter *emitter, gpointer item, gpointer data, GError **error)
{
  gint64 n;

  g_variant_get (item, "(x)", &n);
  g_variant_unref (item);
  sluice_pipeline_emitter_emit (emitter, g_variant_ref_sink (g_variant_new ("(x)", n + 1)));
  return TRUE;
}

typedef struct
{
  SluicePipeline *pipeline;
  guint n;
} Feeder;

static gpointer
feed_thread (gpointer data)
{
  Feeder *feeder = data;

  for (guint i = 0; i < feeder->n; i++)
    {
      g_autoptr (GError) error = NULL;

      /* A floating reference: the stage sinks it. */
      if (!sluice_pipeline_put (feeder->pipeline, g_variant_new ("(x)", (gint64) i), NULL, &error))
        {
          g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
          break;
        }
    }
  sluice_pipeline_close_input (feeder->pipeline);
  return NULL;
}

static void
store_result (GObject *source, GAsyncResult *result, gpointer data)
{
  *(GAsyncResult **) data = g_object_ref (result);
}

static void
shutdown_and_wait (SluiceTaskQueue *queue)
{
  GAsyncResult *result = NULL;

  sluice_task_queue_shutdown_async (queue, FALSE, NULL, store_result, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (sluice_task_queue_shutdown_finish (queue, result, NULL));
  g_object_unref (result);
}

/* The consumer: squares of 0..n-1 plus one, in input order. */
static gboolean
check_squares (SluiceConsumerator *outputs, gpointer data, GError **error)
{
  gint64 *n_got = data;
  gpointer item;

  while (sluice_consumerator_next (outputs, &item, error))
    {
      gint64 value;

      g_variant_get (item, "(x)", &value);
      g_assert_cmpint (value, ==, *n_got * *n_got + 1);
      g_variant_unref (item);
      (*n_got)++;
    }
  return *error == NULL;
}

/* Squares through a call stage and a plain stage after it. The consumer
 * runs in a thread of its own and this thread runs the main context: a
 * process worker needs it. */
static void
run_squares (SluiceTaskQueue *queue, guint n, guint n_calls)
{
  SluicePipeline *pipeline = sluice_pipeline_new (TRUE, 32, (GDestroyNotify) g_variant_unref);
  g_autoptr (GError) error = NULL;
  GAsyncResult *result = NULL;
  Feeder feeder = { pipeline, n };
  GThread *thread;
  gint64 n_got = 0;

  g_assert_cmpuint (sluice_pipeline_add_call_stage (pipeline, "square", n_calls, 8, queue, NULL,
                                                    "square", G_PRIORITY_DEFAULT, 0),
                    ==, 0);
  g_assert_cmpuint (sluice_pipeline_add_stage (pipeline, "add1", 2, 8, add1, NULL, NULL), ==, 1);
  sluice_pipeline_start (pipeline, check_squares, &n_got, NULL);
  thread = g_thread_new ("feeder", feed_thread, &feeder);
  sluice_pipeline_join_async (pipeline, G_PRIORITY_DEFAULT, NULL, store_result, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (sluice_pipeline_join_finish (pipeline, result, &error));
  g_assert_no_error (error);
  g_assert_cmpint (n_got, ==, n);
  g_object_unref (result);
  g_thread_join (thread);
  g_object_unref (pipeline);
}

static void
test_thread_worker (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  SluiceThreadWorker *worker = sluice_thread_worker_new (NULL, 3);

  sluice_thread_worker_register (worker, "square", "(x)", square, NULL, NULL);
  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  run_squares (queue, sluice_test_scale (5000, 20), 4);
  shutdown_and_wait (queue);
  g_object_unref (worker);
  g_object_unref (queue);
}

/* The helper program serving the test module's "square". */
static void
test_process_worker (void)
{
  const char *argv[] = { g_getenv ("SLUICE_WORKER_TOOL"), "--threads=2",
                         g_getenv ("SLUICE_WORKER_TEST_MODULE"), NULL };
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  SluiceProcessWorker *worker = g_object_new (SLUICE_TYPE_PROCESS_WORKER, "argv", argv,
                                              "n-processes", 2, "max-calls", 4, NULL);

  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  run_squares (queue, sluice_test_scale (3000, 20), 8);
  shutdown_and_wait (queue);
  g_object_unref (worker);
  g_object_unref (queue);
}

static void
on_item_failed (SluicePipeline *pipeline, guint64 seq, GError *error, gpointer data)
{
  GArray *failed = data;

  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_array_append_val (failed, seq);
}

/* A failed call fails its input: left out with skip-failed (item-failed
 * in input order), else the end of the pipeline at its position. */
static void
test_failed_call (gconstpointer data)
{
  gboolean skip = GPOINTER_TO_INT (data);
  guint n = 100;
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  SluiceThreadWorker *worker = sluice_thread_worker_new (NULL, 2);
  SluicePipeline *pipeline = sluice_pipeline_new (TRUE, 16, (GDestroyNotify) g_variant_unref);
  SluiceConsumerator *outputs = sluice_pipeline_get_consumerator (pipeline);
  g_autoptr (GArray) failed = g_array_new (FALSE, FALSE, sizeof (guint64));
  g_autoptr (GError) error = NULL;
  Feeder feeder = { pipeline, n };
  GThread *thread;
  gpointer item;
  gint64 expected = 0;
  guint n_got = 0;

  sluice_thread_worker_register (worker, "square", "(x)", square_but_3, NULL, NULL);
  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  sluice_pipeline_set_skip_failed (pipeline, skip);
  g_signal_connect (pipeline, "item-failed", G_CALLBACK (on_item_failed), failed);
  sluice_pipeline_add_call_stage (pipeline, "square", 3, 4, queue, NULL, "square",
                                  G_PRIORITY_DEFAULT, 0);
  sluice_pipeline_start (pipeline, NULL, NULL, NULL);
  thread = g_thread_new ("feeder", feed_thread, &feeder);
  while (sluice_consumerator_next (outputs, &item, &error))
    {
      gint64 value;

      if (expected % 10 == 3)
        expected++;
      g_variant_get (item, "(x)", &value);
      g_assert_cmpint (value, ==, expected * expected);
      g_variant_unref (item);
      expected++;
      n_got++;
    }
  g_thread_join (thread);
  if (skip)
    {
      g_assert_no_error (error);
      g_assert_cmpuint (n_got, ==, n - n / 10);
      g_assert_true (sluice_pipeline_join (pipeline, -1, &error));
      g_assert_no_error (error);
      /* The signals come from the owner context, in input order. */
      while (failed->len < n / 10)
        g_main_context_iteration (NULL, TRUE);
      for (guint i = 0; i < failed->len; i++)
        g_assert_cmpuint (g_array_index (failed, guint64, i), ==, i * 10 + 3);
    }
  else
    {
      /* Inputs 0, 1 and 2, then the error of input 3. */
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
      g_assert_cmpstr (error->message, ==, "no square for 3");
      g_assert_cmpuint (n_got, ==, 3);
      g_clear_error (&error);
      g_assert_false (sluice_pipeline_join (pipeline, -1, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    }
  g_object_unref (pipeline);
  shutdown_and_wait (queue);
  g_object_unref (worker);
  g_object_unref (queue);
}

/* A call to a function nobody has fails with the worker's error. */
static void
test_unknown_function (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  SluiceThreadWorker *worker = sluice_thread_worker_new (NULL, 1);
  SluicePipeline *pipeline = sluice_pipeline_new (TRUE, 4, (GDestroyNotify) g_variant_unref);
  g_autoptr (GError) error = NULL;

  sluice_thread_worker_register (worker, "square", "(x)", square, NULL, NULL);
  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  sluice_pipeline_add_call_stage (pipeline, "cube", 1, 4, queue, NULL, "cube", G_PRIORITY_DEFAULT,
                                  0);
  sluice_pipeline_start (pipeline, NULL, NULL, NULL);
  /* NULL: a call with no arguments. */
  g_assert_true (sluice_pipeline_put (pipeline, NULL, NULL, &error));
  sluice_pipeline_close_input (pipeline);
  g_assert_false (sluice_pipeline_join (pipeline, -1, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_UNKNOWN_FUNCTION);
  g_object_unref (pipeline);
  shutdown_and_wait (queue);
  g_object_unref (worker);
  g_object_unref (queue);
}

/* A pipeline of values: GValues holding GVariants in and out; an input
 * that is no GVariant fails with a message naming the stage. */
static void
test_values (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  SluiceThreadWorker *worker = sluice_thread_worker_new (NULL, 2);
  SluicePipeline *pipeline = sluice_pipeline_new_for_values (TRUE, 8);
  SluiceConsumerator *outputs = sluice_pipeline_get_consumerator (pipeline);
  g_autoptr (GError) error = NULL;
  GValue value = G_VALUE_INIT;
  gint64 result;

  sluice_thread_worker_register (worker, "square", "(x)", square, NULL, NULL);
  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  sluice_pipeline_add_call_stage (pipeline, "square", 2, 4, queue, NULL, "square",
                                  G_PRIORITY_DEFAULT, 0);
  sluice_pipeline_start (pipeline, NULL, NULL, NULL);
  for (gint64 i = 0; i < 3; i++)
    {
      g_value_init (&value, G_TYPE_VARIANT);
      g_value_set_variant (&value, g_variant_new ("(x)", i + 5));
      g_assert_true (sluice_pipeline_put_value (pipeline, &value, NULL, &error));
      g_value_unset (&value);
    }
  g_value_init (&value, G_TYPE_STRING);
  g_value_set_static_string (&value, "seven");
  g_assert_true (sluice_pipeline_put_value (pipeline, &value, NULL, &error));
  g_value_unset (&value);
  sluice_pipeline_close_input (pipeline);

  for (gint64 i = 0; i < 3; i++)
    {
      g_assert_true (sluice_consumerator_next_value (outputs, &value, &error));
      g_assert_true (G_VALUE_HOLDS_VARIANT (&value));
      g_variant_get (g_value_get_variant (&value), "(x)", &result);
      g_assert_cmpint (result, ==, (i + 5) * (i + 5));
      g_value_unset (&value);
    }
  g_assert_false (sluice_consumerator_next_value (outputs, &value, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_FAILED);
  g_assert_cmpstr (error->message, ==,
                   "The input of the call stage “square” is a gchararray, not a GVariant");
  g_clear_error (&error);
  g_assert_false (sluice_pipeline_join (pipeline, -1, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_FAILED);
  g_object_unref (pipeline);
  shutdown_and_wait (queue);
  g_object_unref (worker);
  g_object_unref (queue);
}

/* A stop cancels the calls in flight: the workers' functions see their
 * cancellable cancelled, and join returns. */
static void
test_stop_cancels_calls (void)
{
  Blocker blocker = { 0 };
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  SluiceThreadWorker *worker = sluice_thread_worker_new (NULL, 2);
  SluicePipeline *pipeline = sluice_pipeline_new (TRUE, 8, (GDestroyNotify) g_variant_unref);
  g_autoptr (GError) error = NULL;

  g_mutex_init (&blocker.lock);
  g_cond_init (&blocker.cond);
  sluice_thread_worker_register (worker, "wait", NULL, wait_for_cancel, &blocker, NULL);
  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  sluice_pipeline_add_call_stage (pipeline, "wait", 2, 4, queue, NULL, "wait", G_PRIORITY_DEFAULT,
                                  0);
  sluice_pipeline_start (pipeline, NULL, NULL, NULL);
  for (guint i = 0; i < 4; i++)
    g_assert_true (sluice_pipeline_put (pipeline, NULL, NULL, &error));
  g_mutex_lock (&blocker.lock);
  while (blocker.started < 2)
    g_cond_wait (&blocker.cond, &blocker.lock);
  g_mutex_unlock (&blocker.lock);

  sluice_pipeline_stop (pipeline);
  g_assert_false (sluice_pipeline_join (pipeline, -1, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  /* Both calls in flight were cancelled; the other inputs never ran. */
  shutdown_and_wait (queue);
  g_assert_cmpuint (blocker.cancelled, ==, 2);
  g_assert_cmpuint (blocker.started, ==, 2);
  g_object_unref (pipeline);
  g_object_unref (worker);
  g_object_unref (queue);
  g_mutex_clear (&blocker.lock);
  g_cond_clear (&blocker.cond);
}

static void
test_programmer_errors (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  SluicePipeline *pipeline = sluice_pipeline_new (TRUE, 4, (GDestroyNotify) g_variant_unref);

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*function != NULL*");
  g_assert_cmpuint (sluice_pipeline_add_call_stage (pipeline, "s", 1, 1, queue, NULL, NULL, 0, 0),
                    ==, 0);
  g_test_assert_expected_messages ();
  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*n_calls > 0*");
  sluice_pipeline_add_call_stage (pipeline, "s", 0, 1, queue, NULL, "f", 0, 0);
  g_test_assert_expected_messages ();
  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*SLUICE_IS_TASK_QUEUE*");
  sluice_pipeline_add_call_stage (pipeline, "s", 1, 1, NULL, NULL, "f", 0, 0);
  g_test_assert_expected_messages ();
  g_assert_cmpuint (sluice_pipeline_get_n_stages (pipeline), ==, 0);

  sluice_pipeline_add_call_stage (pipeline, "s", 1, 1, queue, NULL, "f", 0, 0);
  sluice_pipeline_start (pipeline, NULL, NULL, NULL);
  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*sluice_pipeline_is_started*");
  sluice_pipeline_add_call_stage (pipeline, "s", 1, 1, queue, NULL, "f", 0, 0);
  g_test_assert_expected_messages ();
  g_assert_cmpuint (sluice_pipeline_get_n_stages (pipeline), ==, 1);
  sluice_pipeline_close_input (pipeline);
  g_assert_true (sluice_pipeline_join (pipeline, -1, NULL));
  g_object_unref (pipeline);
  g_object_unref (queue);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/pipeline-call/thread-worker", test_thread_worker);
  g_test_add_func ("/pipeline-call/process-worker", test_process_worker);
  g_test_add_data_func ("/pipeline-call/failed-call/skip", GINT_TO_POINTER (TRUE),
                        test_failed_call);
  g_test_add_data_func ("/pipeline-call/failed-call/ends", GINT_TO_POINTER (FALSE),
                        test_failed_call);
  g_test_add_func ("/pipeline-call/unknown-function", test_unknown_function);
  g_test_add_func ("/pipeline-call/values", test_values);
  g_test_add_func ("/pipeline-call/stop-cancels-calls", test_stop_cancels_calls);
  g_test_add_func ("/pipeline-call/programmer-errors", test_programmer_errors);
  return g_test_run ();
}
