/* sluice-worker-wire-private.h: GVariants across org.sluice.Worker1
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>
#include <string.h>

G_BEGIN_DECLS

/* A D-Bus variant cannot hold every GVariant (no maybe types, no empty
 * tuples), so values cross as their type string and their GVariant
 * serialisation (GLib's own format, in the byte order of the machine: the
 * two ends run on one). */

/* @value's data, as an "ay". Floating. */
static inline GVariant *
sluice_wire_bytes (GVariant *value)
{
  return g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, g_variant_get_data (value),
                                    g_variant_get_size (value), 1);
}

/* Appends @value's type and data ("say") to @builder. */
static inline void
sluice_wire_add (GVariantBuilder *builder, GVariant *value)
{
  g_variant_builder_add (builder, "s", g_variant_get_type_string (value));
  g_variant_builder_add_value (builder, sluice_wire_bytes (value));
}

/* Whether @type_string is a definite type (the type of a value); sets
 * @error if not. */
static inline gboolean
sluice_wire_type_check (const char *type_string, GError **error)
{
  if (!g_variant_type_string_is_valid (type_string) ||
      !g_variant_type_is_definite ((const GVariantType *) type_string))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "“%s” is not a definite type",
                   type_string);
      return FALSE;
    }
  return TRUE;
}

/* The value of definite type @type_string and @size bytes at @bytes
 * (copied). Untrusted data is safe (GVariant reads non-normal forms as
 * defaults). Transfer full. */
static inline GVariant *
sluice_wire_value_checked (const char *type_string, gconstpointer bytes, gsize size)
{
  GBytes *copy = g_bytes_new (bytes, size);
  GVariant *value = g_variant_ref_sink (
      g_variant_new_from_bytes ((const GVariantType *) type_string, copy, FALSE));

  g_bytes_unref (copy);
  return value;
}

/* The value of @type_string and @size bytes at @bytes (copied), checked:
 * NULL with @error set if the type is not a definite type. Transfer
 * full. */
static inline GVariant *
sluice_wire_value (const char *type_string, gconstpointer bytes, gsize size, GError **error)
{
  if (!sluice_wire_type_check (type_string, error))
    return NULL;
  return sluice_wire_value_checked (type_string, bytes, size);
}

/* The value of @type_string and @data (an "ay"), as sluice_wire_value ()
 * reads it. */
static inline GVariant *
sluice_wire_get (const char *type_string, GVariant *data, GError **error)
{
  gsize size;
  gconstpointer bytes = g_variant_get_fixed_array (data, &size, 1);

  return sluice_wire_value (type_string, bytes, size, error);
}

/* Batches (CallMany, Results) cross as one byte array: the GVariant
 * serialisation of a tuple of arrays, which GDBus reads and writes in one
 * piece, where a D-Bus array of structures costs it (and GVariant) work
 * for every member. A list of values is four arrays: ids (at), type
 * strings (as), where each value's data ends (at) in the data of all of
 * them (ay). */

typedef struct
{
  GArray *ids;      /* of guint64 */
  GPtrArray *types; /* of const char *, borrowed from the values */
  GArray *ends;     /* of guint64 */
  GByteArray *data;
} SluiceWireValues;

static inline void
sluice_wire_values_init (SluiceWireValues *values)
{
  values->ids = g_array_new (FALSE, FALSE, sizeof (guint64));
  values->types = g_ptr_array_new ();
  values->ends = g_array_new (FALSE, FALSE, sizeof (guint64));
  values->data = g_byte_array_new ();
}

/* A new "as" of the @n strings of @strv (floating), serialised at once
 * (GVariant's format: the strings with their nul, then the framing
 * offsets, little-endian, of the size the whole takes): what
 * g_variant_new_strv () makes, without its GVariant per string, which
 * the batch then serialises again (~1,500 instructions a string). */
