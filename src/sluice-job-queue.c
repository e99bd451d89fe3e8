/* sluice-job-queue.c: jobs run in FIFO order per channel, as a cooperative task
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "sluice-private.h"

/**
 * SluiceJobQueue:
 *
 * Jobs queued on named *channels*: jobs of one channel run one at a time,
 * in the order they were put; jobs of different channels do not wait for
 * each other (after spreadflow's `JobQueue`). A channel is thus a
 * serialisation per key: put every job that touches one file, one account,
 * one connection on the channel named after it.
 *
 * [method@Sluice.JobQueue.put_async] queues a [callback@Sluice.JobFunc]; the
 * put completes with the job's result. A job runs on the queue's context
 * and completes its [class@Sluice.Job] handle at once or later, from any
 * thread (it may start asynchronous work first); while it is pending its
 * channel is blocked, the other channels are not.
 *
 * The queue runs as a cooperative task ([method@Sluice.JobQueue.cooperate]):
 * each step runs the next ready job; with none ready the task waits, at no
 * cost, until a put or a completion makes one ready. With
 * [property@Sluice.JobQueue:stop-when-empty] the task ends once nothing is
 * queued or running. [method@Sluice.JobQueue.run_next] runs the next ready
 * job without a cooperator (spreadflow's `JobQueue.get()`). Ready channels take turns
 * (spreadflow's JobQueue scans its whole backlog for the first job of a free channel;
 * here each free channel with jobs waits in a ring, so finding the next job
 * costs the same however long the backlog).
 *
 * Cancelling the cancellable of a queued job removes it: it never runs and
 * its put fails with %G_IO_ERROR_CANCELLED. A running job was given that
 * cancellable ([method@Sluice.Job.get_cancellable]): cancelling it tells the
 * job, and the put fails with %G_IO_ERROR_CANCELLED at once (the channel
 * stays blocked until the job completes its handle).
 * [method@Sluice.JobQueue.clear] drops every queued job, and their puts fail
 * with %G_IO_ERROR_CANCELLED (spreadflow's JobQueue left them waiting for ever).
 *
 * ## Threads and callbacks
 *
 * The queue belongs to the thread that created it, which runs its context
 * (the thread-default one at creation). Call its functions there; the
 * [class@Sluice.Job] completion functions are safe from any thread. The put
 * callbacks and the destroy notifies of job data are always dispatched from
 * a source on the queue's context, never from inside a call you make:
 * completing a job in its own function answers its put later. A put is
 * answered from the queue's own source at %G_PRIORITY_DEFAULT_IDLE (the
 * priority of the cooperator's ticks, so that the answers and the tick that
 * runs the jobs they put share one main-loop iteration), or, for a job that
 * completed in its function during a tick the cooperator's own source
 * dispatched (the default scheduler), at the end of that job's step.
 */

/**
 * SluiceJob:
 *
 * The handle of a running job of a [class@Sluice.JobQueue]: the job completes
 * it with a result or an error, once. It is also the
 * [iface@Gio.AsyncResult] of the put.
 *
 * A handle nobody holds once its put was answered is reused by the queue for
 * a later put. A handle has no properties and emits no signal; should a
 * signal handler be connected to it anyway, the handler is destroyed within
 * 16 reuses of the handle, or with the queue, not when the job ends.
 */

typedef enum
{
  PROP_0,
  PROP_STOP_WHEN_EMPTY,
  N_PROPS
} JobQueueProperty;

static GParamSpec *props[N_PROPS];

typedef struct
{
  gint ref_count;
  char *name;
  GQueue jobs; /* queued, by SluiceJob.link */
  gboolean busy;
  gboolean in_ready;
  GList ready_link;
} Channel;

typedef enum
{
  JOB_QUEUED,
  JOB_RUNNING,
  JOB_FINISHED, /* completed, or dropped from the backlog */
} JobState;

struct _SluiceJob
{
  GObject parent_instance;

  /* job_reset() clears these for reuse. The fields every job touches come
   * first, close together: a queue has many jobs in flight, and a handle's
   * lines are out of the cache by the time it runs. With the GObject header,
   * the first line holds what running a job reads, the second what
   * completing and answering it reads. */
  Channel *channel; /* one reference */
  SluiceJobFunc func;
  gpointer func_data;
  GAsyncReadyCallback callback;
  gpointer user_data;
  /* In channel->jobs while queued, then in queue->remote_done or
   * queue->deliveries once completed (or dropped). */
  GList link;
  SluiceJobQueue *queue; /* held by the queue's n_live until answered, or owns_queue */
  gpointer result;
  GError *error;
  gint completed; /* atomic: the handle was completed */
  /* Bytes of their own, not bit-fields: job_finish() may write one in
   * another thread. */
  guint8 state; /* a JobState */
  guint8 answered;
  guint8 result_is_value;
  guint8 owns_queue; /* the handle outlived its answer: a reference */
  GCancellable *cancellable;
  GDestroyNotify result_destroy;
  GDestroyNotify func_data_destroy;
  GSource *cancel_source;
  /* Kept across reuses: how many times the handle was reused since its
   * signal handlers were last destroyed (job_queue_recycle_or_unref()). */
  guint8 n_unchecked_reuses;
};

#define JOB_POOL_SIZE 32
/* A pooled handle's signal handlers are destroyed on every this many reuses
 * of it (see job_queue_recycle_or_unref()). */
