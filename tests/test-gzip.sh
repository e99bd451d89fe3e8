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

# --- decompression: ours both ways, and gzip's output ---
# Ours compresses and decompresses; gzip compresses and ours decompresses.
roundtrip_d () {
  local file=$1
  shift
  "$GZ" -c "$file" > "$file.sg.gz" &&
    "$GZ" -d "$@" -c "$file.sg.gz" | cmp -s - "$file" &&
    gzip -c "$file" > "$file.g.gz" &&
    "$GZ" -d "$@" -c "$file.g.gz" | cmp -s - "$file"
}
for f in empty one block blockplus many random repetitive; do
  check "-d round trip: $f" roundtrip_d $f
done
check "-d with 1 thread" roundtrip_d many -p 1
check "-d from a pipe" bash -c "cat many.g.gz | '$GZ' -d | cmp -s - many"
check "--decompress --stdout" bash -c "'$GZ' --decompress --stdout many.g.gz | cmp -s - many"

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

# --- decompression of files ---
text dfile 300000
cp dfile dfile.orig
gzip -9 dfile
chmod 604 dfile.gz
touch -d '2021-03-04 05:06:07' dfile.gz
check "-d replaces FILE.gz with FILE" bash -c "'$GZ' -d dfile.gz && test -f dfile && ! test -e dfile.gz"
check "-d: FILE is the original" cmp -s dfile dfile.orig
check "-d keeps the mode" test "$(stat -c %a dfile)" = 604
check "-d keeps the mtime of FILE.gz" test "$(stat -c %Y dfile)" = "$(date -d '2021-03-04 05:06:07' +%s)"
gzip -c dfile.orig > dfile.gz
out=$("$GZ" -d dfile.gz 2>&1)
status=$?
check "-d: an existing FILE is not overwritten" \
  bash -c "[ $status -eq 1 ] && grep -q 'dfile: already exists' <<< \"\$1\" && test -f dfile.gz" _ "$out"
check "-d -f overwrites" bash -c "'$GZ' -d -f dfile.gz && cmp -s dfile dfile.orig && ! test -e dfile.gz"
gzip -c dfile.orig > dfile.gz
check "-d -k keeps FILE.gz" bash -c "rm -f dfile && '$GZ' -dk dfile.gz && cmp -s dfile dfile.orig && test -f dfile.gz"
for suffix in -gz .z -z _z .Z; do
  gzip -c dfile.orig > "sfx$suffix"
  check "-d strips the suffix $suffix" bash -c "'$GZ' -d 'sfx$suffix' && cmp -s sfx dfile.orig && rm sfx"
done
gzip -c dfile.orig > arch.tgz
check "-d: .tgz gives .tar" bash -c "'$GZ' -d arch.tgz && cmp -s arch.tar dfile.orig"
cp dfile.orig nosuffix
out=$("$GZ" -d nosuffix 2>&1)
status=$?
check "-d: unknown suffix: gzip's warning and status 2" \
  bash -c "[ $status -eq 2 ] && [ \"\$1\" = 'sluice-gzip: nosuffix: unknown suffix -- ignored' ] && cmp -s nosuffix dfile.orig" _ "$out"

# Called as gunzip and zcat.
ln -s "$GZ" sluice-gunzip
ln -s "$GZ" sluice-zcat
gzip -c dfile.orig > alias.gz
check "sluice-zcat writes to stdout and keeps FILE.gz" \
  bash -c "./sluice-zcat alias.gz | cmp -s - dfile.orig && test -f alias.gz"
check "sluice-gunzip replaces FILE.gz" \
  bash -c "./sluice-gunzip alias.gz && cmp -s alias dfile.orig && ! test -e alias.gz"

# Several members decompress to their concatenation, as gzip's.
gzip -c one > m1.gz
"$GZ" -c many > m2.gz
: | gzip -c > m3.gz
cat m1.gz m2.gz m3.gz m1.gz > multi.gz
check "several members" bash -c "'$GZ' -dc multi.gz | cmp -s - <(cat one many one)"

# Trailing garbage: a warning, status 2, the data written; -q silences it.
cat m1.gz > trail.gz
printf 'garbage' >> trail.gz
out=$("$GZ" -dc trail.gz 2>&1 > trail.out)
status=$?
check "trailing garbage: status 2, data written" \
  bash -c "[ $status -eq 2 ] && cmp -s trail.out one"
check "trailing garbage: gzip's warning" \
  test "$out" = "sluice-gzip: trail.gz: decompression OK, trailing garbage ignored"
out=$("$GZ" -dcq trail.gz 2>&1 > /dev/null)
status=$?
check "trailing garbage with -q: silent, status 2" bash -c "[ $status -eq 2 ] && [ -z \"\$1\" ]" _ "$out"
cp trail.gz trailf.gz
check "trailing garbage: FILE.gz is decompressed" \
  bash -c "'$GZ' -dq trailf.gz; [ \$? -eq 2 ] && cmp -s trailf one && ! test -e trailf.gz"
{ cat m2.gz; head -c 1000 /dev/zero; } > zeros.gz
out=$("$GZ" -dc zeros.gz 2>&1 > zeros.out)
status=$?
check "trailing zeros (tar's padding): ignored silently" \
  bash -c "[ $status -eq 0 ] && [ -z \"\$1\" ] && cmp -s zeros.out many" _ "$out"

# Damaged input: gzip's message, status 1, no output file, the input kept.
gzip -c many > good.gz
size=$(stat -c %s good.gz)
damage () { # name offset byte-xor
  cp good.gz "$1.gz"
  /usr/bin/python3 -c "import sys; f = open(sys.argv[1], 'r+b'); f.seek(int(sys.argv[2])); b = f.read(1)[0]; f.seek(int(sys.argv[2])); f.write(bytes([b ^ int(sys.argv[3])]))" "$1.gz" "$2" "$3"
}
damage flipped $((size / 2)) 85
damage badcrc $((size - 8)) 1
damage badlen $((size - 2)) 1
damage badmagic 0 1
head -c $((size / 2)) good.gz > truncated.gz
: > nothing.gz
corrupt_case () { # name message
  local out status
  out=$("$GZ" -d "$1.gz" 2>&1)
  status=$?
  check "$1: status 1" test $status -eq 1
  check "$1: gzip's message" test "$out" = "sluice-gzip: $1.gz: $2"
  check "$1: no output file, the input kept" \
    bash -c "! test -e '$1' && test -f '$1.gz' && ! ls -A | grep -q '^\\.$1'"
}
corrupt_case flipped "invalid compressed data--crc error"
corrupt_case badcrc "invalid compressed data--crc error"
corrupt_case badlen "invalid compressed data--length error"
corrupt_case badmagic "not in gzip format"
corrupt_case truncated "unexpected end of file"
corrupt_case nothing "unexpected end of file"
out=$("$GZ" -dc truncated.gz 2>&1 > truncated.out)
status=$?
check "truncated to stdout: status 1, what came before written (as gzip's)" \
  bash -c "[ $status -eq 1 ] && cmp -s truncated.out <(gzip -dc truncated.gz 2> /dev/null)"
# A damaged deflate block (not only a wrong CRC): format violated.
/usr/bin/python3 -c "
import zlib
c = zlib.compressobj(6, zlib.DEFLATED, 31)
d = c.compress(open('many', 'rb').read()) + c.flush()
d = bytearray(d)
d[10] = 0xff  # the first block header: an invalid block type
open('badblock.gz', 'wb').write(bytes(d))"
corrupt_case badblock "invalid compressed data--format violated"

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
