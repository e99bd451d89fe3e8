/* sluice-task-queue-calls.c: named calls of the task queue, run by the
 * workers it hires
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "sluice-private.h"

#include "sluice-worker-private.h"

/* How it works (for maintainers).
 *
 * Named calls do not touch the queue's own threads, nor its mutex: the
 * path of run_async stays as it was. They have a dispatcher of their own
 * (SluiceCalls, created with the first call or hire), under its own
 * mutex: one GSequence of queued calls per series, sorted by (priority,
 * sequence number), so that a call that goes back to the queue lands at its
 * old place; and the hired workers, each with the tasks it holds. A
 * worker with room takes the most urgent head among the queues of the
 * series it serves: a series that nobody serves just keeps its calls.
 *
 * Workers are given their tasks outside the mutex, by one thread at a time
 * (the first that finds tasks to give; others leave theirs in the outbox
 * for it): a worker thus gets its tasks in the order the dispatcher chose
 * them, and a worker that completes a task inside run_task () does not
 * recurse.
 *
 * A call's GTask returns from a source on its context, never from inside
 * a call of the user (call_async, fire, shutdown, a cancellation): the
 * calls that complete meanwhile for one context and priority wait in one
 * returner (a source), which returns them, in the order they were queued
 * there, in one dispatch: one at a time, taken under the mutex, at most as
 * many as it held when the dispatch began (calls completing meanwhile wait
 * for the next iteration). A callback that iterates the context dispatches
 * the returner again (it can recurse), so the rest of its batch returns
 * there. A returner exists while it holds calls: it is made for the first,
 * and destroyed when its last is taken. Each call held keeps the queue
 * alive, so a returner never outlives the dispatcher.
 * The dispatcher holds a reference on the GTask from call_async until it
 * returns; each assignment (SluiceWorkerTask) holds one too, so the queue
 * outlives the tasks its workers hold. A cancellation only schedules an
 * idle source on the call's context (the handler takes no lock, so it can
 * be connected under the mutex); the source does the rest.
 *
 * The queue's shutdown counts the named calls as one active task
 * (sluice-task-queue.c) until they are all done and the hired workers have
 * stopped (sluice_task_queue_calls_idle ()).
 */

/* A call that workers were lost in this many times fails. */
#define MAX_WORKER_LOSSES 3

struct _SluiceHired
{
  SluiceWorker *worker; /* (owned) */
  char **series;        /* (owned) (nullable) */
  guint capacity;
  GHashTable *held; /* of SluiceWorkerTask, borrowed (the call holds them) */
  gulong resigned_id;
  gulong capacity_id;
  /* SLUICE_HIRE_RUN_ON_CONTEXT: (owned) (nullable) the hiring thread's
   * context and (owned) thread, and its deliverer while it holds calls of
   * the worker's virtual functions. */
  GMainContext *context;
  GThread *thread;
  struct _Deliverer *deliverer;
  /* Under the mutex: unhired, the tasks it holds about to be taken back;
   * it is given nothing more. */
  gboolean fired;
};

typedef struct
{
  SluiceWorker *worker;   /* (owned) */
  SluiceWorkerTask *task; /* (owned) */
} Delivery;

/* What a RUN_ON_CONTEXT worker's deliverer calls on its context. */
typedef enum
{
  DELIVER_RUN,       /* run_task () */
  DELIVER_TIMED_OUT, /* task_timed_out () */
  DELIVER_STOP,      /* stop_async () */
  DELIVER_CANCEL,    /* cancels the task's cancellable */
} DeliverKind;

struct _SluiceCalls
{
  GMutex mutex;
  SluiceTaskQueue *queue; /* not owned: the queue owns this */

  GSequence *default_queue;  /* of GTask, borrowed (the dispatcher's reference) */
  GHashTable *series_queues; /* series -> GSequence */
  guint64 next_seq;
  guint n_queued;
  guint n_held;
  GPtrArray *hired; /* of SluiceHired */
  guint rotate;     /* the hired worker served first next time */

  GQueue outbox; /* of Delivery */
  gboolean delivering;
  GPtrArray *returners; /* of Returner, attached, each holding calls */

  gboolean shut_down;
  gboolean stopping; /* the workers are being stopped */
  GMainContext *shutdown_context;
  guint n_stopping;
};

/* Calls that completed, to return on one context at one priority. */
typedef struct
{
  GSource source;
  SluiceCalls *calls;
  GMainContext *context; /* its tasks hold it */
  int priority;
  GPtrArray *tasks; /* of GTask (the dispatcher's reference), under the calls' mutex */
  guint next;       /* the first of @tasks not yet returned */
} Returner;

/* What to do once the mutex is released. */
typedef struct
{
  GPtrArray *returns;   /* of GTask (the dispatcher's reference) */
  GPtrArray *cancel;    /* of SluiceWorkerTask, to cancel */
  GPtrArray *destroy;   /* of GSource */
  GPtrArray *timed_out; /* of SluiceWorkerTask, then SluiceWorker */
  GPtrArray *unref;     /* of GObject */
  gboolean stop_workers;
  guint n_stops_dropped; /* stops of fired workers that will never run */
} After;

static void
after_add (After *after, GPtrArray **array, gpointer item)
{
  if (*array == NULL)
    *array = g_ptr_array_new ();
  g_ptr_array_add (*array, item);
}

static void calls_deliver (SluiceCalls *calls);
static void calls_stop_workers (SluiceCalls *calls);
static void calls_stopped_one (SluiceCalls *calls);
static void deliver_later_locked (
    SluiceCalls *calls, SluiceHired *hired, DeliverKind kind, SluiceWorkerTask *task, int priority);

/* What a returning call takes from the dispatcher. */
typedef struct
{
  GTask *task;               /* the dispatcher's reference */
  GCancellable *cancellable; /* the call's */
  GVariant *result;
  GError *error;
  gulong cancelled_id;
} Return;

/* Takes the next call of @returner into @ret, or returns FALSE: it holds
 * none. The last taken destroys the returner (a new one holds the calls
 * that complete next). Under the calls' mutex. */
static gboolean
returner_take_locked (Returner *returner, Return *ret)
{
  SluiceCalls *calls = returner->calls;
  SluiceCall *call;

  if (returner->next == returner->tasks->len)
    return FALSE;
  call = g_task_get_task_data (returner->tasks->pdata[returner->next]);
  /* GTask would return a task created in this iteration of the main loop
   * from an idle of its own, after the calls that follow: it waits, with
   * them, for the next iteration. */
  if (call->created >= g_source_get_time (&returner->source))
    return FALSE;
  ret->task = returner->tasks->pdata[returner->next++];
  ret->cancellable = call->cancellable;
  ret->result = g_steal_pointer (&call->result);
  ret->error = g_steal_pointer (&call->error);
  /* As GTask does for a task with a cancellable (check-cancellable). */
  if (ret->error == NULL && g_cancellable_is_cancelled (call->cancellable))
    {
      g_clear_pointer (&ret->result, g_variant_unref);
      ret->error =
          g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, _ ("The call was cancelled"));
    }
  ret->cancelled_id = call->cancelled_id;
  call->cancelled_id = 0;
  if (returner->next == returner->tasks->len)
    {
      g_ptr_array_set_size (returner->tasks, 0);
      returner->next = 0;
      g_ptr_array_remove_fast (calls->returners, returner);
      g_source_destroy (&returner->source);
    }
  return TRUE;
}

/* Returns the calls @source holds, in the order they were queued, one at a
 * time: at most those it held when the dispatch began (the calls that
 * complete meanwhile return in the next iteration). A callback that
 * iterates the context (a nested main loop) dispatches the returner again
 * (it can recurse), which returns the rest of the batch there, in order.
 * Their context. */
