// test_streams.js: the stream adapters from JavaScript (GJS), through
// GObject Introspection
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// What a GJS program does with them: copy files into one output in order
// (a JS chunk function, which must run on the main thread:
// chunk-func-in-thread false), and see a missing file and a chunk function
// that throws reach the callbacks as errors. Run by meson test with
// GI_TYPELIB_PATH and LD_LIBRARY_PATH pointing into the build tree; prints
// TAP.

imports.gi.versions.Sluice = '1';
const { GLib, Gio, Sluice } = imports.gi;

imports.searchPath.unshift(GLib.path_get_dirname(new Error().fileName.replace(/^file:\/\//, '')));
const { ok, run, runUntil } = imports.tap;

const dir = GLib.dir_make_tmp('test-streams-gjs-XXXXXX');

function writeFile(name, bytes) {
    const path = GLib.build_filenamev([dir, name]);
    GLib.file_set_contents(path, bytes);
    return Gio.File.new_for_path(path);
}

function pattern(n, seed) {
    const bytes = new Uint8Array(n);
    let x = seed;
    for (let i = 0; i < n; i++) {
        x = (x * 1103515245 + 12345) & 0x7fffffff;
        bytes[i] = x >> 16 & 0xff;
    }
    return bytes;
}

function equalBytes(a, b) {
    if (a.length !== b.length)
        return false;
    for (let i = 0; i < a.length; i++) {
        if (a[i] !== b[i])
            return false;
    }
    return true;
}

// Reads everything, then stops the producer: the two outcomes, each
// ['ok', value] or ['error', e].
function copy(reader, producer) {
    const outcome = {};
    reader.read_all_async(GLib.PRIORITY_DEFAULT, null, (source, result) => {
        try {
            outcome.read = ['ok', source.read_all_finish(result)];
        } catch (e) {
            outcome.read = ['error', e];
        }
        producer.stop_async(null, (p, res) => {
            try {
                p.stop_finish(res);
                outcome.stop = ['ok'];
            } catch (e) {
                outcome.stop = ['error', e];
            }
        });
    });
    runUntil('the stop', () => outcome.stop !== undefined);
    return outcome;
}

function newWriter(producer, path) {
    const out = Gio.File.new_for_path(path).replace(null, false, Gio.FileCreateFlags.NONE, null);
    const writer = Sluice.OutputStreamConsumer.new(producer, out);
    writer.start();
    return writer;
}

function testFilesInOrderThroughAJsChunkFunction() {
    const parts = [pattern(70000, 1), pattern(0, 2), pattern(12345, 3)];
    const files = parts.map((bytes, i) => writeFile(`part${i}`, bytes));
    const outPath = GLib.build_filenamev([dir, 'copy']);
    const producer = Sluice.OrderedItemProducer.new(null, 4);
    const writer = newWriter(producer, outPath);
    const reader = Sluice.InputStreamProducer.new_for_files(producer, files, 4096);
    reader.chunk_func_in_thread = false;
    const offsets = [];
    reader.set_chunk_func((chunk, previous, offset) => {
        offsets.push(offset);
        return new GLib.Bytes(chunk.toArray().reverse());
    });
    const outcome = copy(reader, producer);
    ok(outcome.read[0] === 'ok' && outcome.read[1] === true, 'the reading succeeds', `${outcome.read}`);
    ok(outcome.stop[0] === 'ok', 'the stop succeeds', `${outcome.stop}`);

    // Each chunk reversed, in order; chunks never span files.
    const expected = [];
    let expectedOffsets = [], offset = 0;
    for (const part of parts) {
        for (let i = 0; i < part.length; i += 4096) {
            expected.push(...part.slice(i, i + 4096).reverse());
            expectedOffsets.push(offset + i);
        }
        offset += part.length;
    }
    const [, got] = GLib.file_get_contents(outPath);
    ok(equalBytes(got, expected), 'the copy holds every chunk, transformed, in order',
        `${got.length} bytes, expected ${expected.length}`);
    ok(JSON.stringify(offsets) === JSON.stringify(expectedOffsets),
        'the JS chunk function saw every chunk once, in input order', `${offsets}`);
    ok(writer.bytes_written === expected.length, 'bytes-written counts them',
        `${writer.bytes_written}`);
    ok(reader.chunks_read === 18 + 0 + 4, 'chunks-read counts them', `${reader.chunks_read}`);
}

function testMissingFileFailsTheReading() {
    const files = [writeFile('present', pattern(5000, 4)),
        Gio.File.new_for_path(GLib.build_filenamev([dir, 'absent']))];
    const producer = Sluice.OrderedItemProducer.new(null, 4);
    newWriter(producer, GLib.build_filenamev([dir, 'missing-out']));
    const reader = Sluice.InputStreamProducer.new_for_files(producer, files, 1000);
    const outcome = copy(reader, producer);
    ok(outcome.read[0] === 'error' &&
        outcome.read[1].matches(Gio.IOErrorEnum, Gio.IOErrorEnum.NOT_FOUND),
    'a missing file fails the reading with NOT_FOUND', `${outcome.read}`);
    ok(outcome.stop[0] === 'error' &&
        outcome.stop[1].matches(Gio.IOErrorEnum, Gio.IOErrorEnum.NOT_FOUND),
    'and the stop reports the same error', `${outcome.stop}`);
    const [, got] = GLib.file_get_contents(GLib.build_filenamev([dir, 'missing-out']));
    ok(got.length === 5000, 'the bytes before it are written', `${got.length}`);
}

function testChunkFunctionThatThrows() {
    const producer = Sluice.OrderedItemProducer.new(null, 4);
    const outPath = GLib.build_filenamev([dir, 'throw-out']);
    newWriter(producer, outPath);
    const source = Gio.MemoryInputStream.new_from_bytes(new GLib.Bytes(pattern(10000, 5)));
    const reader = new Sluice.InputStreamProducer({
        producer, stream: source, chunk_size: 1000, chunk_func_in_thread: false,
    });
    reader.set_chunk_func((chunk, previous, offset) => {
        if (offset >= 3000)
            throw new GLib.Error(Gio.IOErrorEnum, Gio.IOErrorEnum.INVALID_DATA, `chunk ${offset} refused`);
        return chunk;
    });
    const outcome = copy(reader, producer);
    ok(outcome.stop[0] === 'error' &&
        outcome.stop[1].matches(Gio.IOErrorEnum, Gio.IOErrorEnum.INVALID_DATA) &&
        outcome.stop[1].message === 'chunk 3000 refused',
    'a JS exception in the chunk function reaches the stop as its GError', `${outcome.stop}`);
    ok(outcome.read[0] === 'error' && outcome.read[1].matches(Sluice.Error, Sluice.Error.STOPPED),
        'the reading ends as stopped', `${outcome.read}`);
    const [, got] = GLib.file_get_contents(outPath);
    ok(got.length === 3000, 'the chunks before it are written', `${got.length}`);
}

try {
    run([testFilesInOrderThroughAJsChunkFunction, testMissingFileFailsTheReading,
        testChunkFunctionThatThrows]);
} finally {
    for (const name of ['part0', 'part1', 'part2', 'copy', 'present', 'missing-out', 'throw-out'])
        GLib.unlink(GLib.build_filenamev([dir, name]));
    GLib.rmdir(dir);
}