static inline GVariant *
sluice_wire_strv_new (const char *const *strv, gsize n)
{
  gsize *lengths;
  gsize body = 0, offset_size, size, at = 0;
  guint8 *data;

  if (n == 0)
    return g_variant_new_strv (NULL, 0);
  lengths = g_new (gsize, n);
  for (gsize i = 0; i < n; i++)
    body += (lengths[i] = strlen (strv[i]) + 1);
  offset_size = body + n <= G_MAXUINT8        ? 1
                : body + 2 * n <= G_MAXUINT16 ? 2
                : body + 4 * n <= G_MAXUINT32 ? 4
                                              : 8;
  size = body + offset_size * n;
  data = g_malloc (size);
  for (gsize i = 0; i < n; i++)
    {
      memcpy (data + at, strv[i], lengths[i]);
      at += lengths[i];
      for (gsize b = 0; b < offset_size; b++)
        data[body + i * offset_size + b] = (guint8) ((guint64) at >> (8 * b));
    }
  g_free (lengths);
  return g_variant_new_from_data (G_VARIANT_TYPE_STRING_ARRAY, data, size, TRUE, g_free, data);
}

/* Adds @value (which must live until sluice_wire_values_end ()). */
static inline void
sluice_wire_values_add (SluiceWireValues *values, guint64 id, GVariant *value)
{
  guint64 end;

  gsize size = g_variant_get_size (value);
  guint64 small[32]; /* aligned for any GVariant */

  g_array_append_val (values->ids, id);
  g_ptr_array_add (values->types, (gpointer) g_variant_get_type_string (value));
  /* g_variant_get_data () would serialise a small value built from parts
   * (a result of g_variant_new ()) into a new buffer of its own, kept
   * with it: serialised on the stack instead (g_variant_store () needs
   * an aligned place; the values in @data are not aligned, the reader
   * copies them). */
  if (size <= sizeof small)
    {
      g_variant_store (value, small);
      g_byte_array_append (values->data, (const guint8 *) small, (guint) size);
    }
  else
    g_byte_array_append (values->data, g_variant_get_data (value), (guint) size);
  end = values->data->len;
  g_array_append_val (values->ends, end);
}

/* Frees @values; adds its four arrays to @builder (of a tuple). */
static inline void
sluice_wire_values_end (SluiceWireValues *values, GVariantBuilder *builder)
{
  g_variant_builder_add_value (builder,
                               g_variant_new_fixed_array (G_VARIANT_TYPE_UINT64, values->ids->data,
                                                          values->ids->len, sizeof (guint64)));
  g_variant_builder_add_value (
      builder,
      sluice_wire_strv_new ((const char *const *) values->types->pdata, values->types->len));
  g_variant_builder_add_value (builder,
                               g_variant_new_fixed_array (G_VARIANT_TYPE_UINT64, values->ends->data,
                                                          values->ends->len, sizeof (guint64)));
  g_variant_builder_add_value (
      builder,
      g_variant_new_fixed_array (G_VARIANT_TYPE_BYTE, values->data->data, values->data->len, 1));
  g_array_unref (values->ids);
  g_ptr_array_unref (values->types);
  g_array_unref (values->ends);
  g_byte_array_unref (values->data);
}

/* A list of values read from a batch, pointing into it. */
typedef struct
{
  gsize n;
  const guint64 *ids;
  const char **types; /* (owned) container */
  const guint64 *ends;
  const guint8 *data;
  gsize size;
  const char *checked_type; /* (nullable) the last type found definite */
  /* (owned) (nullable): when the values all have one fixed-size type T,
   * their data is the serialisation of an "aT" (GVariant's format for an
   * array of fixed-size elements: the elements one after the other):
   * that array, over an aligned copy of the data, whose children are the
   * values (see sluice_wire_values_uniform ()). */
  GVariant *uniform;
} SluiceWireValuesView;

static inline const void *
sluice_wire_child_array (GVariant *tuple, gsize index, gsize element_size, gsize *n)
{
  GVariant *child = g_variant_get_child_value (tuple, index);
  const void *elements = g_variant_get_fixed_array (child, n, element_size);

  /* The tuple holds the data. */
  g_variant_unref (child);
  return elements;
}

/* A framing offset of @offset_size bytes at @at (GVariant stores them
 * little-endian). */
