/* latency.c: delivery latency with few items in flight
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The throughput workloads keep a window of items in flight; here only one
 * or four are, the case of an interactive program. What is measured is the
 * time from the moment an item becomes *deliverable* (it and every item
 * before it are complete) to the moment the consumer has it: what ordering
 * and waking cost, not the work.
 *
 * k completer threads (k = the items in flight) each take the items given
 * to them in turn, busy-work a random 1-10 us, note the time and complete
 * the item. The owner keeps k items in flight. Two implementations, run
 * alternately in this process:
 *
 * - sluice: an ordered item producer with a window of k at its default
 *   settings (public API only), the owner producing while it is ready;
 * - cond: the plain handoff, a ring of k places under one GMutex, the
 *   consumer waiting on a GCond that every completion signals, the owner
 *   waiting on another for a free place.
 */

#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getcpu () */
#endif

#include "latency.h"

#include <sluice/sluice.h>

#include <stdio.h>
#include <time.h>
#ifdef __linux__
#include <pthread.h>
#include <sched.h>
#endif

#include "bench-common.h"

#define LATENCY_WORK_MIN_US 1
#define LATENCY_WORK_MAX_US 10

typedef struct
{
  guint64 seq;
  SluiceSlot *slot;
} Job;

typedef struct _Run Run;

struct _Run
{
  guint64 n;
  guint k;
  guint32 iters_per_us;
  Job *jobs;
  gint64 *t_done; /* ns, written by the completers */
  gint64 *t_recv; /* ns, written by the consumer */
  /* The processors that completed and received each item: a consumer
   * woken on the completer's processor runs at once, one woken on the
   * other waits for that processor (an idle virtual CPU to wake, or another
   * thread to preempt), which is what makes p50 with 1 in flight bimodal
   * (bench/README.md, session 15). */
  gint16 *cpu_done;
  gint16 *cpu_recv;
  /* --latency-start-apart: the first START_APART_ITEMS with the consumer
   * on processor 1 and the owner and the completers on processor 0. */
  gboolean start_apart;
  GAsyncQueue **queues;
  GThread **completers;
  guint64 produced;    /* the owner's */
  guint64 spins;       /* sluice: waits of the consumer a spin ended */
  guint64 sleeps;      /* sluice: waits it slept through */
  guint64 owner_spins; /* sluice: the owner's waits for room a spin ended */
  guint64 early;       /* sluice: items a completer took for the sleeping consumer */
  gboolean order_ok;
  void (*complete) (Run *run, Job *job);

  /* cond only */
  GMutex lock;
  GCond items_cond;
  GCond space_cond;
  guint64 *ring; /* seq + 1 of the item in each place, 0 when empty */
  guint64 consumed;
};

static Job stop_job;

/* Items of a run started apart (--latency-start-apart). */
#define START_APART_ITEMS 200
/* The items of each run kept apart: START_APART_ITEMS, or every one with
 * --latency-keep-apart (the slow layout throughout: what the path across
 * processors costs). */
static guint64 start_apart_items = START_APART_ITEMS;
/* --latency-owner-with-consumer: apart, the owner on the consumer's
 * processor (1) instead of the completers' (sluice only). */
static gboolean owner_with_consumer;

#ifdef __linux__
static cpu_set_t start_apart_mask; /* the process's processors */
#endif

/* With @run->start_apart: binds the calling thread to processor @cpu, or
 * gives it back the process's processors (@cpu -1). The kernel keeps a
 * woken thread on its previous processor while that one is idle, so a
 * layout taken at the start tends to last: this starts every run in the
 * layout that makes p50 with 1 in flight slow (the consumer alone on the
 * processor the completer does not use). */
static void
start_apart_bind (Run *run, int cpu)
{
#ifdef __linux__
  cpu_set_t set;

  if (!run->start_apart)
    return;
  if (cpu < 0)
    set = start_apart_mask;
  else
    {
      CPU_ZERO (&set);
      CPU_SET (cpu, &set);
    }
  pthread_setaffinity_np (pthread_self (), sizeof set, &set);
#endif
}

/* The processor the calling thread runs on, or -1 where that is unknown. */
static inline gint16
current_cpu (void)
{
#ifdef __linux__
  return (gint16) sched_getcpu ();
#else
  return -1;
#endif
}

static inline gint64
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (gint64) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct
{
  Run *run;
  GAsyncQueue *queue;
} Completer;

