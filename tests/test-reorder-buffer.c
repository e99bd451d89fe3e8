/* test-reorder-buffer.c: unit tests of the private reorder buffer
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <sluice/sluice.h>

#include "sluice-reorder-buffer-private.h"
#include "sluice-test-util.h"

#include <gio/gio.h>
#include <string.h>

static GQuark
test_item_error_quark (void)
{
  return g_quark_from_static_string ("test-item-error-quark");
}

#define TEST_ITEM_ERROR (test_item_error_quark ())

/* ---- what the buffer's callbacks report ------------------------------------ */

typedef struct
{
  GMutex mutex;
  GCond cond;

  guint n_room;
  gboolean room_flag; /* set by the room callback, cleared by its waiter */
  gboolean refilling; /* what the room callback answers */
  guint n_settled;
  GArray *failed_seqs; /* guint64 */
  GPtrArray *failed_errors;

  /* When set, the thread every room and failed callback must come from. */
  GThread *consumer_thread;
  guint n_wrong_thread;

  /* The early room answer (set_early_room ()): what the consumer's
   * question answers, how often it was asked and how often a completer
   * answered, and from which thread last. */
  gboolean early_may;
  guint n_early_may;
  guint n_early;
  GThread *early_thread;
  SluiceReorderBuffer *abort_in_early; /* aborted from the early answer, when set */
} Callbacks;

static void
callbacks_init (Callbacks *cb)
{
  memset (cb, 0, sizeof *cb);
  g_mutex_init (&cb->mutex);
  g_cond_init (&cb->cond);
  cb->failed_seqs = g_array_new (FALSE, FALSE, sizeof (guint64));
  cb->failed_errors = g_ptr_array_new_with_free_func ((GDestroyNotify) g_error_free);
}

static void
callbacks_clear (Callbacks *cb)
{
  g_mutex_clear (&cb->mutex);
  g_cond_clear (&cb->cond);
  g_array_unref (cb->failed_seqs);
  g_ptr_array_unref (cb->failed_errors);
}

static void
check_consumer_thread_locked (Callbacks *cb)
{
  if (cb->consumer_thread != NULL && cb->consumer_thread != g_thread_self ())
    cb->n_wrong_thread++;
}

/* A callback from the consumer thread: counts it in *@counter, gives room
 * when @room says so, and returns *@answer. */
static gboolean
consumer_callback (Callbacks *cb, guint *counter, const gboolean *answer, gboolean room)
{
  gboolean value;

  g_mutex_lock (&cb->mutex);
  check_consumer_thread_locked (cb);
  (*counter)++;
  if (room)
    {
      cb->room_flag = TRUE;
      g_cond_broadcast (&cb->cond);
    }
  value = *answer;
  g_mutex_unlock (&cb->mutex);
  return value;
}

static gboolean
on_room (gpointer data)
{
  Callbacks *cb = data;

  return consumer_callback (cb, &cb->n_room, &cb->refilling, TRUE);
}

/* Takes ownership of @error. */
static void
on_failed (guint64 seq, GError *error, gpointer data)
{
  Callbacks *cb = data;

  g_mutex_lock (&cb->mutex);
  check_consumer_thread_locked (cb);
  g_array_append_val (cb->failed_seqs, seq);
  g_ptr_array_add (cb->failed_errors, error);
  g_mutex_unlock (&cb->mutex);
}

static void
on_settled (gpointer data)
{
  Callbacks *cb = data;

  g_mutex_lock (&cb->mutex);
  cb->n_settled++;
  g_cond_broadcast (&cb->cond);
  g_mutex_unlock (&cb->mutex);
}

static guint
callbacks_get (Callbacks *cb, const guint *field)
{
  guint value;

  g_mutex_lock (&cb->mutex);
  value = *field;
  g_mutex_unlock (&cb->mutex);
  return value;
}

#define N_ROOM(cb) callbacks_get ((cb), &(cb)->n_room)
#define N_SETTLED(cb) callbacks_get ((cb), &(cb)->n_settled)
#define N_WRONG_THREAD(cb) callbacks_get ((cb), &(cb)->n_wrong_thread)
#define N_EARLY(cb) callbacks_get ((cb), &(cb)->n_early)

static void
set_all_callbacks (SluiceReorderBuffer *rb, Callbacks *cb)
{
  sluice_reorder_buffer_set_callbacks (rb, on_room, on_failed, on_settled, cb, NULL);
}

static gboolean
on_early_may (gpointer data)
{
  Callbacks *cb = data;

  return consumer_callback (cb, &cb->n_early_may, &cb->early_may, FALSE);
}

/* From the completing thread: room, as on_room () gives it. */
static void
on_early_answer (gpointer data)
{
  Callbacks *cb = data;

  g_mutex_lock (&cb->mutex);
  cb->n_early++;
  cb->early_thread = g_thread_self ();
  cb->room_flag = TRUE;
  g_cond_broadcast (&cb->cond);
  g_mutex_unlock (&cb->mutex);
  /* Racing the consumer's wake-up: the item it was given is either
   * handed out or freed by the abort, once. */
  if (cb->abort_in_early != NULL)
    sluice_reorder_buffer_abort (cb->abort_in_early, NULL);
}

static void
set_early_callbacks (SluiceReorderBuffer *rb, Callbacks *cb, gboolean may)
{
  cb->early_may = may;
  sluice_reorder_buffer_set_early_room (rb, on_early_may, on_early_answer);
}

/* ---- helpers ---------------------------------------------------------------- */

/* Reserves @n slots, each of which must fit. */
static SluiceSlot **
reserve_n (SluiceReorderBuffer *rb, guint n)
{
  SluiceSlot **slots = g_new (SluiceSlot *, n);

  sluice_reorder_buffer_lock (rb);
  for (guint i = 0; i < n; i++)
    {
      if (!sluice_reorder_buffer_has_room_locked (rb, FALSE))
        g_assert_true (sluice_reorder_buffer_has_room_locked (rb, FALSE));
      slots[i] = sluice_reorder_buffer_reserve_locked (rb);
    }
  sluice_reorder_buffer_unlock (rb);
  return slots;
}

static gboolean
has_room (SluiceReorderBuffer *rb)
{
  gboolean room;

  sluice_reorder_buffer_lock (rb);
  room = sluice_reorder_buffer_has_room_locked (rb, FALSE);
  sluice_reorder_buffer_unlock (rb);
  return room;
}

static gboolean
is_closed (SluiceReorderBuffer *rb)
{
  gboolean closed;

  sluice_reorder_buffer_lock (rb);
  closed = sluice_reorder_buffer_is_closed_locked (rb);
  sluice_reorder_buffer_unlock (rb);
  return closed;
}

static void
expect_next_item (SluiceReorderBuffer *rb, gpointer expected)
{
  g_autoptr (GError) error = NULL;
  gpointer item = NULL;

  g_assert_true (sluice_reorder_buffer_next (rb, &item, &error));
  g_assert_no_error (error);
  g_assert_true (item == expected);
}

static void
expect_next_end (SluiceReorderBuffer *rb)
{
  g_autoptr (GError) error = NULL;
  gpointer item = NULL;

  g_assert_false (sluice_reorder_buffer_next (rb, &item, &error));
  g_assert_no_error (error);
  g_assert_null (item);
}

static void
expect_next_error (SluiceReorderBuffer *rb, GQuark domain, int code, const char *message)
{
  g_autoptr (GError) error = NULL;
  gpointer item = NULL;

  g_assert_false (sluice_reorder_buffer_next (rb, &item, &error));
  g_assert_error (error, domain, code);
  g_assert_cmpstr (error->message, ==, message);
  g_assert_null (item);
}

/* A consumer thread that takes everything until the end and checks that
 * item i is GUINT_TO_POINTER (i + 1). */
typedef struct
{
  SluiceReorderBuffer *rb;
  guint n_received;
  guint n_bad_order;
  guint64 max_live;
  GError *error;
} SequenceConsumer;

static gpointer
sequence_consumer_thread (gpointer data)
{
  SequenceConsumer *consumer = data;
  gpointer item = NULL;

  while (sluice_reorder_buffer_next (consumer->rb, &item, &consumer->error))
    {
      /* From the consumer thread the count is exact: only this thread
       * lowers it. */
      guint64 live = sluice_reorder_buffer_get_n_live (consumer->rb);

      consumer->max_live = MAX (consumer->max_live, live);
      if (GPOINTER_TO_UINT (item) != consumer->n_received + 1)
        consumer->n_bad_order++;
      consumer->n_received++;
    }
  return NULL;
}

/* ---- a consumer that gave up waiting for a later item ---------------------- */

static gboolean
stats_reach (SluiceReorderBuffer *rb,
             const guint64 *field_of_copy,
             SluiceReorderStats *copy,
             guint64 value)
{
  gint64 deadline = deadline_from_now ();

  do
    {
      sluice_reorder_buffer_get_stats (rb, copy);
      if (*field_of_copy >= value)
        return TRUE;
      g_usleep (1000);
    }
  while (g_get_monotonic_time () < deadline);
  return FALSE;
}

/* The number the consumer comes to sleep for, of @seq and @other (the
 * buffer's private fields: set under its lock while the consumer
 * sleeps); G_MAXUINT64 if neither. */
static guint64
consumer_asleep_for_either (SluiceReorderBuffer *rb, guint64 seq, guint64 other)
{
  gint64 deadline = deadline_from_now ();

  do
    {
      guint64 asleep = G_MAXUINT64;

      sluice_reorder_buffer_lock (rb);
      if (g_atomic_int_get (&rb->consumer_sleeping) &&
          (rb->consumer_wait_seq == seq || rb->consumer_wait_seq == other))
        asleep = rb->consumer_wait_seq;
      sluice_reorder_buffer_unlock (rb);
      if (asleep != G_MAXUINT64)
        return asleep;
      g_usleep (1000);
    }
  while (g_get_monotonic_time () < deadline);
  return G_MAXUINT64;
}

