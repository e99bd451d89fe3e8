/* test-task-queue.c: tests of SluiceTaskQueue
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include <sluice/sluice.h>

#include "sluice-task-queue-private.h"
#include "sluice-test-util.h"

#include <string.h>

#define TIMEOUT_SECONDS 30
/* Tasks a thread takes at once in the tests of hands (the most it may). */
#define HAND_TEST_SIZE 8

/* ---- helpers ------------------------------------------------------------- */

static gboolean
tick_cb (gpointer data)
{
  return G_SOURCE_CONTINUE;
}

/* Iterates @context (NULL: the default one) until @cond holds, waking up
 * often so that state changed by worker threads is seen; fails after a
 * deadline instead of hanging. */
#define WAIT_UNTIL_IN(context, cond)                                                               \
  G_STMT_START                                                                                     \
  {                                                                                                \
    gint64 wait_deadline_ = g_get_monotonic_time () + TIMEOUT_SECONDS * G_USEC_PER_SEC;            \
    GSource *wait_tick_ = g_timeout_source_new (2);                                                \
    g_source_set_callback (wait_tick_, tick_cb, NULL, NULL);                                       \
    g_source_attach (wait_tick_, (context));                                                       \
    while (!(cond) && g_get_monotonic_time () < wait_deadline_)                                    \
      g_main_context_iteration ((context), TRUE);                                                  \
    g_source_destroy (wait_tick_);                                                                 \
    g_source_unref (wait_tick_);                                                                   \
    if (!(cond))                                                                                   \
      g_assertion_message (G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC,                            \
                           "timed out waiting for: " #cond);                                       \
  }                                                                                                \
  G_STMT_END

#define WAIT_UNTIL(cond) WAIT_UNTIL_IN (NULL, cond)

/* Iterates the default main context for @msec milliseconds: lets anything
 * that should not happen have its chance to happen. */
static void
iterate_for (guint msec)
{
  gint64 deadline = g_get_monotonic_time () + msec * 1000;
  guint tick = g_timeout_add (2, tick_cb, NULL);

  while (g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (tick);
}

/* A gate that blocking tasks pass: they wait inside until given a permit or
 * until the gate opens, and it counts how many are inside at once. */
typedef struct
{
  GMutex mutex;
  GCond cond;
  guint started;
  guint current;
  guint max_current;
  guint permits;
  gboolean open;
} Gate;

static void
gate_init (Gate *gate)
{
  memset (gate, 0, sizeof *gate);
  g_mutex_init (&gate->mutex);
  g_cond_init (&gate->cond);
}

static void
gate_clear (Gate *gate)
{
  g_mutex_clear (&gate->mutex);
  g_cond_clear (&gate->cond);
}

static void
gate_pass (Gate *gate)
{
  g_mutex_lock (&gate->mutex);
  gate->started++;
  gate->current++;
  gate->max_current = MAX (gate->max_current, gate->current);
  while (!gate->open && gate->permits == 0)
    g_cond_wait (&gate->cond, &gate->mutex);
  if (!gate->open)
    gate->permits--;
  gate->current--;
  g_mutex_unlock (&gate->mutex);
}

static guint
gate_get (Gate *gate, const guint *field)
{
  guint value;

  g_mutex_lock (&gate->mutex);
  value = *field;
  g_mutex_unlock (&gate->mutex);
  return value;
}

#define GATE_STARTED(gate) gate_get ((gate), &(gate)->started)
#define GATE_CURRENT(gate) gate_get ((gate), &(gate)->current)
#define GATE_MAX_CURRENT(gate) gate_get ((gate), &(gate)->max_current)

static void
gate_reset_max_current (Gate *gate)
{
  g_mutex_lock (&gate->mutex);
  gate->max_current = gate->current;
  g_mutex_unlock (&gate->mutex);
}

static void
gate_grant (Gate *gate, guint n_permits)
{
  g_mutex_lock (&gate->mutex);
  gate->permits += n_permits;
  g_cond_broadcast (&gate->cond);
  g_mutex_unlock (&gate->mutex);
}

static void
gate_open (Gate *gate)
{
  g_mutex_lock (&gate->mutex);
  gate->open = TRUE;
  g_cond_broadcast (&gate->cond);
  g_mutex_unlock (&gate->mutex);
}

static gpointer
gate_thread_func (GCancellable *cancellable, gpointer data, GError **error)
{
  gate_pass (data);
  return NULL;
}

/* The result of one run_async. */
typedef struct
{
  guint n_completed;
  gpointer result;
  GError *error;
} RunResult;

static void
value_free_for_test (gpointer value)
{
  g_boxed_free (G_TYPE_VALUE, value);
}

static void
run_result_clear (RunResult *r)
{
  g_clear_error (&r->error);
}

static void
run_done_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
  RunResult *r = user_data;

  g_assert_true (SLUICE_IS_TASK_QUEUE (source));
  r->result = sluice_task_queue_run_finish (SLUICE_TASK_QUEUE (source), res, &r->error);
  r->n_completed++;
}

/* The result of one shutdown_async. */
typedef struct
{
  guint n_completed;
  gboolean ok;
  GError *error;
} ShutdownResult;

static void
shutdown_done_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
  ShutdownResult *r = user_data;

  r->ok = sluice_task_queue_shutdown_finish (SLUICE_TASK_QUEUE (source), res, &r->error);
  r->n_completed++;
}

/* Shuts @queue down and waits for the operation: then nothing is queued or
 * running. */
static void
shutdown_and_wait (SluiceTaskQueue *queue, gboolean cancel_pending)
{
  ShutdownResult r = { 0 };

  sluice_task_queue_shutdown_async (queue, cancel_pending, NULL, shutdown_done_cb, &r);
  WAIT_UNTIL (r.n_completed == 1);
  g_assert_no_error (r.error);
  g_assert_true (r.ok);
  g_assert_cmpuint (sluice_task_queue_get_n_pending (queue), ==, 0);
  g_assert_cmpuint (sluice_task_queue_get_n_running (queue), ==, 0);
}

/* Counts the calls of a private run function, and its last reason. */
typedef struct
{
  int n_calls; /* (atomic) */
  SluiceTaskReason reason;
} PushProbe;

static void
push_probe_run (gpointer data, SluiceTaskReason reason)
{
  PushProbe *probe = data;

  probe->reason = reason;
  g_atomic_int_inc (&probe->n_calls);
}

/* The thread that runs the tests (and the default main context): where
 * the func_data of run_async must be released. */
static GThread *test_thread;
static int n_destroyed_elsewhere; /* (atomic) */

static void
note_destroy_thread (void)
{
  if (g_thread_self () != test_thread)
    g_atomic_int_inc (&n_destroyed_elsewhere);
}

/* Counts the runs of a SluiceThreadFunc and the destruction of its data. */
typedef struct
{
  int n_runs;      /* (atomic) */
  int n_destroyed; /* (atomic) */
} FuncProbe;

static gpointer
func_probe_func (GCancellable *cancellable, gpointer data, GError **error)
{
  FuncProbe *probe = data;

  g_atomic_int_inc (&probe->n_runs);
  return NULL;
}

static void
func_probe_destroy (gpointer data)
{
  FuncProbe *probe = data;

  note_destroy_thread ();
  g_atomic_int_inc (&probe->n_destroyed);
}

static void
set_flag_weak_notify (gpointer data, GObject *where_the_object_was)
{
  g_atomic_int_set ((int *) data, TRUE);
}

/* Drops the last reference to @queue and waits until it is finalized: no
 * task, runner or operation may keep it alive once it is idle. */
static void
unref_and_wait_finalized (SluiceTaskQueue *queue)
{
  int finalized = FALSE;

  g_object_weak_ref (G_OBJECT (queue), set_flag_weak_notify, &finalized);
  g_object_unref (queue);
  WAIT_UNTIL (g_atomic_int_get (&finalized));
}

/* ---- 1. priorities ---------------------------------------------------- */

#define N_ORDER_TASKS 30

typedef struct
{
  GMutex mutex;
  guint order[N_ORDER_TASKS];
  guint n_done;
} OrderLog;

typedef struct
{
  OrderLog *log;
  guint index;
} OrderTask;

static void
order_log_append (OrderLog *log, guint index)
{
  g_mutex_lock (&log->mutex);
  g_assert_cmpuint (log->n_done, <, N_ORDER_TASKS);
  log->order[log->n_done++] = index;
  g_mutex_unlock (&log->mutex);
}

static gpointer
order_thread_func (GCancellable *cancellable, gpointer data, GError **error)
{
  OrderTask *task = data;

  order_log_append (task->log, task->index);
  return GUINT_TO_POINTER (task->index + 1);
}

static void
order_push_run (gpointer data, SluiceTaskReason reason)
{
  OrderTask *task = data;

  g_assert_cmpint (reason, ==, SLUICE_TASK_RUN);
  order_log_append (task->log, task->index);
}

static void
gate_push_run (gpointer data, SluiceTaskReason reason)
{
  g_assert_cmpint (reason, ==, SLUICE_TASK_RUN);
  gate_pass (data);
}

static int order_priorities[N_ORDER_TASKS];

static int
compare_by_priority (gconstpointer a, gconstpointer b, gpointer user_data)
{
  guint ia = *(const guint *) a;
  guint ib = *(const guint *) b;

  if (order_priorities[ia] != order_priorities[ib])
    return order_priorities[ia] < order_priorities[ib] ? -1 : 1;
  return ia < ib ? -1 : ia > ib;
}

/* One thread, blocked by a first task until all others are queued: they
 * must then run by priority, in queuing order among equal priorities. */
static void
test_priority_order (gconstpointer data)
{
  gboolean use_private_push = GPOINTER_TO_INT (data);
  static const int levels[] = { G_PRIORITY_DEFAULT,
                                G_PRIORITY_HIGH,
                                G_PRIORITY_LOW,
                                G_PRIORITY_DEFAULT_IDLE,
                                G_PRIORITY_HIGH_IDLE,
                                -5,
                                7 };
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  OrderLog log = { 0 };
  OrderTask tasks[N_ORDER_TASKS];
  RunResult results[N_ORDER_TASKS] = { { 0 } };
  RunResult gate_result = { 0 };
  guint expected[N_ORDER_TASKS];
  Gate gate;

  gate_init (&gate);
  g_mutex_init (&log.mutex);

  if (use_private_push)
    sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, gate_push_run, &gate);
  else
    sluice_task_queue_run_async (queue, gate_thread_func, &gate, NULL, NULL, G_PRIORITY_DEFAULT,
                                 NULL, run_done_cb, &gate_result);
  WAIT_UNTIL (GATE_STARTED (&gate) == 1);

  for (guint i = 0; i < N_ORDER_TASKS; i++)
    {
      /* A mix in which every priority recurs, out of order. */
      order_priorities[i] = levels[(i * 5 + i / 7) % G_N_ELEMENTS (levels)];
      tasks[i].log = &log;
      tasks[i].index = i;
      expected[i] = i;
      if (use_private_push)
        sluice_task_queue_push (queue, order_priorities[i], NULL, order_push_run, &tasks[i]);
      else
        sluice_task_queue_run_async (queue, order_thread_func, &tasks[i], NULL, NULL,
                                     order_priorities[i], NULL, run_done_cb, &results[i]);
    }
  g_assert_cmpuint (sluice_task_queue_get_n_pending (queue), ==, N_ORDER_TASKS);
  g_assert_cmpuint (sluice_task_queue_get_n_running (queue), ==, 1);

  gate_open (&gate);
  shutdown_and_wait (queue, FALSE);

  g_assert_cmpuint (log.n_done, ==, N_ORDER_TASKS);
  g_qsort_with_data (expected, N_ORDER_TASKS, sizeof (guint), compare_by_priority, NULL);
  for (guint i = 0; i < N_ORDER_TASKS; i++)
    g_assert_cmpuint (log.order[i], ==, expected[i]);

  if (!use_private_push)
    {
      WAIT_UNTIL (gate_result.n_completed == 1);
      g_assert_no_error (gate_result.error);
      for (guint i = 0; i < N_ORDER_TASKS; i++)
        {
          WAIT_UNTIL (results[i].n_completed == 1);
          g_assert_no_error (results[i].error);
          g_assert_cmpuint (GPOINTER_TO_UINT (results[i].result), ==, i + 1);
        }
    }

  g_mutex_clear (&log.mutex);
  gate_clear (&gate);

  unref_and_wait_finalized (queue);
}

