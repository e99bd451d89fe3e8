/* sluice-cooperator.c: time-sliced cooperative tasks on a main context
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "sluice-private.h"

/**
 * SluiceCooperator:
 *
 * Runs long work split into steps, in time slices on a [struct@GLib.MainContext],
 * without ever blocking it (after Twisted's `Cooperator`).
 *
 * A task is a [callback@Sluice.CooperativeStepFunc] called again and again
 * until it says it is done or failed. [method@Sluice.Cooperator.cooperate]
 * adds one and returns its [class@Sluice.CooperativeTask] (to pause, resume,
 * stop or wait for); [method@Sluice.Cooperator.coiterate_async] adds one and
 * completes when it ends.
 *
 * Each *tick* runs steps of the runnable tasks in turn (round robin), at
 * least one step, until the slice ends: [property@Sluice.Cooperator:time-slice]
 * has passed (10 ms by default) or the termination function set with
 * [method@Sluice.Cooperator.set_termination_func] says so. The next tick goes
 * on with the task after the last one that ran. A step that starts
 * asynchronous work returns %SLUICE_STEP_WAIT; its task then costs nothing
 * until [method@Sluice.CooperativeTask.wake] is called. When no task is
 * runnable no tick is scheduled and the context can sleep.
 *
 * Ticks run from a source on the cooperator's context (the thread-default
 * context where it was created) at %G_PRIORITY_DEFAULT_IDLE, or when the
 * scheduler hook set with [method@Sluice.Cooperator.set_scheduler] says.
 *
 * Use a cooperator rather than threads for work that must run on the
 * context (it touches objects that are not thread-safe, a UI, a GIO
 * object of that context) but would block it if run in one go, and to
 * chain asynchronous operations one after another.
 *
 * ## Threads and callbacks
 *
 * A cooperator belongs to the thread that runs its context. Its functions
 * and those of its tasks must be called there, except
 * the wake functions, which are safe from any thread. Steps
 * run in that thread. Callbacks ([callback@Gio.AsyncReadyCallback]s,
 * `notify` signals) and the destroy notifies of step data are always
 * dispatched from a source on the cooperator's context, never from inside
 * a call you make: [method@Sluice.CooperativeTask.stop] does not call the
 * `when_done` callbacks before it returns, and `notify::state` follows a
 * change of state when the context next dispatches (read
 * [property@Sluice.CooperativeTask:state] for the state now).
 */

/**
 * SluiceCooperativeTask:
 *
 * A task of a [class@Sluice.Cooperator]: its step function, its state, and
 * the callers waiting for its end.
 *
 * A task is runnable, waiting (for [method@Sluice.CooperativeTask.wake]) or
 * paused, and ends once: done, failed or stopped (see
 * [enum@Sluice.CooperativeTaskState]). Pauses are counted: a task paused
 * twice runs again after two resumes. A task paused while it waits needs both
 * its wake and its resume before it runs again.
 */

typedef enum
{
  PROP_COOPERATOR_0,
  PROP_COOPERATOR_RUNNING,
  PROP_COOPERATOR_STARTED,
  PROP_COOPERATOR_TIME_SLICE,
  N_COOPERATOR_PROPS
} CooperatorProperty;

typedef enum
{
  PROP_TASK_0,
  PROP_TASK_STATE,
  PROP_TASK_COOPERATOR,
  N_TASK_PROPS
} TaskProperty;

static GParamSpec *cooperator_props[N_COOPERATOR_PROPS];
static GParamSpec *task_props[N_TASK_PROPS];
static guint notify_signal_id;

#define DEFAULT_TIME_SLICE_US 10000

struct _SluiceCooperator
{
  GObject parent_instance;

  GMainContext *context;
  /* The thread that made it. The default cooperator has none: it belongs
   * to whichever thread runs the default context. */
  SluiceThreadId owner_thread;
  gboolean has_owner_thread;

  gboolean started;
  gboolean stopped;
  gboolean in_tick;
  gboolean in_source_tick; /* the tick running now came from tick_source */
  gboolean tick_scheduled;
  gboolean running_notified; /* the value "running" was last notified with */
  guint time_slice;

  /* The runnable tasks, a ring by run_link (circular: no link is NULL):
   * next_run is the task whose step runs next, the one before it the last
   * of the round, where a task made runnable goes. A task stays in the
   * ring while its step runs, so a step that continues costs no relinking,
   * only a move of next_run. */
  GList *next_run;
  guint n_runnable;
  GQueue tasks;      /* every task not ended, by all_link; one reference each */
  GQueue deliveries; /* tasks with news for the context, by deliver_link */

  SluiceCooperatorSchedulerFunc scheduler;
  gpointer scheduler_data;
  GDestroyNotify scheduler_data_destroy;
  SluiceCooperatorTerminationFunc termination;
  gpointer termination_data;
  GDestroyNotify termination_data_destroy;

  GSource *tick_source;  /* the default scheduler's, made on first use */
  GSource *event_source; /* wakes from other threads, deliveries */

  /* Guards the wake state of the tasks (their "locked" fields) and woken. */
  GMutex lock;
  GQueue woken; /* tasks woken from another thread, by woken_link */
};

struct _SluiceCooperativeTask
{
  GObject parent_instance;

  SluiceCooperator *cooperator; /* strong */
  SluiceCooperativeStepFunc step;
  gpointer step_data;
  GDestroyNotify step_data_destroy;

  GList run_link;
  GList all_link;
  GList deliver_link;
  gboolean queued;     /* run_link is in the cooperator's ring of runnable tasks */
  gboolean delivering; /* deliver_link is in cooperator->deliveries */
  gboolean released;   /* the step data was destroyed */

  guint pause_count;
  gboolean waiting; /* returned SLUICE_STEP_WAIT, not woken yet */
  gboolean ended;
  SluiceCooperativeTaskState state;
  SluiceCooperativeTaskState notified_state;
  GError *error; /* why it ended, for waiters; NULL when done */
  GQueue waiters;

  /* Under cooperator->lock. */
  gboolean locked_wait_armed;
  gboolean locked_woken_early;
  gboolean locked_ended;
  GError *locked_wake_error;
  GList woken_link;
};

/* A caller of when_done or coiterate. */
typedef struct
{
  SluiceCooperativeTask *task;
  GTask *gtask;
  GSource *cancel_source;
  gboolean stop_task_on_cancel; /* coiterate: cancelling stops the task */
  GList link;
} Waiter;

