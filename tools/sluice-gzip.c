/* sluice-gzip.c: a parallel gzip on the ordered item producer
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The case Sluice exists for, on the library's stream adapters: a
 * SluiceInputStreamProducer reads the input with GIO asynchronous reads on
 * the main loop (a regular file: a thread of its own with blocking reads,
 * see file_reader), one block per item, and deflates each block in the task
 * queue with the previous block's last 32 KiB as its dictionary; a
 * SluiceOutputStreamConsumer, ONE writer thread, writes the compressed
 * blocks in order. When the writer or the pool falls behind, the producer's
 * window pauses the reader, so memory stays bounded whatever the input.
 *
 * The output is one gzip member: each block ends with a sync flush so that
 * the blocks concatenate, an empty final block closes the deflate stream,
 * and the CRC-32 of the whole input is combined in input order from the
 * blocks' CRCs with zlib's crc32_combine(). With -i the blocks have no
 * dictionary and an index member follows (see "-i" below).
 *
 * Decompression (-d, -t; sluice-gunzip, sluice-zcat) reads the compressed
 * input the same way into a producer whose consumer thread inflates (the
 * one sequential part); its blocks take their CRC in the task queue,
 * checked against each member's trailer, and a writer thread writes them
 * in order. A file with an index has its blocks inflated in parallel.
 * Options, messages and exit statuses are gzip's.
 *
 * With --redis the blocks are deflated by remote sluice-worker processes
 * serving the module sluice-gzip-deflate, through Redis, as named calls
 * of the producer (see "--redis" below and doc/remote-workers.md).
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
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <glib-unix.h>
#include <libdeflate.h>
#include <sluice/sluice.h>
#include <zlib.h>

#include "gzip-deflate-block.h"

#define EXIT_OK 0
#define EXIT_ERROR 1
/* A compression stopped by a signal: main() ends by that signal, as gzip
 * does, so the status is 128 + its number. */
#define EXIT_INTERRUPTED (-1)

/* --- options --- */

static int opt_level = 6;
static int opt_processes = -1; /* -1: not given, the number of CPUs */
static int opt_blocksize_kib = 128;
static gboolean opt_stdout;
static gboolean opt_decompress;
static gboolean opt_test;
static gboolean opt_list;
static gboolean opt_recursive;
static char *opt_suffix;
static gboolean opt_no_name;
static gboolean opt_name;
static gboolean opt_independent;
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
static char *opt_redis;                  /* --redis: deflate in remote sluice-worker processes */
static char *opt_redis_series;           /* their series, "gzip" by default */
static double opt_redis_reconnect_s = 5; /* --redis-reconnect-timeout */
static char *opt_deflate;                /* --deflate: zlib, libdeflate or auto */
static enum { DEFLATE_ZLIB, DEFLATE_LIBDEFLATE, DEFLATE_AUTO } deflate_with;

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
    N_ ("Work with N threads (default: the number of CPUs)"), "N" },
  { "blocksize", 'b', 0, G_OPTION_ARG_INT, &opt_blocksize_kib,
    N_ ("Compress blocks of KIB kibibytes (default 128, at least 32)"), "KIB" },
  { "stdout", 'c', 0, G_OPTION_ARG_NONE, &opt_stdout,
    N_ ("Write to standard output, keep the input files"), NULL },
  { "decompress", 'd', 0, G_OPTION_ARG_NONE, &opt_decompress,
    N_ ("Decompress (as sluice-gunzip does; sluice-zcat is -d -c)"), NULL },
  { "test", 't', 0, G_OPTION_ARG_NONE, &opt_test, N_ ("Test the integrity of compressed FILEs"),
    NULL },
  { "list", 'l', 0, G_OPTION_ARG_NONE, &opt_list,
    N_ ("List compressed FILEs: sizes, ratio, name (as gzip -l)"), NULL },
  { "recursive", 'r', 0, G_OPTION_ARG_NONE, &opt_recursive,
    N_ ("Work on the files in directories, recursively"), NULL },
  { "suffix", 'S', 0, G_OPTION_ARG_STRING, &opt_suffix,
    N_ ("Use the suffix SUF on compressed files (default .gz)"), N_ ("SUF") },
  { "no-name", 'n', 0, G_OPTION_ARG_NONE, &opt_no_name,
    N_ ("Do not store the name and time; with -d, do not restore them (the default)"), NULL },
  { "name", 'N', 0, G_OPTION_ARG_NONE, &opt_name,
    N_ ("Store the name and time (the default); with -d, restore them"), NULL },
  { "independent", 'i', 0, G_OPTION_ARG_NONE, &opt_independent,
    N_ ("Compress blocks independently (as pigz -i), with an index for a parallel -d"), NULL },
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
  { "deflate", 0, 0, G_OPTION_ARG_STRING, &opt_deflate,
    N_ ("Deflate with ENGINE: auto (the default; zlib with --redis: libdeflate where a probe "
        "block every 16 or 64 says it is at most 0.5 % larger than zlib, else zlib), zlib (each "
        "block with the last 32 KiB of the one before as its dictionary) or libdeflate (faster, "
        "blocks without a dictionary as with -i; one gzip member all the same)"),
    N_ ("ENGINE") },
  { "redis", 0, 0, G_OPTION_ARG_STRING, &opt_redis,
    N_ ("Deflate the blocks in sluice-worker processes serving the module sluice-gzip-deflate "
        "through Redis (redis://[:PASSWORD@]HOST[:PORT][/DB] or unix:PATH)"),
    N_ ("URL") },
  { "redis-series", 0, 0, G_OPTION_ARG_STRING, &opt_redis_series,
    N_ ("With --redis: the series the workers serve (default gzip)"), N_ ("NAME") },
  { "redis-reconnect-timeout", 0, 0, G_OPTION_ARG_DOUBLE, &opt_redis_reconnect_s,
    N_ ("With --redis: how long to try to reach Redis again once it is lost before the file "
        "fails (default 5; 0: at once)"),
    N_ ("SECONDS") },
  { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_files, NULL, N_ ("[FILE…]") },
  { NULL }
};

/* --- compression of one block, in a pool thread --- */

/* The CRC-32 and length of the data, folded in order from the blocks'
 * CRCs, which the pool threads compute in any order: a block that comes
 * early waits in @early (at most a window of them). Compression folds one
 * member; decompression checks each member against its trailer at its last
 * block. */
typedef struct
{
  guint32 crc;
  gsize length;
  gboolean member_end; /* the last block of a member: check it */
  guint32 want_crc;    /* from the member's trailer */
  guint32 want_length;
} BlockCheck;

typedef struct
{
  GMutex lock;
  guint64 next;      /* the index of the block to fold next */
  guint32 crc;       /* of the member so far */
  guint64 length;    /* of the member so far */
  GHashTable *early; /* index (guint64 *) -> BlockCheck */
  guint32 all_crc;   /* of all the blocks folded, across members (-l) */
  int failed;        /* a GzError, or 0 */
} CheckFold;

/* What is wrong with a compressed input, in gzip's words. */
typedef enum
{
  GZ_ERROR_NOT_GZIP = 1,
  GZ_ERROR_TRUNCATED,
  GZ_ERROR_FORMAT,
  GZ_ERROR_CRC,
  GZ_ERROR_LENGTH,
} GzError;

#define GZ_ERROR (gz_error_quark ())
static GQuark gz_error_quark (void);
G_DEFINE_QUARK (sluice - gzip - error - quark, gz_error)

static void
set_gz_error (GError **error, GzError code)
{
  const char *message = NULL;

  switch (code)
    {
    case GZ_ERROR_NOT_GZIP:
      message = _ ("not in gzip format");
      break;
    case GZ_ERROR_TRUNCATED:
      message = _ ("unexpected end of file");
      break;
    case GZ_ERROR_FORMAT:
      message = _ ("invalid compressed data--format violated");
      break;
    case GZ_ERROR_CRC:
      message = _ ("invalid compressed data--crc error");
      break;
    case GZ_ERROR_LENGTH:
      message = _ ("invalid compressed data--length error");
      break;
    }
  g_set_error_literal (error, GZ_ERROR, code, message);
}

static void
check_fold_init (CheckFold *fold)
{
  memset (fold, 0, sizeof *fold);
  g_mutex_init (&fold->lock);
  fold->early = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);
}

static void
check_fold_clear (CheckFold *fold)
{
  g_clear_pointer (&fold->early, g_hash_table_unref);
  g_mutex_clear (&fold->lock);
}

/* Folds block @index in; fails when it completes a member whose CRC or
 * length is not its trailer's (and for every block after that). */
static gboolean
check_fold_add (CheckFold *fold, guint64 index, const BlockCheck *block, GError **error)
{
  BlockCheck b = *block;
  BlockCheck *early;

  g_mutex_lock (&fold->lock);
  if (!fold->failed && index != fold->next)
    {
      g_hash_table_insert (fold->early, g_memdup2 (&index, sizeof index),
                           g_memdup2 (block, sizeof *block));
      g_mutex_unlock (&fold->lock);
      return TRUE;
    }
  while (!fold->failed)
    {
      fold->crc = (guint32) crc32_combine (fold->crc, b.crc, (z_off_t) b.length);
      fold->all_crc = (guint32) crc32_combine (fold->all_crc, b.crc, (z_off_t) b.length);
      fold->length += b.length;
      fold->next++;
      if (b.member_end)
        {
          if (fold->crc != b.want_crc)
            fold->failed = GZ_ERROR_CRC;
          else if ((guint32) (fold->length & 0xffffffffu) != b.want_length)
            fold->failed = GZ_ERROR_LENGTH;
          fold->crc = 0;
          fold->length = 0;
        }
      early = g_hash_table_lookup (fold->early, &fold->next);
      if (early == NULL)
        break;
      b = *early;
      g_hash_table_remove (fold->early, &fold->next);
    }
  g_mutex_unlock (&fold->lock);
  if (fold->failed)
    {
      set_gz_error (error, fold->failed);
      return FALSE;
    }
  return TRUE;
}

/* --- --deflate=auto: libdeflate or zlib, chosen block by block ---
 *
 * libdeflate deflates a block in about 0.57 of zlib's time and, block for
 * block, about as small; but it has no preset dictionary, so where a
 * block repeats what the 32 KiB before it said (source text, the same
 * words over and over) it loses what zlib's dictionary finds (4 % on a
 * tar of /usr/include, 9 % on test-gzip's 16-word text; on the bench's
 * text it is 0.2 % smaller). Auto measures instead of guessing:
 *
 * - a *probe* block is deflated both ways and the smaller output kept
 *   (ties: libdeflate's); blocks 0 and 1 are probes (block 0 has no
 *   dictionary either way, block 1 shows what the dictionary is worth);
 * - every other block i follows the last probe at or before i - 16 (block
 *   1 while there is none): libdeflate if that probe's libdeflate output
 *   was at most 0.5 % larger than zlib's, else zlib;
 * - a new probe comes 16 blocks after the last one, or 64 when that
 *   deciding probe's two sizes differed by more than 2 % (a clear case:
 *   fewer probes, whose second deflate is the whole cost of auto).
 *
 * The choice depends on the data and the block size only (not on the
 * threads or their timing): a block waits for the probe it follows if it
 * has not finished, which at the start (blocks 2-17 wait for block 1) and
 * with more than 4 threads (a window of more than 16 blocks) only
 * happens. A probe is always an earlier block, so no thread waits for a
 * task queued after its own (the task queue's rule).
 *
 * Measured (128 KiB blocks, -6, sizes against zlib, CPU against zlib's):
 * bench corpus 0.9982 / 0.65, tar of /usr/include 1.0001 / 1.01, tar of
 * /usr/bin 1.0038 / 0.84, 16-word text 1.0000 / 1.03, random 0.9998 /
 * 0.68. test-gzip checks auto within AUTO_SIZE_BOUND of zlib on text and
 * on the bench corpus. */

#define AUTO_LAG 16         /* a block follows a probe at least this far back */
#define AUTO_PROBE_EVERY 16 /* blocks from one probe to the next */
#define AUTO_PROBE_CLEAR 64 /* … when the last probe was a clear case */

typedef enum
{
  ENGINE_ZLIB,
  ENGINE_LIBDEFLATE,
  ENGINE_PROBE, /* both, the smaller kept */
} Engine;

typedef struct
{
  gsize zlib_size;
  gsize libdeflate_size;
  gboolean done;
} ProbeResult;

typedef struct
{
  GMutex lock;
  GCond cond;
  GByteArray *engines; /* of each block decided so far, an Engine */
  GArray *probes;      /* the indexes of the probes, ascending (guint64) */
  GHashTable *results; /* probe index (guint64 *) -> ProbeResult */
  guint64 blocks[3];   /* how many blocks went each way, by Engine */
} AutoChoice;

static void
auto_choice_init (AutoChoice *choice)
{
  g_mutex_init (&choice->lock);
  g_cond_init (&choice->cond);
  choice->engines = g_byte_array_new ();
  choice->probes = g_array_new (FALSE, FALSE, sizeof (guint64));
  choice->results = g_hash_table_new_full (g_int64_hash, g_int64_equal, g_free, g_free);
  memset (choice->blocks, 0, sizeof choice->blocks);
}

static void
auto_choice_clear (AutoChoice *choice)
{
  if (choice->engines == NULL)
    return;
  g_debug ("--deflate=auto: %" G_GUINT64_FORMAT " blocks with zlib, %" G_GUINT64_FORMAT
           " with libdeflate, %" G_GUINT64_FORMAT " probes",
           choice->blocks[ENGINE_ZLIB], choice->blocks[ENGINE_LIBDEFLATE],
           choice->blocks[ENGINE_PROBE]);
  g_clear_pointer (&choice->engines, g_byte_array_unref);
  g_clear_pointer (&choice->probes, g_array_unref);
  g_clear_pointer (&choice->results, g_hash_table_unref);
  g_cond_clear (&choice->cond);
  g_mutex_clear (&choice->lock);
}

static void
auto_choice_wake (GCancellable *cancellable, gpointer data)
{
  AutoChoice *choice = data;

  g_mutex_lock (&choice->lock);
  g_cond_broadcast (&choice->cond);
  g_mutex_unlock (&choice->lock);
}

/* Under the lock: the engine of the next undecided block, waiting for the
 * probe it follows; FALSE when @cancellable fired first. */
static gboolean
auto_choice_decide_next (AutoChoice *choice, GCancellable *cancellable)
{
  guint64 i = choice->engines->len, last_probe, p = 1;
  ProbeResult *r;
  guint8 engine;
  gboolean clear;
  guint k;

  if (i <= 1)
    engine = ENGINE_PROBE;
  else
    {
      for (k = choice->probes->len; k > 0; k--)
        if (g_array_index (choice->probes, guint64, k - 1) + AUTO_LAG <= i)
          {
            p = MAX (1, g_array_index (choice->probes, guint64, k - 1));
            break;
          }
      r = g_hash_table_lookup (choice->results, &p);
      while (!r->done)
        {
          if (g_cancellable_is_cancelled (cancellable))
            return FALSE;
          g_cond_wait (&choice->cond, &choice->lock);
        }
      last_probe = g_array_index (choice->probes, guint64, choice->probes->len - 1);
      clear = r->libdeflate_size * 50 > r->zlib_size * 51 ||
              r->libdeflate_size * 51 < r->zlib_size * 50;
      if (i - last_probe >= (clear ? AUTO_PROBE_CLEAR : AUTO_PROBE_EVERY))
        engine = ENGINE_PROBE;
      else if (r->libdeflate_size * 200 <= r->zlib_size * 201)
        engine = ENGINE_LIBDEFLATE;
      else
        engine = ENGINE_ZLIB;
    }
  if (engine == ENGINE_PROBE)
    {
      g_array_append_val (choice->probes, i);
      g_hash_table_insert (choice->results, g_memdup2 (&i, sizeof i), g_new0 (ProbeResult, 1));
    }
  g_byte_array_append (choice->engines, &engine, 1);
  choice->blocks[engine]++;
  return TRUE;
}

