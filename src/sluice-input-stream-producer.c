/* sluice-input-stream-producer.c: items read from a GInputStream, chunk by chunk
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "sluice-consumerator-private.h"
#include "sluice-ordered-item-producer-private.h"

/**
 * SluiceInputStreamProducer:
 *
 * Reads a [class@Gio.InputStream], or a list of [iface@Gio.File]s one after
 * another, in chunks of a given size with asynchronous reads, and produces
 * one item per chunk, in order, into a [class@Sluice.OrderedItemProducer]:
 * the chunk itself as a [struct@GLib.Bytes], or what a blocking
 * [callback@Sluice.ChunkFunc] makes of it in the producer's task queue
 * (see [method@Sluice.InputStreamProducer.set_chunk_func]).
 *
 * ```c
 * producer = sluice_ordered_item_producer_new (NULL, 32, (GDestroyNotify) g_bytes_unref);
 * writer = sluice_output_stream_consumer_new (producer, out);
 * sluice_output_stream_consumer_start (writer);
 * reader = sluice_input_stream_producer_new (producer, in, 65536);
 * sluice_input_stream_producer_set_chunk_func (reader, compress_chunk, NULL, NULL);
 * sluice_input_stream_producer_read_all_async (reader, G_PRIORITY_DEFAULT, NULL,
 *                                              on_read_all, producer);
 * // on_read_all: sluice_input_stream_producer_read_all_finish(), then
 * // sluice_ordered_item_producer_stop_async()
 * ```
 *
 * Every chunk is @chunk_size bytes long but the last one of each stream or
 * file, which may be shorter; a chunk never spans two files; an empty input
 * produces no item.
 *
 * ## Flow control
 *
 * While it reads, it is the [iface@Sluice.PushProducer] registered with the
 * producer ([method@Sluice.OrderedItemProducer.register_producer]): when
 * the producer's window is full it is paused and starts no read until the
 * producer resumes it, so no more than the window's items are live (asked
 * for and not yet taken by the consumer), plus the one chunk being read.
 * Nothing is asked of the caller for that. It can also be paused, resumed
 * and stopped by hand, from any thread.
 *
 * ## The end, errors and cancellation
 *
 * [method@Sluice.InputStreamProducer.read_all_async] completes when the
 * whole input has been read and an item asked for every chunk; then stop
 * the producer ([method@Sluice.OrderedItemProducer.stop_async]) to wait for
 * the consumer. It produces nothing after that.
 *
 * A read that fails (or a file that cannot be opened) ends the reading: the
 * bytes read before the error are produced, then an item that fails with
 * the stream's own error, so that the consumer receives everything before
 * it and the producer's stop reports that error; `read_all_finish` reports
 * it too. Cancelling the cancellable given to `read_all_async` ends the
 * reading the same way with %G_IO_ERROR_CANCELLED;
 * [method@Sluice.PushProducer.stop_producing] with %SLUICE_ERROR_STOPPED.
 * When the producer closes (it was stopped, an item failed, the consumer
 * returned or failed) the reading stops and completes with
 * %SLUICE_ERROR_STOPPED, producing nothing more. A stop or a cancel ends
 * the reading at once, without waiting for a read in flight (a read
 * blocked on a slow pipe): that read's bytes are dropped when it returns.
 * With [property@Sluice.InputStreamProducer:close-stream] %FALSE the
 * stream is the caller's again when `read_all_async` completes, so it
 * completes only once such a read has returned (cancelled: at once for
 * pollable streams such as pipes and sockets).
 *
 * Streams are closed at their end (or the reading's): the files' always,
 * the stream given to [ctor@Sluice.InputStreamProducer.new] unless
 * [property@Sluice.InputStreamProducer:close-stream] is %FALSE.
 *
 * ## Threads
 *
 * Create it and call its methods on the owner context of the producer; the
 * reads run there, and so do the callback of `read_all_async` and the
 * destroy notify of the chunk function's data. Items made by the chunk
 * function are made in the task queue's threads (on the owner context with
 * [property@Sluice.InputStreamProducer:chunk-func-in-thread] %FALSE). The push-producer methods
 * and the getters are safe from any thread.
 */

/* The chunk function and its data, shared by the chunks being worked on:
 * the data's destroy notify runs when the last of them is done, on the
 * owner context. */
typedef struct
{
  gatomicrefcount ref_count;
  SluiceChunkFunc func;
  gpointer data;
  GDestroyNotify destroy;
  GMainContext *context;
  GThread *thread;
} ChunkFunc;

/* One chunk on its way to becoming an item. */
typedef struct
{
  GBytes *chunk;
  GBytes *previous;
  guint64 offset;
  ChunkFunc *func;           /* nullable: the chunk is the item */
  gboolean values;           /* the producer carries values: the item is a GValue * */
  gboolean in_thread;        /* func runs in the task queue, else on the owner context */
  GCancellable *cancellable; /* of the reads, for func on the owner context */
} Chunk;

struct _SluiceInputStreamProducer
{
  GObject parent_instance;

