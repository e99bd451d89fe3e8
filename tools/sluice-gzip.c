/* sluice-gzip.c: a parallel gzip on the ordered item producer
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The case Sluice exists for: the input is read with GIO asynchronous reads
 * on the main loop, one block per item; each block is deflated in the task
 * queue with the previous block's last 32 KiB as its dictionary; ONE writer
 * thread writes the compressed blocks in order. When the writer or the pool
 * falls behind, the producer stops being ready and the reader waits on its
 * ready source, so memory stays bounded by the window whatever the input.
 *
 * The output is one gzip member: each block ends with a sync flush so that
 * the blocks concatenate, an empty final block closes the deflate stream,
 * and the CRC-32 of the whole input is combined from the blocks' CRCs with
 * zlib's crc32_combine().
 *
 * Uses the public API of the library only.
 */

#include <errno.h>
#include <fcntl.h>
#include <glib/gi18n.h>
#include <glib/gstdio.h>
#include <gio/gfiledescriptorbased.h>
#include <gio/gunixinputstream.h>
#include <gio/gunixoutputstream.h>
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib-unix.h>
#include <sluice/sluice.h>
#include <zlib.h>

#define DICT_SIZE 32768
/* Blocks per asynchronous read. */
#define READ_BLOCKS 4
#define EXIT_OK 0
#define EXIT_ERROR 1
#define EXIT_INTERRUPTED 130

/* --- options --- */

static int opt_level = 6;
static int opt_processes = 0;
static int opt_blocksize_kib = 128;
static gboolean opt_stdout;
static gboolean opt_keep;
static gboolean opt_force;
static gboolean opt_quiet;
static gboolean opt_verbose;
static gboolean opt_progress;
static gboolean opt_no_progress;
static gboolean opt_progress_explicit;
static gboolean opt_version;
static gboolean opt_demo;
static char **opt_files;

static gboolean
set_level (const char *option_name, const char *value, gpointer data, GError **error)
{
  /* "-6" arrives as "-6"; "--fast"/"--best" as themselves. */
  if (g_str_equal (option_name, "--fast"))
    opt_level = 1;
  else if (g_str_equal (option_name, "--best"))
    opt_level = 9;
  else
    opt_level = option_name[strlen (option_name) - 1] - '0';
  return TRUE;
}

#define LEVEL_ENTRY(n, c)                                                                          \
  {                                                                                                \
    "level-" #n, c, G_OPTION_FLAG_NO_ARG | G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_CALLBACK,            \
        (gpointer) set_level, NULL, NULL                                                           \
  }

static const GOptionEntry entries[] = {
  LEVEL_ENTRY (1, '1'),
  LEVEL_ENTRY (2, '2'),
  LEVEL_ENTRY (3, '3'),
  LEVEL_ENTRY (4, '4'),
  LEVEL_ENTRY (5, '5'),
  LEVEL_ENTRY (6, '6'),
  LEVEL_ENTRY (7, '7'),
  LEVEL_ENTRY (8, '8'),
  LEVEL_ENTRY (9, '9'),
  { "fast", 0, G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK, (gpointer) set_level,
    N_ ("Compress faster (-1); -1 … -9 set the level, default 6"), NULL },
  { "best", 0, G_OPTION_FLAG_NO_ARG, G_OPTION_ARG_CALLBACK, (gpointer) set_level,
    N_ ("Compress better (-9)"), NULL },
  { "processes", 'p', 0, G_OPTION_ARG_INT, &opt_processes,
    N_ ("Compress with N threads (default: the number of CPUs)"), "N" },
  { "blocksize", 'b', 0, G_OPTION_ARG_INT, &opt_blocksize_kib,
    N_ ("Compress blocks of KIB kibibytes (default 128, at least 32)"), "KIB" },
  { "stdout", 'c', 0, G_OPTION_ARG_NONE, &opt_stdout,
    N_ ("Write to standard output, keep the input files"), NULL },
  { "keep", 'k', 0, G_OPTION_ARG_NONE, &opt_keep, N_ ("Keep the input files"), NULL },
  { "force", 'f', 0, G_OPTION_ARG_NONE, &opt_force,
    N_ ("Overwrite existing output files; write to a terminal"), NULL },
  { "quiet", 'q', 0, G_OPTION_ARG_NONE, &opt_quiet, N_ ("Print no warnings"), NULL },
  { "verbose", 'v', 0, G_OPTION_ARG_NONE, &opt_verbose,
    N_ ("Print the name and ratio of each file"), NULL },
  { "progress", 0, 0, G_OPTION_ARG_NONE, &opt_progress,
    N_ ("Show a progress bar on standard error (default when it is a terminal and the size is "
        "known)"),
    NULL },
  { "no-progress", 0, 0, G_OPTION_ARG_NONE, &opt_no_progress, N_ ("Never show a progress bar"),
    NULL },
  { "demo", 0, 0, G_OPTION_ARG_NONE, &opt_demo,
    N_ ("Compress a built-in input, verify it and print a summary"), NULL },
  { "version", 'V', 0, G_OPTION_ARG_NONE, &opt_version, N_ ("Print the version"), NULL },
  { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_files, NULL, N_ ("[FILE…]") },
  { NULL }
};

