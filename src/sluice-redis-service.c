/* sluice-redis-service.c: a SluiceWorkerService serving its functions to
 * Redis streams, as a member of a consumer group
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "sluice-private.h"

#include "sluice-redis-private.h"
#include "sluice-worker-service-private.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
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
/* Answered entries leave their stream by an XTRIM ... MINID below the
 * group's oldest pending entry and last delivered one (trim_script), run
 * in the answers' transaction once this many entries were acknowledged
 * since the last one, or in a transaction of its own once nothing was
 * held for IDLE_TRIM_DELAY_MS (a worker that runs out of calls now and
 * then would otherwise trim with most of its answers). */
#define TRIM_EVERY 32
#define IDLE_TRIM_DELAY_MS 20
/* Entries acknowledged that a trim has not removed yet (newer than an
 * entry another call still holds) are deleted (XDEL) past this many, so
 * that a long call does not keep every entry answered after it. */
#define MAX_ACKED_KEPT 256
/* Call ids of cancellations kept, for entries read after their cancel. */
#define MAX_RECENT_CANCELS 1024
#define CONTROL_BLOCK_MS 200
/* The I/O thread looks at the time at least this often. */
#define MAX_POLL_MS 1000
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
  GHashTable *held;  /* "STREAM ENTRY-ID" (owned) -> Entry: read, not all answered */
  guint n_calls;     /* the calls of those entries not answered */
  double calls_read; /* calls and entries read (for the calls per entry) */
  double entries_read;
  GQueue answers;       /* of Job (not owned: held), run and waiting to be written */
  int wake_fd;          /* an eventfd: wakes the I/O thread */
  gboolean io_polling;  /* the I/O thread waits in poll () */
  gboolean io_woken;    /* and wake_fd was written since */
  GHashTable *cancels;  /* call ids cancelled lately (owned by cancel_order) */
  GQueue cancel_order;  /* of char *, oldest first */
  GCancellable *caller; /* (nullable) serve_redis ()'s cancellable */
  GHashTable *acked;    /* stream -> Acked: only the I/O thread's */

  const SluiceRedisEndpoint *endpoint;
} Serve;

typedef struct _Entry Entry;

/* One call read from a stream. */
typedef struct
{
  Entry *entry;         /* its entry, which owns it */
  const char *stream;   /* the entry's */
  const char *entry_id; /* the entry's */
  gboolean batched;     /* of version 3: answered with others */
  guint64 seq;          /* of version 3: its sequence */
  char *call_id;        /* nullable: malformed */
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

/* An entry read from a stream: one call, or several (version 3). */
struct _Entry
{
  char *key; /* "STREAM ENTRY-ID" */
  char *stream;
  char *entry_id;
  GPtrArray *jobs;     /* of Job (owned) */
  GVariant *batch;     /* (nullable) the calls of a version 3 entry */
  char *client_call;   /* (nullable) its `i` */
  guint n_unappended;  /* calls whose answer is in no transaction yet */
  guint n_unconfirmed; /* calls whose answer's transaction is not confirmed */
};

/* The entries of a stream this member acknowledged and no trim is known
 * to have removed. */
typedef struct
{
  GQueue ids;       /* of char * */
  guint since_trim; /* acknowledged since the last trim */
} Acked;

static void
acked_free (gpointer data)
{
  Acked *acked = data;

  g_queue_clear_full (&acked->ids, g_free);
  g_free (acked);
}

/* Trims the stream KEYS[1] below the oldest entry pending in the group
 * ARGV[1] and, with none pending, up to its last delivered entry: what it
 * removes is acknowledged (ids only grow, and the script runs at once, so
 * no member can take an entry meanwhile). Returns the MINID used. */
static const char trim_script[] =
    "local s, group = KEYS[1], ARGV[1]\n"
    "local last\n"
    "for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do\n"
    "  local f = {}\n"
    "  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end\n"
    "  if f['name'] == group then last = f['last-delivered-id'] end\n"
    "end\n"
    "if not last then return '0-0' end\n"
    "local p = redis.call('XPENDING', s, group)\n"
    "local minid = p[2]\n"
    "if p[1] == 0 then\n"
    "  local ms, seq = string.match(last, '^(%d+)-(%d+)$')\n"
    "  minid = ms .. '-' .. string.format('%.0f', tonumber(seq) + 1)\n"
    "end\n"
    "redis.call('XTRIM', s, 'MINID', minid)\n"
    "return minid\n";

/* Compares two stream entry ids (MS-SEQ). */
static int
entry_id_compare (const char *a, const char *b)
{
  guint64 ms_a, seq_a, ms_b, seq_b;

  sluice_redis_entry_id_parse (a, &ms_a, &seq_a);
  sluice_redis_entry_id_parse (b, &ms_b, &seq_b);

  if (ms_a != ms_b)
    return ms_a < ms_b ? -1 : 1;
  return seq_a < seq_b ? -1 : seq_a > seq_b;
}

/* A trim of @stream used @minid: the entries before it are gone. */
static void
acked_trimmed (Serve *serve, const char *stream, const char *minid)
{
  Acked *acked = g_hash_table_lookup (serve->acked, stream);
  GList *next;

  for (GList *l = acked != NULL ? acked->ids.head : NULL; l != NULL; l = next)
    {
      next = l->next;
      if (entry_id_compare (l->data, minid) < 0)
        {
          g_free (l->data);
          g_queue_delete_link (&acked->ids, l);
        }
    }
}

/* Calls read and not answered yet (queued for a thread, or running). */
static guint
n_unanswered_locked (Serve *serve)
{
  return serve->n_calls - serve->answers.length;
}

static void
job_free (Job *job)
{
  g_free (job->call_id);
  g_free (job->name);
  g_free (job->reply);
  g_clear_pointer (&job->args, g_variant_unref);
  g_clear_pointer (&job->result, g_variant_unref);
  g_clear_error (&job->error);
  g_object_unref (job->cancellable);
  g_free (job);
}

static void
entry_free (Entry *entry)
{
  g_ptr_array_unref (entry->jobs);
  g_clear_pointer (&entry->batch, g_variant_unref);
  g_free (entry->client_call);
  g_free (entry->key);
  g_free (entry->stream);
  g_free (entry->entry_id);
  g_free (entry);
}

/* A trim in a transaction of answers: where its reply is in EXEC's. */
typedef struct
{
  char *stream;
  guint index;
} TrimAt;

static void
trim_at_free (gpointer data)
{
  TrimAt *at = data;

  g_free (at->stream);
  g_free (at);
}

/* Appends the trim of @stream (trim_script) to the transaction on @c (the
 * *@n_queued-th command of it), noted in @trims. */
static gboolean
append_trim (redisContext *c,
             const char *stream,
             Acked *acked,
             guint *n_queued,
             GPtrArray *trims,
             GError **error)
{
  SluiceRedisArgs args;
  TrimAt *at;

  sluice_redis_args_init (&args);
  sluice_redis_args_add (&args, "EVAL");
  sluice_redis_args_add (&args, trim_script);
  sluice_redis_args_add (&args, "1");
  sluice_redis_args_add (&args, stream);
  sluice_redis_args_add (&args, SLUICE_REDIS_GROUP);
  if (!sluice_redis_args_append (&args, c, error))
    return FALSE;
  at = g_new0 (TrimAt, 1);
  at->stream = g_strdup (stream);
  at->index = (*n_queued)++;
  g_ptr_array_add (trims, at);
  acked->since_trim = 0;
  return TRUE;
}

/* Appends the acknowledgement of @entries in @stream to the
 * transaction on @c (the *@n_queued-th command of it), the deletion of
 * those acknowledged long ago that no trim removed, and a trim when it is
 * time (@idle: nothing else is held), noted in @trims. */
static gboolean
append_ack (Serve *serve,
            redisContext *c,
            GPtrArray *entries,
            const char *stream,
            gboolean idle,
            guint *n_queued,
            GPtrArray *trims,
            GError **error)
{
  Acked *acked = g_hash_table_lookup (serve->acked, stream);
  SluiceRedisArgs args;

  if (acked == NULL)
    {
      acked = g_new0 (Acked, 1);
      g_queue_init (&acked->ids);
      g_hash_table_insert (serve->acked, g_strdup (stream), acked);
    }
  sluice_redis_args_init (&args);
  sluice_redis_args_add (&args, "XACK");
  sluice_redis_args_add (&args, stream);
  sluice_redis_args_add (&args, SLUICE_REDIS_GROUP);
  for (guint i = 0; i < entries->len; i++)
    {
      Entry *entry = entries->pdata[i];

      if (strcmp (entry->stream, stream) != 0)
        continue;
      sluice_redis_args_add (&args, entry->entry_id);
      g_queue_push_tail (&acked->ids, g_strdup (entry->entry_id));
      acked->since_trim++;
    }
  if (!sluice_redis_args_append (&args, c, error))
    return FALSE;
  (*n_queued)++;
  if (acked->ids.length > MAX_ACKED_KEPT)
    {
      /* Kept by an entry still pending before them: deleted instead. */
      sluice_redis_args_init (&args);
      sluice_redis_args_add (&args, "XDEL");
      sluice_redis_args_add (&args, stream);
      while (acked->ids.length > MAX_ACKED_KEPT / 2)
        {
          char *id = g_queue_pop_head (&acked->ids);

          sluice_redis_args_add (&args, id);
          g_free (id);
        }
      if (!sluice_redis_args_append (&args, c, error))
        return FALSE;
      (*n_queued)++;
    }
  if (acked->since_trim >= TRIM_EVERY || idle)
    return append_trim (c, stream, acked, n_queued, trims, error);
  return TRUE;
}

/* Appends the XADD of an answer of version 1 or 2 (one per entry). */
static gboolean
append_single_answer (Serve *serve, redisContext *c, Job *job, GError **error)
{
  SluiceRedisArgs args;

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
  return sluice_redis_args_append (&args, c, error);
}

/* The answer of @job in a version 3 entry (SLUICE_REDIS_ANSWERS_TYPE's
 * element; floating). */
static GVariant *
batched_answer (Job *job)
{
  GVariant *wire = job->error == NULL ? sluice_redis_value_to_wire (job->result) : NULL;
  /* (tusaysis), built from its members: cheaper than from a format
   * string. */
  GVariant *members[] = {
    g_variant_new_uint64 (job->seq),
    g_variant_new_uint32 ((guint32) job->deliveries),
    g_variant_new_string (wire != NULL ? g_variant_get_type_string (wire) : ""),
    g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, wire != NULL ? g_variant_get_data (wire) : "",
                               wire != NULL ? g_variant_get_size (wire) : 0, 1),
    g_variant_new_string (job->error != NULL ? g_quark_to_string (job->error->domain) : ""),
    g_variant_new_int32 (job->error != NULL ? job->error->code : 0),
    g_variant_new_string (job->error != NULL ? job->error->message : ""),
  };
  GVariant *answer = g_variant_new_tuple (members, G_N_ELEMENTS (members));

  g_clear_pointer (&wire, g_variant_unref);
  return answer;
}

