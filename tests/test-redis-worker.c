/* test-redis-worker.c: tests of SluiceRedisWorker and
 * sluice_worker_service_serve_redis, each with a redis-server of its own
 * on a private unix socket
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Skipped, with a message, when redis-server is not installed (CI
 * installs it).
 */

#include <sluice/sluice.h>

#include "sluice-test-util.h"

#include <glib/gstdio.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <string.h>
#include <unistd.h>

#define WAIT_UNTIL(cond)                                                                           \
  G_STMT_START                                                                                     \
  {                                                                                                \
    gint64 wait_deadline_ = deadline_from_now ();                                                  \
    while (!(cond) && g_get_monotonic_time () < wait_deadline_)                                    \
      g_main_context_iteration (NULL, TRUE);                                                       \
    if (!(cond))                                                                                   \
      g_assertion_message (G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC,                            \
                           "timed out waiting for: " #cond);                                       \
  }                                                                                                \
  G_STMT_END

/* ---- a redis-server of the test's own -------------------------------- */

/* Children die with the test, even when it fails. */
static void
die_with_parent (gpointer data)
{
  prctl (PR_SET_PDEATHSIG, SIGKILL);
}

static GSubprocess *
spawn (const char *const *argv, GSubprocessFlags flags)
{
  g_autoptr (GSubprocessLauncher) launcher = g_subprocess_launcher_new (flags);
  GError *error = NULL;
  GSubprocess *process;

  g_subprocess_launcher_set_child_setup (launcher, die_with_parent, NULL, NULL);
  process = g_subprocess_launcher_spawnv (launcher, argv, &error);
  g_assert_no_error (error);
  return process;
}

typedef struct
{
  char *dir;
  char *socket;
  char *endpoint;
  GStrv argv;
  char *password;
  GSubprocess *process;
  redisContext *c; /* the test's own connection, for checks */
} Server;

/* Starts (again) the server of @server, and connects once it answers. */
static void
server_spawn (Server *server)
{
  gint64 deadline = deadline_from_now ();
  struct timeval tv = { 1, 0 };

  server->process = spawn ((const char *const *) server->argv, G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
  /* It answers once its socket accepts (and, with persistence, once it
   * has loaded its data). */
  while (g_get_monotonic_time () < deadline)
    {
      redisContext *c = redisConnectUnixWithTimeout (server->socket, tv);
      redisReply *reply = c != NULL && c->err == 0 ? redisCommand (c, "PING") : NULL;

      if (reply != NULL && reply->type != REDIS_REPLY_ERROR)
        {
          freeReplyObject (reply);
          server->c = c;
          break;
        }
      if (reply != NULL && strstr (reply->str, "NOAUTH") != NULL)
        {
          freeReplyObject (reply);
          server->c = c;
          break;
        }
      if (reply != NULL)
        freeReplyObject (reply);
      if (c != NULL)
        redisFree (c);
      g_usleep (10000);
    }
  g_assert_nonnull (server->c);
  if (server->password != NULL)
    freeReplyObject (redisCommand (server->c, "AUTH %s", server->password));
}

/* A redis-server on a private socket; with @appendonly, every write is on
 * disk before it is answered (appendfsync always). */
static Server *
server_start_full (const char *password, gboolean appendonly, const char *const *extra)
{
  Server *server;
  g_autoptr (GStrvBuilder) argv = g_strv_builder_new ();
  GError *error = NULL;
  g_autofree char *program = g_find_program_in_path ("redis-server");

  if (program == NULL)
    {
      g_test_skip ("redis-server is not installed (Debian: apt-get install redis-server)");
      return NULL;
    }
  server = g_new0 (Server, 1);
  server->dir = g_dir_make_tmp ("sluice-redis-XXXXXX", &error);
  g_assert_no_error (error);
  server->socket = g_build_filename (server->dir, "redis.sock", NULL);
  server->endpoint = g_strconcat ("unix:", server->socket, NULL);
  server->password = g_strdup (password);
  g_strv_builder_add_many (argv, "redis-server", "--port", "0", "--unixsocket", server->socket,
                           "--save", "", "--dir", server->dir, NULL);
  if (appendonly)
    g_strv_builder_add_many (argv, "--appendonly", "yes", "--appendfsync", "always", NULL);
  else
    g_strv_builder_add_many (argv, "--appendonly", "no", NULL);
  if (password != NULL)
    g_strv_builder_add_many (argv, "--requirepass", password, NULL);
  if (extra != NULL)
    g_strv_builder_addv (argv, (const char **) extra);
  server->argv = g_strv_builder_end (argv);
  server_spawn (server);
  return server;
}

static Server *
server_start (const char *password)
{
  return server_start_full (password, FALSE, NULL);
}

/* Kills the server (SIGKILL: what was not on disk is lost) and starts it
 * again on the same socket. */
static void
server_restart (Server *server)
{
  redisFree (g_steal_pointer (&server->c));
  g_subprocess_force_exit (server->process);
  g_assert_true (g_subprocess_wait (server->process, NULL, NULL));
  g_clear_object (&server->process);
  server_spawn (server);
}

static void
server_stop (Server *server)
{
  g_autoptr (GDir) dir = NULL;
  const char *name;

  redisFree (server->c);
  g_subprocess_force_exit (server->process);
  g_assert_true (g_subprocess_wait (server->process, NULL, NULL));
  g_object_unref (server->process);
  /* The socket, and the append-only files if any. */
  dir = g_dir_open (server->dir, 0, NULL);
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename (server->dir, name, NULL);

      if (g_file_test (path, G_FILE_TEST_IS_DIR))
        {
          g_autoptr (GDir) sub = g_dir_open (path, 0, NULL);
          const char *sub_name;

          while (sub != NULL && (sub_name = g_dir_read_name (sub)) != NULL)
            {
              g_autofree char *sub_path = g_build_filename (path, sub_name, NULL);

              g_remove (sub_path);
            }
          g_rmdir (path);
        }
      else
        g_remove (path);
    }
  g_rmdir (server->dir);
  g_strfreev (server->argv);
  g_free (server->password);
  g_free (server->socket);
  g_free (server->endpoint);
  g_free (server->dir);
  g_free (server);
}

/* The integer of @reply (transfer full). */
static long long
integer_of (redisReply *reply)
{
  long long n;

  g_assert_nonnull (reply);
  g_assert_cmpint (reply->type, ==, REDIS_REPLY_INTEGER);
  n = reply->integer;
  freeReplyObject (reply);
  return n;
}

static long long
server_integer (Server *server, const char *command, const char *arg)
{
  return integer_of (redisCommand (server->c, "%s %s", command, arg));
}

static long long
pending_count (Server *server, const char *stream)
{
  redisReply *reply = redisCommand (server->c, "XPENDING %s sluice-workers", stream);
  long long n = 0;

  g_assert_nonnull (reply);
  /* NOGROUP until a remote worker created the group. */
  if (reply->type == REDIS_REPLY_ERROR)
    {
      freeReplyObject (reply);
      return 0;
    }
  g_assert_cmpint (reply->type, ==, REDIS_REPLY_ARRAY);
  g_assert_cmpint (reply->element[0]->type, ==, REDIS_REPLY_INTEGER);
  n = reply->element[0]->integer;
  freeReplyObject (reply);
  return n;
}

/* The members of the group of @stream (0 before it exists). */
static long long
consumers_of (Server *server, const char *stream)
{
  redisReply *reply = redisCommand (server->c, "XINFO CONSUMERS %s sluice-workers", stream);
  long long n;

  g_assert_nonnull (reply);
  n = reply->type == REDIS_REPLY_ARRAY ? (long long) reply->elements : 0;
  freeReplyObject (reply);
  return n;
}

/* ---- remote workers in threads of the test --------------------------- */

/* worker-test-module.c, linked in: square, fail, die, sleep... */
gboolean sluice_worker_module_init (SluiceWorkerService *service, GError **error);

typedef struct
{
  char *endpoint;
  char *consumer;
  GCancellable *cancellable;
  GThread *thread;
  gboolean ok;
  GError *error;
} Remote;

/* "count-cancel" () -> error: counts itself as started, waits until its
 * cancellable is cancelled, counts that it saw it, and fails. */
static gint n_count_cancel_started, n_count_cancel_seen;

static GVariant *
count_cancel (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  g_atomic_int_inc (&n_count_cancel_started);
  while (!g_cancellable_is_cancelled (cancellable))
    g_usleep (1000);
  g_atomic_int_inc (&n_count_cancel_seen);
  g_cancellable_set_error_if_cancelled (cancellable, error);
  return NULL;
}

/* "gated-square" (x) -> (x): waits until the test opens the gate, then
 * answers the square. */
static gint gate_open;

static GVariant *
gated_square (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  gint64 x;

  while (!g_atomic_int_get (&gate_open))
    g_usleep (1000);
  g_variant_get (args, "(x)", &x);
  return g_variant_new ("(x)", x * x);
}

/* "zeros" (u) -> (ay): that many zero bytes. */
static GVariant *
zeros (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  guint32 n;
  gpointer bytes;

  g_variant_get (args, "(u)", &n);
  bytes = g_malloc0 (n);
  return g_variant_new (
      "(@ay)", g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, bytes, n, TRUE, g_free, bytes));
}

static gpointer
remote_main (gpointer data)
{
  Remote *remote = data;
  const char *series[] = { "", "squares", NULL };
  SluiceWorkerService *service = sluice_worker_service_new (2);

  g_assert_true (sluice_worker_module_init (service, NULL));
  sluice_worker_service_register (service, "count-cancel", NULL, count_cancel, NULL, NULL);
  sluice_worker_service_register (service, "gated-square", "(x)", gated_square, NULL, NULL);
  sluice_worker_service_register (service, "zeros", "(u)", zeros, NULL, NULL);
  remote->ok =
      sluice_worker_service_serve_redis (service, remote->endpoint, NULL, series, remote->consumer,
                                         0, 0, remote->cancellable, &remote->error);
  g_object_unref (service);
  return NULL;
}

static Remote *
remote_start (Server *server, const char *consumer)
{
  Remote *remote = g_new0 (Remote, 1);

  remote->endpoint = g_strdup (server->endpoint);
  remote->consumer = g_strdup (consumer);
  remote->cancellable = g_cancellable_new ();
  remote->thread = g_thread_new ("remote", remote_main, remote);
  return remote;
}

static void remote_free (Remote *remote);

static void
remote_stop (Remote *remote)
{
  g_cancellable_cancel (remote->cancellable);
  g_thread_join (remote->thread);
  g_assert_no_error (remote->error);
  g_assert_true (remote->ok);
  remote_free (remote);
}

static void
remote_free (Remote *remote)
{
  g_object_unref (remote->cancellable);
  g_free (remote->endpoint);
  g_free (remote->consumer);
  g_free (remote);
}

/* ---- calls --------------------------------------------------------------- */

static gboolean
tick_cb (gpointer data)
{
  return G_SOURCE_CONTINUE;
}

static gboolean
quit_cb (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

typedef struct
{
  GVariant **results;
  GError **errors;
  guint n_done;
  guint *completions;
} Calls;

typedef struct
{
  Calls *calls;
  guint index;
} CallData;

static void
call_done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  CallData *data = user_data;
  Calls *calls = data->calls;

  calls->completions[data->index]++;
  calls->results[data->index] = sluice_task_queue_call_finish (SLUICE_TASK_QUEUE (source), result,
                                                               &calls->errors[data->index]);
  calls->n_done++;
  g_free (data);
}

static Calls *
calls_new (guint n)
{
  Calls *calls = g_new0 (Calls, 1);

  calls->results = g_new0 (GVariant *, n);
  calls->errors = g_new0 (GError *, n);
  calls->completions = g_new0 (guint, n);
  return calls;
}

static void
calls_free (Calls *calls, guint n)
{
  for (guint i = 0; i < n; i++)
    {
      g_clear_pointer (&calls->results[i], g_variant_unref);
      g_clear_error (&calls->errors[i]);
    }
  g_free (calls->results);
  g_free (calls->errors);
  g_free (calls->completions);
  g_free (calls);
}

static void
call (SluiceTaskQueue *queue,
      Calls *calls,
      guint index,
      const char *series,
      const char *name,
      GVariant *args)
{
  CallData *data = g_new0 (CallData, 1);

  data->calls = calls;
  data->index = index;
  sluice_task_queue_call_async (queue, series, name, args, 0, 0, NULL, call_done_cb, data);
}

static void
shutdown_done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_assert_true (sluice_task_queue_shutdown_finish (SLUICE_TASK_QUEUE (source), result, NULL));
  *(gboolean *) user_data = TRUE;
}

static void
queue_shutdown (SluiceTaskQueue *queue)
{
  gboolean done = FALSE;

  sluice_task_queue_shutdown_async (queue, FALSE, NULL, shutdown_done_cb, &done);
  WAIT_UNTIL (done);
  g_object_unref (queue);
}

/* Frees @calls (@n), shuts @queue down, and stops @worker, @remote and
 * @server. */
static void
finish (Calls *calls,
        guint n,
        SluiceTaskQueue *queue,
        SluiceRedisWorker *worker,
        Remote *remote,
        Server *server)
{
  calls_free (calls, n);
  queue_shutdown (queue);
  g_object_unref (worker);
  if (remote != NULL)
    remote_stop (remote);
  server_stop (server);
}

/* Each call i but @but completed once, with i * i. */
static void
check_squares_but (Calls *calls, guint n, guint but)
{
  for (guint i = 0; i < n; i++)
    {
      gint64 v;

      if (i == but)
        continue;
      g_assert_no_error (calls->errors[i]);
      g_assert_cmpuint (calls->completions[i], ==, 1);
      g_variant_get (calls->results[i], "(x)", &v);
      g_assert_cmpint (v, ==, (gint64) i * i);
    }
}