static gboolean
returner_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  Returner *returner = (Returner *) source;
  SluiceCalls *calls = returner->calls; /* alive: its calls hold the queue */
  SluiceTaskQueue *queue;
  Return ret;
  guint n;

  g_mutex_lock (&calls->mutex);
  n = returner->tasks->len - returner->next;
  if (n == 0)
    {
      /* Emptied by a nested dispatch, and destroyed. */
      g_mutex_unlock (&calls->mutex);
      return G_SOURCE_REMOVE;
    }
  /* The last call returned may drop the last reference to the queue, and
   * with it the calls and the returner's place in them. */
  queue = g_object_ref (g_task_get_source_object (returner->tasks->pdata[returner->next]));
  for (guint i = 0; i < n && returner_take_locked (returner, &ret); i++)
    {
      g_mutex_unlock (&calls->mutex);
      if (ret.cancelled_id != 0)
        g_cancellable_disconnect (ret.cancellable, ret.cancelled_id);
      if (ret.error != NULL)
        g_task_return_error (ret.task, ret.error);
      else
        g_task_return_pointer (ret.task, ret.result, (GDestroyNotify) g_variant_unref);
      g_object_unref (ret.task);
      g_mutex_lock (&calls->mutex);
    }
  g_mutex_unlock (&calls->mutex);
  g_object_unref (queue);
  return G_SOURCE_CONTINUE;
}

static void
returner_finalize (GSource *source)
{
  Returner *returner = (Returner *) source;

  g_assert (returner->tasks->len == 0);
  g_ptr_array_unref (returner->tasks);
}

static GSourceFuncs returner_funcs = {
  NULL, NULL, returner_dispatch, returner_finalize, NULL, NULL,
};

/* Queues @task (the dispatcher's reference, taken) to return from the
 * returner of its context and priority. */
static void
return_later_locked (SluiceCalls *calls, GTask *task)
{
  GMainContext *context = g_task_get_context (task);
  int priority = g_task_get_priority (task);
  Returner *returner = NULL;

  for (guint i = 0; returner == NULL && i < calls->returners->len; i++)
    {
      Returner *r = calls->returners->pdata[i];

      if (r->context == context && r->priority == priority)
        returner = r;
    }
  if (returner == NULL)
    {
      returner = (Returner *) g_source_new (&returner_funcs, sizeof (Returner));
      returner->calls = calls;
      returner->context = context;
      returner->priority = priority;
      returner->tasks = g_ptr_array_new ();
      g_source_set_priority (&returner->source, priority);
      g_source_set_ready_time (&returner->source, 0);
      g_source_set_can_recurse (&returner->source, TRUE);
      g_source_set_static_name (&returner->source, "SluiceTaskQueue call returns");
      g_ptr_array_add (calls->returners, returner);
      g_source_attach (&returner->source, context);
      g_source_unref (&returner->source);
    }
  g_ptr_array_add (returner->tasks, task);
}

static void
after_run (SluiceCalls *calls, After *after)
{
  if (after->destroy != NULL)
    {
      for (guint i = 0; i < after->destroy->len; i++)
        {
          g_source_destroy (after->destroy->pdata[i]);
          g_source_unref (after->destroy->pdata[i]);
        }
      g_ptr_array_unref (after->destroy);
    }
  if (after->cancel != NULL)
    {
      for (guint i = 0; i < after->cancel->len; i++)
        {
          sluice_worker_task_cancel (after->cancel->pdata[i]);
          g_object_unref (after->cancel->pdata[i]);
        }
      g_ptr_array_unref (after->cancel);
    }
  if (after->timed_out != NULL)
    {
      for (guint i = 0; i + 1 < after->timed_out->len; i += 2)
        {
          SluiceWorkerTask *task = after->timed_out->pdata[i];
          SluiceWorker *worker = after->timed_out->pdata[i + 1];
          SluiceWorkerInterface *iface = SLUICE_WORKER_GET_IFACE (worker);

          if (iface->task_timed_out != NULL)
            iface->task_timed_out (worker, task);
          g_object_unref (task);
          g_object_unref (worker);
        }
      g_ptr_array_unref (after->timed_out);
    }
  if (after->returns != NULL)
    {
      g_mutex_lock (&calls->mutex);
      for (guint i = 0; i < after->returns->len; i++)
        return_later_locked (calls, after->returns->pdata[i]);
      g_mutex_unlock (&calls->mutex);
      g_ptr_array_unref (after->returns);
    }
  if (after->unref != NULL)
    {
      g_ptr_array_foreach (after->unref, (GFunc) (void (*) (void)) g_object_unref, NULL);
      g_ptr_array_unref (after->unref);
    }

  calls_deliver (calls);
  if (after->stop_workers)
    calls_stop_workers (calls);
  for (guint i = 0; i < after->n_stops_dropped; i++)
    calls_stopped_one (calls);
}

/* ---- the queues of calls, one per series ---------------------------------- */

static int
compare_calls (gconstpointer a, gconstpointer b, gpointer user_data)
{
  const SluiceCall *ca = g_task_get_task_data ((GTask *) a);
  const SluiceCall *cb = g_task_get_task_data ((GTask *) b);

  if (ca->priority != cb->priority)
    return ca->priority < cb->priority ? -1 : 1;
  return ca->seq < cb->seq ? -1 : ca->seq > cb->seq ? 1 : 0;
}

static GSequence *
series_queue_locked (SluiceCalls *calls, const char *series, gboolean create)
{
  GSequence *queue;

  if (series == NULL)
    return calls->default_queue;
  queue = g_hash_table_lookup (calls->series_queues, series);
  if (queue == NULL && create)
    {
      queue = g_sequence_new (NULL);
      g_hash_table_insert (calls->series_queues, g_strdup (series), queue);
    }
  return queue;
}

static void
enqueue_locked (SluiceCalls *calls, GTask *task)
{
  SluiceCall *call = g_task_get_task_data (task);
  GSequence *queue = series_queue_locked (calls, call->series, TRUE);
  GSequenceIter *end = g_sequence_get_end_iter (queue);

  /* New calls mostly come last (their sequence number is the highest):
   * appended without the binary search (its ~8 comparisons, with
   * hundreds of calls queued, were ~1,400 instructions a call). A call
   * that goes back to the queue, or is more urgent, is inserted at its
   * place. */
  if (g_sequence_iter_is_begin (end) ||
      compare_calls (g_sequence_get (g_sequence_iter_prev (end)), task, NULL) < 0)
    call->queued_at = g_sequence_append (queue, task);
  else
    call->queued_at = g_sequence_insert_sorted (queue, task, compare_calls, NULL);
  calls->n_queued++;
}

static void
dequeue_locked (SluiceCalls *calls, SluiceCall *call)
{
  g_sequence_remove (g_steal_pointer (&call->queued_at));
  calls->n_queued--;
}

/* Decides the outcome of @call: @result or @error (taken). */
static void
complete_full_locked (SluiceCalls *calls,
                      GTask *task,
                      GVariant *result,
                      GError *error,
                      gboolean by_worker,
                      After *after)
{
  SluiceCall *call = g_task_get_task_data (task);

  g_assert (!call->done);
  call->done = TRUE;
  call->result = result;
  call->error = error;
  if (call->queued_at != NULL)
    dequeue_locked (calls, call);
  if (call->assigned != NULL && !by_worker)
    {
      SluiceHired *hired = call->assigned->hired;

      /* The worker still holds it until it completes it. */
      g_atomic_int_set (&call->assigned->wanted, FALSE);
      if (hired->context == NULL)
        after_add (after, &after->cancel, g_object_ref (call->assigned));
      else if (call->assigned->given && !hired->fired)
        {
          /* Its cancellable is cancelled on the worker's context, whose
           * handlers may be in its language. One not given yet never
           * will be; one of a fired worker is cancelled by the fire. */
          deliver_later_locked (calls, hired, DELIVER_CANCEL, g_object_ref (call->assigned),
                                call->priority);
        }
    }
  if (call->timeout_source != NULL)
    after_add (after, &after->destroy, g_steal_pointer (&call->timeout_source));
  after_add (after, &after->returns, task);
}

