/* handoff-probe.c: where the handoff's CPU goes, thread by thread
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The handoff of bench/run (trivial items, completed out of order by 2
 * completer threads through slots, a batch of 256 at a time, a shuffled
 * order within each batch), with its threads pinned: the owner and
 * completer A on CPU 0, the consumer and completer B on CPU 1 (or every
 * thread on CPU 0 with --same-cpu). Each repetition prints the wall time
 * and the CPU time per item of the process and of each thread
 * (CLOCK_THREAD_CPUTIME_ID), the consumer's sleeps and the owner's
 * voluntary context switches per 1000 items.
 *
 * The thread CPU times are the figures to compare builds with on a busy
 * machine (issue 19): pinned, the slot's cache line crosses the cores as on
 * a quiet machine, and the time a thread waits for a core is not counted.
 * The wall time means something on a quiet machine only.
 *
 *   _build-bench/bench/handoff-probe [--items N] [--window N] [--reps N] [--same-cpu]
 */

#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <sluice/sluice.h>

#include "bench-shuffle.h"

#define PROBE_BATCH 256

typedef struct
{
  guint n;
  SluiceSlot *slots[PROBE_BATCH];
  guint64 seqs[PROBE_BATCH];
} ProbeBatch;

enum
{
  CPU_OWNER,
  CPU_CONSUMER,
  CPU_COMPLETER_A,
  CPU_COMPLETER_B,
  N_CPU_SLOTS
};

static gint64 opt_items = 1000000;
static int opt_window = 1024;
static int opt_reps = 5;
static gboolean opt_same_cpu;

static GOptionEntry entries[] = {
  { "items", 'n', 0, G_OPTION_ARG_INT64, &opt_items, "Items per repetition (1000000)", "N" },
  { "window", 'w', 0, G_OPTION_ARG_INT, &opt_window, "Window (1024)", "N" },
  { "reps", 'r', 0, G_OPTION_ARG_INT, &opt_reps, "Repetitions (5)", "N" },
  { "same-cpu", 0, 0, G_OPTION_ARG_NONE, &opt_same_cpu, "Pin every thread to CPU 0", NULL },
  { NULL },
};

static guint shuffle[PROBE_BATCH];
static GThreadPool *completers;
static ProbeBatch *filling;
static guint64 next_seq;
static int n_completers;               /* this repetition's, atomic */
static int generation;                 /* the repetition under way */
static double thread_cpu[N_CPU_SLOTS]; /* seconds; each slot written by one thread */
static guint64 consumed;
static gboolean order_ok;

/* The completer's index (its pin) in the repetition of completer_generation:
 * the pool may reuse threads of an earlier repetition's pool. */
static __thread int completer_index;
static __thread int completer_generation = -1;