/* The engine of block @index (deciding the blocks before it first, in
 * order); zlib when @cancellable fired (the output is abandoned). */
static Engine
auto_choice_get (AutoChoice *choice, guint64 index, GCancellable *cancellable)
{
  gulong handler = 0;
  Engine engine = ENGINE_ZLIB;

  if (cancellable != NULL)
    handler = g_cancellable_connect (cancellable, G_CALLBACK (auto_choice_wake), choice, NULL);
  g_mutex_lock (&choice->lock);
  while (choice->engines->len <= index)
    if (!auto_choice_decide_next (choice, cancellable))
      break;
  if (choice->engines->len > index)
    engine = choice->engines->data[index];
  g_mutex_unlock (&choice->lock);
  if (handler != 0)
    g_cancellable_disconnect (cancellable, handler);
  return engine;
}

/* A probe's two sizes, for the blocks that follow it. */
static void
auto_choice_set_result (AutoChoice *choice, guint64 index, gsize zlib_size, gsize libdeflate_size)
{
  ProbeResult *r;

  g_mutex_lock (&choice->lock);
  r = g_hash_table_lookup (choice->results, &index);
  r->zlib_size = zlib_size;
  r->libdeflate_size = libdeflate_size;
  r->done = TRUE;
  g_cond_broadcast (&choice->cond);
  g_mutex_unlock (&choice->lock);
}

/* One compression or decompression. */
typedef struct
{
  /* in */
  SluiceTaskQueue *queue;
  GInputStream *in;
  GOutputStream *out;
  GBytes *header;
  guint64 size_hint; /* 0 when unknown */
  /* out */
  guint64 in_bytes;
  guint64 out_bytes;
  /* while it runs */
  SluiceOrderedItemProducer *producer;
  SluiceInputStreamProducer *reader;
  guint64 bytes_read; /* under fold.lock: compressing a regular file, by its reader thread */
  CheckFold fold;
  AutoChoice choice; /* --deflate=auto */
  GMainLoop *loop;
  GError *error;
  gboolean input_failed; /* the error is the input's, not the output's */
  /* decompression: the reader's producer, whose consumer inflates */
  SluiceOrderedItemProducer *in_producer;
  GError *inflate_error;
  gboolean trailing_garbage;
  gboolean pass_through; /* -d -f to standard output: copy what is not gzip, as gzip */
  char *orig_name;       /* of the first member's header, or NULL */
  guint32 orig_mtime;
  /* -i: the compressed size of each block (guint32), for the index */
  GArray *block_sizes;
  guint64 header_len;
  /* decompression with an index */
  int read_errno; /* atomic: a read of a block failed */
  /* -l of standard input: what it keeps of the compressed data as the
   * inflating thread takes it (the stream is read once) */
  struct _ListRecord *record;
  gint64 started_us;
  guint progress_id;
} Job;

/* The chunk function of the input stream producer: deflates @chunk with
 * the last 32 KiB of @previous as its dictionary, ending with a sync flush
 * so that the blocks concatenate. */
static GBytes *
compress_block (GBytes *chunk,
                GBytes *previous,
                guint64 offset,
                GCancellable *cancellable,
                gpointer data,
                GError **error)
{
  Job *job = data;
  BlockCheck check = { 0 };
  guint64 index = offset / ((guint64) opt_blocksize_kib * 1024);
  gsize in_len;
  const guint8 *in = g_bytes_get_data (chunk, &in_len);
  const guint8 *dict = NULL;
  gsize dict_len = 0, out_len = 0;
  const char *zlib_message = NULL;
  guint8 *out = NULL;
  Engine engine;

  /* -i: no dictionary, so that each block inflates on its own. */
  if (previous != NULL && !opt_independent)
    {
      dict = g_bytes_get_data (previous, &dict_len);
      if (dict_len > GZIP_DICT_SIZE)
        {
          dict += dict_len - GZIP_DICT_SIZE;
          dict_len = GZIP_DICT_SIZE;
        }
    }
  engine = deflate_with == DEFLATE_AUTO         ? auto_choice_get (&job->choice, index, cancellable)
           : deflate_with == DEFLATE_LIBDEFLATE ? ENGINE_LIBDEFLATE
                                                : ENGINE_ZLIB;
  if (engine != ENGINE_LIBDEFLATE)
    out = gzip_deflate_block (opt_level, dict, dict_len, in, in_len, &out_len, &zlib_message);
  if (engine == ENGINE_PROBE)
    {
      gsize zlib_len = out != NULL ? out_len : 0, libdeflate_len = 0;
      guint8 *other =
          gzip_deflate_block_libdeflate (opt_level, in, in_len, &libdeflate_len, &zlib_message);

      /* The sizes are known even when one failed: the block fails then. */
      auto_choice_set_result (&job->choice, index, zlib_len, libdeflate_len);
      if (out != NULL && other != NULL && libdeflate_len <= zlib_len)
        {
          g_free (out);
          out = g_steal_pointer (&other);
          out_len = libdeflate_len;
        }
      else if (other == NULL)
        g_clear_pointer (&out, g_free);
      g_free (other);
    }
  else if (engine == ENGINE_LIBDEFLATE)
    out = gzip_deflate_block_libdeflate (opt_level, in, in_len, &out_len, &zlib_message);
  if (out == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, _ ("Compression failed: %s"),
                   zlib_message != NULL ? zlib_message : _ ("zlib error"));
      return NULL;
    }
  /* Every chunk but the last is a block long: the offset gives the index. */
  check.crc = libdeflate_crc32 (0, in, in_len);
  check.length = in_len;
  check_fold_add (&job->fold, index, &check, NULL);
  if (opt_independent)
    {
      g_mutex_lock (&job->fold.lock);
      if (job->block_sizes->len <= index)
        g_array_set_size (job->block_sizes, (guint) index + 1);
      g_array_index (job->block_sizes, guint32, index) = (guint32) out_len;
      g_mutex_unlock (&job->fold.lock);
    }

  return g_bytes_new_take (out, out_len);
}

/* --- one compression: reader on the main loop, producer, writer thread --- */

static Job *current_job;
static int interrupted; /* the signal that stopped us, or 0 */

/* The temporary output file, for the SIGPIPE handler to remove. */
static char cleanup_path[4096];
static volatile sig_atomic_t cleanup_armed;

static void
put_le32 (guint8 *p, guint32 v)
{
  p[0] = v & 0xff;
  p[1] = (v >> 8) & 0xff;
  p[2] = (v >> 16) & 0xff;
  p[3] = (v >> 24) & 0xff;
}

/* The gzip header: magic, deflate, flags, mtime, extra flags, OS (Unix),
 * and the original name when there is one. */
static GBytes *
make_header (const char *name, guint32 mtime, int level)
{
  guint8 h[64];
  gsize name_len = name != NULL ? MIN (strlen (name), sizeof h - 11) : 0;

  h[0] = 0x1f;
  h[1] = 0x8b;
  h[2] = 8;
  h[3] = name_len > 0 ? 0x08 : 0; /* FNAME */
  put_le32 (h + 4, mtime);
  h[8] = level == 9 ? 2 : level == 1 ? 4 : 0;
  h[9] = 3;
  if (name_len == 0)
    return g_bytes_new (h, 10);
  memcpy (h + 10, name, name_len);
  h[10 + name_len] = 0;
  return g_bytes_new (h, 10 + name_len + 1);
}

static void
job_init (Job *job,
          SluiceTaskQueue *queue,
          GInputStream *in,
          GOutputStream *out,
          const char *name,
          guint32 mtime,
          guint64 size_hint)
{
  memset (job, 0, sizeof *job);
  job->queue = queue;
  job->in = in;
  job->out = out;
  /* -n: neither the name nor the time, as gzip -n. */
  job->header =
      opt_no_name ? make_header (NULL, 0, opt_level) : make_header (name, mtime, opt_level);
  job->size_hint = size_hint;
}

static void
on_stopped (GObject *source, GAsyncResult *result, gpointer data)
{
  Job *job = data;

  sluice_ordered_item_producer_stop_finish (job->producer, result, &job->error);
  g_main_loop_quit (job->loop);
}

static void on_inflated (GObject *source, GAsyncResult *result, gpointer data);

static void
on_read_all (GObject *source, GAsyncResult *result, gpointer data)
{
  Job *job = data;

  g_autoptr (GError) error = NULL;

  /* A read error is an item of the output order too: the stop reports it.
   * A reader stopped by the producer says the output failed (or a signal). */
  if (!sluice_input_stream_producer_read_all_finish (job->reader, result, &error))
    job->input_failed = !g_error_matches (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  /* Decompressing, the reader feeds the inflater's producer first. */
  if (job->in_producer != NULL)
    sluice_ordered_item_producer_stop_async (job->in_producer, NULL, on_inflated, job);
  else
    sluice_ordered_item_producer_stop_async (job->producer, NULL, on_stopped, job);
}

static void
complete_with_bytes (SluiceSlot *slot, gpointer data)
{
  sluice_slot_complete (slot, g_bytes_ref (data));
}

static void
format_size (char *buf, gsize len, guint64 bytes)
{
  g_autofree char *s = g_format_size (bytes);

  g_strlcpy (buf, s, len);
}

/* The bytes read so far: by the stream producer, or by the reader thread
 * of a regular file (file_reader). */
static guint64
job_bytes_read (Job *job)
{
  if (job->reader != NULL)
    return sluice_input_stream_producer_get_bytes_read (job->reader);
  guint64 n;

  g_mutex_lock (&job->fold.lock);
  n = job->bytes_read;
  g_mutex_unlock (&job->fold.lock);
  return n;
}

static gboolean
show_progress (gpointer data)
{
  Job *job = data;
  guint64 done = job_bytes_read (job);
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

static GBytes *make_index (Job *job);

/* After the blocks: an empty final block, the trailer and with -i the
 * index member, unless the job failed; then frees what the compression
 * used and returns whether it worked. */
static gboolean
compress_stream_end (Job *job, GError **error)
{
  guint8 trailer[10] = { 0x03, 0x00 }; /* an empty final block with fixed codes */

  if (job->error == NULL)
    {
      put_le32 (trailer + 2, job->fold.crc);
      put_le32 (trailer + 6, (guint32) (job->fold.length & 0xffffffffu));
      if (g_output_stream_write_all (job->out, trailer, sizeof trailer, NULL, NULL, &job->error) &&
          g_output_stream_flush (job->out, NULL, &job->error))
        job->out_bytes += sizeof trailer;
    }
  if (job->error == NULL && opt_independent)
    {
      g_autoptr (GBytes) index = make_index (job);

      if (index != NULL &&
          g_output_stream_write_all (job->out, g_bytes_get_data (index, NULL),
                                     g_bytes_get_size (index), NULL, NULL, &job->error) &&
          g_output_stream_flush (job->out, NULL, &job->error))
        job->out_bytes += g_bytes_get_size (index);
    }
  g_clear_pointer (&job->block_sizes, g_array_unref);
  g_clear_object (&job->producer);
  g_clear_pointer (&job->loop, g_main_loop_unref);
  g_clear_pointer (&job->header, g_bytes_unref);
  check_fold_clear (&job->fold);
  auto_choice_clear (&job->choice);

  if (job->error != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&job->error));
      return FALSE;
    }
  return TRUE;
}

static gboolean compress_stream_redis (Job *job, GError **error);

/* --- compressing a regular file: its blocks read by a thread of their own ---
 *
 * A regular file is read with blocking read()s of a block each by one
 * thread, which hands each block to the task queue and waits for room in
 * the window when it is full, so that a block reaches a compressing thread
 * without the two hops of GIO's asynchronous reads (a GIO pool thread,
 * then the main loop), as pigz's reading thread does. Pipes and terminals,
 * whose reads may block for good, keep the stream producer's cancellable
 * asynchronous reads. */

typedef struct
{
  Job *job;
  GBytes *chunk;
  GBytes *previous; /* nullable: the block before it, the dictionary */
  guint64 offset;
} ReadBlock;

static void
read_block_free (gpointer data)
{
  ReadBlock *block = data;

  g_bytes_unref (block->chunk);
  g_clear_pointer (&block->previous, g_bytes_unref);
  g_free (block);
}

static gpointer
compress_read_block (GCancellable *cancellable, gpointer data, GError **error)
{
  ReadBlock *block = data;

  return compress_block (block->chunk, block->previous, block->offset, cancellable, block->job,
                         error);
}

static void
fail_slot (SluiceSlot *slot, gpointer data)
{
  sluice_slot_fail (slot, g_error_copy (data));
}

/* On the main loop, once the reader thread is done: the stop waits for
 * the blocks and the writer. */
static gboolean
file_reader_done (gpointer data)
{
  Job *job = data;

  sluice_ordered_item_producer_stop_async (job->producer, NULL, on_stopped, job);
  return G_SOURCE_REMOVE;
}

/* Reads up to @len bytes into @buf, as many as there are before the end;
 * *got says how many. */
static gboolean
read_full (int fd, guint8 *buf, gsize len, gsize *got, GError **error)
{
  *got = 0;
  while (*got < len)
    {
      ssize_t n = read (fd, buf + *got, len - *got);

      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          int saved = errno;

          /* GIO's words (and translations), as the stream producer's. */
          g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved),
                       g_dgettext ("glib20", "Error reading from file: %s"), g_strerror (saved));
          return FALSE;
        }
      if (n == 0)
        break;
      *got += (gsize) n;
    }
  return TRUE;
}

/* The reader thread: a block per read, until the end, an error, or the
 * producer closes (the writer failed, or a signal stopped it). A read
 * error is the item after the blocks read before it, as the stream
 * producer's. */
static gpointer
file_reader (gpointer data)
{
  Job *job = data;
  int fd = g_file_descriptor_based_get_fd (G_FILE_DESCRIPTOR_BASED (job->in));
  gsize block_size = (gsize) opt_blocksize_kib * 1024;
  GBytes *previous = NULL;
  guint64 offset = 0;

  while (sluice_ordered_item_producer_wait_ready (job->producer, NULL, NULL))
    {
      g_autoptr (GError) error = NULL;
      guint8 *buf = g_malloc (block_size);
      ReadBlock *block;
      gsize n;

      if (!read_full (fd, buf, block_size, &n, &error))
        {
          g_free (buf);
          job->input_failed = TRUE;
          sluice_ordered_item_producer_produce_item (
              job->producer, fail_slot, g_steal_pointer (&error), (GDestroyNotify) g_error_free,
              NULL, NULL, NULL);
          break;
        }
      if (n == 0)
        {
          g_free (buf);
          break;
        }
      block = g_new (ReadBlock, 1);
      block->job = job;
      block->chunk = g_bytes_new_take (buf, n);
      block->previous = previous;
      block->offset = offset;
      previous = g_bytes_ref (block->chunk);
      sluice_ordered_item_producer_produce_item_in_thread (job->producer, compress_read_block,
                                                           block, read_block_free,
                                                           G_PRIORITY_DEFAULT, NULL, NULL, NULL);
      offset += n;
      g_mutex_lock (&job->fold.lock);
      job->bytes_read = offset;
      g_mutex_unlock (&job->fold.lock);
      if (n < block_size)
        break;
    }
  g_clear_pointer (&previous, g_bytes_unref);
  g_idle_add (file_reader_done, job);
  return NULL;
}

