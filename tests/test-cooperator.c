/* test-cooperator.c: SluiceCooperator and SluiceCooperativeTask
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The first 29 tests port Twisted's src/twisted/test/test_cooperator.py
 * (CooperatorTests, AliasTests, RunStateTests), each named after its
 * original. Where Twisted fires a Deferred inside the call that ends a task,
 * Sluice answers from a source on the context (its callbacks never run
 * inside a call the user makes): those tests check that nothing has arrived
 * yet, then iterate the context and check what arrived. Ticks are driven by
 * hand through the scheduler hook, as Twisted's tests do with their
 * FakeScheduler.
 */

#include <sluice/sluice.h>

#include "sluice-test-util.h"
#include "cooperator-test-util.h"

/* --- helpers --- */

/* The answer of a when_done or coiterate call. */
typedef struct
{
  guint n_calls;
  gboolean ok;
  GError *error;
} Outcome;

static void
outcome_clear (Outcome *outcome)
{
  g_clear_error (&outcome->error);
}

static void
on_when_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Outcome *outcome = user_data;

  outcome->n_calls++;
  outcome->ok = sluice_cooperative_task_when_done_finish (
      SLUICE_COOPERATIVE_TASK (source), result, outcome->n_calls == 1 ? &outcome->error : NULL);
}

static void
on_coiterated (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Outcome *outcome = user_data;

  outcome->n_calls++;
  outcome->ok = sluice_cooperator_coiterate_finish (SLUICE_COOPERATOR (source), result,
                                                    outcome->n_calls == 1 ? &outcome->error : NULL);
}

