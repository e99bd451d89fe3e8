/* sluice-function-registry.c: named functions, looked up and called with
 * their arguments checked
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "sluice-private.h"

#include "sluice-function-registry-private.h"

/* One registered function; a call holds a reference, so that the function
 * can be replaced while it runs. */
typedef struct
{
  GVariantType *args_type; /* (nullable) */
  SluiceNamedFunc func;
  gpointer data;
  GDestroyNotify destroy;
} Entry;

struct _SluiceFunctionRegistry
{
  GMutex mutex;
  GHashTable *functions; /* name -> Entry (atomic rc box) */
};

static void
entry_clear (gpointer data)
{
  Entry *entry = data;

  if (entry->destroy != NULL)
    entry->destroy (entry->data);
  g_clear_pointer (&entry->args_type, g_variant_type_free);
}

static void
entry_unref (gpointer data)
{
  g_atomic_rc_box_release_full (data, entry_clear);
}

SluiceFunctionRegistry *
sluice_function_registry_new (void)
{
  SluiceFunctionRegistry *registry = g_new0 (SluiceFunctionRegistry, 1);

  g_mutex_init (&registry->mutex);
  registry->functions = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, entry_unref);
  return registry;
}

void
sluice_function_registry_free (SluiceFunctionRegistry *registry)
{
  g_hash_table_unref (registry->functions);
  g_mutex_clear (&registry->mutex);
  g_free (registry);
}

void
sluice_function_registry_add (SluiceFunctionRegistry *registry,
                              const char *name,
                              const char *args_type,
                              SluiceNamedFunc func,
                              gpointer data,
                              GDestroyNotify destroy)
{
  Entry *entry = g_atomic_rc_box_new0 (Entry);

  entry->args_type = args_type != NULL ? g_variant_type_new (args_type) : NULL;
  entry->func = func;
  entry->data = data;
  entry->destroy = destroy;

  g_mutex_lock (&registry->mutex);
  /* The one it replaces is released outside the lock (its destroy may do
   * anything). */
  g_hash_table_steal_extended (registry->functions, name, NULL, &data);
  g_hash_table_insert (registry->functions, g_strdup (name), entry);
  g_mutex_unlock (&registry->mutex);

  if (data != NULL)
    entry_unref (data);
}

GVariant *
sluice_function_registry_call (SluiceFunctionRegistry *registry,
                               const char *name,
                               GVariant *args,
                               GCancellable *cancellable,
                               GError **error)
{
  Entry *entry;
  GVariant *result;
  GError *local_error = NULL;

  g_mutex_lock (&registry->mutex);
  entry = g_hash_table_lookup (registry->functions, name);
  if (entry != NULL)
    g_atomic_rc_box_acquire (entry);
  g_mutex_unlock (&registry->mutex);

  if (entry == NULL)
    {
      g_set_error (error, SLUICE_ERROR, SLUICE_ERROR_UNKNOWN_FUNCTION,
                   _ ("No function is registered as “%s”"), name);
      return NULL;
    }
  if (entry->args_type != NULL && !g_variant_is_of_type (args, entry->args_type))
    {
      g_autofree char *wanted = g_variant_type_dup_string (entry->args_type);

      g_set_error (error, SLUICE_ERROR, SLUICE_ERROR_INVALID_ARGUMENTS,
                   _ ("The function “%s” takes arguments of type “%s”, not “%s”"), name, wanted,
                   g_variant_get_type_string (args));
      entry_unref (entry);
      return NULL;
    }

  result = entry->func (args, cancellable, entry->data, &local_error);
  entry_unref (entry);
  if (local_error != NULL)
    {
      g_clear_pointer (&result, g_variant_unref);
      g_propagate_error (error, local_error);
      return NULL;
    }
  if (result == NULL)
    return g_variant_ref_sink (g_variant_new ("()"));
  return g_variant_take_ref (result);
}