static void
complete_locked (SluiceCalls *calls, GTask *task, GVariant *result, GError *error, After *after)
{
  complete_full_locked (calls, task, result, error, FALSE, after);
}

static void
complete_with_error_locked (
    SluiceCalls *calls, GTask *task, GQuark domain, int code, const char *message, After *after)
{
  complete_locked (calls, task, NULL, g_error_new_literal (domain, code, message), after);
}

static gboolean
hired_serves (SluiceHired *hired, const char *series)
{
  return series == NULL ||
         (hired->series != NULL && g_strv_contains ((const char *const *) hired->series, series));
}

static gboolean
series_served_locked (SluiceCalls *calls, const char *series)
{
  for (guint i = 0; i < calls->hired->len; i++)
    if (hired_serves (calls->hired->pdata[i], series))
      return TRUE;
  return FALSE;
}

static void
fail_all_locked (SluiceCalls *calls, GSequence *queue, int code, const char *message, After *after)
{
  GQuark domain = code == G_IO_ERROR_CANCELLED ? G_IO_ERROR : SLUICE_ERROR;

  while (!g_sequence_is_empty (queue))
    complete_with_error_locked (calls, g_sequence_get (g_sequence_get_begin_iter (queue)), domain,
                                code, message, after);
}

/* After a shutdown: the calls of a series that nobody serves fail. */
static void
fail_unserved_locked (SluiceCalls *calls, After *after)
{
  GHashTableIter iter;
  gpointer key, value;

  if (!calls->shut_down)
    return;
  if (calls->hired->len == 0)
    fail_all_locked (calls, calls->default_queue, SLUICE_ERROR_NO_WORKER,
                     _ ("The task queue was shut down with no worker for the call"), after);
  g_hash_table_iter_init (&iter, calls->series_queues);
  while (g_hash_table_iter_next (&iter, &key, &value))
    if (!series_served_locked (calls, key))
      fail_all_locked (calls, value, SLUICE_ERROR_NO_WORKER,
                       _ ("The task queue was shut down with no worker for the call"), after);
}

/* Once shut down with nothing left: the hired workers stop, then the
 * queue hears that the named calls are done. */
static void
check_idle_locked (SluiceCalls *calls, After *after)
{
  if (calls->shut_down && !calls->stopping && calls->n_queued == 0 && calls->n_held == 0)
    {
      calls->stopping = TRUE;
      after->stop_workers = TRUE;
    }
}

/* ---- giving tasks to workers ------------------------------------------ */

static void
timeout_cb_locked (SluiceCalls *calls, GTask *task, After *after)
{
  SluiceCall *call = g_task_get_task_data (task);
  SluiceWorkerTask *assigned = call->assigned;

  if (call->done || assigned == NULL || assigned->hired == NULL)
    return;
  if (assigned->hired->context == NULL)
    {
      after_add (after, &after->timed_out, g_object_ref (assigned));
      after_add (after, &after->timed_out, g_object_ref (assigned->hired->worker));
    }
  complete_locked (calls, task, NULL,
                   g_error_new (G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                _ ("The call of “%s” timed out after %d ms"), call->name,
                                call->timeout_ms),
                   after);
  if (assigned->hired->context != NULL && assigned->given && !assigned->hired->fired)
    {
      /* On the worker's context, after its run_task () and the cancel of
       * its cancellable. One not given yet never will be (its call is
       * done): the worker hears of neither. */
      deliver_later_locked (calls, assigned->hired, DELIVER_TIMED_OUT, g_object_ref (assigned),
                            call->priority);
    }
}

static gboolean
call_timeout_cb (gpointer data)
{
  GTask *task = data;
  SluiceCall *call = g_task_get_task_data (task);
  SluiceCalls *calls = call->calls;
  After after = { 0 };

  g_mutex_lock (&calls->mutex);
  /* A timeout of an earlier assignment was destroyed with it. */
  if (call->timeout_source == g_main_current_source ())
    timeout_cb_locked (calls, task, &after);
  g_mutex_unlock (&calls->mutex);

  after_run (calls, &after);
  return G_SOURCE_REMOVE;
}

/* The queued call @hired should take next, or NULL. */
static GSequenceIter *
best_for_locked (SluiceCalls *calls, SluiceHired *hired)
{
  GSequenceIter *best = NULL;

  if (!g_sequence_is_empty (calls->default_queue))
    best = g_sequence_get_begin_iter (calls->default_queue);
  for (guint i = 0; hired->series != NULL && hired->series[i] != NULL; i++)
    {
      GSequence *queue = g_hash_table_lookup (calls->series_queues, hired->series[i]);
      GSequenceIter *head;

      if (queue == NULL || g_sequence_is_empty (queue))
        continue;
      head = g_sequence_get_begin_iter (queue);
      if (best == NULL || compare_calls (g_sequence_get (head), g_sequence_get (best), NULL) < 0)
        best = head;
    }
  return best;
}

static void
assign_locked (SluiceCalls *calls, SluiceHired *hired, GTask *task)
{
  SluiceCall *call = g_task_get_task_data (task);
  SluiceWorkerTask *assigned = sluice_worker_task_new (task, hired);
  Delivery *delivery;

  assigned->n_lost = call->n_lost;
  dequeue_locked (calls, call);
  call->assigned = g_object_ref (assigned);
  g_hash_table_add (hired->held, assigned);
  calls->n_held++;

  if (call->timeout_ms > 0)
    {
      call->timeout_source = g_timeout_source_new ((guint) call->timeout_ms);
      g_task_attach_source (task, call->timeout_source, call_timeout_cb);
    }

  delivery = g_new (Delivery, 1);
  delivery->worker = g_object_ref (hired->worker);
  delivery->task = assigned;
  g_queue_push_tail (&calls->outbox, delivery);
}

static void
dispatch_locked (SluiceCalls *calls)
{
  guint n = calls->hired->len;

  if (calls->n_queued == 0 || n == 0)
    return;
  for (guint k = 0; k < n; k++)
    {
      SluiceHired *hired = calls->hired->pdata[(calls->rotate + k) % n];

      while (g_hash_table_size (hired->held) < hired->capacity)
        {
          GSequenceIter *best = best_for_locked (calls, hired);

          if (best == NULL)
            break;
          assign_locked (calls, hired, g_sequence_get (best));
        }
    }
  calls->rotate = (calls->rotate + 1) % n;
}

/* A worker hired with SLUICE_HIRE_RUN_ON_CONTEXT hears from the queue only
 * on the hiring thread's context, through its deliverer: a source there,
 * which exists while it holds errands (made for the first, destroyed once
 * it has run the last). Its errands are the worker's virtual functions:
 * run_task () for the tasks handed over, task_timed_out () for one that
 * timed out after it was given, stop_async () at the shutdown; it runs
 * them in the order they came, one at a time, each at the priority of its
 * call (the source has the priority of its first errand). A task whose
 * call was decided (cancelled, timed out) before its turn is not given:
 * it is released, and a call whose cancellable was cancelled fails with
 * G_IO_ERROR_CANCELLED then if its own context did not fail it yet.
 * Firing the worker retires the deliverer in the same locked step that
 * unhires it: the tasks it held go back to the queue (the fire takes them
 * with those the worker holds), nothing else it held is run, and a stop
 * it held counts as done; its crash () runs there too, unless the fire is
 * made in the hiring thread (or one that iterates the context). The
 * deliverer holds the queue (so the calls outlive its dispatch). */
