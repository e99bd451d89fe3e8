/* sluice-thread-worker.c: a worker with threads of its own
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "sluice-private.h"
#include "sluice-worker-private.h"

#include "sluice-function-registry-private.h"

/**
 * SluiceThreadWorker:
 *
 * A [iface@Sluice.Worker] that runs named functions in threads of its
 * own: always the same threads, started with its first task and kept until
 * it is stopped, crashed or finalized. With one thread (the default), every
 * call it serves runs in that one thread: the worker for code that must
 * always run on the same thread (libraries that are not thread-safe, or
 * keep per-thread state).
 *
 * Functions are registered by name with
 * [method@Sluice.ThreadWorker.register]; a [class@Sluice.TaskQueue] that
 * hired the worker sends them named calls
 * ([method@Sluice.TaskQueue.call_async]) of the default series and of the
 * series given at construction. A call of a name that is not registered
 * fails with %SLUICE_ERROR_UNKNOWN_FUNCTION; arguments of another type than
 * the one registered fail with %SLUICE_ERROR_INVALID_ARGUMENTS.
 *
 * A thread cannot be killed: a function that passes its call's timeout
 * sees its cancellable cancelled and keeps its thread until it returns (its
 * result is dropped). [method@Sluice.Worker.crash] lets the threads leave
 * after the function they are in.
 *
 * `SluiceThreadWorker` is MT-safe.
 */

/* What the threads share with the object: they hold references on it,
 * not on the object, so that the object can be finalized (and joins them)
 * while they wait. */
typedef struct
{
  GMutex mutex;
  GCond cond;
  GQueue pending;          /* of SluiceWorkerTask (owned), by priority */
  GPtrArray *running;      /* of SluiceWorkerTask (owned) in a function */
  GPtrArray *stop_waiters; /* of GTask (owned) */
  gboolean stopping;       /* stop_async was called */
  gboolean crashed;        /* crash was called, or the object finalized */
  SluiceFunctionRegistry *registry;
} State;

struct _SluiceThreadWorker
{
  GObject parent_instance;

  char **series; /* (owned) (nullable) */
  guint n_threads;
  State *state;       /* (owned) a reference */
  GPtrArray *threads; /* of GThread (owned), under the state's mutex */
};

