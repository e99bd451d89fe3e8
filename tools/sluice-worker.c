/* sluice-worker.c: serves the named functions of the modules given on its
 * command line, to a SluiceProcessWorker or through Redis
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Usage: sluice-worker [--threads=N] MODULE...
 *        sluice-worker --redis=URL --series=NAME... [--consumer=NAME]
 *                      [--lease-ms=MS] [--max-deliveries=N] [--threads=N]
 *                      MODULE...
 *
 * Each MODULE is a shared object (a path, or a name GModule finds) that
 * exports
 *
 *   gboolean sluice_worker_module_init (SluiceWorkerService *service,
 *                                       GError **error);
 *
 * which registers its functions with sluice_worker_service_register ().
 *
 * Without --redis the helper serves them on its standard input and output
 * (D-Bus peer to peer, org.sluice.Worker1) until the worker closes the
 * connection; it is not meant to be run by hand: a SluiceProcessWorker
 * starts it.
 *
 * With --redis it serves them to the call streams of the series in Redis
 * (sluice_worker_service_serve_redis ()), as a member of their consumer
 * group, until SIGTERM or SIGINT: then it reads no more calls, answers
 * those it runs and exits with status 0. The password is taken from the
 * URL (redis://:PASSWORD@HOST:PORT/DB) or, so that it does not show in
 * the process list, from the environment variable SLUICE_REDIS_PASSWORD.
 */

#include <sluice/sluice.h>

#include <glib-unix.h>
#include <gmodule.h>
#include <locale.h>
#include <signal.h>
#include <stdlib.h>

typedef gboolean (*ModuleInit) (SluiceWorkerService *service, GError **error);

static gboolean
load_module (SluiceWorkerService *service, const char *path, GError **error)
{
  GModule *module = g_module_open (path, G_MODULE_BIND_LAZY | G_MODULE_BIND_LOCAL);
  ModuleInit init = NULL;

  if (module == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", g_module_error ());
      return FALSE;
    }
  if (!g_module_symbol (module, "sluice_worker_module_init", (gpointer *) &init) || init == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   "%s has no function sluice_worker_module_init", path);
      g_module_close (module);
      return FALSE;
    }
  /* Its functions are registered for as long as the process lives. */
  g_module_make_resident (module);
  return init (service, error);
}

/* --redis: serve_redis () blocks in a thread of its own; the main thread
 * waits for SIGTERM or SIGINT and cancels it. */
typedef struct
{
  SluiceWorkerService *service;
  const char *endpoint;
  const char *const *series;
  const char *consumer;
  guint lease_ms;
  guint max_deliveries;
  GCancellable *cancellable;
  GMainLoop *loop;
  gboolean ok;
  GError *error;
} Serving;

static gboolean
quit_idle_cb (gpointer data)
{
  g_main_loop_quit (data);
  return G_SOURCE_REMOVE;
}

static gpointer
serve_main (gpointer data)
{
  Serving *serving = data;

  serving->ok = sluice_worker_service_serve_redis (
      serving->service, serving->endpoint, g_getenv ("SLUICE_REDIS_PASSWORD"), serving->series,
      serving->consumer, serving->lease_ms, serving->max_deliveries, serving->cancellable,
      &serving->error);
  g_idle_add (quit_idle_cb, serving->loop);
  return NULL;
}

static gboolean
signal_cb (gpointer data)
{
  g_cancellable_cancel (data);
  return G_SOURCE_CONTINUE;
}

static gboolean
serve_redis (Serving *serving, GError **error)
{
  GThread *thread;
  guint term_id, int_id;

  serving->cancellable = g_cancellable_new ();
  serving->loop = g_main_loop_new (NULL, FALSE);
  term_id = g_unix_signal_add (SIGTERM, signal_cb, serving->cancellable);
  int_id = g_unix_signal_add (SIGINT, signal_cb, serving->cancellable);
  thread = g_thread_new ("serve-redis", serve_main, serving);
  g_main_loop_run (serving->loop);
  g_thread_join (thread);
  g_source_remove (term_id);
  g_source_remove (int_id);
  g_main_loop_unref (serving->loop);
  g_object_unref (serving->cancellable);
  if (!serving->ok)
    g_propagate_error (error, serving->error);
  return serving->ok;
}

