/* sluice-reorder-buffer-private.h: the one mechanism that puts items in order
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "sluice-private.h"

G_BEGIN_DECLS

/* A slot is one entry of the ring, reused every `capacity` sequence numbers.
 * Its life: FREE -> PENDING (reserved) -> CLAIMED (a completer took it, from
 * any thread, without a lock) -> READY or FAILED (published) -> FREE (taken
 * by the consumer). A consumer that sleeps on a PENDING or CLAIMED slot marks
 * it WAITED or CLAIMED_WAITED so that only that completion pays for a
 * wake-up. After an abort, PENDING slots become ABANDONED (CLAIMED ones
 * CLAIMED_ABANDONED) and their completer frees what it brings.
 *
 * The state word holds the kind in its low bits and, above them, the slot's
 * tag: the low bits of its lap of the ring, as a slot handle carries them
 * (see sluice_reorder_buffer_slot_handle()). A claim compares both in one
 * atomic instruction: a handle whose slot was completed, and maybe reused,
 * since can never claim it, and of two completions only one claims. */
typedef enum
{
  SLUICE_SLOT_FREE = 0,
  SLUICE_SLOT_PENDING,
  SLUICE_SLOT_WAITED,
  SLUICE_SLOT_READY,
  SLUICE_SLOT_FAILED,
  SLUICE_SLOT_ABANDONED,
  SLUICE_SLOT_CLAIMED,
  SLUICE_SLOT_CLAIMED_WAITED,
  SLUICE_SLOT_CLAIMED_ABANDONED,
} SluiceSlotState;

#define SLUICE_SLOT_KIND_BITS 4
#define SLUICE_SLOT_KIND(state) ((SluiceSlotState) ((state) & ((1 << SLUICE_SLOT_KIND_BITS) - 1)))
#define SLUICE_SLOT_TAG_BITS(state) ((state) & ~((1 << SLUICE_SLOT_KIND_BITS) - 1))

typedef struct _SluiceReorderBuffer SluiceReorderBuffer;

/* How long completed items may wait for a sleeping consumer by default
 * (the :wake-latency of the ordered item producer); sluice-reorder-buffer.c
 * says how it was chosen. */
#define SLUICE_WAKE_LATENCY_DEFAULT_US 5000

/* The owner's rarely used per-item extras (cancellables, a GTask). */
typedef struct _SluiceSlotExtras SluiceSlotExtras;

/* One cache line: the owner writes it, a completer then the consumer take
 * it over, and each move costs one line, not two. */
struct _SluiceSlot
{
  /* The first 16 bytes: sluice_reorder_buffer_complete_pending () sets
   * state and item in one 16-byte atomic instruction. */
  int state;     /* SluiceSlotState, atomic */
  int single;    /* lists mode: the item is one item, not a list (complete_single ()) */
  gpointer item; /* the item; the GError of a FAILED slot */
  guint64 seq;
  SluiceReorderBuffer *rb;

  /* Per-item data of the owner (the ordered item producer): set when the
   * slot is reserved, taken by the completer before it publishes. */
  gpointer func;
  gpointer func_data;
  GDestroyNotify func_data_destroy;
  SluiceSlotExtras *extras; /* only when the caller gave a cancellable or a callback */
} __attribute__ ((aligned (64)));

G_STATIC_ASSERT (sizeof (SluiceSlot) == 64);
G_STATIC_ASSERT (G_STRUCT_OFFSET (SluiceSlot, item) == 8 || GLIB_SIZEOF_VOID_P != 8);

/* Called on the consumer thread when live items fell to the level the owner
 * asked for with has_room_locked() (see there) while it waited for room. Returns whether the owner
 * refills the window from another thread now: the consumer then sizes its next run by the window,
 * and may wait for a number not reserved yet. */
typedef gboolean (*SluiceReorderRoomFunc) (gpointer data);
/* Called on the consumer thread for a failed item in skip-failed mode. */
typedef void (*SluiceReorderFailedFunc) (guint64 seq, GError *error, gpointer data);
/* Called once, from any thread, when an abort has settled: every slot that
 * was pending at the abort has been completed. */
typedef void (*SluiceReorderSettledFunc) (gpointer data);

SluiceReorderBuffer *
sluice_reorder_buffer_new (guint window, GDestroyNotify item_free_func, GCancellable *cancellable);
SluiceReorderBuffer *sluice_reorder_buffer_ref (SluiceReorderBuffer *rb);
void sluice_reorder_buffer_unref (SluiceReorderBuffer *rb);