typedef struct _Deliverer
{
  GSource source;
  SluiceCalls *calls;
  SluiceTaskQueue *queue; /* (owned) */
  SluiceHired *hired;     /* under the mutex: NULL once retired */
  GQueue errands;         /* of Errand, under the mutex */
} Deliverer;

typedef struct
{
  DeliverKind kind;
  int priority;
  SluiceWorkerTask *task; /* (owned) (nullable): none for a stop */
} Errand;

static void worker_stopped_cb (GObject *source, GAsyncResult *result, gpointer data);
static void
release_locked (SluiceCalls *calls, SluiceWorkerTask *task, gboolean worker_lost, After *after);

/* The source runs at the priority of its first errand. */
static void
deliverer_update_priority_locked (Deliverer *deliverer)
{
  Errand *head = g_queue_peek_head (&deliverer->errands);

  if (head != NULL && head->priority != g_source_get_priority (&deliverer->source))
    g_source_set_priority (&deliverer->source, head->priority);
}

/* Whether @task, whose turn came, is to be given to its worker: not once
 * its call is decided (it timed out, was cancelled): it is released then. */
static gboolean
give_locked (SluiceCalls *calls, SluiceWorkerTask *task, After *after)
{
  SluiceCall *call = g_task_get_task_data (task->call_task);

  if (task->hired == NULL)
    return FALSE;
  if (!call->done && !g_cancellable_is_cancelled (call->cancellable))
    {
      task->given = TRUE;
      return TRUE;
    }
  if (!call->done)
    complete_with_error_locked (calls, task->call_task, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                _ ("The call was cancelled"), after);
  release_locked (calls, task, FALSE, after);
  dispatch_locked (calls);
  check_idle_locked (calls, after);
  return FALSE;
}

static void
errand_run (Deliverer *deliverer, SluiceWorker *worker, Errand *errand)
{
  SluiceWorkerInterface *iface = SLUICE_WORKER_GET_IFACE (worker);
  GMainContext *context = g_source_get_context (&deliverer->source);

  switch (errand->kind)
    {
    case DELIVER_RUN:
      sluice_worker_run_task (worker, errand->task);
      break;
    case DELIVER_TIMED_OUT:
      if (iface->task_timed_out != NULL)
        iface->task_timed_out (worker, errand->task);
      break;
    case DELIVER_CANCEL:
      sluice_worker_task_cancel (errand->task);
      break;
    case DELIVER_STOP:
      /* Its callback comes back here. */
      g_main_context_push_thread_default (context);
      sluice_worker_stop_async (worker, NULL, worker_stopped_cb, deliverer->calls);
      g_main_context_pop_thread_default (context);
      break;
    }
}

/* Runs the errands its deliverer held when the dispatch began, one at a
 * time, outside the mutex, while they have the priority it was dispatched
 * at; those that come meanwhile wait for the next iteration. Not
 * recursive: a run_task () that iterates the context gets no other errand
 * meanwhile. The hiring thread's context. */
static gboolean
deliverer_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  Deliverer *deliverer = (Deliverer *) source;
  SluiceCalls *calls = deliverer->calls;
  int priority = g_source_get_priority (source);
  gboolean retired;

  g_mutex_lock (&calls->mutex);
  for (guint n = deliverer->errands.length; n > 0 && deliverer->hired != NULL; n--)
    {
      Errand *errand = g_queue_peek_head (&deliverer->errands);
      SluiceWorker *worker;
      After after = { 0 };
      gboolean give = TRUE;

      if (errand->priority != priority)
        break; /* the source has its priority now */
      g_queue_pop_head (&deliverer->errands);
      deliverer_update_priority_locked (deliverer);
      if (errand->kind == DELIVER_RUN)
        give = give_locked (calls, errand->task, &after);
      worker = g_object_ref (deliverer->hired->worker);
      g_mutex_unlock (&calls->mutex);
      if (give)
        errand_run (deliverer, worker, errand);
      else
        after_run (calls, &after);
      g_clear_object (&errand->task);
      g_free (errand);
      g_object_unref (worker);
      g_mutex_lock (&calls->mutex);
    }
  if (deliverer->hired != NULL && g_queue_is_empty (&deliverer->errands))
    {
      deliverer->hired->deliverer = NULL;
      deliverer->hired = NULL;
    }
  retired = deliverer->hired == NULL;
  g_mutex_unlock (&calls->mutex);
  return retired ? G_SOURCE_REMOVE : G_SOURCE_CONTINUE;
}

static void
deliverer_finalize (GSource *source)
{
  Deliverer *deliverer = (Deliverer *) source;

  g_assert (g_queue_is_empty (&deliverer->errands));
  g_object_unref (deliverer->queue);
}

static GSourceFuncs deliverer_funcs = {
  NULL, NULL, deliverer_dispatch, deliverer_finalize, NULL, NULL,
};

/* Queues an errand of @kind for @task (taken; NULL for a stop) at
 * @priority, for @hired's deliverer, made if needed. */
static void
deliver_later_locked (
    SluiceCalls *calls, SluiceHired *hired, DeliverKind kind, SluiceWorkerTask *task, int priority)
{
  Errand *errand = g_new (Errand, 1);

  g_assert (!hired->fired);
  errand->kind = kind;
  errand->priority = priority;
  errand->task = task;
  if (hired->deliverer == NULL)
    {
      Deliverer *deliverer = (Deliverer *) g_source_new (&deliverer_funcs, sizeof (Deliverer));

      deliverer->calls = calls;
      deliverer->queue = g_object_ref (calls->queue); /* alive: its calls hold it */
      deliverer->hired = hired;
      g_queue_init (&deliverer->errands);
      g_source_set_priority (&deliverer->source, priority);
      g_source_set_ready_time (&deliverer->source, 0);
      g_source_set_static_name (&deliverer->source, "SluiceTaskQueue worker on context");
      hired->deliverer = deliverer;
      g_source_attach (&deliverer->source, hired->context);
      g_source_unref (&deliverer->source);
    }
  g_queue_push_tail (&hired->deliverer->errands, errand);
  if (hired->deliverer->errands.length == 1)
    deliverer_update_priority_locked (hired->deliverer);
}

/* Under the mutex, when @hired is fired: its deliverer (if any) runs no
 * more errands, and is destroyed after the mutex; the tasks it held are
 * dropped (the fire takes them back to the queue), and a stop it held
 * counts as done. */
static void
retire_deliverer_locked (SluiceHired *hired, After *after)
{
  Deliverer *deliverer = g_steal_pointer (&hired->deliverer);
  Errand *errand;

  if (deliverer == NULL)
    return;
  deliverer->hired = NULL;
  while ((errand = g_queue_pop_head (&deliverer->errands)) != NULL)
    {
      if (errand->kind == DELIVER_STOP)
        after->n_stops_dropped++;
      if (errand->task != NULL)
        after_add (after, &after->unref, errand->task);
      g_free (errand);
    }
  after_add (after, &after->destroy, g_source_ref (&deliverer->source));
}

/* Gives the tasks in the outbox to their workers, outside the mutex, one
 * thread at a time; a worker hired with SLUICE_HIRE_RUN_ON_CONTEXT gets
 * them from its deliverer. A task taken back (its worker fired) before it
 * was given is not given. */
