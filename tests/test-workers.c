/* test-workers.c: tests of named calls, SluiceWorker and SluiceThreadWorker
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The tests named "asynqueue/..." port the behaviours that AsynQueue's own
 * suites check (asynqueue/test/test_workers.py, test_tasks.py); those
 * named "defect/..." each check one place where AsynQueue fails.
 */

#include <sluice/sluice.h>

#include "sluice-test-util.h"

#include <string.h>

#define WAIT_UNTIL(cond)                                                                           \
  G_STMT_START                                                                                     \
  {                                                                                                \
    gint64 wait_deadline_ = deadline_from_now ();                                                  \
    while (!(cond) && g_get_monotonic_time () < wait_deadline_)                                    \
      g_main_context_iteration (NULL, !(cond));                                                    \
    if (!(cond))                                                                                   \
      g_assertion_message (G_LOG_DOMAIN, __FILE__, __LINE__, G_STRFUNC,                            \
                           "timed out waiting for: " #cond);                                       \
  }                                                                                                \
  G_STMT_END

static gboolean
tick_cb (gpointer data)
{
  return G_SOURCE_CONTINUE;
}

/* ---- what the named functions of the tests share ------------------------ */

/* A gate that calls wait at, and a log of the calls that ran: their
 * argument and thread, in the order they ran. */
typedef struct
{
  GMutex mutex;
  GCond cond;
  gboolean open;
  guint waiting;
  GArray *ran;        /* of gint32, the args of "record" */
  GPtrArray *threads; /* of GThread, borrowed, the thread of each */
} Log;

static Log *
log_new (void)
{
  Log *log = g_new0 (Log, 1);

  g_mutex_init (&log->mutex);
  g_cond_init (&log->cond);
  log->ran = g_array_new (FALSE, FALSE, sizeof (gint32));
  log->threads = g_ptr_array_new ();
  return log;
}

static void
log_free (Log *log)
{
  g_array_unref (log->ran);
  g_ptr_array_unref (log->threads);
  g_mutex_clear (&log->mutex);
  g_cond_clear (&log->cond);
  g_free (log);
}

static guint
log_len (Log *log)
{
  guint n;

  g_mutex_lock (&log->mutex);
  n = log->ran->len;
  g_mutex_unlock (&log->mutex);
  return n;
}

static guint
log_waiting (Log *log)
{
  guint n;

  g_mutex_lock (&log->mutex);
  n = log->waiting;
  g_mutex_unlock (&log->mutex);
  return n;
}

static void
log_open (Log *log)
{
  g_mutex_lock (&log->mutex);
  log->open = TRUE;
  g_cond_broadcast (&log->cond);
  g_mutex_unlock (&log->mutex);
}

/* "record" (i): logs its argument and thread, returns (i) doubled. */
static GVariant *
record_func (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  Log *log = data;
  gint32 n;

  g_variant_get (args, "(i)", &n);
  g_mutex_lock (&log->mutex);
  g_array_append_val (log->ran, n);
  g_ptr_array_add (log->threads, g_thread_self ());
  g_mutex_unlock (&log->mutex);
  return g_variant_new ("(i)", 2 * n);
}

/* "gate" (): waits until the log's gate opens, or its cancellable is
 * cancelled (then fails). */
static GVariant *
gate_func (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  Log *log = data;
  gboolean cancelled = FALSE;

  g_mutex_lock (&log->mutex);
  log->waiting++;
  while (!log->open && !(cancelled = g_cancellable_is_cancelled (cancellable)))
    {
      gint64 end = g_get_monotonic_time () + 2000;

      g_cond_wait_until (&log->cond, &log->mutex, end);
    }
  log->waiting--;
  g_mutex_unlock (&log->mutex);
  if (cancelled)
    {
      g_cancellable_set_error_if_cancelled (cancellable, error);
      return NULL;
    }
  return NULL;
}

/* "fail" (): fails with a G_IO_ERROR_PERMISSION_DENIED. */
static GVariant *
fail_func (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED, "denied");
  return NULL;
}

static SluiceThreadWorker *
thread_worker_new (const char *const *series, guint n_threads, Log *log)
{
  SluiceThreadWorker *worker = sluice_thread_worker_new (series, n_threads);

  sluice_thread_worker_register (worker, "record", "(i)", record_func, log, NULL);
  sluice_thread_worker_register (worker, "gate", NULL, gate_func, log, NULL);
  sluice_thread_worker_register (worker, "fail", NULL, fail_func, NULL, NULL);
  return worker;
}

/* The outcome of one call_async. */
typedef struct
{
  guint n_completed;
  GVariant *result;
  GError *error;
} CallResult;

static void
call_done_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
  CallResult *r = user_data;

  r->result = sluice_task_queue_call_finish (SLUICE_TASK_QUEUE (source), res, &r->error);
  r->n_completed++;
}

static void
call_result_clear (CallResult *r)
{
  g_clear_pointer (&r->result, g_variant_unref);
  g_clear_error (&r->error);
}

static void
call (SluiceTaskQueue *queue,
      const char *series,
      const char *name,
      GVariant *args,
      int priority,
      CallResult *r)
{
  sluice_task_queue_call_async (queue, series, name, args, priority, 0, NULL, call_done_cb, r);
}

static void
call_record (SluiceTaskQueue *queue, const char *series, gint32 n, int priority, CallResult *r)
{
  call (queue, series, "record", g_variant_new ("(i)", n), priority, r);
}

static gint32
result_int (CallResult *r)
{
  gint32 n;

  g_assert_no_error (r->error);
  g_assert_nonnull (r->result);
  g_variant_get (r->result, "(i)", &n);
  return n;
}

typedef struct
{
  guint n_completed;
  gboolean ok;
} DoneFlag;

static void
shutdown_done_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
  DoneFlag *d = user_data;

  d->ok = sluice_task_queue_shutdown_finish (SLUICE_TASK_QUEUE (source), res, NULL);
  d->n_completed++;
}

static void
shutdown_and_wait (SluiceTaskQueue *queue, gboolean cancel_pending)
{
  DoneFlag d = { 0 };

  sluice_task_queue_shutdown_async (queue, cancel_pending, NULL, shutdown_done_cb, &d);
  WAIT_UNTIL (d.n_completed == 1);
  g_assert_true (d.ok);
}

/* ---- a mock worker: holds what it is given until the test says ---------- */

#define TEST_TYPE_MOCK_WORKER (test_mock_worker_get_type ())
G_DECLARE_FINAL_TYPE (TestMockWorker, test_mock_worker, TEST, MOCK_WORKER, GObject)

struct _TestMockWorker
{
  GObject parent_instance;
  char **series;
  guint capacity;
  GPtrArray *held; /* of SluiceWorkerTask (owned) */
  guint n_crashed;
  guint n_stopped;
  /* Each run_task: its thread (appended with the task under @lock, then
   * @n_run counts it), and how many came from inside a call the test
   * made to the queue on the main thread. */
  GMutex lock;
  GPtrArray *run_threads; /* of GThread, borrowed */
  guint n_run;            /* (atomic) */
  guint n_run_in_call;
  SluiceTaskQueue *fire_from; /* (nullable): run_task fires it from there */
  /* Each call of run_task (R), task_timed_out (T), stop_async (S) and
   * crash (C), in order, with its thread, under @lock. */
  GString *vfuncs;
  GPtrArray *vfunc_threads; /* of GThread, borrowed */
  guint n_timed_out;        /* (atomic) */
  guint n_crashed_atomic;   /* (atomic): n_crashed, for other threads */
  /* The stress test's: each task completed now, later or never, and no
   * call after the crash. */
  gboolean stress;
  gboolean in_run; /* (atomic): in a stress run_task */
};

/* The test's main thread, and whether it is inside a call to the queue. */
static GThread *main_thread;
static gboolean in_queue_call;