void sluice_reorder_buffer_set_callbacks (SluiceReorderBuffer *rb,
                                          SluiceReorderRoomFunc room_func,
                                          SluiceReorderFailedFunc failed_func,
                                          SluiceReorderSettledFunc settled_func,
                                          gpointer data,
                                          GDestroyNotify data_destroy);

/* The early room answer (issue 19), optional: a completing thread that
 * completes the head item while the consumer sleeps for exactly that item,
 * with a room request of the owner open that taking the item satisfies, takes
 * the item for the consumer (out of the ring, counted as handed) and answers
 * the request itself, after waking the consumer: the owner's wake-up runs in
 * parallel with the consumer's instead of between its wake-up and the return
 * of next(). @may_func runs on the consumer thread, without the buffer's lock,
 * before it sleeps for the head with few items in flight: whether an answer
 * from another thread serves this consumer (not when the refill must happen
 * inside the answer, on the consumer's own thread). @answer_func runs on the
 * completing thread, any thread, the owner's included: it must only signal
 * the owner, never call out on the calling thread. */
typedef gboolean (*SluiceReorderEarlyMayFunc) (gpointer data);
typedef void (*SluiceReorderEarlyAnswerFunc) (gpointer data);

void sluice_reorder_buffer_set_early_room (SluiceReorderBuffer *rb,
                                           SluiceReorderEarlyMayFunc may_func,
                                           SluiceReorderEarlyAnswerFunc answer_func);

/* Before any reservation: *@flag (atomic) becomes 1 whenever a room
 * request is made (has_room_locked () without room, want_room_locked ());
 * only its owner clears it. It must live as long as the buffer (the
 * producer's room source, held by the callback data). */
void sluice_reorder_buffer_set_room_wanted_flag (SluiceReorderBuffer *rb, int *flag);

/* Before the consumer starts: *@cpu (atomic) becomes the processor the
 * consumer waits on, with a window of 1, at each wait that outlasts the
 * polls (-1 until then); same lifetime as the flag above. */
void sluice_reorder_buffer_set_consumer_cpu_slot (SluiceReorderBuffer *rb, int *cpu);

/* The processor the calling thread runs on, or -1 where that is unknown. */
int sluice_current_cpu (void);

/* The data given to set_callbacks(). */
gpointer sluice_reorder_buffer_get_callback_data (SluiceReorderBuffer *rb);
guint sluice_reorder_buffer_get_window (SluiceReorderBuffer *rb);
/* Live items at or below which the room function is called: the window
 * less a quarter of it (at least one). */
guint sluice_reorder_buffer_get_low_water (SluiceReorderBuffer *rb);
/* sluice_reorder_buffer_get_cancellable () is inline, after the struct. */
void sluice_reorder_buffer_set_skip_failed (SluiceReorderBuffer *rb, gboolean skip_failed);
gboolean sluice_reorder_buffer_get_skip_failed (SluiceReorderBuffer *rb);
/* How long a sleeping consumer with several items in flight may wait for a
 * run of them before it takes what is complete; 0: wake per item. */
void sluice_reorder_buffer_set_wake_latency (SluiceReorderBuffer *rb, guint microseconds);
guint sluice_reorder_buffer_get_wake_latency (SluiceReorderBuffer *rb);

/* --- the owner side: every call here may come from any thread --- */
void sluice_reorder_buffer_lock (SluiceReorderBuffer *rb);
void sluice_reorder_buffer_unlock (SluiceReorderBuffer *rb);

/* With the lock held: whether a reservation fits in the window now. When it
 * does not, the room function will be called once live items fall to the
 * low-water mark or, if @calls_wait (produce calls wait for room, each to
 * start as soon as there is a place for it), as soon as one place is free. */
gboolean sluice_reorder_buffer_has_room_locked (SluiceReorderBuffer *rb, gboolean calls_wait);
/* With the lock held, after has_room_locked said yes: the next slot. */
SluiceSlot *sluice_reorder_buffer_reserve_locked (SluiceReorderBuffer *rb);
/* sluice_reorder_buffer_try_reserve (): the produce calls' fast path, inline
 * at the end of this file. */
/* Any thread: the slot reserved for @seq, which must have been reserved
 * and not completed yet. For an owner that completes its reserved slots in
 * an order of its own (the unordered pipeline: the n-th result to finish
 * fills the n-th slot), rather than through the slot it was given. */
