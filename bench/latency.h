/* latency.h: delivery latency with few items in flight (see latency.c)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>

/* Runs the latency workload, prints its table and appends its RESULT lines
 * to @results. @start_apart: each run's first items with the consumer on
 * another processor than the owner and the completers (Linux); @keep_apart:
 * every item so; @owner_apart: the owner on the consumer's processor
 * instead (sluice). */
void bench_latency (gboolean quick,
                    int reps,
                    guint32 iters_per_us,
                    gboolean start_apart,
                    gboolean keep_apart,
                    gboolean owner_apart,
                    GString *results);
