/* sluice-process-worker.h: a worker that runs named calls in helper
 * processes
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(SLUICE_INSIDE) && !defined(SLUICE_COMPILATION)
#error "Only <sluice/sluice.h> can be included directly."
#endif

#include <gio/gio.h>
#include <sluice/sluice-version-macros.h>
#include <sluice/sluice-worker.h>

G_BEGIN_DECLS

#define SLUICE_TYPE_PROCESS_WORKER (sluice_process_worker_get_type ())

SLUICE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SluiceProcessWorker, sluice_process_worker, SLUICE, PROCESS_WORKER, GObject)

SLUICE_AVAILABLE_IN_ALL
SluiceProcessWorker *
sluice_process_worker_new (const char *const *argv, const char *const *series, guint n_processes);
SLUICE_AVAILABLE_IN_ALL
guint sluice_process_worker_get_n_processes (SluiceProcessWorker *self);
SLUICE_AVAILABLE_IN_ALL
guint sluice_process_worker_get_max_calls (SluiceProcessWorker *self);
SLUICE_AVAILABLE_IN_ALL
GStrv sluice_process_worker_dup_pids (SluiceProcessWorker *self);
SLUICE_AVAILABLE_IN_ALL
GVariant *sluice_process_worker_get_stats (SluiceProcessWorker *self);

G_END_DECLS
