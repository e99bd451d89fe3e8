/* test-values.c: GValue items, the form language bindings use
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The same semantics as test-ordered-item-producer.c, through
 * sluice_ordered_item_producer_new_for_values(), sluice_slot_complete_value(),
 * sluice_ordered_item_producer_produce_value_in_thread(),
 * sluice_ordered_item_producer_start_values(),
 * sluice_consumerator_next_value() and friends; run under valgrind too, so
 * that every value is unset exactly once.
 */

#include <sluice/sluice.h>

#include "sluice-test-util.h"

/* --- the consumer --- */

typedef struct
{
  GPtrArray *strings; /* what arrived, as text: "s:…", "u:…", "o:…", "null" */
  GError *error;
} Received;

static void
consume_values (SluiceConsumerator *consumerator,
                GValue *result,
                gpointer user_data,
                GError **error)
{
  Received *received = user_data;
  GValue value = G_VALUE_INIT;

  while (sluice_consumerator_next_value (consumerator, &value, error))
    {
      if (G_VALUE_HOLDS_STRING (&value))
        g_ptr_array_add (received->strings, g_strdup_printf ("s:%s", g_value_get_string (&value)));
      else if (G_VALUE_HOLDS_UINT (&value))
        g_ptr_array_add (received->strings, g_strdup_printf ("u:%u", g_value_get_uint (&value)));
      else if (G_VALUE_HOLDS_OBJECT (&value))
        g_ptr_array_add (
            received->strings,
            g_strdup_printf ("o:%s", G_OBJECT_TYPE_NAME (g_value_get_object (&value))));
      else if (G_VALUE_HOLDS_POINTER (&value) && g_value_get_pointer (&value) == NULL)
        g_ptr_array_add (received->strings, g_strdup ("null"));
      else
        g_ptr_array_add (received->strings, g_strdup (G_VALUE_TYPE_NAME (&value)));
      g_value_unset (&value);
    }
  /* At the end the value holds a NULL pointer, which owns nothing. */
  g_assert_true (G_VALUE_HOLDS_POINTER (&value));
  g_assert_null (g_value_get_pointer (&value));
  g_value_unset (&value);

  if (*error != NULL)
    {
      received->error = g_error_copy (*error);
      return;
    }
  g_value_init (result, G_TYPE_UINT);
  g_value_set_uint (result, received->strings->len);
}

static Received *
received_new (void)
{
  Received *received = g_new0 (Received, 1);

  received->strings = g_ptr_array_new_with_free_func (g_free);
  return received;
}

static void
received_free (gpointer data)
{
  Received *received = data;

  g_ptr_array_unref (received->strings);
  g_clear_error (&received->error);
  g_free (received);
}

static void
store_result (GObject *source, GAsyncResult *result, gpointer data)
{
  GAsyncResult **slot = data;

  *slot = g_object_ref (result);
}

static GValue *
stop_and_wait (SluiceOrderedItemProducer *producer, GError **error)
{
  GAsyncResult *result = NULL;
  GValue *value;
  gint64 deadline = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;

  sluice_ordered_item_producer_stop_async (producer, NULL, store_result, &result);
  while (result == NULL && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_assert_nonnull (result);
  value = sluice_ordered_item_producer_stop_finish_value (producer, result, error);
  g_object_unref (result);
  return value;
}

/* --- item functions --- */

typedef struct
{
  GValue value;
  guint delay_us;
} Later;

static void
later_free (gpointer data)
{
  Later *later = data;

  g_value_unset (&later->value);
  g_free (later);
}

/* Completes the slot from a thread of its own after a delay, with a copy of
 * the value. */
typedef struct
{
  SluiceSlot *slot;
  Later *later;
} LaterRun;

static gpointer
later_run (gpointer data)
{
  LaterRun *run = data;

  g_usleep (run->later->delay_us);
  sluice_slot_complete_value (run->slot,
                              G_IS_VALUE (&run->later->value) ? &run->later->value : NULL);
  later_free (run->later);
  g_free (run);
  return NULL;
}

static void
item_later (SluiceSlot *slot, gpointer data)
{
  LaterRun *run = g_new (LaterRun, 1);

  run->slot = slot;
  run->later = data;
  g_thread_unref (g_thread_new ("item", later_run, run));
}

static Later *
later_string (const char *s, guint delay_us)
{
  Later *later = g_new0 (Later, 1);

  g_value_init (&later->value, G_TYPE_STRING);
  g_value_set_string (&later->value, s);
  later->delay_us = delay_us;
  return later;
}

static void
value_in_thread (GCancellable *cancellable, GValue *value, gpointer data, GError **error)
{
  guint n = GPOINTER_TO_UINT (data);

  g_usleep ((20 - n) * 500);
  if (n == 13)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "item %u failed", n);
      return;
    }
  if (n % 5 == 0)
    return; /* no value: a NULL pointer */
  g_value_init (value, G_TYPE_UINT);
  g_value_set_uint (value, n);
}

