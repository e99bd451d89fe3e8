/* sluice-task-queue.c: the shared task queue over one GThreadPool
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "sluice-private.h"

#include "sluice-task-queue-private.h"
#include "sluice-worker-private.h"

/**
 * SluiceTaskQueue:
 *
 * A queue of blocking functions run by a bounded number of threads, by
 * priority.
 *
 * Work is queued with a priority (a lower value runs first, as with
 * `G_PRIORITY_*`) and an optional [class@Gio.Cancellable].
 * [method@Sluice.TaskQueue.run_async] runs a [callback@Sluice.ThreadFunc]
 * in a thread of the queue and hands its result back GIO-style, on the
 * thread-default main context of the caller, from its main loop (never
 * from inside a call the caller makes); the data of the function is
 * released there too. Language bindings use
 * [method@Sluice.TaskQueue.run_value_async] (their `run_async`), whose
 * function returns a [struct@GObject.Value]: any object of the language.
 *
 * Tasks start by priority: a thread that looks for work takes the most
 * urgent queued tasks, the oldest first. With one thread, tasks of equal
 * priority thus start in the order they were queued. With several, a
 * thread takes short tasks a few at a time (up to 8, its *hand*, as many
 * as take about 20 µs together) and starts them one after another, so the
 * order across threads is only roughly that of queuing: a task may start
 * while older tasks of equal priority wait in another thread's hand until
 * that thread's current task returns (or, if it lasts more than about
 * 100 µs, until a free thread takes them over). Exactly: when a task
 * starts, every task of equal priority queued before it has started or is
 * in another thread's hand; none is still queued. A more urgent task waits
 * only for the tasks in progress: threads put back the tasks they hold for
 * it. (A task is *started* when a thread takes it from its hand to run it;
 * a task whose cancellable was cancelled takes its turn like the others,
 * and is then dropped.)
 *
 * The number of threads can change at any time
 * ([property@Sluice.TaskQueue:max-threads]); lowering it lets the surplus
 * threads leave after their current task. The queue can be shut down, either
 * draining (what is queued still runs) or cancelling what is queued, with
 * [method@Sluice.TaskQueue.shutdown_async].
 *
 * [func@Sluice.TaskQueue.get_default] returns a queue shared by the whole
 * process, with one thread per processor, created on first use.
 *
 * [property@Sluice.TaskQueue:n-pending] and
 * [property@Sluice.TaskQueue:n-running] are notified, a few times a second
 * at most, on the thread-default main context of the thread that created
 * the queue (the global default main context for the default queue).
 *
 * Tasks must not wait for tasks queued after them. As in any pool with a
 * bounded number of threads, such waits can take every thread and last for
 * ever; and here a thread takes short tasks a few at a time, so they can
 * also block where a pool taking one task at a time would get through: with
 * two threads, each in a task that waits for the next task, which the same
 * thread took. (A free thread takes such a task over.)
 *
 * `SluiceTaskQueue` is MT-safe: every function may be called from any thread.
 */

/* How it works (for maintainers; the class doc above is for users).
 *
 * The queue keeps its own priority queue (one FIFO ring of tasks per
 * priority level, the levels sorted, tasks stored by value) under one mutex,
 * and uses a non-exclusive `GThreadPool` only for *runners*: a runner is
 * pushed to the pool when work is queued and fewer runners than
 * `max-threads` are alive; it then runs tasks until the queue is empty (it
 * yields its core once before it leaves, so that a producer it preempted
 * gets to queue more) or it is surplus after the thread count was lowered.
 * Queuing a task thus costs a lock and a ring insertion, with no allocation,
 * while every thread is busy: the thread pool's own per-item cost is paid
 * only when a thread starts. The queue's lock is tried a while before a
 * thread sleeps on it: the critical sections are short, and a `GMutex` that
 * sleeps at once made queuing from one thread while two run 2 µs tasks cost
 * ~170 futex calls per 1000 tasks (now ~10).
 *
 * A runner takes short tasks several at a time: as many of the most urgent
 * priority as its last tasks say take about 20 µs together (at most 8, and
 * leaving some for the other threads), then runs them one after another
 * without the lock. With 2 µs tasks queued from one thread and run by two,
 * the lock's cache line no longer travels between the cores for every
 * task: the ordered producer's CPU time per item fell by ~60 ns (bench/run,
 * small work: 0.98-1.00 -> 1.00-1.04 of oneTBB's `parallel_pipeline`).
 * Tasks that take longer are taken one at a time. The tasks a runner holds
 * still count as pending, a cancelling shutdown cancels those not started,
 * a runner that is surplus after the thread count was lowered puts them
 * back, and other threads take them over, oldest first: when nothing else
 * is queued (a task may wait for the next one), or before newer work once
 * the hand is 100 µs old (one normally lasts about 20 µs: its runner is
 * stuck in a task). A runner also puts back what it holds when a more
 * urgent task is queued (it reads the most urgent queued priority, kept on
 * a cache line that is written only when that changes, between its tasks):
 * such a task waits for the tasks in progress only, as without hands.
 * Whenever tasks are put back, every runner's unstarted tasks go back with
 * them, in one critical section: tasks older than some held by a runner
 * would otherwise sit in the queue while it starts newer ones (the class
 * doc promises that never happens).
 *
 * Exact FIFO start order across threads was tried (issue 12): a shared
 * ring of the next tasks that every runner claimed from in order, one
 * compare-and-swap per task, with no hands. It was exact, simpler (no
 * stalled hands, no take-over) and cost a cache line crossing the cores per
 * task: bench/run --only small on this 2-vCPU host, alternating processes,
 * sluice/serial speedup 1.46-1.51 against 1.59-1.67 with hands, sluice/tbb
 * 1.28 against 1.38 (medians; a busy machine). Hands stayed.
 *
 * A runner holds a reference on the queue, and while a task is queued or
 * running a runner is alive, so the queue is never finalized under its
 * tasks.
 */

/* One queued task, stored by value in its level's ring. */
typedef struct
{
  int priority;
  guint64 seq;               /* insertion order, for FIFO among equal priorities */
  GCancellable *cancellable; /* owned, nullable */
  SluiceTaskRunFunc run;
  gpointer data;
} SluiceTaskEntry;

/* The most tasks a runner takes at once, and how much work (by the time
 * its last tasks took) it takes at once: tasks that take longer are taken
 * one at a time. */
#define HAND_MAX 8
#define HAND_BUDGET_US 20
/* A hand taken this long ago is stuck in a task: free runners take over the
 * rest of it before newer work. */
#define HAND_STALL_US 100

/* The tasks a runner took from the queue at once, all of one priority, on
 * its stack. Others claim entries only under the queue's mutex: a runner
 * with nothing queued takes over an entry a busy runner has not started (a
 * task may wait for the next one), and a cancelling shutdown takes them all.
 * The runner itself claims without the lock. */
typedef struct _Hand Hand;
struct _Hand
{
  Hand *next;   /* under the mutex */
  guint len;    /* entries taken: written under the mutex */
  gint64 taken; /* about when (the runner's last look at the clock) */
  int claimed;  /* atomic: entries claimed so far (may run past len) */
  int running;  /* atomic: whether the runner is in a task's function */
  SluiceTaskEntry entries[HAND_MAX];
};

struct _SluiceTaskQueue
{
  GObject parent_instance;

  GMutex mutex;
  GThreadPool *pool; /* created in constructed () */

  /* All below are protected by the mutex. */
  GArray *levels; /* of Level, by ascending priority */
  guint n_queued;
  guint64 next_seq;
  guint max_threads;
  guint n_runners;      /* runners pushed to the pool and not yet returned */
  guint n_active;       /* tasks taken from the queue whose run func has not returned */
  Hand *hands;          /* of the runners alive */
  guint hand_size;      /* 0: by the time tasks take; else fixed (for tests) */
  gint64 hand_stall_us; /* HAND_STALL_US; -1: never (for tests) */
  gboolean shut_down;
  GPtrArray *shutdown_waiters; /* (nullable) of GTask, owned */
  /* Named calls and hired workers (sluice-task-queue-calls.c), created on
   * first use. Until their part of a shutdown is done, they count as one
   * active task. */
  SluiceCalls *calls;           /* (nullable) (owned) */
  gboolean calls_shutting_down; /* their shutdown was started */

  GMainContext *notify_context; /* (owned): where n-pending and n-running are notified */
  GSource *notify_source;       /* (owned): a NotifySource attached to it */

  /* Read between the tasks of a hand, without the lock: a line of its own. */
  G_GNUC_UNUSED char pad[64];
  int shrinking;    /* atomic, written under the mutex: n_runners > max_threads */
  int notify_armed; /* atomic: the notify source will look at the counts again */
  int top_priority; /* atomic, written under the mutex when it changes: the
                       most urgent queued priority, G_MAXINT when none */
};

