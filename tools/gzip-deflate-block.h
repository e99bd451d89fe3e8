/* gzip-deflate-block.h: deflating one block of sluice-gzip, in its own
 * threads or in the remote workers of sluice-gzip --redis
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

/* The dictionary of a block: the last 32 KiB of the block before it. */
#define GZIP_DICT_SIZE 32768

guint8 *gzip_deflate_block (int level,
                            const guint8 *dict,
                            gsize dict_len,
                            const guint8 *in,
                            gsize in_len,
                            gsize *out_len,
                            const char **zlib_message);

guint8 *gzip_deflate_block_libdeflate (
    int level, const guint8 *in, gsize in_len, gsize *out_len, const char **message);
