/* sluice-process-worker.c: a worker that runs named calls in helper
 * processes
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "sluice-private.h"
#include "sluice-worker-private.h"

#include "sluice-worker-dbus.h"
#include "sluice-worker-wire-private.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/**
 * SluiceProcessWorker:
 *
 * A [iface@Sluice.Worker] that runs named calls in helper processes: a
 * crash, a leak or a stuck call there cannot take the caller's process
 * down, and CPU-bound work in languages with a global lock runs in
 * parallel.
 *
 * It starts [property@Sluice.ProcessWorker:n-processes] copies of a
 * helper program (its [property@Sluice.ProcessWorker:argv]) as
 * [class@Gio.Subprocess]es, with its first task, and speaks D-Bus peer to
 * peer with each over the helper's standard input and output
 * ([class@Gio.DBusConnection] on the subprocess's pipes; the interface
 * `org.sluice.Worker1`, whose XML is `src/org.sluice.Worker1.xml`). The
 * helper serves named functions with a [class@Sluice.WorkerService]; the
 * `sluice-worker` tool is a ready-made helper that loads them from
 * modules.
 *
 * Each process holds up to [property@Sluice.ProcessWorker:max-calls]
 * calls at once (run in its own threads). How many it holds (its window)
 * adapts to the time its calls take: about 10 ms of its work (at least
 * 4), so that quick calls go in big batches and slow ones do not wait
 * long in a process behind others. The worker's capacity (the tasks its
 * [class@Sluice.TaskQueue] gives it at once) is the sum of the windows,
 * and follows them ([signal@Sluice.Worker::capacity-changed]): the calls
 * beyond them stay in the queue, where another worker can take them.
 * The calls that are ready for a process go to it at once, in one
 * message (the `CallMany` method of the protocol): batches grow when
 * calls come faster than they can be sent, and a call never waits for
 * others to join it. Outcomes come back gathered the same way (the
 * `Results` signal).
 *
 * - A process that dies (or closes its connection, or sends a malformed
 *   batch of results: a warning says so) is started again; the
 *   calls it held whose outcomes had not arrived go back to the queue
 *   ([method@Sluice.WorkerTask.give_back] with a lost worker), to run on
 *   another process, each alone (so that the calls that merely waited
 *   next to the one that killed the process are not charged again): a
 *   call that was in three processes that died fails with
 *   %SLUICE_ERROR_WORKER_LOST instead of killing more.
 * - A call past its timeout fails ([method@Sluice.TaskQueue.call_async]);
 *   the process running it is killed and started again, and its other
 *   calls go back to the queue (not counted as lost).
 * - Cancelling a call cancels the function's cancellable in the helper.
 * - A helper that cannot be started, exits (or is killed by a signal other
 *   than `SIGKILL`, which comes from outside) before it is ready, or does
 *   not speak the protocol (it writes something else on its standard
 *   output) makes the calls waiting for it fail with
 *   %SLUICE_ERROR_WORKER_FAILED and a message that says so, while no
 *   process of the worker is ready; it is tried again for the next calls.
 *
 * The worker lives on the thread-default main context of the thread that
 * created it (its *owner context*, which must run): processes are
 * started and spoken to there. [method@Sluice.Worker.stop_async] closes
 * the connections once the calls it holds are done (a helper then exits),
 * and [method@Sluice.Worker.crash] kills the processes. Finalizing a
 * worker kills its processes too.
 *
 * `SluiceProcessWorker` is MT-safe.
 */

#define WORKER_OBJECT_PATH "/org/sluice/Worker"
#define WORKER_INTERFACE "org.sluice.Worker1"
/* How long a helper whose connection failed may take to exit, so that
 * the error can name its exit status. */
#define EXIT_WAIT_MS 1000
/* How long a stopped helper may take to exit before it is killed. */
#define EXIT_GRACE_MS 5000
/* The window of a process adapts to the time its calls take (measured
 * from the worker: what the process answers per µs while it holds calls,
 * the round trips in it): about WINDOW_TARGET_US of its work, so that a
 * call does not wait long there behind others (priorities and the spread
 * over the processes happen in the worker) while quick calls go in
 * batches big enough to share their messages. Within MIN_WINDOW (or
 * max-calls if less) and max-calls; a process starts at MIN_WINDOW. */
#define WINDOW_TARGET_US 10000.0
#define MIN_WINDOW 4
/* Calls ready for a process that holds more than half its window, and at
 * least this much of its work, wait to go with the next ones (see
 * proc_coalesces_locked ()); only with short calls (a window of at least
 * COALESCE_MIN_WINDOW): slow ones fill the process's threads at once. */
#define COALESCE_WORK_US 1000.0
#define COALESCE_MIN_WINDOW 16

typedef enum
{
  PROC_DOWN,
  PROC_STARTING,
  PROC_READY,
} ProcState;

/* A helper process as /proc names it: its pid, and its start time (in
 * clock ticks since boot), which tells it from a later process that got
 * the same pid. */
typedef struct
{
  char pid[16];
  guint64 start_time;
} ChildId;

typedef struct _Proc Proc;

/* A call sent to a process. */
typedef struct
{
  SluiceWorkerTask *task; /* (owned) */
  gboolean suspect;       /* it was in a process that died: it runs alone */
  guint64 id;
  Proc *proc;
  GDBusConnection *connection; /* (owned) (nullable): for Cancel, if its caller can cancel it */
  gulong cancelled_id;
} InFlight;

struct _Proc
{
  SluiceProcessWorker *self; /* the worker owns this */
  ProcState state;
  GSubprocess *process;        /* (owned) (nullable) */
  GDBusConnection *connection; /* (owned) (nullable) while ready */
  gulong closed_id;
  guint filter_id; /* of the Results filter, while ready */
  /* Cancelled when this process goes down: replies and notifications of
   * it that come later are dropped. */
  GCancellable *life;     /* (owned) (nullable) */
  GSource *start_timeout; /* (owned) (nullable) */
  GHashTable *in_flight;  /* &InFlight.id -> InFlight (owned) */
  gint64 retry_at;        /* monotonic µs: not started again before */
  guint n_start_failures; /* in a row */
  gboolean kill_not_lost; /* killed for a timeout: its calls are not lost */
  GError *start_error;    /* (owned) (nullable): its connection failed */
  ChildId child_id;       /* of @process, read when it started */
  /* Its window (the most calls it holds now), from the time its calls
   * take: see proc_measure_locked (). Under the mutex. */
  guint window;
  double call_us;   /* µs per call it answered while busy (average), or 0 */
  gint64 busy_mark; /* monotonic µs since its last answer while it held
                     * calls (or since it got calls), or -1 */
};

/* Results signals that GDBus's thread took (results_filter_cb ()), for
 * the pump. Shared with the filters, which may run after their removal. */
typedef struct
{
  gatomicrefcount ref;
  GMutex mutex;
  GQueue items;          /* of InboxItem, under the mutex */
  GSource *pump;         /* (owned) */
  GMainContext *context; /* (owned): the pump's, kept alive for it */
} Inbox;

typedef struct
{
  GDBusMessage *message; /* (owned) */
  Proc *proc;
  GCancellable *life; /* (owned): the life of @proc that sent it */
} InboxItem;

/* The data of a Results filter: one life of a process. */
typedef struct
{
  Inbox *inbox; /* (owned) */
  Proc *proc;
  GCancellable *life; /* (owned) */
} ResultsFilter;

struct _SluiceProcessWorker
{
  GObject parent_instance;

  char **argv;   /* (owned) */
  char **series; /* (owned) (nullable) */
  guint n_processes;
  guint max_calls;
  guint start_timeout_ms;
  GMainContext *context; /* (owned): the owner context */
  GSource *pump;         /* (owned): on the owner context */
  Inbox *inbox;          /* (owned) */