/* Whether the consumer comes to sleep for number @seq. */
static gboolean
consumer_asleep_for (SluiceReorderBuffer *rb, guint64 seq)
{
  return consumer_asleep_for_either (rb, seq, seq) == seq;
}

/* ---- the early room answer ------------------------------------------------ */

typedef enum
{
  EARLY_TAKEN,     /* the completer takes the item and answers the owner */
  EARLY_REFUSED,   /* the consumer said no (it is the owner): it answers itself */
  EARLY_ABORTED,   /* an abort right after the early answer races the consumer */
  EARLY_NOT_ASKED, /* no room request open: nothing to answer, the consumer takes it */
} EarlyCase;

static guint n_early_freed;

static void
early_item_free (gpointer item)
{
  g_assert_cmpuint (GPOINTER_TO_UINT (item), ==, 1);
  g_atomic_int_inc (&n_early_freed);
}

/* One item in flight, the consumer asleep for it, the owner waiting for
 * room (issue 19, latency_p50_1_us): the completion takes the item for the
 * consumer and gives the owner its room from the completing thread, before
 * the consumer's next () returns and without its room callback; the owner
 * can reserve the next number at once. */
static void
test_early_room (gconstpointer data)
{
  EarlyCase ec = GPOINTER_TO_INT (data);
  SluiceReorderBuffer *rb = sluice_reorder_buffer_new (1, early_item_free, NULL);
  SequenceConsumer consumer = { rb, 0, 0, 0, NULL };
  SluiceReorderStats stats;
  SluiceSlot **slots;
  GThread *thread;
  Callbacks cb;

  n_early_freed = 0;
  callbacks_init (&cb);
  set_all_callbacks (rb, &cb);
  set_early_callbacks (rb, &cb, ec != EARLY_REFUSED);
  if (ec == EARLY_ABORTED)
    cb.abort_in_early = rb;

  slots = reserve_n (rb, 1);
  if (ec != EARLY_NOT_ASKED)
    g_assert_false (has_room (rb));
  g_mutex_lock (&cb.mutex);
  thread = g_thread_new ("consumer", sequence_consumer_thread, &consumer);
  cb.consumer_thread = thread;
  g_mutex_unlock (&cb.mutex);
  g_assert_true (consumer_asleep_for (rb, 0));

  sluice_reorder_buffer_complete (slots[0], GUINT_TO_POINTER (1), NULL);
  g_free (slots);
  sluice_reorder_buffer_get_stats (rb, &stats);
  /* The consumer asked before it slept, from its own thread. */
  g_assert_cmpuint (cb.n_early_may, >=, 1);
  g_assert_cmpuint (N_WRONG_THREAD (&cb), ==, 0);

  switch (ec)
    {
    case EARLY_TAKEN:
      /* Answered within the completion, on its thread; room at once. */
      g_assert_cmpuint (N_EARLY (&cb), ==, 1);
      g_assert_true (cb.early_thread == g_thread_self ());
      g_assert_cmpuint (stats.early, ==, 1);
      g_assert_true (has_room (rb));
      slots = reserve_n (rb, 1);
      sluice_reorder_buffer_complete (slots[0], GUINT_TO_POINTER (2), NULL);
      g_free (slots);
      g_assert_true (sluice_reorder_buffer_end (rb));
      g_thread_join (thread);
      g_assert_no_error (consumer.error);
      g_assert_cmpuint (consumer.n_received, ==, 2);
      g_assert_cmpuint (consumer.n_bad_order, ==, 0);
      /* The consumer's room callback never ran: the item it took had
       * been answered for, and nobody asked since. */
      g_assert_cmpuint (N_ROOM (&cb), ==, 0);
      break;

    case EARLY_REFUSED:
    case EARLY_NOT_ASKED:
      /* The consumer takes the item itself; with a request open it
       * answers it from its own thread (on_room () checks). */
      g_assert_cmpuint (N_EARLY (&cb), ==, 0);
      g_assert_cmpuint (stats.early, ==, 0);
      g_assert_true (sluice_reorder_buffer_end (rb));
      g_thread_join (thread);
      g_assert_no_error (consumer.error);
      g_assert_cmpuint (consumer.n_received, ==, 1);
      g_assert_cmpuint (N_ROOM (&cb), ==, ec == EARLY_REFUSED ? 1 : 0);
      break;

    case EARLY_ABORTED:
      g_assert_cmpuint (N_EARLY (&cb), ==, 1);
      g_thread_join (thread);
      /* A quiet abort: the consumer ends, with or without the item. */
      g_assert_no_error (consumer.error);
      g_assert_cmpuint (consumer.n_received + g_atomic_int_get (&n_early_freed), ==, 1);
      break;
    }
  g_assert_cmpuint (N_WRONG_THREAD (&cb), ==, 0);
  sluice_reorder_buffer_unref (rb);
  /* Each item handed out, or freed, once. */
  g_assert_cmpuint (consumer.n_received + n_early_freed, ==, ec == EARLY_TAKEN ? 2 : 1);
  callbacks_clear (&cb);
}

/* Sets the wake latency, reserves @n slots and starts a sequence consumer
 * on them. */
static GThread *
consume_reserved (SluiceReorderBuffer *rb,
                  guint wake_latency,
                  guint n,
                  SequenceConsumer *consumer,
                  SluiceSlot ***slots)
{
  *consumer = (SequenceConsumer){ rb, 0, 0, 0, NULL };
  sluice_reorder_buffer_set_wake_latency (rb, wake_latency);
  *slots = reserve_n (rb, n);
  return g_thread_new ("consumer", sequence_consumer_thread, consumer);
}

/* With items in flight the consumer sleeps for a later one (marking it) for
 * at most the wake latency, then for the head. The later item's completion
 * must not wake it after that: every wake-up costs a context switch, and
 * for 50 us items a stale mark doubled the consumer's sleeps. */
static void
test_stale_mark (void)
{
  SluiceReorderBuffer *rb = sluice_reorder_buffer_new (16, NULL, NULL);
  SequenceConsumer consumer;
  SluiceReorderStats stats;
  SluiceSlot **slots;
  GThread *thread = consume_reserved (rb, 10 * 1000, 8, &consumer, &slots);
  guint64 sleeps;

  /* It sleeps for a later item (or, on a slow machine, passes the
   * deadline before it gets to sleep), times out, then sleeps for the
   * head. Whether the timed wait said so or the clock did, the timeout is
   * counted once. */
  g_assert_true (stats_reach (rb, &stats.timeouts, &stats, 1));
  g_assert_true (consumer_asleep_for (rb, 0));
  sluice_reorder_buffer_get_stats (rb, &stats);
  g_assert_cmpuint (stats.timeouts, ==, 1);
  sleeps = stats.sleeps;

  /* Every later item completes: none of them is what it waits for. */
  for (guint i = 1; i < 8; i++)
    sluice_reorder_buffer_complete (slots[i], GUINT_TO_POINTER (i + 1), NULL);
  /* Time for a wrong wake-up to show (none is the right outcome). */
  g_usleep (50 * 1000);
  sluice_reorder_buffer_get_stats (rb, &stats);
  g_assert_cmpuint (stats.sleeps, ==, sleeps);

  sluice_reorder_buffer_complete (slots[0], GUINT_TO_POINTER (1), NULL);
  sluice_reorder_buffer_end (rb);
  g_thread_join (thread);

  g_assert_no_error (consumer.error);
  g_assert_cmpuint (consumer.n_received, ==, 8);
  g_assert_cmpuint (consumer.n_bad_order, ==, 0);
  /* (No count of sleeps here: racing the end, the consumer may sleep once
   * more after the last item, rightly.) */

  g_free (slots);
  sluice_reorder_buffer_unref (rb);
}

/* ---- a run the owner is refilling -------------------------------------------- */

static gboolean
consumer_finishes (SluiceReorderBuffer *rb)
{
  gint64 deadline = deadline_from_now ();

  while (!sluice_reorder_buffer_consumer_finished (rb))
    {
      if (g_get_monotonic_time () >= deadline)
        return FALSE;
      g_usleep (1000);
    }
  return TRUE;
}

/* Fewer than 8 items in flight (and no refill under way): the consumer
 * sleeps for the head, and its completion alone wakes it, whatever the
 * wake latency. With 8 it sleeps for the item three quarters through them
 * (number 5), and the head alone does not wake it. */
static void
test_short_run (void)
{
  for (guint n = 2; n <= 8; n++)
    {
      SluiceReorderBuffer *rb = sluice_reorder_buffer_new (16, NULL, NULL);
      SequenceConsumer consumer = { rb, 0, 0, 0, NULL };
      SluiceReorderStats stats;
      SluiceSlot **slots;
      GThread *thread;

      sluice_reorder_buffer_set_wake_latency (rb, G_MAXINT);
      slots = reserve_n (rb, n);
      thread = g_thread_new ("consumer", sequence_consumer_thread, &consumer);
      g_assert_true (stats_reach (rb, &stats.sleeps, &stats, 1));
      sluice_reorder_buffer_complete (slots[0], GUINT_TO_POINTER (1), NULL);
      if (n < 8)
        {
          /* It took the head and waits again. */
          g_assert_true (stats_reach (rb, &stats.waits, &stats, 2));
        }
      else
        {
          /* Time for a wake-up to show (none is the right outcome). */
          g_usleep (50 * 1000);
          sluice_reorder_buffer_get_stats (rb, &stats);
          g_assert_cmpuint (stats.waits, ==, 1);
        }
      for (guint i = 1; i < n; i++)
        sluice_reorder_buffer_complete (slots[i], GUINT_TO_POINTER (i + 1), NULL);

      sluice_reorder_buffer_end (rb);
      g_thread_join (thread);
      g_assert_no_error (consumer.error);
      g_assert_cmpuint (consumer.n_received, ==, n);
      g_assert_cmpuint (consumer.n_bad_order, ==, 0);
      g_free (slots);
      sluice_reorder_buffer_unref (rb);
    }
}