SluiceSlot *sluice_reorder_buffer_get_reserved_slot (SluiceReorderBuffer *rb, guint64 seq);
/* With the lock held: asks for the room function once live items are at
 * or below the low-water mark, whether or not the window is full now (a
 * thread waiting for the producer to be ready). */
void sluice_reorder_buffer_want_room_locked (SluiceReorderBuffer *rb);
/* With the lock held: whether try_reserve() may reserve (closed at first).
 * The owner keeps it closed while its own state forbids new reservations
 * (calls waiting for room, a stop). */
void sluice_reorder_buffer_set_gate_locked (SluiceReorderBuffer *rb, gboolean open);
/* With the lock held: whether the buffer was ended or aborted. */
gboolean sluice_reorder_buffer_is_closed_locked (SluiceReorderBuffer *rb);
/* With the lock held: reserve a slot and complete it at once with @item; if
 * the window is full the item waits in an overflow queue (the standalone
 * consumerator's push). */
void sluice_reorder_buffer_push_locked (SluiceReorderBuffer *rb, gpointer item);

/* Before any item arrives. */
void sluice_reorder_buffer_set_item_free_func (SluiceReorderBuffer *rb,
                                               GDestroyNotify item_free_func);

/* Before any item arrives: each slot holds a GPtrArray of items (possibly
 * empty) instead of one item, and next() hands out the items of each list
 * in turn (the pipeline's slot per input, completed with its outputs). The
 * window, the progress counters and skip-failed count slots, not items. The
 * lists are the buffer's: it frees them, and the items nobody took with
 * the item free function. */
void sluice_reorder_buffer_set_lists (SluiceReorderBuffer *rb, gboolean lists);

/* Lists mode: claims @slot, a reserved slot (the ring place), and publishes
 * the one item @item in it, without a list around it: next() hands it out
 * as it would a list of one (the pipeline's inputs with one output). */
gboolean sluice_reorder_buffer_complete_single (SluiceSlot *slot, gpointer item);

/* Frees one item with the item free function (NULL is fine); in lists mode
 * one item of a list, as next() hands them out. */
void sluice_reorder_buffer_free_item (SluiceReorderBuffer *rb, gpointer item);

/* Number of live items: reserved (or pushed) and not yet handed out. */
guint64 sluice_reorder_buffer_get_n_live (SluiceReorderBuffer *rb);

/* The handle an item function gets for @slot, a reserved slot: its place in
 * the ring with its tag (the low bits of its lap: 21 on 64-bit machines
 * whose ring lies below 2^48, 5 elsewhere) folded into pointer bits the place
 * does not use: 5 in the low bits the 64-byte alignment leaves free (bit 0
 * flags the high ones), 16 in the top bits. A handle is not a pointer to
 * dereference: claim() takes the slot behind it, slot_from_handle() checks
 * it. Made from the lap tag the slot's state word holds from its
 * reservation until its completion (inline: the owner makes one per item,
 * without a read of the buffer). A tag with no bits above the low 5 gets no
 * high part: decoding does not tell the two forms apart. */
static inline SluiceSlot *sluice_reorder_buffer_slot_handle (SluiceSlot *slot);

#define SLUICE_SLOT_HANDLE_LOW_MASK ((guintptr) 63)
#define SLUICE_SLOT_HANDLE_HAS_HIGH ((guintptr) 1)
#define SLUICE_SLOT_HANDLE_LOW_TAG_BITS 5
#if GLIB_SIZEOF_VOID_P == 8
#define SLUICE_SLOT_HANDLE_HIGH_SHIFT 48
#define SLUICE_SLOT_HANDLE_HIGH_TAG_BITS 16
#endif

static inline SluiceSlot *
sluice_reorder_buffer_slot_handle (SluiceSlot *slot)
{
  guint tag =
      (guint) SLUICE_SLOT_TAG_BITS (g_atomic_int_get (&slot->state)) >> SLUICE_SLOT_KIND_BITS;
  guintptr handle =
      (guintptr) slot | (guintptr) ((tag & ((1u << SLUICE_SLOT_HANDLE_LOW_TAG_BITS) - 1)) << 1);

#if GLIB_SIZEOF_VOID_P == 8
  if ((tag >> SLUICE_SLOT_HANDLE_LOW_TAG_BITS) != 0)
    handle |= SLUICE_SLOT_HANDLE_HAS_HIGH | (guintptr) (tag >> SLUICE_SLOT_HANDLE_LOW_TAG_BITS)
                                                << SLUICE_SLOT_HANDLE_HIGH_SHIFT;
#endif
  return (SluiceSlot *) handle;
}

