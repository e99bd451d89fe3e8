/* sluice-worker-service.c: the helper side of a process worker
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "sluice-private.h"

#include "sluice-function-registry-private.h"
#include "sluice-worker-dbus.h"
#include "sluice-worker-wire-private.h"

#include <gio/gunixinputstream.h>
#include <gio/gunixoutputstream.h>
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <unistd.h>

/**
 * SluiceWorkerService:
 *
 * The helper side of a [class@Sluice.ProcessWorker]: a helper program
 * registers named functions ([callback@Sluice.NamedFunc], the function
 * type a [class@Sluice.ThreadWorker] serves too) and serves them, in its
 * own threads, to the worker that started it.
 *
 * The protocol is D-Bus, peer to peer, over the helper's standard input
 * and output: the interface `org.sluice.Worker1` (its XML,
 * `src/org.sluice.Worker1.xml`, documents it) at the object path
 * `/org/sluice/Worker`. A helper's main function is typically:
 *
 * ```c
 * g_autoptr (SluiceWorkerService) service = sluice_worker_service_new (0);
 *
 * sluice_worker_service_register (service, "sum", "(ai)", sum, NULL, NULL);
 * if (!sluice_worker_service_run (service, &error))
 *   ...
 * ```
 *
 * A [class@Sluice.ProcessWorker] sends the calls that are ready in one
 * message (`CallMany`); the service runs them in its threads, in the
 * order they came, and sends each outcome at once (a `Results` signal),
 * unless a message is being sent: the outcomes of the calls that end
 * meanwhile go together in the next message. An outcome never waits for
 * calls still running, and batches grow with the load.
 *
 * A function's error crosses back to the caller with its domain and code
 * (as GDBus encodes errors it has no D-Bus name for), and its message.
 * Cancelling a call in the worker's process cancels the function's
 * [class@Gio.Cancellable] here. That cancellable is the function's only
 * while it runs: a thread's calls share one until it is cancelled, so a
 * function must not keep it (or a handler on it) after it returns.
 *
 * The `sluice-worker` tool is such a helper: it loads the functions from
 * modules given on its command line.
 */

#define WORKER_OBJECT_PATH "/org/sluice/Worker"
#define WORKER_INTERFACE "org.sluice.Worker1"

struct _SluiceWorkerService
{
  GObject parent_instance;

  guint n_threads;
  SluiceFunctionRegistry *registry;
  GThreadPool *pool; /* (nullable) created when it first serves */
  GMutex mutex;      /* for pool creation */
};

G_DEFINE_FINAL_TYPE (SluiceWorkerService, sluice_worker_service, G_TYPE_OBJECT)

/* One connection served.
 *
 * Calls wait in the connection's queue (@waiting) for a runner: a task of
 * the service's thread pool that runs calls of the queue one after the
 * other until it is empty. A batch of calls starts at most as many runners
 * as the pool has threads (one g_thread_pool_push () per runner, not per
 * call). A runner's cancellable serves call after call until one is
 * cancelled (then it makes a new one): no GCancellable per call.
 *
 * Outcomes of calls made with CallMany go out in Results signals, many in
 * one: an outcome goes into the outbox, and the flusher (a source on the
 * serving context) sends what the outbox holds, up to MAX_OUTCOMES a
 * message, again and again until it is empty. The outcomes of calls that
 * end while a message is being built and sent go together in the next
 * one. The flusher is woken at once, unless calls that came here wait
 * for a thread and number more than half the outcomes in the outbox: the
 * outcomes then wait for theirs (those calls are here: nothing waits for
 * calls that have not come), up to FLUSH_DELAY_US. That is two thirds of
 * what the helper held at a time when calls keep coming (the worker
 * refills while the last third runs), and every outcome at once when the
 * helper runs out of calls: a lone call is answered at once. Without it
 * (the flusher always woken at once: tried in session 10), 50 µs calls on
 * one thread went one outcome a message, and the worker's process spent
 * about a third more CPU per call. Session 12: waiting for two thirds
 * (was half) and up to 2 ms (was 1) took busy50 calls on one process
 * from 0.035-0.053 Results messages per call to 0.025-0.028 (load 18).
 * Session 15: up to 4 ms (was 2), with the worker's max-calls 128 (was
 * 64): busy50 calls on 2 processes from 0.054 to 0.032 Results messages
 * per call (medians of 5, load 6), the worker's process 7.3 -> 5.1 µs of
 * CPU per call, the helpers' threads other than the pool's 5.2 -> 3.6:
 * each message costs both ends tens of µs (wake-ups included) on the
 * loaded 2 cores, and the 2-process row is bound by their CPU. */