/* --- compression of one block, in a pool thread --- */

typedef struct
{
  GBytes *data;
  GBytes *dict; /* nullable: the previous block */
  int level;
} Block;

typedef struct
{
  guint8 *out;
  gsize out_len;
  gsize in_len;
  guint32 crc;
} Compressed;

static void
block_free (gpointer data)
{
  Block *block = data;

  g_bytes_unref (block->data);
  g_clear_pointer (&block->dict, g_bytes_unref);
  g_free (block);
}

static void
compressed_free (gpointer data)
{
  Compressed *compressed = data;

  g_free (compressed->out);
  g_free (compressed);
}

typedef struct
{
  z_stream strm;
  int level;
} Deflater;

static void
deflater_free (gpointer data)
{
  Deflater *deflater = data;

  deflateEnd (&deflater->strm);
  g_free (deflater);
}

/* One deflate state per pool thread, reset for every block. */
static GPrivate thread_deflater = G_PRIVATE_INIT (deflater_free);

static z_stream *
get_deflater (int level)
{
  Deflater *deflater = g_private_get (&thread_deflater);

  if (deflater != NULL && deflater->level != level)
    {
      g_private_replace (&thread_deflater, NULL);
      deflater = NULL;
    }
  if (deflater == NULL)
    {
      deflater = g_new0 (Deflater, 1);
      deflater->level = level;
      /* Raw deflate: the gzip header and trailer are the writer's. */
      if (deflateInit2 (&deflater->strm, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        g_error ("deflateInit2 failed: out of memory");
      g_private_set (&thread_deflater, deflater);
    }
  else
    deflateReset (&deflater->strm);

  return &deflater->strm;
}

static gpointer
compress_block (GCancellable *cancellable, gpointer data, GError **error)
{
  Block *block = data;
  gsize in_len;
  const guint8 *in = g_bytes_get_data (block->data, &in_len);
  z_stream *strm = get_deflater (block->level);
  Compressed *compressed = g_new0 (Compressed, 1);
  gsize cap;
  int ret;

  if (block->dict != NULL)
    {
      gsize dict_len;
      const guint8 *dict = g_bytes_get_data (block->dict, &dict_len);

      if (dict_len > DICT_SIZE)
        {
          dict += dict_len - DICT_SIZE;
          dict_len = DICT_SIZE;
        }
      deflateSetDictionary (strm, dict, (uInt) dict_len);
    }

  /* The bound covers Z_FINISH; a sync flush adds at most a few bytes. */
  cap = deflateBound (strm, in_len) + 64;
  compressed->out = g_malloc (cap);
  strm->next_in = (Bytef *) in;
  strm->avail_in = (uInt) in_len;
  strm->next_out = compressed->out;
  strm->avail_out = (uInt) cap;
  for (;;)
    {
      ret = deflate (strm, Z_SYNC_FLUSH);
      if (ret != Z_OK && ret != Z_BUF_ERROR)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, _ ("Compression failed: %s"),
                       strm->msg != NULL ? strm->msg : _ ("zlib error"));
          compressed_free (compressed);
          return NULL;
        }
      if (strm->avail_in == 0 && strm->avail_out > 0)
        break;
      /* Never with deflateBound's margin, but be exact rather than sorry. */
      compressed->out = g_realloc (compressed->out, cap * 2);
      strm->next_out = compressed->out + cap;
      strm->avail_out = (uInt) cap;
      cap *= 2;
    }
  compressed->out_len = cap - strm->avail_out;
  compressed->in_len = in_len;
  compressed->crc = (guint32) crc32 (crc32 (0, NULL, 0), in, (uInt) in_len);

  return compressed;
}