static gboolean
is_regular_file (GInputStream *in)
{
  struct stat st;

  return G_IS_FILE_DESCRIPTOR_BASED (in) &&
         fstat (g_file_descriptor_based_get_fd (G_FILE_DESCRIPTOR_BASED (in)), &st) == 0 &&
         S_ISREG (st.st_mode);
}

/* Compresses job->in to job->out: the header, the blocks, an empty final
 * block and the trailer. Returns whether it worked; the totals are in
 * job->in_bytes and job->out_bytes. */
static gboolean
compress_stream (Job *job, GError **error)
{
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  GThread *reader_thread = NULL;

  if (opt_redis != NULL)
    return compress_stream_redis (job, error);

  check_fold_init (&job->fold);
  if (deflate_with == DEFLATE_AUTO)
    auto_choice_init (&job->choice);
  job->block_sizes = g_array_new (FALSE, TRUE, sizeof (guint32));
  job->loop = g_main_loop_new (NULL, FALSE);
  /* A window of a few blocks per thread keeps the pool busy while the
   * writer writes; memory is bounded by it: window × (block + output). */
  job->producer = sluice_ordered_item_producer_new (
      job->queue, MAX (16, 4 * sluice_task_queue_get_max_threads (job->queue)),
      (GDestroyNotify) g_bytes_unref);
  /* The writer does little per block: let it sleep through a run of
   * blocks (20 ms at most) instead of waking every millisecond, which
   * gives the compressing threads the cores: ~3x fewer context switches. */
  sluice_ordered_item_producer_set_wake_latency (job->producer, 20000);

  /* The writer thread writes the header, then the blocks in order; the
   * trailer needs the whole CRC, so it is written after the stop. */
  writer = sluice_output_stream_consumer_new (job->producer, job->out);
  sluice_output_stream_consumer_set_close_stream (writer, FALSE);
  sluice_output_stream_consumer_start (writer);
  sluice_ordered_item_producer_produce_item (job->producer, complete_with_bytes, job->header, NULL,
                                             NULL, NULL, NULL);

  /* A regular file: read by a thread of its own (see file_reader). Else
   * async reads on the main loop, one block per read, deflated in the
   * task queue; the reader pauses itself while the window is full. */
  if (!is_regular_file (job->in))
    {
      job->reader = sluice_input_stream_producer_new (job->producer, job->in,
                                                      (gsize) opt_blocksize_kib * 1024);
      sluice_input_stream_producer_set_close_stream (job->reader, FALSE);
      sluice_input_stream_producer_set_chunk_func (job->reader, compress_block, job, NULL);
    }

  job->started_us = g_get_monotonic_time ();
  current_job = job;
  /* A bar needs a size; --progress asks for bytes and rate without one. */
  if (opt_progress && !opt_no_progress && (job->size_hint > 0 || opt_progress_explicit))
    job->progress_id = g_timeout_add (200, show_progress, job);
  if (job->reader != NULL)
    sluice_input_stream_producer_read_all_async (job->reader, G_PRIORITY_DEFAULT, NULL, on_read_all,
                                                 job);
  else
    reader_thread = g_thread_new ("sluice-gzip-read", file_reader, job);
  g_main_loop_run (job->loop);
  if (reader_thread != NULL)
    g_thread_join (reader_thread);

  if (job->progress_id != 0)
    {
      show_progress (job);
      fputc ('\n', stderr);
      g_source_remove (job->progress_id);
    }
  current_job = NULL;
  job->in_bytes = job_bytes_read (job);
  job->out_bytes = sluice_output_stream_consumer_get_bytes_written (writer);
  g_clear_object (&job->reader);
  return compress_stream_end (job, error);
}

/* --- --redis: the blocks deflated by remote sluice-worker processes ---
 *
 * The same stream as above, but each block is a named call, "deflate_block"
 * of the module sluice-gzip-deflate (tools/sluice-gzip-deflate.c), made
 * with sluice_ordered_item_producer_produce_call () to the workers of the
 * series that a SluiceRedisWorker hired by the task queue reaches: the
 * producer keeps the order and the window, the reader (on the main loop)
 * waits for room before each block, and a consumer thread writes the
 * compressed blocks in order and folds their CRCs. The call's arguments
 * are the block, the last 32 KiB of the block before it (none with -i) and
 * the level; its result (ayuu) the compressed block, its CRC-32 and its
 * length. With --deflate=libdeflate the call is "deflate_block_libdeflate"
 * (ayi), the block and the level: the same bytes as a local run's. Not
 * with --deflate=auto, whose blocks wait for probes deflated both ways. */

typedef struct
{
  Job *job;
  guint8 *buffer;   /* the block being read */
  GBytes *previous; /* the block read before it */
  GError *read_error;
} RedisReader;

static void redis_read_next (RedisReader *reader);

/* Why the Redis worker resigned (Redis lost for good): the job running
 * fails with it, and so does each one after it. */
static GError *redis_lost;

static void
redis_stop (RedisReader *reader)
{
  sluice_ordered_item_producer_stop_async (reader->job->producer, NULL, on_stopped, reader->job);
}

static void
redis_on_read (GObject *source, GAsyncResult *result, gpointer data)
{
  RedisReader *reader = data;
  gsize block_size = (gsize) opt_blocksize_kib * 1024;
  gsize n = 0;
  g_autoptr (GBytes) dict = NULL;
  GBytes *block;
  GVariant *args;

  if (!g_input_stream_read_all_finish (G_INPUT_STREAM (source), result, &n, &reader->read_error))
    n = 0;
  if (n == 0)
    {
      redis_stop (reader);
      return;
    }
  block = g_bytes_new_take (g_steal_pointer (&reader->buffer), n);
  reader->job->in_bytes += n;
  if (reader->previous != NULL && !opt_independent)
    {
      gsize previous_len = g_bytes_get_size (reader->previous);
      gsize dict_len = MIN (previous_len, GZIP_DICT_SIZE);

      dict = g_bytes_new_from_bytes (reader->previous, previous_len - dict_len, dict_len);
    }
  else
    dict = g_bytes_new_static (NULL, 0);
  /* --deflate=libdeflate: its function, without a dictionary. */
  if (deflate_with == DEFLATE_LIBDEFLATE)
    args = g_variant_new (
        "(@ayi)", g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, block, TRUE), opt_level);
  else
    args = g_variant_new (
        "(@ay@ayi)", g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, block, TRUE),
        g_variant_new_from_bytes (G_VARIANT_TYPE_BYTESTRING, dict, TRUE), opt_level);
  sluice_ordered_item_producer_produce_call (
      reader->job->producer, opt_redis_series,
      deflate_with == DEFLATE_LIBDEFLATE ? "deflate_block_libdeflate" : "deflate_block", args,
      G_PRIORITY_DEFAULT, 0, NULL, NULL, NULL);
  g_clear_pointer (&reader->previous, g_bytes_unref);
  reader->previous = block;
  if (n < block_size)
    redis_stop (reader);
  else
    redis_read_next (reader);
}

static void
redis_on_ready (GObject *source, GAsyncResult *result, gpointer data)
{
  RedisReader *reader = data;
  gsize block_size = (gsize) opt_blocksize_kib * 1024;

  /* Closed: the writer failed (or a signal stopped it); the stop says why. */
  if (!sluice_ordered_item_producer_wait_ready_finish (reader->job->producer, result, NULL))
    {
      redis_stop (reader);
      return;
    }
  reader->buffer = g_malloc (block_size);
  g_input_stream_read_all_async (reader->job->in, reader->buffer, block_size, G_PRIORITY_DEFAULT,
                                 NULL, redis_on_read, reader);
}

static void
redis_read_next (RedisReader *reader)
{
  sluice_ordered_item_producer_wait_ready_async (reader->job->producer, NULL, redis_on_ready,
                                                 reader);
}

/* The consumer thread: the header, then each compressed block in order. */
static gpointer
redis_write_blocks (SluiceConsumerator *items, gpointer data, GError **error)
{
  Job *job = data;
  GError *local_error = NULL;
  gpointer item;

  if (g_output_stream_write_all (job->out, g_bytes_get_data (job->header, NULL),
                                 g_bytes_get_size (job->header), NULL, NULL, &local_error))
    job->out_bytes += g_bytes_get_size (job->header);
  while (local_error == NULL && sluice_consumerator_next (items, &item, &local_error))
    {
      g_autoptr (GVariant) result = item;
      g_autoptr (GVariant) compressed = NULL;
      guint32 crc, length;
      gsize size;
      const guint8 *bytes;

      if (!g_variant_is_of_type (result, G_VARIANT_TYPE ("(ayuu)")))
        {
          g_set_error (&local_error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                       _ ("A remote worker answered deflate_block with %s"),
                       g_variant_get_type_string (result));
          break;
        }
      g_variant_get (result, "(@ayuu)", &compressed, &crc, &length);
      bytes = g_variant_get_fixed_array (compressed, &size, 1);
      if (!g_output_stream_write_all (job->out, bytes, size, NULL, NULL, &local_error))
        break;
      job->out_bytes += size;
      job->fold.crc = (guint32) crc32_combine (job->fold.crc, crc, (z_off_t) length);
      job->fold.length += length;
      if (opt_independent)
        {
          guint32 block_size = (guint32) size;

          g_array_append_val (job->block_sizes, block_size);
        }
    }
  if (local_error == NULL)
    g_output_stream_flush (job->out, NULL, &local_error);
  if (local_error != NULL)
    g_propagate_error (error, local_error);
  return NULL;
}

static gboolean
compress_stream_redis (Job *job, GError **error)
{
  RedisReader reader = { .job = job };

  check_fold_init (&job->fold);
  job->block_sizes = g_array_new (FALSE, TRUE, sizeof (guint32));
  job->loop = g_main_loop_new (NULL, FALSE);
  job->producer = sluice_ordered_item_producer_new (
      job->queue, MAX (16, 4 * sluice_task_queue_get_max_threads (job->queue)),
      (GDestroyNotify) g_variant_unref);
  sluice_ordered_item_producer_start (job->producer, redis_write_blocks, job, NULL, NULL);

  current_job = job;
  if (redis_lost != NULL)
    redis_stop (&reader);
  else
    redis_read_next (&reader);
  g_main_loop_run (job->loop);
  current_job = NULL;

  /* A read error comes before whatever the stop says (a cancelled call);
   * a lost Redis before both (no worker will take the calls). */
  if (redis_lost != NULL)
    {
      g_clear_error (&job->error);
      job->error = g_error_copy (redis_lost);
      job->input_failed = TRUE;
    }
  else if (reader.read_error != NULL)
    {
      g_clear_error (&job->error);
      job->error = g_steal_pointer (&reader.read_error);
      job->input_failed = TRUE;
    }
  g_clear_error (&reader.read_error);
  g_clear_pointer (&reader.previous, g_bytes_unref);
  g_free (reader.buffer);
  return compress_stream_end (job, error);
}

/* On the main loop: the job running stops, its calls cancelled (no worker
 * of the series is left to take them). */
static gboolean
redis_lost_cb (gpointer data)
{
  const GError *error = data;

  if (redis_lost == NULL)
    redis_lost = g_error_new (error->domain, error->code, "%s: %s", opt_redis, error->message);
  if (current_job != NULL)
    sluice_push_producer_stop_producing (SLUICE_PUSH_PRODUCER (current_job->producer));
  return G_SOURCE_REMOVE;
}

/* SluiceWorker::resigned, in one of the worker's threads. */
static void
on_redis_resigned (SluiceWorker *worker, const GError *error, gpointer data)
{
  g_idle_add_full (G_PRIORITY_DEFAULT, redis_lost_cb, g_error_copy (error),
                   (GDestroyNotify) g_error_free);
}

/* A block and its arguments must fit in one Redis value: 512 MB at most
 * by default (proto-max-bulk-len), beyond which Redis closes the
 * connection. */
#define REDIS_MAX_BLOCK_KIB (511 * 1024)

/* --redis: hires a SluiceRedisWorker reaching the remote workers of the
 * series; the password may come from SLUICE_REDIS_PASSWORD. */
static gboolean
hire_redis_worker (SluiceTaskQueue *queue, GError **error)
{
  const char *series[] = { opt_redis_series, NULL };
  g_autoptr (SluiceRedisWorker) worker = NULL;

  if (opt_blocksize_kib > REDIS_MAX_BLOCK_KIB)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   _ ("blocks of more than %d KiB do not fit in a Redis value"),
                   REDIS_MAX_BLOCK_KIB);
      return FALSE;
    }
  if (!(opt_redis_reconnect_s >= 0 && opt_redis_reconnect_s <= G_MAXUINT / 1000))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   _ ("--redis-reconnect-timeout must be between 0 and %u seconds"),
                   G_MAXUINT / 1000);
      return FALSE;
    }
  if (opt_redis_series == NULL)
    series[0] = opt_redis_series = g_strdup ("gzip");
  worker = sluice_redis_worker_new (opt_redis, g_getenv ("SLUICE_REDIS_PASSWORD"), series,
                                    MAX (16, 4 * sluice_task_queue_get_max_threads (queue)), error);
  if (worker == NULL)
    return FALSE;
  /* Redis lost for good: no hang waiting for a worker that is gone. */
  sluice_redis_worker_set_reconnect_timeout (worker, (guint) (opt_redis_reconnect_s * 1000));
  g_signal_connect (worker, "resigned", G_CALLBACK (on_redis_resigned), NULL);
  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  return TRUE;
}

/* --- decompression: reader on the main loop, one inflating thread, CRCs in
 * the task queue, writer thread --- */

/* A decompressed block is this long at most (the last of a member may be
 * shorter); compressed chunks are read INFLATE_IN_SIZE at a time. */
#define INFLATE_OUT_SIZE (256 * 1024)
#define INFLATE_IN_SIZE (128 * 1024)

typedef struct
{
  GBytes *bytes;
  guint64 index;
  BlockCheck check;
  CheckFold *fold;
} OutBlock;

static void
out_block_free (gpointer data)
{
  OutBlock *block = data;

  g_bytes_unref (block->bytes);
  g_free (block);
}

/* In a pool thread: the block's CRC, folded in order and checked against
 * the trailer at the end of each member; the item is the block itself. */
static gpointer
check_block (GCancellable *cancellable, gpointer data, GError **error)
{
  OutBlock *block = data;
  gsize len;
  const guint8 *p = g_bytes_get_data (block->bytes, &len);

  block->check.crc = libdeflate_crc32 (0, p, len);
  block->check.length = len;
  if (!check_fold_add (block->fold, block->index, &block->check, error))
    return NULL;
  return g_bytes_ref (block->bytes);
}

