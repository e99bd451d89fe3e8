/* test-producer-call.c: ordered items made by named calls
 * (sluice_ordered_item_producer_produce_call), on thread and process
 * workers
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The process tests run 20,000 calls and the SIGKILL test 2,000 calls
 * with 5 kills by default; SLUICE_TEST_FULL=1 runs the sizes
 * (100,000 calls; 10,000 calls with 20 kills).
 */

#include <sluice/sluice.h>

#include "sluice-test-util.h"

#include <signal.h>

static gboolean
full_size (void)
{
  return g_getenv ("SLUICE_TEST_FULL") != NULL;
}

/* What the consumer saw: squares of 0, 1, 2... in order, some left out
 * when failed items are skipped. */
typedef struct
{
  guint64 count;
  gint64 last_root; /* -1 before the first */
  gboolean in_order;
  guint64 sum;
} Tally;

static gint64
isqrt (gint64 n)
{
  gint64 r = 0;

  for (gint64 bit = (gint64) 1 << 31; bit > 0; bit >>= 1)
    if ((r + bit) * (r + bit) <= n)
      r += bit;
  return r;
}

static gpointer
tally (SluiceConsumerator *consumerator, gpointer user_data, GError **error)
{
  Tally *t = g_new0 (Tally, 1);
  gpointer item;

  t->last_root = -1;
  t->in_order = TRUE;
  while (sluice_consumerator_next (consumerator, &item, error))
    {
      GVariant *value = item;
      gint64 square, root;

      g_variant_get (value, "(x)", &square);
      root = isqrt (square);
      if (root * root != square || root <= t->last_root)
        t->in_order = FALSE;
      t->last_root = root;
      t->sum += (guint64) root;
      t->count++;
      g_variant_unref (value);
    }
  if (error != NULL && *error != NULL)
    g_clear_pointer (&t, g_free);
  return t;
}

static void
stopped_cb (GObject *source, GAsyncResult *result, gpointer data)
{
  *(GAsyncResult **) data = g_object_ref (result);
}

static void
item_failed_cb (SluiceOrderedItemProducer *producer, guint64 seq, GError *error, gpointer data)
{
  guint *n_failed = data;

  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_WORKER_LOST);
  (*n_failed)++;
}

/* Kills a random helper of @worker (if one runs): the number killed. */
static guint
kill_a_helper (SluiceProcessWorker *worker)
{
  GStrv pids = sluice_process_worker_dup_pids (worker);
  guint n = g_strv_length (pids), killed = 0;

  if (n > 0)
    {
      kill ((pid_t) g_ascii_strtoll (pids[g_random_int_range (0, (int) n)], NULL, 10), SIGKILL);
      killed = 1;
    }
  g_strfreev (pids);
  return killed;
}

/* Produces @n squares through @queue's workers; with @kill_worker, kills
 * one of its helpers @n_kills times at random moments (failed items are
 * skipped then). */
