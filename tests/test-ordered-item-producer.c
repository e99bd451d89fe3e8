/* test-ordered-item-producer.c: the semantics of SluiceOrderedItemProducer
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <string.h>
#include <sluice/sluice.h>

#include "sluice-test-util.h"

/* --- items that count their own lives --- */

static int items_allocated;
static int items_freed;

typedef struct
{
  guint64 value;
} Item;

static Item *
item_new (guint64 value)
{
  Item *item = g_new (Item, 1);

  item->value = value;
  g_atomic_int_inc (&items_allocated);
  return item;
}

static void
item_free (gpointer data)
{
  g_atomic_int_inc (&items_freed);
  g_free (data);
}

static void
reset_counts (void)
{
  g_atomic_int_set (&items_allocated, 0);
  g_atomic_int_set (&items_freed, 0);
}

static void
assert_no_item_leaked (void)
{
  g_assert_cmpint (g_atomic_int_get (&items_allocated), ==, g_atomic_int_get (&items_freed));
}

/* --- a consumer that checks the order --- */

typedef struct
{
  guint stop_after;  /* return early after this many items (0: never) */
  gboolean fail;     /* with stop_after: fail instead of returning */
  guint busy_loops;  /* busy work per item: a slow consumer */
  int *consumed_ptr; /* counter the flow test reads while running */
  GArray *values;    /* what arrived, in order */
  GError *error;     /* what next() ended with */
  gboolean ended;
} Consumer;

static Consumer *
consumer_new (void)
{
  Consumer *consumer = g_new0 (Consumer, 1);

  consumer->values = g_array_new (FALSE, FALSE, sizeof (guint64));
  return consumer;
}

static void
consumer_free (Consumer *consumer)
{
  g_array_unref (consumer->values);
  g_clear_error (&consumer->error);
  g_free (consumer);
}

/* The result is a guint64 * holding the number of items taken. */
static gpointer
consume (SluiceConsumerator *consumerator, gpointer data, GError **error)
{
  Consumer *consumer = data;
  gpointer item;

  while (sluice_consumerator_next (consumerator, &item, &consumer->error))
    {
      g_array_append_val (consumer->values, ((Item *) item)->value);
      item_free (item);
      if (consumer->consumed_ptr != NULL)
        g_atomic_int_inc (consumer->consumed_ptr);
      for (volatile guint spin = 0; spin < consumer->busy_loops; spin++)
        ;
      if (consumer->stop_after > 0 && consumer->values->len == consumer->stop_after)
        {
          if (consumer->fail)
            {
              g_set_error (error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE, "consumer gave up at %u",
                           consumer->values->len);
              return NULL;
            }
          break;
        }
    }
  consumer->ended = TRUE;
  {
    guint64 *count = g_new (guint64, 1);

    *count = consumer->values->len;
    return count;
  }
}

static void
assert_array_in_order (GArray *values, guint64 first, guint n)
{
  g_assert_cmpuint (values->len, ==, n);
  for (guint i = 0; i < n; i++)
    g_assert_cmpuint (g_array_index (values, guint64, i), ==, first + i);
}

static void
assert_values_in_order (Consumer *consumer, guint64 first, guint n)
{
  assert_array_in_order (consumer->values, first, n);
}

/* --- async helpers --- */

static void
store_result (GObject *source, GAsyncResult *result, gpointer data)
{
  GAsyncResult **out = data;

  *out = g_object_ref (result);
}

static GAsyncResult *
wait_result (GAsyncResult **slot)
{
  gint64 deadline = g_get_monotonic_time () + 120 * G_USEC_PER_SEC;

  while (*slot == NULL)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (NULL, FALSE);
      if (*slot == NULL)
        g_usleep (100);
    }
  return *slot;
}

static guint64 *
stop_sync (SluiceOrderedItemProducer *producer, GError **error)
{
  GAsyncResult *result = NULL;
  guint64 *value;

  sluice_ordered_item_producer_stop_async (producer, NULL, store_result, &result);
  value = sluice_ordered_item_producer_stop_finish (producer, wait_result (&result), error);
  g_object_unref (result);
  return value;
}

static void
spin_main_context (guint ms)
{
  gint64 until = g_get_monotonic_time () + ms * 1000;

  while (g_get_monotonic_time () < until)
    {
      while (g_main_context_iteration (NULL, FALSE))
        ;
      g_usleep (500);
    }
}

/* Runs the main context until @cond holds; fails the test after the
 * deadline instead of hanging. */
#define WAIT_UNTIL(cond)                                                                           \
  G_STMT_START                                                                                     \
  {                                                                                                \
    gint64 wait_deadline = deadline_from_now ();                                                   \
                                                                                                   \
    while (!(cond))                                                                                \
      {                                                                                            \
        g_assert_cmpint (g_get_monotonic_time (), <, wait_deadline);                               \
        g_main_context_iteration (NULL, FALSE);                                                    \
        g_usleep (100);                                                                            \
      }                                                                                            \
  }                                                                                                \
  G_STMT_END

/* --- item functions --- */

static void
complete_now (SluiceSlot *slot, gpointer data)
{
  sluice_slot_complete (slot, item_new (GPOINTER_TO_SIZE (data)));
}

static gpointer
make_in_thread (GCancellable *cancellable, gpointer data, GError **error)
{
  if (g_random_int_range (0, 4) == 0)
    g_usleep (g_random_int_range (0, 200));
  return item_new (GPOINTER_TO_SIZE (data));
}

static gpointer
fail_in_thread (GCancellable *cancellable, gpointer data, GError **error)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "item %zu is bad",
               GPOINTER_TO_SIZE (data));
  return NULL;
}

typedef struct
{
  SluiceSlot *slot;
  guint64 value;
  GInputStream *stream;
} AsyncItem;

static void
read_done (GObject *source, GAsyncResult *result, gpointer data)
{
  AsyncItem *async_item = data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) bytes =
      g_input_stream_read_bytes_finish (G_INPUT_STREAM (source), result, &error);

  g_assert_no_error (error);
  g_assert_cmpuint (g_bytes_get_size (bytes), ==, sizeof (guint64));
  g_assert_cmpmem (g_bytes_get_data (bytes, NULL), sizeof (guint64), &async_item->value,
                   sizeof (guint64));
  sluice_slot_complete (async_item->slot, item_new (async_item->value));
  g_object_unref (async_item->stream);
  g_free (async_item);
}

/* Completes later, from a GIO async read of the value's own bytes. */
static void
complete_from_gio (SluiceSlot *slot, gpointer data)
{
  AsyncItem *async_item = g_new0 (AsyncItem, 1);

  async_item->slot = slot;
  async_item->value = GPOINTER_TO_SIZE (data);
  async_item->stream = g_memory_input_stream_new_from_data (
      g_memdup2 (&async_item->value, sizeof (guint64)), sizeof (guint64), g_free);
  g_input_stream_read_bytes_async (async_item->stream, sizeof (guint64), G_PRIORITY_DEFAULT,
                                   sluice_slot_get_cancellable (slot), read_done, async_item);
}

typedef struct
{
  SluiceSlot *slot;
  guint64 value;
} LaterItem;

static gboolean
complete_later_cb (gpointer data)
{
  LaterItem *later = data;

  sluice_slot_complete (later->slot, item_new (later->value));
  g_free (later);
  return G_SOURCE_REMOVE;
}

/* Completes from a timeout with a random delay: scrambles the order. */
static void
complete_later (SluiceSlot *slot, gpointer data)
{
  LaterItem *later = g_new (LaterItem, 1);

  later->slot = slot;
  later->value = GPOINTER_TO_SIZE (data);
  g_timeout_add (g_random_int_range (0, 5), complete_later_cb, later);
}

/* --- tests --- */

static void
test_mixed_sources (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  Consumer *consumer = consumer_new ();
  guint n = sluice_test_scale (3000, 10);
  guint64 *count;

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 64, item_free);
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);

  for (guint i = 0; i < n; i++)
    {
      gpointer value = GSIZE_TO_POINTER (i);

      while (!sluice_ordered_item_producer_is_ready (producer))
        g_main_context_iteration (NULL, TRUE);
      switch (i % 4)
        {
        case 0:
          sluice_ordered_item_producer_produce (producer, complete_now, value);
          break;
        case 1:
          sluice_ordered_item_producer_produce (producer, complete_from_gio, value);
          break;
        case 2:
          sluice_ordered_item_producer_produce (producer, complete_later, value);
          break;
        default:
          sluice_ordered_item_producer_produce_in_thread (producer, make_in_thread, value);
          break;
        }
    }

  count = stop_sync (producer, &error);
  g_assert_no_error (error);
  g_assert_nonnull (count);
  g_assert_cmpuint (*count, ==, n);
  g_assert_true (consumer->ended);
  g_assert_no_error (consumer->error);
  assert_values_in_order (consumer, 0, n);
  g_free (count);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

