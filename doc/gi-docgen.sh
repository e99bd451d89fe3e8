#!/bin/sh
# gi-docgen.sh: gi-docgen generate into an emptied output directory
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Usage: gi-docgen.sh GI_DOCGEN OUTPUT_DIR [gi-docgen generate options] GIR
# gi-docgen never removes a page, so the pages of removed API would stay.
set -eu
gidocgen=$1
output=$2
shift 2
rm -rf "$output"
exec "$gidocgen" generate --no-namespace-dir --output-dir="$output" "$@"
