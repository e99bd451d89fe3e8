/* sluice-bench.c: the core against the best baselines, side by side in one run
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Four workloads, each run by every implementation in this one process,
 * alternating (the order rotates every repetition), several repetitions,
 * medians with the spread. Implementations:
 *
 * - sluice: SluiceOrderedItemProducer through its public API only;
 * - glib:   a plain GLib one: GThreadPool workers, an array ring under a
 *           GMutex with GConds signalled only when the other side waits, a
 *           consumer GThread, the same window with the same hysteresis;
 * - tbb:    oneTBB parallel_pipeline, serial_in_order → parallel →
 *           serial_in_order (bench-tbb.cpp, when oneTBB was found);
 * - serial: the same work in one thread, no library: the floor and the
 *           reference for speedups;
 * - unsync: (small work only) the same work split in halves between as
 *           many plain threads as the others have workers, no ordering, no
 *           handoff, no consumer: the ceiling of any ordered design.
 *
 * Every run is checked (count, order, sums of item numbers and of the busy
 * work results): a wrong result ends the bench with an error.
 *
 * Peak RSS: the high-water mark is reset before each run (/proc/self/clear_refs)
 * and read after it; the slow consumer runs in a child process of its own
 * (which reports its own VmHWM: ru_maxrss from wait4() would also count the
 * pages it shared with this process between fork and exec), at two sizes,
 * to show RSS flat in the item count.
 */

#include <sluice/sluice.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench-common.h"
#include "bench-shuffle.h"
#include "latency.h"

#define MAX_REPS BENCH_MAX_REPS
#define MAX_HANDOFF_BATCH 4096
#define MAX_HANDOFF_WINDOWS 4

/* ---- options ----------------------------------------------------------- */

static gboolean opt_quick;
static int opt_reps;
static int opt_window = 1024;
static int opt_threads = 2;
/* Items the producer hands to a completer thread at a time (handoff); 0:
 * by the window (handoff_batch_for ()). */
static int opt_handoff_batch;
/* The handoff runs every implementation at each of these windows. */
static char *opt_handoff_windows;
static char *opt_only;
static char *opt_impls;
static gboolean opt_no_acquire;
static double opt_scale = 1.0;
/* Runs disturbed by other load on the machine are repeated, at most this
 * many attempts each: the figures compare implementations, so they must see
 * the same machine. On a machine that is always busy, 1 keeps every run and
 * leaves the comparison to alternation and CPU time per item. */
static int opt_attempts = 3;
/* -1: the producer's default :wake-latency. */
static int opt_wake_latency = -1;
static gboolean opt_latency_start_apart;
static gboolean opt_latency_keep_apart;
static gboolean opt_latency_owner_with_consumer;
/* Hidden: run one slow-consumer case in this (child) process. */
static char *opt_child;
static gint64 opt_child_n;
static int opt_child_work_iters;
static int opt_child_consumer_iters;

static GOptionEntry option_entries[] = {
  { "quick", 'q', 0, G_OPTION_ARG_NONE, &opt_quick, "Smoke run: small sizes, 2 repetitions", NULL },
  { "reps", 'r', 0, G_OPTION_ARG_INT, &opt_reps, "Repetitions (default 5, quick 2)", "N" },
  { "window", 'w', 0, G_OPTION_ARG_INT, &opt_window, "Window: the most items in flight (1024)",
    "N" },
  { "threads", 't', 0, G_OPTION_ARG_INT, &opt_threads, "Worker threads (2)", "N" },
  { "handoff-batch", 'b', 0, G_OPTION_ARG_INT, &opt_handoff_batch,
    "Handoff: slots handed to a completer thread at a time (default: window/8, 256-4096)", "N" },
  { "handoff-windows", 0, 0, G_OPTION_ARG_STRING, &opt_handoff_windows,
    "Handoff: the windows to run every implementation at (1024,4096,16384,65536)", "LIST" },
  { "only", 'o', 0, G_OPTION_ARG_STRING, &opt_only,
    "Comma-separated workloads: handoff,tiny,small,large,slow,latency", "LIST" },
  { "impls", 'i', 0, G_OPTION_ARG_STRING, &opt_impls,
    "Comma-separated implementations: sluice,glib,tbb,harness,unsync,serial", "LIST" },
  { "no-acquire", 0, 0, G_OPTION_ARG_NONE, &opt_no_acquire,
    "Produce without holding the owner context (shows how :ready then lags)", NULL },
  { "scale", 's', 0, G_OPTION_ARG_DOUBLE, &opt_scale, "Multiply every item count", "X" },
  { "attempts", 0, 0, G_OPTION_ARG_INT, &opt_attempts,
    "Runs disturbed by other load: at most N attempts each (3; 1: never repeat)", "N" },
  { "wake-latency", 0, 0, G_OPTION_ARG_INT, &opt_wake_latency,
    "Sluice: the producer's :wake-latency in us (default: the producer's own)", "US" },
  { "latency-start-apart", 0, 0, G_OPTION_ARG_NONE, &opt_latency_start_apart,
    "Latency: each run's first 200 items with the consumer on CPU 1, the other threads on CPU 0 "
    "(the layout that makes p50 with 1 in flight slow; Linux)",
    NULL },
  { "latency-keep-apart", 0, 0, G_OPTION_ARG_NONE, &opt_latency_keep_apart,
    "Latency: every item so (what the path across processors costs; Linux)", NULL },
  { "latency-owner-with-consumer", 0, 0, G_OPTION_ARG_NONE, &opt_latency_owner_with_consumer,
    "Latency, apart: Sluice's owner on the consumer's CPU instead of the completers'", NULL },
  { "child", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_STRING, &opt_child, NULL, NULL },
  { "child-n", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT64, &opt_child_n, NULL, NULL },
  { "child-work-iters", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT, &opt_child_work_iters, NULL,
    NULL },
  { "child-consumer-iters", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_INT, &opt_child_consumer_iters,
    NULL, NULL },
  G_OPTION_ENTRY_NULL
};

/* ---- small helpers ----------------------------------------------------- */

static void fail (const char *format, ...) G_GNUC_NORETURN G_GNUC_PRINTF (1, 2);

/* A wrong result, or a broken run: the bench ends with status 1. */
static void
fail (const char *format, ...)
{
  va_list args;

  fflush (stdout);
  fprintf (stderr, "sluice-bench: FAIL: ");
  va_start (args, format);
  vfprintf (stderr, format, args);
  va_end (args);
  fprintf (stderr, "\n");
  exit (1);
}

/* Where the results of busy work that nobody checks go, so that they are
 * computed all the same. */
static volatile uint64_t sink;

static guint32 busy_iters_per_us;

static guint32
iters_for_us (double us)
{
  return (guint32) MAX (1.0, us * busy_iters_per_us);
}

/* Resets the peak resident set to the current one. */
static void
rss_reset_peak (void)
{
  int fd = open ("/proc/self/clear_refs", O_WRONLY);

  if (fd >= 0)
    {
      if (write (fd, "5", 1) != 1)
        {
          /* Older kernels: the peak then covers the whole process so far. */
        }
      close (fd);
    }
}

/* VmHWM in MiB, or NAN. */
static double
rss_peak_mb (void)
{
  g_autofree char *status = NULL;
  const char *line;

  if (!g_file_get_contents ("/proc/self/status", &status, NULL, NULL))
    return NAN;
  line = strstr (status, "VmHWM:");
  if (line == NULL)
    return NAN;
  return g_ascii_strtod (line + 6, NULL) / 1024.0;
}

typedef struct
{
  double wall;
  double cpu;    /* this process */
  double system; /* every processor of the machine, busy */
  long csw;
} Usage;

/* Seconds the machine's processors have been busy (any process, and time
 * the hypervisor stole), from /proc/stat; 0 where it cannot be read. */
static double
system_busy_seconds (void)
{
  g_autofree char *stat = NULL;
  guint64 v[8] = { 0 };

  if (!g_file_get_contents ("/proc/stat", &stat, NULL, NULL) ||
      sscanf (stat,
              "cpu %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
              " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
              " %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT,
              &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) < 8)
    return 0;
  /* user nice system [idle iowait] irq softirq steal */
  return (double) (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / sysconf (_SC_CLK_TCK);
}

/* Cores that other processes took, beyond what the tick granularity of
 * /proc/stat (two ticks per processor) can explain. */
static double
other_cores (double other_seconds, double wall)
{
  double slack = 2.0 * g_get_num_processors () / sysconf (_SC_CLK_TCK);

  return MAX (0, other_seconds - slack) / wall;
}

static gboolean
is_disturbed (double other_seconds, double wall)
{
  return other_cores (other_seconds, wall) > 0.15;
}

static void
usage_now (Usage *usage)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  usage->system = system_busy_seconds ();
  usage->wall = bench_now ();
  usage->cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
               ru.ru_stime.tv_usec * 1e-6;
  usage->csw = ru.ru_nvcsw + ru.ru_nivcsw;
}