static void
test_stop_returns_result (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  Consumer *consumer = consumer_new ();
  guint64 *count;

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 8, item_free);
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  for (guint i = 0; i < 5; i++)
    sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (i));
  count = stop_sync (producer, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (*count, ==, 5);
  assert_values_in_order (consumer, 0, 5);
  g_free (count);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

static void
test_stop_before_any_item (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  Consumer *consumer = consumer_new ();
  guint64 *count;

  producer = sluice_ordered_item_producer_new (NULL, 8, item_free);
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  count = stop_sync (producer, &error);
  g_assert_no_error (error);
  g_assert_nonnull (count);
  g_assert_cmpuint (*count, ==, 0);
  g_assert_true (consumer->ended);
  g_assert_no_error (consumer->error);
  g_free (count);
  consumer_free (consumer);
}

static void
test_stop_twice (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  Consumer *consumer = consumer_new ();
  GAsyncResult *first = NULL, *second = NULL;
  guint64 *count;

  producer = sluice_ordered_item_producer_new (NULL, 8, item_free);
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  sluice_ordered_item_producer_stop_async (producer, NULL, store_result, &first);
  sluice_ordered_item_producer_stop_async (producer, NULL, store_result, &second);

  /* The second completes while the first is still pending or not: either
   * way with STOPPED, and the first still gets the result. */
  g_assert_null (
      sluice_ordered_item_producer_stop_finish (producer, wait_result (&second), &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_clear_error (&error);
  count = sluice_ordered_item_producer_stop_finish (producer, wait_result (&first), &error);
  g_assert_no_error (error);
  g_assert_cmpuint (*count, ==, 0);
  g_free (count);
  g_clear_object (&first);
  g_clear_object (&second);

  /* And once more after it finished. */
  g_assert_null (stop_sync (producer, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  consumer_free (consumer);
}

static void
test_stop_not_started (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 8, item_free);
  for (guint i = 0; i < 3; i++)
    sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (i));
  g_assert_cmpint (g_atomic_int_get (&items_allocated), ==, 3);
  g_assert_null (stop_sync (producer, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_NOT_STARTED);
  /* The buffered items were released by the stop, not by the dispose. */
  g_assert_cmpint (g_atomic_int_get (&items_freed), ==, 3);
}

static void
produce_done (GObject *source, GAsyncResult *result, gpointer data)
{
  GError **out = data;
  gboolean ok;

  ok = sluice_ordered_item_producer_produce_item_finish (SLUICE_ORDERED_ITEM_PRODUCER (source),
                                                         result, out);
  g_assert_true (ok == (*out == NULL));
  if (ok)
    *out = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_EXISTS, "(no error: marker)");
}

static void
test_item_error_in_middle (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  Consumer *consumer = consumer_new ();
  GError *item_errors[100] = { NULL };
  guint n = 100, bad = 50;

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 128, item_free);
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  for (guint i = 0; i < n; i++)
    sluice_ordered_item_producer_produce_item_in_thread (
        producer, i == bad ? fail_in_thread : make_in_thread, GSIZE_TO_POINTER (i), NULL,
        G_PRIORITY_DEFAULT, NULL, produce_done, &item_errors[i]);

  g_assert_null (stop_sync (producer, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_assert_cmpstr (error->message, ==, "item 50 is bad");

  /* The consumer got exactly the items before the failure, then it. */
  assert_values_in_order (consumer, 0, bad);
  g_assert_error (consumer->error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);

  /* Every produce callback ran; the failing one got its error. */
  for (guint i = 0; i < n; i++)
    {
      wait_result ((GAsyncResult **) &item_errors[i]);
      if (i == bad)
        g_assert_error (item_errors[i], G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
      g_clear_error (&item_errors[i]);
    }

  /* Items after it were produced (or stopped) and freed, none twice. */
  assert_no_item_leaked ();
  consumer_free (consumer);

  /* A second stop after an error completes. */
  g_clear_error (&error);
  g_assert_null (stop_sync (producer, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
}

static void
on_item_failed (SluiceOrderedItemProducer *producer, guint64 seq, GError *error, gpointer data)
{
  GArray *failed = data;

  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_array_append_val (failed, seq);
}

static void
test_item_error_skipped (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) failed = g_array_new (FALSE, FALSE, sizeof (guint64));
  Consumer *consumer = consumer_new ();
  guint n = 200;
  guint64 *count;

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 16, item_free);
  sluice_ordered_item_producer_set_skip_failed (producer, TRUE);
  g_assert_true (sluice_ordered_item_producer_get_skip_failed (producer));
  g_signal_connect (producer, "item-failed", G_CALLBACK (on_item_failed), failed);
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  for (guint i = 0; i < n; i++)
    {
      while (!sluice_ordered_item_producer_is_ready (producer))
        g_main_context_iteration (NULL, TRUE);
      sluice_ordered_item_producer_produce_in_thread (
          producer, i % 10 == 3 ? fail_in_thread : make_in_thread, GSIZE_TO_POINTER (i));
    }
  count = stop_sync (producer, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (*count, ==, n - n / 10);
  g_free (count);

  /* All the others, in order. */
  for (guint i = 0, j = 0; i < n; i++)
    {
      if (i % 10 == 3)
        continue;
      g_assert_cmpuint (g_array_index (consumer->values, guint64, j), ==, i);
      j++;
    }
  spin_main_context (20);
  g_assert_cmpuint (failed->len, ==, n / 10);
  for (guint i = 0; i < failed->len; i++)
    g_assert_cmpuint (g_array_index (failed, guint64, i), ==, i * 10 + 3);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

static int item_funcs_run;

static void
count_and_complete (SluiceSlot *slot, gpointer data)
{
  g_atomic_int_inc (&item_funcs_run);
  complete_now (slot, data);
}

static void
run_consumer_leaves_early (gboolean fail)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  Consumer *consumer = consumer_new ();
  GError *late_error = NULL;
  guint64 *count;

  reset_counts ();
  g_atomic_int_set (&item_funcs_run, 0);
  consumer->stop_after = 10;
  consumer->fail = fail;
  producer = sluice_ordered_item_producer_new (NULL, 64, item_free);
  /* All 20 are produced before the consumer runs: it leaves after 10. */
  for (guint i = 0; i < 20; i++)
    sluice_ordered_item_producer_produce (producer, count_and_complete, GSIZE_TO_POINTER (i));
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);

  /* Wait until the consumer has returned: its return reaches the owner. */
  WAIT_UNTIL (
      sluice_consumerator_is_closed (sluice_ordered_item_producer_get_consumerator (producer)));
  spin_main_context (10);

  /* A later produce call does not run its function and reports STOPPED. */
  sluice_ordered_item_producer_produce_item (producer, count_and_complete, GSIZE_TO_POINTER (99),
                                             NULL, NULL, produce_done, &late_error);
  wait_result ((GAsyncResult **) &late_error);
  g_assert_error (late_error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_clear_error (&late_error);
  g_assert_cmpint (g_atomic_int_get (&item_funcs_run), ==, 20);

  count = stop_sync (producer, &error);
  if (fail)
    {
      g_assert_null (count);
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE);
      g_assert_cmpstr (error->message, ==, "consumer gave up at 10");
    }
  else
    {
      g_assert_no_error (error);
      g_assert_cmpuint (*count, ==, 10);
      g_free (count);
    }
  assert_values_in_order (consumer, 0, 10);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

static void
test_consumer_returns_early (void)
{
  run_consumer_leaves_early (FALSE);
}

static void
test_consumer_fails (void)
{
  run_consumer_leaves_early (TRUE);
}

static void
test_pause_holds_delivery (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  Consumer *consumer = consumer_new ();
  int consumed = 0;
  guint64 *count;

  reset_counts ();
  consumer->consumed_ptr = &consumed;
  producer = sluice_ordered_item_producer_new (NULL, 128, item_free);
  sluice_push_producer_pause_producing (SLUICE_PUSH_PRODUCER (producer));
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  for (guint i = 0; i < 100; i++)
    sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (i));

  /* Nothing may arrive while paused, however long we give it. */
  spin_main_context (100);
  g_assert_cmpint (g_atomic_int_get (&consumed), ==, 0);

  /* Pausing mid-stream holds the rest too. */
  sluice_push_producer_resume_producing (SLUICE_PUSH_PRODUCER (producer));
  count = stop_sync (producer, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (*count, ==, 100);
  assert_values_in_order (consumer, 0, 100);
  g_free (count);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

static int cancelled_seen;

static void
on_slot_cancelled (GCancellable *cancellable, gpointer data)
{
  SluiceSlot *slot = data;

  g_atomic_int_inc (&cancelled_seen);
  sluice_slot_fail (slot, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, "cancelled"));
}

/* Never completes on its own: only a cancellation ends it. */
static void
complete_on_cancel (SluiceSlot *slot, gpointer data)
{
  GCancellable *cancellable = sluice_slot_get_cancellable (slot);

  g_assert_nonnull (cancellable);
  g_signal_connect (cancellable, "cancelled", G_CALLBACK (on_slot_cancelled), slot);
}

static void
test_stop_producing (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GCancellable) own = g_cancellable_new ();
  Consumer *consumer = consumer_new ();

  reset_counts ();
  g_atomic_int_set (&cancelled_seen, 0);
  producer = sluice_ordered_item_producer_new (NULL, 64, item_free);
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  for (guint i = 0; i < 5; i++)
    sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (i));
  /* In flight: one with the producer's cancellable, one with its own. */
  sluice_ordered_item_producer_produce (producer, complete_on_cancel, NULL);
  sluice_ordered_item_producer_produce_item (producer, complete_on_cancel, NULL, NULL, own, NULL,
                                             NULL);

  sluice_push_producer_stop_producing (SLUICE_PUSH_PRODUCER (producer));
  g_assert_cmpint (g_atomic_int_get (&cancelled_seen), ==, 2);
  /* The caller's own cancellable is left alone. */
  g_assert_false (g_cancellable_is_cancelled (own));

  g_assert_null (stop_sync (producer, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_true (consumer->ended);
  g_assert_error (consumer->error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  /* Whatever it got before the stop came in order. */
  assert_values_in_order (consumer, 0, consumer->values->len);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

static void
test_item_cancellable (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  Consumer *consumer = consumer_new ();
  GError *item_error = NULL;

  reset_counts ();
  g_atomic_int_set (&cancelled_seen, 0);
  producer = sluice_ordered_item_producer_new (NULL, 64, item_free);
  sluice_ordered_item_producer_set_skip_failed (producer, TRUE);
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (0));
  sluice_ordered_item_producer_produce_item (producer, complete_on_cancel, NULL, NULL, cancellable,
                                             produce_done, &item_error);
  sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (1));
  g_cancellable_cancel (cancellable);
  wait_result ((GAsyncResult **) &item_error);
  g_assert_error (item_error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&item_error);
  g_assert_cmpint (g_atomic_int_get (&cancelled_seen), ==, 1);
  g_free (stop_sync (producer, &error));
  g_assert_no_error (error);
  assert_values_in_order (consumer, 0, 2);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

/* --- flow control --- */

#define TEST_TYPE_SOURCE (test_source_get_type ())
G_DECLARE_FINAL_TYPE (TestSource, test_source, TEST, SOURCE, GObject)

/* An upstream push producer: it produces from a ready source while not
 * paused, and counts pauses and resumes. */
struct _TestSource
{
  GObject parent_instance;
  gboolean paused;
  guint pauses;
  guint resumes;
  guint stops;
};

static void
test_source_pause (SluicePushProducer *producer)
{
  TestSource *self = TEST_SOURCE (producer);

  g_assert_false (self->paused);
  self->paused = TRUE;
  self->pauses++;
}

static void
test_source_resume (SluicePushProducer *producer)
{
  TestSource *self = TEST_SOURCE (producer);

  g_assert_true (self->paused);
  self->paused = FALSE;
  self->resumes++;
}

static void
test_source_stop (SluicePushProducer *producer)
{
  TEST_SOURCE (producer)->stops++;
}

static void
test_source_iface_init (SluicePushProducerInterface *iface)
{
  iface->pause_producing = test_source_pause;
  iface->resume_producing = test_source_resume;
  iface->stop_producing = test_source_stop;
}

G_DEFINE_FINAL_TYPE_WITH_CODE (TestSource,
                               test_source,
                               G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (SLUICE_TYPE_PUSH_PRODUCER,
                                                      test_source_iface_init))

static void
test_source_class_init (TestSourceClass *klass)
{
}

static void
test_source_init (TestSource *self)
{
}

typedef struct
{
  SluiceOrderedItemProducer *producer;
  TestSource *upstream;
  guint next;
  guint n;
  int produced;
  int *consumed;
  int max_live;
  guint max_n_items;
  guint dispatches;
  guint ready_true;
  guint ready_false;
  gboolean done;
} Flow;

static void
flow_item (SluiceSlot *slot, gpointer data)
{
  Flow *flow = data;
  int live = g_atomic_int_add (&flow->produced, 1) + 1 - g_atomic_int_get (flow->consumed);

  flow->max_live = MAX (flow->max_live, live);
  flow->max_n_items =
      MAX (flow->max_n_items, sluice_consumerator_get_n_items (
                                  sluice_ordered_item_producer_get_consumerator (flow->producer)));
  sluice_slot_complete (slot, item_new (sluice_slot_get_sequence (slot)));
}

static gboolean
flow_dispatch (gpointer data)
{
  Flow *flow = data;

  flow->dispatches++;
  /* The source only dispatches when ready; produce while the upstream is
   * not paused. */
  while (!flow->upstream->paused && flow->next < flow->n)
    {
      sluice_ordered_item_producer_produce (flow->producer, flow_item, flow);
      flow->next++;
    }
  if (flow->next == flow->n)
    {
      flow->done = TRUE;
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static void
on_ready_notify (GObject *object, GParamSpec *pspec, gpointer data)
{
  Flow *flow = data;

  if (sluice_ordered_item_producer_is_ready (flow->producer))
    flow->ready_true++;
  else
    flow->ready_false++;
}

static void
test_flow_control (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (TestSource) upstream = g_object_new (TEST_TYPE_SOURCE, NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GSource) source = NULL;
  Consumer *consumer = consumer_new ();
  int consumed = 0;
  guint window = 16;
  Flow flow = { 0 };
  guint64 *count;

  reset_counts ();
  consumer->consumed_ptr = &consumed;
  producer = sluice_ordered_item_producer_new (NULL, window, item_free);
  flow.producer = producer;
  flow.upstream = upstream;
  flow.n = sluice_test_scale (1000000, 100);
  flow.consumed = &consumed;
  g_signal_connect (producer, "notify::ready", G_CALLBACK (on_ready_notify), &flow);
  sluice_ordered_item_producer_register_producer (producer, SLUICE_PUSH_PRODUCER (upstream));
  source = sluice_ordered_item_producer_create_ready_source (producer, NULL);
  g_source_set_callback (source, flow_dispatch, &flow, NULL);
  g_source_attach (source, NULL);

  /* Items pile up before the consumer starts: the window holds. */
  while (!upstream->paused)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (flow.produced, ==, window);
  g_assert_false (sluice_ordered_item_producer_is_ready (producer));

  /* A consumer slower than the producer: busy work on every item. */
  consumer->busy_loops = 2000;
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  while (!flow.done)
    g_main_context_iteration (NULL, TRUE);

  count = stop_sync (producer, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (*count, ==, flow.n);
  g_free (count);
  assert_values_in_order (consumer, 0, flow.n);

  g_test_message ("max live %d, dispatches %u, pauses %u, resumes %u, ready %u/%u", flow.max_live,
                  flow.dispatches, upstream->pauses, upstream->resumes, flow.ready_false,
                  flow.ready_true);
  /* The library's count of live items (reserved, not yet handed out). */
  g_assert_cmpuint (flow.max_n_items, ==, window);
  /* Ours counts an item consumed only after next() returned it, so the one
   * item in the consumer's hands may show on top of the window. */
  g_assert_cmpint (flow.max_live, >=, window);
  g_assert_cmpint (flow.max_live, <=, window + 1);
  /* The upstream was paused at high water and resumed at low water, in
   * alternation, as often as ready went FALSE and TRUE. */
  g_assert_cmpuint (upstream->pauses, >, 1);
  g_assert_cmpuint (upstream->pauses, ==, flow.ready_false);
  g_assert_cmpuint (upstream->resumes + 1, >=, upstream->pauses);
  g_assert_cmpuint (flow.ready_true + 1, >=, flow.ready_false);
  g_assert_cmpuint (flow.dispatches, >=, upstream->resumes);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

static gboolean
count_dispatch (gpointer data)
{
  (*(guint *) data)++;
  return G_SOURCE_CONTINUE;
}

/* When the consumer leaves, the producer is closed: waiters wake (ready),
 * the upstream is stopped, produce calls complete at once. */
static void
test_closed_wakes_waiters (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (TestSource) upstream = g_object_new (TEST_TYPE_SOURCE, NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GSource) source = NULL;
  Consumer *consumer = consumer_new ();
  GError *late_error = NULL;
  guint dispatched = 0;

  reset_counts ();
  consumer->stop_after = 1;
  consumer->fail = TRUE;
  producer = sluice_ordered_item_producer_new (NULL, 4, item_free);
  sluice_ordered_item_producer_register_producer (producer, SLUICE_PUSH_PRODUCER (upstream));
  for (guint i = 0; i < 4; i++)
    sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (i));
  g_assert_false (sluice_ordered_item_producer_is_ready (producer));
  g_assert_false (sluice_ordered_item_producer_is_closed (producer));
  g_assert_true (upstream->paused);
  source = sluice_ordered_item_producer_create_ready_source (producer, NULL);
  g_source_set_callback (source, count_dispatch, &dispatched, NULL);
  g_source_attach (source, NULL);

  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  /* is_closed() reads the current state; the upstream hears of it on the
   * owner context. */
  WAIT_UNTIL (sluice_ordered_item_producer_is_closed (producer) && upstream->stops > 0);
  g_assert_true (sluice_ordered_item_producer_is_ready (producer));
  g_assert_cmpuint (upstream->stops, ==, 1);
  while (dispatched == 0)
    g_main_context_iteration (NULL, TRUE);
  g_source_destroy (source);

  sluice_ordered_item_producer_produce_item (producer, complete_now, NULL, NULL, NULL, produce_done,
                                             &late_error);
  wait_result ((GAsyncResult **) &late_error);
  g_assert_error (late_error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_clear_error (&late_error);

  g_assert_null (stop_sync (producer, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

/* A consumer that takes one item per permit, so that the test knows how
 * many it took. */
typedef struct
{
  GAsyncQueue *permits;
  int taken; /* atomic */
} GatedConsumer;

static gpointer
consume_gated (SluiceConsumerator *consumerator, gpointer data, GError **error)
{
  GatedConsumer *gated = data;
  gpointer item;

  for (;;)
    {
      g_async_queue_pop (gated->permits);
      if (!sluice_consumerator_next (consumerator, &item, error))
        break;
      item_free (item);
      g_atomic_int_inc (&gated->taken);
    }
  return *error == NULL ? g_strdup ("done") : NULL;
}

static void
allow_items (GatedConsumer *gated, guint n)
{
  int before = g_atomic_int_get (&gated->taken);

  for (guint i = 0; i < n; i++)
    g_async_queue_push (gated->permits, GINT_TO_POINTER (1));
  WAIT_UNTIL (g_atomic_int_get (&gated->taken) == before + (int) n);
}

/* Lets the consumer take the last @n_rest items and the end, stops, and
 * checks that it took @n_total in all and nothing leaked. */
static void
finish_gated (SluiceOrderedItemProducer *producer, GatedConsumer *gated, guint n_rest, int n_total)
{
  g_autoptr (GError) error = NULL;
  GAsyncResult *stop_result = NULL;
  char *result;

  allow_items (gated, n_rest);
  g_async_queue_push (gated->permits, GINT_TO_POINTER (1));
  sluice_ordered_item_producer_stop_async (producer, NULL, store_result, &stop_result);
  result = sluice_ordered_item_producer_stop_finish (producer, wait_result (&stop_result), &error);
  g_object_unref (stop_result);
  g_assert_no_error (error);
  g_assert_cmpstr (result, ==, "done");
  g_free (result);
  g_assert_cmpint (g_atomic_int_get (&gated->taken), ==, n_total);
  assert_no_item_leaked ();
  g_async_queue_unref (gated->permits);
}

/* Full at the window; ready again once a quarter of it is free, not
 * before: with a window of 8, after the second item is taken. */
static void
test_ready_hysteresis (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  GatedConsumer gated = { g_async_queue_new (), 0 };

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 8, item_free);
  for (guint i = 0; i < 7; i++)
    {
      sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (i));
      g_assert_true (sluice_ordered_item_producer_is_ready (producer));
    }
  sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (7));
  g_assert_false (sluice_ordered_item_producer_is_ready (producer));

  sluice_ordered_item_producer_start (producer, consume_gated, &gated, NULL, g_free);
  allow_items (&gated, 1);
  /* 7 live: no room yet, however long the owner context runs. */
  spin_main_context (20);
  g_assert_false (sluice_ordered_item_producer_is_ready (producer));

  allow_items (&gated, 1);
  /* 6 live, a quarter free: ready (the room callback runs on the owner
   * context). */
  WAIT_UNTIL (sluice_ordered_item_producer_is_ready (producer));

  /* The rest, and the end. */
  finish_gated (producer, &gated, 6, 8);
}

static gpointer
produce_two_thread (gpointer data)
{
  SluiceOrderedItemProducer *producer = data;

  for (gsize i = 8; i < 10; i++)
    sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (i));
  return NULL;
}

/* The consumer makes room (the owner context hears of it later), and before
 * the owner context runs, another thread's produce calls fill the window
 * again: the producer must not say it is ready when it runs. */
static void
test_room_refilled_elsewhere (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  GatedConsumer gated = { g_async_queue_new (), 0 };
  gint64 deadline;

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 8, item_free);
  for (guint i = 0; i < 8; i++)
    sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (i));
  g_assert_false (sluice_ordered_item_producer_is_ready (producer));
  sluice_ordered_item_producer_start (producer, consume_gated, &gated, NULL, g_free);

  /* Two taken, 6 live: room, told before next() returned the second. The
   * owner context does not run meanwhile. */
  g_async_queue_push (gated.permits, GINT_TO_POINTER (1));
  g_async_queue_push (gated.permits, GINT_TO_POINTER (1));
  deadline = deadline_from_now ();
  while (g_atomic_int_get (&gated.taken) < 2)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (100);
    }
  g_thread_join (g_thread_new ("producer", produce_two_thread, producer));

  spin_main_context (20);
  g_assert_false (sluice_ordered_item_producer_is_ready (producer));

  /* Two more taken: ready again. */
  allow_items (&gated, 2);
  WAIT_UNTIL (sluice_ordered_item_producer_is_ready (producer));

  finish_gated (producer, &gated, 6, 10);
}

/* A produce call made while the window is full waits, in order. */
static void
test_window_full_defers (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  Consumer *consumer = consumer_new ();
  int produced_before_start;
  guint64 *count;

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 4, item_free);
  for (guint i = 0; i < 50; i++)
    {
      if (i % 2)
        sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (i));
      else
        sluice_ordered_item_producer_produce_in_thread (producer, make_in_thread,
                                                        GSIZE_TO_POINTER (i));
    }
  /* The two items made in a thread may take a while under valgrind: wait
   * for all four, then give a fifth the chance to be made (wrongly). */
  WAIT_UNTIL (g_atomic_int_get (&items_allocated) >= 4);
  spin_main_context (20);
  produced_before_start = g_atomic_int_get (&items_allocated);
  g_assert_cmpint (produced_before_start, ==, 4);
  g_assert_false (sluice_ordered_item_producer_is_ready (producer));

  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  count = stop_sync (producer, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (*count, ==, 50);
  g_free (count);
  assert_values_in_order (consumer, 0, 50);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

/* A batch submitted when its last request arrives: items 1-7 complete only
 * once item 8's function has run, and item 8 is asked for while the window
 * (8) is full. Once the consumer takes item 0 there is a place for item 8:
 * its function must run then, not only at the low-water mark (which the
 * stream would never reach). */
typedef struct
{
  GPtrArray *slots; /* the batch's slots, completed by its last request */
  int n_last_runs;  /* atomic */
} Batch;

static void
batch_request (SluiceSlot *slot, gpointer data)
{
  Batch *batch = data;

  g_ptr_array_add (batch->slots, slot);
}

static void
batch_last_request (SluiceSlot *slot, gpointer data)
{
  Batch *batch = data;

  g_atomic_int_inc (&batch->n_last_runs);
  g_ptr_array_add (batch->slots, slot);
  for (guint i = 0; i < batch->slots->len; i++)
    {
      SluiceSlot *request = g_ptr_array_index (batch->slots, i);

      sluice_slot_complete (request, item_new (sluice_slot_get_sequence (request)));
    }
  g_ptr_array_set_size (batch->slots, 0);
}

static void
test_waiting_call_starts_at_first_place (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  Consumer *consumer = consumer_new ();
  Batch batch = { g_ptr_array_new (), 0 };
  guint64 *count;

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 8, item_free);
  sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (0));
  for (guint i = 1; i < 8; i++)
    sluice_ordered_item_producer_produce (producer, batch_request, &batch);
  g_assert_false (sluice_ordered_item_producer_is_ready (producer));
  /* The window is full: this call waits. */
  sluice_ordered_item_producer_produce (producer, batch_last_request, &batch);
  g_assert_cmpint (g_atomic_int_get (&batch.n_last_runs), ==, 0);

  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  WAIT_UNTIL (g_atomic_int_get (&batch.n_last_runs) == 1);

  count = stop_sync (producer, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (*count, ==, 9);
  g_free (count);
  assert_values_in_order (consumer, 0, 9);
  g_assert_cmpint (g_atomic_int_get (&batch.n_last_runs), ==, 1);
  assert_no_item_leaked ();
  g_ptr_array_unref (batch.slots);
  consumer_free (consumer);
}

/* Waiting calls start one per free place, in order, while the producer
 * stays not ready until the low-water mark (its hysteresis is for new
 * callers only). */
static void
test_waiting_calls_one_per_place (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  GatedConsumer gated = { g_async_queue_new (), 0 };

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 8, item_free);
  for (guint i = 0; i < 11; i++)
    sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (i));
  g_assert_cmpint (g_atomic_int_get (&items_allocated), ==, 8);
  sluice_ordered_item_producer_start (producer, consume_gated, &gated, NULL, g_free);

  /* One taken: one place, and the first waiting call takes it. */
  allow_items (&gated, 1);
  WAIT_UNTIL (g_atomic_int_get (&items_allocated) == 9);
  spin_main_context (20);
  g_assert_cmpint (g_atomic_int_get (&items_allocated), ==, 9);
  g_assert_false (sluice_ordered_item_producer_is_ready (producer));

  /* Two more taken: the other two waiting calls start; the window is full
   * again, so the producer is still not ready. */
  allow_items (&gated, 2);
  WAIT_UNTIL (g_atomic_int_get (&items_allocated) == 11);
  spin_main_context (20);
  g_assert_false (sluice_ordered_item_producer_is_ready (producer));

  /* A quarter of the window free, nothing waiting: ready. */
  allow_items (&gated, 2);
  WAIT_UNTIL (sluice_ordered_item_producer_is_ready (producer));

  finish_gated (producer, &gated, 6, 11);
}

/* skip-failed turned off by the consumer before it reaches a failed item:
 * the item ends the stream with its error, although the consumer's run of
 * items may have been taken from the buffer before the flag changed. */
typedef struct
{
  SluiceOrderedItemProducer *producer;
  guint skip_off_after; /* turn skip-failed off after taking this many */
  GArray *values;
  GError *error;
} SkipToggler;

static gpointer
consume_toggling_skip (SluiceConsumerator *consumerator, gpointer data, GError **error)
{
  SkipToggler *toggler = data;
  gpointer item;

  while (sluice_consumerator_next (consumerator, &item, &toggler->error))
    {
      g_array_append_val (toggler->values, ((Item *) item)->value);
      item_free (item);
      if (toggler->values->len == toggler->skip_off_after)
        sluice_ordered_item_producer_set_skip_failed (toggler->producer, FALSE);
    }
  return NULL;
}

static void
fail_now (SluiceSlot *slot, gpointer data)
{
  sluice_slot_fail (slot, g_error_new (G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "item %u failed",
                                       GPOINTER_TO_UINT (data)));
}

static void
test_skip_failed_read_when_reached (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) failed = g_array_new (FALSE, FALSE, sizeof (guint64));
  SkipToggler toggler = { NULL, 3, g_array_new (FALSE, FALSE, sizeof (guint64)), NULL };

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 16, item_free);
  toggler.producer = producer;
  sluice_ordered_item_producer_set_skip_failed (producer, TRUE);
  g_signal_connect (producer, "item-failed", G_CALLBACK (on_item_failed), failed);
  /* Every item complete before the consumer starts: it takes them in one
   * run. */
  for (guint i = 0; i < 10; i++)
    sluice_ordered_item_producer_produce (producer, i == 5 ? fail_now : complete_now,
                                          GUINT_TO_POINTER (i));
  sluice_ordered_item_producer_start (producer, consume_toggling_skip, &toggler, NULL, NULL);
  g_assert_null (stop_sync (producer, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_assert_cmpstr (error->message, ==, "item 5 failed");
  g_assert_error (toggler.error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_assert_cmpuint (toggler.values->len, ==, 5);
  for (guint i = 0; i < 5; i++)
    g_assert_cmpuint (g_array_index (toggler.values, guint64, i), ==, i);
  spin_main_context (20);
  g_assert_cmpuint (failed->len, ==, 0);
  assert_no_item_leaked ();
  g_clear_error (&toggler.error);
  g_array_unref (toggler.values);
}

/* --- the seed's failures --- */

typedef struct
{
  GPtrArray *slots;
} Reverse;

static void
keep_slot (SluiceSlot *slot, gpointer data)
{
  Reverse *reverse = data;

  g_ptr_array_add (reverse->slots, slot);
}

static void
test_reverse_order (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  Consumer *consumer = consumer_new ();
  guint n = sluice_test_scale (100000, 10);
  Reverse reverse = { g_ptr_array_new () };
  guint64 *count;

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, n, item_free);
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  for (guint i = 0; i < n; i++)
    sluice_ordered_item_producer_produce (producer, keep_slot, &reverse);
  g_assert_cmpuint (reverse.slots->len, ==, n);
  for (guint i = n; i-- > 0;)
    {
      SluiceSlot *slot = g_ptr_array_index (reverse.slots, i);

      g_assert_cmpuint (sluice_slot_get_sequence (slot), ==, i);
      sluice_slot_complete (slot, item_new (i));
    }
  count = stop_sync (producer, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (*count, ==, n);
  g_free (count);
  assert_values_in_order (consumer, 0, n);
  assert_no_item_leaked ();
  g_ptr_array_unref (reverse.slots);
  consumer_free (consumer);
}

static void expect_completed_twice (guint64 seq);

/* --- slot continuation: async first, blocking work second --- */

static int continuation_data_freed;

static void
continuation_data_free (gpointer data)
{
  g_atomic_int_inc (&continuation_data_freed);
}

static gpointer
square_in_thread (GCancellable *cancellable, gpointer data, GError **error)
{
  guint n = GPOINTER_TO_UINT (data);

  g_usleep (g_random_int_range (0, 300));
  if (n % 7 == 6)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "item %u failed", n);
      return NULL;
    }
  return item_new ((guint64) n * n);
}

typedef struct
{
  SluiceSlot *slot;
  guint n;
} Continuation;

static gboolean
continue_later (gpointer data)
{
  Continuation *continuation = data;

  sluice_slot_continue_in_thread (continuation->slot, square_in_thread,
                                  GUINT_TO_POINTER (continuation->n), continuation_data_free);
  g_free (continuation);
  return G_SOURCE_REMOVE;
}

/* The "I/O" completes on the main context after a random delay, then the
 * blocking half runs in the task queue. */
static void
read_then_square (SluiceSlot *slot, gpointer data)
{
  Continuation *continuation = g_new (Continuation, 1);

  continuation->slot = slot;
  continuation->n = GPOINTER_TO_UINT (data);
  g_timeout_add (g_random_int_range (0, 3), continue_later, continuation);
}

static void
test_slot_continue_in_thread (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GArray) failed = g_array_new (FALSE, FALSE, sizeof (guint64));
  Consumer *consumer = consumer_new ();
  guint n = 120;
  guint64 *count;

  reset_counts ();
  g_atomic_int_set (&continuation_data_freed, 0);
  producer = sluice_ordered_item_producer_new (NULL, 16, item_free);
  sluice_ordered_item_producer_set_skip_failed (producer, TRUE);
  g_signal_connect (producer, "item-failed", G_CALLBACK (on_item_failed), failed);
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  for (guint i = 0; i < n; i++)
    {
      while (!sluice_ordered_item_producer_is_ready (producer))
        g_main_context_iteration (NULL, TRUE);
      sluice_ordered_item_producer_produce (producer, read_then_square, GUINT_TO_POINTER (i));
    }
  count = stop_sync (producer, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (*count, ==, n - n / 7);
  g_free (count);
  for (guint i = 0, j = 0; i < n; i++)
    {
      if (i % 7 == 6)
        continue;
      g_assert_cmpuint (g_array_index (consumer->values, guint64, j), ==, (guint64) i * i);
      j++;
    }
  spin_main_context (20);
  g_assert_cmpuint (failed->len, ==, n / 7);
  g_assert_cmpint (g_atomic_int_get (&continuation_data_freed), ==, n);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

static gpointer
must_not_run (GCancellable *cancellable, gpointer data, GError **error)
{
  g_assert_not_reached ();
  return NULL;
}

/* A continuation of a stopped producer does not run: the item fails with
 * SLUICE_ERROR_STOPPED and the data is freed. A continuation of a slot
 * completed already is reported and its data freed. */
static void
test_slot_continue_after_stop (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  Reverse kept = { g_ptr_array_new () };
  Consumer *consumer = consumer_new ();

  reset_counts ();
  g_atomic_int_set (&continuation_data_freed, 0);
  producer = sluice_ordered_item_producer_new (NULL, 8, item_free);
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  sluice_ordered_item_producer_produce (producer, keep_slot, &kept);
  sluice_ordered_item_producer_produce (producer, keep_slot, &kept);
  sluice_push_producer_stop_producing (SLUICE_PUSH_PRODUCER (producer));
  sluice_slot_continue_in_thread (g_ptr_array_index (kept.slots, 0), must_not_run, NULL,
                                  continuation_data_free);
  WAIT_UNTIL (g_atomic_int_get (&continuation_data_freed) == 1);

  if (g_test_undefined ())
    {
      sluice_slot_complete (g_ptr_array_index (kept.slots, 1), item_new (1));
      expect_completed_twice (1);
      sluice_slot_continue_in_thread (g_ptr_array_index (kept.slots, 1), must_not_run, NULL,
                                      continuation_data_free);
      g_test_assert_expected_messages ();
      g_assert_cmpint (g_atomic_int_get (&continuation_data_freed), ==, 2);
    }
  else
    sluice_slot_complete (g_ptr_array_index (kept.slots, 1), item_new (1));

  WAIT_UNTIL (consumer->ended);
  g_assert_error (consumer->error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_ptr_array_unref (kept.slots);
  g_clear_object (&producer);
  spin_main_context (10);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

/* --- where callbacks and destroy notifies run --- */

static gpointer consume_nothing (SluiceConsumerator *consumerator, gpointer data, GError **error);

typedef struct
{
  gboolean in_call; /* a Sluice call of ours is running */
  int produce_callbacks;
  gboolean stop_called_back;
  SluiceSlot *slot;
  SluiceOrderedItemProducer *producer;
  GThread *destroy_thread;
} Reentrancy;

static void
reentrancy_produced (GObject *source, GAsyncResult *result, gpointer data)
{
  Reentrancy *r = data;
  g_autoptr (GError) error = NULL;

  g_assert_false (r->in_call);
  sluice_ordered_item_producer_produce_item_finish (SLUICE_ORDERED_ITEM_PRODUCER (source), result,
                                                    &error);
  r->produce_callbacks++;
}

static gboolean
reentrancy_complete (gpointer data)
{
  Reentrancy *r = data;

  r->in_call = TRUE;
  sluice_slot_complete (r->slot, item_new (0));
  r->in_call = FALSE;
  return G_SOURCE_REMOVE;
}

static void
reentrancy_stopped (GObject *source, GAsyncResult *result, gpointer data)
{
  Reentrancy *r = data;
  g_autoptr (GError) error = NULL;

  g_assert_false (r->in_call);
  g_assert_null (sluice_ordered_item_producer_stop_finish (SLUICE_ORDERED_ITEM_PRODUCER (source),
                                                           result, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  r->stop_called_back = TRUE;
}

static gboolean
reentrancy_stop_producing (gpointer data)
{
  Reentrancy *r = data;

  r->in_call = TRUE;
  sluice_push_producer_stop_producing (SLUICE_PUSH_PRODUCER (r->producer));
  sluice_slot_complete (r->slot, item_new (1));
  r->in_call = FALSE;
  return G_SOURCE_REMOVE;
}

static void
reentrancy_keep_slot (SluiceSlot *slot, gpointer data)
{
  ((Reentrancy *) data)->slot = slot;
}

static void
note_destroy_thread (gpointer data)
{
  ((Reentrancy *) data)->destroy_thread = g_thread_self ();
}

/* A produce callback does not run inside the slot completion that caused
 * it, nor a stop callback inside the stop_producing() that ended the
 * stream, even on the owner context and in a later main loop iteration;
 * the consumer function's data is released on the owner context. */
static void
test_callbacks_never_reentrant (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  Consumer *consumer = consumer_new ();
  Reentrancy r = { 0 };

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 8, item_free);
  r.producer = producer;
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  sluice_ordered_item_producer_produce_item (producer, reentrancy_keep_slot, &r, NULL, NULL,
                                             reentrancy_produced, &r);
  g_idle_add (reentrancy_complete, &r);
  WAIT_UNTIL (r.produce_callbacks == 1);

  /* A pending item holds the stop; stop_producing() on the owner context
   * and the completion of that item end it: neither callback may run
   * inside those calls. */
  sluice_ordered_item_producer_produce_item (producer, reentrancy_keep_slot, &r, NULL, NULL,
                                             reentrancy_produced, &r);
  sluice_ordered_item_producer_stop_async (producer, NULL, reentrancy_stopped, &r);
  g_idle_add (reentrancy_stop_producing, &r);
  WAIT_UNTIL (r.stop_called_back && r.produce_callbacks == 2);
  consumer_free (consumer);
  assert_no_item_leaked ();

  /* A consumer's data is released on the owner context. */
  g_clear_object (&producer);
  producer = sluice_ordered_item_producer_new (NULL, 8, item_free);
  sluice_ordered_item_producer_start (producer, consume_nothing, &r, note_destroy_thread, NULL);
  {
    g_autoptr (GError) error = NULL;

    g_assert_null (stop_sync (producer, &error));
    g_assert_no_error (error);
  }
  g_assert_true (r.destroy_thread == g_thread_self ());
}

/* --- consuming on the main loop (no consumer function) --- */

typedef struct
{
  SluiceConsumerator *consumerator;
  GArray *values;
  GError *error;
  gboolean ended;
  guint max_live;
  guint window;
} AsyncConsumer;

static void
async_consumer_next (GObject *source, GAsyncResult *result, gpointer data)
{
  AsyncConsumer *consumer = data;
  gpointer item = NULL;
  guint live = sluice_consumerator_get_n_items (consumer->consumerator);

  consumer->max_live = MAX (consumer->max_live, live);
  if (!sluice_consumerator_next_finish (consumer->consumerator, result, &item, &consumer->error))
    {
      consumer->ended = TRUE;
      return;
    }
  g_array_append_val (consumer->values, ((Item *) item)->value);
  item_free (item);
  sluice_consumerator_next_async (consumer->consumerator, NULL, async_consumer_next, consumer);
}

static gpointer
make_in_thread_slowly (GCancellable *cancellable, gpointer data, GError **error)
{
  g_usleep (g_random_int_range (0, 200));
  if (GPOINTER_TO_SIZE (data) == 151)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "item 151 failed");
      return NULL;
    }
  return item_new (GPOINTER_TO_SIZE (data));
}

static void
run_async_consumer (guint n, gboolean fail)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  AsyncConsumer consumer = {
    NULL, g_array_new (FALSE, FALSE, sizeof (guint64)), NULL, FALSE, 0, 8
  };

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, consumer.window, item_free);
  consumer.consumerator = sluice_ordered_item_producer_get_consumerator (producer);
  /* A request made before the start waits for it. */
  sluice_consumerator_next_async (consumer.consumerator, NULL, async_consumer_next, &consumer);
  sluice_ordered_item_producer_start (producer, NULL, NULL, NULL, NULL);
  for (gsize i = 0; i < n; i++)
    {
      while (!sluice_ordered_item_producer_is_ready (producer))
        g_main_context_iteration (NULL, TRUE);
      if (i % 3 == 0)
        sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (i));
      else
        sluice_ordered_item_producer_produce_in_thread (
            producer, fail ? make_in_thread_slowly : make_in_thread, GSIZE_TO_POINTER (i));
    }
  g_assert_null (stop_sync (producer, &error));
  g_assert_true (consumer.ended);
  g_assert_cmpuint (consumer.max_live, <=, consumer.window);
  if (fail)
    {
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
      g_assert_error (consumer.error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
      assert_array_in_order (consumer.values, 0, 151);
    }
  else
    {
      g_assert_no_error (error);
      g_assert_no_error (consumer.error);
      assert_array_in_order (consumer.values, 0, n);
    }

  /* The end again, at once, for a late request. */
  consumer.ended = FALSE;
  g_clear_error (&consumer.error);
  sluice_consumerator_next_async (consumer.consumerator, NULL, async_consumer_next, &consumer);
  WAIT_UNTIL (consumer.ended);
  if (fail)
    g_assert_error (consumer.error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  else
    g_assert_no_error (consumer.error);
  g_clear_error (&consumer.error);
  g_array_unref (consumer.values);
  g_clear_object (&producer);
  spin_main_context (10);
  assert_no_item_leaked ();
}

/* A request made before a start that never comes is answered by the stop
 * (the producer was never started), not left hanging. */
static void
test_next_async_stopped_unstarted (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  AsyncConsumer consumer = {
    NULL, g_array_new (FALSE, FALSE, sizeof (guint64)), NULL, FALSE, 0, 8
  };

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 8, item_free);
  consumer.consumerator = sluice_ordered_item_producer_get_consumerator (producer);
  sluice_consumerator_next_async (consumer.consumerator, NULL, async_consumer_next, &consumer);
  g_assert_null (stop_sync (producer, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_NOT_STARTED);
  WAIT_UNTIL (consumer.ended);
  g_assert_error (consumer.error, SLUICE_ERROR, SLUICE_ERROR_NOT_STARTED);
  g_clear_error (&consumer.error);
  g_array_unref (consumer.values);
}

static void
test_next_async_in_order (void)
{
  run_async_consumer (sluice_test_scale (2000, 10), FALSE);
}

static void
test_next_async_error (void)
{
  run_async_consumer (400, TRUE);
}

/* stop_producing() while a request waits: it gets SLUICE_ERROR_STOPPED,
 * the stop completes, later requests get the same at once. */
static void
test_next_async_stop_producing (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  Reverse kept = { g_ptr_array_new () };
  AsyncConsumer consumer = {
    NULL, g_array_new (FALSE, FALSE, sizeof (guint64)), NULL, FALSE, 0, 8
  };

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 8, item_free);
  consumer.consumerator = sluice_ordered_item_producer_get_consumerator (producer);
  sluice_ordered_item_producer_start (producer, NULL, NULL, NULL, NULL);
  sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (0));
  sluice_ordered_item_producer_produce (producer, keep_slot, &kept);
  sluice_consumerator_next_async (consumer.consumerator, NULL, async_consumer_next, &consumer);
  WAIT_UNTIL (consumer.values->len == 1);
  spin_main_context (10);
  sluice_push_producer_stop_producing (SLUICE_PUSH_PRODUCER (producer));
  WAIT_UNTIL (consumer.ended);
  g_assert_error (consumer.error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  sluice_slot_complete (g_ptr_array_index (kept.slots, 0), item_new (1));
  g_assert_null (stop_sync (producer, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);

  consumer.ended = FALSE;
  g_clear_error (&consumer.error);
  sluice_consumerator_next_async (consumer.consumerator, NULL, async_consumer_next, &consumer);
  WAIT_UNTIL (consumer.ended);
  g_assert_error (consumer.error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_clear_error (&consumer.error);
  g_array_unref (consumer.values);
  g_ptr_array_unref (kept.slots);
  g_clear_object (&producer);
  spin_main_context (10);
  assert_no_item_leaked ();
}

/* Cancelling the stop's cancellable aborts as stop_producing() does; the
 * stop and the consumer get G_IO_ERROR_CANCELLED. */
static void
test_stop_cancelled (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  g_autoptr (GError) error = NULL;
  GAsyncResult *result = NULL;
  Reverse kept = { g_ptr_array_new () };
  Consumer *consumer = consumer_new ();

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 8, item_free);
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (0));
  sluice_ordered_item_producer_produce (producer, keep_slot, &kept);
  sluice_ordered_item_producer_stop_async (producer, cancellable, store_result, &result);
  spin_main_context (10);
  g_assert_null (result); /* item 1 holds it */
  g_cancellable_cancel (cancellable);
  sluice_slot_complete (g_ptr_array_index (kept.slots, 0), item_new (1));
  g_assert_null (
      sluice_ordered_item_producer_stop_finish (producer, wait_result (&result), &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_true (consumer->ended);
  g_assert_error (consumer->error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_true (sluice_ordered_item_producer_is_closed (producer));
  g_object_unref (result);
  g_ptr_array_unref (kept.slots);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

/* --- waiting for room from a thread --- */

typedef struct
{
  SluiceOrderedItemProducer *producer;
  guint n;
  guint max_live;
  GCancellable *cancellable;
  GError *error;
  gboolean returned;
} Feeder;

static gpointer
feed_from_thread (gpointer data)
{
  Feeder *feeder = data;
  SluiceConsumerator *consumerator =
      sluice_ordered_item_producer_get_consumerator (feeder->producer);

  for (gsize i = 0; i < feeder->n; i++)
    {
      g_assert_true (
          sluice_ordered_item_producer_wait_ready (feeder->producer, NULL, &feeder->error));
      g_assert_true (sluice_ordered_item_producer_is_ready (feeder->producer));
      sluice_ordered_item_producer_produce_in_thread (feeder->producer, make_in_thread,
                                                      GSIZE_TO_POINTER (i));
      feeder->max_live = MAX (feeder->max_live, sluice_consumerator_get_n_items (consumerator));
    }
  return NULL;
}

/* A thread feeds the producer, waiting for room before each item, while
 * the owner context does not run at all: every item function runs (none
 * waits for the owner context), the window holds, the order too. */
static void
test_wait_ready_from_thread (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  Consumer *consumer = consumer_new ();
  Feeder feeder = { NULL, sluice_test_scale (5000, 10), 0, NULL, NULL, FALSE };
  gint64 deadline = deadline_from_now ();
  guint64 *count;

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 8, item_free);
  feeder.producer = producer;
  consumer->busy_loops = 2000;
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  g_thread_join (g_thread_new ("feeder", feed_from_thread, &feeder));
  g_assert_no_error (feeder.error);
  while (g_atomic_int_get (&items_allocated) < (int) feeder.n)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (1000);
    }
  g_assert_cmpuint (feeder.max_live, <=, 8);

  count = stop_sync (producer, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (*count, ==, feeder.n);
  g_free (count);
  assert_values_in_order (consumer, 0, feeder.n);

  /* Closed: no more waiting. */
  g_assert_false (sluice_ordered_item_producer_wait_ready (producer, NULL, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

static gpointer
wait_in_thread (gpointer data)
{
  Feeder *feeder = data;

  if (!sluice_ordered_item_producer_wait_ready (feeder->producer, feeder->cancellable,
                                                &feeder->error))
    g_atomic_int_set (&feeder->returned, TRUE);
  return NULL;
}

/* A wait on a full window ends with the cancellable, or with
 * stop_producing(), from another thread. */
static void
test_wait_ready_cancelled_or_stopped (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  Feeder feeder = { NULL, 0, 0, cancellable, NULL, FALSE };
  GThread *waiter;

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 4, item_free);
  feeder.producer = producer;
  for (gsize i = 0; i < 4; i++)
    sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (i));
  g_assert_false (sluice_ordered_item_producer_is_ready (producer));

  waiter = g_thread_new ("waiter", wait_in_thread, &feeder);
  g_usleep (10000);
  g_assert_false (g_atomic_int_get (&feeder.returned));
  g_cancellable_cancel (cancellable);
  g_thread_join (waiter);
  g_assert_true (feeder.returned);
  g_assert_error (feeder.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&feeder.error);

  feeder.cancellable = NULL;
  feeder.returned = FALSE;
  waiter = g_thread_new ("waiter", wait_in_thread, &feeder);
  g_usleep (10000);
  g_assert_false (g_atomic_int_get (&feeder.returned));
  sluice_push_producer_stop_producing (SLUICE_PUSH_PRODUCER (producer));
  g_thread_join (waiter);
  g_assert_true (feeder.returned);
  g_assert_error (feeder.error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_clear_error (&feeder.error);
  g_clear_object (&producer);
  spin_main_context (10);
  assert_no_item_leaked ();
}

/* wait_ready_async() from another thread's main loop: the callback runs
 * there, from its loop. */
typedef struct
{
  SluiceOrderedItemProducer *producer;
  GThread *callback_thread;
  gboolean ok;
  GError *error;
} AsyncWaiter;

static void
on_ready_waited (GObject *source, GAsyncResult *result, gpointer data)
{
  AsyncWaiter *waiter = data;

  waiter->callback_thread = g_thread_self ();
  waiter->ok = sluice_ordered_item_producer_wait_ready_finish (
      SLUICE_ORDERED_ITEM_PRODUCER (source), result, &waiter->error);
}

static gpointer
wait_async_in_thread (gpointer data)
{
  AsyncWaiter *waiter = data;
  GMainContext *context = g_main_context_new ();

  g_main_context_push_thread_default (context);
  sluice_ordered_item_producer_wait_ready_async (waiter->producer, NULL, on_ready_waited, waiter);
  g_assert_null (waiter->callback_thread); /* never from within the call */
  while (waiter->callback_thread == NULL)
    g_main_context_iteration (context, TRUE);
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);
  return NULL;
}

/* The main-loop wait: returns once a quarter of a full window is consumed,
 * at once (but from the loop) when ready, from the caller's context; a
 * cancellation or a stop ends it with an error. */
static void
test_wait_ready_async (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  g_autoptr (GError) error = NULL;
  Consumer *consumer = consumer_new ();
  Reverse kept = { g_ptr_array_new () };
  AsyncWaiter waiter = { 0 };
  GAsyncResult *result = NULL;
  GThread *thread;
  guint64 *count;

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 8, item_free);
  for (gsize i = 0; i < 8; i++)
    sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (i));
  g_assert_false (sluice_ordered_item_producer_is_ready (producer));

  /* Full: waits until the consumer makes room. */
  sluice_ordered_item_producer_wait_ready_async (producer, NULL, store_result, &result);
  spin_main_context (20);
  g_assert_null (result);
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  g_assert_true (
      sluice_ordered_item_producer_wait_ready_finish (producer, wait_result (&result), &error));
  g_assert_no_error (error);
  g_clear_object (&result);

  /* Ready: from another thread's loop, never within the call. */
  waiter.producer = producer;
  thread = g_thread_new ("async-waiter", wait_async_in_thread, &waiter);
  g_thread_join (thread);
  g_assert_true (waiter.callback_thread == thread);
  g_assert_true (waiter.ok);
  g_assert_no_error (waiter.error);

  /* Full of pending items: a cancellation ends the wait... */
  for (guint i = 0; i < 8; i++)
    sluice_ordered_item_producer_produce (producer, keep_slot, &kept);
  g_assert_false (sluice_ordered_item_producer_is_ready (producer));
  sluice_ordered_item_producer_wait_ready_async (producer, cancellable, store_result, &result);
  spin_main_context (20);
  g_assert_null (result);
  g_cancellable_cancel (cancellable);
  g_assert_false (
      sluice_ordered_item_producer_wait_ready_finish (producer, wait_result (&result), &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&error);
  g_clear_object (&result);

  /* ... and so does a stop. */
  sluice_ordered_item_producer_wait_ready_async (producer, NULL, store_result, &result);
  spin_main_context (20);
  g_assert_null (result);
  sluice_push_producer_stop_producing (SLUICE_PUSH_PRODUCER (producer));
  g_assert_false (
      sluice_ordered_item_producer_wait_ready_finish (producer, wait_result (&result), &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_clear_error (&error);
  g_clear_object (&result);

  for (guint i = 0; i < kept.slots->len; i++)
    sluice_slot_complete (g_ptr_array_index (kept.slots, i), item_new (100 + i));
  count = stop_sync (producer, &error);
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_free (count);
  g_ptr_array_unref (kept.slots);
  g_clear_object (&producer);
  spin_main_context (10);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

/* --- progress and stats --- */

typedef struct
{
  SluiceOrderedItemProducer *producer;
  guint n_notifies;
  guint64 last_consumed;
  guint64 last_failed;
} Progress;

static void
on_progress_notify (GObject *object, GParamSpec *pspec, gpointer data)
{
  Progress *progress = data;

  if (g_str_has_prefix (pspec->name, "n-"))
    g_assert_true (g_main_context_is_owner (g_main_context_default ()));
  if (g_str_equal (pspec->name, "n-consumed"))
    {
      progress->n_notifies++;
      g_object_get (object, "n-consumed", &progress->last_consumed, NULL);
    }
  else if (g_str_equal (pspec->name, "n-failed"))
    g_object_get (object, "n-failed", &progress->last_failed, NULL);
}

static gpointer
make_in_thread_or_fail (GCancellable *cancellable, gpointer data, GError **error)
{
  if (GPOINTER_TO_SIZE (data) % 100 == 7)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "item %zu failed",
                   GPOINTER_TO_SIZE (data));
      return NULL;
    }
  return make_in_thread (cancellable, data, error);
}

/* The counters are notified on the owner context, not per item: at most
 * ten times a second (plus the last), and end with the final figures. */
static void
test_progress_notified (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  Consumer *consumer = consumer_new ();
  Progress progress = { 0 };
  guint n = sluice_test_scale (20000, 20);
  guint64 produced, consumed, failed;
  guint live;
  gint64 start_time, elapsed_ms;
  guint64 *count;

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 64, item_free);
  sluice_ordered_item_producer_set_skip_failed (producer, TRUE);
  g_signal_connect (producer, "notify", G_CALLBACK (on_progress_notify), &progress);
  start_time = g_get_monotonic_time ();
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  for (gsize i = 0; i < n; i++)
    {
      while (!sluice_ordered_item_producer_is_ready (producer))
        g_main_context_iteration (NULL, TRUE);
      sluice_ordered_item_producer_produce_in_thread (producer, make_in_thread_or_fail,
                                                      GSIZE_TO_POINTER (i));
    }
  count = stop_sync (producer, &error);
  elapsed_ms = (g_get_monotonic_time () - start_time) / 1000;
  g_assert_no_error (error);
  g_assert_cmpuint (*count, ==, n - n / 100);
  g_free (count);

  g_object_get (producer, "n-produced", &produced, "n-consumed", &consumed, "n-failed", &failed,
                "n-live", &live, NULL);
  g_assert_cmpuint (produced, ==, n);
  g_assert_cmpuint (consumed, ==, n - n / 100);
  g_assert_cmpuint (failed, ==, n / 100);
  g_assert_cmpuint (live, ==, 0);
  /* The last notification carried the final figures. */
  g_assert_cmpuint (progress.last_consumed, ==, consumed);
  g_assert_cmpuint (progress.last_failed, ==, failed);
  g_test_message ("%u notifications of n-consumed in %" G_GINT64_FORMAT " ms for %u items",
                  progress.n_notifies, elapsed_ms, n);
  g_assert_cmpuint (progress.n_notifies, >=, 1);
  g_assert_cmpuint (progress.n_notifies, <=, elapsed_ms / 100 + 2);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

/* A slow head item holds the others back: the stats show it. */
static void
test_stats_head_of_line (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) stats = NULL;
  Reverse kept = { g_ptr_array_new () };
  Consumer *consumer = consumer_new ();
  guint64 head, n_consumed, n_waits, n_sleeps, n_spins;
  gint64 waited;
  guint n_live;

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 16, item_free);
  sluice_ordered_item_producer_produce (producer, keep_slot, &kept);
  for (gsize i = 1; i < 6; i++)
    sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (i));
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  /* The consumer waits for item 0. */
  WAIT_UNTIL (({
    g_autoptr (GVariant) s = sluice_ordered_item_producer_get_stats (producer);
    gint64 w = 0;

    g_variant_lookup (s, "head-wait-us", "x", &w);
    w > 0;
  }));
  stats = sluice_ordered_item_producer_get_stats (producer);
  g_assert_true (g_variant_is_of_type (stats, G_VARIANT_TYPE_VARDICT));
  g_assert_true (g_variant_lookup (stats, "head", "t", &head));
  g_assert_true (g_variant_lookup (stats, "head-wait-us", "x", &waited));
  g_assert_true (g_variant_lookup (stats, "n-live", "u", &n_live));
  g_assert_true (g_variant_lookup (stats, "n-consumed", "t", &n_consumed));
  g_assert_cmpuint (head, ==, 0);
  g_assert_cmpint (waited, >, 0);
  g_assert_cmpuint (n_live, ==, 6);
  g_assert_cmpuint (n_consumed, ==, 0);
  g_clear_pointer (&stats, g_variant_unref);

  sluice_slot_complete (g_ptr_array_index (kept.slots, 0), item_new (0));
  g_free (stop_sync (producer, &error));
  g_assert_no_error (error);
  stats = sluice_ordered_item_producer_get_stats (producer);
  g_assert_true (g_variant_lookup (stats, "head", "t", &head));
  g_assert_true (g_variant_lookup (stats, "head-wait-us", "x", &waited));
  g_assert_true (g_variant_lookup (stats, "n-consumed", "t", &n_consumed));
  g_assert_cmpuint (head, ==, 6);
  g_assert_cmpint (waited, ==, 0);
  g_assert_cmpuint (n_consumed, ==, 6);
  /* It waited for item 0 past any spin (the head wait shows only then);
   * a spin ends a wait without a sleep. */
  g_assert_true (g_variant_lookup (stats, "consumer-waits", "t", &n_waits));
  g_assert_true (g_variant_lookup (stats, "consumer-sleeps", "t", &n_sleeps));
  g_assert_true (g_variant_lookup (stats, "consumer-spins", "t", &n_spins));
  g_assert_cmpuint (n_waits, >=, 1);
  g_assert_cmpuint (n_spins, <, n_waits);
  g_ptr_array_unref (kept.slots);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

static guint64
stat_u64 (SluiceOrderedItemProducer *producer, const char *key)
{
  g_autoptr (GVariant) stats = sluice_ordered_item_producer_get_stats (producer);
  guint64 value = 0;

  g_assert_true (g_variant_lookup (stats, key, "t", &value));
  return value;
}

/* Window 1, the consumer asleep for the one item in flight, the owner
 * waiting for room (issue 19, latency_p50_1_us): completing the item, here
 * on the owner's own thread, takes it for the consumer and gives the owner
 * its room within the completion (the early room answer), without running
 * the owner's callbacks there: the owner is ready once its context
 * iterates. */
static void
test_early_room_answer (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  Consumer *consumer = consumer_new ();
  Reverse kept = { g_ptr_array_new () };

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 1, item_free);
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  sluice_ordered_item_producer_produce (producer, keep_slot, &kept);
  g_assert_false (sluice_ordered_item_producer_is_ready (producer));
  /* Counted under the buffer's lock, which the completion takes: by then
   * the consumer sleeps. */
  WAIT_UNTIL (stat_u64 (producer, "consumer-sleeps") >= 1);

  sluice_slot_complete (g_ptr_array_index (kept.slots, 0), item_new (0));
  g_assert_cmpuint (stat_u64 (producer, "early-room-answers"), ==, 1);
  while (!sluice_ordered_item_producer_is_ready (producer))
    g_main_context_iteration (NULL, TRUE);
  sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (1));
  g_free (stop_sync (producer, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (consumer->values->len, ==, 2);
  for (guint i = 0; i < 2; i++)
    g_assert_cmpuint (g_array_index (consumer->values, guint64, i), ==, i);
  g_ptr_array_unref (kept.slots);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

static gboolean
count_tick (gpointer data)
{
  (*(guint *) data)++;
  return G_SOURCE_CONTINUE;
}

/* The owner's adaptive spin for room (window below 8): items one at a
 * time, each completed at once, so its waits for room are short and it may
 * spin for them (how often is not asserted: on a busy machine spins fail).
 * Then the head item stays incomplete while the owner context iterates 200
 * times (a 1 ms timeout): that one wait spins at most once, whatever the
 * machine's speed, so an idle owner burns no processor. */
static void
test_owner_idle_no_spin (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  Consumer *consumer = consumer_new ();
  Reverse kept = { g_ptr_array_new () };
  guint n = sluice_test_scale (2000, 200);
  guint64 fails_before, fails_idle, spins, fails;
  guint ticks = 0;
  guint tick_id;

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 1, item_free);
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  for (gsize i = 0; i < n; i++)
    {
      while (!sluice_ordered_item_producer_is_ready (producer))
        g_main_context_iteration (NULL, TRUE);
      sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (i));
    }
  while (!sluice_ordered_item_producer_is_ready (producer))
    g_main_context_iteration (NULL, TRUE);

  /* Idle: the window is full with an item nobody completes. */
  sluice_ordered_item_producer_produce (producer, keep_slot, &kept);
  g_assert_false (sluice_ordered_item_producer_is_ready (producer));
  fails_before = stat_u64 (producer, "owner-spin-fails");
  tick_id = g_timeout_add (1, count_tick, &ticks);
  while (ticks < 200)
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (tick_id);
  fails_idle = stat_u64 (producer, "owner-spin-fails") - fails_before;
  g_assert_cmpuint (fails_idle, <=, 1);

  sluice_slot_complete (g_ptr_array_index (kept.slots, 0), item_new (n));
  g_free (stop_sync (producer, &error));
  g_assert_no_error (error);
  spins = stat_u64 (producer, "owner-spins");
  fails = stat_u64 (producer, "owner-spin-fails");
  g_test_message ("owner: %" G_GUINT64_FORMAT " spins, %" G_GUINT64_FORMAT
                  " failed spins (%" G_GUINT64_FORMAT " while idle) in %u waits",
                  spins, fails, fails_idle, n + 1);
  /* At most one spin per wait for room. */
  g_assert_cmpuint (spins + fails, <=, n + 1);
  g_assert_cmpuint (consumer->values->len, ==, n + 1);
  for (guint i = 0; i <= n; i++)
    g_assert_cmpuint (g_array_index (consumer->values, guint64, i), ==, i);
  g_ptr_array_unref (kept.slots);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

/* --- a slot completed twice --- */

static void
expect_completed_twice (guint64 seq)
{
  g_autofree char *pattern =
      g_strdup_printf ("*slot of item %" G_GUINT64_FORMAT " was already completed*", seq);

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, pattern);
}

/* Second completions before the item is consumed, after it, and after its
 * ring place was reused by later items: each is reported with the item's
 * sequence number and ignored; the first result stands, the second is
 * freed, and the later items are untouched. */
static void
test_slot_completed_twice (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  Consumer *consumer = consumer_new ();
  Reverse kept = { g_ptr_array_new () };
  SluiceSlot *first, *second, *late;
  guint64 *count;

  if (!g_test_undefined ())
    return;

  reset_counts ();
  /* A window of 2: ring places are reused every 2 items. */
  producer = sluice_ordered_item_producer_new (NULL, 2, item_free);
  sluice_ordered_item_producer_produce (producer, keep_slot, &kept);
  first = g_ptr_array_index (kept.slots, 0);
  sluice_slot_complete (first, item_new (0));

  /* Twice before the consumer took it. */
  expect_completed_twice (0);
  sluice_slot_complete (first, item_new (1000));
  g_test_assert_expected_messages ();
  expect_completed_twice (0);
  sluice_slot_fail (first, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_FAILED, "late"));
  g_test_assert_expected_messages ();

  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);

  /* Items 1-4 through the same two places; item 4 stays pending in the
   * place item 0 had. */
  for (guint i = 1; i <= 4; i++)
    {
      while (!sluice_ordered_item_producer_is_ready (producer))
        g_main_context_iteration (NULL, TRUE);
      sluice_ordered_item_producer_produce (producer, keep_slot, &kept);
      if (i < 4)
        sluice_slot_complete (g_ptr_array_index (kept.slots, i), item_new (i));
    }
  second = g_ptr_array_index (kept.slots, 1);
  late = g_ptr_array_index (kept.slots, 4);
  g_assert_cmpuint (sluice_slot_get_sequence (late), ==, 4);

  /* Item 0's slot, its place now item 4's: the old handle is stale. */
  expect_completed_twice (0);
  sluice_slot_complete (first, item_new (2000));
  g_test_assert_expected_messages ();
  expect_completed_twice (0);
  g_assert_null (sluice_slot_get_cancellable (first));
  g_test_assert_expected_messages ();
  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*slot of item 0 was already completed*");
  g_assert_cmpuint (sluice_slot_get_sequence (first), ==, 0);
  g_test_assert_expected_messages ();
  /* Item 1's slot, consumed (or about to be). */
  expect_completed_twice (1);
  sluice_slot_complete (second, item_new (3000));
  g_test_assert_expected_messages ();

  sluice_slot_complete (late, item_new (4));
  count = stop_sync (producer, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (*count, ==, 5);
  g_free (count);
  assert_values_in_order (consumer, 0, 5);
  assert_no_item_leaked ();
  g_ptr_array_unref (kept.slots);
  consumer_free (consumer);
}

/* Two threads complete every slot at the same moment (issue 12): exactly
 * one result reaches the consumer, in order, the other is reported and
 * freed, whichever thread comes first. How often the two truly overlap
 * depends on the machine's load; test-reorder-buffer's /claims makes each
 * interleaving by hand. */
static int race_criticals;

static void
count_critical (const char *domain, GLogLevelFlags level, const char *message, gpointer data)
{
  if (strstr (message, "was already completed") != NULL)
    g_atomic_int_inc (&race_criticals);
  else
    g_log_default_handler (domain, level, message, data);
}

typedef struct
{
  GPtrArray *slots;
  int *arrived; /* per slot: the racers there; both go once both are */
} Racer;

static gpointer
race_completions (gpointer data)
{
  Racer *racer = data;

  for (guint i = 0; i < racer->slots->len; i++)
    {
      guint spins = 0;

      g_atomic_int_inc (&racer->arrived[i]);
      while (g_atomic_int_get (&racer->arrived[i]) < 2)
        if (++spins % 64 == 0)
          g_thread_yield ();
      /* Leaving the rendezvous takes the later racer a cache miss: a
       * random delay lets either be first, and sometimes both at once. */
      for (volatile guint d = g_random_int_range (0, 48); d > 0; d--)
        ;
      sluice_slot_complete (g_ptr_array_index (racer->slots, i), item_new (i));
    }
  return NULL;
}

static void
test_slot_completed_twice_at_once (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  Consumer *consumer = consumer_new ();
  guint n = sluice_test_scale (50000, 10);
  Reverse kept = { g_ptr_array_new () };
  Racer racer = { kept.slots, g_new0 (int, n) };
  GThread *threads[2];
  GLogLevelFlags fatal;
  guint handler;
  guint64 *count;

  reset_counts ();
  g_atomic_int_set (&race_criticals, 0);
  producer = sluice_ordered_item_producer_new (NULL, n, item_free);
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  for (guint i = 0; i < n; i++)
    sluice_ordered_item_producer_produce (producer, keep_slot, &kept);

  /* The reports come from both threads: count them instead of expecting. */
  fatal = g_log_set_always_fatal (G_LOG_FATAL_MASK);
  handler = g_log_set_handler ("Sluice", G_LOG_LEVEL_CRITICAL, count_critical, NULL);
  for (guint t = 0; t < 2; t++)
    threads[t] = g_thread_new ("racer", race_completions, &racer);
  for (guint t = 0; t < 2; t++)
    g_thread_join (threads[t]);
  g_log_remove_handler ("Sluice", handler);
  g_log_set_always_fatal (fatal);
  g_free (racer.arrived);

  g_assert_cmpint (g_atomic_int_get (&race_criticals), ==, n);
  count = stop_sync (producer, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (*count, ==, n);
  g_free (count);
  assert_values_in_order (consumer, 0, n);
  g_assert_cmpint (g_atomic_int_get (&items_allocated), ==, 2 * n);
  assert_no_item_leaked ();
  g_ptr_array_unref (kept.slots);
  consumer_free (consumer);
}

/* --- dispose with work in flight --- */

static gpointer
complete_slots_later (gpointer data)
{
  GPtrArray *slots = data;

  g_usleep (20000);
  for (guint i = 0; i < slots->len; i++)
    sluice_slot_complete (g_ptr_array_index (slots, i), item_new (i));
  g_ptr_array_unref (slots);
  return NULL;
}

static void
test_dispose_in_flight (void)
{
  SluiceOrderedItemProducer *producer;
  Reverse pending = { g_ptr_array_new () };
  GThread *thread;

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 64, item_free);
  /* Buffered (complete) items, then pending ones, then work in the pool. */
  for (guint i = 0; i < 10; i++)
    sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (i));
  for (guint i = 0; i < 10; i++)
    sluice_ordered_item_producer_produce (producer, keep_slot, &pending);
  for (guint i = 0; i < 10; i++)
    sluice_ordered_item_producer_produce_in_thread (producer, make_in_thread, GSIZE_TO_POINTER (i));
  thread = g_thread_new ("completer", complete_slots_later, g_ptr_array_ref (pending.slots));
  g_object_unref (producer);
  g_thread_join (thread);

  /* Let the pool finish what it had. */
  WAIT_UNTIL (sluice_task_queue_get_n_pending (sluice_task_queue_get_default ()) +
                  sluice_task_queue_get_n_running (sluice_task_queue_get_default ()) ==
              0);
  spin_main_context (10);
  assert_no_item_leaked ();
  g_ptr_array_unref (pending.slots);
}

static void
test_dispose_running (void)
{
  SluiceOrderedItemProducer *producer;
  Consumer *consumer = consumer_new ();
  GWeakRef weak;

  reset_counts ();
  producer = sluice_ordered_item_producer_new (NULL, 64, item_free);
  g_weak_ref_init (&weak, producer);
  sluice_ordered_item_producer_start (producer, consume, consumer, NULL, g_free);
  for (guint i = 0; i < 10; i++)
    sluice_ordered_item_producer_produce (producer, complete_now, GSIZE_TO_POINTER (i));
  /* Dropped without a stop: the consumer is told to stop and ends. */
  g_object_unref (producer);
  WAIT_UNTIL (consumer->ended);
  spin_main_context (20);
  g_assert_null (g_weak_ref_get (&weak));
  g_weak_ref_clear (&weak);
  assert_no_item_leaked ();
  consumer_free (consumer);
}

/* --- programmer errors --- */

static gpointer
consume_nothing (SluiceConsumerator *consumerator, gpointer data, GError **error)
{
  gpointer item;

  while (sluice_consumerator_next (consumerator, &item, error))
    item_free (item);
  return NULL;
}

static void
test_programmer_errors (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GError) error = NULL;
  GError *late_error = NULL;

  if (!g_test_undefined ())
    return;

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*assertion*window > 0*failed*");
  g_assert_null (sluice_ordered_item_producer_new (NULL, 0, NULL));
  g_test_assert_expected_messages ();

  producer = sluice_ordered_item_producer_new (NULL, 4, item_free);

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*assertion*func != NULL*failed*");
  sluice_ordered_item_producer_produce (producer, NULL, NULL);
  g_test_assert_expected_messages ();

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*assertion*func != NULL*failed*");
  sluice_ordered_item_producer_produce_item_in_thread (producer, NULL, NULL, NULL, 0, NULL, NULL,
                                                       NULL);
  g_test_assert_expected_messages ();

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL,
                         "*assertion*SLUICE_IS_ORDERED_ITEM_PRODUCER*failed*");
  sluice_ordered_item_producer_start (NULL, consume_nothing, NULL, NULL, NULL);
  g_test_assert_expected_messages ();

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL,
                         "*assertion*microseconds <= G_MAXINT*failed*");
  sluice_ordered_item_producer_set_wake_latency (producer, G_MAXUINT);
  g_test_assert_expected_messages ();
  g_assert_cmpuint (sluice_ordered_item_producer_get_wake_latency (producer), ==, 5000);

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*assertion*slot != NULL*failed*");
  sluice_slot_complete (NULL, NULL);
  g_test_assert_expected_messages ();

  sluice_ordered_item_producer_start (producer, consume_nothing, NULL, NULL, NULL);
  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL,
                         "*assertion*state == STATE_CREATED*failed*");
  sluice_ordered_item_producer_start (producer, consume_nothing, NULL, NULL, NULL);
  g_test_assert_expected_messages ();

  g_assert_null (stop_sync (producer, &error));
  g_assert_no_error (error);

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*assertion*!self->stop_called*failed*");
  sluice_ordered_item_producer_start (producer, consume_nothing, NULL, NULL, NULL);
  g_test_assert_expected_messages ();

  /* Not a programmer error: a produce call after the stop. */
  sluice_ordered_item_producer_produce_item (producer, complete_now, NULL, NULL, NULL, produce_done,
                                             &late_error);
  wait_result ((GAsyncResult **) &late_error);
  g_assert_error (late_error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_clear_error (&late_error);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/producer/order/mixed-sources", test_mixed_sources);
  g_test_add_func ("/producer/order/reverse", test_reverse_order);
  g_test_add_func ("/producer/stop/result", test_stop_returns_result);
  g_test_add_func ("/producer/stop/before-any-item", test_stop_before_any_item);
  g_test_add_func ("/producer/stop/twice", test_stop_twice);
  g_test_add_func ("/producer/stop/not-started", test_stop_not_started);
  g_test_add_func ("/producer/stop/cancelled", test_stop_cancelled);
  g_test_add_func ("/producer/error/middle", test_item_error_in_middle);
  g_test_add_func ("/producer/error/skip-failed", test_item_error_skipped);
  g_test_add_func ("/producer/consumer/returns-early", test_consumer_returns_early);
  g_test_add_func ("/producer/consumer/fails", test_consumer_fails);
  g_test_add_func ("/producer/pause", test_pause_holds_delivery);
  g_test_add_func ("/producer/stop-producing", test_stop_producing);
  g_test_add_func ("/producer/item-cancellable", test_item_cancellable);
  g_test_add_func ("/producer/flow/upstream-and-ready", test_flow_control);
  g_test_add_func ("/producer/flow/window-full-defers", test_window_full_defers);
  g_test_add_func ("/producer/flow/ready-hysteresis", test_ready_hysteresis);
  g_test_add_func ("/producer/flow/room-refilled-elsewhere", test_room_refilled_elsewhere);
  g_test_add_func ("/producer/flow/closed-wakes-waiters", test_closed_wakes_waiters);
  g_test_add_func ("/producer/flow/wait-ready-from-thread", test_wait_ready_from_thread);
  g_test_add_func ("/producer/flow/wait-ready-cancelled-or-stopped",
                   test_wait_ready_cancelled_or_stopped);
  g_test_add_func ("/producer/flow/waiting-call-starts-at-first-place",
                   test_waiting_call_starts_at_first_place);
  g_test_add_func ("/producer/flow/waiting-calls-one-per-place", test_waiting_calls_one_per_place);
  g_test_add_func ("/producer/error/skip-failed-read-when-reached",
                   test_skip_failed_read_when_reached);
  g_test_add_func ("/producer/flow/wait-ready-async", test_wait_ready_async);
  g_test_add_func ("/producer/slot/completed-twice", test_slot_completed_twice);
  g_test_add_func ("/producer/slot/completed-twice-at-once", test_slot_completed_twice_at_once);
  g_test_add_func ("/producer/progress/notified", test_progress_notified);
  g_test_add_func ("/producer/progress/stats-head-of-line", test_stats_head_of_line);
  g_test_add_func ("/producer/owner-idle-no-spin", test_owner_idle_no_spin);
  g_test_add_func ("/producer/early-room-answer", test_early_room_answer);
  g_test_add_func ("/producer/next-async/in-order", test_next_async_in_order);
  g_test_add_func ("/producer/next-async/error", test_next_async_error);
  g_test_add_func ("/producer/next-async/stop-producing", test_next_async_stop_producing);
  g_test_add_func ("/producer/next-async/stopped-unstarted", test_next_async_stopped_unstarted);
  g_test_add_func ("/producer/callbacks/never-reentrant", test_callbacks_never_reentrant);
  g_test_add_func ("/producer/slot/continue-in-thread", test_slot_continue_in_thread);
  g_test_add_func ("/producer/slot/continue-after-stop", test_slot_continue_after_stop);
  g_test_add_func ("/producer/dispose/in-flight", test_dispose_in_flight);
  g_test_add_func ("/producer/dispose/running", test_dispose_running);
  g_test_add_func ("/producer/programmer-errors", test_programmer_errors);

  return g_test_run ();
}
