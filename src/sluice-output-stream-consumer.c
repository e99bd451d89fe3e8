/* sluice-output-stream-consumer.c: a consumer that writes items to a GOutputStream
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "sluice-consumerator-private.h"
#include "sluice-ordered-item-producer-private.h"

/**
 * SluiceOutputStreamConsumer:
 *
 * The consumer of a [class@Sluice.OrderedItemProducer] whose items are
 * [struct@GLib.Bytes]: it writes them, in order, to a
 * [class@Gio.OutputStream] with blocking writes, in the producer's consumer
 * thread.
 *
 * ```c
 * producer = sluice_ordered_item_producer_new (NULL, 32, (GDestroyNotify) g_bytes_unref);
 * writer = sluice_output_stream_consumer_new (producer, out);
 * sluice_output_stream_consumer_start (writer);
 * // produce GBytes items, e.g. with a SluiceInputStreamProducer, then:
 * sluice_ordered_item_producer_stop_async (producer, NULL, on_stopped, NULL);
 * ```
 *
 * With a producer made by [ctor@Sluice.OrderedItemProducer.new_for_values]
 * (the form language bindings use), the items are values holding a
 * [struct@GLib.Bytes]; any other value fails the writing with
 * %G_IO_ERROR_INVALID_DATA.
 *
 * ## Errors
 *
 * A write that fails ends the consumer with the stream's own error: the
 * producer stops production (later produce calls complete with
 * %SLUICE_ERROR_STOPPED, a registered upstream producer such as a
 * [class@Sluice.InputStreamProducer] is stopped), and
 * [method@Sluice.OrderedItemProducer.stop_finish] reports that error. No
 * item is dropped silently: the items after a failure are freed by the
 * producer and the stop fails.
 *
 * A stop that aborts production
 * ([method@Sluice.PushProducer.stop_producing], a failed item, disposing
 * the producer) interrupts a write, flush or close blocked on the stream
 * (a pipe to a reader that stalls, a socket), through the cancellable the
 * writes are given: the stop does not wait for the stream.
 *
 * At the end of the items the stream is flushed, then closed when
 * [property@Sluice.OutputStreamConsumer:close-stream] is set (the
 * default); an error there is the stop's error too. After a failure the
 * stream is closed as well, and the close's own error is ignored. The
 * stop's result, on success, is %NULL (for
 * [method@Sluice.OrderedItemProducer.stop_finish_value], an unset
 * pointer); [property@Sluice.OutputStreamConsumer:bytes-written] tells how
 * much was written.
 *
 * ## Threads
 *
 * Create and start it on the producer's owner context. The writes, the
 * flush and the close run in the producer's consumer thread, so the stream
 * must allow blocking calls from another thread (any
 * [class@Gio.OutputStream] does, as long as no other operation on it runs at
 * the same time). The getters are safe from any thread.
 */

/* What the consumer thread uses. It holds no reference to the producer
 * (nor to the consumer object, which does): a producer dropped without a
 * stop is disposed, which ends the consumer thread. */
typedef struct
{
  gatomicrefcount ref_count;
  GOutputStream *stream;
  GCancellable *aborted; /* the producer's: a stop interrupts a blocked write */
  gboolean close_stream;
  gboolean values;       /* the items are GValue * holding GBytes */
  guint64 bytes_written; /* atomic: written by the consumer thread */
} Writing;

struct _SluiceOutputStreamConsumer
{
  GObject parent_instance;

  SluiceOrderedItemProducer *producer;
  GOutputStream *stream;
  gboolean close_stream;
  Writing *writing; /* once started */
};