/* Appends the XADDs of the answers of version 3 of @jobs to @reply (one
 * entry each SLUICE_REDIS_MAX_ENTRY_BYTES); *@n_queued counts them. */
static gboolean
append_batched_answers (Serve *serve,
                        redisContext *c,
                        GPtrArray *jobs,
                        const char *reply,
                        guint *n_queued,
                        GError **error)
{
  guint i = 0;

  while (i < jobs->len)
    {
      GVariantBuilder builder;
      SluiceRedisArgs args;
      GVariant *answers;
      gsize bytes = 0;
      guint n = 0;

      g_variant_builder_init (&builder, G_VARIANT_TYPE (SLUICE_REDIS_ANSWERS_TYPE));
      for (; i < jobs->len && (n == 0 || bytes < SLUICE_REDIS_MAX_ENTRY_BYTES); i++)
        {
          Job *job = jobs->pdata[i];

          if (!job->batched || g_strcmp0 (job->reply, reply) != 0)
            continue;
          bytes += job->result != NULL ? g_variant_get_size (job->result) : 64;
          g_variant_builder_add_value (&builder, batched_answer (job));
          n++;
        }
      answers = g_variant_ref_sink (g_variant_builder_end (&builder));
      if (n == 0)
        {
          g_variant_unref (answers);
          break;
        }
      sluice_redis_args_init_batch (&args, reply, TRUE, "w", serve->consumer, answers);
      g_variant_unref (answers);
      if (!sluice_redis_args_append (&args, c, error))
        return FALSE;
      (*n_queued)++;
    }
  return TRUE;
}

/* Appends the answers of @jobs to the pipeline of @c, with the
 * acknowledgements of the entries all of whose calls are answered then,
 * all in one transaction: MULTI, an XADD per answer of version 1 or 2 and
 * per reply stream for those of version 3, an XACK per stream (and now
 * and then a trim, see append_ack ()), EXEC. Returns the number of
 * replies to read (0 with @error set when the connection is lost). */
static guint
append_answers (
    Serve *serve, redisContext *c, GPtrArray *jobs, gboolean idle, GPtrArray *trims, GError **error)
{
  GPtrArray *streams = g_ptr_array_new ();
  GPtrArray *replies = g_ptr_array_new ();
  GPtrArray *entries = g_ptr_array_new ();
  SluiceRedisArgs args;
  guint n_queued = 0;
  gboolean ok;

  for (guint i = 0; i < jobs->len; i++)
    {
      Job *job = jobs->pdata[i];

      /* The last answer of its entry: the entry is acknowledged. */
      if (--job->entry->n_unappended == 0)
        {
          g_ptr_array_add (entries, job->entry);
          if (!g_ptr_array_find_with_equal_func (streams, job->stream, g_str_equal, NULL))
            g_ptr_array_add (streams, (gpointer) job->stream);
        }
      if (job->batched && job->reply != NULL &&
          !g_ptr_array_find_with_equal_func (replies, job->reply, g_str_equal, NULL))
        g_ptr_array_add (replies, job->reply);
    }
  sluice_redis_args_init (&args);
  sluice_redis_args_add (&args, "MULTI");
  ok = sluice_redis_args_append (&args, c, error);
  for (guint i = 0; i < jobs->len && ok; i++)
    {
      Job *job = jobs->pdata[i];

      if (job->batched || job->reply == NULL || job->call_id == NULL)
        continue;
      ok = append_single_answer (serve, c, job, error);
      n_queued += ok;
    }
  for (guint r = 0; r < replies->len && ok; r++)
    ok = append_batched_answers (serve, c, jobs, replies->pdata[r], &n_queued, error);
  for (guint s = 0; s < streams->len && ok; s++)
    ok = append_ack (serve, c, entries, streams->pdata[s], idle, &n_queued, trims, error);
  if (ok)
    {
      sluice_redis_args_init (&args);
      sluice_redis_args_add (&args, "EXEC");
      ok = sluice_redis_args_append (&args, c, error);
    }
  g_ptr_array_unref (streams);
  g_ptr_array_unref (replies);
  g_ptr_array_unref (entries);
  /* MULTI, the commands queued, EXEC. */
  return ok ? n_queued + 2 : 0;
}