/* The slot a handle names, and its tag as the state word holds it. */
static inline SluiceSlot *
sluice_slot_handle_decode (SluiceSlot *handle, int *out_tag_bits)
{
  guintptr bits = (guintptr) handle;
  guintptr raw = bits & ~SLUICE_SLOT_HANDLE_LOW_MASK;
  guint tag = (guint) ((bits & SLUICE_SLOT_HANDLE_LOW_MASK) >> 1);

#if GLIB_SIZEOF_VOID_P == 8
  if (bits & SLUICE_SLOT_HANDLE_HAS_HIGH)
    {
      raw &= ((guintptr) 1 << SLUICE_SLOT_HANDLE_HIGH_SHIFT) - 1;
      tag |= (guint) (bits >> SLUICE_SLOT_HANDLE_HIGH_SHIFT) << SLUICE_SLOT_HANDLE_LOW_TAG_BITS;
    }
#endif
  *out_tag_bits = (int) (tag << SLUICE_SLOT_KIND_BITS);
  return (SluiceSlot *) raw;
}

/* The slot behind @handle and the sequence number the handle was made for
 * (exact unless 2^21 laps of the ring, or 2^5, passed since). Returns
 * whether the slot still holds that number and waits for its completion;
 * FALSE when it was completed (claimed, consumed or not, reused or not).
 * The buffer must be alive. */
gboolean sluice_reorder_buffer_slot_from_handle (SluiceSlot *handle,
                                                 SluiceSlot **out_slot,
                                                 guint64 *out_seq);

gboolean sluice_reorder_buffer_claim_slow (SluiceSlot *slot, int tag_bits);

/* Any thread, lock-free: takes the slot behind @handle for its completion,
 * which must follow with publish(). Returns FALSE when the slot was claimed
 * already (by an earlier completion or one at the same moment): the caller
 * reports it; *@out_slot is the ring place either way. The fast path is one
 * atomic instruction, the first touch of the slot's line by this thread. */
static inline gboolean
sluice_reorder_buffer_claim (SluiceSlot *handle, SluiceSlot **out_slot)
{
  int tag_bits;
  SluiceSlot *slot = sluice_slot_handle_decode (handle, &tag_bits);

  *out_slot = slot;
  if (G_LIKELY (g_atomic_int_compare_and_exchange (&slot->state, tag_bits | SLUICE_SLOT_PENDING,
                                                   tag_bits | SLUICE_SLOT_CLAIMED)))
    return TRUE;
  return sluice_reorder_buffer_claim_slow (slot, tag_bits);
}

gboolean sluice_reorder_buffer_publish_slow (SluiceSlot *slot, int state, int new_state);

/* Completes @slot, which the caller claimed. Ownership of @item and @error
 * passes to the buffer. Returns TRUE when the result was buffered for the
 * consumer, FALSE when the buffer had been aborted and the result was
 * freed. After it, the slot is the consumer's: touch nothing of it. */
static inline gboolean
sluice_reorder_buffer_publish (SluiceSlot *slot, gpointer item, GError *error)
{
  /* The line is ours since the claim: these cost no cache miss. */
  int state = g_atomic_int_get (&slot->state);
  int new_state =
      SLUICE_SLOT_TAG_BITS (state) | (error != NULL ? SLUICE_SLOT_FAILED : SLUICE_SLOT_READY);

  slot->item = error != NULL ? (gpointer) error : item;
  if (G_LIKELY (SLUICE_SLOT_KIND (state) == SLUICE_SLOT_CLAIMED &&
                g_atomic_int_compare_and_exchange (&slot->state, state, new_state)))
    return TRUE;
  return sluice_reorder_buffer_publish_slow (slot, state, new_state);
}

#if defined(__x86_64__) && defined(__LP64__) && (defined(__GNUC__) || defined(__clang__))
#define SLUICE_SLOT_COMPLETE_PENDING 1
/* Set by the first sluice_reorder_buffer_new () (before any slot exists):
 * whether the processor has cmpxchg16b. */
extern int sluice_reorder_buffer_have_cx16;
#endif

/* Any thread, lock-free: completes the slot behind @handle with @item in
 * one atomic instruction, state and item together, where claim () and
 * publish () take two (issue 19: the handoff's completers spent half their
 * CPU on those two; one 16-byte exchange costs about what one of them
 * does). Only when the slot is plainly pending (not waited for by the
 * consumer, not abandoned, its item and single flag as the reservation left
 * them) and the processor can; returns FALSE having changed nothing
 * otherwise: then claim () and publish (). The caller has made sure that
 * nothing (the slot's extras) needs the claimed state in between. A stale
 * handle fails the exchange as it fails a claim: its tag differs. */
