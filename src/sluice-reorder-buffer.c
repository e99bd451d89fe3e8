/* sluice-reorder-buffer.c: the one mechanism that puts items in order
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * An array ring indexed by sequence number. Completions publish into their
 * slot with one compare-and-swap and no lock; the single consumer takes runs
 * of ready slots into a private batch and hands them out one by one. A thread
 * sleeps only when there is nothing to do, and is woken only by the event it
 * waits for: the consumer marks the one slot it sleeps on, so every other
 * completion stays lock-free.
 *
 * Window accounting: `accepted` counts reservations (plus overflow pushes),
 * `handed` counts items the consumer has taken; `accepted - handed` are the
 * live items, kept at or below the window by the owner, which asks for room
 * with has_room_locked() and gets the room function called at low water (or
 * at the first free place while produce calls wait for room).
 */

#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getcpu () */
#endif

#include "sluice-reorder-buffer-private.h"

#ifdef __linux__
#include <sched.h>
#endif

#ifdef SLUICE_SLOT_COMPLETE_PENDING
#include <cpuid.h>
#endif

/* Polls of the awaited slot before the consumer goes to sleep: a wake-up
 * costs ~5 µs on the machines this was tuned on, but a consumer spinning
 * long takes the core a worker needs (2 workers on 2 cores); 40 pauses
 * (about 1 µs) measured better than 0, 10 and 200 for small work. */
#define SPIN_MAX 40
/* The adaptive spin of a consumer that wakes per item (below
 * WAKE_RUN_MIN_IN_FLIGHT, or items WAKE_RUN_GAP_MAX_US apart), after the
 * polls above: SluiceSpinRule (sluice-private.h) and adaptive_spin (). */
/* Waking once per run of items (below) pays only when there are enough of
 * them in flight to make a run: with fewer the consumer wakes per item,
 * which keeps the latency of a lightly loaded stream at that of a plain
 * condition variable (bench/run, latency). */
#define WAKE_RUN_MIN_IN_FLIGHT 8
/* A consumer with work in flight sleeps until the item three quarters of the
 * way through it (at most this far ahead) is complete, or for at most the
 * wake latency (SLUICE_WAKE_LATENCY_DEFAULT_US unless the owner sets
 * another), instead of waking per item. The last quarter keeps the workers
 * busy while it takes the run and the owner refills the window. Measured on
 * 2 cores (bench/run, 2 us items): three quarters against half cut context
 * switches by 15% and brought small work from 0.96-0.97 to 0.98-1.00 of
 * oneTBB; a 2 ms deadline against 1 ms halved them again for 50 us items
 * (54 -> 29 per 1000), and
 * 5 ms against 2 ms halved them once more (33 -> 16): each wake-up preempts
 * a worker, and the speedup of 50 us items went from 1.958 to 1.970 on
 * average (8 and 9 alternating runs of 3 repetitions, each within +-0.02).
 * Right after it made room for an owner that waited for it and refills
 * from another thread (the room function says so), the consumer sizes the
 * run by the window instead: what is in flight yet is only the last quarter.
 * Without this the consumer woke twice per refill (a short run, then a long
 * one): 11 -> 7 context switches per 1000 items of 2 us, small work 1.013 ->
 * 1.023 of oneTBB (means of 10 alternating processes each). */
#define WAKE_RUN_MAX 1024
/* The batching above saves wake-ups only when items come fast: it is the
 * rule under load, not at every depth. The consumer keeps a moving average
 * of the time between the items it takes (note_item_gap (), SluiceItemGap
 * in sluice-private.h), and sleeps for a run only while that is below
 * WAKE_RUN_GAP_MAX_US: a wake-up costs about 5 us on a VM, so waking per
 * item at longer gaps costs at most about 5 % of a core, and saves the item
 * up to a wake latency of waiting for its run. A run is also cut to the
 * items expected within the wake latency (its length times the gap): a run
 * that outlasts it costs a timeout and then a second sleep for the head. */
#define WAKE_RUN_GAP_MAX_US SLUICE_ITEM_GAP_BATCH_MAX_US
/* The longest spin of a consumer that waits for its one item in flight on
 * another processor than the thread that completed the last one it slept
 * for (spin_apart ()). The wait may hold a wake-up across processors of
 * the completer itself (the owner beside the consumer hands it the item):
 * kept apart that way, 50 us spun 50-60 % of the items (p50 1.4-24 us),
 * 100 us 96-98 % (p50 1.3-1.4 us). */
#define SPIN_APART_MAX_US 100

/* The processor the calling thread runs on, or -1 where that is unknown. */
static inline int
current_cpu (void)
{
#ifdef __linux__
  return sched_getcpu ();
#else
  return -1;
#endif
}

int
sluice_current_cpu (void)
{
  return current_cpu ();
}

static inline guint64
load64 (const guint64 *p)
{
  return __atomic_load_n (p, __ATOMIC_SEQ_CST);
}

static inline void
store64 (guint64 *p, guint64 v)
{
  __atomic_store_n (p, v, __ATOMIC_SEQ_CST);
}

/* For counters only their owner writes, read elsewhere: no full fence. */
static inline void
publish64 (guint64 *p, guint64 v)
{
  __atomic_store_n (p, v, __ATOMIC_RELEASE);
}