/* Wakes the I/O thread if it waits in poll () (once until it wakes). */
static void
wake_io_locked (Serve *serve)
{
  sluice_redis_wake_locked (serve->wake_fd, serve->io_polling, &serve->io_woken);
}

static gboolean
stop_cb (gpointer data)
{
  Serve *serve = data;

  return g_cancellable_is_cancelled (serve->caller);
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
          GPtrArray *jobs = ((Entry *) value)->jobs;

          for (guint i = 0; i < jobs->len; i++)
            {
              Job *job = jobs->pdata[i];

              if (job->call_id != NULL && strcmp (job->call_id, id) == 0)
                g_ptr_array_add (cancel, g_object_ref (job->cancellable));
            }
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
 * I/O thread reads the entries after it. */
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
  /* The I/O thread waits for the first answer (to know how long the
   * answers may wait), for a batch, for the last call to be answered, or
   * for few enough calls unanswered to read more. */
  if (serve->answers.length == 1 || serve->answers.length == serve->answer_batch ||
      n_unanswered_locked (serve) == 0 || n_unanswered_locked (serve) + 1 == serve->refill_below)
    wake_io_locked (serve);
  g_mutex_unlock (&serve->mutex);
}

/* A job of @entry, for the call @call_id (nullable: malformed). */
static Job *
job_add (Entry *entry, char *call_id)
{
  Job *job = g_new0 (Job, 1);

  job->entry = entry;
  job->stream = entry->stream;
  job->entry_id = entry->entry_id;
  job->cancellable = g_cancellable_new ();
  job->call_id = call_id;
  job->reply = call_id != NULL ? sluice_redis_reply_stream (call_id) : NULL;
  g_ptr_array_add (entry->jobs, job);
  return job;
}

/* The calls of a version 3 entry (`b`): one job each; a call that cannot
 * be read fails alone. FALSE when there is no batch to read. */
static gboolean
take_batch (
    Serve *serve, Entry *entry, GHashTable *fields, const char *client_call, guint64 deliveries)
{
  const char *colon = strrchr (client_call, ':');
  const char *prior = sluice_redis_field (fields, "p", NULL);
  GVariant *batch =
      sluice_redis_wire_to_value (SLUICE_REDIS_CALLS_TYPE, g_hash_table_lookup (fields, "b"));
  gsize n;

  if (batch == NULL || colon == NULL || (n = g_variant_n_children (batch)) == 0)
    {
      g_clear_pointer (&batch, g_variant_unref);
      return FALSE;
    }
  /* Deliveries of the batch it was split from, when its worker died. */
  if (prior != NULL)
    deliveries += g_ascii_strtoull (prior, NULL, 10);
  entry->batch = batch;
  for (gsize k = 0; k < n; k++)
    {
      /* (seq, function, args type, args data, attempt) */
      GVariant *call = g_variant_get_child_value (batch, k), *m[4];
      guint64 seq;
      const char *name, *type;
      GVariant *data;
      Job *job;

      sluice_redis_tuple_members (call, 0, 4, m);
      seq = g_variant_get_uint64 (m[0]);
      name = g_variant_get_string (m[1], NULL);
      type = g_variant_get_string (m[2], NULL);
      data = m[3];
      job = job_add (entry, g_strdup_printf ("%.*s:%" G_GUINT64_FORMAT, (int) (colon - client_call),
                                             client_call, seq));
      job->batched = TRUE;
      job->seq = seq;
      job->name = g_strdup (name);
      job->deliveries = deliveries;
      if (deliveries > serve->max_deliveries)
        job->error = g_error_new (
            SLUICE_ERROR, SLUICE_ERROR_WORKER_LOST,
            _ ("The call was delivered %u times without an answer: its workers were lost"),
            (guint) deliveries);
      else
        job->args = sluice_redis_value_new (type, g_variant_get_data (data),
                                            g_variant_get_size (data), &job->error);
      sluice_redis_members_clear (m, 4);
      g_variant_unref (call);
    }
  return TRUE;
}

/* Takes an entry of @stream into jobs for the pool (in the entry), or
 * NULL when it is not an entry or held already. */
