/* cooperator-test-util.h: hand-driven ticks for the cooperator's tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Shared by test-cooperator.c and test-job-queue.c.
 */

#pragma once

#include <sluice/sluice.h>

/* Twisted's FakeScheduler: remembers the one tick asked for. */
typedef struct
{
  gboolean pending;
  guint n_scheduled;
  guint n_cancelled;
} FakeScheduler;

static inline void
fake_scheduler (SluiceCooperator *cooperator, gboolean schedule, gpointer user_data)
{
  FakeScheduler *scheduler = user_data;

  if (schedule)
    {
      /* A cooperator asks for one tick at a time. */
      g_assert_false (scheduler->pending);
      scheduler->pending = TRUE;
      scheduler->n_scheduled++;
    }
  else
    {
      g_assert_true (scheduler->pending);
      scheduler->pending = FALSE;
      scheduler->n_cancelled++;
    }
}

/* Does the work available now: the tick asked for, if any. */
static inline void
fake_scheduler_pump (FakeScheduler *scheduler, SluiceCooperator *cooperator)
{
  if (!scheduler->pending)
    return;
  scheduler->pending = FALSE;
  sluice_cooperator_tick (cooperator);
}

static inline gboolean
always_terminate (SluiceCooperator *cooperator,
                  guint n_steps,
                  gint64 tick_start_time,
                  gpointer user_data)
{
  return TRUE;
}

/* Dispatches what is ready on the thread-default context. */
static inline void
drain_context (void)
{
  while (g_main_context_iteration (NULL, FALSE))
    ;
}