/* Each call i completed once, with i * i. */
static void
check_squares (Calls *calls, guint n)
{
  check_squares_but (calls, n, G_MAXUINT);
}

/* A task queue that hired a new Redis worker. */
static SluiceTaskQueue *
producer_new (Server *server, const char *series, guint max_in_flight, SluiceRedisWorker **worker)
{
  const char *strv[] = { series, NULL };
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  GError *error = NULL;

  *worker = sluice_redis_worker_new (server->endpoint, NULL, strv, max_in_flight, &error);
  g_assert_no_error (error);
  sluice_task_queue_hire (queue, SLUICE_WORKER (*worker));
  return queue;
}

static guint64
stat_of (SluiceRedisWorker *worker, const char *key)
{
  g_autoptr (GVariant) stats = sluice_redis_worker_get_stats (worker);
  guint64 value = 0;

  /* (transfer full), not floating, as every get_stats of the library. */
  g_assert_false (g_variant_is_floating (stats));

  g_assert_true (g_variant_lookup (stats, key, "t", &value));
  return value;
}

/* The entries of @stream not answered yet: those the group has not
 * delivered plus those pending, counted at once (a script). */
static long long
unanswered_entries (Server *server, const char *stream)
{
  static const char script[] =
      "local s, last = KEYS[1], nil\n"
      "if redis.call('EXISTS', s) == 0 then return 0 end\n"
      "for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do\n"
      "  local f = {}\n"
      "  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end\n"
      "  if f['name'] == 'sluice-workers' then last = f['last-delivered-id'] end\n"
      "end\n"
      "if not last then return redis.call('XLEN', s) end\n"
      "return #redis.call('XRANGE', s, '(' .. last, '+')\n"
      "  + redis.call('XPENDING', s, 'sluice-workers')[1]\n";

  return integer_of (redisCommand (server->c, "EVAL %s 1 %s", script, stream));
}

/* Answered entries a remote worker may leave in a stream (its trims keep
 * those after an entry still pending, up to this many: see
 * doc/remote-workers.md, "Memory in Redis"). */
#define ACKED_KEPT_PER_MEMBER 256

/* Samples the calls in Redis: never more unanswered than the worker's
 * capacity, nor more entries in all than that plus what each of
 * @n_members may leave answered. */
typedef struct
{
  Server *server;
  guint n_members;
  long long max_seen, max_len;
} Sampler;

static gboolean
sample_cb (gpointer data)
{
  Sampler *sampler = data;

  sampler->max_seen =
      MAX (sampler->max_seen, unanswered_entries (sampler->server, "sluice:calls:squares"));
  sampler->max_len =
      MAX (sampler->max_len, server_integer (sampler->server, "XLEN", "sluice:calls:squares"));
  return G_SOURCE_CONTINUE;
}

/* Named calls through Redis to two remote workers: every result right,
 * completed once, never more calls unanswered in the stream (undelivered
 * or pending) than max-in-flight, and the stream's length within its
 * bound (answered entries are trimmed now and then); once all is
 * answered, the stream is empty. */
static void
test_calls_in_order (void)
{
  const guint n = sluice_test_scale (3000, 4), max_in_flight = 8;
  Server *server = server_start (NULL);
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  Remote *a, *b;
  Calls *calls;
  Sampler sampler = { 0 };
  guint sample_id;

  if (server == NULL)
    return;
  a = remote_start (server, "a");
  b = remote_start (server, "b");
  queue = producer_new (server, "squares", max_in_flight, &worker);

  sampler.server = server;
  sampler.n_members = 2;
  sample_id = g_timeout_add (1, sample_cb, &sampler);
  calls = calls_new (n);
  for (guint i = 0; i < n; i++)
    call (queue, calls, i, "squares", "square", g_variant_new ("(x)", (gint64) i));
  WAIT_UNTIL (calls->n_done == n);
  g_source_remove (sample_id);

  check_squares (calls, n);
  g_test_message ("at most %lld calls unanswered in the stream (max-in-flight %u), "
                  "at most %lld entries",
                  sampler.max_seen, max_in_flight, sampler.max_len);
  g_assert_cmpint (sampler.max_seen, <=, max_in_flight);
  g_assert_cmpint (sampler.max_len, <=, max_in_flight + sampler.n_members * ACKED_KEPT_PER_MEMBER);
  g_assert_cmpuint (stat_of (worker, "sent"), ==, n);
  g_assert_cmpuint (stat_of (worker, "results"), ==, n);
  g_assert_cmpuint (stat_of (worker, "in-flight"), ==, 0);
  g_assert_cmpuint (stat_of (worker, "duplicates"), ==, 0);
  /* Nothing left in Redis once all is answered: the last answers trim
   * the stream. */
  WAIT_UNTIL (server_integer (server, "XLEN", "sluice:calls:squares") == 0);

  calls_free (calls, n);
  queue_shutdown (queue);
  g_object_unref (worker);
  remote_stop (a);
  remote_stop (b);
  server_stop (server);
}

/* A server, a remote worker in a thread, and a task queue that hired a
 * Redis worker of the default series. */
typedef struct
{
  Server *server;
  Remote *remote;
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
} Rig;

static gboolean
rig_start (Rig *rig)
{
  rig->server = server_start (NULL);
  if (rig->server == NULL)
    return FALSE;
  rig->remote = remote_start (rig->server, "a");
  rig->queue = producer_new (rig->server, NULL, 4, &rig->worker);
  return TRUE;
}

static void
rig_stop (Rig *rig)
{
  queue_shutdown (rig->queue);
  g_object_unref (rig->worker);
  remote_stop (rig->remote);
  server_stop (rig->server);
}

/* A call running long keeps its entry pending, and the trims keep every
 * entry after it: past ACKED_KEPT_PER_MEMBER the remote worker deletes
 * those it answered instead, so the stream stays within its bound; once
 * the long call is answered, the stream is empty. */
static void
test_trim_bounded (void)
{
  const guint n = 3 * ACKED_KEPT_PER_MEMBER / 2;
  Rig rig;
  Calls *calls;
  long long max_len = 0;

  g_atomic_int_set (&gate_open, FALSE);
  if (!rig_start (&rig))
    return;
  calls = calls_new (n + 1);
  call (rig.queue, calls, n, NULL, "gated-square", g_variant_new ("(x)", (gint64) n));
  WAIT_UNTIL (pending_count (rig.server, "sluice:calls") == 1);
  for (guint i = 0; i < n; i++)
    {
      call (rig.queue, calls, i, NULL, "square", g_variant_new ("(x)", (gint64) i));
      /* One at a time: each answered before the next is sent. */
      WAIT_UNTIL (calls->n_done == i + 1);
      max_len = MAX (max_len, server_integer (rig.server, "XLEN", "sluice:calls"));
    }
  g_test_message ("at most %lld entries with one pending before %u answered", max_len, n);
  g_assert_cmpint (max_len, <=, 1 + ACKED_KEPT_PER_MEMBER);
  g_assert_cmpint (max_len, >, 1);
  g_assert_cmpint (unanswered_entries (rig.server, "sluice:calls"), ==, 1);
  g_atomic_int_set (&gate_open, TRUE);
  WAIT_UNTIL (calls->n_done == n + 1);
  check_squares (calls, n + 1);
  WAIT_UNTIL (server_integer (rig.server, "XLEN", "sluice:calls") == 0);

  calls_free (calls, n + 1);
  rig_stop (&rig);
}

/* Through an ordered producer: each item is a named call through Redis,
 * whose result fills its slot; the consumer sees every square in order,
 * while two remote workers answer in whatever order they finish. */
typedef struct
{
  SluiceTaskQueue *queue;
  gint64 n;
} Item;

static void
item_call_done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  SluiceSlot *slot = user_data;
  GError *error = NULL;
  GVariant *value = sluice_task_queue_call_finish (SLUICE_TASK_QUEUE (source), result, &error);

  if (value != NULL)
    sluice_slot_complete (slot, value);
  else
    sluice_slot_fail (slot, error);
}

static void
make_item (SluiceSlot *slot, gpointer data)
{
  Item *item = data;

  sluice_task_queue_call_async (item->queue, "squares", "square", g_variant_new ("(x)", item->n), 0,
                                0, NULL, item_call_done_cb, slot);
}

static gpointer
consume_squares (SluiceConsumerator *consumerator, gpointer user_data, GError **error)
{
  gpointer item;
  gint64 i = 0;

  while (sluice_consumerator_next (consumerator, &item, error))
    {
      gint64 v;

      g_variant_get (item, "(x)", &v);
      g_assert_cmpint (v, ==, i * i);
      g_variant_unref (item);
      i++;
    }
  return GINT_TO_POINTER ((int) i);
}

static void
stop_done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  GError *error = NULL;

  *(int *) user_data = GPOINTER_TO_INT (sluice_ordered_item_producer_stop_finish (
      SLUICE_ORDERED_ITEM_PRODUCER (source), result, &error));
  g_assert_no_error (error);
}

/* @n items through an ordered producer whose items are named calls through
 * Redis to two remote workers; with @restart, Redis is restarted once a
 * quarter of them is done. */
static void
ordered_squares (Server *server, guint n, gboolean restart)
{
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  SluiceOrderedItemProducer *producer;
  Remote *a, *b;
  int n_consumed = -1;

  a = remote_start (server, "a");
  b = remote_start (server, "b");
  queue = producer_new (server, "squares", 16, &worker);
  producer = sluice_ordered_item_producer_new (queue, 32, (GDestroyNotify) g_variant_unref);
  sluice_ordered_item_producer_start (producer, consume_squares, NULL, NULL, NULL);
  for (guint i = 0; i < n; i++)
    {
      Item *item = g_new0 (Item, 1);

      item->queue = queue;
      item->n = i;
      sluice_ordered_item_producer_produce_item (producer, make_item, item, g_free, NULL, NULL,
                                                 NULL);
    }
  sluice_ordered_item_producer_stop_async (producer, NULL, stop_done_cb, &n_consumed);
  if (restart)
    {
      WAIT_UNTIL (stat_of (worker, "results") >= n / 4);
      server_restart (server);
    }
  WAIT_UNTIL (n_consumed >= 0);
  g_assert_cmpint (n_consumed, ==, n);
  g_test_message ("%" G_GUINT64_FORMAT " sent for %u calls, %" G_GUINT64_FORMAT
                  " duplicates dropped, %" G_GUINT64_FORMAT " reconnects",
                  stat_of (worker, "sent"), n, stat_of (worker, "duplicates"),
                  stat_of (worker, "reconnects"));
  g_assert_cmpuint (stat_of (worker, "results"), ==, n);
  if (restart)
    g_assert_cmpuint (stat_of (worker, "reconnects"), >=, 1);

  g_object_unref (producer);
  queue_shutdown (queue);
  g_object_unref (worker);
  remote_stop (a);
  remote_stop (b);
}

static void
test_ordered_producer (void)
{
  Server *server = server_start (NULL);

  if (server == NULL)
    return;
  ordered_squares (server, sluice_test_scale (2000, 4), FALSE);
  server_stop (server);
}

/* A function's error crosses back with its domain, code and message; an
 * unknown function and arguments of the wrong type give the library's
 * errors. */
