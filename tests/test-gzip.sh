#!/usr/bin/env bash
# test-gzip.sh: sluice-gzip round trips through gzip -d, and its error cases
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# TAP output. Usage: test-gzip.sh /path/to/sluice-gzip
set -u

GZ=$(realpath "${1:?usage: test-gzip.sh SLUICE_GZIP [SLUICE_DEMO]}")
DEMO=${2:+$(realpath "$2")}
# The bench's corpus generator, for --deflate=auto's size bound.
CORPUS_PY=$(realpath "$(dirname "$0")/../bench/make-corpus.py")
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
check "a directory without -r: status 2, as gzip" test $status -eq 2
check "a directory: gzip's message" test "$out" = "sluice-gzip: adir is a directory -- ignored"
check "a directory: no .gz" test ! -e adir.gz
out=$("$GZ" -q adir 2>&1)
status=$?
check "a directory, -q: no message, status 2" bash -c "[ $status -eq 2 ] && [ -z \"\$1\" ]" _ "$out"
for mode in -d -t -l; do
  out=$("$GZ" $mode adir 2>&1)
  status=$?
  check "a directory, $mode: ignored as gzip (status 2)" \
    bash -c "[ $status -eq 2 ] && [ \"\$1\" = 'sluice-gzip: adir is a directory -- ignored' ]" _ "$out"
done

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
  rm full/data
  yes 'sluice' | head -c 400000 | gzip -c > full/big.gz
  out=$("$GZ" -d full/big.gz 2>&1)
  status=$?
  check "-d, full disk: status 1, the output named, FILE.gz kept, no partial FILE" \
    bash -c "[ $status -eq 1 ] && [ \"\$1\" = 'sluice-gzip: full/big: No space left on device' ] && [ \"\$(ls -A full)\" = big.gz ]" _ "$out"
  umount full && mounted=
else
  skip "full disk fails" "cannot mount a tmpfs here"
fi


# Waits (10 s at most) until process $1 has $2 open: its signal handlers
# are in place by then (a signal before them would find SIGINT ignored, as
# bash leaves it for a background job), however slow a loaded host is.
wait_open () {
  local i
  for ((i = 0; i < 100; i++)); do
    ls -l "/proc/$1/fd" 2> /dev/null | grep -q "/$2\$" && return
    sleep 0.1
  done
}

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
  wait_open $pid slow
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

# The same while decompressing: no partial FILE, FILE.gz kept.
head -c 300000 /dev/urandom | gzip -1 > slowd.data
signal_case_d () {
  local sig=$1 want=$2 writer pid status
  rm -f slowd.gz
  mkfifo slowd.gz
  (cat slowd.data; sleep 3) > slowd.gz &
  writer=$!
  "$GZ" -d slowd.gz 2> signal.err &
  pid=$!
  wait_open $pid slowd.gz
  sleep 0.5
  kill -"$sig" $pid
  wait $pid 2> /dev/null
  status=$?
  kill $writer 2> /dev/null
  wait $writer 2> /dev/null
  check "-d, SIG$sig: exit status $want" test $status -eq "$want"
  check "-d, SIG$sig: no partial output, no temporary, FILE.gz kept" \
    bash -c "! ls -A | grep -q '^slowd\$\|^\.slowd' && test -p slowd.gz"
}
signal_case_d INT 130
signal_case_d TERM 143

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
gzip -c dfile.orig > bare.gz
check "-d FILE finds FILE.gz, as gzip" bash -c "'$GZ' -d bare && cmp -s bare dfile.orig && ! test -e bare.gz"
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

out=$(printf 'not gzip' | ./sluice-zcat 2>&1 > /dev/null)
check "standard input is 'stdin' in messages, as gzip's" \
  test "$out" = "sluice-gzip: stdin: not in gzip format"

# zcat -f (gzip -dcf): what is not gzip data passes unchanged, as gzip's,
# also after a member (zeros and a lone magic byte too); status 0.
gzip -c one > f1.gz
printf 'not gzip\n' > fplain
printf '\037' > fmagic1
for input in "fplain" "empty" "fmagic1" "many" "f1.gz fplain" "fplain f1.gz" "f1.gz zero3" "f1.gz fmagic1" "f1.gz f1.gz"; do
  printf '\0\0\0' > zero3
  check "zcat -f passes non-gzip data as gzip does: $input" \
    bash -c "[ \"\$(cat $input | ./sluice-zcat -f | od -c; echo \${PIPESTATUS[1]})\" = \"\$(cat $input | gzip -dcf | od -c; echo \${PIPESTATUS[1]})\" ]"
done
check "-dcf FILE without a suffix: copied" bash -c "'$GZ' -dcf fplain | cmp -s - fplain"
check "-tf of non-gzip data: status 0, as gzip" "$GZ" -tf fplain
cp fplain notgz.gz
out=$("$GZ" -df notgz.gz 2>&1)
status=$?
check "-df to a file: not gzip is still an error (gzip copies only to stdout)" \
  bash -c "[ $status -eq 1 ] && [ \"\$1\" = 'sluice-gzip: notgz.gz: not in gzip format' ] && ! test -e notgz" _ "$out"
check "zcat without -f: not gzip is an error" bash -c "! ./sluice-zcat < fplain > /dev/null 2>&1"

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

