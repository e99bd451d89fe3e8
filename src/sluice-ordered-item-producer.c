/* sluice-ordered-item-producer.c: results of asynchronous work, in call order
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "sluice-consumerator-private.h"
#include "sluice-task-queue-private.h"
#include "sluice-ordered-item-producer-private.h"

/**
 * SluiceOrderedItemProducer:
 *
 * Runs item functions, non-blocking ones on the caller's thread or blocking
 * ones in a [class@Sluice.TaskQueue], and hands their results to ONE blocking
 * consumer thread in the order the items were asked for, whatever order they
 * finish in.
 *
 * ```c
 * producer = sluice_ordered_item_producer_new (NULL, 64, g_free);
 * sluice_ordered_item_producer_start (producer, write_all, out, NULL, NULL);
 * for (guint i = 0; i < n; i++)
 *   sluice_ordered_item_producer_produce_item_in_thread (producer, compress_block,
 *                                                        block[i], NULL, G_PRIORITY_DEFAULT,
 *                                                        NULL, NULL, NULL);
 * sluice_ordered_item_producer_stop_async (producer, NULL, on_stopped, NULL);
 * ```
 *
 * ## Life cycle
 *
 * [method@Sluice.OrderedItemProducer.start] runs the consumer function in a
 * thread of its own; it takes the items with [method@Sluice.Consumerator.next].
 * Items may be produced before the start: they wait in the buffer (within
 * the window). [method@Sluice.OrderedItemProducer.stop_async] waits for every
 * item asked for, ends the iteration (`next` returns %FALSE without an
 * error), waits for the consumer function to return and gives its result.
 *
 * ## Errors
 *
 * When an item fails, the consumer receives every item before it, then
 * `next` returns %FALSE with that error; items after it are freed, work
 * still in flight is cancelled, later produce calls complete with
 * %SLUICE_ERROR_STOPPED, and `stop` reports the error. With
 * [property@Sluice.OrderedItemProducer:skip-failed] set, failed items are
 * left out instead and reported by [signal@Sluice.OrderedItemProducer::item-failed].
 *
 * A consumer function that returns before the end, or fails, stops
 * production the same way: later produce calls complete with
 * %SLUICE_ERROR_STOPPED without running their function.
 *
 * ## Flow control
 *
 * The [property@Sluice.OrderedItemProducer:window] bounds the live items:
 * asked for and not yet taken by the consumer. When it is full the producer
 * is not [property@Sluice.OrderedItemProducer:ready]; it becomes ready again
 * when the consumer has taken a quarter of them. Async sources wait for that with
 * the `notify::ready` signal, a source from
 * [method@Sluice.OrderedItemProducer.create_ready_source], or by registering
 * themselves as a [iface@Sluice.PushProducer] that is paused and resumed.
 * A produce call made while the window is full is not refused: it waits, and
 * its function runs on the owner context as soon as there is a place for it
 * (waiting calls start in order, one per place the consumer frees). Memory stays
 * bounded by the window however slow the consumer.
 *
 * As a [iface@Sluice.PushProducer] itself, the producer can be paused
 * (delivery to the consumer is held, items keep completing into the buffer),
 * resumed, and stopped for good (in-flight items see their cancellable
 * cancelled, buffered items are freed, the consumer gets
 * %SLUICE_ERROR_STOPPED).
 *
 * ## Threading
 *
 * The producer belongs to the thread-default main context of the thread that
 * created it, its owner context: callbacks, signals and property
 * notifications are delivered there. The produce calls, slot completion and
 * the push-producer methods are safe from any thread. The hot path, a slot
 * completed and its item handed to the consumer, takes no trip through a main
 * loop and allocates nothing.
 *
 * The callback of an asynchronous call (a produce call's, a stop's) always
 * runs from a main loop source on the thread-default context of the call,
 * never inside a call you are making, even when the result is known at once
 * (completing a slot from a timeout does not run the produce callback
 * before [method@Sluice.Slot.complete] returns). Compare GTask, whose
 * g_task_return_*() may call back at once. Property notifications and
 * signals are emitted on the owner context, possibly inside a call made
 * there, as GObject does. The destroy notify of the data given with a
 * function runs once the function will not run again: on the thread that
 * ran it last for item and thread functions, on the owner context for the
 * consumer function. The item free function runs on whichever thread lets
 * go of an item that nobody will take: the one that completes a slot after
 * a stop, the one that stops or disposes the producer (for items buffered
 * then), or the consumer thread (for items it had taken from the buffer but
 * not handed out); it must be safe to call from any thread.
 *
 * The consumer takes runs of items per wake-up. When it has nothing to take
 * while several items are in flight, it sleeps until a run of them (three
 * quarters of them; of a whole window when it has just made room for a
 * producer that was waiting for it, which is refilling the window) is
 * complete or for at most [property@Sluice.OrderedItemProducer:wake-latency]
 * (5 ms by default), so an item may reach the consumer that much after it
 * was completed. It does so only under load: with fewer than 8 items in
 * flight, or while items come 100 us or more apart on average, it wakes for
 * each item at once (the rule: doc/overview.md).
 */

typedef enum
{
  STATE_CREATED,
  STATE_STARTED,
  STATE_STOPPING, /* stop asked for; the end is set once deferred calls ran */
  STATE_CLOSED,   /* no more production: stopped, failed, consumer gone */
} ProducerState;

typedef enum
{
  REQUEST_ITEM,
  REQUEST_THREAD,
} RequestKind;

/* A produce call that waits for room in the window (the slow path). */
typedef struct
{
  RequestKind kind;
  gpointer func;
  gpointer func_data;
  GDestroyNotify func_data_destroy;
  int priority;
  GCancellable *cancellable;
  GTask *task;
} Request;

/* What the reorder buffer's callbacks reach us through: they run on other
 * threads and may outlive us. */
typedef struct
{
  GWeakRef producer;
  GMainContext *context;
  GThread *thread;             /* that created the producer; compared, never dereferenced */
  GSource *room_source;        /* the reorder buffer's link only: a RoomSource */
  SluiceTaskQueue *task_queue; /* the reorder buffer's link only: for slot continuations */

  /* The reorder buffer's link only: threads blocked in wait_ready(). */
  GMutex wait_lock;
  GCond wait_cond;
  guint wait_gen;     /* under wait_lock: bumped by every change a waiter looks for */
  int n_waiters;      /* atomic: the threads in wait_ready() and the tasks below */
  GQueue ready_tasks; /* under wait_lock: wait_ready_async() tasks, owned */
} Link;

/* What the consumer thread owns. */
typedef struct
{
  SluiceConsumerator *consumerator;
  SluiceReorderBuffer *rb;
  SluiceConsumerFunc func;
  gpointer user_data;
  GDestroyNotify user_data_destroy;
  GDestroyNotify result_free_func;
  Link *link;
  gpointer result;
  GError *error;
} ConsumerRun;

struct _SluiceOrderedItemProducer
{
  GObject parent_instance;

  GMainContext *owner_context;
  GThread *owner_thread;
  SluiceThreadId owner_thread_id; /* the same, for the per-item checks */
  GSource *room_source;           /* attached to the owner context until dispose */
  SluiceTaskQueue *task_queue;
  GCancellable *abort_cancellable; /* cancelled when production is aborted */
  SluiceReorderBuffer *rb;
  SluiceConsumerator *consumerator;
  GDestroyNotify item_free_func;
  guint window;
  Link *link;
  Link *rb_link; /* the reorder buffer's (it owns it): for wait_ready() */

  /* Under the reorder buffer's lock. */
  ProducerState state;
  GQueue deferred; /* of Request */
  gboolean ready;

  /* Owner context only. */
  gboolean ready_notified;
  gboolean closed_notified;
  SluicePushProducer *upstream;
  gboolean upstream_paused;
  GList *ready_sources;
  GThread *thread;
  gboolean consumer_returned;
  gpointer result;
  GError *consumer_error;
  GDestroyNotify result_free_func;
  GTask *stop_task;
  GSource *progress_source;       /* while started and not stopped: notifies the counters */
  guint64 notified_counts[4];     /* n-produced, n-consumed, n-failed, n-live as last notified */
  GCancellable *stop_cancellable; /* with its handler, while the stop runs */
  gulong stop_cancelled_handler;
  gboolean started;
  gboolean stop_called;
  gboolean values_consumer; /* started with start_values: the result is a GValue * */
};

