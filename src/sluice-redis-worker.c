/* sluice-redis-worker.c: workers on other machines, through Redis Streams
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "sluice-private.h"
#include "sluice-worker-private.h"

#include "sluice-redis-private.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#ifndef POLLRDHUP
#define POLLRDHUP 0
#endif

/**
 * SluiceRedisWorker:
 *
 * A [iface@Sluice.Worker] whose calls run on other machines: it adds each
 * named call it takes to a Redis stream of the call's series, where
 * processes serving the series
 * ([method@Sluice.WorkerService.serve_redis]) read them as members of a
 * consumer group, and reads the results from a reply stream of its own.
 * Ordering, the window and flow control stay with the producer that owns
 * the [class@Sluice.TaskQueue] that hired it.
 *
 * It never has more calls in Redis than its `max-in-flight` (its
 * capacity), so the memory Redis uses stays bounded too: remote workers
 * trim the entries they answered from the streams, and the worker trims the
 * answers it reads.
 *
 * Delivery is at least once: a call whose remote worker died runs again
 * elsewhere once its lease has passed. The worker keeps the first result
 * of each call and drops the others (and results of calls it no longer
 * holds), so each call completes exactly once. `doc/remote-workers.md`
 * describes the protocol.
 *
 * A call cancelled or timed out is deleted from its stream if no remote
 * worker has read it yet; otherwise a cancel entry in the control stream
 * `sluice:control` cancels the [class@Gio.Cancellable] of the remote
 * function that runs it (its result is dropped).
 *
 * Calls ready together go in one stream entry (up to a quarter of
 * `max-in-flight`), and remote workers answer several per entry.
 *
 * One thread of its own drives two connections (one adds calls, one reads
 * results, with a blocking `XREAD`), polled together. When a connection is lost,
 * the calls in flight go back to the task queue (to another worker, or
 * back to this one) and the worker connects again, for up to 30 seconds
 * ([method@Sluice.RedisWorker.set_reconnect_timeout]); past that it
 * resigns ([signal@Sluice.Worker::resigned]) and the task queue gives its
 * calls to other workers.
 *
 * `SluiceRedisWorker` is MT-safe.
 */

#define COMMAND_TIMEOUT_MS 10000
#define READ_BLOCK_MS 200
#define DEFAULT_RECONNECT_MS 30000
#define DEFAULT_REPLY_TTL_MS 60000
/* Waits before trying again after Redis said it is loading or busy. */
#define TRANSIENT_WAIT_MS 100
/* Calls sent in one pipeline at most. */
#define MAX_SEND_BATCH 256
/* How long the replies to calls sent may wait to be read until the I/O
 * thread wakes for something else: a call refused (LOADING, out of
 * memory) is seen this much later. */
#define SEND_REPLY_DELAY_US 2000
/* The answers read leave the reply stream by an XTRIM once this many were
 * read since the last one, or once no call is in flight. */
#define REPLY_TRIM_EVERY 32
/* Open entries (calls in flight) checked at each renewal of the reply
 * stream (still in their stream, or pending in the group; 2 commands
 * each), besides those missed once: at least AUDIT_BATCHES, and enough
 * that each is checked once in AUDIT_SPREAD renewals. */
#define AUDIT_BATCHES 4
#define AUDIT_SPREAD 4

typedef struct _State State;

/* The calls sent in one entry (version 3 of the protocol): one attempt
 * of each. The entry id is the batch's, from the reply to its own XADD:
 * never matched by call id, which an earlier attempt of one of its calls
 * shares (issue 17: that attempt, given back, took the id of this entry
 * and withdrew it, the other calls in it with it). */
typedef struct
{
  guint n_open;      /* its calls still in flight (under the state's mutex) */
  guint n_calls;     /* its calls; 0 once its entry is deleted */
  guint size;        /* its calls */
  char *entry_id;    /* (nullable) until its XADD is answered; under the mutex */
  gboolean awaiting; /* the reply to its XADD is awaited on the send connection */
  /* The I/O thread's checks that its entry is still in Redis (see
   * audit ()): */
  char *stream;        /* (owned) its calls' stream */
  guint64 serial;      /* the order it was sent in */
  guint64 round;       /* the last check that chose it */
  gboolean seen;       /* the last check's XRANGE found it */
  guint misses;        /* checks in a row that found it nowhere */
  guint64 missed_read; /* the first XREAD sent after the first miss */
} Batch;

/* A call in Redis. */
typedef struct
{
  State *state;
  SluiceWorkerTask *task; /* (owned) (nullable) once taken out */
  char *id;               /* CLIENT-ID:SEQUENCE */
  char *stream;
  GCancellable *cancellable; /* (owned) the task's */
  gulong cancelled_id;
  guint epoch;  /* of the Redis instance it was sent to (State.epoch) */
  Batch *batch; /* (owned: a reference) the calls of its entry */
} Flight;

/* What the threads share with the object: they hold references on it. */
struct _State
{
  GMutex mutex;
  int wake_fd;         /* an eventfd: wakes the I/O thread */
  gboolean io_polling; /* the I/O thread waits in poll () */
  gboolean io_woken;   /* and was woken */
  SluiceRedisEndpoint *endpoint;
  char *client_id;
  char *reply_stream;
  GQueue to_send;          /* of SluiceWorkerTask (owned) */
  GHashTable *in_flight;   /* call id (owned) -> Flight (owned) */
  GPtrArray *withdraw;     /* of Flight (owned): entries to delete */
  GHashTable *attempts;    /* sequence -> attempts (GUINT_TO_POINTER) */
  guint max_tracked;       /* past this many attempts, forget those not held */
  char *run_id;            /* of the Redis instance the calls go to */
  guint epoch;             /* the number of run_id: one more at each restart */
  GPtrArray *stop_waiters; /* of GTask (owned) */
  gboolean stopping;
  gint64 resume_at;   /* nothing is sent before (Redis was loading, busy) */
  guint reconnect_ms; /* 0: resign when the connection is lost */
  guint reply_ttl_ms; /* of the reply stream, renewed every third; 0: none */
  gboolean reply_ttl_changed;
  guint64 max_bulk; /* Redis's proto-max-bulk-len, or 0 when unknown */
  gboolean failed;  /* the connection was lost for good: resigning */
  gboolean closed;  /* crashed, resigned or finalized */
  GWeakRef worker;
  GPtrArray *cancelled; /* of call ids (owned): cancel remotely */
  guint max_per_entry;  /* calls in one entry at most */
  guint64 n_sent, n_entries, n_redelivered, n_duplicates, n_results, n_reconnects;
  guint64 n_vanished; /* calls given back: their entry vanished unread */
  guint64 n_checks;   /* checks of the entries in flight (see audit ()) */
};

struct _SluiceRedisWorker
{
  GObject parent_instance;

  char **series;
  guint max_in_flight;
  State *state;
  GThread *io;
};

static void sluice_redis_worker_iface_init (SluiceWorkerInterface *iface);
static void wake_io_locked (State *state);

G_DEFINE_FINAL_TYPE_WITH_CODE (SluiceRedisWorker,
                               sluice_redis_worker,
                               G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (SLUICE_TYPE_WORKER,
                                                      sluice_redis_worker_iface_init))

static void
batch_clear (gpointer data)
{
  g_free (((Batch *) data)->entry_id);
  g_free (((Batch *) data)->stream);
}

static void
batch_release (Batch *batch)
{
  g_rc_box_release_full (batch, batch_clear);
}

/* Never with the state's mutex held, nor from the cancelled handler. */
static void
flight_free (gpointer data)
{
  Flight *flight = data;

  if (flight == NULL)
    return;
  if (flight->cancelled_id != 0)
    g_cancellable_disconnect (flight->cancellable, flight->cancelled_id);
  g_clear_object (&flight->cancellable);
  g_clear_object (&flight->task);
  g_free (flight->id);
  g_free (flight->stream);
  if (flight->batch != NULL)
    batch_release (flight->batch);
  g_free (flight);
}

/* @flight left the calls in flight (answered, withdrawn or given back). */
static void
flight_left_locked (Flight *flight)
{
  if (flight->batch != NULL && flight->batch->n_open > 0)
    flight->batch->n_open--;
}

static void
state_clear (gpointer data)
{
  State *state = data;

  g_assert (g_queue_is_empty (&state->to_send));
  g_hash_table_unref (state->in_flight);
  g_ptr_array_unref (state->withdraw);
  g_hash_table_unref (state->attempts);
  g_ptr_array_unref (state->stop_waiters);
  g_ptr_array_unref (state->cancelled);
  sluice_redis_endpoint_free (state->endpoint);
  g_free (state->client_id);
  g_free (state->reply_stream);
  g_free (state->run_id);
  g_weak_ref_clear (&state->worker);
  if (state->wake_fd >= 0)
    close (state->wake_fd);
  g_mutex_clear (&state->mutex);
}

static void
state_unref (State *state)
{
  g_atomic_rc_box_release_full (state, state_clear);
}

static char *
call_id (State *state, SluiceWorkerTask *task)
{
  return g_strdup_printf ("%s:%" G_GUINT64_FORMAT, state->client_id,
                          sluice_worker_task_get_sequence (task));
}

/* Forgets how many times the call of @task was sent: it is done here. */
static void
forget_attempts_locked (State *state, SluiceWorkerTask *task)
{
  guint64 seq = sluice_worker_task_get_sequence (task);

  g_hash_table_remove (state->attempts, &seq);
}

/* Adds the key of @task's attempts, if counted, to @held. */
static void
hold_attempts (GHashTable *attempts, GHashTable *held, SluiceWorkerTask *task)
{
  guint64 seq = sluice_worker_task_get_sequence (task);
  gpointer key;

  if (g_hash_table_lookup_extended (attempts, &seq, &key, NULL))
    g_hash_table_add (held, key);
}

/* The attempts of calls given back when a connection was lost stay
 * counted, in case they come back; those that went to other workers are
 * forgotten once the table outgrows what the worker holds. */
static void
prune_attempts_locked (State *state)
{
  GHashTable *held;
  GHashTableIter iter;
  gpointer key, value;

  if (g_hash_table_size (state->attempts) <= state->max_tracked)
    return;
  held = g_hash_table_new (NULL, NULL);
  g_hash_table_iter_init (&iter, state->in_flight);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    hold_attempts (state->attempts, held, ((Flight *) value)->task);
  for (GList *l = state->to_send.head; l != NULL; l = l->next)
    hold_attempts (state->attempts, held, l->data);
  g_hash_table_iter_init (&iter, state->attempts);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    if (!g_hash_table_contains (held, key))
      g_hash_table_iter_remove (&iter);
  g_hash_table_unref (held);
}

