/* sluice-private.h: what every source file of the library shares
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "config.h"

#include <sluice/sluice.h>

#ifndef HAVE_BUILTIN_THREAD_POINTER
#include <pthread.h>
#endif

G_BEGIN_DECLS

/* The library's messages come from its own text domain, bound on first use
 * (never in a constructor). */
const char *sluice_gettext (const char *msgid) G_GNUC_FORMAT (1);

#undef _
#define _(String) sluice_gettext (String)
#undef N_
#define N_(String) (String)

/* The calling thread, for the owner-thread checks the producer, the
 * cooperator and the job queue make per item, step or job: the thread
 * pointer (the TCB's address, one register read: fs on x86-64) where the
 * compiler has __builtin_thread_pointer (meson check), else pthread_self ()
 * (a call through the PLT). g_thread_self () would look up thread-specific
 * data. Both differ between live threads. */
#ifdef HAVE_BUILTIN_THREAD_POINTER
typedef gconstpointer SluiceThreadId;
#else
typedef pthread_t SluiceThreadId;
#endif

static inline SluiceThreadId
sluice_thread_id_self (void)
{
#ifdef HAVE_BUILTIN_THREAD_POINTER
  return __builtin_thread_pointer ();
#else
  return pthread_self ();
#endif
}

/* Whether the calling thread is @id (from sluice_thread_id_self ()). */
static inline gboolean
sluice_thread_id_is_self (SluiceThreadId id)
{
#ifdef HAVE_BUILTIN_THREAD_POINTER
  return __builtin_thread_pointer () == id;
#else
  return pthread_equal (pthread_self (), id);
#endif
}

