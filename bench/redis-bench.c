/* redis-bench.c: named calls per second through Redis, against a local
 * process worker (the previous issue's), in one run
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Usage: redis-bench ENDPOINT [CALLS]
 *   (start a server first: redis-server --port 0 --unixsocket /tmp/r.sock
 *    --save '' --appendonly no; then redis-bench unix:/tmp/r.sock)
 *
 * Remote workers are sluice_worker_service_serve_redis () loops in threads
 * of this process, one call at a time each; rows are run in rotated order
 * and printed as calls/s with the ratio of 2 remote workers over 1.
 */

#include <sluice/sluice.h>

#include <stdlib.h>

/* doc/examples/worker-module.c, linked in: "busy" (u) keeps a core busy
 * that many microseconds. */
gboolean sluice_worker_module_init (SluiceWorkerService *service, GError **error);

typedef struct
{
  const char *endpoint;
  char *consumer;
  GCancellable *cancellable;
} Remote;

static gpointer
remote_main (gpointer data)
{
  Remote *remote = data;
  const char *series[] = { "bench", NULL };
  SluiceWorkerService *service = sluice_worker_service_new (1);
  GError *error = NULL;

  sluice_worker_module_init (service, NULL);
  if (!sluice_worker_service_serve_redis (service, remote->endpoint, NULL, series, remote->consumer,
                                          0, 0, remote->cancellable, &error))
    g_error ("remote worker: %s", error->message);
  g_object_unref (service);
  return NULL;
}

static guint n_done;

static void
done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GError *error = NULL;
  GVariant *value = sluice_task_queue_call_finish (SLUICE_TASK_QUEUE (source), result, &error);

  if (value == NULL)
    g_error ("call: %s", error->message);
  g_variant_unref (value);
  n_done++;
}

/* Calls per second with @n_remote remote workers (0: a local process
 * worker, sluice-worker with one thread). */
static double
run (const char *endpoint, guint n_remote, guint n_calls, guint32 us)
{
  const char *series[] = { "bench", NULL };
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  SluiceWorker *worker;
  Remote remotes[4];
  GThread *threads[4];
  GError *error = NULL;
  gint64 start;
  double rate;

  if (n_remote == 0)
    {
      const char *helper[] = { SLUICE_WORKER_TOOL, "--threads=1", SLUICE_WORKER_MODULE, NULL };

      worker = g_object_new (SLUICE_TYPE_PROCESS_WORKER, "argv", helper, "series", series,
                             "n-processes", 1, "max-calls", 64, NULL);
    }
  else
    {
      worker = SLUICE_WORKER (sluice_redis_worker_new (endpoint, NULL, series, 64, &error));
      if (worker == NULL)
        g_error ("%s", error->message);
    }
  for (guint i = 0; i < n_remote; i++)
    {
      remotes[i].endpoint = endpoint;
      remotes[i].consumer = g_strdup_printf ("bench-%u", i);
      remotes[i].cancellable = g_cancellable_new ();
      threads[i] = g_thread_new ("remote", remote_main, &remotes[i]);
    }
  sluice_task_queue_hire (queue, worker);

  n_done = 0;
  start = g_get_monotonic_time ();
  for (guint i = 0; i < n_calls; i++)
    sluice_task_queue_call_async (queue, "bench", "busy", g_variant_new ("(u)", us), 0, 0, NULL,
                                  done_cb, NULL);
  while (n_done < n_calls)
    g_main_context_iteration (NULL, TRUE);
  rate = n_calls / ((g_get_monotonic_time () - start) / 1e6);

  sluice_task_queue_fire (queue, worker);
  for (guint i = 0; i < n_remote; i++)
    {
      g_cancellable_cancel (remotes[i].cancellable);
      g_thread_join (threads[i]);
      g_object_unref (remotes[i].cancellable);
      g_free (remotes[i].consumer);
    }
  g_object_unref (worker);
  g_object_unref (queue);
  return rate;
}

int
main (int argc, char **argv)
{
  guint n_calls = argc > 2 ? (guint) atoi (argv[2]) : 5000;
  const guint32 costs[] = { 0, 50 };
  const guint workers[] = { 0, 1, 2 };

  if (argc < 2)
    {
      g_printerr ("Usage: redis-bench ENDPOINT [CALLS]\n");
      return 2;
    }
  for (guint c = 0; c < G_N_ELEMENTS (costs); c++)
    {
      double rates[3] = { 0 };

      /* Rotated order, so that no row always runs first. */
      for (guint r = 0; r < 3; r++)
        for (guint k = 0; k < 3; k++)
          {
            guint w = (k + r) % 3;

            rates[w] += run (argv[1], workers[w], n_calls, costs[c]) / 3;
          }
      g_print ("%2u us calls: local process worker %.0f/s, redis 1 worker %.0f/s, "
               "redis 2 workers %.0f/s\n",
               costs[c], rates[0], rates[1], rates[2]);
      g_print ("RESULT redis_2_over_1_%uus %.2f\n", costs[c], rates[2] / rates[1]);
    }
  return 0;
}
