// test_producer.js: Sluice from JavaScript (GJS), through GObject Introspection
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// GJS runs JavaScript on its main thread only: items are produced with
// non-blocking item functions and consumed on the main loop with
// Consumerator.next_async(), the producer started without a consumer
// function. Run by meson test with GI_TYPELIB_PATH and LD_LIBRARY_PATH
// pointing into the build tree; prints TAP.

imports.gi.versions.Sluice = '1';
const { GLib, GObject, Gio, Sluice } = imports.gi;

imports.searchPath.unshift(GLib.path_get_dirname(new Error().fileName.replace(/^file:\/\//, '')));
const { consumeOnMainLoop, ok, runUntil } = imports.tap;

function stop(producer) {
    const outcome = {};
    producer.stop_async(null, (source, result) => {
        try {
            outcome.result = producer.stop_finish(result);
            outcome.ok = true;
        } catch (e) {
            outcome.error = e;
            outcome.ok = false;
        }
    });
    runUntil('the stop', () => outcome.ok !== undefined);
    return outcome;
}

// Items completed out of order, from timeouts, arrive in call order.
function testInOrder() {
    const n = 200, window = 8;
    const producer = Sluice.OrderedItemProducer.new(null, window);
    producer.start(null);
    const record = consumeOnMainLoop(producer.get_consumerator());
    const completed = [];
    for (let i = 0; i < n; i++) {
        runUntil('ready', () => producer.is_ready());
        const value = `item ${i}`;
        producer.produce_item(slot => {
            GLib.timeout_add(GLib.PRIORITY_DEFAULT, (i * 7) % 5, () => {
                completed.push(i);
                slot.complete(value);
                return GLib.SOURCE_REMOVE;
            });
        }, null, null);
    }
    const outcome = stop(producer);
    ok(outcome.ok, 'in order: the stop succeeds', outcome.error);
    ok(record.ended && record.error === null, 'in order: the consumer saw the end', record.error);
    const expected = Array.from({ length: n }, (_, i) => `item ${i}`);
    ok(JSON.stringify(record.items) === JSON.stringify(expected), 'in order: every item, once, in call order',
        JSON.stringify(record.items.slice(0, 10)));
    ok(JSON.stringify(completed) !== JSON.stringify([...completed].sort((a, b) => a - b)),
        'in order: the items completed out of order');
    ok(record.maxLive <= window, `in order: at most ${window} live items (saw ${record.maxLive})`);
}

// A failed item ends the stream after the items before it; the stop
// reports its error.
function testErrorReachesStop() {
    const producer = Sluice.OrderedItemProducer.new(null, 16);
    producer.start(null);
    const record = consumeOnMainLoop(producer.get_consumerator());
    for (let i = 0; i < 10; i++) {
        producer.produce_item(slot => {
            if (i === 6)
                slot.fail(new GLib.Error(Gio.io_error_quark(), Gio.IOErrorEnum.INVALID_DATA, 'item 6 failed'));
            else
                slot.complete(i);
        }, null, null);
    }
    const outcome = stop(producer);
    ok(!outcome.ok && outcome.error.matches(Gio.io_error_quark(), Gio.IOErrorEnum.INVALID_DATA) &&
        outcome.error.message === 'item 6 failed', 'error: the stop reports the item\'s error',
        outcome.error);
    ok(JSON.stringify(record.items) === '[0,1,2,3,4,5]', 'error: the items before it arrive',
        JSON.stringify(record.items));
    ok(record.error !== null && record.error.message === 'item 6 failed',
        'error: the consumer receives the error in its place', record.error);
}

// A source written in JavaScript (a SluicePushProducer, as a program
// reading a socket would be) feeds the producer as fast as it can and is
// paused while the window is full, resumed when the slow consumer has made
// room: the calls alternate, on the main loop, and every item arrives once,
// in order.
const TickSource = GObject.registerClass({ Implements: [Sluice.PushProducer] },
    class TickSource extends GObject.Object {
        _init(producer, n) {
            super._init();
            this.producer = producer;
            this.n = n;
            this.next = 0;
            this.paused = false;
            this.calls = [];
            this.tick();
        }

        tick() {
            GLib.idle_add(GLib.PRIORITY_DEFAULT, () => {
                if (this.paused || this.next === this.n)
                    return GLib.SOURCE_REMOVE;
                const i = this.next++;
                this.producer.produce_item(slot => slot.complete(i), null, null);
                return GLib.SOURCE_CONTINUE;
            });
        }

        vfunc_pause_producing() {
            this.calls.push('pause');
            this.paused = true;
        }

        vfunc_resume_producing() {
            this.calls.push('resume');
            this.paused = false;
            this.tick();
        }

        vfunc_stop_producing() {
            this.calls.push('stop');
        }
    });

function testUpstreamPausedWhileWindowFull() {
    const n = 60, window = 4;
    const producer = Sluice.OrderedItemProducer.new(null, window);
    producer.start(null);
    const source = new TickSource(producer, n);
    producer.register_producer(source);
    // A slow consumer: one item every 2 ms.
    const consumerator = producer.get_consumerator();
    const items = [];
    let maxLive = 0;
    const take = () => consumerator.next_async(null, (c, result) => {
        maxLive = Math.max(maxLive, c.get_n_items());
        const [more, value] = c.next_finish(result);
        if (!more)
            return;
        items.push(value);
        GLib.timeout_add(GLib.PRIORITY_DEFAULT, 2, () => {
            take();
            return GLib.SOURCE_REMOVE;
        });
    });
    take();
    runUntil('every item', () => items.length === n);
    const pauses = source.calls.filter(c => c === 'pause').length;
    ok(pauses > 0, `upstream: the source was paused (${pauses} times)`);
    ok(source.calls.every((c, k) => c === (k % 2 === 0 ? 'pause' : 'resume')),
        'upstream: pauses and resumes alternate', source.calls.join(' '));
    ok(JSON.stringify(items) === JSON.stringify(Array.from({ length: n }, (_, i) => i)),
        'upstream: every item once, in order');
    ok(maxLive <= window, `upstream: at most ${window} items waited for the consumer (saw ${maxLive})`);
    const outcome = stop(producer);
    ok(outcome.ok && source.calls[source.calls.length - 1] === 'stop',
        'upstream: the stop stops the registered source', source.calls.join(' '));
}

imports.tap.run([testInOrder, testErrorReachesStop, testUpstreamPausedWhileWindowFull]);