/* --- the writer, the one blocking consumer thread --- */

typedef struct
{
  GOutputStream *out;
  guint8 header[64];
  gsize header_len;
  guint64 in_bytes;  /* atomic: read by the progress bar */
  guint64 out_bytes; /* written */
} Writer;

static void
put_le32 (guint8 *p, guint32 v)
{
  p[0] = v & 0xff;
  p[1] = (v >> 8) & 0xff;
  p[2] = (v >> 16) & 0xff;
  p[3] = (v >> 24) & 0xff;
}

/* Returns the Writer itself on success (not owned by the result). */
static gpointer
write_blocks (SluiceConsumerator *blocks, gpointer data, GError **error)
{
  Writer *writer = data;
  guint32 crc = (guint32) crc32 (0, NULL, 0);
  guint64 total = 0;
  gpointer item;
  /* An empty final block with fixed codes ends the deflate stream. */
  static const guint8 final_block[2] = { 0x03, 0x00 };
  guint8 trailer[8];

  if (!g_output_stream_write_all (writer->out, writer->header, writer->header_len, NULL, NULL,
                                  error))
    return NULL;
  writer->out_bytes = writer->header_len;

  while (sluice_consumerator_next (blocks, &item, error))
    {
      Compressed *compressed = item;
      gboolean ok = g_output_stream_write_all (writer->out, compressed->out, compressed->out_len,
                                               NULL, NULL, error);

      crc = (guint32) crc32_combine (crc, compressed->crc, (z_off_t) compressed->in_len);
      total += compressed->in_len;
      writer->out_bytes += compressed->out_len;
      __atomic_store_n (&writer->in_bytes, total, __ATOMIC_RELAXED);
      compressed_free (compressed);
      if (!ok)
        return NULL;
    }
  if (*error != NULL)
    return NULL;

  put_le32 (trailer, crc);
  put_le32 (trailer + 4, (guint32) (total & 0xffffffffu));
  if (!g_output_stream_write_all (writer->out, final_block, sizeof final_block, NULL, NULL,
                                  error) ||
      !g_output_stream_write_all (writer->out, trailer, sizeof trailer, NULL, NULL, error) ||
      !g_output_stream_flush (writer->out, NULL, error))
    return NULL;
  writer->out_bytes += sizeof final_block + sizeof trailer;

  return writer;
}

/* --- one compression: reader on the main loop, producer, writer --- */

typedef struct
{
  SluiceTaskQueue *queue;
  SluiceOrderedItemProducer *producer;
  GInputStream *in;
  GBytes *previous;
  gsize blocksize;
  int level;
  GSource *ready_source;
  guint8 *buffer; /* of the read in flight */
  GCancellable *cancellable;
  Writer writer;
  GMainLoop *loop;
  GError *error;
  gboolean stop_called;
  gboolean done;
  /* progress */
  guint64 size_hint; /* 0 when unknown */
  gint64 started_us;
  guint progress_id;
} Job;

static Job *current_job;
static gboolean interrupted;

static void read_next (Job *job);
static void job_stop (Job *job);

static void
fail_slot_with (SluiceSlot *slot, gpointer data)
{
  sluice_slot_fail (slot, g_error_copy (data));
}

static gboolean
on_ready (gpointer data)
{
  Job *job = data;

  g_clear_pointer (&job->ready_source, g_source_destroy);
  read_next (job);
  return G_SOURCE_REMOVE;
}

static void
on_stopped (GObject *source, GAsyncResult *result, gpointer data)
{
  Job *job = data;
  GError *error = NULL;

  sluice_ordered_item_producer_stop_finish (job->producer, result, &error);
  if (error != NULL && job->error == NULL)
    job->error = error;
  else
    g_clear_error (&error);
  job->done = TRUE;
  g_main_loop_quit (job->loop);
}

static void
job_stop (Job *job)
{
  if (job->stop_called)
    return;
  job->stop_called = TRUE;
  sluice_ordered_item_producer_stop_async (job->producer, NULL, on_stopped, job);
}

