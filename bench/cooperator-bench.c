/* cooperator-bench.c: the cooperator's and the job queue's overhead, against
 * plain GLib and against the seeds on Twisted, in one run
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Run through bench/cooperator-run. Two workloads:
 *
 * - steps: 10,000,000 trivial steps over 100 tasks. sluice: one
 *   SluiceCooperator, default settings (10 ms slices, its own source).
 *   idle: one g_idle_add() source per task, one step per dispatch, on the
 *   same context. twisted: Twisted's Cooperator, default settings
 *   (bench/cooperator_twisted.py, Debian's python3-twisted).
 * - jobs: 1,000,000 trivial jobs over 100 channels, 10 puts in flight per
 *   channel (each completion puts the next), every second job completing
 *   later from an idle source. sluice: a SluiceJobQueue run by a
 *   cooperator. glib: a GHashTable of per-channel GQueues run from one
 *   idle source, written for the bench. twisted: the seed's JobQueue
 *   semantics on Twisted.
 *
 * Every rep runs the in-process implementations in a rotated order; a
 * ratio is the median over the reps of the ratio within a rep. The
 * Twisted runs are child processes. Output: a table, then RESULT lines.
 */

#include <sluice/sluice.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#define N_TASKS 100
#define N_CHANNELS 100
#define IN_FLIGHT 10
#define MAX_REPS 16

static gboolean opt_quick;
static int opt_reps = 0;
static char *opt_only;
static char *opt_impl;
static gboolean opt_no_twisted;
static char *opt_python = "/usr/bin/python3";
static char *opt_twisted_script;

/* --- steps --- */

typedef struct
{
  guint left;
  guint *n_done;
} StepCounter;

static SluiceStepResult
trivial_step (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  StepCounter *counter = user_data;

  if (--counter->left == 0)
    {
      (*counter->n_done)++;
      return SLUICE_STEP_DONE;
    }
  return SLUICE_STEP_CONTINUE;
}

static double
run_sluice_steps (guint n_steps)
{
  SluiceCooperator *cooperator = sluice_cooperator_new ();
  StepCounter counters[N_TASKS];
  SluiceCooperativeTask *tasks[N_TASKS];
  guint n_done = 0;
  gint64 start;
  double elapsed;

  for (guint i = 0; i < N_TASKS; i++)
    counters[i] = (StepCounter){ n_steps / N_TASKS, &n_done };
  start = g_get_monotonic_time ();
  for (guint i = 0; i < N_TASKS; i++)
    tasks[i] = sluice_cooperator_cooperate (cooperator, trivial_step, &counters[i], NULL);
  while (n_done < N_TASKS)
    g_main_context_iteration (NULL, TRUE);
  elapsed = (g_get_monotonic_time () - start) / 1e6;
  for (guint i = 0; i < N_TASKS; i++)
    g_object_unref (tasks[i]);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_object_unref (cooperator);
  return n_steps / elapsed;
}