typedef enum
{
  AT_MAGIC,   /* before a member: its two magic bytes, or the end */
  IN_MEMBER,  /* zlib parses the header, the data and the trailer */
  IN_ZEROS,   /* zeros after the last member (tar pads so): ignored */
  IN_GARBAGE, /* anything else after a member: ignored, with a warning */
  IN_COPY,    /* -f to standard output: what is not gzip passes unchanged */
  IN_LENIENT, /* a distance before the member's start: on as gzip, see lenient_start */
} InflateState;

/* What a member's first inflate calls took, for lenient_start: a distance
 * can reach before the member's start only in its first 32 KiB of output,
 * and whatever deflate data makes that (empty blocks without end) is kept
 * up to this many bytes. */
#define LENIENT_KEEP_MAX (1024 * 1024)

/* The inflating thread's state, across the compressed chunks. */
typedef struct
{
  Job *job;
  z_stream strm;
  gz_header head; /* of the first member */
  char name[1024];
  InflateState state;
  guint members; /* ended so far */
  guint8 magic[2];
  gsize magic_len;
  guint8 tail[8]; /* the last 8 bytes inflate took: the trailer at a member's end */
  guint8 *out;
  gsize out_len;
  guint64 next_index;
  /* lenient_start: the member's input so far (NULL past LENIENT_KEEP_MAX),
   * then the raw inflater that goes on with it and what it found */
  GByteArray *member_in;
  gboolean member_in_dropped;
  z_stream lenient;
  gboolean lenient_init;
  gboolean lenient_end; /* its deflate data ended: the trailer comes */
  guint32 lenient_crc;
  guint32 lenient_length;
  guint64 lenient_skip; /* of its output: what the strict inflate wrote before */
  guint8 lenient_trailer[8];
  gsize lenient_trailer_len;
} Inflater;

static guint32
get_le32 (const guint8 *p)
{
  return (guint32) p[0] | (guint32) p[1] << 8 | (guint32) p[2] << 16 | (guint32) p[3] << 24;
}

static void
remember_tail (Inflater *inf, const guint8 *p, gsize n)
{
  if (n >= sizeof inf->tail)
    {
      memcpy (inf->tail, p + n - sizeof inf->tail, sizeof inf->tail);
      return;
    }
  memmove (inf->tail, inf->tail + n, sizeof inf->tail - n);
  memcpy (inf->tail + sizeof inf->tail - n, p, n);
}

/* Hands the block decompressed so far to the producer: its CRC is taken
 * in the task queue while this thread inflates on; the writer writes it
 * in order. Waits while the window is full (the writer is behind). */
static gboolean
emit_block (Inflater *inf, gboolean member_end, GError **error)
{
  Job *job = inf->job;
  OutBlock *block;

  if (!sluice_ordered_item_producer_wait_ready (job->producer, NULL, error))
    return FALSE;
  block = g_new0 (OutBlock, 1);
  block->bytes = g_bytes_new_take (inf->out, inf->out_len);
  block->index = inf->next_index++;
  block->fold = &job->fold;
  if (member_end)
    {
      block->check.member_end = TRUE;
      block->check.want_crc = get_le32 (inf->tail);
      block->check.want_length = get_le32 (inf->tail + 4);
    }
  sluice_ordered_item_producer_produce_item_in_thread (
      job->producer, check_block, block, out_block_free, G_PRIORITY_DEFAULT, NULL, NULL, NULL);
  inf->out = g_malloc (INFLATE_OUT_SIZE);
  inf->out_len = 0;
  return TRUE;
}

/* The length of the gzip header at @h (@len bytes of the member): to its
 * deflate data, after the extra field, name, comment and header CRC; FALSE
 * when @len bytes do not hold all of it. */
static gboolean
gzip_header_length (const guint8 *h, gsize len, gsize *header_len)
{
  gsize pos = 10;

  if (len < 10)
    return FALSE;
  if (h[3] & 4)
    pos = len >= 12 ? 12 + (gsize) (h[10] | h[11] << 8) : len + 1;
  for (int bit = 8; bit <= 16; bit <<= 1)
    if (h[3] & bit)
      {
        while (pos < len && h[pos] != 0)
          pos++;
        pos++;
      }
  if (h[3] & 2)
    pos += 2;
  *header_len = pos;
  return pos <= len;
}

/* A member that fails its format: gzip writes its output a window (32
 * KiB from the member's start) at a time and drops the part window it
 * holds, so only whole windows of the @member_total bytes inflated go out;
 * the rest of inf->out is dropped. */
static void
drop_part_window (Inflater *inf, guint64 member_total)
{
  guint64 flushed = member_total / GZIP_DICT_SIZE * GZIP_DICT_SIZE;
  guint64 emitted = member_total - inf->out_len;

  inf->out_len = flushed > emitted ? (gsize) (flushed - emitted) : 0;
}

/* The raw inflater of lenient_start takes @len more bytes @p of the
 * member, then its trailer; fails once the member's end is known, or at
 * a damage it cannot go past. */
static gboolean
lenient_feed (Inflater *inf, const guint8 *p, gsize len, GError **error)
{
  z_stream *strm = &inf->lenient;
  guint8 scratch[16384];
  gsize n, skip;

  while (!inf->lenient_end && len > 0)
    {
      int ret;

      strm->next_in = (Bytef *) p;
      strm->avail_in = (uInt) len;
      strm->next_out = scratch;
      strm->avail_out = sizeof scratch;
      ret = inflate (strm, Z_NO_FLUSH);
      n = sizeof scratch - strm->avail_out;
      inf->lenient_crc = libdeflate_crc32 (inf->lenient_crc, scratch, n);
      inf->lenient_length += (guint32) n;
      p += len - strm->avail_in;
      len = strm->avail_in;
      /* Written as gzip writes it (the same bytes in a file's first
       * member, whose window gzip starts with zeros too), after what the
       * strict inflate wrote. */
      skip = MIN (inf->lenient_skip, n);
      inf->lenient_skip -= skip;
      for (gsize at = skip; at < n;)
        {
          gsize take = MIN (n - at, INFLATE_OUT_SIZE - inf->out_len);

          memcpy (inf->out + inf->out_len, scratch + at, take);
          inf->out_len += take;
          at += take;
          if (inf->out_len == INFLATE_OUT_SIZE && !emit_block (inf, FALSE, error))
            return FALSE;
        }
      if (ret == Z_STREAM_END)
        inf->lenient_end = TRUE;
      else if (ret != Z_OK && ret != Z_BUF_ERROR)
        {
          set_gz_error (error, GZ_ERROR_FORMAT);
          drop_part_window (inf, inf->lenient_length);
          goto failed;
        }
    }
  n = MIN (len, sizeof inf->lenient_trailer - inf->lenient_trailer_len);
  memcpy (inf->lenient_trailer + inf->lenient_trailer_len, p, n);
  inf->lenient_trailer_len += n;
  if (inf->lenient_trailer_len < sizeof inf->lenient_trailer)
    return TRUE;
  /* gzip checks the CRC first, then the length. Both right although a
   * distance reached before the member's start: what was written is not
   * the data all the same, so it stays an error, of the format. */
  if (get_le32 (inf->lenient_trailer) != inf->lenient_crc)
    set_gz_error (error, GZ_ERROR_CRC);
  else if (get_le32 (inf->lenient_trailer + 4) != inf->lenient_length)
    set_gz_error (error, GZ_ERROR_LENGTH);
  else
    set_gz_error (error, GZ_ERROR_FORMAT);
failed:
  /* What it inflated goes out before the error, as gzip's does. */
  if (inf->out_len > 0)
    emit_block (inf, FALSE, NULL);
  return FALSE;
}

/* zlib stops at a distance that reaches before the member's start
 * ("invalid distance too far back"); gzip's own inflate does not check
 * that and goes on with what its window holds, so a member cut short and
 * followed by another (cat part.gz whole.gz) ends, in gzip's words, as
 * the rest of the input decides: a CRC error, a format error, or the end
 * of the input. A raw inflater with a window of zeros goes on from the
 * member's start the same way (the bits parse alike whatever the window
 * holds); what it inflates is not the data and is not written, only its
 * CRC and length are checked against the trailer. @p, @len: the bytes
 * of the failing call, after inf->member_in. */
static gboolean
lenient_start (Inflater *inf, const guint8 *p, gsize len, GError **error)
{
  static const guint8 zeros[GZIP_DICT_SIZE];
  gsize header_len;
  gboolean ok;

  if (inf->member_in_dropped)
    {
      set_gz_error (error, GZ_ERROR_FORMAT);
      return FALSE;
    }
  if (inf->member_in == NULL)
    inf->member_in = g_byte_array_new ();
  g_byte_array_append (inf->member_in, p, (guint) len);
  /* zlib took the header whole before any distance. */
  if (!gzip_header_length (inf->member_in->data, inf->member_in->len, &header_len) ||
      inflateInit2 (&inf->lenient, -MAX_WBITS) != Z_OK)
    {
      set_gz_error (error, GZ_ERROR_FORMAT);
      return FALSE;
    }
  inf->lenient_init = TRUE;
  inf->lenient_skip = inf->strm.total_out;
  inflateSetDictionary (&inf->lenient, zeros, sizeof zeros);
  inf->state = IN_LENIENT;
  ok = lenient_feed (inf, inf->member_in->data + header_len, inf->member_in->len - header_len,
                     error);
  g_clear_pointer (&inf->member_in, g_byte_array_unref);
  return ok;
}

/* Inflates from @p until @len bytes are used or the member ends; *used
 * says how many were. */
static gboolean
inflate_member (Inflater *inf, const guint8 *p, gsize len, gsize *used, GError **error)
{
  z_stream *strm = &inf->strm;
  /* lenient_start needs the member's input while a distance can reach
   * before its start. */
  gboolean keep = strm->total_out < GZIP_DICT_SIZE && !inf->member_in_dropped;
  int ret;

  strm->next_in = (Bytef *) p;
  strm->avail_in = (uInt) len;
  for (;;)
    {
      strm->next_out = inf->out + inf->out_len;
      strm->avail_out = (uInt) (INFLATE_OUT_SIZE - inf->out_len);
      ret = inflate (strm, Z_NO_FLUSH);
      inf->out_len = INFLATE_OUT_SIZE - strm->avail_out;
      if (ret == Z_STREAM_END)
        break;
      if (ret != Z_OK && ret != Z_BUF_ERROR)
        {
          if (ret == Z_DATA_ERROR && keep && strm->msg != NULL &&
              strcmp (strm->msg, "invalid distance too far back") == 0)
            {
              /* It goes on from there: what came before goes out. */
              if (inf->out_len > 0)
                emit_block (inf, FALSE, NULL);
              /* It took the whole call's input. */
              *used = len;
              return lenient_start (inf, p, len, error);
            }
          /* What came before the damage still goes out, as gzip's does:
           * its whole windows. */
          drop_part_window (inf, strm->total_out);
          if (inf->out_len > 0)
            emit_block (inf, FALSE, NULL);
          set_gz_error (error, GZ_ERROR_FORMAT);
          return FALSE;
        }
      if (inf->out_len == INFLATE_OUT_SIZE && !emit_block (inf, FALSE, error))
        return FALSE;
      if (strm->avail_in == 0)
        break;
    }
  *used = len - strm->avail_in;
  remember_tail (inf, p, *used);
  if (ret != Z_STREAM_END)
    {
      if (keep)
        {
          if (inf->member_in == NULL)
            inf->member_in = g_byte_array_new ();
          if (inf->member_in->len + *used > LENIENT_KEEP_MAX)
            inf->member_in_dropped = TRUE;
          else
            g_byte_array_append (inf->member_in, p, (guint) *used);
        }
      return TRUE;
    }
  if (inf->member_in != NULL)
    g_byte_array_set_size (inf->member_in, 0);
  inf->member_in_dropped = FALSE;

  if (inf->members == 0 && inf->head.done == 1)
    {
      Job *job = inf->job;

      job->orig_mtime = (guint32) inf->head.time;
      if (inf->head.name != NULL && inf->name[0] != '\0')
        job->orig_name = g_strdup (inf->name);
    }
  inf->members++;
  inf->state = AT_MAGIC;
  inflateReset (strm);
  return emit_block (inf, TRUE, error);
}

/* Copies @len bytes that are not gzip data to the output, as gzip -dcf
 * (zcat -f) does. */
static gboolean
copy_through (Inflater *inf, const guint8 *p, gsize len, GError **error)
{
  while (len > 0)
    {
      gsize n = MIN (len, INFLATE_OUT_SIZE - inf->out_len);

      memcpy (inf->out + inf->out_len, p, n);
      inf->out_len += n;
      p += n;
      len -= n;
      if (inf->out_len == INFLATE_OUT_SIZE && !emit_block (inf, FALSE, error))
        return FALSE;
    }
  return TRUE;
}

/* Takes one compressed chunk: members, the magic between them, and what
 * may follow the last one. */
static gboolean
inflate_chunk (Inflater *inf, const guint8 *p, gsize len, GError **error)
{
  gsize used;

  while (len > 0)
    switch (inf->state)
      {
      case AT_MAGIC:
        if (inf->members > 0 && inf->magic_len == 0 && *p == 0 && !inf->job->pass_through)
          {
            inf->state = IN_ZEROS;
            break;
          }
        inf->magic[inf->magic_len++] = *p++;
        len--;
        /* After a member gzip takes two bytes before it decides: one alone
         * at the end is a member cut short, not garbage. */
        if (inf->members > 0 && inf->magic_len < 2 && !inf->job->pass_through)
          break;
        if (inf->magic[0] != 0x1f || (inf->magic_len == 2 && inf->magic[1] != 0x8b))
          {
            /* -f to standard output: this and the rest pass unchanged. */
            if (inf->job->pass_through)
              {
                inf->state = IN_COPY;
                if (!copy_through (inf, inf->magic, inf->magic_len, error))
                  return FALSE;
                break;
              }
            if (inf->members == 0)
              {
                set_gz_error (error, GZ_ERROR_NOT_GZIP);
                return FALSE;
              }
            inf->job->trailing_garbage = TRUE;
            inf->state = IN_GARBAGE;
            break;
          }
        if (inf->magic_len < 2)
          break;
        inf->magic_len = 0;
        inf->state = IN_MEMBER;
        if (!inflate_member (inf, inf->magic, 2, &used, error))
          return FALSE;
        break;
      case IN_MEMBER:
        if (!inflate_member (inf, p, len, &used, error))
          return FALSE;
        p += used;
        len -= used;
        break;
      case IN_ZEROS:
        while (len > 0 && *p == 0)
          p++, len--;
        if (len > 0)
          {
            inf->job->trailing_garbage = TRUE;
            inf->state = IN_GARBAGE;
          }
        break;
      case IN_GARBAGE:
        return TRUE;
      case IN_COPY:
        return copy_through (inf, p, len, error);
      case IN_LENIENT:
        return lenient_feed (inf, p, len, error);
      }
  return TRUE;
}

