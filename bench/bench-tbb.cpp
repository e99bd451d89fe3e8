/* bench-tbb.cpp: the oneTBB baseline of the benchmarks
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * parallel_pipeline with a serial_in_order input (the producer), a parallel
 * filter (the work) and a serial_in_order output (the consumer), with as
 * many tokens as the window and as many threads as the other
 * implementations have workers. Built only when oneTBB is found.
 */

#include "bench-common.h"

#include <algorithm>
#include <atomic>
#include <chrono>

#include <tbb/global_control.h>
#include <tbb/parallel_pipeline.h>
#include <tbb/task_arena.h>

extern "C" int
bench_tbb_run (const BenchParams *params, BenchResult *result)
{
  /* One arena for the whole process, as an application would keep. */
  static tbb::global_control control (tbb::global_control::max_allowed_parallelism,
                                      params->threads);
  static tbb::task_arena arena ((int) params->threads);
  const BenchParams p = *params;
  BenchTally tally;
  uint64_t next = 0;
  uint64_t produced = 0;
  uint64_t max_live = 0;
  std::atomic<uint64_t> consumed (0);

  bench_tally_init (&tally);

  auto start = std::chrono::steady_clock::now ();
  arena.execute ([&] {
    tbb::parallel_pipeline (
        p.window, tbb::make_filter<void, uint64_t> (tbb::filter_mode::serial_in_order,
                                                    [&] (tbb::flow_control &fc) -> uint64_t {
                                                      if (next >= p.n)
                                                        {
                                                          fc.stop ();
                                                          return 0;
                                                        }
                                                      if (p.track_live)
                                                        {
                                                          uint64_t live =
                                                              ++produced - consumed.load ();

                                                          max_live = std::max (max_live, live);
                                                        }
                                                      return next++;
                                                    }) &
                      tbb::make_filter<uint64_t, uint64_t> (
                          tbb::filter_mode::parallel,
                          [&] (uint64_t seq) -> uint64_t {
                            uint64_t value = bench_item_value (seq, p.work_iters);

                            if (p.payload)
                              return (uint64_t) (uintptr_t) bench_block_new (value);
                            return value;
                          }) &
                      tbb::make_filter<uint64_t, void> (
                          tbb::filter_mode::serial_in_order, [&] (uint64_t value) {
                            if (p.track_live)
                              consumed.fetch_add (1);
                            if (p.payload)
                              value = bench_block_take ((void *) (uintptr_t) value);
                            bench_tally_add (&tally, value, p.consumer_iters);
                          }));
  });
  auto end = std::chrono::steady_clock::now ();

  result->seconds = std::chrono::duration<double> (end - start).count ();
  result->tally = tally;
  result->max_live = max_live;
  result->max_n_items = 0;
  return 1;
}