static void
test_errors_cross (void)
{
  Rig rig;
  Calls *calls;

  if (!rig_start (&rig))
    return;

  calls = calls_new (4);
  call (rig.queue, calls, 0, NULL, "fail", g_variant_new ("(s)", "no such thing"));
  call (rig.queue, calls, 1, NULL, "nonexistent", g_variant_new ("()"));
  call (rig.queue, calls, 2, NULL, "square", g_variant_new ("(s)", "text"));
  call (rig.queue, calls, 3, NULL, "square", g_variant_new ("(x)", (gint64) 7));
  WAIT_UNTIL (calls->n_done == 4);

  g_assert_error (calls->errors[0], G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_cmpstr (calls->errors[0]->message, ==, "no such thing");
  g_assert_error (calls->errors[1], SLUICE_ERROR, SLUICE_ERROR_UNKNOWN_FUNCTION);
  g_assert_error (calls->errors[2], SLUICE_ERROR, SLUICE_ERROR_INVALID_ARGUMENTS);
  g_assert_no_error (calls->errors[3]);
  g_assert_cmpstr (g_variant_get_type_string (calls->results[3]), ==, "(x)");

  calls_free (calls, 4);
  rig_stop (&rig);
}

/* A call past its timeout fails with G_IO_ERROR_TIMED_OUT at once; the
 * remote worker's late result is dropped, and the worker serves on. */
static void
test_timeout (void)
{
  Rig rig;
  Calls *calls;
  CallData *data;

  if (!rig_start (&rig))
    return;
  calls = calls_new (3);
  /* The remote worker is up and waiting for calls: it reads the next one
   * at once (one withdrawn before it was read would have no late result).
   * Under valgrind a read takes longer: the timeout too. */
  call (rig.queue, calls, 0, NULL, "square", g_variant_new ("(x)", (gint64) 4));
  WAIT_UNTIL (calls->n_done == 1);
  g_assert_no_error (calls->errors[0]);
  data = g_new0 (CallData, 1);
  data->calls = calls;
  data->index = 1;
  sluice_task_queue_call_async (rig.queue, NULL, "sleep",
                                g_variant_new ("(u)", sluice_test_slowed_down () ? 6000 : 600), 0,
                                sluice_test_slowed_down () ? 1000 : 100, NULL, call_done_cb, data);
  WAIT_UNTIL (calls->n_done == 2);
  g_assert_error (calls->errors[1], G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  WAIT_UNTIL (stat_of (rig.worker, "duplicates") == 1);
  call (rig.queue, calls, 2, NULL, "square", g_variant_new ("(x)", (gint64) 5));
  WAIT_UNTIL (calls->n_done == 3);
  g_assert_no_error (calls->errors[2]);

  calls_free (calls, 3);
  rig_stop (&rig);
}

/* A call cancelled, and a call timed out, while a remote worker runs
 * them: each fails at once (G_IO_ERROR_CANCELLED, G_IO_ERROR_TIMED_OUT),
 * the cancel entry reaches the remote function's GCancellable, and the
 * function's own CANCELLED answer is dropped as a late result. */
static void
test_remote_cancel (void)
{
  Rig rig;
  Calls *calls;
  GCancellable *cancellable = g_cancellable_new ();

  if (!rig_start (&rig))
    {
      g_object_unref (cancellable);
      return;
    }
  g_atomic_int_set (&n_count_cancel_started, 0);
  g_atomic_int_set (&n_count_cancel_seen, 0);
  calls = calls_new (3);
  for (guint i = 0; i < 2; i++)
    {
      CallData *data = g_new0 (CallData, 1);

      data->calls = calls;
      data->index = i;
      /* The first is cancelled, the second times out after 3 s. */
      sluice_task_queue_call_async (rig.queue, NULL, "count-cancel", NULL, 0, i == 0 ? 0 : 3000,
                                    i == 0 ? cancellable : NULL, call_done_cb, data);
    }
  /* Both running in the remote worker (two threads). */
  WAIT_UNTIL (g_atomic_int_get (&n_count_cancel_started) == 2);
  g_assert_cmpint (g_atomic_int_get (&n_count_cancel_seen), ==, 0);
  g_cancellable_cancel (cancellable);
  WAIT_UNTIL (calls->n_done == 2);
  g_assert_error (calls->errors[0], G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_error (calls->errors[1], G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  WAIT_UNTIL (g_atomic_int_get (&n_count_cancel_seen) == 2);
  WAIT_UNTIL (stat_of (rig.worker, "duplicates") == 2);
  g_assert_cmpint (server_integer (rig.server, "XLEN", "sluice:control"), ==, 2);

  /* The worker serves on. */
  call (rig.queue, calls, 2, NULL, "square", g_variant_new ("(x)", (gint64) 4));
  WAIT_UNTIL (calls->n_done == 3);
  g_assert_no_error (calls->errors[2]);

  g_object_unref (cancellable);
  calls_free (calls, 3);
  rig_stop (&rig);
}

static void
shutdown_any_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  g_assert_true (sluice_task_queue_shutdown_finish (SLUICE_TASK_QUEUE (source), result, NULL));
  *(gboolean *) user_data = TRUE;
}

/* Redis goes away mid-call and does not come back: the worker tries to
 * connect again for its reconnect timeout, gives its call back to the
 * queue, then resigns (the queue has no other worker: shutting down fails
 * the call with SLUICE_ERROR_NO_WORKER); the remote worker keeps trying
 * until it is cancelled. Nothing hangs. */
static void
test_connection_lost (void)
{
  Server *server = server_start (NULL);
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  Remote *a;
  Calls *calls;
  gboolean shut_down = FALSE;
  gboolean resigned = FALSE;

  if (server == NULL)
    return;
  a = remote_start (server, "a");
  queue = producer_new (server, NULL, 4, &worker);
  sluice_redis_worker_set_reconnect_timeout (worker, 200);
  g_signal_connect_swapped (worker, "resigned", G_CALLBACK (quit_cb), &resigned);
  calls = calls_new (1);
  call (queue, calls, 0, NULL, "sleep", g_variant_new ("(u)", 400));
  WAIT_UNTIL (stat_of (worker, "sent") == 1);
  g_subprocess_force_exit (server->process);
  g_assert_true (g_subprocess_wait (server->process, NULL, NULL));
  WAIT_UNTIL (g_atomic_int_get (&resigned));
  g_assert_cmpuint (calls->n_done, ==, 0);
  g_assert_cmpuint (stat_of (worker, "reconnects"), >=, 1);

  sluice_task_queue_shutdown_async (queue, FALSE, NULL, shutdown_any_cb, &shut_down);
  WAIT_UNTIL (shut_down && calls->n_done == 1);
  g_assert_error (calls->errors[0], SLUICE_ERROR, SLUICE_ERROR_NO_WORKER);

  /* Cancelled while it waits for Redis to come back. */
  remote_stop (a);

  calls_free (calls, 1);
  g_object_unref (queue);
  g_object_unref (worker);
  server_stop (server);
}

/* Redis restarted (SIGKILL, then started again on the same socket) in the
 * middle of a run of an ordered producer whose items are named calls
 * through Redis. Without persistence Redis loses the calls, the answers
 * and the consumer group; with appendonly (fsync always) it keeps them.
 * Either way both ends connect again, the producer-side worker gives the
 * calls it had in Redis back to the queue, which sends them again, and
 * the first result of each wins: the consumer sees every item exactly
 * once, in order. */
static void
redis_restart (gboolean appendonly)
{
  Server *server = server_start_full (NULL, appendonly, NULL);

  if (server == NULL)
    return;
  ordered_squares (server, sluice_test_scale (1000, 4), TRUE);
  server_stop (server);
}

static void
test_redis_restart (void)
{
  redis_restart (FALSE);
}

static void
test_redis_restart_appendonly (void)
{
  redis_restart (TRUE);
}

/* The same with INFO denied to the user (an ACL): the worker cannot learn
 * which instance it reached, so it takes every connection made again for
 * a restart (all its calls in flight go back to the queue and are sent
 * again); it still connects, and no call is lost. */
/* A server whose default user may not run INFO (nor learn the run_id). */
static Server *
server_start_info_denied (void)
{
  const char *extra[] = { "--user", "default", "on", "nopass", "~*", "&*", "+@all", "-info", NULL };
  Server *server = server_start_full (NULL, FALSE, extra);
  redisReply *reply;

  if (server == NULL)
    return NULL;
  reply = redisCommand (server->c, "INFO server");
  g_assert_nonnull (reply);
  g_assert_cmpint (reply->type, ==, REDIS_REPLY_ERROR);
  freeReplyObject (reply);
  return server;
}

static void
test_redis_restart_info_denied (void)
{
  Server *server = server_start_info_denied ();

  if (server == NULL)
    return;
  ordered_squares (server, sluice_test_scale (1000, 4), TRUE);
  server_stop (server);
}

/* The value of @field in the stream entry @entry ([id, [field, value,
 * ...]]), or NULL. */
static const char *
entry_field (redisReply *entry, const char *field)
{
  redisReply *kv = entry->element[1];

  for (size_t i = 0; i + 1 < kv->elements; i += 2)
    if (strcmp (kv->element[i]->str, field) == 0)
      return kv->element[i + 1]->str;
  return NULL;
}

/* Waits for the first entry of @stream (transfer full: the XRANGE reply). */
static redisReply *
first_entry (Server *server, const char *stream)
{
  gint64 deadline = deadline_from_now ();

  while (g_get_monotonic_time () < deadline)
    {
      redisReply *reply = redisCommand (server->c, "XRANGE %s - + COUNT 1", stream);

      g_assert_nonnull (reply);
      if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1)
        return reply;
      freeReplyObject (reply);
      g_usleep (5000);
    }
  g_assert_not_reached ();
}

/* Malformed entries are answered with an error (when they name a reply
 * stream) or acknowledged, and the worker keeps going. An entry of
 * version 1 of the protocol (long field names, no "v") is answered with an
 * error that says so, in version 1's names (what such a producer reads);
 * one of an unknown version likewise, in this version's. */
static void
test_malformed_entries (void)
{
  Server *server = server_start (NULL);
  Remote *a;
  redisReply *reply;

  if (server == NULL)
    return;
  a = remote_start (server, "a");
  /* The reply streams of living producers of version 2 exist (answers
   * are written only to those). */
  freeReplyObject (redisCommand (server->c, "XADD sluice:replies:t MAXLEN 0 * made 1"));
  freeReplyObject (redisCommand (server->c, "XADD sluice:replies:new MAXLEN 0 * made 1"));
  freeReplyObject (redisCommand (server->c, "XADD sluice:calls * garbage yes"));
  freeReplyObject (redisCommand (server->c, "XADD sluice:calls * v 2 i t:1 f square t ((( a x"));
  reply = first_entry (server, "sluice:replies:t");
  g_assert_cmpstr (entry_field (reply->element[0], "i"), ==, "1");
  g_assert_cmpstr (entry_field (reply->element[0], "e"), ==, g_quark_to_string (SLUICE_ERROR));
  g_assert_cmpint (atoi (entry_field (reply->element[0], "c")), ==, SLUICE_ERROR_INVALID_ARGUMENTS);
  g_assert_nonnull (strstr (entry_field (reply->element[0], "m"), "not a definite type"));
  freeReplyObject (reply);

  freeReplyObject (redisCommand (server->c, "XADD sluice:calls * id old:7 fn square reply "
                                            "test:replies type (x) value 12345678"));
  reply = first_entry (server, "test:replies");
  g_assert_cmpstr (entry_field (reply->element[0], "id"), ==, "old:7");
  g_assert_cmpstr (entry_field (reply->element[0], "domain"), ==, g_quark_to_string (SLUICE_ERROR));
  g_assert_cmpint (atoi (entry_field (reply->element[0], "code")), ==,
                   SLUICE_ERROR_INVALID_ARGUMENTS);
  g_assert_nonnull (strstr (entry_field (reply->element[0], "message"), "version 1"));
  freeReplyObject (reply);

  freeReplyObject (redisCommand (server->c, "XADD sluice:calls * v 4 i new:9 f square"));
  reply = first_entry (server, "sluice:replies:new");
  g_assert_cmpstr (entry_field (reply->element[0], "i"), ==, "9");
  g_assert_nonnull (strstr (entry_field (reply->element[0], "m"), "version 4"));
  freeReplyObject (reply);

  /* All acknowledged, and trimmed. */
  WAIT_UNTIL (server_integer (server, "XLEN", "sluice:calls") == 0);
  remote_stop (a);
  server_stop (server);
}

/* The time to live of @key in milliseconds (-2: no such key, -1: none). */
static long long
server_pttl (Server *server, const char *key)
{
  return server_integer (server, "PTTL", key);
}

/* A reply stream lives while its producer does (its time to live
 * renewed), and expires once the producer died without deleting it (the
 * child process leaves with _exit ()); remote workers do not make a reply
 * stream that is gone (an answer to a dead producer is dropped). */
static void
test_reply_ttl (void)
{
  Server *server;
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  g_autofree char *stream = NULL;
  redisReply *reply;
  long long ttl;
  Remote *remote;

  if (g_test_subprocess ())
    {
      /* The producer that dies. */
      const char *endpoint = g_getenv ("SLUICE_TEST_REDIS_ENDPOINT");
      redisContext *c = redisConnectUnix (endpoint + strlen ("unix:"));
      GError *error = NULL;

      g_assert_true (c != NULL && c->err == 0);
      worker = sluice_redis_worker_new (endpoint, NULL, NULL, 4, &error);
      g_assert_no_error (error);
      sluice_redis_worker_set_reply_ttl (worker, 300);
      stream = g_strconcat ("sluice:replies:", sluice_redis_worker_get_client_id (worker), NULL);
      for (;;)
        {
          reply = redisCommand (c, "PTTL %s", stream);
          g_assert_nonnull (reply);
          ttl = reply->integer;
          freeReplyObject (reply);
          if (ttl > 0 && ttl <= 300)
            break;
          g_usleep (1000);
        }
      /* For the parent, which may come after the stream expired. */
      freeReplyObject (redisCommand (c, "SET test:dead-stream %s", stream));
      _exit (0);
    }

  server = server_start (NULL);
  if (server == NULL)
    return;
  queue = producer_new (server, "squares", 4, &worker);
  stream = g_strconcat ("sluice:replies:", sluice_redis_worker_get_client_id (worker), NULL);
  /* Made at once, with the default time to live (60 s). */
  WAIT_UNTIL (server_pttl (server, stream) > 0);
  g_assert_cmpint (server_pttl (server, stream), <=, 60000);
  /* Set, then renewed every third of it: it runs down below 2.5 s, then
   * goes up again. */
  sluice_redis_worker_set_reply_ttl (worker, 3000);
  WAIT_UNTIL (server_pttl (server, stream) <= 3000);
  WAIT_UNTIL (server_pttl (server, stream) < 2500);
  WAIT_UNTIL (server_pttl (server, stream) >= 2500);
  g_assert_cmpint (server_pttl (server, stream), <=, 3000);
  queue_shutdown (queue);
  g_object_unref (worker);
  /* Deleted when the worker is finalized. */
  g_assert_cmpint (server_pttl (server, stream), ==, -2);

  /* A producer that died: its stream expires. */
  g_setenv ("SLUICE_TEST_REDIS_ENDPOINT", server->endpoint, TRUE);
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  reply = redisCommand (server->c, "GET test:dead-stream");
  g_assert_nonnull (reply);
  g_assert_cmpint (reply->type, ==, REDIS_REPLY_STRING);
  g_free (stream);
  stream = g_strdup (reply->str);
  freeReplyObject (reply);
  WAIT_UNTIL (server_pttl (server, stream) == -2);

  /* An answer to a reply stream that is gone is dropped (the entry is
   * acknowledged and trimmed all the same). */
  remote = remote_start (server, "a");
  freeReplyObject (redisCommand (server->c,
                                 "XADD sluice:calls:squares * v 2 i gone:1 f square "
                                 "t (x) a %b",
                                 "\x03\0\0\0\0\0\0\0", (size_t) 8));
  WAIT_UNTIL (server_integer (server, "XLEN", "sluice:calls:squares") == 0);
  g_assert_cmpint (server_pttl (server, "sluice:replies:gone"), ==, -2);
  remote_stop (remote);
  server_stop (server);
}

/* The reply stream vanished while a call was in Redis (deleted here; it
 * could have expired while the producer was cut off from Redis): the
 * producer notices when it renews it, makes it again and sends the call
 * again, which completes once. With @ahead, the reader first reads up to
 * an id ten years ahead of Redis' clock (as after a restart on a host
 * whose clock is behind the old one's): the stream made anew must give
 * the answers still to come higher ids than that, or they would never be
 * read. */
static void
reply_stream_lost (gboolean ahead)
{
  Server *server = server_start (NULL);
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  g_autofree char *stream = NULL;
  Remote *remote;
  Calls *calls;
  guint n = ahead ? 2 : 1;

  if (server == NULL)
    return;
  queue = producer_new (server, "squares", 4, &worker);
  sluice_redis_worker_set_reply_ttl (worker, 600);
  stream = g_strconcat ("sluice:replies:", sluice_redis_worker_get_client_id (worker), NULL);
  calls = calls_new (n);
  if (ahead)
    {
      /* An entry that is no answer (counted as a duplicate once read):
       * the next answer's id is after it. */
      WAIT_UNTIL (server_pttl (server, stream) > 0);
      freeReplyObject (redisCommand (server->c, "XADD %s %" G_GINT64_FORMAT "-0 x 1", stream,
                                     g_get_real_time () / 1000 + (gint64) 315360000000));
      remote = remote_start (server, "a");
      call (queue, calls, 0, "squares", "square", g_variant_new ("(x)", (gint64) 0));
      WAIT_UNTIL (calls->n_done == 1);
      g_assert_cmpuint (stat_of (worker, "duplicates"), ==, 1);
      remote_stop (remote);
    }
  call (queue, calls, n - 1, "squares", "square", g_variant_new ("(x)", (gint64) n - 1));
  WAIT_UNTIL (server_integer (server, "XLEN", "sluice:calls:squares") == 1);
  freeReplyObject (redisCommand (server->c, "DEL %s", stream));
  WAIT_UNTIL (stat_of (worker, "sent") == n + 1);
  WAIT_UNTIL (server_pttl (server, stream) > 0);
  remote = remote_start (server, "a");
  WAIT_UNTIL (calls->n_done == n);
  check_squares (calls, n);
  g_assert_cmpuint (stat_of (worker, "results"), ==, n);

  finish (calls, n, queue, worker, remote, server);
}

static void
test_reply_stream_lost (void)
{
  reply_stream_lost (FALSE);
}

static void
test_reply_stream_lost_clock_behind (void)
{
  reply_stream_lost (TRUE);
}

/* A call of @n_bytes of arguments (of "square", which fails on them if
 * they reach it), and a call of "zeros" with a result of @n_zeros bytes,
 * through @server; @calls gets their outcomes. */
static void
big_calls (Server *server, guint n_bytes, guint n_zeros, Calls *calls)
{
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue = producer_new (server, "squares", 4, &worker);
  Remote *remote = remote_start (server, "a");
  g_autofree guint8 *bytes = g_malloc0 (n_bytes);

  call (
      queue, calls, 0, "squares", "square",
      g_variant_new ("(@ay)", g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, bytes, n_bytes, 1)));
  call (queue, calls, 1, "squares", "zeros", g_variant_new ("(u)", n_zeros));
  call (queue, calls, 2, "squares", "square", g_variant_new ("(x)", (gint64) 3));
  WAIT_UNTIL (calls->n_done == 3);
  g_assert_cmpuint (stat_of (worker, "reconnects"), ==, 0);
  queue_shutdown (queue);
  g_object_unref (worker);
  remote_stop (remote);
}

/* A Redis that takes at most 1 MiB in one value (proto-max-bulk-len):
 * a call whose arguments are larger fails at once (sent, Redis would
 * close the connection, again at each attempt), and so does one whose
 * result is larger (the remote worker checks); smaller calls go through.
 * Where CONFIG is denied (an ACL) the limit is unknown: nothing is
 * checked, calls within the limit work as before. */
static void
test_max_bulk (void)
{
  const char *small[] = { "--proto-max-bulk-len", "1mb", NULL };
  const char *denied[] = {
    "--user", "default", "on", "nopass", "~*", "&*", "+@all", "-config", NULL
  };
  Server *server = server_start_full (NULL, FALSE, small);
  Calls *calls;
  gint64 v;

  if (server == NULL)
    return;
  calls = calls_new (3);
  big_calls (server, 2 << 20, 2 << 20, calls);
  g_assert_error (calls->errors[0], G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE);
  g_assert_nonnull (strstr (calls->errors[0]->message, "proto-max-bulk-len 1048576"));
  g_assert_error (calls->errors[1], G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE);
  g_assert_nonnull (strstr (calls->errors[1]->message, "“zeros”"));
  g_assert_no_error (calls->errors[2]);
  g_variant_get (calls->results[2], "(x)", &v);
  g_assert_cmpint (v, ==, 9);
  calls_free (calls, 3);
  server_stop (server);

  server = server_start_full (NULL, FALSE, denied);
  calls = calls_new (3);
  big_calls (server, 1000, 1000, calls);
  /* Through to the remote function, which wants an "(x)". */
  g_assert_error (calls->errors[0], SLUICE_ERROR, SLUICE_ERROR_INVALID_ARGUMENTS);
  g_assert_no_error (calls->errors[1]);
  g_assert_cmpuint (g_variant_get_size (calls->results[1]), ==, 1000);
  g_assert_no_error (calls->errors[2]);
  calls_free (calls, 3);
  server_stop (server);
}

/* An unreachable server, a wrong password and a malformed endpoint give
 * clear errors at once. */
static void
test_connection_errors (void)
{
  Server *server;
  SluiceRedisWorker *worker;
  GError *error = NULL;
  g_autofree char *endpoint = NULL;

  worker = sluice_redis_worker_new ("unix:/nonexistent/redis.sock", NULL, NULL, 4, &error);
  g_assert_null (worker);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED);
  g_clear_error (&error);

  worker = sluice_redis_worker_new ("http://example.com", NULL, NULL, 4, &error);
  g_assert_null (worker);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  server = server_start ("s3cret");
  if (server == NULL)
    return;
  worker = sluice_redis_worker_new (server->endpoint, "wrong", NULL, 4, &error);
  g_assert_null (worker);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
  g_clear_error (&error);
  worker = sluice_redis_worker_new (server->endpoint, "s3cret", NULL, 4, &error);
  g_assert_no_error (error);
  g_object_unref (worker);
  server_stop (server);
}