/* ---- 2. cancellation ------------------------------------------------------ */

static void
test_cancel_before_run (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  g_autoptr (GCancellable) later = g_cancellable_new ();
  g_autoptr (GCancellable) already = g_cancellable_new ();
  g_autoptr (GCancellable) push_already = g_cancellable_new ();
  g_autoptr (GCancellable) push_later = g_cancellable_new ();
  g_autoptr (GCancellable) unused = g_cancellable_new ();
  FuncProbe later_probe = { 0 }, already_probe = { 0 }, control_probe = { 0 };
  RunResult later_result = { 0 }, already_result = { 0 }, control_result = { 0 };
  RunResult gate_result = { 0 };
  PushProbe push_already_probe = { 0 }, push_later_probe = { 0 }, push_control_probe = { 0 };
  Gate gate;

  gate_init (&gate);

  /* Occupy the only thread. */
  sluice_task_queue_run_async (queue, gate_thread_func, &gate, NULL, NULL, G_PRIORITY_DEFAULT, NULL,
                               run_done_cb, &gate_result);
  WAIT_UNTIL (GATE_STARTED (&gate) == 1);

  /* Public: cancelled while queued. It completes at once, while the
   * thread is still busy, and never runs. */
  sluice_task_queue_run_async (queue, func_probe_func, &later_probe, func_probe_destroy, NULL,
                               G_PRIORITY_DEFAULT, later, run_done_cb, &later_result);
  sluice_task_queue_run_async (queue, func_probe_func, &control_probe, func_probe_destroy, NULL,
                               G_PRIORITY_DEFAULT, unused, run_done_cb, &control_result);
  g_cancellable_cancel (later);
  WAIT_UNTIL (later_result.n_completed == 1);
  g_assert_error (later_result.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (later_result.result);
  g_assert_cmpint (g_atomic_int_get (&later_probe.n_destroyed), ==, 1);
  g_assert_cmpuint (GATE_CURRENT (&gate), ==, 1);

  /* Public: cancelled before it is even queued. Never synchronous. */
  g_cancellable_cancel (already);
  sluice_task_queue_run_async (queue, func_probe_func, &already_probe, func_probe_destroy, NULL,
                               G_PRIORITY_DEFAULT, already, run_done_cb, &already_result);
  g_assert_cmpuint (already_result.n_completed, ==, 0);
  WAIT_UNTIL (already_result.n_completed == 1);
  g_assert_error (already_result.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpint (g_atomic_int_get (&already_probe.n_destroyed), ==, 1);

  /* Private: cancelled before the push, and after it. */
  g_cancellable_cancel (push_already);
  sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, push_already, push_probe_run,
                          &push_already_probe);
  sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, push_later, push_probe_run, &push_later_probe);
  sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, unused, push_probe_run, &push_control_probe);
  g_cancellable_cancel (push_later);

  /* The cancelled public entry stays queued until reached; the one
   * cancelled beforehand was never queued. */
  g_assert_cmpuint (sluice_task_queue_get_n_pending (queue), ==, 5);
  g_assert_cmpint (g_atomic_int_get (&push_already_probe.n_calls), ==, 0);
  g_assert_cmpint (g_atomic_int_get (&push_later_probe.n_calls), ==, 0);

  gate_open (&gate);
  shutdown_and_wait (queue, FALSE);

  g_assert_cmpint (g_atomic_int_get (&push_already_probe.n_calls), ==, 1);
  g_assert_cmpint (push_already_probe.reason, ==, SLUICE_TASK_CANCELLED);
  g_assert_cmpint (g_atomic_int_get (&push_later_probe.n_calls), ==, 1);
  g_assert_cmpint (push_later_probe.reason, ==, SLUICE_TASK_CANCELLED);
  g_assert_cmpint (g_atomic_int_get (&push_control_probe.n_calls), ==, 1);
  g_assert_cmpint (push_control_probe.reason, ==, SLUICE_TASK_RUN);

  WAIT_UNTIL (control_result.n_completed == 1 && gate_result.n_completed == 1);
  g_assert_no_error (control_result.error);
  g_assert_no_error (gate_result.error);
  g_assert_cmpint (g_atomic_int_get (&control_probe.n_runs), ==, 1);
  g_assert_cmpint (g_atomic_int_get (&control_probe.n_destroyed), ==, 1);

  /* Nothing completed twice, and the cancelled ones never ran. */
  iterate_for (20);
  g_assert_cmpuint (later_result.n_completed, ==, 1);
  g_assert_cmpuint (already_result.n_completed, ==, 1);
  g_assert_cmpint (g_atomic_int_get (&later_probe.n_runs), ==, 0);
  g_assert_cmpint (g_atomic_int_get (&later_probe.n_destroyed), ==, 1);
  g_assert_cmpint (g_atomic_int_get (&already_probe.n_runs), ==, 0);
  g_assert_cmpint (g_atomic_int_get (&already_probe.n_destroyed), ==, 1);

  run_result_clear (&later_result);
  run_result_clear (&already_result);
  gate_clear (&gate);

  unref_and_wait_finalized (queue);
}

/* ---- 3. shutdown --------------------------------------------------------- */

#define N_SHUTDOWN_TASKS 5

static void
test_shutdown (gconstpointer data)
{
  gboolean cancel_pending = GPOINTER_TO_INT (data);
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  FuncProbe probes[N_SHUTDOWN_TASKS] = { { 0 } };
  RunResult results[N_SHUTDOWN_TASKS] = { { 0 } };
  PushProbe push_probes[N_SHUTDOWN_TASKS] = { { 0 } };
  FuncProbe late_probe = { 0 };
  RunResult late_result = { 0 }, gate_result = { 0 };
  PushProbe late_push_probe = { 0 };
  ShutdownResult first = { 0 }, second = { 0 }, after = { 0 };
  Gate gate;

  gate_init (&gate);

  sluice_task_queue_run_async (queue, gate_thread_func, &gate, NULL, NULL, G_PRIORITY_DEFAULT, NULL,
                               run_done_cb, &gate_result);
  WAIT_UNTIL (GATE_STARTED (&gate) == 1);

  for (guint i = 0; i < N_SHUTDOWN_TASKS; i++)
    {
      sluice_task_queue_run_async (queue, func_probe_func, &probes[i], func_probe_destroy, NULL,
                                   G_PRIORITY_DEFAULT, NULL, run_done_cb, &results[i]);
      sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, push_probe_run, &push_probes[i]);
    }
  g_assert_cmpuint (sluice_task_queue_get_n_pending (queue), ==, 2 * N_SHUTDOWN_TASKS);
  g_assert_false (sluice_task_queue_is_shut_down (queue));

  sluice_task_queue_shutdown_async (queue, cancel_pending, NULL, shutdown_done_cb, &first);
  g_assert_true (sluice_task_queue_is_shut_down (queue));

  if (cancel_pending)
    {
      /* The queued private tasks are released during the call; the public
       * ones complete, and release their data, from the main loop. */
      for (guint i = 0; i < N_SHUTDOWN_TASKS; i++)
        {
          g_assert_cmpint (g_atomic_int_get (&push_probes[i].n_calls), ==, 1);
          g_assert_cmpint (push_probes[i].reason, ==, SLUICE_TASK_SHUT_DOWN);
          g_assert_cmpint (g_atomic_int_get (&probes[i].n_destroyed), ==, 0);
          g_assert_cmpuint (results[i].n_completed, ==, 0);
        }
      g_assert_cmpuint (sluice_task_queue_get_n_pending (queue), ==, 0);
    }
  else
    g_assert_cmpuint (sluice_task_queue_get_n_pending (queue), ==, 2 * N_SHUTDOWN_TASKS);

  /* New tasks are refused. */
  sluice_task_queue_run_async (queue, func_probe_func, &late_probe, func_probe_destroy, NULL,
                               G_PRIORITY_DEFAULT, NULL, run_done_cb, &late_result);
  g_assert_cmpuint (late_result.n_completed, ==, 0);
  WAIT_UNTIL (late_result.n_completed == 1);
  g_assert_error (late_result.error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_cmpint (g_atomic_int_get (&late_probe.n_runs), ==, 0);
  g_assert_cmpint (g_atomic_int_get (&late_probe.n_destroyed), ==, 1);

  sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, push_probe_run, &late_push_probe);
  g_assert_cmpint (g_atomic_int_get (&late_push_probe.n_calls), ==, 1);
  g_assert_cmpint (late_push_probe.reason, ==, SLUICE_TASK_SHUT_DOWN);

  /* A second call completes with the first: not while a task runs. */
  sluice_task_queue_shutdown_async (queue, FALSE, NULL, shutdown_done_cb, &second);
  iterate_for (30);
  g_assert_cmpuint (first.n_completed, ==, 0);
  g_assert_cmpuint (second.n_completed, ==, 0);
  g_assert_cmpuint (sluice_task_queue_get_n_running (queue), ==, 1);

  gate_open (&gate);
  WAIT_UNTIL (first.n_completed == 1 && second.n_completed == 1);
  g_assert_no_error (first.error);
  g_assert_true (first.ok);
  g_assert_no_error (second.error);
  g_assert_true (second.ok);
  g_assert_cmpuint (sluice_task_queue_get_n_pending (queue), ==, 0);
  g_assert_cmpuint (sluice_task_queue_get_n_running (queue), ==, 0);

  /* Exact outcome of every task. */
  for (guint i = 0; i < N_SHUTDOWN_TASKS; i++)
    {
      g_assert_cmpint (g_atomic_int_get (&push_probes[i].n_calls), ==, 1);
      g_assert_cmpint (push_probes[i].reason, ==,
                       cancel_pending ? SLUICE_TASK_SHUT_DOWN : SLUICE_TASK_RUN);
      g_assert_cmpint (g_atomic_int_get (&probes[i].n_runs), ==, cancel_pending ? 0 : 1);

      WAIT_UNTIL (results[i].n_completed == 1);
      g_assert_cmpint (g_atomic_int_get (&probes[i].n_destroyed), ==, 1);
      if (cancel_pending)
        g_assert_error (results[i].error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
      else
        g_assert_no_error (results[i].error);
      run_result_clear (&results[i]);
    }
  WAIT_UNTIL (gate_result.n_completed == 1);
  g_assert_no_error (gate_result.error);

  /* Shutting down an idle, shut down queue completes (never
   * synchronously). */
  sluice_task_queue_shutdown_async (queue, cancel_pending, NULL, shutdown_done_cb, &after);
  g_assert_cmpuint (after.n_completed, ==, 0);
  WAIT_UNTIL (after.n_completed == 1);
  g_assert_true (after.ok);

  run_result_clear (&late_result);
  gate_clear (&gate);

  unref_and_wait_finalized (queue);
}

/* A cancelling shutdown made from a "cancelled" handler of the
 * cancellable of a task it cancels: it must not disconnect the task's own
 * handler there (GLib's g_cancellable_disconnect () waits for the handlers
 * of a cancellable being cancelled to return: a deadlock). The handler is
 * connected before the task (it runs first, the task is still queued) or
 * after it (the task's handler has completed it already). */
typedef struct
{
  SluiceTaskQueue *queue;
  ShutdownResult *shut;
  guint n_calls;
} ShutdownInHandler;

static void
shutdown_in_handler_cb (GCancellable *cancellable, gpointer data)
{
  ShutdownInHandler *h = data;

  h->n_calls++;
  sluice_task_queue_shutdown_async (h->queue, TRUE, NULL, shutdown_done_cb, h->shut);
}

