#!/usr/bin/env bash
# test-worker-module.sh: how sluice-worker finds a MODULE given by name
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# TAP output. Usage: test-worker-module.sh SLUICE_WORKER MODULE_FILE
# MODULE_FILE is a built module (sluice-gzip-deflate.so); its directory
# stands for the installed module directory through
# SLUICE_WORKER_MODULE_PATH. With standard input from /dev/null a worker
# whose modules all loaded goes on to serve and stops at once ("Unexpected
# lack of content"); a module that does not load is named first.
set -u

W=$(realpath "${1:?usage: test-worker-module.sh SLUICE_WORKER MODULE_FILE}")
MOD=$(realpath "${2:?usage: test-worker-module.sh SLUICE_WORKER MODULE_FILE}")
dir=$(dirname "$MOD")
base=$(basename "$MOD" .so)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

n=0
failed=0
check () {
  local desc=$1
  shift
  n=$((n + 1))
  if "$@"; then echo "ok $n - $desc"; else echo "not ok $n - $desc"; failed=1; fi
}
# loads NAME [PATH]: the worker got past loading NAME.
loads () {
  SLUICE_WORKER_MODULE_PATH=${2-} "$W" "$1" < /dev/null > /dev/null 2> "$tmp/err"
  ! grep -q "^sluice-worker: $1:" "$tmp/err" && grep -q 'Unexpected lack of content' "$tmp/err"
}

check "a path loads" loads "$MOD"
check "a bare name with .so, from SLUICE_WORKER_MODULE_PATH" loads "$base.so" "$dir"
check "a bare name without .so, from SLUICE_WORKER_MODULE_PATH" loads "$base" "$dir"
check "SLUICE_WORKER_MODULE_PATH: several directories, a missing one first" \
  loads "$base" "$tmp/nosuch:$dir"

SLUICE_WORKER_MODULE_PATH="$tmp/a:$tmp/b" "$W" no-such-module < /dev/null > /dev/null 2> "$tmp/err"
status=$?
check "not found: status 1" test $status -eq 1
check "not found: the message lists every place tried, in order" \
  bash -c "diff <(sed -n 1,6p '$tmp/err') - > /dev/null" <<END
sluice-worker: no-such-module: module not found; looked for:
  $tmp/a/no-such-module
  $tmp/a/no-such-module.so
  $tmp/b/no-such-module
  $tmp/b/no-such-module.so
  $("$W" --help | sed -n 's/^the installed module directory \(.*\),$/\1/p')/no-such-module
END
check "not found: and the dynamic linker's search, with a hint" \
  grep -q "and in the dynamic linker's search path (set SLUICE_WORKER_MODULE_PATH" "$tmp/err"
check "--help names the installed module directory" \
  bash -c "'$W' --help | grep -q '^the installed module directory /.*/sluice,\$'"

printf 'not a module' > "$tmp/fake.so"
SLUICE_WORKER_MODULE_PATH="$tmp" "$W" fake < /dev/null > /dev/null 2> "$tmp/err"
status=$?
check "found but not a module: status 1, the loader's error naming the file" \
  bash -c "[ $status -eq 1 ] && grep -q '^sluice-worker: fake: .*$tmp/fake.so' '$tmp/err'"

echo "1..$n"
exit $failed
