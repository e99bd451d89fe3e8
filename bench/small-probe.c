/* small-probe.c: where small work's CPU goes, thread by thread
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * bench/run's "small" workload (2 us of busy work per item through
 * sluice_ordered_item_producer_produce_item_in_thread () into the library's
 * own SluiceTaskQueue of 2 threads, a consumer thread taking each item),
 * alternating with its "unsync" ceiling (the same work in 2 plain threads,
 * no ordering). Each repetition prints, per item:
 *
 * - the CPU time of the process and of the owner (CLOCK_THREAD_CPUTIME_ID
 *   of the producing thread) and of the consumer thread; the runners' share
 *   is the rest;
 * - the wake-ups per 1000 items: the owner's waits for room (the produce
 *   loop found the producer not ready), the consumer's sleeps and waits
 *   (the producer's stats), the process's voluntary and involuntary
 *   context switches;
 *
 * and at the end:
 *
 * - the runners' time between the end of one item's work and the start of
 *   the next on the same thread (the task queue, the slot's completion, the
 *   next task's start), from the cycle counter, split into gaps under 10 us
 *   (the path itself) and longer ones (a runner that slept, left, or was
 *   preempted);
 * - the work's own time per item in the runners and in the unsync threads
 *   (whether the work itself runs slower beside the library's threads);
 * - the minimum and the median of each figure over the repetitions: on a
 *   busy machine, the minimum is the figure least disturbed by others.
 *
 * The per-thread figures and the gaps do not count the time a thread waits
 * for a core, so they mean something on a loaded machine (issue 19); the
 * process totals and the ratio to unsync mean something on a quiet one.
 *
 *   _build-bench/bench/small-probe [--items N] [--window N] [--reps N] [--work-us X]
 */

#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include <sluice/sluice.h>

#include "bench-common.h"

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_RDTSC 1
#endif

/* Gaps and work spans at or above this are not the path (ns). */
#define LONG_GAP_NS 10000
#define MAX_REPS 200

static gint64 opt_items = 100000;
static int opt_window = 1024;
static int opt_reps = 15;
static double opt_work_us = 2.0;

static GOptionEntry entries[] = {
  { "items", 'n', 0, G_OPTION_ARG_INT64, &opt_items, "Items per repetition (100000)", "N" },
  { "window", 'w', 0, G_OPTION_ARG_INT, &opt_window, "Window (1024)", "N" },
  { "reps", 'r', 0, G_OPTION_ARG_INT, &opt_reps, "Repetitions (15)", "N" },
  { "work-us", 'u', 0, G_OPTION_ARG_DOUBLE, &opt_work_us,
    "Busy work per item in us (2; 0: trivial)", "X" },
  { NULL },
};

static guint32 work_iters;
static double ticks_per_ns = 1.0;

/* Per repetition, written by the consumer thread before it returns. */
static double consumer_cpu;
static guint64 n_consumed;
static gboolean order_ok;

/* The cycle counter's spans, summed across threads (atomic adds). */
typedef struct
{
  guint64 short_sum, short_n; /* gaps under LONG_GAP_NS */
  guint64 long_sum, long_n;
  guint64 work_sum, work_n; /* work spans under LONG_GAP_NS */
} Spans;

static Spans runner_spans, unsync_spans;
static __thread guint64 last_work_end;

