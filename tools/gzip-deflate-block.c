/* gzip-deflate-block.c: deflating one block of sluice-gzip, in its own
 * threads or in the remote workers of sluice-gzip --redis
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * One source for both, so that a block deflates to the same bytes
 * wherever it runs (with the same zlib).
 */

#include "gzip-deflate-block.h"

#include <zlib.h>

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

/* One deflate state per thread, reset for every block. */
static GPrivate thread_deflater = G_PRIVATE_INIT (deflater_free);

static z_stream *
get_deflater (int level)
{
  Deflater *deflater = g_private_get (&thread_deflater);

  if (deflater != NULL && deflater->level == level)
    {
      deflateReset (&deflater->strm);
      return &deflater->strm;
    }
  deflater = g_new0 (Deflater, 1);
  deflater->level = level;
  /* Raw deflate: the gzip header and trailer are written around it. */
  if (deflateInit2 (&deflater->strm, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    g_error ("deflateInit2 failed: out of memory");
  g_private_replace (&thread_deflater, deflater);
  return &deflater->strm;
}

/* Deflates @in at @level with @dict (of at most GZIP_DICT_SIZE bytes;
 * none when @dict_len is 0) as its preset dictionary, ending with a sync
 * flush so that the blocks concatenate. Returns the compressed bytes
 * (g_free) and their length in @out_len, or NULL with zlib's message in
 * @zlib_message. */
guint8 *
gzip_deflate_block (int level,
                    const guint8 *dict,
                    gsize dict_len,
                    const guint8 *in,
                    gsize in_len,
                    gsize *out_len,
                    const char **zlib_message)
{
  z_stream *strm = get_deflater (level);
  guint8 *out;
  gsize cap;

  if (dict_len > 0)
    deflateSetDictionary (strm, dict, (uInt) dict_len);

  /* The bound covers Z_FINISH; a sync flush adds at most a few bytes. */
  cap = deflateBound (strm, in_len) + 64;
  out = g_malloc (cap);
  strm->next_in = (Bytef *) in;
  strm->avail_in = (uInt) in_len;
  strm->next_out = out;
  strm->avail_out = (uInt) cap;
  for (;;)
    {
      int ret = deflate (strm, Z_SYNC_FLUSH);

      if (ret != Z_OK && ret != Z_BUF_ERROR)
        {
          *zlib_message = strm->msg;
          g_free (out);
          return NULL;
        }
      if (strm->avail_in == 0 && strm->avail_out > 0)
        break;
      /* Never with deflateBound's margin, but be exact rather than sorry. */
      out = g_realloc (out, cap * 2);
      strm->next_out = out + cap;
      strm->avail_out = (uInt) cap;
      cap *= 2;
    }
  *out_len = cap - strm->avail_out;
  return out;
}
