#!/usr/bin/env bash
# test-po.sh: every translatable message has a translation in every language
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# TAP output. Usage: test-po.sh SOURCE_ROOT
# Extracts the messages of the files in po/POTFILES.in as the build's
# sluice-1-pot target does, and checks each po/LANG.po (LANG from
# po/LINGUAS) with msgfmt --check and msgcmp (no message missing, none
# fuzzy or untranslated).
set -u

src=$(realpath "${1:?usage: test-po.sh SOURCE_ROOT}")

for tool in xgettext msgfmt msgcmp; do
  if ! command -v "$tool" > /dev/null; then
    echo "1..0 # SKIP $tool not found (install gettext)"
    exit 0
  fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

n=0
failed=0
ok () { n=$((n + 1)); echo "ok $n - $1"; }
not_ok () { n=$((n + 1)); echo "not ok $n - $1"; failed=1; }
diag () { sed 's/^/# /'; }

cd "$src" || { echo "1..0 # SKIP no source tree at $src"; exit 0; }
mapfile -t potfiles < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' po/POTFILES.in)

# A file with messages that POTFILES.in forgets would go untranslated.
missing=""
for file in src/*.c tools/*.c; do
  if grep -q -E '(^|[^A-Za-z0-9_])N?_ \(' "$file"; then
    listed=0
    for p in "${potfiles[@]}"; do [ "$p" = "$file" ] && listed=1; done
    [ $listed = 1 ] || missing="$missing $file"
  fi
done
if [ -z "$missing" ]; then ok "POTFILES.in lists every file with messages"
else not_ok "POTFILES.in lists every file with messages (missing:$missing)"; fi

if xgettext --from-code=UTF-8 --language=C --add-comments \
     --keyword=_ --keyword=N_ --keyword=C_:1c,2 --keyword=NC_:1c,2 \
     --keyword=g_dcgettext:2 --keyword=g_dngettext:2,3 --keyword=g_dpgettext2:2c,3 \
     --flag=N_:1:pass-c-format --flag=g_set_error:4:c-format --flag=g_error_new:3:c-format \
     -o "$tmp/sluice-1.pot" "${potfiles[@]}" 2> "$tmp/xgettext.err"; then
  ok "xgettext extracts the messages"
else
  not_ok "xgettext extracts the messages"
  diag < "$tmp/xgettext.err"
fi
n_messages=$(grep -c '^msgid ' "$tmp/sluice-1.pot")
echo "# $((n_messages - 1)) messages in the sources"

mapfile -t languages < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' po/LINGUAS)
if [ "${#languages[@]}" -gt 0 ]; then ok "po/LINGUAS names ${languages[*]}"
else not_ok "po/LINGUAS names at least one language"; fi

for lang in "${languages[@]}"; do
  po="po/$lang.po"
  if msgfmt --check --statistics -o "$tmp/$lang.mo" "$po" 2> "$tmp/msgfmt.err"; then
    ok "$lang: msgfmt --check passes"
  else
    not_ok "$lang: msgfmt --check passes"
  fi
  diag < "$tmp/msgfmt.err"
  if msgcmp "$po" "$tmp/sluice-1.pot" 2> "$tmp/msgcmp.err"; then
    ok "$lang: every message of the sources is translated"
  else
    not_ok "$lang: every message of the sources is translated"
    diag < "$tmp/msgcmp.err"
  fi
  # msgfmt --statistics counts fuzzy and untranslated messages, if any.
  if ! grep -q -E 'fuzzy|untranslated' "$tmp/msgfmt.err"; then
    ok "$lang: nothing fuzzy or untranslated"
  else
    not_ok "$lang: nothing fuzzy or untranslated"
  fi
done

echo "1..$n"
[ "$failed" = 0 ]