/* The most outcomes in one Results signal: a big message delays the
 * first outcome in it. */
#define MAX_OUTCOMES 256
/* How long an outcome may wait for those of the calls waiting behind it. */
#define FLUSH_DELAY_US 4000

typedef struct _Job Job;

/* A thread of the pool running the calls of a connection. */
typedef struct
{
  Job *job;                  /* the call it runs, or NULL */
  GCancellable *cancellable; /* (owned) (nullable) for its calls */
  gboolean spent;            /* @cancellable was (or is being) cancelled */
} Runner;

typedef struct
{
  gatomicrefcount ref;
  SluiceWorkerService *service; /* (owned) */
  GDBusConnection *connection;  /* (owned) (nullable) */
  GTask *task;                  /* (owned) until the connection closes */
  GMainContext *context;        /* (owned): where it is served */
  GSource *flusher;             /* (owned) (nullable): on @context */
  GMutex mutex;
  /* Under the mutex. */
  GQueue waiting;       /* of Job (owned): calls not started yet */
  GPtrArray *runners;   /* of Runner, in their threads' stacks */
  guint n_runners;      /* started, running or about to */
  GArray *outbox;       /* of Outcome */
  gboolean flushing;    /* the flusher is woken, or sends */
  gboolean flush_armed; /* the flusher is to wake within FLUSH_DELAY_US */
  gboolean closed;
  /* Counters, said at debug level when the connection closes. */
  guint64 n_calls;           /* calls that came in CallMany messages */
  guint64 n_call_messages;   /* those messages */
  guint64 n_outcomes;        /* their outcomes sent */
  guint64 n_result_messages; /* the Results messages that carried them */
  guint64 n_flusher_wakes;   /* the flusher woken by a runner (to send or arm) */

  guint filter_id;
  gulong closed_id;
} Served;

/* The outcome of a call of a CallMany, until it is sent. */
typedef struct
{
  guint64 id;
  GVariant *result; /* (owned) (nullable) */
  GError *error;    /* (owned) (nullable) */
} Outcome;

static void
outcome_clear (gpointer data)
{
  Outcome *outcome = data;

  g_clear_pointer (&outcome->result, g_variant_unref);
  g_clear_error (&outcome->error);
}

static GArray *
outbox_new (void)
{
  GArray *outbox = g_array_new (FALSE, FALSE, sizeof (Outcome));

  g_array_set_clear_func (outbox, outcome_clear);
  return outbox;
}

/* One call, waiting in its connection's queue, then run by a runner. */
struct _Job
{
  GList link;            /* in Served.waiting */
  GDBusMessage *message; /* (owned) (nullable): a Call, to reply to; NULL
                          * for one of a CallMany */
  guint64 id;
  char *name;
  GVariant *args;
  gboolean cancelled; /* a Cancel came before it started */
};

static void
job_free (Job *job)
{
  g_clear_object (&job->message);
  g_variant_unref (job->args);
  g_free (job->name);
  g_free (job);
}

/* Frees the jobs in @jobs (their links are their own). */
static void
jobs_clear (GQueue *jobs)
{
  GList *link;

  while ((link = g_queue_pop_head_link (jobs)) != NULL)
    job_free (link->data);
}

static Served *
served_ref (Served *served)
{
  g_atomic_ref_count_inc (&served->ref);
  return served;
}

static void
served_unref (Served *served)
{
  if (!g_atomic_ref_count_dec (&served->ref))
    return;
  g_assert (served->task == NULL);
  jobs_clear (&served->waiting);
  g_ptr_array_unref (served->runners);
  g_array_unref (served->outbox);
  g_clear_pointer (&served->flusher, g_source_unref);
  g_main_context_unref (served->context);
  g_clear_object (&served->connection);
  g_mutex_clear (&served->mutex);
  g_object_unref (served->service);
  g_free (served);
}

/* Replies to @call with @body, or with @error (taken) as GDBus encodes a
 * GError it has no D-Bus name for (the caller decodes domain and code).
 * Any thread. */
static void
reply (GDBusConnection *connection, GDBusMessage *call, GVariant *body, GError *error)
{
  GDBusMessage *message;

  if (error != NULL)
    {
      g_autofree char *name = g_dbus_error_encode_gerror (error);

      message = g_dbus_message_new_method_error_literal (call, name, error->message);
      g_error_free (error);
    }
  else
    {
      message = g_dbus_message_new_method_reply (call);
      g_dbus_message_set_body (message, body);
    }
  /* Fails only once the connection is closed: nobody is listening. */
  g_dbus_connection_send_message (connection, message, G_DBUS_SEND_MESSAGE_FLAGS_NONE, NULL, NULL);
  g_object_unref (message);
}

