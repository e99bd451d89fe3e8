/* errors.c: what happens when items fail, are cancelled, or the consumer
 * leaves
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The program of doc/errors.md; the test suite runs it. Every claim of that
 * page is a g_assert here.
 */

#include <sluice/sluice.h>

static int n_live; /* items made and not yet freed */

static gpointer
item_new (guint n)
{
  g_atomic_int_inc (&n_live);
  return GUINT_TO_POINTER (n + 1); /* never NULL */
}

static void
item_free (gpointer item)
{
  g_atomic_int_dec_and_test (&n_live);
}

/* --- a consumer that records what it gets --- */

typedef struct
{
  GArray *got; /* of guint */
  GError *error;
  guint leave_after; /* 0: take everything */
} Record;

static gpointer
record_all (SluiceConsumerator *items, gpointer user_data, GError **error)
{
  Record *record = user_data;
  gpointer item;

  while (sluice_consumerator_next (items, &item, error))
    {
      guint n = GPOINTER_TO_UINT (item) - 1;

      g_array_append_val (record->got, n);
      item_free (item);
      if (record->got->len == record->leave_after)
        return NULL; /* leaves early: production stops */
    }
  if (*error != NULL)
    record->error = g_error_copy (*error);
  return NULL;
}

/* --- item functions --- */

static gboolean
complete_now (gpointer user_data)
{
  SluiceSlot *slot = user_data;

  sluice_slot_complete (slot, item_new (sluice_slot_get_sequence (slot)));
  return G_SOURCE_REMOVE;
}

static gboolean
fail_now (gpointer user_data)
{
  SluiceSlot *slot = user_data;

  sluice_slot_fail (slot, g_error_new (G_IO_ERROR, G_IO_ERROR_FAILED, "item %u failed",
                                       (guint) sluice_slot_get_sequence (slot)));
  return G_SOURCE_REMOVE;
}

/* Item 7 fails, and late: every later item is complete before it. */
static void
seven_fails_late (SluiceSlot *slot, gpointer user_data)
{
  if (sluice_slot_get_sequence (slot) == 7)
    g_timeout_add (20, fail_now, slot);
  else
    complete_now (slot);
}

static gpointer
never_runs (GCancellable *cancellable, gpointer user_data, GError **error)
{
  g_assert_not_reached ();
}

static void
wait_for (gboolean *flag)
{
  while (!*flag)
    g_main_context_iteration (NULL, TRUE);
}

typedef struct
{
  gpointer result;
  GError *error;
  gboolean done;
} Stopped;

static void
on_stopped (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Stopped *stopped = user_data;

  stopped->result = sluice_ordered_item_producer_stop_finish (SLUICE_ORDERED_ITEM_PRODUCER (source),
                                                              result, &stopped->error);
  stopped->done = TRUE;
}

static void
on_item_failed (SluiceOrderedItemProducer *producer,
                guint64 sequence,
                GError *error,
                gpointer user_data)
{
  GArray *failed = user_data;
  guint n = (guint) sequence;

  g_array_append_val (failed, n);
}

static void
on_produced (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GError **error = user_data;

  g_assert_false (sluice_ordered_item_producer_produce_item_finish (
      SLUICE_ORDERED_ITEM_PRODUCER (source), result, error));
}

