// test_redis_worker.js: remote workers through Redis from JavaScript (GJS),
// through GObject Introspection
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// A GJS program hires a SluiceRedisWorker and gets the results of its named
// calls on the main loop, in order through an ordered producer, while the
// work runs in `sluice-worker --redis` processes. The test starts its own
// redis-server on a private unix socket (skips without one) and the two
// workers, and stops them all. Prints TAP.

imports.gi.versions.Sluice = '1';
const { GLib, Gio, Sluice } = imports.gi;

imports.searchPath.unshift(GLib.path_get_dirname(new Error().fileName.replace(/^file:\/\//, '')));
const { consumeOnMainLoop, ok, run, runUntil, same, skip, workerHelper } = imports.tap;

// Runs the main loop for a while (the condition is checked every 10 ms).
function runFor(what, done) {
    const tick = GLib.timeout_add(GLib.PRIORITY_DEFAULT, 10, () => GLib.SOURCE_CONTINUE);
    try {
        runUntil(what, done);
    } finally {
        GLib.source_remove(tick);
    }
}

function startServer(dir) {
    const socket = GLib.build_filenamev([dir, 'redis.sock']);
    const server = Gio.Subprocess.new(['redis-server', '--port', '0', '--unixsocket', socket,
        '--save', '', '--appendonly', 'no', '--dir', dir], Gio.SubprocessFlags.STDOUT_SILENCE);
    // Ready once it answers PING on its socket.
    const address = Gio.UnixSocketAddress.new(socket);
    runFor('redis-server to answer', () => {
        try {
            const connection = new Gio.SocketClient().connect(address, null);
            connection.get_output_stream().write_all('PING\r\n', null);
            const reply = connection.get_input_stream().read_bytes(7, null).toArray();
            connection.close(null);
            return String.fromCharCode(...reply).startsWith('+PONG');
        } catch (e) {
            return false;
        }
    });
    return [server, `unix:${socket}`];
}

// The consumers of the group of @stream (XINFO CONSUMERS, inline).
function members(endpoint, stream) {
    const address = Gio.UnixSocketAddress.new(endpoint.replace(/^unix:/, ''));
    try {
        const connection = new Gio.SocketClient().connect(address, null);
        connection.get_output_stream().write_all(`XINFO CONSUMERS ${stream} sluice-workers\r\n`, null);
        const reply = connection.get_input_stream().read_bytes(65536, null).toArray();
        connection.close(null);
        return String.fromCharCode(...reply).split('\r\n');
    } catch (e) {
        return [];
    }
}

function stopProcess(process) {
    let done = false;
    process.send_signal(15);
    process.wait_async(null, () => {
        done = true;
    });
    runFor('a process to end', () => done);
    return process;
}

function testNamedCallsThroughRedis() {
    const argv = workerHelper();
    if (argv === null)
        return;
    const [helper, module] = argv;
    if (GLib.find_program_in_path('redis-server') === null) {
        skip('redis-server is not installed (Debian: apt-get install redis-server)');
        return;
    }
    const dir = GLib.dir_make_tmp('test-redis-gjs-XXXXXX');
    const [server, endpoint] = startServer(dir);
    const workers = [0, 1].map(i => Gio.Subprocess.new([helper, `--redis=${endpoint}`,
        '--series=js', `--consumer=js-${i}`, '--threads=2', module], Gio.SubprocessFlags.NONE));
    const queue = new Sluice.TaskQueue();
    try {
        const worker = Sluice.RedisWorker.new(endpoint, null, ['js'], 8);
        queue.hire(worker);

        // Results in call order through an ordered producer, taken on the
        // main loop with next_async.
        const producer = new Sluice.OrderedItemProducer({ window: 16, task_queue: queue });
        producer.start(null);
        const record = consumeOnMainLoop(producer.get_consumerator());
        const n = 100;
        let i = 0;
        const feed = () => {
            while (i < n && producer.is_ready()) {
                const numbers = Array.from({ length: i }, (_, j) => j);
                producer.produce_call('js', 'sum', new GLib.Variant('(ai)', [numbers]),
                    GLib.PRIORITY_DEFAULT, 0, null, null);
                i++;
            }
            return i < n;
        };
        runFor('the calls to be made', () => !feed());
        let stopped = null;
        producer.stop_async(null, (p, res) => {
            try {
                p.stop_finish(res);
                stopped = 'ok';
            } catch (e) {
                stopped = `${e}`;
            }
        });
        runFor('the end of the items', () => record.ended && stopped !== null);
        same(stopped, 'ok', 'the producer stops cleanly');
        same(record.items.map(item => item.deep_unpack()[0]), Array.from({ length: n }, (_, k) => k * (k - 1) / 2),
            'every remote result arrives once, in call order, on the main loop');
        const stats = worker.get_stats().deep_unpack();
        ok(stats['results'].deep_unpack() === n && stats['in-flight'].deep_unpack() === 0,
            'the worker\'s stats count the results and none in flight',
            `results ${stats['results'].deep_unpack()}, in flight ${stats['in-flight'].deep_unpack()}`);

        // A function the remote workers do not have fails its call.
        let failure = null;
        queue.call_async('js', 'no-such-function', null, 0, -1, null, (source, result) => {
            try {
                source.call_finish(result);
                failure = 'no error';
            } catch (e) {
                failure = e;
            }
        });
        runFor('the failing call', () => failure !== null);
        ok(failure instanceof GLib.Error && failure.matches(Sluice.Error, Sluice.Error.UNKNOWN_FUNCTION),
            'an unknown remote function throws UNKNOWN_FUNCTION', `${failure}`);
    } finally {
        let shut = false;
        queue.shutdown_async(false, null, () => {
            shut = true;
        });
        runFor('the shutdown', () => shut);
        // Every worker serves (it joins the group once its SIGTERM handler
        // is in place) before it gets SIGTERM: one still starting would die
        // of it, as any program does before it handles the signal.
        runFor('the workers to join the group', () => {
            const names = members(endpoint, 'sluice:calls:js');
            return workers.every((w, i) => names.includes(`js-${i}`));
        });
        workers.forEach((w, i) => {
            stopProcess(w);
            const how = w.get_if_exited() ? `exit status ${w.get_exit_status()}`
                : `killed by signal ${w.get_if_signaled() ? w.get_term_sig() : '?'}`;
            ok(w.get_if_exited() && w.get_exit_status() === 0, `worker ${i + 1} exits 0 on SIGTERM`, how);
        });
        stopProcess(server);
        for (const name of ['redis.sock', 'dump.rdb'])
            GLib.unlink(GLib.build_filenamev([dir, name]));
        GLib.rmdir(dir);
    }
}

run([testNamedCallsThroughRedis]);