static void
test_shutdown_in_cancelled_handler (gconstpointer data)
{
  gboolean handler_first = GPOINTER_TO_INT (data);
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  GCancellable *cancellable = g_cancellable_new ();
  FuncProbe probe = { 0 };
  RunResult result = { 0 }, gate_result = { 0 };
  ShutdownResult shut = { 0 };
  ShutdownInHandler h = { queue, &shut, 0 };
  Gate gate;

  gate_init (&gate);
  sluice_task_queue_run_async (queue, gate_thread_func, &gate, NULL, NULL, G_PRIORITY_DEFAULT, NULL,
                               run_done_cb, &gate_result);
  WAIT_UNTIL (GATE_STARTED (&gate) == 1);

  if (handler_first)
    g_signal_connect (cancellable, "cancelled", G_CALLBACK (shutdown_in_handler_cb), &h);
  sluice_task_queue_run_async (queue, func_probe_func, &probe, func_probe_destroy, NULL,
                               G_PRIORITY_DEFAULT, cancellable, run_done_cb, &result);
  if (!handler_first)
    g_signal_connect (cancellable, "cancelled", G_CALLBACK (shutdown_in_handler_cb), &h);
  g_assert_cmpuint (sluice_task_queue_get_n_pending (queue), ==, 1);

  g_cancellable_cancel (cancellable);
  g_assert_cmpuint (h.n_calls, ==, 1);
  g_assert_true (sluice_task_queue_is_shut_down (queue));
  g_assert_cmpuint (sluice_task_queue_get_n_pending (queue), ==, 0);
  g_assert_cmpuint (result.n_completed, ==, 0);

  WAIT_UNTIL (result.n_completed == 1);
  g_assert_error (result.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpint (g_atomic_int_get (&probe.n_runs), ==, 0);
  g_assert_cmpint (g_atomic_int_get (&probe.n_destroyed), ==, 1);

  gate_open (&gate);
  WAIT_UNTIL (shut.n_completed == 1);
  g_assert_no_error (shut.error);
  g_assert_true (shut.ok);
  WAIT_UNTIL (gate_result.n_completed == 1);
  g_assert_no_error (gate_result.error);

  /* Cancelled again (after a reset): the task's handler is gone. */
  g_signal_handlers_disconnect_by_func (cancellable, shutdown_in_handler_cb, &h);
  g_cancellable_reset (cancellable);
  g_cancellable_cancel (cancellable);
  iterate_for (10);
  g_assert_cmpuint (result.n_completed, ==, 1);

  run_result_clear (&result);
  run_result_clear (&gate_result);
  gate_clear (&gate);
  g_object_unref (cancellable);
  unref_and_wait_finalized (queue);
}

/* Cancelling the wait of a shutdown completes it at once; the queue stays
 * shut down and drains. */
static void
test_shutdown_cancel_wait (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  ShutdownResult cancelled = { 0 };
  PushProbe probe = { 0 };
  Gate gate;

  gate_init (&gate);
  sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, gate_push_run, &gate);
  WAIT_UNTIL (GATE_STARTED (&gate) == 1);
  sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, push_probe_run, &probe);

  sluice_task_queue_shutdown_async (queue, FALSE, cancellable, shutdown_done_cb, &cancelled);
  iterate_for (10);
  g_assert_cmpuint (cancelled.n_completed, ==, 0);
  g_cancellable_cancel (cancellable);
  WAIT_UNTIL (cancelled.n_completed == 1);
  g_assert_error (cancelled.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_false (cancelled.ok);
  g_assert_true (sluice_task_queue_is_shut_down (queue));
  g_assert_cmpint (g_atomic_int_get (&probe.n_calls), ==, 0);

  gate_open (&gate);
  shutdown_and_wait (queue, FALSE);
  g_assert_cmpint (g_atomic_int_get (&probe.n_calls), ==, 1);
  g_assert_cmpint (probe.reason, ==, SLUICE_TASK_RUN);
  iterate_for (10);
  g_assert_cmpuint (cancelled.n_completed, ==, 1);

  g_clear_error (&cancelled.error);
  gate_clear (&gate);

  unref_and_wait_finalized (queue);
}

/* ---- 4. thread count -------------------------------------------------- */

#define N_THREAD_TASKS 8

static void
test_max_threads_while_busy (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  RunResult results[N_THREAD_TASKS] = { { 0 } };
  Gate gate;

  gate_init (&gate);

  for (guint i = 0; i < N_THREAD_TASKS; i++)
    sluice_task_queue_run_async (queue, gate_thread_func, &gate, NULL, NULL, G_PRIORITY_DEFAULT,
                                 NULL, run_done_cb, &results[i]);

  /* One thread: one task at a time. */
  WAIT_UNTIL (GATE_CURRENT (&gate) == 1);
  g_usleep (50 * 1000);
  g_assert_cmpuint (GATE_CURRENT (&gate), ==, 1);
  g_assert_cmpuint (GATE_MAX_CURRENT (&gate), ==, 1);
  g_assert_cmpuint (sluice_task_queue_get_n_running (queue), ==, 1);
  g_assert_cmpuint (sluice_task_queue_get_n_pending (queue), ==, N_THREAD_TASKS - 1);

  /* Raised to four while busy: four at once, never more. */
  sluice_task_queue_set_max_threads (queue, 4);
  g_assert_cmpuint (sluice_task_queue_get_max_threads (queue), ==, 4);
  WAIT_UNTIL (GATE_CURRENT (&gate) == 4);
  g_usleep (50 * 1000);
  g_assert_cmpuint (GATE_CURRENT (&gate), ==, 4);
  g_assert_cmpuint (GATE_MAX_CURRENT (&gate), ==, 4);
  g_assert_cmpuint (sluice_task_queue_get_n_running (queue), ==, 4);
  g_assert_cmpuint (sluice_task_queue_get_n_pending (queue), ==, N_THREAD_TASKS - 4);

  /* Lowered to one: the four running tasks finish, then one at a time. */
  sluice_task_queue_set_max_threads (queue, 1);
  g_assert_cmpuint (sluice_task_queue_get_max_threads (queue), ==, 1);
  gate_grant (&gate, 4);
  WAIT_UNTIL (GATE_STARTED (&gate) == 5 && GATE_CURRENT (&gate) == 1);
  gate_reset_max_current (&gate);
  g_usleep (50 * 1000);
  g_assert_cmpuint (GATE_STARTED (&gate), ==, 5);
  g_assert_cmpuint (GATE_CURRENT (&gate), ==, 1);
  g_assert_cmpuint (sluice_task_queue_get_n_running (queue), ==, 1);
  g_assert_cmpuint (sluice_task_queue_get_n_pending (queue), ==, N_THREAD_TASKS - 5);

  gate_grant (&gate, N_THREAD_TASKS - 4);
  shutdown_and_wait (queue, FALSE);
  g_assert_cmpuint (GATE_STARTED (&gate), ==, N_THREAD_TASKS);
  g_assert_cmpuint (GATE_MAX_CURRENT (&gate), ==, 1);

  for (guint i = 0; i < N_THREAD_TASKS; i++)
    {
      WAIT_UNTIL (results[i].n_completed == 1);
      g_assert_no_error (results[i].error);
    }
  gate_clear (&gate);

  unref_and_wait_finalized (queue);
}

/* ---- 5. counts and properties ---------------------------------------- */

static void
count_notify_cb (GObject *object, GParamSpec *pspec, gpointer user_data)
{
  guint *n_notify = user_data;

  (*n_notify)++;
}

static void
assert_counts (SluiceTaskQueue *queue, guint n_pending, guint n_running)
{
  guint prop_pending = G_MAXUINT, prop_running = G_MAXUINT;

  g_assert_cmpuint (sluice_task_queue_get_n_pending (queue), ==, n_pending);
  g_assert_cmpuint (sluice_task_queue_get_n_running (queue), ==, n_running);
  g_object_get (queue, "n-pending", &prop_pending, "n-running", &prop_running, NULL);
  g_assert_cmpuint (prop_pending, ==, n_pending);
  g_assert_cmpuint (prop_running, ==, n_running);
}

static void
test_counts_and_properties (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (2);
  RunResult results[5] = { { 0 } };
  guint max_threads = 0;
  guint n_notify = 0;
  Gate gate;

  gate_init (&gate);

  g_object_get (queue, "max-threads", &max_threads, NULL);
  g_assert_cmpuint (max_threads, ==, 2);
  assert_counts (queue, 0, 0);

  g_signal_connect (queue, "notify::max-threads", G_CALLBACK (count_notify_cb), &n_notify);
  g_object_set (queue, "max-threads", 0, NULL);
  g_assert_cmpuint (sluice_task_queue_get_max_threads (queue), ==, g_get_num_processors ());
  g_assert_cmpuint (n_notify, ==, g_get_num_processors () != 2 ? 1 : 0);
  n_notify = 0;
  sluice_task_queue_set_max_threads (queue, 2);
  sluice_task_queue_set_max_threads (queue, 2);
  g_assert_cmpuint (n_notify, ==, g_get_num_processors () != 2 ? 1 : 0);
  g_assert_cmpuint (sluice_task_queue_get_max_threads (queue), ==, 2);

  /* Two running, nothing pending. */
  for (guint i = 0; i < 2; i++)
    sluice_task_queue_run_async (queue, gate_thread_func, &gate, NULL, NULL, G_PRIORITY_DEFAULT,
                                 NULL, run_done_cb, &results[i]);
  WAIT_UNTIL (GATE_STARTED (&gate) == 2);
  assert_counts (queue, 0, 2);

  /* Three more wait. */
  for (guint i = 2; i < 5; i++)
    sluice_task_queue_run_async (queue, gate_thread_func, &gate, NULL, NULL, G_PRIORITY_DEFAULT,
                                 NULL, run_done_cb, &results[i]);
  assert_counts (queue, 3, 2);

  /* Two finish, two more start. */
  gate_grant (&gate, 2);
  WAIT_UNTIL (GATE_STARTED (&gate) == 4);
  assert_counts (queue, 1, 2);

  /* All done. */
  gate_open (&gate);
  shutdown_and_wait (queue, FALSE);
  assert_counts (queue, 0, 0);
  for (guint i = 0; i < 5; i++)
    {
      WAIT_UNTIL (results[i].n_completed == 1);
      g_assert_no_error (results[i].error);
    }
  gate_clear (&gate);

  unref_and_wait_finalized (queue);
}

/* ---- 6. destroy notifies ---------------------------------------------- */

typedef struct
{
  int *n_freed;
} Tracked;

static void
tracked_free (gpointer data)
{
  Tracked *tracked = data;

  g_atomic_int_inc (tracked->n_freed);
  g_free (tracked);
}

typedef struct
{
  FuncProbe probe;
  int n_results_freed; /* (atomic) */
  Gate *gate;          /* (nullable): wait here first */
  gboolean fail;
} ResultFuncData;

static gpointer
result_thread_func (GCancellable *cancellable, gpointer data, GError **error)
{
  ResultFuncData *fd = data;
  Tracked *tracked;

  g_atomic_int_inc (&fd->probe.n_runs);
  if (fd->gate != NULL)
    gate_pass (fd->gate);
  if (fd->fail)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, "failed on purpose");
      return NULL;
    }
  tracked = g_new0 (Tracked, 1);
  tracked->n_freed = &fd->n_results_freed;
  return tracked;
}

static void
result_func_data_destroy (gpointer data)
{
  ResultFuncData *fd = data;

  note_destroy_thread ();
  g_atomic_int_inc (&fd->probe.n_destroyed);
}

/* Drops the result unseen. */
static void
ignore_result_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
  guint *n_completed = user_data;

  (*n_completed)++;
}

