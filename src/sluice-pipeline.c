/* sluice-pipeline.c: multi-stage threaded processing of a stream of items
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Each input gets a slot of the reorder buffer when it is put (the window
 * bounds the inputs between put and consumer), and travels the stages as a
 * tree of nodes: what a stage function emits becomes child nodes of its
 * input's node in the next stage (a call's one output goes on in the node
 * itself, see stage_run()). A node is done when its function has
 * returned and its children are done; it then holds the flat list of its
 * final outputs in emitted order. A root that is done completes a slot with
 * that list (the buffer hands out the items of a list in turn), or with the
 * input's error. With keep-order it is the input's own slot; without, the
 * n-th root to finish fills the n-th slot, so outputs come as inputs finish.
 * Completions never block: stage threads wait only for room in the next
 * stage's queue, and the last stage for nothing, so the stages cannot
 * deadlock whatever the consumer does.
 */

#include "sluice-consumerator-private.h"
#include "sluice-pipeline-private.h"

/**
 * SluicePipeline:
 *
 * Runs a stream of items through stages, each a function run by its own
 * threads, and hands the outputs of the last stage to a consumer: the
 * multi-stage job manager of Python's jobq, without its hangs and silent
 * losses.
 *
 * ```c
 * pipeline = sluice_pipeline_new (TRUE, 1024, g_free);
 * sluice_pipeline_add_stage (pipeline, "parse", 1, 1024, parse, NULL, NULL);
 * sluice_pipeline_add_stage (pipeline, "work", 4, 1024, work, NULL, NULL);
 * sluice_pipeline_start (pipeline, write_all, out, NULL);
 * while ((line = next_line ()) != NULL)
 *   sluice_pipeline_put (pipeline, line, NULL, NULL);
 * sluice_pipeline_close_input (pipeline);
 * sluice_pipeline_join (pipeline, -1, &error);
 * ```
 *
 * ## Stages
 *
 * A stage is a [callback@Sluice.PipelineStageFunc], a name, a number of
 * threads and the capacity of its input queue. The function takes one
 * input and emits zero (the input is dropped), one or many outputs with
 * [method@Sluice.PipelineEmitter.emit]; emitting blocks while the next
 * stage's queue is full. Stages are added before the start.
 *
 * ## Input and output
 *
 * [method@Sluice.Pipeline.put] blocks while the window is full (see below)
 * or the first stage's queue is; [method@Sluice.Pipeline.close_input]
 * ends the input. The outputs are taken from the
 * [property@Sluice.Pipeline:consumerator] (by a thread of yours with
 * [method@Sluice.Consumerator.next], or on a main loop with
 * [method@Sluice.Consumerator.next_async]), or by a consumer function
 * that [method@Sluice.Pipeline.start] runs in a thread of its own. The
 * consumerator ends after the outputs of the last input.
 * [method@Sluice.Pipeline.join] waits until every stage has finished (and
 * the consumer function has returned).
 *
 * The [property@Sluice.Pipeline:window] bounds the inputs between their
 * put and the moment the consumer takes their first output; the queues
 * bound the items waiting for each stage. Memory stays bounded however slow
 * the consumer; an input that emits many outputs holds them until the
 * consumer has taken them.
 *
 * ## Order
 *
 * With [property@Sluice.Pipeline:keep-order] the outputs come in input
 * order, the outputs of one input together and in the order they were
 * emitted (through every stage), whatever the thread counts. Without it
 * the outputs of an input come together as soon as the input is through
 * the last stage.
 *
 * ## Errors
 *
 * A stage function that fails fails its input: no output of that input is
 * delivered, and later stages do no more work for it. By default the
 * failure is delivered at its position (in input order with keep-order,
 * else when the input finished): the consumer gets every output before it,
 * then [method@Sluice.Consumerator.next] fails with the error; the pipeline
 * then stops (later inputs are released with the item free function, puts
 * fail with %SLUICE_ERROR_STOPPED) and [method@Sluice.Pipeline.join]
 * reports the error. With [property@Sluice.Pipeline:skip-failed] the failed
 * input is left out and reported by [signal@Sluice.Pipeline::item-failed].
 * A failure is never silently lost.
 *
 * ## Threading
 *
 * The pipeline belongs to the thread-default main context of the thread
 * that created it, its owner context: signals and the callbacks of
 * [method@Sluice.Pipeline.join_async] run there, from a main loop source,
 * never inside a call of yours. [method@Sluice.Pipeline.put],
 * [method@Sluice.Pipeline.close_input], [method@Sluice.Pipeline.stop] and
 * [method@Sluice.Pipeline.join] are safe from any thread. The item free
 * function runs on whichever thread lets go of an item nobody will take.
 * The destroy notifies of the stage functions', key functions' and the
 * consumer function's data run on the owner context, from a main loop
 * source, once the stage's threads (or the consumer function) are done; if
 * that context is never run again, they run when it is freed.
 *
 * A started pipeline keeps itself alive until its threads have finished.
 * Dropping your last reference before then ends the input, as
 * [method@Sluice.Pipeline.close_input] does, when a consumer function takes
 * the outputs: what was put still goes through to it. Without a consumer
 * function nobody is left to take the outputs, and the pipeline stops, as
 * [method@Sluice.Pipeline.stop] does (a thread of yours still reading the
 * consumerator then sees %SLUICE_ERROR_STOPPED: keep a reference to the
 * pipeline while you read). Either way its threads finish and it frees
 * itself; nothing waits forever.
 */

/**
 * SluicePipelineEmitter:
 *
 * What a [callback@Sluice.PipelineStageFunc] emits its outputs through.
 * Each stage thread has one; it is valid during the stage function's call
 * only, on that thread.
 */

typedef struct _Node Node;
typedef struct _Stage Stage;

/* One item at one stage, and then the outputs that came of it. */
struct _Node
{
  Node *next;   /* a free root's, in a chain (root_free()) */
  Node *parent; /* NULL for an input's root */
  Node *root;
  gpointer item;       /* until the stage function takes it */
  int pending;         /* atomic: children not done, + 1 until the function returned */
  GPtrArray *outputs;  /* the last stage's emitted items; once done, the flat list */
  gpointer output;     /* the one output instead of a list, with single set */
  gboolean single;     /* the outputs are one item, @output (most nodes) */
  Node *first_child;   /* the first emitted (most nodes have one child) */
  GPtrArray *children; /* the others, from the second */
  guint n_children;
  GError *error;
  guint depth; /* the index of the stage it is an item of */
  guint index; /* its place among its parent's children */
  guint64 key; /* at a dispatcher stage: the key function's */

  /* Roots only. */
  int *feeding;     /* atomic, per dispatcher stage k: the nodes of stages
                     * before k not through yet (NULL without dispatchers) */
  SluiceSlot *slot; /* keep-order: the input's own slot */
  guint64 seq;      /* the input's number */
  int failed;       /* atomic: a failure somewhere in the tree: skip the rest */
};

/* A plain stage's queue: a ring of node pointers, grown when full (pushes
 * wait for room at the stage's capacity, so it rarely is). A pop copies
 * pointers from a few shared cache lines and touches no node: a batch of
 * pops (stage_pop()) costs no chain of cache misses, one node after the
 * other's next, as a linked list does. */
typedef struct
{
  Node **ring;
  guint mask; /* the ring's size less one: a power of two less one */
  guint head;
  guint length;
} NodeQueue;

static void
node_queue_init (NodeQueue *queue, guint capacity)
{
  guint size = 8;

  /* Grown as needed beyond a few pages. */
  while (size < MIN (capacity, 1024))
    size *= 2;
  queue->ring = g_new (Node *, size);
  queue->mask = size - 1;
}

static void
node_queue_grow (NodeQueue *queue)
{
  guint size = queue->mask + 1;
  Node **ring = g_new (Node *, 2 * size);

  for (guint i = 0; i < queue->length; i++)
    ring[i] = queue->ring[(queue->head + i) & queue->mask];
  g_free (queue->ring);
  queue->ring = ring;
  queue->mask = 2 * size - 1;
  queue->head = 0;
}

static inline void
node_queue_push_tail (NodeQueue *queue, Node *node)
{
  if (G_UNLIKELY (queue->length > queue->mask))
    node_queue_grow (queue);
  queue->ring[(queue->head + queue->length++) & queue->mask] = node;
}

static inline void
node_queue_push_head (NodeQueue *queue, Node *node)
{
  if (G_UNLIKELY (queue->length > queue->mask))
    node_queue_grow (queue);
  queue->head = (queue->head - 1) & queue->mask;
  queue->ring[queue->head] = node;
  queue->length++;
}

static inline Node *
node_queue_pop_head (NodeQueue *queue)
{
  Node *node;

  if (queue->length == 0)
    return NULL;
  node = queue->ring[queue->head];
  queue->head = (queue->head + 1) & queue->mask;
  queue->length--;
  return node;
}

struct _Stage
{
  SluicePipeline *pipeline;
  guint index;
  char *name;
  guint n_threads;
  guint capacity;
  SluicePipelineStageFunc func;
  gpointer func_data;
  GDestroyNotify func_data_destroy;

  /* Read for every item: not on the lock's lines. */
  G_GNUC_UNUSED char pad_lock[64];
  GMutex lock; /* taken with sluice_mutex_lock_spinning(): held for a few
                * dozen instructions, by three or more threads per item */
  GCond not_empty;
  GCond not_full;
  NodeQueue queue;    /* a plain stage's */
  gboolean closed;    /* no more input will come (see also n_putting); set
                       * atomically under the lock, read atomically by puts */
  guint n_alive;      /* threads that have not finished */
  gboolean spawned;   /* start() started its threads */
  gboolean ended;     /* the last thread finished: none starts any more */
  double rate;        /* the most units per second (0: no limit) */
  guint step;         /* units per item */
  gint64 next_free;   /* monotonic time the next item may start at */
  GCond rate_cond;    /* broadcast by a stop */
  int limited;        /* atomic: rate > 0 */
  int shrink;         /* atomic: n_alive > n_threads: threads are to leave */
  GPtrArray *batches; /* of PopBatch: its threads' taken items */
  guint n_batched;    /* items taken into batches, until their owner comes
                       * back to the lock (counted against the capacity) */
  guint n_waiting;    /* threads waiting for an item */
  guint n_untimed;    /* of them, those that sleep without a deadline */
  guint wake_at;      /* the count at which a push wakes a thread that sleeps
                       * with a deadline (see stage_wait_locked()) */
  guint n_blocked;    /* pushers waiting for room */
  guint n_pop_wakes;  /* signals of not_empty no waiter has returned for yet */
  guint n_push_wakes; /* the same for not_full */
  int n_putting;      /* first stage, atomic: puts in progress, which may still
                       * queue (see sluice_pipeline_put()) */
  guint max_queued;   /* the most items the queue ever held */
  guint64 n_sleeps;   /* waits of its threads for an item that slept */
  /* The wake rule's view of the load (stage_wait_locked()): the time
   * between the items its threads finished. */
  SluiceItemGap item_gap;
  /* Written by its threads for every item: off the lines of the fields
   * under the lock. */
  G_GNUC_UNUSED char pad0[64];
  guint64 n_done;   /* atomic: inputs the function succeeded on */
  guint64 n_failed; /* atomic: inputs the function failed */
  G_GNUC_UNUSED char pad1[64];

  /* A dispatcher stage: its items wait, grouped by input, until every
   * earlier input's items have arrived, then go in input order to queues
   * per key; a key runs on one thread at a time. */
  SluicePipelineKeyFunc key_func;
  gpointer key_data;
  GDestroyNotify key_data_destroy;
  GHashTable *keys; /* guint64 key -> KeyQueue, while it has items */
  GQueue ready;     /* of KeyQueue: items queued, none running */
  GHashTable *held; /* input number -> Held */
  guint64 next_seq; /* the input whose items are released next */
  guint n_keyed;    /* items in the key queues */
  guint n_held;     /* items waiting for an earlier input */
};

typedef struct
{
  guint64 key;
  GQueue nodes;
  gboolean running;
} KeyQueue;

/* The most items a plain stage's thread takes from its queue per lock (its
 * share of what is queued, see stage_pop()). */
#define POP_BATCH_MAX 32

/* A plain stage's thread's items taken from the queue, not started yet.
 * The owner takes from the front without the stage's lock; a thread with
 * nothing to do steals from the back under the lock; both through one
 * compare-and-swap of span (next | end << 32), so each item goes exactly
 * once. The owner refills it under the lock, only when it is empty: no
 * thief reads it meanwhile. */
typedef struct
{
  guint64 span;  /* atomic */
  guint counted; /* under the stage's lock: in the stage's n_batched */
  Node *nodes[POP_BATCH_MAX];
} PopBatch;

typedef struct
{
  guint64 seq;
  gboolean fed; /* every node of the stages before is through */
  GPtrArray *nodes;
} Held;

/* The most outputs a stage function's call keeps before it pushes them
 * into the next stage under one lock (see emitter_flush()). */
#define PUSH_BATCH_MAX 32

struct _SluicePipelineEmitter
{
  GObject parent_instance;

  Stage *stage;
  Node *node; /* during a call of the stage function only */

  /* Children emitted into the next stage (a plain one), not pushed yet. */
  Node *push[PUSH_BATCH_MAX];
  guint n_push;

  /* The call's first output, not made a child yet (see stage_run()). */
  gpointer stash;
  gboolean stashed;

  /* Roots this thread finished, for reuse (root_free()). */
  Node *freed;
  guint n_freed;
};

G_DEFINE_FINAL_TYPE (SluicePipelineEmitter, sluice_pipeline_emitter, G_TYPE_OBJECT)

struct _SluicePipeline
{
  GObject parent_instance;

  GMainContext *owner_context;
  SluiceReorderBuffer *rb;
  SluiceConsumerator *consumerator;
  GDestroyNotify item_free_func;
  gboolean values;
  gboolean keep_order;
  guint window;
  GPtrArray *stages;            /* of Stage */
  gboolean dispatch_after_head; /* a stage after the first has a key function */
  gulong cancelled_handler;

  /* Under lock. */
  GMutex lock;
  GCond cond;       /* room in the window, the end of the pipeline */
  int started;      /* atomic reads */
  gboolean stopped; /* stop(), or the consumer reached a failure or went away */
  guint n_putting;  /* puts in progress: the first stage ends when they are done */
  gboolean workers_done;
  gboolean consumer_running;
  gboolean finished;
  GError *stage_error; /* the unskipped failure of the lowest input number */
  guint64 stage_error_seq;
  GError *consumer_error;
  GList *join_tasks;  /* of GTask */
  GQueue async_puts;  /* of GTask: put_async calls, in order */
  gboolean draining;  /* a thread does the async puts */
  GPtrArray *threads; /* of GThread: the stage threads and the consumer, until joined */
  guint n_holders;    /* running threads (and a last-reference handler): the toggle
                       * reference is ours until they are gone */
  /* The user's references as the toggle notifies count them: 1 at start,
   * one more for each 1 -> 2 notify, one less for each 2 -> 1; gone at 0.
   * Not a flag: GLib (2.74) notifies after the reference count changed, so
   * a 2 -> 1 notify may come after the 1 -> 2 and 2 -> 1 of a reference
   * another thread took meanwhile (a callback's g_object_ref ()). */
  int user_refs;
  gboolean toggle_released; /* the toggle reference went (or is going) */

  SluicePipelineConsumerFunc consumer_func;
  gpointer consumer_data;
  GDestroyNotify consumer_data_destroy;

  /* Read for every item, written rarely. */
  int skip_failed; /* atomic */
  int stopping;    /* atomic: stage functions no longer run */

  /* The counters written for every item, each on a cache line of its own:
   * the puts write n_in, the threads that finish inputs n_out, and neither
   * line is the one every stage thread reads (above). */
  G_GNUC_UNUSED char pad0[64];
  guint64 n_in; /* atomic: inputs put */
  G_GNUC_UNUSED char pad1[64];
  guint64 n_out;        /* atomic: inputs through every stage */
  guint64 n_roots_done; /* atomic: the slot the next unordered result fills */

  /* Root nodes for reuse (root_new(), root_free()). */
  G_GNUC_UNUSED char pad2[64];
  Node *put_chain; /* atomic: the chain puts take roots from */
  GMutex pool_lock;
  Node *pool;     /* chains of free roots, under pool_lock */
  guint n_chains; /* their number */
  G_GNUC_UNUSED char pad3[64];
};

enum
{
  PROP_0,
  PROP_KEEP_ORDER,
  PROP_WINDOW,
  PROP_SKIP_FAILED,
  PROP_CONSUMERATOR,
  N_PROPS
};

static GParamSpec *properties[N_PROPS];

