/* sluice-push-producer.c: interface of producers that can be paused
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#include "sluice-private.h"

/**
 * SluicePushProducer:
 *
 * A producer that pushes data at its own pace and can be told to pause,
 * resume and stop, as Twisted's `IPushProducer`.
 *
 * Flow control in Sluice is built on it: a [class@Sluice.Consumerator] or a
 * [class@Sluice.OrderedItemProducer] pauses a registered upstream producer
 * when its buffer reaches the high-water mark and resumes it at the
 * low-water mark. [class@Sluice.OrderedItemProducer] implements it too, so
 * a consumer can pause the delivery of items.
 *
 * Pause and resume calls are not counted: a resume ends any number of
 * pauses. Every method may be called from any thread; implementations must
 * be thread-safe.
 */

G_DEFINE_INTERFACE (SluicePushProducer, sluice_push_producer, G_TYPE_OBJECT)

static void
sluice_push_producer_default_init (SluicePushProducerInterface *iface)
{
}

/**
 * sluice_push_producer_pause_producing:
 * @self: a push producer
 *
 * Asks @self to stop producing until [method@Sluice.PushProducer.resume_producing]
 * is called. Calling it while paused does nothing.
 *
 * This function is safe to call from any thread.
 */
void
sluice_push_producer_pause_producing (SluicePushProducer *self)
{
  g_return_if_fail (SLUICE_IS_PUSH_PRODUCER (self));

  SLUICE_PUSH_PRODUCER_GET_IFACE (self)->pause_producing (self);
}

/**
 * sluice_push_producer_resume_producing:
 * @self: a push producer
 *
 * Asks a paused @self to produce again. Calling it while not paused does
 * nothing.
 *
 * This function is safe to call from any thread.
 */
void
sluice_push_producer_resume_producing (SluicePushProducer *self)
{
  g_return_if_fail (SLUICE_IS_PUSH_PRODUCER (self));

  SLUICE_PUSH_PRODUCER_GET_IFACE (self)->resume_producing (self);
}

/**
 * sluice_push_producer_stop_producing:
 * @self: a push producer
 *
 * Asks @self to stop for good: what is in flight is cancelled and nothing
 * more is produced.
 *
 * This function is safe to call from any thread.
 */
void
sluice_push_producer_stop_producing (SluicePushProducer *self)
{
  g_return_if_fail (SLUICE_IS_PUSH_PRODUCER (self));

  SLUICE_PUSH_PRODUCER_GET_IFACE (self)->stop_producing (self);
}