G_DEFINE_FINAL_TYPE (SluiceTaskQueue, sluice_task_queue, G_TYPE_OBJECT)

enum
{
  PROP_0,
  PROP_MAX_THREADS,
  PROP_N_PENDING,
  PROP_N_RUNNING,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

/* The queue whose runner the current thread is running, if any: finalize
 * must not wait for the pool from one of its own threads. */
static GPrivate current_runner_queue = G_PRIVATE_INIT (NULL);

static SluiceTaskQueue *default_queue; /* (atomic) */

/* ---- the queue: one FIFO ring per priority level ---------------------- */

/* Tasks of one priority, in the order they came: a ring that doubles. */
typedef struct
{
  int priority;
  guint head;
  guint len;
  guint cap; /* a power of two, or 0 */
  SluiceTaskEntry *ring;
} Level;

/* The levels are few (callers use a handful of priorities) and sorted, so a
 * push or a pop costs O(1) in the common case of one priority, where a heap
 * paid O(log n) cache misses across cores.
 *
 * The level of @priority, created if needed, with room for one more. */
static Level *
levels_get_room (GArray *levels, int priority)
{
  Level *level = NULL;
  guint lo = 0, hi = levels->len;

  while (lo < hi)
    {
      guint mid = (lo + hi) / 2;
      Level *l = &g_array_index (levels, Level, mid);

      if (l->priority == priority)
        {
          level = l;
          break;
        }
      if (l->priority < priority)
        lo = mid + 1;
      else
        hi = mid;
    }
  if (level == NULL)
    {
      Level fresh = { priority, 0, 0, 0, NULL };

      g_array_insert_val (levels, lo, fresh);
      level = &g_array_index (levels, Level, lo);
    }

  if (level->len == level->cap)
    {
      guint cap = MAX (level->cap * 2, 64);
      SluiceTaskEntry *ring = g_new (SluiceTaskEntry, cap);

      for (guint i = 0; i < level->len; i++)
        ring[i] = level->ring[(level->head + i) & (level->cap - 1)];
      g_free (level->ring);
      level->ring = ring;
      level->cap = cap;
      level->head = 0;
    }
  return level;
}

static inline void
levels_push (GArray *levels, const SluiceTaskEntry *entry)
{
  Level *level = levels->len > 0 ? &g_array_index (levels, Level, 0) : NULL;

  /* Most pushes go to the most urgent level, which has room (issue 19:
   * one push per item of an ordered producer). */
  if (G_UNLIKELY (level == NULL || level->priority != entry->priority || level->len == level->cap))
    level = levels_get_room (levels, entry->priority);

  level->ring[(level->head + level->len) & (level->cap - 1)] = *entry;
  level->len++;
}

/* Puts a task taken from the queue back among those of its priority, in
 * queuing order: it is older than every task still queued but for others
 * put back, which are at the front. */
static void
levels_put_back (GArray *levels, const SluiceTaskEntry *entry)
{
  Level *level = levels_get_room (levels, entry->priority);
  guint mask = level->cap - 1;
  guint pos = 0;

  level->head = (level->head - 1) & mask;
  level->len++;
  /* The older ones move one place to the front. */
  while (pos + 1 < level->len && level->ring[(level->head + pos + 1) & mask].seq < entry->seq)
    {
      level->ring[(level->head + pos) & mask] = level->ring[(level->head + pos + 1) & mask];
      pos++;
    }
  level->ring[(level->head + pos) & mask] = *entry;
}

/* Takes up to @n of the most urgent tasks, all of one priority, into @out;
 * returns how many. There must be a queued task. */
static guint
levels_pop (GArray *levels, SluiceTaskEntry *out, guint n)
{
  for (guint i = 0; i < levels->len; i++)
    {
      Level *level = &g_array_index (levels, Level, i);
      guint taken;

      if (level->len == 0)
        continue;
      taken = MIN (n, level->len);
      for (guint k = 0; k < taken; k++)
        {
          out[k] = level->ring[level->head];
          level->head = (level->head + 1) & (level->cap - 1);
        }
      level->len -= taken;
      /* Many distinct priorities must not leave many empty rings behind. */
      if (level->len == 0 && levels->len > 8)
        g_array_remove_index (levels, i); /* level_clear() frees the ring */
      return taken;
    }
  g_assert_not_reached ();
}

/* The priority of the most urgent queued task. There must be one. */
static int
levels_top_priority (GArray *levels)
{
  for (guint i = 0; i < levels->len; i++)
    {
      Level *level = &g_array_index (levels, Level, i);

      if (level->len > 0)
        return level->priority;
    }
  g_assert_not_reached ();
}

static void
level_clear (gpointer data)
{
  Level *level = data;

  g_free (level->ring);
}

static GArray *
levels_new (void)
{
  GArray *levels = g_array_new (FALSE, FALSE, sizeof (Level));

  g_array_set_clear_func (levels, level_clear);
  return levels;
}

/* ---- runners and shutdown ---------------------------------------------- */

static void
push_runners (SluiceTaskQueue *self, guint n_runners)
{
  for (guint i = 0; i < n_runners; i++)
    {
      GError *error = NULL;

      /* The runner holds a reference, dropped when the runner returns. If no
       * thread could be started, the runner stays queued in the pool and
       * runs when one of its threads is free. */
      if (!g_thread_pool_push (self->pool, g_object_ref (self), &error))
        {
          g_warning ("Could not start a thread for a task queue: %s", error->message);
          g_clear_error (&error);
        }
    }
}

/* Claims an entry of @hand that has not started, if there is one. */
static gboolean
hand_claim_locked (Hand *hand, SluiceTaskEntry *out)
{
  guint i;

  if ((guint) g_atomic_int_get (&hand->claimed) >= hand->len)
    return FALSE;
  i = (guint) g_atomic_int_add (&hand->claimed, 1);
  if (i >= hand->len)
    return FALSE;
  *out = hand->entries[i];
  return TRUE;
}

/* Claims the oldest entry other runners took and have not started: of any
 * hand when nothing is queued (its runner may be in a task waiting for it);
 * else only of a hand taken HAND_STALL_US ago (its runner is stuck in a
 * task) and not less urgent than what is queued, as a queue without hands
 * would have started it by now. @now: the caller's recent time. */
static gboolean
claim_from_others_locked (SluiceTaskQueue *self, Hand *mine, gint64 now, SluiceTaskEntry *out)
{
  for (;;)
    {
      Hand *best = NULL;
      const SluiceTaskEntry *best_next = NULL;

      for (Hand *hand = self->hands; hand != NULL; hand = hand->next)
        {
          guint claimed = (guint) g_atomic_int_get (&hand->claimed);
          const SluiceTaskEntry *next;

          if (hand == mine || claimed >= hand->len)
            continue;
          next = &hand->entries[claimed];
          if (self->n_queued > 0 &&
              (self->hand_stall_us < 0 || now - hand->taken < self->hand_stall_us ||
               next->priority > g_atomic_int_get (&self->top_priority)))
            continue;
          if (best == NULL || next->priority < best_next->priority ||
              (next->priority == best_next->priority && next->seq < best_next->seq))
            {
              best = hand;
              best_next = next;
            }
        }
      if (best == NULL)
        return FALSE;
      if (hand_claim_locked (best, out))
        return TRUE;
      /* Its runner took the last one meanwhile: look again. */
    }
}

/* Tasks taken into hands that have not started. */
static guint
n_unclaimed_locked (SluiceTaskQueue *self)
{
  guint n = 0;

  for (Hand *hand = self->hands; hand != NULL; hand = hand->next)
    {
      guint claimed = (guint) g_atomic_int_get (&hand->claimed);

      if (claimed < hand->len)
        n += hand->len - claimed;
    }
  return n;
}

static guint
n_running_locked (SluiceTaskQueue *self)
{
  guint n = 0;

  for (Hand *hand = self->hands; hand != NULL; hand = hand->next)
    n += (guint) g_atomic_int_get (&hand->running);
  return n;
}

/* After n_queued changed: under the mutex, top_priority is then always the
 * most urgent queued priority. Written only when it changes: runners read it
 * between the tasks of a hand. */
static void
update_top_priority_locked (SluiceTaskQueue *self)
{
  int top = self->n_queued > 0 ? levels_top_priority (self->levels) : G_MAXINT;

  if (g_atomic_int_get (&self->top_priority) != top)
    g_atomic_int_set (&self->top_priority, top);
}

/* Whether a task more urgent than the rest of @hand is queued. */
static inline gboolean
hand_outranked (SluiceTaskQueue *self, Hand *hand)
{
  return g_atomic_int_get (&self->top_priority) < hand->entries[0].priority;
}

static void
update_shrinking_locked (SluiceTaskQueue *self)
{
  g_atomic_int_set (&self->shrinking, self->n_runners > self->max_threads);
}

static int
compare_entries_newest_first (gconstpointer a, gconstpointer b, gpointer user_data)
{
  const SluiceTaskEntry *ea = a, *eb = b;

  return ea->seq < eb->seq ? 1 : ea->seq > eb->seq ? -1 : 0;
}

/* A surplus runner puts back what it took and has not started before it
 * leaves; so does a runner when a more urgent task was queued. The other
 * runners' unstarted tasks go back with them, all in queuing order: else
 * tasks older than some a runner holds would sit in the queue while it
 * starts those (a runner that finds its hand empty takes the oldest
 * again). */
static void
hand_give_back_locked (SluiceTaskQueue *self, Hand *hand)
{
  SluiceTaskEntry stack_entries[4 * HAND_MAX];
  SluiceTaskEntry *entries = stack_entries;
  guint n_hands = 0, n = 0;

  if ((guint) g_atomic_int_get (&hand->claimed) >= hand->len)
    return;

  for (Hand *h = self->hands; h != NULL; h = h->next)
    n_hands++;
  if (n_hands * HAND_MAX > G_N_ELEMENTS (stack_entries))
    entries = g_new (SluiceTaskEntry, n_hands * HAND_MAX);

  /* Claimed from every hand first, then put back: a runner that claims
   * its next task meanwhile does so before any task is back in the
   * queue. */
  for (Hand *h = self->hands; h != NULL; h = h->next)
    while (hand_claim_locked (h, &entries[n]))
      n++;
  /* Newest first: each is then older than every task of its level. */
  g_qsort_with_data (entries, (int) n, sizeof (SluiceTaskEntry), compare_entries_newest_first,
                     NULL);
  for (guint i = 0; i < n; i++)
    levels_put_back (self->levels, &entries[i]);
  self->n_queued += n;
  self->n_active -= n;
  update_top_priority_locked (self);

  if (entries != stack_entries)
    g_free (entries);
}

/* How many runners to add for all that is queued (after the thread count
 * was raised); counts them as alive. */
static guint
claim_runners_locked (SluiceTaskQueue *self)
{
  guint pending = self->n_queued + n_unclaimed_locked (self);
  guint wanted;

  if (pending == 0 || self->n_runners >= self->max_threads)
    return 0;

  wanted = MIN (self->max_threads - self->n_runners, pending);
  self->n_runners += wanted;
  return wanted;
}

/* ---- n-pending and n-running notifications ------------------------------ */

/* The counts change with every task, in the queue's threads: they are
 * notified on the queue's notify context (the thread-default main context
 * where it was created; the global default one for the default queue), at
 * most once per NOTIFY_INTERVAL_US each. A source there, armed when a count
 * changes and disarmed once two looks in a row find them unchanged, notifies
 * what changed since the last look. Threads arm it only when @notify_armed
 * is 0: while counts keep changing that costs a load per task of a line
 * that is written only a few times a second. */
#define NOTIFY_INTERVAL_US (100 * 1000)

typedef struct
{
  GSource source;
  GWeakRef queue;   /* the source does not keep the queue alive */
  guint n_pending;  /* as last notified (owner context only) */
  guint n_running;  /* as last notified (owner context only) */
  gint64 last_look; /* atomic: when it last looked, monotonic µs */
} NotifySource;

/* Wakes the notify source: at once, or NOTIFY_INTERVAL_US after its last
 * look. Any thread. */
static void
notify_source_wake (SluiceTaskQueue *self)
{
  NotifySource *ns = (NotifySource *) self->notify_source;
  gint64 ready = __atomic_load_n (&ns->last_look, __ATOMIC_RELAXED) + NOTIFY_INTERVAL_US;

  g_source_set_ready_time (self->notify_source, MAX (ready, 0));
}

/* Whether a count change must arm the notify source: after the change,
 * with a full barrier between them (a hand's claim, an atomic add), or
 * under the mutex (the source reads the counts under it). Then either this sees
 * notify_armed cleared, or the source's next look sees the change. */
static inline gboolean
counts_need_look (SluiceTaskQueue *self)
{
  return G_UNLIKELY (!__atomic_load_n (&self->notify_armed, __ATOMIC_SEQ_CST));
}

/* Arms the notify source, unless another thread just did. Any thread. */
static void
counts_arm (SluiceTaskQueue *self)
{
  if (g_atomic_int_compare_and_exchange (&self->notify_armed, FALSE, TRUE))
    notify_source_wake (self);
}

static void
read_counts (SluiceTaskQueue *self, guint *n_pending, guint *n_running)
{
  g_mutex_lock (&self->mutex);
  *n_pending = self->n_queued + n_unclaimed_locked (self);
  *n_running = n_running_locked (self);
  g_mutex_unlock (&self->mutex);
}

static gboolean
notify_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  NotifySource *ns = (NotifySource *) source;
  SluiceTaskQueue *self = g_weak_ref_get (&ns->queue);
  guint n_pending, n_running;