enum
{
  SIGNAL_ITEM_FAILED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (SluicePipeline, sluice_pipeline, G_TYPE_OBJECT)

static GError *
stopped_error (void)
{
  return g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_STOPPED, _ ("The pipeline was stopped"));
}

static void
free_item (SluicePipeline *self, gpointer item)
{
  if (item != NULL && self->item_free_func != NULL)
    self->item_free_func (item);
}

/* --- owner context --- */

/* Runs @func (@data) from an idle source on @context: never inside a call
 * of the user's. */
static void
run_later (GMainContext *context, GSourceFunc func, gpointer data, GDestroyNotify destroy)
{
  sluice_idle_attach (context, G_PRIORITY_DEFAULT, "[sluice] pipeline callback", func, data,
                      destroy);
}

typedef struct
{
  SluicePipeline *self;
  guint64 seq;
  GError *error;
} FailedItem;

static gboolean
emit_item_failed (gpointer data)
{
  FailedItem *failed = data;

  g_signal_emit (failed->self, signals[SIGNAL_ITEM_FAILED], 0, failed->seq, failed->error);
  return G_SOURCE_REMOVE;
}

static void
failed_item_free (gpointer data)
{
  FailedItem *failed = data;

  g_object_unref (failed->self);
  g_error_free (failed->error);
  g_free (failed);
}

/* Any thread: item-failed for input @seq from a source on the owner
 * context. Sources of one priority attached from one thread are
 * dispatched in the order they were attached. */
static void
item_failed_later (SluicePipeline *self, guint64 seq, GError *error)
{
  FailedItem *failed = g_new (FailedItem, 1);

  failed->self = g_object_ref (self);
  failed->seq = seq;
  failed->error = error;
  run_later (self->owner_context, emit_item_failed, failed, failed_item_free);
}

static gboolean
destroy_now (gpointer data)
{
  return G_SOURCE_REMOVE;
}

/* Any thread: @destroy (@data) runs on the owner context, from a source (or
 * when the context is freed with the source still in it). */
static void
destroy_later (SluicePipeline *self, GDestroyNotify destroy, gpointer data)
{
  if (destroy != NULL)
    run_later (self->owner_context, destroy_now, data, destroy);
}

/* The monotonic time @timeout_us from now, or -1 for none: for -1, and for
 * a timeout so large that the sum would overflow (jobq's
 * test_default_timeout_is_not_too_large). */
static gint64
deadline_after (gint64 timeout_us)
{
  gint64 now;

  if (timeout_us < 0)
    return -1;
  now = g_get_monotonic_time ();
  return timeout_us > G_MAXINT64 - now ? -1 : now + timeout_us;
}

static void stop_internal (SluicePipeline *self, gboolean by_user);
static void stage_close (Stage *stage);
static void on_last_user_ref (gpointer data, GObject *object, gboolean is_last_ref);

/* With the lock held: whether the caller is the one to let the toggle
 * reference go now: no thread holds it, the notifies say the user's
 * references are gone, and nobody let it go yet. */
static gboolean
take_toggle_release_locked (SluicePipeline *self)
{
  if (self->n_holders > 0 || self->user_refs != 0 || self->toggle_released)
    return FALSE;
  self->toggle_released = TRUE;
  return TRUE;
}

/* Any thread, the last thing a holder does: the last one lets the toggle
 * reference go (which may finalize the pipeline), but only once the
 * notifies say the user's references are gone (user_refs). Before that the
 * notify of the last one may still be on its way: the user's unref has
 * given up its reference and is yet to call on_last_user_ref(); letting
 * the toggle reference go then freed the pipeline under that call. The
 * notify lets it go itself then. */
static void
release_holder (SluicePipeline *self)
{
  gboolean last;

  g_mutex_lock (&self->lock);
  self->n_holders--;
  last = take_toggle_release_locked (self);
  g_mutex_unlock (&self->lock);
  if (last)
    g_object_remove_toggle_ref (G_OBJECT (self), on_last_user_ref, NULL);
}

/* Any thread: the user's last reference went while the threads run. Nobody
 * can put any more: the input ends. With a consumer function the outputs
 * still go to it; with the consumerator nobody is left to take them: the
 * pipeline stops. The pipeline frees itself once its threads are done. */
static void
on_last_user_ref (gpointer data, GObject *object, gboolean is_last_ref)
{
  SluicePipeline *self = SLUICE_PIPELINE (object);
  gboolean gone;
  gboolean held;
  gboolean release;

  /* A reference taken again (1 -> 2, notified before whoever took it can
   * give it back) makes the next 2 -> 1 notify again: until the count says
   * every notify is in, the threads must not let the toggle reference go
   * (a 2 -> 1 notify still on its way would run on a freed pipeline). */
  g_mutex_lock (&self->lock);
  if (self->toggle_released)
    {
      /* A notify of a reference that outlives the toggle one. */
      g_mutex_unlock (&self->lock);
      return;
    }
  self->user_refs += is_last_ref ? -1 : 1;
  gone = self->user_refs == 0;
  held = gone && self->n_holders > 0;
  release = take_toggle_release_locked (self);
  if (held)
    self->n_holders++; /* the toggle reference stays while we work */
  g_mutex_unlock (&self->lock);
  if (release)
    {
      /* The threads are done: nobody else lets it go. */
      g_object_remove_toggle_ref (object, on_last_user_ref, NULL);
      return;
    }
  if (!held)
    return;

  if (self->consumer_func != NULL)
    stage_close (self->stages->pdata[0]);
  else
    stop_internal (self, TRUE);
  release_holder (self);
}

/* --- nodes --- */

static void
node_init (Node *node, Node *parent, gpointer item)
{
  node->parent = parent;
  node->root = parent != NULL ? parent->root : node;
  node->depth = parent != NULL ? parent->depth + 1 : 0;
  node->item = item;
  node->pending = 1;
}

static Node *
node_new (Node *parent, gpointer item)
{
  Node *node = g_new0 (Node, 1);

  node_init (node, parent, item);
  return node;
}

/* Root nodes are reused: a stage thread keeps the roots it finished in a
 * chain, and gives every NODE_CHAIN_LEN of them to the pipeline's pool in
 * one go; puts take a chain from the pool and their roots from it. Each
 * root costs no call of malloc() and free() (which, between threads, meet
 * at the arena's lock), and the shared lines are touched once per chain.
 * The pool keeps at most a window's worth (pool_max_chains()). */
#define NODE_CHAIN_LEN 32

/* The emitter of the stage thread we run on, if any. */
static GPrivate current_emitter = G_PRIVATE_INIT (NULL);

static guint
pool_max_chains (SluicePipeline *self)
{
  return self->window / NODE_CHAIN_LEN + 2;
}

/* Frees @chain, roots linked through their next. */
static void
chain_free (Node *chain)
{
  while (chain != NULL)
    {
      Node *next = chain->next;

      g_free (chain);
      chain = next;
    }
}

/* Any thread: @chain (roots linked through their next) goes to the pool. */
static void
pool_give (SluicePipeline *self, Node *chain)
{
  gboolean kept = FALSE;

  g_mutex_lock (&self->pool_lock);
  if (self->n_chains < pool_max_chains (self))
    {
      /* Chains are linked through their first node's parent. */
      chain->parent = self->pool;
      self->pool = chain;
      self->n_chains++;
      kept = TRUE;
    }
  g_mutex_unlock (&self->pool_lock);
  if (!kept)
    chain_free (chain);
}

/* Any thread (a put): a root for @item. */
static Node *
root_new (SluicePipeline *self, gpointer item)
{
  Node *chain = __atomic_exchange_n (&self->put_chain, NULL, __ATOMIC_ACQUIRE);
  Node *node;

  if (chain == NULL)
    {
      g_mutex_lock (&self->pool_lock);
      chain = self->pool;
      if (chain != NULL)
        {
          self->pool = chain->parent;
          self->n_chains--;
        }
      g_mutex_unlock (&self->pool_lock);
      if (chain == NULL)
        return node_new (NULL, item);
    }
  node = chain;
  chain = chain->next;
  if (chain != NULL)
    {
      Node *none = NULL;

      /* Another put may have put its own back meanwhile. */
      if (!__atomic_compare_exchange_n (&self->put_chain, &none, chain, FALSE, __ATOMIC_RELEASE,
                                        __ATOMIC_RELAXED))
        pool_give (self, chain);
    }
  memset (node, 0, sizeof *node);
  node_init (node, NULL, item);
  return node;
}

/* Any thread: @root is done with. */
static void
root_free (SluicePipeline *self, Node *root)
{
  SluicePipelineEmitter *emitter = g_private_get (&current_emitter);

  if (emitter == NULL || emitter->stage->pipeline != self)
    {
      g_free (root);
      return;
    }
  root->next = emitter->freed;
  emitter->freed = root;
  if (++emitter->n_freed == NODE_CHAIN_LEN)
    {
      pool_give (self, g_steal_pointer (&emitter->freed));
      emitter->n_freed = 0;
    }
}

/* Frees @list and the items in it. */
static void
free_outputs (SluicePipeline *self, GPtrArray *list)
{
  if (list == NULL)
    return;
  for (guint i = 0; i < list->len; i++)
    free_item (self, list->pdata[i]);
  g_ptr_array_unref (list);
}

/* Adds @item to @node's outputs: the first one alone, without a list. */
static void
node_add_output (Node *node, gpointer item)
{
  if (node->outputs == NULL && !node->single)
    {
      node->output = item;
      node->single = TRUE;
      return;
    }
  if (node->single)
    {
      node->outputs = g_ptr_array_new ();
      g_ptr_array_add (node->outputs, g_steal_pointer (&node->output));
      node->single = FALSE;
    }
  g_ptr_array_add (node->outputs, item);
}

/* Frees @node's outputs and the items in them. */
static void
node_clear_outputs (SluicePipeline *self, Node *node)
{
  free_outputs (self, g_steal_pointer (&node->outputs));
  if (node->single)
    free_item (self, g_steal_pointer (&node->output));
  node->single = FALSE;
}

/* With the lock held: the failure join reports, the earliest input's. */
static void
record_stage_error_locked (SluicePipeline *self, guint64 seq, const GError *error)
{
  if (self->stage_error == NULL || seq < self->stage_error_seq)
    {
      g_clear_error (&self->stage_error);
      self->stage_error = g_error_copy (error);
      self->stage_error_seq = seq;
    }
}

/* Any thread: @root is through every stage (or failed). */
static void
root_done (SluicePipeline *self, Node *root)
{
  SluiceSlot *slot = root->slot;
  GError *error = g_steal_pointer (&root->error);

  if (!self->keep_order)
    slot = sluice_reorder_buffer_get_reserved_slot (
        self->rb, __atomic_fetch_add (&self->n_roots_done, 1, __ATOMIC_SEQ_CST));
  __atomic_fetch_add (&self->n_out, 1, __ATOMIC_RELAXED);

  if (error != NULL)
    {
      node_clear_outputs (self, root);
      if (self->keep_order)
        {
          /* The buffer skips it or fails the consumer with it when the
           * consumer reaches its place (rb_failed_cb()): item-failed comes
           * in input order. Join reports it unless it is skipped. */
          if (!g_atomic_int_get (&self->skip_failed))
            {
              g_mutex_lock (&self->lock);
              record_stage_error_locked (self, root->seq, error);
              g_mutex_unlock (&self->lock);
            }
          sluice_reorder_buffer_complete (slot, NULL, error);
        }
      else if (g_atomic_int_get (&self->skip_failed))
        {
          item_failed_later (self, root->seq, error);
          sluice_reorder_buffer_complete (slot, g_ptr_array_new (), NULL);
        }
      else
        {
          g_mutex_lock (&self->lock);
          record_stage_error_locked (self, root->seq, error);
          g_mutex_unlock (&self->lock);
          sluice_reorder_buffer_complete (slot, NULL, error);
        }
    }
  else if (root->single)
    sluice_reorder_buffer_complete_single (slot, root->output);
  else
    sluice_reorder_buffer_complete (
        slot, root->outputs != NULL ? root->outputs : g_ptr_array_new (), NULL);
  g_free (root->feeding);
  root_free (self, root);
}

static void node_release (SluicePipeline *self, Node *node);

/* Any thread: @node's function returned and its children are done. */
static void
node_done (SluicePipeline *self, Node *node)
{
  if (node->n_children > 0)
    {
      /* Gather the children's outputs in emitted order; the first failure
       * in that order is the node's unless it failed itself. */
      for (guint i = 0; i < node->n_children; i++)
        {
          Node *child = i == 0 ? node->first_child : node->children->pdata[i - 1];

          if (child->error != NULL && node->error == NULL)
            node->error = g_steal_pointer (&child->error);
          g_clear_error (&child->error);
          if (node->error == NULL && node->outputs == NULL && !node->single &&
              i + 1 == node->n_children)
            {
              /* The last (often the only) child with outputs: its list is
               * the node's. */
              node->outputs = g_steal_pointer (&child->outputs);
              node->output = g_steal_pointer (&child->output);
              node->single = child->single;
              child->single = FALSE;
            }
          else if (node->error == NULL)
            {
              if (child->single)
                node_add_output (node, g_steal_pointer (&child->output));
              for (guint j = 0; child->outputs != NULL && j < child->outputs->len; j++)
                node_add_output (node, child->outputs->pdata[j]);
              if (child->outputs != NULL)
                g_ptr_array_set_size (child->outputs, 0);
              child->single = FALSE;
            }
          node_clear_outputs (self, child);
          g_free (child);
        }
      if (node->children != NULL)
        g_ptr_array_unref (node->children);
    }
  if (node->error != NULL)
    node_clear_outputs (self, node);

  if (node->parent != NULL)
    node_release (self, node->parent);
  else
    root_done (self, node);
}

/* Any thread: one part of @node is done (its function, or a child). */
static void
node_release (SluicePipeline *self, Node *node)
{
  if (g_atomic_int_dec_and_test (&node->pending))
    node_done (self, node);
}

/* --- the window: puts wait for room in the reorder buffer --- */

/* The reorder buffer's callback data, which it owns: the consumer may call
 * back after the pipeline is gone. */
typedef struct
{
  GMutex lock;
  GCond cond;
  GWeakRef pipeline;
  guint gen;       /* bumped by every change a put waiting for room looks for */
  GSList *sources; /* ready sources, woken with the puts */
  int n_sources;   /* atomic: their number */
} Room;

static void
room_free (gpointer data)
{
  Room *room = data;

  g_weak_ref_clear (&room->pipeline);
  g_mutex_clear (&room->lock);
  g_cond_clear (&room->cond);
  g_free (room);
}

static void
room_wake (Room *room)
{
  g_mutex_lock (&room->lock);
  room->gen++;
  g_cond_broadcast (&room->cond);
  for (GSList *l = room->sources; l != NULL; l = l->next)
    g_source_set_ready_time (l->data, 0);
  g_mutex_unlock (&room->lock);
}

/* Consumer thread: a place is free in the window. Puts refill it from
 * other threads. */
static gboolean
rb_room_cb (gpointer data)
{
  room_wake (data);
  return TRUE;
}

/* Consumer thread, keep-order with skip-failed: the consumer reached the
 * failed input @seq (in input order) and skipped it. If skip-failed was
 * set after the input failed, join no longer reports it. */
static void
rb_failed_cb (guint64 seq, GError *error, gpointer data)
{
  Room *room = data;
  SluicePipeline *self = g_weak_ref_get (&room->pipeline);

  if (self == NULL)
    {
      g_error_free (error);
      return;
    }
  g_mutex_lock (&self->lock);
  if (self->stage_error != NULL && self->stage_error_seq == seq)
    g_clear_error (&self->stage_error);
  g_mutex_unlock (&self->lock);
  /* Not the last reference: the source holds one. */
  item_failed_later (self, seq, error);
  g_object_unref (self);
}

/* --- stages --- */

static inline SluicePipeline *
stage_pipeline (Stage *stage)
{
  return stage->pipeline;
}

static inline gboolean
is_stopping (SluicePipeline *self)
{
  return g_atomic_int_get (&self->stopping) != 0;
}

/* With the stage's lock held: the items waiting for a thread. */
static inline guint
stage_length (Stage *stage)
{
  return stage->key_func != NULL ? stage->n_keyed : stage->queue.length;
}