static void
on_read (GObject *source, GAsyncResult *result, gpointer data)
{
  Job *job = data;
  guint8 *buffer = g_steal_pointer (&job->buffer);
  GError *error = NULL;
  gsize n = 0;

  if (!g_input_stream_read_all_finish (G_INPUT_STREAM (source), result, &n, &error))
    {
      /* A read error takes its place in the output order: the writer stops
       * there and the stop reports it. */
      g_free (buffer);
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        sluice_ordered_item_producer_produce_item (job->producer, fail_slot_with, error,
                                                   (GDestroyNotify) g_error_free, NULL, NULL, NULL);
      else
        g_error_free (error);
      job_stop (job);
      return;
    }

  if (n > 0)
    {
      g_autoptr (GBytes) chunk = g_bytes_new_take (buffer, n);

      /* One item per block; a read brings READ_BLOCKS of them, which
       * spares the reader thread hops and main-loop turns. */
      for (gsize offset = 0; offset < n; offset += job->blocksize)
        {
          Block *block = g_new0 (Block, 1);

          block->data = g_bytes_new_from_bytes (chunk, offset, MIN (job->blocksize, n - offset));
          block->dict = job->previous != NULL ? g_bytes_ref (job->previous) : NULL;
          block->level = job->level;
          g_clear_pointer (&job->previous, g_bytes_unref);
          job->previous = g_bytes_ref (block->data);
          sluice_ordered_item_producer_produce_item_in_thread (job->producer, compress_block, block,
                                                               block_free, G_PRIORITY_DEFAULT, NULL,
                                                               NULL, NULL);
        }
    }
  else
    g_free (buffer);

  /* read_all reads short only at the end of the input. */
  if (n < READ_BLOCKS * job->blocksize || interrupted)
    {
      g_clear_pointer (&job->previous, g_bytes_unref);
      job_stop (job);
      return;
    }
  read_next (job);
}

static void
read_next (Job *job)
{
  /* The writer failed or a stop came: reading on would be wasted. */
  if (sluice_ordered_item_producer_is_closed (job->producer))
    {
      g_clear_pointer (&job->previous, g_bytes_unref);
      job_stop (job);
      return;
    }

  /* Flow control: while the window is full, wait for the producer. */
  if (!sluice_ordered_item_producer_is_ready (job->producer))
    {
      job->ready_source = sluice_ordered_item_producer_create_ready_source (job->producer, NULL);
      g_source_set_callback (job->ready_source, on_ready, job, NULL);
      g_source_attach (job->ready_source, NULL);
      g_source_unref (job->ready_source);
      return;
    }

  job->buffer = g_malloc (READ_BLOCKS * job->blocksize);
  g_input_stream_read_all_async (job->in, job->buffer, READ_BLOCKS * job->blocksize,
                                 G_PRIORITY_DEFAULT, job->cancellable, on_read, job);
}

static void
format_size (char *buf, gsize len, guint64 bytes)
{
  g_autofree char *s = g_format_size (bytes);

  g_strlcpy (buf, s, len);
}

static gboolean
show_progress (gpointer data)
{
  Job *job = data;
  guint64 done = __atomic_load_n (&job->writer.in_bytes, __ATOMIC_RELAXED);
  double elapsed = (g_get_monotonic_time () - job->started_us) / 1e6;
  double rate = elapsed > 0 ? done / elapsed : 0;
  double fraction = job->size_hint > 0 ? MIN (1.0, (double) done / job->size_hint) : 0;
  char done_s[32], rate_s[32], eta_s[32] = "--:--";
  char bar[31];
  int filled = (int) (fraction * 30);

  format_size (done_s, sizeof done_s, done);
  format_size (rate_s, sizeof rate_s, (guint64) rate);
  if (rate > 0 && job->size_hint > done)
    {
      int eta = (int) ((job->size_hint - done) / rate);

      g_snprintf (eta_s, sizeof eta_s, "%d:%02d", eta / 60, eta % 60);
    }
  memset (bar, '=', filled);
  memset (bar + filled, ' ', 30 - filled);
  bar[30] = '\0';
  fputc ('\r', stderr);
  /* TRANSLATORS: progress: bar, percent, bytes done, rate, time left */
  fprintf (stderr, _ ("[%s] %3d%% %s %s/s ETA %s "), bar, (int) (fraction * 100), done_s, rate_s,
           eta_s);
  fflush (stderr);
  return G_SOURCE_CONTINUE;
}

/* Compresses @in to @out with the header @header. Returns whether it
 * worked; the totals are in job->writer. */