  g_source_set_ready_time (source, -1);
  if (self == NULL)
    return G_SOURCE_CONTINUE; /* being finalized: it destroys this source */
  __atomic_store_n (&ns->last_look, g_source_get_time (source), __ATOMIC_RELAXED);

  read_counts (self, &n_pending, &n_running);
  if (n_pending == ns->n_pending && n_running == ns->n_running)
    {
      /* Settled: disarm, then look once more for a change made before
       * that which the thread making it left to this source. */
      __atomic_store_n (&self->notify_armed, FALSE, __ATOMIC_SEQ_CST);
      __atomic_thread_fence (__ATOMIC_SEQ_CST);
      read_counts (self, &n_pending, &n_running);
      if (n_pending == ns->n_pending && n_running == ns->n_running)
        {
          g_object_unref (self);
          return G_SOURCE_CONTINUE;
        }
      if (!g_atomic_int_compare_and_exchange (&self->notify_armed, FALSE, TRUE))
        {
          g_object_unref (self); /* the thread that armed it woke it */
          return G_SOURCE_CONTINUE;
        }
    }

  /* Changed: notify, and look again after the interval. */
  g_object_freeze_notify (G_OBJECT (self));
  if (n_pending != ns->n_pending)
    {
      ns->n_pending = n_pending;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_N_PENDING]);
    }
  if (n_running != ns->n_running)
    {
      ns->n_running = n_running;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_N_RUNNING]);
    }
  notify_source_wake (self);
  g_object_thaw_notify (G_OBJECT (self));
  g_object_unref (self);
  return G_SOURCE_CONTINUE;
}

static void
notify_source_finalize (GSource *source)
{
  NotifySource *ns = (NotifySource *) source;

  g_weak_ref_clear (&ns->queue);
}

static GSourceFuncs notify_source_funcs = {
  NULL, NULL, notify_source_dispatch, notify_source_finalize, NULL, NULL,
};

/* Notifies n-pending and n-running on @context from now on. Before the
 * queue has any task. */
static void
notify_source_attach (SluiceTaskQueue *self, GMainContext *context)
{
  NotifySource *ns;

  if (self->notify_source != NULL)
    {
      g_source_destroy (self->notify_source);
      g_clear_pointer (&self->notify_source, g_source_unref);
    }
  g_clear_pointer (&self->notify_context, g_main_context_unref);

  self->notify_context = g_main_context_ref (context);
  self->notify_source = g_source_new (&notify_source_funcs, sizeof (NotifySource));
  ns = (NotifySource *) self->notify_source;
  g_weak_ref_init (&ns->queue, self);
  ns->last_look = -NOTIFY_INTERVAL_US;
  g_source_set_static_name (self->notify_source, "SluiceTaskQueue notify");
  g_source_set_priority (self->notify_source, G_PRIORITY_DEFAULT_IDLE);
  g_source_attach (self->notify_source, context);
}

/* Once shut down and idle, takes the shutdown operations to complete (after
 * unlocking, with complete_shutdown_waiters ()). */
static GPtrArray *
take_shutdown_waiters_if_idle_locked (SluiceTaskQueue *self)
{
  if (!self->shut_down || self->n_queued > 0 || self->n_active > 0)
    return NULL;
  return g_steal_pointer (&self->shutdown_waiters);
}

static void
complete_shutdown_waiters (GPtrArray *waiters)
{
  if (waiters == NULL)
    return;

  for (guint i = 0; i < waiters->len; i++)
    {
      GTask *task = g_ptr_array_index (waiters, i);
      GSource *cancelled_source = g_task_get_task_data (task);

      if (cancelled_source != NULL)
        g_source_destroy (cancelled_source);
      g_task_return_boolean (task, TRUE);
      g_object_unref (task);
    }
  g_ptr_array_unref (waiters);
}