static inline gsize
sluice_wire_offset (const guint8 *at, gsize offset_size)
{
  guint64 value = 0;

  for (gsize i = 0; i < offset_size; i++)
    value |= (guint64) at[i] << (8 * i);
  return (gsize) value;
}

/* The strings of @array (of type "as"), pointing into its data, in a new
 * NULL-terminated array (free it with g_free ()), their number in @n: what
 * g_variant_get_strv () gives, without its GVariant per string (~1,900
 * instructions a string, the batches' names and types): the framing
 * offsets of the array's serialisation (GVariant's format) are read in
 * place. An array not in normal form (which only a peer that does not
 * speak the protocol sends) goes through g_variant_get_strv (), which
 * reads it as GVariant defines. */
static inline const char **
sluice_wire_strv (GVariant *array, gsize *n)
{
  const guint8 *data = g_variant_get_data (array);
  gsize size = g_variant_get_size (array);
  gsize offset_size = size <= G_MAXUINT8    ? 1
                      : size <= G_MAXUINT16 ? 2
                      : size <= G_MAXUINT32 ? 4
                                            : 8;
  gsize last_end, count, start = 0;
  const char **strv;

  if (size == 0)
    {
      *n = 0;
      return g_new0 (const char *, 1);
    }
  if (data == NULL || size < offset_size)
    return g_variant_get_strv (array, n);
  last_end = sluice_wire_offset (data + size - offset_size, offset_size);
  if (last_end > size - offset_size || (size - last_end) % offset_size != 0)
    return g_variant_get_strv (array, n);
  count = (size - last_end) / offset_size;
  strv = g_new (const char *, count + 1);
  for (gsize i = 0; i < count; i++)
    {
      gsize end = sluice_wire_offset (data + last_end + i * offset_size, offset_size);

      /* A string: nul-terminated UTF-8 without other nul. */
      if (end <= start || end > last_end || data[end - 1] != '\0' ||
          !g_utf8_validate ((const char *) data + start, (gssize) (end - start - 1), NULL))
        {
          g_free (strv);
          return g_variant_get_strv (array, n);
        }
      strv[i] = (const char *) data + start;
      start = end;
    }
  strv[count] = NULL;
  *n = count;
  return strv;
}

/* The array and the check of the type cost about as much as 4 values
 * read alone: fewer values are read alone. */
#define SLUICE_WIRE_UNIFORM_MIN 8

/* The "aT" of sluice_wire_values_view () (@view->uniform), or NULL: when
 * its @n values (SLUICE_WIRE_UNIFORM_MIN at least) all have the type T (a
 * definite type of a fixed size S) and S bytes each. Its children are
 * then what sluice_wire_value_checked () makes of each value (GVariant
 * reads an untrusted child of a fixed size as it reads that value alone),
 * for a GVariant each that refers to the one copy of the data: no GBytes,
 * no copy and no look-up of the type (under GLib's lock of types) per
 * value. About 800 instructions less a value (a result of the worker, an
 * argument of the helper): g_variant_get_child_value () itself costs
 * ~1,500, about what the look-up did. */
static inline GVariant *
sluice_wire_values_uniform (SluiceWireValuesView *view)
{
  const char *type = view->n > 0 ? view->types[0] : NULL;
  gsize size = view->n > 0 ? view->ends[0] : 0;
  GVariant *probe, *array;
  GBytes *copy;
  char *array_type;

  if (view->n < SLUICE_WIRE_UNIFORM_MIN || size == 0 || view->size != size * view->n ||
      !sluice_wire_type_check (type, NULL))
    return NULL;
  for (gsize i = 1; i < view->n; i++)
    if (view->ends[i] != (i + 1) * size || strcmp (view->types[i], type) != 0)
      return NULL;
  /* A value of a fixed-size type read from data of another size is its
   * default, of its fixed size; of another type it has the size of the
   * data (none here). */
  probe = g_variant_ref_sink (
      g_variant_new_from_data ((const GVariantType *) type, NULL, 0, FALSE, NULL, NULL));
  if (g_variant_get_size (probe) != size)
    {
      g_variant_unref (probe);
      return NULL;
    }
  g_variant_unref (probe);
  array_type = g_strconcat ("a", type, NULL);
  /* One level deeper than the values: within GVariant's limit? */
  if (!g_variant_type_string_is_valid (array_type))
    {
      g_free (array_type);
      return NULL;
    }
  copy = g_bytes_new (view->data, view->size);
  array = g_variant_ref_sink (
      g_variant_new_from_bytes ((const GVariantType *) array_type, copy, FALSE));
  g_bytes_unref (copy);
  g_free (array_type);
  if (g_variant_n_children (array) != view->n)
    g_clear_pointer (&array, g_variant_unref);
  return array;
}