static gboolean
compress_stream (Job *job, GError **error)
{
  job->cancellable = g_cancellable_new ();
  job->loop = g_main_loop_new (NULL, FALSE);
  /* A window of a few blocks per thread keeps the pool busy while the
   * writer writes; memory is bounded by it: window × (block + output). */
  job->producer = sluice_ordered_item_producer_new (
      job->queue, MAX (4 * READ_BLOCKS, 4 * sluice_task_queue_get_max_threads (job->queue)),
      compressed_free);
  /* The writer does little per block: let it sleep through a run of
   * blocks (20 ms at most) instead of waking every millisecond, which
   * gives the compressing threads the cores: ~3x fewer context switches. */
  sluice_ordered_item_producer_set_wake_latency (job->producer, 20000);
  job->started_us = g_get_monotonic_time ();
  current_job = job;

  sluice_ordered_item_producer_start (job->producer, write_blocks, &job->writer, NULL, NULL);
  /* A bar needs a size; --progress asks for bytes and rate without one. */
  if (opt_progress && !opt_no_progress && (job->size_hint > 0 || opt_progress_explicit))
    job->progress_id = g_timeout_add (200, show_progress, job);
  read_next (job);
  if (!job->done)
    g_main_loop_run (job->loop);

  if (job->progress_id != 0)
    {
      show_progress (job);
      fputc ('\n', stderr);
      g_source_remove (job->progress_id);
    }
  current_job = NULL;
  g_cancellable_cancel (job->cancellable);
  if (job->ready_source != NULL)
    g_source_destroy (job->ready_source);
  g_clear_object (&job->producer);
  g_clear_object (&job->cancellable);
  g_clear_pointer (&job->loop, g_main_loop_unref);

  if (job->error != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&job->error));
      return FALSE;
    }
  return TRUE;
}

static gboolean
on_sigint (gpointer data)
{
  interrupted = TRUE;
  if (current_job != NULL)
    {
      /* A read blocked on a slow input is not waited for: stop now. */
      g_cancellable_cancel (current_job->cancellable);
      sluice_push_producer_stop_producing (SLUICE_PUSH_PRODUCER (current_job->producer));
      job_stop (current_job);
    }
  return G_SOURCE_CONTINUE;
}

/* The gzip header: magic, deflate, flags, mtime, extra flags, OS (Unix),
 * and the original name when there is one. */
static void
make_header (Writer *writer, const char *name, guint32 mtime, int level)
{
  guint8 *h = writer->header;
  gsize name_len = name != NULL ? MIN (strlen (name), sizeof writer->header - 11) : 0;

  h[0] = 0x1f;
  h[1] = 0x8b;
  h[2] = 8;
  h[3] = name_len > 0 ? 0x08 : 0; /* FNAME */
  put_le32 (h + 4, mtime);
  h[8] = level == 9 ? 2 : level == 1 ? 4 : 0;
  h[9] = 3;
  writer->header_len = 10;
  if (name_len > 0)
    {
      memcpy (h + 10, name, name_len);
      h[10 + name_len] = 0;
      writer->header_len += name_len + 1;
    }
}

static SluiceTaskQueue *
make_queue (void)
{
  return sluice_task_queue_new (opt_processes > 0 ? (guint) opt_processes : 0);
}

/* --- files --- */