  GMutex mutex;
  /* Under the mutex. */
  GQueue pending;       /* of SluiceWorkerTask (owned), by priority */
  GPtrArray *timed_out; /* of SluiceWorkerTask (owned) */
  Proc *procs;
  guint64 next_id;
  guint capacity;  /* (atomic): the sum of the processes' windows */
  gboolean active; /* it had a task: keep the processes up */
  gboolean stopping;
  gboolean crashed;
  GPtrArray *stop_waiters; /* of GTask (owned) */
  /* Counters (sluice_process_worker_get_stats ()). */
  guint64 n_sent;            /* calls sent */
  guint64 n_call_messages;   /* CallMany messages sent */
  guint64 n_outcomes;        /* outcomes received */
  guint64 n_result_messages; /* Results messages received */
};

static void sluice_process_worker_iface_init (SluiceWorkerInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (SluiceProcessWorker,
                               sluice_process_worker,
                               G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (SLUICE_TYPE_WORKER,
                                                      sluice_process_worker_iface_init))

enum
{
  PROP_0,
  PROP_ARGV,
  PROP_SERIES,
  PROP_N_PROCESSES,
  PROP_MAX_CALLS,
  PROP_START_TIMEOUT,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

static void proc_start (Proc *proc);
static gboolean start_timeout_cb (gpointer data);

/* What a callback of one process's life gets: once that life is
 * cancelled (the process went down, or the worker was disposed), the
 * callback must not touch @proc. */
typedef struct
{
  Proc *proc;
  GCancellable *life; /* (owned) */
} ProcRef;

static ProcRef *
proc_ref_new (Proc *proc)
{
  ProcRef *ref = g_new (ProcRef, 1);

  ref->proc = proc;
  ref->life = g_object_ref (proc->life);
  return ref;
}

/* Frees @ref; returns its process, or NULL if that life is over. */
static Proc *
proc_ref_take (ProcRef *ref)
{
  Proc *proc = g_cancellable_is_cancelled (ref->life) ? NULL : ref->proc;

  g_object_unref (ref->life);
  g_free (ref);
  return proc;
}

/* Makes the pump run on the owner context. Any thread. */
static void
pump_wake (SluiceProcessWorker *self)
{
  g_source_set_ready_time (self->pump, 0);
}

static void
pump_wake_at (SluiceProcessWorker *self, gint64 when)
{
  gint64 current = g_source_get_ready_time (self->pump);

  if (current < 0 || when < current)
    g_source_set_ready_time (self->pump, when);
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
in_flight_free (gpointer data)
{
  InFlight *in_flight = data;

  g_clear_object (&in_flight->task);
  g_clear_object (&in_flight->connection);
  g_free (in_flight);
}

/* Outside the mutex, never from inside the task's cancelled handler. */
static void
in_flight_disconnect (InFlight *in_flight)
{
  if (in_flight->cancelled_id != 0)
    g_cancellable_disconnect (sluice_worker_task_get_cancellable (in_flight->task),
                              in_flight->cancelled_id);
  in_flight->cancelled_id = 0;
}

/* ---- results ------------------------------------------------------------ */

static Inbox *
inbox_ref (Inbox *inbox)
{
  g_atomic_ref_count_inc (&inbox->ref);
  return inbox;
}

static void
inbox_item_free (gpointer data)
{
  InboxItem *item = data;

  g_object_unref (item->message);
  g_object_unref (item->life);
  g_free (item);
}

static void
inbox_unref (Inbox *inbox)
{
  if (!g_atomic_ref_count_dec (&inbox->ref))
    return;
  g_queue_clear_full (&inbox->items, inbox_item_free);
  g_source_unref (inbox->pump);
  g_main_context_unref (inbox->context);
  g_mutex_clear (&inbox->mutex);
  g_free (inbox);
}

static void
results_filter_free (gpointer data)
{
  ResultsFilter *filter = data;

  inbox_unref (filter->inbox);
  g_object_unref (filter->life);
  g_free (filter);
}

/* Takes Results signals of a process as they arrive, in GDBus's thread,
 * into the inbox, and wakes the pump: one wake-up of the owner context
 * for all the signals that arrive meanwhile. */
static GDBusMessage *
results_filter_cb (GDBusConnection *connection,
                   GDBusMessage *message,
                   gboolean incoming,
                   gpointer user_data)
{
  ResultsFilter *filter = user_data;
  InboxItem *item;
  gboolean wake;

  if (!incoming || g_dbus_message_get_message_type (message) != G_DBUS_MESSAGE_TYPE_SIGNAL ||
      g_strcmp0 (g_dbus_message_get_interface (message), WORKER_INTERFACE) != 0 ||
      g_strcmp0 (g_dbus_message_get_member (message), "Results") != 0)
    return message;
  item = g_new (InboxItem, 1);
  item->message = message;
  item->proc = filter->proc;
  item->life = g_object_ref (filter->life);
  g_mutex_lock (&filter->inbox->mutex);
  /* The first item wakes the pump, which takes them all (the owner
   * context's lock is not taken again for the others). */
  wake = g_queue_is_empty (&filter->inbox->items);
  g_queue_push_tail (&filter->inbox->items, item);
  g_mutex_unlock (&filter->inbox->mutex);
  if (wake)
    g_source_set_ready_time (filter->inbox->pump, 0);
  return NULL;
}

static void proc_take_down (Proc *proc);

static void
malformed_add (GPtrArray **malformed, InboxItem *item)
{
  if (*malformed == NULL)
    *malformed = g_ptr_array_new ();
  g_ptr_array_add (*malformed, item);
}

/* @proc answered @n calls at @now: its time per call, and its window.
 * With the mutex. */
static void
proc_measure_locked (Proc *proc, guint n, gint64 now)
{
  SluiceProcessWorker *self = proc->self;
  double sample, want;

  if (n == 0 || proc->busy_mark < 0)
    return;
  sample = (double) MAX (now - proc->busy_mark, 1) / n;
  proc->call_us = proc->call_us > 0 ? 0.75 * proc->call_us + 0.25 * sample : sample;
  proc->busy_mark = g_hash_table_size (proc->in_flight) > 0 ? now : -1;
  want = WINDOW_TARGET_US / proc->call_us;
  proc->window = (guint) CLAMP (want, MIN (MIN_WINDOW, self->max_calls), self->max_calls);
}

/* The worker's capacity (what the task queue gives it at once) follows the
 * windows of its processes: the tasks beyond them would only wait here,
 * while another worker of the queue could run them. TRUE if it changed.
 * With the mutex. */
static gboolean
capacity_update_locked (SluiceProcessWorker *self)
{
  guint capacity = 0;

  for (guint p = 0; p < self->n_processes; p++)
    capacity += self->procs[p].window;
  if (capacity == (guint) g_atomic_int_get (&self->capacity))
    return FALSE;
  g_atomic_int_set (&self->capacity, capacity);
  return TRUE;
}

/* Completes the calls whose results are in the inbox; a process that sent
 * a malformed batch goes down. Owner context, without the mutex. */
static void
inbox_drain (SluiceProcessWorker *self)
{
  GQueue items = G_QUEUE_INIT;
  GPtrArray *done; /* InFlight, then its result or NULL, then its error or NULL */
  InboxItem *item;
  SluiceWorkerTask **tasks;
  GVariant **outcomes;
  GError **errors;
  guint n;
  GPtrArray *malformed = NULL; /* of InboxItem, borrowed */
  gint64 now = g_get_monotonic_time ();
  gboolean capacity_changed;

  g_mutex_lock (&self->inbox->mutex);
  items = self->inbox->items;
  g_queue_init (&self->inbox->items);
  g_mutex_unlock (&self->inbox->mutex);
  if (items.length == 0)
    return;

  done = g_ptr_array_new ();
  g_mutex_lock (&self->mutex);
  for (GList *l = items.head; l != NULL; l = l->next)
    {
      GVariant *results;
      SluiceWireValuesView values;
      gsize n_errors, n_names, n_messages;
      const guint64 *error_ids;
      GVariant *names, *messages;
      const char **error_names, **error_messages;

      item = l->data;
      /* A process that went down gave its calls back already. */
      if (g_cancellable_is_cancelled (item->life))
        continue;
      results = sluice_wire_unpack (item->message, SLUICE_WIRE_RESULTS_TYPE);
      if (results == NULL)
        {
          malformed_add (&malformed, item);
          continue;
        }
      error_ids = sluice_wire_child_array (results, 4, sizeof (guint64), &n_errors);
      names = g_variant_get_child_value (results, 5);
      messages = g_variant_get_child_value (results, 6);
      error_names = sluice_wire_strv (names, &n_names);
      error_messages = sluice_wire_strv (messages, &n_messages);
      if (!sluice_wire_values_view (results, 0, &values) || n_names != n_errors ||
          n_messages != n_errors)
        malformed_add (&malformed, item);
      else
        {
          guint n_before = g_hash_table_size (item->proc->in_flight);

          self->n_result_messages++;
          self->n_outcomes += values.n + n_errors;

          for (gsize i = 0; i < values.n; i++)
            {
              InFlight *in_flight = NULL;
              GError *error = NULL;

              if (!g_hash_table_steal_extended (item->proc->in_flight, &values.ids[i], NULL,
                                                (gpointer *) &in_flight))
                continue;
              g_ptr_array_add (done, in_flight);
              g_ptr_array_add (done, sluice_wire_values_get (&values, i, &error));
              g_ptr_array_add (done, error);
            }
          for (gsize i = 0; i < n_errors; i++)
            {
              InFlight *in_flight = NULL;
              GError *error;

              if (!g_hash_table_steal_extended (item->proc->in_flight, &error_ids[i], NULL,
                                                (gpointer *) &in_flight))
                continue;
              /* Its domain and code, as GDBus decodes them. */
              error = g_dbus_error_new_for_dbus_error (error_names[i], error_messages[i]);
              g_dbus_error_strip_remote_error (error);
              g_ptr_array_add (done, in_flight);
              g_ptr_array_add (done, NULL);
              g_ptr_array_add (done, error);
            }
          proc_measure_locked (item->proc, n_before - g_hash_table_size (item->proc->in_flight),
                               now);
        }
      sluice_wire_values_view_clear (&values);
      g_free (error_names);
      g_free (error_messages);
      g_variant_unref (names);
      g_variant_unref (messages);
      g_variant_unref (results);
    }
  capacity_changed = capacity_update_locked (self);
  g_mutex_unlock (&self->mutex);

  /* The task queue gives it tasks up to its new capacity. */
  if (capacity_changed)
    sluice_worker_capacity_changed (SLUICE_WORKER (self));

  /* All completed at once: one delivery of the next calls. */
  n = done->len / 3;
  tasks = g_new (SluiceWorkerTask *, n);
  outcomes = g_new (GVariant *, n);
  errors = g_new (GError *, n);
  for (guint i = 0; i < n; i++)
    {
      InFlight *in_flight = done->pdata[3 * i];

      in_flight_disconnect (in_flight);
      tasks[i] = in_flight->task;
      outcomes[i] = done->pdata[3 * i + 1];
      errors[i] = done->pdata[3 * i + 2];
    }
  sluice_calls_tasks_completed (tasks, outcomes, errors, n, FALSE);
  for (guint i = 0; i < n; i++)
    in_flight_free (done->pdata[3 * i]);
  g_free (tasks);
  g_free (outcomes);
  g_free (errors);
  g_ptr_array_unref (done);

  /* A process that sent a malformed batch does not speak the protocol
   * (its calls cannot be told apart): it goes down as if it had died. */
  for (guint i = 0; malformed != NULL && i < malformed->len; i++)
    {
      item = malformed->pdata[i];
      if (g_cancellable_is_cancelled (item->life))
        continue;
      g_log (G_LOG_DOMAIN, G_LOG_LEVEL_WARNING,
             "A helper process of “%s” sent a malformed batch of results: its connection is "
             "closed, and its calls go back to the queue as if it had died",
             self->argv[0]);
      proc_take_down (item->proc);
    }
  g_clear_pointer (&malformed, g_ptr_array_unref);
  g_queue_clear_full (&items, inbox_item_free);
}

/* ---- a process going down -------------------------------------------- */

static gboolean
delayed_kill_cb (gpointer data)
{
  g_subprocess_force_exit (data);
  return G_SOURCE_REMOVE;
}

/* How often a helper that went down is looked at until it is reaped, and
 * for how long at most. */
#define REAP_CHECK_MS 500
#define REAP_CHECKS 120

typedef struct
{
  ChildId id;
  GWeakRef process; /* its GSubprocess while GLib watches it */
  guint n_checks;
  guint n_zombie; /* checks in a row that found it a zombie */
} ReapWatch;

/* The state letter of process @pid if it is a child of this process ('Z'
 * for a zombie), 0 if there is no such child (reaped, or the pid is now
 * another process's); its start time in @start_time. */
static char
child_state (const char *pid, guint64 *start_time)
{
  g_autofree char *path = g_build_filename ("/proc", pid, "stat", NULL);
  g_autofree char *stat = NULL;
  const char *end;
  char state;
  long ppid;
  unsigned long long start;

  if (!g_file_get_contents (path, &stat, NULL, NULL))
    return 0;
  end = strrchr (stat, ')'); /* after "pid (comm" */
  /* Fields 3 (state), 4 (ppid) and 22 (start time) of proc(5). */
  if (end == NULL ||
      sscanf (end + 1,
              " %c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
              &state, &ppid, &start) != 3 ||
      ppid != (long) getpid ())
    return 0;
  *start_time = start;
  return state;
}

/* GLib (before 2.76, where child watches use pidfds) reaps a child when a
 * SIGCHLD makes its worker thread look at every child it watches; under
 * load a helper that went down was seen to stay a zombie, unreaped, until
 * another child exited (CI: test-process-worker waited 60 s for it). A
 * helper found a zombie twice in a row is reaped by a SIGCHLD raised here:
 * GLib's handler looks again (it reaps only the children it watches).
 *
 * A second kind was seen under ASan (session 11, ~2 in 45 loaded runs):
 * GLib had completed the helper's GSubprocess (its identifier NULL), yet
 * /proc listed a zombie child of ours under its pid. Session 12 caught one
 * (ASan, load ~35, /process-worker/dispose-kills after sigkill-stress, 1
 * in ~20 runs): GLib had dropped the GSubprocess (finalized: its child
 * watch had fired), yet the helper, same pid and same start time (so not
 * a later process), was still our zombie; waitpid (pid, WNOHANG | __WALL)
 * here reaped it at once, wait status 9 (SIGKILL). Why GLib 2.74's child
 * watch fired without reaping it is not known (no ECHILD warning, which a
 * test makes fatal, was logged). So a helper that GLib no longer watches
 * (its GSubprocess gone or without identifier), still our zombie with the
 * same start time, is reaped here, and the debug log says so with what
 * GLib had reported.
 * The watch holds the pid, its start time and a weak reference
 * to the GSubprocess only, not its pipes. */
static gboolean
reap_check_cb (gpointer data)
{
  ReapWatch *watch = data;
  guint64 start_time = 0;
  char state = child_state (watch->id.pid, &start_time);
  GSubprocess *process;
  gboolean watched;

  if (state != 0 && start_time != watch->id.start_time)
    state = 0; /* another process has its pid: it was reaped */
  if (state == 0 || ++watch->n_checks > REAP_CHECKS)
    {
      g_debug ("Helper process %s (started at %" G_GUINT64_FORMAT "): %s", watch->id.pid,
               watch->id.start_time, state == 0 ? "reaped" : "not reaped, left to GLib");
      return G_SOURCE_REMOVE;
    }
  if (state != 'Z')
    {
      watch->n_zombie = 0;
      return G_SOURCE_CONTINUE;
    }
  process = g_weak_ref_get (&watch->process);
  watched = process != NULL && g_subprocess_get_identifier (process) != NULL;
  if (!watched)
    {
      int status = 0;
      pid_t pid = (pid_t) g_ascii_strtoll (watch->id.pid, NULL, 10);
      pid_t reaped = waitpid (pid, &status, WNOHANG | __WALL);

      g_debug ("Helper process %s: GLib no longer watches it (%s %d), yet it is still our "
               "zombie: waitpid () gives %d, wait status %d",
               watch->id.pid,
               process == NULL                        ? "its GSubprocess is gone, status"
               : g_subprocess_get_if_exited (process) ? "it said exit status"
                                                      : "it said signal",
               process == NULL                        ? -1
               : g_subprocess_get_if_exited (process) ? g_subprocess_get_exit_status (process)
                                                      : g_subprocess_get_term_sig (process),
               (int) reaped, status);
    }
  else if (++watch->n_zombie >= 2)
    {
      g_debug ("Helper process %s is still a zombie: raising SIGCHLD", watch->id.pid);
      kill (getpid (), SIGCHLD);
      watch->n_zombie = 0;
    }
  g_clear_object (&process);
  return G_SOURCE_CONTINUE;
}

static void
reap_watch_free (gpointer data)
{
  ReapWatch *watch = data;

  g_weak_ref_clear (&watch->process);
  g_free (watch);
}

/* What @process (just started, or NULL) is, for the reap watch. */
static void
child_id_read (ChildId *id, GSubprocess *process)
{
  const char *pid = process != NULL ? g_subprocess_get_identifier (process) : NULL;

  id->pid[0] = '\0';
  if (pid == NULL)
    return;
  g_strlcpy (id->pid, pid, sizeof id->pid);
  if (child_state (id->pid, &id->start_time) == 0)
    id->pid[0] = '\0';
}

/* Watches @process (started as @id), which went down, until it is
 * reaped. */
static void
reap_watch_start (GSubprocess *process, const ChildId *id, GMainContext *context)
{
  ReapWatch *watch;
  GSource *source;

  if (id->pid[0] == '\0')
    return; /* its start time could not be read */
  watch = g_new0 (ReapWatch, 1);
  watch->id = *id;
  g_weak_ref_init (&watch->process, process);
  source = g_timeout_source_new (REAP_CHECK_MS);
  g_source_set_callback (source, reap_check_cb, watch, reap_watch_free);
  g_source_set_static_name (source, "SluiceProcessWorker reap");
  g_source_attach (source, context);
  g_source_unref (source);
}

/* Takes the process down: its calls go back to the queue (lost, unless it
 * was killed for a timeout or is stopping). Owner context, with the mutex
 * held; what to do afterwards goes into @given_back (InFlight). */
static void
proc_down_locked (Proc *proc, GPtrArray *given_back)
{
  SluiceProcessWorker *self = proc->self;
  GHashTableIter iter;
  gpointer value;

  if (proc->state == PROC_DOWN)
    return;
  g_hash_table_iter_init (&iter, proc->in_flight);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      g_ptr_array_add (given_back, value);
      g_hash_table_iter_steal (&iter);
    }
  proc->state = PROC_DOWN;
  proc->busy_mark = -1;
  g_clear_error (&proc->start_error);
  g_cancellable_cancel (proc->life);
  g_clear_object (&proc->life);
  if (proc->start_timeout != NULL)
    {
      g_source_destroy (proc->start_timeout);
      g_clear_pointer (&proc->start_timeout, g_source_unref);
    }
  if (proc->connection != NULL)
    {
      g_dbus_connection_remove_filter (proc->connection, proc->filter_id);
      g_signal_handler_disconnect (proc->connection, proc->closed_id);
      g_dbus_connection_close (proc->connection, NULL, NULL, NULL);
      g_clear_object (&proc->connection);
    }
  if (proc->process != NULL)
    {
      if (self->stopping && !self->crashed)
        {
          /* It exits on its own once its connection is closed. */
          GSource *source = g_timeout_source_new (EXIT_GRACE_MS);

          g_source_set_callback (source, delayed_kill_cb, g_object_ref (proc->process),
                                 g_object_unref);
          g_source_attach (source, self->context);
          g_source_unref (source);
        }
      else
        g_subprocess_force_exit (proc->process);
      reap_watch_start (proc->process, &proc->child_id, self->context);
      g_clear_object (&proc->process);
    }
}

static GPtrArray *
take_stop_waiters_if_done_locked (SluiceProcessWorker *self)
{
  GPtrArray *waiters;

  if (!self->stopping || self->stop_waiters->len == 0 || !g_queue_is_empty (&self->pending))
    return NULL;
  for (guint i = 0; i < self->n_processes; i++)
    if (self->procs[i].state != PROC_DOWN)
      return NULL;
  waiters = g_steal_pointer (&self->stop_waiters);
  self->stop_waiters = g_ptr_array_new ();
  return waiters;
}

/* Gives back what a process that went down held. Outside the mutex. */
static void
give_back_all (GPtrArray *given_back, gboolean lost)
{
  for (guint i = 0; i < given_back->len; i++)
    {
      InFlight *in_flight = given_back->pdata[i];

      in_flight_disconnect (in_flight);
      sluice_worker_task_give_back (in_flight->task, lost);
      in_flight_free (in_flight);
    }
  g_ptr_array_unref (given_back);
}

/* The process @proc went down (it exited, or its connection closed). Owner
 * context. */
static void
proc_went_down (Proc *proc)
{
  /* Results that arrived before count: those calls are done. */
  inbox_drain (proc->self);
  proc_take_down (proc);
}

/* Takes @proc down, if it is not already: its calls go back to the
 * queue, lost unless it was killed for a timeout or is stopping. Owner
 * context. */
static void
proc_take_down (Proc *proc)
{
  SluiceProcessWorker *self = proc->self;
  GPtrArray *given_back = g_ptr_array_new ();
  gboolean lost;
  GPtrArray *waiters;

  g_mutex_lock (&self->mutex);
  lost = !proc->kill_not_lost && !self->stopping;
  proc->kill_not_lost = FALSE;
  proc_down_locked (proc, given_back);
  waiters = take_stop_waiters_if_done_locked (self);
  g_mutex_unlock (&self->mutex);

  give_back_all (given_back, lost);
  sluice_worker_complete_stop_waiters (waiters);
  pump_wake (self);
}

/* ---- starting a process ---------------------------------------------- */

/* A helper that could not be started: while no process is ready, the
 * calls waiting fail with @error (if @fail_calls); it is tried again
 * later. Owner context. */
static void
proc_start_failed (Proc *proc, const GError *error, gboolean fail_calls)
{
  SluiceProcessWorker *self = proc->self;
  GPtrArray *given_back = g_ptr_array_new ();
  GPtrArray *failed = g_ptr_array_new_with_free_func (g_object_unref);
  gboolean any_ready = FALSE;
  GError *failure;
  SluiceWorkerTask *task;
  GPtrArray *waiters;

  failure = g_error_new (SLUICE_ERROR, SLUICE_ERROR_WORKER_FAILED,
                         _ ("The helper process “%s” could not be started: %s"), self->argv[0],
                         error->message);
  g_debug ("%s", failure->message);

  g_mutex_lock (&self->mutex);
  proc->n_start_failures++;
  proc->retry_at =
      g_get_monotonic_time () + MIN (50000 * (1 << MIN (proc->n_start_failures, 6)), 2000000);
  proc_down_locked (proc, given_back);
  for (guint i = 0; i < self->n_processes; i++)
    any_ready |= self->procs[i].state == PROC_READY;
  if (!any_ready && fail_calls)
    while ((task = g_queue_pop_head (&self->pending)) != NULL)
      g_ptr_array_add (failed, task);
  waiters = take_stop_waiters_if_done_locked (self);
  g_mutex_unlock (&self->mutex);

  give_back_all (given_back, FALSE);
  for (guint i = 0; i < failed->len; i++)
    sluice_worker_task_return_error (failed->pdata[i], failure);
  g_ptr_array_unref (failed);
  g_error_free (failure);
  sluice_worker_complete_stop_waiters (waiters);
  pump_wake_at (self, proc->retry_at);
}

static void
connection_closed_cb (GDBusConnection *connection,
                      gboolean remote_peer_vanished,
                      GError *error,
                      gpointer user_data)
{
  Proc *proc = user_data; /* disconnected before the process goes */

  g_debug ("A helper process closed its connection");
  proc_went_down (proc);
}

static void
process_exited_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Proc *proc = proc_ref_take (user_data);
  GError *error = NULL;

  /* Cancelled: this process went down before, don't touch @proc. */
  if (!g_subprocess_wait_finish (G_SUBPROCESS (source), result, &error) || proc == NULL)
    {
      g_clear_error (&error);
      return;
    }
  if (proc->state == PROC_STARTING)
    {
      GError *exited = NULL;

      if (g_subprocess_get_if_exited (G_SUBPROCESS (source)))
        exited = g_error_new (G_IO_ERROR, G_IO_ERROR_FAILED, _ ("it exited with status %d"),
                              g_subprocess_get_exit_status (G_SUBPROCESS (source)));
      else
        exited = g_error_new (G_IO_ERROR, G_IO_ERROR_FAILED, _ ("it was killed by signal %d"),
                              g_subprocess_get_term_sig (G_SUBPROCESS (source)));
      /* SIGKILL comes from outside (a user, the OOM killer), not from a
       * helper that cannot start: the calls wait for the next try. */
      proc_start_failed (proc, exited,
                         g_subprocess_get_if_exited (G_SUBPROCESS (source)) ||
                             g_subprocess_get_term_sig (G_SUBPROCESS (source)) != SIGKILL);
      g_error_free (exited);
      return;
    }
  proc_went_down (proc);
}

static void
connection_ready_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  Proc *proc = proc_ref_take (user_data);
  SluiceProcessWorker *self;
  GDBusConnection *connection;
  GError *error = NULL;

  connection = g_dbus_connection_new_finish (result, &error);
  if (proc == NULL)
    {
      /* Gone meanwhile (or the worker was disposed). */
      g_clear_error (&error);
      if (connection != NULL)
        {
          g_dbus_connection_close (connection, NULL, NULL, NULL);
          g_object_unref (connection);
        }
      return;
    }
  self = proc->self;
  if (connection == NULL)
    {
      /* A helper that exited says more with its exit status: wait a
       * little for it (process_exited_cb ()), then report this. */
      g_debug ("Could not connect to a helper process: %s", error->message);
      proc->start_error = error;
      if (proc->start_timeout != NULL)
        {
          g_source_destroy (proc->start_timeout);
          g_source_unref (proc->start_timeout);
        }
      proc->start_timeout = g_timeout_source_new (EXIT_WAIT_MS);
      g_source_set_callback (proc->start_timeout, start_timeout_cb, proc, NULL);
      g_source_attach (proc->start_timeout, proc->self->context);
      return;
    }

  g_mutex_lock (&self->mutex);
  proc->state = PROC_READY;
  proc->connection = connection;
  proc->n_start_failures = 0;
  proc->closed_id =
      g_signal_connect (connection, "closed", G_CALLBACK (connection_closed_cb), proc);
  {
    ResultsFilter *filter = g_new (ResultsFilter, 1);

    filter->inbox = inbox_ref (self->inbox);
    filter->proc = proc;
    filter->life = g_object_ref (proc->life);
    proc->filter_id =
        g_dbus_connection_add_filter (connection, results_filter_cb, filter, results_filter_free);
  }
  if (proc->start_timeout != NULL)
    {
      g_source_destroy (proc->start_timeout);
      g_clear_pointer (&proc->start_timeout, g_source_unref);
    }
  g_mutex_unlock (&self->mutex);

  pump_wake (self);
}