/* Takes the call @id out of the calls in flight, if it is there. */
static gboolean
steal_flight (State *state, const char *id, Flight **flight)
{
  gpointer key;

  if (!g_hash_table_steal_extended (state->in_flight, id, &key, (gpointer *) flight))
    return FALSE;
  g_free (key);
  flight_left_locked (*flight);
  return TRUE;
}

static GPtrArray *
take_stop_waiters_if_idle_locked (State *state)
{
  GPtrArray *waiters;

  if (!(state->stopping || state->closed) || !g_queue_is_empty (&state->to_send) ||
      g_hash_table_size (state->in_flight) > 0 || state->stop_waiters->len == 0)
    return NULL;
  waiters = g_steal_pointer (&state->stop_waiters);
  state->stop_waiters = g_ptr_array_new ();
  return waiters;
}

/* Takes the tasks of the calls in flight into @tasks; their entries are to
 * be withdrawn. */
static void
take_in_flight_locked (State *state, GPtrArray *tasks)
{
  GHashTableIter iter;
  gpointer key, value;

  g_hash_table_iter_init (&iter, state->in_flight);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      Flight *flight = value;

      g_ptr_array_add (tasks, g_steal_pointer (&flight->task));
      g_hash_table_iter_steal (&iter);
      g_free (key);
      flight_left_locked (flight);
      g_ptr_array_add (state->withdraw, flight);
    }
}

/* Takes every task @state holds (transfer full), and closes it. */
static GPtrArray *
close_locked (State *state)
{
  GPtrArray *tasks = g_ptr_array_new_with_free_func (g_object_unref);
  SluiceWorkerTask *task;

  state->closed = TRUE;
  while ((task = g_queue_pop_head (&state->to_send)) != NULL)
    g_ptr_array_add (tasks, task);
  take_in_flight_locked (state, tasks);
  wake_io_locked (state);
  return tasks;
}

/* Gives @tasks (transfer full) back to the queue. */
static void
give_back (State *state, GPtrArray *tasks)
{
  GPtrArray *waiters;

  g_mutex_lock (&state->mutex);
  waiters = take_stop_waiters_if_idle_locked (state);
  g_mutex_unlock (&state->mutex);
  for (guint i = 0; i < tasks->len; i++)
    sluice_worker_task_give_back (tasks->pdata[i], FALSE);
  g_ptr_array_unref (tasks);
  sluice_worker_complete_stop_waiters (waiters);
}

/* The connection is lost: resign (the queue that hired it fires it, and
 * takes its tasks back with a crash), then give back what is left. */
static void
fail (State *state, GError *error)
{
  GPtrArray *tasks;
  SluiceWorker *worker;

  g_mutex_lock (&state->mutex);
  if (state->closed || state->failed)
    {
      g_mutex_unlock (&state->mutex);
      g_error_free (error);
      return;
    }
  state->failed = TRUE;
  g_mutex_unlock (&state->mutex);

  worker = g_weak_ref_get (&state->worker);
  if (worker != NULL)
    {
      sluice_worker_resign (worker, error);
      g_object_unref (worker);
    }
  g_error_free (error);

  g_mutex_lock (&state->mutex);
  tasks = close_locked (state);
  g_mutex_unlock (&state->mutex);
  give_back (state, tasks);
}

static gboolean
closed_cb (gpointer data)
{
  State *state = data;

  return g_atomic_int_get (&state->closed);
}

/* Names the connection @c of a thread (`sluice-ROLE.CLIENT-ID` in
 * CLIENT LIST) and learns which Redis instance it reached: *@run_id, new
 * at every start of the server, or %NULL when unknown (INFO denied by an
 * ACL or renamed, or no run_id in its answer). Fails only when the
 * connection does. */
static gboolean
greet (State *state, redisContext *c, const char *role, char **run_id, GError **error)
{
  SluiceRedisArgs args;
  redisReply *reply;
  const char *line;

  *run_id = NULL;
  sluice_redis_args_init (&args);
  sluice_redis_args_add (&args, "CLIENT");
  sluice_redis_args_add (&args, "SETNAME");
  sluice_redis_args_add_printf (&args, "sluice-%s.%s", role, state->client_id);
  if (!sluice_redis_args_append (&args, c, error))
    return FALSE;
  sluice_redis_args_init (&args);
  sluice_redis_args_add (&args, "INFO");
  sluice_redis_args_add (&args, "server");
  if (!sluice_redis_args_append (&args, c, error))
    return FALSE;
  for (guint i = 0; i < 2; i++)
    {
      GError *refused = NULL;

      reply = sluice_redis_get_reply (c, &refused);
      if (reply == NULL && !sluice_redis_connected (c))
        {
          g_propagate_error (error, refused);
          return FALSE;
        }
      g_clear_error (&refused);
      /* The answer to INFO (the name is best effort). */
      line = i == 1 && reply != NULL && reply->type == REDIS_REPLY_STRING
                 ? strstr (reply->str, "run_id:")
                 : NULL;
      if (line != NULL && strcspn (line + 7, "\r\n") > 0)
        *run_id = g_strndup (line + 7, strcspn (line + 7, "\r\n"));
      if (reply != NULL)
        freeReplyObject (reply);
    }
  return TRUE;
}

/* A thread connected to the Redis instance @run_id (%NULL: unknown): when
 * it is not the one the calls in flight were sent to (Redis restarted and
 * lost them, or at least may have; an unknown instance may be a new one,
 * except at the first connection of a thread), those calls go back to the
 * queue, once (whichever thread learns it first), and *@epoch is the new
 * instance's. The sender (@sending) also gives back the calls whose XADD
 * it sent without reading the answer: they may not be in Redis. Calls sent
 * to the same instance are left there: their results come on the reply
 * stream, which the reader reads on from where it was. */
static void
connected_to (State *state, const char *run_id, gboolean first, gboolean sending, guint *epoch)
{
  GPtrArray *tasks = g_ptr_array_new_with_free_func (g_object_unref);
  GHashTableIter iter;
  gpointer key, value;
  gboolean same;

  g_mutex_lock (&state->mutex);
  same = run_id != NULL && state->run_id != NULL && strcmp (state->run_id, run_id) == 0;
  if (!same && !(first && (run_id == NULL || state->run_id == NULL)))
    state->epoch++;
  g_free (state->run_id);
  state->run_id = g_strdup (run_id);
  *epoch = state->epoch;
  g_hash_table_iter_init (&iter, state->in_flight);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      Flight *flight = value;

      if (flight->epoch == state->epoch && !(sending && flight->batch->entry_id == NULL))
        continue;
      g_ptr_array_add (tasks, g_steal_pointer (&flight->task));
      g_hash_table_iter_steal (&iter);
      g_free (key);
      flight_left_locked (flight);
      g_ptr_array_add (state->withdraw, flight);
    }
  g_mutex_unlock (&state->mutex);
  give_back (state, tasks);
}

/* Appends to @c the commands that make the reply stream (empty: an entry
 * trimmed at once) and give it its time to live. */
static gboolean
append_make_reply_stream (
    State *state, redisContext *c, guint ttl_ms, const char *after_id, GError **error)
{
  SluiceRedisArgs args;
  guint64 ms, seq;

  /* The marker's id follows the last answer read, so that every answer
   * to come has a higher id than that, which the reader asks for, even
   * where the clock of a Redis made anew is behind the old one's. */
  sluice_redis_entry_id_parse (after_id, &ms, &seq);
  if (seq == G_MAXUINT64)
    ms++, seq = 0;
  else
    seq++;
  sluice_redis_args_init (&args);
  sluice_redis_args_add (&args, "XADD");
  sluice_redis_args_add (&args, state->reply_stream);
  sluice_redis_args_add (&args, "MAXLEN");
  sluice_redis_args_add (&args, "0");
  sluice_redis_args_add_printf (&args, "%" G_GUINT64_FORMAT "-%" G_GUINT64_FORMAT, ms, seq);
  sluice_redis_args_add (&args, "made");
  sluice_redis_args_add (&args, "1");
  if (!sluice_redis_args_append (&args, c, error))
    return FALSE;
  sluice_redis_args_init (&args);
  sluice_redis_args_add (&args, "PEXPIRE");
  sluice_redis_args_add (&args, state->reply_stream);
  sluice_redis_args_add_printf (&args, "%u", ttl_ms);
  return sluice_redis_args_append (&args, c, error);
}

/* Makes the reply stream if Redis does not have it (remote workers answer
 * only to an existing one: `XADD NOMKSTREAM`, so that the stream of a
 * producer that died expires for good), with its time to live (blocking,
 * on the send connection when it connects). *@made tells whether it had
 * to: answers written meanwhile were dropped. */
static gboolean
ensure_reply_stream (
    State *state, redisContext *c, const char *after_id, gboolean *made, GError **error)
{
  SluiceRedisArgs args;
  redisReply *reply;
  guint ttl_ms;

  g_mutex_lock (&state->mutex);
  ttl_ms = state->reply_ttl_ms;
  state->reply_ttl_changed = FALSE;
  g_mutex_unlock (&state->mutex);
  sluice_redis_args_init (&args);
  sluice_redis_args_add (&args, "EXISTS");
  sluice_redis_args_add (&args, state->reply_stream);
  reply = sluice_redis_command (c, &args, error);
  if (reply == NULL)
    return FALSE;
  *made = reply->type == REDIS_REPLY_INTEGER && reply->integer == 0;
  freeReplyObject (reply);
  if (*made)
    {
      if (!append_make_reply_stream (state, c, ttl_ms > 0 ? ttl_ms : G_MAXINT32, after_id, error))
        return FALSE;
    }
  else
    {
      sluice_redis_args_init (&args);
      sluice_redis_args_add (&args, ttl_ms > 0 ? "PEXPIRE" : "PERSIST");
      sluice_redis_args_add (&args, state->reply_stream);
      if (ttl_ms > 0)
        sluice_redis_args_add_printf (&args, "%u", ttl_ms);
      if (!sluice_redis_args_append (&args, c, error))
        return FALSE;
    }
  for (guint i = 0; i < (*made ? 2u : 1u); i++)
    {
      reply = sluice_redis_get_reply (c, error);
      if (reply == NULL)
        return FALSE;
      freeReplyObject (reply);
    }
  /* Without a time to live: none. */
  if (*made && ttl_ms == 0)
    {
      sluice_redis_args_init (&args);
      sluice_redis_args_add (&args, "PERSIST");
      sluice_redis_args_add (&args, state->reply_stream);
      reply = sluice_redis_command (c, &args, error);
      if (reply == NULL)
        return FALSE;
      freeReplyObject (reply);
    }
  return TRUE;
}

/* The reply stream was gone (it expired while the producer could not
 * renew it, or someone deleted it): the answers to the calls in flight
 * may have been dropped, so they go back to the queue. */