static void warn (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

static void
warn (const char *fmt, ...)
{
  va_list args;

  fputs ("sluice-gzip: ", stderr);
  va_start (args, fmt);
  vfprintf (stderr, fmt, args);
  va_end (args);
  fputc ('\n', stderr);
}

static double
ratio_percent (guint64 in, guint64 out)
{
  return in > 0 ? 100.0 * (1.0 - (double) out / (double) in) : 0.0;
}

static int
compress_to_stdout (SluiceTaskQueue *queue,
                    GInputStream *in,
                    const char *name,
                    guint32 mtime,
                    guint64 size_hint,
                    const char *label)
{
  Job job = { 0 };
  g_autoptr (GError) error = NULL;
  g_autoptr (GOutputStream) out = g_unix_output_stream_new (STDOUT_FILENO, FALSE);

  job.queue = queue;
  job.in = in;
  job.blocksize = (gsize) opt_blocksize_kib * 1024;
  job.level = opt_level;
  job.size_hint = size_hint;
  job.writer.out = out;
  make_header (&job.writer, name, mtime, opt_level);
  if (!compress_stream (&job, &error))
    {
      if (interrupted)
        warn ("%s", _ ("Interrupted"));
      else
        warn ("%s: %s", label, error->message);
      return interrupted ? EXIT_INTERRUPTED : EXIT_ERROR;
    }
  if (opt_verbose)
    fprintf (stderr, "%s:\t%5.1f%%\n", label,
             ratio_percent (job.writer.in_bytes, job.writer.out_bytes));
  return EXIT_OK;
}

static int
compress_file (SluiceTaskQueue *queue, const char *path)
{
  g_autoptr (GFile) file = g_file_new_for_commandline_arg (path);
  g_autoptr (GFileInfo) info = NULL;
  g_autoptr (GFileInputStream) in = NULL;
  g_autoptr (GError) error = NULL;
  g_autofree char *out_path = NULL;
  g_autofree char *tmp_path = NULL;
  g_autofree char *dir = NULL;
  g_autofree char *base = NULL;
  g_autoptr (GOutputStream) out = NULL;
  Job job = { 0 };
  struct stat st;
  int fd;

  info = g_file_query_info (file, G_FILE_ATTRIBUTE_STANDARD_TYPE "," G_FILE_ATTRIBUTE_STANDARD_SIZE,
                            G_FILE_QUERY_INFO_NONE, NULL, &error);
  if (info == NULL)
    {
      warn ("%s: %s", path, error->message);
      return EXIT_ERROR;
    }
  if (g_file_info_get_file_type (info) == G_FILE_TYPE_DIRECTORY)
    {
      warn (_ ("%s: is a directory, not compressed"), path);
      return EXIT_ERROR;
    }
  if (g_str_has_suffix (path, ".gz") && !opt_stdout && !opt_force)
    {
      warn (_ ("%s: already has the .gz suffix, not compressed"), path);
      return EXIT_ERROR;
    }
  in = g_file_read (file, NULL, &error);
  if (in == NULL)
    {
      warn ("%s: %s", path, error->message);
      return EXIT_ERROR;
    }
  if (fstat (g_file_descriptor_based_get_fd (G_FILE_DESCRIPTOR_BASED (in)), &st) != 0)
    memset (&st, 0, sizeof st);

  base = g_path_get_basename (path);
  if (opt_stdout)
    return compress_to_stdout (queue, G_INPUT_STREAM (in), base, (guint32) st.st_mtime,
                               (guint64) st.st_size, path);

  out_path = g_strconcat (path, ".gz", NULL);
  if (!opt_force && g_file_test (out_path, G_FILE_TEST_EXISTS | G_FILE_TEST_IS_SYMLINK))
    {
      warn (_ ("%s: already exists, not overwritten (use -f to overwrite)"), out_path);
      return EXIT_ERROR;
    }

  /* Written to a temporary file beside it, renamed on success only. */
  dir = g_path_get_dirname (out_path);
  {
    g_autofree char *out_base = g_path_get_basename (out_path);
    g_autofree char *tmp_name = g_strdup_printf (".%s.XXXXXX", out_base);

    tmp_path = g_build_filename (dir, tmp_name, NULL);
  }
  fd = g_mkstemp_full (tmp_path, O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0)
    {
      int saved = errno;

      warn ("%s: %s", out_path, g_strerror (saved));
      return EXIT_ERROR;
    }
  out = g_unix_output_stream_new (fd, TRUE);

  job.queue = queue;
  job.in = G_INPUT_STREAM (in);
  job.blocksize = (gsize) opt_blocksize_kib * 1024;
  job.level = opt_level;
  job.size_hint = (guint64) st.st_size;
  job.writer.out = out;
  make_header (&job.writer, base, (guint32) st.st_mtime, opt_level);

  if (!compress_stream (&job, &error) || !g_output_stream_close (out, NULL, &error))
    {
      g_unlink (tmp_path);
      if (interrupted)
        warn ("%s", _ ("Interrupted"));
      else
        warn ("%s: %s", path, error->message);
      return interrupted ? EXIT_INTERRUPTED : EXIT_ERROR;
    }

  /* The mode and times of the input, as gzip keeps them. */
  {
    struct timespec times[2] = { st.st_atim, st.st_mtim };

    if (g_chmod (tmp_path, st.st_mode & 07777) != 0 ||
        utimensat (AT_FDCWD, tmp_path, times, 0) != 0)
      {
        if (!opt_quiet)
          warn (_ ("%s: could not keep the mode or times: %s"), out_path, g_strerror (errno));
      }
  }
  if (g_rename (tmp_path, out_path) != 0)
    {
      int saved = errno;

      g_unlink (tmp_path);
      warn ("%s: %s", out_path, g_strerror (saved));
      return EXIT_ERROR;
    }
  if (opt_verbose)
    fprintf (stderr, _ ("%s:\t%5.1f%% -- replaced with %s\n"), path,
             ratio_percent (job.writer.in_bytes, job.writer.out_bytes), out_path);
  if (!opt_keep && g_unlink (path) != 0)
    {
      warn ("%s: %s", path, g_strerror (errno));
      return EXIT_ERROR;
    }
  return EXIT_OK;
}

/* --- the demo --- */

/* Deterministic text-like data: words from a fixed vocabulary in lines of
 * varying length, drawn by a seeded generator (xorshift, so that it does
 * not depend on GLib's GRand algorithm). */
static GBytes *
make_demo_input (gsize size)
{
  static const char *const words[] = {
    "the",     "of",     "and",      "ordered", "producer", "consumer", "thread",   "block",
    "window",  "slot",   "sequence", "buffer",  "GLib",     "main",     "loop",     "context",
    "async",   "result", "write",    "read",    "compress", "deflate",  "stream",   "item",
    "pause",   "resume", "stop",     "error",   "queue",    "task",     "priority", "flow",
    "control", "memory", "bounded",  "order",   "call",     "finished", "asked",    "for",
    "a",       "to",     "in",       "is",      "that",     "it",       "with",     "as",
    "12",      "2026",   "0x1f8b",   "42",      "3.14",     "ok",       "done",     "then",
  };
  guint8 *data = g_malloc (size);
  guint64 x = 0x9e3779b97f4a7c15ull;
  gsize pos = 0, line = 0;

  while (pos < size)
    {
      const char *word;
      gsize len;

      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      word = words[(x >> 11) % G_N_ELEMENTS (words)];
      len = strlen (word);
      if (pos + len + 1 > size)
        break;
      memcpy (data + pos, word, len);
      pos += len;
      line += len + 1;
      data[pos++] = (line > 60 + (x & 15)) ? '\n' : ' ';
      if (data[pos - 1] == '\n')
        line = 0;
    }
  while (pos < size)
    data[pos++] = '\n';

  return g_bytes_new_take (data, size);
}

static gboolean
verify_gzip (const char *path, GBytes *expected, GError **error)
{
  g_autofree char *contents = NULL;
  gsize len;
  gsize expected_len;
  const guint8 *expected_data = g_bytes_get_data (expected, &expected_len);
  g_autofree guint8 *out = g_malloc (expected_len + 1);
  z_stream strm = { 0 };
  int ret;

  if (!g_file_get_contents (path, &contents, &len, error))
    return FALSE;
  if (inflateInit2 (&strm, 16 + MAX_WBITS) != Z_OK)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, _ ("inflateInit2 failed"));
      return FALSE;
    }
  strm.next_in = (Bytef *) contents;
  strm.avail_in = (uInt) len;
  strm.next_out = out;
  strm.avail_out = (uInt) expected_len + 1;
  ret = inflate (&strm, Z_FINISH);
  inflateEnd (&strm);
  if (ret != Z_STREAM_END || strm.total_out != expected_len || strm.avail_in != 0 ||
      memcmp (out, expected_data, expected_len) != 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   _ ("Verification failed: the output does not decompress to the input"));
      return FALSE;
    }
  return TRUE;
}

