/* redis-bench.c: named calls per second through Redis, against a local
 * process worker (the previous issue's), in one run
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Usage: redis-bench unix:SOCKET [CALLS [WORKERS:US]]
 *   (WORKERS:US: only that row, say 2:50, one round: for profiling)
 *   (start a server first: redis-server --port 0 --unixsocket /tmp/r.sock
 *    --save '' --appendonly no; then redis-bench unix:/tmp/r.sock)
 *
 * Remote workers are sluice_worker_service_serve_redis () loops in threads
 * of this process, one call at a time each; rows (a local process worker,
 * 1, 2 and 4 remote workers) are run in rotated order and printed as
 * calls/s with the ratios of 2 and 4 remote workers over 1. For the Redis
 * rows it also prints the bytes per call on the wire (Redis's
 * total_net_input_bytes + total_net_output_bytes, all connections: calls,
 * answers, acknowledgements, reads) and the CPU time per call of this
 * process (producer and remote workers) plus redis-server (INFO cpu): a
 * figure that depends less on how loaded the machine is than calls/s.
 * It splits that CPU time between the producer (the main thread and the
 * Redis worker's threads), the remote workers (their serving thread, pool
 * threads and, before session 11, answering and control threads) and
 * redis-server, from each thread's
 * /proc/self/task/TID/schedstat (run time in ns and times scheduled in),
 * and counts the context switches per call of this process
 * (getrusage: voluntary and involuntary) and the Redis commands per call
 * (INFO commandstats, less the bench's own INFO; the list shows those of
 * the last round run at least once per 100 calls).
 * From the CPU per call it prints the ceiling this machine's cores put
 * on each row (N cores / CPU per call; a worker runs one call at a time:
 * 1 / call cost) and so on the 2-over-1 ratio: where both rows are
 * CPU-bound, the ratio is only that of their CPU per call.
 */

#include <sluice/sluice.h>

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* doc/examples/worker-module.c, linked in: "busy" (u) keeps a core busy
 * that many microseconds. */
gboolean sluice_worker_module_init (SluiceWorkerService *service, GError **error);

typedef struct
{
  const char *endpoint;
  char *consumer;
  GCancellable *cancellable;
} Remote;

static gpointer
remote_main (gpointer data)
{
  Remote *remote = data;
  const char *series[] = { "bench", NULL };
  SluiceWorkerService *service = sluice_worker_service_new (1);
  GError *error = NULL;

  sluice_worker_module_init (service, NULL);
  if (!sluice_worker_service_serve_redis (service, remote->endpoint, NULL, series, remote->consumer,
                                          0, 0, remote->cancellable, &error))
    g_error ("remote worker: %s", error->message);
  g_object_unref (service);
  return NULL;
}

#define MAX_REMOTE 4

static guint n_done;

/* Where a thread's time counts: the producer's main thread, the Redis
 * worker's threads ("sluice-redis-io", or "sluice-redis-send" and "-read"
 * before session 10), and the remote workers' serving threads ("remote":
 * since session 11 their only Redis thread, reading, answering and reading
 * the control stream; before, reading calls only), pool threads (running
 * them), and before session 11 their answer writers ("sluice-answer") and
 * control readers ("remote other"). */
typedef enum
{
  ROLE_MAIN,
  ROLE_REDIS_WORKER,
  ROLE_REMOTE_READ,
  ROLE_REMOTE_POOL,
  ROLE_REMOTE_ANSWER,
  ROLE_REMOTE_OTHER,
  N_ROLES
} Role;

static const char *const role_names[N_ROLES] = {
  "producer main", "producer redis", "remote read (s11: I/O)",
  "remote run",    "remote answer",  "remote other",
};

typedef struct
{
  double rate;              /* calls/s */
  double bytes_per_call;    /* on the wire, through Redis */
  double cpu_us_per_call;   /* this process and redis-server */
  double redis_us_per_call; /* of which redis-server */
  double switches_per_call; /* context switches of this process */
  double us_per_call[N_ROLES];
  double runs_per_call[N_ROLES]; /* times its threads were scheduled in */
  double commands_per_call;      /* Redis commands run (INFO commandstats) */
  double calls_per_entry;        /* calls per stream entry (stats: sent / entries) */
  char *commands;                /* (owned) the most frequent ones, per call */
} Row;

