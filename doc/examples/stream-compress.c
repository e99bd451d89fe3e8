/* stream-compress.c: a parallel compressor on the stream adapters
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Reads a file in chunks with GIO async reads, gzips the chunks in the
 * task queue, several at once, and ONE writer thread writes them in input
 * order: the output is a gzip file of one member per chunk, which gzip -d
 * (and any reader of concatenated members) restores byte for byte. Flow
 * control is the adapters' own: the reader pauses while 16 chunks are
 * live. The test suite compiles and runs it (tests/meson.build); the
 * tutorial shows the code between the [name] ... [/name] markers.
 *
 * Usage: stream-compress [FILE [OUT]]: compresses FILE to OUT (default
 * FILE.gz); with no FILE, a generated input in a temporary directory,
 * and checks that the output decompresses to it.
 */

#include <sluice/sluice.h>

#include <glib/gstdio.h>
#include <string.h>

/* [compress] */
/* Blocking, in a thread of the task queue: one gzip member per chunk. */
static GBytes *
compress_chunk (GBytes *chunk,
                GBytes *previous,
                guint64 offset,
                GCancellable *cancellable,
                gpointer user_data,
                GError **error)
{
  g_autoptr (GOutputStream) memory = g_memory_output_stream_new_resizable ();
  g_autoptr (GZlibCompressor) gzip = g_zlib_compressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP, 6);
  g_autoptr (GOutputStream) out = g_converter_output_stream_new (memory, G_CONVERTER (gzip));

  if (!g_output_stream_write_all (out, g_bytes_get_data (chunk, NULL), g_bytes_get_size (chunk),
                                  NULL, cancellable, error) ||
      !g_output_stream_close (out, cancellable, error))
    return NULL;
  return g_memory_output_stream_steal_as_bytes (G_MEMORY_OUTPUT_STREAM (memory));
}
/* [/compress] */

/* [stop] */
typedef struct
{
  SluiceOrderedItemProducer *producer;
  gboolean done;
  GError *error;
} Compression;

static void
on_stopped (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Compression *compression = user_data;

  /* The first error of all: a read, a chunk, a write or the close. */
  sluice_ordered_item_producer_stop_finish (compression->producer, result, &compression->error);
  compression->done = TRUE;
}

static void
on_read_all (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Compression *compression = user_data;

  /* Every chunk has been asked for, or the reading failed (the stop
   * reports that too): wait for the writer. */
  sluice_input_stream_producer_read_all_finish (SLUICE_INPUT_STREAM_PRODUCER (source), result,
                                                NULL);
  sluice_ordered_item_producer_stop_async (compression->producer, NULL, on_stopped, compression);
}
/* [/stop] */

static gboolean
compress_file (GFile *input, GFile *output, guint64 *out_size, GError **error)
{
  g_autoptr (GFileInputStream) in = g_file_read (input, NULL, error);
  g_autoptr (GFileOutputStream) out = NULL;
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  g_autoptr (SluiceInputStreamProducer) reader = NULL;
  Compression compression = { 0 };

  if (in == NULL)
    return FALSE;
  out = g_file_replace (output, NULL, FALSE, G_FILE_CREATE_NONE, NULL, error);
  if (out == NULL)
    return FALSE;

  /* [start] */
  /* On the main context: at most 16 chunks live (read, not yet written). */
  compression.producer =
      sluice_ordered_item_producer_new (NULL, 16, (GDestroyNotify) g_bytes_unref);

  /* One thread writes the items in order, then closes the stream. */
  writer = sluice_output_stream_consumer_new (compression.producer, G_OUTPUT_STREAM (out));
  sluice_output_stream_consumer_start (writer);

  /* Async reads of 128 KiB chunks, each compressed in the task queue. */
  reader = sluice_input_stream_producer_new (compression.producer, G_INPUT_STREAM (in), 128 * 1024);
  sluice_input_stream_producer_set_chunk_func (reader, compress_chunk, NULL, NULL);
  sluice_input_stream_producer_read_all_async (reader, G_PRIORITY_DEFAULT, NULL, on_read_all,
                                               &compression);

  while (!compression.done)
    g_main_context_iteration (NULL, TRUE);
  /* [/start] */

  *out_size = sluice_output_stream_consumer_get_bytes_written (writer);
  g_object_unref (compression.producer);
  if (compression.error != NULL)
    {
      g_propagate_error (error, compression.error);
      return FALSE;
    }
  return TRUE;
}

/* Decompresses every member of @path and compares with @expected. */
static gboolean
decompresses_to (const char *path, GBytes *expected)
{
  g_autofree char *contents = NULL;
  gsize len, pos = 0;
  g_autoptr (GByteArray) got = g_byte_array_new ();
  guint8 buffer[65536];

  if (!g_file_get_contents (path, &contents, &len, NULL))
    return FALSE;
  while (pos < len)
    {
      g_autoptr (GZlibDecompressor) gunzip =
          g_zlib_decompressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP);
      GConverterResult result;

      do
        {
          gsize read = 0, written = 0;

          result =
              g_converter_convert (G_CONVERTER (gunzip), contents + pos, len - pos, buffer,
                                   sizeof buffer, G_CONVERTER_INPUT_AT_END, &read, &written, NULL);
          if (result == G_CONVERTER_ERROR)
            return FALSE;
          pos += read;
          g_byte_array_append (got, buffer, (guint) written);
        }
      while (result != G_CONVERTER_FINISHED);
    }
  return got->len == g_bytes_get_size (expected) &&
         memcmp (got->data, g_bytes_get_data (expected, NULL), got->len) == 0;
}

int
main (int argc, char *argv[])
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GFile) input = NULL;
  g_autoptr (GFile) output = NULL;
  g_autofree char *dir = NULL;
  g_autofree char *in_path = NULL;
  g_autofree char *out_path = NULL;
  g_autoptr (GBytes) expected = NULL;
  guint64 out_size = 0;
  gboolean ok;

  if (argc > 1)
    {
      in_path = g_strdup (argv[1]);
      out_path = argc > 2 ? g_strdup (argv[2]) : g_strconcat (argv[1], ".gz", NULL);
    }
  else
    {
      GString *text = g_string_new (NULL);

      dir = g_dir_make_tmp ("stream-compress-XXXXXX", NULL);
      in_path = g_build_filename (dir, "input.txt", NULL);
      out_path = g_build_filename (dir, "input.txt.gz", NULL);
      for (guint n = 0; text->len < 3 * 1000 * 1000; n++)
        g_string_append_printf (text, "line %u: %u\n", n, g_random_int_range (0, 1000));
      expected = g_string_free_to_bytes (text);
      if (!g_file_set_contents (in_path, g_bytes_get_data (expected, NULL),
                                (gssize) g_bytes_get_size (expected), &error))
        g_error ("%s", error->message);
    }

  input = g_file_new_for_commandline_arg (in_path);
  output = g_file_new_for_commandline_arg (out_path);
  ok = compress_file (input, output, &out_size, &error);
  if (!ok)
    g_printerr ("stream-compress: %s\n", error->message);
  else
    g_print ("%s: %" G_GUINT64_FORMAT " bytes written to %s\n", in_path, out_size, out_path);

  if (expected != NULL)
    {
      if (ok && !decompresses_to (out_path, expected))
        {
          g_printerr ("stream-compress: the output does not decompress to the input\n");
          ok = FALSE;
        }
      g_unlink (in_path);
      g_unlink (out_path);
      g_rmdir (dir);
    }
  return ok ? 0 : 1;
}
