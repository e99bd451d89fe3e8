/* flow-control.c: an upstream producer paused and resumed by the window
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The program of doc/flow-control.md. A source on the main loop (here a
 * ticker that asks for one item per iteration, as a socket reader would)
 * implements SluicePushProducer and registers with the ordered producer; a
 * slow consumer makes the window fill, the ticker is paused, and resumed
 * when the consumer has taken a quarter of the window. The test suite runs it; it
 * checks that the live items never exceed the window.
 */

#include <sluice/sluice.h>

#define WINDOW 16
#define N_ITEMS 400

/* [ticker] */
#define EXAMPLE_TYPE_TICKER (example_ticker_get_type ())
G_DECLARE_FINAL_TYPE (ExampleTicker, example_ticker, EXAMPLE, TICKER, GObject)

struct _ExampleTicker
{
  GObject parent_instance;

  SluiceOrderedItemProducer *sink; /* not owned */
  guint max_live;                  /* main context only */

  GMutex lock; /* a push producer may be called from any thread */
  guint next;
  gboolean paused;
  gboolean stopped;
  gboolean scheduled; /* a tick is queued on the main context */
  guint n_pauses;
};

static void example_ticker_push_producer_init (SluicePushProducerInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (ExampleTicker,
                               example_ticker,
                               G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (SLUICE_TYPE_PUSH_PRODUCER,
                                                      example_ticker_push_producer_init))

static gpointer
square (GCancellable *cancellable, gpointer user_data, GError **error)
{
  guint n = GPOINTER_TO_UINT (user_data);

  return g_memdup2 ((guint64[]){ (guint64) n * n }, sizeof (guint64));
}

/* One item per main loop iteration, as a socket reader would. */
static gboolean
example_ticker_tick (gpointer user_data)
{
  ExampleTicker *self = user_data;
  SluiceConsumerator *consumerator = sluice_ordered_item_producer_get_consumerator (self->sink);
  guint n;

  g_mutex_lock (&self->lock);
  if (self->paused || self->stopped || self->next == N_ITEMS)
    {
      self->scheduled = FALSE;
      g_mutex_unlock (&self->lock);
      return G_SOURCE_REMOVE;
    }
  n = self->next++;
  g_mutex_unlock (&self->lock);

  sluice_ordered_item_producer_produce_in_thread (self->sink, square, GUINT_TO_POINTER (n));
  self->max_live = MAX (self->max_live, sluice_consumerator_get_n_items (consumerator));
  return G_SOURCE_CONTINUE;
}

/* With the lock held. */
static void
example_ticker_schedule (ExampleTicker *self)
{
  if (self->scheduled || self->paused || self->stopped)
    return;
  self->scheduled = TRUE;
  g_idle_add_full (G_PRIORITY_DEFAULT_IDLE, example_ticker_tick, g_object_ref (self),
                   g_object_unref);
}

static void
example_ticker_pause_producing (SluicePushProducer *producer)
{
  ExampleTicker *self = EXAMPLE_TICKER (producer);

  g_mutex_lock (&self->lock);
  self->paused = TRUE;
  self->n_pauses++;
  g_mutex_unlock (&self->lock);
}

static void
example_ticker_resume_producing (SluicePushProducer *producer)
{
  ExampleTicker *self = EXAMPLE_TICKER (producer);

  g_mutex_lock (&self->lock);
  self->paused = FALSE;
  example_ticker_schedule (self);
  g_mutex_unlock (&self->lock);
}

static void
example_ticker_stop_producing (SluicePushProducer *producer)
{
  ExampleTicker *self = EXAMPLE_TICKER (producer);

  g_mutex_lock (&self->lock);
  self->stopped = TRUE;
  g_mutex_unlock (&self->lock);
}

static void
example_ticker_push_producer_init (SluicePushProducerInterface *iface)
{
  iface->pause_producing = example_ticker_pause_producing;
  iface->resume_producing = example_ticker_resume_producing;
  iface->stop_producing = example_ticker_stop_producing;
}
/* [/ticker] */

static void
example_ticker_finalize (GObject *object)
{
  g_mutex_clear (&EXAMPLE_TICKER (object)->lock);
  G_OBJECT_CLASS (example_ticker_parent_class)->finalize (object);
}

static void
example_ticker_class_init (ExampleTickerClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = example_ticker_finalize;
}

static void
example_ticker_init (ExampleTicker *self)
{
  g_mutex_init (&self->lock);
}

static ExampleTicker *
example_ticker_new (SluiceOrderedItemProducer *sink)
{
  ExampleTicker *self = g_object_new (EXAMPLE_TYPE_TICKER, NULL);

  self->sink = sink;
  g_mutex_lock (&self->lock);
  example_ticker_schedule (self);
  g_mutex_unlock (&self->lock);
  return self;
}

static guint
example_ticker_get_next (ExampleTicker *self)
{
  guint next;

  g_mutex_lock (&self->lock);
  next = self->next;
  g_mutex_unlock (&self->lock);
  return next;
}

/* A consumer slower than the producer. */
static gpointer
consume_slowly (SluiceConsumerator *items, gpointer user_data, GError **error)
{
  guint64 *sum = user_data;
  gpointer item;

  while (sluice_consumerator_next (items, &item, error))
    {
      g_usleep (200);
      *sum += *(guint64 *) item;
      g_free (item);
    }
  return NULL;
}

static void
on_stopped (GObject *source, GAsyncResult *result, gpointer user_data)
{
  gboolean *done = user_data;
  g_autoptr (GError) error = NULL;

  sluice_ordered_item_producer_stop_finish (SLUICE_ORDERED_ITEM_PRODUCER (source), result, &error);
  g_assert_no_error (error);
  *done = TRUE;
}

int
main (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer = NULL;
  g_autoptr (ExampleTicker) ticker = NULL;
  guint64 sum = 0, expected = 0;
  gboolean done = FALSE;

  /* [register] */
  producer = sluice_ordered_item_producer_new (NULL, WINDOW, g_free);
  sluice_ordered_item_producer_start (producer, consume_slowly, &sum, NULL, NULL);

  ticker = example_ticker_new (producer); /* ticks from the next iteration */
  /* From now on the producer pauses the ticker when the window is full,
   * and resumes it when the consumer has taken a quarter of it. */
  sluice_ordered_item_producer_register_producer (producer, SLUICE_PUSH_PRODUCER (ticker));
  /* [/register] */

  while (example_ticker_get_next (ticker) < N_ITEMS)
    g_main_context_iteration (NULL, TRUE);
  sluice_ordered_item_producer_unregister_producer (producer);
  sluice_ordered_item_producer_stop_async (producer, NULL, on_stopped, &done);
  while (!done)
    g_main_context_iteration (NULL, TRUE);

  for (guint64 n = 0; n < N_ITEMS; n++)
    expected += n * n;
  g_print ("%u items; the ticker was paused %u times; at most %u items were live (window %u)\n",
           N_ITEMS, ticker->n_pauses, ticker->max_live, WINDOW);
  if (sum != expected || ticker->n_pauses == 0 || ticker->max_live > WINDOW)
    return 1;
  return 0;
}
