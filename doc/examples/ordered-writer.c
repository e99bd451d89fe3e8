/* ordered-writer.c: the program that doc/tutorial.md builds step by step
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Fetches a few files with GIO and renders numbered records in the task
 * queue, all at once; ONE writer thread writes every piece, in the order it
 * was asked for, to one output stream. The test suite compiles and runs it
 * (tests/meson.build), and checks that the code shown in the tutorial is the
 * code between the [name] ... [/name] markers here.
 *
 * Usage: ordered-writer [N_RECORDS]
 */

#include <sluice/sluice.h>

#include <glib/gstdio.h>
#include <string.h>

/* [writer] */
typedef struct
{
  GOutputStream *out;
  guint64 n_bytes;
} Writer;

/* The consumer: runs in a thread of its own and may block. */
static gpointer
write_all (SluiceConsumerator *pieces, gpointer user_data, GError **error)
{
  Writer *writer = user_data;
  gpointer piece;

  /* next() blocks until the next piece in call order is there; it returns
   * FALSE at the end, with @error set if a piece failed. */
  while (sluice_consumerator_next (pieces, &piece, error))
    {
      g_autoptr (GBytes) bytes = piece; /* each piece is ours now */
      gsize size;
      const void *data = g_bytes_get_data (bytes, &size);

      if (!g_output_stream_write_all (writer->out, data, size, NULL, NULL, error))
        return NULL; /* ends production; the stop reports the error */
      writer->n_bytes += size;
    }
  if (*error != NULL)
    return NULL;
  return writer; /* what stop_finish() returns */
}
/* [/writer] */

/* [render] */
/* A blocking function: runs in a thread of the task queue. */
static gpointer
render_record (GCancellable *cancellable, gpointer user_data, GError **error)
{
  guint n = GPOINTER_TO_UINT (user_data);
  char *text;

  g_usleep (g_random_int_range (0, 3000)); /* work of varying length */
  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return NULL;
  text = g_strdup_printf ("record %u\n", n);
  return g_bytes_new_take (text, strlen (text));
}
/* [/render] */

/* [fetch] */
/* The GIO callback: completes the slot, from whatever thread it runs in. */
static void
file_loaded (GObject *source, GAsyncResult *result, gpointer user_data)
{
  SluiceSlot *slot = user_data;
  GError *error = NULL;
  char *contents;
  gsize length;

  if (g_file_load_contents_finish (G_FILE (source), result, &contents, &length, NULL, &error))
    sluice_slot_complete (slot, g_bytes_new_take (contents, length));
  else
    sluice_slot_fail (slot, error);
}

/* A non-blocking item function: starts the read and returns at once. */
static void
fetch_file (SluiceSlot *slot, gpointer user_data)
{
  GFile *file = user_data;

  g_file_load_contents_async (file, sluice_slot_get_cancellable (slot), file_loaded, slot);
}
/* [/fetch] */

/* [feed] */
typedef struct
{
  SluiceOrderedItemProducer *producer;
  GPtrArray *files; /* of GFile: one is fetched before every tenth record */
  guint next;
  guint n_pieces;
  GError *error;
  gboolean done;
} Feeder;

static void on_stopped (GObject *source, GAsyncResult *result, gpointer user_data);

/* Runs on the main context, from the producer's ready source: it
 * dispatches while the window has room, and again once the writer has
 * caught up. */
static gboolean
feed (gpointer user_data)
{
  Feeder *feeder = user_data;

  /* A closed producer (a piece failed, the writer gave up) is ready for
   * good, as a closed stream is writable: it refuses every produce call at
   * once. Stop asking then, and let the stop report why. */
  while (feeder->next < feeder->n_pieces &&
         sluice_ordered_item_producer_is_ready (feeder->producer) &&
         !sluice_ordered_item_producer_is_closed (feeder->producer))
    {
      guint n = feeder->next++;

      if (n % 11 == 0)
        sluice_ordered_item_producer_produce_item (feeder->producer, fetch_file,
                                                   g_object_ref (feeder->files->pdata[n / 11]),
                                                   g_object_unref, NULL, NULL, NULL);
      else
        sluice_ordered_item_producer_produce_in_thread (feeder->producer, render_record,
                                                        GUINT_TO_POINTER (n));
    }
  if (feeder->next < feeder->n_pieces && !sluice_ordered_item_producer_is_closed (feeder->producer))
    return G_SOURCE_CONTINUE; /* the window is full: wait until it is ready */

  sluice_ordered_item_producer_stop_async (feeder->producer, NULL, on_stopped, feeder);
  return G_SOURCE_REMOVE;
}
/* [/feed] */

