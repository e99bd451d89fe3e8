/* test-stress.c: a million items completed in random order from many threads
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <sluice/sluice.h>

#include "sluice-test-util.h"

#define N_COMPLETERS 2
#define SHUFFLE_MAX 16

typedef struct
{
  SluiceOrderedItemProducer *producer;
  GAsyncQueue *slots;
  guint window;
  guint max_n_items;
  gboolean in_produce_call;
  guint deferred; /* item functions not run within their produce call */
  gboolean done;
} Stress;

typedef struct
{
  guint64 count;
  guint64 sum;
  guint64 first_bad; /* G_MAXUINT64 when all were in order */
} Tally;

/* Completer threads: take slots as they come, keep a few, and complete them
 * in a shuffled order, now and then after a short sleep. */
static gpointer
completer (gpointer data)
{
  Stress *stress = data;
  SluiceSlot *held[SHUFFLE_MAX];
  guint n_held = 0;
  GRand *rand = g_rand_new ();

  for (;;)
    {
      SluiceSlot *slot = g_async_queue_pop (stress->slots);
      guint keep = g_rand_int_range (rand, 1, SHUFFLE_MAX + 1);
      gboolean quit = slot == GINT_TO_POINTER (1);

      /* Take what is queued, up to a random hand size; never wait with
       * slots in hand (the owner may be waiting for room). */
      while (!quit && slot != NULL)
        {
          held[n_held++] = slot;
          if (n_held >= keep)
            break;
          slot = g_async_queue_try_pop (stress->slots);
          quit = slot == GINT_TO_POINTER (1);
        }

      while (n_held > 0)
        {
          guint pick = g_rand_int_range (rand, 0, n_held);
          SluiceSlot *done = held[pick];
          guint64 seq = sluice_slot_get_sequence (done);

          held[pick] = held[--n_held];
          if (g_rand_int_range (rand, 0, 64) == 0)
            g_usleep (g_rand_int_range (rand, 0, 20));
          sluice_slot_complete (done, GSIZE_TO_POINTER (seq + 1));
        }
      if (quit)
        break;
    }
  g_assert_cmpuint (n_held, ==, 0);
  g_rand_free (rand);
  return NULL;
}

static void
hand_to_completers (SluiceSlot *slot, gpointer data)
{
  Stress *stress = data;
  guint n_items = sluice_consumerator_get_n_items (
      sluice_ordered_item_producer_get_consumerator (stress->producer));

  stress->max_n_items = MAX (stress->max_n_items, n_items);
  if (!stress->in_produce_call)
    stress->deferred++;
  g_async_queue_push (stress->slots, slot);
}

static gpointer
in_thread (GCancellable *cancellable, gpointer data, GError **error)
{
  return data;
}

static gpointer
tally (SluiceConsumerator *consumerator, gpointer data, GError **error)
{
  Tally *tally = g_new0 (Tally, 1);
  gpointer item;

  tally->first_bad = G_MAXUINT64;
  while (sluice_consumerator_next (consumerator, &item, error))
    {
      guint64 value = GPOINTER_TO_SIZE (item);

      if (value != tally->count + 1 && tally->first_bad == G_MAXUINT64)
        tally->first_bad = tally->count;
      tally->count++;
      tally->sum += value;
    }
  return tally;
}

static void
stopped (GObject *source, GAsyncResult *result, gpointer data)
{
  GAsyncResult **out = data;

  *out = g_object_ref (result);
}

static void
run_stress (guint n, guint window, guint thread_every, guint wake_latency_us)
{
  Stress stress = { 0 };
  GThread *threads[N_COMPLETERS];
  GAsyncResult *result = NULL;
  g_autoptr (GError) error = NULL;
  Tally *t;

  stress.window = window;
  stress.slots = g_async_queue_new ();
  stress.producer = sluice_ordered_item_producer_new (NULL, window, NULL);
  sluice_ordered_item_producer_set_wake_latency (stress.producer, wake_latency_us);
  g_assert_cmpuint (sluice_ordered_item_producer_get_wake_latency (stress.producer), ==,
                    wake_latency_us);
  for (guint i = 0; i < N_COMPLETERS; i++)
    threads[i] = g_thread_new ("completer", completer, &stress);
  sluice_ordered_item_producer_start (stress.producer, tally, NULL, NULL, g_free);

  for (guint i = 0; i < n; i++)
    {
      while (!sluice_ordered_item_producer_is_ready (stress.producer))
        g_main_context_iteration (NULL, TRUE);
      if (thread_every > 0 && i % thread_every == 0)
        sluice_ordered_item_producer_produce_item_in_thread (stress.producer, in_thread,
                                                             GSIZE_TO_POINTER ((gsize) i + 1), NULL,
                                                             G_PRIORITY_DEFAULT, NULL, NULL, NULL);
      else
        {
          stress.in_produce_call = TRUE;
          sluice_ordered_item_producer_produce_item (stress.producer, hand_to_completers, &stress,
                                                     NULL, NULL, NULL, NULL);
          stress.in_produce_call = FALSE;
        }
    }

  sluice_ordered_item_producer_stop_async (stress.producer, stopped, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  t = sluice_ordered_item_producer_stop_finish (stress.producer, result, &error);
  g_assert_no_error (error);
  g_object_unref (result);

  for (guint i = 0; i < N_COMPLETERS; i++)
    g_async_queue_push (stress.slots, GINT_TO_POINTER (1));
  for (guint i = 0; i < N_COMPLETERS; i++)
    g_thread_join (threads[i]);

  g_test_message ("%u items, window %u: max live %u, deferred %u", n, window, stress.max_n_items,
                  stress.deferred);
  g_assert_cmpuint (t->first_bad, ==, G_MAXUINT64);
  g_assert_cmpuint (t->count, ==, n);
  g_assert_cmpuint (t->sum, ==, (guint64) n * (n + 1) / 2);
  /* The window bounds the live items, and the load did fill it. */
  g_assert_cmpuint (stress.max_n_items, <=, window);
  g_assert_cmpuint (stress.max_n_items, >, 0);
  /* The loop waits for is_ready(), so no call had to wait for room: the
   * ready state is current on the thread that owns the producer. */
  g_assert_cmpuint (stress.deferred, ==, 0);

  g_free (t);
  g_object_unref (stress.producer);
  g_async_queue_unref (stress.slots);
}

static void
test_random_order_million (void)
{
  run_stress (sluice_test_scale (1000000, 50), 256, 0, 1000);
}

static void
test_random_order_mixed_pool (void)
{
  run_stress (sluice_test_scale (300000, 30), 64, 3, 1000);
}

static void
test_random_order_tiny_window (void)
{
  run_stress (sluice_test_scale (200000, 20), 2, 5, 1000);
}

/* The consumer woken for every item, and allowed to sleep long for runs. */
static void
test_random_order_wake_per_item (void)
{
  run_stress (sluice_test_scale (300000, 30), 64, 4, 0);
}

static void
test_random_order_long_wake_latency (void)
{
  run_stress (sluice_test_scale (300000, 30), 64, 4, 50000);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/stress/random-order/million", test_random_order_million);
  g_test_add_func ("/stress/random-order/mixed-pool", test_random_order_mixed_pool);
  g_test_add_func ("/stress/random-order/tiny-window", test_random_order_tiny_window);
  g_test_add_func ("/stress/random-order/wake-per-item", test_random_order_wake_per_item);
  g_test_add_func ("/stress/random-order/long-wake-latency", test_random_order_long_wake_latency);

  return g_test_run ();
}