  SluiceOrderedItemProducer *producer;
  GMainContext *context;
  GInputStream *stream; /* nullable: reading files */
  GPtrArray *files;     /* of GFile, nullable */
  gsize chunk_size;
  gboolean close_stream;
  gboolean chunk_func_in_thread;
  ChunkFunc *chunk_func;

  /* Owner context. */
  GTask *task;         /* of the read_all in progress */
  GTask *ended_task;   /* of a read_all that ended with a read of the
                        * caller's stream in flight: returned after it */
  GError *ended_error; /* (nullable): what ended_task returns */
  gboolean ran;        /* read_all was called */
  gboolean busy;       /* a read or an open is in flight */
  guint next_file;     /* the index of the file to open next */
  GInputStream *input; /* being read */
  gboolean input_owned;
  guint8 *buffer; /* of the read in flight */
  GBytes *previous;
  int io_priority;
  GCancellable *user_cancellable;
  gulong cancelled_id;

  /* Any thread. */
  GCancellable *cancellable; /* of the reads: stop or the user's cancel */
  int paused;                /* atomic */
  int stop_requested;        /* atomic */
  guint64 bytes_read;        /* atomic */
  guint64 chunks_read;       /* atomic */
};

enum
{
  PROP_0,
  PROP_PRODUCER,
  PROP_STREAM,
  PROP_CHUNK_SIZE,
  PROP_CLOSE_STREAM,
  PROP_CHUNK_FUNC_IN_THREAD,
  PROP_BYTES_READ,
  PROP_CHUNKS_READ,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void sluice_input_stream_producer_push_producer_init (SluicePushProducerInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (
    SluiceInputStreamProducer,
    sluice_input_stream_producer,
    G_TYPE_OBJECT,
    G_IMPLEMENT_INTERFACE (SLUICE_TYPE_PUSH_PRODUCER,
                           sluice_input_stream_producer_push_producer_init))

static void step (SluiceInputStreamProducer *self);

/* --- the chunk function --- */

static ChunkFunc *
chunk_func_ref (ChunkFunc *func)
{
  g_atomic_ref_count_inc (&func->ref_count);
  return func;
}

static gboolean
chunk_func_destroy_idle (gpointer data)
{
  ChunkFunc *func = data;

  func->destroy (func->data);
  return G_SOURCE_REMOVE;
}

static void
chunk_func_free (gpointer data)
{
  ChunkFunc *func = data;

  g_main_context_unref (func->context);
  g_free (func);
}

/* Any thread: the data is destroyed on the owner context. */
static void
chunk_func_unref (ChunkFunc *func)
{
  if (!g_atomic_ref_count_dec (&func->ref_count))
    return;
  if (func->destroy == NULL ||
      (g_thread_self () == func->thread || g_main_context_is_owner (func->context)))
    {
      if (func->destroy != NULL)
        func->destroy (func->data);
      chunk_func_free (func);
      return;
    }
  sluice_idle_attach (func->context, G_PRIORITY_DEFAULT, "[sluice] chunk function data destroy",
                      chunk_func_destroy_idle, func, chunk_func_free);
}

/* --- chunks --- */

static void
chunk_free (gpointer data)
{
  Chunk *chunk = data;

  g_clear_pointer (&chunk->chunk, g_bytes_unref);
  g_clear_pointer (&chunk->previous, g_bytes_unref);
  g_clear_pointer (&chunk->func, chunk_func_unref);
  g_clear_object (&chunk->cancellable);
  g_free (chunk);
}

/* The item for @bytes, which it takes. */
static gpointer
make_item (GBytes *bytes, gboolean values)
{
  GValue value = G_VALUE_INIT;
  GValue *item;

  if (!values)
    return bytes;
  g_value_init (&value, G_TYPE_BYTES);
  g_value_take_boxed (&value, bytes);
  item = sluice_value_item_new (&value);
  g_value_unset (&value);
  return item;
}

/* A thread of the task queue, or the owner context. */
static gpointer
run_chunk_func (GCancellable *cancellable, gpointer data, GError **error)
{
  Chunk *chunk = data;
  GError *local_error = NULL;
  GBytes *bytes;

  bytes = chunk->func->func (chunk->chunk, chunk->previous, chunk->offset, cancellable,
                             chunk->func->data, &local_error);
  if (bytes == NULL)
    {
      if (local_error == NULL)
        local_error = g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_FAILED,
                                           _ ("The chunk function returned neither an item "
                                              "nor an error"));
      g_propagate_error (error, local_error);
      return NULL;
    }
  if (local_error != NULL)
    {
      g_critical ("A SluiceChunkFunc returned an item and set an error; the error is dropped");
      g_clear_error (&local_error);
    }
  return make_item (bytes, chunk->values);
}

/* The item function: the owner context, at the produce call or once the
 * window had room for it. */
static void
produce_chunk (SluiceSlot *slot, gpointer data)
{
  Chunk *chunk = data;
  Chunk *moved;

  if (chunk->func == NULL)
    {
      sluice_slot_complete (slot, make_item (g_steal_pointer (&chunk->chunk), chunk->values));
      return;
    }
  if (!chunk->in_thread)
    {
      GError *error = NULL;
      gpointer item = run_chunk_func (chunk->cancellable, chunk, &error);

      if (item != NULL)
        sluice_slot_complete (slot, item);
      else
        sluice_slot_fail (slot, error);
      return;
    }
  /* The blocking part runs in the task queue and completes the slot; it
   * takes the chunk over (the produce call frees the empty shell). */
  moved = g_memdup2 (chunk, sizeof *chunk);
  memset (chunk, 0, sizeof *chunk);
  sluice_slot_continue_in_thread (slot, run_chunk_func, moved, chunk_free);
}

static void
fail_slot (SluiceSlot *slot, gpointer data)
{
  sluice_slot_fail (slot, g_error_copy (data));
}

/* --- the reading, on the owner context --- */

static gboolean
step_idle (gpointer data)
{
  step (data);
  return G_SOURCE_REMOVE;
}

/* Any thread: runs step() from the owner context's main loop, never inside
 * the caller's own call. */
static void
schedule_step (SluiceInputStreamProducer *self)
{
  sluice_idle_attach (self->context, G_PRIORITY_DEFAULT, "[sluice] input stream producer step",
                      step_idle, g_object_ref (self), g_object_unref);
}

static void
end_input (SluiceInputStreamProducer *self)
{
  g_autoptr (GInputStream) input = g_steal_pointer (&self->input);

  /* Nothing waits for the close: its errors say nothing about the data. */
  if (input != NULL && self->input_owned)
    g_input_stream_close_async (input, self->io_priority, NULL, NULL, NULL);
}

static void
return_task (GTask *task, GError *error)
{
  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
  g_object_unref (task);
}

/* Ends the reading with @error (taken; %NULL at the end of the input). */
static void
finish (SluiceInputStreamProducer *self, GError *error)
{
  GTask *task = g_steal_pointer (&self->task);

  /* The error takes its place in the output order: the consumer receives
   * every chunk before it and the stop reports it. A closed producer
   * refuses the item, which is what it should do. */
  if (error != NULL && !sluice_ordered_item_producer_is_closed (self->producer))
    sluice_ordered_item_producer_produce_item (self->producer, fail_slot, g_error_copy (error),
                                               (GDestroyNotify) g_error_free, NULL, NULL, NULL);

  /* A read still in flight is left to finish on its own (a read blocked on
   * a slow pipe must not hold up a stop); its callback ends the input. */
  if (!self->busy)
    end_input (self);
  g_clear_pointer (&self->previous, g_bytes_unref);
  if (self->cancelled_id != 0)
    g_cancellable_disconnect (self->user_cancellable, self->cancelled_id);
  self->cancelled_id = 0;
  g_clear_object (&self->user_cancellable);
  sluice_ordered_item_producer_unregister_if (self->producer, SLUICE_PUSH_PRODUCER (self));

  /* The caller's own stream (not closed by us) must be theirs again when
   * read_all's callback runs: with a read of it still in flight (cancelled
   * by the stop or the cancel; pollable streams return at once), the task
   * completes when that read returns. */
  if (self->busy && !self->input_owned)
    {
      self->ended_task = g_steal_pointer (&task);
      self->ended_error = error;
      return;
    }
  return_task (task, error);
}

/* The error that ends a reading whose reads were cancelled. */
static GError *
ending_error (SluiceInputStreamProducer *self)
{
  GError *error = NULL;

  if (self->user_cancellable != NULL &&
      g_cancellable_set_error_if_cancelled (self->user_cancellable, &error))
    return error;
  return g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_STOPPED,
                              _ ("Reading was stopped before the end of the input"));
}

