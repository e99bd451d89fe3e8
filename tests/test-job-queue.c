/* test-job-queue.c: SluiceJobQueue and SluiceJob
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The first five tests port spreadflow-core's
 * spreadflow_core/test/test_jobqueue.py (JobQueueTestCase), each named after
 * its original. The seed's iterator protocol (next() returns a Deferred to
 * wait on, or None after running a job) is the queue's cooperative task
 * here: a tick runs one step, and the task's state says whether it waits.
 * Ticks are driven by hand through the cooperator's scheduler hook.
 */

#include <sluice/sluice.h>

#include "sluice-test-util.h"
#include "cooperator-test-util.h"

/* --- helpers --- */

/* A queue run by a task of a hand-driven cooperator, one step per tick. */
typedef struct
{
  SluiceCooperator *cooperator;
  FakeScheduler scheduler;
  SluiceJobQueue *queue;
  SluiceCooperativeTask *task;
} Fixture;

static void
fixture_setup (Fixture *f, gconstpointer unused)
{
  f->cooperator = sluice_cooperator_new ();
  sluice_cooperator_set_scheduler (f->cooperator, fake_scheduler, &f->scheduler, NULL);
  sluice_cooperator_set_termination_func (f->cooperator, always_terminate, NULL, NULL);
  f->queue = sluice_job_queue_new ();
  f->task = sluice_job_queue_cooperate (f->queue, f->cooperator);
}

static void
fixture_teardown (Fixture *f, gconstpointer unused)
{
  GWeakRef queue, cooperator;

  g_weak_ref_init (&queue, f->queue);
  g_weak_ref_init (&cooperator, f->cooperator);
  sluice_cooperator_stop (f->cooperator);
  drain_context ();
  g_clear_object (&f->task);
  g_clear_object (&f->queue);
  g_clear_object (&f->cooperator);
  drain_context ();
  g_assert_null (g_weak_ref_get (&queue));
  g_assert_null (g_weak_ref_get (&cooperator));
  g_weak_ref_clear (&queue);
  g_weak_ref_clear (&cooperator);
}

static void
tick (Fixture *f)
{
  fake_scheduler_pump (&f->scheduler, f->cooperator);
}

static SluiceCooperativeTaskState
task_state (Fixture *f)
{
  return sluice_cooperative_task_get_state (f->task);
}

/* The answer to a put. */
typedef struct
{
  guint n_calls;
  gpointer result;
  GError *error;
} Put;

static void
on_put (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Put *put = user_data;

  put->n_calls++;
  put->result = sluice_job_queue_put_finish (SLUICE_JOB_QUEUE (source), result, &put->error);
}

static void
put_clear (Put *put)
{
  g_clear_pointer (&put->result, g_free);
  g_clear_error (&put->error);
}

/* Completes at once with a copy of its data, a string. */
static void
job_return_data (SluiceJob *job, gpointer user_data, GError **error)
{
  sluice_job_complete (job, g_strdup (user_data), g_free);
}

static void
job_must_not_run (SluiceJob *job, gpointer user_data, GError **error)
{
  g_assert_not_reached ();
}

/* Keeps its handle in *(SluiceJob **) user_data, to complete later. */
static void
job_hold (SluiceJob *job, gpointer user_data, GError **error)
{
  *(SluiceJob **) user_data = g_object_ref (job);
}

/* --- JobQueueTestCase --- */

