/* sluice-worker-service.h: the helper side of a process worker
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

#define SLUICE_TYPE_WORKER_SERVICE (sluice_worker_service_get_type ())

SLUICE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SluiceWorkerService, sluice_worker_service, SLUICE, WORKER_SERVICE, GObject)

SLUICE_AVAILABLE_IN_ALL
SluiceWorkerService *sluice_worker_service_new (guint n_threads);
SLUICE_AVAILABLE_IN_ALL
void sluice_worker_service_register (SluiceWorkerService *self,
                                     const char *name,
                                     const char *args_type,
                                     SluiceNamedFunc func,
                                     gpointer func_data,
                                     GDestroyNotify func_data_destroy);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_worker_service_run (SluiceWorkerService *self, GError **error);
SLUICE_AVAILABLE_IN_ALL
void sluice_worker_service_serve_stream_async (SluiceWorkerService *self,
                                               GIOStream *stream,
                                               GCancellable *cancellable,
                                               GAsyncReadyCallback callback,
                                               gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_worker_service_serve_stream_finish (SluiceWorkerService *self,
                                                    GAsyncResult *result,
                                                    GError **error);

G_END_DECLS