/* The end of the input: it must not end inside a member (or be empty). */
static gboolean
inflate_end (Inflater *inf, GError **error)
{
  /* -f to standard output: a lone first magic byte (or nothing) passes. */
  if (inf->job->pass_through && inf->state == AT_MAGIC &&
      !copy_through (inf, inf->magic, inf->magic_len, error))
    return FALSE;
  if (inf->job->pass_through && inf->state != IN_MEMBER && inf->state != IN_LENIENT)
    return inf->out_len == 0 || emit_block (inf, FALSE, error);
  if (inf->state == IN_MEMBER || inf->state == IN_LENIENT || inf->members == 0)
    {
      if (inf->out_len > 0)
        emit_block (inf, FALSE, NULL);
      set_gz_error (error, GZ_ERROR_TRUNCATED);
      return FALSE;
    }
  if (inf->state == AT_MAGIC && inf->magic_len > 0)
    {
      set_gz_error (error, GZ_ERROR_TRUNCATED);
      return FALSE;
    }
  return TRUE;
}

static void list_record_push (struct _ListRecord *record, const guint8 *p, gsize n);

/* The consumer of the compressed chunks, in a thread of its own: the one
 * thread that inflates, as pigz -d has. */
static gpointer
inflate_all (SluiceConsumerator *input, gpointer data, GError **error)
{
  Inflater inf = { 0 };
  gpointer chunk;
  GError *local = NULL;
  gboolean ok = TRUE;

  inf.job = data;
  inf.out = g_malloc (INFLATE_OUT_SIZE);
  /* A gzip stream; the CRCs are checked in the task queue, not here. */
  if (inflateInit2 (&inf.strm, 16 + MAX_WBITS) != Z_OK)
    g_error ("inflateInit2 failed: out of memory");
  inflateValidate (&inf.strm, 0);
  inf.head.name = (Bytef *) inf.name;
  inf.head.name_max = sizeof inf.name - 1;
  inflateGetHeader (&inf.strm, &inf.head);

  while (ok && sluice_consumerator_next (input, &chunk, &local))
    {
      gsize len;
      const guint8 *p = g_bytes_get_data (chunk, &len);

      if (inf.job->record != NULL)
        list_record_push (inf.job->record, p, len);
      ok = inflate_chunk (&inf, p, len, error);
      g_bytes_unref (chunk);
    }
  if (ok && local != NULL)
    {
      /* A read error, or a stop. */
      g_propagate_error (error, local);
      ok = FALSE;
    }
  else if (ok)
    ok = inflate_end (&inf, error);
  g_clear_error (&local);

  inflateEnd (&inf.strm);
  if (inf.lenient_init)
    inflateEnd (&inf.lenient);
  if (inf.member_in != NULL)
    g_byte_array_unref (inf.member_in);
  g_free (inf.out);
  return ok ? data : NULL;
}

static void
on_inflated (GObject *source, GAsyncResult *result, gpointer data)
{
  Job *job = data;

  sluice_ordered_item_producer_stop_finish (job->in_producer, result, &job->inflate_error);
  sluice_ordered_item_producer_stop_async (job->producer, NULL, on_stopped, job);
}

/* --- -i: independent blocks, their index, and parallel decompression ---
 *
 * With -i every block is deflated without the previous block as its
 * dictionary, so that it inflates on its own, and after the member comes
 * an index: one more gzip member, empty (gzip, pigz and zlib decompress it
 * to nothing), whose header has an extra field (FEXTRA) with one subfield
 * 'S' 'X' holding, all integers little-endian:
 *
 *   u32  the uncompressed size of a block (all but the last are that long)
 *   u64  the uncompressed size of the whole data
 *   u32  the length of the first member's header: where block 0 starts
 *   u32  the number of blocks N
 *   N ×  the compressed size of each block in order, as LEB128 varints
 *        (each block ends with its sync flush, on a byte boundary)
 *   u16  XLEN, the length of the extra field, again
 *   4    "SLIX"
 *
 * The member ends with an empty final block (03 00) and a trailer of zeros,
 * so that the index is found from the file's end: its last 16 bytes are
 * XLEN, "SLIX", 03 00 and 8 zeros.
 *
 * An index too large for one extra field (XLEN at most 65,535: about
 * 21,800 blocks of incompressible data, 2.7 GB of 128 KiB blocks; more for
 * compressible data, whose sizes take fewer varint bytes) is a chain of
 * such members, one after another, each with as many blocks as fit, and
 * the magic "SLIC"; after the same first four fields come:
 *
 *   u32  the index of the member's first block F
 *   u32  the number of its blocks C (F + C: the next member's F, or N)
 *   u32  the CRC-32 of the whole data (the trailer before the chain's)
 *   u64  the length of the whole chain, of all its members
 *   C ×  the compressed size of each of its blocks, as LEB128 varints
 *   u16  XLEN, "SLIC"
 *
 * so that the last member alone gives the data's sizes and CRC (what -l
 * prints, even from a pipe) and where the chain starts. */

#define INDEX_MAGIC "SLIX"
#define INDEX_CHAIN_MAGIC "SLIC"
/* The fixed fields of a member's payload, before its blocks' sizes. */
#define INDEX_FIXED 20
#define INDEX_CHAIN_FIXED 40
/* An extra field: "SX", its length, the payload, XLEN and the magic. */
#define INDEX_XLEN_MAX 0xffff
#define INDEX_XLEN(payload_len) (4 + (payload_len) + 6)
/* A member: the header to XLEN, the extra field, an empty block, a trailer. */
#define INDEX_MEMBER_SIZE(xlen) (12 + (xlen) + 10)

static void
put_le16 (GByteArray *a, guint v)
{
  guint8 b[2] = { v & 0xff, (v >> 8) & 0xff };

  g_byte_array_append (a, b, 2);
}

static void
append_le32 (GByteArray *a, guint32 v)
{
  guint8 b[4];

  put_le32 (b, v);
  g_byte_array_append (a, b, 4);
}

static void
append_le64 (GByteArray *a, guint64 v)
{
  append_le32 (a, (guint32) (v & 0xffffffffu));
  append_le32 (a, (guint32) (v >> 32));
}

static guint
varint_len (guint32 v)
{
  guint n = 1;

  while (v > 0x7f)
    {
      v >>= 7;
      n++;
    }
  return n;
}

static void
append_varint (GByteArray *a, guint32 v)
{
  do
    {
      guint8 b = (v & 0x7f) | (v > 0x7f ? 0x80 : 0);

      g_byte_array_append (a, &b, 1);
      v >>= 7;
    }
  while (v != 0);
}

/* Appends to @out the member whose payload is @payload (its fixed fields
 * and sizes), with XLEN and @magic after it. */
static void
append_index_member (GByteArray *out, GByteArray *payload, const char *magic)
{
  static const guint8 start[10] = { 0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff };
  static const guint8 end[10] = { 0x03, 0x00 };
  guint xlen = INDEX_XLEN (payload->len);

  put_le16 (payload, xlen);
  g_byte_array_append (payload, (const guint8 *) magic, 4);
  g_byte_array_append (out, start, sizeof start);
  put_le16 (out, xlen);
  g_byte_array_append (out, (const guint8 *) "SX", 2);
  put_le16 (out, payload->len);
  g_byte_array_append (out, payload->data, payload->len);
  g_byte_array_append (out, end, sizeof end);
}

/* The most blocks in one member of a chain: as many as fit, or fewer for
 * the tests (SLUICE_GZIP_INDEX_MEMBER_BLOCKS), which make chains of small
 * files that way. */
static guint
index_member_blocks_max (void)
{
  const char *s = g_getenv ("SLUICE_GZIP_INDEX_MEMBER_BLOCKS");
  guint64 n = s != NULL ? g_ascii_strtoull (s, NULL, 10) : 0;

  return n > 0 && n < G_MAXUINT ? (guint) n : G_MAXUINT;
}

static GBytes *
make_index (Job *job)
{
  const guint32 *sizes = (const guint32 *) job->block_sizes->data;
  guint n = job->block_sizes->len;
  guint members_max = index_member_blocks_max ();
  gsize sizes_len = 0;
  g_autoptr (GArray) counts = NULL; /* of each member of a chain */
  g_autoptr (GByteArray) payload = g_byte_array_new ();
  GByteArray *out = g_byte_array_new ();
  guint64 chain_bytes = 0;
  guint first = 0;

  if (n == 0)
    {
      g_byte_array_unref (out);
      return NULL;
    }
  for (guint i = 0; i < n; i++)
    sizes_len += varint_len (sizes[i]);
  if (INDEX_XLEN (INDEX_FIXED + sizes_len) <= INDEX_XLEN_MAX && n <= members_max)
    {
      /* One member. */
      append_le32 (payload, (guint32) opt_blocksize_kib * 1024);
      append_le64 (payload, job->fold.length);
      append_le32 (payload, (guint32) g_bytes_get_size (job->header));
      append_le32 (payload, n);
      for (guint i = 0; i < n; i++)
        append_varint (payload, sizes[i]);
      append_index_member (out, payload, INDEX_MAGIC);
      return g_byte_array_free_to_bytes (out);
    }

  /* A chain: as many blocks in each member as fit, then the members. */
  counts = g_array_new (FALSE, FALSE, sizeof (guint));
  while (first < n)
    {
      guint count = 0;
      gsize len = INDEX_CHAIN_FIXED;

      while (first + count < n && count < members_max &&
             INDEX_XLEN (len + varint_len (sizes[first + count])) <= INDEX_XLEN_MAX)
        len += varint_len (sizes[first + count++]);
      g_array_append_val (counts, count);
      chain_bytes += INDEX_MEMBER_SIZE (INDEX_XLEN (len));
      first += count;
    }
  first = 0;
  for (guint m = 0; m < counts->len; m++)
    {
      guint count = g_array_index (counts, guint, m);

      g_byte_array_set_size (payload, 0);
      append_le32 (payload, (guint32) opt_blocksize_kib * 1024);
      append_le64 (payload, job->fold.length);
      append_le32 (payload, (guint32) g_bytes_get_size (job->header));
      append_le32 (payload, n);
      append_le32 (payload, first);
      append_le32 (payload, count);
      append_le32 (payload, job->fold.crc);
      append_le64 (payload, chain_bytes);
      for (guint i = first; i < first + count; i++)
        append_varint (payload, sizes[i]);
      append_index_member (out, payload, INDEX_CHAIN_MAGIC);
      first += count;
    }
  g_assert (out->len == chain_bytes);
  return g_byte_array_free_to_bytes (out);
}

typedef struct
{
  int fd;
  guint32 block_size;
  guint64 total;
  guint32 n_blocks;
  guint64 *offsets; /* n_blocks + 1: where each block starts, and the last ends */
  guint32 want_crc; /* the trailer of the first member */
  guint32 want_length;
  guint64 member_size; /* of the index: its member, or all of its chain's */
} BlockIndex;

