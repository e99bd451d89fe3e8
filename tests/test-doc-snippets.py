#!/usr/bin/env python3
# test-doc-snippets.py: the code in doc/*.md is the code the tests compile
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Usage: test-doc-snippets.py DOC_DIR. TAP output; Python's standard
# library only.
#
# Every ```c or ```python block of a guide must follow a marker
#   <!-- snippet: examples/FILE NAME -->
# and be, line for line, the part of doc/examples/FILE between the lines
# "/* [NAME] */" and "/* [/NAME] */" (C) or "# [NAME]" and "# [/NAME]"
# (Python). The examples are built and run by tests/meson.build, so the
# guides show only code that compiles and works.

import difflib
import os
import re
import sys

MARKER = re.compile(r"<!--\s*snippet:\s*(\S+)\s+(\S+)\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")
CHECKED_LANGUAGES = ("c", "python")


def region(path, name):
    """The lines of @path between the [name] and [/name] markers."""
    begin = re.compile(r"^\s*(/\*|#)\s*\[%s\]\s*(\*/)?\s*$" % re.escape(name))
    end = re.compile(r"^\s*(/\*|#)\s*\[/%s\]\s*(\*/)?\s*$" % re.escape(name))
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    starts = [i for i, line in enumerate(lines) if begin.match(line)]
    ends = [i for i, line in enumerate(lines) if end.match(line)]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        return None
    body = lines[starts[0] + 1 : ends[0]]
    # Shown without the indentation they have in the file.
    indent = min((len(l) - len(l.lstrip()) for l in body if l.strip()), default=0)
    return [l[indent:] for l in body]


def blocks(path):
    """(line number, language, lines, marker) for each fenced block."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    i = 0
    marker = None
    while i < len(lines):
        line = lines[i]
        found = MARKER.search(line)
        if found:
            marker = (found.group(1), found.group(2), i + 1)
            i += 1
            continue
        fence = FENCE.match(line)
        if fence:
            start = i
            i += 1
            body = []
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            yield start + 1, fence.group(1), body, marker
            marker = None
        elif line.strip():
            marker = None  # a marker belongs to the block right after it
        i += 1


def main():
    if len(sys.argv) != 2:
        print("usage: test-doc-snippets.py DOC_DIR", file=sys.stderr)
        return 2
    doc_dir = sys.argv[1]
    n = 0
    failed = False
    pages = sorted(p for p in os.listdir(doc_dir) if p.endswith(".md"))
    for page in pages:
        path = os.path.join(doc_dir, page)
        for line, language, body, marker in blocks(path):
            if language not in CHECKED_LANGUAGES and marker is None:
                continue
            n += 1
            where = "%s:%d" % (page, line)
            if marker is None:
                print("not ok %d - %s: a %s block with no snippet marker" % (n, where, language))
                failed = True
                continue
            example, name, _ = marker
            expected = region(os.path.join(doc_dir, example), name)
            if expected is None:
                print("not ok %d - %s: no region [%s] in %s" % (n, where, name, example))
                failed = True
            elif body != expected:
                print("not ok %d - %s shows %s [%s]" % (n, where, example, name))
                for diff in difflib.unified_diff(expected, body, example, page, lineterm=""):
                    print("# " + diff)
                failed = True
            else:
                print("ok %d - %s shows %s [%s]" % (n, where, example, name))
    if n == 0:
        print("not ok 1 - the guides show no checked code at all")
        n, failed = 1, True
    print("1..%d" % n)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
