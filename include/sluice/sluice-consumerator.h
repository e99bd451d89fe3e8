/* sluice-consumerator.h: the blocking iterator of a consumer thread
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(SLUICE_INSIDE) && !defined(SLUICE_COMPILATION)
#error "Only <sluice/sluice.h> can be included directly."
#endif

#include <gio/gio.h>
#include <sluice/sluice-version-macros.h>
#include <sluice/sluice-push-producer.h>

G_BEGIN_DECLS

#define SLUICE_TYPE_CONSUMERATOR (sluice_consumerator_get_type ())

SLUICE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SluiceConsumerator, sluice_consumerator, SLUICE, CONSUMERATOR, GObject)

SLUICE_AVAILABLE_IN_ALL
SluiceConsumerator *sluice_consumerator_new (guint capacity, GDestroyNotify item_free_func);
SLUICE_AVAILABLE_IN_ALL
SluiceConsumerator *sluice_consumerator_new_for_values (guint capacity);

SLUICE_AVAILABLE_IN_ALL
gboolean sluice_consumerator_next (SluiceConsumerator *self, gpointer *out_item, GError **error);
SLUICE_AVAILABLE_IN_ALL
void sluice_consumerator_next_async (SluiceConsumerator *self,
                                     GCancellable *cancellable,
                                     GAsyncReadyCallback callback,
                                     gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_consumerator_next_finish (SluiceConsumerator *self,
                                          GAsyncResult *result,
                                          gpointer *out_item,
                                          GError **error);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_consumerator_next_value_finish (SluiceConsumerator *self,
                                                GAsyncResult *result,
                                                GValue *value,
                                                GError **error);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_consumerator_push (SluiceConsumerator *self, gpointer item, GError **error);
SLUICE_AVAILABLE_IN_ALL
void sluice_consumerator_close (SluiceConsumerator *self, const GError *error);
SLUICE_AVAILABLE_IN_ALL
void sluice_consumerator_end (SluiceConsumerator *self);

SLUICE_AVAILABLE_IN_ALL
gboolean sluice_consumerator_next_value (SluiceConsumerator *self, GValue *value, GError **error);
SLUICE_AVAILABLE_IN_ALL
gboolean
sluice_consumerator_push_value (SluiceConsumerator *self, const GValue *value, GError **error);

SLUICE_AVAILABLE_IN_ALL
void sluice_consumerator_register_producer (SluiceConsumerator *self, SluicePushProducer *producer);
SLUICE_AVAILABLE_IN_ALL
void sluice_consumerator_unregister_producer (SluiceConsumerator *self);

SLUICE_AVAILABLE_IN_ALL
guint sluice_consumerator_get_capacity (SluiceConsumerator *self);
SLUICE_AVAILABLE_IN_ALL
guint sluice_consumerator_get_n_items (SluiceConsumerator *self);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_consumerator_is_closed (SluiceConsumerator *self);

G_END_DECLS