enum
{
  PROP_0,
  PROP_PRODUCER,
  PROP_STREAM,
  PROP_CLOSE_STREAM,
  PROP_BYTES_WRITTEN,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (SluiceOutputStreamConsumer, sluice_output_stream_consumer, G_TYPE_OBJECT)

static Writing *
writing_ref (Writing *writing)
{
  g_atomic_ref_count_inc (&writing->ref_count);
  return writing;
}

static void
writing_unref (gpointer data)
{
  Writing *writing = data;

  if (!g_atomic_ref_count_dec (&writing->ref_count))
    return;
  g_object_unref (writing->stream);
  g_object_unref (writing->aborted);
  g_free (writing);
}

/* The consumer thread: the bytes an item carries, borrowed from it. */
static GBytes *
item_bytes (Writing *writing, gpointer item, GError **error)
{
  GValue *value;

  if (!writing->values)
    return item;

  value = item;
  if (G_VALUE_HOLDS (value, G_TYPE_BYTES) && g_value_get_boxed (value) != NULL)
    return g_value_get_boxed (value);

  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                       _ ("An item to write is not a GBytes"));
  return NULL;
}

static void
item_free (Writing *writing, gpointer item)
{
  if (writing->values)
    sluice_value_item_free (item);
  else
    g_bytes_unref (item);
}

/* The consumer thread: writes every item, then flushes and closes. */
static gboolean
write_items (Writing *writing, SluiceConsumerator *items, GError **error)
{
  GError *local_error = NULL;
  gpointer item;

  while (sluice_consumerator_next (items, &item, &local_error))
    {
      GBytes *bytes = item_bytes (writing, item, &local_error);
      gsize size = 0;
      const guint8 *data = bytes != NULL ? g_bytes_get_data (bytes, &size) : NULL;
      gsize written = 0;
      gboolean ok =
          bytes != NULL && g_output_stream_write_all (writing->stream, data, size, &written,
                                                      writing->aborted, &local_error);

      __atomic_add_fetch (&writing->bytes_written, written, __ATOMIC_RELAXED);
      item_free (writing, item);
      if (!ok)
        break;
    }

  /* After a failure too: what was written before it is the caller's. */
  g_output_stream_flush (writing->stream, writing->aborted,
                         local_error == NULL ? &local_error : NULL);
  if (writing->close_stream)
    g_output_stream_close (writing->stream, writing->aborted,
                           local_error == NULL ? &local_error : NULL);

  if (local_error != NULL)
    {
      g_propagate_error (error, local_error);
      return FALSE;
    }
  return TRUE;
}

static gpointer
consume (SluiceConsumerator *items, gpointer user_data, GError **error)
{
  write_items (user_data, items, error);
  return NULL;
}

static void
consume_values (SluiceConsumerator *items, GValue *result, gpointer user_data, GError **error)
{
  write_items (user_data, items, error);
}

static void
sluice_output_stream_consumer_dispose (GObject *object)
{
  SluiceOutputStreamConsumer *self = SLUICE_OUTPUT_STREAM_CONSUMER (object);

  g_clear_object (&self->producer);
  g_clear_object (&self->stream);
  g_clear_pointer (&self->writing, writing_unref);

  G_OBJECT_CLASS (sluice_output_stream_consumer_parent_class)->dispose (object);
}