/* Sends @batch (of Outcome, taken) in one Results signal. Any thread. */
static void
send_results (GDBusConnection *connection, GArray *batch)
{
  GDBusMessage *message =
      g_dbus_message_new_signal (WORKER_OBJECT_PATH, WORKER_INTERFACE, "Results");
  GVariantBuilder tuple;
  SluiceWireValues values;
  GArray *error_ids = g_array_new (FALSE, FALSE, sizeof (guint64));
  GPtrArray *error_names = g_ptr_array_new_with_free_func (g_free);
  GPtrArray *error_messages = g_ptr_array_new ();

  sluice_wire_values_init (&values);
  for (guint i = 0; i < batch->len; i++)
    {
      Outcome *outcome = &g_array_index (batch, Outcome, i);

      if (outcome->result != NULL)
        sluice_wire_values_add (&values, outcome->id, outcome->result);
      else
        {
          g_array_append_val (error_ids, outcome->id);
          g_ptr_array_add (error_names, g_dbus_error_encode_gerror (outcome->error));
          g_ptr_array_add (error_messages, outcome->error->message);
        }
    }
  g_variant_builder_init (&tuple, G_VARIANT_TYPE (SLUICE_WIRE_RESULTS_TYPE));
  sluice_wire_values_end (&values, &tuple);
  g_variant_builder_add_value (&tuple,
                               g_variant_new_fixed_array (G_VARIANT_TYPE_UINT64, error_ids->data,
                                                          error_ids->len, sizeof (guint64)));
  g_variant_builder_add_value (
      &tuple, g_variant_new_strv ((const char *const *) error_names->pdata, error_names->len));
  g_variant_builder_add_value (
      &tuple,
      g_variant_new_strv ((const char *const *) error_messages->pdata, error_messages->len));
  sluice_wire_pack (message, g_variant_builder_end (&tuple));
  g_array_unref (error_ids);
  g_ptr_array_unref (error_names);
  g_ptr_array_unref (error_messages);
  g_array_unref (batch);

  /* Fails only once the connection is closed: nobody is listening. */
  g_dbus_connection_send_message (connection, message, G_DBUS_SEND_MESSAGE_FLAGS_NONE, NULL, NULL);
  g_object_unref (message);
}

/* Leaves the outcome of call @id of a CallMany (@result or @error, taken)
 * in the outbox, and wakes the flusher: at once, unless it is awake
 * already, or calls wait here (they will end soon after) and the outbox
 * holds fewer than twice as many outcomes: then within FLUSH_DELAY_US. */
static void
add_outcome_locked (Served *served, guint64 id, GVariant *result, GError *error)
{
  Outcome outcome = { id, result, error };

  if (served->closed)
    {
      outcome_clear (&outcome);
      return;
    }
  g_array_append_val (served->outbox, outcome);
  if (served->flushing)
    return;
  if (served->outbox->len < 2 * served->waiting.length && served->outbox->len < MAX_OUTCOMES)
    {
      if (!served->flush_armed)
        {
          g_source_set_ready_time (served->flusher, g_get_monotonic_time () + FLUSH_DELAY_US);
          served->n_flusher_wakes++;
        }
      served->flush_armed = TRUE;
      return;
    }
  served->flushing = TRUE;
  g_source_set_ready_time (served->flusher, 0);
  served->n_flusher_wakes++;
}

/* The flusher: sends what the outbox holds, until it is empty; outcomes
 * added meanwhile go in the next message. Serving context. */
