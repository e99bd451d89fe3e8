/* test-streams.c: the stream adapters, SluiceInputStreamProducer and
 * SluiceOutputStreamConsumer
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Exact outcomes: bytes in = bytes out in order whatever order the chunks
 * complete in; a write error and a read error reach the stop with the
 * stream's own error and stop production; the window bounds the live items;
 * files are concatenated; cancellation and stop_producing end the reading.
 */

#include <sluice/sluice.h>

#include <glib/gstdio.h>
#include <string.h>

#include "sluice-test-util.h"

/* --- a GOutputStream that fails after a limit, slowly if asked --- */

#define TEST_TYPE_SINK (test_sink_get_type ())
G_DECLARE_FINAL_TYPE (TestSink, test_sink, TEST, SINK, GOutputStream)

struct _TestSink
{
  GOutputStream parent_instance;
  GByteArray *data;
  gsize limit;                       /* G_MAXSIZE: none */
  gulong delay_us;                   /* per write */
  guint n_writes;                    /* atomic */
  SluiceInputStreamProducer *reader; /* to count live items; not a reference */
  guint max_live;                    /* atomic */
  guint fill_to;                     /* the first write waits for this many chunks read */
  gboolean block;                    /* writes block until cancelled */
  int blocked;                       /* atomic: a write is blocked */
};

G_DEFINE_FINAL_TYPE (TestSink, test_sink, G_TYPE_OUTPUT_STREAM)

static gssize
test_sink_write (GOutputStream *stream,
                 const void *buffer,
                 gsize count,
                 GCancellable *cancellable,
                 GError **error)
{
  TestSink *self = TEST_SINK (stream);
  guint n = g_atomic_int_add (&self->n_writes, 1) + 1;
  gsize room = self->limit - self->data->len;

  /* A consumer slower than the reader, for certain: the reader fills the
   * window before the first write goes on (or is paused trying). */
  if (n == 1 && self->fill_to > 0)
    {
      gint64 deadline = g_get_monotonic_time () + SLUICE_TEST_TIMEOUT_SECONDS * G_USEC_PER_SEC;

      while (sluice_input_stream_producer_get_chunks_read (self->reader) < self->fill_to)
        {
          g_assert_cmpint (g_get_monotonic_time (), <, deadline);
          g_usleep (1000);
        }
    }
  if (self->reader != NULL)
    {
      /* Items asked for minus items the consumer has taken (this one too). */
      guint live = (guint) (sluice_input_stream_producer_get_chunks_read (self->reader) - n);
      guint max = g_atomic_int_get (&self->max_live);

      while (live > max && !g_atomic_int_compare_and_exchange (&self->max_live, max, live))
        max = g_atomic_int_get (&self->max_live);
    }
  if (self->delay_us > 0)
    g_usleep (self->delay_us);
  if (self->block)
    {
      g_atomic_int_set (&self->blocked, TRUE);
      while (!g_cancellable_is_cancelled (cancellable))
        g_usleep (1000);
      g_cancellable_set_error_if_cancelled (cancellable, error);
      return -1;
    }
  if (room == 0)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_NO_SPACE, "test: no space left");
      return -1;
    }
  count = MIN (count, room);
  g_byte_array_append (self->data, buffer, (guint) count);
  return (gssize) count;
}

static void
test_sink_finalize (GObject *object)
{
  g_byte_array_unref (TEST_SINK (object)->data);
  G_OBJECT_CLASS (test_sink_parent_class)->finalize (object);
}

static void
test_sink_class_init (TestSinkClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = test_sink_finalize;
  G_OUTPUT_STREAM_CLASS (klass)->write_fn = test_sink_write;
}

static void
test_sink_init (TestSink *self)
{
  self->data = g_byte_array_new ();
  self->limit = G_MAXSIZE;
}

/* --- a GInputStream that fails after a limit --- */

#define TEST_TYPE_SOURCE (test_source_get_type ())
G_DECLARE_FINAL_TYPE (TestSource, test_source, TEST, SOURCE, GInputStream)

struct _TestSource
{
  GInputStream parent_instance;
  GBytes *data;
  gsize pos;
  gsize fail_at;
  gsize stall_at; /* reads block there until released */
  int released;   /* atomic */
  int stalled;    /* atomic */
  /* Reads from there on wait until this producer is closed. */
  gsize wait_closed_at;
  SluiceOrderedItemProducer *wait_closed;
};

G_DEFINE_FINAL_TYPE (TestSource, test_source, G_TYPE_INPUT_STREAM)

static gssize
test_source_read (
    GInputStream *stream, void *buffer, gsize count, GCancellable *cancellable, GError **error)
{
  TestSource *self = TEST_SOURCE (stream);
  gsize len;
  const guint8 *data = g_bytes_get_data (self->data, &len);
  gsize end = MIN (len, self->fail_at);

  if (self->pos >= self->stall_at)
    {
      g_atomic_int_set (&self->stalled, TRUE);
      while (!g_atomic_int_get (&self->released))
        g_usleep (1000);
    }
  if (self->pos >= self->wait_closed_at && self->wait_closed != NULL)
    {
      gint64 deadline = deadline_from_now ();

      /* Not the owner thread: is_closed () reads the current state. */
      while (!sluice_ordered_item_producer_is_closed (self->wait_closed))
        {
          g_assert_cmpint (g_get_monotonic_time (), <, deadline);
          g_usleep (1000);
        }
    }

  if (self->pos >= end && self->pos < len)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED, "test: read failed");
      return -1;
    }
  /* Short reads on purpose: read_all must gather them. */
  count = MIN (MIN (count, end - self->pos), 777);
  memcpy (buffer, data + self->pos, count);
  self->pos += count;
  return (gssize) count;
}

static void
test_source_finalize (GObject *object)
{
  g_bytes_unref (TEST_SOURCE (object)->data);
  G_OBJECT_CLASS (test_source_parent_class)->finalize (object);
}

static void
test_source_class_init (TestSourceClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = test_source_finalize;
  G_INPUT_STREAM_CLASS (klass)->read_fn = test_source_read;
}

static void
test_source_init (TestSource *self)
{
  self->stall_at = G_MAXSIZE;
  self->wait_closed_at = G_MAXSIZE;
}

