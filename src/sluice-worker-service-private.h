/* sluice-worker-service-private.h: what other ways of serving a
 * SluiceWorkerService need of it
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "sluice-function-registry-private.h"
#include "sluice-worker-service.h"

G_BEGIN_DECLS

/* The functions of @self (owned by it), and its thread count (0: one per
 * processor). */
SluiceFunctionRegistry *sluice_worker_service_get_registry (SluiceWorkerService *self,
                                                            guint *n_threads);

G_END_DECLS