static Entry *
entry_new (Serve *serve, const char *stream, redisReply *reply, guint64 deliveries)
{
  GHashTable *fields = sluice_redis_entry_fields (reply);
  const char *version;
  Entry *entry;
  Job *job;

  if (fields == NULL)
    return NULL;
  entry = g_new0 (Entry, 1);
  entry->stream = g_strdup (stream);
  entry->entry_id = g_strdup (reply->element[0]->str);
  entry->key = g_strconcat (stream, " ", entry->entry_id, NULL);
  entry->jobs = g_ptr_array_new_with_free_func ((GDestroyNotify) job_free);
  version = sluice_redis_field (fields, "v", NULL);
  entry->client_call = g_strdup (sluice_redis_field (fields, "i", NULL));
  if (g_strcmp0 (version, SLUICE_REDIS_PROTOCOL) == 0 && entry->client_call != NULL &&
      take_batch (serve, entry, fields, entry->client_call, deliveries))
    goto done;

  /* One call: of version 2 (or 1, or 3 unreadable: answered with an
   * error in version 2's names, which fails the whole batch). */
  if (version == NULL && sluice_redis_field (fields, "id", NULL) != NULL)
    {
      /* Version 1 (no "v"): answered with an error, in its names. */
      job = job_add (entry, g_strdup (sluice_redis_field (fields, "id", NULL)));
      job->version1 = TRUE;
      g_free (job->reply);
      job->reply = g_strdup (sluice_redis_field (fields, "reply", NULL));
      job->error =
          g_error_new (SLUICE_ERROR, SLUICE_ERROR_INVALID_ARGUMENTS,
                       _ ("The call came in version 1 of the Redis entries, this worker reads "
                          "version %s: update the producer’s Sluice"),
                       SLUICE_REDIS_PROTOCOL);
    }
  else
    {
      job = job_add (entry, g_strdup (entry->client_call));
      job->name = g_strdup (sluice_redis_field (fields, "f", NULL));
    }
  job->deliveries = deliveries;
  if (job->error != NULL)
    g_message ("Entry %s in %s of version 1, answered with an error", entry->entry_id, stream);
  else if (g_strcmp0 (version, SLUICE_REDIS_PROTOCOL) == 0)
    job->error = g_error_new (SLUICE_ERROR, SLUICE_ERROR_INVALID_ARGUMENTS,
                              _ ("Malformed stream entry: no calls (“%s”) in a batch"), "b");
  else if (version != NULL && strcmp (version, "2") != 0)
    job->error =
        g_error_new (SLUICE_ERROR, SLUICE_ERROR_INVALID_ARGUMENTS,
                     _ ("The call came in version %s of the Redis entries, this worker reads "
                        "versions 2 and %s"),
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
  if (job->call_id == NULL || job->reply == NULL)
    g_message ("Malformed entry %s in %s, acknowledged without an answer", entry->entry_id, stream);

done:
  g_hash_table_unref (fields);
  entry->n_unappended = entry->n_unconfirmed = entry->jobs->len;
  g_mutex_lock (&serve->mutex);
  if (g_hash_table_contains (serve->held, entry->key))
    {
      g_mutex_unlock (&serve->mutex);
      entry_free (entry);
      return NULL;
    }
  g_hash_table_insert (serve->held, g_strdup (entry->key), entry);
  serve->n_calls += entry->jobs->len;
  serve->calls_read += entry->jobs->len;
  serve->entries_read++;
  for (guint i = 0; i < entry->jobs->len; i++)
    {
      job = entry->jobs->pdata[i];
      if (job->call_id != NULL && g_hash_table_contains (serve->cancels, job->call_id))
        g_cancellable_cancel (job->cancellable);
    }
  g_mutex_unlock (&serve->mutex);
  return entry;
}

/* How many times @entry was delivered (with those of the batch it was
 * split from). */
static guint64
deliveries_of (Entry *entry)
{
  return entry->jobs->len > 0 ? ((Job *) entry->jobs->pdata[0])->deliveries : 1;
}

/* Hands the calls of @entry to the pool. */
static void
entry_run (Entry *entry, GThreadPool *pool)
{
  for (guint i = 0; i < entry->jobs->len; i++)
    g_thread_pool_push (pool, entry->jobs->pdata[i], NULL);
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

/* Splits @entry, a batch reclaimed from a member that died or was lost,
 * into an entry per call, each with the deliveries of the batch so far
 * (`p`), in one transaction with the acknowledgement of the batch: a call
 * that kills its worker is counted alone, and the others run. FALSE when
 * the transaction failed (the batch then runs as it is). */
static gboolean
split_batch (Serve *serve, redisContext *c, Entry *entry, GError **error)
{
  SluiceRedisArgs args;
  redisReply *reply;
  guint n = 0;
  gboolean ok;

  sluice_redis_args_init (&args);
  sluice_redis_args_add (&args, "MULTI");
  ok = sluice_redis_args_append (&args, c, error);
  n += ok;
  for (guint k = 0; k < entry->jobs->len && ok; k++)
    {
      Job *job = entry->jobs->pdata[k];
      GVariant *call = g_variant_get_child_value (entry->batch, k);
      GVariant *one = g_variant_ref_sink (g_variant_new_array (NULL, &call, 1));

      sluice_redis_args_init_batch (&args, entry->stream, FALSE, "i", job->call_id, one);
      sluice_redis_args_add (&args, "p");
      sluice_redis_args_add_printf (&args, "%" G_GUINT64_FORMAT, job->deliveries - 1);
      g_variant_unref (one);
      g_variant_unref (call);
      ok = sluice_redis_args_append (&args, c, error);
      n += ok;
    }
  if (ok)
    {
      sluice_redis_args_init (&args);
      sluice_redis_args_add (&args, "XACK");
      sluice_redis_args_add (&args, entry->stream);
      sluice_redis_args_add (&args, SLUICE_REDIS_GROUP);
      sluice_redis_args_add (&args, entry->entry_id);
      ok = sluice_redis_args_append (&args, c, error);
      n += ok;
    }
  if (ok)
    {
      sluice_redis_args_init (&args);
      sluice_redis_args_add (&args, "EXEC");
      ok = sluice_redis_args_append (&args, c, error);
      n += ok;
    }
  for (guint i = 0; i < n; i++)
    {
      GError *local = NULL;

      reply = sluice_redis_get_reply (c, &local);
      if (reply == NULL)
        {
          ok = FALSE;
          if (error != NULL && *error == NULL)
            g_propagate_error (error, local);
          else
            g_clear_error (&local);
          if (!sluice_redis_connected (c))
            break;
        }
      else
        {
          /* EXEC answers nil when it did not run. */
          ok = ok && (i + 1 < n || reply->type == REDIS_REPLY_ARRAY);
          freeReplyObject (reply);
        }
    }
  if (!ok)
    return FALSE;
  g_message ("Batch %s in %s reclaimed after %u deliveries: split into %u entries", entry->entry_id,
             entry->stream, (guint) deliveries_of (entry), entry->jobs->len);
  g_mutex_lock (&serve->mutex);
  serve->n_calls -= entry->jobs->len;
  g_hash_table_remove (serve->held, entry->key);
  g_mutex_unlock (&serve->mutex);
  return TRUE;
}

/* Claims the entries of @stream that were idle past the lease (their
 * worker died or lost its connection), with their delivery counts. */
static gboolean
reclaim (Serve *serve, redisContext *c, const char *stream, GThreadPool *pool, GError **error)
{
  SluiceRedisArgs args;
  redisReply *reply, *entries;
  GPtrArray *held = g_ptr_array_new ();
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
      g_ptr_array_unref (held);
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
      g_ptr_array_add (held, entry_new (serve, stream, entry, deliveries));
    }
  freeReplyObject (reply);
  for (guint i = 0; i < held->len; i++)
    {
      Entry *entry = held->pdata[i];
      GError *local = NULL;

      if (entry == NULL)
        continue;
      if (deliveries_of (entry) > 1 && entry->batch != NULL && entry->jobs->len > 1)
        {
          if (ok && split_batch (serve, c, entry, &local))
            continue;
          if (local != NULL)
            g_message ("Could not split batch %s in %s: %s", entry->entry_id, stream,
                       local->message);
          g_clear_error (&local);
        }
      entry_run (entry, pool);
    }
  g_ptr_array_unref (held);
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

/* A transaction of answers written, its replies not all read. */
typedef struct
{
  GPtrArray *jobs;  /* of Job (held) */
  GPtrArray *trims; /* of TrimAt */
  guint n_replies;  /* still to read */
  GError *refused;  /* the first refusal among them */
} Written;

static void
written_free (Written *written)
{
  g_ptr_array_unref (written->jobs);
  g_ptr_array_unref (written->trims);
  g_clear_error (&written->refused);
  g_free (written);
}

/* The I/O thread of serve_redis () (the thread that called it): its three
 * connections, non-blocking, polled together with an eventfd that the
 * threads running calls write only while it waits in poll (). */
typedef struct
{
  Serve *serve;
  char **streams;
  guint n_streams;
  GThreadPool *pool;
  redisContext *in;  /* XREADGROUP; and, blocking, the groups, reclaims, renewals */
  redisContext *out; /* the answers */
  redisContext *ctl; /* the control stream */
  gboolean in_ready, out_ready, ctl_ready;           /* poll () saw something there */
  gboolean reading;                                  /* an XREADGROUP is pending on in */
  gboolean ctl_reading;                              /* an XREAD is pending on ctl */
  char *ctl_last_id;                                 /* the last cancel entry read */
  GQueue written;                                    /* of Written, oldest first */
  gint64 in_resume_us, out_resume_us, ctl_resume_us; /* after LOADING, BUSY */
  gint64 next_reclaim_us;
  gint64 idle_trim_us; /* when the streams are trimmed, nothing being held; or 0 */
  GError *error;       /* a refusal that ends serve_redis () */
} Io;

static gboolean
io_stopping (Io *io)
{
  return io->error != NULL || g_cancellable_is_cancelled (io->serve->caller);
}

/* Runs @func on the connection in, blocking (nothing is pending on it). */
static gboolean
io_blocking (Io *io, gboolean (*func) (Io *io, GError **error), GError **error)
{
  gboolean ok;

  sluice_redis_set_nonblocking (io->in, FALSE);
  ok = func (io, error);
  sluice_redis_set_nonblocking (io->in, TRUE);
  return ok;
}

static gboolean
make_groups (Io *io, GError **error)
{
  for (guint i = 0; i < io->n_streams; i++)
    {
      SluiceRedisArgs args;

      if (!create_group (io->in, io->streams[i], error))
        return FALSE;
      /* A member from the start, not from the first entry it gets
       * (XINFO CONSUMERS lists it, and XAUTOCLAIM never left it out). */
      sluice_redis_args_init (&args);
      sluice_redis_args_add (&args, "XGROUP");
      sluice_redis_args_add (&args, "CREATECONSUMER");
      sluice_redis_args_add (&args, io->streams[i]);
      sluice_redis_args_add (&args, SLUICE_REDIS_GROUP);
      sluice_redis_args_add (&args, io->serve->consumer);
      if (!command_ok (io->in, &args, error))
        return FALSE;
    }
  return TRUE;
}

static gboolean
reclaim_and_renew (Io *io, GError **error)
{
  for (guint i = 0; i < io->n_streams; i++)
    if (!reclaim (io->serve, io->in, io->streams[i], io->pool, error))
      return FALSE;
  return renew (io->serve, io->in, error);
}

/* Redis refused a command on in (@refused): after LOADING or BUSY it reads
 * again a little later; after NOGROUP (it restarted without its data) the
 * groups are made again; another refusal ends serve_redis (). FALSE with
 * @error set when the connection is lost. */
static gboolean
in_refused (Io *io, GError *refused, GError **error)
{
  GError *local = NULL;

  if (sluice_redis_error_is_transient (refused))
    {
      io->in_resume_us = g_get_monotonic_time () + TRANSIENT_WAIT_MS * G_TIME_SPAN_MILLISECOND;
      g_error_free (refused);
      return TRUE;
    }
  if (strstr (refused->message, "NOGROUP") == NULL)
    {
      if (io->error == NULL)
        io->error = refused;
      else
        g_error_free (refused);
      return TRUE;
    }
  g_error_free (refused);
  if (io_blocking (io, make_groups, &local))
    {
      io->next_reclaim_us = 0;
      return TRUE;
    }
  if (!sluice_redis_connected (io->in))
    {
      g_propagate_error (error, local);
      return FALSE;
    }
  return in_refused (io, local, error);
}

/* Takes the entries of an XREADGROUP's reply into jobs for the pool. */
static void
take_entries (Io *io, redisReply *reply)
{
  /* [[stream, [entry, ...]], ...], or nil when the block timed out. */
  for (size_t s = 0; reply->type == REDIS_REPLY_ARRAY && s < reply->elements; s++)
    {
      redisReply *per_stream = reply->element[s];

      if (per_stream->type != REDIS_REPLY_ARRAY || per_stream->elements != 2)
        continue;
      for (size_t i = 0; i < per_stream->element[1]->elements; i++)
        {
          Entry *entry = entry_new (io->serve, per_stream->element[0]->str,
                                    per_stream->element[1]->element[i], 1);

          if (entry != NULL)
            entry_run (entry, io->pool);
        }
    }
}

/* Takes one reply (transfer full), or the refusal (transfer full) of a
 * command; FALSE with @error set when the connection is lost. */
typedef gboolean (*TakeFunc) (Io *io, redisReply *reply, GError *refused, GError **error);

/* Hands the replies that came on @c to @take, in order. */
static gboolean
take_replies (Io *io, redisContext *c, TakeFunc take, GError **error)
{
  for (;;)
    {
      redisReply *reply;
      GError *refused = NULL;

      switch (sluice_redis_take_reply (c, &reply, &refused))
        {
        case SLUICE_REDIS_TAKE_NONE:
          return TRUE;
        case SLUICE_REDIS_TAKE_BROKEN:
          g_propagate_error (error, refused);
          return FALSE;
        default:
          if (!take (io, reply, refused, error))
            return FALSE;
        }
    }
}

/* A reply on in: calls, or a refusal. */
static gboolean
take_in_reply (Io *io, redisReply *reply, GError *refused, GError **error)
{
  io->reading = FALSE;
  if (refused != NULL)
    return in_refused (io, refused, error);
  take_entries (io, reply);
  freeReplyObject (reply);
  return TRUE;
}

/* Reclaims and renews when it is time, then reads more calls when there
 * is room for them, unless a read is pending (it returns within
 * READ_BLOCK_MS) or serve_redis () stops. */
static gboolean
read_next (Io *io, gint64 now, GError **error)
{
  Serve *serve = io->serve;
  SluiceRedisArgs args;
  guint n_held, n_unanswered, count;
  GError *local = NULL;

  if (io->reading || io_stopping (io) || now < io->in_resume_us)
    return TRUE;
  if (now >= io->next_reclaim_us)
    {
      if (!io_blocking (io, reclaim_and_renew, &local))
        {
          if (!sluice_redis_connected (io->in))
            {
              g_propagate_error (error, local);
              return FALSE;
            }
          return in_refused (io, local, error);
        }
      io->next_reclaim_us = now + (gint64) serve->lease_ms * G_TIME_SPAN_MILLISECOND / 3;
    }
  g_mutex_lock (&serve->mutex);
  n_unanswered = n_unanswered_locked (serve);
  n_held = serve->n_calls;
  /* Entries, as many as the calls there is room for, at the calls per
   * entry read so far. */
  count = MIN (serve->max_held - MIN (n_unanswered, serve->max_held),
               2 * serve->max_held - MIN (n_held, 2 * serve->max_held));
  if (serve->entries_read > 0)
    count = MAX (1, (guint) (count * serve->entries_read / serve->calls_read));
  g_mutex_unlock (&serve->mutex);
  /* Room for a few more calls: fewer than refill_below unanswered, and
   * the answers waiting to be written not too many. */
  if (n_unanswered >= serve->refill_below || n_held >= 2 * serve->max_held)
    return TRUE;

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
  for (guint i = 0; i < io->n_streams; i++)
    sluice_redis_args_add (&args, io->streams[i]);
  for (guint i = 0; i < io->n_streams; i++)
    sluice_redis_args_add (&args, ">");
  if (!sluice_redis_args_append (&args, io->in, error))
    return FALSE;
  io->reading = TRUE;
  return TRUE;
}

/* Whether the answers waiting are written now: they go together, when
 * enough are ready, when no other call runs (or waits to), or when the
 * first has waited long enough; *@due gets when the first will have. */
static gboolean
answers_due_locked (Serve *serve, gint64 now, gint64 *due)
{
  Job *first = g_queue_peek_head (&serve->answers);

  if (first == NULL)
    return FALSE;
  *due = first->answered_us + ANSWER_DELAY_US;
  return serve->answers.length >= serve->answer_batch || n_unanswered_locked (serve) == 0 ||
         now >= *due;
}

/* Puts the jobs of @jobs back before the answers waiting, to be written
 * again. */
static void
answers_again (Serve *serve, GPtrArray *jobs)
{
  g_mutex_lock (&serve->mutex);
  for (guint i = jobs->len; i > 0; i--)
    {
      Job *job = jobs->pdata[i - 1];

      job->entry->n_unappended++;
      g_queue_push_head (&serve->answers, job);
    }
  g_mutex_unlock (&serve->mutex);
}

/* Appends the answers due, as many transactions as it takes. */
static gboolean
write_answers (Io *io, gint64 now, GError **error)
{
  Serve *serve = io->serve;
  guint n_written = 0;
  gint64 due;

  if (now < io->out_resume_us)
    return TRUE;
  for (GList *l = io->written.head; l != NULL; l = l->next)
    n_written += ((Written *) l->data)->jobs->len;
  for (;;)
    {
      Written *written;
      gboolean idle;
      Job *job;

      g_mutex_lock (&serve->mutex);
      if (!answers_due_locked (serve, now, &due))
        {
          g_mutex_unlock (&serve->mutex);
          return TRUE;
        }
      written = g_new0 (Written, 1);
      written->jobs = g_ptr_array_new ();
      written->trims = g_ptr_array_new_with_free_func (trim_at_free);
      while (written->jobs->len < MAX_ANSWER_BATCH &&
             (job = g_queue_pop_head (&serve->answers)) != NULL)
        g_ptr_array_add (written->jobs, job);
      /* No call left to run: the streams are trimmed, in this transaction
       * when it is the last one, else once the member stayed idle a
       * moment (write_idle_trims ()). */
      idle = n_unanswered_locked (serve) == n_written + written->jobs->len;
      g_mutex_unlock (&serve->mutex);
      if (idle && !io_stopping (io))
        {
          /* From the last idle transaction: the trim after it then sees
           * the member idle, unless calls came since (their last
           * answers set it again). */
          io->idle_trim_us = now + IDLE_TRIM_DELAY_MS * G_TIME_SPAN_MILLISECOND;
          idle = FALSE;
        }

      written->n_replies =
          append_answers (serve, io->out, written->jobs, idle, written->trims, error);
      if (written->n_replies == 0)
        {
          answers_again (serve, written->jobs);
          written_free (written);
          return FALSE;
        }
      n_written += written->jobs->len;
      g_queue_push_tail (&io->written, written);
    }
}

/* Trims the streams acknowledged in since their last trim, in a
 * transaction of its own, once it is time and the member still holds
 * nothing (else calls came since the last idle transaction of answers:
 * the last transaction of their answers is idle and sets the time
 * again). */
static gboolean
write_idle_trims (Io *io, gint64 now, GError **error)
{
  Serve *serve = io->serve;
  SluiceRedisArgs args;
  GHashTableIter iter;
  gpointer stream, acked;
  Written *written;
  guint n_queued = 0, n_written = 0;
  gboolean idle, confirming, ok, due = FALSE;

  if (io->idle_trim_us == 0 || now < io->idle_trim_us || now < io->out_resume_us)
    return TRUE;
  io->idle_trim_us = 0;
  for (GList *l = io->written.head; l != NULL; l = l->next)
    n_written += ((Written *) l->data)->jobs->len;
  g_mutex_lock (&serve->mutex);
  idle = serve->n_calls == 0 && g_queue_is_empty (&io->written);
  /* Every call held is answered, its transaction's replies awaited: once
   * they came, it is idle (a slow round trip, not new calls). */
  confirming = !idle && serve->n_calls == n_written;
  g_mutex_unlock (&serve->mutex);
  if (confirming)
    io->idle_trim_us = now + IDLE_TRIM_DELAY_MS * G_TIME_SPAN_MILLISECOND;
  g_hash_table_iter_init (&iter, serve->acked);
  while (!due && g_hash_table_iter_next (&iter, NULL, &acked))
    due = ((Acked *) acked)->since_trim > 0;
  if (!idle || !due)
    return TRUE;
  written = g_new0 (Written, 1);
  written->jobs = g_ptr_array_new ();
  written->trims = g_ptr_array_new_with_free_func (trim_at_free);
  sluice_redis_args_init (&args);
  sluice_redis_args_add (&args, "MULTI");
  ok = sluice_redis_args_append (&args, io->out, error);
  g_hash_table_iter_init (&iter, serve->acked);
  while (ok && g_hash_table_iter_next (&iter, &stream, &acked))
    if (((Acked *) acked)->since_trim > 0)
      ok = append_trim (io->out, stream, acked, &n_queued, written->trims, error);
  if (ok)
    {
      sluice_redis_args_init (&args);
      sluice_redis_args_add (&args, "EXEC");
      ok = sluice_redis_args_append (&args, io->out, error);
    }
  /* MULTI, the trims, EXEC: its replies are read like those of answers. */
  written->n_replies = n_queued + 2;
  g_queue_push_tail (&io->written, written);
  return ok;
}

/* All the replies of @written came: its jobs are done (or, when Redis was
 * loading or busy, written again a little later). */
static void
written_done (Io *io, Written *written)
{
  Serve *serve = io->serve;

  if (written->refused != NULL && sluice_redis_error_is_transient (written->refused))
    {
      io->out_resume_us = g_get_monotonic_time () + TRANSIENT_WAIT_MS * G_TIME_SPAN_MILLISECOND;
      answers_again (serve, written->jobs);
      written_free (written);
      return;
    }
  /* Redis refused the transaction: nothing to try again. */
  if (written->refused != NULL)
    g_message ("Answers not written: %s", written->refused->message);
  g_mutex_lock (&serve->mutex);
  for (guint i = 0; i < written->jobs->len; i++)
    {
      Entry *entry = ((Job *) written->jobs->pdata[i])->entry;

      serve->n_calls--;
      /* The last answer of the entry: its jobs go with it. */
      if (--entry->n_unconfirmed == 0)
        g_hash_table_remove (serve->held, entry->key);
    }
  g_mutex_unlock (&serve->mutex);
  written_free (written);
}

/* A reply on out, counted against its transaction; the first refusal of
 * a transaction is the one reported (a command refused while queued, say
 * LOADING, then EXECABORT). */
static gboolean
take_out_reply (Io *io, redisReply *reply, GError *refused, GError **error)
{
  Written *written = g_queue_peek_head (&io->written);

  /* EXEC's reply: the MINIDs of the trims. */
  if (written != NULL && written->n_replies == 1 && reply != NULL &&
      reply->type == REDIS_REPLY_ARRAY)
    for (guint i = 0; i < written->trims->len; i++)
      {
        TrimAt *at = written->trims->pdata[i];

        if (at->index < reply->elements && reply->element[at->index]->type == REDIS_REPLY_STRING)
          acked_trimmed (io->serve, at->stream, reply->element[at->index]->str);
      }
  if (reply != NULL)
    freeReplyObject (reply);
  if (written == NULL)
    {
      /* Nothing was written: Redis is confused. */
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s",
                   refused != NULL ? refused->message : "a reply that was not asked for");
      g_clear_error (&refused);
      return FALSE;
    }
  if (refused != NULL && written->refused == NULL)
    written->refused = refused;
  else
    g_clear_error (&refused);
  if (--written->n_replies == 0)
    written_done (io, g_queue_pop_head (&io->written));
  return TRUE;
}

/* Reads the next cancel entries, unless a read is pending. */
static gboolean
control_next (Io *io, gint64 now, GError **error)
{
  SluiceRedisArgs args;

  if (io->ctl_reading || io_stopping (io) || now < io->ctl_resume_us)
    return TRUE;
  sluice_redis_args_init_xread (&args, SLUICE_REDIS_CONTROL_STREAM, io->ctl_last_id,
                                CONTROL_BLOCK_MS);
  if (!sluice_redis_args_append (&args, io->ctl, error))
    return FALSE;
  io->ctl_reading = TRUE;
  return TRUE;
}

/* A reply on ctl: cancel entries, every one, not as a group member (each
 * remote worker sees all), from the newest one there when serve_redis ()
 * started. */
static gboolean
take_ctl_reply (Io *io, redisReply *reply, GError *refused, GError **error)
{
  redisReply *entries;

  io->ctl_reading = FALSE;
  if (refused != NULL)
    {
      io->ctl_resume_us = g_get_monotonic_time () + TRANSIENT_WAIT_MS * G_TIME_SPAN_MILLISECOND;
      g_error_free (refused);
      return TRUE;
    }
  entries = sluice_redis_xread_entries (reply);
  for (size_t i = 0; entries != NULL && i < entries->elements; i++)
    {
      redisReply *entry = entries->element[i];

      if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2)
        continue;
      g_free (io->ctl_last_id);
      io->ctl_last_id = g_strdup (entry->element[0]->str);
      take_cancel (io->serve, entry);
    }
  freeReplyObject (reply);
  return TRUE;
}