/* Only the hand's runner writes it, the getters read it under the mutex. A
 * release store (a plain mov on x86) where g_atomic_int_set() would be one
 * more full barrier per task: the flag is set before the claim's atomic add,
 * so a task is never counted neither pending nor running, but it may be
 * counted both for a moment, or running once more when the claim fails
 * (the counts may be out of date anyway). */
static inline void
hand_set_running (Hand *hand, gboolean running)
{
  __atomic_store_n (&hand->running, running, __ATOMIC_RELEASE);
}

/* Runs a claimed task, outside the lock; @hand counts it as running. */
static void
run_entry (Hand *hand, SluiceTaskEntry *entry)
{
  SluiceTaskReason reason = SLUICE_TASK_RUN;

  if (entry->cancellable != NULL && g_cancellable_is_cancelled (entry->cancellable))
    {
      reason = SLUICE_TASK_CANCELLED;
      hand_set_running (hand, FALSE);
    }
  g_clear_object (&entry->cancellable);
  entry->run (entry->data, reason);
  hand_set_running (hand, FALSE);
}

/* The GThreadPool function: runs tasks while there are some and this runner
 * is not surplus. */
static void
sluice_task_queue_runner (gpointer data, gpointer user_data)
{
  SluiceTaskQueue *self = data; /* the runner's reference */
  GPtrArray *waiters = NULL;
  Hand hand = { NULL, 0, 0, 0, FALSE, { { 0 } } };
  guint n_ran = 0; /* tasks run since the lock was last held */
  guint n_take = 1;
  gboolean yielded = FALSE;
  gint64 last = g_get_monotonic_time ();
  gboolean look;

  g_private_set (&current_runner_queue, self);

  g_mutex_lock (&self->mutex);
  hand.next = self->hands;
  self->hands = &hand;
  for (;;)
    {
      SluiceTaskEntry entry;
      gint64 now;

      self->n_active -= n_ran;
      n_ran = 0;
      /* The last task it ran no longer counts as running. */
      if (counts_need_look (self))
        counts_arm (self);
      if (waiters == NULL)
        waiters = take_shutdown_waiters_if_idle_locked (self);
      if (self->n_runners > self->max_threads)
        {
          hand_give_back_locked (self, &hand);
          break;
        }
      if ((guint) g_atomic_int_get (&hand.claimed) < hand.len && hand_outranked (self, &hand))
        hand_give_back_locked (self, &hand);

      /* A hand left early (the thread count was lowered, but others left)
       * is finished first. */
      if ((guint) g_atomic_int_get (&hand.claimed) >= hand.len)
        {
          if (claim_from_others_locked (self, &hand, last, &entry))
            {
              yielded = FALSE;
              hand_set_running (&hand, TRUE);
              look = counts_need_look (self);
              g_mutex_unlock (&self->mutex);
              if (look)
                counts_arm (self);
              run_entry (&hand, &entry);
              n_ran = 1;
              last = g_get_monotonic_time ();
              sluice_mutex_lock_spinning (&self->mutex);
              continue;
            }
          /* Nothing queued: give the core away once before leaving. The
           * thread that queues work (the owner) often shares this core, and
           * it was preempted by this runner when it woke it: it then gets
           * to queue a run of tasks, where leaving at once made the two
           * ping-pong, one task and two context switches at a time
           * (bench/run, slow consumer: a runner started per 17 items, 300
           * context switches per 1000 items; with the yield 31, and the
           * consumer, no longer preempted as often, 0.96 -> 1.07 of
           * oneTBB). Alone on its core, the yield returns at once. */
          if (self->n_queued == 0)
            {
              if (yielded)
                break;
              yielded = TRUE;
              g_mutex_unlock (&self->mutex);
              g_thread_yield ();
              sluice_mutex_lock_spinning (&self->mutex);
              continue;
            }
          yielded = FALSE;

          /* As many as its last tasks say fit the budget, leaving some for
           * the other runners: one lock round trip then serves several
           * short tasks. */
          hand.len = levels_pop (self->levels, hand.entries,
                                 MIN (self->hand_size != 0 ? self->hand_size : n_take,
                                      MAX (1, self->n_queued / self->max_threads)));
          hand.taken = last;
          self->n_queued -= hand.len;
          self->n_active += hand.len;
          update_top_priority_locked (self);
          g_atomic_int_set (&hand.claimed, 0);
        }
      g_mutex_unlock (&self->mutex);

      for (gboolean first = TRUE;; first = FALSE)
        {
          guint i;

          /* Counted as running before it is no longer pending. */
          hand_set_running (&hand, TRUE);
          /* A surplus runner leaves after the task it is in; more urgent
           * work goes first. */
          if (!first &&
              G_UNLIKELY (g_atomic_int_get (&self->shrinking) || hand_outranked (self, &hand)))
            break;
          i = (guint) g_atomic_int_add (&hand.claimed, 1);
          if (i >= hand.len)
            break;
          if (counts_need_look (self))
            counts_arm (self);
          run_entry (&hand, &hand.entries[i]);
          n_ran++;
        }
      hand_set_running (&hand, FALSE);

      now = g_get_monotonic_time ();
      n_take = (guint) CLAMP (n_ran * HAND_BUDGET_US / MAX (now - last, 1), 1, HAND_MAX);
      last = now;

      sluice_mutex_lock_spinning (&self->mutex);
    }
  self->n_runners--;
  update_shrinking_locked (self);
  for (Hand **link = &self->hands; *link != NULL; link = &(*link)->next)
    if (*link == &hand)
      {
        *link = hand.next;
        break;
      }
  g_mutex_unlock (&self->mutex);

  complete_shutdown_waiters (waiters);

  /* This may be the last reference: finalize then knows (through
   * current_runner_queue) not to wait for this thread. */
  g_object_unref (self);
  g_private_set (&current_runner_queue, NULL);
}

/* Queues a task, or returns FALSE without calling @run when the queue has
 * been shut down. Inline: the ordered producer queues one task per item
 * through sluice_task_queue_push () (issue 19). */
G_ALWAYS_INLINE static inline gboolean
sluice_task_queue_push_internal (SluiceTaskQueue *self,
                                 int priority,
                                 GCancellable *cancellable,
                                 SluiceTaskRunFunc run,
                                 gpointer data)
{
  SluiceTaskEntry entry;
  gboolean new_runner = FALSE;
  gboolean look;

  entry.priority = priority;
  entry.cancellable = cancellable != NULL ? g_object_ref (cancellable) : NULL;
  entry.run = run;
  entry.data = data;

  sluice_mutex_lock_spinning (&self->mutex);
  if (self->shut_down)
    {
      g_mutex_unlock (&self->mutex);
      g_clear_object (&entry.cancellable);
      return FALSE;
    }
  entry.seq = self->next_seq++;
  levels_push (self->levels, &entry);
  self->n_queued++;
  /* One task more can only make the most urgent priority more urgent. */
  if (priority < g_atomic_int_get (&self->top_priority))
    g_atomic_int_set (&self->top_priority, priority);
  /* One task more needs at most one runner more. */
  if (self->n_runners < self->max_threads)
    {
      self->n_runners++;
      new_runner = TRUE;
    }
  look = counts_need_look (self);
  g_mutex_unlock (&self->mutex);

  if (look)
    counts_arm (self);
  if (new_runner)
    push_runners (self, 1);
  return TRUE;
}

/* Internal entry point: see sluice-task-queue-private.h. */
void
sluice_task_queue_push (SluiceTaskQueue *self,
                        int priority,
                        GCancellable *cancellable,
                        SluiceTaskRunFunc run,
                        gpointer data)
{
  g_return_if_fail (SLUICE_IS_TASK_QUEUE (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));
  g_return_if_fail (run != NULL);

  if (!sluice_task_queue_push_internal (self, priority, cancellable, run, data))
    run (data, SLUICE_TASK_SHUT_DOWN);
}

/* Internal entry point: see sluice-task-queue-private.h. */
void
sluice_task_queue_set_hand_size (SluiceTaskQueue *self, guint hand_size)
{
  g_return_if_fail (SLUICE_IS_TASK_QUEUE (self));
  g_return_if_fail (hand_size <= HAND_MAX);

  g_mutex_lock (&self->mutex);
  self->hand_size = hand_size;
  g_mutex_unlock (&self->mutex);
}

/* Internal entry point: see sluice-task-queue-private.h. */
void
sluice_task_queue_set_hand_stall (SluiceTaskQueue *self, gint64 stall_us)
{
  g_return_if_fail (SLUICE_IS_TASK_QUEUE (self));

  g_mutex_lock (&self->mutex);
  self->hand_stall_us = stall_us < 0 ? -1 : stall_us;
  g_mutex_unlock (&self->mutex);
}