/* The error that ends the reading when a read or an open failed with
 * @error (taken): a cancellation of ours has its reason instead. */
static GError *
reason_of (SluiceInputStreamProducer *self, GError *error)
{
  if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) ||
      !g_cancellable_is_cancelled (self->cancellable))
    return error;
  g_error_free (error);
  return ending_error (self);
}

static void
produce_bytes (SluiceInputStreamProducer *self, guint8 *buffer, gsize n)
{
  Chunk *chunk = g_new0 (Chunk, 1);

  chunk->chunk = g_bytes_new_take (buffer, n);
  chunk->previous = self->previous != NULL ? g_bytes_ref (self->previous) : NULL;
  chunk->offset = __atomic_load_n (&self->bytes_read, __ATOMIC_RELAXED);
  chunk->func = self->chunk_func != NULL ? chunk_func_ref (self->chunk_func) : NULL;
  chunk->values = sluice_ordered_item_producer_carries_values (self->producer);
  chunk->in_thread = self->chunk_func_in_thread;
  if (chunk->func != NULL && !chunk->in_thread)
    chunk->cancellable = g_object_ref (self->cancellable);
  g_clear_pointer (&self->previous, g_bytes_unref);
  self->previous = g_bytes_ref (chunk->chunk);
  __atomic_add_fetch (&self->bytes_read, n, __ATOMIC_RELAXED);
  __atomic_add_fetch (&self->chunks_read, 1, __ATOMIC_RELAXED);

  /* A full window pauses us inside this call (we are its registered
   * upstream): step() then starts no read until the resume. */
  sluice_ordered_item_producer_produce_item (self->producer, produce_chunk, chunk, chunk_free, NULL,
                                             NULL, NULL);
}