#define JOB_HANDLER_CHECK_INTERVAL 16

struct _SluiceJobQueue
{
  GObject parent_instance;

  GMainContext *context;
  SluiceThreadId owner_thread; /* sluice_thread_id_self () */
  GHashTable *channels;        /* name -> Channel, while it has jobs or one running */
  GQueue ready;                /* Channels not busy with jobs queued */
  guint n_queued;
  guint n_running;
  /* Jobs put and not released after their answer; while there are any, the
   * queue holds a reference on itself (one for all, not one per job). */
  guint n_live;
  gboolean stop_when_empty;

  SluiceCooperativeTask *task;  /* weak: cleared by task_gone() */
  SluiceCooperator *cooperator; /* task's, which holds it */
  gboolean task_waiting;

  GQueue deliveries; /* jobs whose put is to be answered */
  GSource *event_source;
  gboolean event_set; /* event_source was set for deliveries */
  /* The job a step runs, when the step answers its put itself. */
  SluiceJob *answering_job;

  GMutex lock;
  GQueue remote_done; /* jobs completed in other threads */
  gint n_remote_done; /* atomic: remote_done.length, read without the lock */

  /* Handles of answered jobs nobody else held, cleared for the next puts:
   * creating and finalizing a GObject cost most of a trivial job. */
  SluiceJob *pool[JOB_POOL_SIZE];
  guint n_pool;
};

static void sluice_job_async_result_iface_init (GAsyncResultIface *iface);

G_DEFINE_FINAL_TYPE (SluiceJobQueue, sluice_job_queue, G_TYPE_OBJECT)
G_DEFINE_FINAL_TYPE_WITH_CODE (SluiceJob,
                               sluice_job,
                               G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (G_TYPE_ASYNC_RESULT,
                                                      sluice_job_async_result_iface_init))

static void job_queue_dispatch_events (SluiceJobQueue *self);

/* --- channels --- */

static void
channel_unref (Channel *channel)
{
  if (--channel->ref_count > 0)
    return;
  g_free (channel->name);
  g_free (channel);
}

static void
job_queue_mark_ready (SluiceJobQueue *self, Channel *channel)
{
  if (channel->busy || channel->in_ready || channel->jobs.length == 0)
    return;
  channel->in_ready = TRUE;
  sluice_queue_push_tail_link (&self->ready, &channel->ready_link);
}

/* A channel with nothing queued or running leaves the table. */
static void
job_queue_forget_if_idle (SluiceJobQueue *self, Channel *channel)
{
  if (channel->busy || channel->jobs.length > 0)
    return;
  if (channel->in_ready)
    {
      channel->in_ready = FALSE;
      g_queue_unlink (&self->ready, &channel->ready_link);
    }
  g_hash_table_remove (self->channels, channel->name);
}

/* --- the cooperative task --- */

static void
job_queue_wake_task (SluiceJobQueue *self)
{
  if (!self->task_waiting)
    return;
  self->task_waiting = FALSE;
  if (self->task != NULL)
    sluice_cooperative_task_wake (self->task);
}

/* --- the event source --- */

/* sluice_wake_source_new()'s, holding the queue weakly. */
static void
queue_events_dispatch (gpointer self)
{
  job_queue_dispatch_events (self);
}

/* --- jobs --- */

static void
job_drop_cancel_source (SluiceJob *job)
{
  if (job->cancel_source == NULL)
    return;
  g_source_destroy (job->cancel_source);
  g_clear_pointer (&job->cancel_source, g_source_unref);
}

/* Answers the put of @job later, from the event source or from the step
 * that runs it (see job_queue_step()), which take over the caller's
 * reference. */
static void
job_queue_deliver_later (SluiceJobQueue *self, SluiceJob *job)
{
  sluice_queue_push_tail_link (&self->deliveries, &job->link);
  /* Setting the source takes the context's lock: once per batch. */
  if (job != self->answering_job && !self->event_set)
    {
      self->event_set = TRUE;
      sluice_wake_source_set (self->event_source);
    }
}

/* The answer to the put, once; on the context. */
static void
job_answer (SluiceJob *job)
{
  /* Only a job with a cancellable can be answered by its cancellation in
   * one thread while it completes in another. */
  if (job->cancellable != NULL)
    g_mutex_lock (&job->queue->lock);
  if (job->answered)
    {
      if (job->cancellable != NULL)
        g_mutex_unlock (&job->queue->lock);
      return;
    }
  job->answered = TRUE;
  if (job->cancellable != NULL)
    g_mutex_unlock (&job->queue->lock);
  if (job->callback != NULL)
    job->callback ((GObject *) job->queue, (GAsyncResult *) job, job->user_data);
}

static void
job_release_data (SluiceJob *job)
{
  job_drop_cancel_source (job);
  if (job->func_data_destroy != NULL)
    g_steal_pointer (&job->func_data_destroy) (g_steal_pointer (&job->func_data));
}

/* Releases all @job holds but its queue: to finalize or reuse it. */
static void
job_clear_but_queue (SluiceJob *job)
{
  job_release_data (job);
  if (job->result_destroy != NULL)
    job->result_destroy (job->result);
  g_clear_error (&job->error);
  g_clear_object (&job->cancellable);
  if (job->channel != NULL)
    channel_unref (job->channel);
}