static int
run_demo (SluiceTaskQueue *queue)
{
  gsize size = 48 * 1024 * 1024;
  g_autoptr (GBytes) input = make_demo_input (size);
  g_autoptr (GInputStream) in = g_memory_input_stream_new_from_bytes (input);
  g_autoptr (GError) error = NULL;
  g_autofree char *tmp_path = NULL;
  g_autoptr (GOutputStream) out = NULL;
  Job job = { 0 };
  gint64 start, end;
  double seconds;
  int fd;

  fd = g_file_open_tmp ("sluice-gzip-demo-XXXXXX.gz", &tmp_path, &error);
  if (fd < 0)
    {
      warn ("%s", error->message);
      return EXIT_ERROR;
    }
  out = g_unix_output_stream_new (fd, TRUE);
  job.queue = queue;
  job.in = in;
  job.blocksize = (gsize) opt_blocksize_kib * 1024;
  job.level = opt_level;
  job.size_hint = size;
  job.writer.out = out;
  make_header (&job.writer, NULL, 0, opt_level);

  start = g_get_monotonic_time ();
  if (!compress_stream (&job, &error) || !g_output_stream_close (out, NULL, &error))
    {
      g_unlink (tmp_path);
      warn ("%s", interrupted ? _ ("Interrupted") : error->message);
      return interrupted ? EXIT_INTERRUPTED : EXIT_ERROR;
    }
  end = g_get_monotonic_time ();
  seconds = (end - start) / 1e6;

  if (!verify_gzip (tmp_path, input, &error))
    {
      g_unlink (tmp_path);
      warn ("%s", error->message);
      return EXIT_ERROR;
    }
  g_unlink (tmp_path);

  printf (_ ("sluice-gzip demo: built-in text-like input, compressed and verified with zlib\n"));
  /* Not G_GUINT64_FORMAT: xgettext cannot see through the macro. */
  printf (_ ("  size in      %12llu bytes\n"), (unsigned long long) size);
  printf (_ ("  size out     %12llu bytes\n"), (unsigned long long) job.writer.out_bytes);
  printf (_ ("  ratio        %12.2f%% saved\n"), ratio_percent (size, job.writer.out_bytes));
  printf (_ ("  time         %12.3f s\n"), seconds);
  printf (_ ("  throughput   %12.1f MB/s\n"), size / seconds / 1e6);
  printf (_ ("  threads      %12u (level %d, blocks of %d KiB)\n"),
          sluice_task_queue_get_max_threads (queue), opt_level, opt_blocksize_kib);
  printf (_ ("  verified     decompresses to the input byte for byte\n"));
  return EXIT_OK;
}

