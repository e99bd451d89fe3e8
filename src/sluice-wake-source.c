/* sluice-wake-source.c: a source dispatched while a flag is set
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * g_source_set_ready_time() wakes the context up (a write to its eventfd,
 * and a read and another poll after it) every time it changes the ready
 * time, even when called by the thread that runs the context, which is
 * about to look at its sources anyway. The cooperator and the job queue
 * set and clear their sources thousands of times a second: this source
 * asks the context from its prepare and check functions instead, and only a
 * set from another thread wakes the context up.
 */

#include "sluice-private.h"

typedef struct
{
  GSource source;
  gint pending; /* atomic */
  GWeakRef owner;
  SluiceWakeSourceFunc func;
} WakeSource;

static gboolean
wake_source_prepare (GSource *source, int *timeout)
{
  *timeout = -1;
  return g_atomic_int_get (&((WakeSource *) source)->pending);
}

static gboolean
wake_source_check (GSource *source)
{
  return g_atomic_int_get (&((WakeSource *) source)->pending);
}

static gboolean
wake_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  WakeSource *ws = (WakeSource *) source;
  gpointer owner;

  /* Cleared first: a set while the owner works dispatches again. */
  g_atomic_int_set (&ws->pending, 0);
  owner = g_weak_ref_get (&ws->owner);
  if (owner != NULL)
    {
      ws->func (owner);
      g_object_unref (owner);
    }
  return G_SOURCE_CONTINUE;
}

static void
wake_source_finalize (GSource *source)
{
  g_weak_ref_clear (&((WakeSource *) source)->owner);
}

static GSourceFuncs wake_source_funcs = {
  .prepare = wake_source_prepare,
  .check = wake_source_check,
  .dispatch = wake_source_dispatch,
  .finalize = wake_source_finalize,
};

/* A source on @context that calls @func with a strong reference to @owner
 * (held weakly: a finalized owner is not called) when it was set. */
GSource *
sluice_wake_source_new (gpointer owner,
                        SluiceWakeSourceFunc func,
                        const char *name,
                        int priority,
                        GMainContext *context)
{
  GSource *source = g_source_new (&wake_source_funcs, sizeof (WakeSource));
  WakeSource *ws = (WakeSource *) source;

  g_weak_ref_init (&ws->owner, owner);
  ws->func = func;
  g_source_set_static_name (source, name);
  g_source_set_priority (source, priority);
  g_source_attach (source, context);
  return source;
}

/* Dispatches @source at its context's next iteration. From any thread:
 * only a thread that does not own the context wakes it up. */
void
sluice_wake_source_set (GSource *source)
{
  WakeSource *ws = (WakeSource *) source;
  GMainContext *context;

  if (g_atomic_int_get (&ws->pending) || !g_atomic_int_compare_and_exchange (&ws->pending, 0, 1))
    return;
  context = g_source_get_context (source);
  if (context != NULL && !g_main_context_is_owner (context))
    g_main_context_wakeup (context);
}

/* Takes back a set not dispatched yet. */
void
sluice_wake_source_unset (GSource *source)
{
  g_atomic_int_set (&((WakeSource *) source)->pending, 0);
}
