/* sluice-worker.c: a generic helper for SluiceProcessWorker: serves the
 * named functions of the modules given on its command line
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Usage: sluice-worker [--threads=N] MODULE...
 *
 * Each MODULE is a shared object (a path, or a name GModule finds) that
 * exports
 *
 *   gboolean sluice_worker_module_init (SluiceWorkerService *service,
 *                                       GError **error);
 *
 * which registers its functions with sluice_worker_service_register ().
 * The helper then serves them on its standard input and output (D-Bus
 * peer to peer, org.sluice.Worker1) until the worker closes the
 * connection. It is not meant to be run by hand: a SluiceProcessWorker
 * starts it.
 */

#include <sluice/sluice.h>

#include <gmodule.h>
#include <locale.h>
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

int
main (int argc, char **argv)
{
  int n_threads = 0;
  GOptionEntry entries[] = {
    { "threads", 't', 0, G_OPTION_ARG_INT, &n_threads,
      "Calls run at once (default: one per processor)", "N" },
    G_OPTION_ENTRY_NULL,
  };
  GOptionContext *options = g_option_context_new ("MODULE...");
  SluiceWorkerService *service;
  GError *error = NULL;
  int status = EXIT_SUCCESS;

  setlocale (LC_ALL, "");
  g_option_context_set_summary (options, "Serves the named functions of MODULEs to the "
                                         "SluiceProcessWorker that started it,\n"
                                         "on standard input and output.");
  g_option_context_add_main_entries (options, entries, NULL);
  if (!g_option_context_parse (options, &argc, &argv, &error) || argc < 2)
    {
      g_printerr ("sluice-worker: %s\n", error != NULL ? error->message : "no module given");
      g_printerr ("Usage: sluice-worker [--threads=N] MODULE...\n");
      g_clear_error (&error);
      g_option_context_free (options);
      return 2;
    }
  g_option_context_free (options);

  service = sluice_worker_service_new ((guint) MAX (n_threads, 0));
  for (int i = 1; i < argc && status == EXIT_SUCCESS; i++)
    if (!load_module (service, argv[i], &error))
      {
        g_printerr ("sluice-worker: %s: %s\n", argv[i], error->message);
        g_clear_error (&error);
        status = EXIT_FAILURE;
      }
  if (status == EXIT_SUCCESS && !sluice_worker_service_run (service, &error))
    {
      g_printerr ("sluice-worker: %s\n", error->message);
      g_clear_error (&error);
      status = EXIT_FAILURE;
    }
  g_object_unref (service);
  return status;
}