/* The connection *@c was lost (@error): what was pending on it is undone
 * (a read is sent again, the answers written are written again: a result
 * may come twice, the producer drops the second) and it is made again,
 * blocking, for as long as it takes; FALSE when serve_redis () stops
 * meanwhile (or stopped: then it does not wait for Redis to come back, and
 * the calls it could not answer go to other members after their lease). */
static gboolean
io_lost (Io *io, redisContext **c, GError *error)
{
  Serve *serve = io->serve;
  gboolean stopping = io_stopping (io);
  GError *local = NULL;

  if (!stopping)
    g_message ("Redis connection lost (%s): reconnecting", error->message);
  g_error_free (error);
  redisFree (g_steal_pointer (c));
  if (c == &io->in)
    io->reading = FALSE;
  else if (c == &io->ctl)
    io->ctl_reading = FALSE;
  else
    while (!g_queue_is_empty (&io->written))
      {
        Written *written = g_queue_pop_tail (&io->written);

        answers_again (serve, written->jobs);
        written_free (written);
      }
  if (stopping)
    return FALSE;
  for (;;)
    {
      *c = sluice_redis_reconnect (serve->endpoint, COMMAND_TIMEOUT_MS, 0, stop_cb, serve, NULL);
      if (*c == NULL)
        return FALSE;
      if (c != &io->in || make_groups (io, &local))
        break;
      /* Redis is still loading, say: again. */
      g_debug ("Making the groups again: %s", local->message);
      g_clear_error (&local);
      redisFree (g_steal_pointer (c));
    }
  if (c == &io->in)
    io->next_reclaim_us = 0;
  sluice_redis_set_nonblocking (*c, TRUE);
  return TRUE;
}

