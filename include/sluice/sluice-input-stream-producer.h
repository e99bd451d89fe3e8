/* sluice-input-stream-producer.h: items read from a GInputStream, chunk by chunk
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
#include <sluice/sluice-push-producer.h>

G_BEGIN_DECLS

/**
 * SluiceChunkFunc:
 * @chunk: the chunk just read
 * @previous: (nullable): the chunk read before it (of the previous file,
 *   for the first chunk of a file after the first), or %NULL for the first
 *   chunk: a dictionary for compression, or context for a parser
 * @offset: where @chunk starts in the input (of all the files together)
 * @cancellable: (nullable): cancelled when production stops early
 * @user_data: (closure): the data given to
 *   [method@Sluice.InputStreamProducer.set_chunk_func]
 * @error: return location for an error
 *
 * A blocking function that turns a chunk into the item produced for it
 * (compresses it, hashes it, …). It runs in a thread of the producer's task
 * queue; chunks are worked on in parallel and their items still reach the
 * consumer in input order. With
 * [property@Sluice.InputStreamProducer:chunk-func-in-thread] %FALSE it runs
 * on the owner context instead, one chunk at a time.
 *
 * Returns: (transfer full) (nullable): the item, or %NULL with @error set:
 *   the item fails, and production ends there
 */
typedef GBytes *(*SluiceChunkFunc) (GBytes *chunk,
                                    GBytes *previous,
                                    guint64 offset,
                                    GCancellable *cancellable,
                                    gpointer user_data,
                                    GError **error);

#define SLUICE_TYPE_INPUT_STREAM_PRODUCER (sluice_input_stream_producer_get_type ())

SLUICE_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (
    SluiceInputStreamProducer, sluice_input_stream_producer, SLUICE, INPUT_STREAM_PRODUCER, GObject)

SLUICE_AVAILABLE_IN_ALL
SluiceInputStreamProducer *sluice_input_stream_producer_new (SluiceOrderedItemProducer *producer,
                                                             GInputStream *stream,
                                                             gsize chunk_size);
SLUICE_AVAILABLE_IN_ALL
SluiceInputStreamProducer *sluice_input_stream_producer_new_for_files (
    SluiceOrderedItemProducer *producer, GFile *const *files, guint n_files, gsize chunk_size);

SLUICE_AVAILABLE_IN_ALL
void sluice_input_stream_producer_set_chunk_func (SluiceInputStreamProducer *self,
                                                  SluiceChunkFunc func,
                                                  gpointer func_data,
                                                  GDestroyNotify func_data_destroy);

SLUICE_AVAILABLE_IN_ALL
void sluice_input_stream_producer_read_all_async (SluiceInputStreamProducer *self,
                                                  int io_priority,
                                                  GCancellable *cancellable,
                                                  GAsyncReadyCallback callback,
                                                  gpointer user_data);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_input_stream_producer_read_all_finish (SluiceInputStreamProducer *self,
                                                       GAsyncResult *result,
                                                       GError **error);

SLUICE_AVAILABLE_IN_ALL
SluiceOrderedItemProducer *
sluice_input_stream_producer_get_producer (SluiceInputStreamProducer *self);
SLUICE_AVAILABLE_IN_ALL
GInputStream *sluice_input_stream_producer_get_stream (SluiceInputStreamProducer *self);
SLUICE_AVAILABLE_IN_ALL
gsize sluice_input_stream_producer_get_chunk_size (SluiceInputStreamProducer *self);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_input_stream_producer_get_close_stream (SluiceInputStreamProducer *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_input_stream_producer_set_close_stream (SluiceInputStreamProducer *self,
                                                    gboolean close_stream);
SLUICE_AVAILABLE_IN_ALL
gboolean sluice_input_stream_producer_get_chunk_func_in_thread (SluiceInputStreamProducer *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_input_stream_producer_set_chunk_func_in_thread (SluiceInputStreamProducer *self,
                                                            gboolean in_thread);
SLUICE_AVAILABLE_IN_ALL
guint64 sluice_input_stream_producer_get_bytes_read (SluiceInputStreamProducer *self);
SLUICE_AVAILABLE_IN_ALL
guint64 sluice_input_stream_producer_get_chunks_read (SluiceInputStreamProducer *self);

G_END_DECLS