enum
{
  PROP_0,
  PROP_TASK_QUEUE,
  PROP_WINDOW,
  PROP_SKIP_FAILED,
  PROP_WAKE_LATENCY,
  PROP_READY,
  PROP_CLOSED,
  PROP_CONSUMERATOR,
  PROP_N_PRODUCED,
  PROP_N_CONSUMED,
  PROP_N_FAILED,
  PROP_N_LIVE,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

enum
{
  SIGNAL_ITEM_FAILED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

static void sluice_ordered_item_producer_push_producer_init (SluicePushProducerInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (
    SluiceOrderedItemProducer,
    sluice_ordered_item_producer,
    G_TYPE_OBJECT,
    G_IMPLEMENT_INTERFACE (SLUICE_TYPE_PUSH_PRODUCER,
                           sluice_ordered_item_producer_push_producer_init))

static GError *
stopped_error (void)
{
  return g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_STOPPED,
                              _ ("The producer was stopped before the item could be produced"));
}

/* --- owner-context plumbing --- */

/* With the lock held, after the state or the deferred queue changed: new
 * produce calls may take the lock-free path only while they would start at
 * once anyway. */
static void
update_gate_locked (SluiceOrderedItemProducer *self)
{
  sluice_reorder_buffer_set_gate_locked (self->rb, self->state < STATE_STOPPING &&
                                                       g_queue_is_empty (&self->deferred));
}

/* With the lock held: every state change goes through here, so that the
 * gate always follows the state. */
static void
set_state_locked (SluiceOrderedItemProducer *self, ProducerState state)
{
  self->state = state;
  update_gate_locked (self);
}

static Link *
link_new (void)
{
  Link *link = g_new0 (Link, 1);

  g_mutex_init (&link->wait_lock);
  g_cond_init (&link->wait_cond);
  return link;
}

/* Any thread, after a change under the reorder buffer's lock that a thread
 * in wait_ready() looks for (room, the end, a stop): wakes them. A waiter
 * counts itself before it looks, so a change it did not see wakes it. */
static void ready_task_check_later (GTask *task);

static void
wake_ready_waiters (Link *link)
{
  GQueue tasks;
  GTask *task;

  if (g_atomic_int_get (&link->n_waiters) == 0)
    return;
  g_mutex_lock (&link->wait_lock);
  link->wait_gen++;
  g_cond_broadcast (&link->wait_cond);
  tasks = link->ready_tasks;
  g_queue_init (&link->ready_tasks);
  g_mutex_unlock (&link->wait_lock);

  /* Each task looks again on its own context (it may wait again). */
  while ((task = g_queue_pop_head (&tasks)) != NULL)
    {
      g_atomic_int_add (&link->n_waiters, -1);
      ready_task_check_later (task);
    }
}

static void
link_free (gpointer data)
{
  Link *link = data;

  g_weak_ref_clear (&link->producer);
  g_main_context_unref (link->context);
  g_clear_pointer (&link->room_source, g_source_unref);
  g_clear_object (&link->task_queue);
  g_mutex_clear (&link->wait_lock);
  g_cond_clear (&link->wait_cond);
  g_free (link);
}

/* Runs @func (@data) on the owner context: at once if this thread is
 * running it, or is the thread that created the producer and can acquire
 * it (no other thread runs it); else from an idle source. Not
 * g_main_context_invoke(): from any thread that merely manages to acquire
 * the context, it would run the owner's work there. Safe from any thread. */
static void
run_on_owner (Link *link, GSourceFunc func, gpointer data, GDestroyNotify destroy)
{
  gboolean acquired = FALSE;

  if (g_main_context_is_owner (link->context) ||
      (g_thread_self () == link->thread && (acquired = g_main_context_acquire (link->context))))
    {
      func (data);
      if (acquired)
        g_main_context_release (link->context);
      if (destroy != NULL)
        destroy (data);
      return;
    }

  sluice_idle_attach (link->context, G_PRIORITY_DEFAULT, "[sluice] owner callback", func, data,
                      destroy);
}

/* Runs @func (self) on the owner context. Safe from any thread. */
static void
invoke_on_owner (Link *link, GSourceFunc func)
{
  SluiceOrderedItemProducer *self = g_weak_ref_get (&link->producer);

  if (self == NULL)
    return;
  run_on_owner (link, func, self, g_object_unref);
}

/* Whether the calling thread created the producer (issue 19: is_ready ()
 * per item). */
static inline gboolean
is_owner_thread (SluiceOrderedItemProducer *self)
{
  return sluice_thread_id_is_self (self->owner_thread_id);
}

static void refresh_ready (SluiceOrderedItemProducer *self);
static void check_stop (SluiceOrderedItemProducer *self);
static void run_deferred (SluiceOrderedItemProducer *self);

/* Owner context: the consumer made room while we waited for it. */
static gboolean
on_room_idle (gpointer data)
{
  SluiceOrderedItemProducer *self = data;

  /* Produce calls from other threads may have filled the window again
   * since the consumer made room: ask the buffer, not the callback. */
  sluice_reorder_buffer_lock (self->rb);
  self->ready =
      sluice_reorder_buffer_has_room_locked (self->rb, !g_queue_is_empty (&self->deferred));
  sluice_reorder_buffer_unlock (self->rb);
  run_deferred (self);
  refresh_ready (self);
  check_stop (self);
  return G_SOURCE_REMOVE;
}

static gboolean
refresh_idle (gpointer data)
{
  SluiceOrderedItemProducer *self = data;

  refresh_ready (self);
  check_stop (self);
  return G_SOURCE_REMOVE;
}

/* Room for an owner that waited for it comes from the consumer thread
 * every quarter window (every item while produce calls wait for room), so
 * it does not go through run_on_owner(): an idle
 * source attached per call takes the owner context's lock and wakes the
 * owner while holding it, and the owner, woken, blocks on that lock at once
 * and needs a second wake-up (bench/run, 2 us items: 1 in 3 of its
 * wake-ups). This source is attached for the producer's life instead; the
 * consumer raises it with an atomic flag and g_main_context_wakeup(), which
 * takes no lock (g_main_context_is_owner() holds the context's lock only to
 * read its owner). */
typedef struct
{
  GSource source;
  int raised;         /* atomic */
  int owner_spinning; /* atomic: the owner polls `raised`, no wake-up needed */
  int room_wanted;    /* atomic: set by the buffer with its room request, cleared here */
  int consumer_cpu;   /* atomic: set by the buffer (set_consumer_cpu_slot ()) */
  gboolean few;       /* a window of OWNER_SPIN_MAX_WINDOW at most: the owner may spin */
  /* The owner's (the thread that iterates the context). */
  SluiceSpinRule spin_rule;
  gint64 wait_start;  /* when the owner began to wait for room, or 0 */
  gboolean wait_spun; /* the wait under way has had its spin */
  guint64 spins;      /* atomic reads: waits a spin ended */
  guint64 spin_fails; /* atomic reads: spins that ended in a sleep */
} RoomSource;

/* The owner spins for room (below) only with a window this small: one item
 * in flight, where each item costs the owner a wake-up and the consumer's
 * wake-up of the owner sat between an item's completion and its delivery
 * (bench/run latency_p50_1_us). With 4 in flight on 2 cores a spinning
 * owner takes a core from 4 workers and the consumer: at load 19 the p99
 * latency with 4 in flight came out worse in 2 of 3 alternations (noise,
 * but a risk to a goal that is met), so it stays off there until a quiet
 * run says otherwise. With larger windows a refill is a quarter of the
 * window: rarer, and the workers need the cores. */
#define OWNER_SPIN_MAX_WINDOW 1

/* The owner's adaptive spin for room, from the room source's prepare ()
 * (the owner context is about to poll, and may sleep): with a small window
 * and the room wanted, the owner polls `raised` by the rule of
 * SluiceSpinRule instead of sleeping in poll (), and while it does the
 * consumer raises the source without waking the context (no eventfd write
 * on the consumer's way to its item). Returns whether the source was
 * raised. */
static gboolean
room_source_spin (RoomSource *rs)
{
  gint64 start = g_get_monotonic_time ();
  gint64 end;
  gint64 now;

  /* One spin per wait at most: the owner context may iterate often while
   * it waits (other sources), and an idle owner must not spin each time. */
  if (rs->wait_start == 0)
    rs->wait_start = start;
  if (rs->wait_spun)
    return FALSE;
  rs->wait_spun = TRUE;
  /* Not on the processor the consumer waits on: there the consumer wants
   * the processor the moment its item completes (it spins or is woken;
   * the completer answers the owner for it anyway), and two spinning
   * threads on one processor take turns of a scheduler slice each. Measured
   * (bench/latency --latency-keep-apart with the owner bound beside the
   * consumer, 1 in flight, load 9): p50 49 us with the owner spinning,
   * 18-24 us without (the consumer's spin then at most 50 us; 1.3-1.4 us
   * with its 100 us). */
  {
    int consumer_cpu = g_atomic_int_get (&rs->consumer_cpu);

    if (consumer_cpu >= 0 && consumer_cpu == sluice_current_cpu ())
      return FALSE;
  }
  end = sluice_spin_rule_deadline (&rs->spin_rule, start);
  if (end == 0)
    return FALSE;

  g_atomic_int_set (&rs->owner_spinning, TRUE);
  do
    {
      /* The clock once every 16 polls: a poll is a load and a pause. */
      for (guint i = 0; i < 16; i++)
        {
          if (g_atomic_int_get (&rs->raised))
            {
              g_atomic_int_set (&rs->owner_spinning, FALSE);
              sluice_spin_rule_succeeded (&rs->spin_rule);
              __atomic_store_n (&rs->spins, rs->spins + 1, __ATOMIC_RELAXED);
              return TRUE;
            }
          sluice_cpu_relax ();
        }
      now = g_get_monotonic_time ();
    }
  while (now < end);
  /* Pairs with rb_room_cb (): it raises, then reads owner_spinning; we
   * clear that, then read `raised` (both sequentially consistent): either
   * it wakes the context or we see the raise. */
  g_atomic_int_set (&rs->owner_spinning, FALSE);
  if (g_atomic_int_get (&rs->raised))
    return TRUE;
  sluice_spin_rule_failed (&rs->spin_rule);
  __atomic_store_n (&rs->spin_fails, rs->spin_fails + 1, __ATOMIC_RELAXED);
  return FALSE;
}

static gboolean
room_source_prepare (GSource *source, int *timeout)
{
  RoomSource *rs = (RoomSource *) source;

  *timeout = -1;
  if (g_atomic_int_get (&rs->raised))
    return TRUE;
  if (rs->few && g_atomic_int_get (&rs->room_wanted))
    return room_source_spin (rs);
  return FALSE;
}

static gboolean
room_source_check (GSource *source)
{
  return g_atomic_int_get (&((RoomSource *) source)->raised);
}

static gboolean
room_source_dispatch (GSource *source, GSourceFunc callback, gpointer data)
{
  RoomSource *rs = (RoomSource *) source;

  g_atomic_int_set (&rs->raised, FALSE);
  g_atomic_int_set (&rs->room_wanted, FALSE);
  if (rs->wait_start != 0)
    {
      /* Spun or slept through: the length of the wait for room. */
      sluice_spin_rule_note_wait (&rs->spin_rule, g_get_monotonic_time () - rs->wait_start);
      rs->wait_start = 0;
    }
  rs->wait_spun = FALSE;
  return callback (data);
}

static GSourceFuncs room_source_funcs = {
  .prepare = room_source_prepare,
  .check = room_source_check,
  .dispatch = room_source_dispatch,
};

/* Owner context: the room source was raised. */
static gboolean
on_room_source (gpointer data)
{
  Link *link = data;
  g_autoptr (SluiceOrderedItemProducer) self = g_weak_ref_get (&link->producer);

  if (self != NULL)
    on_room_idle (self);
  return G_SOURCE_CONTINUE;
}

/* Any thread: whether the room may be given from another thread than the
 * owner's, i.e. the calling thread is not the owner's. */
static gboolean
room_is_remote (Link *link)
{
  return g_thread_self () != link->thread && !g_main_context_is_owner (link->context);
}

/* Any thread, the owner's included: gives the owner its room by raising
 * the room source, without calling out on this thread. */
static void
room_raise (Link *link)
{
  RoomSource *rs = (RoomSource *) link->room_source;

  /* Threads in wait_ready() look at the buffer themselves: the owner
   * context may not run (a producer fed from threads). */
  wake_ready_waiters (link);
  g_atomic_int_set (&rs->raised, TRUE);
  /* An owner spinning for room sees the raise (room_source_spin ()). */
  if (!g_atomic_int_get (&rs->owner_spinning))
    g_main_context_wakeup (link->context);
}

/* Consumer thread, about to sleep for the next item: whether a completer
 * may answer a room request for it (the reorder buffer's early room
 * answer): not for a consumer on the owner's thread, whose refill happens
 * inside rb_room_cb (). */
static gboolean
rb_early_room_may (gpointer data)
{
  return room_is_remote (data);
}

/* The completing thread, for a consumer rb_early_room_may () allowed. */
static void
rb_early_room_answer (gpointer data)
{
  room_raise (data);
}

/* Consumer thread: live items fell to low water while we wanted room.
 * Returns whether the owner refills the window from another thread now. */
static gboolean
rb_room_cb (gpointer data)
{
  Link *link = data;
  SluiceOrderedItemProducer *self;

  if (room_is_remote (link))
    {
      room_raise (link);
      return TRUE;
    }

  /* A consumer on the owner's thread (pulling from the consumerator): the
   * room must be taken at once, since that thread waits for the items, and
   * whatever refill comes has come when this returns. */
  self = g_weak_ref_get (&link->producer);
  if (self != NULL)
    run_on_owner (link, on_room_idle, self, g_object_unref);
  return FALSE;
}

typedef struct
{
  SluiceOrderedItemProducer *self;
  guint64 seq;
  GError *error;
} FailedItem;

static gboolean
emit_item_failed (gpointer data)
{
  FailedItem *failed = data;

  g_signal_emit (failed->self, signals[SIGNAL_ITEM_FAILED], 0, failed->seq, failed->error);
  return G_SOURCE_REMOVE;
}

static void
failed_item_free (gpointer data)
{
  FailedItem *failed = data;

  g_object_unref (failed->self);
  g_error_free (failed->error);
  g_free (failed);
}

/* Consumer thread, skip-failed mode. */
static void
rb_failed_cb (guint64 seq, GError *error, gpointer data)
{
  Link *link = data;
  SluiceOrderedItemProducer *self = g_weak_ref_get (&link->producer);
  FailedItem *failed;

  if (self == NULL)
    {
      g_error_free (error);
      return;
    }
  failed = g_new (FailedItem, 1);
  failed->self = self;
  failed->seq = seq;
  failed->error = error;
  run_on_owner (link, emit_item_failed, failed, failed_item_free);
}

/* Any thread: every slot pending at an abort has been completed. */
static void
rb_settled_cb (gpointer data)
{
  wake_ready_waiters (data);
  invoke_on_owner (data, refresh_idle);
}

/* --- progress --- */

/* n-produced, n-consumed, n-failed, n-live of a progress snapshot. */
static void
counts_of_progress (const SluiceReorderProgress *progress, guint64 counts[4])
{
  counts[0] = progress->accepted;
  counts[1] = progress->handed > progress->skipped ? progress->handed - progress->skipped : 0;
  counts[2] = progress->failed;
  counts[3] = progress->accepted > progress->handed ? progress->accepted - progress->handed : 0;
}

/* The same, read now, from any thread. */
static void
read_counts (SluiceOrderedItemProducer *self, guint64 counts[4])
{
  SluiceReorderProgress progress;

  sluice_reorder_buffer_get_progress (self->rb, &progress);
  counts_of_progress (&progress, counts);
}

/* Owner context: notifies the counters that changed since the last time. */
static void
notify_progress (SluiceOrderedItemProducer *self)
{
  guint64 counts[4];

  read_counts (self, counts);
  g_object_freeze_notify (G_OBJECT (self));
  for (guint i = 0; i < G_N_ELEMENTS (counts); i++)
    if (counts[i] != self->notified_counts[i])
      {
        self->notified_counts[i] = counts[i];
        g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_N_PRODUCED + i]);
      }
  g_object_thaw_notify (G_OBJECT (self));
}

static gboolean
on_progress_tick (gpointer data)
{
  notify_progress (data);
  return G_SOURCE_CONTINUE;
}

/* Owner context, from start(): ten looks a second, not one per item. */
static void
start_progress (SluiceOrderedItemProducer *self)
{
  self->progress_source = g_timeout_source_new (100);
  g_source_set_callback (self->progress_source, on_progress_tick, self, NULL);
  g_source_set_static_name (self->progress_source, "[sluice] progress");
  g_source_attach (self->progress_source, self->owner_context);
}

/* Owner context: the stop completed (@notify: the final figures), or the
 * producer goes away. */
static void
stop_progress (SluiceOrderedItemProducer *self, gboolean notify)
{
  if (self->progress_source == NULL)
    return;
  g_source_destroy (self->progress_source);
  g_clear_pointer (&self->progress_source, g_source_unref);
  if (notify)
    notify_progress (self);
}

/* --- ready state, sources, upstream --- */

typedef struct
{
  GSource source;
  SluiceOrderedItemProducer *producer;
} ReadySource;

/* Under the reorder buffer's lock: whether the producer is ready now (the
 * property is what the owner context was last told). */
static gboolean
is_ready_locked (SluiceOrderedItemProducer *self, gboolean *out_closed)
{
  gboolean closed =
      self->state >= STATE_STOPPING || sluice_reorder_buffer_is_closed_locked (self->rb);

  if (out_closed != NULL)
    *out_closed = closed;
  return closed || (self->ready && g_queue_is_empty (&self->deferred));
}

/* Under the reorder buffer's lock, for threads other than the owner's: as
 * is_ready_locked(), and also ready once live items fell to the low-water
 * mark, which the owner context (it may not run) has not heard of yet. */
static gboolean
is_ready_now_locked (SluiceOrderedItemProducer *self, gboolean *out_closed)
{
  if (is_ready_locked (self, out_closed))
    return TRUE;
  return g_queue_is_empty (&self->deferred) && sluice_reorder_buffer_get_n_live (self->rb) <=
                                                   sluice_reorder_buffer_get_low_water (self->rb);
}

static void
refresh_ready (SluiceOrderedItemProducer *self)
{
  gboolean closed, ready;
  g_autoptr (SluicePushProducer) stop_upstream = NULL;

  sluice_reorder_buffer_lock (self->rb);
  /* As a pollable stream is writable once closed (the write fails at once
   * instead of blocking), a closed producer is ready: a produce call
   * completes at once, with SLUICE_ERROR_STOPPED. */
  ready = is_ready_locked (self, &closed);
  sluice_reorder_buffer_unlock (self->rb);

  g_object_freeze_notify (G_OBJECT (self));

  if (closed && !self->closed_notified)
    {
      self->closed_notified = TRUE;
      /* An upstream can deliver nothing any more: stop it and let go. */
      stop_upstream = g_steal_pointer (&self->upstream);
      self->upstream_paused = FALSE;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CLOSED]);
    }

  if (ready != self->ready_notified)
    {
      self->ready_notified = ready;

      for (GList *l = self->ready_sources; l != NULL; l = l->next)
        g_source_set_ready_time (l->data, ready ? 0 : -1);

      if (self->upstream != NULL)
        {
          g_autoptr (SluicePushProducer) upstream = g_object_ref (self->upstream);

          if (!ready && !self->upstream_paused)
            {
              self->upstream_paused = TRUE;
              sluice_push_producer_pause_producing (upstream);
            }
          else if (ready && self->upstream_paused)
            {
              self->upstream_paused = FALSE;
              sluice_push_producer_resume_producing (upstream);
            }
        }

      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_READY]);
    }

  if (stop_upstream != NULL)
    sluice_push_producer_stop_producing (stop_upstream);

  wake_ready_waiters (self->rb_link);
  g_object_thaw_notify (G_OBJECT (self));
}

static gboolean
ready_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  if (callback == NULL)
    {
      g_warning ("Ready source dispatched without callback. "
                 "You must call g_source_set_callback().");
      return G_SOURCE_REMOVE;
    }
  return callback (user_data);
}

static void
ready_source_finalize (GSource *source)
{
  ReadySource *ready_source = (ReadySource *) source;
  SluiceOrderedItemProducer *self = ready_source->producer;

  self->ready_sources = g_list_remove (self->ready_sources, source);
  g_object_unref (self);
}

static gboolean
ready_source_closure_callback (gpointer data)
{
  GClosure *closure = data;
  GValue result_value = G_VALUE_INIT;
  gboolean result;

  g_value_init (&result_value, G_TYPE_BOOLEAN);
  g_closure_invoke (closure, &result_value, 0, NULL, NULL);
  result = g_value_get_boolean (&result_value);
  g_value_unset (&result_value);

  return result;
}

static GSourceFuncs ready_source_funcs = {
  .dispatch = ready_source_dispatch,
  .finalize = ready_source_finalize,
  .closure_callback = ready_source_closure_callback,
};

/* --- completing GTasks ---
 *
 * The rule for every callback of an asynchronous call here: it runs from a
 * source of its own on the thread-default context of the call, never inside
 * a call the user is making (a slot completed from a timeout on the owner
 * context, a stop_producing() there). g_task_return_*() alone calls back at
 * once when it is called from another source of the task's context than the
 * one that created the task, so the tasks are returned from an idle source.
 * That costs an idle per task, and tasks exist only where a callback was
 * asked for. */

typedef struct
{
  GTask *task;
  GError *error;
  gpointer result;
  GDestroyNotify result_free;
  gboolean is_pointer;
} LateReturn;

static gboolean
late_return_dispatch (gpointer data)
{
  LateReturn *late = data;

  if (late->error != NULL)
    g_task_return_error (late->task, g_steal_pointer (&late->error));
  else if (late->is_pointer)
    g_task_return_pointer (late->task, g_steal_pointer (&late->result), late->result_free);
  else
    g_task_return_boolean (late->task, TRUE);
  return G_SOURCE_REMOVE;
}

static void
late_return_free (gpointer data)
{
  LateReturn *late = data;

  /* Left over only when the context went away before the source ran. */
  g_clear_error (&late->error);
  if (late->result != NULL && late->result_free != NULL)
    late->result_free (late->result);
  g_object_unref (late->task);
  g_free (late);
}

