/* sluice-private.h: what every source file of the library shares
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "config.h"

#include <sluice/sluice.h>

G_BEGIN_DECLS

/* The library's messages come from its own text domain, bound on first use
 * (never in a constructor). */
const char *sluice_gettext (const char *msgid) G_GNUC_FORMAT (1);

#undef _
#define _(String) sluice_gettext (String)
#undef N_
#define N_(String) (String)

G_END_DECLS