/* A pause in a spin loop: it lets the other hyperthread run. */
static inline void
sluice_cpu_relax (void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause ();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* The adaptive spin rule (doc/overview.md) of a thread that waits for
 * another with few items in flight: the consumer for the head item
 * (sluice-reorder-buffer.c) and the owner for room (the ordered item
 * producer's room source). A futex or poll wake-up costs 5-10 µs on the
 * VMs this was measured on, more than a short wait itself; a spin takes a
 * core the workers may need. So a thread spins only while the moving
 * average of its recent waits (the newest weighing a quarter, each counted
 * up to SLUICE_SPIN_WAIT_CLAMP_US) is at most SLUICE_SPIN_LIMIT_US, and for
 * at most twice that average plus 2 µs, never above the limit; after two
 * failed spins in a row the next 1, 3, 7 ... 1023 eligible waits do not
 * spin; a spin that succeeds ends the back-off. An idle waiter so spins at
 * most once and then sleeps. One waiting thread owns each rule. */
#define SLUICE_SPIN_LIMIT_US 50
#define SLUICE_SPIN_WAIT_CLAMP_US 1000
#define SLUICE_SPIN_BACKOFF_MAX 10

typedef struct
{
  guint avg_us; /* moving average of recent waits */
  guint skip;   /* eligible waits left that do not spin: the back-off */
  guint fails;  /* spins in a row that ended without what they waited for */
} SluiceSpinRule;

static inline void
sluice_spin_rule_init (SluiceSpinRule *rule)
{
  rule->avg_us = SLUICE_SPIN_LIMIT_US;
  rule->skip = 0;
  rule->fails = 0;
}

/* An eligible wait begins at @start (monotonic µs): until when to spin, or
 * 0 for no spin this time. */
static inline gint64
sluice_spin_rule_deadline (SluiceSpinRule *rule, gint64 start)
{
  if (rule->skip > 0)
    {
      rule->skip--;
      return 0;
    }
  if (rule->avg_us > SLUICE_SPIN_LIMIT_US)
    return 0;
  return start + MIN (SLUICE_SPIN_LIMIT_US, 2 * rule->avg_us + 2);
}

/* A wait of @wait_us ended, spun through or slept through. */
static inline void
sluice_spin_rule_note_wait (SluiceSpinRule *rule, gint64 wait_us)
{
  guint w = (guint) CLAMP (wait_us, 0, SLUICE_SPIN_WAIT_CLAMP_US);

  rule->avg_us = rule->avg_us - rule->avg_us / 4 + w / 4;
}

/* A spin got what it waited for (note the wait too). */
static inline void
sluice_spin_rule_succeeded (SluiceSpinRule *rule)
{
  rule->fails = 0;
}

/* A spin reached its deadline: the thread sleeps now. */
static inline void
sluice_spin_rule_failed (SluiceSpinRule *rule)
{
  rule->fails = MIN (rule->fails + 1, SLUICE_SPIN_BACKOFF_MAX + 1);
  rule->skip = (1u << (rule->fails - 1)) - 1;
}

/* The load as a wake-up rule sees it (doc/overview.md, doc/pipeline.md):
 * the moving average of the time between the items a waiter takes, for
 * the reorder buffer's consumer and a pipeline stage's threads. Sampled
 * only at waits, from the clock the wait reads anyway: at each one at
 * least SLUICE_ITEM_GAP_SPAN_MIN_US after the last sample, the time since
 * then per item taken meanwhile is one sample (the waiter waited at both
 * ends, so it kept up: this is the rate at which items came). Earlier
 * waits, and waits with no item since the last sample, add to the next
 * sample. Each sample counts up to SLUICE_ITEM_GAP_CLAMP_US (an idle spell
 * is one long gap, not a reason to wake per item for long after it); the
 * newest weighs a quarter; a new estimate is 0 (batching). A sample spans
 * at least SLUICE_ITEM_GAP_SPAN_MIN_US: its ends are waits, each up to a
 * gap away from an item, so a span of a few items only measures the gap
 * within a gap (a consumer that fell behind under load sampled 200 us gaps
 * as 10-20 us ones). Batching wake-ups pays only below
 * SLUICE_ITEM_GAP_BATCH_MAX_US: a wake-up costs about 5 us on a VM, so
 * waking per item at longer gaps costs at most about 5 % of a core. One
 * waiter (or a lock) owns each estimate. */
#define SLUICE_ITEM_GAP_BATCH_MAX_US 100
#define SLUICE_ITEM_GAP_CLAMP_US 1000
#define SLUICE_ITEM_GAP_SPAN_MIN_US 1000

typedef struct
{
  guint avg_ns;  /* the moving average */
  gint64 since;  /* the clock at the last sample; 0: none yet */
  guint64 count; /* items taken by then */
} SluiceItemGap;

/* A wait at @now (monotonic us) with @count items taken so far; a sample
 * spans at least @span_min_us (SLUICE_ITEM_GAP_SPAN_MIN_US or more). */
static inline void
sluice_item_gap_note (SluiceItemGap *gap, gint64 now, guint64 count, gint64 span_min_us)
{
  guint64 n = count - gap->count;
  gint64 span_us = now - gap->since;

  if (n == 0)
    return;
  if (gap->since != 0)
    {
      gint64 sample;

      if (span_us < span_min_us)
        return;
      sample = (gint64) MIN ((guint64) span_us * 1000 / n, SLUICE_ITEM_GAP_CLAMP_US * 1000);
      gap->avg_ns = (guint) ((gint64) gap->avg_ns + (sample - (gint64) gap->avg_ns) / 4);
    }
  gap->since = now;
  gap->count = count;
}

/* Whether items come fast enough for wake-ups per run of them. */
static inline gboolean
sluice_item_gap_batching (const SluiceItemGap *gap)
{
  return gap->avg_ns < SLUICE_ITEM_GAP_BATCH_MAX_US * 1000;
}

/* The items expected within @latency_us (> 0) at the average gap: a run
 * longer than that costs a timeout and a second sleep. */
static inline guint64
sluice_item_gap_reach (const SluiceItemGap *gap, int latency_us)
{
  return (guint64) latency_us * 1000 / MAX (gap->avg_ns, 1);
}

/* Locks @mutex, trying a while before it sleeps. A GMutex that finds its
 * holder busy goes straight into the kernel, and so does its unlock then:
 * for critical sections of a few dozen instructions taken from three
 * threads a million times a second, that was most of the cost (tens of
 * thousands of futex calls per second). Spinning is bounded, so a holder
 * that was preempted costs the waiter little more than a sleep would. */
static inline void
sluice_mutex_lock_spinning (GMutex *mutex)
{
  for (guint i = 0; i < 64; i++)
    {
      if (g_mutex_trylock (mutex))
        return;
      for (guint j = 0; j < 4; j++)
        sluice_cpu_relax ();
    }
  g_mutex_lock (mutex);
}

/* Runs @func (@data) from an idle source at @priority on @context: never
 * inside the call that asks for it. @destroy frees @data once the source is
 * gone, also when it never ran. @static_name names the source (a string
 * that lives for ever). Any thread. */
static inline void
sluice_idle_attach (GMainContext *context,
                    int priority,
                    const char *static_name,
                    GSourceFunc func,
                    gpointer data,
                    GDestroyNotify destroy)
{
  GSource *source = g_idle_source_new ();

  g_source_set_priority (source, priority);
  g_source_set_callback (source, func, data, destroy);
  g_source_set_static_name (source, static_name);
  g_source_attach (source, context);
  g_source_unref (source);
}

/* g_queue_push_tail_link() and g_queue_pop_head_link(), inline: the
 * cooperator's tick and the job queue run them for every step and every
 * job, where the calls into GLib cost more than the work. */
static inline void
sluice_queue_push_tail_link (GQueue *queue, GList *link)
{
  link->next = NULL;
  link->prev = queue->tail;
  if (queue->tail != NULL)
    queue->tail->next = link;
  else
    queue->head = link;
  queue->tail = link;
  queue->length++;
}

static inline GList *
sluice_queue_pop_head_link (GQueue *queue)
{
  GList *link = queue->head;

  if (link == NULL)
    return NULL;
  queue->head = link->next;
  if (queue->head != NULL)
    queue->head->prev = NULL;
  else
    queue->tail = NULL;
  queue->length--;
  link->next = NULL;
  return link;
}

/* sluice-wake-source.c: a source dispatched while it is set, which costs
 * no wake-up of the context when set by the thread that runs it. */
typedef void (*SluiceWakeSourceFunc) (gpointer owner);

GSource *sluice_wake_source_new (gpointer owner,
                                 SluiceWakeSourceFunc func,
                                 const char *name,
                                 int priority,
                                 GMainContext *context);
void sluice_wake_source_set (GSource *source);
void sluice_wake_source_unset (GSource *source);

/* sluice-cooperator.c */
gboolean sluice_cooperator_in_source_tick (SluiceCooperator *self);

G_END_DECLS