static void
reply_stream_lost (State *state)
{
  GPtrArray *tasks = g_ptr_array_new_with_free_func (g_object_unref);

  g_mutex_lock (&state->mutex);
  take_in_flight_locked (state, tasks);
  g_mutex_unlock (&state->mutex);
  g_debug ("Reply stream %s was gone: %u calls given back", state->reply_stream, tasks->len);
  give_back (state, tasks);
}

/* Connects the connection @role ("send" or "read") of the I/O thread (its
 * @first, or again) within @deadline (0: one try), non-blocking once
 * greeted; see connected_to (). A reply stream made anew starts after
 * @after_id, the last answer read. */
static redisContext *
connect_role (State *state,
              const char *role,
              gboolean first,
              gint64 deadline,
              guint *epoch,
              const char *after_id,
              GError **error)
{
  for (;;)
    {
      redisContext *c = deadline == 0
                            ? sluice_redis_connect (state->endpoint, COMMAND_TIMEOUT_MS, error)
                            : sluice_redis_reconnect (state->endpoint, COMMAND_TIMEOUT_MS, deadline,
                                                      closed_cb, state, error);
      char *run_id = NULL;
      gboolean send = g_str_equal (role, "send"), made = FALSE;

      guint64 max_bulk = 0;

      if (c != NULL && greet (state, c, role, &run_id, error) &&
          (!send || (ensure_reply_stream (state, c, after_id, &made, error) &&
                     sluice_redis_max_bulk (c, &max_bulk, error))))
        {
          if (send)
            {
              g_mutex_lock (&state->mutex);
              state->max_bulk = max_bulk;
              g_mutex_unlock (&state->mutex);
            }
          connected_to (state, run_id, first, send, epoch);
          g_free (run_id);
          if (made && !first)
            reply_stream_lost (state);
          sluice_redis_set_nonblocking (c, TRUE);
          return c;
        }
      g_free (run_id);
      if (c != NULL)
        redisFree (c);
      if (deadline == 0 || g_get_monotonic_time () >= deadline || closed_cb (state))
        return NULL;
      g_clear_error (error);
    }
}

/* The connection *@c (@role) was lost. It connects again at once if it
 * can (a connection dropped, Redis still there: nothing is given back but
 * what may not have reached Redis, see connected_to ()). Otherwise the
 * calls in flight go back to the queue (which may give them to another
 * worker, or back to this one: they wait to be sent) and it connects
 * again for up to reconnect_ms. Past that (or with reconnect_ms 0) the
 * worker resigns and the I/O thread leaves: returns FALSE. */
static gboolean
lost (State *state,
      redisContext **c,
      const char *role,
      guint *epoch,
      const char *after_id,
      GError *error)
{
  GPtrArray *tasks = g_ptr_array_new_with_free_func (g_object_unref);
  guint reconnect_ms;
  GError *local = NULL;

  redisFree (g_steal_pointer (c));
  g_mutex_lock (&state->mutex);
  reconnect_ms = state->reconnect_ms;
  if (reconnect_ms == 0 || state->closed)
    {
      g_mutex_unlock (&state->mutex);
      g_ptr_array_unref (tasks);
      fail (state, error);
      return FALSE;
    }
  state->n_reconnects++;
  g_mutex_unlock (&state->mutex);
  g_debug ("Redis connection lost (%s), reconnecting", error->message);
  g_error_free (error);

  *c = connect_role (state, role, FALSE, 0, epoch, after_id, &local);
  if (*c != NULL)
    {
      g_ptr_array_unref (tasks);
      return TRUE;
    }
  g_clear_error (&local);

  /* Redis is not there: the calls in flight may go elsewhere meanwhile. */
  g_mutex_lock (&state->mutex);
  take_in_flight_locked (state, tasks);
  g_mutex_unlock (&state->mutex);
  g_debug ("%u calls given back", tasks->len);
  give_back (state, tasks);

  *c = connect_role (state, role, FALSE,
                     g_get_monotonic_time () + (gint64) reconnect_ms * G_TIME_SPAN_MILLISECOND,
                     epoch, after_id, &local);
  if (*c == NULL)
    {
      fail (state, local);
      return FALSE;
    }
  return TRUE;
}

/* Wakes the I/O thread if it waits in poll () (once until it wakes). */
static void
wake_io_locked (State *state)
{
  sluice_redis_wake_locked (state->wake_fd, state->io_polling, &state->io_woken);
}

/* GCancellable::cancelled of a call in flight (cancelled, or timed out),
 * in any thread: while the worker still holds it, the I/O thread
 * withdraws it, gives it back and tells the remote workers. */
static void
task_cancelled_cb (GCancellable *cancellable, gpointer data)
{
  Flight *flight = data; /* alive until disconnected */
  State *state = flight->state;

  g_mutex_lock (&state->mutex);
  if (flight->task != NULL)
    {
      g_ptr_array_add (state->cancelled, g_strdup (flight->id));
      wake_io_locked (state);
    }
  g_mutex_unlock (&state->mutex);
}

/* The calls cancelled since last time: those still in flight go back to
 * the queue (their calls are done: it drops them) and to the entries to
 * withdraw. Returns their ids (transfer full). */
static GPtrArray *
take_cancelled (State *state)
{
  GPtrArray *ids, *tasks = g_ptr_array_new_with_free_func (g_object_unref);

  g_mutex_lock (&state->mutex);
  ids = g_steal_pointer (&state->cancelled);
  state->cancelled = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < ids->len; i++)
    {
      Flight *flight;

      if (steal_flight (state, ids->pdata[i], &flight))
        {
          forget_attempts_locked (state, flight->task);
          g_ptr_array_add (tasks, g_steal_pointer (&flight->task));
          g_ptr_array_add (state->withdraw, flight);
        }
    }
  g_mutex_unlock (&state->mutex);
  give_back (state, tasks);
  return ids;
}

/* The I/O thread: one thread, two connections. "send" takes the calls
 * (XADD), the deletions of withdrawn calls and of the answers read, and
 * the cancel entries, pipelined; their replies are read as they come, and
 * only looked at once it wakes for something else or they are a moment
 * old (SEND_REPLY_DELAY_US), so that a call costs no wake-up for its XADD's
 * reply. "read" always has one blocking XREAD of the reply stream
 * pending. */
typedef struct
{
  State *state;
  guint epoch; /* of the Redis instance the connections reached */
  redisContext *send;
  GQueue expected; /* of Expected: the replies awaited on send */
  redisContext *read;
  gboolean reading;       /* an XREAD is pending on read */
  gint64 read_resume_us;  /* no XREAD before (Redis was loading) */
  char *last_id;          /* of the last answer read */
  guint n_untrimmed;      /* answer entries read since the reply stream's last trim */
  gint64 next_renewal_us; /* of the reply stream's time to live */
  guint reply_ttl_ms;     /* the last one set */
  gboolean send_ready;    /* poll () saw something on send */
  gboolean read_ready;    /* ... on read */
  GPtrArray *retry;       /* of SluiceWorkerTask (owned): refused for a while */
  guint64 n_batches;      /* sent */
  guint64 audit_round;    /* checks of the entries in flight */
  guint64 audit_from;     /* the serial of the next batch to check */
  gint64 next_audit_us;
  guint auditing;     /* replies of checks awaited on send */
  guint64 reads_sent; /* XREADs sent on read (less those lost) */
  guint64 reads_done; /* XREADs answered */
  guint64 caught_up;  /* the last XREAD answered with every answer there was */
} Io;

/* A reply awaited on the send connection. */
typedef struct
{
  GPtrArray *call_ids; /* (nullable) of char *: the calls of an XADD; NULL for other commands */
  Batch *batch;        /* (nullable) (owned: a reference) the calls of that XADD */
  Batch *audited;      /* (nullable) (owned: a reference) checked by an XRANGE or XPENDING */
  gboolean pending;    /* the XPENDING of that check */
  gboolean renewal;    /* of the reply stream's time to live */
  gint64 sent_us;
} Expected;

static void
expected_free (gpointer data)
{
  Expected *expected = data;

  g_clear_pointer (&expected->call_ids, g_ptr_array_unref);
  g_clear_pointer (&expected->batch, batch_release);
  g_clear_pointer (&expected->audited, batch_release);
  g_free (expected);
}

static void
expect (Io *io, GPtrArray *call_ids)
{
  Expected *expected = g_new0 (Expected, 1);

  expected->call_ids = call_ids;
  expected->sent_us = g_get_monotonic_time ();
  g_queue_push_tail (&io->expected, expected);
}

/* The replies awaited will not come (the send connection was lost, or
 * is closed): the entry ids of their batches stay unknown. */
static void
expected_clear (Io *io)
{
  g_mutex_lock (&io->state->mutex);
  for (GList *l = io->expected.head; l != NULL; l = l->next)
    if (((Expected *) l->data)->batch != NULL)
      ((Expected *) l->data)->batch->awaiting = FALSE;
  g_mutex_unlock (&io->state->mutex);
  g_queue_clear_full (&io->expected, expected_free);
  g_queue_init (&io->expected);
  io->auditing = 0;
}

/* Appends @args to the send connection, for a reply about @call_ids
 * (transfer full; or none). */
static gboolean
append (Io *io, SluiceRedisArgs *args, GPtrArray *call_ids, GError **error)
{
  if (!sluice_redis_args_append (args, io->send, error))
    {
      g_clear_pointer (&call_ids, g_ptr_array_unref);
      return FALSE;
    }
  expect (io, call_ids);
  return TRUE;
}

/* The reply to the XADD of @batch about its call @id: a call Redis
 * refused for a while (LOADING after a restart, BUSY with a script) is not
 * in Redis: its task goes to io->retry, to be sent again after a pause; a
 * call refused for another reason (out of memory) fails with Redis's
 * error. Only the attempt of @batch is taken out: another attempt of the
 * call (sent again since) has a reply of its own. */
static void
take_refused (Io *io, Batch *batch, const char *id, GError *refused)
{
  State *state = io->state;
  Flight *flight = NULL;

  g_mutex_lock (&state->mutex);
  flight = g_hash_table_lookup (state->in_flight, id);
  if (flight == NULL || flight->batch != batch || !steal_flight (state, id, &flight))
    flight = NULL;
  else if (!sluice_redis_error_is_transient (refused))
    forget_attempts_locked (state, flight->task);
  g_mutex_unlock (&state->mutex);
  if (flight != NULL)
    {
      SluiceWorkerTask *task = g_steal_pointer (&flight->task);

      if (sluice_redis_error_is_transient (refused))
        g_ptr_array_add (io->retry, task);
      else
        {
          sluice_worker_task_return_error (task, refused);
          g_object_unref (task);
        }
      flight_free (flight);
    }
}

