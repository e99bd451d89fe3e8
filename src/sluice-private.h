/* sluice-private.h: what every source file of the library shares
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "config.h"

#include <sluice/sluice.h>

G_BEGIN_DECLS

/* The library's messages come from its own text domain, bound on first use
 * (never in a constructor). */
const char *sluice_gettext (const char *msgid) G_GNUC_FORMAT (1);

#undef _
#define _(String) sluice_gettext (String)
#undef N_
#define N_(String) (String)

/* A pause in a spin loop: it lets the other hyperthread run. */
static inline void
sluice_cpu_relax (void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause ();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Locks @mutex, trying a while before it sleeps. A GMutex that finds its
 * holder busy goes straight into the kernel, and so does its unlock then:
 * for critical sections of a few dozen instructions taken from three
 * threads a million times a second, that was most of the cost (tens of
 * thousands of futex calls per second). Spinning is bounded, so a holder
 * that was preempted costs the waiter little more than a sleep would. */
static inline void
sluice_mutex_lock_spinning (GMutex *mutex)
{
  for (guint i = 0; i < 64; i++)
    {
      if (g_mutex_trylock (mutex))
        return;
      for (guint j = 0; j < 4; j++)
        sluice_cpu_relax ();
    }
  g_mutex_lock (mutex);
}

/* Runs @func (@data) from an idle source at @priority on @context: never
 * inside the call that asks for it. @destroy frees @data once the source is
 * gone, also when it never ran. @static_name names the source (a string
 * that lives for ever). Any thread. */
static inline void
sluice_idle_attach (GMainContext *context,
                    int priority,
                    const char *static_name,
                    GSourceFunc func,
                    gpointer data,
                    GDestroyNotify destroy)
{
  GSource *source = g_idle_source_new ();

  g_source_set_priority (source, priority);
  g_source_set_callback (source, func, data, destroy);
  g_source_set_static_name (source, static_name);
  g_source_attach (source, context);
  g_source_unref (source);
}

/* g_queue_push_tail_link() and g_queue_pop_head_link(), inline: the
 * cooperator's tick and the job queue run them for every step and every
 * job, where the calls into GLib cost more than the work. */
static inline void
sluice_queue_push_tail_link (GQueue *queue, GList *link)
{
  link->next = NULL;
  link->prev = queue->tail;
  if (queue->tail != NULL)
    queue->tail->next = link;
  else
    queue->head = link;
  queue->tail = link;
  queue->length++;
}

static inline GList *
sluice_queue_pop_head_link (GQueue *queue)
{
  GList *link = queue->head;

  if (link == NULL)
    return NULL;
  queue->head = link->next;
  if (queue->head != NULL)
    queue->head->prev = NULL;
  else
    queue->tail = NULL;
  queue->length--;
  link->next = NULL;
  return link;
}

/* sluice-wake-source.c: a source dispatched while it is set, which costs
 * no wake-up of the context when set by the thread that runs it. */
typedef void (*SluiceWakeSourceFunc) (gpointer owner);

GSource *sluice_wake_source_new (gpointer owner,
                                 SluiceWakeSourceFunc func,
                                 const char *name,
                                 int priority,
                                 GMainContext *context);
void sluice_wake_source_set (GSource *source);
void sluice_wake_source_unset (GSource *source);

/* sluice-cooperator.c */
gboolean sluice_cooperator_in_source_tick (SluiceCooperator *self);

G_END_DECLS
