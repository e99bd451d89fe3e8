/* worker-module.c: a module of named functions for the sluice-worker
 * helper (an example; the benchmark uses it too)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Build it as a shared module and give it to sluice-worker:
 *
 *   SluiceProcessWorker *worker = sluice_process_worker_new (
 *       (const char *[]) { "sluice-worker", "/path/to/worker-module.so", NULL },
 *       NULL, 2);
 *   sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
 *   sluice_task_queue_call_async (queue, NULL, "sum",
 *                                 g_variant_new ("(@ai)", numbers), ...);
 */

#include <sluice/sluice.h>

#include <gmodule.h>

/* [sum] */
/* "sum" (ai) -> (x): the sum of the numbers. */
static GVariant *
sum (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  GVariantIter iter;
  gint32 n;
  gint64 total = 0;
  GVariant *numbers = g_variant_get_child_value (args, 0);

  g_variant_iter_init (&iter, numbers);
  while (g_variant_iter_next (&iter, "i", &n))
    total += n;
  g_variant_unref (numbers);
  return g_variant_new ("(x)", total);
}
/* [/sum] */

/* "busy" (u) -> (u): keeps a core busy for that many microseconds, then
 * returns the number. */
static GVariant *
busy (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  guint32 us;
  gint64 end;

  g_variant_get (args, "(u)", &us);
  end = g_get_monotonic_time () + us;
  while (g_get_monotonic_time () < end)
    ;
  return g_variant_new ("(u)", us);
}

/* "echo" (v) -> (v): its argument back. */
static GVariant *
echo (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  return g_variant_ref (args);
}

/* [init] */
G_MODULE_EXPORT gboolean sluice_worker_module_init (SluiceWorkerService *service, GError **error);

G_MODULE_EXPORT gboolean
sluice_worker_module_init (SluiceWorkerService *service, GError **error)
{
  sluice_worker_service_register (service, "sum", "(ai)", sum, NULL, NULL);
  sluice_worker_service_register (service, "busy", "(u)", busy, NULL, NULL);
  sluice_worker_service_register (service, "echo", NULL, echo, NULL, NULL);
  return TRUE;
}
/* [/init] */
