/* test-cooperator-stress.c: many cooperative tasks, random waits, pauses and stops
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * 100 tasks of 10,000 steps (100 under valgrind) on one cooperator, run by
 * its own ticks on the default main context. Steps wait now and then for a
 * timeout, for task queue work (woken from the callback on the context) or
 * for a thread (woken from that thread). A controller pauses, resumes and
 * stops tasks at random. Checked: every task ends exactly once, as it
 * should (done after all its steps, or stopped); no step runs while its
 * task is paused, waits or after it was stopped; the cooperator, the tasks
 * and their data are all released (the leak check runs under ASan and
 * valgrind).
 */

#include <sluice/sluice.h>

#include "sluice-test-util.h"

#define N_TASKS 100

typedef struct
{
  guint id;
  SluiceCooperativeTask *task;
  guint n_steps;
  guint target;
  guint pause_count;
  gint waiting; /* atomic: between SLUICE_STEP_WAIT and its wake */
  guint n_notified;
  gboolean stopped;
  guint n_ends;
  gboolean ended_ok;
  GError *error;
  guint n_data_released;
} Tracked;

typedef struct
{
  SluiceCooperator *cooperator;
  Tracked tasks[N_TASKS];
  GPtrArray *live; /* of Tracked *, not ended */
  guint n_ended;
  guint n_waits;
  guint n_pauses;
  guint n_stops;
  gint n_wakers; /* wakes still to come (atomic) */
  GRand *rand;
} Stress;

static Stress stress;

static void
wake_and_drop (SluiceCooperativeTask *task)
{
  Tracked *t = g_object_get_data (G_OBJECT (task), "tracked");

  /* Cleared before the wake: a step that runs after it sees it clear. */
  g_assert_true (g_atomic_int_compare_and_exchange (&t->waiting, TRUE, FALSE));
  sluice_cooperative_task_wake (task);
  g_object_unref (task);
  g_atomic_int_dec_and_test (&stress.n_wakers);
}

static gboolean
wake_from_timeout (gpointer task)
{
  wake_and_drop (task);
  return G_SOURCE_REMOVE;
}

static gpointer
nothing_much (GCancellable *cancellable, gpointer user_data, GError **error)
{
  return NULL;
}

static void
on_queue_work_done (GObject *queue, GAsyncResult *result, gpointer task)
{
  g_assert_null (sluice_task_queue_run_finish (SLUICE_TASK_QUEUE (queue), result, NULL));
  wake_and_drop (task);
}

static gpointer
wake_in_thread (GCancellable *cancellable, gpointer task, GError **error)
{
  /* In a thread of the task queue: the wake crosses threads. */
  wake_and_drop (task);
  return NULL;
}

static SluiceStepResult
stress_step (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  Tracked *t = user_data;
  guint kind;

  g_assert_true (t->task == task);
  g_assert_cmpuint (t->pause_count, ==, 0);
  g_assert_false (g_atomic_int_get (&t->waiting));
  g_assert_false (t->stopped);
  g_assert_cmpuint (t->n_ends, ==, 0);

  if (++t->n_steps == t->target)
    return SLUICE_STEP_DONE;
  if (g_rand_int_range (stress.rand, 0, 200) != 0)
    return SLUICE_STEP_CONTINUE;

  stress.n_waits++;
  g_atomic_int_set (&t->waiting, TRUE);
  g_atomic_int_inc (&stress.n_wakers);
  kind = g_rand_int_range (stress.rand, 0, 3);
  if (kind == 0)
    g_timeout_add (g_rand_int_range (stress.rand, 0, 3), wake_from_timeout, g_object_ref (task));
  else if (kind == 1)
    sluice_task_queue_run_async (sluice_task_queue_get_default (), nothing_much, NULL, NULL, NULL,
                                 G_PRIORITY_DEFAULT, NULL, on_queue_work_done, g_object_ref (task));
  else
    sluice_task_queue_run_async (sluice_task_queue_get_default (), wake_in_thread,
                                 g_object_ref (task), NULL, NULL, G_PRIORITY_DEFAULT, NULL, NULL,
                                 NULL);
  return SLUICE_STEP_WAIT;
}

static void
on_state (GObject *object, GParamSpec *pspec, gpointer user_data)
{
  ((Tracked *) user_data)->n_notified++;
}

static void
release_data (gpointer user_data)
{
  ((Tracked *) user_data)->n_data_released++;
}

static void
on_ended (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Tracked *t = user_data;

  t->n_ends++;
  t->ended_ok = sluice_cooperative_task_when_done_finish (SLUICE_COOPERATIVE_TASK (source), result,
                                                          &t->error);
  g_ptr_array_remove_fast (stress.live, t);
  stress.n_ended++;
}

/* Pauses, resumes and stops a live task at random, between two ticks:
 * about 20 stops and 2000 pauses in a run, whatever its size. */