int
main (int argc, char **argv)
{
  int n_threads = 0, lease_ms = 0, max_deliveries = 0;
  char *endpoint = NULL, *consumer = NULL;
  char **series = NULL;
  GOptionEntry entries[] = {
    { "threads", 't', 0, G_OPTION_ARG_INT, &n_threads,
      "Calls run at once (default: one per processor)", "N" },
    { "redis", 'r', 0, G_OPTION_ARG_STRING, &endpoint,
      "Serve through Redis (redis://[:PASSWORD@]HOST[:PORT][/DB] or unix:PATH)", "URL" },
    { "series", 's', 0, G_OPTION_ARG_STRING_ARRAY, &series,
      "With --redis: a series to serve (repeatable; \"\" is the default series)", "NAME" },
    { "consumer", 'c', 0, G_OPTION_ARG_STRING, &consumer,
      "With --redis: the name of this member of the consumer group (default: HOST.PID)", "NAME" },
    { "lease-ms", 0, 0, G_OPTION_ARG_INT, &lease_ms,
      "With --redis: how long a call may go without renewal before others reclaim it "
      "(default: 30000)",
      "MS" },
    { "max-deliveries", 0, 0, G_OPTION_ARG_INT, &max_deliveries,
      "With --redis: deliveries of a call before it fails with WORKER_LOST (default: 3)", "N" },
    G_OPTION_ENTRY_NULL,
  };
  GOptionContext *options = g_option_context_new ("MODULE...");
  SluiceWorkerService *service;
  GError *error = NULL;
  int status = EXIT_SUCCESS;
  const char *usage_error = NULL;

  setlocale (LC_ALL, "");
  g_option_context_set_summary (options, "Serves the named functions of MODULEs to the "
                                         "SluiceProcessWorker that started it,\n"
                                         "on standard input and output, or with --redis to the "
                                         "SluiceRedisWorkers of the series\n"
                                         "(until SIGTERM or SIGINT).");
  g_option_context_add_main_entries (options, entries, NULL);
  if (!g_option_context_parse (options, &argc, &argv, &error))
    usage_error = error->message;
  else if (argc < 2)
    usage_error = "no module given";
  else if (endpoint != NULL && (series == NULL || series[0] == NULL))
    usage_error = "--redis needs at least one --series";
  else if (endpoint == NULL &&
           (series != NULL || consumer != NULL || lease_ms != 0 || max_deliveries != 0))
    usage_error = "--series, --consumer, --lease-ms and --max-deliveries go with --redis";
  else if (n_threads < 0 || lease_ms < 0 || max_deliveries < 0)
    usage_error = "negative numbers are not allowed";
  if (usage_error != NULL)
    {
      g_printerr ("sluice-worker: %s\n", usage_error);
      g_printerr ("Usage: sluice-worker [--threads=N] MODULE...\n"
                  "       sluice-worker --redis=URL --series=NAME... [--consumer=NAME] "
                  "[--lease-ms=MS] [--max-deliveries=N] [--threads=N] MODULE...\n");
      g_clear_error (&error);
      g_option_context_free (options);
      g_free (endpoint);
      g_free (consumer);
      g_strfreev (series);
      return 2;
    }
  g_option_context_free (options);

  service = sluice_worker_service_new ((guint) n_threads);
  for (int i = 1; i < argc && status == EXIT_SUCCESS; i++)
    if (!load_module (service, argv[i], &error))
      {
        g_printerr ("sluice-worker: %s: %s\n", argv[i], error->message);
        g_clear_error (&error);
        status = EXIT_FAILURE;
      }
  if (status == EXIT_SUCCESS && endpoint != NULL)
    {
      Serving serving = {
        .service = service,
        .endpoint = endpoint,
        .series = (const char *const *) series,
        .consumer = consumer,
        .lease_ms = (guint) lease_ms,
        .max_deliveries = (guint) max_deliveries,
      };

      if (!serve_redis (&serving, &error))
        status = EXIT_FAILURE;
    }
  else if (status == EXIT_SUCCESS && !sluice_worker_service_run (service, &error))
    status = EXIT_FAILURE;
  if (error != NULL)
    {
      g_printerr ("sluice-worker: %s\n", error->message);
      g_clear_error (&error);
    }
  g_object_unref (service);
  g_free (endpoint);
  g_free (consumer);
  g_strfreev (series);
  return status;
}
