/* worker-bench.c: named calls through a SluiceProcessWorker, 1 and 2
 * helper processes, against Python's multiprocessing.Pool.imap
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Run through bench/worker-run. Workloads, each call one round trip to a
 * sluice-worker helper serving doc/examples/worker-module.c (one thread
 * per helper; the worker's own window per helper, which adapts to the
 * calls (at most 128; --max-calls caps it otherwise), so that it never
 * waits for the next: Python's pool streams its tasks too):
 *
 * - trivial: "echo" of an integer;
 * - busy50: "busy", 50 µs of CPU in the helper.
 *
 * 256 calls are kept in flight at the queue (each completion makes the
 * next), with 1 helper as with 2: the same setting for both, and the
 * default window of a SluiceOrderedItemProducer, so each helper holds as
 * many as its window (at most 64) whatever their number (session 12 kept
 * 64 in all, 32 per helper with 2, which kept the batches of 2 helpers
 * half the size of 1's: --in-flight 64 runs that bench;
 * --in-flight-per-helper counts N per helper). The Python baseline
 * (bench/worker_pool.py) runs the same two functions with
 * multiprocessing.Pool(n).imap(chunksize=1), start-up
 * excluded. Each rep runs the configurations in a rotated order; figures
 * are medians over the reps, ratios the median of the ratios within a
 * rep. Output: a table, then RESULT lines.
 */

#include <sluice/sluice.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Calls kept in flight at the queue, in all: a producer's default window. */
#define IN_FLIGHT 256
#define MAX_REPS 16
#define MAX_THREADS 64

static int opt_in_flight = IN_FLIGHT;     /* in all */
static gboolean opt_in_flight_per_helper; /* opt_in_flight per helper process */
static gboolean opt_per_thread;

static gboolean opt_quick;
static int opt_reps;
static int opt_max_calls; /* 0: the worker's default */
static int opt_calls;     /* 0: the default number of calls per run */
static char *opt_tool;
static char *opt_module;
static char *opt_python = "/usr/bin/python3";
static char *opt_pool_script;
static char *opt_only;

/* CPU time (user + system) of the last run, in µs per call: of this
 * process, and of its children (the helpers, or Python and its pool). */
static double cpu_self_per_call;
static double cpu_children_per_call;
/* Of the last run of a process worker: messages per call (CallMany sent,
 * Results received), and context switches per call (voluntary and not) of
 * this process and its children. */
static double call_messages_per_call;
static double result_messages_per_call;
static double switches_per_call;

static gint64
switches (int who)
{
  struct rusage usage;

  getrusage (who, &usage);
  return usage.ru_nvcsw + usage.ru_nivcsw;
}

static guint64
stat_of (SluiceProcessWorker *worker, const char *name)
{
  GVariant *stats = sluice_process_worker_get_stats (worker);
  guint64 value = 0;

  g_variant_lookup (stats, name, "t", &value);
  g_variant_unref (stats);
  return value;
}

