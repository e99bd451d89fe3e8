// test_main_loop_types.js: the cooperator, the job queue and named calls
// from JavaScript (GJS), through GObject Introspection
//
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// These are the types a GJS program uses as they are meant to be used: JS
// step functions and JS jobs run on the main loop (the cooperator's context),
// and named calls run elsewhere with their results coming back to the main
// loop. Run by meson test with GI_TYPELIB_PATH and LD_LIBRARY_PATH pointing
// into the build tree; prints TAP.

imports.gi.versions.Sluice = '1';
const { GLib, GObject, Gio, Sluice } = imports.gi;

imports.searchPath.unshift(GLib.path_get_dirname(new Error().fileName.replace(/^file:\/\//, '')));
const { consumeOnMainLoop, ok, runUntil, same, workerHelper } = imports.tap;

// Waits for the end of a cooperative task: ['ok', true] or ['error', e].
function whenDone(task) {
    const outcome = [];
    task.when_done_async(null, (source, result) => {
        try {
            outcome.push(['ok', source.when_done_finish(result)]);
        } catch (e) {
            outcome.push(['error', e]);
        }
    });
    runUntil('the end of a task', () => outcome.length > 0);
    return outcome[0];
}

function testStepsTakeTurns() {
    const cooperator = new Sluice.Cooperator();
    const order = [];
    const letters = word => {
        const left = word.split('');
        return () => {
            order.push(left.shift());
            return left.length === 0 ? Sluice.StepResult.DONE : Sluice.StepResult.CONTINUE;
        };
    };
    // A termination function that ends each tick after one step makes the
    // round robin visible.
    cooperator.set_termination_func(() => true);
    const tasks = ['abc', '123', 'de'].map(w => cooperator.cooperate(letters(w)));
    for (const task of tasks)
        same(whenDone(task), ['ok', true], 'a JS task ends done');
    same(order.join(''), 'a1d b2e c3'.replace(/ /g, ''), 'JS steps take turns, round robin');
}

function testStepWaitsForATimeout() {
    const cooperator = new Sluice.Cooperator();
    let steps = 0;
    let woken = 0;
    const task = cooperator.cooperate(t => {
        steps++;
        if (steps === 3)
            return Sluice.StepResult.DONE;
        GLib.timeout_add(GLib.PRIORITY_DEFAULT, 20, () => {
            woken++;
            t.wake();
            return GLib.SOURCE_REMOVE;
        });
        return Sluice.StepResult.WAIT;
    });
    same(whenDone(task), ['ok', true], 'a task waiting on timeouts ends done');
    same([steps, woken], [3, 2], 'each wait ended by its timeout');
}

function testStepFailsWithAnError() {
    const cooperator = new Sluice.Cooperator();
    const task = cooperator.cooperate(t => {
        t.wake_with_error(new GLib.Error(Gio.IOErrorEnum, Gio.IOErrorEnum.NOT_FOUND, 'no such thing'));
        return Sluice.StepResult.WAIT;
    });
    const [kind, error] = whenDone(task);
    ok(kind === 'error' && error.matches(Gio.IOErrorEnum, Gio.IOErrorEnum.NOT_FOUND) &&
        error.message === 'no such thing', 'a wake-up with an error fails the task with it',
    `${kind} ${error}`);
}

function testStepThatThrows() {
    const cooperator = new Sluice.Cooperator();
    let steps = 0;
    const task = cooperator.cooperate(() => {
        if (++steps === 2)
            throw new Error('thrown by a step');
        return Sluice.StepResult.CONTINUE;
    });
    const [kind, error] = whenDone(task);
    ok(kind === 'error' && error.message.includes('thrown by a step') && steps === 2,
        'a step that throws fails its task with the exception\'s text', `${kind} ${error} ${steps}`);
}

function testCoiterate() {
    const cooperator = new Sluice.Cooperator();
    let left = 5;
    const outcome = [];
    cooperator.coiterate_async(() => --left === 0 ? Sluice.StepResult.DONE : Sluice.StepResult.CONTINUE,
        null, (source, result) => outcome.push(source.coiterate_finish(result)));
    runUntil('coiterate', () => outcome.length > 0);
    same([outcome, left], [[true], 0], 'coiterate_async runs a JS step function to its end');
}

function testPauseResumeStop() {
    const cooperator = new Sluice.Cooperator();
    let steps = 0;
    const task = cooperator.cooperate(() => {
        steps++;
        return Sluice.StepResult.CONTINUE;
    });
    runUntil('a first step', () => steps > 0);
    task.pause();
    const paused = steps;
    const context = GLib.MainContext.default();
    for (let i = 0; i < 20; i++)
        context.iteration(false);
    same([steps, task.state], [paused, Sluice.CooperativeTaskState.PAUSED],
        'no step runs while paused');
    task.resume();
    runUntil('a step after resume', () => steps > paused);
    task.stop();
    const [kind, error] = whenDone(task);
    ok(kind === 'error' && error.matches(Sluice.Error, Sluice.Error.TASK_STOPPED),
        'stop ends the task with TASK_STOPPED', `${kind} ${error}`);
    let again = null;
    try {
        task.stop();
    } catch (e) {
        again = e;
    }
    ok(again !== null && again.matches(Sluice.Error, Sluice.Error.TASK_STOPPED),
        'stopping a stopped task throws, naming the state', `${again}`);
}

// The seed's docstring example: hello, what?, world!
function testJobQueueChannels() {
    const queue = new Sluice.JobQueue({ stop_when_empty: true });
    const said = [];
    const results = {};
    const say = message => job => {
        said.push(message);
        job.complete(message);
    };
    const pause = ms => job => {
        GLib.timeout_add(GLib.PRIORITY_DEFAULT, ms, () => {
            job.complete(null);
            return GLib.SOURCE_REMOVE;
        });
    };
    const put = (channel, job, name) => queue.put_async(channel, job, null, (source, result) => {
        results[name] = source.put_finish(result);
    });
    put('channel one', say('hello'), 'hello');
    put('channel one', pause(200), 'pause 2');
    put('channel one', say('world!'), 'world');
    put('channel two', pause(100), 'pause 1');
    put('channel two', say('what?'), 'what');
    const task = queue.cooperate(new Sluice.Cooperator());
    same(whenDone(task), ['ok', true], 'the job queue ends when empty');
    runUntil('the last answers', () => Object.keys(results).length === 5);
    same(said, ['hello', 'what?', 'world!'], 'JS jobs run in channel order, channels apart');
    same([results.hello, results.world, results['pause 1']], ['hello', 'world!', null],
        'put_finish gives each JS job\'s result');
}

function testJobQueueFailAndCancel() {
    const queue = new Sluice.JobQueue();
    queue.cooperate(new Sluice.Cooperator());
    const outcomes = [];
    const put = (job, cancellable) => queue.put_async('c', job, cancellable, (source, result) => {
        try {
            outcomes.push(['ok', source.put_finish(result)]);
        } catch (e) {
            outcomes.push(['error', e.matches(Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED) ? 'cancelled' : e.message]);
        }
    });
    const cancellable = new Gio.Cancellable();
    put(job => job.fail(new GLib.Error(Sluice.Error, Sluice.Error.FAILED, 'it broke')), null);
    put(() => {
        throw new Error('never runs');
    }, cancellable);
    put(() => {
        throw new Error('thrown by a job');
    }, null);
    put(job => job.complete(42), null);
    cancellable.cancel();
    runUntil('four answers', () => outcomes.length === 4);
    same(outcomes.sort(), [['error', 'cancelled'], ['error', 'it broke'],
        ['error', 'thrown by a job'], ['ok', 42]].sort(),
    'a failed job, a cancelled queued job, a job that throws, a job after them');
}

// GJS runs JavaScript on its main thread only, so a worker runs C functions:
// a GJS program hires helper processes (sluice-worker with a module) and gets
// the results of its named calls on the main loop.
function testNamedCallsToAProcessWorker() {
    const argv = workerHelper();
    if (argv === null)
        return;
    const queue = new Sluice.TaskQueue();
    queue.hire(new Sluice.ProcessWorker({ argv, n_processes: 2, start_timeout: 60000 }));
    const results = [];
    for (let i = 0; i < 10; i++) {
        const numbers = Array.from({ length: i + 1 }, (_, j) => j);
        queue.call_async(null, 'sum', new GLib.Variant('(ai)', [numbers]), 0, -1, null,
            (source, result) => results.push([i, source.call_finish(result).deep_unpack()[0]]));
    }
    let failure = null;
    queue.call_async(null, 'no-such-function', null, 0, -1, null, (source, result) => {
        try {
            source.call_finish(result);
        } catch (e) {
            failure = e;
        }
    });
    runUntil('eleven calls', () => results.length === 10 && failure !== null);
    same(results.sort((a, b) => a[0] - b[0]).map(r => r[1]), [0, 1, 3, 6, 10, 15, 21, 28, 36, 45],
        'named calls to helper processes answer on the main loop');
    ok(failure.matches(Sluice.Error, Sluice.Error.UNKNOWN_FUNCTION),
        'an unknown function throws UNKNOWN_FUNCTION', `${failure}`);
    let done = false;
    queue.shutdown_async(false, null, () => {
        done = true;
    });
    runUntil('the shutdown', () => done);
}

// A pipeline whose stages are named calls to helper processes: JavaScript
// puts on the main loop (put_async) and takes the results there
// (next_async), in input order, while the stages' threads wait for the calls.
function testPipelineOfNamedCalls() {
    const argv = workerHelper();
    if (argv === null)
        return;
    const queue = new Sluice.TaskQueue();
    queue.hire(new Sluice.ProcessWorker({ argv, n_processes: 2, start_timeout: 60000 }));
    const pipeline = Sluice.Pipeline.new(true, 8);
    pipeline.add_call_stage('sum', 4, 4, queue, null, 'sum', GLib.PRIORITY_DEFAULT, 0);
    pipeline.add_call_stage('echo', 2, 4, queue, null, 'echo', GLib.PRIORITY_DEFAULT, 0);
    pipeline.start(null);

    const n = 40;
    const record = consumeOnMainLoop(pipeline.get_consumerator());
    let i = 0;
    const put = () => {
        if (i === n) {
            pipeline.close_input();
            return;
        }
        const numbers = Array.from({ length: i }, (_, j) => j);
        i++;
        pipeline.put_async(new GLib.Variant('(ai)', [numbers]), null, (source, result) => {
            source.put_finish(result);
            put();
        });
    };
    put();
    runUntil('the pipeline\'s outputs', () => record.ended);
    same(record.items.map(item => item.deep_unpack()[0]), Array.from({ length: n }, (_, k) => k * (k - 1) / 2),
        'a pipeline of named calls gives every result once, in input order, on the main loop');
    let joined = null;
    pipeline.join_async(GLib.PRIORITY_DEFAULT, null, (source, result) => {
        joined = source.join_finish(result);
    });
    runUntil('the join', () => joined !== null);
    ok(joined === true, 'join_async reports the end');
    let done = false;
    queue.shutdown_async(false, null, () => {
        done = true;
    });
    runUntil('the shutdown', () => done);
}

// A SluiceWorker written in JavaScript: it serves the series 'js' and
// answers each task later on the main loop (as a GJS program would after
// an HTTP request, say). GJS cannot implement stop_async (a virtual
// function taking a callback): the interface's default stop serves it, and
// its crash is the default too (the queue takes back what it held).
const TimerWorker = GObject.registerClass({ Implements: [Sluice.Worker] },
    class TimerWorker extends GObject.Object {
        _init() {
            super._init();
            this.held = [];
            this.answering = true;
        }

        vfunc_get_series() {
            return ['js'];
        }

        vfunc_get_capacity() {
            return 2;
        }

        vfunc_run_task(task) {
            this.held.push(task);
            if (!this.answering)
                return;
            GLib.timeout_add(GLib.PRIORITY_DEFAULT, 5, () => {
                const [a, b] = task.get_args().deep_unpack();
                this.held.splice(this.held.indexOf(task), 1);
                task.return_value(new GLib.Variant('(i)', [a * b]));
                return GLib.SOURCE_REMOVE;
            });
        }
    });

function testJavaScriptWorker() {
    const queue = new Sluice.TaskQueue();
    const worker = new TimerWorker();
    queue.hire(worker);
    const call = (a, b, out) => queue.call_async('js', 'mul', new GLib.Variant('(ii)', [a, b]), 0, -1, null,
        (source, result) => {
            try {
                out.push(source.call_finish(result).deep_unpack()[0]);
            } catch (e) {
                out.push(e);
            }
        });
    const products = [];
    for (let i = 0; i < 6; i++)
        call(i, 7, products);
    runUntil('six calls', () => products.length === 6);
    same(products, [0, 7, 14, 21, 28, 35], 'a worker in JavaScript answers its calls on the main loop, in order');

    // Fired while it holds two calls: the default crash returns none, the
    // queue takes them back; no other worker serves 'js', so the shutdown
    // fails them with NO_WORKER.
    worker.answering = false;
    const late = [];
    call(1, 1, late);
    call(2, 2, late);
    runUntil('two held calls', () => worker.held.length === 2);
    ok(queue.fire(worker), 'the worker is fired');
    let done = false;
    queue.shutdown_async(false, null, () => {
        done = true;
    });
    runUntil('the shutdown', () => done && late.length === 2);
    ok(late.every(e => e instanceof GLib.Error && e.matches(Sluice.Error, Sluice.Error.NO_WORKER)),
        'the calls it held fail with NO_WORKER at the shutdown', `${late}`);

    // Hired again by a new queue and shut down: the default stop_async.
    const other = new Sluice.TaskQueue();
    const second = new TimerWorker();
    other.hire(second);
    const more = [];
    other.call_async('js', 'mul', new GLib.Variant('(ii)', [3, 4]), 0, -1, null,
        (source, result) => more.push(source.call_finish(result).deep_unpack()[0]));
    let stopped = false;
    other.shutdown_async(false, null, () => {
        stopped = true;
    });
    runUntil('the second shutdown', () => stopped);
    same(more, [12], 'a shutdown waits for the held call, then stops the worker with the default stop');
}

// Records the order of its tasks and answers each from an idle.
const OrderWorker = GObject.registerClass({ Implements: [Sluice.Worker] },
    class OrderWorker extends GObject.Object {
        _init() {
            super._init();
            this.got = [];
        }

        vfunc_get_series() {
            return ['js'];
        }

        vfunc_get_capacity() {
            return 4;
        }

        vfunc_run_task(task) {
            const [a, b] = task.get_args().deep_unpack();
            this.got.push(a);
            GLib.idle_add(GLib.PRIORITY_DEFAULT, () => {
                task.return_value(new GLib.Variant('(i)', [a * b]));
                return GLib.SOURCE_REMOVE;
            });
        }
    });

// Hired with RUN_ON_CONTEXT beside a thread worker: the thread worker's
// thread completes its calls (of a name it does not know: they fail there)
// and, delivering its next task, hands over the JavaScript worker's tasks
// queued meanwhile; with the flag those wait for the main loop (GJS would
// refuse to run vfunc_run_task in that thread, and the call would hang).
function testJavaScriptWorkerBesideAThreadWorker() {
    const N = 500, PER = 4;
    const queue = new Sluice.TaskQueue();
    const worker = new OrderWorker();
    queue.hire_full(worker, Sluice.HireFlags.RUN_ON_CONTEXT);
    queue.hire(Sluice.ThreadWorker.new(['tw'], 2));
    const products = [], failures = [];
    for (let i = 0; i < N; i++) {
        for (let k = 0; k < PER; k++) {
            queue.call_async('tw', 'nothing', null, 0, -1, null, (source, result) => {
                try {
                    source.call_finish(result);
                } catch (e) {
                    failures.push(e.matches(Sluice.Error, Sluice.Error.UNKNOWN_FUNCTION));
                }
            });
        }
        queue.call_async('js', 'mul', new GLib.Variant('(ii)', [i, 3]), 0, -1, null,
            (source, result) => products.push(source.call_finish(result).deep_unpack()[0]));
    }
    runUntil('the calls', () => products.length === N && failures.length === N * PER);
    same(worker.got, [...Array(N).keys()], 'the JavaScript worker got its tasks in the order of the calls');
    same(products, [...Array(N).keys()].map(i => 3 * i), 'its results come back in order');
    ok(failures.every(f => f), 'the thread worker failed the calls of a name it does not know');
    let done = false;
    queue.shutdown_async(false, null, () => {
        done = true;
    });
    runUntil('the shutdown', () => done);
}

// Answers an even first argument at once (in vfunc_run_task), holds an
// odd one until it times out; records what it got and what timed out.
const HoldingWorker = GObject.registerClass({ Implements: [Sluice.Worker] },
    class HoldingWorker extends GObject.Object {
        _init() {
            super._init();
            this.got = [];
            this.timedOut = [];
        }

        vfunc_get_capacity() {
            return 8;
        }

        vfunc_run_task(task) {
            const [a, b] = task.get_args().deep_unpack();
            this.got.push(a);
            if (a % 2 === 0)
                task.return_value(new GLib.Variant('(i)', [a * b]));
        }

        vfunc_task_timed_out(task) {
            this.timedOut.push(task.get_args().deep_unpack()[0]);
            task.give_back(false); // frees its place; the call failed already
        }
    });

// Feeds a pipeline whose call stage makes its calls from its own threads
// (each with a main context of its own, where its calls' timeouts fire).
function runCallStage(queue, inputs, timeoutMs) {
    const pipeline = Sluice.Pipeline.new(true, 8);
    pipeline.skip_failed = true;
    pipeline.add_call_stage('mul', 3, 4, queue, null, 'mul', GLib.PRIORITY_DEFAULT, timeoutMs);
    pipeline.start(null);
    const record = consumeOnMainLoop(pipeline.get_consumerator());
    let i = 0;
    const put = () => {
        if (i === inputs.length) {
            pipeline.close_input();
            return;
        }
        pipeline.put_async(new GLib.Variant('(ii)', [inputs[i++], 3]), null, (source, result) => {
            source.put_finish(result);
            put();
        });
    };
    put();
    runUntil('the pipeline\'s outputs', () => record.ended);
    return record.items.map(item => item.deep_unpack()[0]);
}

function shutDown(queue) {
    let done = false;
    queue.shutdown_async(false, null, () => {
        done = true;
    });
    runUntil('the shutdown', () => done);
}

// The call stage's threads make the calls, and the queue hands a task
// over in the thread that makes its call: with RUN_ON_CONTEXT the
// JavaScript worker gets it on the main loop all the same. (Hired without
// it, GJS blocks vfunc_run_task in those threads, "Attempting to run a JS
// callback on a different thread", and the pipeline never ends.)
function testJavaScriptWorkerFedFromPipelineThreads() {
    const queue = new Sluice.TaskQueue();
    const worker = new HoldingWorker();
    queue.hire_full(worker, Sluice.HireFlags.RUN_ON_CONTEXT);
    const inputs = Array.from({ length: 30 }, (_, k) => 2 * k);
    same(runCallStage(queue, inputs, 0), inputs.map(a => 3 * a),
        'the worker answered every call made in the stage threads, in order');
    same([...worker.got].sort((a, b) => a - b), inputs, 'it got each call once');
    shutDown(queue);
}

// A call's timeout fires on the context of its caller (a stage thread):
// task_timed_out still reaches the JavaScript worker on the main loop,
// once for each held task; a task that timed out before its turn is not
// given. (Without that, GJS blocks vfunc_task_timed_out there.)
function testJavaScriptWorkerTimedOutFromPipelineThreads() {
    const queue = new Sluice.TaskQueue();
    const worker = new HoldingWorker();
    queue.hire_full(worker, Sluice.HireFlags.RUN_ON_CONTEXT);
    const inputs = [0, 1, 2, 3, 4, 5, 6, 7];
    const outputs = runCallStage(queue, inputs, 300);
    runUntil('the timeouts of the odd calls given',
        () => worker.timedOut.length === worker.got.filter(a => a % 2 === 1).length);
    ok(worker.timedOut.length > 0, 'held calls timed out', `got ${worker.got}`);
    same([...worker.timedOut].sort(), worker.got.filter(a => a % 2 === 1).sort(),
        'task_timed_out came for each odd call given, on the main loop');
    ok(outputs.every(a => a % 6 === 0), 'the odd calls failed (skipped)', `${outputs}`);
    shutDown(queue);
}

imports.tap.run([testStepsTakeTurns, testStepWaitsForATimeout, testStepFailsWithAnError,
    testStepThatThrows, testCoiterate, testPauseResumeStop, testJobQueueChannels, testJobQueueFailAndCancel,
    testNamedCallsToAProcessWorker, testPipelineOfNamedCalls, testJavaScriptWorker,
    testJavaScriptWorkerBesideAThreadWorker, testJavaScriptWorkerFedFromPipelineThreads,
    testJavaScriptWorkerTimedOutFromPipelineThreads]);