static gboolean
idle_step (gpointer user_data)
{
  StepCounter *counter = user_data;

  if (--counter->left == 0)
    {
      (*counter->n_done)++;
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static double
run_idle_steps (guint n_steps)
{
  StepCounter counters[N_TASKS];
  guint n_done = 0;
  gint64 start;

  for (guint i = 0; i < N_TASKS; i++)
    counters[i] = (StepCounter){ n_steps / N_TASKS, &n_done };
  start = g_get_monotonic_time ();
  for (guint i = 0; i < N_TASKS; i++)
    g_idle_add (idle_step, &counters[i]);
  while (n_done < N_TASKS)
    g_main_context_iteration (NULL, TRUE);
  return n_steps / ((g_get_monotonic_time () - start) / 1e6);
}

/* --- jobs --- */

typedef struct
{
  guint n_done;
  guint n_total;
  guint remaining[N_CHANNELS];
  char names[N_CHANNELS][16];
} JobRun;

static gboolean
complete_sluice_job (gpointer job)
{
  sluice_job_complete (job, NULL, NULL);
  return G_SOURCE_REMOVE;
}

/* The queue holds a job's handle until it is completed (SluiceJobFunc): the
 * idle takes no reference, as the GLib baseline's idle takes its job. */
static void
sluice_trivial_job (SluiceJob *job, gpointer user_data, GError **error)
{
  if (GPOINTER_TO_UINT (user_data) % 2 == 0)
    sluice_job_complete (job, user_data, NULL);
  else
    g_idle_add (complete_sluice_job, job);
}

static JobRun job_run;
static SluiceJobQueue *bench_queue;

static void sluice_put_next (guint channel);

static void
on_sluice_put (GObject *queue, GAsyncResult *result, gpointer user_data)
{
  guint channel = GPOINTER_TO_UINT (user_data);

  /* Even jobs return their number, odd ones NULL. (bench_queue is @queue:
   * no checked cast per job, as the GLib baseline has none.) */
  gpointer value = sluice_job_queue_put_finish (bench_queue, result, NULL);

  g_assert (value == NULL || GPOINTER_TO_UINT (value) % 2 == 0);
  job_run.n_done++;
  if (job_run.remaining[channel] > 0)
    sluice_put_next (channel);
}

static void
sluice_put_next (guint channel)
{
  guint n = --job_run.remaining[channel];

  sluice_job_queue_put_async (bench_queue, job_run.names[channel], sluice_trivial_job,
                              GUINT_TO_POINTER (n), NULL, NULL, on_sluice_put,
                              GUINT_TO_POINTER (channel));
}

static void
job_run_init (guint n_jobs)
{
  job_run.n_done = 0;
  job_run.n_total = n_jobs / N_CHANNELS * N_CHANNELS;
  for (guint c = 0; c < N_CHANNELS; c++)
    {
      job_run.remaining[c] = n_jobs / N_CHANNELS;
      g_snprintf (job_run.names[c], sizeof job_run.names[c], "channel %u", c);
    }
}

static double
run_sluice_jobs (guint n_jobs)
{
  SluiceCooperator *cooperator = sluice_cooperator_new ();
  SluiceCooperativeTask *task;
  gint64 start;
  double elapsed;

  job_run_init (n_jobs);
  bench_queue = sluice_job_queue_new ();
  start = g_get_monotonic_time ();
  task = sluice_job_queue_cooperate (bench_queue, cooperator);
  for (guint c = 0; c < N_CHANNELS; c++)
    for (guint i = 0; i < IN_FLIGHT; i++)
      sluice_put_next (c);
  while (job_run.n_done < job_run.n_total)
    g_main_context_iteration (NULL, TRUE);
  elapsed = (g_get_monotonic_time () - start) / 1e6;
  sluice_cooperator_stop (cooperator);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_object_unref (task);
  g_clear_object (&bench_queue);
  g_object_unref (cooperator);
  return job_run.n_done / elapsed;
}

/* The plain GLib baseline: channels in a hash table, each a GQueue of
 * jobs, a ring of ready channels, one idle source that runs ready jobs. */

typedef struct GlibChannel GlibChannel;

typedef struct
{
  GlibChannel *channel;
  guint n;
} GlibJob;

struct GlibChannel
{
  char *name;
  guint index;
  GQueue jobs;
  gboolean busy;
  gboolean ready;
};

typedef struct
{
  GHashTable *channels;
  GQueue ready;
  guint idle_id;
} GlibQueue;

static GlibQueue glib_queue;

static gboolean glib_run_ready (gpointer unused);

static void
glib_ensure_idle (void)
{
  if (glib_queue.idle_id == 0 && glib_queue.ready.length > 0)
    glib_queue.idle_id = g_idle_add (glib_run_ready, NULL);
}

static void
glib_mark_ready (GlibChannel *channel)
{
  if (channel->busy || channel->ready || channel->jobs.length == 0)
    return;
  channel->ready = TRUE;
  g_queue_push_tail (&glib_queue.ready, channel);
  glib_ensure_idle ();
}

static void glib_put_next (guint channel);

static void
glib_job_done (GlibJob *job)
{
  GlibChannel *channel = job->channel;

  channel->busy = FALSE;
  g_free (job);
  job_run.n_done++;
  if (job_run.remaining[channel->index] > 0)
    glib_put_next (channel->index);
  glib_mark_ready (channel);
}

static gboolean
glib_complete_later (gpointer job)
{
  glib_job_done (job);
  return G_SOURCE_REMOVE;
}

/* Runs every ready job, those made ready meanwhile included. */
static gboolean
glib_run_ready (gpointer unused)
{
  GlibChannel *channel;

  while ((channel = g_queue_pop_head (&glib_queue.ready)) != NULL)
    {
      GlibJob *job;

      channel->ready = FALSE;
      job = g_queue_pop_head (&channel->jobs);
      channel->busy = TRUE;
      if (job->n % 2 == 0)
        glib_job_done (job);
      else
        g_idle_add (glib_complete_later, job);
    }
  glib_queue.idle_id = 0;
  return G_SOURCE_REMOVE;
}

static void
glib_put_next (guint index)
{
  GlibChannel *channel = g_hash_table_lookup (glib_queue.channels, job_run.names[index]);
  GlibJob *job = g_new (GlibJob, 1);

  if (channel == NULL)
    {
      channel = g_new0 (GlibChannel, 1);
      channel->name = g_strdup (job_run.names[index]);
      channel->index = index;
      g_hash_table_insert (glib_queue.channels, channel->name, channel);
    }
  job->channel = channel;
  job->n = --job_run.remaining[index];
  g_queue_push_tail (&channel->jobs, job);
  glib_mark_ready (channel);
}

static void
glib_channel_free (gpointer channel)
{
  g_free (((GlibChannel *) channel)->name);
  g_free (channel);
}

static double
run_glib_jobs (guint n_jobs)
{
  gint64 start;
  double elapsed;

  job_run_init (n_jobs);
  glib_queue.channels = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, glib_channel_free);
  start = g_get_monotonic_time ();
  for (guint c = 0; c < N_CHANNELS; c++)
    for (guint i = 0; i < IN_FLIGHT; i++)
      glib_put_next (c);
  while (job_run.n_done < job_run.n_total)
    g_main_context_iteration (NULL, TRUE);
  elapsed = (g_get_monotonic_time () - start) / 1e6;
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_hash_table_unref (glib_queue.channels);
  return job_run.n_done / elapsed;
}

/* --- Twisted, in a child process --- */

static double
run_twisted (const char *const *args)
{
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  g_autoptr (GError) error = NULL;
  int status;
  const char *rate;

  g_ptr_array_add (argv, opt_python);
  g_ptr_array_add (argv, opt_twisted_script);
  for (; *args != NULL; args++)
    g_ptr_array_add (argv, (gpointer) *args);
  g_ptr_array_add (argv, NULL);
  if (!g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err,
                     &status, &error) ||
      !g_spawn_check_wait_status (status, &error) || (rate = strstr (out, "RATE ")) == NULL)
    {
      fprintf (stderr, "cooperator-bench: the Twisted run failed: %s\n%s",
               error != NULL ? error->message : "no RATE line", err != NULL ? err : "");
      return NAN;
    }
  return g_ascii_strtod (rate + 5, NULL);
}