static void sluice_thread_worker_iface_init (SluiceWorkerInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (SluiceThreadWorker,
                               sluice_thread_worker,
                               G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (SLUICE_TYPE_WORKER,
                                                      sluice_thread_worker_iface_init))

enum
{
  PROP_0,
  PROP_SERIES,
  PROP_N_THREADS,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void
state_clear (gpointer data)
{
  State *state = data;

  g_assert (g_queue_is_empty (&state->pending));
  g_ptr_array_unref (state->running);
  g_ptr_array_unref (state->stop_waiters);
  sluice_function_registry_free (state->registry);
  g_cond_clear (&state->cond);
  g_mutex_clear (&state->mutex);
}

static void
state_unref (State *state)
{
  g_atomic_rc_box_release_full (state, state_clear);
}

/* Once stopping and idle, takes the stop operations to complete. */
static GPtrArray *
take_stop_waiters_if_idle_locked (State *state)
{
  GPtrArray *waiters;

  if (!(state->stopping || state->crashed) || !g_queue_is_empty (&state->pending) ||
      state->running->len > 0 || state->stop_waiters->len == 0)
    return NULL;
  waiters = g_steal_pointer (&state->stop_waiters);
  state->stop_waiters = g_ptr_array_new ();
  return waiters;
}

static void
run_one (State *state, SluiceWorkerTask *task)
{
  GCancellable *cancellable = sluice_worker_task_get_cancellable (task);
  GError *error = NULL;
  GVariant *result;

  if (!sluice_worker_task_is_wanted (task) ||
      g_cancellable_set_error_if_cancelled (cancellable, &error))
    {
      if (error == NULL)
        g_set_error_literal (&error, G_IO_ERROR, G_IO_ERROR_CANCELLED,
                             _ ("The call was cancelled"));
      sluice_worker_task_return_error (task, error);
      g_error_free (error);
      return;
    }

  result = sluice_function_registry_call (state->registry, sluice_worker_task_get_name (task),
                                          sluice_worker_task_get_args (task), cancellable, &error);
  if (result != NULL)
    {
      sluice_worker_task_return_value (task, result);
      g_variant_unref (result);
    }
  else
    {
      sluice_worker_task_return_error (task, error);
      g_error_free (error);
    }
}

static gpointer
thread_main (gpointer data)
{
  State *state = data; /* the thread's reference */

  g_mutex_lock (&state->mutex);
  for (;;)
    {
      SluiceWorkerTask *task;
      GPtrArray *waiters;

      while (g_queue_is_empty (&state->pending) && !state->crashed && !state->stopping)
        g_cond_wait (&state->cond, &state->mutex);
      if (state->crashed || g_queue_is_empty (&state->pending))
        break;

      /* One reference for the running list (a crash takes it), one for
       * this thread. */
      task = g_queue_pop_head (&state->pending);
      g_ptr_array_add (state->running, g_object_ref (task));
      g_mutex_unlock (&state->mutex);

      run_one (state, task);

      g_mutex_lock (&state->mutex);
      if (g_ptr_array_remove_fast (state->running, task))
        g_object_unref (task);
      g_object_unref (task);
      waiters = take_stop_waiters_if_idle_locked (state);
      if (waiters != NULL)
        {
          g_mutex_unlock (&state->mutex);
          sluice_worker_complete_stop_waiters (waiters);
          g_mutex_lock (&state->mutex);
        }
    }
  g_mutex_unlock (&state->mutex);

  state_unref (state);
  return NULL;
}

static int
compare_tasks (gconstpointer a, gconstpointer b, gpointer user_data)
{
  SluiceWorkerTask *ta = (SluiceWorkerTask *) a, *tb = (SluiceWorkerTask *) b;
  int pa = sluice_worker_task_get_priority (ta), pb = sluice_worker_task_get_priority (tb);
  guint64 sa = sluice_worker_task_get_sequence (ta), sb = sluice_worker_task_get_sequence (tb);

  if (pa != pb)
    return pa < pb ? -1 : 1;
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

static void
sluice_thread_worker_run_task (SluiceWorker *worker, SluiceWorkerTask *task)
{
  SluiceThreadWorker *self = SLUICE_THREAD_WORKER (worker);
  State *state = self->state;

  g_mutex_lock (&state->mutex);
  if (state->crashed || state->stopping)
    {
      g_mutex_unlock (&state->mutex);
      /* Not a worker any more: a queue that still hires it was told not
       * to (see sluice_worker_stop_async ()). */
      sluice_worker_task_give_back (task, TRUE);
      return;
    }
  g_queue_insert_sorted (&state->pending, g_object_ref (task), compare_tasks, NULL);
  while (self->threads->len < self->n_threads)
    {
      GError *error = NULL;
      GThread *thread =
          g_thread_try_new ("sluice-worker", thread_main, g_atomic_rc_box_acquire (state), &error);

      if (thread == NULL)
        {
          /* The threads already started run the work; with none, it waits
           * for the next try. */
          g_warning ("Could not start a thread for a thread worker: %s", error->message);
          g_clear_error (&error);
          state_unref (state);
          break;
        }
      g_ptr_array_add (self->threads, thread);
    }
  g_cond_signal (&state->cond);
  g_mutex_unlock (&state->mutex);
}

static char **
sluice_thread_worker_get_series (SluiceWorker *worker)
{
  return g_strdupv (SLUICE_THREAD_WORKER (worker)->series);
}

static guint
sluice_thread_worker_get_capacity (SluiceWorker *worker)
{
  return SLUICE_THREAD_WORKER (worker)->n_threads;
}

static void
sluice_thread_worker_stop_async (SluiceWorker *worker,
                                 GCancellable *cancellable,
                                 GAsyncReadyCallback callback,
                                 gpointer user_data)
{
  SluiceThreadWorker *self = SLUICE_THREAD_WORKER (worker);
  State *state = self->state;
  GTask *task = g_task_new (self, cancellable, callback, user_data);
  GPtrArray *waiters;

  g_task_set_source_tag (task, sluice_thread_worker_stop_async);

  g_mutex_lock (&state->mutex);
  state->stopping = TRUE;
  g_ptr_array_add (state->stop_waiters, task);
  waiters = take_stop_waiters_if_idle_locked (state);
  g_cond_broadcast (&state->cond);
  g_mutex_unlock (&state->mutex);

  sluice_worker_complete_stop_waiters (waiters);
}

static gboolean
sluice_thread_worker_stop_finish (SluiceWorker *worker, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, worker), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

static GPtrArray *
crash_locked (State *state)
{
  GPtrArray *tasks = g_ptr_array_new_with_free_func (g_object_unref);
  SluiceWorkerTask *task;

  state->crashed = TRUE;
  while ((task = g_queue_pop_head (&state->pending)) != NULL)
    g_ptr_array_add (tasks, task);
  for (guint i = 0; i < state->running->len; i++)
    g_ptr_array_add (tasks, state->running->pdata[i]);
  g_ptr_array_set_size (state->running, 0);
  g_cond_broadcast (&state->cond);
  return tasks;
}

static GPtrArray *
sluice_thread_worker_crash (SluiceWorker *worker)
{
  SluiceThreadWorker *self = SLUICE_THREAD_WORKER (worker);
  State *state = self->state;
  GPtrArray *tasks, *waiters;

  g_mutex_lock (&state->mutex);
  tasks = crash_locked (state);
  waiters = take_stop_waiters_if_idle_locked (state);
  g_mutex_unlock (&state->mutex);

  sluice_worker_complete_stop_waiters (waiters);
  return tasks;
}

static void
sluice_thread_worker_iface_init (SluiceWorkerInterface *iface)
{
  iface->get_series = sluice_thread_worker_get_series;
  iface->get_capacity = sluice_thread_worker_get_capacity;
  iface->run_task = sluice_thread_worker_run_task;
  iface->stop_async = sluice_thread_worker_stop_async;
  iface->stop_finish = sluice_thread_worker_stop_finish;
  iface->crash = sluice_thread_worker_crash;
}

static void
sluice_thread_worker_finalize (GObject *object)
{
  SluiceThreadWorker *self = SLUICE_THREAD_WORKER (object);
  State *state = self->state;
  GPtrArray *tasks;
  GThread *current = g_thread_self ();

  /* A task given to it directly and never run is given back. */
  g_mutex_lock (&state->mutex);
  tasks = crash_locked (state);
  g_mutex_unlock (&state->mutex);
  for (guint i = 0; i < tasks->len; i++)
    sluice_worker_task_give_back (tasks->pdata[i], FALSE);
  g_ptr_array_unref (tasks);

  /* The threads leave after the function they are in. */
  for (guint i = 0; i < self->threads->len; i++)
    {
      GThread *thread = self->threads->pdata[i];

      if (thread == current)
        g_thread_unref (thread);
      else
        g_thread_join (thread);
    }
  g_ptr_array_unref (self->threads);
  state_unref (state);
  g_strfreev (self->series);

  G_OBJECT_CLASS (sluice_thread_worker_parent_class)->finalize (object);
}

static void
sluice_thread_worker_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  SluiceThreadWorker *self = SLUICE_THREAD_WORKER (object);

  switch (prop_id)
    {
    case PROP_SERIES:
      g_value_set_boxed (value, self->series);
      break;
    case PROP_N_THREADS:
      g_value_set_uint (value, self->n_threads);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_thread_worker_set_property (GObject *object,
                                   guint prop_id,
                                   const GValue *value,
                                   GParamSpec *pspec)
{
  SluiceThreadWorker *self = SLUICE_THREAD_WORKER (object);

  switch (prop_id)
    {
    case PROP_SERIES:
      g_strfreev (self->series);
      self->series = g_value_dup_boxed (value);
      break;
    case PROP_N_THREADS:
      self->n_threads = MAX (g_value_get_uint (value), 1);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_thread_worker_class_init (SluiceThreadWorkerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = sluice_thread_worker_finalize;
  object_class->get_property = sluice_thread_worker_get_property;
  object_class->set_property = sluice_thread_worker_set_property;

  /**
   * SluiceThreadWorker:series:
   *
   * The series the worker serves besides the default one.
   */
  properties[PROP_SERIES] =
      g_param_spec_boxed ("series", NULL, NULL, G_TYPE_STRV,
                          G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceThreadWorker:n-threads:
   *
   * How many threads the worker has: the number of calls it runs at once,
   * and its capacity. 1 (the default) runs every call in the same thread.
   */
  properties[PROP_N_THREADS] =
      g_param_spec_uint ("n-threads", NULL, NULL, 1, 1024, 1,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
sluice_thread_worker_init (SluiceThreadWorker *self)
{
  State *state = g_atomic_rc_box_new0 (State);

  g_mutex_init (&state->mutex);
  g_cond_init (&state->cond);
  g_queue_init (&state->pending);
  state->running = g_ptr_array_new ();
  state->stop_waiters = g_ptr_array_new ();
  state->registry = sluice_function_registry_new ();
  self->state = state;
  self->threads = g_ptr_array_new ();
  self->n_threads = 1;
}

/**
 * sluice_thread_worker_new:
 * @series: (nullable) (array zero-terminated=1): the series it serves
 *   besides the default one, or %NULL
 * @n_threads: how many threads it has (at least 1): 1 runs every call in
 *   the same thread
 *
 * Creates a worker with threads of its own, for a
 * [method@Sluice.TaskQueue.hire]. Its threads start with its first task.
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer full): a new thread worker
 */
SluiceThreadWorker *
sluice_thread_worker_new (const char *const *series, guint n_threads)
{
  return g_object_new (SLUICE_TYPE_THREAD_WORKER, "series", series, "n-threads", MAX (n_threads, 1),
                       NULL);
}

/**
 * sluice_thread_worker_get_n_threads:
 * @self: a thread worker
 *
 * Gets the number of threads of @self.
 *
 * This function is safe to call from any thread.
 *
 * Returns: the number of threads
 */
guint
sluice_thread_worker_get_n_threads (SluiceThreadWorker *self)
{
  g_return_val_if_fail (SLUICE_IS_THREAD_WORKER (self), 1);

  return self->n_threads;
}

/**
 * sluice_thread_worker_register:
 * @self: a thread worker
 * @name: the name that calls use
 * @args_type: (nullable): the [struct@GLib.VariantType] (as a string) its
 *   arguments must have, such as `"(si)"`; %NULL for any
 * @func: (scope notified) (closure func_data) (destroy func_data_destroy):
 *   the function
 * @func_data: data for @func
 * @func_data_destroy: (nullable): frees @func_data when @func is replaced
 *   or @self is finalized
 *
 * Registers @func under @name: a named call of @name
 * ([method@Sluice.TaskQueue.call_async]) that @self takes runs it in a
 * thread of @self. A function registered earlier under the same name is
 * replaced (calls that run it finish first).
 *
 * This function is safe to call from any thread.
 */
void
sluice_thread_worker_register (SluiceThreadWorker *self,
                               const char *name,
                               const char *args_type,
                               SluiceNamedFunc func,
                               gpointer func_data,
                               GDestroyNotify func_data_destroy)
{
  g_return_if_fail (SLUICE_IS_THREAD_WORKER (self));
  g_return_if_fail (name != NULL);
  g_return_if_fail (args_type == NULL || g_variant_type_string_is_valid (args_type));
  g_return_if_fail (func != NULL);

  sluice_function_registry_add (self->state->registry, name, args_type, func, func_data,
                                func_data_destroy);
}