static void
test_destroy_notifies (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  g_autoptr (GCancellable) cancel_running = g_cancellable_new ();
  g_autoptr (GCancellable) cancel_queued = g_cancellable_new ();
  ResultFuncData uncollected = { 0 }, collected = { 0 }, cancelled_running = { 0 },
                 cancelled_queued = { 0 }, shut_down = { 0 }, refused = { 0 }, failing = { 0 };
  RunResult collected_result = { 0 }, cancelled_running_result = { 0 },
            cancelled_queued_result = { 0 }, shut_down_result = { 0 }, refused_result = { 0 },
            failing_result = { 0 };
  guint n_uncollected_completed = 0;
  Gate gate;

  gate_init (&gate);

  /* An uncollected result is freed with result_destroy; func_data after
   * the function ran, before the callback. */
  sluice_task_queue_run_async (queue, result_thread_func, &uncollected, result_func_data_destroy,
                               tracked_free, G_PRIORITY_DEFAULT, NULL, ignore_result_cb,
                               &n_uncollected_completed);
  WAIT_UNTIL (n_uncollected_completed == 1 && g_atomic_int_get (&uncollected.n_results_freed) == 1);
  g_assert_cmpint (g_atomic_int_get (&uncollected.probe.n_runs), ==, 1);
  g_assert_cmpint (g_atomic_int_get (&uncollected.probe.n_destroyed), ==, 1);

  /* A collected result is the caller's. */
  sluice_task_queue_run_async (queue, result_thread_func, &collected, result_func_data_destroy,
                               tracked_free, G_PRIORITY_DEFAULT, NULL, run_done_cb,
                               &collected_result);
  WAIT_UNTIL (collected_result.n_completed == 1);
  g_assert_no_error (collected_result.error);
  g_assert_nonnull (collected_result.result);
  g_assert_cmpint (g_atomic_int_get (&collected.probe.n_destroyed), ==, 1);
  iterate_for (10);
  g_assert_cmpint (g_atomic_int_get (&collected.n_results_freed), ==, 0);
  tracked_free (collected_result.result);
  g_assert_cmpint (g_atomic_int_get (&collected.n_results_freed), ==, 1);

  /* An error: no result, func_data released once. */
  failing.fail = TRUE;
  sluice_task_queue_run_async (queue, result_thread_func, &failing, result_func_data_destroy,
                               tracked_free, G_PRIORITY_DEFAULT, NULL, run_done_cb,
                               &failing_result);
  WAIT_UNTIL (failing_result.n_completed == 1);
  g_assert_error (failing_result.error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_assert_null (failing_result.result);
  g_assert_cmpint (g_atomic_int_get (&failing.probe.n_destroyed), ==, 1);

  /* Cancelled while running: the function's result is freed, the
   * operation fails with G_IO_ERROR_CANCELLED. */
  cancelled_running.gate = &gate;
  sluice_task_queue_run_async (queue, result_thread_func, &cancelled_running,
                               result_func_data_destroy, tracked_free, G_PRIORITY_DEFAULT,
                               cancel_running, run_done_cb, &cancelled_running_result);
  WAIT_UNTIL (GATE_STARTED (&gate) == 1);

  /* Behind it: one cancelled while queued, one dropped by a cancelling
   * shutdown. */
  sluice_task_queue_run_async (queue, result_thread_func, &cancelled_queued,
                               result_func_data_destroy, tracked_free, G_PRIORITY_DEFAULT,
                               cancel_queued, run_done_cb, &cancelled_queued_result);
  sluice_task_queue_run_async (queue, result_thread_func, &shut_down, result_func_data_destroy,
                               tracked_free, G_PRIORITY_DEFAULT, NULL, run_done_cb,
                               &shut_down_result);
  g_cancellable_cancel (cancel_queued);
  g_cancellable_cancel (cancel_running);
  WAIT_UNTIL (cancelled_queued_result.n_completed == 1);
  g_assert_error (cancelled_queued_result.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpint (g_atomic_int_get (&cancelled_queued.probe.n_destroyed), ==, 1);

  /* Neither completes nor releases its data inside the call: that waits
   * for the main loop. */
  sluice_task_queue_shutdown_async (queue, TRUE, NULL, NULL, NULL);
  g_assert_cmpuint (shut_down_result.n_completed, ==, 0);
  g_assert_cmpint (g_atomic_int_get (&shut_down.probe.n_destroyed), ==, 0);

  /* Refused after shutdown. */
  sluice_task_queue_run_async (queue, result_thread_func, &refused, result_func_data_destroy,
                               tracked_free, G_PRIORITY_DEFAULT, NULL, run_done_cb,
                               &refused_result);
  g_assert_cmpuint (refused_result.n_completed, ==, 0);
  g_assert_cmpint (g_atomic_int_get (&refused.probe.n_destroyed), ==, 0);

  gate_open (&gate);
  WAIT_UNTIL (cancelled_running_result.n_completed == 1 && shut_down_result.n_completed == 1 &&
              refused_result.n_completed == 1);
  g_assert_error (cancelled_running_result.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (cancelled_running_result.result);
  WAIT_UNTIL (g_atomic_int_get (&cancelled_running.n_results_freed) == 1);
  g_assert_error (shut_down_result.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_error (refused_result.error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);

  shutdown_and_wait (queue, FALSE);
  iterate_for (10);

  /* Exactly once on every path; the function ran only where it should. */
  {
    ResultFuncData *all[] = { &uncollected,      &collected, &failing, &cancelled_running,
                              &cancelled_queued, &shut_down, &refused };
    int runs[] = { 1, 1, 1, 1, 0, 0, 0 };

    for (guint i = 0; i < G_N_ELEMENTS (all); i++)
      {
        g_assert_cmpint (g_atomic_int_get (&all[i]->probe.n_destroyed), ==, 1);
        g_assert_cmpint (g_atomic_int_get (&all[i]->probe.n_runs), ==, runs[i]);
      }
    g_assert_cmpint (g_atomic_int_get (&uncollected.n_results_freed), ==, 1);
    g_assert_cmpint (g_atomic_int_get (&cancelled_running.n_results_freed), ==, 1);
  }
  /* Every func_data was released on the caller's context (this thread),
   * also those of functions that ran in the queue's threads. */
  g_assert_cmpint (g_atomic_int_get (&n_destroyed_elsewhere), ==, 0);

  run_result_clear (&failing_result);
  run_result_clear (&cancelled_running_result);
  run_result_clear (&cancelled_queued_result);
  run_result_clear (&shut_down_result);
  run_result_clear (&refused_result);
  gate_clear (&gate);

  unref_and_wait_finalized (queue);
}

/* ---- finalization with work in flight ----------------------------------- */

/* Dropping the last reference while tasks are queued: they still run, and
 * the queue is finalized after them (here in its own worker thread). */
static void
test_unref_while_busy (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  PushProbe probes[3] = { { 0 } };
  int finalized = FALSE;
  Gate gate;

  gate_init (&gate);
  g_object_weak_ref (G_OBJECT (queue), set_flag_weak_notify, &finalized);

  sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, gate_push_run, &gate);
  for (guint i = 0; i < G_N_ELEMENTS (probes); i++)
    sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, push_probe_run, &probes[i]);
  WAIT_UNTIL (GATE_STARTED (&gate) == 1);

  g_object_unref (queue);
  iterate_for (10);
  g_assert_false (g_atomic_int_get (&finalized));

  gate_open (&gate);
  WAIT_UNTIL (g_atomic_int_get (&finalized));
  for (guint i = 0; i < G_N_ELEMENTS (probes); i++)
    {
      g_assert_cmpint (g_atomic_int_get (&probes[i].n_calls), ==, 1);
      g_assert_cmpint (probes[i].reason, ==, SLUICE_TASK_RUN);
    }
  gate_clear (&gate);
}

/* ---- the default queue ------------------------------------------------- */

static void
test_default_queue (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_get_default ();
  FuncProbe probe = { 0 };
  RunResult result = { 0 };

  g_assert_true (SLUICE_IS_TASK_QUEUE (queue));
  g_assert_true (queue == sluice_task_queue_get_default ());
  g_assert_cmpuint (sluice_task_queue_get_max_threads (queue), ==, g_get_num_processors ());
  g_assert_false (sluice_task_queue_is_shut_down (queue));

  sluice_task_queue_run_async (queue, func_probe_func, &probe, func_probe_destroy, NULL,
                               G_PRIORITY_DEFAULT, NULL, run_done_cb, &result);
  WAIT_UNTIL (result.n_completed == 1);
  g_assert_no_error (result.error);
  g_assert_cmpint (g_atomic_int_get (&probe.n_runs), ==, 1);
  g_assert_cmpint (g_atomic_int_get (&probe.n_destroyed), ==, 1);
}

/* ---- 7. programmer errors --------------------------------------------- */

static void
test_programmer_errors (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  FuncProbe probe = { 0 };

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*assertion*func != NULL*failed*");
  sluice_task_queue_run_async (queue, NULL, &probe, func_probe_destroy, NULL, G_PRIORITY_DEFAULT,
                               NULL, NULL, NULL);
  g_test_assert_expected_messages ();
  g_assert_cmpint (probe.n_destroyed, ==, 0);

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*assertion*SLUICE_IS_TASK_QUEUE*failed*");
  sluice_task_queue_run_async (NULL, func_probe_func, &probe, NULL, NULL, G_PRIORITY_DEFAULT, NULL,
                               NULL, NULL);
  g_test_assert_expected_messages ();

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*assertion*SLUICE_IS_TASK_QUEUE*failed*");
  g_assert_cmpuint (sluice_task_queue_get_n_pending (NULL), ==, 0);
  g_test_assert_expected_messages ();

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*assertion*SLUICE_IS_TASK_QUEUE*failed*");
  g_assert_false (sluice_task_queue_is_shut_down (NULL));
  g_test_assert_expected_messages ();

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*assertion*run != NULL*failed*");
  sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, NULL, NULL);
  g_test_assert_expected_messages ();

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*assertion*default_queue*failed*");
  sluice_task_queue_shutdown_async (sluice_task_queue_get_default (), FALSE, NULL, NULL, NULL);
  g_test_assert_expected_messages ();
  g_assert_false (sluice_task_queue_is_shut_down (sluice_task_queue_get_default ()));

  g_assert_false (sluice_task_queue_is_shut_down (queue));

  unref_and_wait_finalized (queue);
}

/* ---- 8. stress --------------------------------------------------------- */

typedef struct
{
  SluiceTaskQueue *queue;
  int *calls; /* one counter per task */
  guint first;
  guint n;
  guint32 seed;
} StressPusher;

/* A call to run adds 1, a call to release (any other reason) adds 1000. */
#define STRESS_RELEASED 1000

static void
stress_run (gpointer data, SluiceTaskReason reason)
{
  int *call = data;

  g_atomic_int_add (call, reason == SLUICE_TASK_RUN ? 1 : STRESS_RELEASED);
}

static gpointer
stress_pusher_thread (gpointer data)
{
  StressPusher *pusher = data;
  g_autoptr (GRand) rand = g_rand_new_with_seed (pusher->seed);

  for (guint i = pusher->first; i < pusher->first + pusher->n; i++)
    sluice_task_queue_push (pusher->queue, g_rand_int_range (rand, -100, 300), NULL, stress_run,
                            &pusher->calls[i]);
  return NULL;
}

/* Private pushes from two threads with random priorities while the thread
 * count changes: every run function is called exactly once. With
 * @cancel_midway the queue is shut down, cancelling, while they push. */
static void
test_stress (gconstpointer data)
{
  gboolean cancel_midway = GPOINTER_TO_INT (data);
  guint n_tasks = sluice_test_scale (100000, 50);
  SluiceTaskQueue *queue = sluice_task_queue_new (0);
  g_autofree int *calls = g_new0 (int, n_tasks);
  guint n_run = 0, n_released = 0;
  StressPusher pushers[2];
  GThread *threads[2];
  guint toggles = 0;

  for (guint t = 0; t < 2; t++)
    {
      pushers[t].queue = queue;
      pushers[t].calls = calls;
      pushers[t].first = t * (n_tasks / 2);
      pushers[t].n = t == 0 ? n_tasks / 2 : n_tasks - n_tasks / 2;
      pushers[t].seed = 1234 + t;
      threads[t] = g_thread_new ("stress-pusher", stress_pusher_thread, &pushers[t]);
    }

  /* Change the thread count while they push. */
  while (sluice_task_queue_get_n_pending (queue) + sluice_task_queue_get_n_running (queue) > 0 ||
         toggles < 20)
    {
      sluice_task_queue_set_max_threads (queue, toggles % 2 == 0 ? 1 : 4);
      if (cancel_midway && toggles == 10)
        sluice_task_queue_shutdown_async (queue, TRUE, NULL, NULL, NULL);
      toggles++;
      g_usleep (500);
      if (toggles > 100000)
        break;
    }

  for (guint t = 0; t < 2; t++)
    g_thread_join (threads[t]);
  shutdown_and_wait (queue, FALSE);

  /* Exactly one call per task (checked without an assertion per task). */
  for (guint i = 0; i < n_tasks; i++)
    {
      if (calls[i] == 1)
        n_run++;
      else if (calls[i] == STRESS_RELEASED)
        n_released++;
      else
        g_assert_cmpint (calls[i], ==, 1);
    }
  g_assert_cmpuint (n_run + n_released, ==, n_tasks);
  if (!cancel_midway)
    g_assert_cmpuint (n_released, ==, 0);
  g_test_message ("%u tasks: %u run, %u released; %u thread count changes", n_tasks, n_run,
                  n_released, toggles);

  unref_and_wait_finalized (queue);
}

/* Pushes from several threads in bursts with random pauses, so that
 * runners find the queue empty, leave and are started again while others
 * push: every task runs exactly once, none is left queued with no runner
 * coming (its pusher waits for it), and with one thread each pusher's tasks
 * start in the order it pushed them. (Written for a lock-free push, issue
 * 19, session 15: a push that meets a runner leaving is the race such a
 * push must get right; with the leaving runner slowed down, a push that
 * skipped the re-check failed here at once.) The tasks' counters, and
 * when each started (a test runs at a time): */
static struct
{
  int *calls;
  guint *start_order;
  int next_start; /* atomic */
} leave_restart;

/* @data: the task's counter in leave_restart.calls. */
static void
leave_restart_run (gpointer data, SluiceTaskReason reason)
{
  int *call = data;

  if (reason == SLUICE_TASK_RUN)
    leave_restart.start_order[call - leave_restart.calls] =
        (guint) g_atomic_int_add (&leave_restart.next_start, 1);
  g_atomic_int_add (call, reason == SLUICE_TASK_RUN ? 1 : STRESS_RELEASED);
}

static gpointer
leave_restart_pusher_thread (gpointer data)
{
  StressPusher *pusher = data;
  g_autoptr (GRand) rand = g_rand_new_with_seed (pusher->seed);
  guint i = 0;

  while (i < pusher->n)
    {
      guint burst = (guint) g_rand_int_range (rand, 1, 40);
      gint64 deadline;

      for (; burst > 0 && i < pusher->n; burst--, i++)
        sluice_task_queue_push (pusher->queue, G_PRIORITY_DEFAULT, NULL, leave_restart_run,
                                &pusher->calls[pusher->first + i]);
      /* Mostly, wait for this burst to run: its last push may meet a
       * runner leaving, and no later push starts another. A task left
       * queued with no runner coming never runs. */
      if (g_rand_int_range (rand, 0, 3) == 0)
        continue;
      deadline = g_get_monotonic_time () + TIMEOUT_SECONDS * G_USEC_PER_SEC;
      while (g_atomic_int_get (&pusher->calls[pusher->first + i - 1]) == 0)
        {
          if (g_get_monotonic_time () > deadline)
            g_error ("task %u never ran", pusher->first + i - 1);
          g_thread_yield ();
        }
      /* Long enough, now and then, for the runners to leave. */
      if (g_rand_boolean (rand))
        g_usleep ((gulong) g_rand_int_range (rand, 1, 300));
    }
  return NULL;
}

static void
test_stress_leave_restart (gconstpointer data)
{
  guint n_threads = GPOINTER_TO_UINT (data);
  guint n_pushers = 4;
  guint n_tasks = sluice_test_scale (40000, 20);
  SluiceTaskQueue *queue = sluice_task_queue_new (n_threads);
  g_autofree int *calls = g_new0 (int, n_tasks);
  g_autofree guint *start_order = g_new0 (guint, n_tasks);
  StressPusher pushers[4];
  GThread *threads[4];

  leave_restart.calls = calls;
  leave_restart.start_order = start_order;
  leave_restart.next_start = 0;
  for (guint t = 0; t < n_pushers; t++)
    {
      pushers[t].queue = queue;
      pushers[t].calls = calls;
      pushers[t].first = t * (n_tasks / n_pushers);
      pushers[t].n = t + 1 < n_pushers ? n_tasks / n_pushers : n_tasks - t * (n_tasks / n_pushers);
      pushers[t].seed = g_test_rand_int ();
      threads[t] = g_thread_new ("leave-restart-pusher", leave_restart_pusher_thread, &pushers[t]);
    }
  for (guint t = 0; t < n_pushers; t++)
    g_thread_join (threads[t]);
  shutdown_and_wait (queue, FALSE); /* draining: every task has run */

  for (guint i = 0; i < n_tasks; i++)
    if (calls[i] != 1)
      g_assert_cmpint (calls[i], ==, 1);
  /* One thread: each pusher's tasks started in its order. */
  if (n_threads == 1)
    for (guint t = 0; t < n_pushers; t++)
      for (guint k = 1; k < pushers[t].n; k++)
        if (start_order[pushers[t].first + k] < start_order[pushers[t].first + k - 1])
          g_assert_cmpuint (start_order[pushers[t].first + k], >,
                            start_order[pushers[t].first + k - 1]);

  unref_and_wait_finalized (queue);
}

/* Public tasks cancelled from another thread while they are queued or
 * running: each completes exactly once and releases its data exactly once. */
typedef struct
{
  GCancellable *cancellable;
  FuncProbe probe;
  RunResult result;
} CancelStressTask;

static gpointer
cancel_stress_thread (gpointer data)
{
  CancelStressTask *tasks = data;
  guint n_tasks = sluice_test_scale (2000, 10);
  g_autoptr (GRand) rand = g_rand_new_with_seed (42);

  for (guint i = 0; i < n_tasks; i++)
    if (g_rand_boolean (rand))
      g_cancellable_cancel (tasks[i].cancellable);
  return NULL;
}

static void
test_stress_cancel (void)
{
  guint n_tasks = sluice_test_scale (2000, 10);
  SluiceTaskQueue *queue = sluice_task_queue_new (2);
  CancelStressTask *tasks = g_new0 (CancelStressTask, n_tasks);
  GThread *canceller;
  guint n_cancelled = 0;

  for (guint i = 0; i < n_tasks; i++)
    tasks[i].cancellable = g_cancellable_new ();

  canceller = g_thread_new ("canceller", cancel_stress_thread, tasks);
  for (guint i = 0; i < n_tasks; i++)
    sluice_task_queue_run_async (queue, func_probe_func, &tasks[i].probe, func_probe_destroy, NULL,
                                 i % 3, tasks[i].cancellable, run_done_cb, &tasks[i].result);
  g_thread_join (canceller);
  shutdown_and_wait (queue, FALSE);

  for (guint i = 0; i < n_tasks; i++)
    {
      WAIT_UNTIL (tasks[i].result.n_completed >= 1);
      g_assert_cmpint (g_atomic_int_get (&tasks[i].probe.n_destroyed), ==, 1);
      g_assert_cmpint (g_atomic_int_get (&tasks[i].probe.n_runs), <=, 1);
      if (tasks[i].result.error != NULL)
        {
          g_assert_error (tasks[i].result.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
          g_assert_true (g_cancellable_is_cancelled (tasks[i].cancellable));
          n_cancelled++;
        }
      else
        g_assert_cmpint (g_atomic_int_get (&tasks[i].probe.n_runs), ==, 1);
    }
  iterate_for (10);
  for (guint i = 0; i < n_tasks; i++)
    {
      g_assert_cmpuint (tasks[i].result.n_completed, ==, 1);
      run_result_clear (&tasks[i].result);
      g_object_unref (tasks[i].cancellable);
    }
  g_test_message ("%u of %u tasks cancelled", n_cancelled, n_tasks);
  g_free (tasks);

  unref_and_wait_finalized (queue);
}

/* Issue 16 (review/race.c): a cancelling shutdown racing a cancel of each
 * queued task. The cancel's handler may win a task and the shutdown then
 * drop the queued entry's reference, which was the last: the handler must
 * still hold the task when it returns it. Each round queues tasks behind a
 * blocked thread, then cancels them from another thread while the shutdown
 * cancels them here; each completes once, cancelled. */
#define N_RACE_TASKS 100

typedef struct
{
  GCancellable *cancellables[N_RACE_TASKS];
  int go; /* (atomic) */
} CancelRace;

static gpointer
cancel_race_thread (gpointer data)
{
  CancelRace *race = data;

  while (!g_atomic_int_get (&race->go))
    ;
  for (guint i = 0; i < N_RACE_TASKS; i++)
    g_cancellable_cancel (race->cancellables[i]);
  return NULL;
}

static void
test_stress_cancel_shutdown_race (void)
{
  guint n_rounds = sluice_test_scale (600, 60);

  for (guint round = 0; round < n_rounds; round++)
    {
      SluiceTaskQueue *queue = sluice_task_queue_new (1);
      CancelRace race = { { NULL } };
      RunResult results[N_RACE_TASKS] = { { 0 } };
      FuncProbe probes[N_RACE_TASKS] = { { 0 } };
      ShutdownResult shut = { 0 };
      Gate gate;
      GThread *canceller;

      gate_init (&gate);
      sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, gate_push_run, &gate);
      WAIT_UNTIL (GATE_STARTED (&gate) == 1);
      for (guint i = 0; i < N_RACE_TASKS; i++)
        {
          race.cancellables[i] = g_cancellable_new ();
          sluice_task_queue_run_async (queue, func_probe_func, &probes[i], NULL, NULL,
                                       G_PRIORITY_DEFAULT, race.cancellables[i], run_done_cb,
                                       &results[i]);
        }
      canceller = g_thread_new ("canceller", cancel_race_thread, &race);
      g_atomic_int_set (&race.go, TRUE);
      sluice_task_queue_shutdown_async (queue, TRUE, NULL, shutdown_done_cb, &shut);
      g_thread_join (canceller);
      gate_open (&gate);

      WAIT_UNTIL (shut.n_completed == 1);
      g_assert_no_error (shut.error);
      for (guint i = 0; i < N_RACE_TASKS; i++)
        {
          WAIT_UNTIL (results[i].n_completed == 1);
          g_assert_error (results[i].error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
          g_assert_cmpint (g_atomic_int_get (&probes[i].n_runs), ==, 0);
          run_result_clear (&results[i]);
          g_object_unref (race.cancellables[i]);
        }
      unref_and_wait_finalized (queue);
      gate_clear (&gate);
    }
}

/* ---- 9. hands: short tasks taken several at a time --------------------- */

/* Keeps @n_threads threads of @queue in tasks blocked at @gate: what is
 * queued next waits, whole, until the gate opens and they take it. */
static void
hold_threads (SluiceTaskQueue *queue, Gate *gate, guint n_threads)
{
  for (guint i = 0; i < n_threads; i++)
    sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, gate_push_run, gate);
  WAIT_UNTIL (GATE_STARTED (gate) == n_threads);
}

/* One thread took a blocking task and the seven after it at once: they are
 * pending (not running), and a cancelling shutdown cancels them. */
static void
test_hand_counts_and_shutdown (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  PushProbe probes[HAND_TEST_SIZE - 1] = { { 0 } };
  ShutdownResult shut = { 0 };
  Gate first, held;

  gate_init (&first);
  gate_init (&held);
  sluice_task_queue_set_hand_size (queue, HAND_TEST_SIZE);

  /* Everything is queued before the thread looks again. */
  hold_threads (queue, &first, 1);
  sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, gate_push_run, &held);
  for (guint i = 0; i < G_N_ELEMENTS (probes); i++)
    sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, push_probe_run, &probes[i]);
  assert_counts (queue, HAND_TEST_SIZE, 1);

  gate_open (&first);
  WAIT_UNTIL (GATE_STARTED (&held) == 1);
  assert_counts (queue, HAND_TEST_SIZE - 1, 1);

  /* The cancelled ones run in the shutdown call. */
  sluice_task_queue_shutdown_async (queue, TRUE, NULL, shutdown_done_cb, &shut);
  for (guint i = 0; i < G_N_ELEMENTS (probes); i++)
    {
      g_assert_cmpint (g_atomic_int_get (&probes[i].n_calls), ==, 1);
      g_assert_cmpint (probes[i].reason, ==, SLUICE_TASK_SHUT_DOWN);
    }
  assert_counts (queue, 0, 1);
  iterate_for (10);
  g_assert_cmpuint (shut.n_completed, ==, 0);

  gate_open (&held);
  WAIT_UNTIL (shut.n_completed == 1);
  g_assert_true (shut.ok);
  assert_counts (queue, 0, 0);
  for (guint i = 0; i < G_N_ELEMENTS (probes); i++)
    g_assert_cmpint (g_atomic_int_get (&probes[i].n_calls), ==, 1);

  gate_clear (&first);
  gate_clear (&held);
  unref_and_wait_finalized (queue);
}