static void
block_index_free (BlockIndex *index)
{
  g_free (index->offsets);
  g_free (index);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (BlockIndex, block_index_free)

static gboolean
pread_all (int fd, guint8 *buf, gsize len, guint64 offset)
{
  while (len > 0)
    {
      ssize_t got = pread (fd, buf, len, (off_t) offset);

      if (got < 0 && errno == EINTR)
        continue;
      if (got <= 0)
        {
          if (got == 0)
            errno = 0;
          return FALSE;
        }
      buf += got;
      len -= (gsize) got;
      offset += (guint64) got;
    }
  return TRUE;
}

/* The most of a file's end that an index member and the data's final
 * block and trailer before it can take (a chain takes more: see
 * read_index). */
#define INDEX_TAIL_MAX (INDEX_MEMBER_SIZE (INDEX_XLEN_MAX) + 10 + 10)

/* One member of an index, as read. */
typedef struct
{
  gboolean chained;
  guint32 block_size;
  guint64 total;
  guint32 header_len;
  guint32 n_blocks;
  guint32 first; /* its first block */
  guint32 count; /* its blocks */
  guint32 crc;   /* chained: of the whole data */
  guint64 chain_bytes;
  const guint8 *sizes; /* count varints, up to sizes_end */
  const guint8 *sizes_end;
  gsize size; /* of the member */
} IndexMember;

/* The index member that ends at @end, with @avail bytes of the buffer
 * before @end, if that is one. */
static gboolean
parse_index_member (const guint8 *end, gsize avail, IndexMember *m)
{
  static const guint8 empty_end[10] = { 0x03, 0x00 };
  const guint8 *last = end - 16, *member, *p;
  guint xlen, fixed;

  if (avail < 16 || memcmp (last + 6, empty_end, sizeof empty_end) != 0)
    return FALSE;
  m->chained = memcmp (last + 2, INDEX_CHAIN_MAGIC, 4) == 0;
  if (!m->chained && memcmp (last + 2, INDEX_MAGIC, 4) != 0)
    return FALSE;
  fixed = m->chained ? INDEX_CHAIN_FIXED : INDEX_FIXED;
  xlen = last[0] | last[1] << 8;
  if (xlen < INDEX_XLEN (fixed) || avail < INDEX_MEMBER_SIZE (xlen))
    return FALSE;
  m->size = INDEX_MEMBER_SIZE (xlen);
  member = end - m->size;
  if (member[0] != 0x1f || member[1] != 0x8b || member[2] != 8 || member[3] != 4 ||
      (guint) (member[10] | member[11] << 8) != xlen || member[12] != 'S' || member[13] != 'X' ||
      (guint) (member[14] | member[15] << 8) != xlen - 4)
    return FALSE;
  p = member + 16;
  m->block_size = get_le32 (p);
  m->total = get_le32 (p + 4) | (guint64) get_le32 (p + 8) << 32;
  m->header_len = get_le32 (p + 12);
  m->n_blocks = get_le32 (p + 16);
  m->first = m->chained ? get_le32 (p + 20) : 0;
  m->count = m->chained ? get_le32 (p + 24) : m->n_blocks;
  m->crc = m->chained ? get_le32 (p + 28) : 0;
  m->chain_bytes = m->chained ? get_le32 (p + 32) | (guint64) get_le32 (p + 36) << 32 : m->size;
  m->sizes = p + fixed;
  m->sizes_end = p + (xlen - 4) - 6;
  /* Every size takes a byte at least. */
  return m->count > 0 && m->count <= (gsize) (m->sizes_end - m->sizes) && m->first < m->n_blocks &&
         m->count <= m->n_blocks - m->first;
}

/* The index in @tail, the last @tail_len bytes of a file of @file_size
 * bytes, if there is one, whole in @tail, and it agrees with the file: the
 * blocks end where the index begins, after the final empty block and the
 * trailer. Anything else gives NULL: the file is then decompressed in one
 * stream. The index's fd is -1. */
static BlockIndex *
parse_index (const guint8 *tail, gsize tail_len, guint64 file_size)
{
  g_autoptr (BlockIndex) index = NULL;
  g_autoptr (GArray) members = g_array_new (FALSE, FALSE, sizeof (IndexMember));
  IndexMember last, m;
  const guint8 *chain, *end;
  guint64 start, pos;
  guint32 want_first;

  if (file_size < 64 || tail_len > file_size ||
      !parse_index_member (tail + tail_len, tail_len, &last))
    return NULL;
  if (last.chain_bytes + 20 > tail_len || last.first + last.count != last.n_blocks)
    return NULL;
  chain = tail + tail_len - last.chain_bytes;
  start = file_size - last.chain_bytes;
  /* The members, from the last back to the first. */
  end = tail + tail_len;
  want_first = last.n_blocks;
  while (end > chain)
    {
      if (!parse_index_member (end, (gsize) (end - chain), &m) || m.chained != last.chained ||
          m.block_size != last.block_size || m.total != last.total ||
          m.header_len != last.header_len || m.n_blocks != last.n_blocks || m.crc != last.crc ||
          m.chain_bytes != last.chain_bytes || m.first + m.count != want_first)
        return NULL;
      g_array_prepend_val (members, m);
      want_first = m.first;
      end -= m.size;
    }
  if (end != chain || want_first != 0)
    return NULL;

  index = g_new0 (BlockIndex, 1);
  index->fd = -1;
  index->block_size = last.block_size;
  index->total = last.total;
  index->n_blocks = last.n_blocks;
  if (index->block_size == 0 || last.header_len < 10 ||
      index->total > (guint64) index->n_blocks * index->block_size ||
      index->total <= (guint64) (index->n_blocks - 1) * index->block_size)
    return NULL;
  index->offsets = g_new (guint64, index->n_blocks + 1);
  pos = last.header_len;
  for (guint k = 0; k < members->len; k++)
    {
      const IndexMember *mk = &g_array_index (members, IndexMember, k);
      const guint8 *p = mk->sizes;

      for (guint32 i = mk->first; i < mk->first + mk->count; i++)
        {
          guint64 v = 0;
          int shift = 0;

          do
            {
              if (p >= mk->sizes_end || shift > 28)
                return NULL;
              v |= (guint64) (*p & 0x7f) << shift;
              shift += 7;
            }
          while (*p++ & 0x80);
          index->offsets[i] = pos;
          pos += v;
        }
      if (p != mk->sizes_end)
        return NULL;
    }
  index->offsets[index->n_blocks] = pos;
  /* The blocks, the final empty block and the trailer, then the index. */
  /* No block larger than -b allows, no more than deflate's 1032:1: a
   * forged index cannot make us allocate what the data cannot fill. */
  if (index->block_size > 512u * 1024 * 1024 || index->total / 1032 > pos - last.header_len + 1)
    return NULL;
  if (pos + 10 != start || chain[-10] != 0x03 || chain[-9] != 0x00)
    return NULL;
  index->want_crc = get_le32 (chain - 8);
  index->want_length = get_le32 (chain - 4);
  if (index->want_length != (guint32) (index->total & 0xffffffffu) ||
      (last.chained && index->want_crc != last.crc))
    return NULL;
  index->member_size = last.chain_bytes;
  return g_steal_pointer (&index);
}

/* The length of the end of a file whose last @tail_len bytes are @tail
 * that parse_index needs: INDEX_TAIL_MAX, or more for a chain; 0 when
 * there is no index. A chain's length is bounded by what its blocks can
 * take (5 varint bytes each, a member each at worst) so that a forged one
 * cannot make us read much more than the file's index. */
static guint64
index_tail_len (const guint8 *tail, gsize tail_len, guint64 file_size)
{
  IndexMember last;

  if (!parse_index_member (tail + tail_len, tail_len, &last))
    return 0;
  if (!last.chained)
    return MIN (file_size, INDEX_TAIL_MAX);
  if (last.chain_bytes + 20 > file_size ||
      last.chain_bytes >
          (guint64) last.n_blocks * (5 + INDEX_MEMBER_SIZE (INDEX_XLEN (INDEX_CHAIN_FIXED))))
    return 0;
  return last.chain_bytes + 20;
}

/* For -l: the data's CRC-32 and size and the index's length, if the file
 * whose last @tail_len bytes are @tail ends with an index; of a chain,
 * from its last member alone (a pipe's tail may not hold the others). */
static gboolean
index_summary (const guint8 *tail,
               gsize tail_len,
               guint64 file_size,
               guint32 *crc,
               guint64 *total,
               guint64 *index_bytes)
{
  g_autoptr (BlockIndex) index = NULL;
  IndexMember last;

  if (!parse_index_member (tail + tail_len, tail_len, &last) ||
      index_tail_len (tail, tail_len, file_size) == 0)
    return FALSE;
  if (last.chained)
    {
      if (last.first + last.count != last.n_blocks)
        return FALSE;
      *crc = last.crc;
      *total = last.total;
      *index_bytes = last.chain_bytes;
      return TRUE;
    }
  index = parse_index (tail, tail_len, file_size);
  if (index == NULL)
    return FALSE;
  *crc = index->want_crc;
  *total = index->total;
  *index_bytes = index->member_size;
  return TRUE;
}

/* The index at the end of the file @fd, if there is one (see parse_index). */
static BlockIndex *
read_index (int fd)
{
  g_autofree guint8 *tail = NULL;
  struct stat st;
  guint64 len, need;
  BlockIndex *index;

  if (fstat (fd, &st) != 0 || !S_ISREG (st.st_mode) || st.st_size < 64)
    return NULL;
  len = MIN ((guint64) st.st_size, INDEX_TAIL_MAX);
  tail = g_malloc (len);
  if (!pread_all (fd, tail, len, (guint64) st.st_size - len))
    return NULL;
  need = index_tail_len (tail, len, (guint64) st.st_size);
  if (need == 0)
    return NULL;
  if (need > len)
    {
      len = need;
      g_free (tail);
      tail = g_malloc (len);
      if (!pread_all (fd, tail, len, (guint64) st.st_size - len))
        return NULL;
    }
  index = parse_index (tail, len, (guint64) st.st_size);
  if (index != NULL)
    index->fd = fd;
  return index;
}

/* Each pool thread's means for indexed blocks, kept across blocks: a
 * libdeflate decompressor and the buffer the compressed block is read into. */
typedef struct
{
  struct libdeflate_decompressor *decompressor;
  guint8 *in;
  gsize in_cap;
} BlockInflater;

static void
block_inflater_free (gpointer data)
{
  BlockInflater *inflater = data;

  libdeflate_free_decompressor (inflater->decompressor);
  g_free (inflater->in);
  g_free (inflater);
}

static GPrivate thread_block_inflater = G_PRIVATE_INIT (block_inflater_free);

/* This thread's block inflater, its buffer at least @in_len long. */
static BlockInflater *
get_block_inflater (gsize in_len)
{
  BlockInflater *inflater = g_private_get (&thread_block_inflater);

  if (inflater == NULL)
    {
      inflater = g_new0 (BlockInflater, 1);
      inflater->decompressor = libdeflate_alloc_decompressor ();
      if (inflater->decompressor == NULL)
        g_error ("libdeflate_alloc_decompressor failed: out of memory");
      g_private_set (&thread_block_inflater, inflater);
    }
  if (inflater->in_cap < in_len)
    {
      g_free (inflater->in);
      inflater->in_cap = MAX (in_len, 2 * inflater->in_cap);
      inflater->in = g_malloc (inflater->in_cap);
    }
  return inflater;
}

typedef struct
{
  Job *job;
  BlockIndex *index;
  guint32 i;
} IndexedBlock;

/* In a pool thread: reads block i, inflates it on its own, checks that it
 * is exactly its size, and folds its CRC (the last one checks the
 * trailer). A block is whole deflate blocks ending with a sync flush on a
 * byte boundary; libdeflate, which inflates a buffer at once about twice as
 * fast as zlib's inflate, wants a final block: the empty one that ends
 * every member (03 00) is put after it. */
static gpointer
inflate_indexed_block (GCancellable *cancellable, gpointer data, GError **error)
{
  static const guint8 final_block[2] = { 0x03, 0x00 };
  IndexedBlock *block = data;
  BlockIndex *index = block->index;
  guint32 i = block->i;
  gsize in_len = index->offsets[i + 1] - index->offsets[i];
  gsize out_len = i + 1 < index->n_blocks
                      ? index->block_size
                      : (gsize) (index->total - (guint64) i * index->block_size);
  BlockInflater *inflater = get_block_inflater (in_len + sizeof final_block);
  guint8 *out;
  gsize used = 0;
  BlockCheck check = { 0 };

  if (!pread_all (index->fd, inflater->in, in_len, index->offsets[i]))
    {
      int saved = errno != 0 ? errno : EIO;

      g_atomic_int_set (&block->job->read_errno, saved);
      if (errno == 0)
        set_gz_error (error, GZ_ERROR_TRUNCATED);
      else
        g_set_error_literal (error, G_IO_ERROR, g_io_error_from_errno (saved), g_strerror (saved));
      return NULL;
    }
  memcpy (inflater->in + in_len, final_block, sizeof final_block);
  out = g_malloc (MAX (out_len, 1));
  /* Without an actual_out argument, libdeflate fails unless the output is
   * exactly out_len long; all of the input must be the block's. */
  if (libdeflate_deflate_decompress_ex (inflater->decompressor, inflater->in,
                                        in_len + sizeof final_block, out, out_len, &used,
                                        NULL) != LIBDEFLATE_SUCCESS ||
      used != in_len + sizeof final_block)
    {
      g_free (out);
      set_gz_error (error, GZ_ERROR_FORMAT);
      return NULL;
    }
  check.crc = libdeflate_crc32 (0, out, out_len);
  check.length = out_len;
  if (i + 1 == index->n_blocks)
    {
      check.member_end = TRUE;
      check.want_crc = index->want_crc;
      check.want_length = index->want_length;
    }
  if (!check_fold_add (&block->job->fold, i, &check, error))
    {
      g_free (out);
      return NULL;
    }
  return g_bytes_new_take (out, out_len);
}

/* Decompresses a file with an index: its blocks inflated in parallel in
 * the task queue, written in order by the writer thread. */
static gboolean
decompress_indexed (Job *job, BlockIndex *index, GError **error)
{
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;

  check_fold_init (&job->fold);
  job->loop = g_main_loop_new (NULL, FALSE);
  job->producer = sluice_ordered_item_producer_new (
      job->queue, MAX (16, 4 * sluice_task_queue_get_max_threads (job->queue)),
      (GDestroyNotify) g_bytes_unref);
  writer = sluice_output_stream_consumer_new (job->producer, job->out);
  sluice_output_stream_consumer_set_close_stream (writer, FALSE);
  sluice_output_stream_consumer_start (writer);

  /* All asked for at once: the producer runs them as its window makes room
   * (the requests waiting are a few bytes each). */
  for (guint32 i = 0; i < index->n_blocks; i++)
    {
      IndexedBlock *block = g_new (IndexedBlock, 1);

      block->job = job;
      block->index = index;
      block->i = i;
      sluice_ordered_item_producer_produce_item_in_thread (job->producer, inflate_indexed_block,
                                                           block, g_free, G_PRIORITY_DEFAULT, NULL,
                                                           NULL, NULL);
    }
  current_job = job;
  sluice_ordered_item_producer_stop_async (job->producer, NULL, on_stopped, job);
  g_main_loop_run (job->loop);
  current_job = NULL;

  job->in_bytes = index->offsets[index->n_blocks];
  job->out_bytes = sluice_output_stream_consumer_get_bytes_written (writer);
  if (job->error == NULL)
    g_output_stream_flush (job->out, NULL, &job->error);
  g_clear_object (&job->producer);
  g_clear_pointer (&job->loop, g_main_loop_unref);
  check_fold_clear (&job->fold);
  if (job->error != NULL)
    {
      job->input_failed = job->error->domain == GZ_ERROR || g_atomic_int_get (&job->read_errno);
      g_propagate_error (error, g_steal_pointer (&job->error));
      return FALSE;
    }
  return TRUE;
}

/* Decompresses job->in to job->out; returns whether it worked (the totals
 * are in job->in_bytes and job->out_bytes, the first member's name and
 * time in job->orig_name and job->orig_mtime). */
static gboolean
decompress_stream (Job *job, GError **error)
{
  g_autoptr (SluiceOutputStreamConsumer) writer = NULL;
  gboolean read_failed;

  /* A file of ours with an index: its blocks in parallel. */
  if (G_IS_FILE_DESCRIPTOR_BASED (job->in) && job->record == NULL)
    {
      g_autoptr (BlockIndex) index =
          read_index (g_file_descriptor_based_get_fd (G_FILE_DESCRIPTOR_BASED (job->in)));

      if (index != NULL)
        return decompress_indexed (job, index, error);
    }

  check_fold_init (&job->fold);
  job->loop = g_main_loop_new (NULL, FALSE);
  job->producer = sluice_ordered_item_producer_new (job->queue, 16, (GDestroyNotify) g_bytes_unref);
  writer = sluice_output_stream_consumer_new (job->producer, job->out);
  sluice_output_stream_consumer_set_close_stream (writer, FALSE);
  sluice_output_stream_consumer_start (writer);

  job->in_producer =
      sluice_ordered_item_producer_new (job->queue, 8, (GDestroyNotify) g_bytes_unref);
  sluice_ordered_item_producer_start (job->in_producer, inflate_all, job, NULL, NULL);
  job->reader = sluice_input_stream_producer_new (job->in_producer, job->in, INFLATE_IN_SIZE);
  sluice_input_stream_producer_set_close_stream (job->reader, FALSE);

  current_job = job;
  sluice_input_stream_producer_read_all_async (job->reader, G_PRIORITY_DEFAULT, NULL, on_read_all,
                                               job);
  g_main_loop_run (job->loop);
  current_job = NULL;

  job->in_bytes = sluice_input_stream_producer_get_bytes_read (job->reader);
  job->out_bytes = sluice_output_stream_consumer_get_bytes_written (writer);
  if (job->error == NULL && !g_output_stream_flush (job->out, NULL, &job->error))
    job->input_failed = FALSE;

  g_clear_object (&job->reader);
  g_clear_object (&job->in_producer);
  g_clear_object (&job->producer);
  g_clear_pointer (&job->loop, g_main_loop_unref);
  check_fold_clear (&job->fold);

  /* The writer's error first (a CRC found wrong is the input's), then the
   * inflater's (bad data, a read error); a stop is what a signal did. */
  read_failed = job->input_failed;
  if (job->error != NULL && !g_error_matches (job->error, SLUICE_ERROR, SLUICE_ERROR_STOPPED))
    {
      job->input_failed = job->error->domain == GZ_ERROR;
      g_clear_error (&job->inflate_error);
      g_propagate_error (error, g_steal_pointer (&job->error));
      return FALSE;
    }
  if (job->inflate_error != NULL)
    {
      job->input_failed = read_failed || job->inflate_error->domain == GZ_ERROR;
      g_clear_error (&job->error);
      g_propagate_error (error, g_steal_pointer (&job->inflate_error));
      return FALSE;
    }
  if (job->error != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&job->error));
      return FALSE;
    }
  return TRUE;
}

static gboolean
on_signal (gpointer data)
{
  interrupted = GPOINTER_TO_INT (data);
  /* Stops the reader too, without waiting for a read blocked on a slow
   * input; the stop then completes with SLUICE_ERROR_STOPPED. */
  if (current_job != NULL)
    {
      sluice_push_producer_stop_producing (SLUICE_PUSH_PRODUCER (current_job->producer));
      if (current_job->in_producer != NULL)
        sluice_push_producer_stop_producing (SLUICE_PUSH_PRODUCER (current_job->in_producer));
    }
  return G_SOURCE_CONTINUE;
}

/* SIGPIPE cannot go through the main loop (g_unix_signal_add() refuses
 * it): remove the temporary output here, with async-signal-safe calls
 * only, and die by the signal, as gzip does. */