static void
track_live (guint64 produced, guint64 *consumed, guint64 *max_live)
{
  guint64 live = produced - __atomic_load_n (consumed, __ATOMIC_SEQ_CST);

  if (live > *max_live)
    *max_live = live;
}

/* Whether @p is the handoff: trivial items, completed through slots. */
static inline gboolean
is_handoff (const BenchParams *p)
{
  return p->work_iters == 0 && !p->payload;
}

/* The slots a completer gets at a time in the handoff: an eighth of the
 * window (at least 256, at most MAX_HANDOFF_BATCH), the same for sluice,
 * glib and the harness. With 256 at every window, handing the batches over
 * (a GThreadPool push, often a futex wake-up) cost more per item than
 * sluice's whole reorder and handoff at windows of 16384 and more, and
 * the figures measured the pool (bench/README.md). */
static guint
handoff_batch_for (guint window)
{
  if (opt_handoff_batch > 0)
    return (guint) opt_handoff_batch;
  return CLAMP (window / 8, 256, MAX_HANDOFF_BATCH);
}

/* The batch size of the handoff run under way, and the (shuffled) order in
 * which its completers complete a full batch; a partial one goes in
 * reverse. Set by use_handoff_batch () before the run. */
static guint handoff_batch;
static guint shuffle[MAX_HANDOFF_BATCH];

static void
use_handoff_batch (guint batch)
{
  if (batch == handoff_batch)
    return;
  handoff_batch = batch;
  bench_shuffle_init (shuffle, batch);
}

static inline guint
shuffled (guint k, guint n)
{
  return n == handoff_batch ? shuffle[k] : n - 1 - k;
}

/* ---- serial: no library, one thread ------------------------------------ */

static void
serial_run (const BenchParams *p, BenchResult *r)
{
  BenchTally tally;
  double t0;

  bench_tally_init (&tally);
  t0 = bench_now ();
  for (guint64 i = 0; i < p->n; i++)
    {
      uint64_t value = bench_item_value (i, p->work_iters);

      if (p->payload)
        value = bench_block_take (bench_block_new (value));
      /* Keep the loop a loop: no closed form, no vectors. */
      __asm__ volatile("" : "+r"(value));
      bench_tally_add (&tally, value, p->consumer_iters);
    }
  r->seconds = bench_now () - t0;
  r->tally = tally;
}

/* ---- sluice ------------------------------------------------------------ */

typedef struct
{
  guint n;
  struct
  {
    guint64 seq;
    SluiceSlot *slot;
  } entries[];
} SlotBatch;

typedef struct
{
  const BenchParams *p;
  GThreadPool *completers; /* handoff */
  SlotBatch *batch;        /* filled by the item function, main thread */
  guint64 next_seq;        /* main thread */
  guint64 consumed;        /* atomic, with track_live */
  BenchTally tally;        /* consumer thread, read after the stop */
} SluiceRun;

static const BenchParams *sluice_current;

/* A completer thread: completes a batch of slots out of order. */
static void
sluice_complete_batch (gpointer data, gpointer user_data)
{
  SlotBatch *batch = data;

  for (guint k = 0; k < batch->n; k++)
    {
      guint j = shuffled (k, batch->n);

      sluice_slot_complete (batch->entries[j].slot, GSIZE_TO_POINTER (batch->entries[j].seq + 1));
    }
  g_free (batch);
}

static void
sluice_flush_batch (SluiceRun *run)
{
  if (run->batch == NULL)
    return;
  g_thread_pool_push (run->completers, g_steal_pointer (&run->batch), NULL);
}

/* The item function (main thread): the slot goes to a completer. */
static void
sluice_hand_to_completer (SluiceSlot *slot, gpointer data)
{
  SluiceRun *run = data;

  if (run->batch == NULL)
    {
      run->batch = g_malloc (sizeof (SlotBatch) + handoff_batch * sizeof run->batch->entries[0]);
      run->batch->n = 0;
    }
  run->batch->entries[run->batch->n].slot = slot;
  run->batch->entries[run->batch->n].seq = run->next_seq++;
  if (++run->batch->n == handoff_batch)
    sluice_flush_batch (run);
}

/* The blocking item function, in the task queue. */
static gpointer
sluice_work (GCancellable *cancellable, gpointer data, GError **error)
{
  const BenchParams *p = sluice_current;
  uint64_t value = bench_item_value (GPOINTER_TO_SIZE (data), p->work_iters);

  if (p->payload)
    return bench_block_new (value);
  return GSIZE_TO_POINTER (value);
}

static gpointer
sluice_consume (SluiceConsumerator *consumerator, gpointer data, GError **error)
{
  SluiceRun *run = data;
  const BenchParams *p = run->p;
  gpointer item;

  while (sluice_consumerator_next (consumerator, &item, error))
    {
      uint64_t value;

      if (p->track_live)
        __atomic_fetch_add (&run->consumed, 1, __ATOMIC_SEQ_CST);
      value = p->payload ? bench_block_take (item) : GPOINTER_TO_SIZE (item);
      bench_tally_add (&run->tally, value, p->consumer_iters);
    }
  return (*error == NULL) ? GINT_TO_POINTER (1) : NULL;
}

static void
on_stopped (GObject *source, GAsyncResult *result, gpointer data)
{
  GAsyncResult **out = data;

  *out = g_object_ref (result);
}

static void
sluice_run (const BenchParams *p, BenchResult *r)
{
  GMainContext *context = g_main_context_default ();
  SluiceRun run = { 0 };
  SluiceTaskQueue *queue = NULL;
  SluiceOrderedItemProducer *producer;
  SluiceConsumerator *consumerator;
  GAsyncResult *stop_result = NULL;
  g_autoptr (GError) error = NULL;
  gboolean handoff = is_handoff (p);
  gpointer ret;
  double t0;

  /* Hold the owner context while producing: the producer then updates
   * :ready at once when the window fills (from another thread it would
   * only do so when the context next iterates). */
  if (!opt_no_acquire && !g_main_context_acquire (context))
    fail ("cannot acquire the main context");

  run.p = p;
  bench_tally_init (&run.tally);
  sluice_current = p;
  if (handoff)
    run.completers = g_thread_pool_new (sluice_complete_batch, &run, p->threads, TRUE, NULL);
  else
    queue = sluice_task_queue_new (p->threads);
  producer = sluice_ordered_item_producer_new (queue, p->window, p->payload ? free : NULL);
  consumerator = sluice_ordered_item_producer_get_consumerator (producer);
  if (opt_wake_latency >= 0)
    sluice_ordered_item_producer_set_wake_latency (producer, (guint) opt_wake_latency);

  t0 = bench_now ();
  sluice_ordered_item_producer_start (producer, sluice_consume, &run, NULL, NULL);
  for (guint64 i = 0; i < p->n; i++)
    {
      if (G_UNLIKELY (!sluice_ordered_item_producer_is_ready (producer)))
        {
          /* Never wait with slots in hand. */
          sluice_flush_batch (&run);
          while (!sluice_ordered_item_producer_is_ready (producer))
            g_main_context_iteration (context, TRUE);
        }
      if (handoff)
        sluice_ordered_item_producer_produce_item (producer, sluice_hand_to_completer, &run, NULL,
                                                   NULL, NULL, NULL);
      else
        sluice_ordered_item_producer_produce_item_in_thread (producer, sluice_work,
                                                             GSIZE_TO_POINTER (i), NULL,
                                                             G_PRIORITY_DEFAULT, NULL, NULL, NULL);
      if (p->track_live)
        {
          guint n_items = sluice_consumerator_get_n_items (consumerator);

          r->max_n_items = MAX (r->max_n_items, n_items);
          track_live (i + 1, &run.consumed, &r->max_live);
        }
    }
  sluice_flush_batch (&run);

  sluice_ordered_item_producer_stop_async (producer, NULL, on_stopped, &stop_result);
  while (stop_result == NULL)
    g_main_context_iteration (context, TRUE);
  ret = sluice_ordered_item_producer_stop_finish (producer, stop_result, &error);
  r->seconds = bench_now () - t0;
  if (ret == NULL)
    fail ("sluice: the stop failed: %s", error != NULL ? error->message : "no result");

  r->tally = run.tally;
  g_object_unref (stop_result);
  if (run.completers != NULL)
    g_thread_pool_free (run.completers, FALSE, TRUE);
  g_object_unref (producer);
  g_clear_object (&queue);
  if (!opt_no_acquire)
    g_main_context_release (context);
}