/* Waits in poll () for the connections, the wake-up of a thread that ran a
 * call (or of the caller's cancellable), or the next deadline. */
static void
io_poll (Io *io)
{
  Serve *serve = io->serve;
  gint64 now = g_get_monotonic_time (), until = now + MAX_POLL_MS * G_TIME_SPAN_MILLISECOND;
  gint64 due = G_MAXINT64;
  struct pollfd fds[4] = {
    { .fd = serve->wake_fd, .events = POLLIN },
    { .fd = io->in->fd, .events = POLLIN },
    { .fd = io->out->fd, .events = POLLIN },
    { .fd = io->ctl->fd, .events = POLLIN },
  };
  redisContext *contexts[4] = { NULL, io->in, io->out, io->ctl };
  gboolean stopping = io_stopping (io), work;

  for (guint i = 1; i < G_N_ELEMENTS (fds); i++)
    if (sluice_redis_has_output (contexts[i]))
      fds[i].events |= POLLOUT;
  if (!io->reading && !stopping)
    until = MIN (until, MAX (io->in_resume_us, io->next_reclaim_us));
  if (!io->ctl_reading && !stopping)
    until = MIN (until, io->ctl_resume_us);

  g_mutex_lock (&serve->mutex);
  work = now >= io->out_resume_us && answers_due_locked (serve, now, &due);
  if (due != G_MAXINT64)
    until = MIN (until, MAX (due, io->out_resume_us));
  /* Room to read more. */
  if (!io->reading && !stopping && now >= io->in_resume_us &&
      n_unanswered_locked (serve) < serve->refill_below && serve->n_calls < 2 * serve->max_held)
    work = TRUE;
  /* Stopping: the last answers were written. */
  if (stopping && !io->reading && g_hash_table_size (serve->held) == 0 &&
      g_queue_is_empty (&io->written))
    work = TRUE;
  if (io->idle_trim_us != 0)
    until = MIN (until, MAX (io->idle_trim_us, io->out_resume_us));
  serve->io_polling = !work;
  g_mutex_unlock (&serve->mutex);
  /* With work to do now, only a look at what came meanwhile. */
  sluice_redis_poll (fds, G_N_ELEMENTS (fds), work ? 0 : until, &serve->mutex, &serve->io_polling,
                     &serve->io_woken);
  io->in_ready = fds[1].revents != 0;
  io->out_ready = fds[2].revents != 0;
  io->ctl_ready = fds[3].revents != 0;
}