/* Internal entry point: see sluice-task-queue-private.h. */
guint
sluice_task_queue_get_n_runners (SluiceTaskQueue *self)
{
  guint n_runners;

  g_return_val_if_fail (SLUICE_IS_TASK_QUEUE (self), 0);

  g_mutex_lock (&self->mutex);
  n_runners = self->n_runners;
  g_mutex_unlock (&self->mutex);
  return n_runners;
}

/* ---- GObject ------------------------------------------------------------ */

static void
sluice_task_queue_constructed (GObject *object)
{
  SluiceTaskQueue *self = SLUICE_TASK_QUEUE (object);

  G_OBJECT_CLASS (sluice_task_queue_parent_class)->constructed (object);

  /* Shared (non-exclusive) threads: a non-exclusive pool cannot fail. */
  self->pool = g_thread_pool_new (sluice_task_queue_runner, NULL,
                                  (int) MIN (self->max_threads, (guint) G_MAXINT), FALSE, NULL);

  {
    GMainContext *context = g_main_context_ref_thread_default ();

    notify_source_attach (self, context);
    g_main_context_unref (context);
  }
}

static void
sluice_task_queue_finalize (GObject *object)
{
  SluiceTaskQueue *self = SLUICE_TASK_QUEUE (object);

  /* Every queued task has a live runner, and runners hold references. */
  g_assert (self->n_queued == 0);
  g_assert (self->shutdown_waiters == NULL || self->shutdown_waiters->len == 0);

  /* No runner is left but the one, perhaps, that dropped the last reference
   * from this very thread: waiting for it would never end. */
  g_thread_pool_free (self->pool, FALSE, g_private_get (&current_runner_queue) != self);

  g_clear_pointer (&self->calls, sluice_calls_free);
  g_source_destroy (self->notify_source);
  g_clear_pointer (&self->notify_source, g_source_unref);
  g_clear_pointer (&self->notify_context, g_main_context_unref);
  g_array_unref (self->levels);
  g_clear_pointer (&self->shutdown_waiters, g_ptr_array_unref);
  g_mutex_clear (&self->mutex);

  G_OBJECT_CLASS (sluice_task_queue_parent_class)->finalize (object);
}