/* Clears a released handle (job_clear_but_queue() done) for its next put.
 * Field by field: a memset() of the span compiled to `rep stos`, slow to
 * start for 150 bytes. */
static void
job_reset (SluiceJob *job)
{
  job->channel = NULL;
  job->func = NULL;
  job->func_data = NULL;
  job->callback = NULL;
  job->user_data = NULL;
  job->link.next = job->link.prev = NULL;
  job->queue = NULL;
  job->result = NULL;
  job->error = NULL;
  job->completed = 0;
  job->state = JOB_QUEUED;
  job->answered = FALSE;
  job->result_is_value = FALSE;
  job->owns_queue = FALSE;
  job->cancellable = NULL;
  job->result_destroy = NULL;
  job->func_data_destroy = NULL;
  job->cancel_source = NULL;
}

/* Drops the delivery's reference to @job, on the owner thread. The caller
 * holds @self (its n_live is not given back yet). A handle nobody else holds
 * (no other reference, no weak reference or data set on it) is cleared and
 * kept for a coming put instead of being finalized.
 *
 * Signal handlers connected to a handle (it emits none: a job has no
 * properties) are destroyed on every JOB_HANDLER_CHECK_INTERVAL-th reuse of
 * it, and when it is finalized, not on every reuse:
 * g_signal_handlers_destroy() takes GObject's global signal lock, and GLib
 * 2.74 has no lock-free test for handlers; that lock and its hash lookup
 * cost about 6 % of a trivial job (bench/cooperator-run). Handlers connected
 * per job thus pile up to that many on a handle, never without bound. */
static void
job_queue_recycle_or_unref (SluiceJobQueue *self, SluiceJob *job)
{
  GObject *object = (GObject *) job;

  if (self->n_pool < JOB_POOL_SIZE && g_atomic_int_get (&object->ref_count) == 1 &&
      g_atomic_pointer_get (&object->qdata) == NULL)
    {
      if (++job->n_unchecked_reuses >= JOB_HANDLER_CHECK_INTERVAL)
        {
          job->n_unchecked_reuses = 0;
          g_signal_handlers_destroy (job);
        }
      /* A handler's destroy notify may have taken a reference. */
      if (g_atomic_int_get (&object->ref_count) == 1 &&
          g_atomic_pointer_get (&object->qdata) == NULL)
        {
          job_clear_but_queue (job);
          job_reset (job);
          self->pool[self->n_pool++] = job;
          return;
        }
    }
  /* Someone else holds the handle: it holds the queue from now on. */
  job->owns_queue = TRUE;
  g_object_ref (self);
  g_object_unref (job);
}

/* A completed job frees its channel; on the owner thread. Its delivery
 * takes over the running job's reference. */
static void
job_queue_job_done (SluiceJobQueue *self, SluiceJob *job)
{
  Channel *channel = job->channel;

  job->state = JOB_FINISHED;
  self->n_running--;
  /* A busy channel is never in the ready ring: it goes there now if it has
   * jobs queued, else it leaves the table. (Not job_queue_mark_ready() and
   * job_queue_forget_if_idle(): reading busy and in_ready back right after
   * storing busy stalled the CPU on every job, the load wider than the store
   * it had to wait for.) */
  g_assert (!channel->in_ready);
  channel->busy = FALSE;
  if (channel->jobs.length > 0)
    {
      channel->in_ready = TRUE;
      sluice_queue_push_tail_link (&self->ready, &channel->ready_link);
    }
  else
    g_hash_table_remove (self->channels, channel->name);
  job_queue_wake_task (self);
  job_queue_deliver_later (self, job);
}

static void
job_queue_drain_remote (SluiceJobQueue *self)
{
  while (g_atomic_int_get (&self->n_remote_done) > 0)
    {
      GList *link;

      g_mutex_lock (&self->lock);
      link = g_queue_pop_head_link (&self->remote_done);
      g_atomic_int_dec_and_test (&self->n_remote_done);
      g_mutex_unlock (&self->lock);
      job_queue_job_done (self, link->data);
    }
}

static void
task_gone (gpointer queue, GObject *where_the_task_was)
{
  ((SluiceJobQueue *) queue)->task = NULL;
}

/* Answers the puts of the completed jobs, in the order they completed. The
 * caller holds @self. */
static void
job_queue_answer_deliveries (SluiceJobQueue *self)
{
  GList *link;

  while ((link = sluice_queue_pop_head_link (&self->deliveries)) != NULL)
    {
      SluiceJob *job = link->data;

      job_answer (job);
      job_release_data (job);
      job_queue_recycle_or_unref (self, job);
      if (--self->n_live == 0)
        g_object_unref (self);
    }
}

static void
job_queue_dispatch_events (SluiceJobQueue *self)
{
  job_queue_drain_remote (self);
  job_queue_answer_deliveries (self);
  self->event_set = FALSE;
}

static gboolean
job_on_owner_thread (SluiceJobQueue *self)
{
  return sluice_thread_id_is_self (self->owner_thread) || g_main_context_is_owner (self->context);
}

/* Marks @job completed without a barrier (g_atomic_int_set() is an
 * exchange on x86, as costly as a compare-and-exchange). */