/* ---- remote workers in processes, killed ----------------------------- */

/* `sluice-worker --redis` serving the test module with two threads. */
static GSubprocess *
helper_start (Server *server, const char *series, guint index, guint lease_ms, guint max_deliveries)
{
  g_autofree char *redis = g_strconcat ("--redis=", server->endpoint, NULL);
  g_autofree char *series_arg = g_strconcat ("--series=", series, NULL);
  g_autofree char *consumer = g_strdup_printf ("--consumer=helper-%u", index);
  g_autofree char *lease = g_strdup_printf ("--lease-ms=%u", lease_ms);
  g_autofree char *deliveries = g_strdup_printf ("--max-deliveries=%u", max_deliveries);
  const char *argv[] = {
    g_getenv ("SLUICE_WORKER_TOOL"),
    redis,
    series_arg,
    consumer,
    lease,
    deliveries,
    "--threads=2",
    g_getenv ("SLUICE_WORKER_TEST_MODULE"),
    NULL,
  };

  return spawn (argv, G_SUBPROCESS_FLAGS_NONE);
}

static void
helper_kill (GSubprocess *helper)
{
  g_subprocess_send_signal (helper, SIGKILL);
  g_subprocess_wait (helper, NULL, NULL);
  g_object_unref (helper);
}

/* Remote workers killed (SIGKILL) mid-call, at random moments: their
 * entries are reclaimed after the lease by the others, every call
 * completes exactly once with its right result, and the stats show the
 * redeliveries. AsynQueue's "worker crash" behaviour, across machines. */
static void
test_killed_workers (void)
{
  const guint n = g_test_slow () ? 10000 : 1500, n_kills = g_test_slow () ? 20 : 4;
  Server *server = server_start (NULL);
  GSubprocess *helpers[2];
  guint next_helper = 0;
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  Calls *calls;

  if (server == NULL)
    return;
  for (guint i = 0; i < 2; i++)
    helpers[i] = helper_start (server, "slow", next_helper++, 300, 20);
  queue = producer_new (server, "slow", 8, &worker);

  calls = calls_new (n);
  for (guint i = 0; i < n; i++)
    call (queue, calls, i, "slow", "slow-square", g_variant_new ("(x)", (gint64) i));
  for (guint k = 0; k < n_kills; k++)
    {
      gboolean woke = FALSE;
      guint victim = g_random_int_range (0, 2);

      g_timeout_add (g_random_int_range (20, 200), quit_cb, &woke);
      WAIT_UNTIL (woke);
      helper_kill (helpers[victim]);
      helpers[victim] = helper_start (server, "slow", next_helper++, 300, 20);
    }
  WAIT_UNTIL (calls->n_done == n);

  check_squares (calls, n);
  g_test_message ("%u kills: %" G_GUINT64_FORMAT " redelivered, %" G_GUINT64_FORMAT
                  " duplicates dropped",
                  n_kills, stat_of (worker, "redelivered"), stat_of (worker, "duplicates"));
  if (calls->n_done > 0 && stat_of (worker, "redelivered") == 0)
    g_test_message ("no kill caught a call in its function");
  g_assert_cmpuint (stat_of (worker, "results"), ==, n);

  calls_free (calls, n);
  queue_shutdown (queue);
  g_object_unref (worker);
  for (guint i = 0; i < 2; i++)
    helper_kill (helpers[i]);
  server_stop (server);
}

/* A call that kills every worker that runs it: past the maximum number of
 * deliveries it fails with SLUICE_ERROR_WORKER_LOST, and the workers left
 * keep serving. */
static void
test_worker_lost (void)
{
  Server *server = server_start (NULL);
  GSubprocess *helpers[3];
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  Calls *calls;

  if (server == NULL)
    return;
  for (guint i = 0; i < 3; i++)
    helpers[i] = helper_start (server, "deadly", i, 200, 2);
  queue = producer_new (server, "deadly", 4, &worker);

  calls = calls_new (2);
  call (queue, calls, 0, "deadly", "die", g_variant_new ("()"));
  WAIT_UNTIL (calls->n_done == 1);
  g_assert_error (calls->errors[0], SLUICE_ERROR, SLUICE_ERROR_WORKER_LOST);
  g_assert_cmpuint (stat_of (worker, "redelivered"), ==, 1);
  call (queue, calls, 1, "deadly", "square", g_variant_new ("(x)", (gint64) 3));
  WAIT_UNTIL (calls->n_done == 2);
  g_assert_no_error (calls->errors[1]);

  calls_free (calls, 2);
  queue_shutdown (queue);
  g_object_unref (worker);
  for (guint i = 0; i < 3; i++)
    helper_kill (helpers[i]);
  server_stop (server);
}

/* `sluice-worker --redis`: SIGTERM stops it cleanly (status 0) after it
 * answered the call it was running; usage errors exit with status 2. */