/* ---- glib: the plain GLib implementation ------------------------------- */

typedef struct
{
  guint n;
  guint64 seqs[];
} SeqBatch;

typedef struct
{
  const BenchParams *p;
  GThreadPool *pool;
  SeqBatch *batch; /* handoff, main thread */

  GMutex lock;
  GCond data_cond;  /* the consumer waits for ring[head] */
  GCond space_cond; /* the producer waits for room */
  guint64 *values;
  guint8 *full;
  guint mask;
  guint window;
  guint low_water;
  guint64 next; /* reserved */
  guint64 head; /* taken by the consumer */
  guint64 wait_seq;
  gboolean consumer_waiting;
  gboolean producer_waiting;
  gboolean ended;

  guint64 consumed; /* atomic, with track_live */
  BenchTally tally; /* consumer thread */
} GlibRun;

static void
glib_store (GlibRun *run, guint64 seq, guint64 value)
{
  g_mutex_lock (&run->lock);
  run->values[seq & run->mask] = value;
  run->full[seq & run->mask] = 1;
  if (run->consumer_waiting && run->wait_seq == seq)
    g_cond_signal (&run->data_cond);
  g_mutex_unlock (&run->lock);
}

static void
glib_complete_batch (gpointer data, gpointer user_data)
{
  SeqBatch *batch = data;

  for (guint k = 0; k < batch->n; k++)
    {
      guint j = shuffled (k, batch->n);

      glib_store (user_data, batch->seqs[j], batch->seqs[j] + 1);
    }
  g_free (batch);
}

static void
glib_work (gpointer data, gpointer user_data)
{
  GlibRun *run = user_data;
  guint64 seq = GPOINTER_TO_SIZE (data) - 1;
  uint64_t value = bench_item_value (seq, run->p->work_iters);

  if (run->p->payload)
    value = (uint64_t) (uintptr_t) bench_block_new (value);
  glib_store (run, seq, value);
}

static gpointer
glib_consumer (gpointer data)
{
  GlibRun *run = data;
  const BenchParams *p = run->p;

  for (;;)
    {
      guint64 value;

      g_mutex_lock (&run->lock);
      while (!run->full[run->head & run->mask])
        {
          if (run->ended && run->head == run->next)
            {
              g_mutex_unlock (&run->lock);
              return NULL;
            }
          run->wait_seq = run->head;
          run->consumer_waiting = TRUE;
          g_cond_wait (&run->data_cond, &run->lock);
          run->consumer_waiting = FALSE;
        }
      value = run->values[run->head & run->mask];
      run->full[run->head & run->mask] = 0;
      run->head++;
      if (run->producer_waiting && run->next - run->head <= run->low_water)
        g_cond_signal (&run->space_cond);
      g_mutex_unlock (&run->lock);

      if (p->track_live)
        __atomic_fetch_add (&run->consumed, 1, __ATOMIC_SEQ_CST);
      if (p->payload)
        value = bench_block_take ((gpointer) (uintptr_t) value);
      bench_tally_add (&run->tally, value, p->consumer_iters);
    }
}

/* Hands the batch being filled to the completer pool. */
static void
seq_batch_flush (SeqBatch **batch, GThreadPool *pool)
{
  if (*batch != NULL)
    g_thread_pool_push (pool, g_steal_pointer (batch), NULL);
}

/* Adds @seq to the batch being filled; a full one goes to the pool. The
 * glib and harness runs share it, so that they hand over alike. */
static void
seq_batch_add (SeqBatch **batch, guint64 seq, GThreadPool *pool)
{
  if (*batch == NULL)
    {
      *batch = g_malloc (sizeof (SeqBatch) + handoff_batch * sizeof (guint64));
      (*batch)->n = 0;
    }
  (*batch)->seqs[(*batch)->n] = seq;
  if (++(*batch)->n == handoff_batch)
    seq_batch_flush (batch, pool);
}

static void
glib_run (const BenchParams *p, BenchResult *r)
{
  GlibRun run = { 0 };
  gboolean handoff = is_handoff (p);
  guint capacity = 1;
  GThread *consumer;
  double t0;

  run.p = p;
  bench_tally_init (&run.tally);
  while (capacity < p->window)
    capacity <<= 1;
  run.values = g_new0 (guint64, capacity);
  run.full = g_new0 (guint8, capacity);
  run.mask = capacity - 1;
  run.window = p->window;
  /* The same hysteresis as the library: room again once a quarter of the
   * window is free. */
  run.low_water = p->window - MAX (1, p->window / 4);
  g_mutex_init (&run.lock);
  g_cond_init (&run.data_cond);
  g_cond_init (&run.space_cond);
  run.pool =
      g_thread_pool_new (handoff ? glib_complete_batch : glib_work, &run, p->threads, TRUE, NULL);

  t0 = bench_now ();
  consumer = g_thread_new ("glib-consumer", glib_consumer, &run);
  for (guint64 i = 0; i < p->n; i++)
    {
      guint64 seq;

      g_mutex_lock (&run.lock);
      if (run.next - run.head >= run.window)
        {
          g_mutex_unlock (&run.lock);
          seq_batch_flush (&run.batch, run.pool);
          g_mutex_lock (&run.lock);
          while (run.next - run.head > run.low_water)
            {
              run.producer_waiting = TRUE;
              g_cond_wait (&run.space_cond, &run.lock);
              run.producer_waiting = FALSE;
            }
        }
      seq = run.next++;
      g_mutex_unlock (&run.lock);

      if (handoff)
        seq_batch_add (&run.batch, seq, run.pool);
      else
        g_thread_pool_push (run.pool, GSIZE_TO_POINTER (seq + 1), NULL);

      if (p->track_live)
        track_live (i + 1, &run.consumed, &r->max_live);
    }
  seq_batch_flush (&run.batch, run.pool);

  g_mutex_lock (&run.lock);
  run.ended = TRUE;
  if (run.consumer_waiting)
    g_cond_signal (&run.data_cond);
  g_mutex_unlock (&run.lock);
  g_thread_join (consumer);
  r->seconds = bench_now () - t0;
  r->tally = run.tally;

  g_thread_pool_free (run.pool, FALSE, TRUE);
  g_mutex_clear (&run.lock);
  g_cond_clear (&run.data_cond);
  g_cond_clear (&run.space_cond);
  g_free (run.values);
  g_free (run.full);
}

/* ---- harness: the handoff's hand-off to completer threads, alone -------- */

/* The same producing loop, batches, completer pool and shuffle as the
 * sluice and glib handoff runs, with no reordering, no window and no
 * consumer: the completers only add up what they get. Its rate is a
 * ceiling for those two implementations in this workload, and shows how
 * much of their time is the harness's own. */
typedef struct
{
  SeqBatch *batch;
  guint64 count; /* atomic */
  guint64 sum;   /* atomic */
} HarnessRun;

static void
harness_complete_batch (gpointer data, gpointer user_data)
{
  SeqBatch *batch = data;
  HarnessRun *run = user_data;
  guint64 sum = 0;

  for (guint k = 0; k < batch->n; k++)
    sum += batch->seqs[shuffled (k, batch->n)] + 1;
  __atomic_fetch_add (&run->count, batch->n, __ATOMIC_RELAXED);
  __atomic_fetch_add (&run->sum, sum, __ATOMIC_RELAXED);
  g_free (batch);
}

static void
harness_run (const BenchParams *p, BenchResult *r)
{
  HarnessRun run = { 0 };
  GThreadPool *pool;
  double t0;

  pool = g_thread_pool_new (harness_complete_batch, &run, p->threads, TRUE, NULL);
  t0 = bench_now ();
  for (guint64 i = 0; i < p->n; i++)
    seq_batch_add (&run.batch, i, pool);
  seq_batch_flush (&run.batch, pool);
  g_thread_pool_free (pool, FALSE, TRUE);
  r->seconds = bench_now () - t0;
#ifdef __GLIBC__
  /* Nothing bounds the batches queued here: give their memory back, or
   * it stays in the heap and in the peak RSS of the runs after this one. */
  malloc_trim (0);
#endif

  bench_tally_init (&r->tally);
  r->tally.order_ok = 0;
  r->tally.count = run.count;
  r->tally.sum_lo = run.sum;
}

/* ---- unsync: the work alone, split between plain threads --------------- */

/* Each of p->threads GThreads does a contiguous share of the items' busy
 * work and sums what it computed: no ordering, no handoff, no consumer, no
 * synchronisation but the final join. Ordered delivery can only approach
 * its rate (issue 19: small work >= 0.97x this). */
