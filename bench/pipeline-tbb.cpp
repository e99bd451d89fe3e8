/* pipeline-tbb.cpp: the oneTBB baseline of the pipeline benchmark
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * parallel_pipeline with the three filters of pipeline-common.h: parse as
 * the serial_in_order input filter, work as a parallel filter, the sink as
 * a serial_in_order output filter; as many tokens as the Sluice pipeline's
 * window, in an arena of as many threads as its work stage has.
 */

#include "pipeline-common.h"

#include <chrono>

#include <tbb/global_control.h>
#include <tbb/parallel_pipeline.h>
#include <tbb/task_arena.h>

extern "C" double
pipeline_tbb_run (uint64_t n, uint32_t work_iters, unsigned tokens, unsigned threads, BenchTally *tally)
{
  /* One arena for the whole process, as an application would keep. */
  static tbb::global_control control (tbb::global_control::max_allowed_parallelism, threads);
  static tbb::task_arena arena ((int) threads);
  uint64_t next = 0;

  bench_tally_init (tally);
  auto start = std::chrono::steady_clock::now ();
  arena.execute ([&] {
    tbb::parallel_pipeline (
        tokens,
        tbb::make_filter<void, uint64_t> (tbb::filter_mode::serial_in_order,
                                          [&] (tbb::flow_control &fc) -> uint64_t {
                                            if (next >= n)
                                              {
                                                fc.stop ();
                                                return 0;
                                              }
                                            return pipeline_parse (next++);
                                          }) &
            tbb::make_filter<uint64_t, uint64_t> (
                tbb::filter_mode::parallel,
                [&] (uint64_t item) -> uint64_t { return pipeline_work (item, work_iters); }) &
            tbb::make_filter<uint64_t, void> (
                tbb::filter_mode::serial_in_order,
                [&] (uint64_t value) { bench_tally_add (tally, value, 0); }));
  });
  auto end = std::chrono::steady_clock::now ();

  return std::chrono::duration<double> (end - start).count ();
}