static gpointer
completer_main (gpointer data)
{
  Completer *completer = data;
  Run *run = completer->run;
  guint32 span = (LATENCY_WORK_MAX_US - LATENCY_WORK_MIN_US) * run->iters_per_us;
  Job *job;

  gboolean bound = run->start_apart;

  start_apart_bind (run, 0);
  while ((job = g_async_queue_pop (completer->queue)) != &stop_job)
    {
      guint32 iters = LATENCY_WORK_MIN_US * run->iters_per_us +
                      (guint32) ((job->seq * 0x9E3779B97F4A7C15ull >> 40) % (span + 1));
      volatile guint32 result = bench_busy (job->seq, iters);

      (void) result;
      run->t_done[job->seq] = now_ns ();
      run->cpu_done[job->seq] = current_cpu ();
      run->complete (run, job);
      if (bound && job->seq + 1 >= start_apart_items)
        {
          start_apart_bind (run, -1);
          bound = FALSE;
        }
    }
  g_free (completer);
  return NULL;
}

static void
start_completers (Run *run)
{
  run->queues = g_new (GAsyncQueue *, run->k);
  run->completers = g_new (GThread *, run->k);
  for (guint i = 0; i < run->k; i++)
    {
      Completer *completer = g_new (Completer, 1);

      run->queues[i] = g_async_queue_new ();
      completer->run = run;
      completer->queue = run->queues[i];
      run->completers[i] = g_thread_new ("completer", completer_main, completer);
    }
}

static void
stop_completers (Run *run)
{
  for (guint i = 0; i < run->k; i++)
    g_async_queue_push (run->queues[i], &stop_job);
  for (guint i = 0; i < run->k; i++)
    g_thread_join (run->completers[i]);
  for (guint i = 0; i < run->k; i++)
    g_async_queue_unref (run->queues[i]);
  g_free (run->queues);
  g_free (run->completers);
}

static inline void
hand_out (Run *run, Job *job)
{
  g_async_queue_push (run->queues[job->seq % run->k], job);
}

static inline void
received (Run *run, guint64 seq, guint64 expected)
{
  run->t_recv[seq] = now_ns ();
  run->cpu_recv[seq] = current_cpu ();
  if (seq != expected)
    run->order_ok = FALSE;
  if (seq + 1 == start_apart_items)
    start_apart_bind (run, -1);
}

/* ---- sluice ---- */

static void
sluice_complete (Run *run, Job *job)
{
  sluice_slot_complete (job->slot, GSIZE_TO_POINTER (job->seq + 1));
}

static void
sluice_item (SluiceSlot *slot, gpointer data)
{
  Run *run = data;
  Job *job = &run->jobs[run->produced];

  job->seq = run->produced++;
  job->slot = slot;
  hand_out (run, job);
}

static gpointer
sluice_consume (SluiceConsumerator *consumerator, gpointer data, GError **error)
{
  Run *run = data;
  gpointer item;
  guint64 expected = 0;

  start_apart_bind (run, 1);
  while (sluice_consumerator_next (consumerator, &item, error))
    received (run, GPOINTER_TO_SIZE (item) - 1, expected++);
  return NULL;
}

static void
on_stopped (GObject *source, GAsyncResult *result, gpointer data)
{
  gboolean *stopped = data;

  sluice_ordered_item_producer_stop_finish (SLUICE_ORDERED_ITEM_PRODUCER (source), result, NULL);
  *stopped = TRUE;
}

static void
sluice_latency_run (Run *run)
{
  SluiceOrderedItemProducer *producer = sluice_ordered_item_producer_new (NULL, run->k, NULL);
  gboolean stopped = FALSE;

  run->complete = sluice_complete;
  start_completers (run);
  sluice_ordered_item_producer_start (producer, sluice_consume, run, NULL, NULL);
  start_apart_bind (run, owner_with_consumer ? 1 : 0);
  while (run->produced < run->n)
    {
      if (run->produced == start_apart_items)
        start_apart_bind (run, -1);
      while (!sluice_ordered_item_producer_is_ready (producer))
        g_main_context_iteration (NULL, TRUE);
      sluice_ordered_item_producer_produce (producer, sluice_item, run);
    }
  sluice_ordered_item_producer_stop_async (producer, NULL, on_stopped, &stopped);
  while (!stopped)
    g_main_context_iteration (NULL, TRUE);
  {
    g_autoptr (GVariant) stats = sluice_ordered_item_producer_get_stats (producer);

    g_variant_lookup (stats, "consumer-spins", "t", &run->spins);
    g_variant_lookup (stats, "consumer-sleeps", "t", &run->sleeps);
    g_variant_lookup (stats, "owner-spins", "t", &run->owner_spins);
    g_variant_lookup (stats, "early-room-answers", "t", &run->early);
  }
  stop_completers (run);
  g_object_unref (producer);
}

/* ---- cond ---- */

static void
cond_complete (Run *run, Job *job)
{
  g_mutex_lock (&run->lock);
  run->ring[job->seq % run->k] = job->seq + 1;
  g_cond_signal (&run->items_cond);
  g_mutex_unlock (&run->lock);
}

