/* sluice-test-util.h: shared helpers of the test programs
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>
#include <stdlib.h>

/* Stress sizes shrink only under valgrind (the test setup sets
 * SLUICE_TEST_SCALE_DOWN), never in the normal and sanitizer runs. */
static inline guint
sluice_test_scale (guint n, guint divisor)
{
  const char *down = g_getenv ("SLUICE_TEST_SCALE_DOWN");

  if (down != NULL && *down != '\0' && *down != '0')
    return MAX (n / divisor, 1);
  return n;
}

/* Spins the default main context until @flag is set or a (generous)
 * deadline passes; returns whether it was set. */
static inline gboolean
sluice_test_wait_for (volatile gboolean *flag)
{
  gint64 deadline = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;

  while (!*flag && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  return *flag;
}