int
main (int argc, char *argv[])
{
  g_autoptr (GOptionContext) context = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (SluiceTaskQueue) queue = NULL;
  int status = EXIT_OK;

  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  context = g_option_context_new (NULL);
  g_option_context_set_translation_domain (context, GETTEXT_PACKAGE);
  g_option_context_set_summary (
      context, _ ("Compress FILEs (or standard input) in parallel into gzip format, in order.\n"
                  "With no FILE and standard input a terminal, or with --demo, compress a "
                  "built-in input and print a summary."));
  g_option_context_add_main_entries (context, entries, GETTEXT_PACKAGE);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      warn ("%s", error->message);
      return EXIT_ERROR;
    }
  if (opt_version)
    {
      printf ("sluice-gzip %s (Sluice %s, zlib %s)\n", SLUICE_VERSION_S, SLUICE_VERSION_S,
              zlibVersion ());
      return EXIT_OK;
    }
  if (opt_processes < 0 || opt_processes > 1024)
    {
      warn (_ ("-p needs a number of threads from 1 to 1024"));
      return EXIT_ERROR;
    }
  if (opt_blocksize_kib < 32 || opt_blocksize_kib > 512 * 1024)
    {
      warn (_ ("-b needs a block size from 32 to 524288 KiB"));
      return EXIT_ERROR;
    }
  if (opt_quiet)
    opt_verbose = FALSE;

  g_unix_signal_add (SIGINT, on_sigint, NULL);
  g_unix_signal_add (SIGTERM, on_sigint, NULL);
  queue = make_queue ();

  if (opt_demo || ((opt_files == NULL || opt_files[0] == NULL) && isatty (STDIN_FILENO)))
    {
      if (!opt_progress)
        opt_no_progress = TRUE;
      return run_demo (queue);
    }

  opt_progress_explicit = opt_progress;
  if (!opt_progress && !opt_no_progress && isatty (STDERR_FILENO))
    opt_progress = TRUE; /* shown only when the size is known */

  if (opt_files == NULL || opt_files[0] == NULL || g_str_equal (opt_files[0], "-"))
    {
      g_autoptr (GInputStream) in = g_unix_input_stream_new (STDIN_FILENO, FALSE);

      if (isatty (STDOUT_FILENO) && !opt_force)
        {
          warn (_ ("compressed data not written to a terminal (use -f to force)"));
          return EXIT_ERROR;
        }
      return compress_to_stdout (queue, in, NULL, 0, 0, _ ("(stdin)"));
    }

  if (opt_stdout && isatty (STDOUT_FILENO) && !opt_force)
    {
      warn (_ ("compressed data not written to a terminal (use -f to force)"));
      return EXIT_ERROR;
    }
  for (char **file = opt_files; *file != NULL && !interrupted; file++)
    {
      int file_status = compress_file (queue, *file);

      if (file_status == EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED;
      if (file_status != EXIT_OK)
        status = file_status;
    }
  g_strfreev (opt_files);
  return status;
}