static gboolean
control (gpointer user_data)
{
  guint steps = GPOINTER_TO_UINT (user_data);
  Tracked *t;
  guint dice;

  if (stress.live->len == 0)
    return G_SOURCE_CONTINUE;
  t = g_ptr_array_index (stress.live, g_rand_int_range (stress.rand, 0, stress.live->len));
  dice = g_rand_int_range (stress.rand, 0, 1000000);
  /* An ended task leaves the live set when its when_done answer comes. */
  if (t->stopped ||
      sluice_cooperative_task_get_state (t->task) >= SLUICE_COOPERATIVE_TASK_STATE_DONE)
    return G_SOURCE_CONTINUE;
  if (dice < 200000 / steps)
    {
      g_assert_true (sluice_cooperative_task_stop (t->task, NULL));
      t->stopped = TRUE;
      stress.n_stops++;
    }
  else if (t->pause_count > 0 && dice < 200000)
    {
      g_assert_true (sluice_cooperative_task_resume (t->task, NULL));
      t->pause_count--;
    }
  else if (t->pause_count < 2 && dice >= 1000000 - MIN (20000000 / steps, 500000))
    {
      g_assert_true (sluice_cooperative_task_pause (t->task, NULL));
      t->pause_count++;
      stress.n_pauses++;
    }
  return G_SOURCE_CONTINUE;
}

static void
test_stress (void)
{
  guint steps = sluice_test_scale (10000, 100);
  gint64 deadline = g_get_monotonic_time () + 300 * G_USEC_PER_SEC;
  GWeakRef weak;
  guint control_source;

  stress.rand = g_rand_new_with_seed (g_test_rand_int ());
  stress.cooperator = sluice_cooperator_new ();
  /* One step per tick: the controller, an idle source of the ticks'
   * priority, runs between every two ticks. */
  sluice_cooperator_set_time_slice (stress.cooperator, 0);
  stress.live = g_ptr_array_new ();
  for (guint i = 0; i < N_TASKS; i++)
    {
      Tracked *t = &stress.tasks[i];

      t->id = i;
      t->target = steps;
      t->task = sluice_cooperator_cooperate (stress.cooperator, stress_step, t, release_data);
      g_object_set_data (G_OBJECT (t->task), "tracked", t);
      g_signal_connect (t->task, "notify::state", G_CALLBACK (on_state), t);
      sluice_cooperative_task_when_done_async (t->task, NULL, on_ended, t);
      g_ptr_array_add (stress.live, t);
    }
  control_source = g_idle_add (control, GUINT_TO_POINTER (steps));

  while (stress.n_ended < N_TASKS && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (control_source);
  g_assert_cmpuint (stress.n_ended, ==, N_TASKS);

  /* Wakes still on their way (to stopped tasks) must change nothing. */
  while (g_atomic_int_get (&stress.n_wakers) > 0 && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (g_atomic_int_get (&stress.n_wakers), ==, 0);
  while (g_main_context_iteration (NULL, FALSE))
    ;

  g_test_message ("%u steps each, %u waits, %u pauses, %u stops", steps, stress.n_waits,
                  stress.n_pauses, stress.n_stops);
  for (guint i = 0; i < N_TASKS; i++)
    {
      Tracked *t = &stress.tasks[i];

      g_assert_cmpuint (t->n_ends, ==, 1);
      g_assert_cmpuint (t->n_notified, >, 0); /* at least its end */
      g_assert_cmpuint (t->n_data_released, ==, 1);
      if (t->stopped)
        {
          g_assert_false (t->ended_ok);
          g_assert_error (t->error, SLUICE_ERROR, SLUICE_ERROR_TASK_STOPPED);
          g_assert_cmpuint (t->n_steps, <, t->target);
          g_assert_cmpint (sluice_cooperative_task_get_state (t->task), ==,
                           SLUICE_COOPERATIVE_TASK_STATE_STOPPED);
        }
      else
        {
          g_assert_no_error (t->error);
          g_assert_true (t->ended_ok);
          g_assert_cmpuint (t->n_steps, ==, t->target);
          g_assert_cmpint (sluice_cooperative_task_get_state (t->task), ==,
                           SLUICE_COOPERATIVE_TASK_STATE_DONE);
        }
      g_clear_error (&t->error);
      g_signal_handlers_disconnect_by_data (t->task, t);
      g_clear_object (&t->task);
    }

  g_weak_ref_init (&weak, stress.cooperator);
  g_clear_object (&stress.cooperator);
  g_assert_null (g_weak_ref_get (&weak));
  g_weak_ref_clear (&weak);
  g_ptr_array_unref (stress.live);
  g_rand_free (stress.rand);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/cooperator/stress", test_stress);

  return g_test_run ();
}