/* Threads added while one thread holds blocking tasks it took at once take
 * them over. */
static void
test_hand_raise_max_threads (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  Gate first, held;

  gate_init (&first);
  gate_init (&held);
  sluice_task_queue_set_hand_size (queue, HAND_TEST_SIZE);

  hold_threads (queue, &first, 1);
  for (guint i = 0; i < HAND_TEST_SIZE; i++)
    sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, gate_push_run, &held);
  gate_open (&first);
  WAIT_UNTIL (GATE_STARTED (&held) == 1);
  assert_counts (queue, HAND_TEST_SIZE - 1, 1);

  sluice_task_queue_set_max_threads (queue, 4);
  WAIT_UNTIL (GATE_CURRENT (&held) == 4);
  assert_counts (queue, HAND_TEST_SIZE - 4, 4);

  gate_open (&held);
  shutdown_and_wait (queue, FALSE);
  g_assert_cmpuint (GATE_STARTED (&held), ==, HAND_TEST_SIZE);
  g_assert_cmpuint (GATE_MAX_CURRENT (&held), ==, 4);

  gate_clear (&first);
  gate_clear (&held);
  unref_and_wait_finalized (queue);
}

/* Lowered while two threads hold tasks they took at once: the surplus
 * thread puts back what it has not started, and from then on one task runs
 * at a time. */