/* The wake rule adapts to the load (doc/overview.md): at the same depth
 * (8 or more in flight) the consumer sleeps for a run while items come
 * fast, and wakes per item once they come far apart (the moving average of
 * the gap between items above 100 us). Observed through what it sleeps for
 * and its count of sleeps; the gaps here are lower bounds (sleeps of 2 ms
 * between completions), or far below the limit (completions in a tight
 * loop, the consumer asleep meanwhile), so a slow machine does not change
 * the outcome. */
static void
test_wake_rule (void)
{
  SluiceReorderBuffer *rb = sluice_reorder_buffer_new (128, NULL, NULL);
  gint64 start = g_get_monotonic_time ();
  SequenceConsumer consumer;
  SluiceReorderStats stats;
  SluiceSlot **slots;
  GThread *thread = consume_reserved (rb, G_MAXINT, 128, &consumer, &slots);
  guint64 sleeps, seq;

  /* Fast: a fresh buffer sleeps for the item three quarters through the
   * 128 in flight; 96 items completed at once are one run, and with 32
   * left in flight it sleeps for the run of the next 24. The consumer's
   * one sample of the gap spans at most the time since the start: below
   * 30 ms for 96 items it is below 400 us, a quarter of which is below
   * the limit. A machine stalled longer than that (valgrind on a loaded
   * machine) may make it wake per item (sleep for 96), which is right
   * then. */
  g_assert_true (consumer_asleep_for (rb, 95));
  for (guint i = 0; i < 96; i++)
    sluice_reorder_buffer_complete (slots[i], GUINT_TO_POINTER (i + 1), NULL);
  seq = consumer_asleep_for_either (rb, 119, 96);
  if (seq == 96 && g_get_monotonic_time () - start > 30 * G_TIME_SPAN_MILLISECOND)
    g_test_message ("the machine stalled: the fast phase woke per item, not judged");
  else
    {
      g_assert_cmpuint (seq, ==, 119);
      sluice_reorder_buffer_get_stats (rb, &stats);
      g_assert_cmpuint (stats.sleeps, <=, 3);
    }

  /* Slow: 24 items 2 ms apart (one run still: it was asleep for it), then
   * with 8 in flight it sleeps for the head, and each of the 7 after it
   * is a sleep of its own. */
  for (guint i = 96; i < 120; i++)
    {
      g_usleep (2000);
      sluice_reorder_buffer_complete (slots[i], GUINT_TO_POINTER (i + 1), NULL);
    }
  g_assert_true (consumer_asleep_for (rb, 120));
  sluice_reorder_buffer_get_stats (rb, &stats);
  sleeps = stats.sleeps;
  for (guint i = 120; i < 128; i++)
    {
      g_assert_true (consumer_asleep_for (rb, i));
      g_usleep (2000);
      sluice_reorder_buffer_complete (slots[i], GUINT_TO_POINTER (i + 1), NULL);
    }
  sluice_reorder_buffer_get_stats (rb, &stats);
  g_assert_cmpuint (stats.sleeps - sleeps, >=, 7);

  sluice_reorder_buffer_end (rb);
  g_thread_join (thread);
  g_assert_no_error (consumer.error);
  g_assert_cmpuint (consumer.n_received, ==, 128);
  g_assert_cmpuint (consumer.n_bad_order, ==, 0);
  g_free (slots);
  sluice_reorder_buffer_unref (rb);
}

typedef enum
{
  REFILL,         /* the owner refills the window */
  REFILL_END,     /* the owner says it refills, but ends instead */
  REFILL_NOT_YET, /* the room callback says no refill is under way */
} RefillCase;

/* Window 8 (low water 6), a wake latency that never runs out: the owner
 * filled the window and asked for room; the consumer takes the first 6,
 * gives room back after 2, and sleeps with 2 in flight. If the room
 * callback says the owner is refilling, it sleeps for the item three
 * quarters through a full window (number 11, not reserved yet) rather than
 * for the last of the 2: one wake-up then takes a run of 6. An end instead
 * of the refill must wake it; without a refill under way it sleeps for the
 * last of the 2. */
static void
test_refill_run (gconstpointer data)
{
  RefillCase refill = GPOINTER_TO_INT (data);
  SluiceReorderBuffer *rb = sluice_reorder_buffer_new (8, NULL, NULL);
  SequenceConsumer consumer = { rb, 0, 0, 0, NULL };
  SluiceReorderStats stats;
  SluiceSlot **slots, **more = NULL;
  GThread *thread;
  Callbacks cb;

  callbacks_init (&cb);
  cb.refilling = refill != REFILL_NOT_YET;
  set_all_callbacks (rb, &cb);
  sluice_reorder_buffer_set_wake_latency (rb, G_MAXINT);
  slots = reserve_n (rb, 8);
  g_assert_false (has_room (rb));
  for (guint i = 0; i < 6; i++)
    sluice_reorder_buffer_complete (slots[i], GUINT_TO_POINTER (i + 1), NULL);

  thread = g_thread_new ("consumer", sequence_consumer_thread, &consumer);
  g_assert_true (stats_reach (rb, &stats.sleeps, &stats, 1));
  g_assert_cmpuint (N_ROOM (&cb), ==, 1);

  sluice_reorder_buffer_complete (slots[6], GUINT_TO_POINTER (7), NULL);
  sluice_reorder_buffer_complete (slots[7], GUINT_TO_POINTER (8), NULL);
  if (refill == REFILL_NOT_YET)
    {
      /* It took the 2 and waits again, before any end. */
      g_assert_true (stats_reach (rb, &stats.waits, &stats, 2));
      sluice_reorder_buffer_end (rb);
      g_assert_true (consumer_finishes (rb));
      g_thread_join (thread);
      g_assert_cmpuint (consumer.n_received, ==, 8);
    }
  else if (refill == REFILL_END)
    {
      sluice_reorder_buffer_end (rb);
      g_assert_true (consumer_finishes (rb));
      g_thread_join (thread);
      g_assert_cmpuint (consumer.n_received, ==, 8);
    }
  else
    {
      /* The refill up to number 10: not yet the awaited one. */
      more = reserve_n (rb, 4);
      for (guint i = 0; i < 3; i++)
        sluice_reorder_buffer_complete (more[i], GUINT_TO_POINTER (9 + i), NULL);
      /* Time for a wake-up too early to show (none is the right outcome). */
      g_usleep (50 * 1000);
      sluice_reorder_buffer_get_stats (rb, &stats);
      g_assert_cmpuint (stats.waits, ==, 1);
      g_assert_cmpuint (stats.sleeps, ==, 1);

      sluice_reorder_buffer_complete (more[3], GUINT_TO_POINTER (12), NULL);
      sluice_reorder_buffer_end (rb);
      g_assert_true (consumer_finishes (rb));
      g_thread_join (thread);
      g_assert_cmpuint (consumer.n_received, ==, 12);
    }
  g_assert_no_error (consumer.error);
  g_assert_cmpuint (consumer.n_bad_order, ==, 0);
  g_assert_cmpuint (stats.timeouts, ==, 0);

  g_free (slots);
  g_free (more);
  callbacks_clear (&cb);
  sluice_reorder_buffer_unref (rb);
}

/* ---- the lock-free reservation -------------------------------------------- */

static void
set_gate (SluiceReorderBuffer *rb, gboolean open)
{
  sluice_reorder_buffer_lock (rb);
  sluice_reorder_buffer_set_gate_locked (rb, open);
  sluice_reorder_buffer_unlock (rb);
}

/* try_reserve() reserves only through an open gate, never the slot that
 * fills the window (the locked path does that, and marks the owner not
 * ready), and nothing once the buffer ended or was aborted. */
static void
test_try_reserve (void)
{
  SluiceReorderBuffer *rb = sluice_reorder_buffer_new (4, NULL, NULL);
  SluiceSlot *slots[4];

  /* Closed at first: a standalone queue never reserves this way. */
  g_assert_null (sluice_reorder_buffer_try_reserve (rb));
  set_gate (rb, TRUE);

  for (guint i = 0; i < 3; i++)
    {
      slots[i] = sluice_reorder_buffer_try_reserve (rb);
      g_assert_nonnull (slots[i]);
      g_assert_cmpuint (slots[i]->seq, ==, i);
    }
  g_assert_null (sluice_reorder_buffer_try_reserve (rb));
  g_assert_cmpuint (sluice_reorder_buffer_get_n_live (rb), ==, 3);

  /* The last one of the window goes through the lock. */
  g_assert_true (has_room (rb));
  sluice_reorder_buffer_lock (rb);
  slots[3] = sluice_reorder_buffer_reserve_locked (rb);
  sluice_reorder_buffer_unlock (rb);
  g_assert_cmpuint (slots[3]->seq, ==, 3);
  g_assert_false (has_room (rb));

  /* Two taken: room for two again, so one more fits this way. */
  for (guint i = 0; i < 4; i++)
    sluice_reorder_buffer_complete (slots[i], GUINT_TO_POINTER (i + 1), NULL);
  expect_next_item (rb, GUINT_TO_POINTER (1));
  g_assert_null (sluice_reorder_buffer_try_reserve (rb));
  expect_next_item (rb, GUINT_TO_POINTER (2));
  slots[0] = sluice_reorder_buffer_try_reserve (rb);
  g_assert_nonnull (slots[0]);
  g_assert_cmpuint (slots[0]->seq, ==, 4);

  /* A closed gate stops it with room to spare. */
  expect_next_item (rb, GUINT_TO_POINTER (3));
  expect_next_item (rb, GUINT_TO_POINTER (4));
  set_gate (rb, FALSE);
  g_assert_null (sluice_reorder_buffer_try_reserve (rb));
  set_gate (rb, TRUE);

  /* After the end, nothing: the end is the last number. */
  g_assert_true (sluice_reorder_buffer_end (rb));
  g_assert_null (sluice_reorder_buffer_try_reserve (rb));
  sluice_reorder_buffer_complete (slots[0], GUINT_TO_POINTER (5), NULL);
  expect_next_item (rb, GUINT_TO_POINTER (5));
  expect_next_end (rb);
  sluice_reorder_buffer_unref (rb);

  /* After an abort, nothing either. */
  rb = sluice_reorder_buffer_new (4, NULL, NULL);
  set_gate (rb, TRUE);
  g_assert_true (sluice_reorder_buffer_abort (rb, NULL));
  g_assert_null (sluice_reorder_buffer_try_reserve (rb));
  sluice_reorder_buffer_unref (rb);
}

