/* sluice-error.h: the Sluice error domain
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(SLUICE_INSIDE) && !defined(SLUICE_COMPILATION)
#error "Only <sluice/sluice.h> can be included directly."
#endif

#include <glib.h>
#include <sluice/sluice-version-macros.h>

G_BEGIN_DECLS

/**
 * SLUICE_ERROR:
 *
 * The error domain of Sluice; errors in it carry a [enum@Sluice.Error] code.
 */
#define SLUICE_ERROR (sluice_error_quark ())

/**
 * SluiceError:
 * @SLUICE_ERROR_FAILED: a generic failure, with a message that says what
 * @SLUICE_ERROR_STOPPED: the object was stopped (by a stop request, a failed
 *   item, the consumer returning or a shutdown) before the operation could
 *   take place
 * @SLUICE_ERROR_NOT_STARTED: the operation needs a started object
 *
 * Error codes in the %SLUICE_ERROR domain.
 */
typedef enum
{
  SLUICE_ERROR_FAILED,
  SLUICE_ERROR_STOPPED,
  SLUICE_ERROR_NOT_STARTED,
} SluiceError;

SLUICE_AVAILABLE_IN_ALL
GQuark sluice_error_quark (void);

G_END_DECLS