/* --- tests --- */

static void
test_values_in_call_order (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer =
      sluice_ordered_item_producer_new_for_values (NULL, 8);
  Received *received = received_new ();
  g_autoptr (GError) error = NULL;
  GValue *result;

  sluice_ordered_item_producer_start_values (producer, consume_values, received, NULL);
  for (guint n = 0; n < 10; n++)
    {
      if (n % 2 == 0)
        {
          g_autofree char *s = g_strdup_printf ("%u", n);

          /* Later ones finish first. */
          /* The thread frees the data: it outlives the item function. */
          sluice_ordered_item_producer_produce_item (
              producer, item_later, later_string (s, (10 - n) * 1000), NULL, NULL, NULL, NULL);
        }
      else
        sluice_ordered_item_producer_produce_value_in_thread (producer, value_in_thread,
                                                              GUINT_TO_POINTER (n), NULL,
                                                              G_PRIORITY_DEFAULT, NULL, NULL, NULL);
    }
  result = stop_and_wait (producer, &error);
  g_assert_no_error (error);
  g_assert_nonnull (result);
  g_assert_true (G_VALUE_HOLDS_UINT (result));
  g_assert_cmpuint (g_value_get_uint (result), ==, 10);
  g_boxed_free (G_TYPE_VALUE, result);

  {
    const char *expected[] = {
      "s:0", "u:1", "s:2", "u:3", "s:4", "null", "s:6", "u:7", "s:8", "u:9"
    };

    g_assert_cmpuint (received->strings->len, ==, G_N_ELEMENTS (expected));
    for (guint i = 0; i < G_N_ELEMENTS (expected); i++)
      g_assert_cmpstr (received->strings->pdata[i], ==, expected[i]);
  }
  received_free (received);
}

static void
test_value_error_in_order (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer =
      sluice_ordered_item_producer_new_for_values (NULL, 32);
  Received *received = received_new ();
  g_autoptr (GError) error = NULL;
  GValue *result;

  sluice_ordered_item_producer_start_values (producer, consume_values, received, received_free);
  for (guint n = 11; n < 20; n++)
    sluice_ordered_item_producer_produce_value_in_thread (producer, value_in_thread,
                                                          GUINT_TO_POINTER (n), NULL,
                                                          G_PRIORITY_DEFAULT, NULL, NULL, NULL);
  result = stop_and_wait (producer, &error);
  g_assert_null (result);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_assert_cmpstr (error->message, ==, "item 13 failed");
}

static void
check_error_seen (SluiceConsumerator *consumerator,
                  GValue *result,
                  gpointer user_data,
                  GError **error)
{
  Received *received = user_data;

  consume_values (consumerator, result, received, error);
  /* Items 11 and 12, then the error. */
  g_assert_cmpuint (received->strings->len, ==, 2);
  g_assert_cmpstr (received->strings->pdata[0], ==, "u:11");
  g_assert_cmpstr (received->strings->pdata[1], ==, "u:12");
  g_assert_error (received->error, G_IO_ERROR, G_IO_ERROR_FAILED);
}

