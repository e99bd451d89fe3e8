/* sluice-push-producer.h: interface of producers that can be paused
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(SLUICE_INSIDE) && !defined(SLUICE_COMPILATION)
#error "Only <sluice/sluice.h> can be included directly."
#endif

#include <glib-object.h>
#include <sluice/sluice-version-macros.h>

G_BEGIN_DECLS

#define SLUICE_TYPE_PUSH_PRODUCER (sluice_push_producer_get_type ())

SLUICE_AVAILABLE_IN_ALL
G_DECLARE_INTERFACE (SluicePushProducer, sluice_push_producer, SLUICE, PUSH_PRODUCER, GObject)

/**
 * SluicePushProducerInterface:
 * @g_iface: the parent interface
 * @pause_producing: stop producing until resumed
 * @resume_producing: produce again after a pause
 * @stop_producing: stop for good; what is in flight is cancelled
 *
 * The virtual functions of [iface@Sluice.PushProducer]. Each may be called
 * from any thread; an implementation must be thread-safe.
 */
struct _SluicePushProducerInterface
{
  GTypeInterface g_iface;

  void (*pause_producing) (SluicePushProducer *self);
  void (*resume_producing) (SluicePushProducer *self);
  void (*stop_producing) (SluicePushProducer *self);

  /*< private >*/
  gpointer padding[8];
};

SLUICE_AVAILABLE_IN_ALL
void sluice_push_producer_pause_producing (SluicePushProducer *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_push_producer_resume_producing (SluicePushProducer *self);
SLUICE_AVAILABLE_IN_ALL
void sluice_push_producer_stop_producing (SluicePushProducer *self);

G_END_DECLS