/* Gives the calls of @batch still in flight back to the queue: its entry
 * vanished from Redis unread (see take_audit_reply ()). They are sent
 * again, with their next attempt number. */
static void
give_back_vanished (Io *io, Batch *batch)
{
  State *state = io->state;
  GPtrArray *tasks = g_ptr_array_new_with_free_func (g_object_unref);
  GPtrArray *flights = g_ptr_array_new_with_free_func (flight_free);
  GHashTableIter iter;
  gpointer key, value;

  g_mutex_lock (&state->mutex);
  g_hash_table_iter_init (&iter, state->in_flight);
  while (g_hash_table_iter_next (&iter, &key, &value))
    {
      Flight *flight = value;

      if (flight->batch != batch)
        continue;
      g_ptr_array_add (tasks, g_steal_pointer (&flight->task));
      g_hash_table_iter_steal (&iter);
      g_free (key);
      flight_left_locked (flight);
      g_ptr_array_add (flights, flight);
    }
  /* Nothing left to delete. */
  batch->n_calls = 0;
  state->n_vanished += tasks->len;
  g_mutex_unlock (&state->mutex);
  g_ptr_array_unref (flights);
  give_back (state, tasks);
}

/* The reply to a check of an entry of calls in flight (see audit ()):
 * the XRANGE of it in its stream, then the XPENDING of it in the group.
 * An entry found in neither on two checks in a row vanished unread: its
 * calls still in flight go back, once an XREAD sent after the first miss
 * read every answer there was. A remote worker acknowledges an entry in
 * the transaction that adds its last answers to the reply stream, so an
 * entry no longer pending because it was answered has all its answers
 * read by then, and its calls are no longer in flight. Where the entry
 * went while a remote worker ran its calls (the stream deleted), or the
 * reply stream lost its answers, a call runs twice: the first result is
 * kept, the other dropped (a duplicate). A command Redis refused (an
 * ACL, loading) finds nothing missing. */
static void
take_audit_reply (Io *io, Expected *expected, redisReply *reply, GError *refused)
{
  Batch *batch = expected->audited;
  gboolean found = reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements > 0;

  if (io->auditing > 0)
    io->auditing--;
  /* NOGROUP: the stream, and with it the group, was deleted. */
  if (refused != NULL && !(expected->pending && strstr (refused->message, "NOGROUP") != NULL))
    found = TRUE;
  if (!expected->pending)
    batch->seen = found;
  else if (found || batch->seen)
    batch->misses = 0;
  else if (batch->misses++ == 0)
    batch->missed_read = io->reads_sent + 1;
  else if (io->caught_up >= batch->missed_read)
    give_back_vanished (io, batch);
}

static gint
batch_serial_cmp (gconstpointer a, gconstpointer b)
{
  const Batch *x = *(Batch *const *) a, *y = *(Batch *const *) b;

  return x->serial < y->serial ? -1 : x->serial > y->serial;
}

/* Appends an XRANGE (or with @pending, an XPENDING) of @batch's entry. */
static gboolean
append_audit (Io *io, Batch *batch, gboolean pending, GError **error)
{
  SluiceRedisArgs args;
  Expected *expected;

  sluice_redis_args_init (&args);
  sluice_redis_args_add (&args, pending ? "XPENDING" : "XRANGE");
  sluice_redis_args_add (&args, batch->stream);
  if (pending)
    sluice_redis_args_add (&args, SLUICE_REDIS_GROUP);
  sluice_redis_args_add (&args, batch->entry_id);
  sluice_redis_args_add (&args, batch->entry_id);
  if (pending)
    sluice_redis_args_add (&args, "1");
  if (!append (io, &args, NULL, error))
    return FALSE;
  expected = g_queue_peek_tail (&io->expected);
  expected->audited = g_rc_box_acquire (batch);
  expected->pending = pending;
  io->auditing++;
  return TRUE;
}

/* Checks, every third of the reply stream's time to live (20 s by
 * default), that the entries of the calls in flight are still in Redis:
 * first those the last check missed (a second miss gives them back),
 * then the next ones in the order they were sent, after those checked
 * last time: AUDIT_BATCHES of them, or with E entries in flight
 * ⌈E/AUDIT_SPREAD⌉, so that each is checked every AUDIT_SPREAD times at
 * least. One check is awaited at a time: an XRANGE and an XPENDING per
 * entry, pipelined (see take_audit_reply ()). */
static gboolean
audit (Io *io, GError **error)
{
  State *state = io->state;
  gint64 now = g_get_monotonic_time ();
  guint ttl_ms = io->reply_ttl_ms > 0 ? io->reply_ttl_ms : DEFAULT_REPLY_TTL_MS;
  GPtrArray *open;
  GHashTableIter iter;
  gpointer value;
  guint first = 0, n_next;
  gboolean ok = TRUE;

  if (io->auditing > 0 || now < io->next_audit_us)
    return TRUE;
  io->next_audit_us = now + (gint64) ttl_ms * G_TIME_SPAN_MILLISECOND / 3;
  io->audit_round++;
  open = g_ptr_array_new_with_free_func ((GDestroyNotify) batch_release);
  g_mutex_lock (&state->mutex);
  g_hash_table_iter_init (&iter, state->in_flight);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      Batch *batch = ((Flight *) value)->batch;

      if (batch->round == io->audit_round || batch->entry_id == NULL || batch->awaiting ||
          batch->stream == NULL)
        continue;
      batch->round = io->audit_round;
      g_ptr_array_add (open, g_rc_box_acquire (batch));
    }
  if (open->len > 0)
    state->n_checks++;
  g_mutex_unlock (&state->mutex);
  g_ptr_array_sort (open, batch_serial_cmp);
  n_next = MAX (AUDIT_BATCHES, (open->len + AUDIT_SPREAD - 1) / AUDIT_SPREAD);

  /* Those missed once. */
  for (guint i = 0; i < open->len && ok; i++)
    {
      Batch *batch = open->pdata[i];

      if (batch->misses > 0)
        ok = append_audit (io, batch, FALSE, error) && append_audit (io, batch, TRUE, error);
    }

  /* Then the next ones, round robin. */
  while (first < open->len && ((Batch *) open->pdata[first])->serial < io->audit_from)
    first++;
  for (guint i = 0, n = 0; i < open->len && n < n_next && ok; i++)
    {
      Batch *batch = open->pdata[(first + i) % open->len];

      if (batch->misses > 0)
        continue;
      ok = append_audit (io, batch, FALSE, error) && append_audit (io, batch, TRUE, error);
      io->audit_from = batch->serial + 1;
      n++;
    }
  g_ptr_array_unref (open);
  return ok;
}

/* The reply to the command @expected (transfer full) awaited: for an
 * XADD of calls, the entry id Redis gave their batch, or a refusal. */
static void
take_send_reply (Io *io, Expected *expected, redisReply *reply, GError *refused)
{
  State *state = io->state;
  Batch *batch = expected != NULL ? expected->batch : NULL;

  if (expected != NULL && expected->audited != NULL)
    take_audit_reply (io, expected, reply, refused);
  if (batch != NULL)
    {
      g_mutex_lock (&state->mutex);
      batch->awaiting = FALSE;
      if (reply != NULL && reply->type == REDIS_REPLY_STRING && batch->entry_id == NULL)
        batch->entry_id = g_strdup (reply->str);
      g_mutex_unlock (&state->mutex);
      for (guint i = 0; refused != NULL && i < expected->call_ids->len; i++)
        take_refused (io, batch, expected->call_ids->pdata[i], refused);
    }
  if (expected != NULL)
    expected_free (expected);
}