static Node *
batch_take_front (PopBatch *batch)
{
  guint64 span = __atomic_load_n (&batch->span, __ATOMIC_ACQUIRE);

  while ((guint32) span < (guint32) (span >> 32))
    if (__atomic_compare_exchange_n (&batch->span, &span, span + 1, FALSE, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
      {
        /* The next node's line is another thread's: ask for it now, while
         * this one runs (a stale pointer only wastes the fetch). */
        if ((guint32) span + 1 < (guint32) (span >> 32))
          __builtin_prefetch (batch->nodes[(guint32) span + 1], 1);
        return batch->nodes[(guint32) span];
      }
  return NULL;
}

/* With the stage's lock held. */
static Node *
batch_take_back (PopBatch *batch)
{
  guint64 span = __atomic_load_n (&batch->span, __ATOMIC_ACQUIRE);

  while ((guint32) span < (guint32) (span >> 32))
    {
      guint32 end = (guint32) (span >> 32) - 1;

      if (__atomic_compare_exchange_n (&batch->span, &span, (guint64) end << 32 | (guint32) span,
                                       FALSE, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return batch->nodes[end];
    }
  return NULL;
}

/* With the stage's lock held: an item of another thread's batch. */
static Node *
steal_locked (Stage *stage, PopBatch *own)
{
  for (guint i = 0; i < stage->batches->len; i++)
    {
      PopBatch *batch = stage->batches->pdata[i];
      Node *node;

      if (batch != own && (node = batch_take_back (batch)) != NULL)
        {
          batch->counted--;
          stage->n_batched--;
          return node;
        }
    }
  return NULL;
}

/* With the stage's lock held: the items counted against the capacity: the
 * queue's and those its threads took into their batches (until they come
 * back to the lock: a batch a thread is through still counts until then,
 * which only makes pushes wait for its next visit). */
static inline guint
stage_queued (Stage *stage)
{
  return stage_length (stage) + stage->n_batched;
}

/* With the stage's lock held: the items in its threads' batches, not
 * started yet. */
static guint
n_unstarted_locked (Stage *stage)
{
  guint n = 0;

  for (guint i = 0; i < stage->batches->len; i++)
    {
      PopBatch *batch = stage->batches->pdata[i];
      guint64 span = __atomic_load_n (&batch->span, __ATOMIC_ACQUIRE);

      n += (guint32) (span >> 32) - MIN ((guint32) span, (guint32) (span >> 32));
    }
  return n;
}

/* With the stage's lock held: wakes a thread waiting for an item, unless
 * every waiting thread already has a wake-up on its way, or every waiting
 * thread sleeps with a deadline and the count is below the run they wait
 * for (stage_wait_locked()). A signal is a system call even when nobody
 * sleeps: on a loaded machine a woken thread may take long to run, and
 * every push meanwhile would make another. */
static inline void
wake_popper_locked (Stage *stage)
{
  if (stage->n_waiting > stage->n_pop_wakes &&
      (stage->n_untimed > 0 || stage_length (stage) >= stage->wake_at))
    {
      stage->n_pop_wakes++;
      g_cond_signal (&stage->not_empty);
    }
}

static inline void
wake_all_poppers_locked (Stage *stage)
{
  if (stage->n_waiting > 0)
    {
      stage->n_pop_wakes = stage->n_waiting;
      g_cond_broadcast (&stage->not_empty);
    }
}

/* The count at or below which a pusher waiting for room is woken: a
 * quarter of the capacity below it (at least one), so that it pushes a run
 * of items per wake-up rather than one (a full queue in front of the
 * slowest stage would otherwise cost a wake-up, and a sleep, per item). */
static inline guint
stage_low_water (Stage *stage)
{
  return stage->capacity - MAX (1, stage->capacity / 4);
}

/* With the stage's lock held: wakes a pusher waiting for room, once the
 * count is down to the low-water mark, unless every waiting pusher already
 * has a wake-up on its way. */
static inline void
wake_pusher_locked (Stage *stage)
{
  if (stage->n_blocked > stage->n_push_wakes && stage_queued (stage) <= stage_low_water (stage))
    {
      stage->n_push_wakes++;
      g_cond_signal (&stage->not_full);
    }
}

/* --- dispatcher stages --- */

static Held *
held_lookup_locked (Stage *stage, guint64 seq)
{
  Held *held = g_hash_table_lookup (stage->held, &seq);

  if (held == NULL)
    {
      held = g_new0 (Held, 1);
      held->seq = seq;
      held->nodes = g_ptr_array_new ();
      g_hash_table_insert (stage->held, &held->seq, held);
    }
  return held;
}

static void
held_free (gpointer data)
{
  Held *held = data;

  g_ptr_array_unref (held->nodes);
  g_free (held);
}

/* With the stage's lock held: @node waits for its input's turn. */
static void
hold_locked (Stage *stage, Node *node)
{
  g_ptr_array_add (held_lookup_locked (stage, node->root->seq)->nodes, node);
  stage->n_held++;
}

/* Input order among the nodes of one input at one stage: the places among
 * their parents' children, from the root down. Their ancestors are alive:
 * a node is done only after its children. */
static int
compare_paths (gconstpointer a, gconstpointer b)
{
  const Node *x = *(Node *const *) a;
  const Node *y = *(Node *const *) b;
  int result = 0;

  /* Same depth: walk up to the common ancestor; the last difference seen
   * is the one nearest the root. */
  while (x != y)
    {
      if (x->index != y->index)
        result = x->index < y->index ? -1 : 1;
      x = x->parent;
      y = y->parent;
    }
  return result;
}

static void
key_enqueue_locked (Stage *stage, Node *node)
{
  KeyQueue *kq = g_hash_table_lookup (stage->keys, &node->key);

  if (kq == NULL)
    {
      kq = g_new0 (KeyQueue, 1);
      kq->key = node->key;
      g_hash_table_insert (stage->keys, &kq->key, kq);
    }
  if (kq->nodes.length == 0 && !kq->running)
    g_queue_push_tail (&stage->ready, kq);
  g_queue_push_tail (&kq->nodes, node);
  stage->n_keyed++;
  stage->max_queued = MAX (stage->max_queued, stage->n_keyed);
}

/* With the stage's lock held: every node of the stages before it is through
 * for input @seq; releases the inputs whose turn it is. */
static void
root_fed_locked (Stage *stage, guint64 seq)
{
  Held *held = held_lookup_locked (stage, seq);
  gboolean released = FALSE;

  held->fed = TRUE;
  while ((held = g_hash_table_lookup (stage->held, &stage->next_seq)) != NULL && held->fed)
    {
      g_ptr_array_sort (held->nodes, compare_paths);
      for (guint i = 0; i < held->nodes->len; i++)
        key_enqueue_locked (stage, held->nodes->pdata[i]);
      released |= held->nodes->len > 0;
      stage->n_held -= held->nodes->len;
      g_hash_table_remove (stage->held, &stage->next_seq);
      stage->next_seq++;
    }
  if (released)
    wake_all_poppers_locked (stage);
}

static void
root_fed (Stage *stage, guint64 seq)
{
  sluice_mutex_lock_spinning (&stage->lock);
  root_fed_locked (stage, seq);
  g_mutex_unlock (&stage->lock);
}

/* A dispatcher stage's thread: @key's item is through; the key's next item
 * may run. */
static void
key_done (Stage *stage, guint64 key)
{
  KeyQueue *kq;

  sluice_mutex_lock_spinning (&stage->lock);
  kq = g_hash_table_lookup (stage->keys, &key);
  kq->running = FALSE;
  if (kq->nodes.length > 0)
    {
      g_queue_push_tail (&stage->ready, kq);
      wake_popper_locked (stage);
    }
  else
    g_hash_table_remove (stage->keys, &key);
  g_mutex_unlock (&stage->lock);
}

/* Any thread: @node is through its stage (its function returned, or it was
 * let go): for each dispatcher stage after it, one node less to wait for. */
static void
node_left_stage (SluicePipeline *self, Node *node)
{
  Node *root = node->root;

  if (root->feeding == NULL)
    return;
  for (guint k = node->depth + 1; k < self->stages->len; k++)
    {
      Stage *stage = self->stages->pdata[k];

      if (stage->key_func != NULL && g_atomic_int_dec_and_test (&root->feeding[k]))
        root_fed (stage, root->seq);
    }
}

/* Any thread, before @child is sent on: one node more that dispatcher stages
 * after it wait for. */
static void
node_entered_stage (SluicePipeline *self, Node *child)
{
  Node *root = child->root;
  Stage *stage = self->stages->pdata[child->depth];

  if (stage->key_func != NULL)
    child->key = stage->key_func (child->item, stage->key_data);
  if (root->feeding == NULL)
    return;
  for (guint k = child->depth + 1; k < self->stages->len; k++)
    if (((Stage *) self->stages->pdata[k])->key_func != NULL)
      g_atomic_int_inc (&root->feeding[k]);
}

/* Why a push that waits for room cannot wait forever.
 *
 * Progress. A push waits only on the items counted by stage_queued(): a
 * plain stage's queue and its threads' batches (a thread comes back to the
 * lock, and uncounts its batch, once it ran it: its items need nothing
 * from the pusher either), a dispatcher stage's key queues. None of them needs
 * the pusher: a plain stage runs its items in any order, and an item in a
 * key queue belongs to an input whose turn has come (every earlier input
 * is through the stages before, root_fed_locked()), so it waits at most
 * for the item of its key that is running on a thread. The items a
 * dispatcher stage holds until an earlier input (maybe the pusher's) is
 * through the stages before it are not counted, so they never make anybody
 * wait (they are bounded by the window and what an input emits). The last
 * stage never waits (a root completes its slot without blocking), so by
 * induction from the last stage back, the counted items of every stage run
 * and leave: the count of the stage a push waits on drops to the low-water
 * mark (and on to zero, unless pushes that do not wait keep it up; those
 * are bounded by the window too).
 *
 * Wake-ups. Invariant: while the count is at or below the low-water mark
 * and a pusher waits, some waiting pusher has a wake-up on its way
 * (n_push_wakes counts those not returned yet). A pop that brings the
 * count there signals one (wake_pusher_locked()). A woken pusher (or one
 * back from a broadcast, or spuriously) re-checks after its push: one that
 * did not take the room it was woken for (a push into a dispatcher stage
 * only holds its node, which is not counted; or it gave up) or left it at
 * or below the mark passes the wake-up on. Pushes that do not wait and
 * releases of held items only raise the count. (Without the pass-on, two
 * pushers into a dispatcher stage waiting on one pop: the first holds its
 * node and returns, the second sleeps with the key queues empty, and if its
 * input is the one the held items wait for, nothing pops again: the hang
 * of session 7.)
 *
 * Runs. A stage thread pushes the children in its push buffer in one run
 * under one lock (emitter_flush()), waiting for room before each as a push
 * of one would: the argument holds for each push of the run. The buffered
 * children are not counted anywhere; they are in the hands of a running
 * stage function, whose thread pushes them when it returns (or when the
 * buffer is full), before it can sleep, so no pusher or popper waits for
 * them.
 *
 * Any thread: queues @n_nodes @nodes in turn, blocking while the queue is
 * full. Returns how many were queued: fewer when the pipeline stops or
 * @cancellable fires first. A put into the first stage passes @put_done
 * (with one node): a put that is over here (queued in a plain stage, which
 * is all it had to do) no longer counts as in progress, under the same
 * lock, and @put_done is set. */
static guint
stage_push_run (
    Stage *stage, Node **nodes, guint n_nodes, GCancellable *cancellable, gboolean *put_done)
{
  SluicePipeline *self = stage_pipeline (stage);
  gboolean woken = FALSE;
  guint pushed;

  sluice_mutex_lock_spinning (&stage->lock);
  for (pushed = 0; pushed < n_nodes; pushed++)
    {
      while (stage_queued (stage) >= stage->capacity && !is_stopping (self) &&
             !g_cancellable_is_cancelled (cancellable))
        {
          stage->n_blocked++;
          g_cond_wait (&stage->not_full, &stage->lock);
          stage->n_blocked--;
          if (stage->n_push_wakes > 0)
            stage->n_push_wakes--;
          woken = TRUE;
        }
      if (is_stopping (self) || g_cancellable_is_cancelled (cancellable))
        break;
      if (stage->key_func != NULL)
        hold_locked (stage, nodes[pushed]);
      else
        {
          node_queue_push_tail (&stage->queue, nodes[pushed]);
          stage->max_queued = MAX (stage->max_queued, stage->queue.length);
          wake_popper_locked (stage);
          if (put_done != NULL)
            {
              *put_done = TRUE;
              if (g_atomic_int_dec_and_test (&stage->n_putting) && stage->closed)
                wake_all_poppers_locked (stage);
            }
        }
    }
  /* The wake-up this push took was for room it did not fill: pass it on. */
  if (woken)
    wake_pusher_locked (stage);
  g_mutex_unlock (&stage->lock);

  return pushed;
}

static gboolean
stage_push (Stage *stage, Node *node, GCancellable *cancellable, gboolean *put_done)
{
  return stage_push_run (stage, &node, 1, cancellable, put_done) == 1;
}

/* Any thread: @child was not pushed (the pipeline stops): its item goes. */
static void
release_unpushed (SluicePipeline *self, Node *child)
{
  free_item (self, g_steal_pointer (&child->item));
  node_left_stage (self, child);
  node_release (self, child);
}

/* The push buffer. During a call of its function a stage thread keeps the
 * children emitted into a plain next stage (up to PUSH_BATCH_MAX) and
 * pushes them in one run under one lock when the buffer is full and when
 * the function returns (one-to-many stages take the lock once per run).
 * Children into a dispatcher stage are pushed at once: they must be held
 * before their parent leaves its stage (root_fed()). Buffered children are
 * not counted against the next stage's capacity: at most PUSH_BATCH_MAX per
 * thread, in the hands of a running function, and a blocked flush waits
 * exactly as its pushes one by one would (see above stage_push_run()).
 * (Keeping them across calls, until the thread goes back to its queue,
 * cost more than it saved on a loaded 2-core machine: a clock read per
 * call to bound the wait for a blocking function, and bursts into the
 * next stage; see doc/pipeline.md.) */
static void
emitter_flush (SluicePipelineEmitter *emitter)
{
  SluicePipeline *self = stage_pipeline (emitter->stage);
  guint n = emitter->n_push;
  guint pushed;

  if (n == 0)
    return;
  emitter->n_push = 0;
  pushed =
      stage_push_run (self->stages->pdata[emitter->stage->index + 1], emitter->push, n, NULL, NULL);
  for (guint i = pushed; i < n; i++)
    release_unpushed (self, emitter->push[i]);
}

/* The wake-up rule. A stage thread that finds its queue empty while the
 * pipeline has at least WAKE_RUN_MIN_IN_FLIGHT inputs in flight and items
 * come fast (the moving average of the time between the items the stage's
 * threads finished is below SLUICE_ITEM_GAP_BATCH_MAX_US, SluiceItemGap in
 * sluice-private.h, sampled at these waits) sleeps until a run of items is
 * queued (a quarter of what is in flight, at most WAKE_RUN_MAX items, half
 * the capacity and the items expected within WAKE_LATENCY_US at that gap)
 * or WAKE_LATENCY_US passes, whichever comes first, and then takes what is
 * there; pushes below the run do not wake it (wake_popper_locked()). With
 * fewer inputs in flight, items further apart (waking per item then costs
 * little, and batching would cost each item up to WAKE_LATENCY_US), a run
 * under 2 items, or after such a wait found nothing, it sleeps without a
 * deadline and the first push wakes it, as a plain condition variable: a
 * lightly loaded pipeline gets no added latency, a busy one at most
 * WAKE_LATENCY_US per stage. No item waits in a queue while every thread
 * of its stage sleeps for good: a thread sleeping without a deadline is
 * woken by any push (n_untimed), one with a deadline wakes at it by
 * itself, and a run, the end of the input and a stop wake them all the
 * same. Dispatcher stages always wake per item. */
#define WAKE_RUN_MIN_IN_FLIGHT 8
#define WAKE_RUN_MAX 64
#define WAKE_LATENCY_US 1000
/* A sample of the gap spans at least this long: a stage's items come in
 * bursts (the window refills in runs), and an average of 1 ms samples
 * weighed the idle spans between bursts as much as the bursts (bench
 * large, 58 us per item: averages of 110-570 us). */
#define WAKE_GAP_SPAN_MIN_US 8000
/* With the stage's lock held: sleeps until a push (or a run of them, or
 * the deadline, see above) or a broadcast. *@timed_out set when a wait
 * with a deadline ended by it: the next one has none. */
static void
stage_wait_locked (Stage *stage, gboolean *timed_out)
{
  SluicePipeline *self = stage_pipeline (stage);
  guint64 in_flight = __atomic_load_n (&self->n_in, __ATOMIC_RELAXED) -
                      __atomic_load_n (&self->n_out, __ATOMIC_RELAXED);
  guint64 run = 0;

  stage->n_waiting++;
  stage->n_sleeps++;
  if (stage->key_func == NULL && !*timed_out && in_flight >= WAKE_RUN_MIN_IN_FLIGHT &&
      stage->capacity >= 4)
    {
      /* The clock once, for the load and the deadline. */
      gint64 now = g_get_monotonic_time ();

      sluice_item_gap_note (&stage->item_gap, now,
                            __atomic_load_n (&stage->n_done, __ATOMIC_RELAXED) +
                                __atomic_load_n (&stage->n_failed, __ATOMIC_RELAXED),
                            WAKE_GAP_SPAN_MIN_US);
      if (sluice_item_gap_batching (&stage->item_gap))
        run = MIN (MIN (in_flight / 4, MIN (WAKE_RUN_MAX, stage->capacity / 2)),
                   sluice_item_gap_reach (&stage->item_gap, WAKE_LATENCY_US));
      if (run >= 2)
        {
          stage->wake_at = (guint) run;
          *timed_out = !g_cond_wait_until (&stage->not_empty, &stage->lock, now + WAKE_LATENCY_US);
        }
    }
  if (run < 2)
    {
      stage->n_untimed++;
      g_cond_wait (&stage->not_empty, &stage->lock);
      stage->n_untimed--;
    }
  stage->n_waiting--;
  if (stage->n_pop_wakes > 0)
    stage->n_pop_wakes--;
}

/* A stage thread: the next item, or NULL once the stage's input is over
 * (with @last set for the stage's last thread) or, with @leave set, when
 * the thread is one too many after a shrink. Either way the thread no
 * longer counts as alive: one count under one lock, so that a shrink
 * never leaves work without a thread. */
static Node *
stage_pop (Stage *stage, PopBatch *batch, gboolean *leave, gboolean *last)
{
  Room *room = sluice_reorder_buffer_get_callback_data (stage_pipeline (stage)->rb);
  gboolean wake_sources = FALSE;
  gboolean timed_out = FALSE;
  Node *node;

  if (!g_atomic_int_get (&stage->shrink) && (node = batch_take_front (batch)) != NULL)
    return node;

  sluice_mutex_lock_spinning (&stage->lock);
  /* Leaving maybe: what it did not start goes back, in order. */
  while ((node = batch_take_back (batch)) != NULL)
    node_queue_push_head (&stage->queue, node);
  if (batch->counted > 0)
    {
      /* Its batch no longer counts: room for pushes and puts. */
      stage->n_batched -= batch->counted;
      batch->counted = 0;
      wake_pusher_locked (stage);
      wake_sources = stage->index == 0 && g_atomic_int_get (&room->n_sources) > 0;
    }
  for (;;)
    {
      if (stage->n_alive > stage->n_threads)
        {
          stage->n_alive--;
          g_atomic_int_set (&stage->shrink, stage->n_alive > stage->n_threads);
          g_ptr_array_remove_fast (stage->batches, batch);
          *leave = TRUE;
          node = NULL;
          /* A push may have signalled this thread: pass it on. */
          if (stage_length (stage) > 0)
            wake_popper_locked (stage);
          break;
        }
      if (stage->key_func != NULL)
        {
          KeyQueue *kq = g_queue_pop_head (&stage->ready);

          node = NULL;
          if (kq != NULL)
            {
              node = g_queue_pop_head (&kq->nodes);
              kq->running = TRUE;
              stage->n_keyed--;
            }
        }
      else
        {
          guint share;

          node = node_queue_pop_head (&stage->queue);
          /* Its share of the rest, up to a batch, without the lock. */
          share = MIN (stage->queue.length / MAX (stage->n_threads, 1), POP_BATCH_MAX);
          for (guint i = 0; i < share; i++)
            batch->nodes[i] = node_queue_pop_head (&stage->queue);
          __atomic_store_n (&batch->span, (guint64) share << 32, __ATOMIC_RELEASE);
          batch->counted = share;
          stage->n_batched += share;
          if (node == NULL)
            node = steal_locked (stage, batch);
          /* What is left is for the others (their pushes may not have
           * woken them: a run). */
          if (stage->queue.length > 0 && stage->n_waiting > stage->n_pop_wakes)
            {
              stage->n_pop_wakes++;
              g_cond_signal (&stage->not_empty);
            }
        }
      if (node != NULL)
        {
          wake_pusher_locked (stage);
          /* The others may be waiting for the end of a dispatcher stage. */
          if (stage->closed && stage_length (stage) == 0)
            wake_all_poppers_locked (stage);
          wake_sources = stage->index == 0 && g_atomic_int_get (&room->n_sources) > 0;
          break;
        }
      /* The first stage's input is over only when the puts in progress
       * are done too. */
      /* A dispatcher stage is over only when the items of the keys that
       * run are done too: they need a thread after their key's. */
      if (stage->closed && g_atomic_int_get (&stage->n_putting) == 0 && stage_length (stage) == 0)
        {
          *last = --stage->n_alive == 0;
          stage->ended = *last;
          g_ptr_array_remove_fast (stage->batches, batch);
          break;
        }
      stage_wait_locked (stage, &timed_out);
    }
  g_mutex_unlock (&stage->lock);
  if (wake_sources)
    room_wake (room);

  return node;
}

static void
stage_close (Stage *stage)
{
  sluice_mutex_lock_spinning (&stage->lock);
  g_atomic_int_set (&stage->closed, TRUE);
  g_cond_broadcast (&stage->not_empty);
  g_cond_broadcast (&stage->not_full);
  g_mutex_unlock (&stage->lock);
}

static void
stage_free (gpointer data)
{
  Stage *stage = data;

  /* Never started: its data was not released by its last thread. */
  if (stage->func_data_destroy != NULL)
    stage->func_data_destroy (stage->func_data);
  if (stage->key_data_destroy != NULL)
    stage->key_data_destroy (stage->key_data);
  g_assert (stage->queue.length == 0);
  g_free (stage->queue.ring);
  g_clear_pointer (&stage->keys, g_hash_table_unref);
  g_clear_pointer (&stage->held, g_hash_table_unref);
  g_ptr_array_unref (stage->batches);
  g_free (stage->name);
  g_mutex_clear (&stage->lock);
  g_cond_clear (&stage->not_empty);
  g_cond_clear (&stage->not_full);
  g_cond_clear (&stage->rate_cond);
  g_free (stage);
}

static gboolean
is_last_stage (Stage *stage)
{
  return stage->index + 1 == stage_pipeline (stage)->stages->len;
}

/* How far behind its schedule a rate-limited stage may be and still catch
 * up: a thread that wakes late (a loaded machine) does not slow the rate
 * down, and a stage idle for longer saves no more credit than this. */
#define RATE_CATCH_UP_US (100 * 1000)

/* A stage thread: waits for the item's turn under the rate limit. Each item
 * gets the next start time on one schedule, shared by the stage's threads,
 * so the rate holds over any span whatever the threads do (jobq's
 * limit_job_speed). A stop ends the wait. */
static void
rate_wait (Stage *stage)
{
  gint64 now = g_get_monotonic_time ();
  gint64 start;

  sluice_mutex_lock_spinning (&stage->lock);
  if (stage->rate <= 0)
    {
      g_mutex_unlock (&stage->lock);
      return;
    }
  /* The first item starts the schedule now. */
  start = stage->next_free == 0 ? now : MAX (now - RATE_CATCH_UP_US, stage->next_free);
  stage->next_free = start + (gint64) (stage->step * (double) G_USEC_PER_SEC / stage->rate);
  while (g_get_monotonic_time () < start && !is_stopping (stage_pipeline (stage)))
    g_cond_wait_until (&stage->rate_cond, &stage->lock, start);
  g_mutex_unlock (&stage->lock);
}

/* A stage thread: runs the function for @node, or lets the item go. */
static void
stage_run (Stage *stage, SluicePipelineEmitter *emitter, Node *node)
{
  SluicePipeline *self = stage_pipeline (stage);
  gpointer item = g_steal_pointer (&node->item);
  GError *error = NULL;

  if (is_stopping (self) || g_atomic_int_get (&node->root->failed))
    free_item (self, item);
  else
    {
      gboolean ok;

      if (g_atomic_int_get (&stage->limited))
        rate_wait (stage);
      emitter->node = node;
      ok = stage->func (emitter, item, stage->func_data, &error);
      emitter->node = NULL;
      emitter_flush (emitter);
      __atomic_fetch_add (ok ? &stage->n_done : &stage->n_failed, 1, __ATOMIC_RELAXED);
      if (!ok)
        {
          if (error == NULL)
            {
              g_log (G_LOG_DOMAIN, G_LOG_LEVEL_CRITICAL,
                     "The function of pipeline stage “%s” failed without an error", stage->name);
              error =
                  g_error_new (SLUICE_ERROR, SLUICE_ERROR_FAILED,
                               _ ("Pipeline stage “%s” failed without saying why"), stage->name);
            }
          node->error = error;
          g_atomic_int_set (&node->root->failed, 1);
        }
      else if (error != NULL)
        {
          g_log (G_LOG_DOMAIN, G_LOG_LEVEL_CRITICAL,
                 "The function of pipeline stage “%s” succeeded and set an error; "
                 "the error is dropped",
                 stage->name);
          g_clear_error (&error);
        }
      if (emitter->stashed)
        {
          /* The call's one output (emit() keeps the first one in a
           * pipeline without dispatchers after its head): @node carries
           * it into the next stage itself, in the place of a child, which
           * saves the child and its gathering (node_done()). It keeps its
           * pending count for the function it now goes to. */
          gpointer output = g_steal_pointer (&emitter->stash);

          emitter->stashed = FALSE;
          if (ok && !is_stopping (self) && !g_atomic_int_get (&node->root->failed))
            {
              Stage *next = self->stages->pdata[stage->index + 1];

              node->item = output;
              node->depth++;
              if (!stage_push (next, node, NULL, NULL))
                release_unpushed (self, node);
              return;
            }
          free_item (self, output);
        }
    }
  node_left_stage (self, node);
  node_release (self, node);
}

static void check_finished (SluicePipeline *self);

/* The last stage's threads are done: every input is through. */
static void
workers_done (SluicePipeline *self)
{
  sluice_reorder_buffer_end (self->rb);
  g_mutex_lock (&self->lock);
  self->workers_done = TRUE;
  g_mutex_unlock (&self->lock);
  check_finished (self);
}

static gpointer
stage_thread (gpointer data)
{
  Stage *stage = data;
  SluicePipeline *self = stage_pipeline (stage);
  SluicePipelineEmitter *emitter = g_object_new (SLUICE_TYPE_PIPELINE_EMITTER, NULL);
  Node *node;
  PopBatch batch = { 0 };
  gboolean leave = FALSE;
  gboolean last = FALSE;

  emitter->stage = stage;
  g_private_set (&current_emitter, emitter);
  sluice_mutex_lock_spinning (&stage->lock);
  g_ptr_array_add (stage->batches, &batch);
  g_mutex_unlock (&stage->lock);
  while ((node = stage_pop (stage, &batch, &leave, &last)) != NULL)
    {
      guint64 key = node->key;

      stage_run (stage, emitter, node);
      if (stage->key_func != NULL)
        key_done (stage, key);
    }
  g_assert (emitter->n_push == 0);
  g_private_set (&current_emitter, NULL);
  if (emitter->freed != NULL)
    pool_give (self, g_steal_pointer (&emitter->freed));
  g_object_unref (emitter);
  if (leave)
    {
      /* Nobody joins a thread that left: it is detached once its GThread
       * is gone, so thread churn does not pile up exited threads. */
      g_mutex_lock (&self->lock);
      g_ptr_array_remove_fast (self->threads, g_thread_self ());
      g_mutex_unlock (&self->lock);
      release_holder (self);
      return NULL;
    }

  if (last)
    {
      destroy_later (self, g_steal_pointer (&stage->func_data_destroy), stage->func_data);
      destroy_later (self, g_steal_pointer (&stage->key_data_destroy), stage->key_data);
      if (is_last_stage (stage))
        workers_done (self);
      else
        stage_close (self->stages->pdata[stage->index + 1]);
    }
  release_holder (self);
  return NULL;
}

/* With the stage's lock held, the pipeline's not: one more thread. The
 * caller counts it in n_alive. */
static void
add_stage_thread (SluicePipeline *self, Stage *stage)
{
  g_mutex_lock (&self->lock);
  self->n_holders++;
  g_ptr_array_add (self->threads, g_thread_new ("sluice-stage", stage_thread, stage));
  g_mutex_unlock (&self->lock);
}

/* --- the end --- */

typedef struct
{
  GTask *task;
  GError *error;
} JoinReturn;

static gboolean
join_return_cb (gpointer data)
{
  JoinReturn *ret = data;

  if (ret->error != NULL)
    g_task_return_error (ret->task, g_steal_pointer (&ret->error));
  else
    g_task_return_boolean (ret->task, TRUE);
  return G_SOURCE_REMOVE;
}

static void
join_return_free (gpointer data)
{
  JoinReturn *ret = data;

  g_object_unref (ret->task);
  g_clear_error (&ret->error);
  g_free (ret);
}

/* Any thread: completes @task (transfer full) on its context, from a
 * source. */
static void
join_return_later (GTask *task, GError *error)
{
  JoinReturn *ret = g_new (JoinReturn, 1);
  GCancellable *cancellable = g_task_get_cancellable (task);
  gulong handler = GPOINTER_TO_SIZE (g_task_get_task_data (task));

  if (cancellable != NULL && handler != 0)
    g_cancellable_disconnect (cancellable, handler);
  ret->task = task;
  ret->error = error;
  run_later (g_task_get_context (task), join_return_cb, ret, join_return_free);
}

/* With the lock held, once finished: what join reports. */
static gboolean
result_locked (SluicePipeline *self, GError **error)
{
  if (self->consumer_error != NULL)
    g_propagate_error (error, g_error_copy (self->consumer_error));
  else if (self->stage_error != NULL)
    g_propagate_error (error, g_error_copy (self->stage_error));
  else if (self->stopped)
    g_propagate_error (error, stopped_error ());
  else
    return TRUE;
  return FALSE;
}

static void
check_finished (SluicePipeline *self)
{
  GList *tasks = NULL;
  GError *error = NULL;

  g_mutex_lock (&self->lock);
  if (!self->finished && self->workers_done && !self->consumer_running)
    {
      self->finished = TRUE;
      g_cond_broadcast (&self->cond);
      tasks = g_steal_pointer (&self->join_tasks);
    }
  if (tasks != NULL)
    result_locked (self, &error);
  g_mutex_unlock (&self->lock);

  for (GList *l = tasks; l != NULL; l = l->next)
    join_return_later (l->data, error != NULL ? g_error_copy (error) : NULL);
  g_list_free (tasks);
  g_clear_error (&error);
}

static gpointer
consumer_thread (gpointer data)
{
  SluicePipeline *self = data;
  GError *error = NULL;
  gboolean ok;

  ok = self->consumer_func (self->consumerator, self->consumer_data, &error);
  if (ok && error != NULL)
    {
      g_log (G_LOG_DOMAIN, G_LOG_LEVEL_CRITICAL,
             "A SluicePipelineConsumerFunc succeeded and set an error; the error is dropped");
      g_clear_error (&error);
    }
  else if (!ok && error == NULL)
    {
      g_log (G_LOG_DOMAIN, G_LOG_LEVEL_CRITICAL,
             "A SluicePipelineConsumerFunc failed without an error");
      error = g_error_new_literal (SLUICE_ERROR, SLUICE_ERROR_FAILED,
                                   _ ("The pipeline's consumer failed without saying why"));
    }
  /* Returning before the end stops the pipeline (through the buffer's
   * cancellable). */
  sluice_reorder_buffer_consumer_done (self->rb);
  destroy_later (self, g_steal_pointer (&self->consumer_data_destroy), self->consumer_data);

  g_mutex_lock (&self->lock);
  self->consumer_error = error;
  self->consumer_running = FALSE;
  g_mutex_unlock (&self->lock);
  check_finished (self);
  release_holder (self);
  return NULL;
}

/* Any thread: no stage function runs any more, blocked puts and emits
 * give up, queued items are let go. */
static void
stop_internal (SluicePipeline *self, gboolean by_user)
{
  Room *room = sluice_reorder_buffer_get_callback_data (self->rb);

  g_atomic_int_set (&self->stopping, 1);
  sluice_reorder_buffer_lock (self->rb);
  sluice_reorder_buffer_set_gate_locked (self->rb, FALSE);
  sluice_reorder_buffer_unlock (self->rb);
  if (by_user)
    {
      g_mutex_lock (&self->lock);
      self->stopped = TRUE;
      g_mutex_unlock (&self->lock);
    }
  room_wake (room);
  for (guint i = 0; i < self->stages->len; i++)
    {
      Stage *stage = self->stages->pdata[i];

      sluice_mutex_lock_spinning (&stage->lock);
      if (i == 0)
        g_atomic_int_set (&stage->closed, TRUE);
      g_cond_broadcast (&stage->not_empty);
      g_cond_broadcast (&stage->not_full);
      g_cond_broadcast (&stage->rate_cond);
      g_mutex_unlock (&stage->lock);
    }
  if (by_user)
    {
      g_autoptr (GError) error = stopped_error ();

      sluice_reorder_buffer_abort (self->rb, error);
    }
}

/* Any thread: the buffer was aborted (the consumer reached a failure, or
 * went away before the end, or a stop). */
static void
on_buffer_cancelled (GCancellable *cancellable, gpointer data)
{
  stop_internal (data, FALSE);
}

/* --- GObject --- */

static void
sluice_pipeline_constructed (GObject *object)
{
  SluicePipeline *self = SLUICE_PIPELINE (object);
  Room *room = g_new0 (Room, 1);

  G_OBJECT_CLASS (sluice_pipeline_parent_class)->constructed (object);

  self->owner_context = g_main_context_ref_thread_default ();
  g_mutex_init (&room->lock);
  g_cond_init (&room->cond);
  g_weak_ref_init (&room->pipeline, self);
  /* Values unless sluice_pipeline_new() says otherwise: what a binding's
   * constructor makes. */
  self->item_free_func = sluice_value_item_free;
  self->values = TRUE;
  self->rb = sluice_reorder_buffer_new (self->window, sluice_value_item_free, NULL);
  sluice_reorder_buffer_set_lists (self->rb, TRUE);
  sluice_reorder_buffer_set_callbacks (self->rb, rb_room_cb, rb_failed_cb, NULL, room, room_free);
  self->consumerator = sluice_consumerator_new_for_buffer (self->rb);
  sluice_consumerator_set_values (self->consumerator, TRUE);
}

static void
sluice_pipeline_dispose (GObject *object)
{
  SluicePipeline *self = SLUICE_PIPELINE (object);

  if (self->cancelled_handler != 0)
    {
      g_cancellable_disconnect (sluice_reorder_buffer_get_cancellable (self->rb),
                                self->cancelled_handler);
      self->cancelled_handler = 0;
    }

  G_OBJECT_CLASS (sluice_pipeline_parent_class)->dispose (object);
}

static void
sluice_pipeline_finalize (GObject *object)
{
  SluicePipeline *self = SLUICE_PIPELINE (object);

  /* Join tasks hold a reference to us: none is left here. */
  g_assert (self->join_tasks == NULL);
  if (!self->started)
    sluice_reorder_buffer_abort (self->rb, NULL);
  g_ptr_array_unref (self->stages);
  g_clear_object (&self->consumerator);
  g_clear_pointer (&self->rb, sluice_reorder_buffer_unref);
  g_clear_pointer (&self->owner_context, g_main_context_unref);
  g_ptr_array_unref (self->threads);
  g_clear_error (&self->stage_error);
  g_clear_error (&self->consumer_error);
  if (self->consumer_data_destroy != NULL)
    self->consumer_data_destroy (self->consumer_data);
  chain_free (self->put_chain);
  while (self->pool != NULL)
    {
      Node *chain = self->pool;

      self->pool = chain->parent;
      chain_free (chain);
    }
  g_mutex_clear (&self->pool_lock);
  g_mutex_clear (&self->lock);
  g_cond_clear (&self->cond);

  G_OBJECT_CLASS (sluice_pipeline_parent_class)->finalize (object);
}

static void
sluice_pipeline_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  SluicePipeline *self = SLUICE_PIPELINE (object);

  switch (prop_id)
    {
    case PROP_KEEP_ORDER:
      g_value_set_boolean (value, self->keep_order);
      break;
    case PROP_WINDOW:
      g_value_set_uint (value, self->window);
      break;
    case PROP_SKIP_FAILED:
      g_value_set_boolean (value, sluice_pipeline_get_skip_failed (self));
      break;
    case PROP_CONSUMERATOR:
      g_value_set_object (value, self->consumerator);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_pipeline_set_property (GObject *object,
                              guint prop_id,
                              const GValue *value,
                              GParamSpec *pspec)
{
  SluicePipeline *self = SLUICE_PIPELINE (object);

  switch (prop_id)
    {
    case PROP_KEEP_ORDER:
      self->keep_order = g_value_get_boolean (value);
      break;
    case PROP_WINDOW:
      self->window = g_value_get_uint (value);
      break;
    case PROP_SKIP_FAILED:
      sluice_pipeline_set_skip_failed (self, g_value_get_boolean (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
sluice_pipeline_class_init (SluicePipelineClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->constructed = sluice_pipeline_constructed;
  object_class->dispose = sluice_pipeline_dispose;
  object_class->finalize = sluice_pipeline_finalize;
  object_class->get_property = sluice_pipeline_get_property;
  object_class->set_property = sluice_pipeline_set_property;

  /**
   * SluicePipeline:keep-order:
   *
   * Whether the outputs come in input order (the outputs of one input
   * together, in emitted order) rather than as inputs finish.
   */
  properties[PROP_KEEP_ORDER] =
      g_param_spec_boolean ("keep-order", NULL, NULL, FALSE,
                            G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * SluicePipeline:window:
   *
   * The most inputs between their put and the moment the consumer takes
   * their outputs; a put waits while the window is full.
   */
  properties[PROP_WINDOW] =
      g_param_spec_uint ("window", NULL, NULL, 1, G_MAXINT / 2, 1024,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS);

  /**
   * SluicePipeline:skip-failed:
   *
   * Whether a failed input is left out (and reported by
   * [signal@Sluice.Pipeline::item-failed]) instead of ending the stream
   * with its error. With [property@Sluice.Pipeline:keep-order] it applies
   * to the failures the consumer reaches after it is set (a failure waits
   * at its place until the consumer gets there); without, to the inputs
   * that fail after it is set. It may be set from any thread.
   */
  properties[PROP_SKIP_FAILED] =
      g_param_spec_boolean ("skip-failed", NULL, NULL, FALSE,
                            G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);

  /**
   * SluicePipeline:consumerator:
   *
   * The iterator the outputs are taken from.
   */
  properties[PROP_CONSUMERATOR] =
      g_param_spec_object ("consumerator", NULL, NULL, SLUICE_TYPE_CONSUMERATOR,
                           G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * SluicePipeline::item-failed:
   * @self: the pipeline
   * @sequence: the number of the failed input (0 for the first put)
   * @error: why it failed
   *
   * Emitted on the owner context for each failed input that was left out,
   * in [property@Sluice.Pipeline:skip-failed] mode. With
   * [property@Sluice.Pipeline:keep-order] the signals come in input order:
   * each once the consumer has reached the failed input's place (after the
   * outputs of the inputs before it were taken); failed inputs that a stop
   * released before the consumer reached them are not reported. Without
   * keep-order they come in the order the inputs failed.
   */
  signals[SIGNAL_ITEM_FAILED] =
      g_signal_new ("item-failed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                    NULL, G_TYPE_NONE, 2, G_TYPE_UINT64, G_TYPE_ERROR);
}

static void
sluice_pipeline_init (SluicePipeline *self)
{
  self->window = 1024;
  self->stages = g_ptr_array_new_with_free_func (stage_free);
  self->threads = g_ptr_array_new_with_free_func ((GDestroyNotify) g_thread_unref);
  g_mutex_init (&self->lock);
  g_mutex_init (&self->pool_lock);
  g_cond_init (&self->cond);
}

static void
sluice_pipeline_emitter_class_init (SluicePipelineEmitterClass *klass)
{
}

static void
sluice_pipeline_emitter_init (SluicePipelineEmitter *self)
{
}

/* Set once, under the lock; read without it (every put asks). */
static gboolean
is_started (SluicePipeline *self)
{
  return g_atomic_int_get (&self->started);
}

/* --- the emitter --- */

/**
 * sluice_pipeline_emitter_emit: (skip)
 * @self: the emitter a stage function was given
 * @item: (transfer full) (nullable): an output
 *
 * Sends @item to the next stage, or to the output from the last stage,
 * after the outputs emitted before it. Blocks while the next stage's queue
 * is full. Outputs into a stage without a key function may wait in a small
 * buffer until the stage function returns (or a few more are emitted), to
 * go on in one run: a stage function must not wait for what later stages
 * do with the outputs it emitted during the same call. When the pipeline stops, or the input has
 * already failed in another stage, @item is freed with the item free
 * function instead.
 *
 * Call it from the stage function it was given to, on its thread, during
 * that call.
 */
static void emit_child (SluicePipelineEmitter *self, Node *node, gpointer item);

void
sluice_pipeline_emitter_emit (SluicePipelineEmitter *self, gpointer item)
{
  SluicePipeline *pipeline;
  Node *node;

  g_return_if_fail (SLUICE_IS_PIPELINE_EMITTER (self));
  g_return_if_fail (self->node != NULL);

  pipeline = stage_pipeline (self->stage);
  node = self->node;
  if (is_stopping (pipeline) || g_atomic_int_get (&node->root->failed))
    {
      free_item (pipeline, item);
      return;
    }
  if (is_last_stage (self->stage))
    {
      node_add_output (node, item);
      return;
    }
  if (!pipeline->dispatch_after_head && node->n_children == 0 && !self->stashed)
    {
      /* Maybe the call's only output: its node may carry it on (see
       * stage_run()). */
      self->stash = item;
      self->stashed = TRUE;
      return;
    }
  if (self->stashed)
    {
      self->stashed = FALSE;
      emit_child (self, node, g_steal_pointer (&self->stash));
    }
  emit_child (self, node, item);
}

/* @item is an output of @node (which is not at the last stage): a child
 * node of it at the next stage. */
static void
emit_child (SluicePipelineEmitter *self, Node *node, gpointer item)
{
  SluicePipeline *pipeline = stage_pipeline (self->stage);
  Node *child;
  Stage *next;

  child = node_new (node, item);
  g_atomic_int_inc (&node->pending);
  child->index = node->n_children++;
  if (child->index == 0)
    node->first_child = child;
  else
    {
      if (node->children == NULL)
        node->children = g_ptr_array_new ();
      g_ptr_array_add (node->children, child);
    }
  node_entered_stage (pipeline, child);
  next = pipeline->stages->pdata[self->stage->index + 1];
  if (next->key_func == NULL)
    {
      /* The push buffer (see emitter_flush()). */
      self->push[self->n_push++] = child;
      if (self->n_push == PUSH_BATCH_MAX)
        emitter_flush (self);
    }
  else if (!stage_push (next, child, NULL, NULL))
    release_unpushed (pipeline, child);
}

/**
 * sluice_pipeline_emitter_emit_value: (rename-to sluice_pipeline_emitter_emit)
 * @self: the emitter a stage function was given
 * @value: an output
 *
 * Sends a copy of @value on, as [method@Sluice.PipelineEmitter.emit] does:
 * the form for a pipeline made with [ctor@Sluice.Pipeline.new_for_values].
 *
 * Call it from the stage function it was given to, on its thread, during
 * that call.
 */
void
sluice_pipeline_emitter_emit_value (SluicePipelineEmitter *self, const GValue *value)
{
  g_return_if_fail (SLUICE_IS_PIPELINE_EMITTER (self));
  g_return_if_fail (self->node != NULL);
  g_return_if_fail (stage_pipeline (self->stage)->values);

  sluice_pipeline_emitter_emit (self, sluice_value_item_new (value));
}

/**
 * sluice_pipeline_emitter_get_sequence:
 * @self: the emitter a stage function was given
 *
 * Gets the number of the input (0 for the first put) the current item came
 * from.
 *
 * Call it from the stage function it was given to, on its thread, during
 * that call.
 *
 * Returns: the input's number
 */
guint64
sluice_pipeline_emitter_get_sequence (SluicePipelineEmitter *self)
{
  g_return_val_if_fail (SLUICE_IS_PIPELINE_EMITTER (self), 0);
  g_return_val_if_fail (self->node != NULL, 0);

  return self->node->root->seq;
}

/* --- the pipeline --- */

/**
 * sluice_pipeline_new: (skip)
 * @keep_order: whether the outputs come in input order
 * @window: the most inputs between their put and the consumer; at least 1
 * @item_free_func: (nullable): frees an item (input or output) that
 *   nobody takes; it must be safe to call from any thread
 *
 * Creates a pipeline without stages, which belongs to the thread-default
 * main context of the calling thread.
 *
 * Returns: (transfer full): a new pipeline
 */
SluicePipeline *
sluice_pipeline_new (gboolean keep_order, guint window, GDestroyNotify item_free_func)
{
  SluicePipeline *self;

  g_return_val_if_fail (window > 0 && window <= G_MAXINT / 2, NULL);

  self = g_object_new (SLUICE_TYPE_PIPELINE, "keep-order", keep_order, "window", window, NULL);
  self->item_free_func = item_free_func;
  self->values = FALSE;
  sluice_reorder_buffer_set_item_free_func (self->rb, item_free_func);
  sluice_consumerator_set_values (self->consumerator, FALSE);
  return self;
}

/**
 * sluice_pipeline_new_for_values: (rename-to sluice_pipeline_new)
 * @keep_order: whether the outputs come in input order
 * @window: the most inputs between their put and the consumer; at least 1
 *
 * Creates a pipeline whose items are values (`GValue *`): its stages are
 * added with [method@Sluice.Pipeline.add_value_stage], its inputs put with
 * [method@Sluice.Pipeline.put_value], and its outputs taken with
 * [method@Sluice.Consumerator.next_value]. This is the form language
 * bindings use. A pipeline made with g_object_new() carries values too.
 * Otherwise as [ctor@Sluice.Pipeline.new]: the pipeline belongs to the
 * thread-default main context of the calling thread.
 *
 * Returns: (transfer full): a new pipeline
 */
SluicePipeline *
sluice_pipeline_new_for_values (gboolean keep_order, guint window)
{
  g_return_val_if_fail (window > 0 && window <= G_MAXINT / 2, NULL);

  return g_object_new (SLUICE_TYPE_PIPELINE, "keep-order", keep_order, "window", window, NULL);
}

/**
 * sluice_pipeline_add_stage: (skip)
 * @self: a pipeline not started yet
 * @name: the stage's name, for messages and statistics
 * @n_threads: the number of threads that run @func; at least 1
 * @capacity: the most items waiting in the stage's input queue; at least 1
 *   (jobq's default is 1024)
 * @func: (scope notified) (closure func_data) (destroy func_data_destroy):
 *   the stage function
 * @func_data: data for @func
 * @func_data_destroy: (nullable): frees @func_data on the owner context
 *   once the stage's threads have finished
 *
 * Adds a stage after the ones added before.
 *
 * Call it on any thread, before [method@Sluice.Pipeline.start].
 *
 * Returns: the stage's index, from 0
 */
guint
sluice_pipeline_add_stage (SluicePipeline *self,
                           const char *name,
                           guint n_threads,
                           guint capacity,
                           SluicePipelineStageFunc func,
                           gpointer func_data,
                           GDestroyNotify func_data_destroy)
{
  Stage *stage;

  g_return_val_if_fail (SLUICE_IS_PIPELINE (self), 0);
  g_return_val_if_fail (name != NULL, 0);
  g_return_val_if_fail (n_threads > 0, 0);
  g_return_val_if_fail (capacity > 0, 0);
  g_return_val_if_fail (func != NULL, 0);
  g_return_val_if_fail (!is_started (self), 0);

  stage = g_new0 (Stage, 1);
  stage->pipeline = self;
  stage->index = self->stages->len;
  stage->name = g_strdup (name);
  stage->n_threads = n_threads;
  stage->capacity = capacity;
  node_queue_init (&stage->queue, capacity);
  stage->func = func;
  stage->func_data = func_data;
  stage->func_data_destroy = func_data_destroy;
  g_mutex_init (&stage->lock);
  stage->batches = g_ptr_array_new ();
  g_cond_init (&stage->not_empty);
  g_cond_init (&stage->not_full);
  g_cond_init (&stage->rate_cond);
  g_ptr_array_add (self->stages, stage);
  return stage->index;
}

/* A function of the value forms, with its data. */
typedef struct
{
  gpointer func;
  gpointer data;
  GDestroyNotify data_destroy;
} ValueClosure;

static ValueClosure *
value_closure_new (gpointer func, gpointer data, GDestroyNotify data_destroy)
{
  ValueClosure *closure = g_new (ValueClosure, 1);

  closure->func = func;
  closure->data = data;
  closure->data_destroy = data_destroy;
  return closure;
}

static void
value_closure_free (gpointer data)
{
  ValueClosure *closure = data;

  if (closure->data_destroy != NULL)
    closure->data_destroy (closure->data);
  g_free (closure);
}

static gboolean
run_value_stage (SluicePipelineEmitter *emitter, gpointer item, gpointer data, GError **error)
{
  ValueClosure *value_stage = data;
  gboolean ok =
      ((SluicePipelineValueStageFunc) value_stage->func) (emitter, item, value_stage->data, error);

  sluice_value_item_free (item);
  return ok;
}

/**
 * sluice_pipeline_add_value_stage: (rename-to sluice_pipeline_add_stage)
 * @self: a pipeline made with [ctor@Sluice.Pipeline.new_for_values], not
 *   started yet
 * @name: the stage's name, for messages and statistics
 * @n_threads: the number of threads that run @func; at least 1
 * @capacity: the most items waiting in the stage's input queue; at least 1
 * @func: (scope notified) (closure func_data) (destroy func_data_destroy):
 *   the stage function
 * @func_data: data for @func
 * @func_data_destroy: (nullable): frees @func_data on the owner context
 *   once the stage's threads have finished
 *
 * Adds a stage whose function takes values, as
 * [method@Sluice.Pipeline.add_stage] does: the form language bindings use.
 *
 * Call it on any thread, before [method@Sluice.Pipeline.start].
 *
 * Returns: the stage's index, from 0
 */
guint
sluice_pipeline_add_value_stage (SluicePipeline *self,
                                 const char *name,
                                 guint n_threads,
                                 guint capacity,
                                 SluicePipelineValueStageFunc func,
                                 gpointer func_data,
                                 GDestroyNotify func_data_destroy)
{
  g_return_val_if_fail (SLUICE_IS_PIPELINE (self), 0);
  g_return_val_if_fail (self->values, 0);
  g_return_val_if_fail (func != NULL, 0);

  return sluice_pipeline_add_stage (self, name, n_threads, capacity, run_value_stage,
                                    value_closure_new (func, func_data, func_data_destroy),
                                    value_closure_free);
}

static Stage *
get_stage (SluicePipeline *self, guint index)
{
  if (index >= self->stages->len)
    {
      g_log (G_LOG_DOMAIN, G_LOG_LEVEL_CRITICAL, "The pipeline has no stage %u", index);
      return NULL;
    }
  return self->stages->pdata[index];
}

/**
 * sluice_pipeline_set_stage_key_func: (skip)
 * @self: a pipeline not started yet
 * @stage: the index of the stage
 * @func: (scope notified) (closure func_data) (destroy func_data_destroy):
 *   the key function
 * @func_data: data for @func
 * @func_data_destroy: (nullable): frees @func_data on the owner context
 *   once the stage's threads have finished
 *
 * Makes @stage a dispatcher stage, as jobq's `dispatcher`: the inputs of
 * the stage with one key (what @func returns for them) run one at a time,
 * in input order; inputs with different keys run in parallel on the
 * stage's threads.
 *
 * Input order at a stage is the order of the pipeline's inputs, and of the
 * outputs one item emitted, through every stage before it: the order the
 * stage would see if every stage before it had one thread. To keep it, the
 * stage holds the items of an input until every earlier input has gone
 * through the stages before it. Those waiting items do not count against
 * the stage's capacity (a full queue there could stop the earlier input
 * behind it): they are bounded by the window's inputs and what they emit.
 * The output order is still that of [property@Sluice.Pipeline:keep-order].
 *
 * Call it on any thread, before [method@Sluice.Pipeline.start]; once per
 * stage.
 */
void
sluice_pipeline_set_stage_key_func (SluicePipeline *self,
                                    guint stage,
                                    SluicePipelineKeyFunc func,
                                    gpointer func_data,
                                    GDestroyNotify func_data_destroy)
{
  Stage *st;

  g_return_if_fail (SLUICE_IS_PIPELINE (self));
  g_return_if_fail (func != NULL);
  g_return_if_fail (!is_started (self));
  st = get_stage (self, stage);
  if (st == NULL)
    return;
  g_return_if_fail (st->key_func == NULL);

  st->key_func = func;
  st->key_data = func_data;
  st->key_data_destroy = func_data_destroy;
  st->keys = g_hash_table_new_full (g_int64_hash, g_int64_equal, NULL, g_free);
  st->held = g_hash_table_new_full (g_int64_hash, g_int64_equal, NULL, held_free);
}

static guint64
run_value_key (gconstpointer item, gpointer data)
{
  ValueClosure *value_key = data;

  return ((SluicePipelineValueKeyFunc) value_key->func) (item, value_key->data);
}

/**
 * sluice_pipeline_set_stage_value_key_func: (rename-to sluice_pipeline_set_stage_key_func)
 * @self: a pipeline made with [ctor@Sluice.Pipeline.new_for_values], not
 *   started yet
 * @stage: the index of the stage
 * @func: (scope notified) (closure func_data) (destroy func_data_destroy):
 *   the key function
 * @func_data: data for @func
 * @func_data_destroy: (nullable): frees @func_data on the owner context
 *   once the stage's threads have finished
 *
 * Makes @stage a dispatcher stage whose key function takes values, as
 * [method@Sluice.Pipeline.set_stage_key_func] does: the form language
 * bindings use.
 *
 * Call it on any thread, before [method@Sluice.Pipeline.start].
 */
void
sluice_pipeline_set_stage_value_key_func (SluicePipeline *self,
                                          guint stage,
                                          SluicePipelineValueKeyFunc func,
                                          gpointer func_data,
                                          GDestroyNotify func_data_destroy)
{
  g_return_if_fail (SLUICE_IS_PIPELINE (self));
  g_return_if_fail (self->values);
  g_return_if_fail (func != NULL);

  sluice_pipeline_set_stage_key_func (self, stage, run_value_key,
                                      value_closure_new (func, func_data, func_data_destroy),
                                      value_closure_free);
}

/**
 * sluice_pipeline_set_stage_threads:
 * @self: a pipeline
 * @stage: the index of the stage
 * @n_threads: the number of threads that run the stage function; at
 *   least 1
 *
 * Changes the number of threads of @stage, at any time, jobq's
 * `set_thread_num`. New threads start before this call returns; threads
 * too many leave as soon as they finish the item they are running (at
 * once when idle), never in the middle of an item. Once the stage's
 * threads have finished (its input is over), it only records the number.
 *
 * A dispatcher stage's count may change too (jobq refuses: it binds keys
 * to threads). Its keys are not bound to threads: a key's next item goes
 * to whichever thread is free once the key's running item is done, and a
 * thread leaves only between items, so one item per key at a time and the
 * keys' input order hold whatever the count does.
 *
 * This function is safe to call from any thread.
 */
void
sluice_pipeline_set_stage_threads (SluicePipeline *self, guint stage, guint n_threads)
{
  Stage *st;

  g_return_if_fail (SLUICE_IS_PIPELINE (self));
  g_return_if_fail (n_threads > 0);
  st = get_stage (self, stage);
  if (st == NULL)
    return;

  g_mutex_lock (&st->lock);
  st->n_threads = n_threads;
  /* Before start() spawned them, it spawns n_threads; once ended, none. */
  if (st->spawned && !st->ended)
    {
      for (; st->n_alive < n_threads; st->n_alive++)
        add_stage_thread (self, st);
      g_atomic_int_set (&st->shrink, st->n_alive > n_threads);
      /* Idle threads too many leave now. */
      if (st->n_alive > n_threads)
        g_cond_broadcast (&st->not_empty);
    }
  g_mutex_unlock (&st->lock);
}

/**
 * sluice_pipeline_get_stage_threads:
 * @self: a pipeline
 * @stage: the index of the stage
 *
 * Gets the number of threads @stage runs with (or will, while some leave
 * after a shrink).
 *
 * This function is safe to call from any thread.
 *
 * Returns: the stage's number of threads
 */
guint
sluice_pipeline_get_stage_threads (SluicePipeline *self, guint stage)
{
  Stage *st;
  guint n;

  g_return_val_if_fail (SLUICE_IS_PIPELINE (self), 0);
  st = get_stage (self, stage);
  if (st == NULL)
    return 0;
  g_mutex_lock (&st->lock);
  n = st->n_threads;
  g_mutex_unlock (&st->lock);
  return n;
}

/**
 * sluice_pipeline_set_stage_rate_limit:
 * @self: a pipeline
 * @stage: the index of the stage
 * @units_per_second: the most units per second, or 0 for no limit
 * @step: the units each item counts for; at least 1
 *
 * Limits the rate at which @stage's threads start items, jobq's
 * `limit_job_speed (max_job_speed, job_step)`: each item counts @step units
 * and the stage starts at most @units_per_second units per second, so
 * @units_per_second / @step items per second, whatever its number of
 * threads. The items start on one schedule of evenly spaced times: a stage
 * never runs ahead of it; late (a loaded machine, or no input) it catches up
 * by at most 100 ms worth of items, so a stage idle for long saves no more
 * credit than that. A stop ends a wait for the schedule at once.
 *
 * This function is safe to call from any thread, at any time.
 */
void
sluice_pipeline_set_stage_rate_limit (SluicePipeline *self,
                                      guint stage,
                                      double units_per_second,
                                      guint step)
{
  Stage *st;

  g_return_if_fail (SLUICE_IS_PIPELINE (self));
  g_return_if_fail (units_per_second >= 0);
  g_return_if_fail (step > 0);
  st = get_stage (self, stage);
  if (st == NULL)
    return;
  g_mutex_lock (&st->lock);
  st->rate = units_per_second;
  st->step = step;
  st->next_free = 0;
  g_atomic_int_set (&st->limited, units_per_second > 0);
  g_mutex_unlock (&st->lock);
}

/**
 * sluice_pipeline_get_n_stages:
 * @self: a pipeline
 *
 * Gets the number of stages added.
 *
 * It is safe to call from any thread once the stages are added.
 *
 * Returns: the number of stages
 */
guint
sluice_pipeline_get_n_stages (SluicePipeline *self)
{
  g_return_val_if_fail (SLUICE_IS_PIPELINE (self), 0);

  return self->stages->len;
}

/**
 * sluice_pipeline_start:
 * @self: a pipeline with at least one stage
 * @func: (scope notified) (closure func_data) (destroy func_data_destroy) (nullable):
 *   the blocking consumer, run in a thread of its own, or %NULL to take the
 *   outputs from [property@Sluice.Pipeline:consumerator] yourself
 * @func_data: data for @func
 * @func_data_destroy: (nullable): frees @func_data on the owner context
 *   once @func has returned
 *
 * Starts the stages' threads, and the consumer's. A consumer that returns
 * before the end stops the pipeline; its failure is what
 * [method@Sluice.Pipeline.join] reports. A pipeline starts once.
 *
 * Call it on any thread.
 */
void
sluice_pipeline_start (SluicePipeline *self,
                       SluicePipelineConsumerFunc func,
                       gpointer func_data,
                       GDestroyNotify func_data_destroy)
{
  gboolean started;

  g_return_if_fail (SLUICE_IS_PIPELINE (self));
  g_return_if_fail (self->stages->len > 0);
  g_mutex_lock (&self->lock);
  started = self->started;
  if (!started)
    {
      g_atomic_int_set (&self->started, TRUE);
      self->n_holders = 1; /* this call's, until every thread is started */
      self->user_refs = 1; /* the caller's */
    }
  g_mutex_unlock (&self->lock);
  g_return_if_fail (!started);

  self->cancelled_handler = g_cancellable_connect (sluice_reorder_buffer_get_cancellable (self->rb),
                                                   G_CALLBACK (on_buffer_cancelled), self, NULL);
  /* Puts take their place with one atomic step while there is room
   * (reserve_place()); a stop closes the gate again. */
  sluice_reorder_buffer_lock (self->rb);
  sluice_reorder_buffer_set_gate_locked (self->rb, !is_stopping (self));
  sluice_reorder_buffer_unlock (self->rb);

  for (guint i = 1; i < self->stages->len; i++)
    if (((Stage *) self->stages->pdata[i])->key_func != NULL)
      self->dispatch_after_head = TRUE;

  /* The threads keep the pipeline alive through one toggle reference, so
   * that we learn when the user's references are gone. */
  g_object_add_toggle_ref (G_OBJECT (self), on_last_user_ref, NULL);
  for (guint i = 0; i < self->stages->len; i++)
    {
      Stage *stage = self->stages->pdata[i];

      /* The stage's lock first, as set_stage_threads() takes them. */
      sluice_mutex_lock_spinning (&stage->lock);
      stage->spawned = TRUE;
      for (; stage->n_alive < stage->n_threads; stage->n_alive++)
        add_stage_thread (self, stage);
      g_mutex_unlock (&stage->lock);
    }
  g_mutex_lock (&self->lock);
  if (func != NULL)
    {
      self->consumer_func = func;
      self->consumer_data = func_data;
      self->consumer_data_destroy = func_data_destroy;
      self->consumer_running = TRUE;
      self->n_holders++;
      g_ptr_array_add (self->threads, g_thread_new ("sluice-consumer", consumer_thread, self));
    }
  g_mutex_unlock (&self->lock);
  release_holder (self);
}

/* Any thread: a put's cancellable fired. */
static void
on_put_cancelled (GCancellable *cancellable, gpointer data)
{
  SluicePipeline *self = data;
  Stage *head = self->stages->pdata[0];

  room_wake (sluice_reorder_buffer_get_callback_data (self->rb));
  sluice_mutex_lock_spinning (&head->lock);
  g_cond_broadcast (&head->not_full);
  g_mutex_unlock (&head->lock);
}

/* A put that did not queue its item is over: the first stage's threads may
 * be waiting for it to end. */
static void
put_leave (Stage *head)
{
  sluice_mutex_lock_spinning (&head->lock);
  if (g_atomic_int_dec_and_test (&head->n_putting) && head->closed)
    wake_all_poppers_locked (head);
  g_mutex_unlock (&head->lock);
}

/* A put: a place in the window, or NULL with @error set. */
static SluiceSlot *
reserve_place (SluicePipeline *self, GCancellable *cancellable, GError **error)
{
  Room *room = sluice_reorder_buffer_get_callback_data (self->rb);
  SluiceSlot *slot = NULL;

  /* The fast path: room and no stop (the gate closes at a stop; a put that
   * took its place just before then fails at the stage's queue). */
  if (!g_cancellable_is_cancelled (cancellable) &&
      (slot = sluice_reorder_buffer_try_reserve (self->rb)) != NULL)
    return slot;

  g_mutex_lock (&room->lock);
  for (;;)
    {
      guint gen = room->gen;
      gboolean closed;

      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        break;
      sluice_reorder_buffer_lock (self->rb);
      closed = is_stopping (self) || sluice_reorder_buffer_is_closed_locked (self->rb);
      if (!closed && sluice_reorder_buffer_has_room_locked (self->rb, FALSE))
        slot = sluice_reorder_buffer_reserve_locked (self->rb);
      sluice_reorder_buffer_unlock (self->rb);
      if (closed)
        {
          g_propagate_error (error, stopped_error ());
          break;
        }
      if (slot != NULL)
        break;
      while (gen == room->gen)
        g_cond_wait (&room->cond, &room->lock);
    }
  g_mutex_unlock (&room->lock);

  return slot;
}

/**
 * sluice_pipeline_put: (skip)
 * @self: a started pipeline whose input is not closed
 * @item: (transfer full) (nullable): the input
 * @cancellable: (nullable): cancels the wait for room
 * @error: return location for an error
 *
 * Gives @item to the first stage. Blocks while the window is full or the
 * first stage's queue is (a put that had to wait goes on once a quarter of
 * it is free again). Fails with %SLUICE_ERROR_STOPPED once the
 * pipeline stopped, or with %G_IO_ERROR_CANCELLED; @item is then freed
 * with the item free function. The inputs are numbered in the order their
 * puts took their place in the window.
 *
 * This function is safe to call from any thread, from several at once.
 *
 * Returns: %TRUE when @item was put
 */
gboolean
sluice_pipeline_put (SluicePipeline *self, gpointer item, GCancellable *cancellable, GError **error)
{
  Stage *head;
  SluiceSlot *slot;
  Node *root;
  gboolean closed;
  gulong handler = 0;
  gboolean put_done = FALSE;
  GError *local_error = NULL;

  g_return_val_if_fail (SLUICE_IS_PIPELINE (self), FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  g_return_val_if_fail (is_started (self), FALSE);

  /* In progress before the look at closed, without the lock: a put that
   * finds the stage open is seen by its last thread, which reads n_putting
   * after closed was set (both sequentially consistent), and waits for
   * it; one that finds it closed leaves (put_leave()). */
  head = self->stages->pdata[0];
  g_atomic_int_inc (&head->n_putting);
  closed = g_atomic_int_get (&head->closed);
  if (closed)
    {
      put_leave (head);
      free_item (self, item);
      if (is_stopping (self))
        {
          g_propagate_error (error, stopped_error ());
          return FALSE;
        }
      g_return_val_if_fail (!closed, FALSE);
    }

  if (cancellable != NULL)
    handler = g_cancellable_connect (cancellable, G_CALLBACK (on_put_cancelled), self, NULL);

  slot = reserve_place (self, cancellable, &local_error);
  if (slot != NULL)
    {
      guint64 seq = slot->seq;

      root = root_new (self, item);
      root->slot = slot;
      root->seq = seq;
      /* Before anything can count it out. */
      __atomic_fetch_add (&self->n_in, 1, __ATOMIC_RELAXED);
      if (self->dispatch_after_head)
        root->feeding = g_new0 (int, self->stages->len);
      node_entered_stage (self, root);
      if (!stage_push (head, root, cancellable, &put_done))
        {
          /* Not accepted: the place it took in the window ends empty. */
          if (!g_cancellable_set_error_if_cancelled (cancellable, &local_error))
            local_error = stopped_error ();
          free_item (self, g_steal_pointer (&root->item));
          node_left_stage (self, root);
          if (head->key_func != NULL)
            root_fed (head, seq);
          node_release (self, root);
        }
      else if (head->key_func != NULL)
        root_fed (head, seq);
    }
  else
    free_item (self, item);

  if (handler != 0)
    g_cancellable_disconnect (cancellable, handler);

  if (!put_done)
    put_leave (head);

  if (local_error != NULL)
    {
      g_propagate_error (error, local_error);
      return FALSE;
    }
  return TRUE;
}

/**
 * sluice_pipeline_put_value: (rename-to sluice_pipeline_put)
 * @self: a started pipeline of values whose input is not closed
 * @value: the input
 * @cancellable: (nullable): cancels the wait for room
 * @error: return location for an error
 *
 * Gives a copy of @value to the first stage, as
 * [method@Sluice.Pipeline.put] does: the form for a pipeline made with
 * [ctor@Sluice.Pipeline.new_for_values].
 *
 * This function is safe to call from any thread, from several at once.
 *
 * Returns: %TRUE when @value was put
 */
gboolean
sluice_pipeline_put_value (SluicePipeline *self,
                           const GValue *value,
                           GCancellable *cancellable,
                           GError **error)
{
  g_return_val_if_fail (SLUICE_IS_PIPELINE (self), FALSE);
  g_return_val_if_fail (self->values, FALSE);

  return sluice_pipeline_put (self, sluice_value_item_new (value), cancellable, error);
}

/* --- puts for main-loop callers --- */

/* Any thread: whether a put now would go on without waiting (or fail at
 * once). */
static gboolean
can_put (SluicePipeline *self)
{
  Stage *head = self->stages->pdata[0];
  gboolean room;

  if (is_stopping (self))
    return TRUE;
  sluice_reorder_buffer_lock (self->rb);
  /* When full, this asks the consumer to call back at the first free
   * place: that wakes the sources. */
  room = sluice_reorder_buffer_is_closed_locked (self->rb) ||
         sluice_reorder_buffer_has_room_locked (self->rb, TRUE);
  sluice_reorder_buffer_unlock (self->rb);
  if (!room)
    return FALSE;
  sluice_mutex_lock_spinning (&head->lock);
  /* A full queue wakes the sources when its threads take an item. */
  room = head->closed || stage_queued (head) < head->capacity;
  g_mutex_unlock (&head->lock);
  return room;
}

typedef struct
{
  GSource source;
  SluicePipeline *pipeline;
} ReadySource;

static gboolean
ready_source_prepare (GSource *source, int *timeout)
{
  *timeout = -1;
  return can_put (((ReadySource *) source)->pipeline);
}

static gboolean
ready_source_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  g_source_set_ready_time (source, -1);
  /* A wake-up (room_wake() sets the ready time) can be stale: a put may
   * have taken the room between the stage thread's pop and its wake-up,
   * and the ready time dispatches without prepare(). Without room, wait
   * for the next wake-up (set after this reset, so none is lost) rather
   * than let the callback's put block the context. */
  if (!can_put (((ReadySource *) source)->pipeline))
    return G_SOURCE_CONTINUE;
  if (callback == NULL)
    {
      g_warning ("A pipeline's ready source dispatched without a callback: call "
                 "g_source_set_callback()");
      return G_SOURCE_REMOVE;
    }
  return callback (user_data);
}

static void
ready_source_finalize (GSource *source)
{
  ReadySource *ready = (ReadySource *) source;
  Room *room = sluice_reorder_buffer_get_callback_data (ready->pipeline->rb);

  g_mutex_lock (&room->lock);
  room->sources = g_slist_remove (room->sources, source);
  g_atomic_int_add (&room->n_sources, -1);
  g_mutex_unlock (&room->lock);
  g_object_unref (ready->pipeline);
}

static GSourceFuncs ready_source_funcs = {
  ready_source_prepare, NULL, ready_source_dispatch, ready_source_finalize, NULL, NULL,
};

/**
 * sluice_pipeline_create_ready_source:
 * @self: a pipeline
 * @cancellable: (nullable): a cancellable whose cancellation also
 *   dispatches the source
 *
 * Creates a source that dispatches while a [method@Sluice.Pipeline.put]
 * would go on without waiting: there is room in the window and in the
 * first stage's queue (or the pipeline stopped and a put fails at once).
 * Its callback is a [callback@GLib.SourceFunc], set with
 * g_source_set_callback(); it is called again at every main loop
 * iteration while that holds, as an idle source is, until it returns
 * %G_SOURCE_REMOVE: put until a put would wait, then return
 * %G_SOURCE_CONTINUE to be called once there is room again. With several
 * putting threads the room may be gone before your put: a put can still
 * wait, briefly.
 *
 * This is the flow control of a producer on a main loop, as
 * g_pollable_input_stream_create_source() is for streams.
 *
 * It is safe to call from any thread; attach the source to the context
 * that runs your puts.
 *
 * Returns: (transfer full): a new source
 */
GSource *
sluice_pipeline_create_ready_source (SluicePipeline *self, GCancellable *cancellable)
{
  Room *room;
  GSource *source;

  g_return_val_if_fail (SLUICE_IS_PIPELINE (self), NULL);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), NULL);

  source = g_source_new (&ready_source_funcs, sizeof (ReadySource));
  g_source_set_static_name (source, "[sluice] pipeline ready");
  ((ReadySource *) source)->pipeline = g_object_ref (self);
  room = sluice_reorder_buffer_get_callback_data (self->rb);
  g_mutex_lock (&room->lock);
  room->sources = g_slist_prepend (room->sources, source);
  g_atomic_int_inc (&room->n_sources);
  g_mutex_unlock (&room->lock);
  if (cancellable != NULL)
    {
      GSource *cancel_source = g_cancellable_source_new (cancellable);

      g_source_set_dummy_callback (cancel_source);
      g_source_add_child_source (source, cancel_source);
      g_source_unref (cancel_source);
    }
  return source;
}

/* The consumer of a run without one: the outputs are let go. */
static gboolean
drop_outputs (SluiceConsumerator *outputs, gpointer data, GError **error)
{
  gpointer item;

  while (sluice_consumerator_next (outputs, &item, error))
    free_item (data, item);
  return *error == NULL;
}

/* Any thread: a run's cancellable fired. */
static void
on_run_cancelled (GCancellable *cancellable, gpointer data)
{
  stop_internal (data, TRUE);
}

/* Stops a run's pipeline at its deadline, even while a put waits. */
typedef struct
{
  SluicePipeline *pipeline;
  gint64 deadline;
  GMutex lock;
  GCond cond;
  gboolean done;
  gboolean fired;
} Watchdog;

static gpointer
watchdog_thread (gpointer data)
{
  Watchdog *dog = data;
  gboolean fire;

  g_mutex_lock (&dog->lock);
  while (!dog->done && g_cond_wait_until (&dog->cond, &dog->lock, dog->deadline))
    ;
  fire = dog->fired = !dog->done;
  g_mutex_unlock (&dog->lock);
  if (fire)
    stop_internal (dog->pipeline, TRUE);
  return NULL;
}

/* A thread of GLib's pool: does the queued async puts, in order. */
static void
drain_async_puts (GTask *drain, gpointer source_object, gpointer data, GCancellable *unused)
{
  SluicePipeline *self = source_object;

  for (;;)
    {
      GTask *task;
      GError *error = NULL;

      g_mutex_lock (&self->lock);
      task = g_queue_pop_head (&self->async_puts);
      if (task == NULL)
        self->draining = FALSE;
      g_mutex_unlock (&self->lock);
      if (task == NULL)
        break;
      if (sluice_pipeline_put (self, g_task_get_task_data (task), g_task_get_cancellable (task),
                               &error))
        g_task_return_boolean (task, TRUE);
      else
        g_task_return_error (task, error);
      g_object_unref (task);
    }
  g_task_return_boolean (drain, TRUE);
}

/**
 * sluice_pipeline_put_async: (skip)
 * @self: a started pipeline whose input is not closed
 * @item: (transfer full) (nullable): the input
 * @cancellable: (nullable): cancels the wait for room
 * @callback: (scope async): called once the item was put (or not)
 * @user_data: data for @callback
 *
 * Puts @item as [method@Sluice.Pipeline.put] does, without blocking the
 * calling thread: the puts of the async calls are done in the order of the
 * calls, one at a time, by a thread of GLib's pool, and @callback runs on
 * the thread-default main context of the call, from a source, never inside
 * this call. Several calls may be in flight; keep their number bounded
 * (for instance issue the next one from the callback, or use
 * [method@Sluice.Pipeline.create_ready_source]), else the calls not done
 * yet hold their items outside the pipeline's bounds.
 *
 * Call it on any thread that runs its thread-default main context.
 */
void
sluice_pipeline_put_async (SluicePipeline *self,
                           gpointer item,
                           GCancellable *cancellable,
                           GAsyncReadyCallback callback,
                           gpointer user_data)
{
  GTask *task;
  gboolean start;

  g_return_if_fail (SLUICE_IS_PIPELINE (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));
  g_return_if_fail (is_started (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, sluice_pipeline_put_async);
  g_task_set_check_cancellable (task, FALSE);
  g_task_set_task_data (task, item, NULL);
  g_mutex_lock (&self->lock);
  g_queue_push_tail (&self->async_puts, task);
  start = !self->draining;
  self->draining = TRUE;
  g_mutex_unlock (&self->lock);
  if (start)
    {
      GTask *drain = g_task_new (self, NULL, NULL, NULL);

      g_task_set_source_tag (drain, drain_async_puts);
      g_task_run_in_thread (drain, drain_async_puts);
      g_object_unref (drain);
    }
}

/**
 * sluice_pipeline_put_value_async: (rename-to sluice_pipeline_put_async)
 * @self: a started pipeline of values whose input is not closed
 * @value: the input
 * @cancellable: (nullable): cancels the wait for room
 * @callback: (scope async): called once the value was put (or not)
 * @user_data: data for @callback
 *
 * Puts a copy of @value as [method@Sluice.Pipeline.put_async] does: the form
 * for a pipeline made with [ctor@Sluice.Pipeline.new_for_values].
 *
 * Call it on any thread that runs its thread-default main context.
 */
void
sluice_pipeline_put_value_async (SluicePipeline *self,
                                 const GValue *value,
                                 GCancellable *cancellable,
                                 GAsyncReadyCallback callback,
                                 gpointer user_data)
{
  g_return_if_fail (SLUICE_IS_PIPELINE (self));
  g_return_if_fail (self->values);

  sluice_pipeline_put_async (self, sluice_value_item_new (value), cancellable, callback, user_data);
}

/**
 * sluice_pipeline_put_finish:
 * @self: a pipeline
 * @result: the result given to the callback
 * @error: return location for an error
 *
 * Finishes [method@Sluice.Pipeline.put_async] (or its value form).
 *
 * Returns: %TRUE when the item was put; %FALSE as
 *   [method@Sluice.Pipeline.put] fails (the item was freed)
 */
gboolean
sluice_pipeline_put_finish (SluicePipeline *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (SLUICE_IS_PIPELINE (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * sluice_pipeline_run: (skip)
 * @self: a pipeline with stages, not started yet
 * @input: (scope call) (closure input_data): gives the inputs, one per call
 * @input_data: data for @input
 * @consumer: (scope call) (closure consumer_data) (nullable): takes the
 *   outputs in a thread of its own, or %NULL to drop them
 * @consumer_data: data for @consumer
 * @timeout_us: the most time to run, in microseconds, or -1
 * @cancellable: (nullable): stops the pipeline when cancelled
 * @error: return location for an error
 *
 * Runs the pipeline over every input @input gives and waits for the end,
 * as jobq's `run(input, workers)` does: starts it with @consumer, puts the
 * inputs in turn on this thread, closes the input and joins. When @input
 * fails, or @cancellable fires, the pipeline stops and that error is
 * returned. When @timeout_us passes, it fails as
 * [method@Sluice.Pipeline.join] does with a timeout.
 *
 * Call it on any thread but the pipeline's own; it blocks that thread.
 *
 * Returns: %TRUE when every input went through; %FALSE with @error set
 */
gboolean
sluice_pipeline_run (SluicePipeline *self,
                     SluicePipelineInputFunc input,
                     gpointer input_data,
                     SluicePipelineConsumerFunc consumer,
                     gpointer consumer_data,
                     gint64 timeout_us,
                     GCancellable *cancellable,
                     GError **error)
{
  gint64 deadline = deadline_after (timeout_us);
  GError *input_error = NULL;
  GError *join_error = NULL;
  gulong handler = 0;
  Watchdog dog = { self, deadline };
  GThread *dog_thread = NULL;

  g_return_val_if_fail (SLUICE_IS_PIPELINE (self), FALSE);
  g_return_val_if_fail (input != NULL, FALSE);
  g_return_val_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  g_return_val_if_fail (!is_started (self), FALSE);

  if (consumer != NULL)
    sluice_pipeline_start (self, consumer, consumer_data, NULL);
  else
    sluice_pipeline_start (self, drop_outputs, self, NULL);
  if (cancellable != NULL)
    handler = g_cancellable_connect (cancellable, G_CALLBACK (on_run_cancelled), self, NULL);
  if (deadline >= 0)
    {
      g_mutex_init (&dog.lock);
      g_cond_init (&dog.cond);
      dog_thread = g_thread_new ("sluice-run-timeout", watchdog_thread, &dog);
    }
  for (;;)
    {
      gpointer item = NULL;

      if (g_cancellable_set_error_if_cancelled (cancellable, &input_error))
        break;
      if (!input (input_data, &item, &input_error))
        break;
      if (!sluice_pipeline_put (self, item, cancellable, NULL))
        {
          /* Stopped (the error comes from join) or cancelled. */
          g_cancellable_set_error_if_cancelled (cancellable, &input_error);
          break;
        }
    }
  if (input_error != NULL)
    stop_internal (self, TRUE);
  else
    sluice_pipeline_close_input (self);
  sluice_pipeline_join (self, deadline < 0 ? -1 : MAX (deadline - g_get_monotonic_time (), 0),
                        &join_error);
  if (handler != 0)
    g_cancellable_disconnect (cancellable, handler);
  if (dog_thread != NULL)
    {
      g_mutex_lock (&dog.lock);
      dog.done = TRUE;
      g_cond_signal (&dog.cond);
      g_mutex_unlock (&dog.lock);
      g_thread_join (dog_thread);
      g_mutex_clear (&dog.lock);
      g_cond_clear (&dog.cond);
      if (dog.fired && input_error == NULL)
        {
          g_clear_error (&join_error);
          input_error = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                                             _ ("The pipeline did not finish in time"));
        }
    }
  /* A stop of ours says why it stopped: the input's failure, or the
   * cancellation. */
  if (input_error == NULL && join_error != NULL)
    g_cancellable_set_error_if_cancelled (cancellable, &input_error);
  if (input_error != NULL)
    {
      g_clear_error (&join_error);
      g_propagate_error (error, input_error);
      return FALSE;
    }
  if (join_error != NULL)
    {
      g_propagate_error (error, join_error);
      return FALSE;
    }
  return TRUE;
}

typedef struct
{
  const GValue *values;
  guint n;
  guint next;
} ValueInputs;

static gboolean
next_value_input (gpointer data, gpointer *out_item, GError **error)
{
  ValueInputs *inputs = data;

  if (inputs->next >= inputs->n)
    return FALSE;
  *out_item = sluice_value_item_new (&inputs->values[inputs->next++]);
  return TRUE;
}

/**
 * sluice_pipeline_run_values: (rename-to sluice_pipeline_run)
 * @self: a pipeline of values with stages, not started yet
 * @inputs: (array length=n_inputs): the inputs
 * @n_inputs: the number of inputs
 * @consumer: (scope call) (closure consumer_data) (nullable): takes the
 *   outputs in a thread of its own, or %NULL to drop them
 * @consumer_data: data for @consumer
 * @timeout_us: the most time to run, in microseconds, or -1
 * @cancellable: (nullable): stops the pipeline when cancelled
 * @error: return location for an error
 *
 * Runs the pipeline over copies of @inputs, as [method@Sluice.Pipeline.run]
 * does: the form for a pipeline made with
 * [ctor@Sluice.Pipeline.new_for_values]. (Python's override also takes any
 * iterable.)
 *
 * Call it on any thread but the pipeline's own; it blocks that thread.
 *
 * Returns: %TRUE when every input went through; %FALSE with @error set
 */
gboolean
sluice_pipeline_run_values (SluicePipeline *self,
                            const GValue *inputs,
                            guint n_inputs,
                            SluicePipelineConsumerFunc consumer,
                            gpointer consumer_data,
                            gint64 timeout_us,
                            GCancellable *cancellable,
                            GError **error)
{
  ValueInputs values = { inputs, n_inputs, 0 };

  g_return_val_if_fail (SLUICE_IS_PIPELINE (self), FALSE);
  g_return_val_if_fail (self->values, FALSE);
  g_return_val_if_fail (inputs != NULL || n_inputs == 0, FALSE);

  return sluice_pipeline_run (self, next_value_input, &values, consumer, consumer_data, timeout_us,
                              cancellable, error);
}

/**
 * sluice_pipeline_close_input:
 * @self: a started pipeline
 *
 * Ends the input: once the puts in progress are done and every input went
 * through the stages, the stages' threads finish and the consumerator ends.
 * Putting after this is a programmer error. Closing twice is harmless.
 *
 * This function is safe to call from any thread.
 */
void
sluice_pipeline_close_input (SluicePipeline *self)
{

  g_return_if_fail (SLUICE_IS_PIPELINE (self));
  g_return_if_fail (is_started (self));

  stage_close (self->stages->pdata[0]);
}

/**
 * sluice_pipeline_stop:
 * @self: a started pipeline
 *
 * Stops the pipeline: no stage function starts any more (those running
 * finish their current item), blocked puts and emits give up, items not
 * delivered yet are freed with the item free function, the consumer's
 * next call fails with %SLUICE_ERROR_STOPPED, and
 * [method@Sluice.Pipeline.join] reports %SLUICE_ERROR_STOPPED unless a
 * failure came first.
 *
 * This function is safe to call from any thread.
 */
void
sluice_pipeline_stop (SluicePipeline *self)
{

  g_return_if_fail (SLUICE_IS_PIPELINE (self));
  g_return_if_fail (is_started (self));

  stop_internal (self, TRUE);
}

/**
 * sluice_pipeline_join:
 * @self: a started pipeline
 * @timeout_us: how long to wait, in microseconds, or -1 to wait until
 *   the end
 * @error: return location for an error
 *
 * Waits until every stage's threads have finished (the input was closed
 * and every input went through, or the pipeline stopped) and the consumer
 * function, if any, has returned. With a consumerator instead of a
 * function, it does not wait for the consumer to take the outputs.
 *
 * When @timeout_us passes first the pipeline is stopped, as
 * [method@Sluice.Pipeline.stop] does, and the call fails with
 * %G_IO_ERROR_TIMED_OUT.
 *
 * This function is safe to call from any thread but the pipeline's own.
 *
 * Returns: %TRUE when everything went through; %FALSE with @error set to
 *   the consumer's failure, else the first failed input's (unless
 *   skipped), else %SLUICE_ERROR_STOPPED after a stop
 */
gboolean
sluice_pipeline_join (SluicePipeline *self, gint64 timeout_us, GError **error)
{
  gint64 deadline = deadline_after (timeout_us);
  GPtrArray *threads;
  gboolean ok;

  g_return_val_if_fail (SLUICE_IS_PIPELINE (self), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  g_return_val_if_fail (is_started (self), FALSE);

  g_mutex_lock (&self->lock);
  while (!self->finished)
    {
      if (deadline < 0)
        g_cond_wait (&self->cond, &self->lock);
      else if (!g_cond_wait_until (&self->cond, &self->lock, deadline) && !self->finished)
        {
          g_mutex_unlock (&self->lock);
          stop_internal (self, TRUE);
          g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                               _ ("The pipeline did not finish in time"));
          return FALSE;
        }
    }
  ok = result_locked (self, error);
  /* The threads are on their way out: wait for them, so that nothing of
   * ours runs once the pipeline is joined. */
  threads = g_steal_pointer (&self->threads);
  self->threads = g_ptr_array_new_with_free_func ((GDestroyNotify) g_thread_unref);
  g_mutex_unlock (&self->lock);

  g_ptr_array_set_free_func (threads, NULL);
  for (guint i = 0; i < threads->len; i++)
    {
      GThread *thread = threads->pdata[i];

      if (thread == g_thread_self ())
        g_thread_unref (thread);
      else
        g_thread_join (thread);
    }
  g_ptr_array_unref (threads);

  return ok;
}

/* Any thread: a join_async's cancellable fired. */
static void
on_join_cancelled (GCancellable *cancellable, gpointer data)
{
  GTask *task = data;
  SluicePipeline *self = g_task_get_source_object (task);
  GList *link;

  g_mutex_lock (&self->lock);
  link = g_list_find (self->join_tasks, task);
  if (link != NULL)
    self->join_tasks = g_list_delete_link (self->join_tasks, link);
  g_mutex_unlock (&self->lock);
  if (link == NULL)
    return;

  /* Not join_return_later(): a handler cannot disconnect itself. */
  g_task_set_task_data (task, NULL, NULL);
  {
    JoinReturn *ret = g_new (JoinReturn, 1);

    ret->task = task;
    ret->error = NULL;
    g_cancellable_set_error_if_cancelled (cancellable, &ret->error);
    run_later (g_task_get_context (task), join_return_cb, ret, join_return_free);
  }
}

/**
 * sluice_pipeline_join_async:
 * @self: a started pipeline
 * @priority: the I/O priority of the request
 * @cancellable: (nullable): cancels the wait (not the pipeline)
 * @callback: (scope async): called when the pipeline has finished
 * @user_data: data for @callback
 *
 * Waits, without blocking, for what [method@Sluice.Pipeline.join] waits
 * for. @callback runs on the thread-default main context of the call,
 * from a source, never inside this call.
 *
 * Call it on any thread that runs its thread-default main context.
 */
void
sluice_pipeline_join_async (SluicePipeline *self,
                            int priority,
                            GCancellable *cancellable,
                            GAsyncReadyCallback callback,
                            gpointer user_data)
{
  GTask *task;
  gboolean finished;
  GError *error = NULL;

  g_return_if_fail (SLUICE_IS_PIPELINE (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));
  g_return_if_fail (is_started (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, sluice_pipeline_join_async);
  g_task_set_priority (task, priority);
  g_task_set_check_cancellable (task, FALSE);

  g_mutex_lock (&self->lock);
  finished = self->finished;
  if (finished)
    result_locked (self, &error);
  else
    self->join_tasks = g_list_prepend (self->join_tasks, task);
  g_mutex_unlock (&self->lock);

  if (finished)
    {
      join_return_later (task, error);
      return;
    }
  if (cancellable != NULL)
    {
      /* Runs at once when already cancelled. */
      gulong handler =
          g_cancellable_connect (cancellable, G_CALLBACK (on_join_cancelled), task, NULL);

      g_mutex_lock (&self->lock);
      if (g_list_find (self->join_tasks, task) != NULL)
        g_task_set_task_data (task, GSIZE_TO_POINTER (handler), NULL);
      else if (handler != 0)
        g_cancellable_disconnect (cancellable, handler);
      g_mutex_unlock (&self->lock);
    }
}

/**
 * sluice_pipeline_join_finish:
 * @self: a pipeline
 * @result: the result given to the callback
 * @error: return location for an error
 *
 * Finishes [method@Sluice.Pipeline.join_async].
 *
 * Returns: as [method@Sluice.Pipeline.join] does; %FALSE with
 *   %G_IO_ERROR_CANCELLED when the wait was cancelled
 */
gboolean
sluice_pipeline_join_finish (SluicePipeline *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (SLUICE_IS_PIPELINE (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/* clang-format off */
/**
 * sluice_pipeline_get_stats:
 * @self: a pipeline
 *
 * Gets where the pipeline stands, jobq's `stat()`: a dictionary
 * (`a{sv}`) with these keys, which stay stable:
 *
 * - `in` (`t`): inputs put (that took a place in the window)
 * - `out` (`t`): inputs through every stage (their outputs, if any, wait
 *   for the consumer or were taken), failed and dropped ones included
 * - `doing` (`t`): inputs between the two: `in` - `out`
 * - `taken` (`t`): inputs whose outputs the consumer reached (their first
 *   output, or their place for an input without outputs)
 * - `keep-order` (`b`), `window` (`u`): the pipeline's properties
 * - `stages` (`aa{sv}`): per stage, in order:
 *   - `name` (`s`)
 *   - `queue-size` (`u`): items waiting for a thread of the stage
 *   - `queue-capacity` (`u`)
 *   - `queue-max` (`u`): the largest `queue-size` seen
 *   - `threads` (`u`): threads running, `idle` (`u`): of which waiting for an item
 *   - `sleeps` (`t`): how often its threads went to sleep waiting for an
 *     item; each sleep costs a wake-up (a system call and a context switch),
 *     so `sleeps` / `done` near 1 means the stage wakes per item
 *   - `done` (`t`): items the function succeeded on, `failed` (`t`): items it failed
 *   - a dispatcher stage also has `held` (`u`): items waiting for an
 *     earlier input (not counted in `queue-size`), and `keys` (`u`): keys
 *     with items queued or running
 * - with [property@Sluice.Pipeline:keep-order], for finding head-of-line
 *   stalls:
 *   - `reorder-backlog` (`t`): inputs through every stage whose outputs
 *     wait for an earlier input or the consumer: `out` - `taken`
 *   - `head-sequence` (`t`): the number of the input the consumer takes next
 *   - `head-wait-us` (`x`): how long the consumer has been waiting for that
 *     input, in microseconds; 0 when it is not waiting
 *
 * The counters are read one by one while the pipeline runs, not as one
 * snapshot: relations between them (`doing`) hold exactly only once the
 * pipeline has finished.
 *
 * It is safe to call from any thread.
 *
 * Returns: (transfer full): the statistics, not floating
 */
/* clang-format on */
GVariant *
sluice_pipeline_get_stats (SluicePipeline *self)
{
  GVariantBuilder builder;
  GVariantBuilder stages;
  SluiceReorderProgress progress;
  guint64 in, out;

  g_return_val_if_fail (SLUICE_IS_PIPELINE (self), NULL);

  sluice_reorder_buffer_get_progress (self->rb, &progress);
  out = __atomic_load_n (&self->n_out, __ATOMIC_SEQ_CST);
  in = __atomic_load_n (&self->n_in, __ATOMIC_SEQ_CST);
  g_variant_builder_init (&builder, G_VARIANT_TYPE_VARDICT);
  g_variant_builder_add (&builder, "{sv}", "in", g_variant_new_uint64 (in));
  g_variant_builder_add (&builder, "{sv}", "out", g_variant_new_uint64 (out));
  g_variant_builder_add (&builder, "{sv}", "doing", g_variant_new_uint64 (in - MIN (in, out)));
  g_variant_builder_add (&builder, "{sv}", "taken", g_variant_new_uint64 (progress.handed));
  g_variant_builder_add (&builder, "{sv}", "keep-order", g_variant_new_boolean (self->keep_order));
  g_variant_builder_add (&builder, "{sv}", "window", g_variant_new_uint32 (self->window));

  g_variant_builder_init (&stages, G_VARIANT_TYPE ("aa{sv}"));
  for (guint i = 0; i < self->stages->len; i++)
    {
      Stage *stage = self->stages->pdata[i];
      GVariantBuilder one;

      g_variant_builder_init (&one, G_VARIANT_TYPE_VARDICT);
      sluice_mutex_lock_spinning (&stage->lock);
      g_variant_builder_add (&one, "{sv}", "name", g_variant_new_string (stage->name));
      g_variant_builder_add (
          &one, "{sv}", "queue-size",
          g_variant_new_uint32 (stage_length (stage) + n_unstarted_locked (stage)));
      g_variant_builder_add (&one, "{sv}", "queue-capacity",
                             g_variant_new_uint32 (stage->capacity));
      g_variant_builder_add (&one, "{sv}", "queue-max", g_variant_new_uint32 (stage->max_queued));
      g_variant_builder_add (&one, "{sv}", "threads", g_variant_new_uint32 (stage->n_alive));
      g_variant_builder_add (&one, "{sv}", "idle", g_variant_new_uint32 (stage->n_waiting));
      g_variant_builder_add (&one, "{sv}", "sleeps", g_variant_new_uint64 (stage->n_sleeps));
      if (stage->key_func != NULL)
        {
          g_variant_builder_add (&one, "{sv}", "held", g_variant_new_uint32 (stage->n_held));
          g_variant_builder_add (&one, "{sv}", "keys",
                                 g_variant_new_uint32 (g_hash_table_size (stage->keys)));
        }
      g_mutex_unlock (&stage->lock);
      g_variant_builder_add (
          &one, "{sv}", "done",
          g_variant_new_uint64 (__atomic_load_n (&stage->n_done, __ATOMIC_RELAXED)));
      g_variant_builder_add (
          &one, "{sv}", "failed",
          g_variant_new_uint64 (__atomic_load_n (&stage->n_failed, __ATOMIC_RELAXED)));
      g_variant_builder_add (&stages, "a{sv}", &one);
    }
  g_variant_builder_add (&builder, "{sv}", "stages", g_variant_builder_end (&stages));

  if (self->keep_order)
    {
      gint64 wait_us = progress.wait_since != 0 ? g_get_monotonic_time () - progress.wait_since : 0;

      g_variant_builder_add (&builder, "{sv}", "reorder-backlog",
                             g_variant_new_uint64 (out - MIN (out, progress.handed)));
      g_variant_builder_add (&builder, "{sv}", "head-sequence",
                             g_variant_new_uint64 (progress.head));
      g_variant_builder_add (&builder, "{sv}", "head-wait-us",
                             g_variant_new_int64 (MAX (wait_us, 0)));
    }
  return g_variant_ref_sink (g_variant_builder_end (&builder));
}

/**
 * sluice_pipeline_get_consumerator:
 * @self: a pipeline
 *
 * Gets the iterator the outputs are taken from.
 *
 * It is safe to call from any thread.
 *
 * Returns: (transfer none): the consumerator
 */
SluiceConsumerator *
sluice_pipeline_get_consumerator (SluicePipeline *self)
{
  g_return_val_if_fail (SLUICE_IS_PIPELINE (self), NULL);

  return self->consumerator;
}

/**
 * sluice_pipeline_get_keep_order:
 * @self: a pipeline
 *
 * Gets [property@Sluice.Pipeline:keep-order].
 *
 * It is safe to call from any thread.
 *
 * Returns: whether the outputs come in input order
 */
gboolean
sluice_pipeline_get_keep_order (SluicePipeline *self)
{
  g_return_val_if_fail (SLUICE_IS_PIPELINE (self), FALSE);

  return self->keep_order;
}

/**
 * sluice_pipeline_get_skip_failed:
 * @self: a pipeline
 *
 * Gets [property@Sluice.Pipeline:skip-failed].
 *
 * It is safe to call from any thread.
 *
 * Returns: whether failed inputs are left out
 */
gboolean
sluice_pipeline_get_skip_failed (SluicePipeline *self)
{
  g_return_val_if_fail (SLUICE_IS_PIPELINE (self), FALSE);

  return g_atomic_int_get (&self->skip_failed);
}

/**
 * sluice_pipeline_set_skip_failed:
 * @self: a pipeline
 * @skip_failed: whether failed inputs are left out
 *
 * Sets [property@Sluice.Pipeline:skip-failed]. The notification is emitted
 * on the calling thread.
 *
 * It is safe to call from any thread.
 */
void
sluice_pipeline_set_skip_failed (SluicePipeline *self, gboolean skip_failed)
{
  g_return_if_fail (SLUICE_IS_PIPELINE (self));

  /* With keep-order the buffer skips failures, as the consumer reaches them. */
  if (self->keep_order)
    sluice_reorder_buffer_set_skip_failed (self->rb, skip_failed);
  if (g_atomic_int_exchange (&self->skip_failed, !!skip_failed) != !!skip_failed)
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_SKIP_FAILED]);
}

/* --- for the call stage (sluice-pipeline-call.c) --- */

gboolean
sluice_pipeline_carries_values (SluicePipeline *self)
{
  return self->values;
}

gboolean
sluice_pipeline_is_started (SluicePipeline *self)
{
  return is_started (self);
}

GCancellable *
sluice_pipeline_get_stop_cancellable (SluicePipeline *self)
{
  return sluice_reorder_buffer_get_cancellable (self->rb);
}