static inline gboolean
sluice_reorder_buffer_complete_pending (SluiceSlot *handle, gpointer item)
{
#ifdef SLUICE_SLOT_COMPLETE_PENDING
  int tag_bits;
  SluiceSlot *slot = sluice_slot_handle_decode (handle, &tag_bits);
  guint64 old_lo = (guint32) (tag_bits | SLUICE_SLOT_PENDING); /* state; single FALSE */
  guint64 old_hi = 0;                                          /* item NULL */
  guint64 new_lo = (guint32) (tag_bits | SLUICE_SLOT_READY);
  gboolean done;

  if (G_UNLIKELY (!sluice_reorder_buffer_have_cx16))
    return FALSE;
  __asm__ __volatile__("lock cmpxchg16b %1"
                       : "=@ccz"(done), "+m"(*(volatile char (*)[16]) slot), "+a"(old_lo),
                         "+d"(old_hi)
                       : "b"(new_lo), "c"((guint64) (guintptr) item)
                       : "memory");
  return done;
#else
  return FALSE;
#endif
}

/* Claims @slot, a reserved slot (the ring place, not a handle) that no
 * completer can have claimed yet: for owners that complete a slot through
 * a path of their own. */
void sluice_reorder_buffer_claim_reserved (SluiceSlot *slot);

/* Claims @slot, a reserved slot (the ring place, not a handle), and
 * publishes @item or @error in it: for owners that complete each slot once
 * by construction. */
gboolean sluice_reorder_buffer_complete (SluiceSlot *slot, gpointer item, GError *error);

/* No more reservations: the consumer sees the end after the last reserved
 * item. Returns FALSE if it was already ended or aborted. */
gboolean sluice_reorder_buffer_end (SluiceReorderBuffer *rb);
gboolean sluice_reorder_buffer_end_locked (SluiceReorderBuffer *rb);
/* Stops everything: releases buffered items, abandons pending slots, cancels
 * the cancellable, and the consumer's next call fails with @error (the
 * first abort's error wins; NULL for a quiet stop where the consumer just
 * ends). Any thread. Returns FALSE if it was already aborted. */
gboolean sluice_reorder_buffer_abort (SluiceReorderBuffer *rb, const GError *error);
/* sluice_reorder_buffer_is_aborted () is inline, after the struct. */
/* The error of the first abort, if it had one (owned by the buffer, set once). */
const GError *sluice_reorder_buffer_get_abort_error (SluiceReorderBuffer *rb);
/* Whether every reserved slot has been completed (consumed, freed or
 * abandoned and settled). */
gboolean sluice_reorder_buffer_is_settled (SluiceReorderBuffer *rb);

void sluice_reorder_buffer_set_paused (SluiceReorderBuffer *rb, gboolean paused);

/* --- the consumer side: one thread at a time --- */
gboolean sluice_reorder_buffer_next (SluiceReorderBuffer *rb, gpointer *out_item, GError **error);
/* sluice_reorder_buffer_next_batched (): next()'s common case, inline at
 * the end of this file. */
/* The consumer is done: frees what it holds. */
void sluice_reorder_buffer_consumer_done (SluiceReorderBuffer *rb);
/* What the consumer's waits cost: for tests and tuning. */
typedef struct
{
  guint64 waits;    /* times next() found the head incomplete */
  guint64 sleeps;   /* condition waits (each wake-up is a context switch) */
  guint64 timeouts; /* waits for a later item ended by the wake latency */
  guint64 spins;    /* waits the adaptive spin ended without a sleep */
  guint64 early;    /* items a completer took for the sleeping consumer (early room answer) */
} SluiceReorderStats;

/* Any thread (the counters only grow). */
void sluice_reorder_buffer_get_stats (SluiceReorderBuffer *rb, SluiceReorderStats *stats);

/* Where the stream stands: for progress reports. */
typedef struct
{
  guint64 accepted;  /* reserved (or pushed) */
  guint64 handed;    /* taken by the consumer, skipped failures included */
  guint64 failed;    /* failed items the consumer reached */
  guint64 skipped;   /* of which skipped (skip-failed) */
  guint64 head;      /* the next number the consumer takes */
  gint64 wait_since; /* monotonic time the consumer began to wait for it, or 0 */
  gboolean paused;
} SluiceReorderProgress;

