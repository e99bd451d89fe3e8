/* sluice-redis-worker.h: workers on other machines, through Redis Streams
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(SLUICE_INSIDE) && !defined(SLUICE_COMPILATION)
#error "Only <sluice/sluice.h> can be included directly."
#endif

#include <gio/gio.h>
#include <sluice/sluice-version-macros.h>
#include <sluice/sluice-worker-service.h>
#include <sluice/sluice-worker.h>

G_BEGIN_DECLS

#define SLUICE_TYPE_REDIS_WORKER (sluice_redis_worker_get_type ())

SLUICE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SluiceRedisWorker, sluice_redis_worker, SLUICE, REDIS_WORKER, GObject)

SLUICE_AVAILABLE_IN_ALL
SluiceRedisWorker *sluice_redis_worker_new (const char *endpoint,
                                            const char *password,
                                            const char *const *series,
                                            guint max_in_flight,
                                            GError **error);
SLUICE_AVAILABLE_IN_ALL
const char *sluice_redis_worker_get_client_id (SluiceRedisWorker *self);
SLUICE_AVAILABLE_IN_ALL
GVariant *sluice_redis_worker_get_stats (SluiceRedisWorker *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_redis_worker_set_reconnect_timeout (SluiceRedisWorker *self, guint timeout_ms);
SLUICE_AVAILABLE_IN_ALL
void sluice_redis_worker_set_reply_ttl (SluiceRedisWorker *self, guint ttl_ms);

SLUICE_AVAILABLE_IN_ALL
gboolean sluice_worker_service_serve_redis (SluiceWorkerService *self,
                                            const char *endpoint,
                                            const char *password,
                                            const char *const *series,
                                            const char *consumer,
                                            guint lease_ms,
                                            guint max_deliveries,
                                            GCancellable *cancellable,
                                            GError **error);

G_END_DECLS