static Role
thread_role (const char *tid, const char *comm)
{
  if (atoi (tid) == getpid ())
    return ROLE_MAIN;
  if (g_str_has_prefix (comm, "sluice-redis-io") || g_str_has_prefix (comm, "sluice-redis-se") ||
      g_str_has_prefix (comm, "sluice-redis-re"))
    return ROLE_REDIS_WORKER;
  if (g_str_has_prefix (comm, "remote"))
    return ROLE_REMOTE_READ;
  if (g_str_has_prefix (comm, "pool"))
    return ROLE_REMOTE_POOL;
  if (g_str_has_prefix (comm, "sluice-answer"))
    return ROLE_REMOTE_ANSWER;
  return ROLE_REMOTE_OTHER;
}

/* Run time (ns) and times scheduled in of each thread of this process,
 * summed by role, minus what @before (tid -> guint64[2], nullable) had;
 * @now (nullable) gets the figures of each thread. */
static void
thread_times (GHashTable *before, GHashTable *now, double ns[N_ROLES], double runs[N_ROLES])
{
  GDir *dir = g_dir_open ("/proc/self/task", 0, NULL);
  const char *tid;

  for (guint r = 0; r < N_ROLES; r++)
    ns[r] = runs[r] = 0;
  while (dir != NULL && (tid = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *comm_path = g_strdup_printf ("/proc/self/task/%s/comm", tid);
      g_autofree char *stat_path = g_strdup_printf ("/proc/self/task/%s/schedstat", tid);
      g_autofree char *comm = NULL, *stat = NULL;
      guint64 *figures, *old;
      Role role;
      char *end;

      if (!g_file_get_contents (comm_path, &comm, NULL, NULL) ||
          !g_file_get_contents (stat_path, &stat, NULL, NULL))
        continue;
      figures = g_new0 (guint64, 2);
      figures[0] = g_ascii_strtoull (stat, &end, 10);
      g_ascii_strtoull (end, &end, 10); /* time waiting to run */
      figures[1] = g_ascii_strtoull (end, NULL, 10);
      role = thread_role (tid, comm);
      old = before != NULL ? g_hash_table_lookup (before, GINT_TO_POINTER (atoi (tid))) : NULL;
      ns[role] += figures[0] - (old != NULL ? old[0] : 0);
      runs[role] += figures[1] - (old != NULL ? old[1] : 0);
      if (now != NULL)
        g_hash_table_insert (now, GINT_TO_POINTER (atoi (tid)), figures);
      else
        g_free (figures);
    }
  if (dir != NULL)
    g_dir_close (dir);
}

/* Context switches of this process so far. */
static double
context_switches (void)
{
  struct rusage usage;

  getrusage (RUSAGE_SELF, &usage);
  return (double) usage.ru_nvcsw + usage.ru_nivcsw;
}

/* A number of INFO's @section, or 0. */
static double
info_number (redisContext *c, const char *section, const char *name)
{
  redisReply *reply = redisCommand (c, "INFO %s", section);
  g_autofree char *key = g_strconcat ("\n", name, ":", NULL);
  const char *at;
  double value = 0;

  if (reply == NULL)
    g_error ("INFO: %s", c->errstr);
  if (reply->type == REDIS_REPLY_STRING && (at = strstr (reply->str, key)) != NULL)
    value = g_ascii_strtod (at + strlen (key), NULL);
  freeReplyObject (reply);
  return value;
}

/* The calls of each command so far (INFO commandstats): name -> count. */
static GHashTable *
redis_commands (redisContext *c)
{
  redisReply *reply = redisCommand (c, "INFO commandstats");
  GHashTable *counts = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_auto (GStrv) lines = NULL;

  if (reply == NULL)
    g_error ("INFO: %s", c->errstr);
  lines = g_strsplit (reply->type == REDIS_REPLY_STRING ? reply->str : "", "\n", -1);
  freeReplyObject (reply);
  /* cmdstat_xadd:calls=N,usec=... */
  for (guint i = 0; lines[i] != NULL; i++)
    {
      const char *calls = strstr (lines[i], ":calls=");

      if (!g_str_has_prefix (lines[i], "cmdstat_") || calls == NULL)
        continue;
      g_hash_table_insert (counts, g_strndup (lines[i] + 8, calls - lines[i] - 8),
                           GSIZE_TO_POINTER (g_ascii_strtoull (calls + 7, NULL, 10)));
    }
  return counts;
}

/* The commands run since @before, per call: their sum in *@total, and
 * those run at least once per 100 calls, listed. */
static char *
redis_commands_since (redisContext *c, GHashTable *before, guint n_calls, double *total)
{
  GHashTable *now = redis_commands (c);
  GString *list = g_string_new (NULL);
  GHashTableIter iter;
  gpointer name, count;

  *total = 0;
  g_hash_table_iter_init (&iter, now);
  while (g_hash_table_iter_next (&iter, &name, &count))
    {
      double per_call = (double) (GPOINTER_TO_SIZE (count) -
                                  GPOINTER_TO_SIZE (g_hash_table_lookup (before, name))) /
                        n_calls;

      /* Not the bench's own INFO commands. */
      if (strcmp (name, "info") == 0)
        continue;
      *total += per_call;
      if (per_call >= 0.01)
        g_string_append_printf (list, " %s %.2f", (char *) name, per_call);
    }
  g_hash_table_unref (now);
  return g_string_free (list, FALSE);
}

static double
redis_bytes (redisContext *c)
{
  return info_number (c, "stats", "total_net_input_bytes") +
         info_number (c, "stats", "total_net_output_bytes");
}

/* CPU seconds of this process. */
static double
cpu_seconds (void)
{
  struct rusage usage;

  getrusage (RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec +
         usage.ru_stime.tv_usec / 1e6;
}

/* CPU seconds of redis-server. */
static double
redis_cpu_seconds (redisContext *c)
{
  return info_number (c, "cpu", "used_cpu_user") + info_number (c, "cpu", "used_cpu_sys");
}

static void
done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GError *error = NULL;
  GVariant *value = sluice_task_queue_call_finish (SLUICE_TASK_QUEUE (source), result, &error);

  if (value == NULL)
    g_error ("call: %s", error->message);
  g_variant_unref (value);
  n_done++;
}

/* Calls per second with @n_remote remote workers (0: a local process
 * worker, sluice-worker with one thread). */
static Row
run (const char *endpoint, redisContext *c, guint n_remote, guint n_calls, guint32 us)
{
  const char *series[] = { "bench", NULL };
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  SluiceWorker *worker;
  Remote remotes[MAX_REMOTE];
  GThread *threads[MAX_REMOTE];
  GError *error = NULL;
  gint64 start;
  double bytes, cpu, redis_cpu, switches;
  double ns[N_ROLES], runs[N_ROLES];
  GHashTable *before = g_hash_table_new_full (NULL, NULL, NULL, g_free);
  GHashTable *commands;
  Row row;

  if (n_remote == 0)
    {
      const char *helper[] = { SLUICE_WORKER_TOOL, "--threads=1", SLUICE_WORKER_MODULE, NULL };

      worker = g_object_new (SLUICE_TYPE_PROCESS_WORKER, "argv", helper, "series", series,
                             "n-processes", 1, "max-calls", 64, NULL);
    }
  else
    {
      worker = SLUICE_WORKER (sluice_redis_worker_new (endpoint, NULL, series, 64, &error));
      if (worker == NULL)
        g_error ("%s", error->message);
    }
  for (guint i = 0; i < n_remote; i++)
    {
      remotes[i].endpoint = endpoint;
      remotes[i].consumer = g_strdup_printf ("bench-%u", i);
      remotes[i].cancellable = g_cancellable_new ();
      threads[i] = g_thread_new ("remote", remote_main, &remotes[i]);
    }
  sluice_task_queue_hire (queue, worker);

  n_done = 0;
  bytes = redis_bytes (c);
  cpu = cpu_seconds ();
  redis_cpu = redis_cpu_seconds (c);
  switches = context_switches ();
  commands = redis_commands (c);
  thread_times (NULL, before, ns, runs);
  start = g_get_monotonic_time ();
  for (guint i = 0; i < n_calls; i++)
    sluice_task_queue_call_async (queue, "bench", "busy", g_variant_new ("(u)", us), 0, 0, NULL,
                                  done_cb, NULL);
  while (n_done < n_calls)
    g_main_context_iteration (NULL, TRUE);
  row.rate = n_calls / ((g_get_monotonic_time () - start) / 1e6);
  row.redis_us_per_call = (redis_cpu_seconds (c) - redis_cpu) * 1e6 / n_calls;
  row.cpu_us_per_call = (cpu_seconds () - cpu) * 1e6 / n_calls + row.redis_us_per_call;
  row.bytes_per_call = (redis_bytes (c) - bytes) / n_calls;
  row.switches_per_call = (context_switches () - switches) / n_calls;
  row.commands = redis_commands_since (c, commands, n_calls, &row.commands_per_call);
  g_hash_table_unref (commands);
  thread_times (before, NULL, ns, runs);
  row.calls_per_entry = 0;
  if (n_remote > 0)
    {
      g_autoptr (GVariant) stats = sluice_redis_worker_get_stats (SLUICE_REDIS_WORKER (worker));
      guint64 sent = 0, entries = 0;

      g_variant_lookup (stats, "sent", "t", &sent);
      /* Before session 12: one call per entry, no "entries". */
      if (!g_variant_lookup (stats, "entries", "t", &entries))
        entries = sent;
      row.calls_per_entry = entries > 0 ? (double) sent / entries : 0;
    }
  for (guint r = 0; r < N_ROLES; r++)
    {
      row.us_per_call[r] = ns[r] / 1e3 / n_calls;
      row.runs_per_call[r] = runs[r] / n_calls;
    }
  g_hash_table_unref (before);

  sluice_task_queue_fire (queue, worker);
  for (guint i = 0; i < n_remote; i++)
    {
      g_cancellable_cancel (remotes[i].cancellable);
      g_thread_join (threads[i]);
      g_object_unref (remotes[i].cancellable);
      g_free (remotes[i].consumer);
    }
  g_object_unref (worker);
  g_object_unref (queue);
  return row;
}

int
main (int argc, char **argv)
{
  guint n_calls = argc > 2 ? (guint) atoi (argv[2]) : 5000;
  const guint32 costs[] = { 0, 50 };
  const guint workers[] = { 0, 1, 2, MAX_REMOTE };
  enum
  {
    N_ROWS = G_N_ELEMENTS (workers),
    N_ROUNDS = 3
  };
  redisContext *c;

  if (argc < 2 || !g_str_has_prefix (argv[1], "unix:"))
    {
      g_printerr ("Usage: redis-bench unix:SOCKET [CALLS]\n");
      return 2;
    }
  c = redisConnectUnix (argv[1] + 5);
  if (c == NULL || c->err != 0)
    g_error ("%s: %s", argv[1], c != NULL ? c->errstr : "no memory");
  if (argc > 3)
    {
      guint n_remote = (guint) atoi (argv[3]);
      const char *colon = strchr (argv[3], ':');
      Row row = run (argv[1], c, n_remote, n_calls, colon != NULL ? (guint32) atoi (colon + 1) : 0);

      g_print ("%u worker(s): %.0f calls/s, %.1f us CPU/call (redis-server %.1f), %.2f context "
               "switches/call,",
               n_remote, row.rate, row.cpu_us_per_call, row.redis_us_per_call,
               row.switches_per_call);
      for (guint j = 0; j < N_ROLES; j++)
        g_print (" %s %.1f (%.2f)", role_names[j], row.us_per_call[j], row.runs_per_call[j]);
      g_print (", %.2f commands/call:%s\n", row.commands_per_call, row.commands);
      g_free (row.commands);
      redisFree (c);
      return 0;
    }
  for (guint k = 0; k < G_N_ELEMENTS (costs); k++)
    {
      Row rows[N_ROWS] = { 0 };

      /* Rotated order, so that no row always runs first. */
      for (guint r = 0; r < N_ROUNDS; r++)
        for (guint i = 0; i < N_ROWS; i++)
          {
            guint w = (i + r) % N_ROWS;
            Row row = run (argv[1], c, workers[w], n_calls, costs[k]);

            rows[w].rate += row.rate / N_ROUNDS;
            rows[w].bytes_per_call += row.bytes_per_call / N_ROUNDS;
            rows[w].cpu_us_per_call += row.cpu_us_per_call / N_ROUNDS;
            rows[w].redis_us_per_call += row.redis_us_per_call / N_ROUNDS;
            rows[w].switches_per_call += row.switches_per_call / N_ROUNDS;
            rows[w].commands_per_call += row.commands_per_call / N_ROUNDS;
            rows[w].calls_per_entry += row.calls_per_entry / N_ROUNDS;
            /* The list of the last round. */
            g_free (rows[w].commands);
            rows[w].commands = row.commands;
            for (guint j = 0; j < N_ROLES; j++)
              {
                rows[w].us_per_call[j] += row.us_per_call[j] / N_ROUNDS;
                rows[w].runs_per_call[j] += row.runs_per_call[j] / N_ROUNDS;
              }
          }
      g_print ("%2u us calls: local process worker %.0f/s, redis 1 worker %.0f/s, "
               "2 workers %.0f/s, %u workers %.0f/s\n",
               costs[k], rows[0].rate, rows[1].rate, rows[2].rate, MAX_REMOTE, rows[3].rate);
      for (guint w = 1; w < N_ROWS; w++)
        g_print ("   redis %u worker(s): %.0f bytes/call on the wire, %.1f us CPU/call "
                 "(this process + redis-server, of which redis-server %.1f)\n",
                 workers[w], rows[w].bytes_per_call, rows[w].cpu_us_per_call,
                 rows[w].redis_us_per_call);
      for (guint w = 1; w < N_ROWS; w++)
        {
          g_print ("   redis %u worker(s): %.2f context switches/call (this process); "
                   "CPU us/call (threads scheduled in per call):",
                   workers[w], rows[w].switches_per_call);
          for (guint j = 0; j < N_ROLES; j++)
            g_print ("%s %s %.1f (%.2f)", j == 0 ? "" : ",", role_names[j], rows[w].us_per_call[j],
                     rows[w].runs_per_call[j]);
          g_print (", redis-server %.1f\n", rows[w].redis_us_per_call);
        }
      for (guint w = 1; w < N_ROWS; w++)
        g_print ("   redis %u worker(s): %.2f Redis commands/call, %.2f calls/entry (last "
                 "round:%s)\n",
                 workers[w], rows[w].commands_per_call, rows[w].calls_per_entry, rows[w].commands);
      for (guint w = 0; w < N_ROWS; w++)
        g_free (rows[w].commands);
      {
        /* What the CPU allows on this machine's N cores: a row runs at
         * most N / C calls per second (C: CPU per call, all threads and
         * redis-server), and one worker at most one call at a time. */
        double n_cores = g_get_num_processors ();
        double best_1 = n_cores * 1e6 / rows[1].cpu_us_per_call;
        double best_2 = MIN (n_cores * 1e6 / rows[2].cpu_us_per_call,
                             costs[k] > 0 ? 2e6 / costs[k] : G_MAXDOUBLE);

        if (costs[k] > 0)
          best_1 = MIN (best_1, 1e6 / costs[k]);
        g_print ("   ceiling on %.0f cores from the CPU per call: 1 worker %.0f/s, 2 workers "
                 "%.0f/s, 2 over 1 %.2f (1.7 needs 2 workers at <= %.1f us CPU/call)\n",
                 n_cores, best_1, best_2, best_2 / best_1, n_cores * 1e6 / (1.7 * best_1));
      }
      g_print ("RESULT redis_2_over_1_%uus %.2f\n", costs[k], rows[2].rate / rows[1].rate);
      g_print ("RESULT redis_%u_over_1_%uus %.2f\n", MAX_REMOTE, costs[k],
               rows[3].rate / rows[1].rate);
    }
  redisFree (c);
  return 0;
}