/* Takes the replies read on the send connection. FALSE when it is lost. */
static gboolean
take_send_replies (Io *io, GError **error)
{
  for (;;)
    {
      redisReply *reply;
      GError *refused = NULL;

      switch (sluice_redis_take_reply (io->send, &reply, &refused))
        {
        case SLUICE_REDIS_TAKE_NONE:
          return TRUE;
        case SLUICE_REDIS_TAKE_BROKEN:
          g_propagate_error (error, refused);
          return FALSE;
        default:
          break;
        }
      if (((Expected *) g_queue_peek_head (&io->expected))->renewal && reply != NULL &&
          reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
        {
          /* The reply stream was gone. */
          if (!append_make_reply_stream (io->state, io->send, io->reply_ttl_ms, io->last_id, error))
            return FALSE;
          expect (io, NULL);
          expect (io, NULL);
          reply_stream_lost (io->state);
        }
      take_send_reply (io, g_queue_pop_head (&io->expected), reply, refused);
      g_clear_error (&refused);
      if (reply != NULL)
        freeReplyObject (reply);
    }
}

/* Calls Redis refused for a while wait first in line, in to_send (where a
 * cancel or a timeout withdraws them: they are skipped, see
 * take_to_send_locked ()), and nothing is sent for a pause. */
static void
send_later (State *state, GPtrArray *retry)
{
  GPtrArray *tasks = g_ptr_array_new_with_free_func (g_object_unref);

  g_mutex_lock (&state->mutex);
  for (guint i = retry->len; i-- > 0;)
    {
      /* Closed meanwhile: nothing is sent any more. */
      if (state->closed)
        g_ptr_array_add (tasks, retry->pdata[i]);
      else
        g_queue_push_head (&state->to_send, retry->pdata[i]);
    }
  if (retry->len > 0)
    state->resume_at = g_get_monotonic_time () + TRANSIENT_WAIT_MS * G_TIME_SPAN_MILLISECOND;
  g_ptr_array_set_free_func (retry, NULL);
  g_ptr_array_set_size (retry, 0);
  g_ptr_array_set_free_func (retry, g_object_unref);
  g_mutex_unlock (&state->mutex);
  /* Refused calls left the flights: the worker may be idle now. */
  give_back (state, tasks);
}

/* Deletes the entries of the calls withdrawn (cancelled, timed out, given
 * back) from their streams, where no remote worker has read them yet, and
 * tells the remote workers of the calls cancelled (a cancel entry in the
 * control stream), so that one running it cancels its function's
 * GCancellable. Best effort: a result that comes anyway is dropped. A
 * call whose XADD's reply has not been read yet waits for it (its entry
 * id). */
static gboolean
withdraw (Io *io, GError **error)
{
  State *state = io->state;
  GPtrArray *flights, *cancelled = take_cancelled (state);
  GPtrArray *entries = g_ptr_array_new (); /* of Flight (in flights) */
  gboolean ok = TRUE;

  g_mutex_lock (&state->mutex);
  flights = g_steal_pointer (&state->withdraw);
  state->withdraw = g_ptr_array_new_with_free_func (flight_free);
  for (guint i = 0; i < flights->len; i++)
    {
      Flight *flight = flights->pdata[i];

      if (flight->batch->awaiting)
        {
          g_ptr_array_add (state->withdraw, flight);
          flights->pdata[i] = NULL;
        }
      /* An entry with other calls still in flight stays; one whose
       * calls all left goes once. */
      else if (flight->batch->entry_id != NULL && flight->batch->n_open == 0 &&
               flight->batch->n_calls > 0)
        {
          flight->batch->n_calls = 0;
          g_ptr_array_add (entries, flight);
        }
    }
  g_mutex_unlock (&state->mutex);

  for (guint i = 0; i < entries->len && ok; i++)
    {
      Flight *flight = entries->pdata[i];
      SluiceRedisArgs args;

      sluice_redis_args_init (&args);
      sluice_redis_args_add (&args, "XDEL");
      sluice_redis_args_add (&args, flight->stream);
      sluice_redis_args_add (&args, flight->batch->entry_id);
      ok = append (io, &args, NULL, error);
    }
  for (guint i = 0; i < cancelled->len && ok; i++)
    {
      SluiceRedisArgs args;

      sluice_redis_args_init (&args);
      sluice_redis_args_add (&args, "XADD");
      sluice_redis_args_add (&args, SLUICE_REDIS_CONTROL_STREAM);
      sluice_redis_args_add (&args, "MAXLEN");
      sluice_redis_args_add (&args, "~");
      sluice_redis_args_add (&args, SLUICE_REDIS_CONTROL_MAXLEN);
      sluice_redis_args_add (&args, "*");
      sluice_redis_args_add (&args, "cancel");
      sluice_redis_args_add (&args, cancelled->pdata[i]);
      ok = append (io, &args, NULL, error);
    }
  g_ptr_array_unref (entries);
  g_ptr_array_unref (flights);
  g_ptr_array_unref (cancelled);
  return ok;
}

/* Puts @task (transfer full) in flight, in @batch: in the table first,
 * as its result can come at once, and whatever happens, so that a lost
 * connection gives it back. Returns its call (SLUICE_REDIS_CALLS_TYPE's
 * element, floating). */
static GVariant *
flight_new (Io *io, Batch *batch, SluiceWorkerTask *task)
{
  State *state = io->state;
  guint64 seq = sluice_worker_task_get_sequence (task);
  Flight *flight = g_new0 (Flight, 1);
  GVariant *wire = sluice_redis_value_to_wire (sluice_worker_task_get_args (task));
  GVariant *call;
  guint attempt;

  flight->id = call_id (state, task);
  flight->stream = sluice_redis_calls_stream (sluice_worker_task_get_series (task));
  /* Before it is in the table (where a reply may complete and free it),
   * outside the mutex (the handler runs now if it is cancelled already:
   * it sees the task and the I/O thread takes it out later). */
  flight->state = state;
  flight->task = task;
  flight->epoch = io->epoch;
  flight->batch = g_rc_box_acquire (batch);
  flight->cancellable = g_object_ref (sluice_worker_task_get_cancellable (task));
  flight->cancelled_id =
      g_cancellable_connect (flight->cancellable, G_CALLBACK (task_cancelled_cb), flight, NULL);

  g_mutex_lock (&state->mutex);
  attempt = GPOINTER_TO_UINT (g_hash_table_lookup (state->attempts, &seq)) + 1;
  g_hash_table_insert (state->attempts, g_memdup2 (&seq, sizeof seq), GUINT_TO_POINTER (attempt));
  g_hash_table_insert (state->in_flight, g_strdup (flight->id), flight);
  batch->n_open++;
  batch->n_calls++;
  batch->size++;
  prune_attempts_locked (state);
  state->n_sent++;
  g_mutex_unlock (&state->mutex);

  /* (tssayu), built from its members: cheaper than from a format string. */
  {
    GVariant *members[] = {
      g_variant_new_uint64 (seq),
      g_variant_new_string (sluice_worker_task_get_name (task)),
      g_variant_new_string (g_variant_get_type_string (wire)),
      g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, g_variant_get_data (wire),
                                 g_variant_get_size (wire), 1),
      g_variant_new_uint32 (attempt),
    };

    call = g_variant_new_tuple (members, G_N_ELEMENTS (members));
  }
  g_variant_unref (wire);
  return call;
}

/* Puts @n tasks of @tasks (transfer full), from @first, of one series, in
 * flight, and (if @send) appends one XADD of them all to the send
 * connection (version 3 of the protocol: `v`, `i` naming the first call,
 * `b` the calls). */
static gboolean
append_batch (Io *io, gboolean send, SluiceWorkerTask **tasks, guint n, GError **error)
{
  State *state = io->state;
  Batch *batch = g_rc_box_new0 (Batch);
  GPtrArray *ids = g_ptr_array_new_with_free_func (g_free);
  char *stream = sluice_redis_calls_stream (sluice_worker_task_get_series (tasks[0]));
  GVariantBuilder builder;
  GVariant *calls;
  SluiceRedisArgs args;

  g_variant_builder_init (&builder, G_VARIANT_TYPE (SLUICE_REDIS_CALLS_TYPE));
  for (guint i = 0; i < n; i++)
    {
      g_ptr_array_add (ids, call_id (state, tasks[i]));
      g_variant_builder_add_value (&builder, flight_new (io, batch, tasks[i]));
    }
  calls = g_variant_ref_sink (g_variant_builder_end (&builder));
  batch->stream = g_strdup (stream);
  batch->serial = io->n_batches++;
  g_mutex_lock (&state->mutex);
  state->n_entries++;
  g_mutex_unlock (&state->mutex);
  if (send)
    {
      sluice_redis_args_init_batch (&args, stream, FALSE, "i", ids->pdata[0], calls);
      send = append (io, &args, g_steal_pointer (&ids), error);
    }
  if (send)
    {
      /* Its reply, the batch's entry id, is awaited. */
      ((Expected *) g_queue_peek_tail (&io->expected))->batch = g_rc_box_acquire (batch);
      g_mutex_lock (&state->mutex);
      batch->awaiting = TRUE;
      g_mutex_unlock (&state->mutex);
    }
  batch_release (batch);
  g_variant_unref (calls);
  g_clear_pointer (&ids, g_ptr_array_unref);
  g_free (stream);
  return send;
}

/* Sends @tasks (transfer full) in entries of one series each, of at most
 * max_per_entry calls and SLUICE_REDIS_MAX_ENTRY_BYTES (unless one call
 * alone is larger). */
static gboolean
append_sends (Io *io, gboolean ok, GPtrArray *tasks, GError **error)
{
  State *state = io->state;
  GPtrArray *series = g_ptr_array_new ();

  for (guint i = 0; i < tasks->len; i++)
    {
      const char *name = sluice_worker_task_get_series (tasks->pdata[i]);
      guint j = 0;

      while (j < series->len && g_strcmp0 (series->pdata[j], name) != 0)
        j++;
      if (j == series->len)
        g_ptr_array_add (series, (gpointer) name);
    }
  for (guint k = 0; k < series->len; k++)
    {
      GPtrArray *group = g_ptr_array_new ();
      gsize bytes = 0;

      for (guint i = 0; i <= tasks->len; i++)
        {
          SluiceWorkerTask *task = i < tasks->len ? tasks->pdata[i] : NULL;
          gsize size = task != NULL ? g_variant_get_size (sluice_worker_task_get_args (task)) : 0;

          if (task != NULL &&
              g_strcmp0 (sluice_worker_task_get_series (task), series->pdata[k]) != 0)
            continue;
          if (group->len > 0 && (task == NULL || group->len == state->max_per_entry ||
                                 bytes + size > SLUICE_REDIS_MAX_ENTRY_BYTES))
            {
              ok = append_batch (io, ok, (SluiceWorkerTask **) group->pdata, group->len, error) &&
                   ok;
              g_ptr_array_set_size (group, 0);
              bytes = 0;
            }
          if (task != NULL)
            {
              g_ptr_array_add (group, g_object_ref (task));
              bytes += size;
            }
        }
      g_ptr_array_unref (group);
    }
  g_ptr_array_unref (series);
  return ok;
}

/* Whether a withdrawn call's entry id is known (or it is not in Redis). */
static gboolean
withdraw_ready_locked (State *state)
{
  for (guint i = 0; i < state->withdraw->len; i++)
    if (!((Flight *) state->withdraw->pdata[i])->batch->awaiting)
      return TRUE;
  return FALSE;
}

/* Whether there is something to do at once: calls to send (once the
 * pause after a refusal is over), entries to withdraw, calls cancelled,
 * or closing. */
static gboolean
has_work_locked (State *state, gint64 now)
{
  return state->closed || state->cancelled->len > 0 ||
         (state->withdraw->len > 0 && withdraw_ready_locked (state)) ||
         (!g_queue_is_empty (&state->to_send) && now >= state->resume_at);
}

/* Takes what waits to be sent into @tasks (unless Redis refused calls a
 * moment ago), and the calls no longer wanted (cancelled or timed out
 * while they waited) into @unwanted, to give back without sending them. */
static void
take_to_send_locked (State *state, GPtrArray *tasks, GPtrArray *unwanted)
{
  SluiceWorkerTask *task;

  if (g_get_monotonic_time () < state->resume_at)
    return;
  while (tasks->len < MAX_SEND_BATCH && (task = g_queue_pop_head (&state->to_send)) != NULL)
    {
      if (sluice_worker_task_is_wanted (task))
        g_ptr_array_add (tasks, task);
      else
        {
          forget_attempts_locked (state, task);
          g_ptr_array_add (unwanted, task);
        }
    }
}

/* Renews the time to live of the reply stream every third of it (or at
 * once when it was changed). */
static gboolean
renew_reply_stream (Io *io, GError **error)
{
  State *state = io->state;
  gint64 now = g_get_monotonic_time ();
  SluiceRedisArgs args;
  gboolean changed;

  g_mutex_lock (&state->mutex);
  changed = state->reply_ttl_changed;
  state->reply_ttl_changed = FALSE;
  io->reply_ttl_ms = state->reply_ttl_ms;
  g_mutex_unlock (&state->mutex);
  /* The entries are checked at the new interval from now on. */
  if (changed)
    io->next_audit_us = 0;
  if (!changed && (io->reply_ttl_ms == 0 || now < io->next_renewal_us))
    return TRUE;
  io->next_renewal_us = now + (gint64) io->reply_ttl_ms * G_TIME_SPAN_MILLISECOND / 3;
  sluice_redis_args_init (&args);
  sluice_redis_args_add (&args, io->reply_ttl_ms > 0 ? "PEXPIRE" : "PERSIST");
  sluice_redis_args_add (&args, state->reply_stream);
  if (io->reply_ttl_ms > 0)
    sluice_redis_args_add_printf (&args, "%u", io->reply_ttl_ms);
  if (!append (io, &args, NULL, error))
    return FALSE;
  ((Expected *) g_queue_peek_tail (&io->expected))->renewal = io->reply_ttl_ms > 0;
  return TRUE;
}

