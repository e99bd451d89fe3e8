/* sluice-consumerator.c: the blocking iterator of a consumer thread
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "sluice-consumerator-private.h"

/**
 * SluiceConsumerator:
 *
 * The consumer thread's view of a stream of items: a blocking iterator.
 *
 * [method@Sluice.Consumerator.next] blocks until the next item, the end of
 * the stream (%FALSE without an error) or a failure (%FALSE with the error).
 * Once it has returned %FALSE it keeps returning %FALSE, with the same error.
 *
 * A consumerator comes in two kinds:
 *
 * - The one a [class@Sluice.OrderedItemProducer] hands to its consumer
 *   function reads straight from the producer's reorder buffer, in call
 *   order. [method@Sluice.Consumerator.push] and
 *   [method@Sluice.Consumerator.close] are not for it: the producer feeds it.
 * - One made with [ctor@Sluice.Consumerator.new] is a thread-safe queue with
 *   a capacity: any thread pushes, one thread iterates. A
 *   [iface@Sluice.PushProducer] registered with
 *   [method@Sluice.Consumerator.register_producer] is paused when the queue
 *   holds @capacity items and resumed when a quarter of that is free again.
 *   A push never blocks and never drops an item: past the capacity (a
 *   producer that was slow to pause) items wait in an overflow list.
 *
 * Items are taken in runs: the consumer thread takes every ready item in
 * one visit and is woken only when it waits, so handing over an item costs
 * no system call in the common case.
 *
 * Threading: [method@Sluice.Consumerator.next] belongs to one consumer
 * thread at a time; every other function is safe to call from any thread.
 */

struct _SluiceConsumerator
{
  GObject parent_instance;

  SluiceReorderBuffer *rb;
  gboolean standalone;
  guint capacity;

  /* Serialises pause/resume of the registered producer so that they reach
   * it in the order the fill level asked for them. Recursive because a
   * producer may push from within pause or resume. */
  GRecMutex flow_lock;
  SluicePushProducer *producer;
  gboolean producer_paused;

  GError *close_error; /* set once, before the buffer is ended */
  gboolean values;     /* items are GValue *: the _value functions apply */

  /* Main-loop consumption (next_async): requests served in order by a
   * thread that takes the items, the producer's consumer thread when it
   * was started without a function, else one of our own. */
  GMutex serve_lock;
  GCond serve_cond;
  GQueue requests;            /* of GTask */
  gboolean served_by_owner;   /* the producer's consumer thread serves */
  gboolean serving;           /* a thread of our own serves */
  gboolean serve_interrupted; /* the producer stopped: the server leaves */
  gboolean owner_done;        /* the producer's consumer thread stopped serving */
  gboolean has_stash;         /* an item taken for a request cancelled meanwhile */
  gpointer stash;
  gboolean ended; /* a request got the end: later ones get it too */
  GError *end_error;
};

enum
{
  PROP_0,
  PROP_CAPACITY,
  PROP_N_ITEMS,
  PROP_CLOSED,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

G_DEFINE_FINAL_TYPE (SluiceConsumerator, sluice_consumerator, G_TYPE_OBJECT)

static void
update_flow (SluiceConsumerator *self)
{
  guint64 live;

  g_rec_mutex_lock (&self->flow_lock);
  live = sluice_reorder_buffer_get_n_live (self->rb);
  if (self->producer != NULL)
    {
      if (!self->producer_paused && live >= self->capacity)
        {
          self->producer_paused = TRUE;
          sluice_push_producer_pause_producing (self->producer);
        }
      else if (self->producer_paused && live <= sluice_reorder_buffer_get_low_water (self->rb))
        {
          self->producer_paused = FALSE;
          sluice_push_producer_resume_producing (self->producer);
        }
    }
  g_rec_mutex_unlock (&self->flow_lock);
}

/* Consumer thread, at low water after a push found the queue full. Pushed
 * items are complete at once: no run to size. */
static gboolean
on_room (gpointer data)
{
  SluiceConsumerator *self = data;

  update_flow (self);
  return FALSE;
}

static void
sluice_consumerator_dispose (GObject *object)
{
  SluiceConsumerator *self = SLUICE_CONSUMERATOR (object);

  if (self->standalone && self->rb != NULL)
    {
      g_autoptr (GError) error = g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_STOPPED,
                                                      _ ("The consumerator was disposed"));

      sluice_reorder_buffer_abort (self->rb, error);
    }
  g_rec_mutex_lock (&self->flow_lock);
  {
    g_autoptr (SluicePushProducer) producer = g_steal_pointer (&self->producer);

    /* Nobody takes its items any more: stopped, not left paused for good. */
    self->producer_paused = FALSE;
    if (producer != NULL)
      sluice_push_producer_stop_producing (producer);
  }
  g_rec_mutex_unlock (&self->flow_lock);