/* Returns @task (transfer full) from an idle source on its context: with
 * @error (transfer full) if set, else with @result if @is_pointer, else
 * with TRUE. Safe from any thread. */
static void
task_return_later (
    GTask *task, GError *error, gboolean is_pointer, gpointer result, GDestroyNotify result_free)
{
  LateReturn *late = g_new0 (LateReturn, 1);

  late->task = task;
  late->error = error;
  late->is_pointer = is_pointer;
  late->result = result;
  late->result_free = result_free;
  sluice_idle_attach (g_task_get_context (task), g_task_get_priority (task),
                      "[sluice] async callback", late_return_dispatch, late, late_return_free);
}

/* --- slots --- */

static void
cancel_child (GCancellable *cancellable, gpointer data)
{
  g_cancellable_cancel (data);
}

/* What a slot carries only when the produce call asked for it. */
struct _SluiceSlotExtras
{
  GCancellable *cancellable;      /* per-item child, only when the caller gave one */
  GCancellable *user_cancellable; /* the one the caller gave */
  gulong user_handler;
  gulong abort_handler;
  GTask *task; /* only when the caller wants a callback */
};

/* The data of a freshly reserved slot (only its reserver touches it). */
static void
setup_slot (SluiceSlot *slot,
            gpointer func,
            gpointer func_data,
            GDestroyNotify func_data_destroy,
            GCancellable *cancellable,
            GTask *task)
{
  slot->func = func;
  slot->func_data = func_data;
  slot->func_data_destroy = func_data_destroy;
  slot->extras = NULL;

  if (cancellable == NULL && task == NULL)
    return;

  slot->extras = g_new0 (SluiceSlotExtras, 1);
  slot->extras->task = task;
  if (cancellable != NULL)
    {
      /* The item sees one cancellable that fires for the caller's or for a
       * stop; we never cancel the caller's own. */
      slot->extras->cancellable = g_cancellable_new ();
      slot->extras->user_cancellable = g_object_ref (cancellable);
    }
}

/* Outside the lock, before the function runs: connections may call back at
 * once if a cancellable already fired. */
static void
connect_slot (SluiceSlot *slot)
{
  SluiceSlotExtras *extras = slot->extras;

  if (extras == NULL || extras->cancellable == NULL)
    return;
  extras->user_handler = g_cancellable_connect (extras->user_cancellable, G_CALLBACK (cancel_child),
                                                g_object_ref (extras->cancellable), g_object_unref);
  extras->abort_handler = g_cancellable_connect (
      sluice_reorder_buffer_get_cancellable (slot->rb), G_CALLBACK (cancel_child),
      g_object_ref (extras->cancellable), g_object_unref);
}

static void
finish_slot_extras (SluiceSlot *slot, gpointer item, GError *error)
{
  SluiceSlotExtras *extras = g_steal_pointer (&slot->extras);
  GTask *task = NULL;
  GCancellable *child = NULL;
  GCancellable *user_cancellable = NULL;
  GCancellable *abort_cancellable = sluice_reorder_buffer_get_cancellable (slot->rb);
  gulong user_handler = 0;
  gulong abort_handler = 0;
  GError *task_error = NULL;
  gboolean delivered;

  if (extras != NULL)
    {
      task = extras->task;
      child = extras->cancellable;
      user_cancellable = extras->user_cancellable;
      user_handler = extras->user_handler;
      abort_handler = extras->abort_handler;
      g_free (extras);
    }

  if (task != NULL && error != NULL)
    task_error = g_error_copy (error);

  /* Disconnect while the buffer (and its cancellable) surely lives: once
   * the slot is published the consumer may end and drop everything. Not
   * g_cancellable_disconnect(): it waits for a running handler, which
   * deadlocks when the slot is completed from within a cancellation. The
   * handlers hold their own reference to the child. A handler id of 0: the
   * cancellable had fired before, and g_cancellable_connect() ran the
   * handler at once and kept nothing. */
  if (user_handler != 0)
    g_signal_handler_disconnect (user_cancellable, user_handler);
  if (abort_handler != 0)
    g_signal_handler_disconnect (abort_cancellable, abort_handler);

  delivered = sluice_reorder_buffer_publish (slot, item, error);

  if (task != NULL)
    task_return_later (task,
                       task_error != NULL ? task_error
                       : !delivered       ? stopped_error ()
                                          : NULL,
                       FALSE, NULL, NULL);
  g_clear_object (&child);
  g_clear_object (&user_cancellable);
}

/* Publishes the result of @slot, a claimed ring place. The common slot
 * has no task, cancellable or handlers: its completion reads nothing but
 * the slot's own line, which the claim brought (not the buffer's: issue
 * 19). */
static inline void
finish_slot (SluiceSlot *slot, gpointer item, GError *error)
{
  if (G_LIKELY (slot->extras == NULL))
    sluice_reorder_buffer_publish (slot, item, error);
  else
    finish_slot_extras (slot, item, error);
}

/* The cancellable of a slot (the ring place, not a handle). */
static GCancellable *
slot_cancellable (SluiceSlot *slot)
{
  return slot->extras != NULL && slot->extras->cancellable != NULL
             ? slot->extras->cancellable
             : sluice_reorder_buffer_get_cancellable (slot->rb);
}

/* Whether the slot behind @handle has no extras (read without a claim:
 * only a hint, see sluice_slot_complete ()). */
static inline gboolean
sluice_slot_handle_extras_none (SluiceSlot *handle)
{
  int tag_bits;

  return __atomic_load_n (&sluice_slot_handle_decode (handle, &tag_bits)->extras,
                          __ATOMIC_RELAXED) == NULL;
}

/* The critical for a handle whose slot was completed already. */
static void
report_completed (SluiceSlot *handle, const char *func)
{
  SluiceSlot *raw;
  guint64 seq;

  sluice_reorder_buffer_slot_from_handle (handle, &raw, &seq);
  /* g_log(), not the structured g_critical(): GLib 2.74's
   * g_test_expect_message() sees only the former, as it sees
   * g_return_if_fail(). */
  g_log (G_LOG_DOMAIN, G_LOG_LEVEL_CRITICAL,
         "%s: the slot of item %" G_GUINT64_FORMAT " was already completed; "
         "a slot is completed exactly once",
         func, seq);
}

/* The slot behind the handle an item function got, or %NULL (with a
 * critical naming its sequence number) when the handle's slot was completed
 * already. */
static SluiceSlot *
slot_from_handle (SluiceSlot *handle, const char *func)
{
  SluiceSlot *raw;
  guint64 seq;

  if (G_LIKELY (sluice_reorder_buffer_slot_from_handle (handle, &raw, &seq)))
    return raw;
  report_completed (handle, func);
  return NULL;
}

/* Claims the slot behind a handle for its completion (see
 * sluice_reorder_buffer_claim()), or returns %NULL with a critical naming
 * its sequence number when it was completed already, or is being completed
 * by another thread at this moment. @out_raw is the ring place either way. */
static inline SluiceSlot *
claim_slot (SluiceSlot *handle, const char *func, SluiceSlot **out_raw)
{
  if (G_LIKELY (sluice_reorder_buffer_claim (handle, out_raw)))
    return *out_raw;
  report_completed (handle, func);
  return NULL;
}

/**
 * sluice_slot_complete: (skip)
 * @slot: a slot from an item function
 * @item: (transfer full) (nullable): the item
 *
 * Completes @slot with @item, which the consumer will receive in its turn.
 * If the producer was stopped meanwhile, @item is freed with the producer's
 * item free function instead. Either way @slot is gone afterwards.
 *
 * A slot is completed once. A second completion (or a use of the slot after
 * its completion) while the producer exists is a programmer error that is
 * detected, whatever happened in between: it is reported with a critical
 * naming the item's sequence number and ignored (its item is freed), and
 * the first result stands. This holds for two completions at the very same
 * moment from two threads too: exactly one of them completes the slot
 * (which one is not defined), the other is reported.
 *
 * This function is safe to call from any thread. It takes no lock and
 * allocates nothing unless the consumer is asleep waiting for this very item.
 */
void
sluice_slot_complete (SluiceSlot *slot, gpointer item)
{
  SluiceSlot *raw;

  g_return_if_fail (slot != NULL);

  /* The common slot, with no extras: state and item in one atomic
   * instruction. The extras were set before the handle was given out, and a
   * stale handle's slot fails the exchange (its tag differs). */
  if (G_LIKELY (sluice_slot_handle_extras_none (slot)) &&
      sluice_reorder_buffer_complete_pending (slot, item))
    return;
  if (G_UNLIKELY (claim_slot (slot, G_STRFUNC, &raw) == NULL))
    {
      sluice_reorder_buffer_free_item (raw->rb, item);
      return;
    }
  finish_slot (raw, item, NULL);
}

/**
 * sluice_slot_complete_value: (rename-to sluice_slot_complete)
 * @slot: a slot from an item function of a producer made with
 *   [ctor@Sluice.OrderedItemProducer.new_for_values]
 * @value: (nullable): the item, copied; %NULL for a %NULL pointer
 *
 * Completes @slot with a copy of @value, which the consumer will receive
 * with [method@Sluice.Consumerator.next_value]. This is the form language
 * bindings use: a [struct@GObject.Value] carries any of their objects, with
 * its reference. Otherwise as [method@Sluice.Slot.complete].
 *
 * This function is safe to call from any thread.
 */
void
sluice_slot_complete_value (SluiceSlot *slot, const GValue *value)
{
  g_return_if_fail (slot != NULL);
  g_return_if_fail (value == NULL || G_IS_VALUE (value));

  sluice_slot_complete (slot, sluice_value_item_new (value));
}

/**
 * sluice_slot_fail:
 * @slot: a slot from an item function
 * @error: (transfer full): what went wrong
 *
 * Completes @slot with a failure. By default the consumer receives the items
 * before it, then the error, and production stops; see
 * [property@Sluice.OrderedItemProducer:skip-failed]. A second completion is
 * reported and ignored as [method@Sluice.Slot.complete] says (@error is
 * freed).
 *
 * This function is safe to call from any thread.
 */
void
sluice_slot_fail (SluiceSlot *slot, GError *error)
{
  SluiceSlot *raw;

  g_return_if_fail (slot != NULL);
  g_return_if_fail (error != NULL);

  if (G_UNLIKELY (claim_slot (slot, G_STRFUNC, &raw) == NULL))
    {
      g_error_free (error);
      return;
    }
  finish_slot (raw, NULL, error);
}

/**
 * sluice_slot_get_cancellable:
 * @slot: a slot from an item function
 *
 * Gets the cancellable the item's work should use: it is cancelled when the
 * producer stops (by a stop, a failure or the consumer leaving) and, if the
 * produce call was given a cancellable, when that one is.
 *
 * This function is safe to call from any thread until the slot is completed.
 *
 * Returns: (transfer none): the cancellable
 */
GCancellable *
sluice_slot_get_cancellable (SluiceSlot *slot)
{
  g_return_val_if_fail (slot != NULL, NULL);

  slot = slot_from_handle (slot, G_STRFUNC);
  if (G_UNLIKELY (slot == NULL))
    return NULL;
  return slot_cancellable (slot);
}

/**
 * sluice_slot_get_sequence:
 * @slot: a slot from an item function
 *
 * Gets the place of the item in the output: 0 for the first produce call of
 * the producer, 1 for the next, and so on.
 *
 * This function is safe to call from any thread until the slot is completed.
 *
 * Returns: the sequence number
 */
guint64
sluice_slot_get_sequence (SluiceSlot *slot)
{
  SluiceSlot *raw;
  guint64 seq;

  g_return_val_if_fail (slot != NULL, 0);

  if (G_UNLIKELY (!sluice_reorder_buffer_slot_from_handle (slot, &raw, &seq)))
    g_log (G_LOG_DOMAIN, G_LOG_LEVEL_CRITICAL,
           "%s: the slot of item %" G_GUINT64_FORMAT " was already completed", G_STRFUNC, seq);
  return seq;
}

/* A pool thread (or the thread that cancelled or shut the queue down). */
static void
run_in_thread (gpointer data, SluiceTaskReason reason)
{
  SluiceSlot *slot = data;
  SluiceThreadFunc func = (SluiceThreadFunc) slot->func;
  gpointer func_data = slot->func_data;
  GDestroyNotify func_data_destroy = slot->func_data_destroy;
  gpointer item = NULL;
  GError *error = NULL;

  if (reason == SLUICE_TASK_RUN && sluice_reorder_buffer_is_aborted (slot->rb))
    reason = SLUICE_TASK_SHUT_DOWN;

  switch (reason)
    {
    case SLUICE_TASK_RUN:
      item = func (slot_cancellable (slot), func_data, &error);
      break;
    case SLUICE_TASK_CANCELLED:
      error = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, _ ("Operation was cancelled"));
      break;
    case SLUICE_TASK_SHUT_DOWN:
    default:
      error = stopped_error ();
      break;
    }

  if (func_data_destroy != NULL)
    func_data_destroy (func_data);
  finish_slot (slot, item, error);
}

/* launch () for a slot of a blocking function: the task completes it. */
static void
launch_in_thread (SluiceOrderedItemProducer *self, SluiceSlot *slot, int priority)
{
  /* Claimed now, by the thread that reserved it and has its line. */
  sluice_reorder_buffer_claim_reserved (slot);
  sluice_task_queue_push (self->task_queue, priority,
                          slot->extras != NULL ? slot->extras->user_cancellable : NULL,
                          run_in_thread, slot);
}

/* Outside the lock: runs what a reserved slot was reserved for. */
static inline void
launch (SluiceOrderedItemProducer *self, SluiceSlot *slot, RequestKind kind, int priority)
{
  SluiceItemFunc func;
  gpointer func_data;
  GDestroyNotify func_data_destroy;

  if (G_UNLIKELY (slot->extras != NULL))
    connect_slot (slot);

  if (kind != REQUEST_ITEM)
    {
      launch_in_thread (self, slot, priority);
      return;
    }

  func = slot->func;
  func_data = slot->func_data;
  func_data_destroy = slot->func_data_destroy;
  /* The function may complete the slot before it returns: read nothing of
   * the slot after this call. */
  func (sluice_reorder_buffer_slot_handle (slot), func_data);
  if (func_data_destroy != NULL)
    func_data_destroy (func_data);
}

static void
request_fail (Request *request, GError *error)
{
  if (request->func_data_destroy != NULL)
    request->func_data_destroy (request->func_data);
  if (request->task != NULL)
    task_return_later (request->task, g_error_copy (error), FALSE, NULL, NULL);
  g_clear_object (&request->cancellable);
  g_free (request);
}

static void
fail_deferred (SluiceOrderedItemProducer *self)
{
  GQueue deferred;
  Request *request;
  g_autoptr (GError) error = stopped_error ();

  sluice_reorder_buffer_lock (self->rb);
  deferred = self->deferred;
  g_queue_init (&self->deferred);
  update_gate_locked (self);
  sluice_reorder_buffer_unlock (self->rb);

  while ((request = g_queue_pop_head (&deferred)) != NULL)
    request_fail (request, error);
}