static gint64
cpu_us (int who)
{
  struct rusage usage;

  getrusage (who, &usage);
  return (gint64) (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * G_USEC_PER_SEC +
         usage.ru_utime.tv_usec + usage.ru_stime.tv_usec;
}

/* Waits until the processes @pids are gone (reaped), so that their CPU
 * time counts in RUSAGE_CHILDREN. */
static void
wait_reaped (char **pids)
{
  for (guint i = 0; pids != NULL && pids[i] != NULL; i++)
    {
      pid_t pid = (pid_t) g_ascii_strtoll (pids[i], NULL, 10);

      while (kill (pid, 0) == 0 || errno != ESRCH)
        {
          g_main_context_iteration (NULL, FALSE);
          g_usleep (1000);
        }
    }
}

/* --per-thread: CPU time and context switches of each thread of this
 * process and of the helpers, from /proc (clock ticks; runs of a second
 * or more make them precise to a few per cent). */
typedef struct
{
  char who[48];
  gint64 tid;
  gint64 ticks;
  gint64 switches;
  gint64 run_ns;  /* on a CPU (schedstat) */
  gint64 wait_ns; /* runnable, waiting for a CPU (schedstat) */
} ThreadStat;

typedef struct
{
  guint n;
  ThreadStat threads[MAX_THREADS];
} ThreadStats;

static gint64
status_field (const char *status, const char *name)
{
  const char *at = strstr (status, name);

  return at != NULL ? g_ascii_strtoll (at + strlen (name), NULL, 10) : 0;
}

static void
thread_stats_add (ThreadStats *stats, const char *pid, const char *role)
{
  g_autofree char *dir_name = g_strdup_printf ("/proc/%s/task", pid);
  GDir *dir = g_dir_open (dir_name, 0, NULL);
  const char *tid;

  while (dir != NULL && stats->n < MAX_THREADS && (tid = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *stat_name = g_strdup_printf ("%s/%s/stat", dir_name, tid);
      g_autofree char *status_name = g_strdup_printf ("%s/%s/status", dir_name, tid);
      g_autofree char *schedstat_name = g_strdup_printf ("%s/%s/schedstat", dir_name, tid);
      g_autofree char *stat = NULL, *status = NULL, *schedstat = NULL;
      ThreadStat *thread = &stats->threads[stats->n];
      char *comm_end;
      char **fields;

      if (!g_file_get_contents (stat_name, &stat, NULL, NULL) ||
          !g_file_get_contents (status_name, &status, NULL, NULL) ||
          (comm_end = strrchr (stat, ')')) == NULL)
        continue;
      *comm_end = '\0';
      g_snprintf (thread->who, sizeof thread->who, "%s %s", role, strchr (stat, '(') + 1);
      thread->tid = g_ascii_strtoll (tid, NULL, 10);
      /* After the comm: state is field 3, utime 14, stime 15. */
      fields = g_strsplit (comm_end + 2, " ", 16);
      thread->ticks = g_strv_length (fields) > 13 ? g_ascii_strtoll (fields[11], NULL, 10) +
                                                        g_ascii_strtoll (fields[12], NULL, 10)
                                                  : 0;
      g_strfreev (fields);
      thread->switches = status_field (status, "voluntary_ctxt_switches:") +
                         status_field (status, "nonvoluntary_ctxt_switches:");
      thread->run_ns = thread->wait_ns = 0;
      if (g_file_get_contents (schedstat_name, &schedstat, NULL, NULL))
        {
          char *end;

          thread->run_ns = g_ascii_strtoll (schedstat, &end, 10);
          thread->wait_ns = g_ascii_strtoll (end, NULL, 10);
        }
      stats->n++;
    }
  if (dir != NULL)
    g_dir_close (dir);
}

static void
thread_stats_take (ThreadStats *stats, SluiceProcessWorker *worker)
{
  g_auto (GStrv) pids = sluice_process_worker_dup_pids (worker);
  g_autofree char *self = g_strdup_printf ("%d", (int) getpid ());

  stats->n = 0;
  thread_stats_add (stats, self, "parent");
  for (guint i = 0; pids != NULL && pids[i] != NULL; i++)
    {
      char role[16];

      g_snprintf (role, sizeof role, "helper%u", i + 1);
      thread_stats_add (stats, pids[i], role);
    }
}

/* Prints each thread's CPU µs and switches per call between @start and
 * @end (@wall_us apart), those that ran; from schedstat (ns), the time it
 * ran, the time it waited for a CPU (runnable, preempted) and the time it
 * slept, per call (a runner that sleeps has no call to run). */
static void
thread_stats_print (const ThreadStats *start, const ThreadStats *end, guint n, gint64 wall_us)
{
  double tick_us = 1e6 / sysconf (_SC_CLK_TCK);

  for (guint i = 0; i < end->n; i++)
    {
      const ThreadStat *e = &end->threads[i];
      gint64 ticks = e->ticks, switches = e->switches, run_ns = e->run_ns, wait_ns = e->wait_ns;

      for (guint j = 0; j < start->n; j++)
        if (start->threads[j].tid == e->tid)
          {
            ticks -= start->threads[j].ticks;
            switches -= start->threads[j].switches;
            run_ns -= start->threads[j].run_ns;
            wait_ns -= start->threads[j].wait_ns;
          }
      if (ticks > 0 || switches > 0)
        g_printerr ("    %-32s cpu %6.1f us/call  switches %.3f/call  run %6.1f  wait %6.1f  "
                    "sleep %6.1f us/call\n",
                    e->who, ticks * tick_us / n, (double) switches / n, run_ns / 1e3 / n,
                    wait_ns / 1e3 / n, (wall_us * 1e3 - run_ns - wait_ns) / 1e3 / n);
    }
}

typedef struct
{
  SluiceTaskQueue *queue;
  const char *name;
  gboolean busy;
  guint n;
  guint in_flight;
  guint issued;
  guint done;
  guint failed;
} Run;

static void issue (Run *run);

static void
call_done_cb (GObject *source, GAsyncResult *result, gpointer data)
{
  Run *run = data;
  GError *error = NULL;
  GVariant *value = sluice_task_queue_call_finish (SLUICE_TASK_QUEUE (source), result, &error);

  if (value == NULL)
    {
      if (run->failed++ == 0)
        g_printerr ("worker-bench: a call failed: %s\n", error->message);
      g_error_free (error);
    }
  else
    g_variant_unref (value);
  run->done++;
  issue (run);
}

static void
issue (Run *run)
{
  while (run->issued < run->n && run->issued - run->done < run->in_flight)
    {
      GVariant *args =
          run->busy ? g_variant_new ("(u)", 50) : g_variant_new ("(i)", (gint32) run->issued);

      run->issued++;
      sluice_task_queue_call_async (run->queue, NULL, run->name, args, G_PRIORITY_DEFAULT, 0, NULL,
                                    call_done_cb, run);
    }
}

static void
shutdown_cb (GObject *source, GAsyncResult *result, gpointer data)
{
  *(gboolean *) data = sluice_task_queue_shutdown_finish (SLUICE_TASK_QUEUE (source), result, NULL);
}

/* Calls per second through a process worker of @n_processes. */
static double
run_sluice (gboolean busy, guint n_processes, guint n)
{
  const char *argv[] = { opt_tool, "--threads=1", opt_module, NULL };
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  SluiceProcessWorker *worker =
      opt_max_calls > 0 ? g_object_new (SLUICE_TYPE_PROCESS_WORKER, "argv", argv, "n-processes",
                                        n_processes, "max-calls", opt_max_calls, NULL)
                        : g_object_new (SLUICE_TYPE_PROCESS_WORKER, "argv", argv, "n-processes",
                                        n_processes, NULL);
  guint in_flight = (guint) MAX (opt_in_flight, 1) * (opt_in_flight_per_helper ? n_processes : 1);
  Run warm = { queue, "echo", FALSE, 8 * n_processes, in_flight, 0, 0, 0 };
  Run run = { queue, busy ? "busy" : "echo", busy, n, in_flight, 0, 0, 0 };
  gboolean shut = FALSE;
  gint64 start, wall, self_start, children_start, switches_start;
  guint64 sent_start, call_messages_start, outcomes_start, result_messages_start;
  char **pids;
  double rate;
  ThreadStats *threads_start = NULL, *threads_end = NULL;

  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  /* Warm up: every process started and answering. */
  issue (&warm);
  while (warm.done < warm.n)
    g_main_context_iteration (NULL, TRUE);

  /* The helpers' CPU time counts once they are reaped: the warm-up and
   * start-up are in it, but little against the run. */
  children_start = cpu_us (RUSAGE_CHILDREN);
  self_start = cpu_us (RUSAGE_SELF);
  switches_start = switches (RUSAGE_SELF) + switches (RUSAGE_CHILDREN);
  sent_start = stat_of (worker, "calls-sent");
  call_messages_start = stat_of (worker, "call-messages");
  outcomes_start = stat_of (worker, "outcomes");
  result_messages_start = stat_of (worker, "result-messages");
  if (opt_per_thread)
    {
      threads_start = g_new0 (ThreadStats, 1);
      threads_end = g_new0 (ThreadStats, 1);
      thread_stats_take (threads_start, worker);
    }
  start = g_get_monotonic_time ();
  issue (&run);
  while (run.done < run.n)
    g_main_context_iteration (NULL, TRUE);
  wall = g_get_monotonic_time () - start;
  rate = run.n / (wall / 1e6);
  if (opt_per_thread)
    {
      thread_stats_take (threads_end, worker);
      thread_stats_print (threads_start, threads_end, run.n, wall);
      g_free (threads_start);
      g_free (threads_end);
    }
  cpu_self_per_call = (double) (cpu_us (RUSAGE_SELF) - self_start) / run.n;
  call_messages_per_call = (double) (stat_of (worker, "call-messages") - call_messages_start) /
                           MAX (stat_of (worker, "calls-sent") - sent_start, 1);
  result_messages_per_call =
      (double) (stat_of (worker, "result-messages") - result_messages_start) /
      MAX (stat_of (worker, "outcomes") - outcomes_start, 1);
  if (run.failed > 0 || warm.failed > 0)
    {
      g_printerr ("worker-bench: %u calls failed\n", run.failed + warm.failed);
      exit (1);
    }

  pids = sluice_process_worker_dup_pids (worker);
  sluice_task_queue_shutdown_async (queue, FALSE, NULL, shutdown_cb, &shut);
  while (!shut)
    g_main_context_iteration (NULL, TRUE);
  g_object_unref (worker);
  g_object_unref (queue);
  wait_reaped (pids);
  g_strfreev (pids);
  cpu_children_per_call = (double) (cpu_us (RUSAGE_CHILDREN) - children_start) / run.n;
  switches_per_call =
      (double) (switches (RUSAGE_SELF) + switches (RUSAGE_CHILDREN) - switches_start) / run.n;
  return rate;
}

/* Calls per second of multiprocessing.Pool(@n_processes).imap, or -1. */
static double
run_pool (gboolean busy, guint n_processes, guint n)
{
  g_autofree char *n_str = g_strdup_printf ("%u", n);
  g_autofree char *p_str = g_strdup_printf ("%u", n_processes);
  const char *argv[] = {
    opt_python, opt_pool_script, busy ? "busy" : "trivial", n_str, p_str, NULL
  };
  g_autofree char *out = NULL;
  int status;
  GError *error = NULL;
  gint64 children_start = cpu_us (RUSAGE_CHILDREN);

  if (!g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, NULL, &status,
                     &error) ||
      !g_spawn_check_wait_status (status, &error))
    {
      g_printerr ("worker-bench: the Python pool failed: %s\n", error->message);
      g_error_free (error);
      return -1;
    }
  /* Python's start-up and its pool's are in it. */
  cpu_self_per_call = 0;
  cpu_children_per_call = (double) (cpu_us (RUSAGE_CHILDREN) - children_start) / n;
  return g_ascii_strtod (out, NULL);
}

static int
compare_doubles (const void *a, const void *b)
{
  double da = *(const double *) a, db = *(const double *) b;

  return da < db ? -1 : da > db ? 1 : 0;
}

static double
median (double *values, int n)
{
  double sorted[MAX_REPS];

  memcpy (sorted, values, n * sizeof (double));
  qsort (sorted, n, sizeof (double), compare_doubles);
  return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

static void
min_max (double *values, int n, double *lo, double *hi)
{
  *lo = *hi = values[0];
  for (int i = 1; i < n; i++)
    {
      *lo = MIN (*lo, values[i]);
      *hi = MAX (*hi, values[i]);
    }
}

enum
{
  C_TRIVIAL_1,
  C_TRIVIAL_2,
  C_BUSY_1,
  C_BUSY_2,
  C_POOL_TRIVIAL_2,
  C_POOL_BUSY_2,
  N_CONFIGS
};

/* For --only. */
static const char *config_keys[N_CONFIGS] = {
  "trivial1", "trivial2", "busy1", "busy2", "pool-trivial", "pool-busy",
};

static const char *config_names[N_CONFIGS] = {
  "sluice trivial, 1 process",  "sluice trivial, 2 processes", "sluice busy50, 1 process",
  "sluice busy50, 2 processes", "python pool trivial, 2",      "python pool busy50, 2",
};

int
main (int argc, char **argv)
{
  GOptionEntry entries[] = {
    { "quick", 0, 0, G_OPTION_ARG_NONE, &opt_quick, "Smoke run: few calls, 1 rep", NULL },
    { "reps", 0, 0, G_OPTION_ARG_INT, &opt_reps, "Repetitions (default 5)", "N" },
    { "calls", 0, 0, G_OPTION_ARG_INT, &opt_calls,
      "Calls per run (profiling: runs of two sizes give the cost per call)", "N" },
    { "in-flight", 0, 0, G_OPTION_ARG_INT, &opt_in_flight,
      "Calls kept in flight at the queue, in all (default 256; session 12's bench: 64)", "N" },
    { "in-flight-per-helper", 0, 0, G_OPTION_ARG_NONE, &opt_in_flight_per_helper,
      "--in-flight counts the calls in flight per helper process, not in all", NULL },
    { "per-thread", 0, 0, G_OPTION_ARG_NONE, &opt_per_thread,
      "Print each thread's CPU time and context switches per call (from /proc)", NULL },
    { "max-calls", 0, 0, G_OPTION_ARG_INT, &opt_max_calls,
      "Most calls in flight per helper (the worker's default)", "N" },
    { "tool", 0, 0, G_OPTION_ARG_FILENAME, &opt_tool, "The sluice-worker helper", "PATH" },
    { "module", 0, 0, G_OPTION_ARG_FILENAME, &opt_module, "The example module", "PATH" },
    { "python", 0, 0, G_OPTION_ARG_FILENAME, &opt_python, "Python for the baseline", "PATH" },
    { "pool-script", 0, 0, G_OPTION_ARG_FILENAME, &opt_pool_script, "worker_pool.py", "PATH" },
    { "only", 0, 0, G_OPTION_ARG_STRING, &opt_only,
      "Run one configuration (trivial1, trivial2, busy1, busy2, pool-trivial, pool-busy) and "
      "print its rate and CPU time per call, no RESULT lines",
      "NAME" },
    G_OPTION_ENTRY_NULL,
  };
  GOptionContext *context = g_option_context_new ("- process worker benchmark");
  GError *error = NULL;
  double rates[N_CONFIGS][MAX_REPS];
  double cpu_self[N_CONFIGS][MAX_REPS], cpu_children[N_CONFIGS][MAX_REPS];
  double messages[N_CONFIGS][MAX_REPS];
  double speedup[MAX_REPS], vs_pool[MAX_REPS], vs_pool_busy[MAX_REPS];
  guint n_trivial, n_busy;
  int reps;
  gboolean have_pool;

  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error) || opt_tool == NULL ||
      opt_module == NULL)
    {
      g_printerr ("worker-bench: %s\n", error != NULL ? error->message : "--tool and --module");
      return 2;
    }
  g_option_context_free (context);
  reps = CLAMP (opt_reps > 0 ? opt_reps : (opt_quick ? 1 : 5), 1, MAX_REPS);
  n_trivial = opt_quick ? 2000 : 40000;
  n_busy = opt_quick ? 1000 : 20000;
  if (opt_calls > 0)
    n_trivial = n_busy = (guint) opt_calls;
  have_pool = opt_pool_script != NULL;

  if (opt_only != NULL)
    {
      int c = 0;

      while (c < N_CONFIGS && strcmp (config_keys[c], opt_only) != 0)
        c++;
      if (c == N_CONFIGS || (c >= C_POOL_TRIVIAL_2 && !have_pool))
        {
          g_printerr ("worker-bench: no configuration “%s”\n", opt_only);
          return 2;
        }
      for (int rep = 0; rep < reps; rep++)
        {
          double r;

          if (c >= C_POOL_TRIVIAL_2)
            r = run_pool (c == C_POOL_BUSY_2, 2, c == C_POOL_BUSY_2 ? n_busy : n_trivial);
          else
            r = run_sluice (c >= C_BUSY_1, c == C_TRIVIAL_2 || c == C_BUSY_2 ? 2 : 1,
                            c >= C_BUSY_1 ? n_busy : n_trivial);
          printf ("%-30s %10.0f calls/s  cpu/call: self %.1f us, children %.1f us", config_names[c],
                  r, cpu_self_per_call, cpu_children_per_call);
          if (c < C_POOL_TRIVIAL_2)
            printf ("  messages/call: %.3f calls, %.3f results  switches/call %.2f",
                    call_messages_per_call, result_messages_per_call, switches_per_call);
          printf ("\n");
        }
      return 0;
    }

  for (int rep = 0; rep < reps; rep++)
    {
      for (int k = 0; k < N_CONFIGS; k++)
        {
          int c = (k + rep) % N_CONFIGS;
          double r;

          switch (c)
            {
            case C_TRIVIAL_1:
              r = run_sluice (FALSE, 1, n_trivial);
              break;
            case C_TRIVIAL_2:
              r = run_sluice (FALSE, 2, n_trivial);
              break;
            case C_BUSY_1:
              r = run_sluice (TRUE, 1, n_busy);
              break;
            case C_BUSY_2:
              r = run_sluice (TRUE, 2, n_busy);
              break;
            case C_POOL_TRIVIAL_2:
              r = have_pool ? run_pool (FALSE, 2, n_trivial) : -1;
              break;
            case C_POOL_BUSY_2:
            default:
              r = have_pool ? run_pool (TRUE, 2, n_busy) : -1;
              break;
            }
          rates[c][rep] = r;
          cpu_self[c][rep] = cpu_self_per_call;
          cpu_children[c][rep] = cpu_children_per_call;
          messages[c][rep] =
              c < C_POOL_TRIVIAL_2 ? call_messages_per_call + result_messages_per_call : 0;
          g_printerr ("  rep %d %-30s %10.0f calls/s  cpu/call: self %.1f us, children %.1f us",
                      rep + 1, config_names[c], r, cpu_self_per_call, cpu_children_per_call);
          if (c < C_POOL_TRIVIAL_2)
            g_printerr ("  messages/call: %.3f calls, %.3f results  switches/call %.2f",
                        call_messages_per_call, result_messages_per_call, switches_per_call);
          g_printerr ("\n");
        }
      speedup[rep] = rates[C_BUSY_2][rep] / rates[C_BUSY_1][rep];
      vs_pool[rep] = rates[C_TRIVIAL_2][rep] / rates[C_POOL_TRIVIAL_2][rep];
      vs_pool_busy[rep] = rates[C_BUSY_2][rep] / rates[C_POOL_BUSY_2][rep];
    }

  printf ("calls: trivial %u, busy50 %u; %d reps (median [min .. max])\n", n_trivial, n_busy, reps);
  for (int c = 0; c < N_CONFIGS; c++)
    {
      double lo, hi;

      if (rates[c][0] < 0)
        continue;
      min_max (rates[c], reps, &lo, &hi);
      printf ("  %-30s %10.0f calls/s  [%.0f .. %.0f]  cpu/call: self %.1f us, children %.1f us",
              config_names[c], median (rates[c], reps), lo, hi, median (cpu_self[c], reps),
              median (cpu_children[c], reps));
      if (c < C_POOL_TRIVIAL_2)
        printf ("  messages/call %.3f", median (messages[c], reps));
      printf ("\n");
    }
  {
    double lo, hi;

    min_max (speedup, reps, &lo, &hi);
    printf ("  busy50 speedup, 2 processes over 1: %.2f [%.2f .. %.2f] (goal >= 1.8)\n",
            median (speedup, reps), lo, hi);
    if (have_pool && rates[C_POOL_TRIVIAL_2][0] > 0)
      {
        min_max (vs_pool, reps, &lo, &hi);
        printf ("  trivial, 2 processes, sluice / python pool: %.2f [%.2f .. %.2f] (goal >= 3)\n",
                median (vs_pool, reps), lo, hi);
        min_max (vs_pool_busy, reps, &lo, &hi);
        printf ("  busy50, 2 processes, sluice / python pool: %.2f [%.2f .. %.2f]\n",
                median (vs_pool_busy, reps), lo, hi);
      }
  }
  printf ("RESULT process_calls_trivial_1p=%.0f\n", median (rates[C_TRIVIAL_1], reps));
  printf ("RESULT process_calls_trivial_2p=%.0f\n", median (rates[C_TRIVIAL_2], reps));
  printf ("RESULT process_calls_busy50_1p=%.0f\n", median (rates[C_BUSY_1], reps));
  printf ("RESULT process_calls_busy50_2p=%.0f\n", median (rates[C_BUSY_2], reps));
  printf ("RESULT process_speedup_2p_busy50=%.3f\n", median (speedup, reps));
  {
    double total[MAX_REPS];

    for (int rep = 0; rep < reps; rep++)
      total[rep] = cpu_self[C_TRIVIAL_2][rep] + cpu_children[C_TRIVIAL_2][rep];
    printf ("RESULT process_cpu_us_per_call_trivial_2p=%.1f\n", median (total, reps));
    if (have_pool && rates[C_POOL_TRIVIAL_2][0] > 0)
      printf ("RESULT python_pool_cpu_us_per_call_trivial=%.1f\n",
              median (cpu_children[C_POOL_TRIVIAL_2], reps));
  }
  if (have_pool && rates[C_POOL_TRIVIAL_2][0] > 0)
    {
      printf ("RESULT process_calls_vs_python_pool=%.3f\n", median (vs_pool, reps));
      printf ("RESULT process_calls_vs_python_pool_busy50=%.3f\n", median (vs_pool_busy, reps));
    }
  return 0;
}