/* One round of the I/O thread: reads what came, writes, waits. FALSE when
 * serve_redis () stops. */
static gboolean
io_round (Io *io)
{
  GError *error = NULL;
  gint64 now;

  if (io->in_ready && (!sluice_redis_read_some (io->in, &error) ||
                       !take_replies (io, io->in, take_in_reply, &error)))
    return io_lost (io, &io->in, error);
  if (io->out_ready && (!sluice_redis_read_some (io->out, &error) ||
                        !take_replies (io, io->out, take_out_reply, &error)))
    return io_lost (io, &io->out, error);
  if (io->ctl_ready && (!sluice_redis_read_some (io->ctl, &error) ||
                        !take_replies (io, io->ctl, take_ctl_reply, &error)))
    return io_lost (io, &io->ctl, error);

  now = g_get_monotonic_time ();
  if (io_stopping (io) && !io->reading)
    {
      gboolean done;

      g_mutex_lock (&io->serve->mutex);
      done = g_hash_table_size (io->serve->held) == 0 && g_queue_is_empty (&io->written);
      g_mutex_unlock (&io->serve->mutex);
      if (done && io->idle_trim_us == 0)
        return FALSE;
      /* The streams are trimmed before it stops. */
      if (done)
        io->idle_trim_us = MIN (io->idle_trim_us, now);
    }

  if (!write_answers (io, now, &error) || !write_idle_trims (io, now, &error) ||
      !sluice_redis_flush (io->out, &error))
    return io_lost (io, &io->out, error);
  if (!read_next (io, now, &error) || !sluice_redis_flush (io->in, &error))
    return io_lost (io, &io->in, error);
  if (!control_next (io, now, &error) || !sluice_redis_flush (io->ctl, &error))
    return io_lost (io, &io->ctl, error);
  io_poll (io);
  return TRUE;
}

