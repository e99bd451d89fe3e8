/* sluice-thread-worker.h: a worker with threads of its own
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

#define SLUICE_TYPE_THREAD_WORKER (sluice_thread_worker_get_type ())

SLUICE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SluiceThreadWorker, sluice_thread_worker, SLUICE, THREAD_WORKER, GObject)

SLUICE_AVAILABLE_IN_ALL
SluiceThreadWorker *sluice_thread_worker_new (const char *const *series, guint n_threads);
SLUICE_AVAILABLE_IN_ALL
void sluice_thread_worker_register (SluiceThreadWorker *self,
                                    const char *name,
                                    const char *args_type,
                                    SluiceNamedFunc func,
                                    gpointer func_data,
                                    GDestroyNotify func_data_destroy);
SLUICE_AVAILABLE_IN_ALL
guint sluice_thread_worker_get_n_threads (SluiceThreadWorker *self);

G_END_DECLS