static void
calls_deliver (SluiceCalls *calls)
{
  Delivery *delivery;

  g_mutex_lock (&calls->mutex);
  if (calls->delivering || g_queue_is_empty (&calls->outbox))
    {
      g_mutex_unlock (&calls->mutex);
      return;
    }
  calls->delivering = TRUE;
  while ((delivery = g_queue_pop_head (&calls->outbox)) != NULL)
    {
      SluiceHired *hired = delivery->task->hired;

      if (hired != NULL && hired->fired)
        hired = NULL; /* the fire takes the task back */
      else if (hired != NULL && hired->context != NULL)
        {
          SluiceCall *call = g_task_get_task_data (delivery->task->call_task);

          deliver_later_locked (calls, hired, DELIVER_RUN, g_steal_pointer (&delivery->task),
                                call->priority);
        }
      g_mutex_unlock (&calls->mutex);
      if (hired != NULL && delivery->task != NULL)
        sluice_worker_run_task (delivery->worker, delivery->task);
      g_clear_object (&delivery->task);
      g_object_unref (delivery->worker);
      g_free (delivery);
      g_mutex_lock (&calls->mutex);
    }
  calls->delivering = FALSE;
  g_mutex_unlock (&calls->mutex);
}

/* Takes @task from its worker. Its call goes back to the queue, unless it
 * is done; @worker_lost counts against it. */
static void
release_locked (SluiceCalls *calls, SluiceWorkerTask *task, gboolean worker_lost, After *after)
{
  GTask *call_task = task->call_task;
  SluiceCall *call = g_task_get_task_data (call_task);

  g_hash_table_remove (task->hired->held, task);
  task->hired = NULL;
  calls->n_held--;
  g_atomic_int_set (&task->wanted, FALSE);
  g_assert (call->assigned == task);
  after_add (after, &after->unref, g_steal_pointer (&call->assigned));
  if (call->timeout_source != NULL)
    after_add (after, &after->destroy, g_steal_pointer (&call->timeout_source));
  if (call->done)
    return;

  if (worker_lost && ++call->n_lost >= MAX_WORKER_LOSSES)
    {
      complete_locked (calls, call_task, NULL,
                       g_error_new (SLUICE_ERROR, SLUICE_ERROR_WORKER_LOST,
                                    _ ("The call of “%s” was given up after its worker was "
                                       "lost %u times"),
                                    call->name, call->n_lost),
                       after);
      return;
    }
  enqueue_locked (calls, call_task);
}

/* Takes @result and @error. */
static void
task_completed_locked (SluiceCalls *calls,
                       SluiceWorkerTask *task,
                       GVariant *result,
                       GError *error,
                       gboolean worker_lost,
                       After *after)
{
  GTask *call_task = task->call_task;
  SluiceCall *call = g_task_get_task_data (call_task);

  if (task->hired == NULL)
    {
      /* Taken back, or completed already. */
      g_clear_pointer (&result, g_variant_unref);
      g_clear_error (&error);
      return;
    }
  if ((result != NULL || error != NULL) && !call->done)
    {
      /* Decided now: release_locked () then leaves it done. */
      complete_full_locked (calls, call_task, g_steal_pointer (&result), g_steal_pointer (&error),
                            TRUE, after);
    }
  g_clear_pointer (&result, g_variant_unref);
  g_clear_error (&error);
  release_locked (calls, task, worker_lost, after);
}

void
sluice_calls_task_completed (SluiceWorkerTask *task,
                             GVariant *result,
                             GError *error,
                             gboolean worker_lost)
{
  sluice_calls_tasks_completed (&task, &result, &error, 1, worker_lost);
}

void
sluice_calls_tasks_completed (
    SluiceWorkerTask **tasks, GVariant **results, GError **errors, guint n, gboolean worker_lost)
{
  guint i = 0;

  /* Under one lock for each run of tasks of the same queue. */
  while (i < n)
    {
      SluiceCalls *calls = ((SluiceCall *) g_task_get_task_data (tasks[i]->call_task))->calls;
      After after = { 0 };

      g_mutex_lock (&calls->mutex);
      for (; i < n && ((SluiceCall *) g_task_get_task_data (tasks[i]->call_task))->calls == calls;
           i++)
        task_completed_locked (calls, tasks[i], results[i], errors[i], worker_lost, &after);
      dispatch_locked (calls);
      check_idle_locked (calls, &after);
      g_mutex_unlock (&calls->mutex);

      after_run (calls, &after);
    }
}

/* ---- cancellation ---------------------------------------------------------- */

static gboolean
call_cancelled_idle_cb (gpointer data)
{
  GTask *task = data;
  SluiceCall *call = g_task_get_task_data (task);
  SluiceCalls *calls = call->calls;
  After after = { 0 };

  g_mutex_lock (&calls->mutex);
  if (!call->done)
    complete_locked (
        calls, task, NULL,
        g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, _ ("The call was cancelled")),
        &after);
  g_mutex_unlock (&calls->mutex);

  after_run (calls, &after);
  return G_SOURCE_REMOVE;
}

/* GCancellable::cancelled, in the thread that cancels: takes no lock, so
 * that it can be connected under the mutex. The call's context does the
 * rest. */
static void
call_cancelled_cb (GCancellable *cancellable, gpointer data)
{
  GTask *task = data; /* alive until disconnected by call_return_cb () */
  GSource *source = g_idle_source_new ();

  g_task_attach_source (task, source, call_cancelled_idle_cb);
  g_source_unref (source);
}

/* ---- the hired workers -------------------------------------------------- */

static void
hired_free (SluiceHired *hired)
{
  g_assert (g_hash_table_size (hired->held) == 0);
  g_assert (hired->deliverer == NULL);
  g_hash_table_unref (hired->held);
  g_clear_pointer (&hired->context, g_main_context_unref);
  g_clear_pointer (&hired->thread, g_thread_unref);
  g_strfreev (hired->series);
  g_object_unref (hired->worker);
  g_free (hired);
}

static SluiceHired *
find_hired_locked (SluiceCalls *calls, SluiceWorker *worker, guint *index)
{
  for (guint i = 0; i < calls->hired->len; i++)
    {
      SluiceHired *hired = calls->hired->pdata[i];

      if (hired->worker == worker)
        {
          if (index != NULL)
            *index = i;
          return hired;
        }
    }
  return NULL;
}

/* Acquires the context of @hired (hired with RUN_ON_CONTEXT) if this is
 * a thread that iterates it, or the hiring thread while no other thread
 * does: no dispatch of the worker's deliverer (no run_task ()) can be
 * under way then, nor start before it is released. Another thread may
 * iterate the context while the hiring thread does not (a thread-default
 * context pushed in one thread, iterated by another): the hiring thread is
 * a foreign one then. */
static gboolean
acquire_hiring_context (SluiceHired *hired)
{
  if (g_main_context_is_owner (hired->context))
    return g_main_context_acquire (hired->context);
  return g_thread_self () == hired->thread && g_main_context_acquire (hired->context);
}

/* The crash of a RUN_ON_CONTEXT worker fired from another thread, and
 * the cancel of the tasks it held, on its context. */
typedef struct
{
  SluiceWorker *worker; /* (owned) */
  GPtrArray *cancel;    /* of SluiceWorkerTask (owned) */
} CrashLater;

static gboolean
crash_later_cb (gpointer data)
{
  CrashLater *later = data;

  g_ptr_array_unref (sluice_worker_crash (later->worker));
  for (guint i = 0; i < later->cancel->len; i++)
    sluice_worker_task_cancel (later->cancel->pdata[i]);
  return G_SOURCE_REMOVE;
}

static void
crash_later_free (gpointer data)
{
  CrashLater *later = data;

  g_object_unref (later->worker);
  g_ptr_array_unref (later->cancel);
  g_free (later);
}

/* Detaches @worker, crashes it and puts the tasks it held back in the
 * queue. Returns FALSE if it was not hired. */
