/* pipeline-bench.c: SluicePipeline against oneTBB's parallel_pipeline and a
 * Python thread pipeline, side by side in one process
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Run by bench/run (after sluice-bench). Three filters (pipeline-common.h):
 * parse (serial) -> work (parallel, --threads threads) -> sink (serial, in
 * input order). Workloads:
 *
 * - small: 2 µs of busy work per item: Sluice against oneTBB with the same
 *   filters and token count (the window): RESULT pipeline_small_vs_tbb, the
 *   median of tbb's time over Sluice's within each repetition;
 * - large: 50 µs: the speedup of Sluice over the serial run (ideal on 2
 *   cores: 2.0), RESULT pipeline_large_speedup (tbb's is shown too);
 * - trivial: no busy work (jobq's add1 -> multi2 x 2 -> ordered sink):
 *   Sluice's items per second over those of bench/pipeline_threads.py (the
 *   same shape with queue.Queue(1024) between the stages, on
 *   /usr/bin/python3), RESULT pipeline_vs_python.
 *
 * Sluice: sluice_pipeline_put() from this thread, a "parse" stage of 1
 * thread, a "work" stage of --threads threads, keep-order, the sink as the
 * consumer function (its own thread); window and queue capacities --window.
 * oneTBB: parse is its serial_in_order input filter (pipeline-tbb.cpp).
 * Every run is checked (count, order, sums). Each repetition runs the
 * implementations in a rotated order; figures are medians, with the range
 * over the repetitions, and the CPU time (user + system) per item of this
 * process, which other load on the machine disturbs much less than the
 * wall-clock time.
 */

#include <sluice/sluice.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "pipeline-common.h"

#define MAX_REPS BENCH_MAX_REPS

static gboolean opt_quick;
static int opt_reps;
static int opt_window = 1024;
static int opt_threads = 2;
static char *opt_python = "/usr/bin/python3";
static char *opt_python_script;
static char *opt_only;
static char *opt_impls;

static GOptionEntry option_entries[] = {
  { "quick", 'q', 0, G_OPTION_ARG_NONE, &opt_quick, "Smoke run: small sizes, 2 repetitions", NULL },
  { "reps", 'r', 0, G_OPTION_ARG_INT, &opt_reps, "Repetitions (default 5, quick 2)", "N" },
  { "window", 'w', 0, G_OPTION_ARG_INT, &opt_window,
    "Window, queue capacities and tbb tokens (1024)", "N" },
  { "threads", 't', 0, G_OPTION_ARG_INT, &opt_threads, "Work threads (2)", "N" },
  { "python", 0, 0, G_OPTION_ARG_FILENAME, &opt_python, "Python for the baseline", "PATH" },
  { "python-script", 0, 0, G_OPTION_ARG_FILENAME, &opt_python_script,
    "bench/pipeline_threads.py (without it the Python rows are skipped)", "PATH" },
  { "only", 'o', 0, G_OPTION_ARG_STRING, &opt_only,
    "Comma-separated workloads: small,large,trivial", "LIST" },
  { "impls", 'i', 0, G_OPTION_ARG_STRING, &opt_impls,
    "Comma-separated implementations: sluice,tbb,serial,python", "LIST" },
  G_OPTION_ENTRY_NULL
};

static double
cpu_now (void)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec * 1e-6;
}

/* This process's context switches (voluntary and not) so far. */
static double
switches_now (void)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  return (double) ru.ru_nvcsw + (double) ru.ru_nivcsw;
}

static guint32 busy_iters_per_us;

/* The last Sluice run's sleeps of its stage threads waiting for an item,
 * summed over the stages (get_stats()). */
static guint64 last_sleeps;

static void G_GNUC_NORETURN G_GNUC_PRINTF (1, 2) fail (const char *format, ...)
{
  va_list args;

  fflush (stdout);
  fprintf (stderr, "pipeline-bench: FAIL: ");
  va_start (args, format);
  vfprintf (stderr, format, args);
  va_end (args);
  fprintf (stderr, "\n");
  exit (1);
}

/* ---- the implementations ------------------------------------------------ */

typedef enum
{
  IMPL_SLUICE,
  IMPL_TBB,
  IMPL_SERIAL,
  IMPL_PYTHON,
  N_IMPLS
} Impl;

static const char *impl_names[N_IMPLS] = { "sluice", "tbb", "serial", "python" };

#define P(n) GSIZE_TO_POINTER ((gsize) (n))
#define N(p) ((uint64_t) GPOINTER_TO_SIZE (p))

