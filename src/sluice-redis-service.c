/* sluice-redis-service.c: a SluiceWorkerService serving its functions to
 * Redis streams, as a member of a consumer group
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "sluice-private.h"

#include "sluice-redis-private.h"
#include "sluice-worker-service-private.h"

#include <string.h>
#include <unistd.h>

#define COMMAND_TIMEOUT_MS 10000
#define READ_BLOCK_MS 100
#define DEFAULT_LEASE_MS 30000
#define DEFAULT_MAX_DELIVERIES 3
/* Entries read ahead of the free threads: at least this many, or one per
 * thread, so that a thread finds its next call read when it finishes. */
#define MIN_READ_AHEAD 8
/* Answers written in one transaction at most. */
#define MAX_ANSWER_BATCH 256
/* How long the writer lets an answer wait for others to write with it,
 * while calls still run. */
#define ANSWER_DELAY_US 500
/* Call ids of cancellations kept, for entries read after their cancel. */
#define MAX_RECENT_CANCELS 1024
#define CONTROL_BLOCK_MS 200
/* Waits before trying again after Redis said it is loading or busy. */
#define TRANSIENT_WAIT_MS 100

typedef struct
{
  SluiceFunctionRegistry *registry;
  const char *consumer;
  guint lease_ms;
  guint max_deliveries;
  guint n_threads;
  guint max_held;     /* calls read and not answered: threads plus read-ahead */
  guint refill_below; /* read more once fewer than this are unanswered */
  guint answer_batch; /* answers the writer writes without waiting more */
  guint64 max_bulk;   /* Redis's proto-max-bulk-len, or 0 when unknown */

  GMutex mutex;
  GCond cond;       /* the writer's: answers to write, or stop */
  GCond room;       /* the reader's: room for more calls */
  GHashTable *held; /* "STREAM ENTRY-ID" (owned) -> Job: read, not answered */
  GQueue answers;   /* of Job (not owned: held), run and waiting to be written */
  gboolean writer_stop;
  GHashTable *cancels;   /* call ids cancelled lately (owned by cancel_order) */
  GQueue cancel_order;   /* of char *, oldest first */
  GCancellable *caller;  /* (nullable) serve_redis ()'s cancellable */
  GCancellable *stop;    /* cancelled when serve_redis () stops */
  char *control_last_id; /* where the control thread starts reading */

  const SluiceRedisEndpoint *endpoint;
  redisContext *out; /* results: the writer thread's */
} Serve;

/* One entry read from a stream. */
typedef struct
{
  char *key; /* "STREAM ENTRY-ID" */
  char *stream;
  char *entry_id;
  char *call_id; /* nullable: malformed */
  char *name;
  char *reply; /* nullable: malformed */
  GVariant *args;
  GError *error;     /* nullable: answer this instead of calling */
  gboolean version1; /* an entry of version 1: answered in its names */
  guint64 deliveries;
  GVariant *result;          /* (nullable) once run */
  GCancellable *cancellable; /* the function's: a cancel entry for its call */
  gint64 answered_us;        /* when it was run */
} Job;

/* Calls read and not answered yet (queued for a thread, or running). */
static guint
n_unanswered_locked (Serve *serve)
{
  return g_hash_table_size (serve->held) - serve->answers.length;
}

static void
job_free (Job *job)
{
  g_free (job->key);
  g_free (job->stream);
  g_free (job->entry_id);
  g_free (job->call_id);
  g_free (job->name);
  g_free (job->reply);
  g_clear_pointer (&job->args, g_variant_unref);
  g_clear_pointer (&job->result, g_variant_unref);
  g_clear_error (&job->error);
  g_object_unref (job->cancellable);
  g_free (job);
}

/* Appends the ids of @jobs in @stream to @args. */
static void
args_add_entry_ids (SluiceRedisArgs *args, GPtrArray *jobs, const char *stream)
{
  for (guint i = 0; i < jobs->len; i++)
    {
      Job *job = jobs->pdata[i];

      if (strcmp (job->stream, stream) == 0)
        sluice_redis_args_add (args, job->entry_id);
    }
}

/* Writes the answers of @jobs and acknowledges (and deletes) their
 * entries, all in one transaction: MULTI, an XADD per answer, an XACK and
 * an XDEL per stream, EXEC. */
