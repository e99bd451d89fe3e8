/* sluice-function-registry-private.h: named functions, looked up and
 * called with their arguments checked
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "sluice-worker.h"

G_BEGIN_DECLS

/* The functions a thread worker or a worker service serves, by name. All
 * functions are safe to call from any thread. */
typedef struct _SluiceFunctionRegistry SluiceFunctionRegistry;

SluiceFunctionRegistry *sluice_function_registry_new (void);
void sluice_function_registry_free (SluiceFunctionRegistry *registry);

/* Adds @func under @name, replacing (and releasing) one of the same name.
 * @args_type: (nullable) the type its arguments must have; NULL for any. */
void sluice_function_registry_add (SluiceFunctionRegistry *registry,
                                   const char *name,
                                   const char *args_type,
                                   SluiceNamedFunc func,
                                   gpointer data,
                                   GDestroyNotify destroy);

/* Calls the function registered under @name, in this thread: its result
 * (transfer full, not floating), or NULL with @error set: its own error,
 * SLUICE_ERROR_UNKNOWN_FUNCTION or SLUICE_ERROR_INVALID_ARGUMENTS. */
GVariant *sluice_function_registry_call (SluiceFunctionRegistry *registry,
                                         const char *name,
                                         GVariant *args,
                                         GCancellable *cancellable,
                                         GError **error);

G_END_DECLS