static void
on_sigpipe (int signo)
{
  if (cleanup_armed)
    unlink (cleanup_path);
  signal (signo, SIG_DFL);
  raise (signo);
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

/* What went wrong, in gzip's words (the system's message for an errno)
 * rather than GIO's sentence around it. */
static const char *
reason (const GError *error)
{
  static const struct
  {
    GIOErrorEnum code;
    int errnum;
  } errnos[] = {
    { G_IO_ERROR_NOT_FOUND, ENOENT },      { G_IO_ERROR_PERMISSION_DENIED, EACCES },
    { G_IO_ERROR_NO_SPACE, ENOSPC },       { G_IO_ERROR_IS_DIRECTORY, EISDIR },
    { G_IO_ERROR_NOT_DIRECTORY, ENOTDIR }, { G_IO_ERROR_READ_ONLY, EROFS },
    { G_IO_ERROR_BROKEN_PIPE, EPIPE },     { G_IO_ERROR_FILENAME_TOO_LONG, ENAMETOOLONG },
    { G_IO_ERROR_TOO_MANY_LINKS, ELOOP },
  };

  if (error->domain == G_IO_ERROR)
    for (gsize i = 0; i < G_N_ELEMENTS (errnos); i++)
      if (error->code == (int) errnos[i].code)
        return g_strerror (errnos[i].errnum);
  return error->message;
}

/* Reports a compression that failed; returns the exit status. */
static int
report_failure (const char *label, const GError *error)
{
  if (interrupted)
    return EXIT_INTERRUPTED;
  warn ("%s: %s", label, reason (error));
  return EXIT_ERROR;
}

/* gzip's exit status for a warning (trailing garbage, an unknown suffix),
 * unless an error came too. */
#define EXIT_WARNING 2

static int
worse_status (int a, int b)
{
  if (a == EXIT_ERROR || b == EXIT_ERROR)
    return EXIT_ERROR;
  return a != EXIT_OK ? a : b;
}

typedef gboolean (*StreamFunc) (Job *job, GError **error);

static StreamFunc
mode_stream_func (void)
{
  return opt_decompress ? decompress_stream : compress_stream;
}

/* After a job that worked: gzip's warning for what followed the last
 * member, and its status. */
static int
job_status (const Job *job, const char *label)
{
  if (!job->trailing_garbage)
    return EXIT_OK;
  if (!opt_quiet)
    warn (_ ("%s: decompression OK, trailing garbage ignored"), label);
  return EXIT_WARNING;
}

static double
job_ratio (const Job *job)
{
  /* Of the compressed size to the uncompressed, both ways. */
  return opt_decompress ? ratio_percent (job->out_bytes, job->in_bytes)
                        : ratio_percent (job->in_bytes, job->out_bytes);
}

static void
job_clear (Job *job)
{
  g_clear_pointer (&job->header, g_bytes_unref);
  g_clear_pointer (&job->orig_name, g_free);
}

/* Compresses or decompresses @in to @out (standard output, or nowhere for
 * -t); @label names the input in messages. */
static int
stream_to (SluiceTaskQueue *queue,
           GInputStream *in,
           GOutputStream *out,
           const char *name,
           guint32 mtime,
           guint64 size_hint,
           const char *label)
{
  Job job;
  int status;
  g_autoptr (GError) error = NULL;

  job_init (&job, queue, in, out, name, mtime, size_hint);
  job.pass_through = opt_decompress && opt_force;
  if (!mode_stream_func () (&job, &error))
    status = report_failure (job.input_failed ? label : "stdout", error);
  else
    {
      status = job_status (&job, label);
      if (opt_verbose && opt_test)
        fprintf (stderr, _ ("%s:\t OK\n"), label);
      else if (opt_verbose)
        fprintf (stderr, "%s:\t%5.1f%%\n", label, job_ratio (&job));
    }
  job_clear (&job);
  return status;
}

static GOutputStream *
open_null (GError **error)
{
  int fd = g_open ("/dev/null", O_WRONLY | O_CLOEXEC, 0);
  if (fd < 0)
    {
      int saved = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved), "/dev/null: %s",
                   g_strerror (saved));
      return NULL;
    }
  return g_unix_output_stream_new (fd, TRUE);
}

static GOutputStream *
open_stdout_or_null (GError **error)
{
  if (!opt_test)
    return g_unix_output_stream_new (STDOUT_FILENO, FALSE);
  return open_null (error);
}

static int
stream_to_stdout (SluiceTaskQueue *queue,
                  GInputStream *in,
                  const char *name,
                  guint32 mtime,
                  guint64 size_hint,
                  const char *label)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GOutputStream) out = open_stdout_or_null (&error);

  if (out == NULL)
    {
      warn ("%s", error->message);
      return EXIT_ERROR;
    }
  return stream_to (queue, in, out, name, mtime, size_hint, label);
}

/* The suffix of a compressed file that gzip knows (-S's first), and what
 * replaces it when decompressing: .tgz gives .tar. */
static const char *
known_suffix (const char *path, const char **replacement)
{
  static const char *const suffixes[][2] = {
    { ".gz", "" }, { "-gz", "" }, { ".z", "" },       { "-z", "" },
    { "_z", "" },  { ".Z", "" },  { ".tgz", ".tar" }, { ".taz", ".tar" },
  };
  g_autofree char *base = g_path_get_basename (path);

  *replacement = "";
  if (opt_suffix != NULL && g_str_has_suffix (base, opt_suffix) &&
      strlen (base) > strlen (opt_suffix))
    return opt_suffix;
  for (gsize i = 0; i < G_N_ELEMENTS (suffixes); i++)
    if (g_str_has_suffix (base, suffixes[i][0]) && strlen (base) > strlen (suffixes[i][0]))
      {
        *replacement = suffixes[i][1];
        return suffixes[i][0];
      }
  return NULL;
}

/* The name FILE decompresses to: without its suffix, or NULL when it has
 * none that gzip knows. */
static char *
decompressed_name (const char *path)
{
  const char *replacement;
  const char *suffix = known_suffix (path, &replacement);
  g_autofree char *stem = NULL;

  if (suffix == NULL)
    return NULL;
  stem = g_strndup (path, strlen (path) - strlen (suffix));
  return g_strconcat (stem, replacement, NULL);
}

/* -N: the name stored in the header, in FILE's directory (never elsewhere:
 * only its last component counts). */
static char *
restored_name (const char *path, const char *orig_name)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *base = g_path_get_basename (orig_name);

  if (g_str_equal (base, ".") || g_str_equal (base, "..") || g_str_equal (base, G_DIR_SEPARATOR_S))
    return NULL;
  if (strchr (path, G_DIR_SEPARATOR) == NULL)
    return g_steal_pointer (&base);
  return g_build_filename (dir, base, NULL);
}

static gboolean
refuse_existing (const char *out_path)
{
  if (opt_force || !g_file_test (out_path, G_FILE_TEST_EXISTS | G_FILE_TEST_IS_SYMLINK))
    return FALSE;
  warn (_ ("%s: already exists, not overwritten (use -f to overwrite)"), out_path);
  return TRUE;
}

static int process_path (SluiceTaskQueue *queue, const char *path, gboolean in_recursion);

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