static gboolean
flusher_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  Served *served = user_data;
  gboolean sent = FALSE;

  g_source_set_ready_time (source, -1);
  for (;;)
    {
      GArray *batch;

      g_mutex_lock (&served->mutex);
      served->flushing = TRUE;
      served->flush_armed = FALSE;
      if (served->outbox->len == 0)
        {
          served->flushing = FALSE;
          /* Calls run or wait: the flusher arms its own delay now (from
           * its own dispatch, which wakes no thread), so that their
           * outcomes find it armed and wake it only to send at once:
           * one wake-up of this thread per Results, not two (session
           * 13). An outcome still waits at most FLUSH_DELAY_US: it comes
           * after this. With nothing to send then, it is not armed
           * again until an outcome comes. */
          if (sent && !served->closed && (served->n_runners > 0 || served->waiting.length > 0))
            {
              served->flush_armed = TRUE;
              g_source_set_ready_time (source, g_get_monotonic_time () + FLUSH_DELAY_US);
            }
          g_mutex_unlock (&served->mutex);
          break;
        }
      if (served->outbox->len <= MAX_OUTCOMES)
        {
          batch = served->outbox;
          served->outbox = outbox_new ();
        }
      else
        {
          batch = outbox_new ();
          g_array_append_vals (batch, served->outbox->data, MAX_OUTCOMES);
          /* Moved, not copied: removed without clearing them. */
          g_array_set_clear_func (served->outbox, NULL);
          g_array_remove_range (served->outbox, 0, MAX_OUTCOMES);
          g_array_set_clear_func (served->outbox, outcome_clear);
        }
      served->n_result_messages++;
      served->n_outcomes += batch->len;
      g_mutex_unlock (&served->mutex);
      send_results (served->connection, batch);
      sent = TRUE;
    }
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs flusher_funcs = { NULL, NULL, flusher_dispatch, NULL, NULL, NULL };

/* A runner: runs the calls waiting in its connection (@data, a reference
 * taken) until none is left. A thread of the pool. */
static void
runner_run (gpointer data, gpointer user_data)
{
  Served *served = data;
  Runner runner = { NULL, NULL, FALSE };

  g_mutex_lock (&served->mutex);
  g_ptr_array_add (served->runners, &runner);
  for (;;)
    {
      GList *link = served->closed ? NULL : g_queue_pop_head_link (&served->waiting);
      Job *job;
      gboolean cancel;
      GError *error = NULL;
      GVariant *result;

      if (link == NULL)
        break;
      job = link->data;
      runner.job = job;
      if (runner.cancellable == NULL)
        runner.cancellable = g_cancellable_new ();
      cancel = job->cancelled;
      runner.spent |= cancel;
      g_mutex_unlock (&served->mutex);

      if (cancel)
        g_cancellable_cancel (runner.cancellable);
      result = sluice_function_registry_call (served->service->registry, job->name, job->args,
                                              runner.cancellable, &error);
      if (job->message != NULL)
        {
          if (result != NULL)
            {
              GVariantBuilder body;

              g_variant_builder_init (&body, G_VARIANT_TYPE ("(say)"));
              sluice_wire_add (&body, result);
              reply (served->connection, job->message, g_variant_builder_end (&body), NULL);
              g_variant_unref (result);
            }
          else
            reply (served->connection, job->message, NULL, error);
        }

      g_mutex_lock (&served->mutex);
      runner.job = NULL;
      if (job->message == NULL)
        add_outcome_locked (served, job->id, result, error);
      /* A cancelled cancellable serves no other call. */
      if (runner.spent)
        {
          g_clear_object (&runner.cancellable);
          runner.spent = FALSE;
        }
      job_free (job);
    }
  served->n_runners--;
  g_ptr_array_remove_fast (served->runners, &runner);
  g_mutex_unlock (&served->mutex);

  g_clear_object (&runner.cancellable);
  served_unref (served);
}

/* Queues @jobs (of Job, taken) and starts the runners they need. Any
 * thread. */
static void
run_jobs (Served *served, GQueue *jobs)
{
  guint n_threads = (guint) g_thread_pool_get_max_threads (served->service->pool);
  guint n_start = 0;

  g_mutex_lock (&served->mutex);
  if (served->closed)
    {
      g_mutex_unlock (&served->mutex);
      jobs_clear (jobs);
      return;
    }
  while (!g_queue_is_empty (jobs))
    g_queue_push_tail_link (&served->waiting, g_queue_pop_head_link (jobs));
  if (served->n_runners < n_threads)
    n_start = MIN (n_threads - served->n_runners, served->waiting.length);
  served->n_runners += n_start;
  g_mutex_unlock (&served->mutex);

  for (guint i = 0; i < n_start; i++)
    g_thread_pool_push (served->service->pool, served_ref (served), NULL);
}

/* Appends a new job for call @id of @name (@args taken) to @jobs. */
static void
job_add (GQueue *jobs, GDBusMessage *message, guint64 id, const char *name, GVariant *args)
{
  Job *job = g_new0 (Job, 1);

  job->link.data = job;
  job->id = id;
  job->name = g_strdup (name);
  job->args = args;
  job->message = message != NULL ? g_object_ref (message) : NULL;
  g_queue_push_tail_link (jobs, &job->link);
}