static void
sluice_output_stream_consumer_get_property (GObject *object,
                                            guint prop_id,
                                            GValue *value,
                                            GParamSpec *pspec)
{
  SluiceOutputStreamConsumer *self = SLUICE_OUTPUT_STREAM_CONSUMER (object);

  switch (prop_id)
    {
    case PROP_PRODUCER:
      g_value_set_object (value, self->producer);
      break;
    case PROP_STREAM:
      g_value_set_object (value, self->stream);
      break;
    case PROP_CLOSE_STREAM:
      g_value_set_boolean (value, self->close_stream);
      break;
    case PROP_BYTES_WRITTEN:
      g_value_set_uint64 (value, sluice_output_stream_consumer_get_bytes_written (self));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_output_stream_consumer_set_property (GObject *object,
                                            guint prop_id,
                                            const GValue *value,
                                            GParamSpec *pspec)
{
  SluiceOutputStreamConsumer *self = SLUICE_OUTPUT_STREAM_CONSUMER (object);

  switch (prop_id)
    {
    case PROP_PRODUCER:
      self->producer = g_value_dup_object (value);
      break;
    case PROP_STREAM:
      self->stream = g_value_dup_object (value);
      break;
    case PROP_CLOSE_STREAM:
      sluice_output_stream_consumer_set_close_stream (self, g_value_get_boolean (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_output_stream_consumer_class_init (SluiceOutputStreamConsumerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = sluice_output_stream_consumer_dispose;
  object_class->get_property = sluice_output_stream_consumer_get_property;
  object_class->set_property = sluice_output_stream_consumer_set_property;

  /**
   * SluiceOutputStreamConsumer:producer:
   *
   * The producer whose items are written.
   */
  properties[PROP_PRODUCER] =
      g_param_spec_object ("producer", NULL, NULL, SLUICE_TYPE_ORDERED_ITEM_PRODUCER,
                           G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceOutputStreamConsumer:stream:
   *
   * The stream the items are written to.
   */
  properties[PROP_STREAM] =
      g_param_spec_object ("stream", NULL, NULL, G_TYPE_OUTPUT_STREAM,
                           G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceOutputStreamConsumer:close-stream:
   *
   * Whether the stream is closed when the writing ends (after the last
   * item, or after a failure). %TRUE by default, so that an error the
   * close reports (a full disk on a network file system, say) reaches the
   * stop. Set it to %FALSE to write more to the stream after the stop;
   * the stream is flushed either way (unless production was aborted,
   * which interrupts the writing). Set it before
   * [method@Sluice.OutputStreamConsumer.start].
   */
  properties[PROP_CLOSE_STREAM] = g_param_spec_boolean (
      "close-stream", NULL, NULL, TRUE,
      G_PARAM_READWRITE | G_PARAM_CONSTRUCT | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceOutputStreamConsumer:bytes-written:
   *
   * How many bytes have been written to the stream so far, including the
   * part of a write that failed. It changes in the consumer thread and is
   * not notified: read it when you need it (a progress bar polls it).
   */
  properties[PROP_BYTES_WRITTEN] = g_param_spec_uint64 (
      "bytes-written", NULL, NULL, 0, G_MAXUINT64, 0, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
sluice_output_stream_consumer_init (SluiceOutputStreamConsumer *self)
{
  self->close_stream = TRUE;
}

/**
 * sluice_output_stream_consumer_new:
 * @producer: the producer whose items to write, of [struct@GLib.Bytes] (or
 *   values holding one, for a producer made for values)
 * @stream: the stream to write them to
 *
 * Creates a consumer that writes the items of @producer to @stream once
 * started with [method@Sluice.OutputStreamConsumer.start]. It closes
 * @stream at the end unless
 * [property@Sluice.OutputStreamConsumer:close-stream] is set to %FALSE.
 *
 * Call it on the owner context of @producer.
 *
 * Returns: (transfer full): a new consumer
 */
SluiceOutputStreamConsumer *
sluice_output_stream_consumer_new (SluiceOrderedItemProducer *producer, GOutputStream *stream)
{
  g_return_val_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (producer), NULL);
  g_return_val_if_fail (G_IS_OUTPUT_STREAM (stream), NULL);

  return g_object_new (SLUICE_TYPE_OUTPUT_STREAM_CONSUMER, "producer", producer, "stream", stream,
                       NULL);
}

/**
 * sluice_output_stream_consumer_start:
 * @self: a consumer
 *
 * Starts the producer with @self as its consumer
 * ([method@Sluice.OrderedItemProducer.start], or
 * [method@Sluice.OrderedItemProducer.start_values] for a producer made for
 * values): from now on its consumer thread writes every item, in order, to
 * the stream. The writing holds no reference to the producer, @self does: a
 * producer dropped without a stop, together with @self, is disposed, which
 * ends the writing (and closes the stream, with
 * [property@Sluice.OutputStreamConsumer:close-stream]).
 *
 * Starting twice, or starting a producer that was started or stopped, is a
 * programmer error.
 *
 * Call it on the owner context of the producer.
 */
void
sluice_output_stream_consumer_start (SluiceOutputStreamConsumer *self)
{
  Writing *writing;

  g_return_if_fail (SLUICE_IS_OUTPUT_STREAM_CONSUMER (self));
  g_return_if_fail (self->writing == NULL);

  writing = g_new0 (Writing, 1);
  g_atomic_ref_count_init (&writing->ref_count);
  writing->stream = g_object_ref (self->stream);
  writing->aborted =
      g_object_ref (sluice_ordered_item_producer_get_abort_cancellable (self->producer));
  writing->close_stream = self->close_stream;
  writing->values = sluice_ordered_item_producer_carries_values (self->producer);
  self->writing = writing;

  if (writing->values)
    sluice_ordered_item_producer_start_values (self->producer, consume_values,
                                               writing_ref (writing), writing_unref);
  else
    sluice_ordered_item_producer_start (self->producer, consume, writing_ref (writing),
                                        writing_unref, NULL);
}

/**
 * sluice_output_stream_consumer_get_producer:
 * @self: a consumer
 *
 * Gets [property@Sluice.OutputStreamConsumer:producer].
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer none): the producer
 */
SluiceOrderedItemProducer *
sluice_output_stream_consumer_get_producer (SluiceOutputStreamConsumer *self)
{
  g_return_val_if_fail (SLUICE_IS_OUTPUT_STREAM_CONSUMER (self), NULL);

  return self->producer;
}

/**
 * sluice_output_stream_consumer_get_stream:
 * @self: a consumer
 *
 * Gets [property@Sluice.OutputStreamConsumer:stream].
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer none): the stream
 */
GOutputStream *
sluice_output_stream_consumer_get_stream (SluiceOutputStreamConsumer *self)
{
  g_return_val_if_fail (SLUICE_IS_OUTPUT_STREAM_CONSUMER (self), NULL);

  return self->stream;
}

/**
 * sluice_output_stream_consumer_get_close_stream:
 * @self: a consumer
 *
 * Gets [property@Sluice.OutputStreamConsumer:close-stream].
 *
 * This function is safe to call from any thread.
 *
 * Returns: whether the stream is closed when the writing ends
 */
gboolean
sluice_output_stream_consumer_get_close_stream (SluiceOutputStreamConsumer *self)
{
  g_return_val_if_fail (SLUICE_IS_OUTPUT_STREAM_CONSUMER (self), FALSE);

  return self->close_stream;
}

/**
 * sluice_output_stream_consumer_set_close_stream:
 * @self: a consumer, not started yet
 * @close_stream: whether to close the stream when the writing ends
 *
 * Sets [property@Sluice.OutputStreamConsumer:close-stream]. Setting it
 * after [method@Sluice.OutputStreamConsumer.start] is a programmer error.
 *
 * Call it on the owner context of the producer.
 */
void
sluice_output_stream_consumer_set_close_stream (SluiceOutputStreamConsumer *self,
                                                gboolean close_stream)
{
  g_return_if_fail (SLUICE_IS_OUTPUT_STREAM_CONSUMER (self));
  g_return_if_fail (self->writing == NULL);

  close_stream = !!close_stream;
  if (self->close_stream == close_stream)
    return;
  self->close_stream = close_stream;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CLOSE_STREAM]);
}

/**
 * sluice_output_stream_consumer_get_bytes_written:
 * @self: a consumer
 *
 * Gets [property@Sluice.OutputStreamConsumer:bytes-written]: how many bytes
 * have been written so far. After the stop has completed it is the total.
 *
 * This function is safe to call from any thread.
 *
 * Returns: the number of bytes written
 */
guint64
sluice_output_stream_consumer_get_bytes_written (SluiceOutputStreamConsumer *self)
{
  g_return_val_if_fail (SLUICE_IS_OUTPUT_STREAM_CONSUMER (self), 0);

  return self->writing != NULL ? __atomic_load_n (&self->writing->bytes_written, __ATOMIC_RELAXED)
                               : 0;
}