static gboolean
calls_fire (SluiceCalls *calls, SluiceWorker *worker)
{
  SluiceHired *hired;
  GPtrArray *crashed = NULL;
  CrashLater *later = NULL;
  gboolean acquired = FALSE;
  GHashTableIter iter;
  gpointer key;
  GPtrArray *held;
  After after = { 0 };
  guint index;

  g_mutex_lock (&calls->mutex);
  hired = find_hired_locked (calls, worker, &index);
  if (hired != NULL)
    {
      g_ptr_array_remove_index (calls->hired, index);
      hired->fired = TRUE;
      retire_deliverer_locked (hired, &after);
    }
  g_mutex_unlock (&calls->mutex);
  if (hired == NULL)
    return FALSE;

  g_signal_handler_disconnect (worker, hired->resigned_id);
  g_signal_handler_disconnect (worker, hired->capacity_id);
  if (hired->context != NULL && !(acquired = acquire_hiring_context (hired)))
    {
      /* On its context, after a run_task () under way there, if any; the
       * cancellables of its tasks too. */
      later = g_new (CrashLater, 1);
      later->worker = g_object_ref (worker);
      later->cancel = g_ptr_array_new_with_free_func (g_object_unref);
    }
  else
    crashed = sluice_worker_crash (worker);

  g_mutex_lock (&calls->mutex);
  /* Whatever it still holds goes back, whether it said so or not: in
   * queuing order, each at its old place. */
  held = g_ptr_array_new ();
  g_hash_table_iter_init (&iter, hired->held);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    g_ptr_array_add (held, key);
  for (guint i = 0; i < held->len; i++)
    {
      SluiceWorkerTask *task = held->pdata[i];

      if (later != NULL)
        g_ptr_array_add (later->cancel, g_object_ref (task));
      else
        after_add (&after, &after.cancel, g_object_ref (task));
      release_locked (calls, task, FALSE, &after);
    }
  g_ptr_array_unref (held);
  if (calls->hired->len > 0)
    calls->rotate %= calls->hired->len;
  fail_unserved_locked (calls, &after);
  dispatch_locked (calls);
  check_idle_locked (calls, &after);
  g_mutex_unlock (&calls->mutex);

  if (later != NULL)
    sluice_idle_attach (hired->context, G_PRIORITY_DEFAULT, "SluiceTaskQueue crash on context",
                        crash_later_cb, later, crash_later_free);
  g_clear_pointer (&crashed, g_ptr_array_unref);
  after_run (calls, &after);
  /* Held over the crash and the cancel of the tasks it held. */
  if (acquired)
    g_main_context_release (hired->context);
  hired_free (hired);
  return TRUE;
}

static void
worker_resigned_cb (SluiceWorker *worker, GError *error, gpointer data)
{
  SluiceCalls *calls = data;

  g_debug ("A worker resigned: %s", error != NULL ? error->message : "");
  calls_fire (calls, worker);
}

/* The worker's capacity changed: the queue gives it tasks up to the new
 * one (a smaller one keeps what it holds, and gives no more until it holds
 * fewer). */
static void
worker_capacity_changed_cb (SluiceWorker *worker, gpointer data)
{
  SluiceCalls *calls = data;
  guint capacity = sluice_worker_get_capacity (worker);
  SluiceHired *hired;
  After after = { 0 };

  g_mutex_lock (&calls->mutex);
  hired = find_hired_locked (calls, worker, NULL);
  if (hired != NULL && hired->capacity != capacity)
    {
      hired->capacity = capacity;
      dispatch_locked (calls);
    }
  g_mutex_unlock (&calls->mutex);
  after_run (calls, &after);
}

/* ---- stopping at shutdown ----------------------------------------------- */

static void
calls_stopped_one (SluiceCalls *calls)
{
  gboolean done;

  g_mutex_lock (&calls->mutex);
  done = --calls->n_stopping == 0;
  g_mutex_unlock (&calls->mutex);
  if (done)
    sluice_task_queue_calls_idle (calls->queue);
}

static void
worker_stopped_cb (GObject *source, GAsyncResult *result, gpointer data)
{
  SluiceCalls *calls = data;
  GError *error = NULL;

  if (!sluice_worker_stop_finish (SLUICE_WORKER (source), result, &error))
    {
      g_debug ("A worker did not stop cleanly: %s", error->message);
      g_clear_error (&error);
    }
  calls_stopped_one (calls);
}

static gboolean
stop_workers_cb (gpointer data)
{
  SluiceCalls *calls = data;
  GPtrArray *workers = g_ptr_array_new_with_free_func (g_object_unref);
  guint n_on_context = 0;

  g_mutex_lock (&calls->mutex);
  for (guint i = 0; i < calls->hired->len; i++)
    {
      SluiceHired *hired = calls->hired->pdata[i];

      /* A RUN_ON_CONTEXT worker stops on its context, after its errands. */
      if (hired->context != NULL)
        {
          deliver_later_locked (calls, hired, DELIVER_STOP, NULL, G_PRIORITY_DEFAULT_IDLE);
          n_on_context++;
        }
      else
        g_ptr_array_add (workers, g_object_ref (hired->worker));
    }
  calls->n_stopping = workers->len + n_on_context + 1;
  g_mutex_unlock (&calls->mutex);

  for (guint i = 0; i < workers->len; i++)
    sluice_worker_stop_async (workers->pdata[i], NULL, worker_stopped_cb, calls);
  g_ptr_array_unref (workers);
  calls_stopped_one (calls);
  return G_SOURCE_REMOVE;
}

/* The workers stop from the shutdown caller's context (their callbacks
 * come there), never from inside a worker's call. The queue stays alive:
 * its shutdown waits for this. */
static void
calls_stop_workers (SluiceCalls *calls)
{
  sluice_idle_attach (calls->shutdown_context, G_PRIORITY_DEFAULT_IDLE,
                      "SluiceTaskQueue stop workers", stop_workers_cb, calls, NULL);
}

/* ---- life cycle ------------------------------------------------------- */

SluiceCalls *
sluice_calls_new (SluiceTaskQueue *queue, gboolean shut_down)
{
  SluiceCalls *calls = g_new0 (SluiceCalls, 1);

  g_mutex_init (&calls->mutex);
  calls->queue = queue;
  calls->default_queue = g_sequence_new (NULL);
  calls->series_queues =
      g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_sequence_free);
  calls->hired = g_ptr_array_new ();
  g_queue_init (&calls->outbox);
  calls->returners = g_ptr_array_new ();
  /* Born after a shutdown: it has nothing to wait for. */
  calls->shut_down = shut_down;
  calls->stopping = shut_down;
  return calls;
}

void
sluice_calls_free (SluiceCalls *calls)
{
  /* Every call holds the queue alive, so none is left. */
  g_assert (calls->n_queued == 0 && calls->n_held == 0);
  g_assert (g_queue_is_empty (&calls->outbox));
  g_assert (calls->returners->len == 0);

  for (guint i = 0; i < calls->hired->len; i++)
    {
      SluiceHired *hired = calls->hired->pdata[i];

      g_signal_handler_disconnect (hired->worker, hired->resigned_id);
      g_signal_handler_disconnect (hired->worker, hired->capacity_id);
      hired_free (hired);
    }
  g_ptr_array_unref (calls->hired);
  g_ptr_array_unref (calls->returners);
  g_sequence_free (calls->default_queue);
  g_hash_table_unref (calls->series_queues);
  g_clear_pointer (&calls->shutdown_context, g_main_context_unref);
  g_mutex_clear (&calls->mutex);
  g_free (calls);
}