static gboolean
start_timeout_cb (gpointer data)
{
  Proc *proc = data; /* the source is destroyed when the process goes */
  GError *error = proc->start_error != NULL ? g_steal_pointer (&proc->start_error)
                                            : g_error_new (G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                                           _ ("it was not ready after %u ms"),
                                                           proc->self->start_timeout_ms);

  g_clear_pointer (&proc->start_timeout, g_source_unref);
  proc_start_failed (proc, error, TRUE);
  g_error_free (error);
  return G_SOURCE_REMOVE;
}

/* Starts the helper of @proc. Owner context, without the mutex. */
static void
proc_start (Proc *proc)
{
  SluiceProcessWorker *self = proc->self;
  GSubprocess *process;
  GIOStream *stream;
  GError *error = NULL;

  process =
      g_subprocess_newv ((const char *const *) self->argv,
                         G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE, &error);
  g_mutex_lock (&self->mutex);
  proc->state = PROC_STARTING;
  proc->life = g_cancellable_new ();
  proc->process = process;
  g_mutex_unlock (&self->mutex);
  child_id_read (&proc->child_id, process);
  if (process == NULL)
    {
      proc_start_failed (proc, error, TRUE);
      g_error_free (error);
      return;
    }

  g_subprocess_wait_async (process, proc->life, process_exited_cb, proc_ref_new (proc));
  proc->start_timeout = g_timeout_source_new (self->start_timeout_ms);
  g_source_set_callback (proc->start_timeout, start_timeout_cb, proc, NULL);
  g_source_attach (proc->start_timeout, self->context);

  stream = g_simple_io_stream_new (g_subprocess_get_stdout_pipe (process),
                                   g_subprocess_get_stdin_pipe (process));
  g_dbus_connection_new (stream, NULL, G_DBUS_CONNECTION_FLAGS_AUTHENTICATION_CLIENT, NULL,
                         proc->life, connection_ready_cb, proc_ref_new (proc));
  g_object_unref (stream);
}

