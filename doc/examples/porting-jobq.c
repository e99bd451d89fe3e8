/* porting-jobq.c: a jobq pipeline with keep_order=True, in Sluice
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The program of doc/porting.md. The Python original:
 *
 *     jobq.run(range(N), [add1, (multi2, 2), printarg], keep_order=True)
 *
 * add1 and multi2 become one blocking function run by a task queue of two
 * threads; printarg becomes the consumer, which gets the results in input
 * order. The test suite runs it and compares its output.
 *
 * Usage: porting-jobq [N]
 */

#include <sluice/sluice.h>

/* [stages] */
/* add1, then multi2: a blocking function in the task queue. Returning NULL
 * without an error would drop the element, as jobq.EmptyRst does. */
static gpointer
add1_multi2 (GCancellable *cancellable, gpointer user_data, GError **error)
{
  guint64 args = GPOINTER_TO_SIZE (user_data);

  return g_memdup2 ((guint64[]){ (args + 1) * 2 }, sizeof (guint64));
}

/* printarg: the consumer, in a thread of its own, in input order. */
static gpointer
printarg (SluiceConsumerator *results, gpointer user_data, GError **error)
{
  gpointer result;

  while (sluice_consumerator_next (results, &result, error))
    {
      if (result == NULL)
        continue; /* dropped */
      g_print ("%" G_GUINT64_FORMAT "\n", *(guint64 *) result);
      g_free (result);
    }
  return NULL;
}
/* [/stages] */

static void
on_stopped (GObject *source, GAsyncResult *result, gpointer user_data)
{
  gboolean *done = user_data;
  g_autoptr (GError) error = NULL;

  sluice_ordered_item_producer_stop_finish (SLUICE_ORDERED_ITEM_PRODUCER (source), result, &error);
  if (error != NULL)
    g_printerr ("porting-jobq: %s\n", error->message);
  *done = TRUE;
}

int
main (int argc, char *argv[])
{
  guint64 n = argc > 1 ? g_ascii_strtoull (argv[1], NULL, 10) : 3;
  gboolean done = FALSE;

  /* [run] */
  /* (multi2, 2): two threads for the middle stage. */
  g_autoptr (SluiceTaskQueue) two_threads = sluice_task_queue_new (2);
  /* keep_order=True: the producer hands the results over in input order;
   * queue_size=1024: the window. */
  g_autoptr (SluiceOrderedItemProducer) producer =
      sluice_ordered_item_producer_new (two_threads, 1024, g_free);

  sluice_ordered_item_producer_start (producer, printarg, NULL, NULL, NULL);
  for (guint64 args = 0; args < n; args++) /* JobManager.put (args) */
    sluice_ordered_item_producer_produce_in_thread (producer, add1_multi2, GSIZE_TO_POINTER (args));
  /* JobManager.join () */
  sluice_ordered_item_producer_stop_async (producer, NULL, on_stopped, &done);
  while (!done)
    g_main_context_iteration (NULL, TRUE);
  /* [/run] */

  return 0;
}
