/* sluice-gzip-deflate.c: the module of named functions that deflates the
 * blocks of `sluice-gzip --redis` in remote sluice-worker processes
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Installed as LIBDIR/sluice/sluice-gzip-deflate.so; serve it with
 *
 *   sluice-worker --redis=URL --series=gzip LIBDIR/sluice/sluice-gzip-deflate.so
 *
 * "deflate_block" (ayayi) -> (ayuu): deflates a block (the first ay) with
 * a preset dictionary (the second ay: the last 32 KiB of the block before
 * it, empty for the first block and with -i) at a level (1 to 9), raw
 * deflate ending with a sync flush, exactly as sluice-gzip deflates a
 * block in its own threads (the same zlib parameters, so the same bytes
 * with the same zlib); returns the compressed bytes, the block's CRC-32
 * and its length. sluice-gzip writes the gzip header, the empty final
 * block and the trailer itself, so no block needs to know it is the last.
 */

#include <sluice/sluice.h>

#include <gmodule.h>
#include <zlib.h>

#include "gzip-deflate-block.h"

/* The result of a block: (ayuu), or NULL with @error set from @message. */
static GVariant *
block_result (
    const guint8 *in, gsize in_len, guint8 *out, gsize out_len, const char *message, GError **error)
{
  if (out == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "deflate_block: %s",
                   message != NULL ? message : "deflate error");
      return NULL;
    }
  return g_variant_new (
      "(@ayuu)",
      g_variant_new_from_data (G_VARIANT_TYPE_BYTESTRING, out, out_len, TRUE, g_free, out),
      (guint32) crc32 (0, in, (uInt) in_len), (guint32) in_len);
}

static gboolean
check_args (gint32 level, gsize dict_len, gsize in_len, GError **error)
{
  if (level < 1 || level > 9 || dict_len > GZIP_DICT_SIZE || in_len > G_MAXUINT32 / 2)
    {
      g_set_error (error, SLUICE_ERROR, SLUICE_ERROR_INVALID_ARGUMENTS,
                   "deflate_block: level %d, dictionary of %" G_GSIZE_FORMAT
                   " bytes or block of %" G_GSIZE_FORMAT " bytes out of range",
                   level, dict_len, in_len);
      return FALSE;
    }
  return TRUE;
}

static GVariant *
deflate_block (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  g_autoptr (GVariant) block = g_variant_get_child_value (args, 0);
  g_autoptr (GVariant) dict = g_variant_get_child_value (args, 1);
  gint32 level;
  gsize in_len, dict_len, out_len = 0;
  const guint8 *in = g_variant_get_fixed_array (block, &in_len, 1);
  const guint8 *dict_data = g_variant_get_fixed_array (dict, &dict_len, 1);
  const char *message = NULL;
  guint8 *out;

  g_variant_get_child (args, 2, "i", &level);
  if (!check_args (level, dict_len, in_len, error))
    return NULL;
  out = gzip_deflate_block (level, dict_data, dict_len, in, in_len, &out_len, &message);
  return block_result (in, in_len, out, out_len, message, error);
}

/* "deflate_block_libdeflate" (ayi) -> (ayuu): as sluice-gzip
 * --deflate=libdeflate deflates a block (no dictionary). */
static GVariant *
deflate_block_libdeflate (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  g_autoptr (GVariant) block = g_variant_get_child_value (args, 0);
  gint32 level;
  gsize in_len, out_len = 0;
  const guint8 *in = g_variant_get_fixed_array (block, &in_len, 1);
  const char *message = NULL;
  guint8 *out;

  g_variant_get_child (args, 1, "i", &level);
  if (!check_args (level, 0, in_len, error))
    return NULL;
  out = gzip_deflate_block_libdeflate (level, in, in_len, &out_len, &message);
  return block_result (in, in_len, out, out_len, message, error);
}

G_MODULE_EXPORT gboolean sluice_worker_module_init (SluiceWorkerService *service, GError **error);

G_MODULE_EXPORT gboolean
sluice_worker_module_init (SluiceWorkerService *service, GError **error)
{
  sluice_worker_service_register (service, "deflate_block", "(ayayi)", deflate_block, NULL, NULL);
  sluice_worker_service_register (service, "deflate_block_libdeflate", "(ayi)",
                                  deflate_block_libdeflate, NULL, NULL);
  return TRUE;
}