void
sluice_calls_shutdown (SluiceCalls *calls, gboolean cancel_pending, GMainContext *context)
{
  After after = { 0 };

  g_mutex_lock (&calls->mutex);
  calls->shut_down = TRUE;
  if (calls->shutdown_context == NULL)
    calls->shutdown_context = g_main_context_ref (context);
  if (cancel_pending)
    {
      GHashTableIter iter;
      gpointer value;
      const char *message = _ ("The call was cancelled by the shutdown of its task queue");

      fail_all_locked (calls, calls->default_queue, G_IO_ERROR_CANCELLED, message, &after);
      g_hash_table_iter_init (&iter, calls->series_queues);
      while (g_hash_table_iter_next (&iter, NULL, &value))
        fail_all_locked (calls, value, G_IO_ERROR_CANCELLED, message, &after);
    }
  fail_unserved_locked (calls, &after);
  check_idle_locked (calls, &after);
  g_mutex_unlock (&calls->mutex);

  after_run (calls, &after);
}

/* ---- public API ---------------------------------------------------------- */

static void
call_free (gpointer data)
{
  SluiceCall *call = data;

  g_assert (call->queued_at == NULL && call->assigned == NULL && call->timeout_source == NULL);
  g_free (call->series);
  g_free (call->name);
  g_variant_unref (call->args);
  g_clear_pointer (&call->result, g_variant_unref);
  g_clear_error (&call->error);
  g_clear_object (&call->cancellable);
  g_free (call);
}

/* clang-format off */
/**
 * sluice_task_queue_call_async:
 * @self: a task queue
 * @series: (nullable): the series of the call: a worker that serves it
 *   runs it; %NULL for the default series, which every worker serves
 * @name: the name of the function to call
 * @args: (nullable): the arguments of the function (a floating reference
 *   is sunk); %NULL for none, an empty tuple
 * @priority: the priority of the call: lower values run first (as with
 *   `G_PRIORITY_DEFAULT`), calls of equal priority in the order they were
 *   made; it is also the priority of the completion callback
 * @timeout_ms: how long the call may run on a worker, in milliseconds,
 *   or 0 (or less) for no limit
 * @cancellable: (nullable): a cancellable
 * @callback: (scope async) (nullable) (closure user_data): called when the
 *   call completes
 * @user_data: data for @callback
 *
 * Makes a *named call*: a worker hired with
 * [method@Sluice.TaskQueue.hire] that serves @series runs the function it
 * has under @name with @args, and its result (a [struct@GLib.Variant])
 * completes the operation. Collect it with
 * [method@Sluice.TaskQueue.call_finish]. This is the form of work that
 * can cross a process boundary ([class@Sluice.ProcessWorker]); the
 * queue's own threads, which run [method@Sluice.TaskQueue.run_async], do
 * not serve it.
 *
 * Calls wait in the queue until a qualified worker has room for one; a
 * worker takes the most urgent first, and among equals the oldest. A
 * call of a series that no hired worker serves waits, without holding up
 * other calls, until one is hired. A call whose worker is fired or
 * resigns goes back to the queue at its old place and runs on another
 * worker; a call whose worker was lost (its process died) three times
 * while running it fails with %SLUICE_ERROR_WORKER_LOST.
 *
 * A call that runs longer than @timeout_ms fails with
 * %G_IO_ERROR_TIMED_OUT; the function's cancellable is cancelled, and a
 * worker that can replaces what runs it (a process worker kills the
 * process). Cancelling @cancellable makes the call fail with
 * %G_IO_ERROR_CANCELLED at once; the function's cancellable is cancelled
 * too.
 *
 * If @self is shut down, the call fails with %SLUICE_ERROR_STOPPED; a call
 * still queued when it is shut down runs if a hired worker serves its
 * series, else fails with %SLUICE_ERROR_NO_WORKER (with %G_IO_ERROR_CANCELLED
 * if the shutdown cancels pending tasks).
 *
 * @callback runs on the thread-default main context of the caller,
 * dispatched from its main loop: never from inside this call, a
 * cancellation, a fire or a shutdown. Calls of one context and priority
 * return in the order they were queued to return, once their results were
 * decided (completed, failed, cancelled or timed out): that is the order
 * of the decisions made in one thread, but one decided in another thread
 * a moment earlier may be queued after it. A callback that iterates the
 * context (a nested main loop) sees the calls queued after its own return
 * there. A call made in the main loop iteration that would return it
 * returns in the next one, with those queued after it.
 *
 * This function is safe to call from any thread.
 */
/* clang-format on */
void
sluice_task_queue_call_async (SluiceTaskQueue *self,
                              const char *series,
                              const char *name,
                              GVariant *args,
                              int priority,
                              int timeout_ms,
                              GCancellable *cancellable,
                              GAsyncReadyCallback callback,
                              gpointer user_data)
{
  SluiceCalls *calls;
  SluiceCall *call;
  GTask *task;
  After after = { 0 };

  g_return_if_fail (SLUICE_IS_TASK_QUEUE (self));
  g_return_if_fail (name != NULL);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  calls = sluice_task_queue_ensure_calls (self);

  call = g_new0 (SluiceCall, 1);
  call->calls = calls;
  call->series = g_strdup (series);
  call->name = g_strdup (name);
  call->args = args != NULL ? g_variant_ref_sink (args) : g_variant_ref_sink (g_variant_new ("()"));
  call->priority = priority;
  call->timeout_ms = timeout_ms;

  call->cancellable = cancellable != NULL ? g_object_ref (cancellable) : NULL;

  task = g_task_new (self, NULL, callback, user_data);
  call->created = g_get_monotonic_time ();
  g_task_set_source_tag (task, sluice_task_queue_call_async);
  g_task_set_priority (task, priority);
  g_task_set_task_data (task, call, call_free);

  /* The dispatcher's reference, until the call returns. */
  g_mutex_lock (&calls->mutex);
  if (calls->shut_down)
    complete_locked (calls, task, NULL,
                     g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_STOPPED,
                                          _ ("The task queue has been shut down")),
                     &after);
  else
    {
      call->seq = calls->next_seq++;
      enqueue_locked (calls, task);
      if (cancellable != NULL)
        call->cancelled_id =
            g_cancellable_connect (cancellable, G_CALLBACK (call_cancelled_cb), task, NULL);
      dispatch_locked (calls);
    }
  g_mutex_unlock (&calls->mutex);

  after_run (calls, &after);
}

/**
 * sluice_task_queue_call_finish:
 * @self: a task queue
 * @result: the result given to the callback of
 *   [method@Sluice.TaskQueue.call_async]
 * @error: return location for an error
 *
 * Collects the result of [method@Sluice.TaskQueue.call_async]: what the
 * function returned, or its error (with its domain and code, also from
 * another process), %G_IO_ERROR_CANCELLED, %G_IO_ERROR_TIMED_OUT,
 * %SLUICE_ERROR_WORKER_LOST, %SLUICE_ERROR_NO_WORKER or
 * %SLUICE_ERROR_STOPPED as described there.
 *
 * This function is safe to call from any thread, normally from the
 * callback.
 *
 * Returns: (transfer full): the result, or %NULL with @error set
 */
