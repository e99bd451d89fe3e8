/* worker-test-module.c: named functions that the process worker tests call
 * in sluice-worker helpers
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <sluice/sluice.h>

#include <gmodule.h>
#include <signal.h>
#include <unistd.h>

/* "square" (x) -> (x) */
static GVariant *
square (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  gint64 n;

  g_variant_get (args, "(x)", &n);
  return g_variant_new ("(x)", n * n);
}

/* "slow-square" (x) -> (x): the square, after 2 ms (the Redis tests kill
 * workers in the middle of such calls). */
static GVariant *
slow_square (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  gint64 n;

  g_variant_get (args, "(x)", &n);
  g_usleep (2000);
  return g_variant_new ("(x)", n * n);
}

/* "pid" () -> (i): the helper's process id. */
static GVariant *
pid (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  return g_variant_new ("(i)", (gint32) getpid ());
}

/* "sleep" (u) -> (): sleeps that many milliseconds, or until cancelled
 * (then fails with G_IO_ERROR_CANCELLED). */
static GVariant *
sleep_ms (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  guint32 ms;
  gint64 end;

  g_variant_get (args, "(u)", &ms);
  end = g_get_monotonic_time () + (gint64) ms * 1000;
  while (g_get_monotonic_time () < end)
    {
      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        return NULL;
      g_usleep (1000);
    }
  return NULL;
}

/* "hang" (u) -> (): sleeps that many milliseconds, deaf to its
 * cancellable: a process stuck in it must be killed. */
static GVariant *
hang (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  guint32 ms;

  g_variant_get (args, "(u)", &ms);
  g_usleep ((gulong) ms * 1000);
  return g_variant_new ("()");
}

/* "wait-cancel" (s) -> (): waits until its cancellable is cancelled, then
 * creates the file at the path (the test's evidence) and fails. */
static GVariant *
wait_cancel (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  const char *path;

  g_variant_get (args, "(&s)", &path);
  while (!g_cancellable_is_cancelled (cancellable))
    g_usleep (1000);
  g_file_set_contents (path, "cancelled", -1, NULL);
  g_cancellable_set_error_if_cancelled (cancellable, error);
  return NULL;
}

/* "die" () -> never: the helper kills itself. */
static GVariant *
die (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  kill (getpid (), SIGKILL);
  return NULL;
}

/* "fail" (s) -> error: fails with G_IO_ERROR_NOT_FOUND and the message. */
static GVariant *
fail (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  const char *message;

  g_variant_get (args, "(&s)", &message);
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, message);
  return NULL;
}

/* "print" () -> (): writes to standard output, which must not disturb the
 * protocol. */
static GVariant *
print (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  g_print ("this goes to standard error, not into the protocol\n");
  return NULL;
}

G_MODULE_EXPORT gboolean sluice_worker_module_init (SluiceWorkerService *service, GError **error);

G_MODULE_EXPORT gboolean
sluice_worker_module_init (SluiceWorkerService *service, GError **error)
{
  sluice_worker_service_register (service, "square", "(x)", square, NULL, NULL);
  sluice_worker_service_register (service, "slow-square", "(x)", slow_square, NULL, NULL);
  sluice_worker_service_register (service, "pid", "()", pid, NULL, NULL);
  sluice_worker_service_register (service, "sleep", "(u)", sleep_ms, NULL, NULL);
  sluice_worker_service_register (service, "hang", "(u)", hang, NULL, NULL);
  sluice_worker_service_register (service, "wait-cancel", "(s)", wait_cancel, NULL, NULL);
  sluice_worker_service_register (service, "die", NULL, die, NULL, NULL);
  sluice_worker_service_register (service, "fail", "(s)", fail, NULL, NULL);
  sluice_worker_service_register (service, "print", NULL, print, NULL, NULL);
  return TRUE;
}
