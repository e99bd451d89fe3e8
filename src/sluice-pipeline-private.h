/* sluice-pipeline-private.h: what the call stage asks a pipeline
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "sluice-private.h"

G_BEGIN_DECLS

/* Whether @self carries values (GValue *): made with new_for_values() or
 * g_object_new(). */
gboolean sluice_pipeline_carries_values (SluicePipeline *self);

/* Whether sluice_pipeline_start() was called. Any thread. */
gboolean sluice_pipeline_is_started (SluicePipeline *self);

/* Cancelled when the pipeline stops (sluice_pipeline_stop(), a join that
 * timed out, the consumer reaching a failure or going away): for what a
 * stage function waits on. Not a new reference; valid while @self lives.
 * Any thread. */
GCancellable *sluice_pipeline_get_stop_cancellable (SluicePipeline *self);

G_END_DECLS