static void test_mock_worker_iface_init (SluiceWorkerInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (TestMockWorker,
                               test_mock_worker,
                               G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (SLUICE_TYPE_WORKER,
                                                      test_mock_worker_iface_init))

static char **
mock_get_series (SluiceWorker *worker)
{
  return g_strdupv (TEST_MOCK_WORKER (worker)->series);
}

static guint
mock_get_capacity (SluiceWorker *worker)
{
  return TEST_MOCK_WORKER (worker)->capacity;
}

/* Logs a call of a virtual function, under the lock. */
static void
mock_log_locked (TestMockWorker *self, char vfunc)
{
  g_string_append_c (self->vfuncs, vfunc);
  g_ptr_array_add (self->vfunc_threads, g_thread_self ());
  /* On the hiring (main) thread; nothing after a crash but the cancels of
   * the tasks it held. */
  if (self->stress)
    {
      if (vfunc != 'X')
        g_assert_cmpuint (g_atomic_int_get (&self->n_crashed_atomic), ==, 0);
      g_assert_true (g_thread_self () == main_thread);
    }
}

/* The cancellable of a task it got was cancelled: logged as X. */
static void
mock_task_cancelled_cb (GCancellable *cancellable, gpointer data)
{
  TestMockWorker *self = data;

  g_mutex_lock (&self->lock);
  mock_log_locked (self, 'X');
  g_mutex_unlock (&self->lock);
}

static void
mock_watch_cancellable (TestMockWorker *self, SluiceWorkerTask *task)
{
  g_signal_connect_object (sluice_worker_task_get_cancellable (task), "cancelled",
                           G_CALLBACK (mock_task_cancelled_cb), self, 0);
}

static void mock_stress_run_task (TestMockWorker *self, SluiceWorkerTask *task);

static void
mock_run_task (SluiceWorker *worker, SluiceWorkerTask *task)
{
  TestMockWorker *self = TEST_MOCK_WORKER (worker);

  if (self->stress)
    {
      mock_stress_run_task (self, task);
      return;
    }
  mock_watch_cancellable (self, task);
  g_mutex_lock (&self->lock);
  mock_log_locked (self, 'R');
  g_ptr_array_add (self->held, g_object_ref (task));
  g_ptr_array_add (self->run_threads, g_thread_self ());
  if (g_thread_self () == main_thread && in_queue_call)
    self->n_run_in_call++;
  g_mutex_unlock (&self->lock);
  g_atomic_int_inc (&self->n_run);
  if (self->fire_from != NULL)
    g_assert_true (sluice_task_queue_fire (self->fire_from, worker));
}

static void
mock_stop_async (SluiceWorker *worker,
                 GCancellable *cancellable,
                 GAsyncReadyCallback callback,
                 gpointer user_data)
{
  GTask *task = g_task_new (worker, cancellable, callback, user_data);
  TestMockWorker *self = TEST_MOCK_WORKER (worker);

  g_mutex_lock (&self->lock);
  mock_log_locked (self, 'S');
  g_mutex_unlock (&self->lock);
  self->n_stopped++;
  g_task_return_boolean (task, TRUE);
  g_object_unref (task);
}

static gboolean
mock_stop_finish (SluiceWorker *worker, GAsyncResult *result, GError **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static GPtrArray *
mock_crash (SluiceWorker *worker)
{
  TestMockWorker *self = TEST_MOCK_WORKER (worker);
  GPtrArray *tasks;

  g_mutex_lock (&self->lock);
  mock_log_locked (self, 'C');
  tasks = g_steal_pointer (&self->held);
  self->held = g_ptr_array_new_with_free_func (g_object_unref);
  g_mutex_unlock (&self->lock);
  self->n_crashed++;
  g_atomic_int_inc (&self->n_crashed_atomic);
  return tasks;
}

static void
mock_task_timed_out (SluiceWorker *worker, SluiceWorkerTask *task)
{
  TestMockWorker *self = TEST_MOCK_WORKER (worker);

  g_mutex_lock (&self->lock);
  mock_log_locked (self, 'T');
  g_mutex_unlock (&self->lock);
  g_atomic_int_inc (&self->n_timed_out);
}

static void
test_mock_worker_iface_init (SluiceWorkerInterface *iface)
{
  iface->get_series = mock_get_series;
  iface->get_capacity = mock_get_capacity;
  iface->run_task = mock_run_task;
  iface->stop_async = mock_stop_async;
  iface->stop_finish = mock_stop_finish;
  iface->crash = mock_crash;
  iface->task_timed_out = mock_task_timed_out;
}

static void
test_mock_worker_finalize (GObject *object)
{
  TestMockWorker *self = TEST_MOCK_WORKER (object);

  g_strfreev (self->series);
  g_ptr_array_unref (self->held);
  g_ptr_array_unref (self->run_threads);
  g_string_free (self->vfuncs, TRUE);
  g_ptr_array_unref (self->vfunc_threads);
  g_mutex_clear (&self->lock);
  G_OBJECT_CLASS (test_mock_worker_parent_class)->finalize (object);
}

static void
test_mock_worker_class_init (TestMockWorkerClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = test_mock_worker_finalize;
}

static void
test_mock_worker_init (TestMockWorker *self)
{
  self->held = g_ptr_array_new_with_free_func (g_object_unref);
  self->capacity = 1;
  g_mutex_init (&self->lock);
  self->run_threads = g_ptr_array_new ();
  self->vfuncs = g_string_new (NULL);
  self->vfunc_threads = g_ptr_array_new ();
}

static TestMockWorker *
mock_worker_new (const char *const *series, guint capacity)
{
  TestMockWorker *self = g_object_new (TEST_TYPE_MOCK_WORKER, NULL);

  self->series = g_strdupv ((char **) series);
  self->capacity = capacity;
  return self;
}

/* ---- a minimal worker: run_task only, the interface's defaults else ---- */

#define TEST_TYPE_MINIMAL_WORKER (test_minimal_worker_get_type ())
G_DECLARE_FINAL_TYPE (TestMinimalWorker, test_minimal_worker, TEST, MINIMAL_WORKER, GObject)

struct _TestMinimalWorker
{
  GObject parent_instance;
  GPtrArray *held; /* of SluiceWorkerTask (owned) */
};

static void test_minimal_worker_iface_init (SluiceWorkerInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (TestMinimalWorker,
                               test_minimal_worker,
                               G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (SLUICE_TYPE_WORKER,
                                                      test_minimal_worker_iface_init))

static void
minimal_run_task (SluiceWorker *worker, SluiceWorkerTask *task)
{
  g_ptr_array_add (TEST_MINIMAL_WORKER (worker)->held, g_object_ref (task));
}

static void
test_minimal_worker_iface_init (SluiceWorkerInterface *iface)
{
  iface->run_task = minimal_run_task;
}

static void
test_minimal_worker_finalize (GObject *object)
{
  g_ptr_array_unref (TEST_MINIMAL_WORKER (object)->held);
  G_OBJECT_CLASS (test_minimal_worker_parent_class)->finalize (object);
}

static void
test_minimal_worker_class_init (TestMinimalWorkerClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = test_minimal_worker_finalize;
}

static void
test_minimal_worker_init (TestMinimalWorker *self)
{
  self->held = g_ptr_array_new_with_free_func (g_object_unref);
}

/* ---- ports of AsynQueue's tests ------------------------------------------- */

/* test_tasks.py, TestTask.test_priorityOtherTask (tasks order by
 * priority), TestTaskHandlerRun.test_oneWorker: with one thread busy, calls queued at several
 * priorities run most urgent first, and equal ones in the order they were made. */
static void
test_priority_order (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  Log *log = log_new ();
  SluiceThreadWorker *worker = thread_worker_new (NULL, 1, log);
  const int priorities[] = { 5, -3, 0, 5, -3, 10, 0, -3 };
  const gint32 expected[] = { 1, 4, 7, 2, 6, 0, 3, 5 };
  CallResult gate = { 0 }, r[G_N_ELEMENTS (priorities)] = { { 0 } };

  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  call (queue, NULL, "gate", NULL, G_PRIORITY_DEFAULT, &gate);
  WAIT_UNTIL (log_waiting (log) == 1);
  for (guint i = 0; i < G_N_ELEMENTS (priorities); i++)
    call_record (queue, NULL, (gint32) i, priorities[i], &r[i]);
  log_open (log);
  for (guint i = 0; i < G_N_ELEMENTS (priorities); i++)
    {
      WAIT_UNTIL (r[i].n_completed == 1);
      g_assert_cmpint (result_int (&r[i]), ==, 2 * (gint32) i);
      call_result_clear (&r[i]);
    }
  g_assert_cmpuint (log->ran->len, ==, G_N_ELEMENTS (expected));
  for (guint i = 0; i < G_N_ELEMENTS (expected); i++)
    g_assert_cmpint (g_array_index (log->ran, gint32, i), ==, expected[i]);
  g_assert_cmpuint (gate.n_completed, ==, 1);
  g_assert_no_error (gate.error);
  call_result_clear (&gate);

  shutdown_and_wait (queue, FALSE);
  g_object_unref (worker);
  g_object_unref (queue);
  log_free (log);
}

/* test_tasks.py, TestTaskHandlerHiring.test_hireClassQualifications and
 * test_hireInstanceQualifications, TestTaskHandlerRun.test_multipleWorkers:
 * a call of a series runs only on a worker qualified for it; default calls
 * run on any. */
static void
test_series_assignment (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  Log *log_a = log_new (), *log_b = log_new ();
  const char *series_a[] = { "a", NULL }, *series_b[] = { "b", "c", NULL };
  SluiceThreadWorker *wa = thread_worker_new (series_a, 1, log_a);
  SluiceThreadWorker *wb = thread_worker_new (series_b, 1, log_b);
  CallResult r[30] = { { 0 } };
  guint n_default_a = 0;

  sluice_task_queue_hire (queue, SLUICE_WORKER (wa));
  sluice_task_queue_hire (queue, SLUICE_WORKER (wb));
  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    {
      const char *series = i % 3 == 0 ? "a" : i % 3 == 1 ? (i % 2 ? "b" : "c") : NULL;

      call_record (queue, series, (gint32) i, G_PRIORITY_DEFAULT, &r[i]);
    }
  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    {
      WAIT_UNTIL (r[i].n_completed == 1);
      g_assert_cmpint (result_int (&r[i]), ==, 2 * (gint32) i);
      call_result_clear (&r[i]);
    }
  for (guint i = 0; i < log_a->ran->len; i++)
    {
      gint32 n = g_array_index (log_a->ran, gint32, i);

      g_assert_cmpint (n % 3, !=, 1);
      n_default_a += n % 3 == 2;
    }
  for (guint i = 0; i < log_b->ran->len; i++)
    g_assert_cmpint (g_array_index (log_b->ran, gint32, i) % 3, !=, 0);
  g_assert_cmpuint (log_a->ran->len + log_b->ran->len, ==, G_N_ELEMENTS (r));
  g_test_message ("default calls on worker a: %u of 10", n_default_a);

  shutdown_and_wait (queue, FALSE);
  g_object_unref (wa);
  g_object_unref (wb);
  g_object_unref (queue);
  log_free (log_a);
  log_free (log_b);
}

/* IWorker.setResignator, test_tasks.py
 * TestTaskHandlerHiring.test_terminateAfterTimeout (a terminated worker's
 * unfinished task comes back, not done): a worker that resigns hands its
 * unfinished tasks back; they run on another worker, in their
 * order. */
static void
test_resign_hands_back (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  Log *log = log_new ();
  TestMockWorker *mock = mock_worker_new (NULL, 3);
  SluiceThreadWorker *worker;
  SluiceWorkerTask *taken_back;
  GError *why = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED, "lost");
  CallResult r[5] = { { 0 } };

  sluice_task_queue_hire (queue, SLUICE_WORKER (mock));
  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    call_record (queue, NULL, (gint32) i, G_PRIORITY_DEFAULT, &r[i]);
  WAIT_UNTIL (mock->held->len == 3);
  g_assert_cmpuint (sluice_task_queue_get_n_calls (queue), ==, 5);

  worker = thread_worker_new (NULL, 1, log);
  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  /* The thread worker took the two the mock did not hold. */
  WAIT_UNTIL (r[3].n_completed == 1 && r[4].n_completed == 1);
  g_assert_cmpuint (r[0].n_completed, ==, 0);

  taken_back = g_object_ref (mock->held->pdata[0]);
  sluice_worker_resign (SLUICE_WORKER (mock), why);
  g_error_free (why);
  g_assert_cmpuint (mock->n_crashed, ==, 1);
  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    {
      WAIT_UNTIL (r[i].n_completed == 1);
      g_assert_cmpint (result_int (&r[i]), ==, 2 * (gint32) i);
      call_result_clear (&r[i]);
    }
  /* The handed back ones ran in their order. */
  g_assert_cmpuint (log->ran->len, ==, 5);
  for (guint i = 0; i < 3; i++)
    g_assert_cmpint (g_array_index (log->ran, gint32, 2 + i), ==, (gint32) i);
  /* Completing a task taken back has no effect. */
  g_assert_false (sluice_worker_task_is_wanted (taken_back));
  g_assert_true (g_cancellable_is_cancelled (sluice_worker_task_get_cancellable (taken_back)));
  sluice_worker_task_return_value (taken_back, g_variant_new ("(i)", -1));
  g_object_unref (taken_back);
  for (guint i = 0; i < 10; i++)
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpuint (r[0].n_completed, ==, 1);

  shutdown_and_wait (queue, FALSE);
  g_assert_cmpuint (mock->n_stopped, ==, 0); /* fired: not stopped by the shutdown */
  g_object_unref (mock);
  g_object_unref (worker);
  g_object_unref (queue);
  log_free (log);
}

/* test_tasks.py, TestTaskHandlerHiring.test_terminateByCrashing: crashing
 * a worker returns the tasks it had not finished; firing it puts them back in the queue at their
 * old place. A thread worker returns the task in its function too, whose later result is dropped.
 */
static void
test_crash_returns_unfinished (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  Log *log = log_new (), *log2 = log_new ();
  SluiceThreadWorker *worker = thread_worker_new (NULL, 1, log);
  SluiceThreadWorker *second;
  CallResult gate = { 0 }, r[3] = { { 0 } };

  /* A one-thread worker of capacity 1 holds the gate call. */
  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  call (queue, NULL, "gate", NULL, G_PRIORITY_DEFAULT, &gate);
  WAIT_UNTIL (log_waiting (log) == 1);
  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    call_record (queue, NULL, (gint32) i, G_PRIORITY_DEFAULT, &r[i]);

  g_assert_true (sluice_task_queue_fire (queue, SLUICE_WORKER (worker)));
  g_assert_false (sluice_task_queue_fire (queue, SLUICE_WORKER (worker)));
  /* The gate call went back: its function saw its cancellable cancelled. */
  WAIT_UNTIL (log_waiting (log) == 0);
  g_assert_cmpuint (gate.n_completed, ==, 0);

  /* The crash returned it; the next worker runs it, first. */
  second = thread_worker_new (NULL, 1, log2);
  sluice_task_queue_hire (queue, SLUICE_WORKER (second));
  WAIT_UNTIL (log_waiting (log2) == 1);
  log_open (log2);
  WAIT_UNTIL (gate.n_completed == 1);
  g_assert_no_error (gate.error);
  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    {
      WAIT_UNTIL (r[i].n_completed == 1);
      g_assert_cmpint (result_int (&r[i]), ==, 2 * (gint32) i);
      call_result_clear (&r[i]);
    }
  g_assert_cmpuint (log->ran->len, ==, 0);
  call_result_clear (&gate);

  shutdown_and_wait (queue, FALSE);
  g_object_unref (worker);
  g_object_unref (second);
  g_object_unref (queue);
  log_free (log);
  log_free (log2);
}

/* A worker that implements only run_task (as GJS must: it cannot
 * implement stop_async, which takes a callback) gets the interface's
 * defaults: capacity 1, no series, a crash that returns nothing (the queue
 * takes back what it holds anyway: the call runs on the next worker) and a
 * stop that completes at once. */
static void
test_interface_defaults (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  TestMinimalWorker *minimal = g_object_new (TEST_TYPE_MINIMAL_WORKER, NULL);
  TestMinimalWorker *second = g_object_new (TEST_TYPE_MINIMAL_WORKER, NULL);
  SluiceThreadWorker *worker;
  Log *log = log_new ();
  CallResult r[2] = { { 0 } };
  GPtrArray *crashed;
  char **series;

  g_assert_cmpuint (sluice_worker_get_capacity (SLUICE_WORKER (minimal)), ==, 1);
  series = sluice_worker_get_series (SLUICE_WORKER (minimal));
  g_assert_null (series);
  crashed = sluice_worker_crash (SLUICE_WORKER (minimal));
  g_assert_cmpuint (crashed->len, ==, 0);
  g_ptr_array_unref (crashed);

  sluice_task_queue_hire (queue, SLUICE_WORKER (minimal));
  call_record (queue, NULL, 7, G_PRIORITY_DEFAULT, &r[0]);
  WAIT_UNTIL (minimal->held->len == 1);
  g_assert_true (sluice_task_queue_fire (queue, SLUICE_WORKER (minimal)));
  g_assert_false (sluice_worker_task_is_wanted (minimal->held->pdata[0]));
  /* Taken back although the crash returned nothing: it runs on the next. */
  worker = thread_worker_new (NULL, 1, log);
  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  WAIT_UNTIL (r[0].n_completed == 1);
  g_assert_cmpint (result_int (&r[0]), ==, 14);
  call_result_clear (&r[0]);

  /* The default stop: the shutdown waits for the held call, then stops it. */
  g_assert_true (sluice_task_queue_fire (queue, SLUICE_WORKER (worker)));
  sluice_task_queue_hire (queue, SLUICE_WORKER (second));
  call_record (queue, NULL, 8, G_PRIORITY_DEFAULT, &r[1]);
  WAIT_UNTIL (second->held->len == 1);
  sluice_worker_task_return_value (second->held->pdata[0], g_variant_new ("(i)", 16));
  shutdown_and_wait (queue, FALSE);
  g_assert_cmpuint (r[1].n_completed, ==, 1);
  g_assert_cmpint (result_int (&r[1]), ==, 16);
  call_result_clear (&r[1]);

  g_object_unref (worker);
  g_object_unref (second);
  g_object_unref (minimal);
  g_object_unref (queue);
  log_free (log);
}

/* Crash itself (test_tasks.py, test_terminateByCrashing's value=[task];
 * IWorker.crash returns the uncompleted tasks): the tasks a mock held,
 * transfer full. */
static void
test_crash_list (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  TestMockWorker *mock = mock_worker_new (NULL, 2);
  CallResult r[2] = { { 0 } };
  GPtrArray *tasks;

  sluice_task_queue_hire (queue, SLUICE_WORKER (mock));
  call_record (queue, NULL, 7, G_PRIORITY_DEFAULT, &r[0]);
  call_record (queue, NULL, 8, G_PRIORITY_DEFAULT, &r[1]);
  WAIT_UNTIL (mock->held->len == 2);
  g_assert_cmpstr (sluice_worker_task_get_name (mock->held->pdata[0]), ==, "record");
  g_assert_cmpuint (sluice_worker_task_get_sequence (mock->held->pdata[0]), <,
                    sluice_worker_task_get_sequence (mock->held->pdata[1]));

  tasks = sluice_worker_crash (SLUICE_WORKER (mock));
  g_assert_cmpuint (tasks->len, ==, 2);
  /* Still hired: the worker completes them (a crashed mock still can). */
  sluice_worker_task_return_value (tasks->pdata[1], g_variant_new ("(i)", 80));
  sluice_worker_task_return_value (tasks->pdata[0], g_variant_new ("(i)", 70));
  g_ptr_array_unref (tasks);
  WAIT_UNTIL (r[0].n_completed == 1 && r[1].n_completed == 1);
  g_assert_cmpint (result_int (&r[0]), ==, 70);
  g_assert_cmpint (result_int (&r[1]), ==, 80);
  call_result_clear (&r[0]);
  call_result_clear (&r[1]);

  shutdown_and_wait (queue, FALSE);
  g_assert_cmpuint (mock->n_stopped, ==, 1);
  g_object_unref (mock);
  g_object_unref (queue);
}

static void
stop_done_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
  DoneFlag *d = user_data;

  d->ok = sluice_worker_stop_finish (SLUICE_WORKER (source), res, NULL);
  d->n_completed++;
}

/* test_tasks.py, TestTaskHandlerHiring.test_terminateGracefully;
 * test_workers.py, TestThreadWorker.test_stop and test_shutdown: stopping a
 * worker waits for the tasks it holds; the queue's shutdown (draining)
 * waits for the queued calls too. */
static void
test_stop_waits_for_pending (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  Log *log = log_new ();
  SluiceThreadWorker *worker = thread_worker_new (NULL, 2, log);
  CallResult gate[2] = { { 0 } }, r[4] = { { 0 } };
  DoneFlag shut = { 0 }, stop = { 0 };
  GSource *tick = g_timeout_source_new (5);

  g_source_set_callback (tick, tick_cb, NULL, NULL);
  g_source_attach (tick, NULL);
  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  call (queue, NULL, "gate", NULL, G_PRIORITY_DEFAULT, &gate[0]);
  call (queue, NULL, "gate", NULL, G_PRIORITY_DEFAULT, &gate[1]);
  WAIT_UNTIL (log_waiting (log) == 2);
  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    call_record (queue, NULL, (gint32) i, G_PRIORITY_DEFAULT, &r[i]);

  sluice_task_queue_shutdown_async (queue, FALSE, NULL, shutdown_done_cb, &shut);
  for (guint i = 0; i < 20; i++)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (shut.n_completed, ==, 0);
  g_assert_cmpuint (r[0].n_completed, ==, 0);

  log_open (log);
  WAIT_UNTIL (shut.n_completed == 1);
  g_assert_true (shut.ok);
  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    {
      g_assert_cmpuint (r[i].n_completed, ==, 1);
      g_assert_cmpint (result_int (&r[i]), ==, 2 * (gint32) i);
      call_result_clear (&r[i]);
    }
  call_result_clear (&gate[0]);
  call_result_clear (&gate[1]);

  /* The worker was stopped by the shutdown: it gives new tasks back. A
   * second stop completes at once. */
  sluice_worker_stop_async (SLUICE_WORKER (worker), NULL, stop_done_cb, &stop);
  WAIT_UNTIL (stop.n_completed == 1);
  g_assert_true (stop.ok);

  g_source_destroy (tick);
  g_source_unref (tick);
  g_object_unref (worker);
  g_object_unref (queue);
  log_free (log);
}

/* A thread worker on its own: stop_async completes only once its tasks
 * are done. */
static void
test_thread_worker_stop (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  Log *log = log_new ();
  SluiceThreadWorker *worker = thread_worker_new (NULL, 1, log);
  CallResult gate = { 0 };
  DoneFlag stop = { 0 };

  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  call (queue, NULL, "gate", NULL, G_PRIORITY_DEFAULT, &gate);
  WAIT_UNTIL (log_waiting (log) == 1);
  sluice_worker_stop_async (SLUICE_WORKER (worker), NULL, stop_done_cb, &stop);
  for (guint i = 0; i < 10; i++)
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpuint (stop.n_completed, ==, 0);
  log_open (log);
  WAIT_UNTIL (stop.n_completed == 1 && gate.n_completed == 1);
  g_assert_true (stop.ok);
  g_assert_no_error (gate.error);
  call_result_clear (&gate);

  g_assert_true (sluice_task_queue_fire (queue, SLUICE_WORKER (worker)));
  shutdown_and_wait (queue, FALSE);
  g_object_unref (worker);
  g_object_unref (queue);
  log_free (log);
}

/* ---- AsynQueue's defects -------------------------------------------------- */

/* AsynQueue blocks its whole queue on a task whose series no worker
 * serves. Here it waits, others run past it, and it runs once a qualified
 * worker is hired. */
static void
test_defect_unserved_series (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  Log *log = log_new (), *log_x = log_new ();
  const char *series_x[] = { "x", NULL };
  SluiceThreadWorker *worker = thread_worker_new (NULL, 1, log);
  SluiceThreadWorker *worker_x;
  CallResult unserved = { 0 }, r[5] = { { 0 } };

  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  /* Most urgent and first: still not in the way. */
  call_record (queue, "x", 100, G_PRIORITY_HIGH, &unserved);
  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    call_record (queue, NULL, (gint32) i, G_PRIORITY_LOW, &r[i]);
  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    {
      WAIT_UNTIL (r[i].n_completed == 1);
      g_assert_cmpint (result_int (&r[i]), ==, 2 * (gint32) i);
      call_result_clear (&r[i]);
    }
  g_assert_cmpuint (unserved.n_completed, ==, 0);
  g_assert_cmpuint (sluice_task_queue_get_n_calls (queue), ==, 1);

  worker_x = thread_worker_new (series_x, 1, log_x);
  sluice_task_queue_hire (queue, SLUICE_WORKER (worker_x));
  WAIT_UNTIL (unserved.n_completed == 1);
  g_assert_cmpint (result_int (&unserved), ==, 200);
  g_assert_cmpuint (log_len (log_x), ==, 1);
  call_result_clear (&unserved);

  shutdown_and_wait (queue, FALSE);
  g_object_unref (worker);
  g_object_unref (worker_x);
  g_object_unref (queue);
  log_free (log);
  log_free (log_x);
}

/* AsynQueue's shutdown hangs with tasks queued. Here it completes in both
 * modes: draining runs what a worker serves and fails the rest with
 * SLUICE_ERROR_NO_WORKER; cancelling fails the queued ones with
 * G_IO_ERROR_CANCELLED. A queue with no worker at all completes too. */
static void
test_defect_shutdown_with_queued (gconstpointer data)
{
  gboolean cancel_pending = GPOINTER_TO_INT (data);
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  SluiceTaskQueue *empty = sluice_task_queue_new (1);
  Log *log = log_new ();
  SluiceThreadWorker *worker = thread_worker_new (NULL, 1, log);
  CallResult gate = { 0 }, unserved = { 0 }, lonely = { 0 }, late = { 0 }, r[4] = { { 0 } };
  DoneFlag shut = { 0 };

  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  call (queue, NULL, "gate", NULL, G_PRIORITY_DEFAULT, &gate);
  WAIT_UNTIL (log_waiting (log) == 1);
  call_record (queue, "nobody", 99, G_PRIORITY_DEFAULT, &unserved);
  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    call_record (queue, NULL, (gint32) i, G_PRIORITY_DEFAULT, &r[i]);

  sluice_task_queue_shutdown_async (queue, cancel_pending, NULL, shutdown_done_cb, &shut);
  WAIT_UNTIL (unserved.n_completed == 1);
  if (cancel_pending)
    g_assert_error (unserved.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  else
    g_assert_error (unserved.error, SLUICE_ERROR, SLUICE_ERROR_NO_WORKER);
  call_result_clear (&unserved);
  /* New calls are refused. */
  call_record (queue, NULL, 5, G_PRIORITY_DEFAULT, &late);
  WAIT_UNTIL (late.n_completed == 1);
  g_assert_error (late.error, SLUICE_ERROR, SLUICE_ERROR_STOPPED);
  call_result_clear (&late);

  log_open (log);
  WAIT_UNTIL (shut.n_completed == 1);
  g_assert_true (shut.ok);
  g_assert_cmpuint (gate.n_completed, ==, 1);
  g_assert_no_error (gate.error);
  call_result_clear (&gate);
  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    {
      g_assert_cmpuint (r[i].n_completed, ==, 1);
      if (cancel_pending)
        g_assert_error (r[i].error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
      else
        g_assert_cmpint (result_int (&r[i]), ==, 2 * (gint32) i);
      call_result_clear (&r[i]);
    }

  /* No worker ever: the call fails, the shutdown completes. */
  call_record (empty, NULL, 1, G_PRIORITY_DEFAULT, &lonely);
  shutdown_and_wait (empty, cancel_pending);
  g_assert_cmpuint (lonely.n_completed, ==, 1);
  if (cancel_pending)
    g_assert_error (lonely.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  else
    g_assert_error (lonely.error, SLUICE_ERROR, SLUICE_ERROR_NO_WORKER);
  call_result_clear (&lonely);

  g_object_unref (worker);
  g_object_unref (queue);
  g_object_unref (empty);
  log_free (log);
}

/* AsynQueue runs tasks of equal priority in no defined order. Here they
 * run in the order they were made, also after going back to the queue. */
static void
test_defect_equal_priority_fifo (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  Log *log = log_new ();
  TestMockWorker *mock = mock_worker_new (NULL, 4);
  SluiceThreadWorker *worker;
  guint n = sluice_test_scale (2000, 10);
  CallResult *r = g_new0 (CallResult, n);

  /* The mock takes the first four, then gives them back by crashing. */
  sluice_task_queue_hire (queue, SLUICE_WORKER (mock));
  for (guint i = 0; i < n; i++)
    call_record (queue, NULL, (gint32) i, G_PRIORITY_DEFAULT, &r[i]);
  WAIT_UNTIL (mock->held->len == 4);
  g_assert_true (sluice_task_queue_fire (queue, SLUICE_WORKER (mock)));

  worker = thread_worker_new (NULL, 1, log);
  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  WAIT_UNTIL (r[n - 1].n_completed == 1);
  g_assert_cmpuint (log->ran->len, ==, n);
  for (guint i = 0; i < n; i++)
    {
      g_assert_cmpint (g_array_index (log->ran, gint32, i), ==, (gint32) i);
      g_assert_cmpuint (r[i].n_completed, ==, 1);
      call_result_clear (&r[i]);
    }

  shutdown_and_wait (queue, FALSE);
  g_free (r);
  g_object_unref (mock);
  g_object_unref (worker);
  g_object_unref (queue);
  log_free (log);
}

/* ---- the rest of named calls ------------------------------------------------ */

/* A one-thread worker runs every call in the same thread, never in one of
 * the queue's. */
static void
test_thread_affinity (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (2);
  Log *log = log_new ();
  SluiceThreadWorker *worker = thread_worker_new (NULL, 1, log);
  CallResult r[50] = { { 0 } };

  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    call_record (queue, NULL, (gint32) i, G_PRIORITY_DEFAULT, &r[i]);
  WAIT_UNTIL (r[G_N_ELEMENTS (r) - 1].n_completed == 1);
  for (guint i = 0; i < G_N_ELEMENTS (r); i++)
    {
      g_assert_true (log->threads->pdata[i] == log->threads->pdata[0]);
      g_assert_true (log->threads->pdata[i] != g_thread_self ());
      call_result_clear (&r[i]);
    }
  shutdown_and_wait (queue, FALSE);
  g_object_unref (worker);
  g_object_unref (queue);
  log_free (log);
}

/* Errors: the function's own (domain and code kept), an unknown name,
 * arguments of the wrong type. */
static void
test_call_errors (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  Log *log = log_new ();
  SluiceThreadWorker *worker = thread_worker_new (NULL, 1, log);
  CallResult failed = { 0 }, unknown = { 0 }, bad_args = { 0 }, ok = { 0 };

  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  call (queue, NULL, "fail", NULL, G_PRIORITY_DEFAULT, &failed);
  call (queue, NULL, "no-such-function", NULL, G_PRIORITY_DEFAULT, &unknown);
  call (queue, NULL, "record", g_variant_new ("(s)", "seven"), G_PRIORITY_DEFAULT, &bad_args);
  call_record (queue, NULL, 3, G_PRIORITY_DEFAULT, &ok);
  WAIT_UNTIL (ok.n_completed == 1);
  g_assert_error (failed.error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
  g_assert_cmpstr (failed.error->message, ==, "denied");
  g_assert_error (unknown.error, SLUICE_ERROR, SLUICE_ERROR_UNKNOWN_FUNCTION);
  g_assert_nonnull (strstr (unknown.error->message, "no-such-function"));
  g_assert_error (bad_args.error, SLUICE_ERROR, SLUICE_ERROR_INVALID_ARGUMENTS);
  g_assert_nonnull (strstr (bad_args.error->message, "(i)"));
  g_assert_nonnull (strstr (bad_args.error->message, "(s)"));
  g_assert_cmpint (result_int (&ok), ==, 6);
  call_result_clear (&failed);
  call_result_clear (&unknown);
  call_result_clear (&bad_args);
  call_result_clear (&ok);

  shutdown_and_wait (queue, FALSE);
  g_object_unref (worker);
  g_object_unref (queue);
  log_free (log);
}

/* A call past its timeout fails with G_IO_ERROR_TIMED_OUT and its
 * function's cancellable is cancelled; the worker then takes the next. */
static void
test_timeout (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  Log *log = log_new ();
  SluiceThreadWorker *worker = thread_worker_new (NULL, 1, log);
  CallResult stuck = { 0 }, next = { 0 };

  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  sluice_task_queue_call_async (queue, NULL, "gate", NULL, G_PRIORITY_DEFAULT, 50, NULL,
                                call_done_cb, &stuck);
  call_record (queue, NULL, 4, G_PRIORITY_DEFAULT, &next);
  WAIT_UNTIL (stuck.n_completed == 1);
  g_assert_error (stuck.error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  WAIT_UNTIL (next.n_completed == 1);
  g_assert_cmpint (result_int (&next), ==, 8);
  g_assert_cmpuint (log_waiting (log), ==, 0);
  call_result_clear (&stuck);
  call_result_clear (&next);

  shutdown_and_wait (queue, FALSE);
  g_object_unref (worker);
  g_object_unref (queue);
  log_free (log);
}

/* Calls that complete together return together, from their callers'
 * contexts: in the order they completed (whatever the order they were
 * made), never from inside the completion, each on the thread that made
 * it. Two threads make calls with their own thread-default contexts; the
 * test completes them, shuffled, from the main thread. */
#define N_RETURN_THREADS 2
#define N_RETURN_CALLS 16

typedef struct
{
  SluiceTaskQueue *queue;
  GMainContext *context;
  GThread *thread;
  gint32 first;        /* its calls are first, first + 1, ... */
  GAsyncQueue *log;    /* of call numbers + 1, in the order they returned */
  gint n_made;         /* (atomic) */
  gint n_returned;     /* (atomic) */
  gint n_wrong_thread; /* (atomic) */
  gint quit;           /* (atomic) */
} ReturnThread;

static void
return_order_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
  ReturnThread *rt = user_data;
  GError *error = NULL;
  GVariant *result = sluice_task_queue_call_finish (SLUICE_TASK_QUEUE (source), res, &error);
  gint32 n;

  g_assert_no_error (error);
  g_variant_get (result, "(i)", &n);
  g_variant_unref (result);
  if (g_thread_self () != rt->thread || !g_main_context_is_owner (rt->context))
    g_atomic_int_inc (&rt->n_wrong_thread);
  g_async_queue_push (rt->log, GINT_TO_POINTER (n + 1));
  g_atomic_int_inc (&rt->n_returned);
}

static gpointer
return_thread_func (gpointer data)
{
  ReturnThread *rt = data;

  g_main_context_push_thread_default (rt->context);
  for (gint32 i = 0; i < N_RETURN_CALLS; i++)
    sluice_task_queue_call_async (rt->queue, NULL, "record", g_variant_new ("(i)", rt->first + i),
                                  G_PRIORITY_DEFAULT, 0, NULL, return_order_cb, rt);
  g_atomic_int_set (&rt->n_made, N_RETURN_CALLS);
  while (!g_atomic_int_get (&rt->quit))
    g_main_context_iteration (rt->context, TRUE);
  g_main_context_pop_thread_default (rt->context);
  return NULL;
}

static gint32
task_int (SluiceWorkerTask *task)
{
  gint32 n;

  g_variant_get (sluice_worker_task_get_args (task), "(i)", &n);
  return n;
}

static void
test_returns_in_completion_order (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  TestMockWorker *mock = mock_worker_new (NULL, N_RETURN_THREADS * N_RETURN_CALLS);
  ReturnThread rt[N_RETURN_THREADS];
  GPtrArray *held;

  sluice_task_queue_hire (queue, SLUICE_WORKER (mock));
  for (guint t = 0; t < N_RETURN_THREADS; t++)
    {
      memset (&rt[t], 0, sizeof rt[t]);
      rt[t].queue = queue;
      rt[t].first = (gint32) (1000 * t);
      rt[t].context = g_main_context_new ();
      rt[t].log = g_async_queue_new ();
      rt[t].thread = g_thread_new ("returns", return_thread_func, &rt[t]);
    }
  for (guint t = 0; t < N_RETURN_THREADS; t++)
    WAIT_UNTIL (g_atomic_int_get (&rt[t].n_made) == N_RETURN_CALLS);
  WAIT_UNTIL (mock->held->len == N_RETURN_THREADS * N_RETURN_CALLS);

  /* All completed, in a random order, from this thread. */
  held = g_steal_pointer (&mock->held);
  mock->held = g_ptr_array_new_with_free_func (g_object_unref);
  for (guint i = held->len; i > 1; i--)
    {
      guint j = (guint) g_random_int_range (0, (gint32) i);
      gpointer tmp = held->pdata[i - 1];

      held->pdata[i - 1] = held->pdata[j];
      held->pdata[j] = tmp;
    }
  for (guint i = 0; i < held->len; i++)
    {
      SluiceWorkerTask *task = held->pdata[i];

      sluice_worker_task_return_value (task, g_variant_new ("(i)", task_int (task)));
    }

  for (guint t = 0; t < N_RETURN_THREADS; t++)
    {
      WAIT_UNTIL (g_atomic_int_get (&rt[t].n_returned) == N_RETURN_CALLS);
      g_assert_cmpint (g_atomic_int_get (&rt[t].n_wrong_thread), ==, 0);
      /* Its calls, in the order they were completed. */
      for (guint i = 0; i < held->len; i++)
        {
          gint32 n = task_int (held->pdata[i]);

          if (n / 1000 == (gint32) t)
            g_assert_cmpint (GPOINTER_TO_INT (g_async_queue_pop (rt[t].log)) - 1, ==, n);
        }
      g_assert_cmpint (g_async_queue_length (rt[t].log), ==, 0);
      g_atomic_int_set (&rt[t].quit, TRUE);
      g_main_context_wakeup (rt[t].context);
      g_thread_join (rt[t].thread);
      g_async_queue_unref (rt[t].log);
      g_main_context_unref (rt[t].context);
    }
  g_ptr_array_unref (held);

  shutdown_and_wait (queue, FALSE);
  g_object_unref (mock);
  g_object_unref (queue);
}

/* Issue 16 (review /review/nested-loop): the callback of a call that
 * iterates its context (a nested main loop) sees the calls completed after
 * it in the same batch return there, in the order they completed. */
#define N_NESTED_CALLS 3

static GArray *nested_log; /* of int: call i returning, -i its nested loop done */

static void
nested_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
  GError *error = NULL;
  GVariant *v = sluice_task_queue_call_finish (SLUICE_TASK_QUEUE (source), res, &error);
  int id = GPOINTER_TO_INT (user_data);
  gint32 value;

  g_assert_no_error (error);
  g_assert_true (g_variant_is_of_type (v, G_VARIANT_TYPE ("(i)")));
  g_variant_get (v, "(i)", &value);
  g_assert_cmpint (value, ==, id);
  g_variant_unref (v);
  g_array_append_val (nested_log, id);
  if (id == 1)
    {
      /* Waits for the last call of its batch. */
      WAIT_UNTIL (nested_log->len == N_NESTED_CALLS);
      id = -1;
      g_array_append_val (nested_log, id);
    }
}

static void
test_nested_loop_in_callback (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  TestMockWorker *mock = mock_worker_new (NULL, N_NESTED_CALLS);
  const int expected[] = { 1, 2, 3, -1 };

  nested_log = g_array_new (FALSE, FALSE, sizeof (int));
  sluice_task_queue_hire (queue, SLUICE_WORKER (mock));
  for (int id = 1; id <= N_NESTED_CALLS; id++)
    sluice_task_queue_call_async (queue, NULL, "f", g_variant_new ("(i)", id), G_PRIORITY_DEFAULT,
                                  0, NULL, nested_cb, GINT_TO_POINTER (id));
  WAIT_UNTIL (mock->held->len == N_NESTED_CALLS);
  /* All complete, in order, before the main loop runs again: one batch. */
  for (int want = 1; want <= N_NESTED_CALLS; want++)
    for (guint i = 0; i < mock->held->len; i++)
      if (task_int (mock->held->pdata[i]) == want)
        sluice_worker_task_return_value (mock->held->pdata[i], g_variant_new ("(i)", want));
  WAIT_UNTIL (nested_log->len == G_N_ELEMENTS (expected));
  for (guint i = 0; i < G_N_ELEMENTS (expected); i++)
    g_assert_cmpint (g_array_index (nested_log, int, i), ==, expected[i]);

  g_array_unref (nested_log);
  g_ptr_array_set_size (mock->held, 0);
  shutdown_and_wait (queue, FALSE);
  g_object_unref (mock);
  g_object_unref (queue);
}

/* Issue 16 (review /review/cancel-order): a call cancelled (the
 * cancellation decided), then another completed, before the calls return:
 * the cancelled one returns first (GTask would defer a task whose
 * cancellable is cancelled to an idle of its own). */
static GArray *cancel_order_log; /* of int */

static void
cancel_order_cb (GObject *source, GAsyncResult *res, gpointer user_data)
{
  GError *error = NULL;
  GVariant *v = sluice_task_queue_call_finish (SLUICE_TASK_QUEUE (source), res, &error);
  int id = GPOINTER_TO_INT (user_data);

  if (id == 1)
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  else
    g_assert_no_error (error);
  g_assert_true ((v == NULL) == (id == 1));
  g_clear_pointer (&v, g_variant_unref);
  g_clear_error (&error);
  g_array_append_val (cancel_order_log, id);
}

static void
test_cancelled_returns_in_order (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  TestMockWorker *mock = mock_worker_new (NULL, 2);
  GCancellable *cancellable = g_cancellable_new ();
  GCancellable *first = NULL;

  cancel_order_log = g_array_new (FALSE, FALSE, sizeof (int));
  sluice_task_queue_hire (queue, SLUICE_WORKER (mock));
  sluice_task_queue_call_async (queue, NULL, "f", g_variant_new ("(i)", 1), G_PRIORITY_DEFAULT, 0,
                                cancellable, cancel_order_cb, GINT_TO_POINTER (1));
  sluice_task_queue_call_async (queue, NULL, "f", g_variant_new ("(i)", 2), G_PRIORITY_DEFAULT, 0,
                                NULL, cancel_order_cb, GINT_TO_POINTER (2));
  WAIT_UNTIL (mock->held->len == 2);
  for (guint i = 0; i < mock->held->len; i++)
    if (task_int (mock->held->pdata[i]) == 1)
      first = sluice_worker_task_get_cancellable (mock->held->pdata[i]);
  g_cancellable_cancel (cancellable);
  /* The cancellation's source runs (one iteration): it cancels the
   * worker's task, and call 1 waits to return, from a returner that runs
   * in the next iteration. */
  WAIT_UNTIL (g_cancellable_is_cancelled (first));
  for (guint i = 0; i < mock->held->len; i++)
    if (task_int (mock->held->pdata[i]) == 2)
      sluice_worker_task_return_value (mock->held->pdata[i], g_variant_new ("(i)", 2));
  WAIT_UNTIL (cancel_order_log->len == 2);
  g_assert_cmpint (g_array_index (cancel_order_log, int, 0), ==, 1);
  g_assert_cmpint (g_array_index (cancel_order_log, int, 1), ==, 2);

  g_array_unref (cancel_order_log);
  g_object_unref (cancellable);
  /* The worker gives up the cancelled call too. */
  for (guint i = 0; i < mock->held->len; i++)
    if (task_int (mock->held->pdata[i]) == 1)
      sluice_worker_task_return_value (mock->held->pdata[i], g_variant_new ("(i)", 1));
  g_ptr_array_set_size (mock->held, 0);
  shutdown_and_wait (queue, FALSE);
  g_object_unref (mock);
  g_object_unref (queue);
}

/* Cancelling: a queued call fails at once; a running one fails at once and
 * its function sees its cancellable cancelled. Callbacks never come from
 * inside the cancel. */
static void
test_cancel (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  Log *log = log_new ();
  SluiceThreadWorker *worker = thread_worker_new (NULL, 1, log);
  GCancellable *c_running = g_cancellable_new (), *c_queued = g_cancellable_new ();
  CallResult running = { 0 }, queued = { 0 }, next = { 0 };

  sluice_task_queue_hire (queue, SLUICE_WORKER (worker));
  sluice_task_queue_call_async (queue, NULL, "gate", NULL, G_PRIORITY_DEFAULT, 0, c_running,
                                call_done_cb, &running);
  sluice_task_queue_call_async (queue, NULL, "record", g_variant_new ("(i)", 1), G_PRIORITY_DEFAULT,
                                0, c_queued, call_done_cb, &queued);
  call_record (queue, NULL, 2, G_PRIORITY_DEFAULT, &next);
  WAIT_UNTIL (log_waiting (log) == 1);

  g_cancellable_cancel (c_queued);
  g_assert_cmpuint (queued.n_completed, ==, 0);
  WAIT_UNTIL (queued.n_completed == 1);
  g_assert_error (queued.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);

  g_cancellable_cancel (c_running);
  g_assert_cmpuint (running.n_completed, ==, 0);
  WAIT_UNTIL (running.n_completed == 1);
  g_assert_error (running.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  WAIT_UNTIL (next.n_completed == 1);
  g_assert_cmpint (result_int (&next), ==, 4);
  /* The cancelled queued call never ran. */
  g_assert_cmpuint (log_len (log), ==, 1);

  call_result_clear (&running);
  call_result_clear (&queued);
  call_result_clear (&next);
  shutdown_and_wait (queue, FALSE);
  g_object_unref (c_running);
  g_object_unref (c_queued);
  g_object_unref (worker);
  g_object_unref (queue);
  log_free (log);
}

/* A call whose worker was lost three times fails with
 * SLUICE_ERROR_WORKER_LOST; one given back without a loss just runs
 * again. */
static void
test_worker_lost (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  TestMockWorker *mock = mock_worker_new (NULL, 1);
  CallResult r = { 0 };

  sluice_task_queue_hire (queue, SLUICE_WORKER (mock));
  call_record (queue, NULL, 1, G_PRIORITY_DEFAULT, &r);
  for (guint i = 0; i < 5; i++)
    {
      SluiceWorkerTask *task;

      WAIT_UNTIL (mock->held->len == 1);
      task = g_ptr_array_steal_index (mock->held, 0);
      g_assert_true (sluice_worker_task_is_wanted (task));
      /* Two plain give-backs do not count. */
      sluice_worker_task_give_back (task, i >= 2);
      g_assert_false (sluice_worker_task_is_wanted (task));
      g_object_unref (task);
    }
  WAIT_UNTIL (r.n_completed == 1);
  g_assert_error (r.error, SLUICE_ERROR, SLUICE_ERROR_WORKER_LOST);
  g_assert_cmpuint (mock->held->len, ==, 0);
  call_result_clear (&r);

  shutdown_and_wait (queue, FALSE);
  g_object_unref (mock);
  g_object_unref (queue);
}

/* A worker that completes a task inside run_task: the callback still comes
 * from the main loop, never from inside call_async. */
static void
test_callback_from_main_loop (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  TestMockWorker *mock = mock_worker_new (NULL, 1);
  CallResult r = { 0 };
  SluiceWorkerTask *task;

  sluice_task_queue_hire (queue, SLUICE_WORKER (mock));
  call_record (queue, NULL, 1, G_PRIORITY_DEFAULT, &r);
  g_assert_cmpuint (mock->held->len, ==, 1);
  task = mock->held->pdata[0];
  g_assert_cmpstr (sluice_worker_task_get_series (task), ==, NULL);
  g_assert_cmpint (sluice_worker_task_get_priority (task), ==, G_PRIORITY_DEFAULT);
  g_assert_cmpint (sluice_worker_task_get_timeout (task), ==, 0);
  {
    g_autoptr (GVariant) one = g_variant_ref_sink (g_variant_new ("(i)", 1));

    g_assert_true (g_variant_equal (sluice_worker_task_get_args (task), one));
  }
  sluice_worker_task_return_value (task, g_variant_new_string ("done"));
  g_assert_cmpuint (r.n_completed, ==, 0);
  WAIT_UNTIL (r.n_completed == 1);
  g_assert_no_error (r.error);
  g_assert_cmpstr (g_variant_get_string (r.result, NULL), ==, "done");
  call_result_clear (&r);

  shutdown_and_wait (queue, FALSE);
  g_object_unref (mock);
  g_object_unref (queue);
}

/* Many calls over two thread workers and a mock that resigns midway:
 * every call completes exactly once with its own result. */
static void
test_stress (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  Log *log = log_new ();
  SluiceThreadWorker *w1 = thread_worker_new (NULL, 2, log);
  SluiceThreadWorker *w2 = thread_worker_new (NULL, 1, log);
  TestMockWorker *mock = mock_worker_new (NULL, 8);
  guint n = sluice_test_scale (20000, 20);
  CallResult *r = g_new0 (CallResult, n);
  GError *why = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE, "gone");

  sluice_task_queue_hire (queue, SLUICE_WORKER (mock));
  sluice_task_queue_hire (queue, SLUICE_WORKER (w1));
  for (guint i = 0; i < n; i++)
    {
      call_record (queue, NULL, (gint32) i, g_random_int_range (-2, 3), &r[i]);
      if (i == n / 4)
        sluice_task_queue_hire (queue, SLUICE_WORKER (w2));
      if (i == n / 2)
        sluice_worker_resign (SLUICE_WORKER (mock), why);
    }
  WAIT_UNTIL (sluice_task_queue_get_n_calls (queue) == 0);
  for (guint i = 0; i < n; i++)
    {
      WAIT_UNTIL (r[i].n_completed == 1);
      g_assert_cmpint (result_int (&r[i]), ==, 2 * (gint32) i);
      call_result_clear (&r[i]);
    }
  g_assert_cmpuint (log->ran->len, ==, n);

  shutdown_and_wait (queue, FALSE);
  g_error_free (why);
  g_free (r);
  g_object_unref (mock);
  g_object_unref (w1);
  g_object_unref (w2);
  g_object_unref (queue);
  log_free (log);
}

static void
test_programmer_errors (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  TestMockWorker *mock = mock_worker_new (NULL, 1);

  sluice_task_queue_hire (queue, SLUICE_WORKER (mock));
  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*hired already*");
  sluice_task_queue_hire (queue, SLUICE_WORKER (mock));
  g_test_assert_expected_messages ();
  shutdown_and_wait (queue, FALSE);
  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*shut down*");
  sluice_task_queue_hire (queue, SLUICE_WORKER (mock));
  g_test_assert_expected_messages ();
  g_object_unref (mock);
  g_object_unref (queue);
}

/* ---- SLUICE_HIRE_RUN_ON_CONTEXT ---------------------------------------- */

/* What "grow" grows, once the test released it: each "grow" waits for a
 * release of its own, given once the call that made it has returned, so
 * that it is the thread worker's thread that hands the tasks over. */
typedef struct
{
  TestMockWorker *mock;
  GMutex mutex;
  GCond cond;
  guint n_released;
} Grow;

static void
grow_release (Grow *grow)
{
  g_mutex_lock (&grow->mutex);
  grow->n_released++;
  g_cond_signal (&grow->cond);
  g_mutex_unlock (&grow->mutex);
}

/* "grow" (u): the mock worker takes that many more tasks at once: the
 * queue hands them over from this thread (a thread worker's). */
static GVariant *
grow_func (GVariant *args, GCancellable *cancellable, gpointer data, GError **error)
{
  Grow *grow = data;
  guint32 n;

  g_mutex_lock (&grow->mutex);
  while (grow->n_released == 0)
    g_cond_wait (&grow->cond, &grow->mutex);
  grow->n_released--;
  g_mutex_unlock (&grow->mutex);
  g_variant_get (args, "(u)", &n);
  grow->mock->capacity += n;
  sluice_worker_capacity_changed (SLUICE_WORKER (grow->mock));
  return NULL;
}

/* Checks that @mock got the calls 0 .. @n - 1 in that order, counts those
 * it got in a thread other than @thread, then completes them all from
 * here with their argument doubled. */
static guint
complete_in_order (TestMockWorker *mock, guint n, GThread *thread)
{
  guint n_foreign = 0;

  g_mutex_lock (&mock->lock);
  g_assert_cmpuint (mock->held->len, ==, n);
  for (guint i = 0; i < n; i++)
    {
      gint32 arg = task_int (mock->held->pdata[i]);

      g_assert_cmpint (arg, ==, i);
      n_foreign += mock->run_threads->pdata[i] != thread;
      sluice_worker_task_return_value (mock->held->pdata[i], g_variant_new ("(i)", 2 * arg));
    }
  g_ptr_array_set_size (mock->held, 0);
  g_mutex_unlock (&mock->lock);
  return n_foreign;
}

#define N_GROWN_ONE_BY_ONE 7
#define N_GROWN_AT_ONCE 20
#define N_CONTEXT_CALLS (1 + N_GROWN_ONE_BY_ONE + N_GROWN_AT_ONCE)

/* A worker hired with SLUICE_HIRE_RUN_ON_CONTEXT beside a thread worker,
 * whose thread hands it its tasks ("grow" makes room for more): its
 * run_task runs only on the main thread, from the main loop (never inside
 * a call the test makes to the queue), in the order of the calls. Hired
 * without the flag (the control), the same calls reach it inside
 * call_async and in the thread worker's thread. */
static void
test_hire_run_on_context (gconstpointer data)
{
  SluiceHireFlags flags = GPOINTER_TO_UINT (data);
  gboolean on_context = flags == SLUICE_HIRE_RUN_ON_CONTEXT;
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  Log *log = log_new ();
  const char *const t_series[] = { "t", NULL };
  const char *const ctx_series[] = { "ctx", NULL };
  SluiceThreadWorker *tw = thread_worker_new (t_series, 1, log);
  TestMockWorker *mock = mock_worker_new (ctx_series, 1);
  CallResult r[N_CONTEXT_CALLS] = { 0 };
  CallResult grown[N_GROWN_ONE_BY_ONE + 1] = { 0 };
  Grow grow = { mock };
  guint n_foreign;

  g_mutex_init (&grow.mutex);
  g_cond_init (&grow.cond);
  sluice_thread_worker_register (tw, "grow", "(u)", grow_func, &grow, NULL);
  in_queue_call = TRUE;
  sluice_task_queue_hire_full (queue, SLUICE_WORKER (mock), flags);
  sluice_task_queue_hire (queue, SLUICE_WORKER (tw));
  for (int i = 0; i < 1 + N_GROWN_ONE_BY_ONE; i++)
    call_record (queue, "ctx", i, G_PRIORITY_DEFAULT, &r[i]);
  in_queue_call = FALSE;
  WAIT_UNTIL (g_atomic_int_get (&mock->n_run) == 1);

  /* One more at a time, handed over in the thread worker's thread. */
  for (guint i = 0; i < N_GROWN_ONE_BY_ONE; i++)
    {
      in_queue_call = TRUE;
      call (queue, "t", "grow", g_variant_new ("(u)", 1), G_PRIORITY_DEFAULT, &grown[i]);
      in_queue_call = FALSE;
      grow_release (&grow);
      WAIT_UNTIL (g_atomic_int_get (&mock->n_run) == (int) (2 + i));
    }
  /* Many at once: the worker is full, the calls wait in the queue, then
   * the thread worker's thread hands them all over in one go. */
  in_queue_call = TRUE;
  for (int i = 1 + N_GROWN_ONE_BY_ONE; i < N_CONTEXT_CALLS; i++)
    call_record (queue, "ctx", i, G_PRIORITY_DEFAULT, &r[i]);
  in_queue_call = FALSE;
  g_assert_cmpuint (g_atomic_int_get (&mock->n_run), ==, 1 + N_GROWN_ONE_BY_ONE);
  in_queue_call = TRUE;
  call (queue, "t", "grow", g_variant_new ("(u)", N_GROWN_AT_ONCE), G_PRIORITY_DEFAULT,
        &grown[N_GROWN_ONE_BY_ONE]);
  in_queue_call = FALSE;
  grow_release (&grow);
  WAIT_UNTIL (g_atomic_int_get (&mock->n_run) == N_CONTEXT_CALLS);
  for (guint i = 0; i < G_N_ELEMENTS (grown); i++)
    {
      WAIT_UNTIL (grown[i].n_completed == 1);
      g_assert_no_error (grown[i].error);
      call_result_clear (&grown[i]);
    }

  n_foreign = complete_in_order (mock, N_CONTEXT_CALLS, g_thread_self ());
  if (on_context)
    {
      g_assert_cmpuint (n_foreign, ==, 0);
      g_assert_cmpuint (mock->n_run_in_call, ==, 0);
    }
  else
    {
      /* The first inside call_async, the others in the thread worker's
       * thread. */
      g_assert_cmpuint (mock->n_run_in_call, ==, 1);
      g_assert_cmpuint (n_foreign, ==, N_CONTEXT_CALLS - 1);
    }
  for (int i = 0; i < N_CONTEXT_CALLS; i++)
    {
      WAIT_UNTIL (r[i].n_completed == 1);
      g_assert_cmpint (result_int (&r[i]), ==, 2 * i);
      call_result_clear (&r[i]);
    }

  shutdown_and_wait (queue, FALSE);
  g_assert_cmpuint (mock->n_stopped, ==, 1);
  g_object_unref (tw);
  g_object_unref (mock);
  g_object_unref (queue);
  log_free (log);
  g_mutex_clear (&grow.mutex);
  g_cond_clear (&grow.cond);
}

/* Fired, or resigning, while tasks handed over to it wait for its context:
 * they go back to the queue with those it holds, each runs exactly once
 * on another worker, in order, and never reaches the fired worker. */
static void
test_hire_fire_pending (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  Log *log = log_new ();
  const char *const s_series[] = { "s", NULL };
  TestMockWorker *mock = mock_worker_new (NULL, 3);
  TestMockWorker *resigning = mock_worker_new (s_series, 2);
  SluiceThreadWorker *tw;
  CallResult r[5] = { 0 };
  CallResult again[3] = { 0 };
  GError *gone = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CLOSED, "gone");

  sluice_task_queue_hire_full (queue, SLUICE_WORKER (mock), SLUICE_HIRE_RUN_ON_CONTEXT);
  call_record (queue, NULL, 0, G_PRIORITY_DEFAULT, &r[0]);
  /* Never from inside the call that handed it over. */
  g_assert_cmpuint (g_atomic_int_get (&mock->n_run), ==, 0);
  WAIT_UNTIL (g_atomic_int_get (&mock->n_run) == 1);
  call_record (queue, NULL, 1, G_PRIORITY_DEFAULT, &r[1]);
  call_record (queue, NULL, 2, G_PRIORITY_DEFAULT, &r[2]);
  g_assert_cmpuint (sluice_task_queue_get_n_calls (queue), ==, 3);
  g_assert_true (sluice_task_queue_fire (queue, SLUICE_WORKER (mock)));
  g_assert_cmpuint (mock->n_crashed, ==, 1);
  g_assert_cmpuint (sluice_task_queue_get_n_calls (queue), ==, 3);

  /* The same through the resigned signal, with nothing given yet. */
  sluice_task_queue_hire_full (queue, SLUICE_WORKER (resigning), SLUICE_HIRE_RUN_ON_CONTEXT);
  call_record (queue, "s", 3, G_PRIORITY_DEFAULT, &r[3]);
  call_record (queue, "s", 4, G_PRIORITY_DEFAULT, &r[4]);
  sluice_worker_resign (SLUICE_WORKER (resigning), gone);
  g_assert_cmpuint (resigning->n_crashed, ==, 1);

  tw = thread_worker_new (s_series, 1, log);
  sluice_task_queue_hire (queue, SLUICE_WORKER (tw));
  for (int i = 0; i < 5; i++)
    {
      WAIT_UNTIL (r[i].n_completed == 1);
      g_assert_cmpint (result_int (&r[i]), ==, 2 * i);
      call_result_clear (&r[i]);
    }
  g_assert_cmpuint (log->ran->len, ==, 5);
  for (guint i = 0; i < 5; i++)
    g_assert_cmpint (g_array_index (log->ran, gint32, i), ==, i);
  /* Nothing more reaches the fired ones. */
  for (guint i = 0; i < 10; i++)
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpuint (g_atomic_int_get (&mock->n_run), ==, 1);
  g_assert_cmpuint (g_atomic_int_get (&resigning->n_run), ==, 0);

  /* Fired from inside its own run_task, with two more waiting: the three
   * run on a thread worker, the fired one gets no other. */
  g_object_unref (mock);
  mock = mock_worker_new (NULL, 3);
  mock->fire_from = queue;
  sluice_task_queue_fire (queue, SLUICE_WORKER (tw));
  sluice_task_queue_hire_full (queue, SLUICE_WORKER (mock), SLUICE_HIRE_RUN_ON_CONTEXT);
  for (int i = 0; i < 3; i++)
    call_record (queue, NULL, 5 + i, G_PRIORITY_DEFAULT, &again[i]);
  WAIT_UNTIL (g_atomic_int_get (&mock->n_run) == 1);
  g_assert_cmpuint (mock->n_crashed, ==, 1);
  g_assert_cmpuint (sluice_task_queue_get_n_calls (queue), ==, 3);
  g_object_unref (tw);
  tw = thread_worker_new (NULL, 1, log);
  sluice_task_queue_hire (queue, SLUICE_WORKER (tw));
  for (int i = 0; i < 3; i++)
    {
      WAIT_UNTIL (again[i].n_completed == 1);
      g_assert_cmpint (result_int (&again[i]), ==, 2 * (5 + i));
      call_result_clear (&again[i]);
    }
  g_assert_cmpuint (log->ran->len, ==, 8);
  for (guint i = 5; i < 8; i++)
    g_assert_cmpint (g_array_index (log->ran, gint32, i), ==, i);
  g_assert_cmpuint (g_atomic_int_get (&mock->n_run), ==, 1);

  shutdown_and_wait (queue, FALSE);
  g_error_free (gone);
  g_object_unref (tw);
  g_object_unref (resigning);
  g_object_unref (mock);
  g_object_unref (queue);
  log_free (log);
}

#define N_HIRER_CALLS 16

typedef struct
{
  SluiceTaskQueue *queue;
  TestMockWorker *mock;
  GMainContext *context; /* the hirer's, once hired */
  gboolean hired;        /* (atomic) */
  gboolean done;         /* (atomic): the hirer may leave */
} Hirer;

/* A thread with a main context of its own hires the worker, then runs its
 * loop until the test is done with it. */
static gpointer
hirer_thread (gpointer data)
{
  Hirer *hirer = data;
  GMainContext *context = g_main_context_new ();

  g_main_context_push_thread_default (context);
  hirer->context = context;
  sluice_task_queue_hire_full (hirer->queue, SLUICE_WORKER (hirer->mock),
                               SLUICE_HIRE_RUN_ON_CONTEXT);
  g_atomic_int_set (&hirer->hired, TRUE);
  while (!g_atomic_int_get (&hirer->done))
    g_main_context_iteration (context, TRUE);
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);
  return NULL;
}

static GThread *
hirer_start (Hirer *hirer)
{
  GThread *thread = g_thread_new ("hirer", hirer_thread, hirer);

  WAIT_UNTIL (g_atomic_int_get (&hirer->hired));
  return thread;
}

static void
hirer_join (Hirer *hirer, GThread *thread)
{
  g_atomic_int_set (&hirer->done, TRUE);
  g_main_context_wakeup (hirer->context);
  g_thread_join (thread);
}

/* Checks that each of the virtual functions @mock logged ran in @thread. */
static void
assert_vfuncs_in (TestMockWorker *mock, const char *vfuncs, GThread *thread)
{
  g_mutex_lock (&mock->lock);
  g_assert_cmpstr (mock->vfuncs->str, ==, vfuncs);
  for (guint i = 0; i < mock->vfunc_threads->len; i++)
    g_assert_true (mock->vfunc_threads->pdata[i] == thread);
  g_mutex_unlock (&mock->lock);
}

/* The context is the hiring thread's thread-default one, taken at hire
 * time: calls made on the main thread reach the worker in that thread, and
 * the shutdown made there stops it in that thread too. */
static void
test_hire_run_on_context_thread (void)
{
  Hirer hirer = { sluice_task_queue_new (1), mock_worker_new (NULL, N_HIRER_CALLS) };
  CallResult r[N_HIRER_CALLS] = { 0 };
  GThread *thread = hirer_start (&hirer);
  char expected[N_HIRER_CALLS + 2];

  for (int i = 0; i < N_HIRER_CALLS; i++)
    call_record (hirer.queue, NULL, i, G_PRIORITY_DEFAULT, &r[i]);
  WAIT_UNTIL (g_atomic_int_get (&hirer.mock->n_run) == N_HIRER_CALLS);
  g_assert_cmpuint (complete_in_order (hirer.mock, N_HIRER_CALLS, thread), ==, 0);
  for (int i = 0; i < N_HIRER_CALLS; i++)
    {
      WAIT_UNTIL (r[i].n_completed == 1);
      g_assert_cmpint (result_int (&r[i]), ==, 2 * i);
      call_result_clear (&r[i]);
    }
  shutdown_and_wait (hirer.queue, FALSE);
  hirer_join (&hirer, thread);
  memset (expected, 'R', N_HIRER_CALLS);
  expected[N_HIRER_CALLS] = 'S';
  expected[N_HIRER_CALLS + 1] = '\0';
  assert_vfuncs_in (hirer.mock, expected, thread);
  g_object_unref (hirer.mock);
  g_object_unref (hirer.queue);
}

/* A thread that makes a call with a timeout on a main context of its own,
 * lets it time out there once told to, and waits for its return. */
typedef struct
{
  SluiceTaskQueue *queue;
  int timeout_ms;
  gboolean go; /* (atomic): it may iterate its context */
  CallResult r;
} Caller;

static gpointer
caller_thread (gpointer data)
{
  Caller *caller = data;
  GMainContext *context = g_main_context_new ();

  g_main_context_push_thread_default (context);
  sluice_task_queue_call_async (caller->queue, NULL, "record", g_variant_new ("(i)", 0),
                                G_PRIORITY_DEFAULT, caller->timeout_ms, NULL, call_done_cb,
                                &caller->r);
  while (!g_atomic_int_get (&caller->go))
    g_usleep (100);
  while (caller->r.n_completed == 0)
    g_main_context_iteration (context, TRUE);
  g_main_context_pop_thread_default (context);
  g_main_context_unref (context);
  return NULL;
}

/* task_timed_out of a RUN_ON_CONTEXT worker runs on its context (not on
 * that of the call, where the timeout fires), after the run_task of the
 * task; a task whose call timed out before the worker got it is never
 * given, and the worker hears of neither. */
static void
test_hire_timed_out_on_context (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  TestMockWorker *mock = mock_worker_new (NULL, 1);
  Caller caller = { queue, 1 };
  GThread *thread;

  sluice_task_queue_hire_full (queue, SLUICE_WORKER (mock), SLUICE_HIRE_RUN_ON_CONTEXT);

  /* Given, then timed out in the caller's context. */
  thread = g_thread_new ("caller", caller_thread, &caller);
  WAIT_UNTIL (g_atomic_int_get (&mock->n_run) == 1);
  g_atomic_int_set (&caller.go, TRUE);
  g_thread_join (thread);
  g_assert_cmpuint (caller.r.n_completed, ==, 1);
  g_assert_error (caller.r.error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  call_result_clear (&caller.r);
  WAIT_UNTIL (g_atomic_int_get (&mock->n_timed_out) == 1);
  assert_vfuncs_in (mock, "RXT", g_thread_self ());
  /* Completed late: its result is dropped, its place freed. */
  complete_in_order (mock, 1, g_thread_self ());
  WAIT_UNTIL (sluice_task_queue_get_n_calls (queue) == 0);

  /* Timed out before the main loop gave it: never given. */
  caller.r.n_completed = 0;
  thread = g_thread_new ("caller", caller_thread, &caller);
  g_thread_join (thread);
  g_assert_error (caller.r.error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT);
  call_result_clear (&caller.r);
  WAIT_UNTIL (sluice_task_queue_get_n_calls (queue) == 0);
  for (guint i = 0; i < 5; i++)
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpuint (g_atomic_int_get (&mock->n_run), ==, 1);
  assert_vfuncs_in (mock, "RXT", g_thread_self ());

  shutdown_and_wait (queue, FALSE);
  assert_vfuncs_in (mock, "RXTS", g_thread_self ());
  g_object_unref (mock);
  g_object_unref (queue);
}

/* A call cancelled while its task waits for the worker's context fails
 * with G_IO_ERROR_CANCELLED and is never given; its place goes to the
 * next call. */
static void
test_hire_cancelled_not_given (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  TestMockWorker *mock = mock_worker_new (NULL, 1);
  GCancellable *cancellable = g_cancellable_new ();
  CallResult r[2] = { 0 };

  sluice_task_queue_hire_full (queue, SLUICE_WORKER (mock), SLUICE_HIRE_RUN_ON_CONTEXT);
  sluice_task_queue_call_async (queue, NULL, "record", g_variant_new ("(i)", 0), G_PRIORITY_DEFAULT,
                                0, cancellable, call_done_cb, &r[0]);
  call_record (queue, NULL, 1, G_PRIORITY_DEFAULT, &r[1]);
  g_cancellable_cancel (cancellable);
  WAIT_UNTIL (r[0].n_completed == 1 && g_atomic_int_get (&mock->n_run) == 1);
  g_assert_error (r[0].error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (r[0].result);
  /* The worker got the second only. */
  g_mutex_lock (&mock->lock);
  g_assert_cmpuint (mock->held->len, ==, 1);
  g_assert_cmpint (task_int (mock->held->pdata[0]), ==, 1);
  g_mutex_unlock (&mock->lock);
  g_mutex_lock (&mock->lock);
  sluice_worker_task_return_value (mock->held->pdata[0], g_variant_new ("(i)", 2));
  g_ptr_array_set_size (mock->held, 0);
  g_mutex_unlock (&mock->lock);
  WAIT_UNTIL (r[1].n_completed == 1);
  g_assert_cmpint (result_int (&r[1]), ==, 2);
  for (guint i = 0; i < 5; i++)
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpuint (r[0].n_completed, ==, 1);
  call_result_clear (&r[0]);
  call_result_clear (&r[1]);
  assert_vfuncs_in (mock, "R", g_thread_self ());

  shutdown_and_wait (queue, FALSE);
  g_object_unref (cancellable);
  g_object_unref (mock);
  g_object_unref (queue);
}

static gboolean
flag_idle_cb (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

/* run_task is dispatched at the priority of its call: after an idle more
 * urgent than a low-priority call, before one less urgent than an urgent
 * call. */
static void
test_hire_priority (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  TestMockWorker *mock = mock_worker_new (NULL, 2);
  CallResult r[2] = { 0 };
  gboolean idle_ran = FALSE;
  GSource *idle;

  sluice_task_queue_hire_full (queue, SLUICE_WORKER (mock), SLUICE_HIRE_RUN_ON_CONTEXT);

  idle = g_idle_source_new ();
  g_source_set_priority (idle, G_PRIORITY_DEFAULT_IDLE);
  g_source_set_callback (idle, flag_idle_cb, &idle_ran, NULL);
  g_source_attach (idle, NULL);
  g_source_unref (idle);
  call_record (queue, NULL, 0, G_PRIORITY_LOW, &r[0]);
  WAIT_UNTIL (idle_ran);
  g_assert_cmpuint (g_atomic_int_get (&mock->n_run), ==, 0);
  WAIT_UNTIL (g_atomic_int_get (&mock->n_run) == 1);

  idle_ran = FALSE;
  idle = g_idle_source_new ();
  g_source_set_priority (idle, G_PRIORITY_DEFAULT);
  g_source_set_callback (idle, flag_idle_cb, &idle_ran, NULL);
  g_source_attach (idle, NULL);
  g_source_unref (idle);
  call_record (queue, NULL, 1, G_PRIORITY_HIGH, &r[1]);
  WAIT_UNTIL (g_atomic_int_get (&mock->n_run) == 2);
  g_assert_false (idle_ran);
  WAIT_UNTIL (idle_ran);

  complete_in_order (mock, 2, g_thread_self ());
  for (int i = 0; i < 2; i++)
    {
      WAIT_UNTIL (r[i].n_completed == 1);
      g_assert_cmpint (result_int (&r[i]), ==, 2 * i);
      call_result_clear (&r[i]);
    }
  shutdown_and_wait (queue, FALSE);
  g_object_unref (mock);
  g_object_unref (queue);
}

/* Fires @mock, or has it resign. */
static void
fire_or_resign (SluiceTaskQueue *queue, TestMockWorker *mock, gboolean resign)
{
  if (resign)
    {
      GError *gone = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CLOSED, "gone");

      sluice_worker_resign (SLUICE_WORKER (mock), gone);
      g_error_free (gone);
    }
  else
    g_assert_true (sluice_task_queue_fire (queue, SLUICE_WORKER (mock)));
}

typedef struct
{
  SluiceTaskQueue *queue;
  TestMockWorker *mock;
  gboolean resign;
} Firer;

static gpointer
firer_thread (gpointer data)
{
  Firer *firer = data;

  fire_or_resign (firer->queue, firer->mock, firer->resign);
  return NULL;
}

/* Fired (or resigning) in another thread: the worker's crash runs on its
 * context, after what it was given; its tasks go back to the queue at
 * once. */
static void
test_hire_fire_from_thread (gconstpointer data)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  TestMockWorker *mock = mock_worker_new (NULL, 2);
  Firer firer = { queue, mock, GPOINTER_TO_INT (data) };
  Log *log = log_new ();
  SluiceThreadWorker *tw;
  CallResult r[3] = { 0 };

  sluice_task_queue_hire_full (queue, SLUICE_WORKER (mock), SLUICE_HIRE_RUN_ON_CONTEXT);
  for (int i = 0; i < 3; i++)
    call_record (queue, NULL, i, G_PRIORITY_DEFAULT, &r[i]);
  WAIT_UNTIL (g_atomic_int_get (&mock->n_run) == 2);
  g_thread_join (g_thread_new ("firer", firer_thread, &firer));
  /* Not in the firer's thread: on the main loop. */
  g_assert_cmpuint (g_atomic_int_get (&mock->n_crashed_atomic), ==, 0);
  g_assert_cmpuint (sluice_task_queue_get_n_calls (queue), ==, 3);
  WAIT_UNTIL (g_atomic_int_get (&mock->n_crashed_atomic) == 1);
  /* Then the cancellables of the two it held. */
  assert_vfuncs_in (mock, "RRCXX", g_thread_self ());

  tw = thread_worker_new (NULL, 1, log);
  sluice_task_queue_hire (queue, SLUICE_WORKER (tw));
  for (int i = 0; i < 3; i++)
    {
      WAIT_UNTIL (r[i].n_completed == 1);
      g_assert_cmpint (result_int (&r[i]), ==, 2 * i);
      call_result_clear (&r[i]);
    }
  g_assert_cmpuint (log_len (log), ==, 3);
  shutdown_and_wait (queue, FALSE);
  assert_vfuncs_in (mock, "RRCXX", g_thread_self ());
  g_object_unref (tw);
  g_object_unref (mock);
  g_object_unref (queue);
  log_free (log);
}

/* ---- stress: fires from another thread beside the worker's context ---- */

#define N_STRESS_CALLS 10000
#define N_STRESS_MOCKS 3
#define N_STRESS_IN_FLIGHT 200

/* Completes stress tasks later in its threads. */
static GThreadPool *stress_pool;
static guint stress_n_idle; /* (atomic): completions waiting in an idle */

static void
stress_complete (SluiceWorkerTask *task)
{
  sluice_worker_task_return_value (task, g_variant_new ("(i)", 2 * task_int (task)));
}

static gboolean
stress_complete_idle_cb (gpointer data)
{
  stress_complete (data);
  g_atomic_int_dec_and_test (&stress_n_idle);
  return G_SOURCE_REMOVE;
}

static void
stress_complete_in_thread (gpointer data, gpointer user_data)
{
  if (g_random_boolean ())
    g_usleep (g_random_int_range (0, 200));
  stress_complete (data);
  g_object_unref (data);
}

/* A stress mock completes each task at once, from an idle, from another
 * thread, or never (until it is fired); sometimes it dawdles first, so
 * that a fire from another thread comes while it runs. */
static void
mock_stress_run_task (TestMockWorker *self, SluiceWorkerTask *task)
{
  mock_watch_cancellable (self, task);
  g_mutex_lock (&self->lock);
  mock_log_locked (self, 'R');
  g_mutex_unlock (&self->lock);
  g_atomic_int_inc (&self->n_run);
  g_atomic_int_set (&self->in_run, TRUE);
  if (g_random_int_range (0, 4) == 0)
    g_usleep (g_random_int_range (0, 300));
  switch (g_random_int_range (0, 8))
    {
    case 0:
    case 1:
    case 2:
      stress_complete (task);
      break;
    case 3:
    case 4:
      g_atomic_int_inc (&stress_n_idle);
      g_idle_add_full (G_PRIORITY_DEFAULT, stress_complete_idle_cb, g_object_ref (task),
                       g_object_unref);
      break;
    case 5:
    case 6:
      g_thread_pool_push (stress_pool, g_object_ref (task), NULL);
      break;
    default:
      g_mutex_lock (&self->lock);
      g_ptr_array_add (self->held, g_object_ref (task));
      g_mutex_unlock (&self->lock);
      break;
    }
  g_atomic_int_set (&self->in_run, FALSE);
}

typedef struct
{
  SluiceTaskQueue *queue;
  GMutex mutex;
  GPtrArray *hired; /* of TestMockWorker (owned), under @mutex */
  guint n_to_hire;  /* under @mutex */
  gboolean stop;    /* (atomic) */
  guint n_fired;
  guint n_fired_in_run; /* fires that began while the mock was in run_task */
} Stress;

/* Fires (or makes resign) a random hired mock now and then, from its own
 * thread, while the main thread gives the mocks their tasks. */
static gpointer
stress_firer_thread (gpointer data)
{
  Stress *stress = data;

  while (!g_atomic_int_get (&stress->stop))
    {
      TestMockWorker *mock = NULL;

      g_usleep (g_random_int_range (50, 1500));
      g_mutex_lock (&stress->mutex);
      if (stress->hired->len > 0)
        {
          mock = g_ptr_array_steal_index_fast (stress->hired,
                                               g_random_int_range (0, (gint32) stress->hired->len));
          stress->n_to_hire++;
        }
      g_mutex_unlock (&stress->mutex);
      if (mock == NULL)
        continue;
      stress->n_fired_in_run += g_atomic_int_get (&mock->in_run);
      fire_or_resign (stress->queue, mock, g_random_boolean ());
      stress->n_fired++;
      g_object_unref (mock);
    }
  return NULL;
}

static void
stress_hire (Stress *stress, GPtrArray *all)
{
  TestMockWorker *mock = mock_worker_new (NULL, g_test_rand_int_range (1, 5));

  mock->stress = TRUE;
  g_ptr_array_add (all, g_object_ref (mock));
  sluice_task_queue_hire_full (stress->queue, SLUICE_WORKER (mock), SLUICE_HIRE_RUN_ON_CONTEXT);
  g_mutex_lock (&stress->mutex);
  g_ptr_array_add (stress->hired, mock);
  g_mutex_unlock (&stress->mutex);
}

/* RUN_ON_CONTEXT workers fired or resigning in another thread at random
 * moments, while the main thread runs their run_task, beside a thread
 * worker; calls with timeouts and cancelled ones among them: every call
 * completes exactly once, with its result or (if it had a timeout or a
 * cancellable) its error; each mock got every virtual function on the
 * main thread, and nothing after its crash. */
static void
test_hire_stress_fire (void)
{
  Stress stress = { sluice_task_queue_new (1) };
  GPtrArray *all = g_ptr_array_new_with_free_func (g_object_unref);
  Log *log = log_new ();
  SluiceThreadWorker *tw = thread_worker_new (NULL, 2, log);
  CallResult *r = g_new0 (CallResult, N_STRESS_CALLS);
  GCancellable **cancellables = g_new0 (GCancellable *, N_STRESS_CALLS);
  int *timeouts = g_new0 (int, N_STRESS_CALLS);
  GThread *firer;
  guint n_ok = 0, n_timed_out = 0, n_cancelled = 0;

  stress_pool = g_thread_pool_new (stress_complete_in_thread, NULL, 2, FALSE, NULL);
  g_mutex_init (&stress.mutex);
  stress.hired = g_ptr_array_new ();
  for (guint i = 0; i < N_STRESS_MOCKS; i++)
    stress_hire (&stress, all);
  sluice_task_queue_hire (stress.queue, SLUICE_WORKER (tw));
  firer = g_thread_new ("firer", stress_firer_thread, &stress);

  for (guint i = 0; i < N_STRESS_CALLS; i++)
    {
      switch (g_test_rand_int_range (0, 8))
        {
        case 0:
          timeouts[i] = g_test_rand_int_range (1, 4);
          break;
        case 1:
          cancellables[i] = g_cancellable_new ();
          break;
        default:
          break;
        }
      sluice_task_queue_call_async (stress.queue, NULL, "record", g_variant_new ("(i)", (gint32) i),
                                    G_PRIORITY_DEFAULT, timeouts[i], cancellables[i], call_done_cb,
                                    &r[i]);
      if (i % 16 == 15)
        {
          guint j = i - (guint) g_test_rand_int_range (0, 16);

          if (cancellables[j] != NULL)
            g_cancellable_cancel (cancellables[j]);
          g_mutex_lock (&stress.mutex);
          while (stress.n_to_hire > 0)
            {
              stress.n_to_hire--;
              g_mutex_unlock (&stress.mutex);
              stress_hire (&stress, all);
              g_mutex_lock (&stress.mutex);
            }
          g_mutex_unlock (&stress.mutex);
          for (guint k = 0; k < 4; k++)
            g_main_context_iteration (NULL, FALSE);
        }
      while (sluice_task_queue_get_n_calls (stress.queue) > N_STRESS_IN_FLIGHT)
        g_main_context_iteration (NULL, TRUE);
    }

  /* The firer stops; the mocks still hired are fired here, so that what
   * they hold runs on the thread worker. */
  g_atomic_int_set (&stress.stop, TRUE);
  g_thread_join (firer);
  for (guint i = 0; i < stress.hired->len; i++)
    g_assert_true (sluice_task_queue_fire (stress.queue, stress.hired->pdata[i]));
  g_ptr_array_set_size (stress.hired, 0);
  WAIT_UNTIL (sluice_task_queue_get_n_calls (stress.queue) == 0);
  g_thread_pool_free (stress_pool, FALSE, TRUE);
  stress_pool = NULL;
  WAIT_UNTIL (g_atomic_int_get (&stress_n_idle) == 0);
  for (guint i = 0; i < N_STRESS_CALLS; i++)
    WAIT_UNTIL (r[i].n_completed > 0);
  for (guint k = 0; k < 10; k++)
    g_main_context_iteration (NULL, FALSE);

  for (guint i = 0; i < N_STRESS_CALLS; i++)
    {
      g_assert_cmpuint (r[i].n_completed, ==, 1);
      if (r[i].error == NULL)
        {
          g_assert_cmpint (result_int (&r[i]), ==, 2 * (gint32) i);
          n_ok++;
        }
      else if (g_error_matches (r[i].error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT))
        {
          g_assert_cmpint (timeouts[i], >, 0);
          n_timed_out++;
        }
      else
        {
          g_assert_error (r[i].error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
          g_assert_nonnull (cancellables[i]);
          g_assert_true (g_cancellable_is_cancelled (cancellables[i]));
          n_cancelled++;
        }
      call_result_clear (&r[i]);
      g_clear_object (&cancellables[i]);
    }
  /* Each mock was fired once: its crash came last. */
  for (guint i = 0; i < all->len; i++)
    {
      TestMockWorker *mock = all->pdata[i];
      const char *crash;

      WAIT_UNTIL (g_atomic_int_get (&mock->n_crashed_atomic) == 1);
      g_mutex_lock (&mock->lock);
      crash = strchr (mock->vfuncs->str, 'C');
      g_assert_nonnull (crash);
      g_assert_cmpuint (strspn (crash + 1, "X"), ==, strlen (crash + 1));
      g_mutex_unlock (&mock->lock);
    }
  g_test_message ("%u calls: %u ok, %u timed out, %u cancelled; %u mocks, %u fired in a thread, "
                  "%u of them in run_task",
                  N_STRESS_CALLS, n_ok, n_timed_out, n_cancelled, all->len, stress.n_fired,
                  stress.n_fired_in_run);

  shutdown_and_wait (stress.queue, FALSE);
  g_ptr_array_unref (stress.hired);
  g_mutex_clear (&stress.mutex);
  g_ptr_array_unref (all);
  g_free (r);
  g_free (cancellables);
  g_free (timeouts);
  g_object_unref (tw);
  g_object_unref (stress.queue);
  log_free (log);
}

static void
test_hire_programmer_errors (void)
{
  SluiceTaskQueue *queue = sluice_task_queue_new (1);
  TestMockWorker *mock = mock_worker_new (NULL, 1);

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*flags*");
  sluice_task_queue_hire_full (queue, SLUICE_WORKER (mock), 1 << 7);
  g_test_assert_expected_messages ();
  g_assert_false (sluice_task_queue_fire (queue, SLUICE_WORKER (mock)));
  sluice_task_queue_hire_full (queue, SLUICE_WORKER (mock), SLUICE_HIRE_RUN_ON_CONTEXT);
  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*hired already*");
  sluice_task_queue_hire_full (queue, SLUICE_WORKER (mock), SLUICE_HIRE_NONE);
  g_test_assert_expected_messages ();
  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*SLUICE_IS_WORKER*");
  sluice_task_queue_hire_full (queue, NULL, SLUICE_HIRE_RUN_ON_CONTEXT);
  g_test_assert_expected_messages ();
  g_assert_true (sluice_task_queue_fire (queue, SLUICE_WORKER (mock)));
  shutdown_and_wait (queue, FALSE);
  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*shut down*");
  sluice_task_queue_hire_full (queue, SLUICE_WORKER (mock), SLUICE_HIRE_RUN_ON_CONTEXT);
  g_test_assert_expected_messages ();
  g_object_unref (mock);
  g_object_unref (queue);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  main_thread = g_thread_self ();
  /* Wakes WAIT_UNTIL up to look at state that worker threads change. */
  g_timeout_add (2, tick_cb, NULL);

  g_test_add_func ("/workers/asynqueue/priority-order", test_priority_order);
  g_test_add_func ("/workers/asynqueue/series-assignment", test_series_assignment);
  g_test_add_func ("/workers/asynqueue/resign-hands-back", test_resign_hands_back);
  g_test_add_func ("/workers/asynqueue/crash-returns-unfinished", test_crash_returns_unfinished);
  g_test_add_func ("/workers/asynqueue/crash-list", test_crash_list);
  g_test_add_func ("/workers/interface/defaults", test_interface_defaults);
  g_test_add_func ("/workers/asynqueue/stop-waits-for-pending", test_stop_waits_for_pending);
  g_test_add_func ("/workers/thread-worker/stop", test_thread_worker_stop);
  g_test_add_func ("/workers/defect/unserved-series-does-not-block", test_defect_unserved_series);
  g_test_add_data_func ("/workers/defect/shutdown-with-queued/drain", GINT_TO_POINTER (FALSE),
                        test_defect_shutdown_with_queued);
  g_test_add_data_func ("/workers/defect/shutdown-with-queued/cancel", GINT_TO_POINTER (TRUE),
                        test_defect_shutdown_with_queued);
  g_test_add_func ("/workers/defect/equal-priority-fifo", test_defect_equal_priority_fifo);
  g_test_add_func ("/workers/thread-worker/affinity", test_thread_affinity);
  g_test_add_func ("/workers/call/errors", test_call_errors);
  g_test_add_func ("/workers/call/timeout", test_timeout);
  g_test_add_func ("/workers/call/cancel", test_cancel);
  g_test_add_func ("/workers/call/worker-lost", test_worker_lost);
  g_test_add_func ("/workers/call/callback-from-main-loop", test_callback_from_main_loop);
  g_test_add_func ("/workers/call/returns-in-completion-order", test_returns_in_completion_order);
  g_test_add_func ("/workers/call/nested-loop-in-callback", test_nested_loop_in_callback);
  g_test_add_func ("/workers/call/cancelled-returns-in-order", test_cancelled_returns_in_order);
  g_test_add_func ("/workers/stress", test_stress);
  g_test_add_func ("/workers/programmer-errors", test_programmer_errors);
  g_test_add_data_func ("/workers/hire/run-on-context",
                        GUINT_TO_POINTER (SLUICE_HIRE_RUN_ON_CONTEXT), test_hire_run_on_context);
  g_test_add_data_func ("/workers/hire/run-anywhere", GUINT_TO_POINTER (SLUICE_HIRE_NONE),
                        test_hire_run_on_context);
  g_test_add_func ("/workers/hire/fire-with-deliveries-pending", test_hire_fire_pending);
  g_test_add_func ("/workers/hire/run-on-context-of-a-thread", test_hire_run_on_context_thread);
  g_test_add_func ("/workers/hire/programmer-errors", test_hire_programmer_errors);
  g_test_add_func ("/workers/hire/timed-out-on-context", test_hire_timed_out_on_context);
  g_test_add_func ("/workers/hire/cancelled-not-given", test_hire_cancelled_not_given);
  g_test_add_func ("/workers/hire/priority", test_hire_priority);
  g_test_add_data_func ("/workers/hire/fire-from-thread", GINT_TO_POINTER (FALSE),
                        test_hire_fire_from_thread);
  g_test_add_data_func ("/workers/hire/resign-from-thread", GINT_TO_POINTER (TRUE),
                        test_hire_fire_from_thread);
  g_test_add_func ("/workers/hire/stress-fire-from-thread", test_hire_stress_fire);

  return g_test_run ();
}
