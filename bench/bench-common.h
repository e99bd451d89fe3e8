/* bench-common.h: what every implementation of the benchmarks shares
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Plain C (no GLib), so that the C++ oneTBB baseline uses the very same busy
 * work, item encoding and checks as the C implementations.
 */

#pragma once

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef __cplusplus
extern "C"
{
#endif

  /* One run of one workload by one implementation. */
  typedef struct
  {
    uint64_t n;              /* items */
    uint32_t work_iters;     /* busy-work iterations per item; 0 for trivial items */
    uint32_t consumer_iters; /* busy-work iterations of the consumer per item */
    int payload;             /* items are heap blocks of BENCH_PAYLOAD_SIZE bytes */
    int track_live;          /* count live items (produced, not yet consumed) */
    unsigned window;         /* the most items in flight */
    unsigned threads;        /* worker threads */
  } BenchParams;

  /* What the consumer saw: every implementation must see the same. */
  typedef struct
  {
    uint64_t count;
    uint64_t sum_lo; /* sum of the item numbers (1..n) */
    uint64_t sum_hi; /* sum of the busy-work results */
    uint64_t sink;   /* the consumer's own busy work, kept alive */
    int order_ok;
  } BenchTally;

  typedef struct
  {
    double seconds;
    BenchTally tally;
    uint64_t max_live;    /* the bench's count: produced minus consumed */
    uint64_t max_n_items; /* the library's count, where it has one */
  } BenchResult;

#define BENCH_PAYLOAD_SIZE 1024

  /* A payload item: its value, and memory that is really touched so that
   * live items show in the resident set. */
  typedef struct
  {
    uint64_t value;
    unsigned char fill[BENCH_PAYLOAD_SIZE - sizeof (uint64_t)];
  } BenchBlock;

  /* Real computation that no compiler can shorten: a chain of xorshift steps,
   * each depending on the one before. */
  static inline uint32_t
  bench_busy (uint64_t seed, uint32_t iters)
  {
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;

    for (uint32_t i = 0; i < iters; i++)
      {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
      }
    return (uint32_t) (x ^ (x >> 32));
  }

  /* Item @seq (from 0): its busy-work result in the high half, its number
   * (seq + 1, never 0) in the low half, so the consumer checks the order and
   * the work with one value. */
  static inline uint64_t
  bench_item_value (uint64_t seq, uint32_t work_iters)
  {
    uint64_t hi = work_iters > 0 ? bench_busy (seq, work_iters) : 0;

    return (hi << 32) | ((seq + 1) & 0xffffffffu);
  }

  static inline void *
  bench_block_new (uint64_t value)
  {
    BenchBlock *block = (BenchBlock *) malloc (sizeof (BenchBlock));

    if (block == NULL)
      abort ();
    block->value = value;
    memset (block->fill, (int) (value & 0xff), sizeof block->fill);
    return block;
  }

  /* Takes the value out of a block and frees it. */
  static inline uint64_t
  bench_block_take (void *data)
  {
    BenchBlock *block = (BenchBlock *) data;
    uint64_t value = block->value;

    if (block->fill[sizeof block->fill - 1] != (unsigned char) (value & 0xff))
      value = 0; /* a torn block: the order check will fail */
    free (block);
    return value;
  }

  static inline void
  bench_tally_init (BenchTally *tally)
  {
    memset (tally, 0, sizeof *tally);
    tally->order_ok = 1;
  }

  /* The consumer's step: check the order, sum, and do its own work. */
  static inline void
  bench_tally_add (BenchTally *tally, uint64_t value, uint32_t consumer_iters)
  {
    if ((value & 0xffffffffu) != ((tally->count + 1) & 0xffffffffu))
      tally->order_ok = 0;
    tally->count++;
    tally->sum_lo += value & 0xffffffffu;
    tally->sum_hi += value >> 32;
    if (consumer_iters > 0)
      tally->sink += bench_busy (value, consumer_iters);
  }

  /* The oneTBB baseline (bench-tbb.cpp): returns 0 when it could not run. */
  int bench_tbb_run (const BenchParams *params, BenchResult *result);

  static inline int
  bench_compare_doubles (const void *a, const void *b)
  {
    double x = *(const double *) a, y = *(const double *) b;

    return x < y ? -1 : x > y;
  }

  static inline double
  bench_min_of (const double *values, int n)
  {
    double m = INFINITY;

    for (int i = 0; i < n; i++)
      m = values[i] < m ? values[i] : m;
    return m;
  }

  static inline double
  bench_max_of (const double *values, int n)
  {
    double m = -INFINITY;

    for (int i = 0; i < n; i++)
      m = values[i] > m ? values[i] : m;
    return m;
  }

  /* Seconds on the monotonic clock. */
  static inline double
  bench_now (void)
  {
    struct timespec ts;

    clock_gettime (CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
  }

  /* Seconds of CPU time of the calling thread. */
  static inline double
  bench_thread_cpu_now (void)
  {
    struct timespec ts;

    clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
  }

  /* Busy-work iterations per microsecond, measured here: the best of a few
   * rounds, in the thread's CPU time (wall-clock time on a loaded machine
   * counts the time other processes ran: it measured as few as a tenth of
   * the iterations, and the "2 µs" of work became 0.2 µs). */
  static inline uint32_t
  bench_calibrate (void)
  {
    const uint32_t iters = 20 * 1000 * 1000;
    volatile uint64_t sink = 0;
    double best = 1e300;

    for (int round = 0; round < 5; round++)
      {
        double t0 = bench_thread_cpu_now ();
        double t;

        sink += bench_busy (round, iters);
        t = bench_thread_cpu_now () - t0;
        best = t < best ? t : best;
      }
    (void) sink;
    return (uint32_t) (iters / (best * 1e6) > 1.0 ? iters / (best * 1e6) : 1.0);
  }

#define BENCH_MAX_REPS 64

  /* The median of @n (at most BENCH_MAX_REPS) values, left in their order;
   * NaN for none. */
  static inline double
  bench_median (const double *values, int n)
  {
    double sorted[BENCH_MAX_REPS];

    if (n == 0)
      return NAN;
    memcpy (sorted, values, n * sizeof (double));
    qsort (sorted, n, sizeof (double), bench_compare_doubles);
    return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  }

#ifdef __cplusplus
}
#endif
