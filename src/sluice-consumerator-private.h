/* sluice-consumerator-private.h: a consumerator over a producer's buffer
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "sluice-reorder-buffer-private.h"

G_BEGIN_DECLS

/* The consumerator an ordered item producer hands to its consumer: it reads
 * straight from @rb (no second queue). */
SluiceConsumerator *sluice_consumerator_new_for_buffer (SluiceReorderBuffer *rb);

/* Items that are GValue *, as g_boxed_copy() makes them: what the _value
 * functions make and take. */
GValue *sluice_value_item_new (const GValue *value);
void sluice_value_item_free (gpointer item);
void sluice_consumerator_set_values (SluiceConsumerator *self, gboolean values);

/* The next_async requests of a producer's consumerator (set_served_by_owner,
 * at construction) are served by the producer's consumer thread when it was
 * started without a function: it runs serve_requests(), which returns when
 * the iteration is over and no request waits, or after interrupt_serving(),
 * which the producer calls when it stops for good. finish_serving() answers
 * what is left, and later requests, at once (with the end or the stop):
 * the producer calls it when its consumer is done, or it stopped unstarted.
 * Other buffer-backed consumerators (a pipeline's) serve with a thread of
 * their own. */
void sluice_consumerator_set_served_by_owner (SluiceConsumerator *self);
void sluice_consumerator_finish_serving (SluiceConsumerator *self);
void sluice_consumerator_serve_requests (SluiceConsumerator *self);
void sluice_consumerator_interrupt_serving (SluiceConsumerator *self);

G_END_DECLS