/* Owner context: starts deferred produce calls while there is room. */
static void
run_deferred (SluiceOrderedItemProducer *self)
{
  gboolean end_now = FALSE;

  for (;;)
    {
      Request *request;
      SluiceSlot *slot;

      sluice_reorder_buffer_lock (self->rb);
      if (g_queue_is_empty (&self->deferred))
        {
          /* A stop waits for the deferred calls before it sets the end. */
          end_now = self->state == STATE_STOPPING;
          update_gate_locked (self);
          sluice_reorder_buffer_unlock (self->rb);
          break;
        }
      if (sluice_reorder_buffer_is_closed_locked (self->rb))
        {
          sluice_reorder_buffer_unlock (self->rb);
          fail_deferred (self);
          break;
        }
      /* Each waiting call starts as soon as there is a place for it: the
       * room function comes at the first free place while calls wait. */
      if (!sluice_reorder_buffer_has_room_locked (self->rb, TRUE))
        {
          self->ready = FALSE;
          sluice_reorder_buffer_unlock (self->rb);
          break;
        }
      request = g_queue_pop_head (&self->deferred);
      slot = sluice_reorder_buffer_reserve_locked (self->rb);
      setup_slot (slot, request->func, request->func_data, request->func_data_destroy,
                  request->cancellable, request->task);
      if (!sluice_reorder_buffer_has_room_locked (self->rb, !g_queue_is_empty (&self->deferred)))
        self->ready = FALSE;
      sluice_reorder_buffer_unlock (self->rb);

      launch (self, slot, request->kind, request->priority);
      g_clear_object (&request->cancellable);
      g_free (request);
    }

  if (end_now)
    sluice_reorder_buffer_end (self->rb);
}

static void
produce_slow (SluiceOrderedItemProducer *self,
              const Request *args, /* its task: none yet */
              GAsyncReadyCallback callback,
              gpointer user_data,
              gpointer source_tag)
{
  RequestKind kind = args->kind;
  gpointer func = args->func;
  gpointer func_data = args->func_data;
  GDestroyNotify func_data_destroy = args->func_data_destroy;
  int priority = args->priority;
  GCancellable *cancellable = args->cancellable;
  GTask *task = NULL;
  SluiceSlot *slot;
  gboolean became_unready = FALSE;

  if (callback != NULL)
    {
      task = g_task_new (self, cancellable, callback, user_data);
      g_task_set_source_tag (task, source_tag);
      g_task_set_check_cancellable (task, FALSE);

      slot = sluice_reorder_buffer_try_reserve (self->rb);
      if (G_LIKELY (slot != NULL))
        {
          setup_slot (slot, func, func_data, func_data_destroy, cancellable, task);
          launch (self, slot, kind, priority);
          return;
        }
    }

  sluice_reorder_buffer_lock (self->rb);

  if (self->state >= STATE_STOPPING || sluice_reorder_buffer_is_closed_locked (self->rb))
    {
      sluice_reorder_buffer_unlock (self->rb);
      if (func_data_destroy != NULL)
        func_data_destroy (func_data);
      if (task != NULL)
        task_return_later (task, stopped_error (), FALSE, NULL, NULL);
      return;
    }

  if (!g_queue_is_empty (&self->deferred) ||
      !sluice_reorder_buffer_has_room_locked (self->rb, TRUE))
    {
      /* The window is full: the call waits, in order, for room. */
      Request *request = g_new0 (Request, 1);

      request->kind = kind;
      request->func = func;
      request->func_data = func_data;
      request->func_data_destroy = func_data_destroy;
      request->priority = priority;
      request->cancellable = cancellable != NULL ? g_object_ref (cancellable) : NULL;
      request->task = task;
      g_queue_push_tail (&self->deferred, request);
      update_gate_locked (self);
      became_unready = self->ready;
      self->ready = FALSE;
      sluice_reorder_buffer_unlock (self->rb);
      if (became_unready)
        invoke_on_owner (self->link, refresh_idle);
      return;
    }

  slot = sluice_reorder_buffer_reserve_locked (self->rb);
  setup_slot (slot, func, func_data, func_data_destroy, cancellable, task);
  if (!sluice_reorder_buffer_has_room_locked (self->rb, FALSE))
    {
      became_unready = self->ready;
      self->ready = FALSE;
    }
  sluice_reorder_buffer_unlock (self->rb);

  if (became_unready)
    invoke_on_owner (self->link, refresh_idle);

  launch (self, slot, kind, priority);
}

/* Always inline: each produce call gets its own copy, with the arguments
 * it passes as constants (out of line it cost 24 instructions per item
 * more than inline, issue 19). */
G_ALWAYS_INLINE static inline void
produce (SluiceOrderedItemProducer *self,
         RequestKind kind,
         gpointer func,
         gpointer func_data,
         GDestroyNotify func_data_destroy,
         int priority,
         GCancellable *cancellable,
         GAsyncReadyCallback callback,
         gpointer user_data,
         gpointer source_tag)
{
  /* The common case, inline in the produce calls: no callback, started or
   * not, not stopping, nothing waiting for room, and the window far from
   * full. The rest, with its larger frame, is produce_slow (). */
  if (G_LIKELY (callback == NULL) && kind == REQUEST_THREAD && cancellable == NULL)
    {
      /* A task with nothing to connect: the slot comes claimed from the
       * reservation (one atomic instruction per item less than a claim in
       * launch_in_thread ()), and goes to the task queue as it is. */
      SluiceSlot *slot = sluice_reorder_buffer_try_reserve_claimed (self->rb);

      if (G_LIKELY (slot != NULL))
        {
          setup_slot (slot, func, func_data, func_data_destroy, NULL, NULL);
          sluice_task_queue_push (self->task_queue, priority, NULL, run_in_thread, slot);
          return;
        }
    }
  else if (G_LIKELY (callback == NULL))
    {
      SluiceSlot *slot = sluice_reorder_buffer_try_reserve (self->rb);

      if (G_LIKELY (slot != NULL))
        {
          if (kind == REQUEST_ITEM && cancellable == NULL)
            {
              /* Nothing but launch () reads the function from the slot of
               * an item function, and nothing the extras: call it. */
              slot->extras = NULL;
              ((SluiceItemFunc) func) (sluice_reorder_buffer_slot_handle (slot), func_data);
              if (func_data_destroy != NULL)
                func_data_destroy (func_data);
              return;
            }
          setup_slot (slot, func, func_data, func_data_destroy, cancellable, NULL);
          launch (self, slot, kind, priority);
          return;
        }
    }
  {
    Request args = { kind, func, func_data, func_data_destroy, priority, cancellable, NULL };

    produce_slow (self, &args, callback, user_data, source_tag);
  }
}

/**
 * sluice_ordered_item_producer_produce_item:
 * @self: a producer
 * @func: (scope notified) (closure func_data) (destroy func_data_destroy): the
 *   non-blocking item function
 * @func_data: data for @func
 * @func_data_destroy: (nullable): frees @func_data once @func has run (or
 *   will never run)
 * @cancellable: (nullable): cancels this item: the slot's cancellable
 *   ([method@Sluice.Slot.get_cancellable]) fires with it
 * @callback: (scope async) (nullable) (closure user_data): called on the
 *   thread-default context of this call once the item was produced (its slot
 *   completed), failed or was refused
 * @user_data: data for @callback
 *
 * Asks for one item, the next in the output order. @func is called at once
 * with a [struct@Sluice.Slot] that it completes, now or later, from any
 * thread. This wraps any GIO `_async`/`_finish` pair: start the operation in
 * @func and complete the slot from its callback.
 *
 * If the window is full, @func runs later on the owner context, when the
 * consumer has made room (the call is never refused for that: wait for
 * [property@Sluice.OrderedItemProducer:ready] to avoid the queueing). On
 * the owner context, the call that takes the last place makes the producer
 * not ready before it returns (`notify::ready` is emitted within it), so a
 * loop `while (is_ready ()) produce ();` there stays within the window.
 * After a stop, a failure or the consumer's return, @func is not called and
 * the item completes with %SLUICE_ERROR_STOPPED: produce calls may race
 * with those, so this is no programmer error.
 *
 * @callback serves concurrency limiting (a caller that keeps N items in
 * flight starts the next one from it): it says the item was handed to the
 * buffer, not that the consumer took it. The item itself goes to the
 * consumer, so [method@Sluice.OrderedItemProducer.produce_item_finish]
 * gives only whether it got there.
 *
 * This function is safe to call from any thread.
 */
void
sluice_ordered_item_producer_produce_item (SluiceOrderedItemProducer *self,
                                           SluiceItemFunc func,
                                           gpointer func_data,
                                           GDestroyNotify func_data_destroy,
                                           GCancellable *cancellable,
                                           GAsyncReadyCallback callback,
                                           gpointer user_data)
{
  g_return_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self));
  g_return_if_fail (func != NULL);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  produce (self, REQUEST_ITEM, func, func_data, func_data_destroy, G_PRIORITY_DEFAULT, cancellable,
           callback, user_data, sluice_ordered_item_producer_produce_item);
}

/**
 * sluice_ordered_item_producer_produce: (skip)
 * @self: a producer
 * @func: the non-blocking item function
 * @func_data: data for @func, which the caller frees (or @func does)
 *
 * The common case of [method@Sluice.OrderedItemProducer.produce_item]:
 * asks for the next item, made by @func, with no cancellable, no callback
 * and nothing to free when @func has run.
 *
 * This function is safe to call from any thread.
 */
void
sluice_ordered_item_producer_produce (SluiceOrderedItemProducer *self,
                                      SluiceItemFunc func,
                                      gpointer func_data)
{
  g_return_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self));
  g_return_if_fail (func != NULL);

  produce (self, REQUEST_ITEM, func, func_data, NULL, G_PRIORITY_DEFAULT, NULL, NULL, NULL,
           sluice_ordered_item_producer_produce);
}

/**
 * sluice_ordered_item_producer_produce_in_thread: (skip)
 * @self: a producer
 * @func: the blocking function that returns the item
 * @func_data: data for @func, which the caller frees (or @func does)
 *
 * The common case of
 * [method@Sluice.OrderedItemProducer.produce_item_in_thread]: asks for the
 * next item, made by @func in a thread of the producer's task queue at the
 * default priority, with no cancellable, no callback and nothing to free
 * when @func has run.
 *
 * This function is safe to call from any thread.
 */
void
sluice_ordered_item_producer_produce_in_thread (SluiceOrderedItemProducer *self,
                                                SluiceThreadFunc func,
                                                gpointer func_data)
{
  g_return_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self));
  g_return_if_fail (func != NULL);

  produce (self, REQUEST_THREAD, func, func_data, NULL, G_PRIORITY_DEFAULT, NULL, NULL, NULL,
           sluice_ordered_item_producer_produce_in_thread);
}

/**
 * sluice_ordered_item_producer_produce_item_in_thread: (skip)
 * @self: a producer
 * @func: (scope notified) (closure func_data) (destroy func_data_destroy): the
 *   blocking function that returns the item
 * @func_data: data for @func
 * @func_data_destroy: (nullable): frees @func_data once @func has run (or
 *   will never run)
 * @priority: the priority in the task queue (lower runs first)
 * @cancellable: (nullable): cancels this item; if it fires before @func
 *   runs, @func never runs and the item fails with %G_IO_ERROR_CANCELLED
 * @callback: (scope async) (nullable) (closure user_data): called on the
 *   thread-default context of this call once the item was produced
 * @user_data: data for @callback
 *
 * Asks for one item, the next in the output order, made by @func in a
 * thread of the producer's [class@Sluice.TaskQueue]: its return value
 * (or error) completes the item. Otherwise as
 * [method@Sluice.OrderedItemProducer.produce_item].
 *
 * This function is safe to call from any thread.
 */
void
sluice_ordered_item_producer_produce_item_in_thread (SluiceOrderedItemProducer *self,
                                                     SluiceThreadFunc func,
                                                     gpointer func_data,
                                                     GDestroyNotify func_data_destroy,
                                                     int priority,
                                                     GCancellable *cancellable,
                                                     GAsyncReadyCallback callback,
                                                     gpointer user_data)
{
  g_return_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self));
  g_return_if_fail (func != NULL);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  produce (self, REQUEST_THREAD, func, func_data, func_data_destroy, priority, cancellable,
           callback, user_data, sluice_ordered_item_producer_produce_item_in_thread);
}

/* A binding's function with its data: the value forms of the thread and
 * consumer functions are adapted to the gpointer core through it. */
typedef struct
{
  gpointer func;
  gpointer data;
  GDestroyNotify data_destroy;
} ValueCall;

static ValueCall *
value_call_new (gpointer func, gpointer data, GDestroyNotify data_destroy)
{
  ValueCall *call = g_new (ValueCall, 1);

  call->func = func;
  call->data = data;
  call->data_destroy = data_destroy;
  return call;
}

static void
value_call_free (gpointer data)
{
  ValueCall *call = data;

  if (call->data_destroy != NULL)
    call->data_destroy (call->data);
  g_free (call);
}

/* What a value function left: the value (a pointer-typed NULL if it set
 * none), or NULL with its error. */
static GValue *
value_call_result (GValue *value, GError *local_error, GError **error)
{
  if (local_error != NULL)
    {
      /* A binding may have set the value before the error was raised. */
      sluice_value_item_free (value);
      g_propagate_error (error, local_error);
      return NULL;
    }
  if (!G_IS_VALUE (value))
    g_value_init (value, G_TYPE_POINTER);
  return value;
}

/* A pool thread: a SluiceValueThreadFunc as a SluiceThreadFunc. */
static gpointer
run_value_thread_call (GCancellable *cancellable, gpointer data, GError **error)
{
  ValueCall *call = data;
  GValue *value = g_new0 (GValue, 1);
  GError *local_error = NULL;

  ((SluiceValueThreadFunc) call->func) (cancellable, value, call->data, &local_error);
  return value_call_result (value, local_error, error);
}

/**
 * sluice_slot_continue_in_thread: (skip)
 * @slot: a slot from an item function
 * @func: (scope notified) (closure func_data) (destroy func_data_destroy): the
 *   blocking function whose result completes @slot
 * @func_data: data for @func
 * @func_data_destroy: (nullable): frees @func_data once @func has run (or
 *   will never run)
 *
 * Continues the item of @slot with blocking work: runs @func in a thread of
 * the producer's [class@Sluice.TaskQueue], at %G_PRIORITY_DEFAULT, with the
 * slot's cancellable, and completes @slot with what @func returns, or fails
 * it with @func's error, as
 * [method@Sluice.OrderedItemProducer.produce_item_in_thread] does. This is
 * the second half of an item that needs async I/O first and blocking work
 * second (read a file, then hash it): call it from the I/O's callback
 * instead of completing the slot.
 *
 * The slot is handed over: do not complete it yourself. If the producer
 * stops before @func runs, @func does not run and the item fails with
 * %SLUICE_ERROR_STOPPED; if the produce call's cancellable fires first, with
 * %G_IO_ERROR_CANCELLED. A slot that was completed already is reported as
 * [method@Sluice.Slot.complete] says, and @func never runs.
 *
 * This function is safe to call from any thread.
 */
void
sluice_slot_continue_in_thread (SluiceSlot *slot,
                                SluiceThreadFunc func,
                                gpointer func_data,
                                GDestroyNotify func_data_destroy)
{
  Link *link;

  g_return_if_fail (slot != NULL);
  g_return_if_fail (func != NULL);

  /* The slot is the task's from now on: a completion by the caller, now
   * or later, is reported. */
  if (G_UNLIKELY (claim_slot (slot, G_STRFUNC, &slot) == NULL))
    {
      if (func_data_destroy != NULL)
        func_data_destroy (func_data);
      return;
    }

  /* The item function that got the slot read these before it ran. */
  slot->func = func;
  slot->func_data = func_data;
  slot->func_data_destroy = func_data_destroy;
  link = sluice_reorder_buffer_get_callback_data (slot->rb);
  sluice_task_queue_push (link->task_queue, G_PRIORITY_DEFAULT,
                          slot->extras != NULL ? slot->extras->user_cancellable : NULL,
                          run_in_thread, slot);
}