static double
clock_seconds (clockid_t clock)
{
  struct timespec ts;

  clock_gettime (clock, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline guint64
ticks (void)
{
#ifdef HAVE_RDTSC
  return __rdtsc ();
#else
  return (guint64) (clock_seconds (CLOCK_MONOTONIC) * 1e9);
#endif
}

static void
calibrate_ticks (void)
{
  double t0 = clock_seconds (CLOCK_MONOTONIC);
  guint64 k0 = ticks ();

  g_usleep (50000);
  ticks_per_ns = (ticks () - k0) / ((clock_seconds (CLOCK_MONOTONIC) - t0) * 1e9);
}

static void
add (guint64 *p, guint64 v)
{
  __atomic_fetch_add (p, v, __ATOMIC_RELAXED);
}

/* Item @seq's work, timed; the gap since this thread's last work too. */
static guint64
timed_work (guint64 seq, Spans *spans, gboolean gaps)
{
  guint64 limit = (guint64) (LONG_GAP_NS * ticks_per_ns);
  guint64 start = ticks ();
  guint64 value = bench_item_value (seq, work_iters);
  guint64 end = ticks ();

  if (gaps && last_work_end != 0)
    {
      guint64 gap = start - last_work_end;

      if (gap < limit)
        {
          add (&spans->short_sum, gap);
          add (&spans->short_n, 1);
        }
      else
        {
          add (&spans->long_sum, gap);
          add (&spans->long_n, 1);
        }
    }
  if (end - start < limit)
    {
      add (&spans->work_sum, end - start);
      add (&spans->work_n, 1);
    }
  last_work_end = end;
  return value;
}

static gpointer
sluice_work (GCancellable *cancellable, gpointer data, GError **error)
{
  return GSIZE_TO_POINTER (timed_work (GPOINTER_TO_SIZE (data), &runner_spans, TRUE));
}

static gpointer
consume (SluiceConsumerator *consumerator, gpointer data, GError **error)
{
  double t0 = clock_seconds (CLOCK_THREAD_CPUTIME_ID);
  guint64 n = 0;
  gpointer item;

  order_ok = TRUE;
  while (sluice_consumerator_next (consumerator, &item, error))
    {
      n++;
      if ((GPOINTER_TO_SIZE (item) & 0xffffffffu) != (n & 0xffffffffu))
        order_ok = FALSE;
    }
  n_consumed = n;
  consumer_cpu = clock_seconds (CLOCK_THREAD_CPUTIME_ID) - t0;
  return GINT_TO_POINTER (1);
}

static void
on_stopped (GObject *source, GAsyncResult *result, gpointer data)
{
  *(GAsyncResult **) data = g_object_ref (result);
}

/* The process's context switches and its CPU time in the kernel (s). */
static void
context_switches (long *voluntary, long *involuntary, double *system)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  *voluntary = ru.ru_nvcsw;
  *involuntary = ru.ru_nivcsw;
  *system = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

typedef enum
{
  F_PROCESS,
  F_OWNER,
  F_CONSUMER,
  F_RUNNERS,
  F_SYSTEM,
  F_OWNER_WAITS,
  F_SLEEPS,
  F_VCSW,
  F_ICSW,
  F_UNSYNC,
  F_UNSYNC_SYSTEM,
  N_FIGURES
} Figure;

static const char *figure_names[N_FIGURES] = {
  "process CPU ns/item",   "owner CPU ns/item",  "consumer CPU ns/item",  "runners CPU ns/item",
  "in the kernel ns/item", "owner waits /1000",  "consumer sleeps /1000", "voluntary csw /1000",
  "involuntary csw /1000", "unsync CPU ns/item", "unsync kernel ns/item",
};

static double figures[N_FIGURES][MAX_REPS];

static guint64
stat_of (GVariant *stats, const char *key)
{
  guint64 v = 0;

  g_variant_lookup (stats, key, "t", &v);
  return v;
}

/* The tutorial's loop: produces @n items, iterating @context while the
 * window is full. Returns how many times it found the window full. */
static guint64
produce_all (SluiceOrderedItemProducer *producer, GMainContext *context, guint64 n)
{
  guint64 waits = 0;
  guint64 seq = 0;

  while (seq < n)
    {
      if (!sluice_ordered_item_producer_is_ready (producer))
        {
          waits++;
          do
            g_main_context_iteration (context, TRUE);
          while (!sluice_ordered_item_producer_is_ready (producer));
        }
      sluice_ordered_item_producer_produce_item_in_thread (producer, sluice_work,
                                                           GSIZE_TO_POINTER (seq), NULL,
                                                           G_PRIORITY_DEFAULT, NULL, NULL, NULL);
      seq++;
    }
  return waits;
}

static void
run_sluice (int rep)
{
  GMainContext *context = g_main_context_default ();
  SluiceTaskQueue *queue = sluice_task_queue_new (2);
  SluiceOrderedItemProducer *producer =
      sluice_ordered_item_producer_new (queue, (guint) opt_window, NULL);
  GAsyncResult *stopped = NULL;
  guint64 n = (guint64) opt_items;
  guint64 owner_waits;
  long v0, i0, v1, i1;
  double s0, s1;
  double wall, p0, o0, owner, process;
  GVariant *stats;

  if (!g_main_context_acquire (context))
    g_error ("cannot acquire the main context");
  context_switches (&v0, &i0, &s0);
  wall = clock_seconds (CLOCK_MONOTONIC);
  p0 = clock_seconds (CLOCK_PROCESS_CPUTIME_ID);
  o0 = clock_seconds (CLOCK_THREAD_CPUTIME_ID);
  sluice_ordered_item_producer_start (producer, consume, NULL, NULL, NULL);
  owner_waits = produce_all (producer, context, n);
  owner = clock_seconds (CLOCK_THREAD_CPUTIME_ID) - o0;
  sluice_ordered_item_producer_stop_async (producer, NULL, on_stopped, &stopped);
  while (stopped == NULL)
    g_main_context_iteration (context, TRUE);
  if (sluice_ordered_item_producer_stop_finish (producer, stopped, NULL) == NULL)
    g_error ("the stop failed");
  process = clock_seconds (CLOCK_PROCESS_CPUTIME_ID) - p0;
  wall = clock_seconds (CLOCK_MONOTONIC) - wall;
  context_switches (&v1, &i1, &s1);
  if (n_consumed != n || !order_ok)
    g_error ("wrong result: %" G_GUINT64_FORMAT " items, order %s", n_consumed,
             order_ok ? "ok" : "wrong");

  stats = sluice_ordered_item_producer_get_stats (producer);
  figures[F_PROCESS][rep] = process * 1e9 / n;
  figures[F_OWNER][rep] = owner * 1e9 / n;
  figures[F_CONSUMER][rep] = consumer_cpu * 1e9 / n;
  figures[F_RUNNERS][rep] = (process - owner - consumer_cpu) * 1e9 / n;
  figures[F_SYSTEM][rep] = (s1 - s0) * 1e9 / n;
  figures[F_OWNER_WAITS][rep] = owner_waits * 1000.0 / n;
  figures[F_SLEEPS][rep] = stat_of (stats, "consumer-sleeps") * 1000.0 / n;
  figures[F_VCSW][rep] = (v1 - v0) * 1000.0 / n;
  figures[F_ICSW][rep] = (i1 - i0) * 1000.0 / n;
  printf ("rep %2d sluice: wall %.3f s  CPU ns/item: process %.1f owner %.1f consumer %.1f runners "
          "%.1f, kernel %.1f | per 1000: owner waits %.2f, consumer sleeps %.2f waits %.2f, csw "
          "%.2f + %.2f\n",
          rep + 1, wall, figures[F_PROCESS][rep], figures[F_OWNER][rep], figures[F_CONSUMER][rep],
          figures[F_RUNNERS][rep], figures[F_SYSTEM][rep], figures[F_OWNER_WAITS][rep],
          figures[F_SLEEPS][rep], stat_of (stats, "consumer-waits") * 1000.0 / n,
          figures[F_VCSW][rep], figures[F_ICSW][rep]);
  g_variant_unref (stats);
  g_object_unref (stopped);
  g_object_unref (producer);
  g_object_unref (queue);
  g_main_context_release (context);
}

typedef struct
{
  guint64 first, end, sum;
} Share;

static gpointer
unsync_thread (gpointer data)
{
  Share *share = data;

  for (guint64 i = share->first; i < share->end; i++)
    share->sum += timed_work (i, &unsync_spans, FALSE);
  return NULL;
}

static void
run_unsync (int rep)
{
  guint64 n = (guint64) opt_items;
  Share shares[2] = { { 0, n / 2, 0 }, { n / 2, n, 0 } };
  GThread *threads[2];
  double wall = clock_seconds (CLOCK_MONOTONIC);
  double p0 = clock_seconds (CLOCK_PROCESS_CPUTIME_ID);
  long v, i;
  double s0, s1;

  context_switches (&v, &i, &s0);
  for (int k = 0; k < 2; k++)
    threads[k] = g_thread_new ("unsync", unsync_thread, &shares[k]);
  for (int k = 0; k < 2; k++)
    g_thread_join (threads[k]);
  figures[F_UNSYNC][rep] = (clock_seconds (CLOCK_PROCESS_CPUTIME_ID) - p0) * 1e9 / n;
  context_switches (&v, &i, &s1);
  figures[F_UNSYNC_SYSTEM][rep] = (s1 - s0) * 1e9 / n;
  printf ("rep %2d unsync: wall %.3f s  CPU ns/item: process %.1f\n", rep + 1,
          clock_seconds (CLOCK_MONOTONIC) - wall, figures[F_UNSYNC][rep]);
}

static void
print_spans (const char *what, const Spans *s, gboolean gaps)
{
  if (gaps)
    printf ("%s: gaps between items under %d us: %.1f ns mean (%" G_GUINT64_FORMAT
            "); longer: %" G_GUINT64_FORMAT " (%.2f per 1000 items), %.1f us mean\n",
            what, LONG_GAP_NS / 1000, s->short_n ? s->short_sum / ticks_per_ns / s->short_n : 0.0,
            s->short_n, s->long_n, s->long_n * 1000.0 / MAX (s->work_n, 1),
            s->long_n ? s->long_sum / ticks_per_ns / s->long_n / 1000.0 : 0.0);
  printf ("%s: work %.1f ns per item (%" G_GUINT64_FORMAT " spans under %d us)\n", what,
          s->work_n ? s->work_sum / ticks_per_ns / s->work_n : 0.0, s->work_n, LONG_GAP_NS / 1000);
}

int
main (int argc, char **argv)
{
  GOptionContext *options = g_option_context_new ("- small work's CPU, thread by thread");
  GError *error = NULL;
  gboolean trivial;

  g_option_context_add_main_entries (options, entries, NULL);
  if (!g_option_context_parse (options, &argc, &argv, &error))
    {
      g_printerr ("%s\n", error->message);
      return 2;
    }
  g_option_context_free (options);
  opt_reps = CLAMP (opt_reps, 1, MAX_REPS);
  opt_items = MAX (opt_items, 16);
  trivial = opt_work_us <= 0;

  calibrate_ticks ();
  work_iters = trivial ? 0 : (guint32) MAX (1.0, opt_work_us * bench_calibrate ());
  printf ("small-probe: %" G_GINT64_FORMAT " items, window %d, %d repetitions, work %.2f us "
          "(%u iterations)\n",
          opt_items, opt_window, opt_reps, opt_work_us, work_iters);

  /* Alternating, the order swapped every repetition. */
  for (int rep = 0; rep < opt_reps; rep++)
    {
      if (!trivial && rep % 2 == 0)
        run_unsync (rep);
      run_sluice (rep);
      if (!trivial && rep % 2 == 1)
        run_unsync (rep);
    }

  printf ("\n%-24s %10s %10s\n", "over the repetitions", "min", "median");
  for (int f = 0; f < N_FIGURES; f++)
    {
      double sorted[MAX_REPS];

      if (trivial && (f == F_UNSYNC || f == F_UNSYNC_SYSTEM))
        continue;
      memcpy (sorted, figures[f], opt_reps * sizeof (double));
      qsort (sorted, opt_reps, sizeof (double), bench_compare_doubles);
      printf ("%-24s %10.2f %10.2f\n", figure_names[f], sorted[0], sorted[opt_reps / 2]);
    }
  print_spans ("runners", &runner_spans, TRUE);
  if (!trivial)
    print_spans ("unsync", &unsync_spans, FALSE);
  return 0;
}
