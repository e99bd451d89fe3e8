/* sluice-error.h: the Sluice error domain
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(SLUICE_INSIDE) && !defined(SLUICE_COMPILATION)
#error "Only <sluice/sluice.h> can be included directly."
#endif

#include <glib.h>
#include <sluice/sluice-version-macros.h>

G_BEGIN_DECLS

/**
 * SLUICE_ERROR:
 *
 * The error domain of Sluice; errors in it carry a [enum@Sluice.Error] code.
 */
#define SLUICE_ERROR (sluice_error_quark ())

/**
 * SluiceError:
 * @SLUICE_ERROR_FAILED: a generic failure, with a message that says what
 * @SLUICE_ERROR_STOPPED: the object was stopped (by a stop request, a failed
 *   item, the consumer returning or a shutdown) before the operation could
 *   take place
 * @SLUICE_ERROR_NOT_STARTED: the operation needs a started object
 * @SLUICE_ERROR_SCHEDULER_STOPPED: the [class@Sluice.Cooperator] of a task
 *   was stopped (or was already stopped when the task was given to it)
 * @SLUICE_ERROR_TASK_STOPPED: the [class@Sluice.CooperativeTask] was stopped
 * @SLUICE_ERROR_TASK_DONE: the [class@Sluice.CooperativeTask] has already
 *   finished
 * @SLUICE_ERROR_TASK_FAILED: the [class@Sluice.CooperativeTask] has already
 *   failed
 * @SLUICE_ERROR_NOT_PAUSED: resuming a [class@Sluice.CooperativeTask] that is
 *   not paused
 * @SLUICE_ERROR_NONE_READY: no job of a [class@Sluice.JobQueue] is ready to
 *   run (none is queued, or every queued one waits for its channel)
 * @SLUICE_ERROR_NO_WORKER: a named call of a [class@Sluice.TaskQueue] that
 *   was shut down while no hired worker served the call's series
 * @SLUICE_ERROR_WORKER_LOST: a named call whose workers were lost (their
 *   process died) while they ran it, too many times to try it again
 * @SLUICE_ERROR_UNKNOWN_FUNCTION: a named call of a function that its
 *   worker does not have
 * @SLUICE_ERROR_INVALID_ARGUMENTS: a named call whose arguments are not of
 *   the type its function takes
 * @SLUICE_ERROR_WORKER_FAILED: a worker could not run a named call: its
 *   helper process could not be started, exited at start, or did not speak
 *   the worker protocol
 *
 * Error codes in the %SLUICE_ERROR domain.
 */
typedef enum
{
  SLUICE_ERROR_FAILED,
  SLUICE_ERROR_STOPPED,
  SLUICE_ERROR_NOT_STARTED,
  SLUICE_ERROR_SCHEDULER_STOPPED,
  SLUICE_ERROR_TASK_STOPPED,
  SLUICE_ERROR_TASK_DONE,
  SLUICE_ERROR_TASK_FAILED,
  SLUICE_ERROR_NOT_PAUSED,
  SLUICE_ERROR_NONE_READY,
  SLUICE_ERROR_NO_WORKER,
  SLUICE_ERROR_WORKER_LOST,
  SLUICE_ERROR_UNKNOWN_FUNCTION,
  SLUICE_ERROR_INVALID_ARGUMENTS,
  SLUICE_ERROR_WORKER_FAILED,
} SluiceError;

SLUICE_AVAILABLE_IN_ALL
GQuark sluice_error_quark (void);

G_END_DECLS
