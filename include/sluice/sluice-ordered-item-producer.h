/* sluice-ordered-item-producer.h: results of asynchronous work, in call order
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
#include <sluice/sluice-push-producer.h>
#include <sluice/sluice-task-queue.h>

G_BEGIN_DECLS

/**
 * SluiceSlot:
 *
 * The place of one item in the output order of a
 * [class@Sluice.OrderedItemProducer].
 *
 * An item function receives a slot and must complete it exactly once,
 * with [method@Sluice.Slot.complete] or [method@Sluice.Slot.fail], now or
 * later, from any thread. After that the slot is gone: do not touch it
 * again. A slot that is used after its completion is reported with a
 * critical naming the item's sequence number and the use is ignored (see
 * [method@Sluice.Slot.complete]).
 *
 * A `SluiceSlot *` is a handle, not a pointer to memory the caller may read.
 */
typedef struct _SluiceSlot SluiceSlot;

/**
 * SluiceItemFunc:
 * @slot: the slot to complete with the item
 * @user_data: (closure): the data given with the function
 *
 * A non-blocking function that starts making one item and completes @slot
 * with it, now or later, from any thread. It runs on the thread that called
 * [method@Sluice.OrderedItemProducer.produce_item], or on the producer's
 * owner context when the call had to wait for room in the window.
 */
typedef void (*SluiceItemFunc) (SluiceSlot *slot, gpointer user_data);

/**
 * SluiceConsumerFunc:
 * @consumerator: the iterator to take the items from, in order
 * @user_data: (closure): the data given to
 *   [method@Sluice.OrderedItemProducer.start]
 * @error: return location for an error
 *
 * The blocking consumer: runs in a thread of its own and takes every item
 * with [method@Sluice.Consumerator.next] until that returns %FALSE.
 *
 * Returns: (nullable) (transfer full): the result that
 *   [method@Sluice.OrderedItemProducer.stop_finish] will return, or %NULL with
 *   @error set on failure
 */
typedef gpointer (*SluiceConsumerFunc) (SluiceConsumerator *consumerator,
                                        gpointer user_data,
                                        GError **error);

/**
 * SluiceValueConsumerFunc:
 * @consumerator: the iterator to take the items from, in order, with
 *   [method@Sluice.Consumerator.next_value]
 * @result: (out caller-allocates): an unset value, to set to the result
 * @user_data: (closure): the data given to
 *   [method@Sluice.OrderedItemProducer.start_values]
 * @error: return location for an error
 *
 * The blocking consumer of a producer made with
 * [ctor@Sluice.OrderedItemProducer.new_for_values]: the counterpart of
 * [callback@Sluice.ConsumerFunc] for language bindings. It runs in a
 * thread of its own and takes every item until
 * [method@Sluice.Consumerator.next_value] returns %FALSE.
 *
 * Sets @result, which [method@Sluice.OrderedItemProducer.stop_finish_value]
 * returns, or @error on failure. A @result left unset is a %NULL pointer.
 */
typedef void (*SluiceValueConsumerFunc) (SluiceConsumerator *consumerator,
                                         GValue *result,
                                         gpointer user_data,
                                         GError **error);

SLUICE_AVAILABLE_IN_ALL
void sluice_slot_complete (SluiceSlot *slot, gpointer item);
SLUICE_AVAILABLE_IN_ALL
void sluice_slot_complete_value (SluiceSlot *slot, const GValue *value);
SLUICE_AVAILABLE_IN_ALL
void sluice_slot_fail (SluiceSlot *slot, GError *error);
SLUICE_AVAILABLE_IN_ALL
void sluice_slot_continue_in_thread (SluiceSlot *slot,
                                     SluiceThreadFunc func,
                                     gpointer func_data,
                                     GDestroyNotify func_data_destroy);
SLUICE_AVAILABLE_IN_ALL
void sluice_slot_continue_value_in_thread (SluiceSlot *slot,
                                           SluiceValueThreadFunc func,
                                           gpointer func_data,
                                           GDestroyNotify func_data_destroy);
SLUICE_AVAILABLE_IN_ALL
GCancellable *sluice_slot_get_cancellable (SluiceSlot *slot);
SLUICE_AVAILABLE_IN_ALL
guint64 sluice_slot_get_sequence (SluiceSlot *slot);

#define SLUICE_TYPE_ORDERED_ITEM_PRODUCER (sluice_ordered_item_producer_get_type ())

SLUICE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (
    SluiceOrderedItemProducer, sluice_ordered_item_producer, SLUICE, ORDERED_ITEM_PRODUCER, GObject)

SLUICE_AVAILABLE_IN_ALL
SluiceOrderedItemProducer *sluice_ordered_item_producer_new (SluiceTaskQueue *task_queue,
                                                             guint window,
                                                             GDestroyNotify item_free_func);
SLUICE_AVAILABLE_IN_ALL
SluiceOrderedItemProducer *sluice_ordered_item_producer_new_for_values (SluiceTaskQueue *task_queue,
                                                                        guint window);

SLUICE_AVAILABLE_IN_ALL
void sluice_ordered_item_producer_start (SluiceOrderedItemProducer *self,
                                         SluiceConsumerFunc func,
                                         gpointer user_data,
                                         GDestroyNotify user_data_destroy,
                                         GFreeFunc result_free_func);

SLUICE_AVAILABLE_IN_ALL
void sluice_ordered_item_producer_start_values (SluiceOrderedItemProducer *self,
                                                SluiceValueConsumerFunc func,
                                                gpointer user_data,
                                                GDestroyNotify user_data_destroy);