static void
on_read (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (SluiceInputStreamProducer) self = data;
  guint8 *buffer = g_steal_pointer (&self->buffer);
  GError *error = NULL;
  gsize n = 0;

  self->busy = FALSE;
  g_input_stream_read_all_finish (G_INPUT_STREAM (source), result, &n, &error);
  if (self->task == NULL)
    {
      /* The reading ended while this read was in flight. */
      g_clear_error (&error);
      g_free (buffer);
      end_input (self);
      if (self->ended_task != NULL)
        return_task (g_steal_pointer (&self->ended_task), g_steal_pointer (&self->ended_error));
      return;
    }

  /* What was read before an error is input too. */
  if (n > 0)
    produce_bytes (self, buffer, n);
  else
    g_free (buffer);

  if (error != NULL)
    {
      finish (self, reason_of (self, error));
      return;
    }
  /* read_all reads short only at the end of the stream. */
  if (n < self->chunk_size)
    end_input (self);
  step (self);
}

static void
on_opened (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (SluiceInputStreamProducer) self = data;
  GError *error = NULL;
  GFileInputStream *input = g_file_read_finish (G_FILE (source), result, &error);

  self->busy = FALSE;
  if (self->task == NULL)
    {
      /* The reading ended while the file was being opened. */
      g_clear_error (&error);
      g_clear_object (&input);
      return;
    }
  if (input == NULL)
    {
      finish (self, reason_of (self, error));
      return;
    }
  self->input = G_INPUT_STREAM (input);
  self->input_owned = TRUE;
  step (self);
}

/* Owner context, from the main loop: starts the next read or open, or
 * ends the reading. Does nothing while paused or while a read is in
 * flight, unless the reading was stopped or cancelled: that ends it now. */
static void
step (SluiceInputStreamProducer *self)
{
  if (self->task == NULL)
    return;
  if (g_cancellable_is_cancelled (self->cancellable))
    {
      finish (self, ending_error (self));
      return;
    }
  if (self->busy || g_atomic_int_get (&self->paused))
    return;
  /* A producer closed in another thread (a consumer that took a failed
   * item) refuses the chunks before it stops us from the owner context:
   * reading on to the end would report a reading that produced nothing
   * more as complete. */
  if (sluice_ordered_item_producer_is_closed_now (self->producer))
    {
      finish (self, ending_error (self));
      return;
    }

  if (self->input == NULL)
    {
      if (self->files == NULL || self->next_file >= self->files->len)
        {
          finish (self, NULL);
          return;
        }
      self->busy = TRUE;
      g_file_read_async (self->files->pdata[self->next_file++], self->io_priority,
                         self->cancellable, on_opened, g_object_ref (self));
      return;
    }

  self->busy = TRUE;
  self->buffer = g_malloc (self->chunk_size);
  g_input_stream_read_all_async (self->input, self->buffer, self->chunk_size, self->io_priority,
                                 self->cancellable, on_read, g_object_ref (self));
}

/* Any thread: the cancellable of read_all was cancelled. */
static void
on_user_cancelled (GCancellable *cancellable, gpointer data)
{
  SluiceInputStreamProducer *self = data;

  g_cancellable_cancel (self->cancellable);
  schedule_step (self);
}

/* --- push producer --- */

static void
sluice_input_stream_producer_pause_producing (SluicePushProducer *producer)
{
  SluiceInputStreamProducer *self = SLUICE_INPUT_STREAM_PRODUCER (producer);

  g_atomic_int_set (&self->paused, TRUE);
}

static void
sluice_input_stream_producer_resume_producing (SluicePushProducer *producer)
{
  SluiceInputStreamProducer *self = SLUICE_INPUT_STREAM_PRODUCER (producer);

  if (g_atomic_int_compare_and_exchange (&self->paused, TRUE, FALSE))
    schedule_step (self);
}

static void
sluice_input_stream_producer_stop_producing (SluicePushProducer *producer)
{
  SluiceInputStreamProducer *self = SLUICE_INPUT_STREAM_PRODUCER (producer);

  if (g_atomic_int_compare_and_exchange (&self->stop_requested, FALSE, TRUE))
    {
      g_cancellable_cancel (self->cancellable);
      schedule_step (self);
    }
}

static void
sluice_input_stream_producer_push_producer_init (SluicePushProducerInterface *iface)
{
  iface->pause_producing = sluice_input_stream_producer_pause_producing;
  iface->resume_producing = sluice_input_stream_producer_resume_producing;
  iface->stop_producing = sluice_input_stream_producer_stop_producing;
}

/* --- GObject --- */