/* ---- calls --------------------------------------------------------------- */

/* GCancellable::cancelled of a task sent to a process, in any thread:
 * tells the helper. The reply comes as the function decides. */
static void
task_cancelled_cb (GCancellable *cancellable, gpointer data)
{
  InFlight *in_flight = data; /* valid until disconnected */

  g_dbus_connection_call (in_flight->connection, NULL, WORKER_OBJECT_PATH, WORKER_INTERFACE,
                          "Cancel", g_variant_new ("(t)", in_flight->id), NULL,
                          G_DBUS_CALL_FLAGS_NO_AUTO_START, -1, NULL, NULL, NULL);
}

/* Whether @proc runs a suspect (which then runs alone). */
static gboolean
proc_runs_suspect_locked (Proc *proc)
{
  GHashTableIter iter;
  gpointer value;

  if (g_hash_table_size (proc->in_flight) != 1)
    return FALSE;
  g_hash_table_iter_init (&iter, proc->in_flight);
  return g_hash_table_iter_next (&iter, NULL, &value) && ((InFlight *) value)->suspect;
}

/* Whether @proc, which holds short calls, has enough of them to wait for
 * more to send it at once: while it holds more than half its window and
 * at least COALESCE_WORK_US of its work, the calls that are ready wait;
 * its next answer wakes the pump, which sends them together when it holds
 * half its window or less. Fewer messages (each costs GDBus a
 * fixed ~50,000 instructions to write, as many to read), and the process
 * never runs dry. An idle process gets a call at once. */