SLUICE_AVAILABLE_IN_ALL
void sluice_ordered_item_producer_produce (SluiceOrderedItemProducer *self,
                                           SluiceItemFunc func,
                                           gpointer func_data);
SLUICE_AVAILABLE_IN_ALL
void sluice_ordered_item_producer_produce_in_thread (SluiceOrderedItemProducer *self,
                                                     SluiceThreadFunc func,
                                                     gpointer func_data);
SLUICE_AVAILABLE_IN_ALL
void sluice_ordered_item_producer_produce_item (SluiceOrderedItemProducer *self,
                                                SluiceItemFunc func,
                                                gpointer func_data,
                                                GDestroyNotify func_data_destroy,
                                                GCancellable *cancellable,
                                                GAsyncReadyCallback callback,
                                                gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
void sluice_ordered_item_producer_produce_item_in_thread (SluiceOrderedItemProducer *self,
                                                          SluiceThreadFunc func,
                                                          gpointer func_data,
                                                          GDestroyNotify func_data_destroy,
                                                          int priority,
                                                          GCancellable *cancellable,
                                                          GAsyncReadyCallback callback,
                                                          gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
void sluice_ordered_item_producer_produce_value_in_thread (SluiceOrderedItemProducer *self,
                                                           SluiceValueThreadFunc func,
                                                           gpointer func_data,
                                                           GDestroyNotify func_data_destroy,
                                                           int priority,
                                                           GCancellable *cancellable,
                                                           GAsyncReadyCallback callback,
                                                           gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_ordered_item_producer_produce_item_finish (SluiceOrderedItemProducer *self,
                                                           GAsyncResult *result,
                                                           GError **error);

SLUICE_AVAILABLE_IN_ALL
void sluice_ordered_item_producer_stop_async (SluiceOrderedItemProducer *self,
                                              GCancellable *cancellable,
                                              GAsyncReadyCallback callback,
                                              gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
gpointer sluice_ordered_item_producer_stop_finish (SluiceOrderedItemProducer *self,
                                                   GAsyncResult *result,
                                                   GError **error);
SLUICE_AVAILABLE_IN_ALL
GValue *sluice_ordered_item_producer_stop_finish_value (SluiceOrderedItemProducer *self,
                                                        GAsyncResult *result,
                                                        GError **error);

SLUICE_AVAILABLE_IN_ALL
gboolean sluice_ordered_item_producer_is_ready (SluiceOrderedItemProducer *self);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_ordered_item_producer_wait_ready (SluiceOrderedItemProducer *self,
                                                  GCancellable *cancellable,
                                                  GError **error);
SLUICE_AVAILABLE_IN_ALL
void sluice_ordered_item_producer_wait_ready_async (SluiceOrderedItemProducer *self,
                                                    GCancellable *cancellable,
                                                    GAsyncReadyCallback callback,
                                                    gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_ordered_item_producer_wait_ready_finish (SluiceOrderedItemProducer *self,
                                                         GAsyncResult *result,
                                                         GError **error);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_ordered_item_producer_is_closed (SluiceOrderedItemProducer *self);
SLUICE_AVAILABLE_IN_ALL
GVariant *sluice_ordered_item_producer_get_stats (SluiceOrderedItemProducer *self);
SLUICE_AVAILABLE_IN_ALL
GSource *sluice_ordered_item_producer_create_ready_source (SluiceOrderedItemProducer *self,
                                                           GCancellable *cancellable);

SLUICE_AVAILABLE_IN_ALL
void sluice_ordered_item_producer_register_producer (SluiceOrderedItemProducer *self,
                                                     SluicePushProducer *upstream);
SLUICE_AVAILABLE_IN_ALL
void sluice_ordered_item_producer_unregister_producer (SluiceOrderedItemProducer *self);

SLUICE_AVAILABLE_IN_ALL
SluiceConsumerator *sluice_ordered_item_producer_get_consumerator (SluiceOrderedItemProducer *self);
SLUICE_AVAILABLE_IN_ALL
SluiceTaskQueue *sluice_ordered_item_producer_get_task_queue (SluiceOrderedItemProducer *self);
SLUICE_AVAILABLE_IN_ALL
guint sluice_ordered_item_producer_get_window (SluiceOrderedItemProducer *self);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_ordered_item_producer_get_skip_failed (SluiceOrderedItemProducer *self);
SLUICE_AVAILABLE_IN_ALL
guint sluice_ordered_item_producer_get_wake_latency (SluiceOrderedItemProducer *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_ordered_item_producer_set_wake_latency (SluiceOrderedItemProducer *self,
                                                    guint microseconds);
SLUICE_AVAILABLE_IN_ALL
void sluice_ordered_item_producer_set_skip_failed (SluiceOrderedItemProducer *self,
                                                   gboolean skip_failed);

/* Named calls (src/sluice-producer-call.c). */
SLUICE_AVAILABLE_IN_ALL
void sluice_ordered_item_producer_produce_call (SluiceOrderedItemProducer *self,
                                                const char *series,
                                                const char *name,
                                                GVariant *args,
                                                int priority,
                                                int timeout_ms,
                                                GCancellable *cancellable,
                                                GAsyncReadyCallback callback,
                                                gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
void sluice_ordered_item_producer_produce_call_value (SluiceOrderedItemProducer *self,
                                                      const char *series,
                                                      const char *name,
                                                      GVariant *args,
                                                      int priority,
                                                      int timeout_ms,
                                                      GCancellable *cancellable,
                                                      GAsyncReadyCallback callback,
                                                      gpointer user_data);

G_END_DECLS