static GInputStream *
test_source_new (GBytes *data, gsize fail_at)
{
  TestSource *self = g_object_new (TEST_TYPE_SOURCE, NULL);

  self->data = g_bytes_ref (data);
  self->fail_at = fail_at;
  return G_INPUT_STREAM (self);
}

/* --- helpers --- */

static GBytes *
random_bytes (gsize size, guint32 seed)
{
  GRand *rand = g_rand_new_with_seed (seed);
  guint8 *data = g_malloc (size);

  for (gsize i = 0; i < size; i++)
    data[i] = (guint8) g_rand_int (rand);
  g_rand_free (rand);
  return g_bytes_new_take (data, size);
}

typedef struct
{
  SluiceOrderedItemProducer *producer;
  SluiceInputStreamProducer *reader;
  gboolean in_call;
  gboolean read_done;
  gboolean read_ok;
  GError *read_error;
  gboolean stop_done;
  GError *stop_error;
} Run;

static void
on_stopped (GObject *source, GAsyncResult *result, gpointer data)
{
  Run *run = data;

  g_assert_false (run->in_call);
  g_assert_null (
      sluice_ordered_item_producer_stop_finish (run->producer, result, &run->stop_error));
  run->stop_done = TRUE;
}

static void
on_read_all (GObject *source, GAsyncResult *result, gpointer data)
{
  Run *run = data;

  g_assert_false (run->in_call);
  g_assert_true (source == G_OBJECT (run->reader));
  run->read_ok =
      sluice_input_stream_producer_read_all_finish (run->reader, result, &run->read_error);
  run->read_done = TRUE;
  sluice_ordered_item_producer_stop_async (run->producer, NULL, on_stopped, run);
}

/* A producer of GBytes with a window of @window, written to @sink by a
 * started writer (returned). */
static SluiceOutputStreamConsumer *
start_writer (Run *run, guint window, TestSink *sink)
{
  SluiceOutputStreamConsumer *writer;

  run->producer = sluice_ordered_item_producer_new (NULL, window, (GDestroyNotify) g_bytes_unref);
  writer = sluice_output_stream_consumer_new (run->producer, G_OUTPUT_STREAM (sink));
  sluice_output_stream_consumer_start (writer);
  return writer;
}

/* Reads, then stops, and waits for both. */
static void
run_to_end (Run *run, GCancellable *cancellable)
{
  gint64 deadline = deadline_from_now ();

  run->in_call = TRUE;
  sluice_input_stream_producer_read_all_async (run->reader, G_PRIORITY_DEFAULT, cancellable,
                                               on_read_all, run);
  run->in_call = FALSE;
  while (!run->stop_done)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (NULL, TRUE);
    }
}

static void
run_clear (Run *run)
{
  g_clear_error (&run->read_error);
  g_clear_error (&run->stop_error);
  g_clear_object (&run->reader);
  g_clear_object (&run->producer);
}

static void
assert_bytes_equal (GByteArray *got, const guint8 *expected, gsize len)
{
  g_assert_cmpuint (got->len, ==, len);
  g_assert_true (memcmp (got->data, expected, len) == 0);
}

/* A chunk function that takes a random time, so that chunks complete out
 * of order, and records the order they completed in. */
typedef struct
{
  GMutex mutex;
  GArray *done; /* of guint64 offsets, in completion order */
  gsize chunk_size;
  GCancellable *cancel_at_offset; /* nullable */
  guint64 cancel_offset;
  GThread *owner;
  gboolean destroyed;
  gboolean destroyed_on_owner;
} Jitter;

static GBytes *
jitter_chunk (GBytes *chunk,
              GBytes *previous,
              guint64 offset,
              GCancellable *cancellable,
              gpointer user_data,
              GError **error)
{
  Jitter *jitter = user_data;

  /* previous is the chunk before, exactly */
  if (offset == 0)
    g_assert_null (previous);
  else
    g_assert_nonnull (previous);
  g_usleep (g_random_int_range (0, 400));
  if (jitter->cancel_at_offset != NULL && offset >= jitter->cancel_offset)
    g_cancellable_cancel (jitter->cancel_at_offset);
  g_mutex_lock (&jitter->mutex);
  g_array_append_val (jitter->done, offset);
  g_mutex_unlock (&jitter->mutex);
  return g_bytes_ref (chunk);
}

static void
jitter_init (Jitter *jitter)
{
  memset (jitter, 0, sizeof *jitter);
  g_mutex_init (&jitter->mutex);
  jitter->done = g_array_new (FALSE, FALSE, sizeof (guint64));
  jitter->owner = g_thread_self ();
}

static void
jitter_destroy (gpointer data)
{
  Jitter *jitter = data;

  jitter->destroyed = TRUE;
  jitter->destroyed_on_owner = g_thread_self () == jitter->owner;
}

static void
jitter_clear (Jitter *jitter)
{
  g_array_unref (jitter->done);
  g_mutex_clear (&jitter->mutex);
}

static gboolean
in_order (GArray *offsets)
{
  for (guint i = 1; i < offsets->len; i++)
    if (g_array_index (offsets, guint64, i) < g_array_index (offsets, guint64, i - 1))
      return FALSE;
  return TRUE;
}

/* --- tests --- */

