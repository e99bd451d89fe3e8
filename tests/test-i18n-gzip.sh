#!/usr/bin/env bash
# test-i18n-gzip.sh: sluice-gzip, and sluice-worker that deflates for its
# --redis, speak German under LANGUAGE=de
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# TAP output. Usage: test-i18n-gzip.sh SLUICE_GZIP [SLUICE_WORKER]
# Both must find the build tree's catalogs: tests/meson.build builds copies
# of the tools whose LOCALEDIR is <build>/po.
set -u

GZ=$(realpath "${1:?usage: test-i18n-gzip.sh SLUICE_GZIP [SLUICE_WORKER]}")
W=${2:+$(realpath "$2")}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1

n=0
ok () { n=$((n + 1)); echo "ok $n - $1"; }
not_ok () { n=$((n + 1)); echo "not ok $n - $1"; }

# expect DESCRIPTION EXPECTED_STATUS EXPECTED_STDERR -- COMMAND...
expect () {
  local desc=$1 want_status=$2 want=$3
  shift 4
  local got status
  got=$("$@" 2>&1 > /dev/null)
  status=$?
  if [ "$status" = "$want_status" ] && [ "$got" = "$want" ]; then
    ok "$desc"
  else
    not_ok "$desc"
    printf '# expected (status %s): %s\n# got      (status %s): %s\n' \
      "$want_status" "$want" "$status" "$got"
  fi
}

de () { env -u LC_ALL -u LC_MESSAGES LANGUAGE=de LANG=C.UTF-8 "$@"; }
en () { env -u LC_ALL -u LC_MESSAGES -u LANGUAGE LANG=C.UTF-8 "$@"; }

echo data > input
echo old > input.gz
mkdir dir

expect "existing output, German" 1 \
  "sluice-gzip: input.gz: existiert bereits, nicht überschrieben (-f überschreibt)" \
  -- de "$GZ" input
expect "existing output, English without LANGUAGE" 1 \
  "sluice-gzip: input.gz: already exists, not overwritten (use -f to overwrite)" \
  -- en "$GZ" input
if [ -e input ] && [ "$(cat input.gz)" = old ]; then ok "input and existing output untouched"
else not_ok "input and existing output untouched"; fi

expect "a directory, German" 2 "sluice-gzip: dir ist ein Verzeichnis – ignoriert" \
  -- de "$GZ" dir
expect "a .gz input, German" 0 "sluice-gzip: input.gz hat bereits die Endung .gz – unverändert" \
  -- de "$GZ" input.gz
expect "not gzip data, German" 1 "sluice-gzip: input.gz: nicht im gzip-Format" \
  -- de "$GZ" -dc input.gz
expect "--deflate of no engine, German" 1 "sluice-gzip: --deflate braucht zlib, libdeflate oder auto" \
  -- de "$GZ" --deflate=gzip -c input
expect "--deflate=auto with --redis, German" 1 \
  "sluice-gzip: --deflate=auto geht nicht mit --redis: seine Probeblöcke werden in den Threads dieses Prozesses auf beide Arten komprimiert; geben Sie --deflate=zlib oder --deflate=libdeflate an" \
  -- de "$GZ" --deflate=auto --redis=unix:/nonexistent -c input
expect "bad thread count, German" 1 "sluice-gzip: -p braucht eine Anzahl von Threads zwischen 1 und 1024" \
  -- de "$GZ" -p 5000 input
expect "bad block size, German" 1 "sluice-gzip: -b braucht eine Blockgröße zwischen 32 und 524288 KiB" \
  -- de "$GZ" -b 1 input

help=$(de "$GZ" --help 2>&1)
for want in "[DATEI…]" "Die Eingabedateien behalten" "Nie einen Fortschrittsbalken zeigen" \
            "Dekomprimieren (wie sluice-gunzip; sluice-zcat ist -d -c)" "oder mit -d dekomprimieren."; do
  case $help in
    *"$want"*) ok "--help, German: $want" ;;
    *) not_ok "--help, German: $want"; printf '%s\n' "$help" | sed 's/^/# /' ;;
  esac
done

# sluice-worker: a module that is nowhere, the message listing where it
# was looked for (the paths, which depend on the prefix, left out here).
worker_not_found () { # de|en
  "$1" env -u SLUICE_WORKER_MODULE_PATH "$W" no-such-module < /dev/null 2>&1 > /dev/null |
    sed -e '/^  \//d' >&2
  return "${PIPESTATUS[0]}"
}
if [ -n "$W" ]; then
  expect "sluice-worker: a module not found, German" 1 \
    "sluice-worker: no-such-module: Modul nicht gefunden; gesucht als:
  und im Suchpfad des dynamischen Linkers (SLUICE_WORKER_MODULE_PATH fügt Verzeichnisse hinzu, oder einen Pfad angeben)" \
    -- worker_not_found de
  expect "sluice-worker: a module not found, English without LANGUAGE" 1 \
    "sluice-worker: no-such-module: module not found; looked for:
  and in the dynamic linker's search path (set SLUICE_WORKER_MODULE_PATH to add directories, or give a path)" \
    -- worker_not_found en
  case $(de "$W" --help 2>&1) in
    *"Ein MODUL mit »/« ist ein Pfad"*) ok "sluice-worker --help, German: how a MODULE is found" ;;
    *) not_ok "sluice-worker --help, German: how a MODULE is found" ;;
  esac
fi

echo "1..$n"
