/* sluice-worker-wire-private.h: GVariants across org.sluice.Worker1
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* A D-Bus variant cannot hold every GVariant (no maybe types, no empty
 * tuples), so values cross as their type string and their GVariant
 * serialisation (GLib's own format, in the byte order of the machine: the
 * two ends run on one). */

/* Appends @value's type and data ("say") to @builder. */
static inline void
sluice_wire_add (GVariantBuilder *builder, GVariant *value)
{
  g_variant_builder_add (builder, "s", g_variant_get_type_string (value));
  g_variant_builder_add_value (builder, g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE,
                                                                   g_variant_get_data (value),
                                                                   g_variant_get_size (value), 1));
}

/* The value of @type_string and @data (an "ay"), checked: NULL with
 * @error set if the type is not a definite type. Untrusted data is safe
 * (GVariant reads non-normal forms as defaults). Transfer full. */
static inline GVariant *
sluice_wire_get (const char *type_string, GVariant *data, GError **error)
{
  gsize size;
  gconstpointer bytes;
  GBytes *copy;
  GVariant *value;

  if (!g_variant_type_string_is_valid (type_string) ||
      !g_variant_type_is_definite ((const GVariantType *) type_string))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "“%s” is not a definite type",
                   type_string);
      return NULL;
    }
  bytes = g_variant_get_fixed_array (data, &size, 1);
  copy = g_bytes_new (bytes, size);
  value = g_variant_ref_sink (
      g_variant_new_from_bytes ((const GVariantType *) type_string, copy, FALSE));
  g_bytes_unref (copy);
  return value;
}

G_END_DECLS