G_DEFINE_FINAL_TYPE (SluiceCooperator, sluice_cooperator, G_TYPE_OBJECT)
G_DEFINE_FINAL_TYPE (SluiceCooperativeTask, sluice_cooperative_task, G_TYPE_OBJECT)

static void cooperator_dispatch_events (SluiceCooperator *self);
static void task_end (SluiceCooperativeTask *task, SluiceCooperativeTaskState state, GError *error);

/* --- sources --- */

/* The two sources are sluice_wake_source_new()'s: set while there is
 * something to do, at no cost otherwise. They hold the cooperator weakly:
 * a dispatch in progress keeps it alive, a finalized one is not dispatched
 * for. */

static void
cooperator_tick_dispatch (gpointer cooperator)
{
  SluiceCooperator *self = cooperator;

  self->in_source_tick = TRUE;
  sluice_cooperator_tick (self);
  self->in_source_tick = FALSE;
}

/* Whether the tick running now was dispatched from the default scheduler's
 * source (not called by a scheduler hook): then a step runs from a source,
 * not inside a call the application made, and may call its callbacks. */
gboolean
sluice_cooperator_in_source_tick (SluiceCooperator *self)
{
  return self->in_source_tick;
}

static void
cooperator_events_dispatch (gpointer self)
{
  cooperator_dispatch_events (self);
}

/* Whether the calling thread may touch the cooperator's state now. */
static gboolean
cooperator_on_owner_thread (SluiceCooperator *self)
{
  return (self->has_owner_thread && sluice_thread_id_is_self (self->owner_thread)) ||
         g_main_context_is_owner (self->context);
}

/* --- scheduling --- */

static void
default_scheduler (SluiceCooperator *self, gboolean schedule, gpointer user_data)
{
  if (self->tick_source == NULL)
    self->tick_source =
        sluice_wake_source_new (self, cooperator_tick_dispatch, "SluiceCooperator tick",
                                G_PRIORITY_DEFAULT_IDLE, self->context);
  if (schedule)
    sluice_wake_source_set (self->tick_source);
  else
    sluice_wake_source_unset (self->tick_source);
}

static gboolean
time_slice_over (SluiceCooperator *self, guint n_steps, gint64 tick_start_time, gpointer user_data)
{
  return g_get_monotonic_time () - tick_start_time >= (gint64) self->time_slice;
}

static void
cooperator_reschedule (SluiceCooperator *self)
{
  if (self->in_tick || self->tick_scheduled || !self->started || self->stopped ||
      self->n_runnable == 0)
    return;
  self->tick_scheduled = TRUE;
  self->scheduler (self, TRUE, self->scheduler_data);
}

/* Nothing runnable: no tick, so the context can sleep. */
static void
cooperator_unschedule_if_idle (SluiceCooperator *self)
{
  if (!self->tick_scheduled || (self->n_runnable > 0 && !self->stopped))
    return;
  self->tick_scheduled = FALSE;
  self->scheduler (self, FALSE, self->scheduler_data);
}

static void
cooperator_wake_events (SluiceCooperator *self)
{
  sluice_wake_source_set (self->event_source);
}

/* --- task state --- */

static void
task_queue_delivery (SluiceCooperativeTask *task)
{
  SluiceCooperator *self = task->cooperator;

  if (task->delivering)
    return;
  task->delivering = TRUE;
  g_object_ref (task);
  g_queue_push_tail_link (&self->deliveries, &task->deliver_link);
  /* Setting the source takes the context's lock: once per batch. */
  if (self->deliveries.length == 1)
    cooperator_wake_events (self);
}

static void
task_update_state (SluiceCooperativeTask *task)
{
  SluiceCooperativeTaskState state;

  if (task->ended)
    return;
  if (task->pause_count > 0)
    state = SLUICE_COOPERATIVE_TASK_STATE_PAUSED;
  else if (task->waiting)
    state = SLUICE_COOPERATIVE_TASK_STATE_WAITING;
  else
    state = SLUICE_COOPERATIVE_TASK_STATE_RUNNABLE;
  if (state == task->state)
    return;
  task->state = state;
  /* A change nobody listens to costs no dispatch (a job queue's task waits
   * and wakes once per batch of jobs). A handler connected later sees the
   * changes after it, as with any GObject property. */
  if (!g_signal_has_handler_pending (
          task, notify_signal_id, g_param_spec_get_name_quark (task_props[PROP_TASK_STATE]), TRUE))
    {
      task->notified_state = state;
      return;
    }
  task_queue_delivery (task);
}

static void
task_make_runnable (SluiceCooperativeTask *task)
{
  SluiceCooperator *self = task->cooperator;

  if (task->queued || task->ended)
    return;
  task->queued = TRUE;
  /* At the end of the round: just before the next to run. */
  if (self->next_run == NULL)
    {
      task->run_link.next = task->run_link.prev = &task->run_link;
      self->next_run = &task->run_link;
    }
  else
    {
      GList *next = self->next_run;

      task->run_link.next = next;
      task->run_link.prev = next->prev;
      next->prev->next = &task->run_link;
      next->prev = &task->run_link;
    }
  self->n_runnable++;
  cooperator_reschedule (self);
}

static void
task_unqueue (SluiceCooperativeTask *task)
{
  SluiceCooperator *self = task->cooperator;
  GList *link = &task->run_link;

  if (!task->queued)
    return;
  task->queued = FALSE;
  if (link->next == link)
    self->next_run = NULL;
  else
    {
      link->prev->next = link->next;
      link->next->prev = link->prev;
      if (self->next_run == link)
        self->next_run = link->next;
    }
  link->next = link->prev = NULL;
  self->n_runnable--;
  cooperator_unschedule_if_idle (self);
}

/* Ends @task once, with @error (transfer full; NULL when done). */
static void
task_end (SluiceCooperativeTask *task, SluiceCooperativeTaskState state, GError *error)
{
  SluiceCooperator *self = task->cooperator;

  g_assert (!task->ended);

  g_mutex_lock (&self->lock);
  task->locked_ended = TRUE;
  task->locked_wait_armed = FALSE;
  task->locked_woken_early = FALSE;
  g_clear_error (&task->locked_wake_error);
  g_mutex_unlock (&self->lock);

  task->ended = TRUE;
  task->waiting = FALSE;
  task->state = state;
  task->error = error;
  task_unqueue (task);
  /* The live list's reference goes to the delivery, which releases the
   * step data and answers the waiters on the context. */
  task_queue_delivery (task);
  g_queue_unlink (&self->tasks, &task->all_link);
  g_object_unref (task);
}