static gpointer
cond_consume (gpointer data)
{
  Run *run = data;

  start_apart_bind (run, 1);
  for (guint64 seq = 0; seq < run->n; seq++)
    {
      guint64 *place = &run->ring[seq % run->k];

      g_mutex_lock (&run->lock);
      while (*place != seq + 1)
        g_cond_wait (&run->items_cond, &run->lock);
      *place = 0;
      run->consumed++;
      g_cond_signal (&run->space_cond);
      g_mutex_unlock (&run->lock);
      received (run, seq, seq);
    }
  return NULL;
}

static void
cond_latency_run (Run *run)
{
  GThread *consumer;

  run->complete = cond_complete;
  g_mutex_init (&run->lock);
  g_cond_init (&run->items_cond);
  g_cond_init (&run->space_cond);
  run->ring = g_new0 (guint64, run->k);
  start_completers (run);
  consumer = g_thread_new ("consumer", cond_consume, run);
  start_apart_bind (run, 0);
  for (guint64 seq = 0; seq < run->n; seq++)
    {
      Job *job = &run->jobs[seq];

      if (seq == start_apart_items)
        start_apart_bind (run, -1);
      g_mutex_lock (&run->lock);
      while (seq - run->consumed >= run->k)
        g_cond_wait (&run->space_cond, &run->lock);
      g_mutex_unlock (&run->lock);
      job->seq = seq;
      hand_out (run, job);
    }
  g_thread_join (consumer);
  stop_completers (run);
  g_free (run->ring);
  g_cond_clear (&run->items_cond);
  g_cond_clear (&run->space_cond);
  g_mutex_clear (&run->lock);
}

/* ---- statistics ---- */

static int
compare_gint64 (const void *a, const void *b)
{
  gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;

  return x < y ? -1 : x > y;
}

/* p50 and p99 of deliverable-to-received, in us. */
static void
percentiles (Run *run, double *p50, double *p99)
{
  gint64 *lat = g_new (gint64, run->n);
  gint64 deliverable = 0;

  for (guint64 i = 0; i < run->n; i++)
    {
      deliverable = MAX (deliverable, run->t_done[i]);
      lat[i] = MAX (0, run->t_recv[i] - deliverable);
    }
  qsort (lat, run->n, sizeof *lat, compare_gint64);
  *p50 = lat[run->n / 2] / 1000.0;
  *p99 = lat[run->n * 99 / 100] / 1000.0;
  g_free (lat);
}

typedef enum
{
  LAT_SLUICE,
  LAT_COND,
  N_LAT_IMPLS
} LatImpl;

static const char *lat_names[N_LAT_IMPLS] = { "sluice", "cond" };

/* @waits: the sluice consumer's spins and sleeps, the owner's spins, the
 * early room answers, the items received on the processor that completed
 * them (all implementations), or NULL. */
static void
run_once (LatImpl impl,
          gboolean start_apart,
          guint k,
          guint64 n,
          guint32 iters_per_us,
          double *p50,
          double *p99,
          guint64 *waits)
{
  Run run = { 0 };

  run.n = n;
  run.k = k;
  run.iters_per_us = iters_per_us;
  run.jobs = g_new0 (Job, n);
  run.t_done = g_new0 (gint64, n);
  run.t_recv = g_new0 (gint64, n);
  run.cpu_done = g_new0 (gint16, n);
  run.cpu_recv = g_new0 (gint16, n);
  run.order_ok = TRUE;
  run.start_apart = start_apart;
  if (impl == LAT_SLUICE)
    sluice_latency_run (&run);
  else
    cond_latency_run (&run);
  if (!run.order_ok)
    {
      fprintf (stderr, "latency: %s delivered out of order\n", lat_names[impl]);
      exit (1);
    }
  for (guint64 i = 0; i < n; i++)
    if (run.t_recv[i] == 0)
      {
        fprintf (stderr, "latency: %s lost item %" G_GUINT64_FORMAT "\n", lat_names[impl], i);
        exit (1);
      }
  percentiles (&run, p50, p99);
  if (waits != NULL)
    {
      waits[0] = run.spins;
      waits[1] = run.sleeps;
      waits[2] = run.owner_spins;
      waits[3] = run.early;
      waits[4] = 0;
      for (guint64 i = 0; i < n; i++)
        waits[4] += run.cpu_done[i] >= 0 && run.cpu_done[i] == run.cpu_recv[i];
    }
  g_free (run.jobs);
  g_free (run.t_done);
  g_free (run.t_recv);
  g_free (run.cpu_done);
  g_free (run.cpu_recv);
}