static void
test_value_error_seen_by_consumer (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer =
      sluice_ordered_item_producer_new_for_values (NULL, 32);
  g_autoptr (GError) error = NULL;

  sluice_ordered_item_producer_start_values (producer, check_error_seen, received_new (),
                                             received_free);
  for (guint n = 11; n < 20; n++)
    sluice_ordered_item_producer_produce_value_in_thread (producer, value_in_thread,
                                                          GUINT_TO_POINTER (n), NULL,
                                                          G_PRIORITY_DEFAULT, NULL, NULL, NULL);
  g_assert_null (stop_and_wait (producer, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_FAILED);
}

static void
complete_with_object (SluiceSlot *slot, gpointer data)
{
  GValue value = G_VALUE_INIT;

  g_value_init (&value, G_TYPE_OBJECT);
  g_value_set_object (&value, data);
  sluice_slot_complete_value (slot, &value); /* takes a copy: its own reference */
  g_value_unset (&value);
}

static void
test_unconsumed_values_released (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer =
      sluice_ordered_item_producer_new_for_values (NULL, 8);
  g_autoptr (GError) error = NULL;
  GObject *objects[4];

  for (guint i = 0; i < G_N_ELEMENTS (objects); i++)
    {
      objects[i] = g_object_new (G_TYPE_OBJECT, NULL);
      g_object_add_weak_pointer (objects[i], (gpointer *) &objects[i]);
      sluice_ordered_item_producer_produce_item (producer, complete_with_object, objects[i], NULL,
                                                 NULL, NULL, NULL);
      g_object_unref (objects[i]); /* the buffer's copy keeps it alive */
      g_assert_nonnull (objects[i]);
    }

  g_assert_null (stop_and_wait (producer, &error)); /* never started */
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_NOT_STARTED);
  for (guint i = 0; i < G_N_ELEMENTS (objects); i++)
    g_assert_null (objects[i]);
}

static gpointer
push_strings (gpointer data)
{
  SluiceConsumerator *consumerator = data;
  GValue value = G_VALUE_INIT;

  g_value_init (&value, G_TYPE_STRING);
  for (guint i = 0; i < 100; i++)
    {
      g_autofree char *s = g_strdup_printf ("%u", i);

      g_value_set_string (&value, s);
      g_assert_true (sluice_consumerator_push_value (consumerator, &value, NULL));
    }
  g_value_unset (&value);
  g_assert_true (sluice_consumerator_push_value (consumerator, NULL, NULL));
  sluice_consumerator_close (consumerator, NULL);
  return NULL;
}

static void
test_standalone_values (void)
{
  g_autoptr (SluiceConsumerator) consumerator = sluice_consumerator_new_for_values (4);
  GThread *pusher = g_thread_new ("pusher", push_strings, consumerator);
  GValue value = G_VALUE_INIT;
  g_autoptr (GError) error = NULL;
  guint n = 0;

  while (sluice_consumerator_next_value (consumerator, &value, &error))
    {
      if (n < 100)
        {
          g_autofree char *s = g_strdup_printf ("%u", n);

          g_assert_cmpstr (g_value_get_string (&value), ==, s);
        }
      else
        g_assert_true (G_VALUE_HOLDS_POINTER (&value));
      g_value_unset (&value);
      n++;
    }
  g_assert_no_error (error);
  g_assert_cmpuint (n, ==, 101);
  g_thread_join (pusher);

  /* Every call sets the value, the last one to a NULL pointer. */
  g_assert_true (G_VALUE_HOLDS_POINTER (&value));
  g_value_unset (&value);

  /* Pushing after the close fails and frees nothing of the caller's. */
  g_value_init (&value, G_TYPE_STRING);
  g_value_set_static_string (&value, "late");
  g_assert_false (sluice_consumerator_push_value (consumerator, &value, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_cmpstr (g_value_get_string (&value), ==, "late");
  g_value_unset (&value);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/values/call-order", test_values_in_call_order);
  g_test_add_func ("/values/error-in-order", test_value_error_in_order);
  g_test_add_func ("/values/error-seen-by-consumer", test_value_error_seen_by_consumer);
  g_test_add_func ("/values/unconsumed-released", test_unconsumed_values_released);
  g_test_add_func ("/values/standalone", test_standalone_values);

  return g_test_run ();
}