/* A Call: its job goes to the pool. */
static void
handle_call (Served *served, GDBusMessage *message, GVariant *body)
{
  const char *args_type, *name;
  GVariant *args_data;
  GVariant *args;
  GError *error = NULL;
  guint64 id;

  g_variant_get (body, "(t&s&s@ay)", &id, &name, &args_type, &args_data);
  args = sluice_wire_get (args_type, args_data, &error);
  g_variant_unref (args_data);
  if (args == NULL)
    {
      reply (served->connection, message, NULL, error);
      return;
    }
  {
    GQueue jobs = G_QUEUE_INIT;

    job_add (&jobs, message, id, name, args);
    run_jobs (served, &jobs);
  }
}

/* Only a peer that does not speak the protocol sends a malformed batch:
 * its calls cannot be told apart, and it cannot be told which failed, so
 * the connection closes (serving ends; the worker takes this process as
 * dead). */
static void
close_malformed (Served *served)
{
  g_log (G_LOG_DOMAIN, G_LOG_LEVEL_WARNING,
         "The peer sent a malformed batch of calls (CallMany): the connection is closed");
  g_dbus_connection_close (served->connection, NULL, NULL, NULL);
}

/* A CallMany: each call's job goes to the pool, its outcome into a
 * Results signal; a malformed one closes the connection. */
static void
handle_call_many (Served *served, GDBusMessage *message)
{
  GVariant *calls = sluice_wire_unpack (message, SLUICE_WIRE_CALLS_TYPE);
  GVariant *names_variant;
  const char **names;
  SluiceWireValuesView args;
  gsize n_names;
  GQueue jobs = G_QUEUE_INIT;

  if (calls == NULL)
    {
      close_malformed (served);
      return;
    }
  names_variant = g_variant_get_child_value (calls, 0);
  names = sluice_wire_strv (names_variant, &n_names);
  g_variant_unref (names_variant);
  if (!sluice_wire_values_view (calls, 1, &args) || n_names != args.n)
    {
      close_malformed (served);
      args.n = 0;
    }
  g_mutex_lock (&served->mutex);
  served->n_call_messages++;
  served->n_calls += args.n;
  g_mutex_unlock (&served->mutex);

  for (gsize i = 0; i < args.n; i++)
    {
      GError *error = NULL;
      GVariant *value = sluice_wire_values_get (&args, i, &error);

      if (value != NULL)
        job_add (&jobs, NULL, args.ids[i], names[i], value);
      else
        {
          g_mutex_lock (&served->mutex);
          add_outcome_locked (served, args.ids[i], NULL, error);
          g_mutex_unlock (&served->mutex);
        }
    }
  run_jobs (served, &jobs);
  sluice_wire_values_view_clear (&args);
  g_free (names);
  g_variant_unref (calls);
}

/* The cancellable of the runner running call @id (a reference), spent
 * (it serves no other call); or NULL, and a call @id that waits is marked
 * to start cancelled. Under the mutex. */
static GCancellable *
take_cancellable_locked (Served *served, guint64 id)
{
  for (guint i = 0; i < served->runners->len; i++)
    {
      Runner *runner = served->runners->pdata[i];

      if (runner->job != NULL && runner->job->id == id)
        {
          runner->spent = TRUE;
          return g_object_ref (runner->cancellable);
        }
    }
  /* A rare message: a walk of the calls waiting here. */
  for (GList *l = served->waiting.head; l != NULL; l = l->next)
    if (((Job *) l->data)->id == id)
      {
        ((Job *) l->data)->cancelled = TRUE;
        break;
      }
  return NULL;
}

/* A Cancel: cancels call @id's cancellable if it runs, or has it start
 * cancelled if it waits. */
static void
handle_cancel (Served *served, GDBusMessage *message, GVariant *body)
{
  GCancellable *cancellable;
  guint64 id;

  g_variant_get (body, "(t)", &id);
  g_mutex_lock (&served->mutex);
  cancellable = take_cancellable_locked (served, id);
  g_mutex_unlock (&served->mutex);
  if (cancellable != NULL)
    {
      g_cancellable_cancel (cancellable);
      g_object_unref (cancellable);
    }
  reply (served->connection, message, g_variant_new ("()"), NULL);
}

/* Calls of org.sluice.Worker1 are taken as they arrive, in GDBus's own
 * thread, instead of through a main context: that saves two thread
 * switches per call (bench/worker-run). Their arguments are checked
 * against the interface's XML. Other messages go their usual way. */