/* Bytes in = bytes out, in order, with chunks completing in random order. */
static void
test_copy_in_order (void)
{
  gsize size = sluice_test_scale (1000 * 1000 + 7, 20);
  g_autoptr (GBytes) input = random_bytes (size, 1);
  g_autoptr (SluiceTaskQueue) queue = sluice_task_queue_new (4);
  g_autoptr (GInputStream) in = g_memory_input_stream_new_from_bytes (input);
  g_autoptr (TestSink) sink = g_object_new (TEST_TYPE_SINK, NULL);
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  Run run = { 0 };
  Jitter jitter;

  jitter_init (&jitter);
  run.producer = sluice_ordered_item_producer_new (queue, 16, (GDestroyNotify) g_bytes_unref);
  writer = sluice_output_stream_consumer_new (run.producer, G_OUTPUT_STREAM (sink));
  sluice_output_stream_consumer_start (writer);
  run.reader = sluice_input_stream_producer_new (run.producer, in, 1000);
  sluice_input_stream_producer_set_chunk_func (run.reader, jitter_chunk, &jitter, jitter_destroy);
  run_to_end (&run, NULL);

  g_assert_no_error (run.read_error);
  g_assert_true (run.read_ok);
  g_assert_no_error (run.stop_error);
  assert_bytes_equal (sink->data, g_bytes_get_data (input, NULL), size);
  g_assert_cmpuint (sluice_output_stream_consumer_get_bytes_written (writer), ==, size);
  g_assert_cmpuint (sluice_input_stream_producer_get_bytes_read (run.reader), ==, size);
  g_assert_cmpuint (sluice_input_stream_producer_get_chunks_read (run.reader), ==,
                    (size + 999) / 1000);
  g_assert_cmpuint (jitter.done->len, ==, (size + 999) / 1000);
  g_test_message ("chunks completed in order: %s", in_order (jitter.done) ? "yes" : "no");
  if (!g_getenv ("SLUICE_TEST_SCALE_DOWN"))
    g_assert_false (in_order (jitter.done));
  /* Both streams were closed (the default). */
  g_assert_true (g_output_stream_is_closed (G_OUTPUT_STREAM (sink)));

  /* The chunk function's data is destroyed on the owner thread, from the
   * main loop, once no chunk needs it. */
  g_clear_object (&run.reader);
  while (g_main_context_iteration (NULL, FALSE))
    ;
  g_assert_true (jitter.destroyed);
  g_assert_true (jitter.destroyed_on_owner);
  run_clear (&run);
  jitter_clear (&jitter);
}

/* Without a chunk function the chunks are the items; close-stream FALSE
 * leaves both streams open. */
static void
test_copy_plain (void)
{
  gsize size = 65536 * 3 + 5;
  g_autoptr (GBytes) input = random_bytes (size, 2);
  g_autoptr (GInputStream) in = g_memory_input_stream_new_from_bytes (input);
  g_autoptr (TestSink) sink = g_object_new (TEST_TYPE_SINK, NULL);
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  Run run = { 0 };

  run.producer = sluice_ordered_item_producer_new (NULL, 2, (GDestroyNotify) g_bytes_unref);
  writer = sluice_output_stream_consumer_new (run.producer, G_OUTPUT_STREAM (sink));
  g_assert_true (sluice_output_stream_consumer_get_close_stream (writer));
  sluice_output_stream_consumer_set_close_stream (writer, FALSE);
  sluice_output_stream_consumer_start (writer);
  run.reader = sluice_input_stream_producer_new (run.producer, in, 65536);
  sluice_input_stream_producer_set_close_stream (run.reader, FALSE);
  run_to_end (&run, NULL);

  g_assert_no_error (run.read_error);
  g_assert_no_error (run.stop_error);
  assert_bytes_equal (sink->data, g_bytes_get_data (input, NULL), size);
  g_assert_cmpuint (sluice_input_stream_producer_get_chunks_read (run.reader), ==, 4);
  g_assert_false (g_output_stream_is_closed (G_OUTPUT_STREAM (sink)));
  g_assert_false (g_input_stream_is_closed (in));
  run_clear (&run);
}

/* The window bounds the live items: the reader is paused by the producer,
 * with no code of ours. */
static void
test_window_bounds_live_items (void)
{
  guint window = 4;
  gsize size = sluice_test_scale (200 * 1000, 4);
  g_autoptr (GBytes) input = random_bytes (size, 3);
  g_autoptr (GInputStream) in = g_memory_input_stream_new_from_bytes (input);
  g_autoptr (TestSink) sink = g_object_new (TEST_TYPE_SINK, NULL);
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  Run run = { 0 };

  writer = start_writer (&run, window, sink);
  run.reader = sluice_input_stream_producer_new (run.producer, in, 1000);
  sink->reader = run.reader;
  sink->delay_us = 200; /* a slow consumer */
  sink->fill_to = window;
  run_to_end (&run, NULL);

  g_assert_no_error (run.stop_error);
  assert_bytes_equal (sink->data, g_bytes_get_data (input, NULL), size);
  g_test_message ("max live items %u, window %u", sink->max_live, window);
  g_assert_cmpuint (sink->max_live, <=, window);
  g_assert_cmpuint (sink->max_live, >=, window - 1); /* it did fill the window */
  run_clear (&run);
}

/* A write error reaches the stop with the stream's own error, and ends
 * production: the reading stops early. */
