#!/usr/bin/env bash
# test-uninstalled-pc.sh: a program built against the build tree, as
# `meson devenv` users and other projects' subprojects do
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# TAP output. Usage: test-uninstalled-pc.sh BUILD_DIR "CC COMMAND" SOURCE_DIR
# Compiles tests/install/ordered-squares.c (it includes <sluice/sluice.h>)
# with nothing but the flags of meson-uninstalled/sluice-1-uninstalled.pc,
# and runs it against the build tree's library.
set -u

build=$(realpath "${1:?usage: test-uninstalled-pc.sh BUILD_DIR CC SOURCE_DIR}")
cc=$2
srcdir=$(realpath "$3")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

n=0
failed=0
ok () { n=$((n + 1)); echo "ok $n - $1"; }
not_ok () { n=$((n + 1)); echo "not ok $n - $1"; failed=1; }
diag () { sed 's/^/# /' "$@"; }

unset PKG_CONFIG_PATH LD_LIBRARY_PATH
if flags=$(PKG_CONFIG_PATH=$build/meson-uninstalled pkg-config --cflags --libs sluice-1 \
             2> "$tmp/pc.log"); then
  ok "pkg-config finds sluice-1 in meson-uninstalled/"
  echo "# $flags"
else
  not_ok "pkg-config finds sluice-1 in meson-uninstalled/"
  diag "$tmp/pc.log"
fi
sanitize=${SLUICE_SANITIZE:+-fsanitize=$SLUICE_SANITIZE}
# shellcheck disable=SC2086 # the compiler command and the flags are words
if $cc $sanitize -o "$tmp/ordered-squares" "$srcdir/tests/install/ordered-squares.c" $flags \
     > "$tmp/cc.log" 2>&1; then
  ok "a program that includes <sluice/sluice.h> compiles and links against the build tree"
else
  not_ok "a program that includes <sluice/sluice.h> compiles and links against the build tree"
  diag "$tmp/cc.log"
fi
if [ -x "$tmp/ordered-squares" ] &&
   out=$(LD_LIBRARY_PATH=$build/src "$tmp/ordered-squares" 2>&1); then
  ok "it runs with the build tree's library: $out"
else
  not_ok "it runs with the build tree's library"
  echo "${out:-}" | diag
fi

echo "1..$n"
[ "$failed" = 0 ]