/**
 * sluice_slot_continue_value_in_thread: (rename-to sluice_slot_continue_in_thread)
 * @slot: a slot from an item function of a producer made for values
 * @func: (scope notified) (closure func_data) (destroy func_data_destroy): the
 *   blocking function that sets the item
 * @func_data: data for @func
 * @func_data_destroy: (nullable): frees @func_data once @func has run (or
 *   will never run)
 *
 * As [method@Sluice.Slot.continue_in_thread], for a producer whose items are
 * values: the value @func sets (or its error) completes @slot. This is the
 * form language bindings use.
 *
 * This function is safe to call from any thread.
 */
void
sluice_slot_continue_value_in_thread (SluiceSlot *slot,
                                      SluiceValueThreadFunc func,
                                      gpointer func_data,
                                      GDestroyNotify func_data_destroy)
{
  g_return_if_fail (slot != NULL);
  g_return_if_fail (func != NULL);

  sluice_slot_continue_in_thread (slot, run_value_thread_call,
                                  value_call_new (func, func_data, func_data_destroy),
                                  value_call_free);
}

/* The annotation must stay on the identifier line. */
/* clang-format off */
/**
 * sluice_ordered_item_producer_produce_value_in_thread: (rename-to sluice_ordered_item_producer_produce_item_in_thread)
 * @self: a producer made with [ctor@Sluice.OrderedItemProducer.new_for_values]
 * @func: (scope notified) (closure func_data) (destroy func_data_destroy): the
 *   blocking function that sets the item
 * @func_data: data for @func
 * @func_data_destroy: (nullable): frees @func_data once @func has run (or
 *   will never run)
 * @priority: the priority in the task queue (lower runs first)
 * @cancellable: (nullable): cancels this item; if it fires before @func
 *   runs, @func never runs and the item fails with %G_IO_ERROR_CANCELLED
 * @callback: (scope async) (nullable) (closure user_data): called on the
 *   thread-default context of this call once the item was produced
 * @user_data: data for @callback
 *
 * Asks for one item, the next in the output order, made by @func in a
 * thread of the producer's [class@Sluice.TaskQueue]: the value it sets (or
 * its error) completes the item. This is the form language bindings use;
 * otherwise as [method@Sluice.OrderedItemProducer.produce_item_in_thread].
 *
 * This function is safe to call from any thread.
 */
/* clang-format on */
void
sluice_ordered_item_producer_produce_value_in_thread (SluiceOrderedItemProducer *self,
                                                      SluiceValueThreadFunc func,
                                                      gpointer func_data,
                                                      GDestroyNotify func_data_destroy,
                                                      int priority,
                                                      GCancellable *cancellable,
                                                      GAsyncReadyCallback callback,
                                                      gpointer user_data)
{
  g_return_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self));
  g_return_if_fail (self->item_free_func == sluice_value_item_free);
  g_return_if_fail (func != NULL);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  produce (self, REQUEST_THREAD, run_value_thread_call,
           value_call_new (func, func_data, func_data_destroy), value_call_free, priority,
           cancellable, callback, user_data, sluice_ordered_item_producer_produce_value_in_thread);
}

/**
 * sluice_ordered_item_producer_produce_item_finish:
 * @self: a producer
 * @result: the result given to the produce call's callback
 * @error: return location for an error
 *
 * Finishes [method@Sluice.OrderedItemProducer.produce_item] or
 * [method@Sluice.OrderedItemProducer.produce_item_in_thread].
 *
 * Returns: %TRUE if the item was handed to the buffer; %FALSE with @error
 *   set if it failed (its own error, or %G_IO_ERROR_CANCELLED) or was
 *   refused or dropped by a stop (%SLUICE_ERROR_STOPPED)
 */
gboolean
sluice_ordered_item_producer_produce_item_finish (SluiceOrderedItemProducer *self,
                                                  GAsyncResult *result,
                                                  GError **error)
{
  g_return_val_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/* --- the consumer thread --- */

/* Owner context: the consumer's data goes where it came from (a binding
 * such as GJS can release its closures on its own thread only). */
static void
consumer_run_release_user_data (ConsumerRun *run)
{
  if (run->user_data_destroy != NULL)
    g_steal_pointer (&run->user_data_destroy) (run->user_data);
}

static gboolean
consumer_returned_idle (gpointer data)
{
  ConsumerRun *run = data;
  SluiceOrderedItemProducer *self = g_weak_ref_get (&run->link->producer);

  /* Before the stop can complete. */
  consumer_run_release_user_data (run);
  if (self == NULL)
    return G_SOURCE_REMOVE;

  self->consumer_returned = TRUE;
  self->result = g_steal_pointer (&run->result);
  self->consumer_error = g_steal_pointer (&run->error);
  if (self->thread != NULL)
    g_thread_join (g_steal_pointer (&self->thread));

  sluice_reorder_buffer_lock (self->rb);
  set_state_locked (self, STATE_CLOSED);
  sluice_reorder_buffer_unlock (self->rb);
  fail_deferred (self);
  refresh_ready (self);
  check_stop (self);

  g_object_unref (self);
  return G_SOURCE_REMOVE;
}

static void
consumer_run_free (gpointer data)
{
  ConsumerRun *run = data;

  consumer_run_release_user_data (run);
  if (run->result != NULL && run->result_free_func != NULL)
    run->result_free_func (run->result);
  g_clear_error (&run->error);
  link_free (run->link);
  g_free (run);
}

static gpointer
consumer_thread (gpointer data)
{
  ConsumerRun *run = data;
  GMainContext *context = g_main_context_ref (run->link->context);

  run->result = run->func (run->consumerator, run->user_data, &run->error);
  if (run->result != NULL && run->error != NULL)
    {
      g_critical ("A SluiceConsumerFunc returned a result and set an error; "
                  "the result is dropped");
      if (run->result_free_func != NULL)
        run->result_free_func (g_steal_pointer (&run->result));
    }

  /* Release everything before the owner hears of the return, so that a
   * finished stop means nothing of ours is left. */
  sluice_reorder_buffer_consumer_done (run->rb);
  /* The producer is closed now: threads in wait_ready() hear of it here,
   * the owner context (which may not run) below. */
  wake_ready_waiters (sluice_reorder_buffer_get_callback_data (run->rb));
  sluice_consumerator_finish_serving (run->consumerator);
  g_clear_object (&run->consumerator);
  g_clear_pointer (&run->rb, sluice_reorder_buffer_unref);

  run_on_owner (run->link, consumer_returned_idle, run, consumer_run_free);
  g_main_context_unref (context);
  return NULL;
}

/* The consumer thread of a producer started without a function. */
static gpointer
serve_next_requests (SluiceConsumerator *consumerator, gpointer data, GError **error)
{
  sluice_consumerator_serve_requests (consumerator);
  return NULL;
}

/**
 * sluice_ordered_item_producer_start: (skip)
 * @self: a producer
 * @func: (scope notified) (closure user_data) (destroy user_data_destroy) (nullable):
 *   the blocking consumer function, or %NULL to consume on a main loop
 * @user_data: data for @func
 * @user_data_destroy: (nullable): frees @user_data when @func has returned,
 *   on the owner context
 * @result_free_func: (nullable) (scope async): frees the result of @func if
 *   nobody takes it with [method@Sluice.OrderedItemProducer.stop_finish]
 *
 * Runs @func in a new thread of its own (a long-lived consumer must not
 * hold a pool thread that item work needs). @func takes the items from the
 * consumerator it is given; its return value is the result of the stop.
 *
 * Without @func, the items are taken on a main loop with
 * [method@Sluice.Consumerator.next_async] on the producer's
 * [property@Sluice.OrderedItemProducer:consumerator] (the consumer thread
 * answers those requests, in order): the way for languages that cannot run
 * code on other threads. The stop's result is then %NULL, and the stop
 * completes once a request has received the end.
 *
 * A producer starts once; starting twice, or after a stop, is a programmer
 * error.
 *
 * Call it on the owner context.
 */
void
sluice_ordered_item_producer_start (SluiceOrderedItemProducer *self,
                                    SluiceConsumerFunc func,
                                    gpointer user_data,
                                    GDestroyNotify user_data_destroy,
                                    GFreeFunc result_free_func)
{
  ConsumerRun *run;
  ProducerState state;

  g_return_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self));

  sluice_reorder_buffer_lock (self->rb);
  state = self->state;
  sluice_reorder_buffer_unlock (self->rb);
  g_return_if_fail (!self->stop_called);
  g_return_if_fail (state == STATE_CREATED);

  sluice_reorder_buffer_lock (self->rb);
  set_state_locked (self, STATE_STARTED);
  sluice_reorder_buffer_unlock (self->rb);
  self->started = TRUE;
  start_progress (self);

  run = g_new0 (ConsumerRun, 1);
  run->consumerator = g_object_ref (self->consumerator);
  run->rb = sluice_reorder_buffer_ref (self->rb);
  run->func = func != NULL ? func : serve_next_requests;
  run->user_data = user_data;
  run->user_data_destroy = user_data_destroy;
  run->result_free_func = result_free_func;
  run->link = link_new ();
  g_weak_ref_init (&run->link->producer, self);
  run->link->context = g_main_context_ref (self->owner_context);
  run->link->thread = self->owner_thread;
  self->result_free_func = result_free_func;

  self->thread = g_thread_new ("sluice-consumer", consumer_thread, run);
}

/* The consumer thread: a SluiceValueConsumerFunc as a SluiceConsumerFunc. */
static gpointer
run_value_consumer (SluiceConsumerator *consumerator, gpointer data, GError **error)
{
  ValueCall *call = data;
  GValue *result = g_new0 (GValue, 1);
  GError *local_error = NULL;

  ((SluiceValueConsumerFunc) call->func) (consumerator, result, call->data, &local_error);
  return value_call_result (result, local_error, error);
}

/**
 * sluice_ordered_item_producer_start_values: (rename-to sluice_ordered_item_producer_start)
 * @self: a producer made with [ctor@Sluice.OrderedItemProducer.new_for_values]
 * @func: (scope notified) (closure user_data) (destroy user_data_destroy) (nullable):
 *   the blocking consumer function, or %NULL to consume on a main loop with
 *   [method@Sluice.Consumerator.next_async] and
 *   [method@Sluice.Consumerator.next_value_finish]
 * @user_data: data for @func
 * @user_data_destroy: (nullable): frees @user_data when @func has returned,
 *   on the owner context
 *
 * Runs @func in a new thread of its own, as
 * [method@Sluice.OrderedItemProducer.start] does; @func takes the items
 * with [method@Sluice.Consumerator.next_value] and its result is collected
 * with [method@Sluice.OrderedItemProducer.stop_finish_value]. This is the
 * form language bindings use.
 *
 * Call it on the owner context.
 */
void
sluice_ordered_item_producer_start_values (SluiceOrderedItemProducer *self,
                                           SluiceValueConsumerFunc func,
                                           gpointer user_data,
                                           GDestroyNotify user_data_destroy)
{
  g_return_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self));
  g_return_if_fail (self->item_free_func == sluice_value_item_free);
  g_return_if_fail (!self->started && !self->stop_called);

  self->values_consumer = TRUE;
  if (func == NULL)
    {
      if (user_data_destroy != NULL)
        user_data_destroy (user_data);
      sluice_ordered_item_producer_start (self, NULL, NULL, NULL, sluice_value_item_free);
      return;
    }
  sluice_ordered_item_producer_start (self, run_value_consumer,
                                      value_call_new (func, user_data, user_data_destroy),
                                      value_call_free, sluice_value_item_free);
}

/* --- stopping --- */

static void abort_with_error (SluiceOrderedItemProducer *self, const GError *error);

/* Any thread: the stop's cancellable fired. */
/* Any thread. @data is a link of the handler's own, freed with the handler
 * (after a run in progress, unlike the producer's). */
static void
on_stop_cancelled (GCancellable *cancellable, gpointer data)
{
  Link *link = data;
  SluiceOrderedItemProducer *self = g_weak_ref_get (&link->producer);
  g_autoptr (GError) error = NULL;

  if (self == NULL)
    return;
  error = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, _ ("The stop was cancelled"));
  abort_with_error (self, error);
  /* Our reference goes to the owner context: a last unref there, not on
   * whichever thread cancelled. */
  run_on_owner (link, refresh_idle, self, g_object_unref);
}

/* Owner context. Not g_cancellable_disconnect(): it deadlocks when called
 * from within the handler (a cancel on the owner context completes the
 * stop at once). */
static void
disconnect_stop_cancellable (SluiceOrderedItemProducer *self)
{
  if (self->stop_cancelled_handler != 0)
    g_signal_handler_disconnect (self->stop_cancellable, self->stop_cancelled_handler);
  self->stop_cancelled_handler = 0;
  g_clear_object (&self->stop_cancellable);
}

static void
check_stop (SluiceOrderedItemProducer *self)
{
  GTask *task;
  gboolean deferred_empty;
  const GError *abort_error;

  if (self->stop_task == NULL)
    return;

  sluice_reorder_buffer_lock (self->rb);
  deferred_empty = g_queue_is_empty (&self->deferred);
  sluice_reorder_buffer_unlock (self->rb);

  /* A consumer that was started must have returned. */
  if (self->started && !self->consumer_returned)
    return;
  if (!deferred_empty || !sluice_reorder_buffer_is_settled (self->rb))
    return;

  task = g_steal_pointer (&self->stop_task);
  disconnect_stop_cancellable (self);
  stop_progress (self, TRUE);
  abort_error = sluice_reorder_buffer_get_abort_error (self->rb);

  /* The first error wins: a failed item or a stop, then the consumer's. */
  if (abort_error != NULL)
    {
      task_return_later (task, g_error_copy (abort_error), FALSE, NULL, NULL);
      if (self->result != NULL && self->result_free_func != NULL)
        self->result_free_func (g_steal_pointer (&self->result));
    }
  else if (self->consumer_error != NULL)
    task_return_later (task, g_steal_pointer (&self->consumer_error), FALSE, NULL, NULL);
  else
    task_return_later (task, NULL, TRUE, g_steal_pointer (&self->result), self->result_free_func);
}

/**
 * sluice_ordered_item_producer_stop_async:
 * @self: a producer
 * @cancellable: (nullable): aborts the stop: cancelling it stops production
 *   at once as [method@Sluice.PushProducer.stop_producing] does, and the
 *   stop completes with %G_IO_ERROR_CANCELLED (unless an error came first)
 * @callback: (scope async) (nullable) (closure user_data): called on the
 *   thread-default context of this call when the stop is complete
 * @user_data: data for @callback
 *
 * Ends production: no more produce calls are accepted (they complete with
 * %SLUICE_ERROR_STOPPED); every item already asked for is waited for; the
 * consumer's iteration ends; and once the consumer function has returned,
 * the stop completes with its result or the first error (a failed item, a
 * [method@Sluice.PushProducer.stop_producing], or the consumer's own error).
 *
 * A stop before [method@Sluice.OrderedItemProducer.start] frees buffered
 * items, cancels pending ones and completes with
 * %SLUICE_ERROR_NOT_STARTED once they are all done. A paused producer stays
 * paused: the stop completes after it is resumed. Calling it again completes
 * at once with %SLUICE_ERROR_STOPPED.
 *
 * Call it on the owner context.
 */