/* Reads the list of values that starts at child @index of @tuple (which
 * must outlive @view): FALSE if it is not consistent. */
static inline gboolean
sluice_wire_values_view (GVariant *tuple, gsize index, SluiceWireValuesView *view)
{
  GVariant *types = g_variant_get_child_value (tuple, index + 1);
  gsize n_types, n_ends;

  view->ids = sluice_wire_child_array (tuple, index, sizeof (guint64), &view->n);
  view->types = sluice_wire_strv (types, &n_types);
  g_variant_unref (types);
  view->ends = sluice_wire_child_array (tuple, index + 2, sizeof (guint64), &n_ends);
  view->data = sluice_wire_child_array (tuple, index + 3, 1, &view->size);
  view->checked_type = NULL;
  view->uniform = NULL;
  if (n_types != view->n || n_ends != view->n)
    return FALSE;
  for (gsize i = 0; i < view->n; i++)
    if (view->ends[i] > view->size || (i > 0 && view->ends[i] < view->ends[i - 1]))
      return FALSE;
  view->uniform = sluice_wire_values_uniform (view);
  return TRUE;
}

static inline void
sluice_wire_values_view_clear (SluiceWireValuesView *view)
{
  g_free (view->types);
  view->types = NULL;
  g_clear_pointer (&view->uniform, g_variant_unref);
}

/* Value @i of @view, checked as sluice_wire_value () does (a type that
 * is the last one checked is not checked again: a batch's values mostly
 * have one). */
static inline GVariant *
sluice_wire_values_get (SluiceWireValuesView *view, gsize i, GError **error)
{
  gsize start = i > 0 ? view->ends[i - 1] : 0;
  const char *type = view->types[i];

  if (view->uniform != NULL)
    return g_variant_get_child_value (view->uniform, i);
  if (view->checked_type == NULL || strcmp (view->checked_type, type) != 0)
    {
      if (!sluice_wire_type_check (type, error))
        return NULL;
      view->checked_type = type;
    }
  return sluice_wire_value_checked (type, view->data + start, view->ends[i] - start);
}

/* The tuple of type @type_string packed in @message's body (ay), or NULL
 * if it has none. Transfer full. */
static inline GVariant *
sluice_wire_unpack (GDBusMessage *message, const char *type_string)
{
  GVariant *body = g_dbus_message_get_body (message);
  GVariant *data;
  GVariant *tuple;

  if (body == NULL || !g_variant_is_of_type (body, G_VARIANT_TYPE ("(ay)")))
    return NULL;
  data = g_variant_get_child_value (body, 0);
  tuple = sluice_wire_get (type_string, data, NULL);
  g_variant_unref (data);
  return tuple;
}

/* Sets @tuple (floating, sunk) as the body of @message, packed in an ay. */
static inline void
sluice_wire_pack (GDBusMessage *message, GVariant *tuple)
{
  g_variant_ref_sink (tuple);
  g_dbus_message_set_body (message, g_variant_new ("(@ay)", sluice_wire_bytes (tuple)));
  g_variant_unref (tuple);
}

/* The types of the packed batches. CallMany: the names of the functions,
 * then the arguments. Results: the results, then the errors (ids, D-Bus
 * error names as GDBus encodes a GError, messages). */
#define SLUICE_WIRE_CALLS_TYPE "(asatasatay)"
#define SLUICE_WIRE_RESULTS_TYPE "(atasatayatasas)"

G_END_DECLS
