/* sluice-job-queue.h: jobs run in FIFO order per channel, as a cooperative task
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(SLUICE_INSIDE) && !defined(SLUICE_COMPILATION)
#error "Only <sluice/sluice.h> can be included directly."
#endif

#include <gio/gio.h>
#include <sluice/sluice-version-macros.h>
#include <sluice/sluice-cooperator.h>

G_BEGIN_DECLS

#define SLUICE_TYPE_JOB_QUEUE (sluice_job_queue_get_type ())
#define SLUICE_TYPE_JOB (sluice_job_get_type ())

SLUICE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SluiceJobQueue, sluice_job_queue, SLUICE, JOB_QUEUE, GObject)
SLUICE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SluiceJob, sluice_job, SLUICE, JOB, GObject)

/**
 * SluiceJobFunc:
 * @job: the job's handle, to complete now or later
 * @user_data: (closure): the data given with the function
 * @error: return location for an error
 *
 * A job of a [class@Sluice.JobQueue], run on the queue's main context. It
 * must not block: it completes @job now, or starts asynchronous work and
 * completes @job (from any thread) when that finishes. Until then the jobs
 * after it on its channel wait. The queue holds @job until it is completed:
 * a job completing it later needs no reference of its own.
 *
 * A job that fails at once sets @error (then it must not complete @job)
 * or fails @job with [method@Sluice.Job.fail]; in a language binding it
 * raises an exception. It returns nothing: a function of a binding that
 * returns without a value has started its job, which it completes now or
 * later.
 */
typedef void (*SluiceJobFunc) (SluiceJob *job, gpointer user_data, GError **error);

SLUICE_AVAILABLE_IN_ALL
SluiceJobQueue *sluice_job_queue_new (void);

SLUICE_AVAILABLE_IN_ALL
void sluice_job_queue_put_async (SluiceJobQueue *self,
                                 const char *channel,
                                 SluiceJobFunc job,
                                 gpointer job_data,
                                 GDestroyNotify job_data_destroy,
                                 GCancellable *cancellable,
                                 GAsyncReadyCallback callback,
                                 gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
gpointer sluice_job_queue_put_finish (SluiceJobQueue *self,
                                      GAsyncResult *result,
                                      GError **error) G_GNUC_WARN_UNUSED_RESULT;
SLUICE_AVAILABLE_IN_ALL
GValue *sluice_job_queue_put_finish_value (SluiceJobQueue *self,
                                           GAsyncResult *result,
                                           GError **error) G_GNUC_WARN_UNUSED_RESULT;

SLUICE_AVAILABLE_IN_ALL
gboolean sluice_job_queue_run_next (SluiceJobQueue *self, GError **error);
SLUICE_AVAILABLE_IN_ALL
void sluice_job_queue_clear (SluiceJobQueue *self);
SLUICE_AVAILABLE_IN_ALL
SluiceCooperativeTask *sluice_job_queue_cooperate (SluiceJobQueue *self,
                                                   SluiceCooperator *cooperator);

SLUICE_AVAILABLE_IN_ALL
gboolean sluice_job_queue_get_stop_when_empty (SluiceJobQueue *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_job_queue_set_stop_when_empty (SluiceJobQueue *self, gboolean stop_when_empty);
SLUICE_AVAILABLE_IN_ALL
guint sluice_job_queue_get_n_queued (SluiceJobQueue *self);
SLUICE_AVAILABLE_IN_ALL
guint sluice_job_queue_get_n_running (SluiceJobQueue *self);

SLUICE_AVAILABLE_IN_ALL
const char *sluice_job_get_channel (SluiceJob *self);
SLUICE_AVAILABLE_IN_ALL
GCancellable *sluice_job_get_cancellable (SluiceJob *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_job_complete (SluiceJob *self, gpointer result, GDestroyNotify result_destroy);
SLUICE_AVAILABLE_IN_ALL
void sluice_job_complete_value (SluiceJob *self, const GValue *value);
SLUICE_AVAILABLE_IN_ALL
void sluice_job_fail (SluiceJob *self, GError *error);

G_END_DECLS