static gboolean
write_answers (Serve *serve, GPtrArray *jobs, GError **error)
{
  GPtrArray *streams = g_ptr_array_new ();
  SluiceRedisArgs args;
  guint n = 0;
  gboolean ok;

  sluice_redis_args_init (&args);
  sluice_redis_args_add (&args, "MULTI");
  ok = sluice_redis_args_append (&args, serve->out, error);
  n += ok;
  for (guint i = 0; i < jobs->len && ok; i++)
    {
      Job *job = jobs->pdata[i];

      if (!g_ptr_array_find_with_equal_func (streams, job->stream, g_str_equal, NULL))
        g_ptr_array_add (streams, job->stream);
      if (job->reply == NULL || job->call_id == NULL)
        continue;
      sluice_redis_args_init (&args);
      sluice_redis_args_add (&args, "XADD");
      sluice_redis_args_add (&args, job->reply);
      /* Only to a producer that lives (its reply stream expires when it
       * died); version 1 producers do not make theirs. */
      if (!job->version1)
        sluice_redis_args_add (&args, "NOMKSTREAM");
      sluice_redis_args_add (&args, "*");
      if (job->version1)
        {
          sluice_redis_args_add (&args, "id");
          sluice_redis_args_add (&args, job->call_id);
        }
      else
        {
          /* The reply stream is the caller's: the sequence is enough. */
          sluice_redis_args_add (&args, "i");
          sluice_redis_args_add (&args, strrchr (job->call_id, ':') + 1);
          sluice_redis_args_add (&args, "w");
          sluice_redis_args_add (&args, serve->consumer);
          if (job->deliveries > 1)
            {
              sluice_redis_args_add (&args, "d");
              sluice_redis_args_add_printf (&args, "%" G_GUINT64_FORMAT, job->deliveries);
            }
        }
      if (job->error == NULL)
        sluice_redis_args_add_value (&args, "t", "r", job->result);
      else
        sluice_redis_args_add_error (&args, job->error, job->version1);
      ok = sluice_redis_args_append (&args, serve->out, error);
      n += ok;
    }
  for (guint s = 0; s < streams->len && ok; s++)
    for (guint k = 0; k < 2 && ok; k++)
      {
        sluice_redis_args_init (&args);
        sluice_redis_args_add (&args, k == 0 ? "XACK" : "XDEL");
        sluice_redis_args_add (&args, streams->pdata[s]);
        if (k == 0)
          sluice_redis_args_add (&args, SLUICE_REDIS_GROUP);
        args_add_entry_ids (&args, jobs, streams->pdata[s]);
        ok = sluice_redis_args_append (&args, serve->out, error);
        n += ok;
      }
  if (ok)
    {
      sluice_redis_args_init (&args);
      sluice_redis_args_add (&args, "EXEC");
      ok = sluice_redis_args_append (&args, serve->out, error);
      n += ok;
    }
  /* Every reply is read, even after an error reply (a command refused
   * while queued, say LOADING, then EXECABORT), so that the next pipeline
   * starts clean; the first error is the one reported. */
  for (guint i = 0; i < n && sluice_redis_connected (serve->out); i++)
    {
      redisReply *reply = sluice_redis_get_reply (serve->out, ok ? error : NULL);

      ok = ok && reply != NULL;
      if (reply != NULL)
        freeReplyObject (reply);
    }
  g_ptr_array_unref (streams);
  return ok;
}

static gboolean
writer_should_stop (gpointer data)
{
  Serve *serve = data;
  gboolean stop;

  g_mutex_lock (&serve->mutex);
  stop = serve->writer_stop;
  g_mutex_unlock (&serve->mutex);
  return stop;
}

/* The writer thread: writes the answers of the jobs that have run, as many
 * as are ready in one transaction, so that the threads that run calls
 * never wait for Redis. A lost connection is made again (the answers are
 * written then: a result may come twice, the producer drops the second);
 * when it stops, it does not wait for Redis to come back, and the calls
 * it could not answer go to other members after their lease. */
