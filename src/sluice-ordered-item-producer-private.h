/* sluice-ordered-item-producer-private.h: what the stream adapters ask a producer
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "sluice-private.h"

G_BEGIN_DECLS

/* Whether @self was made with new_for_values(): its items are GValue *. */
gboolean sluice_ordered_item_producer_carries_values (SluiceOrderedItemProducer *self);

/* The context @self belongs to (not a new reference). */
GMainContext *sluice_ordered_item_producer_get_owner_context (SluiceOrderedItemProducer *self);

/* Cancelled when production is aborted (a stop_producing, a failure, a
 * dispose): for a consumer's blocking calls. Any thread. */
GCancellable *sluice_ordered_item_producer_get_abort_cancellable (SluiceOrderedItemProducer *self);

/* Whether @self refuses items now (is_closed () reads the notified
 * property on the owner thread: a consumer that failed in its thread closes
 * the producer before the owner context hears of it). Any thread. */
gboolean sluice_ordered_item_producer_is_closed_now (SluiceOrderedItemProducer *self);

/* Unregisters @upstream if it is still the registered producer (an upstream
 * that ends lets go of the producer, never of a successor). Owner context. */
void sluice_ordered_item_producer_unregister_if (SluiceOrderedItemProducer *self,
                                                 SluicePushProducer *upstream);

G_END_DECLS