static inline void
job_set_completed_relaxed (SluiceJob *job)
{
#if defined(__GNUC__) || defined(__clang__)
  __atomic_store_n (&job->completed, 1, __ATOMIC_RELAXED);
#else
  g_atomic_int_set (&job->completed, 1);
#endif
}

static void
job_finish (SluiceJob *self,
            gpointer result,
            GDestroyNotify result_destroy,
            gboolean is_value,
            GError *error)
{
  SluiceJobQueue *queue = self->queue;
  gboolean on_owner_thread = job_on_owner_thread (queue);
  gboolean first;

  /* Completing a job twice is a programmer error; the second completion is
   * caught while the handle was not answered and reused yet. On the owner
   * thread, a plain test and store: only a completion racing it in another
   * thread, the same error, could slip through (a compare-and-exchange
   * drains the CPU's store buffer: 4 % of a trivial job). Elsewhere, the
   * compare-and-exchange decides between racing completions. */
  if (on_owner_thread)
    {
      first = !g_atomic_int_get (&self->completed);
      if (first)
        job_set_completed_relaxed (self);
    }
  else
    first = g_atomic_int_compare_and_exchange (&self->completed, 0, 1);
  if (!first)
    {
      g_log (G_LOG_DOMAIN, G_LOG_LEVEL_CRITICAL,
             "A SluiceJob of channel '%s' was completed twice; the second completion is "
             "ignored",
             self->channel->name);
      if (result_destroy != NULL)
        result_destroy (result);
      g_clear_error (&error);
      return;
    }
  /* A put answered already (cancelled while running) drops the result;
   * only a job with a cancellable can be. */
  if (self->cancellable != NULL)
    g_mutex_lock (&queue->lock);
  if (self->answered)
    {
      if (self->cancellable != NULL)
        g_mutex_unlock (&queue->lock);
      if (result_destroy != NULL)
        result_destroy (result);
      g_clear_error (&error);
    }
  else
    {
      self->result = result;
      self->result_destroy = result_destroy;
      self->result_is_value = is_value;
      self->error = error;
      if (self->cancellable != NULL)
        g_mutex_unlock (&queue->lock);
    }

  if (on_owner_thread)
    {
      job_queue_job_done (queue, self);
      return;
    }
  /* Once pushed, the job may be answered and released on the context at
   * any moment, and the queue with it: hold the queue until it is told. */
  g_object_ref (queue);
  g_mutex_lock (&queue->lock);
  g_queue_push_tail_link (&queue->remote_done, &self->link);
  g_atomic_int_inc (&queue->n_remote_done);
  g_mutex_unlock (&queue->lock);
  sluice_wake_source_set (queue->event_source);
  g_object_unref (queue);
}

static GError *
cancelled_error (void)
{
  return g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, _ ("The job was cancelled"));
}

static gboolean
job_cancelled (GCancellable *cancellable, gpointer user_data)
{
  SluiceJob *job = user_data;
  SluiceJobQueue *queue = job->queue;

  if (job->state == JOB_QUEUED)
    {
      g_queue_unlink (&job->channel->jobs, &job->link);
      queue->n_queued--;
      job_queue_forget_if_idle (queue, job->channel);
      job->state = JOB_FINISHED;
      job->error = cancelled_error ();
      job_queue_deliver_later (queue, job); /* with the backlog's reference */
    }
  else if (job->state == JOB_RUNNING)
    {
      gboolean answer_now = FALSE;

      /* It has the cancellable: its put is answered now (unless it has
       * completed already), its channel stays blocked until it completes. */
      g_mutex_lock (&queue->lock);
      if (!g_atomic_int_get (&job->completed) && !job->answered)
        {
          job->error = cancelled_error ();
          job->answered = TRUE;
          answer_now = TRUE;
        }
      g_mutex_unlock (&queue->lock);
      if (answer_now && job->callback != NULL)
        {
          g_object_ref (job);
          job->callback (G_OBJECT (queue), G_ASYNC_RESULT (job), job->user_data);
          g_object_unref (job);
        }
    }
  g_clear_pointer (&job->cancel_source, g_source_unref);
  return G_SOURCE_REMOVE;
}

/* --- SluiceJob --- */

static void
sluice_job_init (SluiceJob *self)
{
  self->link.data = self;
}

static void
sluice_job_finalize (GObject *object)
{
  SluiceJob *self = SLUICE_JOB (object);

  job_clear_but_queue (self);
  if (self->owns_queue)
    g_object_unref (self->queue);

  G_OBJECT_CLASS (sluice_job_parent_class)->finalize (object);
}

static void
sluice_job_class_init (SluiceJobClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = sluice_job_finalize;
}

static gpointer
sluice_job_get_user_data (GAsyncResult *result)
{
  return SLUICE_JOB (result)->user_data;
}

static GObject *
sluice_job_ref_source_object (GAsyncResult *result)
{
  return g_object_ref (G_OBJECT (SLUICE_JOB (result)->queue));
}

static gboolean
sluice_job_is_tagged (GAsyncResult *result, gpointer source_tag)
{
  return source_tag == sluice_job_queue_put_async;
}

static void
sluice_job_async_result_iface_init (GAsyncResultIface *iface)
{
  iface->get_user_data = sluice_job_get_user_data;
  iface->get_source_object = sluice_job_ref_source_object;
  iface->is_tagged = sluice_job_is_tagged;
}