/* The consumer waits for a number nobody has reserved yet; a lock-free
 * reservation must mark it so that the completion wakes the consumer. */
static void
test_wait_unreserved (void)
{
  /* Room for all 50, however slow the consumer (valgrind). */
  SluiceReorderBuffer *rb = sluice_reorder_buffer_new (64, NULL, NULL);
  SequenceConsumer consumer = { rb, 0, 0, 0, NULL };
  SluiceReorderStats stats;
  GThread *thread;

  set_gate (rb, TRUE);
  thread = g_thread_new ("consumer", sequence_consumer_thread, &consumer);

  for (guint i = 0; i < 50; i++)
    {
      SluiceSlot *slot;

      /* Let the consumer fall asleep on number i first, most times. */
      if (i % 2 == 0)
        g_assert_true (stats_reach (rb, &stats.sleeps, &stats, i / 2 + 1));
      slot = sluice_reorder_buffer_try_reserve (rb);
      g_assert_nonnull (slot);
      sluice_reorder_buffer_complete (slot, GUINT_TO_POINTER (i + 1), NULL);
    }
  sluice_reorder_buffer_end (rb);
  g_thread_join (thread);

  g_assert_no_error (consumer.error);
  g_assert_cmpuint (consumer.n_received, ==, 50);
  g_assert_cmpuint (consumer.n_bad_order, ==, 0);
  sluice_reorder_buffer_unref (rb);
}

/* ---- the adaptive spin goes quiet with the producer ------------------------- */

/* One item in flight at a time, each completed as soon as the consumer has
 * taken the one before: its waits are short, so it spins for them (how
 * often is not asserted: on a busy machine spins fail). Then the producer
 * goes idle for a second while the consumer waits: the consumer must sleep
 * through it, so the process uses far less processor time than the second
 * (a consumer that kept spinning would use all of it). Not a timing
 * assertion on speed: the bound is half the wall time. */
static void
test_idle_no_spin (void)
{
  SluiceReorderBuffer *rb = sluice_reorder_buffer_new (4, NULL, NULL);
  SequenceConsumer consumer = { rb, 0, 0, 0, NULL };
  SluiceReorderStats stats;
  SluiceReorderProgress progress;
  GThread *thread;
  guint n = sluice_test_scale (2000, 200);
  gint64 idle_start;
  double cpu;

  set_gate (rb, TRUE);
  thread = g_thread_new ("consumer", sequence_consumer_thread, &consumer);
  for (guint i = 0; i < n; i++)
    {
      SluiceSlot *slot = sluice_reorder_buffer_try_reserve (rb);
      gint64 deadline = deadline_from_now ();

      g_assert_nonnull (slot);
      sluice_reorder_buffer_complete (slot, GUINT_TO_POINTER (i + 1), NULL);
      do
        {
          g_assert_cmpint (g_get_monotonic_time (), <, deadline);
          g_thread_yield ();
          sluice_reorder_buffer_get_progress (rb, &progress);
        }
      while (progress.handed < i + 1);
    }

  cpu = sluice_test_process_cpu_seconds ();
  idle_start = g_get_monotonic_time ();
  g_usleep (G_USEC_PER_SEC);
  cpu = sluice_test_process_cpu_seconds () - cpu;
  g_test_message ("idle: %.3f s of processor time in %.3f s", cpu,
                  (g_get_monotonic_time () - idle_start) / 1e6);
  g_assert_cmpfloat (cpu, <, 0.5);

  sluice_reorder_buffer_end (rb);
  g_thread_join (thread);
  sluice_reorder_buffer_get_stats (rb, &stats);
  g_test_message ("%" G_GUINT64_FORMAT " waits, %" G_GUINT64_FORMAT " sleeps, %" G_GUINT64_FORMAT
                  " spins",
                  stats.waits, stats.sleeps, stats.spins);
  g_assert_no_error (consumer.error);
  g_assert_cmpuint (consumer.n_received, ==, n);
  g_assert_cmpuint (consumer.n_bad_order, ==, 0);
  /* Each wait ends at most one spin, and the idle one was slept through. */
  g_assert_cmpuint (stats.spins, <, stats.waits);
  sluice_reorder_buffer_unref (rb);
}

/* ---- 1. completion in reverse order ----------------------------------------- */

static void
test_reverse (gconstpointer data)
{
  gboolean threaded = GPOINTER_TO_INT (data);
  guint n = sluice_test_scale (100000, 50);
  SluiceReorderBuffer *rb = sluice_reorder_buffer_new (n, NULL, NULL);
  SequenceConsumer consumer = { rb };
  GThread *thread = NULL;
  SluiceSlot **slots;

  g_assert_cmpuint (sluice_reorder_buffer_get_window (rb), ==, n);

  if (threaded)
    thread = g_thread_new ("consumer", sequence_consumer_thread, &consumer);

  slots = reserve_n (rb, n);
  for (guint i = 0; i < n; i++)
    g_assert_cmpuint (slots[i]->seq, ==, i);
  g_assert_false (has_room (rb));
  /* With a consumer thread, it may already wait; it has taken nothing. */
  g_assert_cmpuint (sluice_reorder_buffer_get_n_live (rb), ==, n);

  /* The last first: every item waits for the first one. */
  for (guint i = n; i-- > 0;)
    g_assert_true (sluice_reorder_buffer_complete (slots[i], GUINT_TO_POINTER (i + 1), NULL));
  g_assert_true (sluice_reorder_buffer_end (rb));
  g_assert_false (sluice_reorder_buffer_end (rb));
  g_assert_true (is_closed (rb));

  if (threaded)
    g_thread_join (thread);
  else
    sequence_consumer_thread (&consumer);

  g_assert_no_error (consumer.error);
  g_assert_cmpuint (consumer.n_bad_order, ==, 0);
  g_assert_cmpuint (consumer.n_received, ==, n);
  g_assert_cmpuint (sluice_reorder_buffer_get_n_live (rb), ==, 0);
  g_assert_true (sluice_reorder_buffer_consumer_finished (rb));
  g_assert_true (sluice_reorder_buffer_is_settled (rb));
  g_assert_false (sluice_reorder_buffer_is_aborted (rb));
  g_assert_null (sluice_reorder_buffer_get_abort_error (rb));
  /* The end is sticky. */
  expect_next_end (rb);

  g_free (slots);
  sluice_reorder_buffer_unref (rb);
}

/* ---- 2. the window and the room callback ------------------------------------ */

static void
test_window (void)
{
  static const guint windows[] = { 10, 7, 1 };

  for (guint w = 0; w < G_N_ELEMENTS (windows); w++)
    {
      guint window = windows[w];
      /* Room again once a quarter of the window is free. */
      guint low_water = window - MAX (1, window / 4);
      SluiceReorderBuffer *rb = sluice_reorder_buffer_new (window, NULL, NULL);
      Callbacks cb;
      guint next_value = 1;

      g_test_message ("window %u", window);
      callbacks_init (&cb);
      cb.consumer_thread = g_thread_self ();
      set_all_callbacks (rb, &cb);

      /* Two full rounds: the room request re-arms after it fired. */
      for (guint round = 1; round <= 2; round++)
        {
          SluiceSlot **slots = g_new (SluiceSlot *, window);

          sluice_reorder_buffer_lock (rb);
          for (guint i = 0; i < window; i++)
            {
              /* Room up to the window, exactly. */
              g_assert_true (sluice_reorder_buffer_has_room_locked (rb, FALSE));
              slots[i] = sluice_reorder_buffer_reserve_locked (rb);
            }
          g_assert_false (sluice_reorder_buffer_has_room_locked (rb, FALSE));
          sluice_reorder_buffer_unlock (rb);
          g_assert_cmpuint (sluice_reorder_buffer_get_n_live (rb), ==, window);

          for (guint i = 0; i < window; i++)
            g_assert_true (
                sluice_reorder_buffer_complete (slots[i], GUINT_TO_POINTER (next_value + i), NULL));
          /* Completing is not consuming: still no room, no call. */
          g_assert_false (has_room (rb));
          g_assert_cmpuint (N_ROOM (&cb), ==, round - 1);

          for (guint taken = 1; taken <= window; taken++)
            {
              expect_next_item (rb, GUINT_TO_POINTER (next_value++));
              /* Called once, when the live items fell to the low-water mark. */
              g_assert_cmpuint (N_ROOM (&cb), ==, window - taken <= low_water ? round : round - 1);
            }
          g_assert_cmpuint (sluice_reorder_buffer_get_n_live (rb), ==, 0);
          g_free (slots);
        }

      /* Never asked (the window never filled): never called. */
      {
        SluiceSlot **slots = reserve_n (rb, window - 1);

        g_assert_true (has_room (rb));
        for (guint i = 0; i < window - 1; i++)
          g_assert_true (
              sluice_reorder_buffer_complete (slots[i], GUINT_TO_POINTER (next_value + i), NULL));
        for (guint i = 0; i < window - 1; i++)
          expect_next_item (rb, GUINT_TO_POINTER (next_value++));
        g_free (slots);
      }
      g_assert_cmpuint (N_ROOM (&cb), ==, 2);
      g_assert_cmpuint (N_WRONG_THREAD (&cb), ==, 0);
      g_assert_cmpuint (N_SETTLED (&cb), ==, 0);

      g_assert_true (sluice_reorder_buffer_end (rb));
      expect_next_end (rb);
      sluice_reorder_buffer_unref (rb);
      callbacks_clear (&cb);
    }
}

