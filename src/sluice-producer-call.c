/* sluice-producer-call.c: ordered items made by named calls
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Built only on the producer's public API: an item function that makes
 * the call and completes its slot with the result.
 */

#include "sluice-ordered-item-producer-private.h"
#include "sluice-private.h"

/* A call to make for one item: the item function's data, shared with the
 * calls it starts on the owner's context (atomic reference counted box). */
typedef struct
{
  SluiceTaskQueue *queue;      /* (owned) */
  GMainContext *owner_context; /* (owned) */
  char *series;
  char *name;
  GVariant *args; /* (owned) (nullable) */
  int priority;
  int timeout_ms;
  gboolean as_value; /* the slot takes a GValue holding the result */
} ProducerCall;

/* One item's call: the slot outlives the item function. */
typedef struct
{
  ProducerCall *pc; /* (owned): a reference */
  SluiceSlot *slot;
} PendingCall;

static void
producer_call_clear (gpointer data)
{
  ProducerCall *pc = data;

  g_object_unref (pc->queue);
  g_main_context_unref (pc->owner_context);
  g_free (pc->series);
  g_free (pc->name);
  g_clear_pointer (&pc->args, g_variant_unref);
}

static void
producer_call_release (gpointer data)
{
  g_atomic_rc_box_release_full (data, producer_call_clear);
}

static void
call_done_cb (GObject *source, GAsyncResult *result, gpointer user_data)
{
  PendingCall *pending = user_data;
  GError *error = NULL;
  GVariant *value = sluice_task_queue_call_finish (SLUICE_TASK_QUEUE (source), result, &error);

  if (value == NULL)
    sluice_slot_fail (pending->slot, error);
  else if (pending->pc->as_value)
    {
      GValue item = G_VALUE_INIT;

      g_value_init (&item, G_TYPE_VARIANT);
      g_value_take_variant (&item, value);
      sluice_slot_complete_value (pending->slot, &item);
      g_value_unset (&item);
    }
  else
    sluice_slot_complete (pending->slot, value);
  producer_call_release (pending->pc);
  g_free (pending);
}

/* Runs with the owner's context as the thread-default one, so that the
 * call's callback comes there. */
static gboolean
start_call (gpointer data)
{
  PendingCall *pending = data;
  ProducerCall *pc = pending->pc;

  /* The slot's cancellable: a producer that stops cancels the call. */
  sluice_task_queue_call_async (pc->queue, pc->series, pc->name, pc->args, pc->priority,
                                pc->timeout_ms, sluice_slot_get_cancellable (pending->slot),
                                call_done_cb, pending);
  return G_SOURCE_REMOVE;
}

static void
call_item_func (SluiceSlot *slot, gpointer user_data)
{
  ProducerCall *pc = user_data;
  PendingCall *pending = g_new (PendingCall, 1);

  pending->pc = g_atomic_rc_box_acquire (pc);
  pending->slot = slot;
  /* The item function runs in the thread that produced: from another
   * thread than the owner's, the call's callback would go to that thread's
   * context, which nobody may run. This calls at once where the owner's
   * context is this thread's (or free), and from it otherwise. */
  g_main_context_invoke_full (pc->owner_context, G_PRIORITY_DEFAULT, start_call, pending, NULL);
}

static void
produce_call (const char *caller,
              SluiceOrderedItemProducer *self,
              gboolean as_value,
              const char *series,
              const char *name,
              GVariant *args,
              int priority,
              int timeout_ms,
              GCancellable *cancellable,
              GAsyncReadyCallback callback,
              gpointer user_data)
{
  ProducerCall *pc;

  /* A GVariant handed over as a GValue (or the other way) would crash the
   * consumer or the item free function later, in another thread. */
  if (sluice_ordered_item_producer_carries_values (self) != as_value)
    {
      g_log (G_LOG_DOMAIN, G_LOG_LEVEL_CRITICAL,
             as_value ? "%s: the producer was not made for values: use produce_call"
                      : "%s: the producer was made for values: use produce_call_value",
             caller);
      if (args != NULL)
        g_variant_unref (g_variant_ref_sink (args));
      return;
    }
  pc = g_atomic_rc_box_new0 (ProducerCall);

  pc->queue = g_object_ref (sluice_ordered_item_producer_get_task_queue (self));
  pc->owner_context = g_main_context_ref (sluice_ordered_item_producer_get_owner_context (self));
  pc->series = g_strdup (series);
  pc->name = g_strdup (name);
  pc->args = args != NULL ? g_variant_ref_sink (args) : NULL;
  pc->priority = priority;
  pc->timeout_ms = timeout_ms;
  pc->as_value = as_value;
  sluice_ordered_item_producer_produce_item (self, call_item_func, pc, producer_call_release,
                                             cancellable, callback, user_data);
}