/* Fails the call of @task if its arguments are larger
 * than Redis takes in one value (which would make Redis close the
 * connection, again at each attempt): TRUE then. */
static gboolean
fail_if_too_large (State *state, SluiceWorkerTask *task)
{
  gsize size = g_variant_get_size (sluice_worker_task_get_args (task));
  guint64 max_bulk;
  GError *error;

  g_mutex_lock (&state->mutex);
  max_bulk = state->max_bulk;
  if (max_bulk == 0 || size <= max_bulk)
    {
      g_mutex_unlock (&state->mutex);
      return FALSE;
    }
  forget_attempts_locked (state, task);
  g_mutex_unlock (&state->mutex);
  error = g_error_new (G_IO_ERROR, G_IO_ERROR_MESSAGE_TOO_LARGE,
                       _ ("The arguments of “%s” take %llu bytes, more than Redis takes in one "
                          "value (proto-max-bulk-len %llu)"),
                       sluice_worker_task_get_name (task), (unsigned long long) size,
                       (unsigned long long) max_bulk);
  sluice_worker_task_return_error (task, error);
  g_error_free (error);
  return TRUE;
}

/* Sends what waits: withdrawals, cancels, calls. FALSE when the send
 * connection is lost. */
static gboolean
send_pending (Io *io, GError **error)
{
  State *state = io->state;
  GPtrArray *tasks = g_ptr_array_new_with_free_func (g_object_unref);
  GPtrArray *unwanted = g_ptr_array_new_with_free_func (g_object_unref);
  gboolean ok, trim;

  g_mutex_lock (&state->mutex);
  take_to_send_locked (state, tasks, unwanted);
  g_mutex_unlock (&state->mutex);
  give_back (state, unwanted);

  ok = withdraw (io, error);
  /* Each in flight, sent or not: a lost connection gives them back. */
  for (guint i = tasks->len; i > 0; i--)
    if (fail_if_too_large (state, tasks->pdata[i - 1]))
      g_ptr_array_remove_index (tasks, i - 1);
  ok = append_sends (io, ok, tasks, error);
  if (ok)
    ok = renew_reply_stream (io, error);
  if (ok)
    ok = audit (io, error);
  trim = io->n_untrimmed >= REPLY_TRIM_EVERY;
  if (ok && io->n_untrimmed > 0 && io->n_untrimmed < REPLY_TRIM_EVERY)
    {
      g_mutex_lock (&state->mutex);
      trim = g_hash_table_size (state->in_flight) == 0;
      g_mutex_unlock (&state->mutex);
    }
  if (ok && trim)
    {
      SluiceRedisArgs args;

      /* The answers read leave Redis (all before the last one read): now
       * and then, or once no call is in flight. */
      sluice_redis_args_init (&args);
      sluice_redis_args_add (&args, "XTRIM");
      sluice_redis_args_add (&args, state->reply_stream);
      sluice_redis_args_add (&args, "MINID");
      sluice_redis_args_add (&args, io->last_id);
      ok = append (io, &args, NULL, error);
      if (ok)
        io->n_untrimmed = 0;
    }
  if (ok)
    ok = sluice_redis_flush (io->send, error);
  g_ptr_array_unref (tasks);
  return ok;
}

/* The results of an XREAD, to complete under one lock of their queue. */
typedef struct
{
  GPtrArray *flights, *tasks, *results, *errors;
} Completions;

/* The answer of the call @seq (@deliveries, @value or @error: transfer
 * full): completes it if it is held, else dropped. Returns its flight
 * (or NULL when dropped). */
static Flight *
answer_call (
    Io *io, Completions *done, guint64 seq, guint64 deliveries, GVariant *value, GError *error)
{
  State *state = io->state;
  char *id = g_strdup_printf ("%s:%" G_GUINT64_FORMAT, state->client_id, seq);
  Flight *flight = NULL;

  g_mutex_lock (&state->mutex);
  if (steal_flight (state, id, &flight))
    {
      state->n_results++;
      if (deliveries > 1)
        state->n_redelivered++;
      g_hash_table_remove (state->attempts, &seq);
    }
  else
    state->n_duplicates++;
  g_mutex_unlock (&state->mutex);
  g_free (id);
  if (flight == NULL)
    {
      g_clear_pointer (&value, g_variant_unref);
      g_clear_error (&error);
      return NULL;
    }
  g_ptr_array_add (done->flights, flight);
  g_ptr_array_add (done->tasks, flight->task);
  g_ptr_array_add (done->results, value);
  g_ptr_array_add (done->errors, error);
  return flight;
}

/* The answers of a version 3 entry (`b`); a malformed one fails its call. */
static void
take_batched_answers (Io *io, Completions *done, GHashTable *fields)
{
  GVariant *answers =
      sluice_redis_wire_to_value (SLUICE_REDIS_ANSWERS_TYPE, g_hash_table_lookup (fields, "b"));
  gsize n = answers != NULL ? g_variant_n_children (answers) : 0;

  for (gsize k = 0; k < n; k++)
    {
      /* (seq, deliveries, type, data, domain, code, message): the code
       * and message only for an error. */
      GVariant *answer = g_variant_get_child_value (answers, k), *m[5], *error_m[2];
      const char *domain;
      GVariant *value = NULL;
      GError *error = NULL;

      sluice_redis_tuple_members (answer, 0, 5, m);
      domain = g_variant_get_string (m[4], NULL);
      if (domain[0] != '\0')
        {
          sluice_redis_tuple_members (answer, 5, 2, error_m);
          error =
              g_error_new_literal (g_quark_from_string (domain), g_variant_get_int32 (error_m[0]),
                                   g_variant_get_string (error_m[1], NULL));
          sluice_redis_members_clear (error_m, 2);
        }
      else
        value =
            sluice_redis_value_new (g_variant_get_string (m[2], NULL), g_variant_get_data (m[3]),
                                    g_variant_get_size (m[3]), &error);
      answer_call (io, done, g_variant_get_uint64 (m[0]), g_variant_get_uint32 (m[1]), value,
                   error);
      sluice_redis_members_clear (m, 5);
      g_variant_unref (answer);
    }
  g_clear_pointer (&answers, g_variant_unref);
}

/* A remote worker of version 2 answers a batch (version 3) with its error
 * about the version, to the batch's first call: the batch's other calls
 * fail with it too. */
static void
fail_batch (Io *io, Completions *done, Flight *first, const GError *error)
{
  State *state = io->state;
  GArray *others = g_array_new (FALSE, FALSE, sizeof (guint64));
  GHashTableIter iter;
  gpointer value;

  g_mutex_lock (&state->mutex);
  g_hash_table_iter_init (&iter, state->in_flight);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    if (((Flight *) value)->batch == first->batch)
      {
        guint64 seq = sluice_worker_task_get_sequence (((Flight *) value)->task);

        g_array_append_val (others, seq);
      }
  g_mutex_unlock (&state->mutex);
  for (guint i = 0; i < others->len; i++)
    answer_call (io, done, g_array_index (others, guint64, i), 1, NULL, g_error_copy (error));
  g_array_unref (others);
}

/* Completes the calls of the answers of an XREAD, under one lock of their
 * queue, or drops the answers. */
static void
take_answers (Io *io, redisReply *entries)
{
  State *state = io->state;
  Completions done = { g_ptr_array_new (), g_ptr_array_new (), g_ptr_array_new (),
                       g_ptr_array_new () };
  GPtrArray *waiters;

  for (size_t i = 0; i < entries->elements; i++)
    {
      redisReply *entry = entries->element[i];
      GHashTable *fields = sluice_redis_entry_fields (entry);
      const char *seq = fields != NULL ? sluice_redis_field (fields, "i", NULL) : NULL;
      const char *deliveries = fields != NULL ? sluice_redis_field (fields, "d", NULL) : NULL;

      if (entry->type == REDIS_REPLY_ARRAY && entry->elements == 2 &&
          entry->element[0]->type == REDIS_REPLY_STRING)
        {
          g_free (io->last_id);
          io->last_id = g_strdup (entry->element[0]->str);
          io->n_untrimmed++;
        }
      if (fields != NULL && g_hash_table_contains (fields, "b"))
        take_batched_answers (io, &done, fields);
      else if (seq != NULL)
        {
          /* Version 2: one answer. */
          GError *error = NULL;
          GVariant *value = NULL;
          Flight *flight;

          if (sluice_redis_field (fields, "t", NULL) != NULL)
            value = sluice_redis_fields_get_value (fields, "t", "r", &error);
          else
            error = sluice_redis_fields_get_error (fields);
          flight = answer_call (io, &done, g_ascii_strtoull (seq, NULL, 10),
                                deliveries != NULL ? g_ascii_strtoull (deliveries, NULL, 10) : 1,
                                value, error);
          if (flight != NULL && flight->batch->size > 1 && done.errors->pdata[done.errors->len - 1])
            fail_batch (io, &done, flight, done.errors->pdata[done.errors->len - 1]);
        }
      else
        {
          g_mutex_lock (&state->mutex);
          state->n_duplicates++;
          g_mutex_unlock (&state->mutex);
        }
      if (fields != NULL)
        g_hash_table_unref (fields);
    }
  if (done.tasks->len > 0)
    sluice_calls_tasks_completed ((SluiceWorkerTask **) done.tasks->pdata,
                                  (GVariant **) done.results->pdata, (GError **) done.errors->pdata,
                                  done.tasks->len, FALSE);
  g_ptr_array_set_free_func (done.flights, flight_free);
  g_ptr_array_unref (done.flights);
  g_ptr_array_unref (done.tasks);
  g_ptr_array_unref (done.results);
  g_ptr_array_unref (done.errors);

  g_mutex_lock (&state->mutex);
  waiters = take_stop_waiters_if_idle_locked (state);
  g_mutex_unlock (&state->mutex);
  sluice_worker_complete_stop_waiters (waiters);
}

/* Takes the replies read on the read connection (its XREAD's). FALSE when
 * it is lost. */