static void
sluice_input_stream_producer_dispose (GObject *object)
{
  SluiceInputStreamProducer *self = SLUICE_INPUT_STREAM_PRODUCER (object);

  /* A reading in progress holds a reference: there is none here. */
  if (self->input != NULL && self->input_owned)
    g_input_stream_close (self->input, NULL, NULL);
  g_clear_object (&self->input);
  g_clear_object (&self->stream);
  g_clear_pointer (&self->files, g_ptr_array_unref);
  g_clear_pointer (&self->previous, g_bytes_unref);
  g_clear_pointer (&self->chunk_func, chunk_func_unref);
  g_clear_object (&self->producer);

  G_OBJECT_CLASS (sluice_input_stream_producer_parent_class)->dispose (object);
}

static void
sluice_input_stream_producer_finalize (GObject *object)
{
  SluiceInputStreamProducer *self = SLUICE_INPUT_STREAM_PRODUCER (object);

  g_clear_object (&self->cancellable);
  g_clear_pointer (&self->context, g_main_context_unref);

  G_OBJECT_CLASS (sluice_input_stream_producer_parent_class)->finalize (object);
}

static void
sluice_input_stream_producer_constructed (GObject *object)
{
  SluiceInputStreamProducer *self = SLUICE_INPUT_STREAM_PRODUCER (object);

  G_OBJECT_CLASS (sluice_input_stream_producer_parent_class)->constructed (object);

  if (self->producer != NULL)
    self->context =
        g_main_context_ref (sluice_ordered_item_producer_get_owner_context (self->producer));
  else
    self->context = g_main_context_ref_thread_default ();
}