void
sluice_ordered_item_producer_stop_async (SluiceOrderedItemProducer *self,
                                         GCancellable *cancellable,
                                         GAsyncReadyCallback callback,
                                         gpointer user_data)
{
  g_autoptr (GTask) task = NULL;
  ProducerState state;

  g_return_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  /* The cancellable aborts production; the stop then completes with its
   * error through the usual path, not by GTask's own check. */
  task = g_task_new (self, NULL, callback, user_data);
  g_task_set_source_tag (task, sluice_ordered_item_producer_stop_async);

  if (self->stop_called)
    {
      task_return_later (g_steal_pointer (&task),
                         g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_STOPPED,
                                              _ ("The producer was already stopped")),
                         FALSE, NULL, NULL);
      return;
    }
  self->stop_called = TRUE;
  self->stop_task = g_steal_pointer (&task);
  if (cancellable != NULL)
    {
      Link *link = link_new ();

      self->stop_cancellable = g_object_ref (cancellable);
      /* May run the handler at once: the stop task is in place. */
      g_weak_ref_init (&link->producer, self);
      link->context = g_main_context_ref (self->owner_context);
      link->thread = self->owner_thread;
      self->stop_cancelled_handler =
          g_cancellable_connect (cancellable, G_CALLBACK (on_stop_cancelled), link, link_free);
    }

  sluice_reorder_buffer_lock (self->rb);
  state = self->state;
  if (state == STATE_STARTED)
    set_state_locked (self, STATE_STOPPING);
  sluice_reorder_buffer_unlock (self->rb);

  if (state == STATE_CREATED)
    {
      g_autoptr (GError) error = g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_NOT_STARTED,
                                                      _ ("The producer was never started"));

      sluice_reorder_buffer_lock (self->rb);
      set_state_locked (self, STATE_CLOSED);
      sluice_reorder_buffer_unlock (self->rb);
      abort_with_error (self, error);
      /* No consumer will serve next_async requests made before the start. */
      sluice_consumerator_finish_serving (self->consumerator);
    }
  else if (state == STATE_STARTED)
    run_deferred (self); /* sets the end once nothing waits for room */

  refresh_ready (self);
  check_stop (self);
}

/**
 * sluice_ordered_item_producer_stop_finish: (skip)
 * @self: a producer
 * @result: the result given to the stop's callback
 * @error: return location for an error
 *
 * Finishes [method@Sluice.OrderedItemProducer.stop_async].
 *
 * Call it from the stop's callback, on the context where the stop was
 * asked for.
 *
 * Returns: (transfer full) (nullable): the consumer function's result, or
 *   %NULL with @error set
 */