static gboolean
take_read_replies (Io *io, GError **error)
{
  for (;;)
    {
      redisReply *reply, *entries;
      GError *refused = NULL;

      switch (sluice_redis_take_reply (io->read, &reply, &refused))
        {
        case SLUICE_REDIS_TAKE_NONE:
          return TRUE;
        case SLUICE_REDIS_TAKE_BROKEN:
          g_propagate_error (error, refused);
          return FALSE;
        case SLUICE_REDIS_TAKE_REFUSED:
          /* Redis is loading its data after a restart: wait. */
          io->reading = FALSE;
          io->reads_done++;
          if (!sluice_redis_error_is_transient (refused))
            g_message ("Reading the answers: %s", refused->message);
          io->read_resume_us =
              g_get_monotonic_time () + TRANSIENT_WAIT_MS * G_TIME_SPAN_MILLISECOND;
          g_error_free (refused);
          continue;
        default:
          break;
        }
      io->reading = FALSE;
      io->reads_done++;
      entries = sluice_redis_xread_entries (reply);
      if (entries != NULL)
        take_answers (io, entries);
      /* Fewer than its COUNT: every answer there was when it ran. */
      if (entries == NULL || entries->elements < SLUICE_REDIS_XREAD_COUNT)
        io->caught_up = io->reads_done;
      freeReplyObject (reply);
    }
}

/* Sends the next XREAD, unless one is pending (or Redis was loading). */
static gboolean
read_next (Io *io, gint64 now, GError **error)
{
  SluiceRedisArgs args;

  if (io->reading || now < io->read_resume_us)
    return TRUE;
  sluice_redis_args_init_xread (&args, io->state->reply_stream, io->last_id, READ_BLOCK_MS);
  if (!sluice_redis_args_append (&args, io->read, error) || !sluice_redis_flush (io->read, error))
    return FALSE;
  io->reading = TRUE;
  io->reads_sent++;
  return TRUE;
}

/* A connection of @io was lost: connects it again (see lost ()); FALSE
 * when the worker resigned. */
static gboolean
io_lost (Io *io, gboolean send, GError *error)
{
  if (send)
    {
      /* The replies awaited will not come: the calls whose XADD they
       * answer may not be in Redis (connected_to () gives them back), and
       * the entry ids of their batches stay unknown. */
      expected_clear (io);
      return lost (io->state, &io->send, "send", &io->epoch, io->last_id, error);
    }
  io->reading = FALSE;
  /* The XREAD pending, if any, is never answered. */
  io->reads_sent = io->reads_done;
  return lost (io->state, &io->read, "read", &io->epoch, io->last_id, error);
}

/* Waits in poll () for the connections, the wake-up of another thread, or
 * the next deadline. */
static void
io_poll (Io *io)
{
  State *state = io->state;
  gint64 now = g_get_monotonic_time (), until = now + G_TIME_SPAN_SECOND;
  struct pollfd fds[3] = {
    { .fd = state->wake_fd, .events = POLLIN },
    { .fd = io->send->fd, .events = POLLRDHUP },
    { .fd = io->read->fd, .events = POLLIN },
  };
  gboolean wait;

  io->send_ready = io->read_ready = FALSE;
  if (sluice_redis_has_output (io->send))
    fds[1].events |= POLLOUT;
  if (sluice_redis_has_output (io->read))
    fds[2].events |= POLLOUT;
  if (!io->reading)
    until = MIN (until, io->read_resume_us);
  if (io->reply_ttl_ms > 0)
    until = MIN (until, io->next_renewal_us);

  g_mutex_lock (&state->mutex);
  if (!g_queue_is_empty (&io->expected))
    {
      gint64 due = ((Expected *) g_queue_peek_head (&io->expected))->sent_us + SEND_REPLY_DELAY_US;

      /* The replies are wanted now when they are due, or hold the entry
       * ids of calls to withdraw. */
      if (now >= due || state->withdraw->len > 0)
        fds[1].events |= POLLIN;
      else
        until = MIN (until, due);
    }
  if (!g_queue_is_empty (&state->to_send) && now < state->resume_at)
    until = MIN (until, state->resume_at);
  wait = !has_work_locked (state, now) && !state->reply_ttl_changed;
  state->io_polling = wait;
  g_mutex_unlock (&state->mutex);
  if (!wait)
    return;

  sluice_redis_poll (fds, G_N_ELEMENTS (fds), until, &state->mutex, &state->io_polling,
                     &state->io_woken);
  io->send_ready = fds[1].revents != 0;
  io->read_ready = fds[2].revents != 0;
}

/* One round of the I/O thread: sends, reads, waits. FALSE when the worker
 * resigned. */
static gboolean
io_round (Io *io)
{
  GError *error = NULL;
  gint64 now = g_get_monotonic_time ();

  /* Whatever came (the replies on send also when it woke for answers:
   * they are there by then, no wake-up of their own), and what waits:
   * answers, calls, refusals. */
  if (io->read_ready &&
      (!sluice_redis_read_some (io->read, &error) || !take_read_replies (io, &error)))
    return io_lost (io, FALSE, error);
  if ((io->send_ready || (io->read_ready && !g_queue_is_empty (&io->expected))) &&
      (!sluice_redis_read_some (io->send, &error) || !take_send_replies (io, &error)))
    return io_lost (io, TRUE, error);
  if (io->retry->len > 0)
    send_later (io->state, io->retry);
  if (!send_pending (io, &error))
    return io_lost (io, TRUE, error);
  if (!read_next (io, now, &error) || !sluice_redis_flush (io->read, &error))
    return io_lost (io, FALSE, error);
  io_poll (io);
  return TRUE;
}

static gpointer
io_main (gpointer data)
{
  State *state = data;
  GError *error = NULL;
  Io io = { .state = state, .last_id = g_strdup ("0-0"), .read_ready = TRUE };
  sigset_t pipe_set;

  /* Writes to a connection Redis closed must not raise SIGPIPE: this
   * thread's connections are its only writers. */
  sigemptyset (&pipe_set);
  sigaddset (&pipe_set, SIGPIPE);
  pthread_sigmask (SIG_BLOCK, &pipe_set, NULL);

  g_queue_init (&io.expected);
  io.retry = g_ptr_array_new_with_free_func (g_object_unref);
  io.send = connect_role (state, "send", TRUE, 0, &io.epoch, io.last_id, &error);
  io.read =
      io.send != NULL ? connect_role (state, "read", TRUE, 0, &io.epoch, io.last_id, &error) : NULL;
  if (io.read == NULL)
    fail (state, g_steal_pointer (&error));

  while (io.read != NULL && io.send != NULL && !g_atomic_int_get (&state->closed))
    if (!io_round (&io))
      break;

  /* Closed: the replies awaited (the entry ids of the calls to withdraw),
   * the withdrawals, and the reply stream deleted, blocking. */
  if (io.send != NULL)
    {
      SluiceRedisArgs args;
      redisReply *reply;

      sluice_redis_set_nonblocking (io.send, FALSE);
      while (!g_queue_is_empty (&io.expected) && sluice_redis_connected (io.send))
        {
          GError *refused = NULL;

          reply = sluice_redis_get_reply (io.send, &refused);
          if (reply == NULL && !sluice_redis_connected (io.send))
            {
              g_clear_error (&refused);
              break;
            }
          take_send_reply (&io, g_queue_pop_head (&io.expected), reply, refused);
          g_clear_error (&refused);
          if (reply != NULL)
            freeReplyObject (reply);
        }
      expected_clear (&io);
      if (sluice_redis_connected (io.send) && withdraw (&io, NULL))
        {
          sluice_redis_args_init (&args);
          sluice_redis_args_add (&args, "DEL");
          sluice_redis_args_add (&args, state->reply_stream);
          if (append (&io, &args, NULL, NULL))
            for (guint n = g_queue_get_length (&io.expected); n > 0; n--)
              {
                reply = sluice_redis_get_reply (io.send, NULL);
                if (reply == NULL && !sluice_redis_connected (io.send))
                  break;
                if (reply != NULL)
                  freeReplyObject (reply);
              }
        }
      expected_clear (&io);
      redisFree (io.send);
    }
  if (io.read != NULL)
    redisFree (io.read);
  /* Refused calls not sent again go back. */
  send_later (state, io.retry);
  g_ptr_array_unref (io.retry);
  g_free (io.last_id);
  state_unref (state);
  return NULL;
}

static void
sluice_redis_worker_run_task (SluiceWorker *worker, SluiceWorkerTask *task)
{
  State *state = SLUICE_REDIS_WORKER (worker)->state;

  g_mutex_lock (&state->mutex);
  if (state->closed || state->stopping)
    {
      g_mutex_unlock (&state->mutex);
      sluice_worker_task_give_back (task, TRUE);
      return;
    }
  g_queue_push_tail (&state->to_send, g_object_ref (task));
  wake_io_locked (state);
  g_mutex_unlock (&state->mutex);
}

static char **
sluice_redis_worker_get_series (SluiceWorker *worker)
{
  return g_strdupv (SLUICE_REDIS_WORKER (worker)->series);
}

static guint
sluice_redis_worker_get_capacity (SluiceWorker *worker)
{
  return SLUICE_REDIS_WORKER (worker)->max_in_flight;
}

static void
sluice_redis_worker_stop_async (SluiceWorker *worker,
                                GCancellable *cancellable,
                                GAsyncReadyCallback callback,
                                gpointer user_data)
{
  State *state = SLUICE_REDIS_WORKER (worker)->state;
  GTask *task = g_task_new (worker, cancellable, callback, user_data);
  GPtrArray *waiters;

  g_task_set_source_tag (task, sluice_redis_worker_stop_async);
  g_mutex_lock (&state->mutex);
  state->stopping = TRUE;
  g_ptr_array_add (state->stop_waiters, task);
  waiters = take_stop_waiters_if_idle_locked (state);
  g_mutex_unlock (&state->mutex);
  sluice_worker_complete_stop_waiters (waiters);
}

static gboolean
sluice_redis_worker_stop_finish (SluiceWorker *worker, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, worker), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

static GPtrArray *
sluice_redis_worker_crash (SluiceWorker *worker)
{
  State *state = SLUICE_REDIS_WORKER (worker)->state;
  GPtrArray *tasks, *waiters;

  g_mutex_lock (&state->mutex);
  tasks = close_locked (state);
  waiters = take_stop_waiters_if_idle_locked (state);
  g_mutex_unlock (&state->mutex);
  sluice_worker_complete_stop_waiters (waiters);
  return tasks;
}

static void
sluice_redis_worker_task_timed_out (SluiceWorker *worker, SluiceWorkerTask *task)
{
  State *state = SLUICE_REDIS_WORKER (worker)->state;
  char *id = call_id (state, task);
  Flight *flight = NULL;
  GPtrArray *waiters;

  /* Withdrawn from its stream if no one has read it yet; a result that
   * comes anyway is dropped. */
  g_mutex_lock (&state->mutex);
  if (steal_flight (state, id, &flight))
    {
      SluiceWorkerTask *held = g_steal_pointer (&flight->task);

      forget_attempts_locked (state, held);
      g_ptr_array_add (state->withdraw, flight);
      wake_io_locked (state);
      g_mutex_unlock (&state->mutex);
      sluice_worker_task_give_back (held, FALSE);
      g_object_unref (held);
      g_mutex_lock (&state->mutex);
    }
  waiters = take_stop_waiters_if_idle_locked (state);
  g_mutex_unlock (&state->mutex);
  sluice_worker_complete_stop_waiters (waiters);
  g_free (id);
}

