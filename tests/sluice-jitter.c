/* sluice-jitter.c: an LD_PRELOAD library that shakes thread interleavings
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * For hunting races, never part of a test run: after each g_mutex_lock(),
 * g_mutex_unlock(), g_rec_mutex_unlock(), g_cond_signal() and
 * g_cond_broadcast() the calling thread sometimes yields its processor and
 * sometimes sleeps a little, so the orders a loaded or a faster machine
 * would produce come up in a few hundred runs instead of never. The test
 * programs link libsluice statically and GLib dynamically, so these calls
 * go through GLib's entry points and land here:
 *
 *   LD_PRELOAD=_build/tests/libsluice-jitter.so JITTER=2 \
 *     _build/tests/test-pipeline -p /pipeline/some-case
 *
 * It works on the Python tests too (libsluice's calls into GLib go through
 * the PLT as well).
 *
 * (under AddressSanitizer add ASAN_OPTIONS=verify_asan_link_order=0).
 * JITTER=1 (the default): a yield after 1 call in 16, a sleep of up to
 * 300 us after 1 in 256; JITTER=2: 1 in 4, and up to 200 us after 1 in 32.
 *
 * Session 16 found the pipeline's use after free on its last unref with it
 * (1 in 60 runs of one test case; ~10,000 runs without it had found
 * nothing) and tripled the rate of a known flaky test.
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static __thread uint64_t rng;
static int yield_mask = -1;
static int sleep_mask;
static int sleep_max_us;

/* xorshift64, seeded per thread from the clock and the thread. */
static uint64_t
next_random (void)
{
  if (rng == 0)
    {
      struct timespec ts;

      clock_gettime (CLOCK_MONOTONIC, &ts);
      rng = (uint64_t) ts.tv_nsec ^ ((uint64_t) (uintptr_t) &rng << 1) ^ 0x9e3779b97f4a7c15ull;
    }
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void
jitter (void)
{
  uint64_t r = next_random ();

  /* Racy but harmless: every thread computes the same values. */
  if (yield_mask < 0)
    {
      const char *env = getenv ("JITTER");
      int level = env != NULL ? atoi (env) : 1;

      sleep_mask = level >= 2 ? 31 : 255;
      sleep_max_us = level >= 2 ? 200 : 300;
      yield_mask = level >= 2 ? 3 : 15;
    }
  if ((r & (uint64_t) yield_mask) == 0)
    sched_yield ();
  else if (((r >> 4) & (uint64_t) sleep_mask) == 1)
    usleep ((useconds_t) ((r >> 16) % (uint64_t) sleep_max_us));
}

/* GLib's own entry point. RTLD_NEXT finds it only when GLib is in the
 * global scope; in Python, PyGObject's extension module loads GLib with
 * RTLD_LOCAL (dlsym returned NULL and every Python test crashed at its first
 * lock), so look in the loaded GLib itself then. */
static void *
real_symbol (const char *name)
{
  void *symbol = dlsym (RTLD_NEXT, name);

  if (symbol == NULL)
    {
      void *glib = dlopen ("libglib-2.0.so.0", RTLD_LAZY | RTLD_NOLOAD);

      if (glib != NULL)
        symbol = dlsym (glib, name);
    }
  if (symbol == NULL)
    abort ();
  return symbol;
}

#define WRAP(name)                                                                                 \
  void name (void *object);                                                                        \
  void name (void *object)                                                                         \
  {                                                                                                \
    static void (*real) (void *);                                                                  \
                                                                                                   \
    if (real == NULL)                                                                              \
      real = (void (*) (void *)) real_symbol (#name);                                              \
    real (object);                                                                                 \
    jitter ();                                                                                     \
  }

WRAP (g_mutex_lock)
WRAP (g_mutex_unlock)
WRAP (g_rec_mutex_unlock)
WRAP (g_cond_signal)
WRAP (g_cond_broadcast)
