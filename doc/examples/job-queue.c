/* job-queue.c: spreadflow's JobQueue docstring example, with Sluice
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The program of doc/job-queue.md; the test suite runs it and checks that
 * it prints "hello", "what?" and "world!" in that order, a second apart.
 */

#include <sluice/sluice.h>

/* [jobs] */
/* Prints a message and completes at once. */
static void
say (SluiceJob *job, gpointer message, GError **error)
{
  g_print ("%s\n", (const char *) message);
  sluice_job_complete (job, NULL, NULL);
}

static gboolean
complete_job (gpointer job)
{
  sluice_job_complete (job, NULL, NULL);
  return G_SOURCE_REMOVE;
}

/* Completes after some seconds: its channel waits, the others do not. */
static void
wait_seconds (SluiceJob *job, gpointer seconds, GError **error)
{
  g_timeout_add_seconds_full (G_PRIORITY_DEFAULT, GPOINTER_TO_UINT (seconds), complete_job,
                              g_object_ref (job), g_object_unref);
}
/* [/jobs] */

static void
done (GObject *queue, GAsyncResult *result, gpointer loop)
{
  GError *error = NULL;

  /* say() completed with NULL: no result, no error. */
  g_assert_null (sluice_job_queue_put_finish (SLUICE_JOB_QUEUE (queue), result, &error));
  g_assert_no_error (error);
  g_main_loop_quit (loop);
}

int
main (void)
{
  g_autoptr (GMainLoop) loop = g_main_loop_new (NULL, FALSE);

  /* [main] */
  SluiceJobQueue *queue = sluice_job_queue_new ();
  SluiceCooperativeTask *queue_task = sluice_job_queue_cooperate (queue, NULL);

  sluice_job_queue_put_async (queue, "channel one", say, "hello", NULL, NULL, NULL, NULL);
  sluice_job_queue_put_async (queue, "channel one", wait_seconds, GUINT_TO_POINTER (2), NULL, NULL,
                              NULL, NULL);
  sluice_job_queue_put_async (queue, "channel one", say, "world!", NULL, NULL, done, loop);

  sluice_job_queue_put_async (queue, "channel two", wait_seconds, GUINT_TO_POINTER (1), NULL, NULL,
                              NULL, NULL);
  sluice_job_queue_put_async (queue, "channel two", say, "what?", NULL, NULL, NULL, NULL);

  g_main_loop_run (loop);
  /* [/main] */

  /* The queue's task runs on the default cooperator: stop it, and let its
   * end be delivered, so that nothing is left behind. */
  g_assert_true (sluice_cooperative_task_stop (queue_task, NULL));
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_object_unref (queue_task);
  g_object_unref (queue);
  return 0;
}