static gpointer
writer_main (gpointer data)
{
  Serve *serve = data;
  GPtrArray *jobs = g_ptr_array_new ();

  g_mutex_lock (&serve->mutex);
  for (;;)
    {
      GError *error = NULL;
      Job *job;

      /* Answers go together: when enough are ready, when no other call
       * runs (or waits to), or when the first has waited long enough. */
      while (!serve->writer_stop)
        {
          Job *first = g_queue_peek_head (&serve->answers);

          if (first == NULL)
            g_cond_wait (&serve->cond, &serve->mutex);
          else if (serve->answers.length >= serve->answer_batch ||
                   n_unanswered_locked (serve) == 0 ||
                   g_get_monotonic_time () >= first->answered_us + ANSWER_DELAY_US)
            break;
          else
            g_cond_wait_until (&serve->cond, &serve->mutex, first->answered_us + ANSWER_DELAY_US);
        }
      if (g_queue_is_empty (&serve->answers))
        break;
      while (jobs->len < MAX_ANSWER_BATCH && (job = g_queue_pop_head (&serve->answers)) != NULL)
        g_ptr_array_add (jobs, job);
      g_mutex_unlock (&serve->mutex);

      while (serve->out != NULL && !write_answers (serve, jobs, &error))
        {
          if (sluice_redis_connected (serve->out) && sluice_redis_error_is_transient (error))
            {
              g_clear_error (&error);
              g_usleep (TRANSIENT_WAIT_MS * 1000);
              continue;
            }
          if (sluice_redis_connected (serve->out))
            {
              /* Redis refused the transaction: nothing to try again. */
              g_message ("Answers not written: %s", error->message);
              g_clear_error (&error);
              break;
            }
          g_message ("Redis connection lost (%s): reconnecting", error->message);
          g_clear_error (&error);
          redisFree (g_steal_pointer (&serve->out));
          serve->out = sluice_redis_reconnect (serve->endpoint, COMMAND_TIMEOUT_MS, 0,
                                               writer_should_stop, serve, NULL);
        }

      g_mutex_lock (&serve->mutex);
      for (guint i = 0; i < jobs->len; i++)
        g_hash_table_remove (serve->held, ((Job *) jobs->pdata[i])->key);
      g_ptr_array_set_size (jobs, 0);
      g_cond_signal (&serve->room);
    }
  g_mutex_unlock (&serve->mutex);
  g_ptr_array_unref (jobs);
  return NULL;
}

static gboolean
stop_cb (gpointer data)
{
  Serve *serve = data;

  return g_cancellable_is_cancelled (serve->stop) || g_cancellable_is_cancelled (serve->caller);
}

/* A cancel entry: cancels the GCancellable of the call's function if it is
 * held here, and remembers the call for a while, in case its entry is read
 * after the cancel. */
static void
take_cancel (Serve *serve, redisReply *entry)
{
  GHashTable *fields = sluice_redis_entry_fields (entry);
  const char *id = fields != NULL ? sluice_redis_field (fields, "cancel", NULL) : NULL;
  GPtrArray *cancel = g_ptr_array_new_with_free_func (g_object_unref);
  GHashTableIter iter;
  gpointer value;

  g_mutex_lock (&serve->mutex);
  if (id != NULL && !g_hash_table_contains (serve->cancels, id))
    {
      char *copy = g_strdup (id);

      g_queue_push_tail (&serve->cancel_order, copy);
      g_hash_table_add (serve->cancels, copy);
      if (g_queue_get_length (&serve->cancel_order) > MAX_RECENT_CANCELS)
        {
          char *oldest = g_queue_pop_head (&serve->cancel_order);

          g_hash_table_remove (serve->cancels, oldest);
          g_free (oldest);
        }
      g_hash_table_iter_init (&iter, serve->held);
      while (g_hash_table_iter_next (&iter, NULL, &value))
        {
          Job *job = value;

          if (job->call_id != NULL && strcmp (job->call_id, id) == 0)
            g_ptr_array_add (cancel, g_object_ref (job->cancellable));
        }
    }
  g_mutex_unlock (&serve->mutex);
  /* Outside the mutex: handlers of the function may run. */
  for (guint i = 0; i < cancel->len; i++)
    g_cancellable_cancel (cancel->pdata[i]);
  g_ptr_array_unref (cancel);
  if (fields != NULL)
    g_hash_table_unref (fields);
}

/* The id of the newest entry of the control stream ("0-0" if none): the
 * control thread reads the entries after it. */
static char *
newest_control_id (redisContext *c, GError **error)
{
  SluiceRedisArgs args;
  redisReply *reply;
  char *id;

  sluice_redis_args_init (&args);
  sluice_redis_args_add (&args, "XREVRANGE");
  sluice_redis_args_add (&args, SLUICE_REDIS_CONTROL_STREAM);
  sluice_redis_args_add (&args, "+");
  sluice_redis_args_add (&args, "-");
  sluice_redis_args_add (&args, "COUNT");
  sluice_redis_args_add (&args, "1");
  reply = sluice_redis_command (c, &args, error);
  if (reply == NULL)
    return NULL;
  id = g_strdup (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
                         reply->element[0]->type == REDIS_REPLY_ARRAY &&
                         reply->element[0]->elements == 2
                     ? reply->element[0]->element[0]->str
                     : "0-0");
  freeReplyObject (reply);
  return id;
}

/* The control thread: reads every cancel entry (not as a group member:
 * each remote worker sees all), from the newest one there when
 * serve_redis () started. */