static gboolean
parse_stage (SluicePipelineEmitter *emitter, gpointer item, gpointer data, GError **error)
{
  sluice_pipeline_emitter_emit (emitter, P (pipeline_parse (N (item))));
  return TRUE;
}

static gboolean
work_stage (SluicePipelineEmitter *emitter, gpointer item, gpointer data, GError **error)
{
  sluice_pipeline_emitter_emit (emitter, P (pipeline_work (N (item), GPOINTER_TO_UINT (data))));
  return TRUE;
}

static gboolean
sink_consumer (SluiceConsumerator *outputs, gpointer data, GError **error)
{
  BenchTally *tally = data;
  gpointer item;

  while (sluice_consumerator_next (outputs, &item, error))
    bench_tally_add (tally, N (item), 0);
  return *error == NULL;
}

static double
sluice_run (uint64_t n, guint32 work_iters, BenchTally *tally)
{
  g_autoptr (GError) error = NULL;
  SluicePipeline *pipeline = sluice_pipeline_new (TRUE, opt_window, NULL);
  double t0;

  bench_tally_init (tally);
  sluice_pipeline_add_stage (pipeline, "parse", 1, opt_window, parse_stage, NULL, NULL);
  sluice_pipeline_add_stage (pipeline, "work", opt_threads, opt_window, work_stage,
                             GUINT_TO_POINTER (work_iters), NULL);
  t0 = bench_now ();
  sluice_pipeline_start (pipeline, sink_consumer, tally, NULL);
  for (uint64_t i = 0; i < n; i++)
    if (!sluice_pipeline_put (pipeline, P (i), NULL, &error))
      fail ("put: %s", error->message);
  sluice_pipeline_close_input (pipeline);
  if (!sluice_pipeline_join (pipeline, -1, &error))
    fail ("join: %s", error->message);
  t0 = bench_now () - t0;
  last_sleeps = 0;
  {
    g_autoptr (GVariant) stats = sluice_pipeline_get_stats (pipeline);
    g_autoptr (GVariant) stages = g_variant_lookup_value (stats, "stages", NULL);

    for (gsize i = 0; stages != NULL && i < g_variant_n_children (stages); i++)
      {
        g_autoptr (GVariant) stage = g_variant_get_child_value (stages, i);
        guint64 v;

        if (g_variant_lookup (stage, "sleeps", "t", &v))
          last_sleeps += v;
      }
  }
  g_object_unref (pipeline);
  return t0;
}

static double
serial_run (uint64_t n, guint32 work_iters, BenchTally *tally)
{
  double t0 = bench_now ();

  bench_tally_init (tally);
  for (uint64_t i = 0; i < n; i++)
    {
      uint64_t value = pipeline_work (pipeline_parse (i), work_iters);

      __asm__ volatile("" : "+r"(value));
      bench_tally_add (tally, value, 0);
    }
  return bench_now () - t0;
}

/* The Python pipeline in a child process: its own time, start-up excluded. */
static double
python_run (uint64_t n, BenchTally *tally)
{
  g_autofree char *n_str = g_strdup_printf ("%" G_GUINT64_FORMAT, n);
  g_autofree char *t_str = g_strdup_printf ("%d", opt_threads);
  const char *argv[] = { opt_python, opt_python_script, n_str, t_str, NULL };
  g_autofree char *out = NULL;
  g_autoptr (GError) error = NULL;
  int status;
  double seconds;
  guint64 count;

  if (!g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, NULL, &status,
                     &error) ||
      !g_spawn_check_wait_status (status, &error))
    fail ("%s: %s", opt_python_script, error->message);
  if (sscanf (out, "%lf %" G_GUINT64_FORMAT, &seconds, &count) != 2 || count != n)
    fail ("%s: unexpected output: %s", opt_python_script, out);
  /* It checked its own order and sums. */
  bench_tally_init (tally);
  tally->count = count;
  return seconds;
}

static gboolean
in_list (const char *list, const char *name)
{
  g_auto (GStrv) names = NULL;

  if (list == NULL)
    return TRUE;
  names = g_strsplit (list, ",", -1);
  return g_strv_contains ((const char *const *) names, name);
}

static gboolean
impl_available (Impl impl)
{
  if (!in_list (opt_impls, impl_names[impl]))
    return FALSE;
  switch (impl)
    {
    case IMPL_TBB:
#ifdef HAVE_TBB
      return TRUE;
#else
      return FALSE;
#endif
    case IMPL_PYTHON:
      return opt_python_script != NULL && g_file_test (opt_python, G_FILE_TEST_IS_EXECUTABLE);
    default:
      return TRUE;
    }
}

