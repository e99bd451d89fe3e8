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
void sluice_consumerator_set_values (SluiceConsumerator *self);

G_END_DECLS
