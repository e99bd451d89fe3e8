/* sluice-cooperator.h: time-sliced cooperative tasks on a main context
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(SLUICE_INSIDE) && !defined(SLUICE_COMPILATION)
#error "Only <sluice/sluice.h> can be included directly."
#endif

#include <gio/gio.h>
#include <sluice/sluice-version-macros.h>

G_BEGIN_DECLS

/**
 * SluiceStepResult:
 * @SLUICE_STEP_FAILED: the step failed and set its error; the task ends
 *   ([enum@Sluice.CooperativeTaskState.FAILED]). It is 0 on purpose: a
 *   language binding whose step raised an exception returns 0, which ends
 *   the task instead of running the step again for ever
 * @SLUICE_STEP_CONTINUE: the task has more steps; it runs again after the
 *   other runnable tasks had their turn
 * @SLUICE_STEP_DONE: the task has finished
 *   ([enum@Sluice.CooperativeTaskState.DONE])
 * @SLUICE_STEP_WAIT: the step started asynchronous work and the task waits,
 *   costing nothing, until [method@Sluice.CooperativeTask.wake] is called
 *
 * What a [callback@Sluice.CooperativeStepFunc] tells its cooperator.
 */
typedef enum
{
  SLUICE_STEP_FAILED = 0,
  SLUICE_STEP_CONTINUE,
  SLUICE_STEP_DONE,
  SLUICE_STEP_WAIT,
} SluiceStepResult;

/**
 * SluiceCooperativeTaskState:
 * @SLUICE_COOPERATIVE_TASK_STATE_RUNNABLE: its next step runs at a coming
 *   tick
 * @SLUICE_COOPERATIVE_TASK_STATE_WAITING: its last step returned
 *   %SLUICE_STEP_WAIT and it has not been woken yet
 * @SLUICE_COOPERATIVE_TASK_STATE_PAUSED: paused (it may be waiting too)
 * @SLUICE_COOPERATIVE_TASK_STATE_DONE: ended: a step returned
 *   %SLUICE_STEP_DONE
 * @SLUICE_COOPERATIVE_TASK_STATE_FAILED: ended: a step failed, or the task
 *   was woken with an error
 * @SLUICE_COOPERATIVE_TASK_STATE_STOPPED: ended: stopped by
 *   [method@Sluice.CooperativeTask.stop], by
 *   [method@Sluice.Cooperator.stop], or given to a stopped cooperator
 *
 * The state of a [class@Sluice.CooperativeTask]. The last three are final.
 */
typedef enum
{
  SLUICE_COOPERATIVE_TASK_STATE_RUNNABLE,
  SLUICE_COOPERATIVE_TASK_STATE_WAITING,
  SLUICE_COOPERATIVE_TASK_STATE_PAUSED,
  SLUICE_COOPERATIVE_TASK_STATE_DONE,
  SLUICE_COOPERATIVE_TASK_STATE_FAILED,
  SLUICE_COOPERATIVE_TASK_STATE_STOPPED,
} SluiceCooperativeTaskState;

#define SLUICE_TYPE_COOPERATOR (sluice_cooperator_get_type ())
#define SLUICE_TYPE_COOPERATIVE_TASK (sluice_cooperative_task_get_type ())

SLUICE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SluiceCooperator, sluice_cooperator, SLUICE, COOPERATOR, GObject)
SLUICE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (
    SluiceCooperativeTask, sluice_cooperative_task, SLUICE, COOPERATIVE_TASK, GObject)

/**
 * SluiceCooperativeStepFunc:
 * @task: the task the step belongs to
 * @user_data: (closure): the data given with the function
 * @error: return location for the error of a failed step
 *
 * One step of a cooperative task: a short piece of work, run on the
 * cooperator's main context. It must not block.
 *
 * To wait for asynchronous work, start it, keep a reference on @task for
 * its callback, and return %SLUICE_STEP_WAIT; the callback calls
 * [method@Sluice.CooperativeTask.wake] (or
 * [method@Sluice.CooperativeTask.wake_with_error] if the work failed).
 *
 * Returns: what the task does next; %SLUICE_STEP_FAILED with @error set on
 *   failure
 */
typedef SluiceStepResult (*SluiceCooperativeStepFunc) (SluiceCooperativeTask *task,
                                                       gpointer user_data,
                                                       GError **error);