/**
 * sluice_job_get_channel:
 * @self: a job
 *
 * Returns the channel the job was put on.
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer none): the job's channel
 */
const char *
sluice_job_get_channel (SluiceJob *self)
{
  g_return_val_if_fail (SLUICE_IS_JOB (self), NULL);

  return self->channel->name;
}

/**
 * sluice_job_get_cancellable:
 * @self: a job
 *
 * Returns the cancellable given to the put: cancelled, the put fails with
 * %G_IO_ERROR_CANCELLED, and the job should stop its work and complete.
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer none) (nullable): the job's cancellable
 */
GCancellable *
sluice_job_get_cancellable (SluiceJob *self)
{
  g_return_val_if_fail (SLUICE_IS_JOB (self), NULL);

  return self->cancellable;
}

/**
 * sluice_job_complete: (skip)
 * @self: a running job
 * @result: (nullable) (transfer full): the job's result, for the put
 * @result_destroy: (nullable): frees @result if the put does not take it
 *
 * Completes the job with @result: its channel is free again, and its put is
 * answered from a source on the queue's context. Complete a job once.
 *
 * This function is safe to call from any thread.
 */
void
sluice_job_complete (SluiceJob *self, gpointer result, GDestroyNotify result_destroy)
{
  g_return_if_fail (SLUICE_IS_JOB (self));

  job_finish (self, result, result_destroy, FALSE, NULL);
}

static void
value_free (gpointer value)
{
  g_value_unset (value);
  g_free (value);
}

/**
 * sluice_job_complete_value: (rename-to sluice_job_complete)
 * @self: a running job
 * @value: (nullable): the job's result, copied; %NULL for none
 *
 * Completes the job with a copy of @value, which the put's
 * [method@Sluice.JobQueue.put_finish_value] returns: the form language
 * bindings use. Otherwise as [method@Sluice.Job.complete].
 *
 * This function is safe to call from any thread.
 */
void
sluice_job_complete_value (SluiceJob *self, const GValue *value)
{
  GValue *copy = NULL;

  g_return_if_fail (SLUICE_IS_JOB (self));
  g_return_if_fail (value == NULL || G_IS_VALUE (value));

  if (value != NULL)
    {
      copy = g_new0 (GValue, 1);
      g_value_init (copy, G_VALUE_TYPE (value));
      g_value_copy (value, copy);
    }
  job_finish (self, copy, copy != NULL ? value_free : NULL, TRUE, NULL);
}

/**
 * sluice_job_fail:
 * @self: a running job
 * @error: (transfer full): why it failed
 *
 * Completes the job with a failure: its put fails with @error.
 *
 * This function is safe to call from any thread.
 */
void
sluice_job_fail (SluiceJob *self, GError *error)
{
  g_return_if_fail (SLUICE_IS_JOB (self));
  g_return_if_fail (error != NULL);

  job_finish (self, NULL, NULL, FALSE, error);
}

/* --- SluiceJobQueue --- */

static void
sluice_job_queue_init (SluiceJobQueue *self)
{
  self->context = g_main_context_ref_thread_default ();
  self->owner_thread = sluice_thread_id_self ();
  self->channels =
      g_hash_table_new_full (g_str_hash, g_str_equal, NULL, (GDestroyNotify) channel_unref);
  g_mutex_init (&self->lock);

  /* At the priority of the cooperator's ticks: a job completed from a source
   * of its own (a timeout, an I/O callback) wakes the task and sets this
   * source in one dispatch; at one priority both run in the next iteration
   * (in either order: a step answers the deliveries waiting too), so the
   * jobs the answers' callbacks put run in that tick (at a higher priority the answers took an
   * iteration of their own: 15,001 iterations instead of 10,001 for bench/cooperator-run's jobs).
   */
  self->event_source = sluice_wake_source_new (self, queue_events_dispatch, "SluiceJobQueue events",
                                               G_PRIORITY_DEFAULT_IDLE, self->context);
}

static void
sluice_job_queue_finalize (GObject *object)
{
  SluiceJobQueue *self = SLUICE_JOB_QUEUE (object);

  /* Queued, running and undelivered jobs hold references: none is left. */
  g_assert (self->n_queued == 0 && self->n_running == 0 && self->deliveries.length == 0 &&
            self->n_live == 0);

  while (self->n_pool > 0)
    g_object_unref (self->pool[--self->n_pool]);
  g_hash_table_unref (self->channels);
  if (self->task != NULL)
    g_object_weak_unref (G_OBJECT (self->task), task_gone, self);
  g_source_destroy (self->event_source);
  g_source_unref (self->event_source);
  g_mutex_clear (&self->lock);
  g_main_context_unref (self->context);

  G_OBJECT_CLASS (sluice_job_queue_parent_class)->finalize (object);
}