static gboolean
proc_coalesces_locked (Proc *proc)
{
  guint busy = g_hash_table_size (proc->in_flight);

  return proc->window >= COALESCE_MIN_WINDOW && busy > proc->window / 2 &&
         busy * proc->call_us >= COALESCE_WORK_US;
}

/* The pump, on the owner context: starts processes, sends calls, kills
 * processes stuck in calls that timed out. */
static gboolean
pump_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  SluiceProcessWorker *self = user_data;
  GPtrArray *to_start = g_ptr_array_new ();
  GPtrArray *to_send = g_ptr_array_new ();
  GPtrArray *skipped = g_ptr_array_new_with_free_func (g_object_unref);
  GPtrArray *timed_out;
  GPtrArray *given_back = g_ptr_array_new ();
  gint64 now = g_get_monotonic_time ();
  gint64 next_retry = -1;
  GPtrArray *waiters;
  gboolean *refill;

  g_source_set_ready_time (source, -1);

  g_mutex_lock (&self->mutex);
  timed_out = g_steal_pointer (&self->timed_out);
  self->timed_out = g_ptr_array_new_with_free_func (g_object_unref);
  /* A process stuck in a call that timed out is killed; its other calls
   * go back to the queue, not counted as lost. */
  for (guint i = 0; i < timed_out->len; i++)
    for (guint p = 0; p < self->n_processes; p++)
      {
        Proc *proc = &self->procs[p];
        GHashTableIter iter;
        gpointer value;
        gboolean found = FALSE;

        g_hash_table_iter_init (&iter, proc->in_flight);
        while (!found && g_hash_table_iter_next (&iter, NULL, &value))
          found = ((InFlight *) value)->task == timed_out->pdata[i];
        if (found)
          {
            proc_down_locked (proc, given_back);
            break;
          }
      }

  /* Then the results that arrived: after the kills, so that a stuck
   * process is killed even if the call that timed out answered its
   * cancellation meanwhile (its other calls go back either way). */
  g_mutex_unlock (&self->mutex);
  inbox_drain (self);
  g_mutex_lock (&self->mutex);

  if (!self->crashed && !self->stopping && self->active)
    for (guint p = 0; p < self->n_processes; p++)
      {
        Proc *proc = &self->procs[p];

        if (proc->state != PROC_DOWN)
          continue;
        if (proc->retry_at > now)
          {
            next_retry = next_retry < 0 ? proc->retry_at : MIN (next_retry, proc->retry_at);
            continue;
          }
        g_ptr_array_add (to_start, proc);
      }

  /* Each call to the least busy ready process: short calls spread over
   * the processes instead of queuing in the first. A call that was in a
   * process that died (a suspect) runs alone in an idle process, so that
   * only the call that kills processes is charged with their deaths, not
   * the calls that waited behind it in the same batch; the calls behind
   * it wait. */
  refill = g_newa (gboolean, self->n_processes);
  for (guint p = 0; p < self->n_processes; p++)
    refill[p] = !proc_coalesces_locked (&self->procs[p]);
  while (!g_queue_is_empty (&self->pending))
    {
      SluiceWorkerTask *head = g_queue_peek_head (&self->pending);
      gboolean suspect = head->n_lost > 0;
      Proc *proc = NULL;

      if (!sluice_worker_task_is_wanted (head))
        {
          g_ptr_array_add (skipped, g_queue_pop_head (&self->pending));
          continue;
        }

      for (guint p = 0; p < self->n_processes; p++)
        {
          guint busy = g_hash_table_size (self->procs[p].in_flight);

          if (self->procs[p].state != PROC_READY || busy >= self->procs[p].window || !refill[p] ||
              (suspect && busy > 0) || proc_runs_suspect_locked (&self->procs[p]))
            continue;
          if (proc == NULL || busy < g_hash_table_size (proc->in_flight))
            proc = &self->procs[p];
        }
      if (proc == NULL)
        break;
      {
        SluiceWorkerTask *task = g_queue_pop_head (&self->pending);
        InFlight *in_flight = g_new0 (InFlight, 1);

        in_flight->task = task;
        in_flight->suspect = suspect;
        in_flight->id = self->next_id++;
        in_flight->proc = proc;
        if (g_hash_table_size (proc->in_flight) == 0)
          proc->busy_mark = now;
        /* Keyed by its own id: stealing it takes the key along. */
        g_hash_table_insert (proc->in_flight, &in_flight->id, in_flight);
        g_ptr_array_add (to_send, in_flight);
      }
    }
  /* Stopping: a process whose calls are done is closed (its helper
   * exits). */
  if (self->stopping && g_queue_is_empty (&self->pending))
    for (guint p = 0; p < self->n_processes; p++)
      if (g_hash_table_size (self->procs[p].in_flight) == 0)
        proc_down_locked (&self->procs[p], given_back);
  waiters = take_stop_waiters_if_done_locked (self);

  /* Sent under the mutex, so that a crash in another thread cannot free
   * an entry meanwhile; neither the call nor the connection of the
   * cancellable handler calls back into this worker here (results are
   * taken by the pump later, the handler takes no lock). One CallMany per
   * process, sent before the handlers connect: a Cancel (which an already
   * cancelled task sends at once) follows its call. */
  for (guint p = 0; p < self->n_processes; p++)
    {
      Proc *proc = &self->procs[p];
      GVariantBuilder calls;
      GPtrArray *names = NULL;
      SluiceWireValues args;
      GDBusMessage *message;

      for (guint i = 0; i < to_send->len; i++)
        {
          InFlight *in_flight = to_send->pdata[i];

          if (in_flight->proc != proc)
            continue;
          if (names == NULL)
            {
              names = g_ptr_array_new ();
              sluice_wire_values_init (&args);
            }
          g_ptr_array_add (names, (gpointer) sluice_worker_task_get_name (in_flight->task));
          sluice_wire_values_add (&args, in_flight->id,
                                  sluice_worker_task_get_args (in_flight->task));
        }
      if (names == NULL)
        continue;
      g_variant_builder_init (&calls, G_VARIANT_TYPE (SLUICE_WIRE_CALLS_TYPE));
      g_variant_builder_add_value (
          &calls, sluice_wire_strv_new ((const char *const *) names->pdata, names->len));
      sluice_wire_values_end (&args, &calls);
      self->n_call_messages++;
      self->n_sent += names->len;
      g_ptr_array_unref (names);
      message =
          g_dbus_message_new_method_call (NULL, WORKER_OBJECT_PATH, WORKER_INTERFACE, "CallMany");
      g_dbus_message_set_flags (message, G_DBUS_MESSAGE_FLAGS_NO_REPLY_EXPECTED);
      sluice_wire_pack (message, g_variant_builder_end (&calls));
      g_dbus_connection_send_message (proc->connection, message, G_DBUS_SEND_MESSAGE_FLAGS_NONE,
                                      NULL, NULL);
      g_object_unref (message);
    }
  /* Only a call that its caller can cancel needs a Cancel: the task's
   * cancellable is otherwise cancelled for a timeout or a crash, and the
   * process is killed for both. */
  for (guint i = 0; i < to_send->len; i++)
    {
      InFlight *in_flight = to_send->pdata[i];

      SluiceCall *call = g_task_get_task_data (in_flight->task->call_task);

      if (call->cancellable != NULL)
        {
          in_flight->connection = g_object_ref (in_flight->proc->connection);
          in_flight->cancelled_id =
              g_cancellable_connect (sluice_worker_task_get_cancellable (in_flight->task),
                                     G_CALLBACK (task_cancelled_cb), in_flight, NULL);
        }
    }
  g_ptr_array_unref (to_send);
  g_mutex_unlock (&self->mutex);

  give_back_all (given_back, FALSE);
  g_ptr_array_unref (timed_out);
  for (guint i = 0; i < skipped->len; i++)
    {
      GError *error =
          g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, _ ("The call was cancelled"));

      sluice_worker_task_return_error (skipped->pdata[i], error);
      g_error_free (error);
    }
  g_ptr_array_unref (skipped);

  for (guint i = 0; i < to_start->len; i++)
    proc_start (to_start->pdata[i]);
  g_ptr_array_unref (to_start);
  if (next_retry >= 0)
    pump_wake_at (self, next_retry);

  sluice_worker_complete_stop_waiters (waiters);
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs pump_funcs = { NULL, NULL, pump_dispatch, NULL, NULL, NULL };