typedef struct
{
  const BenchParams *p;
  guint64 first, end;
  BenchTally tally;
} UnsyncShare;

static gpointer
unsync_thread (gpointer data)
{
  UnsyncShare *share = data;

  for (guint64 i = share->first; i < share->end; i++)
    {
      uint64_t value = bench_item_value (i, share->p->work_iters);

      __asm__ volatile("" : "+r"(value));
      share->tally.count++;
      share->tally.sum_lo += value & 0xffffffffu;
      share->tally.sum_hi += value >> 32;
    }
  return NULL;
}

static void
unsync_run (const BenchParams *p, BenchResult *r)
{
  UnsyncShare *shares = g_new0 (UnsyncShare, p->threads);
  GThread **threads = g_new (GThread *, p->threads);
  double t0;

  for (guint k = 0; k < p->threads; k++)
    {
      shares[k].p = p;
      shares[k].first = p->n * k / p->threads;
      shares[k].end = p->n * (k + 1) / p->threads;
    }
  t0 = bench_now ();
  for (guint k = 0; k < p->threads; k++)
    threads[k] = g_thread_new ("unsync", unsync_thread, &shares[k]);
  for (guint k = 0; k < p->threads; k++)
    g_thread_join (threads[k]);
  r->seconds = bench_now () - t0;

  bench_tally_init (&r->tally);
  r->tally.order_ok = 0;
  for (guint k = 0; k < p->threads; k++)
    {
      r->tally.count += shares[k].tally.count;
      r->tally.sum_lo += shares[k].tally.sum_lo;
      r->tally.sum_hi += shares[k].tally.sum_hi;
    }
  g_free (threads);
  g_free (shares);
}

/* ---- tbb --------------------------------------------------------------- */

static void
tbb_run (const BenchParams *p, BenchResult *r)
{
#ifdef HAVE_TBB
  if (!bench_tbb_run (p, r))
    fail ("tbb: the run failed");
  /* oneTBB workers spin a while after their work runs out: let them fall
   * asleep before the next implementation is timed. */
  g_usleep (100 * 1000);
#else
  g_assert_not_reached ();
#endif
}

/* ---- implementations and measurements ---------------------------------- */

typedef enum
{
  IMPL_SLUICE,
  IMPL_GLIB,
  IMPL_TBB,
  IMPL_HARNESS,
  IMPL_UNSYNC,
  IMPL_SERIAL,
  N_IMPLS
} Impl;

static const char *impl_names[N_IMPLS] = { "sluice", "glib", "tbb", "harness", "unsync", "serial" };

static gboolean
impl_wanted (Impl impl)
{
  g_auto (GStrv) names = NULL;

  if (opt_impls == NULL)
    return TRUE;
  names = g_strsplit (opt_impls, ",", -1);
  return g_strv_contains ((const char *const *) names, impl_names[impl]);
}

static gboolean
impl_available (Impl impl)
{
#ifdef HAVE_TBB
  return TRUE;
#else
  return impl != IMPL_TBB;
#endif
}

static void
impl_run (Impl impl, const BenchParams *p, BenchResult *r)
{
  memset (r, 0, sizeof *r);
  if (is_handoff (p))
    use_handoff_batch (handoff_batch_for (p->window));
  switch (impl)
    {
    case IMPL_SLUICE:
      sluice_run (p, r);
      break;
    case IMPL_GLIB:
      glib_run (p, r);
      break;
    case IMPL_TBB:
      tbb_run (p, r);
      break;
    case IMPL_HARNESS:
      harness_run (p, r);
      break;
    case IMPL_UNSYNC:
      unsync_run (p, r);
      break;
    case IMPL_SERIAL:
    default:
      serial_run (p, r);
      break;
    }
}

static Impl
impl_from_name (const char *name)
{
  for (int i = 0; i < N_IMPLS; i++)
    if (g_strcmp0 (name, impl_names[i]) == 0)
      return i;
  fail ("unknown implementation %s", name);
}

/* What every run of a workload must have seen. */
typedef struct
{
  guint64 n;
  guint64 sum_hi;
  gboolean sum_hi_known;
  guint64 sink;
  gboolean sink_known;
} Expected;

static void
check_tally (const char *workload, Impl impl, const BenchTally *t, Expected *e)
{
  guint64 sum_lo = e->n * (e->n + 1) / 2;

  /* The harness and unsync have no consumer, hence no order to keep. */
  if (!t->order_ok && impl != IMPL_HARNESS && impl != IMPL_UNSYNC)
    fail ("%s/%s: items out of order", workload, impl_names[impl]);
  if (t->count != e->n)
    fail ("%s/%s: %" G_GUINT64_FORMAT " items instead of %" G_GUINT64_FORMAT, workload,
          impl_names[impl], t->count, e->n);
  if (t->sum_lo != sum_lo)
    fail ("%s/%s: sum of items %" G_GUINT64_FORMAT " instead of %" G_GUINT64_FORMAT, workload,
          impl_names[impl], t->sum_lo, sum_lo);
  if (!e->sum_hi_known)
    {
      e->sum_hi = t->sum_hi;
      e->sum_hi_known = TRUE;
    }
  else if (t->sum_hi != e->sum_hi)
    fail ("%s/%s: sum of work results %" G_GUINT64_FORMAT " instead of %" G_GUINT64_FORMAT,
          workload, impl_names[impl], t->sum_hi, e->sum_hi);
  if (!e->sink_known)
    {
      e->sink = t->sink;
      e->sink_known = TRUE;
    }
  else if (t->sink != e->sink)
    fail ("%s/%s: the consumer's work differs", workload, impl_names[impl]);
  sink += t->sink;
}

typedef struct
{
  int n;
  double seconds[MAX_REPS];
  double cpu[MAX_REPS];   /* cores busy on average */
  double csw[MAX_REPS];   /* context switches per 1000 items */
  double rss[MAX_REPS];   /* peak RSS, MiB */
  double other[MAX_REPS]; /* cores busy with other processes */
  int n_retried;          /* runs repeated for other load */
  int n_disturbed;        /* runs kept although disturbed */
  guint64 max_live;
  guint64 max_n_items;
} Samples;

typedef struct
{
  const char *name;
  const char *title;
  BenchParams params;
  gboolean impls[N_IMPLS];
  Samples samples[N_IMPLS];
  Expected expected;
  gboolean ran;
} Workload;

static double cpu_us_per_item (const Workload *w, Impl impl, int i);

static void
measure (Workload *w, Impl impl)
{
  Samples *s = &w->samples[impl];
  BenchResult r;
  Usage before, after;
  double other;

  for (int attempt = 1;; attempt++)
    {
      rss_reset_peak ();
      usage_now (&before);
      impl_run (impl, &w->params, &r);
      usage_now (&after);
      check_tally (w->name, impl, &r.tally, &w->expected);
      other = (after.system - before.system) - (after.cpu - before.cpu);
      if (!is_disturbed (other, after.wall - before.wall))
        break;
      if (attempt >= opt_attempts)
        {
          s->n_disturbed++;
          break;
        }
      s->n_retried++;
      fprintf (stderr, "  %-8s %-7s: other load on the machine (%.2f cores), once more\n", w->name,
               impl_names[impl], other_cores (other, after.wall - before.wall));
      g_usleep (G_USEC_PER_SEC);
    }

  s->other[s->n] = other_cores (other, after.wall - before.wall);
  s->seconds[s->n] = r.seconds;
  s->cpu[s->n] = (after.cpu - before.cpu) / (after.wall - before.wall);
  s->csw[s->n] = (after.csw - before.csw) * 1000.0 / w->params.n;
  s->rss[s->n] = rss_peak_mb ();
  s->max_live = MAX (s->max_live, r.max_live);
  s->max_n_items = MAX (s->max_n_items, r.max_n_items);
  s->n++;
  /* Per repetition, with what tells the host's share from the code's: the
   * cores the process kept busy, its CPU per item and the cores others
   * took (issue 19: which side of a ratio swings). */
  fprintf (stderr,
           "  %-8s %-7s rep %d: %8.3f s  %10.0f items/s  cores %.2f  cpu %.1f ns/item  other "
           "%.2f\n",
           w->name, impl_names[impl], s->n, r.seconds, w->params.n / r.seconds, s->cpu[s->n - 1],
           cpu_us_per_item (w, impl, s->n - 1) * 1000, s->other[s->n - 1]);
}

/* The median over repetitions of the ratio of two implementations' times,
 * each ratio taken within one repetition. */