/* ---- lists: a slot holds a list of items, handed out one by one ------------- */

static GPtrArray *
list_of (gint *counters, guint from, guint n)
{
  GPtrArray *list = g_ptr_array_new ();

  for (guint i = 0; i < n; i++)
    g_ptr_array_add (list, &counters[from + i]);
  return list;
}

static void
test_lists (void)
{
  gint counters[16] = { 0 };
  SluiceReorderBuffer *rb = sluice_reorder_buffer_new (4, counted_item_free, NULL);
  SluiceSlot **slots;

  sluice_reorder_buffer_set_lists (rb, TRUE);
  slots = reserve_n (rb, 4);
  /* Completed out of order; an empty list is a slot with nothing in it. */
  g_assert_true (sluice_reorder_buffer_complete (slots[2], list_of (counters, 3, 2), NULL));
  g_assert_true (sluice_reorder_buffer_complete (slots[1], g_ptr_array_new (), NULL));
  g_assert_true (sluice_reorder_buffer_complete (slots[0], list_of (counters, 0, 3), NULL));
  /* The n-th reserved slot, found by its number. */
  g_assert_true (sluice_reorder_buffer_get_reserved_slot (rb, 3) == slots[3]);
  g_assert_true (sluice_reorder_buffer_complete (slots[3], list_of (counters, 5, 4), NULL));
  g_free (slots);

  for (guint i = 0; i < 4; i++)
    expect_next_item (rb, &counters[i]);
  /* The window counts slots: three taken, one holds the list in hand. */
  g_assert_cmpuint (sluice_reorder_buffer_get_n_live (rb), ==, 1);
  expect_next_item (rb, &counters[4]);
  expect_next_item (rb, &counters[5]);
  g_assert_cmpuint (sluice_reorder_buffer_get_n_live (rb), ==, 0);

  /* The items of the list in hand that nobody took are freed, once. */
  slots = reserve_n (rb, 1);
  g_assert_true (sluice_reorder_buffer_complete (slots[0], list_of (counters, 9, 2), NULL));
  g_free (slots);
  sluice_reorder_buffer_consumer_done (rb);
  sluice_reorder_buffer_unref (rb);
  for (guint i = 0; i < 6; i++)
    g_assert_cmpint (counters[i], ==, 0);
  for (guint i = 6; i < 11; i++)
    g_assert_cmpint (counters[i], ==, 1);
  for (guint i = 11; i < G_N_ELEMENTS (counters); i++)
    g_assert_cmpint (counters[i], ==, 0);
}

/* ---- 3. a failed slot ends the stream ---------------------------------------- */

