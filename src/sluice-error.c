/* sluice-error.c: the Sluice error domain
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "sluice-private.h"

/**
 * sluice_error_quark:
 *
 * The quark of the %SLUICE_ERROR domain.
 *
 * This function is safe to call from any thread.
 *
 * Returns: the error domain's quark
 */
/* clang-format would space out the quark's name as a subtraction. */
/* clang-format off */
G_DEFINE_QUARK (sluice-error-quark, sluice_error)
/* clang-format on */
