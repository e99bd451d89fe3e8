/* ordered-hasher.c: an ordered file hasher, as sha256sum (doc/examples.md)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Shows an item made of async I/O first and blocking work second: each
 * file is read with GIO (g_file_load_contents_async(), no thread) from an
 * item function, then hashed with SHA-256 in the task queue
 * (sluice_slot_continue_in_thread()); ONE consumer thread prints
 * "<sha256>  <path>" lines in the order of the arguments, whatever order
 * the reads and hashes finish in. The files are asked for from the
 * producer's ready source, so at most WINDOW of them are in memory at once;
 * the program checks that bound on live items. A missing or unreadable file
 * ends the run with an error naming it (the lines before it are printed).
 *
 * The test suite runs it with --self-test (tests/meson.build): it writes 200
 * files of random sizes to a temporary directory, hashes them, compares
 * every line with a serial GChecksum of each file and the live items with
 * the window, hashes a list with a missing file, and exits 0 only if all
 * holds. doc/examples.md shows the code between the [name] markers.
 *
 * Usage: ordered-hasher [--window N] FILE...
 *        ordered-hasher --self-test
 */

#include <sluice/sluice.h>

#include <glib/gstdio.h>
#include <string.h>

#define DEFAULT_WINDOW 16
#define N_TEST_FILES 200
#define MAX_TEST_FILE_SIZE (300 * 1024)

/* [hash] */
/* The blocking half of an item: runs in a thread of the task queue. */
static gpointer
hash_contents (GCancellable *cancellable, gpointer user_data, GError **error)
{
  GBytes *contents = user_data;

  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return NULL;
  return g_compute_checksum_for_bytes (G_CHECKSUM_SHA256, contents);
}

/* The GIO callback: hands the slot over to the task queue, from whatever
 * thread it runs in. */
static void
file_loaded (GObject *source, GAsyncResult *result, gpointer user_data)
{
  SluiceSlot *slot = user_data;
  GError *error = NULL;
  char *contents;
  gsize length;

  if (!g_file_load_contents_finish (G_FILE (source), result, &contents, &length, NULL, &error))
    {
      sluice_slot_fail (slot, error); /* GIO's message names the file */
      return;
    }
  /* The slot is completed with what hash_contents() returns (or fails with
   * its error); the bytes are freed once it has run, or will never run. */
  sluice_slot_continue_in_thread (slot, hash_contents, g_bytes_new_take (contents, length),
                                  (GDestroyNotify) g_bytes_unref);
}

/* The non-blocking half: an item function, starts the read at once. */
static void
read_file (SluiceSlot *slot, gpointer user_data)
{
  GFile *file = user_data;

  g_file_load_contents_async (file, sluice_slot_get_cancellable (slot), file_loaded, slot);
}
/* [/hash] */

/* [print] */
typedef struct
{
  char **paths;     /* the arguments, in order */
  GPtrArray *lines; /* with --self-test: the lines, instead of printing them */
} Printer;

/* The consumer: runs in a thread of its own. The n-th item is the digest of
 * the n-th argument, since items arrive in call order. */
static gpointer
print_sums (SluiceConsumerator *digests, gpointer user_data, GError **error)
{
  Printer *printer = user_data;
  gpointer item;
  guint n = 0;

  while (sluice_consumerator_next (digests, &item, error))
    {
      g_autofree char *digest = item;
      char *line = g_strdup_printf ("%s  %s", digest, printer->paths[n++]);

      if (printer->lines != NULL)
        g_ptr_array_add (printer->lines, line);
      else
        {
          g_print ("%s\n", line);
          g_free (line);
        }
    }
  if (*error != NULL)
    return NULL; /* a file failed: the stop reports its error */
  return printer;
}
/* [/print] */

/* [feed] */
typedef struct
{
  SluiceOrderedItemProducer *producer;
  char **paths;
  guint n_paths;
  guint next;
  guint max_live; /* the most live items seen */
  GError *error;
  gboolean done;
} Feeder;