static void
test_write_error (void)
{
  gsize size = 1000 * 1000;
  g_autoptr (GBytes) input = random_bytes (size, 4);
  g_autoptr (GInputStream) in = g_memory_input_stream_new_from_bytes (input);
  g_autoptr (TestSink) sink = g_object_new (TEST_TYPE_SINK, NULL);
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  Run run = { 0 };

  sink->limit = 10500;
  writer = start_writer (&run, 8, sink);
  run.reader = sluice_input_stream_producer_new (run.producer, in, 1000);
  run_to_end (&run, NULL);

  g_assert_error (run.stop_error, G_IO_ERROR, G_IO_ERROR_NO_SPACE);
  g_assert_cmpstr (run.stop_error->message, ==, "test: no space left");
  g_assert_error (run.read_error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_false (run.read_ok);
  assert_bytes_equal (sink->data, g_bytes_get_data (input, NULL), 10500);
  g_assert_cmpuint (sluice_output_stream_consumer_get_bytes_written (writer), ==, 10500);
  g_test_message ("read %" G_GUINT64_FORMAT " of %" G_GSIZE_FORMAT " bytes",
                  sluice_input_stream_producer_get_bytes_read (run.reader), size);
  g_assert_cmpuint (sluice_input_stream_producer_get_bytes_read (run.reader), <, size / 10);
  /* Closed after the failure too. */
  g_assert_true (g_output_stream_is_closed (G_OUTPUT_STREAM (sink)));
  run_clear (&run);
}

/* A read error: the bytes before it are written, then the stop reports the
 * stream's own error. */
static void
test_read_error (void)
{
  gsize size = 100 * 1000;
  g_autoptr (GBytes) input = random_bytes (size, 5);
  g_autoptr (GInputStream) in = test_source_new (input, 5500);
  g_autoptr (TestSink) sink = g_object_new (TEST_TYPE_SINK, NULL);
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  Run run = { 0 };
  Jitter jitter;

  jitter_init (&jitter);
  writer = start_writer (&run, 8, sink);
  run.reader = sluice_input_stream_producer_new (run.producer, in, 1000);
  sluice_input_stream_producer_set_chunk_func (run.reader, jitter_chunk, &jitter, NULL);
  run_to_end (&run, NULL);

  g_assert_error (run.read_error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED);
  g_assert_cmpstr (run.read_error->message, ==, "test: read failed");
  g_assert_error (run.stop_error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED);
  g_assert_cmpstr (run.stop_error->message, ==, "test: read failed");
  assert_bytes_equal (sink->data, g_bytes_get_data (input, NULL), 5500);
  g_assert_cmpuint (sluice_input_stream_producer_get_bytes_read (run.reader), ==, 5500);
  /* The close runs asynchronously; nothing waits for it. */
  while (!g_input_stream_is_closed (in))
    g_main_context_iteration (NULL, TRUE);
  run_clear (&run);
  jitter_clear (&jitter);
}

static GFile *
write_temp_file (const char *dir, const char *name, GBytes *contents)
{
  g_autofree char *path = g_build_filename (dir, name, NULL);
  gsize len;
  const char *data = g_bytes_get_data (contents, &len);

  g_assert_true (g_file_set_contents (path, data != NULL ? data : "", (gssize) len, NULL));
  return g_file_new_for_path (path);
}

/* Files are read one after another; a chunk never spans two of them. */
static void
test_files (void)
{
  g_autofree char *dir = g_dir_make_tmp ("test-streams-XXXXXX", NULL);
  g_autoptr (GBytes) a = random_bytes (2500, 6);
  g_autoptr (GBytes) empty = g_bytes_new (NULL, 0);
  g_autoptr (GBytes) b = random_bytes (1000, 7);
  GFile *files[3];
  g_autoptr (TestSink) sink = g_object_new (TEST_TYPE_SINK, NULL);
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  g_autoptr (GByteArray) expected = g_byte_array_new ();
  Run run = { 0 };

  files[0] = write_temp_file (dir, "a", a);
  files[1] = write_temp_file (dir, "empty", empty);
  files[2] = write_temp_file (dir, "b", b);
  g_byte_array_append (expected, g_bytes_get_data (a, NULL), 2500);
  g_byte_array_append (expected, g_bytes_get_data (b, NULL), 1000);

  writer = start_writer (&run, 3, sink);
  run.reader = sluice_input_stream_producer_new_for_files (run.producer, files, 3, 1000);
  g_assert_null (sluice_input_stream_producer_get_stream (run.reader));
  run_to_end (&run, NULL);

  g_assert_no_error (run.read_error);
  g_assert_no_error (run.stop_error);
  assert_bytes_equal (sink->data, expected->data, expected->len);
  /* 1000 + 1000 + 500 of a, nothing of the empty file, 1000 of b */
  g_assert_cmpuint (sluice_input_stream_producer_get_chunks_read (run.reader), ==, 4);
  run_clear (&run);

  for (guint i = 0; i < 3; i++)
    {
      g_file_delete (files[i], NULL, NULL);
      g_object_unref (files[i]);
    }
  g_rmdir (dir);
}

/* A file that cannot be opened ends the reading with its error, after
 * the files before it. */
static void
test_files_missing (void)
{
  g_autofree char *dir = g_dir_make_tmp ("test-streams-XXXXXX", NULL);
  g_autoptr (GBytes) a = random_bytes (1500, 8);
  g_autoptr (GBytes) b = random_bytes (1500, 9);
  g_autofree char *missing_path = g_build_filename (dir, "missing", NULL);
  GFile *files[3];
  g_autoptr (TestSink) sink = g_object_new (TEST_TYPE_SINK, NULL);
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  Run run = { 0 };

  files[0] = write_temp_file (dir, "a", a);
  files[1] = g_file_new_for_path (missing_path);
  files[2] = write_temp_file (dir, "b", b);

  writer = start_writer (&run, 8, sink);
  run.reader = sluice_input_stream_producer_new_for_files (run.producer, files, 3, 1000);
  run_to_end (&run, NULL);

  g_assert_error (run.read_error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_error (run.stop_error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
  g_assert_cmpstr (run.stop_error->message, ==, run.read_error->message);
  assert_bytes_equal (sink->data, g_bytes_get_data (a, NULL), 1500);
  run_clear (&run);

  for (guint i = 0; i < 3; i++)
    {
      g_file_delete (files[i], NULL, NULL);
      g_object_unref (files[i]);
    }
  g_rmdir (dir);
}

/* No files: the reading ends at once, from the main loop. */
static void
test_no_files (void)
{
  g_autoptr (TestSink) sink = g_object_new (TEST_TYPE_SINK, NULL);
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  Run run = { 0 };

  writer = start_writer (&run, 8, sink);
  run.reader = sluice_input_stream_producer_new_for_files (run.producer, NULL, 0, 1000);
  run_to_end (&run, NULL); /* on_read_all asserts it does not run in the call */

  g_assert_true (run.read_ok);
  g_assert_no_error (run.stop_error);
  g_assert_cmpuint (sink->data->len, ==, 0);
  run_clear (&run);
}

/* Cancelling the reading's cancellable (here from a pool thread) ends it
 * with G_IO_ERROR_CANCELLED, which the stop reports too. */
static void
test_cancel (void)
{
  gsize size = 2000 * 1000;
  g_autoptr (GBytes) input = random_bytes (size, 10);
  g_autoptr (GInputStream) in = g_memory_input_stream_new_from_bytes (input);
  g_autoptr (TestSink) sink = g_object_new (TEST_TYPE_SINK, NULL);
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  Run run = { 0 };
  Jitter jitter;

  jitter_init (&jitter);
  jitter.cancel_at_offset = cancellable;
  jitter.cancel_offset = 20000;
  writer = start_writer (&run, 8, sink);
  run.reader = sluice_input_stream_producer_new (run.producer, in, 1000);
  sluice_input_stream_producer_set_chunk_func (run.reader, jitter_chunk, &jitter, NULL);
  run_to_end (&run, cancellable);

  g_assert_error (run.read_error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_error (run.stop_error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  /* What was written is a prefix of the input. */
  g_assert_cmpuint (sink->data->len, <, size / 10);
  g_assert_true (memcmp (sink->data->data, g_bytes_get_data (input, NULL), sink->data->len) == 0);
  run_clear (&run);
  jitter_clear (&jitter);
}

/* stop_producing() by hand ends the reading with SLUICE_ERROR_STOPPED, which
 * the stop reports. */
static gboolean
stop_reader (gpointer data)
{
  sluice_push_producer_stop_producing (data);
  return G_SOURCE_REMOVE;
}

static void
test_stop_producing (void)
{
  gsize size = 2000 * 1000;
  g_autoptr (GBytes) input = random_bytes (size, 11);
  g_autoptr (GInputStream) in = g_memory_input_stream_new_from_bytes (input);
  g_autoptr (TestSink) sink = g_object_new (TEST_TYPE_SINK, NULL);
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  Run run = { 0 };

  sink->delay_us = 100;
  writer = start_writer (&run, 8, sink);
  run.reader = sluice_input_stream_producer_new (run.producer, in, 1000);
  g_timeout_add (20, stop_reader, run.reader);
  run_to_end (&run, NULL);

  g_assert_error (run.read_error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_error (run.stop_error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_cmpuint (sink->data->len, <, size);
  /* A stop before the first write leaves nothing (and a NULL array). */
  g_assert_true (sink->data->len == 0 ||
                 memcmp (sink->data->data, g_bytes_get_data (input, NULL), sink->data->len) == 0);
  run_clear (&run);
}

/* A stop does not wait for a read blocked on a slow input: the reading
 * ends at once, and the read, when it returns, closes the stream. */
static gboolean
stop_when_stalled (gpointer data)
{
  Run *run = data;
  TestSource *source = TEST_SOURCE (sluice_input_stream_producer_get_stream (run->reader));

  if (!g_atomic_int_get (&source->stalled))
    return G_SOURCE_CONTINUE;
  sluice_push_producer_stop_producing (SLUICE_PUSH_PRODUCER (run->producer));
  return G_SOURCE_REMOVE;
}

static void
test_stop_during_blocked_read (void)
{
  gsize size = 10 * 1000;
  g_autoptr (GBytes) input = random_bytes (size, 13);
  g_autoptr (GInputStream) in = test_source_new (input, G_MAXSIZE);
  g_autoptr (TestSink) sink = g_object_new (TEST_TYPE_SINK, NULL);
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  Run run = { 0 };

  TEST_SOURCE (in)->stall_at = 3000;
  writer = start_writer (&run, 8, sink);
  run.reader = sluice_input_stream_producer_new (run.producer, in, 1000);
  g_timeout_add (5, stop_when_stalled, &run);
  run_to_end (&run, NULL);

  /* The producer's stop_producing stopped the reader too. */
  g_assert_error (run.read_error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_error (run.stop_error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_false (g_input_stream_is_closed (in)); /* the read is still blocked */
  g_atomic_int_set (&TEST_SOURCE (in)->released, TRUE);
  while (!g_input_stream_is_closed (in))
    g_main_context_iteration (NULL, TRUE);
  run_clear (&run);
}

/* With close-stream FALSE the stream is the caller's again when read_all
 * completes: a stop during a blocked read completes it only once that read
 * has returned, and the callback can then close the stream. */
static void
on_read_all_close (GObject *source, GAsyncResult *result, gpointer data)
{
  Run *run = data;
  GInputStream *stream = sluice_input_stream_producer_get_stream (run->reader);
  g_autoptr (GError) error = NULL;

  g_assert_false (g_input_stream_has_pending (stream));
  g_assert_true (g_input_stream_close (stream, NULL, &error));
  g_assert_no_error (error);
  on_read_all (source, result, data);
}

static void
test_stop_during_blocked_read_kept_stream (void)
{
  g_autoptr (GBytes) input = random_bytes (10 * 1000, 19);
  g_autoptr (GInputStream) in = test_source_new (input, G_MAXSIZE);
  g_autoptr (TestSink) sink = g_object_new (TEST_TYPE_SINK, NULL);
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  Run run = { 0 };
  gint64 deadline = deadline_from_now ();

  TEST_SOURCE (in)->stall_at = 3000;
  writer = start_writer (&run, 8, sink);
  run.reader = sluice_input_stream_producer_new (run.producer, in, 1000);
  sluice_input_stream_producer_set_close_stream (run.reader, FALSE);
  sluice_input_stream_producer_read_all_async (run.reader, G_PRIORITY_DEFAULT, NULL,
                                               on_read_all_close, &run);
  while (!g_atomic_int_get (&TEST_SOURCE (in)->stalled))
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (NULL, TRUE);
    }
  sluice_push_producer_stop_producing (SLUICE_PUSH_PRODUCER (run.producer));
  /* The read is blocked: read_all waits for it. */
  for (guint i = 0; i < 20; i++)
    g_main_context_iteration (NULL, FALSE);
  g_assert_false (run.read_done);
  g_atomic_int_set (&TEST_SOURCE (in)->released, TRUE);
  while (!run.stop_done)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (NULL, TRUE);
    }
  g_assert_error (run.read_error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_true (g_input_stream_is_closed (in));
  run_clear (&run);
}

/* A stop interrupts a write blocked on the stream (a stalled reader at
 * the other end of a pipe): the stop does not wait for the stream. */
static gboolean
stop_when_write_blocked (gpointer data)
{
  Run *run = data;
  TestSink *sink = TEST_SINK (g_object_get_data (G_OBJECT (run->producer), "sink"));

  if (!g_atomic_int_get (&sink->blocked))
    return G_SOURCE_CONTINUE;
  sluice_push_producer_stop_producing (SLUICE_PUSH_PRODUCER (run->producer));
  return G_SOURCE_REMOVE;
}

static void
test_stop_during_blocked_write (void)
{
  g_autoptr (GBytes) input = random_bytes (100 * 1000, 23);
  g_autoptr (GInputStream) in = g_memory_input_stream_new_from_bytes (input);
  g_autoptr (TestSink) sink = g_object_new (TEST_TYPE_SINK, NULL);
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  Run run = { 0 };

  sink->block = TRUE;
  writer = start_writer (&run, 8, sink);
  g_object_set_data (G_OBJECT (run.producer), "sink", sink);
  run.reader = sluice_input_stream_producer_new (run.producer, in, 1000);
  g_timeout_add (5, stop_when_write_blocked, &run);
  run_to_end (&run, NULL);

  g_assert_error (run.read_error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_error (run.stop_error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_cmpuint (sink->data->len, ==, 0);
  run_clear (&run);
}

/* A reader started on a producer that is closed already (stopped before
 * the reading) reads nothing and ends with SLUICE_ERROR_STOPPED. */
static void
test_closed_before_read (void)
{
  gsize size = 1000 * 1000;
  g_autoptr (GBytes) input = random_bytes (size, 17);
  g_autoptr (GInputStream) in = g_memory_input_stream_new_from_bytes (input);
  g_autoptr (TestSink) sink = g_object_new (TEST_TYPE_SINK, NULL);
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  Run run = { 0 };

  writer = start_writer (&run, 8, sink);
  sluice_push_producer_stop_producing (SLUICE_PUSH_PRODUCER (run.producer));
  while (!sluice_ordered_item_producer_is_closed (run.producer))
    g_main_context_iteration (NULL, TRUE);
  run.reader = sluice_input_stream_producer_new (run.producer, in, 1000);
  run_to_end (&run, NULL);

  g_assert_false (run.read_ok);
  g_assert_error (run.read_error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_cmpuint (sluice_input_stream_producer_get_chunks_read (run.reader), ==, 0);
  g_assert_cmpuint (sink->data->len, ==, 0);
  run_clear (&run);
}

/* A producer of values (the bindings' form): items are values holding
 * GBytes, and anything else fails the writing. */
static void
on_stopped_value (GObject *source, GAsyncResult *result, gpointer data)
{
  Run *run = data;
  GValue *value =
      sluice_ordered_item_producer_stop_finish_value (run->producer, result, &run->stop_error);

  if (value != NULL)
    {
      g_assert_true (G_VALUE_HOLDS_POINTER (value));
      g_boxed_free (G_TYPE_VALUE, value);
    }
  run->stop_done = TRUE;
}

static void
on_read_all_values (GObject *source, GAsyncResult *result, gpointer data)
{
  Run *run = data;

  run->read_ok =
      sluice_input_stream_producer_read_all_finish (run->reader, result, &run->read_error);
  run->read_done = TRUE;
  sluice_ordered_item_producer_stop_async (run->producer, NULL, on_stopped_value, run);
}

static void
complete_with_value (SluiceSlot *slot, gpointer data)
{
  sluice_slot_complete_value (slot, data);
}

static void
test_values (void)
{
  gsize size = 10 * 1000 + 1;
  g_autoptr (GBytes) input = random_bytes (size, 12);
  g_autoptr (GInputStream) in = g_memory_input_stream_new_from_bytes (input);
  g_autoptr (TestSink) sink = g_object_new (TEST_TYPE_SINK, NULL);
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  Run run = { 0 };
  Jitter jitter;

  jitter_init (&jitter);
  run.producer = sluice_ordered_item_producer_new_for_values (NULL, 4);
  writer = sluice_output_stream_consumer_new (run.producer, G_OUTPUT_STREAM (sink));
  sluice_output_stream_consumer_start (writer);
  run.reader = sluice_input_stream_producer_new (run.producer, in, 1000);
  sluice_input_stream_producer_set_chunk_func (run.reader, jitter_chunk, &jitter, NULL);
  sluice_input_stream_producer_read_all_async (run.reader, G_PRIORITY_DEFAULT, NULL,
                                               on_read_all_values, &run);
  while (!run.stop_done)
    g_main_context_iteration (NULL, TRUE);

  g_assert_no_error (run.read_error);
  g_assert_no_error (run.stop_error);
  assert_bytes_equal (sink->data, g_bytes_get_data (input, NULL), size);
  run_clear (&run);
  jitter_clear (&jitter);

  /* An item that is not a GBytes */
  {
    g_autoptr (TestSink) sink2 = g_object_new (TEST_TYPE_SINK, NULL);
    g_autoptr (SluiceOutputStreamConsumer) writer2 = NULL;
    GValue value = G_VALUE_INIT;
    Run run2 = { 0 };

    run2.producer = sluice_ordered_item_producer_new_for_values (NULL, 4);
    writer2 = sluice_output_stream_consumer_new (run2.producer, G_OUTPUT_STREAM (sink2));
    sluice_output_stream_consumer_start (writer2);
    g_value_init (&value, G_TYPE_STRING);
    g_value_set_static_string (&value, "not bytes");
    sluice_ordered_item_producer_produce_item (run2.producer, complete_with_value, &value, NULL,
                                               NULL, NULL, NULL);
    sluice_ordered_item_producer_stop_async (run2.producer, NULL, on_stopped_value, &run2);
    while (!run2.stop_done)
      g_main_context_iteration (NULL, TRUE);
    g_assert_error (run2.stop_error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
    g_value_unset (&value);
    run_clear (&run2);
  }
}

/* A started producer dropped without a stop is disposed: the writing
 * holds no reference to it, and its consumer thread ends. */
static void
test_dropped_producer (void)
{
  g_autoptr (TestSink) sink = g_object_new (TEST_TYPE_SINK, NULL);
  SluiceOrderedItemProducer *producer =
      sluice_ordered_item_producer_new (NULL, 4, (GDestroyNotify) g_bytes_unref);
  SluiceOutputStreamConsumer *writer =
      sluice_output_stream_consumer_new (producer, G_OUTPUT_STREAM (sink));
  gint64 deadline = deadline_from_now ();

  g_object_add_weak_pointer (G_OBJECT (producer), (gpointer *) &producer);
  g_object_add_weak_pointer (G_OBJECT (writer), (gpointer *) &writer);
  sluice_output_stream_consumer_start (writer);
  g_object_unref (writer);
  g_object_unref (producer);
  while (producer != NULL || writer != NULL || !g_output_stream_is_closed (G_OUTPUT_STREAM (sink)))
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (NULL, FALSE);
      g_usleep (1000);
    }
}

/* A chunk function on the owner context (chunk-func-in-thread FALSE, for
 * GJS): each chunk's function runs on the owner thread as the chunk is
 * read, in input order; the items reach the writer in order; an error from
 * the function ends the production at its chunk. */
typedef struct
{
  GThread *owner;
  guint64 next_offset;
  guint n_calls;
  gboolean off_owner;
  guint64 fail_offset; /* G_MAXUINT64: never */
} OnOwner;

static GBytes *
on_owner_chunk (GBytes *chunk,
                GBytes *previous,
                guint64 offset,
                GCancellable *cancellable,
                gpointer user_data,
                GError **error)
{
  OnOwner *on_owner = user_data;
  gsize len;
  const guint8 *p = g_bytes_get_data (chunk, &len);
  guint8 *out;

  on_owner->off_owner |= g_thread_self () != on_owner->owner;
  g_assert_cmpuint (offset, ==, on_owner->next_offset);
  g_assert_nonnull (cancellable);
  g_assert_true ((offset == 0) == (previous == NULL));
  on_owner->next_offset += len;
  on_owner->n_calls++;
  if (offset == on_owner->fail_offset)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "test: bad chunk");
      return NULL;
    }
  out = g_malloc (len);
  for (gsize i = 0; i < len; i++)
    out[i] = p[len - 1 - i];
  return g_bytes_new_take (out, len);
}

static void
test_chunk_func_on_owner (void)
{
  gsize size = 10 * 1000 + 7;
  g_autoptr (GBytes) input = random_bytes (size, 9);
  const guint8 *in_data = g_bytes_get_data (input, NULL);
  g_autoptr (SluiceTaskQueue) queue = sluice_task_queue_new (2);
  g_autoptr (GInputStream) in = g_memory_input_stream_new_from_bytes (input);
  g_autoptr (TestSink) sink = g_object_new (TEST_TYPE_SINK, NULL);
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  g_autofree guint8 *expected = g_malloc (size);
  OnOwner on_owner = { g_thread_self (), 0, 0, FALSE, G_MAXUINT64 };
  Run run = { 0 };

  for (gsize start = 0; start < size; start += 1000)
    {
      gsize len = MIN (1000, size - start);

      for (gsize i = 0; i < len; i++)
        expected[start + i] = in_data[start + len - 1 - i];
    }
  run.producer = sluice_ordered_item_producer_new (queue, 4, (GDestroyNotify) g_bytes_unref);
  writer = sluice_output_stream_consumer_new (run.producer, G_OUTPUT_STREAM (sink));
  sluice_output_stream_consumer_start (writer);
  run.reader = sluice_input_stream_producer_new (run.producer, in, 1000);
  g_assert_true (sluice_input_stream_producer_get_chunk_func_in_thread (run.reader));
  sluice_input_stream_producer_set_chunk_func_in_thread (run.reader, FALSE);
  g_assert_false (sluice_input_stream_producer_get_chunk_func_in_thread (run.reader));
  sluice_input_stream_producer_set_chunk_func (run.reader, on_owner_chunk, &on_owner, NULL);
  run_to_end (&run, NULL);

  g_assert_no_error (run.read_error);
  g_assert_no_error (run.stop_error);
  g_assert_false (on_owner.off_owner);
  g_assert_cmpuint (on_owner.n_calls, ==, 11);
  assert_bytes_equal (sink->data, expected, size);
  /* Set once reading began: a programmer error, nothing changes. */
  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*!self->ran*");
  sluice_input_stream_producer_set_chunk_func_in_thread (run.reader, TRUE);
  g_test_assert_expected_messages ();
  g_assert_false (sluice_input_stream_producer_get_chunk_func_in_thread (run.reader));
  run_clear (&run);
  run = (Run){ 0 };
  g_clear_object (&writer);
  g_clear_object (&sink);

  /* The function fails at the fourth chunk: three chunks are written, the
   * reading and the stop report its error. */
  on_owner = (OnOwner){ g_thread_self (), 0, 0, FALSE, 3000 };
  g_clear_object (&in);
  in = g_memory_input_stream_new_from_bytes (input);
  sink = g_object_new (TEST_TYPE_SINK, NULL);
  run.producer = sluice_ordered_item_producer_new (queue, 4, (GDestroyNotify) g_bytes_unref);
  writer = sluice_output_stream_consumer_new (run.producer, G_OUTPUT_STREAM (sink));
  sluice_output_stream_consumer_start (writer);
  run.reader = g_object_new (SLUICE_TYPE_INPUT_STREAM_PRODUCER, "producer", run.producer, "stream",
                             in, "chunk-size", (guint64) 1000, "chunk-func-in-thread", FALSE, NULL);
  sluice_input_stream_producer_set_chunk_func (run.reader, on_owner_chunk, &on_owner, NULL);
  run_to_end (&run, NULL);

  g_assert_error (run.read_error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_error (run.stop_error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_assert_cmpstr (run.stop_error->message, ==, "test: bad chunk");
  g_assert_false (on_owner.off_owner);
  g_assert_cmpuint (on_owner.n_calls, >=, 4);
  assert_bytes_equal (sink->data, expected, 3000);
  run_clear (&run);
}

/* A consumer that takes a failed item closes the producer in its thread
 * and only then tells the owner context (from the abort's cancellation of
 * the items in flight). A reader that reads on meanwhile gets its chunks
 * refused: it must not read on to the end of the input and report
 * success. Here the consumer thread is held inside that cancellation (by
 * the second chunk's function, in flight) until the reading has ended, and
 * the stream reads on past its second chunk only once the producer is
 * closed. */
typedef struct
{
  GMutex mutex;
  GCond cond;
  gboolean connected;
  gboolean released;
} Gate;

static void
hold_until_released (GCancellable *cancellable, gpointer data)
{
  Gate *gate = data;

  g_mutex_lock (&gate->mutex);
  while (!gate->released)
    g_cond_wait (&gate->cond, &gate->mutex);
  g_mutex_unlock (&gate->mutex);
}

static GBytes *
fail_first_hold_abort (GBytes *chunk,
                       GBytes *previous,
                       guint64 offset,
                       GCancellable *cancellable,
                       gpointer user_data,
                       GError **error)
{
  Gate *gate = user_data;
  gint64 deadline = deadline_from_now ();

  if (offset == 0)
    {
      /* Fail once the second chunk holds the abort. */
      g_mutex_lock (&gate->mutex);
      while (!gate->connected)
        g_cond_wait (&gate->cond, &gate->mutex);
      g_mutex_unlock (&gate->mutex);
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "test: bad chunk");
      return NULL;
    }
  if (offset == 1000)
    {
      g_cancellable_connect (cancellable, G_CALLBACK (hold_until_released), gate, NULL);
      g_mutex_lock (&gate->mutex);
      gate->connected = TRUE;
      g_cond_broadcast (&gate->cond);
      g_mutex_unlock (&gate->mutex);
      /* In flight until the abort cancels it. */
      while (!g_cancellable_is_cancelled (cancellable))
        {
          g_assert_cmpint (g_get_monotonic_time (), <, deadline);
          g_usleep (1000);
        }
    }
  return g_bytes_ref (chunk);
}

static gpointer
consume_all (SluiceConsumerator *items, gpointer user_data, GError **error)
{
  gpointer item;

  while (sluice_consumerator_next (items, &item, error))
    g_bytes_unref (item);
  return NULL;
}

typedef struct
{
  Run *run;
  Gate *gate;
} GatedRun;

static void
on_read_all_open_gate (GObject *source, GAsyncResult *result, gpointer data)
{
  GatedRun *gated = data;

  g_mutex_lock (&gated->gate->mutex);
  gated->gate->released = TRUE;
  g_cond_broadcast (&gated->gate->cond);
  g_mutex_unlock (&gated->gate->mutex);
  on_read_all (source, result, gated->run);
}

static void
test_closed_by_consumer_thread (void)
{
  gsize size = 10 * 1000 + 7;
  g_autoptr (GBytes) input = random_bytes (size, 23);
  g_autoptr (SluiceTaskQueue) queue = sluice_task_queue_new (2);
  g_autoptr (GInputStream) in = test_source_new (input, G_MAXSIZE);
  Gate gate = { 0 };
  Run run = { 0 };
  GatedRun gated = { &run, &gate };
  gint64 deadline = deadline_from_now ();

  g_mutex_init (&gate.mutex);
  g_cond_init (&gate.cond);
  /* A window wider than the input: the reader is never paused. */
  run.producer = sluice_ordered_item_producer_new (queue, 32, (GDestroyNotify) g_bytes_unref);
  sluice_ordered_item_producer_start (run.producer, consume_all, NULL, NULL, NULL);
  TEST_SOURCE (in)->wait_closed = run.producer;
  TEST_SOURCE (in)->wait_closed_at = 2000;
  run.reader = sluice_input_stream_producer_new (run.producer, in, 1000);
  sluice_input_stream_producer_set_chunk_func (run.reader, fail_first_hold_abort, &gate, NULL);
  sluice_input_stream_producer_read_all_async (run.reader, G_PRIORITY_DEFAULT, NULL,
                                               on_read_all_open_gate, &gated);
  while (!run.stop_done)
    {
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_main_context_iteration (NULL, TRUE);
    }

  /* Stopped at the first chunk read after the close (3000 bytes), or
   * earlier if the owner context heard of the close otherwise (the room
   * the consumer made by taking the first item): never at the end. */
  g_assert_error (run.read_error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_cmpuint (sluice_input_stream_producer_get_bytes_read (run.reader), <=, 3000);
  g_assert_error (run.stop_error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  run_clear (&run);
  g_mutex_clear (&gate.mutex);
  g_cond_clear (&gate.cond);
}

/* Programmer errors are criticals that leave everything as it was. */
static void
test_programmer_errors (void)
{
  g_autoptr (SluiceOrderedItemProducer) producer =
      sluice_ordered_item_producer_new (NULL, 4, (GDestroyNotify) g_bytes_unref);
  g_autoptr (GInputStream) in = g_memory_input_stream_new ();
  g_autoptr (TestSink) sink = g_object_new (TEST_TYPE_SINK, NULL);
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  g_autoptr (SluiceInputStreamProducer) reader = NULL;
  Run run = { 0 };

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*chunk_size > 0*");
  g_assert_null (sluice_input_stream_producer_new (producer, in, 0));
  g_test_assert_expected_messages ();

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*G_IS_OUTPUT_STREAM*");
  g_assert_null (sluice_output_stream_consumer_new (producer, NULL));
  g_test_assert_expected_messages ();

  writer = sluice_output_stream_consumer_new (producer, G_OUTPUT_STREAM (sink));
  sluice_output_stream_consumer_start (writer);
  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*self->writing == NULL*");
  sluice_output_stream_consumer_start (writer);
  g_test_assert_expected_messages ();
  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*self->writing == NULL*");
  sluice_output_stream_consumer_set_close_stream (writer, FALSE);
  g_test_assert_expected_messages ();
  g_assert_true (sluice_output_stream_consumer_get_close_stream (writer));

  reader = sluice_input_stream_producer_new (producer, in, 10);
  run.producer = g_object_ref (producer);
  run.reader = g_object_ref (reader);
  run_to_end (&run, NULL);
  g_assert_no_error (run.stop_error);
  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*!self->ran*");
  sluice_input_stream_producer_read_all_async (reader, G_PRIORITY_DEFAULT, NULL, NULL, NULL);
  g_test_assert_expected_messages ();
  run_clear (&run);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/streams/copy/in-order", test_copy_in_order);
  g_test_add_func ("/streams/copy/plain", test_copy_plain);
  g_test_add_func ("/streams/copy/values", test_values);
  g_test_add_func ("/streams/window", test_window_bounds_live_items);
  g_test_add_func ("/streams/error/write", test_write_error);
  g_test_add_func ("/streams/error/read", test_read_error);
  g_test_add_func ("/streams/files/concatenated", test_files);
  g_test_add_func ("/streams/files/missing", test_files_missing);
  g_test_add_func ("/streams/files/none", test_no_files);
  g_test_add_func ("/streams/cancel", test_cancel);
  g_test_add_func ("/streams/stop-producing", test_stop_producing);
  g_test_add_func ("/streams/stop-during-blocked-read", test_stop_during_blocked_read);
  g_test_add_func ("/streams/closed-before-read", test_closed_before_read);
  g_test_add_func ("/streams/stop-during-blocked-write", test_stop_during_blocked_write);
  g_test_add_func ("/streams/stop-during-blocked-read-kept-stream",
                   test_stop_during_blocked_read_kept_stream);
  g_test_add_func ("/streams/dropped-producer", test_dropped_producer);
  g_test_add_func ("/streams/chunk-func-on-owner", test_chunk_func_on_owner);
  g_test_add_func ("/streams/closed-by-consumer-thread", test_closed_by_consumer_thread);
  g_test_add_func ("/streams/programmer-errors", test_programmer_errors);

  return g_test_run ();
}