static double
clock_seconds (clockid_t clock)
{
  struct timespec ts;

  clock_gettime (clock, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void
pin_to (int cpu)
{
  cpu_set_t set;

  CPU_ZERO (&set);
  CPU_SET (opt_same_cpu ? 0 : cpu, &set);
  pthread_setaffinity_np (pthread_self (), sizeof set, &set);
}

/* The calling thread's voluntary context switches so far. */
static long
voluntary_switches (void)
{
  char line[256];
  long n = 0;
  FILE *f = fopen ("/proc/thread-self/status", "r");

  if (f == NULL)
    return 0;
  while (fgets (line, sizeof line, f) != NULL)
    if (sscanf (line, "voluntary_ctxt_switches: %ld", &n) == 1)
      break;
  fclose (f);
  return n;
}

static void
complete_batch (gpointer data, gpointer user_data)
{
  ProbeBatch *batch = data;
  double t0;

  if (completer_generation != generation)
    {
      completer_generation = generation;
      completer_index = g_atomic_int_add (&n_completers, 1) & 1;
      pin_to (completer_index);
    }
  t0 = clock_seconds (CLOCK_THREAD_CPUTIME_ID);
  for (guint k = 0; k < batch->n; k++)
    {
      guint j = batch->n == PROBE_BATCH ? shuffle[k] : batch->n - 1 - k;

      sluice_slot_complete (batch->slots[j], GSIZE_TO_POINTER (batch->seqs[j] + 1));
    }
  thread_cpu[CPU_COMPLETER_A + completer_index] += clock_seconds (CLOCK_THREAD_CPUTIME_ID) - t0;
  g_free (batch);
}

static void
flush_batch (void)
{
  if (filling != NULL)
    g_thread_pool_push (completers, g_steal_pointer (&filling), NULL);
}

static void
hand_to_completer (SluiceSlot *slot, gpointer data)
{
  if (filling == NULL)
    {
      filling = g_new (ProbeBatch, 1);
      filling->n = 0;
    }
  filling->slots[filling->n] = slot;
  filling->seqs[filling->n] = next_seq++;
  if (++filling->n == PROBE_BATCH)
    flush_batch ();
}

static gpointer
consume (SluiceConsumerator *consumerator, gpointer data, GError **error)
{
  gpointer item;
  double t0;

  pin_to (1);
  t0 = clock_seconds (CLOCK_THREAD_CPUTIME_ID);
  while (sluice_consumerator_next (consumerator, &item, error))
    {
      if (GPOINTER_TO_SIZE (item) != consumed + 1)
        order_ok = FALSE;
      consumed++;
    }
  thread_cpu[CPU_CONSUMER] = clock_seconds (CLOCK_THREAD_CPUTIME_ID) - t0;
  return *error == NULL ? GINT_TO_POINTER (1) : NULL;
}

static void
on_stopped (GObject *source, GAsyncResult *result, gpointer data)
{
  *(GAsyncResult **) data = g_object_ref (result);
}

static void
run_once (GMainContext *context, int rep)
{
  SluiceOrderedItemProducer *producer;
  GAsyncResult *stop_result = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GVariant) stats = NULL;
  guint64 n = (guint64) opt_items;
  guint64 sleeps = 0;
  double wall0, cpu0, owner0;
  double wall, cpu;
  long switches0, owner_switches;

  for (int i = 0; i < N_CPU_SLOTS; i++)
    thread_cpu[i] = 0;
  next_seq = 0;
  consumed = 0;
  order_ok = TRUE;
  n_completers = 0;
  generation = rep;
  completers = g_thread_pool_new (complete_batch, NULL, 2, TRUE, NULL);
  producer = sluice_ordered_item_producer_new (NULL, (guint) opt_window, NULL);

  switches0 = voluntary_switches ();
  wall0 = clock_seconds (CLOCK_MONOTONIC);
  cpu0 = clock_seconds (CLOCK_PROCESS_CPUTIME_ID);
  owner0 = clock_seconds (CLOCK_THREAD_CPUTIME_ID);
  sluice_ordered_item_producer_start (producer, consume, NULL, NULL, NULL);
  for (guint64 i = 0; i < n; i++)
    {
      if (G_UNLIKELY (!sluice_ordered_item_producer_is_ready (producer)))
        {
          flush_batch ();
          while (!sluice_ordered_item_producer_is_ready (producer))
            g_main_context_iteration (context, TRUE);
        }
      sluice_ordered_item_producer_produce_item (producer, hand_to_completer, NULL, NULL, NULL,
                                                 NULL, NULL);
    }
  flush_batch ();
  thread_cpu[CPU_OWNER] = clock_seconds (CLOCK_THREAD_CPUTIME_ID) - owner0;
  owner_switches = voluntary_switches () - switches0;

  sluice_ordered_item_producer_stop_async (producer, NULL, on_stopped, &stop_result);
  while (stop_result == NULL)
    g_main_context_iteration (context, TRUE);
  if (sluice_ordered_item_producer_stop_finish (producer, stop_result, &error) == NULL)
    g_error ("the stop failed: %s", error != NULL ? error->message : "no result");
  wall = clock_seconds (CLOCK_MONOTONIC) - wall0;
  cpu = clock_seconds (CLOCK_PROCESS_CPUTIME_ID) - cpu0;
  g_thread_pool_free (completers, FALSE, TRUE);
  if (consumed != n || !order_ok)
    g_error ("FAIL: %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " items, order %s", consumed, n,
             order_ok ? "right" : "wrong");

  stats = sluice_ordered_item_producer_get_stats (producer);
  g_variant_lookup (stats, "consumer-sleeps", "t", &sleeps);
  printf ("rep %d wall_ns %.1f proc_cpu_ns %.1f owner_ns %.1f consumer_ns %.1f completer_a_ns "
          "%.1f completer_b_ns %.1f consumer_sleeps_per_k %.2f owner_vcsw_per_k %.2f\n",
          rep, wall / n * 1e9, cpu / n * 1e9, thread_cpu[CPU_OWNER] / n * 1e9,
          thread_cpu[CPU_CONSUMER] / n * 1e9, thread_cpu[CPU_COMPLETER_A] / n * 1e9,
          thread_cpu[CPU_COMPLETER_B] / n * 1e9, sleeps * 1000.0 / n, owner_switches * 1000.0 / n);
  fflush (stdout);
  g_object_unref (stop_result);
  g_object_unref (producer);
}

int
main (int argc, char **argv)
{
  g_autoptr (GOptionContext) options = g_option_context_new ("- the handoff, thread by thread");
  g_autoptr (GError) error = NULL;
  GMainContext *context = g_main_context_default ();

  g_option_context_add_main_entries (options, entries, NULL);
  if (!g_option_context_parse (options, &argc, &argv, &error))
    {
      fprintf (stderr, "%s\n", error->message);
      return 2;
    }
  if (opt_items < 1 || opt_window < 1 || opt_reps < 1)
    {
      fprintf (stderr, "items, window and reps must be positive\n");
      return 2;
    }

  /* The same order as bench/run's at a batch of 256. */
  bench_shuffle_init (shuffle, PROBE_BATCH);

  pin_to (0);
  /* Held while producing, as bench/run does. */
  if (!g_main_context_acquire (context))
    g_error ("cannot acquire the main context");
  for (int rep = 0; rep < opt_reps; rep++)
    run_once (context, rep);
  g_main_context_release (context);
  return 0;
}