static void
wait_for_outcome (Outcome *outcome)
{
  gint64 deadline = deadline_from_now ();

  while (outcome->n_calls == 0 && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (outcome->n_calls, ==, 1);
}

/* Drops @cooperator after its last deliveries; fails if it leaks. */
static void
finish_cooperator (SluiceCooperator *cooperator)
{
  GWeakRef weak;

  g_weak_ref_init (&weak, cooperator);
  drain_context ();
  g_object_unref (cooperator);
  drain_context ();
  g_assert_null (g_weak_ref_get (&weak));
  g_weak_ref_clear (&weak);
}

/* Threads a test started to wake tasks, joined before the leak check. */
static GPtrArray *waker_threads;

/* Runs one task on a cooperator of its own until it ends. */
static void
coiterate_to_end (SluiceCooperativeStepFunc step, gpointer step_data, Outcome *outcome)
{
  SluiceCooperator *cooperator = sluice_cooperator_new ();

  sluice_cooperator_coiterate_async (cooperator, step, step_data, NULL, NULL, on_coiterated,
                                     outcome);
  wait_for_outcome (outcome);
  /* Threads that woke the task drop their references before the check. */
  g_clear_pointer (&waker_threads, g_ptr_array_unref);
  finish_cooperator (cooperator);
}

static SluiceStepResult
step_done_at_once (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  return SLUICE_STEP_DONE;
}

/* Counts down *(int *) user_data: continues while it is above 0. */
static SluiceStepResult
step_count_down (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  int *left = user_data;

  if (*left <= 0)
    return SLUICE_STEP_DONE;
  (*left)--;
  return SLUICE_STEP_CONTINUE;
}

static SluiceStepResult
step_must_not_run (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  g_assert_not_reached ();
  return SLUICE_STEP_FAILED;
}

/* --- CooperatorTests --- */

/* Cooperators refuse new tasks when they have been stopped. */
static void
test_stopped_rejects_new_tasks (void)
{
  SluiceCooperator *cooperator = sluice_cooperator_new ();
  g_autoptr (SluiceCooperativeTask) task = NULL;
  Outcome coiterated = { 0 }, done = { 0 };

  sluice_cooperator_stop (cooperator);

  /* Twisted's coiterate with and without its own Deferred: coiterate and
   * cooperate here. */
  sluice_cooperator_coiterate_async (cooperator, step_must_not_run, NULL, NULL, NULL, on_coiterated,
                                     &coiterated);
  task = sluice_cooperator_cooperate (cooperator, step_must_not_run, NULL, NULL);
  g_assert_cmpint (sluice_cooperative_task_get_state (task), ==,
                   SLUICE_COOPERATIVE_TASK_STATE_STOPPED);
  sluice_cooperative_task_when_done_async (task, NULL, on_when_done, &done);
  g_assert_cmpuint (coiterated.n_calls, ==, 0);
  g_assert_cmpuint (done.n_calls, ==, 0);

  wait_for_outcome (&coiterated);
  wait_for_outcome (&done);
  g_assert_false (coiterated.ok);
  g_assert_error (coiterated.error, SLUICE_ERROR, SLUICE_ERROR_SCHEDULER_STOPPED);
  g_assert_false (done.ok);
  g_assert_error (done.error, SLUICE_ERROR, SLUICE_ERROR_SCHEDULER_STOPPED);

  outcome_clear (&coiterated);
  outcome_clear (&done);
  g_clear_object (&task);
  finish_cooperator (cooperator);
}

/* A running task does not run to completion when the cooperator stops. */
static void
test_stop_running (void)
{
  SluiceCooperator *cooperator = sluice_cooperator_new ();
  int left = 3;
  Outcome coiterated = { 0 };

  sluice_cooperator_coiterate_async (cooperator, step_count_down, &left, NULL, NULL, on_coiterated,
                                     &coiterated);
  sluice_cooperator_stop (cooperator);
  wait_for_outcome (&coiterated);
  g_assert_false (coiterated.ok);
  g_assert_error (coiterated.error, SLUICE_ERROR, SLUICE_ERROR_SCHEDULER_STOPPED);
  g_assert_cmpint (left, ==, 3);

  outcome_clear (&coiterated);
  finish_cooperator (cooperator);
}

typedef struct
{
  SluiceCooperator *cooperator;
  SluiceCooperativeTask *waiting_task; /* the "outstanding Deferred" */
  guint n_steps;
} Outstanding;

static SluiceStepResult
step_wait_outstanding (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  Outstanding *outstanding = user_data;

  /* Runs once: after the wait the task must be stopped. */
  g_assert_cmpuint (++outstanding->n_steps, ==, 1);
  outstanding->waiting_task = g_object_ref (task);
  return SLUICE_STEP_WAIT;
}

static gboolean
stop_and_go (gpointer user_data)
{
  Outstanding *outstanding = user_data;

  sluice_cooperator_stop (outstanding->cooperator);
  sluice_cooperative_task_wake (outstanding->waiting_task);
  return G_SOURCE_REMOVE;
}

/* A task waiting on outstanding work ends when the cooperator stops, and
 * the work finishing afterwards does not run it again. */
static void
test_stop_outstanding (void)
{
  Outstanding outstanding = { 0 };
  Outcome coiterated = { 0 };

  outstanding.cooperator = sluice_cooperator_new ();
  sluice_cooperator_coiterate_async (outstanding.cooperator, step_wait_outstanding, &outstanding,
                                     NULL, NULL, on_coiterated, &coiterated);
  /* The test's control, run by the loop once the task waits. */
  while (outstanding.waiting_task == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_idle_add (stop_and_go, &outstanding);

  wait_for_outcome (&coiterated);
  g_assert_false (coiterated.ok);
  g_assert_error (coiterated.error, SLUICE_ERROR, SLUICE_ERROR_SCHEDULER_STOPPED);
  drain_context ();
  g_assert_cmpuint (outstanding.n_steps, ==, 1);

  outcome_clear (&coiterated);
  g_clear_object (&outstanding.waiting_task);
  finish_cooperator (outstanding.cooperator);
}

/* Runs a task of @step to its end: it must fail with Twisted's
 * RuntimeError, as G_IO_ERROR_FAILED "RuntimeError". */
static void
assert_fails_with_runtime_error (SluiceCooperativeStepFunc step)
{
  Outcome coiterated = { 0 };

  coiterate_to_end (step, NULL, &coiterated);
  g_assert_false (coiterated.ok);
  g_assert_error (coiterated.error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_assert_cmpstr (coiterated.error->message, ==, "RuntimeError");
  outcome_clear (&coiterated);
}

static SluiceStepResult
step_fail (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, "RuntimeError");
  return SLUICE_STEP_FAILED;
}

/* A step that fails at once fails the task with its error. */
static void
test_unexpected_error (void)
{
  assert_fails_with_runtime_error (step_fail);
}

static gboolean
wake_with_runtime_error (gpointer user_data)
{
  SluiceCooperativeTask *task = user_data;
  g_autoptr (GError) error = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_FAILED, "RuntimeError");

  sluice_cooperative_task_wake_with_error (task, error);
  return G_SOURCE_REMOVE;
}

static SluiceStepResult
step_wait_then_error_later (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  g_idle_add_full (G_PRIORITY_DEFAULT, wake_with_runtime_error, g_object_ref (task),
                   g_object_unref);
  return SLUICE_STEP_WAIT;
}

/* Work that fails later fails the task with its error. */
static void
test_unexpected_error_actually_later (void)
{
  assert_fails_with_runtime_error (step_wait_then_error_later);
}

static SluiceStepResult
step_wait_already_failed (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  g_autoptr (GError) work_error =
      g_error_new_literal (G_IO_ERROR, G_IO_ERROR_FAILED, "RuntimeError");

  /* The work failed before the step returned (Twisted's defer.fail). */
  sluice_cooperative_task_wake_with_error (task, work_error);
  return SLUICE_STEP_WAIT;
}

/* Work that has already failed when the step returns fails the task. */
static void
test_unexpected_error_not_actually_later (void)
{
  assert_fails_with_runtime_error (step_wait_already_failed);
}

typedef struct
{
  const char *const *things;
  guint next;
  GString *out;
} Things;

static SluiceStepResult
step_append_things (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  Things *things = user_data;

  if (things->things[things->next] == NULL)
    return SLUICE_STEP_DONE;
  g_string_append (things->out, things->things[things->next++]);
  return SLUICE_STEP_CONTINUE;
}

/* Tasks take turns, one step each, in the order they were added. */
static void
test_cooperation (void)
{
  static const char *const groups[4][4] = {
    { "a", "b", "c", NULL },
    { "1", "2", "3", NULL },
    { "d", "e", "f", NULL },
    { "4", "5", "6", NULL },
  };
  SluiceCooperator *cooperator = sluice_cooperator_new ();
  g_autoptr (GString) out = g_string_new ("");
  Things things[4];
  Outcome coiterated[4] = { 0 };

  for (guint i = 0; i < 4; i++)
    {
      things[i] = (Things){ groups[i], 0, out };
      sluice_cooperator_coiterate_async (cooperator, step_append_things, &things[i], NULL, NULL,
                                         on_coiterated, &coiterated[i]);
    }
  for (guint i = 0; i < 4; i++)
    {
      wait_for_outcome (&coiterated[i]);
      g_assert_true (coiterated[i].ok);
    }
  g_assert_cmpstr (out->str, ==, "a1d4b2e5c3f6");
  finish_cooperator (cooperator);
}

typedef struct
{
  gboolean stopped;
  GArray *output;
} Exhaustion;

static SluiceStepResult
step_exhaust (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  Exhaustion *exhaustion = user_data;
  int i = exhaustion->output->len;

  if (i == 100)
    return SLUICE_STEP_DONE;
  g_array_append_val (exhaustion->output, i);
  if (i == 9)
    exhaustion->stopped = TRUE;
  return SLUICE_STEP_CONTINUE;
}

static gboolean
terminate_when_stopped (SluiceCooperator *cooperator,
                        guint n_steps,
                        gint64 tick_start_time,
                        gpointer user_data)
{
  return ((Exhaustion *) user_data)->stopped;
}

/* The termination function ends the tick: after the step that set its
 * flag, ten steps in. */
static void
test_resource_exhaustion (void)
{
  SluiceCooperator *cooperator = sluice_cooperator_new ();
  Exhaustion exhaustion = { FALSE, g_array_new (FALSE, FALSE, sizeof (int)) };
  FakeScheduler scheduler = { 0 };
  Outcome coiterated = { 0 };

  sluice_cooperator_set_scheduler (cooperator, fake_scheduler, &scheduler, NULL);
  sluice_cooperator_set_termination_func (cooperator, terminate_when_stopped, &exhaustion, NULL);
  sluice_cooperator_coiterate_async (cooperator, step_exhaust, &exhaustion, NULL, NULL,
                                     on_coiterated, &coiterated);
  /* Twisted cancels the delayed call and ticks by hand: one pump. */
  g_assert_true (scheduler.pending);
  fake_scheduler_pump (&scheduler, cooperator);
  sluice_cooperator_stop (cooperator);
  g_assert_true (exhaustion.stopped);
  g_assert_cmpuint (exhaustion.output->len, ==, 10);
  for (int i = 0; i < 10; i++)
    g_assert_cmpint (g_array_index (exhaustion.output, int, i), ==, i);

  wait_for_outcome (&coiterated);
  g_assert_error (coiterated.error, SLUICE_ERROR, SLUICE_ERROR_SCHEDULER_STOPPED);
  outcome_clear (&coiterated);
  g_array_unref (exhaustion.output);
  finish_cooperator (cooperator);
}

typedef struct
{
  SluiceCooperator *cooperator;
  Outcome second;
} ReCoiterate;

static void
on_first_coiterated (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ReCoiterate *re = user_data;

  g_assert_true (sluice_cooperator_coiterate_finish (SLUICE_COOPERATOR (source), result, NULL));
  sluice_cooperator_coiterate_async (re->cooperator, step_done_at_once, NULL, NULL, NULL,
                                     on_coiterated, &re->second);
}

/* A completion callback that coiterates again on the same cooperator
 * causes the least scheduling work: one tick asked for at a time, and few
 * in all. */
static void
test_callback_re_coiterate (void)
{
  ReCoiterate re = { 0 };
  FakeScheduler scheduler = { 0 };
  guint work = 0;

  re.cooperator = sluice_cooperator_new ();
  /* fake_scheduler asserts that no tick is asked for twice. */
  sluice_cooperator_set_scheduler (re.cooperator, fake_scheduler, &scheduler, NULL);
  sluice_cooperator_set_termination_func (re.cooperator, always_terminate, NULL, NULL);
  sluice_cooperator_coiterate_async (re.cooperator, step_done_at_once, NULL, NULL, NULL,
                                     on_first_coiterated, &re);
  while (re.second.n_calls == 0)
    {
      work++;
      while (scheduler.pending)
        {
          fake_scheduler_pump (&scheduler, re.cooperator);
          work++;
        }
      g_main_context_iteration (NULL, FALSE);
      g_assert_cmpuint (work, <=, 50);
    }
  g_assert_true (re.second.ok);
  g_assert_cmpuint (scheduler.n_scheduled, ==, 2);
  g_assert_cmpuint (scheduler.n_cancelled, ==, 0);
  finish_cooperator (re.cooperator);
}

static int steps_left_2[2] = { 2, 2 };

/* Removing the last runnable task cancels the tick asked for; a new task
 * asks again. */
static void
test_removing_last_task_stops_scheduled_call (void)
{
  SluiceCooperator *cooperator = sluice_cooperator_new ();
  FakeScheduler scheduler = { 0 };
  g_autoptr (SluiceCooperativeTask) task1 = NULL;
  g_autoptr (SluiceCooperativeTask) task2 = NULL;
  g_autoptr (SluiceCooperativeTask) task3 = NULL;
  int left3 = 2;

  sluice_cooperator_set_scheduler (cooperator, fake_scheduler, &scheduler, NULL);

  /* Two tasks: one tick asked for. */
  task1 = sluice_cooperator_cooperate (cooperator, step_count_down, &steps_left_2[0], NULL);
  task2 = sluice_cooperator_cooperate (cooperator, step_count_down, &steps_left_2[1], NULL);
  g_assert_true (scheduler.pending);
  g_assert_cmpuint (scheduler.n_scheduled, ==, 1);

  /* Removing the first keeps it. */
  g_assert_true (sluice_cooperative_task_stop (task1, NULL));
  g_assert_true (scheduler.pending);
  g_assert_cmpuint (scheduler.n_cancelled, ==, 0);

  /* Removing the second cancels it. */
  g_assert_true (sluice_cooperative_task_stop (task2, NULL));
  g_assert_false (scheduler.pending);
  g_assert_cmpuint (scheduler.n_cancelled, ==, 1);

  /* Another task asks again. */
  task3 = sluice_cooperator_cooperate (cooperator, step_count_down, &left3, NULL);
  g_assert_true (scheduler.pending);
  g_assert_cmpuint (scheduler.n_scheduled, ==, 2);

  sluice_cooperator_stop (cooperator);
  g_assert_false (scheduler.pending);
  g_clear_object (&task1);
  g_clear_object (&task2);
  g_clear_object (&task3);
  finish_cooperator (cooperator);
}

static void
test_running_when_started (void)
{
  SluiceCooperator *cooperator = sluice_cooperator_new ();

  g_assert_true (sluice_cooperator_is_running (cooperator));
  finish_cooperator (cooperator);
}

static SluiceCooperator *
new_unstarted_cooperator (void)
{
  return g_object_new (SLUICE_TYPE_COOPERATOR, "started", FALSE, NULL);
}

static void
test_running_when_not_started (void)
{
  SluiceCooperator *cooperator = new_unstarted_cooperator ();

  g_assert_false (sluice_cooperator_is_running (cooperator));
  finish_cooperator (cooperator);
}

static void
test_running_when_running (void)
{
  SluiceCooperator *cooperator = new_unstarted_cooperator ();
  gboolean running = FALSE;

  sluice_cooperator_start (cooperator);
  g_assert_true (sluice_cooperator_is_running (cooperator));
  g_object_get (cooperator, "running", &running, NULL);
  g_assert_true (running);
  sluice_cooperator_stop (cooperator);
  finish_cooperator (cooperator);
}

static void
test_running_when_stopped (void)
{
  SluiceCooperator *cooperator = new_unstarted_cooperator ();

  sluice_cooperator_start (cooperator);
  sluice_cooperator_stop (cooperator);
  g_assert_false (sluice_cooperator_is_running (cooperator));
  finish_cooperator (cooperator);
}

/* --- AliasTests --- */

/* The default cooperator (Twisted's global cooperate) runs a task on the
 * default main context. */
static void
test_cooperate (void)
{
  SluiceCooperator *cooperator = sluice_cooperator_get_default ();
  g_autoptr (SluiceCooperativeTask) task = NULL;
  int left = 3;
  Outcome done = { 0 };

  g_assert_true (sluice_cooperator_get_default () == cooperator);
  g_assert_true (sluice_cooperator_get_context (cooperator) == g_main_context_default ());
  g_assert_true (sluice_cooperator_is_running (cooperator));
  task = sluice_cooperator_cooperate (cooperator, step_count_down, &left, NULL);
  g_assert_true (sluice_cooperative_task_get_cooperator (task) == cooperator);
  sluice_cooperative_task_when_done_async (task, NULL, on_when_done, &done);
  wait_for_outcome (&done);
  g_assert_true (done.ok);
  g_assert_cmpint (left, ==, 0);
}

/* --- RunStateTests --- */

/* Marks a work entry that was a wait (Twisted appends the Deferred). */
#define DEFERRED (-1)

typedef struct
{
  SluiceCooperator *cooperator;
  FakeScheduler scheduler;
  SluiceCooperativeTask *task;
  gboolean defer_next;
  gboolean stop_next;
  gboolean die_next;
  int i;
  GArray *work;
} RunState;

static SluiceStepResult
worker (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  RunState *rs = user_data;

  rs->i++;
  if (rs->defer_next)
    {
      int deferred = DEFERRED;

      rs->defer_next = FALSE;
      g_array_append_val (rs->work, deferred);
      return SLUICE_STEP_WAIT;
    }
  if (rs->stop_next)
    return SLUICE_STEP_DONE;
  if (rs->die_next)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, "UnhandledException");
      return SLUICE_STEP_FAILED;
    }
  g_array_append_val (rs->work, rs->i);
  return SLUICE_STEP_CONTINUE;
}