static GError *
task_state_error (SluiceCooperativeTask *task)
{
  switch (task->state)
    {
    case SLUICE_COOPERATIVE_TASK_STATE_DONE:
      return g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_TASK_DONE,
                                  _ ("The task is already done"));
    case SLUICE_COOPERATIVE_TASK_STATE_FAILED:
      return g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_TASK_FAILED,
                                  _ ("The task has already failed"));
    case SLUICE_COOPERATIVE_TASK_STATE_STOPPED:
    default:
      if (g_error_matches (task->error, SLUICE_ERROR, SLUICE_ERROR_SCHEDULER_STOPPED))
        return g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_SCHEDULER_STOPPED,
                                    _ ("The task was already stopped with its cooperator"));
      return g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_TASK_STOPPED,
                                  _ ("The task was already stopped"));
    }
}

static GError *
scheduler_stopped_error (void)
{
  return g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_SCHEDULER_STOPPED,
                              _ ("The cooperator was stopped"));
}

/* --- wake-ups --- */

/* Applies the wake-ups queued by other threads, on the owner thread. */
static void
cooperator_drain_woken (SluiceCooperator *self)
{
  for (;;)
    {
      SluiceCooperativeTask *task;
      GList *link;
      GError *error;
      gboolean ended;

      g_mutex_lock (&self->lock);
      link = g_queue_pop_head_link (&self->woken);
      if (link == NULL)
        {
          g_mutex_unlock (&self->lock);
          return;
        }
      task = link->data;
      error = g_steal_pointer (&task->locked_wake_error);
      ended = task->locked_ended;
      g_mutex_unlock (&self->lock);

      if (!ended)
        {
          task->waiting = FALSE;
          if (error != NULL)
            task_end (task, SLUICE_COOPERATIVE_TASK_STATE_FAILED, g_steal_pointer (&error));
          else
            {
              if (task->pause_count == 0)
                task_make_runnable (task);
              task_update_state (task);
            }
        }
      g_clear_error (&error);
      g_object_unref (task);
    }
}

/* --- deliveries --- */

static void
waiter_free (Waiter *waiter)
{
  if (waiter->cancel_source != NULL)
    {
      g_source_destroy (waiter->cancel_source);
      g_source_unref (waiter->cancel_source);
    }
  g_clear_object (&waiter->gtask);
  g_free (waiter);
}

static void
waiter_return (Waiter *waiter, const GError *error)
{
  if (error != NULL)
    g_task_return_error (waiter->gtask, g_error_copy (error));
  else
    g_task_return_boolean (waiter->gtask, TRUE);
  waiter_free (waiter);
}

static void
task_deliver (SluiceCooperativeTask *task)
{
  GList *link;

  if (task->state != task->notified_state)
    {
      task->notified_state = task->state;
      g_object_notify_by_pspec (G_OBJECT (task), task_props[PROP_TASK_STATE]);
    }
  if (!task->ended)
    return;
  if (!task->released)
    {
      task->released = TRUE;
      if (task->step_data_destroy != NULL)
        task->step_data_destroy (g_steal_pointer (&task->step_data));
    }
  while ((link = g_queue_pop_head_link (&task->waiters)) != NULL)
    waiter_return (link->data, task->error);
}

static void
cooperator_dispatch_events (SluiceCooperator *self)
{
  GList *link;
  gboolean running;

  cooperator_drain_woken (self);
  while ((link = g_queue_pop_head_link (&self->deliveries)) != NULL)
    {
      SluiceCooperativeTask *task = link->data;

      task->delivering = FALSE;
      task_deliver (task);
      g_object_unref (task);
    }
  running = sluice_cooperator_is_running (self);
  if (running != self->running_notified)
    {
      self->running_notified = running;
      g_object_notify_by_pspec (G_OBJECT (self), cooperator_props[PROP_COOPERATOR_RUNNING]);
    }
}

/* --- SluiceCooperator --- */

static void
sluice_cooperator_init (SluiceCooperator *self)
{
  self->context = g_main_context_ref_thread_default ();
  self->owner_thread = sluice_thread_id_self ();
  self->has_owner_thread = TRUE;
  self->started = TRUE;
  self->time_slice = DEFAULT_TIME_SLICE_US;
  self->scheduler = default_scheduler;
  self->termination = time_slice_over;
  g_mutex_init (&self->lock);
  self->event_source =
      sluice_wake_source_new (self, cooperator_events_dispatch, "SluiceCooperator events",
                              G_PRIORITY_DEFAULT, self->context);
}

static void
sluice_cooperator_constructed (GObject *object)
{
  SluiceCooperator *self = SLUICE_COOPERATOR (object);

  G_OBJECT_CLASS (sluice_cooperator_parent_class)->constructed (object);
  self->running_notified = sluice_cooperator_is_running (self);
}

static void
sluice_cooperator_finalize (GObject *object)
{
  SluiceCooperator *self = SLUICE_COOPERATOR (object);

  /* Live and delivering tasks hold references: none is left. */
  g_assert (self->tasks.length == 0 && self->deliveries.length == 0);

  if (self->tick_source != NULL)
    {
      g_source_destroy (self->tick_source);
      g_source_unref (self->tick_source);
    }
  g_source_destroy (self->event_source);
  g_source_unref (self->event_source);
  if (self->scheduler_data_destroy != NULL)
    self->scheduler_data_destroy (self->scheduler_data);
  if (self->termination_data_destroy != NULL)
    self->termination_data_destroy (self->termination_data);
  g_mutex_clear (&self->lock);
  g_main_context_unref (self->context);

  G_OBJECT_CLASS (sluice_cooperator_parent_class)->finalize (object);
}

