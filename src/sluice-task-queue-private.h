/* sluice-task-queue-private.h: the task queue's internal entry point
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "sluice-task-queue.h"

G_BEGIN_DECLS

/* Why a task's run function is called. */
typedef enum
{
  SLUICE_TASK_RUN,       /* in a worker thread: do the work */
  SLUICE_TASK_CANCELLED, /* its cancellable was cancelled before it ran */
  SLUICE_TASK_SHUT_DOWN, /* the queue was shut down (cancelling) before it ran,
                            or the task was pushed after shutdown */
} SluiceTaskReason;

/* Called exactly once per pushed task. With SLUICE_TASK_RUN it runs in a pool
 * thread; otherwise it may run in any thread (the one that popped, shut down
 * or pushed) and must only release @data. */
typedef void (*SluiceTaskRunFunc) (gpointer data, SluiceTaskReason reason);

/* The allocation-free path the library's own types use: no GTask, no trip
 * through a main context. @cancellable (nullable) is checked just before the
 * task runs; the queue keeps a reference until then. Safe from any thread. */
void sluice_task_queue_push (SluiceTaskQueue *self,
                             int priority,
                             GCancellable *cancellable,
                             SluiceTaskRunFunc run,
                             gpointer data);

/* For tests: how many tasks a thread takes at once, up to 8; 0 (the
 * default) lets each thread choose by how long its last tasks took. */
void sluice_task_queue_set_hand_size (SluiceTaskQueue *self, guint hand_size);

/* For tests: how old (in µs) a hand must be before other threads take its
 * tasks over while others are queued; -1: never. 100 by default. */
void sluice_task_queue_set_hand_stall (SluiceTaskQueue *self, gint64 stall_us);

/* For tests: how many runners (threads of the queue) are alive. */
guint sluice_task_queue_get_n_runners (SluiceTaskQueue *self);

G_END_DECLS
