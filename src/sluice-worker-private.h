/* sluice-worker-private.h: named calls between the task queue and its
 * workers
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "sluice-task-queue.h"
#include "sluice-worker.h"

G_BEGIN_DECLS

typedef struct _SluiceCalls SluiceCalls;
typedef struct _SluiceHired SluiceHired;

/* One named call: the task data of the GTask of call_async. Its fields
 * but the mutable ones (under the calls' mutex) never change. */
typedef struct
{
  SluiceCalls *calls; /* the queue's; the GTask keeps the queue alive */
  char *series;       /* nullable: the default series */
  char *name;
  GVariant *args; /* never floating, never NULL */
  int priority;
  int timeout_ms; /* <= 0: none */
  guint64 seq;
  /* (owned) (nullable): the caller's. Not the GTask's (it has none): GTask
   * would return a task whose cancellable is cancelled from an idle of its
   * own, out of the order the calls completed. */
  GCancellable *cancellable;
  gint64 created; /* monotonic time, not before the GTask's creation */

  /* Under the calls' mutex. */
  GSequenceIter *queued_at;   /* while queued */
  SluiceWorkerTask *assigned; /* (owned) while a worker holds it */
  guint n_lost;               /* workers lost while running it */
  gboolean done;              /* its result is decided */
  GSource *timeout_source;    /* (owned) while assigned, with a timeout */
  gulong cancelled_id;
  GVariant *result; /* (owned) once done, until returned */
  GError *error;    /* (owned) once done, until returned */
} SluiceCall;

/* A task given to a worker: one assignment of a call. A call that goes
 * back to the queue gets a new one; completions of the old one are
 * ignored. */
struct _SluiceWorkerTask
{
  GObject parent_instance;

  GTask *call_task; /* (owned): task data is the SluiceCall */
  /* (atomic) (owned) (nullable): this assignment's, made when first asked
   * for (most calls never are), cancelled at once if @cancelled */
  GCancellable *cancellable;
  gboolean cancelled; /* (atomic) */
  SluiceHired *hired; /* under the calls' mutex: NULL once released */
  /* Under the calls' mutex: a RUN_ON_CONTEXT worker's deliverer gave it
   * to run_task () (or is about to). */
  gboolean given;
  gboolean wanted; /* (atomic) */
  guint n_lost;    /* workers lost in its call before this assignment */
};

SluiceWorkerTask *sluice_worker_task_new (GTask *call_task, SluiceHired *hired);
/* Cancels the cancellable of @task, now or when it is made. Any thread. */
void sluice_worker_task_cancel (SluiceWorkerTask *task);

/* Called by the task's completion functions (sluice-worker.c) into the
 * dispatcher (sluice-task-queue-calls.c); @result or @error or neither
 * (given back). Takes @result and @error. */
void sluice_calls_task_completed (SluiceWorkerTask *task,
                                  GVariant *result,
                                  GError *error,
                                  gboolean worker_lost);
/* The same for the @n tasks of @tasks, each with its result and error
 * (taken; the arrays are not), under one lock and with one delivery of
 * the next tasks. */
void sluice_calls_tasks_completed (
    SluiceWorkerTask **tasks, GVariant **results, GError **errors, guint n, gboolean worker_lost);

/* The queue's named calls; created with the queue's first call or hire. */
SluiceCalls *sluice_calls_new (SluiceTaskQueue *queue, gboolean shut_down);
void sluice_calls_free (SluiceCalls *calls);
/* The queue was shut down: fails, or drains, the queued calls; once none
 * is left, stops the hired workers, then calls
 * sluice_task_queue_calls_idle (). Again with @cancel_pending TRUE cancels
 * what is still queued. */
void sluice_calls_shutdown (SluiceCalls *calls, gboolean cancel_pending, GMainContext *context);

/* sluice-task-queue.c: the calls of @queue, created if needed. */
SluiceCalls *sluice_task_queue_ensure_calls (SluiceTaskQueue *queue);
/* sluice-task-queue.c: the named calls part is done with its shutdown. */
void sluice_task_queue_calls_idle (SluiceTaskQueue *queue);

/* Completes each stop_async() task of @waiters (transfer full; NULL for
 * none) with TRUE: the stop waiters a worker took when it became idle. */
void sluice_worker_complete_stop_waiters (GPtrArray *waiters);

G_END_DECLS