# A member cut short and followed by another (cat part.gz whole.gz): the
# next member's bytes are read as the rest of the first, and zlib stops at
# a distance before the member's start where gzip reads on; gzip's word
# then depends on what follows: each case as gzip's first message, status 1;
# -dc writes what gzip writes, the bytes inflated past the cut too (a
# window of zeros before the member, as gzip's in a file's first member).
# The whole file after 1,000 bytes of itself: a CRC error (inflated 5 MB
# on: the failing chunk's input was fed twice to the raw inflater before).
gzip -c one > cutnext-one.gz
head -c 131072 many | gzip -c > cutnext-block.gz
seen=""
for next in cutnext-one.gz cutnext-block.gz good.gz; do
  for cut in 5 12 100 1000; do
    { head -c $cut good.gz; cat $next; } > cutnext.gz
    gzip_out=$(gzip -t cutnext.gz 2>&1 | sed -n 's/^gzip: //p' | head -n 1)
    out=$("$GZ" -t cutnext.gz 2>&1)
    status=$?
    seen+="${gzip_out##*: }|"
    check "-t, a member cut at $cut followed by $next: status 1, gzip's message ($gzip_out)" \
      bash -c "[ $status -eq 1 ] && [ \"\$1\" = \"sluice-gzip: \$2\" ]" _ "$out" "$gzip_out"
    "$GZ" -dc cutnext.gz > cutnext.out 2> /dev/null
    status=$?
    check "-dc, a member cut at $cut followed by $next: status 1, gzip's bytes" \
      bash -c "[ $status -eq 1 ] && gzip -dc cutnext.gz 2> /dev/null | cmp -s - cutnext.out"
  done
done
{ head -c 1000 good.gz; cat good.gz; } > cutself.gz
check "good.gz cut at 1,000 bytes then itself: gzip's CRC error, 5 MB as gzip writes them" \
  bash -c "[ \"\$('$GZ' -dc cutself.gz 2>&1 > cutself.out)\" = 'sluice-gzip: cutself.gz: invalid compressed data--crc error' ] &&
    gzip -dc cutself.gz 2> /dev/null | cmp -s - cutself.out && [ \$(stat -c %s cutself.out) -gt 5000000 ]"
check "-t, members cut short: the cases cover a CRC error and the end of the input" \
  bash -c "[[ '$seen' == *'crc error|'* && '$seen' == *'unexpected end of file|'* ]]"

# --- -t: test the integrity ---
gzip -c many > tgood.gz
check "-t: a good file: status 0, nothing written, FILE kept" \
  bash -c "'$GZ' -t tgood.gz > t.out 2>&1 && ! test -s t.out && test -f tgood.gz && ! test -e tgood"
out=$("$GZ" -tv tgood.gz 2>&1)
check "-tv: gzip's OK line" test "$out" = "$(printf 'tgood.gz:\t OK')"
check "-t from stdin" bash -c "'$GZ' -t < tgood.gz"
out=$("$GZ" -t badcrc.gz tgood.gz badmagic.gz 2>&1)
status=$?
check "-t: damaged files: status 1, each named, the good one passes" \
  bash -c "[ $status -eq 1 ] && [ \"\$1\" = \"\$(printf 'sluice-gzip: badcrc.gz: invalid compressed data--crc error\nsluice-gzip: badmagic.gz: not in gzip format')\" ]" _ "$out"
"$GZ" -t trail.gz 2> /dev/null
check "-t: trailing garbage: status 2" test $? -eq 2
check "-t: no temporary or output file left" bash -c "! ls -A | grep -q '^\\.tgood\\|^tgood\$'"

# --- -l: gzip's listing ---
gzip -9 -c many > l9.gz
gzip -n -c one > ln.gz
: | gzip -c > lempty.gz
cp random.sg.gz lrandom.gz
cp many.sg.gz lmany.gz
for f in l9.gz ln.gz lempty.gz lrandom.gz lmany.gz; do
  check "-l equals gzip -l: $f" bash -c "diff <('$GZ' -l $f) <(gzip -l $f) > /dev/null"
  check "-lv equals gzip -lv: $f" bash -c "diff <('$GZ' -lv $f) <(gzip -lv $f) > /dev/null"
  check "-lvN equals gzip -lvN: $f" bash -c "diff <('$GZ' -lvN $f) <(gzip -lvN $f) > /dev/null"
done
check "-l of several files, with gzip's totals line" \
  bash -c "diff <('$GZ' -l l9.gz ln.gz lrandom.gz) <(gzip -l l9.gz ln.gz lrandom.gz) > /dev/null"
out=$("$GZ" -l nosuffix 2>&1)
status=$?
check "-l: not gzip: gzip's message, status 1" \
  bash -c "[ $status -eq 1 ] && grep -q 'sluice-gzip: nosuffix: not in gzip format' <<< \"\$1\"" _ "$out"
# -l of standard input: gzip reads it to its end; the name is "stdout", the
# time (-v) that of the file, or 0 from a pipe.
for f in l9.gz ln.gz lempty.gz lrandom.gz lmany.gz; do
  check "-l from a pipe equals gzip's: $f" \
    bash -c "diff <(cat $f | '$GZ' -l) <(cat $f | gzip -l) > /dev/null"
  check "-lv from a pipe equals gzip's: $f" \
    bash -c "diff <(cat $f | '$GZ' -lv) <(cat $f | gzip -lv) > /dev/null"
  check "-lvN from a redirected file equals gzip's: $f" \
    bash -c "diff <('$GZ' -lvN < $f) <(gzip -lvN < $f) > /dev/null"
done
check "-l - FILE: stdin among files, gzip's totals" \
  bash -c "diff <(cat l9.gz | '$GZ' -l - ln.gz) <(cat l9.gz | gzip -l - ln.gz) > /dev/null"
out=$(cat nosuffix | "$GZ" -l 2>&1)
status=$?
check "-l from a pipe: not gzip: gzip's message, status 1" \
  bash -c "[ $status -eq 1 ] && [ \"\$1\" = 'sluice-gzip: stdin: not in gzip format' ]" _ "$out"
