#!/usr/bin/env python3
# make-corpus.py: a deterministic, realistic text-like corpus for the gzip bench
#
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Usage: make-corpus.py OUTPUT [SIZE_MB]
#
# The same bytes on every machine and Python 3 version: a fixed seed drives
# random.Random (Mersenne Twister, stable across versions for random() and
# getrandbits()). The text mixes what gzip meets in practice: prose with a
# Zipf-like vocabulary, server log lines with timestamps, addresses and
# numbers, CSV rows and JSON records, so that its ratio (about 3:1 at -6)
# and speed sit where real text does rather than at either extreme.
import random
import sys

SEED = 20261122


def vocabulary(rng, n):
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    weights = [12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8,
               2.4, 2.4, 2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.2, 0.2, 0.1, 0.1]
    cum = []
    total = 0.0
    for w in weights:
        total += w
        cum.append(total)
    words = set()
    while len(words) < n:
        length = 1 + int(rng.random() ** 1.7 * 11)
        word = []
        for _ in range(length):
            x = rng.random() * total
            for i, c in enumerate(cum):
                if x < c:
                    word.append(letters[i])
                    break
        words.add("".join(word))
    return sorted(words, key=lambda w: (len(w), w))


def zipf_picker(rng, items):
    # Rank r is picked with probability ~ 1/r: sample via the inverse of the
    # cumulative harmonic sum, approximated by an exponential of a uniform.
    n = len(items)

    def pick():
        r = int(n ** rng.random()) - 1
        return items[min(r, n - 1)]
    return pick


def main():
    out_path = sys.argv[1]
    size = int(float(sys.argv[2]) * 1000 * 1000) if len(sys.argv) > 2 else 300 * 1000 * 1000
    rng = random.Random(SEED)
    words = vocabulary(rng, 6000)
    hosts = ['10.%d.%d.%d' % (rng.getrandbits(4), rng.getrandbits(8), rng.getrandbits(8)) for _ in range(400)]
    word = zipf_picker(rng, words)
    paths = ["/api/v1/items", "/api/v1/users", "/static/app.js", "/index.html",
             "/login", "/api/v2/orders", "/health", "/images/logo.png"]
    methods = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]
    statuses = ["200", "200", "200", "200", "304", "404", "500", "201"]
    written = 0
    t = 1763769600  # a fixed clock
    with open(out_path, "w", encoding="ascii", newline="\n") as out:
        buf = []
        buf_len = 0
        while written + buf_len < size:
            kind = rng.random()
            if kind < 0.45:
                n = 6 + int(rng.random() * 18)
                s = " ".join(word() for _ in range(n))
                line = s[0].upper() + s[1:] + ".\n"
            elif kind < 0.75:
                t += int(rng.random() * 3)
                line = '%s - - [%d] "%s %s?id=%d HTTP/1.1" %s %d %.3f\n' % (
                    rng.choice(hosts), t,
                    rng.choice(methods), rng.choice(paths), rng.getrandbits(16),
                    rng.choice(statuses), rng.getrandbits(14), rng.random())
            elif kind < 0.9:
                line = "%d,%s,%s,%.2f,%d\n" % (rng.getrandbits(20), word(), word(),
                                               rng.random() * 1000, rng.getrandbits(6))
            else:
                line = '{"id": %d, "name": "%s %s", "tags": ["%s", "%s"], "score": %.4f}\n' % (
                    rng.getrandbits(24), word(), word(), word(), word(), rng.random())
            buf.append(line)
            buf_len += len(line)
            if buf_len > 1 << 20:
                chunk = "".join(buf)
                out.write(chunk)
                written += len(chunk)
                buf = []
                buf_len = 0
        chunk = "".join(buf)[: size - written]
        out.write(chunk)


if __name__ == "__main__":
    main()