static GDBusMessage *
filter_cb (GDBusConnection *connection,
           GDBusMessage *message,
           gboolean incoming,
           gpointer user_data)
{
  Served *served = user_data;
  const GDBusMethodInfo *method;
  GVariant *body;
  g_autofree char *signature = NULL;

  if (!incoming || g_dbus_message_get_message_type (message) != G_DBUS_MESSAGE_TYPE_METHOD_CALL ||
      g_strcmp0 (g_dbus_message_get_interface (message), WORKER_INTERFACE) != 0)
    return message;

  method = g_dbus_interface_info_lookup_method (
      (GDBusInterfaceInfo *) &sluice_org_sluice_worker1_interface,
      g_dbus_message_get_member (message));
  body = g_dbus_message_get_body (message);
  if (method != NULL)
    {
      GString *wanted = g_string_new ("(");

      for (guint i = 0; method->in_args != NULL && method->in_args[i] != NULL; i++)
        g_string_append (wanted, method->in_args[i]->signature);
      g_string_append_c (wanted, ')');
      signature = g_string_free (wanted, FALSE);
    }
  if (method == NULL || body == NULL ||
      !g_variant_is_of_type (body, (const GVariantType *) signature))
    reply (connection, message, NULL,
           g_error_new (G_DBUS_ERROR, G_DBUS_ERROR_INVALID_ARGS, "Not a valid call of %s.%s",
                        WORKER_INTERFACE, g_dbus_message_get_member (message)));
  else if (g_str_equal (method->name, "CallMany"))
    handle_call_many (served, message);
  else if (g_str_equal (method->name, "Call"))
    handle_call (served, message, body);
  else
    handle_cancel (served, message, body);
  g_object_unref (message);
  return NULL;
}

/* The peer is gone (or closed the connection: its way of saying stop):
 * the calls still running are cancelled, and serving ends. */
static void
connection_closed_cb (GDBusConnection *connection,
                      gboolean remote_peer_vanished,
                      GError *error,
                      gpointer user_data)
{
  Served *served = user_data;
  GPtrArray *cancellables = g_ptr_array_new_with_free_func (g_object_unref);
  GQueue waiting;
  GTask *task;

  g_mutex_lock (&served->mutex);
  g_debug ("Served %" G_GUINT64_FORMAT " calls in %" G_GUINT64_FORMAT
           " CallMany messages; sent %" G_GUINT64_FORMAT " outcomes in %" G_GUINT64_FORMAT
           " Results messages; the flusher woken %" G_GUINT64_FORMAT " times by runners",
           served->n_calls, served->n_call_messages, served->n_outcomes, served->n_result_messages,
           served->n_flusher_wakes);
  served->closed = TRUE;
  g_array_set_size (served->outbox, 0);
  waiting = served->waiting;
  g_queue_init (&served->waiting);
  for (guint i = 0; i < served->runners->len; i++)
    {
      Runner *runner = served->runners->pdata[i];

      if (runner->job != NULL)
        {
          runner->spent = TRUE;
          g_ptr_array_add (cancellables, g_object_ref (runner->cancellable));
        }
    }
  g_mutex_unlock (&served->mutex);
  g_source_destroy (served->flusher);
  jobs_clear (&waiting);
  for (guint i = 0; i < cancellables->len; i++)
    g_cancellable_cancel (cancellables->pdata[i]);
  g_ptr_array_unref (cancellables);

  g_dbus_connection_remove_filter (connection, served->filter_id);
  g_signal_handler_disconnect (connection, served->closed_id);
  task = g_steal_pointer (&served->task);
  g_task_return_boolean (task, TRUE);
  g_object_unref (task);
  served_unref (served); /* the connection's */
}

/* Only ANONYMOUS: a pipe carries no credentials, and the peer is the
 * process that started this one. */
static gboolean
allow_mechanism_cb (GDBusAuthObserver *observer, const char *mechanism, gpointer user_data)
{
  return g_strcmp0 (mechanism, "ANONYMOUS") == 0;
}

static void
connection_ready_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Served *served = user_data;
  GError *error = NULL;
  GTask *task;

  served->connection = g_dbus_connection_new_finish (result, &error);
  if (error != NULL)
    {
      task = g_steal_pointer (&served->task);
      g_task_return_error (task, error);
      g_object_unref (task);
      served_unref (served);
      return;
    }
  /* Its reference is the connection's, until it closes; the filter and
   * the flusher hold one of their own (a filter may still run in GDBus's
   * thread after its removal). */
  served->flusher = g_source_new (&flusher_funcs, sizeof (GSource));
  g_source_set_callback (served->flusher, NULL, served_ref (served), (GDestroyNotify) served_unref);
  g_source_set_static_name (served->flusher, "SluiceWorkerService results");
  g_source_attach (served->flusher, served->context);
  served->filter_id = g_dbus_connection_add_filter (
      served->connection, filter_cb, served_ref (served), (GDestroyNotify) served_unref);
  served->closed_id =
      g_signal_connect (served->connection, "closed", G_CALLBACK (connection_closed_cb), served);
  g_dbus_connection_start_message_processing (served->connection);
}