/* One step per tick, ticks by hand. */
static void
run_state_setup (RunState *rs, gconstpointer unused)
{
  rs->work = g_array_new (FALSE, FALSE, sizeof (int));
  rs->cooperator = new_unstarted_cooperator ();
  sluice_cooperator_set_scheduler (rs->cooperator, fake_scheduler, &rs->scheduler, NULL);
  sluice_cooperator_set_termination_func (rs->cooperator, always_terminate, NULL, NULL);
  rs->task = sluice_cooperator_cooperate (rs->cooperator, worker, rs, NULL);
  sluice_cooperator_start (rs->cooperator);
}

static void
run_state_teardown (RunState *rs, gconstpointer unused)
{
  sluice_cooperator_stop (rs->cooperator);
  g_clear_object (&rs->task);
  finish_cooperator (rs->cooperator);
  g_array_unref (rs->work);
}

static void
pump (RunState *rs)
{
  fake_scheduler_pump (&rs->scheduler, rs->cooperator);
}

static void
assert_work (RunState *rs, const int *expected, guint n_expected)
{
  g_assert_cmpmem (rs->work->data, rs->work->len * sizeof (int), expected,
                   n_expected * sizeof (int));
}

#define ASSERT_WORK(rs, ...)                                                                       \
  G_STMT_START                                                                                     \
  {                                                                                                \
    static const int expected_[] = { __VA_ARGS__ };                                                \
    assert_work ((rs), expected_, G_N_ELEMENTS (expected_));                                       \
  }                                                                                                \
  G_STMT_END