static void
test_failed_slot (void)
{
  gint freed[10] = { 0 };
  SluiceReorderBuffer *rb = sluice_reorder_buffer_new (16, counted_item_free, NULL);
  SluiceSlot **slots = reserve_n (rb, 10);
  const GError *abort_error;
  Callbacks cb;

  callbacks_init (&cb);
  set_all_callbacks (rb, &cb);

  /* Backwards, all but the last; slot 5 fails. */
  for (guint i = 9; i-- > 0;)
    {
      if (i == 5)
        g_assert_true (sluice_reorder_buffer_complete (
            slots[i], NULL,
            g_error_new_literal (G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "slot 5 is bad")));
      else
        g_assert_true (sluice_reorder_buffer_complete (slots[i], &freed[i], NULL));
    }

  /* What comes before the failure is delivered. */
  for (guint i = 0; i < 5; i++)
    expect_next_item (rb, &freed[i]);
  /* Then the failure, every time. */
  expect_next_error (rb, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "slot 5 is bad");
  expect_next_error (rb, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "slot 5 is bad");
  g_assert_true (sluice_reorder_buffer_consumer_finished (rb));

  /* It stopped everything: the failure is the abort error. */
  g_assert_true (sluice_reorder_buffer_is_aborted (rb));
  g_assert_true (is_closed (rb));
  abort_error = sluice_reorder_buffer_get_abort_error (rb);
  g_assert_error ((GError *) abort_error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_assert_cmpstr (abort_error->message, ==, "slot 5 is bad");
  g_assert_true (g_cancellable_is_cancelled (sluice_reorder_buffer_get_cancellable (rb)));

  /* Delivered items are the consumer's; those after the failure were
   * freed, once. */
  for (guint i = 0; i < 5; i++)
    g_assert_cmpint (freed[i], ==, 0);
  for (guint i = 6; i < 9; i++)
    g_assert_cmpint (freed[i], ==, 1);

  /* The slot still pending is abandoned: its late result is freed. */
  g_assert_cmpuint (N_SETTLED (&cb), ==, 0);
  g_assert_false (sluice_reorder_buffer_is_settled (rb));
  g_assert_false (sluice_reorder_buffer_complete (slots[9], &freed[9], NULL));
  g_assert_cmpint (freed[9], ==, 1);
  g_assert_cmpuint (N_SETTLED (&cb), ==, 1);
  g_assert_true (sluice_reorder_buffer_is_settled (rb));

  sluice_reorder_buffer_unref (rb);
  for (guint i = 0; i < 10; i++)
    g_assert_cmpint (freed[i], ==, i <= 5 ? 0 : 1);
  g_assert_cmpuint (cb.n_settled, ==, 1);
  g_free (slots);
  callbacks_clear (&cb);
}

/* ---- 4. skip-failed mode ------------------------------------------------------ */

static gboolean
is_failing_seq (guint seq)
{
  return seq == 0 || seq == 3 || seq == 7 || seq == 8 || seq == 19;
}

static void
test_skip_failed (gconstpointer data)
{
  gboolean with_callback = GPOINTER_TO_INT (data);
  static const guint64 failing[] = { 0, 3, 7, 8, 19 };
  const guint n = 20;
  gint freed[20] = { 0 };
  SluiceReorderBuffer *rb = sluice_reorder_buffer_new (32, counted_item_free, NULL);
  SluiceSlot **slots;
  Callbacks cb;

  callbacks_init (&cb);
  cb.consumer_thread = g_thread_self ();
  if (with_callback)
    set_all_callbacks (rb, &cb);
  g_assert_false (sluice_reorder_buffer_get_skip_failed (rb));
  sluice_reorder_buffer_set_skip_failed (rb, TRUE);
  g_assert_true (sluice_reorder_buffer_get_skip_failed (rb));

  slots = reserve_n (rb, n);
  for (guint i = n; i-- > 0;)
    {
      if (is_failing_seq (i))
        g_assert_true (sluice_reorder_buffer_complete (
            slots[i], NULL, g_error_new (TEST_ITEM_ERROR, (int) i, "item %u failed", i)));
      else
        g_assert_true (sluice_reorder_buffer_complete (slots[i], &freed[i], NULL));
    }
  g_assert_true (sluice_reorder_buffer_end (rb));

  /* Every good item, in order; then a clean end. */
  for (guint i = 0; i < n; i++)
    {
      if (!is_failing_seq (i))
        expect_next_item (rb, &freed[i]);
    }
  expect_next_end (rb);
  g_assert_false (sluice_reorder_buffer_is_aborted (rb));
  g_assert_cmpuint (sluice_reorder_buffer_get_n_live (rb), ==, 0);
  g_assert_true (has_room (rb));

  /* Each failure reported once, in order, with its own error. */
  if (with_callback)
    {
      g_assert_cmpuint (cb.failed_seqs->len, ==, G_N_ELEMENTS (failing));
      for (guint i = 0; i < G_N_ELEMENTS (failing); i++)
        {
          GError *error = g_ptr_array_index (cb.failed_errors, i);
          g_autofree char *message = g_strdup_printf ("item %u failed", (guint) failing[i]);

          g_assert_cmpuint (g_array_index (cb.failed_seqs, guint64, i), ==, failing[i]);
          g_assert_error (error, TEST_ITEM_ERROR, (int) failing[i]);
          g_assert_cmpstr (error->message, ==, message);
        }
      g_assert_cmpuint (N_WRONG_THREAD (&cb), ==, 0);
    }
  else
    {
      g_assert_cmpuint (cb.failed_seqs->len, ==, 0);
    }

  sluice_reorder_buffer_unref (rb);
  /* Delivered items are the consumer's: nothing was freed. */
  for (guint i = 0; i < n; i++)
    g_assert_cmpint (freed[i], ==, 0);
  g_free (slots);
  callbacks_clear (&cb);
}

/* ---- claims: one completion per slot, whatever the timing ------------------- */

/* The interleavings of two completers of one slot, made one by one: the
 * second claim comes while the first completion is under way (claimed, not
 * yet published), after it, and after the ring place was reused. Only the
 * first claim wins; an abort between a claim and its publication frees the
 * item and settles. */
static void
test_claims (void)
{
  gint freed[4] = { 0 };
  SluiceReorderBuffer *rb = sluice_reorder_buffer_new (2, counted_item_free, NULL);
  SluiceSlot **slots = reserve_n (rb, 2);
  SluiceSlot *first = sluice_reorder_buffer_slot_handle (slots[0]);
  SluiceSlot *second = sluice_reorder_buffer_slot_handle (slots[1]);
  SluiceSlot *raw, *reused, *later;
  gpointer item;
  guint64 seq;
  Callbacks cb;

  callbacks_init (&cb);
  set_all_callbacks (rb, &cb);

  /* Two completers at the same moment: the first claims, the second fails
   * before and after the first publishes. */
  g_assert_true (sluice_reorder_buffer_claim (first, &raw));
  g_assert_true (raw == slots[0]);
  g_assert_false (sluice_reorder_buffer_claim (first, &raw));
  g_assert_false (sluice_reorder_buffer_slot_from_handle (first, &raw, &seq));
  g_assert_cmpuint (seq, ==, 0);
  g_assert_true (sluice_reorder_buffer_publish (raw, &freed[0], NULL));
  g_assert_false (sluice_reorder_buffer_claim (first, &raw));

  /* Taken by the consumer, the place reused by item 2: still refused. */
  g_assert_true (sluice_reorder_buffer_next (rb, &item, NULL));
  g_assert_true (item == &freed[0]);
  g_free (reserve_n (rb, 1));
  reused = sluice_reorder_buffer_get_reserved_slot (rb, 2);
  g_assert_true (reused == slots[0]);
  later = sluice_reorder_buffer_slot_handle (reused);
  g_assert_true (later != first);
  g_assert_false (sluice_reorder_buffer_claim (first, &raw));
  g_assert_true (sluice_reorder_buffer_slot_from_handle (later, &raw, &seq));
  g_assert_cmpuint (seq, ==, 2);

  /* Claimed, then the buffer aborts, then the publication: freed, settled. */
  g_assert_true (sluice_reorder_buffer_claim (second, &raw));
  g_assert_true (sluice_reorder_buffer_abort (rb, NULL));
  g_assert_cmpuint (N_SETTLED (&cb), ==, 0);
  g_assert_false (sluice_reorder_buffer_publish (raw, &freed[1], NULL));
  g_assert_cmpint (freed[1], ==, 1);
  g_assert_cmpuint (N_SETTLED (&cb), ==, 0);
  /* An abandoned slot is claimed once too. */
  g_assert_true (sluice_reorder_buffer_claim (later, &raw));
  g_assert_false (sluice_reorder_buffer_claim (later, &raw));
  g_assert_false (sluice_reorder_buffer_publish (raw, &freed[2], NULL));
  g_assert_cmpint (freed[2], ==, 1);
  g_assert_cmpuint (N_SETTLED (&cb), ==, 1);

  sluice_reorder_buffer_consumer_done (rb);
  sluice_reorder_buffer_unref (rb);
  g_assert_cmpint (freed[0], ==, 0); /* the consumer's: it took it */
  g_assert_cmpint (freed[3], ==, 0);
  g_free (slots);
  callbacks_clear (&cb);
}

/* ---- 5. abort with pending slots --------------------------------------------- */

static void
test_abort_pending (void)
{
  gint freed[6] = { 0 };
  SluiceReorderBuffer *rb = sluice_reorder_buffer_new (8, counted_item_free, NULL);
  SluiceSlot **slots = reserve_n (rb, 6);
  g_autoptr (GError) stop_error = NULL;
  g_autoptr (GError) other_error = NULL;
  const GError *abort_error;
  Callbacks cb;

  callbacks_init (&cb);
  set_all_callbacks (rb, &cb);

  g_assert_true (sluice_reorder_buffer_complete (slots[0], &freed[0], NULL));
  g_assert_true (sluice_reorder_buffer_complete (slots[1], &freed[1], NULL));
  g_assert_true (sluice_reorder_buffer_complete (slots[3], &freed[3], NULL));

  stop_error = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, "stopped by the test");
  g_assert_true (sluice_reorder_buffer_abort (rb, stop_error));
  g_clear_error (&stop_error); /* the buffer keeps a copy */

  /* Completed items are freed at once; nothing settled, 3 slots pending. */
  g_assert_cmpint (freed[0], ==, 1);
  g_assert_cmpint (freed[1], ==, 1);
  g_assert_cmpint (freed[3], ==, 1);
  g_assert_true (sluice_reorder_buffer_is_aborted (rb));
  g_assert_true (is_closed (rb));
  g_assert_true (g_cancellable_is_cancelled (sluice_reorder_buffer_get_cancellable (rb)));
  g_assert_cmpuint (N_SETTLED (&cb), ==, 0);
  g_assert_false (sluice_reorder_buffer_is_settled (rb));

  /* A second abort does nothing: the first error stays. */
  other_error = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_FAILED, "second abort");
  g_assert_false (sluice_reorder_buffer_abort (rb, other_error));
  g_assert_false (sluice_reorder_buffer_end (rb));
  abort_error = sluice_reorder_buffer_get_abort_error (rb);
  g_assert_error ((GError *) abort_error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpstr (abort_error->message, ==, "stopped by the test");

  /* Late results are refused and freed; settled only after the last. */
  g_assert_false (sluice_reorder_buffer_complete (slots[4], &freed[4], NULL));
  g_assert_cmpint (freed[4], ==, 1);
  g_assert_cmpuint (N_SETTLED (&cb), ==, 0);
  g_assert_false (sluice_reorder_buffer_complete (
      slots[2], NULL, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_FAILED, "late failure")));
  g_assert_cmpuint (N_SETTLED (&cb), ==, 0);
  g_assert_false (sluice_reorder_buffer_is_settled (rb));
  g_assert_false (sluice_reorder_buffer_complete (slots[5], &freed[5], NULL));
  g_assert_cmpint (freed[5], ==, 1);
  g_assert_cmpuint (N_SETTLED (&cb), ==, 1);
  g_assert_true (sluice_reorder_buffer_is_settled (rb));

  /* The consumer sees the abort error. */
  expect_next_error (rb, G_IO_ERROR, G_IO_ERROR_CANCELLED, "stopped by the test");
  g_assert_true (sluice_reorder_buffer_consumer_finished (rb));

  sluice_reorder_buffer_unref (rb);
  g_assert_cmpuint (cb.n_settled, ==, 1);
  for (guint i = 0; i < 6; i++)
    g_assert_cmpint (freed[i], ==, i == 2 ? 0 : 1);
  g_free (slots);
  callbacks_clear (&cb);
}

/* A quiet abort (no error) with nothing pending settles at once; the
 * consumer just ends. */
static void
test_abort_quiet (void)
{
  gint freed[3] = { 0 };
  SluiceReorderBuffer *rb = sluice_reorder_buffer_new (4, counted_item_free, NULL);
  SluiceSlot **slots = reserve_n (rb, 3);
  Callbacks cb;

  callbacks_init (&cb);
  set_all_callbacks (rb, &cb);
  for (guint i = 0; i < 3; i++)
    g_assert_true (sluice_reorder_buffer_complete (slots[i], &freed[i], NULL));
  expect_next_item (rb, &freed[0]);

  g_assert_true (sluice_reorder_buffer_abort (rb, NULL));
  g_assert_cmpuint (N_SETTLED (&cb), ==, 1);
  g_assert_true (sluice_reorder_buffer_is_settled (rb));
  g_assert_null (sluice_reorder_buffer_get_abort_error (rb));

  /* The consumer's batch held items 1 and 2: freed, not handed out. */
  expect_next_end (rb);
  g_assert_cmpint (freed[0], ==, 0);
  g_assert_cmpint (freed[1], ==, 1);
  g_assert_cmpint (freed[2], ==, 1);

  sluice_reorder_buffer_unref (rb);
  g_assert_cmpint (freed[1], ==, 1);
  g_assert_cmpint (freed[2], ==, 1);
  g_assert_cmpuint (cb.n_settled, ==, 1);
  g_free (slots);
  callbacks_clear (&cb);
}

/* consumer_done() before the end stops the buffer quietly. */
static void
test_consumer_done (void)
{
  gint freed[4] = { 0 };
  SluiceReorderBuffer *rb = sluice_reorder_buffer_new (4, counted_item_free, NULL);
  SluiceSlot **slots = reserve_n (rb, 4);
  Callbacks cb;

  callbacks_init (&cb);
  set_all_callbacks (rb, &cb);
  g_assert_true (sluice_reorder_buffer_complete (slots[0], &freed[0], NULL));
  g_assert_true (sluice_reorder_buffer_complete (slots[1], &freed[1], NULL));
  expect_next_item (rb, &freed[0]);

  sluice_reorder_buffer_consumer_done (rb);
  g_assert_true (sluice_reorder_buffer_is_aborted (rb));
  g_assert_null (sluice_reorder_buffer_get_abort_error (rb));
  g_assert_cmpint (freed[1], ==, 1);
  g_assert_cmpuint (N_SETTLED (&cb), ==, 0);

  g_assert_false (sluice_reorder_buffer_complete (slots[3], &freed[3], NULL));
  g_assert_false (sluice_reorder_buffer_complete (slots[2], &freed[2], NULL));
  g_assert_cmpuint (N_SETTLED (&cb), ==, 1);

  sluice_reorder_buffer_unref (rb);
  for (guint i = 0; i < 4; i++)
    g_assert_cmpint (freed[i], ==, i == 0 ? 0 : 1);
  g_free (slots);
  callbacks_clear (&cb);
}

/* An abort racing with completions and a consumer: every item is either
 * delivered (in order, a prefix) or freed by the buffer, exactly once, and
 * the settled callback comes exactly once. */

typedef struct
{
  SluiceSlot **slots;
  gint *freed;
  guint first;
  guint n;
  gboolean backwards;
  Event *start;
} Completer;