static void
sluice_job_queue_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  SluiceJobQueue *self = SLUICE_JOB_QUEUE (object);

  switch ((JobQueueProperty) prop_id)
    {
    case PROP_STOP_WHEN_EMPTY:
      g_value_set_boolean (value, self->stop_when_empty);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_job_queue_set_property (GObject *object,
                               guint prop_id,
                               const GValue *value,
                               GParamSpec *pspec)
{
  SluiceJobQueue *self = SLUICE_JOB_QUEUE (object);

  switch ((JobQueueProperty) prop_id)
    {
    case PROP_STOP_WHEN_EMPTY:
      sluice_job_queue_set_stop_when_empty (self, g_value_get_boolean (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_job_queue_class_init (SluiceJobQueueClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = sluice_job_queue_finalize;
  object_class->get_property = sluice_job_queue_get_property;
  object_class->set_property = sluice_job_queue_set_property;

  /**
   * SluiceJobQueue:stop-when-empty:
   *
   * Whether the queue's cooperative task ends once no job is queued or
   * running (%FALSE by default: it waits for more).
   */
  props[PROP_STOP_WHEN_EMPTY] =
      g_param_spec_boolean ("stop-when-empty", NULL, NULL, FALSE,
                            G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, props);
}

/**
 * sluice_job_queue_new:
 *
 * Creates an empty job queue on the thread-default main context of the
 * calling thread, which must be the thread that runs that context. Run its
 * jobs with [method@Sluice.JobQueue.cooperate] (or
 * [method@Sluice.JobQueue.run_next]).
 *
 * Returns: (transfer full): a new job queue
 */
SluiceJobQueue *
sluice_job_queue_new (void)
{
  return g_object_new (SLUICE_TYPE_JOB_QUEUE, NULL);
}

/**
 * sluice_job_queue_put_async:
 * @self: a job queue
 * @channel: the channel: jobs of one channel run one at a time, in order
 * @job: (scope notified) (closure job_data) (destroy job_data_destroy): the
 *   job function
 * @job_data: data for @job
 * @job_data_destroy: (nullable): frees @job_data, from a source on the
 *   queue's context, once the put was answered
 * @cancellable: (nullable): removes the job if it is still queued; given to
 *   the job if it runs
 * @callback: (scope async) (closure user_data): called on the queue's
 *   context with the job's result
 * @user_data: data for @callback
 *
 * Queues @job on @channel. It runs (never inside this call) when the jobs
 * put on @channel before it have completed, and the put completes with its
 * result.
 *
 * Call it from the queue's thread.
 */
void
sluice_job_queue_put_async (SluiceJobQueue *self,
                            const char *channel,
                            SluiceJobFunc job,
                            gpointer job_data,
                            GDestroyNotify job_data_destroy,
                            GCancellable *cancellable,
                            GAsyncReadyCallback callback,
                            gpointer user_data)
{
  SluiceJob *handle;
  Channel *ch;

  g_return_if_fail (SLUICE_IS_JOB_QUEUE (self));
  g_return_if_fail (channel != NULL);
  g_return_if_fail (job != NULL);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  ch = g_hash_table_lookup (self->channels, channel);
  if (ch == NULL)
    {
      ch = g_new0 (Channel, 1);
      ch->ref_count = 1;
      ch->name = g_strdup (channel);
      ch->ready_link.data = ch;
      g_hash_table_insert (self->channels, ch->name, ch);
    }

  if (self->n_pool > 0)
    handle = self->pool[--self->n_pool];
  else
    handle = g_object_new (SLUICE_TYPE_JOB, NULL);
  if (self->n_live++ == 0)
    g_object_ref (self);
  handle->queue = self;
  handle->channel = ch;
  ch->ref_count++;
  handle->func = job;
  handle->func_data = job_data;
  handle->func_data_destroy = job_data_destroy;
  handle->callback = callback;
  handle->user_data = user_data;
  handle->state = JOB_QUEUED;
  /* The backlog holds the handle's one reference. */
  sluice_queue_push_tail_link (&ch->jobs, &handle->link);
  self->n_queued++;
  if (cancellable != NULL)
    {
      handle->cancellable = g_object_ref (cancellable);
      handle->cancel_source = g_cancellable_source_new (cancellable);
      g_source_set_callback (handle->cancel_source, G_SOURCE_FUNC (job_cancelled), handle, NULL);
      g_source_set_static_name (handle->cancel_source, "SluiceJob cancel");
      g_source_attach (handle->cancel_source, self->context);
    }
  job_queue_mark_ready (self, ch);
  job_queue_wake_task (self);
}

static SluiceJob *
job_from_result (SluiceJobQueue *self, GAsyncResult *result)
{
  g_return_val_if_fail (SLUICE_IS_JOB_QUEUE (self), NULL);
  g_return_val_if_fail (SLUICE_IS_JOB (result), NULL);
  g_return_val_if_fail (((SluiceJob *) result)->queue == self, NULL);

  return (SluiceJob *) result;
}

/**
 * sluice_job_queue_put_finish: (skip)
 * @self: a job queue
 * @result: the result given to the put's callback
 * @error: return location for an error
 *
 * Finishes [method@Sluice.JobQueue.put_async].
 *
 * Returns: (transfer full) (nullable): the result the job completed with
 *   (for a job completed with [method@Sluice.Job.complete_value], a
 *   [struct@GObject.Value] the caller unsets and frees); %NULL with @error
 *   set when the job failed, or %G_IO_ERROR_CANCELLED when it was cancelled
 *   or cleared
 */
gpointer
sluice_job_queue_put_finish (SluiceJobQueue *self, GAsyncResult *result, GError **error)
{
  SluiceJob *job = job_from_result (self, result);

  g_return_val_if_fail (job != NULL, NULL);

  if (job->error != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&job->error));
      return NULL;
    }
  job->result_destroy = NULL;
  return g_steal_pointer (&job->result);
}

/**
 * sluice_job_queue_put_finish_value: (rename-to sluice_job_queue_put_finish)
 * @self: a job queue
 * @result: the result given to the put's callback
 * @error: return location for an error
 *
 * Finishes [method@Sluice.JobQueue.put_async] for a job that completed with
 * [method@Sluice.Job.complete_value]: the form language bindings use. A job
 * completed with no value, or with a pointer, yields it as a
 * %G_TYPE_POINTER value.
 *
 * Returns: (nullable) (transfer full): the job's result; %NULL with @error
 *   set when the job failed, or %G_IO_ERROR_CANCELLED when it was cancelled
 *   or cleared. Free it with g_boxed_free() (%G_TYPE_VALUE), or
 *   g_value_unset() and g_free().
 */
GValue *
sluice_job_queue_put_finish_value (SluiceJobQueue *self, GAsyncResult *result, GError **error)
{
  SluiceJob *job = job_from_result (self, result);
  GValue *value;

  g_return_val_if_fail (job != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (job->error != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&job->error));
      return NULL;
    }
  value = g_new0 (GValue, 1);
  if (job->result_is_value && job->result != NULL)
    {
      g_value_init (value, G_VALUE_TYPE ((GValue *) job->result));
      g_value_copy (job->result, value);
    }
  else
    {
      g_value_init (value, G_TYPE_POINTER);
      g_value_set_pointer (value, g_steal_pointer (&job->result));
      job->result_destroy = NULL;
    }
  return value;
}

/* Asks the CPU for the handle of the job to run after this one: with many
 * jobs in flight, it was put long ago and is out of the cache by now. The
 * fields a job's run, completion and answer touch are its first 132 bytes:
 * three lines at most. */
static inline void
job_queue_prefetch_next (SluiceJobQueue *self)
{
#if defined(__GNUC__) || defined(__clang__)
  GList *ready = self->ready.head;
  GList *next;
  char *handle;

  if (ready == NULL || (next = ((Channel *) ready->data)->jobs.head) == NULL)
    return;
  handle = (char *) next - G_STRUCT_OFFSET (SluiceJob, link);
  __builtin_prefetch (handle);
  __builtin_prefetch (handle + 64);
  __builtin_prefetch (handle + 128);
#endif
}

/* Runs the next ready job; with @answer_here, its completion within its
 * function is left for the caller to answer. */
static gboolean
job_queue_run_next (SluiceJobQueue *self, gboolean answer_here)
{
  g_autoptr (GError) error = NULL;
  GList *link;
  Channel *channel;
  SluiceJob *job;

  link = sluice_queue_pop_head_link (&self->ready);
  if (link == NULL)
    return FALSE;
  channel = link->data;
  channel->in_ready = FALSE;
  job = sluice_queue_pop_head_link (&channel->jobs)->data;
  job_queue_prefetch_next (self);
  self->n_queued--;
  self->n_running++;
  channel->busy = TRUE;
  job->state = JOB_RUNNING;
  if (answer_here)
    self->answering_job = job;

  /* The backlog's reference is the running job's, until it completes. */
  job->func (job, job->func_data, &error);
  if (error != NULL && g_atomic_int_compare_and_exchange (&job->completed, 0, 1))
    {
      job->error = g_steal_pointer (&error);
      job_queue_job_done (self, job);
    }
  self->answering_job = NULL;
  return TRUE;
}

/**
 * sluice_job_queue_run_next:
 * @self: a job queue
 * @error: return location for an error
 *
 * Runs the first job of the next ready channel, without a cooperator (the
 * `get()` of spreadflow's JobQueue, which returned the job to run instead).
 *
 * Call it from the queue's thread, not from a job.
 *
 * Returns: %TRUE if a job ran; %FALSE with %SLUICE_ERROR_NONE_READY when
 *   none is ready (none queued, or every queued one waits for its channel)
 */
gboolean
sluice_job_queue_run_next (SluiceJobQueue *self, GError **error)
{
  g_return_val_if_fail (SLUICE_IS_JOB_QUEUE (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  job_queue_drain_remote (self);
  if (job_queue_run_next (self, FALSE))
    return TRUE;
  g_set_error_literal (error, SLUICE_ERROR, SLUICE_ERROR_NONE_READY, _ ("No job is ready to run"));
  return FALSE;
}

/**
 * sluice_job_queue_clear:
 * @self: a job queue
 *
 * Drops every queued job: none of them runs, and their puts fail with
 * %G_IO_ERROR_CANCELLED (from the context, after this call). Running jobs
 * are left alone.
 *
 * Call it from the queue's thread.
 */
void
sluice_job_queue_clear (SluiceJobQueue *self)
{
  GHashTableIter iter;
  Channel *channel;

  g_return_if_fail (SLUICE_IS_JOB_QUEUE (self));

  g_hash_table_iter_init (&iter, self->channels);
  while (g_hash_table_iter_next (&iter, NULL, (gpointer *) &channel))
    {
      GList *link;

      while ((link = g_queue_pop_head_link (&channel->jobs)) != NULL)
        {
          SluiceJob *job = link->data;

          self->n_queued--;
          job->state = JOB_FINISHED;
          job->error = cancelled_error ();
          job_drop_cancel_source (job);
          job_queue_deliver_later (self, job); /* with the backlog's reference */
        }
      if (channel->in_ready)
        {
          channel->in_ready = FALSE;
          g_queue_unlink (&self->ready, &channel->ready_link);
        }
      if (!channel->busy)
        g_hash_table_iter_remove (&iter);
    }
  job_queue_wake_task (self);
}

static SluiceStepResult
job_queue_step (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  SluiceJobQueue *self = user_data;
  /* A tick dispatched from the cooperator's source is no call the
   * application made: a job that completed in its function is answered at
   * the end of its step, while its handle is still in the cache, and costs
   * no dispatch of the event source. (A tick a scheduler hook runs leaves
   * the answers to the event source.) */
  gboolean answer_here = sluice_cooperator_in_source_tick (self->cooperator);

  job_queue_drain_remote (self);
  if (job_queue_run_next (self, answer_here))
    {
      if (answer_here)
        job_queue_answer_deliveries (self);
      return SLUICE_STEP_CONTINUE;
    }
  if (self->stop_when_empty && self->n_queued == 0 && self->n_running == 0)
    return SLUICE_STEP_DONE;
  self->task_waiting = TRUE;
  return SLUICE_STEP_WAIT;
}

/**
 * sluice_job_queue_cooperate:
 * @self: a job queue
 * @cooperator: (nullable): the cooperator to run the jobs on, or %NULL for
 *   [func@Sluice.Cooperator.get_default]
 *
 * Runs the queue as a task of @cooperator: each step runs the next ready
 * job; with none ready the task waits until a put or a completion makes one
 * ready. It ends (done) when [property@Sluice.JobQueue:stop-when-empty] is
 * set and nothing is queued or running; pause, resume or stop it as any
 * task. A queue runs on one task at a time.
 *
 * The cooperator must be on the queue's context. Call it from the queue's
 * thread.
 *
 * Returns: (transfer full): the queue's task
 */
SluiceCooperativeTask *
sluice_job_queue_cooperate (SluiceJobQueue *self, SluiceCooperator *cooperator)
{
  SluiceCooperativeTask *task;

  g_return_val_if_fail (SLUICE_IS_JOB_QUEUE (self), NULL);
  g_return_val_if_fail (cooperator == NULL || SLUICE_IS_COOPERATOR (cooperator), NULL);

  if (cooperator == NULL)
    cooperator = sluice_cooperator_get_default ();
  g_return_val_if_fail (sluice_cooperator_get_context (cooperator) == self->context, NULL);
  g_return_val_if_fail (self->task == NULL || sluice_cooperative_task_get_state (self->task) >=
                                                  SLUICE_COOPERATIVE_TASK_STATE_DONE,
                        NULL);

  task =
      sluice_cooperator_cooperate (cooperator, job_queue_step, g_object_ref (self), g_object_unref);
  if (self->task != NULL)
    g_object_weak_unref (G_OBJECT (self->task), task_gone, self);
  self->task = task;
  self->cooperator = cooperator;
  g_object_weak_ref (G_OBJECT (task), task_gone, self);
  self->task_waiting = FALSE;
  return task;
}

/**
 * sluice_job_queue_get_stop_when_empty:
 * @self: a job queue
 *
 * Returns [property@Sluice.JobQueue:stop-when-empty].
 *
 * Call it from the queue's thread.
 *
 * Returns: whether the queue's task ends when the queue is empty
 */
gboolean
sluice_job_queue_get_stop_when_empty (SluiceJobQueue *self)
{
  g_return_val_if_fail (SLUICE_IS_JOB_QUEUE (self), FALSE);

  return self->stop_when_empty;
}

/**
 * sluice_job_queue_set_stop_when_empty:
 * @self: a job queue
 * @stop_when_empty: whether the queue's task ends when the queue is empty
 *
 * Sets [property@Sluice.JobQueue:stop-when-empty]; a waiting task of an
 * empty queue then ends at a coming tick.
 *
 * Call it from the queue's thread.
 */
void
sluice_job_queue_set_stop_when_empty (SluiceJobQueue *self, gboolean stop_when_empty)
{
  g_return_if_fail (SLUICE_IS_JOB_QUEUE (self));

  stop_when_empty = !!stop_when_empty;
  if (self->stop_when_empty == stop_when_empty)
    return;
  self->stop_when_empty = stop_when_empty;
  job_queue_wake_task (self);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_STOP_WHEN_EMPTY]);
}

/**
 * sluice_job_queue_get_n_queued:
 * @self: a job queue
 *
 * Returns the number of jobs queued and not started.
 *
 * Call it from the queue's thread.
 *
 * Returns: the backlog's length
 */
guint
sluice_job_queue_get_n_queued (SluiceJobQueue *self)
{
  g_return_val_if_fail (SLUICE_IS_JOB_QUEUE (self), 0);

  return self->n_queued;
}

/**
 * sluice_job_queue_get_n_running:
 * @self: a job queue
 *
 * Returns the number of jobs started and not completed (as seen on the
 * queue's context: a completion from another thread counts once the
 * context has seen it).
 *
 * Call it from the queue's thread.
 *
 * Returns: the number of pending jobs
 */
guint
sluice_job_queue_get_n_running (SluiceJobQueue *self)
{
  g_return_val_if_fail (SLUICE_IS_JOB_QUEUE (self), 0);

  return self->n_running;
}
