#!/usr/bin/env bash
# test-gzip.sh: sluice-gzip round trips through gzip -d, and its error cases
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# TAP output. Usage: test-gzip.sh /path/to/sluice-gzip
set -u

GZ=$(realpath "${1:?usage: test-gzip.sh SLUICE_GZIP [SLUICE_DEMO]}")
DEMO=${2:+$(realpath "$2")}
tmp=$(mktemp -d)
cleanup () {
  if [ -n "${mounted:-}" ]; then umount "$tmp/full" 2>/dev/null; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

n=0
failed=0
ok () { n=$((n + 1)); echo "ok $n - $1"; }
not_ok () { n=$((n + 1)); echo "not ok $n - $1"; failed=1; }
skip () { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
check () {
  local desc=$1
  shift
  if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}

# A round trip: compress to stdout, test the stream, decompress with gzip
# and compare byte for byte.
roundtrip () {
  local file=$1
  shift
  "$GZ" "$@" -c "$file" > "$file.out.gz" &&
    gzip -t "$file.out.gz" &&
    gzip -dc "$file.out.gz" | cmp -s - "$file"
}

# Deterministic text-like data of $2 bytes.
text () {
  awk -v n="$2" 'BEGIN {
    split("the of and ordered producer consumer thread block window slot sequence buffer main loop async result", w, " ");
    srand(7); s = 0;
    while (s < n) { line = ""; for (i = 0; i < 12; i++) line = line w[int(rand() * 16) + 1] " "; print line; s += length(line) + 1 }
  }' | head -c "$2" > "$1"
}

cd "$tmp" || exit 1

# --- round trips ---
: > empty
check "empty input" roundtrip empty
printf 'x' > one
check "one byte" roundtrip one
text block $((128 * 1024))
check "exactly one block" roundtrip block
text blockplus $((128 * 1024 + 1))
check "one block plus one byte" roundtrip blockplus
text many $((5 * 1024 * 1024 + 12345))
check "many blocks" roundtrip many
head -c $((3 * 1024 * 1024)) /dev/urandom > random
check "random (incompressible) data" roundtrip random
yes 'sluice sluice sluice' | head -c $((20 * 1024 * 1024)) > repetitive
check "highly repetitive data" roundtrip repetitive
check "highly repetitive data compresses well" \
  test "$(stat -c %s repetitive.out.gz)" -lt $((20 * 1024 * 1024 / 100))
{ cat many many many many many many many many many many many many many; head -c $((4 * 1024 * 1024)) /dev/urandom; } > big
check "a file larger than 64 MiB" test "$(stat -c %s big)" -gt $((64 * 1024 * 1024))
check "larger than 64 MiB round trip" roundtrip big
rm -f big big.out.gz

text level $((1024 * 1024))
for level in 1 2 3 4 5 6 7 8 9; do
  check "level -$level" roundtrip level -$level
done
check "--fast" roundtrip level --fast
check "--best" roundtrip level --best
check "-9 is smaller than -1" test "$(stat -c %s level.out.gz)" -lt "$("$GZ" -1 -c level | wc -c)"

check "1 thread" roundtrip many -p 1
check "3 threads" roundtrip many -p 3
check "8 threads, 32 KiB blocks" roundtrip many -p 8 -b 32
check "1 MiB blocks" roundtrip many -b 1024

check "stdin to stdout through pipes" \
  bash -c "cat many | '$GZ' | gzip -dc | cmp -s - many"
check "'-' reads stdin" bash -c "cat one | '$GZ' -c - | gzip -dc | cmp -s - one"

"$GZ" --progress -c many 2> progress.err > progress.gz
check "--progress draws a bar with rate and ETA on stderr" \
  bash -c "grep -q 'ETA' progress.err && grep -q '100%' progress.err && grep -q '/s' progress.err"
check "--progress leaves stdout a valid stream" bash -c "gzip -dc progress.gz | cmp -s - many"
check "no progress bar when stderr is not a terminal" \
  bash -c "'$GZ' -c many 2> quiet.err > /dev/null && ! grep -q 'ETA' quiet.err"
check "-q and -v" bash -c "'$GZ' -q -c one > /dev/null && '$GZ' -v -k -f one 2>&1 | grep -q 'one:'"

# --- files ---
text file1 200000
cp file1 file1.orig
touch -d '2020-01-02 03:04:05' file1
chmod 640 file1
check "FILE is replaced by FILE.gz" bash -c "'$GZ' file1 && test -f file1.gz && ! test -e file1"
check "FILE.gz decompresses to FILE" bash -c "gzip -dc file1.gz | cmp -s - file1.orig"
check "FILE.gz keeps the mode" test "$(stat -c %a file1.gz)" = 640
check "FILE.gz keeps the mtime" test "$(stat -c %Y file1.gz)" = "$(date -d '2020-01-02 03:04:05' +%s)"
check "gzip -dN restores the name" bash -c "mkdir -p n && cp file1.gz n/other.gz && cd n && gzip -dN other.gz && cmp -s file1 ../file1.orig"
cp file1.orig file2
check "-k keeps FILE" bash -c "'$GZ' -k file2 && test -f file2 && gzip -dc file2.gz | cmp -s - file2"
check "no temporary file left" bash -c "! ls -a | grep -q '^\\..*XXXX\\|^\\.file'"

# --- errors: a clear message, non-zero exit, nothing lost ---
out=$("$GZ" missing 2>&1)
status=$?
check "missing input fails" test $status -ne 0
check "missing input: message names it" bash -c "grep -q 'missing' <<< \"\$1\"" _ "$out"
check "missing input: no .gz" test ! -e missing.gz
check "missing input: gzip's message" \
  test "$out" = "sluice-gzip: missing: No such file or directory"

mkdir adir
out=$("$GZ" adir 2>&1)
status=$?
check "a directory fails" test $status -ne 0
check "a directory: message" bash -c "grep -q 'adir: is a directory' <<< \"\$1\"" _ "$out"
check "a directory: no .gz" test ! -e adir.gz

cp file1.orig exists
echo "precious" > exists.gz
out=$("$GZ" exists 2>&1)
status=$?
check "existing output fails without -f" test $status -ne 0
check "existing output: message" bash -c "grep -q 'exists.gz: already exists' <<< \"\$1\"" _ "$out"
check "existing output: untouched" test "$(cat exists.gz)" = precious
check "existing output: input kept" cmp -s exists file1.orig
check "-f overwrites" bash -c "'$GZ' -f exists && gzip -dc exists.gz | cmp -s - file1.orig"

out=$("$GZ" -c many 2>&1 > /dev/full)
status=$?
check "write failure (/dev/full) fails" test $status -ne 0
check "write failure: message" bash -c "grep -qi 'no space left' <<< \"\$1\"" _ "$out"
check "write failure to stdout: named as gzip does" \
  test "$out" = "sluice-gzip: stdout: No space left on device"

# A read error in the middle of the input (/proc/self/mem reads fail).
out=$("$GZ" -c /proc/self/mem 2>&1 > readerr.gz)
status=$?
check "read error fails" test $status -ne 0
check "read error: message" bash -c "grep -q '/proc/self/mem' <<< \"\$1\"" _ "$out"

# An unreadable input. Root reads anything, so as root the tool runs as
# nobody, which works only when nobody can reach the build tree (not under
# /root, say): otherwise the check is skipped.
mkdir -p perm && chmod 777 perm && cp file1.orig perm/secret && chmod 000 perm/secret
as_user=()
gz_as_user=$GZ
unreadable_skip=
if [ "$(id -u)" -eq 0 ]; then
  if ! command -v setpriv > /dev/null; then
    unreadable_skip="running as root without setpriv"
  else
    as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
    if ! "${as_user[@]}" "$GZ" --version > /dev/null 2>&1; then
      # The build tree is out of nobody's reach: run a copy from here.
      chmod 755 "$tmp"
      mkdir -p pub
      cp "$GZ" pub/
      cp "$(ldd "$GZ" | awk '/libsluice/ {print $3}')" pub/
      chmod -R a+rX pub
      gz_as_user="env LD_LIBRARY_PATH=$tmp/pub $tmp/pub/$(basename "$GZ")"
      if ! "${as_user[@]}" $gz_as_user --version > /dev/null 2>&1; then
        unreadable_skip="running as root and nobody cannot run sluice-gzip"
      fi
    fi
  fi
fi
if [ -z "$unreadable_skip" ]; then
  out=$("${as_user[@]}" $gz_as_user perm/secret 2>&1)
  status=$?
  check "unreadable input fails" test $status -ne 0
  check "unreadable input: message" bash -c "grep -qi 'permission denied' <<< \"\$1\"" _ "$out"
  check "unreadable input: kept, no .gz" bash -c "test -e perm/secret && ! test -e perm/secret.gz"
else
  skip "unreadable input fails" "$unreadable_skip"
  skip "unreadable input: message" "$unreadable_skip"
  skip "unreadable input: kept, no .gz" "$unreadable_skip"
fi

# A full disk: a small tmpfs, where mounting is allowed.
mkdir full
if mount -t tmpfs -o size=256k tmpfs full 2> /dev/null; then
  mounted=1
  head -c 200000 /dev/urandom > full/data
  out=$("$GZ" full/data 2>&1)
  status=$?
  check "full disk fails" test $status -ne 0
  check "full disk: message" bash -c "grep -qi 'no space left' <<< \"\$1\"" _ "$out"
  check "full disk: the message names the output, as gzip's" \
    test "$out" = "sluice-gzip: full/data.gz: No space left on device"
  check "full disk: input kept, no .gz, no temporary" \
    bash -c "test \"\$(ls -A full)\" = data"
  umount full && mounted=
else
  skip "full disk fails" "cannot mount a tmpfs here"
fi


# A signal while reading from a slow input: the partial output is removed,
# the input kept, and the exit status is 128 + the signal, as gzip's.
signal_case () {
  local sig=$1 want=$2 writer pid status
  rm -f slow
  mkfifo slow
  (head -c 300000 /dev/urandom; sleep 3) > slow &
  writer=$!
  "$GZ" slow 2> signal.err &
  pid=$!
  sleep 0.5
  kill -"$sig" $pid
  wait $pid 2> /dev/null
  status=$?
  kill $writer 2> /dev/null
  wait $writer 2> /dev/null
  check "SIG$sig: exit status $want" test $status -eq "$want"
  check "SIG$sig: no partial .gz, no temporary" bash -c "! ls -A | grep -q 'slow.gz'"
  check "SIG$sig: input kept" test -p slow
}
signal_case INT 130
signal_case TERM 143
signal_case HUP 129
signal_case PIPE 141

# -v with -k: the input is kept, not replaced.
cp file1.orig verbose
out=$("$GZ" -v -k verbose 2>&1)
check "-v -k says created, not replaced" \
  bash -c "grep -q -- '-- created verbose.gz' <<< \"\$1\" && ! grep -q replaced <<< \"\$1\"" _ "$out"
rm -f verbose.gz
out=$("$GZ" -v verbose 2>&1)
check "-v without -k says replaced" bash -c "grep -q -- '-- replaced with verbose.gz' <<< \"\$1\"" _ "$out"

# -p 0 is refused, as the help says (1 to 1024).
out=$("$GZ" -p 0 -c one 2>&1 > /dev/null)
status=$?
check "-p 0 is refused" test $status -ne 0
check "-p 0: message" bash -c "grep -q -- '-p needs a number of threads from 1 to 1024' <<< \"\$1\"" _ "$out"

# - is standard input wherever it stands.
printf 'abc' > abc
check "- after a file reads stdin" \
  bash -c "printf 'def' | '$GZ' -c abc - | gzip -dc | cmp -s - <(printf 'abcdef')"
cp file1.orig dash1
check "- between files: the files are replaced, stdin goes to stdout" \
  bash -c "printf 'def' | '$GZ' -k dash1 - abc -f > dash.gz && gzip -dc dash.gz | cmp -s - <(printf 'def') && gzip -dc dash1.gz | cmp -s - file1.orig && test -f abc.gz"

# No FILE and a terminal: gzip refuses to write compressed data there; the
# demo runs only with --demo.
if command -v script > /dev/null; then
  out=$(script -qec "'$GZ'" /dev/null 2>&1 < /dev/null)
  status=$?
  check "a terminal: refused, not the demo" \
    bash -c "[ $status -ne 0 ] && grep -q 'compressed data not written to a terminal' <<< \"\$1\" && ! grep -q verified <<< \"\$1\"" _ "$out"
else
  skip "a terminal: refused, not the demo" "script (util-linux) is not installed"
fi

if [ -n "$DEMO" ]; then
  out=$("$DEMO" --help 2>&1)
  status=$?
  check "sluice-demo --help prints help, not the demo" \
    bash -c "[ $status -eq 0 ] && grep -q 'Usage' <<< \"\$1\" && ! grep -q 'consumer received' <<< \"\$1\"" _ "$out"
  check "sluice-demo runs" bash -c "'$DEMO' 12 | grep -q 'consumer received: *0 1 2 3 4 5 6 7 8 9 10 11\$'"
else
  skip "sluice-demo --help prints help, not the demo" "no sluice-demo given"
  skip "sluice-demo runs" "no sluice-demo given"
fi

# --- the demo works with no terminal at all ---
check "--demo with stdin from /dev/null into a pipe" \
  bash -c "'$GZ' --demo < /dev/null | grep -q 'verified'"
check "--version" bash -c "'$GZ' --version | grep -q '^sluice-gzip'"
check "bad -p" bash -c "! '$GZ' -p 0x 2> /dev/null"
check "bad -b" bash -c "! '$GZ' -b 8 one 2> /dev/null"

echo "1..$n"
exit $failed