/* ---- the worker interface ------------------------------------------------ */

static void
sluice_process_worker_run_task (SluiceWorker *worker, SluiceWorkerTask *task)
{
  SluiceProcessWorker *self = SLUICE_PROCESS_WORKER (worker);
  gboolean wake;

  g_mutex_lock (&self->mutex);
  if (self->crashed || self->stopping)
    {
      g_mutex_unlock (&self->mutex);
      sluice_worker_task_give_back (task, TRUE);
      return;
    }
  self->active = TRUE;
  /* The first task waiting wakes the pump; it leaves tasks waiting only
   * when no process can take them, and what gives a process room (an
   * answer, a process ready or started again) wakes it: a task that finds
   * others waiting does not take the owner context's lock again (once
   * per call, with GDBus's thread taking it too). */
  wake = g_queue_is_empty (&self->pending);
  /* Tasks mostly come in order: after the last, without a walk. */
  if (g_queue_is_empty (&self->pending) ||
      compare_tasks (g_queue_peek_tail (&self->pending), task, NULL) < 0)
    g_queue_push_tail (&self->pending, g_object_ref (task));
  else
    g_queue_insert_sorted (&self->pending, g_object_ref (task), compare_tasks, NULL);
  g_mutex_unlock (&self->mutex);

  if (wake)
    pump_wake (self);
}