gpointer
sluice_ordered_item_producer_stop_finish (SluiceOrderedItemProducer *self,
                                          GAsyncResult *result,
                                          GError **error)
{
  g_return_val_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/* The annotation must stay on the identifier line. */
/* clang-format off */
/**
 * sluice_ordered_item_producer_stop_finish_value: (rename-to sluice_ordered_item_producer_stop_finish)
 * @self: a producer started with
 *   [method@Sluice.OrderedItemProducer.start_values]
 * @result: the result given to the stop's callback
 * @error: return location for an error
 *
 * Finishes [method@Sluice.OrderedItemProducer.stop_async] for a producer
 * whose consumer was started with
 * [method@Sluice.OrderedItemProducer.start_values]: the form language
 * bindings use.
 *
 * Call it from the stop's callback, on the context where the stop was
 * asked for.
 *
 * Returns: (transfer full) (nullable): the consumer function's result, or
 *   %NULL with @error set
 */
/* clang-format on */
GValue *
sluice_ordered_item_producer_stop_finish_value (SluiceOrderedItemProducer *self,
                                                GAsyncResult *result,
                                                GError **error)
{
  g_return_val_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (!self->started || self->values_consumer, NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/* Stops production for good, from any thread: frees what is buffered,
 * abandons and cancels what is in flight (the consumer gets
 * SLUICE_ERROR_STOPPED with @message), refuses deferred calls. A second
 * abort keeps the first one's error. */
static void
abort_production (SluiceOrderedItemProducer *self, const char *message)
{
  g_autoptr (GError) error = g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_STOPPED, message);

  abort_with_error (self, error);
}

static void
abort_with_error (SluiceOrderedItemProducer *self, const GError *error)
{
  sluice_reorder_buffer_lock (self->rb);
  if (self->state != STATE_CREATED)
    set_state_locked (self, STATE_CLOSED);
  sluice_reorder_buffer_unlock (self->rb);

  sluice_reorder_buffer_abort (self->rb, error);
  g_cancellable_cancel (self->abort_cancellable);
  fail_deferred (self);
  sluice_consumerator_interrupt_serving (self->consumerator);
  wake_ready_waiters (self->rb_link);
}

/* --- push producer --- */

static void
sluice_ordered_item_producer_pause_producing (SluicePushProducer *producer)
{
  SluiceOrderedItemProducer *self = SLUICE_ORDERED_ITEM_PRODUCER (producer);

  sluice_reorder_buffer_set_paused (self->rb, TRUE);
}

static void
sluice_ordered_item_producer_resume_producing (SluicePushProducer *producer)
{
  SluiceOrderedItemProducer *self = SLUICE_ORDERED_ITEM_PRODUCER (producer);

  sluice_reorder_buffer_set_paused (self->rb, FALSE);
}

static void
sluice_ordered_item_producer_stop_producing (SluicePushProducer *producer)
{
  SluiceOrderedItemProducer *self = SLUICE_ORDERED_ITEM_PRODUCER (producer);

  abort_production (self, _ ("The producer was stopped"));
  invoke_on_owner (self->link, refresh_idle);
}

static void
sluice_ordered_item_producer_push_producer_init (SluicePushProducerInterface *iface)
{
  iface->pause_producing = sluice_ordered_item_producer_pause_producing;
  iface->resume_producing = sluice_ordered_item_producer_resume_producing;
  iface->stop_producing = sluice_ordered_item_producer_stop_producing;
}

/* --- GObject --- */

static void
sluice_ordered_item_producer_constructed (GObject *object)
{
  SluiceOrderedItemProducer *self = SLUICE_ORDERED_ITEM_PRODUCER (object);

  G_OBJECT_CLASS (sluice_ordered_item_producer_parent_class)->constructed (object);

  if (self->task_queue == NULL)
    self->task_queue = g_object_ref (sluice_task_queue_get_default ());

  self->owner_context = g_main_context_ref_thread_default ();
  self->owner_thread = g_thread_self ();
  self->owner_thread_id = sluice_thread_id_self ();
  /* Made with g_object_new(), as language bindings do, a producer carries
   * values; sluice_ordered_item_producer_new() makes it carry pointers. */
  self->item_free_func = sluice_value_item_free;
  self->rb = sluice_reorder_buffer_new (self->window, self->item_free_func, NULL);
  self->link = link_new ();
  g_weak_ref_init (&self->link->producer, self);
  self->link->context = g_main_context_ref (self->owner_context);
  self->link->thread = self->owner_thread;
  {
    Link *rb_link = link_new ();
    Link *room_link = link_new ();

    g_weak_ref_init (&room_link->producer, self);
    room_link->context = g_main_context_ref (self->owner_context);
    room_link->thread = self->owner_thread;
    RoomSource *rs;

    self->room_source = g_source_new (&room_source_funcs, sizeof (RoomSource));
    rs = (RoomSource *) self->room_source;
    rs->few = self->window <= OWNER_SPIN_MAX_WINDOW;
    rs->consumer_cpu = -1;
    sluice_spin_rule_init (&rs->spin_rule);
    g_source_set_priority (self->room_source, G_PRIORITY_DEFAULT);
    g_source_set_callback (self->room_source, on_room_source, room_link, link_free);
    g_source_set_static_name (self->room_source, "[sluice] room for the producer");
    g_source_attach (self->room_source, self->owner_context);

    g_weak_ref_init (&rb_link->producer, self);
    rb_link->context = g_main_context_ref (self->owner_context);
    rb_link->thread = self->owner_thread;
    /* The buffer's callback data (rb_link) holds the source, and with it
     * the flag, for as long as the buffer lives. */
    rb_link->room_source = g_source_ref (self->room_source);
    sluice_reorder_buffer_set_room_wanted_flag (self->rb, &rs->room_wanted);
    sluice_reorder_buffer_set_consumer_cpu_slot (self->rb, &rs->consumer_cpu);
    rb_link->task_queue = g_object_ref (self->task_queue);
    self->rb_link = rb_link;
    sluice_reorder_buffer_set_callbacks (self->rb, rb_room_cb, rb_failed_cb, rb_settled_cb, rb_link,
                                         link_free);
    sluice_reorder_buffer_set_early_room (self->rb, rb_early_room_may, rb_early_room_answer);
  }
  self->consumerator = sluice_consumerator_new_for_buffer (self->rb);
  sluice_consumerator_set_values (self->consumerator, TRUE);
  sluice_consumerator_set_served_by_owner (self->consumerator);
  self->ready = TRUE;
  self->ready_notified = TRUE;

  sluice_reorder_buffer_lock (self->rb);
  update_gate_locked (self);
  sluice_reorder_buffer_unlock (self->rb);
}

static void
sluice_ordered_item_producer_dispose (GObject *object)
{
  SluiceOrderedItemProducer *self = SLUICE_ORDERED_ITEM_PRODUCER (object);

  /* Not after a finished stop: nothing is left to abort then. */
  if (self->rb != NULL && !sluice_reorder_buffer_is_settled (self->rb))
    abort_production (self, _ ("The producer was disposed"));
  else if (self->rb != NULL)
    fail_deferred (self);

  disconnect_stop_cancellable (self);
  stop_progress (self, FALSE);
  /* A consumer still running ends on its own now; nothing waits for it. */
  if (self->thread != NULL)
    g_thread_unref (g_steal_pointer (&self->thread));

  if (self->upstream != NULL && self->upstream_paused)
    sluice_push_producer_resume_producing (self->upstream);
  g_clear_object (&self->upstream);
  g_clear_object (&self->consumerator);
  if (self->room_source != NULL)
    g_source_destroy (self->room_source);

  G_OBJECT_CLASS (sluice_ordered_item_producer_parent_class)->dispose (object);
}

static void
sluice_ordered_item_producer_finalize (GObject *object)
{
  SluiceOrderedItemProducer *self = SLUICE_ORDERED_ITEM_PRODUCER (object);

  if (self->result != NULL && self->result_free_func != NULL)
    self->result_free_func (self->result);
  g_clear_error (&self->consumer_error);
  g_clear_pointer (&self->rb, sluice_reorder_buffer_unref);
  g_clear_pointer (&self->link, link_free);
  g_clear_pointer (&self->room_source, g_source_unref);
  g_clear_object (&self->task_queue);
  g_clear_object (&self->abort_cancellable);
  g_clear_pointer (&self->owner_context, g_main_context_unref);

  G_OBJECT_CLASS (sluice_ordered_item_producer_parent_class)->finalize (object);
}

static void
sluice_ordered_item_producer_get_property (GObject *object,
                                           guint prop_id,
                                           GValue *value,
                                           GParamSpec *pspec)
{
  SluiceOrderedItemProducer *self = SLUICE_ORDERED_ITEM_PRODUCER (object);

  switch (prop_id)
    {
    case PROP_TASK_QUEUE:
      g_value_set_object (value, self->task_queue);
      break;
    case PROP_WINDOW:
      g_value_set_uint (value, self->window);
      break;
    case PROP_SKIP_FAILED:
      g_value_set_boolean (value, sluice_ordered_item_producer_get_skip_failed (self));
      break;
    case PROP_WAKE_LATENCY:
      g_value_set_uint (value, sluice_ordered_item_producer_get_wake_latency (self));
      break;
    case PROP_READY:
      g_value_set_boolean (value, self->ready_notified);
      break;
    case PROP_CLOSED:
      g_value_set_boolean (value, self->closed_notified);
      break;
    case PROP_CONSUMERATOR:
      g_value_set_object (value, self->consumerator);
      break;
    case PROP_N_PRODUCED:
    case PROP_N_CONSUMED:
    case PROP_N_FAILED:
    case PROP_N_LIVE:
      {
        guint64 counts[4];

        read_counts (self, counts);
        if (prop_id == PROP_N_LIVE)
          g_value_set_uint (value, (guint) counts[3]);
        else
          g_value_set_uint64 (value, counts[prop_id - PROP_N_PRODUCED]);
      }
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_ordered_item_producer_set_property (GObject *object,
                                           guint prop_id,
                                           const GValue *value,
                                           GParamSpec *pspec)
{
  SluiceOrderedItemProducer *self = SLUICE_ORDERED_ITEM_PRODUCER (object);

  switch (prop_id)
    {
    case PROP_TASK_QUEUE:
      self->task_queue = g_value_dup_object (value);
      break;
    case PROP_WINDOW:
      self->window = g_value_get_uint (value);
      break;
    case PROP_SKIP_FAILED:
      sluice_ordered_item_producer_set_skip_failed (self, g_value_get_boolean (value));
      break;
    case PROP_WAKE_LATENCY:
      sluice_ordered_item_producer_set_wake_latency (self, g_value_get_uint (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_ordered_item_producer_class_init (SluiceOrderedItemProducerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->constructed = sluice_ordered_item_producer_constructed;
  object_class->dispose = sluice_ordered_item_producer_dispose;
  object_class->finalize = sluice_ordered_item_producer_finalize;
  object_class->get_property = sluice_ordered_item_producer_get_property;
  object_class->set_property = sluice_ordered_item_producer_set_property;

  /**
   * SluiceOrderedItemProducer:task-queue:
   *
   * The task queue that runs the blocking item functions; the default queue
   * ([func@Sluice.TaskQueue.get_default]) unless one was given.
   */
  properties[PROP_TASK_QUEUE] =
      g_param_spec_object ("task-queue", NULL, NULL, SLUICE_TYPE_TASK_QUEUE,
                           G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceOrderedItemProducer:window:
   *
   * The most live items: asked for and not yet taken by the consumer. At
   * the window the producer is not ready, and upstream producers are
   * paused; they resume when a quarter of the window (at least one item)
   * is free again. The window is also the depth of the pipeline: it must
   * cover the wake-ups an item goes through at the rate you want (see
   * the flow-control page: thousands of items for trivial ones).
   */
  properties[PROP_WINDOW] =
      g_param_spec_uint ("window", NULL, NULL, 1, G_MAXINT / 2, 256,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceOrderedItemProducer:skip-failed:
   *
   * Whether a failed item is left out (and reported by
   * [signal@Sluice.OrderedItemProducer::item-failed]) instead of ending the
   * stream with its error. It applies to the items the consumer reaches
   * after it is set. It may be set from any thread.
   */
  properties[PROP_SKIP_FAILED] =
      g_param_spec_boolean ("skip-failed", NULL, NULL, FALSE,
                            G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceOrderedItemProducer:wake-latency:
   *
   * How long, in microseconds, completed items may wait for a sleeping
   * consumer while more items are in flight. Such a consumer sleeps until
   * the item three quarters through those in flight is complete, or for this
   * long, and then takes the whole run: one wake-up per run of items rather
   * than one per item, which leaves the cores to the workers. When the
   * consumer has just made room for a producer that was waiting for it, the
   * run is three quarters of a whole window, which the producer is
   * refilling; should the producer produce less than that and neither stop
   * nor pause, what is complete waits this long. 0 wakes the consumer for
   * each item at once. With fewer than 8 items in flight (and in the run),
   * or while items come 100 us or more apart on average, the consumer
   * always wakes for the item it waits for at once: a run that short, or
   * that slow, saves little, and a lightly loaded stream keeps the latency
   * of a plain condition variable. A run is also cut to the items expected
   * within this latency at the average gap. It may be set from any thread
   * and applies from the consumer's next sleep.
   */
  properties[PROP_WAKE_LATENCY] =
      g_param_spec_uint ("wake-latency", NULL, NULL, 0, G_MAXINT, SLUICE_WAKE_LATENCY_DEFAULT_US,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceOrderedItemProducer:ready:
   *
   * Whether the producer asks for more produce calls: %FALSE from the
   * moment the window is full (or a produce call waits for room) until the
   * consumer has taken a quarter of the window, so that a source woken by
   * it has room for a run of items, not for one. While it is %TRUE a
   * produce call starts at once; while it is %FALSE a produce call starts
   * at once only if there is a free place and no earlier call waits, and
   * otherwise waits in order (see the class documentation). Once the producer is
   * [property@Sluice.OrderedItemProducer:closed] it is ready for good (a
   * produce call then completes at once with %SLUICE_ERROR_STOPPED), as a
   * closed pollable stream is writable. Notified on the owner context.
   */
  properties[PROP_READY] =
      g_param_spec_boolean ("ready", NULL, NULL, TRUE,
                            G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceOrderedItemProducer:closed:
   *
   * Whether the producer accepts no more items: after
   * [method@Sluice.OrderedItemProducer.stop_async],
   * [method@Sluice.PushProducer.stop_producing], a failed item reaching the
   * consumer, or the consumer function returning. Async sources should stop
   * then. A registered upstream producer is stopped and unregistered at that
   * moment. Notified on the owner context.
   */
  properties[PROP_CLOSED] =
      g_param_spec_boolean ("closed", NULL, NULL, FALSE,
                            G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceOrderedItemProducer:consumerator:
   *
   * The iterator the consumer function reads.
   */
  properties[PROP_CONSUMERATOR] =
      g_param_spec_object ("consumerator", NULL, NULL, SLUICE_TYPE_CONSUMERATOR,
                           G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceOrderedItemProducer:n-produced:
   *
   * The produce calls that took a place in the output: items asked for,
   * whatever became of them. With
   * [property@Sluice.OrderedItemProducer:n-consumed],
   * [property@Sluice.OrderedItemProducer:n-failed] and
   * [property@Sluice.OrderedItemProducer:n-live] it is what a progress bar
   * needs. These four are notified on the owner context at most ten times
   * a second while they change, from the start until the stop completes
   * (and once more then); reading them gives the current value, from any
   * thread.
   */
  properties[PROP_N_PRODUCED] =
      g_param_spec_uint64 ("n-produced", NULL, NULL, 0, G_MAXUINT64, 0,
                           G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceOrderedItemProducer:n-consumed:
   *
   * The items the consumer has taken. Notified as
   * [property@Sluice.OrderedItemProducer:n-produced] says.
   */
  properties[PROP_N_CONSUMED] =
      g_param_spec_uint64 ("n-consumed", NULL, NULL, 0, G_MAXUINT64, 0,
                           G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceOrderedItemProducer:n-failed:
   *
   * The failed items the consumer has reached in order: skipped ones (see
   * [property@Sluice.OrderedItemProducer:skip-failed]) and the one that
   * ended the stream. Notified as
   * [property@Sluice.OrderedItemProducer:n-produced] says.
   */
  properties[PROP_N_FAILED] =
      g_param_spec_uint64 ("n-failed", NULL, NULL, 0, G_MAXUINT64, 0,
                           G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceOrderedItemProducer:n-live:
   *
   * The live items: asked for and not yet taken by the consumer, at most
   * the window. Notified as
   * [property@Sluice.OrderedItemProducer:n-produced] says.
   */
  properties[PROP_N_LIVE] =
      g_param_spec_uint ("n-live", NULL, NULL, 0, G_MAXUINT, 0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * SluiceOrderedItemProducer::item-failed:
   * @self: the producer
   * @sequence: the place of the failed item in the output
   * @error: why it failed
   *
   * Emitted on the owner context for each failed item that was left out, in
   * [property@Sluice.OrderedItemProducer:skip-failed] mode.
   */
  signals[SIGNAL_ITEM_FAILED] =
      g_signal_new ("item-failed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                    NULL, G_TYPE_NONE, 2, G_TYPE_UINT64, G_TYPE_ERROR);
}

static void
sluice_ordered_item_producer_init (SluiceOrderedItemProducer *self)
{
  self->window = 256;
  self->abort_cancellable = g_cancellable_new ();
  g_queue_init (&self->deferred);
}

/**
 * sluice_ordered_item_producer_new: (skip)
 * @task_queue: (nullable): the task queue for blocking item functions, or
 *   %NULL for the default one
 * @window: the most live items (asked for and not yet consumed); at least 1
 * @item_free_func: (nullable): frees an item that the consumer never takes
 *
 * Creates a producer that belongs to the thread-default main context of
 * the calling thread.
 *
 * Returns: (transfer full): a new producer
 */
SluiceOrderedItemProducer *
sluice_ordered_item_producer_new (SluiceTaskQueue *task_queue,
                                  guint window,
                                  GDestroyNotify item_free_func)
{
  SluiceOrderedItemProducer *self;

  g_return_val_if_fail (task_queue == NULL || SLUICE_IS_TASK_QUEUE (task_queue), NULL);
  g_return_val_if_fail (window > 0 && window <= G_MAXINT / 2, NULL);

  /* The free function is no property: a function pointer is not a value. */
  self = g_object_new (SLUICE_TYPE_ORDERED_ITEM_PRODUCER, "task-queue", task_queue, "window",
                       window, NULL);
  self->item_free_func = item_free_func;
  sluice_reorder_buffer_set_item_free_func (self->rb, item_free_func);
  sluice_consumerator_set_values (self->consumerator, FALSE);
  return self;
}

/**
 * sluice_ordered_item_producer_new_for_values: (rename-to sluice_ordered_item_producer_new)
 * @task_queue: (nullable): the task queue for blocking item functions, or
 *   %NULL for the default one
 * @window: the most live items (asked for and not yet consumed); at least 1
 *
 * Creates a producer whose items are values (`GValue *`): its item
 * functions complete their slots with [method@Sluice.Slot.complete_value]
 * or run as [method@Sluice.OrderedItemProducer.produce_value_in_thread],
 * and its consumer takes them with [method@Sluice.Consumerator.next_value].
 * This is the form language bindings use: a [struct@GObject.Value] carries
 * any of their objects, with its reference. Otherwise as
 * [ctor@Sluice.OrderedItemProducer.new]: the producer belongs to the
 * thread-default main context of the calling thread. A producer made with
 * g_object_new() carries values too, as one made by a binding's
 * constructor does (`Sluice.OrderedItemProducer(window=8)` in Python).
 *
 * Returns: (transfer full): a new producer
 */
SluiceOrderedItemProducer *
sluice_ordered_item_producer_new_for_values (SluiceTaskQueue *task_queue, guint window)
{
  SluiceOrderedItemProducer *self;

  g_return_val_if_fail (task_queue == NULL || SLUICE_IS_TASK_QUEUE (task_queue), NULL);
  g_return_val_if_fail (window > 0 && window <= G_MAXINT / 2, NULL);

  /* Values are what g_object_new() gives. */
  self = g_object_new (SLUICE_TYPE_ORDERED_ITEM_PRODUCER, "task-queue", task_queue, "window",
                       window, NULL);
  return self;
}

/**
 * sluice_ordered_item_producer_is_ready:
 * @self: a producer
 *
 * Gets whether the producer is ready, as
 * [property@Sluice.OrderedItemProducer:ready] defines it. On the thread
 * that created the producer it returns the property, the value last
 * notified on the owner context, so that it agrees with `notify::ready` and
 * the ready source (and costs no lock: feeding loops ask per item). On any
 * other thread it reads the current state, which is right also when the
 * owner context does not run at all (a producer fed from threads; see
 * [method@Sluice.OrderedItemProducer.wait_ready]): the producer is ready
 * there as soon as live items fell to the low-water mark.
 *
 * This function is safe to call from any thread.
 *
 * Returns: whether the producer asks for more produce calls
 */
gboolean
sluice_ordered_item_producer_is_ready (SluiceOrderedItemProducer *self)
{
  gboolean ready;

  g_return_val_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self), FALSE);

  /* Feeding loops ask per item: no lock on the owner's thread. */
  if (is_owner_thread (self))
    return self->ready_notified;
  sluice_reorder_buffer_lock (self->rb);
  ready = is_ready_now_locked (self, NULL);
  sluice_reorder_buffer_unlock (self->rb);
  return ready;
}

/* Connected only while its waiter counts itself in n_waiters. */
static void
on_wait_cancelled (GCancellable *cancellable, gpointer data)
{
  wake_ready_waiters (data);
}

/**
 * sluice_ordered_item_producer_wait_ready:
 * @self: a producer
 * @cancellable: (nullable): stops the wait
 * @error: return location for an error
 *
 * Blocks until the producer is ready
 * ([method@Sluice.OrderedItemProducer.is_ready]): the blocking counterpart
 * of the ready source, for a thread that produces without a main loop.
 * When the window is full, that is once the consumer has taken a quarter of
 * it. It returns at once if the producer is ready.
 *
 * A closed producer (stopped, failed, its consumer gone) makes it return
 * %FALSE with %SLUICE_ERROR_STOPPED: produce calls would fail now. It does
 * not block on the owner context's thread while produce calls wait for room
 * there (they start only when that context runs): produce without waiting
 * or use the ready source on that thread.
 *
 * This function is safe to call from any thread.
 *
 * Returns: %TRUE when the producer is ready; %FALSE with @error set if it
 *   is closed, @cancellable was cancelled, or (%SLUICE_ERROR_FAILED) it
 *   would block the owner context's thread that waiting calls need
 */
gboolean
sluice_ordered_item_producer_wait_ready (SluiceOrderedItemProducer *self,
                                         GCancellable *cancellable,
                                         GError **error)
{
  Link *link;
  gulong handler = 0;
  gboolean ready = FALSE;

  g_return_val_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self), FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  link = self->rb_link;
  g_atomic_int_inc (&link->n_waiters);
  if (cancellable != NULL)
    handler = g_cancellable_connect (cancellable, G_CALLBACK (on_wait_cancelled), link, NULL);

  for (;;)
    {
      gboolean closed, deferred;
      guint gen;

      g_mutex_lock (&link->wait_lock);
      gen = link->wait_gen;
      g_mutex_unlock (&link->wait_lock);

      sluice_reorder_buffer_lock (self->rb);
      ready = is_ready_now_locked (self, &closed);
      deferred = !g_queue_is_empty (&self->deferred);
      /* The consumer calls back (and wakes us) at low water. */
      if (!ready)
        sluice_reorder_buffer_want_room_locked (self->rb);
      sluice_reorder_buffer_unlock (self->rb);

      if (closed)
        {
          ready = FALSE;
          g_set_error_literal (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED,
                               _ ("The producer is closed"));
          break;
        }
      if (ready || g_cancellable_set_error_if_cancelled (cancellable, error))
        break;
      if (deferred && is_owner_thread (self))
        {
          g_set_error_literal (error, SLUICE_ERROR, SLUICE_ERROR_FAILED,
                               _ ("Produce calls wait for the owner context, which this "
                                  "thread would block"));
          break;
        }

      g_mutex_lock (&link->wait_lock);
      while (link->wait_gen == gen)
        g_cond_wait (&link->wait_cond, &link->wait_lock);
      g_mutex_unlock (&link->wait_lock);
    }

  if (handler != 0)
    g_cancellable_disconnect (cancellable, handler);
  g_atomic_int_add (&link->n_waiters, -1);
  return ready;
}

/* --- wait_ready_async(): the same wait for a main loop --- */

typedef struct
{
  GSource *cancel_source; /* on the task's context, while the wait lasts */
} ReadyWait;

static void
ready_wait_free (gpointer data)
{
  ReadyWait *wait = data;

  if (wait->cancel_source != NULL)
    {
      g_source_destroy (wait->cancel_source);
      g_source_unref (wait->cancel_source);
    }
  g_free (wait);
}

/* On the task's context: the wait is over. Consumes @task. */
static void
ready_task_return (GTask *task, GError *error)
{
  ReadyWait *wait = g_task_get_task_data (task);

  if (wait->cancel_source != NULL)
    {
      g_source_destroy (wait->cancel_source);
      g_clear_pointer (&wait->cancel_source, g_source_unref);
    }
  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
  g_object_unref (task);
}

/* On the task's context: looks at the producer, and either ends the wait
 * or registers @task (transfer full) to be woken by the next change. */
static gboolean
ready_task_check (gpointer data)
{
  GTask *task = g_object_ref (data);
  SluiceOrderedItemProducer *self = g_task_get_source_object (task);
  Link *link = self->rb_link;
  GError *error = NULL;
  gboolean ready, closed;

  if (g_cancellable_set_error_if_cancelled (g_task_get_cancellable (task), &error))
    {
      ready_task_return (task, error);
      return G_SOURCE_REMOVE;
    }

  sluice_reorder_buffer_lock (self->rb);
  ready = is_ready_now_locked (self, &closed);
  if (!ready && !closed)
    {
      /* Registered under the buffer's lock: a change after this look
       * wakes it. */
      sluice_reorder_buffer_want_room_locked (self->rb);
      g_mutex_lock (&link->wait_lock);
      g_atomic_int_inc (&link->n_waiters);
      g_queue_push_tail (&link->ready_tasks, task);
      g_mutex_unlock (&link->wait_lock);
      sluice_reorder_buffer_unlock (self->rb);
      return G_SOURCE_REMOVE;
    }
  sluice_reorder_buffer_unlock (self->rb);

  if (closed)
    error = g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_STOPPED, _ ("The producer is closed"));
  ready_task_return (task, error);
  return G_SOURCE_REMOVE;
}

/* Any thread. Consumes @task. */
static void
ready_task_check_later (GTask *task)
{
  sluice_idle_attach (g_task_get_context (task), g_task_get_priority (task),
                      "[sluice] wait_ready_async", ready_task_check, task, g_object_unref);
}

/* On the task's context: the cancellable fired. A task not registered is
 * being looked at again, and that look sees the cancellation. */
static gboolean
ready_task_cancelled (GCancellable *cancellable, gpointer data)
{
  GTask *task = data;
  SluiceOrderedItemProducer *self = g_task_get_source_object (task);
  Link *link = self->rb_link;
  gboolean registered;
  GError *error = NULL;

  g_mutex_lock (&link->wait_lock);
  registered = g_queue_remove (&link->ready_tasks, task);
  g_mutex_unlock (&link->wait_lock);
  if (registered)
    {
      g_atomic_int_add (&link->n_waiters, -1);
      g_cancellable_set_error_if_cancelled (cancellable, &error);
      ready_task_return (task, error);
    }
  return G_SOURCE_REMOVE;
}

/**
 * sluice_ordered_item_producer_wait_ready_async:
 * @self: a producer
 * @cancellable: (nullable): stops the wait
 * @callback: (scope async) (closure user_data): called on the thread-default
 *   context of this call once the producer is ready or the wait failed
 * @user_data: data for @callback
 *
 * Waits for the producer to be ready, as
 * [method@Sluice.OrderedItemProducer.wait_ready] does, without blocking:
 * for code that feeds the producer from a main loop other than the owner
 * context's, or from a binding's `async` function. @callback runs from that
 * loop, never from within this call, even when the producer is ready now.
 *
 * This function is safe to call from any thread.
 */
void
sluice_ordered_item_producer_wait_ready_async (SluiceOrderedItemProducer *self,
                                               GCancellable *cancellable,
                                               GAsyncReadyCallback callback,
                                               gpointer user_data)
{
  GTask *task;
  ReadyWait *wait;

  g_return_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, sluice_ordered_item_producer_wait_ready_async);
  wait = g_new0 (ReadyWait, 1);
  g_task_set_task_data (task, wait, ready_wait_free);
  if (cancellable != NULL)
    {
      wait->cancel_source = g_cancellable_source_new (cancellable);
      g_source_set_callback (wait->cancel_source, G_SOURCE_FUNC (ready_task_cancelled), task, NULL);
      g_source_attach (wait->cancel_source, g_task_get_context (task));
    }
  ready_task_check_later (task);
}

/**
 * sluice_ordered_item_producer_wait_ready_finish:
 * @self: a producer
 * @result: the result given to the wait's callback
 * @error: return location for an error
 *
 * Finishes [method@Sluice.OrderedItemProducer.wait_ready_async].
 *
 * Returns: %TRUE when the producer is ready; %FALSE with @error set if it
 *   is closed (%SLUICE_ERROR_STOPPED) or the wait was cancelled
 */
gboolean
sluice_ordered_item_producer_wait_ready_finish (SluiceOrderedItemProducer *self,
                                                GAsyncResult *result,
                                                GError **error)
{
  g_return_val_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * sluice_ordered_item_producer_get_stats:
 * @self: a producer
 *
 * Gets a snapshot of where the stream stands, for a stats panel or a log
 * line: a dictionary (`a{sv}`) with
 *
 * - `window` (`u`), `n-produced`, `n-consumed`, `n-failed`, `n-skipped`
 *   (`t`), `n-live` (`u`): as the properties of these names
 *   (`n-skipped`: the failed items left out by
 *   [property@Sluice.OrderedItemProducer:skip-failed]);
 * - `n-waiting-calls` (`u`): produce calls waiting for room;
 * - `head` (`t`): the sequence number of the next item the consumer takes;
 * - `head-wait-us` (`x`): how long the consumer has been waiting for that
 *   item, in microseconds, or 0 when it is not waiting: a head-of-line
 *   stall (one slow item holding back the ones after it) shows here;
 * - `paused`, `ready`, `closed` (`b`);
 * - `consumer-waits`, `consumer-sleeps`, `consumer-spins` (`t`): how often
 *   the consumer found the next item incomplete, how often it slept for it,
 *   and how often a short spin got it without a sleep (with few items in
 *   flight, see the performance notes).
 * - `owner-spins`, `owner-spin-fails` (`t`): how often the owner context,
 *   waiting for room with a window of 1, got it by a short spin without
 *   a sleep, and how often such a spin ended in a sleep;
 * - `early-room-answers` (`t`): how often a completing thread took the
 *   next item for the sleeping consumer (or one spinning for it on another
 *   processor) and gave the owner its room itself (with few items in
 *   flight, see the performance notes).
 *
 * The values are read one by one while the stream runs: related counts may
 * be a few items apart.
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer full): a dictionary of the figures
 */
GVariant *
sluice_ordered_item_producer_get_stats (SluiceOrderedItemProducer *self)
{
  SluiceReorderProgress progress;
  SluiceReorderStats stats;
  GVariantDict dict;
  guint64 counts[4];
  guint n_waiting;
  gboolean ready, closed;

  g_return_val_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self), NULL);

  sluice_reorder_buffer_lock (self->rb);
  ready = is_ready_locked (self, &closed);
  n_waiting = g_queue_get_length (&self->deferred);
  sluice_reorder_buffer_unlock (self->rb);
  sluice_reorder_buffer_get_progress (self->rb, &progress);
  counts_of_progress (&progress, counts);
  sluice_reorder_buffer_get_stats (self->rb, &stats);

  g_variant_dict_init (&dict, NULL);
  g_variant_dict_insert (&dict, "window", "u", self->window);
  g_variant_dict_insert (&dict, "n-produced", "t", counts[0]);
  g_variant_dict_insert (&dict, "n-consumed", "t", counts[1]);
  g_variant_dict_insert (&dict, "n-failed", "t", counts[2]);
  g_variant_dict_insert (&dict, "n-skipped", "t", progress.skipped);
  g_variant_dict_insert (&dict, "n-live", "u", (guint) counts[3]);
  g_variant_dict_insert (&dict, "n-waiting-calls", "u", n_waiting);
  g_variant_dict_insert (&dict, "head", "t", progress.head);
  g_variant_dict_insert (&dict, "head-wait-us", "x",
                         progress.wait_since != 0
                             ? MAX (g_get_monotonic_time () - progress.wait_since, 0)
                             : (gint64) 0);
  g_variant_dict_insert (&dict, "paused", "b", progress.paused);
  g_variant_dict_insert (&dict, "ready", "b", ready);
  g_variant_dict_insert (&dict, "closed", "b", closed);
  g_variant_dict_insert (&dict, "consumer-waits", "t", stats.waits);
  g_variant_dict_insert (&dict, "consumer-sleeps", "t", stats.sleeps);
  g_variant_dict_insert (&dict, "consumer-spins", "t", stats.spins);
  g_variant_dict_insert (
      &dict, "owner-spins", "t",
      __atomic_load_n (&((RoomSource *) self->room_source)->spins, __ATOMIC_RELAXED));
  g_variant_dict_insert (
      &dict, "owner-spin-fails", "t",
      __atomic_load_n (&((RoomSource *) self->room_source)->spin_fails, __ATOMIC_RELAXED));
  g_variant_dict_insert (&dict, "early-room-answers", "t", stats.early);
  return g_variant_ref_sink (g_variant_dict_end (&dict));
}

/**
 * sluice_ordered_item_producer_is_closed:
 * @self: a producer
 *
 * Gets whether the producer is closed, as
 * [property@Sluice.OrderedItemProducer:closed] defines it. As
 * [method@Sluice.OrderedItemProducer.is_ready] does, it returns the
 * property (the value last notified) on the thread that created the
 * producer, and reads the current state on any other thread.
 *
 * This function is safe to call from any thread.
 *
 * Returns: whether the producer accepts no more items
 */
gboolean
sluice_ordered_item_producer_is_closed (SluiceOrderedItemProducer *self)
{
  gboolean closed;

  g_return_val_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self), FALSE);

  if (is_owner_thread (self))
    return self->closed_notified;
  sluice_reorder_buffer_lock (self->rb);
  is_ready_locked (self, &closed);
  sluice_reorder_buffer_unlock (self->rb);
  return closed;
}

/**
 * sluice_ordered_item_producer_create_ready_source:
 * @self: a producer
 * @cancellable: (nullable): a cancellable that also dispatches the source
 *
 * Creates a source that dispatches whenever @self is
 * [property@Sluice.OrderedItemProducer:ready], as the sources of a
 * `GPollableOutputStream`: an async reader waits on it instead of blocking
 * the main loop. Set a [callback@GLib.SourceFunc] with
 * g_source_set_callback(); it keeps dispatching while ready unless it
 * returns %G_SOURCE_REMOVE.
 *
 * Call it, and attach the source, on the owner context.
 *
 * Returns: (transfer full): a new source
 */
GSource *
sluice_ordered_item_producer_create_ready_source (SluiceOrderedItemProducer *self,
                                                  GCancellable *cancellable)
{
  GSource *source;
  ReadySource *ready_source;

  g_return_val_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self), NULL);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);

  source = g_source_new (&ready_source_funcs, sizeof (ReadySource));
  g_source_set_static_name (source, "SluiceOrderedItemProducer ready");
  ready_source = (ReadySource *) source;
  ready_source->producer = g_object_ref (self);
  self->ready_sources = g_list_prepend (self->ready_sources, source);
  g_source_set_ready_time (source, self->ready_notified ? 0 : -1);

  if (cancellable != NULL)
    {
      GSource *cancellable_source = g_cancellable_source_new (cancellable);

      g_source_set_dummy_callback (cancellable_source);
      g_source_add_child_source (source, cancellable_source);
      g_source_unref (cancellable_source);
    }

  return source;
}

/**
 * sluice_ordered_item_producer_register_producer:
 * @self: a producer
 * @upstream: the producer that feeds @self
 *
 * Registers @upstream for flow control: it is paused when @self stops
 * being ready (the window is full) and resumed when it is ready again.
 * Pauses and resumes alternate and are called on the owner context. When
 * @self is closed, @upstream is stopped
 * ([method@Sluice.PushProducer.stop_producing]) and unregistered; one
 * registered with a producer that is closed already is stopped at once
 * (and not registered). Replaces (and resumes, if paused) any producer
 * registered before.
 *
 * Call it on the owner context.
 */
void
sluice_ordered_item_producer_register_producer (SluiceOrderedItemProducer *self,
                                                SluicePushProducer *upstream)
{
  g_return_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self));
  g_return_if_fail (SLUICE_IS_PUSH_PRODUCER (upstream));

  sluice_ordered_item_producer_unregister_producer (self);
  /* The stop of upstreams happens when the producer closes: one that comes
   * later would feed a producer that refuses every item. */
  if (sluice_ordered_item_producer_is_closed (self))
    {
      sluice_push_producer_stop_producing (upstream);
      return;
    }
  self->upstream = g_object_ref (upstream);
  self->upstream_paused = FALSE;
  if (!self->ready_notified)
    {
      self->upstream_paused = TRUE;
      sluice_push_producer_pause_producing (upstream);
    }
}

/**
 * sluice_ordered_item_producer_unregister_producer:
 * @self: a producer
 *
 * Forgets the registered upstream producer, resuming it first if @self
 * paused it.
 *
 * Call it on the owner context.
 */
void
sluice_ordered_item_producer_unregister_producer (SluiceOrderedItemProducer *self)
{
  g_autoptr (SluicePushProducer) upstream = NULL;

  g_return_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self));

  upstream = g_steal_pointer (&self->upstream);
  if (upstream != NULL && self->upstream_paused)
    sluice_push_producer_resume_producing (upstream);
  self->upstream_paused = FALSE;
}

/**
 * sluice_ordered_item_producer_get_consumerator:
 * @self: a producer
 *
 * Gets the iterator the consumer function reads (the same one it is given).
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer none): the consumerator
 */
SluiceConsumerator *
sluice_ordered_item_producer_get_consumerator (SluiceOrderedItemProducer *self)
{
  g_return_val_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self), NULL);

  return self->consumerator;
}

/**
 * sluice_ordered_item_producer_get_task_queue:
 * @self: a producer
 *
 * Gets [property@Sluice.OrderedItemProducer:task-queue].
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer none): the task queue
 */
SluiceTaskQueue *
sluice_ordered_item_producer_get_task_queue (SluiceOrderedItemProducer *self)
{
  g_return_val_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self), NULL);

  return self->task_queue;
}

