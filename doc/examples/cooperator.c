/* cooperator.c: long work in steps on the main context, with a wait
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The program of doc/cooperator.md; the test suite runs it. It sums a
 * large array in steps of 10,000 numbers while the main loop keeps
 * dispatching (a timeout counts how often it got through), then waits for
 * a blocking "save" in the task queue, and prints the sum.
 */

#include <sluice/sluice.h>

#define N_NUMBERS 2000000
#define CHUNK 10000

/* [step] */
typedef struct
{
  const guint32 *numbers;
  gsize n, next;
  guint64 sum;
  gboolean saved;
} Sum;

static gpointer
save_sum (GCancellable *cancellable, gpointer sum, GError **error)
{
  g_usleep (20000); /* blocking I/O, in a thread of the task queue */
  return NULL;
}

static void
on_saved (GObject *queue, GAsyncResult *result, gpointer task)
{
  GError *error = NULL;

  /* save_sum returns NULL: a NULL with an error set is a failure. */
  if (sluice_task_queue_run_finish (SLUICE_TASK_QUEUE (queue), result, &error) == NULL &&
      error != NULL)
    sluice_cooperative_task_wake_with_error (task, error);
  else
    sluice_cooperative_task_wake (task);
  g_clear_error (&error);
  g_object_unref (task);
}

static SluiceStepResult
sum_step (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  Sum *sum = user_data;
  gsize end = MIN (sum->next + CHUNK, sum->n);

  if (sum->next < sum->n)
    {
      for (; sum->next < end; sum->next++)
        sum->sum += sum->numbers[sum->next];
      return SLUICE_STEP_CONTINUE; /* the loop dispatches other sources now */
    }
  if (!sum->saved)
    {
      sum->saved = TRUE;
      sluice_task_queue_run_async (sluice_task_queue_get_default (), save_sum, sum, NULL, NULL,
                                   G_PRIORITY_DEFAULT, NULL, on_saved, g_object_ref (task));
      return SLUICE_STEP_WAIT; /* costs nothing until on_saved wakes it */
    }
  return SLUICE_STEP_DONE;
}
/* [/step] */

static gboolean
count_tick (gpointer n_ticks)
{
  (*(guint *) n_ticks)++;
  return G_SOURCE_CONTINUE;
}

static void
on_summed (GObject *cooperator, GAsyncResult *result, gpointer loop)
{
  GError *error = NULL;

  if (!sluice_cooperator_coiterate_finish (SLUICE_COOPERATOR (cooperator), result, &error))
    g_error ("summing failed: %s", error->message);
  g_main_loop_quit (loop);
}

int
main (void)
{
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autofree guint32 *numbers = g_new (guint32, N_NUMBERS);
  Sum sum = { numbers, N_NUMBERS, 0, 0, FALSE };
  guint n_ticks = 0, timeout;

  for (gsize i = 0; i < N_NUMBERS; i++)
    numbers[i] = (guint32) i;
  timeout = g_timeout_add (1, count_tick, &n_ticks);

  /* [run] */
  SluiceCooperator *cooperator = sluice_cooperator_new ();

  sluice_cooperator_coiterate_async (cooperator, sum_step, &sum, NULL, NULL, on_summed, loop);
  g_main_loop_run (loop);
  /* [/run] */

  g_source_remove (timeout);
  g_print ("sum %" G_GUINT64_FORMAT ", the loop ran a 1 ms timeout %u times meanwhile\n", sum.sum,
           n_ticks);
  g_assert_cmpuint (sum.sum, ==, (guint64) N_NUMBERS * (N_NUMBERS - 1) / 2);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_object_unref (cooperator);
  return 0;
}