static void
sluice_task_queue_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  SluiceTaskQueue *self = SLUICE_TASK_QUEUE (object);

  switch (prop_id)
    {
    case PROP_MAX_THREADS:
      g_value_set_uint (value, sluice_task_queue_get_max_threads (self));
      break;
    case PROP_N_PENDING:
      g_value_set_uint (value, sluice_task_queue_get_n_pending (self));
      break;
    case PROP_N_RUNNING:
      g_value_set_uint (value, sluice_task_queue_get_n_running (self));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_task_queue_set_property (GObject *object,
                                guint prop_id,
                                const GValue *value,
                                GParamSpec *pspec)
{
  SluiceTaskQueue *self = SLUICE_TASK_QUEUE (object);

  switch (prop_id)
    {
    case PROP_MAX_THREADS:
      sluice_task_queue_set_max_threads (self, g_value_get_uint (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_task_queue_class_init (SluiceTaskQueueClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->constructed = sluice_task_queue_constructed;
  object_class->finalize = sluice_task_queue_finalize;
  object_class->get_property = sluice_task_queue_get_property;
  object_class->set_property = sluice_task_queue_set_property;

  /**
   * SluiceTaskQueue:max-threads:
   *
   * The largest number of tasks run at the same time, each in its own
   * thread. Setting 0 means one per processor (as returned by
   * g_get_num_processors()); reading gives the resulting number.
   *
   * It can be changed at any time, also while tasks run: raising it starts
   * queued tasks at once; lowering it lets surplus threads leave after
   * their current task. Change notifications are emitted in the thread that
   * set it.
   */
  properties[PROP_MAX_THREADS] = g_param_spec_uint (
      "max-threads", NULL, NULL, 0, G_MAXINT, 0,
      G_PARAM_READWRITE | G_PARAM_CONSTRUCT | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceTaskQueue:n-pending:
   *
   * The number of tasks queued and not yet started (see
   * [method@Sluice.TaskQueue.get_n_pending]).
   *
   * It is notified on the queue's notify context: the thread-default main
   * context of the thread that created the queue, or for the queue of
   * [func@Sluice.TaskQueue.get_default], the global default main context
   * (g_main_context_default()). Notifications are coalesced, at most about
   * ten a second: each says that the value differs from the one the last
   * notification saw (one that changes and changes back in between is not
   * notified), and once the value settles, the last notification saw it.
   * Nothing is notified while that context is not iterated.
   */
  properties[PROP_N_PENDING] =
      g_param_spec_uint ("n-pending", NULL, NULL, 0, G_MAXUINT, 0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceTaskQueue:n-running:
   *
   * The number of tasks running right now (see
   * [method@Sluice.TaskQueue.get_n_running]).
   *
   * It is notified as [property@Sluice.TaskQueue:n-pending] is: on the
   * queue's notify context, at most about ten times a second, the last
   * notification seeing the settled value.
   */
  properties[PROP_N_RUNNING] =
      g_param_spec_uint ("n-running", NULL, NULL, 0, G_MAXUINT, 0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
sluice_task_queue_init (SluiceTaskQueue *self)
{
  g_mutex_init (&self->mutex);
  self->levels = levels_new ();
  self->hand_stall_us = HAND_STALL_US;
  self->top_priority = G_MAXINT;
  self->max_threads = 1; /* until the construct property is set */
}

/* ---- public API ---------------------------------------------------------- */

/**
 * sluice_task_queue_new:
 * @max_threads: the largest number of tasks run at the same time, or 0 for
 *   one per processor
 *
 * Creates a task queue. Its threads are shared with other non-exclusive
 * thread pools of the process and started only when there is work.
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer full): a new task queue
 */
SluiceTaskQueue *
sluice_task_queue_new (guint max_threads)
{
  return g_object_new (SLUICE_TYPE_TASK_QUEUE, "max-threads", max_threads, NULL);
}

static gpointer
create_default_queue (gpointer data)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (0);

  /* Shared by the whole process: its counts are notified where the
   * application's main loop normally runs. */
  notify_source_attach (queue, g_main_context_default ());

  g_atomic_pointer_set (&default_queue, queue);
  return queue;
}

/**
 * sluice_task_queue_get_default:
 *
 * Gets the task queue shared by the whole process, with one thread per
 * processor. It is created on first use and lives until the process exits;
 * it cannot be shut down.
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer none): the default task queue
 */
SluiceTaskQueue *
sluice_task_queue_get_default (void)
{
  static GOnce once = G_ONCE_INIT;

  return g_once (&once, create_default_queue, NULL);
}

/**
 * sluice_task_queue_get_max_threads:
 * @self: a task queue
 *
 * Gets the largest number of tasks @self runs at the same time.
 *
 * This function is safe to call from any thread.
 *
 * Returns: the maximum number of threads
 */
guint
sluice_task_queue_get_max_threads (SluiceTaskQueue *self)
{
  guint max_threads;

  g_return_val_if_fail (SLUICE_IS_TASK_QUEUE (self), 0);

  g_mutex_lock (&self->mutex);
  max_threads = self->max_threads;
  g_mutex_unlock (&self->mutex);
  return max_threads;
}

/**
 * sluice_task_queue_set_max_threads:
 * @self: a task queue
 * @max_threads: the largest number of tasks run at the same time, or 0 for
 *   one per processor
 *
 * Changes the number of threads of @self, also while tasks run. Raising it
 * starts queued tasks at once; lowering it lets the surplus threads finish
 * their current task and then leave.
 *
 * This function is safe to call from any thread;
 * [property@Sluice.TaskQueue:max-threads] is notified in the calling thread.
 */
void
sluice_task_queue_set_max_threads (SluiceTaskQueue *self, guint max_threads)
{
  guint new_runners = 0;
  gboolean changed;

  g_return_if_fail (SLUICE_IS_TASK_QUEUE (self));

  if (max_threads == 0)
    max_threads = g_get_num_processors ();
  max_threads = MIN (max_threads, (guint) G_MAXINT);

  g_mutex_lock (&self->mutex);
  changed = self->max_threads != max_threads;
  self->max_threads = max_threads;
  if (self->pool != NULL)
    {
      /* Under the lock, so that concurrent changes reach the pool in the
       * order they reach the queue. */
      g_thread_pool_set_max_threads (self->pool, (int) max_threads, NULL);
      new_runners = claim_runners_locked (self);
      update_shrinking_locked (self);
    }
  g_mutex_unlock (&self->mutex);

  push_runners (self, new_runners);

  if (changed)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_MAX_THREADS]);
}

/**
 * sluice_task_queue_get_n_pending:
 * @self: a task queue
 *
 * Gets the number of tasks queued in @self and not yet started. A task
 * whose cancellable was cancelled counts until a thread reaches it and
 * drops it. The value may be out of date by the time it is returned; see
 * [property@Sluice.TaskQueue:n-pending] for its notifications.
 *
 * This function is safe to call from any thread.
 *
 * Returns: the number of pending tasks
 */
guint
sluice_task_queue_get_n_pending (SluiceTaskQueue *self)
{
  guint n_pending;

  g_return_val_if_fail (SLUICE_IS_TASK_QUEUE (self), 0);

  g_mutex_lock (&self->mutex);
  n_pending = self->n_queued + n_unclaimed_locked (self);
  g_mutex_unlock (&self->mutex);
  return n_pending;
}

/**
 * sluice_task_queue_get_n_running:
 * @self: a task queue
 *
 * Gets the number of tasks of @self running right now. The value may be out
 * of date by the time it is returned; see
 * [property@Sluice.TaskQueue:n-running] for its notifications.
 *
 * This function is safe to call from any thread.
 *
 * Returns: the number of running tasks
 */
guint
sluice_task_queue_get_n_running (SluiceTaskQueue *self)
{
  guint n_running;

  g_return_val_if_fail (SLUICE_IS_TASK_QUEUE (self), 0);

  g_mutex_lock (&self->mutex);
  n_running = n_running_locked (self);
  g_mutex_unlock (&self->mutex);
  return n_running;
}

/**
 * sluice_task_queue_is_shut_down:
 * @self: a task queue
 *
 * Whether [method@Sluice.TaskQueue.shutdown_async] was called on @self
 * (whether or not the shutdown has completed). A queue that is shut down
 * refuses new tasks.
 *
 * This function is safe to call from any thread.
 *
 * Returns: %TRUE if @self is shut down
 */
gboolean
sluice_task_queue_is_shut_down (SluiceTaskQueue *self)
{
  gboolean shut_down;

  g_return_val_if_fail (SLUICE_IS_TASK_QUEUE (self), FALSE);

  g_mutex_lock (&self->mutex);
  shut_down = self->shut_down;
  g_mutex_unlock (&self->mutex);
  return shut_down;
}

/* ---- run_async ---------------------------------------------------------- */

enum
{
  RUN_TASK_PENDING,
  RUN_TASK_CLAIMED, /* run, cancelled or refused: completed exactly once */
};

/* The task data of a run_async or run_value_async GTask. */
typedef struct
{
  SluiceThreadFunc func;            /* run_async's, or NULL */
  SluiceValueThreadFunc value_func; /* run_value_async's, or NULL */
  gpointer func_data;
  GDestroyNotify func_data_destroy;
  GDestroyNotify result_destroy;
  GAsyncReadyCallback callback; /* the caller's */
  gpointer user_data;
  GCancellable *cancellable; /* (owned) until disconnected */
  gulong cancelled_id;
  int state; /* (atomic) RUN_TASK_PENDING, then RUN_TASK_CLAIMED */
} SluiceRunTaskData;

static void run_task_disconnect (SluiceRunTaskData *rd);

/* Releases func_data: the function has run or never will. Called on the
 * caller's context, when the result is delivered (run_task_done_cb ()),
 * or, if the task is freed without that (its context was destroyed first),
 * wherever that happens. */
static void
run_task_data_release (SluiceRunTaskData *rd)
{
  GDestroyNotify func_data_destroy = g_steal_pointer (&rd->func_data_destroy);
  gpointer func_data = g_steal_pointer (&rd->func_data);

  if (func_data_destroy != NULL)
    func_data_destroy (func_data);
}

static void
run_task_data_free (gpointer data)
{
  SluiceRunTaskData *rd = data;

  /* Freed without its callback (its context was destroyed first). */
  run_task_disconnect (rd);
  run_task_data_release (rd);
  g_free (rd);
}

/* The GTask's own callback, on the caller's context, dispatched from its
 * main loop (GTask's rule): releases func_data there, where bindings expect
 * their closures to be freed (GJS cannot free one in another thread), then
 * calls the caller's callback. */
static void
run_task_done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  SluiceRunTaskData *rd = g_task_get_task_data (G_TASK (result));

  run_task_disconnect (rd);
  run_task_data_release (rd);
  if (rd->callback != NULL)
    rd->callback (source, result, rd->user_data);
}

static gboolean
run_task_claim (SluiceRunTaskData *rd)
{
  return g_atomic_int_compare_and_exchange (&rd->state, RUN_TASK_PENDING, RUN_TASK_CLAIMED);
}

/* GCancellable::cancelled, in the thread that cancels: completes the task at
 * once (GTask then calls back from the caller's main loop, never from
 * inside the cancel); the queued entry is dropped when a thread reaches
 * it.
 *
 * The task is alive on entry while unclaimed: the queued entry holds it,
 * and whoever else drops that reference disconnects first (run_task_run ()
 * in a thread of the queue, run_task_queue () when the push fails), which
 * waits for this handler (g_cancellable_disconnect () waits for a running
 * emission). A cancelling shutdown (SLUICE_TASK_SHUT_DOWN) does not
 * disconnect: its claim either wins, and then the return holds the task
 * until run_task_done_cb () disconnects, or fails because this handler
 * won, and then it drops the last reference at once, perhaps before
 * g_task_return_*() took one. So the handler takes its own reference
 * before claiming. A task already claimed elsewhere is not touched: it may
 * be in finalization, run_task_data_free () waiting here, when its context
 * was destroyed with its return pending (the window between the check
 * and the reference is left open only to that case). */
static void
run_task_cancelled_cb (GCancellable *cancellable, gpointer data)
{
  GTask *task = data;
  SluiceRunTaskData *rd = g_task_get_task_data (task);

  if (g_atomic_int_get (&rd->state) != RUN_TASK_PENDING)
    return;
  g_object_ref (task);
  if (run_task_claim (rd))
    g_task_return_error_if_cancelled (task);
  g_object_unref (task);
}

/* After this, run_task_cancelled_cb () is not running and will not run,
 * or another thread is disconnecting it. Any thread, and two at once: a
 * thread of the queue reaching the entry of a task that its handler
 * already returned, and the return on the task's context
 * (run_task_done_cb ()); the one that takes the cancellable disconnects.
 * The other goes on at once, which is safe: the task is claimed, so the
 * handler, if it still runs, touches nothing. Never from inside a
 * "cancelled" handler of the task's cancellable: g_cancellable_disconnect
 * () would wait there for itself. */
static void
run_task_disconnect (SluiceRunTaskData *rd)
{
  GCancellable *cancellable = g_atomic_pointer_exchange (&rd->cancellable, NULL);

  if (cancellable == NULL)
    return;
  if (rd->cancelled_id != 0)
    g_cancellable_disconnect (cancellable, rd->cancelled_id);
  rd->cancelled_id = 0;
  g_object_unref (cancellable);
}

/* A cancelling shutdown runs in the thread that calls it, perhaps in a
 * dispatch of the task's own context, where g_task_return_*() would call
 * back at once, inside the caller's shutdown call: the task returns from a
 * source of its context instead. */
static gboolean
run_task_return_shut_down_cb (gpointer data)
{
  GTask *task = data;

  g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_CANCELLED, "%s",
                           _ ("The task was cancelled by the shutdown of its task queue"));
  return G_SOURCE_REMOVE;
}

static void
value_free (gpointer data)
{
  g_boxed_free (G_TYPE_VALUE, data);
}

/* Runs the function of @rd, in a thread of the queue: returns its result,
 * or sets @error. */
static gpointer
run_task_call (SluiceRunTaskData *rd, GCancellable *cancellable, GError **error)
{
  GError *local_error = NULL;
  gpointer result;
  GValue *value;

  if (rd->func != NULL)
    {
      result = rd->func (cancellable, rd->func_data, &local_error);
      if (local_error == NULL)
        return result;
      if (result != NULL && rd->result_destroy != NULL)
        rd->result_destroy (result);
      g_propagate_error (error, local_error);
      return NULL;
    }

  value = g_new0 (GValue, 1);
  rd->value_func (cancellable, value, rd->func_data, &local_error);
  if (local_error != NULL)
    {
      /* A binding may have set the value before the error was raised. */
      if (G_IS_VALUE (value))
        g_value_unset (value);
      g_free (value);
      g_propagate_error (error, local_error);
      return NULL;
    }
  /* Left unset: a NULL pointer, as documented. */
  if (!G_IS_VALUE (value))
    g_value_init (value, G_TYPE_POINTER);
  return value;
}

/* The SluiceTaskRunFunc of run_async; @data is a GTask reference. */
static void
run_task_run (gpointer data, SluiceTaskReason reason)
{
  GTask *task = data;
  SluiceRunTaskData *rd = g_task_get_task_data (task);

  /* A shutdown that cancels pending tasks runs in the thread that calls
   * it, perhaps from a "cancelled" handler of this very cancellable: the
   * handler then goes when the task returns, on its context
   * (run_task_done_cb ()); the task lives until then (its return holds
   * it). A thread of the queue disconnects at once. */
  if (reason != SLUICE_TASK_SHUT_DOWN)
    run_task_disconnect (rd);

  if (run_task_claim (rd))
    {
      switch (reason)
        {
        case SLUICE_TASK_RUN:
          {
            GError *error = NULL;
            gpointer result = run_task_call (rd, g_task_get_cancellable (task), &error);

            if (error != NULL)
              g_task_return_error (task, error);
            else
              g_task_return_pointer (task, result, rd->result_destroy);
          }
          break;

        case SLUICE_TASK_CANCELLED:
          g_task_return_error_if_cancelled (task);
          break;

        case SLUICE_TASK_SHUT_DOWN:
        default:
          {
            GSource *source = g_idle_source_new ();

            g_task_attach_source (task, source, run_task_return_shut_down_cb);
            g_source_unref (source);
          }
          break;
        }
    }

  g_object_unref (task);
}

/* Queues a run_async or run_value_async task. */
static void
run_task_queue (SluiceTaskQueue *self,
                gpointer source_tag,
                SluiceThreadFunc func,
                SluiceValueThreadFunc value_func,
                gpointer func_data,
                GDestroyNotify func_data_destroy,
                GDestroyNotify result_destroy,
                int priority,
                GCancellable *cancellable,
                GAsyncReadyCallback callback,
                gpointer user_data)
{
  GTask *task;
  SluiceRunTaskData *rd;

  task = g_task_new (self, cancellable, run_task_done_cb, NULL);
  g_task_set_source_tag (task, source_tag);
  g_task_set_priority (task, priority);

  rd = g_new0 (SluiceRunTaskData, 1);
  rd->func = func;
  rd->value_func = value_func;
  rd->func_data = func_data;
  rd->func_data_destroy = func_data_destroy;
  rd->result_destroy = result_destroy;
  rd->callback = callback;
  rd->user_data = user_data;
  rd->state = RUN_TASK_PENDING;
  g_task_set_task_data (task, rd, run_task_data_free);

  if (cancellable != NULL)
    {
      rd->cancellable = g_object_ref (cancellable);
      rd->cancelled_id =
          g_cancellable_connect (cancellable, G_CALLBACK (run_task_cancelled_cb), task, NULL);
      if (g_atomic_int_get (&rd->state) != RUN_TASK_PENDING)
        {
          /* Already cancelled: completed, no need to queue it (and
           * nothing was connected). */
          run_task_disconnect (rd);
          g_object_unref (task);
          return;
        }
    }

  /* The queued entry takes over the reference. */
  if (sluice_task_queue_push_internal (self, priority, cancellable, run_task_run, task))
    return;

  run_task_disconnect (rd);
  if (run_task_claim (rd))
    g_task_return_new_error (task, SLUICE_ERROR, SLUICE_ERROR_STOPPED, "%s",
                             _ ("The task queue has been shut down"));
  g_object_unref (task);
}

/**
 * sluice_task_queue_run_async: (skip)
 * @self: a task queue
 * @func: (scope notified) (closure func_data) (destroy func_data_destroy): the
 *   blocking function to run in a thread of @self
 * @func_data: data for @func
 * @func_data_destroy: (nullable): frees @func_data once @func has run or
 *   will never run, on the thread-default main context of the caller, just
 *   before @callback
 * @result_destroy: (nullable) (scope async): frees a result of @func that
 *   is never collected with [method@Sluice.TaskQueue.run_finish]
 * @priority: the priority of the task: lower values run first (as with
 *   `G_PRIORITY_DEFAULT`), tasks of equal priority in the order they were
 *   queued; it is also the priority of the completion callback
 * @cancellable: (nullable): a cancellable, also passed to @func
 * @callback: (scope async) (nullable) (closure user_data): called when the
 *   task completes
 * @user_data: data for @callback
 *
 * Queues @func, to be run in a thread of @self; its result (or error)
 * completes the operation. Collect the result with
 * [method@Sluice.TaskQueue.run_finish].
 *
 * @callback runs on the thread-default main context of the caller,
 * dispatched from its main loop as [class@Gio.Task] does: never from inside
 * this call, a cancellation or a shutdown. @func_data is released there
 * too, just before @callback (if that context is destroyed before the
 * operation completes, it is released wherever the operation is freed).
 *
 * If @cancellable is cancelled before @func starts, @func never runs and the
 * operation completes at once with %G_IO_ERROR_CANCELLED. Once @func runs,
 * it is up to @func to check @cancellable; if it is cancelled by the time
 * @func returns, the operation still fails with %G_IO_ERROR_CANCELLED and
 * the result is freed with @result_destroy.
 *
 * If @self is shut down, @func does not run and the operation fails with
 * %SLUICE_ERROR_STOPPED; if @self is shut down cancelling pending tasks
 * before @func starts, it fails with %G_IO_ERROR_CANCELLED.
 *
 * Language bindings use [method@Sluice.TaskQueue.run_value_async] instead.
 *
 * This function is safe to call from any thread.
 */
void
sluice_task_queue_run_async (SluiceTaskQueue *self,
                             SluiceThreadFunc func,
                             gpointer func_data,
                             GDestroyNotify func_data_destroy,
                             GFreeFunc result_destroy,
                             int priority,
                             GCancellable *cancellable,
                             GAsyncReadyCallback callback,
                             gpointer user_data)
{
  g_return_if_fail (SLUICE_IS_TASK_QUEUE (self));
  g_return_if_fail (func != NULL);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  run_task_queue (self, sluice_task_queue_run_async, func, NULL, func_data, func_data_destroy,
                  result_destroy, priority, cancellable, callback, user_data);
}

/**
 * sluice_task_queue_run_finish: (skip)
 * @self: a task queue
 * @result: the result given to the callback of
 *   [method@Sluice.TaskQueue.run_async]
 * @error: return location for an error
 *
 * Collects the result of [method@Sluice.TaskQueue.run_async]: what the
 * function returned, or its error, %G_IO_ERROR_CANCELLED if the task was
 * cancelled, or %SLUICE_ERROR_STOPPED if @self was shut down.
 *
 * This function is safe to call from any thread, normally from the
 * callback.
 *
 * Returns: (nullable) (transfer full): the result of the function, or %NULL
 *   with @error set (%NULL without an error if the function returned %NULL)
 */
gpointer
sluice_task_queue_run_finish (SluiceTaskQueue *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (SLUICE_IS_TASK_QUEUE (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_async_result_is_tagged (result, sluice_task_queue_run_async), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/**
 * sluice_task_queue_run_value_async: (rename-to sluice_task_queue_run_async)
 * @self: a task queue
 * @func: (scope notified) (closure func_data) (destroy func_data_destroy): the
 *   blocking function to run in a thread of @self; it sets a value
 * @func_data: (nullable): data for @func
 * @func_data_destroy: (nullable): frees @func_data once @func has run or
 *   will never run, on the thread-default main context of the caller, just
 *   before @callback
 * @priority: the priority of the task: lower values run first (as with
 *   `G_PRIORITY_DEFAULT`), tasks of equal priority in the order they were
 *   queued; it is also the priority of the completion callback
 * @cancellable: (nullable): a cancellable, also passed to @func
 * @callback: (scope async) (nullable) (closure user_data): called when the
 *   task completes
 * @user_data: data for @callback
 *
 * Queues @func, to be run in a thread of @self: the value it sets (or its
 * error) completes the operation. Collect the value with
 * [method@Sluice.TaskQueue.run_finish_value]. This is the form language
 * bindings use (it is `run_async` there): a Python function returns any
 * object, or raises a `GLib.Error`, and the object (or error) arrives as
 * it was.
 *
 * Otherwise as [method@Sluice.TaskQueue.run_async]: @callback runs on the
 * thread-default main context of the caller, dispatched from its main loop,
 * never from inside this call, a cancellation or a shutdown, and
 * @func_data is released there just before it. A value that is never
 * collected is freed when the operation is (in any thread).
 *
 * This function is safe to call from any thread.
 */
void
sluice_task_queue_run_value_async (SluiceTaskQueue *self,
                                   SluiceValueThreadFunc func,
                                   gpointer func_data,
                                   GDestroyNotify func_data_destroy,
                                   int priority,
                                   GCancellable *cancellable,
                                   GAsyncReadyCallback callback,
                                   gpointer user_data)
{
  g_return_if_fail (SLUICE_IS_TASK_QUEUE (self));
  g_return_if_fail (func != NULL);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  run_task_queue (self, sluice_task_queue_run_value_async, NULL, func, func_data, func_data_destroy,
                  value_free, priority, cancellable, callback, user_data);
}

/**
 * sluice_task_queue_run_finish_value: (rename-to sluice_task_queue_run_finish)
 * @self: a task queue
 * @result: the result given to the callback of
 *   [method@Sluice.TaskQueue.run_value_async]
 * @error: return location for an error
 *
 * Collects the result of [method@Sluice.TaskQueue.run_value_async]: the
 * value the function set (a %NULL pointer value if it set none), or its
 * error, %G_IO_ERROR_CANCELLED if the task was cancelled, or
 * %SLUICE_ERROR_STOPPED if @self was shut down.
 *
 * This function is safe to call from any thread, normally from the
 * callback.
 *
 * Returns: (nullable) (transfer full): the value, or %NULL with @error set;
 *   free it with g_boxed_free() (%G_TYPE_VALUE), or g_value_unset() and
 *   g_free()
 */
GValue *
sluice_task_queue_run_finish_value (SluiceTaskQueue *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (SLUICE_IS_TASK_QUEUE (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_async_result_is_tagged (result, sluice_task_queue_run_value_async), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- shutdown ---------------------------------------------------------- */

/* The cancellable of a shutdown fired (on the caller's context): stop
 * waiting, unless the shutdown has completed meanwhile. */
static gboolean
shutdown_cancelled_cb (GCancellable *cancellable, gpointer data)
{
  GTask *task = data;
  SluiceTaskQueue *self = g_task_get_source_object (task);
  gboolean removed = FALSE;

  g_mutex_lock (&self->mutex);
  if (self->shutdown_waiters != NULL)
    removed = g_ptr_array_remove_fast (self->shutdown_waiters, task);
  g_mutex_unlock (&self->mutex);

  if (removed)
    {
      g_task_return_error_if_cancelled (task);
      g_object_unref (task); /* the waiters' reference */
    }
  return G_SOURCE_REMOVE;
}

/**
 * sluice_task_queue_shutdown_async:
 * @self: a task queue, not the default one
 * @cancel_pending: whether to cancel the queued tasks instead of running them
 * @cancellable: (nullable): a cancellable, to stop waiting (the queue is shut
 *   down anyway)
 * @callback: (scope async) (nullable) (closure user_data): called when @self has no
 *   task left, queued or running
 * @user_data: data for @callback
 *
 * Shuts @self down: from now on it refuses new tasks
 * ([method@Sluice.TaskQueue.run_async] fails with %SLUICE_ERROR_STOPPED).
 * If @cancel_pending is %FALSE the queued tasks still run; if it is %TRUE
 * they never run and fail with %G_IO_ERROR_CANCELLED. Either way, running
 * tasks finish, and the operation completes, on the thread-default main
 * context of the caller, once no task is queued or running.
 *
 * Calling it again is allowed: that operation completes when the first one
 * does (and with @cancel_pending %TRUE, cancels what is still queued).
 * Cancelling @cancellable completes the operation at once with
 * %G_IO_ERROR_CANCELLED, but does not undo the shutdown.
 *
 * Shutting down the queue of [func@Sluice.TaskQueue.get_default] is a
 * programmer error.
 *
 * This function is safe to call from any thread, also from a
 * [signal@Gio.Cancellable::cancelled] handler of a queued task's
 * cancellable.
 */
void
sluice_task_queue_shutdown_async (SluiceTaskQueue *self,
                                  gboolean cancel_pending,
                                  GCancellable *cancellable,
                                  GAsyncReadyCallback callback,
                                  gpointer user_data)
{
  GTask *task;
  GArray *cancelled = NULL;
  GPtrArray *waiters = NULL;
  gboolean look = FALSE;
  SluiceCalls *calls;

  g_return_if_fail (SLUICE_IS_TASK_QUEUE (self));
  g_return_if_fail (self != g_atomic_pointer_get (&default_queue));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, sluice_task_queue_shutdown_async);

  if (cancellable != NULL)
    {
      GSource *cancelled_source = g_cancellable_source_new (cancellable);

      /* The source holds a reference on the task until it is destroyed, by
       * its dispatch or by complete_shutdown_waiters (). */
      g_task_attach_source (task, cancelled_source, G_SOURCE_FUNC (shutdown_cancelled_cb));
      g_task_set_task_data (task, cancelled_source, (GDestroyNotify) g_source_unref);
    }

  g_mutex_lock (&self->mutex);
  self->shut_down = TRUE;
  calls = self->calls;
  if (calls != NULL && !self->calls_shutting_down)
    {
      self->calls_shutting_down = TRUE;
      self->n_active++; /* until sluice_task_queue_calls_idle () */
    }
  if (cancel_pending)
    {
      guint n_unclaimed = n_unclaimed_locked (self);
      SluiceTaskEntry entry;

      cancelled =
          g_array_sized_new (FALSE, FALSE, sizeof (SluiceTaskEntry), self->n_queued + n_unclaimed);
      g_array_set_size (cancelled, self->n_queued);
      for (guint n = 0; n < cancelled->len;)
        n += levels_pop (self->levels, &g_array_index (cancelled, SluiceTaskEntry, n),
                         cancelled->len - n);
      /* Those in hands count as active already. */
      self->n_active += self->n_queued;
      self->n_queued = 0;
      update_top_priority_locked (self);
      for (Hand *hand = self->hands; hand != NULL; hand = hand->next)
        while (hand_claim_locked (hand, &entry))
          g_array_append_val (cancelled, entry);
      look = counts_need_look (self);
      if (cancelled->len == 0)
        g_clear_pointer (&cancelled, g_array_unref);
    }
  if (self->shutdown_waiters == NULL)
    self->shutdown_waiters = g_ptr_array_new ();
  g_ptr_array_add (self->shutdown_waiters, g_object_ref (task));
  waiters = take_shutdown_waiters_if_idle_locked (self);
  g_mutex_unlock (&self->mutex);

  if (look)
    counts_arm (self);
  if (cancelled != NULL)
    {
      SluiceTaskEntry *entries = (SluiceTaskEntry *) (gpointer) cancelled->data;

      for (guint i = 0; i < cancelled->len; i++)
        {
          g_clear_object (&entries[i].cancellable);
          entries[i].run (entries[i].data, SLUICE_TASK_SHUT_DOWN);
        }

      g_mutex_lock (&self->mutex);
      self->n_active -= cancelled->len;
      if (waiters == NULL)
        waiters = take_shutdown_waiters_if_idle_locked (self);
      g_mutex_unlock (&self->mutex);

      g_array_unref (cancelled);
    }

  if (calls != NULL)
    {
      GMainContext *context = g_main_context_ref_thread_default ();

      sluice_calls_shutdown (calls, cancel_pending, context);
      g_main_context_unref (context);
    }

  complete_shutdown_waiters (waiters);
  g_object_unref (task);
}

/* Internal entry point: see sluice-worker-private.h. */
SluiceCalls *
sluice_task_queue_ensure_calls (SluiceTaskQueue *self)
{
  SluiceCalls *calls;

  g_mutex_lock (&self->mutex);
  if (self->calls == NULL)
    {
      /* Born after the shutdown: there is nothing to wait for. */
      self->calls = sluice_calls_new (self, self->shut_down);
      self->calls_shutting_down = self->shut_down;
    }
  calls = self->calls;
  g_mutex_unlock (&self->mutex);
  return calls;
}

/* Internal entry point: see sluice-worker-private.h. */
void
sluice_task_queue_calls_idle (SluiceTaskQueue *self)
{
  GPtrArray *waiters;

  g_mutex_lock (&self->mutex);
  self->n_active--;
  waiters = take_shutdown_waiters_if_idle_locked (self);
  g_mutex_unlock (&self->mutex);

  complete_shutdown_waiters (waiters);
}

/**
 * sluice_task_queue_shutdown_finish:
 * @self: a task queue
 * @result: the result given to the callback of
 *   [method@Sluice.TaskQueue.shutdown_async]
 * @error: return location for an error
 *
 * Finishes [method@Sluice.TaskQueue.shutdown_async].
 *
 * This function is safe to call from any thread, normally from the
 * callback.
 *
 * Returns: %TRUE once @self has no task left, %FALSE with @error set
 *   (%G_IO_ERROR_CANCELLED) if the wait was cancelled
 */
gboolean
sluice_task_queue_shutdown_finish (SluiceTaskQueue *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (SLUICE_IS_TASK_QUEUE (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_async_result_is_tagged (result, sluice_task_queue_shutdown_async), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}