out=$(head -c 15 l9.gz | "$GZ" -l 2>&1)
status=$?
check "-l from a pipe: truncated: gzip's message, status 1" \
  bash -c "[ $status -eq 1 ] && [ \"\$1\" = 'sluice-gzip: stdin: unexpected end of file' ]" _ "$out"
# gzip -l decompresses what it lists (as -t): a file cut anywhere, damaged
# or with garbage after it is not listed but gets -t's message and status;
# before, the last 8 bytes of whatever was there were taken for a trailer.
# list_case NAME STATUS MESSAGE: ours from the file and from a pipe, and
# gzip's own, say MESSAGE (gzip's "gzip: " for ours' "sluice-gzip: ",
# gzip's blank line aside) with STATUS and list nothing.
list_case () {
  local name=$1 want_status=$2 want=$3 out err status label
  for how in file pipe gzip; do
    label=$name
    case $how in
      file) "$GZ" -l "$name" > lc.out 2> lc.err; status=$? ;;
      pipe) "$GZ" -l < "$name" > lc.out 2> lc.err; status=$?; label=stdin ;;
      gzip) gzip -l "$name" > lc.out 2> lc.err; status=$? ;;
    esac
    err=$(grep -v '^$' lc.err | sed 's/^gzip: /sluice-gzip: /')
    check "-l, $name ($how): status $want_status, '$want', nothing listed" \
      bash -c "[ $status -eq $want_status ] && [ \"\$1\" = \"sluice-gzip: $label: $want\" ] && test ! -s lc.out" _ "$err"
  done
}
head -c 30 l9.gz > lcut30.gz
list_case lcut30.gz 1 "unexpected end of file"
head -c $(( $(stat -c %s l9.gz) - 1 )) l9.gz > lcut1.gz
list_case lcut1.gz 1 "unexpected end of file"
{ cat l9.gz; printf 'garbage'; } > lgarbage.gz
list_case lgarbage.gz 2 "decompression OK, trailing garbage ignored"
/usr/bin/python3 -c "
import sys
d = bytearray(open(sys.argv[1], 'rb').read())
d[-8] ^= 1
open(sys.argv[2], 'wb').write(bytes(d))" l9.gz lbadcrc.gz
list_case lbadcrc.gz 1 "invalid compressed data--crc error"
out=$("$GZ" -lq lgarbage.gz 2>&1)
check "-lq, trailing garbage: silent, status 2" bash -c "[ $? -eq 2 ] && [ -z \"\$1\" ]" _ "$out"
check "-l of a cut file among good ones: the others listed, status 1" \
  bash -c "'$GZ' -l ln.gz lcut30.gz l9.gz > lc3.out 2> /dev/null; [ \$? -eq 1 ] &&
    diff lc3.out <(gzip -l ln.gz l9.gz) > /dev/null"
# One byte after a member: gzip takes it for the start of a member cut short
# (two bytes or more are trailing garbage).
for b in x '\037'; do
  { cat ln.gz; printf "$b"; } > lbyte.gz
  out=$("$GZ" -t lbyte.gz 2>&1)
  status=$?
  gzip_out=$(gzip -t lbyte.gz 2>&1 | grep -v '^$' | sed 's/^gzip: /sluice-gzip: /')
  check "-t, one byte ($b) after the last member: 'unexpected end of file', status 1, as gzip" \
    bash -c "[ $status -eq 1 ] && [ \"\$1\" = 'sluice-gzip: lbyte.gz: unexpected end of file' ] && [ \"\$1\" = \"\$2\" ]" _ "$out" "$gzip_out"
done

# --- -S, files already with the suffix ---
cp dfile.orig sfile
check "-S .foo writes FILE.foo" bash -c "'$GZ' -S .foo sfile && test -f sfile.foo && gzip -dc -S .foo sfile.foo | cmp -s - dfile.orig"
check "-d -S .foo restores FILE" bash -c "'$GZ' -d -S .foo sfile.foo && cmp -s sfile dfile.orig && ! test -e sfile.foo"
out=$("$GZ" -S '' sfile 2>&1)
status=$?
check "-S '' is refused" bash -c "[ $status -eq 1 ] && [ \"\$1\" = \"sluice-gzip: invalid suffix ''\" ]" _ "$out"
cp tgood.gz already.gz
out=$("$GZ" already.gz 2>&1)
status=$?
check "FILE.gz: gzip's warning, status 0, unchanged" \
  bash -c "[ $status -eq 0 ] && [ \"\$1\" = 'sluice-gzip: already.gz already has .gz suffix -- unchanged' ] && cmp -s already.gz tgood.gz && ! test -e already.gz.gz" _ "$out"
cp tgood.gz already.tgz
out=$("$GZ" -q already.tgz 2>&1)
check "FILE.tgz with -q: silent, unchanged" bash -c "[ -z \"\$1\" ] && cmp -s already.tgz tgood.gz" _ "$out"
cp dfile.orig already.foo
out=$("$GZ" -S .foo already.foo 2>&1)
check "-S .foo: FILE.foo already has it" \
  test "$out" = "sluice-gzip: already.foo already has .foo suffix -- unchanged"
check "-f compresses FILE.gz anyway" bash -c "'$GZ' -f -k already.gz && gzip -dc already.gz.gz | cmp -s - already.gz"

# --- -n, -N: the name and time in the header ---
header_field () { # file name|mtime
  /usr/bin/python3 -c "
import struct, sys
d = open(sys.argv[1], 'rb').read()
if sys.argv[2] == 'mtime':
    print(struct.unpack('<I', d[4:8])[0])
else:
    print(d[10:d.index(b'\0', 10)].decode() if d[3] & 8 else '')" "$1" "$2"
}
cp dfile.orig named
touch -d '2019-05-06 07:08:09' named
"$GZ" -k named
check "the name is stored by default" test "$(header_field named.gz name)" = named
check "the time is stored by default" \
  test "$(header_field named.gz mtime)" = "$(date -d '2019-05-06 07:08:09' +%s)"