static gpointer
completer_thread (gpointer data)
{
  Completer *completer = data;

  event_wait (completer->start);
  for (guint k = 0; k < completer->n; k++)
    {
      guint i = completer->first + (completer->backwards ? completer->n - 1 - k : k);

      sluice_reorder_buffer_complete (completer->slots[i], &completer->freed[i], NULL);
    }
  return NULL;
}

typedef struct
{
  SluiceReorderBuffer *rb;
  gint *freed;
  guint n_received;
  guint n_bad_order;
  gboolean result;
  GError *error;
} PrefixConsumer;

static gpointer
prefix_consumer_thread (gpointer data)
{
  PrefixConsumer *consumer = data;
  gpointer item = NULL;

  while ((consumer->result = sluice_reorder_buffer_next (consumer->rb, &item, &consumer->error)))
    {
      if (item != &consumer->freed[consumer->n_received])
        consumer->n_bad_order++;
      consumer->n_received++;
      /* The consumer frees what it got, with the same counter. */
      counted_item_free (item);
    }
  return NULL;
}

static void
test_abort_concurrent (void)
{
  enum
  {
    N_SLOTS = 64
  };
  guint n_rounds = sluice_test_scale (300, 15);
  guint n_delivered_total = 0;

  for (guint round = 0; round < n_rounds; round++)
    {
      gint freed[N_SLOTS] = { 0 };
      SluiceReorderBuffer *rb = sluice_reorder_buffer_new (N_SLOTS, counted_item_free, NULL);
      SluiceSlot **slots = reserve_n (rb, N_SLOTS);
      g_autoptr (GError) stop_error =
          g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, "abort race");
      Event start;
      Completer completers[2] = {
        { slots, freed, 0, N_SLOTS / 2, FALSE, &start },
        { slots, freed, N_SLOTS / 2, N_SLOTS / 2, TRUE, &start },
      };
      PrefixConsumer consumer = { rb, freed };
      GThread *threads[3];
      Callbacks cb;

      callbacks_init (&cb);
      set_all_callbacks (rb, &cb);
      event_init (&start);
      threads[0] = g_thread_new ("consumer", prefix_consumer_thread, &consumer);
      threads[1] = g_thread_new ("completer", completer_thread, &completers[0]);
      threads[2] = g_thread_new ("completer", completer_thread, &completers[1]);

      event_set (&start);
      /* Vary how far the completions got before the abort. */
      for (guint spin = 0; spin < (round % 8) * 200; spin++)
        g_thread_yield ();
      g_assert_true (sluice_reorder_buffer_abort (rb, stop_error));

      for (guint t = 0; t < 3; t++)
        g_thread_join (threads[t]);

      g_assert_false (consumer.result);
      g_assert_error (consumer.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
      g_assert_cmpuint (consumer.n_bad_order, ==, 0);
      n_delivered_total += consumer.n_received;

      for (guint i = 0; i < N_SLOTS; i++)
        g_assert_cmpint (freed[i], ==, 1);
      g_assert_cmpuint (N_SETTLED (&cb), ==, 1);
      g_assert_true (sluice_reorder_buffer_is_settled (rb));

      sluice_reorder_buffer_unref (rb);
      for (guint i = 0; i < N_SLOTS; i++)
        g_assert_cmpint (freed[i], ==, 1);
      g_clear_error (&consumer.error);
      event_clear (&start);
      callbacks_clear (&cb);
      g_free (slots);
    }
  g_test_message ("%u items delivered before the aborts", n_delivered_total);
}

/* ---- 6. pause holds delivery --------------------------------------------------- */

typedef struct
{
  SluiceReorderBuffer *rb;
  GMutex mutex;
  GArray *items; /* guint values received */
  gboolean result;
  GError *error;
  Event started;
} RecordingConsumer;

static gpointer
recording_consumer_thread (gpointer data)
{
  RecordingConsumer *consumer = data;
  gpointer item = NULL;

  event_set (&consumer->started);
  while ((consumer->result = sluice_reorder_buffer_next (consumer->rb, &item, &consumer->error)))
    {
      guint value = GPOINTER_TO_UINT (item);

      g_mutex_lock (&consumer->mutex);
      g_array_append_val (consumer->items, value);
      g_mutex_unlock (&consumer->mutex);
    }
  return NULL;
}

static guint
recording_consumer_count (RecordingConsumer *consumer)
{
  guint n;

  g_mutex_lock (&consumer->mutex);
  n = consumer->items->len;
  g_mutex_unlock (&consumer->mutex);
  return n;
}

/* @ready_first: the items are complete before the consumer starts;
 * otherwise they arrive while it waits for them. */
static void
test_pause (gconstpointer data)
{
  gboolean ready_first = GPOINTER_TO_INT (data);
  const guint n = 10;
  SluiceReorderBuffer *rb = sluice_reorder_buffer_new (16, NULL, NULL);
  RecordingConsumer consumer = { rb };
  SluiceSlot **slots;
  GThread *thread;

  g_mutex_init (&consumer.mutex);
  consumer.items = g_array_new (FALSE, FALSE, sizeof (guint));
  event_init (&consumer.started);

  if (ready_first)
    {
      slots = reserve_n (rb, n);
      for (guint i = 0; i < n; i++)
        g_assert_true (sluice_reorder_buffer_complete (slots[i], GUINT_TO_POINTER (i + 1), NULL));
      sluice_reorder_buffer_set_paused (rb, TRUE);
      thread = g_thread_new ("consumer", recording_consumer_thread, &consumer);
      event_wait (&consumer.started);
    }
  else
    {
      thread = g_thread_new ("consumer", recording_consumer_thread, &consumer);
      event_wait (&consumer.started);
      /* Let it go to sleep waiting for the head (it has nothing either
       * way). */
      g_usleep (20 * 1000);
      sluice_reorder_buffer_set_paused (rb, TRUE);
      slots = reserve_n (rb, n);
      for (guint i = 0; i < n; i++)
        g_assert_true (sluice_reorder_buffer_complete (slots[i], GUINT_TO_POINTER (i + 1), NULL));
    }
  g_assert_true (sluice_reorder_buffer_end (rb));

  /* "Nothing happened" check: paused, the consumer gets nothing. */
  g_usleep (100 * 1000);
  g_assert_cmpuint (recording_consumer_count (&consumer), ==, 0);
  g_assert_false (sluice_reorder_buffer_consumer_finished (rb));

  sluice_reorder_buffer_set_paused (rb, FALSE);
  g_thread_join (thread);

  g_assert_false (consumer.result);
  g_assert_no_error (consumer.error);
  g_assert_cmpuint (consumer.items->len, ==, n);
  for (guint i = 0; i < n; i++)
    g_assert_cmpuint (g_array_index (consumer.items, guint, i), ==, i + 1);

  g_free (slots);
  g_array_unref (consumer.items);
  g_mutex_clear (&consumer.mutex);
  event_clear (&consumer.started);
  sluice_reorder_buffer_unref (rb);
}

/* ---- 7. concurrency stress ------------------------------------------------------ */

#define STRESS_WINDOW 64
/* Every FAIL_PERIOD-th item fails in the skip-failed variant. */
#define FAIL_PERIOD 97

static SluiceSlot stress_sentinel;

typedef struct
{
  GAsyncQueue *queue;
  gboolean with_failures;
  guint32 seed;
  guint n_refused; /* completions that returned FALSE: must stay 0 */
} StressCompleter;

static void
stress_complete (StressCompleter *completer, SluiceSlot *slot)
{
  guint64 seq = slot->seq; /* read before the slot is handed over */

  if (completer->with_failures && seq % FAIL_PERIOD == FAIL_PERIOD - 1)
    {
      if (!sluice_reorder_buffer_complete (
              slot, NULL, g_error_new (TEST_ITEM_ERROR, 1, "item %" G_GUINT64_FORMAT, seq)))
        completer->n_refused++;
    }
  else
    {
      if (!sluice_reorder_buffer_complete (slot, GUINT_TO_POINTER ((guint) seq + 1), NULL))
        completer->n_refused++;
    }
}

static gpointer
stress_completer_thread (gpointer data)
{
  StressCompleter *completer = data;
  g_autoptr (GRand) rng = g_rand_new_with_seed (completer->seed);

  for (;;)
    {
      SluiceSlot *a = g_async_queue_timeout_pop (
          completer->queue, (guint64) SLUICE_TEST_TIMEOUT_SECONDS * G_USEC_PER_SEC);
      SluiceSlot *b;
      guint32 dice;

      g_assert_nonnull (a);
      if (a == &stress_sentinel)
        break;

      /* Take a second slot if one is there (never wait for it: the owner
       * may need the first one completed to get room for more) and complete
       * the two in random order. */
      b = g_async_queue_try_pop (completer->queue);
      dice = g_rand_int (rng);
      if ((dice & 0x3ff) == 0)
        g_usleep (g_rand_int_range (rng, 0, 4));
      if (b == &stress_sentinel)
        {
          stress_complete (completer, a);
          break;
        }
      if (b != NULL && (dice & 0x400))
        {
          stress_complete (completer, b);
          stress_complete (completer, a);
        }
      else
        {
          stress_complete (completer, a);
          if (b != NULL)
            stress_complete (completer, b);
        }
    }
  return NULL;
}

typedef struct
{
  SluiceReorderBuffer *rb;
  gboolean with_failures;
  guint n_received;
  guint n_bad_order;
  guint64 next_seq; /* expected sequence number of the next good item */
  guint64 max_live;
  GError *error;
} StressConsumer;

static gboolean
stress_seq_fails (gboolean with_failures, guint64 seq)
{
  return with_failures && seq % FAIL_PERIOD == FAIL_PERIOD - 1;
}

