// tap.js: TAP output and main-loop waiting for the GJS tests
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// Imported by the tests in this directory (imports.searchPath gets the
// test's own directory first).

const { GLib } = imports.gi;

let nTests = 0;
let failed = false;

// One TAP line; the detail is printed as a comment when it failed.
function ok(condition, name, detail) {
    nTests++;
    print(`${condition ? 'ok' : 'not ok'} ${nTests} - ${name}`);
    if (!condition) {
        failed = true;
        if (detail !== undefined)
            print(`# ${detail}`);
    }
}

// ok() on equal JSON forms, with both in the detail when they differ.
function same(got, expected, name) {
    const a = JSON.stringify(got), b = JSON.stringify(expected);
    ok(a === b, name, `got ${a}, expected ${b}`);
}

function skip(reason) {
    nTests++;
    print(`ok ${nTests} # SKIP ${reason}`);
}

// Runs the default main context until done() or a deadline (a tick keeps
// it checking when nothing else comes, as when a call hangs).
function runUntil(what, done) {
    const context = GLib.MainContext.default();
    const deadline = GLib.get_monotonic_time() + 60 * 1000000;
    const tick = GLib.timeout_add(GLib.PRIORITY_DEFAULT, 100, () => GLib.SOURCE_CONTINUE);
    try {
        while (!done()) {
            if (GLib.get_monotonic_time() > deadline)
                throw new Error(`timed out waiting for ${what}`);
            context.iteration(true);
        }
    } finally {
        GLib.source_remove(tick);
    }
}

// Takes every item of @consumerator on the main loop (next_async) into the
// record it returns: the items, whether the end (or an error) came, the
// error, and the most items the consumerator held at once.
function consumeOnMainLoop(consumerator) {
    const record = { items: [], ended: false, error: null, maxLive: 0 };
    const next = () => consumerator.next_async(null, (source, result) => {
        record.maxLive = Math.max(record.maxLive, consumerator.get_n_items());
        try {
            const [more, value] = consumerator.next_finish(result);
            if (!more) {
                record.ended = true;
                return;
            }
            record.items.push(value);
            next();
        } catch (e) {
            record.error = e;
            record.ended = true;
        }
    });
    next();
    return record;
}

// The worker tests' helper program and example module, from the
// environment: [helper, module], or null (with a SKIP line) without them.
function workerHelper() {
    const helper = GLib.getenv('SLUICE_WORKER_TOOL');
    const module = GLib.getenv('SLUICE_WORKER_EXAMPLE_MODULE');
    if (!helper || !module) {
        skip('no sluice-worker or example module in the environment');
        return null;
    }
    return [helper, module];
}

// Runs each test function, a throw counting as a failure; then the plan.
function run(tests) {
    for (const test of tests) {
        try {
            test();
        } catch (e) {
            ok(false, test.name, `${e}\n${e.stack}`);
        }
    }
    print(`1..${nTests}`);
    if (failed)
        imports.system.exit(1);
}