static void
paired_ratio2 (
    const Workload *wa, Impl num, const Workload *wb, Impl den, double *med, double *lo, double *hi)
{
  const Samples *a = &wa->samples[num], *b = &wb->samples[den];
  double ratios[MAX_REPS];
  int n = MIN (a->n, b->n);

  for (int i = 0; i < n; i++)
    ratios[i] = b->seconds[i] / a->seconds[i];
  *med = bench_median (ratios, n);
  *lo = bench_min_of (ratios, n);
  *hi = bench_max_of (ratios, n);
}

static void
paired_ratio (const Workload *w, Impl num, Impl den, double *med, double *lo, double *hi)
{
  paired_ratio2 (w, num, w, den, med, lo, hi);
}

/* CPU time (user + system of the whole process) per item of repetition @i,
 * in µs: less sensitive to other load than the wall-clock time, which a
 * busy machine stretches (issue 19). */
static double
cpu_us_per_item (const Workload *w, Impl impl, int i)
{
  const Samples *s = &w->samples[impl];

  return s->cpu[i] * s->seconds[i] * 1e6 / (double) w->params.n;
}

/* The median CPU µs per item of @impl, and the paired ratio of @den's CPU
 * per item to @num's within each repetition (> 1: @num spends less). */
static void
paired_cpu_ratio (
    const Workload *w, Impl num, Impl den, double *num_us, double *den_us, double *med)
{
  double a[MAX_REPS], b[MAX_REPS], ratios[MAX_REPS];
  int n = MIN (w->samples[num].n, w->samples[den].n);

  for (int i = 0; i < n; i++)
    {
      a[i] = cpu_us_per_item (w, num, i);
      b[i] = cpu_us_per_item (w, den, i);
      ratios[i] = b[i] / a[i];
    }
  *num_us = bench_median (a, n);
  *den_us = bench_median (b, n);
  *med = bench_median (ratios, n);
}

/* Runs the @n workloads @ws (variants of one workload, e.g. at several
 * windows) in alternation: every repetition runs each implementation of
 * each of them once, so that ratios between any two runs of a repetition
 * are taken close in time, in the same process. */
static void
run_workloads (Workload *ws, int n, int reps)
{
  Impl order[MAX_HANDOFF_WINDOWS][N_IMPLS];
  int n_order[MAX_HANDOFF_WINDOWS] = { 0 };

  g_assert (n >= 1 && n <= MAX_HANDOFF_WINDOWS);
  for (int k = 0; k < n; k++)
    {
      Workload *w = &ws[k];
      BenchParams warm = w->params;

      fprintf (stderr, "%s: %" G_GUINT64_FORMAT " items, window %u, %d repetitions\n", w->name,
               w->params.n, w->params.window, reps);
      /* The serial run goes first: it sets the expected work sums. */
      for (int i = N_IMPLS - 1; i >= 0; i--)
        if (w->impls[i] && impl_available (i))
          order[k][n_order[k]++] = i;

      /* Warm-up: threads, allocator arenas, lazy initialisation. */
      warm.n = MIN (w->params.n, 20000);
      for (int i = 0; i < n_order[k]; i++)
        {
          BenchResult r;
          Expected e = { warm.n };

          impl_run (order[k][i], &warm, &r);
          check_tally (w->name, order[k][i], &r.tally, &e);
        }
    }

  for (int rep = 0; rep < reps; rep++)
    for (int j = 0; j < n; j++)
      {
        int k = (j + rep) % n;

        for (int i = 0; i < n_order[k]; i++)
          measure (&ws[k], order[k][(i + rep) % n_order[k]]);
      }
  for (int k = 0; k < n; k++)
    ws[k].ran = TRUE;
}

static void
run_workload (Workload *w, int reps)
{
  run_workloads (w, 1, reps);
}

/* ---- slow consumer: one child process per run -------------------------- */

/* In the child: runs one case and prints what it saw. */
static int
child_main (void)
{
  BenchParams p = { 0 };
  BenchResult r;

  p.n = opt_child_n;
  p.work_iters = opt_child_work_iters;
  p.consumer_iters = opt_child_consumer_iters;
  p.payload = 1;
  p.track_live = 1;
  p.window = opt_window;
  p.threads = opt_threads;
  impl_run (impl_from_name (opt_child), &p, &r);
  /* Our own peak: exec gave this process a memory map of its own, whose
   * high-water mark (VmHWM) the parent's pages never counted in. */
  printf ("CHILD %" G_GUINT64_FORMAT " %d %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
          " %" G_GUINT64_FORMAT " %.9f %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %.3f\n",
          r.tally.count, r.tally.order_ok, r.tally.sum_lo, r.tally.sum_hi, r.tally.sink, r.seconds,
          r.max_live, r.max_n_items, rss_peak_mb ());
  return 0;
}

/* Runs one slow-consumer case in a fresh process (fork + exec, so that
 * nothing of this process counts); returns the CPU time other processes
 * used meanwhile. */
static double
run_child (Workload *w,
           Impl impl,
           guint64 n,
           Expected *e,
           BenchResult *result,
           struct rusage *out_ru,
           double *out_rss_mb)
{
  char *argv[16];
  int argc = 0;
  int fds[2];
  pid_t pid;
  int status;
  struct rusage ru;
  GString *out = g_string_new (NULL);
  char buf[512];
  ssize_t len;
  BenchResult r = { 0 };
  int order_ok = 0;
  double system_before, wall_before, own, rss_mb = NAN;

  argv[argc++] = "/proc/self/exe";
  argv[argc++] = g_strdup_printf ("--child=%s", impl_names[impl]);
  argv[argc++] = g_strdup_printf ("--child-n=%" G_GUINT64_FORMAT, n);
  argv[argc++] = g_strdup_printf ("--child-work-iters=%u", w->params.work_iters);
  argv[argc++] = g_strdup_printf ("--child-consumer-iters=%u", w->params.consumer_iters);
  argv[argc++] = g_strdup_printf ("--window=%u", w->params.window);
  argv[argc++] = g_strdup_printf ("--threads=%u", w->params.threads);
  if (opt_no_acquire)
    argv[argc++] = g_strdup ("--no-acquire");
  argv[argc] = NULL;

  if (pipe (fds) != 0)
    fail ("pipe: %s", g_strerror (errno));
  fflush (stdout);
  fflush (stderr);
  system_before = system_busy_seconds ();
  wall_before = bench_now ();
  pid = fork ();
  if (pid < 0)
    fail ("fork: %s", g_strerror (errno));
  if (pid == 0)
    {
      dup2 (fds[1], STDOUT_FILENO);
      close (fds[0]);
      close (fds[1]);
      execv (argv[0], argv);
      _exit (127);
    }
  close (fds[1]);
  while ((len = read (fds[0], buf, sizeof buf)) > 0 || (len < 0 && errno == EINTR))
    if (len > 0)
      g_string_append_len (out, buf, len);
  close (fds[0]);
  while (wait4 (pid, &status, 0, &ru) < 0)
    if (errno != EINTR)
      fail ("wait4: %s", g_strerror (errno));
  if (!WIFEXITED (status) || WEXITSTATUS (status) != 0)
    fail ("slow/%s: the child process failed (status %d)", impl_names[impl], status);
  if (sscanf (out->str,
              "CHILD %" G_GUINT64_FORMAT " %d %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
              " %" G_GUINT64_FORMAT " %lf %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT " %lf",
              &r.tally.count, &order_ok, &r.tally.sum_lo, &r.tally.sum_hi, &r.tally.sink,
              &r.seconds, &r.max_live, &r.max_n_items, &rss_mb) != 9)
    fail ("slow/%s: unexpected output from the child: %s", impl_names[impl], out->str);
  r.tally.order_ok = order_ok;
  check_tally (w->name, impl, &r.tally, e);
  own = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
        ru.ru_stime.tv_usec * 1e-6;

  for (int i = 1; i < argc; i++)
    g_free (argv[i]);
  g_string_free (out, TRUE);
  *result = r;
  *out_ru = ru;
  *out_rss_mb = rss_mb;
  /* The other load over the child's whole life, per second of it. */
  return (system_busy_seconds () - system_before - own) * r.seconds / (bench_now () - wall_before);
}