/* clang-format off */
/**
 * sluice_ordered_item_producer_produce_call: (skip)
 * @self: a producer made with [ctor@Sluice.OrderedItemProducer.new], whose
 *   item free function frees a [struct@GLib.Variant] (g_variant_unref())
 * @series: (nullable): the series of the call, %NULL for the default one
 * @name: the name of the function to call
 * @args: (nullable): the arguments (a floating reference is sunk)
 * @priority: the priority of the call
 * @timeout_ms: the timeout of the call in milliseconds, 0 for none
 * @cancellable: (nullable): a cancellable, as for
 *   [method@Sluice.OrderedItemProducer.produce_item]
 * @callback: (scope async) (nullable) (closure user_data): called when the
 *   item has been produced
 * @user_data: data for @callback
 *
 * Produces the next item with a named call
 * ([method@Sluice.TaskQueue.call_async]) to the workers hired by the
 * producer's task queue ([property@Sluice.OrderedItemProducer:task-queue]):
 * the item is the call's result, a [struct@GLib.Variant] (transfer full to
 * the consumer), or the call's error fails it. The window, flow control and
 * ordering are those of [method@Sluice.OrderedItemProducer.produce_item];
 * stopping the producer cancels calls in flight. Finish with
 * [method@Sluice.OrderedItemProducer.produce_item_finish].
 *
 * Language bindings use [method@Sluice.OrderedItemProducer.produce_call_value].
 *
 * This function is safe to call from any thread, as
 * [method@Sluice.OrderedItemProducer.produce_item] is.
 */
/* clang-format on */
void
sluice_ordered_item_producer_produce_call (SluiceOrderedItemProducer *self,
                                           const char *series,
                                           const char *name,
                                           GVariant *args,
                                           int priority,
                                           int timeout_ms,
                                           GCancellable *cancellable,
                                           GAsyncReadyCallback callback,
                                           gpointer user_data)
{
  g_return_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self));
  g_return_if_fail (name != NULL);

  produce_call (G_STRFUNC, self, FALSE, series, name, args, priority, timeout_ms, cancellable,
                callback, user_data);
}

/* clang-format off */
/**
 * sluice_ordered_item_producer_produce_call_value: (rename-to sluice_ordered_item_producer_produce_call)
 * @self: a producer made with [ctor@Sluice.OrderedItemProducer.new_for_values]
 * @series: (nullable): the series of the call, %NULL for the default one
 * @name: the name of the function to call
 * @args: (nullable): the arguments (a floating reference is sunk)
 * @priority: the priority of the call
 * @timeout_ms: the timeout of the call in milliseconds, 0 for none
 * @cancellable: (nullable): a cancellable, as for
 *   [method@Sluice.OrderedItemProducer.produce_item]
 * @callback: (scope async) (nullable) (closure user_data): called when the
 *   item has been produced
 * @user_data: data for @callback
 *
 * As [method@Sluice.OrderedItemProducer.produce_call], for a producer of
 * values: the item is a [struct@GObject.Value] holding the call's
 * [struct@GLib.Variant] result (a `GLib.Variant` in Python, from
 * [method@Sluice.Consumerator.next_value]).
 *
 * This function is safe to call from any thread.
 */
/* clang-format on */
void
sluice_ordered_item_producer_produce_call_value (SluiceOrderedItemProducer *self,
                                                 const char *series,
                                                 const char *name,
                                                 GVariant *args,
                                                 int priority,
                                                 int timeout_ms,
                                                 GCancellable *cancellable,
                                                 GAsyncReadyCallback callback,
                                                 gpointer user_data)
{
  g_return_if_fail (SLUICE_IS_ORDERED_ITEM_PRODUCER (self));
  g_return_if_fail (name != NULL);

  produce_call (G_STRFUNC, self, TRUE, series, name, args, priority, timeout_ms, cancellable,
                callback, user_data);
}
