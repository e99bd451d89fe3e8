#!/usr/bin/env bash
# run-python-test.sh: runs a Python test for meson test
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Usage: run-python-test.sh [--exitcode] PYTHON SCRIPT [ARGS...]
# meson starts bash, not Python: the valgrind test setup then wraps only
# this shell (valgrind does not follow children), never the interpreter,
# whose own allocations it cannot judge. GI_TYPELIB_PATH and LD_LIBRARY_PATH
# come from meson and point into the build tree. Without PYTHON the test
# is skipped: a TAP "1..0 # SKIP" plan, or exit status 77 with --exitcode.
# SLUICE_SANITIZER_PRELOAD: the sanitizer runtimes of a -Db_sanitize build.
set -u
skip_status=0
if [ "${1:-}" = --exitcode ]; then
  skip_status=77
  shift
fi
python=${1:?usage: run-python-test.sh [--exitcode] PYTHON SCRIPT [ARGS...]}
shift
if ! command -v "$python" > /dev/null; then
  echo "1..0 # SKIP $python not found: install python3 and python3-gi"
  exit $skip_status
fi
# In a sanitizer build the library needs the sanitizer runtimes, which
# the interpreter does not load: preload them (tests/meson.build finds
# them), and leave leak checking to the C tests, as Python never frees all.
if [ -n "${SLUICE_SANITIZER_PRELOAD:-}" ]; then
  export LD_PRELOAD="$SLUICE_SANITIZER_PRELOAD${LD_PRELOAD:+ $LD_PRELOAD}"
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi
exec "$python" "$@"
