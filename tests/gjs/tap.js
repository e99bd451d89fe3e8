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

function skip(reason) {
    nTests++;
    print(`ok ${nTests} # SKIP ${reason}`);
}

// Runs the default main context until done() or a deadline.
function runUntil(what, done) {
    const context = GLib.MainContext.default();
    const deadline = GLib.get_monotonic_time() + 60 * 1000000;
    while (!done()) {
        if (GLib.get_monotonic_time() > deadline)
            throw new Error(`timed out waiting for ${what}`);
        context.iteration(true);
    }
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