/* Counters only the consumer writes, on its slow path; read from anywhere. */
static inline void
stat_inc (guint64 *counter)
{
  __atomic_store_n (counter, __atomic_load_n (counter, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

/* The reservation lock's waiting loop (the header has the lock). */
G_GNUC_NO_INLINE void
sluice_reorder_buffer_reserve_lock_contended (SluiceReorderBuffer *rb)
{
  guint spins = 0;

  do
    {
      /* Wait without writing; a holder that was preempted gets the core. */
      while (__atomic_load_n (&rb->reserve_lock, __ATOMIC_RELAXED) != 0)
        {
          if (++spins < 100)
            sluice_cpu_relax ();
          else
            g_thread_yield ();
        }
    }
  while (__atomic_exchange_n (&rb->reserve_lock, 1, __ATOMIC_ACQUIRE) != 0);
}

#ifdef SLUICE_SLOT_COMPLETE_PENDING
int sluice_reorder_buffer_have_cx16;
#endif

SluiceReorderBuffer *
sluice_reorder_buffer_new (guint window, GDestroyNotify item_free_func, GCancellable *cancellable)
{
  SluiceReorderBuffer *rb;

  g_return_val_if_fail (window > 0, NULL);
  g_return_val_if_fail (window <= G_MAXINT / 2, NULL);

#ifdef SLUICE_SLOT_COMPLETE_PENDING
  {
    /* Before any slot exists: completions read it (complete_pending ()). */
    static gsize checked;

    if (g_once_init_enter (&checked))
      {
        unsigned int a, b, c = 0, d;

        if (__get_cpuid (1, &a, &b, &c, &d) && (c & bit_CMPXCHG16B))
          g_atomic_int_set (&sluice_reorder_buffer_have_cx16, 1);
        g_once_init_leave (&checked, 1);
      }
  }
#endif

  /* Aligned, so that the padding really separates the cache lines. */
  rb = g_aligned_alloc0 (1, sizeof (SluiceReorderBuffer), 64);
  rb->ref_count = 1;
  rb->window = window;
  /* Room again once a quarter of the window is free: against half, the
   * owner resumes before the pipeline drains (bench/run, same process:
   * handoff +6-8 %, slow consumer 0.87 -> 0.93-1.0 of oneTBB). */
  rb->low_water = window - MAX (1, window / 4);
  rb->capacity = 1;
  while (rb->capacity < window)
    {
      rb->capacity <<= 1;
      rb->lap_shift++;
    }
  rb->mask = rb->capacity - 1;
  rb->ring = g_aligned_alloc0 (rb->capacity, sizeof (SluiceSlot), 64);
#if GLIB_SIZEOF_VOID_P == 8
  rb->high_tags = ((guintptr) (rb->ring + rb->capacity) >> SLUICE_SLOT_HANDLE_HIGH_SHIFT) == 0;
#endif
  rb->tag_mask = (1u << (SLUICE_SLOT_HANDLE_LOW_TAG_BITS +
                         (rb->high_tags ? SLUICE_SLOT_HANDLE_HIGH_TAG_BITS : 0))) -
                 1;
  for (guint i = 0; i < rb->capacity; i++)
    rb->ring[i].rb = rb;
  rb->item_free_func = item_free_func;
  rb->wake_latency_us = SLUICE_WAKE_LATENCY_DEFAULT_US;
  sluice_spin_rule_init (&rb->spin_rule);
  sluice_spin_rule_init (&rb->apart_spin_rule);
  rb->completer_cpu = -1;
  rb->cancellable = cancellable != NULL ? g_object_ref (cancellable) : g_cancellable_new ();
  g_mutex_init (&rb->lock);
  g_cond_init (&rb->cond);
  g_queue_init (&rb->overflow);

  return rb;
}

SluiceReorderBuffer *
sluice_reorder_buffer_ref (SluiceReorderBuffer *rb)
{
  g_atomic_int_inc (&rb->ref_count);
  return rb;
}

static void
free_item (SluiceReorderBuffer *rb, gpointer item)
{
  if (item != NULL && rb->item_free_func != NULL)
    rb->item_free_func (item);
}

/* In lists mode, the items of @list from @from on, and the list. */
static void
free_list_from (SluiceReorderBuffer *rb, GPtrArray *list, guint from)
{
  for (guint i = from; i < list->len; i++)
    free_item (rb, list->pdata[i]);
  g_ptr_array_unref (list);
}

/* What a slot (or the overflow, or the batch) holds: one item, or in lists
 * mode a list of them. */
static void
free_slot_item (SluiceReorderBuffer *rb, gpointer item, gboolean single)
{
  if (rb->lists && !single && item != NULL)
    free_list_from (rb, item, 0);
  else
    free_item (rb, item);
}

void
sluice_reorder_buffer_set_lists (SluiceReorderBuffer *rb, gboolean lists)
{
  rb->lists = lists;
}

void
sluice_reorder_buffer_set_item_free_func (SluiceReorderBuffer *rb, GDestroyNotify item_free_func)
{
  rb->item_free_func = item_free_func;
}

void
sluice_reorder_buffer_free_item (SluiceReorderBuffer *rb, gpointer item)
{
  free_item (rb, item);
}

void
sluice_reorder_buffer_unref (SluiceReorderBuffer *rb)
{
  gpointer item;

  if (!g_atomic_int_dec_and_test (&rb->ref_count))
    return;

  /* Whatever is still buffered: completed slots, the overflow, the batch. */
  for (guint i = 0; i < rb->capacity; i++)
    {
      SluiceSlot *slot = &rb->ring[i];
      SluiceSlotState kind = SLUICE_SLOT_KIND (slot->state);

      if (kind == SLUICE_SLOT_READY)
        free_slot_item (rb, slot->item, slot->single);
      else if (kind == SLUICE_SLOT_FAILED)
        g_error_free (slot->item);
      /* Pending or claimed slots cannot exist here: each one is either
       * completed or abandoned, and abandoned ones hold a reference. */
      g_warn_if_fail (kind == SLUICE_SLOT_FREE || kind == SLUICE_SLOT_READY ||
                      kind == SLUICE_SLOT_FAILED);
    }
  while ((item = g_queue_pop_head (&rb->overflow)) != NULL)
    free_slot_item (rb, item, FALSE);
  for (guint i = rb->batch_pos; i < rb->batch_len; i++)
    free_slot_item (rb, rb->batch[i], (rb->batch_single >> i) & 1);
  if (rb->list != NULL)
    free_list_from (rb, rb->list, rb->list_pos);
  if (rb->early_taken)
    free_slot_item (rb, rb->early_item, rb->early_single);

  if (rb->callback_data_destroy != NULL)
    rb->callback_data_destroy (rb->callback_data);
  g_clear_error (&rb->abort_error);
  g_clear_object (&rb->cancellable);
  g_mutex_clear (&rb->lock);
  g_cond_clear (&rb->cond);
  g_aligned_free (rb->ring);
  g_aligned_free (rb);
}

void
sluice_reorder_buffer_set_callbacks (SluiceReorderBuffer *rb,
                                     SluiceReorderRoomFunc room_func,
                                     SluiceReorderFailedFunc failed_func,
                                     SluiceReorderSettledFunc settled_func,
                                     gpointer data,
                                     GDestroyNotify data_destroy)
{
  rb->room_func = room_func;
  rb->failed_func = failed_func;
  rb->settled_func = settled_func;
  rb->callback_data = data;
  rb->callback_data_destroy = data_destroy;
}

void
sluice_reorder_buffer_set_early_room (SluiceReorderBuffer *rb,
                                      SluiceReorderEarlyMayFunc may_func,
                                      SluiceReorderEarlyAnswerFunc answer_func)
{
  rb->early_may_func = may_func;
  rb->early_answer_func = answer_func;
}

void
sluice_reorder_buffer_set_room_wanted_flag (SluiceReorderBuffer *rb, int *flag)
{
  rb->room_wanted = flag;
}

void
sluice_reorder_buffer_set_consumer_cpu_slot (SluiceReorderBuffer *rb, int *cpu)
{
  rb->consumer_cpu = cpu;
}

/* With the reservation lock held: a room request was made. */
static inline void
raise_room_wanted (SluiceReorderBuffer *rb)
{
  if (rb->room_wanted != NULL)
    g_atomic_int_set (rb->room_wanted, 1);
}

gpointer
sluice_reorder_buffer_get_callback_data (SluiceReorderBuffer *rb)
{
  return rb->callback_data;
}

guint
sluice_reorder_buffer_get_window (SluiceReorderBuffer *rb)
{
  return rb->window;
}

guint
sluice_reorder_buffer_get_low_water (SluiceReorderBuffer *rb)
{
  return rb->low_water;
}

void
sluice_reorder_buffer_set_skip_failed (SluiceReorderBuffer *rb, gboolean skip_failed)
{
  g_atomic_int_set (&rb->skip_failed, !!skip_failed);
}

gboolean
sluice_reorder_buffer_get_skip_failed (SluiceReorderBuffer *rb)
{
  return g_atomic_int_get (&rb->skip_failed);
}

void
sluice_reorder_buffer_set_wake_latency (SluiceReorderBuffer *rb, guint microseconds)
{
  g_atomic_int_set (&rb->wake_latency_us, (int) MIN (microseconds, (guint) G_MAXINT));
}

guint
sluice_reorder_buffer_get_wake_latency (SluiceReorderBuffer *rb)
{
  return (guint) g_atomic_int_get (&rb->wake_latency_us);
}

void
sluice_reorder_buffer_lock (SluiceReorderBuffer *rb)
{
  g_mutex_lock (&rb->lock);
}

void
sluice_reorder_buffer_unlock (SluiceReorderBuffer *rb)
{
  g_mutex_unlock (&rb->lock);
}

guint64
sluice_reorder_buffer_get_n_live (SluiceReorderBuffer *rb)
{
  guint64 handed = load64 (&rb->handed);
  guint64 accepted = load64 (&rb->accepted);

  return accepted > handed ? accepted - handed : 0;
}

gboolean
sluice_reorder_buffer_has_room_locked (SluiceReorderBuffer *rb, gboolean calls_wait)
{
  gboolean room;

  sluice_reorder_buffer_reserve_lock (rb);
  room = sluice_reorder_buffer_fits_reserving (rb, 1);
  if (!room)
    {
      /* Ask the consumer to call back at low water (or at the first free
       * place for calls that wait), then look again. The consumer reads the
       * request after every item and, with a full fence, before it sleeps,
       * so the request cannot be missed for good. A lower level asked for
       * earlier and not answered yet is raised, never lowered. */
      /* The last caller knows whether calls wait now (its writers hold the
       * lock): a level left high after the calls ran would end the
       * hysteresis. */
      g_atomic_int_set (&rb->room_level, calls_wait ? (int) rb->window - 1 : (int) rb->low_water);
      g_atomic_int_set (&rb->want_room, 1);
      raise_room_wanted (rb);
      rb->handed_seen = load64 (&rb->handed);
      room = rb->accepted - rb->handed_seen < rb->window;
    }
  sluice_reorder_buffer_reserve_unlock (rb);

  return room;
}

void
sluice_reorder_buffer_want_room_locked (SluiceReorderBuffer *rb)
{
  sluice_reorder_buffer_reserve_lock (rb);
  if (!g_atomic_int_get (&rb->want_room) ||
      g_atomic_int_get (&rb->room_level) < (int) rb->low_water)
    g_atomic_int_set (&rb->room_level, (int) rb->low_water);
  g_atomic_int_set (&rb->want_room, 1);
  raise_room_wanted (rb);
  sluice_reorder_buffer_reserve_unlock (rb);
}

gboolean
sluice_reorder_buffer_is_closed_locked (SluiceReorderBuffer *rb)
{
  return (g_atomic_int_get (&rb->flags) & (SLUICE_RB_ENDED | SLUICE_RB_ABORTED)) != 0;
}

SluiceSlot *
sluice_reorder_buffer_reserve_locked (SluiceReorderBuffer *rb)
{
  SluiceSlot *slot;

  sluice_reorder_buffer_reserve_lock (rb);
  slot = sluice_reorder_buffer_reserve_reserving (rb);
  sluice_reorder_buffer_reserve_unlock (rb);

  return slot;
}

SluiceSlot *
sluice_reorder_buffer_get_reserved_slot (SluiceReorderBuffer *rb, guint64 seq)
{
  SluiceSlot *slot = &rb->ring[seq & rb->mask];

  g_assert (seq < load64 (&rb->next_seq));
  return slot;
}

void
sluice_reorder_buffer_set_gate_locked (SluiceReorderBuffer *rb, gboolean open)
{
  sluice_reorder_buffer_reserve_lock (rb);
  rb->gate_open = open;
  sluice_reorder_buffer_reserve_unlock (rb);
}

/* With both locks held. */
static void
push_into_ring_reserving (SluiceReorderBuffer *rb, gpointer item)
{
  guint64 seq = rb->next_seq;
  SluiceSlot *slot = &rb->ring[seq & rb->mask];

  slot->seq = seq;
  slot->item = item;
  slot->single = FALSE;
  publish64 (&rb->next_seq, seq + 1);
  g_atomic_int_set (&slot->state, SLUICE_SLOT_READY);
}

static inline gboolean
ring_has_space_reserving (SluiceReorderBuffer *rb)
{
  return rb->next_seq - load64 (&rb->head) < rb->capacity;
}

/* With the lock held: the standalone queue's overflow moves into the ring
 * as far as it fits. */
static void
drain_overflow_locked (SluiceReorderBuffer *rb)
{
  if (g_queue_is_empty (&rb->overflow))
    return;
  sluice_reorder_buffer_reserve_lock (rb);
  while (!g_queue_is_empty (&rb->overflow) && ring_has_space_reserving (rb))
    push_into_ring_reserving (rb, g_queue_pop_head (&rb->overflow));
  sluice_reorder_buffer_reserve_unlock (rb);
}

void
sluice_reorder_buffer_push_locked (SluiceReorderBuffer *rb, gpointer item)
{
  sluice_reorder_buffer_reserve_lock (rb);
  if (g_queue_is_empty (&rb->overflow) && ring_has_space_reserving (rb))
    push_into_ring_reserving (rb, item);
  else
    g_queue_push_tail (&rb->overflow, item);
  store64 (&rb->accepted, rb->accepted + 1);
  sluice_reorder_buffer_reserve_unlock (rb);

  if (g_atomic_int_get (&rb->consumer_sleeping))
    g_cond_signal (&rb->cond);
}

static void
settle_one (SluiceReorderBuffer *rb)
{
  if (g_atomic_int_dec_and_test (&rb->abandoned))
    {
      g_mutex_lock (&rb->lock);
      rb->settled_by_abort = TRUE;
      g_mutex_unlock (&rb->lock);
      if (rb->settled_func != NULL)
        rb->settled_func (rb->callback_data);
      /* The reference the abort took for its abandoned slots. */
      sluice_reorder_buffer_unref (rb);
    }
}

gboolean
sluice_reorder_buffer_claim_slow (SluiceSlot *slot, int tag_bits)
{
  for (;;)
    {
      int state = g_atomic_int_get (&slot->state);
      int claimed;

      /* Another lap, or free: the handle's slot was completed and taken. */
      if (SLUICE_SLOT_TAG_BITS (state) != tag_bits)
        return FALSE;
      switch (SLUICE_SLOT_KIND (state))
        {
        case SLUICE_SLOT_PENDING:
          claimed = SLUICE_SLOT_CLAIMED;
          break;
        case SLUICE_SLOT_WAITED:
          claimed = SLUICE_SLOT_CLAIMED_WAITED;
          break;
        case SLUICE_SLOT_ABANDONED:
          claimed = SLUICE_SLOT_CLAIMED_ABANDONED;
          break;
        default:
          /* Claimed or published already. */
          return FALSE;
        }
      if (g_atomic_int_compare_and_exchange (&slot->state, state, tag_bits | claimed))
        return TRUE;
    }
}

/* The early room answer (sluice_reorder_buffer_set_early_room ()): with
 * the lock held, by a completer that has just published @slot (@state: its
 * state now) for a consumer asleep on it. The consumer cannot run while we
 * hold the lock (it sleeps in the condition wait, or waits for the lock to
 * return from it), so its fields are ours for a moment. Takes the item for
 * it, when the slot is the head the consumer sleeps for and taking it
 * answers an open room request of the owner: the caller then answers the
 * request with the early answer function, after it has woken the consumer.
 * Returns whether it did. The answer is not owed to anybody later: it is
 * paid at once, by the caller (an answer left for the consumer's next call
 * or the owner's next poll deadlocks a window of 1: nothing else runs).
 * An abort after this finds the item with the consumer, who frees it. */
static gboolean
take_early_locked (SluiceReorderBuffer *rb, SluiceSlot *slot, int state)
{
  guint64 seq = slot->seq;
  guint64 live;

  if (!rb->early_ok || SLUICE_SLOT_KIND (state) != SLUICE_SLOT_READY ||
      !g_atomic_int_get (&rb->consumer_sleeping) ||
      __atomic_load_n (&rb->consumer_wait_seq, __ATOMIC_RELAXED) != seq || seq != rb->head ||
      (g_atomic_int_get (&rb->flags) & (SLUICE_RB_ABORTED | SLUICE_RB_PAUSED)) ||
      !g_atomic_int_get (&rb->want_room))
    return FALSE;
  /* `accepted` only grows meanwhile: a live count read too low is not. */
  live = load64 (&rb->accepted) - rb->handed;
  if (live - 1 > (guint64) g_atomic_int_get (&rb->room_level) ||
      !g_atomic_int_compare_and_exchange (&rb->want_room, 1, 0))
    return FALSE;
  /* Nothing else frees a published slot while we hold the lock: the
   * consumer sleeps, and an abort (which takes the lock first) was not
   * under way when we looked at the flags. */
  if (!g_atomic_int_compare_and_exchange (&slot->state, state, SLUICE_SLOT_FREE))
    {
      g_atomic_int_set (&rb->want_room, 1);
      return FALSE;
    }
  rb->early_item = slot->item;
  rb->early_single = slot->single;
  /* A consumer in spin_apart () reads it without the lock. */
  __atomic_store_n (&rb->early_taken, TRUE, __ATOMIC_RELEASE);
  store64 (&rb->head, seq + 1);
  publish64 (&rb->handed, rb->handed + 1);
  stat_inc (&rb->stats.early);
  /* As answer_room () does when the room function says the owner refills
   * from another thread, which the early answer always does. */
  if (live - 1 <= rb->low_water)
    rb->refilling = TRUE;
  return TRUE;
}

gboolean
sluice_reorder_buffer_publish_slow (SluiceSlot *slot, int state, int new_state)
{
  for (;;)
    {
      SluiceReorderBuffer *rb = slot->rb;
      gboolean published;
      gboolean early;

      switch (SLUICE_SLOT_KIND (state))
        {
        case SLUICE_SLOT_CLAIMED:
          if (g_atomic_int_compare_and_exchange (&slot->state, state, new_state))
            return TRUE;
          break;

        case SLUICE_SLOT_CLAIMED_WAITED:
          /* The consumer sleeps on this slot, or did: it re-reads the
           * state under the lock. The buffer outlives this: a slot not
           * completed keeps it, through the consumer that must wait for
           * it, or through the reference an abort takes for the slots it
           * abandons. The consumer may have stopped waiting (back to
           * CLAIMED) or an abort abandoned the slot meanwhile: the CAS
           * tells.
           *
           * The signal comes after the unlock: a consumer woken while we
           * hold the lock blocks on it at once and needs a second wake-up
           * (bench/run, 2 us items: a third of its sleeps were that). It
           * cannot miss the signal: it looked at the slot under the lock
           * before it slept. Once the slot is published the consumer may
           * take the item and let go of the buffer, so our own reference
           * keeps the condition alive. */
          sluice_reorder_buffer_ref (rb);
          g_mutex_lock (&rb->lock);
          /* For the consumer's choice between a sleep and a spin
           * (spin_apart (), a window of 1 only); written only when it
           * changes: the line is read by every thread. */
          if (rb->window == 1)
            {
              int cpu = current_cpu ();

              if (g_atomic_int_get (&rb->completer_cpu) != cpu)
                g_atomic_int_set (&rb->completer_cpu, cpu);
            }
          published = g_atomic_int_compare_and_exchange (&slot->state, state, new_state);
          early = published && take_early_locked (rb, slot, new_state);
          g_mutex_unlock (&rb->lock);
          if (published)
            g_cond_signal (&rb->cond);
          /* After the signal: the owner's wake-up runs beside the
           * consumer's. */
          if (early)
            rb->early_answer_func (rb->callback_data);
          sluice_reorder_buffer_unref (rb);
          if (published)
            return TRUE;
          break;

        case SLUICE_SLOT_CLAIMED_ABANDONED:
          {
            gpointer item = g_steal_pointer (&slot->item);

            if (SLUICE_SLOT_KIND (new_state) == SLUICE_SLOT_FAILED)
              g_error_free (item);
            else
              free_slot_item (rb, item, slot->single);
            g_atomic_int_set (&slot->state, SLUICE_SLOT_FREE);
            settle_one (rb);
            return FALSE;
          }

        default:
          g_assert_not_reached ();
        }
      state = g_atomic_int_get (&slot->state);
    }
}

void
sluice_reorder_buffer_claim_reserved (SluiceSlot *slot)
{
  int state = g_atomic_int_get (&slot->state);
  gboolean claimed = sluice_reorder_buffer_claim_slow (slot, SLUICE_SLOT_TAG_BITS (state));

  /* The owner completes each reserved slot once. */
  g_assert (claimed);
}

gboolean
sluice_reorder_buffer_complete (SluiceSlot *slot, gpointer item, GError *error)
{
  sluice_reorder_buffer_claim_reserved (slot);
  return sluice_reorder_buffer_publish (slot, item, error);
}

gboolean
sluice_reorder_buffer_complete_single (SluiceSlot *slot, gpointer item)
{
  sluice_reorder_buffer_claim_reserved (slot);
  /* Published with the item: the consumer reads it after the state. */
  slot->single = TRUE;
  return sluice_reorder_buffer_publish (slot, item, NULL);
}

gboolean
sluice_reorder_buffer_slot_from_handle (SluiceSlot *handle, SluiceSlot **out_slot, guint64 *out_seq)
{
  int tag_bits;
  SluiceSlot *slot = sluice_slot_handle_decode (handle, &tag_bits);
  SluiceReorderBuffer *rb = slot->rb;
  guint64 tag = (guint64) tag_bits >> SLUICE_SLOT_KIND_BITS;
  guint64 place_mask = ((guint64) rb->tag_mask << rb->lap_shift) | rb->mask;
  guint64 seq, handle_seq;
  int state;

  /* The state first: a reservation stores the number, then the state
   * (release), so a state that belongs to a later number comes with it. */
  state = g_atomic_int_get (&slot->state);
  seq = __atomic_load_n (&slot->seq, __ATOMIC_ACQUIRE);

  /* The handle's number: the latest one up to the slot's own with the
   * slot's place in the ring and the handle's lap bits. */
  handle_seq = (seq & ~place_mask) | (tag << rb->lap_shift) | (guint64) (slot - rb->ring);
  if (handle_seq > seq)
    handle_seq -= place_mask + 1;

  *out_slot = slot;
  *out_seq = handle_seq;
  switch (SLUICE_SLOT_KIND (state))
    {
    case SLUICE_SLOT_PENDING:
    case SLUICE_SLOT_WAITED:
    case SLUICE_SLOT_ABANDONED:
      return SLUICE_SLOT_TAG_BITS (state) == tag_bits;
    default:
      return FALSE;
    }
}

static void
wake_consumer_locked (SluiceReorderBuffer *rb)
{
  if (g_atomic_int_get (&rb->consumer_sleeping))
    g_cond_signal (&rb->cond);
}

gboolean
sluice_reorder_buffer_end_locked (SluiceReorderBuffer *rb)
{
  if (g_atomic_int_get (&rb->flags) & (SLUICE_RB_ENDED | SLUICE_RB_ABORTED))
    return FALSE;

  /* No reservation may slip in between: the end is the last number. */
  sluice_reorder_buffer_reserve_lock (rb);
  store64 (&rb->end_seq, rb->next_seq + rb->overflow.length);
  g_atomic_int_or (&rb->flags, SLUICE_RB_ENDED);
  sluice_reorder_buffer_reserve_unlock (rb);
  wake_consumer_locked (rb);
  return TRUE;
}

gboolean
sluice_reorder_buffer_end (SluiceReorderBuffer *rb)
{
  gboolean ended;

  g_mutex_lock (&rb->lock);
  ended = sluice_reorder_buffer_end_locked (rb);
  g_mutex_unlock (&rb->lock);

  return ended;
}

gboolean
sluice_reorder_buffer_abort (SluiceReorderBuffer *rb, const GError *error)
{
  gpointer item;
  GQueue overflow = G_QUEUE_INIT;

  g_mutex_lock (&rb->lock);
  if (g_atomic_int_get (&rb->flags) & SLUICE_RB_ABORTED)
    {
      g_mutex_unlock (&rb->lock);
      return FALSE;
    }
  if (error != NULL)
    rb->abort_error = g_error_copy (error);
  /* The bias keeps the count above zero until the walk is over. */
  g_atomic_int_set (&rb->abandoned, 1);
  /* After this no reservation can happen: the walk below sees every one. */
  sluice_reorder_buffer_reserve_lock (rb);
  g_atomic_int_or (&rb->flags, SLUICE_RB_ABORTED);
  sluice_reorder_buffer_reserve_unlock (rb);
  overflow = rb->overflow;
  g_queue_init (&rb->overflow);
  wake_consumer_locked (rb);
  g_mutex_unlock (&rb->lock);

  /* A consumer taking a run with plain stores (take_run ()) finishes it
   * first: it never blocks meanwhile, and a later run sees the flag. */
  while (__atomic_load_n (&rb->taking, __ATOMIC_SEQ_CST))
    g_thread_yield ();

  /* No reservation can happen any more. Free what is complete, abandon what
   * is pending; the consumer may race us for ready slots: the CAS decides. */
  sluice_reorder_buffer_ref (rb);
  for (guint i = 0; i < rb->capacity; i++)
    {
      SluiceSlot *slot = &rb->ring[i];
      int state = g_atomic_int_get (&slot->state);

      for (;;)
        {
          SluiceSlotState kind = SLUICE_SLOT_KIND (state);
          int abandoned;

          if (kind == SLUICE_SLOT_READY || kind == SLUICE_SLOT_FAILED)
            {
              gpointer slot_item = slot->item;
              gboolean single = slot->single;

              if (g_atomic_int_compare_and_exchange (&slot->state, state, SLUICE_SLOT_FREE))
                {
                  if (kind == SLUICE_SLOT_FAILED)
                    g_error_free (slot_item);
                  else
                    free_slot_item (rb, slot_item, single);
                  break;
                }
            }
          else
            {
              if (kind == SLUICE_SLOT_PENDING || kind == SLUICE_SLOT_WAITED)
                abandoned = SLUICE_SLOT_ABANDONED;
              else if (kind == SLUICE_SLOT_CLAIMED || kind == SLUICE_SLOT_CLAIMED_WAITED)
                abandoned = SLUICE_SLOT_CLAIMED_ABANDONED;
              else
                break; /* free, or abandoned already */
              g_atomic_int_inc (&rb->abandoned);
              if (g_atomic_int_compare_and_exchange (&slot->state, state,
                                                     SLUICE_SLOT_TAG_BITS (state) | abandoned))
                break;
              g_atomic_int_add (&rb->abandoned, -1);
            }
          state = g_atomic_int_get (&slot->state);
        }
    }

  while ((item = g_queue_pop_head (&overflow)) != NULL)
    free_slot_item (rb, item, FALSE);

  g_cancellable_cancel (rb->cancellable);

  settle_one (rb);

  return TRUE;
}

const GError *
sluice_reorder_buffer_get_abort_error (SluiceReorderBuffer *rb)
{
  /* Written once under the lock before SLUICE_RB_ABORTED is raised. */
  if (!sluice_reorder_buffer_is_aborted (rb))
    return NULL;
  return rb->abort_error;
}

gboolean
sluice_reorder_buffer_is_settled (SluiceReorderBuffer *rb)
{
  gboolean settled;

  g_mutex_lock (&rb->lock);
  settled = rb->settled_by_abort || rb->finished_by_end;
  g_mutex_unlock (&rb->lock);

  return settled;
}

void
sluice_reorder_buffer_set_paused (SluiceReorderBuffer *rb, gboolean paused)
{
  g_mutex_lock (&rb->lock);
  if (paused)
    g_atomic_int_or (&rb->flags, SLUICE_RB_PAUSED);
  else
    g_atomic_int_and (&rb->flags, ~SLUICE_RB_PAUSED);
  wake_consumer_locked (rb);
  g_mutex_unlock (&rb->lock);
}

/* --- consumer side --- */

/* The owner asked for room: tell it once live items fell to the level it
 * asked for (low water, or the first free place when produce calls wait for
 * room). The request is read without a fence here; wait_for_head() fences
 * before it looks again and sleeps. */
G_GNUC_NO_INLINE void
sluice_reorder_buffer_answer_room (SluiceReorderBuffer *rb)
{
  guint64 live = load64 (&rb->accepted) - rb->handed;

  if (live <= (guint64) g_atomic_int_get (&rb->room_level) &&
      g_atomic_int_compare_and_exchange (&rb->want_room, 1, 0) && rb->room_func != NULL &&
      rb->room_func (rb->callback_data) && live <= rb->low_water)
    rb->refilling = TRUE; /* a refill of a quarter window at least: size the run by it */
}

static void
free_batch (SluiceReorderBuffer *rb)
{
  for (guint i = rb->batch_pos; i < rb->batch_len; i++)
    free_slot_item (rb, rb->batch[i], (rb->batch_single >> i) & 1);
  rb->batch_pos = rb->batch_len = 0;
  if (rb->list != NULL)
    free_list_from (rb, g_steal_pointer (&rb->list), rb->list_pos);
  if (rb->early_taken)
    {
      rb->early_taken = FALSE;
      free_slot_item (rb, g_steal_pointer (&rb->early_item), rb->early_single);
    }
}

/* Takes the run of completed slots at the head into the batch. Returns the
 * number taken; 0 with *error set when the head slot failed (and is not to
 * be skipped); 0 otherwise when the head is not complete. */
static guint
take_run (SluiceReorderBuffer *rb, GError **error)
{
  guint64 head = rb->head;
  guint n = 0;
  gboolean plain;

  /* The run's ready slots are freed with plain stores, not a locked
   * instruction each (issue 19: a quarter of the handoff consumer's CPU),
   * while `taking` keeps an abort's walk from freeing them at the same
   * time; after an abort (seen here or raised meanwhile: the walk waits
   * for us) each one as before. */
  __atomic_store_n (&rb->taking, TRUE, __ATOMIC_SEQ_CST);
  plain = !(__atomic_load_n (&rb->flags, __ATOMIC_SEQ_CST) & SLUICE_RB_ABORTED);
  if (!plain)
    __atomic_store_n (&rb->taking, FALSE, __ATOMIC_RELEASE);

  rb->batch_pos = 0;
  rb->batch_single = 0;
  while (n < SLUICE_RB_BATCH_MAX)
    {
      SluiceSlot *slot = &rb->ring[head & rb->mask];
      int state = g_atomic_int_get (&slot->state);
      SluiceSlotState kind = SLUICE_SLOT_KIND (state);

      if (kind == SLUICE_SLOT_READY)
        {
          gpointer item = slot->item;
          guint64 single = slot->single;

          /* Release: the reads above come first, and the owner reuses
           * the slot only after `handed` (released later) says so. */
          if (plain)
            __atomic_store_n (&slot->state, SLUICE_SLOT_FREE, __ATOMIC_RELEASE);
          else if (!g_atomic_int_compare_and_exchange (&slot->state, state, SLUICE_SLOT_FREE))
            break; /* an abort freed it */
          rb->batch_single |= single << n;
          rb->batch[n++] = item;
          head++;
        }
      else if (kind == SLUICE_SLOT_FAILED)
        {
          GError *slot_error = slot->item;
          guint64 seq = slot->seq;
          gboolean skip;

          /* Hand out what precedes a failure first: the skip-failed flag
           * applies to the items the consumer reaches after it is set, so
           * it is read only once the consumer has taken every item before
           * this one. */
          if (n > 0)
            break;
          /* The failed-item function may call anything, an abort too. */
          if (plain)
            {
              __atomic_store_n (&rb->taking, FALSE, __ATOMIC_RELEASE);
              plain = FALSE;
            }
          skip = g_atomic_int_get (&rb->skip_failed);
          if (!g_atomic_int_compare_and_exchange (&slot->state, state, SLUICE_SLOT_FREE))
            break;
          head++;
          publish64 (&rb->n_failed, rb->n_failed + 1);
          if (!skip)
            {
              g_propagate_error (error, slot_error);
              break;
            }
          /* A skipped failure no longer occupies the window. Handed
           * first: a reader takes skipped first, so handed - skipped
           * never goes below zero. */
          publish64 (&rb->handed, rb->handed + 1);
          publish64 (&rb->n_skipped, rb->n_skipped + 1);
          if (rb->failed_func != NULL)
            rb->failed_func (seq, slot_error, rb->callback_data);
          else
            g_error_free (slot_error);
          sluice_reorder_buffer_check_room (rb);
        }
      else
        break;
    }

  if (plain)
    __atomic_store_n (&rb->taking, FALSE, __ATOMIC_RELEASE);
  rb->batch_len = n;
  store64 (&rb->head, head);
  if (n > 0 && rb->wait_since != 0)
    __atomic_store_n (&rb->wait_since, 0, __ATOMIC_RELAXED);
  return n;
}

static inline gboolean
head_is_complete (SluiceReorderBuffer *rb)
{
  SluiceSlotState kind = SLUICE_SLOT_KIND (g_atomic_int_get (&rb->ring[rb->head & rb->mask].state));

  return kind == SLUICE_SLOT_READY || kind == SLUICE_SLOT_FAILED;
}

/* With the lock held: the consumer no longer waits for @slot. */
static void
unmark_locked (SluiceSlot *slot)
{
  for (;;)
    {
      int state = g_atomic_int_get (&slot->state);
      int unmarked;

      if (SLUICE_SLOT_KIND (state) == SLUICE_SLOT_WAITED)
        unmarked = SLUICE_SLOT_PENDING;
      else if (SLUICE_SLOT_KIND (state) == SLUICE_SLOT_CLAIMED_WAITED)
        unmarked = SLUICE_SLOT_CLAIMED;
      else
        return;
      if (g_atomic_int_compare_and_exchange (&slot->state, state,
                                             SLUICE_SLOT_TAG_BITS (state) | unmarked))
        return;
    }
}

/* With the lock held: the consumer stops waiting for the later slot
 * @target and waits for the head @seq instead. A mark left behind would make
 * the target's completion wake the consumer for nothing later. */
static inline guint64
retarget_to_head_locked (SluiceReorderBuffer *rb, guint64 target, guint64 seq)
{
  if (target != seq)
    unmark_locked (&rb->ring[target & rb->mask]);
  return seq;
}

/* The adaptive spin: with few items in flight every item the consumer
 * sleeps for costs a futex wake-up (5-10 µs on a VM, more than the item's
 * whole delivery otherwise), and the wake-up batching of wait_for_head ()
 * does not apply. So the consumer keeps polling the head, instead of
 * sleeping, while that pays:
 *
 * - only while the moving average of its recent waits (each measured from
 *   the start of the wait to the head's completion, sleeps included) is at
 *   most SLUICE_SPIN_LIMIT_US, and for at most twice that average plus 2 µs,
 *   never longer than SLUICE_SPIN_LIMIT_US;
 * - a spin that ends without the item (the wait was longer, or the thread
 *   lost its core: the machine is oversubscribed) sleeps as before; after
 *   two such spins in a row the next 1, 3, 7 ... 1023 eligible waits do not
 *   spin at all; a spin that succeeds ends the back-off.
 *
 * An idle consumer therefore spins at most once for SLUICE_SPIN_LIMIT_US and then
 * sleeps: its long waits raise the average above the limit. Returns whether
 * the head is complete (or a flag changed) within the spin; @start is when
 * the wait began. With @early_ok, a room request of the owner arriving
 * during the spin ends it (neither success nor failure): the sleep that
 * follows lets the completer answer the owner beside our wake-up. */
static gboolean
adaptive_spin (SluiceReorderBuffer *rb, int flags, gint64 start, gboolean early_ok)
{
  gint64 end = sluice_spin_rule_deadline (&rb->spin_rule, start);
  gint64 now;

  if (end == 0)
    return FALSE;
  do
    {
      /* The clock once every 16 polls: a poll is a load and a pause. */
      for (guint i = 0; i < 16; i++)
        {
          if (head_is_complete (rb) || g_atomic_int_get (&rb->flags) != flags)
            {
              sluice_spin_rule_note_wait (&rb->spin_rule, g_get_monotonic_time () - start);
              sluice_spin_rule_succeeded (&rb->spin_rule);
              stat_inc (&rb->stats.spins);
              return TRUE;
            }
          if (early_ok && g_atomic_int_get (&rb->want_room))
            return FALSE;
          sluice_cpu_relax ();
        }
      now = g_get_monotonic_time ();
    }
  while (now < end);

  sluice_spin_rule_failed (&rb->spin_rule);
  return FALSE;
}

/* The spin of a consumer that waits for its one item in flight on another
 * processor than the thread that completed the last item it slept for (the
 * processor the completer records in sluice_reorder_buffer_publish_slow ()).
 * A sleep there costs a wake-up across processors: 10-35 µs on the 2-vCPU
 * VM this was measured on (an idle virtual CPU to wake), against about
 * 1.2 µs when the completer wakes the consumer on its own processor, and
 * the kernel keeps a thread woken on an idle processor where it was, so the
 * slow layout lasts (bench/README.md, sessions 15 and 16). A spin there
 * does not take the completer's core. It spins where it would sleep, with
 * the lock left and its sleep registered (the slot marked,
 * consumer_sleeping set), so a completer still takes the slow path, does
 * the early room answer and pays for the owner's wake-up itself; the
 * spin only watches for what would have woken it.
 *
 * With the lock held, marked and registered as sleeping for the head slot
 * @awaited; returns with the lock held, whether or not anything changed:
 * the caller looks again before it sleeps (a signal sent while we spun is
 * gone). The rule is SluiceSpinRule's back-off, for at most
 * SPIN_APART_MAX_US: a spin that ends without the item makes the next
 * ones rarer; the average of the waits is not asked, since what it would
 * measure here is the slow wake-up itself. The owner does not spin for
 * room on the consumer's processor (consumer_cpu). */
static void
spin_apart (SluiceReorderBuffer *rb, SluiceSlot *awaited, int flags, gint64 end)
{
  gboolean changed = FALSE;

  g_mutex_unlock (&rb->lock);
  do
    {
      SluiceSlotState kind = SLUICE_SLOT_FREE;

      /* The clock once every 16 polls: a poll is a few loads and a pause. */
      for (guint i = 0; i < 16 && !changed; i++)
        {
          kind = SLUICE_SLOT_KIND (g_atomic_int_get (&awaited->state));
          changed = __atomic_load_n (&rb->early_taken, __ATOMIC_ACQUIRE) ||
                    kind == SLUICE_SLOT_READY || kind == SLUICE_SLOT_FAILED ||
                    g_atomic_int_get (&rb->flags) != flags;
          if (!changed)
            sluice_cpu_relax ();
        }
      /* Not reserved yet: the owner has still to produce it, and may be
       * runnable on this processor (woken by the early answer for the
       * item before): let it run rather than spin it out (kept apart with
       * the owner beside the consumer: p50 18-20 us without the yield,
       * 1.4 us with it). */
      if (!changed && kind == SLUICE_SLOT_FREE)
        g_thread_yield ();
    }
  while (!changed && g_get_monotonic_time () < end);

  if (changed)
    {
      sluice_spin_rule_succeeded (&rb->apart_spin_rule);
      stat_inc (&rb->stats.spins);
      /* The completer may hold the lock a moment longer: a sleep on it
       * would need the wake-up across processors this spin saved. */
      for (guint i = 0; i < 100; i++)
        {
          if (g_mutex_trylock (&rb->lock))
            return;
          sluice_cpu_relax ();
        }
    }
  else
    sluice_spin_rule_failed (&rb->apart_spin_rule);
  g_mutex_lock (&rb->lock);
}

/* The load as the wake rule sees it (SluiceItemGap): sampled at a wait
 * that outlasts the polls (@now: its clock), per item handed out. */
static inline void
note_item_gap (SluiceReorderBuffer *rb, gint64 now)
{
  sluice_item_gap_note (&rb->item_gap, now, rb->handed, SLUICE_ITEM_GAP_SPAN_MIN_US);
}

/* Returns when the head slot may be complete or a flag changed. */
static void
wait_for_head (SluiceReorderBuffer *rb)
{
  guint64 seq = rb->head;
  int flags = g_atomic_int_get (&rb->flags);
  gboolean refilling;
  gboolean few;
  gboolean batching;
  gboolean early_ok = FALSE;
  gint64 apart_end = 0;
  gint64 start;

  /* Pairs with has_room_locked(): our `handed` is visible before we read a
   * room request that may have come while we handed items out. */
  __atomic_thread_fence (__ATOMIC_SEQ_CST);
  sluice_reorder_buffer_check_room (rb);
  /* Only for the sleep right after the room was given, if any. */
  refilling = rb->refilling;
  rb->refilling = FALSE;

  stat_inc (&rb->stats.waits);
  for (guint spin = 0; spin < SPIN_MAX; spin++)
    {
      if (head_is_complete (rb) || g_atomic_int_get (&rb->flags) != flags)
        return;
      sluice_cpu_relax ();
    }

  /* The wait outlasts the polls: the clock once, for the wake rule, the
   * spin and the stall's start. */
  start = g_get_monotonic_time ();
  note_item_gap (rb, start);
  batching = sluice_item_gap_batching (&rb->item_gap);
  /* Few in flight, or items too far apart: the wake-up batching below does
   * not apply, the adaptive spin may. */
  few = !batching ||
        MAX (load64 (&rb->next_seq) - seq, refilling ? rb->window : 0) < WAKE_RUN_MIN_IN_FLIGHT;
  if (few)
    {
      /* May a completer take the head for us and answer the owner
       * (take_early_locked ())? Asked here, outside our lock: the answer
       * may look at the owner's context. */
      early_ok = rb->early_may_func != NULL && rb->early_may_func (rb->callback_data);
      /* A window of 1, and the consumer apart from the thread that
       * completed the last item it slept for: the sleep below becomes a
       * spin first (spin_apart ()). Not with more in flight: their
       * completers need both cores. */
      if (rb->window == 1)
        {
          int completer_cpu = g_atomic_int_get (&rb->completer_cpu);
          int cpu = current_cpu ();

          /* For the owner, who does not spin for room on our processor
           * (room_source_spin () in the ordered item producer). */
          if (rb->consumer_cpu != NULL)
            g_atomic_int_set (rb->consumer_cpu, cpu);
          /* The rule only says whether to spin (its back-off); how long
           * is ours. */
          if (completer_cpu >= 0 && completer_cpu != cpu &&
              sluice_spin_rule_deadline (&rb->apart_spin_rule, start) != 0)
            apart_end = start + SPIN_APART_MAX_US;
        }
      /* With the owner waiting for room the sleep is the faster way: the
       * completer answers the owner beside our wake-up, where a spin that
       * gets the item leaves the answer on our way to it (bench/latency,
       * 1 in flight, quiet host: p50 3.0-3.7 us sleeping against 5.8
       * spinning); apart from the completer the sleep spins first, with
       * the early answer still done by the completer (spin_apart ()). */
      if (apart_end == 0 && !(early_ok && g_atomic_int_get (&rb->want_room)) &&
          adaptive_spin (rb, flags, start, early_ok))
        return;
    }

  /* A wait that outlasts the spin is one a stats reader may want to see
   * (a head-of-line stall), from when it began. */
  if (rb->wait_since == 0)
    __atomic_store_n (&rb->wait_since, start, __ATOMIC_RELAXED);

  g_mutex_lock (&rb->lock);
  {
    /* With several items in flight, sleep until a later one of them is
     * complete (three quarters through them, or a short deadline passes) rather
     * than until the head is:
     * one wake-up then hands over a run of items instead of one, which is
     * what keeps a consumer from stealing a core from the workers. The
     * deadline bounds the added latency, and covers items whose completion
     * would wait for the consumer. */
    guint64 next_seq = load64 (&rb->next_seq);
    guint64 in_flight = next_seq > seq ? next_seq - seq : 0;
    guint64 target = seq;
    gint64 deadline = 0;

    int latency_us = g_atomic_int_get (&rb->wake_latency_us);
    /* The owner waited for room and was just given it: it is refilling
     * the window, so size the run by the window rather than by what is
     * in flight yet (a slot not reserved yet is marked by its
     * reservation, and the end retargets). */
    guint64 run = refilling ? MAX (in_flight, rb->window) : in_flight;

    if (batching && in_flight >= 2 && run >= WAKE_RUN_MIN_IN_FLIGHT && latency_us > 0)
      {
        /* The item three quarters through the run, or as far as the items
         * expected within the wake latency reach. */
        guint64 reach = sluice_item_gap_reach (&rb->item_gap, latency_us);

        run = MIN (MIN (run - run / 4, WAKE_RUN_MAX), reach);
        if (run >= 2)
          {
            target = seq + run - 1;
            deadline = g_get_monotonic_time () + latency_us;
          }
      }

    for (;;)
      {
        SluiceSlot *awaited;
        SluiceSlotState kind;
        int state;

        /* A completer took the head for us (take_early_locked ()): our
         * head moved on, and next () hands the item out. */
        if (rb->early_taken)
          break;
        flags = g_atomic_int_get (&rb->flags);
        if ((flags & (SLUICE_RB_ABORTED | SLUICE_RB_PAUSED)) ||
            ((flags & SLUICE_RB_ENDED) && seq == rb->end_seq))
          {
            retarget_to_head_locked (rb, target, seq);
            break;
          }
        /* Ended before the owner reserved the awaited number. */
        if ((flags & SLUICE_RB_ENDED) && target >= rb->end_seq)
          target = retarget_to_head_locked (rb, target, seq);

        /* The standalone queue's overflow moves in once the ring drained. */
        drain_overflow_locked (rb);

        /* Past the deadline, whether the timed wait below said so or
         * returned early (a signal for the mark, a spurious wake-up) and
         * the clock passed it since: one place counts the timeout. */
        if (target != seq && g_get_monotonic_time () >= deadline)
          {
            stat_inc (&rb->stats.timeouts);
            target = retarget_to_head_locked (rb, target, seq);
          }
        awaited = &rb->ring[target & rb->mask];
        state = g_atomic_int_get (&awaited->state);
        kind = SLUICE_SLOT_KIND (state);
        if (kind == SLUICE_SLOT_READY || kind == SLUICE_SLOT_FAILED)
          {
            if (target == seq || head_is_complete (rb))
              break;
            /* The later one is done but not the head: wait for the head. */
            target = seq;
            continue;
          }
        /* Marked for the completer, who then pays for the wake-up. */
        if (kind == SLUICE_SLOT_PENDING &&
            !g_atomic_int_compare_and_exchange (&awaited->state, state,
                                                SLUICE_SLOT_TAG_BITS (state) | SLUICE_SLOT_WAITED))
          continue;
        if (kind == SLUICE_SLOT_CLAIMED &&
            !g_atomic_int_compare_and_exchange (
                &awaited->state, state, SLUICE_SLOT_TAG_BITS (state) | SLUICE_SLOT_CLAIMED_WAITED))
          continue;

        if (kind == SLUICE_SLOT_FREE)
          {
            /* Not reserved yet (the head, or a number of the run the owner
             * is refilling): reservations happen without our lock, so
             * register under theirs and look again; the reservation then
             * marks the slot for us. */
            sluice_reorder_buffer_reserve_lock (rb);
            __atomic_store_n (&rb->consumer_wait_seq, target, __ATOMIC_RELAXED);
            g_atomic_int_set (&rb->consumer_sleeping, TRUE);
            state = g_atomic_int_get (&awaited->state);
            sluice_reorder_buffer_reserve_unlock (rb);
            if (SLUICE_SLOT_KIND (state) != SLUICE_SLOT_FREE)
              {
                g_atomic_int_set (&rb->consumer_sleeping, FALSE);
                continue;
              }
          }
        else
          {
            __atomic_store_n (&rb->consumer_wait_seq, target, __ATOMIC_RELAXED);
            g_atomic_int_set (&rb->consumer_sleeping, TRUE);
          }
        if (target == seq)
          {
            rb->early_ok = early_ok;
            /* Once per wait: the loop looks again after it. */
            if (apart_end != 0)
              {
                gint64 end = apart_end;

                apart_end = 0;
                spin_apart (rb, awaited, flags, end);
              }
            else
              {
                stat_inc (&rb->stats.sleeps);
                g_cond_wait (&rb->cond, &rb->lock);
              }
            rb->early_ok = FALSE;
          }
        else
          {
            stat_inc (&rb->stats.sleeps);
            /* A timeout retargets at the top of the loop. */
            if (!g_cond_wait_until (&rb->cond, &rb->lock, deadline))
              deadline = 0;
          }
        g_atomic_int_set (&rb->consumer_sleeping, FALSE);
      }
  }
  g_mutex_unlock (&rb->lock);
  if (few)
    sluice_spin_rule_note_wait (&rb->spin_rule, g_get_monotonic_time () - start);
}

static void
wait_while_paused (SluiceReorderBuffer *rb)
{
  g_mutex_lock (&rb->lock);
  while ((g_atomic_int_get (&rb->flags) & (SLUICE_RB_PAUSED | SLUICE_RB_ABORTED)) ==
         SLUICE_RB_PAUSED)
    {
      __atomic_store_n (&rb->consumer_wait_seq, G_MAXUINT64, __ATOMIC_RELAXED);
      g_atomic_int_set (&rb->consumer_sleeping, TRUE);
      g_cond_wait (&rb->cond, &rb->lock);
      g_atomic_int_set (&rb->consumer_sleeping, FALSE);
    }
  g_mutex_unlock (&rb->lock);
}

static gboolean
finish (SluiceReorderBuffer *rb, gboolean by_end, GError **error)
{
  free_batch (rb);
  __atomic_store_n (&rb->wait_since, 0, __ATOMIC_RELAXED);
  if (!rb->finished)
    {
      g_mutex_lock (&rb->lock);
      rb->finished = TRUE;
      rb->finished_by_end = by_end;
      g_mutex_unlock (&rb->lock);
    }
  if (!rb->finished_by_end && rb->abort_error != NULL)
    g_propagate_error (error, g_error_copy (rb->abort_error));
  return FALSE;
}

static G_GNUC_NO_INLINE gboolean
next_slow (SluiceReorderBuffer *rb, gpointer *out_item, GError **error)
{
  if (rb->finished)
    return finish (rb, rb->finished_by_end, error);

  for (;;)
    {
      int flags = g_atomic_int_get (&rb->flags);
      g_autoptr (GError) local_error = NULL;

      if (G_UNLIKELY (flags & (SLUICE_RB_ABORTED | SLUICE_RB_PAUSED)))
        {
          if (flags & SLUICE_RB_ABORTED)
            return finish (rb, FALSE, error);
          wait_while_paused (rb);
          continue;
        }

      if (G_UNLIKELY (rb->early_taken))
        {
          /* Taken for us by a completer, counted as handed already. */
          gpointer item = g_steal_pointer (&rb->early_item);

          rb->early_taken = FALSE;
          __atomic_store_n (&rb->wait_since, 0, __ATOMIC_RELAXED);
          if (rb->lists && !rb->early_single)
            {
              rb->list = item;
              rb->list_pos = 0;
              continue;
            }
          *out_item = item;
          return TRUE;
        }

      if (rb->list != NULL)
        {
          if (rb->list_pos < rb->list->len)
            {
              *out_item = rb->list->pdata[rb->list_pos++];
              return TRUE;
            }
          g_clear_pointer (&rb->list, g_ptr_array_unref);
        }

      if (G_LIKELY (rb->batch_pos < rb->batch_len))
        {
          gboolean single = (rb->batch_single >> rb->batch_pos) & 1;
          gpointer item = rb->batch[rb->batch_pos++];

          /* The window counts slots: a list leaves it when it is taken,
           * before its items are handed out. */
          publish64 (&rb->handed, rb->handed + 1);
          sluice_reorder_buffer_check_room (rb);
          if (rb->lists && !single)
            {
              rb->list = item;
              rb->list_pos = 0;
              continue;
            }
          *out_item = item;
          return TRUE;
        }

      if (take_run (rb, &local_error) > 0)
        continue;

      if (local_error != NULL)
        {
          /* In order, the failure comes now: stop everything after it. */
          sluice_reorder_buffer_abort (rb, local_error);
          return finish (rb, FALSE, error);
        }

      if ((flags & SLUICE_RB_ENDED) && rb->head == load64 (&rb->end_seq))
        {
          /* Re-check under the lock: the end was set there. */
          return finish (rb, TRUE, error);
        }

      wait_for_head (rb);
    }
}

gboolean
sluice_reorder_buffer_next (SluiceReorderBuffer *rb, gpointer *out_item, GError **error)
{
  if (sluice_reorder_buffer_next_batched (rb, out_item))
    return TRUE;
  return next_slow (rb, out_item, error);
}

void
sluice_reorder_buffer_consumer_done (SluiceReorderBuffer *rb)
{
  free_batch (rb);
  if (!rb->finished_by_end)
    sluice_reorder_buffer_abort (rb, NULL);
}

void
sluice_reorder_buffer_get_stats (SluiceReorderBuffer *rb, SluiceReorderStats *stats)
{
  stats->waits = __atomic_load_n (&rb->stats.waits, __ATOMIC_RELAXED);
  stats->sleeps = __atomic_load_n (&rb->stats.sleeps, __ATOMIC_RELAXED);
  stats->timeouts = __atomic_load_n (&rb->stats.timeouts, __ATOMIC_RELAXED);
  stats->spins = __atomic_load_n (&rb->stats.spins, __ATOMIC_RELAXED);
  stats->early = __atomic_load_n (&rb->stats.early, __ATOMIC_RELAXED);
}

void
sluice_reorder_buffer_get_progress (SluiceReorderBuffer *rb, SluiceReorderProgress *progress)
{
  progress->skipped = load64 (&rb->n_skipped);
  progress->failed = load64 (&rb->n_failed);
  progress->handed = load64 (&rb->handed);
  progress->accepted = load64 (&rb->accepted);
  progress->head = load64 (&rb->head);
  progress->wait_since = __atomic_load_n (&rb->wait_since, __ATOMIC_RELAXED);
  progress->paused = (g_atomic_int_get (&rb->flags) & SLUICE_RB_PAUSED) != 0;
}

gboolean
sluice_reorder_buffer_consumer_finished (SluiceReorderBuffer *rb)
{
  gboolean finished;

  g_mutex_lock (&rb->lock);
  finished = rb->finished;
  g_mutex_unlock (&rb->lock);

  return finished;
}