/**
 * sluice_ordered_item_producer_get_window:
 * @self: a producer
 *
 * Gets [property@Sluice.OrderedItemProducer:window].
 *
 * This function is safe to call from any thread.
 *
 * Returns: the window
 */
guint
sluice_ordered_item_producer_get_window (SluiceOrderedItemProducer *self)
{
  g_return_val_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self), 0);

  return self->window;
}

/**
 * sluice_ordered_item_producer_get_skip_failed:
 * @self: a producer
 *
 * Gets [property@Sluice.OrderedItemProducer:skip-failed].
 *
 * This function is safe to call from any thread.
 *
 * Returns: whether failed items are skipped
 */
gboolean
sluice_ordered_item_producer_get_skip_failed (SluiceOrderedItemProducer *self)
{
  g_return_val_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self), FALSE);

  return sluice_reorder_buffer_get_skip_failed (self->rb);
}

/**
 * sluice_ordered_item_producer_set_skip_failed:
 * @self: a producer
 * @skip_failed: whether to skip failed items
 *
 * Sets [property@Sluice.OrderedItemProducer:skip-failed].
 *
 * This function is safe to call from any thread; the notification is
 * emitted on the calling thread.
 */
void
sluice_ordered_item_producer_set_skip_failed (SluiceOrderedItemProducer *self, gboolean skip_failed)
{
  g_return_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self));

  if (sluice_reorder_buffer_get_skip_failed (self->rb) == !!skip_failed)
    return;
  sluice_reorder_buffer_set_skip_failed (self->rb, skip_failed);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_SKIP_FAILED]);
}

/**
 * sluice_ordered_item_producer_get_wake_latency:
 * @self: a producer
 *
 * Gets [property@Sluice.OrderedItemProducer:wake-latency].
 *
 * This function is safe to call from any thread.
 *
 * Returns: the wake latency, in microseconds
 */
guint
sluice_ordered_item_producer_get_wake_latency (SluiceOrderedItemProducer *self)
{
  g_return_val_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self), 0);

  return sluice_reorder_buffer_get_wake_latency (self->rb);
}

/**
 * sluice_ordered_item_producer_set_wake_latency:
 * @self: a producer
 * @microseconds: how long completed items may wait for a run, at most
 *   %G_MAXINT; 0 to wake the consumer per item
 *
 * Sets [property@Sluice.OrderedItemProducer:wake-latency]: a consumer
 * that does little per item (a writer) loses less time to wake-ups with a
 * longer one, a consumer that must react at once wants 0.
 *
 * This function is safe to call from any thread; the notification is
 * emitted on the calling thread.
 */
void
sluice_ordered_item_producer_set_wake_latency (SluiceOrderedItemProducer *self, guint microseconds)
{
  g_return_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self));
  g_return_if_fail (microseconds <= G_MAXINT);

  if (sluice_reorder_buffer_get_wake_latency (self->rb) == microseconds)
    return;
  sluice_reorder_buffer_set_wake_latency (self->rb, microseconds);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_WAKE_LATENCY]);
}

/* --- for the stream adapters (sluice-ordered-item-producer-private.h) --- */

gboolean
sluice_ordered_item_producer_carries_values (SluiceOrderedItemProducer *self)
{
  return self->item_free_func == sluice_value_item_free;
}

GMainContext *
sluice_ordered_item_producer_get_owner_context (SluiceOrderedItemProducer *self)
{
  return self->owner_context;
}

GCancellable *
sluice_ordered_item_producer_get_abort_cancellable (SluiceOrderedItemProducer *self)
{
  return self->abort_cancellable;
}

gboolean
sluice_ordered_item_producer_is_closed_now (SluiceOrderedItemProducer *self)
{
  gboolean closed;

  sluice_reorder_buffer_lock (self->rb);
  is_ready_locked (self, &closed);
  sluice_reorder_buffer_unlock (self->rb);
  return closed;
}

void
sluice_ordered_item_producer_unregister_if (SluiceOrderedItemProducer *self,
                                            SluicePushProducer *upstream)
{
  if (self->upstream == upstream)
    sluice_ordered_item_producer_unregister_producer (self);
}