/* [stop] */
static void
on_stopped (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Feeder *feeder = user_data;
  Writer *writer;

  writer = sluice_ordered_item_producer_stop_finish (SLUICE_ORDERED_ITEM_PRODUCER (source), result,
                                                     &feeder->error);
  if (writer != NULL)
    g_print ("wrote %" G_GUINT64_FORMAT " bytes in order\n", writer->n_bytes);
  feeder->done = TRUE;
}
/* [/stop] */

/* Makes the files to fetch; returns what the output must be. */
static GString *
prepare (const char *dir, guint n_pieces, GPtrArray *files)
{
  GString *expected = g_string_new (NULL);

  for (guint n = 0; n < n_pieces; n++)
    {
      if (n % 11 == 0)
        {
          g_autofree char *name = g_strdup_printf ("part-%u.txt", n);
          g_autofree char *path = g_build_filename (dir, name, NULL);
          g_autofree char *text = g_strdup_printf ("file %u: %s\n", n, name);

          if (!g_file_set_contents (path, text, -1, NULL))
            g_error ("could not write %s", path);
          g_ptr_array_add (files, g_file_new_for_path (path));
          g_string_append (expected, text);
        }
      else
        g_string_append_printf (expected, "record %u\n", n);
    }
  return expected;
}

int
main (int argc, char *argv[])
{
  guint n_pieces = argc > 1 ? (guint) g_ascii_strtoull (argv[1], NULL, 10) : 500;
  g_autofree char *dir = g_dir_make_tmp ("ordered-writer-XXXXXX", NULL);
  g_autoptr (GPtrArray) files = g_ptr_array_new_with_free_func (g_object_unref);
  g_autoptr (GString) expected = NULL;
  g_autoptr (GOutputStream) out = g_memory_output_stream_new_resizable ();
  Writer writer = { out, 0 };
  Feeder feeder = { 0 };
  gboolean same;

  g_assert (dir != NULL);
  expected = prepare (dir, n_pieces, files);

  /* [start] */
  /* On the main context: at most 32 pieces live (asked for, not yet
   * written); those never written are freed with g_bytes_unref(). */
  feeder.producer = sluice_ordered_item_producer_new (NULL, 32, (GDestroyNotify) g_bytes_unref);
  feeder.files = files;
  feeder.n_pieces = n_pieces;

  sluice_ordered_item_producer_start (feeder.producer, write_all, &writer, NULL, NULL);
  /* [/start] */

  /* [loop] */
  {
    GSource *ready = sluice_ordered_item_producer_create_ready_source (feeder.producer, NULL);

    g_source_set_callback (ready, feed, &feeder, NULL);
    g_source_attach (ready, NULL);

    while (!feeder.done)
      g_main_context_iteration (NULL, TRUE);

    g_source_destroy (ready);
    g_source_unref (ready);
  }
  /* [/loop] */

  same = feeder.error == NULL &&
         g_memory_output_stream_get_data_size (G_MEMORY_OUTPUT_STREAM (out)) == expected->len &&
         memcmp (g_memory_output_stream_get_data (G_MEMORY_OUTPUT_STREAM (out)), expected->str,
                 expected->len) == 0;
  if (feeder.error != NULL)
    g_printerr ("ordered-writer: %s\n", feeder.error->message);
  else if (!same)
    g_printerr ("ordered-writer: the output is not in call order\n");

  for (guint i = 0; i < files->len; i++)
    g_file_delete (files->pdata[i], NULL, NULL);
  g_rmdir (dir);
  g_clear_error (&feeder.error);
  g_object_unref (feeder.producer);
  return same ? 0 : 1;
}