static gpointer
control_main (gpointer data)
{
  Serve *serve = data;
  redisContext *c = NULL;
  char *last_id = g_steal_pointer (&serve->control_last_id);

  while (!stop_cb (serve))
    {
      SluiceRedisArgs args;
      redisReply *reply, *entries;
      GError *error = NULL;

      if (c == NULL)
        c = sluice_redis_reconnect (serve->endpoint, COMMAND_TIMEOUT_MS, 0, stop_cb, serve, NULL);
      if (c == NULL)
        break;
      sluice_redis_args_init_xread (&args, SLUICE_REDIS_CONTROL_STREAM, last_id, CONTROL_BLOCK_MS);
      reply = sluice_redis_command (c, &args, &error);
      entries = reply != NULL ? sluice_redis_xread_entries (reply) : NULL;
      for (size_t i = 0; entries != NULL && i < entries->elements; i++)
        {
          redisReply *entry = entries->element[i];

          if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2)
            continue;
          g_free (last_id);
          last_id = g_strdup (entry->element[0]->str);
          take_cancel (serve, entry);
        }
      if (reply != NULL)
        freeReplyObject (reply);
      if (error != NULL)
        {
          if (!sluice_redis_connected (c))
            redisFree (g_steal_pointer (&c));
          else
            g_usleep (TRANSIENT_WAIT_MS * 1000);
          g_error_free (error);
        }
    }
  if (c != NULL)
    redisFree (c);
  g_free (last_id);
  return NULL;
}

static void
job_run (gpointer data, gpointer user_data)
{
  Job *job = data;
  Serve *serve = user_data;

  /* Cancelled before it started: not run. */
  if (job->error == NULL && !g_cancellable_set_error_if_cancelled (job->cancellable, &job->error))
    job->result = sluice_function_registry_call (serve->registry, job->name, job->args,
                                                 job->cancellable, &job->error);
  /* A result Redis would not take (it would close the connection, again
   * at each try): the call fails instead. */
  if (job->result != NULL && serve->max_bulk > 0 &&
      g_variant_get_size (job->result) > serve->max_bulk)
    {
      job->error = g_error_new (G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
                                _ ("The result of “%s” takes %llu bytes, more than Redis takes in "
                                   "one value (proto-max-bulk-len %llu)"),
                                job->name, (unsigned long long) g_variant_get_size (job->result),
                                (unsigned long long) serve->max_bulk);
      g_clear_pointer (&job->result, g_variant_unref);
    }

  job->answered_us = g_get_monotonic_time ();
  g_mutex_lock (&serve->mutex);
  g_queue_push_tail (&serve->answers, job);
  /* The writer waits for the first answer, for a batch, or for the last
   * call to be answered; the reader for few enough calls unanswered. */
  if (serve->answers.length == 1 || serve->answers.length == serve->answer_batch ||
      n_unanswered_locked (serve) == 0)
    g_cond_signal (&serve->cond);
  if (n_unanswered_locked (serve) + 1 == serve->refill_below)
    g_cond_signal (&serve->room);
  g_mutex_unlock (&serve->mutex);
}

/* Takes an entry of @stream into a job for the pool, or NULL when it is
 * held already. */
static Job *
job_new (Serve *serve, const char *stream, redisReply *entry, guint64 deliveries)
{
  GHashTable *fields = sluice_redis_entry_fields (entry);
  const char *version;
  Job *job;

  if (fields == NULL)
    return NULL;
  job = g_new0 (Job, 1);
  job->stream = g_strdup (stream);
  job->entry_id = g_strdup (entry->element[0]->str);
  job->key = g_strconcat (stream, " ", job->entry_id, NULL);
  job->deliveries = deliveries;
  job->cancellable = g_cancellable_new ();
  version = sluice_redis_field (fields, "v", NULL);
  if (version == NULL && sluice_redis_field (fields, "id", NULL) != NULL)
    {
      /* Version 1 (no "v"): answered with an error, in its names. */
      job->version1 = TRUE;
      job->call_id = g_strdup (sluice_redis_field (fields, "id", NULL));
      job->reply = g_strdup (sluice_redis_field (fields, "reply", NULL));
      job->error =
          g_error_new (SLUICE_ERROR, SLUICE_ERROR_INVALID_ARGUMENTS,
                       _ ("The call came in version 1 of the Redis entries, this worker reads "
                          "version %s: update the producer’s Sluice"),
                       SLUICE_REDIS_PROTOCOL);
    }
  else
    {
      job->call_id = g_strdup (sluice_redis_field (fields, "i", NULL));
      job->reply = job->call_id != NULL ? sluice_redis_reply_stream (job->call_id) : NULL;
      job->name = g_strdup (sluice_redis_field (fields, "f", NULL));
    }
  if (job->error != NULL)
    g_message ("Entry %s in %s of version 1, answered with an error", job->entry_id, stream);
  else if (version != NULL && strcmp (version, SLUICE_REDIS_PROTOCOL) != 0)
    job->error =
        g_error_new (SLUICE_ERROR, SLUICE_ERROR_INVALID_ARGUMENTS,
                     _ ("The call came in version %s of the Redis entries, this worker reads "
                        "version %s"),
                     version, SLUICE_REDIS_PROTOCOL);
  else if (job->reply == NULL || job->name == NULL)
    job->error = g_error_new (SLUICE_ERROR, SLUICE_ERROR_INVALID_ARGUMENTS,
                              _ ("Malformed stream entry: no “%s” or “%s” field"), "i", "f");
  else if (deliveries > serve->max_deliveries)
    job->error =
        g_error_new (SLUICE_ERROR, SLUICE_ERROR_WORKER_LOST,
                     _ ("The call was delivered %u times without an answer: its workers were lost"),
                     (guint) deliveries);
  else
    job->args = sluice_redis_fields_get_value (fields, "t", "a", &job->error);
  g_hash_table_unref (fields);

  if (job->call_id == NULL || job->reply == NULL)
    g_message ("Malformed entry %s in %s, acknowledged without an answer", job->entry_id, stream);

  g_mutex_lock (&serve->mutex);
  if (g_hash_table_contains (serve->held, job->key))
    {
      g_mutex_unlock (&serve->mutex);
      job_free (job);
      return NULL;
    }
  g_hash_table_insert (serve->held, g_strdup (job->key), job);
  if (job->call_id != NULL && g_hash_table_contains (serve->cancels, job->call_id))
    g_cancellable_cancel (job->cancellable);
  g_mutex_unlock (&serve->mutex);
  return job;
}