/**
 * SluiceCooperatorSchedulerFunc:
 * @cooperator: the cooperator
 * @schedule: %TRUE to ask for one tick later, %FALSE to take back the
 *   request made last
 * @user_data: (closure): the data given with the function
 *
 * Decides when a cooperator's next tick runs (the `scheduler` of Twisted's Cooperator): when
 * asked with @schedule %TRUE, it arranges for
 * [method@Sluice.Cooperator.tick] to be called once, later, on the
 * cooperator's context; with %FALSE it cancels that call. The cooperator
 * asks for at most one tick at a time.
 *
 * The default runs ticks from a source on the cooperator's context; tests
 * set their own to run ticks one by one.
 */
typedef void (*SluiceCooperatorSchedulerFunc) (SluiceCooperator *cooperator,
                                               gboolean schedule,
                                               gpointer user_data);

/**
 * SluiceCooperatorTerminationFunc:
 * @cooperator: the cooperator
 * @n_steps: the number of steps run in this tick so far (at least 1)
 * @tick_start_time: the monotonic time the tick started at, in
 *   microseconds (as g_get_monotonic_time())
 * @user_data: (closure): the data given with the function
 *
 * Called after each step of a tick: returns %TRUE to end the tick (the
 * termination predicate of Twisted's Cooperator). The default ends the tick when
 * [property@Sluice.Cooperator:time-slice] has passed.
 *
 * Returns: %TRUE to end the tick now
 */
typedef gboolean (*SluiceCooperatorTerminationFunc) (SluiceCooperator *cooperator,
                                                     guint n_steps,
                                                     gint64 tick_start_time,
                                                     gpointer user_data);

SLUICE_AVAILABLE_IN_ALL
SluiceCooperator *sluice_cooperator_new (void);
SLUICE_AVAILABLE_IN_ALL
SluiceCooperator *sluice_cooperator_get_default (void);

SLUICE_AVAILABLE_IN_ALL
void sluice_cooperator_set_scheduler (SluiceCooperator *self,
                                      SluiceCooperatorSchedulerFunc func,
                                      gpointer func_data,
                                      GDestroyNotify func_data_destroy);
SLUICE_AVAILABLE_IN_ALL
void sluice_cooperator_set_termination_func (SluiceCooperator *self,
                                             SluiceCooperatorTerminationFunc func,
                                             gpointer func_data,
                                             GDestroyNotify func_data_destroy);
SLUICE_AVAILABLE_IN_ALL
guint sluice_cooperator_get_time_slice (SluiceCooperator *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_cooperator_set_time_slice (SluiceCooperator *self, guint time_slice);
SLUICE_AVAILABLE_IN_ALL
GMainContext *sluice_cooperator_get_context (SluiceCooperator *self);

SLUICE_AVAILABLE_IN_ALL
SluiceCooperativeTask *sluice_cooperator_cooperate (SluiceCooperator *self,
                                                    SluiceCooperativeStepFunc step,
                                                    gpointer step_data,
                                                    GDestroyNotify step_data_destroy);
SLUICE_AVAILABLE_IN_ALL
void sluice_cooperator_coiterate_async (SluiceCooperator *self,
                                        SluiceCooperativeStepFunc step,
                                        gpointer step_data,
                                        GDestroyNotify step_data_destroy,
                                        GCancellable *cancellable,
                                        GAsyncReadyCallback callback,
                                        gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
gboolean
sluice_cooperator_coiterate_finish (SluiceCooperator *self, GAsyncResult *result, GError **error);

SLUICE_AVAILABLE_IN_ALL
void sluice_cooperator_start (SluiceCooperator *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_cooperator_stop (SluiceCooperator *self);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_cooperator_is_running (SluiceCooperator *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_cooperator_tick (SluiceCooperator *self);

SLUICE_AVAILABLE_IN_ALL
SluiceCooperator *sluice_cooperative_task_get_cooperator (SluiceCooperativeTask *self);
SLUICE_AVAILABLE_IN_ALL
SluiceCooperativeTaskState sluice_cooperative_task_get_state (SluiceCooperativeTask *self);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_cooperative_task_pause (SluiceCooperativeTask *self, GError **error);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_cooperative_task_resume (SluiceCooperativeTask *self, GError **error);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_cooperative_task_stop (SluiceCooperativeTask *self, GError **error);
SLUICE_AVAILABLE_IN_ALL
void sluice_cooperative_task_wake (SluiceCooperativeTask *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_cooperative_task_wake_with_error (SluiceCooperativeTask *self, const GError *error);
SLUICE_AVAILABLE_IN_ALL
void sluice_cooperative_task_when_done_async (SluiceCooperativeTask *self,
                                              GCancellable *cancellable,
                                              GAsyncReadyCallback callback,
                                              gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_cooperative_task_when_done_finish (SluiceCooperativeTask *self,
                                                   GAsyncResult *result,
                                                   GError **error);

G_END_DECLS
