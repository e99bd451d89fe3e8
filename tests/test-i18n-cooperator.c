/* test-i18n-cooperator.c: the cooperator's and job queue's messages in German
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Run by meson test with LANGUAGE=de, LANG=C.UTF-8 and SLUICE_TEST_LOCALEDIR
 * pointing at the catalogs of the build tree (tests/meson.build); skipped
 * otherwise.
 */

#include "config.h"

#include <libintl.h>
#include <locale.h>
#include <sluice/sluice.h>

const char *sluice_gettext (const char *msgid);

static SluiceStepResult
step_never_run (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  g_assert_not_reached ();
  return SLUICE_STEP_FAILED;
}

static void
test_task_not_paused (void)
{
  g_autoptr (SluiceCooperator) cooperator =
      g_object_new (SLUICE_TYPE_COOPERATOR, "started", FALSE, NULL);
  g_autoptr (SluiceCooperativeTask) task = NULL;
  g_autoptr (GError) error = NULL;

  task = sluice_cooperator_cooperate (cooperator, step_never_run, NULL, NULL);
  g_assert_false (sluice_cooperative_task_resume (task, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_NOT_PAUSED);
  g_assert_cmpstr (error->message, ==, "Die Aufgabe ist nicht angehalten");
  g_clear_error (&error);

  g_assert_true (sluice_cooperative_task_stop (task, NULL));
  g_assert_false (sluice_cooperative_task_stop (task, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_TASK_STOPPED);
  g_assert_cmpstr (error->message, ==, "Die Aufgabe wurde bereits gestoppt");
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

static void
test_job_queue_none_ready (void)
{
  g_autoptr (SluiceJobQueue) queue = sluice_job_queue_new ();
  g_autoptr (GError) error = NULL;

  g_assert_false (sluice_job_queue_run_next (queue, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_NONE_READY);
  g_assert_cmpstr (error->message, ==, "Kein Auftrag ist bereit zur Ausführung");
}

int
main (int argc, char *argv[])
{
  const char *localedir = g_getenv ("SLUICE_TEST_LOCALEDIR");
  const char *language = g_getenv ("LANGUAGE");

  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);

  if (localedir == NULL || language == NULL || !g_str_has_prefix (language, "de"))
    {
      g_test_skip ("Run by meson test: needs LANGUAGE=de and SLUICE_TEST_LOCALEDIR");
      return g_test_run ();
    }

  /* The library binds its domain on first use: make that happen, then
   * point the domain at the build tree. */
  (void) sluice_gettext ("");
  bindtextdomain (GETTEXT_PACKAGE, localedir);

  g_test_add_func ("/i18n/cooperator/not-paused", test_task_not_paused);
  g_test_add_func ("/i18n/job-queue/none-ready", test_job_queue_none_ready);

  return g_test_run ();
}