static void
on_stopped (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Feeder *feeder = user_data;

  sluice_ordered_item_producer_stop_finish (SLUICE_ORDERED_ITEM_PRODUCER (source), result,
                                            &feeder->error);
  feeder->done = TRUE;
}

/* Runs on the main context from the producer's ready source: asks for files
 * while the window has room, and again once the printer has caught up. */
static gboolean
feed (gpointer user_data)
{
  Feeder *feeder = user_data;
  SluiceConsumerator *consumerator =
      sluice_ordered_item_producer_get_consumerator (feeder->producer);

  /* A closed producer (a file failed) is ready for good: stop asking. */
  while (feeder->next < feeder->n_paths &&
         sluice_ordered_item_producer_is_ready (feeder->producer) &&
         !sluice_ordered_item_producer_is_closed (feeder->producer))
    {
      GFile *file = g_file_new_for_path (feeder->paths[feeder->next++]);

      sluice_ordered_item_producer_produce_item (feeder->producer, read_file, file, g_object_unref,
                                                 NULL, NULL, NULL);
      /* Live: asked for and not yet taken by the printer. */
      feeder->max_live = MAX (feeder->max_live, sluice_consumerator_get_n_items (consumerator));
    }
  if (feeder->next < feeder->n_paths && !sluice_ordered_item_producer_is_closed (feeder->producer))
    return G_SOURCE_CONTINUE; /* the window is full: called again when ready */

  sluice_ordered_item_producer_stop_async (feeder->producer, NULL, on_stopped, feeder);
  return G_SOURCE_REMOVE;
}
/* [/feed] */

/* Hashes @paths in order with at most @window files live. With @lines,
 * collects the lines there instead of printing them. */
static gboolean
hash_files (char **paths, guint window, GPtrArray *lines, guint *out_max_live, GError **error)
{
  Printer printer = { paths, lines };
  Feeder feeder = { NULL, paths, g_strv_length (paths), 0, 0, NULL, FALSE };
  GSource *ready;

  /* [start] */
  /* At most @window files live; digests never printed are freed with g_free(). */
  feeder.producer = sluice_ordered_item_producer_new (NULL, window, g_free);
  sluice_ordered_item_producer_start (feeder.producer, print_sums, &printer, NULL, NULL);

  ready = sluice_ordered_item_producer_create_ready_source (feeder.producer, NULL);
  g_source_set_callback (ready, feed, &feeder, NULL);
  g_source_attach (ready, NULL);

  while (!feeder.done)
    g_main_context_iteration (NULL, TRUE);
  /* [/start] */

  g_source_destroy (ready);
  g_source_unref (ready);
  g_object_unref (feeder.producer);

  *out_max_live = feeder.max_live;
  if (feeder.error != NULL)
    {
      g_propagate_error (error, feeder.error);
      return FALSE;
    }
  return TRUE;
}

/* The reference: each file read and hashed in turn. */
static char *
serial_sha256 (const char *path, GError **error)
{
  g_autoptr (GChecksum) checksum = g_checksum_new (G_CHECKSUM_SHA256);
  g_autofree char *contents = NULL;
  gsize length;

  if (!g_file_get_contents (path, &contents, &length, error))
    return NULL;
  g_checksum_update (checksum, (const guchar *) contents, length);
  return g_strdup (g_checksum_get_string (checksum));
}

static gboolean
write_random_file (const char *path, gsize size, GError **error)
{
  g_autofree guint32 *data = g_new (guint32, size / 4 + 1);

  for (gsize i = 0; i < size / 4 + 1; i++)
    data[i] = g_random_int ();
  return g_file_set_contents (path, (const char *) data, size, error);
}

