/* test-stress.c: a million items completed in random order from many threads
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* CPU_SET () */
#endif

#include <sluice/sluice.h>

#include "sluice-test-util.h"

#ifdef __linux__
#include <pthread.h>
#include <sched.h>
#endif

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

/* /stress/window-one/apart: the completer threads bound to processor 0,
 * the consumer to processor 1 (where the consumer spins for its item
 * instead of sleeping: spin_apart () in sluice-reorder-buffer.c). */
static gboolean bind_apart;

#ifdef __linux__
/* Binds the calling thread to @cpu, or back to @restore when it is not NULL. */
static void
bind_thread (int cpu, const cpu_set_t *restore)
{
  cpu_set_t set;

  if (restore != NULL)
    set = *restore;
  else
    {
      CPU_ZERO (&set);
      CPU_SET (cpu, &set);
    }
  g_assert_cmpint (pthread_setaffinity_np (pthread_self (), sizeof set, &set), ==, 0);
}
#endif

/* A slot and what to complete it with. */
typedef struct
{
  SluiceSlot *slot;
  gpointer item;
} Pending;

/* Completer threads: take Pendings from the queue as they come, keep a few,
 * and complete them in a shuffled order, now and then after a short sleep.
 * GINT_TO_POINTER (1) tells them to quit. */
static gpointer
completer (gpointer data)
{
  GAsyncQueue *queue = data;
  Pending *held[SHUFFLE_MAX];
  guint n_held = 0;
  GRand *rand = g_rand_new ();

#ifdef __linux__
  if (bind_apart)
    bind_thread (0, NULL);
#endif
  for (;;)
    {
      Pending *pending = g_async_queue_pop (queue);
      guint keep = g_rand_int_range (rand, 1, SHUFFLE_MAX + 1);
      gboolean quit = pending == GINT_TO_POINTER (1);

      /* Take what is queued, up to a random hand size; never wait with
       * slots in hand (the owner may be waiting for room). */
      while (!quit && pending != NULL)
        {
          held[n_held++] = pending;
          if (n_held >= keep)
            break;
          pending = g_async_queue_try_pop (queue);
          quit = pending == GINT_TO_POINTER (1);
        }

      while (n_held > 0)
        {
          guint pick = g_rand_int_range (rand, 0, n_held);
          Pending *done = held[pick];

          held[pick] = held[--n_held];
          if (g_rand_int_range (rand, 0, 64) == 0)
            g_usleep (g_rand_int_range (rand, 0, 20));
          sluice_slot_complete (done->slot, done->item);
          g_free (done);
        }
      if (quit)
        break;
    }
  g_rand_free (rand);
  return NULL;
}

static void
push_pending (GAsyncQueue *queue, SluiceSlot *slot, gpointer item)
{
  Pending *pending = g_new (Pending, 1);

  pending->slot = slot;
  pending->item = item;
  g_async_queue_push (queue, pending);
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
  push_pending (stress->slots, slot, GSIZE_TO_POINTER (sluice_slot_get_sequence (slot) + 1));
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
#ifdef __linux__
  /* The consumer may run on a pool's thread: give its processors back. */
  cpu_set_t saved;

  if (bind_apart)
    {
      g_assert_cmpint (pthread_getaffinity_np (pthread_self (), sizeof saved, &saved), ==, 0);
      bind_thread (1, NULL);
    }
#endif

  tally->first_bad = G_MAXUINT64;
  while (sluice_consumerator_next (consumerator, &item, error))
    {
      guint64 value = GPOINTER_TO_SIZE (item);

      if (value != tally->count + 1 && tally->first_bad == G_MAXUINT64)
        tally->first_bad = tally->count;
      tally->count++;
      tally->sum += value;
    }
#ifdef __linux__
  if (bind_apart)
    bind_thread (-1, &saved);
#endif
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
    threads[i] = g_thread_new ("completer", completer, stress.slots);
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

  sluice_ordered_item_producer_stop_async (stress.producer, NULL, stopped, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  t = sluice_ordered_item_producer_stop_finish (stress.producer, result, &error);
  g_assert_no_error (error);
  g_object_unref (result);

  for (guint i = 0; i < N_COMPLETERS; i++)
    g_async_queue_push (stress.slots, GINT_TO_POINTER (1));
  for (guint i = 0; i < N_COMPLETERS; i++)
    g_thread_join (threads[i]);

  {
    g_autoptr (GVariant) stats = sluice_ordered_item_producer_get_stats (stress.producer);
    guint64 spins = 0, sleeps = 0;

    g_variant_lookup (stats, "consumer-spins", "t", &spins);
    g_variant_lookup (stats, "consumer-sleeps", "t", &sleeps);
    g_test_message (
        "%u items, window %u: max live %u, deferred %u, consumer spins %" G_GUINT64_FORMAT
        ", sleeps %" G_GUINT64_FORMAT,
        n, window, stress.max_n_items, stress.deferred, spins, sleeps);
  }
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

/* --- consumed on the main loop (next_async), with cancelled requests and
 * produce calls past the window --- */

typedef struct
{
  SluiceConsumerator *consumerator;
  GRand *rand;
  Tally tally;
  guint n_cancelled;
  gboolean ended;
  GError *error;
} AsyncTally;

static void take_next (AsyncTally *async);

static void
on_next (GObject *source, GAsyncResult *result, gpointer data)
{
  AsyncTally *async = data;
  g_autoptr (GError) error = NULL;
  gpointer item = NULL;

  if (!sluice_consumerator_next_finish (async->consumerator, result, &item, &error))
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          async->n_cancelled++;
          take_next (async);
          return;
        }
      async->error = g_steal_pointer (&error);
      async->ended = TRUE;
      return;
    }
  if (GPOINTER_TO_SIZE (item) != async->tally.count + 1 && async->tally.first_bad == G_MAXUINT64)
    async->tally.first_bad = async->tally.count;
  async->tally.count++;
  async->tally.sum += GPOINTER_TO_SIZE (item);
  take_next (async);
}

