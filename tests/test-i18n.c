/* test-i18n.c: the library's messages in German
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Runs failing operations under LANGUAGE=de LANG=C.UTF-8 (set by meson)
 * and checks the exact German text of their errors. The catalog comes from
 * the build tree (SLUICE_TEST_LOCALEDIR, laid out as
 * <dir>/de/LC_MESSAGES/sluice-1.mo by i18n.gettext), not from the install
 * prefix the library was configured with.
 */

#include "config.h"

#include <libintl.h>
#include <locale.h>
#include <sluice/sluice.h>

#include "sluice-test-util.h"

/* Private, reached through the static copy of the library. */
const char *sluice_gettext (const char *msgid);

static GAsyncResult *
wait_result (GAsyncResult **slot)
{
  gint64 deadline = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;

  while (*slot == NULL && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_assert_nonnull (*slot);
  return *slot;
}

static void
store_result (GObject *source, GAsyncResult *result, gpointer data)
{
  GAsyncResult **slot = data;

  *slot = g_object_ref (result);
}

static void
test_producer_never_started (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = sluice_ordered_item_producer_new (NULL, 4, NULL);
  g_autoptr (GAsyncResult) first = NULL;
  g_autoptr (GAsyncResult) second = NULL;
  g_autoptr (GError) error = NULL;
  gpointer result;

  sluice_ordered_item_producer_stop_async (producer, NULL, store_result, &first);
  result = sluice_ordered_item_producer_stop_finish (producer, wait_result (&first), &error);
  g_assert_null (result);
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_NOT_STARTED);
  g_assert_cmpstr (error->message, ==, "Der Erzeuger wurde nie gestartet");
  g_clear_error (&error);

  sluice_ordered_item_producer_stop_async (producer, NULL, store_result, &second);
  result = sluice_ordered_item_producer_stop_finish (producer, wait_result (&second), &error);
  g_assert_null (result);
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_cmpstr (error->message, ==, "Der Erzeuger wurde bereits gestoppt");
}

static gpointer
consume_all (SluiceConsumerator *consumerator, gpointer user_data, GError **error)
{
  GError **seen = user_data;

  while (sluice_consumerator_next (consumerator, NULL, error))
    ;
  /* Keep a copy for the test; the stop reports the original. */
  if (*error != NULL)
    *seen = g_error_copy (*error);
  return NULL;
}

static void
item_never_called (SluiceSlot *slot, gpointer user_data)
{
  g_assert_not_reached ();
}

static void
test_producer_stopped (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = sluice_ordered_item_producer_new (NULL, 4, NULL);
  g_autoptr (GAsyncResult) produced = NULL;
  g_autoptr (GAsyncResult) stopped = NULL;
  g_autoptr (GError) consumer_error = NULL;
  g_autoptr (GError) error = NULL;

  sluice_ordered_item_producer_start (producer, consume_all, &consumer_error, NULL, NULL);
  sluice_push_producer_stop_producing (SLUICE_PUSH_PRODUCER (producer));

  /* A produce call after the stop is refused... */
  sluice_ordered_item_producer_produce_item (producer, item_never_called, NULL, NULL, NULL,
                                             store_result, &produced);
  g_assert_false (
      sluice_ordered_item_producer_produce_item_finish (producer, wait_result (&produced), &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_cmpstr (error->message, ==,
                   "Der Erzeuger wurde gestoppt, bevor das Element erzeugt werden konnte");
  g_clear_error (&error);

  /* ...and the consumer and the stop see why. */
  sluice_ordered_item_producer_stop_async (producer, NULL, store_result, &stopped);
  g_assert_null (
      sluice_ordered_item_producer_stop_finish (producer, wait_result (&stopped), &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_cmpstr (error->message, ==, "Der Erzeuger wurde gestoppt");
  g_assert_error (consumer_error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_cmpstr (consumer_error->message, ==, "Der Erzeuger wurde gestoppt");
}

static void
test_consumerator_closed (void)
{
  g_autoptr (SluiceConsumerator) consumerator = sluice_consumerator_new (4, g_free);
  g_autoptr (GError) error = NULL;

  sluice_consumerator_close (consumerator, NULL);
  g_assert_false (sluice_consumerator_push (consumerator, g_strdup ("late"), &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_cmpstr (error->message, ==, "Der Consumerator ist geschlossen");
}

static gpointer
return_nothing (GCancellable *cancellable, gpointer user_data, GError **error)
{
  return NULL;
}

static void
test_task_queue_shut_down (void)
{
  g_autoptr (SluiceTaskQueue) queue = sluice_task_queue_new (1);
  g_autoptr (GAsyncResult) shut_down = NULL;
  g_autoptr (GAsyncResult) ran = NULL;
  g_autoptr (GError) error = NULL;
  gpointer result;

  sluice_task_queue_shutdown_async (queue, FALSE, NULL, store_result, &shut_down);
  g_assert_true (sluice_task_queue_shutdown_finish (queue, wait_result (&shut_down), &error));
  g_assert_no_error (error);

  sluice_task_queue_run_async (queue, return_nothing, NULL, NULL, NULL, G_PRIORITY_DEFAULT, NULL,
                               store_result, &ran);
  result = sluice_task_queue_run_finish (queue, wait_result (&ran), &error);
  g_assert_null (result);
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_cmpstr (error->message, ==, "Die Aufgabenwarteschlange wurde heruntergefahren");
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

  /* The library binds its domain to the installed LOCALEDIR on first use;
   * make that happen now, then point the domain at the build tree. */
  (void) sluice_gettext ("");
  bindtextdomain (GETTEXT_PACKAGE, localedir);

  g_test_add_func ("/i18n/producer/never-started", test_producer_never_started);
  g_test_add_func ("/i18n/producer/stopped", test_producer_stopped);
  g_test_add_func ("/i18n/consumerator/closed", test_consumerator_closed);
  g_test_add_func ("/i18n/task-queue/shut-down", test_task_queue_shut_down);

  return g_test_run ();
}