static void
sluice_redis_worker_iface_init (SluiceWorkerInterface *iface)
{
  iface->get_series = sluice_redis_worker_get_series;
  iface->get_capacity = sluice_redis_worker_get_capacity;
  iface->run_task = sluice_redis_worker_run_task;
  iface->stop_async = sluice_redis_worker_stop_async;
  iface->stop_finish = sluice_redis_worker_stop_finish;
  iface->crash = sluice_redis_worker_crash;
  iface->task_timed_out = sluice_redis_worker_task_timed_out;
}

static void
sluice_redis_worker_finalize (GObject *object)
{
  SluiceRedisWorker *self = SLUICE_REDIS_WORKER (object);
  State *state = self->state;
  GPtrArray *tasks;

  g_mutex_lock (&state->mutex);
  tasks = close_locked (state);
  g_mutex_unlock (&state->mutex);
  give_back (state, tasks);

  /* The last reference may go in its thread (with a task it completes):
   * that one leaves by itself. */
  if (self->io == g_thread_self ())
    g_thread_unref (self->io);
  else if (self->io != NULL)
    g_thread_join (self->io);
  state_unref (state);
  g_strfreev (self->series);

  G_OBJECT_CLASS (sluice_redis_worker_parent_class)->finalize (object);
}

static void
sluice_redis_worker_class_init (SluiceRedisWorkerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = sluice_redis_worker_finalize;
}

static void
sluice_redis_worker_init (SluiceRedisWorker *self)
{
  State *state = g_atomic_rc_box_new0 (State);

  g_mutex_init (&state->mutex);
  state->wake_fd = eventfd (0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (state->wake_fd < 0)
    g_error ("eventfd: %s", g_strerror (errno));
  g_queue_init (&state->to_send);
  state->in_flight = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, flight_free);
  state->withdraw = g_ptr_array_new_with_free_func (flight_free);
  state->attempts = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, NULL);
  state->stop_waiters = g_ptr_array_new ();
  state->cancelled = g_ptr_array_new_with_free_func (g_free);
  state->reconnect_ms = DEFAULT_RECONNECT_MS;
  state->reply_ttl_ms = DEFAULT_REPLY_TTL_MS;
  g_weak_ref_init (&state->worker, self);
  self->state = state;
}

/**
 * sluice_redis_worker_new:
 * @endpoint: where Redis is: `redis://HOST:PORT/DB` (an optional
 *   `:PASSWORD@` before the host) or `unix:PATH`
 * @password: (nullable): the password of Redis (`AUTH`), or %NULL
 * @series: (nullable) (array zero-terminated=1): the series it serves
 *   besides the default one, or %NULL
 * @max_in_flight: how many calls it has in Redis at most (its capacity;
 *   at least 1)
 * @error: return location for an error
 *
 * Creates a worker whose calls run in remote processes serving its series
 * through Redis ([method@Sluice.WorkerService.serve_redis]), for a
 * [method@Sluice.TaskQueue.hire]. It connects at once, so an unreachable
 * server or a wrong password fail here (%G_IO_ERROR_CONNECTION_REFUSED,
 * %G_IO_ERROR_PERMISSION_DENIED), within 10 seconds.
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer full): a new Redis worker, or %NULL with @error set
 */
SluiceRedisWorker *
sluice_redis_worker_new (const char *endpoint,
                         const char *password,
                         const char *const *series,
                         guint max_in_flight,
                         GError **error)
{
  SluiceRedisEndpoint *ep;
  redisContext *c;
  SluiceRedisWorker *self;
  State *state;
  char host[64] = "";

  g_return_val_if_fail (endpoint != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  ep = sluice_redis_endpoint_parse (endpoint, password, error);
  if (ep == NULL)
    return NULL;
  c = sluice_redis_connect (ep, COMMAND_TIMEOUT_MS, error);
  if (c == NULL)
    {
      sluice_redis_endpoint_free (ep);
      return NULL;
    }
  redisFree (c);

  self = g_object_new (SLUICE_TYPE_REDIS_WORKER, NULL);
  self->series = g_strdupv ((char **) series);
  self->max_in_flight = MAX (max_in_flight, 1);
  state = self->state;
  state->max_tracked = 2 * self->max_in_flight + 256;
  /* A quarter of the window per entry, so that several remote workers
   * share the calls. */
  state->max_per_entry = CLAMP (self->max_in_flight / 4, 1, 64);
  state->endpoint = ep;
  gethostname (host, sizeof host - 1);
  state->client_id = g_strdup_printf ("%s.%d.%08x", host, (int) getpid (), g_random_int ());
  state->reply_stream = g_strconcat (SLUICE_REDIS_REPLIES_PREFIX, state->client_id, NULL);
  self->io = g_thread_new ("sluice-redis-io", io_main, g_atomic_rc_box_acquire (state));
  return self;
}

/**
 * sluice_redis_worker_get_client_id:
 * @self: a Redis worker
 *
 * Gets the name of @self in Redis: call ids are `CLIENT-ID:SEQUENCE`, and
 * its reply stream is `sluice:replies:CLIENT-ID`.
 *
 * This function is safe to call from any thread.
 *
 * Returns: the client id
 */
const char *
sluice_redis_worker_get_client_id (SluiceRedisWorker *self)
{
  g_return_val_if_fail (SLUICE_IS_REDIS_WORKER (self), NULL);

  return self->state->client_id;
}

/**
 * sluice_redis_worker_get_stats:
 * @self: a Redis worker
 *
 * Gets counters of @self, as a dictionary (`a{sv}`) of `t` values:
 * `sent` (calls added to a stream, each attempt), `entries` (the stream
 * entries they went in: several calls ready together go in one), `in-flight` (calls in
 * Redis now), `results` (calls completed with a result),
 * `redelivered` (results of calls a remote worker had reclaimed from
 * another, after its lease passed), `duplicates` (results dropped: a
 * call's second result, or a result of a call no longer held),
 * `reconnects` (connections lost and made again), `tracked` (calls
 * whose attempts it counts: those it holds, and some it gave back when a
 * connection was lost; at most twice `max-in-flight` plus 256 beyond
 * those it holds), `vanished` (calls sent again because their entry
 * vanished from Redis before a remote worker read it: deleted by hand,
 * or evicted), `checks` (times it checked that the entries of its calls
 * in flight are still in Redis: every third of the reply stream's time
 * to live while calls are in flight).
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer full): the counters, not floating (as every
 *   `get_stats` of the library): free them with g_variant_unref()
 */
GVariant *
sluice_redis_worker_get_stats (SluiceRedisWorker *self)
{
  State *state;
  GVariantBuilder builder;

  g_return_val_if_fail (SLUICE_IS_REDIS_WORKER (self), NULL);

  state = self->state;
  g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
  g_mutex_lock (&state->mutex);
  g_variant_builder_add (&builder, "{sv}", "sent", g_variant_new_uint64 (state->n_sent));
  g_variant_builder_add (&builder, "{sv}", "entries", g_variant_new_uint64 (state->n_entries));
  g_variant_builder_add (&builder, "{sv}", "in-flight",
                         g_variant_new_uint64 (g_hash_table_size (state->in_flight)));
  g_variant_builder_add (&builder, "{sv}", "results", g_variant_new_uint64 (state->n_results));
  g_variant_builder_add (&builder, "{sv}", "redelivered",
                         g_variant_new_uint64 (state->n_redelivered));
  g_variant_builder_add (&builder, "{sv}", "duplicates",
                         g_variant_new_uint64 (state->n_duplicates));
  g_variant_builder_add (&builder, "{sv}", "reconnects",
                         g_variant_new_uint64 (state->n_reconnects));
  g_variant_builder_add (&builder, "{sv}", "tracked",
                         g_variant_new_uint64 (g_hash_table_size (state->attempts)));
  g_variant_builder_add (&builder, "{sv}", "vanished", g_variant_new_uint64 (state->n_vanished));
  g_variant_builder_add (&builder, "{sv}", "checks", g_variant_new_uint64 (state->n_checks));
  g_mutex_unlock (&state->mutex);
  return g_variant_ref_sink (g_variant_builder_end (&builder));
}

/**
 * sluice_redis_worker_set_reconnect_timeout:
 * @self: a Redis worker
 * @timeout_ms: how long to try to connect again, in milliseconds; 0 to
 *   resign at once
 *
 * Sets how long @self tries to connect again when its connection to Redis
 * is lost (30 seconds by default), after 50 ms, 100 ms, ... up to every
 * second. Meanwhile the calls it had in Redis go back to its task queue
 * (which gives them to another worker or back to @self, where they wait to
 * be sent again), so a call may run twice: the first result is kept.
 * Past @timeout_ms it resigns ([signal@Sluice.Worker::resigned]).
 *
 * This function is safe to call from any thread.
 */
void
sluice_redis_worker_set_reconnect_timeout (SluiceRedisWorker *self, guint timeout_ms)
{
  g_return_if_fail (SLUICE_IS_REDIS_WORKER (self));

  g_mutex_lock (&self->state->mutex);
  self->state->reconnect_ms = timeout_ms;
  g_mutex_unlock (&self->state->mutex);
}

/**
 * sluice_redis_worker_set_reply_ttl:
 * @self: a Redis worker
 * @ttl_ms: the time to live of its reply stream, in milliseconds; 0 for
 *   none
 *
 * Sets the time to live of the reply stream of @self in Redis (60 seconds
 * by default), which it renews every third of that while it lives, so
 * that the stream of a producer that died (and did not delete it) expires.
 * Remote workers answer only to a reply stream that exists: an answer to a
 * producer that is gone is dropped. If @self could not renew it in time
 * (its connection was lost for longer), it makes the stream again and
 * sends the calls it had in Redis again. At the same interval (every
 * third of @ttl_ms, or of 60 seconds with none), @self checks that the
 * entries of its calls in flight are still in Redis: calls whose entry
 * vanished unread (deleted by hand, evicted) are sent again (`vanished`
 * in sluice_redis_worker_get_stats()).
 *
 * This function is safe to call from any thread.
 */
void
sluice_redis_worker_set_reply_ttl (SluiceRedisWorker *self, guint ttl_ms)
{
  g_return_if_fail (SLUICE_IS_REDIS_WORKER (self));

  g_mutex_lock (&self->state->mutex);
  self->state->reply_ttl_ms = ttl_ms;
  self->state->reply_ttl_changed = TRUE;
  wake_io_locked (self->state);
  g_mutex_unlock (&self->state->mutex);
}