#define ASSERT_NO_WORK(rs) g_assert_cmpuint ((rs)->work->len, ==, 0)

/* A paused task does not run; resumed, it runs at the next tick. */
static void
test_pause_resume (RunState *rs, gconstpointer unused)
{
  pump (rs);
  ASSERT_WORK (rs, 1);
  pump (rs);
  ASSERT_WORK (rs, 1, 2);

  g_assert_true (sluice_cooperative_task_pause (rs->task, NULL));
  pump (rs);
  ASSERT_WORK (rs, 1, 2);
  g_assert_true (sluice_cooperative_task_resume (rs->task, NULL));
  /* Resuming itself does no work. */
  ASSERT_WORK (rs, 1, 2);
  pump (rs);
  ASSERT_WORK (rs, 1, 2, 3);
}

/* Resuming a task that is not paused fails with NOT_PAUSED. */
static void
test_resume_not_paused (RunState *rs, gconstpointer unused)
{
  GError *error = NULL;

  g_assert_false (sluice_cooperative_task_resume (rs->task, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_NOT_PAUSED);
  g_clear_error (&error);
  g_assert_true (sluice_cooperative_task_pause (rs->task, NULL));
  g_assert_true (sluice_cooperative_task_resume (rs->task, NULL));
  g_assert_false (sluice_cooperative_task_resume (rs->task, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_NOT_PAUSED);
  g_clear_error (&error);
}

/* Pauses stack: paused twice, the task needs two resumes. */
static void
test_pause_twice (RunState *rs, gconstpointer unused)
{
  g_assert_true (sluice_cooperative_task_pause (rs->task, NULL));
  pump (rs);
  ASSERT_NO_WORK (rs);
  g_assert_true (sluice_cooperative_task_pause (rs->task, NULL));
  pump (rs);
  ASSERT_NO_WORK (rs);
  g_assert_true (sluice_cooperative_task_resume (rs->task, NULL));
  pump (rs);
  ASSERT_NO_WORK (rs);
  g_assert_true (sluice_cooperative_task_resume (rs->task, NULL));
  pump (rs);
  ASSERT_WORK (rs, 1);
}

/* A task paused while it waits runs again only after both its wake and
 * its resume. */
static void
test_pause_while_deferred (RunState *rs, gconstpointer unused)
{
  rs->defer_next = TRUE;
  pump (rs);
  ASSERT_WORK (rs, DEFERRED);
  g_assert_cmpint (sluice_cooperative_task_get_state (rs->task), ==,
                   SLUICE_COOPERATIVE_TASK_STATE_WAITING);
  pump (rs);
  ASSERT_WORK (rs, DEFERRED);
  g_assert_true (sluice_cooperative_task_pause (rs->task, NULL));
  pump (rs);
  ASSERT_WORK (rs, DEFERRED);
  g_assert_true (sluice_cooperative_task_resume (rs->task, NULL));
  pump (rs);
  ASSERT_WORK (rs, DEFERRED);
  sluice_cooperative_task_wake (rs->task);
  pump (rs);
  ASSERT_WORK (rs, DEFERRED, 2);
}

/* Every when_done caller gets its own answer, once, when the task is
 * done. */
static void
test_when_done (RunState *rs, gconstpointer unused)
{
  Outcome done1 = { 0 }, done2 = { 0 };

  sluice_cooperative_task_when_done_async (rs->task, NULL, on_when_done, &done1);
  sluice_cooperative_task_when_done_async (rs->task, NULL, on_when_done, &done2);

  rs->stop_next = TRUE;
  pump (rs);
  g_assert_cmpint (sluice_cooperative_task_get_state (rs->task), ==,
                   SLUICE_COOPERATIVE_TASK_STATE_DONE);
  /* Answered from the context, not inside the tick's call. */
  g_assert_cmpuint (done1.n_calls, ==, 0);
  drain_context ();
  g_assert_cmpuint (done1.n_calls, ==, 1);
  g_assert_cmpuint (done2.n_calls, ==, 1);
  g_assert_true (done1.ok);
  g_assert_true (done2.ok);
  drain_context ();
  g_assert_cmpuint (done1.n_calls, ==, 1);
  g_assert_cmpuint (done2.n_calls, ==, 1);
}

/* when_done fails with the step's error when a step fails. */
static void
test_when_done_error (RunState *rs, gconstpointer unused)
{
  Outcome done = { 0 };

  sluice_cooperative_task_when_done_async (rs->task, NULL, on_when_done, &done);
  rs->die_next = TRUE;
  pump (rs);
  drain_context ();
  g_assert_cmpuint (done.n_calls, ==, 1);
  g_assert_false (done.ok);
  g_assert_error (done.error, G_IO_ERROR, G_IO_ERROR_FAILED);
  g_assert_cmpstr (done.error->message, ==, "UnhandledException");
  g_assert_cmpint (sluice_cooperative_task_get_state (rs->task), ==,
                   SLUICE_COOPERATIVE_TASK_STATE_FAILED);
  outcome_clear (&done);
}

/* when_done fails with TASK_STOPPED when the task is stopped. */
static void
test_when_done_stop (RunState *rs, gconstpointer unused)
{
  Outcome done = { 0 };

  sluice_cooperative_task_when_done_async (rs->task, NULL, on_when_done, &done);
  g_assert_true (sluice_cooperative_task_stop (rs->task, NULL));
  g_assert_cmpuint (done.n_calls, ==, 0);
  drain_context ();
  g_assert_cmpuint (done.n_calls, ==, 1);
  g_assert_error (done.error, SLUICE_ERROR, SLUICE_ERROR_TASK_STOPPED);
  outcome_clear (&done);
}

/* when_done on a task that is done answers at once (from the context). */
static void
test_when_done_already_done (RunState *rs, gconstpointer unused)
{
  Outcome done = { 0 };

  rs->stop_next = TRUE;
  pump (rs);
  drain_context ();
  sluice_cooperative_task_when_done_async (rs->task, NULL, on_when_done, &done);
  g_assert_cmpuint (done.n_calls, ==, 0);
  drain_context ();
  g_assert_cmpuint (done.n_calls, ==, 1);
  g_assert_true (done.ok);
}

/* A stopped task does not run, and stop and pause then fail with
 * TASK_STOPPED. */
static void
test_stop_stops (RunState *rs, gconstpointer unused)
{
  GError *error = NULL;

  g_assert_true (sluice_cooperative_task_stop (rs->task, NULL));
  pump (rs);
  ASSERT_NO_WORK (rs);
  g_assert_false (sluice_cooperative_task_stop (rs->task, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_TASK_STOPPED);
  g_clear_error (&error);
  g_assert_false (sluice_cooperative_task_pause (rs->task, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_TASK_STOPPED);
  g_clear_error (&error);
  /* Still not scheduled. */
  g_assert_false (rs->scheduler.pending);
  pump (rs);
  ASSERT_NO_WORK (rs);
}

/* Resuming a paused task that was stopped succeeds and runs nothing. */
static void
test_pause_stop_resume (RunState *rs, gconstpointer unused)
{
  g_assert_true (sluice_cooperative_task_pause (rs->task, NULL));
  g_assert_true (sluice_cooperative_task_stop (rs->task, NULL));
  g_assert_true (sluice_cooperative_task_resume (rs->task, NULL));
  pump (rs);
  ASSERT_NO_WORK (rs);
}

/* A task stopped while it waits is not run again when its work finishes. */
static void
test_stop_deferred (RunState *rs, gconstpointer unused)
{
  rs->defer_next = TRUE;
  pump (rs);
  ASSERT_WORK (rs, DEFERRED);
  g_array_set_size (rs->work, 0);
  g_assert_cmpint (sluice_cooperative_task_get_state (rs->task), ==,
                   SLUICE_COOPERATIVE_TASK_STATE_WAITING);
  pump (rs);
  g_assert_true (sluice_cooperative_task_stop (rs->task, NULL));
  pump (rs);
  sluice_cooperative_task_wake (rs->task);
  pump (rs);
  drain_context ();
  ASSERT_NO_WORK (rs);
  g_assert_cmpint (sluice_cooperative_task_get_state (rs->task), ==,
                   SLUICE_COOPERATIVE_TASK_STATE_STOPPED);
}

/* Stopping a task that is done fails with TASK_DONE. */
static void
test_stop_exhausted (RunState *rs, gconstpointer unused)
{
  GError *error = NULL;

  rs->stop_next = TRUE;
  pump (rs);
  g_assert_false (sluice_cooperative_task_stop (rs->task, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_TASK_DONE);
  g_clear_error (&error);
}

/* Stopping a task that failed fails with TASK_FAILED. */
static void
test_stop_errored (RunState *rs, gconstpointer unused)
{
  GError *error = NULL;

  rs->die_next = TRUE;
  pump (rs);
  g_assert_false (sluice_cooperative_task_stop (rs->task, &error));
  g_assert_error (error, SLUICE_ERROR, SLUICE_ERROR_TASK_FAILED);
  g_clear_error (&error);
}

typedef struct
{
  RunState *rs;
  GPtrArray *phases;
} Reentrancy;

static void
stop_it (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Reentrancy *re = user_data;

  g_assert_true (
      sluice_cooperative_task_when_done_finish (SLUICE_COOPERATIVE_TASK (source), result, NULL));
  g_ptr_array_add (re->phases, "finished");
  /* The task has ended: the cooperator's stop leaves it alone. */
  sluice_cooperator_stop (re->rs->cooperator);
  g_assert_cmpint (sluice_cooperative_task_get_state (re->rs->task), ==,
                   SLUICE_COOPERATIVE_TASK_STATE_DONE);
  g_ptr_array_add (re->phases, "done");
}

/* A when_done callback that stops the cooperator gets all the way through,
 * its task already ended and done. */
static void
test_stop_cooperator_reentrancy (RunState *rs, gconstpointer unused)
{
  Reentrancy re = { rs, g_ptr_array_new () };

  sluice_cooperative_task_when_done_async (rs->task, NULL, stop_it, &re);
  rs->stop_next = TRUE;
  pump (rs);
  drain_context ();
  g_assert_cmpuint (re.phases->len, ==, 2);
  g_assert_cmpstr (g_ptr_array_index (re.phases, 0), ==, "finished");
  g_assert_cmpstr (g_ptr_array_index (re.phases, 1), ==, "done");
  g_assert_false (sluice_cooperator_is_running (rs->cooperator));
  g_ptr_array_unref (re.phases);
}

/* --- Sluice's own --- */

static gboolean
count_dispatch (gpointer user_data)
{
  (*(guint *) user_data)++;
  return G_SOURCE_REMOVE;
}

static SluiceStepResult
step_wait_forever (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  (*(guint *) user_data)++;
  return SLUICE_STEP_WAIT;
}

/* With only waiting and paused tasks, nothing is dispatched: over an idle
 * second the context wakes once, for the timeout that ends the second. */
static void
test_idle_costs_nothing (void)
{
  SluiceCooperator *cooperator = sluice_cooperator_new ();
  g_autoptr (SluiceCooperativeTask) waiting = NULL;
  g_autoptr (SluiceCooperativeTask) paused = NULL;
  int left = 1000;
  guint n_steps = 0, n_timeouts = 0, n_iterations = 0;

  waiting = sluice_cooperator_cooperate (cooperator, step_wait_forever, &n_steps, NULL);
  paused = sluice_cooperator_cooperate (cooperator, step_count_down, &left, NULL);
  g_assert_true (sluice_cooperative_task_pause (paused, NULL));
  while (sluice_cooperative_task_get_state (waiting) != SLUICE_COOPERATIVE_TASK_STATE_WAITING)
    g_main_context_iteration (NULL, TRUE);
  drain_context ();
  g_assert_cmpuint (n_steps, ==, 1);
  g_assert_false (g_main_context_pending (NULL));

  g_timeout_add_seconds (1, count_dispatch, &n_timeouts);
  while (n_timeouts == 0)
    {
      g_main_context_iteration (NULL, TRUE);
      n_iterations++;
    }
  g_assert_cmpuint (n_iterations, ==, 1);
  g_assert_cmpuint (n_steps, ==, 1);
  g_assert_cmpint (left, ==, 1000);

  sluice_cooperator_stop (cooperator);
  g_clear_object (&waiting);
  g_clear_object (&paused);
  finish_cooperator (cooperator);
}

/* Time slices: 0 runs one step per tick, a long one runs every step of the
 * runnable tasks in one tick. */
static void
test_time_slice (void)
{
  SluiceCooperator *cooperator = sluice_cooperator_new ();
  FakeScheduler scheduler = { 0 };
  g_autoptr (SluiceCooperativeTask) a = NULL;
  g_autoptr (SluiceCooperativeTask) b = NULL;
  int left_a = 1000, left_b = 1000;

  g_assert_cmpuint (sluice_cooperator_get_time_slice (cooperator), ==, 10000);
  sluice_cooperator_set_scheduler (cooperator, fake_scheduler, &scheduler, NULL);
  sluice_cooperator_set_time_slice (cooperator, 0);
  a = sluice_cooperator_cooperate (cooperator, step_count_down, &left_a, NULL);
  b = sluice_cooperator_cooperate (cooperator, step_count_down, &left_b, NULL);
  fake_scheduler_pump (&scheduler, cooperator);
  g_assert_cmpint (left_a + left_b, ==, 1999);
  fake_scheduler_pump (&scheduler, cooperator);
  g_assert_cmpint (left_a, ==, 999);
  g_assert_cmpint (left_b, ==, 999);

  g_object_set (cooperator, "time-slice", G_MAXUINT, NULL);
  fake_scheduler_pump (&scheduler, cooperator);
  g_assert_cmpint (sluice_cooperative_task_get_state (a), ==, SLUICE_COOPERATIVE_TASK_STATE_DONE);
  g_assert_cmpint (sluice_cooperative_task_get_state (b), ==, SLUICE_COOPERATIVE_TASK_STATE_DONE);
  g_assert_false (scheduler.pending);

  g_clear_object (&a);
  g_clear_object (&b);
  finish_cooperator (cooperator);
}

typedef struct
{
  SluiceCooperativeTask *task;
  guint n_steps;
} ThreadWake;

static gpointer
wake_from_thread (gpointer user_data)
{
  SluiceCooperativeTask *task = user_data;

  sluice_cooperative_task_wake (task);
  g_object_unref (task);
  return NULL;
}

static SluiceStepResult
step_wait_for_thread (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  guint *n_steps = user_data;

  if (++(*n_steps) == 4)
    return SLUICE_STEP_DONE;
  g_ptr_array_add (waker_threads, g_thread_new ("waker", wake_from_thread, g_object_ref (task)));
  return SLUICE_STEP_WAIT;
}

static gpointer
sleep_a_little (GCancellable *cancellable, gpointer user_data, GError **error)
{
  g_usleep (1000);
  return GINT_TO_POINTER (7);
}

static void
on_thread_work_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  SluiceCooperativeTask *task = user_data;
  GError *error = NULL;
  gpointer value = sluice_task_queue_run_finish (SLUICE_TASK_QUEUE (source), result, &error);

  g_assert_no_error (error);
  g_assert_cmpint (GPOINTER_TO_INT (value), ==, 7);
  sluice_cooperative_task_wake (task);
  g_object_unref (task);
}

static SluiceStepResult
step_thread_work (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  guint *n_steps = user_data;

  if (++(*n_steps) == 4)
    return SLUICE_STEP_DONE;
  sluice_task_queue_run_async (sluice_task_queue_get_default (), sleep_a_little, NULL, NULL, NULL,
                               G_PRIORITY_DEFAULT, NULL, on_thread_work_done, g_object_ref (task));
  return SLUICE_STEP_WAIT;
}

/* A step waits for work in another thread: the task is woken from that
 * thread (data: step_wait_for_thread), or from the context by a task queue
 * callback (step_thread_work); three waits, then done. */
static void
test_wake_from (gconstpointer data)
{
  guint n_steps = 0;
  Outcome coiterated = { 0 };

  waker_threads = g_ptr_array_new_with_free_func ((GDestroyNotify) g_thread_join);
  coiterate_to_end ((SluiceCooperativeStepFunc) data, &n_steps, &coiterated);
  g_assert_true (coiterated.ok);
  g_assert_cmpuint (n_steps, ==, 4);
  outcome_clear (&coiterated);
}

typedef struct
{
  GThread *thread;
  guint n_destroyed;
} DestroyRecord;

static void
record_destroy (gpointer user_data)
{
  DestroyRecord *record = user_data;

  record->thread = g_thread_self ();
  record->n_destroyed++;
}

/* Step data is released once, on the context, after the task ended, not
 * inside the call that ended it. */
static void
test_step_data_destroyed_on_context (void)
{
  SluiceCooperator *cooperator = sluice_cooperator_new ();
  g_autoptr (SluiceCooperativeTask) task = NULL;
  DestroyRecord record = { NULL, 0 };

  task = sluice_cooperator_cooperate (cooperator, step_must_not_run, &record, record_destroy);
  g_assert_true (sluice_cooperative_task_stop (task, NULL));
  g_assert_cmpuint (record.n_destroyed, ==, 0);
  drain_context ();
  g_assert_cmpuint (record.n_destroyed, ==, 1);
  g_assert_true (record.thread == g_thread_self ());
  g_clear_object (&task);
  finish_cooperator (cooperator);
  g_assert_cmpuint (record.n_destroyed, ==, 1);
}

static void
on_state_notify (GObject *object, GParamSpec *pspec, gpointer user_data)
{
  GArray *states = user_data;
  int state = sluice_cooperative_task_get_state (SLUICE_COOPERATIVE_TASK (object));

  g_array_append_val (states, state);
}

/* notify::state follows changes from the context, never inside the call. */
static void
test_state_notify (RunState *rs, gconstpointer unused)
{
  g_autoptr (GArray) states = g_array_new (FALSE, FALSE, sizeof (int));

  g_signal_connect (rs->task, "notify::state", G_CALLBACK (on_state_notify), states);
  g_assert_true (sluice_cooperative_task_pause (rs->task, NULL));
  g_assert_cmpuint (states->len, ==, 0);
  drain_context ();
  g_assert_cmpuint (states->len, ==, 1);
  g_assert_cmpint (g_array_index (states, int, 0), ==, SLUICE_COOPERATIVE_TASK_STATE_PAUSED);
  g_assert_true (sluice_cooperative_task_resume (rs->task, NULL));
  rs->defer_next = TRUE;
  pump (rs);
  drain_context ();
  g_assert_cmpuint (states->len, ==, 2);
  g_assert_cmpint (g_array_index (states, int, 1), ==, SLUICE_COOPERATIVE_TASK_STATE_WAITING);
  g_assert_true (sluice_cooperative_task_stop (rs->task, NULL));
  drain_context ();
  g_assert_cmpuint (states->len, ==, 3);
  g_assert_cmpint (g_array_index (states, int, 2), ==, SLUICE_COOPERATIVE_TASK_STATE_STOPPED);
  g_signal_handlers_disconnect_by_data (rs->task, states);
}

/* A change of state goes to the handlers connected when it happened: one
 * connected after a change (before the context dispatched) sees only the
 * changes after it, and the end. */
static void
test_state_notify_after_connect (RunState *rs, gconstpointer unused)
{
  g_autoptr (GArray) states = g_array_new (FALSE, FALSE, sizeof (int));

  g_assert_true (sluice_cooperative_task_pause (rs->task, NULL));
  g_signal_connect (rs->task, "notify::state", G_CALLBACK (on_state_notify), states);
  drain_context ();
  g_assert_cmpuint (states->len, ==, 0);
  g_assert_cmpint (sluice_cooperative_task_get_state (rs->task), ==,
                   SLUICE_COOPERATIVE_TASK_STATE_PAUSED);
  g_assert_true (sluice_cooperative_task_resume (rs->task, NULL));
  drain_context ();
  g_assert_cmpuint (states->len, ==, 1);
  g_assert_cmpint (g_array_index (states, int, 0), ==, SLUICE_COOPERATIVE_TASK_STATE_RUNNABLE);
  g_assert_true (sluice_cooperative_task_stop (rs->task, NULL));
  drain_context ();
  g_assert_cmpuint (states->len, ==, 2);
  g_assert_cmpint (g_array_index (states, int, 1), ==, SLUICE_COOPERATIVE_TASK_STATE_STOPPED);
  g_signal_handlers_disconnect_by_data (rs->task, states);
}

/* Cancelling a when_done wait answers that wait with CANCELLED and leaves
 * the task and the other waits alone. */
static void
test_when_done_cancelled (RunState *rs, gconstpointer unused)
{
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  Outcome cancelled = { 0 }, other = { 0 };

  sluice_cooperative_task_when_done_async (rs->task, cancellable, on_when_done, &cancelled);
  sluice_cooperative_task_when_done_async (rs->task, NULL, on_when_done, &other);
  g_cancellable_cancel (cancellable);
  drain_context ();
  g_assert_cmpuint (cancelled.n_calls, ==, 1);
  g_assert_error (cancelled.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpuint (other.n_calls, ==, 0);
  pump (rs);
  ASSERT_WORK (rs, 1);
  rs->stop_next = TRUE;
  pump (rs);
  drain_context ();
  g_assert_cmpuint (other.n_calls, ==, 1);
  g_assert_true (other.ok);
  g_assert_cmpuint (cancelled.n_calls, ==, 1);
  outcome_clear (&cancelled);
}

/* Cancelling a coiterate stops its task. */
static void
test_coiterate_cancelled (void)
{
  SluiceCooperator *cooperator = sluice_cooperator_new ();
  FakeScheduler scheduler = { 0 };
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  int left = 1000;
  Outcome coiterated = { 0 };

  sluice_cooperator_set_scheduler (cooperator, fake_scheduler, &scheduler, NULL);
  sluice_cooperator_set_termination_func (cooperator, always_terminate, NULL, NULL);
  sluice_cooperator_coiterate_async (cooperator, step_count_down, &left, NULL, cancellable,
                                     on_coiterated, &coiterated);
  fake_scheduler_pump (&scheduler, cooperator);
  g_assert_cmpint (left, ==, 999);
  g_cancellable_cancel (cancellable);
  wait_for_outcome (&coiterated);
  g_assert_error (coiterated.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  fake_scheduler_pump (&scheduler, cooperator);
  g_assert_cmpint (left, ==, 999);
  g_assert_false (scheduler.pending);
  outcome_clear (&coiterated);
  finish_cooperator (cooperator);
}

static SluiceStepResult
step_return_nonsense (SluiceCooperativeTask *task, gpointer user_data, GError **error)
{
  return (SluiceStepResult) 42;
}

/* Programmer errors are criticals; an invalid step result fails the task. */
static void
test_programmer_errors (void)
{
  SluiceCooperator *cooperator = sluice_cooperator_new ();
  Outcome coiterated = { 0 };

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*step != NULL*");
  g_assert_null (sluice_cooperator_cooperate (cooperator, NULL, NULL, NULL));
  g_test_assert_expected_messages ();

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*SLUICE_IS_COOPERATOR*");
  sluice_cooperator_start (NULL);
  g_test_assert_expected_messages ();

  g_test_expect_message ("Sluice", G_LOG_LEVEL_CRITICAL, "*returned 42*");
  sluice_cooperator_coiterate_async (cooperator, step_return_nonsense, NULL, NULL, NULL,
                                     on_coiterated, &coiterated);
  wait_for_outcome (&coiterated);
  g_test_assert_expected_messages ();
  g_assert_error (coiterated.error, SLUICE_ERROR, SLUICE_ERROR_FAILED);

  outcome_clear (&coiterated);
  finish_cooperator (cooperator);
}

#define ADD_RUN_STATE_TEST(path, func)                                                             \
  g_test_add (path, RunState, NULL, run_state_setup, func, run_state_teardown)

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  /* CooperatorTests */
  g_test_add_func ("/cooperator/CooperatorTests/testStoppedRejectsNewTasks",
                   test_stopped_rejects_new_tasks);
  g_test_add_func ("/cooperator/CooperatorTests/testStopRunning", test_stop_running);
  g_test_add_func ("/cooperator/CooperatorTests/testStopOutstanding", test_stop_outstanding);
  g_test_add_func ("/cooperator/CooperatorTests/testUnexpectedError", test_unexpected_error);
  g_test_add_func ("/cooperator/CooperatorTests/testUnexpectedErrorActuallyLater",
                   test_unexpected_error_actually_later);
  g_test_add_func ("/cooperator/CooperatorTests/testUnexpectedErrorNotActuallyLater",
                   test_unexpected_error_not_actually_later);
  g_test_add_func ("/cooperator/CooperatorTests/testCooperation", test_cooperation);
  g_test_add_func ("/cooperator/CooperatorTests/testResourceExhaustion", test_resource_exhaustion);
  g_test_add_func ("/cooperator/CooperatorTests/testCallbackReCoiterate",
                   test_callback_re_coiterate);
  g_test_add_func ("/cooperator/CooperatorTests/test_removingLastTaskStopsScheduledCall",
                   test_removing_last_task_stops_scheduled_call);
  g_test_add_func ("/cooperator/CooperatorTests/test_runningWhenStarted",
                   test_running_when_started);
  g_test_add_func ("/cooperator/CooperatorTests/test_runningWhenNotStarted",
                   test_running_when_not_started);
  g_test_add_func ("/cooperator/CooperatorTests/test_runningWhenRunning",
                   test_running_when_running);
  g_test_add_func ("/cooperator/CooperatorTests/test_runningWhenStopped",
                   test_running_when_stopped);

  /* AliasTests */
  g_test_add_func ("/cooperator/AliasTests/test_cooperate", test_cooperate);

  /* RunStateTests */
  ADD_RUN_STATE_TEST ("/cooperator/RunStateTests/test_pauseResume", test_pause_resume);
  ADD_RUN_STATE_TEST ("/cooperator/RunStateTests/test_resumeNotPaused", test_resume_not_paused);
  ADD_RUN_STATE_TEST ("/cooperator/RunStateTests/test_pauseTwice", test_pause_twice);
  ADD_RUN_STATE_TEST ("/cooperator/RunStateTests/test_pauseWhileDeferred",
                      test_pause_while_deferred);
  ADD_RUN_STATE_TEST ("/cooperator/RunStateTests/test_whenDone", test_when_done);
  ADD_RUN_STATE_TEST ("/cooperator/RunStateTests/test_whenDoneError", test_when_done_error);
  ADD_RUN_STATE_TEST ("/cooperator/RunStateTests/test_whenDoneStop", test_when_done_stop);
  ADD_RUN_STATE_TEST ("/cooperator/RunStateTests/test_whenDoneAlreadyDone",
                      test_when_done_already_done);
  ADD_RUN_STATE_TEST ("/cooperator/RunStateTests/test_stopStops", test_stop_stops);
  ADD_RUN_STATE_TEST ("/cooperator/RunStateTests/test_pauseStopResume", test_pause_stop_resume);
  ADD_RUN_STATE_TEST ("/cooperator/RunStateTests/test_stopDeferred", test_stop_deferred);
  ADD_RUN_STATE_TEST ("/cooperator/RunStateTests/test_stopExhausted", test_stop_exhausted);
  ADD_RUN_STATE_TEST ("/cooperator/RunStateTests/test_stopErrored", test_stop_errored);
  ADD_RUN_STATE_TEST ("/cooperator/RunStateTests/test_stopCooperatorReentrancy",
                      test_stop_cooperator_reentrancy);

  /* Sluice's own */
  g_test_add_func ("/cooperator/idle-costs-nothing", test_idle_costs_nothing);
  g_test_add_func ("/cooperator/time-slice", test_time_slice);
  g_test_add_data_func ("/cooperator/wake-from/thread", step_wait_for_thread, test_wake_from);
  g_test_add_data_func ("/cooperator/wake-from/task-queue", step_thread_work, test_wake_from);
  g_test_add_func ("/cooperator/step-data-destroyed-on-context",
                   test_step_data_destroyed_on_context);
  ADD_RUN_STATE_TEST ("/cooperator/state-notify", test_state_notify);
  ADD_RUN_STATE_TEST ("/cooperator/state-notify-after-connect", test_state_notify_after_connect);
  ADD_RUN_STATE_TEST ("/cooperator/when-done-cancelled", test_when_done_cancelled);
  g_test_add_func ("/cooperator/coiterate-cancelled", test_coiterate_cancelled);
  g_test_add_func ("/cooperator/programmer-errors", test_programmer_errors);

  return g_test_run ();
}