static gpointer
stress_consumer_thread (gpointer data)
{
  StressConsumer *consumer = data;
  gpointer item = NULL;

  while (sluice_reorder_buffer_next (consumer->rb, &item, &consumer->error))
    {
      guint64 live = sluice_reorder_buffer_get_n_live (consumer->rb);

      consumer->max_live = MAX (consumer->max_live, live);
      while (stress_seq_fails (consumer->with_failures, consumer->next_seq))
        consumer->next_seq++;
      if (GPOINTER_TO_UINT (item) != consumer->next_seq + 1)
        consumer->n_bad_order++;
      consumer->next_seq++;
      consumer->n_received++;
    }
  return NULL;
}

typedef struct
{
  gboolean with_failures;
  guint window;
  gboolean early; /* completers may take the head for the consumer (set_early_room ()) */
  guint n;        /* items, before sluice_test_scale () */
} StressCase;

static const StressCase stress_plain = { FALSE, STRESS_WINDOW, FALSE, 1000000 };
static const StressCase stress_skip_failed = { TRUE, STRESS_WINDOW, FALSE, 1000000 };
/* Few in flight, where the consumer sleeps for the head and a completer
 * answers the owner's room request for it. */
static const StressCase stress_early_1 = { FALSE, 1, TRUE, 30000 };
static const StressCase stress_early_4 = { TRUE, 4, TRUE, 60000 };

static void
test_stress (gconstpointer data)
{
  const StressCase *sc = data;
  gboolean with_failures = sc->with_failures;
  guint n = sluice_test_scale (sc->n, 50);
  SluiceReorderBuffer *rb = sluice_reorder_buffer_new (sc->window, NULL, NULL);
  GAsyncQueue *queue = g_async_queue_new ();
  StressCompleter completers[2] = {
    { queue, with_failures, g_test_rand_int () },
    { queue, with_failures, g_test_rand_int () },
  };
  StressConsumer consumer = { rb, with_failures };
  GThread *completer_threads[2];
  GThread *consumer_thread;
  guint64 max_live = 0;
  guint n_room_waits = 0;
  guint n_failing = 0;
  Callbacks cb;

  callbacks_init (&cb);
  set_all_callbacks (rb, &cb);
  if (sc->early)
    set_early_callbacks (rb, &cb, TRUE);
  sluice_reorder_buffer_set_skip_failed (rb, with_failures);

  /* The room and failed callbacks must come from the consumer thread: hold
   * the lock while it is created, so none can run before it is known. */
  g_mutex_lock (&cb.mutex);
  consumer_thread = g_thread_new ("consumer", stress_consumer_thread, &consumer);
  cb.consumer_thread = consumer_thread;
  g_mutex_unlock (&cb.mutex);
  for (guint t = 0; t < 2; t++)
    completer_threads[t] = g_thread_new ("completer", stress_completer_thread, &completers[t]);

  for (guint64 seq = 0; seq < n; seq++)
    {
      SluiceSlot *slot;
      guint64 live;

      for (;;)
        {
          gint64 deadline;

          /* Clear the flag before asking: a callback after the question
           * sets it again, so no wake-up is lost. */
          g_mutex_lock (&cb.mutex);
          cb.room_flag = FALSE;
          g_mutex_unlock (&cb.mutex);

          sluice_reorder_buffer_lock (rb);
          if (sluice_reorder_buffer_has_room_locked (rb, FALSE))
            {
              slot = sluice_reorder_buffer_reserve_locked (rb);
              /* Only this thread adds: exact at the moment of reading. */
              live = sluice_reorder_buffer_get_n_live (rb);
              sluice_reorder_buffer_unlock (rb);
              break;
            }
          sluice_reorder_buffer_unlock (rb);

          n_room_waits++;
          deadline = deadline_from_now ();
          g_mutex_lock (&cb.mutex);
          while (!cb.room_flag)
            {
              if (!g_cond_wait_until (&cb.cond, &cb.mutex, deadline))
                break;
            }
          g_assert_true (cb.room_flag);
          g_mutex_unlock (&cb.mutex);
        }

      if (slot->seq != seq)
        g_assert_cmpuint (slot->seq, ==, seq);
      max_live = MAX (max_live, live);
      if (stress_seq_fails (with_failures, seq))
        n_failing++;
      g_async_queue_push (queue, slot);
    }
  g_assert_true (sluice_reorder_buffer_end (rb));
  g_async_queue_push (queue, &stress_sentinel);
  g_async_queue_push (queue, &stress_sentinel);

  for (guint t = 0; t < 2; t++)
    g_thread_join (completer_threads[t]);
  g_thread_join (consumer_thread);

  g_test_message ("%u room waits, %u room callbacks, %u early answers", n_room_waits, cb.n_room,
                  cb.n_early);

  g_assert_no_error (consumer.error);
  g_assert_cmpuint (consumer.n_bad_order, ==, 0);
  g_assert_cmpuint (consumer.n_received, ==, n - n_failing);
  g_assert_cmpuint (completers[0].n_refused + completers[1].n_refused, ==, 0);
  /* Live items never exceeded the window, seen from either side. */
  g_assert_cmpuint (max_live, <=, sc->window);
  g_assert_cmpuint (consumer.max_live, <=, sc->window);
  g_assert_cmpuint (cb.n_wrong_thread, ==, 0);
  g_assert_cmpuint (cb.n_settled, ==, 0);
  g_assert_true (sluice_reorder_buffer_is_settled (rb));
  g_assert_cmpuint (sluice_reorder_buffer_get_n_live (rb), ==, 0);

  /* In skip-failed mode, each failure was reported once, in order. */
  g_assert_cmpuint (cb.failed_seqs->len, ==, n_failing);
  for (guint i = 0; i < cb.failed_seqs->len; i++)
    {
      GError *error = g_ptr_array_index (cb.failed_errors, i);
      guint64 seq = g_array_index (cb.failed_seqs, guint64, i);

      if (seq != (guint64) i * FAIL_PERIOD + FAIL_PERIOD - 1)
        g_assert_cmpuint (seq, ==, (guint64) i * FAIL_PERIOD + FAIL_PERIOD - 1);
      g_assert_error (error, TEST_ITEM_ERROR, 1);
    }

  g_async_queue_unref (queue);
  sluice_reorder_buffer_unref (rb);
  callbacks_clear (&cb);
}

/* ---- main ------------------------------------------------------------------- */

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_data_func ("/reorder-buffer/reverse", GINT_TO_POINTER (FALSE), test_reverse);
  g_test_add_data_func ("/reorder-buffer/reverse-threaded", GINT_TO_POINTER (TRUE), test_reverse);
  g_test_add_func ("/reorder-buffer/window", test_window);
  g_test_add_func ("/reorder-buffer/stale-mark", test_stale_mark);
  g_test_add_func ("/reorder-buffer/short-run", test_short_run);
  g_test_add_func ("/reorder-buffer/wake-rule", test_wake_rule);
  g_test_add_data_func ("/reorder-buffer/early-room", GINT_TO_POINTER (EARLY_TAKEN),
                        test_early_room);
  g_test_add_data_func ("/reorder-buffer/early-room-refused", GINT_TO_POINTER (EARLY_REFUSED),
                        test_early_room);
  g_test_add_data_func ("/reorder-buffer/early-room-aborted", GINT_TO_POINTER (EARLY_ABORTED),
                        test_early_room);
  g_test_add_data_func ("/reorder-buffer/early-room-not-asked", GINT_TO_POINTER (EARLY_NOT_ASKED),
                        test_early_room);
  g_test_add_func ("/reorder-buffer/idle-no-spin", test_idle_no_spin);
  g_test_add_data_func ("/reorder-buffer/refill-run", GINT_TO_POINTER (REFILL), test_refill_run);
  g_test_add_data_func ("/reorder-buffer/refill-run-end", GINT_TO_POINTER (REFILL_END),
                        test_refill_run);
  g_test_add_data_func ("/reorder-buffer/refill-run-not-yet", GINT_TO_POINTER (REFILL_NOT_YET),
                        test_refill_run);
  g_test_add_func ("/reorder-buffer/try-reserve", test_try_reserve);
  g_test_add_func ("/reorder-buffer/wait-unreserved", test_wait_unreserved);
  g_test_add_func ("/reorder-buffer/lists", test_lists);
  g_test_add_func ("/reorder-buffer/failed-slot", test_failed_slot);
  g_test_add_data_func ("/reorder-buffer/skip-failed", GINT_TO_POINTER (TRUE), test_skip_failed);
  g_test_add_data_func ("/reorder-buffer/skip-failed-no-callback", GINT_TO_POINTER (FALSE),
                        test_skip_failed);
  g_test_add_func ("/reorder-buffer/claims", test_claims);
  g_test_add_func ("/reorder-buffer/abort-pending", test_abort_pending);
  g_test_add_func ("/reorder-buffer/abort-quiet", test_abort_quiet);
  g_test_add_func ("/reorder-buffer/consumer-done", test_consumer_done);
  g_test_add_func ("/reorder-buffer/abort-concurrent", test_abort_concurrent);
  g_test_add_data_func ("/reorder-buffer/pause", GINT_TO_POINTER (TRUE), test_pause);
  g_test_add_data_func ("/reorder-buffer/pause-while-waiting", GINT_TO_POINTER (FALSE), test_pause);
  g_test_add_data_func ("/reorder-buffer/stress", &stress_plain, test_stress);
  g_test_add_data_func ("/reorder-buffer/stress-skip-failed", &stress_skip_failed, test_stress);
  g_test_add_data_func ("/reorder-buffer/stress-early-1", &stress_early_1, test_stress);
  g_test_add_data_func ("/reorder-buffer/stress-early-4-skip-failed", &stress_early_4, test_stress);

  return g_test_run ();
}