static double
run_twisted_steps (guint n_steps)
{
  g_autofree char *n = g_strdup_printf ("%u", n_steps);
  g_autofree char *tasks = g_strdup_printf ("%u", N_TASKS);
  const char *args[] = { "steps", n, tasks, NULL };

  return run_twisted (args);
}

static double
run_twisted_jobs (guint n_jobs)
{
  g_autofree char *n = g_strdup_printf ("%u", n_jobs);
  g_autofree char *channels = g_strdup_printf ("%u", N_CHANNELS);
  g_autofree char *in_flight = g_strdup_printf ("%u", IN_FLIGHT);
  const char *args[] = { "jobs", n, channels, in_flight, NULL };

  return run_twisted (args);
}

/* --- the harness --- */

typedef double (*RunFunc) (guint n);

typedef struct
{
  const char *name;
  RunFunc run;
  double rates[MAX_REPS];
  double cpu_ns[MAX_REPS]; /* CPU time (user + system, children too) per unit */
} Impl;

/* CPU seconds used so far by this process and its waited-for children. */
static double
cpu_seconds (void)
{
  struct rusage self, children;

  getrusage (RUSAGE_SELF, &self);
  getrusage (RUSAGE_CHILDREN, &children);
  return self.ru_utime.tv_sec + self.ru_stime.tv_sec + children.ru_utime.tv_sec +
         children.ru_stime.tv_sec +
         (self.ru_utime.tv_usec + self.ru_stime.tv_usec + children.ru_utime.tv_usec +
          children.ru_stime.tv_usec) /
             1e6;
}

static int
compare_doubles (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;

  return (x > y) - (x < y);
}

static double
median (const double *values, int n)
{
  double sorted[MAX_REPS];
  int m = 0;

  for (int i = 0; i < n; i++)
    if (!isnan (values[i]))
      sorted[m++] = values[i];
  if (m == 0)
    return NAN;
  qsort (sorted, m, sizeof (double), compare_doubles);
  return m % 2 ? sorted[m / 2] : (sorted[m / 2 - 1] + sorted[m / 2]) / 2;
}

static double
paired_ratio (const Impl *a, const Impl *b, int reps)
{
  double ratios[MAX_REPS];

  for (int r = 0; r < reps; r++)
    ratios[r] = a->rates[r] / b->rates[r];
  return median (ratios, reps);
}

