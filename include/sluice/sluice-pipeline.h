/* sluice-pipeline.h: multi-stage threaded processing of a stream of items
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(SLUICE_INSIDE) && !defined(SLUICE_COMPILATION)
#error "Only <sluice/sluice.h> can be included directly."
#endif

#include <gio/gio.h>
#include <sluice/sluice-version-macros.h>
#include <sluice/sluice-consumerator.h>
#include <sluice/sluice-task-queue.h>

G_BEGIN_DECLS

#define SLUICE_TYPE_PIPELINE_EMITTER (sluice_pipeline_emitter_get_type ())

SLUICE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (
    SluicePipelineEmitter, sluice_pipeline_emitter, SLUICE, PIPELINE_EMITTER, GObject)

#define SLUICE_TYPE_PIPELINE (sluice_pipeline_get_type ())

SLUICE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SluicePipeline, sluice_pipeline, SLUICE, PIPELINE, GObject)

/**
 * SluicePipelineStageFunc:
 * @emitter: where the outputs go, with [method@Sluice.PipelineEmitter.emit];
 *   valid during this call only
 * @item: (transfer full) (nullable): the input
 * @user_data: (closure): the data given with the function
 * @error: return location for an error
 *
 * The function of one stage of a [class@Sluice.Pipeline]. It runs on one of
 * the stage's threads, takes one input and emits zero (the input is
 * dropped), one or many outputs, which go to the next stage (or, from the
 * last stage, to the output) in the order they were emitted. It owns @item.
 *
 * Returns: %TRUE on success; %FALSE with @error set when the input failed
 */
typedef gboolean (*SluicePipelineStageFunc) (SluicePipelineEmitter *emitter,
                                             gpointer item,
                                             gpointer user_data,
                                             GError **error);

/**
 * SluicePipelineValueStageFunc:
 * @emitter: where the outputs go, with
 *   [method@Sluice.PipelineEmitter.emit_value]; valid during this call only
 * @item: the input
 * @user_data: (closure): the data given with the function
 * @error: return location for an error
 *
 * The stage function of a pipeline made with
 * [ctor@Sluice.Pipeline.new_for_values]: the counterpart of
 * [callback@Sluice.PipelineStageFunc] for language bindings.
 *
 * Returns: %TRUE on success; %FALSE with @error set when the input failed
 */
typedef gboolean (*SluicePipelineValueStageFunc) (SluicePipelineEmitter *emitter,
                                                  const GValue *item,
                                                  gpointer user_data,
                                                  GError **error);

/**
 * SluicePipelineConsumerFunc:
 * @outputs: the iterator to take the outputs from
 * @user_data: (closure): the data given to [method@Sluice.Pipeline.start]
 * @error: return location for an error
 *
 * The blocking consumer of a [class@Sluice.Pipeline]: runs in a thread of
 * its own and takes the outputs with [method@Sluice.Consumerator.next] (or
 * [method@Sluice.Consumerator.next_value]) until that returns %FALSE.
 *
 * Returns: %TRUE on success; %FALSE with @error set on failure, which
 *   [method@Sluice.Pipeline.join] reports
 */
typedef gboolean (*SluicePipelineConsumerFunc) (SluiceConsumerator *outputs,
                                                gpointer user_data,
                                                GError **error);

/**
 * SluicePipelineKeyFunc:
 * @item: (nullable): an input of the stage, not to be freed or changed
 * @user_data: (closure): the data given with the function
 *
 * The key function of a dispatcher stage (see
 * [method@Sluice.Pipeline.set_stage_key_func]): the inputs with one key run
 * one at a time, in input order; inputs with different keys run in
 * parallel. It runs on the thread that sends @item to the stage, before
 * the stage function sees it.
 *
 * Returns: the key of @item
 */
typedef guint64 (*SluicePipelineKeyFunc) (gconstpointer item, gpointer user_data);

/**
 * SluicePipelineValueKeyFunc:
 * @item: an input of the stage
 * @user_data: (closure): the data given with the function
 *
 * The key function of a dispatcher stage of a pipeline made with
 * [ctor@Sluice.Pipeline.new_for_values]: the counterpart of
 * [callback@Sluice.PipelineKeyFunc] for language bindings.
 *
 * Returns: the key of @item
 */
typedef guint64 (*SluicePipelineValueKeyFunc) (const GValue *item, gpointer user_data);

/**
 * SluicePipelineInputFunc:
 * @user_data: (closure): the data given with the function
 * @out_item: (out) (transfer full) (nullable): return location for the
 *   next input
 * @error: return location for an error
 *
 * Gives the inputs of [method@Sluice.Pipeline.run], one per call, as a
 * Python iterator does.
 *
 * Returns: %TRUE with @out_item set; %FALSE at the end, or with @error set
 *   when the input failed
 */
typedef gboolean (*SluicePipelineInputFunc) (gpointer user_data,
                                             gpointer *out_item,
                                             GError **error);

SLUICE_AVAILABLE_IN_ALL
void sluice_pipeline_emitter_emit (SluicePipelineEmitter *self, gpointer item);
SLUICE_AVAILABLE_IN_ALL
void sluice_pipeline_emitter_emit_value (SluicePipelineEmitter *self, const GValue *value);
SLUICE_AVAILABLE_IN_ALL
guint64 sluice_pipeline_emitter_get_sequence (SluicePipelineEmitter *self);

