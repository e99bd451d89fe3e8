/* sluice-demo.c: items finished out of order arrive in order
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Asks for N items, each finished after a random delay, half of them by
 * timers on the main loop and half by blocking work in the task queue, and
 * prints the order they finished in next to the order the consumer thread
 * received them in. Uses the public API only.
 */

#include <sluice/sluice.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>

typedef struct
{
  GMutex lock;
  GString *finished; /* the order the items finished in */
} Log;

static Log demo_log;

static void
log_finished (guint n)
{
  g_mutex_lock (&demo_log.lock);
  g_string_append_printf (demo_log.finished, " %u", n);
  g_mutex_unlock (&demo_log.lock);
}

typedef struct
{
  SluiceSlot *slot;
  guint n;
} Timer;

static gboolean
timer_done (gpointer data)
{
  Timer *timer = data;

  log_finished (timer->n);
  sluice_slot_complete (timer->slot, GUINT_TO_POINTER (timer->n + 1));
  g_free (timer);
  return G_SOURCE_REMOVE;
}

/* Non-blocking: finishes later, from a timer on the main loop. */
static void
item_from_timer (SluiceSlot *slot, gpointer data)
{
  Timer *timer = g_new (Timer, 1);

  timer->slot = slot;
  timer->n = GPOINTER_TO_UINT (data);
  g_timeout_add (g_random_int_range (1, 60), timer_done, timer);
}

/* Blocking: runs in the task queue. */
static gpointer
item_in_thread (GCancellable *cancellable, gpointer data, GError **error)
{
  guint n = GPOINTER_TO_UINT (data);

  g_usleep (g_random_int_range (1, 60) * 1000);
  log_finished (n);
  return GUINT_TO_POINTER (n + 1);
}

/* The blocking consumer, in a thread of its own. */
static gpointer
consume (SluiceConsumerator *consumerator, gpointer data, GError **error)
{
  GString *received = g_string_new (NULL);
  gpointer item;

  while (sluice_consumerator_next (consumerator, &item, error))
    g_string_append_printf (received, " %u", GPOINTER_TO_UINT (item) - 1);

  if (error != NULL && *error != NULL)
    {
      g_string_free (received, TRUE);
      return NULL;
    }
  return g_string_free (received, FALSE);
}

static void
stopped (GObject *source, GAsyncResult *result, gpointer data)
{
  char **out = data;
  g_autoptr (GError) error = NULL;

  *out = sluice_ordered_item_producer_stop_finish (SLUICE_ORDERED_ITEM_PRODUCER (source), result,
                                                   &error);
  if (*out == NULL)
    *out = g_strdup_printf ("(failed: %s)", error->message);
}

int
main (int argc, char *argv[])
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (GOptionContext) context = g_option_context_new ("[N]");
  g_autoptr (GError) error = NULL;
  g_autofree char *received = NULL;
  guint n = 20;

  setlocale (LC_ALL, "");
  g_option_context_set_summary (context,
                                "Asks for N items (default 20, at most 10000) that finish out of "
                                "order,\nhalf on main-loop timers and half in the task queue, and "
                                "shows that the\nconsumer thread receives them in order.");
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      fprintf (stderr, "sluice-demo: %s\n", error->message);
      return 1;
    }
  if (argc > 2 || (argc == 2 && strspn (argv[1], "0123456789") != strlen (argv[1])))
    {
      fprintf (stderr, "sluice-demo: N must be a number (see --help)\n");
      return 1;
    }
  if (argc > 1)
    n = CLAMP (atoi (argv[1]), 1, 10000);

  g_mutex_init (&demo_log.lock);
  demo_log.finished = g_string_new (NULL);

  producer = sluice_ordered_item_producer_new (NULL, 8, NULL);
  sluice_ordered_item_producer_start (producer, consume, NULL, NULL, g_free);
  for (guint i = 0; i < n; i++)
    {
      /* Flow control: wait while the window of 8 live items is full. */
      while (!sluice_ordered_item_producer_is_ready (producer))
        g_main_context_iteration (NULL, TRUE);
      if (i % 2 == 0)
        sluice_ordered_item_producer_produce (producer, item_from_timer, GUINT_TO_POINTER (i));
      else
        sluice_ordered_item_producer_produce_in_thread (producer, item_in_thread,
                                                        GUINT_TO_POINTER (i));
    }
  sluice_ordered_item_producer_stop_async (producer, NULL, stopped, &received);
  while (received == NULL)
    g_main_context_iteration (NULL, TRUE);

  printf ("sluice demo: %u items, window 8, half on main-loop timers, half in the task queue\n", n);
  printf ("finished in this order:%s\n", demo_log.finished->str);
  printf ("consumer received:     %s\n", received);
  g_string_free (demo_log.finished, TRUE);
  return 0;
}