static gboolean
command_ok (redisContext *c, SluiceRedisArgs *args, GError **error)
{
  redisReply *reply = sluice_redis_command (c, args, error);

  if (reply == NULL)
    return FALSE;
  freeReplyObject (reply);
  return TRUE;
}

static gboolean
create_group (redisContext *c, const char *stream, GError **error)
{
  SluiceRedisArgs args;
  GError *local = NULL;

  sluice_redis_args_init (&args);
  sluice_redis_args_add (&args, "XGROUP");
  sluice_redis_args_add (&args, "CREATE");
  sluice_redis_args_add (&args, stream);
  sluice_redis_args_add (&args, SLUICE_REDIS_GROUP);
  sluice_redis_args_add (&args, "0");
  sluice_redis_args_add (&args, "MKSTREAM");
  if (command_ok (c, &args, &local))
    return TRUE;
  if (strstr (local->message, "BUSYGROUP") != NULL)
    {
      g_error_free (local);
      return TRUE;
    }
  g_propagate_error (error, local);
  return FALSE;
}

/* Claims the entries of @stream that were idle past the lease (their
 * worker died or lost its connection), with their delivery counts. */
static gboolean
reclaim (Serve *serve, redisContext *c, const char *stream, GThreadPool *pool, GError **error)
{
  SluiceRedisArgs args;
  redisReply *reply, *entries;
  GPtrArray *jobs = g_ptr_array_new ();
  gboolean ok = TRUE;

  sluice_redis_args_init (&args);
  sluice_redis_args_add (&args, "XAUTOCLAIM");
  sluice_redis_args_add (&args, stream);
  sluice_redis_args_add (&args, SLUICE_REDIS_GROUP);
  sluice_redis_args_add (&args, serve->consumer);
  sluice_redis_args_add_printf (&args, "%u", serve->lease_ms);
  sluice_redis_args_add (&args, "0-0");
  sluice_redis_args_add (&args, "COUNT");
  sluice_redis_args_add_printf (&args, "%u", MAX (serve->n_threads, 16));
  reply = sluice_redis_command (c, &args, error);
  if (reply == NULL)
    {
      g_ptr_array_unref (jobs);
      return FALSE;
    }
  entries = reply->type == REDIS_REPLY_ARRAY && reply->elements >= 2 ? reply->element[1] : NULL;
  for (size_t i = 0; entries != NULL && i < entries->elements && ok; i++)
    {
      redisReply *entry = entries->element[i], *pending;
      guint64 deliveries = 1;

      if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2)
        continue;
      sluice_redis_args_init (&args);
      sluice_redis_args_add (&args, "XPENDING");
      sluice_redis_args_add (&args, stream);
      sluice_redis_args_add (&args, SLUICE_REDIS_GROUP);
      sluice_redis_args_add (&args, entry->element[0]->str);
      sluice_redis_args_add (&args, entry->element[0]->str);
      sluice_redis_args_add (&args, "1");
      pending = sluice_redis_command (c, &args, error);
      if (pending == NULL)
        {
          ok = FALSE;
          break;
        }
      /* [[id, consumer, idle, deliveries]] */
      if (pending->type == REDIS_REPLY_ARRAY && pending->elements == 1 &&
          pending->element[0]->elements == 4 &&
          pending->element[0]->element[3]->type == REDIS_REPLY_INTEGER)
        deliveries = (guint64) pending->element[0]->element[3]->integer;
      freeReplyObject (pending);
      g_ptr_array_add (jobs, job_new (serve, stream, entry, deliveries));
    }
  freeReplyObject (reply);
  for (guint i = 0; i < jobs->len; i++)
    if (jobs->pdata[i] != NULL)
      g_thread_pool_push (pool, jobs->pdata[i], NULL);
  g_ptr_array_unref (jobs);
  return ok;
}