static void
test_hand_lower_max_threads (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (2);
  Gate first, held;

  gate_init (&first);
  gate_init (&held);
  sluice_task_queue_set_hand_size (queue, HAND_TEST_SIZE);
  sluice_task_queue_set_hand_stall (queue, -1);

  hold_threads (queue, &first, 2);
  for (guint i = 0; i < 2 * HAND_TEST_SIZE; i++)
    sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, gate_push_run, &held);
  gate_open (&first);
  WAIT_UNTIL (GATE_CURRENT (&held) == 2);
  assert_counts (queue, 2 * HAND_TEST_SIZE - 2, 2);

  sluice_task_queue_set_max_threads (queue, 1);
  gate_grant (&held, 2);
  WAIT_UNTIL (GATE_STARTED (&held) == 3 && GATE_CURRENT (&held) == 1);
  gate_reset_max_current (&held);
  iterate_for (50);
  g_assert_cmpuint (GATE_STARTED (&held), ==, 3);
  assert_counts (queue, 2 * HAND_TEST_SIZE - 3, 1);

  gate_open (&held);
  shutdown_and_wait (queue, FALSE);
  g_assert_cmpuint (GATE_STARTED (&held), ==, 2 * HAND_TEST_SIZE);
  g_assert_cmpuint (GATE_MAX_CURRENT (&held), ==, 1);

  gate_clear (&first);
  gate_clear (&held);
  unref_and_wait_finalized (queue);
}

/* Tasks that note the order they start in, then pass a gate. */
#define N_GIVE_BACK_TASKS 20

/* Room for the longest log (tests of the start order). */
#define START_LOG_SIZE 240

typedef struct
{
  GMutex mutex;
  guint order[START_LOG_SIZE];
  guint n;
} StartLog;

typedef struct
{
  StartLog *log;
  Gate *gate;
  guint index;
} LoggedTask;

static void
logged_gate_run (gpointer data, SluiceTaskReason reason)
{
  LoggedTask *task = data;

  g_assert_cmpint (reason, ==, SLUICE_TASK_RUN);
  g_mutex_lock (&task->log->mutex);
  g_assert_cmpuint (task->log->n, <, START_LOG_SIZE);
  task->log->order[task->log->n++] = task->index;
  g_mutex_unlock (&task->log->mutex);
  gate_pass (task->gate);
}

/* Queues tasks[@first .. @first + @n - 1], each noting its index in @log
 * when it starts, then passing @gate. */
static void
push_logged_tasks (SluiceTaskQueue *queue,
                   LoggedTask *tasks,
                   guint first,
                   guint n,
                   int priority,
                   StartLog *log,
                   Gate *gate)
{
  for (guint i = first; i < first + n; i++)
    {
      tasks[i] = (LoggedTask){ log, gate, i };
      sluice_task_queue_push (queue, priority, NULL, logged_gate_run, &tasks[i]);
    }
}

/* Three threads hold four blocking tasks each (0-3, 4-7, 8-11; 12-19 are
 * queued) when the thread count drops to one: the first surplus thread puts
 * back what every thread holds, and every task then starts in queuing
 * order, whichever threads leave. */
static void
test_hand_give_back_order (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (3);
  LoggedTask tasks[N_GIVE_BACK_TASKS];
  StartLog log = { 0 };
  Gate first, held;
  int last = -1;

  gate_init (&first);
  gate_init (&held);
  g_mutex_init (&log.mutex);
  sluice_task_queue_set_hand_size (queue, 4);
  /* Hands stay whole while tasks are queued, however slowly the threads
   * start (valgrind). */
  sluice_task_queue_set_hand_stall (queue, -1);

  hold_threads (queue, &first, 3);
  push_logged_tasks (queue, tasks, 0, N_GIVE_BACK_TASKS, G_PRIORITY_DEFAULT, &log, &held);
  gate_open (&first);
  WAIT_UNTIL (GATE_CURRENT (&held) == 3);
  assert_counts (queue, N_GIVE_BACK_TASKS - 3, 3);

  sluice_task_queue_set_max_threads (queue, 1);
  gate_grant (&held, 3);
  WAIT_UNTIL (GATE_STARTED (&held) == 4 && GATE_CURRENT (&held) == 1);
  gate_open (&held);
  shutdown_and_wait (queue, FALSE);

  g_assert_cmpuint (log.n, ==, N_GIVE_BACK_TASKS);
  for (guint i = 0; i < 3; i++)
    g_assert_cmpuint (log.order[i] % 4, ==, 0);
  for (guint i = 3; i < N_GIVE_BACK_TASKS; i++)
    {
      g_assert_cmpint ((int) log.order[i], >, last);
      g_assert_cmpuint (log.order[i] % 4 != 0 || log.order[i] >= 12, ==, TRUE);
      last = (int) log.order[i];
    }

  g_mutex_clear (&log.mutex);
  gate_clear (&first);
  gate_clear (&held);
  unref_and_wait_finalized (queue);
}

/* One thread holds a blocking task and the seven after it when a more
 * urgent task is queued: it runs right after the blocking one, before the
 * rest of the hand. */
static void
test_hand_urgent_first (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  LoggedTask tasks[HAND_TEST_SIZE + 1];
  StartLog log = { 0 };
  Gate first, held;

  gate_init (&first);
  gate_init (&held);
  g_mutex_init (&log.mutex);
  sluice_task_queue_set_hand_size (queue, HAND_TEST_SIZE);

  hold_threads (queue, &first, 1);
  push_logged_tasks (queue, tasks, 0, HAND_TEST_SIZE, G_PRIORITY_DEFAULT, &log, &held);
  gate_open (&first);
  WAIT_UNTIL (GATE_STARTED (&held) == 1);
  assert_counts (queue, HAND_TEST_SIZE - 1, 1);

  /* Task 8, more urgent, queued while the hand holds 1-7. */
  push_logged_tasks (queue, tasks, HAND_TEST_SIZE, 1, G_PRIORITY_HIGH, &log, &held);
  assert_counts (queue, HAND_TEST_SIZE, 1);
  gate_open (&held);
  shutdown_and_wait (queue, FALSE);

  g_assert_cmpuint (log.n, ==, HAND_TEST_SIZE + 1);
  g_assert_cmpuint (log.order[0], ==, 0);
  g_assert_cmpuint (log.order[1], ==, HAND_TEST_SIZE);
  for (guint i = 2; i <= HAND_TEST_SIZE; i++)
    g_assert_cmpuint (log.order[i], ==, i - 1);

  g_mutex_clear (&log.mutex);
  gate_clear (&first);
  gate_clear (&held);
  unref_and_wait_finalized (queue);
}

/* A task that waits for the next task to start, queued among many. */
typedef struct
{
  GMutex mutex;
  GCond cond;
  gboolean next_started;
  gboolean waited_out;   /* the first gave up waiting */
  gboolean slow_fillers; /* each filler takes 50 us */
  guint n_fillers;       /* filler tasks started */
  guint fillers_before_next;
} WaitNext;

static void
wait_next_first_run (gpointer data, SluiceTaskReason reason)
{
  WaitNext *w = data;
  gint64 deadline = g_get_monotonic_time () + TIMEOUT_SECONDS * G_USEC_PER_SEC;

  g_assert_cmpint (reason, ==, SLUICE_TASK_RUN);
  g_mutex_lock (&w->mutex);
  while (!w->next_started)
    if (!g_cond_wait_until (&w->cond, &w->mutex, deadline))
      {
        w->waited_out = TRUE;
        break;
      }
  g_mutex_unlock (&w->mutex);
}

static void
wait_next_second_run (gpointer data, SluiceTaskReason reason)
{
  WaitNext *w = data;

  g_assert_cmpint (reason, ==, SLUICE_TASK_RUN);
  g_mutex_lock (&w->mutex);
  w->next_started = TRUE;
  w->fillers_before_next = w->n_fillers;
  g_cond_broadcast (&w->cond);
  g_mutex_unlock (&w->mutex);
}

static void
wait_next_filler_run (gpointer data, SluiceTaskReason reason)
{
  WaitNext *w = data;

  g_assert_cmpint (reason, ==, SLUICE_TASK_RUN);
  g_mutex_lock (&w->mutex);
  w->n_fillers++;
  g_mutex_unlock (&w->mutex);
  if (w->slow_fillers)
    g_usleep (50);
}

/* Two threads; one takes a task that waits for the next one, and the next
 * one in the same hand. The other thread takes it over: at once when
 * nothing else is queued (@n_fillers small: that thread takes one of them
 * at a time, so the first takes both), otherwise once the first has been
 * stuck a while (well before the slow fillers queued after it ran out). */
static void
test_hand_wait_for_next (gconstpointer data)
{
  guint n_fillers = GPOINTER_TO_UINT (data);
  guint hand_size = n_fillers > HAND_TEST_SIZE ? 2 : HAND_TEST_SIZE;
  SluiceTaskQueue *queue = sluice_task_queue_new (2);
  WaitNext w = { 0 };
  Gate first;

  gate_init (&first);
  g_mutex_init (&w.mutex);
  g_cond_init (&w.cond);
  w.slow_fillers = n_fillers > HAND_TEST_SIZE;
  sluice_task_queue_set_hand_size (queue, hand_size);

  /* Both threads wait while the rest is queued, then take hand_size each. */
  hold_threads (queue, &first, 2);
  sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, wait_next_first_run, &w);
  sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, wait_next_second_run, &w);
  for (guint i = 0; i < n_fillers; i++)
    sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, wait_next_filler_run, &w);
  gate_open (&first);

  shutdown_and_wait (queue, FALSE);
  g_assert_true (w.next_started);
  g_assert_false (w.waited_out);
  g_assert_cmpuint (w.n_fillers, ==, n_fillers);
  g_test_message ("%u of %u fillers had started when the next task did", w.fillers_before_next,
                  n_fillers);
  if (n_fillers > HAND_TEST_SIZE)
    g_assert_cmpuint (w.fillers_before_next, <, n_fillers);

  g_mutex_clear (&w.mutex);
  g_cond_clear (&w.cond);
  gate_clear (&first);
  unref_and_wait_finalized (queue);
}

/* ---- 10. start order across threads --------------------------------------- */

#define N_ORDER_LOG START_LOG_SIZE

/* What the class doc promises with several threads: when a task starts,
 * every older task of equal priority has started or is in another thread's
 * hand (up to 7 besides the one it runs). Four threads, each in a task
 * blocked at a gate (so every task taken from a hand has started), let
 * through one at a time: each time, the older tasks not started are at
 * most 7 per other thread. */