static void
measure_child (Workload *w, Impl impl, guint64 n, Samples *s, Expected *e)
{
  BenchResult r;
  struct rusage ru;
  double other, rss_mb;

  for (int attempt = 1;; attempt++)
    {
      other = run_child (w, impl, n, e, &r, &ru, &rss_mb);
      if (!is_disturbed (other, r.seconds))
        break;
      if (attempt >= opt_attempts)
        {
          s->n_disturbed++;
          break;
        }
      s->n_retried++;
      fprintf (stderr,
               "  slow/%-6" G_GUINT64_FORMAT "k %-7s: other load on the machine "
               "(%.2f cores), once more\n",
               n / 1000, impl_names[impl], other_cores (other, r.seconds));
      g_usleep (G_USEC_PER_SEC);
    }

  s->other[s->n] = other_cores (other, r.seconds);
  s->seconds[s->n] = r.seconds;
  s->cpu[s->n] = (ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
                  ru.ru_stime.tv_usec * 1e-6) /
                 r.seconds;
  s->csw[s->n] = (ru.ru_nvcsw + ru.ru_nivcsw) * 1000.0 / n;
  s->rss[s->n] = rss_mb;
  s->max_live = MAX (s->max_live, r.max_live);
  s->max_n_items = MAX (s->max_n_items, r.max_n_items);
  s->n++;
  fprintf (stderr,
           "  slow/%-6" G_GUINT64_FORMAT "k %-7s rep %d: %8.3f s  %10.0f items/s  "
           "max live %" G_GUINT64_FORMAT "  peak RSS %.1f MiB\n",
           n / 1000, impl_names[impl], s->n, r.seconds, n / r.seconds, r.max_live, rss_mb);
}

/* The slow consumer at N/4 (the small workload @small) and N (@w). */
static void
run_slow (Workload *small, Workload *w, int reps)
{
  Impl order[N_IMPLS];
  int n_order = 0;

  fprintf (stderr, "%s: %" G_GUINT64_FORMAT " and %" G_GUINT64_FORMAT " items, %d repetitions\n",
           w->name, small->params.n, w->params.n, reps);
  for (int i = 0; i < N_IMPLS; i++)
    if (w->impls[i] && impl_available (i))
      order[n_order++] = i;

  for (int rep = 0; rep < reps; rep++)
    for (int i = 0; i < n_order; i++)
      {
        Impl impl = order[(i + rep) % n_order];

        measure_child (small, impl, small->params.n, &small->samples[impl], &small->expected);
        measure_child (w, impl, w->params.n, &w->samples[impl], &w->expected);
      }
  small->ran = w->ran = TRUE;
}

/* ---- output ------------------------------------------------------------ */

static void
format_rate (char *buf, gsize size, double items_per_s)
{
  if (items_per_s >= 1e6)
    g_snprintf (buf, size, "%.3f M", items_per_s / 1e6);
  else
    g_snprintf (buf, size, "%.1f k", items_per_s / 1e3);
}

static void
print_table (Workload *workloads, int n_workloads)
{
  int n_retried = 0, n_disturbed = 0;

  printf ("\n%-22s %-7s %11s %23s %9s %8s %5s %9s %9s %6s\n", "workload", "impl", "items/s",
          "[min .. max] items/s", "ns/item", "speedup", "cores", "csw/kitem", "peak RSS", "other");
  for (int k = 0; k < n_workloads; k++)
    {
      Workload *w = &workloads[k];

      if (!w->ran)
        continue;
      for (int i = 0; i < N_IMPLS; i++)
        {
          Samples *s = &w->samples[i];
          double t, rate, lo, hi;
          char rate_s[32], lo_s[32], hi_s[32], range[64], speedup[32];

          if (!w->impls[i])
            continue;
          if (!impl_available (i))
            {
              printf ("%-22s %-7s %11s   (oneTBB not found: skipped)\n", w->title, impl_names[i],
                      "-");
              continue;
            }
          if (s->n == 0)
            continue;
          t = bench_median (s->seconds, s->n);
          rate = w->params.n / t;
          hi = w->params.n / bench_min_of (s->seconds, s->n);
          lo = w->params.n / bench_max_of (s->seconds, s->n);
          format_rate (rate_s, sizeof rate_s, rate);
          format_rate (lo_s, sizeof lo_s, lo);
          format_rate (hi_s, sizeof hi_s, hi);
          g_snprintf (range, sizeof range, "[%s .. %s]", lo_s, hi_s);
          if (w->samples[IMPL_SERIAL].n > 0 && i != IMPL_SERIAL)
            {
              double med, rlo, rhi;

              paired_ratio (w, i, IMPL_SERIAL, &med, &rlo, &rhi);
              g_snprintf (speedup, sizeof speedup, "%.3f", med);
            }
          else
            g_snprintf (speedup, sizeof speedup, "%s", i == IMPL_SERIAL ? "1" : "-");
          printf ("%-22s %-7s %11s %23s %9.1f %8s %5.2f %9.2f %5.1f MiB %6.2f\n", w->title,
                  impl_names[i], rate_s, range, t * 1e9 / w->params.n, speedup,
                  bench_median (s->cpu, s->n), bench_median (s->csw, s->n),
                  bench_median (s->rss, s->n), bench_max_of (s->other, s->n));
          n_retried += s->n_retried;
          n_disturbed += s->n_disturbed;
        }
    }
  printf ("\nother: the most CPU (cores) that other processes or the hypervisor took during a "
          "kept run;\na run that saw more than 0.15 is repeated, up to %d times: %d repeated, "
          "%d kept disturbed.\n",
          opt_attempts, n_retried, n_disturbed);
}

/* Whether @w ran @impl (NULL: no). */
static gboolean
has_samples (const Workload *w, Impl impl)
{
  return w != NULL && w->ran && impl_available (impl) && w->samples[impl].n > 0;
}

static void
print_ratio2 (const char *label, const Workload *wa, Impl a, const Workload *wb, Impl b)
{
  double med, lo, hi;

  if (!has_samples (wa, a) || !has_samples (wb, b))
    return;
  paired_ratio2 (wa, a, wb, b, &med, &lo, &hi);
  printf ("  %-30s %7.3f   [%.3f .. %.3f]\n", label, med, lo, hi);
}

static void
print_ratio (const char *label, Workload *w, Impl a, Impl b)
{
  print_ratio2 (label, w, a, w, b);
}

/* The handoff run (one per window) in which @impl was fastest (median
 * time), or NULL. */
static const Workload *
best_window (const Workload *hw, int n, Impl impl)
{
  const Workload *best = NULL;

  for (int k = 0; k < n; k++)
    if (has_samples (&hw[k], impl) &&
        (best == NULL || bench_median (hw[k].samples[impl].seconds, hw[k].samples[impl].n) <
                             bench_median (best->samples[impl].seconds, best->samples[impl].n)))
      best = &hw[k];
  return best;
}

static gboolean
wanted (const char *name)
{
  g_auto (GStrv) names = NULL;

  if (opt_only == NULL)
    return TRUE;
  names = g_strsplit (opt_only, ",", -1);
  return g_strv_contains ((const char *const *) names, name);
}

