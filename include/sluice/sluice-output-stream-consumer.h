/* sluice-output-stream-consumer.h: a consumer that writes items to a GOutputStream
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(SLUICE_INSIDE) && !defined(SLUICE_COMPILATION)
#error "Only <sluice/sluice.h> can be included directly."
#endif

#include <gio/gio.h>
#include <sluice/sluice-version-macros.h>
#include <sluice/sluice-ordered-item-producer.h>

G_BEGIN_DECLS

#define SLUICE_TYPE_OUTPUT_STREAM_CONSUMER (sluice_output_stream_consumer_get_type ())

SLUICE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (SluiceOutputStreamConsumer,
                      sluice_output_stream_consumer,
                      SLUICE,
                      OUTPUT_STREAM_CONSUMER,
                      GObject)

SLUICE_AVAILABLE_IN_ALL
SluiceOutputStreamConsumer *sluice_output_stream_consumer_new (SluiceOrderedItemProducer *producer,
                                                               GOutputStream *stream);
SLUICE_AVAILABLE_IN_ALL
void sluice_output_stream_consumer_start (SluiceOutputStreamConsumer *self);

SLUICE_AVAILABLE_IN_ALL
SluiceOrderedItemProducer *
sluice_output_stream_consumer_get_producer (SluiceOutputStreamConsumer *self);
SLUICE_AVAILABLE_IN_ALL
GOutputStream *sluice_output_stream_consumer_get_stream (SluiceOutputStreamConsumer *self);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_output_stream_consumer_get_close_stream (SluiceOutputStreamConsumer *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_output_stream_consumer_set_close_stream (SluiceOutputStreamConsumer *self,
                                                     gboolean close_stream);
SLUICE_AVAILABLE_IN_ALL
guint64 sluice_output_stream_consumer_get_bytes_written (SluiceOutputStreamConsumer *self);

G_END_DECLS