static char **
sluice_process_worker_get_series (SluiceWorker *worker)
{
  return g_strdupv (SLUICE_PROCESS_WORKER (worker)->series);
}

static guint
sluice_process_worker_get_capacity (SluiceWorker *worker)
{
  return (guint) g_atomic_int_get (&SLUICE_PROCESS_WORKER (worker)->capacity);
}

static void
sluice_process_worker_task_timed_out (SluiceWorker *worker, SluiceWorkerTask *task)
{
  SluiceProcessWorker *self = SLUICE_PROCESS_WORKER (worker);

  g_mutex_lock (&self->mutex);
  g_ptr_array_add (self->timed_out, g_object_ref (task));
  g_mutex_unlock (&self->mutex);
  pump_wake (self);
}

static void
sluice_process_worker_stop_async (SluiceWorker *worker,
                                  GCancellable *cancellable,
                                  GAsyncReadyCallback callback,
                                  gpointer user_data)
{
  SluiceProcessWorker *self = SLUICE_PROCESS_WORKER (worker);
  GTask *task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, sluice_process_worker_stop_async);
  g_mutex_lock (&self->mutex);
  self->stopping = TRUE;
  g_ptr_array_add (self->stop_waiters, task);
  g_mutex_unlock (&self->mutex);
  /* The pump now closes processes as their calls end. */
  pump_wake (self);
}

static gboolean
sluice_process_worker_stop_finish (SluiceWorker *worker, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, worker), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

static GPtrArray *
sluice_process_worker_crash (SluiceWorker *worker)
{
  SluiceProcessWorker *self = SLUICE_PROCESS_WORKER (worker);
  GPtrArray *tasks = g_ptr_array_new_with_free_func (g_object_unref);
  GPtrArray *in_flights = g_ptr_array_new ();
  SluiceWorkerTask *task;
  GPtrArray *waiters;

  g_mutex_lock (&self->mutex);
  self->crashed = TRUE;
  while ((task = g_queue_pop_head (&self->pending)) != NULL)
    g_ptr_array_add (tasks, task);
  for (guint p = 0; p < self->n_processes; p++)
    {
      Proc *proc = &self->procs[p];
      GHashTableIter iter;
      gpointer value;

      g_hash_table_iter_init (&iter, proc->in_flight);
      while (g_hash_table_iter_next (&iter, NULL, &value))
        {
          g_ptr_array_add (in_flights, value);
          g_hash_table_iter_steal (&iter);
        }
      /* Killed now; the rest of going down happens on the owner context,
       * when it hears of it. */
      if (proc->process != NULL)
        g_subprocess_force_exit (proc->process);
    }
  waiters = take_stop_waiters_if_done_locked (self);
  g_mutex_unlock (&self->mutex);

  for (guint i = 0; i < in_flights->len; i++)
    {
      InFlight *in_flight = in_flights->pdata[i];

      in_flight_disconnect (in_flight);
      g_ptr_array_add (tasks, g_steal_pointer (&in_flight->task));
      in_flight_free (in_flight);
    }
  g_ptr_array_unref (in_flights);
  sluice_worker_complete_stop_waiters (waiters);
  return tasks;
}

static void
sluice_process_worker_iface_init (SluiceWorkerInterface *iface)
{
  iface->get_series = sluice_process_worker_get_series;
  iface->get_capacity = sluice_process_worker_get_capacity;
  iface->run_task = sluice_process_worker_run_task;
  iface->stop_async = sluice_process_worker_stop_async;
  iface->stop_finish = sluice_process_worker_stop_finish;
  iface->crash = sluice_process_worker_crash;
  iface->task_timed_out = sluice_process_worker_task_timed_out;
}

/* ---- GObject ---------------------------------------------------------- */

static void
sluice_process_worker_constructed (GObject *object)
{
  SluiceProcessWorker *self = SLUICE_PROCESS_WORKER (object);

  G_OBJECT_CLASS (sluice_process_worker_parent_class)->constructed (object);

  g_return_if_fail (self->argv != NULL && self->argv[0] != NULL);

  self->procs = g_new0 (Proc, self->n_processes);
  for (guint p = 0; p < self->n_processes; p++)
    {
      self->procs[p].self = self;
      self->procs[p].window = MIN (MIN_WINDOW, self->max_calls);
      self->procs[p].busy_mark = -1;
      self->procs[p].in_flight =
          g_hash_table_new_full (g_int64_hash, g_int64_equal, NULL, in_flight_free);
    }
  capacity_update_locked (self);
  self->context = g_main_context_ref_thread_default ();
  self->pump = g_source_new (&pump_funcs, sizeof (GSource));
  g_source_set_callback (self->pump, NULL, self, NULL);
  g_source_set_static_name (self->pump, "SluiceProcessWorker");
  g_source_attach (self->pump, self->context);
  self->inbox = g_new0 (Inbox, 1);
  g_atomic_ref_count_init (&self->inbox->ref);
  g_mutex_init (&self->inbox->mutex);
  g_queue_init (&self->inbox->items);
  self->inbox->pump = g_source_ref (self->pump);
  self->inbox->context = g_main_context_ref (self->context);
}

static void
sluice_process_worker_dispose (GObject *object)
{
  SluiceProcessWorker *self = SLUICE_PROCESS_WORKER (object);
  GPtrArray *given_back = g_ptr_array_new ();
  GPtrArray *pending = g_ptr_array_new_with_free_func (g_object_unref);
  SluiceWorkerTask *task;

  if (self->procs != NULL)
    {
      g_mutex_lock (&self->mutex);
      self->crashed = TRUE;
      while ((task = g_queue_pop_head (&self->pending)) != NULL)
        g_ptr_array_add (pending, task);
      for (guint p = 0; p < self->n_processes; p++)
        proc_down_locked (&self->procs[p], given_back);
      g_mutex_unlock (&self->mutex);
    }
  give_back_all (given_back, FALSE);
  for (guint i = 0; i < pending->len; i++)
    sluice_worker_task_give_back (pending->pdata[i], FALSE);
  g_ptr_array_unref (pending);

  if (self->pump != NULL)
    {
      g_source_destroy (self->pump);
      g_clear_pointer (&self->pump, g_source_unref);
    }

  G_OBJECT_CLASS (sluice_process_worker_parent_class)->dispose (object);
}

static void
sluice_process_worker_finalize (GObject *object)
{
  SluiceProcessWorker *self = SLUICE_PROCESS_WORKER (object);

  for (guint p = 0; self->procs != NULL && p < self->n_processes; p++)
    g_hash_table_unref (self->procs[p].in_flight);
  g_free (self->procs);
  g_ptr_array_unref (self->timed_out);
  g_ptr_array_unref (self->stop_waiters);
  g_clear_pointer (&self->inbox, inbox_unref);
  g_clear_pointer (&self->context, g_main_context_unref);
  g_strfreev (self->argv);
  g_strfreev (self->series);
  g_mutex_clear (&self->mutex);

  G_OBJECT_CLASS (sluice_process_worker_parent_class)->finalize (object);
}