static int
self_test (void)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GPtrArray) paths = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *dir = g_dir_make_tmp ("ordered-hasher-XXXXXX", &error);
  guint max_live = 0;
  guint n_wrong = 0;

  if (dir == NULL)
    {
      g_printerr ("ordered-hasher: %s\n", error->message);
      return 1;
    }
  for (guint i = 0; i < N_TEST_FILES; i++)
    {
      char *path = g_strdup_printf ("%s/file-%03u", dir, i);

      g_ptr_array_add (paths, path);
      if (!write_random_file (path, g_random_int_range (0, MAX_TEST_FILE_SIZE + 1), &error))
        {
          g_printerr ("ordered-hasher: %s\n", error->message);
          n_wrong++;
          g_clear_error (&error);
        }
    }
  g_ptr_array_add (paths, NULL);

  /* Every file, in order, within the window. */
  if (!hash_files ((char **) paths->pdata, DEFAULT_WINDOW, lines, &max_live, &error))
    {
      g_printerr ("ordered-hasher: hashing failed: %s\n", error->message);
      g_clear_error (&error);
      n_wrong++;
    }
  else if (lines->len != N_TEST_FILES)
    {
      g_printerr ("ordered-hasher: %u lines for %u files\n", lines->len, N_TEST_FILES);
      n_wrong++;
    }
  for (guint i = 0; i < lines->len && i < N_TEST_FILES; i++)
    {
      const char *path = paths->pdata[i];
      g_autofree char *digest = serial_sha256 (path, &error);
      g_autofree char *expected = g_strdup_printf ("%s  %s", digest, path);

      if (digest == NULL || strcmp (lines->pdata[i], expected) != 0)
        {
          g_printerr ("ordered-hasher: line %u differs:\n  got      %s\n  expected %s\n", i + 1,
                      (char *) lines->pdata[i], digest != NULL ? expected : error->message);
          g_clear_error (&error);
          n_wrong++;
        }
    }
  if (max_live == 0 || max_live > DEFAULT_WINDOW)
    {
      g_printerr ("ordered-hasher: %u items were live at once, window %u\n", max_live,
                  DEFAULT_WINDOW);
      n_wrong++;
    }

  /* A missing file in the middle ends the run with an error naming it,
   * after the lines of the files before it. */
  {
    g_autofree char *missing = g_strdup_printf ("%s/missing", dir);
    char *some[] = { paths->pdata[0], paths->pdata[1], missing, paths->pdata[2], NULL };
    guint unused_max_live;

    g_ptr_array_set_size (lines, 0);
    if (hash_files (some, 2, lines, &unused_max_live, &error))
      {
        g_printerr ("ordered-hasher: a missing file was not reported\n");
        n_wrong++;
      }
    else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND) ||
             strstr (error->message, missing) == NULL || lines->len > 2)
      {
        g_printerr ("ordered-hasher: a missing file gave \"%s\" after %u lines\n", error->message,
                    lines->len);
        n_wrong++;
      }
    g_clear_error (&error);
  }

  for (guint i = 0; i < N_TEST_FILES; i++)
    g_unlink (paths->pdata[i]);
  g_rmdir (dir);

  if (n_wrong > 0)
    return 1;
  g_print ("hashed %u files in order, at most %u of %u live\n", N_TEST_FILES, max_live,
           DEFAULT_WINDOW);
  return 0;
}

int
main (int argc, char **argv)
{
  gboolean run_self_test = FALSE;
  int window = DEFAULT_WINDOW;
  const GOptionEntry entries[] = { { "self-test", 0, 0, G_OPTION_ARG_NONE, &run_self_test,
                                     "Hash generated files and check", NULL },
                                   { "window", 'w', 0, G_OPTION_ARG_INT, &window,
                                     "Files in flight at most (16)", "N" },
                                   G_OPTION_ENTRY_NULL };
  g_autoptr (GOptionContext) context = g_option_context_new ("FILE...");
  g_autoptr (GError) error = NULL;
  guint max_live;

  g_option_context_add_main_entries (context, entries, NULL);
  g_option_context_set_summary (context, "Prints the SHA-256 of each FILE, in order.");
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("ordered-hasher: %s\n", error->message);
      return 2;
    }
  if (run_self_test)
    return self_test ();
  if (argc < 2 || window < 1)
    {
      g_printerr ("usage: ordered-hasher [--window N] FILE...\n");
      return 2;
    }

  if (!hash_files (argv + 1, window, NULL, &max_live, &error))
    {
      g_printerr ("ordered-hasher: %s\n", error->message);
      return 1;
    }
  return 0;
}