/* A long call keeps its claim: the entries held are claimed again, which
 * resets their idle time (JUSTID does not count a delivery). */
static gboolean
renew (Serve *serve, redisContext *c, GError **error)
{
  GPtrArray *keys = g_ptr_array_new_with_free_func (g_free);
  GHashTableIter iter;
  gpointer key;
  guint n = 0;
  gboolean ok = TRUE;

  g_mutex_lock (&serve->mutex);
  g_hash_table_iter_init (&iter, serve->held);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    g_ptr_array_add (keys, g_strdup (key));
  g_mutex_unlock (&serve->mutex);

  for (guint i = 0; i < keys->len && ok; i++)
    {
      char **parts = g_strsplit (keys->pdata[i], " ", 2);
      SluiceRedisArgs args;

      sluice_redis_args_init (&args);
      sluice_redis_args_add (&args, "XCLAIM");
      sluice_redis_args_add (&args, parts[0]);
      sluice_redis_args_add (&args, SLUICE_REDIS_GROUP);
      sluice_redis_args_add (&args, serve->consumer);
      sluice_redis_args_add (&args, "0");
      sluice_redis_args_add (&args, parts[1]);
      sluice_redis_args_add (&args, "JUSTID");
      ok = sluice_redis_args_append (&args, c, error);
      n += ok;
      g_strfreev (parts);
    }
  for (guint i = 0; i < n; i++)
    {
      redisReply *reply = sluice_redis_get_reply (c, ok ? error : NULL);

      ok = ok && reply != NULL;
      if (reply != NULL)
        freeReplyObject (reply);
    }
  g_ptr_array_unref (keys);
  return ok;
}

static gboolean
read_new (Serve *serve,
          redisContext *c,
          char **streams,
          guint n_streams,
          guint count,
          GThreadPool *pool,
          GError **error)
{
  SluiceRedisArgs args;
  redisReply *reply;

  sluice_redis_args_init (&args);
  sluice_redis_args_add (&args, "XREADGROUP");
  sluice_redis_args_add (&args, "GROUP");
  sluice_redis_args_add (&args, SLUICE_REDIS_GROUP);
  sluice_redis_args_add (&args, serve->consumer);
  sluice_redis_args_add (&args, "COUNT");
  sluice_redis_args_add_printf (&args, "%u", count);
  sluice_redis_args_add (&args, "BLOCK");
  sluice_redis_args_add_printf (&args, "%d", READ_BLOCK_MS);
  sluice_redis_args_add (&args, "STREAMS");
  for (guint i = 0; i < n_streams; i++)
    sluice_redis_args_add (&args, streams[i]);
  for (guint i = 0; i < n_streams; i++)
    sluice_redis_args_add (&args, ">");
  reply = sluice_redis_command (c, &args, error);
  if (reply == NULL)
    return FALSE;
  /* [[stream, [entry, ...]], ...], or nil when the block timed out. */
  for (size_t s = 0; reply->type == REDIS_REPLY_ARRAY && s < reply->elements; s++)
    {
      redisReply *per_stream = reply->element[s];

      if (per_stream->type != REDIS_REPLY_ARRAY || per_stream->elements != 2)
        continue;
      for (size_t i = 0; i < per_stream->element[1]->elements; i++)
        {
          Job *job =
              job_new (serve, per_stream->element[0]->str, per_stream->element[1]->element[i], 1);

          if (job != NULL)
            g_thread_pool_push (pool, job, NULL);
        }
    }
  freeReplyObject (reply);
  return TRUE;
}