static void
sluice_cooperator_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  SluiceCooperator *self = SLUICE_COOPERATOR (object);

  switch ((CooperatorProperty) prop_id)
    {
    case PROP_COOPERATOR_RUNNING:
      g_value_set_boolean (value, sluice_cooperator_is_running (self));
      break;
    case PROP_COOPERATOR_STARTED:
      g_value_set_boolean (value, self->started);
      break;
    case PROP_COOPERATOR_TIME_SLICE:
      g_value_set_uint (value, self->time_slice);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_cooperator_set_property (GObject *object,
                                guint prop_id,
                                const GValue *value,
                                GParamSpec *pspec)
{
  SluiceCooperator *self = SLUICE_COOPERATOR (object);

  switch ((CooperatorProperty) prop_id)
    {
    case PROP_COOPERATOR_STARTED:
      self->started = g_value_get_boolean (value);
      break;
    case PROP_COOPERATOR_TIME_SLICE:
      sluice_cooperator_set_time_slice (self, g_value_get_uint (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_cooperator_class_init (SluiceCooperatorClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->constructed = sluice_cooperator_constructed;
  object_class->finalize = sluice_cooperator_finalize;
  object_class->get_property = sluice_cooperator_get_property;
  object_class->set_property = sluice_cooperator_set_property;

  /**
   * SluiceCooperator:running:
   *
   * Whether the cooperator runs ticks: started and not stopped. Notified
   * from a source on the cooperator's context after a change.
   */
  cooperator_props[PROP_COOPERATOR_RUNNING] = g_param_spec_boolean (
      "running", NULL, NULL, FALSE, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceCooperator:started:
   *
   * Whether the cooperator starts running at once (the default). A
   * cooperator made with this %FALSE keeps the tasks given to it until
   * [method@Sluice.Cooperator.start] is called.
   */
  cooperator_props[PROP_COOPERATOR_STARTED] =
      g_param_spec_boolean ("started", NULL, NULL, TRUE,
                            G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceCooperator:time-slice:
   *
   * How long a tick runs steps, in microseconds (10000, 10 ms, by
   * default): the tick ends at the first look at the clock after this much
   * time has passed. It looks after the first step, then every few steps:
   * as many as ran in about 50 µs so far, at most 32 (reading the clock
   * costs more than a trivial step). A tick thus ends at most 31 steps
   * late, when slow steps follow many quick ones. A tick always runs at
   * least one step. Not used while a termination function is set
   * ([method@Sluice.Cooperator.set_termination_func]), which is asked after
   * every step.
   */
  cooperator_props[PROP_COOPERATOR_TIME_SLICE] =
      g_param_spec_uint ("time-slice", NULL, NULL, 0, G_MAXUINT, DEFAULT_TIME_SLICE_US,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_COOPERATOR_PROPS, cooperator_props);
}

/**
 * sluice_cooperator_new:
 *
 * Creates a started cooperator on the thread-default main context of the
 * calling thread, with a time slice of 10 ms. Make one with
 * [property@Sluice.Cooperator:started] %FALSE (`g_object_new
 * (SLUICE_TYPE_COOPERATOR, "started", FALSE, NULL)`) to add tasks before it
 * runs them.
 *
 * The cooperator belongs to the calling thread, which must be the one that
 * runs that context.
 *
 * Returns: (transfer full): a new cooperator
 */
SluiceCooperator *
sluice_cooperator_new (void)
{
  return g_object_new (SLUICE_TYPE_COOPERATOR, NULL);
}

/**
 * sluice_cooperator_get_default:
 *
 * Returns the process-wide cooperator on the global default main context
 * (Twisted's module-level `cooperate()`), created started on first use. Use
 * it unless you need a cooperator of your own: tasks of several
 * cooperators do not share time slices with each other.
 *
 * This function is safe to call from any thread; the cooperator's other
 * functions must then be called from the thread that runs the global
 * default main context (except [method@Sluice.CooperativeTask.wake]).
 *
 * Returns: (transfer none): the default cooperator
 */
SluiceCooperator *
sluice_cooperator_get_default (void)
{
  static gsize default_cooperator = 0;

  if (g_once_init_enter (&default_cooperator))
    {
      SluiceCooperator *cooperator;

      g_main_context_push_thread_default (g_main_context_default ());
      cooperator = sluice_cooperator_new ();
      g_main_context_pop_thread_default (g_main_context_default ());
      /* Whichever thread made it, it belongs to the one that runs the
       * default context: wakes from elsewhere go through its source. */
      cooperator->has_owner_thread = FALSE;
      g_once_init_leave (&default_cooperator, (gsize) cooperator);
    }
  return (SluiceCooperator *) default_cooperator;
}

/**
 * sluice_cooperator_set_scheduler:
 * @self: a cooperator
 * @func: (nullable) (scope notified) (closure func_data) (destroy func_data_destroy):
 *   the hook that decides when ticks run, or %NULL for the default (a source
 *   on the cooperator's context)
 * @func_data: data for @func
 * @func_data_destroy: (nullable): frees @func_data when the hook is
 *   replaced (in that call) or the cooperator finalized (in the thread that
 *   drops its last reference)
 *
 * Sets the scheduler hook (see [callback@Sluice.CooperatorSchedulerFunc]). A
 * tick requested from the previous hook is taken back from it and asked of
 * the new one.
 *
 * Call it from the cooperator's thread.
 */
void
sluice_cooperator_set_scheduler (SluiceCooperator *self,
                                 SluiceCooperatorSchedulerFunc func,
                                 gpointer func_data,
                                 GDestroyNotify func_data_destroy)
{
  gboolean was_scheduled;

  g_return_if_fail (SLUICE_IS_COOPERATOR (self));

  was_scheduled = self->tick_scheduled;
  if (was_scheduled)
    {
      self->tick_scheduled = FALSE;
      self->scheduler (self, FALSE, self->scheduler_data);
    }
  if (self->scheduler_data_destroy != NULL)
    self->scheduler_data_destroy (self->scheduler_data);
  self->scheduler = func != NULL ? func : default_scheduler;
  self->scheduler_data = func != NULL ? func_data : NULL;
  self->scheduler_data_destroy = func != NULL ? func_data_destroy : NULL;
  if (was_scheduled)
    cooperator_reschedule (self);
}

/**
 * sluice_cooperator_set_termination_func:
 * @self: a cooperator
 * @func: (nullable) (scope notified) (closure func_data) (destroy func_data_destroy):
 *   decides after each step whether the tick ends, or %NULL for the
 *   default ([property@Sluice.Cooperator:time-slice])
 * @func_data: data for @func
 * @func_data_destroy: (nullable): frees @func_data when the function is
 *   replaced (in that call) or the cooperator finalized (in the thread that
 *   drops its last reference)
 *
 * Sets the termination function (see
 * [callback@Sluice.CooperatorTerminationFunc]).
 *
 * Call it from the cooperator's thread.
 */
void
sluice_cooperator_set_termination_func (SluiceCooperator *self,
                                        SluiceCooperatorTerminationFunc func,
                                        gpointer func_data,
                                        GDestroyNotify func_data_destroy)
{
  g_return_if_fail (SLUICE_IS_COOPERATOR (self));

  if (self->termination_data_destroy != NULL)
    self->termination_data_destroy (self->termination_data);
  self->termination = func != NULL ? func : time_slice_over;
  self->termination_data = func != NULL ? func_data : NULL;
  self->termination_data_destroy = func != NULL ? func_data_destroy : NULL;
}

/**
 * sluice_cooperator_get_time_slice:
 * @self: a cooperator
 *
 * Returns [property@Sluice.Cooperator:time-slice].
 *
 * Call it from the cooperator's thread.
 *
 * Returns: the time slice, in microseconds
 */
guint
sluice_cooperator_get_time_slice (SluiceCooperator *self)
{
  g_return_val_if_fail (SLUICE_IS_COOPERATOR (self), 0);

  return self->time_slice;
}

/**
 * sluice_cooperator_set_time_slice:
 * @self: a cooperator
 * @time_slice: the time slice, in microseconds
 *
 * Sets [property@Sluice.Cooperator:time-slice].
 *
 * Call it from the cooperator's thread.
 */
void
sluice_cooperator_set_time_slice (SluiceCooperator *self, guint time_slice)
{
  g_return_if_fail (SLUICE_IS_COOPERATOR (self));

  if (self->time_slice == time_slice)
    return;
  self->time_slice = time_slice;
  g_object_notify_by_pspec (G_OBJECT (self), cooperator_props[PROP_COOPERATOR_TIME_SLICE]);
}

/**
 * sluice_cooperator_get_context:
 * @self: a cooperator
 *
 * Returns the main context the cooperator runs its ticks and callbacks on.
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer none): the cooperator's context
 */
GMainContext *
sluice_cooperator_get_context (SluiceCooperator *self)
{
  g_return_val_if_fail (SLUICE_IS_COOPERATOR (self), NULL);

  return self->context;
}

/**
 * sluice_cooperator_cooperate:
 * @self: a cooperator
 * @step: (scope notified) (closure step_data) (destroy step_data_destroy):
 *   the step function, called until it returns %SLUICE_STEP_DONE or
 *   %SLUICE_STEP_FAILED
 * @step_data: data for @step
 * @step_data_destroy: (nullable): frees @step_data, from a source on the
 *   cooperator's context, after the task ended
 *
 * Adds a task that calls @step on the cooperator's context, a step at a
 * time, sharing the ticks with the other tasks. A stopped cooperator
 * returns a task already stopped (its `when_done` fails with
 * %SLUICE_ERROR_SCHEDULER_STOPPED); one not started yet keeps the task
 * until [method@Sluice.Cooperator.start].
 *
 * The task's first step runs at a coming tick, never inside this call.
 *
 * Call it from the cooperator's thread.
 *
 * Returns: (transfer full): the task
 */
SluiceCooperativeTask *
sluice_cooperator_cooperate (SluiceCooperator *self,
                             SluiceCooperativeStepFunc step,
                             gpointer step_data,
                             GDestroyNotify step_data_destroy)
{
  SluiceCooperativeTask *task;

  g_return_val_if_fail (SLUICE_IS_COOPERATOR (self), NULL);
  g_return_val_if_fail (step != NULL, NULL);

  task = g_object_new (SLUICE_TYPE_COOPERATIVE_TASK, NULL);
  task->cooperator = g_object_ref (self);
  task->step = step;
  task->step_data = step_data;
  task->step_data_destroy = step_data_destroy;

  /* The cooperator's reference, until the task ends. */
  g_queue_push_tail_link (&self->tasks, &task->all_link);
  g_object_ref (task);

  if (self->stopped)
    task_end (task, SLUICE_COOPERATIVE_TASK_STATE_STOPPED, scheduler_stopped_error ());
  else
    task_make_runnable (task);
  return task;
}

static gboolean
waiter_cancelled (GCancellable *cancellable, gpointer user_data)
{
  Waiter *waiter = user_data;
  SluiceCooperativeTask *task = waiter->task;

  if (waiter->stop_task_on_cancel)
    {
      /* Its end answers this waiter (GTask turns the answer into
       * G_IO_ERROR_CANCELLED). */
      if (!task->ended)
        task_end (task, SLUICE_COOPERATIVE_TASK_STATE_STOPPED,
                  g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_TASK_STOPPED,
                                       _ ("The task was stopped")));
      return G_SOURCE_REMOVE;
    }
  g_queue_unlink (&task->waiters, &waiter->link);
  g_task_return_error_if_cancelled (waiter->gtask);
  waiter_free (waiter);
  return G_SOURCE_REMOVE;
}

static void
task_add_waiter (SluiceCooperativeTask *task,
                 GTask *gtask,
                 GCancellable *cancellable,
                 gboolean stop_task_on_cancel)
{
  Waiter *waiter = g_new0 (Waiter, 1);

  waiter->task = task;
  waiter->gtask = gtask;
  waiter->stop_task_on_cancel = stop_task_on_cancel;
  waiter->link.data = waiter;
  g_queue_push_tail_link (&task->waiters, &waiter->link);
  if (cancellable != NULL)
    {
      waiter->cancel_source = g_cancellable_source_new (cancellable);
      g_source_set_callback (waiter->cancel_source, G_SOURCE_FUNC (waiter_cancelled), waiter, NULL);
      g_source_set_static_name (waiter->cancel_source, "SluiceCooperativeTask cancel");
      g_source_attach (waiter->cancel_source, task->cooperator->context);
    }
  /* An ended task answers at once, from the context. */
  if (task->ended)
    task_queue_delivery (task);
}

/**
 * sluice_cooperator_coiterate_async:
 * @self: a cooperator
 * @step: (scope notified) (closure step_data) (destroy step_data_destroy):
 *   the step function
 * @step_data: data for @step
 * @step_data_destroy: (nullable): frees @step_data, from a source on the
 *   cooperator's context, after the task ended
 * @cancellable: (nullable): cancelling it stops the task
 * @callback: (scope async) (closure user_data): called on the cooperator's
 *   context when the task has ended
 * @user_data: data for @callback
 *
 * As [method@Sluice.Cooperator.cooperate], but completes when the task ends
 * instead of returning it. Cancelling @cancellable stops the task, and the
 * operation fails with %G_IO_ERROR_CANCELLED.
 *
 * Call it from the cooperator's thread.
 */
void
sluice_cooperator_coiterate_async (SluiceCooperator *self,
                                   SluiceCooperativeStepFunc step,
                                   gpointer step_data,
                                   GDestroyNotify step_data_destroy,
                                   GCancellable *cancellable,
                                   GAsyncReadyCallback callback,
                                   gpointer user_data)
{
  g_autoptr (SluiceCooperativeTask) task = NULL;
  GTask *gtask;

  g_return_if_fail (SLUICE_IS_COOPERATOR (self));
  g_return_if_fail (step != NULL);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  gtask = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (gtask, sluice_cooperator_coiterate_async);
  g_task_set_name (gtask, "SluiceCooperator coiterate");
  task = sluice_cooperator_cooperate (self, step, step_data, step_data_destroy);
  task_add_waiter (task, gtask, cancellable, TRUE);
}

/**
 * sluice_cooperator_coiterate_finish:
 * @self: a cooperator
 * @result: the result given to the callback
 * @error: return location for an error
 *
 * Finishes [method@Sluice.Cooperator.coiterate_async].
 *
 * Returns: %TRUE when the task finished; %FALSE with @error set when its
 *   step failed (the step's error), it was stopped
 *   (%SLUICE_ERROR_SCHEDULER_STOPPED, %SLUICE_ERROR_TASK_STOPPED) or
 *   cancelled (%G_IO_ERROR_CANCELLED)
 */
gboolean
sluice_cooperator_coiterate_finish (SluiceCooperator *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (SLUICE_IS_COOPERATOR (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (
      g_task_get_source_tag (G_TASK (result)) == sluice_cooperator_coiterate_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * sluice_cooperator_start:
 * @self: a cooperator
 *
 * Starts running ticks (again, after [method@Sluice.Cooperator.stop]).
 *
 * Call it from the cooperator's thread.
 */
void
sluice_cooperator_start (SluiceCooperator *self)
{
  g_return_if_fail (SLUICE_IS_COOPERATOR (self));

  self->started = TRUE;
  self->stopped = FALSE;
  cooperator_reschedule (self);
  cooperator_wake_events (self);
}

/**
 * sluice_cooperator_stop:
 * @self: a cooperator
 *
 * Stops running ticks and ends every task, runnable, waiting and paused
 * ones alike, with %SLUICE_ERROR_SCHEDULER_STOPPED (their `when_done`
 * callbacks follow from the context). Tasks given to the cooperator later
 * end the same way at once, until [method@Sluice.Cooperator.start].
 *
 * It may be called from a step or a callback.
 *
 * Call it from the cooperator's thread.
 */
void
sluice_cooperator_stop (SluiceCooperator *self)
{
  GList *link;

  g_return_if_fail (SLUICE_IS_COOPERATOR (self));

  self->stopped = TRUE;
  while ((link = self->tasks.head) != NULL)
    task_end (link->data, SLUICE_COOPERATIVE_TASK_STATE_STOPPED, scheduler_stopped_error ());
  cooperator_unschedule_if_idle (self);
  cooperator_wake_events (self);
}

/**
 * sluice_cooperator_is_running:
 * @self: a cooperator
 *
 * Returns [property@Sluice.Cooperator:running]: whether the cooperator was
 * started and has not been stopped since.
 *
 * Call it from the cooperator's thread.
 *
 * Returns: whether the cooperator runs ticks
 */
gboolean
sluice_cooperator_is_running (SluiceCooperator *self)
{
  g_return_val_if_fail (SLUICE_IS_COOPERATOR (self), FALSE);

  return self->started && !self->stopped;
}

/**
 * sluice_cooperator_tick:
 * @self: a cooperator
 *
 * Runs one tick now: steps of the runnable tasks in turn until the
 * termination function (or the time slice) ends it, at least one step if a
 * task is runnable. A scheduler hook calls it when the tick it was asked for
 * is due; then the cooperator asks the hook for the next one, if a task is
 * still runnable. A tick of a cooperator that is not running does nothing.
 *
 * Call it from the cooperator's thread, not from a step.
 */
void
sluice_cooperator_tick (SluiceCooperator *self)
{
  gint64 tick_start_time;
  guint n_steps = 0;
  guint next_clock_check = 1;

  g_return_if_fail (SLUICE_IS_COOPERATOR (self));
  g_return_if_fail (!self->in_tick);

  self->tick_scheduled = FALSE;
  if (!sluice_cooperator_is_running (self))
    return;

  g_object_ref (self);
  self->in_tick = TRUE;
  cooperator_drain_woken (self);
  tick_start_time = g_get_monotonic_time ();
  while (!self->stopped && self->next_run != NULL)
    {
      /* No reference per step: a live task is held by the live list, one
       * that ends in its step by its delivery, dispatched after the tick. */
      SluiceCooperativeTask *task = self->next_run->data;
      GError *error = NULL;
      SluiceStepResult result;

      result = task->step (task, task->step_data, &error);
      n_steps++;
      /* The task stays in the ring, last of the round now, unless its step
       * took it out (a pause, a stop): next_run moved on then. */
      if (G_LIKELY (self->next_run == &task->run_link))
        self->next_run = task->run_link.next;

      if (G_UNLIKELY ((result != SLUICE_STEP_CONTINUE || error != NULL) && !task->ended))
        {
          switch (result)
            {
            case SLUICE_STEP_CONTINUE:
              /* Still in the ring, unless paused. */
              break;
            case SLUICE_STEP_DONE:
              task_end (task, SLUICE_COOPERATIVE_TASK_STATE_DONE, NULL);
              break;
            case SLUICE_STEP_WAIT:
              {
                gboolean woken;

                g_mutex_lock (&self->lock);
                woken = task->locked_woken_early;
                task->locked_woken_early = FALSE;
                if (woken)
                  error = g_steal_pointer (&task->locked_wake_error);
                else
                  task->locked_wait_armed = TRUE;
                g_mutex_unlock (&self->lock);
                if (error != NULL)
                  task_end (task, SLUICE_COOPERATIVE_TASK_STATE_FAILED, g_steal_pointer (&error));
                else if (woken)
                  {
                    if (task->pause_count == 0)
                      task_make_runnable (task);
                  }
                else
                  {
                    /* It may have resumed itself in its step. */
                    task_unqueue (task);
                    task->waiting = TRUE;
                    task_update_state (task);
                  }
              }
              break;
            case SLUICE_STEP_FAILED:
              if (error == NULL)
                error = g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_FAILED,
                                             _ ("A step failed without saying why"));
              task_end (task, SLUICE_COOPERATIVE_TASK_STATE_FAILED, g_steal_pointer (&error));
              break;
            default:
              /* g_log(), not the structured g_critical(): GLib 2.74's
               * g_test_expect_message() sees only the former. */
              g_log (G_LOG_DOMAIN, G_LOG_LEVEL_CRITICAL,
                     "A step of a SluiceCooperativeTask returned %d, which is no "
                     "SluiceStepResult",
                     (int) result);
              task_end (task, SLUICE_COOPERATIVE_TASK_STATE_FAILED,
                        g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_FAILED,
                                             _ ("A step returned an invalid result")));
              break;
            }
        }
      if (G_UNLIKELY (error != NULL))
        g_clear_error (&error);

      if (G_UNLIKELY (self->termination != time_slice_over))
        {
          if (self->termination (self, n_steps, tick_start_time, self->termination_data))
            break;
        }
      else if (n_steps >= next_clock_check)
        {
          /* The time slice, with the clock read every few steps: reading
           * it (~20 ns) cost more than a trivial step. A stride is the
           * number of steps that took about 50 µs at the pace seen so far,
           * at most 32 (a tick overshoots its slice by 31 steps at worst,
           * when slow steps follow many quick ones). */
          gint64 now = g_get_monotonic_time ();
          gint64 elapsed = now - tick_start_time;
          guint stride;

          if (elapsed >= (gint64) self->time_slice)
            break;
          stride = elapsed > 0 ? (guint) MIN (50 * (gint64) n_steps / elapsed, 32) : 32;
          next_clock_check = n_steps + MAX (stride, 1);
        }
    }
  self->in_tick = FALSE;
  cooperator_reschedule (self);
  g_object_unref (self);
}

/* --- SluiceCooperativeTask --- */

static void
sluice_cooperative_task_init (SluiceCooperativeTask *self)
{
  self->run_link.data = self;
  self->all_link.data = self;
  self->deliver_link.data = self;
  self->woken_link.data = self;
  self->state = SLUICE_COOPERATIVE_TASK_STATE_RUNNABLE;
  self->notified_state = SLUICE_COOPERATIVE_TASK_STATE_RUNNABLE;
}

static void
sluice_cooperative_task_finalize (GObject *object)
{
  SluiceCooperativeTask *self = SLUICE_COOPERATIVE_TASK (object);

  /* Only an ended task is finalized (the cooperator holds the others), and
   * its delivery released its data and answered its waiters. */
  g_assert (self->released && self->waiters.length == 0);
  g_clear_error (&self->error);
  g_clear_object (&self->cooperator);

  G_OBJECT_CLASS (sluice_cooperative_task_parent_class)->finalize (object);
}

static void
sluice_cooperative_task_get_property (GObject *object,
                                      guint prop_id,
                                      GValue *value,
                                      GParamSpec *pspec)
{
  SluiceCooperativeTask *self = SLUICE_COOPERATIVE_TASK (object);

  switch ((TaskProperty) prop_id)
    {
    case PROP_TASK_STATE:
      g_value_set_enum (value, self->state);
      break;
    case PROP_TASK_COOPERATOR:
      g_value_set_object (value, self->cooperator);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_cooperative_task_class_init (SluiceCooperativeTaskClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = sluice_cooperative_task_finalize;
  object_class->get_property = sluice_cooperative_task_get_property;

  /**
   * SluiceCooperativeTask:state:
   *
   * The state of the task. Notified from a source on the cooperator's
   * context after a change (changes in between may be merged into one
   * notification), to the handlers connected when it changed.
   */
  notify_signal_id = g_signal_lookup ("notify", G_TYPE_OBJECT);
  task_props[PROP_TASK_STATE] =
      g_param_spec_enum ("state", NULL, NULL, SLUICE_TYPE_COOPERATIVE_TASK_STATE,
                         SLUICE_COOPERATIVE_TASK_STATE_RUNNABLE,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceCooperativeTask:cooperator:
   *
   * The cooperator that runs the task.
   */
  task_props[PROP_TASK_COOPERATOR] = g_param_spec_object (
      "cooperator", NULL, NULL, SLUICE_TYPE_COOPERATOR, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_TASK_PROPS, task_props);
}

/**
 * sluice_cooperative_task_get_cooperator:
 * @self: a task
 *
 * Returns the cooperator that runs the task.
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer none): the task's cooperator
 */
SluiceCooperator *
sluice_cooperative_task_get_cooperator (SluiceCooperativeTask *self)
{
  g_return_val_if_fail (SLUICE_IS_COOPERATIVE_TASK (self), NULL);

  return self->cooperator;
}

/**
 * sluice_cooperative_task_get_state:
 * @self: a task
 *
 * Returns [property@Sluice.CooperativeTask:state], as it is now.
 *
 * Call it from the cooperator's thread.
 *
 * Returns: the state of the task
 */
SluiceCooperativeTaskState
sluice_cooperative_task_get_state (SluiceCooperativeTask *self)
{
  g_return_val_if_fail (SLUICE_IS_COOPERATIVE_TASK (self), SLUICE_COOPERATIVE_TASK_STATE_FAILED);

  return self->state;
}

/**
 * sluice_cooperative_task_pause:
 * @self: a task
 * @error: return location for an error
 *
 * Pauses the task: no step of it runs until it is resumed as many times as
 * it was paused. A step in progress (this may be called from a step) ends
 * as it likes; a task that waits keeps waiting for its wake.
 *
 * Call it from the cooperator's thread.
 *
 * Returns: %TRUE; %FALSE with @error set when the task has ended
 *   (%SLUICE_ERROR_TASK_DONE, %SLUICE_ERROR_TASK_FAILED,
 *   %SLUICE_ERROR_TASK_STOPPED or %SLUICE_ERROR_SCHEDULER_STOPPED)
 */
gboolean
sluice_cooperative_task_pause (SluiceCooperativeTask *self, GError **error)
{
  g_return_val_if_fail (SLUICE_IS_COOPERATIVE_TASK (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (self->ended)
    {
      g_propagate_error (error, task_state_error (self));
      return FALSE;
    }
  self->pause_count++;
  task_unqueue (self);
  task_update_state (self);
  return TRUE;
}

/**
 * sluice_cooperative_task_resume:
 * @self: a task
 * @error: return location for an error
 *
 * Takes back one [method@Sluice.CooperativeTask.pause]. The last one makes
 * the task runnable (if it does not wait): its next step runs at a coming
 * tick, never inside this call. Resuming a paused task that has ended since
 * succeeds and does nothing else.
 *
 * Call it from the cooperator's thread.
 *
 * Returns: %TRUE; %FALSE with %SLUICE_ERROR_NOT_PAUSED when the task was not
 *   paused
 */
gboolean
sluice_cooperative_task_resume (SluiceCooperativeTask *self, GError **error)
{
  g_return_val_if_fail (SLUICE_IS_COOPERATIVE_TASK (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (self->pause_count == 0)
    {
      g_set_error_literal (error, SLUICE_ERROR, SLUICE_ERROR_NOT_PAUSED,
                           _ ("The task is not paused"));
      return FALSE;
    }
  self->pause_count--;
  if (self->pause_count == 0 && !self->waiting)
    task_make_runnable (self);
  task_update_state (self);
  return TRUE;
}

/**
 * sluice_cooperative_task_stop:
 * @self: a task
 * @error: return location for an error
 *
 * Stops the task: no step of it runs again, a wake it waits for is
 * ignored, and it ends with %SLUICE_ERROR_TASK_STOPPED (the `when_done`
 * callbacks follow from the context, never inside this call). It may be
 * called from the task's own step.
 *
 * Call it from the cooperator's thread.
 *
 * Returns: %TRUE; %FALSE with @error set when the task had already ended:
 *   %SLUICE_ERROR_TASK_DONE, %SLUICE_ERROR_TASK_FAILED,
 *   %SLUICE_ERROR_TASK_STOPPED or %SLUICE_ERROR_SCHEDULER_STOPPED
 */
gboolean
sluice_cooperative_task_stop (SluiceCooperativeTask *self, GError **error)
{
  g_return_val_if_fail (SLUICE_IS_COOPERATIVE_TASK (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (self->ended)
    {
      g_propagate_error (error, task_state_error (self));
      return FALSE;
    }
  task_end (
      self, SLUICE_COOPERATIVE_TASK_STATE_STOPPED,
      g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_TASK_STOPPED, _ ("The task was stopped")));
  return TRUE;
}

static void
task_wake (SluiceCooperativeTask *self, const GError *error)
{
  SluiceCooperator *cooperator = self->cooperator;
  gboolean queued = FALSE;

  g_mutex_lock (&cooperator->lock);
  if (!self->locked_ended)
    {
      g_clear_error (&self->locked_wake_error);
      if (error != NULL)
        self->locked_wake_error = g_error_copy (error);
      if (self->locked_wait_armed)
        {
          self->locked_wait_armed = FALSE;
          g_object_ref (self);
          g_queue_push_tail_link (&cooperator->woken, &self->woken_link);
          queued = TRUE;
        }
      else
        self->locked_woken_early = TRUE;
    }
  g_mutex_unlock (&cooperator->lock);

  if (!queued)
    return;
  if (cooperator_on_owner_thread (cooperator))
    cooperator_drain_woken (cooperator);
  else
    cooperator_wake_events (cooperator);
}

/**
 * sluice_cooperative_task_wake:
 * @self: a task whose step returned %SLUICE_STEP_WAIT
 *
 * Ends the wait of the task: call it when the asynchronous work the step
 * started has finished. The task becomes runnable again (if not paused). A wake that comes while
 * the step is still running (the work finished at once) is kept for its %SLUICE_STEP_WAIT. A task
 * that ended meanwhile ignores it.
 *
 * Call it, or [method@Sluice.CooperativeTask.wake_with_error], once for each
 * %SLUICE_STEP_WAIT, while you hold a reference on the task. This function
 * is safe to call from any thread.
 */
void
sluice_cooperative_task_wake (SluiceCooperativeTask *self)
{
  g_return_if_fail (SLUICE_IS_COOPERATIVE_TASK (self));

  task_wake (self, NULL);
}

/**
 * sluice_cooperative_task_wake_with_error:
 * @self: a task whose step returned %SLUICE_STEP_WAIT
 * @error: why the work it waited for failed
 *
 * Ends the wait of the task with a failure: the task fails with a copy of
 * @error (the asynchronous operation failed). Otherwise as
 * [method@Sluice.CooperativeTask.wake].
 *
 * This function is safe to call from any thread.
 */
void
sluice_cooperative_task_wake_with_error (SluiceCooperativeTask *self, const GError *error)
{
  g_return_if_fail (SLUICE_IS_COOPERATIVE_TASK (self));
  g_return_if_fail (error != NULL);

  task_wake (self, error);
}

/**
 * sluice_cooperative_task_when_done_async:
 * @self: a task
 * @cancellable: (nullable): cancels this wait (not the task)
 * @callback: (scope async) (closure user_data): called on the cooperator's
 *   context when the task has ended
 * @user_data: data for @callback
 *
 * Waits for the end of the task. Any number of callers may wait; each is
 * answered once, from a source on the context (at once if the task has
 * already ended, but never inside this call).
 *
 * Call it from the cooperator's thread.
 */
void
sluice_cooperative_task_when_done_async (SluiceCooperativeTask *self,
                                         GCancellable *cancellable,
                                         GAsyncReadyCallback callback,
                                         gpointer user_data)
{
  GTask *gtask;

  g_return_if_fail (SLUICE_IS_COOPERATIVE_TASK (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  gtask = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (gtask, sluice_cooperative_task_when_done_async);
  g_task_set_name (gtask, "SluiceCooperativeTask when_done");
  task_add_waiter (self, gtask, cancellable, FALSE);
}

/**
 * sluice_cooperative_task_when_done_finish:
 * @self: a task
 * @result: the result given to the callback
 * @error: return location for an error
 *
 * Finishes [method@Sluice.CooperativeTask.when_done_async].
 *
 * Returns: %TRUE when the task finished (%SLUICE_STEP_DONE); %FALSE with
 *   @error set when it failed (the step's error, or the one given to
 *   [method@Sluice.CooperativeTask.wake]), was stopped
 *   (%SLUICE_ERROR_TASK_STOPPED, %SLUICE_ERROR_SCHEDULER_STOPPED) or the
 *   wait was cancelled (%G_IO_ERROR_CANCELLED)
 */
gboolean
sluice_cooperative_task_when_done_finish (SluiceCooperativeTask *self,
                                          GAsyncResult *result,
                                          GError **error)
{
  g_return_val_if_fail (SLUICE_IS_COOPERATIVE_TASK (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (
      g_task_get_source_tag (G_TASK (result)) == sluice_cooperative_task_when_done_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}