static void
test_start_order_threads (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (4);
  LoggedTask *tasks = g_new0 (LoggedTask, N_ORDER_LOG);
  StartLog *log = g_new0 (StartLog, 1);
  guint max_behind = 0;
  Gate first, held;

  gate_init (&first);
  gate_init (&held);
  g_mutex_init (&log->mutex);
  sluice_task_queue_set_hand_size (queue, HAND_TEST_SIZE);

  hold_threads (queue, &first, 4);
  for (guint i = 0; i < N_ORDER_LOG; i++)
    {
      tasks[i] = (LoggedTask){ log, &held, i };
      sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, logged_gate_run, &tasks[i]);
    }
  gate_open (&first);

  for (guint n_started = 4;; n_started++)
    {
      gboolean *started = g_new0 (gboolean, N_ORDER_LOG);
      guint newest = 0, n_behind = 0;

      WAIT_UNTIL (GATE_STARTED (&held) == n_started &&
                  GATE_CURRENT (&held) == MIN (4, N_ORDER_LOG + 4 - n_started));
      g_mutex_lock (&log->mutex);
      g_assert_cmpuint (log->n, ==, n_started);
      for (guint i = 0; i < log->n; i++)
        {
          started[log->order[i]] = TRUE;
          newest = MAX (newest, log->order[i]);
        }
      g_mutex_unlock (&log->mutex);
      for (guint i = 0; i < newest; i++)
        n_behind += !started[i];
      g_assert_cmpuint (n_behind, <=, (HAND_TEST_SIZE - 1) * 3);
      max_behind = MAX (max_behind, n_behind);
      g_free (started);

      if (n_started == N_ORDER_LOG)
        break;
      gate_grant (&held, 1);
    }
  g_test_message ("at most %u older tasks had not started when one did", max_behind);

  gate_open (&held);
  shutdown_and_wait (queue, FALSE);
  g_mutex_clear (&log->mutex);
  g_free (log);
  g_free (tasks);
  gate_clear (&first);
  gate_clear (&held);
  unref_and_wait_finalized (queue);
}

/* Three threads hold hands 0-3, 4-7 and 8-11 (12-19 queued), each blocked
 * in its first task at a gate of its own, when the thread count drops to
 * one. The threads in 0 and 8 leave and put back what they hold: the one
 * in 4, which stays, must not start 5-7 while 1-3 are queued (nor 12
 * before 9-11): every task after 0, 8 and 4 starts in queuing order. */
static void
test_start_order_give_back (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (3);
  LoggedTask tasks[20];
  StartLog log = { 0 };
  Gate first, gates[4];
  static const guint expected[] = { 1, 2, 3, 5, 6, 7, 9, 10, 11 };
  guint firsts = 0;

  gate_init (&first);
  for (guint g = 0; g < G_N_ELEMENTS (gates); g++)
    gate_init (&gates[g]);
  gate_open (&gates[3]);
  g_mutex_init (&log.mutex);
  sluice_task_queue_set_hand_size (queue, 4);
  sluice_task_queue_set_hand_stall (queue, -1);

  hold_threads (queue, &first, 3);
  for (guint i = 0; i < G_N_ELEMENTS (tasks); i++)
    {
      tasks[i] = (LoggedTask){ &log, &gates[MIN (i / 4, 3)], i };
      sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, logged_gate_run, &tasks[i]);
    }
  gate_open (&first);
  for (guint g = 0; g < 3; g++)
    WAIT_UNTIL (GATE_CURRENT (&gates[g]) == 1);
  assert_counts (queue, G_N_ELEMENTS (tasks) - 3, 3);

  sluice_task_queue_set_max_threads (queue, 1);
  gate_open (&gates[0]);
  WAIT_UNTIL (sluice_task_queue_get_n_runners (queue) == 2);
  gate_open (&gates[2]);
  WAIT_UNTIL (sluice_task_queue_get_n_runners (queue) == 1);
  gate_open (&gates[1]);
  shutdown_and_wait (queue, FALSE);

  g_assert_cmpuint (log.n, ==, G_N_ELEMENTS (tasks));
  /* 0, 4 and 8 started together; then the queuing order. */
  for (guint i = 0; i < 3; i++)
    {
      g_assert_cmpuint (log.order[i] % 4, ==, 0);
      g_assert_cmpuint (log.order[i], <, 12);
      firsts |= 1u << log.order[i] / 4;
    }
  g_assert_cmpuint (firsts, ==, 7);
  for (guint i = 3; i < G_N_ELEMENTS (tasks); i++)
    g_assert_cmpuint (log.order[i], ==, i - 3 < G_N_ELEMENTS (expected) ? expected[i - 3] : i);

  g_mutex_clear (&log.mutex);
  gate_clear (&first);
  for (guint g = 0; g < G_N_ELEMENTS (gates); g++)
    gate_clear (&gates[g]);
  unref_and_wait_finalized (queue);
}

/* ---- 11. the value forms (what bindings use) ------------------------------ */

typedef struct
{
  FuncProbe probe;  /* first: func_probe_destroy () releases it */
  const char *text; /* (nullable): the value to set, as a string */
  gboolean fail;    /* fail, after setting the value if there is one */
} ValueFuncData;

static void
value_thread_func (GCancellable *cancellable, GValue *value, gpointer data, GError **error)
{
  ValueFuncData *vd = data;

  g_assert_true (g_thread_self () != test_thread);
  g_atomic_int_inc (&vd->probe.n_runs);
  if (vd->text != NULL)
    {
      g_value_init (value, G_TYPE_STRING);
      g_value_set_string (value, vd->text);
    }
  if (vd->fail)
    g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, "failed on purpose");
}

typedef struct
{
  guint n_completed;
  GValue *value;
  GError *error;
  FuncProbe *probe;          /* of the function's data */
  int n_destroyed_before;    /* its data released before the callback ran */
  gboolean try_wrong_finish; /* first collect it with the pointer form */
} ValueResult;

static void
value_done_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
  ValueResult *r = user_data;

  g_assert_true (g_thread_self () == test_thread);
  r->n_destroyed_before = g_atomic_int_get (&r->probe->n_destroyed);
  if (r->try_wrong_finish)
    {
      g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*assertion*is_tagged*failed*");
      g_assert_null (sluice_task_queue_run_finish (SLUICE_TASK_QUEUE (source), res, NULL));
      g_test_assert_expected_messages ();
    }
  r->value = sluice_task_queue_run_finish_value (SLUICE_TASK_QUEUE (source), res, &r->error);
  r->n_completed++;
}

static void
value_result_clear (ValueResult *r)
{
  g_clear_pointer (&r->value, value_free_for_test);
  g_clear_error (&r->error);
}

/* A value set in a thread arrives as it was; an unset one is a NULL
 * pointer; an error arrives as the error (and a value set before it is
 * freed); a cancelled task never runs; an uncollected value is freed. The
 * data of every function is released on this thread, before its callback. */
static void
test_value_forms (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (2);
  g_autoptr (GCancellable) cancelled = g_cancellable_new ();
  ValueFuncData with_text = { { 0 }, "forty-two", FALSE }, unset = { { 0 }, NULL, FALSE },
                failing = { { 0 }, "dropped", TRUE }, never = { { 0 }, "never", FALSE },
                uncollected = { { 0 }, "uncollected", FALSE };
  ValueFuncData *data[] = { &with_text, &unset, &failing, &never };
  ValueResult results[G_N_ELEMENTS (data)] = { { 0 } };

  g_cancellable_cancel (cancelled);
  results[0].try_wrong_finish = TRUE;
  for (guint i = 0; i < G_N_ELEMENTS (data); i++)
    {
      results[i].probe = &data[i]->probe;
      sluice_task_queue_run_value_async (queue, value_thread_func, data[i], func_probe_destroy,
                                         G_PRIORITY_DEFAULT, data[i] == &never ? cancelled : NULL,
                                         value_done_cb, &results[i]);
    }
  sluice_task_queue_run_value_async (queue, value_thread_func, &uncollected, func_probe_destroy,
                                     G_PRIORITY_DEFAULT, NULL, NULL, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (data); i++)
    g_assert_cmpuint (results[i].n_completed, ==, 0);
  for (guint i = 0; i < G_N_ELEMENTS (data); i++)
    WAIT_UNTIL (results[i].n_completed == 1);
  WAIT_UNTIL (g_atomic_int_get (&uncollected.probe.n_destroyed) == 1);

  g_assert_no_error (results[0].error);
  g_assert_true (G_VALUE_HOLDS_STRING (results[0].value));
  g_assert_cmpstr (g_value_get_string (results[0].value), ==, "forty-two");

  g_assert_no_error (results[1].error);
  g_assert_true (G_VALUE_HOLDS_POINTER (results[1].value));
  g_assert_null (g_value_get_pointer (results[1].value));

  g_assert_error (results[2].error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_assert_null (results[2].value);

  g_assert_error (results[3].error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (results[3].value);

  for (guint i = 0; i < G_N_ELEMENTS (data); i++)
    {
      g_assert_cmpint (g_atomic_int_get (&data[i]->probe.n_runs), ==, data[i] == &never ? 0 : 1);
      g_assert_cmpint (g_atomic_int_get (&data[i]->probe.n_destroyed), ==, 1);
      g_assert_cmpint (results[i].n_destroyed_before, ==, 1);
      value_result_clear (&results[i]);
    }
  g_assert_cmpint (g_atomic_int_get (&uncollected.probe.n_runs), ==, 1);
  g_assert_cmpint (g_atomic_int_get (&n_destroyed_elsewhere), ==, 0);

  shutdown_and_wait (queue, FALSE);
  unref_and_wait_finalized (queue);
}

static void
test_value_programmer_errors (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  FuncProbe probe = { 0 };

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*assertion*func != NULL*failed*");
  sluice_task_queue_run_value_async (queue, NULL, &probe, func_probe_destroy, G_PRIORITY_DEFAULT,
                                     NULL, NULL, NULL);
  g_test_assert_expected_messages ();

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*assertion*SLUICE_IS_TASK_QUEUE*failed*");
  sluice_task_queue_run_value_async (NULL, value_thread_func, &probe, func_probe_destroy,
                                     G_PRIORITY_DEFAULT, NULL, NULL, NULL);
  g_test_assert_expected_messages ();

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*assertion*SLUICE_IS_TASK_QUEUE*failed*");
  g_assert_null (sluice_task_queue_run_finish_value (NULL, NULL, NULL));
  g_test_assert_expected_messages ();

  /* Refused calls own nothing: the data was not released. */
  g_assert_cmpint (probe.n_destroyed, ==, 0);
  g_assert_cmpint (probe.n_runs, ==, 0);

  unref_and_wait_finalized (queue);
}

/* ---- 12. callbacks come from the main loop -------------------------------- */

typedef struct
{
  SluiceTaskQueue *queue;
  RunResult results[3];
  ValueResult refused;
  FuncProbe probes[3];
  FuncProbe refused_probe;
  gboolean in_call; /* inside a call this test makes, on the main context */
  guint n_inside;   /* callbacks or releases that ran inside one */
} Reentry;

static Reentry *reentry;

static void
reentry_destroy (gpointer data)
{
  if (reentry->in_call)
    reentry->n_inside++;
  func_probe_destroy (data);
}

static void
reentry_done_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
  if (reentry->in_call)
    reentry->n_inside++;
  run_done_cb (source, res, user_data);
}

static void
reentry_value_done_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
  if (reentry->in_call)
    reentry->n_inside++;
  value_done_cb (source, res, user_data);
}

/* In a dispatch of the main context, later than the one that queued the
 * tasks: a cancelling shutdown, then a refused task. */
static gboolean
shutdown_in_dispatch_cb (gpointer data)
{
  reentry->in_call = TRUE;
  sluice_task_queue_shutdown_async (reentry->queue, TRUE, NULL, NULL, NULL);
  reentry->refused.probe = &reentry->refused_probe;
  sluice_task_queue_run_value_async (reentry->queue, value_thread_func, &reentry->refused_probe,
                                     reentry_destroy, G_PRIORITY_DEFAULT, NULL,
                                     reentry_value_done_cb, &reentry->refused);
  reentry->in_call = FALSE;
  return G_SOURCE_REMOVE;
}