/* -r: every entry of a directory, in name order. */
static int
process_directory (SluiceTaskQueue *queue, const char *path)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (GDir) dir = g_dir_open (path, 0, &error);
  g_autoptr (GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  int status = EXIT_OK;

  if (dir == NULL)
    {
      warn ("%s: %s", path, g_strerror (EACCES));
      return EXIT_ERROR;
    }
  while ((name = g_dir_read_name (dir)) != NULL)
    g_ptr_array_add (names, g_strdup (name));
  g_ptr_array_sort (names, compare_names);
  for (guint i = 0; i < names->len && !interrupted; i++)
    {
      g_autofree char *child = g_build_filename (path, names->pdata[i], NULL);
      int child_status = process_path (queue, child, TRUE);

      if (child_status == EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED;
      status = worse_status (status, child_status);
    }
  return status;
}

static int list_file (SluiceTaskQueue *queue, const char *path);

static int
process_path (SluiceTaskQueue *queue, const char *path, gboolean in_recursion)
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
  Job job;
  struct stat st;
  struct timespec times[2];
  int fd;
  int status;
  const char *replacement;
  const char *suffix;

  /* As gzip, which opens with O_NOFOLLOW: a symbolic link is followed
   * only with -f or -c (or -t, -l), and never into a directory during -r
   * (no cycles). */
  info = g_file_query_info (file, G_FILE_ATTRIBUTE_STANDARD_TYPE "," G_FILE_ATTRIBUTE_STANDARD_SIZE,
                            G_FILE_QUERY_INFO_NOFOLLOW_SYMLINKS, NULL, &error);
  if (info != NULL && g_file_info_get_file_type (info) == G_FILE_TYPE_SYMBOLIC_LINK)
    {
      if (!opt_force && !opt_stdout && !opt_test && !opt_list)
        {
          warn ("%s: %s", path, g_strerror (ELOOP));
          return EXIT_ERROR;
        }
      g_clear_object (&info);
      info = g_file_query_info (file,
                                G_FILE_ATTRIBUTE_STANDARD_TYPE "," G_FILE_ATTRIBUTE_STANDARD_SIZE,
                                G_FILE_QUERY_INFO_NONE, NULL, &error);
      if (info != NULL && in_recursion && g_file_info_get_file_type (info) == G_FILE_TYPE_DIRECTORY)
        return EXIT_OK;
    }
  /* As gzip -d: FILE that does not exist may be named without its
   * suffix. */
  if (info == NULL && opt_decompress && !in_recursion &&
      g_error_matches (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
    {
      g_autofree char *with_suffix =
          g_strconcat (path, opt_suffix != NULL ? opt_suffix : ".gz", NULL);

      if (g_file_test (with_suffix, G_FILE_TEST_EXISTS))
        return process_path (queue, with_suffix, FALSE);
    }
  if (info == NULL)
    {
      warn ("%s: %s", path, reason (error));
      return EXIT_ERROR;
    }
  if (g_file_info_get_file_type (info) == G_FILE_TYPE_DIRECTORY)
    {
      if (opt_recursive)
        return process_directory (queue, path);
      /* gzip's warning: status 2, silenced by -q. */
      if (!opt_quiet)
        warn (_ ("%s is a directory -- ignored"), path);
      return EXIT_WARNING;
    }
  suffix = known_suffix (path, &replacement);
  if (!opt_decompress && suffix != NULL && !opt_stdout && !opt_force)
    {
      /* gzip's warning, not an error; silent in a recursion. */
      if (!in_recursion && !opt_quiet)
        warn (_ ("%s already has %s suffix -- unchanged"), path, suffix);
      return EXIT_OK;
    }
  if (opt_decompress && suffix == NULL && (in_recursion || (!opt_stdout && !opt_test && !opt_list)))
    {
      if (in_recursion)
        return EXIT_OK;
      if (!opt_quiet)
        warn (_ ("%s: unknown suffix -- ignored"), path);
      return EXIT_WARNING;
    }
  if (opt_list)
    return list_file (queue, path);
  in = g_file_read (file, NULL, &error);
  if (in == NULL)
    {
      warn ("%s: %s", path, reason (error));
      return EXIT_ERROR;
    }
  if (fstat (g_file_descriptor_based_get_fd (G_FILE_DESCRIPTOR_BASED (in)), &st) != 0)
    memset (&st, 0, sizeof st);

  base = g_path_get_basename (path);
  if (opt_stdout || opt_test)
    return stream_to_stdout (queue, G_INPUT_STREAM (in), base, (guint32) st.st_mtime,
                             (guint64) st.st_size, path);

  out_path = opt_decompress ? decompressed_name (path)
                            : g_strconcat (path, opt_suffix != NULL ? opt_suffix : ".gz", NULL);
  /* With -dN the name is known from the header only. */
  if (!(opt_decompress && opt_name) && refuse_existing (out_path))
    return EXIT_ERROR;

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
  g_strlcpy (cleanup_path, tmp_path, sizeof cleanup_path);
  cleanup_armed = strlen (tmp_path) < sizeof cleanup_path;

  job_init (&job, queue, G_INPUT_STREAM (in), out, base, (guint32) st.st_mtime,
            (guint64) st.st_size);

  if (!mode_stream_func () (&job, &error) || !g_output_stream_close (out, NULL, &error))
    {
      status = report_failure (job.input_failed ? path : out_path, error);
      goto failed;
    }
  status = job_status (&job, path);

  /* The mode and times of the input, as gzip keeps them; -N restores the
   * name and time of the header. */
  times[0] = st.st_atim;
  times[1] = st.st_mtim;
  if (opt_decompress && opt_name && job.orig_mtime != 0)
    {
      times[1].tv_sec = job.orig_mtime;
      times[1].tv_nsec = 0;
    }
  if (opt_decompress && opt_name)
    {
      char *named = job.orig_name != NULL ? restored_name (path, job.orig_name) : NULL;

      if (named != NULL)
        {
          g_free (out_path);
          out_path = named;
        }
      if (refuse_existing (out_path))
        {
          status = EXIT_ERROR;
          goto failed;
        }
    }
  if (g_chmod (tmp_path, st.st_mode & 07777) != 0 || utimensat (AT_FDCWD, tmp_path, times, 0) != 0)
    {
      if (!opt_quiet)
        warn (_ ("%s: could not keep the mode or times: %s"), out_path, g_strerror (errno));
    }
  if (g_rename (tmp_path, out_path) != 0)
    {
      warn ("%s: %s", out_path, g_strerror (errno));
      status = EXIT_ERROR;
      goto failed;
    }
  cleanup_armed = FALSE;
  if (opt_verbose && opt_keep)
    fprintf (stderr, _ ("%s:\t%5.1f%% -- created %s\n"), path, job_ratio (&job), out_path);
  else if (opt_verbose)
    fprintf (stderr, _ ("%s:\t%5.1f%% -- replaced with %s\n"), path, job_ratio (&job), out_path);
  job_clear (&job);
  if (!opt_keep && g_unlink (path) != 0)
    {
      warn ("%s: %s", path, g_strerror (errno));
      return EXIT_ERROR;
    }
  return status;

failed:
  g_unlink (tmp_path);
  cleanup_armed = FALSE;
  job_clear (&job);
  return status;
}

/* --- -l: gzip's listing, from the header and the trailer --- */

static guint64 list_total_in, list_total_out;
static guint64 list_header_bytes; /* of the last file: gzip's totals use it */
static guint list_count;

static void
print_list_sizes (guint64 in, guint64 out, guint64 header_bytes, const char *name)
{
  /* gzip's ratio: of the deflate data (without header and trailer) to the
   * uncompressed size. */
  double num = (double) out - ((double) in - (double) header_bytes);

  printf ("%19llu %19llu %5.1f%% %s\n", (unsigned long long) in, (unsigned long long) out,
          out == 0 ? 0.0 : 100.0 * num / (double) out, name);
}

/* Keeps the last INDEX_TAIL_MAX bytes seen in @tail (*tail_len of them)
 * as @n more bytes @data arrive. */
static void
tail_push (guint8 *tail, gsize *tail_len, const guint8 *data, gsize n)
{
  gsize take = MIN (n, INDEX_TAIL_MAX);
  gsize keep = MIN (*tail_len, INDEX_TAIL_MAX - take);

  memmove (tail, tail + *tail_len - keep, keep);
  memcpy (tail + keep, data + n - take, take);
  *tail_len = keep + take;
}

/* What -l keeps of standard input, read once: its first bytes, its last
 * INDEX_TAIL_MAX and its length. */
typedef struct _ListRecord
{
  guint8 head[65536];
  gsize head_len;
  guint8 tail[INDEX_TAIL_MAX];
  gsize tail_len;
  guint64 size;
} ListRecord;

static void
list_record_push (ListRecord *record, const guint8 *p, gsize n)
{
  gsize to_head = MIN (n, sizeof record->head - record->head_len);

  memcpy (record->head + record->head_len, p, to_head);
  record->head_len += to_head;
  tail_push (record->tail, &record->tail_len, p, n);
  record->size += n;
}

/* -l first decompresses @fd to nowhere, as gzip -l does (and -t): a
 * truncated or damaged file gets -t's message and status and is not
 * listed, nor one with trailing garbage (gzip's warning, status 2). With
 * @record it keeps what the listing needs of the data as it goes;
 * *@decompressed: the length of the data, of all its members, and
 * *@decompressed_crc its CRC-32. */
static int
list_test (SluiceTaskQueue *queue,
           int fd,
           const char *label,
           ListRecord *record,
           guint64 *decompressed,
           guint32 *decompressed_crc)
{
  g_autoptr (GInputStream) in = g_unix_input_stream_new (fd, FALSE);
  g_autoptr (GOutputStream) out = NULL;
  g_autoptr (GError) error = NULL;
  Job job;
  int status;

  out = open_null (&error);
  if (out == NULL)
    {
      warn ("%s", error->message);
      return EXIT_ERROR;
    }
  job_init (&job, queue, in, out, NULL, 0, 0);
  job.record = record;
  if (!decompress_stream (&job, &error))
    status = report_failure (job.input_failed ? label : "stdout", error);
  else
    status = job_status (&job, label);
  *decompressed = job.out_bytes;
  *decompressed_crc = job.fold.all_crc;
  job_clear (&job);
  return status;
}

/* gzip -l for @path, or for standard input when @path is NULL (named
 * "stdout" in the list and "stdin" in messages, as gzip's). */
static int
list_file (SluiceTaskQueue *queue, const char *path)
{
  static const char months[][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
  const char *label = path != NULL ? path : "stdin";
  guint8 head[65536];
  guint8 trailer[8] = { 0 };
  g_autofree guint8 *tail = g_malloc (INDEX_TAIL_MAX);
  g_autofree ListRecord *record = path == NULL ? g_new0 (ListRecord, 1) : NULL;
  gsize tail_len = 0;
  guint64 index_bytes = 0;
  guint64 uncompressed, decompressed = 0;
  guint32 decompressed_crc = 0;
  guint64 size;
  gsize pos = 10;
  ssize_t got;
  struct stat st;
  g_autofree char *name = NULL;
  int fd = path != NULL ? g_open (path, O_RDONLY | O_CLOEXEC, 0) : STDIN_FILENO;
  int flags;
  gboolean read_ok = TRUE;
  int status;

  if (fd < 0 || fstat (fd, &st) != 0)
    {
      warn ("%s: %s", label, g_strerror (errno));
      if (fd >= 0 && path != NULL)
        close (fd);
      return EXIT_ERROR;
    }
  status = list_test (queue, fd, label, record, &decompressed, &decompressed_crc);
  if (status != EXIT_OK)
    {
      if (path != NULL)
        close (fd);
      return status;
    }
  if (path != NULL)
    {
      got = pread (fd, head, sizeof head, 0);
      size = (guint64) st.st_size;
      tail_len = (gsize) MIN (size, INDEX_TAIL_MAX);
      read_ok = got >= 0 && pread_all (fd, tail, tail_len, size - tail_len);
    }
  else
    {
      got = (ssize_t) record->head_len;
      memcpy (head, record->head, record->head_len);
      size = record->size;
      tail_len = record->tail_len;
      memcpy (tail, record->tail, tail_len);
    }
  if (tail_len >= 8)
    memcpy (trailer, tail + tail_len - 8, 8);
  if (!read_ok)
    {
      int saved = errno;

      if (path != NULL)
        close (fd);
      warn ("%s: %s", label, g_strerror (saved));
      return EXIT_ERROR;
    }
  if (got >= 2 && (head[0] != 0x1f || head[1] != 0x8b))
    {
      if (path != NULL)
        close (fd);
      warn ("%s: %s", label, _ ("not in gzip format"));
      return EXIT_ERROR;
    }
  /* The header's length: extra field, name, comment, header CRC. */
  flags = got >= 10 ? head[3] : 0;
  if (got >= 10 && (flags & 4))
    pos = got >= 12 ? 12 + (gsize) (head[10] | head[11] << 8) : (gsize) got + 1;
  for (int bit = 8; bit <= 16; bit <<= 1)
    if (flags & bit)
      {
        gsize start = pos;

        while (pos < (gsize) got && head[pos] != 0)
          pos++;
        /* -lN: the stored name, in FILE's directory, as gzip -lN. */
        if (bit == 8 && opt_name && pos < (gsize) got && pos > start)
          name = restored_name (path != NULL ? path : "stdout", (const char *) head + start);
        pos++;
      }
  if (flags & 2)
    pos += 2;
  if (got < 10 || pos + 8 > size)
    {
      if (path != NULL)
        close (fd);
      warn ("%s: %s", label, _ ("unexpected end of file"));
      return EXIT_ERROR;
    }
  uncompressed = get_le32 (trailer + 4);
  /* A file of ours with an index, from a file or a pipe: the sizes and
   * CRC of the data, not of the empty index member whose trailer ends the
   * file; its bytes count as header in the ratio, as the data's header.
   * The last member's summary is taken only when it tells the length and
   * the CRC-32 of what was just decompressed, from every member (each
   * member was checked against its own trailer): the chain is not walked
   * (the decompression read it all, and works from a pipe, where the
   * chain's start is gone), but an index that is not of this whole data
   * (cat a.gz b.gz of two -i files: b's) is not believed, and the listing
   * is gzip's, of the last member. */
  {
    guint32 crc;
    guint64 total, bytes;

    if (index_summary (tail, tail_len, size, &crc, &total, &bytes) && total == decompressed &&
        crc == decompressed_crc)
      {
        put_le32 (trailer, crc);
        uncompressed = total;
        index_bytes = bytes;
      }
  }
  if (path != NULL)
    close (fd);

  if (name == NULL && path != NULL)
    name = decompressed_name (path);
  if (name == NULL)
    name = g_strdup (path != NULL ? path : "stdout");
  if (list_count++ == 0)
    {
      if (opt_verbose)
        printf ("method  crc     date  time  ");
      printf ("%s\n", "         compressed        uncompressed  ratio uncompressed_name");
    }
  if (opt_verbose)
    {
      /* As gzip -l: the time of FILE (of standard input if it is a file,
       * else 0, as gzip's); with -N the stored one (if any). */
      time_t when = path != NULL || S_ISREG (st.st_mode) ? st.st_mtime : 0;

      if (opt_name && get_le32 (head + 4) != 0)
        when = (time_t) get_le32 (head + 4);
      struct tm tm;

      printf ("%5s %08x ", head[2] == 8 ? "defla" : "", get_le32 (trailer));
      if (localtime_r (&when, &tm) != NULL)
        printf ("%s%3d %02d:%02d ", months[tm.tm_mon], tm.tm_mday, tm.tm_hour, tm.tm_min);
      else
        printf ("??? ?? ??:?? ");
    }
  list_header_bytes = pos + 8 + index_bytes;
  list_total_in += size;
  list_total_out += uncompressed;
  print_list_sizes (size, uncompressed, list_header_bytes, name);
  return EXIT_OK;
}

static void
list_totals (void)
{
  if (list_count < 2)
    return;
  if (opt_verbose)
    printf ("%28s", "");
  print_list_sizes (list_total_in, list_total_out, list_header_bytes, "(totals)");
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
  Job job;
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
  job_init (&job, queue, in, out, NULL, 0, size);

  start = g_get_monotonic_time ();
  if (!compress_stream (&job, &error) || !g_output_stream_close (out, NULL, &error))
    {
      g_unlink (tmp_path);
      return report_failure (tmp_path, error);
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
  printf (_ ("  size out     %12llu bytes\n"), (unsigned long long) job.out_bytes);
  printf (_ ("  ratio        %12.2f%% saved\n"), ratio_percent (size, job.out_bytes));
  printf (_ ("  time         %12.3f s\n"), seconds);
  printf (_ ("  throughput   %12.1f MB/s\n"), size / seconds / 1e6);
  printf (_ ("  threads      %12u (level %d, blocks of %d KiB)\n"),
          sluice_task_queue_get_max_threads (queue), opt_level, opt_blocksize_kib);
  printf (_ ("  verified     decompresses to the input byte for byte\n"));
  return EXIT_OK;
}

/* Standard input to standard output. */
static int
process_stdin (SluiceTaskQueue *queue)
{
  g_autoptr (GInputStream) in = NULL;

  if (opt_list)
    return list_file (queue, NULL);
  in = g_unix_input_stream_new (STDIN_FILENO, FALSE);
  /* gzip's name for it in messages. */
  return stream_to_stdout (queue, in, NULL, 0, 0, "stdin");
}

static int
run (int argc, char *argv[])
{
  g_autoptr (GOptionContext) context = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (SluiceTaskQueue) queue = NULL;
  gboolean to_stdout;
  gboolean from_stdin;
  int status = EXIT_OK;

  /* Called as sluice-gunzip or sluice-zcat (links to sluice-gzip), it
   * decompresses, as gunzip and zcat do. */
  {
    g_autofree char *name = g_path_get_basename (argv[0]);

    if (strstr (name, "gunzip") != NULL)
      opt_decompress = TRUE;
    else if (strstr (name, "zcat") != NULL)
      opt_decompress = opt_stdout = TRUE;
  }

  context = g_option_context_new (NULL);
  g_option_context_set_translation_domain (context, GETTEXT_PACKAGE);
  g_option_context_set_summary (
      context,
      _ ("Compress FILEs (or standard input) in parallel into gzip format, in order, or\n"
         "decompress them with -d. A FILE of - is standard input. With --demo, compress a\n"
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
  if (opt_processes != -1 && (opt_processes < 1 || opt_processes > 1024))
    {
      warn (_ ("-p needs a number of threads from 1 to 1024"));
      return EXIT_ERROR;
    }
  if (opt_blocksize_kib < 32 || opt_blocksize_kib > 512 * 1024)
    {
      warn (_ ("-b needs a block size from 32 to 524288 KiB"));
      return EXIT_ERROR;
    }
  /* The default: auto, which --redis cannot do (its probes deflate both
   * ways here): zlib there. */
  if (opt_deflate == NULL)
    deflate_with = opt_redis != NULL ? DEFLATE_ZLIB : DEFLATE_AUTO;
  else if (g_str_equal (opt_deflate, "zlib"))
    deflate_with = DEFLATE_ZLIB;
  else if (g_str_equal (opt_deflate, "libdeflate"))
    deflate_with = DEFLATE_LIBDEFLATE;
  else if (g_str_equal (opt_deflate, "auto"))
    deflate_with = DEFLATE_AUTO;
  else
    {
      warn (_ ("--deflate needs zlib, libdeflate or auto"));
      return EXIT_ERROR;
    }
  if (deflate_with == DEFLATE_AUTO && opt_redis != NULL)
    {
      warn (_ ("--deflate=auto cannot be used with --redis: its probe blocks are deflated both "
               "ways in this process's threads; give --deflate=zlib or --deflate=libdeflate"));
      return EXIT_ERROR;
    }
  if (opt_quiet)
    opt_verbose = FALSE;
  if (opt_suffix != NULL && (opt_suffix[0] == '\0' || strchr (opt_suffix, '/') != NULL))
    {
      warn (_ ("invalid suffix '%s'"), opt_suffix);
      return EXIT_ERROR;
    }
  /* -t and -l read compressed data and write none. */
  if (opt_test || opt_list)
    opt_decompress = TRUE;

  g_unix_signal_add (SIGINT, on_signal, GINT_TO_POINTER (SIGINT));
  g_unix_signal_add (SIGTERM, on_signal, GINT_TO_POINTER (SIGTERM));
  g_unix_signal_add (SIGHUP, on_signal, GINT_TO_POINTER (SIGHUP));
  signal (SIGPIPE, on_sigpipe);
  queue = make_queue ();
  if (opt_redis != NULL && !opt_decompress && !hire_redis_worker (queue, &error))
    {
      warn ("%s: %s", opt_redis, error->message);
      return EXIT_ERROR;
    }

  if (opt_demo)
    {
      if (!opt_progress)
        opt_no_progress = TRUE;
      return run_demo (queue);
    }

  opt_progress_explicit = opt_progress;
  if (!opt_progress && !opt_no_progress && isatty (STDERR_FILENO))
    opt_progress = TRUE; /* shown only when the size is known */

  /* As gzip: no FILE is standard input, and compressed data never goes to
   * a terminal unless forced. */
  to_stdout = opt_stdout || opt_files == NULL || opt_files[0] == NULL ||
              g_strv_contains ((const char *const *) opt_files, "-");
  from_stdin = opt_files == NULL || opt_files[0] == NULL ||
               g_strv_contains ((const char *const *) opt_files, "-");
  if (!opt_decompress && to_stdout && isatty (STDOUT_FILENO) && !opt_force)
    {
      warn (_ ("compressed data not written to a terminal (use -f to force)"));
      return EXIT_ERROR;
    }
  if (opt_decompress && from_stdin && isatty (STDIN_FILENO) && !opt_force)
    {
      warn (_ ("compressed data not read from a terminal (use -f to force)"));
      return EXIT_ERROR;
    }
  if (opt_files == NULL || opt_files[0] == NULL)
    return process_stdin (queue);

  for (char **file = opt_files; *file != NULL && !interrupted; file++)
    {
      int file_status =
          g_str_equal (*file, "-") ? process_stdin (queue) : process_path (queue, *file, FALSE);

      if (file_status == EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED;
      status = worse_status (status, file_status);
    }
  if (opt_list)
    list_totals ();
  return status;
}

int
main (int argc, char *argv[])
{
  int status;

#ifdef __GLIBC__
  /* The blocks (128 KiB and more) come and go by the thousand: from the
   * heap, kept there, rather than mapped and unmapped each time, which
   * costs a page fault per 4 KiB (a third of the CPU time of an indexed
   * decompression). Memory stays bounded by the producers' windows. */
  mallopt (M_MMAP_THRESHOLD, 16 * 1024 * 1024);
  mallopt (M_TRIM_THRESHOLD, 64 * 1024 * 1024);
#endif
  /* Standard output may be the compressed stream: GLib's debug and info
   * messages (G_MESSAGES_DEBUG) go to standard error. */
  g_log_writer_default_set_use_stderr (TRUE);
  setlocale (LC_ALL, "");
  bindtextdomain (GETTEXT_PACKAGE, LOCALEDIR);
  bind_textdomain_codeset (GETTEXT_PACKAGE, "UTF-8");
  textdomain (GETTEXT_PACKAGE);

  status = run (argc, argv);
  g_strfreev (opt_files);
  g_free (opt_suffix);
  g_free (opt_redis);
  g_free (opt_redis_series);
  if (interrupted)
    {
      /* Everything is cleaned up: end by the signal itself, as gzip does,
       * so that the parent sees it (the shell's status is 128 + it). */
      fflush (stdout);
      signal (interrupted, SIG_DFL);
      raise (interrupted);
    }
  return status;
}