  G_OBJECT_CLASS (sluice_consumerator_parent_class)->dispose (object);
}

static void
sluice_consumerator_finalize (GObject *object)
{
  SluiceConsumerator *self = SLUICE_CONSUMERATOR (object);

  /* Requests hold a reference to us: none is left here. */
  g_assert (g_queue_is_empty (&self->requests));
  if (self->has_stash)
    sluice_reorder_buffer_free_item (self->rb, self->stash);
  g_clear_pointer (&self->rb, sluice_reorder_buffer_unref);
  g_clear_error (&self->close_error);
  g_clear_error (&self->end_error);
  g_rec_mutex_clear (&self->flow_lock);
  g_mutex_clear (&self->serve_lock);
  g_cond_clear (&self->serve_cond);

  G_OBJECT_CLASS (sluice_consumerator_parent_class)->finalize (object);
}

static void
sluice_consumerator_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  SluiceConsumerator *self = SLUICE_CONSUMERATOR (object);

  switch (prop_id)
    {
    case PROP_CAPACITY:
      g_value_set_uint (value, self->capacity);
      break;
    case PROP_N_ITEMS:
      g_value_set_uint (value, sluice_consumerator_get_n_items (self));
      break;
    case PROP_CLOSED:
      g_value_set_boolean (value, sluice_consumerator_is_closed (self));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_consumerator_class_init (SluiceConsumeratorClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = sluice_consumerator_dispose;
  object_class->finalize = sluice_consumerator_finalize;
  object_class->get_property = sluice_consumerator_get_property;

  /**
   * SluiceConsumerator:capacity:
   *
   * The number of items at which a registered producer is paused (it is
   * resumed once a quarter of it, at least one, is free). For the
   * consumerator of an ordered item
   * producer, the producer's window.
   */
  properties[PROP_CAPACITY] = g_param_spec_uint ("capacity", NULL, NULL, 1, G_MAXINT / 2, 1,
                                                 G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceConsumerator:n-items:
   *
   * The number of live items: accepted and not yet taken by the consumer
   * (for an ordered item producer: reserved slots, complete or not). It
   * changes from many threads and is never notified: poll it.
   */
  properties[PROP_N_ITEMS] =
      g_param_spec_uint ("n-items", NULL, NULL, 0, G_MAXUINT, 0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * SluiceConsumerator:closed:
   *
   * Whether the stream was closed or stopped: no more items will be
   * accepted. Never notified: poll it.
   */
  properties[PROP_CLOSED] =
      g_param_spec_boolean ("closed", NULL, NULL, FALSE,
                            G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
sluice_consumerator_init (SluiceConsumerator *self)
{
  g_rec_mutex_init (&self->flow_lock);
  g_mutex_init (&self->serve_lock);
  g_cond_init (&self->serve_cond);
  g_queue_init (&self->requests);
}

SluiceConsumerator *
sluice_consumerator_new_for_buffer (SluiceReorderBuffer *rb)
{
  SluiceConsumerator *self = g_object_new (SLUICE_TYPE_CONSUMERATOR, NULL);

  self->rb = sluice_reorder_buffer_ref (rb);
  self->capacity = sluice_reorder_buffer_get_window (rb);
  self->standalone = FALSE;

  return self;
}

/**
 * sluice_consumerator_new: (skip)
 * @capacity: the number of items at which a registered producer is paused;
 *   at least 1
 * @item_free_func: (nullable): frees an item that is never taken (when the
 *   consumerator is stopped or disposed with items in it)
 *
 * Creates a standalone consumerator: a bounded thread-safe queue that any
 * thread pushes to and one thread iterates with
 * [method@Sluice.Consumerator.next].
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer full): a new consumerator
 */
SluiceConsumerator *
sluice_consumerator_new (guint capacity, GDestroyNotify item_free_func)
{
  SluiceConsumerator *self;

  g_return_val_if_fail (capacity > 0 && capacity <= G_MAXINT / 2, NULL);

  self = g_object_new (SLUICE_TYPE_CONSUMERATOR, NULL);
  self->rb = sluice_reorder_buffer_new (capacity, item_free_func, NULL);
  self->capacity = capacity;
  self->standalone = TRUE;
  /* The room callback runs on the consumer thread inside next(), which
   * needs a reference to us anyway. */
  sluice_reorder_buffer_set_callbacks (self->rb, on_room, NULL, NULL, self, NULL);

  return self;
}

GValue *
sluice_value_item_new (const GValue *value)
{
  GValue *item;

  if (value != NULL)
    return g_boxed_copy (G_TYPE_VALUE, value);
  item = g_new0 (GValue, 1);
  g_value_init (item, G_TYPE_POINTER);
  return item;
}

void
sluice_value_item_free (gpointer item)
{
  if (item != NULL)
    g_boxed_free (G_TYPE_VALUE, item);
}

void
sluice_consumerator_set_values (SluiceConsumerator *self, gboolean values)
{
  self->values = values;
}

/**
 * sluice_consumerator_new_for_values: (rename-to sluice_consumerator_new)
 * @capacity: the number of items at which a registered producer is paused;
 *   at least 1
 *
 * Creates a standalone consumerator whose items are values: pushed with
 * [method@Sluice.Consumerator.push_value] and taken with
 * [method@Sluice.Consumerator.next_value]. This is the form language
 * bindings use: a [struct@GObject.Value] carries any of their objects.
 *
 * This function is safe to call from any thread.
 *
 * Returns: (transfer full): a new consumerator
 */
SluiceConsumerator *
sluice_consumerator_new_for_values (guint capacity)
{
  SluiceConsumerator *self;

  g_return_val_if_fail (capacity > 0 && capacity <= G_MAXINT / 2, NULL);

  self = sluice_consumerator_new (capacity, sluice_value_item_free);
  self->values = TRUE;
  return self;
}

/* Sets an unset @value (if any) to a NULL pointer; returns FALSE. Every
 * path of the value forms sets their out value, also a programmer error's:
 * bindings convert it whatever the call returned. */
static gboolean
value_set_none (GValue *value)
{
  if (value != NULL && !G_IS_VALUE (value))
    g_value_init (value, G_TYPE_POINTER);
  return FALSE;
}

/* What next_value() and next_value_finish() give: with @ok, the contents of
 * @item move into @value (a GValue holds no pointer to itself, so the struct
 * may be copied and its shell freed); without, @value is a NULL pointer, as
 * bindings convert every out value. */
static gboolean
take_value_item (gboolean ok, GValue *item, GValue *value)
{
  if (!ok)
    return value_set_none (value);
  if (value != NULL)
    *value = *item;
  else
    g_value_unset (item);
  g_free (item);
  return TRUE;
}

/**
 * sluice_consumerator_next_value: (rename-to sluice_consumerator_next)
 * @self: a consumerator of values
 * @value: (out caller-allocates) (optional): an unset value
 *   (`G_VALUE_INIT`) that receives the next item
 * @error: return location for an error
 *
 * Blocks until the next item is there and moves it into @value, or until
 * the stream ends or fails: [method@Sluice.Consumerator.next] for the
 * consumerator of a producer made with
 * [ctor@Sluice.OrderedItemProducer.new_for_values], or of one made with
 * [ctor@Sluice.Consumerator.new_for_values]. This is the form language
 * bindings use.
 *
 * Every call sets @value, also one that returns %FALSE: to a %NULL pointer
 * (%G_TYPE_POINTER) then, because bindings convert every out value. Unset
 * @value after each call.
 *
 * Call it from one consumer thread at a time.
 *
 * Returns: %TRUE with @value set to the item; %FALSE at the end of the
 *   stream, with @error set if it ended with a failure
 */
gboolean
sluice_consumerator_next_value (SluiceConsumerator *self, GValue *value, GError **error)
{
  GValue *item = NULL;
  gboolean ok;

  g_return_val_if_fail (value == NULL || !G_IS_VALUE (value), FALSE);
  g_return_val_if_fail (SLUICE_IS_CONSUMERATOR (self), value_set_none (value));
  g_return_val_if_fail (self->values, value_set_none (value));
  g_return_val_if_fail (error == NULL || *error == NULL, value_set_none (value));

  ok = sluice_consumerator_next (self, (gpointer *) &item, error);
  return take_value_item (ok, item, value);
}

/**
 * sluice_consumerator_push_value: (rename-to sluice_consumerator_push)
 * @self: a standalone consumerator of values
 * @value: (nullable): the item, copied; %NULL for a %NULL pointer
 * @error: return location for an error
 *
 * Appends a copy of @value for the consumer, as
 * [method@Sluice.Consumerator.push] does with a pointer.
 *
 * This function is safe to call from any thread.
 *
 * Returns: %TRUE if the item was queued; %FALSE with %SLUICE_ERROR_STOPPED
 *   after [method@Sluice.Consumerator.close] or a stop
 */
gboolean
sluice_consumerator_push_value (SluiceConsumerator *self, const GValue *value, GError **error)
{
  GValue *item;

  g_return_val_if_fail (SLUICE_IS_CONSUMERATOR (self), FALSE);
  g_return_val_if_fail (self->values, FALSE);
  g_return_val_if_fail (value == NULL || G_IS_VALUE (value), FALSE);

  item = sluice_value_item_new (value);
  return sluice_consumerator_push (self, item, error);
}

/* sluice_consumerator_next () past the batch: the reorder buffer's whole
 * next (), or a stream closed with an error. */
static G_GNUC_NO_INLINE gboolean
next_slow (SluiceConsumerator *self, gpointer *out_item, GError **error)
{
  gpointer item = NULL;
  GError *local_error = NULL;

  if (sluice_reorder_buffer_next (self->rb, &item, &local_error))
    {
      if (out_item != NULL)
        *out_item = item;
      else
        sluice_reorder_buffer_free_item (self->rb, item);
      return TRUE;
    }

  if (out_item != NULL)
    *out_item = NULL;
  if (local_error == NULL && self->close_error != NULL)
    local_error = g_error_copy (self->close_error);
  if (local_error != NULL)
    g_propagate_error (error, local_error);
  return FALSE;
}

/**
 * sluice_consumerator_next: (skip)
 * @self: a consumerator
 * @out_item: (out) (transfer full) (optional) (nullable): the next item
 * @error: return location for an error
 *
 * Blocks until the next item is there and gives it to the caller, or until
 * the stream ends or fails.
 *
 * Items arrive in order (for an ordered item producer, the order of the
 * produce calls). A pause of the producer
 * ([method@Sluice.PushProducer.pause_producing]) holds the items back until
 * it is resumed. Closing or stopping always wakes a blocked call.
 *
 * Call it from one consumer thread at a time; it is the only function of
 * the consumerator that blocks.
 *
 * Returns: %TRUE with @out_item set; %FALSE at the end of the stream, with
 *   @error set if it ended with a failure (a failed item, a stop, or a
 *   close with an error)
 */
gboolean
sluice_consumerator_next (SluiceConsumerator *self, gpointer *out_item, GError **error)
{
  g_return_val_if_fail (SLUICE_IS_CONSUMERATOR (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  /* An item of the batch, in a frame with no local whose address is taken
   * (no stack protector): the common case of a busy stream. */
  if (G_LIKELY (out_item != NULL) && sluice_reorder_buffer_next_batched (self->rb, out_item))
    return TRUE;
  return next_slow (self, out_item, error);
}

/* --- main-loop consumption --- */

/* What a next_async request gets. */
typedef struct
{
  SluiceReorderBuffer *rb;
  gboolean ok;
  gpointer item;
} NextResult;

static void
next_result_free (gpointer data)
{
  NextResult *result = data;

  if (result->ok)
    sluice_reorder_buffer_free_item (result->rb, result->item);
  sluice_reorder_buffer_unref (result->rb);
  g_free (result);
}

/* A request's cancel handler, kept as its task data (0: none). */
static gulong
request_handler_id (GTask *task)
{
  return GPOINTER_TO_SIZE (g_task_get_task_data (task));
}

/* Outside the serve lock: a request was taken from the queue (to serve or
 * to answer); its cancel handler is no longer needed. Waits for a handler
 * running in another thread, which then finds the request gone. */
static void
request_taken (GTask *task)
{
  gulong id = request_handler_id (task);

  if (id != 0)
    g_cancellable_disconnect (g_task_get_cancellable (task), id);
}

/* The task's context, after a cancel took its request from the queue:
 * answers it (not from the handler, which cannot disconnect itself). */
static gboolean
answer_cancelled_request (gpointer data)
{
  GTask *task = data;

  request_taken (task);
  g_task_return_error_if_cancelled (task);
  return G_SOURCE_REMOVE;
}

/* Any thread: a queued request was cancelled. One still waiting in the
 * queue leaves it and completes with G_IO_ERROR_CANCELLED at once (one
 * being served completes when its item comes, see serve_one()). */
static void
request_cancelled_cb (GCancellable *cancellable, gpointer data)
{
  GTask *task = data;
  SluiceConsumerator *self = g_task_get_source_object (task);
  gboolean removed;

  g_mutex_lock (&self->serve_lock);
  removed = g_queue_remove (&self->requests, task);
  g_mutex_unlock (&self->serve_lock);
  if (removed)
    sluice_idle_attach (g_task_get_context (task), G_PRIORITY_DEFAULT_IDLE,
                        "[sluice] cancelled next_async", answer_cancelled_request, task,
                        g_object_unref);
}

/* The serving thread: answers one request with the next item (or the end).
 * A request cancelled before the item came completes with
 * G_IO_ERROR_CANCELLED and the item waits for the next request. */
static void
serve_one (SluiceConsumerator *self, GTask *task)
{
  NextResult *result;
  GError *error = NULL;
  gboolean ok;
  gpointer item = NULL;

  if (g_task_return_error_if_cancelled (task))
    return;

  g_mutex_lock (&self->serve_lock);
  ok = self->has_stash;
  item = g_steal_pointer (&self->stash);
  self->has_stash = FALSE;
  g_mutex_unlock (&self->serve_lock);
  if (!ok)
    ok = sluice_consumerator_next (self, &item, &error);

  if (ok && g_cancellable_is_cancelled (g_task_get_cancellable (task)))
    {
      g_mutex_lock (&self->serve_lock);
      self->stash = item;
      self->has_stash = TRUE;
      g_mutex_unlock (&self->serve_lock);
      g_task_return_error_if_cancelled (task);
      return;
    }
  if (!ok)
    {
      g_mutex_lock (&self->serve_lock);
      if (!self->ended)
        {
          self->ended = TRUE;
          self->end_error = error != NULL ? g_error_copy (error) : NULL;
        }
      g_mutex_unlock (&self->serve_lock);
    }
  if (error != NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  result = g_new0 (NextResult, 1);
  result->rb = sluice_reorder_buffer_ref (self->rb);
  result->ok = ok;
  result->item = item;
  g_task_return_pointer (task, result, next_result_free);
}

/* Answers @task at once after the producer's consumer thread stopped
 * serving: with the end it saw, or the producer's stop. */
static void
answer_after_serving (SluiceConsumerator *self, GTask *task, gboolean ended, GError *end_error)
{
  const GError *abort_error = sluice_reorder_buffer_get_abort_error (self->rb);
  NextResult *result;

  if (ended && end_error != NULL)
    g_task_return_error (task, end_error);
  else if (!ended && abort_error != NULL)
    g_task_return_error (task, g_error_copy (abort_error));
  else if (!ended)
    g_task_return_new_error (task, SLUICE_ERROR, SLUICE_ERROR_STOPPED, "%s",
                             _ ("The producer was stopped"));
  else
    {
      result = g_new0 (NextResult, 1);
      result->rb = sluice_reorder_buffer_ref (self->rb);
      g_task_return_pointer (task, result, next_result_free);
    }
}

/* Serves requests until the iteration is over and no request waits, or the
 * producer was stopped. With @linger_us >= 0 (a thread of our own) it also
 * leaves when no request came for that long. Returns whether the iteration
 * is over. */
static gboolean
serve (SluiceConsumerator *self, gint64 linger_us)
{
  gboolean over = FALSE;

  for (;;)
    {
      GTask *task;

      g_mutex_lock (&self->serve_lock);
      while (g_queue_is_empty (&self->requests) && !self->serve_interrupted && !over)
        {
          if (linger_us < 0)
            g_cond_wait (&self->serve_cond, &self->serve_lock);
          else if (!g_cond_wait_until (&self->serve_cond, &self->serve_lock,
                                       g_get_monotonic_time () + linger_us) &&
                   g_queue_is_empty (&self->requests))
            break;
        }
      task = g_queue_pop_head (&self->requests);
      if (task == NULL)
        {
          if (linger_us >= 0)
            self->serving = FALSE;
          else
            self->owner_done = TRUE; /* later requests are answered at once */
          g_mutex_unlock (&self->serve_lock);
          return over || self->serve_interrupted;
        }
      g_mutex_unlock (&self->serve_lock);

      request_taken (task);
      serve_one (self, task);
      g_object_unref (task);
      over = over || sluice_reorder_buffer_consumer_finished (self->rb);
    }
}

static gpointer
serve_thread (gpointer data)
{
  g_autoptr (SluiceConsumerator) self = data;

  /* A thread of our own lingers a little for the next request: a consumer
   * on a main loop asks again as soon as it has handled an item. */
  serve (self, 100 * G_TIME_SPAN_MILLISECOND);
  return NULL;
}

void
sluice_consumerator_serve_requests (SluiceConsumerator *self)
{
  serve (self, -1);
}

void
sluice_consumerator_set_served_by_owner (SluiceConsumerator *self)
{
  g_mutex_lock (&self->serve_lock);
  self->served_by_owner = TRUE;
  g_mutex_unlock (&self->serve_lock);
}

void
sluice_consumerator_finish_serving (SluiceConsumerator *self)
{
  GQueue requests;
  GTask *task;
  gboolean ended;
  GError *end_error;

  g_mutex_lock (&self->serve_lock);
  if (!self->served_by_owner)
    {
      g_mutex_unlock (&self->serve_lock);
      return;
    }
  self->owner_done = TRUE;
  requests = self->requests;
  g_queue_init (&self->requests);
  ended = self->ended;
  end_error = self->end_error;
  g_mutex_unlock (&self->serve_lock);

  while ((task = g_queue_pop_head (&requests)) != NULL)
    {
      request_taken (task);
      answer_after_serving (self, task, ended, end_error != NULL ? g_error_copy (end_error) : NULL);
      g_object_unref (task);
    }
}

void
sluice_consumerator_interrupt_serving (SluiceConsumerator *self)
{
  g_mutex_lock (&self->serve_lock);
  self->serve_interrupted = TRUE;
  g_cond_broadcast (&self->serve_cond);
  g_mutex_unlock (&self->serve_lock);
}

/**
 * sluice_consumerator_next_async:
 * @self: a consumerator
 * @cancellable: (nullable): cancels this request
 * @callback: (scope async) (nullable) (closure user_data): called on the thread-default
 *   context of this call with the next item, or the end
 * @user_data: data for @callback
 *
 * Asks for the next item without blocking: the form for a consumer that
 * runs on a main loop, such as a language that cannot run code on other
 * threads (JavaScript with GJS). Finish with
 * [method@Sluice.Consumerator.next_finish] or, for items that are values,
 * [method@Sluice.Consumerator.next_value_finish].
 *
 * Requests are answered in the order they were made, each with the next
 * item in order, by a thread that takes the items with
 * [method@Sluice.Consumerator.next]: the consumer thread of an ordered item
 * producer started without a consumer function (requests made before its
 * start wait for it; a stop of a producer never started answers them), or
 * else, for a standalone consumerator or a pipeline's, a thread of the
 * consumerator's own (do not mix with calls to
 * [method@Sluice.Consumerator.next]). Order, flow control and errors are
 * those of [method@Sluice.Consumerator.next]. A request cancelled before its
 * item was taken completes with %G_IO_ERROR_CANCELLED at once; one whose
 * item the thread is waiting for completes with %G_IO_ERROR_CANCELLED when
 * the item comes, and that item goes to the next request.
 *
 * This function is safe to call from any thread; the callback runs from a
 * main loop source, never inside this call.
 */
void
sluice_consumerator_next_async (SluiceConsumerator *self,
                                GCancellable *cancellable,
                                GAsyncReadyCallback callback,
                                gpointer user_data)
{
  GTask *task;
  gboolean spawn = FALSE;

  g_return_if_fail (SLUICE_IS_CONSUMERATOR (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, sluice_consumerator_next_async);
  /* An item is never dropped for a cancellation (see above). */
  g_task_set_check_cancellable (task, FALSE);

  /* Connected before the request is queued, so that the serving thread
   * finds its handler; a cancel before then does nothing but is seen
   * below. */
  if (cancellable != NULL)
    g_task_set_task_data (task,
                          GSIZE_TO_POINTER (g_cancellable_connect (
                              cancellable, G_CALLBACK (request_cancelled_cb), task, NULL)),
                          NULL);

  g_mutex_lock (&self->serve_lock);
  if (self->owner_done || g_cancellable_is_cancelled (cancellable))
    {
      gboolean ended = self->ended;
      GError *end_error = self->end_error != NULL ? g_error_copy (self->end_error) : NULL;
      gboolean owner_done = self->owner_done;

      g_mutex_unlock (&self->serve_lock);
      request_taken (task);
      if (owner_done)
        answer_after_serving (self, task, ended, end_error);
      else
        {
          g_clear_error (&end_error);
          g_task_return_error_if_cancelled (task);
        }
      g_object_unref (task);
      return;
    }
  g_queue_push_tail (&self->requests, task);
  if (!self->served_by_owner && !self->serving)
    self->serving = spawn = TRUE;
  g_cond_signal (&self->serve_cond);
  g_mutex_unlock (&self->serve_lock);

  if (spawn)
    g_thread_unref (g_thread_new ("sluice-next-async", serve_thread, g_object_ref (self)));
}

/**
 * sluice_consumerator_next_finish: (skip)
 * @self: a consumerator
 * @result: the result given to the callback
 * @out_item: (out) (transfer full) (optional) (nullable): the next item
 * @error: return location for an error
 *
 * Finishes [method@Sluice.Consumerator.next_async], with the meaning of
 * [method@Sluice.Consumerator.next]'s return value.
 *
 * Returns: %TRUE with @out_item set; %FALSE at the end of the stream, with
 *   @error set if it ended with a failure or the request was cancelled
 */
gboolean
sluice_consumerator_next_finish (SluiceConsumerator *self,
                                 GAsyncResult *result,
                                 gpointer *out_item,
                                 GError **error)
{
  NextResult *next;
  gboolean ok;

  if (out_item != NULL)
    *out_item = NULL;
  g_return_val_if_fail (SLUICE_IS_CONSUMERATOR (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  next = g_task_propagate_pointer (G_TASK (result), error);
  if (next == NULL)
    return FALSE;
  ok = next->ok;
  if (ok && out_item != NULL)
    {
      *out_item = g_steal_pointer (&next->item);
      next->ok = FALSE;
    }
  next_result_free (next);
  return ok;
}

/**
 * sluice_consumerator_next_value_finish: (rename-to sluice_consumerator_next_finish)
 * @self: a consumerator of values
 * @result: the result given to the callback
 * @value: (out caller-allocates) (optional): an unset value
 *   (`G_VALUE_INIT`) that receives the next item
 * @error: return location for an error
 *
 * Finishes [method@Sluice.Consumerator.next_async] for items that are
 * values, as [method@Sluice.Consumerator.next_value] does: @value is set in
 * every case, to a %NULL pointer when there is no item. This is the form
 * language bindings use.
 *
 * Returns: %TRUE with @value set to the item; %FALSE at the end of the
 *   stream, with @error set if it ended with a failure or the request was
 *   cancelled
 */
gboolean
sluice_consumerator_next_value_finish (SluiceConsumerator *self,
                                       GAsyncResult *result,
                                       GValue *value,
                                       GError **error)
{
  GValue *item = NULL;
  gboolean ok;

  g_return_val_if_fail (value == NULL || !G_IS_VALUE (value), FALSE);
  g_return_val_if_fail (SLUICE_IS_CONSUMERATOR (self), value_set_none (value));
  g_return_val_if_fail (self->values, value_set_none (value));

  ok = sluice_consumerator_next_finish (self, result, (gpointer *) &item, error);
  return take_value_item (ok, item, value);
}

/**
 * sluice_consumerator_push: (skip)
 * @self: a standalone consumerator
 * @item: (transfer full) (nullable): the item
 * @error: return location for an error
 *
 * Appends @item for the consumer. It never blocks: when the consumerator
 * holds its capacity, the registered producer is paused, and items pushed
 * before it takes effect still go in (nothing is dropped).
 *
 * After [method@Sluice.Consumerator.close] or a stop, the item is freed
 * with the item free function and the push fails with
 * %SLUICE_ERROR_STOPPED.
 *
 * This function is safe to call from any thread.
 *
 * Returns: %TRUE if the item was queued
 */
gboolean
sluice_consumerator_push (SluiceConsumerator *self, gpointer item, GError **error)
{
  gboolean full;

  g_return_val_if_fail (SLUICE_IS_CONSUMERATOR (self), FALSE);
  g_return_val_if_fail (self->standalone, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  sluice_reorder_buffer_lock (self->rb);
  if (sluice_reorder_buffer_is_closed_locked (self->rb))
    {
      sluice_reorder_buffer_unlock (self->rb);
      sluice_reorder_buffer_free_item (self->rb, item);
      g_set_error_literal (error, SLUICE_ERROR, SLUICE_ERROR_STOPPED,
                           _ ("The consumerator is closed"));
      return FALSE;
    }
  sluice_reorder_buffer_push_locked (self->rb, item);
  full = !sluice_reorder_buffer_has_room_locked (self->rb, FALSE);
  sluice_reorder_buffer_unlock (self->rb);

  if (full)
    update_flow (self);

  return TRUE;
}

/**
 * sluice_consumerator_close:
 * @self: a standalone consumerator
 * @error: (nullable): the error to end the stream with, or %NULL for a
 *   normal end
 *
 * Ends the stream: the consumer takes every item pushed so far, then
 * [method@Sluice.Consumerator.next] returns %FALSE, with a copy of @error if
 * one is given. Later pushes fail. Closing twice does nothing.
 *
 * This function is safe to call from any thread.
 */
void
sluice_consumerator_close (SluiceConsumerator *self, const GError *error)
{
  g_return_if_fail (SLUICE_IS_CONSUMERATOR (self));
  g_return_if_fail (self->standalone);

  sluice_reorder_buffer_lock (self->rb);
  if (sluice_reorder_buffer_is_closed_locked (self->rb))
    {
      sluice_reorder_buffer_unlock (self->rb);
      return;
    }
  /* The error and the end go together under the lock: a concurrent close
   * sees the stream closed and changes nothing. */
  if (error != NULL)
    self->close_error = g_error_copy (error);
  sluice_reorder_buffer_end_locked (self->rb);
  sluice_reorder_buffer_unlock (self->rb);
}

/**
 * sluice_consumerator_end:
 * @self: a standalone consumerator
 *
 * Ends the stream normally: [method@Sluice.Consumerator.close] without an
 * error, for language bindings that cannot pass a %NULL error.
 *
 * This function is safe to call from any thread.
 */
void
sluice_consumerator_end (SluiceConsumerator *self)
{
  sluice_consumerator_close (self, NULL);
}

/**
 * sluice_consumerator_register_producer:
 * @self: a standalone consumerator
 * @producer: the producer that feeds it
 *
 * Registers @producer for flow control: it is paused when the consumerator
 * holds [property@Sluice.Consumerator:capacity] items and resumed when the
 * consumer has freed a quarter of that (at least one item). Pauses and
 * resumes alternate and
 * are called from whichever thread pushed or consumed at that moment.
 * Replaces any producer registered before, resuming it first if @self
 * paused it. When @self is disposed, a producer still registered is
 * stopped ([method@Sluice.PushProducer.stop_producing]): nothing takes its
 * items any more.
 *
 * This function is safe to call from any thread.
 */
void
sluice_consumerator_register_producer (SluiceConsumerator *self, SluicePushProducer *producer)
{
  g_return_if_fail (SLUICE_IS_CONSUMERATOR (self));
  g_return_if_fail (SLUICE_IS_PUSH_PRODUCER (producer));
  g_return_if_fail (self->standalone);

  g_rec_mutex_lock (&self->flow_lock);
  /* A replaced producer that we paused is resumed, never left paused. */
  sluice_consumerator_unregister_producer (self);
  self->producer = g_object_ref (producer);
  self->producer_paused = FALSE;
  g_rec_mutex_unlock (&self->flow_lock);

  update_flow (self);
}

/**
 * sluice_consumerator_unregister_producer:
 * @self: a standalone consumerator
 *
 * Forgets the registered producer. A producer paused by @self is resumed
 * first, so that nothing is left paused for good.
 *
 * This function is safe to call from any thread.
 */
void
sluice_consumerator_unregister_producer (SluiceConsumerator *self)
{
  g_autoptr (SluicePushProducer) producer = NULL;
  gboolean was_paused;

  g_return_if_fail (SLUICE_IS_CONSUMERATOR (self));

  g_rec_mutex_lock (&self->flow_lock);
  producer = g_steal_pointer (&self->producer);
  was_paused = self->producer_paused;
  self->producer_paused = FALSE;
  if (producer != NULL && was_paused)
    sluice_push_producer_resume_producing (producer);
  g_rec_mutex_unlock (&self->flow_lock);
}

/**
 * sluice_consumerator_get_capacity:
 * @self: a consumerator
 *
 * Gets [property@Sluice.Consumerator:capacity].
 *
 * This function is safe to call from any thread.
 *
 * Returns: the capacity
 */
guint
sluice_consumerator_get_capacity (SluiceConsumerator *self)
{
  g_return_val_if_fail (SLUICE_IS_CONSUMERATOR (self), 0);

  return self->capacity;
}

/**
 * sluice_consumerator_get_n_items:
 * @self: a consumerator
 *
 * Gets [property@Sluice.Consumerator:n-items], the live items.
 *
 * This function is safe to call from any thread.
 *
 * Returns: the number of items accepted and not yet taken
 */
guint
sluice_consumerator_get_n_items (SluiceConsumerator *self)
{
  g_return_val_if_fail (SLUICE_IS_CONSUMERATOR (self), 0);

  return (guint) MIN (sluice_reorder_buffer_get_n_live (self->rb), G_MAXUINT);
}

/**
 * sluice_consumerator_is_closed:
 * @self: a consumerator
 *
 * Gets [property@Sluice.Consumerator:closed].
 *
 * This function is safe to call from any thread.
 *
 * Returns: whether the stream was closed or stopped
 */
gboolean
sluice_consumerator_is_closed (SluiceConsumerator *self)
{
  gboolean closed;

  g_return_val_if_fail (SLUICE_IS_CONSUMERATOR (self), FALSE);

  sluice_reorder_buffer_lock (self->rb);
  closed = sluice_reorder_buffer_is_closed_locked (self->rb);
  sluice_reorder_buffer_unlock (self->rb);

  return closed;
}