"$GZ" -n -c named > nameless.gz
check "-n stores no name" test "$(header_field nameless.gz name)" = ""
check "-n stores no time" test "$(header_field nameless.gz mtime)" = 0
check "-n output decompresses" bash -c "gzip -dc nameless.gz | cmp -s - named"
mkdir -p nd && cp named.gz nd/other.gz && touch -d '2022-01-01 00:00:00' nd/other.gz
check "-d without -N: the name from FILE.gz, its time" \
  bash -c "'$GZ' -dk nd/other.gz && cmp -s nd/other named && [ \$(stat -c %Y nd/other) = \$(date -d '2022-01-01 00:00:00' +%s) ]"
check "-dN restores the stored name" \
  bash -c "'$GZ' -dN nd/other.gz && cmp -s nd/named named && ! test -e nd/other.gz"
check "-dN restores the stored time" \
  test "$(stat -c %Y nd/named)" = "$(date -d '2019-05-06 07:08:09' +%s)"
cp named.gz nd/again.gz
out=$(cd nd && "$GZ" -dN again.gz 2>&1)
status=$?
check "-dN: an existing file of the stored name is not overwritten" \
  bash -c "[ $status -eq 1 ] && [ \"\$1\" = 'sluice-gzip: named: already exists, not overwritten (use -f to overwrite)' ] && test -f nd/again.gz && ! ls -A nd | grep -q '^\\.'" _ "$out"

# --- -r: directories, symbolic links ---
mkdir -p tree/sub
cp one tree/a
cp many tree/sub/b
cp tgood.gz tree/c.gz
ln -s ../one tree/link
out=$("$GZ" -r tree 2>&1)
status=$?
check "-r compresses the files of the tree" \
  bash -c "gzip -dc tree/a.gz | cmp -s - one && gzip -dc tree/sub/b.gz | cmp -s - many && ! test -e tree/a && ! test -e tree/sub/b"
check "-r leaves FILE.gz alone, silently" bash -c "cmp -s tree/c.gz tgood.gz && ! test -e tree/c.gz.gz"
check "-r: a symbolic link is not followed: gzip's message, status 1" \
  bash -c "[ $status -eq 1 ] && [ \"\$1\" = 'sluice-gzip: tree/link: Too many levels of symbolic links' ] && test -L tree/link && ! test -e tree/link.gz" _ "$out"
out=$("$GZ" -dr tree 2>&1)
status=$?
check "-dr decompresses the tree" \
  bash -c "cmp -s tree/a one && cmp -s tree/sub/b many && gzip -dc tgood.gz | cmp -s - tree/c && ! ls tree/sub | grep -q gz"
check "-dr: the link again, status 1" \
  bash -c "[ $status -eq 1 ] && [ \"\$1\" = 'sluice-gzip: tree/link: Too many levels of symbolic links' ]" _ "$out"
out=$("$GZ" link-to-one 2>&1; ln -s one link-to-one; "$GZ" link-to-one 2>&1)
check "a symbolic link FILE: not followed without -f" \
  bash -c "grep -q 'link-to-one: Too many levels of symbolic links' <<< \"\$1\" && test -L link-to-one && ! test -e link-to-one.gz" _ "$out"
check "-c follows a symbolic link" bash -c "'$GZ' -c link-to-one | gzip -dc | cmp -s - one"
ln -s .. tree/sub/up
check "-rc follows links to files, not to directories (no cycle)" \
  bash -c "'$GZ' -rc tree | gzip -dc | cmp -s - <(cat tree/a tree/c tree/link tree/sub/b)"
rm tree/sub/up
out=$("$GZ" tree 2>&1)
status=$?
check "a directory without -r: message, status 2" \
  bash -c "[ $status -eq 2 ] && grep -q 'tree is a directory -- ignored' <<< \"\$1\"" _ "$out"
if [ -z "$unreadable_skip" ]; then
  mkdir -p perm/tree && cp one perm/tree/open && cp one perm/tree/secret && chmod 000 perm/tree/secret
  chmod 777 perm/tree
  chmod 755 "$tmp" # nobody reaches the tree
  out=$("${as_user[@]}" $gz_as_user -r perm/tree 2>&1)
  status=$?
  check "-r: an unreadable file: Permission denied, status 1, the others done" \
    bash -c "[ $status -eq 1 ] && [ \"\$1\" = 'sluice-gzip: perm/tree/secret: Permission denied' ] && test -f perm/tree/open.gz && test -e perm/tree/secret" _ "$out"
else
  skip "-r: an unreadable file: Permission denied, status 1, the others done" "$unreadable_skip"
fi

# --- interoperability: our output in other readers, theirs in ours ---
pyunzip () { /usr/bin/python3 -c "import gzip, sys; sys.stdout.buffer.write(gzip.open(sys.argv[1]).read())" "$1"; }
pyzip () { /usr/bin/python3 -c "import gzip, sys; sys.stdout.buffer.write(gzip.compress(open(sys.argv[1], 'rb').read()))" "$1"; }
export -f pyunzip pyzip
have_pigz=
command -v pigz > /dev/null && have_pigz=1
for f in empty one blockplus many; do
  "$GZ" -c $f > io.gz
  check "ours accepted by gzip -t, zcat, Python's gzip: $f" \
    bash -c "gzip -t io.gz && zcat io.gz | cmp -s - $f && pyunzip io.gz | cmp -s - $f"
  pyzip $f > py.gz
  check "Python's gzip output accepted: $f" bash -c "'$GZ' -dc py.gz | cmp -s - $f"
  if [ -n "$have_pigz" ]; then
    check "ours accepted by pigz -d: $f" bash -c "pigz -dc io.gz | cmp -s - $f"
    pigz -c $f > pz.gz
    pigz -i -c $f > pzi.gz
    check "pigz's output accepted: $f" \
      bash -c "'$GZ' -dc pz.gz | cmp -s - $f && '$GZ' -dc pzi.gz | cmp -s - $f"
  else
    skip "ours accepted by pigz -d: $f" "pigz is not installed"
    skip "pigz's output accepted: $f" "pigz is not installed"
  fi