/* GTask's rule, kept also where GTask alone would call back at once (a
 * cancelling shutdown made in a dispatch of the caller's context): no
 * callback and no release of func_data runs inside a call of the caller. */
static void
test_callbacks_from_main_loop (void)
{
  Reentry r = { 0 };
  RunResult gate_result = { 0 };
  Gate gate;

  reentry = &r;
  gate_init (&gate);
  r.queue = sluice_task_queue_new (1);

  sluice_task_queue_run_async (r.queue, gate_thread_func, &gate, NULL, NULL, G_PRIORITY_DEFAULT,
                               NULL, run_done_cb, &gate_result);
  WAIT_UNTIL (GATE_STARTED (&gate) == 1);
  for (guint i = 0; i < G_N_ELEMENTS (r.results); i++)
    sluice_task_queue_run_async (r.queue, func_probe_func, &r.probes[i], reentry_destroy, NULL,
                                 G_PRIORITY_DEFAULT, NULL, reentry_done_cb, &r.results[i]);
  iterate_for (5);

  g_idle_add (shutdown_in_dispatch_cb, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (r.results); i++)
    WAIT_UNTIL (r.results[i].n_completed == 1);
  WAIT_UNTIL (r.refused.n_completed == 1);
  g_assert_cmpuint (r.n_inside, ==, 0);
  for (guint i = 0; i < G_N_ELEMENTS (r.results); i++)
    {
      g_assert_error (r.results[i].error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
      g_assert_cmpint (r.probes[i].n_runs, ==, 0);
      g_assert_cmpint (r.probes[i].n_destroyed, ==, 1);
      run_result_clear (&r.results[i]);
    }
  g_assert_error (r.refused.error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  g_assert_cmpint (r.refused_probe.n_destroyed, ==, 1);
  value_result_clear (&r.refused);

  gate_open (&gate);
  WAIT_UNTIL (gate_result.n_completed == 1);
  g_assert_no_error (gate_result.error);
  WAIT_UNTIL (sluice_task_queue_get_n_running (r.queue) == 0);
  gate_clear (&gate);
  reentry = NULL;
  unref_and_wait_finalized (r.queue);
}

/* ---- 13. n-pending and n-running notifications ------------------------- */

typedef struct
{
  guint n_pending_notifies;
  guint n_running_notifies;
  guint last_pending; /* the value at the last notification */
  guint last_running;
  guint n_elsewhere; /* notifications in another thread than expected */
  GThread *expected_thread;
} CountWatch;

static void
count_watch_cb (GObject *object, GParamSpec *pspec, gpointer user_data)
{
  CountWatch *watch = user_data;

  if (g_thread_self () != watch->expected_thread)
    watch->n_elsewhere++;
  if (g_str_equal (pspec->name, "n-pending"))
    {
      watch->n_pending_notifies++;
      watch->last_pending = sluice_task_queue_get_n_pending (SLUICE_TASK_QUEUE (object));
    }
  else
    {
      watch->n_running_notifies++;
      watch->last_running = sluice_task_queue_get_n_running (SLUICE_TASK_QUEUE (object));
    }
}

static void
count_watch_connect (CountWatch *watch, SluiceTaskQueue *queue)
{
  memset (watch, 0, sizeof *watch);
  watch->expected_thread = g_thread_self ();
  g_signal_connect (queue, "notify::n-pending", G_CALLBACK (count_watch_cb), watch);
  g_signal_connect (queue, "notify::n-running", G_CALLBACK (count_watch_cb), watch);
}

static void
count_push_run (gpointer data, SluiceTaskReason reason)
{
  g_atomic_int_inc ((int *) data);
}

/* Takes a while (about 50 µs, more under valgrind): counts that change for
 * a few tenths of a second. */
static void
count_slow_push_run (gpointer data, SluiceTaskReason reason)
{
  g_usleep (50);
  g_atomic_int_inc ((int *) data);
}

/* The counts are notified on the context of the thread that made the
 * queue, in that thread, and the last notification sees the settled
 * values; many tasks make few notifications. */
static void
test_count_notifications (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (2);
  guint n_tasks = sluice_test_scale (4000, 10);
  int n_ran = 0;
  CountWatch watch;
  gint64 start, elapsed_us;
  Gate gate;

  gate_init (&gate);
  count_watch_connect (&watch, queue);

  /* Two running, five pending: notified once the main loop runs. */
  hold_threads (queue, &gate, 2);
  for (guint i = 0; i < 5; i++)
    sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, count_push_run, &n_ran);
  WAIT_UNTIL (watch.last_pending == 5 && watch.last_running == 2);
  g_assert_cmpuint (watch.n_pending_notifies, >=, 1);
  g_assert_cmpuint (watch.n_running_notifies, >=, 1);

  gate_open (&gate);
  WAIT_UNTIL (watch.last_pending == 0 && watch.last_running == 0 && g_atomic_int_get (&n_ran) == 5);

  /* Many tasks: a bounded number of notifications, however many times the
   * counts change. */
  watch.n_pending_notifies = 0;
  watch.n_running_notifies = 0;
  start = g_get_monotonic_time ();
  for (guint i = 0; i < n_tasks; i++)
    sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, count_slow_push_run, &n_ran);
  WAIT_UNTIL (watch.last_pending == 0 && watch.last_running == 0 &&
              (guint) g_atomic_int_get (&n_ran) == 5 + n_tasks);
  elapsed_us = g_get_monotonic_time () - start;
  g_test_message ("%u tasks in %" G_GINT64_FORMAT " us: %u n-pending and %u n-running "
                  "notifications",
                  n_tasks, elapsed_us, watch.n_pending_notifies, watch.n_running_notifies);
  /* At most one look per 100 ms, each notifying a property at most once. */
  g_assert_cmpuint (watch.n_pending_notifies, <=, elapsed_us / (100 * 1000) + 2);
  g_assert_cmpuint (watch.n_running_notifies, <=, elapsed_us / (100 * 1000) + 2);
  g_assert_cmpuint (watch.n_elsewhere, ==, 0);

  /* Settled: nothing more. */
  watch.n_pending_notifies = 0;
  watch.n_running_notifies = 0;
  iterate_for (250);
  g_assert_cmpuint (watch.n_pending_notifies, ==, 0);
  g_assert_cmpuint (watch.n_running_notifies, ==, 0);

  gate_clear (&gate);
  shutdown_and_wait (queue, FALSE);
  unref_and_wait_finalized (queue);
}

/* A queue made where another context is the thread-default notifies only
 * there: iterating the global default context delivers nothing. */
static void
test_count_notifications_context (void)
{
  GMainContext *context = g_main_context_new ();
  SluiceTaskQueue *queue;
  CountWatch watch;
  Gate gate;

  gate_init (&gate);
  g_main_context_push_thread_default (context);
  queue = sluice_task_queue_new (1);
  g_main_context_pop_thread_default (context);
  count_watch_connect (&watch, queue);

  sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, gate_push_run, &gate);
  WAIT_UNTIL (GATE_STARTED (&gate) == 1);
  iterate_for (150);
  g_assert_cmpuint (watch.n_pending_notifies + watch.n_running_notifies, ==, 0);

  WAIT_UNTIL_IN (context, watch.last_running == 1);
  gate_open (&gate);
  WAIT_UNTIL_IN (context, watch.last_running == 0);
  g_assert_cmpuint (watch.n_elsewhere, ==, 0);
  g_assert_cmpuint (watch.n_pending_notifies, ==, 0); /* never anything pending */

  gate_clear (&gate);
  shutdown_and_wait (queue, FALSE);
  unref_and_wait_finalized (queue);
  g_main_context_unref (context);
}

/* The default queue notifies on the global default context. */
static void
test_count_notifications_default (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_get_default ();
  CountWatch watch;
  Gate gate;

  gate_init (&gate);
  count_watch_connect (&watch, queue);
  sluice_task_queue_push (queue, G_PRIORITY_DEFAULT, NULL, gate_push_run, &gate);
  WAIT_UNTIL (watch.last_running == 1);
  gate_open (&gate);
  WAIT_UNTIL (watch.last_running == 0);
  g_assert_cmpuint (watch.n_elsewhere, ==, 0);
  g_signal_handlers_disconnect_by_data (queue, &watch);
  gate_clear (&gate);
}

int
main (int argc, char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  test_thread = g_thread_self ();

  g_test_add_data_func ("/task-queue/priority-order/run-async", GINT_TO_POINTER (FALSE),
                        test_priority_order);
  g_test_add_data_func ("/task-queue/priority-order/push", GINT_TO_POINTER (TRUE),
                        test_priority_order);
  g_test_add_func ("/task-queue/cancel-before-run", test_cancel_before_run);
  g_test_add_data_func ("/task-queue/shutdown/drain", GINT_TO_POINTER (FALSE), test_shutdown);
  g_test_add_data_func ("/task-queue/shutdown/cancel-pending", GINT_TO_POINTER (TRUE),
                        test_shutdown);
  g_test_add_func ("/task-queue/shutdown/cancel-wait", test_shutdown_cancel_wait);
  g_test_add_data_func ("/task-queue/shutdown/in-cancelled-handler/before", GINT_TO_POINTER (TRUE),
                        test_shutdown_in_cancelled_handler);
  g_test_add_data_func ("/task-queue/shutdown/in-cancelled-handler/after", GINT_TO_POINTER (FALSE),
                        test_shutdown_in_cancelled_handler);
  g_test_add_func ("/task-queue/max-threads-while-busy", test_max_threads_while_busy);
  g_test_add_func ("/task-queue/counts-and-properties", test_counts_and_properties);
  g_test_add_func ("/task-queue/destroy-notifies", test_destroy_notifies);
  g_test_add_func ("/task-queue/unref-while-busy", test_unref_while_busy);
  g_test_add_func ("/task-queue/default", test_default_queue);
  g_test_add_func ("/task-queue/programmer-errors", test_programmer_errors);
  g_test_add_data_func ("/task-queue/stress/push", GINT_TO_POINTER (FALSE), test_stress);
  g_test_add_data_func ("/task-queue/stress/push-shutdown", GINT_TO_POINTER (TRUE), test_stress);
  g_test_add_data_func ("/task-queue/stress/leave-restart/one-thread", GUINT_TO_POINTER (1),
                        test_stress_leave_restart);
  g_test_add_data_func ("/task-queue/stress/leave-restart/two-threads", GUINT_TO_POINTER (2),
                        test_stress_leave_restart);
  g_test_add_func ("/task-queue/stress/cancel", test_stress_cancel);
  g_test_add_func ("/task-queue/stress/cancel-shutdown-race", test_stress_cancel_shutdown_race);
  g_test_add_func ("/task-queue/hand/counts-and-shutdown", test_hand_counts_and_shutdown);
  g_test_add_func ("/task-queue/hand/raise-max-threads", test_hand_raise_max_threads);
  g_test_add_func ("/task-queue/hand/lower-max-threads", test_hand_lower_max_threads);
  g_test_add_func ("/task-queue/hand/give-back-order", test_hand_give_back_order);
  g_test_add_func ("/task-queue/hand/urgent-first", test_hand_urgent_first);
  g_test_add_data_func ("/task-queue/hand/wait-for-next/idle-thread", GUINT_TO_POINTER (2),
                        test_hand_wait_for_next);
  g_test_add_data_func ("/task-queue/hand/wait-for-next/stalled", GUINT_TO_POINTER (200),
                        test_hand_wait_for_next);

  g_test_add_func ("/task-queue/start-order/threads", test_start_order_threads);
  g_test_add_func ("/task-queue/start-order/give-back", test_start_order_give_back);
  g_test_add_func ("/task-queue/value/forms", test_value_forms);
  g_test_add_func ("/task-queue/value/programmer-errors", test_value_programmer_errors);
  g_test_add_func ("/task-queue/callbacks-from-main-loop", test_callbacks_from_main_loop);
  g_test_add_func ("/task-queue/notify/counts", test_count_notifications);
  g_test_add_func ("/task-queue/notify/context", test_count_notifications_context);
  g_test_add_func ("/task-queue/notify/default-queue", test_count_notifications_default);

  return g_test_run ();
}