static double
impl_run (Impl impl, uint64_t n, guint32 work_iters, BenchTally *tally)
{
  switch (impl)
    {
    case IMPL_SLUICE:
      return sluice_run (n, work_iters, tally);
#ifdef HAVE_TBB
    case IMPL_TBB:
      return pipeline_tbb_run (n, work_iters, opt_window, opt_threads, tally);
#endif
    case IMPL_SERIAL:
      return serial_run (n, work_iters, tally);
    case IMPL_PYTHON:
      return python_run (n, tally);
    default:
      g_assert_not_reached ();
    }
}

/* ---- workloads ---------------------------------------------------------- */

typedef struct
{
  const char *name;
  double work_us;
  uint64_t n[N_IMPLS]; /* 0: the implementation does not run it */
  guint32 work_iters;
  BenchTally expected;
  int n_reps;
  double seconds[N_IMPLS][MAX_REPS];
  double cpu_per_item[N_IMPLS][MAX_REPS]; /* this process's, µs */
} Workload;

static void
check (Workload *w, Impl impl, const BenchTally *t, uint64_t n)
{
  if (t->count != n)
    fail ("%s %s: %" G_GUINT64_FORMAT " items, not %" G_GUINT64_FORMAT, w->name, impl_names[impl],
          (guint64) t->count, (guint64) n);
  if (impl == IMPL_PYTHON)
    return;
  if (!t->order_ok)
    fail ("%s %s: out of order", w->name, impl_names[impl]);
  if (n == w->expected.count &&
      (t->sum_lo != w->expected.sum_lo || t->sum_hi != w->expected.sum_hi))
    fail ("%s %s: wrong sums", w->name, impl_names[impl]);
}

static void
run_workload (Workload *w, int reps)
{
  Impl order[N_IMPLS];
  int n_order = 0;

  w->work_iters = w->work_us > 0 ? (guint32) MAX (1.0, w->work_us * busy_iters_per_us) : 0;
  /* The serial run sets the expected sums. */
  for (int i = N_IMPLS - 1; i >= 0; i--)
    if (w->n[i] > 0 && impl_available (i))
      order[n_order++] = i;
  serial_run (w->n[IMPL_SLUICE], w->work_iters, &w->expected);
  fprintf (stderr, "%s: %.0f µs of work per item, %d repetitions\n", w->name, w->work_us, reps);

  /* Warm-up: threads, allocator arenas, lazy initialisation. */
  for (int i = 0; i < n_order; i++)
    if (order[i] != IMPL_PYTHON)
      {
        BenchTally t;
        uint64_t n = MIN (w->n[order[i]], 20000);

        impl_run (order[i], n, w->work_iters, &t);
        check (w, order[i], &t, n);
      }

  for (int rep = 0; rep < reps; rep++)
    {
      for (int j = 0; j < n_order; j++)
        {
          Impl impl = order[(j + rep) % n_order];
          uint64_t n = w->n[impl];
          BenchTally t;
          double cpu = cpu_now ();
          double switches = switches_now ();
          double seconds = impl_run (impl, n, w->work_iters, &t);

          cpu = cpu_now () - cpu;
          switches = switches_now () - switches;
          check (w, impl, &t, n);
          w->seconds[impl][rep] = seconds;
          w->cpu_per_item[impl][rep] = cpu * 1e6 / n;
          fprintf (stderr, "  %-8s %-7s rep %d: %8.3f s %10.0f items/s %7.3f µs CPU/item", w->name,
                   impl_names[impl], rep + 1, seconds, n / seconds,
                   impl == IMPL_PYTHON ? NAN : cpu * 1e6 / n);
          /* Load-independent proxies of the wake-ups per item. */
          if (impl != IMPL_PYTHON)
            fprintf (stderr, " %6.3f switches/item", switches / n);
          if (impl == IMPL_SLUICE)
            fprintf (stderr, " %6.3f stage sleeps/item", (double) last_sleeps / n);
          fprintf (stderr, "\n");
        }
    }
  w->n_reps = reps;
}

/* Rates per repetition: items per second of @impl. */
static void
rates (const Workload *w, Impl impl, double *out)
{
  for (int r = 0; r < w->n_reps; r++)
    out[r] = w->n[impl] / w->seconds[impl][r];
}

/* The median over the repetitions of @a's rate over @b's (within each
 * repetition), with the range. */
static double
paired (const Workload *w, Impl a, Impl b, double *lo, double *hi)
{
  double ra[MAX_REPS], rb[MAX_REPS], ratio[MAX_REPS];

  rates (w, a, ra);
  rates (w, b, rb);
  for (int r = 0; r < w->n_reps; r++)
    ratio[r] = ra[r] / rb[r];
  *lo = bench_min_of (ratio, w->n_reps);
  *hi = bench_max_of (ratio, w->n_reps);
  return bench_median (ratio, w->n_reps);
}