/* Any thread; each field is read atomically, the whole is not a snapshot. */
void sluice_reorder_buffer_get_progress (SluiceReorderBuffer *rb, SluiceReorderProgress *progress);

/* Whether the consumer saw the end (or an error) through next(). */
gboolean sluice_reorder_buffer_consumer_finished (SluiceReorderBuffer *rb);

/* --- the buffer's layout, here so that the produce calls' fast path
 * (try_reserve ()) is inline in them (issue 19): nothing outside
 * sluice-reorder-buffer.c touches these fields. --- */

/* Items the consumer takes per visit to the ring. */
#define SLUICE_RB_BATCH_MAX 64

/* How far ahead a reservation fetches the slot it will write. */
#define SLUICE_RB_PREFETCH_AHEAD 8

enum
{
  SLUICE_RB_ENDED = 1 << 0,
  SLUICE_RB_ABORTED = 1 << 1,
  SLUICE_RB_PAUSED = 1 << 2,
};

struct _SluiceReorderBuffer
{
  guint window;
  guint low_water;
  guint capacity;
  guint mask;
  guint lap_shift;    /* log2 (capacity): a sequence number's lap of the ring */
  gboolean high_tags; /* slot handles carry lap bits in the pointer's top 16 bits */
  guint tag_mask;     /* the lap bits slot handles and slot states carry */
  SluiceSlot *ring;
  GDestroyNotify item_free_func;
  GCancellable *cancellable;

  SluiceReorderRoomFunc room_func;
  SluiceReorderFailedFunc failed_func;
  SluiceReorderSettledFunc settled_func;
  SluiceReorderEarlyMayFunc early_may_func;
  SluiceReorderEarlyAnswerFunc early_answer_func;
  int *room_wanted;  /* atomic; set to 1 with every room request (set_room_wanted_flag ()) */
  int *consumer_cpu; /* atomic; set_consumer_cpu_slot () */
  gpointer callback_data;
  GDestroyNotify callback_data_destroy;

  /* Not on the first line: completers read the ring's geometry there for
   * every slot handle, and a waited-for completion takes a reference. */
  int ref_count;
  GMutex lock;
  GCond cond;

  /* Under the lock. */
  GQueue overflow;
  GError *abort_error;
  gboolean settled_by_abort;

  /* The reservers', on a cache line of their own: under the reservation
   * lock (read atomically elsewhere where marked). */
  G_GNUC_UNUSED char pad0[64];
  int reserve_lock;    /* atomic: a spin lock, held for a few instructions */
  int gate_open;       /* whether try_reserve() may reserve at all */
  guint64 next_seq;    /* atomic reads */
  guint64 accepted;    /* atomic reads */
  guint64 handed_seen; /* the reservers' last look at `handed`: a lower bound */

  /* Read by everybody, written rarely. */
  G_GNUC_UNUSED char pad1[64];
  int flags;             /* atomic */
  int want_room;         /* atomic */
  int room_level;        /* atomic: live items at or below which the room function is called */
  int consumer_sleeping; /* atomic; set under both locks, cleared under the lock */
  int abandoned;         /* atomic: abandoned slots not yet completed, + 1 during a walk */
  int skip_failed;
  int wake_latency_us;       /* atomic; 0: wake for the head item at once */
  guint64 consumer_wait_seq; /* atomic; set with consumer_sleeping */
  int completer_cpu; /* atomic: where the last completion that woke the consumer ran, or -1 */
  guint64 end_seq;   /* atomic reads, valid with SLUICE_RB_ENDED */

  /* The consumer's own, on a cache line of their own. */
  G_GNUC_UNUSED char pad2[64];
  guint64 head;   /* next sequence number to take from the ring; atomic reads */
  guint64 handed; /* items handed out; atomic reads */
  gpointer batch[SLUICE_RB_BATCH_MAX];
  guint64 batch_single; /* lists mode: bit i, batch[i] is one item, not a list */
  guint batch_len;
  guint batch_pos;
  gboolean refilling; /* the room function said the owner refills the window */
  gboolean taking;    /* atomic: take_run () frees ready slots with plain stores */
  gboolean finished;
  gboolean finished_by_end;
  SluiceReorderStats stats;
  guint64 n_failed;         /* failed items the consumer reached; atomic reads */
  guint64 n_skipped;        /* of which skipped; atomic reads */
  gint64 wait_since;        /* when the consumer began to wait for the head, or 0; atomic reads */
  SluiceSpinRule spin_rule; /* waits with few in flight (adaptive_spin ()) */
  SluiceSpinRule apart_spin_rule; /* waits on another processor (spin_apart ()) */
  GPtrArray *list;                /* lists mode: the list being handed out, from list_pos */
  guint list_pos;
  /* The early room answer: set under the lock while the consumer sleeps
   * for the head (early_ok: it may be done for this sleep), by a completer
   * (the rest: the item it took, counted as handed already). */
  gboolean early_ok;
  gboolean early_taken; /* atomic reads in spin_apart () */
  gboolean early_single;
  gpointer early_item;