/**
 * sluice_worker_service_serve_stream_async:
 * @self: a worker service
 * @stream: the stream to serve on (the helper's standard input and output,
 *   or one end of a socket pair)
 * @cancellable: (nullable): a cancellable, for the setup of the connection
 * @callback: (scope async) (closure user_data): called when the peer has
 *   closed the connection (or gone away)
 * @user_data: data for @callback
 *
 * Serves the functions of @self over @stream: the server side of a
 * peer-to-peer D-Bus connection (`org.sluice.Worker1`). Calls run in the
 * threads of @self; the operation completes, on the thread-default main
 * context of the caller, when the peer closes the connection or goes
 * away: the calls still running then see their cancellables cancelled.
 * [method@Sluice.WorkerService.run] does this on standard input and
 * output.
 *
 * Call it from the thread whose thread-default main context runs.
 */
void
sluice_worker_service_serve_stream_async (SluiceWorkerService *self,
                                          GIOStream *stream,
                                          GCancellable *cancellable,
                                          GAsyncReadyCallback callback,
                                          gpointer user_data)
{
  Served *served;
  GDBusAuthObserver *observer;
  g_autofree char *guid = g_dbus_generate_guid ();

  g_return_if_fail (SLUICE_IS_WORKER_SERVICE (self));
  g_return_if_fail (G_IS_IO_STREAM (stream));

  g_mutex_lock (&self->mutex);
  if (self->pool == NULL)
    self->pool = g_thread_pool_new (
        runner_run, NULL,
        self->n_threads > 0 ? (int) self->n_threads : (int) g_get_num_processors (), FALSE, NULL);
  g_mutex_unlock (&self->mutex);

  served = g_new0 (Served, 1);
  g_atomic_ref_count_init (&served->ref);
  served->service = g_object_ref (self);
  g_mutex_init (&served->mutex);
  g_queue_init (&served->waiting);
  served->runners = g_ptr_array_new ();
  served->outbox = outbox_new ();
  served->context = g_main_context_ref_thread_default ();
  served->task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (served->task, sluice_worker_service_serve_stream_async);

  observer = g_dbus_auth_observer_new ();
  g_signal_connect (observer, "allow-mechanism", G_CALLBACK (allow_mechanism_cb), NULL);
  g_dbus_connection_new (stream, guid,
                         G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_SERVER |
                             G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_ALLOW_ANONYMOUS |
                             G_DBUS_CONNECTION_FLAGS_DELAY_MESSAGE_PROCESSING,
                         observer, cancellable, connection_ready_cb, served);
  g_object_unref (observer);
}

/**
 * sluice_worker_service_serve_stream_finish:
 * @self: a worker service
 * @result: the result given to the callback
 * @error: return location for an error
 *
 * Finishes [method@Sluice.WorkerService.serve_stream_async].
 *
 * Returns: %TRUE once the peer has closed the connection, %FALSE with
 *   @error set if it could not be set up (the peer does not speak D-Bus)
 */
gboolean
sluice_worker_service_serve_stream_finish (SluiceWorkerService *self,
                                           GAsyncResult *result,
                                           GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

typedef struct
{
  gboolean done;
  gboolean ok;
  GError *error;
} RunState;

static void
run_done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  RunState *state = user_data;

  state->ok = sluice_worker_service_serve_stream_finish (SLUICE_WORKER_SERVICE (source), result,
                                                         &state->error);
  state->done = TRUE;
}

/**
 * sluice_worker_service_run:
 * @self: a worker service
 * @error: return location for an error
 *
 * Serves the functions of @self on the standard input and output of the
 * process, until the [class@Sluice.ProcessWorker] that started it closes
 * the connection or goes away. It iterates a main context of its own
 * meanwhile.
 *
 * The protocol keeps the original standard input and output for itself:
 * from now on the process's standard output (file descriptor 1) writes to
 * its standard error, so that a function that prints does not disturb the
 * protocol, and its standard input reads nothing.
 *
 * Call it once, typically from the main function of a helper program.
 *
 * Returns: %TRUE when the worker closed the connection, %FALSE with @error
 *   set if serving could not start
 */