static void
test_tool_sigterm (void)
{
  Server *server = server_start (NULL);
  GSubprocess *helper;
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  Calls *calls;
  GError *error = NULL;
  const char *no_series[] = { g_getenv ("SLUICE_WORKER_TOOL"), "--redis=unix:/nonexistent",
                              g_getenv ("SLUICE_WORKER_TEST_MODULE"), NULL };

  if (server == NULL)
    return;
  helper = spawn (no_series, G_SUBPROCESS_FLAGS_STDERR_SILENCE);
  g_assert_true (g_subprocess_wait (helper, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (g_subprocess_get_exit_status (helper), ==, 2);
  g_object_unref (helper);

  helper = helper_start (server, "tool", 0, 0, 0);
  queue = producer_new (server, "tool", 4, &worker);
  calls = calls_new (1);
  call (queue, calls, 0, "tool", "sleep", g_variant_new ("(u)", 300));
  WAIT_UNTIL (pending_count (server, "sluice:calls:tool") == 1);
  g_subprocess_send_signal (helper, SIGTERM);
  g_assert_true (g_subprocess_wait (helper, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (helper));
  g_assert_cmpint (g_subprocess_get_exit_status (helper), ==, 0);
  WAIT_UNTIL (calls->n_done == 1);
  g_assert_no_error (calls->errors[0]);
  g_assert_cmpint (server_integer (server, "XLEN", "sluice:calls:tool"), ==, 0);

  g_object_unref (helper);
  calls_free (calls, 1);
  queue_shutdown (queue);
  g_object_unref (worker);
  server_stop (server);
}

/* Drops the connection of the client named @name (CLIENT KILL): Redis
 * itself stays up. */
static void
kill_client (Server *server, const char *name)
{
  redisReply *reply = redisCommand (server->c, "CLIENT LIST");
  g_autofree char *needle = g_strdup_printf (" name=%s ", name);
  g_auto (GStrv) lines = NULL;
  guint64 id = 0;

  g_assert_nonnull (reply);
  g_assert_cmpint (reply->type, ==, REDIS_REPLY_STRING);
  lines = g_strsplit (reply->str, "\n", -1);
  freeReplyObject (reply);
  for (guint i = 0; lines[i] != NULL; i++)
    if (strstr (lines[i], needle) != NULL)
      id = g_ascii_strtoull (lines[i] + strlen ("id="), NULL, 10);
  g_assert_cmpuint (id, >, 0);
  reply = redisCommand (server->c, "CLIENT KILL ID %llu", (unsigned long long) id);
  g_assert_nonnull (reply);
  g_assert_cmpint (reply->type, ==, REDIS_REPLY_INTEGER);
  g_assert_cmpint (reply->integer, ==, 1);
  freeReplyObject (reply);
}

/* The producer-side worker's connections dropped while Redis stays up
 * (CLIENT KILL): the calls in Redis are not given back (they are still
 * there, and their results come on the reply stream, read on from where
 * the reader was), so nothing is sent twice and every call completes
 * once. The reader's connection is dropped while calls run; the sender's
 * while it is idle, so that it notices with the next calls, which it
 * sends again (they may not have reached Redis). */
static void
test_connection_dropped (void)
{
  const guint n = 6;
  Server *server = server_start (NULL);
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  g_autofree char *reader_name = NULL, *sender_name = NULL;
  Remote *remote;
  Calls *calls;

  if (server == NULL)
    return;
  g_atomic_int_set (&gate_open, FALSE);
  remote = remote_start (server, "a");
  queue = producer_new (server, "squares", n, &worker);
  reader_name = g_strconcat ("sluice-read.", sluice_redis_worker_get_client_id (worker), NULL);
  sender_name = g_strconcat ("sluice-send.", sluice_redis_worker_get_client_id (worker), NULL);
  calls = calls_new (2 * n);
  for (guint i = 0; i < n; i++)
    call (queue, calls, i, "squares", "gated-square", g_variant_new ("(x)", (gint64) i));
  /* All in Redis, two of them running. */
  WAIT_UNTIL (server_integer (server, "XLEN", "sluice:calls:squares") == n &&
              pending_count (server, "sluice:calls:squares") >= 2);
  kill_client (server, reader_name);
  WAIT_UNTIL (stat_of (worker, "reconnects") == 1);
  g_atomic_int_set (&gate_open, TRUE);
  WAIT_UNTIL (calls->n_done == n);
  g_assert_cmpuint (stat_of (worker, "sent"), ==, n);
  g_assert_cmpuint (stat_of (worker, "results"), ==, n);

  kill_client (server, sender_name);
  for (guint i = n; i < 2 * n; i++)
    call (queue, calls, i, "squares", "gated-square", g_variant_new ("(x)", (gint64) i));
  WAIT_UNTIL (calls->n_done == 2 * n);
  check_squares (calls, 2 * n);
  g_assert_cmpuint (stat_of (worker, "reconnects"), ==, 2);
  g_assert_cmpuint (stat_of (worker, "results"), ==, 2 * n);
  g_assert_cmpuint (stat_of (worker, "sent"), <=, 3 * n);

  calls_free (calls, 2 * n);
  queue_shutdown (queue);
  g_object_unref (worker);
  remote_stop (remote);
  server_stop (server);
}

/* Redis refuses a call for good (its stream's key holds a string:
 * WRONGTYPE): the call fails with Redis's error, and the connection, which
 * still works, is kept. */
static void
test_call_refused (void)
{
  Server *server = server_start (NULL);
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  Calls *calls;
  redisReply *reply;

  if (server == NULL)
    return;
  reply = redisCommand (server->c, "SET sluice:calls:taken not-a-stream");
  g_assert_nonnull (reply);
  freeReplyObject (reply);
  queue = producer_new (server, "taken", 4, &worker);
  calls = calls_new (1);
  call (queue, calls, 0, "taken", "square", g_variant_new ("(x)", (gint64) 2));
  WAIT_UNTIL (calls->n_done == 1);
  g_assert_error (calls->errors[0], G_IO_ERROR, G_IO_ERROR_FAILED);
  g_assert_nonnull (strstr (calls->errors[0]->message, "WRONGTYPE"));
  g_assert_cmpuint (stat_of (worker, "reconnects"), ==, 0);
  g_assert_cmpuint (stat_of (worker, "in-flight"), ==, 0);
  g_assert_cmpuint (stat_of (worker, "tracked"), ==, 0);

  calls_free (calls, 1);
  queue_shutdown (queue);
  g_object_unref (worker);
  server_stop (server);
}

/* A script keeps Redis busy (it answers BUSY to everything else, as it
 * answers LOADING while it loads its data after a restart): the
 * producer-side worker waits and sends its calls again, without taking it
 * for a lost connection. */
typedef struct
{
  Server *server;
  guint busy_ms;
} Busy;

static gpointer
busy_main (gpointer data)
{
  Busy *busy = data;
  redisContext *c = redisConnectUnix (busy->server->socket);
  redisReply *reply;

  g_assert_true (c != NULL && c->err == 0);
  reply = redisCommand (c, "EVAL %s 0 %u",
                        "local t0 = redis.call('TIME') "
                        "repeat local t = redis.call('TIME') "
                        "until (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > ARGV[1] * 1000 "
                        "return 1",
                        busy->busy_ms);
  g_assert_nonnull (reply);
  freeReplyObject (reply);
  redisFree (c);
  return NULL;
}

/* Starts the script, and returns once Redis answers BUSY. */
static GThread *
busy_start (Busy *busy)
{
  GThread *thread = g_thread_new ("busy", busy_main, busy);

  for (;;)
    {
      redisReply *reply = redisCommand (busy->server->c, "PING");
      gboolean is_busy = reply->type == REDIS_REPLY_ERROR && g_str_has_prefix (reply->str, "BUSY");

      freeReplyObject (reply);
      if (is_busy)
        return thread;
      g_usleep (5000);
    }
}

static void
test_redis_busy (void)
{
  const char *extra[] = { "--busy-reply-threshold", "50", NULL };
  Server *server = server_start_full (NULL, FALSE, extra);
  Busy busy = { server, sluice_test_slowed_down () ? 5000 : 1500 };
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  GThread *thread;
  Remote *remote;
  Calls *calls;
  const guint n = 8;

  if (server == NULL)
    return;
  g_atomic_int_set (&gate_open, TRUE);
  remote = remote_start (server, "a");
  queue = producer_new (server, "squares", n, &worker);
  /* The groups exist before Redis is busy. */
  calls = calls_new (n);
  call (queue, calls, 0, "squares", "square", g_variant_new ("(x)", (gint64) 0));
  WAIT_UNTIL (calls->n_done == 1);

  thread = busy_start (&busy);
  for (guint i = 1; i < n; i++)
    call (queue, calls, i, "squares", "square", g_variant_new ("(x)", (gint64) i));
  WAIT_UNTIL (calls->n_done == n);
  g_thread_join (thread);
  check_squares (calls, n);
  g_assert_cmpuint (stat_of (worker, "reconnects"), ==, 0);
  g_assert_cmpuint (stat_of (worker, "results"), ==, n);

  finish (calls, n, queue, worker, remote, server);
}

/* A call cancelled while Redis answers BUSY (the worker waits to send it
 * again) is withdrawn: it completes cancelled and is never added to its
 * stream, so no remote worker runs it. */
static void
test_redis_busy_cancel (void)
{
  const char *extra[] = { "--busy-reply-threshold", "50", NULL };
  Server *server = server_start_full (NULL, FALSE, extra);
  Busy busy = { server, sluice_test_slowed_down () ? 8000 : 2000 };
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  GThread *thread;
  Remote *remote;
  Calls *calls;
  CallData *data;
  redisReply *reply;
  guint64 sent;
  long long added = -1;

  if (server == NULL)
    return;
  g_atomic_int_set (&n_count_cancel_started, 0);
  remote = remote_start (server, "a");
  queue = producer_new (server, "squares", 4, &worker);
  calls = calls_new (3);
  /* The groups exist before Redis is busy. */
  call (queue, calls, 0, NULL, "square", g_variant_new ("(x)", (gint64) 0));
  WAIT_UNTIL (calls->n_done == 1);

  thread = busy_start (&busy);
  sent = stat_of (worker, "sent");
  data = g_new0 (CallData, 1);
  data->calls = calls;
  data->index = 1;
  sluice_task_queue_call_async (queue, NULL, "count-cancel", NULL, 0, 0, cancellable, call_done_cb,
                                data);
  /* Sent, and refused (or about to be). */
  WAIT_UNTIL (stat_of (worker, "sent") > sent);
  g_cancellable_cancel (cancellable);
  WAIT_UNTIL (calls->n_done == 2);
  g_assert_error (calls->errors[1], G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_thread_join (thread);

  /* The worker serves on; the cancelled call never reached the stream. */
  call (queue, calls, 2, NULL, "square", g_variant_new ("(x)", (gint64) 2));
  WAIT_UNTIL (calls->n_done == 3);
  g_assert_no_error (calls->errors[2]);
  g_assert_cmpint (g_atomic_int_get (&n_count_cancel_started), ==, 0);
  WAIT_UNTIL (stat_of (worker, "in-flight") == 0);
  g_assert_cmpuint (stat_of (worker, "tracked"), ==, 0);
  reply = redisCommand (server->c, "XINFO STREAM sluice:calls");
  g_assert_nonnull (reply);
  g_assert_cmpint (reply->type, ==, REDIS_REPLY_ARRAY);
  for (size_t i = 0; i + 1 < reply->elements; i += 2)
    if (g_str_equal (reply->element[i]->str, "entries-added"))
      added = reply->element[i + 1]->integer;
  freeReplyObject (reply);
  g_assert_cmpint (added, ==, 2);

  finish (calls, 3, queue, worker, remote, server);
}

/* A call of a batch (version 3) for the test to write by hand: @type
 * and @data are its arguments'. */
static GVariant *
batch_call (guint64 seq, const char *name, const char *type, const void *data, gsize len)
{
  return g_variant_new ("(tss@ayu)", seq, name, type,
                        g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, data, len, 1), 1);
}

/* Waits for @n answers of version 3 in @stream, from worker "a", and
 * returns them sorted by their call's sequence (an a(tusaysis)). */
static GVariant *
batch_answers (Server *server, const char *stream, guint n)
{
  gint64 deadline = deadline_from_now ();
  GVariant *sorted[16] = { NULL };
  GVariant *all;
  guint found = 0;

  g_assert_cmpuint (n, <=, G_N_ELEMENTS (sorted));
  while (found < n && g_get_monotonic_time () < deadline)
    {
      redisReply *reply = redisCommand (server->c, "XRANGE %s - +", stream);

      g_assert_cmpint (reply->type, ==, REDIS_REPLY_ARRAY);
      found = 0;
      memset (sorted, 0, sizeof sorted);
      for (size_t e = 0; e < reply->elements; e++)
        {
          redisReply *kv = reply->element[e]->element[1];
          GBytes *bytes = NULL;
          GVariant *answers;

          for (size_t i = 0; i + 1 < kv->elements; i += 2)
            if (g_str_equal (kv->element[i]->str, "b"))
              bytes = g_bytes_new (kv->element[i + 1]->str, kv->element[i + 1]->len);
          g_assert_cmpstr (entry_field (reply->element[e], "v"), ==, "3");
          g_assert_cmpstr (entry_field (reply->element[e], "w"), ==, "a");
          g_assert_nonnull (bytes);
          answers = g_variant_ref_sink (
              g_variant_new_from_bytes (G_VARIANT_TYPE ("a(tusaysis)"), bytes, FALSE));
          g_bytes_unref (bytes);
          if (G_BYTE_ORDER != G_LITTLE_ENDIAN)
            {
              GVariant *swapped = g_variant_byteswap (answers);

              g_variant_unref (answers);
              answers = swapped;
            }
          for (gsize k = 0; k < g_variant_n_children (answers); k++)
            {
              GVariant *answer = g_variant_get_child_value (answers, k);
              guint64 seq;

              g_variant_get_child (answer, 0, "t", &seq);
              g_assert_cmpuint (seq, >=, 1);
              g_assert_cmpuint (seq, <=, n);
              g_assert_null (sorted[seq - 1]);
              sorted[seq - 1] = answer;
              found++;
            }
          g_variant_unref (answers);
        }
      freeReplyObject (reply);
      if (found < n)
        {
          for (guint i = 0; i < n; i++)
            g_clear_pointer (&sorted[i], g_variant_unref);
          g_usleep (5000);
        }
    }
  g_assert_cmpuint (found, ==, n);
  all = g_variant_ref_sink (g_variant_new_array (G_VARIANT_TYPE ("(tusaysis)"), sorted, n));
  for (guint i = 0; i < n; i++)
    g_variant_unref (sorted[i]);
  return all;
}

/* A batch whose second call has arguments of no definite type and whose
 * third names a function the worker does not have: those two fail with
 * their errors, the others are answered, all in one answer entry of
 * version 3; a batch that cannot be read at all is answered, in version
 * 2's names, to the call its `i` names (which fails the producer's whole
 * batch). */
static void
test_batch_malformed_call (void)
{
  Server *server = server_start (NULL);
  const gint64 three = GINT64_TO_LE (3), five = GINT64_TO_LE (5);
  GVariantBuilder builder;
  g_autoptr (GVariant) batch = NULL, answers = NULL;
  Remote *a;
  redisReply *reply;
  guint64 seq;
  guint32 deliveries;
  gint32 code;
  const char *type, *domain, *message;
  GVariant *data;

  if (server == NULL)
    return;
  a = remote_start (server, "a");
  freeReplyObject (redisCommand (server->c, "XADD sluice:replies:t MAXLEN 0 * made 1"));
  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a(tssayu)"));
  g_variant_builder_add_value (&builder, batch_call (1, "square", "(x)", &three, 8));
  g_variant_builder_add_value (&builder, batch_call (2, "square", "(((", "", 0));
  g_variant_builder_add_value (&builder, batch_call (3, "nonexistent", "()", "", 0));
  g_variant_builder_add_value (&builder, batch_call (4, "square", "(x)", &five, 8));
  batch = g_variant_ref_sink (g_variant_builder_end (&builder));
  if (G_BYTE_ORDER != G_LITTLE_ENDIAN)
    {
      GVariant *swapped = g_variant_byteswap (batch);

      g_variant_unref (batch);
      batch = swapped;
    }
  freeReplyObject (redisCommand (server->c, "XADD sluice:calls * v 3 i t:1 b %b",
                                 g_variant_get_data (batch), g_variant_get_size (batch)));
  /* The answers, in one entry or more (as the calls finish). */
  answers = batch_answers (server, "sluice:replies:t", 4);
  for (guint k = 0; k < 4; k++)
    {
      g_variant_get_child (answers, k, "(tu&s@ay&si&s)", &seq, &deliveries, &type, &data, &domain,
                           &code, &message);
      g_assert_cmpuint (seq, ==, k + 1);
      g_assert_cmpuint (deliveries, ==, 1);
      if (k == 0 || k == 3)
        {
          gint64 v;

          g_assert_cmpstr (type, ==, "(x)");
          g_assert_cmpstr (domain, ==, "");
          g_assert_cmpuint (g_variant_get_size (data), ==, 8);
          memcpy (&v, g_variant_get_data (data), 8);
          g_assert_cmpint (GINT64_FROM_LE (v), ==, k == 0 ? 9 : 25);
        }
      else
        {
          g_assert_cmpstr (type, ==, "");
          g_assert_cmpstr (domain, ==, g_quark_to_string (SLUICE_ERROR));
          g_assert_cmpint (code, ==,
                           k == 1 ? SLUICE_ERROR_INVALID_ARGUMENTS : SLUICE_ERROR_UNKNOWN_FUNCTION);
          if (k == 1)
            g_assert_nonnull (strstr (message, "not a definite type"));
        }
      g_variant_unref (data);
    }

  /* A batch that cannot be read. */
  freeReplyObject (redisCommand (server->c, "XADD sluice:replies:u MAXLEN 0 * made 1"));
  freeReplyObject (redisCommand (server->c, "XADD sluice:calls * v 3 i u:7 b garbage"));
  reply = first_entry (server, "sluice:replies:u");
  g_assert_cmpstr (entry_field (reply->element[0], "i"), ==, "7");
  g_assert_cmpint (atoi (entry_field (reply->element[0], "c")), ==, SLUICE_ERROR_INVALID_ARGUMENTS);
  g_assert_nonnull (strstr (entry_field (reply->element[0], "m"), "no calls"));
  freeReplyObject (reply);
  WAIT_UNTIL (server_integer (server, "XLEN", "sluice:calls") == 0);
  remote_stop (a);
  server_stop (server);
}

/* Makes @n calls (square of i, series "squares" except @series, or
 * "@name" for the call @odd) while Redis is busy: the worker sends them
 * again together once it is free, in one entry (a worker of 4 calls per
 * entry: max-in-flight 16). Returns the busy thread, joined. */
static gboolean client_connected (Server *server, const char *name);

static void
calls_in_one_batch (Server *server,
                    SluiceRedisWorker *worker,
                    SluiceTaskQueue *queue,
                    Calls *calls,
                    guint n,
                    const char *series,
                    guint odd,
                    const char *name,
                    GVariant *odd_args,
                    GCancellable *cancellable)
{
  Busy busy = { server, sluice_test_slowed_down () ? 3000 : 1000 };
  g_autofree char *reader =
      g_strconcat ("sluice-read.", sluice_redis_worker_get_client_id (worker), NULL);
  GThread *thread;

  /* Connected (a connection greeting while Redis is busy fails). */
  WAIT_UNTIL (client_connected (server, reader));
  thread = busy_start (&busy);

  for (guint i = 0; i < n; i++)
    {
      CallData *data = g_new0 (CallData, 1);

      data->calls = calls;
      data->index = i;
      sluice_task_queue_call_async (
          queue, series, i == odd ? name : "square",
          i == odd && odd_args != NULL ? odd_args : g_variant_new ("(x)", (gint64) i), 0, 0,
          i == odd ? cancellable : NULL, call_done_cb, data);
    }
  g_thread_join (thread);
}

/* Whether a connection named @name is connected to @server. */
static gboolean
client_connected (Server *server, const char *name)
{
  redisReply *reply = redisCommand (server->c, "CLIENT LIST");
  g_autofree char *field = g_strdup_printf ("name=%s ", name);
  gboolean found;

  g_assert_nonnull (reply);
  found = reply->type == REDIS_REPLY_STRING && strstr (reply->str, field) != NULL;
  freeReplyObject (reply);
  return found;
}

/* The entries ever added to @stream. */
static long long
entries_added (Server *server, const char *stream)
{
  redisReply *reply = redisCommand (server->c, "XINFO STREAM %s", stream);
  long long added = -1;

  g_assert_nonnull (reply);
  g_assert_cmpint (reply->type, ==, REDIS_REPLY_ARRAY);
  for (size_t i = 0; i + 1 < reply->elements; i += 2)
    if (g_str_equal (reply->element[i]->str, "entries-added"))
      added = reply->element[i + 1]->integer;
  freeReplyObject (reply);
  return added;
}

/* A call of a batch cancelled while no remote worker has read the batch:
 * it fails at once, the batch stays in its stream (the other calls are
 * still wanted: no XDEL), and once a remote worker comes, the others are
 * answered (it runs the cancelled one too, not having seen the cancel:
 * that answer is dropped). */
static void
test_batch_cancel (void)
{
  const char *extra[] = { "--busy-reply-threshold", "50", NULL };
  Server *server = server_start_full (NULL, FALSE, extra);
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  Remote *remote;
  Calls *calls;

  if (server == NULL)
    return;
  queue = producer_new (server, NULL, 16, &worker);
  calls = calls_new (3);
  calls_in_one_batch (server, worker, queue, calls, 3, NULL, 1, "square", NULL, cancellable);
  WAIT_UNTIL (stat_of (worker, "in-flight") == 3 &&
              server_integer (server, "XLEN", "sluice:calls") == 1);
  g_assert_cmpint (entries_added (server, "sluice:calls"), ==, 1);
  g_cancellable_cancel (cancellable);
  WAIT_UNTIL (calls->n_done == 1);
  g_assert_error (calls->errors[1], G_IO_ERROR, G_IO_ERROR_CANCELLED);
  /* The cancel entry went after any deletion. */
  WAIT_UNTIL (server_integer (server, "XLEN", "sluice:control") == 1);
  g_assert_cmpint (server_integer (server, "XLEN", "sluice:calls"), ==, 1);

  remote = remote_start (server, "a");
  WAIT_UNTIL (calls->n_done == 3);
  g_assert_no_error (calls->errors[0]);
  g_assert_no_error (calls->errors[2]);
  g_assert_cmpuint (calls->completions[0] + calls->completions[1] + calls->completions[2], ==, 3);
  WAIT_UNTIL (stat_of (worker, "duplicates") == 1);
  g_assert_cmpuint (stat_of (worker, "results"), ==, 2);
  finish (calls, 3, queue, worker, remote, server);
}

/* A batch of three calls whose remote worker is killed (SIGKILL) while
 * it runs the second, having answered the others: the member that
 * reclaims the batch after its lease splits it into an entry per call
 * (each counting the delivery that died, `p`), and runs them: every call
 * completes once (the first and third answers come twice: the second
 * ones are dropped), the second with a redelivery. */
static void
test_batch_reclaimed (void)
{
  const char *extra[] = { "--busy-reply-threshold", "50", NULL };
  Server *server = server_start_full (NULL, FALSE, extra);
  GSubprocess *helpers[2];
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  Calls *calls;
  redisReply *reply;
  guint holder;

  if (server == NULL)
    return;
  for (guint i = 0; i < 2; i++)
    helpers[i] = helper_start (server, "lossy", i, 300, 3);
  queue = producer_new (server, "lossy", 16, &worker);
  /* Members of the group before Redis is busy. */
  WAIT_UNTIL (consumers_of (server, "sluice:calls:lossy") == 2);
  calls = calls_new (3);
  calls_in_one_batch (server, worker, queue, calls, 3, "lossy", 1, "sleep",
                      g_variant_new ("(u)", sluice_test_slowed_down () ? 10000 : 3000), NULL);
  WAIT_UNTIL (calls->n_done == 2);
  g_assert_cmpuint (calls->n_done, ==, 2);
  g_assert_cmpuint (calls->completions[1], ==, 0);
  reply = redisCommand (server->c, "XPENDING sluice:calls:lossy sluice-workers - + 1");
  g_assert_cmpint (reply->type, ==, REDIS_REPLY_ARRAY);
  g_assert_cmpint (reply->elements, ==, 1);
  holder = g_str_equal (reply->element[0]->element[1]->str, "helper-0") ? 0 : 1;
  freeReplyObject (reply);
  helper_kill (helpers[holder]);
  helpers[holder] = NULL;

  WAIT_UNTIL (calls->n_done == 3);
  check_squares_but (calls, 3, 1);
  g_assert_no_error (calls->errors[1]);
  g_assert_cmpuint (stat_of (worker, "entries"), <, stat_of (worker, "sent"));
  /* The batch, and the entry of each of its calls. */
  g_assert_cmpint (entries_added (server, "sluice:calls:lossy"), ==, 4);
  WAIT_UNTIL (stat_of (worker, "duplicates") == 2);
  g_assert_cmpuint (stat_of (worker, "redelivered"), ==, 1);

  calls_free (calls, 3);
  queue_shutdown (queue);
  g_object_unref (worker);
  for (guint i = 0; i < 2; i++)
    if (helpers[i] != NULL)
      helper_kill (helpers[i]);
  server_stop (server);
}

/* A remote worker of version 2 (played by the test: what session 11's
 * answers to an entry of another version) reads the batch of a producer
 * of version 3, and answers its `i` (the batch's first call) with its
 * version error: every call of the batch fails with that error, none
 * waits. */
static void
test_version2_peer (void)
{
  const char *extra[] = { "--busy-reply-threshold", "50", NULL };
  Server *server = server_start_full (NULL, FALSE, extra);
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  Calls *calls;

  if (server == NULL)
    return;
  freeReplyObject (
      redisCommand (server->c, "XGROUP CREATE sluice:calls sluice-workers 0 MKSTREAM"));
  queue = producer_new (server, NULL, 16, &worker);
  calls = calls_new (3);
  calls_in_one_batch (server, worker, queue, calls, 3, NULL, G_MAXUINT, NULL, NULL, NULL);
  while (calls->n_done < 3)
    {
      redisReply *reply = redisCommand (
          server->c, "XREADGROUP GROUP sluice-workers old COUNT 10 STREAMS sluice:calls >");
      redisReply *entries = reply->type == REDIS_REPLY_ARRAY ? reply->element[0]->element[1] : NULL;

      for (size_t i = 0; entries != NULL && i < entries->elements; i++)
        {
          const char *id = entry_field (entries->element[i], "i");
          const char *colon = strrchr (id, ':');

          g_assert_cmpstr (entry_field (entries->element[i], "v"), ==, "3");
          freeReplyObject (redisCommand (
              server->c, "XADD sluice:replies:%b NOMKSTREAM * i %s w old e %s c %d m %s", id,
              (size_t) (colon - id), colon + 1, g_quark_to_string (SLUICE_ERROR),
              SLUICE_ERROR_INVALID_ARGUMENTS,
              "The call came in version 3 of the Redis entries, this worker reads version 2"));
        }
      freeReplyObject (reply);
      g_main_context_iteration (NULL, FALSE);
    }
  for (guint i = 0; i < 3; i++)
    {
      g_assert_error (calls->errors[i], SLUICE_ERROR, SLUICE_ERROR_INVALID_ARGUMENTS);
      g_assert_nonnull (strstr (calls->errors[i]->message, "version 3"));
    }
  g_assert_cmpint (entries_added (server, "sluice:calls"), ==, 1);
  finish (calls, 3, queue, worker, NULL, server);
}

/* Calls that time out or are cancelled are done: the worker forgets their
 * attempt counts, so its table stays bounded by what it holds. */
static void
test_attempts_bounded (void)
{
  const guint n = 200;
  Server *server = server_start (NULL);
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  Calls *calls;

  if (server == NULL)
    return;
  /* No remote worker: the calls wait in Redis until withdrawn. */
  queue = producer_new (server, "nobody", 4, &worker);
  calls = calls_new (n);
  for (guint i = 0; i < n; i++)
    {
      CallData *data = g_new0 (CallData, 1);
      g_autoptr (GCancellable) cancellable = g_cancellable_new ();
      guint64 sent_before = stat_of (worker, "sent");

      data->calls = calls;
      data->index = i;
      sluice_task_queue_call_async (queue, "nobody", "square", g_variant_new ("(x)", (gint64) i), 0,
                                    i % 2 == 0 ? 1 : 0, cancellable, call_done_cb, data);
      if (i % 2 == 1)
        {
          /* Sent (it, or a call before it that had not timed out yet:
           * then it is cancelled before it is sent, which is fine too). */
          WAIT_UNTIL (stat_of (worker, "sent") > sent_before);
          g_cancellable_cancel (cancellable);
        }
      g_assert_cmpuint (stat_of (worker, "tracked"), <=, 4);
    }
  WAIT_UNTIL (calls->n_done == n);
  for (guint i = 0; i < n; i++)
    g_assert_error (calls->errors[i], G_IO_ERROR,
                    (int) (i % 2 == 0 ? G_IO_ERROR_TIMED_OUT : G_IO_ERROR_CANCELLED));
  WAIT_UNTIL (stat_of (worker, "in-flight") == 0);
  g_assert_cmpuint (stat_of (worker, "tracked"), ==, 0);
  g_assert_cmpuint (stat_of (worker, "sent"), >=, n / 2);

  calls_free (calls, n);
  queue_shutdown (queue);
  g_object_unref (worker);
  server_stop (server);
}

/* ---- sluice-gzip --redis --------------------------------------------- */

/* Runs sluice-gzip with @args on @path and returns its standard output. */
static GBytes *
gzip_output (const char *const *args, const char *path)
{
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();
  g_auto (GStrv) argv = NULL;
  g_autoptr (GSubprocess) gzip = NULL;
  GBytes *out = NULL;
  GError *error = NULL;

  g_strv_builder_add (builder, g_getenv ("SLUICE_GZIP_TOOL"));
  g_strv_builder_addv (builder, (const char **) args);
  g_strv_builder_add_many (builder, "-c", path, NULL);
  argv = g_strv_builder_end (builder);
  gzip = spawn ((const char *const *) argv, G_SUBPROCESS_FLAGS_STDOUT_PIPE);
  g_assert_true (g_subprocess_communicate (gzip, NULL, NULL, &out, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (gzip));
  g_assert_cmpint (g_subprocess_get_exit_status (gzip), ==, 0);
  return out;
}

/* `gzip -t` accepts @data. */
static void
assert_gzip_valid (GBytes *data)
{
  const char *argv[] = { "gzip", "-t", NULL };
  g_autoptr (GSubprocess) gzip = spawn (argv, G_SUBPROCESS_FLAGS_STDIN_PIPE);
  GError *error = NULL;

  g_assert_true (g_subprocess_communicate (gzip, data, NULL, NULL, NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (gzip));
  g_assert_cmpint (g_subprocess_get_exit_status (gzip), ==, 0);
}

/* The issue's proof that a real job can outgrow the machine: sluice-gzip
 * --redis deflates its blocks in two `sluice-worker --redis` processes
 * serving the module sluice-gzip-deflate, and its output is byte for byte
 * that of the local run (with dictionaries, with -i and its index, and
 * with --deflate=libdeflate), and gzip accepts it. */
static void
test_gzip (void)
{
  Server *server = server_start (NULL);
  g_autofree char *redis = NULL;
  g_autofree char *path = NULL;
  g_autoptr (GString) text = g_string_new (NULL);
  g_autoptr (GRand) rand = g_rand_new_with_seed (17);
  static const char *const words[] = { "ordered", "producer", "window", "block", "deflate",
                                       "redis",   "stream",   "worker", "call",  "series" };
  /* Each names its engine: the local default (auto) is not --redis's (zlib). */
  const char *const variants[][6] = {
    { "--deflate=zlib", "-b", "32", NULL },
    { "--deflate=zlib", "-9", "-i", "-b", "32" },
    { "--deflate=libdeflate", "-b", "32" },
  };
  g_autofree char *gzip = g_find_program_in_path ("gzip");
  GSubprocess *helpers[2];
  GError *error = NULL;

  if (server == NULL)
    return;
  if (gzip == NULL)
    {
      g_test_skip ("gzip is not installed");
      server_stop (server);
      return;
    }
  /* ~600 KiB of text that compresses as text does: 19 blocks of 32 KiB. */
  while (text->len < 600 * 1024)
    g_string_append_printf (text, "%s %u ", words[g_rand_int_range (rand, 0, G_N_ELEMENTS (words))],
                            g_rand_int_range (rand, 0, 1000));
  path = g_build_filename (server->dir, "input.txt", NULL);
  g_assert_true (g_file_set_contents (path, text->str, (gssize) text->len, &error));
  g_assert_no_error (error);

  for (guint i = 0; i < G_N_ELEMENTS (helpers); i++)
    {
      g_autofree char *redis_arg = g_strconcat ("--redis=", server->endpoint, NULL);
      g_autofree char *consumer = g_strdup_printf ("--consumer=gzip-%u", i);
      const char *argv[] = {
        g_getenv ("SLUICE_WORKER_TOOL"),
        redis_arg,
        "--series=gzip",
        consumer,
        "--threads=1",
        g_getenv ("SLUICE_GZIP_DEFLATE_MODULE"),
        NULL,
      };

      helpers[i] = spawn (argv, G_SUBPROCESS_FLAGS_NONE);
    }

  redis = g_strconcat ("--redis=", server->endpoint, NULL);
  for (guint v = 0; v < G_N_ELEMENTS (variants); v++)
    {
      g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();
      g_auto (GStrv) remote_args = NULL;
      g_autoptr (GBytes) local = NULL;
      g_autoptr (GBytes) remote = NULL;

      g_strv_builder_addv (builder, (const char **) variants[v]);
      g_strv_builder_add (builder, redis);
      remote_args = g_strv_builder_end (builder);
      local = gzip_output (variants[v], path);
      remote = gzip_output ((const char *const *) remote_args, path);
      g_assert_cmpmem (g_bytes_get_data (remote, NULL), g_bytes_get_size (remote),
                       g_bytes_get_data (local, NULL), g_bytes_get_size (local));
      assert_gzip_valid (remote);
    }
  /* With --redis and no --deflate, zlib (auto cannot deflate remotely). */
  {
    const char *const plain[] = { "-b", "32", redis, NULL };
    g_autoptr (GBytes) local = gzip_output (variants[0], path);
    g_autoptr (GBytes) remote = gzip_output (plain, path);

    g_assert_cmpmem (g_bytes_get_data (remote, NULL), g_bytes_get_size (remote),
                     g_bytes_get_data (local, NULL), g_bytes_get_size (local));
  }
  /* Both workers took part: the series' group has two consumers that read. */
  g_assert_cmpint (consumers_of (server, "sluice:calls:gzip"), ==, 2);

  for (guint i = 0; i < G_N_ELEMENTS (helpers); i++)
    {
      g_subprocess_send_signal (helpers[i], SIGTERM);
      g_assert_true (g_subprocess_wait_check (helpers[i], NULL, &error));
      g_assert_no_error (error);
      g_object_unref (helpers[i]);
    }
  g_remove (path);
  server_stop (server);
}

/* Runs sluice-gzip with @args (ending in the file) until it exits, and
 * returns its exit status and (*@err) its standard error. */
static int
gzip_fails (const char *const *args, char **err)
{
  g_autoptr (GStrvBuilder) builder = g_strv_builder_new ();
  g_auto (GStrv) argv = NULL;
  g_autoptr (GSubprocess) gzip = NULL;
  GError *error = NULL;

  g_strv_builder_add (builder, g_getenv ("SLUICE_GZIP_TOOL"));
  g_strv_builder_addv (builder, (const char **) args);
  argv = g_strv_builder_end (builder);
  gzip = spawn ((const char *const *) argv, G_SUBPROCESS_FLAGS_STDERR_PIPE);
  g_assert_true (g_subprocess_communicate_utf8 (gzip, NULL, NULL, NULL, err, &error));
  g_assert_no_error (error);
  g_assert_true (g_subprocess_get_if_exited (gzip));
  return g_subprocess_get_exit_status (gzip);
}

/* sluice-gzip --redis fails, naming the endpoint, and leaves no output:
 * when Redis goes away in the middle of a file (its worker resigns once
 * it cannot connect again within --redis-reconnect-timeout, 0.5 s here:
 * no hang waiting for a worker), when Redis is not there at the start,
 * with blocks too large for a Redis value, and with a negative reconnect
 * timeout. */
typedef struct
{
  Server *server;
  char *path;
  int status;
  char *err;
} LostGzip;

static gpointer
lost_gzip_main (gpointer data)
{
  LostGzip *lost = data;
  g_autofree char *redis = g_strconcat ("--redis=", lost->server->endpoint, NULL);
  const char *args[] = {
    redis, "--redis-reconnect-timeout=0.5", "-b", "32", "-k", lost->path, NULL
  };

  lost->status = gzip_fails (args, &lost->err);
  return NULL;
}

static void
test_gzip_redis_lost (void)
{
  Server *server = server_start (NULL);
  LostGzip lost = { server };
  g_autofree char *gz = NULL;
  g_autofree char *data = NULL;
  g_autofree char *err = NULL;
  const char *unreachable[] = { "--redis=unix:/nonexistent/redis.sock", "-k", NULL, NULL };
  g_autofree char *redis = NULL;
  GError *error = NULL;
  GThread *thread;

  if (server == NULL)
    return;
  /* 1 MiB: 32 blocks, more than the window: sluice-gzip waits for room. */
  lost.path = g_build_filename (server->dir, "input", NULL);
  gz = g_strconcat (lost.path, ".gz", NULL);
  data = g_malloc0 (1024 * 1024);
  g_assert_true (g_file_set_contents (lost.path, data, 1024 * 1024, &error));
  g_assert_no_error (error);

  /* No remote worker: the calls wait in Redis until it goes away. */
  thread = g_thread_new ("gzip", lost_gzip_main, &lost);
  while (server_integer (server, "EXISTS", "sluice:calls:gzip") == 0)
    g_usleep (10000);
  freeReplyObject (redisCommand (server->c, "SHUTDOWN NOSAVE"));
  g_thread_join (thread);
  g_assert_cmpint (lost.status, ==, 1);
  g_assert_nonnull (strstr (lost.err, server->endpoint));
  g_assert_false (g_file_test (gz, G_FILE_TEST_EXISTS));
  g_free (lost.err);

  unreachable[2] = lost.path;
  g_assert_cmpint (gzip_fails (unreachable, &err), ==, 1);
  g_assert_nonnull (strstr (err, "unix:/nonexistent/redis.sock"));
  g_assert_false (g_file_test (gz, G_FILE_TEST_EXISTS));
  g_clear_pointer (&err, g_free);

  redis = g_strconcat ("--redis=", server->endpoint, NULL);
  {
    const char *too_large[] = { redis, "-b", "524288", "-k", lost.path, NULL };
    const char *negative[] = { redis, "--redis-reconnect-timeout=-1", "-k", lost.path, NULL };

    g_assert_cmpint (gzip_fails (too_large, &err), ==, 1);
    g_assert_nonnull (strstr (err, "Redis"));
    g_assert_false (g_file_test (gz, G_FILE_TEST_EXISTS));
    g_clear_pointer (&err, g_free);
    g_assert_cmpint (gzip_fails (negative, &err), ==, 1);
    g_assert_nonnull (strstr (err, "--redis-reconnect-timeout"));
  }

  g_remove (lost.path);
  g_free (lost.path);
  server_stop (server); /* gone already */
}

static void
redis_command_ok (Server *server, const char *command)
{
  redisReply *reply = redisCommand (server->c, command);

  g_assert_nonnull (reply);
  g_assert_cmpint (reply->type, ==, REDIS_REPLY_STATUS);
  freeReplyObject (reply);
}

/* The entry id in the reply to an XADD belongs to the attempt of the
 * calls that XADD sent, never to another attempt of one of its calls
 * (issue 17, the restart hang: a reply taken by the call's id went to an
 * earlier attempt, given back with its XADD unanswered, whose entry was
 * then withdrawn: XDEL deleted the new entry with the other calls in it,
 * which were never answered). Made step by step with CLIENT PAUSE WRITE
 * (XADDs wait in Redis, unanswered) and CLIENT KILL, INFO denied (every
 * reconnect counts as a restart: all calls in flight go back):
 * 1. X and Y sent (in one entry or two), which wait (paused); the
 *    sender's connection is dropped: those XADDs never run, and X and Y
 *    go back with no entry id (those attempts never get an answer);
 * 2. sent again in one entry, which Redis adds;
 * 3. paused; the reader's connection is dropped: X and Y go back (their
 *    entry withdrawn) and are sent again in one entry, which waits;
 * 4. X is cancelled (its attempt leaves the calls in flight), then Redis
 *    runs the waiting commands: the entry of X and Y must stay for Y,
 *    whose result comes once a remote worker starts. */
static void
test_reply_to_its_attempt (void)
{
  Server *server = server_start_info_denied ();
  g_autofree char *reader_name = NULL, *sender_name = NULL;
  GCancellable *cancellable;
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  CallData *data;
  Remote *remote;
  Calls *calls;
  guint64 n_entries;

  if (server == NULL)
    return;
  queue = producer_new (server, "squares", 8, &worker);
  reader_name = g_strconcat ("sluice-read.", sluice_redis_worker_get_client_id (worker), NULL);
  sender_name = g_strconcat ("sluice-send.", sluice_redis_worker_get_client_id (worker), NULL);
  cancellable = g_cancellable_new ();
  calls = calls_new (2);
  /* Connected (the reply stream made) before the pause. */
  WAIT_UNTIL (client_connected (server, reader_name));

  /* 1. */
  redis_command_ok (server, "CLIENT PAUSE 100000 WRITE");
  data = g_new0 (CallData, 1);
  data->calls = calls;
  data->index = 0;
  sluice_task_queue_call_async (queue, "squares", "square", g_variant_new ("(x)", (gint64) 0), 0, 0,
                                cancellable, call_done_cb, data);
  call (queue, calls, 1, "squares", "square", g_variant_new ("(x)", (gint64) 1));
  WAIT_UNTIL (stat_of (worker, "sent") == 2);
  /* One entry, or one each. */
  n_entries = stat_of (worker, "entries");
  kill_client (server, sender_name);
  redis_command_ok (server, "CLIENT UNPAUSE");

  /* 2. Sent again in one entry, or in two where the worker took them
   * back one by one (a slow machine: the case of interest is then
   * missed, never failed). */
  WAIT_UNTIL (stat_of (worker, "sent") == 4);
  WAIT_UNTIL ((guint64) server_integer (server, "XLEN", "sluice:calls:squares") ==
              stat_of (worker, "entries") - n_entries);
  g_assert_cmpuint (stat_of (worker, "entries"), <=, n_entries + 2);
  n_entries = stat_of (worker, "entries");

  /* 3. */
  redis_command_ok (server, "CLIENT PAUSE 100000 WRITE");
  kill_client (server, reader_name);
  WAIT_UNTIL (stat_of (worker, "sent") == 6);
  g_assert_cmpuint (stat_of (worker, "entries"), >=, n_entries + 1);
  g_assert_cmpuint (stat_of (worker, "entries"), <=, n_entries + 2);

  /* 4. */
  g_cancellable_cancel (cancellable);
  WAIT_UNTIL (stat_of (worker, "in-flight") == 1 && calls->n_done == 1);
  g_assert_error (calls->errors[0], G_IO_ERROR, G_IO_ERROR_CANCELLED);
  redis_command_ok (server, "CLIENT UNPAUSE");
  remote = remote_start (server, "a");
  WAIT_UNTIL (calls->n_done == 2);
  check_squares_but (calls, 2, 0);
  g_assert_cmpuint (stat_of (worker, "results"), ==, 1);

  g_object_unref (cancellable);
  calls_free (calls, 2);
  queue_shutdown (queue);
  g_object_unref (worker);
  remote_stop (remote);
  server_stop (server);
}

/* How many times Redis ran @command (lower case) since it started. */
static long long
command_calls (Server *server, const char *command)
{
  redisReply *reply = redisCommand (server->c, "INFO commandstats");
  g_autofree char *key = g_strdup_printf ("cmdstat_%s:calls=", command);
  const char *at;
  long long n = 0;

  g_assert_nonnull (reply);
  g_assert_cmpint (reply->type, ==, REDIS_REPLY_STRING);
  at = strstr (reply->str, key);
  if (at != NULL)
    n = g_ascii_strtoll (at + strlen (key), NULL, 10);
  freeReplyObject (reply);
  return n;
}

/* Deletes every entry of @stream (XDEL, by id): returns how many. */
static guint
delete_entries (Server *server, const char *stream)
{
  redisReply *reply = redisCommand (server->c, "XRANGE %s - +", stream);
  guint n = 0;

  g_assert_nonnull (reply);
  g_assert_cmpint (reply->type, ==, REDIS_REPLY_ARRAY);
  for (size_t i = 0; i < reply->elements; i++)
    n += integer_of (
        redisCommand (server->c, "XDEL %s %s", stream, reply->element[i]->element[0]->str));
  freeReplyObject (reply);
  return n;
}

/* Calls whose entry vanished before a remote worker read it (deleted by
 * hand: XDEL, or with @whole_stream DEL) go back and are sent again, once
 * the producer found it neither in its stream nor pending, twice in a
 * row: a remote worker started then completes each once. */
static void
entry_vanished (gboolean whole_stream)
{
  const guint n = 5;
  Server *server = server_start (NULL);
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  Remote *remote;
  Calls *calls;

  if (server == NULL)
    return;
  queue = producer_new (server, "squares", 8, &worker);
  /* Checks every second. */
  sluice_redis_worker_set_reply_ttl (worker, 3000);
  calls = calls_new (n);
  for (guint i = 0; i < n; i++)
    call (queue, calls, i, "squares", "square", g_variant_new ("(x)", (gint64) i));
  WAIT_UNTIL (stat_of (worker, "sent") == n);
  WAIT_UNTIL ((guint64) server_integer (server, "XLEN", "sluice:calls:squares") ==
              stat_of (worker, "entries"));
  if (whole_stream)
    g_assert_cmpint (server_integer (server, "DEL", "sluice:calls:squares"), ==, 1);
  else
    g_assert_cmpuint (delete_entries (server, "sluice:calls:squares"), ==,
                      stat_of (worker, "entries"));

  /* Given back, all at once (after one check of each entry, or a
   * second where the first XREAD had not caught up), and sent again. */
  WAIT_UNTIL (stat_of (worker, "vanished") == n && stat_of (worker, "sent") >= 2 * n);
  g_assert_cmpuint (calls->n_done, ==, 0);
  g_assert_cmpuint (stat_of (worker, "in-flight"), ==, n);
  remote = remote_start (server, "a");
  WAIT_UNTIL (calls->n_done == n);
  check_squares (calls, n);
  g_assert_cmpuint (stat_of (worker, "results"), ==, n);
  g_assert_cmpuint (stat_of (worker, "vanished"), ==, n);
  finish (calls, n, queue, worker, remote, server);
}

static void
test_entry_vanished (void)
{
  entry_vanished (FALSE);
}

static void
test_stream_vanished (void)
{
  entry_vanished (TRUE);
}

/* Many entries vanished at once (one call each, deleted by hand): each is
 * checked within 4 checks (a quarter of them at each), and one missed is
 * checked again at the next: all go back within 4 checks, plus one, plus
 * one where the reader had not caught up. (Checking 4 at a time, round
 * robin, took 12 checks for these 24.) */
static void
test_many_vanished (void)
{
  const guint n = 24;
  Server *server = server_start (NULL);
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  Remote *remote;
  Calls *calls;
  guint64 checks;

  if (server == NULL)
    return;
  queue = producer_new (server, "squares", n, &worker);
  /* Checks every second. */
  sluice_redis_worker_set_reply_ttl (worker, 3000);
  calls = calls_new (n);
  for (guint i = 0; i < n; i++)
    {
      call (queue, calls, i, "squares", "square", g_variant_new ("(x)", (gint64) i));
      WAIT_UNTIL (stat_of (worker, "entries") == i + 1);
    }
  WAIT_UNTIL (server_integer (server, "XLEN", "sluice:calls:squares") == n);
  g_assert_cmpuint (delete_entries (server, "sluice:calls:squares"), ==, n);
  checks = stat_of (worker, "checks");
  WAIT_UNTIL (stat_of (worker, "vanished") == n);
  g_assert_cmpuint (stat_of (worker, "checks") - checks, <=, 4 + 1 + 1);
  g_assert_cmpuint (calls->n_done, ==, 0);
  remote = remote_start (server, "a");
  WAIT_UNTIL (calls->n_done == n);
  check_squares (calls, n);
  g_assert_cmpuint (stat_of (worker, "vanished"), ==, n);
  finish (calls, n, queue, worker, remote, server);
}

/* Checks Redis refuses (an ACL denies XRANGE and XPENDING) find nothing
 * missing: calls whose entry was deleted wait, check after check, until
 * they are cancelled. */
static void
test_vanished_checks_refused (void)
{
  const char *extra[] = { "--user", "default", "on",      "nopass",    "~*",
                          "&*",     "+@all",   "-xrange", "-xpending", NULL };
  Server *server = server_start_full (NULL, FALSE, extra);
  GCancellable *cancellable;
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  Calls *calls;
  guint64 checks;

  if (server == NULL)
    return;
  queue = producer_new (server, "squares", 8, &worker);
  sluice_redis_worker_set_reply_ttl (worker, 3000);
  cancellable = g_cancellable_new ();
  calls = calls_new (2);
  for (guint i = 0; i < 2; i++)
    {
      CallData *data = g_new0 (CallData, 1);

      data->calls = calls;
      data->index = i;
      sluice_task_queue_call_async (queue, "squares", "square", g_variant_new ("(x)", (gint64) i),
                                    0, 0, cancellable, call_done_cb, data);
    }
  WAIT_UNTIL (stat_of (worker, "sent") == 2);
  WAIT_UNTIL ((guint64) server_integer (server, "XLEN", "sluice:calls:squares") ==
              stat_of (worker, "entries"));
  g_assert_cmpint (server_integer (server, "DEL", "sluice:calls:squares"), ==, 1);
  checks = stat_of (worker, "checks");
  WAIT_UNTIL (stat_of (worker, "checks") >= checks + 4);
  g_assert_cmpuint (stat_of (worker, "vanished"), ==, 0);
  g_assert_cmpuint (stat_of (worker, "in-flight"), ==, 2);
  g_assert_cmpuint (calls->n_done, ==, 0);
  g_cancellable_cancel (cancellable);
  WAIT_UNTIL (calls->n_done == 2);
  for (guint i = 0; i < 2; i++)
    g_assert_error (calls->errors[i], G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_object_unref (cancellable);
  finish (calls, 2, queue, worker, NULL, server);
}

/* Entries read and answered are never taken as vanished: one a remote
 * worker holds (pending) while it is deleted from the stream by hand, over
 * several checks, and many calls read and answered while the producer
 * checks every 100 ms. */
static void
test_answered_not_vanished (void)
{
  const guint n = sluice_test_scale (600, 4);
  Server *server = server_start (NULL);
  SluiceRedisWorker *worker;
  SluiceTaskQueue *queue;
  Remote *remote;
  Calls *calls;
  long long checks;

  if (server == NULL)
    return;
  g_atomic_int_set (&gate_open, FALSE);
  remote = remote_start (server, "a");
  queue = producer_new (server, "squares", 8, &worker);
  /* Checks every half second (a shorter time to live would let a stalled
   * machine lose the reply stream, which sends the calls again). */
  sluice_redis_worker_set_reply_ttl (worker, 1500);
  calls = calls_new (n + 1);
  call (queue, calls, n, "squares", "gated-square", g_variant_new ("(x)", (gint64) n));
  WAIT_UNTIL (pending_count (server, "sluice:calls:squares") == 1);
  g_assert_cmpuint (delete_entries (server, "sluice:calls:squares"), ==, 1);
  /* Six checks of it (the only entry in flight; the producer's are the
   * only XRANGEs): found pending (without XPENDING, it goes back at the
   * second or third). */
  checks = command_calls (server, "xrange");
  WAIT_UNTIL (command_calls (server, "xrange") >= checks + 6);
  g_assert_cmpuint (stat_of (worker, "vanished"), ==, 0);
  g_atomic_int_set (&gate_open, TRUE);
  WAIT_UNTIL (calls->n_done == 1);

  /* Many calls, checked while they wait at the gate (the remote worker
   * holds two, the others wait in the stream), and then as they run. */
  g_atomic_int_set (&gate_open, FALSE);
  for (guint i = 0; i < n; i++)
    call (queue, calls, i, "squares", "gated-square", g_variant_new ("(x)", (gint64) i));
  WAIT_UNTIL (stat_of (worker, "in-flight") == 8);
  checks = command_calls (server, "xrange");
  WAIT_UNTIL (command_calls (server, "xrange") >= checks + 4 * 2);
  g_atomic_int_set (&gate_open, TRUE);
  WAIT_UNTIL (calls->n_done == n + 1);
  check_squares (calls, n + 1);
  g_assert_cmpuint (stat_of (worker, "vanished"), ==, 0);
  finish (calls, n + 1, queue, worker, remote, server);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  /* WAIT_UNTIL rechecks conditions that threads change (stats, signals
   * emitted in the worker's threads) at least this often. */
  g_timeout_add (10, tick_cb, NULL);

  g_test_add_func ("/redis-worker/calls", test_calls_in_order);
  g_test_add_func ("/redis-worker/trim-bounded", test_trim_bounded);
  g_test_add_func ("/redis-worker/ordered-producer", test_ordered_producer);
  g_test_add_func ("/redis-worker/errors-cross", test_errors_cross);
  g_test_add_func ("/redis-worker/timeout", test_timeout);
  g_test_add_func ("/redis-worker/remote-cancel", test_remote_cancel);
  g_test_add_func ("/redis-worker/connection-lost", test_connection_lost);
  g_test_add_func ("/redis-worker/redis-restart", test_redis_restart);
  g_test_add_func ("/redis-worker/redis-restart-appendonly", test_redis_restart_appendonly);
  g_test_add_func ("/redis-worker/redis-restart-info-denied", test_redis_restart_info_denied);
  g_test_add_func ("/redis-worker/reply-to-its-attempt", test_reply_to_its_attempt);
  g_test_add_func ("/redis-worker/entry-vanished", test_entry_vanished);
  g_test_add_func ("/redis-worker/stream-vanished", test_stream_vanished);
  g_test_add_func ("/redis-worker/many-vanished", test_many_vanished);
  g_test_add_func ("/redis-worker/vanished-checks-refused", test_vanished_checks_refused);
  g_test_add_func ("/redis-worker/answered-not-vanished", test_answered_not_vanished);
  g_test_add_func ("/redis-worker/malformed-entries", test_malformed_entries);
  g_test_add_func ("/redis-worker/connection-errors", test_connection_errors);
  g_test_add_func ("/redis-worker/killed-workers", test_killed_workers);
  g_test_add_func ("/redis-worker/worker-lost", test_worker_lost);
  g_test_add_func ("/redis-worker/tool-sigterm", test_tool_sigterm);
  g_test_add_func ("/redis-worker/gzip", test_gzip);
  g_test_add_func ("/redis-worker/gzip-redis-lost", test_gzip_redis_lost);
  g_test_add_func ("/redis-worker/connection-dropped", test_connection_dropped);
  g_test_add_func ("/redis-worker/call-refused", test_call_refused);
  g_test_add_func ("/redis-worker/redis-busy", test_redis_busy);
  g_test_add_func ("/redis-worker/redis-busy-cancel", test_redis_busy_cancel);
  g_test_add_func ("/redis-worker/attempts-bounded", test_attempts_bounded);
  g_test_add_func ("/redis-worker/reply-ttl", test_reply_ttl);
  g_test_add_func ("/redis-worker/reply-stream-lost", test_reply_stream_lost);
  g_test_add_func ("/redis-worker/reply-stream-lost-clock-behind",
                   test_reply_stream_lost_clock_behind);
  g_test_add_func ("/redis-worker/max-bulk", test_max_bulk);
  g_test_add_func ("/redis-worker/batch-malformed-call", test_batch_malformed_call);
  g_test_add_func ("/redis-worker/batch-cancel", test_batch_cancel);
  g_test_add_func ("/redis-worker/batch-reclaimed", test_batch_reclaimed);
  g_test_add_func ("/redis-worker/version2-peer", test_version2_peer);
  return g_test_run ();
}