  /* The wake rule's view of the load (note_item_gap ()): the moving
   * average of the time between items taken (counted by `handed`). */
  SluiceItemGap item_gap;

  gboolean lists; /* set before any item: a slot's item is a GPtrArray of items */
};

/* Read by a pool thread for every item (issue 19): inline. Any thread. */
static inline gboolean
sluice_reorder_buffer_is_aborted (SluiceReorderBuffer *rb)
{
  return (g_atomic_int_get (&rb->flags) & SLUICE_RB_ABORTED) != 0;
}

/* The buffer's cancellable, cancelled by an abort. Any thread. */
static inline GCancellable *
sluice_reorder_buffer_get_cancellable (SluiceReorderBuffer *rb)
{
  return rb->cancellable;
}

void sluice_reorder_buffer_reserve_lock_contended (SluiceReorderBuffer *rb);

/* The reservation lock: it guards the sequence counters, and the rare
 * changes that must not interleave with a reservation (the end, an abort, a
 * consumer about to sleep on a slot not yet reserved). It is held for a few
 * instructions and never while calling out or blocking, so a reservation
 * costs one atomic instruction where a mutex costs two plus two calls: the
 * owner's produce calls are the one per-item path that must lock at all.
 * Lock order: rb->lock, then the reservation lock. The uncontended case
 * inline and alone: the waiting loop's registers would make every
 * reservation save and restore four (issue 19). */
static inline void
sluice_reorder_buffer_reserve_lock (SluiceReorderBuffer *rb)
{
  if (G_UNLIKELY (__atomic_exchange_n (&rb->reserve_lock, 1, __ATOMIC_ACQUIRE) != 0))
    sluice_reorder_buffer_reserve_lock_contended (rb);
}

static inline void
sluice_reorder_buffer_reserve_unlock (SluiceReorderBuffer *rb)
{
  __atomic_store_n (&rb->reserve_lock, 0, __ATOMIC_RELEASE);
}

/* With the reservation lock held: whether @n more reservations fit. */
static inline gboolean
sluice_reorder_buffer_fits_reserving (SluiceReorderBuffer *rb, guint n)
{
  /* The consumer's counter is read only when the last look says the window
   * is full: its cache line does not bounce on every reservation. */
  if (rb->accepted + n - rb->handed_seen <= rb->window)
    return TRUE;
  rb->handed_seen = __atomic_load_n (&rb->handed, __ATOMIC_ACQUIRE);
  return rb->accepted + n - rb->handed_seen <= rb->window;
}

/* With the reservation lock held, and room for it. @claimed: the slot is
 * claimed for its completion at once, as sluice_reorder_buffer_claim_reserved
 * () would claim it (for owners that complete it through a path of their
 * own): the state is stored once, where a claim after it is one more atomic
 * instruction per item. */
static inline SluiceSlot *
sluice_reorder_buffer_reserve_reserving_as (SluiceReorderBuffer *rb, gboolean claimed)
{
  guint64 seq = rb->next_seq;
  SluiceSlot *slot = &rb->ring[seq & rb->mask];
  SluiceSlot *ahead = &rb->ring[(seq + SLUICE_RB_PREFETCH_AHEAD) & rb->mask];
  gboolean waited;

  /* The window keeps reservations within the ring: seq < handed + window
   * <= head + capacity, so the consumer has freed this slot. */
  g_assert (SLUICE_SLOT_KIND (g_atomic_int_get (&slot->state)) == SLUICE_SLOT_FREE);

  /* The consumer freed the slots ahead in its own cache: ask for them now,
   * for writing, so that the atomic instruction of a later reservation
   * (which waits for every earlier store) does not wait for that miss. */
  __builtin_prefetch (ahead, 1);

  __atomic_store_n (&slot->seq, seq, __ATOMIC_RELAXED); /* read by stale handles */
  slot->item = NULL;
  slot->single = FALSE;
  __atomic_store_n (&rb->next_seq, seq + 1, __ATOMIC_RELEASE);
  __atomic_store_n (&rb->accepted, rb->accepted + 1, __ATOMIC_RELEASE);

  /* A consumer asleep waiting for this very number wants to hear of it: it
   * registers under the reservation lock we hold before it looks at the
   * slot a last time, so a release store is enough. */
  waited = g_atomic_int_get (&rb->consumer_sleeping) &&
           __atomic_load_n (&rb->consumer_wait_seq, __ATOMIC_RELAXED) == seq;
  __atomic_store_n (&slot->state,
                    (int) (((seq >> rb->lap_shift) & rb->tag_mask) << SLUICE_SLOT_KIND_BITS) |
                        (claimed ? (waited ? SLUICE_SLOT_CLAIMED_WAITED : SLUICE_SLOT_CLAIMED)
                                 : (waited ? SLUICE_SLOT_WAITED : SLUICE_SLOT_PENDING)),
                    __ATOMIC_RELEASE);

  return slot;
}

