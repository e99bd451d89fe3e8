/* redis-test-worker.c: a remote worker for test-redis-worker: serves the
 * functions of worker-test-module.c (linked in) and "slow-square" to Redis
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Usage: redis-test-worker ENDPOINT SERIES CONSUMER LEASE-MS MAX-DELIVERIES
 */

#include <sluice/sluice.h>

#include <stdlib.h>

gboolean sluice_worker_module_init (SluiceWorkerService *service, GError **error);

/* "slow-square" (x) -> (x): the square, after 2 ms. */
static GVariant *
slow_square (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  gint64 n;

  g_variant_get (args, "(x)", &n);
  g_usleep (2000);
  return g_variant_new ("(x)", n * n);
}

int
main (int argc, char **argv)
{
  const char *series[2] = { NULL, NULL };
  SluiceWorkerService *service;
  GError *error = NULL;
  gboolean ok;

  if (argc != 6)
    {
      g_printerr ("Usage: redis-test-worker ENDPOINT SERIES CONSUMER LEASE-MS MAX-DELIVERIES\n");
      return 2;
    }
  series[0] = argv[2];
  service = sluice_worker_service_new (2);
  sluice_worker_module_init (service, NULL);
  sluice_worker_service_register (service, "slow-square", "(x)", slow_square, NULL, NULL);
  ok = sluice_worker_service_serve_redis (service, argv[1], NULL, series, argv[3],
                                          (guint) atoi (argv[4]), (guint) atoi (argv[5]), NULL,
                                          &error);
  if (!ok)
    {
      g_printerr ("redis-test-worker: %s\n", error->message);
      g_error_free (error);
    }
  g_object_unref (service);
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