static void
produce_squares (SluiceTaskQueue *queue, guint n, SluiceProcessWorker *kill_worker, guint n_kills)
{
  /* With kills, a window small enough that production waits for the
   * helpers: they are up (and killable) while the calls are made, even
   * when every call is slow (valgrind) and few are made. */
  SluiceOrderedItemProducer *producer = sluice_ordered_item_producer_new (
      queue, kill_worker != NULL ? 16 : 256, (GDestroyNotify) g_variant_unref);
  GAsyncResult *result = NULL;
  GError *error = NULL;
  guint n_failed = 0, kills = 0;
  guint next_kill = n_kills > 0 ? (guint) g_random_int_range (0, (int) (n / n_kills)) : G_MAXUINT;
  Tally *t;

  if (kill_worker != NULL)
    {
      sluice_ordered_item_producer_set_skip_failed (producer, TRUE);
      g_signal_connect (producer, "item-failed", G_CALLBACK (item_failed_cb), &n_failed);
    }
  sluice_ordered_item_producer_start (producer, tally, NULL, NULL, g_free);
  for (guint i = 0; i < n; i++)
    {
      while (!sluice_ordered_item_producer_is_ready (producer))
        g_main_context_iteration (NULL, TRUE);
      sluice_ordered_item_producer_produce_call (producer, NULL, "square",
                                                 g_variant_new ("(x)", (gint64) i),
                                                 G_PRIORITY_DEFAULT, 0, NULL, NULL, NULL);
      /* Each kill at a random point of its share of the calls (or as soon
       * after as a helper runs). */
      if (kill_worker != NULL && kills < n_kills && i >= next_kill && kill_a_helper (kill_worker))
        {
          kills++;
          next_kill = kills * (n / n_kills) + (guint) g_random_int_range (0, (int) (n / n_kills));
        }
    }
  sluice_ordered_item_producer_stop_async (producer, NULL, stopped_cb, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  t = sluice_ordered_item_producer_stop_finish (producer, result, &error);
  g_assert_no_error (error);
  g_object_unref (result);

  g_test_message ("%u calls, %u kills, %u failed", n, kills, n_failed);
  g_assert_cmpuint (kills, ==, n_kills);
  g_assert_true (t->in_order);
  g_assert_cmpuint (t->count + n_failed, ==, n);
  if (n_failed == 0)
    g_assert_cmpuint (t->sum, ==, (guint64) n * (n - 1) / 2);
  g_free (t);
  g_object_unref (producer);
}

static void
shutdown_cb (GObject *source, GAsyncResult *result, gpointer data)
{
  g_assert_true (sluice_task_queue_shutdown_finish (SLUICE_TASK_QUEUE (source), result, NULL));
  *(gboolean *) data = TRUE;
}

static void
shutdown_and_wait (SluiceTaskQueue *queue)
{
  gboolean done = FALSE;

  sluice_task_queue_shutdown_async (queue, FALSE, NULL, shutdown_cb, &done);
  while (!done)
    g_main_context_iteration (g_main_context_get_thread_default (), TRUE);
}

static GVariant *
square (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  gint64 n;

  g_variant_get (args, "(x)", &n);
  return g_variant_new ("(x)", n * n);
}

/* Two thread workers, results in order. */
static void
test_thread_workers (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  SluiceThreadWorker *w1 = sluice_thread_worker_new (NULL, 1);
  SluiceThreadWorker *w2 = sluice_thread_worker_new (NULL, 2);

  sluice_thread_worker_register (w1, "square", "(x)", square, NULL, NULL);
  sluice_thread_worker_register (w2, "square", "(x)", square, NULL, NULL);
  sluice_task_queue_hire (queue, SLUICE_WORKER (w1));
  sluice_task_queue_hire (queue, SLUICE_WORKER (w2));
  produce_squares (queue, sluice_test_scale (50000, 20), NULL, 0);
  shutdown_and_wait (queue);
  g_object_unref (w1);
  g_object_unref (w2);
  g_object_unref (queue);
}

static SluiceProcessWorker *
helper_worker_new (guint n_processes)
{
  const char *argv[] = { g_getenv ("SLUICE_WORKER_TOOL"), "--threads=2",
                         g_getenv ("SLUICE_WORKER_TEST_MODULE"), NULL };

  return g_object_new (SLUICE_TYPE_PROCESS_WORKER, "argv", argv, "n-processes", n_processes,
                       "max-calls", 4, "start-timeout", SLUICE_TEST_TIMEOUT_SECONDS * 1000, NULL);
}

/* Many calls over two helper processes, results in order. */
static void
test_process_workers (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  SluiceProcessWorker *worker = helper_worker_new (2);

  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  produce_squares (queue, sluice_test_scale (full_size () ? 100000 : 20000, 20), NULL, 0);
  shutdown_and_wait (queue);
  g_object_unref (worker);
  g_object_unref (queue);
}

/* SIGKILL of helpers at random moments, several runs: every item comes
 * exactly once, in order, or is reported failed with
 * SLUICE_ERROR_WORKER_LOST. */
static void
test_sigkill_in_order (void)
{
  guint n_runs = full_size () ? 20 : 3;

  for (guint run = 0; run < n_runs; run++)
    {
      SluiceTaskQueue *queue = sluice_task_queue_new (1);
      SluiceProcessWorker *worker = helper_worker_new (2);

      sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
      produce_squares (queue, sluice_test_scale (full_size () ? 10000 : 2000, 10), worker,
                       full_size () ? 20 : 5);
      shutdown_and_wait (queue);
      g_object_unref (worker);
      g_object_unref (queue);
    }
}

/* A failed call ends production with its error, as any failed item. */
static void
test_error_stops (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  SluiceThreadWorker *worker = sluice_thread_worker_new (NULL, 1);
  SluiceOrderedItemProducer *producer =
      sluice_ordered_item_producer_new (queue, 16, (GDestroyNotify) g_variant_unref);
  GAsyncResult *result = NULL;
  GError *error = NULL;

  sluice_thread_worker_register (worker, "square", "(x)", square, NULL, NULL);
  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  sluice_ordered_item_producer_start (producer, tally, NULL, NULL, g_free);
  sluice_ordered_item_producer_produce_call (producer, NULL, "square",
                                             g_variant_new ("(x)", (gint64) 2), G_PRIORITY_DEFAULT,
                                             0, NULL, NULL, NULL);
  sluice_ordered_item_producer_produce_call (producer, NULL, "cube", NULL, G_PRIORITY_DEFAULT, 0,
                                             NULL, NULL, NULL);
  sluice_ordered_item_producer_stop_async (producer, NULL, stopped_cb, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_assert_null (sluice_ordered_item_producer_stop_finish (producer, result, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_UNKNOWN_FUNCTION);
  g_clear_error (&error);
  g_object_unref (result);

  shutdown_and_wait (queue);
  g_object_unref (producer);
  g_object_unref (worker);
  g_object_unref (queue);
}

typedef struct
{
  SluiceOrderedItemProducer *producer;
  GMainContext *owner_context;
  guint n;
  int done; /* atomic */
} FromThread;

static gpointer
produce_from_thread (gpointer data)
{
  FromThread *from = data;

  for (guint i = 0; i < from->n; i++)
    sluice_ordered_item_producer_produce_call (from->producer, NULL, "square",
                                               g_variant_new ("(x)", (gint64) i),
                                               G_PRIORITY_DEFAULT, 0, NULL, NULL, NULL);
  g_atomic_int_set (&from->done, TRUE);
  g_main_context_wakeup (from->owner_context);
  return NULL;
}

static gboolean
deadline_passed (gpointer data)
{
  g_error ("the stop did not complete: a call's callback went to another context");
  return G_SOURCE_REMOVE;
}

/* Calls produced from a thread of their own, the producer's owner running
 * only its private context: each call's callback comes to the owner's
 * context (not that thread's, which nobody runs), and every item arrives. */
static void
test_from_another_thread (void)
{
  GMainContext *context = g_main_context_new ();
  SluiceTaskQueue *queue;
  SluiceThreadWorker *worker;
  FromThread from = { NULL, context, 200, FALSE };
  GAsyncResult *result = NULL;
  GSource *deadline;
  GThread *thread;
  Tally *t;

  g_main_context_push_thread_default (context);
  queue = sluice_task_queue_new (1);
  worker = sluice_thread_worker_new (NULL, 2);
  sluice_thread_worker_register (worker, "square", "(x)", square, NULL, NULL);
  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  from.producer = sluice_ordered_item_producer_new (queue, 8, (GDestroyNotify) g_variant_unref);
  sluice_ordered_item_producer_start (from.producer, tally, NULL, NULL, g_free);
  thread = g_thread_new ("producing", produce_from_thread, &from);
  /* The owner runs its context while the thread produces. */
  while (!g_atomic_int_get (&from.done))
    g_main_context_iteration (context, TRUE);
  g_thread_join (thread);
  sluice_ordered_item_producer_stop_async (from.producer, NULL, stopped_cb, &result);
  deadline = g_timeout_source_new_seconds (60);
  g_source_set_callback (deadline, deadline_passed, NULL, NULL);
  g_source_attach (deadline, context);
  while (result == NULL)
    g_main_context_iteration (context, TRUE);
  g_source_destroy (deadline);
  g_source_unref (deadline);
  t = sluice_ordered_item_producer_stop_finish (from.producer, result, NULL);
  g_assert_nonnull (t);
  g_assert_true (t->in_order);
  g_assert_cmpuint (t->count, ==, from.n);
  g_free (t);
  g_object_unref (result);

  shutdown_and_wait (queue);
  g_object_unref (from.producer);
  g_object_unref (worker);
  g_object_unref (queue);
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);
}

/* produce_call on a producer of values and produce_call_value on one of
 * pointers are programmer errors: a critical, nothing produced, a floating
 * argument sunk and freed. */
static void
test_wrong_kind (void)
{
  SluiceOrderedItemProducer *pointers = sluice_ordered_item_producer_new (NULL, 4, NULL);
  SluiceOrderedItemProducer *values = sluice_ordered_item_producer_new_for_values (NULL, 4);

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*made for values*");
  sluice_ordered_item_producer_produce_call (values, NULL, "square",
                                             g_variant_new ("(x)", (gint64) 1), G_PRIORITY_DEFAULT,
                                             0, NULL, NULL, NULL);
  g_test_assert_expected_messages ();
  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*not made for values*");
  sluice_ordered_item_producer_produce_call_value (pointers, NULL, "square",
                                                   g_variant_new ("(x)", (gint64) 1),
                                                   G_PRIORITY_DEFAULT, 0, NULL, NULL, NULL);
  g_test_assert_expected_messages ();
  for (guint i = 0; i < 2; i++)
    {
      guint64 n_produced = G_MAXUINT64;

      g_object_get (i == 0 ? (gpointer) pointers : (gpointer) values, "n-produced", &n_produced,
                    NULL);
      g_assert_cmpuint (n_produced, ==, 0);
    }
  g_object_unref (pointers);
  g_object_unref (values);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/producer-call/thread-workers", test_thread_workers);
  g_test_add_func ("/producer-call/error-stops", test_error_stops);
  g_test_add_func ("/producer-call/from-another-thread", test_from_another_thread);
  g_test_add_func ("/producer-call/wrong-kind", test_wrong_kind);
  if (g_getenv ("SLUICE_WORKER_TOOL") != NULL && g_getenv ("SLUICE_WORKER_TEST_MODULE") != NULL)
    {
      g_test_add_func ("/producer-call/process-workers", test_process_workers);
      g_test_add_func ("/producer-call/sigkill-in-order", test_sigkill_in_order);
    }

  return g_test_run ();
}