static void
sluice_input_stream_producer_get_property (GObject *object,
                                           guint prop_id,
                                           GValue *value,
                                           GParamSpec *pspec)
{
  SluiceInputStreamProducer *self = SLUICE_INPUT_STREAM_PRODUCER (object);

  switch (prop_id)
    {
    case PROP_PRODUCER:
      g_value_set_object (value, self->producer);
      break;
    case PROP_STREAM:
      g_value_set_object (value, self->stream);
      break;
    case PROP_CHUNK_SIZE:
      g_value_set_uint64 (value, self->chunk_size);
      break;
    case PROP_CLOSE_STREAM:
      g_value_set_boolean (value, self->close_stream);
      break;
    case PROP_CHUNK_FUNC_IN_THREAD:
      g_value_set_boolean (value, self->chunk_func_in_thread);
      break;
    case PROP_BYTES_READ:
      g_value_set_uint64 (value, sluice_input_stream_producer_get_bytes_read (self));
      break;
    case PROP_CHUNKS_READ:
      g_value_set_uint64 (value, sluice_input_stream_producer_get_chunks_read (self));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_input_stream_producer_set_property (GObject *object,
                                           guint prop_id,
                                           const GValue *value,
                                           GParamSpec *pspec)
{
  SluiceInputStreamProducer *self = SLUICE_INPUT_STREAM_PRODUCER (object);

  switch (prop_id)
    {
    case PROP_PRODUCER:
      self->producer = g_value_dup_object (value);
      break;
    case PROP_STREAM:
      self->stream = g_value_dup_object (value);
      break;
    case PROP_CHUNK_SIZE:
      self->chunk_size = (gsize) g_value_get_uint64 (value);
      break;
    case PROP_CLOSE_STREAM:
      sluice_input_stream_producer_set_close_stream (self, g_value_get_boolean (value));
      break;
    case PROP_CHUNK_FUNC_IN_THREAD:
      sluice_input_stream_producer_set_chunk_func_in_thread (self, g_value_get_boolean (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_input_stream_producer_class_init (SluiceInputStreamProducerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->constructed = sluice_input_stream_producer_constructed;
  object_class->dispose = sluice_input_stream_producer_dispose;
  object_class->finalize = sluice_input_stream_producer_finalize;
  object_class->get_property = sluice_input_stream_producer_get_property;
  object_class->set_property = sluice_input_stream_producer_set_property;

  /**
   * SluiceInputStreamProducer:producer:
   *
   * The producer that the chunks' items go to.
   */
  properties[PROP_PRODUCER] =
      g_param_spec_object ("producer", NULL, NULL, SLUICE_TYPE_ORDERED_ITEM_PRODUCER,
                           G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceInputStreamProducer:stream:
   *
   * The stream that is read, or %NULL when files are read.
   */
  properties[PROP_STREAM] =
      g_param_spec_object ("stream", NULL, NULL, G_TYPE_INPUT_STREAM,
                           G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceInputStreamProducer:chunk-size:
   *
   * The size of a chunk, in bytes: of every item's input but the last of
   * each stream or file.
   */
  properties[PROP_CHUNK_SIZE] =
      g_param_spec_uint64 ("chunk-size", NULL, NULL, 1, G_MAXSSIZE, 65536,
                           G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceInputStreamProducer:close-stream:
   *
   * Whether [property@Sluice.InputStreamProducer:stream] is closed when the
   * reading ends, at its end or at an error. %TRUE by default. Files are
   * always closed. Set it before
   * [method@Sluice.InputStreamProducer.read_all_async].
   */
  properties[PROP_CLOSE_STREAM] = g_param_spec_boolean (
      "close-stream", NULL, NULL, TRUE,
      G_PARAM_READWRITE | G_PARAM_CONSTRUCT | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceInputStreamProducer:chunk-func-in-thread:
   *
   * Whether the chunk function (see
   * [method@Sluice.InputStreamProducer.set_chunk_func]) runs in the
   * producer's task queue, several chunks at once (%TRUE, the default), or
   * on the owner context, one chunk at a time as it is read (%FALSE).
   *
   * Set it to %FALSE for a function that must run on the owner's thread: a
   * function written in a language whose functions run on the main thread
   * only (JavaScript through GJS), or one that is cheaper than a thread
   * hop. The items still reach the consumer in order; the function blocks
   * the owner context while it runs. Set it before
   * [method@Sluice.InputStreamProducer.read_all_async].
   */
  properties[PROP_CHUNK_FUNC_IN_THREAD] = g_param_spec_boolean (
      "chunk-func-in-thread", NULL, NULL, TRUE,
      G_PARAM_READWRITE | G_PARAM_CONSTRUCT | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceInputStreamProducer:bytes-read:
   *
   * How many bytes have been read so far (of all files). It is not
   * notified: read it when you need it.
   */
  properties[PROP_BYTES_READ] = g_param_spec_uint64 ("bytes-read", NULL, NULL, 0, G_MAXUINT64, 0,
                                                     G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceInputStreamProducer:chunks-read:
   *
   * How many chunks have been read and asked for as items so far. It is
   * not notified: read it when you need it.
   */
  properties[PROP_CHUNKS_READ] = g_param_spec_uint64 ("chunks-read", NULL, NULL, 0, G_MAXUINT64, 0,
                                                      G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
sluice_input_stream_producer_init (SluiceInputStreamProducer *self)
{
  self->close_stream = TRUE;
  self->chunk_func_in_thread = TRUE;
  self->chunk_size = 65536;
  self->cancellable = g_cancellable_new ();
}

/**
 * sluice_input_stream_producer_new:
 * @producer: the producer to produce the items into
 * @stream: the stream to read
 * @chunk_size: the size of a chunk in bytes, at least 1
 *
 * Creates a reader of @stream that produces one item per @chunk_size
 * bytes into @producer once [method@Sluice.InputStreamProducer.read_all_async]
 * is called.
 *
 * Call it on the owner context of @producer.
 *
 * Returns: (transfer full): a new input stream producer
 */
SluiceInputStreamProducer *
sluice_input_stream_producer_new (SluiceOrderedItemProducer *producer,
                                  GInputStream *stream,
                                  gsize chunk_size)
{
  g_return_val_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (producer), NULL);
  g_return_val_if_fail (G_IS_INPUT_STREAM (stream), NULL);
  g_return_val_if_fail (chunk_size > 0 && chunk_size <= G_MAXSSIZE, NULL);

  return g_object_new (SLUICE_TYPE_INPUT_STREAM_PRODUCER, "producer", producer, "stream", stream,
                       "chunk-size", (guint64) chunk_size, NULL);
}

/**
 * sluice_input_stream_producer_new_for_files:
 * @producer: the producer to produce the items into
 * @files: (array length=n_files): the files to read, one after another
 * @n_files: the number of @files
 * @chunk_size: the size of a chunk in bytes, at least 1
 *
 * Creates a reader of @files that opens them one after another
 * (asynchronously, each once the one before is read) and produces one item
 * per @chunk_size bytes of each into @producer once
 * [method@Sluice.InputStreamProducer.read_all_async] is called. A chunk
 * never spans two files. A file that cannot be opened ends the reading with
 * its error.
 *
 * Call it on the owner context of @producer.
 *
 * Returns: (transfer full): a new input stream producer
 */
SluiceInputStreamProducer *
sluice_input_stream_producer_new_for_files (SluiceOrderedItemProducer *producer,
                                            GFile *const *files,
                                            guint n_files,
                                            gsize chunk_size)
{
  SluiceInputStreamProducer *self;

  g_return_val_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (producer), NULL);
  g_return_val_if_fail (files != NULL || n_files == 0, NULL);
  g_return_val_if_fail (chunk_size > 0 && chunk_size <= G_MAXSSIZE, NULL);
  for (guint i = 0; i < n_files; i++)
    g_return_val_if_fail (G_IS_FILE (files[i]), NULL);

  self = g_object_new (SLUICE_TYPE_INPUT_STREAM_PRODUCER, "producer", producer, "chunk-size",
                       (guint64) chunk_size, NULL);
  self->files = g_ptr_array_new_full (n_files, g_object_unref);
  for (guint i = 0; i < n_files; i++)
    g_ptr_array_add (self->files, g_object_ref (files[i]));
  return self;
}

/**
 * sluice_input_stream_producer_set_chunk_func:
 * @self: an input stream producer, not reading yet
 * @func: (scope notified) (closure func_data) (destroy func_data_destroy) (nullable): the
 *   blocking function that makes each chunk's item, or %NULL to produce the
 *   chunks themselves
 * @func_data: data for @func
 * @func_data_destroy: (nullable): frees @func_data once @func will not run
 *   any more (on the owner context)
 *
 * Sets the function that turns each chunk into its item. It runs in a
 * thread of the producer's task queue (at %G_PRIORITY_DEFAULT, continuing
 * the chunk's slot with [method@Sluice.Slot.continue_in_thread]), for
 * several chunks at once; the items still reach the consumer in input
 * order. Without one, each chunk is its own item.
 * [property@Sluice.InputStreamProducer:chunk-func-in-thread] %FALSE runs it
 * on the owner context instead (for GJS, whose functions run on the main
 * thread only).
 *
 * Setting it while reading is a programmer error.
 *
 * Call it on the owner context of the producer.
 */
void
sluice_input_stream_producer_set_chunk_func (SluiceInputStreamProducer *self,
                                             SluiceChunkFunc func,
                                             gpointer func_data,
                                             GDestroyNotify func_data_destroy)
{
  ChunkFunc *chunk_func = NULL;

  g_return_if_fail (SLUICE_IS_INPUT_STREAM_PRODUCER (self));
  g_return_if_fail (self->task == NULL);

  if (func != NULL)
    {
      chunk_func = g_new0 (ChunkFunc, 1);
      g_atomic_ref_count_init (&chunk_func->ref_count);
      chunk_func->func = func;
      chunk_func->data = func_data;
      chunk_func->destroy = func_data_destroy;
      chunk_func->context = g_main_context_ref (self->context);
      chunk_func->thread = g_thread_self ();
    }
  g_clear_pointer (&self->chunk_func, chunk_func_unref);
  self->chunk_func = chunk_func;
}

/**
 * sluice_input_stream_producer_read_all_async:
 * @self: an input stream producer
 * @io_priority: the I/O priority of the reads
 * @cancellable: (nullable): ends the reading with %G_IO_ERROR_CANCELLED
 * @callback: (scope async) (nullable) (closure user_data): called on the
 *   owner context when the reading has ended
 * @user_data: data for @callback
 *
 * Reads the whole input, chunk by chunk, and asks the producer for one item
 * per chunk, in order, pausing while the producer's window is full. It
 * registers @self with the producer for that
 * ([method@Sluice.OrderedItemProducer.register_producer]) and unregisters
 * at the end.
 *
 * @callback runs from the main loop of the owner context, never inside
 * this call, once every chunk has been asked for (call
 * [method@Sluice.OrderedItemProducer.stop_async] then), or once the reading
 * has ended early (see the class description for what the producer is told
 * then).
 *
 * A reader reads once: a second call is a programmer error.
 *
 * Call it on the owner context of the producer.
 */
void
sluice_input_stream_producer_read_all_async (SluiceInputStreamProducer *self,
                                             int io_priority,
                                             GCancellable *cancellable,
                                             GAsyncReadyCallback callback,
                                             gpointer user_data)
{
  g_return_if_fail (SLUICE_IS_INPUT_STREAM_PRODUCER (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));
  g_return_if_fail (!self->ran);

  self->ran = TRUE;
  self->task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (self->task, sluice_input_stream_producer_read_all_async);
  /* The result says what happened, even if the cancel came after the end. */
  g_task_set_check_cancellable (self->task, FALSE);
  self->io_priority = io_priority;
  if (self->stream != NULL)
    {
      self->input = g_object_ref (self->stream);
      self->input_owned = self->close_stream;
    }
  if (cancellable != NULL)
    {
      self->user_cancellable = g_object_ref (cancellable);
      self->cancelled_id =
          g_cancellable_connect (cancellable, G_CALLBACK (on_user_cancelled), self, NULL);
    }
  sluice_ordered_item_producer_register_producer (self->producer, SLUICE_PUSH_PRODUCER (self));
  schedule_step (self);
}

/**
 * sluice_input_stream_producer_read_all_finish:
 * @self: an input stream producer
 * @result: the result given to the callback
 * @error: return location for an error
 *
 * Finishes [method@Sluice.InputStreamProducer.read_all_async].
 *
 * Call it from the callback, on the owner context.
 *
 * Returns: %TRUE when the whole input was read and produced; %FALSE with
 *   @error set when the reading ended early: the stream's own error, a file
 *   that could not be opened, %G_IO_ERROR_CANCELLED, or
 *   %SLUICE_ERROR_STOPPED when @self or the producer was stopped
 */
gboolean
sluice_input_stream_producer_read_all_finish (SluiceInputStreamProducer *self,
                                              GAsyncResult *result,
                                              GError **error)
{
  g_return_val_if_fail (SLUICE_IS_INPUT_STREAM_PRODUCER (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * sluice_input_stream_producer_get_producer:
 * @self: an input stream producer
 *
 * Gets [property@Sluice.InputStreamProducer:producer].
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer none): the producer
 */
SluiceOrderedItemProducer *
sluice_input_stream_producer_get_producer (SluiceInputStreamProducer *self)
{
  g_return_val_if_fail (SLUICE_IS_INPUT_STREAM_PRODUCER (self), NULL);

  return self->producer;
}

/**
 * sluice_input_stream_producer_get_stream:
 * @self: an input stream producer
 *
 * Gets [property@Sluice.InputStreamProducer:stream].
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer none) (nullable): the stream, or %NULL for a reader of
 *   files
 */
GInputStream *
sluice_input_stream_producer_get_stream (SluiceInputStreamProducer *self)
{
  g_return_val_if_fail (SLUICE_IS_INPUT_STREAM_PRODUCER (self), NULL);

  return self->stream;
}

/**
 * sluice_input_stream_producer_get_chunk_size:
 * @self: an input stream producer
 *
 * Gets [property@Sluice.InputStreamProducer:chunk-size].
 *
 * This function is safe to call from any thread.
 *
 * Returns: the chunk size in bytes
 */
gsize
sluice_input_stream_producer_get_chunk_size (SluiceInputStreamProducer *self)
{
  g_return_val_if_fail (SLUICE_IS_INPUT_STREAM_PRODUCER (self), 0);

  return self->chunk_size;
}

/**
 * sluice_input_stream_producer_get_close_stream:
 * @self: an input stream producer
 *
 * Gets [property@Sluice.InputStreamProducer:close-stream].
 *
 * This function is safe to call from any thread.
 *
 * Returns: whether the stream is closed when the reading ends
 */
gboolean
sluice_input_stream_producer_get_close_stream (SluiceInputStreamProducer *self)
{
  g_return_val_if_fail (SLUICE_IS_INPUT_STREAM_PRODUCER (self), FALSE);

  return self->close_stream;
}

/**
 * sluice_input_stream_producer_set_close_stream:
 * @self: an input stream producer, not reading yet
 * @close_stream: whether to close the stream when the reading ends
 *
 * Sets [property@Sluice.InputStreamProducer:close-stream]. Setting it once
 * the reading has begun is a programmer error.
 *
 * Call it on the owner context of the producer.
 */
void
sluice_input_stream_producer_set_close_stream (SluiceInputStreamProducer *self,
                                               gboolean close_stream)
{
  g_return_if_fail (SLUICE_IS_INPUT_STREAM_PRODUCER (self));
  g_return_if_fail (!self->ran);

  close_stream = !!close_stream;
  if (self->close_stream == close_stream)
    return;
  self->close_stream = close_stream;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CLOSE_STREAM]);
}

/**
 * sluice_input_stream_producer_get_chunk_func_in_thread:
 * @self: an input stream producer
 *
 * Gets [property@Sluice.InputStreamProducer:chunk-func-in-thread].
 *
 * This function is safe to call from any thread.
 *
 * Returns: whether the chunk function runs in the task queue
 */
gboolean
sluice_input_stream_producer_get_chunk_func_in_thread (SluiceInputStreamProducer *self)
{
  g_return_val_if_fail (SLUICE_IS_INPUT_STREAM_PRODUCER (self), FALSE);

  return self->chunk_func_in_thread;
}

/**
 * sluice_input_stream_producer_set_chunk_func_in_thread:
 * @self: an input stream producer, not reading yet
 * @in_thread: %TRUE to run the chunk function in the task queue, %FALSE to
 *   run it on the owner context
 *
 * Sets [property@Sluice.InputStreamProducer:chunk-func-in-thread]. Setting
 * it once the reading has begun is a programmer error.
 *
 * Call it on the owner context of the producer.
 */
void
sluice_input_stream_producer_set_chunk_func_in_thread (SluiceInputStreamProducer *self,
                                                       gboolean in_thread)
{
  g_return_if_fail (SLUICE_IS_INPUT_STREAM_PRODUCER (self));
  g_return_if_fail (!self->ran);

  in_thread = !!in_thread;
  if (self->chunk_func_in_thread == in_thread)
    return;
  self->chunk_func_in_thread = in_thread;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CHUNK_FUNC_IN_THREAD]);
}

/**
 * sluice_input_stream_producer_get_bytes_read:
 * @self: an input stream producer
 *
 * Gets [property@Sluice.InputStreamProducer:bytes-read].
 *
 * This function is safe to call from any thread.
 *
 * Returns: the number of bytes read so far
 */
guint64
sluice_input_stream_producer_get_bytes_read (SluiceInputStreamProducer *self)
{
  g_return_val_if_fail (SLUICE_IS_INPUT_STREAM_PRODUCER (self), 0);

  return __atomic_load_n (&self->bytes_read, __ATOMIC_RELAXED);
}

/**
 * sluice_input_stream_producer_get_chunks_read:
 * @self: an input stream producer
 *
 * Gets [property@Sluice.InputStreamProducer:chunks-read].
 *
 * This function is safe to call from any thread.
 *
 * Returns: the number of chunks read (and items asked for) so far
 */
guint64
sluice_input_stream_producer_get_chunks_read (SluiceInputStreamProducer *self)
{
  g_return_val_if_fail (SLUICE_IS_INPUT_STREAM_PRODUCER (self), 0);

  return __atomic_load_n (&self->chunks_read, __ATOMIC_RELAXED);
}