/* An empty queue's task waits, and keeps waiting without ticks. */
static void
test_returns_deferred_when_empty (Fixture *f, gconstpointer unused)
{
  GError *error = NULL;

  g_assert_true (f->scheduler.pending);
  tick (f);
  g_assert_cmpint (task_state (f), ==, SLUICE_COOPERATIVE_TASK_STATE_WAITING);
  g_assert_false (f->scheduler.pending);
  tick (f);
  g_assert_cmpint (task_state (f), ==, SLUICE_COOPERATIVE_TASK_STATE_WAITING);
  drain_context ();
  g_assert_false (f->scheduler.pending);

  /* Without a cooperator: "none ready" is an error, not a crash. */
  g_assert_false (sluice_job_queue_run_next (f->queue, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_NONE_READY);
  g_clear_error (&error);
}

/* A put wakes the waiting task without running the job; the next step
 * runs it, and the step after that waits again. */
static void
test_fires_deferred_when_ready (Fixture *f, gconstpointer unused)
{
  Put put = { 0 };

  tick (f);
  g_assert_cmpint (task_state (f), ==, SLUICE_COOPERATIVE_TASK_STATE_WAITING);

  sluice_job_queue_put_async (f->queue, "channel", job_return_data, "Bazinga!", NULL, NULL, on_put,
                              &put);
  /* Putting a job wakes the task... */
  g_assert_cmpint (task_state (f), ==, SLUICE_COOPERATIVE_TASK_STATE_RUNNABLE);
  g_assert_true (f->scheduler.pending);
  /* ...but does not run it. */
  g_assert_cmpuint (sluice_job_queue_get_n_queued (f->queue), ==, 1);
  drain_context ();
  g_assert_cmpuint (put.n_calls, ==, 0);

  /* A step runs it; the put is answered from the context. */
  tick (f);
  g_assert_cmpuint (sluice_job_queue_get_n_queued (f->queue), ==, 0);
  g_assert_cmpuint (put.n_calls, ==, 0);
  drain_context ();
  g_assert_cmpuint (put.n_calls, ==, 1);
  g_assert_no_error (put.error);
  g_assert_cmpstr (put.result, ==, "Bazinga!");

  /* After a job the task wants to run again at once... */
  g_assert_cmpint (task_state (f), ==, SLUICE_COOPERATIVE_TASK_STATE_RUNNABLE);
  g_assert_true (f->scheduler.pending);
  /* ...and waits again when the queue is empty. */
  tick (f);
  g_assert_cmpint (task_state (f), ==, SLUICE_COOPERATIVE_TASK_STATE_WAITING);
  put_clear (&put);
}

typedef struct
{
  GPtrArray *results;
  const char *args;
} Recorder;

static void
job_record (SluiceJob *job, gpointer user_data, GError **error)
{
  Recorder *recorder = user_data;

  g_ptr_array_add (recorder->results, (gpointer) recorder->args);
  sluice_job_complete (job, NULL, NULL);
}

/* Jobs of one channel run in the order they were put. */
static void
test_iterates_in_fifo_order (Fixture *f, gconstpointer unused)
{
  g_autoptr (GPtrArray) results = g_ptr_array_new ();
  Recorder recorders[4] = {
    { results, "first, arg=one" },
    { results, "second" },
    { results, "" },
    { results, "fourth, additional, positional, plus=some, key=words" },
  };
  GError *error = NULL;

  for (guint i = 0; i < 4; i++)
    sluice_job_queue_put_async (f->queue, "channel", job_record, &recorders[i], NULL, NULL, NULL,
                                NULL);
  for (guint i = 0; i < 4; i++)
    {
      g_assert_cmpuint (results->len, ==, i);
      g_assert_true (sluice_job_queue_run_next (f->queue, &error));
      g_assert_no_error (error);
    }
  for (guint i = 0; i < 4; i++)
    g_assert_cmpstr (g_ptr_array_index (results, i), ==, recorders[i].args);

  g_assert_false (sluice_job_queue_run_next (f->queue, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_NONE_READY);
  g_clear_error (&error);
  drain_context ();
}

/* A job cancelled in the backlog never runs; its put fails with
 * CANCELLED. */
static void
test_cancel_job_early (Fixture *f, gconstpointer unused)
{
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  Put put = { 0 };
  GError *error = NULL;

  sluice_job_queue_put_async (f->queue, "channel", job_must_not_run, NULL, NULL, cancellable,
                              on_put, &put);
  g_cancellable_cancel (cancellable);
  drain_context ();
  g_assert_cmpuint (put.n_calls, ==, 1);
  g_assert_error (put.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpuint (sluice_job_queue_get_n_queued (f->queue), ==, 0);

  g_assert_false (sluice_job_queue_run_next (f->queue, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_NONE_READY);
  g_clear_error (&error);
  tick (f);
  g_assert_cmpint (task_state (f), ==, SLUICE_COOPERATIVE_TASK_STATE_WAITING);
  put_clear (&put);
}

typedef struct
{
  SluiceJob *job;
  gboolean inner_cancelled;
} Inner;

static void
on_inner_cancelled (GCancellable *cancellable, gpointer user_data)
{
  Inner *inner = user_data;

  inner->inner_cancelled = TRUE;
  sluice_job_fail (inner->job, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, "inner"));
}

static void
job_cancellable_inner (SluiceJob *job, gpointer user_data, GError **error)
{
  Inner *inner = user_data;

  inner->job = g_object_ref (job);
  g_cancellable_connect (sluice_job_get_cancellable (job), G_CALLBACK (on_inner_cancelled), inner,
                         NULL);
}

/* Cancelling a running job cancels its work, and its put fails with
 * CANCELLED. */
static void
test_propagates_cancel_to_job (Fixture *f, gconstpointer unused)
{
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  Inner inner = { 0 };
  Put put = { 0 };

  sluice_job_queue_put_async (f->queue, "channel", job_cancellable_inner, &inner, NULL, cancellable,
                              on_put, &put);
  g_assert_true (sluice_job_queue_run_next (f->queue, NULL));
  g_assert_cmpuint (sluice_job_queue_get_n_running (f->queue), ==, 1);

  g_cancellable_cancel (cancellable);
  g_assert_true (inner.inner_cancelled);
  drain_context ();
  g_assert_cmpuint (put.n_calls, ==, 1);
  g_assert_error (put.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpuint (sluice_job_queue_get_n_running (f->queue), ==, 0);

  g_clear_object (&inner.job);
  put_clear (&put);
}

/* --- Sluice's own --- */

/* clear drops the backlog and answers every dropped put with CANCELLED;
 * the running job completes as it likes. */
static void
test_clear_completes_every_dropped_job (Fixture *f, gconstpointer unused)
{
  static const char *const channels[] = { "a", "b", "c" };
  Put puts[3][5] = { { { 0 } } };
  SluiceJob *running = NULL;

  for (guint c = 0; c < 3; c++)
    for (guint j = 0; j < 5; j++)
      {
        if (c == 0 && j == 0)
          sluice_job_queue_put_async (f->queue, channels[c], job_hold, &running, NULL, NULL, on_put,
                                      &puts[c][j]);
        else
          sluice_job_queue_put_async (f->queue, channels[c], job_must_not_run, NULL, NULL, NULL,
                                      on_put, &puts[c][j]);
      }
  g_assert_true (sluice_job_queue_run_next (f->queue, NULL));
  g_assert_nonnull (running);
  g_assert_cmpuint (sluice_job_queue_get_n_queued (f->queue), ==, 14);

  sluice_job_queue_clear (f->queue);
  g_assert_cmpuint (sluice_job_queue_get_n_queued (f->queue), ==, 0);
  g_assert_cmpuint (puts[1][0].n_calls, ==, 0);
  drain_context ();
  for (guint c = 0; c < 3; c++)
    for (guint j = 0; j < 5; j++)
      {
        if (c == 0 && j == 0)
          {
            g_assert_cmpuint (puts[c][j].n_calls, ==, 0);
            continue;
          }
        g_assert_cmpuint (puts[c][j].n_calls, ==, 1);
        g_assert_error (puts[c][j].error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
        put_clear (&puts[c][j]);
      }

  sluice_job_complete (running, g_strdup ("still done"), g_free);
  drain_context ();
  g_assert_cmpuint (puts[0][0].n_calls, ==, 1);
  g_assert_cmpstr (puts[0][0].result, ==, "still done");
  put_clear (&puts[0][0]);
  g_clear_object (&running);
  g_assert_false (sluice_job_queue_run_next (f->queue, NULL));
}

typedef struct
{
  GString *events;
  const char *name;
} LoggedJob;

static gboolean
complete_held_job (gpointer user_data)
{
  SluiceJob *job = user_data;

  sluice_job_complete (job, NULL, NULL);
  return G_SOURCE_REMOVE;
}

static void
job_log (SluiceJob *job, gpointer user_data, GError **error)
{
  LoggedJob *event = user_data;

  g_string_append_printf (event->events, "%s ", event->name);
  sluice_job_complete (job, NULL, NULL);
}

static void
job_pending_200ms (SluiceJob *job, gpointer user_data, GError **error)
{
  LoggedJob *event = user_data;

  g_string_append_printf (event->events, "%s ", event->name);
  g_timeout_add_full (G_PRIORITY_DEFAULT, 200, complete_held_job, g_object_ref (job),
                      g_object_unref);
}

static void
on_put_logged (GObject *source, GAsyncResult *result, gpointer user_data)
{
  LoggedJob *event = user_data;

  g_assert_null (sluice_job_queue_put_finish (SLUICE_JOB_QUEUE (source), result, NULL));
  g_string_append_printf (event->events, "%s-done ", event->name);
}

/* A pending job blocks its own channel only: with channel a's first job
 * pending for 200 ms, the jobs of b and c all run meanwhile, and a's second
 * job runs after its first completed. */
static void
test_pending_job_blocks_only_its_channel (void)
{
  g_autoptr (GString) events = g_string_new ("");
  SluiceJobQueue *queue = sluice_job_queue_new ();
  SluiceCooperativeTask *task;
  LoggedJob a1 = { events, "a1" }, a2 = { events, "a2" };
  LoggedJob others[6] = {
    { events, "b1" }, { events, "b2" }, { events, "b3" },
    { events, "c1" }, { events, "c2" }, { events, "c3" },
  };
  SluiceCooperator *cooperator = sluice_cooperator_new ();
  gboolean done = FALSE;

  sluice_job_queue_put_async (queue, "a", job_pending_200ms, &a1, NULL, NULL, on_put_logged, &a1);
  sluice_job_queue_put_async (queue, "a", job_log, &a2, NULL, NULL, on_put_logged, &a2);
  for (guint i = 0; i < 6; i++)
    sluice_job_queue_put_async (queue, i < 3 ? "b" : "c", job_log, &others[i], NULL, NULL, NULL,
                                NULL);
  sluice_job_queue_set_stop_when_empty (queue, TRUE);
  task = sluice_job_queue_cooperate (queue, cooperator);
  while (!done)
    {
      g_main_context_iteration (NULL, TRUE);
      done = sluice_cooperative_task_get_state (task) == SLUICE_COOPERATIVE_TASK_STATE_DONE;
    }
  drain_context ();
  g_test_message ("events: %s", events->str);
  /* Channels take turns; b and c run to the end while a1 is pending. */
  g_assert_cmpstr (events->str, ==, "a1 b1 c1 b2 c2 b3 c3 a1-done a2 a2-done ");

  g_object_unref (task);
  g_object_unref (queue);
  drain_context ();
  g_object_unref (cooperator);
}

static void
job_fail_at_once (SluiceJob *job, gpointer user_data, GError **error)
{
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, user_data);
}

/* A job that fails at once (sets its error) fails its put with its error;
 * one that returns without an error has started and its put waits for it. */
static void
test_job_fails_at_once (Fixture *f, gconstpointer unused)
{
  Put with_error = { 0 }, without = { 0 };
  SluiceJob *held = NULL;

  sluice_job_queue_put_async (f->queue, "x", job_fail_at_once, "no such thing", NULL, NULL, on_put,
                              &with_error);
  sluice_job_queue_put_async (f->queue, "y", job_hold, &held, NULL, NULL, on_put, &without);
  g_assert_true (sluice_job_queue_run_next (f->queue, NULL));
  g_assert_true (sluice_job_queue_run_next (f->queue, NULL));
  drain_context ();
  g_assert_error (with_error.error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_cmpstr (with_error.error->message, ==, "no such thing");
  g_assert_cmpuint (without.n_calls, ==, 0);
  g_assert_cmpuint (sluice_job_queue_get_n_running (f->queue), ==, 1);
  sluice_job_complete (held, g_strdup ("later"), g_free);
  g_object_unref (held);
  drain_context ();
  g_assert_cmpuint (without.n_calls, ==, 1);
  g_assert_cmpstr (without.result, ==, "later");
  put_clear (&with_error);
  put_clear (&without);
}

static gpointer
complete_in_thread (gpointer user_data)
{
  SluiceJob *job = user_data;

  sluice_job_complete (job, g_strdup ("from a thread"), g_free);
  g_object_unref (job);
  return NULL;
}

static void
job_complete_in_thread (SluiceJob *job, gpointer user_data, GError **error)
{
  g_thread_unref (g_thread_new ("completer", complete_in_thread, g_object_ref (job)));
}

/* Jobs completed in other threads free their channel and answer their put
 * on the context; the task ends with stop-when-empty. */
static void
test_complete_from_thread (void)
{
  SluiceCooperator *cooperator = sluice_cooperator_new ();
  SluiceJobQueue *queue = sluice_job_queue_new ();
  g_autoptr (SluiceCooperativeTask) task = NULL;
  Put puts[10] = { { 0 } };
  gint64 deadline = deadline_from_now ();

  for (guint i = 0; i < 10; i++)
    sluice_job_queue_put_async (queue, "one", job_complete_in_thread, NULL, NULL, NULL, on_put,
                                &puts[i]);
  task = sluice_job_queue_cooperate (queue, cooperator);
  g_object_set (queue, "stop-when-empty", TRUE, NULL);
  while (sluice_cooperative_task_get_state (task) != SLUICE_COOPERATIVE_TASK_STATE_DONE &&
         g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  drain_context ();
  for (guint i = 0; i < 10; i++)
    {
      g_assert_cmpuint (puts[i].n_calls, ==, 1);
      g_assert_cmpstr (puts[i].result, ==, "from a thread");
      put_clear (&puts[i]);
    }
  g_clear_object (&task);
  g_object_unref (queue);
  drain_context ();
  g_object_unref (cooperator);
}

static void
job_complete_twice (SluiceJob *job, gpointer user_data, GError **error)
{
  sluice_job_complete (job, NULL, NULL);
  sluice_job_complete (job, g_strdup ("again"), g_free);
}

/* Completing a job twice is a programmer error: a critical, the second
 * result freed. */
static void
test_complete_twice (Fixture *f, gconstpointer unused)
{
  Put put = { 0 };

  sluice_job_queue_put_async (f->queue, "x", job_complete_twice, NULL, NULL, NULL, on_put, &put);
  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*completed twice*");
  g_assert_true (sluice_job_queue_run_next (f->queue, NULL));
  g_test_assert_expected_messages ();
  drain_context ();
  g_assert_cmpuint (put.n_calls, ==, 1);
  g_assert_null (put.result);

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*channel != NULL*");
  sluice_job_queue_put_async (f->queue, NULL, job_must_not_run, NULL, NULL, NULL, NULL, NULL);
  g_test_assert_expected_messages ();
}

static void
count_destroy (gpointer user_data)
{
  (*(guint *) user_data)++;
}

static void
job_hold_counting (SluiceJob *job, gpointer user_data, GError **error)
{
  sluice_job_complete (job, NULL, NULL);
}

/* Job data is released on the context after the put was answered, for
 * run, cancelled and cleared jobs alike. */
static void
test_job_data_released_on_context (Fixture *f, gconstpointer unused)
{
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  guint n_destroyed = 0;
  Put puts[3] = { { 0 } };

  sluice_job_queue_put_async (f->queue, "x", job_hold_counting, &n_destroyed, count_destroy, NULL,
                              on_put, &puts[0]);
  sluice_job_queue_put_async (f->queue, "y", job_must_not_run, &n_destroyed, count_destroy,
                              cancellable, on_put, &puts[1]);
  sluice_job_queue_put_async (f->queue, "z", job_must_not_run, &n_destroyed, count_destroy, NULL,
                              on_put, &puts[2]);
  g_assert_true (sluice_job_queue_run_next (f->queue, NULL));
  g_cancellable_cancel (cancellable);
  sluice_job_queue_clear (f->queue);
  g_assert_cmpuint (n_destroyed, ==, 0);
  drain_context ();
  g_assert_cmpuint (n_destroyed, ==, 3);
  for (guint i = 0; i < 3; i++)
    {
      g_assert_cmpuint (puts[i].n_calls, ==, 1);
      put_clear (&puts[i]);
    }
}

/* Remembers its handle (no reference) in *(SluiceJob **) user_data and
 * completes with its channel's name. */
static void
job_note_handle (SluiceJob *job, gpointer user_data, GError **error)
{
  *(SluiceJob **) user_data = job;
  sluice_job_complete (job, g_strdup (sluice_job_get_channel (job)), g_free);
}

static void
on_put_keep_result (GObject *source, GAsyncResult *result, gpointer user_data)
{
  *(GAsyncResult **) user_data = g_object_ref (result);
}

static void
set_flag (gpointer user_data, GObject *where_the_object_was)
{
  *(gboolean *) user_data = TRUE;
}

static void
set_flag_destroy (gpointer user_data)
{
  *(gboolean *) user_data = TRUE;
}

/* The queue reuses the handles of answered jobs that nobody else holds:
 * a handle kept by the put's callback stays that job's, one with a weak
 * reference or data is released as any GObject, and an answered job's
 * result the callback did not take is freed. A signal handler on a handle
 * (a job emits none) does not keep it from reuse: it is destroyed within
 * 16 reuses of the handle, or with the queue (see
 * test_handler_destroyed_with_the_queue): destroying handlers takes
 * GObject's global signal lock, too costly for every job. */
static void
test_handles_after_the_answer (Fixture *f, gconstpointer unused)
{
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  SluiceJob *first = NULL, *second = NULL, *third = NULL, *handler_handle;
  GAsyncResult *kept = NULL;
  guint n_reuses;
  gboolean weak_notified = FALSE, data_destroyed = FALSE, handler_destroyed = FALSE;
  Put put = { 0 }, held_put = { 0 }, handler_put = { 0 };

  /* An answer nobody finishes: the result is freed (valgrind, ASan). */
  sluice_job_queue_put_async (f->queue, "unfinished", job_note_handle, &first, NULL, NULL, NULL,
                              NULL);
  g_assert_true (sluice_job_queue_run_next (f->queue, NULL));
  drain_context ();

  /* The callback keeps its result: that handle is not reused. */
  sluice_job_queue_put_async (f->queue, "kept", job_note_handle, &first, NULL, NULL,
                              on_put_keep_result, &kept);
  g_assert_true (sluice_job_queue_run_next (f->queue, NULL));
  drain_context ();
  g_assert_true (kept == (GAsyncResult *) first);
  sluice_job_queue_put_async (f->queue, "next", job_note_handle, &second, NULL, cancellable, on_put,
                              &put);
  g_assert_true (sluice_job_queue_run_next (f->queue, NULL));
  g_assert_true (second != first);
  g_assert_cmpstr (sluice_job_get_channel (first), ==, "kept");
  g_assert_cmpstr (sluice_job_get_channel (second), ==, "next");
  g_assert_true (sluice_job_get_cancellable (second) == cancellable);
  drain_context ();
  g_assert_cmpuint (put.n_calls, ==, 1);
  g_assert_cmpstr (put.result, ==, "next");
  put_clear (&put);
  {
    g_autofree char *result =
        sluice_job_queue_put_finish (f->queue, kept, NULL); /* still the first job's */

    g_assert_cmpstr (result, ==, "kept");
  }
  g_clear_object (&kept);

  /* A weak reference, data and a signal handler on a handle are released
   * once its put is answered, as when the last reference goes. */
  sluice_job_queue_put_async (f->queue, "held", job_hold, &third, NULL, NULL, on_put, &held_put);
  g_assert_true (sluice_job_queue_run_next (f->queue, NULL));
  g_object_weak_ref (G_OBJECT (third), set_flag, &weak_notified);
  g_object_set_data_full (G_OBJECT (third), "test-data", &data_destroyed, set_flag_destroy);
  sluice_job_complete (third, NULL, NULL);
  g_clear_object (&third);
  g_assert_false (weak_notified);
  drain_context ();
  g_assert_cmpuint (held_put.n_calls, ==, 1);
  g_assert_true (weak_notified);
  g_assert_true (data_destroyed);
  put_clear (&held_put);
  /* A signal handler alone. */
  sluice_job_queue_put_async (f->queue, "handler", job_hold, &third, NULL, NULL, on_put,
                              &handler_put);
  g_assert_true (sluice_job_queue_run_next (f->queue, NULL));
  g_signal_connect_data (third, "notify", G_CALLBACK (set_flag), &handler_destroyed,
                         (GClosureNotify) (void (*) (void)) set_flag_destroy, 0);
  handler_handle = third;
  sluice_job_complete (third, NULL, NULL);
  g_clear_object (&third);
  drain_context ();
  g_assert_cmpuint (handler_put.n_calls, ==, 1);
  put_clear (&handler_put);
  /* The handle was pooled, last: the next puts reuse it, and its handler is
   * destroyed at the latest on the 16th reuse since it was last checked
   * (one of them was the answer above). */
  for (n_reuses = 0; !handler_destroyed; n_reuses++)
    {
      SluiceJob *handle = NULL;

      g_assert_cmpuint (n_reuses, <, 15);
      sluice_job_queue_put_async (f->queue, "reuse", job_note_handle, &handle, NULL, NULL, NULL,
                                  NULL);
      g_assert_true (sluice_job_queue_run_next (f->queue, NULL));
      g_assert_true (handle == handler_handle);
      drain_context ();
    }
}

/* A handler left on a pooled handle is destroyed with the queue. */
static void
test_handler_destroyed_with_the_queue (void)
{
  SluiceJobQueue *queue = sluice_job_queue_new ();
  SluiceJob *job = NULL;
  gboolean handler_destroyed = FALSE;
  Put put = { 0 };

  sluice_job_queue_put_async (queue, "a", job_hold, &job, NULL, NULL, on_put, &put);
  g_assert_true (sluice_job_queue_run_next (queue, NULL));
  g_signal_connect_data (job, "notify", G_CALLBACK (set_flag), &handler_destroyed,
                         (GClosureNotify) (void (*) (void)) set_flag_destroy, 0);
  sluice_job_complete (job, NULL, NULL);
  g_clear_object (&job);
  drain_context ();
  g_assert_cmpuint (put.n_calls, ==, 1);
  put_clear (&put);
  g_assert_false (handler_destroyed); /* the first reuse of a new handle: not checked */
  g_object_unref (queue);
  drain_context ();
  g_assert_true (handler_destroyed);
}

static void
on_put_check_source (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GAsyncResult **kept = user_data;

  g_assert_true (SLUICE_IS_JOB_QUEUE (source));
  *kept = g_object_ref (result);
}

/* Live jobs keep their queue: dropped by its owner while a job runs, it
 * answers the put, and a handle kept after the answer keeps it too. */
static void
test_jobs_keep_their_queue (void)
{
  SluiceJobQueue *queue = sluice_job_queue_new ();
  SluiceJob *job = NULL;
  GAsyncResult *kept = NULL;
  GWeakRef weak;

  g_weak_ref_init (&weak, queue);
  sluice_job_queue_put_async (queue, "a", job_hold, &job, NULL, NULL, on_put_check_source, &kept);
  g_assert_true (sluice_job_queue_run_next (queue, NULL));
  g_object_unref (queue);
  drain_context ();
  {
    g_autoptr (GObject) alive = g_weak_ref_get (&weak);

    g_assert_nonnull (alive);
  }
  sluice_job_complete (job, NULL, NULL);
  g_clear_object (&job);
  drain_context ();
  g_assert_nonnull (kept);
  {
    g_autoptr (GObject) source = g_async_result_get_source_object (kept);
    g_autoptr (GObject) alive = g_weak_ref_get (&weak);

    g_assert_true (source == alive);
  }
  g_clear_object (&kept);
  drain_context ();
  g_assert_null (g_weak_ref_get (&weak));
  g_weak_ref_clear (&weak);
}

/* What happened to the puts of test_answered_in_its_tick. */
typedef struct
{
  GString *events;
  gboolean in_put;
  SluiceJob *held;
} TickLog;

static void
job_log_and_complete (SluiceJob *job, gpointer user_data, GError **error)
{
  TickLog *log = user_data;

  g_string_append_printf (log->events, "%s ", sluice_job_get_channel (job));
  sluice_job_complete (job, g_strdup (sluice_job_get_channel (job)), g_free);
  /* Completing a job in its function answers it later. */
  g_string_append_printf (log->events, "%s-completed ", sluice_job_get_channel (job));
}

static void
job_log_and_hold (SluiceJob *job, gpointer user_data, GError **error)
{
  TickLog *log = user_data;

  g_string_append_printf (log->events, "%s ", sluice_job_get_channel (job));
  log->held = g_object_ref (job);
}

static void
tick_log_data_destroy (gpointer user_data)
{
  TickLog *log = user_data;

  g_string_append (log->events, "data-released ");
}

static void
on_put_tick_log (GObject *source, GAsyncResult *result, gpointer user_data)
{
  TickLog *log = user_data;
  g_autofree char *value = NULL;

  g_assert_false (log->in_put);
  g_assert_true (g_main_context_is_owner (g_main_context_default ()));
  value = sluice_job_queue_put_finish (SLUICE_JOB_QUEUE (source), result, NULL);
  g_string_append_printf (log->events, "%s-answered ", value);
}

/* Stops @cooperator and frees it with @task and @queue, as the tests that
 * run the default scheduler end. */
static void
stop_and_free (SluiceCooperator *cooperator, SluiceCooperativeTask *task, SluiceJobQueue *queue)
{
  sluice_cooperator_stop (cooperator);
  drain_context ();
  g_object_unref (task);
  g_object_unref (queue);
  drain_context ();
  g_object_unref (cooperator);
}

/* With the default scheduler, a job that completes in its function is
 * answered at the end of its step, in the tick that ran it: one dispatch
 * of the context runs it and answers its put (and then releases its data),
 * not inside the put or the completion. A job completed outside a tick is
 * answered from the queue's source. */
static void
test_answered_in_its_tick (void)
{
  g_autoptr (GString) events = g_string_new ("");
  TickLog log = { events, FALSE, NULL };
  SluiceCooperator *cooperator = sluice_cooperator_new ();
  SluiceJobQueue *queue = sluice_job_queue_new ();
  SluiceCooperativeTask *task = sluice_job_queue_cooperate (queue, cooperator);

  log.in_put = TRUE;
  sluice_job_queue_put_async (queue, "a", job_log_and_complete, &log, tick_log_data_destroy, NULL,
                              on_put_tick_log, &log);
  sluice_job_queue_put_async (queue, "b", job_log_and_hold, &log, NULL, NULL, on_put_tick_log,
                              &log);
  log.in_put = FALSE;
  g_assert_cmpstr (events->str, ==, "");

  /* The first dispatch is the tick; its first step runs a. */
  g_assert_true (g_main_context_iteration (NULL, FALSE));
  g_assert_true (g_str_has_prefix (events->str, "a a-completed a-answered data-released "));

  drain_context ();
  g_assert_cmpstr (events->str, ==, "a a-completed a-answered data-released b ");
  g_assert_nonnull (log.held);
  sluice_job_complete (log.held, g_strdup ("b"), g_free);
  g_assert_cmpstr (events->str, ==, "a a-completed a-answered data-released b ");
  g_assert_true (g_main_context_iteration (NULL, FALSE));
  g_assert_cmpstr (events->str, ==, "a a-completed a-answered data-released b b-answered ");
  g_clear_object (&log.held);

  stop_and_free (cooperator, task, queue);
}

/* A chain of jobs on one channel, each completed from an idle source and
 * each put from the answer to the one before. */
typedef struct
{
  SluiceJobQueue *queue;
  GString *events;
  SluiceJob *held;
  guint n_left;
} Chain;

static void
job_run_and_hold (SluiceJob *job, gpointer user_data, GError **error)
{
  Chain *chain = user_data;

  g_string_append (chain->events, "run ");
  chain->held = g_object_ref (job);
}

static gboolean
complete_chain_job (gpointer user_data)
{
  Chain *chain = user_data;

  g_string_append (chain->events, "complete ");
  sluice_job_complete (chain->held, NULL, NULL);
  g_clear_object (&chain->held);
  return G_SOURCE_REMOVE;
}

static void
on_put_chain (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Chain *chain = user_data;

  g_assert_null (sluice_job_queue_put_finish (SLUICE_JOB_QUEUE (source), result, NULL));
  g_string_append (chain->events, "answered ");
  if (chain->n_left > 0)
    {
      chain->n_left--;
      sluice_job_queue_put_async (chain->queue, "a", job_run_and_hold, chain, NULL, NULL,
                                  on_put_chain, chain);
    }
}

/* A job completed from a source of its own (an idle here: a timeout or an
 * I/O callback alike) is answered in the next iteration of the context,
 * and the job its answer puts runs in that same iteration: the queue's
 * source and the cooperator's tick share a priority. */
static void
test_answer_and_next_job_share_an_iteration (void)
{
  g_autoptr (GString) events = g_string_new ("");
  SluiceCooperator *cooperator = sluice_cooperator_new ();
  SluiceJobQueue *queue = sluice_job_queue_new ();
  SluiceCooperativeTask *task = sluice_job_queue_cooperate (queue, cooperator);
  Chain chain = { queue, events, NULL, 1 };

  sluice_job_queue_put_async (queue, "a", job_run_and_hold, &chain, NULL, NULL, on_put_chain,
                              &chain);
  drain_context ();
  g_assert_cmpstr (events->str, ==, "run ");

  g_idle_add (complete_chain_job, &chain);
  g_assert_true (g_main_context_iteration (NULL, FALSE));
  g_assert_cmpstr (events->str, ==, "run complete ");
  g_assert_true (g_main_context_iteration (NULL, FALSE));
  g_assert_cmpstr (events->str, ==, "run complete answered run ");

  g_idle_add (complete_chain_job, &chain);
  drain_context ();
  g_assert_cmpstr (events->str, ==, "run complete answered run complete answered ");
  g_assert_null (chain.held);

  stop_and_free (cooperator, task, queue);
}

#define ADD_FIXTURE_TEST(path, func)                                                               \
  g_test_add (path, Fixture, NULL, fixture_setup, func, fixture_teardown)

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  ADD_FIXTURE_TEST ("/job-queue/JobQueueTestCase/test_returns_deferred_when_empty",
                    test_returns_deferred_when_empty);
  ADD_FIXTURE_TEST ("/job-queue/JobQueueTestCase/test_fires_deferred_when_ready",
                    test_fires_deferred_when_ready);
  ADD_FIXTURE_TEST ("/job-queue/JobQueueTestCase/test_iterates_in_fifo_order",
                    test_iterates_in_fifo_order);
  ADD_FIXTURE_TEST ("/job-queue/JobQueueTestCase/test_cancel_job_early", test_cancel_job_early);
  ADD_FIXTURE_TEST ("/job-queue/JobQueueTestCase/test_propagates_cancel_to_job",
                    test_propagates_cancel_to_job);

  ADD_FIXTURE_TEST ("/job-queue/clear-completes-every-dropped-job",
                    test_clear_completes_every_dropped_job);
  g_test_add_func ("/job-queue/pending-job-blocks-only-its-channel",
                   test_pending_job_blocks_only_its_channel);
  ADD_FIXTURE_TEST ("/job-queue/job-fails-at-once", test_job_fails_at_once);
  g_test_add_func ("/job-queue/complete-from-thread", test_complete_from_thread);
  ADD_FIXTURE_TEST ("/job-queue/complete-twice", test_complete_twice);
  ADD_FIXTURE_TEST ("/job-queue/job-data-released-on-context", test_job_data_released_on_context);
  ADD_FIXTURE_TEST ("/job-queue/handles-after-the-answer", test_handles_after_the_answer);
  g_test_add_func ("/job-queue/handler-destroyed-with-the-queue",
                   test_handler_destroyed_with_the_queue);
  g_test_add_func ("/job-queue/jobs-keep-their-queue", test_jobs_keep_their_queue);
  g_test_add_func ("/job-queue/answered-in-its-tick", test_answered_in_its_tick);
  g_test_add_func ("/job-queue/answer-and-next-job-share-an-iteration",
                   test_answer_and_next_job_share_an_iteration);

  return g_test_run ();
}