static inline SluiceSlot *
sluice_reorder_buffer_reserve_reserving (SluiceReorderBuffer *rb)
{
  return sluice_reorder_buffer_reserve_reserving_as (rb, FALSE);
}

/* Without the lock, from any thread: the next slot, if the gate is open,
 * the buffer neither ended nor aborted, and the window has room for it and
 * one more; otherwise NULL, and the caller takes the locked path. This is
 * the produce calls' fast path: one atomic instruction. */
G_ALWAYS_INLINE static inline SluiceSlot *
sluice_reorder_buffer_try_reserve_as (SluiceReorderBuffer *rb, gboolean claimed)
{
  SluiceSlot *slot = NULL;

  sluice_reorder_buffer_reserve_lock (rb);
  /* Room for this one and one more: the reservation that fills the window
   * is left to the locked path, which also marks the producer not ready. */
  if (G_LIKELY (rb->gate_open && sluice_reorder_buffer_fits_reserving (rb, 2) &&
                !(g_atomic_int_get (&rb->flags) & (SLUICE_RB_ENDED | SLUICE_RB_ABORTED))))
    slot = sluice_reorder_buffer_reserve_reserving_as (rb, claimed);
  sluice_reorder_buffer_reserve_unlock (rb);

  return slot;
}

static inline SluiceSlot *
sluice_reorder_buffer_try_reserve (SluiceReorderBuffer *rb)
{
  return sluice_reorder_buffer_try_reserve_as (rb, FALSE);
}

/* As try_reserve (), and the slot comes claimed for its completion (see
 * reserve_reserving_as ()): for owners that complete it themselves, such
 * as a task that runs the item's function in a thread. */
static inline SluiceSlot *
sluice_reorder_buffer_try_reserve_claimed (SluiceReorderBuffer *rb)
{
  return sluice_reorder_buffer_try_reserve_as (rb, TRUE);
}

void sluice_reorder_buffer_answer_room (SluiceReorderBuffer *rb);

/* Consumer thread, after `handed` grew: answers a room request of the
 * owner (answer_room () in sluice-reorder-buffer.c) if there is one. */
static inline void
sluice_reorder_buffer_check_room (SluiceReorderBuffer *rb)
{
  if (G_UNLIKELY (__atomic_load_n (&rb->want_room, __ATOMIC_RELAXED)))
    sluice_reorder_buffer_answer_room (rb);
}

/* next()'s common case alone, inline in the consumerator's next(): hands
 * out an item the consumer took into its batch already, if there is one
 * and nothing else is going on (no pause, no abort, a single item rather
 * than a list). Returns
 * FALSE otherwise, having done nothing: then call next(). */
static inline gboolean
sluice_reorder_buffer_next_batched (SluiceReorderBuffer *rb, gpointer *out_item)
{
  /* The common case, in a small frame: an item of the batch to hand out,
   * single items, no pause or abort (next_slow () does the same then). */
  if (G_LIKELY (rb->batch_pos < rb->batch_len &&
                (!rb->lists || (rb->list == NULL && (rb->batch_single >> rb->batch_pos) & 1)) &&
                !(g_atomic_int_get (&rb->flags) & (SLUICE_RB_ABORTED | SLUICE_RB_PAUSED))))
    {
      *out_item = rb->batch[rb->batch_pos++];
      __atomic_store_n (&rb->handed, rb->handed + 1, __ATOMIC_RELEASE);
      sluice_reorder_buffer_check_room (rb);
      return TRUE;
    }
  return FALSE;
}

G_END_DECLS