static gboolean
wanted (const char *name)
{
  return in_list (opt_only, name);
}

/* Prints @a's rate over @b's, and a RESULT line @key when given. */
static void
ratio_line (const Workload *w, Impl a, Impl b, const char *goal, const char *key, GString *results)
{
  double lo, hi, med;

  if (w->n[a] == 0 || w->n[b] == 0 || !impl_available (a) || !impl_available (b))
    return;
  med = paired (w, a, b, &lo, &hi);
  printf ("  %s: %s / %s: %.3f [%.3f .. %.3f] %s\n", w->name, impl_names[a], impl_names[b], med, lo,
          hi, goal);
  if (key != NULL)
    g_string_append_printf (results, "RESULT %s=%.3f\n", key, med);
}

static void
print_rows (const Workload *w)
{
  for (int i = 0; i < N_IMPLS; i++)
    {
      double r[MAX_REPS];

      if (w->n[i] == 0 || !impl_available (i))
        continue;
      rates (w, i, r);
      printf ("  %-8s %-7s %12.0f items/s [%.0f .. %.0f]", w->name, impl_names[i],
              bench_median (r, w->n_reps), bench_min_of (r, w->n_reps),
              bench_max_of (r, w->n_reps));
      if (i != IMPL_PYTHON)
        printf ("  %7.3f µs CPU/item", bench_median (w->cpu_per_item[i], w->n_reps));
      printf ("\n");
    }
}

int
main (int argc, char *argv[])
{
  g_autoptr (GOptionContext) context = g_option_context_new ("- SluicePipeline benchmark");
  g_autoptr (GError) error = NULL;
  GString *results = g_string_new (NULL);
  double q;
  int reps;
  Workload small = { "small", 2 };
  Workload large = { "large", 50 };
  Workload trivial = { "trivial", 0 };

  g_option_context_add_main_entries (context, option_entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      fprintf (stderr, "pipeline-bench: %s\n", error->message);
      return 2;
    }
  reps = opt_reps > 0 ? MIN (opt_reps, MAX_REPS) : (opt_quick ? 2 : 5);
  q = opt_quick ? 0.1 : 1.0;
  busy_iters_per_us = bench_calibrate ();

  small.n[IMPL_SLUICE] = small.n[IMPL_TBB] = (uint64_t) (1000000 * q);
  large.n[IMPL_SLUICE] = large.n[IMPL_TBB] = large.n[IMPL_SERIAL] = (uint64_t) (40000 * q);
  trivial.n[IMPL_SLUICE] = (uint64_t) (2000000 * q);
  trivial.n[IMPL_TBB] = trivial.n[IMPL_SLUICE];
  trivial.n[IMPL_PYTHON] = (uint64_t) (200000 * q);

  printf ("SluicePipeline: parse (1 thread) -> work (%d threads) -> in-order sink; window %d;"
          " %d repetitions%s\n",
          opt_threads, opt_window, reps, opt_quick ? " (quick)" : "");
  printf ("items per second: median [range]; CPU time of this process per item (median);"
          " busy work calibrated at %u iterations per µs\n",
          busy_iters_per_us);
  if (wanted ("small"))
    {
      run_workload (&small, reps);
      print_rows (&small);
      ratio_line (&small, IMPL_SLUICE, IMPL_TBB, "(goal >= 1.0)", "pipeline_small_vs_tbb", results);
    }
  if (wanted ("large"))
    {
      run_workload (&large, reps);
      print_rows (&large);
      ratio_line (&large, IMPL_SLUICE, IMPL_SERIAL, "(goal >= 1.95 on 2 cores)",
                  "pipeline_large_speedup", results);
      ratio_line (&large, IMPL_TBB, IMPL_SERIAL, "", NULL, results);
    }
  if (wanted ("trivial"))
    {
      run_workload (&trivial, reps);
      print_rows (&trivial);
      ratio_line (&trivial, IMPL_SLUICE, IMPL_PYTHON, "(goal >= 50)", "pipeline_vs_python",
                  results);
      ratio_line (&trivial, IMPL_SLUICE, IMPL_TBB, "", NULL, results);
    }
  if (!impl_available (IMPL_TBB))
    g_string_append (results, "RESULT pipeline_tbb_available=0\n");
  fputs (results->str, stdout);
  g_string_free (results, TRUE);
  return 0;
}