GVariant *
sluice_task_queue_call_finish (SluiceTaskQueue *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (SLUICE_IS_TASK_QUEUE (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_async_result_is_tagged (result, sluice_task_queue_call_async), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/**
 * sluice_task_queue_hire:
 * @self: a task queue, not shut down
 * @worker: a worker, not hired by any queue
 *
 * Hires @worker: from now on it runs named calls
 * ([method@Sluice.TaskQueue.call_async]) of the default series and of the
 * series it serves ([method@Sluice.Worker.get_series]), up to its
 * capacity ([method@Sluice.Worker.get_capacity], read again when it
 * emits [signal@Sluice.Worker::capacity-changed]) at once. Calls of those
 * series that were waiting for a worker start at once. @self keeps a
 * reference on @worker until it is fired, or @self is finalized; shutting
 * @self down stops it ([method@Sluice.Worker.stop_async]).
 *
 * When @worker emits [signal@Sluice.Worker::resigned], @self fires it.
 *
 * @worker's [vfunc@Sluice.Worker.run_task] is called in whatever thread
 * hands a task over; [method@Sluice.TaskQueue.hire_full] with
 * %SLUICE_HIRE_RUN_ON_CONTEXT calls it on this thread's main context
 * instead. (Python's `hire` does that for a worker whose `do_run_task` is
 * written in Python.)
 *
 * This function is safe to call from any thread.
 */
void
sluice_task_queue_hire (SluiceTaskQueue *self, SluiceWorker *worker)
{
  sluice_task_queue_hire_full (self, worker, SLUICE_HIRE_NONE);
}

/* clang-format off */
/**
 * sluice_task_queue_hire_full:
 * @self: a task queue, not shut down
 * @worker: a worker, not hired by any queue
 * @flags: how to hire it
 *
 * Hires @worker as [method@Sluice.TaskQueue.hire] does, the way @flags
 * says.
 *
 * With %SLUICE_HIRE_RUN_ON_CONTEXT, the queue calls @worker only on the
 * thread-default main context of the calling thread
 * ([func@GLib.MainContext.ref_thread_default]), from a source of the
 * worker's own there, never from inside a call of the queue (a call, a
 * completion, a timeout, a fire, a shutdown):
 * [vfunc@Sluice.Worker.run_task] for each task handed over,
 * [vfunc@Sluice.Worker.task_timed_out] for a task it was given whose call
 * timed out (wherever the timeout fired), the cancel of the cancellable
 * ([method@Sluice.WorkerTask.get_cancellable]) of a task it was given
 * whose call was cancelled or timed out (so that its `cancelled` handlers
 * run there), and [vfunc@Sluice.Worker.stop_async] at the shutdown (its
 * callback comes back there), in the order they came, one at a time (a
 * run_task () that iterates the context gets the next only after it
 * returns), each at the priority of its call (the stop at
 * `G_PRIORITY_DEFAULT_IDLE`). Its
 * [vfunc@Sluice.Worker.get_series] and [vfunc@Sluice.Worker.get_capacity]
 * are read in this call, and again in the thread where it emits
 * [signal@Sluice.Worker::capacity-changed]. This is how a worker written
 * in JavaScript (GJS runs JavaScript on its main thread only) or in Python
 * (whose code should not run in the queue's or another worker's threads)
 * is hired beside workers that complete their tasks in threads, as a
 * [class@Sluice.ThreadWorker] does. The context must be iterated while
 * @worker is hired, and until the queue's shutdown has completed.
 *
 * A task handed over counts against @worker's capacity until it is given
 * and completed, and its call's timeout runs from the moment it is handed
 * over. A call that is decided before its task's turn (it timed out, or
 * its cancellable was cancelled: it fails with %G_IO_ERROR_CANCELLED) is
 * never given to @worker, which hears nothing of it.
 *
 * Firing @worker ([method@Sluice.TaskQueue.fire], or its
 * [signal@Sluice.Worker::resigned]) takes the tasks handed over but not
 * given yet back to the queue, at their old place, with those it holds,
 * in the same step: they are never given to @worker, and it is called no
 * more, but for [vfunc@Sluice.Worker.crash] and the cancel of the
 * cancellables of the tasks it held. Fired in a thread that iterates the
 * context, or in the hiring thread while no other thread iterates it, it
 * crashes at once; fired from another thread (the hiring thread too while
 * another one iterates the context), its crash (then those cancels) comes on the context, after the
 * run_task () that may be under way there (or about to start: the source
 * had taken its task when the fire came; at most one): that one finishes,
 * but its task was taken back already (its completion is ignored, its
 * cancellable is cancelled after the crash) and runs again on another
 * worker. The crash is the last call @worker gets.
 *
 * This function is safe to call from any thread.
 */
/* clang-format on */
void
sluice_task_queue_hire_full (SluiceTaskQueue *self, SluiceWorker *worker, SluiceHireFlags flags)
{
  SluiceCalls *calls;
  SluiceHired *hired;
  After after = { 0 };

  g_return_if_fail (SLUICE_IS_TASK_QUEUE (self));
  g_return_if_fail (SLUICE_IS_WORKER (worker));
  g_return_if_fail ((flags & ~SLUICE_HIRE_RUN_ON_CONTEXT) == 0);

  calls = sluice_task_queue_ensure_calls (self);

  hired = g_new0 (SluiceHired, 1);
  hired->worker = g_object_ref (worker);
  hired->series = sluice_worker_get_series (worker);
  hired->capacity = sluice_worker_get_capacity (worker);
  hired->held = g_hash_table_new (NULL, NULL);
  if (flags & SLUICE_HIRE_RUN_ON_CONTEXT)
    {
      hired->context = g_main_context_ref_thread_default ();
      hired->thread = g_thread_ref (g_thread_self ());
    }

  g_mutex_lock (&calls->mutex);
  if (calls->shut_down || find_hired_locked (calls, worker, NULL) != NULL)
    {
      gboolean shut_down = calls->shut_down;

      g_mutex_unlock (&calls->mutex);
      hired_free (hired);
      g_log (G_LOG_DOMAIN, G_LOG_LEVEL_CRITICAL, "%s: %s", G_STRFUNC,
             shut_down ? "the task queue is shut down" : "the worker is hired already");
      return;
    }
  hired->resigned_id =
      g_signal_connect (worker, "resigned", G_CALLBACK (worker_resigned_cb), calls);
  hired->capacity_id =
      g_signal_connect (worker, "capacity-changed", G_CALLBACK (worker_capacity_changed_cb), calls);
  g_ptr_array_add (calls->hired, hired);
  dispatch_locked (calls);
  g_mutex_unlock (&calls->mutex);

  after_run (calls, &after);
  /* In case it changed before the handler was connected. */
  worker_capacity_changed_cb (worker, calls);
}

/**
 * sluice_task_queue_fire:
 * @self: a task queue
 * @worker: a worker hired by @self
 *
 * Fires @worker: @self crashes it ([method@Sluice.Worker.crash]) and puts
 * the tasks it had not finished back in the queue, each at its old place,
 * to run on other qualified workers (their calls are not failed), then
 * drops its reference on @worker. Results @worker delivers later are
 * ignored. A call that no hired worker serves any more waits for one; if
 * @self is shut down, it fails with %SLUICE_ERROR_NO_WORKER.
 *
 * This function is safe to call from any thread.
 *
 * Returns: %TRUE if @worker was hired by @self (and is fired now)
 */
gboolean
sluice_task_queue_fire (SluiceTaskQueue *self, SluiceWorker *worker)
{
  SluiceCalls *calls;

  g_return_val_if_fail (SLUICE_IS_TASK_QUEUE (self), FALSE);
  g_return_val_if_fail (SLUICE_IS_WORKER (worker), FALSE);

  calls = sluice_task_queue_ensure_calls (self);
  return calls_fire (calls, worker);
}

/**
 * sluice_task_queue_get_n_calls:
 * @self: a task queue
 *
 * Gets the number of named calls of @self that have not completed: queued
 * or held by a worker.
 *
 * This function is safe to call from any thread.
 *
 * Returns: the number of calls
 */
guint
sluice_task_queue_get_n_calls (SluiceTaskQueue *self)
{
  SluiceCalls *calls;
  guint n;

  g_return_val_if_fail (SLUICE_IS_TASK_QUEUE (self), 0);

  calls = sluice_task_queue_ensure_calls (self);
  g_mutex_lock (&calls->mutex);
  n = calls->n_queued + calls->n_held;
  g_mutex_unlock (&calls->mutex);
  return n;
}