/* One request at a time, now and then with a cancellable that fires before
 * or while it waits: its item must go to the next request. */
static void
take_next (AsyncTally *async)
{
  g_autoptr (GCancellable) cancellable = NULL;

  if (g_rand_int_range (async->rand, 0, 50) == 0)
    cancellable = g_cancellable_new ();
  sluice_consumerator_next_async (async->consumerator, cancellable, on_next, async);
  if (cancellable != NULL)
    g_cancellable_cancel (cancellable);
}

static void
test_next_async_random_order (void)
{
  guint n = sluice_test_scale (100000, 50);
  guint window = 64;
  Stress stress = { 0 };
  GThread *threads[N_COMPLETERS];
  GAsyncResult *result = NULL;
  g_autoptr (GError) error = NULL;
  AsyncTally async = { 0 };

  stress.window = window;
  stress.slots = g_async_queue_new ();
  stress.producer = sluice_ordered_item_producer_new (NULL, window, NULL);
  for (guint i = 0; i < N_COMPLETERS; i++)
    threads[i] = g_thread_new ("completer", completer, stress.slots);
  async.consumerator = sluice_ordered_item_producer_get_consumerator (stress.producer);
  async.rand = g_rand_new ();
  async.tally.first_bad = G_MAXUINT64;
  sluice_ordered_item_producer_start (stress.producer, NULL, NULL, NULL, NULL);
  take_next (&async);

  for (guint i = 0; i < n; i++)
    {
      /* Mostly within the window; every 97th call past it (it waits, and
       * starts as soon as there is a place). */
      while (i % 97 != 0 && !sluice_ordered_item_producer_is_ready (stress.producer))
        g_main_context_iteration (NULL, TRUE);
      if (i % 5 == 0)
        sluice_ordered_item_producer_produce_item_in_thread (stress.producer, in_thread,
                                                             GSIZE_TO_POINTER ((gsize) i + 1), NULL,
                                                             G_PRIORITY_DEFAULT, NULL, NULL, NULL);
      else
        sluice_ordered_item_producer_produce_item (stress.producer, hand_to_completers, &stress,
                                                   NULL, NULL, NULL, NULL);
    }

  sluice_ordered_item_producer_stop_async (stress.producer, NULL, stopped, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_assert_null (sluice_ordered_item_producer_stop_finish (stress.producer, result, &error));
  g_assert_no_error (error);
  g_object_unref (result);
  g_assert_true (async.ended);
  g_assert_no_error (async.error);

  for (guint i = 0; i < N_COMPLETERS; i++)
    g_async_queue_push (stress.slots, GINT_TO_POINTER (1));
  for (guint i = 0; i < N_COMPLETERS; i++)
    g_thread_join (threads[i]);

  g_test_message ("%u items on the main loop, window %u: max live %u, %u requests cancelled", n,
                  window, stress.max_n_items, async.n_cancelled);
  g_assert_cmpuint (async.tally.first_bad, ==, G_MAXUINT64);
  g_assert_cmpuint (async.tally.count, ==, n);
  g_assert_cmpuint (async.tally.sum, ==, (guint64) n * (n + 1) / 2);
  g_assert_cmpuint (stress.max_n_items, <=, window);
  g_rand_free (async.rand);
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

/* A window of 1 with the consumer on another processor than the threads
 * that complete the items: the consumer spins for each item where it would
 * sleep, with its sleep registered, so completers take the item for it and
 * answer the owner's room (the early room answer) while it spins. Then the
 * same unbound. Every item once, in order, within the window. */
static void
test_window_one_apart (void)
{
#ifdef __linux__
  cpu_set_t set;

  if (sched_getaffinity (0, sizeof set, &set) != 0 || !CPU_ISSET (0, &set) || !CPU_ISSET (1, &set))
    {
      g_test_skip ("needs processors 0 and 1");
      return;
    }
  bind_apart = TRUE;
  run_stress (sluice_test_scale (50000, 20), 1, 4, 1000);
  bind_apart = FALSE;
  run_stress (sluice_test_scale (50000, 20), 1, 4, 1000);
#else
  g_test_skip ("binds threads to processors: Linux only");
#endif
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

/* A wake latency that never runs out: the consumer wakes only for the item
 * it sleeps on, which, right after it made room, may be one the owner has
 * not reserved yet. The owner here always refills the window and ends with
 * a stop, so every such number gets reserved or the end retargets the
 * consumer: a consumer left asleep on a number nobody reserves hangs this
 * test. */
static void
test_random_order_no_deadline (void)
{
  run_stress (sluice_test_scale (300000, 30), 64, 4, G_MAXINT);
  run_stress (sluice_test_scale (300000, 30), 256, 0, G_MAXINT);
  run_stress (sluice_test_scale (100000, 10), 3, 2, G_MAXINT);
  /* Short runs of random length: the stop often comes with the last
   * refill short of the number the consumer sleeps on. */
  for (guint i = 0; i < sluice_test_scale (200, 20); i++)
    run_stress (g_test_rand_int_range (100, 3000), 64, g_test_rand_bit () ? 0 : 3, G_MAXINT);
}

/* ---- several producer threads at once ------------------------------------ */

#define N_PRODUCERS 4

typedef struct
{
  SluiceOrderedItemProducer *producer;
  GAsyncQueue *pending; /* of Pending, for the completers */
  guint per_thread;
  int n_running;    /* producer threads still producing, atomic */
  gint *freed;      /* abort test: how often each item was freed */
  gint *created;    /* abort test: whether each item was made */
  int n_destroyed;  /* func_data_destroy calls, atomic */
  int n_made;       /* abort test: items made so far, atomic */
  int stop_at_made; /* abort test: the thread that makes this many stops the producer */
} Crowd;

typedef struct
{
  Crowd *crowd;
  guint thread;
  guint k;
} Call;

static gpointer
crowd_item (Call *call)
{
  Crowd *crowd = call->crowd;
  guint index = call->thread * crowd->per_thread + call->k;

  if (crowd->freed != NULL)
    {
      g_atomic_int_inc (&crowd->created[index]);
      /* A stop from a producing thread or a pool thread, racing with the
       * consumer taking runs of items. */
      if (g_atomic_int_add (&crowd->n_made, 1) + 1 == crowd->stop_at_made)
        sluice_push_producer_stop_producing (SLUICE_PUSH_PRODUCER (crowd->producer));
      return &crowd->freed[index];
    }
  /* (thread, k + 1): each thread's items must come in its call order. */
  return GSIZE_TO_POINTER (((gsize) call->thread << 24) | (call->k + 1));
}

/* The item function: completes at once now and then, else hands the slot
 * to the completers, which complete in random order. */
static void
crowd_func (SluiceSlot *slot, gpointer data)
{
  Call *call = data;

  if (call->k % 5 == 0)
    sluice_slot_complete (slot, crowd_item (call));
  else
    push_pending (call->crowd->pending, slot, crowd_item (call));
}

static gpointer
crowd_thread_func (GCancellable *cancellable, gpointer data, GError **error)
{
  return crowd_item (data);
}

static void
call_free (gpointer data)
{
  Call *call = data;

  g_atomic_int_inc (&call->crowd->n_destroyed);
  g_free (call);
}

typedef struct
{
  Crowd *crowd;
  guint thread;
} ProducerThread;

static gpointer
producer_thread (gpointer data)
{
  ProducerThread *pt = data;
  Crowd *crowd = pt->crowd;

  for (guint k = 0; k < crowd->per_thread; k++)
    {
      Call *call = g_new (Call, 1);

      call->crowd = crowd;
      call->thread = pt->thread;
      call->k = k;
      if (k % 7 == 3)
        sluice_ordered_item_producer_produce_item_in_thread (crowd->producer, crowd_thread_func,
                                                             call, call_free, G_PRIORITY_DEFAULT,
                                                             NULL, NULL, NULL);
      else
        sluice_ordered_item_producer_produce_item (crowd->producer, crowd_func, call, call_free,
                                                   NULL, NULL, NULL);
    }
  g_atomic_int_add (&crowd->n_running, -1);
  g_main_context_wakeup (NULL);
  return NULL;
}

typedef struct
{
  guint64 count;
  guint64 n_bad_order;
  guint next[N_PRODUCERS];
  /* The abort test: consume this many, then stop the producer. */
  guint stop_after;
  Crowd *crowd;
} CrowdTally;

static gpointer
crowd_tally (SluiceConsumerator *consumerator, gpointer data, GError **error)
{
  CrowdTally *t = data;
  gpointer item;

  while (sluice_consumerator_next (consumerator, &item, error))
    {
      t->count++;
      if (t->crowd->freed != NULL)
        {
          counted_item_free (item);
          if (t->count == t->stop_after)
            sluice_push_producer_stop_producing (SLUICE_PUSH_PRODUCER (t->crowd->producer));
          continue;
        }
      {
        guint thread = GPOINTER_TO_SIZE (item) >> 24;
        guint k1 = GPOINTER_TO_SIZE (item) & 0xffffff;

        if (thread >= N_PRODUCERS || k1 != t->next[thread] + 1)
          t->n_bad_order++;
        else
          t->next[thread] = k1;
      }
    }
  return *error == NULL ? t : NULL;
}

/* Runs N_PRODUCERS threads of produce calls against one consumer, the
 * window small enough that calls race with full windows, deferred calls
 * and (with @stop_after) a stop from the consumer or (with @stop_at_made)
 * from the thread that makes that many items. */
static void
run_crowd (guint per_thread, guint window, guint stop_after, guint stop_at_made)
{
  Crowd crowd = { 0 };
  CrowdTally tally = { 0 };
  ProducerThread pts[N_PRODUCERS];
  GThread *producers[N_PRODUCERS];
  GThread *completers[N_COMPLETERS];
  GAsyncResult *result = NULL;
  g_autoptr (GError) error = NULL;
  guint n = per_thread * N_PRODUCERS;
  gpointer ret;

  crowd.per_thread = per_thread;
  crowd.pending = g_async_queue_new ();
  crowd.n_running = N_PRODUCERS;
  crowd.stop_at_made = (int) stop_at_made;
  if (stop_after > 0 || stop_at_made > 0)
    {
      crowd.freed = g_new0 (gint, n);
      crowd.created = g_new0 (gint, n);
    }
  crowd.producer = sluice_ordered_item_producer_new (
      NULL, window, crowd.freed != NULL ? counted_item_free : NULL);
  tally.crowd = &crowd;
  tally.stop_after = stop_after;

  for (guint i = 0; i < N_COMPLETERS; i++)
    completers[i] = g_thread_new ("completer", completer, crowd.pending);
  sluice_ordered_item_producer_start (crowd.producer, crowd_tally, &tally, NULL, NULL);
  for (guint i = 0; i < N_PRODUCERS; i++)
    {
      pts[i].crowd = &crowd;
      pts[i].thread = i;
      producers[i] = g_thread_new ("producer", producer_thread, &pts[i]);
    }

  /* Deferred calls run here, on the owner context. */
  while (g_atomic_int_get (&crowd.n_running) > 0)
    g_main_context_iteration (NULL, TRUE);
  for (guint i = 0; i < N_PRODUCERS; i++)
    g_thread_join (producers[i]);

  sluice_ordered_item_producer_stop_async (crowd.producer, NULL, stopped, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  ret = sluice_ordered_item_producer_stop_finish (crowd.producer, result, &error);
  g_object_unref (result);

  for (guint i = 0; i < N_COMPLETERS; i++)
    g_async_queue_push (crowd.pending, GINT_TO_POINTER (1));
  for (guint i = 0; i < N_COMPLETERS; i++)
    g_thread_join (completers[i]);
  g_object_unref (crowd.producer);

  /* Every call's data was freed exactly once, run or refused. */
  g_assert_cmpint (crowd.n_destroyed, ==, n);

  if (crowd.freed == NULL)
    {
      g_assert_no_error (error);
      g_assert_true (ret == &tally);
      g_assert_cmpuint (tally.n_bad_order, ==, 0);
      g_assert_cmpuint (tally.count, ==, n);
      for (guint i = 0; i < N_PRODUCERS; i++)
        g_assert_cmpuint (tally.next[i], ==, per_thread);
    }
  else
    {
      guint n_created = 0;

      g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
      g_assert_null (ret);
      g_assert_cmpuint (tally.count, >=, stop_after);
      /* Each item that was made was freed once, by the consumer or by the
       * stop; none was freed that was not made. */
      for (guint i = 0; i < n; i++)
        {
          g_assert_cmpint (crowd.created[i], <=, 1);
          g_assert_cmpint (crowd.freed[i], ==, crowd.created[i]);
          n_created += crowd.created[i];
        }
      g_test_message ("%u of %u items made before the stop, %" G_GUINT64_FORMAT " consumed",
                      n_created, n, tally.count);
      g_free (crowd.freed);
      g_free (crowd.created);
    }
  g_async_queue_unref (crowd.pending);
}

static void
test_concurrent_producers (void)
{
  run_crowd (sluice_test_scale (50000, 25), 64, 0, 0);
}

static void
test_concurrent_producers_tiny_window (void)
{
  run_crowd (sluice_test_scale (20000, 20), 2, 0, 0);
}

/* A stop while four threads produce: reservations race with the abort. */
static void
test_stop_while_producing (void)
{
  for (guint round = 0; round < 20; round++)
    run_crowd (sluice_test_scale (5000, 10), 32, 1 + g_test_rand_int_range (0, 4000) / 10, 0);
}

/* A stop from a producing or pool thread while the consumer takes runs of
 * completed items (a wide window: long runs): the consumer frees a run's
 * slots without a locked instruction, so the stop must not free the same
 * ones (issue 19). Each item made is freed exactly once. */
static void
test_stop_while_consuming (void)
{
  guint per_thread = sluice_test_scale (5000, 10);

  for (guint round = 0; round < 20; round++)
    run_crowd (per_thread, 512, 0,
               1 + g_test_rand_int_range (0, (gint32) (per_thread * N_PRODUCERS)));
}

/* --- items made in the producer's own task queue only, completed in a
 * random order (each task sleeps or spins a random while), where every
 * slot is reserved already claimed for its task (the fast path of
 * produce_item_in_thread ()); optionally the consumer returns early, which
 * aborts the slots queued and running --- */

typedef struct
{
  gint made;     /* atomic: items the tasks returned */
  gint freed;    /* atomic: items the producer freed (never delivered) */
  guint64 count; /* consumer thread */
  guint64 sum;
  guint64 first_bad;
  guint64 stop_after; /* the consumer returns after this many; 0: never */
} ThreadOnly;

static ThreadOnly *thread_only_current;

static gpointer
thread_only_task (GCancellable *cancellable, gpointer data, GError **error)
{
  guint64 *item = g_new (guint64, 1);
  guint r = g_random_int_range (0, 256);

  *item = GPOINTER_TO_SIZE (data);
  /* Most tasks end at once, some after a spin or a sleep: the two or three
   * threads complete out of order, often the head last. */
  if (r < 8)
    g_usleep (r * 10);
  else if (r < 64)
    for (volatile guint k = 0; k < r * 20; k++)
      ;
  g_atomic_int_inc (&thread_only_current->made);
  return item;
}

static void
thread_only_free (gpointer item)
{
  g_atomic_int_inc (&thread_only_current->freed);
  g_free (item);
}

static gpointer
thread_only_consume (SluiceConsumerator *consumerator, gpointer data, GError **error)
{
  ThreadOnly *to = data;
  gpointer item;

  while (sluice_consumerator_next (consumerator, &item, error))
    {
      guint64 value = *(guint64 *) item;

      g_free (item);
      if (value != to->count + 1 && to->first_bad == G_MAXUINT64)
        to->first_bad = to->count;
      to->count++;
      to->sum += value;
      if (to->stop_after != 0 && to->count == to->stop_after)
        return GINT_TO_POINTER (1);
    }
  return *error == NULL ? GINT_TO_POINTER (1) : NULL;
}

static void
run_thread_only (guint n, guint window, guint n_threads, guint64 stop_after)
{
  ThreadOnly to = { 0, 0, 0, 0, G_MAXUINT64, stop_after };
  SluiceTaskQueue *queue = sluice_task_queue_new (n_threads);
  SluiceOrderedItemProducer *producer =
      sluice_ordered_item_producer_new (queue, window, thread_only_free);
  GAsyncResult *result = NULL;
  g_autoptr (GError) error = NULL;
  gpointer ret;

  thread_only_current = &to;
  sluice_ordered_item_producer_start (producer, thread_only_consume, &to, NULL, NULL);
  for (guint i = 0; i < n; i++)
    {
      /* Mostly within the window; now and then a call past it (it waits,
       * in order, and takes the slow path). */
      while (i % 211 != 0 && !sluice_ordered_item_producer_is_ready (producer))
        g_main_context_iteration (NULL, TRUE);
      sluice_ordered_item_producer_produce_item_in_thread (producer, thread_only_task,
                                                           GSIZE_TO_POINTER ((gsize) i + 1), NULL,
                                                           G_PRIORITY_DEFAULT, NULL, NULL, NULL);
    }
  sluice_ordered_item_producer_stop_async (producer, NULL, stopped, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  ret = sluice_ordered_item_producer_stop_finish (producer, result, &error);
  g_object_unref (result);
  g_object_unref (producer);
  /* Every task has returned once the queue is idle. */
  while (sluice_task_queue_get_n_pending (queue) > 0 || sluice_task_queue_get_n_running (queue) > 0)
    g_main_context_iteration (NULL, FALSE);
  g_object_unref (queue);

  g_test_message ("%u items, window %u, %u threads: delivered %" G_GUINT64_FORMAT
                  ", made %d, freed %d",
                  n, window, n_threads, to.count, to.made, to.freed);
  g_assert_cmpuint (to.first_bad, ==, G_MAXUINT64);
  if (stop_after == 0)
    {
      g_assert_no_error (error);
      g_assert_nonnull (ret);
      g_assert_cmpuint (to.count, ==, n);
      g_assert_cmpuint (to.sum, ==, (guint64) n * (n + 1) / 2);
      g_assert_cmpuint (to.freed, ==, 0);
    }
  else
    {
      g_clear_error (&error);
      g_assert_cmpuint (to.count, ==, MIN (stop_after, n));
    }
  /* Exactly once: every item a task made was delivered or freed. */
  g_assert_cmpuint ((guint64) to.made, ==, to.count + (guint64) to.freed);
  thread_only_current = NULL;
}

static void
test_thread_only_random_order (void)
{
  run_thread_only (sluice_test_scale (300000, 30), 64, 3, 0);
  run_thread_only (sluice_test_scale (50000, 25), 2, 2, 0);
}

/* The consumer returns while tasks are queued and running: their slots,
 * claimed at their reservation, are abandoned and their items freed. */
static void
test_thread_only_consumer_returns (void)
{
  for (guint round = 0; round < 20; round++)
    run_thread_only (sluice_test_scale (5000, 10), 32, 3,
                     1 + g_test_rand_int_range (0, sluice_test_scale (5000, 10)));
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/stress/random-order/million", test_random_order_million);
  g_test_add_func ("/stress/random-order/mixed-pool", test_random_order_mixed_pool);
  g_test_add_func ("/stress/random-order/tiny-window", test_random_order_tiny_window);
  g_test_add_func ("/stress/random-order/wake-per-item", test_random_order_wake_per_item);
  g_test_add_func ("/stress/window-one/apart", test_window_one_apart);
  g_test_add_func ("/stress/random-order/long-wake-latency", test_random_order_long_wake_latency);
  g_test_add_func ("/stress/random-order/no-deadline", test_random_order_no_deadline);
  g_test_add_func ("/stress/concurrent-producers", test_concurrent_producers);
  g_test_add_func ("/stress/concurrent-producers/tiny-window",
                   test_concurrent_producers_tiny_window);
  g_test_add_func ("/stress/stop-while-producing", test_stop_while_producing);
  g_test_add_func ("/stress/stop-while-consuming", test_stop_while_consuming);
  g_test_add_func ("/stress/next-async/random-order", test_next_async_random_order);
  g_test_add_func ("/stress/thread-only/random-order", test_thread_only_random_order);
  g_test_add_func ("/stress/thread-only/consumer-returns", test_thread_only_consumer_returns);

  return g_test_run ();
}