done

# --- -i: independent blocks and their index ---
# check_accepted GZ ORIGINAL WHAT: gzip -t, zcat, Python's gzip and pigz -d
# take GZ (with its index) and give ORIGINAL.
check_accepted () {
  check "$3: accepted by gzip -t, zcat, Python's gzip" \
    bash -c "gzip -t $1 && zcat $1 | cmp -s - $2 && pyunzip $1 | cmp -s - $2"
  if [ -n "$have_pigz" ]; then
    check "$3: accepted by pigz -d" bash -c "pigz -dc $1 | cmp -s - $2"
  else
    skip "$3: accepted by pigz -d" "pigz is not installed"
  fi
}
for f in one block blockplus many random; do
  "$GZ" -i -c $f > ind.gz
  check_accepted ind.gz $f "-i, $f"
  check "-i decompressed by ours: $f" bash -c "'$GZ' -dc ind.gz | cmp -s - $f"
  check "-i decompressed by ours from a pipe: $f" bash -c "cat ind.gz | '$GZ' -dc | cmp -s - $f"
done
# --deflate=libdeflate: libdeflate's blocks made to concatenate (the final
# block's BFINAL cleared, an empty stored block after it) into ONE member.
# The number of gzip members of a file, for Python's zlib.
members () {
  /usr/bin/python3 -c "
import sys, zlib
d = open(sys.argv[1], 'rb').read()
n = 0
while d:
    z = zlib.decompressobj(31)
    z.decompress(d)
    d = z.unused_data
    n += 1
print(n)" "$1"
}
export -f members
for f in empty one block blockplus many random repetitive; do
  levels=6
  if [ $f = blockplus ] || [ $f = many ]; then levels="1 6 9"; fi
  for lv in $levels; do
    "$GZ" -$lv -p 2 --deflate=libdeflate -c $f > ld.gz
    check_accepted ld.gz $f "--deflate=libdeflate -$lv, $f"
    check "--deflate=libdeflate -$lv, $f: one member, decompressed by ours, -l as gzip -l" \
      bash -c "[ \$(members ld.gz) = 1 ] && '$GZ' -dc ld.gz | cmp -s - $f &&
        [ \"\$('$GZ' -l ld.gz)\" = \"\$(gzip -l ld.gz)\" ]"
  done
done
"$GZ" -6 -b 32 --deflate=libdeflate -c many > ld.gz
check "--deflate=libdeflate -b 32: one member, accepted" \
  bash -c "[ \$(members ld.gz) = 1 ] && gzip -dc ld.gz | cmp -s - many"
"$GZ" -i --deflate=libdeflate -c many > ldi.gz
check_accepted ldi.gz many "--deflate=libdeflate -i"
if command -v strace > /dev/null && strace -o /dev/null true 2> /dev/null; then
  blocks=$(( ($(stat -c %s many) + 131071) / 131072 ))
  ASAN_OPTIONS=detect_leaks=0 strace -f -e trace=pread64 -o ldi.trace "$GZ" -dc ldi.gz > ldi.out
  check "--deflate=libdeflate -i: -d uses the index, one read per block" \
    bash -c "cmp -s ldi.out many && [ \$(grep pread64 ldi.trace | grep -cE '= [1-9][0-9]*$') -ge $blocks ]"
else
  skip "--deflate=libdeflate -i: -d uses the index, one read per block" "strace does not work here"
fi
# --deflate=auto: probe blocks deflated both ways decide, block by block,
# whether libdeflate (no dictionary) or zlib deflates the blocks after them
# (tools/sluice-gzip.c, "--deflate=auto"). One member as above; the choice
# depends on the data only; the size stays within AUTO_BOUND of zlib's.
AUTO_BOUND=1.005
# "Z L P": the blocks deflated with zlib, with libdeflate, and the probes.
auto_blocks () {
  G_MESSAGES_DEBUG=all "$GZ" --deflate=auto "$@" 2>&1 > auto.gz |
    sed -n 's/.*--deflate=auto: \([0-9]*\) blocks with zlib, \([0-9]*\) with libdeflate, \([0-9]*\) probes.*/\1 \2 \3/p'
}
within_bound () { awk -v a="$(stat -c %s "$1")" -v b="$(stat -c %s "$2")" -v k=$AUTO_BOUND 'BEGIN {exit !(a <= b * k)}'; }
for f in empty one block blockplus many random repetitive; do
  "$GZ" -p 2 --deflate=auto -c $f > la.gz
  check_accepted la.gz $f "--deflate=auto, $f"
  check "--deflate=auto, $f: one member, decompressed by ours, -l as gzip -l" \
    bash -c "[ \$(members la.gz) = 1 ] && '$GZ' -dc la.gz | cmp -s - $f &&
      [ \"\$('$GZ' -l la.gz)\" = \"\$(gzip -l la.gz)\" ]"
done
"$GZ" -p 1 --deflate=auto -c many > la1.gz
"$GZ" -p 3 -b 32 --deflate=auto -c many > la3-32.gz
"$GZ" -p 1 -b 32 --deflate=auto -c many > la1-32.gz
check "--deflate=auto: the same bytes with 1 or 3 threads and from a pipe" \
  bash -c "'$GZ' -p 3 --deflate=auto -c many | cmp -s - la1.gz &&
    cat many | '$GZ' -p 2 --deflate=auto | cmp -s - <('$GZ' -n --deflate=auto -c many) &&
    cmp -s la1-32.gz la3-32.gz &&
    gzip -dc la3-32.gz | cmp -s - many"
"$GZ" -c many > zl.gz
read -r z l p < <(auto_blocks -c many)
check "--deflate=auto on the 16-word text: zlib after the probes ($z, $l, $p), within $AUTO_BOUND of zlib" \
  bash -c "[ '$l' = 0 ] && [ '$z' -gt 30 ] && [ '$p' -ge 2 ] && gzip -dc auto.gz | cmp -s - many &&
    $(declare -f within_bound); AUTO_BOUND=$AUTO_BOUND; within_bound auto.gz zl.gz"
/usr/bin/python3 "$CORPUS_PY" corpus 4
"$GZ" -c corpus > zl.gz
"$GZ" --deflate=libdeflate -c corpus > ld.gz
read -r z l p < <(auto_blocks -c corpus)
check "--deflate=auto on the bench corpus: libdeflate after the probes ($z, $l, $p), no larger than libdeflate, within $AUTO_BOUND of zlib" \
  bash -c "[ '$z' = 0 ] && [ '$l' -gt 20 ] && gzip -dc auto.gz | cmp -s - corpus &&
    [ \$(stat -c %s auto.gz) -le \$(stat -c %s ld.gz) ] &&
    $(declare -f within_bound); AUTO_BOUND=$AUTO_BOUND; within_bound auto.gz zl.gz"
# The corpus, source text (libdeflate 4 % larger), the 16-word text and
# random data in one file: both engines, each where it wins.
cp corpus mixed.tar
tar cf - -C /usr/include glib-2.0 2> /dev/null >> mixed.tar
cat many random >> mixed.tar
"$GZ" -c mixed.tar > zl.gz
read -r z l p < <(auto_blocks -c mixed.tar)
check "--deflate=auto on headers, corpus, text, random: both engines ($z, $l, $p), within $AUTO_BOUND of zlib" \
  bash -c "[ '$z' -gt 10 ] && [ '$l' -gt 10 ] && gzip -dc auto.gz | cmp -s - mixed.tar &&
    $(declare -f within_bound); AUTO_BOUND=$AUTO_BOUND; within_bound auto.gz zl.gz"
out=$("$GZ" --deflate=auto --redis=unix:/nonexistent -c one 2>&1 > /dev/null)
status=$?
check "--deflate=auto with --redis: refused before Redis is reached, status 1, saying why" \
  bash -c "[ $status -eq 1 ] && [ \"\$1\" = \"sluice-gzip: --deflate=auto cannot be used with --redis: its probe blocks are deflated both ways in this process's threads; give --deflate=zlib or --deflate=libdeflate\" ]" _ "$out"
"$GZ" -i --deflate=auto -c many > lai.gz
check_accepted lai.gz many "--deflate=auto -i"
check "--deflate=auto -i: the index, decompressed by ours" \
  bash -c "grep -q SLIX lai.gz && '$GZ' -dc lai.gz | cmp -s - many"
out=$("$GZ" --deflate=gzip -c one 2>&1 > /dev/null)
status=$?
check "--deflate of no engine: refused, status 1" \
  bash -c "[ $status -eq 1 ] && [ \"\$1\" = 'sluice-gzip: --deflate needs zlib, libdeflate or auto' ]" _ "$out"
"$GZ" -i -c empty > ind-empty.gz
check "-i, empty input: no index, a valid stream" \
  bash -c "gzip -t ind-empty.gz && '$GZ' -dc ind-empty.gz | cmp -s - empty && ! grep -q SLIX ind-empty.gz"
"$GZ" -i -c many > ind.gz
check "-i: the index member ends the file: XLEN, SLIX, an empty block, a zero trailer" \
  test "$(tail -c 14 ind.gz | od -An -tx1 | tr -d ' \n')" = "534c49580300$(printf '0%.0s' {1..16})"
if [ -n "$have_pigz" ]; then
  pigz -i -c many > pigzi.gz
  check "-i: within 1 % of pigz -i's size" \
    awk -v a="$(stat -c %s ind.gz)" -v b="$(stat -c %s pigzi.gz)" 'BEGIN {exit !(a <= b * 1.01)}'
else
  skip "-i: within 1 % of pigz -i's size" "pigz is not installed"
fi
if command -v strace > /dev/null && strace -o /dev/null true 2> /dev/null; then
  blocks=$(( ($(stat -c %s many) + 131071) / 131072 ))
  ASAN_OPTIONS=detect_leaks=0 strace -f -e trace=pread64 -o ind.trace "$GZ" -dc ind.gz > /dev/null
  check "-d uses the index: one read per block" \
    test "$(grep pread64 ind.trace | grep -cE '= [1-9][0-9]*$')" -ge "$blocks"
else
  skip "-d uses the index: one read per block" "strace does not work here"
fi
check "-l of an -i file: the data's size and CRC (gzip -l shows the index member's 0)" \
  bash -c "[ \"\$('$GZ' -lv ind.gz | awk 'NR == 2 {print \$2, \$7}')\" = \"\$(gzip -lv many.g.gz | awk 'NR == 2 {print \$2, \$7}')\" ]"
# -l of an -i file, from the file and from a pipe, as gzip -l would list
# the data: the file's size, the size gzip -d gives, gzip's ratio with the
# index member counted as header (computed here from the file's bytes).
"$GZ" -i -b 32 -c many > ind32.gz
list_expect () {
  local in out xlen name_len
  in=$(stat -c %s "$1")
  out=$(gzip -dc "$1" | wc -c)
  xlen=$(tail -c 16 "$1" | od -An -tu2 -N2 | tr -d ' ')
  name_len=$(( $(head -c 65536 "$1" | tail -c +11 | od -An -c | tr -d ' \n' | sed 's/\\0.*//' | wc -c) + 1 ))
  awk -v i="$in" -v o="$out" -v h=$((10 + name_len + 8 + 12 + xlen + 10)) -v n="$2" \
    'BEGIN {printf "%d %d %.1f%% %s\n", i, o, 100 * (o - (i - h)) / o, n}'
}
for f in ind.gz ind32.gz; do
  check "-l of an -i file: sizes, ratio and name as gzip -l would list the data: $f" \
    bash -c "[ \"\$('$GZ' -l $f | awk 'NR == 2 {print \$1, \$2, \$3, \$4}')\" = '$(list_expect $f "${f%.gz}")' ]"
  check "-l of an -i file from a pipe: the same, named stdout: $f" \
    bash -c "[ \"\$(cat $f | '$GZ' -l | awk 'NR == 2 {print \$1, \$2, \$3, \$4}')\" = '$(list_expect $f stdout)' ]"
done
check "-l of an -i file: the expectation is not gzip -l's own (which shows 0)" \
  bash -c "[ \"\$(gzip -l ind32.gz 2> /dev/null | awk 'NR == 2 {print \$2}')\" = 0 ]"
cp ind.gz ind-file.gz
check "-d FILE.gz with an index" bash -c "'$GZ' -d ind-file.gz && cmp -s ind-file many"
# A damaged block: gzip's message, status 1, no output.
size=$(stat -c %s ind.gz)
cp ind.gz inddmg.gz
/usr/bin/python3 -c "import sys; f = open(sys.argv[1], 'r+b'); f.seek(int(sys.argv[2])); b = f.read(1)[0]; f.seek(int(sys.argv[2])); f.write(bytes([b ^ 85]))" inddmg.gz $((size / 2))
out=$("$GZ" -d inddmg.gz 2>&1)
status=$?
check "-i, a damaged block: status 1, gzip's kind of message, no output" \
  bash -c "[ $status -eq 1 ] && grep -q '^sluice-gzip: inddmg.gz: invalid compressed data--' <<< \"\$1\" && ! test -e inddmg && test -f inddmg.gz" _ "$out"
# An index that disagrees with the file (a block size changed) is not used.
/usr/bin/python3 -c "
import sys
d = bytearray(open(sys.argv[1], 'rb').read())
xlen = d[-16] | d[-15] << 8
start = len(d) - 10 - xlen - 12
d[start + 16 + 20] ^= 1  # the first block's compressed size
open(sys.argv[2], 'wb').write(bytes(d))" ind.gz indbad.gz
check "-i, an index that disagrees with the file: ignored, the data right" \
  bash -c "'$GZ' -dc indbad.gz | cmp -s - many"

# -i past one extra field's capacity (at most 65,535 bytes: 21,835 blocks
# whose compressed sizes take 3 varint bytes, as random data's at -b 32):
# the index is a chain of members ("SLIC"). Made here small with
# SLUICE_GZIP_INDEX_MEMBER_BLOCKS (the most blocks in one member), and
# whole past the capacity with SLUICE_TEST_FULL=1 (700 MB through deflate).
# The index's length for -l is found without our parser: Python's zlib
# inflates the first member, the data; the rest of the file is the index.
index_bytes () {
  /usr/bin/python3 -c "
import sys, zlib
d = open(sys.argv[1], 'rb').read()
z = zlib.decompressobj(31)
z.decompress(d)
print(len(z.unused_data))" "$1"
}
SLUICE_GZIP_INDEX_MEMBER_BLOCKS=7 "$GZ" -i -b 32 -c many > chain.gz
chain_blocks=$(( ($(stat -c %s many) + 32767) / 32768 ))
check "-i, an index of several members: a chain of them, the last ends the file with SLIC" \
  bash -c "[ \"\$(tail -c 14 chain.gz | od -An -tx1 | tr -d ' \n')\" = '534c49430300$(printf '0%.0s' {1..16})' ] &&
    [ $(members chain.gz) -eq $(( 1 + (chain_blocks + 6) / 7 )) ]"
check_accepted chain.gz many "-i, a chained index"
check "-i, a chained index: decompressed by ours, from the file and from a pipe" \
  bash -c "'$GZ' -dc chain.gz | cmp -s - many && cat chain.gz | '$GZ' -dc | cmp -s - many"
if command -v strace > /dev/null && strace -o /dev/null true 2> /dev/null; then
  ASAN_OPTIONS=detect_leaks=0 strace -f -e trace=pread64 -o chain.trace "$GZ" -dc chain.gz > /dev/null
  check "-d uses a chained index: one read per block" \
    test "$(grep pread64 chain.trace | grep -cE '= [1-9][0-9]*$')" -ge "$chain_blocks"
else
  skip "-d uses a chained index: one read per block" "strace does not work here"
fi
chain_expect () {
  local in out name_len
  in=$(stat -c %s "$1")
  out=$(gzip -dc "$1" | wc -c)
  name_len=$(( $(head -c 65536 "$1" | tail -c +11 | od -An -c | tr -d ' \n' | sed 's/\\0.*//' | wc -c) + 1 ))
  awk -v i="$in" -v o="$out" -v h=$((10 + name_len + 8 + $(index_bytes "$1"))) -v n="$2" \
    'BEGIN {printf "%d %d %.1f%% %s\n", i, o, 100 * (o - (i - h)) / o, n}'
}
check "-l of a chained index: sizes, ratio (the whole chain as header) and name" \
  bash -c "[ \"\$('$GZ' -l chain.gz | awk 'NR == 2 {print \$1, \$2, \$3, \$4}')\" = '$(chain_expect chain.gz chain)' ]"
check "-l of a chained index from a pipe: the same, named stdout" \
  bash -c "[ \"\$(cat chain.gz | '$GZ' -l | awk 'NR == 2 {print \$1, \$2, \$3, \$4}')\" = '$(chain_expect chain.gz stdout)' ]"
check "-lv of a chained index: the data's CRC" \
  bash -c "[ \"\$('$GZ' -lv chain.gz | awk 'NR == 2 {print \$2}')\" = \"\$(gzip -lv many.g.gz | awk 'NR == 2 {print \$2}')\" ]"
# A chain with a member damaged (the first one's first size, right after
# its 40 bytes of fields) is not used; the data comes back all the same.
/usr/bin/python3 -c "
import sys, zlib
d = bytearray(open(sys.argv[1], 'rb').read())
z = zlib.decompressobj(31)
z.decompress(bytes(d))
start = len(d) - len(z.unused_data)
d[start + 16 + 40] ^= 1
open(sys.argv[2], 'wb').write(bytes(d))" chain.gz chainbad.gz
if command -v strace > /dev/null && strace -o /dev/null true 2> /dev/null; then
  ASAN_OPTIONS=detect_leaks=0 strace -f -e trace=pread64 -o chainbad.trace "$GZ" -dc chainbad.gz > chainbad.out
  check "-i, a chained index that disagrees with the file: ignored, the data right" \
    bash -c "cmp -s chainbad.out many && [ \$(grep pread64 chainbad.trace | grep -cE '= [1-9][0-9]*$') -lt $chain_blocks ]"
else
  check "-i, a chained index that disagrees with the file: ignored, the data right" \
    bash -c "'$GZ' -dc chainbad.gz | cmp -s - many"
fi
# -l takes the last member's summary only when it tells the length just
# decompressed: one that says 1,000 bytes more (its u64 total, after the
# u32 block size) is not believed, and the listing is gzip's own.
/usr/bin/python3 -c "
import struct, sys
d = bytearray(open(sys.argv[1], 'rb').read())
i = d.rfind(b'\x1f\x8b\x08\x04') + 12 + 4 + 4
struct.pack_into('<Q', d, i, struct.unpack_from('<Q', d, i)[0] + 1000)
open(sys.argv[2], 'wb').write(bytes(d))" chain.gz chainlie.gz
check "-l of a chain whose last summary disagrees with the data: as gzip -l, from a file and a pipe" \
  bash -c "[ \"\$('$GZ' -l chainlie.gz)\" = \"\$(gzip -l chainlie.gz)\" ] &&
    [ \"\$(cat chainlie.gz | '$GZ' -l | awk 'NR == 2 {print \$2}')\" = 0 ] && '$GZ' -t chainlie.gz"
# ... and its CRC-32 (u32 after F and C): one bit off, gzip -lv's listing.
/usr/bin/python3 -c "
import sys
d = bytearray(open(sys.argv[1], 'rb').read())
d[d.rfind(b'\x1f\x8b\x08\x04') + 12 + 4 + 28] ^= 1
open(sys.argv[2], 'wb').write(bytes(d))" chain.gz chaincrc.gz
check "-lv of a chain whose last summary has another CRC: as gzip -lv, from a file and a pipe" \
  bash -c "[ \"\$('$GZ' -lv chaincrc.gz)\" = \"\$(gzip -lv chaincrc.gz)\" ] &&
    [ \"\$(cat chaincrc.gz | '$GZ' -l | awk 'NR == 2 {print \$2}')\" = 0 ] && '$GZ' -t chaincrc.gz &&
    [ \"\$('$GZ' -lv chain.gz | awk 'NR == 2 {print \$2}')\" = \"\$(/usr/bin/python3 -c 'import zlib; print(\"%08x\" % zlib.crc32(open(\"many\", \"rb\").read()))')\" ]"
check "--help no longer says that -i leaves the index out" \
  bash -c "! '$GZ' --help | grep -q 'left out'"
if [ "${SLUICE_TEST_FULL:-}" = 1 ]; then
  head -c $((21900 * 32768)) /dev/urandom > full-in
  "$GZ" -1 -i -b 32 -c full-in 2> full.err > full.gz
  status=$?
  check "-i past one extra field's capacity: status 0, no warning, a chained index of 2 members" \
    bash -c "[ $status -eq 0 ] && test ! -s full.err && [ \"\$(tail -c 14 full.gz | head -c 4)\" = SLIC ] && [ $(members full.gz) -eq 3 ]"
  check "-i past one extra field's capacity: the data comes back, by ours and by gzip" \
    bash -c "'$GZ' -dc full.gz | cmp -s - full-in && gzip -dc full.gz | cmp -s - full-in"
  rm -f full-in full.gz
else
  skip "-i past one extra field's capacity: status 0, no warning, a chained index of 2 members" "SLUICE_TEST_FULL=1 runs it (700 MB)"
  skip "-i past one extra field's capacity: the data comes back, by ours and by gzip" "SLUICE_TEST_FULL=1 runs it (700 MB)"
fi
"$GZ" -i -b 32 -c many 2> noidx-small.err | tail -c 16 > noidx-small.tail
check "-i within one extra field's capacity: one member (SLIX), no warning" \
  bash -c "grep -q SLIX noidx-small.tail && test ! -s noidx-small.err"

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
  out=$(script -qec "'$GZ' -d" /dev/null 2>&1)
  status=$?
  check "-d with a terminal on stdin: refused, as gzip" \
    bash -c "[ $status -ne 0 ] && grep -q 'compressed data not read from a terminal' <<< \"\$1\"" _ "$out"
else
  skip "a terminal: refused, not the demo" "script (util-linux) is not installed"
  skip "-d with a terminal on stdin: refused, as gzip" "script (util-linux) is not installed"
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
