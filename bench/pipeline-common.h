/* pipeline-common.h: the filters of the pipeline benchmark
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Plain C, so that the C++ oneTBB baseline (pipeline-tbb.cpp) runs the very
 * same three filters as the Sluice pipeline (pipeline-bench.c):
 *
 * - parse (serial): input number i to item i + 1 (jobq's add1);
 * - work (parallel): item v to its busy-work result in the high half and v
 *   in the low half (bench_item_value());
 * - sink (serial, in input order): checks the order and sums
 *   (bench_tally_add()).
 */

#pragma once

#include "bench-common.h"

#ifdef __cplusplus
extern "C"
{
#endif

  static inline uint64_t
  pipeline_parse (uint64_t input)
  {
    return input + 1;
  }

  static inline uint64_t
  pipeline_work (uint64_t item, uint32_t work_iters)
  {
    return bench_item_value (item - 1, work_iters);
  }

  /* One run of parse -> work -> sink over inputs 0 .. @n - 1 with
   * @threads threads and @tokens items in flight: oneTBB parallel_pipeline
   * (pipeline-tbb.cpp). Returns the seconds, the tally in @tally. */
  double pipeline_tbb_run (
      uint64_t n, uint32_t work_iters, unsigned tokens, unsigned threads, BenchTally *tally);

#ifdef __cplusplus
}
#endif