/* clang-format off */
/**
 * sluice_worker_service_serve_redis:
 * @self: a worker service
 * @endpoint: where Redis is: `redis://HOST:PORT/DB` (an optional
 *   `:PASSWORD@` before the host) or `unix:PATH`
 * @password: (nullable): the password of Redis (`AUTH`), or %NULL
 * @series: (array zero-terminated=1): the series to serve; `""` is the
 *   default series
 * @consumer: (nullable): the name of this member of the consumer group,
 *   unique among them; %NULL for `HOST.PID`
 * @lease_ms: how long an entry read by a member may stay unanswered
 *   without a renewal before another member reclaims it; 0 for 30 s
 * @max_deliveries: how many deliveries of an entry may go unanswered
 *   before it is answered with %SLUICE_ERROR_WORKER_LOST; 0 for 3
 * @cancellable: (nullable): cancel to stop serving
 * @error: return location for an error
 *
 * Serves the functions of @self to the streams of @series in Redis, for
 * [class@Sluice.RedisWorker]s of other processes or machines, until
 * @cancellable is cancelled: then it returns %TRUE after the calls it
 * holds are answered.
 *
 * A connection lost while it serves (Redis restarted, the network down)
 * is made again, after 50 ms, 100 ms, ... up to every second, for as long
 * as it takes (a message on standard error says so); the groups are made
 * again if Redis lost them. Answers of calls that ran meanwhile are
 * written once it is back (a producer that sent the call again keeps the
 * first result).
 *
 * It is a member of the consumer group `sluice-workers` of each stream,
 * reads calls for its threads and a few ahead, writes results to the
 * callers' reply streams and acknowledges the entries in one transaction
 * (the answers ready together in one), renews its claim on the calls it
 * holds, and on start and every third of the lease claims the entries
 * other members left idle past the lease (`XAUTOCLAIM`). An entry that
 * cannot be read is answered with %SLUICE_ERROR_INVALID_ARGUMENTS (or,
 * with no reply stream to answer to, acknowledged with a warning).
 *
 * A call the producer cancels (or that times out there) cancels the
 * [class@Gio.Cancellable] its function gets, through the control stream
 * `sluice:control` that every remote worker reads; a call cancelled before
 * it started answers %G_IO_ERROR_CANCELLED without running. Cancelling
 * @cancellable does not cancel the calls it runs.
 *
 * This function blocks: call it in a thread of its own or as the main
 * function of a worker program. It is safe to call from any thread.
 *
 * Returns: %TRUE when it stopped because @cancellable was cancelled;
 *   %FALSE with @error set when it could not connect at the start (an
 *   unreachable server, a wrong password) or Redis gave an error other
 *   than a lost connection
 */
