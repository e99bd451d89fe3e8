#!/usr/bin/env bash
# test-install.sh: Sluice as users get it, installed
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# TAP output. Usage:
#   test-install.sh BUILD_DIR PREFIX LIBDIR "CC COMMAND" PYTHON SOURCE_DIR
# In a -Db_sanitize build, SLUICE_SANITIZE holds the sanitizers (the
# external program is built with them) and SLUICE_SANITIZER_PRELOAD their
# runtimes (preloaded into Python).
# Installs the build into a temporary directory (meson install --destdir),
# then, with nothing from the build tree:
# - compiles tests/install/ordered-squares.c with only
#   `pkg-config --cflags --libs sluice-1` and runs it;
# - checks the files a user relies on and the exported symbols;
# - runs the installed sluice-gzip;
# - imports Sluice in Python through the installed typelib.
set -u

build=$(realpath "${1:?usage: test-install.sh BUILD_DIR PREFIX LIBDIR CC PYTHON SOURCE_DIR}")
prefix=$2
libdir=$3
cc=$4
python=$5
srcdir=$(realpath "$6")

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/dest
root=$dest$prefix
case $libdir in
  /*) lib=$dest$libdir ;;
  *) lib=$root/$libdir ;;
esac

n=0
failed=0
ok () { n=$((n + 1)); echo "ok $n - $1"; }
not_ok () { n=$((n + 1)); echo "not ok $n - $1"; failed=1; }
skip () { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }
diag () { sed 's/^/# /' "$@"; }

# Nothing of the build tree may leak in.
unset GI_TYPELIB_PATH LD_LIBRARY_PATH PKG_CONFIG_PATH

# --- install ---
if meson install -C "$build" --no-rebuild --destdir "$dest" --quiet > "$tmp/install.log" 2>&1; then
  ok "meson install --destdir"
else
  not_ok "meson install --destdir"
  diag "$tmp/install.log"
  echo "1..$n"
  exit 1
fi

missing=""
for file in "$root/include/sluice-1/sluice/sluice.h" \
            "$root/include/sluice-1/sluice/sluice-version.h" \
            "$root/include/sluice-1/sluice/sluice-enums.h" \
            "$lib/libsluice-1.so.0" \
            "$lib/pkgconfig/sluice-1.pc" \
            "$root/bin/sluice-gzip" \
            "$root/share/locale/de/LC_MESSAGES/sluice-1.mo"; do
  [ -e "$file" ] || missing="$missing ${file#"$dest"}"
done
if [ -z "$missing" ]; then ok "headers, library, pkg-config file, tool and catalog installed"
else not_ok "installed files (missing:$missing)"; fi

# Only sluice_* is exported.
others=$(nm -D --defined-only "$lib/libsluice-1.so.0" | awk '$2 ~ /^[TDBRV]$/ && $3 !~ /^sluice_/ { print $3 }')
if [ -z "$others" ]; then ok "the library exports only sluice_* symbols"
else not_ok "the library exports only sluice_* symbols"; echo "$others" | diag; fi

# --- a C program, with nothing but pkg-config ---
# The .pc file says prefix=$prefix; a relocated copy points into the
# destdir. (pkg-config's --define-variable=prefix or PKG_CONFIG_SYSROOT_DIR
# would relocate GLib's paths as well.)
mkdir -p "$tmp/pkgconfig"
sed "s|^prefix=.*|prefix=$root|" "$lib/pkgconfig/sluice-1.pc" > "$tmp/pkgconfig/sluice-1.pc"
if flags=$(PKG_CONFIG_PATH=$tmp/pkgconfig pkg-config --cflags --libs sluice-1 2> "$tmp/pc.log"); then
  ok "pkg-config --cflags --libs sluice-1"
  echo "# $flags"
else
  not_ok "pkg-config --cflags --libs sluice-1"
  diag "$tmp/pc.log"
fi
sanitize=${SLUICE_SANITIZE:+-fsanitize=$SLUICE_SANITIZE}
# shellcheck disable=SC2086 # the compiler command and the flags are words
if $cc $sanitize -o "$tmp/ordered-squares" "$srcdir/tests/install/ordered-squares.c" $flags \
     > "$tmp/cc.log" 2>&1; then
  ok "an external program compiles and links against the installed headers and library"
else
  not_ok "an external program compiles and links against the installed headers and library"
  diag "$tmp/cc.log"
fi
if [ -x "$tmp/ordered-squares" ] &&
   out=$(LD_LIBRARY_PATH=$lib "$tmp/ordered-squares" 2>&1); then
  ok "it runs with the installed library: $out"
else
  not_ok "it runs with the installed library"
  echo "${out:-}" | diag
fi
if [ -x "$tmp/ordered-squares" ] &&
   LD_LIBRARY_PATH=$lib ldd "$tmp/ordered-squares" | grep -q "libsluice-1.so.0 => $lib/"; then
  ok "it uses the installed libsluice-1.so.0"
else
  not_ok "it uses the installed libsluice-1.so.0"
fi

# --- the installed tool ---
seq 1 200000 > "$tmp/input"
if LD_LIBRARY_PATH=$lib "$root/bin/sluice-gzip" -c "$tmp/input" 2> "$tmp/gzip.log" | gzip -d | cmp -s - "$tmp/input"; then
  ok "the installed sluice-gzip round-trips through gzip -d"
else
  not_ok "the installed sluice-gzip round-trips through gzip -d"
  diag "$tmp/gzip.log"
fi

# --- Python, through the installed typelib ---
typelib_dir=$lib/girepository-1.0
if [ ! -e "$typelib_dir/Sluice-1.typelib" ]; then
  skip "Python imports Sluice from the installed typelib" "built without introspection"
elif ! command -v "$python" > /dev/null || ! "$python" -c "import gi" 2> /dev/null; then
  skip "Python imports Sluice from the installed typelib" "python3-gi is not installed"
else
  if [ -e "$root/share/gir-1.0/Sluice-1.gir" ]; then ok "Sluice-1.gir installed"
  else not_ok "Sluice-1.gir installed"; fi
  if out=$(GI_TYPELIB_PATH=$typelib_dir LD_LIBRARY_PATH=$lib \
             bash "$srcdir/tests/python/run-python-test.sh" "$python" \
             "$srcdir/tests/install/import-sluice.py" "$typelib_dir" 2> "$tmp/py.log"); then
    ok "Python imports Sluice from the installed typelib: $out"
  else
    not_ok "Python imports Sluice from the installed typelib"
    echo "$out" | diag
    diag "$tmp/py.log"
  fi
fi

echo "1..$n"
# The status is the last command's: bash under valgrind leaks a little on
# an `exit` with an EXIT trap set.
[ "$failed" = 0 ]