static void
run_workload (const char *workload, const char *unit, guint n, Impl *impls, int n_impls, int reps)
{
  for (int r = 0; r < reps; r++)
    for (int k = 0; k < n_impls; k++)
      {
        Impl *impl = &impls[(r + k) % n_impls];

        double cpu_start;

        if (opt_impl != NULL && !g_str_equal (opt_impl, impl->name))
          {
            impl->rates[r] = impl->cpu_ns[r] = NAN;
            continue;
          }
        cpu_start = cpu_seconds ();
        impl->rates[r] = impl->run (n);
        impl->cpu_ns[r] = (cpu_seconds () - cpu_start) * 1e9 / n;
        fprintf (stderr, "  %s rep %d %-8s %12.0f %s/s %8.1f CPU ns/%s\n", workload, r + 1,
                 impl->name, impl->rates[r], unit, impl->cpu_ns[r], unit);
      }
  for (int k = 0; k < n_impls; k++)
    {
      double lo = INFINITY, hi = 0, med = median (impls[k].rates, reps);

      for (int r = 0; r < reps; r++)
        {
          lo = MIN (lo, impls[k].rates[r]);
          hi = MAX (hi, impls[k].rates[r]);
        }
      printf ("%-24s %-8s %14.0f  [%.0f .. %.0f] %s/s  %8.1f ns/%s  CPU %.1f ns/%s\n", workload,
              impls[k].name, med, lo, hi, unit, 1e9 / med, unit, median (impls[k].cpu_ns, reps),
              unit);
    }
}

/* RESULT lines: the rate of sluice (impls[0]) and its ratio to each other
 * implementation, as PREFIX_UNITS_per_s and PREFIX_vs_NAME. */
static void
report (GString *results, const char *prefix, const char *units, Impl *impls, int n_impls, int reps)
{
  g_string_append_printf (results, "RESULT %s_%s_per_s=%.0f\n", prefix, units,
                          median (impls[0].rates, reps));
  for (int k = 1; k < n_impls; k++)
    g_string_append_printf (results, "RESULT %s_vs_%s=%.3f\n", prefix, impls[k].name,
                            paired_ratio (&impls[0], &impls[k], reps));
}

static gboolean
wanted (const char *workload)
{
  return opt_only == NULL || g_str_equal (opt_only, workload);
}

int
main (int argc, char **argv)
{
  GOptionEntry entries[] = {
    { "quick", 0, 0, G_OPTION_ARG_NONE, &opt_quick, "a smoke run (a tenth of the counts)", NULL },
    { "reps", 0, 0, G_OPTION_ARG_INT, &opt_reps, "repetitions (default 5, 2 with --quick)", "N" },
    { "only", 0, 0, G_OPTION_ARG_STRING, &opt_only, "one workload: steps or jobs", "NAME" },
    { "impl", 0, 0, G_OPTION_ARG_STRING, &opt_impl,
      "run one implementation only (sluice, idle, glib or twisted: for profiling)", "NAME" },
    { "no-twisted", 0, 0, G_OPTION_ARG_NONE, &opt_no_twisted, "skip the Twisted runs", NULL },
    { "python", 0, 0, G_OPTION_ARG_FILENAME, &opt_python, "the Python with Twisted", "PATH" },
    { "twisted-script", 0, 0, G_OPTION_ARG_FILENAME, &opt_twisted_script,
      "bench/cooperator_twisted.py", "PATH" },
    { NULL }
  };
  g_autoptr (GOptionContext) context = g_option_context_new ("- cooperator and job queue bench");
  g_autoptr (GError) error = NULL;
  g_autoptr (GString) results = g_string_new ("");
  gboolean twisted;
  guint n_steps, n_jobs;
  int reps;

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      fprintf (stderr, "cooperator-bench: %s\n", error->message);
      return 2;
    }
  reps = opt_reps > 0 ? MIN (opt_reps, MAX_REPS) : opt_quick ? 2 : 5;
  n_steps = opt_quick ? 1000000 : 10000000;
  n_jobs = opt_quick ? 100000 : 1000000;
  twisted = !opt_no_twisted && opt_twisted_script != NULL;
  if (!twisted)
    fprintf (stderr, "cooperator-bench: no Twisted runs (--no-twisted or no --twisted-script)\n");

  printf ("%-24s %-8s %14s  %s\n", "workload", "impl", "median", "[min .. max], ns each");
  if (wanted ("steps"))
    {
      Impl impls[] = {
        { "sluice", run_sluice_steps },
        { "idle", run_idle_steps },
        { "twisted", run_twisted_steps },
      };
      g_autofree char *name = g_strdup_printf ("steps (%u, %u tasks)", n_steps, N_TASKS);

      run_workload (name, "step", n_steps, impls, twisted ? 3 : 2, reps);
      report (results, "cooperator", "steps", impls, twisted ? 3 : 2, reps);
    }
  if (wanted ("jobs"))
    {
      Impl impls[] = {
        { "sluice", run_sluice_jobs },
        { "glib", run_glib_jobs },
        { "twisted", run_twisted_jobs },
      };
      g_autofree char *name = g_strdup_printf ("jobs (%u, %u channels)", n_jobs, N_CHANNELS);

      run_workload (name, "job", n_jobs, impls, twisted ? 3 : 2, reps);
      report (results, "jobqueue", "jobs", impls, twisted ? 3 : 2, reps);
    }
  printf ("%s", results->str);
  return 0;
}