static void
a_failed_item_ends_the_stream (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  Record record = { g_array_new (FALSE, FALSE, sizeof (guint)), NULL, 0 };
  Stopped stopped = { 0 };

  /* [failure] */
  producer = sluice_ordered_item_producer_new (NULL, 32, item_free);
  sluice_ordered_item_producer_start (producer, record_all, &record, NULL, NULL);
  for (guint n = 0; n < 20; n++)
    sluice_ordered_item_producer_produce (producer, seven_fails_late, NULL);
  sluice_ordered_item_producer_stop_async (producer, NULL, on_stopped, &stopped);
  wait_for (&stopped.done);

  /* The consumer got items 0 to 6, in order, then item 7's error... */
  g_assert_cmpuint (record.got->len, ==, 7);
  g_assert_error (record.error, G_IO_ERROR, G_IO_ERROR_FAILED);
  /* ...the stop reports that error... */
  g_assert_error (stopped.error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_assert_cmpstr (stopped.error->message, ==, "item 7 failed");
  /* ...and items 8 to 19, complete but never consumed, were freed. */
  g_assert_cmpint (g_atomic_int_get (&n_live), ==, 0);
  /* [/failure] */

  g_array_unref (record.got);
  g_clear_error (&record.error);
  g_clear_error (&stopped.error);
}

static void
skipping_failed_items (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GArray) failed = g_array_new (FALSE, FALSE, sizeof (guint));
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  Record record = { g_array_new (FALSE, FALSE, sizeof (guint)), NULL, 0 };
  Stopped stopped = { 0 };

  /* [skip] */
  producer = sluice_ordered_item_producer_new (NULL, 32, item_free);
  sluice_ordered_item_producer_set_skip_failed (producer, TRUE);
  g_signal_connect (producer, "item-failed", G_CALLBACK (on_item_failed), failed);
  sluice_ordered_item_producer_start (producer, record_all, &record, NULL, NULL);
  for (guint n = 0; n < 20; n++)
    {
      if (n == 12)
        {
          /* A cancellable that fires before the function runs: the
           * function never runs, the item fails with G_IO_ERROR_CANCELLED. */
          g_cancellable_cancel (cancellable);
          sluice_ordered_item_producer_produce_item_in_thread (
              producer, never_runs, NULL, NULL, G_PRIORITY_DEFAULT, cancellable, NULL, NULL);
        }
      else
        sluice_ordered_item_producer_produce (producer, seven_fails_late, NULL);
    }
  sluice_ordered_item_producer_stop_async (producer, NULL, on_stopped, &stopped);
  wait_for (&stopped.done);

  /* Items 7 and 12 were left out and reported; the rest arrived in order
   * and the stop succeeds. */
  g_assert_cmpuint (record.got->len, ==, 18);
  g_assert_cmpuint (g_array_index (record.got, guint, 7), ==, 8);
  g_assert_cmpuint (failed->len, ==, 2);
  g_assert_cmpuint (g_array_index (failed, guint, 0), ==, 7);
  g_assert_cmpuint (g_array_index (failed, guint, 1), ==, 12);
  g_assert_no_error (stopped.error);
  /* [/skip] */

  /* The signal is emitted from idles on the owner context: let them run
   * before the array goes. */
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_signal_handlers_disconnect_by_data (producer, failed);
  g_array_unref (record.got);
}

static void
a_consumer_that_leaves (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) refused = NULL;
  Record record = { g_array_new (FALSE, FALSE, sizeof (guint)), NULL, 3 };
  Stopped stopped = { 0 };

  /* [leave] */
  producer = sluice_ordered_item_producer_new (NULL, 32, item_free);
  sluice_ordered_item_producer_start (producer, record_all, &record, NULL, NULL);
  for (guint n = 0; n < 5; n++)
    sluice_ordered_item_producer_produce (producer, seven_fails_late, NULL);
  /* The consumer returns after 3 items; the producer closes... */
  while (!sluice_ordered_item_producer_is_closed (producer))
    g_main_context_iteration (NULL, TRUE);
  /* ...and later produce calls do not run their function. */
  sluice_ordered_item_producer_produce_item (producer, seven_fails_late, NULL, NULL, NULL,
                                             on_produced, &refused);
  while (refused == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_assert_error (refused, SLUICE_ERROR, SLUICE_ERROR_STOPPED);

  sluice_ordered_item_producer_stop_async (producer, NULL, on_stopped, &stopped);
  wait_for (&stopped.done);
  g_assert_no_error (stopped.error); /* the consumer returned without an error */
  g_assert_cmpint (g_atomic_int_get (&n_live), ==, 0);
  /* [/leave] */

  g_array_unref (record.got);
}

static void
stopping_twice_and_too_early (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  Stopped first = { 0 }, second = { 0 };

  /* [stop] */
  producer = sluice_ordered_item_producer_new (NULL, 32, item_free);
  sluice_ordered_item_producer_produce (producer, seven_fails_late, NULL);
  /* Never started: the stop frees the buffered item and says so... */
  sluice_ordered_item_producer_stop_async (producer, NULL, on_stopped, &first);
  wait_for (&first.done);
  g_assert_error (first.error, SLUICE_ERROR, SLUICE_ERROR_NOT_STARTED);
  g_assert_cmpint (g_atomic_int_get (&n_live), ==, 0);
  /* ...and a second stop completes at once. */
  sluice_ordered_item_producer_stop_async (producer, NULL, on_stopped, &second);
  wait_for (&second.done);
  g_assert_error (second.error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  /* [/stop] */

  g_clear_error (&first.error);
  g_clear_error (&second.error);
}

int
main (void)
{
  a_failed_item_ends_the_stream ();
  skipping_failed_items ();
  a_consumer_that_leaves ();
  stopping_twice_and_too_early ();
  g_print ("errors: every case behaved as doc/errors.md says\n");
  return 0;
}