static void
sluice_process_worker_get_property (GObject *object,
                                    guint prop_id,
                                    GValue *value,
                                    GParamSpec *pspec)
{
  SluiceProcessWorker *self = SLUICE_PROCESS_WORKER (object);

  switch (prop_id)
    {
    case PROP_ARGV:
      g_value_set_boxed (value, self->argv);
      break;
    case PROP_SERIES:
      g_value_set_boxed (value, self->series);
      break;
    case PROP_N_PROCESSES:
      g_value_set_uint (value, self->n_processes);
      break;
    case PROP_MAX_CALLS:
      g_value_set_uint (value, self->max_calls);
      break;
    case PROP_START_TIMEOUT:
      g_value_set_uint (value, self->start_timeout_ms);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_process_worker_set_property (GObject *object,
                                    guint prop_id,
                                    const GValue *value,
                                    GParamSpec *pspec)
{
  SluiceProcessWorker *self = SLUICE_PROCESS_WORKER (object);

  switch (prop_id)
    {
    case PROP_ARGV:
      g_strfreev (self->argv);
      self->argv = g_value_dup_boxed (value);
      break;
    case PROP_SERIES:
      g_strfreev (self->series);
      self->series = g_value_dup_boxed (value);
      break;
    case PROP_N_PROCESSES:
      self->n_processes = MAX (g_value_get_uint (value), 1);
      break;
    case PROP_MAX_CALLS:
      self->max_calls = MAX (g_value_get_uint (value), 1);
      break;
    case PROP_START_TIMEOUT:
      self->start_timeout_ms = MAX (g_value_get_uint (value), 1);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_process_worker_class_init (SluiceProcessWorkerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->constructed = sluice_process_worker_constructed;
  object_class->dispose = sluice_process_worker_dispose;
  object_class->finalize = sluice_process_worker_finalize;
  object_class->get_property = sluice_process_worker_get_property;
  object_class->set_property = sluice_process_worker_set_property;

  /**
   * SluiceProcessWorker:argv:
   *
   * The command line of the helper program (looked up in `PATH`), a
   * program that serves named functions with a
   * [class@Sluice.WorkerService], such as `sluice-worker MODULE`.
   */
  properties[PROP_ARGV] =
      g_param_spec_boxed ("argv", NULL, NULL, G_TYPE_STRV,
                          G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceProcessWorker:series:
   *
   * The series the worker serves besides the default one.
   */
  properties[PROP_SERIES] =
      g_param_spec_boxed ("series", NULL, NULL, G_TYPE_STRV,
                          G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceProcessWorker:n-processes:
   *
   * How many helper processes the worker keeps running.
   */
  properties[PROP_N_PROCESSES] =
      g_param_spec_uint ("n-processes", NULL, NULL, 1, 1024, 1,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceProcessWorker:max-calls:
   *
   * The most calls each process holds at once (it runs them in the
   * threads of its [class@Sluice.WorkerService], the others wait there).
   * Within it, a process holds about 10 ms of its work (at least 4
   * calls, or max-calls if less): more than one hides the round trip of
   * short calls, and calls sent together share their messages and thread
   * switches (trivial calls go about twice as fast with 64 as with 16,
   * and faster again with 128, the default: half the messages per call).
   * Calls sent to a process run there in the order they were sent,
   * whatever their priority.
   */
  properties[PROP_MAX_CALLS] =
      g_param_spec_uint ("max-calls", NULL, NULL, 1, 1024, 128,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceProcessWorker:start-timeout:
   *
   * How long a helper may take, in milliseconds, from its start until its
   * connection is set up; one that takes longer is killed, and counts as
   * one that could not be started.
   */
  properties[PROP_START_TIMEOUT] =
      g_param_spec_uint ("start-timeout", NULL, NULL, 1, G_MAXINT, 10000,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
sluice_process_worker_init (SluiceProcessWorker *self)
{
  g_mutex_init (&self->mutex);
  g_queue_init (&self->pending);
  self->timed_out = g_ptr_array_new_with_free_func (g_object_unref);
  self->stop_waiters = g_ptr_array_new ();
  self->n_processes = 1;
  self->max_calls = 128;
  self->start_timeout_ms = 10000;
}

/**
 * sluice_process_worker_new:
 * @argv: (array zero-terminated=1): the command line of the helper program
 * @series: (nullable) (array zero-terminated=1): the series it serves
 *   besides the default one, or %NULL
 * @n_processes: how many helper processes it keeps running (at least 1)
 *
 * Creates a worker that runs named calls in helper processes, for a
 * [method@Sluice.TaskQueue.hire]. The processes start with its first task.
 * Its owner context is the thread-default main context of the caller.
 *
 * Returns: (transfer full): a new process worker
 */
SluiceProcessWorker *
sluice_process_worker_new (const char *const *argv, const char *const *series, guint n_processes)
{
  g_return_val_if_fail (argv != NULL && argv[0] != NULL, NULL);

  return g_object_new (SLUICE_TYPE_PROCESS_WORKER, "argv", argv, "series", series, "n-processes",
                       MAX (n_processes, 1), NULL);
}

/**
 * sluice_process_worker_get_n_processes:
 * @self: a process worker
 *
 * Gets how many helper processes @self keeps running.
 *
 * This function is safe to call from any thread.
 *
 * Returns: the number of processes
 */
guint
sluice_process_worker_get_n_processes (SluiceProcessWorker *self)
{
  g_return_val_if_fail (SLUICE_IS_PROCESS_WORKER (self), 0);

  return self->n_processes;
}

/**
 * sluice_process_worker_get_max_calls:
 * @self: a process worker
 *
 * Gets how many calls each process of @self runs at once.
 *
 * This function is safe to call from any thread.
 *
 * Returns: the number of calls
 */
guint
sluice_process_worker_get_max_calls (SluiceProcessWorker *self)
{
  g_return_val_if_fail (SLUICE_IS_PROCESS_WORKER (self), 0);

  return self->max_calls;
}

/**
 * sluice_process_worker_dup_pids:
 * @self: a process worker
 *
 * Gets the process identifiers of the helper processes of @self that are
 * running (started, ready or stuck), as strings (as
 * g_subprocess_get_identifier() gives them).
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer full): the process identifiers
 */
GStrv
sluice_process_worker_dup_pids (SluiceProcessWorker *self)
{
  GPtrArray *pids;

  g_return_val_if_fail (SLUICE_IS_PROCESS_WORKER (self), NULL);

  pids = g_ptr_array_new ();
  g_mutex_lock (&self->mutex);
  for (guint p = 0; self->procs != NULL && p < self->n_processes; p++)
    {
      const char *id = self->procs[p].process != NULL
                           ? g_subprocess_get_identifier (self->procs[p].process)
                           : NULL;

      if (id != NULL)
        g_ptr_array_add (pids, g_strdup (id));
    }
  g_mutex_unlock (&self->mutex);
  g_ptr_array_add (pids, NULL);
  return (GStrv) g_ptr_array_free (pids, FALSE);
}

/**
 * sluice_process_worker_get_stats:
 * @self: a process worker
 *
 * Gets counters of @self, as a dictionary (`a{sv}`) of `t` values, since
 * it was created: `calls-sent` (calls sent to its processes, each
 * attempt), `call-messages` (the `CallMany` messages that carried them),
 * `outcomes` (results and errors received) and `result-messages` (the
 * `Results` messages that carried them: what its helpers sent); and now:
 * `pending` (tasks it holds that wait for room in a process), `in-flight`
 * (calls in its processes) and `capacity` (the tasks it takes at once:
 * the sum of its processes' windows, see
 * [property@Sluice.ProcessWorker:max-calls]). Messages per call tell how
 * well calls share their messages.
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer full): the counters, not floating (as every
 *   `get_stats` of the library): free them with g_variant_unref()
 */
GVariant *
sluice_process_worker_get_stats (SluiceProcessWorker *self)
{
  GVariantBuilder builder;
  guint64 in_flight = 0;

  g_return_val_if_fail (SLUICE_IS_PROCESS_WORKER (self), NULL);

  g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
  g_mutex_lock (&self->mutex);
  for (guint p = 0; self->procs != NULL && p < self->n_processes; p++)
    in_flight += g_hash_table_size (self->procs[p].in_flight);
  g_variant_builder_add (&builder, "{sv}", "calls-sent", g_variant_new_uint64 (self->n_sent));
  g_variant_builder_add (&builder, "{sv}", "call-messages",
                         g_variant_new_uint64 (self->n_call_messages));
  g_variant_builder_add (&builder, "{sv}", "outcomes", g_variant_new_uint64 (self->n_outcomes));
  g_variant_builder_add (&builder, "{sv}", "result-messages",
                         g_variant_new_uint64 (self->n_result_messages));
  g_variant_builder_add (&builder, "{sv}", "pending",
                         g_variant_new_uint64 (g_queue_get_length (&self->pending)));
  g_variant_builder_add (&builder, "{sv}", "in-flight", g_variant_new_uint64 (in_flight));
  g_mutex_unlock (&self->mutex);
  g_variant_builder_add (
      &builder, "{sv}", "capacity",
      g_variant_new_uint64 (sluice_process_worker_get_capacity (SLUICE_WORKER (self))));
  return g_variant_ref_sink (g_variant_builder_end (&builder));
}
