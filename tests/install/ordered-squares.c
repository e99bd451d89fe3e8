/* ordered-squares.c: a program built against an installed Sluice
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * tests/test-install.sh compiles it with nothing but
 * `pkg-config --cflags --libs sluice-1` against a `meson install --destdir`
 * tree and runs it: squares made in the task queue, out of order, must
 * reach the consumer in order.
 */

#include <sluice/sluice.h>

#define N_ITEMS 1000

static gpointer
square (GCancellable *cancellable, gpointer user_data, GError **error)
{
  guint n = GPOINTER_TO_UINT (user_data);

  g_usleep (g_random_int_range (0, 200));
  return GUINT_TO_POINTER (n * n + 1);
}

static gpointer
check_order (SluiceConsumerator *items, gpointer user_data, GError **error)
{
  guint *n_in_order = user_data;
  gpointer item;

  while (sluice_consumerator_next (items, &item, error))
    if (GPOINTER_TO_UINT (item) == *n_in_order * *n_in_order + 1)
      ++*n_in_order;
  return NULL;
}

typedef struct
{
  gboolean done;
  GError *error;
} Stop;

static void
on_stopped (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Stop *stop = user_data;

  sluice_ordered_item_producer_stop_finish (SLUICE_ORDERED_ITEM_PRODUCER (source), result,
                                            &stop->error);
  stop->done = TRUE;
}

int
main (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer =
      sluice_ordered_item_producer_new (NULL, 64, NULL);
  Stop stop = { FALSE, NULL };
  guint n_in_order = 0;

  if (!SLUICE_CHECK_VERSION (0, 1, 0))
    return 1;
  sluice_ordered_item_producer_start (producer, check_order, &n_in_order, NULL, NULL);
  for (guint n = 0; n < N_ITEMS; n++)
    sluice_ordered_item_producer_produce_item_in_thread (
        producer, square, GUINT_TO_POINTER (n), NULL, G_PRIORITY_DEFAULT, NULL, NULL, NULL);
  sluice_ordered_item_producer_stop_async (producer, NULL, on_stopped, &stop);
  while (!stop.done)
    g_main_context_iteration (NULL, TRUE);

  g_print ("Sluice %s: %u of %u items in order\n", SLUICE_VERSION_S, n_in_order, N_ITEMS);
  if (stop.error != NULL)
    {
      g_printerr ("ordered-squares: %s\n", stop.error->message);
      return 1;
    }
  return n_in_order == N_ITEMS ? 0 : 1;
}