SLUICE_AVAILABLE_IN_ALL
SluicePipeline *
sluice_pipeline_new (gboolean keep_order, guint window, GDestroyNotify item_free_func);
SLUICE_AVAILABLE_IN_ALL
SluicePipeline *sluice_pipeline_new_for_values (gboolean keep_order, guint window);

SLUICE_AVAILABLE_IN_ALL
guint sluice_pipeline_add_stage (SluicePipeline *self,
                                 const char *name,
                                 guint n_threads,
                                 guint capacity,
                                 SluicePipelineStageFunc func,
                                 gpointer func_data,
                                 GDestroyNotify func_data_destroy);
SLUICE_AVAILABLE_IN_ALL
guint sluice_pipeline_add_value_stage (SluicePipeline *self,
                                       const char *name,
                                       guint n_threads,
                                       guint capacity,
                                       SluicePipelineValueStageFunc func,
                                       gpointer func_data,
                                       GDestroyNotify func_data_destroy);
/* A stage whose work runs on workers (src/sluice-pipeline-call.c). */
SLUICE_AVAILABLE_IN_ALL
guint sluice_pipeline_add_call_stage (SluicePipeline *self,
                                      const char *name,
                                      guint n_calls,
                                      guint capacity,
                                      SluiceTaskQueue *queue,
                                      const char *series,
                                      const char *function,
                                      int priority,
                                      int timeout_ms);
SLUICE_AVAILABLE_IN_ALL
void sluice_pipeline_set_stage_key_func (SluicePipeline *self,
                                         guint stage,
                                         SluicePipelineKeyFunc func,
                                         gpointer func_data,
                                         GDestroyNotify func_data_destroy);
SLUICE_AVAILABLE_IN_ALL
void sluice_pipeline_set_stage_value_key_func (SluicePipeline *self,
                                               guint stage,
                                               SluicePipelineValueKeyFunc func,
                                               gpointer func_data,
                                               GDestroyNotify func_data_destroy);
SLUICE_AVAILABLE_IN_ALL
void sluice_pipeline_set_stage_threads (SluicePipeline *self, guint stage, guint n_threads);
SLUICE_AVAILABLE_IN_ALL
guint sluice_pipeline_get_stage_threads (SluicePipeline *self, guint stage);
SLUICE_AVAILABLE_IN_ALL
void sluice_pipeline_set_stage_rate_limit (SluicePipeline *self,
                                           guint stage,
                                           double units_per_second,
                                           guint step);
SLUICE_AVAILABLE_IN_ALL
guint sluice_pipeline_get_n_stages (SluicePipeline *self);

SLUICE_AVAILABLE_IN_ALL
void sluice_pipeline_start (SluicePipeline *self,
                            SluicePipelineConsumerFunc func,
                            gpointer func_data,
                            GDestroyNotify func_data_destroy);

SLUICE_AVAILABLE_IN_ALL
gboolean sluice_pipeline_put (SluicePipeline *self,
                              gpointer item,
                              GCancellable *cancellable,
                              GError **error);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_pipeline_put_value (SluicePipeline *self,
                                    const GValue *value,
                                    GCancellable *cancellable,
                                    GError **error);
SLUICE_AVAILABLE_IN_ALL
void sluice_pipeline_put_async (SluicePipeline *self,
                                gpointer item,
                                GCancellable *cancellable,
                                GAsyncReadyCallback callback,
                                gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
void sluice_pipeline_put_value_async (SluicePipeline *self,
                                      const GValue *value,
                                      GCancellable *cancellable,
                                      GAsyncReadyCallback callback,
                                      gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_pipeline_put_finish (SluicePipeline *self, GAsyncResult *result, GError **error);
SLUICE_AVAILABLE_IN_ALL
GSource *sluice_pipeline_create_ready_source (SluicePipeline *self, GCancellable *cancellable);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_pipeline_run (SluicePipeline *self,
                              SluicePipelineInputFunc input,
                              gpointer input_data,
                              SluicePipelineConsumerFunc consumer,
                              gpointer consumer_data,
                              gint64 timeout_us,
                              GCancellable *cancellable,
                              GError **error);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_pipeline_run_values (SluicePipeline *self,
                                     const GValue *inputs,
                                     guint n_inputs,
                                     SluicePipelineConsumerFunc consumer,
                                     gpointer consumer_data,
                                     gint64 timeout_us,
                                     GCancellable *cancellable,
                                     GError **error);
SLUICE_AVAILABLE_IN_ALL
void sluice_pipeline_close_input (SluicePipeline *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_pipeline_stop (SluicePipeline *self);

SLUICE_AVAILABLE_IN_ALL
gboolean sluice_pipeline_join (SluicePipeline *self, gint64 timeout_us, GError **error);
SLUICE_AVAILABLE_IN_ALL
void sluice_pipeline_join_async (SluicePipeline *self,
                                 int priority,
                                 GCancellable *cancellable,
                                 GAsyncReadyCallback callback,
                                 gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_pipeline_join_finish (SluicePipeline *self, GAsyncResult *result, GError **error);

SLUICE_AVAILABLE_IN_ALL
GVariant *sluice_pipeline_get_stats (SluicePipeline *self);
SLUICE_AVAILABLE_IN_ALL
SluiceConsumerator *sluice_pipeline_get_consumerator (SluicePipeline *self);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_pipeline_get_keep_order (SluicePipeline *self);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_pipeline_get_skip_failed (SluicePipeline *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_pipeline_set_skip_failed (SluicePipeline *self, gboolean skip_failed);

G_END_DECLS