/* clang-format on */
gboolean
sluice_worker_service_serve_redis (SluiceWorkerService *self,
                                   const char *endpoint,
                                   const char *password,
                                   const char *const *series,
                                   const char *consumer,
                                   guint lease_ms,
                                   guint max_deliveries,
                                   GCancellable *cancellable,
                                   GError **error)
{
  SluiceRedisEndpoint *ep;
  Serve serve = { 0 };
  redisContext *c;
  GThreadPool *pool;
  GThread *writer, *control;
  char **streams;
  guint n_streams;
  char host[64] = "";
  char *default_consumer = NULL;
  gint64 next_reclaim = 0;
  GError *local = NULL;

  g_return_val_if_fail (SLUICE_IS_WORKER_SERVICE (self), FALSE);
  g_return_val_if_fail (endpoint != NULL, FALSE);
  g_return_val_if_fail (series != NULL && series[0] != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  ep = sluice_redis_endpoint_parse (endpoint, password, error);
  if (ep == NULL)
    return FALSE;
  c = sluice_redis_connect (ep, COMMAND_TIMEOUT_MS, error);
  serve.out = c != NULL ? sluice_redis_connect (ep, COMMAND_TIMEOUT_MS, error) : NULL;
  if (serve.out == NULL)
    {
      if (c != NULL)
        redisFree (c);
      sluice_redis_endpoint_free (ep);
      return FALSE;
    }

  n_streams = g_strv_length ((char **) series);
  streams = g_new0 (char *, n_streams + 1);
  for (guint i = 0; i < n_streams; i++)
    streams[i] = sluice_redis_calls_stream (series[i]);
  if (consumer == NULL)
    {
      gethostname (host, sizeof host - 1);
      default_consumer = g_strdup_printf ("%s.%d", host, (int) getpid ());
    }
  serve.consumer = consumer != NULL ? consumer : default_consumer;
  serve.endpoint = ep;
  serve.registry = sluice_worker_service_get_registry (self, &serve.n_threads);
  if (serve.n_threads == 0)
    serve.n_threads = g_get_num_processors ();
  serve.lease_ms = lease_ms > 0 ? lease_ms : DEFAULT_LEASE_MS;
  serve.max_deliveries = max_deliveries > 0 ? max_deliveries : DEFAULT_MAX_DELIVERIES;
  serve.max_held = serve.n_threads + MAX (serve.n_threads, MIN_READ_AHEAD);
  /* Read again once half the read-ahead is taken: a few calls per read. */
  serve.refill_below = serve.n_threads + MAX (serve.n_threads, MIN_READ_AHEAD) / 2 + 1;
  serve.answer_batch = MAX (serve.n_threads, MIN_READ_AHEAD / 2);
  g_mutex_init (&serve.mutex);
  g_cond_init (&serve.cond);
  g_cond_init (&serve.room);
  g_queue_init (&serve.answers);
  serve.held = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) job_free);
  pool = g_thread_pool_new (job_run, &serve, (int) serve.n_threads, TRUE, NULL);
  /* Cancellations from now on reach this worker. */
  for (guint i = 0; i < n_streams && local == NULL; i++)
    create_group (c, streams[i], &local);
  serve.control_last_id = local == NULL ? newest_control_id (c, &local) : NULL;
  if (local == NULL)
    sluice_redis_max_bulk (c, &serve.max_bulk, &local);
  if (serve.control_last_id == NULL)
    serve.control_last_id = g_strdup ("0-0");
  writer = g_thread_new ("sluice-answer", writer_main, &serve);
  serve.caller = cancellable;
  serve.stop = g_cancellable_new ();
  serve.cancels = g_hash_table_new (g_str_hash, g_str_equal);
  g_queue_init (&serve.cancel_order);
  control = g_thread_new ("sluice-control", control_main, &serve);

  while (!g_cancellable_is_cancelled (cancellable))
    {
      gint64 now = g_get_monotonic_time ();
      guint n_held, n_unanswered;

      if (local != NULL)
        {
          if (sluice_redis_connected (c) && sluice_redis_error_is_transient (local))
            {
              g_clear_error (&local);
              g_usleep (TRANSIENT_WAIT_MS * 1000);
              continue;
            }
          if (sluice_redis_connected (c) && strstr (local->message, "NOGROUP") == NULL)
            break;
          /* Redis went away, or came back without the groups (it
           * restarted without persistence): connect again and make them. */
          if (!sluice_redis_connected (c))
            {
              g_message ("Redis connection lost (%s): reconnecting", local->message);
              redisFree (g_steal_pointer (&c));
            }
          g_clear_error (&local);
          if (c == NULL)
            c = sluice_redis_reconnect (ep, COMMAND_TIMEOUT_MS, 0,
                                        (SluiceRedisStopFunc) g_cancellable_is_cancelled,
                                        cancellable, NULL);
          if (c == NULL)
            break;
          for (guint i = 0; i < n_streams && local == NULL; i++)
            create_group (c, streams[i], &local);
          next_reclaim = 0;
          continue;
        }

      /* Room for a few more calls: fewer than refill_below unanswered,
       * and the answers waiting to be written not too many. */
      g_mutex_lock (&serve.mutex);
      n_unanswered = n_unanswered_locked (&serve);
      n_held = g_hash_table_size (serve.held);
      if (n_unanswered >= serve.refill_below || n_held >= 2 * serve.max_held)
        g_cond_wait_until (&serve.room, &serve.mutex,
                           now + READ_BLOCK_MS * G_TIME_SPAN_MILLISECOND);
      n_unanswered = n_unanswered_locked (&serve);
      n_held = g_hash_table_size (serve.held);
      g_mutex_unlock (&serve.mutex);

      if (now >= next_reclaim)
        {
          for (guint i = 0; i < n_streams && local == NULL; i++)
            reclaim (&serve, c, streams[i], pool, &local);
          if (local == NULL)
            renew (&serve, c, &local);
          if (local == NULL)
            next_reclaim = now + (gint64) serve.lease_ms * G_TIME_SPAN_MILLISECOND / 3;
          continue;
        }
      if (n_unanswered < serve.refill_below && n_held < 2 * serve.max_held)
        read_new (&serve, c, streams, n_streams,
                  MIN (serve.max_held - n_unanswered, 2 * serve.max_held - n_held), pool, &local);
    }

  /* The calls it runs are answered (or, with the connection lost, left to
   * other members). */
  g_cancellable_cancel (serve.stop);
  g_thread_join (control);
  g_thread_pool_free (pool, FALSE, TRUE);
  g_mutex_lock (&serve.mutex);
  serve.writer_stop = TRUE;
  g_cond_broadcast (&serve.cond);
  g_mutex_unlock (&serve.mutex);
  g_thread_join (writer);
  g_hash_table_unref (serve.held);
  g_hash_table_unref (serve.cancels);
  g_queue_clear_full (&serve.cancel_order, g_free);
  g_object_unref (serve.stop);
  g_cond_clear (&serve.cond);
  g_cond_clear (&serve.room);
  g_mutex_clear (&serve.mutex);
  if (serve.out != NULL)
    redisFree (serve.out);
  if (c != NULL)
    redisFree (c);
  sluice_redis_endpoint_free (ep);
  g_strfreev (streams);
  g_free (default_consumer);
  if (local != NULL)
    {
      g_propagate_error (error, local);
      return FALSE;
    }
  return TRUE;
}