static void
caller_cancelled_cb (GCancellable *cancellable, gpointer data)
{
  Serve *serve = data;
  guint64 one = 1;

  if (write (serve->wake_fd, &one, sizeof one) < 0)
    g_warning ("Could not wake the Redis I/O thread: %s", g_strerror (errno));
}

/* Serves until the caller's cancellable is cancelled (or Redis refuses
 * something it cannot go on after: io->error), in the calling thread. */
static void
io_run (Io *io)
{
  sigset_t pipe_set, old_set, pending;
  struct timespec zero = { 0, 0 };
  gulong handler;

  /* Writes to a connection Redis closed must not raise SIGPIPE: blocked
   * while it serves, and one raised is taken before it is unblocked. */
  sigemptyset (&pipe_set);
  sigaddset (&pipe_set, SIGPIPE);
  pthread_sigmask (SIG_BLOCK, &pipe_set, &old_set);
  sluice_redis_set_nonblocking (io->in, TRUE);
  sluice_redis_set_nonblocking (io->out, TRUE);
  sluice_redis_set_nonblocking (io->ctl, TRUE);
  handler =
      g_cancellable_connect (io->serve->caller, G_CALLBACK (caller_cancelled_cb), io->serve, NULL);
  io->in_ready = io->out_ready = io->ctl_ready = FALSE;

  while (io_round (io))
    ;

  g_cancellable_disconnect (io->serve->caller, handler);
  if (!sigismember (&old_set, SIGPIPE) && sigpending (&pending) == 0 &&
      sigismember (&pending, SIGPIPE))
    sigtimedwait (&pipe_set, NULL, &zero);
  pthread_sigmask (SIG_SETMASK, &old_set, NULL);
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
  Io io = { 0 };
  char host[64] = "";
  char *default_consumer = NULL;
  GError *local = NULL;

  g_return_val_if_fail (SLUICE_IS_WORKER_SERVICE (self), FALSE);
  g_return_val_if_fail (endpoint != NULL, FALSE);
  g_return_val_if_fail (series != NULL && series[0] != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  ep = sluice_redis_endpoint_parse (endpoint, password, error);
  if (ep == NULL)
    return FALSE;
  io.in = sluice_redis_connect (ep, COMMAND_TIMEOUT_MS, error);
  io.out = io.in != NULL ? sluice_redis_connect (ep, COMMAND_TIMEOUT_MS, error) : NULL;
  io.ctl = io.out != NULL ? sluice_redis_connect (ep, COMMAND_TIMEOUT_MS, error) : NULL;
  serve.wake_fd = io.ctl != NULL ? eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK) : -1;
  if (io.ctl != NULL && serve.wake_fd < 0)
    g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "eventfd: %s",
                 g_strerror (errno));
  if (serve.wake_fd < 0)
    {
      g_clear_pointer (&io.in, redisFree);
      g_clear_pointer (&io.out, redisFree);
      g_clear_pointer (&io.ctl, redisFree);
      sluice_redis_endpoint_free (ep);
      return FALSE;
    }

  io.serve = &serve;
  io.n_streams = g_strv_length ((char **) series);
  io.streams = g_new0 (char *, io.n_streams + 1);
  for (guint i = 0; i < io.n_streams; i++)
    io.streams[i] = sluice_redis_calls_stream (series[i]);
  if (consumer == NULL)
    {
      gethostname (host, sizeof host - 1);
      default_consumer = g_strdup_printf ("%s.%d", host, (int) getpid ());
    }
  serve.consumer = consumer != NULL ? consumer : default_consumer;
  serve.endpoint = ep;
  serve.caller = cancellable;
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
  g_queue_init (&serve.answers);
  serve.held = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) entry_free);
  serve.cancels = g_hash_table_new (g_str_hash, g_str_equal);
  serve.acked = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, acked_free);
  g_queue_init (&serve.cancel_order);
  io.pool = g_thread_pool_new (job_run, &serve, (int) serve.n_threads, TRUE, NULL);
  g_queue_init (&io.written);
  /* The groups, where the control stream is now (cancellations from now
   * on reach this worker) and the largest value Redis takes. Redis lost
   * meanwhile (or loading): again, as once it serves. */
  while (!(make_groups (&io, &local) &&
           (io.ctl_last_id = newest_control_id (io.in, &local)) != NULL &&
           sluice_redis_max_bulk (io.in, &serve.max_bulk, &local)))
    {
      gboolean lost = !sluice_redis_connected (io.in);

      if (!lost && !sluice_redis_error_is_transient (local))
        break;
      if (lost)
        g_message ("Redis connection lost (%s): reconnecting", local->message);
      g_clear_error (&local);
      g_clear_pointer (&io.ctl_last_id, g_free);
      if (!lost)
        g_usleep (TRANSIENT_WAIT_MS * 1000);
      else
        {
          redisFree (io.in);
          io.in = sluice_redis_reconnect (ep, COMMAND_TIMEOUT_MS, 0, stop_cb, &serve, NULL);
        }
      if (io.in == NULL || g_cancellable_is_cancelled (cancellable))
        break;
    }
  if (io.ctl_last_id == NULL)
    io.ctl_last_id = g_strdup ("0-0");
  if (local == NULL && io.in != NULL && !g_cancellable_is_cancelled (cancellable))
    io_run (&io);

  /* The calls it runs are answered (or, with the connection lost, left to
   * other members). */
  g_thread_pool_free (io.pool, FALSE, TRUE);
  g_queue_clear_full (&io.written, (GDestroyNotify) written_free);
  /* Answers not written (Redis lost as it stopped): their jobs are held. */
  g_queue_clear (&serve.answers);
  g_hash_table_unref (serve.held);
  g_hash_table_unref (serve.cancels);
  g_hash_table_unref (serve.acked);
  g_queue_clear_full (&serve.cancel_order, g_free);
  g_mutex_clear (&serve.mutex);
  close (serve.wake_fd);
  g_clear_pointer (&io.in, redisFree);
  g_clear_pointer (&io.out, redisFree);
  g_clear_pointer (&io.ctl, redisFree);
  g_free (io.ctl_last_id);
  sluice_redis_endpoint_free (ep);
  g_strfreev (io.streams);
  g_free (default_consumer);
  if (local == NULL)
    local = g_steal_pointer (&io.error);
  g_clear_error (&io.error);
  if (local != NULL)
    {
      g_propagate_error (error, local);
      return FALSE;
    }
  return TRUE;
}