void
bench_latency (gboolean quick,
               int reps,
               guint32 iters_per_us,
               gboolean start_apart,
               gboolean keep_apart,
               gboolean owner_apart,
               GString *results)
{
  static const guint ks[] = { 1, 4 };
  guint64 n = quick ? 2000 : 20000;
  double p50[G_N_ELEMENTS (ks)][N_LAT_IMPLS][BENCH_MAX_REPS],
      p99[G_N_ELEMENTS (ks)][N_LAT_IMPLS][BENCH_MAX_REPS];
  double ratio99[BENCH_MAX_REPS], ratio50[BENCH_MAX_REPS], v[BENCH_MAX_REPS];

  reps = MIN (reps, BENCH_MAX_REPS);
  owner_with_consumer = owner_apart;
  if (keep_apart)
    {
      start_apart = TRUE;
      start_apart_items = G_MAXUINT64;
    }
  fprintf (stderr, "latency: %" G_GUINT64_FORMAT " items, 1 and 4 in flight, %d repetitions%s\n", n,
           reps,
           keep_apart    ? ", every item apart"
           : start_apart ? ", each run's first " G_STRINGIFY (START_APART_ITEMS) " items apart"
                         : "");
#ifdef __linux__
  if (start_apart && (sched_getaffinity (0, sizeof start_apart_mask, &start_apart_mask) != 0 ||
                      !CPU_ISSET (0, &start_apart_mask) || !CPU_ISSET (1, &start_apart_mask)))
    {
      fprintf (stderr, "latency: --latency-start-apart needs processors 0 and 1\n");
      exit (1);
    }
#else
  if (start_apart)
    {
      fprintf (stderr, "latency: --latency-start-apart needs Linux\n");
      exit (1);
    }
#endif
  for (guint j = 0; j < G_N_ELEMENTS (ks); j++)
    {
      double warm50, warm99;

      run_once (LAT_SLUICE, start_apart, ks[j], MIN (n, 500), iters_per_us, &warm50, &warm99, NULL);
      run_once (LAT_COND, start_apart, ks[j], MIN (n, 500), iters_per_us, &warm50, &warm99, NULL);
    }
  for (int rep = 0; rep < reps; rep++)
    for (guint j = 0; j < G_N_ELEMENTS (ks); j++)
      for (int i = 0; i < N_LAT_IMPLS; i++)
        {
          LatImpl impl = (i + rep) % N_LAT_IMPLS;

          guint64 waits[5] = { 0, 0, 0, 0, 0 };

          run_once (impl, start_apart, ks[j], n, iters_per_us, &p50[j][impl][rep],
                    &p99[j][impl][rep], waits);
          fprintf (stderr,
                   "  latency %u in flight %-6s rep %d: p50 %7.1f us  p99 %7.1f us  (spins "
                   "%" G_GUINT64_FORMAT ", sleeps %" G_GUINT64_FORMAT
                   ", owner spins %" G_GUINT64_FORMAT ", early answers %" G_GUINT64_FORMAT
                   "; received on the completing cpu %.0f %%)\n",
                   ks[j], lat_names[impl], rep + 1, p50[j][impl][rep], p99[j][impl][rep], waits[0],
                   waits[1], waits[2], waits[3], 100.0 * waits[4] / n);
        }

  printf ("\nlatency from deliverable to received, %u-%u us of work per item, medians over %d "
          "repetitions:\n",
          LATENCY_WORK_MIN_US, LATENCY_WORK_MAX_US, reps);
  for (guint j = 0; j < G_N_ELEMENTS (ks); j++)
    for (int impl = 0; impl < N_LAT_IMPLS; impl++)
      {
        double m50, m99;

        m50 = bench_median (p50[j][impl], reps);
        m99 = bench_median (p99[j][impl], reps);
        printf ("  %u in flight  %-6s  p50 %7.1f us   p99 %7.1f us\n", ks[j], lat_names[impl], m50,
                m99);
      }
  for (int rep = 0; rep < reps; rep++)
    {
      ratio99[rep] = p99[1][LAT_SLUICE][rep] / p99[1][LAT_COND][rep];
      ratio50[rep] = p50[0][LAT_SLUICE][rep];
    }
  {
    double r99 = bench_median (ratio99, reps);
    double r50 = bench_median (ratio50, reps);

    printf ("  %-26s %7.3f  (goal <= 1.20)  %s\n", "latency_p99_4_vs_cond", r99,
            r99 <= 1.2 ? "met" : "NOT MET");
    printf ("  %-26s %7.2f  (goal <= 4.00)  %s\n", "latency_p50_1_us", r50,
            r50 <= 4.0 ? "met" : "NOT MET");
    g_string_append_printf (results, "RESULT latency_p99_4_vs_cond=%.3f\n", r99);
    g_string_append_printf (results, "RESULT latency_p50_1_us=%.2f\n", r50);
    for (int rep = 0; rep < reps; rep++)
      v[rep] = p50[0][LAT_COND][rep];
    g_string_append_printf (results, "RESULT latency_p50_1_cond_us=%.2f\n", bench_median (v, reps));
  }
}
