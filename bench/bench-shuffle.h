/* bench-shuffle.h: the order in which the handoff's completers complete a
 * full batch of slots (bench/sluice-bench.c, bench/handoff-probe.c)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

/* Fills @order with a permutation of 0 .. @n - 1, the same in every run. */
static inline void
bench_shuffle_init (guint *order, guint n)
{
  g_autoptr (GRand) rand = g_rand_new_with_seed (42);

  for (guint i = 0; i < n; i++)
    order[i] = i;
  for (guint i = n - 1; i > 0; i--)
    {
      guint j = g_rand_int_range (rand, 0, i + 1);
      guint t = order[i];

      order[i] = order[j];
      order[j] = t;
    }
}
