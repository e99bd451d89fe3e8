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
 * Each MODULE is a shared object that exports
 *
 *   gboolean sluice_worker_module_init (SluiceWorkerService *service,
 *                                       GError **error);
 *
 * which registers its functions with sluice_worker_service_register ().
 * MODULE is a path when it has a '/'; a bare name (with or without ".so",
 * as "sluice-gzip-deflate") is looked for in the directories of the
 * environment variable SLUICE_WORKER_MODULE_PATH (':'-separated; an
 * uninstalled build points it at its tools/), then in the installed module
 * directory LIBDIR/sluice (SLUICE_WORKER_MODULEDIR), then by the dynamic
 * linker's search (LD_LIBRARY_PATH, the system's library directories);
 * when none has it the error lists where it looked.
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

#include <glib/gi18n.h>
#include <sluice/sluice.h>

#include <glib-unix.h>
#include <gmodule.h>
#include <string.h>
#include <locale.h>
#include <signal.h>
#include <stdlib.h>

typedef gboolean (*ModuleInit) (SluiceWorkerService *service, GError **error);

/* The file of module @name: @name itself when it has a '/', else the first
 * of NAME and NAME.so in the directories of SLUICE_WORKER_MODULE_PATH and
 * in SLUICE_WORKER_MODULEDIR that exists; NULL when none does, with the
 * places tried in @tried (newline-separated). */
static char *
find_module (const char *name, GString *tried)
{
  const char *env = g_getenv ("SLUICE_WORKER_MODULE_PATH");
  g_autofree char *path_list =
      g_strdup_printf ("%s%s%s", env != NULL ? env : "", env != NULL && *env != '\0' ? ":" : "",
                       SLUICE_WORKER_MODULEDIR);
  g_auto (GStrv) dirs = g_strsplit (path_list, ":", -1);
  g_autofree char *with_so =
      g_str_has_suffix (name, ".so") ? NULL : g_strconcat (name, ".so", NULL);
  const char *names[] = { name, with_so };

  if (strchr (name, '/') != NULL)
    return g_strdup (name);
  for (guint d = 0; dirs[d] != NULL; d++)
    for (guint k = 0; k < G_N_ELEMENTS (names) && names[k] != NULL; k++)
      {
        g_autofree char *path = NULL;

        if (dirs[d][0] == '\0')
          continue;
        path = g_build_filename (dirs[d], names[k], NULL);
        if (g_file_test (path, G_FILE_TEST_IS_REGULAR))
          return g_steal_pointer (&path);
        g_string_append_printf (tried, "\n  %s", path);
      }
  return NULL;
}

static gboolean
load_module (SluiceWorkerService *service, const char *name, GError **error)
{
  g_autoptr (GString) tried = g_string_new (NULL);
  g_autofree char *path = find_module (name, tried);
  GModule *module;
  ModuleInit init = NULL;

  /* Not in our directories: the dynamic linker's search, as before. */
  module = g_module_open (path != NULL ? path : name, G_MODULE_BIND_LAZY | G_MODULE_BIND_LOCAL);
  if (module == NULL && path == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                   _ ("module not found; looked for:%s\n"
                      "  and in the dynamic linker's search path "
                      "(set SLUICE_WORKER_MODULE_PATH to add directories, or give a path)"),
                   tried->str);
      return FALSE;
    }
  if (module == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", g_module_error ());
      return FALSE;
    }
  if (!g_module_symbol (module, "sluice_worker_module_init", (gpointer *) &init) || init == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED,
                   "%s has no function sluice_worker_module_init", path != NULL ? path : name);
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
  g_autofree char *description = NULL;

  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  /* _() looks in the default domain: without this, in "messages". */
  textdomain (GETTEXT_PACKAGE);
  g_option_context_set_summary (options, "Serves the named functions of MODULEs to the "
                                         "SluiceProcessWorker that started it,\n"
                                         "on standard input and output, or with --redis to the "
                                         "SluiceRedisWorkers of the series\n"
                                         "(until SIGTERM or SIGINT).");
  description = g_strdup_printf (
      _ ("A MODULE with a '/' is a path; a bare name, with or without \".so\", is looked\n"
         "for in the directories of SLUICE_WORKER_MODULE_PATH (':'-separated), then in\n"
         "the installed module directory %s,\n"
         "then in the dynamic linker's search path."),
      SLUICE_WORKER_MODULEDIR);
  g_option_context_set_description (options, description);
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
