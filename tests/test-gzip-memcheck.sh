#!/usr/bin/env bash
# test-gzip-memcheck.sh: sluice-gzip's modes under valgrind's memcheck
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# TAP output. Usage: test-gzip-memcheck.sh SLUICE_GZIP SUPPRESSIONS
#
# test-gzip.sh checks what the tool writes; this checks that it does so
# without an invalid access, a read of uninitialised memory or a definite
# leak, in every mode a user reaches (compress with each engine, -i and its
# parallel -d, streaming -d, -t, -l, files in place, -r, damaged input).
# Small inputs: memcheck runs the tool ~50x slower. Memcheck's own verdict
# is exit status 99, kept apart from the tool's 0 and 1. Runs in the
# valgrind setup (meson test --setup valgrind sets SLUICE_TEST_MEMCHECK);
# skips elsewhere, where valgrind is not installed, and on a sanitizer
# build (ASan and memcheck cannot share a process).
set -u

GZ=$(realpath "${1:?usage: test-gzip-memcheck.sh SLUICE_GZIP SUPPRESSIONS}")
SUPP=$(realpath "${2:?usage: test-gzip-memcheck.sh SLUICE_GZIP SUPPRESSIONS}")

if [ -z "${SLUICE_TEST_MEMCHECK:-}" ]; then
  echo "1..0 # SKIP memcheck runs in the valgrind setup: meson test --setup valgrind"
  exit 0
fi
# In the valgrind setup memcheck traces this bash, which leaks parsing
# the script: run it in a fresh bash (an exec is not traced).
if [ -z "${SLUICE_MEMCHECK_SHELL:-}" ]; then
  SLUICE_MEMCHECK_SHELL=1 exec bash "$0" "$@"
fi
if ! command -v valgrind > /dev/null; then
  echo "1..0 # SKIP valgrind is not installed (Debian: apt-get install valgrind)"
  exit 0
fi
if grep -q __asan_init "$GZ"; then
  echo "1..0 # SKIP a sanitizer build: memcheck needs a build without -Db_sanitize"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1

export G_SLICE=always-malloc
MEMCHECK=(valgrind --tool=memcheck --error-exitcode=99 --leak-check=full
          --errors-for-leak-kinds=definite --show-leak-kinds=definite
          --suppressions=/usr/share/glib-2.0/valgrind/glib.supp
          --suppressions="$SUPP" --log-file=memcheck.%p.log)

n=0
failed=0
# One mode under memcheck: the tool's exit status must be $1 and memcheck
# must have found nothing (its log is shown on failure).
mc () {
  local desc=$1 want=$2
  shift 2
  rm -f memcheck.*.log
  "${MEMCHECK[@]}" "$GZ" "$@" > mc.out 2> mc.err
  local status=$?
  n=$((n + 1))
  if [ $status -eq "$want" ]; then
    echo "ok $n - $desc"
  else
    echo "not ok $n - $desc: status $status, wanted $want"
    sed 's/^/# /' mc.err memcheck.*.log | tail -n 40
    failed=1
  fi
}
check () {
  local desc=$1
  shift
  n=$((n + 1))
  if "$@"; then echo "ok $n - $desc"; else echo "not ok $n - $desc"; failed=1; fi
}

awk 'BEGIN { srand(3); for (i = 0; i < 9000; i++) {
  line = ""; for (j = 0; j < 10; j++) line = line sprintf("w%d ", int(rand() * 50)); print line } }' > text
head -c 200000 /dev/urandom > random
cat text random text > mixed

mc "compress, default engine (auto), 2 threads" 0 -p 2 -c mixed
cp mc.out auto.gz
check "  its output is the input" bash -c 'gzip -dc auto.gz | cmp -s - mixed'
mc "compress, --deflate=zlib, 2 threads, 32 KiB blocks" 0 --deflate=zlib -p 2 -b 32 -c mixed
cp mc.out zlib.gz
check "  its output is the input" bash -c 'gzip -dc zlib.gz | cmp -s - mixed'
mc "compress, --deflate=libdeflate -9" 0 --deflate=libdeflate -9 -p 2 -c text
check "  its output is the input" bash -c 'gzip -dc < mc.out | cmp -s - text'
mc "compress -i (independent blocks, index), 32 KiB blocks" 0 -i -p 2 -b 32 -c mixed
cp mc.out indexed.gz
mc "-d of an indexed file (parallel)" 0 -d -p 2 -c indexed.gz
check "  its output is the input" cmp -s mc.out mixed
mc "-d of a gzip stream from standard input" 0 -d -c < zlib.gz
check "  its output is the input" cmp -s mc.out mixed
cat zlib.gz auto.gz > members.gz
mc "-t of two members" 0 -t members.gz
mc "-lv of an indexed file" 0 -lv indexed.gz
check "  it names the uncompressed size" grep -q "$(stat -c %s mixed)" mc.out
mkdir -p dir/sub
cp text dir/a
cp random dir/sub/b
mc "-r, files compressed in place" 0 -r dir
check "  both files replaced by .gz" test -f dir/a.gz -a -f dir/sub/b.gz -a ! -e dir/a
mc "-d -r, restored in place" 0 -d -r dir
check "  both files as before" bash -c 'cmp -s dir/a text && cmp -s dir/sub/b random'
head -c 30000 zlib.gz > truncated.gz
mc "-dc of a truncated file: status 1" 1 -dc truncated.gz
check "  gzip's message" grep -q "unexpected end of file" mc.err
{ head -c 1000 auto.gz; cat zlib.gz; } > cut.gz
mc "-t of a member cut short and followed by another: status 1" 1 -t cut.gz
printf 'not gzip at all' > bad.gz
mc "-d of a file that is not gzip: status 1" 1 -d -f bad.gz
mc "an unknown option: status 1 (as gzip)" 1 --no-such-option

echo "1..$n"
exit $failed
