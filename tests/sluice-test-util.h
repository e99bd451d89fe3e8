/* sluice-test-util.h: shared helpers of the test programs
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <glib.h>
#include <stdlib.h>
#include <sys/resource.h>

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

/* Whether the tests run under valgrind (SLUICE_TEST_SCALE_DOWN set): for
 * the few waits that must outlast a step of a slowed-down process. */
static inline gboolean
sluice_test_slowed_down (void)
{
  return sluice_test_scale (2, 2) == 1;
}

/* The processor time (user and system) this process has used, in seconds:
 * the idle-no-spin tests check that waiting burns none. */
static inline double
sluice_test_process_cpu_seconds (void)
{
  struct rusage usage;

  g_assert_cmpint (getrusage (RUSAGE_SELF, &usage), ==, 0);
  return (double) usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 +
         (double) usage.ru_stime.tv_sec + usage.ru_stime.tv_usec / 1e6;
}

/* Generous: a deadline only turns a hang into a failure. */
#define SLUICE_TEST_TIMEOUT_SECONDS 60

static inline gint64
deadline_from_now (void)
{
  return g_get_monotonic_time () + SLUICE_TEST_TIMEOUT_SECONDS * G_USEC_PER_SEC;
}

/* Items are pointers into an array of counters: freeing one increments its
 * own counter, so "freed exactly once, nothing twice" is checked per item. */
static inline void
counted_item_free (gpointer item)
{
  g_atomic_int_inc ((gint *) item);
}

/* A one-shot event between threads. */
typedef struct
{
  GMutex mutex;
  GCond cond;
  gboolean set;
} Event;

static inline void
event_init (Event *event)
{
  g_mutex_init (&event->mutex);
  g_cond_init (&event->cond);
  event->set = FALSE;
}

static inline void
event_clear (Event *event)
{
  g_mutex_clear (&event->mutex);
  g_cond_clear (&event->cond);
}

static inline void
event_set (Event *event)
{
  g_mutex_lock (&event->mutex);
  event->set = TRUE;
  g_cond_broadcast (&event->cond);
  g_mutex_unlock (&event->mutex);
}

static inline gboolean
event_is_set (Event *event)
{
  gboolean set;

  g_mutex_lock (&event->mutex);
  set = event->set;
  g_mutex_unlock (&event->mutex);
  return set;
}

/* Waits for @event; fails the test after the deadline instead of hanging. */
static inline void
event_wait (Event *event)
{
  gint64 deadline = deadline_from_now ();

  g_mutex_lock (&event->mutex);
  while (!event->set)
    {
      if (!g_cond_wait_until (&event->cond, &event->mutex, deadline))
        break;
    }
  g_assert_true (event->set);
  g_mutex_unlock (&event->mutex);
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