gboolean
sluice_worker_service_run (SluiceWorkerService *self, GError **error)
{
  GMainContext *context;
  GInputStream *in;
  GOutputStream *out;
  GIOStream *stream;
  RunState state = { FALSE, FALSE, NULL };
  int in_fd, out_fd, null_fd;

  g_return_val_if_fail (SLUICE_IS_WORKER_SERVICE (self), FALSE);

  in_fd = dup (0);
  out_fd = dup (1);
  null_fd = g_open ("/dev/null", O_RDONLY | O_CLOEXEC, 0);
  if (in_fd < 0 || out_fd < 0 || null_fd < 0 || dup2 (2, 1) < 0 || dup2 (null_fd, 0) < 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "Could not set up standard input and output: %s", g_strerror (saved_errno));
      return FALSE;
    }
  close (null_fd);
  fcntl (in_fd, F_SETFD, FD_CLOEXEC);
  fcntl (out_fd, F_SETFD, FD_CLOEXEC);

  in = g_unix_input_stream_new (in_fd, TRUE);
  out = g_unix_output_stream_new (out_fd, TRUE);
  stream = g_simple_io_stream_new (in, out);
  g_object_unref (in);
  g_object_unref (out);

  context = g_main_context_new ();
  g_main_context_push_thread_default (context);
  sluice_worker_service_serve_stream_async (self, stream, NULL, run_done_cb, &state);
  while (!state.done)
    g_main_context_iteration (context, TRUE);
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);
  g_object_unref (stream);

  if (!state.ok)
    {
      g_propagate_error (error, state.error);
      return FALSE;
    }
  return TRUE;
}

static void
sluice_worker_service_finalize (GObject *object)
{
  SluiceWorkerService *self = SLUICE_WORKER_SERVICE (object);

  /* The calls still running finish first. */
  if (self->pool != NULL)
    g_thread_pool_free (self->pool, FALSE, TRUE);
  sluice_function_registry_free (self->registry);
  g_mutex_clear (&self->mutex);

  G_OBJECT_CLASS (sluice_worker_service_parent_class)->finalize (object);
}

static void
sluice_worker_service_class_init (SluiceWorkerServiceClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = sluice_worker_service_finalize;
}

static void
sluice_worker_service_init (SluiceWorkerService *self)
{
  g_mutex_init (&self->mutex);
  self->registry = sluice_function_registry_new ();
}

/**
 * sluice_worker_service_new:
 * @n_threads: how many calls it runs at once, each in a thread; 0 for
 *   one per processor
 *
 * Creates a worker service, for a helper program.
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer full): a new worker service
 */
SluiceWorkerService *
sluice_worker_service_new (guint n_threads)
{
  SluiceWorkerService *self = g_object_new (SLUICE_TYPE_WORKER_SERVICE, NULL);

  self->n_threads = MIN (n_threads, (guint) G_MAXINT);
  return self;
}

/**
 * sluice_worker_service_register:
 * @self: a worker service
 * @name: the name that calls use
 * @args_type: (nullable): the [struct@GLib.VariantType] (as a string) its
 *   arguments must have, such as `"(si)"`; %NULL for any
 * @func: (scope notified) (closure func_data) (destroy func_data_destroy):
 *   the function
 * @func_data: data for @func
 * @func_data_destroy: (nullable): frees @func_data when @func is replaced
 *   or @self is finalized
 *
 * Registers @func under @name, as [method@Sluice.ThreadWorker.register]
 * does: a call of @name runs it in a thread of @self. A call with
 * arguments of another type fails with %SLUICE_ERROR_INVALID_ARGUMENTS, a
 * call of a name not registered with %SLUICE_ERROR_UNKNOWN_FUNCTION.
 *
 * This function is safe to call from any thread.
 */
void
sluice_worker_service_register (SluiceWorkerService *self,
                                const char *name,
                                const char *args_type,
                                SluiceNamedFunc func,
                                gpointer func_data,
                                GDestroyNotify func_data_destroy)
{
  g_return_if_fail (SLUICE_IS_WORKER_SERVICE (self));
  g_return_if_fail (name != NULL);
  g_return_if_fail (args_type == NULL || g_variant_type_string_is_valid (args_type));
  g_return_if_fail (func != NULL);

  sluice_function_registry_add (self->registry, name, args_type, func, func_data,
                                func_data_destroy);
}

/* For the Redis serving loop (sluice-redis-service.c). */
#include "sluice-worker-service-private.h"

SluiceFunctionRegistry *
sluice_worker_service_get_registry (SluiceWorkerService *self, guint *n_threads)
{
  *n_threads = self->n_threads;
  return self->registry;
}