int
main (int argc, char *argv[])
{
  g_autoptr (GOptionContext) context = NULL;
  g_autoptr (GError) error = NULL;
  /* The handoff at each of its windows, then the other workloads. */
  Workload w[MAX_HANDOFF_WINDOWS + 5];
  enum
  {
    W_HANDOFF,
    W_TINY = MAX_HANDOFF_WINDOWS,
    W_SMALL,
    W_LARGE,
    W_SLOW_QUARTER,
    W_SLOW,
    N_WORKLOADS
  };
  int reps;
  double q;
  double t_start = bench_now ();
  guint handoff_windows[MAX_HANDOFF_WINDOWS];
  int n_hw = 0;
  Workload *hw = &w[W_HANDOFF];
  char *handoff_titles[MAX_HANDOFF_WINDOWS] = { NULL };
  const Workload *best_hw[N_IMPLS];
  /* What the handoff's same-window ratios compare sluice with, in order. */
  static const Impl handoff_baselines[] = { IMPL_TBB, IMPL_GLIB };

  context = g_option_context_new ("- Sluice benchmarks against GLib, oneTBB and serial baselines");
  g_option_context_add_main_entries (context, option_entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      fprintf (stderr, "%s\n", error->message);
      return 2;
    }
  if (opt_window < 1 || opt_threads < 1 || opt_scale <= 0 || opt_handoff_batch < 0 ||
      opt_handoff_batch > MAX_HANDOFF_BATCH)
    {
      fprintf (stderr, "window, threads and scale must be positive, handoff-batch 1..%d\n",
               MAX_HANDOFF_BATCH);
      return 2;
    }

  {
    g_auto (GStrv) list =
        g_strsplit (opt_handoff_windows ? opt_handoff_windows : "1024,4096,16384,65536", ",", -1);

    for (int k = 0; list[k] != NULL; k++)
      {
        guint64 value;

        if (n_hw == MAX_HANDOFF_WINDOWS ||
            !g_ascii_string_to_unsigned (list[k], 10, 1, 1 << 20, &value, NULL))
          {
            fprintf (stderr, "handoff-windows: 1 to %d windows, each 1..%d\n", MAX_HANDOFF_WINDOWS,
                     1 << 20);
            return 2;
          }
        handoff_windows[n_hw++] = (guint) value;
      }
    if (n_hw == 0)
      {
        fprintf (stderr, "handoff-windows: at least one window\n");
        return 2;
      }
  }

  if (opt_child != NULL)
    return child_main ();

  reps = opt_reps > 0 ? MIN (opt_reps, MAX_REPS) : (opt_quick ? 2 : 5);
  q = (opt_quick ? 0.1 : 1.0) * opt_scale;
  busy_iters_per_us = bench_calibrate ();

  memset (w, 0, sizeof w);
  for (int k = 0; k < N_WORKLOADS; k++)
    {
      w[k].params.window = opt_window;
      w[k].params.threads = opt_threads;
      for (int i = 0; i < N_IMPLS; i++)
        w[k].impls[i] = impl_wanted (i);
    }

  /* The handoff: every implementation at every window. The serial run has
   * no window: it runs once, with the first. The harness has none either,
   * but its batches follow the window as the others' do. */
  for (int k = 0; k < n_hw; k++)
    {
      handoff_titles[k] = g_strdup_printf ("1 handoff, w %u", handoff_windows[k]);
      hw[k].name = "handoff";
      hw[k].title = handoff_titles[k];
      hw[k].params.n = (guint64) (10000000 * q);
      hw[k].params.window = handoff_windows[k];
      if (k > 0)
        hw[k].impls[IMPL_SERIAL] = FALSE;
    }
  for (int k = W_TINY; k < N_WORKLOADS; k++)
    w[k].impls[IMPL_HARNESS] = FALSE;
  /* Unsynchronised threads: the small work's ceiling (issue 19). */
  for (int k = 0; k < N_WORKLOADS; k++)
    if (k != W_SMALL)
      w[k].impls[IMPL_UNSYNC] = FALSE;

  w[W_TINY].name = "tiny";
  w[W_TINY].title = "2 tiny work (0.5 us)";
  w[W_TINY].params.n = (guint64) (4000000 * q);
  w[W_TINY].params.work_iters = iters_for_us (0.5);

  w[W_SMALL].name = "small";
  w[W_SMALL].title = "2 small work (2 us)";
  w[W_SMALL].params.n = (guint64) (2000000 * q);
  w[W_SMALL].params.work_iters = iters_for_us (2);

  w[W_LARGE].name = "large";
  w[W_LARGE].title = "3 large work (50 us)";
  w[W_LARGE].params.n = (guint64) (100000 * q);
  w[W_LARGE].params.work_iters = iters_for_us (50);

  /* Producers spend 1 us per item; the consumer 3 us, three times more. */
  for (int k = W_SLOW_QUARTER; k <= W_SLOW; k++)
    {
      w[k].name = "slow";
      w[k].params.work_iters = iters_for_us (1);
      w[k].params.consumer_iters = iters_for_us (3);
      w[k].params.payload = 1;
      w[k].params.track_live = 1;
      w[k].impls[IMPL_SERIAL] = FALSE;
    }
  w[W_SLOW].title = "4 slow consumer (N)";
  w[W_SLOW].params.n = (guint64) (2000000 * q);
  w[W_SLOW_QUARTER].title = "4 slow consumer (N/4)";
  w[W_SLOW_QUARTER].params.n = w[W_SLOW].params.n / 4;
  for (int k = 0; k < N_WORKLOADS; k++)
    {
      w[k].params.n = MAX (w[k].params.n, 16);
      w[k].expected.n = w[k].params.n;
    }

  printf ("Sluice benchmarks: %s mode, %d repetitions (slow consumer: %d), window %d "
          "(handoff:",
          opt_quick ? "quick" : "full", reps, MIN (reps, 3), opt_window);
  for (int k = 0; k < n_hw; k++)
    printf (" %u", handoff_windows[k]);
  printf ("), %d worker threads, %u processors\n", opt_threads, g_get_num_processors ());
  printf ("items: handoff %" G_GUINT64_FORMAT " (completed out of order by %d threads, a batch "
          "of slots at a time:",
          hw[0].params.n, opt_threads);
  for (int k = 0; k < n_hw; k++)
    printf ("%s %u at %u", k == 0 ? "" : ",", handoff_batch_for (handoff_windows[k]),
            handoff_windows[k]);
  printf ("), tiny %" G_GUINT64_FORMAT ", small %" G_GUINT64_FORMAT ", large %" G_GUINT64_FORMAT
          ", slow consumer %" G_GUINT64_FORMAT " and %" G_GUINT64_FORMAT "\n",
          w[W_TINY].params.n, w[W_SMALL].params.n, w[W_LARGE].params.n, w[W_SLOW_QUARTER].params.n,
          w[W_SLOW].params.n);
  printf ("busy work: %u iterations/us (calibrated here); oneTBB: %s\n", busy_iters_per_us,
#ifdef HAVE_TBB
          "yes"
#else
          "not found, its column is skipped"
#endif
  );
  fflush (stdout);

  if (wanted ("handoff"))
    run_workloads (hw, n_hw, reps);
  if (wanted ("tiny"))
    run_workload (&w[W_TINY], reps);
  if (wanted ("small"))
    run_workload (&w[W_SMALL], reps);
  if (wanted ("large"))
    run_workload (&w[W_LARGE], reps);
  if (wanted ("slow"))
    run_slow (&w[W_SLOW_QUARTER], &w[W_SLOW], MIN (reps, 3));

  print_table (w, N_WORKLOADS);
  printf ("\nitems/s, ns/item, cores (CPU time / wall time), csw/kitem (context switches of the "
          "whole\nprocess per 1000 items) and peak RSS: medians over the repetitions; speedup: "
          "serial time /\ntime, the median of the ratios within each repetition.\n");
  for (int i = 0; i < N_IMPLS; i++)
    best_hw[i] = best_window (hw, n_hw, i);
  printf ("\nratios within one repetition (median [min .. max]):\n");
  for (int k = 0; k < n_hw; k++)
    for (guint b = 0; b < G_N_ELEMENTS (handoff_baselines); b++)
      {
        char label[64];

        g_snprintf (label, sizeof label, "handoff w %u sluice/%s", handoff_windows[k],
                    impl_names[handoff_baselines[b]]);
        print_ratio (label, &hw[k], IMPL_SLUICE, handoff_baselines[b]);
      }
  if (best_hw[IMPL_SLUICE] != NULL)
    {
      printf ("  handoff, each at its best window (");
      for (int i = IMPL_SLUICE; i <= IMPL_TBB; i++)
        if (best_hw[i] != NULL)
          printf ("%s%s %u", i == IMPL_SLUICE ? "" : ", ", impl_names[i],
                  best_hw[i]->params.window);
      printf ("):\n");
    }
  print_ratio2 ("handoff sluice/tbb", best_hw[IMPL_SLUICE], IMPL_SLUICE, best_hw[IMPL_TBB],
                IMPL_TBB);
  print_ratio2 ("handoff sluice/glib", best_hw[IMPL_SLUICE], IMPL_SLUICE, best_hw[IMPL_GLIB],
                IMPL_GLIB);
  /* The harness at the same window: the same batches. */
  print_ratio2 ("handoff sluice/harness", best_hw[IMPL_SLUICE], IMPL_SLUICE, best_hw[IMPL_SLUICE],
                IMPL_HARNESS);
  print_ratio2 ("handoff glib/harness", best_hw[IMPL_GLIB], IMPL_GLIB, best_hw[IMPL_GLIB],
                IMPL_HARNESS);
  print_ratio ("tiny sluice/tbb", &w[W_TINY], IMPL_SLUICE, IMPL_TBB);
  print_ratio ("tiny sluice/glib", &w[W_TINY], IMPL_SLUICE, IMPL_GLIB);
  print_ratio ("small sluice/tbb", &w[W_SMALL], IMPL_SLUICE, IMPL_TBB);
  print_ratio ("small sluice/glib", &w[W_SMALL], IMPL_SLUICE, IMPL_GLIB);
  print_ratio ("small sluice/unsync", &w[W_SMALL], IMPL_SLUICE, IMPL_UNSYNC);
  print_ratio ("large sluice/serial (speedup)", &w[W_LARGE], IMPL_SLUICE, IMPL_SERIAL);
  print_ratio ("large tbb/serial (speedup)", &w[W_LARGE], IMPL_TBB, IMPL_SERIAL);
  print_ratio ("large glib/serial (speedup)", &w[W_LARGE], IMPL_GLIB, IMPL_SERIAL);
  print_ratio ("slow consumer sluice/tbb", &w[W_SLOW], IMPL_SLUICE, IMPL_TBB);

  if (w[W_SLOW].ran)
    {
      printf ("\nslow consumer, most live items (window %d): produced minus consumed as the "
              "bench counts\nthem (an item counts as consumed once the consumer has "
              "registered it, so the one item\nbeing handed over may add 1), and the "
              "library's own count (sluice_consumerator_get_n_items):\n",
              opt_window);
      for (int i = 0; i < N_IMPLS; i++)
        {
          Samples *a = &w[W_SLOW_QUARTER].samples[i], *b = &w[W_SLOW].samples[i];

          if (a->n == 0 && b->n == 0)
            continue;
          printf ("  %-7s bench %" G_GUINT64_FORMAT, impl_names[i], MAX (a->max_live, b->max_live));
          if (i == IMPL_SLUICE)
            printf ("   library %" G_GUINT64_FORMAT, MAX (a->max_n_items, b->max_n_items));
          printf ("   peak RSS %.1f MiB at N/4, %.1f MiB at N\n", bench_median (a->rss, a->n),
                  bench_median (b->rss, b->n));
        }
    }
  printf ("\ntotal time %.0f s\n", bench_now () - t_start);

  /* The goals of the issue, then the machine-readable lines, last. */
  {
    double med, lo, hi;
    Workload *s = &w[W_SMALL], *l = &w[W_LARGE], *t = &w[W_TINY];
    const Workload *hs = best_hw[IMPL_SLUICE];
    GString *results = g_string_new (NULL);

    printf ("\ngoals (2 cores, same-run ratios):\n");
#define RATIO2_GOAL(key, wa, a, wb, b, goal)                                                       \
  if (has_samples (wa, a) && has_samples (wb, b))                                                  \
    {                                                                                              \
      paired_ratio2 (wa, a, wb, b, &med, &lo, &hi);                                                \
      g_string_append_printf (results, "RESULT " key "=%.3f\n", med);                              \
      if ((goal) > 0)                                                                              \
        printf ("  %-26s %7.3f  (goal >= %.2f)  %s\n", key, med, (double) (goal),                  \
                med >= (goal) ? "met" : "NOT MET");                                                \
    }
#define RATIO_GOAL(key, wl, a, b, goal) RATIO2_GOAL (key, wl, a, wl, b, goal)

#ifndef HAVE_TBB
    g_string_append (results, "RESULT tbb_available=0\n");
    printf ("  (oneTBB not found: the goals against it are not measured)\n");
#endif
    /* The handoff: each implementation at the window it did best with. */
    RATIO2_GOAL ("handoff_vs_tbb", hs, IMPL_SLUICE, best_hw[IMPL_TBB], IMPL_TBB, 2.0);
    RATIO2_GOAL ("handoff_vs_glib", hs, IMPL_SLUICE, best_hw[IMPL_GLIB], IMPL_GLIB, 3.0);
    RATIO2_GOAL ("handoff_vs_harness", hs, IMPL_SLUICE, hs, IMPL_HARNESS, 0);
    for (int k = 0; k < n_hw; k++)
      for (guint b = 0; b < G_N_ELEMENTS (handoff_baselines); b++)
        if (has_samples (&hw[k], IMPL_SLUICE) && has_samples (&hw[k], handoff_baselines[b]))
          {
            paired_ratio (&hw[k], IMPL_SLUICE, handoff_baselines[b], &med, &lo, &hi);
            g_string_append_printf (results, "RESULT handoff_vs_%s_w%u=%.3f\n",
                                    impl_names[handoff_baselines[b]], handoff_windows[k], med);
          }
    for (int i = IMPL_SLUICE; i <= IMPL_TBB; i++)
      if (best_hw[i] != NULL)
        g_string_append_printf (results, "RESULT handoff_best_window_%s=%u\n", impl_names[i],
                                best_hw[i]->params.window);
    /* Equal windows, the headline: the handoff at 1024 (issue 19). */
    for (int k = 0; k < n_hw; k++)
      if (handoff_windows[k] == 1024)
        {
          RATIO_GOAL ("handoff_w1024_vs_tbb", &hw[k], IMPL_SLUICE, IMPL_TBB, 1.5);
          RATIO_GOAL ("handoff_w1024_vs_glib", &hw[k], IMPL_SLUICE, IMPL_GLIB, 1.5);
        }
    RATIO_GOAL ("tiny_vs_tbb", t, IMPL_SLUICE, IMPL_TBB, 1.0);
    RATIO_GOAL ("tiny_vs_glib", t, IMPL_SLUICE, IMPL_GLIB, 0);
    RATIO_GOAL ("small_vs_tbb", s, IMPL_SLUICE, IMPL_TBB, 1.10);
    RATIO_GOAL ("small_vs_glib", s, IMPL_SLUICE, IMPL_GLIB, 0);
    RATIO_GOAL ("small_vs_unsync", s, IMPL_SLUICE, IMPL_UNSYNC, 0.97);
    RATIO_GOAL ("large_speedup", l, IMPL_SLUICE, IMPL_SERIAL, 1.95);
    RATIO_GOAL ("large_speedup_tbb", l, IMPL_TBB, IMPL_SERIAL, 0);
    RATIO_GOAL ("large_speedup_glib", l, IMPL_GLIB, IMPL_SERIAL, 0);
#undef RATIO_GOAL
#undef RATIO2_GOAL
    if (hs != NULL)
      g_string_append_printf (results, "RESULT handoff_items_per_s=%.0f\n",
                              hs->params.n / bench_median (hs->samples[IMPL_SLUICE].seconds,
                                                           hs->samples[IMPL_SLUICE].n));
    /* The load-independent side of small_vs_unsync: CPU per item. */
    if (has_samples (s, IMPL_SLUICE) && has_samples (s, IMPL_UNSYNC))
      {
        double sluice_us, unsync_us;

        paired_cpu_ratio (s, IMPL_SLUICE, IMPL_UNSYNC, &sluice_us, &unsync_us, &med);
        g_string_append_printf (results,
                                "RESULT small_cpu_us_sluice=%.3f\nRESULT small_cpu_us_unsync=%.3f\n"
                                "RESULT small_cpu_vs_unsync=%.3f\n",
                                sluice_us, unsync_us, med);
      }
    if (s->samples[IMPL_SLUICE].n > 0)
      g_string_append_printf (
          results, "RESULT small_items_per_s=%.0f\n",
          s->params.n / bench_median (s->samples[IMPL_SLUICE].seconds, s->samples[IMPL_SLUICE].n));
    if (w[W_SLOW].samples[IMPL_SLUICE].n > 0)
      {
        Samples *big = &w[W_SLOW].samples[IMPL_SLUICE];
        Samples *quarter = &w[W_SLOW_QUARTER].samples[IMPL_SLUICE];
        double rss = bench_median (big->rss, big->n);
        double growth = rss / bench_median (quarter->rss, quarter->n);
        guint64 max_live = MAX (big->max_live, quarter->max_live);
        guint64 max_n_items = MAX (big->max_n_items, quarter->max_n_items);

        printf ("  %-26s %7" G_GUINT64_FORMAT "  (goal <= window %d)  %s\n",
                "slow_consumer_max_n_items", max_n_items, opt_window,
                max_n_items <= (guint64) opt_window ? "met" : "NOT MET");
        printf ("  %-26s %7" G_GUINT64_FORMAT "  (goal <= window + 1)  %s\n",
                "slow_consumer_max_live", max_live,
                max_live <= (guint64) opt_window + 1 ? "met" : "NOT MET");
        printf ("  %-26s %7.3f  (goal: flat, <= 1.10)  %s\n", "slow_consumer_rss_growth", growth,
                growth <= 1.10 ? "met" : "NOT MET");
        g_string_append_printf (results, "RESULT slow_consumer_window=%d\n", opt_window);
        g_string_append_printf (results, "RESULT slow_consumer_max_live=%" G_GUINT64_FORMAT "\n",
                                max_live);
        g_string_append_printf (results, "RESULT slow_consumer_max_n_items=%" G_GUINT64_FORMAT "\n",
                                max_n_items);
        g_string_append_printf (results, "RESULT slow_consumer_peak_rss_mb=%.1f\n", rss);
        g_string_append_printf (results, "RESULT slow_consumer_rss_growth=%.3f\n", growth);
        g_string_append_printf (results, "RESULT slow_consumer_items_per_s=%.0f\n",
                                w[W_SLOW].params.n / bench_median (big->seconds, big->n));
      }
    if (wanted ("latency"))
      bench_latency (opt_quick, reps, busy_iters_per_us, opt_latency_start_apart,
                     opt_latency_keep_apart, opt_latency_owner_with_consumer, results);
    printf ("\n%s", results->str);
    g_string_free (results, TRUE);
  }
  for (int k = 0; k < n_hw; k++)
    g_free (handoff_titles[k]);
  return 0;
}
